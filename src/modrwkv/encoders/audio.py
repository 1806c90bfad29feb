"""Pretrained speech encoders (Whisper's encoder, WavLM) as frozen `ModalityEncoder`s.

Both run at 16 kHz and give about 50 feature vectors per second. Long audio is never silently
truncated: it is cut into windows (Whisper: its fixed 30 s; WavLM: `window_seconds`), each window is
encoded on its own and the features are concatenated, so the token count grows with the duration.

Token counts (known at prepare time):
- Whisper: every window is padded to 30 s of log-mel (as Whisper was trained) and its output trimmed
  to `min(valid_mel_frames // 2 + 1, max_source_positions)` frames, `valid_mel_frames` being the
  window's unpadded length in 10 ms hops: 10 s -> 501, a full window -> 1500. With
  `clip_length=True` a window is encoded at its own length instead (the positional embeddings
  sliced to it, as whisper.cpp's `audio_ctx` does): `ceil(mel_frames / 2)` frames, and a 2 s clip
  costs a tenth of a padded pass on CPU (bench/bench_whisper_clip_length.py). Its features differ
  from the padded ones (the encoder attends over no silence), so a model must be trained and used
  with the same choice; released ModRWKV checkpoints were trained padded, which stays the default.
- WavLM: the exact output length of the conv feature extractor, `L <- floor((L - kernel) / stride) + 1`
  per conv layer (1 s -> 49, 30 s -> 1499). Windows of equal length are batched together and never
  padded, so batching cannot change the features (WavLM base models use GroupNorm over time).
"""

from __future__ import annotations

import collections
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base import EncoderOutput, Prepared
from .ctranslate2 import is_ctranslate2_folder, whisper_encoder_from_ctranslate2
from .hf import (
    DTYPES,
    HFEncoder,
    load_checked,
    parse_dtype,
    quiet_transformers,
    read_hf_config,
)
from .media import load_audio

