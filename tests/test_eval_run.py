"""`modrwkv eval` end to end: a quickstart-architecture model (built-in CNN vision encoder, WaveNet
series encoder, 2-layer RWKV-7, plus a tiny Whisper audio encoder), briefly trained on GQA-style
questions about quickstart images, evaluated through the CLI on a small copy of every benchmark
format. The summary must equal the metric recomputed from predictions.jsonl with the metric
functions; an interrupted run resumed, and sharded runs merged, must equal one uninterrupted run;
the harness adapters must answer as the pipeline does."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from eval_fixtures import HUB_WRITERS, WRITERS, write_gqa

from modrwkv.cli import main
from modrwkv.data.sample import Message, Sample
from modrwkv.encoders import build_encoder
from modrwkv.evaluation import ModelSpec, get_task, run_eval
from modrwkv.evaluation.harness.lmms_eval import ModRWKVLmmsCore
from modrwkv.evaluation.harness.vlmevalkit import ModRWKVVLM
from modrwkv.evaluation.metrics import (
    cer,
    circular_eval,
    extract_choice,
    gqa_score,
    mmmu_accuracy,
    mse,
    pope_split_metrics,
    scienceqa_choice,
    vqa_score,
    wer,
)
from modrwkv.evaluation.tasks.base import image_prompt, short_answer
from modrwkv.inference import ModRWKVPipeline
from modrwkv.multimodal import ModRWKV
from modrwkv.processing import IGNORE_INDEX
from modrwkv.quickstart.data import generate_samples
from modrwkv.quickstart.run import QuickstartSettings, build_model, evaluate
from modrwkv.tokenizer import WorldTokenizer

WHISPER = {"d_model": 16, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2,
           "decoder_attention_heads": 2, "encoder_ffn_dim": 32, "decoder_ffn_dim": 32, "num_mel_bins": 80,
           "max_source_positions": 1500}
MAX_NEW_TOKENS = 6


@dataclasses.dataclass
class Trained:
    folder: Path
    samples: list[Sample]  # the GQA-format conversations it was trained (and is checked) on


# One xdist worker runs the module: its trained model (~2-2.5 s) is trained once, not on both.
pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.xdist_group("test_eval_run")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    """Quickstart architecture (narrower, for speed) trained 20 steps on 8 GQA-style questions."""
    torch.manual_seed(0)
    quickstart = build_model(QuickstartSettings(n_embd=64, encoder_width=32))
    model = ModRWKV.build(quickstart.lm, {**quickstart.encoders, "audio": build_encoder("whisper", config=WHISPER)},
                          template="rwkv", ctx_len=None)
    samples = [Sample([Message("user", image_prompt(short_answer(s.messages[0].content.split("\n")[0]))),
                       Message("assistant", s.meta["answer"])], images=s.images, meta=s.meta)
               for s in generate_samples(8, seed=5, series_fraction=0.0)]
    processor, collator = model.processor(WorldTokenizer()), model.collator()
    batch = collator([processor(s) for s in samples])
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(20):
        loss = model.forward_batch(batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    folder = tmp_path_factory.mktemp("eval-model") / "model"
    model.eval().save_pretrained(folder)
    return Trained(folder, samples)


@pytest.fixture(scope="module")
def pipeline(trained) -> ModRWKVPipeline:
    return ModRWKVPipeline.from_pretrained(trained.folder)


def cli_eval(model: Path, task: str, data: Path, output: Path, *extra: str) -> int:
    return main(["eval", "--model", str(model), "--task", task, "--data", str(data), "--output", str(output),
                 "--max-new-tokens", str(MAX_NEW_TOKENS), "--batch-size", "3", *extra])


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def recompute(task: str, records: list[dict]) -> float:
    """The headline metric from the predictions file, straight from the metric functions."""
    predictions = [r["prediction"] for r in records]
    refs = [r["reference"] for r in records]
    if task == "vqav2":
        return vqa_score(predictions, [x["answers"] for x in refs])
    if task == "textvqa":
        return vqa_score(predictions, [x["answers"] for x in refs], style="textvqa")
    if task == "gqa":
        return gqa_score(predictions, [x["answer"] for x in refs])
    if task == "scienceqa":
        return 100 * np.mean([scienceqa_choice(p, len(x["choices"])) == x["answer"] for p, x in zip(predictions, refs)])
    if task == "pope":
        return pope_split_metrics(predictions, [x["label"] for x in refs], [x["category"] for x in refs])["mean"]["f1"]
    if task == "mmbench":
        return circular_eval([{"index": x["index"], "prediction": extract_choice(p, x["choices"]), "answer": x["answer"]}
                              for p, x in zip(predictions, refs)])["accuracy"]
    if task == "mmmu":
        return mmmu_accuracy([{"id": r["id"], "question_type": r["reference"]["question_type"], "response": r["prediction"],
                               "answer": r["reference"]["answer"], "options": r["reference"].get("choices")}
                              for r in records])["accuracy"]
    if task == "librispeech":
        return wer([x["text"] for x in refs], predictions)
    if task == "aishell":
        return cer([x["text"] for x in refs], predictions)
    if task == "etth1":
        return mse(np.stack([r["forecast"] for r in records]), [x["target"] for x in refs])
    raise AssertionError(task)


@pytest.mark.parametrize("task", list(WRITERS))
def test_eval_runs_every_benchmark_format_and_summarises_its_predictions(trained, tmp_path, task, capsys):
    data = WRITERS[task](tmp_path / "data")
    output = tmp_path / "out"
    assert cli_eval(trained.folder, task, data, output, "--limit", "4") == 0
    assert "report: " in capsys.readouterr().out
    records = read_lines(output / "predictions.jsonl")
    summary = json.loads((output / "summary.json").read_text())
    assert len(records) == summary["samples"] == min(4, summary["samples_in_split"])
    fields = {"id", "prompt", "prediction", "finish_reason", "reference", "score"}
    assert all(set(r) == fields | ({"forecast", "complete", "source"} if task == "etth1" else set()) for r in records)
    assert summary["headline"]["value"] == pytest.approx(recompute(task, records), abs=1e-9)
    assert summary["task"] == task and summary["limit"] == 4 and summary["model"] == str(trained.folder)
    assert "| benchmark |" in (output / "report.md").read_text()


def test_batched_predictions_equal_one_at_a_time_chat(trained, pipeline, tmp_path):
    for task in ("gqa", "librispeech", "etth1"):
        data, output = WRITERS[task](tmp_path / task), tmp_path / f"out-{task}"
        assert cli_eval(trained.folder, task, data, output, "--limit", "3") == 0
        samples = get_task(task).load(data, get_task(task).default_split)[:3]
        for sample, record in zip(samples, read_lines(output / "predictions.jsonl")):
            if task == "etth1":
                alone = pipeline.forecast(sample.series[0], 96, max_new_tokens=MAX_NEW_TOKENS)
                assert record["prediction"] == alone.text and record["forecast"] == alone.values.tolist()
                continue
            alone = pipeline.chat(sample.prompt, images=sample.images, audio=sample.audio, series=sample.series,
                                  temperature=0, max_new_tokens=MAX_NEW_TOKENS)
            assert record["prediction"] == alone.strip()


@pytest.mark.parametrize("task", sorted(HUB_WRITERS))
def test_a_hub_copy_gets_the_official_files_predictions(trained, tmp_path, task):
    """lmms-eval's copy of a benchmark (its images embedded in the Parquet files, decoded from there) gets
    the model's replies and scores that the official files (image files, base64) get."""
    official = WRITERS[task](tmp_path / "official")
    hub = HUB_WRITERS[task](tmp_path / "hub", official)
    runs = []
    for k, data in enumerate((official, hub)):
        assert cli_eval(trained.folder, task, data, tmp_path / f"out-{k}", "--limit", "3") == 0
        runs.append([(r["prediction"], r["score"]) for r in read_lines(tmp_path / f"out-{k}" / "predictions.jsonl")])
    assert runs[0] == runs[1] and len(runs[0]) >= 2


