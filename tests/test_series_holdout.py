"""The fixed-horizon protocol (`holdout="last"`): each series' last horizon its one test window, the horizon before
it its val window, as the Monash archive, M4 and GluonTS hold them out; MASE and sMAPE as the archive's
`utils/error_calculator.R` computes them, checked against values worked out by hand and against plain loops over
the file's own numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from modrwkv.cli import main
from modrwkv.data.readers import TimeSeriesReader
from modrwkv.evaluation import ModelSpec, run_eval
from modrwkv.evaluation.metrics import last_horizon_split, mase, mase_scale, mase_scales, smape
from modrwkv.evaluation.tasks import get_task
from modrwkv.inference import SeriesForecast
from modrwkv.training.config import DataConfig, config_from_dict
from modrwkv.training.data import build_reader


def test_mase_scale_is_the_mean_seasonal_change_of_the_history():
    history = [1.0, 3.0, 2.0, 6.0, 4.0]
    # period 2: |2 - 1|, |6 - 3|, |4 - 2| -> 2; period 1: 2, 1, 4, 2 -> 2.25
    assert mase_scale(history, 2) == 2.0 and mase_scale(history, 1) == 2.25
    # a period the history holds no pair of falls back to one step (GluonTS' seasonal_error does the same)
    assert mase_scale(history, 5) == 2.25 and mase_scale(history, 12) == 2.25
    # gaps are dropped before differencing, as the archive's calculate_mase drops them: [1, 3, 6, 4] -> 2, 3, 2
    assert mase_scale([1.0, 3.0, np.nan, 6.0, 4.0], 1) == pytest.approx(7 / 3)
    assert np.isnan(mase_scale([5.0], 1)) and mase_scale([2.0, 2.0, 2.0], 1) == 0.0
    # |2 - 4| + |5 - 4| over 2 steps, over the scale 2
    assert mase([2.0, 5.0], [4.0, 4.0], 2.0) == 0.75 and np.isnan(mase([1.0], [2.0], 0.0))


def test_mase_scales_of_every_window_equal_the_scale_of_each_history():
    rng = np.random.default_rng(3)
    for _ in range(100):
        values = rng.normal(size=int(rng.integers(1, 30)))
        values[rng.random(len(values)) < 0.2] = np.nan
        period = int(rng.integers(0, 6))
        ends = np.arange(len(values) + 1)
        expected = [mase_scale(values[:end], period) for end in ends]
        np.testing.assert_allclose(mase_scales(values, ends, period), expected, rtol=1e-12, equal_nan=True)


def test_smape_is_in_percent_and_leaves_out_steps_where_both_are_zero():
    # 200 * 1 / 3, 200 * 2 / 2, and a step where forecast and truth are both 0 left out
    assert smape([1.0, 2.0, 0.0], [2.0, 0.0, 0.0]) == pytest.approx((200 / 3 + 200) / 2)
    assert np.isnan(smape([0.0], [0.0]))


def test_last_horizon_split_holds_out_the_last_two_horizons():
    assert last_horizon_split(20, 5, 3) == {"train": (0, 14), "val": (9, 17), "test": (12, 20)}
    # fewer steps than a look-back before the test target: its start below 0 (a look-back begun with gaps)
    assert last_horizon_split(10, 8, 3)["test"] == (-1, 10)
    with pytest.raises(ValueError, match="leave no training step"):
        last_horizon_split(6, 2, 3)


def write_short_series(path: Path) -> dict[str, np.ndarray]:
    """A CSV of two series as columns: a (30 steps) and b (30 steps, its first 12 empty)."""
    t = np.arange(30, dtype=np.float64)
    series = {"a": 50 + 3 * np.sin(t) + t, "b": 20 + np.cos(t / 2) * 4}
    series["b"][:12] = np.nan
    lines = ["a,b"] + [",".join("" if np.isnan(v) else repr(float(v)) for v in row)
                       for row in zip(series["a"], series["b"], strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return series


def test_the_reader_cuts_the_last_horizon_and_scales_by_the_rows_before_the_held_out_ones(tmp_path):
    series = write_short_series(tmp_path / "two.csv")
    kwargs = {"lookback": 8, "horizon": 4, "holdout": "last", "standardize": True}
    test = list(TimeSeriesReader(tmp_path / "two.csv", split="test", **kwargs))
    val = list(TimeSeriesReader(tmp_path / "two.csv", split="val", **kwargs))
    train = list(TimeSeriesReader(tmp_path / "two.csv", split="train", **kwargs))
    a = series["a"]
    mean, std = a[:22].mean(), a[:22].std()  # the training rows: all but the last two horizons
    assert [(s.meta["series"], s.meta["start"]) for s in test] == [("a", 18), ("b", 18)]
    np.testing.assert_allclose(test[0].series[0], (a[18:26] - mean) / std, rtol=1e-5)
    np.testing.assert_allclose(test[0].meta["target"], (a[26:30] - mean) / std, rtol=1e-5)
    assert [s.meta["start"] for s in val] == [14, 14]
    np.testing.assert_allclose(val[0].meta["target"], (a[22:26] - mean) / std, rtol=1e-5)
    # windows of 8 + 4 in the 22 training rows: a's 11; b's whose targets start at its first value (step 12) or
    # later and whose look-backs hold one: starting at 5 to 10
    assert [(s.meta["series"], s.meta["start"]) for s in train] == [("a", i) for i in range(11)] + [
        ("b", i) for i in range(5, 11)]


def test_a_series_shorter_than_its_look_back_gets_one_begun_with_gaps(tmp_path):
    lines = ["@attribute series_name string", "@frequency yearly", "@horizon 3", "@data",
             "S1:" + ",".join(str(v) for v in [5, 7, 6, 8, 9, 11, 10, 12]),
             "S2:" + ",".join(str(v) for v in range(1, 21))]
    path = tmp_path / "yearly.tsf"
    path.write_text("\n".join(lines) + "\n")
    samples = list(TimeSeriesReader(path, lookback=6, horizon=3, split="test", holdout="last", standardize=True))
    short = samples[0]
    # S1's 8 steps: test target its last 3, the 5 before it a look-back of 6 whose first step is a gap
    assert short.meta["start"] == -1
    window = short.series[0]
    assert np.isnan(window[0]) and not np.isnan(window[1:]).any()
    train = np.array([5, 7], dtype=np.float64)  # 8 - 2 * 3 training steps scale it
    np.testing.assert_allclose(window[1:] * train.std() + train.mean(), [5, 7, 6, 8, 9], rtol=1e-5)
    np.testing.assert_allclose(short.meta["target"] * train.std() + train.mean(), [11, 10, 12], rtol=1e-5)
    assert samples[1].meta["start"] == 20 - 3 - 6


class RepeatLast:
    """Forecasts the last observed value of each window (repeat-last), as `ModRWKVPipeline.forecast_batch`."""

    def forecast_batch(self, windows, horizon, prompt=None, max_new_tokens=None, samples=1, force_model=False):
        values = [w[~np.isnan(w)][-1] for w in windows]
        return [SeriesForecast(np.full(horizon, float(v)), "0", True, "<series>") for v in values]


def write_quarterly_tsf(path: Path) -> dict[str, np.ndarray]:
    """Five quarterly series of 14 to 34 steps (a level, a seasonal swing, a random walk), as the archive writes a
    .tsf; the values as written."""
    rng = np.random.default_rng(5)
    lines = ["# Quarterly test series", "@relation quarterly", "@attribute series_name string",
             "@attribute start_timestamp date", "@frequency quarterly", "@horizon 4", "@missing false",
             "@equallength false", "@data"]
    written = {}
    for k in range(5):
        n = 14 + 5 * k
        values = np.round(100 + 10 * k + np.cumsum(rng.normal(size=n)) + 5 * np.sin(np.arange(n) * np.pi / 2), 4)
        written[f"Q{k}"] = values
        lines.append(f"Q{k}:2001-01-01 00-00-00:" + ",".join(f"{v:.4f}" for v in values))
    path.write_text("\n".join(lines) + "\n")
    return written


@pytest.mark.parametrize("split", ["test", "val"])
def test_custom_series_scores_the_archive_way_with_holdout_last(tmp_path, split):
    """One window per series; the mean MASE over series is the headline, of period 4 (the archive's for quarterly
    data); each window's MASE and sMAPE are computed here apart, from the values written, with the training part as
    the archive takes it (every step before the forecast)."""
    path = tmp_path / "quarterly.tsf"
    written = write_quarterly_tsf(path)
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"w")
    task = get_task("custom-series").configure(lookback=12, horizon=4, holdout="last")
    summary = run_eval(task, path, tmp_path / "out", model=ModelSpec(str(weights)), load_pipeline=RepeatLast,
                       split=split).summary
    metrics = summary["metrics"]
    mases, smapes, seasonal = [], [], []
    for values in written.values():
        end = len(values) - (4 if split == "test" else 8)
        history, truth = values[:end], values[end:end + 4]
        scale = np.abs(history[4:] - history[:-4]).mean()
        error = np.abs(history[-1] - truth)
        mases.append(error.mean() / scale)
        smapes.append(np.mean(200 * error / (np.abs(history[-1]) + np.abs(truth))))
        seasonal.append(np.abs(history[-4:] - truth).mean() / scale)  # the archive's snaive
    assert summary["headline"] == {"metric": "mase", "label": "MASE (mean over series)",
                                   "value": pytest.approx(np.mean(mases), rel=1e-5)}
    assert metrics["smape"] == pytest.approx(np.mean(smapes), rel=1e-5)
    assert (metrics["windows"], metrics["mase_period"], metrics["mase_undefined"]) == (5, 4, 0)
    # the shortest series (14 steps) holds 6 or 2 steps before its target, fewer than the look-back of 12
    assert metrics["padded"] == (1 if split == "test" else 2)
    assert metrics["baselines"]["repeat-last"]["mase"] == pytest.approx(metrics["mase"], rel=1e-12)
    assert metrics["baselines"]["seasonal naive (period 4)"]["mase"] == pytest.approx(np.mean(seasonal), rel=1e-5)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "the fixed-horizon protocol (the Monash archive's, M4's)" in report
    assert "baselines on the same windows, MASE (mean over series): repeat-last" in report


def test_init_holds_out_the_last_horizon_of_a_csv_when_told(tmp_path, capsys):
    """`modrwkv init --holdout last` on a CSV: the config reads the steps before each series' last two horizons, the
    windows are fitted to what that leaves (30 steps cannot hold out two horizons of the default 24 and train before
    them: a tenth, 3; 30 - 6 = 24 training steps, 21 beside the horizon: a look-back of 10), and the eval command
    printed scores the same way."""
    series = write_short_series(tmp_path / "two.csv")
    config = tmp_path / "two.yaml"
    assert main(["init", "--data", str(tmp_path / "two.csv"), "--holdout", "last", "--yes", "--device", "cpu",
                 "--output", str(config)]) == 0
    out = capsys.readouterr().out
    assert "data.options.holdout last: each series' last 3 steps are its test window and the 3 before them" in out
    assert "--lookback 10 --horizon 3 --holdout last" in next(line for line in out.splitlines()
                                                              if line.startswith("evaluate:"))
    options = yaml.safe_load(config.read_text())["data"]["options"]
    assert (options["holdout"], options["horizon"], options["lookback"]) == ("last", 3, 10)
    training = list(build_reader(config_from_dict(yaml.safe_load(config.read_text())).data))
    # a's windows of 10 + 3 in its 24 training steps: 12; b's, whose first 12 steps are empty: those whose target
    # starts at step 12 or later and whose look-back holds one of its values, starting at 3 to 11
    assert [(s.meta["series"], s.meta["start"]) for s in training] == [("a", i) for i in range(12)] + [
        ("b", i) for i in range(3, 12)]
    np.testing.assert_allclose(training[0].series[0][:3], ((series["a"] - series["a"][:24].mean())
                                                           / series["a"][:24].std())[:3], rtol=1e-5)


def test_training_validates_holdout_last_on_the_horizon_before_the_test_one(tmp_path):
    """`val_metric: forecast_mse` with `holdout: last` scores each series' one val window (the horizon before its last),
    not the 70/10/20 split's val rows, which lie inside the rows training reads under `holdout: last`."""
    from modrwkv.training.validation import ForecastScorer, val_data_config

    series = write_short_series(tmp_path / "two.csv")
    data = DataConfig(format="series", train=[str(tmp_path / "two.csv")],
                      options={"lookback": 8, "horizon": 4, "split": "train", "holdout": "last", "standardize": True})
    scorer = ForecastScorer(val_data_config(data), None)
    # 30 steps: val's target rows 22-25, read from rows 14-21; training reads rows 0-21
    assert [(s.reference["channel"], s.reference["start"]) for s in scorer.samples] == [("a", 14), ("b", 14)]
    a = series["a"]
    mean, std = a[:22].mean(), a[:22].std()
    np.testing.assert_allclose(scorer.samples[0].reference["target"], (a[22:26] - mean) / std, rtol=1e-5)


def test_init_and_eval_refuse_a_look_back_or_horizon_below_one_as_forecast_does(tmp_path, capsys):
    """A negative horizon or a zero look-back is the flag's one-line error (init said 'lookback and horizon must be
    >= 1, got 1 and -2', naming a look-back it had derived from the bad horizon)."""
    write_short_series(tmp_path / "two.csv")
    data = str(tmp_path / "two.csv")
    for argv, flag, value in ((["init", "--data", data, "--yes", "--horizon", "-2"], "horizon", "-2"),
                              (["init", "--data", data, "--yes", "--lookback", "0"], "lookback", "0"),
                              (["eval", "--task", "custom", "--data", data, "--model", str(tmp_path),
                                "--horizon", "-2"], "horizon", "-2"),
                              (["eval", "--task", "custom", "--data", data, "--model", str(tmp_path),
                                "--lookback", "0"], "lookback", "0")):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"modrwkv {argv[0]}: error: argument --{flag}: must be at least 1, got {value} (see modrwkv "
                       f"{argv[0]} --help)")
