"""Which training format a data file is written in, from its extension, a LLaMA-Factory
`dataset_info.json` naming it, or its first record's fields: what `modrwkv init` writes into a config
and what `modrwkv eval --task custom` reads a held-out split with."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from ...textfiles import TextFileError, decode_text, open_data
from .base import (SERIES_FILES, DataError, file_records, is_metadata_file, is_series_file, is_table_file, is_tar,
                   media_kind, record_format)
from .seriesrows import TARGET, media_fields, media_note
from .sharegpt import dataset_info_entry
from .torchvision_sets import is_torchvision_set


class FormatUnknown(ValueError):
    """A data file whose format cannot be told (unreadable, empty, no JSON record, unknown fields);
    the message says why, in one line."""


def detect_format(path: Path, label_column: str | None = None, columns: Mapping[str, str] | None = None,
                  media_folder: Path | None = None, split: Sequence[str] | None = None) -> str:
    """The data format from the extension (CSV/TSV/NPZ: series, but of a .csv / .tsv / .txt table whose column names
    media files the record its first usable row makes, as a metadata file's, `hffolders.media_table`), or the
    columns of a Parquet / JSON Lines file of series rows (a `target` list and no media: series, `is_series_file`),
    a LLaMA-Factory `dataset_info.json` naming the file (sharegpt), or the first record's fields (of a Parquet file:
    the first row's columns; of a WebDataset tar: the record its first usable sample makes, a caption qa; a folder
    of class folders: qa; Hugging Face's metadata layout, a folder or its metadata.csv / .jsonl / .parquet: the
    record its first usable row makes; a folder of media files with their captions or transcripts beside them, or a
    speech corpus: the record its first usable file or utterance makes; a hub Parquet file's plain rows: the record
    its first row makes, answered from `label_column`, `hubrows`; rows of the_cauldron's `images` and `texts`: the
    LLaVA record the first stands for, `hubrows.turns_record`; with `columns`, qa's {field: column}, the first
    record with them renamed, `base.renamed_records`; of a COCO captions file, a Karpathy split file or a Flickr
    token file, the record its first image makes, its file in `media_folder` or beside the file, `coco`,
    `captionsplits`; of a file of several splits, `split`'s, else it is refused, naming them). A file of rows
    holding a `target` list and media is not series; where its records tell no format either, the error says why it
    is not series (`seriesrows.media_note`; a table's list columns, `seriestables.nested_columns_note`)."""
    try:
        return _detected(path, label_column, columns, media_folder, split)
    except FormatUnknown as exc:
        from .seriestables import nested_columns_note  # (it builds on the readers this module imports)

        media = media_fields(path, beside=TARGET)
        note = media_note(media) if media else nested_columns_note(path)
        if note is None:
            raise
        raise FormatUnknown(f"{exc}; not a time series either: {note}") from None


def _detected(path: Path, label_column: str | None, columns: Mapping[str, str] | None,
              media_folder: Path | None, split: Sequence[str] | None) -> str:
    if is_series_file(path):
        return "series"
    from .seriestables import workbook_refusal  # (it builds on the readers this module imports)

    refusal = workbook_refusal(path)  # (a workbook is read as a series table only)
    if refusal is not None:
        raise FormatUnknown(refusal)
    try:  # LLaMA-Factory's description of this file, with its column and tag names
        if dataset_info_entry(path) is not None:
            return "sharegpt"
    except DataError as exc:
        raise FormatUnknown(str(exc)) from None
    if is_torchvision_set(path):  # binary files (IDX, pickled CIFAR batches) of labelled images
        return "qa"
    broken = None
    raw_head = head = ""
    # a text file: its head tells an empty file and a broken first JSONL record
    if not is_table_file(path) and not is_tar(path) and not path.is_dir() and media_kind(path) is None:
        try:
            with open_data(path) as handle:  # (a compressed file's text)
                raw_head = decode_text(handle.read(1 << 16), path, partial=True)
                head = raw_head.lstrip()
        except OSError as exc:
            raise FormatUnknown(f"{path}: cannot read ({exc})") from None
        except TextFileError as exc:
            raise FormatUnknown(str(exc)) from None
        if not head:
            raise FormatUnknown(f"{path}: the file is empty")
    if head[:1] == "{":  # JSONL: a broken first record is named (later ones are the reader's to skip and count)
        for number, line in enumerate(raw_head.splitlines(), 1):
            if not line.strip():
                continue
            try:
                json.loads(line)
                break
            except json.JSONDecodeError as exc:
                if broken is None and line.rstrip().endswith("}"):  # a whole record, not pretty-printed JSON
                    broken = f"{path}:{number}: invalid JSON: {exc.msg} (column {exc.colno})"
    first, found, bad = None, None, None
    try:  # the first record as the readers see it (also of a file that is one JSON object)
        records = file_records(path, label_column=label_column, columns=columns, media_folder=media_folder,
                               split=split)
        for _, load in itertools.islice(records, 100):
            try:
                found = load()
            except DataError as exc:
                if exc.reason == "unreadable_file":  # the file's own problem (a tar's samples out of order)
                    raise
                bad = bad or exc
                continue
            if isinstance(found, dict):
                first = found
                break
    except DataError as exc:
        raise FormatUnknown(str(exc)) from None
    if first is None:
        if broken:
            raise FormatUnknown(broken)
        if is_tar(path):
            what = f"no usable sample among the first 100 (the first: {bad})" if bad else "no sample"
            raise FormatUnknown(f"{path}: {what}; a WebDataset tar's samples are media members (.jpg, .flac, ...) "
                                "with a .txt caption or transcript, or a .json record; see docs/custom-data.md")
        if bad:  # every record tried was bad (a test split's withheld labels, -1): the first says why
            raise FormatUnknown(f"{path}: no usable record among the first 100 (the first: {bad})")
        if path.is_dir() or is_metadata_file(path):  # (a JSON record's reasons do not apply)
            raise FormatUnknown(f"{path}: no rows (its metadata {'files hold' if path.is_dir() else 'file holds'} "
                                "none: a row per media file, naming it in 'file_name')")
        what = (f"a {type(found).__name__} where a record should be" if found is not None
                else "no rows" if is_table_file(path) else "no JSON record")
        raise FormatUnknown(f"{path}: {what}; expected JSON records (objects with fields): an array of them, one per "
                        "line (JSONL), or one object (a record, records keyed by id, or a pandas to_json() table), "
                        f"or a series file ({SERIES_FILES}); see docs/custom-data.md")
    detected = record_format(first)
    if detected is None and {"instruction", "output"} <= set(first):
        raise FormatUnknown(f"{path}: the first record's fields {sorted(first)} are LLaMA-Factory's alpaca format, which "
                        "is not read; write each record as a sharegpt conversation: {\"conversations\": [{\"from\": "
                        "\"human\", \"value\": instruction + input}, {\"from\": \"gpt\", \"value\": output}], "
                        "\"images\": [...]} (docs/custom-data.md)")
    if detected is None:
        raise FormatUnknown(f"{path}: cannot tell the format from the first record's fields {sorted(first)}: expected "
                        "'question' (qa), 'conversations' (llava), 'messages' (openai), 'conversations' or "
                        "'messages' with 'images' / 'audios' lists (sharegpt) or 'audio_filepath' + 'text' (asr); "
                        "see docs/custom-data.md")
    return detected
