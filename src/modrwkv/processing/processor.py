"""Turns a `Sample` (conversation + media) into token ids with modality placeholders and labels.

The processor owns every convention that training and inference must share: the chat template,
where media go (`placeholder` in place of their markers, or `prefix`: all media before the text, as
in the paper), how many positions each item takes (asked of its encoder and adapter, never assumed),
which positions are supervised, and truncation that never cuts a media block.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch

from ..data.sample import MARKERS, Sample
from ..encoders.base import ModalityEncoder, Prepared
from ..encoders.media import MediaError
from ..tokenizer import WorldTokenizer
from .template import ChatTemplate

IGNORE_INDEX = -100
# Rows above the World vocabulary's 65529 entries are free; one sentinel id per modality marks the
# positions whose embeddings the model replaces. They are never looked up in the embedding table.
PLACEHOLDER_IDS = {"image": 65532, "audio": 65533, "series": 65534}
_MARKER_RE = re.compile("|".join(re.escape(m) for m in MARKERS.values()))  # no groups: split() keeps text only
_MODALITY_OF = {marker: modality for modality, marker in MARKERS.items()}

SpliceMode = Literal["placeholder", "prefix"]
Truncation = Literal["drop", "shorten"]


class SampleTooLong(ValueError):
    """The sample does not fit `ctx_len` without cutting a media block or losing every label."""


@dataclasses.dataclass
class ProcessedSample:
    input_ids: torch.Tensor  # [T] long, PLACEHOLDER_IDS at media positions
    labels: torch.Tensor  # [T] long, IGNORE_INDEX where not supervised (targets are not yet shifted)
    media: dict[str, list[Prepared]]  # per modality, in the order of their positions
    source: str = ""
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return self.input_ids.shape[0]


@dataclasses.dataclass
class _Piece:
    text: str | None = None
    modality: str | None = None
    item: Any = None
    supervised: bool = False


class ModRWKVProcessor:
    """Builds model inputs from samples. `token_counts[modality](num_features)` gives the number of
    LM positions an item with that many encoder features occupies (the adapter's output length)."""

    def __init__(
        self,
        tokenizer: WorldTokenizer,
        template: ChatTemplate,
        encoders: Mapping[str, ModalityEncoder],
        token_counts: Mapping[str, Callable[[int], int]],
        splice: SpliceMode = "placeholder",
        ctx_len: int | None = None,
        truncation: Truncation = "drop",
    ) -> None:
        if splice not in ("placeholder", "prefix"):
            raise ValueError(f"splice must be 'placeholder' or 'prefix', got {splice!r}")
        if truncation not in ("drop", "shorten"):
            raise ValueError(f"truncation must be 'drop' or 'shorten', got {truncation!r}")
        self.tokenizer = tokenizer
        self.template = template
        self.encoders = dict(encoders)
        self.token_counts = dict(token_counts)
        self.splice = splice
        self.ctx_len = ctx_len
        self.truncation = truncation
        self.stats: collections.Counter[str] = collections.Counter()
        self._text_cache: dict[str, list[int]] = {}

    def __call__(self, sample: Sample, add_generation_prompt: bool = False) -> ProcessedSample:
        sample.validate()
        where = f"{sample.source}: " if sample.source else ""
        pieces = self._pieces(sample, add_generation_prompt)
        ids: list[int] = []
        labels: list[int] = []
        media: dict[str, list[Prepared]] = collections.defaultdict(list)
        blocks_end = 0
        for piece in pieces:
            if piece.modality is not None:
                if piece.modality not in self.encoders:
                    raise ValueError(f"{where}the sample has {piece.modality} input but the model has no {piece.modality} encoder")
                try:
                    prepared = self.encoders[piece.modality].prepare(piece.item)
                except MediaError as exc:  # keeps its type: a server tells bad images from bad audio
                    raise MediaError(exc.modality, f"{where}{exc}") from exc
                except ValueError as exc:
                    raise ValueError(f"{where}{exc}") from exc
                count = int(self.token_counts[piece.modality](prepared.num_features))
                if count < 1:
                    raise ValueError(f"{where}{piece.modality} item yields no tokens ({prepared.num_features} features)")
                media[piece.modality].append(prepared)
                ids.extend([PLACEHOLDER_IDS[piece.modality]] * count)
                labels.extend([IGNORE_INDEX] * count)
                blocks_end = len(ids)
            elif piece.text:
                tokens = self._encode(piece.text)
                ids.extend(tokens)
                labels.extend(tokens if piece.supervised else [IGNORE_INDEX] * len(tokens))
        ids, labels = self._truncate(ids, labels, blocks_end, where)
        self.stats["samples"] += 1
        return ProcessedSample(
            torch.tensor(ids, dtype=torch.long),
            torch.tensor(labels, dtype=torch.long),
            dict(media),
            sample.source,
            dict(sample.meta),
        )

    def _encode(self, text: str) -> list[int]:
        # Template scaffolding repeats in every sample; caching it avoids re-tokenising.
        cached = self._text_cache.get(text)
        if cached is None:
            cached = self.tokenizer.encode(text)
            if len(text) <= 32:
                self._text_cache[text] = cached
        return cached

    def _pieces(self, sample: Sample, add_generation_prompt: bool) -> list[_Piece]:
        counters: collections.Counter[str] = collections.Counter()
        media_pieces: list[_Piece] = []
        text_pieces: list[_Piece] = []

        def media_piece(marker: str) -> _Piece:
            modality = _MODALITY_OF[marker]
            counters[modality] += 1
            return _Piece(modality=modality, item=sample.media(modality)[counters[modality] - 1])

        for message in sample.messages:
            supervised = message.role == "assistant"
            text_pieces.append(_Piece(text=self.template.prefix(message.role)))
            content = self.template.clean(message.content)
            if self.splice == "prefix":
                media_pieces.extend(media_piece(m.group()) for m in _MARKER_RE.finditer(content))
                # A marker takes its following newline along: LLaVA's "<image>\n" leaves no stray line.
                content = re.sub(f"(?:{_MARKER_RE.pattern})\n?", "", content)
            parts = _MARKER_RE.split(content)
            markers = _MARKER_RE.findall(content)
            if content:
                text_pieces.append(_Piece(text=self.template.content_prefix + parts[0], supervised=supervised))
            for marker, text in zip(markers, parts[1:]):
                text_pieces.append(media_piece(marker))
                text_pieces.append(_Piece(text=text, supervised=supervised))
            text_pieces.append(_Piece(text=self.template.turn_end, supervised=supervised))
        if add_generation_prompt:
            text_pieces.append(_Piece(text=self.template.generation_prompt()))
        return media_pieces + text_pieces

    def _truncate(self, ids: list[int], labels: list[int], blocks_end: int, where: str) -> tuple[list[int], list[int]]:
        if self.ctx_len is None or len(ids) <= self.ctx_len:
            return ids, labels
        if self.truncation == "shorten" and blocks_end <= self.ctx_len:
            kept = labels[: self.ctx_len]
            if any(label != IGNORE_INDEX for label in kept) or all(label == IGNORE_INDEX for label in labels):
                self.stats["shortened"] += 1
                return ids[: self.ctx_len], kept
        self.stats["too_long"] += 1
        raise SampleTooLong(
            f"{where}sample has {len(ids)} tokens, more than ctx_len={self.ctx_len}, and cannot be "
            f"shortened without cutting a media block or every supervised token (truncation={self.truncation!r})"
        )
