"""Disk cache of a frozen encoder's features, so the encoder runs once per item, not once per epoch.

`CachedEncoder` wraps a frozen encoder. Its `prepare` preprocesses an item with the inner encoder,
keys it by a hash of the encoder's configuration and the preprocessed tensors (so the same pixels or
samples hit the cache whatever file they came from), and returns the stored features, computing and
storing them on a miss. Its `forward` only pads those features. Preparation runs in data-loader
workers, so the expensive encoder pass moves out of the training step as well.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from ..encoders.base import EncoderOutput, ModalityEncoder, Prepared
from ..weightfiles import save_safetensors


class CachedEncoder(ModalityEncoder):
    def __init__(self, encoder: ModalityEncoder, cache_dir: str | Path) -> None:
        if encoder.trainable:
            raise ValueError(f"cannot cache features of the trainable encoder {encoder.name!r}: they change as it trains")
        super().__init__(trainable=False)
        self.inner = encoder
        self.modality = encoder.modality
        self.name = encoder.name
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._salt = json.dumps(encoder.config_dict(), sort_keys=True, default=str).encode()
        self.hits = 0
        self.misses = 0

    @property
    def output_dim(self) -> int:
        return self.inner.output_dim

    def _key(self, prepared: Prepared) -> str:
        digest = hashlib.sha256(self._salt)
        for name in sorted(prepared.tensors):
            tensor = prepared.tensors[name].contiguous()
            digest.update(name.encode() + str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
            digest.update(tensor.cpu().numpy().tobytes())
        return digest.hexdigest()

    def prepare(self, item: Any) -> Prepared:
        prepared = self.inner.prepare(item)
        key = self._key(prepared)
        path = self.cache_dir / key[:2] / f"{key}.safetensors"
        if path.exists():
            self.hits += 1
            features = load_file(str(path))["features"]
        else:
            self.misses += 1
            batch = {k: v.to(self.inner.device) for k, v in self.inner.collate([prepared]).items()}
            with torch.no_grad():
                out = self.inner(batch)
            features = out.features[0, : int(out.lengths[0])].float().cpu().contiguous()
            path.parent.mkdir(exist_ok=True)
            tmp = path.with_suffix(".tmp")
            save_safetensors({"features": features}, str(tmp))
            tmp.replace(path)
        if features.shape[0] != prepared.num_features:
            raise ValueError(f"cached features {path} have {features.shape[0]} rows, expected {prepared.num_features}")
        # The key names these features (same encoder, same input): passed along, not hashed again.
        return Prepared({"features": features}, prepared.num_features, prepared.extras, digest=bytes.fromhex(key))

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        return EncoderOutput(batch["features"], batch["num_features"])

    @property
    def device(self) -> torch.device:
        return self.inner.device

    def config_dict(self) -> dict[str, Any]:
        return self.inner.config_dict()

    def save_pretrained(self, folder: str | Path) -> None:
        self.inner.save_pretrained(folder)
