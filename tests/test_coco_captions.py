"""COCO's caption annotation files (annotations/captions_val2017.json beside val2017/) as captioned samples, and
rows of one caption each grouped per image in eval, as the COCO caption evaluation scores each image once."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modrwkv.data.readers import DataError, QAReader
from modrwkv.evaluation.metrics import caption_scores
from modrwkv.evaluation.tasks import BenchmarkFileError, CustomTask

PROMPT = "<image>\nWrite a short caption for the image."


def coco_tree(root: Path) -> Path:
    """The official layout: annotations/captions_val2017.json (ids out of order, an image with 5 captions and one
    with 1, trailing white space as COCO's captions have) and the images in val2017/ beside annotations/."""
    (root / "val2017").mkdir(parents=True)
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(root / "val2017" / "000000000285.jpg")
    Image.fromarray(np.full((8, 8, 3), 40, np.uint8)).save(root / "val2017" / "000000000139.png")
    document = {
        "info": {"description": "COCO 2017 Dataset", "version": "1.0", "year": 2017},
        "licenses": [{"url": "http://creativecommons.org/licenses/by-nc-sa/2.0/", "id": 1, "name": "by-nc-sa"}],
        "images": [{"license": 1, "file_name": "000000000285.jpg", "coco_url": "", "height": 8, "width": 8,
                    "date_captured": "2013-11-18 22:26:58", "flickr_url": "", "id": 285},
                   {"license": 1, "file_name": "000000000139.png", "coco_url": "", "height": 8, "width": 8,
                    "date_captured": "2013-11-21 01:34:01", "flickr_url": "", "id": 139}],
        "annotations": [
            {"image_id": 139, "id": 667626, "caption": "A woman stands in the dining area at the table.\n"},
            {"image_id": 285, "id": 3, "caption": "A big burly grizzly bear is show with grass in the background. "},
            {"image_id": 139, "id": 8, "caption": "A room with chairs, a table, and a woman in it."},
            {"image_id": 139, "id": 700, "caption": " A woman standing in a kitchen by a window"},
            {"image_id": 139, "id": 5, "caption": "A person standing at a table in a room.\n"},
            {"image_id": 139, "id": 1, "caption": "A living area with a television and a table"}]}
    path = root / "annotations" / "captions_val2017.json"
    path.parent.mkdir()
    path.write_text(json.dumps(document))
    return path


WOMAN = ["A woman stands in the dining area at the table.", "A room with chairs, a table, and a woman in it.",
         "A woman standing in a kitchen by a window", "A person standing at a table in a room.",
         "A living area with a television and a table"]
BEAR = ["A big burly grizzly bear is show with grass in the background."]


def test_a_coco_captions_file_is_one_sample_per_image_with_all_its_captions(tmp_path):
    path = coco_tree(tmp_path)
    samples = list(QAReader(path, on_error="raise"))
    assert [(s.images, [(m.role, m.content) for m in s.messages], s.meta["id"]) for s in samples] == [
        ([str(tmp_path / "val2017" / "000000000285.jpg")], [("user", PROMPT), ("assistant", BEAR[0])], "285"),
        ([str(tmp_path / "val2017" / "000000000139.png")], [("user", PROMPT), ("assistant", WOMAN[0])], "139")]
    evaluated = CustomTask().load(path, "all")
    assert [(s.id, s.prompt, s.reference, s.images) for s in evaluated] == [
        ("285", PROMPT, {"metric": "cider", "answers": BEAR}, [tmp_path / "val2017" / "000000000285.jpg"]),
        ("139", PROMPT, {"metric": "cider", "answers": WOMAN}, [tmp_path / "val2017" / "000000000139.png"])]
    # a media folder given is where the file names are, and the only place looked
    moved = tmp_path / "elsewhere"
    (tmp_path / "val2017").rename(moved)
    assert [s.images for s in QAReader(path, media_folder=moved)] == [[str(moved / "000000000285.jpg")],
                                                                      [str(moved / "000000000139.png")]]


def test_coco_errors_name_the_file_the_ids_and_the_paths_tried(tmp_path):
    path = coco_tree(tmp_path)
    (tmp_path / "val2017" / "000000000139.png").unlink()
    document = json.loads(path.read_text())
    document["annotations"].append({"image_id": 999, "id": 42, "caption": "a cat"})
    path.write_text(json.dumps(document))
    reader = QAReader(path)
    assert [s.meta["id"] for s in reader] == ["285"]
    tried = ", ".join(str(folder / "000000000139.png") for folder in (
        tmp_path / "annotations", tmp_path / "annotations" / "val2017", tmp_path / "val2017", tmp_path))
    missing = (f"image 139's file 000000000139.png (the image of annotations 667626, 8, 700, 5, 1) is not found: "
               f"tried {tried}; give the folder of the images as the media folder (data.media_folder, --media-folder)")
    unknown = "annotation 42's image_id 999 is no image's id in 'images' (its caption: 'a cat')"
    assert [(e.source, e.detail) for e in reader.report.examples] == [
        (f"{path}:image 139", missing), (f"{path}:annotation 42", unknown)]
    with pytest.raises(BenchmarkFileError, match=re.escape(f"{path}:image 139: {missing}")):
        CustomTask().load(path, "all")
    Image.new("RGB", (8, 8)).save(tmp_path / "val2017" / "000000000139.png")
    with pytest.raises(DataError, match=re.escape(f"{path}:annotation 42: {unknown}")):
        list(QAReader(path, on_error="raise"))


def test_rows_of_one_caption_each_are_one_sample_per_image_in_eval_and_a_sample_each_in_training(tmp_path):
    path = coco_tree(tmp_path)
    rows = [{"image": f"val2017/{name}", "caption": caption} for name, caption in
            [("000000000139.png", WOMAN[0]), ("000000000285.jpg", BEAR[0]), ("000000000139.png", WOMAN[1]),
             ("./val2017/000000000139.png", WOMAN[2])]]
    rows[3]["image"] = "./val2017/000000000139.png"  # the same file, written otherwise
    data = tmp_path / "karpathy_test.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert [s.messages[1].content for s in QAReader(data)] == [WOMAN[0], BEAR[0], WOMAN[1], WOMAN[2]]
    task = CustomTask()
    samples = task.load(data, "all")
    assert [(s.id, s.reference["answers"]) for s in samples] == [("1", WOMAN[:3]), ("2", BEAR)]
    predictions = {"1": "a woman standing at a table in a room", "2": "a bear in the grass"}
    summary = task.summarize([{"reference": s.reference, "prediction": predictions[s.id]} for s in samples])
    by_hand = caption_scores([predictions["1"], predictions["2"]], [WOMAN[:3], BEAR])
    assert summary["cider"] == pytest.approx(by_hand["cider"]) and summary["bleu_4"] == pytest.approx(by_hand["bleu_4"])
    # one reference per row, each image scored once per caption, is another number
    per_row = caption_scores([predictions["1"], predictions["2"], predictions["1"]], [[WOMAN[0]], BEAR, [WOMAN[1]]])
    assert per_row["cider"] != pytest.approx(by_hand["cider"])
