"""OpenAI chat messages (JSONL, one conversation per line), the format of OpenAI fine-tuning files
and of `/v1/chat/completions` requests:

    {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR..."}},
        {"type": "text", "text": "What is shown?"}]},
      {"role": "assistant", "content": "A cat."}]}

A line may also be the bare list of messages. Content is a string or a list of parts; the parts of
one message are joined with "\\n", media parts becoming their marker in place (so the example's user
text is "<image>\\nWhat is shown?", LLaVA's layout). Media parts:
  - `image_url` / `audio_url` / `video_url` (vLLM's video part): `{"url": ...}` or the URL string. `data:` URIs become raw bytes;
    `http(s)://` URLs are refused unless `allow_remote` (then the URL string is the item, for the
    caller to fetch — readers never touch the network); `file:///abs/path` and bare paths (relative
    to `media_folder`) only with `allow_local_paths`, which a server must turn off.
  - `input_audio`: `{"data": base64, "format": "wav" | "mp3" | ...}` becomes raw bytes (decoders
    sniff the container, so the format name is not needed later).
  - `image` / `audio` / `video` (HF/TRL convention): the payload under the same key, or, without
    one, the next item of the record's top-level "images" / "audios" / "videos" list.
Each sample's `meta["media_parts"]` says which part each media item came from, per modality
(`{"image": ["messages[0].content[1]"]}`), so that a message about an item can point at it.
In this format media come only from parts, so text is text: a literal `<image>`/`<audio>`/`<series>`/`<video>`
in it is escaped (`escape_markers`) and read as those characters, never as a media place.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..sample import MARKERS, Message, Sample, escape_markers
from .base import (
    DataError,
    JsonRecordsReader,
    OnError,
    PathLike,
    as_rows,
    check_media,
    format_hint,
    lacks_fields,
    media_item,
    require,
    turn_text,
)

# The userinfo of an absolute URL ("scheme://user:password@"), up to its last "@" before the path.
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")


def redact_url(url: str, *, keep_query: bool = True) -> str:
    """A media URL as messages and logs show it: without the `user:password@` it may carry (never
    shown, not even to the client that sent it), at most its first 200 characters. Logs pass
    `keep_query=False`, dropping the query string and fragment too, where signed URLs carry their
    token: a log must not record another party's secrets."""
    shown = _USERINFO.sub(r"\1", url)
    if not keep_query:
        shown = re.split(r"[?#]", shown, maxsplit=1)[0]
    return shown[:200]


ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
_URL_PARTS = {"image_url": "image", "audio_url": "audio", "video_url": "video"}
_ITEM_PARTS = {"image": "image", "audio": "audio", "video": "video"}
PART_MODALITIES = {**_URL_PARTS, **_ITEM_PARTS, "input_audio": "audio"}  # each media part type's modality


def content_text(content: Any, field: str, source: str, media: Callable[[str, dict[str, Any], str], str]) -> str:
    """A message's content (`field`, e.g. "messages[0].content") as the text of its `Message`: a string
    is its characters, and so is a text part's text (markers escaped: in this format media come only
    from parts); content parts are joined with "\\n", a media part (a type of `PART_MODALITIES`)
    becoming what `media(type, part, where)` returns, its marker. The one reading of content parts, for
    the reader (whose `media` takes the item) and for transformers' rendered prompt (which needs the
    media's places only)."""
    if isinstance(content, str):
        return escape_markers(content)
    pieces = []
    for index, part in enumerate(require(as_rows(content), (str, list), field, source)):
        where = f"{field}[{index}]"
        require(part, dict, where, source)
        kind = part.get("type")
        if kind == "text":
            pieces.append(escape_markers(require(part.get("text"), str, f"{where}.text", source)))
        elif kind in PART_MODALITIES:
            pieces.append(media(kind, part, where))
        else:
            raise DataError(source, "unsupported_part", f"{where} is an unsupported content part (type {kind!r}; "
                            f"expected 'text' or a media part: {', '.join(sorted(PART_MODALITIES))})")
    return "\n".join(pieces)


