"""A data set kept as `datasets` keeps it: `Dataset.save_to_disk`'s folder of .arrow shards (the Arrow IPC stream
format) with its state.json and dataset_info.json, a `DatasetDict`'s folder of such split folders, or an .arrow file
itself. Each is written by `datasets` itself, and checked to read exactly as the same data set's Parquet file
(`Dataset.to_parquet`, whose reading the hub Parquet tests check against hand-written expectations)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from eval_fixtures import scripted_model
from test_hub_parquet import CIFAR, IMAGE_PROMPT, pictures, png, wav

from modrwkv.cli import main
from modrwkv.data.readers import FORMATS, DataError, QAReader
from modrwkv.data.readers.base import (TableBytes, _listed_columns, expand_paths, file_records, is_series_file,
                                      open_table_file, read_embedded)
from modrwkv.data.readers.detect import detect_format
from modrwkv.data.readers.hubrows import hub_layout
from modrwkv.data.readers.seriesrows import series_rows
from modrwkv.evaluation.tasks import BenchmarkFileError, CustomTask
from modrwkv.training.config import DataConfig
from modrwkv.training.data import read_samples

datasets = pytest.importorskip("datasets")
pa = pytest.importorskip("pyarrow")


def cifar_rows(labels: list[int]) -> Any:
    """A cifar10-shaped data set: `img` (Image(), PNG bytes embedded) and `label` (ClassLabel)."""
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=CIFAR)})
    return datasets.Dataset.from_dict({"img": pictures(len(labels)), "label": labels}, features=features)


def qa_records() -> Any:
    """Records of the qa format, an image each."""
    features = datasets.Features({"image": datasets.Image(), "question": datasets.Value("string"),
                                  "answer": datasets.Value("string")})
    return datasets.Dataset.from_dict({"image": pictures(2), "question": ["Colour?", "Shape?"],
                                       "answer": ["red", "square"]}, features=features)


def llava_records() -> Any:
    """LLaVA conversations about a list of images (Sequence(Image())), as hub LLaVA sets store them."""
    features = datasets.Features({"images": datasets.Sequence(datasets.Image()), "conversations": [
        {"from": datasets.Value("string"), "value": datasets.Value("string")}]})
    return datasets.Dataset.from_dict({"images": [pictures(2), pictures(1)], "conversations": [
        [{"from": "human", "value": "<image>\n<image>\nSame?"}, {"from": "gpt", "value": "No."}],
        [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "A square."}]]}, features=features)


def speech_rows() -> Any:
    """Audio (Audio(), the WAV bytes embedded) with its transcript: an ASR set's plain rows. Built from the Arrow
    table, as encoding audio needs torchcodec."""
    features = datasets.Features({"audio": datasets.Audio(), "text": datasets.Value("string")})
    table = pa.table({"audio": [{"bytes": wav(440), "path": "a.wav"}, {"bytes": wav(660), "path": "b.wav"}],
                      "text": ["a low tone", "a high tone"]})
    return datasets.Dataset(table, info=datasets.DatasetInfo(features=features))


def plain(value: Any) -> Any:
    """`value` with each `TableBytes` read (the bytes a decoder gets), so that records of two files compare."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return read_embedded(value)


def records(files: list[str]) -> list[Any]:
    return [plain(load()) for file in files for _, load in file_records(Path(file))]


def samples(data_format: str, files: list[str]) -> list[tuple[Any, ...]]:
    """Each sample's turns and media as a decoder reads them."""
    read = FORMATS[data_format].reader([Path(file) for file in files], on_error="raise")
    return [(sample.messages, [plain(item) for item in (*sample.images, *sample.audios)]) for sample in read]


def both(data: Any, folder: Path, **saving: Any) -> tuple[Path, Path]:
    """The data set as a Parquet file and as a save_to_disk folder."""
    parquet = folder / "data.parquet"
    data.to_parquet(str(parquet))
    data.save_to_disk(str(folder / "saved"), **saving)
    return parquet, folder / "saved"


@pytest.mark.parametrize(("make", "data_format"), [(lambda: cifar_rows([0, 2, 1]), "qa"), (qa_records, "qa"),
                                                   (llava_records, "llava"), (speech_rows, "asr")],
                         ids=["classlabel", "qa", "llava", "asr"])
