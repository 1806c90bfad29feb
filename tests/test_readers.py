"""Readers: exact outputs per format, the skip/raise error policy, and the time-series helpers."""

from __future__ import annotations

import base64
import io
import json
import logging
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import soundfile
from PIL import Image

from modrwkv.data.readers import (
    DEFAULT_ASR_PROMPT,
    REASONS,
    AsrManifestReader,
    DataError,
    LlavaReader,
    OpenAIChatReader,
    QAReader,
    SharegptReader,
    TimeSeriesReader,
    format_forecast,
    from_records,
    openai_to_sample,
    parse_forecast,
)
from modrwkv.data.readers.base import MixedFormats, expand_paths, is_series_file
from modrwkv.data.readers.detect import detect_format
from modrwkv.data.readers.series import SHORTER, instance_stats, read_forecast
from modrwkv.data.sample import Message, Sample
from modrwkv.encoders import build_encoder

LOGGER = "modrwkv.data.readers"


# ---------------------------------------------------------------------------------------- fixtures
@pytest.fixture
def media(tmp_path: Path) -> Path:
    """A folder with two real images, a corrupt one and a real wav."""
    folder = tmp_path / "media"
    (folder / "sub").mkdir(parents=True)
    Image.new("RGB", (8, 6), (255, 0, 0)).save(folder / "red.png")
    Image.new("RGB", (5, 5), (0, 0, 255)).save(folder / "sub" / "blue.jpg")
    (folder / "broken.png").write_bytes(b"not an image at all")
    wave = 0.1 * np.sin(2 * np.pi * 440 * np.arange(1600) / 16000)
    soundfile.write(folder / "tone.wav", wave.astype(np.float32), 16000)
    (folder / "broken.wav").write_bytes(b"RIFF garbage")
    return folder


def write_jsonl(path: Path, records: list) -> Path:
    """One record per line; a str record is written verbatim (to plant broken lines)."""
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def strip_source(samples: list[Sample]) -> list[Sample]:
    return [Sample(s.messages, s.images, s.audios, s.series, "", s.meta) for s in samples]


def conv(*turns: tuple[str, str]) -> list[dict]:
    return [{"from": who, "value": text} for who, text in turns]


LLAVA_GOOD = [
    {"id": "one", "image": "red.png", "conversations": conv(("human", "<image>\nWhat colour?"), ("gpt", "Red."))},
    {
        "id": "two",
        "images": ["red.png", "sub/blue.jpg"],
        "conversations": conv(("human", "<image> vs <image>: differences?"), ("gpt", "Colour.")),
    },
    {"id": "three", "image": "sub/blue.jpg", "conversations": conv(("human", "Describe."), ("gpt", "Blue."))},
    {"id": "four", "conversations": conv(("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello"))},
]


# ------------------------------------------------------------------------------------------- LLaVA
def test_llava_jsonl_exact(media: Path, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "llava.jsonl", LLAVA_GOOD)
    reader = LlavaReader(path, image_folder=media)
    samples = list(reader)
    red, blue = str(media / "red.png"), str(media / "sub" / "blue.jpg")
    assert samples == [
        Sample(
            [Message("user", "<image>\nWhat colour?"), Message("assistant", "Red.")],
            images=[red],
            source=f"{path}:1",
            meta={"id": "one"},
        ),
        Sample(
            [Message("user", "<image> vs <image>: differences?"), Message("assistant", "Colour.")],
            images=[red, blue],
            source=f"{path}:2",
            meta={"id": "two"},
        ),
        Sample(  # markers inserted at the start of the first user turn (LLaVA's convention)
            [Message("user", "<image>\nDescribe."), Message("assistant", "Blue.")],
            images=[blue],
            source=f"{path}:3",
            meta={"id": "three"},
        ),
        Sample(
            [Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello")],
            source=f"{path}:4",
            meta={"id": "four"},
        ),
    ]
    assert (reader.report.total, reader.report.kept, reader.report.num_skipped) == (4, 4, 0)


# Hand-written in LLaMA-Factory's documented layouts (its data/README.md): the default sharegpt columns
# and tags with a system column, its "openai" variant with role/content tags, media lists with <image> /
# <audio> / <video> tags, and a renamed messages column with custom tags mapped in dataset_info.json.
SHAREGPT_FILE = """[
  {
    "conversations": [
      {"from": "human", "value": "<image>What colour is this?"},
      {"from": "gpt", "value": "Red."},
      {"from": "human", "value": "And this one?<image>"},
      {"from": "gpt", "value": "Blue."}
    ],
    "system": "Answer with one word.",
    "images": ["red.png", "sub/blue.jpg"]
  },
  {
    "messages": [
      {"role": "system", "content": "You transcribe."},
      {"role": "user", "content": "<audio>What is this?"},
      {"role": "assistant", "content": "A tone."}
    ],
    "audios": ["tone.wav"]
  },
  {
    "conversations": [
      {"from": "human", "value": "Which is it?"},
      {"from": "function_call", "value": "{\\"name\\": \\"look\\"}"},
      {"from": "observation", "value": "red"},
      {"from": "gpt", "value": "Red."}
    ],
    "tools": "[{\\"name\\": \\"look\\"}]"
  },
  {
    "conversations": [{"from": "human", "value": "<image><image>Same?"}, {"from": "gpt", "value": "No."}],
    "images": ["red.png"]
  }
]
"""


def test_sharegpt_reads_llama_factory_files_exactly(media: Path, tmp_path: Path) -> None:
    path = media / "lf.json"
    path.write_text(SHAREGPT_FILE)
    reader = SharegptReader(path)
    samples = list(reader)
    red, blue, tone = str(media / "red.png"), str(media / "sub" / "blue.jpg"), str(media / "tone.wav")
    assert samples == [
        Sample([Message("system", "Answer with one word."), Message("user", "<image>What colour is this?"),
                Message("assistant", "Red."), Message("user", "And this one?<image>"), Message("assistant", "Blue.")],
               images=[red, blue], source=f"{path}:[0]"),
        Sample([Message("system", "You transcribe."), Message("user", "<audio>What is this?"),
                Message("assistant", "A tone.")], audios=[tone], source=f"{path}:[1]"),
    ]
    assert reader.report.skipped == {"unsupported_part": 1, "marker_mismatch": 1}
    assert [str(e) for e in reader.report.examples] == [
        f"{path}:[2]: the record describes tools; tool use (function calls and their results) is not supported, "
        "so it is not trained on",
        f"{path}:[3]: 2 <image> marker(s) in the text but 1 image(s)"]

    # A renamed messages column and custom tags, mapped in dataset_info.json beside the file (LLaMA-Factory's way).
    custom = media / "custom.jsonl"
    custom.write_text(json.dumps({"dialog": [{"speaker": "asker", "text": "<image>Colour?"},
                                             {"speaker": "bot", "text": "Red."}], "pics": ["red.png"]}) + "\n")
    (media / "dataset_info.json").write_text(json.dumps({
        "lf_demo": {"file_name": "lf.json", "formatting": "sharegpt"},
        "custom_demo": {"file_name": "custom.jsonl", "formatting": "sharegpt",
                        "columns": {"messages": "dialog", "images": "pics"},
                        "tags": {"role_tag": "speaker", "content_tag": "text", "user_tag": "asker",
                                 "assistant_tag": "bot"}}}))
    assert list(SharegptReader(custom)) == [Sample([Message("user", "<image>Colour?"), Message("assistant", "Red.")],
                                                   images=[red], source=f"{custom}:1")]
    with pytest.raises(DataError, match=r"custom.jsonl:1: no 'conversations' list \(the messages column"):
        list(SharegptReader(custom, columns={}, on_error="raise"))  # an explicit mapping replaces dataset_info.json
    from modrwkv.data.readers.detect import detect_format

    assert detect_format(custom) == "sharegpt"  # its fields alone do not say, dataset_info.json does


def test_llama_factory_files_are_detected_and_named(media: Path, tmp_path: Path, capsys) -> None:
    """init detects the format; the OpenAI reader, given such a file, says what it is."""
    from modrwkv.cli import main

    path = media / "lf.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in json.loads(SHAREGPT_FILE)[:2]))
    assert main(["init", "--data", str(path), "--yes", "--output", str(tmp_path / "c.yaml"), "--size", "0.4b",
                 "--device", "gpu"]) == 0
    assert f"{path}: sharegpt format, 2 usable samples, inputs: audio, image" in capsys.readouterr().out
    messages_only = media / "lf-messages.jsonl"
    messages_only.write_text(path.read_text().splitlines()[1] + "\n")
    with pytest.raises(DataError) as info:
        list(OpenAIChatReader(messages_only, on_error="raise"))
    assert str(info.value) == (
        f"{messages_only}:1: 1 audio(s) of the record's 'audios' list are not referenced; it looks like "
        "LLaMA-Factory ShareGPT data (format: sharegpt), but this reads OpenAI chat records (docs/custom-data.md)")


def test_llava_json_equals_jsonl(media: Path, tmp_path: Path) -> None:
    jsonl = write_jsonl(tmp_path / "a.jsonl", LLAVA_GOOD)
    array = tmp_path / "a.json"
    array.write_text(json.dumps(LLAVA_GOOD, indent=2))
    from_jsonl = list(LlavaReader(jsonl, image_folder=media))
    from_json = list(LlavaReader(array, image_folder=media))
    assert strip_source(from_json) == strip_source(from_jsonl)
    assert [s.source for s in from_json] == [f"{array}:[{i}]" for i in range(4)]


def test_llava_default_folder_is_data_file_folder(media: Path) -> None:
    path = write_jsonl(media / "data.jsonl", LLAVA_GOOD[:1])
    (sample,) = LlavaReader(path)
    assert sample.images == [str(media / "red.png")]


def test_llava_several_files_and_multiple_image_marker_insertion(media: Path, tmp_path: Path) -> None:
    first = write_jsonl(tmp_path / "1.jsonl", LLAVA_GOOD[:1])
    record = {"images": ["red.png", "red.png"], "conversations": conv(("gpt", "hi"), ("human", "Compare."))}
    second = write_jsonl(tmp_path / "2.jsonl", [record])
    samples = list(LlavaReader([first, second], image_folder=media))
    assert [s.source for s in samples] == [f"{first}:1", f"{second}:1"]
    assert samples[1].messages[1].content == "<image>\n<image>\nCompare."


def test_media_without_markers_are_one_line_each_images_videos_audio_series_in_readers_and_prompts(
        media: Path) -> None:
    """One layout for media a text does not place, written by hand: each marker on its own line, images,
    then videos, audio, series, before the question; the readers train on it and the prompt builder asks
    it (the qa reader used to put a video after audio and series, the builder "<series>\\n<image><image>")."""
    from modrwkv.data.readers.llava import llava_to_sample
    from modrwkv.data.readers.qa import qa_to_sample
    from modrwkv.data.sample import unmarked_markers
    from modrwkv.inference.prompt import build_sample

    assert unmarked_markers({"series": 1, "audio": 1, "video": 1, "image": 2}) == (
        "<image>\n<image>\n<video>\n<audio>\n<series>")
    assert unmarked_markers({"image": 0, "audio": 0}) == ""
    with pytest.raises(ValueError, match="unknown modality 'images'; expected one of image, video, audio, series"):
        unmarked_markers({"images": 1})
    (media / "clip.mp4").write_bytes(b"a video")  # never decoded here
    record = {"series": [1.0, 2.0], "audio": "tone.wav", "video": "clip.mp4", "image": ["red.png", "sub/blue.jpg"],
              "question": "Do they agree?", "answer": "yes"}
    qa = qa_to_sample(record, media_folder=media)
    assert qa.messages[0].content == "<image>\n<image>\n<video>\n<audio>\n<series>\nDo they agree?"
    assert qa_to_sample({"image": "red.png", "question": "Colour?", "answer": "red"},
                        media_folder=media).messages[0].content == "<image>\nColour?"  # one medium: as ever
    llava = llava_to_sample({"audio": "tone.wav", "video": "clip.mp4", "image": "red.png",
                             "conversations": conv(("human", "Do they agree?"), ("gpt", "yes"))}, image_folder=media)
    assert llava.messages[0].content == "<image>\n<video>\n<audio>\nDo they agree?"
    built = build_sample("Do they agree?", images=["a.png", "b.png"], series=[np.zeros(4)])
    assert built.messages[0].content == "<image>\n<image>\n<series>\nDo they agree?"
    built = build_sample("Do they agree?", images=["a.png", "b.png"], series=[np.zeros(4)],
                         media_layout="text_media_text")
    assert built.messages[0].content == "Do they agree?\n<image>\n<image>\n<series>\nDo they agree?"


def test_llava_verify_media_decodes_only_when_asked(media: Path, tmp_path: Path) -> None:
    record = {"image": "broken.png", "conversations": conv(("human", "<image>"), ("gpt", "?"))}
    path = write_jsonl(tmp_path / "d.jsonl", [record, LLAVA_GOOD[0]])
    assert len(list(LlavaReader(path, image_folder=media))) == 2  # existence only: cheap
    reader = LlavaReader(path, image_folder=media, verify_media=True)
    assert [s.meta["id"] for s in reader] == ["one"]
    assert reader.report.skipped == {"unreadable_media": 1}


BAD_LLAVA = {
    "missing_media": {"image": "nope.png", "conversations": conv(("human", "<image>"), ("gpt", "x"))},
    "bad_json": '{"conversations": [',
    "empty_conversation": {"conversations": []},
    "missing_field": {"image": "red.png"},
    "wrong_type": {"conversations": conv(("human", 42), ("gpt", "x"))},
    "marker_mismatch": {"image": "red.png", "conversations": conv(("human", "<image><image>"), ("gpt", "x"))},
    "unknown_role": {"conversations": conv(("robot", "beep"), ("gpt", "x"))},
}


@pytest.mark.parametrize("reason", sorted(BAD_LLAVA))
def test_llava_bad_record_skip(reason: str, media: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [LLAVA_GOOD[0], BAD_LLAVA[reason], LLAVA_GOOD[3]])
    reader = LlavaReader(path, image_folder=media)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        samples = list(reader)
    assert [s.meta["id"] for s in samples] == ["one", "four"]
    report = reader.report
    assert (report.total, report.kept, report.skipped) == (3, 2, {reason: 1})
    assert [(e.source, e.reason) for e in report.examples] == [(f"{path}:2", reason)]
    skip_logs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipping")]
    assert len(skip_logs) == 1 and f"{path}:2" in skip_logs[0] and reason in skip_logs[0]
    assert "kept 2 of 3 records" in caplog.records[-1].getMessage()


@pytest.mark.parametrize("reason", sorted(BAD_LLAVA))
def test_llava_bad_record_raise(reason: str, media: Path, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [LLAVA_GOOD[0], BAD_LLAVA[reason]])
    reader = iter(LlavaReader(path, image_folder=media, on_error="raise"))
    assert next(reader).meta["id"] == "one"
    with pytest.raises(DataError, match=f"^{path}:2: ") as info:
        next(reader)
    assert (info.value.source, info.value.reason) == (f"{path}:2", reason)
    assert isinstance(info.value, ValueError)


def test_an_empty_media_path_is_named_as_such(media: Path, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"image": "", "conversations": conv(("human", "q"), ("gpt", "a"))}])
    with pytest.raises(DataError, match=f'^{path}:1: empty media path ""$'):
        list(LlavaReader(path, image_folder=media, on_error="raise"))


