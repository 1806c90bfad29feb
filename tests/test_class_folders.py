"""A folder of class folders (torchvision ImageFolder / Hugging Face imagefolder, audiofolder) read as qa
records: the reader's samples, `modrwkv init` on it, training's data.train and `eval --task custom --data`
on it, and each bad layout's message (docs/custom-data.md, "A folder of class folders")."""

from __future__ import annotations

import io
import json
import logging
import os
import wave
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from modrwkv.cli import main
from modrwkv.data.readers import DataError, QAReader
from modrwkv.data.readers.base import expand_paths
from modrwkv.data.readers.detect import detect_format
from modrwkv.evaluation.tasks import CustomTask
from modrwkv.training import config_from_dict, train
from modrwkv.training.config import DataConfig
from modrwkv.training.data import build_reader

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
IMAGE_QUESTION = "<image>\nWhat is shown in the image?"  # the documented default, written out


def png(path: Path, shade: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), shade, np.uint8)).save(path)
    return path


def wav(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(np.zeros(1600, np.int16).tobytes())
    path.write_bytes(buffer.getvalue())
    return path


def digits_tree(root: Path) -> None:
    """Two classes, written out of order, with hidden files the reader must not read and a symlinked file."""
    png(root / "7" / "b.png", 200)
    png(root / "7" / "a.png", 180)
    png(root / "10" / "x.png", 20)
    (root / "10" / ".DS_Store").write_bytes(b"\0\1")
    (root / ".hidden").mkdir()
    png(root / ".hidden" / "z.png", 0)
    png(root.parent / "elsewhere" / "linked.png", 90)
    os.symlink(root.parent / "elsewhere" / "linked.png", root / "10" / "y.png")


def read(reader: QAReader) -> list[tuple[str, list[tuple[str, str]], list[str], str | None]]:
    return [(s.source, [(m.role, m.content) for m in s.messages], s.images, s.meta.get("id")) for s in reader]


def test_a_class_folder_tree_reads_as_its_hand_written_samples(tmp_path, monkeypatch):
    root = tmp_path / "train"
    digits_tree(root)
    expected = [(str(root / cls / name), [("user", IMAGE_QUESTION), ("assistant", cls)],
                 [str(tmp_path / "train" / cls / name)], f"{cls}/{name}")
                for cls, name in (("10", "x.png"), ("7", "a.png"), ("10", "y.png"), ("7", "b.png"))]  # classes in turn
    assert expand_paths([str(root)], "--data") == [str(root)] and detect_format(root) == "qa"
    reader = QAReader([root])
    assert read(reader) == expected and reader.report.summary() == f"{root}: kept 4 of 4 records"
    assert reader.count_records() == 4
    # data.options.prompt asks another question; a relative folder gives the same (absolute) media paths
    asked = read(QAReader([root], prompt="Which digit is this?"))
    assert [s[1][0] for s in asked] == [("user", "<image>\nWhich digit is this?")] * 4
    monkeypatch.chdir(tmp_path)
    assert [s[2] for s in read(QAReader(["train"]))] == [s[2] for s in expected]
    # audio files are asked what is said or heard
    wav(tmp_path / "speech" / "yes" / "0a7c2a8d_nohash_0.wav")
    wav(tmp_path / "speech" / "no" / "0b09edd3_nohash_0.wav")
    samples = list(QAReader([tmp_path / "speech"]))
    # a label is scored by exact match (an audio record's own default is WER, for transcripts)
    task = CustomTask()
    assert [s.reference["metric"] for s in task.load(tmp_path / "speech", "all")] == ["exact", "exact"]
    assert task.headline == "accuracy"
    assert [(s.messages[0].content, s.messages[1].content, s.audios) for s in samples] == [
        ("<audio>\nWhat is said or heard in the audio?", "no", [str(tmp_path / "speech/no/0b09edd3_nohash_0.wav")]),
        ("<audio>\nWhat is said or heard in the audio?", "yes", [str(tmp_path / "speech/yes/0a7c2a8d_nohash_0.wav")])]


def test_init_train_and_eval_on_class_folders(tmp_path, capsys, monkeypatch):
    data = tmp_path / "data" / "digits"
    digits_tree(data / "train")
    png(data / "test" / "7" / "t1.png", 190)
    png(data / "test" / "10" / "t2.png", 30)
    config_path = tmp_path / "digits.yaml"
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--data", "data/digits/train", "--yes", "--device", "cpu", "--output", str(config_path)]) == 0
    out = capsys.readouterr().out
    assert "data/digits/train: qa format, 4 usable samples, inputs: image (data/digits/train: kept 4 of 4 records)" in out
    assert "evaluate:  modrwkv eval --task custom --model runs/digits/final --data data/digits/test\n" in out
    cfg = yaml.safe_load(config_path.read_text())
    assert cfg["data"] == {"format": "qa", "train": ["data/digits/train"]}
    # training's reader of that config reads the reader's samples
    reader = build_reader(config_from_dict(cfg).data)
    assert read(reader) == read(QAReader(["data/digits/train"])) and len(read(reader)) == 4
    # eval scores each file of the test split against its folder's name, asked what training asked
    predictions = train_step_and_eval(cfg, tmp_path, "data/digits/test")
    assert [(p["id"], p["prompt"], p["reference"]["answers"]) for p in predictions] == [
        ("10/t2.png", IMAGE_QUESTION, ["10"]), ("7/t1.png", IMAGE_QUESTION, ["7"])]
    task = CustomTask()
    samples = task.load(data / "test", "all")
    assert task.score({"reference": samples[1].reference, "prediction": "7"}) == {"correct": True}
    assert task.score({"reference": samples[1].reference, "prediction": "10"}) == {"correct": False}
    # with several folders a file is known by its folder too ("7/a.png" is in both)
    png(data / "test" / "7" / "a.png", 185)
    both = [(s.id, s.reference["answers"]) for s in CustomTask().load([data / "train", data / "test"], "all")]
    assert both == [("train:10/x.png", ["10"]), ("train:7/a.png", ["7"]), ("train:10/y.png", ["10"]),
                    ("train:7/b.png", ["7"]), ("test:10/t2.png", ["10"]), ("test:7/a.png", ["7"]),
                    ("test:7/t1.png", ["7"])]
    # a root holding the splits is refused with the folder to give
    capsys.readouterr()
    assert main(["init", "--data", "data/digits", "--yes", "--device", "cpu", "--output", str(tmp_path / "x.yaml")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "modrwkv init: error: data/digits: holds the splits test/, train/, each a folder of class folders: give one "
        "split, data/digits/train to train on (modrwkv init --data, data.train); evaluate on data/digits/test "
        "(modrwkv eval --task custom --data)"]


def train_step_and_eval(cfg: dict, tmp_path: Path, held_out: str) -> list[dict]:
    """One training step of `init`'s config, whose model records the reader's default question (null), then
    `eval --task custom` of that model on `held_out`: its predictions."""
    cfg["train"].update(max_steps=1, warmup_steps=0, batch_size=4, micro_batch_size=4)
    cfg["output"].update(dir=str(tmp_path / "run"), save_every=0)
    result = train(cfg)
    assert result.history and json.loads((result.final_dir / "config.json").read_text())["caption_prompt"] is None
    assert main(["eval", "--model", str(result.final_dir), "--task", "custom", "--data", held_out,
                 "--output", str(tmp_path / "eval"), "--max-new-tokens", "4"]) == 0
    return [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]


def init_error(capsys, data: Path, tmp_path: Path) -> list[str]:
    capsys.readouterr()
    code = main(["init", "--data", str(data), "--yes", "--device", "cpu", "--output", str(tmp_path / "x.yaml"),
                 "--force"])
    captured = capsys.readouterr()
    assert code == 2 and "Traceback" not in captured.err
    return captured.err.splitlines()


def test_bad_layouts_are_one_line_naming_the_folder(tmp_path, capsys):
    nested = tmp_path / "nested"
    png(nested / "cat" / "a.png", 1)
    png(nested / "dog" / "puppies" / "b.png", 2)
    assert init_error(capsys, nested, tmp_path) == [
        f"modrwkv init: error: {nested}/dog/puppies: a folder inside the class folder 'dog': a class folder holds its "
        f"media files directly, and deeper folders are not read; move its files into {nested}/dog, or give "
        f"{nested}/dog if its subfolders are the classes"]
    mixed = tmp_path / "mixed"
    png(mixed / "cat" / "a.png", 1)
    wav(mixed / "meow" / "b.wav")
    assert init_error(capsys, mixed, tmp_path) == [
        f"modrwkv init: error: {mixed}: the class folders mix image ({mixed}/cat/a.png) and audio ({mixed}/meow/b.wav) "
        "files: a folder of class folders holds one kind of media, asked one question; put each kind in a folder of "
        "its own"]
    flat = tmp_path / "flat"
    png(flat / "a.png", 1)
    assert init_error(capsys, flat, tmp_path) == [
        f"modrwkv init: error: --data: {flat} is a folder with no .parquet or .tar file, "
        "no data set saved by datasets' save_to_disk (state.json and .arrow files) or cached by load_dataset "
        "(dataset_info.json and <name>-<split>.arrow files), no GluonTS data.json(.gz), no class folder, no "
        "metadata file and no media file with its caption or transcript beside it; give the data files (a wildcard "
        "such as data/train-*.parquet), a folder of class folders (train/cat/0001.jpg), a folder with a "
        "metadata.jsonl naming its media files (Hugging Face's imagefolder), or one of media files each with its "
        ".txt (0001.jpg and 0001.txt)"]
    records = tmp_path / "records"
    png(records / "images" / "a.png", 1)
    (records / "train.jsonl").write_text('{"image": "images/a.png", "question": "What?", "answer": "a"}\n')
    assert init_error(capsys, records, tmp_path) == [
        f"modrwkv init: error: {records}: holds train.jsonl beside its subfolders: give the data file itself (its "
        "records name their media); a folder of class folders, whose subfolders' names are the answers, holds no "
        "data file"]
    # a download's annotations/ beside images/, and shards in subfolders: data files, not a class folder's media
    annotated = tmp_path / "annotated"
    png(annotated / "images" / "a.png", 1)
    (annotated / "annotations").mkdir()
    (annotated / "annotations" / "train.json").write_text("[]")
    assert init_error(capsys, annotated, tmp_path) == [
        f"modrwkv init: error: {annotated}/annotations/train.json: a data file in {annotated}/annotations: "
        f"{annotated} was read as a folder of class folders (a subfolder per label, holding media files); give "
        f"the data files themselves (a wildcard such as {annotated}/*/*.json)"]
    (tmp_path / "shards" / "part1").mkdir(parents=True)
    (tmp_path / "shards" / "part1" / "000.tar").write_bytes(b"")
    shards = init_error(capsys, tmp_path / "shards", tmp_path)
    assert shards[0].endswith(f"(a wildcard such as {tmp_path}/shards/*/*.tar)")
    # eval and training name it alike
    assert main(["eval", "--model", str(tmp_path), "--task", "custom", "--data", str(nested), "--output",
                 str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith(
        f"modrwkv eval: error: {nested}/dog/puppies: a folder inside the class folder 'dog'")
    with pytest.raises(DataError, match=f"^{mixed}: the class folders mix image"):  # training's reader
        list(build_reader(DataConfig(format="qa", train=[str(mixed)])))


def test_an_image_of_a_class_folder_that_does_not_decode_is_named_once(tmp_path, monkeypatch, capsys):
    """The file is the record: 'skipped digits/7/cut.png: image does not decode', not the file again by its
    absolute path ('image '/.../digits/7/cut.png' does not decode'), given relative as --data is."""
    monkeypatch.chdir(tmp_path)
    png(Path("digits/7/a.png"), 1)
    png(Path("digits/1/b.png"), 2)
    Path("digits/7/cut.png").write_bytes(Path("digits/7/a.png").read_bytes()[:40])
    assert main(["init", "--data", "digits", "--yes", "--device", "cpu", "--output", "x.yaml"]) == 0
    skipped = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  skipped")]
    assert skipped == ["  skipped digits/7/cut.png: image does not decode: not a recognised image format (PNG, JPEG, "
                       "WebP, GIF, BMP, TIFF, ...)"]


def test_stray_files_empty_and_single_classes_and_bad_media_are_named(tmp_path, capsys, caplog):
    root = tmp_path / "train"
    png(root / "cat" / "a.png", 1)
    png(root / "cat" / "b.png", 2)
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    os.symlink(tmp_path / "gone.png", root / "cat" / "dangling.png")
    (root / "empty").mkdir()
    (root / "README.txt").write_text("digits")
    caplog.set_level(logging.WARNING)
    assert main(["init", "--data", str(root), "--yes", "--device", "cpu", "--output", str(tmp_path / "x.yaml")]) == 0
    out = capsys.readouterr().out
    assert (f"{root}: qa format, 2 usable samples, inputs: image ({root}: kept 2 of 5 records; skipped 3 "
            "(unreadable_media: 2, missing_media: 1))") in out
    assert f"{root}/cat/broken.png: image does not decode" in out
    assert f"{root}/cat/dangling.png: a symbolic link to {tmp_path}/gone.png, which does not exist" in out
    assert (f"{root}/cat/notes.txt: not an image, audio or video file by its extension (.txt; read: .jpg, .jpeg, "
            ".png,") in out
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (f"{root}: README.txt is beside the class folders, not in one: left aside (a sample's label is the name "
            "of the class folder it is in)") in warnings
    assert (f"{root}/empty: an empty class folder (no image, audio or video file): no sample answers 'empty'"
            in warnings)
    single = tmp_path / "single"
    png(single / "cat" / "a.png", 1)
    (single / "cat" / "Thumbs.db").write_bytes(b"\0")  # what Windows' Explorer and macOS's zip leave: not read
    png(single / "__MACOSX" / "cat" / "._a.png", 1)
    assert [s.messages[1].content for s in QAReader([single])] == ["cat"]
    assert (f"{single}: one class folder with media (cat): every sample's answer is 'cat'; a classifier learns "
            "from a class folder per label") in [r.getMessage() for r in caplog.records]


def speech_commands_prepare():
    """bench/speech_commands/prepare.py as a module (bench/ is no package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("speech_commands_prepare",
                                                  REPO / "bench" / "speech_commands" / "prepare.py")
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    return prepare


def test_spoken_commands_are_class_folders_split_by_voice(tmp_path):
    """bench/speech_commands/prepare.py (docs/custom-data.md's spoken-command example): each word's clips in
    its class folder of the split their voice belongs to, the held-out voices only in test/, as many as
    asked, 16 kHz mono 16-bit; the class-folder reader answers each with its word."""
    from modrwkv.quickstart.speech import ESPEAK_HELP, EspeakMissing, espeak_binary

    try:
        espeak_binary()
    except EspeakMissing:
        pytest.skip(ESPEAK_HELP)
    prepare = speech_commands_prepare()
    written = prepare.speak_words(tmp_path, train=2, test=1, seed=0)
    words = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]  # Speech Commands' ten
    for split, per_word in (("train", 2), ("test", 1)):
        files = sorted((tmp_path / split).glob("*/*"))
        assert sorted(written[split]) == files and len(files) == 10 * per_word
        assert sorted(f.parent.name for f in files) == sorted(words * per_word)
        voices = {f.stem.split("-", 2)[2] for f in files}  # <word>-NNN-<voice>
        held_out = {"en-gb-scotland", "en-us+f3"}
        assert voices <= held_out if split == "test" else voices.isdisjoint(held_out)
        for f in files:
            with wave.open(str(f)) as clip:
                assert (clip.getframerate(), clip.getnchannels(), clip.getsampwidth()) == (16000, 1, 2)
                assert 0.2 < clip.getnframes() / 16000 < 2  # a spoken word, not an empty or cut file
    samples = list(QAReader([tmp_path / "train"]))
    assert sorted(s.messages[1].content for s in samples) == sorted(words * 2)
    assert all(Path(s.audios[0]).parent.name == s.messages[1].content for s in samples)


def test_the_spoken_commands_baseline_is_mfcc_logistic_regression(tmp_path):
    """The baseline the spoken-command numbers are compared with (prepare.py's `baseline`): its mel filters
    are transformers' HTK filter bank, its MFCCs the DCT of the log mel power of Hamming-windowed 25 ms frames
    computed by transformers' `spectrogram`, of the voiced frames only (leading silence changes nothing), and
    it separates clips that differ by their pitch, scored on held-out clips, beside the majority class."""
    from scipy.fft import dct
    from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

    prepare = speech_commands_prepare()
    reference = mel_filter_bank(num_frequency_bins=257, num_mel_filters=40, min_frequency=0, max_frequency=8000,
                                sampling_rate=16000, norm=None, mel_scale="htk")
    np.testing.assert_allclose(prepare.mel_filters(), reference.T, atol=1e-12)

    t = np.arange(8000) / 16000
    tone = 0.5 * np.sin(2 * np.pi * (300 + 400 * t) * t)  # a rising tone, so each quarter of it differs
    power = spectrogram(tone, window_function(400, "hamming", periodic=False), frame_length=400, hop_length=160,
                        fft_length=512, power=2.0, center=False)  # [257, frames]
    cepstra = dct(np.log(reference.T @ power + 1e-10), type=2, norm="ortho", axis=0)[:13].T  # [frames, 13]
    quarters = [part.mean(axis=0) for part in np.array_split(cepstra, 4)]
    expected = np.concatenate([*quarters, cepstra.mean(axis=0), cepstra.std(axis=0)])
    np.testing.assert_allclose(prepare.mfcc_features(tone), expected, rtol=1e-6, atol=1e-6)
    # 0.1 s of silence first: frames 0-7 are silent, the frames from 8 (sample 1280) on are those of the clip
    # cut at 1280; the silent frames count for nothing
    silence_first = np.concatenate([np.zeros(1600), tone])
    np.testing.assert_allclose(prepare.mfcc_features(silence_first), prepare.mfcc_features(silence_first[1280:]),
                               rtol=1e-9, atol=1e-9)

    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("test", 3)):
        for word, pitch in (("low", 200), ("high", 2000)):
            for i in range(count + (word == "low" and split == "train")):  # 7 low, 6 high: low is the majority
                clip = np.sin(2 * np.pi * pitch * rng.uniform(0.9, 1.1) * t) * 0.3 + rng.normal(0, 0.01, len(t))
                path = tmp_path / split / word / f"{word}-{i:03d}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                prepare.write_wav(path, clip)
    scores = prepare.baseline(tmp_path)
    assert scores == {"majority_class_accuracy": 50.0, "logistic_regression_accuracy": 100.0}