SHORT = "\nAnswer the question using a single word or phrase."
LETTER = "\nAnswer with the option's letter from the given choices directly."


@pytest.mark.parametrize("task, texts", [
    ("gqa", ["What color is the car?" + SHORT, "Is there a dog?" + SHORT]),
    ("scienceqa", ["Which is a mammal?\nA. frog\nB. whale\nC. shark" + LETTER,
                   "Context: Look at the map.\nWhich state is farthest north?\nA. Ohio\nB. Maine" + LETTER]),
])
def test_benchmark_questions_are_asked_in_the_layout_the_model_records(trained, tmp_path, monkeypatch, capsys, task,
                                                                      texts):
    """A benchmark's question gives its image no place, so a model is asked it with the image where its
    `media_layout` puts it, as `pipe.chat(text, images=...)` and lmms-eval's adapter ask: image first for
    the default layout, as before, and question, image, question for a model that records the quickstart's
    layout, which `modrwkv eval` used to ask image first. predictions.jsonl shows the turn as asked; the
    run's data fingerprint is the benchmark's, whatever the layout."""
    question_first = tmp_path / "question-first"
    shutil.copytree(trained.folder, question_first)
    config = json.loads((question_first / "config.json").read_text())
    (question_first / "config.json").write_text(json.dumps({**config, "media_layout": "text_media_text"}))
    data = WRITERS[task](tmp_path / "data")
    images = [s.images for s in get_task(task).load(data, get_task(task).default_split)[:2]]
    asked: list[list[int]] = []
    original = ModRWKVPipeline.generate_batch

    def recording(self, requests):
        results = original(self, requests)
        asked.extend(list(result.prompt_ids) for result in results)
        return results

    monkeypatch.setattr(ModRWKVPipeline, "generate_batch", recording)
    fingerprints = []
    for folder, turns in ((trained.folder, [f"<image>\n{text}" for text in texts]),
                          (question_first, [f"{text}\n<image>\n{text}" for text in texts])):
        asked.clear()
        output = tmp_path / f"out-{folder.name}"
        assert cli_eval(folder, task, data, output, "--limit", "2") == 0
        pipe = ModRWKVPipeline.from_pretrained(folder)
        assert asked == [pipe.processor(Sample([Message("user", turn)], images=media), add_generation_prompt=True)
                         .input_ids.tolist() for turn, media in zip(turns, images)]
        records = read_lines(output / "predictions.jsonl")
        assert [r["prompt"] for r in records] == turns
        assert [r["prediction"] for r in records] == [
            pipe.chat(text, images=media, temperature=0, max_new_tokens=MAX_NEW_TOKENS).strip()
            for text, media in zip(texts, images)]
        fingerprints.append(json.loads((output / "run.json").read_text())["data"])
    assert fingerprints[0] == fingerprints[1]
    # The question-first run records its layout (the default's run.json is as before): a run of that model
    # started when benchmarks were asked image first is not resumed with questions asked another way.
    identities = [json.loads((tmp_path / f"out-{folder.name}" / "run.json").read_text())
                  for folder in (trained.folder, question_first)]
    assert "media_layout" not in identities[0] and identities[1]["media_layout"] == "text_media_text"
    del identities[1]["media_layout"]
    (tmp_path / "out-question-first" / "run.json").write_text(json.dumps(identities[1]))
    capsys.readouterr()
    assert cli_eval(question_first, task, data, tmp_path / "out-question-first", "--limit", "2") == 2
    assert "holds predictions of a different run: media_layout (None there, 'text_media_text' now)" in \
        capsys.readouterr().err