def test_a_web_address_is_refused_as_one_not_as_a_missing_file(media: Path, tmp_path: Path) -> None:
    """Read as a path, "http://x.org/a.png" became the file 'http:/x.org/a.png' "not found"; nothing is fetched."""
    records = [{"image": url, "question": "q", "answer": "a"}
               for url in ("http://x.org/a.png", "https://user:pw@x.org/b.jpg?sig=1", "s3://bucket/c.png")]
    path = write_jsonl(tmp_path / "d.jsonl", [*records, {"image": "red.png", "question": "q", "answer": "a"}])
    reader = QAReader(path, media_folder=media)
    assert [s.images for s in reader] == [[str(media / "red.png")]]
    assert reader.report.skipped == {"remote_url": 3}
    assert [e.detail for e in reader.report.examples] == [
        f"{shown} is a web address, and media are read from local files (nothing is downloaded): download it and "
        "give its local path" for shown in ("http://x.org/a.png", "https://x.org/b.jpg?sig=1", "s3://bucket/c.png")]


def test_an_image_that_does_not_decode_is_named(media: Path, tmp_path: Path) -> None:
    """Of a record's two images, the message says which one does not decode (a JPEG cut short, here)."""
    jpeg = io.BytesIO()
    Image.new("RGB", (64, 64), (0, 128, 255)).save(jpeg, "JPEG")
    (media / "cut.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    record = {"images": ["red.png", "cut.jpg"], "question": "q", "answer": "a"}
    path = write_jsonl(tmp_path / "d.jsonl", [record])
    with pytest.raises(DataError) as info:
        list(QAReader(path, media_folder=media, verify_media=True, on_error="raise"))
    assert str(info.value) == f"{path}:1: image '{media / 'cut.jpg'}' does not decode: Truncated File Read"


def test_media_paths_written_on_windows_resolve(media: Path, tmp_path: Path) -> None:
    (media / "sub").mkdir(exist_ok=True)
    Image.new("RGB", (4, 4)).save(media / "sub" / "x.png")
    record = {"image": "sub\\x.png", "conversations": conv(("human", "<image>q"), ("gpt", "a"))}
    path = write_jsonl(tmp_path / "d.jsonl", [record])
    assert [s.images for s in LlavaReader(path, image_folder=media, on_error="raise")] == [[str(media / "sub" / "x.png")]]


def test_an_absolute_windows_path_is_named_as_one(media: Path, tmp_path: Path) -> None:
    """C:\\Users\\me\\red.png, read here as a relative path, was 'media file not found:
    <folder>/C:/Users/me/red.png'."""
    record = {"image": "C:\\Users\\me\\red.png", "conversations": conv(("human", "<image>q"), ("gpt", "a"))}
    path = write_jsonl(tmp_path / "d.jsonl", [record])
    with pytest.raises(DataError) as info:
        list(LlavaReader(path, image_folder=media, on_error="raise"))
    assert (info.value.reason, info.value.detail) == ("missing_media", (
        "media file not found: C:\\Users\\me\\red.png is an absolute Windows path (drive C:), which names no file on "
        "this machine: write the media paths relative to a folder (the data file's, or the one data.media_folder / "
        "--media-folder names)"))


def test_missing_file_and_broken_json_array_raise_even_when_skipping(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot open") as info:
        list(LlavaReader(tmp_path / "absent.json"))
    assert info.value.reason == "unreadable_file"
    broken = tmp_path / "broken.json"
    broken.write_text('[{"conversations": []},')
    with pytest.raises(DataError, match="invalid JSON array"):
        list(LlavaReader(broken))


def test_a_trailing_comma_is_named_where_it_is_not_where_json_stops(tmp_path: Path) -> None:
    """json says "Expecting value: line 4 column 1", the line after the comma an editor left behind."""
    records = tmp_path / "records.json"
    records.write_text('[\n {"question": "q", "answer": "a"},\n {"question": "r", "answer": "b"},\n]\n')
    with pytest.raises(DataError) as info:
        list(QAReader(records))
    assert str(info.value) == (f"{records}: invalid JSON array: Expecting value: line 4 column 1 (char 72); the comma "
                               "at the end of line 3 comes before ']': JSON allows no trailing comma")
    line = write_jsonl(tmp_path / "lines.jsonl", [])
    line.write_text('{"question": "q", "answer": "a",}\n')
    reader = QAReader(line)
    assert list(reader) == [] and "the comma at the end of line 1 comes before '}'" in str(reader.report.examples[0])


def test_a_file_that_is_one_json_object_is_read_as_its_records(tmp_path: Path) -> None:
    """Pretty-printed JSON (one record over several lines), records keyed by id and pandas' default
    `to_json()` table are all one JSON object, not JSONL: each gives the records it holds."""
    import pandas

    from modrwkv.data.readers import QAReader

    records = [{"series": [1.0, 2.0], "question": "Next?", "answer": "3"},
               {"series": [5.0, 4.0], "question": "Next?", "answer": "3"}]
    expected = [QAReader(write_jsonl(tmp_path / "lines.jsonl", records))]
    expected = [(s.messages, [x.tolist() for x in s.series]) for s in expected[0]]

    def read(path: Path) -> list[tuple[str, list, list, dict]]:
        return [(s.source, s.messages, [x.tolist() for x in s.series], s.meta) for s in QAReader(path, on_error="raise")]

    one = tmp_path / "one.json"
    one.write_text("\n\n" + json.dumps(records[0], indent=2))  # the record's '{' is on line 3
    assert read(one) == [(f"{one}:3", *expected[0], {})]
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps(records[0]))  # json.dump without indent: one line, one record
    assert read(flat) == [(f"{flat}:1", *expected[0], {})]
    keyed = tmp_path / "keyed.json"
    keyed.write_text(json.dumps({"a7": records[0], "b9": records[1]}, indent=1))
    assert read(keyed) == [(f'{keyed}:["a7"]', *expected[0], {"id": "a7"}),
                           (f'{keyed}:["b9"]', *expected[1], {"id": "b9"})]
    table = tmp_path / "table.json"
    pandas.DataFrame(records).to_json(table)  # orient="columns": {"series": {"0": ..., "1": ...}, ...}
    assert json.loads(table.read_text())["question"] == {"0": "Next?", "1": "Next?"}
    assert read(table) == [(f"{table}:[0]", *expected[0], {}), (f"{table}:[1]", *expected[1], {})]
    pandas.DataFrame(records).to_json(table, orient="index")  # {"0": record, "1": record}
    assert [r[1:3] for r in read(table)] == expected
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(records[0], indent=2).replace('"Next?",', '"Next?"'))
    with pytest.raises(DataError) as info:
        list(QAReader(broken))  # even when skipping: there is no record to skip to
    assert info.value.reason == "unreadable_file" and str(info.value) == (
        f"{broken}: one JSON object over several lines (not JSONL, one record per line), and it does not parse: "
        "Expecting ',' delimiter: line 7 column 3 (char 62)")


