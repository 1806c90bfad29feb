"""Forecasting on real series: the data, the baselines on identical windows, the plot.

    python bench/forecasting.py export DIR
        Writes DIR/co2.csv (weekly Mauna Loa CO2, 2284 weeks, from statsmodels' wheel),
        DIR/taylor.csv (half-hourly electricity demand of England and Wales, 4032 half-hours, from
        pmdarima's wheel) and DIR/elnino.csv (monthly El Nino sea surface temperature, 1950-2010,
        732 months, statsmodels' year-by-month table read row by row) and DIR/fertility.tsf (World
        Bank fertility rates, yearly 1960-2011, one series per country, statsmodels' `fertility`, in
        the Monash archive's .tsf layout with its yearly horizon 6: `write_fertility_tsf`). All ship
        inside the packages: nothing is downloaded.
    python bench/forecasting.py monash TSF [--season M] [--eval RUN_FOLDER ...] [--quantiles 0.1,...,0.9]
        The Monash archive's fixed-horizon evaluation of one .tsf file, computed here from the
        archive's R code (rakshitha123/TSForecasting: experiments/fixed_horizon.R,
        utils/error_calculator.R), independently of modrwkv's reader and metrics: each series'
        last @horizon values are its test, the values before them its training part; per series
        sMAPE = 100 mean(2|f-y|/(|f|+|y|)) and MASE = mean|f-y| / mean|diff(training part, lag m)|
        (m: --season, else the archive's seasonality of the @frequency), each averaged over the
        series. Forecasts: naive (the last value), seasonal naive, and the archive's local models
        as statsmodels fits them on each training part: SES, Theta (Hyndman & Billah, deseasonalised
        when m > 1), ETS (chosen by AICc, as R's forecast::ets chooses). With --eval, the same two
        numbers of a finished `modrwkv eval --task custom-series --holdout last` run, recomputed from
        its predictions.jsonl, beside those its summary.json states. With --quantiles, a second table: the mean
        weighted quantile loss (GluonTS', written here as the pinball loss) and each central interval's coverage of
        ETS's prediction intervals (statsmodels' get_prediction of the AICc-chosen model) and of the --eval runs'
        quantiles (`modrwkv eval --quantiles`), recomputed from their predictions, on the test windows.
    python bench/forecasting.py report --eval RUN_FOLDER --period M [--plot PNG]
        Reads a finished `modrwkv eval --task custom-series` run, rebuilds its test windows, and
        prints the model's MSE / MAE beside five baselines on exactly those windows (standardised
        values, as the run scores them; a gap in a look-back read as the window's mean, as the model
        reads it), those `modrwkv eval` itself reports beside the model (of the model's own season):
          repeat-last              the look-back's last value
          look-back mean           the look-back's mean
          seasonal naive           the value one period M earlier
          train mean               the training rows' mean (0 after the train-split scaler)
          seasonal naive + drift   seasonal naive plus the look-back's mean change over one period
        With --plot, draws a few test windows: look-back, truth, the model, seasonal naive + drift.
    python bench/forecasting.py baselines CSV --lookback L --horizon H --period M [--eval RUN ...]
        The baseline table of docs/forecasting.md for one CSV: on the val and test windows that
        `modrwkv eval --task custom-series [--split val]` scores (70/10/20 rows, train scaler,
        stride 1), MSE and MAE of repeat-last (naive), look-back mean, seasonal naive, seasonal naive + drift, and
        a ridge regression (scikit-learn) of the correction to seasonal naive + drift on the
        instance-normalised look-back (the model's own input), fitted on the training windows with
        its alpha chosen on the val windows; with --eval, the ModRWKV rows of finished eval runs.

Needs statsmodels / pmdarima (export), matplotlib (plot) and scikit-learn (baselines):
`pip install -e ".[forecast-demo]"`.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import re
import sys
from pathlib import Path

import numpy as np

from modrwkv.data.readers.series import TimeSeriesReader, instance_stats, seasonal_baseline
from modrwkv.evaluation import get_task
from modrwkv.evaluation.metrics import forecast_baselines, mae, mse

MODEL = "ModRWKV"
RIDGE_ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
FERTILITY_HORIZON = 6  # the archive's horizon of every yearly data set (tourism, M1, M3, M4 yearly)
# The archive's MASE lag per @frequency: max(SEASONALITY_MAP[[frequency]]) of its fixed_horizon.R (sub-daily files
# carry three seasonalities, daily to yearly, and the largest is the lag; weekly's 365.25/7 truncated by R's diff).
ARCHIVE_SEASONALITY = {"4_seconds": 7889400, "minutely": 525960, "10_minutes": 52596, "15_minutes": 35064,
                       "half_hourly": 17532, "hourly": 8766, "daily": 7, "weekly": 52, "monthly": 12, "quarterly": 4,
                       "yearly": 1}
# The packages each command imports beyond modrwkv's own (the `forecast-demo` extra).
NEEDS = {"export": ("statsmodels", "pmdarima", "pandas"), "baselines": ("sklearn",), "plot": ("matplotlib",),
         "monash": ("statsmodels", "pandas")}


def missing_packages(command: str) -> str | None:
    """The error for `command` when a package it needs is not installed, or None. Checked before
    any work, so that a report is not computed only to fail at its plot with a traceback."""
    missing = [name for name in NEEDS[command] if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    names = ", ".join("scikit-learn" if name == "sklearn" else name for name in missing)
    return f"{command} needs {names}, which is not installed: pip install -e '.[forecast-demo]'"


def export(folder: Path) -> None:
    import pandas as pd
    import statsmodels.datasets.co2 as co2
    import statsmodels.datasets.elnino as elnino
    from pmdarima.datasets import load_taylor

    folder.mkdir(parents=True, exist_ok=True)
    weekly = co2.load_pandas().data  # empty cells where a week has no measurement
    weekly.index.name = "date"
    weekly.to_csv(folder / "co2.csv")
    demand = load_taylor()
    pd.DataFrame({"ds": np.arange(len(demand)), "demand": demand}).to_csv(folder / "taylor.csv", index=False)
    table = elnino.load_pandas().data  # one row per year, one column per month
    months = table.drop(columns="YEAR").to_numpy().reshape(-1)
    dates = pd.period_range(f"{int(table['YEAR'].iloc[0])}-01", periods=len(months), freq="M")
    pd.DataFrame({"month": dates.astype(str), "temperature": months}).to_csv(folder / "elnino.csv", index=False)
    kept, dropped = write_fertility_tsf(folder / "fertility.tsf")
    print(f"wrote {folder / 'co2.csv'} ({len(weekly)} rows), {folder / 'taylor.csv'} ({len(demand)} rows), "
          f"{folder / 'elnino.csv'} ({len(months)} rows) and {folder / 'fertility.tsf'} ({kept} series; "
          f"{len(dropped)} countries left out, a year missing before their last: {', '.join(dropped)})")


def write_fertility_tsf(path: Path) -> tuple[int, list[str]]:
    """statsmodels' `fertility` (World Bank births per woman, 219 countries and regions, 1960-2013) as a Monash
    archive .tsf file, in the archive's layout (tourism_yearly_dataset.tsf's): one series per country from 1960 to
    its last year with a value (2011 for every country kept: 2012 and 2013 are empty throughout); a country with a
    year missing before that (a later start, a hole) or none at all is left out, as the archive's files declaring
    `@missing false` hold no gap. A series is named by its ISO country code, as the archive names series by ids
    (T1, ...): the country names hold ',' and ':' ("Korea, Rep."), and ':' separates a line's attributes. Returns
    the series written and the codes left out."""
    import statsmodels.api as sm

    table = sm.datasets.fertility.load_pandas().data
    years = [column for column in table.columns if column.isdigit()]
    lines, lengths, dropped = [], set(), []
    for code, values in zip(table["Country Code"], table[years].to_numpy(dtype=np.float64)):
        present = np.flatnonzero(~np.isnan(values))
        series = values[: present[-1] + 1] if len(present) else values[:0]
        if not len(series) or np.isnan(series).any():
            dropped.append(code)
            continue
        lengths.add(len(series))
        lines.append(f"{code}:{years[0]}-01-01 00-00-00:" + ",".join(repr(float(v)) for v in series))
    header = [
        "# Dataset Information",
        f"# Total fertility rate (births per woman) of {len(lines)} countries and regions, yearly from {years[0]},",
        "# World Bank World Development Indicators (SP.DYN.TFRT.IN) as statsmodels ships it (statsmodels.datasets.fertility).",
        f"# Series are named by ISO country code; {len(dropped)} countries with a missing year are left out.",
        "#",
        "# Written by bench/forecasting.py in the layout of the Monash Time Series Forecasting Archive:",
        "# Godahewa, R., Bergmeir, C., Webb, G. I., Hyndman, R. J., & Montero-Manso, P. (2021).",
        "# Monash Time Series Forecasting Archive. In NeurIPS Track on Datasets and Benchmarks.",
        "@relation fertility",
        "@attribute series_name string",
        "@attribute start_timestamp date",
        "@frequency yearly",
        f"@horizon {FERTILITY_HORIZON}",
        "@missing false",
        f"@equallength {'true' if len(lengths) == 1 else 'false'}",
        "@data",
    ]
    path.write_text("\n".join(header + lines) + "\n")
    return len(lines), dropped


def read_tsf(path: Path) -> tuple[dict[str, np.ndarray], str | None, int | None]:
    """A .tsf file's series (name -> values, NaN where '?'), @frequency and @horizon, read as the archive's
    `convert_tsf_to_dataframe` reads them (the first attribute names the series; the values follow the last ':'),
    written here rather than taken from modrwkv so that `monash` checks modrwkv's reading too."""
    series: dict[str, np.ndarray] = {}
    frequency, horizon, in_data = None, None, False
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            tag, *values = line.split()
            tag = tag.lower()
            in_data = tag == "@data"
            frequency = values[0] if tag == "@frequency" else frequency
            horizon = int(values[0]) if tag == "@horizon" else horizon
            continue
        name, *_, cells = line.split(":")
        series[name] = np.array([np.nan if cell == "?" else float(cell) for cell in cells.split(",")])
    return series, frequency, horizon


