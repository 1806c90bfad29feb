"""A Hugging Face hub data set's Parquet files as downloaded (cifar10, mnist, speech_commands, a captioning set):
plain rows of a media column and a label or caption, no question, read as the records `media_record` makes of
them; and rows of image conversations (the_cauldron's and Docmatix's `images` and `texts`, TRL's `messages` and
`images`), read as the conversations they stand for. The files are written by `datasets` itself (an independent
producer of the layout), or by pyarrow alone (no `huggingface` schema metadata, or the metadata hub files carry),
and the records checked against hand-written expectations."""

from __future__ import annotations

import io
import itertools
import json
import logging
import re
import wave
from pathlib import Path

import numpy as np
import pytest
import yaml
from container_checks import check_hub_split_shards_refused
from eval_fixtures import coco_caption_module, scripted_model
from PIL import Image

from modrwkv.cli import main
from modrwkv.data.readers import AsrManifestReader, DataError, LlavaReader, OpenAIChatReader, QAReader
from modrwkv.data.readers.base import TableBytes, expand_paths, file_records
from modrwkv.data.readers.detect import FormatUnknown, detect_format
from modrwkv.data.readers.hubrows import HubLayout, hub_layout
from modrwkv.data.readers.qa import each_caption
from modrwkv.data.sample import Message
from modrwkv.encoders import build_encoder
from modrwkv.encoders.media import load_audio, load_image
from modrwkv.evaluation.tasks import BenchmarkFileError, CustomTask, custom_task
from modrwkv.processing import IGNORE_INDEX, ModRWKVProcessor, get_template
from modrwkv.tokenizer import WorldTokenizer

datasets = pytest.importorskip("datasets")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

CIFAR = ["airplane", "automobile", "bird"]
IMAGE_PROMPT, AUDIO_PROMPT = "What is shown in the image?", "What is said or heard in the audio?"


def pictures(count: int) -> list[Image.Image]:
    """`count` 8x8 RGB images, each a different flat colour."""
    return [Image.new("RGB", (8, 8), (40 * i, 255 - 30 * i, 7 * i)) for i in range(count)]


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def wav(frequency: float) -> bytes:
    """0.1 s of a 16 kHz sine, as a WAV file's bytes."""
    samples = (0.3 * np.sin(2 * np.pi * frequency * np.arange(1600) / 16000) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16000)
        handle.writeframes(samples.tobytes())
    return buffer.getvalue()


def cifar(path: Path, labels: list[int], images: list[Image.Image] | None = None) -> list[Image.Image]:
    """A cifar10-shaped file as `datasets` writes it: `img` (Image(), the PNG bytes embedded) and `label`
    (ClassLabel, stored as the class's number)."""
    images = images or pictures(len(labels))
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=CIFAR)})
    datasets.Dataset.from_dict({"img": images, "label": labels}, features=features).to_parquet(str(path))
    return images


def records(path: Path, **options) -> list[dict]:
    return [load() for _, load in file_records(path, **options)]


def test_cifar10_rows_are_labelled_images_answered_with_their_class_names(tmp_path):
    path = tmp_path / "train-00000-of-00001.parquet"
    images = cifar(path, [0, 2, 1, 2])
    assert json.loads(pq.ParquetFile(path).schema_arrow.metadata[b"huggingface"])["info"]["features"]["label"] == {
        "names": CIFAR, "_type": "ClassLabel"}  # (the layout the reading relies on, as datasets writes it)
    assert detect_format(path) == "qa"
    read = records(path)
    assert [(r["question"], r["answer"], r["metric"]) for r in read] == [
        (IMAGE_PROMPT, "airplane", "exact"), (IMAGE_PROMPT, "bird", "exact"), (IMAGE_PROMPT, "automobile", "exact"),
        (IMAGE_PROMPT, "bird", "exact")]
    samples = list(QAReader(path, on_error="raise"))
    assert [s.messages[1].content for s in samples] == ["airplane", "bird", "automobile", "bird"]
    assert [s.source for s in samples] == [f"{path}:row {i}" for i in range(4)]
    assert all(isinstance(s.images[0], TableBytes) for s in samples)  # read when the sample is built
    for sample, image in zip(samples, images, strict=True):
        assert np.array_equal(np.asarray(load_image(sample.images[0]).convert("RGB")), np.asarray(image))
    # data.options.prompt asks them another question, as it does a tar's or a folder's
    assert {s.messages[0].content for s in QAReader(path, prompt="Which class?", on_error="raise")} == {
        "<image>\nWhich class?"}


def test_rows_without_schema_metadata_take_the_conventional_columns(tmp_path):
    images = pictures(3)
    plain = tmp_path / "plain.parquet"  # pandas / pyarrow: no huggingface metadata, a {bytes, path} struct
    pq.write_table(pa.table({"image": [{"bytes": png(i), "path": f"{k}.png"} for k, i in enumerate(images)],
                             "label": ["cat", "dog", "07"], "source": ["a", "b", "c"]}), plain)
    assert pq.ParquetFile(plain).schema_arrow.metadata is None
    assert detect_format(plain) == "qa"
    assert [(r["question"], r["answer"]) for r in records(plain)] == [
        (IMAGE_PROMPT, "cat"), (IMAGE_PROMPT, "dog"), (IMAGE_PROMPT, "07")]  # as written
    # a path string, relative to the file's folder; `labels`, a number, answered as written
    for k, image in enumerate(images):
        image.save(tmp_path / f"{k}.png")
    paths = tmp_path / "paths.parquet"
    pq.write_table(pa.table({"img": ["0.png", "1.png"], "labels": [3, 11]}), paths)
    samples = list(QAReader(paths, on_error="raise"))
    assert [(s.messages[0].content, s.messages[1].content) for s in samples] == [
        (f"<image>\n{IMAGE_PROMPT}", "3"), (f"<image>\n{IMAGE_PROMPT}", "11")]
    assert np.array_equal(np.asarray(load_image(samples[1].images[0]).convert("RGB")), np.asarray(images[1]))
    raw = tmp_path / "raw.parquet"  # the bytes themselves as the column
    pq.write_table(pa.table({"photo": [png(images[2])], "label": ["fox"]}), raw)
    (sample,) = QAReader(raw, on_error="raise")
    assert sample.messages[1].content == "fox"
    assert np.array_equal(np.asarray(load_image(sample.images[0]).convert("RGB")), np.asarray(images[2]))


CARD = """---
license: unknown
dataset_info:
  config_name: plain_text
  features:
  - name: pixels
    dtype: image
  - name: label
    dtype:
      class_label:
        names:
          '0': airplane
          '1': automobile
          '2': bird
  splits:
  - name: train
    num_examples: 2
---

# A data set card
"""


def test_a_file_without_metadata_takes_its_features_from_the_hub_card(tmp_path, monkeypatch):
    images = pictures(2)
    data = tmp_path / "repo" / "plain_text"
    data.mkdir(parents=True)
    path = data / "train-00000-of-00001.parquet"  # as the hub lays a repo out: the card at its root
    pq.write_table(pa.table({"pixels": [{"bytes": png(i), "path": None} for i in images], "label": [2, 0]}), path)
    (tmp_path / "repo" / "README.md").write_text(CARD)
    samples = list(QAReader(path, on_error="raise"))
    assert [s.messages[1].content for s in samples] == ["bird", "airplane"]
    assert np.array_equal(np.asarray(load_image(samples[0].images[0]).convert("RGB")), np.asarray(images[0]))
    # two configs whose class names differ tell nothing: the numbers are answered as written
    second = CARD.replace("dataset_info:\n  config_name: plain_text\n  features:",
                          "dataset_info:\n- config_name: a\n  features:").replace("  splits:", "- config_name: b\n"
                          "  features:\n  - name: label\n    dtype:\n      class_label:\n        names:\n"
                          "          '0': x\n          '1': y\n          '2': z\n  splits:")
    (tmp_path / "repo" / "README.md").write_text(second)
    assert [s.messages[1].content for s in QAReader(path, on_error="raise")] == ["2", "0"]
    # one parse of a card for the many shards under it (a card of 1,000 class names takes 37 ms to parse), and
    # again once it changes
    import yaml

    from modrwkv.data.readers.hubrows import card_features

    parses = []
    monkeypatch.setattr(yaml, "safe_load", lambda text, load=yaml.safe_load: parses.append(1) or load(text))
    (tmp_path / "repo" / "README.md").write_text(CARD + "\n")
    first = card_features(path)
    assert first["label"] == {"_type": "ClassLabel", "names": ["airplane", "automobile", "bird"]}
    assert [card_features(path.with_name(f"train-{i:05d}-of-00300.parquet")) for i in range(300)] == [first] * 300
    assert len(parses) == 1


