"""Data files given compressed (gzip, bzip2, xz) read as the files they hold: pandas' `to_csv("x.csv.gz")`, a data set
GluonTS saved (metadata.json beside train/data.json.gz, as its `JsonLinesWriter` writes it), `datasets`' .jsonl.gz. The
expectation is the same file read uncompressed: the same samples, the same errors at the same lines; a stream cut
short is named as such, and archives stay refused."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_forecast_cli import forecast, save_forecaster

from modrwkv.cli import main
from modrwkv.data.readers import DataError, QAReader, TimeSeriesReader
from modrwkv.data.readers.seriesrows import row_starts

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# each compression as the standard library writes it, and the suffix its tools give the file
COMPRESSIONS = {"gzip": (gzip.compress, ".gz"), "bzip2": (bz2.compress, ".bz2"), "xz": (lzma.compress, ".xz")}


def compressed_copy(plain: Path, compression: str) -> Path:
    """`plain` compressed beside it, named as its compression's tool names it (data.json -> data.json.gz)."""
    compress, suffix = COMPRESSIONS[compression]
    copy = plain.with_name(plain.name + suffix)
    copy.write_bytes(compress(plain.read_bytes()))
    return copy


def same_samples(plain: list, compressed: list, plain_path: Path, compressed_path: Path) -> None:
    """The samples of the compressed copy are those of the plain file, their sources naming the copy."""
    assert len(compressed) == len(plain) > 0
    for expected, got in zip(plain, compressed, strict=True):
        assert got.source == expected.source.replace(str(plain_path), str(compressed_path))
        assert got.messages == expected.messages and got.meta.keys() == expected.meta.keys()
        assert [np.asarray(x).tolist() for x in got.series] == [np.asarray(x).tolist() for x in expected.series]
        for key, value in expected.meta.items():
            assert str(got.meta[key]).replace(str(compressed_path), str(plain_path)) == str(value), key


def gluonts_data_set(folder: Path, compression: str | None) -> Path:
    """A data set as GluonTS' `TrainDatasets.save` writes it: metadata.json beside train/ and test/, each a
    data.json of one JSON object per line (start, target, item_id), gzip-compressed by default."""
    (folder / "train").mkdir(parents=True)
    (folder / "test").mkdir()
    (folder / "metadata.json").write_text(json.dumps({"freq": "H", "prediction_length": 3,
                                                      "feat_static_cat": [{"name": "feat_static_cat_0",
                                                                           "cardinality": "3"}]}))
    for split, length in (("train", 30), ("test", 33)):
        lines = [{"start": f"2021-01-0{k + 1} 00:00:00", "item_id": f"T{k + 1}", "feat_static_cat": [k],
                  "target": [float((7 * step + k) % 11) for step in range(length)]} for k in range(3)]
        plain = folder / split / "data.json"
        plain.write_text("".join(json.dumps(line) + "\n" for line in lines))
        if compression is not None:
            compressed_copy(plain, compression)
            plain.unlink()
    return folder


@pytest.mark.parametrize("compression", list(COMPRESSIONS))
def test_a_compressed_series_csv_reads_as_the_csv(tmp_path, compression):
    plain = tmp_path / "sales.csv"
    plain.write_text("date,units,price\n" + "".join(f"2021-01-{day:02d},{day * 3 % 7},{10 + day / 4}\n"
                                                    for day in range(1, 29)))
    copy = compressed_copy(plain, compression)
    assert copy.name == "sales.csv" + COMPRESSIONS[compression][1]
    for split in ("train", "test"):
        same_samples(list(TimeSeriesReader(plain, lookback=6, horizon=2, split=split)),
                     list(TimeSeriesReader(copy, lookback=6, horizon=2, split=split)), plain, copy)


@pytest.mark.parametrize("compression", list(COMPRESSIONS))
def test_a_gluonts_data_set_reads_as_uncompressed(tmp_path, compression):
    plain = gluonts_data_set(tmp_path / "plain", None) / "train" / "data.json"
    copy = gluonts_data_set(tmp_path / "packed", compression) / "train" / ("data.json" + COMPRESSIONS[compression][1])
    same_samples(list(TimeSeriesReader(plain, lookback=6, horizon=3)),
                 list(TimeSeriesReader(copy, lookback=6, horizon=3)), plain, copy)
    # its rows dated by the data set's metadata.json beside train/, as the plain file's
    starts = row_starts(copy)
    assert starts == row_starts(plain)
    assert starts == [(np.datetime64(f"2021-01-0{k + 1}T00:00:00"), "H") for k in range(3)]