def openai_to_sample(
    record: Any,
    *,
    source: str = "",
    media_folder: PathLike | None = None,
    allow_remote: bool = False,
    allow_local_paths: bool = True,
    verify_media: bool = False,
    answers_required: bool = True,
) -> Sample:
    """Converts one conversation (`{"messages": [...]}` or the bare list); raises `DataError`.

    `answers_required`: an assistant turn whose content is null, NaN or blank is an `empty_answer`,
    as in the other training formats (it would teach the model to say nothing).

    This is the function a server should call on a request body, with `allow_local_paths=False`
    (a client must not make the server read its files), `answers_required=False` (a chat history
    may hold an empty reply) and `on_error` semantics of its own.
    """
    parser = _Parser(source, Path(media_folder) if media_folder is not None else None, allow_remote, allow_local_paths,
                     answers_required)
    if isinstance(record, dict):
        messages = as_rows(record.get("messages"))
        if messages is None:
            raise lacks_fields(record, "openai", source, "no 'messages' list")
        for modality in _ITEM_PARTS.values():
            pool = record.get(modality + "s")
            parser.pools[modality] = list(require(pool, list, f"'{modality}s'", source)) if pool is not None else []
    else:
        messages = record
    require(messages, list, "'messages'", source)
    if not messages:
        raise DataError(source, "empty_conversation", "'messages' is empty")
    try:
        converted = [parser.message(message, index) for index, message in enumerate(messages)]
        for modality, pool in parser.pools.items():
            if pool:  # e.g. ShareGPT's lists, whose items its text markers place: here text is text
                raise DataError(
                    source,
                    "marker_mismatch",
                    f"{len(pool)} {modality}(s) of the record's '{modality}s' list are not referenced",
                )
    except DataError as err:
        if err.reason in ("marker_mismatch", "unknown_role") and (hint := format_hint(record, "openai")):
            raise DataError(err.source, err.reason, err.detail + hint) from None
        raise
    if verify_media:
        for modality in ("image", "audio", "video"):
            for item in parser.items[modality]:
                check_media(item, modality, source)
    meta: dict[str, Any] = {"id": record["id"]} if isinstance(record, dict) and record.get("id") is not None else {}
    if any(parser.parts.values()):
        meta["media_parts"] = {modality: parts for modality, parts in parser.parts.items() if parts}
    return Sample(
        messages=converted, images=parser.items["image"], audios=parser.items["audio"], videos=parser.items["video"],
        source=source, meta=meta,
    )


