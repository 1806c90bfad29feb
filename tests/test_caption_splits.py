"""The caption files captioning research uses most, in their published layouts: Karpathy's split files
(dataset_coco.json beside val2014/ and train2014/, dataset_flickr30k.json beside flickr30k-images/) and Flickr's token
files (Flickr8k.token.txt beside Flicker8k_Dataset/ and the Flickr_8k.*Images.txt split lists, Flickr30k's
results_20130124.token): a sample per image with all its captions, the splits selected by the reader's `split` (and
refused without it), training's reader and eval's grouping of an image's five captions as its references
(docs/custom-data.md, "Karpathy's splits and Flickr's token files")."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from eval_fixtures import scripted_model
from modrwkv.cli import main
from modrwkv.data.readers import DataError, QAReader
from modrwkv.data.readers.captionsplits import is_caption_tokens
from modrwkv.data.readers.detect import detect_format
from modrwkv.evaluation.metrics import caption_scores
from modrwkv.evaluation.tasks import BenchmarkFileError, CustomTask, custom_task
from modrwkv.training.config import ConfigError, DataConfig, config_from_dict
from modrwkv.training.data import build_reader, read_sources
from modrwkv.training.validation import val_data_config
from test_class_folders import png
from test_coco_captions import coco_tree
from test_media_tables import DOGS, DOGS_JPG, GIRL, GIRL_JPG

CAPTION = "<image>\nWrite a short caption for the image."
SPLIT = "split (data.options.split; modrwkv eval --task custom --split)"

# dataset_coco.json's entries as published (its first image's sentences with their trailing spaces), one per split
MOPED = ["A man with a red helmet on a small moped on a dirt road. ",
         "Man riding a motor bike on a dirt road on the countryside.", "A man riding on the back of a motorcycle.",
         "A dirt path with a young person on a motor bike rests to the foreground of a verdant area with a bridge and "
         "a background of cloud-wreathed mountains. ",
         "A man in a red shirt and a red hat is on a motorcycle on a hill side."]
CAKE = ["A woman wearing a net on her head cutting a cake. ", "A woman cutting a large white sheet cake.",
        "A woman wearing a hair net cutting a large sheet cake.", "there is a woman that is cutting a white cake",
        "A woman marking a cake with the back of a chef's knife. "]
TABLE = ["A restaurant has modern wooden tables and chairs.",
         "A long restaurant table with rattan rounded back chairs.",
         "a long table with a plant on top of it surrounded with wooden chairs ",
         "A long table with a flower arrangement in the middle for meetings",
         "A table is adorned with wooden chairs with blue accents."]
CANDLE = ["A young girl inhales with the intent of blowing out a candle. ",
          "A young girl is preparing to blow out her candle.",
          "A kid is to blow out the single candle in a bowl of birthday goodness. ",
          "Girl blowing out the candle on an ice-cream ",
          "A little girl is getting ready to blow out a candle on a small dessert."]
COCO = [  # (filepath, cocoid, split, sentences), in the file's order
    ("val2014", 391895, "test", MOPED), ("val2014", 522418, "restval", CAKE), ("train2014", 57870, "train", TABLE),
    ("val2014", 60623, "val", CANDLE)]


def stripped(captions: list[str]) -> list[str]:
    return [caption.strip() for caption in captions]


def karpathy_entry(imgid: int, filename: str, split: str, sentences: list[str], **coco: object) -> dict:
    sentids = [1000 * imgid + index for index in range(len(sentences))]
    return {**({"filepath": coco["filepath"]} if "filepath" in coco else {}), "sentids": sentids,
            "filename": filename, "imgid": imgid, "split": split,
            "sentences": [{"tokens": re.findall(r"[a-z0-9'-]+", raw.lower()), "raw": raw, "imgid": imgid,
                           "sentid": sentid} for raw, sentid in zip(sentences, sentids, strict=True)],
            **({"cocoid": coco["cocoid"]} if "cocoid" in coco else {})}


def coco_karpathy(root: Path) -> Path:
    """coco/dataset_coco.json (caption_datasets.zip's) beside coco/val2014/ and coco/train2014/."""
    images = []
    for imgid, (folder, cocoid, split, sentences) in enumerate(COCO):
        name = f"COCO_{folder}_{cocoid:012d}.jpg"
        png(root / folder / name, 20 * imgid)  # (a PNG under a .jpg name decodes as what it is)
        images.append(karpathy_entry(imgid, name, split, sentences, filepath=folder, cocoid=cocoid))
    path = root / "dataset_coco.json"
    path.write_text(json.dumps({"images": images, "dataset": "coco"}))
    return path


def coco_image(root: Path, index: int) -> str:
    folder, cocoid, _, _ = COCO[index]
    return str(root / folder / f"COCO_{folder}_{cocoid:012d}.jpg")


def test_karpathy_coco_is_refused_whole_and_read_by_split_in_training_and_eval(tmp_path):
    path = coco_karpathy(tmp_path / "coco")
    refusal = (f"{path}: holds 4 splits (train: 1 image, restval: 1 image, val: 1 image, test: 1 image): give the "
               f"split to read as {SPLIT}: [train, restval] to train on (modrwkv init --split train,restval); test "
               "to evaluate on (modrwkv eval --task custom --split test); read whole, its evaluation images would be "
               "trained on")
    with pytest.raises(DataError, match=f"^{re.escape(refusal)}$"):
        list(QAReader(path))  # (skipping bad records does not skip a whole file)
    with pytest.raises(BenchmarkFileError, match=re.escape(refusal)):
        CustomTask().load(path, "all")
    # training: data.options.split, read by the reader training builds; each image one sample, id its cocoid
    reader = build_reader(DataConfig(format="qa", train=[str(path)], options={"split": ["train", "restval"]}))
    samples = list(reader)
    root = tmp_path / "coco"
    assert [(s.source, s.images, [(m.role, m.content) for m in s.messages], s.meta["id"]) for s in samples] == [
        (f"{path}:image 522418", [coco_image(root, 1)], [("user", CAPTION), ("assistant", CAKE[0].strip())], "522418"),
        (f"{path}:image 57870", [coco_image(root, 2)], [("user", CAPTION), ("assistant", TABLE[0])], "57870")]
    assert reader.count_records() == 2
    # training teaches each of an image's captions as a sample of its own
    taught, _ = read_sources(DataConfig(format="qa", train=[str(path)], options={"split": ["train", "restval"]}))
    assert [(s.images, s.messages[1].content) for s in taught] == [
        ([coco_image(root, 1)], caption) for caption in stripped(CAKE)] + [
        ([coco_image(root, 2)], caption) for caption in stripped(TABLE)]
    # validation: data.val_options.split over data.options', for the val loss and the val CIDEr-D alike
    val = val_data_config(DataConfig(format="qa", train=[str(path)], val=[str(path)],
                                     options={"split": ["train", "restval"]}, val_options={"split": "val"}))
    assert [s.meta["id"] for s in build_reader(val)] == ["60623"]
    assert [(s.id, s.reference["answers"]) for s in CustomTask(data_format="qa", reader_options=val.options).load(
        path, "all")] == [("60623", stripped(CANDLE))]
    with pytest.raises(ConfigError, match=r"unknown option 'splits' \(did you mean 'split'\?\)"):
        build_reader(DataConfig(format="qa", train=[str(path)], options={"splits": "train"}))
    with pytest.raises(DataError, match=re.escape(f"{path}: has no split 'tset' (its splits: train: 1 image, restval: "
                                                  "1 image, val: 1 image, test: 1 image)")):
        list(QAReader(path, split="tset"))
    # eval: the reader option (--split, data.val_options.split); an image's five captions are its references
    task = custom_task(path, split="test")
    assert task.check_split(None) == "test"
    assert [(s.id, s.prompt, s.reference, s.images) for s in task.load(path, "test")] == [
        ("391895", CAPTION, {"metric": "cider", "answers": stripped(MOPED)}, [Path(coco_image(root, 0))])]
    with pytest.raises(ValueError, match=re.escape("custom: split 'val' is read as the reader option split (--split, "
                                                   "data.options.split), which is test")):
        task.check_split("val")
    # the images under a media folder given: its filepath/filename
    moved = tmp_path / "images"
    root.rename(moved)
    (tmp_path / "annotations").mkdir()
    path = (moved / "dataset_coco.json").rename(tmp_path / "annotations" / "dataset_coco.json")
    assert [s.images for s in QAReader(path, split="val", media_folder=moved)] == [[coco_image(moved, 3)]]


def test_init_writes_the_splits_to_train_on_and_names_the_test_split_to_evaluate(tmp_path, monkeypatch, capsys):
    path = coco_karpathy(tmp_path / "coco")
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--data", str(path), "--split", "train,restval", "--yes", "--device", "cpu",
                 "--output", "coco.yaml"]) == 0
    out = capsys.readouterr().out
    assert f"{path}: qa format, 10 usable samples, inputs: image" in out  # 2 images of 5 captions, each a sample
    assert f"--data {path} --split test\n" in out
    config = yaml.safe_load(Path("coco.yaml").read_text())
    assert config["data"]["options"] == {"split": ["train", "restval"]}
    assert [s.meta["id"] for s in build_reader(config_from_dict(config).data)] == ["522418", "57870"]


