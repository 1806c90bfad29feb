"""From a conversation to an `EncodedPrompt`: token ids, the media spans they contain, and the
message boundaries where a prefix state may be cached.

Messages are processed one by one and their ids concatenated. With placeholder and turn-start
splicing this gives exactly the ids of processing the whole conversation at once (the processor
tokenises every turn on its own), and it tells where each message starts, which is what lets a multi-turn session feed
only a new turn, and the prefix-state cache recognise a conversation it has seen before.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..data.readers import openai_to_sample
from ..data.sample import MODALITIES, MediaLayout, Message, Sample, count_markers, place_media, unmarked_markers
from ..encoders.base import Prepared
from ..processing import ModRWKVProcessor

MessageLike = Message | Mapping[str, Any]
Messages = str | Sequence[MessageLike]
ROLES = ("system", "user", "assistant")  # a text message's roles (with content parts, the OpenAI reader's)


@dataclasses.dataclass(frozen=True, eq=False)  # compared by identity: tensors have no truth value
class MediaSpan:
    """One media item of a prompt: the positions [start, end) its embeddings fill."""

    modality: str
    start: int
    end: int
    prepared: Prepared
    digest: bytes  # of the prepared tensors: the same picture from a path or a data URI matches


@dataclasses.dataclass(frozen=True)
class EncodedPrompt:
    """Token ids (placeholder ids at media positions) plus what the engine needs to run them.

    `message_ends[i]` is the position after message i (empty for prefix splicing, where all media
    precede the text); `system_end` the position after the leading system messages (0 if none).
    """

    ids: tuple[int, ...]
    spans: tuple[MediaSpan, ...]
    message_ends: tuple[int, ...]
    system_end: int

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def media_end(self) -> int:
        """Position after the last media item (0 without media)."""
        return max((s.end for s in self.spans), default=0)

    def store_points(self) -> list[int]:
        """Prefix lengths whose states are worth caching: after the system prompt, after the last
        media item (questions about the same media share it), and before the last user message
        (a client that re-sends the history next turn continues from there)."""
        points = {self.system_end, self.media_end}
        if len(self.message_ends) >= 2:
            points.add(self.message_ends[-2])
        return sorted(p for p in points if 0 < p < len(self.ids))

    def split_points(self) -> list[int]:
        """Where prefill always stops and restarts: at every message boundary and after the media.
        A cached state can only be found at one of these, so reading a prompt performs the same
        operations whether or not part of it came from the cache (results are bit-identical)."""
        points = set(self.store_points()) | set(self.message_ends)
        return sorted(p for p in points if 0 < p < len(self.ids))

    def digest(self, end: int) -> str:
        """Identifies the prefix ids[:end] together with the media it contains."""
        h = hashlib.sha256(np.asarray(self.ids[:end], dtype=np.int32).tobytes())
        for span in self.spans:
            if span.end <= end:
                h.update(span.modality.encode())
                h.update(span.digest)
        return h.hexdigest()

    def spans_in(self, start: int, end: int) -> list[MediaSpan]:
        """The media items within positions [start, end), which must not cut through one."""
        inside = []
        for span in self.spans:
            if start <= span.start and span.end <= end:
                inside.append(span)
            elif span.start < end and span.end > start:
                raise ValueError(f"positions [{start}, {end}) cut through a {span.modality} item")
        return inside


def prepared_digest(prepared: Prepared) -> bytes:
    """Identifies an item by its prepared tensors (or by the digest its preparer computed)."""
    if prepared.digest is not None:
        return prepared.digest
    h = hashlib.sha256(str(prepared.num_features).encode())
    for name in sorted(prepared.tensors):
        tensor = prepared.tensors[name].detach().cpu().contiguous()
        h.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        h.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return h.digest()


def _as_items(value: Any) -> list[Any]:
    """A list of media items from a list, or from one bare item (an audio (waveform, rate) tuple
    is one item)."""
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _has_payloadless_parts(messages: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a content part is an `image` / `audio` / `video` part without its payload."""
    return any(isinstance(part, Mapping) and part.get("type") in ("image", "audio", "video")
               and part.get(part["type"]) is None
               for m in messages if isinstance(m.get("content"), list) for part in m["content"])


