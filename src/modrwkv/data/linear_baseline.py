"""Fitting the linear baseline a forecaster with `linear_baseline` corrects: a ridge regression
from the instance-normalised look-back to the normalised future (minus the seasonal-naive
forecast when the forecaster has a `season`), on the training windows, in closed form.

The alpha is chosen on the training windows alone: each series' last fifth of windows is held
out, the regression is fitted on its windows whose future ends before the first held-out future
begins (so no held-out value is a fitted target), the alpha with the lowest held-out MSE (in the
series' units, as forecasts are scored) is kept, and the regression is refitted on every training
window with it. Validation and test rows are never read.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from .sample import Sample
from .readers.series import LinearBaseline, instance_stats, seasonal_baseline

LINEAR_BASELINE_ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)  # the ridge penalties tried
HELD_OUT_FRACTION = 0.2  # each series' last fifth of training windows chooses the alpha
SINGULAR_RATIO = 1e-12  # smallest / largest eigenvalue of the penalised Gram matrix below this: singular


class LinearBaselineError(ValueError):
    """The training windows cannot give a linear baseline (too few, or a singular fit)."""


@dataclasses.dataclass(frozen=True)
class LinearBaselineFit:
    baseline: LinearBaseline
    alpha: float
    held_out_mse: dict[float, float]  # by alpha, series units
    windows: int  # training windows (channels counted apart) of the final fit
    held_out: int  # of which held out to choose the alpha
    weight: float | None = None  # the windows' total weight (an epoch's count) when they weigh differently

    def explain(self) -> str:
        scores = ", ".join(f"{alpha:g}: {mse:.4f}" for alpha, mse in self.held_out_mse.items())
        weighted = "" if self.weight is None else f" weighted as an epoch holds them ({self.weight:g} in all)"
        return (f"ridge regression on {self.windows} training windows{weighted}, alpha {self.alpha:g} (MSE on the "
                f"last {self.held_out} training windows by alpha: {scores})")


def training_windows(samples: Sequence[Sample], season: int, drift: bool, weights: Sequence[float] | None = None,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[np.ndarray], np.ndarray]:
    """From a time-series reader's samples (in the order it cuts them, without a linear baseline):
    the normalised look-backs Z [n, lookback] (gaps 0), the targets Y [n, horizon] (the normalised
    future minus the seasonal baseline of `season`, none when 0), the window scales [n], the
    windows' first rows [n], each series' rows, in order, and the rows' weights [n] (each sample's of
    `weights`; 1 without). A multivariate window gives one row per channel, each channel its own
    series."""
    past, target, scales, starts, runs, row_weights = [], [], [], [], [], []
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
        if previous is None or key != previous[0] or sample.meta.get("start", 0) <= previous[1]:
            runs.extend([len(past) + c] for c in range(window.shape[1]))  # a new series: one run per channel
        else:
            for c in range(window.shape[1]):
                runs[-window.shape[1] + c].append(len(past) + c)
        previous = (key, sample.meta.get("start", 0))
        starts.extend([previous[1]] * window.shape[1])
        past.extend(z.T)
        target.extend(y.T)
        scales.extend(scale)
        row_weights.extend([weight] * window.shape[1])
    if not past:
        raise LinearBaselineError("no training windows to fit the linear baseline on")
    rows = [np.asarray(run) for run in runs]
    return (np.stack(past), np.stack(target), np.asarray(scales), np.asarray(starts), rows,
            np.asarray(row_weights, dtype=np.float64))


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
                        weights: Sequence[float] | None = None) -> LinearBaselineFit:
    """The linear baseline of a forecaster with `season` / `drift`, fitted on the training windows
    `samples` (a time-series reader's, cut without a linear baseline), alpha chosen on their tail
    (see the module docstring). `weights`: one per sample, >= 0 (how many times training holds it; a
    window of weight 0 takes no part); None weighs each once. Only their proportions count: they are
    scaled to a mean of 1 over the windows fitted, so that the penalty weighs against as many windows as
    were read (repeating every window twice adds no information, and gives the unweighted fit, where
    weights taken as counts would halve the penalty's effect and could move the alpha chosen). Too few
    windows, or a singular fit: `LinearBaselineError`."""
    if weights is not None:
        if len(weights) != len(samples):
            raise ValueError(f"{len(weights)} weights for {len(samples)} samples")
        if not all(math.isfinite(w) and w >= 0 for w in weights):
            raise ValueError("weights must be finite numbers >= 0")
        samples = [sample for sample, w in zip(samples, weights, strict=True) if w > 0]
        weights = [w for w in weights if w > 0]
        # alike: the unweighted fit, bit for bit (a mean of equal values may round: 1 would not be exact)
        weights = None if len(set(weights)) <= 1 else weights
    z, y, scales, starts, runs, w = training_windows(samples, season, drift, weights)
    total = None if weights is None else float(w.sum())  # the windows an epoch holds (channels counted apart)
    w = w / w.mean()
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
    scores = {}
    for alpha in alphas:
        weight, bias = ridge(z[fit_rows], y[fit_rows], alpha, w[fit_rows])
        error = (z[held_rows] @ weight + bias - y[held_rows]) * scales[held_rows, None]
        scores[float(alpha)] = float(_weighted_mean(error**2, w[held_rows], axis=None))
    best = min(scores, key=scores.__getitem__)
    weight, bias = ridge(z, y, best, w)
    return LinearBaselineFit(LinearBaseline(weight, bias), best, scores, len(z), len(held_rows), total)
