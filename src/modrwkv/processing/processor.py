"""Turns a `Sample` (conversation + media) into token ids with modality placeholders and labels.

The processor owns every convention that training and inference must share: the chat template,
where media go (`placeholder` in place of their markers; `prefix`: all media before the text, as
in the paper; `turn_start`: each turn's media at the start of that turn, as in WorldRWKV's current
release), how many positions each item takes (asked of its encoder and adapter, never assumed),
which positions are supervised, and truncation that never cuts a media block. With `prefix`, a user
message that holds nothing but media markers adds no turn text at all: the paper's ASR layout
(audio, then "\\x16Assistant: transcript\\x17").
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch

from ..data.sample import MediaLayout, Role, Sample, marker_modality, split_markers, unescape_markers
from ..encoders.base import ModalityEncoder, Prepared
from ..encoders.media import MediaError, VideoSampling
from ..tokenizer import WorldTokenizer
from .template import ChatTemplate
from .video import expand_videos

IGNORE_INDEX = -100
# The default placeholder ids of new models: rows above the World vocabulary's 65529 entries are
# free; one id per modality marks the positions whose embeddings the model replaces (they are never
# looked up in the embedding table). Each model records its own in its config; 65532 is also
# WorldRWKV's "<|image_pad|>".
TEXT_CACHE_ENTRIES = 4096  # short texts kept tokenised: the template scaffolding, and a bound for the rest
PLACEHOLDER_IDS = {"image": 65532, "audio": 65533, "series": 65534}

# placeholder: media where their markers are; prefix: all media before all text (the paper);
# turn_start: each turn's media at the start of that turn's content (WorldRWKV's current release).
SpliceMode = Literal["placeholder", "prefix", "turn_start"]
SPLICE_MODES = ("placeholder", "prefix", "turn_start")
Truncation = Literal["drop", "shorten"]


class SampleTooLong(ValueError):
    """The sample does not fit `ctx_len` without cutting a media block or losing every label."""


@dataclasses.dataclass
class ProcessedSample:
    input_ids: torch.Tensor  # [T] long, placeholder ids at media positions
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
    supervised_from: int | None = None  # labels start at this character of `text`; None: no labels


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
        placeholder_ids: Mapping[str, int] | None = None,
        supervise_prefix: bool | None = None,
        video: VideoSampling | None = None,
        media_layout: MediaLayout = "media_text",
    ) -> None:
        """`placeholder_ids`: the model's (default `PLACEHOLDER_IDS`). `supervise_prefix`: also
        label the assistant's role prefix ("\\x16Assistant:"), as the authors' training does;
        None takes the template's default (True for "worldrwkv", False otherwise). `video`: which
        frames of a video become images (default `VideoSampling()`: 8 frames). `media_layout`: where
        a prompt's media go when its text has no marker for them (`modrwkv.data.sample.place_media`),
        the layout the model was trained with; the prompt builders read it here
        (`modrwkv.inference.prompt.build_sample`)."""
        if splice not in SPLICE_MODES:
            raise ValueError(f"splice must be one of {', '.join(SPLICE_MODES)}, got {splice!r}")
        if truncation not in ("drop", "shorten"):
            raise ValueError(f"truncation must be 'drop' or 'shorten', got {truncation!r}")
        self.tokenizer = tokenizer
        self.template = template
        self.encoders = dict(encoders)
        self.token_counts = dict(token_counts)
        self.splice = splice
        self.ctx_len = ctx_len
        self.truncation = truncation
        self.placeholder_ids = dict(PLACEHOLDER_IDS if placeholder_ids is None else placeholder_ids)
        self.supervise_prefix = template.supervise_prefix if supervise_prefix is None else supervise_prefix
        self.video = video or VideoSampling()
        self.media_layout = media_layout
        if self.video.timestamps and splice != "placeholder":
            raise ValueError(f"video timestamps need splice 'placeholder' (with {splice!r} the frames move away from "
                             "their timestamp text)")
        self._check_media_text()
        self.stats: collections.Counter[str] = collections.Counter()
        self._text_cache: dict[str, list[int]] = {}

    def __call__(self, sample: Sample, add_generation_prompt: bool = False) -> ProcessedSample:
        sample = self.expand_videos(sample)
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
                ids.extend([self.placeholder_ids[piece.modality]] * count)
                labels.extend([IGNORE_INDEX] * count)
                blocks_end = len(ids)
            elif piece.text:
                tokens = self._encode(piece.text)
                ids.extend(tokens)
                labels.extend(self._labels(piece, tokens))
        ids, labels = self._truncate(ids, labels, blocks_end, where)
        self.stats["samples"] += 1
        return ProcessedSample(
            torch.tensor(ids, dtype=torch.long),
            torch.tensor(labels, dtype=torch.long),
            dict(media),
            sample.source,
            dict(sample.meta),
        )

    def expand_videos(self, sample: Sample) -> Sample:
        """The sample, validated, with each video replaced by its sampled frames as images."""
        sample.validate()
        if sample.videos and "image" not in self.encoders:
            where = f"{sample.source}: " if sample.source else ""
            raise ValueError(f"{where}the sample has video input but the model has no image encoder (a video is "
                             "read as image frames)")
        return expand_videos(sample, self.video)

    def _encode(self, text: str) -> list[int]:
        # Template scaffolding repeats in every sample; caching it avoids re-tokenising.
        cached = self._text_cache.get(text)
        if cached is None:
            cached = self.tokenizer.encode(text)
            # Bounded: a server tokenises every user's short messages through here too.
            if len(text) <= 32 and len(self._text_cache) < TEXT_CACHE_ENTRIES:
                self._text_cache[text] = cached
        return cached

    def _labels(self, piece: _Piece, tokens: list[int]) -> list[int]:
        """Tokens that start at or after `supervised_from` are labels (a token that straddles the
        role prefix and the content carries content, so it is labelled too)."""
        if piece.supervised_from is None:
            return [IGNORE_INDEX] * len(tokens)
        if piece.supervised_from == 0:
            return list(tokens)
        unlabelled = len(piece.text[: piece.supervised_from].encode("utf-8"))  # type: ignore[index]
        labels, offset = [], 0
        for token in tokens:
            end = offset + len(self.tokenizer.token_bytes(token))
            labels.append(token if end > unlabelled else IGNORE_INDEX)
            offset = end
        return labels

    def _check_media_text(self) -> None:
        """Text around media blocks must be special tokens: ordinary text would be tokenised into
        pieces that no released model was trained on."""
        special = self.tokenizer.special_tokens
        for modality, text in [*self.template.media_open.items(), *self.template.media_close.items()]:
            if modality in self.encoders and text not in special:
                raise ValueError(
                    f"the {self.template.name!r} template wraps {modality} in {text!r}, which this tokenizer "
                    f"does not know as a special token (it has {sorted(special) or 'none'}); load the model's "
                    "own tokenizer (model.tokenizer())"
                )

    def _clean(self, content: str) -> str:
        """The template's cleaning, and no special token's text: user text must not forge
        placeholder or block tokens."""
        content = self.template.clean(content)
        special = self.tokenizer.special_tokens
        while any(text in content for text in special):  # until none: a removal can join one ("<|x<|x|>|>")
            for text in special:
                content = content.replace(text, "")
        return content

    def _pieces(self, sample: Sample, add_generation_prompt: bool) -> list[_Piece]:
        counters: collections.Counter[str] = collections.Counter()
        media_pieces: list[_Piece] = []
        text_pieces: list[_Piece] = []

        def media_piece(marker: str) -> _Piece:
            modality = marker_modality(marker)  # videos were expanded into image markers before
            counters[modality] += 1
            return _Piece(modality=modality, item=sample.media(modality)[counters[modality] - 1])

        for message in sample.messages:
            split = split_markers(message.content)
            # Each text piece is cleaned on its own: what cleaning removes cannot join the text
            # around it into a marker ("<ima\x16ge>") that would take a media slot. Pieces joined
            # again (below) are cleaned again: "<|vision<image>_start|>" joins into a special token's text.
            texts = [self._clean(unescape_markers(text)) for text in split[::2]]
            items = [media_piece(marker) for marker in split[1::2]]
            turn: list[str | _Piece] = []  # the turn's content: text and media, in order
            if self.splice in ("prefix", "turn_start"):
                # A marker takes its following newline along: LLaVA's "<image>\n" leaves no stray line.
                content = self._clean(texts[0] + "".join(text.removeprefix("\n") for text in texts[1:]))
                if self.splice == "prefix":
                    media_pieces.extend(items)
                    if items and message.role == "user" and not content.strip():
                        # The paper's ASR layout: media alone stand for the user's turn.
                        continue
                else:
                    turn.extend(items)
                if content:
                    turn.append(content)
            else:
                if items or texts[0]:
                    turn.append(texts[0])
                for item, text in zip(items, texts[1:]):
                    turn.extend([item, text])
            text_pieces.extend(self._turn(message.role, turn))
        if add_generation_prompt:
            text_pieces.append(_Piece(text=self.template.generation_prompt()))
        return media_pieces + text_pieces

    def _turn(self, role: Role, content: list[str | _Piece]) -> list[_Piece]:
        """One turn as pieces: role prefix, content (its first text after the template's content
        prefix, media wrapped in the template's block text), turn end. With `whole_turns`, each
        run of text between media is one piece, tokenised as one string."""
        template = self.template
        assistant = role == "assistant"
        labelled_prefix = assistant and self.supervise_prefix
        pieces = [_Piece(text=template.prefix(role), supervised_from=0 if labelled_prefix else None)]
        first_text = True
        for part in content:
            if isinstance(part, _Piece):
                if part.modality in template.media_open:
                    pieces.append(_Piece(text=template.media_open[part.modality]))
                pieces.append(part)
                if part.modality in template.media_close:
                    pieces.append(_Piece(text=template.media_close[part.modality]))
                continue
            text = template.content_prefix + part if first_text else part
            first_text = False
            pieces.append(_Piece(text=text, supervised_from=0 if assistant else None))
        pieces.append(_Piece(text=template.turn_end, supervised_from=0 if assistant else None))
        return _merge_text(pieces) if template.whole_turns else pieces

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


def _merge_text(pieces: list[_Piece]) -> list[_Piece]:
    """Joins adjacent text pieces; the joined piece is labelled from the first labelled part on
    (labels never stop within a turn: only its leading scaffolding goes unlabelled)."""
    merged: list[_Piece] = []
    for piece in pieces:
        last = merged[-1] if merged else None
        if piece.text is None or last is None or last.text is None:
            merged.append(dataclasses.replace(piece))
            continue
        if last.supervised_from is None and piece.supervised_from is not None:
            last.supervised_from = len(last.text) + piece.supervised_from
        last.text += piece.text
    return merged
