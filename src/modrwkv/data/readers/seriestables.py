"""Tables of scalar columns holding time series, as pandas writes a DataFrame and the hub and forecasting libraries
publish them: Parquet and Arrow tables (`DataFrame.to_parquet()`, ETT copies `date,HUFL,...,OT`; Nixtla's
`unique_id,ds,y`; AutoGluon's `item_id,timestamp,target`; M4 / M5 rows over step columns), JSON / JSON Lines
records of scalar fields (`to_json(orient="records", lines=True)`, `orient="records"`'s array, the default
`to_json()`'s {column: {row: value}}) and .xlsx workbooks (`to_excel(index=False)`; the first worksheet, its first
row the header): told apart from tables of records and media rows (`is_series_table`), and read as the header and
rows of text cells the same table written as CSV holds (`table_cells`), which `series.TimeSeriesReader` reads with
its CSV logic: one implementation of wide, long-format and row-per-series tables, of date and id columns and of
their errors.

A cell is its value as text: a number as its shortest text that reads back as the same float64 (Arrow's cast, the
text Python's `repr` writes), a timestamp or date as ISO 8601 text (a worksheet's midnight as the date alone), a
category as its value; a null or NaN is an empty cell (a gap), as pandas' `to_csv` writes it. A Parquet / Arrow
row is named "row N", counted from 0 as pandas and `datasets` count (the rows of series-row files and hub tables
are named so); a JSON record as the JSON readers name it (a JSONL line "3", an array's entry "[2]"); a worksheet's
row by its number as Excel shows it ("row 5", the header being row 1). An index pandas stored as columns is the
first column(s), an unnamed one with an empty name, as `to_csv` writes it. A table with a list, struct or binary
column (a record with a list or object) is no table of cells: its rows are series rows (`seriesrows`), records or
media.
"""

from __future__ import annotations

import datetime
import functools
import itertools
import json
import logging
import math
import os
import re
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ...textfiles import TextFileError, data_suffix, open_data
from .asr import TEXT_KEYS
from .base import (WORKBOOK_EXTENSIONS, DataError, decoded_batches, is_table_file, json_records, open_table_file,
                   record_format)
from .hubrows import LABEL_COLUMNS, hub_features
from .series import DATE_COLUMN_NAMES, LONG_FORMAT_ID_COLUMNS, ROW_COUNTER
from .seriesrows import JSON_EXTENSIONS, TARGET, media_fields, media_in

logger = logging.getLogger(__name__)

# Fields of records, never a series table's columns, even where the record misses its format's key field: a
# question-answer record whose `question` is misspelt (its numeric `answer` no series), a transcript, a conversation,
# a prompt and its response.
_RECORD_FIELDS = frozenset({"question", "answer", "answers", "choices", "conversations", "messages", "system",
                            "tools", *TEXT_KEYS, "caption", "captions", "prompt", "response", "instruction"})
# A cell of more words than this, or of several lines, is prose: the table's rows are records of text (a review and
# its score), not series.
PROSE_WORDS = 8
_PROSE_ROWS = 20  # the first rows a table's text columns are looked at in
_BATCH_ROWS = 65536  # the rows turned into cells at a time, a column at a time
_PANDAS_INDEX = re.compile(r"__index_level_\d+__")  # an unnamed index pandas stored as a column
# Excel's workbook (Office Open XML), read with openpyxl, and Excel 97-2003's binary one, not read
WORKBOOK_EXTENSION, OLD_WORKBOOK_EXTENSION = WORKBOOK_EXTENSIONS
_HEAD_BYTES = 1 << 16  # what a JSON file is first told by: a LLaVA array or a COCO file is not loaded to be told
# The opening of pandas' default `to_json()`: {"column": {"0": value, ...}, ...}
_PANDAS_COLUMNS_HEAD = re.compile(rb'\{\s*"(?:[^"\\]|\\.)*"\s*:\s*\{\s*"0"\s*:')


