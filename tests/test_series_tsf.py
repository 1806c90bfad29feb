"""The Monash Time Series Forecasting Archive's .tsf files (forecastingdata.org, Zenodo), written here in the layout
the archive publishes (comment lines, @relation, @attribute lines of string, date and numeric attributes, @frequency,
@horizon, @missing, @equallength, @data, then `name:1996-03-18 00-00-00:3:v1,v2,...` lines with `?` gaps and
series of unequal lengths). Each line's values are those written, and its windows are those of the same series as
the rows of a GluonTS JSON Lines file (the independent expectation: a layout read already)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from modrwkv.cli import main
from modrwkv.data.readers import DataError, TimeSeriesReader
from modrwkv.data.readers.base import is_series_file
from modrwkv.data.readers.seriesrows import series_rows, tsf_header
from modrwkv.training.config import config_from_dict
from modrwkv.training.data import build_reader
from test_series_long_format import windows
from test_series_row_layouts import as_series_rows

HEADER = """# Dataset Information
# A test set in the layout of the archive's nn5_daily_dataset_with_missing_values.tsf.
#
# For more details, please refer to
# Godahewa, R., Bergmeir, C., Webb, G. I., Hyndman, R. J., & Montero-Manso, P. (2021).
@relation test
@attribute series_name string
@attribute start_timestamp date
@attribute store numeric
@frequency daily
@horizon 6
@missing true
@equallength false
@data
"""


def write_tsf(path: Path, lengths: dict[str, int], header: str = HEADER) -> dict[str, list[float | None]]:
    """A .tsf file of random walks of these lengths (every 7th value of the first series missing, `?`), a blank line
    between two series, CRLF line ends as Windows tools leave them; the values written (None: missing)."""
    rng = np.random.default_rng(7)
    series: dict[str, list[float | None]] = {}
    lines = []
    for k, (name, length) in enumerate(lengths.items()):
        values: list[float | None] = [float(v) for v in 100 + np.cumsum(rng.normal(0, 3, length))]
        if k == 0:
            values = [None if step % 7 == 3 else value for step, value in enumerate(values)]
        series[name] = values
        cells = ",".join("?" if value is None else repr(value) for value in values)
        lines.append(f"{name}:1996-03-{18 + k:02d} 00-00-00:{k + 1}:{cells}")
    path.write_bytes((header + lines[0] + "\n\n" + "\n".join(lines[1:]) + "\n").replace("\n", "\r\n").encode())
    return series


def test_each_line_is_a_series_of_the_values_written(tmp_path):
    path = tmp_path / "nn5_daily_dataset_with_missing_values.tsf"
    written = write_tsf(path, {"T1": 70, "T2": 45, "T3": 58})
    assert is_series_file(path)
    header = tsf_header(path)
    assert (header.attributes, header.frequency, header.horizon) == (
        [("series_name", "string"), ("start_timestamp", "date"), ("store", "numeric")], "daily", 6)
    rows = list(series_rows(path, None))
    data_line = HEADER.count("\n") + 1
    assert [row.name for row in rows] == [f"{data_line} (series_name 'T1')", f"{data_line + 2} (series_name 'T2')",
                                          f"{data_line + 3} (series_name 'T3')"]
    for row, values in zip(rows, written.values()):
        expected = np.array([np.nan if value is None else value for value in values])
        np.testing.assert_array_equal(row.values["target"], expected)  # (NaN where '?', at the same steps)
    reference = as_series_rows(tmp_path / "rows.jsonl", written)
    for options in ({}, {"split": "train", "standardize": True}, {"split": "test", "standardize": True}):
        got = windows(TimeSeriesReader(path, lookback=12, horizon=6, **options))
        # (compared as written out: a gap in a look-back is NaN, which equals no other NaN)
        assert got and repr(got) == repr(windows(TimeSeriesReader(reference, lookback=12, horizon=6, **options)))
    reader = TimeSeriesReader(path, lookback=12, horizon=6)
    samples = list(reader)
    # T1's first window whose target (steps s + 12 ... s + 17) holds no '?' (steps 3 mod 7) starts at 6
    assert samples[0].source == f"{path}:{data_line} (series_name 'T1') target[6]"
    assert samples[-1].meta["series"] == f"{data_line + 3} (series_name 'T3') target"
    # a '?' in a forecast target makes the window a bad record, as a null in a series row does: T1's 70 - 17 windows
    # but the 7 starting at 6 mod 7 (6, 13, ..., 48)
    assert reader.report.skipped["non_finite"] == 70 - 17 - 7
    with pytest.raises(DataError, match=r"columns \['store'\]: a .tsf file's series are the values of each line"):
        list(TimeSeriesReader(path, lookback=12, horizon=6, columns=["store"]))


@pytest.mark.parametrize(("text", "line", "problem"), [
    (HEADER + "T1:1996-03-18 00-00-00:1,2,3\n", 15, "2 attribute value(s) before the series, the header declares 3"),
    # a date written with colons, as the archive does not write it, splits into more attribute values
    (HEADER + "T1:1996-03-18 00:00:00:1:1,2,3\n", 15, "5 attribute value(s) before the series, the header declares 3"),
    (HEADER + "T1:1996-03-18 00-00-00:1:1.5,2,n/a,4\n", 15, "value 2 ('n/a') is not a number ('?' marks a missing"),
    (HEADER + "T1:1996-03-18 00-00-00:1:\n", 15, "no values after the attributes"),
    (HEADER.replace("store numeric", "store integer"), 9, "unknown attribute type 'integer' (types: numeric, string"),
    (HEADER.replace("@horizon 6", "@horizon six"), 11, "'@horizon six': the forecast horizon is a positive integer"),
    (HEADER.replace("@data\n", "T1:1996-03-18 00-00-00:1:1,2,3\n"), 14, "a line of data before the header's @data"),
])
def test_a_malformed_file_is_named_by_its_line(tmp_path, text, line, problem):
    path = tmp_path / "bad.tsf"
    path.write_text(text)
    with pytest.raises(DataError) as caught:
        list(TimeSeriesReader(path, lookback=2, horizon=1))
    assert str(caught.value).startswith(f"{path}:{line}") and problem in str(caught.value)


def test_a_file_without_data_and_init_and_eval_name_it_in_one_line(tmp_path, capsys):
    path = tmp_path / "bad.tsf"
    path.write_text(HEADER.replace("@data\n", ""))
    with pytest.raises(DataError, match=f"^{path}: no @data line: the file ends in its header"):
        list(TimeSeriesReader(path, lookback=2, horizon=1))
    zipped = tmp_path / "m4_hourly_dataset.tsf"  # the archive's .zip, renamed
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("m4_hourly_dataset.tsf", HEADER + "T1:1996-03-18 00-00-00:1:1,2\n")
    with pytest.raises(DataError, match=f"^{zipped}: a ZIP archive, not a data file: unpack it"):
        list(TimeSeriesReader(zipped, lookback=2, horizon=1))
    assert main(["init", "--data", str(path), "--yes", "--device", "cpu", "--output", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err
    assert f"{path}: no @data line" in err and "Traceback" not in err
    path.write_text(HEADER + "T1:1996-03-18 00-00-00:1:1,x\n")
    (tmp_path / "model").mkdir()
    assert main(["eval", "--task", "custom", "--model", str(tmp_path / "model"), "--data", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:15 (series_name 'T1'): value 1 ('x') is not a number" in err and "Traceback" not in err


def test_init_forecasts_the_archive_horizon_and_eval_scores_the_held_out_rows(tmp_path, capsys, monkeypatch):
    """`modrwkv init --data x.tsf` takes the file's @horizon (and says so) unless --horizon is given, and so does
    `modrwkv eval`, with the archive's fixed-horizon holdout (each line's last @horizon steps its test window);
    training reads the steps before the last two horizons of each line, and `eval --task custom` the test window,
    as the reader cuts them."""
    path = tmp_path / "daily.tsf"
    write_tsf(path, {"T1": 90, "T2": 75})
    config = tmp_path / "daily.yaml"
    assert main(["init", "--data", str(path), "--yes", "--device", "cpu", "--lookback", "12", "--output",
                 str(config)]) == 0
    out = capsys.readouterr().out
    assert "data.options.horizon 6: the @horizon of daily.tsf, the archive's forecast horizon of its daily series" \
        in out
    assert "data.options.holdout last: each series' last 6 steps are its test window" in out
    assert "--lookback 12 --horizon 6 --holdout last" in next(line for line in out.splitlines()
                                                              if line.startswith("evaluate:"))
    written = yaml.safe_load(config.read_text())
    assert written["data"]["options"]["horizon"] == 6 and written["data"]["train"] == [str(path)]
    assert written["data"]["options"]["holdout"] == "last"
    data = config_from_dict(written).data
    training = list(build_reader(data))
    # each line but its last 12 steps (78 and 63), a window of 12 + 6 starting at each step that leaves room for one:
    # T2's 46; of T1's 61, the 8 whose 6 target steps miss every step 3 mod 7 ('?'): those starting at 6 mod 7
    assert len(training) == 8 + 46
    assert main(["init", "--data", str(path), "--yes", "--device", "cpu", "--lookback", "12", "--horizon", "3",
                 "--output", str(config), "--force"]) == 0
    assert "@horizon" not in capsys.readouterr().out
    assert yaml.safe_load(config.read_text())["data"]["options"]["horizon"] == 3
    weekly = tmp_path / "weekly.tsf"
    write_tsf(weekly, {"W1": 90}, HEADER.replace("@horizon 6", "@horizon 8"))
    assert main(["init", "--data", str(path), str(weekly), "--yes", "--device", "cpu", "--output", str(config),
                 "--force"]) == 2
    assert ("the data files state different forecast horizons ({'daily.tsf': 6, 'weekly.tsf': 8}: .tsf @horizon, "
            "GluonTS prediction_length); choose one with --horizon") in capsys.readouterr().err

    loaded = []

    def capture(task, data, output, *, split, **_):
        assert task.horizon == 6  # the @horizon, as init trained to, without --horizon
        assert task.holdout == "last"  # the archive's fixed-horizon protocol, as init trained to, without --holdout
        loaded.append(task.load(Path(data), split))
        raise SystemExit(0)

    monkeypatch.setattr("modrwkv.evaluation.run_eval", capture)
    (tmp_path / "model").mkdir()
    for task in ("custom", "custom-series"):
        with pytest.raises(SystemExit):
            main(["eval", "--task", task, "--model", str(tmp_path / "model"), "--data", str(path), "--lookback", "12"])
    held_out = list(TimeSeriesReader(path, lookback=12, horizon=6, split="test", holdout="last", standardize=True))
    expected = [(s.meta["series"], s.meta["start"], s.series[0].tolist()) for s in held_out]
    assert held_out and len(loaded) == 2
    for samples in loaded:
        assert repr([(s.reference["channel"], s.reference["start"], s.series[0].tolist()) for s in samples]) == \
            repr(expected)


def test_init_fits_the_look_back_to_short_series(tmp_path, capsys, monkeypatch):
    """The archive's yearly sets are short (M4's yearly series from 13 steps): `init` without --lookback reads half
    of what the median series' training rows leave beside the horizon, rather than the default 96 that no window
    fits, with either holdout; long series keep 96; --lookback is taken as given."""
    short = tmp_path / "yearly.tsf"
    write_tsf(short, {"Y1": 20, "Y2": 30, "Y3": 40})
    config = tmp_path / "yearly.yaml"
    # the archive's holdout (the default for a .tsf stating @horizon): the median series' 30 steps less two horizons
    # of 6 leave 18 training steps, 18 - 6 = 12 beside the horizon: a look-back of 6, 18 - 12 + 1 = 7 windows
    assert main(["init", "--data", str(short), "--yes", "--device", "cpu", "--output", str(config)]) == 0
    assert ("data.options.lookback 6: the series are short (a median of 18 training steps, too few for the default "
            "look-back 96 and horizon 6): half of what they leave beside the horizon, about 7 windows a series "
            "(--lookback chooses another)") in capsys.readouterr().out
    options = yaml.safe_load(config.read_text())["data"]["options"]
    assert (options["lookback"], options["holdout"]) == (6, "last")
    training = list(build_reader(config_from_dict(yaml.safe_load(config.read_text())).data))
    # windows of 6 + 6 in 8, 18 and 28 training steps (Y1's two each forecast one of its gaps, every 7th step)
    assert len(training) == 0 + (18 - 12 + 1) + (28 - 12 + 1)
    # 70/10/20: training rows int(0.7 * n) = 14, 21, 28; median 21
    reads = []  # the file is read once: the scan shares the reads the look-back was fitted on
    read = TimeSeriesReader._read_file
    monkeypatch.setattr(TimeSeriesReader, "_read_file", lambda self, path: reads.append(path) or read(self, path))
    assert main(["init", "--data", str(short), "--yes", "--device", "cpu", "--holdout", "ratio", "--output",
                 str(config), "--force"]) == 0
    assert reads == [short]
    out = capsys.readouterr().out
    # 21 - horizon 6 = 15 left: a look-back of 7, so 15 - 7 + 1 = 9 windows in the median series
    assert ("data.options.lookback 7: the series are short (a median of 21 training steps, too few for the default "
            "look-back 96 and horizon 6): half of what they leave beside the horizon, about 9 windows a series "
            "(--lookback chooses another)") in out
    assert yaml.safe_load(config.read_text())["data"]["options"]["lookback"] == 7
    # eval without --lookback reads as the model folder was trained to (its config.json's series_lookback)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"series_lookback": 7}))
    evaluated = []

    def capture(task, data, output, *, split, **_):
        evaluated.append((task.lookback, task.horizon))
        raise SystemExit(0)

    monkeypatch.setattr("modrwkv.evaluation.run_eval", capture)
    with pytest.raises(SystemExit):
        main(["eval", "--task", "custom", "--model", str(model), "--data", str(short)])
    assert evaluated == [(7, 6)]
    training = list(build_reader(config_from_dict(yaml.safe_load(config.read_text())).data))
    # windows of 7 + 6 in 21 and 28 training rows; Y1's two (starting at 0, 1) each forecast its gap at step 10
    assert len(training) == 0 + (21 - 13 + 1) + (28 - 13 + 1)
    assert main(["init", "--data", str(short), "--yes", "--device", "cpu", "--output", str(config), "--force",
                 "--lookback", "5"]) == 0
    assert "data.options.lookback 5" not in capsys.readouterr().out
    assert yaml.safe_load(config.read_text())["data"]["options"]["lookback"] == 5
    # training rows of fewer than 2 x 96 windows' worth: half of them, so as many windows as a window reads steps
    # (a series of 200: 188 training steps, 182 beside the horizon, 87 windows of 96 but 92 of 91); from 192 beside
    # the horizon on, 96 (no jump: 191 gives 95)
    for steps, lookback in ((200, 91), (209, 95), (210, 96), (400, 96)):
        write_tsf(tmp_path / "daily.tsf", {"D1": steps})
        assert main(["init", "--data", str(tmp_path / "daily.tsf"), "--yes", "--device", "cpu", "--output",
                     str(config), "--force"]) == 0
        assert yaml.safe_load(config.read_text())["data"]["options"]["lookback"] == lookback
        out = capsys.readouterr().out
        if lookback == 96:
            assert "data.options.lookback" not in out
    write_tsf(tmp_path / "daily.tsf", {"D1": 200})
    assert main(["init", "--data", str(tmp_path / "daily.tsf"), "--yes", "--device", "cpu", "--output", str(config),
                 "--force"]) == 0
    assert ("data.options.lookback 91: the series are short (a median of 188 training steps, 87 windows a series for "
            "the default look-back 96 and horizon 6): half of what they leave beside the horizon, about 92 windows a "
            "series (--lookback chooses another)") in capsys.readouterr().out


def test_init_fits_the_horizon_to_the_val_rows_of_a_short_series(tmp_path, capsys):
    """statsmodels' real nile (100 yearly flows): its val rows, the 10% after the 70 training rows, hold 10 steps, no
    window of the default horizon 24 (training ran without validation and eval found no test window); `init` cuts
    the horizon to 10 and then fits the look-back: (70 - 10) // 2 = 30. A horizon given is kept."""
    sm = pytest.importorskip("statsmodels.api")
    path = tmp_path / "nile.csv"
    sm.datasets.nile.load_pandas().data.to_csv(path, index=False)
    config = tmp_path / "nile.yaml"
    assert main(["init", "--data", str(path), "--yes", "--device", "cpu", "--output", str(config)]) == 0
    out = capsys.readouterr().out
    assert "data.options.horizon 10: the series are short (a median of 100 steps, whose val rows, the 10% after " \
           "the training rows, hold 10, too few for the default horizon 24)" in out
    assert "data.options.lookback 30: the series are short (a median of 70 training steps" in out
    options = yaml.safe_load(config.read_text())["data"]["options"]
    assert (options["lookback"], options["horizon"]) == (30, 10)
    for split, windows in (("val", 1), ("test", 20 - 10 + 1)):
        assert len(list(TimeSeriesReader(path, lookback=30, horizon=10, split=split, standardize=True))) == windows
    assert main(["init", "--data", str(path), "--yes", "--device", "cpu", "--output", str(config), "--force",
                 "--horizon", "12"]) == 0
    assert "data.options.horizon" not in capsys.readouterr().out
    options = yaml.safe_load(config.read_text())["data"]["options"]
    assert (options["lookback"], options["horizon"]) == ((70 - 12) // 2, 12)