def test_eval_scores_each_image_once_against_its_five_captions(tmp_path, monkeypatch, capsys):
    path = coco_karpathy(tmp_path / "coco")
    task = CustomTask(reader_options={"split": ["val", "test"]})
    samples = task.load(path, "val,test")
    assert [(s.id, len(s.reference["answers"])) for s in samples] == [("391895", 5), ("60623", 5)]
    reply = "a man riding a motorcycle on a dirt road"
    summary = task.summarize([{"reference": s.reference, "prediction": reply} for s in samples])
    by_hand = caption_scores([reply, reply], [stripped(MOPED), stripped(CANDLE)])
    assert summary["cider"] == pytest.approx(by_hand["cider"]) and summary["cider"] > 0
    # the command: --split reaches the reader, and names the default output folder
    model = scripted_model(tmp_path, monkeypatch, reply=lambda messages: reply)
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "--task", "custom", "--data", str(path), "--split", "val,test", "--model", str(model),
                 "--no-progress"]) == 0
    assert capsys.readouterr().out.startswith(f"custom data val,test: CIDEr-D (x100) {by_hand['cider']:.2f} "
                                              "over 2 samples")
    written = json.loads(Path("runs/eval/custom-dataset_coco-val+test/summary.json").read_text())
    assert written["metrics"]["cider"] == pytest.approx(by_hand["cider"])


