"""Modality encoders and their registry.

| name | modality | weights | tokens per item | default |
|---|---|---|---|---|
| `siglip2` | image | HF (SigLIP arch. for fixed-res, `Siglip2VisionModel` for NaFlex) | (size/patch)^2, e.g. 576; NaFlex: valid patches | frozen |
| `siglip` | image | HF `SiglipVisionModel` | (size/patch)^2 | frozen |
| `clip` | image | HF `CLIPVisionModel` | (size/patch)^2 + 1 (CLS), e.g. 577 | frozen |
| `tiny` | image | built-in CNN, trained here | grid^2 (64 by default) | trainable |
| `whisper` | audio | HF Whisper encoder | per 30 s window: min(mel_frames//2 + 1, 1500) | frozen |
| `wavlm` | audio | HF `WavLMModel` | per window: conv-stack length (~50/s) | frozen |
| `wavenet` | series | built-in, trained here | ceil(T / patch_len) | trainable |

`build_encoder(**encoder.config_dict(), weights=folder)` rebuilds an encoder saved with
`encoder.save_pretrained(folder)` exactly; without `weights`, pretrained encoders reload from their
`source` (an HF id or folder). Every registered class has a `build(*, source, config, trainable,
weights, **options)` classmethod, which is what `build_encoder` calls.

Optional dependencies, imported on first use: Pillow (images), soundfile + scipy (audio files and
resampling), transformers (the HF towers). The built-in encoders need only torch (and Pillow for
`tiny`).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path
from typing import Any

from .audio import WavLMAudioEncoder, WhisperAudioEncoder
from .base import EncoderOutput, ModalityEncoder, Prepared
from .media import ImageTooLarge, MediaError, load_audio, load_image, set_max_image_pixels
from .series import WaveNetConfig, WaveNetSeriesEncoder
from .tiny_vision import TinyVisionConfig, TinyVisionEncoder
from .vision import CLIPEncoder, SigLIP2Encoder, SigLIPEncoder

ENCODERS: dict[str, type] = {
    cls.name: cls
    for cls in (
        SigLIP2Encoder,
        SigLIPEncoder,
        CLIPEncoder,
        TinyVisionEncoder,
        WhisperAudioEncoder,
        WavLMAudioEncoder,
        WaveNetSeriesEncoder,
    )
}


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def resolve_source(source: str | Path) -> str:
    """An encoder `source` as it should be stored: an existing local folder becomes its absolute
    path (a file is refused) (a saved model then loads from any working directory); an HF hub id ("org/name") stays
    an id. A path that does not exist fails here, naming it, instead of after a minute of hub
    retries: absolute or ./-relative paths, more than one "/", or a first component that exists
    locally (e.g. "models/whisper" when ./models/ exists) are never hub ids."""
    text = str(source)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file() and not (path / "model.bin").is_file():  # HF's, CTranslate2's
            raise FileNotFoundError(
                f"encoder source {text!r} is a folder without a config.json (or a CTranslate2 model.bin): a local "
                "source is a Hugging Face or CTranslate2 model folder, e.g. one `huggingface-cli download` writes")
        return str(path.resolve())
    if path.exists():  # a weight file: transformers would report it as a config.json that is not JSON
        raise NotADirectoryError(
            f"encoder source {text!r} is a file; a local source is a model folder (a Hugging Face or CTranslate2 "
            "model's, with its config.json), else a hub id 'org/name'")
    first = Path(text).parts[0] if Path(text).parts else ""
    if isinstance(source, Path) or not _HUB_ID.match(text) or ".." in text or Path(first).is_dir():
        raise FileNotFoundError(
            f"encoder source {text!r}: no such file or folder (looked for {path.resolve()}); a local source must "
            "exist, and a hub id has the form 'org/name'")
    return text


def _takes_any_keyword(function: Any) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(function).parameters.values())


def encoder_options(name: str) -> set[str]:
    """The keyword options the registered encoder `name` takes beside `source`, `config`, `trainable`
    and `weights`: its builder's own parameters, or, for a built-in encoder (whose builder takes any
    keyword), the fields of its config."""
    cls = ENCODERS[name]
    if _takes_any_keyword(cls.build):
        return {field.name for field in dataclasses.fields(cls.config_class)}
    return set(inspect.signature(cls.build).parameters) - {"source", "config", "trainable", "weights"}


def build_encoder(
    name: str,
    *,
    source: str | Path | None = None,
    config: dict[str, Any] | None = None,
    trainable: bool | None = None,
    weights: str | Path | None = None,
    **options: Any,
) -> ModalityEncoder:
    """Builds a registered encoder.

    `source`: an HF hub id or local folder with pretrained weights (HF encoders only; offline this
    needs a local folder or the HF cache). `config`: a dict to build a randomly initialised model
    (HF encoders: the model's config; built-in encoders: their hyper-parameters). `weights`: a folder
    written by `save_pretrained`, which takes precedence over both. `trainable=None` keeps the
    encoder's default (pretrained towers frozen, built-in encoders trainable). `options` are the
    encoder's own keyword options (e.g. `dtype`, `window_seconds`, `patch_len`).
    """
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; known encoders: {', '.join(sorted(ENCODERS))}")
    builder = ENCODERS[name].build
    if not _takes_any_keyword(builder):  # a built-in encoder checks its options against its config itself
        accepted = sorted(encoder_options(name))
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} for the {name} encoder; it accepts {accepted}")
    return builder(
        # With saved weights the source is only a record (it may not exist on this machine).
        source=None if source is None else str(source) if weights is not None else resolve_source(source),
        config=config,
        trainable=trainable,
        weights=weights,
        **options,
    )


__all__ = [
    "ENCODERS",
    "CLIPEncoder",
    "EncoderOutput",
    "ImageTooLarge",
    "MediaError",
    "ModalityEncoder",
    "Prepared",
    "SigLIP2Encoder",
    "SigLIPEncoder",
    "TinyVisionConfig",
    "TinyVisionEncoder",
    "WavLMAudioEncoder",
    "WaveNetConfig",
    "WaveNetSeriesEncoder",
    "WhisperAudioEncoder",
    "build_encoder",
    "encoder_options",
    "load_audio",
    "load_image",
    "set_max_image_pixels",
]