def test_gqa_accuracy_equals_teacher_forced_exact_match(trained, tmp_path):
    """For greedy decoding, "the reply equals the answer" and "the argmax at every answer position
    (and the end of turn) is the reference token" are the same criterion: quickstart's evaluate()
    and `modrwkv eval --task gqa` must agree sample by sample."""
    model = ModRWKV.from_pretrained(trained.folder)
    teacher_forced = [ok for oks in evaluate(model, trained.samples, WorldTokenizer()).values() for ok in oks]
    items = [(s.messages[0].content.split("\n")[1], s.meta["answer"], s.images[0]) for s in trained.samples]
    assert [s.messages[0].content for s in trained.samples] == [image_prompt(short_answer(q)) for q, _, _ in items]
    data = write_gqa(tmp_path, items)
    assert cli_eval(trained.folder, "gqa", data, tmp_path / "out", "--max-new-tokens", "8") == 0
    accuracy = json.loads((tmp_path / "out" / "summary.json").read_text())["metrics"]["accuracy"]
    assert 0 < accuracy
    assert accuracy == pytest.approx(100 * sum(teacher_forced) / len(teacher_forced))


def test_custom_task_through_the_cli_equals_teacher_forced_exact_match(trained, tmp_path, capsys):
    """`--task custom` on the same questions as qa records (PNG and BMP images), asked with the
    training prompt through --prompt: the same criterion, the same number, and only the baseline
    the user gave in the report."""
    model = ModRWKV.from_pretrained(trained.folder)
    teacher_forced = [ok for oks in evaluate(model, trained.samples, WorldTokenizer()).values() for ok in oks]
    folder = tmp_path / "mine"
    folder.mkdir()
    with (folder / "test.jsonl").open("w") as handle:
        for i, sample in enumerate(trained.samples):
            name = f"{i}.{'png' if i % 2 else 'bmp'}"
            sample.images[0].save(folder / name)
            question = sample.messages[0].content.split("\n")[1]
            handle.write(json.dumps({"image": name, "question": question, "answer": sample.meta["answer"]}) + "\n")
    prompt = "{question}\nAnswer the question using a single word or phrase."
    assert cli_eval(trained.folder, "custom", folder / "test.jsonl", tmp_path / "out", "--max-new-tokens", "8",
                    "--prompt", prompt, "--baseline", "majority class=12.5") == 0
    assert "exact-match accuracy (%)" in capsys.readouterr().out
    records = read_lines(tmp_path / "out" / "predictions.jsonl")
    assert [r["prompt"] for r in records] == [s.messages[0].content for s in trained.samples]
    accuracy = json.loads((tmp_path / "out" / "summary.json").read_text())["metrics"]["accuracy"]
    assert 0 < accuracy == pytest.approx(100 * sum(teacher_forced) / len(teacher_forced))
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| this model | majority class |" in report and "LLaVA" not in report and "ModRWKV" not in report


