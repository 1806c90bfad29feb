"""Time-series forecasting samples cut from CSV, NPZ, series-row or .tsf files with a sliding window.

Each window of `lookback` + `horizon` steps becomes user "<series>\\n{prompt}" (`series_user_turn`)
with the lookback part as the series item, and assistant = the horizon part as text. Training
records the prompt template with the model (`series_prompt` in its config.json);
`ModRWKVPipeline.forecast` and the forecasting eval tasks ask with it, through the same function.
The model never sees the window's level and scale (RevIN-style instance normalisation): the
encoder reads the lookback as `z = (x - mean) / scale` with the lookback's own statistics
(`instance_stats`), and the assistant text is the future on that same scale,
`(future - mean) / scale`, in `format_forecast`'s compact form. With `season` (the encoder's option of
the same name, which training passes on), the text is instead the correction to the seasonal-naive
forecast of that period (`seasonal_baseline`, optionally with `drift`), on the same scale: the
model only has to say how the future differs from the last season; with `linear_baseline` (a
`LinearBaseline`, which training fits on the training windows) it is also the correction to that
linear forecast (`forecast_baseline`). A forecast is mapped back to
series units with the window's statistics (and baseline)
(`ModRWKVPipeline.forecast` does it), so it moves with the input: forecasting `3x + 5` gives
`3 * forecast(x) + 5`. The numeric target in series units also goes into `meta` (with the
window's `mean` and `scale`), so evaluation computes MSE on exact numbers.

Per file, a window starting at row `s` exists for s = 0, stride, 2*stride, ... while
s + lookback + horizon <= T, i.e. floor((T - lookback - horizon) / stride) + 1 windows. With
`split` ("train", "val" or "test") only the rows of that split of the usual long-horizon layout
are used (the ETT borders for files named ETTh1/ETTh2/ETTm1/ETTm2, else 70/10/20, as
`modrwkv eval` cuts them); with `holdout="last"` instead each series' last `horizon` steps are its
one test window and the `horizon` before them its one val window, the steps before those its training
rows (the fixed-horizon protocol of the Monash archive, M4 and GluonTS: a series holding fewer steps
than a look-back in front of them gets a look-back that begins with gaps); with `standardize` every
column is standardised with the mean and standard deviation of its training rows (the protocol's
scaler), so nobody has to cut and scale files by hand and training sees exactly what
`modrwkv eval --task custom-series` scores.

Columns (CSV) or arrays (NPZ) are forecast one by one by default (`multivariate=False`, the
channel-independent setting of the zero-shot benchmarks); `multivariate=True` keeps them together
as [lookback, channels] items with one text line per forecast step.

A Parquet or JSON Lines file of one series per row (the hub's and GluonTS' layout, `seriesrows`), or a .tsf file
of the Monash archive (a series per line, read as a row's `target`), is read
row by row: each row's series is windowed, split, standardised and checked exactly as a CSV column of
the same values would be (its own length deciding its split's borders); its channels (a [channels, steps]
`target`, or several list columns) are forecast one by one or, with `multivariate`, together. A row too
short for a window, or for its split's borders, is one "too_short" record, not the file's error.

A Parquet or Arrow table of scalar columns (`df.to_parquet()`, the hub's ETT copies, Nixtla's and AutoGluon's files),
JSON / JSONL records of scalar fields (`df.to_json()`) and an .xlsx workbook's first worksheet are read as the CSV of
the same table (`seriestables.table_cells`: its header and rows of text cells), by the same code, in every layout
below; a table's rows are named "row N" (from 0), JSON records as their readers name them (JSONL line "3", array
entry "[2]"), a worksheet's rows by Excel's numbers ("row 5"), where a CSV's are named by their line.

A long-format CSV (several series one under another, told apart by id columns: Nixtla's `unique_id,ds,y`,
AutoGluon's `item_id,timestamp,target`, Kaggle Store Sales' `id,date,store_nbr,family,sales,...`) is read with
`id_columns` (automatically: a `unique_id`, `item_id` or `series_id` column): its rows are grouped by their ids
(groups in order of first appearance), each group ordered by its ISO dates (else its numeric `ds`-like column,
else as the file has it) and read as a series row is, its own length deciding its split's borders. Without id
columns, a date column whose values repeat (in most rows) is refused, naming the columns that would tell the series
apart, rather than read as one series of interleaved values.

A series' steps are dated (`TimeSeriesReader.series_dates`, `seriesdates`) by its rows' ISO dates in a date column
(a long-format group by its own rows), by a .tsf line's `start_timestamp` and its header's `@frequency`, or by a
series row's `timestamp` list, or its `start` and `freq` (`seriesrows.row_starts`): the windows do not read them;
`modrwkv forecast` dates the steps after each series' last by them.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import itertools
import logging
import re
import string
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from ...constants import SERIES_HOLDOUTS
from ...textfiles import data_suffix
from ..sample import MARKERS, Message, Sample
from .base import (WORKBOOK_EXTENSIONS, DataError, OnError, PathLike, Reader, as_paths, data_file_text, data_label,
                   header_delimiter, is_table_file, media_column, open_unpacked)
from .hffolders import TABLE_COLUMNS
from .seriesdates import (RowDates, SeriesDates, frequency_dates, interval_text, parse_date_cells, repeated_dates,
                          skipped_steps)
from .seriesrows import (JSON_EXTENSIONS, TSF_EXTENSION, row_starts, series_rows, stated_forecast,
                         table_row_timestamps)

logger = logging.getLogger(__name__)

# Columns that say when a row is, not a series: forecasting a year column is a straight line that says
# nothing (statsmodels' sunspots and nile files start with one, macrodata with year and quarter).
DATE_COLUMN_NAMES = {"date", "datetime", "time", "timestamp", "ds", "year", "quarter", "month", "week", "day", "hour",
                     "minute"}
# Date columns that may hold a position in a cycle (the hour of the day, 0..23 again each day): their integers repeat in
# one series, so alone they neither order its rows nor tell that several series are stacked.
CYCLIC_DATE_COLUMNS = {"quarter", "month", "week", "day", "hour", "minute"}
# Columns that name a row's series in a long-format CSV (several series one under another): Nixtla's (statsforecast,
# neuralforecast, TimeGPT), AutoGluon's and Chronos' TimeSeriesDataFrame's, and the generic name.
LONG_FORMAT_ID_COLUMNS = ("unique_id", "item_id", "series_id")
ROW_COUNTER = "id"  # a long-format CSV's row number (Kaggle's Store Sales train.csv), not a series
# How many columns named as time steps (dates, or one prefix with consecutive numbers) make a CSV's rows its series
MIN_ROW_STEPS = 10
_SNIFFED_ROWS = 20  # the rows a CSV's row names are told by (`_time_step_columns`)
MAX_ID_CANDIDATES = 8  # columns tried (alone and in pairs) when suggesting the id columns of a stacked CSV
DEFAULT_PROMPT = "Predict the next {horizon} values of this series."
DEFAULT_MULTIVARIATE_PROMPT = "Predict the next {horizon} steps of these {channels} series, one line per step."
SERIES_EPS = 1e-5  # variance floor of the instance normalisation (the wavenet encoder's default)
FORECAST_DECIMALS = 2  # forecasts are written in hundredths of the window's scale ...
FORECAST_MAX_DIGITS = 4  # ... with at most 4 digits: |value| <= 99.99 scales (larger is clipped)
Split = Literal["train", "val", "test"]
# How a series' rows are split: "ratio" the long-horizon layout (70/10/20, every test window at stride 1), "last" the
# fixed-horizon one (its last horizon the one test window, the horizon before it the one val window)
Holdout = Literal["ratio", "last"]  # (modrwkv.constants.SERIES_HOLDOUTS, which the CLI offers)
SERIES_PROMPT_FIELDS = ("horizon", "channels")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_SEPARATORS = re.compile(r"[,\s]+")


def instance_stats(values: np.ndarray, eps: float = SERIES_EPS) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and scale `sqrt(var + eps)` of a window [T] or [T, C], ignoring NaN (RevIN's
    statistics). The encoder normalises its input with them and the reader its targets."""
    values = np.asarray(values, dtype=np.float64)
    columns = values[:, None] if values.ndim == 1 else values
    mean = np.nanmean(columns, axis=0)
    scale = np.sqrt(np.nanvar(columns, axis=0) + eps)
    return mean, scale


def series_prompt_template(prompt: str | None, multivariate: bool) -> str:
    """The template the reader asks with: `prompt`, or when None the default (of [T, C] windows
    when `multivariate`)."""
    if prompt is not None:
        return prompt
    return DEFAULT_MULTIVARIATE_PROMPT if multivariate else DEFAULT_PROMPT