def test_two_class_labels_are_refused_until_one_is_chosen(tmp_path, capsys):
    path = tmp_path / "cifar100.parquet"
    features = datasets.Features({"img": datasets.Image(),
                                  "fine_label": datasets.ClassLabel(names=["apple", "aquarium_fish", "baby"]),
                                  "coarse_label": datasets.ClassLabel(names=["fruit", "fish", "people"])})
    datasets.Dataset.from_dict({"img": pictures(3), "fine_label": [2, 0, 1], "coarse_label": [2, 0, 1]},
                               features=features).to_parquet(str(path))
    with pytest.raises(FormatUnknown, match=re.escape(
            f"{path}: 2 ClassLabel columns (fine_label, coarse_label): choose the one to answer with, "
            "data.options.label_column (modrwkv init / eval --label-column): fine_label or coarse_label")):
        detect_format(path)
    assert [s.messages[1].content for s in QAReader(path, label_column="coarse_label", on_error="raise")] == [
        "people", "fruit", "fish"]
    assert [r["answer"] for r in records(path, label_column="fine_label")] == ["baby", "apple", "aquarium_fish"]
    with pytest.raises(DataError, match=r"data.options.label_column 'fine' is no column of the file \(its columns: "
                                        r"img, fine_label, coarse_label\)"):
        records(path, label_column="fine")
    # init: refused naming the setting; with --label-column, written into the config training reads
    output = tmp_path / "c100.yaml"
    assert main(["init", "--data", str(path), "--yes", "--device", "cpu", "--output", str(output)]) == 2
    assert "2 ClassLabel columns (fine_label, coarse_label)" in capsys.readouterr().err
    assert main(["init", "--data", str(path), "--yes", "--device", "cpu", "--output", str(output),
                 "--label-column", "coarse_label"]) == 0
    out = capsys.readouterr().out
    assert f"{path}: qa format, 3 usable samples, inputs: image" in out
    assert "--data YOUR_TEST_FILE.jsonl --label-column coarse_label\n" in out  # (no test file beside it)
    config = yaml.safe_load(output.read_text())
    assert config["data"]["format"] == "qa" and config["data"]["options"] == {"label_column": "coarse_label"}
    # validation during training reads data.val with data.options, as eval --label-column does
    from modrwkv.training import config_from_dict
    from modrwkv.training.validation import answer_scorer, val_data_config

    config["data"]["val"] = [str(path)]
    config["train"]["val_every"] = 1
    scorer = answer_scorer(val_data_config(config_from_dict(config).data), "accuracy", None)
    assert [s.reference["answers"] for s in scorer.samples] == [["people"], ["fruit"], ["fish"]]
    task = CustomTask(reader_options={"label_column": "fine_label"})
    assert [s.reference["answers"] for s in task.load(path, "test")] == [["baby"], ["apple"], ["aquarium_fish"]]


def test_a_bad_row_or_layout_is_one_line_naming_the_file_row_and_column(tmp_path):
    path = tmp_path / "bad.parquet"
    images = pictures(5)
    cifar(path, [0, 1, 2, 0, 1], [images[0], None, *images[2:]])
    # a label out of the names' range, which datasets refuses to write: the file's label column replaced
    table = pq.read_table(path)
    table = table.set_column(1, "label", pa.array([0, 1, 3, -1, None], pa.int64()))
    assert b"huggingface" in table.schema.metadata
    pq.write_table(table, path)
    reader = QAReader(path)
    assert [s.messages[1].content for s in reader] == ["airplane"]
    assert [str(e) for e in reader.report.examples] == [
        f"{path}:row 1: 'img' is null: no image",
        f"{path}:row 2: 'label' is 3, no class of its ClassLabel (0 to 2: airplane, automobile, bird)",
        f"{path}:row 3: 'label' is -1, no class of its ClassLabel (0 to 2: airplane, automobile, bird) (datasets "
        "writes -1 for a row without a label: a test split whose labels are withheld?)",
        f"{path}:row 4: 'label' is null: no label"]
    two = tmp_path / "two.parquet"
    pq.write_table(pa.table({"image": ["a.png"], "audio": ["a.wav"], "label": ["x"]}), two)
    with pytest.raises(FormatUnknown, match=re.escape(f"{two}: 2 media columns (image, audio): a row becomes one "
                                                      "record with one image, audio clip or video")):
        detect_format(two)
    none = tmp_path / "none.parquet"
    pq.write_table(pa.table({"picture_id": [4], "label": ["x"]}), none)
    with pytest.raises(FormatUnknown, match=re.escape(f"{none}: a label column (label) but no media column (its "
                                                      "columns: picture_id, label)")):
        detect_format(none)


def test_rows_of_one_embedded_image_are_one_sample_with_every_caption_in_eval(tmp_path):
    """A hub Parquet file of a row per caption (the image's bytes repeated in each) is scored as COCO scores an
    image: once, against all its captions, the rows grouped by their bytes."""
    pairs = tmp_path / "pairs.parquet"
    red, green = pictures(2)
    captions = ["a red square", "a green square", "a red box on white", "green, centred", "red"]
    features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")})
    datasets.Dataset.from_dict({"image": [red, green, red, green, red], "text": captions},
                               features=features).to_parquet(str(pairs))
    assert [(s.id, s.reference["answers"]) for s in CustomTask().load(pairs, "test")] == [
        ("1", ["a red square", "a red box on white", "red"]), ("2", ["a green square", "green, centred"])]
    assert len(list(QAReader(pairs))) == 5  # training: a sample per row


def test_where_keeps_a_parquet_files_rows_by_a_column(tmp_path):
    """A hub copy holding its folds in one split (ESC-50's on the hub: a `fold` column beside the clips): training
    reads folds 1-4, eval fold 5, by the column's stored values; the file's row count is not the records'."""
    path = tmp_path / "esc50.parquet"
    features = datasets.Features({"img": datasets.Image(), "fold": datasets.Value("int64"),
                                  "label": datasets.ClassLabel(names=CIFAR)})
    datasets.Dataset.from_dict({"img": pictures(5), "fold": [1, 2, 3, 4, 5], "label": [0, 1, 2, 1, 0]},
                               features=features).to_parquet(str(path))
    train = QAReader(path, where={"fold": [1, 2, 3, 4]})
    assert [s.messages[1].content for s in train] == [CIFAR[0], CIFAR[1], CIFAR[2], CIFAR[1]]
    assert train.count_records() == 4
    assert [s.reference["answers"] for s in custom_task(str(path), where={"fold": ["5"]}).load(path, "all")] == [
        [CIFAR[0]]]


def test_where_keeps_a_classlabel_columns_rows_by_class_name_or_number(tmp_path):
    """A ClassLabel column is kept by its class names as the records answer with them (`label=bird`), or by the
    numbers the file stores; a class name that is a number is that class, not the number's."""
    path = tmp_path / "cifar.parquet"
    cifar(path, [0, 2, 1, 2, 0])
    assert [s.messages[1].content for s in QAReader(path, where={"label": ["bird"]})] == ["bird", "bird"]
    assert [s.messages[1].content for s in QAReader(path, where={"label": ["airplane", 1]})] == [
        "airplane", "automobile", "airplane"]
    assert QAReader(path, where={"label": "bird"}).count_records() == 2
    assert [s.reference["answers"] for s in custom_task(str(path), where={"label": ["automobile"]}).load(
        path, "all")] == [["automobile"]]
    with pytest.raises(DataError, match=re.escape(
            "'cat' is no class of 'label' (where (data.options.where)): its ClassLabel's classes are airplane, "
            "automobile, bird (or their numbers 0 to 2)")):
        list(QAReader(path, where={"label": "cat"}, on_error="raise"))
    ratings = tmp_path / "ratings.parquet"  # classes named by numbers, not their own
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=["1", "2", "3"])})
    datasets.Dataset.from_dict({"img": pictures(3), "label": [0, 1, 2]}, features=features).to_parquet(str(ratings))
    assert [s.messages[1].content for s in QAReader(ratings, where={"label": 1})] == ["1"]
    # a metadata folder's metadata.parquet keeps its ClassLabel's rows by name as well
    folder = tmp_path / "folder"
    folder.mkdir()
    for index, image in enumerate(pictures(3)):
        image.save(folder / f"{index}.png")
    features = datasets.Features({"file_name": datasets.Value("string"), "label": datasets.ClassLabel(names=CIFAR)})
    datasets.Dataset.from_dict({"file_name": ["0.png", "1.png", "2.png"], "label": [2, 0, 2]},
                               features=features).to_parquet(str(folder / "metadata.parquet"))
    assert [s.messages[1].content for s in QAReader(folder, where={"label": "bird"})] == ["bird", "bird"]


def test_where_names_a_classlabel_columns_values_by_class_when_no_row_is_kept(tmp_path, caplog):
    """Where `where` keeps no row, the message shows a ClassLabel column's values as the classes the user names
    them by, each with the number the file stores, whether a name or a number was given; the count logged too.
    Any other column's values are shown as they are."""
    path = tmp_path / "cifar.parquet"
    features = datasets.Features({"img": datasets.Image(), "fold": datasets.Value("int64"),
                                  "label": datasets.ClassLabel(names=CIFAR)})
    datasets.Dataset.from_dict({"img": pictures(3), "fold": [1, 1, 2], "label": [0, 2, 0]},
                               features=features).to_parquet(str(path))
    seen = f"{CIFAR[0]} (0), {CIFAR[2]} (2)"  # the classes of labels 0 and 2, in the order of their names
    for bird in ("bird", 2, "02"):
        with pytest.raises(DataError, match=re.escape(
                f"{path}: no row has label in {CIFAR[2]} (2); fold in 2 (where (data.options.where)); its values: "
                f"label: {seen}; fold: 1, 2")):
            list(QAReader(path, where={"label": bird, "fold": 2}))
    with caplog.at_level(logging.INFO, logger="modrwkv.data.readers"):
        assert QAReader(path, where={"label": ["airplane", 1]}).count_records() == 2
    assert f"{path}: 2 of 3 rows kept (label in {CIFAR[0]} (0), {CIFAR[1]} (1))" in caplog.text
    # a metadata folder's metadata.parquet is shown by class as well
    folder = tmp_path / "folder"
    folder.mkdir()
    pictures(1)[0].save(folder / "0.png")
    features = datasets.Features({"file_name": datasets.Value("string"), "label": datasets.ClassLabel(names=CIFAR)})
    datasets.Dataset.from_dict({"file_name": ["0.png"], "label": [1]}, features=features).to_parquet(
        str(folder / "metadata.parquet"))
    with pytest.raises(DataError, match=re.escape(f"no row has label in {CIFAR[0]} (0) (where (data.options.where)); "
                                                  f"its values: label: {CIFAR[1]} (1)")):
        list(QAReader(folder, where={"label": "airplane"}))