def test_interrupted_run_resumes_to_the_uninterrupted_result(trained, tmp_path, monkeypatch, capsys):
    data = WRITERS["pope"](tmp_path / "data")
    assert cli_eval(trained.folder, "pope", data, tmp_path / "whole") == 0
    original = ModRWKVPipeline.generate_batch
    calls = []

    def interrupted(self, requests):
        calls.append(len(requests))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, requests)

    monkeypatch.setattr(ModRWKVPipeline, "generate_batch", interrupted)
    assert cli_eval(trained.folder, "pope", data, tmp_path / "resumed") == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"modrwkv eval: interrupted; the predictions so far are kept in {tmp_path / 'resumed'}: the same command "
        "resumes from them")
    assert len(read_lines(tmp_path / "resumed" / "predictions.jsonl")) == 3  # the first batch was kept
    monkeypatch.setattr(ModRWKVPipeline, "generate_batch", original)
    assert cli_eval(trained.folder, "pope", data, tmp_path / "resumed") == 0
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert (resumed / "predictions.jsonl").read_bytes() == (whole / "predictions.jsonl").read_bytes()
    summaries = [json.loads((folder / "summary.json").read_text()) for folder in (whole, resumed)]
    assert summaries[0]["metrics"] == summaries[1]["metrics"] and summaries[1]["generated_this_run"] == 3


def test_shards_merge_to_the_single_process_result(trained, tmp_path, capsys):
    data = WRITERS["mmbench"](tmp_path / "data")
    assert cli_eval(trained.folder, "mmbench", data, tmp_path / "single") == 0
    for index in (1, 0):
        assert cli_eval(trained.folder, "mmbench", data, tmp_path / "sharded", "--num-shards", "2",
                        "--shard-index", str(index)) == 0
    assert "run the other shards" in capsys.readouterr().out  # the first shard to finish waits
    assert cli_eval(trained.folder, "mmbench", data, tmp_path / "sharded", "--num-shards", "2", "--merge") == 0
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    assert (sharded / "predictions.jsonl").read_bytes() == (single / "predictions.jsonl").read_bytes()
    metrics = [json.loads((folder / "summary.json").read_text())["metrics"] for folder in (single, sharded)]
    assert metrics[0] == metrics[1]


