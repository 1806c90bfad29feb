"""LLaMA-Factory's ShareGPT format (JSON array or JSONL), as its data/README.md describes it:

    {"conversations": [{"from": "human", "value": "<image>What is in the picture?"},
                       {"from": "gpt", "value": "A cat."}],
     "system": "You are brief.", "images": ["pics/cat.jpg"]}
    {"messages": [{"role": "user", "content": "<audio>What does the speaker say?"},
                  {"role": "assistant", "content": "Hello."}], "audios": ["clips/1.wav"]}

`<image>`, `<video>` and `<audio>` in the text are the k-th item of the record's `images`,
`videos`, `audios` lists, which are LLaMA-Factory's markers and ours. Columns and tags are
LLaMA-Factory's defaults (messages in `conversations`, `from` / `value`, `human` / `gpt` /
`system`), and `role` / `content` / `user` / `assistant` (its "openai" variant, the `messages`
column) are recognised as well. Other names come from `columns` and `tags` (the entries of the same
name in `dataset_info.json`); when neither is given, a `dataset_info.json` beside the data file
whose entry has this `file_name` and `"formatting": "sharegpt"` supplies them, as LLaMA-Factory
reads it. A top-level system prompt (the `system` column) becomes the first, system, turn.
Tool use (`function_call` / `observation` turns, a `tools` column) has no place in a ModRWKV
conversation: such records are reported, not trained on as plain text.

Each record is mapped onto the LLaVA converter (`llava_to_sample`): the same roles, the same media
resolution and checks, the same marker insertion for a record without markers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..sample import Sample
from .base import (
    DataError,
    JsonRecordsReader,
    OnError,
    PathLike,
    as_rows,
    check_columns,
    file_records,
    lacks_fields,
    one_format,
    require,
    turn_text,
)
from .llava import llava_to_sample

logger = logging.getLogger(__name__)

# LLaMA-Factory's defaults (data/README.md): dataset_info.json's "columns" and "tags".
DEFAULT_COLUMNS = {"messages": "conversations", "system": None, "tools": None, "images": "images",
                   "videos": "videos", "audios": "audios"}
DEFAULT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"}
# Its "openai" variant, recognised without a mapping.
OPENAI_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
               "system_tag": "system"}


def sharegpt_columns(columns: Any) -> dict[str, str | None] | None:
    """`columns` ({column name: the file's column}, LLaMA-Factory's `DEFAULT_COLUMNS` keys) checked
    (`base.check_columns`; `system` and `tools` may be null, for none); None for none."""
    return check_columns(columns, tuple(DEFAULT_COLUMNS), "sharegpt", unmapped=True)


def sharegpt_to_sample(
    record: Any,
    *,
    source: str = "",
    media_folder: PathLike | None = None,
    columns: Mapping[str, str | None] | None = None,
    tags: Mapping[str, str] | None = None,
    verify_media: bool = False,
) -> Sample:
    """One ShareGPT record as a sample; raises `DataError` naming the source and the field."""
    require(record, dict, "record", source)
    names = {**DEFAULT_COLUMNS, **(columns or {})}
    turns_key = names["messages"]
    if turns_key not in record and columns is None and "messages" in record:  # the openai variant
        turns_key = "messages"
    turns = as_rows(record.get(turns_key))
    if turns is None:
        raise lacks_fields(record, "sharegpt", source, f"no {turns_key!r} list (the messages column; fields: "
                           f"{sorted(record)})")
    require(turns, list, repr(turns_key), source)
    for modality in ("image", "video", "audio"):  # LLaVA's one-item fields, which would be dropped unseen
        if record.get(modality) is not None and modality not in names.values():
            raise lacks_fields(record, "sharegpt", source, f"{modality!r} is not a ShareGPT column: its "
                               f"{modality}s are the {names[modality + 's'] or modality + 's'!r} list")
    tools = record.get(names["tools"] or "tools")
    if tools:
        raise DataError(source, "unsupported_part", "the record describes tools; tool use (function calls and "
                        "their results) is not supported, so it is not trained on")
    roles = _roles(tags, turns)
    conversations = []
    system_column = names["system"] or "system"
    if isinstance(record.get(system_column), str) and record[system_column].strip():
        conversations.append({"from": "system", "value": record[system_column]})
    role_key, content_key = roles["role_tag"], roles["content_tag"]
    for index, turn in enumerate(turns):
        require(turn, dict, f"{turns_key}[{index}]", source)
        if role_key not in turn or content_key not in turn:
            raise DataError(source, "missing_field", f"{turns_key}[{index}] needs {role_key!r} and {content_key!r} "
                            f"(keys: {sorted(turn)}); other names are set with tags role_tag / content_tag")
        speaker = turn[role_key]
        role = roles["names"].get(speaker) if isinstance(speaker, str) else None
        if role is None:
            if speaker in (roles.get("function_tag"), roles.get("observation_tag")):
                raise DataError(source, "unknown_role", f"{turns_key}[{index}] is a {speaker!r} turn; tool use is "
                                "not supported, so the record is not trained on")
            raise DataError(source, "unknown_role", f"{turns_key}[{index}] has role {speaker!r}; expected "
                            f"{sorted(roles['names'])} (other names are set with tags user_tag / assistant_tag)")
        # checked here, so that an error names this record's column and tags, not the LLaVA form it becomes
        text = turn_text(turn[content_key], f"{turns_key}[{index}].{content_key}", source, answer=role == "assistant")
        conversations.append({"from": role, "value": text})
    converted: dict[str, Any] = {"conversations": conversations}
    for modality in ("image", "video", "audio"):
        value = record.get(names[modality + "s"] or modality + "s")
        if value is not None:
            converted[modality + "s"] = value
    if record.get("id") is not None:
        converted["id"] = record["id"]
    return llava_to_sample(converted, source=source, image_folder=media_folder, verify_media=verify_media)


def _roles(tags: Mapping[str, str] | None, turns: list[Any]) -> dict[str, Any]:
    """The tag names in force, and {speaker: our role}. Without `tags`, the first turn's keys tell
    the defaults (from/value) from the openai variant (role/content)."""
    if tags is None:
        first = turns[0] if turns and isinstance(turns[0], dict) else {}
        chosen = dict(OPENAI_TAGS if "role" in first and "from" not in first else DEFAULT_TAGS)
    else:
        chosen = {**DEFAULT_TAGS, **tags}
    names = {chosen["user_tag"]: "user", chosen["assistant_tag"]: "assistant", chosen["system_tag"]: "system"}
    return {**chosen, "names": names}


def dataset_info_entry(path: Path) -> dict[str, Any] | None:
    """The `dataset_info.json` entry (beside `path`) that names this file with sharegpt formatting."""
    info_path = path.parent / "dataset_info.json"
    if not info_path.is_file():
        return None
    try:
        info = json.loads(info_path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(str(info_path), "unreadable_file", f"cannot read LLaMA-Factory's dataset description: {err}") \
            from None
    if not isinstance(info, dict):
        raise DataError(str(info_path), "unreadable_file", "expected an object of dataset descriptions")
    for name, entry in info.items():
        if isinstance(entry, dict) and entry.get("file_name") == path.name and entry.get("formatting") == "sharegpt":
            for key in ("columns", "tags"):
                if not isinstance(entry.get(key, {}), dict):
                    raise DataError(str(info_path), "wrong_type", f"{name}.{key} must be an object")
            logger.info("%s: columns and tags from %s (%s)", path, info_path, name)
            return entry
    return None


def sharegpt_mapping(path: Path, columns: Mapping[str, str | None] | None,
                     tags: Mapping[str, str] | None) -> dict[str, Any]:
    """The column and tag names `path` is read with: those given, else (neither given) its
    `dataset_info.json` entry's, as LLaMA-Factory reads it; None each for the defaults."""
    if columns is None and tags is None and (entry := dataset_info_entry(path)) is not None:
        columns, tags = entry.get("columns"), entry.get("tags")
    return {"columns": columns, "tags": tags}


class SharegptReader(JsonRecordsReader):
    """Reads LLaMA-Factory ShareGPT files lazily (see the module docstring); `reader.report` after a
    pass. Media paths are relative to `media_folder` (default: each data file's folder)."""

    format = "sharegpt"

    def __init__(
        self,
        paths: PathLike | Sequence[PathLike],
        *,
        media_folder: PathLike | None = None,
        columns: Mapping[str, str | None] | None = None,
        tags: Mapping[str, str] | None = None,
        verify_media: bool = False,
        on_error: OnError = "skip",
        max_examples: int = 5,
        log_limit: int = 20,
    ) -> None:
        self.verify_media = verify_media
        self.columns, self.tags = sharegpt_columns(columns), tags
        super().__init__(paths, media_folder, on_error=on_error, max_examples=max_examples, log_limit=log_limit)

    def _candidates(self) -> Iterator[Callable[[], Sample]]:
        for path in self.paths:
            folder = self.media_folder if self.media_folder is not None else path.parent
            options = {"media_folder": folder, **sharegpt_mapping(path, self.columns, self.tags),
                       "verify_media": self.verify_media}
            for _, build in one_format(path, self.format, file_records(path), lambda record, source, options=options:
                                       sharegpt_to_sample(record, source=source, **options),
                                       formats=self.report.formats):
                yield build

    def _convert(self, record: Any, source: str, folder: Path) -> Sample:  # _candidates converts with the mapping
        return sharegpt_to_sample(record, source=source, media_folder=folder, columns=self.columns, tags=self.tags,
                                  verify_media=self.verify_media)
