"""Fitting the linear baseline a forecaster with `linear_baseline` corrects: a linear forecast from
the instance-normalised look-back to the normalised future (minus the seasonal-naive forecast when
the forecaster has a `season`), on the training windows. Two kinds compete: a ridge regression (a
weight per look-back step and future step, in closed form) and, for a forecaster without a season,
damped-trend exponential smoothing (Holt's linear method with a damped trend, Gardner & McKenzie
1985: three numbers shared by every series, `DampedTrend`), which is linear in the look-back too.
The ridge can represent any such smoothing, but fitted freely on windows from every part of every
series it follows their average shape; the three-number trend follows each window's own recent
level and slope, and wins on smooth trending series (docs/forecasting.md, World Bank fertility rates:
test MASE 1.13 against the ridge's 1.55; Nile flows).

The choice is made on the training windows alone: each series' last fifth of windows is held out,
each candidate (the ridge at each alpha; the damped trend at the parameters of lowest MSE on the
fitted windows) is fitted on its windows whose future ends before the first held-out future begins
(so no held-out value is a fitted target), the one of lowest held-out MSE (in the series' units, as
forecasts are scored; under the fixed-horizon protocol, scored by MASE, each error over its series'
MASE scale: `mase_period`) is kept and refitted on every training window. Validation and test rows
are never read.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .sample import Sample
from .readers.series import LinearBaseline, instance_stats, seasonal_baseline

LINEAR_BASELINE_ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)  # the ridge penalties tried
HELD_OUT_FRACTION = 0.2  # each series' last fifth of training windows chooses the alpha
SINGULAR_RATIO = 1e-12  # smallest / largest eigenvalue of the penalised Gram matrix below this: singular
# The damped trends tried: every combination of these level and trend smoothing weights and dampings
DAMPED_TREND_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
DAMPED_TREND_SLOPES = (0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0)
DAMPED_TREND_DAMPINGS = (0.8, 0.85, 0.9, 0.95, 0.98, 1.0)


class LinearBaselineError(ValueError):
    """The training windows cannot give a linear baseline (too few, or a singular fit)."""


@dataclasses.dataclass(frozen=True)
class DampedTrend:
    """Damped-trend exponential smoothing of a look-back z_0 ... z_{T-1} (ETS(A,Ad,N) in its component form, with
    Holt's start: level z_0, trend z_1 - z_0):

        level_t = level * z_t + (1 - level) * (level_{t-1} + damping * trend_{t-1})
        trend_t = slope * (level_t - level_{t-1}) + (1 - slope) * damping * trend_{t-1}
        forecast_h = level_{T-1} + (damping + damping^2 + ... + damping^h) * trend_{T-1}

    Each step is linear in the look-back, so the forecast is `z @ weight(T, H)`; its coefficients sum to 1 for each
    future step, so it moves with the window (forecasting `a z + b` gives `a forecast(z) + b`) and needs no bias."""

    level: float
    slope: float
    damping: float

    def weight(self, lookback: int, horizon: int) -> np.ndarray:
        """The forecast's linear map [lookback, horizon]: level_{T-1}'s coefficients plus trend_{T-1}'s times the
        damped sum of each step ahead (a rank-2 map)."""
        level, trend = self.last_state(lookback)
        return level[:, None] + trend[:, None] * self.ahead(horizon)[None, :]

    def last_state(self, lookback: int) -> tuple[np.ndarray, np.ndarray]:
        """The coefficients [lookback] of level_{T-1} and of trend_{T-1} on the look-back: the recursion run on the
        look-back's unit vectors."""
        if lookback < 2:
            raise ValueError(f"a damped trend needs a look-back of at least 2 steps (its first trend), got {lookback}")
        steps = np.eye(lookback)
        level, trend = steps[0], steps[1] - steps[0]
        for z in steps[1:]:
            previous = level
            level = self.level * z + (1 - self.level) * (level + self.damping * trend)
            trend = self.slope * (level - previous) + (1 - self.slope) * self.damping * trend
        return level, trend

    def ahead(self, horizon: int) -> np.ndarray:
        """damping + damping^2 + ... + damping^h for h = 1 ... horizon: the trend's weight in each future step."""
        return np.cumsum(self.damping ** np.arange(1, horizon + 1))

    def __str__(self) -> str:
        return f"level {self.level:g}, trend {self.slope:g}, damping {self.damping:g}"


# The kinds of linear baseline a fit keeps, as `LinearBaselineFit.record` names them, and their parameters
RIDGE, DAMPED_TREND = "ridge", "damped_trend"
LINEAR_FIT_PARAMETERS = {
    RIDGE: ("alpha",),
    DAMPED_TREND: tuple(field.name for field in dataclasses.fields(DampedTrend)),  # level, slope, damping
}


def linear_fit_problem(record: object) -> str | None:
    """What is wrong with a recorded linear fit (`LinearBaselineFit.record`: a kind and its parameters, numbers), or
    None where it is one."""
    if not isinstance(record, dict) or record.get("kind") not in LINEAR_FIT_PARAMETERS:
        return (f"must be an object whose kind is {' or '.join(map(repr, LINEAR_FIT_PARAMETERS))}, got "
                f"{str(record)[:80]}")
    expected = {"kind", *LINEAR_FIT_PARAMETERS[record["kind"]]}
    if set(record) != expected or not all(isinstance(record[name], (int, float)) and not isinstance(record[name], bool)
                                          for name in expected - {"kind"}):
        return (f"of kind {record['kind']!r} must hold kind and the numbers "
                f"{', '.join(LINEAR_FIT_PARAMETERS[record['kind']])}, got {str(record)[:80]}")
    return None


def describe_linear_fit(record: dict[str, Any]) -> str:
    """A recorded linear fit in words, as training's line names it: "ridge regression (alpha 100)", "damped trend
    (level 0.8, trend 1, damping 0.95)"."""
    if record["kind"] == DAMPED_TREND:
        return f"damped trend ({DampedTrend(**{k: v for k, v in record.items() if k != 'kind'})})"
    return f"ridge regression (alpha {record['alpha']:g})"


@dataclasses.dataclass(frozen=True)
class LinearBaselineFit:
    baseline: LinearBaseline
    alpha: float | None  # the ridge's penalty; None where the damped trend was kept
    held_out_mse: dict[float, float]  # the ridge's by alpha, in the units scored (`scaled`: MASE units)
    windows: int  # training windows (channels counted apart) of the final fit
    held_out: int  # of which held out to make the choice
    weight: float | None = None  # the windows' total weight (an epoch's count) when they weigh differently
    damped_trend: DampedTrend | None = None  # the one kept (refitted on every window), where it won
    damped_trend_mse: float | None = None  # the damped trend's held-out MSE; None where not tried (a season)
    scaled: bool = False  # errors over their series' MASE scale (`mase_period`), not in series units

    def record(self) -> dict[str, Any]:
        """The kind and parameters of the baseline kept, as a model's config records them (`WaveNetConfig.linear_fit`;
        `describe_linear_fit` words it)."""
        if self.damped_trend is not None:
            return {"kind": DAMPED_TREND, **dataclasses.asdict(self.damped_trend)}
        return {"kind": RIDGE, "alpha": self.alpha}

    def explain(self) -> str:
        scores = ", ".join(f"{alpha:g}: {mse:.4f}" for alpha, mse in self.held_out_mse.items())
        weighted = "" if self.weight is None else f" weighted as an epoch holds them ({self.weight:g} in all)"
        damped = "" if self.damped_trend_mse is None else f"; damped trend: {self.damped_trend_mse:.4f}"
        error = "MSE of errors over their series' MASE scale" if self.scaled else "MSE"
        held = f"{error} on the last {self.held_out} training windows by alpha: {scores}{damped}"
        if self.damped_trend is not None:
            return (f"damped trend ({self.damped_trend}) on {self.windows} training windows{weighted}, not the ridge "
                    f"({held})")
        return f"ridge regression on {self.windows} training windows{weighted}, alpha {self.alpha:g} ({held})"


@dataclasses.dataclass(frozen=True)
class TrainingWindows:
    """The rows a linear baseline is fitted on: one per window and channel (a multivariate window gives one row per
    channel, each channel its own series)."""

    past: np.ndarray  # [n, lookback]: the normalised look-backs (gaps 0)
    target: np.ndarray  # [n, horizon]: the normalised futures, minus the seasonal baseline where there is a season
    scales: np.ndarray  # [n]: the windows' scales (errors x scale are in series units)
    starts: np.ndarray  # [n]: the windows' first rows
    runs: list[np.ndarray]  # each series' rows, in order
    weights: np.ndarray  # [n]: each row's sample's weight (1 without)
    files: list[str]  # each series' file, as its samples name it
    # each series' values (series units) from its first window's first row, NaN unknown (`with_histories`; else [])
    histories: list[np.ndarray]

    def mase_weights(self, period_of: Callable[[str], int]) -> np.ndarray:
        """Each row's 1 / scale^2, its series' MASE scale (`mase_scale` of the values its windows cover, of its file's
        period `period_of(file)`) in series units: squared errors weighed so count as squared scaled errors (the
        fixed-horizon protocol's MASE, squared as M5's RMSSE is). A series of no scale (constant, or one value)
        weighs as the median series does (1 where none has a scale)."""
        from ..evaluation.metrics.series import mase_scale  # (evaluation imports the readers)

        if len(self.histories) != len(self.runs):
            raise ValueError("MASE weights need the series' histories: cut the windows with_histories")
        periods = {file: period_of(file) for file in dict.fromkeys(self.files)}
        scales = np.array([mase_scale(values, periods[file]) for values, file in zip(self.histories, self.files,
                                                                                      strict=True)])
        usable = np.isfinite(scales) & (scales > 0)
        inverse = np.ones(len(scales))
        inverse[usable] = 1 / scales[usable] ** 2
        inverse[~usable] = np.median(inverse[usable]) if usable.any() else 1.0
        weights = np.empty(len(self.past))
        for run, weight in zip(self.runs, inverse, strict=True):
            weights[run] = weight
        return weights


def training_windows(samples: Sequence[Sample], season: int, drift: bool, weights: Sequence[float] | None = None,
                     with_histories: bool = True) -> TrainingWindows:
    """The `TrainingWindows` of a time-series reader's samples (in the order it cuts them, without a linear
    baseline), `weights` one per sample (None: 1 each); the target less the seasonal baseline of `season` (with
    `drift`), none when 0; `with_histories`, each series' values too (`mase_weights` needs them; a copy of every
    window, which a fit without MASE weights leaves out)."""
    past, target, scales, starts, runs, row_weights, pieces, files = [], [], [], [], [], [], [], []
    previous: tuple | None = None
    for sample, weight in zip(samples, np.ones(len(samples)) if weights is None else weights, strict=True):
        window = np.asarray(sample.series[0], dtype=np.float64)
        window = window[:, None] if window.ndim == 1 else window
        future = np.asarray(sample.meta["target"], dtype=np.float64).reshape(-1, window.shape[1])
        mean, scale = instance_stats(window)
        z = np.nan_to_num((window - mean) / scale)
        y = (future - mean) / scale
        if season:
            y = y - seasonal_baseline(z, len(future), season, drift)
        key = (sample.source.rsplit(":", 2)[0], tuple(sample.meta.get("columns", ())))
        start = sample.meta.get("start", 0)
        if previous is None or key != previous[0] or start <= previous[1]:
            runs.extend([len(past) + c] for c in range(window.shape[1]))  # a new series: one run per channel
            pieces.extend([] for _ in range(window.shape[1]))
            files.extend([key[0]] * window.shape[1])
        else:
            for c in range(window.shape[1]):
                runs[-window.shape[1] + c].append(len(past) + c)
        if with_histories:
            for c, column in enumerate(np.concatenate([window, future]).T):
                pieces[-window.shape[1] + c].append((start, column))
        previous = (key, start)
        starts.extend([start] * window.shape[1])
        past.extend(z.T)
        target.extend(y.T)
        scales.extend(scale)
        row_weights.extend([weight] * window.shape[1])
    if not past:
        raise LinearBaselineError("no training windows to fit the linear baseline on")
    return TrainingWindows(np.stack(past), np.stack(target), np.asarray(scales), np.asarray(starts),
                           [np.asarray(run) for run in runs], np.asarray(row_weights, dtype=np.float64), files,
                           [_history(run) for run in pieces if run])


def _history(pieces: list[tuple[int, np.ndarray]]) -> np.ndarray:
    """A series' values from its windows' (first row, values) pieces: each row's value as a window holds it (NaN
    where none does, or where a look-back's gap is)."""
    first = pieces[0][0]
    values = np.full(max(start + len(column) for start, column in pieces) - first, np.nan)
    for start, column in pieces:
        values[start - first:start - first + len(column)] = column
    return values


def ridge(z: np.ndarray, y: np.ndarray, alpha: float, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ridge regression of y [n, H] on z [n, L] with an unpenalised intercept, row i weighted by
    w[i] > 0 (scikit-learn's `Ridge(alpha).fit(z, y, sample_weight=w)`): weight [L, H], bias [H]. A
    singular penalised Gram matrix is an error."""
    z_mean, y_mean = _weighted_mean(z, w, axis=0), _weighted_mean(y, w, axis=0)
    root = np.sqrt(w)[:, None]  # least squares on rows scaled by sqrt(w): exact (w * 1.0) when every w is 1
    zc = (z - z_mean) * root
    gram = zc.T @ zc + alpha * np.eye(z.shape[1])
    eigenvalues = np.linalg.eigvalsh(gram)
    if not np.isfinite(eigenvalues).all() or eigenvalues[0] <= SINGULAR_RATIO * max(eigenvalues[-1], 1e-300):
        raise LinearBaselineError(f"the ridge fit with alpha {alpha:g} on {len(z)} windows of {z.shape[1]} steps is "
                                  "singular (too few distinct windows for the look-back, or alpha 0)")
    weight = np.linalg.solve(gram, zc.T @ ((y - y_mean) * root))
    return weight, y_mean - z_mean @ weight


def _weighted_mean(values: np.ndarray, w: np.ndarray, axis: int | None) -> np.ndarray:
    """The mean of `values` [n, k] (over `axis`, None: all) with row weights w [n], computed so that it is
    `values.mean(axis)`, bit for bit, when every weight is 1 (x * 1.0 and / 1.0 are exact)."""
    return np.mean(values * w[:, None], axis=axis) / np.mean(w)


def fit_linear_baseline(samples: Sequence[Sample], season: int = 0, drift: bool = False,
                        alphas: Sequence[float] = LINEAR_BASELINE_ALPHAS,
                        weights: Sequence[float] | None = None,
                        mase_period: Callable[[str], int] | None = None) -> LinearBaselineFit:
    """The linear baseline of a forecaster with `season` / `drift`, fitted on the training windows
    `samples` (a time-series reader's, cut without a linear baseline), alpha chosen on their tail
    (see the module docstring). `weights`: one per sample, >= 0 (how many times training holds it; a
    window of weight 0 takes no part); None weighs each once. Only their proportions count: they are
    scaled to a mean of 1 over the windows fitted, so that the penalty weighs against as many windows as
    were read (repeating every window twice adds no information, and gives the unweighted fit, where
    weights taken as counts would halve the penalty's effect and could move the alpha chosen). With `mase_period`
    (a file's MASE period, by the file as the samples name it: the fixed-horizon protocol, scored by MASE), errors
    count over their series' MASE scale (`TrainingWindows.mase_weights`): in every fit and in the choice, so that a
    series of small steps weighs as the protocol's mean MASE weighs it. Too few windows, or a singular fit:
    `LinearBaselineError`."""
    if weights is not None:
        if len(weights) != len(samples):
            raise ValueError(f"{len(weights)} weights for {len(samples)} samples")
        if not all(math.isfinite(w) and w >= 0 for w in weights):
            raise ValueError("weights must be finite numbers >= 0")
        samples = [sample for sample, w in zip(samples, weights, strict=True) if w > 0]
        weights = [w for w in weights if w > 0]
        # alike: the unweighted fit, bit for bit (a mean of equal values may round: 1 would not be exact)
        weights = None if len(set(weights)) <= 1 else weights
    windows = training_windows(samples, season, drift, weights, with_histories=mase_period is not None)
    z, y, starts, runs = windows.past, windows.target, windows.starts, windows.runs
    # the windows an epoch holds (channels counted apart)
    total = None if weights is None else float(windows.weights.sum())
    w = windows.weights / windows.weights.mean()
    units = windows.scales  # what an error in normalised units is in the units scored: the series', or its MASE's
    fit_w = w  # the rows' weights in the ridge's least squares (in normalised units)
    if mase_period is not None:
        scaled = windows.mase_weights(mase_period)
        units = units * np.sqrt(scaled)
        fit_w = w * scaled / np.mean(w * scaled)
    horizon = y.shape[1]
    fitted, held = [], []
    for run in runs:
        first_held = len(run) - max(1, int(round(len(run) * HELD_OUT_FRACTION)))
        held.append(run[first_held:])
        # only windows whose future ends before the first held-out future begins
        fitted.append(run[:first_held][starts[run[:first_held]] + horizon <= starts[run[first_held]]])
    fit_rows, held_rows = np.concatenate(fitted), np.concatenate(held)
    if len(fit_rows) < 2:
        raise LinearBaselineError(
            f"{len(z)} training windows (look-back {z.shape[1]}, horizon {horizon}) are too few to fit a linear "
            f"baseline: its alpha is chosen on the last fifth of them and fitted on the windows whose future ends "
            f"before that, which leaves {len(fit_rows)}; give more training rows or a shorter look-back")

    def held_out_mse(weight: np.ndarray, bias: np.ndarray | float) -> float:
        error = (z[held_rows] @ weight + bias - y[held_rows]) * units[held_rows, None]
        return float(_weighted_mean(error**2, w[held_rows], axis=None))

    scores = {float(alpha): held_out_mse(*ridge(z[fit_rows], y[fit_rows], alpha, fit_w[fit_rows]))
              for alpha in alphas}
    best = min(scores, key=scores.__getitem__)
    fitted = LinearBaselineFit(LinearBaseline(*ridge(z, y, best, fit_w)), best, scores, len(z), len(held_rows), total,
                               scaled=mase_period is not None)
    if season or z.shape[1] < 2:  # the damped trend forecasts the series itself, not what a season leaves
        return fitted
    trend_mse = held_out_mse(fit_damped_trend(z, y, units, w, fit_rows).weight(z.shape[1], horizon), 0.0)
    if trend_mse >= scores[best]:
        return dataclasses.replace(fitted, damped_trend_mse=trend_mse)
    kept = fit_damped_trend(z, y, units, w, np.arange(len(z)))
    return dataclasses.replace(fitted, baseline=LinearBaseline(kept.weight(z.shape[1], horizon), np.zeros(horizon)),
                               alpha=None, damped_trend=kept, damped_trend_mse=trend_mse)


def fit_damped_trend(z: np.ndarray, y: np.ndarray, units: np.ndarray, w: np.ndarray, rows: np.ndarray,
                     ) -> DampedTrend:
    """The damped trend (of the `DAMPED_TREND_*` grid) of lowest MSE on `rows` of the normalised look-backs z [n, L]
    and futures y [n, H], errors in the units scored (x `units`) and rows weighted by w, as the ridge's are scored.
    Each candidate is scored from the rows' square sums alone, without a pass over the windows: the MSE of a linear
    map W is (tr(W'AW) - 2 tr(W'B) + c) / (H sum w), A = sum w s^2 z z', B = sum w s^2 z y', c = sum w s^2 |y|^2,
    and W = l 1' + t d' (the last level's and trend's coefficients l, t, the damped sums d) makes the first two
    terms |1|^2 l'Al + 2 (1'd) l'At + |d|^2 t'At - 2 l'B1 - 2 t'Bd. c and the division, alike for every
    candidate, are left out."""
    weighted = z[rows] * (w[rows] * units[rows] ** 2)[:, None]
    gram, cross = weighted.T @ z[rows], weighted.T @ y[rows]
    horizon, best, best_error = y.shape[1], None, np.inf
    for level in DAMPED_TREND_LEVELS:
        for slope in DAMPED_TREND_SLOPES:
            for damping in DAMPED_TREND_DAMPINGS:
                trend = DampedTrend(level, slope, damping)
                last_level, last_trend = trend.last_state(z.shape[1])
                ahead = trend.ahead(horizon)
                error = (horizon * last_level @ gram @ last_level
                         + 2 * ahead.sum() * last_level @ gram @ last_trend
                         + ahead @ ahead * last_trend @ gram @ last_trend
                         - 2 * last_level @ cross.sum(axis=1) - 2 * last_trend @ cross @ ahead)
                if error < best_error:
                    best, best_error = trend, error
    assert best is not None
    return best
