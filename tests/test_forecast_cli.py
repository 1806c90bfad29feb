"""`modrwkv forecast`: the future of each series of a file, as a long-format CSV (series,step,forecast), from each
series' last look-back, on tiny series-only ModRWKV folders (random weights: what is tested is what must hold
whatever they are)."""

from __future__ import annotations

import csv
import datetime
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_model
from test_pipeline import LM

from modrwkv.cli import main
from modrwkv.data.readers.series import LinearBaseline
from modrwkv.encoders import build_encoder
from modrwkv.inference import ModRWKVPipeline
from modrwkv.multimodal import ModRWKV

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LOOKBACK, HORIZON, SEASON = 8, 3, 4


def save_forecaster(folder: Path, *, baseline_only: bool = False, season: int = 0, lookback: int | None = LOOKBACK,
                    horizon: int | None = HORIZON, linear_horizon: int = 0) -> Path:
    """A series-only ModRWKV folder as training saves one (look-back, horizon, baseline-only flag recorded)."""
    torch.manual_seed(0)
    linear = dict(linear_baseline=True, linear_lookback=LOOKBACK, linear_horizon=linear_horizon) if linear_horizon \
        else {}
    encoder = build_encoder("wavenet", layers=2, output_dim=24, season=season, **linear)
    if linear_horizon:
        encoder.set_linear_baseline(LinearBaseline(np.zeros((LOOKBACK, linear_horizon)), np.zeros(linear_horizon)))
    model = ModRWKV.build(make_model(LM, seed=1), {"series": encoder}, series_lookback=lookback,
                          series_horizon=horizon, series_baseline_only=baseline_only)
    model.eval().save_pretrained(folder)
    return folder


def forecast(capsys, model: Path, data: Path, *options: str) -> tuple[int, str, str]:
    status = main(["forecast", "--model", str(model), "--data", str(data), *options])
    out, err = capsys.readouterr()
    return status, out, err


def read_rows(text: str) -> tuple[list[str], dict[str, list[tuple[int, float]]]]:
    """The CSV's header and each series' (step, forecast) rows, as a reader of the file sees them."""
    header, *rows = csv.reader(io.StringIO(text))
    found: dict[str, list[tuple[int, float]]] = {}
    for label, step, value in rows:
        found.setdefault(label, []).append((int(step), float(value)))
    return header, found


def write_csv(path: Path, columns: dict[str, list[float | None]]) -> Path:
    length = max(len(values) for values in columns.values())
    lines = [",".join(columns)]
    for i in range(length):
        lines.append(",".join("" if i >= len(v) or v[i] is None else repr(float(v[i])) for v in columns.values()))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def decoded(tmp_path_factory) -> Path:
    return save_forecaster(tmp_path_factory.mktemp("decoded") / "model")


def test_a_baseline_only_seasonal_model_forecasts_each_series_last_season_repeated(tmp_path, capsys) -> None:
    """Shipped baseline alone with season P (no linear baseline): the forecast is the seasonal-naive one, the last
    P values of each series repeated, in the file's units (the window's mean and scale undone exactly)."""
    model = save_forecaster(tmp_path / "model", baseline_only=True, season=SEASON)
    rng = np.random.default_rng(0)
    load = (100 + 10 * rng.standard_normal(30)).round(3).tolist()
    price = (-5 + rng.standard_normal(30)).round(3).tolist()
    data = write_csv(tmp_path / "shop.csv", {"load": load, "price": price})
    status, out, err = forecast(capsys, model, data, "--horizon", "6")
    assert status == 0, err
    header, rows = read_rows(out)
    assert header == ["series", "step", "forecast"]
    for label, values in (("load", load), ("price", price)):
        expected = [values[len(values) - SEASON + h % SEASON] for h in range(6)]  # the last season, repeated
        assert [step for step, _ in rows[label]] == list(range(1, 7))
        np.testing.assert_allclose([v for _, v in rows[label]], expected, rtol=1e-6)  # (the encoder keeps mean and scale in float32)
    assert "baseline alone" in err


