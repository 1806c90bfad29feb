"""LLaVA conversation data (JSON array or JSONL), the format of LLaVA-595K/665K and most open
vision-instruction sets:

    {"id": "000123", "image": "coco/train2017/000123.jpg",          # or "images": [..] for several
     "conversations": [{"from": "human", "value": "<image>\\nWhat is shown?"},
                       {"from": "gpt", "value": "A cat."}]}
    {"id": "v7", "video": "clips/v7.mp4",                             # or "videos": [..]
     "conversations": [{"from": "human", "value": "<video>\\nWhat happens?"}, ...]}

Roles "human"/"user", "gpt"/"assistant" and "system" are accepted (any case), and ShareGPT-style
"role"/"content" keys as well as "from"/"value". A record with images but no `<image>` marker gets
one `<image>\\n` per image at the start of its first user turn, which is where LLaVA's own loader puts
the image; likewise videos and `<video>\\n` (after the images). Records without media are text-only
samples. A video becomes image frames in the processor (`modrwkv.processing.video`). Audio
(`audio` / `audios`, `<audio>`) works the same way (after the videos), as LLaMA-Factory's ShareGPT
files use it (`sharegpt.py`, which maps such files onto this converter). That order is
`modrwkv.data.sample.unmarked_markers`'s, which the qa reader and the prompt builder use too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..sample import MARKERS, Message, Sample, count_markers, unmarked_markers
from .base import (
    DataError,
    EmbeddedBytes,
    JsonRecordsReader,
    OnError,
    PathLike,
    as_rows,
    check_media,
    first_key,
    is_pil_image,
    lacks_fields,
    media_item,
    require,
    turn_text,
)

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def llava_to_sample(
    record: Any,
    *,
    source: str = "",
    image_folder: PathLike | None = None,
    verify_media: bool = False,
) -> Sample:
    """Converts one LLaVA record; raises `DataError` (with `source`) for a bad one.

    Relative image paths are resolved against `image_folder` (as-is when None) and must exist;
    PIL images, bytes and HF `{"bytes", "path"}` dicts pass through. `verify_media` also decodes
    each image file, which catches truncated downloads at the cost of a full decode.
    """
    require(record, dict, "record", source)
    conversations = as_rows(record.get("conversations"))
    if conversations is None:
        raise lacks_fields(record, "llava", source, "no 'conversations' list")
    require(conversations, list, "'conversations'", source)
    if not conversations:
        raise DataError(source, "empty_conversation", "'conversations' is empty")
    messages = [_message(turn, index, source) for index, turn in enumerate(conversations)]

    folder = Path(image_folder) if image_folder is not None else None
    media = {}
    unmarked = {}
    counts = count_markers(m.content for m in messages)
    for modality in ("image", "video", "audio"):
        references = _references(record, modality, source)
        if references and counts[modality] == 0:
            unmarked[modality] = len(references)
        elif counts[modality] != len(references):
            raise DataError(source, "marker_mismatch", f"{counts[modality]} {MARKERS[modality]} marker(s) in the "
                            f"text but {len(references)} {modality}(s)")
        media[modality] = [media_item(ref, modality, folder, source) for ref in references]
        if verify_media:
            for item in media[modality]:
                check_media(item, modality, source)
    if unmarked:
        _insert_markers(messages, unmarked, source)
    meta = {"id": record["id"]} if record.get("id") is not None else {}
    return Sample(messages=messages, images=media["image"], videos=media["video"], audios=media["audio"],
                  source=source, meta=meta)


def _message(turn: Any, index: int, source: str) -> Message:
    require(turn, dict, f"conversations[{index}]", source)
    role_key = first_key(turn, ("from", "role"))
    value_key = first_key(turn, ("value", "content")) or next((k for k in ("value", "content") if k in turn), None)
    if role_key is None or value_key is None:
        raise DataError(source, "missing_field", f"conversations[{index}] needs 'from' and 'value' (keys: "
                        f"{sorted(turn)})")
    speaker = require(turn[role_key], str, f"conversations[{index}].{role_key}", source)
    role = ROLES.get(speaker.lower())
    if role is None:
        raise DataError(
            source, "unknown_role", f"conversations[{index}] has unknown role {speaker!r} (expected {sorted(ROLES)})"
        )
    return Message(role, turn_text(turn[value_key], f"conversations[{index}].{value_key}", source,
                                   answer=role == "assistant"))


def _references(record: dict[str, Any], modality: str, source: str) -> list[Any]:
    """The record's images (videos) as a list, from "image" ("video"), one or a list, or "images"
    ("videos"), a list or one."""
    present = [key for key in (modality, modality + "s") if record.get(key) is not None]
    if len(present) == 2:
        raise DataError(source, "wrong_type", f"record has both '{modality}' and '{modality}s'; use one")
    if not present:
        return []
    value = record[present[0]]
    if isinstance(value, (str, bytes, EmbeddedBytes, dict)) or is_pil_image(value):
        return [value]
    return list(require(value, (list, tuple), f"'{present[0]}'", source))


def _insert_markers(messages: list[Message], unmarked: dict[str, int], source: str) -> None:
    """The markers of the media the text does not place (`unmarked`: count per modality), one line
    each, in front of the first user turn, where LLaVA's loader puts the image."""
    user = next((m for m in messages if m.role == "user"), None)
    if user is None:
        modality, count = next(iter(unmarked.items()))
        raise DataError(source, "marker_mismatch", f"{count} {modality}(s) but no marker and no user turn to put one in")
    user.content = f"{unmarked_markers(unmarked)}\n{user.content}"


class LlavaReader(JsonRecordsReader):
    """Reads LLaVA JSON/JSONL files lazily: `for sample in LlavaReader("llava_v1_5_mix665k.json",
    image_folder="data/"): ...`, then `reader.report`. Without `image_folder`, image paths are
    relative to each data file's folder. Sources are "path:[i]" (JSON array) or "path:line" (JSONL)."""

    format = "llava"

    def __init__(
        self,
        paths: PathLike | Sequence[PathLike],
        *,
        image_folder: PathLike | None = None,
        verify_media: bool = False,
        on_error: OnError = "skip",
        max_examples: int = 5,
        log_limit: int = 20,
    ) -> None:
        self.verify_media = verify_media
        super().__init__(paths, image_folder, on_error=on_error, max_examples=max_examples, log_limit=log_limit)

    def _convert(self, record: Any, source: str, folder: Path) -> Sample:
        return llava_to_sample(record, source=source, image_folder=folder, verify_media=self.verify_media)