def test_captions_and_a_metadata_parquet_go_through_the_same_mapping(tmp_path):
    captions = tmp_path / "captions.parquet"  # an image-text pair set: `text` is a caption, not a transcript
    features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")})
    datasets.Dataset.from_dict({"image": pictures(2), "text": ["a red square", "a green square"]},
                               features=features).to_parquet(str(captions))
    assert detect_format(captions) == "qa"
    assert [(r["question"], r["answer"]) for r in records(captions)] == [
        ("Write a short caption for the image.", "a red square"), ("Write a short caption for the image.",
                                                                    "a green square")]
    # a metadata folder whose metadata.parquet `datasets` wrote: its ClassLabel answered by name too
    folder = tmp_path / "folder"
    folder.mkdir()
    for k, image in enumerate(pictures(2)):
        image.save(folder / f"{k}.png")
    features = datasets.Features({"file_name": datasets.Value("string"), "label": datasets.ClassLabel(names=CIFAR)})
    datasets.Dataset.from_dict({"file_name": ["0.png", "1.png"], "label": [2, 1]}, features=features).to_parquet(
        str(folder / "metadata.parquet"))
    assert [s.messages[1].content for s in QAReader(folder, on_error="raise")] == ["bird", "automobile"]


def test_a_list_of_captions_trains_each_and_is_every_reference_of_cider_in_eval(tmp_path, monkeypatch, capsys):
    flickr = tmp_path / "flickr30k.parquet"  # nlphuji/flickr30k: five captions per image, as a list
    features = datasets.Features({"image": datasets.Image(), "caption": datasets.Sequence(datasets.Value("string")),
                                  "img_id": datasets.Value("string")})
    captions = [["A red square.", "A red square on a white background.", "red"],
                ["A green box, centred.", "Green.", "a green square"], ["Blue!"]]
    datasets.Dataset.from_dict({"image": pictures(3), "caption": captions, "img_id": ["0", "1", "2"]},
                               features=features).to_parquet(str(flickr))
    assert detect_format(flickr) == "qa"
    samples = list(QAReader(flickr, on_error="raise"))
    assert [(s.messages[0].content, s.messages[1].content) for s in samples] == [
        ("<image>\nWrite a short caption for the image.", "A red square."),
        ("<image>\nWrite a short caption for the image.", "A green box, centred."),
        ("<image>\nWrite a short caption for the image.", "Blue!")]
    assert [[s.messages[1].content for s in each_caption(sample)] for sample in samples] == captions  # training's
    assert [s.reference for s in CustomTask().load(flickr, "test")] == [
        {"metric": "cider", "answers": answers} for answers in captions]  # not VQA's accuracy over answers
    replies = itertools.cycle(["Red.", "A green square on a white background.", "a blue square"])  # each run's
    model = scripted_model(tmp_path, monkeypatch, reply=lambda messages: next(replies))
    assert main(["eval", "--task", "custom", "--data", str(flickr), "--model", str(model), "--output",
                 str(tmp_path / "out"), "--no-progress"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert f"CIDEr-D (x100) {summary['headline']['value']:.2f} over 3 samples" in capsys.readouterr().out
    assert "- bleu_4: " in (tmp_path / "out" / "report.md").read_text()
    # --metric exact still scores a reply by whether it is one of the captions
    assert main(["eval", "--task", "custom", "--data", str(flickr), "--model", str(model), "--output",
                 str(tmp_path / "exact"), "--no-progress", "--metric", "exact"]) == 0
    assert "exact-match accuracy (%) 33.33 over 3 samples" in capsys.readouterr().out
    # a metadata folder's caption lists take the same mapping; an empty list or a null caption is the row's error
    for k, image in enumerate(pictures(3)):
        image.save(tmp_path / f"{k}.png")
    (tmp_path / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in [
        {"file_name": "0.png", "caption": ["one", "two"]}, {"file_name": "1.png", "caption": []},
        {"file_name": "2.png", "caption": ["three", None]}]))
    reader = QAReader(tmp_path / "metadata.jsonl")
    assert [s.messages[1].content for s in reader] == ["one"]
    assert [str(e) for e in reader.report.examples] == [
        f"{tmp_path / 'metadata.jsonl'}:2: the list of captions is empty: give at least one caption",
        f"{tmp_path / 'metadata.jsonl'}:3: caption 2 is null (an empty cell in the table this was exported from?): "
        "give the answer, or leave the record out"]
    # the first run's scores are pycocoevalcap's scorers' on the captions as its PTBTokenizer gives them (by hand:
    # lower case, no punctuation)
    cider_scorer = coco_caption_module("pycocoevalcap/cider/cider_scorer.py").CiderScorer(n=4, sigma=6.0)
    bleu_scorer = coco_caption_module("pycocoevalcap/bleu/bleu_scorer.py").BleuScorer(n=4)
    for reply, references in zip(["red", "a green square on a white background", "a blue square"],
                                 [["a red square", "a red square on a white background", "red"],
                                  ["a green box centred", "green", "a green square"], ["blue"]]):
        cider_scorer += (reply, references)
        bleu_scorer += (reply, references)
    assert summary["headline"] == {"metric": "cider", "label": "CIDEr-D (x100)",
                                   "value": pytest.approx(100 * cider_scorer.compute_score()[0], abs=1e-9)}
    assert [summary["metrics"][f"bleu_{n}"] for n in range(1, 5)] == pytest.approx(
        [100 * score for score in bleu_scorer.compute_score(option="closest")[0]], abs=1e-9)


def test_jsonl_records_of_a_media_path_and_a_label_take_the_same_mapping(tmp_path):
    for k, image in enumerate(pictures(2)):
        image.save(tmp_path / f"{k}.png")
    path = tmp_path / "plain.jsonl"
    lines = [{"image": "0.png", "label": "cat"}, {"img": "1.png", "caption": "a green square"},
             {"image": "1.png", "label": None}, {"image": "0.png", "question": "Which?", "answer": "a"},
             {"image": "0.png", "kind": "cat"}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert detect_format(path) == "qa"
    reader = QAReader(path)
    assert [(s.messages[0].content, s.messages[1].content) for s in reader] == [
        (f"<image>\n{IMAGE_PROMPT}", "cat"), ("<image>\nWrite a short caption for the image.", "a green square"),
        ("<image>\nWhich?", "a")]
    assert [str(e) for e in reader.report.examples] == [f"{path}:3: 'label' is null: no label",
                                                        f"{path}:5: no 'question' (fields: ['image', 'kind'])"]
    # the label column picks among plain records' fields: a record of a record format is read as that record
    assert [s.messages[1].content for s in QAReader(path, label_column="kind")] == ["a", "cat"]


def test_speech_commands_rows_are_audio_labels_scored_by_exact_match(tmp_path):
    path = tmp_path / "speech_commands.parquet"
    clips = [wav(440), wav(660)]
    for k, clip in enumerate(clips):
        (tmp_path / f"{k}.wav").write_bytes(clip)
    # the files' bytes embedded as push_to_hub embeds them (datasets encodes no audio itself without torchcodec)
    from datasets.table import embed_table_storage

    dataset = datasets.Dataset.from_dict({"file": ["yes/a.wav", "up/b.wav"],
                                          "audio": [str(tmp_path / f"{k}.wav") for k in range(2)],
                                          "label": [0, 2], "speaker_id": ["a", "b"]})
    dataset = dataset.cast_column("audio", datasets.Audio(sampling_rate=16000))
    dataset = dataset.cast_column("label", datasets.ClassLabel(names=["yes", "no", "up"]))
    dataset.with_format("arrow").map(embed_table_storage, batched=True).with_format(None).to_parquet(str(path))
    assert json.loads(pq.ParquetFile(path).schema_arrow.metadata[b"huggingface"])["info"]["features"]["audio"][
        "_type"] == "Audio"
    assert detect_format(path) == "qa"
    samples = list(QAReader(path, on_error="raise"))
    assert [(s.messages[0].content, s.messages[1].content) for s in samples] == [
        (f"<audio>\n{AUDIO_PROMPT}", "yes"), (f"<audio>\n{AUDIO_PROMPT}", "up")]
    assert isinstance(samples[1].audios[0], TableBytes) and samples[1].audios[0].read() == clips[1]
    assert np.allclose(load_audio(samples[0].audios[0]), load_audio(clips[0]))
    evaluated = CustomTask().load(path, "test")
    assert [s.reference for s in evaluated] == [{"metric": "exact", "answers": ["yes"]},
                                                {"metric": "exact", "answers": ["up"]}]


def test_eval_custom_on_hub_rows_shows_the_class_names_per_answer(tmp_path, monkeypatch, capsys):
    model = scripted_model(tmp_path, monkeypatch, reply=lambda messages: "airplane")  # to every question
    path = tmp_path / "test.parquet"
    cifar(path, [0, 0, 1, 2, 2, 0])
    out = tmp_path / "out"
    assert main(["eval", "--task", "custom", "--data", str(path), "--model", str(model), "--output", str(out),
                 "--no-progress", "--caption-prompt", "Which class?"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2].startswith("custom data all: exact-match accuracy (%) 50.00 over 6 samples")
    assert lines[-1].startswith("lowest accuracy of an answer: 'bird' 0.0% (0 of 2), wrongly 'airplane' 2 times")
    metrics = json.loads((out / "summary.json").read_text())["metrics"]
    assert {name: counts["samples"] for name, counts in metrics["per_answer"].items()} == {
        "airplane": 3, "automobile": 1, "bird": 2}
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert {p["prompt"] for p in predictions} == {"<image>\nWhich class?"}
    with pytest.raises(BenchmarkFileError, match="--caption-prompt applies to"):  # a file of records asks its own
        CustomTask(caption_prompt="Which class?").load(write_qa(tmp_path), "test")


def write_qa(folder: Path) -> Path:
    path = folder / "qa.parquet"
    pq.write_table(pa.table({"question": ["Which?"], "answer": ["a"]}), path)
    return path


def test_a_hub_folder_of_several_splits_is_refused_naming_each_splits_wildcard(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # as the hub keeps a repository: every split in one folder
    check_hub_split_shards_refused(Path("cifar10/plain_text"), ".parquet",
                                   lambda path, rows: cifar(path, list(range(rows))), tmp_path / "c.yaml", capsys)
    # a split's own file (datasets' train.parquet, test.parquet) is a split too
    digits = Path("digits-hub")
    digits.mkdir()
    for split in ("train", "test"):
        cifar(digits / f"{split}.parquet", [0])
    with pytest.raises(FileNotFoundError, match=re.escape(
            "holds the splits test.parquet, train.parquet, each a split's rows, which the folder read whole would "
            "mix: give one split, digits-hub/train.parquet to train on")):
        expand_paths([str(digits)], "--data")
    # splits by what their names say: SVHN's extra is none to evaluate on, ultrachat's train_sft one to train on;
    # a folder of evaluation splits names none to train on; shards of languages (or of two data sets) are no splits
    layouts = {"svhn": ["extra", "test", "train"], "ultrachat": ["test_gen", "train_sft"],
               "valtest": ["test", "validation"], "languages": ["en", "fr"], "two": ["cifar10-train", "mnist-train"]}
    for name, splits in layouts.items():
        Path(name).mkdir()
        for split in splits:
            cifar(Path(name) / f"{split}-00000-of-00001.parquet", [0])
    messages = {}
    for name in layouts:
        try:
            messages[name] = len(expand_paths([name], "--data"))
        except FileNotFoundError as err:
            messages[name] = str(err).split("would mix: ")[1]
    assert messages == {
        "svhn": "give one split, svhn/train-*.parquet to train on (modrwkv init --data, data.train); evaluate on "
                "svhn/test-*.parquet (modrwkv eval --task custom --data); to read every split together, give "
                "svhn/*.parquet",
        "ultrachat": "give one split, ultrachat/train_sft-*.parquet to train on (modrwkv init --data, data.train); "
                     "evaluate on ultrachat/test_gen-*.parquet (modrwkv eval --task custom --data); to read every "
                     "split together, give ultrachat/*.parquet",
        "valtest": "give one split, evaluate on valtest/test-*.parquet (modrwkv eval --task custom --data); to read "
                   "every split together, give valtest/*.parquet",
        "languages": 2, "two": 2}


def write_c100(path: Path) -> None:
    features = datasets.Features({"img": datasets.Image(),
                                  "fine_label": datasets.ClassLabel(names=["apple", "aquarium_fish", "baby"]),
                                  "coarse_label": datasets.ClassLabel(names=["fruit", "fish", "people"])})
    datasets.Dataset.from_dict({"img": pictures(3), "fine_label": [2, 0, 1], "coarse_label": [2, 0, 1]},
                               features=features).to_parquet(str(path))


def test_the_label_column_leaves_record_files_read_beside_as_their_records(tmp_path, capsys):
    c100 = tmp_path / "c100.parquet"
    write_c100(c100)
    for k, image in enumerate(pictures(2)):
        image.save(tmp_path / f"{k}.png")
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"image": f"{k}.png", "question": "Which?", "answer": f"a{k}"}) + "\n"
                          for k in range(2)))
    qa_parquet = tmp_path / "qa.parquet"
    pq.write_table(pa.table({"image": ["0.png"], "question": ["Which?"], "answer": ["b"], "label": ["x"]}),
                   qa_parquet)
    llava = tmp_path / "llava.json"
    conversation = {"id": "0", "image": "0.png", "conversations": [{"from": "human", "value": "<image>\nWhat?"},
                                                                  {"from": "gpt", "value": "red"}]}
    llava.write_text(json.dumps([conversation]))
    reader = QAReader([c100, qa, qa_parquet], label_column="fine_label", on_error="raise")
    assert [s.messages[1].content for s in reader] == ["baby", "apple", "aquarium_fish", "a0", "a1", "b"]
    assert records(llava, label_column="label") == [conversation]
    assert main(["init", "--data", str(c100), str(qa), "--label-column", "fine_label", "--yes", "--device", "cpu",
                 "--output", str(tmp_path / "c.yaml")]) == 0
    assert "qa format, 5 usable samples" in capsys.readouterr().out


