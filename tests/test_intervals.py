"""Prediction intervals from backtest residuals (`modrwkv.inference.intervals`) and their scores
(`metrics.quantile_scores`): hand-computed scores, the residual quantiles against numpy on residuals computed here
window by window, no peeking at what is forecast, coverage near nominal on Gaussian random walks, and the same
function behind `modrwkv forecast --quantiles` and `modrwkv eval --task custom-series --quantiles`."""

from __future__ import annotations

import csv
import io
import json
import logging

import numpy as np
import pytest

from modrwkv.evaluation import get_task
from modrwkv.evaluation.metrics import quantile_scores
from modrwkv.evaluation.runner import ModelSpec, run_eval
from modrwkv.evaluation.tasks.base import BenchmarkFileError
from modrwkv.inference.intervals import calibrate, min_windows, parse_levels

EPS = 1e-5  # the instance normalisation's variance floor (docs/forecasting.md: z = (x - mean) / sqrt(var + 1e-5))


def lookback_mean(windows: np.ndarray, horizon: int = 3) -> np.ndarray:
    return np.repeat(np.nanmean(windows, axis=1, keepdims=True), horizon, axis=1)


def offsets(residuals: np.ndarray, levels) -> np.ndarray:
    """Each level's offset from the point forecast: -/+ numpy's weibull |1 - 2q| quantile of each step's absolute
    residuals (the central interval of that coverage), 0 at 0.5."""
    return np.array([np.sign(q - 0.5) * np.quantile(np.abs(residuals), abs(1 - 2 * q), axis=0, method="weibull")
                     for q in levels])


