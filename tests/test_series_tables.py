"""Parquet and Arrow tables of scalar columns holding time series, as `DataFrame.to_parquet()` and `datasets` write
them (a hub copy of ETTh1, Nixtla's `unique_id,ds,y`, AutoGluon's `item_id,timestamp,target`, Kaggle's Store Sales,
M5's rows over step columns): each reads exactly as the same DataFrame written with `to_csv` (the independent
expectation: same windows, targets, scaling, splits and series), its rows named "row N" where the CSV's lines are
named; tables of records and media rows stay what they are."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

from modrwkv.cli import main
from modrwkv.data.readers import DataError, TimeSeriesReader
from modrwkv.data.readers.base import is_series_file
from modrwkv.data.readers.detect import FormatUnknown, detect_format
from modrwkv.evaluation.tasks import TASKS, custom_task
from modrwkv.training.config import config_from_dict
from modrwkv.training.data import build_reader
from test_series_long_format import windows

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
datasets = pytest.importorskip("datasets")


def ett(rows: int = 120) -> pd.DataFrame:
    """ETTh1's layout: an hourly datetime64 `date`, then the loads and OT; a NaN and a null-to-be (gaps)."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"date": pd.date_range("2016-07-01", periods=rows, freq="h"),
                          **{name: np.round(rng.normal(5, 2, rows), 3) for name in ("HUFL", "HULL", "OT")}})
    frame.loc[7, "HUFL"] = np.nan
    frame.loc[40, "OT"] = None
    frame["OT"] = frame["OT"] * 1 / 3  # full float64 digits, which the cells must keep
    return frame


def nixtla() -> pd.DataFrame:
    """`unique_id` (pandas' category, as Nixtla's files hold it), `ds`, `y`, the rows shuffled."""
    rng = np.random.default_rng(1)
    frame = pd.DataFrame([(name, pd.Timestamp("2020-01-01") + pd.Timedelta(days=day), float(np.sin(day / 3) + k))
                          for k, (name, length) in enumerate((("H1", 90), ("H2", 60))) for day in range(length)],
                         columns=["unique_id", "ds", "y"])
    frame = frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)
    return frame.astype({"unique_id": "category"})


def store(days: int = 40) -> pd.DataFrame:
    """Kaggle's Store Sales train.csv: rows by date, then store, then family."""
    rng = np.random.default_rng(2)
    rows = [(date, store, family, round(float(rng.uniform(0, 500)), 3), int(rng.integers(0, 30)))
            for date in pd.date_range("2013-01-01", periods=days, freq="D").strftime("%Y-%m-%d")
            for store in (1, 2) for family in ("AUTOMOTIVE", "BREAD/BAKERY")]
    frame = pd.DataFrame(rows, columns=["date", "store_nbr", "family", "sales", "onpromotion"])
    return frame.rename_axis("id").reset_index()