def test_non_utf8_line_is_skipped_and_counted_by_a_training_run(media: Path, tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """One bad byte in one line costs that line only, with `data.on_error: skip` (the training
    default); the skip is logged with file and line, and counted in the report."""
    from modrwkv.training.config import DataConfig
    from modrwkv.training.data import read_samples

    path = tmp_path / "mixed.jsonl"
    good = [json.dumps(r).encode() for r in LLAVA_GOOD]
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join([good[0], good[1][:20] + b"\xff\xfe" + good[1][20:], good[3]]) + b"\n")
    config = DataConfig(format="llava", train=[str(path)], media_folder=str(media), on_error="skip")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        samples = read_samples(config)
    assert [s.meta["id"] for s in samples] == ["one", "four"]
    messages = [r.getMessage() for r in caplog.records]
    assert f"skipping {path}:2: not UTF-8 text: byte 0xff at position 21 of the line [bad_json]" in messages
    assert f"{path}: kept 2 of 3 records; skipped 1 (bad_json: 1)" in messages
    with pytest.raises(DataError, match=f"^{path}:2: not UTF-8 text"):
        read_samples(DataConfig(format="llava", train=[str(path)], media_folder=str(media), on_error="raise"))
    array = tmp_path / "array.json"
    array.write_bytes(b'[{"conversations": "\xff"}]')
    with pytest.raises(DataError, match="array.json: not UTF-8 text: byte 0xff at offset 20"):
        list(LlavaReader(array))


def test_report_is_fresh_per_pass_and_examples_are_capped(
    media: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = {"image": "nope.png", "conversations": conv(("human", "x"), ("gpt", "y"))}
    path = write_jsonl(tmp_path / "many.jsonl", [bad] * 6 + [LLAVA_GOOD[0]])
    reader = LlavaReader(path, image_folder=media, max_examples=2, log_limit=3)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert len(list(reader)) == 1
    first = reader.report
    assert (first.total, first.kept, first.num_skipped, len(first.examples)) == (7, 1, 6, 2)
    assert first.summary() == f"{path}: kept 1 of 7 records; skipped 6 (missing_media: 6)"
    warnings = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("skipping") for m in warnings) == 3  # the rest went to DEBUG
    assert any("further skipped records" in m for m in warnings)
    assert len(list(reader)) == 1 and reader.report is not first and reader.report.total == 7
    with pytest.raises(ValueError, match="on_error"):
        LlavaReader(path, on_error="ignore")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ OpenAI
def data_uri(payload: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(payload).decode()


def test_openai_exact(media: Path, tmp_path: Path) -> None:
    png, wav = (media / "red.png").read_bytes(), (media / "tone.wav").read_bytes()
    lines = [
        {
            "id": "c1",
            "messages": [
                {"role": "system", "content": "You see images."},
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": data_uri(png)}},
                        {"type": "text", "text": "What is this?"},
                        {
                            "type": "input_audio",
                            "input_audio": {"data": base64.b64encode(wav).decode(), "format": "wav"},
                        },
                    ],
                },
                {"role": "assistant", "content": "A red square."},
            ],
        },
        [  # a bare list; file URL, relative path and the string form of image_url
            {"role": "developer", "content": "Terse."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Left:"},
                    {"type": "image_url", "image_url": (media / "sub" / "blue.jpg").as_uri()},
                    {"type": "text", "text": "Right:"},
                    {"type": "image_url", "image_url": {"url": "red.png"}},
                ],
            },
        ],
    ]
    path = write_jsonl(tmp_path / "chat.jsonl", lines)
    first, second = OpenAIChatReader(path, media_folder=media)
    assert first == Sample(
        [
            Message("system", "You see images."),
            Message("user", "<image>\nWhat is this?\n<audio>"),
            Message("assistant", "A red square."),
        ],
        images=[png],
        audios=[wav],
        source=f"{path}:1",
        meta={"id": "c1", "media_parts": {"image": ["messages[1].content[0]"], "audio": ["messages[1].content[2]"]}},
    )
    assert first.images[0] == png and first.audios[0] == wav  # data URI / base64 give the original bytes
    assert second == Sample(
        [Message("system", "Terse."), Message("user", "Left:\n<image>\nRight:\n<image>")],
        images=[str(media / "sub" / "blue.jpg"), str(media / "red.png")],
        source=f"{path}:2",
        meta={"media_parts": {"image": ["messages[1].content[1]", "messages[1].content[3]"]}},
    )


def test_openai_remote_urls(tmp_path: Path) -> None:
    url = "https://example.com/cat.png"
    record = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]}
    with pytest.raises(DataError, match="remote URL refused") as info:
        openai_to_sample(record, source="req")
    assert info.value.reason == "remote_url"
    assert openai_to_sample(record, source="req", allow_remote=True).images == [url]  # kept for the caller to fetch


def test_urls_in_messages_and_logs_lose_their_credentials() -> None:
    """`redact_url`: a URL's `user:password@` is never shown; logs drop the query and fragment too
    (a signed URL's token); both keep at most 200 characters. The reader's refusals use it."""
    from modrwkv.data.readers.openai_chat import redact_url

    url = "https://alice:p%40ss@cdn.example.com:8443/a/cat.png?X-Amz-Signature=abc#part"
    assert redact_url(url) == "https://cdn.example.com:8443/a/cat.png?X-Amz-Signature=abc#part"
    assert redact_url(url, keep_query=False) == "https://cdn.example.com:8443/a/cat.png"
    assert redact_url("http://token@host/p?q=a@b") == "http://host/p?q=a@b"  # an "@" in the query is not userinfo
    assert redact_url("https://u:p@host/" + "x" * 300) == ("https://host/" + "x" * 300)[:200]
    for url, reason in [(url, "remote_url"), ("file://bob:pw@far.example/a.png", "unsupported_url")]:
        with pytest.raises(DataError) as info:
            openai_to_sample([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}])
        assert info.value.reason == reason and "alice" not in str(info.value) and "pw@" not in str(info.value)
        assert redact_url(url) in str(info.value)


def test_openai_local_paths_can_be_refused(media: Path) -> None:
    for url in [(media / "red.png").as_uri(), str(media / "red.png")]:
        record = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]
        assert openai_to_sample(record).images == [str(media / "red.png")]
        with pytest.raises(DataError) as info:
            openai_to_sample(record, allow_local_paths=False)
        assert info.value.reason == "local_path_refused"
    inline = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_uri(b"xy")}}]}]
    assert openai_to_sample(inline, allow_local_paths=False).images == [b"xy"]
    sound = [{"role": "user", "content": [{"type": "audio_url", "audio_url": {"url": data_uri(b"RIFF", "audio/wav")}}]}]
    assert openai_to_sample(sound, allow_local_paths=False).audios == [b"RIFF"]


def test_openai_hf_style_payloadless_parts(media: Path) -> None:
    picture = Image.new("RGB", (2, 2))
    record = {
        "messages": [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "?"}, {"type": "image"}]}
        ],
        "images": [picture, "red.png"],
    }
    sample = openai_to_sample(record, media_folder=media)
    assert sample.messages[0].content == "<image>\n?\n<image>"
    assert sample.images == [picture, str(media / "red.png")]
    record["images"].append("red.png")
    with pytest.raises(DataError, match="not referenced"):
        openai_to_sample(record, media_folder=media)


