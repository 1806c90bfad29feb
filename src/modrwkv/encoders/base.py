"""What every modality encoder provides, so that adapters, the processor and the model never need
to know which encoder they talk to.

An encoder turns raw items (an image, a clip of audio, a time series) into a sequence of feature
vectors. It works in two steps so that data loading can run in worker processes and the number of
tokens is known before the encoder runs:
  1. `prepare(item)` -> `Prepared`: loads/decodes/resamples/normalises ONE item into tensors
     (no gradients, cheap, picklable), and reports how many feature vectors it will produce.
  2. `forward(batch)` -> `EncoderOutput`: runs the network on `collate([...prepared...])`.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn


@dataclasses.dataclass
class Prepared:
    """One item ready for the encoder: named tensors (no batch dimension) plus its feature count."""

    tensors: dict[str, torch.Tensor]
    num_features: int
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)  # e.g. series mean/scale
    # Identifies the content when whoever prepared the item has hashed it already (the feature
    # cache's key), so that the prefix-state cache need not hash it again (`prepared_digest`).
    digest: bytes | None = None


class EncoderOutput(NamedTuple):
    """A named tuple, not a dataclass: DeepSpeed ZeRO-3 hooks find a module's output tensors only in
    tuples, lists and dicts, and without them a trainable encoder's own weights (a position table read
    in its forward) were not gathered again for the backward."""

    features: torch.Tensor  # [B, L_max, output_dim]
    lengths: torch.Tensor  # [B] long: valid feature vectors of each item (== Prepared.num_features)


class ModalityEncoder(nn.Module, abc.ABC):
    """Base class. Subclasses set `modality` and `name`, and implement the abstract methods."""

    modality: ClassVar[str]  # "image" | "audio" | "series"
    name: ClassVar[str]  # registry key, e.g. "siglip2"

    def __init__(self, trainable: bool = False) -> None:
        super().__init__()
        self.trainable = trainable

    @property
    @abc.abstractmethod
    def output_dim(self) -> int:
        """Width of the feature vectors."""

    @abc.abstractmethod
    def prepare(self, item: Any) -> Prepared:
        """Loads and preprocesses one raw item; raises ValueError naming the problem if unusable."""

    def collate(self, prepared: Sequence[Prepared]) -> dict[str, torch.Tensor]:
        """Stacks prepared items into a batch; the default pads every tensor along its first dim."""
        batch = {}
        for key in prepared[0].tensors:
            parts = [p.tensors[key] for p in prepared]
            batch[key] = torch.nn.utils.rnn.pad_sequence(parts, batch_first=True)
        batch["num_features"] = torch.tensor([p.num_features for p in prepared], dtype=torch.long)
        return batch

    @abc.abstractmethod
    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        """Runs the network on a collated batch."""

    def _grad_context(self) -> contextlib.AbstractContextManager[None]:
        """Autograd only for a trainable encoder (a frozen one never records a graph)."""
        return torch.set_grad_enabled(self.trainable and torch.is_grad_enabled())

    def encode(self, items: Sequence[Any]) -> list[torch.Tensor]:
        """Convenience: prepare + forward; returns one [num_features, output_dim] tensor per item."""
        prepared = [self.prepare(item) for item in items]
        batch = {k: v.to(self.device) for k, v in self.collate(prepared).items()}
        with self._grad_context():
            out = self(batch)
        return [f[:n] for f, n in zip(out.features, out.lengths.tolist())]

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @abc.abstractmethod
    def config_dict(self) -> dict[str, Any]:
        """JSON-serialisable description: `build_encoder(**config_dict())` rebuilds the encoder
        (weights come from `source` for pretrained encoders, or from saved weights when trained)."""

    @abc.abstractmethod
    def save_pretrained(self, folder: str | Path) -> None:
        """Writes what `build_encoder(**config_dict(), weights=folder)` needs to restore this
        encoder exactly (its weights and, for HF encoders, its config and preprocessor)."""