def test_shards_running_together_merge_without_a_separate_call(trained, pipeline, tmp_path):
    """The shards of docs/evaluation.md's loop start together, so each reads the others' (empty) logs
    before generating: the one finishing last must read them again and write the merged result."""
    data = WRITERS["mmbench"](tmp_path / "data")
    assert cli_eval(trained.folder, "mmbench", data, tmp_path / "single") == 0
    sharded = tmp_path / "sharded"

    def load_while_shard_1_runs() -> ModRWKVPipeline:  # shard 0 has read the logs; shard 1 now runs whole
        assert cli_eval(trained.folder, "mmbench", data, sharded, "--num-shards", "2", "--shard-index", "1") == 0
        assert not (sharded / "summary.json").exists()  # shard 1 saw no answers of shard 0
        return pipeline

    result = run_eval(get_task("mmbench"), data, sharded, model=ModelSpec(str(trained.folder)),
                      load_pipeline=load_while_shard_1_runs, batch_size=3, max_new_tokens=MAX_NEW_TOKENS,
                      num_shards=2, shard_index=0, progress=False)
    assert result.summary is not None
    assert (sharded / "predictions.jsonl").read_bytes() == (tmp_path / "single" / "predictions.jsonl").read_bytes()


def test_cli_refuses_another_model_and_bad_data_in_one_line(trained, tmp_path, capsys):
    data = WRITERS["gqa"](tmp_path / "data")
    assert cli_eval(trained.folder, "gqa", data, tmp_path / "out", "--limit", "1") == 0
    other = tmp_path / "other-model"
    shutil.copytree(trained.folder, other)
    weights = next(p for p in sorted(other.rglob("*.safetensors")))
    weights.write_bytes(weights.read_bytes()[:-4] + b"\x00\x00\x00\x01")
    capsys.readouterr()
    assert cli_eval(other, "gqa", data, tmp_path / "out") == 2
    error = capsys.readouterr().err
    assert "holds predictions of a different run: model" in error and error.count("\n") == 1
    assert cli_eval(trained.folder, "gqa", data, tmp_path / "out", "--submission", str(tmp_path / "x.json")) == 2
    assert "submission files exist for vqav2 --split test-dev, mmbench --split test" in capsys.readouterr().err
    assert cli_eval(trained.folder, "gqa", data, tmp_path / "fresh", "--num-shards", "2", "--shard-index", "2") == 2
    assert "--shard-index must be 0 to 1 (for --num-shards 2), got 2" in capsys.readouterr().err
    (data / "testdev_balanced_questions.json").unlink()
    assert cli_eval(trained.folder, "gqa", data, tmp_path / "fresh") == 2
    first, *layout = capsys.readouterr().err.splitlines()  # the layout below the error line, as the task writes it
    assert "testdev_balanced_questions.json" in first and first.endswith("Expected layout:"), first
    assert layout == ["  " + row for row in get_task("gqa").layout.splitlines()]


# --- harness adapters ---------------------------------------------------------------------------


def test_vlmevalkit_model_answers_as_the_pipeline(pipeline, tmp_path):
    from eval_fixtures import save_picture

    image = tmp_path / "a.jpg"
    save_picture(image, 3)
    vlm = ModRWKVVLM(pipeline=pipeline, max_new_tokens=MAX_NEW_TOKENS)
    expected = pipeline.chat("<image>\nWhat is it?", images=[str(image)], temperature=0, max_new_tokens=MAX_NEW_TOKENS)
    message = [{"type": "image", "value": str(image)}, {"type": "text", "value": "What is it?"}]
    assert vlm.generate_inner(message, dataset="MME") == expected.strip()
    assert vlm.generate([str(image), "What is it?"]) == expected.strip()  # VLMEvalKit's list-of-strings form
    vlm.set_dump_image(lambda line: [str(image)])
    line = {"index": 0, "question": "What is shown?", "hint": float("nan"), "A": "cat", "B": "dog", "C": float("nan")}
    assert vlm.use_custom_prompt("MMBench_DEV_EN") and not vlm.use_custom_prompt("MathVista_MINI")
    assert vlm.build_prompt(line, dataset="MMBench_DEV_EN") == [
        {"type": "image", "value": str(image)},
        {"type": "text", "value": "What is shown?\nA. cat\nB. dog\nAnswer with the option's letter from the given choices directly."},
    ]
    with pytest.raises(ValueError, match="unsupported message part type 'video'"):
        vlm.generate_inner([{"type": "video", "value": "x.mp4"}])