def test_init_names_the_first_bad_row_of_a_file_with_no_usable_one(tmp_path, capsys):
    withheld = tmp_path / "test-00000-of-00001.parquet"  # a test split whose labels are withheld: -1 throughout
    cifar(withheld, [-1, -1])
    first = (f"{withheld}:row 0: 'label' is -1, no class of its ClassLabel (0 to 2: airplane, automobile, bird) "
             "(datasets writes -1 for a row without a label: a test split whose labels are withheld?)")
    with pytest.raises(FormatUnknown) as caught:
        detect_format(withheld)
    assert str(caught.value) == f"{withheld}: no usable record among the first 100 (the first: {first})"
    assert main(["init", "--data", str(withheld), "--yes", "--device", "cpu", "--output",
                 str(tmp_path / "c.yaml")]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (f"modrwkv init: error: {withheld}: no usable record among "
                                                        f"the first 100 (the first: {first})")
    unlabelled = tmp_path / "images.parquet"  # an image column and nothing to answer with
    datasets.Dataset.from_dict({"image": pictures(1)}, features=datasets.Features({"image": datasets.Image()})
                               ).to_parquet(str(unlabelled))
    with pytest.raises(FormatUnknown, match=re.escape(f"{unlabelled}: no usable record among the first 100 (the "
                                                      f"first: {unlabelled}:row 0: no text: no column with a caption")):
        detect_format(unlabelled)
    plain = tmp_path / "plain.jsonl"
    plain.write_text(json.dumps({"image": "0.png", "label": None}) + "\n")
    with pytest.raises(FormatUnknown, match=re.escape(f"{plain}: no usable record among the first 100 (the first: "
                                                      f"{plain}:1: 'label' is null: no label)")):
        detect_format(plain)


def test_features_the_columns_no_longer_hold_are_not_honoured(tmp_path):
    path = tmp_path / "relabelled.parquet"
    cifar(path, [0, 2, 1])
    table = pq.read_table(path)  # the labels mapped to their names, written back by pyarrow with the old metadata
    table = table.set_column(1, "label", pa.array([CIFAR[i] for i in table.column("label").to_pylist()]))
    pq.write_table(table, path)
    assert json.loads(pq.ParquetFile(path).schema_arrow.metadata[b"huggingface"])["info"]["features"]["label"][
        "_type"] == "ClassLabel"
    # as datasets reads it: the feature is the stored type's
    assert datasets.Dataset.from_parquet(str(path)).features["label"] == datasets.Value("string")
    assert [s.messages[1].content for s in QAReader(path, on_error="raise")] == ["airplane", "bird", "automobile"]
    # an Image() column replaced by the images' numbers is no second media column
    two = tmp_path / "two.parquet"
    features = datasets.Features({"img": datasets.Image(), "thumb": datasets.Image(), "label": datasets.ClassLabel(
        names=CIFAR)})
    datasets.Dataset.from_dict({"img": pictures(2), "thumb": pictures(2), "label": [1, 0]}, features=features
                               ).to_parquet(str(two))
    table = pq.read_table(two)
    pq.write_table(table.set_column(1, "thumb", pa.array([7, 8], pa.int64())), two)
    assert [r["answer"] for r in records(two)] == ["automobile", "airplane"]


def test_a_class_label_beside_a_text_column_answers_and_init_says_so(tmp_path, capsys):
    memes = tmp_path / "memes.parquet"  # hateful_memes: the meme's words are no caption of it
    features = datasets.Features({"img": datasets.Image(), "text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["benign", "hateful"])})
    datasets.Dataset.from_dict({"img": pictures(2), "text": ["meme one", "meme two"], "label": [0, 1]},
                               features=features).to_parquet(str(memes))
    assert [(r["question"], r["answer"]) for r in records(memes)] == [(IMAGE_PROMPT, "benign"),
                                                                      (IMAGE_PROMPT, "hateful")]
    assert main(["init", "--data", str(memes), "--yes", "--device", "cpu", "--output", str(tmp_path / "c.yaml")]) == 0
    note = (f"data: {memes}: the image of 'img' answered with the label 'label' (ClassLabel of 2 classes: benign, "
            "hateful); 'text' is left aside (a ClassLabel answers before a caption; to answer with 'text', remove "
            "'label' with datasets' Dataset.remove_columns)")
    assert f"  {note}\n" in capsys.readouterr().out
    assert f"# {note}\n" in (tmp_path / "c.yaml").read_text()
    # beside audio the transcript answers (TED-LIUM keeps the speaker's `gender` as a ClassLabel beside what they
    # said: an ASR set, not gender classification) unless the label is chosen (an emotion set's)
    tedlium = tmp_path / "tedlium.parquet"
    features = datasets.Features({"audio": datasets.Audio(), "text": datasets.Value("string"),
                                  "gender": datasets.ClassLabel(names=["unknown", "female", "male"])})
    metadata = {b"huggingface": json.dumps({"info": {"features": features.to_dict()}}).encode()}
    pq.write_table(pa.table({"audio": [{"bytes": wav(440), "path": "a.wav"}], "text": ["kids are talking"],
                             "gender": pa.array([2], pa.int64())}).replace_schema_metadata(metadata), tedlium)
    assert detect_format(tedlium) == "asr"
    (sample,) = AsrManifestReader(tedlium, on_error="raise")
    assert sample.messages[1].content == "kids are talking"
    (sample,) = QAReader(tedlium, label_column="gender", on_error="raise")
    assert (sample.messages[0].content, sample.messages[1].content) == (f"<audio>\n{AUDIO_PROMPT}", "male")
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"image": [png(pictures(1)[0])], "caption": ["a red square"], "label": ["red"]}), plain)
    assert [r["answer"] for r in records(plain)] == ["a red square"]
    assert main(["init", "--data", str(plain), "--yes", "--device", "cpu", "--output", str(tmp_path / "p.yaml")]) == 0
    assert (f"  data: {plain}: the image of 'image' answered with the caption 'caption'; 'label' is left aside (to "
            "answer with it, data.options.label_column (modrwkv init / eval --label-column))\n"
            ) in capsys.readouterr().out