def test_a_gluonts_data_set_forecasts_as_uncompressed(tmp_path, capsys):
    model = save_forecaster(tmp_path / "model")
    plain = gluonts_data_set(tmp_path / "plain", None) / "test" / "data.json"
    copy = gluonts_data_set(tmp_path / "packed", "gzip") / "test" / "data.json.gz"
    plain_run, packed_run = (forecast(capsys, model, path, "--horizon", "3") for path in (plain, copy))
    assert plain_run[0] == packed_run[0] == 0, packed_run[2]
    assert packed_run[1] == plain_run[1] and "2021-01-03" in packed_run[1]  # (dated by the metadata's freq)


def test_init_finds_a_gluonts_splits_data_json_gz(tmp_path, capsys):
    """A GluonTS split folder given to init: its data.json.gz found as its data.json is, the data set's
    metadata.json beside train/ stating the horizon (prediction_length 3) and the protocol (holdout last) alike."""
    configs, summaries = {}, {}
    for name, compression in (("plain", None), ("packed", "gzip")):
        data_set = gluonts_data_set(tmp_path / name / "m4_hourly", compression)
        config = tmp_path / name / "config.yaml"
        assert main(["init", "--data", str(data_set / "train"), "--yes", "--device", "cpu", "--output",
                     str(config)]) == 0
        configs[name] = yaml.safe_load(config.read_text())["data"]
        summaries[name] = capsys.readouterr().out.splitlines()[0]
    plain, packed = (tmp_path / name / "m4_hourly" / "train" for name in ("plain", "packed"))
    assert summaries["packed"] == summaries["plain"].replace(f"{plain / 'data.json'}:", f"{packed / 'data.json.gz'}:"
                                                             ).replace(str(plain), str(packed))
    assert f"({packed / 'data.json.gz'}: kept " in summaries["packed"]
    assert configs["packed"]["train"] == [str(tmp_path / "packed" / "m4_hourly" / "train")]
    assert configs["packed"]["options"] == configs["plain"]["options"]
    assert configs["packed"]["options"]["horizon"] == 3 and configs["packed"]["options"]["holdout"] == "last"
    # the data set's folder is named as such, with its compressed test file to give
    data_set = tmp_path / "packed" / "m4_hourly"
    assert main(["init", "--data", str(data_set), "--yes", "--device", "cpu", "--output",
                 str(tmp_path / "c.yaml")]) == 2
    assert f"give its data file, {data_set / 'test' / 'data.json.gz'} " in capsys.readouterr().err


QA_RECORDS = [{"question": "What colour is the sky?", "answer": "blue"},
              {"question": "How many legs has a cat?", "answer": "4"},
              {"question": "Capital of France?", "answer": "Paris"}]


@pytest.mark.parametrize("compression", list(COMPRESSIONS))
def test_qa_jsonl_compressed_gives_the_same_samples_and_errors(tmp_path, compression):
    plain = tmp_path / "train.jsonl"
    plain.write_text("".join(json.dumps(record) + "\n" for record in QA_RECORDS))
    copy = compressed_copy(plain, compression)
    same_samples(list(QAReader(plain)), list(QAReader(copy)), plain, copy)
    # a bad record is named by its line of the decompressed text
    lines = plain.read_text().splitlines()
    lines.insert(2, '{"question": "cut short", "answer": ')
    plain.write_text("\n".join(lines) + "\n")
    copy = compressed_copy(plain, compression)
    reader = QAReader(copy, on_error="skip")
    assert len(list(reader)) == 3 and reader.report.skipped == {"bad_json": 1}
    assert reader.report.examples[0].source == f"{copy}:3"
    with pytest.raises(DataError) as plain_error:
        list(QAReader(plain, on_error="raise"))
    with pytest.raises(DataError) as caught:
        list(QAReader(copy, on_error="raise"))
    assert str(caught.value) == str(plain_error.value).replace(str(plain), str(copy))
    assert str(caught.value).startswith(f"{copy}:3: invalid JSON")