def user_parts(*parts: dict) -> dict:
    return {"messages": [{"role": "user", "content": list(parts)}, {"role": "assistant", "content": "ok"}]}


BAD_OPENAI = {
    "bad_json": "[{",
    "empty_conversation": {"messages": []},
    "missing_field": {"id": "x"},
    "other_format": {"conversations": []},  # LLaVA's field, in a file whose first record is OpenAI chat
    "wrong_type": {"messages": [{"role": "user", "content": None}]},
    "unknown_role": {"messages": [{"role": "tool", "content": "42"}]},
    "unsupported_part": user_parts({"type": "file", "file": {"file_id": "file-abc"}}),  # video_url is supported now
    "bad_media_data": user_parts({"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}),
    "remote_url": user_parts({"type": "image_url", "image_url": {"url": "http://x.org/a.png"}}),
    "unsupported_url": user_parts({"type": "image_url", "image_url": {"url": "s3://bucket/a.png"}}),
    "missing_media": user_parts({"type": "image_url", "image_url": {"url": "gone.png"}}),
    "marker_mismatch": {"messages": [{"role": "user", "content": [{"type": "image"}]}]},
}


def test_openai_bad_base64_names_its_part() -> None:
    record = user_parts({"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}})
    with pytest.raises(DataError, match=r"^messages\[0\]\.content\[1\] \(data URI\): invalid base64: "):
        openai_to_sample(record)


@pytest.mark.parametrize("reason", sorted(BAD_OPENAI))
def test_openai_bad_record_skip_and_raise(
    reason: str, media: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = user_parts({"type": "text", "text": "hi"})
    path = write_jsonl(tmp_path / "bad.jsonl", [good, BAD_OPENAI[reason], good])
    reader = OpenAIChatReader(path, media_folder=media)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert [s.source for s in reader] == [f"{path}:1", f"{path}:3"]
    assert reader.report.skipped == {reason: 1}
    assert any(f"{path}:2" in r.getMessage() and reason in r.getMessage() for r in caplog.records)
    with pytest.raises(DataError, match=f"^{path}:2: ") as info:
        list(OpenAIChatReader(path, media_folder=media, on_error="raise"))
    assert info.value.reason == reason


def test_openai_content_type_error_names_both_accepted_types(tmp_path: Path) -> None:
    tool_call = {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]}  # what the API returns
    path = write_jsonl(tmp_path / "calls.jsonl", [{"messages": [{"role": "user", "content": "hi"}, tool_call]}])
    with pytest.raises(DataError, match=r"messages\[1\]\.content must be str or list, got NoneType$"):
        list(OpenAIChatReader(path, on_error="raise"))


@pytest.mark.parametrize("content, found", [
    (None, r"is null \(an empty cell"), (float("nan"), r"is NaN \(an empty cell"), ("  ", r"is empty \('  '\)"),
    ([], r"is empty \(''\)"), ([{"type": "text", "text": ""}], r"is empty \(''\)"),
])
def test_openai_empty_answer_is_reported_as_such_with_file_line_and_field(content, found, tmp_path: Path) -> None:
    """As docs/custom-data.md says of every format: a null, NaN or blank answer is an `empty_answer`."""
    record = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": content}]}
    path = write_jsonl(tmp_path / "empty.jsonl", [{"messages": [{"role": "user", "content": "hi"},
                                                                {"role": "assistant", "content": "ok"}]}, record])
    reader = OpenAIChatReader(path)
    assert [s.source for s in reader] == [f"{path}:1"]
    assert reader.report.skipped == {"empty_answer": 1}
    with pytest.raises(DataError, match=rf"^{path}:2: messages\[1\]\.content {found}") as info:
        list(OpenAIChatReader(path, on_error="raise"))
    assert info.value.reason == "empty_answer"
    # a chat history (a server's request, a pipeline prompt) may hold an empty reply: only type errors there
    if content is None:
        with pytest.raises(DataError, match=r"content must be str or list, got NoneType$"):
            openai_to_sample(record, answers_required=False)
    elif isinstance(content, str | list):
        assert openai_to_sample(record, answers_required=False).messages[1].content == ("  " if content == "  " else "")
        if isinstance(content, list):  # the pipeline's prompts take content parts through the same parser
            from modrwkv.inference.prompt import build_sample

            assert build_sample(record["messages"]).messages[1].content == ""


# --------------------------------------------------------------------------------------------- ASR
def test_asr_manifest_exact(media: Path, tmp_path: Path) -> None:
    manifest = write_jsonl(
        tmp_path / "asr.jsonl",
        [
            {"audio_filepath": "tone.wav", "text": "a tone", "duration": 0.1},
            {"wav": str(media / "tone.wav"), "transcript": "again", "id": "u2"},
            {"path": "tone.wav", "sentence": "third"},
            {"audio": "tone.wav", "text": "custom"},
        ],
    )
    samples = list(AsrManifestReader(manifest, audio_root=media))
    wav = str(media / "tone.wav")
    expected = [("a tone", {"duration": 0.1}), ("again", {"id": "u2"}), ("third", {}), ("custom", {})]
    assert samples == [
        Sample(
            [Message("user", f"<audio>\n{DEFAULT_ASR_PROMPT}"), Message("assistant", text)],
            audios=[wav],
            source=f"{manifest}:{line}",
            meta=meta,
        )
        for line, (text, meta) in enumerate(expected, start=1)
    ]
    (custom,) = AsrManifestReader(write_jsonl(media / "m.jsonl", [{"audio": "tone.wav", "text": "t"}]), prompt="P")
    assert custom.messages[0].content == "<audio>\nP" and custom.audios == [wav]


def test_asr_audio_written_as_a_one_item_list_is_that_audio(media: Path, tmp_path: Path) -> None:
    """`["tone.wav"]` is one audio for one transcript, read as `"tone.wav"` is (qa records take one item or a
    list alike); an empty list is a record without its audio, named so."""
    manifest = write_jsonl(tmp_path / "asr.jsonl", [{"audio_filepath": ["tone.wav"], "text": "hi"},
                                                    {"audio_filepath": [], "text": "hi"}])
    reader = AsrManifestReader(manifest, audio_root=media, log_limit=0)
    assert list(reader) == [Sample([Message("user", f"<audio>\n{DEFAULT_ASR_PROMPT}"), Message("assistant", "hi")],
                                   audios=[str(media / "tone.wav")], source=f"{manifest}:1")]
    assert [str(e) for e in reader.report.examples] == [
        f"{manifest}:2: 'audio_filepath' is an empty list: an ASR record has one audio"]
    assert reader.report.skipped == {"missing_media": 1}


BAD_ASR = {
    "missing_field": {"audio": "tone.wav"},
    "missing_media": {"audio": "none.wav", "text": "x"},
    "wrong_type": {"audio": "tone.wav", "text": 3},
    "unreadable_media": {"audio": "broken.wav", "text": "x"},
}


@pytest.mark.parametrize("reason", sorted(BAD_ASR))
def test_asr_bad_record_skip_and_raise(reason: str, media: Path, tmp_path: Path) -> None:
    good = {"audio": "tone.wav", "text": "ok"}
    path = write_jsonl(tmp_path / "bad.jsonl", [good, BAD_ASR[reason], good])
    reader = AsrManifestReader(path, audio_root=media, verify_media=True)
    assert [s.source for s in reader] == [f"{path}:1", f"{path}:3"]
    assert reader.report.skipped == {reason: 1}
    with pytest.raises(DataError, match=f"^{path}:2: ") as info:
        list(AsrManifestReader(path, audio_root=media, verify_media=True, on_error="raise"))
    assert info.value.reason == reason


# ------------------------------------------------------------------------------------- time series
def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.write_text("\n".join(",".join(map(str, r)) for r in [header, *rows]) + "\n")
    return path


@pytest.fixture
def series_csv(tmp_path: Path) -> tuple[Path, np.ndarray]:
    T = 23
    values = np.stack([np.arange(T) * 0.5, np.sin(np.arange(T)) * 10], axis=1)
    rows = [[f"2020-01-{i + 1:02d}", repr(float(a)), repr(float(b)), "label"] for i, (a, b) in enumerate(values)]
    return write_csv(tmp_path / "series.csv", ["date", "load", "temp", "kind"], rows), values


@pytest.mark.parametrize("lookback,horizon,stride", [(5, 3, 1), (6, 4, 3), (10, 13, 7), (20, 3, 2)])
def test_csv_windows_count_and_targets(lookback: int, horizon: int, stride: int, series_csv) -> None:
    path, values = series_csv
    reader = TimeSeriesReader(path, lookback=lookback, horizon=horizon, stride=stride)
    samples = list(reader)
    per_column = (23 - lookback - horizon) // stride + 1
    assert len(samples) == 2 * per_column == 2 * reader.num_windows(23)
    for k, sample in enumerate(samples):
        column = k // per_column
        start = (k % per_column) * stride
        name = ["load", "temp"][column]
        source = values[:, column].astype(np.float32)
        assert sample.source == f"{path}:{start + 2}:{name}"
        np.testing.assert_array_equal(sample.series[0], source[start : start + lookback])
        target = source[start + lookback : start + lookback + horizon]
        np.testing.assert_array_equal(sample.meta["target"], target)
        assert sample.series[0].dtype == np.float32 and sample.meta["target"].dtype == np.float32
        assert sample.meta["columns"] == [name] and sample.meta["start"] == start
        assert (sample.meta["lookback"], sample.meta["horizon"]) == (lookback, horizon)
        window = source[start : start + lookback].astype(np.float64)
        mean, scale = window.mean(), np.sqrt(window.var() + 1e-5)  # RevIN: the window's own statistics
        hundredths = [int(np.rint((v - mean) / scale * 100)) for v in target.astype(np.float64)]
        assert sample.messages == [
            Message("user", f"<series>\nPredict the next {horizon} values of this series."),
            Message("assistant", " ".join(str(max(-9999, min(9999, h))) for h in hundredths)),
        ]
        assert sample.meta["mean"] == pytest.approx(mean) and sample.meta["scale"] == pytest.approx(scale)
        sample.validate()


def test_csv_multivariate_and_custom_prompt(series_csv) -> None:
    path, values = series_csv
    reader = TimeSeriesReader(
        path,
        lookback=4,
        horizon=2,
        stride=10,
        columns=["temp", "load"],
        multivariate=True,
        prompt="{horizon}x{channels}",
    )
    samples = list(reader)
    assert [s.source for s in samples] == [f"{path}:2", f"{path}:12"]  # (23 - 6) // 10 + 1 windows
    second = samples[1]
    expected = values[:, ::-1].astype(np.float32)
    np.testing.assert_array_equal(second.series[0], expected[10:14])
    np.testing.assert_array_equal(second.meta["target"], expected[14:16])
    assert second.meta["columns"] == ["temp", "load"]
    assert second.messages[0].content == "<series>\n2x2"
    mean, scale = expected[10:14].mean(0), np.sqrt(expected[10:14].var(0) + 1e-5)
    normalised = parse_forecast(second.messages[1].content, 2, channels=2)
    np.testing.assert_allclose(normalised * scale + mean, expected[14:16], atol=0.005 * scale.max())


def test_csv_gaps_short_series_and_file_errors(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "gaps.csv", ["t", "x"], [[i, "" if i == 7 else i] for i in range(12)])
    reader = TimeSeriesReader(path, lookback=3, horizon=2)  # "t" is numeric: kept as a series too
    samples = list(reader)
    # the gap may sit in a look-back (a gap the encoder fills) but not in a target: starts 3 and 4 skipped
    assert reader.report.total == 2 * 8 and reader.report.skipped == {"non_finite": 2}
    gappy = [s for s in samples if s.meta["columns"] == ["x"] and 7 in range(s.meta["start"], s.meta["start"] + 3)]
    assert [s.meta["start"] for s in gappy] == [5, 6, 7] and np.isnan(gappy[0].series[0][2])
    with pytest.raises(DataError, match=f"^{path}:5:x: forecast target") as info:
        list(TimeSeriesReader(path, lookback=3, horizon=2, columns=["x"], on_error="raise"))
    assert info.value.reason == "non_finite"

    short = TimeSeriesReader(path, lookback=10, horizon=5, columns=["x"])
    assert list(short) == [] and short.report.skipped == {"too_short": 1}

    with pytest.raises(DataError, match="no column 'y'"):
        list(TimeSeriesReader(path, lookback=3, horizon=2, columns=["y"]))
    text = write_csv(tmp_path / "text.csv", ["date", "x"], [["d1", "1"], ["d2", "oops"]])  # (a repeated date: stacked)
    with pytest.raises(DataError, match=f"^{text}:3: column 'x': 'oops'"):
        list(TimeSeriesReader(text, lookback=1, horizon=1, columns=["x"]))
    with pytest.raises(ValueError, match="lookback"):
        TimeSeriesReader(path, lookback=0, horizon=1)


def test_npz_series(tmp_path: Path) -> None:
    path = tmp_path / "s.npz"
    one = np.arange(10, dtype=np.float64)
    two = np.arange(16, dtype=np.float32).reshape(8, 2)
    np.savez(path, one=one, two=two, names=np.array(["a", "b"]))
    samples = list(TimeSeriesReader(path, lookback=4, horizon=2, stride=2))
    assert [s.source for s in samples] == [
        *(f"{path}:one[{s}]" for s in (0, 2, 4)),
        *(f"{path}:two[{s}, {c}]" for c in (0, 1) for s in (0, 2)),
    ]
    np.testing.assert_array_equal(samples[6].series[0], two[2:6, 1])
    np.testing.assert_array_equal(samples[6].meta["target"], two[6:8, 1])
    assert samples[6].meta["columns"] == ["two[1]"]
    (joint,) = TimeSeriesReader(path, lookback=6, horizon=2, columns=["two"], multivariate=True)
    assert joint.source == f"{path}:two[0]" and joint.series[0].shape == (6, 2)
    np.testing.assert_array_equal(joint.meta["target"], two[6:8])


def same_windows(expected: list[Sample], got: list[Sample]) -> None:
    """The same samples but for where they are named: texts, look-backs, targets, statistics and starts."""
    assert len(got) == len(expected)
    for want, have in zip(expected, got, strict=True):
        assert have.messages == want.messages and have.meta["start"] == want.meta["start"]
        np.testing.assert_array_equal(have.series[0], want.series[0])
        for key in ("target", "mean", "scale"):
            np.testing.assert_array_equal(have.meta[key], want.meta[key])


def test_series_rows_of_real_series_read_as_their_csv_columns(tmp_path: Path) -> None:
    """statsmodels' sunspots (309 years), Nile (100), El Nino (732 months) and co2 (400 weeks, with gaps) as a
    Chronos Parquet file (a row each, with timestamps), GluonTS JSON Lines, and a CSV each: the same windows,
    texts, targets and statistics from all three, in training's settings (train rows, standardised), eval's
    (test rows) and unsplit, each row split and scaled by its own length, its nulls the CSV's empty cells."""
    pytest.importorskip("statsmodels")
    from eval_fixtures import real_series, write_series_layouts

    series = real_series()
    csvs, parquet, jsonl = write_series_layouts(tmp_path, series)
    for options in ({"split": "train", "standardize": True}, {"split": "test", "standardize": True}, {}):
        readers = [TimeSeriesReader(data, lookback=24, horizon=8, stride=3, **options)
                   for data in (csvs, parquet, jsonl)]
        expected, *others = [list(reader) for reader in readers]
        for reader, got in zip(readers[1:], others, strict=True):
            same_windows(expected, got)
            assert (reader.report.total, reader.report.skipped) == (readers[0].report.total, readers[0].report.skipped)
    # unsplit: every window at stride 3 of each series, but co2's whose target holds a gap, left out alike
    co2 = series["co2"][1]
    gaps = sum(np.isnan(co2[start + 24:start + 32]).any() for start in range(0, len(co2) - 32 + 1, 3))
    assert readers[0].report.total == sum((len(values) - 32) // 3 + 1 for _, values in series.values())
    assert gaps and readers[0].report.skipped == {"non_finite": gaps}
    first, last = list(readers[1])[0], list(readers[2])[-1]
    assert first.source == f"{parquet}:row 0 (id 'sunspots') target[0]" and first.meta["columns"] == ["target"]
    assert last.source == f"{jsonl}:4 (item_id 'co2') target[{last.meta['start']}]"
    assert readers[1].series_columns() == ["target"]


def test_series_rows_with_channels_read_as_a_csv_of_those_columns(tmp_path: Path) -> None:
    """A LOTSA / GIFT-Eval row's [channels, steps] target (beside `start`, `freq` and static features, not read),
    and a Chronos row of several list columns and no `target` (as ushcn_daily's), read as a CSV of those columns:
    each channel a series of its own, or with `multivariate` together."""
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    values = np.random.default_rng(3).normal(size=(40, 2)).round(3)
    csv = write_csv(tmp_path / "two.csv", ["date", "a", "b"], [[f"d{i}", *map(repr, row)] for i, row in
                                                                 enumerate(values.tolist())])
    lotsa, chronos = tmp_path / "lotsa.parquet", tmp_path / "chronos.parquet"
    pq.write_table(pa.table({"item_id": ["x"], "start": pa.array([np.datetime64("2020-01-01", "ms")]),
                             "freq": ["h"], "target": [values.T.tolist()], "feat_static_cat": [[3]]}), lotsa)
    stamps = pa.array([np.arange(40).astype("datetime64[h]").astype("datetime64[ms]").tolist()],
                      pa.list_(pa.timestamp("ms")))
    pq.write_table(pa.table({"id": ["x"], "timestamp": stamps, "a": [values[:, 0].tolist()],
                             "b": [values[:, 1].tolist()]}), chronos)
    for multivariate in (False, True):
        options = {"lookback": 8, "horizon": 4, "stride": 5, "multivariate": multivariate}
        expected = list(TimeSeriesReader(csv, **options))
        for path in (lotsa, chronos):
            assert is_series_file(path)
            same_windows(expected, list(TimeSeriesReader(path, **options)))
    one, joint = next(iter(TimeSeriesReader(lotsa, lookback=8, horizon=4, stride=5))), \
        next(iter(TimeSeriesReader(lotsa, lookback=8, horizon=4, multivariate=True)))
    assert (one.source, one.meta["columns"]) == (f"{lotsa}:row 0 (item_id 'x') target[0, 0]", ["target[0]"])
    assert (joint.source, joint.meta["columns"]) == (f"{lotsa}:row 0 (item_id 'x')[0]", ["target[0]", "target[1]"])
    assert TimeSeriesReader(chronos, lookback=8, horizon=4).series_columns() == ["a", "b"]
    picked = list(TimeSeriesReader(chronos, lookback=8, horizon=4, stride=5, columns=["b"]))
    same_windows(list(TimeSeriesReader(csv, lookback=8, horizon=4, stride=5, columns=["b"])), picked)


def test_bad_series_rows_are_named_by_file_row_and_column(tmp_path: Path) -> None:
    """A target that is no list of numbers, a ragged [channels, steps] one, a missing one and a file with no
    series column: one error naming the file, the row and the column. A row too short for a window, or for its
    split's borders, is a too_short record, as a short CSV column is, and the other rows are read."""
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")

    def jsonl(name: str, *targets: object) -> Path:
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"start": "2021-01-01", "target": target, "item_id": f"s{i}"}) + "\n"
                                for i, target in enumerate(targets)))
        return path

    good = list(range(30))
    cases = {jsonl("text", good, [1.0, "2.5"]): r":2 \(item_id 's1'\): column 'target': '2.5' is not a number",
             jsonl("ragged", good, [good, good[:20]]): r":2 \(item_id 's1'\): column 'target' is ragged: channel 1 "
                                                       "has 20 values, channel 0 30",
             jsonl("null", None): r":1 \(item_id 's0'\): column 'target' is null, not a list of numbers",
             jsonl("deep", [[[1.0]]]): r":1 \(item_id 's0'\): column 'target\[0\]': \[1.0\] is a list, nested deeper"}
    strings = tmp_path / "strings.parquet"
    pq.write_table(pa.table({"id": ["a"], "target": [["1", "x"]]}), strings)
    cases[strings] = r":row 0 \(id 'a'\): column 'target': '1' is not a number"
    dates = tmp_path / "dates.parquet"
    pq.write_table(pa.table({"id": ["a"], "timestamp": pa.array([[0]], pa.list_(pa.timestamp("ms"))),
                             "kind": [["x"]]}), dates)
    cases[dates] = r": no 'target' column and no column of lists of numbers among \['id', 'timestamp', 'kind'\]"
    for path, message in cases.items():
        with pytest.raises(DataError, match=f"^{re.escape(str(path))}{message}") as info:
            list(TimeSeriesReader(path, lookback=4, horizon=2))
        assert info.value.reason == "unreadable_file"
    assert not is_series_file(dates)  # (no target, no numbers: not told as series)
    uneven = tmp_path / "uneven.parquet"
    pq.write_table(pa.table({"id": ["x"], "a": [list(range(10))], "b": [list(range(8))]}), uneven)
    assert len(list(TimeSeriesReader(uneven, lookback=4, horizon=2))) == 5 + 3  # on their own: each its length
    with pytest.raises(DataError, match=r"uneven.parquet:row 0 \(id 'x'\): columns of different lengths "
                                        r"\{'a': 10, 'b': 8\}: a multivariate series is read step by step"):
        list(TimeSeriesReader(uneven, lookback=4, horizon=2, multivariate=True))
    missing = jsonl("missing", good)
    with pytest.raises(DataError, match=r"no column\(s\) \['load'\] \(columns: \['start', 'target', 'item_id'\]\)"):
        list(TimeSeriesReader(missing, lookback=4, horizon=2, columns=["load"]))
    # a row of 12 steps: no window of 10 + 5 unsplit; no train rows of a look-back of 10 when split
    short = jsonl("short", good, good[:12])
    unsplit = TimeSeriesReader(short, lookback=10, horizon=5)
    assert len(list(unsplit)) == 16 and unsplit.report.skipped == {"too_short": 1}
    assert str(unsplit.report.examples[0]) == (f"{short}: series \"2 (item_id 's1') target\" has 12 steps, fewer than "
                                               f"a window's 15 (look-back 10 + horizon 5: {SHORTER})")
    split = TimeSeriesReader(short, lookback=10, horizon=5, split="train", standardize=True)
    assert len(list(split)) == 7 and split.report.skipped == {"too_short": 1}  # int(30 * 0.7) - 15 + 1
    assert str(split.report.examples[0]).endswith("has 12 steps, too few for train rows with a look-back of 10")



def test_records_with_a_target_column_are_no_series_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A qa or LLaVA Parquet file with a `target` list column of its own is read as its records (training's
    data.format qa would refuse it as "a time-series file"), as a JSONL record with one is; and a JSON array on one
    line (LLaVA's .json) is told apart by its '[' without its line being read as JSON."""
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    qa, llava = tmp_path / "qa.parquet", tmp_path / "llava.parquet"
    pq.write_table(pa.table({"question": ["q"], "answer": ["a"], "target": [[1.0, 2.0]]}), qa)
    turns = [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]
    pq.write_table(pa.table({"conversations": [turns], "target": [[1.0, 2.0]]}), llava)
    records = tmp_path / "qa.jsonl"
    records.write_text(json.dumps({"question": "q", "answer": "a", "target": [1.0, 2.0]}) + "\n")
    series = tmp_path / "series.jsonl"
    series.write_text(json.dumps({"start": "2021-01-01", "target": [1.0, 2.0]}) + "\n")
    array = tmp_path / "llava.json"
    array.write_text(json.dumps([{"conversations": turns, "target": [1.0]}]))
    assert [is_series_file(path) for path in (qa, llava, records, series, array)] == [False] * 3 + [True, False]
    assert [detect_format(path) for path in (qa, llava)] == ["qa", "llava"]

    def refused(text: bytes) -> None:
        raise AssertionError(f"a line read as JSON: {text[:20]!r}")

    monkeypatch.setattr(json, "loads", refused)
    assert not is_series_file(array)

def test_rows_holding_media_beside_a_target_are_no_series(tmp_path: Path) -> None:
    """A row with an image (a path, a `datasets` Image struct, ShareGPT's `images` list) beside a `target` list is no
    time series: detection and the series reader refuse it, naming the file, the media column and what a series
    holds, rather than window the numbers and drop the image; an image with a label is the hub rows it is. Real
    series layouts stay series: GluonTS' JSON Lines with `feat_static_cat` read their target alone, and a CSV's text
    column is left aside. A CSV of image paths and integer labels is refused too (its labels are no series)."""
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    png = tmp_path / "a.png"
    Image.new("RGB", (8, 8), "red").save(png)
    target = [float(x) for x in range(12)]
    path_rows, struct_rows = tmp_path / "paths.parquet", tmp_path / "structs.parquet"
    pq.write_table(pa.table({"image": ["a.png"], "target": [target]}), path_rows)
    pq.write_table(pa.table({"image": [{"bytes": png.read_bytes(), "path": None}], "target": [target]}), struct_rows)
    image_line, images_line = tmp_path / "image.jsonl", tmp_path / "images.jsonl"
    image_line.write_text(json.dumps({"image": "a.png", "target": target}) + "\n")
    images_line.write_text(json.dumps({"images": ["a.png"], "target": target}) + "\n")
    labels_csv = tmp_path / "labels.csv"
    labels_csv.write_text("image,label\n" + "".join(f"img{i}.jpg,{i % 2}\n" for i in range(20)))
    for path in (path_rows, struct_rows, image_line, images_line):
        column = "images" if path == images_line else "image"
        assert not is_series_file(path)
        with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: .*not a time series either: its rows hold "
                                             rf"media \({column}\).*'target'"):
            detect_format(path)
    for path in (path_rows, struct_rows, image_line, images_line):
        with pytest.raises(DataError, match=rf"{re.escape(str(path))}: its rows hold media \((images?)\)"):
            list(TimeSeriesReader(path, lookback=4, horizon=2))
    with pytest.raises(DataError, match=rf"{re.escape(str(labels_csv))}: columns \['image', 'label'\], numbers beside "
                                        r"media: its column 'image' names media files \(img0.jpg\), so its rows "
                                        r"are samples, not a time series"):
        list(TimeSeriesReader(labels_csv, lookback=4, horizon=2))
    # the numbers alone, chosen: the target's own windows
    [first, *_] = TimeSeriesReader(image_line, lookback=4, horizon=2, columns=["target"])
    assert first.series[0].tolist() == target[:4]

    labelled = tmp_path / "labelled.parquet"
    pq.write_table(pa.table({"image": ["a.png"], "label": ["cat"], "target": [target]}), labelled)
    assert detect_format(labelled) == "qa"
    turns = [{"role": "user", "content": "<image>Colour?"}, {"role": "assistant", "content": "red"}]
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"messages": turns, "images": ["a.png"], "target": [1.0, 2.0]}) + "\n")
    assert detect_format(chat) == "sharegpt"

    gluonts = tmp_path / "gluonts.jsonl"
    gluonts.write_text(json.dumps({"start": "2021-01-01 00:00", "target": target, "feat_static_cat": [3],
                                   "item_id": "T1"}) + "\n")
    assert detect_format(gluonts) == "series"
    assert [s.series[0].tolist() for s in TimeSeriesReader(gluonts, lookback=10, horizon=2)] == [target[:10]]
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("date,a,b,note\n" + "".join(f"2021-01-{i + 1:02d},{i},{2 * i},hello {i}\n" for i in range(8)))
    assert detect_format(mixed) == "series"
    assert TimeSeriesReader(mixed, lookback=4, horizon=2).series_columns() == ["a", "b"]