def test_a_multi_label_column_is_one_line_for_the_file(tmp_path):
    path = tmp_path / "multilabel.parquet"
    features = datasets.Features({"image": datasets.Image(),
                                  "labels": datasets.Sequence(datasets.ClassLabel(names=CIFAR))})
    datasets.Dataset.from_dict({"image": pictures(2), "labels": [[0, 2], [1]]}, features=features).to_parquet(str(path))
    assert json.loads(pq.ParquetFile(path).schema_arrow.metadata[b"huggingface"])["info"]["features"]["labels"][
        "feature"]["_type"] == "ClassLabel"
    line = (f"{path}: 'labels' is multi-label (a list of ClassLabel per row), which is not supported: a row is "
            "answered with one label; keep one label per row (datasets: Dataset.map), or answer with another column, "
            "data.options.label_column (modrwkv init / eval --label-column)")
    with pytest.raises(FormatUnknown) as caught:
        detect_format(path)
    assert str(caught.value) == line
    with pytest.raises(DataError) as raised:
        list(QAReader(path))
    assert (str(raised.value), raised.value.reason) == (line, "unreadable_file")
    tags = tmp_path / "tags.parquet"  # a list column by another name, none to answer with: the same line
    features = datasets.Features({"image": datasets.Image(), "tags": datasets.Sequence(datasets.ClassLabel(
        names=CIFAR))})
    datasets.Dataset.from_dict({"image": pictures(1), "tags": [[0]]}, features=features).to_parquet(str(tags))
    with pytest.raises(DataError, match=re.escape(f"{tags}: 'tags' is multi-label (a list of ClassLabel per row)")):
        records(tags)
    plain = tmp_path / "plain.parquet"  # pyarrow's lists of labels, no metadata
    pq.write_table(pa.table({"image": ["0.png"], "label": [["cat", "dog"]]}), plain)
    with pytest.raises(DataError, match=re.escape(f"{plain}: 'label' is multi-label (a list per row)")):
        records(plain)


def test_a_label_column_no_file_takes_is_refused(tmp_path, capsys):
    folder = tmp_path / "pets"
    for cls in ("cat", "dog"):
        (folder / cls).mkdir(parents=True)
        pictures(1)[0].save(folder / cls / "0.png")
    output = tmp_path / "c.yaml"
    assert main(["init", "--data", str(folder), "--label-column", "nonsense", "--yes", "--device", "cpu", "--output",
                 str(output)]) == 2
    refusal = ("label column 'nonsense' (--label-column, data.options.label_column): no data file has plain rows "
               "for it to choose the answer of (a hub data set's Parquet file of a media column and labels, a CSV table of "
                   "media rows, or JSON records such as {\"image\": \"a.png\", "
               "\"label\": \"cat\"}); records, tars, folders and series answer with their own fields: leave it out")
    assert capsys.readouterr().err.splitlines()[-1] == f"modrwkv init: error: {refusal}"
    assert not output.exists()
    with pytest.raises(BenchmarkFileError) as caught:
        CustomTask(reader_options={"label_column": "fine_label"}).load(write_qa(tmp_path), "test")
    assert str(caught.value) == refusal.replace("nonsense", "fine_label")
    # a file that takes it, beside one that does not: accepted
    c100 = tmp_path / "c100.parquet"
    write_c100(c100)
    task = CustomTask(reader_options={"label_column": "coarse_label"})
    assert [s.reference["answers"] for s in task.load([c100, write_qa(tmp_path)], "test")] == [
        ["people"], ["fruit"], ["fish"], ["a"]]


def test_a_transcript_answers_before_several_class_labels(tmp_path, capsys):
    # google/fleurs: an ASR set keeping the speaker's gender, the language and its group as ClassLabels
    fleurs = tmp_path / "fleurs.parquet"
    features = datasets.Features({"id": datasets.Value("int32"), "audio": datasets.Audio(),
                                  "transcription": datasets.Value("string"),
                                  "raw_transcription": datasets.Value("string"),
                                  "gender": datasets.ClassLabel(names=["male", "female", "other"]),
                                  "lang_id": datasets.ClassLabel(names=["af_za", "en_us"]),
                                  "lang_group_id": datasets.ClassLabel(names=["western_european_we", "other"])})
    metadata = {b"huggingface": json.dumps({"info": {"features": features.to_dict()}}).encode()}
    pq.write_table(pa.table({"id": pa.array([1], pa.int32()), "audio": [{"bytes": wav(440), "path": "1.wav"}],
                             "transcription": ["the cat sat"], "raw_transcription": ["The cat sat."],
                             "gender": pa.array([1], pa.int64()), "lang_id": pa.array([1], pa.int64()),
                             "lang_group_id": pa.array([0], pa.int64())}).replace_schema_metadata(metadata), fleurs)
    assert detect_format(fleurs) == "asr"
    (sample,) = AsrManifestReader(fleurs, on_error="raise")
    assert sample.messages[1].content == "the cat sat"
    (sample,) = QAReader(fleurs, label_column="lang_id", on_error="raise")
    assert (sample.messages[0].content, sample.messages[1].content) == (f"<audio>\n{AUDIO_PROMPT}", "en_us")
    assert main(["init", "--data", str(fleurs), "--yes", "--device", "cpu", "--output", str(tmp_path / "f.yaml")]) == 0
    assert (f"  data: {fleurs}: the audio of 'audio' answered with the transcript 'transcription'; 'gender', "
            "'lang_id', 'lang_group_id' are left aside (to answer with one, data.options.label_column (modrwkv init / "
            "eval --label-column)); columns left aside: 'raw_transcription' (to read the rows as questions, "
            "data.options.columns (modrwkv init --columns question=COLUMN,answer=COLUMN))\n") in capsys.readouterr().out
    # beside an image, several ClassLabels still ask which one answers (no transcript comes first)
    pictures_file = tmp_path / "two_labels.parquet"
    features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string"),
                                  "fine_label": datasets.ClassLabel(names=["a", "b"]),
                                  "coarse_label": datasets.ClassLabel(names=["c", "d"])})
    datasets.Dataset.from_dict({"image": pictures(1), "text": ["words"], "fine_label": [0], "coarse_label": [1]},
                               features=features).to_parquet(str(pictures_file))
    with pytest.raises(DataError, match=r"2 ClassLabel columns \(fine_label, coarse_label\): choose the one"):
        hub_layout(pictures_file)


def test_rows_with_no_label_named_so_say_how_to_choose_the_column(tmp_path):
    esc50 = tmp_path / "esc50.parquet"  # ashraq/esc50: the class is `category` (and its number `target`)
    features = datasets.Features({"audio": datasets.Audio(), "target": datasets.Value("int64"),
                                  "category": datasets.Value("string")})
    metadata = {b"huggingface": json.dumps({"info": {"features": features.to_dict()}}).encode()}
    pq.write_table(pa.table({"audio": [{"bytes": wav(440), "path": None}], "target": [0], "category": ["dog"]}
                            ).replace_schema_metadata(metadata), esc50)
    with pytest.raises(DataError, match=re.escape(
            f"{esc50}:row 0: no text: no column with a caption or transcript and no label (the row's columns: audio, "
            "target, category); to answer with one, data.options.label_column (modrwkv init / eval --label-column)")):
        records(esc50)
    assert [r["answer"] for r in records(esc50, label_column="category")] == ["dog"]


def test_vqa_and_multiple_choice_hub_rows_read_as_they_are_stored(tmp_path):
    vqav2 = tmp_path / "vqav2.parquet"  # HuggingFaceM4/VQAv2: ten annotators' entries; the consensus trains
    entry = datasets.Features({"answer": datasets.Value("string"), "answer_confidence": datasets.Value("string"),
                               "answer_id": datasets.Value("int64")})
    features = datasets.Features({"question": datasets.Value("string"), "multiple_choice_answer": datasets.Value(
        "string"), "answers": [entry], "image": datasets.Image()})
    given = ["dark red", "red", "red", "maroon", "red", "dark red", "red", "red", "crimson", "red"]
    datasets.Dataset.from_dict({"question": ["What colour?"], "multiple_choice_answer": ["red"], "answers": [[
        {"answer": a, "answer_confidence": "yes", "answer_id": k} for k, a in enumerate(given, 1)]],
        "image": pictures(1)}, features=features).to_parquet(str(vqav2))
    (sample,) = QAReader(vqav2, on_error="raise")
    assert sample.messages[1].content == "red"  # the most frequent, as multiple_choice_answer says; not the first
    (evaluated,) = CustomTask().load(vqav2, "test")
    assert evaluated.reference == {"metric": "vqa", "answers": given}
    scienceqa = tmp_path / "scienceqa.parquet"  # derek-thomas/ScienceQA: the answer is the option's index
    features = datasets.Features({"image": datasets.Image(), "question": datasets.Value("string"),
                                  "choices": datasets.Sequence(datasets.Value("string")),
                                  "answer": datasets.Value("int8")})
    datasets.Dataset.from_dict({"image": pictures(3), "question": ["Which is a mammal?"] * 3,
                                "choices": [["fish", "cat"], ["cat", "frog", "fish"], ["cat"]], "answer": [1, 0, 1]},
                               features=features).to_parquet(str(scienceqa))
    reader = QAReader(scienceqa)
    assert [(s.messages[0].content, s.messages[1].content) for s in reader] == [
        ("<image>\nWhich is a mammal?\nA. fish\nB. cat", "B"), ("<image>\nWhich is a mammal?\nA. cat\nB. frog\nC. fish",
                                                            "A")]
    assert [str(e) for e in reader.report.examples] == [
        f"{scienceqa}:row 2: answer 1 is no option's index (0 to 0 for the choices ['cat'])"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "Which?", "answers": [{"text": "red"}]}) + "\n")
    with pytest.raises(DataError, match=re.escape(
            f"{bad}:1: 'answers'[0] is an object without 'answer' (fields: ['text']): give the answers as text, or "
            "as VQA's {\"answer\": ...} entries")):
        list(QAReader(bad, on_error="raise"))