def expected_quantiles(values: np.ndarray, origin: int, lookback: int, horizon: int, levels, rule,
                       limit: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """The residuals (truth - forecast) / the look-back's sqrt(var + eps) of the last `limit` whole windows whose
    targets end by `origin`, window by window, and their `offsets`."""
    residuals = []
    for start in range(origin - lookback - horizon, -1, -1)[:limit]:
        past = values[start:start + lookback]
        future = values[start + lookback:start + lookback + horizon]
        forecast = rule(past[None])[0]
        residuals.append((future - forecast) / np.sqrt(past.var() + EPS))
    residuals = np.array(residuals[::-1])
    return residuals, offsets(residuals, levels)


def test_quantile_scores_hand_computed() -> None:
    """Targets 1 and 2; q0.1 forecasts 0.5 and 2.5, q0.9 1.5 and 3. Quantile losses 2 |(y - Q)(1[y <= Q] - q)|:
    q0.1: 2 * 0.5 * 0.1 = 0.1 (y above) and 2 * 0.5 * 0.9 = 0.9 (below), over sum |y| = 3: 1/3; q0.9: 2 * 0.5 * 0.1
    = 0.1 and 2 * 1 * 0.1 = 0.2, 0.3 / 3 = 0.1; mean 0.21667. Coverage (y <= Q): q0.1 1 of 2, q0.9 2 of 2; the 80%
    interval [0.5, 1.5] holds 1, [2.5, 3] does not hold 2: 0.5."""
    scores = quantile_scores([0.1, 0.9], [[0.5, 2.5], [1.5, 3.0]], [1.0, 2.0])
    assert scores["wql_by_level"] == pytest.approx({"q0.1": 1 / 3, "q0.9": 0.1})
    assert scores["wql"] == pytest.approx((1 / 3 + 0.1) / 2)
    assert scores["coverage"] == {"q0.1": 0.5, "q0.9": 1.0}
    assert scores["interval_coverage"] == {"80%": 0.5}
    # a median alone is half the absolute error over sum |y| (no interval); negative targets weigh by |y|
    median = quantile_scores([0.5], [[0.0, -1.0]], [-2.0, -1.0])
    assert median["wql"] == pytest.approx(2 * 0.5 * 2 / 3) and median["interval_coverage"] == {}
    assert quantile_scores([0.025, 0.975], [[-1, -1], [1, 1]], [0.0, 3.0])["interval_coverage"] == {"95%": 0.5}


def test_levels_are_refused_with_the_reason() -> None:
    assert parse_levels("0.9, 0.1,0.5") == (0.1, 0.5, 0.9)
    for text, reason in (("0.1,x", "'x' is not a number"), ("0.1,1.5", "1.5: a quantile level must lie from 0.01"),
                         ("80", "a percentage?"), ("0", "must lie from 0.01 to 0.99"), ("0.005", "from 0.01"),
                         ("nan", "must lie"), ("0.1,0.1", "given twice")):
        with pytest.raises(ValueError, match=reason.replace("?", r"\?")):
            parse_levels(text)
    # c (n + 1) within 1 ... n for each central interval's coverage c = |1 - 2q|: 0.8 needs 4, 0.95 19, 0.02 49
    assert min_windows([0.1, 0.5, 0.9]) == 4 and min_windows([0.025, 0.975]) == 19 and min_windows([0.49]) == 49


def test_residual_quantiles_are_numpys_of_the_residuals_before_the_origin(caplog) -> None:
    """Series of other scales and lengths, a look-back-mean forecaster: a series' offsets are numpy's quantiles of
    its own absolute residuals on the last 100 windows ending by its origin; a series with fewer takes those of all
    series' residuals pooled, said in a warning; a level's forecast is the point forecast plus its offset times the
    forecast look-back's scale (0.5: the point forecast). All series together must hold the windows the levels
    need (0.05 and 0.95: 9)."""
    rng = np.random.default_rng(3)
    lookback, horizon, levels = 6, 3, (0.1, 0.5, 0.9)
    series = {"long": 50 + np.cumsum(rng.standard_normal(160)), "small": 1e-2 * rng.standard_normal(40),
              "short": 7 + rng.standard_normal(lookback + horizon + 4)}
    origins = {"long": 150, "small": 37, "short": lookback + horizon + 4}
    with caplog.at_level(logging.WARNING):
        calibration = calibrate(series, origins, lookback, horizon, levels, lookback_mean, batch_size=7)
    everything = []
    for label in series:
        residuals, expected = expected_quantiles(series[label], origins[label], lookback, horizon, levels,
                                                 lookback_mean)
        everything.append(residuals)
        assert calibration.own[label] == len(residuals)
    assert calibration.own == {"long": 100, "small": 29, "short": 5}
    np.testing.assert_allclose(calibration.quantiles["long"], expected_quantiles(
        series["long"], origins["long"], lookback, horizon, levels, lookback_mean)[1], rtol=1e-9)
    pooled = offsets(np.concatenate(everything), levels)
    for label in ("small", "short"):
        np.testing.assert_allclose(calibration.quantiles[label], pooled, rtol=1e-9)
    assert calibration.pooled == ("small", "short")
    assert "2 of 3 series hold fewer than 100 past windows" in caplog.text and "'small', 'short'" in caplog.text
    look = series["long"][-lookback:]
    point = np.full(horizon, look.mean())
    found = calibration.interval("long", point, look)
    np.testing.assert_allclose(found, point + calibration.quantiles["long"] * np.sqrt(look.var() + EPS), rtol=1e-12)
    assert (found[1] == point).all() and (found[0] < point).all() and (found[2] > point).all()
    with pytest.raises(ValueError, match="need at least 9 past windows .* the 1 series hold 5 in all"):
        calibrate({"short": series["short"]}, {"short": origins["short"]}, lookback, horizon, (0.05, 0.95),
                  lookback_mean)


def test_what_is_forecast_does_not_change_the_intervals() -> None:
    """No peeking: the values from the origin on (the target of the forecast, and anything after) are never read."""
    rng = np.random.default_rng(4)
    values = np.cumsum(rng.standard_normal(80))
    origin = 60
    first = calibrate({"s": values}, {"s": origin}, 8, 3, (0.1, 0.9), lookback_mean)
    changed = values.copy()
    changed[origin:] = 1e6 * rng.standard_normal(len(values) - origin)
    again = calibrate({"s": changed}, {"s": origin}, 8, 3, (0.1, 0.9), lookback_mean)
    np.testing.assert_array_equal(first.quantiles["s"], again.quantiles["s"])
    changed[origin - 20:origin] += 10 * rng.standard_normal(20)  # the steps before it are history, and they count
    assert not np.array_equal(calibrate({"s": changed}, {"s": origin}, 8, 3, (0.1, 0.9), lookback_mean).quantiles["s"],
                              first.quantiles["s"])


def test_coverage_is_nominal_on_gaussian_random_walks() -> None:
    """800 random walks (steps of sd 5, levels far from 0), forecast by repeat-last, their last-but-horizon step the
    origin: the 80% interval holds the truth 80% of the time at each step, though a step-5 error is sqrt(5) times a
    step-1 error (one set of quantiles for all steps would cover ~97% at step 1 and ~68% at step 5); the median
    splits the truth in halves."""
    rng = np.random.default_rng(0)
    lookback, horizon, count = 20, 5, 800
    steps = lookback + horizon + 99 + horizon  # 100 past windows, then the one scored
    walks = 100 * rng.standard_normal((count, 1)) + np.cumsum(5 * rng.standard_normal((count, steps)), axis=1)
    origin = steps - horizon
    calibration = calibrate({str(i): w for i, w in enumerate(walks)}, {str(i): origin for i in range(count)},
                            lookback, horizon, (0.1, 0.5, 0.9), lambda w: np.repeat(w[:, -1:], horizon, axis=1),
                            batch_size=10**6)
    assert set(calibration.own.values()) == {100} and not calibration.pooled
    found = np.stack([calibration.interval(str(i), np.repeat(w[origin - 1], horizon), w[origin - lookback:origin])
                      for i, w in enumerate(walks)])  # [series, levels, steps]
    truth = walks[:, origin:]
    inside = (found[:, 0] <= truth) & (truth <= found[:, 2])
    assert inside.mean() == pytest.approx(0.8, abs=0.025)
    assert np.abs(inside.mean(axis=0) - 0.8).max() < 0.05, inside.mean(axis=0)
    assert (truth <= found[:, 1]).mean() == pytest.approx(0.5, abs=0.04)


class MeanPipeline:
    """Forecasts each window's mean (gaps left out), as `ModRWKVPipeline.forecast_batch` returns a forecast."""

    def forecast_batch(self, windows, horizon, prompt=None, max_new_tokens=None, samples=1, force_model=False):
        from modrwkv.inference import SeriesForecast

        return [SeriesForecast(np.full(horizon, np.nanmean(np.asarray(w, dtype=np.float64))), "0", True, "next?")
                for w in windows]


def test_eval_scores_intervals_from_the_training_part_beside_repeat_lasts(tmp_path) -> None:
    """`custom-series --holdout last --quantiles`: each series' test window's quantiles are the model's forecast plus
    numpy's quantiles of its residuals on the windows before the test target (in the training rows' scaler's units),
    scored in the file's units as `quantile_scores` scores them; repeat-last's intervals are calibrated the same way;
    changing the test targets in the file changes no interval."""
    rng = np.random.default_rng(5)
    lookback, horizon, levels = 6, 3, (0.1, 0.5, 0.9)
    columns = {"a": 20 + np.cumsum(rng.standard_normal(130)), "b": 3 * rng.standard_normal(130) - 40}
    path = tmp_path / "two.csv"

    def write(table: dict[str, np.ndarray]) -> None:
        path.write_text("a,b\n" + "".join(f"{float(x)!r},{float(y)!r}\n" for x, y in zip(*table.values())))

    write(columns)
    weights = tmp_path / "model.pth"
    weights.write_bytes(b"not loaded")
    task = get_task("custom-series").configure(lookback=lookback, horizon=horizon, holdout="last", quantiles=levels)
    result = run_eval(task, path, tmp_path / "out", model=ModelSpec(str(weights)), load_pipeline=MeanPipeline)
    records = {r["reference"]["channel"]: r for r in map(json.loads, (tmp_path / "out/predictions.jsonl").open())}
    file_quantiles, truths = [], []
    naive_quantiles = []
    for name, values in columns.items():
        train = values[:-2 * horizon]  # the training rows (holdout last): the scaler's
        scaled = (values - train.mean()) / train.std()
        origin = len(values) - horizon
        record = records[next(label for label in records if label.endswith(name) or label == name)]
        look = scaled[origin - lookback:origin]
        for rule, into, point in ((lookback_mean, file_quantiles, np.full(horizon, look.mean())),
                                  (lambda w: np.repeat(w[:, -1:], horizon, axis=1), naive_quantiles,
                                   np.full(horizon, look[-1]))):
            _, expected = expected_quantiles(scaled, origin, lookback, horizon, levels, rule)
            interval = point + expected * np.sqrt(look.var() + EPS)
            into.append(interval * train.std() + train.mean())
        np.testing.assert_allclose([record["quantiles"][f"q{q:g}"] for q in levels],
                                   (file_quantiles[-1] - train.mean()) / train.std(), rtol=1e-5, atol=1e-6)
        truths.append(values[origin:])
    metrics = result.summary["metrics"]
    model = quantile_scores(levels, np.moveaxis(np.array(file_quantiles), 1, 0), np.array(truths))
    naive = quantile_scores(levels, np.moveaxis(np.array(naive_quantiles), 1, 0), np.array(truths))
    assert metrics["wql"] == pytest.approx(model["wql"], rel=1e-5)
    assert metrics["interval_coverage"] == model["interval_coverage"]
    assert metrics["quantiles"]["coverage"] == model["coverage"] and metrics["quantiles"]["pooled_windows"] == 0
    assert metrics["baselines"]["repeat-last"]["wql"] == pytest.approx(naive["wql"], rel=1e-5)
    assert metrics["baselines"]["repeat-last"]["interval_coverage"] == naive["interval_coverage"]
    assert "mase" in metrics and "smape" in metrics  # beside the point forecasts' scores, which are unchanged
    # the test targets changed in the file: the same intervals
    for values in columns.values():
        values[-horizon:] += 1e3
    write(columns)
    run_eval(task, path, tmp_path / "again", model=ModelSpec(str(weights)), load_pipeline=MeanPipeline)
    again = {r["reference"]["channel"]: r for r in map(json.loads, (tmp_path / "again/predictions.jsonl").open())}
    assert {k: r["quantiles"] for k, r in again.items()} == {k: r["quantiles"] for k, r in records.items()}
    # a file whose histories hold too few windows for the levels is refused when it is read, before the model loads
    write({name: values[:20] for name, values in columns.items()})  # 9 windows a series before its test target
    with pytest.raises(BenchmarkFileError, match=r"levels 0\.02, 0\.98 need at least 24 windows .* hold 18"):
        get_task("custom-series").configure(lookback=lookback, horizon=horizon, holdout="last",
                                            quantiles=[0.98, 0.02]).load(path, "test")


def read_table(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_forecast_writes_quantile_columns_and_refuses_bad_levels(tmp_path, capsys, caplog) -> None:
    """`modrwkv forecast --quantiles 0.1,0.9` with a baseline-only seasonal model (season 4: its forecast is each
    series' last season repeated): columns q0.1 and q0.9 after forecast, each the forecast plus numpy's quantiles of
    the seasonal-naive residuals on the series' last 100 windows times the last look-back's scale; a column with
    few observed rows takes the pooled residuals, said; a level outside 0.01 ... 0.99 is refused in one line."""
    from test_forecast_cli import LOOKBACK, SEASON, forecast, save_forecaster, write_csv

    model = save_forecaster(tmp_path / "model", baseline_only=True, season=SEASON)
    rng = np.random.default_rng(6)
    load = (100 + 10 * rng.standard_normal(120) + 5 * np.arange(120) % 4).round(3)
    short = rng.standard_normal(10).round(3)  # its last 10 rows: 7 windows whose look-back holds a value (of 8 + 3)
    data = write_csv(tmp_path / "shop.csv", {"load": load.tolist(), "short": [None] * 110 + short.tolist()})
    status, out, err = forecast(capsys, model, data, "--horizon", "3", "--quantiles", "0.9,0.1")
    assert status == 0, err
    rows = read_table(out)
    assert list(rows[0]) == ["series", "step", "forecast", "q0.1", "q0.9"]

    def seasonal(windows: np.ndarray) -> np.ndarray:
        return np.stack([[w[len(w) - SEASON + h % SEASON] for h in range(3)] for w in windows])

    residuals, expected = expected_quantiles(load, len(load), LOOKBACK, 3, (0.1, 0.9), seasonal)
    look = load[-LOOKBACK:]
    point = seasonal(look[None])[0]
    found = np.array([[float(r["q0.1"]), float(r["q0.9"])] for r in rows if r["series"] == "load"]).T
    np.testing.assert_allclose(found, point + expected * np.sqrt(look.var() + EPS), rtol=1e-5)
    assert "1 of 2 series hold fewer than 100 past windows" in caplog.text and "'short'" in caplog.text
    for bad, reason in (("0.1,1.2", "1.2: a quantile level must lie from 0.01 to 0.99"), ("95", "a percentage?")):
        with pytest.raises(SystemExit) as stopped:
            forecast(capsys, model, data, "--quantiles", bad)
        assert stopped.value.code == 2 and reason in capsys.readouterr().err.strip().splitlines()[-1]