def series_prompt_problem(template: object) -> str | None:
    """Why `template` cannot be a series prompt template, or None when it can: it must be a string
    whose only replacement fields are {horizon} and {channels} (literal braces doubled, {{ }}), or
    None (no template given: the default's)."""
    if template is None:
        return None
    if not isinstance(template, str):
        return f"must be a string, got {type(template).__name__}"
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
        unknown = [field for field in fields if field not in SERIES_PROMPT_FIELDS]
        if unknown:
            return (f"{template!r} uses {{{unknown[0]}}}; a series prompt may use only {{horizon}} and {{channels}} "
                    "(write {{ and }} for literal braces)")
        template.format(horizon=1, channels=1)
    except (ValueError, TypeError) as exc:  # a lone brace, a bad format spec
        return f"{template!r} is not a valid template ({exc}; write {{{{ and }}}} for literal braces)"
    return None


def series_user_turn(template: str, horizon: int, channels: int) -> str:
    """The user turn asking for a forecast: the series marker, then `template` with its {horizon}
    and {channels}. The reader builds its training samples here, and `ModRWKVPipeline.forecast`
    and the forecasting eval tasks ask here with the template the model recorded, so a model is
    asked exactly as it was trained."""
    return f"{MARKERS['series']}\n{template.format(horizon=horizon, channels=channels)}"