# Flickr8k.token.txt's first three images as published (the third listed in Flickr_8k.testImages.txt here)
PAINT_JPG = "1002674143_1b742ab4b8.jpg"
PAINT = ["A little girl covered in paint sits in front of a painted rainbow with her hands in a bowl .",
         "A little girl is sitting in front of a large painted rainbow .",
         "A small girl in the grass plays with fingerpaints in front of a white canvas with a rainbow on it .",
         "There is a girl with pigtails sitting in front of a rainbow painting .",
         "Young girl with pigtails painting outside in the grass ."]
FLICKR8K = ((GIRL_JPG, GIRL), (DOGS_JPG, DOGS), (PAINT_JPG, PAINT))


def flickr8k(root: Path, lists: bool = True) -> Path:
    """Flickr8k_Dataset.zip's Flicker8k_Dataset/ beside Flickr8k_text.zip's files: Flickr8k.token.txt, the lemma
    file, the split lists (with `lists`) and ExpertAnnotations.txt (image pairs, not captions)."""
    for shade, (name, _) in enumerate(FLICKR8K):
        png(root / "Flicker8k_Dataset" / name, 60 * shade)
    token = root / "Flickr8k.token.txt"
    token.write_text("".join(f"{name}#{index}\t{caption}\n" for name, captions in FLICKR8K
                             for index, caption in enumerate(captions)))
    (root / "Flickr8k.lemma.token.txt").write_text(f"{GIRL_JPG}#0\tA child in a pink dress be climb up a set of stair "
                                                  "in an entry way .\n")
    (root / "ExpertAnnotations.txt").write_text(f"1056338697_4f7d7ce270.jpg\t{GIRL_JPG}#2\t1\t1\t1\n")
    if lists:
        for split, name in (("train", GIRL_JPG), ("dev", DOGS_JPG), ("test", PAINT_JPG)):
            (root / f"Flickr_8k.{split}Images.txt").write_text(f"{name}\n")
    return token


