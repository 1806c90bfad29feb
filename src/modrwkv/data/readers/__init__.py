"""Readers that turn training/evaluation files into `Sample`s, lazily, with one error policy.

    reader = LlavaReader("llava_v1_5_mix665k.json", image_folder="data/", on_error="skip")
    for sample in reader:
        ...
    print(reader.report.summary())   # kept / skipped per reason, first examples in .examples

Formats: question-answer records (`QAReader`), LLaVA JSON/JSONL (`LlavaReader`), OpenAI chat
messages (`OpenAIChatReader`), LLaMA-Factory ShareGPT (`SharegptReader`), ASR manifests (`AsrManifestReader`), time
series from CSV/NPZ or series rows, Parquet / JSONL (`TimeSeriesReader`, with `format_forecast` / `parse_forecast`), and in-memory records or HF
datasets (`from_records`). The single-record converters (`qa_to_sample`, `llava_to_sample`,
`openai_to_sample`, `sharegpt_to_sample`, `asr_to_sample`) raise `DataError` and suit
callers that handle one record at a time, such as a server.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

from .asr import DEFAULT_ASR_PROMPT, AsrManifestReader, asr_to_sample, asr_user_turn
from .base import REASONS, DataError, Reader, ReadReport
from .llava import LlavaReader, llava_to_sample
from .openai_chat import OpenAIChatReader, openai_to_sample
from .qa import QAReader, QARecord, parse_qa_record, qa_columns, qa_to_sample
from .records import RecordsReader, from_records
from .series import TimeSeriesReader, format_forecast, parse_forecast
from .sharegpt import SharegptReader, sharegpt_columns, sharegpt_to_sample


@dataclasses.dataclass(frozen=True)
class RecordFormat:
    """A `data.format`: its file reader, its one-record converter (None: series files are read whole), the
    keyword both take for the folder media paths are relative to ("" where none applies), and the check of its
    `columns` mapping of record fields to a file's columns (None: the format takes no such mapping; a series
    file's `columns` are the columns it reads, `TimeSeriesReader`)."""

    reader: type[Reader]
    to_sample: Callable[..., Any] | None
    folder_option: str
    field_columns: Callable[[Any], dict[str, Any] | None] | None = None


# the one table training (`build_reader`) and `modrwkv eval --task custom` read formats through
FORMATS: dict[str, RecordFormat] = {
    "llava": RecordFormat(LlavaReader, llava_to_sample, "image_folder"),
    "qa": RecordFormat(QAReader, parse_qa_record, "media_folder", qa_columns),
    "openai": RecordFormat(OpenAIChatReader, openai_to_sample, "media_folder"),
    "sharegpt": RecordFormat(SharegptReader, sharegpt_to_sample, "media_folder", sharegpt_columns),
    "asr": RecordFormat(AsrManifestReader, asr_to_sample, "audio_root"),
    "series": RecordFormat(TimeSeriesReader, None, ""),
}

__all__ = [
    "FORMATS",
    "RecordFormat",
    "DEFAULT_ASR_PROMPT",
    "REASONS",
    "AsrManifestReader",
    "DataError",
    "LlavaReader",
    "OpenAIChatReader",
    "QAReader",
    "QARecord",
    "ReadReport",
    "Reader",
    "RecordsReader",
    "SharegptReader",
    "TimeSeriesReader",
    "asr_to_sample",
    "asr_user_turn",
    "format_forecast",
    "from_records",
    "llava_to_sample",
    "openai_to_sample",
    "parse_forecast",
    "parse_qa_record",
    "qa_to_sample",
    "sharegpt_to_sample",
]