@pytest.mark.parametrize("compression", list(COMPRESSIONS))
def test_a_truncated_or_corrupt_stream_is_named(tmp_path, capsys, compression):
    plain = tmp_path / "train.jsonl"
    plain.write_text("".join(json.dumps(record) + "\n" for record in QA_RECORDS * 50))
    compress, suffix = COMPRESSIONS[compression]
    packed = compress(plain.read_bytes())
    cut = tmp_path / ("cut.jsonl" + suffix)
    cut.write_bytes(packed[:len(packed) * 2 // 3])
    with pytest.raises(DataError) as caught:
        list(QAReader(cut))
    assert str(caught.value) == (f"{cut}: truncated {compression} stream: the file ends before its compressed data "
                                 "does (an interrupted download or copy?)") and caught.value.reason == "unreadable_file"
    assert main(["init", "--data", str(cut), "--yes", "--output", str(tmp_path / "c.yaml")]) == 2
    assert f"{cut}: truncated {compression} stream" in capsys.readouterr().err
    series = tmp_path / ("cut.csv" + suffix)
    series.write_bytes(compress(b"y\n" + b"".join(b"%d\n" % k for k in range(2000)))[:-12])
    with pytest.raises(DataError, match=rf"^{series}: truncated {compression} stream"):
        list(TimeSeriesReader(series, lookback=4, horizon=2))
    corrupt = tmp_path / ("corrupt.jsonl" + suffix)
    damaged = bytearray(packed)
    damaged[len(damaged) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(damaged))
    with pytest.raises(DataError, match=rf"^{corrupt}: not valid {compression} data \("):
        list(QAReader(corrupt))


def test_archives_stay_refused(tmp_path, capsys):
    series = "y\n" + "".join(f"{k}\n" for k in range(40))
    archive = tmp_path / "m4_hourly.csv.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("m4_hourly.csv", series)
    zstd = tmp_path / "m4_hourly.csv.zst"
    zstd.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(20))  # (zstd's magic: the standard library has no reader for it)
    for path, what, command in ((archive, "a ZIP archive", "unzip"), (zstd, "zstd-compressed", "unzstd")):
        expected = f"{path}: {what}, not a data file: unpack it ({command}) and give the file or folder inside"
        assert main(["init", "--data", str(path), "--yes", "--output", str(tmp_path / "c.yaml")]) == 2
        assert capsys.readouterr().err.strip() == f"modrwkv init: error: {expected}"
        with pytest.raises(DataError) as caught:
            list(QAReader(path))
        assert str(caught.value) == expected


def test_a_compressed_file_without_an_inner_extension_is_sniffed(tmp_path):
    """data.gz: no extension tells its format; its records are told by their fields, as a plain file's are."""
    plain = tmp_path / "records"
    plain.write_text("".join(json.dumps(record) + "\n" for record in QA_RECORDS))
    copy = compressed_copy(plain, "gzip")
    assert copy.name == "records.gz"
    same_samples(list(QAReader(plain)), list(QAReader(copy)), plain, copy)


def test_a_compressed_tsf_reads_its_header_and_series(tmp_path):
    plain = tmp_path / "m4_hourly_dataset.tsf"
    plain.write_text("@relation m4\n@attribute series_name string\n@attribute start_timestamp date\n"
                     "@frequency hourly\n@horizon 2\n@missing false\n@equallength false\n@data\n"
                     + "".join(f"T{k}:2015-01-01 00-00-00:" + ",".join(str((j * 3 + k) % 5) for j in range(24)) + "\n"
                               for k in range(1, 4)))
    copy = compressed_copy(plain, "xz")
    same_samples(list(TimeSeriesReader(plain, lookback=6, horizon=2)),
                 list(TimeSeriesReader(copy, lookback=6, horizon=2)), plain, copy)
    config = tmp_path / "c.yaml"
    assert main(["init", "--data", str(copy), "--yes", "--device", "cpu", "--output", str(config)]) == 0
    options = yaml.safe_load(config.read_text())["data"]["options"]
    assert options["horizon"] == 2 and options["holdout"] == "last"  # (its @horizon, read through the compression)



def test_runs_are_named_by_the_file_a_compressed_one_holds(tmp_path):
    from modrwkv.data.readers.base import data_name

    data_set = gluonts_data_set(tmp_path / "m4_hourly", "gzip")
    sales = tmp_path / "sales.csv.gz"
    sales.write_bytes(gzip.compress(b"y\n1\n"))
    assert data_name(sales) == "sales" and data_name(tmp_path / "sales.csv") == "sales"
    assert data_name(data_set / "test" / "data.json.gz") == data_name(tmp_path / "m4_hourly" / "test" / "data.json") \
        == "m4_hourly"  # (a generic file in a split's folder: the data set's folder)
    assert data_name(tmp_path / "data" / "train.jsonl") == "data" and data_name("x/train/00000.tar") == "x"
