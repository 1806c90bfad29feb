"""`modrwkv forecast` dates series rows by their `start` and pandas frequency: LOTSA / GIFT-Eval Parquet rows (start,
freq), a GluonTS data set folder (metadata.json, train/data.json), JSON Lines with a freq per line, and --freq where
the file states none. The expectation is pandas' own `date_range(start, periods=length + horizon, freq=alias)`."""

from __future__ import annotations

import datetime
import json
import logging
import re
from pathlib import Path

import pandas as pd
import pytest
from test_forecast_cli import dated_rows, forecast, save_forecaster

from modrwkv.data.readers import TimeSeriesReader
from modrwkv.data.readers.seriesdates import RowDates, interval_text, pandas_frequency, parse_start, skipped_steps
from modrwkv.data.readers.seriesrows import series_rows

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HORIZON = 3
# pandas' aliases renamed in 2.2 (and refused since 3.0), as the hub's data sets still write them: their names now
RENAMED = {"H": "h", "T": "min", "S": "s", "M": "ME", "Q": "QE", "A": "YE", "Y": "YE", "AS": "YS"}


def pandas_dates(start: str, alias: str, length: int, horizon: int = HORIZON) -> list[str]:
    """The `horizon` dates after a series of `length` steps from `start` at `alias`, as pandas dates them; written
    as dates where every step is at midnight, else with their times."""
    count, name, anchor = re.fullmatch(r"(\d*)([A-Za-z]+)(-[A-Za-z]{3})?", alias).groups()
    steps = pd.date_range(start, periods=length + horizon, freq=count + RENAMED.get(name, name) + (anchor or ""))
    written = "%Y-%m-%d" if (steps == steps.normalize()).all() else "%Y-%m-%d %H:%M:%S"
    return list(steps[-horizon:].strftime(written))


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return save_forecaster(tmp_path_factory.mktemp("freq") / "model")


# (item_id, start, freq, length): LOTSA's frequencies, starts on their anchor and off it (a Friday for W-SUN, the
# 15th for month ends: pandas steps from the next date on it), a leap day, a start before 1970
LOTSA_ROWS = [
    ("hourly", "2021-01-01 05:00:00", "H", 30),
    ("daily", "2020-02-20 00:00:00", "D", 12),
    ("weekly", "2021-01-01 00:00:00", "W-SUN", 10),
    ("month_ends", "2021-01-15 00:00:00", "M", 14),
    ("month_starts", "2021-01-15 00:00:00", "MS", 11),
    ("quarters", "1750-01-31 00:00:00", "Q-DEC", 9),
    ("years", "2000-12-31 00:00:00", "A-DEC", 8),
    ("five_minutes", "2021-01-01 23:50:00", "5T", 20),
    ("ten_minutes", "2021-01-01 00:00:00", "10min", 15),
    ("seconds", "2021-01-01 00:00:00", "4S", 13),
]


def test_lotsa_rows_are_dated_by_their_start_and_freq(tmp_path, capsys, model) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "lotsa.parquet"  # as `Salesforce/lotsa_data` stores it: start timestamp[s], freq, target
    pq.write_table(pa.table({
        "item_id": [row[0] for row in LOTSA_ROWS],
        "start": pa.array([datetime.datetime.fromisoformat(row[1]) for row in LOTSA_ROWS], type=pa.timestamp("s")),
        "freq": [row[2] for row in LOTSA_ROWS],
        "target": [[float(k % 7) for k in range(row[3])] for row in LOTSA_ROWS]}), data)
    status, out, err = forecast(capsys, model, data, "--horizon", str(HORIZON))
    assert status == 0, err
    header, dated = dated_rows(out)
    assert header == ["series", "step", "timestamp", "forecast"]
    assert dated == {name: pandas_dates(start, alias, length) for name, start, alias, length in LOTSA_ROWS}
    # the start as text (a pandas Period's: a month, a year) reads as pandas reads it
    texts = tmp_path / "texts.parquet"
    pq.write_table(pa.table({"item_id": ["m", "y"], "start": ["2021-01", "1750"], "freq": ["M", "A-DEC"],
                             "target": [[1.0] * 5, [2.0] * 6]}), texts)
    status, out, err = forecast(capsys, model, texts, "--horizon", str(HORIZON))
    assert status == 0, err
    assert dated_rows(out)[1] == {"m": pandas_dates("2021-01", "M", 5), "y": pandas_dates("1750", "A-DEC", 6)}