def seasonal_baseline(normalised: np.ndarray, horizon: int, season: int, drift: bool = False) -> np.ndarray:
    """The seasonal-naive forecast of a normalised look-back [T] or [T, C] (gaps already 0, the
    window's mean): step h of the future gets the value `season` steps before it, the look-back's
    last `season` values repeated, `z[T - season + h % season]`. With `drift`, it also climbs by the
    look-back's mean change over one season, `mean(z[t] - z[t - season])`, once per season ahead
    (0 when the look-back holds less than two seasons). A forecaster with `season` writes its
    future as a correction to this (`TimeSeriesReader`), and the encoder adds it back
    (`WaveNetSeriesEncoder.denormalize`), both through this one function."""
    values = np.asarray(normalised, dtype=np.float64)
    columns = values[:, None] if values.ndim == 1 else values
    steps = len(columns)
    if not 1 <= season <= steps:
        raise ValueError(f"season {season} must lie in [1, look-back length {steps}]")
    ahead = np.arange(horizon)
    baseline = columns[steps - season + ahead % season]
    if drift and steps > season:
        change = (columns[season:] - columns[:-season]).mean(axis=0)
        baseline = baseline + change * (ahead // season + 1)[:, None]
    return baseline if values.ndim == 2 else baseline[:, 0]


@dataclasses.dataclass(frozen=True)
class LinearBaseline:
    """A linear forecast from a normalised look-back of `lookback` steps: step h of the future is
    `z @ weight[:, h] + bias[h]`, each channel on its own (the same rule for every channel).
    `modrwkv.data.linear_baseline.fit_linear_baseline` fits it on the training windows (a ridge
    regression); a forecaster with `linear_baseline` writes its corrections to it."""

    weight: np.ndarray  # [lookback, horizon]
    bias: np.ndarray  # [horizon]

    @property
    def lookback(self) -> int:
        return int(self.weight.shape[0])

    @property
    def horizon(self) -> int:
        return int(self.weight.shape[1])

    def __call__(self, normalised: np.ndarray, horizon: int) -> np.ndarray:
        """The forecast [horizon, C] of a look-back [lookback, C]; the first `horizon` steps of the
        fitted ones (each step is its own regression, so a shorter horizon is exact)."""
        if len(normalised) != self.lookback:
            raise ValueError(f"the linear baseline reads a look-back of {self.lookback} steps, got {len(normalised)}")
        if horizon > self.horizon:
            raise ValueError(f"the linear baseline was fitted for a horizon of {self.horizon} steps; "
                             f"forecast at most {self.horizon}, not {horizon}")
        return normalised.T.dot(self.weight[:, :horizon]).T + self.bias[:horizon, None]


def forecast_baseline(normalised: np.ndarray, horizon: int, season: int, drift: bool = False,
                      linear: LinearBaseline | None = None) -> np.ndarray:
    """What a forecaster writes its corrections to, for a normalised look-back [T] or [T, C] (gaps
    already 0): the seasonal-naive forecast of `season` (with `drift`; nothing when 0) plus, with
    `linear`, a linear forecast of what remains. The reader subtracts it from the target and the
    encoder adds it back (`WaveNetSeriesEncoder.denormalize`), both here."""
    values = np.asarray(normalised, dtype=np.float64)
    columns = values[:, None] if values.ndim == 1 else values
    baseline = seasonal_baseline(columns, horizon, season, drift) if season else np.zeros((horizon, columns.shape[1]))
    if linear is not None:
        baseline = baseline + linear(columns, horizon)
    return baseline if values.ndim == 2 else baseline[:, 0]


def format_forecast(values: np.ndarray, decimals: int = FORECAST_DECIMALS) -> str:
    """Renders (normalised) values as whole numbers of 10^-decimals, separated by spaces:
    [0.13, -1.5, 2.0] -> "13 -150 200"; [horizon, channels] gives one such line per step.

    Whole numbers with spaces are about 1.8 World tokens per value (2-digit numbers and " 2"-style
    pieces are single tokens), against ~5.5 for "-1.234, "; 0.01 of the window's scale is far
    below any forecast's error. Values are clipped to FORECAST_MAX_DIGITS digits."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim not in (1, 2):
        raise ValueError(f"forecast values must be 1-D or 2-D, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("forecast values must be finite")
    limit = 10**FORECAST_MAX_DIGITS - 1
    units = np.clip(np.rint(values * 10**decimals), -limit, limit).astype(np.int64)
    if units.ndim == 1:
        return " ".join(map(str, units.tolist()))
    return "\n".join(" ".join(map(str, row)) for row in units.tolist())


def parse_forecast(
    text: str, horizon: int, channels: int | None = None, decimals: int = FORECAST_DECIMALS
) -> np.ndarray:
    """Turns `format_forecast` text (or a model's imitation of it) back into numbers (divided by
    10^decimals).

    Univariate (`channels=None`): numbers separated by whitespace and/or commas, exactly `horizon`
    of them -> float64 [horizon]. Multivariate: exactly `horizon` non-blank lines of `channels`
    numbers each -> [horizon, channels]. Raises ValueError naming the offending token or count, so
    a caller can treat an unparsable answer as it sees fit instead of getting a silent NaN.
    """
    if channels is None:
        return np.array(_numbers(text, horizon, "value"), dtype=np.float64) / 10**decimals
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != horizon:
        raise ValueError(f"expected {horizon} lines of {channels} values, got {len(lines)} lines")
    rows = [_numbers(line, channels, f"value on line {i + 1}") for i, line in enumerate(lines)]
    return np.array(rows, dtype=np.float64).reshape(horizon, channels) / 10**decimals


def read_forecast(
    text: str, horizon: int, channels: int | None = None, decimals: int = FORECAST_DECIMALS
) -> tuple[np.ndarray, bool]:
    """The forecast a reply states, and whether it was well-formed (`parse_forecast` accepts it).
    Otherwise the numbers found are read in order, cut or padded with the last one (0, the
    window's mean, when there is none), so that an incomplete reply can still be scored."""
    try:
        return parse_forecast(text, horizon, channels, decimals), True
    except ValueError:
        size = horizon * (channels or 1)
        found = [float(n) for n in _NUMBER.findall(text)][:size]
        fill = found[-1] if found else 0.0
        values = np.array(found + [fill] * (size - len(found)), dtype=np.float64) / 10**decimals
        return (values if channels is None else values.reshape(horizon, channels)), False


def cut_forecast(text: str, count: int) -> str:
    """`text` up to the end of its `count`-th number (a constrained reply may end with the start of
    one more value, which closed the list)."""
    found = list(_NUMBER.finditer(text))
    return text[: found[count - 1].end()] if len(found) >= count else text


def _numbers(text: str, expected: int, what: str) -> list[float]:
    tokens = [t for t in _SEPARATORS.split(text.strip()) if t]
    for token in tokens:
        if not _NUMBER.fullmatch(token):
            raise ValueError(f"not a number: {token!r} in forecast text {text[:80]!r}")
    if len(tokens) != expected:
        raise ValueError(f"expected {expected} {what}(s), got {len(tokens)}")
    return [float(t) for t in tokens]


# What to do about series too short for the windows asked for (statsmodels' elnino: 61 yearly rows).
SHORTER = "use a shorter look-back or horizon (data.options.lookback / horizon; init and eval --lookback / --horizon)"


def split_rows(path: Path, n_rows: int, lookback: int, split: Split, horizon: int, holdout: Holdout = "ratio"
               ) -> tuple[int, int]:
    """Rows [start, end) of a split of a series of `n_rows` steps in `path` (lookback rows in front included; a start
    below 0 where `holdout="last"` pads the look-back with gaps), with the borders `modrwkv eval` uses: "ratio" the
    ETT files' by name, any other file's 70/10/20 (`long_horizon_split`); "last" the fixed-horizon protocol's
    (`last_horizon_split`)."""
    from ...evaluation.metrics.series import last_horizon_split, long_horizon_split  # (evaluation imports this)

    stem = path.stem.lower()
    name = stem if stem in ("etth1", "etth2", "ettm1", "ettm2") else "custom"
    try:
        if holdout == "last":
            return last_horizon_split(n_rows, lookback, horizon)[split]
        return long_horizon_split(name, n_rows, lookback)[split]
    except ValueError as exc:
        raise DataError(str(path), "unreadable_file", f"{exc}: {SHORTER}") from None


def default_holdout(paths: Sequence[Path]) -> Holdout:
    """"last" where every file states its forecast horizon (`seriesrows.stated_forecast`: a .tsf file's @horizon, the
    Monash archive's; a GluonTS data set's prediction_length: data sets published for the fixed-horizon protocol, a
    forecast of each series' last horizon), else "ratio". `modrwkv init` trains and `modrwkv eval --task
    custom-series` scores by it unless told otherwise. A .tsf header that does not read: DataError."""
    stated = [stated_forecast(Path(path)) for path in paths]
    return "last" if paths and all(found is not None and found.horizon is not None for found in stated) else "ratio"


@dataclasses.dataclass
class _Series:
    """One forecastable series of a file: its values ([T] or [T, C]), the column name(s) recorded
    in `meta`, and how to name the window starting at row s in `Sample.source`. `in_rows`: a row of
    a series-rows file, one of many lengths, whose being too short for its split is its own
    "too_short" record (a CSV's length is the file's: its split failing is the file's error)."""

    label: str
    columns: list[str]
    values: np.ndarray
    where: Callable[[int], str]
    in_rows: bool = False
    ids: dict[str, str] | None = None  # of a long-format CSV's group of rows: its value of each id column
    # what the data set calls it where the label says more: a series row's id ("ABW"; with its channel where the row
    # holds several, "ABW target[1]"); None: its label
    name: str | None = None
    scaler: tuple[np.ndarray, np.ndarray] | None = None  # (mean, std) `standardize` scaled the values by
    # when its steps are: its rows' dates (a CSV's date column, shared by its columns), or a .tsf line's start and
    # frequency; None where the file does not date them (a Parquet row's `timestamp` list: `series_dates` reads it)
    dates: SeriesDates | None = None
    row: int | None = None  # of a file of series rows: the row it is of, from 0
    undated: str | None = None  # why a CSV's or table's date column does not date it (`_undated_note`), for a warning


class TimeSeriesReader(Reader):
    """Sliding-window forecasting samples from CSV (header row), NPZ, Parquet / Arrow tables of scalar columns
    (read as the CSV of the table), or Parquet / JSON Lines files of one series per row.

    `columns` picks CSV columns, NPZ arrays or the list columns of series rows (default: every
    numeric one, leaving out columns named like a date or time — date, datetime, time, timestamp,
    ds, year, quarter, month, week, day, hour, minute — and columns holding non-numbers; of series
    rows `target`, else every list of numbers but `timestamp`, `seriesrows`). Empty CSV cells (nulls
    of series rows) read as NaN: in a look-back they are gaps (the encoder reads them as the window's
    mean), in a forecast target they make the window a bad record
    ("non_finite"); a series shorter than one window is one bad record ("too_short"). `split`,
    `holdout` and `standardize`: see the module docstring. Sources are "path:line:column" (CSV line of the
    window's first row, header = line 1; "path:line" when multivariate; a table's "path:row 12:column", its rows
    counted from 0; JSON records' "path:3:column" (a JSONL line) or "path:[2]:column"; a worksheet's "path:row
    5:column", as Excel numbers its rows), "path:array[start]" or "path:array[start, channel]" (NPZ), "path:row 12 (id 'T1')
    target[start]" (a series row: a Parquet row counted from 0, a JSONL line from 1, then its id; a [channels,
    steps] target's channel c: "target[c, start]"; "path:row 12 (id 'T1')[start]" when multivariate).
    `id_columns` (CSV, table of scalar columns): the columns telling apart the series of a long-format file, each
    group of rows with the same ids a series (labelled "store_nbr=1 family=AUTOMOTIVE sales"; its windows' sources
    name the file's lines); None: a `unique_id`, `item_id` or `series_id` column if the header has one. Unusable
    files (missing, no such column, non-numeric cell in a chosen column) raise `DataError` whatever `on_error`
    says: there is no record to skip.
    """

    set_by_training = ("linear_baseline",)  # fitted by training from the encoder's option, not a data.options one

    def __init__(
        self,
        paths: PathLike | Sequence[PathLike],
        *,
        lookback: int,
        horizon: int,
        stride: int = 1,
        columns: Sequence[str] | None = None,
        id_columns: Sequence[str] | None = None,
        multivariate: bool = False,
        split: Split | None = None,
        holdout: Holdout = "ratio",
        standardize: bool = False,
        season: int = 0,
        drift: bool = False,
        linear_baseline: LinearBaseline | None = None,
        prompt: str | None = None,
        decimals: int = FORECAST_DECIMALS,
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
        if not 0 <= season <= lookback:
            raise ValueError(f"season must lie in [0 (none), lookback={lookback}], got {season}")
        if drift and not season:
            raise ValueError("drift needs a season (the drift is the mean change over one season)")
        if linear_baseline is not None and (linear_baseline.lookback, linear_baseline.horizon) != (lookback, horizon):
            raise ValueError(f"linear_baseline was fitted for look-back {linear_baseline.lookback} and horizon "
                             f"{linear_baseline.horizon}, the reader cuts {lookback} and {horizon}")
        if split not in (None, "train", "val", "test"):
            raise ValueError(f"split must be train, val, test or None (all rows), got {split!r}")
        if holdout not in SERIES_HOLDOUTS:
            raise ValueError(f"holdout must be {' or '.join(SERIES_HOLDOUTS)}, got {holdout!r}")
        problem = series_prompt_problem(prompt)
        if problem:
            raise ValueError(f"prompt: {problem}")
        self.paths = as_paths(paths)
        self.lookback, self.horizon, self.stride = lookback, horizon, stride
        self.columns = list(columns) if columns is not None else None
        if isinstance(id_columns, str) or (id_columns is not None and not all(
                isinstance(name, str) and name.strip() for name in id_columns)):
            raise ValueError(f"id_columns must be a list of column names, got {id_columns!r}")
        self.id_columns = [name.strip() for name in id_columns] if id_columns is not None else None
        # each file's series as read, once: init asks for the columns, the long-format groups and the training rows,
        # training iterates, and a CSV of millions of rows is parsed (and its text columns warned of) once
        self._series_of: dict[Path, list[_Series]] = {}
        self.multivariate = multivariate
        self.split, self.holdout, self.standardize = split, holdout, standardize
        self.season, self.drift, self.linear_baseline = season, drift, linear_baseline
        self.prompt = series_prompt_template(prompt, multivariate)
        self.decimals = decimals
        self.delimiter = delimiter
        super().__init__(on_error=on_error, max_examples=max_examples, log_limit=log_limit)

    @property
    def name(self) -> str:
        return data_label(self.paths)

    def num_windows(self, length: int) -> int:
        """Windows a series of `length` steps yields: floor((T - lookback - horizon) / stride) + 1."""
        span = self.lookback + self.horizon
        return (length - span) // self.stride + 1 if length >= span else 0

    def series_columns(self) -> list[str]:
        """The columns (CSV, series rows) or arrays (NPZ) read as series, over all files, in order."""
        return list(dict.fromkeys(c for path in self.paths for series in self._load_file(path) for c in series.columns))

    def long_format(self) -> list[tuple[str, list[str], int]]:
        """Each file read in long format: its name, its id columns and its number of series (groups of rows)."""
        found = []
        for path in self.paths:
            groups = {tuple(series.ids.items()) for series in self._load_file(path) if series.ids}
            if groups:
                found.append((str(path), [column for column, _ in next(iter(groups))], len(groups)))
        return found

    def training_rows(self) -> list[np.ndarray]:
        """Each channel of each series, 1-D, over the rows its windows are cut from (the `split`'s
        rows, lookback included; all rows without a split), scaled as the windows are: what
        `season: auto` detects the period on (`modrwkv.data.seasonality.detect_season`)."""
        rows = []
        for path in self.paths:
            for series in self._load(path):
                borders = self._borders(path, series, self.split)
                if borders is None:
                    continue
                first, end = borders
                columns = series.values[max(first, 0):end].astype(np.float64)  # (a padded look-back's gaps left out)
                rows.extend((columns[:, None] if columns.ndim == 1 else columns).T)
        return rows

    def _candidates(self) -> Iterator[Callable[[], Sample]]:
        for path in self.paths:
            for series in self._load(path):
                borders = self._borders(path, series, self.split)
                if borders is None:
                    need = (f"two horizons of {self.horizon} held out (val and test) and a training step before them"
                            if self.holdout == "last" else f"{self.split} rows with a look-back of {self.lookback}")
                    yield functools.partial(self._too_short, path, f"series {series.label!r} has {len(series.values)} "
                                            f"steps, too few for {need}")
                    continue
                first, end = borders
                count = self.num_windows(end - first)
                if count == 0:
                    rows = "" if self.split is None else f" in its {self.split} rows"
                    yield functools.partial(self._too_short, path, f"series {series.label!r} has {end - first} "
                                            f"steps{rows}, fewer than a window's {self.lookback + self.horizon} "
                                            f"(look-back {self.lookback} + horizon {self.horizon}: {SHORTER})")
                for start in range(first, first + count * self.stride, self.stride):
                    yield functools.partial(self._window, series, start)

    def _borders(self, path: Path, series: _Series, split: Split | None) -> tuple[int, int] | None:
        """Rows [first, end) of `series` in `split` (all of them without one; `split_rows`); None for a
        series row too short for the split's borders, which yields no window (a CSV's `DataError`)."""
        if split is None:
            return 0, len(series.values)
        try:
            return split_rows(path, len(series.values), self.lookback, split, self.horizon, self.holdout)
        except DataError:
            if series.in_rows:
                return None
            raise

    @staticmethod
    def _too_short(path: Path, detail: str) -> Sample:
        raise DataError(str(path), "too_short", detail)

    def _window(self, series: _Series, start: int) -> Sample:
        source = series.where(max(start, 0))
        cut = start + self.lookback
        with np.errstate(over="ignore"):  # values beyond float32 become inf, refused just below
            window = series.values[max(start, 0):cut].astype(np.float32)
            target = series.values[cut : cut + self.horizon].astype(np.float32)
        if start < 0:  # (holdout "last": a series shorter than look-back + horizon, its look-back begun with gaps)
            window = np.concatenate([np.full((-start, *window.shape[1:]), np.nan, dtype=np.float32), window])
        if not np.isfinite(target).all():
            raise DataError(source, "non_finite", f"forecast target of {series.label!r} contains NaN or inf (empty cells?)")
        if np.isinf(window).any() or np.isnan(window).all(axis=0).any():
            raise DataError(source, "non_finite", f"look-back of {series.label!r} has infinite or no observed values")
        channels = window.shape[1] if window.ndim == 2 else 1
        mean, scale = instance_stats(window)
        normalised = (target.astype(np.float64).reshape(self.horizon, channels) - mean) / scale
        if self.season or self.linear_baseline is not None:
            past = (window.astype(np.float64).reshape(self.lookback, channels) - mean) / scale
            normalised = normalised - forecast_baseline(np.nan_to_num(past), self.horizon, self.season, self.drift,
                                                        self.linear_baseline)
        messages = [
            Message("user", series_user_turn(self.prompt, self.horizon, channels)),
            Message("assistant", format_forecast(normalised if window.ndim == 2 else normalised[:, 0], self.decimals)),
        ]
        meta = {
            "target": target,
            "mean": mean.astype(np.float32),
            "scale": scale.astype(np.float32),
            "columns": list(series.columns),
            "series": series.label,  # which series of the file: unique in it (a series row's names its row)
            "start": start,
            "lookback": self.lookback,
            "horizon": self.horizon,
            "season": self.season,
            "linear_baseline": self.linear_baseline is not None,
        }
        return Sample(messages=messages, series=[window], source=source, meta=meta)

    def _load(self, path: Path) -> list[_Series]:
        series = self._load_file(path)
        if self.standardize:
            from ...evaluation.metrics.series import fit_standard  # evaluation imports this module

            for item in series:
                columns = item.values[:, None] if item.values.ndim == 1 else item.values
                train = self._borders(path, item, "train")
                if train is None:  # (a row too short to split: it yields no window)
                    continue
                stats = fit_standard(columns[:train[1]])
                item.values = ((columns - stats.mean) / stats.std).reshape(item.values.shape)
                item.scaler = stats
        return series

    def scaled_series(self) -> dict[str, tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]]:
        """Each series of the files by its label (`Sample.meta["series"]`): its values as its windows are cut from
        them (standardised with `standardize`), and the (mean, std) that map them back to the file's units (0 and 1
        without): what the forecasting eval scales MASE by (each window's history) and computes sMAPE in."""
        found = {}
        for path in self.paths:
            for series in self._load(path):
                width = 1 if series.values.ndim == 1 else series.values.shape[1]
                found[series.label] = (series.values, series.scaler or (np.zeros(width), np.ones(width)))
        return found

    def series_names(self) -> dict[str, str]:
        """Each series' label (`Sample.meta["series"]`) and what the data set calls it, where the label says more (a
        series row's id: "ABW" for "17 (series_name 'ABW') target"; else the label): `modrwkv forecast`'s names."""
        return {series.label: series.name or series.label for path in self.paths for series in self._load_file(path)}

    def series_dates(self, frequency: str | None = None) -> dict[str, SeriesDates | None]:
        """Each series' label (`Sample.meta["series"]`) and when its steps are, where its file dates them (None
        otherwise): the rows of a CSV / table with an ISO date column (a long-format group's own rows, in time
        order), a .tsf line's `start_timestamp` and `@frequency`, a Parquet / Arrow row's `timestamp` list (Chronos'
        layout), a Parquet / Arrow / JSON Lines row's `start` and `freq` (LOTSA's, GluonTS'; `frequency`, a pandas
        offset alias, where neither the row nor GluonTS' metadata.json states one: `seriesrows.row_starts`). The
        rows' dates are read here, apart from the values, which training reads without them. Their `next_dates` are
        `modrwkv forecast`'s timestamps; rows with a start but no frequency are left undated, said in a warning."""
        found: dict[str, SeriesDates | None] = {}
        for path in self.paths:
            series = self._load_file(path)
            rows = any(item.row is not None and item.dates is None for item in series)
            stamps = table_row_timestamps(path) if rows and is_table_file(path) else None
            starts = row_starts(path, frequency) if rows and stamps is None else None
            unstated = 0
            for item in series:
                dates = item.dates
                if dates is None and stamps and item.row is not None and item.row < len(stamps):
                    steps = stamps[item.row]
                    dates = steps if steps is not None and len(steps.dates) == len(item.values) else None
                elif dates is None and starts and item.row is not None and item.row < len(starts) \
                        and starts[item.row] is not None:
                    start, alias = starts[item.row]
                    unstated += alias is None
                    dates = None if alias is None else frequency_dates(start, alias, len(item.values), str(path))
                found[item.label] = dates
            undated = next((item.undated for item in series if item.undated), None)
            if undated:
                logger.warning("%s: its steps are not dated: %s, which is no ISO date (2024-01-31, 2024-01-31 "
                               "06:00:00, with a zone or not), pandas Period of a month or quarter (2024-01, 2024Q1) "
                               "nor date of numbers whose day and month order the column tells (31/01/2024, "
                               "1/31/2024; 01/02/2024 in every row of a few could be either): modrwkv forecast writes "
                               "no timestamp", path, undated)
            if unstated:
                logger.warning("%s: %d series have a start but no frequency (the file states none: a 'freq' field, "
                               "or GluonTS' metadata.json beside a JSON Lines file): left undated; give their pandas "
                               "offset alias (modrwkv forecast --freq h)", path, unstated)
        return found

    def series_lengths(self) -> list[int]:
        """Each series' length in steps as its file holds it, before any split (`modrwkv init` fits its windows to
        short series)."""
        return [len(series.values) for path in self.paths for series in self._load_file(path)]

    def share_reads(self, other: TimeSeriesReader) -> None:
        """Shares the files `other` read and will read, as they read (a reader of the same files, columns, ids and
        layout, with other windows): `modrwkv init` fits the look-back on a file's series and then scans its
        windows, reading a CSV of millions of rows once. ValueError for a reader that reads files otherwise."""
        layout = ("columns", "id_columns", "multivariate", "delimiter")
        if any(getattr(self, name) != getattr(other, name) for name in layout):
            raise ValueError(f"the readers read their files otherwise ({', '.join(layout)} differ)")
        self._series_of = other._series_of

    def _load_file(self, path: Path) -> list[_Series]:
        """`path`'s series as the file holds them (`_read_file`), read once; copies, whose values `_load` replaces."""
        if path not in self._series_of:
            self._series_of[path] = self._read_file(path)
        return [dataclasses.replace(series) for series in self._series_of[path]]

    def _read_file(self, path: Path) -> list[_Series]:
        suffix = data_suffix(path)  # (x.csv.gz is a CSV: `open_unpacked` reads it decompressed)
        if suffix in (".csv", ".tsv", ".txt"):
            return self._load_csv(path)
        if is_table_file(path) or suffix in JSON_EXTENSIONS or path.suffix.lower() in WORKBOOK_EXTENSIONS:
            from .seriestables import table_cells  # (it builds on this module)

            cells = table_cells(path)
            if cells is not None:  # a table of scalar columns (or records of scalar fields), read as the CSV of it
                return self._cells_series(path, *cells)
        if self.id_columns:
            raise DataError(str(path), "unreadable_file", f"id_columns {self.id_columns} tell apart the series of a "
                            "long-format CSV, TSV, Parquet / Arrow / JSON / .xlsx table of scalar columns; a file of "
                            "series rows holds one series per row, an NPZ one per array")
        if suffix == ".npz":
            return self._load_npz(path)
        if is_table_file(path) or suffix in (*JSON_EXTENSIONS, TSF_EXTENSION):
            return self._load_rows(path)
        open_unpacked(path).close()  # (a missing file, an archive, is named as such)
        compressed = ", compressed" if suffix != path.suffix.lower() else ""  # (a workbook is read as it is)
        raise DataError(str(path), "unreadable_file", f"unsupported time-series file type {suffix!r}{compressed} (csv, "
                        "tsv, npz, tsf, a parquet / arrow / json / jsonl / xlsx table of scalar columns, or parquet / "
                        "arrow / jsonl of series rows; csv, tsv, tsf, json and jsonl also gzip, bzip2 or xz "
                        "compressed)")

    def _load_rows(self, path: Path) -> list[_Series]:
        """Each row's series (`seriesrows.series_rows`): each column, and each channel of a [channels, steps]
        one, on its own, or with `multivariate` all of the row's together (of one length)."""
        series = []
        for index, row in enumerate(series_rows(path, self.columns)):
            channels = _row_channels(row.values)
            if not self.multivariate:
                series.extend(_Series(f"{row.name} {name}", [name], values,
                                      functools.partial(_row_source, path, f"{row.name} {opening}"), in_rows=True,
                                      name=None if row.id is None else row.id if len(channels) == 1
                                      else f"{row.id} {name}", dates=row.dates, row=index)
                              for name, values, opening in channels)
                continue
            lengths = {name: len(values) for name, values, _ in channels}
            if len(set(lengths.values())) > 1:
                raise DataError(f"{path}:{row.name}", "unreadable_file", f"columns of different lengths {lengths}: "
                                "a multivariate series is read step by step")
            series.append(_Series(row.name, list(lengths), np.column_stack([values for _, values, _ in channels]),
                                  functools.partial(_row_source, path, f"{row.name}["), in_rows=True,
                                  dates=row.dates, row=index))
        if not series:
            raise DataError(str(path), "unreadable_file", "no rows")
        return series

    def _load_csv(self, path: Path) -> list[_Series]:
        text = data_file_text(path)
        delimiter = self.delimiter
        if delimiter == ",":  # the default: follow what the file uses (Excel in many locales writes ';')
            delimiter = "\t" if data_suffix(path) == ".tsv" else header_delimiter(text)
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        rows, lines = [], []
        try:
            header = next(reader, None)
            for row in reader:
                if any(cell.strip() for cell in row):
                    rows.append(row)
                    lines.append(str(reader.line_num))
        except csv.Error as err:  # e.g. a NUL byte, or a quoted field that never ends
            raise DataError(f"{path}:{reader.line_num}", "unreadable_file", f"not CSV: {err}") from None
        if header is None:
            raise DataError(str(path), "unreadable_file", "empty CSV file (a header row is required)")
        if not rows:  # else "no numeric column", which sends one looking at the header
            raise DataError(str(path), "unreadable_file", f"no data rows after the header {header}")
        # Empty names take no part: a pandas index's (to_csv's first header cell) or a trailing delimiter's.
        named = [name.strip() for name in header if name.strip()]
        numbers = [name for name in named if _to_float(name) is not None]
        dates = [name for name in named if _DATE_CELL.fullmatch(name)]
        # all numbers (integer names may be years), or a data row's timestamp and numbers (a file written
        # without its header: no column is named like a date, and the first row would be lost unsaid)
        if numbers and ((len(numbers) == len(named) and not all(re.fullmatch(r"\d+", name) for name in named))
                        or (dates and len(dates) + len(numbers) == len(named))):
            raise DataError(f"{path}:1", "unreadable_file", f"the first row {header} holds "
                            f"{'a date and ' if dates else ''}numbers, not column names: the file needs a header "
                            "row (e.g. `date,load`), else its first row is lost")
        for row, line in zip(rows, lines, strict=True):
            if len(row) != len(header):
                raise DataError(f"{path}:{line}", "unreadable_file", f"{len(row)} fields, header has {len(header)}")
        return self._cells_series(path, header, rows, lines)

    def _cells_series(self, path: Path, header: list[str], rows: list[list[str]], lines: list[str]) -> list[_Series]:
        """The series of a table of text cells, a CSV's (`_load_csv`) or a Parquet / Arrow table's of scalar columns
        (`seriestables.table_cells`), each row named by `lines` (its CSV line, "12"; its table row, "row 10"): a row
        per series over step columns, a long-format file's groups by their ids, else a series per numeric column."""
        months = _month_columns(header) if self.id_columns is None and self.columns is None else None
        if months is not None:
            return [self._monthly_series(path, header, rows, lines, *months)]
        steps = _time_step_columns(header, rows) if self.id_columns is None else []
        if steps:
            return self._row_series(path, header, rows, lines, steps)
        ids = self._csv_id_columns(path, header)
        dated = _date_columns(header, rows)
        if not ids:
            _refuse_stacked(path, header, rows, lines, dated)
        # (of a long-format file, neither the ids nor a row counter are series)
        skip = {*ids, ROW_COUNTER} if ids else set()
        names = self.columns if self.columns is not None else _numeric_columns(path, header, rows, lines, skip)
        hint = _media_hint(header, rows)
        # numbers beside media files (a class id, a width) are no series unless chosen: the media would go unread
        if not names or (hint and self.columns is None):
            empty = [name for index, name in enumerate(header) if name.strip() and name.strip().lower() not in
                     DATE_COLUMN_NAMES and name.strip() not in skip and not any(row[index].strip() for row in rows)]
            what = (f"no numeric column among {header}" + (f" ({', '.join(map(repr, empty))}: empty in every row)"
                                                           if empty else "")
                    if not names else f"columns {header}, numbers beside media")
            raise DataError(str(path), "unreadable_file", what + hint)
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
        dates = _row_dates(header, rows, dated)
        if ids:
            if self.columns is None:
                _warn_unread_text(path, header, names, ids, dated)
            return self._long_series(path, header, rows, lines, ids, list(names), table, dated, dates)
        if dates is not None:
            _warn_date_steps(path, [(", ".join(names), dates, lines)])
        undated = _undated_note(header, rows, lines, dated) if dates is None else None
        if self.multivariate:
            return [_Series(str(path), list(names), table, lambda s: f"{path}:{lines[s]}", dates=dates,
                            undated=undated)]
        return [
            _Series(name, [name], table[:, j], functools.partial(_csv_source, path, lines, name), dates=dates,
                    undated=undated)
            for j, name in enumerate(names)
        ]

    def _monthly_series(self, path: Path, header: list[str], rows: list[list[str]], lines: list[str], year: int,
                        months: list[int]) -> _Series:
        """The one monthly series of a table of a year per row and a column per month (`_month_columns`), read
        year by year and month by month, in the order of the years (checked to rise by one), each step dated as the
        pandas Period of its month (1950-01); empty cells are gaps, and those after the last value (the months of the
        last year still to come) are left out. The table's
        other columns (a year's mean, its seasons' means: NOAA's and GISTEMP's summaries) are not read."""
        named = [name.strip() for name in header]
        order, years = [], []
        for index, (row, line) in enumerate(zip(rows, lines, strict=True)):
            value = _to_float(row[year])
            if value is None or not value.is_integer():
                raise DataError(f"{path}:{line}", "unreadable_file", f"column {named[year]!r}: {row[year]!r} is "
                                "not a year (a table of a year per row and a month per column)")
            order.append(index)
            years.append(int(value))
        order.sort(key=lambda index: years[index])
        for before, after in itertools.pairwise(order):
            if years[after] != years[before] + 1:
                raise DataError(str(path), "unreadable_file", f"column {named[year]!r}: year {years[before]} ("
                                f"{_place(lines[before])}) is followed by {years[after]} ({_place(lines[after])}): a "
                                "monthly series is read year after year, one row each")
        values, steps = [], []
        for index in order:
            for column in months:
                value = _to_float(rows[index][column])
                if value is None:
                    raise DataError(f"{path}:{lines[index]}", "unreadable_file", f"column {named[column]!r}: "
                                    f"{rows[index][column]!r} is not a number")
                values.append(value)
                steps.append(f"{lines[index]}:{named[column]}")
        numbers = np.asarray(values, dtype=np.float64)
        filled = np.flatnonzero(~np.isnan(numbers))
        numbers = numbers[:filled[-1] + 1] if len(filled) else numbers[:0]
        unread = [name for i, name in enumerate(named) if i != year and i not in months and name]
        logger.info("%s: a year per row (%s %d-%d) and a column per month (%s ... %s), read as one monthly series "
                    "of %d steps%s", path, named[year], years[order[0]], years[order[-1]], named[months[0]],
                    named[months[-1]], len(numbers), f"; not read: {', '.join(unread)}" if unread else "")
        label = f"{named[months[0]]}..{named[months[-1]]} by {named[year]}"
        first = np.datetime64(f"{years[order[0]]}-01", "M")  # (each step a month of its pandas Period, as written)
        dates = RowDates((first + np.arange(len(numbers))).astype("datetime64[s]"), False, "M")
        return _Series(label, [label], numbers, lambda start: f"{path}:{steps[start]}", dates=dates)

    def _row_series(self, path: Path, header: list[str], rows: list[list[str]], lines: list[str],
                    steps: list[int]) -> list[_Series]:
        """The series of a CSV whose rows are series and whose columns `steps` are their time steps
        (`_time_step_columns`: M4's V2 ... V9920, M5's d_1 ... d_1913, Kaggle web traffic's dates): each row's
        values over the steps, empty cells gaps and those after its last value left out (M4 pads its shorter
        series so), named by its other columns ("V1=D1") and read as a series row is (its own split borders)."""
        named = [name.strip() for name in header]
        if self.columns is not None or self.multivariate:
            option = "columns" if self.columns is not None else "multivariate"
            raise DataError(str(path), "unreadable_file", f"its rows are series (its columns {named[steps[0]]} ... "
                            f"{named[steps[-1]]} are their time steps): data.options.{option} chooses among the "
                            "series of a file whose columns are series; leave it out")
        others = [i for i in range(len(header)) if i not in set(steps) and named[i]]
        span = f"{named[steps[0]]}..{named[steps[-1]]}"  # the columns every row's series is read over
        series = []
        for row, line in zip(rows, lines, strict=True):
            cells = [_to_float(row[i]) for i in steps]
            bad = next((k for k, value in enumerate(cells) if value is None), None)
            if bad is not None:
                raise DataError(f"{path}:{line}", "unreadable_file", f"column {named[steps[bad]]!r}: "
                                f"{row[steps[bad]]!r} is not a number")
            numbers = np.asarray(cells, dtype=np.float64)
            filled = np.flatnonzero(~np.isnan(numbers))
            numbers = numbers[:filled[-1] + 1] if len(filled) else numbers[:0]
            label = " ".join(f"{named[i]}={row[i].strip()}" for i in others) or _place(line)
            series.append(_Series(label, [span], numbers,
                                  functools.partial(_step_source, path, line, [named[i] for i in steps]),
                                  in_rows=True))
        logger.info("%s: each row a series over the columns %s ... %s (%d series)", path, named[steps[0]],
                    named[steps[-1]], len(series))
        return series

    def _csv_id_columns(self, path: Path, header: list[str]) -> list[str]:
        """The columns telling apart the series of a long-format CSV: `id_columns`, else the header's `unique_id`,
        `item_id` or `series_id` column; [] for a wide file (one series per column)."""
        named = [name.strip() for name in header]
        if self.id_columns is not None:
            missing = [name for name in self.id_columns if name not in named]
            if missing:
                raise DataError(str(path), "unreadable_file", f"no id column(s) {missing} (columns: {header})")
            return list(self.id_columns)
        found = [name for name in named if name in LONG_FORMAT_ID_COLUMNS]
        if found:
            logger.info("%s: long format: a series per value of %s", path, ", ".join(found))
        return found

    def _long_series(self, path: Path, header: list[str], rows: list[list[str]], lines: list[str], ids: list[str],
                     names: list[str], table: np.ndarray, dated: list[int], dates: RowDates | None) -> list[_Series]:
        """The series of a long-format CSV: its rows grouped by their `ids` (groups in order of first appearance),
        each group's rows in time order (`_time_order`), each a series row's `_Series` (its own split borders);
        `dated`, its date columns (`_date_columns`), and `dates`, its rows' dates (`_row_dates`)."""
        named = [name.strip() for name in header]
        positions = [named.index(name) for name in ids]
        groups: dict[tuple[str, ...], list[int]] = {}
        for k, row in enumerate(rows):
            key = tuple(row[i].strip() for i in positions)
            if "" in key:
                raise DataError(f"{path}:{lines[k]}", "unreadable_file", f"the id column {ids[key.index('')]!r} is "
                                "empty: each row of a long-format file names its series")
            groups.setdefault(key, []).append(k)
        order = _time_order(header, rows, dated, dates)
        undated = _undated_note(header, rows, lines, dated) if dates is None else None
        series = []
        skipping: list[tuple[str, RowDates, list[str]]] = []
        for key, members in groups.items():
            if order is not None:
                members.sort(key=order.__getitem__)  # stable: rows of one time keep the file's order
            group = " ".join(f"{name}={value}" for name, value in zip(ids, key, strict=True))
            repeat = _repeated_date(rows, members, dated)
            if repeat is not None:
                first, second = repeat
                suggestion = _suggest_id_columns(header, rows, dated)
                hint = (f"; {','.join(suggestion)} would (modrwkv init --id-columns {','.join(suggestion)})"
                        if suggestion and suggestion != ids else "")
                columns, value = _date_text(header, dated, rows[first])
                rows_named = _two_places(lines[first], lines[second])
                raise DataError(str(path), "unreadable_file",
                                f"the series {group} repeats {value} in {columns} ({rows_named}): its id columns "
                                f"({','.join(ids)}) do not tell the file's series apart: one is wrong or missing{hint}")
            where = [lines[k] for k in members]
            values, labels = table[members], dict(zip(ids, key, strict=True))
            own = None if dates is None else dataclasses.replace(dates, dates=dates.dates[members])
            if own is not None:
                skipping.append((group, own, where))
            if self.multivariate:
                series.append(_Series(group, names, values, functools.partial(_lines_source, path, where),
                                      in_rows=True, ids=labels, dates=own, undated=undated))
            else:
                series.extend(_Series(f"{group} {name}", [name], values[:, j],
                                      functools.partial(_csv_source, path, where, name), in_rows=True, ids=labels,
                                      dates=own, undated=undated)
                              for j, name in enumerate(names))
        _warn_date_steps(path, skipping)
        logger.info("%s: %d series told apart by %s", path, len(groups), ", ".join(ids))
        return series

    def _load_npz(self, path: Path) -> list[_Series]:
        if path.suffix.lower() != ".npz":
            raise DataError(str(path), "unreadable_file", "a compressed NPZ file: an NPZ file is read as it is (a ZIP "
                            "archive, compressed already by np.savez_compressed): unpack it")
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


def _step_source(path: Path, line: str, steps: list[str], start: int) -> str:
    return f"{path}:{line}:{steps[start]}"


def _month_columns(header: list[str]) -> tuple[int, list[int]] | None:
    """(the year column, the twelve month columns in calendar order) of a table of a year per row and a column per
    month (statsmodels' elnino: YEAR,JAN,...,DEC; NOAA's and Kaggle's climate tables: Year,Jan,...,Dec, or the months'
    full names, with a year's summaries after them); None for any other header."""
    named = [name.strip().lower() for name in header]
    year = next((i for i, name in enumerate(named) if name in ("year", "yr")), None)
    if year is None:
        return None
    for names in (_MONTHS, _MONTH_NAMES):
        if all(name in named for name in names):
            columns = [named.index(name) for name in names]
            return (year, columns) if columns == sorted(columns) else None
    return None


def _time_step_columns(header: list[str], rows: list[list[str]]) -> list[int]:
    """The columns of a CSV whose rows are series, named as those series' time steps, in order: at least
    `MIN_ROW_STEPS` named as dates (Kaggle web traffic's Page,2015-07-01,2015-07-02,...) or with one prefix and
    consecutive numbers (M4's V1,V2,...,V9920, V1 the series' id; M5's id,...,d_1,...,d_1913), beside a column of
    text (the rows' names) and no date column. [] otherwise: a file with a date column (Informer's electricity.csv:
    date,0,1,...,320) or without names for its rows has a series per column."""
    named = [name.strip() for name in header]
    steps = [i for i, name in enumerate(named) if _DATE_CELL.fullmatch(name)]
    if len(steps) < MIN_ROW_STEPS:
        numbered: dict[str, list[tuple[int, int]]] = {}
        for i, name in enumerate(named):
            match = _STEP_NAME.fullmatch(name)
            if match:
                numbered.setdefault(match["prefix"], []).append((int(match["number"]), i))
        steps = next(([i for _, i in run] for run in numbered.values() if len(run) >= MIN_ROW_STEPS
                      and [k for k, _ in run] == list(range(run[0][0], run[0][0] + len(run)))), [])
    if len(steps) < MIN_ROW_STEPS:
        return []
    others = [i for i in range(len(header)) if i not in set(steps)]
    if _date_columns([header[i] for i in others], [[row[i] for i in others] for row in rows]):
        return []
    # a column of the run holding text is the rows' names (M4's V1, "D1"), as the first rows tell: the steps' cells
    # are parsed once, by `_row_series`, which names a damaged one
    sniffed = rows[:_SNIFFED_ROWS]
    names = {i for i in steps if any(_to_float(row[i]) is None for row in sniffed)}
    steps = [i for i in steps if i not in names]
    text = names or any(any(_to_float(row[i]) is None for row in rows) for i in others)
    return steps if text and len(steps) >= MIN_ROW_STEPS else []


# The months as a table's columns name them (case aside): abbreviated, or in full.
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH_NAMES = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
                "november", "december")


def _csv_source(path: Path, lines: list[str], column: str, start: int) -> str:
    return f"{path}:{lines[start]}:{column}"


def _lines_source(path: Path, lines: list[str], start: int) -> str:
    return f"{path}:{lines[start]}"


def _npz_channel_source(path: Path, name: str, channel: int, start: int) -> str:
    return f"{path}:{name}[{start}, {channel}]"


def _row_channels(columns: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray, str]]:
    """Each channel of a series row's columns ([T] or [T, C]): its name ("target", or "target[c]" of a
    [channels, steps] target), its values [T], and how its windows' sources open ("target[", "target[c, ")."""
    channels = []
    for column, values in columns.items():
        if values.ndim == 1:
            channels.append((column, values, f"{column}["))
        else:
            channels.extend((f"{column}[{c}]", values[:, c], f"{column}[{c}, ") for c in range(values.shape[1]))
    return channels