def archive_period(frequency: str | None) -> int:
    """The lag of the archive's MASE for a .tsf @frequency: `diff(training, lag = max(seasonality))` of
    fixed_horizon.R's SEASONALITY_MAP (R's diff truncates weekly's 365.25/7 to 52); 1 for a file stating none."""
    if frequency is None:
        return 1
    if frequency not in ARCHIVE_SEASONALITY:
        raise SystemExit(f"@frequency {frequency!r} is not one of the archive's ({', '.join(ARCHIVE_SEASONALITY)}): "
                         "give --season")
    return ARCHIVE_SEASONALITY[frequency]


def archive_smape(forecast: np.ndarray, truth: np.ndarray) -> float:
    """error_calculator.R's calculate_smape of one series (x100, as the archive reports it)."""
    return float(np.nanmean(2 * np.abs(forecast - truth) / (np.abs(forecast) + np.abs(truth)))) * 100


def archive_mase(forecast: np.ndarray, truth: np.ndarray, training: np.ndarray, period: int) -> float:
    """error_calculator.R's calculate_mase of one series: MAE over the mean absolute lag-`period` difference of its
    training part, missing values dropped first."""
    training = training[~np.isnan(training)]
    keep = ~np.isnan(truth)
    return float(np.mean(np.abs(forecast[keep] - truth[keep])) / np.mean(np.abs(training[period:] - training[:-period])))


