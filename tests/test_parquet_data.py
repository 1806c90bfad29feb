"""Parquet data files, as HF `datasets` writes them (`Dataset.to_parquet`, the hub's shards): rows with
the JSON formats' fields and media embedded as {"bytes", "path"} structs. The files here are written
by `datasets` itself, from scikit-learn's digits (PNG) and espeak-ng speech (WAV); each is read, trained
on and evaluated exactly as the same records in JSONL beside the media files, bad rows are named by
file and row, and a missing pyarrow is one line naming the install command."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from modrwkv.cli import main
from modrwkv.data.readers import AsrManifestReader, DataError, QAReader
from modrwkv.data.readers.base import TableBytes, expand_paths
from modrwkv.data.readers.detect import detect_format
from modrwkv.encoders.media import load_audio, load_image
from modrwkv.evaluation.tasks import CustomTask
from modrwkv.training import train

datasets = pytest.importorskip("datasets")
pq = pytest.importorskip("pyarrow.parquet")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench" / "digits"))
from prepare import QUESTION, write_digit_images  # noqa: E402  (bench/digits/prepare.py, the JSONL version)
from container_checks import (check_images_read_back, check_init_reads_qa_folder, eval_custom, noise_pngs,  # noqa: E402
                              read_qa_holding)

SENTENCES = ["two red cats jump", "nine white bears swim", "five blue fish sit"]


def digits(folder: Path, count: int) -> tuple[Path, list[dict]]:
    """The first `count` digits as bench/digits/prepare.py writes them (PNG files, question-answer
    records in train.jsonl) and the records."""
    names, targets = write_digit_images(folder)
    records = [{"image": f"images/{name}", "question": QUESTION, "answer": str(target)}
               for name, target in zip(names[:count], targets[:count], strict=True)]
    path = folder / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path, records


def to_parquet(records: list[dict], folder: Path, path: Path, casts: dict, shards: int = 1,
               row_group: int | None = None) -> None:
    """The records as `datasets` writes them to the hub: media columns cast to its features, the files'
    bytes embedded as `push_to_hub` embeds them (`embed_table_storage`; a plain `to_parquet` keeps only
    the paths), `shards` files named as the hub names a split's (train-00000-of-00002.parquet), row
    groups of `row_group` rows (default: `datasets`' own, 100 rows for images)."""
    from datasets.table import embed_table_storage

    columns = {key: [str(folder / r[key]) if key in casts else r[key] for r in records] for key in records[0]}
    dataset = datasets.Dataset.from_dict(columns)
    for key, feature in casts.items():
        dataset = dataset.cast_column(key, feature)
    dataset = dataset.with_format("arrow").map(embed_table_storage, batched=True).with_format(None)
    if shards == 1:
        dataset.to_parquet(str(path), batch_size=row_group)
        return
    path.mkdir(parents=True)
    for index in range(shards):
        dataset.shard(shards, index, contiguous=True).to_parquet(str(path / f"train-{index:05d}-of-{shards:05d}.parquet"))


def test_digits_written_by_datasets_read_as_their_jsonl(tmp_path):
    jsonl, records = digits(tmp_path / "digits", 20)
    single, shards = tmp_path / "train.parquet", tmp_path / "data"
    to_parquet(records, jsonl.parent, single, {"image": datasets.Image()}, row_group=7)  # rows 0-6, 7-13, 14-19
    to_parquet(records, jsonl.parent, shards, {"image": datasets.Image()}, shards=2)
    assert pq.ParquetFile(single).num_row_groups == 3
    row = pq.read_table(single).to_pylist()[3]
    assert row["image"]["bytes"].startswith(b"\x89PNG") and row["image"]["path"].endswith("0003.png")
    assert detect_format(single) == "qa"
    expected = list(QAReader(jsonl, on_error="raise"))
    files = expand_paths([str(shards)], "data.train")  # a folder: its shards, in order
    assert [Path(f).name for f in files] == ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]
    for read in (list(QAReader(single, on_error="raise")), list(QAReader(files, on_error="raise"))):
        assert len(read) == len(expected) == 20
        for got, want in zip(read, expected, strict=True):
            assert got.messages == want.messages and got.meta == want.meta
            assert isinstance(got.images[0], TableBytes)  # read from the Parquet file when decoded, not from
            # the file the row names, and not held by the sample
            assert np.array_equal(np.asarray(load_image(got.images[0])), np.asarray(load_image(want.images[0])))
    assert read[10].source == f"{files[1]}:row 0" and expected[10].source == f"{jsonl}:11"