class _Parser:
    """State of one conversion: the options, the media collected so far (in marker order) and the
    record-level item lists that payload-less `image`/`audio` parts draw from."""

    def __init__(self, source: str, folder: Path | None, allow_remote: bool, allow_local_paths: bool,
                 answers_required: bool) -> None:
        self.source = source
        self.folder = folder
        self.allow_remote = allow_remote
        self.allow_local_paths = allow_local_paths
        self.answers_required = answers_required
        self.items: dict[str, list[Any]] = {"image": [], "audio": [], "video": []}
        self.parts: dict[str, list[str]] = {"image": [], "audio": [], "video": []}  # where each item came from
        self.pools: dict[str, list[Any]] = {}

    def message(self, message: Any, index: int) -> Message:
        where = f"messages[{index}]"
        require(message, dict, where, self.source)
        speaker = message.get("role")
        if speaker is None:
            raise DataError(self.source, "missing_field", f"{where} has no 'role'")
        require(speaker, str, f"{where}.role", self.source)
        role = ROLES.get(speaker)
        if role is None:
            raise DataError(
                self.source, "unknown_role", f"{where} has unknown role {speaker!r} (expected {sorted(ROLES)})"
            )
        content = message.get("content")
        field = f"{where}.content"
        # a tool call's null content is not a missing answer: it keeps the type error below
        answer = self.answers_required and role == "assistant" and "tool_calls" not in message
        if answer and (content is None or (isinstance(content, float) and math.isnan(content))):
            turn_text(content, field, self.source, answer=True)  # raises empty_answer
        text = content_text(content, field, self.source, self.media)
        if answer:
            turn_text(text, field, self.source, answer=True)  # a blank one (or no parts) is an empty_answer
        return Message(role, text)

    def media(self, kind: str, part: dict[str, Any], where: str) -> str:
        """The marker of the media a media part (of type `kind`, at `where`) adds, its item taken."""
        if kind in _URL_PARTS:
            payload = part.get(kind)
            url = payload.get("url") if isinstance(payload, dict) else payload
            modality = _URL_PARTS[kind]
            return self.add(modality, self.url(require(url, str, f"{where}.{kind}.url", self.source), modality, where), where)
        if kind == "input_audio":
            payload = require(part.get("input_audio"), dict, f"{where}.input_audio", self.source)
            data = require(payload.get("data"), str, f"{where}.input_audio.data", self.source)
            return self.add("audio", self.base64(data, where), where)
        modality = _ITEM_PARTS[kind]
        value = part.get(kind)
        if value is None:
            pool = self.pools.get(modality)
            if not pool:
                raise DataError(
                    self.source,
                    "marker_mismatch",
                    f"{where} is a {kind} part without payload and no '{kind}s' remain",
                )
            value = pool.pop(0)
        return self.add(
            modality, self.url(value, modality, where) if isinstance(value, str) else self.local(value, modality), where
        )

    def add(self, modality: str, item: Any, where: str) -> str:
        self.items[modality].append(item)
        self.parts[modality].append(where)
        return MARKERS[modality]

    def url(self, url: str, modality: str, where: str) -> Any:
        """An item from a URL (of the part at `where`): bytes (data URI), the URL itself (remote, if
        allowed) or a path."""
        if url.startswith("data:"):
            header, comma, data = url.partition(",")
            if not comma:
                raise DataError(self.source, "bad_media_data", f"{where}: data URI without ','")
            if header.endswith(";base64"):
                return self.base64(data, f"{where} (data URI)")
            return urllib.parse.unquote_to_bytes(data)
        parsed = urllib.parse.urlparse(url)
        scheme = parsed.scheme.lower()
        if scheme in ("http", "https"):
            if not self.allow_remote:
                raise DataError(self.source, "remote_url", f"remote URL refused (allow_remote=False): {redact_url(url)}")
            return url
        if scheme == "file":
            if parsed.netloc not in ("", "localhost"):
                raise DataError(self.source, "unsupported_url", f"file URL on another host: {redact_url(url)}")
            return self.local(urllib.parse.unquote(parsed.path), modality)
        if len(scheme) > 1:  # one letter is a Windows drive, i.e. a path
            raise DataError(self.source, "unsupported_url", f"unsupported URL scheme {scheme!r}")
        return self.local(url, modality)

    def local(self, value: Any, modality: str) -> Any:
        """A local path (checked to exist) or an in-memory item (PIL image, bytes, HF dict)."""
        in_memory = isinstance(value, dict) and (value.get("bytes") is not None or value.get("array") is not None)
        is_path = isinstance(value, str) or (isinstance(value, dict) and not in_memory)
        if is_path and not self.allow_local_paths:
            raise DataError(self.source, "local_path_refused", "local file paths are not allowed here")
        return media_item(value, modality, self.folder, self.source)

    def base64(self, data: str, where: str) -> bytes:
        try:
            decoded = base64.b64decode("".join(data.split()), validate=True)
        except (binascii.Error, ValueError) as err:
            raise DataError(self.source, "bad_media_data", f"{where}: invalid base64: {err}") from None
        if not decoded:
            raise DataError(self.source, "bad_media_data", f"{where}: empty base64 payload")
        return decoded


class OpenAIChatReader(JsonRecordsReader):
    """Reads OpenAI-messages JSONL files lazily; `reader.report` after a pass. Relative paths in
    parts are resolved against `media_folder` (default: each data file's folder)."""

    format = "openai"

    def __init__(
        self,
        paths: PathLike | Sequence[PathLike],
        *,
        media_folder: PathLike | None = None,
        allow_remote: bool = False,
        allow_local_paths: bool = True,
        verify_media: bool = False,
        on_error: OnError = "skip",
        max_examples: int = 5,
        log_limit: int = 20,
    ) -> None:
        self.options = {
            "allow_remote": allow_remote,
            "allow_local_paths": allow_local_paths,
            "verify_media": verify_media,
        }
        super().__init__(paths, media_folder, on_error=on_error, max_examples=max_examples, log_limit=log_limit)

    def _convert(self, record: Any, source: str, folder: Path) -> Sample:
        return openai_to_sample(record, source=source, media_folder=folder, **self.options)
