"""Hugging Face's metadata layout (a folder of media files with a metadata.jsonl / .csv / .parquet whose `file_name`
column names them, as `load_dataset("imagefolder" / "audiofolder", data_dir=...)` reads it) as qa and ASR records:
the reader's samples, `modrwkv init`, training's data.train and `eval --task custom --data` on it, and each bad
row's and bad layout's message (docs/custom-data.md, "A folder with a metadata file")."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pyarrow
import pyarrow.parquet
import pytest
import yaml

from modrwkv.cli import main
from modrwkv.data.readers import FORMATS, AsrManifestReader, DataError, QAReader
from modrwkv.data.readers.base import expand_paths
from modrwkv.data.readers.detect import detect_format
from modrwkv.evaluation.tasks import BenchmarkFileError, CustomTask, custom_task
from modrwkv.training import config_from_dict
from modrwkv.training.data import build_reader
from test_class_folders import init_error, png, train_step_and_eval, wav

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CAPTION = "<image>\nWrite a short caption for the image."  # the documented default question, written out
TRANSCRIBE = "<audio>\nTranscribe the audio."
IMAGE_QUESTION = "<image>\nWhat is shown in the image?"  # a labelled sample's, as a class folder's file's
AUDIO_QUESTION = "<audio>\nWhat is said or heard in the audio?"


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def read(reader) -> list[tuple]:
    return [(s.source, [(m.role, m.content) for m in s.messages], s.images or s.audios, s.meta) for s in reader]


def test_an_imagefolder_reads_its_rows_as_captions_and_questions(tmp_path, monkeypatch):
    root = tmp_path / "pets"
    # subfolders that look like class folders: a folder with a metadata file is the metadata layout
    for name, shade in (("cat/1.png", 10), ("dog/2.png", 20), ("3.png", 30), ("4.png", 40), ("5.png", 50)):
        png(root / name, shade)
    png(root / "unlisted.png", 60)  # named by no row: not read, as datasets reads none
    meta = jsonl(root / "metadata.jsonl", [
        {"file_name": "cat/1.png", "text": "a dark cat", "width": 8},
        {"file_name": "dog/2.png", "caption": "a dog"},
        {"file_name": "3.png", "id": "q1", "question": "How bright is it?", "answer": "dim"},
        {"file_name": "4.png", "right_file_name": "5.png", "question": "Which is brighter?", "answer": "the right"},
    ])
    expected = [
        (f"{meta}:1", [("user", CAPTION), ("assistant", "a dark cat")], [str(root / "cat/1.png")],
         {"id": "cat/1.png", "captioned": True}),
        (f"{meta}:2", [("user", CAPTION), ("assistant", "a dog")], [str(root / "dog/2.png")],
         {"id": "dog/2.png", "captioned": True}),
        (f"{meta}:3", [("user", "<image>\nHow bright is it?"), ("assistant", "dim")], [str(root / "3.png")],
         {"id": "q1"}),
        (f"{meta}:4", [("user", "<image>\n<image>\nWhich is brighter?"), ("assistant", "the right")],
         [str(root / "4.png"), str(root / "5.png")], {}),
    ]
    assert expand_paths([str(root)], "--data") == [str(root)] and detect_format(root) == "qa"
    reader = QAReader([root])
    assert read(reader) == expected and reader.report.summary() == f"{root}: kept 4 of 4 records"
    assert reader.count_records() == 4
    # the metadata file given itself means the same; from another folder, relative paths find the same files
    monkeypatch.chdir(tmp_path)
    assert detect_format(Path("pets/metadata.jsonl")) == "qa"
    assert [s[1:] for s in read(QAReader(["pets/metadata.jsonl"]))] == [s[1:] for s in expected]
    # data.options.prompt asks captions another question, not the rows' own questions
    asked = read(QAReader([root], prompt="Describe it."))
    assert [s[1][0][1] for s in asked] == ["<image>\nDescribe it."] * 2 + [e[1][0][1] for e in expected[2:]]
    # metadata files in subfolders are read too, their file names relative to their own folder
    png(root / "more" / "6.png", 70)
    jsonl(root / "more" / "metadata.jsonl", [{"file_name": "6.png", "text": "grey"}])
    assert read(QAReader([root]))[4:] == [(f"{root}/more/metadata.jsonl:1", [("user", CAPTION), ("assistant", "grey")],
                                           [str(root / "more/6.png")], {"id": "more/6.png", "captioned": True})]


def test_a_row_with_a_conversation_is_that_record_with_its_media(tmp_path):
    root = tmp_path / "chat"
    png(root / "a.png", 1)
    turns = [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "a square"}]
    jsonl(root / "metadata.jsonl", [{"file_name": "a.png", "conversations": turns}])
    assert detect_format(root) == "llava"  # (the media are the conversation's `images`, its marker's)
    assert read(FORMATS["llava"].reader([root])) == [
        (f"{root}/metadata.jsonl:1", [("user", "<image>\nWhat is it?"), ("assistant", "a square")],
         [str(root / "a.png")], {})]


def test_audiofolder_csv_and_parquet_rows_are_asr_records(tmp_path):
    root = tmp_path / "speech"
    for name in ("a.wav", "clips/b.wav", "c.wav"):
        wav(root / name)
    # a quoted transcript holds its comma and its line break; the header's `duration` column holds numbers
    (root / "metadata.csv").write_text('file_name,transcription,duration\n'
                                       'a.wav,"yes, no\nmaybe",0.1\n'
                                       'clips/b.wav,hello,2\n'
                                       'c.wav,one,two,3\n')
    reader = AsrManifestReader([root])
    assert read(reader) == [
        (f"{root}/metadata.csv:2", [("user", TRANSCRIBE), ("assistant", "yes, no\nmaybe")], [str(root / "a.wav")],
         {"duration": 0.1}),
        (f"{root}/metadata.csv:4", [("user", TRANSCRIBE), ("assistant", "hello")], [str(root / "clips/b.wav")],
         {"duration": 2.0})]
    assert [str(e) for e in reader.report.examples] == [
        f"{root}/metadata.csv:5: 4 cells where the header (file_name, transcription, duration) has 3: a cell holding a "
        "comma or a line break is quoted (\"a, b\")"]
    assert detect_format(root) == "asr" and detect_format(root / "metadata.csv") == "asr"
    # a metadata.csv is the folder's rows, not a forecasting series
    assert isinstance(custom_task(str(root / "metadata.csv")), CustomTask)
    # the same rows as Parquet, named by row
    (root / "metadata.csv").unlink()
    pyarrow.parquet.write_table(pyarrow.table({"file_name": ["a.wav", "clips/b.wav"], "sentence": ["yes", "hi"]}),
                                root / "metadata.parquet")
    assert expand_paths([str(root)], "--data") == [str(root)]  # (no Parquet shard)
    assert read(AsrManifestReader([root])) == [
        (f"{root}/metadata.parquet:row 0", [("user", TRANSCRIBE), ("assistant", "yes")], [str(root / "a.wav")], {}),
        (f"{root}/metadata.parquet:row 1", [("user", TRANSCRIBE), ("assistant", "hi")], [str(root / "clips/b.wav")],
         {})]
    # eval asks them as the manifest's transcripts are asked, scored by WER
    samples = CustomTask().load(root, "all")
    assert [(s.id, s.prompt, s.audio, s.reference, s.transcribe) for s in samples] == [
        ("1", TRANSCRIBE, [root / "a.wav"], {"metric": "wer", "answers": ["yes"]}, True),
        ("2", TRANSCRIBE, [root / "clips/b.wav"], {"metric": "wer", "answers": ["hi"]}, True)]
    # audiofolder's `transcription` is a manifest's transcript too
    jsonl(tmp_path / "manifest.jsonl", [{"audio": "speech/a.wav", "transcription": "yes"}])
    assert detect_format(tmp_path / "manifest.jsonl") == "asr"
    assert [s[1] for s in read(AsrManifestReader([tmp_path / "manifest.jsonl"]))] == [[("user", TRANSCRIBE),
                                                                                      ("assistant", "yes")]]


def test_labelled_rows_and_cls_members_are_asked_what_class_folders_are_asked(tmp_path):
    """A metadata row with a `label` (and no caption, transcript or question) and a tar sample with a `.cls`
    member (ImageNet's shards) are labelled samples: asked the class-folder question of their kind of media,
    answered with the label (a number as written), scored by exact match, audio too (not by WER); a caption
    beside a label is the record's text; a label that is no class name or number is a bad record."""
    from test_webdataset_data import write_tar

    root = tmp_path / "labelled"
    png(root / "a.png", 10)
    png(root / "b.png", 20)
    png(root / "c.png", 30)
    (root / "metadata.csv").write_text("file_name,label,caption\na.png,cat,\nb.png,7,\nc.png,dog,a dog\n")
    assert detect_format(root) == "qa"
    assert read(QAReader([root])) == [
        (f"{root}/metadata.csv:2", [("user", IMAGE_QUESTION), ("assistant", "cat")], [str(root / "a.png")],
         {"id": "a.png", "captioned": True}),
        (f"{root}/metadata.csv:3", [("user", IMAGE_QUESTION), ("assistant", "7")], [str(root / "b.png")],
         {"id": "b.png", "captioned": True}),
        (f"{root}/metadata.csv:4", [("user", CAPTION), ("assistant", "a dog")], [str(root / "c.png")],
         {"id": "c.png", "captioned": True})]
    sounds = tmp_path / "sounds"
    wav(sounds / "x.wav")
    jsonl(sounds / "metadata.jsonl", [{"file_name": "x.wav", "label": "rain"}, {"file_name": "x.wav", "label": [1]}])
    reader = QAReader([sounds], max_examples=5)
    assert read(reader) == [(f"{sounds}/metadata.jsonl:1", [("user", AUDIO_QUESTION), ("assistant", "rain")],
                             [str(sounds / "x.wav")], {"id": "x.wav", "captioned": True})]
    assert [str(e) for e in reader.report.examples] == [
        f"{sounds}/metadata.jsonl:2: the label must be a class name or number, got [1]"]
    jsonl(sounds / "metadata.jsonl", [{"file_name": "x.wav", "label": "rain"}])  # (eval refuses a bad record)
    samples = CustomTask().load(sounds, "all")
    assert [(s.prompt, s.reference) for s in samples] == [(AUDIO_QUESTION, {"metric": "exact", "answers": ["rain"]})]
    # ImageNet's WebDataset shards: key.jpg + key.cls (the class index as text)
    shard = tmp_path / "imagenet-000000.tar"
    write_tar(shard, [("n01.png", (root / "a.png").read_bytes()), ("n01.cls", b"0\n"),
                      ("n02.png", (root / "b.png").read_bytes()), ("n02.cls", b"207"),
                      ("n02.json", b'{"width": 8}')])
    assert [([(m.role, m.content) for m in s.messages], [image.name for image in s.images], s.meta)
            for s in QAReader([shard])] == [
        ([("user", IMAGE_QUESTION), ("assistant", "0")], ["n01.png"], {"id": "n01", "captioned": True}),
        ([("user", IMAGE_QUESTION), ("assistant", "207")], ["n02.png"], {"id": "n02", "captioned": True})]
    assert [s.reference for s in CustomTask().load(shard, "all")] == [{"metric": "exact", "answers": ["0"]},
                                                                     {"metric": "exact", "answers": ["207"]}]


def test_init_train_and_eval_on_a_metadata_folder(tmp_path, capsys, monkeypatch):
    data = tmp_path / "data" / "shapes"
    captions = {"1.png": "black", "2.png": "dark grey", "3.png": "grey", "4.png": "white"}
    for index, name in enumerate(captions):
        png(data / "train" / "images" / name, 60 * index)
    jsonl(data / "train" / "metadata.jsonl", [{"file_name": f"images/{n}", "text": t} for n, t in captions.items()])
    png(data / "test" / "t1.png", 0)
    png(data / "test" / "t2.png", 250)
    (data / "test" / "metadata.csv").write_text('file_name,text\nt1.png,"black, dark"\nt2.png,white\n')
    config_path = tmp_path / "shapes.yaml"
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--data", "data/shapes/train", "--yes", "--device", "cpu", "--output", str(config_path)]) == 0
    out = capsys.readouterr().out
    assert ("data/shapes/train: qa format, 4 usable samples, inputs: image (data/shapes/train: kept 4 of 4 "
            "records)") in out
    assert "evaluate:  modrwkv eval --task custom --model runs/shapes/final --data data/shapes/test\n" in out
    cfg = yaml.safe_load(config_path.read_text())
    assert cfg["data"] == {"format": "qa", "train": ["data/shapes/train"]}
    reader = build_reader(config_from_dict(cfg).data)
    assert [(s.messages[1].content, s.images) for s in reader] == [
        (caption, [str(data / "train" / "images" / name)]) for name, caption in captions.items()]
    # eval asks the test split's rows (a metadata.csv) what training asked, scored against their captions
    predictions = train_step_and_eval(cfg, tmp_path, "data/shapes/test")
    assert [(p["id"], p["prompt"], p["reference"]["answers"]) for p in predictions] == [
        ("t1.png", CAPTION, ["black, dark"]), ("t2.png", CAPTION, ["white"])]
    folder, file = CustomTask().load(data / "test", "all"), CustomTask().load(data / "test" / "metadata.csv", "all")
    assert [(s.id, s.prompt, s.images, s.reference) for s in folder] == \
        [(s.id, s.prompt, s.images, s.reference) for s in file]
    # with several folders, a row is known by its folder too
    assert [s.id for s in CustomTask().load([data / "train", data / "test"], "all")] == [
        *(f"train:images/{name}" for name in captions), "test:t1.png", "test:t2.png"]
    # init on the metadata file itself: the same records, the run named and the held-out split found as the folder's
    capsys.readouterr()
    assert main(["init", "--data", "data/shapes/train/metadata.jsonl", "--yes", "--device", "cpu", "--output",
                 str(tmp_path / "file.yaml")]) == 0
    out = capsys.readouterr().out
    assert "data/shapes/train/metadata.jsonl: qa format, 4 usable samples, inputs: image" in out
    assert "evaluate:  modrwkv eval --task custom --model runs/shapes/final --data data/shapes/test\n" in out
    # the folder holding both splits is refused with the folders to give
    assert main(["init", "--data", "data/shapes", "--yes", "--device", "cpu", "--output",
                 str(tmp_path / "x.yaml")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "modrwkv init: error: data/shapes: holds the splits test/, train/, each with its metadata file: give one "
        "split, data/shapes/train to train on (modrwkv init --data, data.train); evaluate on data/shapes/test "
        "(modrwkv eval --task custom --data)"]


def test_bad_rows_are_bad_records_and_bad_layouts_one_line(tmp_path, capsys, caplog):
    root = tmp_path / "bad"
    png(root / "ok.png", 1)
    png(root / "plain.png", 2)
    (root / "notes.txt").write_text("not media")
    meta = jsonl(root / "metadata.jsonl", [
        {"file_name": "ok.png", "text": "fine"},
        {"file_name": "missing.png", "text": "gone"},
        {"file_name": "plain.png", "width": 8},
        {"file_name": "notes.txt", "text": "words"},
        {"file_name": "ok.png", "image": "plain.png", "question": "Which?", "answer": "this"},
        {"image": "ok.png", "text": "no file name"},
    ])
    reader = QAReader([root], max_examples=10)
    with caplog.at_level(logging.WARNING):
        assert [s.source for s in reader] == [f"{meta}:1"]
    assert reader.report.summary() == (f"{root}: kept 1 of 6 records; skipped 5 (missing_field: 2, missing_media: 1, "
                                       "unreadable_media: 1, wrong_type: 1)")
    assert [str(e) for e in reader.report.examples] == [
        f"{meta}:2: media file not found: {root}/missing.png",
        f"{meta}:3: no text: no column with a caption ('text' or 'caption'), no 'label' and no 'question', "
        "'conversations', 'messages' (the row's columns: file_name, width)",
        f"{meta}:4: file_name 'notes.txt' is no image, audio or video file by its extension (.txt; read: .jpg, .jpeg, "
        ".png, .webp, .bmp, .gif, .tif, .tiff, .flac, .wav, .mp3, .ogg, .opus, .m4a, .mp4, .webm, .mkv, .avi, .mov)",
        f"{meta}:5: the row has 'image' beside file_name 'ok.png', which is its image: leave 'image' out of "
        "metadata.jsonl",
        f"{meta}:6: no 'file_name' (the row's fields: image, text): a metadata file names each row's media file in "
        "'file_name' (or '<name>_file_name', 'file_names'), relative to its folder, as Hugging Face's imagefolder "
        "reads it; see docs/custom-data.md"]
    assert f"skipping {meta}:2: media file not found" in caplog.text  # (logged as a bad JSONL line is)
    # audio without a transcript or caption column names the ones read (a `caption` is a sound's: AudioCaps')
    wav(root / "clip" / "a.wav")
    jsonl(root / "clip" / "metadata.jsonl", [{"file_name": "a.wav", "notes": "rain"}])
    with pytest.raises(DataError, match=f"^{root}/clip/metadata.jsonl:1: no text: no column with a transcript "
                                        r"\('text', 'transcript', 'sentence', 'transcription'\) or a caption "
                                        r"\('caption'\), no 'label' and no"):
        list(AsrManifestReader([root / "clip"], on_error="raise"))
    # a folder none of whose first rows makes a record: its format is not told, and the first row says why
    untold = tmp_path / "untold"
    png(untold / "a.png", 1)
    jsonl(untold / "metadata.jsonl", [{"file_name": "a.png", "width": 1}])
    assert init_error(capsys, untold, tmp_path) == [
        f"modrwkv init: error: {untold}: no usable record among the first 100 (the first: {untold}/metadata.jsonl:1: "
        "no text: no column with a caption ('text' or 'caption'), no 'label' and no 'question', 'conversations', "
        "'messages' (the row's columns: file_name, width))"]
    # a first row without a file_name column: the file's columns, one line
    columns = tmp_path / "columns"
    png(columns / "a.png", 1)
    jsonl(columns / "metadata.jsonl", [{"image": "a.png", "text": "a"}])
    assert init_error(capsys, columns, tmp_path) == [
        f"modrwkv init: error: {columns}/metadata.jsonl: no 'file_name' column (its columns: image, text): a metadata "
        "file names each row's media file in 'file_name' (or '<name>_file_name', 'file_names'), relative to its "
        "folder, as Hugging Face's imagefolder reads it; see docs/custom-data.md"]
    # metadata files of two formats side by side
    (columns / "metadata.jsonl").write_text(json.dumps({"file_name": "a.png", "text": "a"}) + "\n")
    (columns / "metadata.csv").write_text("file_name,text\na.png,a\n")
    assert init_error(capsys, columns, tmp_path) == [
        f"modrwkv init: error: {columns}: holds metadata files in 2 formats ({columns}/metadata.csv and "
        f"{columns}/metadata.jsonl): a folder's metadata files are of one format, as Hugging Face's datasets reads "
        "them; keep one (convert the others)"]
    # eval names them alike, and a CSV quote left open is the file's line
    assert main(["eval", "--model", str(tmp_path), "--task", "custom", "--data", str(columns), "--output",
                 str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith(f"modrwkv eval: error: {columns}: holds metadata files "
                                                              "in 2 formats")
    (columns / "metadata.jsonl").unlink()
    (columns / "metadata.csv").write_text('file_name,text\na.png,"open\n')
    assert init_error(capsys, columns, tmp_path) == [
        f"modrwkv init: error: {columns}/metadata.csv:2: not a readable CSV file: unexpected end of data in the row "
        "that starts on this line (a quoted cell ends with a quote, and a quote inside one is written \"\")"]


def test_a_csv_naming_media_files_is_read_as_its_metadata_csv_would_be(tmp_path, capsys):
    """A .csv of image,label rows (as Kaggle ships them) is a table of media rows: its samples are those of the same
    rows as a metadata.csv with the column named 'file_name' (tests/test_media_tables.py has the layouts)."""
    for name, shade in (("a.png", 1), ("b.png", 2), ("c.png", 3), ("d.png", 4)):
        png(tmp_path / "pets" / name, shade)
    (tmp_path / "pets" / "train.csv").write_text("image,label\na.png,cat\nb.png,dog\nc.png,cat\nd.png,dog\n")
    as_table = [(s.images, s.messages[0].content, s.messages[1].content, s.meta)
                for s in QAReader([tmp_path / "pets" / "train.csv"])]
    text = (tmp_path / "pets" / "train.csv").read_text().replace("image,label", "file_name,label")
    (tmp_path / "pets" / "metadata.csv").write_text(text)
    assert as_table == [(s.images, s.messages[0].content, s.messages[1].content, s.meta)
                        for s in QAReader([tmp_path / "pets" / "metadata.csv"])]
    assert [content for _, _, content, _ in as_table] == ["cat", "dog", "cat", "dog"]
    # a series CSV's error is as it was: no media column, no hint
    (tmp_path / "words.csv").write_text("name,colour\nfox,red\n")
    assert init_error(capsys, tmp_path / "words.csv", tmp_path) == [
        f"modrwkv init: error: {tmp_path}/words.csv: no numeric column among ['name', 'colour']"]


def test_csv_cells_are_text_as_written_but_a_duration(tmp_path):
    """Spoken digits' transcripts "7" and "3", a label "07" and an id "001" are read as written (typed as pandas
    types a column, they were ints the ASR reader refused, "7" and "1"); a duration is a number."""
    digits = tmp_path / "digits"
    wav(digits / "a.wav")
    wav(digits / "b.wav")
    (digits / "metadata.csv").write_text("file_name,transcription,duration,id\na.wav,7,1.5,001\nb.wav,3,2,1\n")
    assert read(AsrManifestReader([digits])) == [
        (f"{digits}/metadata.csv:2", [("user", TRANSCRIBE), ("assistant", "7")], [str(digits / "a.wav")],
         {"duration": 1.5, "id": "001"}),
        (f"{digits}/metadata.csv:3", [("user", TRANSCRIBE), ("assistant", "3")], [str(digits / "b.wav")],
         {"duration": 2.0, "id": "1"})]
    (digits / "metadata.csv").write_text("file_name,label\na.wav,07\nb.wav,1.50\n")
    assert [s.messages[1].content for s in QAReader([digits])] == ["07", "1.50"]


def test_rows_that_share_a_file_need_ids_of_their_own_in_eval(tmp_path):
    """Several captions of one image, a row each: training reads every row, eval one sample of the image with all
    of them its references; labels of one file, a row each, are known by the file unless they have an `id`, so rows
    sharing one are named with what to add (not 'duplicate sample ids')."""
    root = tmp_path / "captions"
    png(root / "a.png", 1)
    meta = jsonl(root / "metadata.jsonl", [{"file_name": "a.png", "text": "a dark square"},
                                           {"file_name": "a.png", "text": "black"}])
    assert [s.messages[1].content for s in QAReader([root])] == ["a dark square", "black"]
    assert [(s.id, s.reference["answers"]) for s in CustomTask().load(root, "all")] == [
        ("a.png", ["a dark square", "black"])]
    jsonl(root / "metadata.jsonl", [{"file_name": "a.png", "label": "dark"}, {"file_name": "a.png", "label": "black"}])
    with pytest.raises(BenchmarkFileError, match=re.escape(
            f"{meta}:2: the id 'a.png' of {meta}:1 too (a row is known by its 'id', else its file): give each row an "
            "'id' of its own (an 'id' column) to evaluate rows that share a file")):
        CustomTask().load(root, "all")
    jsonl(root / "metadata.jsonl", [{"file_name": "a.png", "label": "dark", "id": "a-1"},
                                    {"file_name": "a.png", "label": "black", "id": "a-2"}])
    assert [s.id for s in CustomTask().load(root, "all")] == ["a-1", "a-2"]


def test_a_metadata_file_names_the_run_after_its_folder_from_anywhere(tmp_path, monkeypatch):
    from modrwkv.data.readers.base import data_name

    jsonl(tmp_path / "pets" / "train" / "metadata.jsonl", [])
    monkeypatch.chdir(tmp_path)
    assert data_name("pets/train/metadata.jsonl") == "pets"
    monkeypatch.chdir(tmp_path / "pets" / "train")
    assert data_name("metadata.jsonl") == "pets"  # (from its own folder: the folder's name, not its parent's)


def test_a_metadata_file_without_rows_says_so(tmp_path, capsys):
    empty = tmp_path / "empty"
    png(empty / "a.png", 1)
    (empty / "metadata.csv").write_text("file_name,text\n")
    assert init_error(capsys, empty, tmp_path) == [
        f"modrwkv init: error: {empty}: no rows (its metadata files hold none: a row per media file, naming it in "
        "'file_name')"]


def test_a_wildcard_over_a_folder_of_media_names_the_media_file(tmp_path, capsys):
    """'caps/*' expands to the folder's images as well as its metadata file: the image is named as what it is
    (it was 'not UTF-8 text: byte 0x89'), with what to give."""
    root = tmp_path / "caps"
    png(root / "a.png", 1)
    jsonl(root / "metadata.jsonl", [{"file_name": "a.png", "text": "dark"}])
    assert init_error(capsys, Path(f"{root}/*"), tmp_path) == [
        f"modrwkv init: error: {root}/a.png: an image file, not a data file: give the folder it is in (a folder of "
        "class folders, or one with a metadata.jsonl naming its files), or a file of records naming it "
        "(docs/custom-data.md)"]
    with pytest.raises(DataError, match=f"^{root}/a.png: an image file, not a data file"):
        list(QAReader([root / "a.png"]))


def test_a_linked_subfolder_is_read_as_the_folder_it_links_to_once(tmp_path):
    root = tmp_path / "pets"
    png(root / "a.png", 1)
    jsonl(root / "metadata.jsonl", [{"file_name": "a.png", "text": "dark"}])
    png(tmp_path / "elsewhere" / "b.png", 2)
    jsonl(tmp_path / "elsewhere" / "metadata.jsonl", [{"file_name": "b.png", "text": "darker"}])
    (root / "more").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere" / "loop").symlink_to(root, target_is_directory=True)  # back up the tree
    assert [s.messages[1].content for s in QAReader([root])] == ["dark", "darker"]


def test_series_files_by_extension_but_a_metadata_csv(tmp_path):
    """One rule says which files are a time series (`is_series_file`): .csv, .tsv (the series reader reads it tab
    separated; detection tried it as JSON) and .npz, but a Hugging Face metadata.csv."""
    from modrwkv.data.readers import TimeSeriesReader
    from modrwkv.data.readers.base import is_series_file

    (tmp_path / "load.tsv").write_text("hour\tload\n" + "".join(f"{i}\t{i % 24}\n" for i in range(100)))
    assert detect_format(tmp_path / "load.tsv") == "series"
    assert [is_series_file(Path(name)) for name in ("a.csv", "b.TSV", "c.npz", "metadata.csv", "d.jsonl")] == [
        True, True, True, False, False]
    windows = list(TimeSeriesReader([tmp_path / "load.tsv"], lookback=8, horizon=2))
    assert windows and windows[0].series[0].shape[0] == 8


def test_a_media_folder_given_for_a_folder_of_its_own_media_is_said_not_to_apply(tmp_path, caplog):
    """data.media_folder / eval's --media-folder name where a records file's media are; a metadata folder (or a
    folder of class folders) holds its own, so the setting is left aside with a warning, not in silence."""
    root = tmp_path / "caps"
    png(root / "a.png", 1)
    jsonl(root / "metadata.jsonl", [{"file_name": "a.png", "text": "dark"}])
    png(root / "b.png", 2)  # (not named by a row)
    jsonl(tmp_path / "records.jsonl", [{"image": "b.png", "question": "?", "answer": "x"}])
    with caplog.at_level(logging.WARNING):
        assert [s.messages[1].content for s in QAReader([root, tmp_path / "records.jsonl"], media_folder=root)] == [
            "dark", "x"]
        samples = CustomTask(media_folder=root).load(root / "metadata.jsonl", "all")
        assert [s.reference["answers"] for s in samples] == [["dark"]]
    warned = [r.getMessage() for r in caplog.records if "does not apply" in r.getMessage()]
    assert warned == [
        f"{path}: the media folder {root} does not apply to it: a folder of class folders or with a metadata file "
        "holds its media itself (a row's file_name is relative to its metadata file's folder)"
        for path in (root, root / "metadata.jsonl")]  # (the records file, whose media are in it: no warning)