def test_vlmevalkit_leaves_leading_images_to_the_models_layout(pipeline, tmp_path, monkeypatch):
    """VLMEvalKit's image benchmarks send [image, text]: the model places such images as it was trained
    (question, image, question for the quickstart's layout), as `modrwkv eval` and lmms-eval's adapter
    ask; images between texts stay where they are."""
    from eval_fixtures import save_picture

    image = tmp_path / "a.jpg"
    save_picture(image, 3)
    vlm = ModRWKVVLM(pipeline=pipeline, max_new_tokens=MAX_NEW_TOKENS)
    monkeypatch.setattr(pipeline.processor, "media_layout", "text_media_text")

    def reply(text):
        return pipeline.chat(text, images=[str(image)], temperature=0, max_new_tokens=MAX_NEW_TOKENS).strip()

    asked = []
    chat = pipeline.chat
    monkeypatch.setattr(pipeline, "chat", lambda text, **options: asked.append(text) or chat(text, **options))
    question = [{"type": "image", "value": str(image)}, {"type": "text", "value": "What is it?"}]
    assert vlm.generate_inner(question) == reply("What is it?\n<image>\nWhat is it?")
    interleaved = [{"type": "text", "value": "Look:"}, *question]
    assert vlm.generate_inner(interleaved) == reply("Look:\n<image>\nWhat is it?")
    assert asked[0] == "What is it?\n<image>\nWhat is it?" and asked[2] == "Look:\n<image>\nWhat is it?"


@dataclasses.dataclass
class Instance:
    """The fields of lmms-eval's `Instance` the model reads."""

    args: tuple


def test_lmms_eval_model_generates_and_scores_like_the_pipeline(pipeline):
    from eval_fixtures import picture

    docs = {"pope": {"test": [{"image": picture(1)}, {"image": picture(2)}]}}
    lmms = ModRWKVLmmsCore(pipeline=pipeline, batch_size=2)
    lmms.task_dict = docs

    def visual(doc):
        return [doc["image"]]

    requests = [Instance(("Is there a dog?", {"until": ["\n\n"], "max_new_tokens": MAX_NEW_TOKENS}, visual, i, "pope", "test"))
                for i in (0, 1)]
    replies = lmms.generate_until(requests)
    assert replies == [pipeline.chat("Is there a dog?", images=[d["image"]], temperature=0, max_new_tokens=MAX_NEW_TOKENS,
                                     stop_strings=["\n\n"]) for d in docs["pope"]["test"]]
    with pytest.raises(ValueError, match="beam search \\(num_beams=3\\) is not supported"):
        lmms.generate_until([Instance(("Is there a dog?", {"num_beams": 3}, visual, 0, "pope", "test"))])
    # The greedy reply's negative log-likelihood, checked against one full-sequence forward pass.
    greedy = pipeline.chat("Is there a dog?", images=[docs["pope"]["test"][0]["image"]], temperature=0, max_new_tokens=3)
    docs["pope"]["test"][0]["answer"] = greedy
    [(loss, is_greedy), (other, other_greedy), by_target] = lmms.loglikelihood(
        [Instance(("Is there a dog?", greedy, visual, 0, "pope", "test")),
         Instance(("Is there a dog?", greedy + " zebra", visual, 0, "pope", "test")),
         # output_type loglikelihood: lmms-eval passes the task's doc_to_target, not its string
         Instance(("Is there a dog?", lambda doc: doc["answer"], visual, 0, "pope", "test"))])
    assert by_target == (loss, is_greedy)
    sample = Sample([Message("user", "<image>\nIs there a dog?"), Message("assistant", greedy)],
                    images=[docs["pope"]["test"][0]["image"]])
    processed = pipeline.processor(sample)
    batch = pipeline.model.collator()([processed])
    with torch.no_grad():
        logits = pipeline.model(batch.input_ids, batch.media, logits="all").logits[0, :-1].float()
    targets = batch.labels[0, 1:]
    positions = (targets != IGNORE_INDEX).nonzero().flatten()[:-1]  # the reply, without the end of turn
    expected = torch.log_softmax(logits[positions], -1).gather(1, targets[positions, None]).sum()
    # lmms-eval's convention is a loss (its multiple_choice picks the smallest): -log P
    assert loss == pytest.approx(-float(expected), abs=1e-3)
    assert is_greedy and not other_greedy and other > loss