def test_the_rows_are_forecast_batch_on_each_series_last_look_back(tmp_path, capsys, decoded, caplog) -> None:
    rng = np.random.default_rng(1)
    columns = {"a": np.cumsum(rng.standard_normal(40)).round(4).tolist(),
               "b": (3 + rng.standard_normal(40)).round(4).tolist(), "c": rng.standard_normal(40).round(4).tolist()}
    data = write_csv(tmp_path / "three.csv", columns)
    out_file = tmp_path / "forecast.csv"
    status, out, err = forecast(capsys, decoded, data, "--output", str(out_file), "--batch-size", "2")
    assert status == 0, err
    assert out == "" and f"-> {out_file}" in err
    assert "forecast 2 of 3 series" in caplog.text and "forecast 3 of 3 series" in caplog.text  # a line per batch
    _, rows = read_rows(out_file.read_text())
    assert list(rows) == ["a", "b", "c"]
    # the windows built from the file's values independently: each column's last LOOKBACK values
    windows = [np.asarray(values[-LOOKBACK:]) for values in columns.values()]
    expected = ModRWKVPipeline.from_pretrained(decoded).forecast_batch(windows, HORIZON)
    for label, reference in zip(columns, expected, strict=True):
        assert [value for _, value in rows[label]] == reference.values.tolist()  # full precision, repr


def test_a_short_series_is_forecast_from_a_look_back_begun_with_gaps(tmp_path, capsys, decoded, caplog) -> None:
    short = [1.5, 2.0, 4.0, 3.25, 2.5]  # 5 of the look-back's 8 steps
    data = write_csv(tmp_path / "short.csv", {"short": short})
    status, out, err = forecast(capsys, decoded, data)
    assert status == 0, err
    _, rows = read_rows(out)
    gapped = np.array([np.nan] * 3 + short)
    reference = ModRWKVPipeline.from_pretrained(decoded).forecast(gapped, HORIZON)
    assert [value for _, value in rows["short"]] == reference.values.tolist()
    assert "1 series hold fewer than the look-back's 8 steps" in caplog.text


def test_the_csv_round_trips_with_the_readers_labels(tmp_path, capsys, decoded, caplog) -> None:
    """A long-format file (Nixtla's unique_id,ds,y): one row per series and step, each series named as the reader
    names it, a series whose look-back holds no value named in a warning and left out."""
    lines = ["unique_id,ds,y"]
    for name, offset in (("T1", 0.0), ("T2", 50.0)):
        lines += [f"{name},2024-01-{day:02d},{offset + day * 0.5}" for day in range(1, 13)]
    lines += [f"T3,2024-01-{day:02d}," for day in range(1, 4)]  # nothing observed
    data = tmp_path / "long.csv"
    data.write_text("\n".join(lines) + "\n")
    out_file = tmp_path / "new" / "out.csv"  # (its folder made)
    status, _, err = forecast(capsys, decoded, data, "--output", str(out_file), "--horizon", "2")
    assert status == 0, err
    with out_file.open(newline="") as handle:
        records = list(csv.DictReader(handle))
    assert list(records[0]) == ["series", "step", "timestamp", "forecast"]
    assert [(r["series"], r["step"], r["timestamp"]) for r in records] == [
        ("unique_id=T1 y", "1", "2024-01-13"), ("unique_id=T1 y", "2", "2024-01-14"),
        ("unique_id=T2 y", "1", "2024-01-13"), ("unique_id=T2 y", "2", "2024-01-14")]
    assert all(np.isfinite(float(r["forecast"])) for r in records)
    assert "left out 1 series whose last 8 steps hold no observed value (or an infinite one): 'unique_id=T3 y'" \
        in caplog.text


