"""The one in-memory form of a training or inference example, whatever file format it came from.

Text holds markers where media go (`<image>`, `<audio>`, `<series>`, `<video>`); the k-th marker of
a kind refers to the k-th item of that kind. A video is no modality of its own: the processor turns
each `<video>` into its sampled frames as `<image>`s (`modrwkv.processing.video`). Media items stay raw (paths, bytes, PIL images, arrays) until
an encoder's `prepare` reads them, so readers stay cheap and errors name the sample's source.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]
MARKERS = {"image": "<image>", "audio": "<audio>", "series": "<series>", "video": "<video>"}
# The modalities with an encoder; videos are read by the image encoder, frame by frame.
MODALITIES = ("image", "audio", "series")


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
        for modality, marker in MARKERS.items():
            count = sum(m.content.count(marker) for m in self.messages)
            items = len(self.media(modality))
            if count != items:
                raise ValueError(
                    f"{where}{count} {marker} marker(s) in the text but {items} {modality} item(s) supplied"
                )