def naive_forecast(training: np.ndarray, horizon: int) -> np.ndarray:
    return np.full(horizon, training[-1])


def seasonal_naive_forecast(training: np.ndarray, horizon: int, period: int) -> np.ndarray:
    """forecast::snaive: the value one period before each step (naive where the series is shorter)."""
    if len(training) < period:
        return naive_forecast(training, horizon)
    return np.array([training[len(training) - period + step % period] for step in range(horizon)])


def ses_forecast(training: np.ndarray, horizon: int) -> np.ndarray:
    """forecast::ses: simple exponential smoothing as R fits it, the ETS(A,N,N) model of the smoothing weight and
    initial level of highest likelihood."""
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    return np.asarray(ETSModel(training, error="add").fit(disp=False).forecast(horizon))


def theta_forecast(training: np.ndarray, horizon: int, period: int) -> np.ndarray:
    """forecast::thetaf: the theta method of theta 2 (Hyndman & Billah 2003: SES plus half the linear trend's
    slope), the series deseasonalised first (multiplicatively for a positive one) where the period exceeds 1, the
    series holds two periods and thetaf's test (the autocorrelation at the period, 90%) finds the season."""
    from statsmodels.tsa.forecasting.theta import ThetaModel

    seasonal = period > 1 and len(training) >= 2 * period
    model = ThetaModel(training, period=period if seasonal else 1, deseasonalize=seasonal, use_test=True)
    return np.asarray(model.fit().forecast(horizon))


def ets_forecast(training: np.ndarray, horizon: int, period: int) -> np.ndarray:
    """forecast::ets's point forecast (`ets_fit`); naive where no model fits."""
    best = ets_fit(training, period)
    return np.asarray(best.forecast(horizon)) if best is not None else naive_forecast(training, horizon)


