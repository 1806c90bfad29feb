"""ASR manifests (JSONL), as written by NeMo, ESPnet and most LibriSpeech/Aishell preparation
scripts: one utterance per line with an audio path and its transcript,

    {"audio_filepath": "train-clean-100/19/198/19-198-0001.flac", "text": "...", "duration": 14.2}

The audio key may be `audio`, `audio_filepath`, `path` or `wav`; the transcript `text`,
`transcript`, `sentence` or `transcription`. Each line becomes user "<audio>\\n{prompt}", assistant = transcript; with
`prompt=None`, user "<audio>" alone, which with prefix splicing is the authors' ASR layout (audio,
then "\\x16Assistant: {transcript}\\x17", no user turn).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..sample import MARKERS, Message, Sample
from .base import (
    DataError,
    JsonRecordsReader,
    OnError,
    PathLike,
    check_media,
    first_key,
    lacks_fields,
    media_item,
    require,
)

AUDIO_KEYS = ("audio", "audio_filepath", "path", "wav")
TEXT_KEYS = ("text", "transcript", "sentence", "transcription")  # (the last: Hugging Face audiofolder's)
DEFAULT_ASR_PROMPT = "Transcribe the audio."


def asr_user_turn(prompt: str | None) -> str:
    """The user turn of an ASR sample: the audio, then `prompt` (None: the audio alone). Training and
    evaluation both build it here, so a model is asked exactly as it was trained."""
    return MARKERS["audio"] if prompt is None else f"{MARKERS['audio']}\n{prompt}"


def asr_to_sample(
    record: Any,
    *,
    source: str = "",
    audio_root: PathLike | None = None,
    prompt: str | None = DEFAULT_ASR_PROMPT,
    verify_media: bool = False,
) -> Sample:
    """Converts one manifest entry; raises `DataError`. The audio may be a path (relative to
    `audio_root`, must exist) or what HF `datasets` yields for an Audio column. `meta` keeps "id"
    and "duration" when present (duration lets a sampler bucket by length without opening files)."""
    require(record, dict, "record", source)
    audio_key, text_key = first_key(record, AUDIO_KEYS), first_key(record, TEXT_KEYS)
    if audio_key is None:
        raise lacks_fields(record, "asr", source, f"no audio field (one of {', '.join(AUDIO_KEYS)})")
    if text_key is None:
        raise lacks_fields(record, "asr", source, f"no transcript field (one of {', '.join(TEXT_KEYS)})")
    transcript = require(record[text_key], str, f"'{text_key}'", source)
    value = record[audio_key]
    if isinstance(value, list):  # (a WebDataset sample's several audio members arrive so too)
        if not value:
            raise DataError(source, "missing_media", f"'{audio_key}' is an empty list: an ASR record has one audio")
        if len(value) > 1:
            shown = ", ".join(item if isinstance(item, str) else getattr(item, "name", type(item).__name__)
                              for item in value)
            raise DataError(source, "wrong_type", f"'{audio_key}' holds {len(value)} audio items ({shown}) for one "
                            "transcript: an ASR record has one audio; clips answered together are a conversation "
                            "record's 'audios' list (format: sharegpt)")
        value = value[0]  # one audio written as a list, as a qa record may write its one item
    audio = media_item(value, "audio", Path(audio_root) if audio_root is not None else None, source)
    if verify_media:
        check_media(audio, "audio", source)
    meta: dict[str, Any] = {}
    if record.get("id") is not None:
        meta["id"] = record["id"]
    if record.get("duration") is not None:
        duration = record["duration"]
        if isinstance(duration, bool) or not isinstance(duration, (int, float)):
            raise DataError(source, "wrong_type", f"'duration' must be a number, got {type(duration).__name__}")
        meta["duration"] = float(duration)
    messages = [Message("user", asr_user_turn(prompt)), Message("assistant", transcript)]
    return Sample(messages=messages, audios=[audio], source=source, meta=meta)


class AsrManifestReader(JsonRecordsReader):
    """Reads ASR manifests lazily; `reader.report` after a pass. Audio paths are relative to
    `audio_root` (default: each manifest's folder)."""

    format = "asr"

    def __init__(
        self,
        paths: PathLike | Sequence[PathLike],
        *,
        audio_root: PathLike | None = None,
        prompt: str | None = DEFAULT_ASR_PROMPT,
        verify_media: bool = False,
        on_error: OnError = "skip",
        max_examples: int = 5,
        log_limit: int = 20,
    ) -> None:
        self.prompt = prompt
        self.verify_media = verify_media
        super().__init__(paths, audio_root, on_error=on_error, max_examples=max_examples, log_limit=log_limit)

    def _convert(self, record: Any, source: str, folder: Path) -> Sample:
        return asr_to_sample(record, source=source, audio_root=folder, prompt=self.prompt, verify_media=self.verify_media)