def is_series_table(path: Path) -> bool:
    """Whether `path` is a table of series: a Parquet / Arrow file (`_is_series_arrow`), a JSON / JSONL file of
    records whose first record's values are all scalars (numbers, text, null), or an .xlsx workbook's first
    worksheet, whose columns and first rows pass `_told_as_series`'s rules and hold no media. False for a file that
    does not open or read (its reader says why) and for any other file. Told once per file as it is (what it
    holds alone decides): init, training and eval ask it of each data file several times, and telling a JSON array
    or a workbook reads it."""
    try:
        stat = os.stat(path)
    except OSError:
        return False
    return _is_series_table(os.path.abspath(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=256)
def _is_series_table(name: str, mtime_ns: int, size: int) -> bool:
    """`is_series_table` of the file `name` as it is at (`mtime_ns`, `size`)."""
    path = Path(name)
    workbook = path.suffix.lower() == WORKBOOK_EXTENSION  # (read as it is: a workbook is a ZIP archive)
    if is_table_file(path):
        return _is_series_arrow(path)
    if not (workbook or data_suffix(path) in JSON_EXTENSIONS) or not path.is_file():
        return False
    if not workbook:
        first = _json_head(path)  # (a file of other records is told without being loaded)
        if first is None or (first and (not _told_as_series(list(first), list(first), ()) or media_in(first))):
            return False
    return _series_values(_first_rows(path)[0])


def workbook_refusal(path: Path) -> str | None:
    """Why the workbook `path` is not read as data: an .xls file (save it as .xlsx or .csv), an .xlsx one that does
    not read (openpyxl missing, not a workbook) or whose first worksheet is no table of series (what it holds);
    None for a series workbook and for any other file."""
    suffix = path.suffix.lower()
    if suffix == OLD_WORKBOOK_EXTENSION:
        return f"{path}: {_OLD_WORKBOOK}"
    if suffix != WORKBOOK_EXTENSION:
        return None
    rows, error = _first_rows(path)
    if error is not None and not rows:
        return str(error)
    if _series_values(rows):
        return None
    found = f"the columns {rows[0][1]}" if len(rows) > 1 else "no rows" if not rows else f"only a header {rows[0][1]}"
    return (f"{path}: its first worksheet holds {found}, no table of series: a workbook is read as a time series (a "
            "column of numbers not named as a date or id; no label, record field, media or prose beside it), the "
            "first worksheet, its first row the header; save other data as .csv or JSON records")


def nested_columns_note(path: Path) -> str | None:
    """Why the Parquet / Arrow table `path`, whose rows are no records, is no table of series either: the columns it
    holds that are no scalar (lists, structs, bytes), which a table of series holds none of; None for another file, one
    that does not open, one without such columns and one with a record's field or media (a misspelt record's, or a hub
    table of media rows, not a series)."""
    if not is_table_file(path):
        return None
    try:
        with open_table_file(path) as handle:
            schema = handle.schema_arrow
    except DataError:
        return None
    if any(name.lower() in _RECORD_FIELDS for name in schema.names) or media_fields(path):
        return None
    nested = [f"{field.name!r} ({field.type})" for field in schema if not _scalar(field.type)]
    if not nested:
        return None
    numbers = [field.name for field in schema if _numbers(field.type)]
    drop = (f": drop {'that column' if len(nested) == 1 else 'those columns'} to read {numbers} as series" if numbers
            else "")
    return (f"a table of series holds scalar columns only (numbers, dates, ids), but {', '.join(nested)} "
            f"{'is' if len(nested) == 1 else 'are'} not, and series rows hold a list of numbers ({TARGET!r}){drop}")


_OLD_WORKBOOK = ("an .xls workbook (Excel 97-2003's binary format) is not read: save it as .xlsx (Excel Workbook) or "
                 "as .csv")


def _is_series_arrow(path: Path) -> bool:
    """Whether the Parquet / Arrow file `path` is a table of series: every column scalar, none a ClassLabel, nor
    holding media (`seriesrows.media_fields`), the rest as `_told_as_series` says of its columns and the text of
    its first rows."""
    try:
        with open_table_file(path) as handle:
            schema = handle.schema_arrow
            if not all(_scalar(field.type) for field in schema):
                return False
            if any(isinstance(feature, dict) and feature.get("_type") == "ClassLabel"
                   for feature in hub_features(schema).values()):
                return False
            text = [field.name for field in schema if _text(field.type)]
            batch = None
            if text:
                batches = handle.iter_batches(batch_size=_PROSE_ROWS, columns=text)
                batch = next(decoded_batches(path, handle, batches, 0), None)
    except DataError:
        return False
    columns = {} if batch is None else dict(zip(batch.schema.names, (column.to_pylist() for column in batch.columns),
                                                 strict=True))
    texts = [cell for cells in columns.values() for cell in cells]
    # numbers stored as text count as the numbers a CSV of the table reads them as
    numbers = [field.name for field in schema if _numbers(field.type) or (
        field.name in columns and any(_number(cell) for cell in columns[field.name])
        and all(_number(cell) or _gap(cell) for cell in columns[field.name]))]
    return _told_as_series(schema.names, numbers, texts) and not media_fields(path)


def _told_as_series(names: Sequence[str], numbers: Iterable[str], texts: Iterable[Any]) -> bool:
    """The rules a table of every container is told as series by, from its column names, those of its columns
    holding numbers and the text of its first rows: no column a record format's field (question, text, ...,
    `base.record_format`) or a label (`hubrows.LABEL_COLUMNS`), a column of numbers not named as a date, id, row
    counter or pandas index (`_series_name`), and no prose (a cell of several lines or more than `PROSE_WORDS`
    words: a review beside its score is a record of text)."""
    if record_format(dict.fromkeys(names)) is not None or any(name in LABEL_COLUMNS for name in names) \
            or any(name.strip().lower() in _RECORD_FIELDS for name in names):
        return False
    prose = any(isinstance(cell, str) and ("\n" in cell or len(cell.split()) > PROSE_WORDS) for cell in texts)
    return any(_series_name(name) for name in numbers) and not prose


def _first_rows(path: Path) -> tuple[list[tuple[str, list[Any]]], DataError | None]:
    """The header and first `_PROSE_ROWS` rows of values of a JSON file or workbook (`_value_rows`), those before
    the error that stopped them if one did, and that error: a file is told by what it holds, its reader names the
    record that is wrong."""
    rows: list[tuple[str, list[Any]]] = []
    try:
        rows.extend(itertools.islice(_value_rows(path), 1 + _PROSE_ROWS))
    except DataError as err:
        return rows, err
    return rows, None


def _series_values(rows: list[tuple[str, list[Any]]]) -> bool:
    """`_told_as_series` of a JSON file's or worksheet's header and first rows of values (`_value_rows`): every
    value a scalar, a column of numbers (and nulls) in them, and no media in the first row (`seriesrows.media_in`)."""
    if len(rows) < 2 or not all(_scalar_value(value) for _, values in rows[1:] for value in values):
        return False
    header, values = [_cell(name) for name in rows[0][1]], [row for _, row in rows[1:]]
    numbers = [name for k, name in enumerate(header) if any(_number(row[k]) for row in values)
               and all(_number(row[k]) or _gap(row[k]) for row in values)]
    texts = [value for row in values for value in row if isinstance(value, str)]
    return _told_as_series(header, numbers, texts) and not media_in(dict(zip(header, values[0], strict=True)))


def table_cells(path: Path) -> tuple[list[str], list[list[str]], list[str]] | None:
    """The table `path` (Parquet, Arrow, JSON, JSONL or .xlsx) as a CSV of it reads: its header, its rows of text
    cells (the module docstring) and each row's name ("row 0", "3", "[2]", "row 5"); None for a table with a column
    that is not scalar (a list, struct or binary one) and for JSON whose first record is no record of scalars
    holding a number (a GluonTS series row, read by `seriesrows`). DataError naming the file (and row) for one that
    does not read, has no rows, a column of a type with no text, a record whose fields are not the first record's
    or a later record's value that is no scalar; for an .xls workbook, saying to save it as .xlsx or .csv."""
    if path.suffix.lower() == OLD_WORKBOOK_EXTENSION:
        raise DataError(str(path), "unreadable_file", _OLD_WORKBOOK)
    if not is_table_file(path):
        return _value_cells(path)
    import pyarrow

    with open_table_file(path) as handle:
        schema = handle.schema_arrow
        if not all(_scalar(field.type) for field in schema):
            return None
        index = [name for name in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(name, str)]
        order = [*index, *(name for name in schema.names if name not in index)]
        cells: list[list[str]] = [[] for _ in order]
        batches = handle.iter_batches(batch_size=_BATCH_ROWS)
        for batch in decoded_batches(path, handle, batches, 0):
            for column, kept in zip(order, cells, strict=True):
                array = batch.column(column)
                try:
                    kept.extend(_text_cells(array))
                except (pyarrow.ArrowNotImplementedError, pyarrow.ArrowInvalid) as err:
                    raise DataError(str(path), "unreadable_file", f"column {column!r} of type {array.type} has no "
                                    f"text to read as a series cell ({err})") from None
    if not cells or not cells[0]:
        raise DataError(str(path), "unreadable_file", f"no rows (columns: {order})")
    header = ["" if _PANDAS_INDEX.fullmatch(name) else name for name in order]
    return header, [list(row) for row in zip(*cells, strict=True)], [f"row {k}" for k in range(len(cells[0]))]


def _value_cells(path: Path) -> tuple[list[str], list[list[str]], list[str]] | None:
    """`table_cells` of a JSON / JSONL file of records or of an .xlsx workbook's first worksheet."""
    rows = _value_rows(path)
    first = next(rows, None)
    if first is None:
        raise DataError(str(path), "unreadable_file", "no records" if data_suffix(path) in JSON_EXTENSIONS
                        else "its first worksheet is empty")
    header, cells, names = [_cell(name) for name in first[1]], [], []
    records = data_suffix(path) in JSON_EXTENSIONS
    for name, values in rows:
        bad = next((field for field, value in zip(header, values, strict=True) if not _scalar_value(value)), None)
        # (a series row of GluonTS: `seriesrows` reads it and names what is wrong with it)
        if records and not cells and (bad is not None or not any(_number(value) for value in values)):
            return None
        if bad is not None:
            raise DataError(f"{path}:{name}", "unreadable_file", f"field {bad!r} holds a "
                            f"{type(values[header.index(bad)]).__name__}: a table's cells are numbers, text or null")
        cells.append([_cell(value) for value in values])
        names.append(name)
    if not cells:
        raise DataError(str(path), "unreadable_file", f"no rows after the header {header}")
    return header, cells, names


def _value_rows(path: Path) -> Iterator[tuple[str, list[Any]]]:
    """The rows of values of a JSON / JSONL file of records (`_record_rows`) or of an .xlsx workbook's first
    worksheet (`_sheet_rows`): first ("", the header), then each row's name and values in the header's order."""
    if path.suffix.lower() == WORKBOOK_EXTENSION:
        return _sheet_rows(path)
    return _record_rows(path)


def _record_rows(path: Path) -> Iterator[tuple[str, list[Any]]]:
    """`_value_rows` of JSON records (`base.json_records`): the header is the first record's fields in its order;
    each row is named as the JSON readers name the record ("3", "[2]"). DataError naming the record for one that
    is not a JSON object or whose fields are not the first record's."""
    header: list[str] | None = None
    for source, load in json_records(path):
        record = load()
        if not isinstance(record, dict):
            raise DataError(source, "unreadable_file", f"a {type(record).__name__}, not a record of a table's fields")
        if header is None:
            header = list(record)
            yield "", header
        missing = [field for field in header if field not in record]
        extra = [field for field in record if field not in header]
        if missing or extra:
            what = f"no field {missing[0]!r}" if missing else f"a field {extra[0]!r}"
            raise DataError(source, "unreadable_file", f"{what}, where the first record's fields are {header}: "
                            "every record of a table holds the same fields (null for a gap)")
        yield source.removeprefix(f"{path}:"), [record[field] for field in header]


def _sheet_rows(path: Path) -> Iterator[tuple[str, list[Any]]]:
    """`_value_rows` of an .xlsx workbook's first worksheet, read with openpyxl in read-only mode (cached formula
    values): the first row that is not blank is the header (its trailing empty cells left out), blank rows are
    skipped, each row is named by its number ("row 5", Excel's, from 1). DataError for a missing openpyxl, a file
    that is no workbook, or a row with a value beyond the header's columns. A workbook of several sheets is read
    from its first, which the log names."""
    try:
        import openpyxl
    except ImportError:
        raise DataError(str(path), "unreadable_file", "reading an .xlsx workbook needs openpyxl, which is not "
                        "installed: pip install openpyxl") from None
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, InvalidFileException) as err:  # (no workbook)
        raise DataError(str(path), "unreadable_file", f"not an .xlsx workbook ({type(err).__name__}: {err})") from None
    try:
        if not workbook.worksheets:
            raise DataError(str(path), "unreadable_file", f"no worksheet (sheets: {workbook.sheetnames})")
        sheet = workbook.worksheets[0]
        if len(workbook.sheetnames) > 1:
            logger.info("%s: reading the first worksheet %r (the workbook's sheets: %s)", path, sheet.title,
                        ", ".join(workbook.sheetnames))
        width = None
        for number, row in enumerate(sheet.iter_rows(values_only=True), start=1):
            if all(value is None or value == "" for value in row):
                continue
            if width is None:
                width = max(k for k, value in enumerate(row) if value is not None and value != "") + 1
                yield "", list(row[:width])
                continue
            beyond = next((k for k in range(width, len(row)) if row[k] is not None and row[k] != ""), None)
            if beyond is not None:
                raise DataError(f"{path}:row {number}", "unreadable_file", f"a value in column {beyond + 1} "
                                f"({row[beyond]!r}), beyond the header row's {width} columns")
            yield f"row {number}", [*row[:width], *[None] * (width - len(row))]
    finally:
        workbook.close()


