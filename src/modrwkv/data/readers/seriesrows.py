"""Time-series files of one series per row, as the Hugging Face hub and GluonTS store them: their detection and
their rows' values, which `series.TimeSeriesReader` windows as it windows a CSV column.

- Parquet as `autogluon/chronos_datasets` stores it: `id` (string), `timestamp` (list of timestamps), `target`
  (list of floats) and, in some sets, more lists of floats of the row's length (other variables);
- Parquet as `Salesforce/lotsa_data`, `Monash-University/monash_tsf` and GIFT-Eval store it: `item_id`, `start`,
  `freq`, `target` (a list of floats, or a list of lists = [channels, steps] for a multivariate series), static
  features (`feat_static_cat`, ...);
- JSON Lines in GluonTS' convention: {"start": "2021-01-01 00:00", "target": [1.0, 2.0, null], "item_id": "a"};
- the Monash Time Series Forecasting Archive's .tsf files (`tsf_rows`): a header (`@attribute NAME TYPE` lines,
  `@frequency`, `@horizon`, ..., then `@data`), then a series per line, `attr1:attr2:...:v1,v2,...` (`?` a gap).

The series of a row is its `target` (the convention of the first three; a .tsf line's values are read as it), or
the columns chosen (`columns`). A file with no `target` is read as the Chronos evaluation reads it
(`to_gluonts_univariate` in chronos-forecasting, fev's `generate_univariate_targets_from="__ALL__"`): every
list-of-numbers column but `timestamp` is a variable of the row's series (a weather station's variables).
Timestamps, `start`, `freq`, ids and static features are not read (the model reads values, as it reads a CSV's
values and not its date column); the id names the row, and a .tsf line's `start_timestamp` with its header's
`@frequency` dates it, as a Parquet row's `timestamp` list does (`table_row_timestamps`), and a row's `start` with
its `freq` (else GluonTS' `metadata.json`, else the frequency given: `row_starts`), these read apart from the values:
what `modrwkv forecast` writes its forecast's dates by. A null value is a gap, as an empty CSV
cell is. An .arrow file of `datasets` (save_to_disk's) reads as the Parquet file of the same rows
(`base.open_table_file`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...textfiles import data_suffix, open_data
from .base import (PARQUET_BATCH_ROWS, DataError, decoded_batches, holds_bytes, is_list_type, is_table_file,
                   json_records, media_kind, open_table_file, open_unpacked, opening_byte, record_format)
from .hubrows import MEDIA_COLUMNS, MEDIA_TYPES, hub_features
from .seriesdates import RowDates, StartDates, parse_start, tsf_dates, tsf_interval

TARGET = "target"  # the series column of every layout read here
ID_COLUMNS = ("id", "item_id")  # what names a row: Chronos' column, then GluonTS' and LOTSA's
# (of the file itself, or of the file a compressed one holds: `textfiles.data_suffix`)
JSON_EXTENSIONS = (".jsonl", ".json")  # GluonTS writes its JSON Lines as data.json, or gzip-compressed data.json.gz
# Chronos' list of times: never a series, even held as numbers (epochs); Chronos' evaluation leaves it out by name.
TIMESTAMP = "timestamp"
# LOTSA's, GIFT-Eval's and GluonTS' fields dating a row: its first step's date, and the pandas offset alias its steps
# are apart by ("h", "W-SUN"; GluonTS' JSON Lines state it once, in the data set's metadata.json)
START, FREQ = "start", "freq"
# Where GluonTS' saved data sets (`TrainDatasets.save`) hold their metadata.json, from a data file's folder: beside
# it, beside its folder (train/data.json, test/data.json), or in a metadata folder beside it (GluonTS' older layout)
GLUONTS_METADATA = ("metadata.json", "../metadata.json", "../metadata/metadata.json")
# The fields other layouts hold a row's media in: hub rows' names (`hubrows.MEDIA_COLUMNS`), ShareGPT's lists, a
# metadata folder's `file_name`, an ASR manifest's `audio_filepath`. A row with one is no plain series, whatever its
# `target` holds: its media would go unread.
MEDIA_FIELDS = frozenset({*MEDIA_COLUMNS, "images", "videos", "audios", "file_name", "audio_filepath"})
MEDIA_PATH_CHARS = 1024  # a longer string is text, not a media file's path
TSF_EXTENSION = ".tsf"  # the Monash archive's files (forecastingdata.org, Zenodo)
# The attribute types of a .tsf header, as the archive's own loader (`convert_tsf_to_dataframe` in
# rakshitha123/TSForecasting) and GluonTS' `TSFReader` parse them; a date is written 1979-01-01 00-00-00 (no colon,
# which separates a line's attributes).
TSF_ATTRIBUTE_TYPES = ("numeric", "string", "date")
TSF_NAME = "series_name"  # the attribute naming each series in every file of the archive
TSF_START = "start_timestamp"  # the date attribute dating each series' first step (with the header's @frequency)
TSF_LAYOUT = ("a .tsf file is a header of '@attribute NAME TYPE' lines (TYPE numeric, string or date), @frequency, "
              "@horizon, ..., then '@data' and a series per line, its attributes' values then its own, "
              "'T1:1979-01-01 00-00-00:1.5,2,?,4' ('?' a missing value)")


@dataclasses.dataclass(frozen=True)
class TsfHeader:
    """A .tsf file's header: its attributes (name, type) in the order a data line holds their values, its
    `@frequency` ("hourly", "4_seconds") and `@horizon` (the archive's forecast horizon), each None where the file
    states none."""

    attributes: list[tuple[str, str]]
    frequency: str | None
    horizon: int | None


@dataclasses.dataclass(frozen=True)
class SeriesRow:
    """One row: where it is ("row 12" of a Parquet file, counted from 0 as `datasets` and pandas count, or the
    JSONL line "3", as the readers of records name them), with its id when it has one ("row 12 (id 'T1')"), and
    the values of each column read, [steps] or [steps, channels] (a [channels, steps] target turned round, as
    a CSV holds channels in columns)."""

    name: str
    values: dict[str, np.ndarray]
    id: str | None = None  # its id ("T1", the .tsf series_name "ABW"), what its data set calls it
    dates: StartDates | None = None  # when its steps are: a .tsf line's start_timestamp and @frequency


def is_series_rows(path: Path) -> bool:
    """Whether `path` is a Parquet or JSON Lines file of series rows: a `target` list column (field), or (Parquet)
    a list-of-timestamps column beside list-of-numbers ones (Chronos' layout without `target`), no media and no
    record format's fields (a qa or LLaVA file may hold a `target` column of its own). False for any other file,
    for one that does not open (its reader says why), and for one whose rows hold media (`media_fields`)."""
    if is_table_file(path):
        try:
            with open_table_file(path) as handle:
                schema = handle.schema_arrow
                if record_format(dict.fromkeys(schema.names)) is not None:
                    return False
                import pyarrow  # (open_table_file has named a missing pyarrow)

                lists = {field.name: field.type for field in schema if is_list_type(field.type)}
                series = TARGET in lists or (any(pyarrow.types.is_timestamp(kind.value_type) for kind in lists.values())
                                             and bool(_numeric_lists(schema)))
                return series and not _table_media(handle)
        except DataError:
            return False
    if data_suffix(path) in JSON_EXTENSIONS and path.is_file():
        first = _first_json_line(path)
        return (isinstance(first, dict) and isinstance(first.get(TARGET), list) and record_format(first) is None
                and not media_in(first))
    return False


def media_fields(path: Path, beside: str | None = None) -> list[str]:
    """The fields of a Parquet / JSON Lines file's rows that hold media: named as media layouts name them
    (`MEDIA_FIELDS`), of `datasets`' Image / Audio / Video type or holding bytes, or, in the first row, a path of a
    media file (by its extension, `base.media_kind`), alone, in a list or in a {bytes, path} struct. With `beside`,
    only of a file that has that field too. [] for a file that does not open."""
    if is_table_file(path):
        try:
            with open_table_file(path) as handle:
                return _table_media(handle) if beside is None or beside in handle.schema_arrow.names else []
        except DataError:
            return []
    first = _first_json_line(path) if data_suffix(path) in JSON_EXTENSIONS and path.is_file() else None
    return media_in(first) if isinstance(first, dict) and (beside is None or beside in first) else []


def media_note(media: Sequence[str]) -> str:
    """Why rows with the media fields `media` are no time series, and what each layout expects."""
    return (f"its rows hold media ({', '.join(media)}), which a time series would leave unread: a series holds "
            f"numbers (a series row's in {TARGET!r}, a list of them) and no image, audio or video; a row of media is "
            "read with a label, caption or transcript column (hub rows, metadata.csv / .jsonl), or as question / "
            "conversations / messages records (docs/custom-data.md); to read the numbers alone, choose their columns "
            "(data.options.columns)")


def _table_media(handle: Any) -> list[str]:
    """`media_fields` of an open table file: told by its schema where it can be, else by the first row's paths
    (only its columns of text are read: a hub shard's image bytes are not decoded to be told apart)."""
    import pyarrow

    schema = handle.schema_arrow
    features = hub_features(schema)
    declared = [field.name for field in schema if holds_bytes(field.type) or field.name.lower() in MEDIA_FIELDS
                or isinstance(features.get(field.name), dict) and features[field.name].get("_type") in MEDIA_TYPES]
    if declared:
        return declared
    textual = [field.name for field in schema if pyarrow.types.is_string(field.type)
               or pyarrow.types.is_large_string(field.type) or pyarrow.types.is_struct(field.type)
               or is_list_type(field.type) and not _numbers(field.type.value_type)
               and not is_list_type(field.type.value_type)]
    batch = next(handle.iter_batches(batch_size=1, columns=textual), None) if textual else None
    first = batch.to_pylist()[0] if batch is not None and batch.num_rows else {}
    return [field for field, value in first.items() if names_media(value)]


def media_in(record: dict[str, Any]) -> list[str]:
    return [field for field, value in record.items()
            if isinstance(field, str) and field.lower() in MEDIA_FIELDS or names_media(value)]


def names_media(value: Any) -> bool:
    """Whether a value is (or holds) a media file's path or bytes: "a.png", ["a.png"], {"bytes": ..., "path": ...}."""
    if isinstance(value, str):
        return len(value) <= MEDIA_PATH_CHARS and "\n" not in value and media_kind(Path(value)) is not None
    if isinstance(value, (bytes, bytearray)):
        return True
    if isinstance(value, dict):
        return value.get("bytes") is not None or names_media(value.get("path"))
    return isinstance(value, list) and any(names_media(item) for item in value[:8])


def series_rows(path: Path, columns: Sequence[str] | None) -> Iterator[SeriesRow]:
    """The rows of a series-rows file with the values of `columns` (None: `target`, else every list-of-numbers
    column; a .tsf file's lines: `tsf_rows`); DataError naming the file, row and column for a column that is not
    there or holds no numbers, a ragged [channels, steps] value, a file that does not read, or (no `columns` chosen)
    one whose rows hold media (`media_fields`: they would go unread)."""
    if data_suffix(path) == TSF_EXTENSION:
        return tsf_rows(path, columns)
    media = media_fields(path) if columns is None else []
    if media:
        raise DataError(str(path), "unreadable_file", media_note(media))
    if is_table_file(path):
        return _table_rows(path, columns)
    return _json_rows(path, columns)


def row_values(value: Any, source: str, column: str, *, typed: bool = False) -> np.ndarray:
    """A row's `column` as float64: a list of numbers [steps] (null: a gap, NaN), or a list of such lists of one
    length, [channels, steps], returned [steps, channels]. DataError (the file's: no series can be cut from it)
    naming `source` and the column otherwise. `typed`: the column's type holds numbers only (a Parquet
    list<float>), which are then not looked at one by one."""
    if not isinstance(value, list):
        shown = "null" if value is None else f"{type(value).__name__} {_shown(value)}"
        raise DataError(source, "unreadable_file", f"column {column!r} is {shown}, not a list of numbers")
    nested = bool(value) and all(isinstance(item, list) for item in value)
    channels = value if nested else [value]
    for k, channel in enumerate([] if typed else channels):
        bad = next((x for x in channel if x is not None and (isinstance(x, bool) or not isinstance(x, (int, float)))),
                   None)
        if bad is not None:
            what = "a list, nested deeper than [channels, steps]" if isinstance(bad, list) else "not a number"
            raise DataError(source, "unreadable_file",
                            f"column {column + (f'[{k}]' if nested else '')!r}: {_shown(bad)} is {what}")
    lengths = [len(channel) for channel in channels]
    if len(set(lengths)) > 1:
        short = lengths.index(min(lengths))
        raise DataError(source, "unreadable_file", f"column {column!r} is ragged: channel {short} has "
                        f"{lengths[short]} values, channel 0 {lengths[0]} (a [channels, steps] series has one "
                        "length)")
    array = np.array(channels, dtype=np.float64)  # (None: NaN)
    return array.T if nested else array[0]


def table_row_timestamps(path: Path) -> list[RowDates | None] | None:
    """Each row's `timestamp` list of a Parquet / Arrow file of series rows (Chronos' layout) as its `RowDates` (None
    for a null one), read apart from its values (only `modrwkv forecast` dates its steps by them: training reads no
    date); None for a file without a list-of-timestamps `timestamp` column, or with zoned or sub-second ones (which
    `seriesdates` does not write)."""
    import pyarrow

    with open_table_file(path) as handle:
        schema = handle.schema_arrow
        kind = schema.field(TIMESTAMP).type if TIMESTAMP in schema.names else None
        if kind is None or not is_list_type(kind) or not pyarrow.types.is_timestamp(kind.value_type) \
                or kind.value_type.tz is not None:
            return None
        found: list[RowDates | None] = []
        for batch in decoded_batches(path, handle, handle.iter_batches(batch_size=PARQUET_BATCH_ROWS,
                                                                       columns=[TIMESTAMP]), 0):
            lists = batch.column(0)
            try:
                steps = lists.flatten().cast(pyarrow.timestamp("s")).to_numpy(zero_copy_only=False)
            except pyarrow.ArrowInvalid:  # (a fraction of a second, which a cast to seconds would drop)
                return None
            offsets = lists.offsets.to_numpy()
            found.extend(None if not valid else RowDates.of(steps[offsets[k] - offsets[0]:offsets[k + 1] - offsets[0]])
                         for k, valid in enumerate(lists.is_valid().to_pylist()))
        return found


def row_starts(path: Path, frequency: str | None = None) -> list[tuple[np.datetime64, str | None] | None] | None:
    """Each row's `start` of a Parquet / Arrow / JSON Lines file of series rows (LOTSA's, GIFT-Eval's, GluonTS'
    layouts) and the pandas offset alias its steps are apart by: its `freq`, else (JSON Lines) GluonTS'
    `metadata.json` (`gluonts_frequency`), else `frequency` (None where there is none), read apart from its values
    (only `modrwkv forecast` dates its steps by them). None for a row whose start is null or no date
    (`seriesdates.parse_start`; a zoned or sub-second Parquet timestamp), and for a file with no `start`."""
    if is_table_file(path):
        return _table_starts(path, frequency)
    if data_suffix(path) not in JSON_EXTENSIONS:
        return None
    frequency = gluonts_frequency(path) or frequency
    found: list[tuple[np.datetime64, str | None] | None] = []
    for _, load in json_records(path):
        record = load()
        start = record.get(START) if isinstance(record, dict) else None
        stated = record.get(FREQ) if isinstance(record, dict) else None
        first = parse_start(start) if isinstance(start, str) else None
        found.append(None if first is None else (first, stated if isinstance(stated, str) else frequency))
    return found if any(found) else None


def gluonts_frequency(path: Path) -> str | None:
    """The `freq` of the GluonTS data set the JSON Lines file `path` is of (`gluonts_metadata`); None without one."""
    metadata = gluonts_metadata(path)
    return metadata[FREQ] if metadata is not None and isinstance(metadata.get(FREQ), str) else None


def gluonts_metadata(path: Path) -> dict[str, Any] | None:
    """The metadata.json of the GluonTS data set the JSON Lines file `path` is of (`GLUONTS_METADATA`: `freq`,
    `prediction_length`, ...); None for another file, or without one, or one that is no JSON object."""
    if data_suffix(path) not in JSON_EXTENSIONS:
        return None
    for name in GLUONTS_METADATA:
        metadata = path.parent / name
        try:
            found = json.loads(metadata.read_bytes()) if metadata.is_file() else None
        except (OSError, ValueError):
            continue
        if isinstance(found, dict):
            return found
    return None


def gluonts_test_beside(path: Path) -> Path | None:
    """The test split of the GluonTS data set whose train split `path` is (train/data.json, with a metadata.json:
    test/data.json of the same name beside its folder); None for any other file."""
    if path.parent.name != "train" or gluonts_metadata(path) is None:
        return None
    test = path.parent.parent / "test" / path.name
    return test if test.is_file() else None


@dataclasses.dataclass(frozen=True)
class StatedForecast:
    """The forecast a data set is published for: its horizon and its steps' frequency (each None where it states
    none), in its convention: "tsf" (the Monash archive's @horizon and @frequency) or "gluonts" (a GluonTS data set's
    metadata.json: `prediction_length` and `freq`, a pandas offset alias); `source` says where, for notes."""

    horizon: int | None
    frequency: str | None
    convention: str
    source: str


def stated_forecast(path: Path) -> StatedForecast | None:
    """What the file `path` states of its forecast: a .tsf file's header, a GluonTS data set's metadata.json beside its
    JSON Lines (`gluonts_metadata`); None for any other file. DataError for a .tsf header that does not read; a
    prediction_length that is no whole number >= 1 counts as none."""
    if data_suffix(path) == TSF_EXTENSION:
        header = tsf_header(path)
        return StatedForecast(header.horizon, header.frequency, "tsf", f"the @horizon of {path.name}")
    metadata = gluonts_metadata(path)
    if metadata is None:
        return None
    horizon = metadata.get("prediction_length")
    horizon = horizon if isinstance(horizon, int) and not isinstance(horizon, bool) and horizon >= 1 else None
    frequency = metadata.get(FREQ) if isinstance(metadata.get(FREQ), str) else None
    return StatedForecast(horizon, frequency, "gluonts",
                          f"the prediction_length of {path.name}'s GluonTS metadata.json")


def _table_starts(path: Path, frequency: str | None) -> list[tuple[np.datetime64, str | None] | None] | None:
    import pyarrow

    with open_table_file(path) as handle:
        schema = handle.schema_arrow
        if START not in schema.names:
            return None
        kind = schema.field(START).type
        texts = _text_type(kind)
        if not (texts or pyarrow.types.is_date(kind) or (pyarrow.types.is_timestamp(kind) and kind.tz is None)):
            return None
        stated = FREQ in schema.names and _text_type(schema.field(FREQ).type)
        found: list[tuple[np.datetime64, str | None] | None] = []
        for batch in decoded_batches(path, handle, handle.iter_batches(
                batch_size=PARQUET_BATCH_ROWS, columns=[START, *([FREQ] if stated else [])]), 0):
            starts = batch.column(0)
            if texts:
                firsts = [None if text is None else parse_start(text) for text in starts.to_pylist()]
            else:
                try:
                    firsts = list(starts.cast(pyarrow.timestamp("s")).to_numpy(zero_copy_only=False))
                except pyarrow.ArrowInvalid:  # (a fraction of a second, which a cast to seconds would drop)
                    return None
                firsts = [None if not valid else first for first, valid in zip(firsts, starts.is_valid().to_pylist(),
                                                                                strict=True)]
            aliases = batch.column(1).to_pylist() if stated else [None] * len(firsts)
            found.extend(None if first is None else (first, alias or frequency)
                         for first, alias in zip(firsts, aliases, strict=True))
        return found


def _table_rows(path: Path, columns: Sequence[str] | None) -> Iterator[SeriesRow]:
    with open_table_file(path) as handle:
        schema = handle.schema_arrow
        numeric = _numeric_lists(schema)
        chosen = _chosen(path, schema.names, columns, numeric)
        named = next((column for column in ID_COLUMNS if column in schema.names), None)
        batches = handle.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[*chosen, *([named] if named else [])])
        index = 0
        for batch in decoded_batches(path, handle, batches, 0):
            for record in batch.to_pylist():
                yield _row(path, f"row {index}", record, chosen, named, set(numeric))
                index += 1


def _json_rows(path: Path, columns: Sequence[str] | None) -> Iterator[SeriesRow]:
    chosen = None
    for source, load in json_records(path):
        record = load()
        if not isinstance(record, dict):
            raise DataError(source, "unreadable_file", f"a {type(record).__name__}, not a record of a series "
                            '(GluonTS: {"start": ..., "target": [...]})')
        if chosen is None:  # the first record's fields decide, as a Parquet file's schema does
            chosen = _chosen(path, list(record), columns, [field for field, value in record.items()
                                                           if _holds_numbers(value, source, field)])
        named = next((field for field in ID_COLUMNS if field in record), None)
        yield _row(path, source.removeprefix(f"{path}:"), record, chosen, named, set())


def _row(path: Path, where: str, record: dict[str, Any], chosen: list[str], named: str | None,
         typed: set[str]) -> SeriesRow:
    name = where if named is None or record.get(named) is None else f"{where} ({named} {str(record[named])!r})"
    source = f"{path}:{name}"
    missing = [column for column in chosen if column not in record]
    if missing:
        raise DataError(source, "unreadable_file", f"no column {missing[0]!r} (columns: {sorted(record)})")
    return SeriesRow(name, {column: row_values(record[column], source, column, typed=column in typed)
                            for column in chosen}, None if named is None or record.get(named) is None
                     else str(record[named]))


def _chosen(path: Path, names: list[str], columns: Sequence[str] | None, numeric: list[str]) -> list[str]:
    """The columns read: those given, else `target`, else every list-of-numbers column but `timestamp`."""
    if columns is not None:
        missing = [column for column in columns if column not in names]
        if missing:
            raise DataError(str(path), "unreadable_file", f"no column(s) {missing} (columns: {names})")
        return list(columns)
    if TARGET in names:
        return [TARGET]
    chosen = [column for column in numeric if column != TIMESTAMP]
    if not chosen:
        raise DataError(str(path), "unreadable_file", f"no {TARGET!r} column and no column of lists of numbers among "
                        f"{names}: a series row holds its values in {TARGET!r} (a list of numbers, or of lists for "
                        "[channels, steps]); or choose the columns to read (data.options.columns)")
    return chosen


def _numeric_lists(schema: Any) -> list[str]:
    """The columns of a Parquet schema holding lists of numbers, or lists of lists of numbers."""
    return [field.name for field in schema if is_list_type(field.type) and (_numbers(field.type.value_type) or (
        is_list_type(field.type.value_type) and _numbers(field.type.value_type.value_type)))]


def _text_type(kind: Any) -> bool:
    import pyarrow

    return pyarrow.types.is_string(kind) or pyarrow.types.is_large_string(kind)


def _numbers(kind: Any) -> bool:
    import pyarrow

    return pyarrow.types.is_integer(kind) or pyarrow.types.is_floating(kind)


def _holds_numbers(value: Any, source: str, field: str) -> bool:
    """Whether a JSON value is a list `row_values` reads (of numbers, or of lists of numbers)."""
    try:
        row_values(value, source, field)
    except DataError:
        return False
    return True


def _first_json_line(path: Path) -> Any:
    """The first non-blank line of a text file as JSON, or None where it is not one (a JSON array's '[', a
    pretty-printed record's '{', not UTF-8). Only that line is read, and none of a file that does not open with
    '{': a file of long series, or a JSON array written on one line (LLaVA's), is not loaded to be told apart."""
    try:
        with open_data(path) as handle:
            if opening_byte(handle) != b"{":
                return None
            handle.seek(0)
            for line in handle:
                if line.strip():
                    return json.loads(line.removeprefix(b"\xef\xbb\xbf"))
    except (OSError, ValueError):  # (json's errors, UnicodeDecodeError and open_data's among them, are ValueErrors)
        return None
    return None


def tsf_header(path: Path) -> TsfHeader:
    """The header of the .tsf file `path` (read up to its `@data` line); DataError naming the file and line for a
    malformed one (`_read_tsf_header`) or a file that does not open."""
    with open_unpacked(path) as handle:
        return _read_tsf_header(path, enumerate(handle, start=1))


def tsf_rows(path: Path, columns: Sequence[str] | None) -> Iterator[SeriesRow]:
    """The series of a .tsf file, one per data line, read once, line by line: its values as float64 (`?`: NaN, a
    gap) under `target`, as the hub's Parquet copy of the archive holds them, the row named by its line and its
    `series_name` ("14 (series_name 'T1')"), dated by its `start_timestamp` (a date attribute) and the header's
    `@frequency` where it has both (`seriesdates.tsf_dates`; a start or frequency not read so leaves it undated);
    the other attributes' values are not read. DataError naming the file and line for a line without one value per
    attribute before its own, a value that is not a number, a line with no values, and `columns` other than
    [target]."""
    if columns is not None and list(columns) != [TARGET]:
        raise DataError(str(path), "unreadable_file", f"columns {list(columns)}: a .tsf file's series are the values "
                        f"of each line, read as {TARGET!r}; its attributes name and date them")
    with open_unpacked(path) as handle:
        lines = enumerate(handle, start=1)
        header = _read_tsf_header(path, lines)
        names = [name for name, _ in header.attributes]
        named = names.index(TSF_NAME) if TSF_NAME in names else None
        started = header.attributes.index((TSF_START, "date")) if (TSF_START, "date") in header.attributes else None
        interval = tsf_interval(header.frequency)
        for number, line in lines:
            line = line.strip()
            if not line or line.startswith(b"#"):
                continue
            source = f"{path}:{number}"
            parts = line.split(b":")
            if len(parts) != len(names) + 1:
                raise DataError(source, "unreadable_file", f"{len(parts) - 1} attribute value(s) before the series, "
                                f"the header declares {len(names)} ({', '.join(names) or 'none'}); {TSF_LAYOUT}")
            name = str(number) if named is None else f"{number} ({TSF_NAME} {_tsf_text(parts[named])!r})"
            values = _tsf_values(parts[-1], f"{path}:{name}")
            dates = None if started is None else tsf_dates(_tsf_text(parts[started]), interval, len(values))
            yield SeriesRow(name, {TARGET: values}, None if named is None else _tsf_text(parts[named]), dates)


def _read_tsf_header(path: Path, lines: Iterator[tuple[int, bytes]]) -> TsfHeader:
    """Reads (line number, line) pairs up to and including `@data`. Comment (`#`) and blank lines are skipped, and
    header lines other than @attribute, @frequency, @horizon and @data (@relation, @missing, @equallength) are not
    read. DataError naming the line for an @attribute line that is not '@attribute NAME TYPE' of a known TYPE, an
    @horizon that is not a positive integer, or a line of data before @data; naming the file for no @data."""
    attributes: list[tuple[str, str]] = []
    frequency, horizon = None, None
    for number, raw in lines:
        line = _tsf_text(raw.strip())
        if not line or line.startswith("#"):
            continue
        source = f"{path}:{number}"
        if not line.startswith("@"):
            raise DataError(source, "unreadable_file", f"a line of data before the header's @data line; {TSF_LAYOUT}")
        tag, *values = line.split()
        tag = tag.lower()
        if tag == "@data":
            return TsfHeader(attributes, frequency, horizon)
        if tag == "@attribute":
            if len(values) != 2 or values[1].lower() not in TSF_ATTRIBUTE_TYPES:
                problem = (f"unknown attribute type {values[1]!r}" if len(values) == 2 else
                           f"{line!r} is not '@attribute NAME TYPE'")
                raise DataError(source, "unreadable_file", f"{problem} (types: {', '.join(TSF_ATTRIBUTE_TYPES)})")
            attributes.append((values[0], values[1].lower()))
        elif tag == "@frequency" and values:
            frequency = values[0]
        elif tag == "@horizon":
            horizon = int(values[0]) if len(values) == 1 and values[0].isdigit() else 0
            if horizon < 1:
                raise DataError(source, "unreadable_file", f"{line!r}: the forecast horizon is a positive integer "
                                "('@horizon 48')")
    raise DataError(str(path), "unreadable_file", f"no @data line: the file ends in its header; {TSF_LAYOUT}")


def _tsf_values(text: bytes, source: str) -> np.ndarray:
    """A .tsf line's values, comma-separated, as float64 (`?`: NaN); DataError naming `source` for none or one
    that is not a number."""
    cells = text.split(b",")
    if b"?" in text:
        cells = [b"nan" if cell.strip() == b"?" else cell for cell in cells]
    if not text.strip():
        raise DataError(source, "unreadable_file", f"no values after the attributes; {TSF_LAYOUT}")
    try:
        return np.array(cells, dtype=np.float64)
    except ValueError:  # (numpy does not say which): read one by one, as Python reads a number
        values = []
        for index, cell in enumerate(cells):
            try:
                values.append(float(cell))
            except ValueError:
                raise DataError(source, "unreadable_file", f"value {index} ({_tsf_text(cells[index])!r}) is not a "
                                "number ('?' marks a missing value)") from None
        return np.array(values, dtype=np.float64)


def _tsf_text(raw: bytes) -> str:
    """A .tsf header line or attribute value as text: UTF-8, else Windows-1252, the encoding the archive's own
    loader reads its files in."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