def build_sample(
    messages: Messages,
    *,
    images: Any = None,
    audio: Any = None,
    series: Any = None,
    videos: Any = None,
    allow_local_paths: bool = True,
    media_layout: MediaLayout = "media_text",
) -> Sample:
    """A `Sample` from the forms users write conversations in.

    `messages`: a string (one user message), `Message`s, or `{"role", "content"}` dicts whose
    content is text or a list of OpenAI content parts. Text may hold `<image>` / `<audio>` /
    `<series>` / `<video>` markers, filled in order by `images` / `audio` / `series` / `videos`; if a
    modality has items but no markers, its markers are placed in the last user message as
    `media_layout` says (the model's `media_layout`: the layout it was trained with; the default,
    "media_text", puts them at the start, LLaVA's layout), one marker a line in the training readers'
    order (`modrwkv.data.sample.unmarked_markers`: images, videos, audio, series). Markers in the
    text, and content parts, place media where they are, whatever the layout. Text meant as its
    characters, markers included, is passed through `modrwkv.data.escape_markers` (a content part's
    text always is). A video is a path, bytes, a [T, H, W, 3] array or a list of frames, so several
    videos are a list of those (`videos=[frames]` for one video given as frames).
    """
    if isinstance(messages, str):
        messages = [Message("user", messages)]
    if isinstance(messages, Mapping) or not isinstance(messages, Sequence) or not messages:
        raise ValueError("messages must be a string or a non-empty list of messages")
    items = {"image": _as_items(images), "audio": _as_items(audio), "series": _as_items(series),
             "video": _as_items(videos)}
    with_parts = [m for m in messages if isinstance(m, Mapping) and not isinstance(m.get("content"), str)]
    if with_parts:
        as_dicts = [m if isinstance(m, Mapping) else {"role": m.role, "content": m.content} for m in messages]
        record: dict[str, Any] = {"messages": as_dicts}
        if any(items.values()):
            # transformers' processors take `{"type": "image"}` parts without payload, filled in order
            # by images= (the records' "images" list of the HF/TRL convention)
            if items["series"] or not _has_payloadless_parts(as_dicts):
                raise ValueError("pass media either as content parts or as images=/audio=/series=/videos=, not both "
                                 '(images= fills only {"type": "image"} parts without a payload)')
            record.update(images=items["image"], audios=items["audio"], videos=items["video"])
        return openai_to_sample(record, allow_local_paths=allow_local_paths,
                                answers_required=False)  # a prompt's history may hold an empty reply
    converted = []
    for index, m in enumerate(messages):
        if isinstance(m, Message):
            converted.append(Message(m.role, m.content))
            continue
        if not isinstance(m, Mapping):
            raise ValueError(f"messages[{index}] must be a Message or a dict, got {type(m).__name__}")
        role = m.get("role")
        if role not in ROLES:
            raise ValueError(f"messages[{index}] has role {role!r}; expected one of {list(ROLES)}")
        content = m.get("content")
        if not isinstance(content, str):
            raise ValueError(f"messages[{index}] content must be text, got {type(content).__name__}")
        converted.append(Message(role, content))
    counts = count_markers(m.content for m in converted)
    # the training readers' block (one marker a line, images first), placed as the model was trained
    unmarked = {modality: len(found) for modality, found in items.items() if found and not counts[modality]}
    if unmarked:
        users = [m for m in converted if m.role == "user"]
        if not users:
            raise ValueError(f"{next(iter(unmarked))} items were given but there is no user message to attach them to")
        users[-1].content = place_media(users[-1].content, unmarked_markers(unmarked), media_layout)
    sample = Sample(converted, images=items["image"], audios=items["audio"], series=items["series"],
                    videos=items["video"])
    sample.validate()
    return sample


def encode_sample(processor: ModRWKVProcessor, sample: Sample, add_generation_prompt: bool = True) -> EncodedPrompt:
    """Processes a sample message by message (see the module docstring) into an `EncodedPrompt`."""
    sample = processor.expand_videos(sample)  # validates; its frames are then images like any other
    ids: list[int] = []
    media: dict[str, list[Prepared]] = {m: [] for m in MODALITIES}
    message_ends: list[int] = []
    if processor.splice == "prefix":
        processed = processor(sample, add_generation_prompt=add_generation_prompt)
        ids = processed.input_ids.tolist()
        for modality, prepared in processed.media.items():
            media[modality].extend(prepared)
    else:
        used = {m: 0 for m in MODALITIES}
        for message in sample.messages:
            own, counts = {}, count_markers([message.content])
            for modality in MODALITIES:
                n = counts[modality]
                own[modality] = sample.media(modality)[used[modality] : used[modality] + n]
                used[modality] += n
            part = Sample([message], images=own["image"], audios=own["audio"], series=own["series"],
                          source=sample.source)
            processed = processor(part)
            ids.extend(processed.input_ids.tolist())
            for modality, prepared in processed.media.items():
                media[modality].extend(prepared)
            message_ends.append(len(ids))
        if add_generation_prompt:
            ids.extend(processor.tokenizer.encode(processor.template.generation_prompt()))
    system_end = 0
    for message, end in zip(sample.messages, message_ends):
        if message.role != "system":
            break
        system_end = end
    return EncodedPrompt(tuple(ids), _spans(ids, media, processor), tuple(message_ends), system_end)


def _spans(ids: list[int], media: Mapping[str, list[Prepared]], processor: ModRWKVProcessor) -> tuple[MediaSpan, ...]:
    """Assigns each item its positions: items of one modality fill that modality's placeholder
    positions in order, each taking as many as its adapter outputs."""
    array = np.asarray(ids)
    spans = []
    for modality, items in media.items():
        positions = np.flatnonzero(array == processor.placeholder_ids[modality]).tolist()
        cursor = 0
        for prepared in items:
            count = int(processor.token_counts[modality](prepared.num_features))
            block = positions[cursor : cursor + count]
            if len(block) != count or block[-1] - block[0] != count - 1:
                raise ValueError(f"{modality} placeholder positions do not match the items' token counts")
            spans.append(MediaSpan(modality, block[0], block[-1] + 1, prepared, prepared_digest(prepared)))
            cursor += count
        if cursor != len(positions):
            raise ValueError(f"{len(positions) - cursor} {modality} placeholder positions have no item")
    return tuple(sorted(spans, key=lambda s: s.start))