def _json_head(path: Path) -> dict[str, Any] | None:
    """The first record of the JSON array or JSONL file `path` when it holds scalars only, decoded from the file's
    first `_HEAD_BYTES` alone; {} for pandas' `to_json()` columns ({"column": {"0": ...}}, told by its opening);
    None for any other file (a LLaVA array, a COCO file, series rows)."""
    try:
        with open_data(path) as handle:
            head = handle.read(_HEAD_BYTES).removeprefix(b"\xef\xbb\xbf").lstrip()
    except (OSError, TextFileError):
        return None
    if _PANDAS_COLUMNS_HEAD.match(head):
        return {}
    if head[:1] == b"[":
        head = head[1:].lstrip()
    try:
        record, _ = json.JSONDecoder().raw_decode(head.decode("utf-8", errors="replace"))
    except ValueError:
        return None
    scalars = isinstance(record, dict) and bool(record) and all(_scalar_value(value) for value in record.values())
    return record if scalars else None


def _scalar_value(value: Any) -> bool:
    """Whether a JSON or worksheet value is a cell's: a number, text, a date or time, a boolean, or null."""
    return value is None or isinstance(value, (str, int, float, datetime.date, datetime.time))


def _number(value: Any) -> bool:
    """Whether a JSON or worksheet value is a number as a CSV of the table reads one: a number, or text that is one
    (Excel's "number stored as text", `df.astype(str).to_json()`; a CSV's cells are all text)."""
    if isinstance(value, str):
        try:
            return math.isfinite(float(value))
        except ValueError:
            return False
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _gap(value: Any) -> bool:
    """Whether a JSON or worksheet value is a gap in a column of numbers, as a CSV of the table reads it: null, an
    empty cell, or NaN (as text too, "nan" as `astype(str)` writes it)."""
    if value is None or isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, str):
        try:
            return not value.strip() or math.isnan(float(value))
        except ValueError:
            return False
    return False


