"""A `Transcription` written as OpenAI's audio-transcription API returns it: `json` ({"text"}),
`text`, `srt` and `vtt` subtitles (a cue per segment), and `verbose_json` (task, language,
duration, text and the segments with their times and scores). The server's /v1/audio/transcriptions and
`modrwkv transcribe` both write through `render_transcript`, so a file and a reply agree.

    render_transcript(pipe.transcribe("talk.wav", long_form=True), "srt")
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from ..constants import TRANSCRIPT_FORMATS
from .pipeline import Transcription

# the extension `modrwkv transcribe --output-dir` gives each format's file
FORMAT_EXTENSIONS = {"json": "json", "text": "txt", "srt": "srt", "verbose_json": "json", "vtt": "vtt"}
MEDIA_TYPES = {"json": "application/json", "text": "text/plain", "srt": "application/x-subrip",
               "verbose_json": "application/json", "vtt": "text/vtt"}


def timestamp(seconds: float, decimal: str) -> str:
    """HH:MM:SS,mmm (SubRip: `decimal` ",") or HH:MM:SS.mmm (WebVTT: ".")."""
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    return f"{hours:02d}:{minutes:02d}:{millis // 1000:02d}{decimal}{millis % 1000:03d}"


def compression_ratio(text: str) -> float:
    """Whisper's compression ratio of a text: its UTF-8 bytes over their zlib-compressed bytes (a
    reply that repeats itself compresses well, so a high ratio flags a looping transcript)."""
    encoded = text.encode("utf-8")
    return len(encoded) / len(zlib.compress(encoded))


def verbose_json(transcription: Transcription, temperature: float = 0.0) -> dict[str, Any]:
    """OpenAI's verbose_json object. `language` is null: the model has no language detection nor
    switch. Each segment carries OpenAI's id, seek (its start in 10 ms mel frames, as Whisper counts),
    start, end, text, tokens, temperature, and Whisper's avg_logprob (as its decoder divides it: see
    `pipeline.average_logprob`) and compression_ratio (of its text). Whisper's
    no_speech_prob is left out: it is the probability of Whisper's own no-speech token, which this
    model has no counterpart of. `forced` (beyond OpenAI's fields) says a segment ends at a
    quietest-point cut rather than a pause."""
    return {
        "task": "transcribe",
        "language": None,
        "duration": transcription.duration,
        "text": transcription.text,
        "segments": [{"id": index, "seek": round(segment.start * 100), "start": segment.start, "end": segment.end,
                      "text": segment.text, "tokens": segment.token_ids, "temperature": temperature,
                      "avg_logprob": segment.avg_logprob, "compression_ratio": compression_ratio(segment.text),
                      "forced": segment.forced}
                     for index, segment in enumerate(transcription.segments)],
    }


def _cue_text(text: str) -> str:
    """A segment's text as a cue's lines: without blank lines (a blank line ends the cue, and the lines
    after it become a cue of their own or are dropped: FFmpeg's WebVTT reader drops them) and with
    "-->" written "->" (a line holding it is read as a cue's timing line), as Whisper writes them."""
    return "\n".join(line for line in text.replace("-->", "->").splitlines() if line.strip())


def _cues(transcription: Transcription, decimal: str) -> list[str]:
    """A subtitle cue's timing line and text per segment with text (an empty cue would end the file
    for some players)."""
    return [f"{timestamp(s.start, decimal)} --> {timestamp(s.end, decimal)}\n{_cue_text(s.text)}\n"
            for s in transcription.segments if s.text]


def render_transcript(transcription: Transcription, response_format: str, temperature: float = 0.0,
                      extra: dict[str, Any] | None = None) -> str:
    """The transcription in one of TRANSCRIPT_FORMATS, as the body of a reply or a file's text;
    `extra`: fields added to the json and verbose_json objects (the server's usage)."""
    if response_format == "json":
        return json.dumps({"text": transcription.text, **(extra or {})}, ensure_ascii=False) + "\n"
    if response_format == "verbose_json":
        return json.dumps({**verbose_json(transcription, temperature), **(extra or {})}, ensure_ascii=False) + "\n"
    if response_format == "text":
        return transcription.text + "\n"
    if response_format == "srt":
        return "\n".join(f"{number}\n{cue}" for number, cue in enumerate(_cues(transcription, ","), 1))
    if response_format == "vtt":
        return "\n".join(["WEBVTT\n", *_cues(transcription, ".")])
    raise ValueError(f"unknown transcript format {response_format!r}; the formats: {', '.join(TRANSCRIPT_FORMATS)}")
