"""Long-format series CSVs, several series one under another told apart by id columns, as the tools that write them
lay them out: Nixtla's `unique_id,ds,y`, AutoGluon's `item_id,timestamp,target`, and Kaggle's Store Sales train.csv
(`id,date,store_nbr,family,sales,onpromotion`, rows by date, then store, then family). Each group of rows is read as
the same series written as a row of a JSON Lines file of series rows is (the independent expectation), and a file
whose dates repeat with nothing telling its series apart is refused."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import yaml

from modrwkv.cli import main
from modrwkv.data.readers import DataError, TimeSeriesReader
from modrwkv.training.config import config_from_dict
from modrwkv.training.data import build_reader
from modrwkv.training.validation import ForecastScorer, val_data_config

FAMILIES = ("AUTOMOTIVE", "BEAUTY")
STORES = (1, 2)


def write_store(path: Path, days: int = 60, seed: int = 0) -> dict[tuple[int, str], dict]:
    """Kaggle's Store Sales train.csv layout; per (store, family): its sales, promotions and file lines, by date."""
    rng = np.random.default_rng(seed)
    groups = {(store, family): {"sales": [], "onpromotion": [], "lines": []} for store in STORES for family in FAMILIES}
    rows, line = ["id,date,store_nbr,family,sales,onpromotion"], 1
    for day in range(days):
        date = (datetime.date(2013, 1, 1) + datetime.timedelta(days=day)).isoformat()
        for store in STORES:
            for family in FAMILIES:
                sales, promotions = round(float(rng.uniform(0, 500)), 3), int(rng.integers(0, 30))
                line += 1
                rows.append(f"{line - 2},{date},{store},{family},{sales},{promotions}")
                group = groups[store, family]
                group["sales"].append(sales), group["onpromotion"].append(promotions), group["lines"].append(line)
    path.write_text("\n".join(rows) + "\n")
    return groups


def write_nixtla(path: Path, lengths: dict[str, int], seed: int = 1) -> dict[str, dict]:
    """`unique_id,ds,y` with each series' rows in shuffled order (the reader orders them by ds); per series, in the
    order they first appear in the file: y and the line of each step, in time order."""
    rng = np.random.default_rng(seed)
    records = [(name, day, round(float(np.sin(day / 3) * 10 + rng.normal()), 4))
               for name, length in lengths.items() for day in range(length)]
    order = rng.permutation(len(records))
    expected = {name: {"y": [0.0] * length, "lines": [0] * length} for name, length in lengths.items()}
    rows = ["unique_id,ds,y"]
    for line, index in enumerate(order, start=2):
        name, day, value = records[index]
        rows.append(f"{name},{(datetime.date(2020, 1, 1) + datetime.timedelta(days=day)).isoformat()},{value}")
        expected[name]["y"][day], expected[name]["lines"][day] = value, line
    path.write_text("\n".join(rows) + "\n")
    first_seen = dict.fromkeys(records[index][0] for index in order)
    return {name: expected[name] for name in first_seen}


def windows(reader: TimeSeriesReader) -> list[tuple]:
    """What a window teaches and is scored on: its look-back, target, instance statistics and answer text."""
    return [(np.asarray(s.series[0]).tolist(), s.meta["target"].tolist(), s.meta["mean"].tolist(),
             s.meta["scale"].tolist(), s.messages[-1].content, s.meta["start"]) for s in reader]


def test_kaggle_store_sales_reads_each_store_and_family_as_its_series(tmp_path):
    path = tmp_path / "train.csv"
    groups = write_store(path)
    reader = TimeSeriesReader(path, lookback=8, horizon=4, id_columns=["store_nbr", "family"])
    samples = list(reader)
    labels = [f"store_nbr={store} family={family} {column}" for (store, family) in groups
              for column in ("sales", "onpromotion")]
    assert list(dict.fromkeys(s.meta["series"] for s in samples)) == labels  # groups as they first appear
    assert len(samples) == len(labels) * (60 - 12 + 1) and reader.report.num_skipped == 0
    for sample in samples:
        store, family, column = sample.meta["series"].split(" ")
        group = groups[int(store.split("=")[1]), family.split("=")[1]]
        start = sample.meta["start"]
        values = np.asarray(group[column], dtype=np.float32)
        np.testing.assert_array_equal(sample.series[0], values[start:start + 8])
        np.testing.assert_array_equal(sample.meta["target"], values[start + 8:start + 12])
        assert sample.source == f"{path}:{group['lines'][start]}:{column}" and sample.meta["columns"] == [column]
    assert reader.series_columns() == ["sales", "onpromotion"]
    assert reader.long_format() == [(str(path), ["store_nbr", "family"], 4)]
    # multivariate: a group's columns together, one window of [lookback, 2] per start
    together = list(TimeSeriesReader(path, lookback=8, horizon=4, id_columns=["store_nbr", "family"],
                                     multivariate=True))
    assert len(together) == 4 * 49
    last = together[-1]
    group = groups[2, "BEAUTY"]
    stacked = np.column_stack([group["sales"], group["onpromotion"]]).astype(np.float32)
    assert last.meta["series"] == "store_nbr=2 family=BEAUTY" and last.meta["columns"] == ["sales", "onpromotion"]
    np.testing.assert_array_equal(last.series[0], stacked[48:56])
    assert last.source == f"{path}:{group['lines'][48]}"


