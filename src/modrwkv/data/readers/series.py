"""Time-series forecasting samples cut from CSV or NPZ files with a sliding window.

Each window of `lookback` + `horizon` steps becomes user "<series>\\n{prompt}" with the lookback
part as the series item, and assistant = the horizon part as text (`format_forecast`). The numeric
target also goes into `meta`, so evaluation computes MSE on exact numbers and only the model's
output needs `parse_forecast`.

Per file, a window starting at row `s` exists for s = 0, stride, 2*stride, ... while
s + lookback + horizon <= T, i.e. floor((T - lookback - horizon) / stride) + 1 windows. Values are
used as they are in the file (normalise beforehand if the benchmark asks for it); series items and
targets are float32.

Columns (CSV) or arrays (NPZ) are forecast one by one by default (`multivariate=False`, the
channel-independent setting of the zero-shot benchmarks); `multivariate=True` keeps them together
as [lookback, channels] items with one text line per forecast step.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import logging
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from ..sample import MARKERS, Message, Sample
from .base import DataError, OnError, PathLike, Reader, as_paths

logger = logging.getLogger(__name__)

DATE_COLUMN_NAMES = {"date", "datetime", "time", "timestamp", "ds"}
DEFAULT_PROMPT = "Predict the next {horizon} values of this series, separated by commas."
DEFAULT_MULTIVARIATE_PROMPT = (
    "Predict the next {horizon} steps of these {channels} series, one line per step with values separated by commas."
)
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_SEPARATORS = re.compile(r"[,\s]+")


def format_forecast(values: np.ndarray, decimals: int = 3) -> str:
    """Renders [horizon] values as "v1, v2, ..." and [horizon, channels] as one such line per step,
    each with a fixed number of decimals (fixed width keeps the token pattern regular for the LM)."""
    values = np.asarray(values)
    if values.ndim == 1:
        return ", ".join(_format_number(v, decimals) for v in values)
    if values.ndim == 2:
        return "\n".join(", ".join(_format_number(v, decimals) for v in row) for row in values)
    raise ValueError(f"forecast values must be 1-D or 2-D, got shape {values.shape}")


def _format_number(value: float, decimals: int) -> str:
    text = f"{value:.{decimals}f}"
    return text.lstrip("-") if float(text) == 0 else text  # no "-0.000"


def parse_forecast(text: str, horizon: int, channels: int | None = None) -> np.ndarray:
    """Turns `format_forecast` text (or a model's imitation of it) back into numbers.

    Univariate (`channels=None`): numbers separated by commas and/or whitespace, exactly `horizon`
    of them -> float64 [horizon]. Multivariate: exactly `horizon` non-blank lines of `channels`
    numbers each -> [horizon, channels]. Raises ValueError naming the offending token or count, so
    an evaluator can score an unparsable answer as it sees fit instead of getting a silent NaN.
    """
    if channels is None:
        return np.array(_numbers(text, horizon, "value"), dtype=np.float64)
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != horizon:
        raise ValueError(f"expected {horizon} lines of {channels} values, got {len(lines)} lines")
    rows = [_numbers(line, channels, f"value on line {i + 1}") for i, line in enumerate(lines)]
    return np.array(rows, dtype=np.float64).reshape(horizon, channels)


def _numbers(text: str, expected: int, what: str) -> list[float]:
    tokens = [t for t in _SEPARATORS.split(text.strip()) if t]
    for token in tokens:
        if not _NUMBER.fullmatch(token):
            raise ValueError(f"not a number: {token!r} in forecast text {text[:80]!r}")
    if len(tokens) != expected:
        raise ValueError(f"expected {expected} {what}(s), got {len(tokens)}")
    return [float(t) for t in tokens]


@dataclasses.dataclass
class _Series:
    """One forecastable series of a file: its values ([T] or [T, C]), the column name(s) recorded
    in `meta`, and how to name the window starting at row s in `Sample.source`."""

    label: str
    columns: list[str]
    values: np.ndarray
    where: Callable[[int], str]


class TimeSeriesReader(Reader):
    """Sliding-window forecasting samples from CSV (header row) or NPZ files.

    `columns` picks CSV columns or NPZ arrays (default: every numeric one, leaving out a first CSV
    column named like a date/time or holding non-numbers). Empty CSV cells read as NaN and windows
    touching them are bad records ("non_finite"); a series shorter than one window is one bad record
    ("too_short"). Sources are "path:line:column" (CSV line of the window's first row, header = line
    1; "path:line" when multivariate), "path:array[start]" or "path:array[start, channel]" (NPZ).
    Unusable files (missing, no such column, non-numeric cell in a chosen column) raise `DataError`
    whatever `on_error` says: there is no record to skip.
    """

    def __init__(
        self,
        paths: PathLike | Sequence[PathLike],
        *,
        lookback: int,
        horizon: int,
        stride: int = 1,
        columns: Sequence[str] | None = None,
        multivariate: bool = False,
        prompt: str | None = None,
        decimals: int = 3,
        delimiter: str = ",",
        on_error: OnError = "skip",
        max_examples: int = 5,
        log_limit: int = 20,
    ) -> None:
        for label, value in (("lookback", lookback), ("horizon", horizon), ("stride", stride)):
            if value < 1:
                raise ValueError(f"{label} must be >= 1, got {value}")
        if decimals < 0:
            raise ValueError(f"decimals must be >= 0, got {decimals}")
        self.paths = as_paths(paths)
        self.lookback, self.horizon, self.stride = lookback, horizon, stride
        self.columns = list(columns) if columns is not None else None
        self.multivariate = multivariate
        self.prompt = prompt if prompt is not None else DEFAULT_MULTIVARIATE_PROMPT if multivariate else DEFAULT_PROMPT
        self.decimals = decimals
        self.delimiter = delimiter
        super().__init__(on_error=on_error, max_examples=max_examples, log_limit=log_limit)

    @property
    def name(self) -> str:
        return ", ".join(map(str, self.paths))

    def num_windows(self, length: int) -> int:
        """Windows a series of `length` steps yields: floor((T - lookback - horizon) / stride) + 1."""
        span = self.lookback + self.horizon
        return (length - span) // self.stride + 1 if length >= span else 0

    def _candidates(self) -> Iterator[Callable[[], Sample]]:
        for path in self.paths:
            for series in self._load(path):
                count = self.num_windows(len(series.values))
                if count == 0:
                    yield functools.partial(self._too_short, path, series)
                for start in range(0, count * self.stride, self.stride):
                    yield functools.partial(self._window, series, start)

    def _too_short(self, path: Path, series: _Series) -> Sample:
        span = self.lookback + self.horizon
        raise DataError(
            str(path), "too_short", f"series {series.label!r} has {len(series.values)} steps, fewer than {span}"
        )

    def _window(self, series: _Series, start: int) -> Sample:
        source = series.where(start)
        cut = start + self.lookback
        with np.errstate(over="ignore"):  # values beyond float32 become inf, refused just below
            window = series.values[start:cut].astype(np.float32)
            target = series.values[cut : cut + self.horizon].astype(np.float32)
        if not (np.isfinite(window).all() and np.isfinite(target).all()):
            raise DataError(source, "non_finite", f"window of {series.label!r} contains NaN or inf (empty cells?)")
        channels = window.shape[1] if window.ndim == 2 else 1
        prompt = self.prompt.format(horizon=self.horizon, channels=channels)
        messages = [
            Message("user", f"{MARKERS['series']}\n{prompt}"),
            Message("assistant", format_forecast(target, self.decimals)),
        ]
        meta = {
            "target": target,
            "columns": list(series.columns),
            "start": start,
            "lookback": self.lookback,
            "horizon": self.horizon,
        }
        return Sample(messages=messages, series=[window], source=source, meta=meta)

    def _load(self, path: Path) -> list[_Series]:
        suffix = path.suffix.lower()
        if suffix == ".npz":
            return self._load_npz(path)
        if suffix in (".csv", ".tsv", ".txt"):
            return self._load_csv(path)
        raise DataError(str(path), "unreadable_file", f"unsupported time-series file type {suffix!r} (csv or npz)")

    def _load_csv(self, path: Path) -> list[_Series]:
        delimiter = "\t" if path.suffix.lower() == ".tsv" and self.delimiter == "," else self.delimiter
        try:
            raw = path.read_bytes()
        except OSError as err:
            raise DataError(str(path), "unreadable_file", f"cannot open: {err}") from err
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            line = raw.count(b"\n", 0, err.start) + 1
            raise DataError(f"{path}:{line}", "unreadable_file",
                            f"not UTF-8 text: byte {raw[err.start]:#04x}") from None
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        rows, lines = [], []
        try:
            header = next(reader, None)
            for row in reader:
                if any(cell.strip() for cell in row):
                    rows.append(row)
                    lines.append(reader.line_num)
        except csv.Error as err:  # e.g. a NUL byte, or a quoted field that never ends
            raise DataError(f"{path}:{reader.line_num}", "unreadable_file", f"not CSV: {err}") from None
        if header is None:
            raise DataError(str(path), "unreadable_file", "empty CSV file (a header row is required)")
        for row, line in zip(rows, lines, strict=True):
            if len(row) != len(header):
                raise DataError(f"{path}:{line}", "unreadable_file", f"{len(row)} fields, header has {len(header)}")
        names = self.columns if self.columns is not None else _numeric_columns(header, rows)
        if not names:
            raise DataError(str(path), "unreadable_file", f"no numeric column among {header}")
        table = np.empty((len(rows), len(names)), dtype=np.float64)
        for j, name in enumerate(names):
            if name not in header:
                raise DataError(str(path), "unreadable_file", f"no column {name!r} (columns: {header})")
            index = header.index(name)
            for i, (row, line) in enumerate(zip(rows, lines, strict=True)):
                value = _to_float(row[index])
                if value is None:
                    raise DataError(
                        f"{path}:{line}", "unreadable_file", f"column {name!r}: {row[index]!r} is not a number"
                    )
                table[i, j] = value
        if self.multivariate:
            return [_Series(str(path), list(names), table, lambda s: f"{path}:{lines[s]}")]
        return [
            _Series(name, [name], table[:, j], functools.partial(_csv_source, path, lines, name))
            for j, name in enumerate(names)
        ]

    def _load_npz(self, path: Path) -> list[_Series]:
        try:
            archive = np.load(path, allow_pickle=False)
        except _NPZ_ERRORS as err:
            raise DataError(str(path), "unreadable_file", f"cannot read NPZ: {err}") from None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataError(str(path), "unreadable_file", "holds a single .npy array, not an NPZ archive of named arrays")
        with archive:
            available = list(archive.files)
            if self.columns is not None:
                missing = [name for name in self.columns if name not in available]
                if missing:
                    raise DataError(str(path), "unreadable_file", f"no array(s) {missing} (arrays: {available})")
            names = self.columns if self.columns is not None else available
            series = []
            for name in names:
                try:
                    values = archive[name]
                except _NPZ_ERRORS as err:
                    raise DataError(str(path), "unreadable_file", f"cannot read array {name!r}: {err}") from None
                if not (np.issubdtype(values.dtype, np.number) and values.ndim in (1, 2)):
                    if self.columns is not None:
                        raise DataError(
                            str(path),
                            "unreadable_file",
                            f"array {name!r} is {values.dtype} {values.shape}, not numeric [T] or [T, C]",
                        )
                    logger.info("%s: leaving out array %r (%s %s)", path, name, values.dtype, values.shape)
                    continue
                series.extend(self._npz_series(path, name, values.astype(np.float64)))
        if not series:
            raise DataError(str(path), "unreadable_file", f"no numeric [T] or [T, C] array among {available}")
        return series

    def _npz_series(self, path: Path, name: str, values: np.ndarray) -> list[_Series]:
        if values.ndim == 1 or self.multivariate:
            return [_Series(name, [name], values, lambda s: f"{path}:{name}[{s}]")]
        return [
            _Series(
                f"{name}[{c}]", [f"{name}[{c}]"], values[:, c], functools.partial(_npz_channel_source, path, name, c)
            )
            for c in range(values.shape[1])
        ]


# What numpy and zipfile raise for a damaged archive: bad zip structure, bad compression data, a
# flipped flag that claims encryption or an unknown compression method (RuntimeError), bad .npy header.
_NPZ_ERRORS = (OSError, ValueError, EOFError, RuntimeError, zipfile.BadZipFile, zlib.error)


def _csv_source(path: Path, lines: list[int], column: str, start: int) -> str:
    return f"{path}:{lines[start]}:{column}"


def _npz_channel_source(path: Path, name: str, channel: int, start: int) -> str:
    return f"{path}:{name}[{start}, {channel}]"


def _to_float(cell: str) -> float | None:
    """A CSV cell as a number: empty -> NaN (a gap), non-number -> None."""
    cell = cell.strip()
    if not cell:
        return float("nan")
    try:
        return float(cell)
    except ValueError:
        return None


def _numeric_columns(header: list[str], rows: list[list[str]]) -> list[str]:
    """Default columns: those whose cells are all numbers or empty (and not all empty), except a
    first column named like a date (an epoch-seconds time column is numeric but not a series)."""
    names = []
    for index, name in enumerate(header):
        if index == 0 and name.strip().lower() in DATE_COLUMN_NAMES:
            continue
        values = [_to_float(row[index]) for row in rows]
        if values and all(v is not None for v in values) and not all(np.isnan(v) for v in values):
            names.append(name)
        else:
            logger.debug("leaving out non-numeric column %r", name)
    return names
