"""`NativeEncoder`: the base for encoders defined in this package (not wrappers of HF models):
hyper-parameters in a dataclass, weights in one safetensors file, trainable by default."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from ..lm.errors import CheckpointError
from ..lm.files import read_json_object, read_safetensors
from ..textfiles import write_text_atomically
from .base import ModalityEncoder

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "encoder.json"


class NativeEncoder(ModalityEncoder):
    """An encoder implemented here: `config` is a dataclass of its hyper-parameters, `build` takes
    them as a dict and/or keyword options (options win), and `save_pretrained` writes
    `encoder.json` + `model.safetensors`. Trainable by default; a frozen one stays in eval mode."""

    config_class: ClassVar[type]
    default_trainable: ClassVar[bool] = True

    def __init__(self, config: Any, trainable: bool) -> None:
        super().__init__(trainable=trainable)
        self.config = config

    def _finish_init(self) -> None:
        """Freezes after the subclass has created its layers."""
        if not self.trainable:
            self.requires_grad_(False)
            self.eval()

    def train(self, mode: bool = True) -> NativeEncoder:
        return super().train(mode and self.trainable)

    @classmethod
    def build(
        cls,
        *,
        source: str | None = None,
        config: Mapping[str, Any] | None = None,
        trainable: bool | None = None,
        weights: str | Path | None = None,
        **options: Any,
    ) -> NativeEncoder:
        """A fresh (randomly initialised) encoder, or the one saved in `weights`."""
        if source is not None:
            raise ValueError(f"the {cls.name} encoder has no pretrained source; pass weights=<saved folder> instead")
        values = dict(config or {})
        if weights is not None:
            saved = read_json_object(Path(weights) / CONFIG_FILE)
            if not isinstance(saved.get("config"), dict):
                raise CheckpointError(f"{Path(weights) / CONFIG_FILE}: 'config' must be a JSON object")
            values = dict(saved["config"])
        values.update(options)
        field_names = {f.name for f in dataclasses.fields(cls.config_class)}
        unknown = sorted(set(values) - field_names)
        if unknown:
            raise ValueError(f"unknown {cls.name} option(s) {unknown}; known: {sorted(field_names)}")
        try:
            config_values = cls.config_class(**values)
        except (TypeError, ValueError) as exc:
            if weights is None:
                raise
            raise CheckpointError(f"{Path(weights) / CONFIG_FILE}: {exc}") from None  # a saved config: name its file
        encoder = cls(config_values, trainable=cls.default_trainable if trainable is None else trainable)
        if weights is not None:
            path = Path(weights) / WEIGHTS_FILE
            try:
                encoder.load_state_dict(read_safetensors(path), strict=True)
            except RuntimeError as exc:  # missing, unexpected or mis-shaped keys
                raise CheckpointError(f"{path}: {exc}") from None
        return encoder

    def config_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": None, "config": dataclasses.asdict(self.config), "trainable": self.trainable}

    def save_pretrained(self, folder: str | Path) -> None:
        from ..weightfiles import save_safetensors

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_safetensors(state, str(folder / WEIGHTS_FILE))
        write_text_atomically(folder / CONFIG_FILE, json.dumps(self.config_dict(), indent=2))