def test_flickr8k_token_file_reads_an_image_per_sample_and_its_official_splits(tmp_path):
    token = flickr8k(tmp_path / "flickr8k", lists=False)
    images = {name: str(tmp_path / "flickr8k" / "Flicker8k_Dataset" / name) for name, _ in FLICKR8K}
    assert is_caption_tokens(token) and is_caption_tokens(tmp_path / "flickr8k" / "Flickr8k.lemma.token.txt")
    assert not is_caption_tokens(tmp_path / "flickr8k" / "ExpertAnnotations.txt")
    assert detect_format(token) == "qa"
    reader = QAReader(token, on_error="raise")
    assert [(s.source, s.images, s.messages[1].content, s.meta["id"]) for s in reader] == [
        (f"{token}:image {name}", [images[name]], captions[0], name) for name, captions in FLICKR8K]
    assert reader.count_records() == 3
    with pytest.raises(DataError, match=re.escape(f"{token}: {SPLIT} selects the images listed in "
                                                  "Flickr_8k.<split>Images.txt beside the token file")):
        list(QAReader(token, split="test"))
    # the official split lists beside it: a split is chosen, never the whole file
    token = flickr8k(tmp_path / "flickr8k")
    lists = "Flickr_8k.trainImages.txt, Flickr_8k.devImages.txt, Flickr_8k.testImages.txt"
    with pytest.raises(DataError, match=re.escape(
            f"{token}: holds 3 splits, listed beside it in {lists} (train: 1 image, dev: 1 image, test: 1 image): give "
            f"the split to read as {SPLIT}: [train] to train on (modrwkv init --split train); test to evaluate on "
            "(modrwkv eval --task custom "
            "--split test); read whole, its evaluation images would be trained on")):
        list(QAReader(token))
    reader = build_reader(DataConfig(format="qa", train=[str(token)], options={"split": ["train", "dev"]}))
    assert [(s.images, s.messages[1].content) for s in reader] == [([images[GIRL_JPG]], GIRL[0]),
                                                                   ([images[DOGS_JPG]], DOGS[0])]
    with pytest.raises(DataError, match=re.escape(f"{token}: has no split 'val', listed beside it in {lists} (its "
                                                  "splits: train: 1 image, dev: 1 image, test: 1 image)")):
        list(QAReader(token, split="val"))
    task = CustomTask(reader_options={"split": ["dev", "test"]})
    samples = task.load(token, "dev,test")
    assert [(s.id, s.prompt, s.reference, s.images) for s in samples] == [
        (DOGS_JPG, CAPTION, {"metric": "cider", "answers": DOGS}, [Path(images[DOGS_JPG])]),
        (PAINT_JPG, CAPTION, {"metric": "cider", "answers": PAINT}, [Path(images[PAINT_JPG])])]
    replies = ["two dogs on the road", "a girl painting a rainbow"]
    summary = task.summarize([{"reference": s.reference, "prediction": reply} for s, reply in zip(samples, replies)])
    assert summary["cider"] == pytest.approx(caption_scores(replies, [DOGS, PAINT])["cider"])


def test_flickr30k_token_file_and_karpathy_file_are_the_same_samples(tmp_path):
    """flickr30k.tar.gz's results_20130124.token and caption_datasets.zip's dataset_flickr30k.json beside the
    flickr30k-images/ folder flickr30k-images.tar unpacks: the same images, captions and ids."""
    root = tmp_path / "flickr30k"
    shaggy = ["Two young guys with shaggy hair look at their hands while hanging out in the yard .",
              "Two young , White males are outside near many bushes .",
              "Two men in green shirts are standing in a yard .",
              "A man in a blue shirt standing in a garden .", "Two friends enjoy time spent together ."]
    climber = ["Several men in hard hats are operating a giant pulley system .",
               "Workers look down from up above on a piece of equipment .",
               "Two men working on a machine wearing hard hats .", "Four men on top of a tall structure .",
               "Three men on a large rig ."]
    entries = (("1000092795.jpg", "train", shaggy), ("10002456.jpg", "test", climber))
    for shade, (name, _, _) in enumerate(entries):
        png(root / "flickr30k-images" / name, 90 * shade)
    token = root / "results_20130124.token"
    token.write_text("".join(f"{name}#{index}\t{caption}\n" for name, _, captions in entries
                             for index, caption in enumerate(captions)))
    karpathy = root / "dataset_flickr30k.json"
    karpathy.write_text(json.dumps({"images": [karpathy_entry(imgid, name, split, captions) for imgid, (name, split,
                                                                                                         captions)
                                               in enumerate(entries)], "dataset": "flickr30k"}))
    expected = [(name, [root / "flickr30k-images" / name], captions) for name, _, captions in entries]
    assert [(s.id, s.images, s.reference["answers"]) for s in CustomTask().load(token, "all")] == expected
    assert [(s.id, s.images, s.reference["answers"])
            for s in CustomTask(reader_options={"split": "test"}).load(karpathy, "all")] == expected[1:]
    assert [(s.meta["id"], s.images) for s in QAReader(karpathy, split="train")] == [
        ("1000092795.jpg", [str(root / "flickr30k-images" / "1000092795.jpg")])]
    with pytest.raises(BenchmarkFileError, match=re.escape("Flickr30k's splits are Karpathy's: give "
                                                           "dataset_flickr30k.json with split")):
        CustomTask(reader_options={"split": "test"}).load(token, "all")