def test_format_and_parse_forecast() -> None:
    values = np.array([1.23456, -0.001, 42.0, -7.5, 250.0])
    text = format_forecast(values)
    assert text == "123 0 4200 -750 9999"  # hundredths, clipped to 4 digits
    np.testing.assert_allclose(parse_forecast(text, 5), [1.23, 0.0, 42.0, -7.5, 99.99])
    assert parse_forecast("  150 ,2\n 3e1,, -4 ", 4).tolist() == [1.5, 0.02, 0.3, -0.04]
    grid = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    assert format_forecast(grid, 1) == "10 20\n30 40\n50 60"
    np.testing.assert_array_equal(parse_forecast(format_forecast(grid, 1) + "\n\n", 3, channels=2, decimals=1), grid)
    with pytest.raises(ValueError, match="not a number: 'abc'"):
        parse_forecast("1, abc, 3", 3)
    with pytest.raises(ValueError, match="expected 3 value"):
        parse_forecast("1 2", 3)
    with pytest.raises(ValueError, match="not a number: 'nan'"):
        parse_forecast("1 nan", 2)
    with pytest.raises(ValueError, match="expected 3 lines"):
        parse_forecast("1 2\n3 4", 3, channels=2)
    values, complete = read_forecast("12 -5 x", 4)  # cut short: padded with the last number
    assert values.tolist() == [0.12, -0.05, -0.05, -0.05] and not complete
    values, complete = read_forecast("nothing", 2)
    assert values.tolist() == [0.0, 0.0] and not complete
    values, complete = read_forecast("1 2 3", 3)
    assert values.tolist() == [0.01, 0.02, 0.03] and complete