def test_training_and_eval_on_parquet_match_jsonl(tmp_path, capsys):
    jsonl, records = digits(tmp_path / "digits", 24)
    to_parquet(records, jsonl.parent, tmp_path / "data", {"image": datasets.Image()}, shards=2)
    test = jsonl.parent / "test.jsonl"
    test.write_text("".join(json.dumps(r) + "\n" for r in records[:6]))
    to_parquet(records[:6], jsonl.parent, tmp_path / "test", {"image": datasets.Image()}, shards=2)
    shards = sorted(str(p) for p in (tmp_path / "test").iterdir())

    def trained(name: str, data: str) -> dict:
        cfg = yaml.safe_load((REPO / "configs" / "tiny-cpu.yaml").read_text())
        cfg["data"] = {"format": "qa", "train": [data]}
        cfg["train"].update(max_steps=2, warmup_steps=0, batch_size=4, micro_batch_size=4)
        cfg["output"].update(dir=str(tmp_path / name), save_every=0)
        result = train(cfg)
        return result

    from_jsonl, from_parquet = trained("jsonl", str(jsonl)), trained("parquet", str(tmp_path / "data"))
    a, b = from_jsonl.model.state_dict(), from_parquet.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    summaries = []
    for name, data in (("jsonl", [str(test)]), ("parquet", shards)):  # the two shards, named one by one
        out = tmp_path / f"eval-{name}"
        metrics, predictions = eval_custom(from_jsonl.final_dir, data, out)
        summaries.append((metrics, [p["prediction"] for p in predictions]))
    assert summaries[0] == summaries[1] and len(summaries[0][1]) == 6
    # several files: each in the summary and the report; a record known by its file and its number there
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"] == shards and f"data: `{shards[0]}`, `{shards[1]}`;" in (out / "report.md").read_text()
    assert [p["id"] for p in predictions] == [f"{Path(shards[k // 3]).name}:{k % 3 + 1}" for k in range(6)]
    # `modrwkv init` on the folder of shards: the format from the first row, training sized from the decoded
    # images of both files, and the folder as data.train, which training reads the same way
    check_init_reads_qa_folder(tmp_path / "test", tmp_path / "init.yaml", capsys, usable=6)


def test_espeak_speech_written_by_datasets_reads_and_scores_as_its_manifest(tmp_path):
    from modrwkv.quickstart.speech import ESPEAK_HELP, EspeakMissing, espeak_binary

    try:
        binary = espeak_binary()
    except EspeakMissing:
        pytest.skip(ESPEAK_HELP)
    folder = tmp_path / "speech"
    folder.mkdir()
    for index, sentence in enumerate(SENTENCES):
        subprocess.run([binary, "-v", "en-us", "-w", str(folder / f"{index}.wav"), sentence], check=True,
                       capture_output=True)
    records = [{"audio": f"{i}.wav", "text": s} for i, s in enumerate(SENTENCES)]
    manifest = folder / "test.jsonl"
    manifest.write_text("".join(json.dumps({"audio_filepath": r["audio"], "text": r["text"]}) + "\n" for r in records))
    parquet = tmp_path / "test.parquet"
    to_parquet(records, folder, parquet, {"audio": datasets.Audio()})
    assert pq.read_table(parquet).to_pylist()[0]["audio"]["bytes"][:4] == b"RIFF"
    assert detect_format(parquet) == "asr"
    expected, read = list(AsrManifestReader(manifest, on_error="raise")), list(AsrManifestReader(parquet, on_error="raise"))
    for got, want in zip(read, expected, strict=True):
        assert got.messages == want.messages and isinstance(got.audios[0], TableBytes)
        assert np.array_equal(load_audio(got.audios[0]), load_audio(want.audios[0]))

    scores = []  # the same replies scored against either file's references: one wrong word of 12
    for data in (manifest, parquet):
        task = CustomTask()
        samples = task.load(data, "all")
        assert [s.reference["answers"] for s in samples] == [[s] for s in SENTENCES]
        assert all(isinstance(s.audio[0], TableBytes if data == parquet else Path) for s in samples)
        scores.append(task.summarize([{"reference": s.reference, "prediction": p} for s, p in zip(
            samples, ["two red cats jump", "nine white bears sit", "five blue fish sit"], strict=True)]))
    assert scores[0] == scores[1] and scores[0]["wer"] == pytest.approx(100 / 12)