def test_series_rows_are_named_by_their_ids(tmp_path, capsys, decoded) -> None:
    """A Monash .tsf file's series by their series_name, GluonTS rows by their item_id (a row of two channels: each
    named with its channel); ids that do not tell the series apart leave the reader's labels."""
    tsf = tmp_path / "yearly.tsf"
    tsf.write_text("@attribute series_name string\n@frequency yearly\n@horizon 2\n@data\n"
                   + "".join(f"{name}:{','.join(str(v + k) for v in range(12))}\n" for k, name in enumerate(("JPN", "FRA"))))
    status, out, err = forecast(capsys, decoded, tsf, "--horizon", "2")
    assert status == 0, err
    assert list(read_rows(out)[1]) == ["JPN", "FRA"]
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"item_id": name, "start": "2020-01-01", "target": target}) + "\n" for name, target in
                            (("a", [float(v) for v in range(12)]), ("b", [[float(v) for v in range(12)]] * 2))))
    status, out, err = forecast(capsys, decoded, rows, "--horizon", "2")
    assert status == 0, err
    assert list(read_rows(out)[1]) == ["a", "b target[0]", "b target[1]"]
    rows.write_text("".join(json.dumps({"item_id": "same", "target": [float(v) for v in range(12)]}) + "\n"
                            for _ in range(2)))
    status, out, err = forecast(capsys, decoded, rows, "--horizon", "2")
    assert status == 0, err
    assert list(read_rows(out)[1]) == ["1 (item_id 'same') target", "2 (item_id 'same') target"]


def test_series_horizon_is_saved_by_training_read_back_and_the_default_horizon(tmp_path, capsys) -> None:
    from modrwkv.lm.checkpoint import CheckpointError

    model = save_forecaster(tmp_path / "model", horizon=5)
    config = json.loads((model / "config.json").read_text())
    assert config["series_horizon"] == 5 and ModRWKV.from_pretrained(model).series_horizon == 5
    data = write_csv(tmp_path / "x.csv", {"x": list(np.linspace(0, 3, 12))})
    status, out, err = forecast(capsys, model, data)
    assert status == 0, err
    assert [step for step, _ in read_rows(out)[1]["x"]] == [1, 2, 3, 4, 5]
    (model / "config.json").write_text(json.dumps({**config, "series_horizon": 0}))
    with pytest.raises(CheckpointError, match="'series_horizon' must be a whole number >= 1 or null, got 0"):
        ModRWKV.from_pretrained(model)
    # a folder saved before it was recorded: its linear baseline's horizon
    old = save_forecaster(tmp_path / "old", horizon=None, linear_horizon=4)
    assert ModRWKV.from_pretrained(old).series_horizon is None
    status, out, err = forecast(capsys, old, data)
    assert status == 0, err
    assert len(read_rows(out)[1]["x"]) == 4


def test_training_records_the_horizon(tmp_path) -> None:
    from modrwkv.training.config import DataConfig, TrainConfig
    from modrwkv.training.recipe import setup_data

    model = ModRWKV.build(make_model(LM, seed=1), {"series": build_encoder("wavenet", layers=2, output_dim=24)})
    config = TrainConfig(data=DataConfig(format="series", train=["x.csv"], options={"lookback": 8, "horizon": 5}))
    setup_data(config, model, [])
    assert (model.series_lookback, model.series_horizon) == (8, 5)


def test_eval_takes_the_models_horizon_before_a_tsf_files(tmp_path, caplog) -> None:
    import argparse
    import logging

    from modrwkv.cli import _eval_horizon

    model = save_forecaster(tmp_path / "model", horizon=5)
    tsf = tmp_path / "m.tsf"
    tsf.write_text("@relation x\n@attribute series_name string\n@frequency hourly\n@horizon 7\n@data\nT1:1,2,3\n")
    given = argparse.Namespace(model=str(model), horizon=None)
    with caplog.at_level(logging.INFO, logger="modrwkv.cli"):
        assert _eval_horizon(given, "custom-series", str(tsf)) == 5
    assert f"horizon 5: the horizon {model} was trained for" in caplog.text
    assert _eval_horizon(argparse.Namespace(model=str(model), horizon=9), "custom-series", str(tsf)) == 9
    assert _eval_horizon(argparse.Namespace(model=str(tmp_path), horizon=None), "custom-series", str(tsf)) == 7