def test_a_frequency_that_is_no_regular_interval_warns_once_and_leaves_empty_timestamps(tmp_path, capsys, model,
                                                                                         caplog) -> None:
    rows = [{"item_id": name, "start": "2021-01-04", "freq": freq, "target": [float(k) for k in range(10)]}
            for name, freq in (("a", "B"), ("b", "B"), ("c", "D"))]
    data = tmp_path / "business.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with caplog.at_level(logging.WARNING):
        status, out, err = forecast(capsys, model, data, "--horizon", "2")
    assert status == 0, err
    assert dated_rows(out)[1] == {"a": ["", ""], "b": ["", ""], "c": pandas_dates("2021-01-04", "D", 10, 2)}
    warnings = [record.getMessage() for record in caplog.records if "left undated" in record.getMessage()]
    assert warnings == [f"2 of 3 series left undated (an empty timestamp): {data} dates them by frequency 'B', which "
                        "is no regular interval (seconds, minutes, hours, days, weeks, or month, quarter or year ends "
                        "or starts): 'a', 'b'"]


def test_a_gluonts_data_set_folder_dates_its_rows_by_its_metadata_freq(tmp_path, capsys, model) -> None:
    """As GluonTS' `TrainDatasets.save` writes a data set: metadata.json beside train/ (since GluonTS 0.13), or in
    metadata/ (before); the starts as GluonTS writes pandas Timestamps and Periods."""
    hourly = tmp_path / "electricity"
    (hourly / "train").mkdir(parents=True)
    (hourly / "metadata.json").write_text(json.dumps({"freq": "H", "prediction_length": 48}))
    lines = [{"start": "2021-01-01 00:00:00", "target": [float(k) for k in range(30)], "item_id": "a"},
             {"start": "2021-03-28 01:00:00", "target": [float(k) for k in range(25)], "item_id": "b"}]
    (hourly / "train" / "data.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
    status, out, err = forecast(capsys, model, hourly / "train" / "data.json", "--horizon", str(HORIZON))
    assert status == 0, err
    assert dated_rows(out)[1] == {"a": pandas_dates("2021-01-01 00:00:00", "H", 30),
                                  "b": pandas_dates("2021-03-28 01:00:00", "H", 25)}
    monthly = tmp_path / "m4_monthly"
    for folder in ("metadata", "test"):
        (monthly / folder).mkdir(parents=True)
    (monthly / "metadata" / "metadata.json").write_text(json.dumps({"freq": "M", "prediction_length": 18}))
    lines = [{"start": "1750-01", "target": [1.0] * 20, "item_id": "M1"},
             {"start": "2021-02-28 00:00:00", "target": [2.0] * 13, "item_id": "M2"}]
    (monthly / "test" / "data.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
    status, out, err = forecast(capsys, model, monthly / "test" / "data.json", "--horizon", str(HORIZON))
    assert status == 0, err
    assert dated_rows(out)[1] == {"M1": pandas_dates("1750-01", "M", 20),
                                  "M2": pandas_dates("2021-02-28", "M", 13)}


def test_jsonl_lines_with_their_own_freq(tmp_path, capsys, model) -> None:
    lines = [("a", "2021-01-01 00:00:00", "D", 12), ("b", "2021-01-03 12:00:00", "W-SUN", 9),
             ("c", "2021Q1", "QS", 7), ("d", "2021-01-01 00:00:00", "15min", 40)]
    data = tmp_path / "own.jsonl"
    data.write_text("".join(json.dumps({"item_id": name, "start": start, "freq": freq,
                                        "target": [float(k % 3) for k in range(length)]}) + "\n"
                            for name, start, freq, length in lines))
    status, out, err = forecast(capsys, model, data, "--horizon", str(HORIZON))
    assert status == 0, err
    assert dated_rows(out)[1] == {name: pandas_dates(start.replace("Q1", "-01"), freq, length)
                                  for name, start, freq, length in lines}


def test_freq_dates_rows_that_state_none_and_yields_to_those_that_do(tmp_path, capsys, model, caplog) -> None:
    bare = tmp_path / "bare.jsonl"
    ramp = [float(k) for k in range(10)]
    bare.write_text("".join(json.dumps({"item_id": name, "start": "2022-12-30", "target": ramp}) + "\n"
                            for name in ("a", "b")))
    with caplog.at_level(logging.WARNING):
        status, out, err = forecast(capsys, model, bare, "--horizon", "2")
    assert status == 0, err
    assert out.splitlines()[0] == "series,step,forecast"  # (no row dated: no timestamp column)
    assert f"{bare}: 2 series have a start but no frequency (the file states none: a 'freq' field, or GluonTS' " \
           "metadata.json beside a JSON Lines file): left undated; give their pandas offset alias (modrwkv forecast " \
           "--freq h)" in caplog.text
    status, out, err = forecast(capsys, model, bare, "--horizon", "2", "--freq", "MS")
    assert status == 0, err
    month_starts = pandas_dates("2022-12-30", "MS", 10, 2)  # (from the next month's 1st: 2023-01-01)
    assert dated_rows(out)[1] == {"a": month_starts, "b": month_starts}
    # a row's own freq, and a data set's metadata.json, win over --freq
    (tmp_path / "metadata.json").write_text(json.dumps({"freq": "D"}))
    own = tmp_path / "own.jsonl"
    own.write_text(json.dumps({"item_id": "a", "start": "2022-12-30", "freq": "h", "target": [1.0] * 10}) + "\n"
                   + json.dumps({"item_id": "b", "start": "2022-12-30", "target": [1.0] * 10}) + "\n")
    status, out, err = forecast(capsys, model, own, "--horizon", "2", "--freq", "MS")
    assert status == 0, err
    assert dated_rows(out)[1] == {"a": pandas_dates("2022-12-30", "h", 10, 2),
                                  "b": pandas_dates("2022-12-30", "D", 10, 2)}


def test_a_bad_freq_is_a_one_line_error(tmp_path, capsys, model) -> None:
    data = tmp_path / "bare.jsonl"
    data.write_text(json.dumps({"start": "2022-12-30", "target": [1.0] * 10}) + "\n")
    for alias in ("B", "hourly", "0h"):
        with pytest.raises(SystemExit) as exit_status:
            forecast(capsys, model, data, "--freq", alias)
        err = capsys.readouterr().err
        assert exit_status.value.code == 2 and err.strip() == (
            f"modrwkv forecast: error: argument --freq: {alias!r} is not a pandas offset alias of a regular interval: "
            "s, min, h, D, W or W-SUN ... W-SAT, ME, MS, QE-DEC (QE-JAN ...), QS, YE-DEC, YS, with a multiple (15min, "
            "2h); also pandas' older H, T, S, M, Q-DEC, A-DEC, AS (see modrwkv forecast --help)")


def test_aliases_read_as_pandas_reads_them() -> None:
    """Case as pandas tells them apart ("MS" a month start, "ms" a millisecond); aliases of no regular interval."""
    hour, month_start = pandas_frequency("h"), pandas_frequency("MS")
    assert pandas_frequency("H") == hour and hour.interval.count == 3600 and hour.interval.unit == "s"
    assert pandas_frequency("Min").interval.count == pandas_frequency("T").interval.count == 60
    assert month_start.interval.unit == "M" and not month_start.interval.month_end
    assert pandas_frequency("W") == pandas_frequency("W-SUN") == pandas_frequency("w-sun")
    for alias in ("ms", "B", "BME", "BM", "SM", "L", "us", "C", "1.5h", "0D", "ME-DEC", "H-SUN", "W-DEC", "QE-XYZ"):
        assert pandas_frequency(alias) is None, alias
    assert [str(parse_start(text)) for text in ("2021-01-01 06:00:00", "2021-01-01T06:00", "2021-01", "1750",
                                                 "2021Q3", "1979-01-01 00-00-00")] == [
        "2021-01-01T06:00:00", "2021-01-01T06:00:00", "2021-01-01T00:00:00", "1750-01-01T00:00:00",
        "2021-07-01T00:00:00", "1979-01-01T00:00:00"]
    for text in ("2021-01-01 00:00:00+01:00", "2021-01-04/2021-01-17", "2021-01-04/2021-01-32", "2021-13",
                 "01/02/2021"):
        assert parse_start(text) is None, text


def test_a_gluonts_weekly_start_is_read_as_its_week(tmp_path, capsys, model) -> None:
    """GluonTS writes a series' start as `str` of its pandas Period, a week's as its first and last days
    (2021-01-04/2021-01-10 for freq W-SUN, pandas' weeks ending on Sunday): the forecast's steps are the last days
    of the weeks after the series' last, as pandas' Periods continue it."""
    start = pd.Period("2021-01-06", freq="W-SUN")
    assert str(start) == "2021-01-04/2021-01-10"
    path = tmp_path / "weekly.jsonl"
    path.write_text(json.dumps({"item_id": "w", "start": str(start), "freq": "W-SUN",
                                "target": [float(k % 5) for k in range(20)]}) + "\n")
    status, out, err = forecast(capsys, model, path, "--horizon", str(HORIZON))
    assert status == 0, err
    assert dated_rows(out)[1] == {"w": [str((start + 19 + h).end_time.date()) for h in range(1, HORIZON + 1)]}


def test_training_reads_the_same_values_whatever_dates_the_rows(tmp_path) -> None:
    """Dates are read apart, by forecast only: a row's start and freq change nothing training reads."""
    target = [float(k) for k in range(6)]
    dated, undated = tmp_path / "dated.jsonl", tmp_path / "undated.jsonl"
    dated.write_text(json.dumps({"item_id": "a", "start": "2021-01-01", "freq": "D", "target": target}) + "\n")
    undated.write_text(json.dumps({"item_id": "a", "target": target}) + "\n")
    rows = [list(series_rows(path, None)) for path in (dated, undated)]
    assert [row.name for row in rows[0]] == [row.name for row in rows[1]]
    assert all(row.dates is None for row in rows[0]) and (rows[0][0].values["target"] == target).all()


@pytest.mark.parametrize(("dates", "dropped", "interval", "around"), [
    (pd.date_range("1949-01-01", periods=144, freq="MS"), range(60, 66), "1 month", (59, 66)),  # airpassengers'
    (pd.date_range("1971-03-31", periods=89, freq="QE"), [40], "3 months", (39, 41)),  # austres' quarter ends
    (pd.date_range("2000-06-05", periods=500, freq="30min"), [100, 101, 300], "30 minutes", (99, 102)),
    (pd.date_range("1958-03-29", periods=300, freq="W-SAT"), [5], "1 week", (4, 6)),
    (pd.date_range("1700-01-01", periods=300, freq="YS"), [5, 6], "12 months", (4, 7)),
])
def test_dates_that_skip_steps_are_told_with_the_steps_pandas_left_out(dates, dropped, interval, around):
    skip = skipped_steps(RowDates.of(dates.delete(list(dropped)).values.astype("datetime64[s]")))
    assert skip is not None and skip.skipped == len(dropped) and interval_text(skip.interval) == interval
    written = "%Y-%m-%d %H:%M:%S" if interval == "30 minutes" else "%Y-%m-%d"
    assert skip.around == tuple(f"{dates[k]:{written}}" for k in around)  # the dates either side of the first gap
    assert skipped_steps(RowDates.of(dates.values.astype("datetime64[s]"))) is None  # every step there


def test_business_days_and_irregular_dates_skip_no_steps():
    for dates in (pd.bdate_range("2020-01-01", periods=300), pd.bdate_range("2020-01-01", periods=8),
                  pd.DatetimeIndex(["2024-01-01", "2024-01-03", "2024-01-04", "2024-01-09", "2024-01-10"])):
        assert skipped_steps(RowDates.of(dates.values.astype("datetime64[s]"))) is None


def test_a_csv_whose_dates_skip_months_is_read_row_by_row_with_a_warning(tmp_path, caplog):
    """airpassengers with six months missing: read as the rows are (each row a step), said in one warning that names
    the dates and lines around the gap; a long-format file's group the same."""
    dates = pd.date_range("1949-01-01", periods=40, freq="MS").delete(range(20, 26))
    frame = pd.DataFrame({"date": dates.strftime("%Y-%m-%d"), "passengers": range(34)})
    frame.to_csv(tmp_path / "gap.csv", index=False)
    with caplog.at_level(logging.WARNING):
        [read] = TimeSeriesReader(tmp_path / "gap.csv", lookback=4, horizon=2)._load_file(tmp_path / "gap.csv")
    assert read.values.tolist() == list(range(34))
    assert [record.getMessage() for record in caplog.records] == [
        f"{tmp_path / 'gap.csv'}: the dates of passengers step by 1 month but skip 6 step(s) in 1 place(s), first "
        "1950-08-01 to 1951-03-01 (lines 21 and 22): the rows are read as consecutive steps, a missing date as no gap; "
        "add a row with an empty value for each missing date to read it as a gap"]
    caplog.clear()
    frame.assign(unique_id="air").rename(columns={"date": "ds", "passengers": "y"}).to_csv(tmp_path / "long.csv",
                                                                                          index=False)
    with caplog.at_level(logging.WARNING):
        TimeSeriesReader(tmp_path / "long.csv", lookback=4, horizon=2)._load_file(tmp_path / "long.csv")
    assert [record.getMessage().split(" (lines")[0] for record in caplog.records] == [
        f"{tmp_path / 'long.csv'}: the dates of unique_id=air step by 1 month but skip 6 step(s) in 1 place(s), first "
        "1950-08-01 to 1951-03-01"]


def test_a_csv_of_pandas_periods_is_dated_in_periods(tmp_path, capsys):
    """`to_csv` of a frame indexed by a monthly or quarterly PeriodIndex writes 1950-01 / 1965Q1 (the bench's El Nino
    file, pmdarima's woolyrnq as pandas labels it): the forecast's steps are the periods pandas continues with."""
    model = save_forecaster(tmp_path / "model")
    for name, periods in (("month", pd.period_range("1950-01", periods=30, freq="M")),
                          ("quarter", pd.period_range("1965Q1", periods=30, freq="Q"))):
        path = tmp_path / f"{name}.csv"
        pd.DataFrame({"value": range(30)}, index=periods.rename(name)).to_csv(path)
        status, out, err = forecast(capsys, model, path, "--horizon", str(HORIZON))
        assert status == 0, err
        assert dated_rows(out)[1] == {"value": [str(p) for p in pd.period_range(periods[-1] + 1, periods=HORIZON)]}


def test_a_repeated_date_is_warned_of_but_a_clocks_repeated_hour_is_not(tmp_path, caplog):
    """A monthly CSV with one row written twice (pandas' concat of overlapping frames) is read row by row, said in a
    warning naming the date and lines; an hourly file's hour repeated where summer time ends is no mistake."""
    dates = pd.date_range("1949-01-01", periods=30, freq="MS")
    frame = pd.DataFrame({"date": dates.strftime("%Y-%m-%d"), "passengers": range(30)})
    pd.concat([frame.iloc[:10], frame.iloc[9:]]).to_csv(tmp_path / "twice.csv", index=False)
    with caplog.at_level(logging.WARNING):
        [read] = TimeSeriesReader(tmp_path / "twice.csv", lookback=4, horizon=2)._load_file(tmp_path / "twice.csv")
    assert len(read.values) == 31
    assert [record.getMessage() for record in caplog.records] == [
        f"{tmp_path / 'twice.csv'}: the dates of passengers repeat 1 time(s), first {dates[9]:%Y-%m-%d} (lines 11 and "
        "12): each row is read as a step of its own"]
    caplog.clear()
    hours = [f"2023-10-29 {h:02d}:00:00" for h in (0, 1, 2, 2, 3, 4, 5)]  # local time: 02:00 twice
    (tmp_path / "clock.csv").write_text("\n".join(["date,load"] + [f"{h},{k}" for k, h in enumerate(hours)]) + "\n")
    with caplog.at_level(logging.WARNING):
        TimeSeriesReader(tmp_path / "clock.csv", lookback=2, horizon=1)._load_file(tmp_path / "clock.csv")
    assert caplog.records == []


def test_year_columns_of_real_files_date_the_forecast_in_periods(tmp_path, capsys):
    """statsmodels' real files number their steps rather than date them: sunspots and nile by a YEAR / year column
    (1700.0 ... 2008.0 as pandas writes floats), macrodata by year and quarter columns. The forecast continues them
    as pandas' Periods continue the last row's (`pd.Period(year=..., quarter=...) + h`)."""
    import statsmodels.api as sm

    model = save_forecaster(tmp_path / "model")
    sunspots = sm.datasets.sunspots.load_pandas().data
    nile = sm.datasets.nile.load_pandas().data
    macro = sm.datasets.macrodata.load_pandas().data[["year", "quarter", "realgdp", "cpi"]]
    assert sunspots["YEAR"].dtype == float  # (written 1700.0)
    for name, frame, last, columns in (
            ("sunspots", sunspots, pd.Period(year=int(sunspots["YEAR"].iloc[-1]), freq="Y"), ["SUNACTIVITY"]),
            ("nile", nile, pd.Period(year=int(nile["year"].iloc[-1]), freq="Y"), ["volume"]),
            ("macrodata", macro, pd.Period(year=int(macro["year"].iloc[-1]), quarter=int(macro["quarter"].iloc[-1]),
                                           freq="Q"), ["realgdp", "cpi"])):
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
        status, out, err = forecast(capsys, model, tmp_path / f"{name}.csv", "--horizon", str(HORIZON))
        assert status == 0, err
        assert dated_rows(out)[1] == {column: [str(last + h) for h in range(1, HORIZON + 1)] for column in columns}


def test_a_year_column_that_is_no_year_leaves_the_forecast_undated(tmp_path, capsys):
    """A `year` column of a fraction (1700.5) or a `quarter` of 5 dates nothing: the forecast has no dates."""
    model = save_forecaster(tmp_path / "model")
    for name, frame in (("fraction", pd.DataFrame({"year": [1700.5 + k for k in range(30)], "value": range(30)})),
                        ("quarter", pd.DataFrame({"year": [1959 + k // 5 for k in range(30)],
                                                  "quarter": [k % 5 + 1 for k in range(30)], "value": range(30)}))):
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
        status, out, err = forecast(capsys, model, tmp_path / f"{name}.csv", "--horizon", str(HORIZON))
        assert status == 0, err
        assert "timestamp" not in out.splitlines()[0], name


def test_a_column_of_iso_dates_dates_the_forecast_whatever_its_name(tmp_path, capsys, caplog):
    """pandas' `to_csv` of a series or frame on an unnamed DatetimeIndex heads the dates' column "" (the commonest
    way a series reaches a CSV); a long-format file may name its dates in another language ("Datum"): a column of ISO
    dates alone dates the rows whatever its name, orders a long-format file's rows, and is no unread column."""
    model = save_forecaster(tmp_path / "model")
    index = pd.date_range("2020-01-01", periods=40, freq="D")
    pd.Series(range(40), index=index).to_csv(tmp_path / "series.csv")
    pd.DataFrame({"load": range(40), "price": range(40)}, index=index).to_csv(tmp_path / "frame.csv")
    assert (tmp_path / "series.csv").read_text().startswith(",0\n2020-01-01,")
    expected = list(pd.date_range(index[-1], periods=HORIZON + 1, freq="D")[1:].strftime("%Y-%m-%d"))
    for name, columns in (("series", ["0"]), ("frame", ["load", "price"])):
        status, out, err = forecast(capsys, model, tmp_path / f"{name}.csv", "--horizon", str(HORIZON))
        assert status == 0, err
        assert dated_rows(out)[1] == {column: expected for column in columns}, name
    long = pd.DataFrame({"Datum": list(index.strftime("%Y-%m-%d")) * 2, "Filiale": ["A"] * 40 + ["B"] * 40,
                         "Umsatz": range(80)}).sample(frac=1, random_state=0)  # shuffled: the dates order the rows
    long.to_csv(tmp_path / "long.csv", index=False)
    with caplog.at_level(logging.WARNING):
        status, out, err = forecast(capsys, model, tmp_path / "long.csv", "--horizon", str(HORIZON),
                                    "--id-column", "Filiale")
    assert status == 0, err
    assert [record.getMessage() for record in caplog.records if "read as no series" in record.getMessage()] == []
    assert dated_rows(out)[1] == {"Filiale=A Umsatz": expected, "Filiale=B Umsatz": expected}
    long.sort_values(["Filiale", "Datum"]).to_csv(tmp_path / "sorted.csv", index=False)
    status, in_order, err = forecast(capsys, model, tmp_path / "sorted.csv", "--horizon", str(HORIZON),
                                     "--id-column", "Filiale")
    assert status == 0, err
    assert sorted(in_order.splitlines()) == sorted(out.splitlines())  # (series in the order they first appear)


@pytest.mark.parametrize("written", ["%d-%m-%Y", "%m/%d/%Y", "%-m/%-d/%y", "%d.%m.%Y", "%Y/%m/%d"])
def test_dates_of_numbers_date_and_order_as_iso_dates_do(tmp_path, capsys, written):
    """Spreadsheets and retailers write dates of numbers in local orders: Walmart's weekly sales on Kaggle
    (Store,Date,Weekly_Sales with Date 05-02-2010, day first), US exports (1/31/24), German (31.01.2024), East Asian
    (2024/01/31). A long-format file so written, its rows shuffled, forecasts exactly as the same file with ISO
    dates, each series dated as pandas continues its weeks; a monthly column on the 1st (every day and month 12 or
    less) is told by which order steps regularly."""
    model = save_forecaster(tmp_path / "model")
    weeks = pd.date_range("2010-02-05", periods=30, freq="W-FRI")
    frame = pd.DataFrame({"Store": [1] * 30 + [2] * 30, "Date": list(weeks) * 2, "Weekly_Sales": range(60)})
    frame = frame.sample(frac=1, random_state=0)
    outputs = []
    for name, dates in (("iso", frame["Date"].dt.strftime("%Y-%m-%d")), ("local", frame["Date"].dt.strftime(written))):
        frame.assign(Date=dates).to_csv(tmp_path / f"{name}.csv", index=False)
        status, out, err = forecast(capsys, model, tmp_path / f"{name}.csv", "--horizon", str(HORIZON),
                                    "--id-column", "Store")
        assert status == 0, err
        outputs.append(out)
    assert outputs[1] == outputs[0]
    expected = list(pd.date_range(weeks[-1], periods=HORIZON + 1, freq="W-FRI")[1:].strftime("%Y-%m-%d"))
    assert dated_rows(outputs[0])[1] == {"Store=1 Weekly_Sales": expected, "Store=2 Weekly_Sales": expected}
    months = pd.date_range("2019-01-01", periods=24, freq="MS")
    pd.DataFrame({"Date": months.strftime(written), "sales": range(24)}).to_csv(tmp_path / "monthly.csv", index=False)
    status, out, err = forecast(capsys, model, tmp_path / "monthly.csv", "--horizon", str(HORIZON))
    assert status == 0, err
    assert dated_rows(out)[1] == {"sales": list(pd.date_range("2021-01-01", periods=HORIZON, freq="MS")
                                                .strftime("%Y-%m-%d"))}


def test_dates_whose_order_the_column_does_not_tell_leave_the_forecast_undated(tmp_path, capsys, caplog):
    """Three monthly rows on the 1st (01/01/2020, 01/02/2020, 01/03/2020) step regularly read either way (months, or
    days): no timestamp, and a warning naming the column's first cell and what it would take."""
    model = save_forecaster(tmp_path / "model")
    (tmp_path / "few.csv").write_text("Date,sales\n" + "".join(f"01/0{m}/2020,{m}\n" for m in range(1, 10)))
    with caplog.at_level(logging.WARNING):
        status, out, err = forecast(capsys, model, tmp_path / "few.csv", "--horizon", str(HORIZON))
    assert status == 0, err
    assert "timestamp" not in out.splitlines()[0]
    [warning] = [record.getMessage() for record in caplog.records if "not dated" in record.getMessage()]
    assert "the date column 'Date' holds '01/01/2020'" in warning and "day and month order" in warning


def test_a_year_by_month_table_is_dated_by_its_months(tmp_path, capsys):
    """statsmodels' real elnino (YEAR,JAN,...,DEC, 1950-2010) is one monthly series read year by year: its forecast
    continues from January 2011; a NOAA-style table whose last year ends in May continues from June."""
    import statsmodels.api as sm

    model = save_forecaster(tmp_path / "model")
    elnino = sm.datasets.elnino.load_pandas().data
    elnino.to_csv(tmp_path / "elnino.csv", index=False)
    last = pd.Period(year=int(elnino["YEAR"].iloc[-1]), month=12, freq="M")
    status, out, err = forecast(capsys, model, tmp_path / "elnino.csv", "--horizon", str(HORIZON))
    assert status == 0, err
    assert dated_rows(out)[1] == {"JAN..DEC by YEAR": [str(last + h) for h in range(1, HORIZON + 1)]}
    lines = ["Year,Jan,Feb,Mar,Apr,May,Jun,Jul,Aug,Sep,Oct,Nov,Dec,Annual"]
    lines += [f"{year}," + ",".join(str(year + m / 10) for m in range(12)) + ",0" for year in (2021, 2022)]
    lines.append("2023," + ",".join(str(m) for m in range(5)) + "," * 8)  # June to December and the annual empty
    (tmp_path / "noaa.csv").write_text("\n".join(lines) + "\n")
    status, out, err = forecast(capsys, model, tmp_path / "noaa.csv", "--horizon", str(HORIZON))
    assert status == 0, err
    assert dated_rows(out)[1] == {"Jan..Dec by Year": ["2023-06", "2023-07", "2023-08"]}


def test_times_with_a_zone_date_the_forecast_in_utc(tmp_path, capsys):
    """Open Power System Data's hourly load file dates each row twice, utc_timestamp (2020-10-24T22:00:00Z) and
    cet_cest_timestamp (local time with its offset, +0200 then +0100 once summer time ends, the hour 02:00 twice):
    either column dates the forecast in UTC as pandas continues it, a long-format file of such local times is
    ordered through the repeated hour, and an aware Parquet column reads as its CSV does."""
    model = save_forecaster(tmp_path / "model")
    utc = pd.date_range("2020-10-24 00:00", periods=30, freq="h", tz="UTC")  # (ending 2020-10-25 05:00 UTC)
    local = utc.tz_convert("Europe/Berlin")
    assert list(local.strftime("%H")[-6:]) == ["02", "02", "03", "04", "05", "06"]  # (in the model's look-back of 8)
    expected = [str(t) for t in pd.date_range(utc[-1], periods=HORIZON + 1, freq="h")[1:]]
    frame = pd.DataFrame({"utc_timestamp": utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
                          "cet_cest_timestamp": local.strftime("%Y-%m-%dT%H:%M:%S%z"), "DE_load_actual": range(30)})
    frame.to_csv(tmp_path / "opsd.csv", index=False)
    frame.drop(columns="utc_timestamp").to_csv(tmp_path / "local.csv", index=False)
    pd.DataFrame({"DE_load_actual": range(30)}, index=local.rename("cet_cest_timestamp")).to_parquet(
        tmp_path / "aware.parquet")
    for name in ("opsd.csv", "local.csv", "aware.parquet"):
        status, out, err = forecast(capsys, model, tmp_path / name, "--horizon", str(HORIZON))
        assert status == 0, err
        assert dated_rows(out)[1] == {"DE_load_actual": expected}, name
    in_time_order = [line.rsplit(",", 1)[1] for line in out.splitlines()[1:]]
    long = pd.concat([frame.drop(columns="utc_timestamp").assign(zone=zone) for zone in ("DE", "AT")])
    long.to_csv(tmp_path / "sorted.csv", index=False)
    long.sample(frac=1, random_state=0).to_csv(tmp_path / "shuffled.csv", index=False)
    outputs = []
    for name in ("sorted.csv", "shuffled.csv"):
        status, out, err = forecast(capsys, model, tmp_path / name, "--horizon", str(HORIZON), "--id-column", "zone")
        assert status == 0, err
        outputs.append(out)
    assert sorted(outputs[1].splitlines()) == sorted(outputs[0].splitlines())  # (series in order of appearance)
    assert dated_rows(outputs[1])[1] == {"zone=AT DE_load_actual": expected, "zone=DE DE_load_actual": expected}
    # each group forecasts as the one series in time order does (the hour 02:00+0200 before 02:00+0100)
    assert [line.rsplit(",", 1)[1] for line in outputs[1].splitlines()[1:] if line.startswith("zone=DE")] == \
        in_time_order
