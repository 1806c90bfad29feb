"""Forecasting on real series: the data, the baselines on identical windows, the plot.

    python bench/forecasting.py export DIR
        Writes DIR/co2.csv (weekly Mauna Loa CO2, 2284 weeks, from statsmodels' wheel) and
        DIR/taylor.csv (half-hourly electricity demand of England and Wales, 4032 half-hours, from
        pmdarima's wheel). Both ship inside the packages: nothing is downloaded.
    python bench/forecasting.py report --eval RUN_FOLDER --period M [--plot PNG]
        Reads a finished `modrwkv eval --task custom-series` run, rebuilds its test windows, and
        prints the model's MSE / MAE beside four baselines on exactly those windows (standardised
        values, as the run scores them):
          repeat-last              the look-back's last value
          seasonal naive           the value one period M earlier
          train mean               the training rows' mean (0 after the train-split scaler)
          seasonal naive + drift   seasonal naive plus the look-back's mean change over one period
        With --plot, draws a few test windows: look-back, truth, the model, seasonal naive + drift.

Needs statsmodels / pmdarima (export) and matplotlib (plot): `pip install -e ".[forecast-demo]"`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from modrwkv.evaluation import get_task
from modrwkv.evaluation.metrics import forecast_baselines, mae, mse

MODEL = "ModRWKV"


def export(folder: Path) -> None:
    import pandas as pd
    import statsmodels.datasets.co2 as co2
    from pmdarima.datasets import load_taylor

    folder.mkdir(parents=True, exist_ok=True)
    weekly = co2.load_pandas().data  # empty cells where a week has no measurement
    weekly.index.name = "date"
    weekly.to_csv(folder / "co2.csv")
    demand = load_taylor()
    pd.DataFrame({"ds": np.arange(len(demand)), "demand": demand}).to_csv(folder / "taylor.csv", index=False)
    print(f"wrote {folder / 'co2.csv'} ({len(weekly)} rows) and {folder / 'taylor.csv'} ({len(demand)} rows)")


def report(run: Path, period: int, plot: Path | None) -> None:
    summary = json.loads((run / "summary.json").read_text())
    options = json.loads((run / "run.json").read_text()).get("task_options", {})
    task = get_task(summary["task"]).configure(**options)
    samples = {s.id: s for s in task.load(Path(summary["data"]), summary["split"])}
    records = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    chosen = [samples[r["id"]] for r in records]
    windows = np.stack([np.asarray(s.series[0], dtype=np.float64) for s in chosen])
    if np.isnan(windows).any():
        raise ValueError("test look-backs with gaps: the baselines need complete windows")
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
    export_parser = commands.add_parser("export", help="write the two CSV files")
    export_parser.add_argument("folder", type=Path)
    report_parser = commands.add_parser("report", help="model vs baselines on a finished eval run")
    report_parser.add_argument("--eval", required=True, type=Path, help="the `modrwkv eval` output folder")
    report_parser.add_argument("--period", required=True, type=int, help="season length in steps")
    report_parser.add_argument("--plot", type=Path, help="write a PNG of forecasts vs truth")
    args = parser.parse_args(argv)
    if args.command == "export":
        export(args.folder)
    else:
        report(args.eval, args.period, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
