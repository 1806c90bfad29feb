"""CSVs whose rows are series and whose columns are time steps, as the forecasting competitions publish them: M4's
Daily-train.csv ("V1","V2",...: V1 the series' id, shorter series padded with empty cells), M5's
sales_train_validation.csv (id columns, then d_1 ... d_N) and Kaggle's web traffic train_1.csv (Page, then one
column per date). Each row is read exactly as the same values written as a row of a GluonTS JSON Lines file (the
independent expectation); a file with a date column keeps a series per column (Informer's electricity.csv)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from modrwkv.data.readers import DataError, TimeSeriesReader
from test_series_long_format import windows


def write_m4(path: Path, lengths: dict[str, int]) -> dict[str, list[float]]:
    rng = np.random.default_rng(4)
    width = max(lengths.values())
    series = {name: [round(float(v), 1) for v in 1000 + np.cumsum(rng.normal(0, 5, length))]
              for name, length in lengths.items()}
    rows = [",".join(f'"V{k}"' for k in range(1, width + 2))]
    for name, values in series.items():
        cells = [f'"{name}"'] + [f'"{v}"' for v in values] + ['""'] * (width - len(values))
        rows.append(",".join(cells))
    path.write_text("\n".join(rows) + "\n")
    return series


def as_series_rows(path: Path, series: dict[str, list[float]]) -> Path:
    path.write_text("".join(json.dumps({"item_id": name, "start": "2020-01-01", "target": values}) + "\n"
                            for name, values in series.items()))
    return path


def test_m4_rows_are_series_padded_to_the_longest(tmp_path):
    path = tmp_path / "Daily-train.csv"
    series = write_m4(path, {"D1": 60, "D2": 35, "D3": 48})
    rows = as_series_rows(tmp_path / "rows.jsonl", series)
    for split in ("train", "val", "test"):
        got = windows(TimeSeriesReader(path, lookback=12, horizon=4, split=split, standardize=True))
        assert got and got == windows(TimeSeriesReader(rows, lookback=12, horizon=4, split=split, standardize=True))
    samples = list(TimeSeriesReader(path, lookback=12, horizon=4))
    assert len(samples) == (60 - 15) + (35 - 15) + (48 - 15)  # each row its own length, the padding left out
    first = samples[0]
    assert (first.meta["series"], first.meta["columns"], first.source) == ("V1=D1", ["V2..V61"], f"{path}:2:V2")
    assert samples[-1].source == f"{path}:4:V{2 + 48 - 16}"
    assert TimeSeriesReader(path, lookback=12, horizon=4).series_columns() == ["V2..V61"]


def test_m5_and_web_traffic_rows_over_their_step_and_date_columns(tmp_path):
    rng = np.random.default_rng(5)
    days = 40
    m5 = tmp_path / "sales_train_validation.csv"
    sales = {f"FOODS_1_00{k}_CA_1_validation": [int(v) for v in rng.integers(0, 9, days)] for k in (1, 2)}
    m5.write_text("id,item_id,dept_id,cat_id,store_id,state_id," + ",".join(f"d_{d}" for d in range(1, days + 1))
                  + "\n" + "".join(f"{name},{name[:11]},FOODS_1,FOODS,CA_1,CA," + ",".join(map(str, values)) + "\n"
                                   for name, values in sales.items()))
    got = list(TimeSeriesReader(m5, lookback=8, horizon=4))  # (item_id does not make it long format)
    assert [s.meta["series"] for s in got][::days - 11] == [
        f"id={name} item_id={name[:11]} dept_id=FOODS_1 cat_id=FOODS store_id=CA_1 state_id=CA" for name in sales]
    reference = as_series_rows(tmp_path / "m5.jsonl", {name: [float(v) for v in values] for name, values in sales.items()})
    assert windows(TimeSeriesReader(m5, lookback=8, horizon=4)) == windows(TimeSeriesReader(reference, lookback=8,
                                                                                              horizon=4))
    traffic = tmp_path / "train_1.csv"
    visits = {"2NE1_zh.wikipedia.org_all-access_spider": [18.0, 11.0, 5.0, 13.0, 14.0, 9.0, 9.0, 22.0, 26.0, 24.0,
                                                          19.0, 10.0, 14.0, 15.0],
              "AKB48_zh.wikipedia.org_all-access_spider": [35.0, 13.0, 10.0, 94.0, 4.0, 26.0, 14.0, 9.0, 11.0, 16.0,
                                                           16.0, 11.0, 23.0, 145.0]}
    dates = [f"2015-07-{day:02d}" for day in range(1, 15)]
    traffic.write_text("Page," + ",".join(dates) + "\n" + "".join(
        f"{page}," + ",".join(f"{v:g}" for v in values) + "\n" for page, values in visits.items()))
    reader = TimeSeriesReader(traffic, lookback=6, horizon=2)
    assert windows(reader) == windows(TimeSeriesReader(as_series_rows(tmp_path / "t.jsonl", visits), lookback=6,
                                                       horizon=2))
    assert next(iter(reader)).source == f"{traffic}:2:2015-07-01"


def test_a_date_column_or_no_row_names_keeps_a_series_per_column(tmp_path):
    electricity = tmp_path / "electricity.csv"  # Informer's: date, then one column per client numbered 0 ... N
    electricity.write_text("date," + ",".join(str(k) for k in range(12)) + "\n" + "".join(
        f"2016-07-01 {hour:02d}:00:00," + ",".join(str(hour * 10 + k) for k in range(12)) + "\n" for hour in range(20)))
    assert TimeSeriesReader(electricity, lookback=4, horizon=2).series_columns() == [str(k) for k in range(12)]
    numbers = tmp_path / "sensors.csv"  # numbered columns, no names for the rows: each column a sensor
    numbers.write_text(",".join(f"s{k}" for k in range(12)) + "\n" + "".join(
        ",".join(str(t + k) for k in range(12)) + "\n" for t in range(20)))
    assert TimeSeriesReader(numbers, lookback=4, horizon=2).series_columns() == [f"s{k}" for k in range(12)]
    # options that choose among a file's column series do not apply to its rows
    m4 = tmp_path / "Hourly-train.csv"
    write_m4(m4, {"H1": 30, "H2": 30})
    with pytest.raises(DataError, match=r"its rows are series \(its columns V2 \.\.\. V31 are their time steps\): "
                                        r"data.options.columns chooses among"):
        list(TimeSeriesReader(m4, lookback=4, horizon=2, columns=["V2"]))


def test_a_year_per_row_and_a_month_per_column_is_one_monthly_series(tmp_path):
    """statsmodels' elnino (real: sea surface temperatures, 1950-2010, YEAR,JAN,...,DEC) as pandas writes it: one
    series of 732 months read year by year, equal to the same values as one CSV column; a year's summary column
    is not read, the last year's months still to come are left out, rows out of order are put in order and a
    missing year is refused. `columns` still reads a month's column as a yearly series."""
    sm = pytest.importorskip("statsmodels.api")
    table = sm.datasets.elnino.load_pandas().data
    months = table.columns[1:]
    path = tmp_path / "elnino.csv"
    table.to_csv(path, index=False)
    column = tmp_path / "column.csv"
    column.write_text("sst\n" + "".join(f"{float(v)!r}\n" for v in table[months].to_numpy().ravel()))
    for split in ("train", "val", "test"):
        got = windows(TimeSeriesReader(path, lookback=24, horizon=12, split=split, standardize=True))
        assert got and got == windows(TimeSeriesReader(column, lookback=24, horizon=12, split=split,
                                                       standardize=True))
    reader = TimeSeriesReader(path, lookback=24, horizon=12)
    samples = list(reader)
    assert len(samples) == 61 * 12 - 36 + 1 and reader.series_columns() == ["JAN..DEC by YEAR"]
    assert (samples[0].source, samples[13].source) == (f"{path}:2:JAN", f"{path}:3:FEB")
    # GISTEMP-like: a year's mean after the months, this year's months to come empty, years listed newest first
    shuffled = table.iloc[::-1].assign(**{"J-D": table[months].mean(axis=1)})
    shuffled.loc[shuffled.index[0], ["NOV", "DEC"]] = None
    shuffled.to_csv(path, index=False)
    (series,) = TimeSeriesReader(path, lookback=24, horizon=12)._load_file(path)
    assert np.array_equal(series.values, table[months].to_numpy().ravel()[:-2])
    assert [v.shape for v in TimeSeriesReader(path, lookback=12, horizon=4, columns=["JAN"]).training_rows()] == [
        (61,)]
    table.drop(index=30).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"column 'YEAR': year 1979 \(line 31\) is followed by 1981 \(line 32\)"):
        list(TimeSeriesReader(path, lookback=24, horizon=12))
