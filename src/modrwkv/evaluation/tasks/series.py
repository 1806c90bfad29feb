"""Long-horizon forecasting (ETTh1/2, ETTm1/2, ECL, Weather, Traffic), zero-shot, as the usual
protocol runs it: lookback 720, horizon 96, every channel forecast on its own
(channel-independent), the test windows at stride 1 inside the Time-Series-Library borders, values
standardised with a scaler fitted on the training rows only, MSE and MAE on standardised values.

The model reads the look-back window as a series item and answers with the forecast as text
(`format_forecast`'s "v1, v2, ..."). A reply that is not exactly `horizon` numbers is still scored:
its numbers are read leniently, cut or padded with the last number read (0, the training mean,
if there is none), and counted as "unparsed" in the summary.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...data.readers.series import DEFAULT_PROMPT, parse_forecast
from ...data.sample import MARKERS
from ..metrics import (
    apply_standard,
    fit_standard,
    forecast_windows,
    long_horizon_split,
    mae,
    mse,
)
from .base import (
    BenchmarkFileError,
    EvalSample,
    PaperResult,
    Task,
    expect_dir,
    expect_file,
)
from .paper import SERIES

LOOKBACK = 720
HORIZON = 96
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def forecast_values(text: str, horizon: int) -> tuple[np.ndarray, bool]:
    """The forecast a reply states, and whether it was exactly `horizon` numbers; otherwise the
    numbers found are cut or padded with the last one (0.0 when there is none)."""
    try:
        return parse_forecast(text, horizon), True
    except ValueError:
        found = [float(n) for n in _NUMBER.findall(text)][:horizon]
        fill = found[-1] if found else 0.0
        return np.array(found + [fill] * (horizon - len(found)), dtype=np.float64), False


def read_table(path: Path) -> tuple[list[str], np.ndarray]:
    """The numeric columns of a benchmark CSV (the leading date column left out) as [rows, channels]."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except OSError as exc:
        raise BenchmarkFileError(f"{path}: cannot read ({exc})") from None
    if len(rows) < 2:
        raise BenchmarkFileError(f"{path}: expected a header row and data rows")
    header, body = rows[0], rows[1:]
    first = 1 if header[0].strip().lower() in ("date", "datetime", "time", "timestamp") else 0
    table = np.empty((len(body), len(header) - first), dtype=np.float64)
    for i, row in enumerate(body):
        if len(row) != len(header):
            raise BenchmarkFileError(f"{path}:{i + 2}: {len(row)} fields, the header has {len(header)}")
        try:
            table[i] = [float(cell) for cell in row[first:]]
        except ValueError:
            raise BenchmarkFileError(f"{path}:{i + 2}: a value is not a number: {row[first:]}") from None
    if not np.isfinite(table).all():
        raise BenchmarkFileError(f"{path}: contains NaN or infinite values")
    return header[first:], table


class Forecast(Task):
    """One long-horizon data set; `name` and the file it reads differ per data set."""

    splits = ("test",)
    default_split = "test"
    max_new_tokens = HORIZON * 8  # "-1.234, " is up to ~7 tokens per value
    headline = "mse"
    headline_label = "MSE (standardised)"
    paper_note = "the published numbers are zero-shot MSE with lookback 720, horizon 96"

    def __init__(self, name: str, title: str, files: Sequence[str]) -> None:
        self.name, self.title, self.files = name, title, tuple(files)
        self.layout = f"""{name}/                       (or the CSV file itself)
  {files[0]}                 (header row: date, then one column per channel)"""

    def paper_results(self, split: str) -> list[PaperResult]:
        ours, timesfm = SERIES[self.name]
        return [PaperResult("ModRWKV (paper, 100% GIFT-Eval)", ours), PaperResult("TimesFM (paper)", timesfm)]

    def load(self, data: Path, split: str) -> list[EvalSample]:
        path = data if data.is_file() else expect_file(expect_dir(data, f"the {self.title} CSV", self.layout),
                                                       self.files, f"the {self.title} data", self.layout)
        columns, table = read_table(path)
        try:
            borders = long_horizon_split(self.name, len(table), LOOKBACK)
        except ValueError as exc:
            raise BenchmarkFileError(f"{path}: {exc}") from None
        stats = fit_standard(table[slice(*borders["train"])])
        values = apply_standard(table, stats.mean, stats.std)
        start, end = borders["test"]
        inputs, targets = forecast_windows(values, start, end, LOOKBACK, HORIZON)
        prompt = f"{MARKERS['series']}\n{DEFAULT_PROMPT.format(horizon=HORIZON)}"
        return [
            EvalSample(f"{column}/{start + i}", prompt,
                       {"channel": column, "start": start + i, "target": targets[i, :, c]},
                       series=[inputs[i, :, c]])
            for i in range(len(inputs)) for c, column in enumerate(columns)
        ]

    def score(self, record: dict[str, Any]) -> dict[str, Any]:
        values, parsed = forecast_values(record["prediction"], HORIZON)
        target = record["reference"]["target"]
        return {"mse": mse(values, target), "mae": mae(values, target), "parsed": parsed}

    def summarize(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        forecasts = [forecast_values(r["prediction"], HORIZON) for r in records]
        predicted = np.stack([values for values, _ in forecasts])
        target = np.array([r["reference"]["target"] for r in records], dtype=np.float64)
        return {"mse": mse(predicted, target), "mae": mae(predicted, target), "windows": len(records),
                "unparsed": sum(not parsed for _, parsed in forecasts)}


SERIES_TASKS = (
    Forecast("etth1", "ETTh1", ["ETTh1.csv"]),
    Forecast("etth2", "ETTh2", ["ETTh2.csv"]),
    Forecast("ettm1", "ETTm1", ["ETTm1.csv"]),
    Forecast("ettm2", "ETTm2", ["ETTm2.csv"]),
    Forecast("ecl", "ECL", ["electricity.csv", "ECL.csv"]),
    Forecast("weather", "Weather", ["weather.csv"]),
    Forecast("traffic", "Traffic", ["traffic.csv"]),
)