def test_forecast_text_is_compact() -> None:
    """96 standard-normal values: about 1.8 World tokens each (the former "-1.234, " form took ~5.5)."""
    from modrwkv.tokenizer import WorldTokenizer

    values = np.random.default_rng(0).standard_normal(96)
    assert len(WorldTokenizer().encode(" " + format_forecast(values))) < 200


def test_targets_are_the_normalised_future_and_map_back_with_the_encoders_statistics(tmp_path: Path) -> None:
    """The training text, read back and de-normalised with the statistics the encoder computes for
    the window (what the pipeline does), is the future in file units; `3x + 5` gives the same text."""
    t = np.arange(80)
    x = 50 + 20 * np.sin(t / 4) + 0.3 * t
    rows = [[i, repr(float(v)), repr(float(3 * v + 5))] for i, v in enumerate(x)]
    path = write_csv(tmp_path / "scaled.csv", ["date", "x", "y"], rows)
    encoder = build_encoder("wavenet", layers=1)
    samples = list(TimeSeriesReader(path, lookback=24, horizon=8, stride=10))
    by_column = {c: [s for s in samples if s.meta["columns"] == [c]] for c in ("x", "y")}
    for plain, scaled in zip(by_column["x"], by_column["y"], strict=True):
        assert plain.messages[1].content == scaled.messages[1].content
        for sample in (plain, scaled):
            extras = encoder.prepare(sample.series[0]).extras
            normalised = torch.from_numpy(parse_forecast(sample.messages[1].content, 8))[:, None]
            back = encoder.denormalize(normalised, extras)[:, 0].numpy()
            np.testing.assert_allclose(back, sample.meta["target"], atol=0.005 * float(extras["scale"]) + 1e-4)
    mean, scale = instance_stats(np.array([1.0, np.nan, 3.0]))
    assert mean.tolist() == [2.0] and scale.tolist() == [pytest.approx(np.sqrt(1 + 1e-5))]


