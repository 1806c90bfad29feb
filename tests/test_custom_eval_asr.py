"""`eval --task custom` on an ASR manifest asks the model the way it was trained: training records
`data.options.prompt` in the model folder, eval puts it in (or the audio alone for `prompt: null`),
`--asr-prompt` asks with another, an old folder without the record is asked the default with a
warning; and transcripts in a script without spaces between words are scored by CER."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import yaml
from eval_fixtures import write_aishell, write_librispeech
from test_pipeline import tiny_model_dir

from modrwkv.cli import main
from modrwkv.data.readers import AsrManifestReader
from modrwkv.evaluation import ModelSpec, run_eval
from modrwkv.evaluation.tasks import BenchmarkFileError, CustomTask, Task, get_task
from modrwkv.evaluation.tasks.custom import unsegmented_share
from modrwkv.inference import ModRWKVPipeline
from modrwkv.multimodal import ModRWKV
from modrwkv.training import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
TRANSCRIPTS = ["three red cats", "one blue dog sleeps"]


def manifest(folder: Path, transcripts: list[str] = TRANSCRIPTS) -> Path:
    import soundfile

    folder.mkdir(parents=True, exist_ok=True)
    for index in range(len(transcripts)):  # different noise per clip, at 16 kHz (what Whisper reads)
        noise = 0.1 * np.random.default_rng(index).standard_normal(8000)
        soundfile.write(folder / f"{index}.wav", noise.astype(np.float32), 16000)
    path = folder / "test.jsonl"
    path.write_text("".join(json.dumps({"audio_filepath": f"{i}.wav", "text": text}) + "\n"
                            for i, text in enumerate(transcripts)), encoding="utf-8")
    return path


def trained(tmp_path: Path, data: Path, options: dict) -> Path:
    """The tiny model after one training step on the manifest with these `data.options`: the folder
    `train` writes, with whatever it records."""
    cfg = yaml.safe_load((REPO / "configs" / "tiny-cpu.yaml").read_text())
    cfg["data"] = {"format": "asr", "train": [str(data)], "options": options}
    cfg["train"].update(max_steps=1, warmup_steps=0, batch_size=2, micro_batch_size=2)
    cfg["output"].update(dir=str(tmp_path / "run"), save_every=0)
    result = train(cfg, model=ModRWKV.from_pretrained(tiny_model_dir()))
    return result.final_dir


def predictions(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "predictions.jsonl").read_text().splitlines()]


def evaluate(task: Task, data: Path, model: Path, output: Path) -> list[dict]:
    run_eval(task, data, output, model=ModelSpec(str(model)), load_pipeline=lambda: ModRWKVPipeline.from_pretrained(model),
             progress=False, max_new_tokens=4)
    return predictions(output)


@pytest.mark.parametrize("prompt", ["Write down what is said.", None])
def test_a_manifest_is_asked_the_prompt_the_model_was_trained_with(tmp_path, prompt):
    data = manifest(tmp_path / "data")
    model = trained(tmp_path, data, {"prompt": prompt})
    # The independent expectation: the user turn the training reader builds from the same records.
    expected = [s.messages[0].content for s in AsrManifestReader(data, prompt=prompt)]
    assert expected == [f"<audio>\n{prompt}" if prompt else "<audio>"] * 2
    found = evaluate(CustomTask(), data, model, tmp_path / "eval")
    assert [p["prompt"] for p in found] == expected
    pipe = ModRWKVPipeline.from_pretrained(model)  # and the model was asked exactly that
    for index, prediction in enumerate(found):
        reply = pipe.chat([{"role": "user", "content": expected[index]}], audio=[str(data.parent / f"{index}.wav")],
                          temperature=0, max_new_tokens=4)
        assert prediction["prediction"] == reply.strip()
    # A template wraps the model's own prompt.
    templated = evaluate(CustomTask(prompt="{question} Lower case."), data, model, tmp_path / "templated")
    assert [p["prompt"] for p in templated] == [f"{turn} Lower case." for turn in expected]


def test_asr_prompt_asks_with_another_text_and_an_old_folder_with_the_default(tmp_path, caplog, capsys):
    data = manifest(tmp_path / "data")
    model = trained(tmp_path, data, {"prompt": None})
    code = main(["eval", "--task", "custom", "--data", str(data), "--model", str(model), "--asr-prompt",
                 "Transcribe in English.", "--output", str(tmp_path / "other"), "--no-progress",
                 "--max-new-tokens", "4"])
    assert code == 0
    expected = [s.messages[0].content for s in AsrManifestReader(data, prompt="Transcribe in English.")]
    assert [p["prompt"] for p in predictions(tmp_path / "other")] == expected
    # '' asks the audio alone, and a run asked another prompt does not resume as this one.
    assert main(["eval", "--task", "custom", "--data", str(data), "--model", str(model), "--asr-prompt", "",
                 "--output", str(tmp_path / "other"), "--no-progress", "--max-new-tokens", "4"]) != 0
    assert "task_options" in capsys.readouterr().err
    assert [p["prompt"] for p in evaluate(CustomTask(asr_prompt=""), data, model, tmp_path / "bare")] == ["<audio>"] * 2
    # A folder saved before the record existed: the default prompt, and a warning naming the folder.
    old = tmp_path / "old"
    ModRWKV.from_pretrained(model).save_pretrained(old)
    config = json.loads((old / "config.json").read_text())
    del config["asr_prompt"]
    (old / "config.json").write_text(json.dumps(config))
    with caplog.at_level(logging.WARNING, logger="modrwkv.evaluation"):
        found = evaluate(CustomTask(), data, old, tmp_path / "old-eval")
    assert [p["prompt"] for p in found] == ["<audio>\nTranscribe the audio."] * 2
    assert f"{old}: the model's config.json does not record the ASR prompt" in caplog.text


def test_a_folder_that_records_no_asr_prompt_records_none_when_saved_again(tmp_path, caplog):
    """A folder saved before folders recorded the ASR prompt has no asr_prompt, and neither has a folder made
    from it without training on a manifest: saved again (ModRWKV and the transformers wrapper), a stage 2 on
    other data (model.init_from), merge-lora of a LoRA run on it. Eval asks those the default with the
    warning, as the old folder; a stage 2 on a manifest records its prompt, which eval asks without one."""
    from modrwkv.hf_integration import ModRWKVForCausalLM
    from test_pipeline import png_bytes

    data = manifest(tmp_path / "data")
    old = tmp_path / "old"
    ModRWKV.from_pretrained(tiny_model_dir()).save_pretrained(old)
    written = json.loads((old / "config.json").read_text())
    del written["asr_prompt"]
    (old / "config.json").write_text(json.dumps(written))

    def config_of(folder: Path) -> dict:
        return json.loads((folder / "config.json").read_text())

    ModRWKV.from_pretrained(old).save_pretrained(tmp_path / "resaved")
    ModRWKVForCausalLM.from_pretrained(old).save_pretrained(tmp_path / "resaved-hf")
    assert config_of(tmp_path / "resaved") == config_of(tmp_path / "resaved-hf") == written
    (tmp_path / "images").mkdir()
    for index in range(2):
        (tmp_path / "images" / f"{index}.png").write_bytes(png_bytes(index))
    images = tmp_path / "images" / "train.jsonl"  # question-answer records: nothing asks an ASR prompt
    images.write_text("".join(json.dumps({"image": f"{index}.png", "question": "What is it?", "answer": "noise"}) + "\n"
                              for index in range(2)))

    def stage(name: str, data_format: str, train_data: Path, options: dict, **settings) -> Path:
        cfg = yaml.safe_load((REPO / "configs" / "tiny-cpu.yaml").read_text())
        cfg["model"] = {"init_from": str(old), "ctx_len": 256}
        cfg["data"] = {"format": data_format, "train": [str(train_data)], "options": options}
        cfg["train"].update(max_steps=1, warmup_steps=0, batch_size=2, micro_batch_size=2, **settings)
        cfg["output"].update(dir=str(tmp_path / name), save_every=0)
        return train(cfg).final_dir

    assert "asr_prompt" not in config_of(stage("stage2", "qa", images, {}))
    lora = stage("lora", "qa", images, {}, stage="lora", lora={"rank": 2, "targets": ["att.key"]})
    assert main(["merge-lora", str(lora), str(tmp_path / "merged")]) == 0
    assert "asr_prompt" not in config_of(tmp_path / "merged")
    with caplog.at_level(logging.WARNING, logger="modrwkv.evaluation"):
        found = evaluate(CustomTask(), data, tmp_path / "merged", tmp_path / "merged-eval")
    assert [p["prompt"] for p in found] == ["<audio>\nTranscribe the audio."] * 2
    assert f"{tmp_path / 'merged'}: the model's config.json does not record the ASR prompt" in caplog.text
    pipe = ModRWKVPipeline.from_pretrained(tmp_path / "merged")  # and so do the pipeline's transcripts
    clip = str(data.parent / "0.wav")
    assert pipe.transcription_prompt(clip).ids == pipe.encode("<audio>\nTranscribe the audio.", audio=[clip]).ids
    # a stage 2 from the old folder on a manifest records its prompt (null: the audio alone), asked without a warning
    asked = stage("asked", "asr", data, {"prompt": None})
    assert config_of(asked)["asr_prompt"] is None
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="modrwkv.evaluation"):
        found = evaluate(CustomTask(), data, asked, tmp_path / "asked-eval")
    assert [p["prompt"] for p in found] == ["<audio>"] * 2
    assert "does not record the ASR prompt" not in caplog.text


def test_only_transcription_samples_take_the_models_prompt(tmp_path):
    """LibriSpeech is asked the audio alone by a model trained so; a question-answer record that happens
    to ask the default ASR prompt is asked as written (no match on the text)."""
    model = tmp_path / "bare"
    bare = ModRWKV.from_pretrained(tiny_model_dir())
    bare.asr_prompt = None
    bare.save_pretrained(model)
    libri = evaluate(get_task("librispeech"), write_librispeech(tmp_path / "corpus"), model, tmp_path / "libri")
    assert [p["prompt"] for p in libri] == ["<audio>"] * 3
    data = manifest(tmp_path / "data")
    (tmp_path / "data" / "qa.jsonl").write_text(json.dumps({"audio": "0.wav", "question": "Transcribe the audio.",
                                                            "answer": "three red cats"}) + "\n")
    [asked] = evaluate(CustomTask(), data.parent / "qa.jsonl", model, tmp_path / "qa")
    assert asked["prompt"] == "<audio>\nTranscribe the audio."


@pytest.mark.parametrize("task, write", [("librispeech", write_librispeech), ("aishell", write_aishell)])
def test_asr_prompt_applies_to_the_asr_benchmarks_with_the_same_precedence(tmp_path, caplog, capsys, task, write):
    """--asr-prompt > the folder's recorded ASR prompt > the default with a warning, for LibriSpeech and
    Aishell as for a custom manifest: the expectation is the user turn the training reader builds with
    each prompt."""
    corpus = write(tmp_path / "corpus")
    count = len(get_task(task).load(corpus, get_task(task).default_split))
    turns = manifest(tmp_path / "turns")
    turn = {prompt: next(iter(AsrManifestReader(turns, prompt=prompt))).messages[0].content
            for prompt in ("Say it in words.", None, "Write it down.")}
    turn["default"] = next(iter(AsrManifestReader(turns))).messages[0].content
    model = tmp_path / "recorded"
    recorded = ModRWKV.from_pretrained(tiny_model_dir())
    recorded.asr_prompt = "Write it down."  # what training would record with data.options.prompt
    recorded.save_pretrained(model)
    old = tmp_path / "old"  # a folder saved before the record existed
    recorded.save_pretrained(old)
    config = json.loads((old / "config.json").read_text())
    del config["asr_prompt"]
    (old / "config.json").write_text(json.dumps(config))

    def run(folder: Path, output: str, *options: str) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="modrwkv.evaluation"):
            assert main(["eval", "--task", task, "--data", str(corpus), "--model", str(folder), "--output",
                         str(tmp_path / output), "--no-progress", "--max-new-tokens", "2", *options]) == 0
        return [p["prompt"] for p in predictions(tmp_path / output)]

    assert run(model, "given", "--asr-prompt", "Say it in words.") == [turn["Say it in words."]] * count
    assert run(model, "bare", "--asr-prompt", "") == [turn[None]] * count
    assert run(model, "recorded") == [turn["Write it down."]] * count
    assert run(old, "old-given", "--asr-prompt", "Say it in words.") == [turn["Say it in words."]] * count
    assert "does not record the ASR prompt" not in caplog.text  # the given prompt is no guess
    assert run(old, "old") == [turn["default"]] * count
    assert f"{old}: the model's config.json does not record the ASR prompt" in caplog.text
    # a run asked with the model's own prompt does not resume as one asked another
    assert main(["eval", "--task", task, "--data", str(corpus), "--model", str(model), "--output",
                 str(tmp_path / "recorded"), "--no-progress", "--max-new-tokens", "2", "--asr-prompt", "X"]) != 0
    assert "task_options" in capsys.readouterr().err


def test_asr_prompt_is_refused_by_tasks_that_do_not_transcribe(tmp_path, capsys):
    assert main(["eval", "--task", "gqa", "--data", str(tmp_path), "--model", str(tiny_model_dir()),
                 "--asr-prompt", "Say it."]) == 2
    assert "--asr-prompt: gqa takes no such option (librispeech, aishell, custom do)" in capsys.readouterr().err


def test_asr_prompt_is_refused_for_a_file_whose_records_hold_their_prompts(tmp_path):
    data = tmp_path / "qa.jsonl"
    data.write_text(json.dumps({"question": "Q?", "answer": "a"}) + "\n")
    with pytest.raises(BenchmarkFileError, match="--asr-prompt applies to an ASR manifest, but this file holds qa"):
        CustomTask(asr_prompt="Say it.").load(data, "all")


# --- CER -------------------------------------------------------------------------------------------

CHINESE = ["今天天气很好", "我们去公园吧"]  # 6 + 6 characters


def test_chinese_transcripts_are_scored_by_cer_by_hand(tmp_path, caplog):
    data = manifest(tmp_path / "data", CHINESE)
    assert unsegmented_share(CHINESE) == 1.0 and unsegmented_share(TRANSCRIPTS) == 0.0
    with caplog.at_level(logging.INFO, logger="modrwkv.evaluation"):
        samples = CustomTask().load(data, "all")
    assert [s.reference["metric"] for s in samples] == ["cer", "cer"] and "scored by CER" in caplog.text
    task = CustomTask()
    task.load(data, "all")
    # Replies by hand: "今天天气很好。" (punctuation dropped: 0 edits), "我们去 公元" (space dropped;
    # 园 -> 元 and 吧 deleted: 2 edits). CER = 2 / 12 characters.
    records = [{"prediction": "今天天气很好。", "reference": samples[0].reference},
               {"prediction": "我们去 公元", "reference": samples[1].reference}]
    summary = task.summarize(records)
    assert summary == {"cer": pytest.approx(100 * 2 / 12), "metric": "cer"}
    assert (task.headline, task.headline_label) == ("cer", "CER (%)")
    # WER, asked for, counts each unspaced sentence as one word: the first reply is right, the second's two
    # "words" against one reference word are 2 edits: 2 edits over 2 reference words, 100%.
    assert CustomTask(metric="wer").summarize([{**r, "reference": {**r["reference"], "metric": "wer"}}
                                               for r in records])["wer"] == pytest.approx(100.0)


def test_cer_scores_qa_text_answers_and_refuses_choices(tmp_path):
    data = tmp_path / "qa.jsonl"
    data.write_text(json.dumps({"question": "Spell it.", "answer": "abcd", "metric": "cer"}) + "\n")
    task = CustomTask()
    [sample] = task.load(data, "all")
    assert task.summarize([{"prediction": "abd", "reference": sample.reference}])["cer"] == pytest.approx(25.0)
    data.write_text(json.dumps({"question": "Which?", "answer": "A", "choices": ["x", "y"]}) + "\n")
    with pytest.raises(BenchmarkFileError, match="qa.jsonl:1: the cer metric scores a text answer"):
        CustomTask(metric="cer").load(data, "all")