def test_a_saved_data_set_reads_as_its_parquet_file(tmp_path, make, data_format):
    parquet, saved = both(make(), tmp_path)
    (shard,) = files = expand_paths([str(saved)], "data.train")
    assert files == [str(saved / "data-00000-of-00001.arrow")]
    assert detect_format(Path(shard)) == detect_format(parquet) == data_format
    assert records(files) == records([str(parquet)])
    assert samples(data_format, files) == samples(data_format, [str(parquet)])
    assert len(samples(data_format, files)) == len(make())
    # the media stay in the file, read when the sample is built; listing the rows leaves the same bytes unread
    first = next(iter(FORMATS[data_format].reader(Path(shard), on_error="raise")))
    assert all(isinstance(item, TableBytes) and item.path == shard for item in (*first.images, *first.audios))
    with open_table_file(Path(shard)) as arrow, open_table_file(parquet) as table:
        assert _listed_columns(arrow, 0) == _listed_columns(table, 0)
        assert arrow.num_rows == table.num_rows == len(make())


def test_a_classlabel_is_answered_by_name_and_the_image_bytes_are_the_ones_saved(tmp_path):
    images = pictures(3)
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=CIFAR)})
    datasets.Dataset.from_dict({"img": [png(image) for image in images], "label": [1, 0, 2]},
                               features=features).save_to_disk(str(tmp_path / "saved"))
    read = list(QAReader(tmp_path / "saved/data-00000-of-00001.arrow", on_error="raise"))
    assert [(s.messages[0].content, s.messages[1].content) for s in read] == [
        (f"<image>\n{IMAGE_PROMPT}", "automobile"), (f"<image>\n{IMAGE_PROMPT}", "airplane"),
        (f"<image>\n{IMAGE_PROMPT}", "bird")]
    assert [s.images[0].read() for s in read] == [png(image) for image in images]


def test_two_shards_read_in_the_order_state_json_gives(tmp_path):
    parquet, saved = both(cifar_rows([0, 1, 2, 2, 1, 0]), tmp_path, num_shards=2)
    shards = [str(saved / f"data-0000{k}-of-00002.arrow") for k in range(2)]
    assert expand_paths([str(saved)], "data.train") == shards
    assert records(shards) == records([str(parquet)])  # the rows in the data set's order
    # training reads the folder so (data.train)
    trained = read_samples(DataConfig(format="qa", train=[str(saved)]))
    assert [s.messages for s in trained] == [s.messages for s in read_samples(DataConfig(format="qa",
                                                                                     train=[str(parquet)]))]
    assert [s.source for s in trained] == [f"{shard}:row {row}" for shard in shards for row in range(3)]
    state = json.loads((saved / "state.json").read_text())
    state["_data_files"].reverse()  # the order is state.json's, not the names'
    (saved / "state.json").write_text(json.dumps(state))
    assert expand_paths([str(saved)], "data.train") == shards[::-1]
    # a wildcard of the shards reads them too, in name order
    assert expand_paths([str(saved / "*.arrow")], "data.train") == shards


def test_series_rows_read_as_from_the_parquet_file(tmp_path):
    data = datasets.Dataset.from_dict({"id": ["a", "b"], "target": [[1.0, 2.0, None, 4.0], [5.0, 6.0, 7.0, 8.0]]})
    parquet, saved = both(data, tmp_path)
    shard = saved / "data-00000-of-00001.arrow"
    assert is_series_file(shard) and is_series_file(parquet)
    read = {path: [(row.name, row.values["target"].tolist()) for row in series_rows(path, None)]
            for path in (shard, parquet)}
    assert str(read[shard]) == str(read[parquet]) == str([("row 0 (id 'a')", [1.0, 2.0, float("nan"), 4.0]),
                                                          ("row 1 (id 'b')", [5.0, 6.0, 7.0, 8.0])])


