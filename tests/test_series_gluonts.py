"""GluonTS' data sets as `gluonts.dataset.repository` saves them (a folder of metadata.json, with the data set's `freq`
and `prediction_length`, beside train/data.json and test/data.json, one JSON object per line: `start`, `target`,
`item_id`; test's series are train's plus their last `prediction_length` steps): init and eval take the horizon and
the fixed-horizon protocol they are published for, and MASE scales as GluonTS' evaluation scales it
(`get_seasonality`, `calculate_seasonal_error`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from modrwkv.cli import main
from modrwkv.data.readers.series import default_holdout
from modrwkv.data.readers.seriesrows import stated_forecast
from modrwkv.evaluation.metrics.series import gluonts_seasonality, mase_period
from modrwkv.evaluation.tasks import get_task

HORIZON = 36  # (not the default 24: a test passing on the default would prove nothing)


def write_gluonts(folder: Path, series: dict[str, np.ndarray], freq: str, horizon: int, start: str) -> Path:
    """A GluonTS data set folder as `TrainDatasets.save` writes it; returns its test/data.json."""
    (folder / "train").mkdir(parents=True)
    (folder / "test").mkdir()
    (folder / "metadata.json").write_text(json.dumps({"freq": freq, "prediction_length": horizon,
                                                      "feat_static_cat": [{"name": "feat_static_cat_0",
                                                                           "cardinality": str(len(series))}]}))
    for split, cut in (("train", horizon), ("test", 0)):
        with (folder / split / "data.json").open("w") as handle:
            for name, values in series.items():
                kept = values[:len(values) - cut]
                handle.write(json.dumps({"start": start, "target": [None if np.isnan(v) else float(v) for v in kept],
                                         "feat_static_cat": [0], "item_id": name}) + "\n")
    return folder / "test" / "data.json"


@pytest.fixture
def hourly(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    steps = np.arange(24 * 20)
    daily = np.sin(2 * np.pi * steps / 24)
    series = {f"H{i}": 50 + (10 + i) * daily + rng.normal(scale=1 + i, size=len(steps)).cumsum() for i in range(3)}
    return write_gluonts(tmp_path / "m4_hourly", series, "H", HORIZON, "1750-01-01 00:00:00"), series


def test_gluonts_seasonality_is_gluonts_table():
    """gluonts.time_feature.get_seasonality's values (its DEFAULT_SEASONALITIES divided by the multiple where it
    divides), for pandas' older and newer aliases."""
    expected = {"H": 24, "h": 24, "2H": 12, "7H": 1, "T": 1440, "min": 1440, "5min": 288, "15T": 96, "D": 1, "W": 1,
                "W-SUN": 1, "M": 12, "ME": 12, "MS": 12, "Q-DEC": 4, "QE": 4, "QS": 4, "A-DEC": 1, "YE": 1, "B": 5,
                "S": 1, "ms": 1}
    assert {alias: gluonts_seasonality(alias) for alias in expected} == expected


def test_a_gluonts_data_set_states_its_horizon_and_protocol(hourly, tmp_path):
    test_file, _ = hourly
    train_file = test_file.parent.parent / "train" / "data.json"
    for path in (test_file, train_file):
        stated = stated_forecast(path)
        assert (stated.horizon, stated.frequency, stated.convention) == (HORIZON, "H", "gluonts")
        assert default_holdout([path]) == "last"
        assert mase_period(path, 0) == 24  # GluonTS' hourly seasonality, whatever the model's season
    plain = tmp_path / "plain.jsonl"
    plain.write_text(test_file.read_text())
    assert stated_forecast(plain) is None and default_holdout([plain]) == "ratio" and mase_period(plain, 7) == 7
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "metadata.json").write_text('{"freq": "D", "prediction_length": "7"}')
    odd = tmp_path / "odd" / "data.json"
    odd.write_text(test_file.read_text())
    assert (stated_forecast(odd).horizon, default_holdout([odd])) == (None, "ratio")


def test_eval_scores_a_gluonts_test_file_as_gluonts_evaluates_it(hourly):
    """The task on test/data.json, with the stated protocol: each series' last 24 hours its test window, and the
    repeat-last forecast's MASE the mean over series of MAE over GluonTS' seasonal error (the mean absolute lag-24
    change of the series before its forecast), computed here by hand from the file's values."""
    test_file, series = hourly
    task = get_task("custom-series").configure(lookback=48, horizon=HORIZON, holdout=default_holdout([test_file]))
    samples = task.load(test_file, "test")
    assert len(samples) == len(series)
    expected = []
    for values in series.values():
        past, future = values[:-HORIZON], values[-HORIZON:]
        seasonal_error = np.mean(np.abs(past[24:] - past[:-24]))
        expected.append(np.mean(np.abs(past[-1] - future)) / seasonal_error)
    assert task.computed_baselines(samples)["repeat-last"]["mase"] == pytest.approx(np.mean(expected), rel=1e-5)


def test_init_and_eval_take_the_stated_horizon(hourly, tmp_path, capsys):
    test_file, _ = hourly
    config = tmp_path / "hourly.yaml"
    assert main(["init", "--data", str(test_file), "--output", str(config), "--yes"]) == 0
    written = config.read_text()
    assert f"horizon: {HORIZON}" in written and "holdout: last" in written
    assert (f"data.options.horizon {HORIZON}: the prediction_length of data.json's GluonTS metadata.json, the data "
            "set's forecast horizon of its H series (--horizon chooses another)") in written


def test_init_on_the_train_split_says_to_give_the_test_split(hourly, tmp_path, capsys):
    """train/data.json (each series but its last prediction_length): holdout last would leave two more horizons of it
    untrained and score steps GluonTS trains on, so init says to give test/data.json; on test/data.json it does not."""
    test_file, _ = hourly
    train_file = test_file.parent.parent / "train" / "data.json"
    for given, said in ((train_file, True), (test_file, False)):
        assert main(["init", "--data", str(given), "--output", str(tmp_path / "x.yaml"), "--yes", "--force"]) == 0
        note = (f"{train_file} is the train split of a GluonTS data set, whose test split ends a prediction_length "
                f"later: holdout last leaves its last two horizons untrained and scores the one before GluonTS' test "
                f"window; give {test_file} (each series whole) to init and eval (docs/forecasting.md)")
        assert (note in capsys.readouterr().out) == said


def test_the_data_set_folder_itself_is_refused_naming_its_test_file(hourly, tmp_path, capsys):
    test_file, _ = hourly
    folder = test_file.parent.parent
    assert main(["init", "--data", str(folder), "--output", str(tmp_path / "x.yaml"), "--yes"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error
    assert (f"{folder}: a GluonTS data set (metadata.json beside test/data.json, train/data.json): give its data "
            f"file, {test_file} (test's series are whole") in error


def test_eval_takes_the_stated_horizon_and_protocol_without_options(hourly, tmp_path, monkeypatch):
    """`modrwkv eval --task custom` on a GluonTS test file: horizon = prediction_length and holdout last, without
    --horizon or --holdout (the run itself is stubbed: what it is asked is the point)."""
    test_file, _ = hourly
    asked = []

    def capture(task, data, output, *, split, **_):
        asked.append((task.horizon, task.holdout, mase_period(Path(data), 0)))
        raise SystemExit(0)

    monkeypatch.setattr("modrwkv.evaluation.run_eval", capture)
    (tmp_path / "model").mkdir()
    with pytest.raises(SystemExit):
        main(["eval", "--task", "custom", "--model", str(tmp_path / "model"), "--data", str(test_file),
              "--lookback", "48"])
    assert asked == [(HORIZON, "last", 24)]
