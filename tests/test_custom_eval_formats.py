"""`eval --task custom` on a held-out split in the format it was trained in: the same samples written
as question-answer, LLaVA, OpenAI chat and LLaMA-Factory ShareGPT records are asked the same prompts
and score the same with a tiny random model; a system prompt and earlier turns reach the model as
chat gives them; an ASR manifest is scored by WER; bad records are named by file:line and field."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
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