def test_bad_lines_sentences_and_images_are_named_and_split_elsewhere_refused(tmp_path):
    token = flickr8k(tmp_path / "flickr8k", lists=False)
    lines = token.read_text().splitlines()
    lines[3] = f"{GIRL_JPG}#3"  # no tab, no caption
    lines[6] = f"{DOGS_JPG}#1\t   "
    (tmp_path / "flickr8k" / "Flicker8k_Dataset" / PAINT_JPG).unlink()
    token.write_text("\n".join(lines) + "\n")
    reader = QAReader(token)
    assert [s.meta["id"] for s in reader] == [GIRL_JPG]
    folder = tmp_path / "flickr8k"
    tried = ", ".join(str(base / sub / PAINT_JPG) for base in (folder, tmp_path)
                      for sub in (".", "Flicker8k_Dataset", "flickr30k-images", "Images"))
    assert [(e.source, e.reason, e.detail) for e in reader.report.examples] == [
        (f"{token}:image {DOGS_JPG}", "empty_answer", f"line 7: the caption of {DOGS_JPG} is empty"),
        (f"{token}:image {PAINT_JPG}", "missing_media",
         f"{PAINT_JPG} (the image of lines 11, 12, 13, 14, 15) is not found: tried {tried}; give "
         "the folder of the media files as the media folder (data.media_folder, --media-folder)"),
        (f"{token}:4", "wrong_type", "not a caption line: expected IMAGE#N, a tab and the caption "
         f"(1000268201_693b08cb0e.jpg#0<TAB>A child in ...), got '{GIRL_JPG}#3'")]
    # Karpathy's: a sentence that is not text, an image not there
    path = coco_karpathy(tmp_path / "coco")
    document = json.loads(path.read_text())
    document["images"][0]["sentences"][2]["raw"] = None
    (tmp_path / "coco" / "train2014" / "COCO_train2014_000000057870.jpg").unlink()
    path.write_text(json.dumps(document))
    reader = QAReader(path, split=["test", "train"])
    assert list(reader) == []
    tried = ", ".join(str(base / sub / "COCO_train2014_000000057870.jpg") for base in (tmp_path / "coco", tmp_path)
                      for sub in ("train2014", "."))
    assert [(e.source, e.detail) for e in reader.report.examples] == [
        (f"{path}:image 391895", "sentence 2 of image 391895 has the 'raw' text None, not a caption"),
        (f"{path}:image 57870", f"image 57870's file COCO_train2014_000000057870.jpg is not found: tried "
         f"{tried}; give the folder of the media files as the media folder (data.media_folder, "
         "--media-folder)")]
    # a split for a file without splits: a COCO captions file, JSONL records
    refused = f"{SPLIT} selects the images of splits of a Karpathy split file"
    coco = coco_tree(tmp_path / "coco2017")
    records = tmp_path / "records.jsonl"
    records.write_text(json.dumps({"image": coco_image(tmp_path / "coco", 0), "caption": "a moped"}) + "\n")
    for data in (coco, records):
        with pytest.raises(DataError, match=re.escape(f"{data}: {refused}")):
            list(QAReader(data, split="val"))
    with pytest.raises(ValueError, match=r"split must be a split's name or a list of names"):
        QAReader(records, split=[])
