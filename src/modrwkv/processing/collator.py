"""Batches processed samples: pads token ids and labels, builds the padding mask, and collates each
modality's prepared items (in sample order, then position order, which is the order in which the
model fills placeholder positions)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Literal

import torch

from ..encoders.base import ModalityEncoder
from .processor import IGNORE_INDEX, ProcessedSample


@dataclasses.dataclass
class Batch:
    input_ids: torch.Tensor  # [B, T]
    labels: torch.Tensor  # [B, T]
    attention_mask: torch.Tensor  # [B, T] bool, False on padding
    media: dict[str, dict[str, torch.Tensor]]  # modality -> encoder batch
    sources: list[str]

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.input_ids.to(device),
            self.labels.to(device),
            self.attention_mask.to(device),
            {m: {k: v.to(device) for k, v in b.items()} for m, b in self.media.items()},
            self.sources,
        )

    @property
    def num_label_tokens(self) -> int:
        return int((self.labels[:, 1:] != IGNORE_INDEX).sum())


class Collator:
    def __init__(
        self,
        encoders: Mapping[str, ModalityEncoder],
        padding_side: Literal["right", "left"] = "right",
        pad_id: int = 0,
    ) -> None:
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        self.encoders = dict(encoders)
        self.padding_side = padding_side
        self.pad_id = pad_id

    def __call__(self, samples: Sequence[ProcessedSample]) -> Batch:
        if not samples:
            raise ValueError("cannot collate an empty list of samples")
        T = max(len(s) for s in samples)
        B = len(samples)
        input_ids = torch.full((B, T), self.pad_id, dtype=torch.long)
        labels = torch.full((B, T), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros(B, T, dtype=torch.bool)
        for row, s in enumerate(samples):
            span = slice(0, len(s)) if self.padding_side == "right" else slice(T - len(s), T)
            input_ids[row, span] = s.input_ids
            labels[row, span] = s.labels
            mask[row, span] = True
        media = {}
        for modality in sorted({m for s in samples for m, items in s.media.items() if items}):
            items = [p for s in samples for p in s.media.get(modality, [])]
            media[modality] = self.encoders[modality].collate(items)
        return Batch(input_ids, labels, mask, media, [s.source for s in samples])
