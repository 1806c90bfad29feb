"""The future of every series of a file: what `modrwkv forecast` runs.

The file is read by training's series reader (`TimeSeriesReader`: CSV / TSV, NPZ, tables of scalar columns,
long-format files with id columns, series rows, Monash .tsf), each column or channel a series of its own (as
`modrwkv eval --task custom-series` reads it), in the file's own units. Each series is forecast from its last
`lookback` steps (begun with gaps when it holds fewer, as `--holdout last` reads a short series) by
`ModRWKVPipeline.forecast_batch`, a batch of windows at a time. Where the file dates its steps at a regular interval
(`TimeSeriesReader.series_dates`: a date column, a .tsf line's start and @frequency, a series row's `timestamp` list
or its `start` and pandas frequency), the forecast's steps are dated by continuing it (`future_dates`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..constants import DEFAULT_FORECAST_BATCH
from ..data.readers.series import TimeSeriesReader
from ..data.readers.seriesdates import CHECKED_INTERVALS, IrregularFrequency, SeriesDates
from ..multimodal import ModRWKV
from .pipeline import ModRWKVPipeline, SeriesForecast

log = logging.getLogger(__name__)


def file_series(path: str | Path, *, columns: Sequence[str] | None = None, id_columns: Sequence[str] | None = None,
                frequency: str | None = None) -> tuple[dict[str, np.ndarray], dict[str, SeriesDates | None]]:
    """Each series of `path` by what its data set calls it (`TimeSeriesReader.series_names`: a column "load", a
    long-format group "unique_id=T1 y", a series row's id "ABW"; the reader's labels, "17 (series_name 'ABW')
    target", where those names are not one per series), its values [T] in the file's units, in the file's order;
    and, by the same names, when its steps are (`TimeSeriesReader.series_dates`, None where the file does not date
    them; `frequency`, a pandas offset alias, steps series rows that have a `start` but no frequency of their own).
    `columns` and `id_columns` as the reader takes them; a file that does not read as a series file raises its
    `DataError`."""
    # (the windows' lengths do not change how a file is read: the values are the file's, before any window is cut)
    reader = TimeSeriesReader(path, lookback=1, horizon=1, columns=columns, id_columns=id_columns)
    series, names, dates = reader.scaled_series(), reader.series_names(), reader.series_dates(frequency)
    if len(set(names.values())) < len(names):
        names = {label: label for label in names}
    return ({names[label]: values for label, (values, _) in series.items()},
            {names[label]: when for label, when in dates.items()})


def future_dates(dates: Mapping[str, SeriesDates | None], horizon: int) -> dict[str, list[str]] | None:
    """The dates of the `horizon` steps after each series' last ({name: dates}, `file_series`), written as its file
    writes them (a date, or a date and time, 2016-07-01 06:00:00), "" for each step of a series whose dates are not
    at a regular interval (named by their count in a warning, one for each file and frequency that is no regular
    interval, `IrregularFrequency`, naming both); None where the file dates none of its series."""
    if all(when is None for when in dates.values()):
        return None
    found = {name: None if when is None else when.next_dates(horizon) for name, when in dates.items()}
    irregular: list[str] = []
    by_frequency: dict[IrregularFrequency, list[str]] = {}
    for name, steps in found.items():
        when = dates[name]
        if isinstance(when, IrregularFrequency):
            by_frequency.setdefault(when, []).append(name)
        elif steps is None:
            irregular.append(name)
    for frequency, names in by_frequency.items():
        log.warning("%d of %d series left undated (an empty timestamp): %s dates them by frequency %r, which is no "
                    "regular interval (seconds, minutes, hours, days, weeks, or month, quarter or year ends or "
                    "starts): %s", len(names), len(found), frequency.source, frequency.frequency, _named(names))
    if irregular:
        log.warning("%d of %d series left undated (an empty timestamp): their last dates (up to %d intervals) are "
                    "not at a regular interval: %s", len(irregular), len(found), CHECKED_INTERVALS, _named(irregular))
    return {name: steps if steps is not None else [""] * horizon for name, steps in found.items()}


def _named(names: Sequence[str]) -> str:
    """The first 10 of `names`, for a warning."""
    return ", ".join(map(repr, names[:10])) + (" ..." if len(names) > 10 else "")


def trained_horizon(model: ModRWKV) -> int | None:
    """The horizon `model` was trained to forecast: its `series_horizon` (recorded by training), else, for a folder
    saved before it was, the horizon its series encoder's linear baseline was fitted for; None without either."""
    return model.series_horizon if model.series_horizon is not None else linear_horizon(model)


def linear_horizon(model: ModRWKV) -> int | None:
    """The horizon `model`'s series encoder's linear baseline was fitted for (the most it forecasts); None without
    one."""
    linear = getattr(model.encoders["series"], "linear", lambda: None)() if "series" in model.encoders else None
    return linear.horizon if linear is not None else None


def last_window(values: np.ndarray, lookback: int) -> np.ndarray:
    """The last `lookback` steps of a series [T], begun with gaps (NaN) when it holds fewer: the look-back a forecast
    of what follows its last step reads (float64: the file's values as read)."""
    window = np.asarray(values, dtype=np.float64)[-lookback:]
    return np.concatenate([np.full(lookback - len(window), np.nan), window])


def forecast_series(pipeline: ModRWKVPipeline, series: Mapping[str, np.ndarray], horizon: int, lookback: int, *,
                    samples: int = 1, batch_size: int = DEFAULT_FORECAST_BATCH
                    ) -> Iterator[list[tuple[str, SeriesForecast]]]:
    """The next `horizon` steps of each series ({label: values [T]}, `file_series`), forecast from its
    `last_window` of `lookback` steps by `pipeline.forecast_batch` (`samples` as it takes them), `batch_size`
    windows at a time: yields each batch's (label, forecast) pairs as it is done, logging the progress. A series
    whose look-back holds no observed value (or an infinite one) cannot be forecast: it is named in a warning and
    left out."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    windows, unusable, padded, gapped = {}, [], 0, []
    for label, values in series.items():
        window = last_window(values, lookback)
        if np.isnan(window).all() or np.isinf(window).any():
            unusable.append(label)
            continue
        padded += len(values) < lookback
        if np.isnan(window[-1]):
            gapped.append(label)
        windows[label] = window
    if unusable:
        log.warning("left out %d series whose last %d steps hold no observed value (or an infinite one): %s",
                    len(unusable), lookback, _named(unusable))
    if padded:
        log.warning("%d series hold fewer than the look-back's %d steps: their look-backs begin with gaps (read as "
                    "the window's mean)", padded, lookback)
    if gapped:  # (a wide file's columns share its rows: step 1 is the row after the file's last, for every series)
        log.warning("%d series end with gaps (empty cells in the file's last rows), read as their look-back's mean: "
                    "%s", len(gapped), _named(gapped))
    labels = list(windows)
    for first in range(0, len(labels), batch_size):
        batch = labels[first:first + batch_size]
        forecasts = pipeline.forecast_batch([windows[label] for label in batch], horizon, samples=samples)
        log.info("forecast %d of %d series", first + len(batch), len(labels))
        yield list(zip(batch, forecasts, strict=True))