def qa_table(path: Path, images: list) -> None:
    import pyarrow as pa

    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    pq.write_table(pa.table({"image": pa.array(images, image),
                             "question": ["Which digit is this?"] * len(images),
                             "answer": ["1", None, "3"][: len(images)]}), path)


def test_bad_rows_and_undecodable_bytes_name_the_file_and_row(tmp_path, capsys):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (8, 8), 128).save(buffer, format="PNG")
    good = buffer.getvalue()
    path = tmp_path / "bad.parquet"
    qa_table(path, [{"bytes": good, "path": "a.png"}, {"bytes": good, "path": "b.png"},
                    {"bytes": b"not an image", "path": "c.png"}])
    reader = QAReader(path, verify_media=True)
    assert len(list(reader)) == 1 and dict(reader.report.skipped) == {"empty_answer": 1, "unreadable_media": 1}
    first, second = reader.report.examples
    assert first.source == f"{path}:row 1" and "'answer' is null" in first.detail
    assert second.source == f"{path}:row 2" and second.detail.startswith("image does not decode")
    with pytest.raises(DataError, match=r"bad\.parquet:row 1: 'answer' is null"):
        list(QAReader(path, on_error="raise"))
    assert main(["eval", "--model", str(tmp_path), "--task", "custom", "--data", str(path)]) == 2
    assert f"{path}:row 1: 'answer' is null" in capsys.readouterr().err
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match=r"broken\.parquet: not a readable Parquet file"):
        list(QAReader(broken))