def test_features_come_from_dataset_info_json_when_the_schema_lost_them(tmp_path):
    _, saved = both(cifar_rows([2, 0]), tmp_path)
    shard = saved / "data-00000-of-00001.arrow"
    with open_table_file(shard) as handle:
        table = handle.read_row_group(0, ["img", "label"]).replace_schema_metadata(None)
    for name, writer in (("stream.arrow", pa.ipc.new_stream), ("file.arrow", pa.ipc.new_file)):  # (file: Feather)
        with writer(str(saved / name), table.schema) as out:
            out.write_table(table)
        layout = hub_layout(saved / name)
        assert layout is not None and (layout.media, layout.label, layout.names) == ("img", "label", CIFAR)
        assert [r["answer"] for r in records([str(saved / name)])] == ["bird", "airplane"]


def test_init_and_eval_custom_read_a_saved_folder_as_its_parquet_file(tmp_path, monkeypatch, capsys):
    parquet, saved = both(cifar_rows([0, 0, 1, 2, 2, 0]), tmp_path)
    capsys.readouterr()  # (datasets' progress bars)
    config = tmp_path / "c.yaml"
    assert main(["init", "--data", str(saved), "--yes", "--device", "cpu", "--output", str(config)]) == 0
    shown = capsys.readouterr().out
    assert "qa format, 6 usable samples" in shown
    assert f"{saved / 'data-00000-of-00001.arrow'}: the image of 'img' answered with the label 'label'" in shown
    model = scripted_model(tmp_path, monkeypatch, reply=lambda messages: "airplane")  # to every question
    scores = {}
    for data in (parquet, saved):
        out = tmp_path / f"{data.stem}-eval"
        assert main(["eval", "--task", "custom", "--data", str(data), "--model", str(model), "--output", str(out),
                     "--no-progress"]) == 0
        scores[data] = capsys.readouterr().out.splitlines()[-2].replace(str(out), "OUT")  # (it names the report)
        metrics = json.loads((out / "summary.json").read_text())["metrics"]
        assert {name: counts["samples"] for name, counts in metrics["per_answer"].items()} == {
            "airplane": 3, "automobile": 1, "bird": 2}
    assert scores[saved] == scores[parquet]
    assert scores[saved].startswith("custom data all: exact-match accuracy (%) 50.00 over 6 samples")


