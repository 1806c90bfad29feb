"""Samples from records already in memory: an HF `datasets.Dataset` (or streaming
`IterableDataset`), a list of dicts, a generator. Each record goes through the same converter as
the file readers, so a dataset on the hub and its JSON export give the same samples; images that
`datasets` already decoded (PIL) and its `{"bytes", "path"}` / `{"array", "sampling_rate"}` dicts
pass through.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

from ..sample import Sample
from .asr import asr_to_sample
from .base import OnError, Reader
from .llava import llava_to_sample
from .openai_chat import openai_to_sample
from .qa import qa_to_sample
from .sharegpt import sharegpt_to_sample

RecordFormat = Literal["llava", "qa", "openai", "sharegpt", "asr"]
CONVERTERS: dict[str, Callable[..., Sample]] = {
    "llava": llava_to_sample,
    "qa": qa_to_sample,
    "openai": openai_to_sample,
    "sharegpt": sharegpt_to_sample,
    "asr": asr_to_sample,
}


class RecordsReader(Reader):
    """Iterates converted records; sources are "{name}[{index}]". A one-shot iterable (a generator)
    can only be read once; a `Dataset` or list can be iterated again, each pass with a new report."""

    def __init__(
        self,
        records: Iterable[Any],
        converter: Callable[..., Sample],
        *,
        name: str = "dataset",
        on_error: OnError = "skip",
        max_examples: int = 5,
        log_limit: int = 20,
    ) -> None:
        self.records = records
        self.converter = converter
        self._name = name
        super().__init__(on_error=on_error, max_examples=max_examples, log_limit=log_limit)

    @property
    def name(self) -> str:
        return self._name

    def _candidates(self) -> Iterator[Callable[[], Sample]]:
        for index, record in enumerate(self.records):
            source = f"{self._name}[{index}]"
            yield functools.partial(self.converter, record, source=source)


def from_records(
    records: Iterable[Any],
    format: RecordFormat,
    *,
    name: str = "dataset",
    on_error: OnError = "skip",
    max_examples: int = 5,
    log_limit: int = 20,
    **options: Any,
) -> RecordsReader:
    """A reader over in-memory records of `format`; `options` are the converter's keywords:
    llava: image_folder, verify_media; qa: media_folder, verify_media; openai: media_folder,
    allow_remote, allow_local_paths, verify_media; sharegpt: media_folder, columns, tags, verify_media; asr: audio_root, prompt, verify_media. Relative paths are taken as they are
    (relative to the working directory) unless a folder is given. An unknown option raises
    TypeError here rather than on the first record."""
    if format not in CONVERTERS:
        raise ValueError(f"format must be one of {sorted(CONVERTERS)}, got {format!r}")
    converter = CONVERTERS[format]
    inspect.signature(converter).bind_partial(None, **options)
    return RecordsReader(
        records,
        functools.partial(converter, **options),
        name=name,
        on_error=on_error,
        max_examples=max_examples,
        log_limit=log_limit,
    )
