"""`HFEncoder`: the base of the encoders that wrap a Hugging Face model (vision towers, Whisper,
WavLM), with the loading helpers they share. Loading never silently leaves weights random."""

from __future__ import annotations

import abc
import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ..textfiles import write_text_atomically
from ..weightfiles import writes_named
from .base import ModalityEncoder

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silences transformers' load reports: a vision tower loaded from a full CLIP/SigLIP checkpoint
    always 'ignores' the text tower, and missing weights are checked explicitly instead."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def read_hf_config(path: str | Path) -> dict[str, Any]:
    """The raw config.json of a local folder or (cached) hub id, without instantiating a model."""
    from transformers import PretrainedConfig

    try:
        return PretrainedConfig.get_config_dict(str(path))[0]
    except OSError as exc:
        raise OSError(f"cannot read the model config of {str(path)!r} (a local folder or a cached hub id): {exc}") from exc


def load_checked(model_class: Any, path: str | Path, **kwargs: Any) -> Any:
    """`model_class.from_pretrained` that fails if any of the model's weights were not in the checkpoint."""
    with quiet_transformers():
        model, info = model_class.from_pretrained(str(path), output_loading_info=True, **kwargs)
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(
            f"{str(path)!r} is missing {len(missing)} weight(s) of {model_class.__name__} ({shown}); "
            "is it the right kind of checkpoint?"
        )
    if info.get("unexpected_keys"):
        logger.debug("ignored %d unused weights of %s", len(info["unexpected_keys"]), path)
    return model


class HFEncoder(ModalityEncoder):
    """A Hugging Face model wrapped as an encoder: loading from `source` / `config` / saved
    `weights`, freezing, dtype, and `save_pretrained` in the HF folder layout (so a saved encoder
    folder is also a normal HF checkpoint).

    A frozen encoder stays in eval mode even when a parent module calls `.train()` (dropout and
    WavLM's SpecAugment masking must not run on frozen features), has no trainable parameters, and
    runs its forward without autograd.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        source: str | None,
        config: dict[str, Any] | None,
        trainable: bool,
        dtype: str,
    ) -> None:
        super().__init__(trainable=trainable)
        self.model = model
        self.source = source
        # Kept in its JSON form (tuples become lists), so config_dict() survives a trip through a file.
        self.hf_config = None if config is None else json.loads(json.dumps(config))
        self.dtype_name = dtype
        if not trainable:
            self.model.requires_grad_(False)
            self.model.eval()

    def train(self, mode: bool = True) -> HFEncoder:
        super().train(mode)
        if not self.trainable:
            self.model.eval()
        return self

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.dtype_name]

    def options(self) -> dict[str, Any]:
        """Constructor options beyond source/config/trainable, recorded by `config_dict`."""
        return {"dtype": self.dtype_name}

    def config_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "config": None if self.source else self.hf_config,
            "trainable": self.trainable,
            **self.options(),
        }

    def save_pretrained(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with writes_named(folder):  # transformers' writers name no file when the disk is full
            self.model.save_pretrained(str(folder))
            self._save_preprocessing(folder)
        write_text_atomically(folder / "encoder.json", json.dumps(self.config_dict(), indent=2))

    @abc.abstractmethod
    def _save_preprocessing(self, folder: Path) -> None:
        """Writes the preprocessor config that `weights=folder` loading reads back."""


def parse_dtype(dtype: str | torch.dtype) -> str:
    """Accepts "float32"/"bfloat16"/"float16" (or the torch dtype) and returns the name."""
    if isinstance(dtype, torch.dtype):
        names = {v: k for k, v in DTYPES.items()}
        if dtype not in names:
            raise ValueError(f"unsupported encoder dtype {dtype}; use one of {sorted(DTYPES)}")
        return names[dtype]
    if dtype not in DTYPES:
        raise ValueError(f"unsupported encoder dtype {dtype!r}; use one of {sorted(DTYPES)}")
    return dtype
