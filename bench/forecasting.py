"""Forecasting on real series: the data, the baselines on identical windows, the plot.

    python bench/forecasting.py export DIR
        Writes DIR/co2.csv (weekly Mauna Loa CO2, 2284 weeks, from statsmodels' wheel),
        DIR/taylor.csv (half-hourly electricity demand of England and Wales, 4032 half-hours, from
        pmdarima's wheel) and DIR/elnino.csv (monthly El Nino sea surface temperature, 1950-2010,
        732 months, statsmodels' year-by-month table read row by row). All ship inside the
        packages: nothing is downloaded.
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
import json
import sys
from pathlib import Path

import numpy as np

from modrwkv.data.readers.series import TimeSeriesReader, instance_stats, seasonal_baseline
from modrwkv.evaluation import get_task
from modrwkv.evaluation.metrics import forecast_baselines, mae, mse

MODEL = "ModRWKV"
RIDGE_ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
# The packages each command imports beyond modrwkv's own (the `forecast-demo` extra).
NEEDS = {"export": ("statsmodels", "pmdarima", "pandas"), "baselines": ("sklearn",), "plot": ("matplotlib",)}


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
    print(f"wrote {folder / 'co2.csv'} ({len(weekly)} rows), {folder / 'taylor.csv'} ({len(demand)} rows) and "
          f"{folder / 'elnino.csv'} ({len(months)} rows)")


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    export_parser = commands.add_parser("export", help="write the three CSV files")
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
    else:
        report(args.eval, args.period, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