def _row_source(path: Path, opening: str, start: int) -> str:
    return f"{path}:{opening}{start}]"


def _place(line: str) -> str:
    """How a message names a row of cells (`TimeSeriesReader._cells_series`): "line 12" of a CSV or JSONL file,
    "record [2]" of a JSON array, "row 10" of a table or worksheet."""
    if line.isdigit():
        return f"line {line}"
    return f"record {line}" if line.startswith("[") else line


def _two_places(first: str, second: str) -> str:
    """How a message names two rows of cells: "lines 2 and 3" of a CSV, "records [0] and [1]" of a JSON array,
    "rows 0 and 1" of a table."""
    unit, _, number = _place(first).partition(" ")
    return f"{unit}s {number} and {_place(second).partition(' ')[2]}"


def _to_float(cell: str) -> float | None:
    """A CSV cell as a number: empty -> NaN (a gap), non-number -> None."""
    cell = cell.strip()
    if not cell:
        return float("nan")
    try:
        return float(cell)
    except ValueError:
        return None


def _numeric_columns(path: Path, header: list[str], rows: list[list[str]], lines: list[str],
                     skip: Collection[str] = ()) -> list[str]:
    """Default columns: those whose cells are all numbers or empty (and not all empty: such a column is warned of),
    except columns named like a date (an epoch-seconds time column is numeric but not a series) and those
    named in `skip` (a long-format file's ids and row counter). A column
    of numbers with a few other cells is a damaged series, not a text column: it raises DataError
    naming the first such cell rather than vanishing from the data."""
    names = []
    for index, name in enumerate(header):
        if name.strip().lower() in DATE_COLUMN_NAMES or name.strip() in skip:
            continue
        values = [_to_float(row[index]) for row in rows]
        bad = [i for i, v in enumerate(values) if v is None]
        numbers = sum(1 for v in values if v is not None and not np.isnan(v))
        if index == 0 and not name.strip() and values and numbers == len(values) and _is_row_index(values):
            logger.info("%s: leaving out the unnamed first column (a row index, as pandas writes it)", path)
        elif values and not bad and numbers:
            names.append(name)
        elif values and not bad:
            logger.warning("%s: column %r is empty in every row (%d rows): no series", path, name, len(values))
        elif bad and not numbers and sum(_FORMATTED_NUMBER.fullmatch(rows[i][index].strip()) is not None
                                         for i in bad) * 2 > len(bad):
            first = next(i for i in bad if _FORMATTED_NUMBER.fullmatch(rows[i][index].strip()))
            raise DataError(f"{path}:{lines[first]}", "unreadable_file",
                            f"column {name!r}: {rows[first][index]!r} is not a plain number (decimal commas, "
                            "thousands separators, currency and % signs are not read); write numbers like 1234.5, "
                            "or choose the columns to read")
        elif bad and numbers > len(bad):
            first = bad[0]
            raise DataError(f"{path}:{lines[first]}", "unreadable_file",
                            f"column {name!r}: {rows[first][index]!r} is not a number, though most of the column's "
                            f"cells are ({len(bad)} of {len(values)} are not); fix those cells (empty = a gap) or "
                            "choose the columns to read")
        else:
            logger.info("%s: leaving out non-numeric column %r", path, name)
    return names