def test_nixtla_rows_are_ordered_by_ds_and_split_as_series_rows(tmp_path):
    """Each `unique_id`'s rows, shuffled in the file, are read in ds order; its split borders and scaler are its own,
    exactly as the same values written as rows of a GluonTS JSON Lines file give them; a series too short for a
    split is one too_short record in both."""
    lengths = {"H1": 120, "H2": 90, "H3": 20}
    path = tmp_path / "nixtla.csv"
    expected = write_nixtla(path, lengths)
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"item_id": name, "start": "2020-01-01", "target": series["y"]}) + "\n"
                            for name, series in expected.items()))
    for split in ("train", "val", "test"):
        long = TimeSeriesReader(path, lookback=12, horizon=4, split=split, standardize=True)  # unique_id: found
        reference = TimeSeriesReader(rows, lookback=12, horizon=4, split=split, standardize=True)
        got = windows(long)
        assert got == windows(reference) and got
        # H3's 20 rows: 14 training rows, 14 val rows (look-back included), too few for 12 + 4; 16 test rows
        assert long.report.skipped == reference.report.skipped == ({} if split == "test" else {"too_short": 1})
    test = [s for s in TimeSeriesReader(path, lookback=12, horizon=4, split="test") if s.meta["series"] == "unique_id=H1 y"]
    first = test[0]  # H1's first test window starts at row int(120 * 0.8) - 12 = 84
    assert (first.meta["series"], first.meta["start"]) == ("unique_id=H1 y", 84)
    assert first.source == f"{path}:{expected['H1']['lines'][84]}:y"
    np.testing.assert_array_equal(first.series[0], np.asarray(expected["H1"]["y"][84:96], dtype=np.float32))


def test_autogluon_items_read_as_the_same_series_in_a_wide_csv(tmp_path):
    """AutoGluon / Chronos `item_id,timestamp,target`: each item is the series a wide CSV's column of the same values
    is (same windows, targets and scaling), not the items' values run together."""
    values = {"A": np.round(np.sin(np.arange(80) / 4) * 3 + 10, 4), "B": np.round(np.cos(np.arange(80) / 5) + 50, 4)}
    stamps = [f"2024-01-{1 + t // 24:02d} {t % 24:02d}:00:00" for t in range(80)]
    long, wide = tmp_path / "ag.csv", tmp_path / "wide.csv"
    long.write_text("item_id,timestamp,target\n" + "".join(
        f"{item},{stamp},{value}\n" for item, series in values.items() for stamp, value in zip(stamps, series)))
    wide.write_text("timestamp,A,B\n" + "".join(f"{stamp},{a},{b}\n" for stamp, a, b in zip(stamps, *values.values())))
    # a wide file's columns share its length, so its split borders are the same as each item's
    got = windows(TimeSeriesReader(long, lookback=16, horizon=8, split="val", standardize=True))
    assert got == windows(TimeSeriesReader(wide, lookback=16, horizon=8, split="val", standardize=True))
    assert len(got) == 2 * (int(80 * 0.8) - int(80 * 0.7) - 8 + 1)


def test_stacked_series_without_ids_are_refused_naming_the_columns_that_tell_them_apart(tmp_path):
    path = tmp_path / "store.csv"
    write_store(path)
    with pytest.raises(DataError) as refused:
        list(TimeSeriesReader(path, lookback=8, horizon=4))
    assert str(refused.value) == (
        f"{path}: the date column 'date' repeats 2013-01-01 (lines 2 and 3): the file holds several series one under "
        "another (long format); name the columns that tell them apart: data.options.id_columns (modrwkv init "
        "--id-columns store_nbr,family; modrwkv eval --id-column store_nbr --id-column family)")
    # an id column missing: the store's series repeats its dates, which the error names with the lines
    with pytest.raises(DataError) as partial:
        list(TimeSeriesReader(path, lookback=8, horizon=4, id_columns=["store_nbr"]))
    assert str(partial.value) == (
        f"{path}: the series store_nbr=1 repeats 2013-01-01 in the date column 'date' (lines 2 and 3): its id columns (store_nbr) do not tell "
        "the file's series apart: one is wrong or missing; store_nbr,family would (modrwkv init --id-columns "
        "store_nbr,family)")
    # dates that repeat within one series' order are no stacking: statsmodels' year and quarter, an hour of the
    # day, the hour a clock turns back once
    quarters = tmp_path / "macro.csv"
    quarters.write_text("year,quarter,gdp\n" + "".join(f"{1959 + q // 4},{q % 4 + 1},{q}\n" for q in range(40)))
    hours = tmp_path / "hours.csv"
    hours.write_text("hour,load\n" + "".join(f"{t % 24},{t}\n" for t in range(72)))
    clock = tmp_path / "dst.csv"
    clock.write_text("date,load\n" + "".join(f"2024-10-27 {min(t, 2) if t < 4 else t - 1:02d}:00,{t}\n"
                                             for t in range(24)))
    for wide in (quarters, hours, clock):
        assert len(list(TimeSeriesReader(wide, lookback=8, horizon=4))) > 0


