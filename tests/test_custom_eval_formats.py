"""`eval --task custom` on a held-out split in the format it was trained in: the same samples written
as question-answer, LLaVA, OpenAI chat and LLaMA-Factory ShareGPT records are asked the same prompts
and score the same with a tiny random model; a system prompt and earlier turns reach the model as
chat gives them; an ASR manifest is scored by WER; bad records are named by file:line and field."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from eval_fixtures import scripted_model
from test_pipeline import tiny_model_dir, tiny_pipeline

from modrwkv.cli import main
from modrwkv.evaluation import ModelSpec, run_eval
from modrwkv.evaluation.metrics import normalize_english
from modrwkv.evaluation.tasks import BenchmarkFileError, CustomTask

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUESTIONS = [("Which digit is this?", "7"), ("What colour is it?", "red"), ("Is it round?", "no")]
SYSTEM = "You are a careful assistant who answers questions about pictures."


def write(folder: Path, name: str, records: list) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(len(QUESTIONS)):
        pixels = np.random.default_rng(index).integers(0, 255, (24, 24, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index}.png")
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def qa(i, question, answer):
    return {"id": f"s{i}", "image": f"{i}.png", "question": question, "answer": answer}


def llava(i, question, answer):
    return {"id": f"s{i}", "image": f"{i}.png", "conversations": [
        {"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}]}


def openai(i, question, answer, system=None):
    head = [{"role": "system", "content": system}] if system else []
    return {"id": f"s{i}", "messages": [*head, {"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"{i}.png"}}, {"type": "text", "text": question}]},
        {"role": "assistant", "content": answer}]}


def sharegpt(i, question, answer, system=None):
    record = {"id": f"s{i}", "conversations": [{"from": "human", "value": f"<image>\n{question}"},
                                               {"from": "gpt", "value": answer}], "images": [f"{i}.png"]}
    return {**record, "system": system} if system else record


def evaluate(tmp_path: Path, name: str, records: list) -> list[dict]:
    data = write(tmp_path / "data", name, records)
    run_eval(CustomTask(), data, tmp_path / "runs" / name, model=ModelSpec(str(tiny_model_dir())),
             load_pipeline=tiny_pipeline, progress=False, max_new_tokens=6)
    return [json.loads(line) for line in (tmp_path / "runs" / name / "predictions.jsonl").read_text().splitlines()]


def asked(predictions: list[dict]) -> list[tuple]:
    return [(p["id"], p.get("context"), p["prompt"], p["prediction"], p["score"]) for p in predictions]


def test_the_same_samples_in_every_training_format_get_the_same_prompts_and_scores(tmp_path):
    expected = evaluate(tmp_path, "qa.jsonl", [qa(i, q, a) for i, (q, a) in enumerate(QUESTIONS)])
    assert [p["prompt"] for p in expected] == [f"<image>\n{q}" for q, _ in QUESTIONS]
    assert all("context" not in p for p in expected)
    for writer in (llava, openai, sharegpt):
        found = evaluate(tmp_path, f"{writer.__name__}.jsonl", [writer(i, q, a) for i, (q, a) in enumerate(QUESTIONS)])
        assert asked(found) == asked(expected), writer.__name__


def test_a_system_prompt_is_the_context_the_model_reads_first(tmp_path):
    records = [sharegpt(i, q, a, SYSTEM) for i, (q, a) in enumerate(QUESTIONS)]
    found = evaluate(tmp_path, "sharegpt.jsonl", records)
    assert [p["context"] for p in found] == [[{"role": "system", "content": SYSTEM}]] * len(QUESTIONS)
    assert asked(found) == asked(evaluate(tmp_path, "openai.jsonl", [openai(i, q, a, SYSTEM)
                                                                     for i, (q, a) in enumerate(QUESTIONS)]))
    without = evaluate(tmp_path, "no-system.jsonl", [sharegpt(i, q, a) for i, (q, a) in enumerate(QUESTIONS)])
    assert [p["prediction"] for p in found] != [p["prediction"] for p in without]  # the model did read it
    pipe = tiny_pipeline()  # the independent expectation: what chat replies to the same conversation
    for prediction, (i, (question, _)) in zip(found, enumerate(QUESTIONS), strict=True):
        reply = pipe.chat([{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"<image>\n{question}"}],
                          images=[str(tmp_path / "data" / f"{i}.png")], temperature=0, max_new_tokens=6)
        assert prediction["prediction"] == reply.strip()


def test_a_multi_turn_record_is_asked_its_last_question_after_the_earlier_turns(tmp_path):
    record = {"id": "m", "image": "0.png", "conversations": [
        {"from": "human", "value": "<image>\nWhat is this?"}, {"from": "gpt", "value": "A digit."},
        {"from": "human", "value": "Which one?"}, {"from": "gpt", "value": "7"}]}
    data = write(tmp_path / "data", "multi.jsonl", [record])
    [sample] = CustomTask().load(data, "all")
    assert sample.context == [{"role": "user", "content": "<image>\nWhat is this?"},
                              {"role": "assistant", "content": "A digit."}]
    assert sample.prompt == "Which one?" and sample.reference["answers"] == ["7"]
    assert sample.images == [tmp_path / "data" / "0.png"]
    [prediction] = evaluate(tmp_path, "multi.jsonl", [record])
    reply = tiny_pipeline().chat([*sample.context, {"role": "user", "content": "Which one?"}],
                                 images=[str(tmp_path / "data" / "0.png")], temperature=0, max_new_tokens=6)
    assert prediction["prediction"] == reply.strip() and prediction["context"] == sample.context


@pytest.mark.parametrize("bad, message", [
    ({"conversations": [{"from": "human", "value": "<image>\nQ?"}, {"from": "gpt", "value": None}],
      "images": ["0.png"]}, "bad.jsonl:2: conversations[1].value is null"),
    ({"conversations": [{"from": "human", "value": "<image>\nQ?"}], "images": ["0.png"]},
     "bad.jsonl:2: the last turn is a user turn; a held-out record ends with the assistant's answer"),
    ({"conversations": [{"from": "human", "value": "<image>\nQ?"}, {"from": "gpt", "value": "7"}],
      "images": ["missing.png"]}, "bad.jsonl:2: media file not found"),
])
def test_a_bad_record_is_named_by_file_line_and_field(tmp_path, capsys, bad, message):
    data = write(tmp_path / "data", "bad.jsonl", [sharegpt(0, "Q?", "7", SYSTEM), bad])
    with pytest.raises(BenchmarkFileError, match="^" + re.escape(str(tmp_path / "data" / message))):
        CustomTask().load(data, "all")
    code = main(["eval", "--task", "custom", "--data", str(data), "--model", str(tiny_model_dir()),
                 "--output", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code != 0 and str(tmp_path / "data" / message) in err and "Traceback" not in err


def word_edits(reference: list[str], hypothesis: list[str]) -> int:
    """Levenshtein distance over words (substitutions, deletions, insertions), by the textbook table."""
    row = list(range(len(hypothesis) + 1))
    for i, word in enumerate(reference, 1):
        previous, row[0] = row[0], i
        for j, other in enumerate(hypothesis, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (word != other))
    return row[-1]


def test_word_edits_counts_by_hand():
    assert word_edits("a b c".split(), "a x c d".split()) == 2  # one substitution, one insertion
    assert word_edits("a b c".split(), []) == 3 and word_edits([], "a".split()) == 1


def test_an_asr_manifest_is_asked_to_transcribe_and_scored_by_corpus_wer(tmp_path):
    import soundfile

    folder = tmp_path / "data"
    folder.mkdir()
    transcripts = ["Three red cats.", "one blue dog sleeps", "Mr. Smith's colour"]
    for index in range(len(transcripts)):  # different noise per clip, at 16 kHz (what Whisper reads)
        noise = 0.1 * np.random.default_rng(index).standard_normal(8000 + 2000 * index)
        soundfile.write(folder / f"{index}.wav", noise.astype(np.float32), 16000)
    manifest = folder / "test.jsonl"
    manifest.write_text("".join(json.dumps({"audio_filepath": f"{i}.wav", "text": text, "duration": 0.5 + i / 8})
                                + "\n" for i, text in enumerate(transcripts)))
    samples = CustomTask().load(manifest, "all")
    assert [s.prompt for s in samples] == ["<audio>\nTranscribe the audio."] * 3
    assert [s.audio for s in samples] == [[folder / f"{i}.wav"] for i in range(3)]
    assert [s.reference for s in samples] == [{"metric": "wer", "answers": [t]} for t in transcripts]

    result = run_eval(CustomTask(), manifest, tmp_path / "run", model=ModelSpec(str(tiny_model_dir())),
                      load_pipeline=tiny_pipeline, progress=False, max_new_tokens=6)
    predictions = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    pipe = tiny_pipeline()  # each prediction is what chat replies to the clip
    for index, prediction in enumerate(predictions):
        reply = pipe.chat([{"role": "user", "content": "<audio>\nTranscribe the audio."}],
                          audio=[str(folder / f"{index}.wav")], temperature=0, max_new_tokens=6)
        assert prediction["prediction"] == reply.strip()
    # Corpus WER by hand: all word edits over all reference words, after Whisper's normalisation
    # ("three" -> "3" but a lone "one" stays, "Mr." -> "mister", "'s" -> " is", "colour" -> "color", no final period).
    references = [normalize_english(t).split() for t in transcripts]
    assert references == [["3", "red", "cats"], ["one", "blue", "dog", "sleeps"], ["mister", "smith", "is", "color"]]
    edits = sum(word_edits(r, normalize_english(p["prediction"]).split())
                for r, p in zip(references, predictions, strict=True))
    assert edits > 0
    assert result.summary["headline"] == {"metric": "wer", "label": "WER (%)", "value": pytest.approx(100 * edits / 11)}


# Several accepted answers and multiple choice: `answers` / `choices` beside a conversation mean what they
# mean in a question-answer record; the conversation's user turn lists the options as it is asked.
CHOICES = [("Which digit is this?", ["7", "1"], "7"), ("What colour is it?", ["blue", "red", "green"], "C"),
           ("Is it round?", ["yes", "no"], "no")]
VQA = [("What colour is it?", ["red", "red", "dark red"]), ("What is it?", ["cat", "cat", "kitten", "dog"]),
       ("How many are there?", ["2", "2", "3"])]


def with_options(question: str, choices: list[str]) -> str:
    return question + "".join(f"\n{letter}. {choice}" for letter, choice in zip("ABCDEFG", choices))


def sharegpt_info(i, question, answer):
    """A ShareGPT record in the columns and tags a dataset_info.json names (see `evaluate_all`)."""
    return {"id": f"s{i}", "dialog": [{"speaker": "person", "text": f"<image>\n{question}"},
                                      {"speaker": "bot", "text": answer}], "pictures": [f"{i}.png"]}


CONVERSATIONS = (llava, openai, sharegpt, sharegpt_info)


def evaluate_all(tmp_path: Path, name: str, qa_records: list, conversations: list[tuple[str, str, dict]]) -> dict:
    """The same samples as qa records and in each conversation format (user turn, last assistant turn,
    the top-level fields beside them): {format: (loaded samples, predictions, summary)}, after checking
    that every format loads the same samples as qa, asks the same and scores the same."""
    folder = tmp_path / "data"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset_info.json").write_text(json.dumps({"held_out": {
        "file_name": f"{name}-sharegpt_info.jsonl", "formatting": "sharegpt",
        "columns": {"messages": "dialog", "images": "pictures"},
        "tags": {"role_tag": "speaker", "content_tag": "text", "user_tag": "person", "assistant_tag": "bot"}}}))
    files = {"qa": qa_records}
    for writer in CONVERSATIONS:
        files[writer.__name__] = [{**writer(i, question, answer), **fields}
                                  for i, (question, answer, fields) in enumerate(conversations)]
    found = {}
    for data_format, records in files.items():
        data = write(folder, f"{name}-{data_format}.jsonl", records)
        samples = CustomTask().load(data, "all")
        result = run_eval(CustomTask(), data, tmp_path / "runs" / data.stem, model=ModelSpec(str(tiny_model_dir())),
                          load_pipeline=tiny_pipeline, progress=False, max_new_tokens=6)
        predictions = [json.loads(line) for line in (data.parent.parent / "runs" / data.stem /
                                                       "predictions.jsonl").read_text().splitlines()]
        found[data_format] = (samples, predictions, result.summary["metrics"])
    samples, predictions, metrics = found["qa"]
    for data_format, (other, other_predictions, other_metrics) in found.items():
        assert [fields_of(s) for s in other] == [fields_of(s) for s in samples], data_format
        assert asked(other_predictions) == asked(predictions) and other_metrics == metrics, data_format
    return found


def fields_of(sample) -> tuple:
    return sample.id, sample.context, sample.prompt, sample.reference, sample.images


def test_choices_beside_a_conversation_score_as_in_a_question_answer_record(tmp_path):
    qa_records = [{"id": f"s{i}", "image": f"{i}.png", "question": q, "choices": c, "answer": a}
                  for i, (q, c, a) in enumerate(CHOICES)]
    # The answer as the option's text ("7", "no") or its letter ("C"), in qa and in the assistant turn alike.
    conversations = [(with_options(q, c), a, {"choices": c}) for q, c, a in CHOICES]
    found = evaluate_all(tmp_path, "choice", qa_records, conversations)
    samples, _, metrics = found["qa"]
    assert [s.prompt for s in samples] == [f"<image>\n{with_options(q, c)}" for q, c, _ in CHOICES]
    assert [s.reference for s in samples] == [{"metric": "choice", "answers": [letter], "choices": c}
                                              for letter, (_, c, _) in zip("ACB", CHOICES, strict=True)]
    assert metrics["metric"] == "choice"
    # Scored as the choice metric reads replies: A right, B where C is right, "B. no" right.
    replies = [{"reference": s.reference, "prediction": p}
               for s, p in zip(found["sharegpt_info"][0], ["A", "(B)", "B. no"], strict=True)]
    assert CustomTask().summarize(replies) == {"accuracy": pytest.approx(200 / 3), "metric": "choice"}


def test_several_accepted_answers_beside_a_conversation_score_as_in_a_question_answer_record(tmp_path):
    qa_records = [{"id": f"s{i}", "image": f"{i}.png", "question": q, "answers": a} for i, (q, a) in enumerate(VQA)]
    # The assistant turn is the training target (the first answer, as qa trains on it); `answers` the reference.
    found = evaluate_all(tmp_path, "vqa", qa_records, [(q, a[0], {"answers": a}) for q, a in VQA])
    samples, _, metrics = found["qa"]
    assert [s.reference for s in samples] == [{"metric": "vqa", "answers": a} for _, a in VQA]
    assert metrics["metric"] == "vqa"
    # VQA accuracy by hand (leave one answer out, min(matches / 3, 1), averaged): "red" matches 1, 1, 2 of
    # the others -> 4/9; "kitten" 1/3 three times and 0 -> 1/4; "4" nothing -> 0.
    replies = [{"reference": s.reference, "prediction": p}
               for s, p in zip(found["openai"][0], ["red", "kitten", "4"], strict=True)]
    assert CustomTask().summarize(replies) == {"accuracy": pytest.approx(100 * (4 / 9 + 1 / 4) / 3), "metric": "vqa"}


def test_the_same_file_trains_with_its_answers_and_choices_fields_left_aside(tmp_path):
    from modrwkv.data.readers import LlavaReader, OpenAIChatReader, SharegptReader

    extra = {"choices": ["blue", "red", "green"], "answers": ["C", "green"], "metric": "choice"}
    for writer, reader in ((llava, LlavaReader), (openai, OpenAIChatReader), (sharegpt, SharegptReader)):
        records = [writer(i, with_options(q, c), a) for i, (q, c, a) in enumerate(CHOICES)]
        plain = list(reader(write(tmp_path, f"{writer.__name__}.jsonl", records), on_error="raise"))
        marked = list(reader(write(tmp_path, f"{writer.__name__}-extra.jsonl", [{**r, **extra} for r in records]),
                             on_error="raise"))
        assert [(s.messages, s.images, s.meta) for s in marked] == [(s.messages, s.images, s.meta) for s in plain]
        assert [m.content for s in plain for m in s.messages if m.role == "assistant"] == ["7", "C", "no"]


@pytest.mark.parametrize("fields, message", [
    ({"choices": ["blue", "red", "green"]}, "'choices'[2] 'green' is not in the question: a conversation is asked "
                                            "as written, so its user turn lists the options"),
    ({"choices": ["red", "blue"]}, "answer 'C' is neither an option letter (A, B) nor one of the choices"),
    ({"answers": []}, "'answers' is an empty list"),
    ({"answers": "red"}, "'answers' must be list, got str"),
])
def test_bad_answers_or_choices_beside_a_conversation_are_named(tmp_path, fields, message):
    record = {**llava(0, "What colour is it?\nA. blue\nB. red", "C"), **fields}
    data = write(tmp_path / "data", "bad.jsonl", [record])
    with pytest.raises(BenchmarkFileError, match="^" + re.escape(f"{data}:1: {message}")):
        CustomTask().load(data, "all")


@pytest.mark.parametrize("first, then, says", [
    (qa, llava, "no 'question' (fields: ['conversations', 'id', 'image']); the file mixes formats: it looks like "
                "LLaVA data (format: llava), but the records before it, from line 1 on, are question-answer records "
                "(format: qa, detected from the first record)"),
    (openai, qa, "no 'messages' list; the file mixes formats: it looks like question-answer data (format: qa), but "
                 "the records before it, from line 1 on, are OpenAI chat records (format: openai, detected from the "
                 "first record)"),
    (sharegpt_info, sharegpt, "no 'dialog' list (the messages column; fields: ['conversations', 'id', 'images']); "
                              "the file mixes formats: it looks like LLaVA data (format: llava), but the records "
                              "before it, from line 1 on, are LLaMA-Factory ShareGPT records (format: sharegpt, as "
                              "dataset_info.json says)"),
])
def test_a_held_out_file_that_mixes_formats_is_named_by_file_line_and_both_formats(tmp_path, capsys, first, then,
                                                                                   says):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "dataset_info.json").write_text(json.dumps({"held_out": {
        "file_name": "mixed.jsonl", "formatting": "sharegpt", "columns": {"messages": "dialog", "images": "pictures"},
        "tags": {"role_tag": "speaker", "content_tag": "text", "user_tag": "person", "assistant_tag": "bot"}}})
                                          if first is sharegpt_info else "{}")
    records = [first(0, *QUESTIONS[0]), first(1, *QUESTIONS[1]), then(2, *QUESTIONS[2])]
    data = write(folder, "mixed.jsonl", records)
    expected = f"{data}:3: {says}; write each format to a file of its own (docs/custom-data.md)"
    with pytest.raises(BenchmarkFileError) as info:
        CustomTask().load(data, "all")
    assert str(info.value) == expected
    code = main(["eval", "--task", "custom", "--data", str(data), "--model", str(tiny_model_dir()),
                 "--output", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code != 0 and expected in err and "Traceback" not in err


def test_eval_of_a_custom_file_runs_without_the_train_extra(tmp_path):
    """`pip install 'modrwkv[eval]'` (lmms-eval's users, say) has no lightning: `modrwkv eval --task
    custom` names its run folder after the data without importing training (it refused to run)."""
    data = write(tmp_path / "digits", "test.jsonl", [qa(0, "Which digit is this?", "7")])
    script = ("import sys; sys.modules['lightning'] = None; from modrwkv.cli import main; "
              f"sys.exit(main(['eval', '--task', 'custom', '--data', {str(data)!r}, '--model', {str(tiny_model_dir())!r}, "
              "'--limit', '1', '--no-progress']))")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "runs" / "eval" / "custom-digits" / "summary.json").is_file()


def test_duplicate_ids_are_refused_naming_the_first(tmp_path, capsys):
    records = [qa(0, *QUESTIONS[0]), qa(1, *QUESTIONS[1]), qa(1, *QUESTIONS[2]), qa(0, *QUESTIONS[0])]
    data = write(tmp_path / "data", "dup.jsonl", records)
    code = main(["eval", "--task", "custom", "--data", str(data), "--model", str(tiny_model_dir()),
                 "--output", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert f"{data}: duplicate sample ids in the custom all split (the first: 's0', given to 2 samples)" in err


@pytest.mark.parametrize("odd_first", [True, False])
def test_a_file_whose_format_is_not_told_is_named_by_its_own_problem_among_files_of_a_format(tmp_path, odd_first):
    """A file of no known format (or an empty one) beside a LLaVA file takes no part in the files' one
    format: it is read as question-answer records, whose reader names what is missing, not called a file
    of qa records mixed with llava ones."""
    odd = write(tmp_path / "data", "odd.jsonl", [{"img": "0.png", "prompt": "Which digit is this?", "reply": "7"}])
    fine = write(tmp_path / "data", "l.jsonl", [llava(0, *QUESTIONS[0])])
    with pytest.raises(BenchmarkFileError) as info:
        CustomTask().load([odd, fine] if odd_first else [fine, odd], "all")
    assert str(info.value) == f"{odd}:1: no 'question' (fields: ['img', 'prompt', 'reply'])"
    empty = tmp_path / "data" / "empty.jsonl"  # no record: nothing to ask, nothing mixed
    empty.write_text("")
    samples = CustomTask().load([fine, empty] if odd_first else [empty, fine], "all")
    assert [(s.id, s.reference["answers"]) for s in samples] == [("s0", ["7"])]


def test_files_of_one_name_in_two_folders_name_their_records_by_their_path_from_the_shared_folder(tmp_path):
    """x1/test.jsonl and x2/test.jsonl: a record without an id is "x1/test.jsonl:N" (both were "test.jsonl:1",
    refused as duplicate ids); files of distinct names keep "name:N", and with them earlier runs' ids."""
    first = write(tmp_path / "x1", "test.jsonl", [{"question": "Which digit?", "answer": "7"}] * 2)
    second = write(tmp_path / "x2", "test.jsonl", [{"question": "Which digit?", "answer": "1"}])
    deeper = write(tmp_path / "x2" / "more", "test.jsonl", [{"question": "Which digit?", "answer": "2"}])
    other = write(tmp_path / "x2", "other.jsonl", [{"question": "Which digit?", "answer": "3"}])
    assert [s.id for s in CustomTask().load([first, second, deeper], "all")] == [
        "x1/test.jsonl:1", "x1/test.jsonl:2", "x2/test.jsonl:1", "x2/more/test.jsonl:1"]
    assert [s.id for s in CustomTask().load([first, other], "all")] == ["test.jsonl:1", "test.jsonl:2",
                                                                        "other.jsonl:1"]


def test_a_classifiers_eval_reports_each_answer_and_the_weakest_one(tmp_path, capsys, monkeypatch):
    """Labels (few answers, each shared by several records) get a per-answer table in report.md and
    summary.json, and the run's last lines name the answer answered right least often; a free-form file
    gets neither."""
    model = scripted_model(tmp_path, monkeypatch)
    replies = {"cat": ["cat", "cat", "dog"], "dog": ["dog", "dog", "dog|x"], "bird": ["dog", "dog"]}
    records = [{"question": f"What animal? reply={reply}", "answer": answer}
               for answer, said in replies.items() for reply in said]
    data = tmp_path / "animals.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["eval", "--task", "custom", "--data", str(data), "--model", str(model), "--output",
                 str(tmp_path / "out"), "--no-progress"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "lowest accuracy of an answer: 'bird' 0.0% (0 of 2), wrongly 'dog' 2 times (every answer in report.md)"
    assert out[-2].startswith("custom data all: exact-match accuracy (%) 50.00 over 8 samples")
    report = (tmp_path / "out" / "report.md").read_text()
    assert ("| answer | samples | accuracy (%) | replied | precision (%) | most frequent wrong reply |\n"
            "|---|---:|---:|---:|---:|---|\n"
            "| bird | 2 | 0.0 | 0 | – | dog (2) |\n"
            "| cat | 3 | 66.7 | 2 | 100.0 | dog (1) |\n"
            "| dog | 3 | 66.7 | 5 | 40.0 | dog\\|x (1) |\n") in report
    assert "- replies_outside_answers: 1" in report
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["metrics"]["per_answer"]["dog"] == {"samples": 3, "correct": 2, "recall": 100 * 2 / 3, "replied": 5,
                                                       "precision": 40.0, "confused_with": "dog|x", "confused_count": 1}
    # a free-form file (answers mostly unique): no table, no last line about answers
    data.write_text("".join(json.dumps({"question": f"Q{i}? reply=a{i}", "answer": f"a{i}"}) + "\n" for i in range(4)))
    assert main(["eval", "--task", "custom", "--data", str(data), "--model", str(model), "--output",
                 str(tmp_path / "free"), "--no-progress"]) == 0
    assert "lowest accuracy" not in capsys.readouterr().out
    assert "per_answer" not in json.loads((tmp_path / "free" / "summary.json").read_text())["metrics"]
    assert "| answer |" not in (tmp_path / "free" / "report.md").read_text()


def test_a_multiple_choice_eval_reports_each_right_answer_against_the_selected_one(tmp_path, capsys, monkeypatch):
    """A model that always selects "A" scores near chance (2 of 6 here, 3 options): per right answer, the
    breakdown shows it, in report.md, summary.json and the last line; a reply that selects no option is
    outside the answers. Counted by hand. With the same options in every record, they are named by text."""
    model = scripted_model(tmp_path, monkeypatch)
    right = ["A", "A", "B", "B", "C", "C"]
    said = ["A", "A", "(A)", "A", "a.", "unsure"]
    records = [{"question": f"Which one? reply={reply}", "choices": [f"x{i}", f"y{i}", f"z{i}"], "answer": answer}
               for i, (answer, reply) in enumerate(zip(right, said))]
    data = write(tmp_path, "choices.jsonl", records)
    assert main(["eval", "--task", "custom", "--data", str(data), "--model", str(model), "--output",
                 str(tmp_path / "out"), "--no-progress"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2].startswith("custom data all: choice accuracy (%) 33.33 over 6 samples")
    assert out[-1] == "lowest accuracy of an answer: 'B' 0.0% (0 of 2), wrongly 'A' 2 times (every answer in report.md)"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())["metrics"]
    assert summary["per_answer"] == {
        "A": {"samples": 2, "correct": 2, "recall": 100.0, "replied": 5, "precision": 40.0, "confused_with": None,
              "confused_count": 0},
        "B": {"samples": 2, "correct": 0, "recall": 0.0, "replied": 0, "precision": None, "confused_with": "A",
              "confused_count": 2},
        "C": {"samples": 2, "correct": 0, "recall": 0.0, "replied": 0, "precision": None, "confused_with": "A",
              "confused_count": 1}}
    assert summary["replies_outside_answers"] == 1  # "unsure" selects no option
    report = (tmp_path / "out" / "report.md").read_text()
    assert ("| right answer | samples | accuracy (%) | selected | precision (%) | most frequent wrong selection |\n"
            "|---|---:|---:|---:|---:|---|\n"
            "| A | 2 | 100.0 | 5 | 40.0 | – |\n"
            "| B | 2 | 0.0 | 0 | – | A (2) |\n"
            "| C | 2 | 0.0 | 0 | – | A (1) |\n") in report
    # the same options in every record: each named by its text, as the prompt lists it
    same = [{**record, "choices": ["cat", "dog", "bird"]} for record in records]
    same[4]["question"] = "Which one? reply=cat"
    data = write(tmp_path, "same.jsonl", same)
    assert main(["eval", "--task", "custom", "--data", str(data), "--model", str(model), "--output",
                 str(tmp_path / "same"), "--no-progress"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == ("lowest accuracy of an answer: 'B. dog' 0.0% (0 of 2), wrongly "
                                                        "'A. cat' 2 times (every answer in report.md)")
    summary = json.loads((tmp_path / "same" / "summary.json").read_text())["metrics"]
    assert list(summary["per_answer"]) == ["A. cat", "B. dog", "C. bird"]
    assert summary["per_answer"]["C. bird"]["confused_with"] == "A. cat"
    # an option that is no record's right answer, always selected: its own row, not "selects no option"
    never = [{**record, "answer": "A" if i < 3 else "B", "question": "Which one? reply=C"}
             for i, record in enumerate(same)]
    data = write(tmp_path, "never.jsonl", never)
    assert main(["eval", "--task", "custom", "--data", str(data), "--model", str(model), "--output",
                 str(tmp_path / "never"), "--no-progress"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == ("lowest accuracy of an answer: 'A. cat' 0.0% (0 of 3), wrongly "
                                                        "'C. bird' 3 times (every answer in report.md)")
    summary = json.loads((tmp_path / "never" / "summary.json").read_text())["metrics"]
    assert summary["replies_outside_answers"] == 0
    assert summary["per_answer"]["C. bird"] == {"samples": 0, "correct": 0, "recall": None, "replied": 6,
                                                "precision": 0.0, "confused_with": None, "confused_count": 0}
    assert "| C. bird | 0 | – | 6 | 0.0 | – |" in (tmp_path / "never" / "report.md").read_text()


def test_threads_sets_the_commands_thread_count_and_eval_warns_of_busy_cores(tmp_path, capsys, monkeypatch, caplog,
                                                                            request):
    """`--threads N` is torch's thread count while the command runs (and the caller's after it); 0 is refused.
    On a machine where another job holds a core, eval's generation on more threads than the free cores is
    warned about once (measured over `CHECK_SECONDS`, shortened here), with the command that continues it."""
    import time
    from dataclasses import dataclass

    import torch

    import modrwkv.cli
    from modrwkv import busy_cores

    @dataclass
    class Reply:
        text: str
        finish_reason: str = "stop"

    class CountingPipeline:
        """Replies "7" after a while, noting torch's thread count."""

        threads: list[int] = []

        def generate_batch(self, requests):
            self.threads.append(torch.get_num_threads())
            time.sleep(0.4)
            return [Reply("7") for _ in requests]

    monkeypatch.setattr(modrwkv.cli, "_load_pipeline", lambda *args, **kwargs: CountingPipeline())
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.pth").write_bytes(b"not loaded")
    data = tmp_path / "digits.jsonl"
    data.write_text("".join(json.dumps({"question": f"Which digit? {i}", "answer": "7"}) + "\n" for i in range(8)))
    before = torch.get_num_threads()
    assert main(["eval", "--task", "custom", "--data", str(data), "--model", str(model), "--output",
                 str(tmp_path / "one"), "--no-progress", "--threads", "1", "--batch-size", "8"]) == 0
    assert CountingPipeline.threads == [1] and torch.get_num_threads() == before
    with pytest.raises(SystemExit) as refused:  # (argparse's usage error)
        main(["eval", "--task", "custom", "--data", str(data), "--model", str(model), "--threads", "0"])
    assert refused.value.code == 2
    assert "modrwkv eval: error: argument --threads: must be at least 1, got 0" in capsys.readouterr().err
    cores = request.getfixturevalue("busy_core")
    monkeypatch.setattr(busy_cores, "CHECK_SECONDS", 1.0)
    caplog.set_level("WARNING", logger="modrwkv.evaluation.runner")
    assert main(["eval", "--task", "custom", "--data", str(data), "--model", str(model), "--output",
                 str(tmp_path / "busy"), "--no-progress", "--threads", str(cores), "--batch-size", "1"]) == 0
    notes = [r.getMessage() for r in caplog.records if r.name == "modrwkv.evaluation.runner"]
    assert len(notes) == 1 and re.search(r"cores this run may use busy over \d+ s of its generation", notes[0]), notes
    free = int(re.search(r"run the same command with --threads (\d+) \(in Python, torch.set_num_threads\(\1\)\): it "
                         r"continues where it stopped$", notes[0])[1])
    assert 1 <= free < cores, notes


def test_metric_cider_scores_any_text_answers_all_of_them_references_and_refuses_choices(tmp_path, caplog):
    """`--metric cider` (or a record's `"metric": "cider"`) scores question-answer records as captions: every
    accepted answer a reference (three of them are no VQA answers then), the reply and the references
    tokenized (lower case, punctuation dropped) before CIDEr-D and BLEU; records with choices are refused."""
    from modrwkv.evaluation.metrics import bleu, cider_d

    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps(record) + "\n" for record in [
        {"question": "Describe it.", "answers": ["A red bus.", "A bus, red.", "The red bus!"]},
        {"question": "And this?", "answer": "Two cats on a sofa.", "metric": "cider"}]))
    task = CustomTask()  # a record's metric is the file's (the first record alone would be vqa's: three answers)
    samples = task.load(data, "all")
    assert (task.headline, task.headline_label) == ("cider", "CIDEr-D (x100)")
    assert [sample.reference["metric"] for sample in CustomTask(metric="cider").load(data, "all")] == ["cider"] * 2
    records = [{"prediction": reply, "reference": sample.reference}
               for reply, sample in zip(["A red bus", "Two cats, sleeping."], samples)]
    assert [task.score(record) for record in records] == [{}, {}]  # corpus-level only
    candidates, references = ["a red bus", "two cats sleeping"], [["a red bus", "a bus red", "the red bus"],
                                                                   ["two cats on a sofa"]]
    assert task.summarize(records) == pytest.approx({
        "cider": 100 * cider_d(candidates, references)[0], "metric": "cider",
        **{f"bleu_{n}": 100 * score for n, score in enumerate(bleu(candidates, references), start=1)}}, abs=1e-9)
    with caplog.at_level(logging.WARNING, logger="modrwkv.evaluation.tasks.custom"):
        task.summarize(records)
        assert not caplog.records
        # one image: every n-gram's idf is log(1 / 1), the reference itself scoring 0 too
        alone = [task.summarize([{**records[1], "prediction": reply}]) for reply in ("Cats.", "Two cats on a sofa.")]
    assert [scores["cider"] for scores in alone] == [0.0, 0.0] and alone[1]["bleu_4"] == pytest.approx(100)
    assert [r.getMessage()[:36] for r in caplog.records] == ["CIDEr-D of one caption is 0 whatever"] * 2
    data.write_text(json.dumps({"question": "Which?", "answer": "A", "choices": ["x", "y"]}) + "\n")
    with pytest.raises(BenchmarkFileError, match="qa.jsonl:1: the cider metric scores a text answer"):
        CustomTask(metric="cider").load(data, "all")