# A cell of a date or time column, as pandas, spreadsheets and loggers write them: 2024-01-31, 2024/01/31,
# 31.01.2024, 1/31/24, each with an optional time (00:00, 00:00:00.5) and zone; or a time alone.
_DATE_CELL = re.compile(r"(?:(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})"
                        r"(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?|\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)"
                        r"(?:Z|[+-]\d{2}:?\d{2})?")


# A date (and time) as ISO 8601 writes it, which sorts as text: 2013-01-01, 2013-01-01 06:00:00, 2013-01-01T06:00Z.
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?")
_TIME_OF_DAY = re.compile(r"\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?")
_INTEGER = re.compile(r"[+-]?\d+")
_STEP_NAME = re.compile(r"(?P<prefix>\D*)(?P<number>\d+)")  # a time step's column: V2, d_1, 17


def _date_columns(header: list[str], rows: list[list[str]]) -> list[int]:
    """The columns whose values, together, say when a row is: those named like a date and, whatever their name, those
    of ISO dates alone (pandas' `to_csv` of an unnamed DatetimeIndex heads its column ""); [] when every one is a
    position in a cycle (a lone `hour` of 0..23, a time of day), whose values repeat within one series."""
    dated = [i for i, name in enumerate(header) if name.strip().lower() in DATE_COLUMN_NAMES
             or (rows and all(_ISO_DATE.fullmatch(row[i].strip()) for row in rows))]
    cells = {i: [row[i].strip() for row in rows] for i in dated}
    cyclic = [i for i in dated if all(_TIME_OF_DAY.fullmatch(c) for c in cells[i]) or (
        header[i].strip().lower() in CYCLIC_DATE_COLUMNS and all(_INTEGER.fullmatch(c) for c in cells[i]))]
    return [] if len(cyclic) == len(dated) else dated