def test_bad_inputs_are_one_line_errors(tmp_path, capsys, decoded) -> None:
    data = write_csv(tmp_path / "x.csv", {"x": list(np.linspace(0, 3, 12))})

    def error(*argv: str) -> str:
        status, out, err = forecast(capsys, *argv)
        assert status == 2 and out == "", err
        assert len(err.strip().splitlines()) == 1, err
        (line,) = err.strip().splitlines()
        return line

    unrecorded = save_forecaster(tmp_path / "unrecorded", lookback=None, horizon=None)  # saved before training did
    textless = tmp_path / "vision"
    ModRWKV.build(make_model(LM, seed=1), {"image": build_encoder("tiny", width=32)}).save_pretrained(textless)
    assert error(textless, data) == (f"modrwkv forecast: error: {textless} cannot forecast: it has no series encoder "
                                     "(it reads image)")
    assert error(decoded, tmp_path / "none.csv") == (
        f"modrwkv forecast: error: {tmp_path / 'none.csv'}: cannot open: [Errno 2] No such file or directory: "
        f"'{tmp_path / 'none.csv'}'")
    assert error(decoded, data, "--target", "y") == (
        f"modrwkv forecast: error: {data}: no column 'y' (columns: ['x'])")
    linear = save_forecaster(tmp_path / "linear", linear_horizon=4)
    assert error(linear, data, "--horizon", "6") == (
        "modrwkv forecast: error: --horizon 6: the model's linear baseline was fitted for a horizon of 4 steps; "
        "forecast at most 4")
    assert error(unrecorded, data) == (
        f"modrwkv forecast: error: {unrecorded} records no look-back (series_lookback in its config.json: saved "
        "before training recorded it): give the one it was trained on, --lookback N")
    assert error(unrecorded, data, "--lookback", "8") == (
        f"modrwkv forecast: error: {unrecorded} records no horizon (series_horizon in its config.json: saved "
        "before training recorded it) and has no linear baseline to take one from: give --horizon H")
    assert error(decoded, data, "--lookback", "6") == (
        "modrwkv forecast: error: --lookback 6, but the model was trained to forecast from 8 steps: leave --lookback "
        "out (it reads its own)")