# the_cauldron's and Docmatix's features, as their hub cards declare them
CAULDRON = datasets.Features({"images": datasets.Sequence(datasets.Image()), "texts": [
    {"user": datasets.Value("string"), "assistant": datasets.Value("string"), "source": datasets.Value("string")}]})


def cauldron(path: Path, images: list[list[Image.Image]], texts: list[list[dict]]) -> None:
    """A the_cauldron-shaped file as `datasets` writes it: `images` (Sequence(Image()), PNG bytes embedded) and
    `texts`, each turn {user, assistant, source}."""
    datasets.Dataset.from_dict({"images": images, "texts": texts}, features=CAULDRON).to_parquet(str(path))


def turn(user: str | None, assistant: str | None) -> dict:
    return {"user": user, "assistant": assistant, "source": "ai2d"}


def pixels(item) -> tuple[int, int, int]:
    """The first pixel of an image item, as the decoders read it."""
    return load_image(item).convert("RGB").getpixel((0, 0))


def trained_text(sample) -> str:
    """The text of the tokens training is supervised on (the labels), from a tiny image model's processor."""
    tokenizer = WorldTokenizer()
    processor = ModRWKVProcessor(tokenizer, get_template("rwkv"),
                                 {"image": build_encoder("tiny", image_size=16, grid=2, width=32)},
                                 {"image": lambda n: n})
    labels = processor(sample).labels.tolist()
    return tokenizer.decode([label for label in labels if label != IGNORE_INDEX])


def test_the_cauldron_rows_are_conversations_with_their_images_before_the_first_question(tmp_path):
    images = pictures(3)
    path = tmp_path / "train-00000-of-00001.parquet"  # e.g. the_cauldron/nlvr2: two images, several questions
    texts = [[turn("Are both dogs?", "Yes."), turn("Which is bigger?", "The left one.")],
             [turn("What does <image> mean in HTML?", "It is no HTML tag.")]]  # text, not a media place
    cauldron(path, [images[:2], images[2:]], texts)
    assert detect_format(path) == "llava"
    first, second = LlavaReader(path, on_error="raise")
    assert first.messages == [Message("user", "<image>\n<image>\nAre both dogs?"), Message("assistant", "Yes."),
                              Message("user", "Which is bigger?"), Message("assistant", "The left one.")]
    assert [pixels(item) for item in first.images] == [images[0].getpixel((0, 0)), images[1].getpixel((0, 0))]
    assert all(isinstance(item, TableBytes) for item in first.images)  # read when the sample is built
    # (escaped: the characters, not an image: MARKER_ESCAPE before them)
    assert second.messages[0] == Message("user", "<image>\nWhat does \ufdd0<image> mean in HTML?")
    assert [pixels(item) for item in second.images] == [images[2].getpixel((0, 0))]
    assert (first.source, second.source) == (f"{path}:row 0", f"{path}:row 1")
    # every answer is trained, and nothing else
    assert trained_text(first) == " Yes.\x17 The left one.\x17"
    # the same rows as JSONL, images as paths relative to the file: the same conversations and images
    for k, image in enumerate(images):
        image.save(tmp_path / f"{k}.png")
    lines = tmp_path / "cauldron.jsonl"
    lines.write_text("".join(json.dumps({"images": names, "texts": row}) + "\n"
                             for names, row in zip([["0.png", "1.png"], ["2.png"]], texts, strict=True)))
    assert detect_format(lines) == "llava"
    read = list(LlavaReader(lines, on_error="raise"))
    assert [s.messages for s in read] == [first.messages, second.messages]
    assert [s.images for s in read] == [[str(tmp_path / "0.png"), str(tmp_path / "1.png")], [str(tmp_path / "2.png")]]


def test_a_row_with_no_turn_or_a_null_one_is_named_by_row_and_field(tmp_path):
    path = tmp_path / "docmatix.parquet"  # Docmatix's features, with the metadata of the datasets that wrote the hub's
    metadata = {"info": {"features": {"images": {"feature": {"_type": "Image"}, "_type": "Sequence"}, "texts": [
        {name: {"dtype": "string", "_type": "Value"} for name in ("user", "assistant", "source")}]}}}
    image = {"bytes": png(pictures(1)[0]), "path": None}
    texts = [[turn("Title?", "Report.")], [], [turn("Title?", "Report."), turn("Date?", None)], [turn(None, "Report.")]]
    pq.write_table(pa.table({"images": [[image]] * 4, "texts": texts}).replace_schema_metadata(
        {"huggingface": json.dumps(metadata)}), path)
    reader = LlavaReader(path)
    assert [s.messages[-1].content for s in reader] == ["Report."]
    assert [(str(e), e.reason) for e in reader.report.examples] == [
        (f"{path}:row 1: 'texts' is empty: no question and answer", "empty_conversation"),
        (f"{path}:row 2: texts[1].assistant is null (an empty cell in the table this was exported from?): give the "
         "answer, or leave the record out", "empty_answer"),
        (f"{path}:row 3: texts[0].user is null; it must be text", "wrong_type")]
    lines = tmp_path / "turns.jsonl"
    lines.write_text(json.dumps({"images": [], "texts": [{"user": "Hi?"}]}) + "\n")
    with pytest.raises(DataError, match=re.escape(f"{lines}:1: texts[0] has no 'assistant' (its keys: user)")):
        list(LlavaReader(lines, on_error="raise"))



def test_a_texts_column_of_strings_is_no_cauldron_turns(tmp_path):
    """Only a `texts` list of objects is the_cauldron's turns: a labelled image's `texts` list of strings (another
    set's column, its words) leaves the row a plain one, answered with its label, in Parquet and in JSONL."""
    image = pictures(1)[0]
    path = tmp_path / "memes.parquet"
    pq.write_table(pa.table({"image": [{"bytes": png(image), "path": None}], "texts": [["top", "bottom"]],
                             "label": ["funny"]}), path)
    image.save(tmp_path / "0.png")
    lines = tmp_path / "memes.jsonl"
    lines.write_text(json.dumps({"image": "0.png", "texts": ["top", "bottom"], "label": "funny"}) + "\n")
    for data in (path, lines):
        assert detect_format(data) == "qa"
        (sample,) = QAReader(data, on_error="raise")
        assert (sample.messages[1].content, len(sample.images)) == ("funny", 1)
    assert hub_layout(path).label == "label"

def test_init_and_eval_custom_read_cauldron_rows_as_llava_the_last_answer_the_reference(tmp_path, monkeypatch, capsys):
    path = tmp_path / "cauldron.parquet"
    cauldron(path, [pictures(2), pictures(1)], [[turn("Shape?", "A square."), turn("Colour?", "Red.")],
                                                [turn("Colour?", "Blue.")]])
    assert main(["init", "--data", str(path), "--yes", "--device", "cpu", "--output", str(tmp_path / "c.yaml")]) == 0
    out = capsys.readouterr().out
    assert f"{path}: llava format, 2 usable samples, inputs: image" in out
    assert (f"  data: {path}: rows of the_cauldron's layout ('images' and 'texts'), read as LLaVA conversations: each "
            "entry of 'texts' a user turn and its answer, every answer trained, the images before the first user "
            "turn\n") in out
    assert yaml.safe_load((tmp_path / "c.yaml").read_text())["data"]["format"] == "llava"
    model = scripted_model(tmp_path, monkeypatch, reply=lambda messages: "Red.")
    output = tmp_path / "out"
    assert main(["eval", "--task", "custom", "--data", str(path), "--model", str(model), "--output", str(output),
                 "--no-progress"]) == 0
    assert "custom data all: exact-match accuracy (%) 50.00 over 2 samples" in capsys.readouterr().out
    predictions = [json.loads(line) for line in (output / "predictions.jsonl").read_text().splitlines()]
    assert [(p.get("context"), p["prompt"], p["reference"]["answers"]) for p in predictions] == [
        ([{"role": "user", "content": "<image>\n<image>\nShape?"}, {"role": "assistant", "content": "A square."}],
         "Colour?", ["Red."]),
        (None, "<image>\nColour?", ["Blue."])]


# TRL's vision SFT layout (HuggingFaceH4/llava-instruct-mix-vsft): payload-less image parts, the row's images in order
PART = {"type": datasets.Value("string"), "text": datasets.Value("string"), "index": datasets.Value("int64")}
TRL = datasets.Features({"messages": [{"role": datasets.Value("string"), "content": [PART]}],
                         "images": datasets.Sequence(datasets.Image())})


def test_trl_vision_rows_give_each_image_to_its_part_in_order(tmp_path):
    images = pictures(2)

    def text(words: str) -> dict:
        return {"type": "text", "text": words, "index": None}

    messages = [{"role": "user", "content": [{"type": "image", "text": None, "index": 0}, text("What is this?")]},
                {"role": "assistant", "content": [text("A red square.")]},
                {"role": "user", "content": [text("And now?"), {"type": "image", "text": None, "index": 1}]},
                {"role": "assistant", "content": [text("A green one.")]}]
    path = tmp_path / "llava-instruct-mix.parquet"
    datasets.Dataset.from_dict({"messages": [messages], "images": [images]}, features=TRL).to_parquet(str(path))
    assert detect_format(path) == "openai"
    (sample,) = OpenAIChatReader(path, on_error="raise")
    assert sample.messages == [Message("user", "<image>\nWhat is this?"), Message("assistant", "A red square."),
                               Message("user", "And now?\n<image>"), Message("assistant", "A green one.")]
    assert [pixels(item) for item in sample.images] == [image.getpixel((0, 0)) for image in images]
    assert trained_text(sample) == " A red square.\x17 A green one.\x17"
    for k, image in enumerate(images):  # the same row as JSONL, its images as paths
        image.save(tmp_path / f"{k}.png")
    lines = tmp_path / "trl.jsonl"
    lines.write_text(json.dumps({"messages": messages, "images": ["0.png", "1.png"]}) + "\n")
    assert detect_format(lines) == "openai"
    (read,) = OpenAIChatReader(lines, on_error="raise")
    assert read.messages == sample.messages
    assert read.images == [str(tmp_path / "0.png"), str(tmp_path / "1.png")]


