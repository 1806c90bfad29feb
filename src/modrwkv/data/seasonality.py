"""The seasonal period of a series, read from its training rows (`season: auto`).

`detect_season` removes the trend (a centred moving average longer than any candidate period, so
that the average holds trend but almost no season) and measures, for every lag `k` of the search
range, the correlation between the series and itself `k` steps earlier (Pearson, each lag with its
own means and variances; several series are pooled, weighted by their overlap, except those with
nothing beyond their trend, a constant or a straight line, `FLAT`). A period is a local
peak of that autocorrelation that is **strong** (correlation >= `min_strength`), **prominent** (it
rises by >= `min_prominence` above the lowest correlation at a shorter lag, so a slowly decaying
curve, e.g. of a random walk, is no season) and **significant**: above what chance alone reaches at
some lag of the search in a series without a season, as short and as persistent as this one
(below). Among the candidates the one with the highest correlation wins, except that a shorter
candidate is preferred when it is within `tolerance` of it, or when the highest lies at a multiple
of it without halving its seasonal-naive error (below): a season of 12 also peaks at 24, 36, 48,
..., and those need a longer look-back.

Why the highest correlation: a forecaster with `season: P` corrects the seasonal-naive forecast
`x[t - P]`, whose mean squared error is `var(x[t] - x[t - P]) = 2 var (1 - corr(P))` for a
stationary series. The lag with the highest autocorrelation is the seasonal-naive forecast with
the smallest error. With two seasons (half-hourly electricity demand: a day, 48, and a week, 336)
the weekly lag wins whenever weekdays and weekends differ: the same half-hour one week earlier is
a better guess than yesterday's (a Monday is not a Sunday), and the week holds the day anyway
(taylor's training rows: 1 - 0.995 against the day's 1 - 0.84, a 30 times smaller error). Why a
multiple must halve the error: a multiple's small edge over its fundamental is mostly a
coincidence of the sample, a slower cycle that happens to line up. Monthly El Nino sea
temperatures (statsmodels' `elnino`) correlate 0.83 at 48 months and 0.74 at 12 on the training
rows, yet on the test rows the copies 12, 24, 36 and 48 months back are equally good (seasonal-naive
MSE 1.31, 1.20, 1.25, 1.24): 12, the year, is the season.

Why significant: strength and prominence alone gave a season to up to 8 % of series without one
(`bench/seasonality.py`, 200 series per family and length, docs/forecasting.md): AR(1) with phi 0.9
or 0.99, random walks with or without drift, ARIMA(1,1,0), white noise, on a few hundred training
rows or with a search up to a fifth of them. Their detrended rows wander in slow swings, and a few
swings correlate at some lag by chance. Without a season, the correlation at lag k has Bartlett's
variance `(1 + 2 sum_j corr(j)^2) / (n - k)`, the sum over the series' short-range memory: the lags
before its autocorrelation first reaches 0. The season's own oscillation beyond that is what is
being tested; counting it, as the textbook band over all shorter lags does (statsmodels' `acf`),
hides taylor's week behind its day and misses sunspots' 11 years. A peak must exceed `z` times
that standard deviation, `z` the normal quantile that one of the lags searched exceeds with
probability `SIGNIFICANCE` (Bonferroni): 3.3 for lags 2-95, 3.8 for 2-564. The persistent nulls
drop to 0-0.5 %, white noise (with or without a trend) on 210 training rows to 2-2.5 %; every
season of the real series checked stays, the closest sunspots' (0.48 against 0.46 by chance, 216
rows), except a weak quarterly one on 83 rows (pmdarima's `woolyrnq`: 0.41 against 0.47).
Pooled series count as independent only as far as they are: the columns of one file often move
together (ETT's loads). Two series whose cross-correlation is `r` at every lag have sample
autocorrelations correlated by about `r^2` (Bartlett's cross formula; a column and its negative
have the same), so the pooled correlation's variance is `M (W + sum_{i != j} r_ij^2 (n - k)) / W^2`
rather than `M / W` (`M` the memory factor, `W` the pairs pooled at lag k, the sum over pairs of
columns of one length n, `r_ij` their correlation at lag 0, less the `M / n` that independent
columns reach by chance): m equally correlated columns give `(1 + (m - 1) r^2) / m` times one
column's variance, m near-copies count as one (one Gram matrix per length: cheap). Counted as
independent, 7 near-copies of an AR(1) 0.9 (each plus its own noise of a tenth of its spread; 350
training rows) got a season in 8.5 % of 200 sets, of a random walk in 2 % (one column: none);
now none.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence

import numpy as np

MIN_CYCLES = 3  # the training rows must hold this many periods for a period to be considered
MIN_ROWS_PER_PERIOD = MIN_CYCLES + 2  # ... and two more for the trend's moving average
MULTIPLE_GAIN = 2.0  # a peak at a multiple of a shorter one must divide 1 - corr by this to win
SIGNIFICANCE = 0.05  # the chance that a series without a season shows a significant peak somewhere in the search
# Detrended rows whose spread is below this fraction of the series' largest value are rounding error (a constant,
# a straight line: a time-index column, standardised and stored as float32): their autocorrelation is the
# rounding's pattern, no season, and pooled as 0 it would dilute the others' (float32 rounds at ~6e-8).
FLAT = 1e-6


@dataclasses.dataclass(frozen=True)
class SeasonChoice:
    """The outcome of `detect_season`: `period` (0: no clear season, or too few rows to look), the
    autocorrelation at it, the candidate peaks that were compared (lag, correlation, highest
    first), the lags searched, the longest series' length, the `max_period` asked for, why the
    period was preferred to the highest peak ("" when it is the highest), the correlation that
    chance reaches at the period's peak (`bound`, the significance bound it exceeds), the
    strong, prominent peaks that stayed below their bound (lag, correlation, bound; highest first),
    how many series were left out as `flat` (nothing but their trend: constant or a straight line)
    and how many were `pooled`."""

    period: int
    strength: float
    candidates: tuple[tuple[int, float], ...]
    search: tuple[int, int]
    rows: int
    max_period: int
    preferred: str = ""
    bound: float = 0.0
    rejected: tuple[tuple[int, float, float], ...] = ()
    flat: int = 0
    pooled: int = 0

    @property
    def too_short(self) -> bool:
        """Nothing was searched: the series are too short (or `max_period` too small) for even the
        shortest period."""
        return self.search[1] < self.search[0]

    def explain(self) -> str:
        """One line: what was picked and why (logged by training, printed by `modrwkv init`)."""
        low, high = self.search
        if self.max_period < low:
            return f"no period can be searched: the longest allowed, {self.max_period}, is below {low}"
        if self.too_short:
            return (f"too few rows to detect a season: the longest training series has {self.rows} steps, and a "
                    f"period of {low} must fit {MIN_ROWS_PER_PERIOD} times ({MIN_CYCLES} cycles, 2 more for the "
                    f"trend): at least {MIN_ROWS_PER_PERIOD * low} steps")
        capped = ("" if high >= self.max_period else
                  f"; lags above {high} not searched: a period must fit {MIN_ROWS_PER_PERIOD} times into the "
                  f"{self.rows} training rows")
        peaks = ", ".join(f"{lag}: {corr:.2f}" for lag, corr in self.candidates[:6]) or "none"
        if self.flat:
            flat = f"{'the' if self.flat == 1 else self.flat} training series {'is' if self.flat == 1 else 'are'} " \
                   f"constant or a straight line (nothing varies beyond the trend)"
            if not self.pooled:
                return f"no season: {flat}"
            capped += f"; {flat}, left out"
        if not self.period and self.rejected:
            chance = ", ".join(f"{lag}: {corr:.2f} < {bound:.2f}" for lag, corr, bound in self.rejected[:3])
            return (f"no clear season: the strong, prominent autocorrelation peaks of the detrended training rows over "
                    f"lags {low}-{high} stay below what chance alone reaches in a series this short and persistent "
                    f"({chance}{capped})")
        if not self.period:
            return (f"no clear season: no autocorrelation peak of the detrended training rows over lags {low}-{high} "
                    f"is strong and prominent enough (peaks: {peaks}{capped})")
        chance = f" (chance alone reaches {self.bound:.2f})" if self.bound else ""  # 0: not tested
        return (f"season {self.period}: autocorrelation {self.strength:.2f} at lag {self.period} of the detrended "
                f"training rows{chance}, {self.preferred or 'the highest'} (peaks over lags {low}-{high}: "
                f"{peaks}{capped})")


def detect_season(
    series: np.ndarray | Sequence[np.ndarray],
    max_period: int,
    *,
    min_period: int = 2,
    min_strength: float = 0.3,
    min_prominence: float = 0.1,
    tolerance: float = 0.05,
    significance: float | None = SIGNIFICANCE,
) -> SeasonChoice:
    """The seasonal period of one series [T] or several (a list of [T_i]; NaN are gaps, filled by
    linear interpolation), searched over lags `min_period`..`max_period` (capped so that each lag
    fits MIN_CYCLES times into the longest series after detrending). The rule: module docstring;
    `significance` None leaves out its significance test (what bench/seasonality.py compares)."""
    if min_period < 2:
        raise ValueError(f"min_period must be >= 2 (lag 1 is no season), got {min_period}")
    items = [np.asarray(series, dtype=np.float64)] if isinstance(series, np.ndarray) and np.ndim(series) == 1 \
        else [np.asarray(s, dtype=np.float64) for s in series]
    if any(item.ndim != 1 for item in items):
        raise ValueError("detect_season takes 1-D series (one channel each)")
    longest = max((len(item) for item in items), default=0)
    high = min(max_period, longest // MIN_ROWS_PER_PERIOD)
    if high < min_period:
        return SeasonChoice(0, 0.0, (), (min_period, high), longest, max_period)
    beyond = high + max(1, high // 8)  # lags past the search, so that a peak at its end is confirmed
    totals = np.zeros(beyond + 1)
    weights = np.zeros(beyond + 1)
    by_length: dict[int, list[np.ndarray]] = {}  # the pooled detrended columns; one file's share a length
    flat = pooled = 0
    for item in items:
        filled = _filled(item)
        values = _detrended(filled, high)
        if values is None or len(values) < MIN_CYCLES * min_period:
            continue
        if not np.std(values) > FLAT * np.max(np.abs(filled)):  # rounding error's correlations are no season's
            flat += 1
            continue
        pooled += 1
        lags = min(beyond, len(values) // MIN_CYCLES)
        corr = _lagged_correlation(values, lags)
        overlap = len(values) - np.arange(lags + 1)
        totals[: lags + 1] += corr * overlap
        weights[: lags + 1] += overlap
        by_length.setdefault(len(values), []).append(values)
    if not weights[min_period]:
        return SeasonChoice(0, 0.0, (), (min_period, high), longest, max_period, flat=flat, pooled=pooled)
    computed = int(np.flatnonzero(weights)[-1])
    corr = totals[: computed + 1] / weights[: computed + 1]
    # the pooled correlation's variance is that of `weights` independent pairs times `shared / weights`:
    # correlated columns (module docstring, "Why significant") add their covariances, less the squared
    # correlations that independent columns this persistent show by chance (Bartlett: memory / length each)
    shared = weights.copy()
    for length, columns in by_length.items():
        lags = min(beyond, length // MIN_CYCLES)
        chance = len(columns) * (len(columns) - 1) * _memory(corr, computed + 1) / length
        shared[: lags + 1] += max(_cross_correlation(columns) - chance, 0.0) * (length - np.arange(lags + 1))
    searched = (min_period, min(high, computed))
    # the one-sided normal quantile that noise exceeds at one lag or another of the search with
    # probability `significance` (Bonferroni over the lags searched)
    z = 0.0 if significance is None else \
        statistics.NormalDist().inv_cdf(1 - significance / (searched[1] - searched[0] + 1))
    peaks, bounds, rejected = {}, {}, {}
    for lag in range(min_period, min(high, computed) + 1):
        reach = max(1, lag // 8)  # a peak tops its neighbourhood, not just the next lag
        if lag + reach > computed:  # the neighbourhood is not all known: perhaps still rising
            break
        hill = corr[max(min_period, lag - reach) : lag + reach + 1]
        if corr[lag] < hill.max() or corr[lag] < min_strength or corr[lag] - corr[1:lag].min() < min_prominence:
            continue
        # every multiple of the period repeats the season: their mean correlation places a flat peak
        # (a smooth season, noise) on the right lag, where one lag's correlation cannot tell 47 from 48
        lags = np.arange(max(min_period, lag - reach), lag + reach + 1)
        multiples = np.arange(1, computed // lags[-1] + 1)  # as many for each neighbour: a fair comparison
        best_lag = int(lags[np.argmax(corr[np.outer(lags, multiples)].mean(axis=1))])
        bound = z * np.sqrt(_memory(corr, best_lag) * shared[best_lag]) / weights[best_lag]  # at the period's lag
        if significance is not None and corr[best_lag] <= bound:
            rejected[best_lag] = (float(corr[best_lag]), float(bound))
        else:
            peaks[best_lag] = float(corr[best_lag])
            bounds[best_lag] = float(bound)
    peaks = sorted(peaks.items(), key=lambda peak: -peak[1])
    by_chance = tuple(sorted(((lag, *values) for lag, values in rejected.items()), key=lambda peak: -peak[1]))
    if not peaks:
        return SeasonChoice(0, 0.0, (), searched, longest, max_period, rejected=by_chance, flat=flat,
                           pooled=pooled)
    (best_lag, best), preferred = peaks[0], ""
    for lag, strength in sorted(peaks):  # the shortest first; the highest itself ends the loop
        cycles = round(best_lag / lag)
        if lag == best_lag:
            break
        if strength >= best - tolerance:
            preferred = f"within {tolerance:g} of the highest ({best_lag}: {best:.2f}) and shorter"
            break
        if cycles >= 2 and abs(best_lag - cycles * lag) <= cycles and 1 - best > (1 - strength) / MULTIPLE_GAIN:
            preferred = (f"shorter than the highest ({best_lag}: {best:.2f}), {cycles} of its cycles, whose "
                         f"seasonal-naive error 1 - corr is not {MULTIPLE_GAIN:g} times smaller")
            break
    return SeasonChoice(lag, strength, tuple(peaks), searched, longest, max_period, preferred, bounds[lag], by_chance,
                        flat, pooled)


def _memory(corr: np.ndarray, lag: int) -> float:
    """Bartlett's variance factor `1 + 2 sum(corr[j]^2)` of the correlation at `lag` under the null
    of no season: the sum runs over the series' short-range memory, the lags before its
    autocorrelation first reaches 0 (and before `lag`), not over the season's own oscillation."""
    positive = corr[1:lag] > 0
    memory = lag - 1 if positive.all() else int(np.argmin(positive))  # lags 1..memory are > 0
    return float(1 + 2 * np.sum(corr[1 : memory + 1] ** 2))


