"""Prediction intervals (quantile forecasts) from backtest residuals: split-conformal, per horizon step.

How far a forecaster's next forecast may be off is read from how far it was off on the windows of the series' own
history that end before what is forecast: split-conformal prediction with absolute residuals as the scores, per
horizon step, as statsforecast's `ConformalIntervals` makes its intervals (its "conformal_distribution" method):

1. `past_windows`: the last `CALIBRATION_WINDOWS` windows (look-back + horizon steps, stride 1) whose targets end at
   or before the forecast origin; the target is never read.
2. The forecaster being calibrated, the one the run ships (`pipeline_forecaster`: `ModRWKVPipeline.forecast_batch`,
   decoded or its baseline alone; in eval also the naive forecast), forecasts each; each residual `truth - forecast`
   is divided by its window's scale (`window_scales`: the look-back's `sqrt(var + eps)`, what the model normalises
   each window with), so that windows and series of different scales pool.
3. `residual_quantiles`: the central (1 - 2q) interval's half-width at each horizon step is the |1 - 2q| quantile of
   that step's absolute residuals; level q's offset is minus it below 0.5 and plus it above (0 at 0.5).
4. The level-q forecast of step h is the point forecast plus that offset times the forecast window's own scale: the
   intervals are symmetric about the point forecast, and the 0.5 quantile is the point forecast itself.

Why absolute residuals, not each level's quantile of the signed ones (which would let an interval lean to one side):
a forecaster's past bias need not last. On the World Bank fertility rates (docs/forecasting.md) the damped trend
overshot the declines of earlier decades (a median residual of -0.16 window scales six years ahead), then met the
test years' slower declines centred (truth below it 47% of the time); the signed quantiles moved every interval down
(the truth fell below the median forecast 30% of the time), at 10% more weighted quantile loss.

A series holding fewer than `CALIBRATION_WINDOWS` past windows takes the quantiles of the residuals of all series
pooled (`calibrate` says which in a warning): a few dozen overlapping windows of one series are a noisy sample of
its errors. On fertility (24 past windows a series) each series' own quantiles had a fifth more weighted quantile
loss than the pooled ones.

Quantiles are numpy's "weibull" (Hyndman & Fan's type 6, position c (n + 1) among n sorted scores): a new score
exchangeable with n others falls below the k-th smallest with probability k / (n + 1), so the c-quantile of the
absolute residuals holds a new one with probability c, split-conformal's finite-sample correction; the position lies
within the scores when n + 1 >= 1 / min(c, 1 - c) (`min_windows`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..constants import DEFAULT_FORECAST_BATCH
from ..data.readers.series import instance_stats

if TYPE_CHECKING:
    from .pipeline import ModRWKVPipeline

log = logging.getLogger(__name__)

# Past windows per series that calibrate its intervals (the most recent ones), and the fewest for its own quantiles:
# enough for levels 0.01 ... 0.99 (`min_windows`), at most this many forecasts per series for a decoded model.
CALIBRATION_WINDOWS = 100
LOWEST_LEVEL = 0.01  # levels from LOWEST_LEVEL to 1 - LOWEST_LEVEL: `min_windows` of them fits CALIBRATION_WINDOWS
QUANTILE_METHOD = "weibull"

# A forecaster: look-backs [n, lookback] -> forecasts [n, horizon], in the units of its input
Forecaster = Callable[[np.ndarray], np.ndarray]


def parse_levels(text: str) -> tuple[float, ...]:
    """The quantile levels of `--quantiles` ("0.1,0.5,0.9"), in increasing order (`check_levels`). ValueError naming
    the bad one."""
    levels = []
    for item in text.split(","):
        try:
            levels.append(float(item))
        except ValueError:
            raise ValueError(f"{item.strip()!r} is not a number: give quantile levels between 0 and 1 separated by "
                             "commas, e.g. 0.1,0.5,0.9") from None
    return check_levels(levels)


def check_levels(levels: Sequence[float]) -> tuple[float, ...]:
    """`levels` in increasing order; ValueError naming one outside LOWEST_LEVEL ... 1 - LOWEST_LEVEL (a quantile
    further out needs more past windows than a series' own calibration holds) or given twice, or none at all."""
    if not levels:
        raise ValueError("no quantile level given: e.g. 0.1,0.5,0.9")
    for i, level in enumerate(levels):
        if not LOWEST_LEVEL <= level <= 1 - LOWEST_LEVEL:
            hint = " (a percentage? 0.9 is the 90% quantile)" if level >= 2 else ""
            raise ValueError(f"{level:g}: a quantile level must lie from {LOWEST_LEVEL:g} to {1 - LOWEST_LEVEL:g} (a "
                             f"level nearer 0 or 1 needs more than the {CALIBRATION_WINDOWS} past windows a series' "
                             f"own intervals are calibrated on){hint}")
        if level in levels[:i]:
            raise ValueError(f"{level:g}: quantile level given twice")
    return tuple(sorted(float(level) for level in levels))


def level_name(level: float) -> str:
    """A level's column and key: "q0.1", "q0.025"."""
    return f"q{level:g}"


def min_windows(levels: Sequence[float]) -> int:
    """The fewest past windows whose absolute residuals hold the position c (n + 1), from 1 to n, of each central
    interval's coverage c = |1 - 2q|: n + 1 >= 1 / min(c, 1 - c) (4 for levels 0.1 ... 0.9, 19 for 0.025 and 0.975,
    49 for 0.01 and 0.49; none for 0.5, the point forecast)."""
    coverages = [abs(1 - 2 * q) for q in levels if abs(q - 0.5) > 1e-9]
    return max((math.ceil(round(1 / min(c, 1 - c), 9)) - 1 for c in coverages), default=1)


def window_scales(lookbacks: np.ndarray) -> np.ndarray:
    """[n]: the scale the model normalises each look-back [n, T] with (`instance_stats`: sqrt(var + eps), gaps left
    out): what a residual is divided by and a residual quantile multiplied by."""
    return instance_stats(np.asarray(lookbacks, dtype=np.float64).reshape(len(lookbacks), -1).T)[1]


def past_windows(values: np.ndarray, origin: int, lookback: int, horizon: int,
                 limit: int = CALIBRATION_WINDOWS) -> tuple[np.ndarray, np.ndarray]:
    """Look-backs [n, lookback] and targets [n, horizon] of the last `limit` windows of a series [T] at stride 1 whose
    targets end at or before step `origin` (what is forecast starts there): whole windows of the series, a target
    without gaps, a look-back with an observed value and none infinite; none where it holds no such window."""
    values = np.asarray(values, dtype=np.float64)
    last = min(origin, len(values)) - lookback - horizon  # the last window's first step
    if last < 0:
        return np.empty((0, lookback)), np.empty((0, horizon))
    starts = np.arange(max(0, last - limit + 1), last + 1)
    cut = np.lib.stride_tricks.sliding_window_view(values[: last + lookback + horizon], lookback + horizon)[starts]
    past, future = cut[:, :lookback], cut[:, lookback:]
    usable = (np.isfinite(future).all(axis=1) & ~np.isnan(past).all(axis=1) & ~np.isinf(past).any(axis=1))
    return past[usable], future[usable]


def standardised_residuals(past: np.ndarray, future: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    """(truth - forecast) / the window's scale, [n, horizon], of windows [n, lookback] and their futures."""
    scales = window_scales(past)[:, None]
    return (np.asarray(future, dtype=np.float64) - np.asarray(forecast, dtype=np.float64)) / scales


def residual_quantiles(residuals: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """[levels, horizon]: each level q's offset from the point forecast, from residuals [n, horizon]: the |1 - 2q|
    quantile of each step's absolute residuals (`QUANTILE_METHOD`), negative below 0.5, 0 at 0.5."""
    magnitudes = np.abs(np.asarray(residuals, dtype=np.float64))
    coverage = [abs(1 - 2 * q) for q in levels]
    widths = np.quantile(magnitudes, coverage, axis=0, method=QUANTILE_METHOD)
    return np.sign(np.asarray(levels) - 0.5)[:, None] * widths


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Each level's offset from the point forecast [levels, horizon] (standardised per window, `residual_quantiles`)
    by series label; `own`: how many past windows each series holds; `pooled`: the series whose offsets are those of
    all series' residuals."""

    levels: tuple[float, ...]
    quantiles: dict[str, np.ndarray]
    own: dict[str, int]
    pooled: tuple[str, ...]

    def interval(self, label: str, point: np.ndarray, lookback: np.ndarray) -> np.ndarray:
        """[levels, horizon]: each level's forecast of series `label`, from its point forecast [horizon] and the
        look-back [T] it was forecast from, in their units."""
        scale = window_scales(np.asarray(lookback)[None])[0]
        return np.asarray(point, dtype=np.float64)[None, :] + self.quantiles[label] * scale


def calibrate(series: Mapping[str, np.ndarray], origins: Mapping[str, int], lookback: int, horizon: int,
              levels: Sequence[float], forecast: Forecaster, *, batch_size: int = DEFAULT_FORECAST_BATCH,
              limit: int = CALIBRATION_WINDOWS, quiet: bool = False) -> Calibration:
    """The residual quantiles of each series of `series` ({label: values [T]}) that `origins` names, from the windows
    of its history ending at or before its origin (`past_windows`), forecast by `forecast`, `batch_size` windows at a
    time (with a progress line). A series with fewer than `limit` such windows takes the quantiles of every series'
    residuals pooled, named in a warning; ValueError when all of them together hold fewer than `min_windows(levels)`,
    which the levels' quantiles need. `quiet`: neither the progress nor the warning (a second forecaster calibrated
    on the same windows, whose pooled series were said for the first)."""
    cut = {label: past_windows(series[label], origin, lookback, horizon, limit) for label, origin in origins.items()}
    past = np.concatenate([p for p, _ in cut.values()]) if cut else np.empty((0, lookback))
    future = np.concatenate([f for _, f in cut.values()]) if cut else np.empty((0, horizon))
    needed = min_windows(levels)
    if len(past) < needed:
        raise ValueError(f"prediction intervals at levels {', '.join(f'{q:g}' for q in levels)} need at least {needed} "
                         f"past windows (look-back {lookback} + horizon {horizon} steps ending before what is "
                         f"forecast), and the {len(cut)} series hold {len(past)} in all")
    forecasts = []
    for first in range(0, len(past), batch_size):
        forecasts.append(np.asarray(forecast(past[first:first + batch_size]), dtype=np.float64).reshape(-1, horizon))
        if not quiet:
            log.info("intervals: forecast %d of %d past windows", min(first + batch_size, len(past)), len(past))
    residuals = standardised_residuals(past, future, np.concatenate(forecasts))
    counts = {label: len(p) for label, (p, _) in cut.items()}
    pooled_quantiles = residual_quantiles(residuals, levels)
    own = max(limit, needed)
    quantiles, pooled, first = {}, [], 0
    for label, count in counts.items():
        if count >= own:
            quantiles[label] = residual_quantiles(residuals[first:first + count], levels)
        else:
            quantiles[label] = pooled_quantiles
            pooled.append(label)
        first += count
    if pooled and not quiet:
        shown = ", ".join(map(repr, pooled[:10])) + (" ..." if len(pooled) > 10 else "")
        log.warning("%d of %d series hold fewer than %d past windows (look-back %d + horizon %d steps before what is "
                    "forecast) for residual quantiles of their own: their intervals come from the pooled residuals of "
                    "all series (%d windows): %s", len(pooled), len(counts), own, lookback, horizon, len(residuals),
                    shown)
    return Calibration(tuple(levels), quantiles, counts, tuple(pooled))


def pipeline_forecaster(pipeline: ModRWKVPipeline, horizon: int, *, samples: int = 1, prompt: str | None = None,
                        force_model: bool = False) -> Forecaster:
    """The forecaster a run ships, as `calibrate` calls it: `pipeline.forecast_batch` of the look-backs (`samples`,
    `prompt` and `force_model` as it takes them), each forecast's values."""
    def forecast(lookbacks: np.ndarray) -> np.ndarray:
        found = pipeline.forecast_batch(list(lookbacks), horizon, prompt=prompt, samples=samples,
                                        force_model=force_model)
        return np.stack([f.values for f in found])

    return forecast