def chartqa(path: Path) -> None:
    """A HuggingFaceM4/ChartQA-shaped file as `datasets` writes it: the question `query`, the accepted answers
    `label` (a list), and who wrote the question, a ClassLabel."""
    features = datasets.Features({"image": datasets.Image(), "query": datasets.Value("string"),
                                  "label": datasets.Sequence(datasets.Value("string")),
                                  "human_or_machine": datasets.ClassLabel(names=["human", "machine"])})
    datasets.Dataset.from_dict({"image": pictures(3), "query": ["Which year is highest?", "How many bars?", "Max?"],
                                "label": [["2019"], ["4", "four"], ["12"]], "human_or_machine": [0, 1, 0]},
                               features=features).to_parquet(str(path))


CHARTQA_COLUMNS = {"question": "query", "answers": "label"}


def test_chartqa_rows_are_questions_read_through_the_column_mapping(tmp_path, monkeypatch, capsys):
    path = tmp_path / "chartqa.parquet"
    chartqa(path)
    # without the mapping, a classification by the ClassLabel: init's note names the columns it leaves aside
    assert [r["answer"] for r in records(path)] == ["human", "machine", "human"]
    assert main(["init", "--data", str(path), "--yes", "--device", "cpu", "--output", str(tmp_path / "c.yaml")]) == 0
    assert (f"  data: {path}: the image of 'image' answered with the label 'human_or_machine' (ClassLabel of 2 "
            "classes: human, machine); columns left aside: 'query', 'label' (to read the rows as questions, "
            "data.options.columns (modrwkv init --columns question=COLUMN,answer=COLUMN))\n") in capsys.readouterr().out
    wide = HubLayout("image", "image", "label", None, None, others=tuple(f"c{k}" for k in range(7)))
    assert wide.describe() == ("the image of 'image' answered with the label 'label'; columns left aside: 'c0', 'c1', "
                               "'c2', 'c3', 'c4' and 2 more (to read the rows as questions, data.options.columns "
                               "(modrwkv init --columns question=COLUMN,answer=COLUMN))")  # (a hub file of dozens)
    # with it, the rows are questions answered with the first of their accepted answers
    assert detect_format(path, columns=CHARTQA_COLUMNS) == "qa"
    expected = [("<image>\nWhich year is highest?", "2019"), ("<image>\nHow many bars?", "4"), ("<image>\nMax?", "12")]
    assert [(s.messages[0].content, s.messages[1].content)
            for s in QAReader(path, columns=CHARTQA_COLUMNS, on_error="raise")] == expected
    # init --columns writes the mapping, which training reads its data.train and data.val with
    output = tmp_path / "chartqa.yaml"
    assert main(["init", "--data", str(path), "--yes", "--device", "cpu", "--output", str(output),
                 "--columns", "question=query,answers=label"]) == 0
    out = capsys.readouterr().out
    assert f"{path}: qa format, 3 usable samples, inputs: image" in out and "columns left aside" not in out
    assert "--data YOUR_TEST_FILE.jsonl --columns question=query,answers=label\n" in out
    text = output.read_text()
    assert ("# data.options.columns {question: query, answers: label}: each record's fields read from these columns "
            "of the file (`modrwkv eval --task custom --columns` asks the same)\n") in text
    config = yaml.safe_load(text)
    assert config["data"]["options"] == {"columns": CHARTQA_COLUMNS}
    from modrwkv.training import config_from_dict
    from modrwkv.training.data import build_reader
    from modrwkv.training.validation import answer_scorer, val_data_config

    assert [(s.messages[0].content, s.messages[1].content)
            for s in build_reader(config_from_dict(config).data)] == expected
    config["data"]["val"] = [str(path)]
    config["train"]["val_every"] = 1
    scorer = answer_scorer(val_data_config(config_from_dict(config).data), "accuracy", None)
    assert [s.reference["answers"] for s in scorer.samples] == [["2019"], ["4", "four"], ["12"]]
    # eval --columns scores the label list as the accepted answers
    replies = iter(["2019", "four", "7"])
    model = scripted_model(tmp_path, monkeypatch, reply=lambda messages: next(replies))
    assert main(["eval", "--task", "custom", "--data", str(path), "--model", str(model), "--output",
                 str(tmp_path / "out"), "--no-progress", "--columns", "question=query,answers=label"]) == 0
    assert "exact-match accuracy (%) 66.67 over 3 samples" in capsys.readouterr().out


def test_a_okvqa_rows_answer_with_the_letter_of_the_mapped_index(tmp_path):
    path = tmp_path / "aokvqa.parquet"  # HuggingFaceM4/A-OKVQA: the right option's index, and ten free answers
    features = datasets.Features({"image": datasets.Image(), "question_id": datasets.Value("string"),
                                  "question": datasets.Value("string"),
                                  "choices": datasets.Sequence(datasets.Value("string")),
                                  "correct_choice_idx": datasets.Value("int8"),
                                  "direct_answers": datasets.Sequence(datasets.Value("string"))})
    datasets.Dataset.from_dict({"image": pictures(2), "question_id": ["q1", "q2"],
                                "question": ["What is the man holding?", "Where is this?"],
                                "choices": [["bat", "ball", "kite", "cup"], ["beach", "park", "street", "farm"]],
                                "correct_choice_idx": [2, 0], "direct_answers": [["kite"] * 10, ["beach"] * 10]},
                               features=features).to_parquet(str(path))
    with pytest.raises(DataError, match="give exactly one of 'answer' or 'answers'"):  # (the index is no answer)
        list(QAReader(path, on_error="raise"))
    reader = QAReader(path, columns={"answer": "correct_choice_idx", "id": "question_id"}, on_error="raise")
    assert [(s.messages[0].content, s.messages[1].content, s.meta["id"]) for s in reader] == [
        ("<image>\nWhat is the man holding?\nA. bat\nB. ball\nC. kite\nD. cup", "C", "q1"),
        ("<image>\nWhere is this?\nA. beach\nB. park\nC. street\nD. farm", "A", "q2")]
    task = CustomTask(reader_options={"columns": {"answer": "correct_choice_idx"}})
    assert [s.reference for s in task.load(path, "test")] == [
        {"metric": "choice", "answers": ["C"], "choices": ["bat", "ball", "kite", "cup"]},
        {"metric": "choice", "answers": ["A"], "choices": ["beach", "park", "street", "farm"]}]


def test_jsonl_records_take_the_mapping_and_it_wins_over_a_field_of_the_same_name(tmp_path):
    pictures(1)[0].save(tmp_path / "a.png")
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps({"picture": "a.png", "prompt": "What colour?", "answer": "stale", "gold": "red"})
                    + "\n" + json.dumps({"picture": "a.png", "answer": "blue"}) + "\n")
    columns = {"image": "picture", "question": "prompt", "answer": "gold"}
    assert detect_format(path, columns=columns) == "qa"
    reader = QAReader(path, columns=columns)
    assert [(s.messages[0].content, s.messages[1].content) for s in reader] == [("<image>\nWhat colour?", "red")]
    assert [str(e) for e in reader.report.examples] == [
        f"{path}:2: no 'prompt' field, which data.options.columns maps 'question' to (the record's fields: picture, "
        "answer)"]


def test_a_bad_column_mapping_is_one_line(tmp_path, capsys):
    path = tmp_path / "chartqa.parquet"
    chartqa(path)
    with pytest.raises(ValueError, match=re.escape(
            "data.options.columns: 'querry' is no field of qa records (its fields: question, answer, answers, choices, "
            "id, metric, image, audio, series, video)")):
        QAReader(path, columns={"querry": "query"})
    with pytest.raises(ValueError, match=re.escape(
            "data.options.columns maps both 'question' and 'answer' to the column 'query': a column is read as one "
            "field")):
        QAReader(path, columns={"question": "query", "answer": "query"})
    with pytest.raises(ValueError, match="data.options.label_column chooses the answer of plain rows"):
        QAReader(path, columns=CHARTQA_COLUMNS, label_column="label")
    reader = QAReader(path, columns={"question": "question", "answers": "label"})
    assert list(reader) == [] and str(reader.report.examples[0]) == (
        f"{path}:row 0: no 'question' column, which data.options.columns maps 'question' to (the row's columns: "
        "image, query, label, human_or_machine)")
    # the command line: a malformed flag, a format that takes no mapping, a file that names its own fields
    with pytest.raises(SystemExit):
        main(["init", "--data", str(path), "--columns", "question:query"])
    assert "'question:query': expected FIELD=COLUMN pairs separated by commas" in capsys.readouterr().err
    jsonl = tmp_path / "chartqa.jsonl"  # (detection reads records renamed: the misspelt field is named first)
    jsonl.write_text(json.dumps({"query": "How many?", "label": ["5"]}) + "\n")
    assert main(["init", "--data", str(jsonl), "--yes", "--device", "cpu", "--columns", "questoin=query,answers=label",
                 "--output", str(tmp_path / "q.yaml")]) == 2
    assert "data.options.columns: 'questoin' is no field of qa records (its fields: question," in capsys.readouterr().err
    series = tmp_path / "load.csv"
    series.write_text("load\n" + "".join(f"{k}\n" for k in range(40)))
    assert main(["init", "--data", str(series), "--yes", "--device", "cpu", "--columns", "question=load",
                 "--output", str(tmp_path / "s.yaml")]) == 2
    assert ("--columns maps record fields to the file's columns (data.options.columns of the qa format, or of sharegpt "
            f"with --format sharegpt), but series records (detected in {series}) take no such mapping: leave --columns "
            "out") in capsys.readouterr().err
    tar = tmp_path / "shard.tar"
    tar.write_bytes(b"")
    with pytest.raises(DataError, match=re.escape(
            f"{tar}: data.options.columns renames the columns of JSON, JSONL, Parquet and Arrow records")):
        records(tar, columns=CHARTQA_COLUMNS)
    with pytest.raises(BenchmarkFileError, match=re.escape(f"{path}: data.options.columns: 'querry' is no field")):
        CustomTask(reader_options={"columns": {"querry": "query"}}).load(path, "test")
    llava = tmp_path / "llava.jsonl"
    llava.write_text(json.dumps({"uid": "7", "conversations": [{"from": "human", "value": "Hi?"},
                                                                {"from": "gpt", "value": "Hello"}]}) + "\n")
    with pytest.raises(BenchmarkFileError, match=re.escape(
            f"{llava}: --columns (data.options.columns) maps the fields of question-answer records to the file's "
            "columns, but this file holds llava records, detected from the first record, which take no such mapping")):
        CustomTask(reader_options={"columns": {"id": "uid"}}).load(llava, "test")
    with pytest.raises(ValueError, match="data.options.label_column chooses the answer of plain rows"):
        CustomTask(reader_options={"columns": CHARTQA_COLUMNS, "label_column": "label"})