def test_a_text_column_that_is_no_id_is_named(tmp_path, caplog):
    path = tmp_path / "ag.csv"
    path.write_text("item_id,timestamp,region,target\n" + "".join(
        f"{item},2024-01-01 {t:02d}:00:00,{region},{t}\n" for item, region in (("A", "north"), ("B", "south"))
        for t in range(24)))
    with caplog.at_level(logging.WARNING, logger="modrwkv.data.readers.series"):
        assert len(list(TimeSeriesReader(path, lookback=8, horizon=4))) == 2 * 13
    assert "the non-numeric column(s) 'region' are read as no series; if one tells the series apart, add it to " \
           "id_columns (now item_id)" in caplog.text
    with pytest.raises(DataError, match=r"id_columns \['item_id'\] tell apart the series of a long-format CSV"):
        list(TimeSeriesReader(tmp_path / "x.npz", lookback=8, horizon=4, id_columns=["item_id"]))
    with pytest.raises(DataError, match=r"no id column\(s\) \['store'\]"):
        list(TimeSeriesReader(path, lookback=8, horizon=4, id_columns=["store"]))


def test_init_writes_id_columns_and_eval_reads_the_windows_training_holds_out(tmp_path, capsys, monkeypatch):
    """`modrwkv init --id-columns` writes data.options.id_columns and says what it read; training's reader reads
    each group's training rows; `modrwkv eval --task custom-series --id-column ...` scores the windows the same
    reader cuts from each group's test rows (and val rows for --split val, which training validates on)."""
    path = tmp_path / "store.csv"
    write_store(path)
    config = tmp_path / "store.yaml"
    assert main(["init", "--data", str(path), "--yes", "--output", str(config), "--lookback", "8", "--horizon", "4"]) == 2
    assert "modrwkv init --id-columns store_nbr,family" in capsys.readouterr().err
    assert main(["init", "--data", str(path), "--yes", "--output", str(config), "--lookback", "8", "--horizon", "4",
                 "--id-columns", "store_nbr,family"]) == 0
    out = capsys.readouterr().out.splitlines()
    # 8 series (4 groups x sales, onpromotion) of 42 training rows: 42 - 12 + 1 = 31 windows each
    assert "248 usable samples, inputs: series (columns: sales, onpromotion; 4 series (store_nbr, family))" in out[0]
    evaluate = next(line for line in out if line.startswith("evaluate:"))
    assert "--lookback 8 --horizon 4 --id-column store_nbr --id-column family" in evaluate
    written = yaml.safe_load(config.read_text())
    assert written["data"]["options"]["id_columns"] == ["store_nbr", "family"]
    data = config_from_dict(written).data
    assert len(list(build_reader(data))) == 248

    loaded = {}

    def capture(task, data, output, *, split, **_):
        loaded[split] = task.load(Path(data), split)
        raise SystemExit(0)

    monkeypatch.setattr("modrwkv.evaluation.run_eval", capture)
    (tmp_path / "model").mkdir()
    for split in ("test", "val"):
        with pytest.raises(SystemExit):
            main(["eval", "--task", "custom", "--model", str(tmp_path / "model"), "--data", str(path), "--lookback",
                  "8", "--horizon", "4", "--id-column", "store_nbr", "--id-column", "family", "--split", split])
        held_out = list(build_reader(dataclasses.replace(data, options={**data.options, "split": split})))
        assert [(s.reference["channel"], s.reference["start"], s.reference["target"].tolist(), s.series[0].tolist())
                for s in loaded[split]] == [(s.meta["series"], s.meta["start"], s.meta["target"].tolist(),
                                             s.series[0].tolist()) for s in held_out]
    assert len(loaded["test"]) == 8 * (12 - 4 + 1)  # each group's last 12 rows (20%) after its 8-row look-back
    # training's validation (val_metric forecast_mse) scores the windows `eval --split val` does
    scorer = ForecastScorer(val_data_config(data), None)
    assert [(s.reference["channel"], s.reference["start"]) for s in scorer.samples] == \
        [(s.reference["channel"], s.reference["start"]) for s in loaded["val"]]
    assert main(["eval", "--task", "etth1", "--model", str(tmp_path / "model"), "--data", str(tmp_path),
                 "--id-column", "store_nbr"]) == 2
    assert "--id-column: etth1 takes no such option (custom-series do)" in capsys.readouterr().err