def test_vlmevalkit_launcher_registers_the_model_for_run_py(trained, tmp_path, monkeypatch, capsys):
    """`python -m modrwkv.evaluation.harness.vlmevalkit ... --run run.py -- ARGS` puts the model in
    VLMEvalKit's `supported_VLM` and runs run.py with ARGS (VLMEvalKit itself faked here)."""
    import types

    from modrwkv.evaluation.harness import vlmevalkit

    config = types.ModuleType("vlmeval.config")
    config.supported_VLM = {}
    monkeypatch.setitem(sys.modules, "vlmeval", types.ModuleType("vlmeval"))
    monkeypatch.setitem(sys.modules, "vlmeval.config", config)
    run_py = tmp_path / "run.py"
    run_py.write_text("import sys\nfrom vlmeval.config import supported_VLM\n"
                      "model = supported_VLM[sys.argv[sys.argv.index('--model') + 1]]()\n"
                      "print(type(model).__name__, model.max_new_tokens, sys.argv[1:])\n")
    monkeypatch.setattr(sys, "argv", sys.argv[:])
    vlmevalkit.main(["--model-path", str(trained.folder), "--device", "cpu", "--dtype", "fp32", "--max-new-tokens", "5",
                     "--run", str(run_py), "--", "--data", "POPE", "--model", "modrwkv"])
    assert capsys.readouterr().out == "ModRWKVVLM 5 ['--data', 'POPE', '--model', 'modrwkv']\n"


def test_lmms_eval_model_class_takes_model_args_as_lmms_eval_passes_them(trained, monkeypatch):
    """The class the entry point names subclasses lmms-eval's `lmms` (faked here) and takes
    `--model_args` and the command line's options as lmms-eval 0.7's `create_from_arg_string` passes
    them: numbers converted, `batch_size` a string, `max_batch_size` when given."""
    import abc
    import importlib
    import types

    class lmms(abc.ABC):  # lmms-eval's class name
        def __init__(self) -> None:
            self._rank, self._world_size, self.task_dict = 0, 1, {}

        @abc.abstractmethod
        def generate_until(self, requests): ...

        @abc.abstractmethod
        def loglikelihood(self, requests): ...

        @abc.abstractmethod
        def generate_until_multi_round(self, requests): ...

    api, model_module = (types.ModuleType(n) for n in ("lmms_eval.api", "lmms_eval.api.model"))
    model_module.lmms = lmms
    for name, module in (("lmms_eval", types.ModuleType("lmms_eval")), ("lmms_eval.api", api),
                         ("lmms_eval.api.model", model_module)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delitem(sys.modules, "modrwkv.evaluation.harness.models.modrwkv", raising=False)
    cls = importlib.import_module("modrwkv.evaluation.harness.models.modrwkv").ModRWKVLmms
    model = cls(pretrained=str(trained.folder), max_new_tokens=3, batch_size="2", max_batch_size=64)
    assert isinstance(model, lmms)
    assert (model._world_size, model.batch_size_per_gpu, model.max_new_tokens) == (1, 2, 3)
    with pytest.raises(NotImplementedError, match="multi-round"):
        model.generate_until_multi_round([])
    with pytest.raises(ValueError, match="unknown modrwkv model_args \\['temprature'\\]"):
        cls(pretrained=str(trained.folder), temprature=0)
    with pytest.raises(ValueError, match="needs --batch_size N .* got 'auto'"):
        cls(pretrained=str(trained.folder), batch_size="auto")