def test_a_saved_dataset_dict_of_several_splits_is_refused_and_one_split_read(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    datasets.DatasetDict({"train": cifar_rows([0, 1]), "test": cifar_rows([2])}).save_to_disk("cifar")
    refusal = ("cifar: holds the splits train/, test/, each a split's rows, which the folder read whole would mix: "
               "give one split, cifar/train to train on (modrwkv init --data, data.train); evaluate on cifar/test "
               "(modrwkv eval --task custom --data); to read every split together, give cifar/*/*.arrow")
    with pytest.raises(FileNotFoundError) as caught:
        expand_paths(["cifar"], "data.train")
    assert str(caught.value) == f"data.train: {refusal}"
    assert main(["init", "--data", "cifar", "--yes", "--device", "cpu", "--output", "c.yaml"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"modrwkv init: error: --data: {refusal}"
    with pytest.raises(BenchmarkFileError, match=re.escape(f"--data: {refusal}")):
        CustomTask().load(Path("cifar"), "test")
    assert expand_paths(["cifar/test"], "--data") == ["cifar/test/data-00000-of-00001.arrow"]
    datasets.DatasetDict({"test": cifar_rows([2, 1])}).save_to_disk("one")  # one split: the folder stands for it
    assert expand_paths(["one"], "--data") == ["one/test/data-00000-of-00001.arrow"]
    assert [s.reference for s in CustomTask().load(Path("one"), "test")] == [
        {"metric": "exact", "answers": ["bird"]}, {"metric": "exact", "answers": ["automobile"]}]


def test_a_damaged_arrow_file_or_state_json_is_one_line_naming_it(tmp_path, capsys):
    _, saved = both(cifar_rows([0, 1, 2]), tmp_path)
    shard = saved / "data-00000-of-00001.arrow"
    shard.write_bytes(shard.read_bytes()[:-200])  # cut short, as an interrupted copy leaves it
    with pytest.raises(DataError, match=rf"^{re.escape(str(shard))}: not a readable Arrow file: \S"):
        list(QAReader(shard, on_error="skip"))
    capsys.readouterr()  # (datasets' progress bars)
    assert main(["init", "--data", str(saved), "--yes", "--device", "cpu", "--output", str(tmp_path / "c.yaml")]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "Traceback" not in error and f"{shard}: not a readable Arrow file" in error
    (saved / "state.json").write_text('{"_data_files": [{"filename": "gone.arrow"}]}')
    with pytest.raises(FileNotFoundError, match=re.escape(f"data.train: {saved / 'state.json'} lists "
                                                          f"{saved / 'gone.arrow'}, which is not there")):
        expand_paths([str(saved)], "data.train")


def cache_entry(cache: Path) -> Path:
    """The folder `load_dataset` prepared its data set in (<cache>/<builder>/<config>/<version>/<hash>/)."""
    (info,) = cache.glob("*/*/*/*/dataset_info.json")
    return info.parent


def test_a_load_dataset_cache_entry_reads_as_its_parquet_file(tmp_path, capsys):
    """~/.cache/huggingface/datasets as `load_dataset` fills it: <name>-<split>.arrow per split (sharded
    <name>-<split>-00000-of-00002.arrow when large) beside dataset_info.json, and cache-<hash>.arrow files of
    .map() results, which are not the data set. One split is read; several are refused as a saved DatasetDict is."""
    train, test = tmp_path / "train.parquet", tmp_path / "test.parquet"
    cifar_rows([0, 1, 2, 2, 1, 0]).to_parquet(str(train))
    cifar_rows([2]).to_parquet(str(test))
    one = datasets.load_dataset("parquet", data_files={"train": str(train)}, cache_dir=str(tmp_path / "one"))
    one["train"].map(lambda row: {"label": 0})  # a .map() result cached beside the split's file
    entry = cache_entry(tmp_path / "one")
    assert any(name.startswith("cache-") for name in map(lambda p: p.name, entry.iterdir()))
    assert expand_paths([str(entry)], "data.train") == [str(entry / "parquet-train.arrow")]
    assert records([str(entry / "parquet-train.arrow")]) == records([str(train)])
    capsys.readouterr()  # (datasets' progress bars)
    assert main(["init", "--data", str(entry), "--yes", "--device", "cpu", "--output", str(tmp_path / "c.yaml")]) == 0
    assert "qa format, 6 usable samples" in capsys.readouterr().out

    datasets.load_dataset("parquet", data_files={"train": str(train), "test": str(test)}, cache_dir=str(tmp_path / "two"))
    entry = cache_entry(tmp_path / "two")
    with pytest.raises(FileNotFoundError) as caught:
        expand_paths([str(entry)], "data.train")
    assert str(caught.value) == (
        f"data.train: {entry}: holds the splits parquet-train.arrow, parquet-test.arrow, each a split's rows, which "
        f"the folder read whole would mix: give one split, {entry / 'parquet-train.arrow'} to train on (modrwkv init "
        f"--data, data.train); evaluate on {entry / 'parquet-test.arrow'} (modrwkv eval --task custom --data); to "
        f"read every split together, give {entry / 'parquet-*.arrow'}")

    halves = [tmp_path / "train-a.parquet", tmp_path / "train-b.parquet"]
    cifar_rows([0, 1, 2]).to_parquet(str(halves[0]))
    cifar_rows([2, 1, 0]).to_parquet(str(halves[1]))
    builder = datasets.load_dataset_builder("parquet", data_files={"train": list(map(str, halves))},
                                            cache_dir=str(tmp_path / "big"))
    builder.download_and_prepare(num_proc=2)  # a shard per process
    entry = cache_entry(tmp_path / "big")
    shards = expand_paths([str(entry)], "data.train")
    assert shards == [str(entry / f"parquet-train-0000{k}-of-00002.arrow") for k in range(2)]
    assert records(shards) == records(list(map(str, halves)))  # every row, in the data set's order
    Path(shards[1]).unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"data.train: {entry} is a `datasets` cache entry whose split 'train' has 2 shards; "
            f"{Path(shards[1]).name} is not there (an interrupted download?)")):
        expand_paths([str(entry)], "data.train")
