"""Tables of media rows as public sets ship them (Kaggle's Flickr8k captions.txt, Flickr30k's pipe-separated
results.csv, a Kaggle competition's image,label train.csv) read as the rows of a Hugging Face metadata file are:
the reader's samples (one per row), `modrwkv init`, data.train, eval's grouping of one image's captions, and the
errors (docs/custom-data.md, "A table of media rows")."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from modrwkv.cli import main
from modrwkv.data.readers import DataError, QAReader, TimeSeriesReader
from modrwkv.data.readers.base import is_series_file
from modrwkv.data.readers.detect import FormatUnknown, detect_format
from modrwkv.evaluation.tasks import BenchmarkFileError, CustomTask, custom_task
from modrwkv.training import config_from_dict
from modrwkv.training.data import build_reader
from test_class_folders import init_error, png

CAPTION = "<image>\nWrite a short caption for the image."
LABEL_QUESTION = "<image>\nWhat is shown in the image?"

# Kaggle's Flickr8k captions.txt as published (its first two images' rows), one caption written with commas, quoted
GIRL = ["A child in a pink dress is climbing up a set of stairs in an entry way .",
        "A girl going into a wooden building .", "A little girl climbing into a wooden playhouse .",
        "A little girl climbing the stairs to her playhouse .",
        "A little girl in a pink dress going into a wooden cabin ."]
DOGS = ["A black dog and a spotted dog are fighting",
        "A black dog and a tri-colored dog playing with each other on the road .",
        "A black dog and a white dog with brown spots are staring at each other in the street .",
        "Two dogs of different breeds looking at each other on the road .",
        "Two dogs , one black , one white , on pavement moving toward each other ."]
GIRL_JPG, DOGS_JPG = "1000268201_693b08cb0e.jpg", "1001773457_577c3a7d70.jpg"


def flickr8k(root: Path) -> Path:
    """flickr8k/Images/*.jpg and flickr8k/captions.txt (header image,caption, 5 rows per image)."""
    png(root / "Images" / GIRL_JPG, 30)
    png(root / "Images" / DOGS_JPG, 200)
    lines = ["image,caption"] + [f'{name},"{caption}"' if "," in caption else f"{name},{caption}"
                                 for name, captions in ((GIRL_JPG, GIRL), (DOGS_JPG, DOGS)) for caption in captions]
    (root / "captions.txt").write_text("\n".join(lines) + "\n")
    return root / "captions.txt"


def test_flickr8k_captions_train_a_sample_per_row_and_evaluate_an_image_per_sample(tmp_path):
    captions = flickr8k(tmp_path / "flickr8k")
    images = {name: str(tmp_path / "flickr8k" / "Images" / name) for name in (GIRL_JPG, DOGS_JPG)}
    expected = [(f"{captions}:{line}", [images[name]], caption)
                for line, (name, caption) in enumerate([(GIRL_JPG, c) for c in GIRL] + [(DOGS_JPG, c) for c in DOGS],
                                                       start=2)]
    assert detect_format(captions) == "qa"
    reader = QAReader(captions, on_error="raise")
    samples = list(reader)
    assert [(s.source, s.images, s.messages[1].content) for s in samples] == expected
    assert {s.messages[0].content for s in samples} == {CAPTION} and samples[5].meta["id"] == DOGS_JPG
    assert reader.count_records() == 10
    # the same file as captions.csv: no series (its numbers none), the same rows; the media folder given is used
    as_csv = tmp_path / "flickr8k" / "captions.csv"
    as_csv.write_bytes(captions.read_bytes())
    assert not is_series_file(as_csv) and detect_format(as_csv) == "qa"
    assert [(s.images, s.messages[1].content) for s in QAReader(as_csv, media_folder=tmp_path / "flickr8k" / "Images")
            ] == [(sample[1], sample[2]) for sample in expected]
    # eval: the five rows of an image are one sample with all five captions its references
    for data in (captions, as_csv):
        evaluated = CustomTask().load(data, "all")
        assert [(s.id, s.prompt, s.reference, s.images) for s in evaluated] == [
            (GIRL_JPG, CAPTION, {"metric": "cider", "answers": GIRL}, [Path(images[GIRL_JPG])]),
            (DOGS_JPG, CAPTION, {"metric": "cider", "answers": DOGS}, [Path(images[DOGS_JPG])])]
    assert isinstance(custom_task(as_csv), CustomTask)  # not the forecasting task of a series CSV


def test_init_on_flickr8k_writes_a_config_whose_reader_reads_every_row(tmp_path, monkeypatch, capsys):
    flickr8k(tmp_path / "flickr8k")
    monkeypatch.chdir(tmp_path / "flickr8k")
    assert main(["init", "--data", "captions.txt", "--media-folder", "Images", "--yes", "--device", "cpu",
                 "--output", "flickr8k.yaml"]) == 0
    assert "captions.txt: qa format, 10 usable samples, inputs: image" in capsys.readouterr().out
    cfg = yaml.safe_load(Path("flickr8k.yaml").read_text())
    assert cfg["data"] == {"format": "qa", "train": ["captions.txt"], "media_folder": "Images"}
    assert [s.messages[1].content for s in build_reader(config_from_dict(cfg).data)] == GIRL + DOGS
    # data.train written by hand, from another folder: the same rows
    monkeypatch.chdir(tmp_path)
    data = {"format": "qa", "train": ["flickr8k/captions.txt"], "media_folder": "flickr8k/Images"}
    reader = build_reader(config_from_dict({**cfg, "data": data}).data)
    assert [s.images[0] for s in reader] == [str(tmp_path / "flickr8k" / "Images" / GIRL_JPG)] * 5 + [
        str(tmp_path / "flickr8k" / "Images" / DOGS_JPG)] * 5


def test_flickr30k_results_csv_is_pipe_separated_with_its_images_in_the_folder_of_its_name(tmp_path):
    """Kaggle's Flickr30k: flickr30k_images/results.csv (`image_name| comment_number| comment`) beside
    flickr30k_images/flickr30k_images/; its row 19999 lacks a `|` and is a bad record."""
    root = tmp_path / "flickr30k_images"
    png(root / "flickr30k_images" / "1000092795.jpg", 10)
    png(root / "flickr30k_images" / "2199200615.jpg", 90)
    results = root / "results.csv"
    results.write_text(
        "image_name| comment_number| comment\n"
        "1000092795.jpg| 0| Two young guys with shaggy hair look at their hands while hanging out in the yard .\n"
        "1000092795.jpg| 1| Two young , White males are outside near many bushes .\n"
        "2199200615.jpg| 3| A dog is running through the grass .\n"
        "2199200615.jpg| 4   A dog runs across the grass .\n")
    assert not is_series_file(results) and detect_format(results) == "qa"
    reader = QAReader(results)
    assert [(s.images, s.messages[1].content) for s in reader] == [
        ([str(root / "flickr30k_images" / "1000092795.jpg")],
         "Two young guys with shaggy hair look at their hands while hanging out in the yard ."),
        ([str(root / "flickr30k_images" / "1000092795.jpg")], "Two young , White males are outside near many bushes ."),
        ([str(root / "flickr30k_images" / "2199200615.jpg")], "A dog is running through the grass .")]
    assert [(e.source, e.detail) for e in reader.report.examples] == [
        (f"{results}:5", "2 cells where the header (image_name, comment_number, comment) has 3: a cell holding '|' "
                         "or a line break is quoted (\"a, b\")")]


@pytest.mark.parametrize("header, folder", [("image,label", "train"), ("filename,label", "images"),
                                            ("id,label", ".")])
def test_a_kaggle_train_csv_is_labelled_rows(tmp_path, header, folder):
    root = tmp_path / "pets"
    for name, shade in (("a.png", 1), ("b.jpg", 2), ("c.png", 3)):
        png(root / folder / name, shade)
    train = root / "train.csv"
    train.write_text(f"{header}\na.png,cat\nb.jpg,dog\nc.png,0\n")
    assert not is_series_file(train) and detect_format(train) == "qa"
    samples = list(QAReader(train, on_error="raise"))
    assert [(s.images, s.messages[0].content, s.messages[1].content, s.meta.get("id")) for s in samples] == [
        ([str((root / folder / name).resolve())], LABEL_QUESTION, label, name)
        for name, label in (("a.png", "cat"), ("b.jpg", "dog"), ("c.png", "0"))]
    assert [(s.id, s.reference) for s in CustomTask().load(train, "all")] == [
        ("a.png", {"metric": "exact", "answers": ["cat"]}), ("b.jpg", {"metric": "exact", "answers": ["dog"]}),
        ("c.png", {"metric": "exact", "answers": ["0"]})]


def test_a_missing_file_is_a_bad_record_naming_the_line_and_the_paths_tried(tmp_path):
    train = tmp_path / "pets" / "train.csv"
    png(tmp_path / "pets" / "images" / "a.png", 1)
    train.write_text("image,label\na.png,cat\ngone.png,dog\n")
    reader = QAReader(train)
    assert [s.messages[1].content for s in reader] == ["cat"]
    pets = tmp_path / "pets"
    tried = ", ".join(str(folder / "gone.png") for folder in (
        pets, pets / "Images", pets / "images", pets / "pets", pets / "train_images", pets / "clips", pets / "train",
        tmp_path / "train", tmp_path))
    missing = (f"image 'gone.png' is not found: tried {tried}; give the folder of the media files as the media "
               "folder (data.media_folder, --media-folder)")
    assert [(e.source, e.reason, e.detail) for e in reader.report.examples] == [
        (f"{train}:3", "missing_media", missing)]
    with pytest.raises(BenchmarkFileError, match=re.escape(f"{train}:3: {missing}")):
        CustomTask().load(train, "all")
    # a media folder given is the only place looked
    reader = QAReader(train, media_folder=tmp_path)
    assert list(reader) == [] and [e.detail for e in reader.report.examples][0].startswith(
        f"image 'a.png' is not found: tried {tmp_path / 'a.png'}; give")


def test_media_without_a_text_or_label_column_is_one_line_and_series_csvs_are_series(tmp_path, capsys):
    widths = tmp_path / "widths.csv"
    widths.write_text("image,width\nimg0.jpg,3\nimg1.jpg,4\n")
    accepted = ("a table of media rows is read as samples with a caption or transcript column (text, caption, "
                "transcript, sentence, transcription, comment), a 'label' column (a class) or 'question' and "
                "'answer' columns (docs/custom-data.md)")
    assert init_error(capsys, widths, tmp_path) == [
        f"modrwkv init: error: {widths}: its column 'image' names media files (img0.jpg), but no column says what "
        f"they show (its columns: image, width); {accepted}; or name the column that says what they show: "
        "data.options.label_column (modrwkv init --label-column width)"]
    with pytest.raises(DataError, match=re.escape(f"{widths}: its column 'image' names media files")):
        list(QAReader(widths))
    # a headerless table: its first row is no header
    headless = tmp_path / "list.txt"
    headless.write_text("a.jpg,cat\nb.jpg,dog\n")
    assert init_error(capsys, headless, tmp_path)[0].endswith(
        "(its columns: a.jpg, cat); its first row names a media file (a.jpg), not a column: the file needs a header "
        f"row (e.g. image,caption); {accepted}")
    # read as a series on purpose, the numbers beside media are refused as before
    with pytest.raises(DataError, match=re.escape(f"{widths}: columns ['image', 'width'], numbers beside media: its "
                                                  "column 'image' names media files (img0.jpg), so its rows are "
                                                  "samples, not a time series")):
        list(TimeSeriesReader(widths, lookback=1, horizon=1))
    # a series CSV (and a .txt of JSON records) is read as it was
    load = tmp_path / "load.csv"
    load.write_text("date,load\n" + "".join(f"2024-01-{day:02d},{day * 1.5}\n" for day in range(1, 9)))
    assert is_series_file(load) and detect_format(load) == "series"
    assert [s.messages[1].content for s in TimeSeriesReader(load, lookback=6, horizon=2)][:1]
    records = tmp_path / "records.txt"
    records.write_text('{"image": "a.jpg", "question": "What?", "answer": "a"}\n')
    png(tmp_path / "a.jpg", 1)
    assert detect_format(records) == "qa" and [s.messages[1].content for s in QAReader(records)] == ["a"]


def aptos(root: Path) -> Path:
    """Kaggle's APTOS 2019 layout: train.csv of id_code,diagnosis, its images train_images/<id_code>.png."""
    for shade, code in enumerate(("000c1434d8d7", "001639a390f0", "0024cdab0c1e", "002c21358ce6"), 1):
        png(root / "train_images" / f"{code}.png", shade * 40)
    (root / "train.csv").write_text("id_code,diagnosis\n000c1434d8d7,2\n001639a390f0,4\n0024cdab0c1e,1\n"
                                    "002c21358ce6,0\n")
    return root / "train.csv"


def test_kaggle_ids_without_their_extension_answered_by_the_label_column_named(tmp_path, capsys, monkeypatch):
    """APTOS's id_code names train_images/<id>.png without the extension, and its answer column is `diagnosis`:
    found by the files, answered once the column is named (init says which to name), eval reads them alike."""
    train = aptos(tmp_path / "aptos")
    assert not is_series_file(train)
    assert init_error(capsys, train, tmp_path)[0].endswith(
        "its column 'id_code' names media files (000c1434d8d7.png), but no column says what they show (its columns: "
        "id_code, diagnosis); a table of media rows is read as samples with a caption or transcript column (text, "
        "caption, transcript, sentence, transcription, comment), a 'label' column (a class) or 'question' and "
        "'answer' columns (docs/custom-data.md); or name the column that says what they show: "
        "data.options.label_column (modrwkv init --label-column diagnosis)")
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--data", str(train), "--label-column", "diagnosis", "--yes", "--device", "cpu",
                 "--output", "aptos.yaml"]) == 0
    cfg = yaml.safe_load(Path("aptos.yaml").read_text())
    assert cfg["data"]["options"] == {"label_column": "diagnosis"}
    samples = list(build_reader(config_from_dict(cfg).data))
    folder = (tmp_path / "aptos" / "train_images").resolve()
    assert [(s.images, s.messages[0].content, s.messages[1].content) for s in samples] == [
        ([str(folder / f"{code}.png")], LABEL_QUESTION, grade)
        for code, grade in (("000c1434d8d7", "2"), ("001639a390f0", "4"), ("0024cdab0c1e", "1"), ("002c21358ce6", "0"))]
    task = custom_task(str(train), label_column="diagnosis")
    assert [(s.id, s.reference["answers"]) for s in task.load(str(train), "all")] == [
        ("000c1434d8d7", ["2"]), ("001639a390f0", ["4"]), ("0024cdab0c1e", ["1"]), ("002c21358ce6", ["0"])]
    with pytest.raises(DataError, match=re.escape(f"{train}: no column 'dx' (data.options.label_column) to answer "
                                                  "with; its columns: id_code, diagnosis")):
        list(QAReader(train, label_column="dx"))


def test_ham10000_rows_find_their_images_in_either_part_and_answer_with_dx(tmp_path):
    """HAM10000_metadata.csv (Kaggle's skin-cancer-mnist-ham10000) names image_id without .jpg, its images split
    over HAM10000_images_part_1/ and _part_2/; `dx` answers, not the caption-like columns beside it."""
    root = tmp_path / "ham10000"
    png(root / "HAM10000_images_part_1" / "ISIC_0027419.jpg", 10)
    png(root / "HAM10000_images_part_1" / "ISIC_0025030.jpg", 20)
    png(root / "HAM10000_images_part_2" / "ISIC_0031633.jpg", 30)
    metadata = root / "HAM10000_metadata.csv"
    metadata.write_text("lesion_id,image_id,dx,dx_type,age,sex,localization\n"
                        "HAM_0000118,ISIC_0027419,bkl,histo,80.0,male,scalp\n"
                        "HAM_0000118,ISIC_0025030,bkl,histo,80.0,male,scalp\n"
                        "HAM_0002730,ISIC_0031633,nv,follow_up,85.0,male,ear\n")
    reader = QAReader(metadata, label_column="dx", on_error="raise")
    assert [(s.images, s.meta["id"], s.messages[1].content) for s in reader] == [
        ([str((root / part / f"{image}.jpg").resolve())], image, dx) for part, image, dx in (
            ("HAM10000_images_part_1", "ISIC_0027419", "bkl"), ("HAM10000_images_part_1", "ISIC_0025030", "bkl"),
            ("HAM10000_images_part_2", "ISIC_0031633", "nv"))]


def test_a_column_of_names_is_media_only_where_their_files_are(tmp_path):
    """Names without an extension are media files only when the first rows' files are found: a series' ids, a
    table whose first file is there but whose next ones are not, stay what they were."""
    series = tmp_path / "sensors.csv"
    series.write_text("station,reading\n" + "".join(f"s{n},{n * 0.5}\n" for n in range(12)))
    assert is_series_file(series) and detect_format(series) == "series"
    png(tmp_path / "images" / "s0.png", 1)  # one file of that name is no column of files
    assert is_series_file(series)
    png(tmp_path / "images" / "s1.png", 2)
    png(tmp_path / "images" / "s2.png", 3)
    assert not is_series_file(series)
    with pytest.raises(FormatUnknown, match=re.escape("its column 'station' names media files (s0.png)")):
        detect_format(series)


def test_common_voice_tsv_reads_its_quotes_as_text_and_its_clips(tmp_path):
    """Common Voice's train.tsv as released (its columns, sentences holding quotes, written unquoted) beside clips/
    of 48 kHz MP3: each row an ASR sample of its sentence exactly, its clip decoded at 16 kHz."""
    import numpy as np
    import soundfile

    from modrwkv.data.readers import AsrManifestReader
    from modrwkv.encoders.media import load_audio

    root = tmp_path / "cv-corpus-17.0-2024-03-15" / "en"
    (root / "clips").mkdir(parents=True)
    sentences = ['"Hello," he said.', "It's five o'clock somewhere.", 'She said "no" twice.']
    rows = ["client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes\tage\tgender\taccents"
            "\tvariant\tlocale\tsegment"]
    for number, sentence in enumerate(sentences):
        clip = f"common_voice_en_{39586336 + number}.mp3"
        tone = 0.2 * np.sin(2 * np.pi * 440 * np.arange(48000 // 2) / 48000)
        soundfile.write(root / "clips" / clip, tone.astype(np.float32), 48000, format="MP3")
        rows.append(f"5f1c{number}\t{clip}\t{number:064x}\t{sentence}\t\t2\t0\tthirties\t\t\t\ten\t")
    (root / "train.tsv").write_text("\n".join(rows) + "\n")
    assert detect_format(root / "train.tsv") == "asr"
    samples = list(AsrManifestReader(root / "train.tsv", on_error="raise"))
    assert [(Path(s.audios[0]).name, s.messages[1].content) for s in samples] == [
        (f"common_voice_en_{39586336 + number}.mp3", sentence) for number, sentence in enumerate(sentences)]
    waveform = load_audio(samples[0].audios[0])
    assert abs(len(waveform) - 8000) < 1200  # half a second at 16 kHz (MP3 adds a frame of padding)
    # a tab inside a cell cannot be told from the next cell: the row is a bad record saying so
    (root / "train.tsv").write_text(rows[0] + "\n" + rows[1].replace("Hello,", "Hello,\t") + "\n")
    reader = AsrManifestReader(root / "train.tsv")
    assert list(reader) == [] and reader.report.examples[0].detail.endswith(
        "a cell holding a tab is split by it: a .tsv is read unquoted, as Common Voice writes it")


def test_an_early_common_voice_release_reads_as_its_jsonl_manifest_and_names_a_missing_clip(tmp_path, capsys):
    """Common Voice 5.1's header (client_id, path, sentence, ..., accent: no sentence_id, variant or locale), its
    clips as WAV here: each row the ASR sample its JSONL manifest line makes; a row whose clip is missing, and one
    cut short, are bad records naming train.tsv and the line; the language folder, of several splits, is refused
    naming the one to train on."""
    import json

    import soundfile

    from modrwkv.data.readers import AsrManifestReader

    root = tmp_path / "cv-corpus-5.1-2020-06-22" / "en"
    sentences = {"common_voice_en_18824.wav": "Why are you so angry?", "common_voice_en_1.wav": '"Hi," she said.'}
    for number, clip in enumerate(sentences):
        (root / "clips").mkdir(parents=True, exist_ok=True)
        soundfile.write(root / "clips" / clip, np.full(1600 * (number + 1), 0.1, np.float32), 16000)
    header = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccent\n"
    rows = [f"4f2a{number}\t{clip}\t{sentence}\t2\t0\tfourties\tmale\tus\n"
            for number, (clip, sentence) in enumerate(sentences.items())]
    (root / "train.tsv").write_text(header + "".join(rows))
    (root / "dev.tsv").write_text(header)
    expected = tmp_path / "cv.jsonl"
    expected.write_text("".join(json.dumps({"audio": str(root / "clips" / clip), "text": sentence}) + "\n"
                                for clip, sentence in sentences.items()))

    def samples(path: Path) -> list[tuple]:
        return [(s.messages, s.audios, s.meta) for s in AsrManifestReader(path, on_error="raise")]

    assert detect_format(root / "train.tsv") == "asr"
    assert samples(root / "train.tsv") == samples(expected) and len(samples(expected)) == 2
    (root / "train.tsv").write_text(header + rows[0] + "9c1d\tcommon_voice_en_404.mp3\tGone.\t2\t0\t\t\t\n"
                                    + "\t".join(rows[1].split("\t")[:4]) + "\n")
    reader = AsrManifestReader(root / "train.tsv")
    assert len(list(reader)) == 1
    missing, short = [str(e) for e in reader.report.examples]
    clip = "common_voice_en_404.mp3"
    assert missing.startswith(f"{root / 'train.tsv'}:3: path '{clip}' is not found: tried {root / clip}, ")
    assert str(root / "clips" / clip) in missing and missing.endswith(
        "; give the folder of the media files as the media folder (data.media_folder, --media-folder)")
    assert short == (
        f"{root / 'train.tsv'}:4: 4 cells where the header (client_id, path, sentence, up_votes, down_votes, age, "
        "gender, accent) has 8: a cell holding a tab is split by it: a .tsv is read unquoted, as Common Voice writes "
        "it")
    assert init_error(capsys, root, tmp_path) == [
        f"modrwkv init: error: {root}: holds the splits dev.tsv, train.tsv, each a data file whose records name their "
        f"media: give one split, {root / 'train.tsv'} to train on (modrwkv init --data, data.train); evaluate on "
        f"{root / 'dev.tsv'} (modrwkv eval --task custom --data)"]


def test_esc50_and_urbansound8k_metadata_find_their_audio_folders(tmp_path):
    """ESC-50's meta/esc50.csv names audio/ beside meta/; UrbanSound8K's metadata/UrbanSound8K.csv names clips
    kept in audio/fold1/ ... audio/fold10/: each row a labelled clip, answered by the class column named."""
    import numpy as np
    import soundfile

    from modrwkv.data.readers.webdataset import CLASS_PROMPTS

    esc = tmp_path / "ESC-50-master"
    (esc / "audio").mkdir(parents=True)
    (esc / "meta").mkdir()
    for name in ("1-100032-A-0.wav", "1-100038-A-14.wav"):
        soundfile.write(esc / "audio" / name, np.zeros(4410, dtype=np.float32), 44100)
    (esc / "meta" / "esc50.csv").write_text("filename,fold,target,category,esc10,src_file,take\n"
                                            "1-100032-A-0.wav,1,0,dog,True,100032,A\n"
                                            "1-100038-A-14.wav,1,14,chirping_birds,False,100038,A\n")
    urban = tmp_path / "UrbanSound8K"
    (urban / "metadata").mkdir(parents=True)
    clips = {"fold1": "101415-3-0-2.wav", "fold10": "100263-2-0-117.wav"}
    for fold, name in clips.items():
        (urban / "audio" / fold).mkdir(parents=True)
        soundfile.write(urban / "audio" / fold / name, np.zeros(4410, dtype=np.float32), 44100)
    (urban / "metadata" / "UrbanSound8K.csv").write_text(
        "slice_file_name,fsID,start,end,salience,fold,classID,class\n"
        "101415-3-0-2.wav,101415,1.0,5.0,1,1,3,dog_bark\n100263-2-0-117.wav,100263,58.5,62.5,1,10,2,children_playing\n")
    question = f"<audio>\n{CLASS_PROMPTS['audio']}"
    assert [(s.audios, s.messages[0].content, s.messages[1].content)
            for s in QAReader(esc / "meta" / "esc50.csv", label_column="category", on_error="raise")] == [
        ([str((esc / "audio" / "1-100032-A-0.wav").resolve())], question, "dog"),
        ([str((esc / "audio" / "1-100038-A-14.wav").resolve())], question, "chirping_birds")]
    assert [(s.audios, s.messages[1].content)
            for s in QAReader(urban / "metadata" / "UrbanSound8K.csv", label_column="class", on_error="raise")] == [
        ([str((urban / "audio" / "fold1" / clips["fold1"]).resolve())], "dog_bark"),
        ([str((urban / "audio" / "fold10" / clips["fold10"]).resolve())], "children_playing")]


def test_where_keeps_the_rows_of_the_folds_asked_in_training_init_and_eval(tmp_path, capsys, monkeypatch):
    """ESC-50's folds: training reads folds 1-4 (data.options.where, init --where), eval fold 5 (--where); a
    column the table has not, or values no row has, is one line naming what there is."""
    import json

    import numpy as np
    import soundfile

    root = tmp_path / "ESC-50-master"
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    for fold in range(1, 6):
        for category, target in (("dog", 0), ("rain", 10)):
            name = f"{fold}-10{target}032-A-{target}.wav"
            soundfile.write(root / "audio" / name, np.zeros(4410, dtype=np.float32), 44100)
            rows.append(f"{name},{fold},{target},{category},True,10{target}032,A")
    table = root / "meta" / "esc50.csv"
    table.write_text("\n".join(rows) + "\n")
    train = QAReader(table, label_column="category", where={"fold": [1, 2, 3, 4]}, on_error="raise")
    assert [Path(s.audios[0]).name[0] for s in train] == ["1", "1", "2", "2", "3", "3", "4", "4"]
    assert train.report.summary() == f"{table}: kept 8 of 8 records" and train.count_records() == 8
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--data", str(table), "--label-column", "category", "--where", "fold=1,2,3,4", "--yes",
                 "--device", "cpu", "--output", "esc.yaml"]) == 0
    assert f"--where fold=HELD_OUT_VALUES  # the rows training did not read" in capsys.readouterr().out
    cfg = yaml.safe_load(Path("esc.yaml").read_text())
    assert cfg["data"]["options"] == {"label_column": "category", "where": {"fold": ["1", "2", "3", "4"]}}
    assert len(list(build_reader(config_from_dict(cfg).data))) == 8
    held_out = custom_task(str(table), label_column="category", where={"fold": ["5"]}).load(table, "all")
    assert [(Path(s.audio[0]).name, s.reference["answers"]) for s in held_out] == [
        ("5-100032-A-0.wav", ["dog"]), ("5-1010032-A-10.wav", ["rain"])]
    with pytest.raises(DataError, match=re.escape(f"{table}: no row has fold in 6 (where (data.options.where)); its "
                                                  "values: fold: 1, 2, 3, 4, 5")):
        list(QAReader(table, label_column="category", where={"fold": 6}))
    with pytest.raises(DataError, match=re.escape(f"{table}: no column 'flod' to keep the rows by")):
        list(QAReader(table, label_column="category", where={"flod": 1}))
    # JSON Lines records and a metadata file's rows by a field; refused where rows have no columns (a tar, folders)
    png(tmp_path / "records" / "a.png", 1)
    records = tmp_path / "records" / "data.jsonl"
    records.write_text("".join(json.dumps({"image": "a.png", "question": "q?", "answer": str(k), "split": split}) + "\n"
                               for k, split in enumerate(("train", "test", "train"))))
    assert [s.messages[1].content for s in QAReader(records, where={"split": "train"})] == ["0", "2"]
    (tmp_path / "records" / "metadata.jsonl").write_text(json.dumps({"file_name": "a.png", "label": "cat", "fold": 2})
                                                         + "\n")
    assert [s.messages[1].content for s in QAReader(tmp_path / "records" / "metadata.jsonl", where={"fold": "2"})] == [
        "cat"]
    classes = tmp_path / "classes"
    png(classes / "cat" / "0.png", 1)
    png(classes / "dog" / "0.png", 2)
    with pytest.raises(DataError, match="a folder of class folders, or of media files with their text files, "
                                        "has none: leave it out"):
        list(QAReader(classes, where={"fold": 1}))


def test_a_table_of_image_urls_says_to_download_them_first(tmp_path, capsys):
    """LAION's and CC3M's url,caption tables name web addresses: refused once, naming img2dataset, rather than
    every row skipped as a missing file."""
    urls = tmp_path / "cc3m.csv"
    urls.write_text("url,caption\nhttps://example.com/a/0001.jpg,a dog on a beach\n"
                    "https://example.com/a/0002.jpg,a red car\n")
    expected = (f"{urls}: its column 'url' holds web addresses (https://example.com/a/0001.jpg), and training reads "
                "local files (nothing is downloaded while it runs): download them first, e.g. with img2dataset "
                "(--input_format csv --url_col url --caption_col CAPTION_COLUMN --output_format webdataset), and give "
                "its .tar shards, or give a column of local paths")
    assert init_error(capsys, urls, tmp_path) == [f"modrwkv init: error: {expected}"]
    with pytest.raises(DataError, match=re.escape(expected)):
        list(QAReader(urls))


def test_digits_in_the_kaggle_layout_read_back_as_the_split_sklearn_makes(tmp_path, monkeypatch, capsys):
    """bench/digits/prepare.py --layout kaggle writes APTOS's layout (train.csv of id_code,digit, ids of 12 hex
    digits without .png, train_images/<id>.png; test.csv, test_images/), which training's reader and eval read back
    to scikit-learn's digits of the worked example's split, pixel for pixel, each answered with its digit; the
    baseline printed is the JSONL layout's (96.7%, docs/custom-data.md)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    script = Path(__file__).resolve().parent.parent / "bench" / "digits" / "prepare.py"
    spec = importlib.util.spec_from_file_location("prepare", script)
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    out = tmp_path / "digits"
    monkeypatch.setattr(sys, "argv", ["prepare.py", "--layout", "kaggle", "--out", str(out)])
    prepare.main()
    assert capsys.readouterr().out.splitlines()[-1] == "logistic regression on the same pixels and split: 96.7% " \
                                                       "held-out accuracy"
    assert sorted(path.name for path in out.iterdir()) == ["baseline.json", "test.csv", "test_images", "train.csv",
                                                           "train_images"]
    digits = load_digits()
    split = dict(zip(("train", "test"), train_test_split(np.arange(len(digits.target)), test_size=0.2,
                                                          random_state=0, stratify=digits.target), strict=True))
    ids = {}
    for name, indices in split.items():
        header, *rows = (out / f"{name}.csv").read_text().splitlines()
        assert header == "id_code,digit" and len(rows) == len(indices)
        ids[name] = [row.split(",")[0] for row in rows]
        assert all(re.fullmatch("[0-9a-f]{12}", code) for code in ids[name])
        assert sorted(path.name for path in (out / f"{name}_images").iterdir()) == sorted(f"{c}.png" for c in ids[name])
    assert len(set(ids["train"] + ids["test"])) == len(digits.target)

    def grey_levels(paths: list) -> np.ndarray:  # the PNGs' 0-255 pixels back on sklearn's 16 levels
        return np.round(np.stack([np.asarray(Image.open(path), dtype=np.float64) for path in paths]) * 16 / 255)

    samples = list(QAReader(out / "train.csv", label_column="digit", on_error="raise"))
    assert [s.images for s in samples] == [[str((out / "train_images" / f"{c}.png").resolve())] for c in ids["train"]]
    assert [s.messages[1].content for s in samples] == [str(digits.target[i]) for i in split["train"]]
    assert np.array_equal(grey_levels([s.images[0] for s in samples]), digits.images[split["train"]])
    evaluated = custom_task(str(out / "test.csv"), label_column="digit").load(str(out / "test.csv"), "all")
    assert [(s.id, s.images, s.reference["answers"]) for s in evaluated] == [
        (code, [(out / "test_images" / f"{code}.png").resolve()], [str(digits.target[index])])
        for code, index in zip(ids["test"], split["test"], strict=True)]
    assert np.array_equal(grey_levels([s.images[0] for s in evaluated]), digits.images[split["test"]])
