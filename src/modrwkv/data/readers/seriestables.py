"""Parquet and Arrow tables of scalar columns holding time series, as `DataFrame.to_parquet()` writes them and the
hub and forecasting libraries publish them (ETT copies `date,HUFL,...,OT`; Nixtla's `unique_id,ds,y`; AutoGluon's
`item_id,timestamp,target`; M4 / M5 rows over step columns): told apart from tables of records and media rows
(`is_series_table`), and read as the header and rows of text cells the same table written as CSV holds
(`table_cells`), which `series.TimeSeriesReader` reads with its CSV logic: one implementation of wide, long-format
and row-per-series tables, of date and id columns and of their errors.

A cell is its value as text: a number as its shortest text that reads back as the same float64 (Arrow's cast, the
text Python's `repr` writes), a timestamp or date as ISO 8601 text, a category as its value; a null or NaN is an
empty cell (a gap), as pandas' `to_csv` writes it. A row is named "row N", counted from 0 as pandas and `datasets`
count (the rows of series-row files and hub tables are named so). An index pandas stored as columns is the first
column(s), an unnamed one with an empty name, as `to_csv` writes it. A table with a list, struct or binary column is
no table of cells: its rows are series rows (`seriesrows`), records or media.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .base import DataError, decoded_batches, open_table_file, record_format
from .hubrows import LABEL_COLUMNS, hub_features
from .series import DATE_COLUMN_NAMES, LONG_FORMAT_ID_COLUMNS, ROW_COUNTER
from .seriesrows import media_fields

# A cell of more words than this, or of several lines, is prose: the table's rows are records of text (a review and
# its score), not series.
PROSE_WORDS = 8
_PROSE_ROWS = 20  # the first rows a table's text columns are looked at in
_BATCH_ROWS = 65536  # the rows turned into cells at a time, a column at a time
_PANDAS_INDEX = re.compile(r"__index_level_\d+__")  # an unnamed index pandas stored as a column


def is_series_table(path: Path) -> bool:
    """Whether the Parquet / Arrow file `path` is a table of series: every column scalar, one of them numbers not
    named as a date, id, row counter or label (`series.DATE_COLUMN_NAMES`, ...), no column a record format's field
    (question, text, ...), a label (`hubrows.LABEL_COLUMNS`, a ClassLabel) or media (`seriesrows.media_fields`), and
    no prose in the first rows' text. False for a file that does not open (its reader says why)."""
    try:
        with open_table_file(path) as handle:
            schema = handle.schema_arrow
            if not all(_scalar(field.type) for field in schema) or record_format(dict.fromkeys(schema.names)):
                return False
            labels = [name for name, feature in hub_features(schema).items()
                      if isinstance(feature, dict) and feature.get("_type") == "ClassLabel"]
            if labels or any(name in LABEL_COLUMNS for name in schema.names):
                return False
            if not any(_numbers(field.type) and _series_name(field.name) for field in schema):
                return False
            text = [field.name for field in schema if _text(field.type)]
            batch = None
            if text:
                batches = handle.iter_batches(batch_size=_PROSE_ROWS, columns=text)
                batch = next(decoded_batches(path, handle, batches, 0), None)
    except DataError:
        return False
    prose = batch is not None and any(isinstance(cell, str) and ("\n" in cell or len(cell.split()) > PROSE_WORDS)
                                      for column in batch.columns for cell in column.to_pylist())
    return not prose and not media_fields(path)


def table_cells(path: Path) -> tuple[list[str], list[list[str]], list[str]] | None:
    """The table `path` as a CSV of it reads: its header, its rows of text cells (the module docstring) and each
    row's name ("row 0", ...); None for a table with a column that is not scalar (a list, struct or binary one).
    DataError naming the file (and row) for one that does not read, has no rows, or a column of a type with no
    text."""
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


def _text_cells(array: Any) -> list[str]:
    import pyarrow
    import pyarrow.compute

    if pyarrow.types.is_dictionary(array.type):  # (pandas' category)
        array = array.dictionary_decode()
    if pyarrow.types.is_floating(array.type):  # NaN is a gap, as a null: pandas writes both as an empty cell
        array = pyarrow.compute.if_else(pyarrow.compute.is_nan(array), pyarrow.scalar(None, array.type), array)
    return array.cast(pyarrow.string()).fill_null("").to_pylist()


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