def _time_order(header: list[str], rows: list[list[str]], dated: list[int], dates: RowDates | None,
                ) -> list[str] | list[float] | None:
    """Each row's time, to order a long-format file's groups by: its `dates` (`_row_dates`, in seconds; times with a
    zone in UTC), else the first of its date columns `dated` (`_date_columns`) whose cells are all ISO 8601 dates (as
    text: fractions of a second), else the first of numbers (Nixtla's integer `ds`; not a cycle's position); None
    (the file's order) without any."""
    if dates is not None:
        return dates.dates.astype(np.int64).astype(float).tolist()
    for index in dated:
        cells = [row[index].strip() for row in rows]
        if all(_ISO_DATE.fullmatch(cell) for cell in cells):
            return cells
    cyclic = {i for i in dated if header[i].strip().lower() in CYCLIC_DATE_COLUMNS}
    for index in dated:
        numbers = [_to_float(row[index]) for row in rows]
        if index not in cyclic and all(v is not None and not np.isnan(v) for v in numbers):
            return [float(v) for v in numbers]  # type: ignore[arg-type]
    return None


def _row_dates(header: list[str], rows: list[list[str]], dated: list[int]) -> RowDates | None:
    """Each row's date: the first of the date columns `dated` (`_date_columns`) whose cells are all dates as
    `seriesdates.parse_date_cells` reads them (ISO dates, with a time or a zone or not; pandas Periods of months or
    quarters; dates of numbers in the order the column tells), else a year column's numbers (`_numbered_periods`);
    None without one."""
    for index in dated:
        dates = parse_date_cells([row[index].strip() for row in rows])
        if dates is not None:
            return dates
    return _numbered_periods(header, rows, dated)


