"""Forecasting protocols: borders, train-only standardisation, windows, MSE/MAE, MASE/sMAPE.

The borders are those of the Autoformer / Time-Series-Library data loaders
(`data_provider/data_loader.py`, `Dataset_ETT_hour`, `Dataset_ETT_minute`, `Dataset_Custom`):

* ETTh1/ETTh2: train [0, 8640), val [8640 - L, 11520), test [11520 - L, 14400) with lookback L
  (12/4/4 months of 30 days x 24 h); rows past 14400 are unused.
* ETTm1/ETTm2: the same times 4 (15-minute data).
* custom (ECL/electricity, Weather, Traffic, any other CSV): n_train = int(0.7 n),
  n_test = int(0.2 n), n_val = n - n_train - n_test; train [0, n_train),
  val [n_train - L, n_train + n_val), test [n - n_test - L, n).

A split's range includes the L rows of look-back in front of its first target, so every split
yields (end - start) - L - H + 1 windows at stride 1. The scaler is fitted on the train range
only (sklearn's `StandardScaler`: population std, a zero std treated as 1) and applied to all
rows; MSE/MAE are reported on the standardised values. The current Time-Series-Library keeps the
last, incomplete test batch (`drop_last=False`), i.e. all windows count, as here.

The fixed-horizon protocol of the Monash archive, the M3/M4 competitions and GluonTS' test splits
(`last_horizon_split`) holds out each series' last `horizon` steps as its one test window (and here
the `horizon` steps before them as its val window); the errors are scaled per series: MASE divides
the mean absolute error by the in-sample mean absolute error of the seasonal-naive forecast
(`mase_scale`: the mean of |y[t] - y[t - m]| over the history before the forecast, m the period of
`SEASONALITY`, 1 where the history holds no two values a period apart), sMAPE is
200 |y - f| / (|y| + |f|) averaged over the steps (a step where both are 0 left out), each the
mean over series of the per-series value, as the archive's `utils/error_calculator.R` computes them.

Quantile forecasts (`quantile_scores`) are scored as GluonTS scores them and GIFT-Eval reports them: the weighted
quantile loss of each level over all windows and steps at once, its mean over the levels (with levels 0.1 ... 0.9 the
usual approximation of the CRPS), and each level's coverage; here also each central interval's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from ...data.readers.series import seasonal_baseline
from ...data.readers.seriesdates import OFFSET_ALIAS

__all__ = [
    "SEASONALITY",
    "StandardStats",
    "apply_standard",
    "fit_standard",
    "forecast_baselines",
    "forecast_windows",
    "gluonts_seasonality",
    "last_horizon_split",
    "long_horizon_split",
    "mae",
    "mase",
    "mase_period",
    "mase_scale",
    "mase_scales",
    "mse",
    "quantile_scores",
    "smape",
]

_HOURS_PER_MONTH = 30 * 24
# name (lower case) -> rows per hour for the fixed ETT borders
_ETT_ROWS_PER_HOUR = {"etth1": 1, "etth2": 1, "ettm1": 4, "ettm2": 4}
_CUSTOM_NAMES = frozenset({"custom", "ecl", "electricity", "weather", "traffic"})
# The seasonal period MASE scales by, per .tsf `@frequency`: the Monash archive's (its experiments' SEASONALITY_MAP,
# the shortest of a sub-daily frequency's daily / weekly / yearly cycles, as its deep-learning experiments' MASE takes
# it; weekly 365.25 / 7 as R's lag truncates it)
SEASONALITY = {"4_seconds": 21600, "minutely": 1440, "10_minutes": 144, "15_minutes": 96, "half_hourly": 48,
               "hourly": 24, "daily": 7, "weekly": 52, "monthly": 12, "quarterly": 4, "yearly": 1}
# GluonTS' (gluonts.time_feature.seasonality.DEFAULT_SEASONALITIES, pandas' older and newer names of minutes and hours)
_GLUONTS_SEASONALITIES = {"T": 1440, "MIN": 1440, "H": 24, "D": 1, "W": 1, "M": 12, "B": 5, "Q": 4}
_SUB_SECOND = frozenset({"ms", "us", "ns", "L", "U", "N"})


def _pair(pred: ArrayLike, target: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    pred_arr = np.asarray(pred, dtype=np.float64)
    target_arr = np.asarray(target, dtype=np.float64)
    if pred_arr.shape != target_arr.shape:
        raise ValueError(f"prediction shape {pred_arr.shape} != target shape {target_arr.shape}")
    if pred_arr.size == 0:
        raise ValueError("empty prediction and target")
    return pred_arr, target_arr


def mse(pred: ArrayLike, target: ArrayLike) -> float:
    """Mean squared error over all elements (windows x horizon x channels), in float64."""
    pred_arr, target_arr = _pair(pred, target)
    return float(np.mean((pred_arr - target_arr) ** 2))


def mae(pred: ArrayLike, target: ArrayLike) -> float:
    """Mean absolute error over all elements, in float64."""
    pred_arr, target_arr = _pair(pred, target)
    return float(np.mean(np.abs(pred_arr - target_arr)))


class StandardStats(NamedTuple):
    """Per-channel mean and standard deviation fitted on the training rows."""

    mean: np.ndarray
    std: np.ndarray


def fit_standard(train: ArrayLike) -> StandardStats:
    """Per-channel mean and population std of `train` (rows x channels), like sklearn's
    `StandardScaler.fit` (which also ignores NaN, i.e. empty cells); a channel with zero variance
    gets std 1 so it is only centred."""
    data = np.asarray(train, dtype=np.float64)
    if data.ndim != 2 or data.shape[0] == 0:
        raise ValueError(f"train must be a non-empty 2-D array (rows x channels), got {data.shape}")
    if np.isnan(data).all(axis=0).any():
        raise ValueError("a channel has no value (only empty cells) in its training rows")
    mean = np.nanmean(data, axis=0)
    std = np.nanstd(data, axis=0)
    std[std == 0] = 1.0
    return StandardStats(mean=mean, std=std)


def apply_standard(data: ArrayLike, mean: ArrayLike, std: ArrayLike) -> np.ndarray:
    """(data - mean) / std, broadcast over the last (channel) axis."""
    return (np.asarray(data, dtype=np.float64) - np.asarray(mean)) / np.asarray(std)


def long_horizon_split(name: str, n_rows: int, lookback: int) -> dict[str, tuple[int, int]]:
    """Row ranges [start, end) of train / val / test for a long-horizon benchmark file.

    Args:
        name: ETTh1, ETTh2, ETTm1, ETTm2 (fixed borders) or ECL / electricity / Weather / Traffic /
            custom (70/10/20 split); case-insensitive.
        n_rows: number of data rows in the file (header excluded).
        lookback: input length L; val and test start L rows before their first target.
    """
    key = name.lower()
    if lookback < 1:
        raise ValueError(f"lookback must be >= 1, got {lookback}")
    if key in _ETT_ROWS_PER_HOUR:
        month = _HOURS_PER_MONTH * _ETT_ROWS_PER_HOUR[key]
        train_end, val_end, test_end = 12 * month, 16 * month, 20 * month
        if n_rows < test_end:
            raise ValueError(f"{name} needs at least {test_end} rows for its borders, got {n_rows}")
        test_start = val_end - lookback
    elif key in _CUSTOM_NAMES:
        train_end = int(n_rows * 0.7)
        n_test = int(n_rows * 0.2)
        val_end = n_rows - n_test
        test_end = n_rows
        test_start = n_rows - n_test - lookback
    else:
        known = sorted(_ETT_ROWS_PER_HOUR) + sorted(_CUSTOM_NAMES)
        raise ValueError(f"unknown long-horizon data set {name!r}; known (any case): {known}")
    val_start = train_end - lookback
    if val_start < 0:
        raise ValueError(
            f"lookback {lookback} is longer than the {train_end} training rows"
            f"{'' if key == 'custom' else f' of {name}'} ({n_rows} rows"
            f"{', the first 70% of them training rows' if key in _CUSTOM_NAMES else ''})"
        )
    return {"train": (0, train_end), "val": (val_start, val_end), "test": (test_start, test_end)}


def last_horizon_split(n_rows: int, lookback: int, horizon: int) -> dict[str, tuple[int, int]]:
    """Row ranges [start, end) of train / val / test of one series of `n_rows` steps in the fixed-horizon protocol:
    test is its last `horizon` steps and val the `horizon` before them, each one window with the `lookback` rows in
    front (a start below 0 where the series holds fewer: the window's look-back begins with that many gaps); train is
    every step before val's target. ValueError for a series that leaves no training step."""
    if lookback < 1 or horizon < 1:
        raise ValueError(f"lookback and horizon must be >= 1, got {lookback} and {horizon}")
    train_end = n_rows - 2 * horizon
    if train_end < 1:
        raise ValueError(f"{n_rows} steps leave no training step before the last two horizons of {horizon} "
                         f"(val and test)")
    return {"train": (0, train_end), "val": (train_end - lookback, n_rows - horizon),
            "test": (n_rows - horizon - lookback, n_rows)}


def mase_period(path: Path, model_season: int) -> int:
    """The seasonal period MASE scales a file's series by: the one of its stated frequency in the convention of its
    publisher (`seriesrows.stated_forecast`): the Monash archive's for a .tsf file's @frequency (`SEASONALITY`),
    GluonTS' for a GluonTS data set's `freq` (`gluonts_seasonality`); else the model's `season` (0: none), else 1."""
    from ...data.readers.seriesrows import stated_forecast  # (evaluation imports the readers)

    stated = stated_forecast(path)
    if stated is not None and stated.frequency is not None:
        if stated.convention == "gluonts":
            return gluonts_seasonality(stated.frequency)
        if stated.frequency in SEASONALITY:
            return SEASONALITY[stated.frequency]
    return model_season or 1


def gluonts_seasonality(frequency: str) -> int:
    """The seasonal period GluonTS' evaluation scales MASE by for a pandas offset alias (`gluonts.time_feature.
    get_seasonality`): minutes 1440, hours 24, days 1, weeks 1, months 12, business days 5, quarters 4, any other 1
    (a start's or an end's alias as its base: "MS", "QE-DEC"), divided by the alias' multiple where it divides it
    ("2H": 12, "5min": 288; "7H": 1)."""
    match = OFFSET_ALIAS.fullmatch(frequency.strip())  # 15min, W-SUN, QE-DEC
    if match is None:
        return 1
    name = match["name"]
    if name in _SUB_SECOND:  # ("ms" a millisecond, where "MS" is a month's start)
        return 1
    name = name.upper()
    if len(name) >= 2 and name[-1] in "SE" and name not in ("MIN",):
        name = name[:-1]  # (pandas' start and end forms: MS, QS, AS, ME, QE, YE)
    base = _GLUONTS_SEASONALITIES.get(name, 1)
    count = int(match["count"] or 1)
    return base // count if count >= 1 and base % count == 0 else 1


def mase_scale(history: ArrayLike, period: int) -> float:
    """The in-sample mean absolute error of the seasonal-naive forecast of `period` over `history` (the steps before a
    forecast), gaps (NaN) dropped first as the archive's `calculate_mase` drops them: mean |y[t] - y[t - period]|, of
    period 1 where the history holds no two values `period` apart (GluonTS' `seasonal_error` falls back alike). NaN
    where it holds fewer than two values; 0 for a constant history, whose MASE is undefined."""
    values = np.asarray(history, dtype=np.float64)
    values = values[~np.isnan(values)]
    lag = period if 0 < period < len(values) else 1
    if len(values) <= lag:
        return float("nan")
    return float(np.abs(values[lag:] - values[:-lag]).mean())


def mase_scales(values: ArrayLike, ends: ArrayLike, period: int) -> np.ndarray:
    """`mase_scale(values[:end], period)` for each of `ends` at once (a series' stride-1 windows each scale by the
    history before its own target), from running sums over the series' observed values."""
    observed = np.asarray(values, dtype=np.float64)
    kept = ~np.isnan(observed)
    count = np.concatenate([[0], np.cumsum(kept)])[np.asarray(ends, dtype=np.int64)]  # observed values before each end
    compact = observed[kept]
    scales = np.full(len(count), np.nan)
    period = max(period, 1)
    for lag in dict.fromkeys((period, 1)):
        sums = np.concatenate([np.zeros(lag + 1), np.cumsum(np.abs(compact[lag:] - compact[:-lag]))])
        # the period's pairs where the history holds one, else lag 1's (`mase_scale`'s fallback)
        usable = (count > lag) & ((lag == period) | (count <= period))
        pairs = count[usable] - lag
        scales[usable] = sums[count[usable]] / pairs
    return scales


def mase(pred: ArrayLike, target: ArrayLike, scale: float) -> float:
    """The mean absolute error of a forecast divided by its series' `mase_scale`; NaN where the scale is 0 or NaN."""
    error = mae(pred, target)
    return error / scale if scale > 0 else float("nan")


def smape(pred: ArrayLike, target: ArrayLike) -> float:
    """The symmetric MAPE of a forecast, in percent: the mean over steps of 200 |y - f| / (|y| + |f|), a step where
    both are 0 left out (the archive's `rowMeans(..., na.rm = TRUE)`); NaN where every step is."""
    pred_arr, target_arr = _pair(pred, target)
    denominator = np.abs(pred_arr) + np.abs(target_arr)
    defined = denominator > 0
    if not defined.any():
        return float("nan")
    return float(np.mean(200 * np.abs(pred_arr - target_arr)[defined] / denominator[defined]))


def forecast_windows(
    data: ArrayLike, start: int, end: int, lookback: int, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """All stride-1 (input, target) windows inside rows [start, end) of `data` (rows x channels).

    Returns read-only views of shapes (n, lookback, channels) and (n, horizon, channels) with
    n = (end - start) - lookback - horizon + 1; window i reads rows start + i ... and its target
    is the `horizon` rows right after its input.
    """
    array = np.asarray(data)
    if array.ndim != 2:
        raise ValueError(f"data must be 2-D (rows x channels), got shape {array.shape}")
    if not 0 <= start < end <= array.shape[0]:
        raise ValueError(f"bad row range [{start}, {end}) for {array.shape[0]} rows")
    count = (end - start) - lookback - horizon + 1
    if lookback < 1 or horizon < 1 or count < 1:
        raise ValueError(
            f"rows [{start}, {end}) hold no window of lookback {lookback} + horizon {horizon}"
        )
    segment = array[start:end]
    views = np.lib.stride_tricks.sliding_window_view(segment, lookback + horizon, axis=0)
    views = views.transpose(0, 2, 1)  # (n, lookback + horizon, channels)
    return views[:, :lookback], views[:, lookback:]


def forecast_baselines(windows: ArrayLike, horizon: int, period: int = 0) -> dict[str, np.ndarray]:
    """The simple forecasts a model must beat, [n, horizon] each, from look-backs [n, lookback]
    of standardised values:

    * repeat-last (naive): the last value, `y[T]`;
    * look-back mean: the look-back's mean;
    * train mean: 0, the training rows' mean once the train-split scaler is applied;
    * with a `period` (0: none): seasonal naive, the look-back's last period repeated (each step
      gets the value one, two, ... periods before it); and seasonal naive + drift, plus the
      look-back's mean change over one period, `mean(y[t] - y[t - period])`, once per period
      ahead (only when the look-back holds more than one period).

    A gap (NaN) in a look-back is read as that look-back's mean, as the model reads it (its
    encoder normalises with the window's own statistics and reads a gap as 0, `instance_stats`):
    a look-back ending in a gap repeats its mean, and no baseline is NaN. The seasonal ones are
    `seasonal_baseline`, what a forecaster with a `season` corrects.
    """
    values = np.asarray(windows, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"windows must be [n, lookback], got shape {values.shape}")
    n, lookback = values.shape
    if not 0 <= period <= lookback:
        raise ValueError(f"period must lie in [1, lookback={lookback}] (0: none), got {period}")
    gaps = np.isnan(values)
    if gaps.all(axis=1).any():
        raise ValueError("a look-back has no observed value")
    mean = np.nanmean(values, axis=1, keepdims=True) if gaps.any() else values.mean(axis=1, keepdims=True)
    values = np.where(gaps, mean, values)
    baselines = {
        "repeat-last": np.repeat(values[:, -1:], horizon, axis=1),
        "look-back mean": np.repeat(mean, horizon, axis=1),
        "train mean": np.zeros((n, horizon)),
    }
    if period:
        # the windows as the channels of one look-back: the seasonal baseline a `season` forecaster adds
        baselines["seasonal naive"] = seasonal_baseline(values.T, horizon, period).T
        if period < lookback:  # the drift needs two seasons
            baselines["seasonal naive + drift"] = seasonal_baseline(values.T, horizon, period, drift=True).T
    return baselines


def quantile_scores(levels: Sequence[float], quantiles: ArrayLike, target: ArrayLike) -> dict[str, Any]:
    """Quantile forecasts [levels, ...] of the values `target` [...] (every window and step of a run at once, in the
    file's units), scored as GluonTS' `gluonts.ev` scores them (awslabs/gluonts src/gluonts/ev/stats.py,
    `quantile_loss` = 2 |(y - Q) ((Q >= y) - q)| and `coverage` = (y <= Q); metrics.py, `WeightedSumQuantileLoss` =
    the sum of a level's quantile losses over the sum of |y|, and `MeanWeightedSumQuantileLoss`, GIFT-Eval's
    "mean_weighted_sum_quantile_loss" = their mean over the levels):

    * `wql`: the mean over the levels of sum 2 |(y - Q_q)(1[y <= Q_q] - q)| / sum |y|;
    * `wql_by_level`, `coverage` ({"q0.1": ...}): each level's weighted quantile loss and share of y <= Q_q;
    * `interval_coverage` ({"80%": ...}): for each level q < 0.5 given with 1 - q, the share of y inside
      [Q_q, Q_1-q], the central (1 - 2q) interval.

    NaN targets (and their quantiles) are left out; `wql` is None where every |y| is 0."""
    found = np.asarray(quantiles, dtype=np.float64).reshape(len(levels), -1)
    truth = np.asarray(target, dtype=np.float64).reshape(-1)
    if found.shape[1] != truth.size:
        raise ValueError(f"quantiles of {found.shape[1]} values per level, {truth.size} targets")
    kept = ~np.isnan(truth)
    found, truth = found[:, kept], truth[kept]
    if truth.size == 0:
        raise ValueError("no target value to score quantiles against")
    weight = np.abs(truth).sum()
    losses, covered = {}, {}
    for level, values in zip(levels, found, strict=True):
        name = f"q{level:g}"
        loss = 2 * np.abs((truth - values) * ((values >= truth) - level)).sum()
        losses[name] = float(loss / weight) if weight > 0 else None
        covered[name] = float(np.mean(truth <= values))
    intervals = {}
    for low, values in zip(levels, found, strict=True):
        if low < 0.5 and (high := _level_index(levels, 1 - low)) is not None:
            inside = (values <= truth) & (truth <= found[high])
            intervals[f"{round(100 * (1 - 2 * low), 6):g}%"] = float(np.mean(inside))
    defined = [value for value in losses.values() if value is not None]
    return {"wql": float(np.mean(defined)) if defined else None, "wql_by_level": losses, "coverage": covered,
            "interval_coverage": intervals}


def _level_index(levels: Sequence[float], level: float) -> int | None:
    """The index of `level` among `levels` (equal to 1e-9: 1 - 0.9 is 0.09999999999999998), or None."""
    return next((i for i, given in enumerate(levels) if abs(given - level) < 1e-9), None)
