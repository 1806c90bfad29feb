"""JSON / JSON Lines records of scalar fields and .xlsx workbooks holding time series, as pandas writes a DataFrame
(`to_json(orient="records", lines=True)`, `orient="records"`, the default `to_json()`, `to_excel(index=False)`):
each reads exactly as the same DataFrame written with `to_csv` (the independent expectation: same windows, targets,
scaling, splits and series), its rows named as the JSON readers name records (a JSONL line, an array's "[i]") or
as Excel numbers a worksheet's rows; GluonTS series rows, QA, LLaVA and hub-like records stay what they are."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from modrwkv.cli import main
from modrwkv.data.readers import DataError, TimeSeriesReader
from modrwkv.data.readers.base import is_series_file
from modrwkv.data.readers.detect import FormatUnknown, detect_format
from modrwkv.evaluation.tasks import TASKS, custom_task
from test_series_tables import reads_as_its_csv, store

pytestmark = pytest.mark.filterwarnings("ignore:.*'epoch' date format")  # (pandas 3 on its default)
pd = pytest.importorskip("pandas")
openpyxl = pytest.importorskip("openpyxl")


def write(frame: pd.DataFrame, folder: Path, name: str, how: str) -> tuple[Path, Path]:
    """`frame` written with `to_csv(index=False)` and as `how` says: JSON Lines records, an array of records, pandas'
    default `to_json()` (columns of {row: value}), each with dates as epoch milliseconds (pandas' default) or ISO
    text ("...-iso"), or an .xlsx workbook. (`to_json` writes 10 decimal places unless told more, 15 at most:
    the values are rounded to 9 decimals, which 15 digits hold, so the files hold the same numbers.) "...-text": its
    numbers stored as text (`astype(str)`, Excel's "number stored as text"), which the CSV holds as text too."""
    frame = frame.round({name: 9 for name in frame.select_dtypes('float').columns})
    if how.endswith("-text"):
        frame = frame.astype({column: str for column in frame.select_dtypes("number").columns})
        how = how.removesuffix("-text")
    csv = folder / f"{name}.csv"
    frame.to_csv(csv, index=False)
    dates = "iso" if how.endswith("-iso") else "epoch"
    kind = how.removesuffix("-iso")
    if kind == "xlsx":
        table = folder / f"{name}.xlsx"
        frame.to_excel(table, index=False)
    elif kind == "jsonl":
        table = folder / f"{name}.jsonl"
        frame.to_json(table, orient="records", lines=True, date_format=dates, double_precision=15)
    else:
        table = folder / f"{name}.json"
        frame.to_json(table, orient="records" if kind == "array" else "columns", date_format=dates,
                      double_precision=15)
    return csv, table


def as_record(source: str, csv: Path, table: Path) -> str:
    """A CSV window's source as the table's: its line n (the header is line 1) is the JSONL file's line n - 1, a
    JSON array's (or pandas' columns') record [n - 2], a worksheet's row n (its header is row 1)."""
    match = re.fullmatch(rf"{re.escape(str(csv))}:(\d+)(.*)", source)
    assert match, source
    line = int(match[1])
    where = {".jsonl": f"{line - 1}", ".json": f"[{line - 2}]", ".xlsx": f"row {line}"}[table.suffix]
    return f"{table}:{where}{match[2]}"


@pytest.mark.parametrize("layout, how, options", [
    ("ett", "jsonl", {}),
    ("ett", "array-iso", {"multivariate": True}),
    ("ett", "columns", {}),
    ("ett", "xlsx", {}),
    ("ett", "xlsx-text", {}),
    ("ett", "jsonl-text", {}),
    ("nixtla", "jsonl", {}),
    ("m5", "array-text", {}),
    ("nixtla", "xlsx", {}),
    ("store", "array", {"id_columns": ["store_nbr", "family"]}),
    ("m5", "jsonl-iso", {}),
    ("m5", "xlsx", {}),
])
def test_records_and_workbooks_read_as_the_same_dataframe_written_as_csv(tmp_path, layout, how, options):
    reads_as_its_csv(write, tmp_path, layout, how, options, as_record)


def test_cells_are_the_values_as_csv_text(tmp_path):
    """Numbers keep every float64 digit, null and NaN are gaps, a worksheet's dates are ISO text."""
    values = [0.1, 1 / 3, None, 1e-7, 2.0**60, 123456789.123, 7, 8.0]
    records = tmp_path / "load.jsonl"
    records.write_text("".join(json.dumps({"time": k, "load": value}) + "\n" for k, value in enumerate(values)))
    reader = TimeSeriesReader(records, lookback=2, horizon=1)
    assert reader.series_columns() == ["load"]  # (`time`: a date column)
    np.testing.assert_array_equal(reader.training_rows()[0], [np.nan if v is None else v for v in values])
    workbook = tmp_path / "load.xlsx"
    frame = pd.DataFrame({"date": pd.to_datetime(["2020-01-01", "2020-01-01 06:00", "2020-01-02"], format="ISO8601"),
                          "load": [1 / 3, None, 2.5]})
    frame.to_excel(workbook, index=False)
    from modrwkv.data.readers.seriestables import table_cells

    assert table_cells(workbook) == (["date", "load"], [["2020-01-01", repr(1 / 3)], ["2020-01-01 06:00:00", ""],
                                                        ["2020-01-02", "2.5"]], ["row 2", "row 3", "row 4"])


def test_bad_records_and_rows_are_named(tmp_path):
    jsonl = tmp_path / "gaps.jsonl"
    jsonl.write_text('{"x": 1.0, "y": 2}\n\n{"x": 2.0, "y": 3}\n{"x": 3.0}\n')
    with pytest.raises(DataError, match=re.escape(f"{jsonl}:4: no field 'y', where the first record's fields are "
                                                  "['x', 'y']: every record of a table holds the same fields")):
        list(TimeSeriesReader(jsonl, lookback=1, horizon=1))
    array = tmp_path / "extra.json"
    array.write_text(json.dumps([{"x": 1.0}, {"x": 2.0}, {"x": 3.0, "z": 1}]))
    assert is_series_file(array)  # (told by what it holds; its reader names the record that is wrong)
    with pytest.raises(DataError, match=re.escape(f"{array}:[2]: a field 'z', where the first record's fields")):
        list(TimeSeriesReader(array, lookback=1, horizon=1))
    listed = tmp_path / "listed.jsonl"
    listed.write_text('{"x": 1.0}\n{"x": [2.0]}\n')
    with pytest.raises(DataError, match=re.escape(f"{listed}:2: field 'x' holds a list: a table's cells are")):
        list(TimeSeriesReader(listed, lookback=1, horizon=1))
    damaged = tmp_path / "damaged.json"
    damaged.write_text(json.dumps([{"load": value} for value in (1.5, 2, "x", 4)]))
    with pytest.raises(DataError, match=re.escape(f"{damaged}:[2]: column 'load': 'x' is not a number, though most")):
        list(TimeSeriesReader(damaged, lookback=1, horizon=1))
    # stacked rows: named as the CSV's lines are, in each container's terms
    for how, rows in (("array", "records [0] and [1]"), ("jsonl", "lines 1 and 2"), ("xlsx", "rows 2 and 3")):
        table = write(store(4), tmp_path, f"store-{how}", how)[1]
        with pytest.raises(DataError, match=re.escape(f"{table}: the date column 'date' repeats 2013-01-01 ({rows})")):
            list(TimeSeriesReader(table, lookback=1, horizon=1))
    wide = tmp_path / "wide.xlsx"
    sheet = openpyxl.Workbook()
    for row in (["date", "load"], ["2020-01-01", 1.0], [None, None], ["2020-01-02", 2.0, "stray"]):
        sheet.active.append(row)
    sheet.save(wide)
    with pytest.raises(DataError, match=re.escape(f"{wide}:row 4: a value in column 3 ('stray'), beyond the header "
                                                  "row's 2 columns")):
        list(TimeSeriesReader(wide, lookback=1, horizon=1))


def test_workbooks_name_what_they_hold(tmp_path, monkeypatch, caplog):
    old = tmp_path / "sales.xls"
    old.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")  # (the OLE2 file an .xls is)
    expected = ("an .xls workbook (Excel 97-2003's binary format) is not read: save it as .xlsx (Excel Workbook) or as "
                ".csv")
    with pytest.raises(FormatUnknown, match=re.escape(f"{old}: {expected}")):
        detect_format(old)
    with pytest.raises(DataError, match=re.escape(f"{old}: {expected}")):
        list(TimeSeriesReader(old, lookback=1, horizon=1))
    words = tmp_path / "cities.xlsx"
    pd.DataFrame({"city": ["Oslo", "Rome"], "label": [1, 2]}).to_excel(words, index=False)
    assert not is_series_file(words)
    with pytest.raises(FormatUnknown, match=re.escape(f"{words}: its first worksheet holds the columns ['city', "
                                                      "'label'], no table of series")):
        detect_format(words)
    sheets = tmp_path / "sheets.xlsx"
    with pd.ExcelWriter(sheets) as writer:
        pd.DataFrame({"load": np.arange(6.0)}).to_excel(writer, sheet_name="hourly", index=False)
        pd.DataFrame({"note": ["x"]}).to_excel(writer, sheet_name="notes", index=False)
    with caplog.at_level(logging.INFO, logger="modrwkv.data.readers.seriestables"):
        assert len(list(TimeSeriesReader(sheets, lookback=2, horizon=1))) == 4
    assert "reading the first worksheet 'hourly' (the workbook's sheets: hourly, notes)" in caplog.text
    monkeypatch.setitem(sys.modules, "openpyxl", None)  # (an installation without the eval / test extras)
    with pytest.raises(FormatUnknown, match=re.escape(f"{sheets}: reading an .xlsx workbook needs openpyxl, which is "
                                                      "not installed: pip install openpyxl")):
        detect_format(sheets)


def test_records_of_other_formats_stay_what_they_are(tmp_path):
    """QA, LLaVA, hub-like image records, text with a label or a score, a QA record with its question misspelt, and
    GluonTS series rows keep their readings."""
    def jsonl(name: str, *records: dict) -> Path:
        path = tmp_path / name
        path.write_text("".join(json.dumps(record) + "\n" for record in records))
        return path

    qa = jsonl("qa.jsonl", {"question": "How many?", "answer": "2", "score": 0.5})
    llava = tmp_path / "llava.json"
    llava.write_text(json.dumps([{"image": "a.png", "conversations": [{"from": "human", "value": "<image>\nWhat?"},
                                                                      {"from": "gpt", "value": "A cat."}]}]))
    hub = jsonl("hub.jsonl", {"image": "a.png", "label": 3}, {"image": "b.png", "label": 1})
    media = jsonl("media.jsonl", {"file": "a.png", "width": 8})
    reviews = jsonl("reviews.jsonl", {"review": "a film I would gladly watch again with all of my friends", "stars": 4})
    labelled = jsonl("sst2.jsonl", {"words": "a fine film", "label": 1})
    # a question misspelt beside a numeric answer, a prompt and its score: records, whose error names their fields
    typo = jsonl("typo.jsonl", {"questoin": "2+2?", "answer": 4}, {"questoin": "3+3?", "answer": 6})
    scored = jsonl("scored.jsonl", {"prompt": "Add 2 and 2", "score": 4})
    for path in (qa, llava, hub, media, reviews, labelled, typo, scored):
        assert not is_series_file(path), path
    with pytest.raises(FormatUnknown, match=re.escape("cannot tell the format from the first record's fields "
                                                      "['answer', 'questoin']")):
        detect_format(typo)
    assert [detect_format(path) for path in (qa, llava)] == ["qa", "llava"]
    gluonts = jsonl("gluonts.jsonl", {"start": "2021-01-01", "target": [float(t) for t in range(20)], "item_id": "a"})
    assert is_series_file(gluonts)
    assert next(iter(TimeSeriesReader(gluonts, lookback=8, horizon=4))).source == f"{gluonts}:1 (item_id 'a') target[0]"


def test_init_and_eval_read_statsmodels_sunspots_as_json(tmp_path, capsys):
    """statsmodels' real sunspots, as `to_json()` writes it, through `modrwkv init` (YEAR left out) and
    `eval --task custom`, as its CSV."""
    sunspots = pytest.importorskip("statsmodels.datasets.sunspots")
    frame = sunspots.load_pandas().data
    assert list(frame.columns) == ["YEAR", "SUNACTIVITY"]
    csv, table = tmp_path / "sun.csv", tmp_path / "sun.json"
    frame.to_csv(csv, index=False)
    frame.to_json(table)
    config = tmp_path / "sun.yaml"
    assert main(["init", "--yes", "--output", str(config), "--lookback", "24", "--horizon", "8",
                 "--data", str(table)]) == 0
    assert "inputs: series (columns: SUNACTIVITY)" in capsys.readouterr().out
    written = yaml.safe_load(config.read_text())
    assert (written["data"]["format"], written["data"]["train"]) == ("series", [str(table)])
    assert custom_task(table) is TASKS["custom-series"]
    task = TASKS["custom-series"].configure(lookback=24, horizon=8)
    scored, reference = task.load(table, "test"), task.load(csv, "test")
    assert [s.reference["target"].tolist() for s in scored] == [s.reference["target"].tolist() for s in reference]
    assert len(scored) == 61 - 8 + 1  # the test rows (20% of 309), after a look-back of rows before them