def ets_quantiles(training: np.ndarray, horizon: int, period: int, levels: list[float]) -> np.ndarray:
    """[levels, horizon]: the AICc-chosen ETS model's (`ets_fit`) predictive quantiles, as statsmodels'
    `ETSResults.get_prediction` gives them: level q is the lower end of its central 1 - 2q interval (`pred_int`,
    alpha 2q) below 0.5 and the upper end of the 2q - 1 one above (0.5: alpha 1, the middle): normal quantiles of the
    exact forecast variance for the additive models (ANN, AAN, AAdN), empirical ones of 1000 simulated paths
    (seeded: np.random.default_rng(0)) for the multiplicative. Where no model fits: the naive forecast at every
    level."""
    import pandas as pd

    # (fitted on a pandas Series: statsmodels 0.14-0.15's get_prediction reads the forecast's index, which an array's
    # fit has not; the fit is the array's)
    best = ets_fit(pd.Series(training), period)
    if best is None:
        return np.tile(naive_forecast(training, horizon), (len(levels), 1))
    n = len(training)
    seed = "rng" if "rng" in inspect.signature(best.simulate).parameters else "random_state"  # (0.15's; 0.14's)
    prediction = best.get_prediction(start=n, end=n + horizon - 1, **{seed: np.random.default_rng(0)})
    found = []
    for level in levels:
        lower, upper = np.asarray(prediction.pred_int(alpha=2 * min(level, 1 - level))).T
        found.append(lower if level <= 0.5 else upper)
    return np.array(found)


def ets_fit(training: np.ndarray, period: int):
    """forecast::ets's default: every error x trend x season model it allows (additive or multiplicative error and
    season; no, additive or additive damped trend; multiplicative ones only for a positive series; no multiplicative
    season with an additive error; a season only when the period exceeds 1 and the series holds two periods), each
    fitted by maximum likelihood, the lowest AICc kept (None where none fits)."""
    import warnings

    from statsmodels.tools.sm_exceptions import ConvergenceWarning
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    positive = bool((training > 0).all())
    kinds = ("add", "mul") if positive else ("add",)
    seasons = (None, *kinds) if period > 1 and len(training) >= 2 * period else (None,)
    best, best_aicc = None, np.inf
    for error in kinds:
        for trend, damped in ((None, False), ("add", False), ("add", True)):
            for season in seasons:
                if error == "add" and season == "mul":
                    continue
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", (ConvergenceWarning, RuntimeWarning, UserWarning))
                    try:
                        fit = ETSModel(training, error=error, trend=trend, damped_trend=damped, seasonal=season,
                                       seasonal_periods=period if season else None).fit(disp=False)
                    except (ValueError, np.linalg.LinAlgError):
                        continue
                if np.isfinite(fit.aicc) and fit.aicc < best_aicc:
                    best, best_aicc = fit, fit.aicc
    return best


def weighted_quantile_loss(quantiles: np.ndarray, truth: np.ndarray, levels: list[float]) -> float:
    """GluonTS' mean weighted quantile loss (gluonts.ev: MeanWeightedSumQuantileLoss), written here from its
    definition as the pinball loss: the mean over the levels q of 2 sum max(q (y - Q), (q - 1)(y - Q)) / sum |y|, the
    sums over every series and step; `quantiles` [levels, ...] beside `truth` [...]."""
    error = truth[None] - quantiles
    level = np.asarray(levels).reshape(-1, *([1] * truth.ndim))
    pinball = np.maximum(level * error, (level - 1) * error)
    return float(np.mean(2 * pinball.reshape(len(levels), -1).sum(axis=1) / np.abs(truth).sum()))


def interval_coverage(quantiles: np.ndarray, truth: np.ndarray, levels: list[float], low: float) -> float:
    """The share of `truth` inside [Q_low, Q_(1 - low)] (`quantiles` [levels, ...])."""
    lower = quantiles[levels.index(low)]
    upper = quantiles[min(range(len(levels)), key=lambda i: abs(levels[i] - (1 - low)))]
    return float(np.mean((lower <= truth) & (truth <= upper)))