def test_split_and_standardize_use_the_long_horizon_borders(tmp_path: Path) -> None:
    t = np.arange(100)
    x = 10 + t * 0.5
    rows = [[f"d{i}", "" if i == 2 else repr(float(v)), i] for i, v in enumerate(x)]
    path = write_csv(tmp_path / "any.csv", ["ds", "x", "n"], rows)
    reader = TimeSeriesReader(path, lookback=10, horizon=5, columns=["x"], split="test", standardize=True)
    samples = list(reader)
    # 70/10/20: test rows [100 - 20 - 10, 100) -> 30 - 15 + 1 windows; scaler from rows [0, 70), gap ignored
    train = np.delete(x[:70], 2)
    assert [s.meta["start"] for s in samples] == list(range(70, 86))
    np.testing.assert_allclose(samples[0].series[0], (x[70:80] - train.mean()) / train.std(), rtol=1e-5)
    train_windows = list(TimeSeriesReader(path, lookback=10, horizon=5, columns=["x"], split="train"))
    assert [s.meta["start"] for s in train_windows] == list(range(56))  # row 2 is in look-backs only
    assert {s.meta["columns"][0] for s in TimeSeriesReader(path, lookback=10, horizon=5)} == {"x", "n"}  # no ds
    with pytest.raises(ValueError, match="split must be"):
        TimeSeriesReader(path, lookback=10, horizon=5, split="dev")


# ------------------------------------------------------------------------------------ from_records
def test_from_records_matches_file_readers(media: Path, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "llava.jsonl", LLAVA_GOOD + [BAD_LLAVA["unknown_role"]])
    from_file = list(LlavaReader(path, image_folder=media))
    reader = from_records(LLAVA_GOOD + [BAD_LLAVA["unknown_role"]], "llava", image_folder=media, name="mix")
    from_memory = list(reader)
    assert strip_source(from_memory) == strip_source(from_file)
    assert [s.source for s in from_memory] == [f"mix[{i}]" for i in range(4)]
    assert reader.report.skipped == {"unknown_role": 1}
    assert reader.report.examples[0].source == "mix[4]"

    chat = [user_parts({"type": "text", "text": "hi"})]
    (sample,) = from_records(chat, "openai")
    assert sample.source == "dataset[0]" and sample.messages[0] == Message("user", "hi")
    (asr,) = from_records([{"audio": {"array": [0.0, 0.5], "sampling_rate": 8000}, "text": "t"}], "asr")
    np.testing.assert_array_equal(asr.audios[0][0], np.array([0.0, 0.5], dtype=np.float32))
    assert asr.audios[0][1] == 8000
    with pytest.raises(TypeError):
        from_records(chat, "openai", image_folder=media)
    with pytest.raises(ValueError, match="format"):
        from_records(chat, "vqa")  # type: ignore[arg-type]


def test_from_records_passes_pil_images_through() -> None:
    picture = Image.new("RGB", (3, 3), (0, 255, 0))
    records = [{"image": picture, "conversations": conv(("human", "What?"), ("gpt", "Green."))}]
    (sample,) = from_records(records, "llava")
    assert sample.images == [picture] and sample.messages[0].content == "<image>\nWhat?"


def test_from_records_on_hf_dataset() -> None:
    datasets = pytest.importorskip("datasets", reason="HF datasets not installed")
    picture = Image.new("RGB", (4, 4), (0, 0, 255))
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "image": datasets.Image(),
            "conversations": [{"from": datasets.Value("string"), "value": datasets.Value("string")}],
        }
    )
    data = datasets.Dataset.from_list(
        [
            {"id": "a", "image": picture, "conversations": conv(("human", "<image>\nColour?"), ("gpt", "Blue."))},
            {"id": "b", "image": None, "conversations": conv(("human", "Hi"), ("gpt", "Hello"))},
            {"id": "c", "image": None, "conversations": []},
        ],
        features=features,
    )
    reader = from_records(data, "llava", name="hf")
    first, second = reader
    assert first.source == "hf[0]" and first.meta == {"id": "a"}
    assert first.images[0].size == (4, 4) and first.images[0].getpixel((0, 0)) == (0, 0, 255)
    assert second.images == [] and second.messages[1] == Message("assistant", "Hello")
    assert reader.report.skipped == {"empty_conversation": 1}


def test_from_records_on_hf_columnar_and_openai_datasets() -> None:
    datasets = pytest.importorskip("datasets", reason="HF datasets not installed")
    turns = datasets.Sequence({"from": datasets.Value("string"), "value": datasets.Value("string")})
    columnar = datasets.Dataset.from_list(  # Sequence({...}) yields a dict of lists per row
        [{"conversations": {"from": ["human", "gpt"], "value": ["Hi", "Hello"]}}],
        features=datasets.Features({"conversations": turns}),
    )
    (sample,) = from_records(columnar, "llava")
    assert sample.messages == [Message("user", "Hi"), Message("assistant", "Hello")]

    picture = Image.new("RGB", (2, 2), (9, 9, 9))
    part = {"type": datasets.Value("string"), "text": datasets.Value("string")}
    message = {"role": datasets.Value("string"), "content": datasets.List(part)}
    trl_style = datasets.Dataset.from_list(  # TRL's vision SFT layout: payload-less parts + an images column
        [
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Colour?"}]},
                    {"role": "assistant", "content": [{"type": "text", "text": "Grey."}]},
                ],
                "images": [picture],
            }
        ],
        features=datasets.Features({"messages": datasets.List(message), "images": datasets.List(datasets.Image())}),
    )
    (chat,) = from_records(trl_style, "openai", allow_local_paths=False)
    assert chat.messages == [Message("user", "<image>\nColour?"), Message("assistant", "Grey.")]
    assert chat.images[0].getpixel((0, 0)) == (9, 9, 9)


def test_data_error_pickles_with_its_fields() -> None:
    error = pickle.loads(pickle.dumps(DataError("f.jsonl:3", "bad_json", "invalid JSON")))
    assert (error.source, error.reason, error.detail, str(error)) == (
        "f.jsonl:3",
        "bad_json",
        "invalid JSON",
        "f.jsonl:3: invalid JSON",
    )


def test_every_tested_reason_is_documented() -> None:
    assert set(BAD_LLAVA) | set(BAD_OPENAI) | set(BAD_ASR) <= set(REASONS)


# A file that mixes formats: each record of another format after the file's first records is named as such.
MIXED = {  # reader: (its format's record, a record of another format, what the message says of the other)
    "qa": ({"image": "red.png", "question": "Colour?", "answer": "red"},
           {"image": "red.png", "conversations": conv(("human", "<image>\nColour?"), ("gpt", "red"))},
           "no 'question' (fields: ['conversations', 'image']); the file mixes formats: it looks like LLaVA data "
           "(format: llava)"),
    "llava": ({"image": "red.png", "conversations": conv(("human", "<image>\nColour?"), ("gpt", "red"))},
              {"image": "red.png", "question": "Colour?", "answer": "red"},
              "no 'conversations' list; the file mixes formats: it looks like question-answer data (format: qa)"),
    "openai": ({"messages": [{"role": "user", "content": "Colour?"}, {"role": "assistant", "content": "red"}]},
               {"conversations": conv(("human", "Colour?"), ("gpt", "red"))},
               "no 'messages' list; the file mixes formats: it looks like LLaVA data (format: llava)"),
    "sharegpt": ({"conversations": conv(("human", "<image>Colour?"), ("gpt", "red")), "images": ["red.png"]},
                 {"conversations": conv(("human", "<image>Colour?"), ("gpt", "red")), "image": "red.png"},
                 "'image' is not a ShareGPT column: its images are the 'images' list; the file mixes formats: it "
                 "looks like LLaVA data (format: llava)"),
    "asr": ({"audio_filepath": "tone.wav", "text": "a tone"},
            {"audio": "tone.wav", "question": "What is it?", "answer": "a tone"},
            "no transcript field (one of text, transcript, sentence, transcription); the file mixes formats: it looks "
            "like question-answer data (format: qa)"),
}
READERS = {"qa": (QAReader, "media_folder"), "llava": (LlavaReader, "image_folder"),
           "openai": (OpenAIChatReader, "media_folder"), "sharegpt": (SharegptReader, "media_folder"),
           "asr": (AsrManifestReader, "audio_root")}


