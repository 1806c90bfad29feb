"""The one in-memory form of a training or inference example, whatever file format it came from.

Text holds markers where media go (`<image>`, `<audio>`, `<series>`, `<video>`); the k-th marker of
a kind refers to the k-th item of that kind. A video is no modality of its own: the processor turns
each `<video>` into its sampled frames as `<image>`s (`modrwkv.processing.video`). Media items stay raw
(paths, bytes, PIL images, arrays; bytes inside a data file, a Parquet cell or a tar member, as an
`EmbeddedBytes` saying where they are) until an encoder's `prepare` reads them, so readers stay cheap
and errors name the sample's source.

Where media come apart from the text (OpenAI content parts, `modrwkv chat`'s /image), the text is
stored through `escape_markers`: a marker it holds is prefixed by `MARKER_ESCAPE`, so it is no
media place and is tokenised as its plain characters. Everything that finds, counts or splits
markers goes through `split_markers` / `count_markers`, which skip escaped ones.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]
MARKERS = {"image": "<image>", "audio": "<audio>", "series": "<series>", "video": "<video>"}
# The modalities with an encoder; videos are read by the image encoder, frame by frame.
MODALITIES = ("image", "audio", "series")
# U+FDD0 is a Unicode noncharacter, reserved for a program's internal use: no text means it. The
# escape escapes itself, so user text holding it cannot pair it with a marker of its own.
MARKER_ESCAPE = "\ufdd0"
_ANY_MARKER = "|".join(re.escape(marker) for marker in MARKERS.values())
# Left to right, an escape pair (escape + escape, escape + marker) is consumed whole; group 1 is a
# marker that stands for media.
_SCAN = re.compile(f"{MARKER_ESCAPE}(?:{MARKER_ESCAPE}|{_ANY_MARKER})|({_ANY_MARKER})")
_ESCAPED = re.compile(f"{MARKER_ESCAPE}({MARKER_ESCAPE}|{_ANY_MARKER})")
_TO_ESCAPE = re.compile(f"{MARKER_ESCAPE}|{_ANY_MARKER}")
_MODALITY_OF = {marker: modality for modality, marker in MARKERS.items()}


def escape_markers(text: str) -> str:
    """`text` as a message's content whose markers are plain characters, not media places (for
    text whose media come apart from it, such as OpenAI content parts)."""
    return _TO_ESCAPE.sub(lambda match: MARKER_ESCAPE + match.group(), text)


def unescape_markers(text: str) -> str:
    """The characters escaped text stands for (what is tokenised, and what records and displays show);
    not for text that is parsed again, whose literal markers would become media places."""
    return _ESCAPED.sub(r"\1", text)


def split_markers(text: str) -> list[str]:
    """`[text, marker, text, marker, ..., text]`: the text cut at the markers that stand for media
    (escaped ones stay in the text pieces, still escaped)."""
    pieces, start = [], 0
    for match in _SCAN.finditer(text):
        if match.group(1):
            pieces += [text[start : match.start()], match.group(1)]
            start = match.end()
    pieces.append(text[start:])
    return pieces


def marker_modality(marker: str) -> str:
    """The modality a marker of `split_markers` stands for."""
    return _MODALITY_OF[marker]


# Where a user message's media go when its text places no marker for them: "media_text", the media,
# a newline, the text (LLaVA's layout, the default); "text_media_text", the text, a newline, the media,
# a newline, the text again (the quickstart's training layout: an RNN that has read the question
# before the media knows what to look for in them). A model records the layout it was trained with
# as `media_layout` in its config.json.
MediaLayout = Literal["media_text", "text_media_text"]
MEDIA_LAYOUTS: tuple[MediaLayout, ...] = ("media_text", "text_media_text")


def check_media_layout(layout: str) -> MediaLayout:
    """`layout`, if it is one of `MEDIA_LAYOUTS`; else a ValueError naming them."""
    if layout not in MEDIA_LAYOUTS:
        raise ValueError(f"media_layout must be one of {', '.join(MEDIA_LAYOUTS)}, got {layout!r}")
    return layout  # type: ignore[return-value]


# The order of the markers of media that a text does not place itself. LLaVA's loader puts a record's
# image in front of its first user turn; the LLaVA reader (and the ShareGPT reader, through it) has
# always put unmarked images, then videos, then audio there, so data read that way was trained on this
# order. A series, which no LLaVA-style format carries, comes last (the qa reader put it after images
# and audio as well). One order for every reader and for the prompt builder: a model is asked about
# several unmarked media exactly as it was trained.
UNMARKED_ORDER = ("image", "video", "audio", "series")


def unmarked_markers(counts: Mapping[str, int]) -> str:
    """The markers of media that a text does not place itself, `counts` per modality: each marker on
    a line of its own ("<image>\\n<image>\\n<series>"), modalities in `UNMARKED_ORDER`, with no
    newline after the last. The training readers (qa, LLaVA, ShareGPT) put this block and a newline
    before the question; `modrwkv.inference.prompt.build_sample` hands it to `place_media`."""
    unknown = sorted(set(counts) - set(UNMARKED_ORDER))
    if unknown:
        raise ValueError(f"unknown modality {unknown[0]!r}; expected one of {', '.join(UNMARKED_ORDER)}")
    return "\n".join(MARKERS[modality] for modality in UNMARKED_ORDER for _ in range(counts.get(modality, 0)))


def place_media(text: str, media: str, layout: MediaLayout) -> str:
    """A user message's content with `media` (markers) placed around `text` as `layout` says; media
    with an empty text are the markers alone, as the training readers write them. A text that places
    media of its own is not repeated (its markers would be twice): the other media go before it."""
    check_media_layout(layout)
    if not text:
        return media
    if layout == "media_text" or any(count_markers([text]).values()):
        return f"{media}\n{text}"
    return f"{text}\n{media}\n{text}"


def count_markers(texts: Iterable[str]) -> dict[str, int]:
    """Media markers per modality (every modality of `MARKERS`) in `texts`, escaped ones not counted."""
    counts = dict.fromkeys(MARKERS, 0)
    for text in texts:
        for marker in split_markers(text)[1::2]:
            counts[_MODALITY_OF[marker]] += 1
    return counts


@dataclasses.dataclass
class Message:
    role: Role
    content: str


@dataclasses.dataclass
class Sample:
    messages: list[Message]
    images: list[Any] = dataclasses.field(default_factory=list)  # path | bytes | PIL.Image | array
    audios: list[Any] = dataclasses.field(default_factory=list)  # path | bytes | (waveform, sample_rate)
    series: list[Any] = dataclasses.field(default_factory=list)  # array [T] or [T, channels]
    videos: list[Any] = dataclasses.field(default_factory=list)  # path | bytes | [T, H, W, 3] array | list of frames
    source: str = ""  # "file:line" (or dataset name and index) for error messages
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)  # id, targets for evaluation, ...

    def media(self, modality: str) -> list[Any]:
        return {"image": self.images, "audio": self.audios, "series": self.series, "video": self.videos}[modality]

    def validate(self) -> None:
        """Raises ValueError (prefixed by the source) for an unusable sample."""
        where = f"{self.source}: " if self.source else ""
        if not self.messages:
            raise ValueError(f"{where}empty conversation")
        for m in self.messages:
            if m.role not in ("system", "user", "assistant"):
                raise ValueError(f"{where}unknown role {m.role!r} (expected system, user or assistant)")
            if not isinstance(m.content, str):
                raise ValueError(f"{where}message content must be text, got {type(m.content).__name__}")
        counts = count_markers(m.content for m in self.messages)
        for modality, marker in MARKERS.items():
            items = len(self.media(modality))
            if counts[modality] != items:
                raise ValueError(
                    f"{where}{counts[modality]} {marker} marker(s) in the text but {items} {modality} item(s) supplied"
                )