def test_several_answers_that_are_sentences_are_captions_scored_by_cider(tmp_path, monkeypatch, capsys, caplog):
    coco = tmp_path / "coco_caption.parquet"  # lmms-lab/COCO-Caption2017: five captions as a list 'answer'
    features = datasets.Features({"question_id": datasets.Value("string"), "image": datasets.Image(),
                                  "question": datasets.Value("string"),
                                  "answer": datasets.Sequence(datasets.Value("string"))})
    captions = [["a red square on a white table", "a small red square lying flat", "red square in the middle"],
                ["a green square seen from above", "one green square on the floor", "the green square is small"]]
    datasets.Dataset.from_dict({"question_id": ["1", "2"], "image": pictures(2), "question": ["Caption it."] * 2,
                                "answer": captions}, features=features).to_parquet(str(coco))
    with pytest.raises(BenchmarkFileError, match=re.escape(
            "a list 'answer' must be numbers (a forecast); for several accepted answers use 'answers' (a file that "
            "names them 'answer', as lmms-lab's COCO-Caption2017: data.options.columns {answers: answer}, modrwkv "
            "init / eval --columns answers=answer)")):
        CustomTask().load(coco, "test")
    with caplog.at_level(logging.INFO, logger="modrwkv.evaluation"):
        evaluated = CustomTask(reader_options={"columns": {"answers": "answer"}}).load(coco, "test")
    assert [s.reference for s in evaluated] == [{"metric": "cider", "answers": answers} for answers in captions]
    assert "the answers are sentences (a median of 6 words), several per record: captions, scored by CIDEr-D" \
        in caplog.text
    vqa = tmp_path / "vqa.jsonl"  # short human answers stay VQA's
    vqa.write_text(json.dumps({"question": "Which colour?", "answers": ["red", "dark red", "red"]}) + "\n")
    assert [s.reference["metric"] for s in CustomTask().load(vqa, "test")] == ["vqa"]


def test_a_sounds_caption_is_a_caption_not_a_transcript(tmp_path, capsys):
    audiocaps = tmp_path / "audiocaps.parquet"  # AudioCaps on the hub: a clip of a sound and what is heard
    features = datasets.Features({"audiocap_id": datasets.Value("int64"), "youtube_id": datasets.Value("string"),
                                  "start_time": datasets.Value("int64"), "caption": datasets.Value("string"),
                                  "audio": datasets.Audio()})
    metadata = {b"huggingface": json.dumps({"info": {"features": features.to_dict()}}).encode()}
    pq.write_table(pa.table({"audiocap_id": [91139], "youtube_id": ["r1nicOVtvkQ"], "start_time": [130],
                             "caption": ["a man speaks as birds chirp"], "audio": [{"bytes": wav(440), "path": None}]}
                            ).replace_schema_metadata(metadata), audiocaps)
    assert detect_format(audiocaps) == "qa"
    (sample,) = QAReader(audiocaps, on_error="raise")
    assert (sample.messages[0].content, sample.messages[1].content) == (
        "<audio>\nWrite a short caption for the audio.", "a man speaks as birds chirp")
    (evaluated,) = CustomTask().load(audiocaps, "test")
    assert evaluated.reference == {"metric": "cider", "answers": ["a man speaks as birds chirp"]}
    assert main(["init", "--data", str(audiocaps), "--yes", "--device", "cpu", "--output",
                 str(tmp_path / "a.yaml")]) == 0
    assert f"  data: {audiocaps}: the audio of 'audio' answered with the caption 'caption'" in capsys.readouterr().out
    # a metadata folder's audio with a caption, and a JSONL record of one, take the same mapping; a transcript
    # column beside it answers first (an ASR record), as a .txt beside audio alone is its transcript
    (tmp_path / "clip.wav").write_bytes(wav(440))
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file_name": "clip.wav", "caption": "rain falls"}) + "\n")
    plain, transcribed = tmp_path / "plain.jsonl", tmp_path / "transcribed.jsonl"
    plain.write_text(json.dumps({"audio": "clip.wav", "caption": "rain falls"}) + "\n")
    transcribed.write_text(json.dumps({"audio": "clip.wav", "caption": "rain falls", "text": "it rains"}) + "\n")
    for path in (tmp_path / "metadata.jsonl", plain):
        assert [(s.messages[0].content, s.messages[1].content) for s in QAReader(path, on_error="raise")] == [
            ("<audio>\nWrite a short caption for the audio.", "rain falls")]
    assert detect_format(transcribed) == "asr"
    assert [s.messages[1].content for s in AsrManifestReader(transcribed, on_error="raise")] == ["it rains"]


def _pixels(sample) -> list[list]:
    return [np.asarray(load_image(item).convert("RGB")).tolist() for item in sample.images]


def test_a_list_of_images_per_row_is_the_rows_images_in_order(tmp_path):
    """Rows holding several images in a `Sequence(Image())` column (`images`, as LLaVA-style and multi-image hub
    sets store them): a question's record and a caption's carry each of the row's images, in order, as markers of
    the user turn; a file without `datasets` metadata (pandas') is told by the column's name and list of structs."""
    images = pictures(5)
    questions = tmp_path / "multi.parquet"
    features = datasets.Features({"images": datasets.Sequence(datasets.Image()), "question": datasets.Value("string"),
                                  "answer": datasets.Value("string")})
    datasets.Dataset.from_dict({"images": [images[:2], images[2:3]], "question": ["Which is redder?", "Its colour?"],
                                "answer": ["the first", "blue"]}, features=features).to_parquet(str(questions))
    samples = list(QAReader(questions, on_error="raise"))
    assert [s.messages[0].content for s in samples] == ["<image>\n<image>\nWhich is redder?", "<image>\nIts colour?"]
    assert [_pixels(s) for s in samples] == [[np.asarray(i).tolist() for i in images[:2]],
                                             [np.asarray(images[2]).tolist()]]
    captions = tmp_path / "captions.parquet"
    features = datasets.Features({"images": datasets.Sequence(datasets.Image()), "caption": datasets.Value("string")})
    datasets.Dataset.from_dict({"images": [images[3:5], []], "caption": ["two squares side by side", "none"]},
                               features=features).to_parquet(str(captions))
    assert detect_format(captions) == "qa"
    first, empty = file_records(captions)
    assert first[1]()["question"] == "Write a short caption for the image." and first[1]()["answer"] == "two squares side by side"
    assert [_pixels(s) for s in QAReader(captions)] == [[np.asarray(i).tolist() for i in images[3:5]]]
    with pytest.raises(DataError, match=re.escape(f"{captions}:row 1: 'images' is an empty list: no image")):
        empty[1]()
    plain = tmp_path / "pandas.parquet"  # no `huggingface` metadata: `images` by its name and type
    pq.write_table(pa.table({"images": [[{"bytes": png(images[0]), "path": None}, {"bytes": png(images[1]),
                                                                                    "path": None}]],
                             "caption": ["a pair of squares"]}), plain)
    assert [_pixels(s) for s in QAReader(plain)] == [[np.asarray(i).tolist() for i in images[:2]]]


def test_json_records_name_a_list_of_media_images(tmp_path):
    """A question-answer record's `images` (`audios`, `videos`) is its `image` list, as LLaVA's records name it; both
    at once is the record's error; a plain record's `images` of paths with a caption is a caption of all of them."""
    for index, image in enumerate(pictures(2)):
        image.save(tmp_path / f"{index}.png")
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps(record) for record in [
        {"images": ["0.png", "1.png"], "question": "Which is darker?", "answer": "the first"},
        {"image": "0.png", "images": ["1.png"], "question": "Which?", "answer": "one"}]) + "\n")
    reader = QAReader(data, on_error="skip")
    samples = list(reader)
    assert [(s.messages[0].content, len(s.images)) for s in samples] == [("<image>\n<image>\nWhich is darker?", 2)]
    assert [str(e) for e in reader.report.examples] == [f"{data}:2: both 'image' and 'images': give the record's "
                                                        "image items in one of them (one item or a list)"]
    captions = tmp_path / "captions.jsonl"
    captions.write_text(json.dumps({"images": ["0.png", "1.png"], "caption": "two squares"}) + "\n")
    (sample,) = QAReader(captions, on_error="raise")
    assert (sample.messages[0].content, sample.messages[1].content, len(sample.images)) == (
        "<image>\n<image>\nWrite a short caption for the image.", "two squares", 2)
