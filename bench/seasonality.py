"""`season: auto` measured: false seasons on series without one, and the periods of real series.

    python bench/seasonality.py [--series N]

Calls `modrwkv.data.seasonality.detect_season` as `modrwkv train` does (`resolve_auto_season`):
on the training rows of the 70/10/20 layout (`split: train`), searched up to the look-back minus
one step (`drift: true`, as `configs/series-cpu.yaml` and `modrwkv init` write it). Three tables,
each with the rule before its significance test (`significance=None`: strong and prominent peaks
only), the rule now, and two independent references on the same detrended rows (the same centred
moving average, computed by pandas):

  acf band   statsmodels' `acf` with Bartlett's confidence band (the textbook bound: the sum over
             all shorter lags), at the same Bonferroni level as the rule; the highest local peak
             whose lower limit is above 0.
  Fisher g   Fisher's g test of the periodogram's largest ordinate against white noise (p < 0.05,
             the usual approximation m (1 - g)^(m - 1)); its period N / k when it lies in the search.

1. Null series (N each, default 200; seeds fixed): white noise, AR(1) with phi 0.5, 0.9, 0.99, a
   random walk, one with drift, a linear trend plus noise, ARIMA(1,1,0) with phi 0.5; 300, 500,
   1000 and 3000 rows with a 96-step look-back (search 2-95, capped at a fifth of the training
   rows), 3000 rows with a 672-step one (series-cpu-taylor.yaml's). The share of series given a
   season, in percent.
2. Real series shipped in statsmodels and pmdarima (what bench/forecasting.py exports, read from its
   CSV files by the training reader itself, and more): the period each rule picks.
3. Power: a sine of period 7, 12, 24 or 48 (where the search reaches it) plus unit-variance noise at several signal-to-noise ratios
   (the sine's variance over the noise's); the share of series given exactly that period (in
   brackets: within one step of it).

Needs statsmodels, pmdarima and pandas (`pip install -e ".[forecast-demo]"`). Deterministic: the
rates do not depend on the machine; about 20 s of CPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from modrwkv.data.readers.series import TimeSeriesReader
from modrwkv.data.seasonality import MIN_ROWS_PER_PERIOD, SIGNIFICANCE, detect_season
from modrwkv.evaluation.metrics.series import long_horizon_split

HORIZON = 24  # the reader needs one; the training rows, and so the detection, do not depend on it
RULES = ("before", "now", "acf band", "Fisher g")


def ar1(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    """A stationary AR(1) series (its first value drawn from the stationary distribution)."""
    shocks = rng.normal(size=n)
    values = np.empty(n)
    values[0] = shocks[0] / np.sqrt(1 - phi**2)
    for t in range(1, n):
        values[t] = phi * values[t - 1] + shocks[t]
    return values


NULLS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "white noise": lambda rng, n: rng.normal(size=n),
    "AR(1) 0.5": lambda rng, n: ar1(rng, n, 0.5),
    "AR(1) 0.9": lambda rng, n: ar1(rng, n, 0.9),
    "AR(1) 0.99": lambda rng, n: ar1(rng, n, 0.99),
    "random walk": lambda rng, n: np.cumsum(rng.normal(size=n)),
    "walk + drift": lambda rng, n: np.cumsum(rng.normal(0.1, 1.0, size=n)),
    "trend + noise": lambda rng, n: 5.0 * np.arange(n) / n + rng.normal(size=n),
    "ARIMA(1,1,0)": lambda rng, n: np.cumsum(ar1(rng, n, 0.5)),
}
NULL_RUNS = ((300, 96), (500, 96), (1000, 96), (3000, 96), (3000, 672))  # (rows, look-back)


def training_rows(values: np.ndarray, lookback: int) -> np.ndarray:
    """The `split: train` rows of a file of these values (70/10/20), as the training reader cuts them."""
    return values[slice(*long_horizon_split("custom", len(values), lookback)["train"])]


def detrended(values: np.ndarray, high: int) -> np.ndarray:
    """The rows minus their centred moving average over 2 high + 1 steps (pandas), where it is defined."""
    import pandas as pd

    series = pd.Series(values).interpolate(limit_direction="both")
    return (series - series.rolling(2 * high + 1, center=True).mean()).dropna().to_numpy()


def acf_band(values: np.ndarray, max_period: int) -> int:
    """The highest local autocorrelation peak over the search whose Bartlett band (statsmodels)
    excludes 0 at the rule's Bonferroni level; 0 for none."""
    from statsmodels.tsa.stattools import acf

    high = min(max_period, len(values) // MIN_ROWS_PER_PERIOD)
    rest = detrended(values, high)
    nlags = min(high + 1, len(rest) - 1)
    corr, band = acf(rest, nlags=nlags, alpha=2 * SIGNIFICANCE / (high - 1), bartlett_confint=True, fft=True)
    found = [lag for lag in range(2, min(high, nlags - 1) + 1)
             if corr[lag] >= max(corr[lag - 1], corr[lag + 1]) and band[lag, 0] > 0]
    return max(found, key=lambda lag: corr[lag], default=0)


def fisher_g(values: np.ndarray, max_period: int) -> int:
    """The period of the periodogram's largest ordinate when Fisher's g test rejects white noise
    (p < 0.05) and the period lies in the search; 0 otherwise."""
    high = min(max_period, len(values) // MIN_ROWS_PER_PERIOD)
    rest = detrended(values, high)
    n = len(rest)
    power = np.abs(np.fft.rfft(rest - rest.mean()))[1 : (n - 1) // 2 + 1] ** 2
    m, k = len(power), int(np.argmax(power))
    g = power[k] / power.sum()
    period = round(n / (k + 1))
    return period if m * (1 - g) ** (m - 1) < 0.05 and 2 <= period <= high else 0


def periods(rows: np.ndarray | list[np.ndarray], max_period: int) -> dict[str, int]:
    """The period each rule picks on the training rows (one series, or several pooled: then the
    references, which read one series, say -1)."""
    single = rows if isinstance(rows, np.ndarray) else rows[0] if len(rows) == 1 else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels' notes on its own defaults
        return {"before": detect_season(rows, max_period, significance=None).period,
                "now": detect_season(rows, max_period).period,
                "acf band": -1 if single is None else acf_band(single, max_period),
                "Fisher g": -1 if single is None else fisher_g(single, max_period)}


def null_table(count: int) -> None:
    print(f"\n1. Series without a season given one, % of {count} each (rule before its significance test / now / "
          "acf band / Fisher g)\n")
    print("| rows (look-back, search) | " + " | ".join(NULLS) + " |")
    print("|---" * (len(NULLS) + 1) + "|")
    for rows, lookback in NULL_RUNS:
        train = int(0.7 * rows)
        search = f"2-{min(lookback - 1, train // MIN_ROWS_PER_PERIOD)}"
        cells = []
        for index, generate in enumerate(NULLS.values()):
            found = {rule: 0 for rule in RULES}
            for seed in range(count):
                values = generate(np.random.default_rng([index, rows, lookback, seed]), rows)
                for rule, period in periods(training_rows(values, lookback), lookback - 1).items():
                    found[rule] += period > 0
            cells.append(" / ".join(f"{100 * found[rule] / count:g}" for rule in RULES))
        print(f"| {rows} ({lookback}, {search}) | " + " | ".join(cells) + " |", flush=True)


def real_series(folder: Path) -> list[tuple[str, Path, list[str] | None, int, str]]:
    """(name, CSV, columns, look-back, expected period) of the real series, written to `folder`:
    bench/forecasting.py's export, then statsmodels' and pmdarima's other series."""
    import pandas as pd
    import pmdarima.datasets as pm
    import statsmodels.api as sm

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import forecasting

    forecasting.export(folder)
    rows = [("taylor, half-hourly", folder / "taylor.csv", None, 672, "336"),
            ("taylor, half-hourly", folder / "taylor.csv", None, 96, "48"),
            ("co2, weekly", folder / "co2.csv", None, 96, "52"),
            ("elnino, monthly", folder / "elnino.csv", None, 96, "12")]
    tables = {"sunspots": (sm.datasets.sunspots.load_pandas().data[["SUNACTIVITY"]], "11 (solar cycle)"),
              "nile": (sm.datasets.nile.load_pandas().data[["volume"]], "none"),
              "macrodata": (sm.datasets.macrodata.load_pandas().data.drop(columns=["year", "quarter"]),
                            "none (seasonally adjusted)")}
    for name, expected in (("airpassengers", "12"), ("wineind", "12"), ("ausbeer", "4"), ("woolyrnq", "4"),
                           ("lynx", "9-10"), ("heartrate", "none"), ("austres", "none"),
                           ("sunspots", "none (132 > 95)")):
        tables[f"pm {name}"] = (pd.DataFrame({name: np.asarray(getattr(pm, f"load_{name}")(), dtype=float)}), expected)
    tables["pm msft"] = (pm.load_msft()[["Close"]], "none (stock price)")
    for name, (frame, expected) in tables.items():
        path = folder / f"{name.replace(' ', '_')}.csv"
        frame.to_csv(path, index=False)
        train = int(0.7 * len(frame))
        lookback = 96 if train > 96 + HORIZON else 24  # nile's 70 training rows hold no 96-step window
        if name == "macrodata":
            rows.append(("macrodata, quarterly, 12 columns pooled", path, None, lookback, expected))
            rows += [(f"macrodata {column}", path, [column], lookback, "none") for column in frame.columns]
        else:
            rows.append((name, path, None, lookback, expected))
    return rows


def real_table() -> None:
    print("\n2. Real series: the period picked (the training reader's rows; 0: none; -: pooled columns, no "
          "reference)\n")
    print("| series | training rows | look-back | expected | " + " | ".join(RULES) + " |")
    print("|---" * (4 + len(RULES)) + "|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, path, columns, lookback, expected in real_series(Path(tmp)):
            reader = TimeSeriesReader(path, lookback=lookback, horizon=HORIZON if lookback == 96 else 6,
                                      columns=columns, split="train", standardize=True)
            rows = reader.training_rows()  # exactly what resolve_auto_season detects on
            found = periods(rows, lookback - 1)
            cells = " | ".join("-" if found[rule] < 0 else str(found[rule]) for rule in RULES)
            print(f"| {name} | {len(rows[0])} | {lookback} | {expected} | {cells} |", flush=True)


def power_table(count: int) -> None:
    print(f"\n3. Sine + noise: % of {count} series given exactly the sine's period [within one step] "
          "(before / now; look-back 96)\n")
    ratios = (0.1, 0.25, 0.5, 1.0, 2.0)
    print("| rows | period | " + " | ".join(f"SNR {ratio:g}" for ratio in ratios) + " |")
    print("|---" * (2 + len(ratios)) + "|")
    for rows in (300, 1000, 3000):
        for period in (7, 12, 24, 48):
            if period > int(0.7 * rows) // MIN_ROWS_PER_PERIOD:
                continue  # beyond the search of so few training rows
            cells = []
            for ratio in ratios:
                exact = {"before": 0, "now": 0}
                near = dict(exact)
                for seed in range(count):
                    rng = np.random.default_rng([7, rows, period, seed])
                    steps = np.arange(rows)
                    values = np.sqrt(2 * ratio) * np.sin(2 * np.pi * steps / period + rng.uniform(0, 2 * np.pi))
                    train = training_rows(values + rng.normal(size=rows), 96)
                    for rule, significance in (("before", None), ("now", SIGNIFICANCE)):
                        found = detect_season(train, 95, significance=significance).period
                        exact[rule] += found == period
                        near[rule] += abs(found - period) <= 1
                cells.append(" / ".join(f"{100 * exact[rule] / count:g} [{100 * near[rule] / count:g}]"
                                        for rule in exact))
            print(f"| {rows} | {period} | " + " | ".join(cells) + " |", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=200, help="null series per family and length (default 200)")
    args = parser.parse_args(argv)
    missing = [name for name in ("statsmodels", "pmdarima", "pandas") if importlib.util.find_spec(name) is None]
    if missing:
        parser.exit(2, f"{parser.prog}: error: needs {', '.join(missing)}: pip install -e '.[forecast-demo]'\n")
    if args.series < 1:
        parser.error(f"--series must be >= 1, got {args.series}")
    z = statistics.NormalDist().inv_cdf(1 - SIGNIFICANCE / 94)
    print(f"season: auto, detect_season on the training rows; significance {SIGNIFICANCE:g} over the lags searched "
          f"(z {z:.2f} for 2-95)")
    null_table(args.series)
    real_table()
    power_table(max(1, args.series // 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
