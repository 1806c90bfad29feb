"""Media files each with a text file of the same name beside it (kohya-ss' image-caption folders, speech folders with a
transcript per recording) read as records (`data.readers.sidecars`): the samples the same data written as the
project's plain JSONL gives, `modrwkv init`, data.train and eval, bad files named, and what stays a folder of class
folders (docs/custom-data.md)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from modrwkv.cli import main
from modrwkv.data.readers import AsrManifestReader, QAReader
from modrwkv.data.readers.detect import detect_format
from modrwkv.evaluation.tasks import CustomTask
from modrwkv.training import config_from_dict
from modrwkv.training.data import build_reader
from test_class_folders import init_error, png, wav

CAPTION = "<image>\nWrite a short caption for the image."
TRANSCRIBE = "<audio>\nTranscribe the audio."


def jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def turns(samples) -> list[tuple]:
    return [([(m.role, m.content) for m in s.messages], [str(Path(p).resolve()) for p in s.images + s.audios])
            for s in samples]


def test_images_with_their_captions_read_as_their_jsonl_records(tmp_path, monkeypatch, capsys):
    """kohya-ss' layout: <repeats>_<name>/ subfolders of images, each with its .txt caption (a tagger's, a line of
    tags); a caption file without an image, and kohya's cached latents, are left aside."""
    data = tmp_path / "img"
    captions = {"10_shapes/0001.png": "a black square, solo, simple background",
                "10_shapes/0002.png": "a grey square,\nsoft light",  # (a second line is the caption's too)
                "5_more/0001.jpg": "a white square"}
    for number, (name, caption) in enumerate(captions.items()):
        png(data / name, 100 * number)
        (data / name).with_suffix(".txt").write_text(caption + "\n")
    (data / "10_shapes" / "README.txt").write_text("captions by WD14\n")
    (data / "10_shapes" / "0001.npz").write_bytes(b"latents")
    expected = jsonl(tmp_path / "captions.jsonl", [{"image": f"img/{name}", "caption": caption}
                                                   for name, caption in captions.items()])
    assert detect_format(data) == "qa"
    samples = list(QAReader(data, on_error="raise"))
    assert turns(samples) == turns(QAReader(expected, on_error="raise")) == [
        ([("user", CAPTION), ("assistant", caption)], [str(data / name)]) for name, caption in captions.items()]
    assert [(s.source, s.meta["id"]) for s in samples] == [(str(data / name), name) for name in captions]
    # init on the folder: a qa config, training reads the same samples
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--data", "img", "--yes", "--device", "cpu", "--output", "img.yaml"]) == 0
    assert "img: qa format, 3 usable samples, inputs: image (img: kept 3 of 3 records)" in capsys.readouterr().out
    config = yaml.safe_load(Path("img.yaml").read_text())
    assert config["data"] == {"format": "qa", "train": ["img"]}
    assert turns(build_reader(config_from_dict(config).data)) == turns(samples)
    # eval: each image asked for its caption, scored by CIDEr-D, known by its path in the folder
    assert [(s.id, s.reference) for s in CustomTask().load(data, "all")] == [
        (name, {"metric": "cider", "answers": [caption]}) for name, caption in captions.items()]


def test_recordings_with_their_transcripts_read_as_their_jsonl_manifest(tmp_path):
    data = tmp_path / "speech"
    texts = {"p225_001.wav": "Please call Stella.", "p225_002.wav": "Ask her to bring these things.",
             "p226/p226_001.wav": "Six spoons of fresh snow peas."}
    for name, text in texts.items():
        wav(data / name)
        (data / name).with_suffix(".txt").write_text(text + "\n")
    expected = jsonl(tmp_path / "speech.jsonl", [{"audio": f"speech/{name}", "text": text, "id": name}
                                                 for name, text in texts.items()])
    assert detect_format(data) == "asr"
    samples = list(AsrManifestReader(data, on_error="raise"))
    assert turns(samples) == turns(AsrManifestReader(expected, on_error="raise")) == [
        ([("user", TRANSCRIBE), ("assistant", text)], [str(data / name)]) for name, text in texts.items()]
    assert [s.meta for s in samples] == [{"id": name} for name in texts]


def test_a_media_file_without_its_text_and_bad_layouts_are_named(tmp_path, capsys):
    data = tmp_path / "captions"
    for name in ("a.png", "b.png", "c.png", "d.png"):
        png(data / name, 10)
    (data / "a.txt").write_text("a dark square")
    (data / "b.caption").write_text("kohya's other caption extension")
    (data / "d.txt").write_text("  \n")
    reader = QAReader(data)
    assert [s.messages[1].content for s in reader] == ["a dark square", "kohya's other caption extension"]
    assert [str(e) for e in reader.report.examples] == [
        f"{data / 'c.png'}: no c.txt or c.caption beside it: in a folder of media files with their captions or "
        "transcripts, each file has its text file of the same name beside it",
        f"{data / 'd.png'}: its caption {data / 'd.txt'} is empty"]
    # images and recordings in one folder: two formats, refused
    wav(data / "e.wav")
    (data / "e.txt").write_text("a recording")
    assert init_error(capsys, data, tmp_path) == [
        f"modrwkv init: error: {data}: holds audio ({data / 'e.wav'}) and images or video ({data / 'a.png'}) with "
        "their text files: the records would be transcripts and captions, of two formats; put each kind in a folder "
        "of its own"]
    # a folder of splits, each of captioned images: the split to train on and the one to evaluate on
    splits = tmp_path / "shapes"
    for split in ("train", "test"):
        png(splits / split / "a.png", 1)
        (splits / split / "a.txt").write_text("a square")
    assert init_error(capsys, splits, tmp_path) == [
        f"modrwkv init: error: {splits}: holds the splits test/, train/, each of media files with their captions or "
        f"transcripts: give one split, {splits / 'train'} to train on (modrwkv init --data, data.train); evaluate on "
        f"{splits / 'test'} (modrwkv eval --task custom --data)"]


def test_class_folders_stay_class_folders(tmp_path):
    """A class folder holds media alone: a text file beside the class folders or in one, not named as a media
    file is, does not make captions of its files, nor do the pairs macOS's zip leaves in __MACOSX/ (._a.png, ._a.txt:
    its resource forks), which comes first by name."""
    data = tmp_path / "pets"
    png(data / "cat" / "a.png", 0)
    png(data / "dog" / "b.png", 250)
    (data / "cat" / "notes.txt").write_text("scanned in 2020")
    (data / "README.txt").write_text("two classes")
    (data / "__MACOSX" / "cat").mkdir(parents=True)
    for name in ("._a.png", "._a.txt"):
        (data / "__MACOSX" / "cat" / name).write_bytes(b"\0\5\26\7")
    samples = list(QAReader(data))
    assert [(s.messages[1].content, s.meta["id"]) for s in samples] == [("cat", "cat/a.png"), ("dog", "dog/b.png")]