def m5(days: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    names = [f"FOODS_1_00{k}_CA_1_validation" for k in (1, 2, 3)]
    steps = pd.DataFrame(rng.integers(0, 9, (len(names), days)), columns=[f"d_{d}" for d in range(1, days + 1)])
    return pd.concat([pd.DataFrame({"id": names, "item_id": [name[:11] for name in names], "state_id": "CA"}), steps],
                     axis=1)


def write(frame: pd.DataFrame, folder: Path, name: str, how: str) -> tuple[Path, Path]:
    """`frame` written with `to_csv` and as a table: by pandas (`to_parquet`; "indexed": with its index, a column
    of both; `to_feather`), by `datasets` as a hub copy holds it
    (`to_parquet`, with its `huggingface` features), or by `datasets`' `save_to_disk` (an Arrow stream file);
    "...-text": its numbers stored as text (`astype(str)`), which the CSV holds as text too."""
    if how.endswith("-text"):
        frame = frame.astype({column: str for column in frame.select_dtypes("number").columns})
        how = how.removesuffix("-text")
    csv = folder / f"{name}.csv"
    if how == "indexed":  # an index pandas stores as a column (to_csv writes it first, under an empty name)
        frame = frame.set_axis(pd.Index(np.arange(len(frame)) * 2 + 1))
    frame.to_csv(csv, index=how == "indexed")
    if how in ("pandas", "indexed"):
        table = folder / f"{name}.parquet"
        frame.to_parquet(table)
    elif how == "feather":  # the Arrow IPC file format, lz4-compressed as pandas writes it
        table = folder / f"{name}.feather"
        frame.to_feather(table)
    elif how == "hub":
        table = folder / f"{name}.parquet"
        datasets.Dataset.from_pandas(frame, preserve_index=False).to_parquet(str(table))
    else:
        datasets.Dataset.from_pandas(frame, preserve_index=False).save_to_disk(str(folder / name))
        table = folder / name / "data-00000-of-00001.arrow"
    return csv, table


def as_row(source: str, csv: Path, table: Path) -> str:
    """A CSV window's source as the table's: its line n is the table's row n - 2 (the header is line 1; rows count
    from 0)."""
    match = re.fullmatch(rf"{re.escape(str(csv))}:(\d+)(.*)", source)
    assert match, source
    return f"{table}:row {int(match[1]) - 2}{match[2]}"


def same_reading(csv: Path, table: Path, named: Callable[[str, Path, Path], str] = as_row, **options) -> int:
    """Asserts that the table reads as its CSV with `options`, for every split (standardised) and unsplit, its
    windows' sources the CSV's as `named` names them in the table; the number of windows unsplit."""
    for split in ("train", "val", "test", None):
        kept = {**options, **({"split": split, "standardize": True} if split else {})}
        by_csv, by_table = TimeSeriesReader(csv, **kept), TimeSeriesReader(table, **kept)
        expected, got = list(by_csv), list(by_table)
        assert repr(windows(got)) == repr(windows(expected)) and got  # (as text: gaps, NaN, compare equal)
        assert [s.meta["series"] for s in got] == [s.meta["series"].replace(str(csv), str(table)) for s in expected]
        assert [s.source for s in got] == [named(s.source, csv, table) for s in expected]
        assert by_table.series_columns() == by_csv.series_columns()
        assert by_table.long_format() == [(str(table), ids, count) for _, ids, count in by_csv.long_format()]
        assert by_table.report.skipped == by_csv.report.skipped
    return len(got)


@pytest.mark.parametrize("layout, how, options", [
    ("ett", "hub", {}),
    ("ett", "pandas", {"multivariate": True}),
    ("ett", "pandas-text", {}),
    ("store", "pandas-text", {"id_columns": ["store_nbr", "family"]}),
    ("ett", "indexed", {}),
    ("nixtla", "pandas", {}),
    ("nixtla", "feather", {}),
    ("store", "arrow", {"id_columns": ["store_nbr", "family"]}),
    ("m5", "pandas", {}),
])
def test_a_table_reads_as_the_same_dataframe_written_as_csv(tmp_path, layout, how, options):
    reads_as_its_csv(write, tmp_path, layout, how, options)


def reads_as_its_csv(writer: Callable[..., tuple[Path, Path]], folder: Path, layout: str, how: str,
                     options: dict, named: Callable[[str, Path, Path], str] = as_row) -> None:
    """Asserts that the `layout` frame written as a table by `writer` (`how`) is told as series and reads as the
    frame's CSV (`same_reading`), with the windows counted by hand."""
    frame = {"ett": ett, "nixtla": nixtla, "store": store, "m5": m5}[layout]()
    csv, table = writer(frame, folder, layout, how)
    assert is_series_file(table) and detect_format(table) == "series"
    # the windows of lookback 8 + horizon 4 of each series, but ETT's 4 whose target holds OT's gap at row 40
    expected = {"ett": 109 - 4 if options.get("multivariate") else 3 * 109 - 4, "nixtla": (90 - 11) + (60 - 11),
                "store": 8 * (40 - 11), "m5": 3 * (40 - 11)}
    assert same_reading(csv, table, named, lookback=8, horizon=4, **options) == expected[layout]


def test_cells_keep_the_tables_float64s_and_nan_and_null_are_gaps(tmp_path):
    values = [0.1, 1 / 3, float("nan"), None, 1e-7, 2.0**60, -5e-324, 123456789.123, 7.0, 8.0]
    table = tmp_path / "load.parquet"
    pq.write_table(pa.table({"time": pa.array(range(10), pa.timestamp("s")), "load": pa.array(values, pa.float64()),
                             "count": pa.array(range(10), pa.int32())}), table)
    assert pa.compute.is_nan(pq.read_table(table)["load"]).to_pylist()[2:4] == [True, None]  # (a NaN, then a null)
    reader = TimeSeriesReader(table, lookback=2, horizon=1)
    assert reader.series_columns() == ["load", "count"]  # (`time`: a date column)
    load, count = reader.training_rows()
    np.testing.assert_array_equal(load, [np.nan if value is None else value for value in values])
    np.testing.assert_array_equal(count, np.arange(10.0))
    # bad records: the windows whose target is row 2 or 3 (starts 0 and 1) and the one whose look-back is only those
    # gaps (start 2); a look-back with a gap beside a value is read (start 3)
    assert [s.meta["start"] for s in reader if s.meta["series"] == "load"] == [3, 4, 5, 6, 7]
    assert reader.report.skipped == {"non_finite": 3}


def test_stacked_rows_without_ids_are_refused_naming_the_rows(tmp_path):
    csv, table = write(store(), tmp_path, "store", "pandas")
    with pytest.raises(DataError) as by_csv:
        list(TimeSeriesReader(csv, lookback=8, horizon=4))
    with pytest.raises(DataError) as by_table:
        list(TimeSeriesReader(table, lookback=8, horizon=4))
    assert "(lines 2 and 3)" in str(by_csv.value)
    assert str(by_table.value) == str(by_csv.value).replace(str(csv), str(table)).replace("lines 2 and 3",
                                                                                           "rows 0 and 1")
    assert str(by_table.value) == (
        f"{table}: the date column 'date' repeats 2013-01-01 (rows 0 and 1): the file holds several series one under "
        "another (long format); name the columns that tell them apart: data.options.id_columns (modrwkv init "
        "--id-columns store_nbr,family; modrwkv eval --id-column store_nbr --id-column family)")
    with pytest.raises(DataError, match=re.escape(f"{table}: the series store_nbr=1 repeats 2013-01-01 in the date "
                                                  "column 'date' (rows 0 and 1): its id columns (store_nbr)")):
        list(TimeSeriesReader(table, lookback=8, horizon=4, id_columns=["store_nbr"]))
    text = tmp_path / "text.parquet"
    pq.write_table(pa.table({"city": ["Oslo", "Rome"], "note": ["a", "b"]}), text)
    with pytest.raises(DataError, match=re.escape(f"{text}: no numeric column among ['city', 'note']")):
        list(TimeSeriesReader(text, lookback=1, horizon=1))
    damaged = tmp_path / "damaged.parquet"
    pq.write_table(pa.table({"load": ["1.5", "2", "x", "4"]}), damaged)
    with pytest.raises(DataError, match=re.escape(f"{damaged}:row 2: column 'load': 'x' is not a number, though most")):
        list(TimeSeriesReader(damaged, lookback=1, horizon=1))


def test_tables_of_records_and_media_are_no_series(tmp_path):
    """QA rows, a hub image table, the_cauldron's rows, a metadata.parquet, text with a label or a score and text
    alone keep their readings (or their errors); a Chronos file of series rows is still read row by row."""
    from test_hub_parquet import cauldron, cifar, pictures, turn

    qa = tmp_path / "qa.parquet"
    pq.write_table(pa.table({"question": ["How many?"], "answer": ["2"], "image": ["a.png"], "score": [0.5]}), qa)
    hub = tmp_path / "cifar.parquet"
    cifar(hub, [0, 1])
    conversations = tmp_path / "cauldron.parquet"
    cauldron(conversations, [pictures(1)], [[turn("What?", "A square.")]])
    assert [detect_format(path) for path in (qa, hub, conversations)] == ["qa", "qa", "llava"]
    metadata = tmp_path / "metadata.parquet"
    pq.write_table(pa.table({"file_name": ["a.png", "b.png"], "width": [8, 9]}), metadata)
    labelled = tmp_path / "sst2.parquet"
    pq.write_table(pa.table({"sentence": ["a fine film"], "label": [1]}), labelled)
    reviews = tmp_path / "reviews.parquet"
    pq.write_table(pa.table({"review": ["a film I would gladly watch again with all of my friends"], "stars": [4.5]}),
                   reviews)
    named = tmp_path / "named.parquet"
    pq.write_table(pa.table({"id": [1, 2], "prompt": ["p", "q"], "response": ["r", "s"]}), named)
    words = tmp_path / "words.parquet"
    pq.write_table(pa.table({"city": ["Oslo"], "note": ["cold"]}), words)
    for path in (qa, hub, conversations, metadata, labelled, reviews, named, words):
        assert not is_series_file(path), path
    for path in (reviews, named, words):
        with pytest.raises(FormatUnknown, match="cannot tell the format from the first record's fields"):
            detect_format(path)
    chronos = tmp_path / "chronos.parquet"
    pq.write_table(pa.table({"id": ["T1"], "timestamp": pa.array([[0] * 20], pa.list_(pa.timestamp("s"))),
                             "target": [[float(t) for t in range(20)]]}), chronos)
    assert is_series_file(chronos)
    assert next(iter(TimeSeriesReader(chronos, lookback=8, horizon=4))).source == f"{chronos}:row 0 (id 'T1') target[0]"


def test_a_table_with_a_list_column_says_which_column_keeps_it_from_being_series(tmp_path):
    """A pandas frame of a date, a list-of-text column and a series (`to_parquet()`): neither records nor a table of
    series, and the error names the list column and the numbers it keeps unread; no advice to drop it where nothing
    numeric would remain."""
    pd = pytest.importorskip("pandas")
    tagged = tmp_path / "tagged.parquet"
    pd.DataFrame({"date": pd.date_range("1949-01-01", periods=3, freq="MS"), "tags": [["a", "b"]] * 3,
                  "passengers": [112.0, 118.0, 132.0]}).to_parquet(tagged)
    with pytest.raises(FormatUnknown) as refused:
        detect_format(tagged)
    assert str(refused.value).endswith(
        "not a time series either: a table of series holds scalar columns only (numbers, dates, ids), but 'tags' "
        "(list<element: string>) is not, and series rows hold a list of numbers ('target'): drop that column to read "
        "['passengers'] as series")
    words = tmp_path / "words.parquet"
    pd.DataFrame({"unique_id": ["x"], "y": [["a", "b"]]}).to_parquet(words)
    with pytest.raises(FormatUnknown, match=r"but 'y' \(list<element: string>\) is not, and series rows hold a list "
                                            r"of numbers \('target'\)$"):
        detect_format(words)


def test_init_and_eval_read_a_long_format_table_as_its_csv(tmp_path, capsys):
    """`modrwkv init --data store.parquet` names the id columns it needs, writes them with --id-columns, and the
    config's reader and `eval --task custom` read the windows of the CSV of the same table."""
    csv, table = write(store(), tmp_path, "store", "pandas")
    config = tmp_path / "store.yaml"
    init = ["init", "--yes", "--output", str(config), "--lookback", "8", "--horizon", "4"]
    assert main([*init, "--data", str(table)]) == 2
    assert "modrwkv init --id-columns store_nbr,family" in capsys.readouterr().err
    assert main([*init, "--data", str(table), "--id-columns", "store_nbr,family"]) == 0
    out = capsys.readouterr().out
    assert "inputs: series (columns: sales, onpromotion; 4 series (store_nbr, family))" in out
    written = yaml.safe_load(config.read_text())
    wide = write(ett(), tmp_path, "ett", "hub")[1]
    assert main([*init, "--data", str(wide), "--output", str(tmp_path / "ett.yaml")]) == 0
    assert "inputs: series (columns: HUFL, HULL, OT)" in capsys.readouterr().out
    assert yaml.safe_load((tmp_path / "ett.yaml").read_text())["data"]["format"] == "series"
    assert (written["data"]["format"], written["data"]["options"]["id_columns"]) == ("series", ["store_nbr", "family"])
    data = config_from_dict(written).data
    from_csv = config_from_dict({**written, "data": {**written["data"], "train": [str(csv)]}}).data
    assert windows(list(build_reader(data))) == windows(list(build_reader(from_csv))) != []
    assert custom_task(table) is TASKS["custom-series"]
    task = TASKS["custom-series"].configure(lookback=8, horizon=4, id_columns=["store_nbr", "family"])
    scored, reference = task.load(table, "test"), task.load(csv, "test")
    assert [(s.id, s.reference["target"].tolist()) for s in scored] == \
        [(s.id, s.reference["target"].tolist()) for s in reference] != []


def test_a_column_empty_in_every_row_is_said_not_dropped_unsaid(tmp_path, caplog):
    """A column with no value (a series all NaN, as pandas writes it: empty cells) is no series: beside another it is
    warned of, alone it is named in the error, which used to say only 'no numeric column among [...]'."""
    lines = ["date,passengers,empty"] + [f"1949-{m:02d}-01,{100 + m}," for m in range(1, 13)]
    (tmp_path / "one.csv").write_text("\n".join(lines) + "\n")
    with caplog.at_level("WARNING", logger="modrwkv.data.readers"):
        read = TimeSeriesReader(tmp_path / "one.csv", lookback=4, horizon=2)._load_file(tmp_path / "one.csv")
    assert [series.label for series in read] == ["passengers"]
    assert [record.getMessage() for record in caplog.records] == [
        f"{tmp_path / 'one.csv'}: column 'empty' is empty in every row (12 rows): no series"]
    (tmp_path / "none.csv").write_text("\n".join(["date,passengers"] + [f"1949-{m:02d}-01," for m in range(1, 13)])
                                       + "\n")
    with pytest.raises(DataError, match=re.escape("no numeric column among ['date', 'passengers'] ('passengers': "
                                                  "empty in every row)")):
        TimeSeriesReader(tmp_path / "none.csv", lookback=4, horizon=2)._load_file(tmp_path / "none.csv")


def test_init_shows_a_readers_warning_about_the_whole_file_once_and_lists_skipped_windows_once(tmp_path, capsys,
                                                                                               caplog):
    """init quiets the per-window skips it lists itself, not a reader's warning about the file (it used to quiet both:
    a column empty in every row went unsaid until training)."""
    lines = ["date,passengers,empty"] + [f"1949-{m:02d}-01,{'' if m == 5 else 100 + m}," for m in range(1, 13)]
    (tmp_path / "one.csv").write_text("\n".join(lines) + "\n")
    with caplog.at_level("INFO"):
        assert main(["init", "--data", str(tmp_path / "one.csv"), "--output", str(tmp_path / "one.yaml"), "--yes",
                     "--lookback", "3", "--horizon", "1"]) == 0
    warned = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert warned.count(f"{tmp_path / 'one.csv'}: column 'empty' is empty in every row (12 rows): no series") == 1
    assert not [message for message in warned if "skipping" in message]
    assert capsys.readouterr().out.count(f"skipped {tmp_path / 'one.csv'}:") == 1  # the window whose target is a gap
