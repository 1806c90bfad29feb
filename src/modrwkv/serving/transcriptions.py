"""OpenAI's `/v1/audio/transcriptions`: a multipart/form-data upload, checked field by field.

The recording is cut at its pauses (`speech_segments`, default `SegmentSettings`) and each segment
is asked through the server's scheduler, as `ModRWKVPipeline.transcribe(long_form=True)` asks it;
the reply is `render_transcript`'s (json, text, srt, vtt, verbose_json). Fields this server cannot
honour are refused by name rather than ignored: `language` (the model has no language switch: it
writes whatever language it was trained on), `prompt` (it was never trained to continue earlier
text), word timestamps (it produces none) and `include` (its only value, `logprobs`, asks for
per-token log-probabilities, which this reply does not carry).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from starlette import formparsers
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from ..inference.transcript_formats import TRANSCRIPT_FORMATS
from .limits import APIError
from .protocol import ModelNames

MAX_FORM_FIELDS = 32


@dataclasses.dataclass
class TranscriptionRequest:
    model: str  # the name the reply reports
    audio: bytes
    filename: str
    response_format: str
    temperature: float
    stream: bool


async def read_form(headers: Mapping[str, str], body: bytes) -> Any:
    """The multipart/form-data fields of a request body already read (within the body limit)."""
    content_type = headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        shown = content_type.split(";")[0] or "none"
        raise APIError(400, f"/v1/audio/transcriptions takes multipart/form-data (a 'file' field with the recording "
                       f"and a 'model' field), not {shown}", code="invalid_content_type")

    if formparsers.multipart is None:  # Starlette parses forms with it, and asserts it is there
        raise APIError(501, "this server cannot read uploads: /v1/audio/transcriptions needs the 'python-multipart' "
                       "package, which is not installed: pip install 'modrwkv[serve]'", type="server_error",
                       code="multipart_unsupported")

    async def chunks() -> AsyncGenerator[bytes, None]:
        yield body

    try:
        # as many file parts as fields: a text field sent as a file part (with a filename) then reaches
        # `parse_transcription`, which names it, instead of a bare "Too many files"
        return await MultiPartParser(headers, chunks(), max_files=MAX_FORM_FIELDS, max_fields=MAX_FORM_FIELDS).parse()
    except MultiPartException as exc:
        raise APIError(400, f"the multipart/form-data body cannot be read: {exc.message}", code="invalid_form") from None


def _text(form: Any, name: str) -> str | None:
    return _text_value(name, form.get(name))


def _text_value(name: str, value: Any) -> Any:
    """A text field's value; a 400 naming the field when it was sent as a file part."""
    if isinstance(value, UploadFile):
        raise APIError(400, f"'{name}' must be a text field (a part without a filename), not a file "
                       f"({value.filename!r})", param=name)
    return value


def _flag(form: Any, name: str) -> bool:
    value = (_text(form, name) or "false").strip().lower()
    if value not in ("true", "false"):
        raise APIError(400, f"'{name}' must be true or false, got {value[:20]!r}", param=name)
    return value == "true"


async def parse_transcription(form: Any, names: ModelNames) -> TranscriptionRequest:
    """Checks the form's fields; raises `APIError` naming the first bad one."""
    uploads = form.getlist("file")
    if len(uploads) > 1:
        raise APIError(400, f"'file' is given {len(uploads)} times; send one recording per request", param="file")
    upload = uploads[0] if uploads else None
    if upload is None:
        raise APIError(400, "'file' is required: the recording to transcribe (WAV, FLAC, OGG, MP3, ...)", param="file")
    if not isinstance(upload, UploadFile):
        raise APIError(400, "'file' must be a file upload (a multipart part with a filename), not a text field",
                       param="file")
    model = names.resolve(_text(form, "model"))
    response_format = _text(form, "response_format") or "json"
    if response_format not in TRANSCRIPT_FORMATS:
        raise APIError(400, f"'response_format' must be one of {', '.join(TRANSCRIPT_FORMATS)}, got "
                       f"{response_format[:40]!r}", param="response_format")
    temperature_text = _text(form, "temperature")
    try:
        temperature = float(temperature_text) if temperature_text not in (None, "") else 0.0
    except ValueError:
        temperature = math.nan
    if not 0.0 <= temperature <= 1.0:  # OpenAI's range; also refuses NaN
        raise APIError(400, f"'temperature' must be a number in [0, 1] (0: greedy), got {temperature_text[:20]!r}",
                       param="temperature")
    granularities = [_text_value("timestamp_granularities[]", value)
                     for value in form.getlist("timestamp_granularities[]")]
    for granularity in granularities:
        if granularity == "word":
            raise APIError(400, "'timestamp_granularities[]' word is not supported: the model writes no word times; "
                           "'segment' is (with response_format verbose_json)", param="timestamp_granularities[]")
        if granularity != "segment":
            raise APIError(400, f"'timestamp_granularities[]' must be 'segment', got {str(granularity)[:20]!r}",
                           param="timestamp_granularities[]")
    if granularities and response_format != "verbose_json":
        raise APIError(400, "'timestamp_granularities[]' needs response_format verbose_json",
                       param="timestamp_granularities[]")
    if _text(form, "language"):
        raise APIError(400, "'language' is not supported: the model has no language switch and transcribes in "
                       "the language it was trained on; leave 'language' out", param="language")
    if _text(form, "prompt"):
        raise APIError(400, "'prompt' is not supported: the model was never trained to continue earlier text, "
                       "so a prompt would not steer it; leave 'prompt' out", param="prompt")
    for name in ("include[]", "include"):  # the openai client sends a list as "include[]"
        include = [_text_value(name, value) for value in form.getlist(name)]
        if include:
            raise APIError(400, f"'{name}' ({', '.join(map(str, include))[:40]}) is not supported: this server "
                           "returns no per-token logprobs with a transcript (verbose_json's segments carry "
                           "avg_logprob); leave 'include' out", param=name)
    stream = _flag(form, "stream")
    if stream and response_format not in ("json", "text"):
        raise APIError(400, f"'stream' works with response_format json or text (OpenAI's transcript.text events), "
                       f"not {response_format}", param="stream")
    audio = await upload.read()
    filename = upload.filename or "file"
    if not audio:
        raise APIError(400, f"'file' ({filename!r}) is empty", param="file", code="empty_file")
    return TranscriptionRequest(model, audio, filename, response_format, temperature, stream)