def archive_parts(values: np.ndarray, horizon: int, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A series' training part and its truth under the archive's fixed horizon: the last `horizon` values are the
    test (fixed_horizon.R); val, which the archive has not, is the same cut of the series less its test."""
    if split == "val":
        values = values[:-horizon]
    return values[:-horizon], values[-horizon:]


ARCHIVE_MODELS = {
    "naive": lambda training, horizon, period: naive_forecast(training, horizon),
    "seasonal naive": seasonal_naive_forecast,
    "SES": lambda training, horizon, period: ses_forecast(training, horizon),
    "Theta": theta_forecast,
    "ETS (AICc-chosen)": ets_forecast,
}


def archive_table(series: dict[str, np.ndarray], horizon: int, period: int, split: str = "test",
                  models: tuple[str, ...] = tuple(ARCHIVE_MODELS)) -> dict[str, tuple[float, float]]:
    """Mean MASE and mean sMAPE over the series of each of `models`, fitted on each series' training part."""
    table = {}
    for model in models:
        mase_values, smape_values = [], []
        for values in series.values():
            training, truth = archive_parts(values, horizon, split)
            forecast = ARCHIVE_MODELS[model](training, horizon, period)
            mase_values.append(archive_mase(forecast, truth, training, period))
            smape_values.append(archive_smape(forecast, truth))
        table[model] = (float(np.mean(mase_values)), float(np.mean(smape_values)))
    return table


def run_scores(run: Path, series: dict[str, np.ndarray], horizon: int, period: int) -> tuple[tuple[float, float], dict]:
    """Mean MASE and mean sMAPE of a finished `modrwkv eval --task custom-series --holdout last` run, recomputed from
    its predictions: each record's forecast in the file's units (forecast x std + mean of its `unit`) against its
    series' truth and training part as this file's own reading cuts them; and its summary.json metrics. Exits
    naming the record whose stated target is not that truth, or a series the run has not scored."""
    summary = json.loads((run / "summary.json").read_text())
    records = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    split, scored = summary["split"], {}
    for record in records:
        named = re.search(r"series_name (['\"])(.*?)\1", record["reference"]["channel"])
        if named is None or named.group(2) not in series:
            raise SystemExit(f"{run}: record {record['id']!r} names no series of this file")
        mean, std = record["reference"]["unit"]
        training, truth = archive_parts(series[named.group(2)], horizon, split)
        stated = np.asarray(record["reference"]["target"], dtype=np.float64) * std + mean
        if not np.allclose(stated, truth, rtol=1e-6, atol=1e-6 * std):  # (the run's targets are float32)
            raise SystemExit(f"{run}: record {record['id']!r}: target {stated.tolist()} in the file's units, the file's "
                             f"last {horizon} values ({split}) are {truth.tolist()}")
        forecast = np.asarray(record["forecast"], dtype=np.float64) * std + mean
        scored[named.group(2)] = (archive_mase(forecast, truth, training, period), archive_smape(forecast, truth))
    if len(scored) != len(series) or len(records) != len(series):
        raise SystemExit(f"{run}: {len(records)} records of {len(scored)} series, this file holds {len(series)} "
                         f"(the run's --limit: {summary.get('limit')})")
    mase_values, smape_values = zip(*scored.values())
    return (float(np.mean(mase_values)), float(np.mean(smape_values))), summary["metrics"]


def interval_table(series: dict[str, np.ndarray], horizon: int, period: int, levels: list[float],
                   runs: list[Path]) -> None:
    """Mean weighted quantile loss and the central intervals' coverage on the test windows: ETS's (`ets_quantiles`,
    fitted on each training part) and those of finished `modrwkv eval --quantiles` runs, recomputed from their
    predictions (each record's quantiles x std + mean of its `unit`) beside their summary.json's."""
    lows = [q for q in levels if q < 0.5 and any(abs(other - (1 - q)) < 1e-9 for other in levels)]
    names = [f"{round(100 * (1 - 2 * q)):g}%" for q in lows]
    print("| forecast | mean WQL | " + " | ".join(f"{name} coverage" for name in names)
          + " | point forecast alone: ND | summary.json WQL | summary.json " + ", ".join(names) + " |")
    print("|---|---:|" + "---:|" * len(names) + "---:|---:|---:|")
    truth = np.stack([archive_parts(values, horizon, "test")[1] for values in series.values()])

    def alone(point: np.ndarray) -> str:
        """A point forecast as every quantile: its mean WQL over levels symmetric about 0.5 is sum |y - f| / sum |y|,
        the normalised deviation (ND), what the intervals are to improve on."""
        return f"{np.abs(truth - point).sum() / np.abs(truth).sum():.4f}"

    for run in runs:
        summary = json.loads((run / "summary.json").read_text())
        found, points = {}, {}
        for line in (run / "predictions.jsonl").read_text().splitlines():
            record = json.loads(line)
            named = re.search(r"series_name (['\"])(.*?)\1", record["reference"]["channel"])
            mean, std = record["reference"]["unit"]
            found[named.group(2)] = np.array([record["quantiles"][f"q{q:g}"] for q in levels]) * std + mean
            points[named.group(2)] = np.asarray(record["forecast"]) * std + mean
        if set(found) != set(series) or summary["split"] != "test":
            raise SystemExit(f"{run}: a test run over every series of this file is needed (its split: "
                             f"{summary['split']}, {len(found)} of {len(series)} series)")
        quantiles = np.stack([found[name] for name in series], axis=1)  # [levels, series, horizon]
        stated = summary["metrics"]
        print(f"| {MODEL} ({run.name}) | {weighted_quantile_loss(quantiles, truth, levels):.4f} | "
              + " | ".join(f"{interval_coverage(quantiles, truth, levels, q):.3f}" for q in lows)
              + f" | {alone(np.stack([points[name] for name in series]))} | {stated['wql']:.4f} | "
              + ", ".join(f"{stated['interval_coverage'][n]:.3f}" for n in names) + " |")
    quantiles = np.stack([ets_quantiles(archive_parts(values, horizon, "test")[0], horizon, period, levels)
                          for values in series.values()], axis=1)
    point = np.stack([ets_forecast(archive_parts(values, horizon, "test")[0], horizon, period)
                      for values in series.values()])
    print(f"| ETS (AICc-chosen), statsmodels' intervals | {weighted_quantile_loss(quantiles, truth, levels):.4f} | "
          + " | ".join(f"{interval_coverage(quantiles, truth, levels, q):.3f}" for q in lows)
          + f" | {alone(point)} | | |")


def monash(path: Path, season: int | None, runs: list[Path], levels: list[float] | None = None) -> None:
    series, frequency, horizon = read_tsf(path)
    if horizon is None:
        raise SystemExit(f"{path}: no @horizon line; the archive's protocol needs the file's forecast horizon")
    period = season or archive_period(frequency)
    lengths = [len(values) for values in series.values()]
    print(f"{path}: {len(series)} series of {min(lengths)}-{max(lengths)} steps, @frequency {frequency}, "
          f"@horizon {horizon}, MASE lag {period}")
    print("| forecast | mean MASE | mean sMAPE | summary.json MASE | summary.json sMAPE |\n|---|---:|---:|---:|---:|")
    for run in runs:
        (mase_value, smape_value), stated = run_scores(run, series, horizon, period)
        print(f"| {MODEL} ({run.name}) | {mase_value:.4f} | {smape_value:.4f} | "
              f"{stated.get('mase', float('nan')):.4f} | {stated.get('smape', float('nan')):.4f} |")
    for model, (mase_value, smape_value) in archive_table(series, horizon, period).items():
        print(f"| {model} | {mase_value:.4f} | {smape_value:.4f} | | |")
    if levels:
        print()
        interval_table(series, horizon, period, levels, runs)


def report(run: Path, period: int, plot: Path | None) -> None:
    summary = json.loads((run / "summary.json").read_text())
    options = json.loads((run / "run.json").read_text()).get("task_options", {})
    task = get_task(summary["task"]).configure(**options)
    samples = {s.id: s for s in task.load(Path(summary["data"]), summary["split"])}
    records = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    chosen = [samples[r["id"]] for r in records]
    windows = np.stack([np.asarray(s.series[0], dtype=np.float64) for s in chosen])  # a gap: its window's mean
    truth = np.stack([np.asarray(s.reference["target"], dtype=np.float64) for s in chosen])
    forecasts = {MODEL: np.array([r["forecast"] for r in records], dtype=np.float64)}
    forecasts.update(forecast_baselines(windows, task.horizon, period))
    print(f"{summary['data']}: {len(records)} {summary['split']} windows, lookback {task.lookback}, horizon {task.horizon}, "
          f"period {period}; unparsed replies: {summary['metrics']['unparsed']}")
    print("| forecast | MSE | MAE |\n|---|---:|---:|")
    for name, values in forecasts.items():
        print(f"| {name} | {mse(values, truth):.4f} | {mae(values, truth):.4f} |")
    if plot is not None:
        draw(plot, windows, truth, forecasts, Path(summary["data"]).stem)


def split_windows(path: Path, split: str, lookback: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Look-backs [n, lookback] (NaN where a cell is empty) and futures [n, horizon] of one split,
    standardised with the training rows' scaler: the windows training and `modrwkv eval` read. A window
    whose target holds a gap is left out, as they leave it out: one line per split says how many
    (co2 has 248 such training windows, which one line each buried the table)."""
    reader = TimeSeriesReader(path, lookback=lookback, horizon=horizon, split=split, standardize=True,  # type: ignore[arg-type]
                              log_limit=0)
    samples = list(reader)
    past = np.stack([np.asarray(s.series[0], dtype=np.float64).reshape(lookback) for s in samples])
    future = np.stack([np.asarray(s.meta["target"], dtype=np.float64).reshape(horizon) for s in samples])
    return past, future


class RidgeForecaster:
    """Ridge regression of the correction to seasonal naive (+ drift) on the instance-normalised
    look-back, the input and target scale of a `season` ModRWKV: z = (x - mean) / scale per
    window (gaps 0), target = (future - mean) / scale - seasonal_baseline(z). The alpha with the
    lowest val MSE (series units) is kept."""

    def __init__(self, period: int, drift: bool) -> None:
        self.period, self.drift = period, drift
        self.alpha: float | None = None
        self.val_mse: dict[float, float] = {}

    def _inputs(self, past: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        mean, scale = instance_stats(past.T)  # the windows as the channels of one look-back
        z = np.nan_to_num((past - mean[:, None]) / scale[:, None])
        base = seasonal_baseline(z.T, horizon, self.period, self.drift).T
        return z, base, mean[:, None], scale[:, None]

    def fit(self, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
            alphas: tuple[float, ...] = RIDGE_ALPHAS) -> RidgeForecaster:
        from sklearn.linear_model import Ridge

        (past, future), horizon = train, train[1].shape[1]
        z, base, mean, scale = self._inputs(past, horizon)
        target = (future - mean) / scale - base
        for alpha in alphas:
            model = Ridge(alpha=alpha).fit(z, target)
            self.val_mse[alpha] = mse(self._predict(model, val[0], horizon), val[1])
            if self.alpha is None or self.val_mse[alpha] < self.val_mse[self.alpha]:
                self.alpha, self.model = alpha, model
        return self

    def _predict(self, model, past: np.ndarray, horizon: int) -> np.ndarray:
        z, base, mean, scale = self._inputs(past, horizon)
        return (model.predict(z) + base) * scale + mean

    def predict(self, past: np.ndarray) -> np.ndarray:
        return self._predict(self.model, past, self.model.coef_.shape[0])


def baselines(path: Path, lookback: int, horizon: int, period: int, runs: list[Path]) -> None:
    windows = {split: split_windows(path, split, lookback, horizon) for split in ("train", "val", "test")}
    drift = 0 < period < lookback
    ridge = RidgeForecaster(period, drift).fit(windows["train"], windows["val"])
    table: dict[str, dict[str, tuple[float, float]]] = {}
    for split in ("val", "test"):
        past, truth = windows[split]
        forecasts = {name: values for name, values in forecast_baselines(past, horizon, period).items()
                     if name != "train mean"}
        forecasts[f"ridge (alpha {ridge.alpha:g}, chosen on val)"] = ridge.predict(past)
        for name, values in forecasts.items():
            table.setdefault(name, {})[split] = (mse(values, truth), mae(values, truth))
    for run in runs:
        summary = json.loads((run / "summary.json").read_text())
        records = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
        split, truth = summary["split"], windows[summary["split"]][1]
        options = json.loads((run / "run.json").read_text()).get("task_options", {})
        if len(records) != len(truth):
            raise SystemExit(
                f"{run}: {len(records)} {split} windows, this table has {len(truth)}; --eval needs a run over every "
                f"window of this look-back (the run: --limit {summary.get('limit')}, --lookback "
                f"{options.get('lookback')}; this table: --lookback {lookback})")
        forecast = np.array([r["forecast"] for r in records], dtype=np.float64)
        samples = options.get("samples", 1)
        table.setdefault(f"{MODEL} ({run.name}, samples {samples})", {})[split] = (mse(forecast, truth), mae(forecast, truth))
    print(f"{path}: lookback {lookback}, horizon {horizon}, period {period}; windows: "
          + ", ".join(f"{split} {len(w[1])}" for split, w in windows.items())
          + "; ridge val MSE by alpha: " + ", ".join(f"{a:g}: {m:.4f}" for a, m in ridge.val_mse.items()))
    print("| forecast | val MSE | val MAE | test MSE | test MAE |\n|---|---:|---:|---:|---:|")
    for name, scores in table.items():
        cells = [f"{scores[split][i]:.4f}" if split in scores else "" for split in ("val", "test") for i in (0, 1)]
        print(f"| {name} | " + " | ".join(cells) + " |")


def draw(path: Path, windows: np.ndarray, truth: np.ndarray, forecasts: dict[str, np.ndarray], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picks = np.linspace(0, len(windows) - 1, 3).astype(int)
    figure, axes = plt.subplots(1, len(picks), figsize=(12, 3), sharey=False)
    shown, horizon = min(windows.shape[1], 4 * truth.shape[1]), truth.shape[1]  # the look-back's end
    past, future = np.arange(-shown, 0), np.arange(horizon)
    simple = "seasonal naive + drift" if "seasonal naive + drift" in forecasts else "seasonal naive"
    for ax, i in zip(axes, picks):
        ax.plot(past, windows[i, -shown:], color="0.6", lw=1, label="look-back (end)")
        ax.plot(future, truth[i], color="black", lw=1.5, label="truth")
        ax.plot(future, forecasts[MODEL][i], color="tab:red", lw=1.5, label="ModRWKV")
        ax.plot(future, forecasts[simple][i], color="tab:blue", lw=1, ls="--", label=simple)
        ax.set_title(f"test window {i}", fontsize=9)
        ax.tick_params(labelsize=8)
    axes[0].legend(fontsize=7, loc="best")
    figure.suptitle(f"{title}: forecasts vs truth (standardised)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    print(f"plot written to {path}")


def levels_option(text: str) -> list[float]:
    """argparse type: quantile levels "0.1,0.5,0.9", each between 0 and 1."""
    try:
        levels = sorted(float(item) for item in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not all(0 < level < 1 for level in levels):
        raise argparse.ArgumentTypeError(f"quantile levels lie between 0 and 1, got {text!r}")
    return levels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    export_parser = commands.add_parser("export", help="write the three CSV files and fertility.tsf")
    export_parser.add_argument("folder", type=Path)
    report_parser = commands.add_parser("report", help="model vs baselines on a finished eval run")
    report_parser.add_argument("--eval", required=True, type=Path, help="the `modrwkv eval` output folder")
    report_parser.add_argument("--period", required=True, type=int, help="season length in steps")
    report_parser.add_argument("--plot", type=Path, help="write a PNG of forecasts vs truth")
    table_parser = commands.add_parser("baselines", help="the baseline table (val and test) of one CSV")
    table_parser.add_argument("csv", type=Path)
    table_parser.add_argument("--lookback", required=True, type=int)
    table_parser.add_argument("--horizon", required=True, type=int)
    table_parser.add_argument("--period", required=True, type=int, help="season length in steps, 1 to --lookback")
    table_parser.add_argument("--eval", action="append", default=[], type=Path,
                              help="a finished `modrwkv eval --task custom-series` run on this CSV (repeatable)")
    monash_parser = commands.add_parser("monash", help="the Monash archive's fixed-horizon table of one .tsf file")
    monash_parser.add_argument("tsf", type=Path)
    monash_parser.add_argument("--season", type=int, help="MASE lag (default: the archive's for the @frequency)")
    monash_parser.add_argument("--eval", action="append", default=[], type=Path,
                               help="a finished `modrwkv eval --task custom-series --holdout last` run on this file "
                                    "(repeatable)")
    monash_parser.add_argument("--quantiles", type=levels_option, metavar="Q,Q,...",
                               help="also score quantile forecasts at these levels (e.g. 0.1,...,0.9): ETS's "
                                    "prediction intervals and the --eval runs' (made with the same --quantiles)")
    args = parser.parse_args(argv)
    for command in (args.command, "plot" if getattr(args, "plot", None) is not None else None):
        problem = missing_packages(command) if command in NEEDS else None
        if problem:  # not a usage mistake: one line, without argparse's usage text
            parser.exit(2, f"{parser.prog}: error: {problem}\n")
    if args.command == "export":
        export(args.folder)
    elif args.command == "baselines":
        if not 1 <= args.period <= args.lookback:
            parser.error(f"--period must lie in [1, --lookback {args.lookback}], got {args.period}")
        baselines(args.csv, args.lookback, args.horizon, args.period, args.eval)
    elif args.command == "monash":
        if args.season is not None and args.season < 1:
            parser.error(f"--season must be a positive number of steps, got {args.season}")
        monash(args.tsf, args.season, args.eval, args.quantiles)
    else:
        report(args.eval, args.period, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