def test_missing_pyarrow_is_one_line_naming_the_install_command(tmp_path, monkeypatch, capsys):
    path = tmp_path / "train.parquet"
    qa_table(path, [{"bytes": b"", "path": "a.png"}])
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # `import pyarrow.parquet` raises ImportError
    assert main(["init", "--data", str(path), "--yes", "--output", str(tmp_path / "c.yaml")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "modrwkv init: error: reading Parquet data files needs the 'pyarrow' package, which is not installed: "
        "pip install 'modrwkv[train]'"]


def test_a_row_is_told_by_its_filled_columns_and_a_mixed_file_names_the_row(tmp_path):
    """A Parquet file has every column in every row (null where a record lacks the field), as `datasets`
    writes one built from records of two formats: the null `conversations` of a qa row is no llava row."""
    path = tmp_path / "mixed.parquet"
    turns = [{"from": "human", "value": "Which digit is this?"}, {"from": "gpt", "value": "7"}]
    datasets.Dataset.from_list([{"question": "Which digit is this?", "answer": "7", "conversations": None},
                                {"question": None, "answer": None, "conversations": turns}]).to_parquet(str(path))
    assert detect_format(path) == "qa"
    reader = QAReader(path)
    assert len(list(reader)) == 1
    [error] = reader.report.examples
    assert error.source == f"{path}:row 1" and error.reason == "other_format"
    assert "the file mixes formats: it looks like LLaVA data (format: llava), but the records before it, from row 0 " \
        "on, are question-answer records (format: qa)" in error.detail


def test_llava_and_sharegpt_rows_with_embedded_image_lists_read_as_their_jsonl(tmp_path):
    from datasets.table import embed_table_storage

    from modrwkv.data.readers import LlavaReader, SharegptReader

    jsonl, _ = digits(tmp_path / "digits", 2)
    images = [f"images/{i:04d}.png" for i in range(2)]
    sharegpt = {"messages": [{"role": "user", "content": "<image><image>Which digits?"},
                             {"role": "assistant", "content": "0, 1"}], "images": images}
    llava = {"image": images[1], "conversations": [{"from": "human", "value": "<image>\nWhich digit?"},
                                                   {"from": "gpt", "value": "1"}]}
    for reader, record, key, feature in ((SharegptReader, sharegpt, "images", datasets.Sequence(datasets.Image())),
                                         (LlavaReader, llava, "image", datasets.Image())):
        (jsonl.parent / "r.jsonl").write_text(json.dumps(record) + "\n")
        media = [str(jsonl.parent / p) for p in record[key]] if key == "images" else str(jsonl.parent / record[key])
        dataset = datasets.Dataset.from_list([{**record, key: media}]).cast_column(key, feature)
        dataset.with_format("arrow").map(embed_table_storage, batched=True).to_parquet(str(tmp_path / "r.parquet"))
        assert detect_format(tmp_path / "r.parquet") == reader.format
        [want], [got] = list(reader(jsonl.parent / "r.jsonl", on_error="raise")), list(reader(tmp_path / "r.parquet", on_error="raise"))
        assert got.messages == want.messages and all(isinstance(i, TableBytes) for i in got.images)
        assert [np.asarray(load_image(i)).tolist() for i in got.images] == \
            [np.asarray(load_image(i)).tolist() for i in want.images]


def test_embedded_images_stay_in_the_file_until_a_sample_is_built(tmp_path, monkeypatch):
    """The records of a data set hold where its embedded images are, not their bytes (LLaVA-Pretrain on the
    hub is tens of GB of them): reading a file of 19 MB of noise PNGs, which do not compress, keeps a
    small fraction of that in memory, and each image reads back as the bytes written. Counting the
    records (`modrwkv init`'s estimate) reads the file's footer, not its rows."""
    images = noise_pngs(96)
    path = tmp_path / "noise.parquet"
    datasets.Dataset.from_dict({"image": [{"bytes": b, "path": None} for b in images],
                                "question": ["Which digit is this?"] * len(images), "answer": ["7"] * len(images)},
                               ).cast_column("image", datasets.Image()).to_parquet(str(path))
    size = path.stat().st_size
    samples, held = read_qa_holding(path)
    assert len(samples) == 96 and size > 18e6
    assert held < size / 20, f"{held} bytes held after reading a {size}-byte file"  # read eagerly: more than size
    check_images_read_back(samples, images)
    monkeypatch.setattr("modrwkv.data.readers.base.table_records", lambda path: pytest.fail("rows read to count"))
    assert QAReader(path).count_records() == 96



def test_listing_a_files_records_leaves_the_bytes_every_row_has_unread(tmp_path, monkeypatch):
    """Listing the records reads every column but the media bytes every row of a row group has (a hub copy of
    VQAv2 is tens of GB of images, which listing its questions read whole): the records are those a read of
    every column gives, and the bytes columns are not asked of pyarrow. Bytes a row may lack (a null image, null
    bytes beside a path), and bytes in a list, are read, as what they hold decides the record."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from modrwkv.data.readers import base

    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({
        "image": pa.array([{"bytes": b"a", "path": "a.png"}, {"bytes": b"b", "path": None}] * 3, image),
        "maybe": pa.array([{"bytes": b"c", "path": None}, None, {"bytes": None, "path": "d.png"}] * 2, image),
        "raw": pa.array([b"e"] * 6), "images": pa.array([[{"bytes": b"f", "path": None}]] * 6, pa.list_(image)),
        "answer": ["7", "1"] * 3})
    path = tmp_path / "rows.parquet"
    pq.write_table(table, path, row_group_size=4)  # two row groups: 4 rows and 2

    def cell(row: int, column: str, *keys):
        group, at = divmod(row, 4)
        return TableBytes(str(path), group, at, column, keys)

    expected = [{"image": {"bytes": cell(i, "image", "bytes"), "path": ["a.png", None][i % 2]},
                 "maybe": [{"bytes": cell(i, "maybe", "bytes"), "path": None}, None,
                           {"bytes": None, "path": "d.png"}][i % 3],
                 "raw": cell(i, "raw"), "images": [{"bytes": cell(i, "images", 0, "bytes"), "path": None}],
                 "answer": ["7", "1"][i % 2]} for i in range(6)]
    asked = []
    real = pq.ParquetFile.iter_batches
    monkeypatch.setattr(pq.ParquetFile, "iter_batches",
                        lambda self, *args, **kwargs: asked.append(kwargs.get("columns")) or real(self, *args, **kwargs))
    assert [load() for _, load in base.table_records(path)] == expected
    assert asked == [["image.path", "maybe", "images", "answer"]] * 2
    assert [cell(i, "image", "bytes").read() for i in range(2)] == [b"a", b"b"]  # where the records point


def test_several_data_files_and_folders_name_what_is_wrong(tmp_path, capsys):
    jsonl, records = digits(tmp_path / "digits", 8)
    llava = tmp_path / "digits" / "llava.jsonl"
    llava.write_text(json.dumps({"image": records[0]["image"], "conversations": [
        {"from": "human", "value": "<image>\nWhich digit?"}, {"from": "gpt", "value": "0"}]}) + "\n")
    empty = tmp_path / "empty"
    empty.mkdir()

    def error(argv: list[str]) -> str:
        assert main(argv) == 2
        return capsys.readouterr().err.strip().splitlines()[-1]

    assert error(["init", "--data", str(tmp_path / "train-*.parquet"), "--yes"]) == \
        f"modrwkv init: error: --data: no file matches '{tmp_path / 'train-*.parquet'}'"
    # files of two formats: one message (`common_format`'s) from init, eval and training, each with its context
    mixed = (f"{llava} holds llava records, but {jsonl} holds qa records: one reader reads them all, and it would "
             "skip every record of the other format; give files of one format")
    assert error(["init", "--data", str(jsonl), str(llava), "--yes"]) == f"modrwkv init: error: {mixed} (or --format)"
    # with --format qa, the qa reader refuses every record of the llava file, which training would refuse
    assert error(["init", "--data", str(jsonl), str(llava), "--format", "qa", "--yes", "--output",
                  str(tmp_path / "qa.yaml")]) == \
        f"modrwkv init: error: {mixed} (--format qa)"
    eval_custom = ["eval", "--model", str(tmp_path), "--task", "custom", "--output", str(tmp_path / "out"), "--data"]
    assert error([*eval_custom, str(empty)]) == (
        f"modrwkv eval: error: --data: {empty} is a folder with no .parquet or .tar file, "
        "no data set saved by datasets' save_to_disk (state.json and .arrow files) or cached by load_dataset "
        "(dataset_info.json and <name>-<split>.arrow files), no GluonTS data.json(.gz), no class folder, no "
        "metadata file and no media file with its caption or transcript beside it; give the data files (a wildcard "
        "such as data/train-*.parquet), a folder of class folders (train/cat/0001.jpg), a folder with a "
        "metadata.jsonl naming its media files (Hugging Face's imagefolder), or one of media files each with its "
        ".txt (0001.jpg and 0001.txt)")
    assert error([*eval_custom, str(jsonl), str(llava)]) == f"modrwkv eval: error: {mixed}"
    assert error(["eval", "--model", str(tmp_path), "--task", "pope", "--data", str(jsonl), str(llava)]) == \
        "modrwkv eval: error: --data: pope reads one folder or file (several files are for --task custom)"

    # a data.val folder without shards is named as data.val, not data.train
    cfg = yaml.safe_load((REPO / "configs" / "tiny-cpu.yaml").read_text())
    cfg["data"] = {"format": "qa", "train": [str(jsonl)], "val": [str(empty)]}
    cfg["train"].update(max_steps=1, warmup_steps=0, batch_size=4, micro_batch_size=4, val_every=1)
    cfg["output"].update(dir=str(tmp_path / "run"), save_every=0)
    with pytest.raises(FileNotFoundError, match=f"^data.val: {empty} is a folder with no .parquet or .tar file"):
        train(cfg)
    # training's qa reader skipped every record of the llava file with a warning, and trained on the rest;
    # whichever file comes first, the one named is the file of another format than data.format
    cfg["data"] = {"format": "qa", "train": [str(llava), str(jsonl)]}
    cfg["train"]["val_every"] = 0
    with pytest.raises(DataError) as raised:
        train(cfg)
    assert str(raised.value) == f"data.train: {mixed} (data.format: qa)"


def test_a_plain_binary_image_column_reads_as_its_bytes(tmp_path):
    """An `image` column of bare bytes (pyarrow's binary, not `datasets`' struct) is one image per row, in a Parquet
    file or a Feather one."""
    import pyarrow as pa

    from modrwkv.data.readers import LlavaReader

    jsonl, _ = digits(tmp_path / "digits", 1)
    png = (jsonl.parent / "images" / "0000.png").read_bytes()
    turns = [{"from": "human", "value": "<image>\nWhich digit?"}, {"from": "gpt", "value": "0"}]
    pq.write_table(pa.table({"image": pa.array([png], pa.binary()), "conversations": [turns]}), tmp_path / "b.parquet")
    [sample] = list(LlavaReader(tmp_path / "b.parquet", on_error="raise"))
    assert sample.images[0].read() == png
    # the same rows as pandas' to_feather writes them (Arrow's IPC file format, lz4-compressed), read alike
    pd = pytest.importorskip("pandas")
    pd.read_parquet(tmp_path / "b.parquet").to_feather(tmp_path / "b.feather")
    assert detect_format(tmp_path / "b.feather") == "llava"
    [sample] = list(LlavaReader(tmp_path / "b.feather", on_error="raise"))
    assert sample.images[0].read() == png and sample.messages[1].content == "0"


def test_a_row_group_too_big_to_keep_is_kept_in_part(tmp_path, monkeypatch, caplog):
    """A file written as one row group (pyarrow's and pandas' default) is not held whole by each process
    that reads its media: past ROW_GROUP_KEPT_BYTES a process keeps that much of the column from the row
    asked for (measured in pyarrow's own allocations), reads each cell back as written in any order,
    and reading the file warns; below it the row group is read once whatever the order. A cell replaced
    by something that is not bytes is a ValueError naming the row."""
    import random

    import pyarrow as pa

    from modrwkv.data.readers import base

    rng = np.random.default_rng(0)
    cells = [rng.integers(0, 256, 20_000, dtype=np.uint8).tobytes() for _ in range(300)]
    path = tmp_path / "one_group.parquet"
    pq.write_table(pa.table({"image": pa.array(cells, pa.binary()), "answer": ["7"] * 300}), path)
    assert pq.ParquetFile(path).num_row_groups == 1
    monkeypatch.setattr(base, "ROW_GROUP_KEPT_BYTES", 2_000_000)  # the column is 6 MB
    with caplog.at_level("WARNING", logger="modrwkv.data.readers"):
        refs = [load()["image"] for _, load in base.table_records(path)]
    assert f"{path}: row group 0 holds 6 MiB of 'image' (300 rows), more than the 2 MiB of a row group's media" in \
        caplog.text
    caplog.clear()
    text_only = tmp_path / "text.parquet"  # 6 MB of text: nothing to keep or warn of
    pq.write_table(pa.table({"question": [c.hex() for c in cells], "answer": ["7"] * 300}), text_only)
    with caplog.at_level("WARNING", logger="modrwkv.data.readers"):
        assert len(list(base.table_records(text_only))) == 300
    assert caplog.text == ""
    reads = []
    monkeypatch.setattr(base, "_read_rows", lambda key, row, read=base._read_rows: reads.append(row) or read(key, row))
    before = pa.total_allocated_bytes()
    rows_kept = 2_000_000 * 300 // pq.ParquetFile(path).metadata.row_group(0).column(0).total_uncompressed_size
    assert rows_kept == 99 and [ref.read() for ref in refs] == cells and reads == [0, 99, 198, 297]  # file order
    held = 0
    order = random.Random(0).sample(range(300), 300)
    for index in order:
        assert refs[index].read() == cells[index]
        held = max(held, pa.total_allocated_bytes() - before)
    assert held < 1.5 * 99 * 20_000, held  # 99 rows (2 MB), not the 6 MB column
    monkeypatch.setattr(base, "ROW_GROUP_KEPT_BYTES", 10 * 2**20)
    reads.clear()
    assert [refs[i].read() for i in order] == [cells[i] for i in order] and len(reads) == 1  # kept whole
    pq.write_table(pa.table({"image": ["a string now"] * 300, "answer": ["7"] * 300}), path)
    monkeypatch.setattr(base, "_KEPT", [])
    with pytest.raises(ValueError, match=r"one_group\.parquet: row 5 of row group 0: 'image' holds no bytes"):
        refs[5].read()
    nested = TableBytes(str(path), 0, 5, "image", ("bytes",))  # a struct's bytes, where a string now is
    with pytest.raises(ValueError, match=r"row 5 of row group 0: the embedded 'image' bytes cannot be read"):
        nested.read()


def test_reading_a_cell_of_a_big_row_group_peaks_near_what_is_kept(tmp_path, monkeypatch):
    """A cell of a row group bigger than ROW_GROUP_KEPT_BYTES is read by streaming its column a batch at a
    time: a process's peak (all of pyarrow's allocations, the file's reads included, in a fresh process)
    is the rows kept plus about two batches and the read buffer, not the whole column that was read and
    then sliced (that peaked at twice the column), nor the row group kept before along with the next. The
    cells read back as written (HF's {"bytes", "path"} struct) at the start, middle and end, on both sides
    of where a kept window ends; in a damaged file, those before the damage too, and those after it are
    one line naming the row."""
    import pyarrow as pa

    from modrwkv.data.readers import base

    rng = np.random.default_rng(0)
    cells = [rng.integers(0, 256, 20_000, dtype=np.uint8).tobytes() for _ in range(600)]
    path = tmp_path / "one_group.parquet"
    images = pa.array([{"bytes": cell, "path": f"{i}.png"} for i, cell in enumerate(cells)])
    # pages of 4 rows: pyarrow's default puts 1024 images in a page (and a dictionary page), which a reader
    # decodes whole; what is measured here is the reader's own memory
    pq.write_table(pa.table({"image": images, "answer": ["7"] * 600}), path, use_dictionary=False,
                   write_batch_size=4, data_page_size=2**16)
    assert pq.ParquetFile(path).num_row_groups == 1  # 12 MB of images; 2 MB kept: 99 rows
    script = f"""
import pyarrow as pa
from modrwkv.data.readers import base
base.ROW_GROUP_KEPT_BYTES = 2_000_000
for row in (0, 300, 599, 100):
    base.TableBytes({str(path)!r}, 0, row, "image", ("bytes",)).read()
    print(len(base._KEPT[0].values), pa.total_allocated_bytes())
print(pa.default_memory_pool().max_memory())
"""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    *kept, peak = proc.stdout.split("\n")[:-1]
    assert [line.split()[0] for line in kept] == ["99", "99", "1", "99"], kept  # rows kept, from the row asked for
    assert all(int(line.split()[1]) < 99 * 20_000 + 100_000 for line in kept), kept  # no more held between reads
    window, batch = 99 * 20_000, base.PARQUET_BATCH_ROWS * 20_000
    assert int(peak) < window + 2 * batch + 2**20, peak  # 4.4 MB (5.6 MB allowed); it was 34 MB (2x the column)

    monkeypatch.setattr(base, "ROW_GROUP_KEPT_BYTES", 2_000_000)
    monkeypatch.setattr(base, "_KEPT", [])
    reads = []
    monkeypatch.setattr(base, "_read_rows", lambda key, row, read=base._read_rows: reads.append(row) or read(key, row))
    order = [0, 63, 64, 98, 99, 197, 198, 300, 363, 364, 398, 399, 598, 599, 5]
    assert [TableBytes(str(path), 0, i, "image", ("bytes",)).read() for i in order] == [cells[i] for i in order]
    assert reads == [0, 99, 198, 300, 399, 598, 5]  # a window of 99 rows from each row read
    damaged = tmp_path / "damaged.parquet"  # page headers overwritten about row 300: rows before it still read
    damaged.write_bytes(path.read_bytes()[:6_000_000] + b"\xff" * 100_000 + path.read_bytes()[6_100_000:])
    assert TableBytes(str(damaged), 0, 0, "image", ("bytes",)).read() == cells[0]
    with pytest.raises(ValueError, match=r"damaged\.parquet: row 300 of row group 0: the embedded 'image' bytes cannot "
                                         r"be read: Couldn't deserialize thrift: .* Deserializing page header failed\.$"):
        TableBytes(str(damaged), 0, 300, "image", ("bytes",)).read()  # one line, though pyarrow's message is three


def test_runs_are_named_after_the_data_not_its_wildcard_or_shard_numbers(tmp_path, monkeypatch):
    """`init` and `eval --task custom` name the config and run folders after the data: a wildcard or a hub
    shard's numbering is not a name (they gave `*.yaml` and `runs/train-*`); a file whose name holds
    brackets is that file, not a pattern; one path given as a str or a Path is one file."""
    from modrwkv.data.readers.base import data_label, data_name
    from modrwkv.training.init import InitAnswers

    assert [data_name(d) for d in ["data/digits/*.jsonl", "data/digits/train-*.parquet",
                                   "hub/digits/train-00000-of-00002.parquet", "data/digits/test.jsonl",
                                   "mine.jsonl", "data/vqa_[12].jsonl", "data/sets/*"]] == \
        ["digits", "digits", "digits", "digits", "mine", "vqa", "sets"]
    jsonl, _ = digits(tmp_path / "digits", 4)
    bracketed = jsonl.with_name("set[1].jsonl")
    bracketed.write_text(jsonl.read_text())
    assert expand_paths([str(bracketed)], "--data") == [str(bracketed)] and data_name(bracketed) == "set[1]"
    assert len(CustomTask().load(str(bracketed), "test")) == len(CustomTask().load(bracketed, "test")) == 4
    assert InitAnswers(data=bracketed).data == [str(bracketed)] and data_label([jsonl, str(bracketed)]) == \
        f"{jsonl}, {bracketed}"
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--data", str(tmp_path / "digits" / "*.jsonl"), "--yes"]) == 0
    assert yaml.safe_load((tmp_path / "digits.yaml").read_text())["output"]["dir"] == "runs/digits"


def test_a_damaged_row_group_stops_the_records_and_the_series_rows_at_its_first_row(tmp_path):
    """The rows before a damaged row group are read; the reading then stops with one line naming the first row
    that does not decode (`base.decoded_batches`), for records and for series rows alike."""
    import pyarrow as pa

    from modrwkv.data.readers.base import table_records
    from modrwkv.data.readers.seriesrows import series_rows

    def damaged(name: str, table: pa.Table) -> Path:
        path = tmp_path / name
        pq.write_table(table, path, row_group_size=100)
        offset = pq.ParquetFile(path).metadata.row_group(1).column(0).data_page_offset
        data = bytearray(path.read_bytes())
        data[offset:offset + 40] = b"\xff" * 40  # the second row group's first page header
        path.write_bytes(bytes(data))
        return path

    records = damaged("qa.parquet", pa.table({"question": [f"q{i}" for i in range(300)],
                                              "answer": [f"a{i}" for i in range(300)]}))
    read = []
    with pytest.raises(DataError, match=re.escape(f"{records}:row 100: the Parquet data does not decode from this "
                                                  "row on")):
        for _, load in table_records(records):
            read.append(load()["question"])
    assert read == [f"q{i}" for i in range(100)]
    series = damaged("series.parquet", pa.table({"target": [[float(i)] * 8 for i in range(300)]}))
    rows = []
    # (read across row groups, 64 rows a batch: the batch of rows 64 to 127 is the first that does not decode)
    with pytest.raises(DataError, match=re.escape(f"{series}:row 64: the Parquet data does not decode")):
        for row in series_rows(series, None):
            rows.append(row.name)
    assert rows == [f"row {i}" for i in range(64)]