def dated_rows(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """The CSV's header and each series' timestamps, step by step (the steps checked to count from 1)."""
    records = list(csv.DictReader(io.StringIO(text)))
    found: dict[str, list[str]] = {}
    for record in records:
        found.setdefault(record["series"], []).append(record["timestamp"])
        assert int(record["step"]) == len(found[record["series"]])
        assert np.isfinite(float(record["forecast"]))
    return list(records[0]), found


def test_an_hourly_wide_csv_s_forecast_continues_its_hours(tmp_path, capsys, decoded) -> None:
    start = datetime.datetime(2016, 7, 1)
    lines = ["date,load,price"] + [f"{start + datetime.timedelta(hours=h):%Y-%m-%d %H:%M:%S},{h % 5},{h * 0.5}"
                                   for h in range(22)]  # 2016-07-01 00:00:00 ... 21:00:00
    data = tmp_path / "hourly.csv"
    data.write_text("\n".join(lines) + "\n")
    status, out, err = forecast(capsys, decoded, data, "--horizon", "4")
    assert status == 0, err
    header, dated = dated_rows(out)
    assert header == ["series", "step", "timestamp", "forecast"]
    expected = ["2016-07-01 22:00:00", "2016-07-01 23:00:00", "2016-07-02 00:00:00", "2016-07-02 01:00:00"]
    assert dated == {"load": expected, "price": expected}


def test_a_long_files_groups_continue_their_own_month_starts(tmp_path, capsys, decoded) -> None:
    """Each group dated by its own rows, in time order (T2's rows written newest first): month starts continue
    month by month across the new year, from each series' own last month."""
    t1 = [f"T1,2019-{month:02d}-01,{month}" for month in range(1, 12)]  # January ... November 2019
    t2 = [f"T2,{year}-{month:02d}-01,{year + month}" for year, month in [(2019, m) for m in range(3, 13)] + [(2020, 1)]]
    data = tmp_path / "monthly.csv"
    data.write_text("\n".join(["unique_id,ds,y", *t1, *reversed(t2)]) + "\n")
    status, out, err = forecast(capsys, decoded, data, "--horizon", "3")
    assert status == 0, err
    assert dated_rows(out)[1] == {"unique_id=T1 y": ["2019-12-01", "2020-01-01", "2020-02-01"],
                                  "unique_id=T2 y": ["2020-02-01", "2020-03-01", "2020-04-01"]}


def test_pandas_parquet_tables_are_dated_by_their_datetime_columns(tmp_path, capsys, decoded) -> None:
    """`DataFrame.to_parquet()` stores a datetime column (or index) as nanosecond timestamps: a long-format frame of
    month starts and a wide one of half-hours indexed by time are dated as pandas' `date_range` continues them."""
    pd = pytest.importorskip("pandas")
    months = pd.date_range("1949-01-01", periods=14, freq="MS")
    long = pd.DataFrame({"unique_id": ["air"] * 14 + ["wine"] * 10, "ds": [*months, *months[:10]],
                         "y": np.arange(24.0)})
    long.to_parquet(tmp_path / "long.parquet", index=False)
    status, out, err = forecast(capsys, decoded, tmp_path / "long.parquet", "--horizon", "3")
    assert status == 0, err
    expected = {name: [f"{day:%Y-%m-%d}" for day in pd.date_range(last, periods=4, freq="MS")[1:]]
                for name, last in (("unique_id=air y", months[13]), ("unique_id=wine y", months[9]))}
    assert dated_rows(out)[1] == expected
    halves = pd.date_range("2000-06-05", periods=20, freq="30min", name="timestamp")
    pd.DataFrame({"demand": np.arange(20.0)}, index=halves).to_parquet(tmp_path / "wide.parquet")
    status, out, err = forecast(capsys, decoded, tmp_path / "wide.parquet", "--horizon", "3")
    assert status == 0, err
    assert dated_rows(out)[1] == {"demand": [f"{t:%Y-%m-%d %H:%M:%S}" for t in
                                             pd.date_range(halves[-1], periods=4, freq="30min")[1:]]}


def test_tsf_lines_are_dated_by_their_start_and_the_files_frequency(tmp_path, capsys, decoded) -> None:
    header = "@attribute series_name string\n@attribute start_timestamp date\n@frequency {}\n@horizon 2\n@data\n"
    yearly = tmp_path / "yearly.tsf"
    yearly.write_text(header.format("yearly") + "JPN:1979-01-01 00-00-00:" + ",".join(map(str, range(12))) + "\n"
                      + "FRA:2000-07-01 00-00-00:" + ",".join(map(str, range(10))) + "\n")
    status, out, err = forecast(capsys, decoded, yearly, "--horizon", "2")
    assert status == 0, err
    # 12 years from 1979 end in 1990; 10 from 2000 in 2009
    assert dated_rows(out)[1] == {"JPN": ["1991-01-01 00:00:00", "1992-01-01 00:00:00"],
                                  "FRA": ["2010-07-01 00:00:00", "2011-07-01 00:00:00"]}
    half_hourly = tmp_path / "half.tsf"
    half_hourly.write_text(header.format("half_hourly") + "T1:2020-01-01 00-00-00:"
                           + ",".join(map(str, range(47))) + "\n")  # 00:00 ... 23:00
    status, out, err = forecast(capsys, decoded, half_hourly, "--horizon", "3")
    assert status == 0, err
    assert dated_rows(out)[1] == {"T1": ["2020-01-01 23:30:00", "2020-01-02 00:00:00", "2020-01-02 00:30:00"]}


def test_chronos_rows_are_dated_by_their_timestamp_lists(tmp_path, capsys, decoded) -> None:
    """Rows as `autogluon/chronos_datasets` stores them (id, a `timestamp` list, `target`): each row's steps continue
    its own timestamps (hourly rows from two starts; daily ones at midnight written as dates); zoned timestamps,
    which are not written, leave the file undated."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def write(name: str, starts: dict[str, datetime.datetime], step: datetime.timedelta, tz: str | None = None) -> Path:
        kind = pa.list_(pa.timestamp("ms", tz=tz))
        rows = {name: [start + step * k for k in range(12)] for name, start in starts.items()}
        path = tmp_path / name
        pq.write_table(pa.table({"id": list(rows), "timestamp": pa.array(list(rows.values()), type=kind),
                                 "target": [[float(k % 5) for k in range(12)] for _ in rows]}), path)
        return path

    hour = datetime.timedelta(hours=1)
    hourly = write("hourly.parquet", {"A": datetime.datetime(2024, 1, 1), "B": datetime.datetime(2023, 12, 31, 20)},
                   hour)
    status, out, err = forecast(capsys, decoded, hourly, "--horizon", "2")
    assert status == 0, err
    # A: 00:00 + 11 hours is its last step, 11:00; B: 20:00 + 11 hours, 07:00 on New Year's Day
    assert dated_rows(out)[1] == {"A": ["2024-01-01 12:00:00", "2024-01-01 13:00:00"],
                                  "B": ["2024-01-01 08:00:00", "2024-01-01 09:00:00"]}
    daily = write("daily.parquet", {"A": datetime.datetime(2024, 2, 20)}, 24 * hour)
    status, out, err = forecast(capsys, decoded, daily, "--horizon", "2")
    assert status == 0, err
    assert dated_rows(out)[1] == {"A": ["2024-03-03", "2024-03-04"]}  # (2024 is a leap year: 29 February counted)
    zoned = write("zoned.parquet", {"A": datetime.datetime(2024, 1, 1)}, hour, tz="Europe/Paris")
    status, out, err = forecast(capsys, decoded, zoned, "--horizon", "2")
    assert status == 0, err
    assert out.splitlines()[0] == "series,step,forecast"


def test_irregular_dates_leave_their_series_undated_with_a_warning(tmp_path, capsys, decoded, caplog) -> None:
    # daily, but 2024-01-09 missing among the last ten intervals
    days = [datetime.date(2024, 1, 1) + datetime.timedelta(days=d) for d in range(12) if d != 8]
    data = tmp_path / "gappy.csv"
    data.write_text("\n".join(["ds,x", *(f"{day:%Y-%m-%d},{k}" for k, day in enumerate(days))]) + "\n")
    status, out, err = forecast(capsys, decoded, data, "--horizon", "2")
    assert status == 0, err
    header, dated = dated_rows(out)
    assert header == ["series", "step", "timestamp", "forecast"] and dated == {"x": ["", ""]}
    assert "1 of 1 series left undated (an empty timestamp): their last dates (up to 10 intervals) are not at a " \
           "regular interval: 'x'" in caplog.text


def test_month_ends_continue_as_month_ends() -> None:
    from modrwkv.data.readers.seriesdates import parse_date_cells

    quarters = parse_date_cells(["2019-09-30", "2019-12-31", "2020-03-31", "2020-06-30"])
    assert quarters is not None and quarters.next_dates(3) == ["2020-09-30", "2020-12-31", "2021-03-31"]
    months = parse_date_cells(["2020-01-31", "2020-02-29", "2020-03-31"])
    assert months is not None and months.next_dates(2) == ["2020-04-30", "2020-05-31"]


def test_a_file_without_iso_dates_keeps_the_csv_without_timestamps(tmp_path, capsys, decoded, caplog) -> None:
    plain = write_csv(tmp_path / "plain.csv", {"x": list(np.linspace(0, 3, 12))})
    with caplog.at_level("WARNING"):
        status, plain_out, err = forecast(capsys, decoded, plain)
    assert status == 0, err
    assert plain_out.splitlines()[0] == "series,step,forecast"
    assert [line.split(",")[:2] for line in plain_out.splitlines()[1:]] == [["x", "1"], ["x", "2"], ["x", "3"]]
    assert not [record for record in caplog.records if "not dated" in record.getMessage()]  # (no date column)
    # dates of numbers whose order the column does not tell (1/1/2024 ... 1/12/2024: days of January read month
    # first, the 1sts of the months day first) are not read as dates, which a warning says
    other = tmp_path / "us.csv"
    other.write_text("date,x\n" + "".join(f"1/{day}/2024,{float(v)!r}\n" for day, v in
                                           enumerate(np.linspace(0, 3, 12), 1)))
    with caplog.at_level("WARNING"):
        status, out, err = forecast(capsys, decoded, other)
    assert status == 0, err
    assert out == plain_out
    assert [record.getMessage() for record in caplog.records if "not dated" in record.getMessage()] == [
        f"{other}: its steps are not dated: the date column 'date' holds '1/1/2024' (line 2), which is no ISO date "
        "(2024-01-31, 2024-01-31 06:00:00, with a zone or not), pandas Period of a month or quarter (2024-01, "
        "2024Q1) nor date of numbers whose day and month order the column tells (31/01/2024, 1/31/2024; 01/02/2024 "
        "in every row of a few could be either): modrwkv forecast writes no timestamp"]