def _cross_correlation(columns: list[np.ndarray]) -> float:
    """sum over pairs i != j of corr(column i, column j)^2 at lag 0, of columns of one length: the
    squared entries of their correlation matrix less its diagonal, read from the smaller of the two
    Gram matrices (equal Frobenius norms), so many short series or a few long ones cost little."""
    if len(columns) < 2:
        return 0.0
    stacked = np.stack(columns)
    stacked = stacked - stacked.mean(axis=1, keepdims=True)
    stacked /= np.linalg.norm(stacked, axis=1, keepdims=True)  # not flat: pooled columns vary
    gram = stacked @ stacked.T if len(columns) <= stacked.shape[1] else stacked.T @ stacked
    return float(np.sum(gram**2) - len(columns))


def _filled(values: np.ndarray) -> np.ndarray:
    """Gaps (NaN) filled by linear interpolation between observed neighbours; the ends held."""
    observed = np.isfinite(values)
    if observed.all() or not observed.any():
        return values[observed]
    steps = np.arange(len(values))
    return np.interp(steps, steps[observed], values[observed])


def _detrended(values: np.ndarray, max_period: int) -> np.ndarray | None:
    """The series minus its centred moving average over 2 * max_period + 1 steps (the rows where
    the whole window fits): the trend goes, a season of any searched period stays (its average
    over more than two cycles is close to 0). None when the series is shorter than the window."""
    width = 2 * max_period + 1
    if len(values) <= width:
        return None
    sums = np.concatenate([[0.0], np.cumsum(values)])
    average = (sums[width:] - sums[:-width]) / width
    return values[max_period : len(values) - max_period] - average


def _lagged_correlation(values: np.ndarray, lags: int) -> np.ndarray:
    """corr(x[k:], x[:-k]) for k = 0..lags, each lag with its own means and variances (FFT sums)."""
    n = len(values)
    size = 1 << (2 * n - 1).bit_length()
    spectrum = np.fft.rfft(values, size)
    products = np.fft.irfft(spectrum * np.conj(spectrum), size)[: lags + 1]  # sum_t x[t] x[t + k]
    sums = np.concatenate([[0.0], np.cumsum(values)])
    squares = np.concatenate([[0.0], np.cumsum(values**2)])
    k = np.arange(lags + 1)
    count = n - k
    sum_early, sum_late = sums[n - k], sums[n] - sums[k]  # x[:n-k] and x[k:]
    sq_early, sq_late = squares[n - k], squares[n] - squares[k]
    cov = products - sum_early * sum_late / count
    var_early = sq_early - sum_early**2 / count
    var_late = sq_late - sum_late**2 / count
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.sqrt(var_early * var_late)
    return np.nan_to_num(corr)