@pytest.mark.parametrize("data_format", sorted(MIXED))
def test_a_record_of_another_format_in_a_file_is_named_as_the_file_mixing_formats(data_format, media, tmp_path):
    reader_class, folder = READERS[data_format]
    good, other, says = MIXED[data_format]
    name = {"qa": "question-answer", "llava": "LLaVA", "openai": "OpenAI chat", "sharegpt": "LLaMA-Factory ShareGPT",
            "asr": "ASR manifest"}[data_format]
    tail = (f", but the records before it, from line 1 on, are {name} records (format: {data_format}); write each "
            "format to a file of its own (docs/custom-data.md)")
    path = write_jsonl(tmp_path / "mixed.jsonl", [good, good, other, good])
    with pytest.raises(DataError) as info:
        list(reader_class(path, on_error="raise", **{folder: media}))
    assert str(info.value) == f"{path}:3: {says}{tail}" and info.value.reason == "other_format"
    reader = reader_class(path, **{folder: media})
    assert [s.source for s in reader] == [f"{path}:1", f"{path}:2", f"{path}:4"]
    assert reader.report.skipped == {"other_format": 1}
    # A file of the other format as a whole is named as such (not as mixing formats), from its first record.
    alone = write_jsonl(tmp_path / "other.jsonl", [other])
    with pytest.raises(DataError, match=rf"^{alone}:1: .*, but this reads {name} records \(docs/custom-data.md\)$"):
        list(reader_class(alone, on_error="raise", **{folder: media}))


@pytest.mark.parametrize("data_format, other_format", [("qa", "llava"), ("llava", "qa"), ("openai", "llava"),
                                                       ("sharegpt", "llava"), ("asr", "qa")])
def test_every_reader_tells_a_file_of_another_format_among_its_files(data_format, other_format, media, tmp_path):
    """Each reader records each file's format as it read it (`ReadReport.formats`): a file every record of
    which it refused as another format's is that format, and the pass is `MixedFormats` naming it and a
    file of the reader's format, whichever comes first (training's data.train check)."""
    reader_class, folder = READERS[data_format]
    good, other, _ = MIXED[data_format]
    other_file, good_file = write_jsonl(tmp_path / "b.jsonl", [other]), write_jsonl(tmp_path / "a.jsonl", [good, good])
    reader = reader_class([other_file, good_file], **{folder: media})
    assert len(list(reader)) == 2 and reader.report.skipped == {"other_format": 1}
    assert reader.report.formats == {str(other_file): other_format, str(good_file): data_format}
    with pytest.raises(MixedFormats) as info:
        reader.report.check_one_format(data_format)
    assert str(info.value) == (f"{other_file} holds {other_format} records, but {good_file} holds {data_format} "
                               "records: one reader reads them all, and it would skip every record of the other "
                               "format; give files of one format")


def test_a_file_counts_as_another_format_only_when_every_record_was_refused_as_that_formats(media, tmp_path):
    """A file some of whose parsed records are refused for another reason (a missing image) is not a file of
    another format, even when no record converted: it takes no part in `check_one_format`, and its skipped
    records say what is wrong. A line that does not parse (truncated JSON) takes no part: a file of another
    format with one broken line is still that format's, named as such, not skipped with a warning."""
    good, other, _ = MIXED["qa"]
    fine = write_jsonl(tmp_path / "a.jsonl", [good])
    missing = write_jsonl(tmp_path / "bad.jsonl", [other, {**good, "image": "gone.png"}])
    reader = QAReader([fine, missing], media_folder=media)
    assert [s.source for s in reader] == [f"{fine}:1"]
    assert reader.report.formats == {str(fine): "qa"}
    reader.report.check_one_format("qa")  # no MixedFormats: bad.jsonl is no LLaVA file
    assert dict(reader.report.skipped) == {"other_format": 1, "missing_media": 1}
    for lines in ([json.dumps(other), '{"image": '], ['{"image": ', json.dumps(other)]):
        broken = tmp_path / "broken.jsonl"
        broken.write_text("\n".join(lines) + "\n")
        reader = QAReader([fine, broken], media_folder=media)
        assert [s.source for s in reader] == [f"{fine}:1"]
        assert dict(reader.report.skipped) == {"other_format": 1, "bad_json": 1}
        assert reader.report.formats == {str(fine): "qa", str(broken): "llava"}
        with pytest.raises(MixedFormats, match=f"^{broken} holds llava records, but {fine} holds qa records: "):
            reader.report.check_one_format("qa")
    # every record refused as another format's: that format, whatever the order of the files
    whole = write_jsonl(tmp_path / "whole.jsonl", [other, other])
    reader = QAReader([fine, whole], media_folder=media)
    list(reader)
    assert reader.report.formats == {str(fine): "qa", str(whole): "llava"}


def test_a_json_array_that_mixes_formats_names_the_record_by_index(media, tmp_path):
    good, other, _ = MIXED["qa"]
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps([{"id": "x", "question": "Colour?", "answer": "red"}, good, other]))
    with pytest.raises(DataError, match=rf"^{path}:\[2\]: .* the records before it, from record \[0\] on, are "):
        list(QAReader(path, on_error="raise", media_folder=media))


def test_an_openai_file_with_a_later_sharegpt_record_is_named_as_mixing_formats(media, tmp_path):
    good = MIXED["openai"][0]
    sharegpt = {"messages": [{"role": "user", "content": "<image>Colour?"}, {"role": "assistant", "content": "red"}],
                "images": ["red.png"]}
    path = write_jsonl(tmp_path / "mixed.jsonl", [good, sharegpt])
    with pytest.raises(DataError) as info:
        list(OpenAIChatReader(path, on_error="raise", media_folder=media))
    assert info.value.reason == "marker_mismatch" and str(info.value) == (
        f"{path}:2: 1 image(s) of the record's 'images' list are not referenced; the file mixes formats: it "
        "looks like LLaMA-Factory ShareGPT data (format: sharegpt), but the records before it, from line 1 on, are "
        "OpenAI chat records (format: openai); write each format to a file of its own (docs/custom-data.md)")


def test_a_qa_record_whose_media_sit_under_another_field_name_is_reported_not_read_as_text(media, tmp_path):
    """'img' or 'image_path' in a qa record: the reader read the record as text alone, so training and `eval --task
    custom` silently went without the images. 'images' (LLaVA's and ShareGPT's name) is the record's list of images.
    A record with its media, or other fields (an image id, a question naming a file), reads as before."""
    records = [{"images": ["red.png"], "question": "Colour?", "answer": "red"},
               {"img": "red.png", "question": "Colour?", "answer": "red"},
               {"image": "red.png", "image_path": "red.png", "image_id": 7, "question": "Colour?", "answer": "red"},
               {"question": "What is in red.png?", "answer": "red.png", "source": "notes"}]
    path = write_jsonl(tmp_path / "train.jsonl", records)
    reader = QAReader(path, media_folder=media)
    assert [(s.source, len(s.images)) for s in reader] == [(f"{path}:1", 1), (f"{path}:3", 1), (f"{path}:4", 0)]
    assert reader.report.skipped == {"unknown_field": 1}
    with pytest.raises(DataError) as info:
        list(QAReader(path, on_error="raise", media_folder=media))
    assert info.value.reason == "unknown_field" and str(info.value) == (
        f"{path}:2: field 'img' names image files, but qa records read media only from 'image', 'audio', "
        "'series', 'video' (each one item or a list; lists also as 'images', 'audios', 'videos'): rename it to "
        "'image', or drop it to train on the text alone (fields: ['answer', 'img', 'question'])")


def test_overlapping_data_patterns_give_each_file_once_with_a_warning(tmp_path, monkeypatch, caplog):
    """Two wildcards that both match a file (or one file named twice, './a.jsonl' and 'a.jsonl') listed it
    twice: training read its records twice, and an evaluation scored them twice."""
    from modrwkv.data.readers import base
    from modrwkv.evaluation.tasks import CustomTask

    base._warn_once.cache_clear()  # said once per process: an earlier test (or a rerun) may have said these
    monkeypatch.chdir(tmp_path)
    for name in ("a", "ab", "b"):
        Path(f"{name}.jsonl").write_text(json.dumps({"question": f"Which is {name}?", "answer": name}) + "\n")
    with caplog.at_level(logging.WARNING, logger="modrwkv.data.files"):
        assert expand_paths(["a*.jsonl", "*b.jsonl"], "data.train") == ["a.jsonl", "ab.jsonl", "b.jsonl"]
    assert [r.getMessage() for r in caplog.records] == [
        "data.train: ab.jsonl is given by both 'a*.jsonl' and '*b.jsonl'; it is read once"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="modrwkv.data.files"):
        assert expand_paths(["a.jsonl", "b.jsonl", "./a.jsonl", "*.jsonl"], "--data") == ["a.jsonl", "b.jsonl",
                                                                                         "ab.jsonl"]
    assert [r.getMessage() for r in caplog.records] == [
        "--data: ./a.jsonl is given by both 'a.jsonl' and './a.jsonl'; it is read once",
        "--data: a.jsonl is given by both 'a.jsonl' and '*.jsonl'; it is read once",
        "--data: b.jsonl is given by both 'b.jsonl' and '*.jsonl'; it is read once"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="modrwkv.data.files"):
        assert expand_paths(["*.jsonl", "*.jsonl"], "data.val") == ["a.jsonl", "ab.jsonl", "b.jsonl"]
    assert [r.getMessage() for r in caplog.records] == [
        "data.val: a.jsonl, ab.jsonl, b.jsonl are given by '*.jsonl' twice; each is read once"]
    # a caller: `eval --task custom` reads each record once, known by its file
    samples = CustomTask().load([Path("a*.jsonl"), Path("*b.jsonl")], "all")
    assert [(s.id, s.prompt) for s in samples] == [("a.jsonl:1", "Which is a?"), ("ab.jsonl:1", "Which is ab?"),
                                                   ("b.jsonl:1", "Which is b?")]