def _cell(value: Any) -> str:
    """A JSON or worksheet value as the text of a CSV cell, as pandas' `to_csv` writes it: a number as Python's
    `repr` (NaN, as null, an empty cell), a date and time as ISO 8601 (midnight as the date alone), a boolean
    as True / False."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, datetime.datetime):
        return value.date().isoformat() if value.time() == datetime.time() else value.isoformat(sep=" ")
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value)
    return str(value)


def _text_cells(array: Any) -> list[str]:
    import pyarrow
    import pyarrow.compute

    if pyarrow.types.is_dictionary(array.type):  # (pandas' category)
        array = array.dictionary_decode()
    if pyarrow.types.is_floating(array.type):  # NaN is a gap, as a null: pandas writes both as an empty cell
        array = pyarrow.compute.if_else(pyarrow.compute.is_nan(array), pyarrow.scalar(None, array.type), array)
    if pyarrow.types.is_timestamp(array.type):
        array = _whole_timestamps(array)
    return array.cast(pyarrow.string()).fill_null("").to_pylist()


def _whole_timestamps(array: Any) -> Any:
    """A timestamp column as pandas' `to_csv` writes it: to the second where no value has a fraction of one (Arrow
    writes pandas' nanoseconds as "2024-01-01 00:00:00.000000000", which is no ISO date cell), and, unzoned, as dates
    where every value is at midnight (a zoned one's local times with their offset: 2020-01-01 00:00:00+0100); else
    as it is."""
    import pyarrow
    import pyarrow.compute

    whole = array.cast(pyarrow.timestamp("s", array.type.tz), safe=False)
    if pyarrow.compute.all(pyarrow.compute.equal(whole.cast(array.type), array)).as_py() is False:
        return array
    if array.type.tz is not None:
        return whole
    days = whole.cast(pyarrow.date32(), safe=False)
    midnight = pyarrow.compute.all(pyarrow.compute.equal(days.cast(pyarrow.timestamp("s")), whole)).as_py()
    return whole if midnight is False else days


def _scalar(kind: Any) -> bool:
    """Whether a column of this pyarrow type holds one value per row that reads as a cell: not nested (a list, a
    struct, a map) and no bytes (media)."""
    import pyarrow

    if pyarrow.types.is_dictionary(kind):
        kind = kind.value_type
    return not (pyarrow.types.is_nested(kind) or pyarrow.types.is_binary(kind) or pyarrow.types.is_large_binary(kind)
                or pyarrow.types.is_fixed_size_binary(kind))


def _numbers(kind: Any) -> bool:
    import pyarrow

    return pyarrow.types.is_integer(kind) or pyarrow.types.is_floating(kind) or pyarrow.types.is_decimal(kind)


def _text(kind: Any) -> bool:
    import pyarrow

    if pyarrow.types.is_dictionary(kind):
        kind = kind.value_type
    return pyarrow.types.is_string(kind) or pyarrow.types.is_large_string(kind)


def _series_name(name: str) -> bool:
    """Whether a numeric column of this name may be a series: not a date, a long-format id, a row counter or an
    index pandas stored."""
    named = name.strip()
    return not (named.lower() in DATE_COLUMN_NAMES or named in (*LONG_FORMAT_ID_COLUMNS, ROW_COUNTER)
                or _PANDAS_INDEX.fullmatch(named))