logger = logging.getLogger(__name__)


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class WhisperAudioEncoder(HFEncoder):
    """Whisper's encoder (the decoder is dropped at load time). `source` may be an HF id or folder,
    or a CTranslate2 / faster-whisper model folder (`model.bin`), read without ctranslate2."""

    modality = "audio"
    name = "whisper"

    def __init__(
        self,
        model: torch.nn.Module,
        feature_extractor: Any,
        *,
        source: str | None,
        config: dict[str, Any] | None,
        trainable: bool,
        dtype: str,
        batch_windows: int,
        clip_length: bool = False,
    ) -> None:
        super().__init__(model, source=source, config=config, trainable=trainable, dtype=dtype)
        self.feature_extractor = feature_extractor
        self.batch_windows = int(batch_windows)
        self.clip_length = bool(clip_length)
        self.max_positions = int(model.config.max_source_positions)
        if feature_extractor.feature_size != model.config.num_mel_bins:
            raise ValueError(
                f"the feature extractor makes {feature_extractor.feature_size} mel bins but the model takes "
                f"{model.config.num_mel_bins}"
            )
        if feature_extractor.nb_max_frames != 2 * self.max_positions:
            raise ValueError(
                f"the feature extractor pads to {feature_extractor.nb_max_frames} mel frames but the model "
                f"expects {2 * self.max_positions}"
            )

    @classmethod
    def build(
        cls,
        *,
        source: str | None = None,
        config: Mapping[str, Any] | None = None,
        trainable: bool | None = None,
        weights: str | Path | None = None,
        dtype: str | torch.dtype = "float32",
        batch_windows: int = 8,
        clip_length: bool = False,
    ) -> WhisperAudioEncoder:
        """From saved `weights`, else a pretrained `source`, else a random model from `config`.
        `batch_windows` bounds how many windows go through the encoder at once; `clip_length`
        encodes each window at its own length instead of padded to 30 s (see the module doc)."""
        import transformers
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        dtype = parse_dtype(dtype)
        folder = weights if weights is not None else source
        if folder is not None and is_ctranslate2_folder(folder):
            model = whisper_encoder_from_ctranslate2(folder, DTYPES[dtype])
            # faster-whisper folders may carry HF's preprocessor config (e.g. 128 mel bins); CTranslate2's own do not
            has_preprocessor = (Path(folder) / "preprocessor_config.json").exists()
            feature_extractor = _whisper_feature_extractor(folder if has_preprocessor else None, model.config)
        elif folder is not None:
            raw = read_hf_config(folder)
            if raw.get("model_type") != "whisper":
                raise ValueError(f"{str(folder)!r} holds a {raw.get('model_type')!r} model, not Whisper")
            if "WhisperEncoder" in (raw.get("architectures") or []):
                model = load_checked(WhisperEncoder, folder, dtype=DTYPES[dtype])
            else:
                model = load_checked(transformers.WhisperModel, folder, dtype=DTYPES[dtype]).encoder
            feature_extractor = _whisper_feature_extractor(folder, model.config)
        elif config is not None:
            model = WhisperEncoder(transformers.WhisperConfig.from_dict(dict(config))).to(DTYPES[dtype])
            feature_extractor = _whisper_feature_extractor(None, model.config)
            logger.warning("built whisper encoder with RANDOM weights from a config")
        else:
            raise ValueError("the whisper encoder needs a source (HF id or folder), a config or saved weights")
        return cls(
            model,
            feature_extractor,
            source=None if source is None else str(source),
            config=None if config is None else dict(config),
            trainable=bool(trainable),
            dtype=dtype,
            batch_windows=batch_windows,
            clip_length=clip_length,
        )

    def options(self) -> dict[str, Any]:
        return {"dtype": self.dtype_name, "batch_windows": self.batch_windows, "clip_length": self.clip_length}

    @property
    def output_dim(self) -> int:
        return int(self.model.config.d_model)

    @property
    def sample_rate(self) -> int:
        return int(self.feature_extractor.sampling_rate)

    def prepare(self, item: Any) -> Prepared:
        wave = load_audio(item, self.sample_rate)
        step = int(self.feature_extractor.n_samples)
        windows = [wave[start : start + step] for start in range(0, wave.shape[0], step)]
        if self.clip_length:
            mels = [self._mel(window) for window in windows]
            frames = torch.tensor([m.shape[-1] for m in mels], dtype=torch.long)
            tokens = (frames + 1) // 2  # conv2 (kernel 3, stride 2, padding 1)
            return Prepared({"input_features": torch.cat(mels, dim=-1), "window_frames": frames,
                             "window_tokens": tokens}, int(tokens.sum()))
        out = self.feature_extractor(
            windows,
            sampling_rate=self.sample_rate,
            padding="max_length",
            return_attention_mask=True,
            return_tensors="pt",
        )
        valid_mel_frames = out["attention_mask"].sum(-1).long()
        tokens = torch.clamp(valid_mel_frames // 2 + 1, max=self.max_positions)
        return Prepared(
            {"input_features": out["input_features"].float(), "window_tokens": tokens},
            int(tokens.sum()),
        )

    def _mel(self, window: np.ndarray) -> torch.Tensor:
        """Log-mel of one window at its own length [mel_bins, frames] (at least 2 frames)."""
        if window.shape[0] < 2 * self.feature_extractor.hop_length:
            window = np.pad(window, (0, 2 * self.feature_extractor.hop_length - window.shape[0]))
        out = self.feature_extractor(window, sampling_rate=self.sample_rate, padding="longest",
                                     return_tensors="pt")
        return out["input_features"][0].float()

    def collate(self, prepared: Sequence[Prepared]) -> dict[str, torch.Tensor]:
        """Windows of all items are concatenated (not padded per item): padded windows are all 30 s
        of log-mel, and clip-length windows are concatenated along time with their frame counts, so
        they batch with no waste whatever the items' durations."""
        batch = {
            "window_tokens": torch.cat([p.tensors["window_tokens"] for p in prepared]),
            "windows": torch.tensor([p.tensors["window_tokens"].shape[0] for p in prepared], dtype=torch.long),
            "num_features": torch.tensor([p.num_features for p in prepared], dtype=torch.long),
        }
        if self.clip_length:
            batch["input_features"] = torch.cat([p.tensors["input_features"] for p in prepared], dim=-1)
            batch["window_frames"] = torch.cat([p.tensors["window_frames"] for p in prepared])
        else:
            batch["input_features"] = torch.cat([p.tensors["input_features"] for p in prepared])
        return batch

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        with self._grad_context():
            features = batch["input_features"].to(device=self.device, dtype=self.dtype)
            if self.clip_length:
                hidden = self._encode_own_lengths(features, batch["window_frames"].tolist())
            else:
                hidden = torch.cat(
                    [self.model(chunk).last_hidden_state for chunk in torch.split(features, self.batch_windows)]
                )
        tokens = batch["window_tokens"].tolist()
        trimmed = [hidden[w][:t] for w, t in enumerate(tokens)]
        per_item, start = [], 0
        for count in batch["windows"].tolist():
            per_item.append(torch.cat(trimmed[start : start + count]))
            start += count
        lengths = torch.tensor([x.shape[0] for x in per_item], dtype=torch.long, device=features.device)
        return EncoderOutput(torch.nn.utils.rnn.pad_sequence(per_item, batch_first=True), lengths)

    def _encode_own_lengths(self, mel: torch.Tensor, frames: list[int]) -> list[torch.Tensor]:
        """Each window [mel_bins, frames] (concatenated along time) through the encoder at its own
        length; windows of equal length are batched (nothing is padded, so nothing changes)."""
        windows = torch.split(mel, frames, dim=-1)
        groups: dict[int, list[int]] = collections.defaultdict(list)
        for index, count in enumerate(frames):
            groups[count].append(index)
        hidden: list[torch.Tensor | None] = [None] * len(frames)
        for members in groups.values():
            for chunk in _chunks(members, self.batch_windows):
                out = self._encoder_at_length(torch.stack([windows[i] for i in chunk]))
                for row, index in enumerate(chunk):
                    hidden[index] = out[row]
        return hidden  # type: ignore[return-value]

    def _encoder_at_length(self, mel: torch.Tensor) -> torch.Tensor:
        """`WhisperEncoder.forward` with the positional embeddings sliced to the input's length
        (HF's forward insists on exactly 30 s)."""
        m = self.model
        x = torch.nn.functional.gelu(m.conv1(mel))
        x = torch.nn.functional.gelu(m.conv2(x)).permute(0, 2, 1)
        if x.shape[1] > self.max_positions:
            raise ValueError(f"a window of {mel.shape[-1]} mel frames is longer than Whisper's {self.max_positions} positions")
        x = x + m.embed_positions.weight[: x.shape[1]]
        for layer in m.layers:
            x = layer(x, None)
            x = x[0] if isinstance(x, tuple) else x  # transformers < 5 returned (hidden, attention)
        return m.layer_norm(x)

    def _save_preprocessing(self, folder: Path) -> None:
        self.feature_extractor.save_pretrained(str(folder))


def _whisper_feature_extractor(folder: str | Path | None, config: Any) -> Any:
    from transformers import WhisperFeatureExtractor

    if folder is not None:
        try:
            with quiet_transformers():
                return WhisperFeatureExtractor.from_pretrained(str(folder))
        except OSError as exc:
            logger.info("no feature extractor in %s (%s); using Whisper's defaults", folder, exc)
    return WhisperFeatureExtractor(feature_size=int(config.num_mel_bins))


class WavLMAudioEncoder(HFEncoder):
    """WavLM on the raw 16 kHz waveform, normalised to zero mean / unit variance per clip when the
    checkpoint's feature extractor does so (`normalize=None` reads that choice from it)."""

    modality = "audio"
    name = "wavlm"

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        source: str | None,
        config: dict[str, Any] | None,
        trainable: bool,
        dtype: str,
        window_seconds: float,
        normalize: bool,
        sample_rate: int,
        batch_windows: int,
    ) -> None:
        super().__init__(model, source=source, config=config, trainable=trainable, dtype=dtype)
        self.window_seconds = float(window_seconds)
        self.normalize = bool(normalize)
        self.sample_rate = int(sample_rate)
        self.batch_windows = int(batch_windows)
        self._convs = list(zip(model.config.conv_kernel, model.config.conv_stride))
        self.min_samples = 1
        for kernel, stride in reversed(self._convs):
            self.min_samples = (self.min_samples - 1) * stride + kernel
        self.window_samples = round(self.window_seconds * self.sample_rate)
        if self.window_samples < self.min_samples:
            raise ValueError(f"window_seconds={window_seconds} is shorter than WavLM's receptive field")

    @classmethod
    def build(
        cls,
        *,
        source: str | None = None,
        config: Mapping[str, Any] | None = None,
        trainable: bool | None = None,
        weights: str | Path | None = None,
        dtype: str | torch.dtype = "float32",
        window_seconds: float = 30.0,
        normalize: bool | None = None,
        batch_windows: int = 8,
    ) -> WavLMAudioEncoder:
        """From saved `weights`, else a pretrained `source`, else a random model from `config`."""
        import transformers

        dtype = parse_dtype(dtype)
        folder = weights if weights is not None else source
        sample_rate, checkpoint_normalize = 16000, True
        if folder is not None:
            raw = read_hf_config(folder)
            if raw.get("model_type") != "wavlm":
                raise ValueError(f"{str(folder)!r} holds a {raw.get('model_type')!r} model, not WavLM")
            model = load_checked(transformers.WavLMModel, folder, dtype=DTYPES[dtype])
            try:
                with quiet_transformers():
                    extractor = transformers.Wav2Vec2FeatureExtractor.from_pretrained(str(folder))
                sample_rate, checkpoint_normalize = int(extractor.sampling_rate), bool(extractor.do_normalize)
            except OSError as exc:
                logger.info("no feature extractor in %s (%s); normalising each clip", folder, exc)
        elif config is not None:
            model = transformers.WavLMModel(transformers.WavLMConfig.from_dict(dict(config))).to(DTYPES[dtype])
            logger.warning("built wavlm encoder with RANDOM weights from a config")
        else:
            raise ValueError("the wavlm encoder needs a source (HF id or folder), a config or saved weights")
        return cls(
            model,
            source=None if source is None else str(source),
            config=None if config is None else dict(config),
            trainable=bool(trainable),
            dtype=dtype,
            window_seconds=window_seconds,
            normalize=checkpoint_normalize if normalize is None else normalize,
            sample_rate=sample_rate,
            batch_windows=batch_windows,
        )

    def options(self) -> dict[str, Any]:
        return {
            "dtype": self.dtype_name,
            "window_seconds": self.window_seconds,
            "normalize": self.normalize,
            "batch_windows": self.batch_windows,
        }

    @property
    def output_dim(self) -> int:
        return int(self.model.config.hidden_size)

    def frames(self, num_samples: int) -> int:
        """Output frames of the conv feature extractor for a window of `num_samples` samples."""
        length = num_samples
        for kernel, stride in self._convs:
            length = (length - kernel) // stride + 1
        return max(length, 0)

    def windows(self, num_samples: int) -> list[tuple[int, int]]:
        """[start, end) sample ranges of the windows; a tail too short to give a frame joins the
        window before it."""
        bounds = [(s, min(s + self.window_samples, num_samples)) for s in range(0, num_samples, self.window_samples)]
        if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < self.min_samples:
            bounds[-2:] = [(bounds[-2][0], num_samples)]
        return bounds

    def prepare(self, item: Any) -> Prepared:
        wave = load_audio(item, self.sample_rate)
        if wave.shape[0] < self.min_samples:
            raise ValueError(
                f"audio too short for wavlm: {wave.shape[0]} samples, needs at least {self.min_samples} "
                f"({1000 * self.min_samples / self.sample_rate:.0f} ms)"
            )
        if self.normalize:  # as Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm, over the whole clip
            wave = (wave - wave.mean()) / math.sqrt(float(wave.var()) + 1e-7)
        count = sum(self.frames(end - start) for start, end in self.windows(wave.shape[0]))
        return Prepared({"waveform": torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))}, count)

    def collate(self, prepared: Sequence[Prepared]) -> dict[str, torch.Tensor]:
        waves = [p.tensors["waveform"] for p in prepared]
        return {
            "waveform": torch.nn.utils.rnn.pad_sequence(waves, batch_first=True),
            "num_samples": torch.tensor([w.shape[0] for w in waves], dtype=torch.long),
            "num_features": torch.tensor([p.num_features for p in prepared], dtype=torch.long),
        }

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        waveform = batch["waveform"].to(device=self.device, dtype=self.dtype)
        groups: dict[int, list[tuple[int, int, int]]] = collections.defaultdict(list)
        layout = []
        for item, total in enumerate(batch["num_samples"].tolist()):
            bounds = self.windows(total)
            layout.append(len(bounds))
            for index, (start, end) in enumerate(bounds):
                groups[end - start].append((item, index, start))
        outputs: dict[tuple[int, int], torch.Tensor] = {}
        with self._grad_context():
            for length, members in groups.items():
                for chunk in _chunks(members, self.batch_windows):
                    inputs = torch.stack([waveform[i, s : s + length] for i, _, s in chunk])
                    hidden = self.model(input_values=inputs).last_hidden_state
                    if hidden.shape[1] != self.frames(length):
                        raise RuntimeError(f"wavlm gave {hidden.shape[1]} frames for {length} samples, expected {self.frames(length)}")
                    for row, (i, index, _) in enumerate(chunk):
                        outputs[(i, index)] = hidden[row]
        per_item = [torch.cat([outputs[(i, k)] for k in range(n)]) for i, n in enumerate(layout)]
        lengths = torch.tensor([x.shape[0] for x in per_item], dtype=torch.long, device=waveform.device)
        return EncoderOutput(torch.nn.utils.rnn.pad_sequence(per_item, batch_first=True), lengths)

    def _save_preprocessing(self, folder: Path) -> None:
        from transformers import Wav2Vec2FeatureExtractor

        Wav2Vec2FeatureExtractor(
            feature_size=1,
            sampling_rate=self.sample_rate,
            padding_value=0.0,
            do_normalize=self.normalize,
            return_attention_mask=self.model.config.feat_extract_norm == "layer",
        ).save_pretrained(str(folder))
