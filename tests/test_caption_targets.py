"""Every caption of an image is taught: a record of several captions (COCO's five per image, a list of captions,
sentences in `answers`) is a training sample per caption (`qa.each_caption`, applied by training's read), while
VQA's human answers teach their consensus and eval keeps each image one sample scored against all its captions."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from PIL import Image

from modrwkv.data.readers.qa import CAPTIONS, QAReader, each_caption, parse_qa_record
from modrwkv.training.config import DataConfig
from modrwkv.training.data import read_sources

COCO_CAPTIONS = {  # image id -> its captions, as captions_val2017.json lists them (trailing spaces and all)
    139: ["A woman stands in the dining area at the table.\n", "A room with chairs, a table, and a woman in it.",
          "A woman standing in a kitchen by a window ", "A person standing at a table in a room.",
          "A living room with hard wood floors filled with furniture"],
    285: ["A big burly grizzly bear is show with grass in the background.", "The large brown bear has a black nose.",
          "Closeup of a brown bear sitting in a grassy area.", "A large bear that is sitting on grass. ",
          "A close up picture of a brown bear's face."],
}


def write_coco(folder: Path) -> Path:
    (folder / "annotations").mkdir(parents=True)
    (folder / "val2017").mkdir()
    images, annotations = [], []
    for image_id, captions in COCO_CAPTIONS.items():
        name = f"{image_id:012d}.jpg"
        Image.new("RGB", (8, 8), (image_id % 256, 0, 0)).save(folder / "val2017" / name)
        images.append({"id": image_id, "file_name": name, "height": 8, "width": 8})
        annotations += [{"image_id": image_id, "id": image_id * 10 + n, "caption": c} for n, c in enumerate(captions)]
    path = folder / "annotations" / "captions_val2017.json"
    path.write_text(json.dumps({"info": {}, "licenses": [], "images": images, "annotations": annotations}))
    return path


def replies(samples):
    return [(s.images[0].rsplit("/", 1)[-1], s.messages[-1].content) for s in samples]


def test_training_reads_a_sample_per_coco_caption(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_coco(tmp_path)
    with caplog.at_level(logging.INFO, logger="modrwkv.training.data"):
        samples, spans = read_sources(DataConfig(train=[str(path)], format="qa"))
    expected = [(f"{image_id:012d}.jpg", caption.strip()) for image_id, captions in COCO_CAPTIONS.items()
                for caption in captions]
    assert replies(samples) == expected
    assert [(span.start, span.stop) for span in spans] == [(0, 10)]
    for sample in samples:  # the same question, image and id for each of an image's captions; no captions left over
        assert sample.messages[0].content == "<image>\nWrite a short caption for the image."
        assert CAPTIONS not in sample.meta
    assert [s.meta["id"] for s in samples] == ["139"] * 5 + ["285"] * 5
    assert samples[0].images is samples[4].images  # media shared between an image's samples, not copied
    assert "2 records hold several captions each, each caption a sample of its own: 10 samples" in caplog.text


def test_eval_reads_one_sample_per_image_with_every_caption(tmp_path: Path) -> None:
    """The reader itself (eval's and validation scoring's) keeps an image one sample: its five captions are the
    references of one CIDEr-D score."""
    samples = list(QAReader(write_coco(tmp_path)))
    assert len(samples) == 2
    assert samples[0].meta[CAPTIONS] == [c.strip() for c in COCO_CAPTIONS[139]]
    assert [s.messages[-1].content for s in each_caption(samples[1])] == [c.strip() for c in COCO_CAPTIONS[285]]


@pytest.mark.parametrize(("record", "taught"), [
    # VQA's ten human answers: the consensus, once
    ({"question": "What colour?", "answers": ["red"] * 6 + ["dark red"] * 3 + ["maroon"]}, ["red"]),
    # several sentences without a metric: captions (eval scores such a file by CIDEr-D)
    ({"question": "Describe it.", "answers": ["a red car parked by the road", "a small car on a street",
                                                "the red car is parked outside"]},
     ["a red car parked by the road", "a small car on a street", "the red car is parked outside"]),
    # two sentences are accepted answers, not yet a caption set; a record saying cider is one
    ({"question": "Describe it.", "answers": ["a red car parked by the road", "a small car on a street"]},
     ["a red car parked by the road"]),
    ({"question": "Describe it.", "metric": "cider", "answers": ["a car", "a red car", "a car"]},
     ["a car", "a red car"]),
    # a metric that is not cider keeps the answers accepted ones
    ({"question": "Describe it.", "metric": "exact", "answers": ["a red car parked by the road",
                                                                 "a small car on a street", "a car on a street"]},
     ["a red car parked by the road"]),
    # choices: the letter
    ({"question": "Which?", "choices": ["a red car parked by the road", "a small car on a street"],
      "answers": ["a small car on a street"] * 3}, ["B"]),
])
def test_which_answers_are_taught(tmp_path: Path, record: dict, taught: list[str]) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "car.png")
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps({"image": "car.png", **record}) + "\n")
    samples, _ = read_sources(DataConfig(train=[str(path)], format="qa"))
    assert [s.messages[-1].content for s in samples] == taught
    accepted = ["B"] * 3 if "choices" in record else record["answers"]  # what eval scores against: all of them
    assert parse_qa_record({"image": "car.png", **record}, media_folder=tmp_path).answers == accepted


def test_a_list_of_captions_per_row_is_a_sample_per_caption(tmp_path: Path) -> None:
    """A metadata folder's row with a list of captions (nlphuji/flickr30k's layout) trains each, as the same
    captions one per row (Kaggle's Flickr8k captions.txt) do: the two layouts of one data set train alike."""
    captions = ["Two young guys with shaggy hair look at their hands while hanging out in the yard.",
                "Two young, White males are outside near many bushes.",
                "Two men in green shirts are standing in a yard."]
    listed, rows = tmp_path / "listed", tmp_path / "rows"
    for folder in (listed, rows):
        folder.mkdir()
        Image.new("RGB", (8, 8)).save(folder / "1000092795.jpg")
    (listed / "metadata.jsonl").write_text(json.dumps({"file_name": "1000092795.jpg", "caption": captions}) + "\n")
    (rows / "captions.txt").write_text("image,caption\n" + "".join(f'1000092795.jpg,"{c}"\n' for c in captions))
    from_list, _ = read_sources(DataConfig(train=[str(listed / "metadata.jsonl")], format="qa"))
    from_rows, _ = read_sources(DataConfig(train=[str(rows / "captions.txt")], format="qa"))
    assert [s.messages for s in from_list] == [s.messages for s in from_rows]
    assert [s.messages[-1].content for s in from_list] == captions


def test_init_sizes_training_by_the_samples_of_each_caption(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """init sizes epochs, batch and checkpoints from training's samples: 10 for two images of five captions."""
    from modrwkv.cli import main

    path = write_coco(tmp_path)
    assert main(["init", "--data", str(path), "--yes", "--device", "cpu", "--output", str(tmp_path / "c.yaml")]) == 0
    assert f"{path}: qa format, 10 usable samples, inputs: image ({path}: kept 2 of 2 records)" in capsys.readouterr().out