def _numbered_periods(header: list[str], rows: list[list[str]], dated: list[int]) -> RowDates | None:
    """Each row's year as a whole number in a `year` column (statsmodels' sunspots and nile: YEAR 1700.0), with the
    quarter (1-4) of a `quarter` column beside it (statsmodels' macrodata: year, quarter) or the month (1-12) of a
    `month` column, as `RowDates` of pandas Periods of years, quarters or months (written 1700, 1959Q1, 1959-01);
    None where the year column is missing or holds another number, or its quarter or month column does."""
    columns = {header[i].strip().lower(): i for i in reversed(dated)}  # (the first column of a name)
    years = _whole_numbers(rows, columns.get("year"), 1, 9999)
    if years is None:
        return None
    months, period = 12 * years, "Y"
    for name, last, period_name in (("quarter", 4, "Q"), ("month", 12, "M")):
        if name in columns:
            within = _whole_numbers(rows, columns[name], 1, last)
            if within is None:
                return None
            months, period = months + (within - 1) * (12 // last), period_name
            break
    return RowDates((months - 12 * 1970).astype("datetime64[M]").astype("datetime64[s]"), False, period)


def _whole_numbers(rows: list[list[str]], index: int | None, low: int, high: int) -> np.ndarray | None:
    """Column `index`'s cells as integers (1700 or 1700.0), when every one is a whole number from `low` to `high`;
    None otherwise (or without the column)."""
    if index is None or not rows:
        return None
    values = np.array([_to_float(row[index]) for row in rows], dtype=float)  # (None, no number: NaN, as a gap)
    if np.isnan(values).any() or (values != np.round(values)).any() or (values < low).any() or (values > high).any():
        return None
    return values.astype(np.int64)


def _undated_note(header: list[str], rows: list[list[str]], lines: list[str], dated: list[int]) -> str | None:
    """Why the date columns `dated` (`_date_columns`) date no row (`_row_dates` found none): the first's first cell
    that is no date as `seriesdates.parse_date_cells` reads one, and its row; None without date columns."""
    if not dated or not rows:
        return None
    index = dated[0]
    cells = [row[index].strip() for row in rows]
    first = next((k for k, cell in enumerate(cells) if parse_date_cells([cell]) is None), 0)
    return f"the date column {header[index].strip()!r} holds {cells[first]!r} ({_place(lines[first])})"


def _repeated_date(rows: list[list[str]], members: Sequence[int], dated: list[int]) -> tuple[int, int] | None:
    """Two of the rows `members` with the same (non-empty) values of the `dated` columns, when most of them share
    their date with another: several series one under another. A date repeated now and then (the hour a clock
    turns back at the end of summer time) is one series' and no such sign."""
    if not dated:
        return None
    first_of: dict[tuple[str, ...], int] = {}
    pair: tuple[int, int] | None = None
    repeated: Counter[tuple[str, ...]] = Counter()
    for k in members:
        key = tuple(rows[k][i].strip() for i in dated)
        if not any(key):
            continue
        if key in first_of:
            pair = pair or (first_of[key], k)
            repeated[key] += 1
        else:
            first_of[key] = k
    in_repeats = sum(repeated.values()) + len(repeated)
    return pair if pair is not None and 2 * in_repeats >= len(members) else None


def _date_text(header: list[str], dated: list[int], row: list[str]) -> tuple[str, str]:
    """How a message names the `dated` columns, and `row`'s value of them."""
    names = ", ".join(repr(header[i].strip()) for i in dated)
    return (f"the date column{'s' if len(dated) > 1 else ''} {names}", ", ".join(row[i].strip() for i in dated))


def _refuse_stacked(path: Path, header: list[str], rows: list[list[str]], lines: list[str], dated: list[int]) -> None:
    """A DataError when the dates (of the date columns `dated`, `_date_columns`) of a CSV read without id columns
    repeat: its rows are several series one under another (long format), which read column by column would
    interleave them into one series of jumps."""
    repeat = _repeated_date(rows, range(len(rows)), dated)
    if repeat is None:
        return
    first, second = repeat
    columns, value = _date_text(header, dated, rows[first])
    suggestion = _suggest_id_columns(header, rows, dated) or ["COLUMN"]
    flags = " ".join(f"--id-column {name}" for name in suggestion)
    raise DataError(str(path), "unreadable_file",
                    f"{columns} repeat{'' if len(dated) > 1 else 's'} {value} "
                    f"({_two_places(lines[first], lines[second])}): the file holds several series one under another "
                    "(long format); name the columns that tell them apart: data.options.id_columns (modrwkv init "
                    f"--id-columns {','.join(suggestion)}; modrwkv eval {flags})")


def _suggest_id_columns(header: list[str], rows: list[list[str]], dated: list[int]) -> list[str] | None:
    """The smallest set of one or two columns that, with the `dated` columns, sets every row apart, of those that
    look like ids rather than values: text, or integers with no more distinct values than rows of one date (a store
    number). Text columns and those of fewer values are tried first; None when no such set is found."""
    times = [tuple(row[i].strip() for i in dated) for row in rows]
    most = max(Counter(times).values())
    candidates = []
    for index, name in enumerate(header):
        if index in dated or not name.strip() or name.strip() == ROW_COUNTER:
            continue
        cells = [row[index].strip() for row in rows]
        distinct = len(set(cells))
        text = any(_to_float(cell) is None for cell in cells)
        if distinct > 1 and (text or (distinct <= most and all(_INTEGER.fullmatch(cell) for cell in cells))):
            candidates.append((not text, distinct, index))
    candidates = sorted(candidates)[:MAX_ID_CANDIDATES]
    for size in (1, 2):
        for combo in sorted(itertools.combinations(candidates, size),
                            key=lambda combo: (sum(c[0] for c in combo), sum(c[1] for c in combo))):
            chosen = sorted(index for _, _, index in combo)
            keys = {(tuple(row[i].strip() for i in chosen), time) for row, time in zip(rows, times, strict=True)}
            if len(keys) == len(rows):
                return [header[i].strip() for i in chosen]
    return None


def _warn_date_steps(path: Path, dated: Sequence[tuple[str, RowDates, list[str]]]) -> None:
    """Warns of the series whose dates repeat (`seriesdates.repeated_dates`) or skip a few steps
    (`seriesdates.skipped_steps`): `dated` holds each series' label, dates and rows' names (lines), in time order.
    Their rows are read as consecutive steps, so a repeated date is a step of its own and a missing date no gap: the
    windows across it hold a jump, and a season is out of step after it."""
    repeats = [(label, dates, where, found) for label, dates, where in dated if (found := repeated_dates(dates))]
    if repeats:
        label, dates, where, found = repeats[0]
        others = f" (and {len(repeats) - 1} more series)" if len(repeats) > 1 else ""
        logger.warning("%s: the dates of %s%s repeat %d time(s), first %s (%s): each row is read as a step of its own",
                       path, label, others, len(found), str(dates.dates[found[0]].astype("datetime64[D]")),
                       _two_places(where[found[0] - 1], where[found[0]]))
    found = [(label, skip, where) for label, dates, where in dated if (skip := skipped_steps(dates)) is not None]
    if not found:
        return
    label, skip, where = found[0]
    others = f" (and {len(found) - 1} more series)" if len(found) > 1 else ""
    logger.warning("%s: the dates of %s%s step by %s but skip %d step(s) in %d place(s), first %s to %s (%s): the rows "
                   "are read as consecutive steps, a missing date as no gap; add a row with an empty value for each "
                   "missing date to read it as a gap", path, label, others, interval_text(skip.interval), skip.skipped,
                   skip.gaps, *skip.around, _two_places(where[skip.first], where[skip.first + 1]))


def _warn_unread_text(path: Path, header: list[str], names: Sequence[str], ids: list[str], dated: list[int]) -> None:
    """Warns of the columns of a long-format CSV that are read neither as ids, dates nor values: usually a column
    telling its series apart that `id_columns` misses."""
    unread = [name.strip() for i, name in enumerate(header) if name.strip() and name not in names
              and name.strip() not in ids and i not in dated and name.strip().lower() not in DATE_COLUMN_NAMES
              and name.strip() != ROW_COUNTER]
    if unread:
        logger.warning("%s: the non-numeric column(s) %s are read as no series; if one tells the series apart, add it "
                       "to id_columns (now %s)", path, ", ".join(map(repr, unread)), ", ".join(ids))


# A number as spreadsheets format it: thousands separators (1,234.5 / 1.234,5 / 1 234), a decimal
# comma, a currency sign before or after, a % sign.
# Not a date such as 01.02.2024: groups after the first have exactly three digits.
_FORMATTED_NUMBER = re.compile(
    r"[$€£¥]?\s?[+-]?(?:\d{1,3}(?:[,.\s\u00a0\u202f']\d{3})+(?:[.,]\d+)?|\d+[.,]\d+|\d+)\s?[%$€£¥]?")


def _is_row_index(values: list[float | None]) -> bool:
    """Strictly increasing whole numbers: a written-out row index (pandas' `to_csv`), not a series."""
    array = np.asarray(values, dtype=np.float64)
    return bool(np.all(array == np.round(array)) and np.all(np.diff(array) > 0))


def _media_hint(header: list[str], rows: list[list[str]]) -> str:
    """Why a CSV that names media files (image,label rows, as Kaggle ships them) is no series: its rows are samples,
    read as a table of media rows (`hffolders.media_table`) unless the series format is asked for."""
    index = media_column(header, rows[:20])
    if index is None:
        return ""
    return (f": its column {header[index]!r} names media files ({rows[0][index]}), so its rows are samples, "
            f"not a time series: give it as qa data (not data.format series; modrwkv init tells the format), with "
            f"{TABLE_COLUMNS} (docs/custom-data.md)")
