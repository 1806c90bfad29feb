"""Validation during training (training/validation.py) on the tiny model of test_training: the val loss
against the model's mean cross-entropy computed here, best/ against the checkpoint of its step, early
stopping on a crafted sequence of values, resume, config errors."""

import copy
import csv
import json
import os
import re
import signal
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from safetensors.torch import load_file

from modrwkv.cli import main
from modrwkv.multimodal import ModRWKV
from modrwkv.training import ConfigError, config_from_dict, latest_checkpoint, train
from modrwkv.training.validation import Validation

from test_training import colour_samples, config, write_llava

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def val_config(tmp_path: Path, name: str, **train_options) -> dict:
    """test_training's tiny config on 16 LLaVA colour samples, validated on 6 others (micro-batches of 4:
    a short last one)."""
    folder = tmp_path / "data"
    if not folder.is_dir():
        folder.mkdir()
        (folder / "val").mkdir()
        write_llava(folder, colour_samples(16))
        write_llava(folder / "val", colour_samples(6, seed=1))
    cfg = config(tmp_path, name, **{"max_steps": 6, "batch_size": 4, "micro_batch_size": 4, "val_every": 2,
                                    **train_options})
    cfg["data"] = {"format": "llava", "train": [str(folder / "train.json")], "val": [str(folder / "val" / "train.json")]}
    return cfg


def mean_ce(model: ModRWKV, val_file: str) -> float:
    """The model's mean token cross-entropy over the val samples, one sample at a time."""
    from modrwkv.data.readers import LlavaReader

    processor, collator = model.processor(), model.collator()
    loss_sum, labels = 0.0, 0
    model.eval()
    with torch.no_grad():
        for sample in LlavaReader([val_file], image_folder=str(Path(val_file).parent)):
            out = model.forward_batch(collator([processor(sample)]))
            loss_sum += float(out.loss) * out.num_label_tokens
            labels += out.num_label_tokens
    return loss_sum / labels


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_val_loss_is_the_models_mean_cross_entropy_and_best_holds_the_best_steps_weights(tmp_path):
    cfg = val_config(tmp_path, "run", val_at_start=True)
    cfg["output"].update(save_every=2, keep_last=10)
    result = train(cfg)
    run = Path(cfg["output"]["dir"])
    history = result.metrics["validation"]["history"]
    assert [row["step"] for row in history] == [0, 2, 4, 6]
    for row in history[1:]:
        model = ModRWKV.from_pretrained(run / "checkpoints" / f"step-{int(row['step']):08d}")
        assert row["val_loss"] == pytest.approx(mean_ce(model, cfg["data"]["val"][0]), rel=1e-5)
    best = min(history, key=lambda row: row["val_loss"])
    summary = result.metrics["validation"]
    assert (summary["best_step"], summary["best"]) == (best["step"], best["val_loss"])
    record = json.loads((run / "best" / "validation.json").read_text())
    assert (record["step"], record["val_loss"], record["metric"]) == (best["step"], best["val_loss"], "val_loss")
    best_weights = weights(run / "checkpoints" / f"step-{int(best['step']):08d}")
    for key, value in weights(run / "best").items():
        torch.testing.assert_close(value, best_weights[key], rtol=0, atol=0)
    # logged as the training rows are: a metrics.csv row per validation, at its step
    rows = [r for r in csv.DictReader(open(next((run / "logs").rglob("metrics.csv")))) if r.get("val_loss")]
    assert [(int(r["step"]), float(r["val_loss"])) for r in rows] == [(row["step"], pytest.approx(row["val_loss"]))
                                                                      for row in history]
    assert ModRWKV.from_pretrained(run / "best").lm.config == result.model.lm.config  # loadable as final/ is


class CraftedLosses:
    """Makes every validation's loss the next of `values` (the real one is computed all the same)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, values: list[float]) -> None:
        self.values = list(values)
        real = Validation._loss

        def crafted(validation, trainer, model):
            real(validation, trainer, model)
            return self.values.pop(0)

        monkeypatch.setattr(Validation, "_loss", crafted)


def test_early_stopping_ends_the_run_at_the_expected_step_with_final_the_best(tmp_path, monkeypatch, capsys):
    CraftedLosses(monkeypatch, [5.0, 4.0, 4.5, 4.0, 3.0, 2.0])
    lines: list[str] = []
    cfg = val_config(tmp_path, "run", val_every=1, max_steps=6, early_stopping_patience=2)
    cfg["output"]["final"] = "best"
    result = train(cfg, progress=lines.append)
    # best 4.0 at step 2; step 3 (4.5) and step 4 (4.0, not lower) do not improve on it: patience 2 ends at 4
    assert result.metrics["steps"] == 4 and result.metrics["validation"]["stopped_at"] == 4
    assert result.final_dir is not None and result.stopped_by is None
    run = Path(cfg["output"]["dir"])
    assert json.loads((result.final_dir / "validation.json").read_text())["step"] == 2
    for key, value in weights(result.final_dir).items():
        torch.testing.assert_close(value, weights(run / "best")[key], rtol=0, atol=0)
    assert (run / "checkpoints" / "step-00000004").is_dir()  # the last step's checkpoint, as at a run's end
    assert any("stopping early: 2 validations without improving" in line for line in lines)
    # the progress line of the step it stopped at says so, not a leftover ETA
    last = [line for line in lines if line.startswith("step ")][-1]
    assert last.startswith("step 4/6 |") and "stopped early" in last and "ETA" not in last
    again = train(copy.deepcopy(cfg), resume=True)  # the run is finished: resuming trains nothing more
    assert again.history == [] and again.metrics["steps"] == 4 and again.final_dir == result.final_dir


class _SigtermAt(pl.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_resume_keeps_the_best_value_and_the_patience_count(tmp_path, monkeypatch):
    crafted = CraftedLosses(monkeypatch, [1.0, 2.0, 3.0])
    cfg = val_config(tmp_path, "run", val_every=1, max_steps=6, early_stopping_patience=4)
    stopped = train(cfg, callbacks=[_SigtermAt(3)])
    assert stopped.stopped_by == "SIGTERM" and stopped.checkpoint.name == "step-00000003"
    # Resumed, 1.5 does not beat the best (1.0 at step 1) and the fourth validation without improving stops it;
    # had the resume forgotten them, 1.5 would be the best and the run would go to step 6.
    crafted.values = [1.5, 1.2, 9.0]
    resumed = train(copy.deepcopy(cfg), resume=True)
    summary = resumed.metrics["validation"]
    assert (summary["best_step"], summary["best"], summary["stopped_at"]) == (1, 1.0, 5)
    assert [row["step"] for row in summary["history"]] == [1, 2, 3, 4, 5]
    assert json.loads((Path(cfg["output"]["dir"]) / "best" / "validation.json").read_text())["step"] == 1


@pytest.mark.parametrize("change, message", [
    ({"data": {"val": []}, "train": {"val_every": 5}}, "train.val_every is set but data.val lists no validation"),
    ({"train": {"val_every": 0}}, "data.val is set but train.val_every is 0"),
    ({"train": {"early_stopping_patience": -1}}, "must be >= 0"),
    ({"train": {"val_metric": "forecast_mse"}}, "forecast_mse needs data.format series"),
    ({"train": {"val_metric": "f1"}},
     r"train.val_metric: 'f1' is not one of \['loss', 'forecast_mse', 'accuracy', 'wer', 'cer', 'mse', 'cider'\]"),
    ({"data": {"val": [], "val_options": {"split": "test"}}, "train": {"val_every": 0}},
     "data.val_options is set but data.val lists no validation files"),
])
def test_config_errors_name_the_keys(tmp_path, change, message):
    cfg = val_config(tmp_path, "run")
    for section, values in change.items():
        cfg[section].update(values)
    with pytest.raises(ConfigError, match=message):
        config_from_dict(cfg)


def test_val_every_0_turns_validation_off_saying_what_goes_unused(tmp_path, caplog):
    cfg = val_config(tmp_path, "run", val_every=0, max_steps=1, val_at_start=True, early_stopping_patience=2)
    cfg["data"]["val"] = []
    cfg["output"]["final"] = "best"
    result = train(cfg)
    assert "validation" not in result.metrics and (result.final_dir / "model.safetensors").is_file()
    assert not (Path(cfg["output"]["dir"]) / "best").exists()
    assert ("train.val_every is 0, so the run does not validate: train.val_at_start, train.early_stopping_patience, "
            "output.final go unused (final/ holds the last step)") in caplog.text


def test_cli_a_missing_or_empty_val_file_is_one_line(tmp_path, capsys):
    cfg = val_config(tmp_path, "run")
    cfg["data"]["val"] = [str(tmp_path / "missing.json")]
    (tmp_path / "run.yaml").write_text(json.dumps(cfg))
    assert main(["train", str(tmp_path / "run.yaml")]) != 0
    err = capsys.readouterr().err
    assert "missing.json" in err and "Traceback" not in err
    (tmp_path / "empty.json").write_text("[]")
    cfg["data"]["val"] = [str(tmp_path / "empty.json")]
    cfg["output"]["dir"] = str(tmp_path / "run2")
    (tmp_path / "run.yaml").write_text(json.dumps(cfg))
    assert main(["train", str(tmp_path / "run.yaml")]) != 0
    err = capsys.readouterr().err
    assert "empty.json" in err and "Traceback" not in err


def test_validation_leaves_training_as_it_was_with_gradient_accumulation(tmp_path):
    """Two micro-batches a step: validation runs once at each validated step (not once per micro-batch, not
    twice at the last step), and the trained weights are those of the same run without validation, bit for
    bit (validation draws no random number, leaves no module in eval mode and no gradient)."""
    cfg = val_config(tmp_path, "val", max_steps=4, batch_size=8, micro_batch_size=4, val_every=2, val_at_start=True)
    validated = train(cfg)
    assert [row["step"] for row in validated.metrics["validation"]["history"]] == [0, 2, 4]
    plain_cfg = val_config(tmp_path, "plain", max_steps=4, batch_size=8, micro_batch_size=4, val_every=0)
    plain_cfg["data"]["val"] = []
    plain = train(plain_cfg)
    assert [r["loss"] for r in validated.history] == [r["loss"] for r in plain.history]
    reference = weights(plain.final_dir)
    for key, value in weights(validated.final_dir).items():
        torch.testing.assert_close(value, reference[key], rtol=0, atol=0)


def test_a_nan_validation_is_never_the_best(tmp_path, monkeypatch):
    crafted = CraftedLosses(monkeypatch, [float("nan"), 3.0, float("nan"), 4.0])
    cfg = val_config(tmp_path, "run", val_every=1, max_steps=3, val_at_start=True, early_stopping_patience=3)
    cfg["output"]["final"] = "best"
    summary = train(cfg).metrics["validation"]
    assert (summary["best_step"], summary["best"], summary["stopped_at"]) == (1, 3.0, None)
    assert json.loads((Path(cfg["output"]["dir"]) / "best" / "validation.json").read_text())["step"] == 1
    # every validation NaN: no best/, and final/ (output.final best) holds the last step, saying so
    crafted.values = [float("nan")] * 2
    cfg = val_config(tmp_path, "nan", val_every=1, max_steps=1, val_at_start=True)
    cfg["output"]["final"] = "best"
    result = train(cfg)
    assert result.metrics["validation"]["best_step"] is None and not (Path(cfg["output"]["dir"]) / "best").exists()
    for key, value in weights(result.final_dir).items():
        torch.testing.assert_close(value, result.model.state_dict()[key], rtol=0, atol=0)


class _Killed(BaseException):
    """Stands in for a kill: a BaseException, at which a run saves nothing (at an error, an Exception, it saves
    the last completed step: progress.SaveOnError)."""


class _CrashAt(pl.Callback):
    """A kill (not a signal or an error, so no checkpoint) as step `step + 1` starts."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, *args):
        if trainer.global_step == self.step:
            raise _Killed("crashed")


def test_resume_keeps_a_better_best_written_after_the_checkpoint(tmp_path, monkeypatch):
    """Killed after best/ was written at step 3 but before a checkpoint after step 2: the resumed run trains
    step 3 again, and its validation, worse this time (a GPU's sums are not bit-exact), does not replace best/;
    the best/ of step 3 counts as the best so far, and patience counts from it."""
    crafted = CraftedLosses(monkeypatch, [3.0, 2.0, 1.0])
    cfg = val_config(tmp_path, "run", val_every=1, max_steps=6, early_stopping_patience=2)
    cfg["output"].update(save_every=2, keep_last=10)
    with pytest.raises(_Killed, match="crashed"):
        train(cfg, callbacks=[_CrashAt(3)])
    run = Path(cfg["output"]["dir"])
    assert json.loads((run / "best" / "validation.json").read_text())["val_loss"] == 1.0
    crafted.values = [1.5, 1.4, 1.3, 1.2]  # step 3 validated again, 4 and 5 for the first time: 2 without improving
    summary = train(copy.deepcopy(cfg), resume=True).metrics["validation"]
    assert (summary["best_step"], summary["best"], summary["stopped_at"]) == (3, 1.0, 5)
    record = json.loads((run / "best" / "validation.json").read_text())
    assert (record["step"], record["val_loss"]) == (3, 1.0)


def test_a_run_stopped_while_replacing_best_finds_it_again(tmp_path, monkeypatch):
    """best/ is renamed aside before the new one takes its name, never deleted first: a run killed between
    the two renames leaves both folders, and the next start puts the complete one back."""
    crafted = CraftedLosses(monkeypatch, [2.0, 1.0])
    cfg = val_config(tmp_path, "run", val_every=1, max_steps=3)
    cfg["output"].update(save_every=1, keep_last=10)
    with pytest.raises(_Killed, match="crashed"):
        train(cfg, callbacks=[_CrashAt(2)])
    run = Path(cfg["output"]["dir"])
    (run / "best").rename(run / ".best.old")  # killed between the renames: the new best/ was not complete
    (run / ".best.tmp").mkdir()
    crafted.values = [5.0]
    train(copy.deepcopy(cfg), resume=True)
    assert json.loads((run / "best" / "validation.json").read_text())["step"] == 2
    assert not (run / ".best.old").exists()


def test_an_error_in_one_ranks_validation_ends_every_rank(tmp_path):
    """A rank whose validation fails (out of memory on a longer sample of its share) used to leave the other
    waiting in the reduce of the val loss: with NCCL for ever while its process lived on, with gloo until the
    failing rank tore its connection down ("Connection closed by peer"). Every rank now ends with its error."""
    from test_training import outputs_when_one_fails, start_ranks

    ranks = start_ranks(tmp_path, max_steps=3, output={"media_reliance_every": 0}, val_every=2,
                        env={"MODRWKV_TEST_FULL_DISK": "1:0:validation"})
    outputs = outputs_when_one_fails(ranks, failed=1, timeout=120)
    assert all(rank.returncode not in (0, None) for rank in ranks)
    assert "RuntimeError on rank 1: CUDA out of memory" in outputs[0][1], outputs[0][1][-3000:]
    assert "CUDA out of memory" in outputs[1][1], outputs[1][1][-3000:]
    # Every rank raised it after step 2's update: together they saved that step (progress.SaveOnError), each says so.
    checkpoint = tmp_path / "run" / "checkpoints" / "step-00000002"
    assert latest_checkpoint(tmp_path / "run") == checkpoint
    for _, err in outputs:
        assert err.splitlines()[-1].endswith(f"training stopped at this error after step 2 of 3; the checkpoint of step "
                                             f"2, the last completed, is saved to {checkpoint}: --resume continues "
                                             "from it"), err[-3000:]


def test_best_record_is_strict_json_with_a_nan_value_as_null():
    """A forecast_mse run's val loss can be NaN (no supervised val token) while its forecast MSE is the best:
    best/validation.json writes it as null, which any JSON reader takes (a bare NaN is not JSON)."""
    from modrwkv.training.validation import best_record

    record = best_record({"step": 3.0, "val_loss": float("nan"), "val_forecast_mse": 0.25}, "val_forecast_mse")
    assert json.loads(json.dumps(record, allow_nan=False)) == {
        "step": 3, "metric": "val_forecast_mse", "val_loss": None, "val_forecast_mse": 0.25}


def eval_custom(tmp_path: Path, model: Path, data: Path, name: str, *extra: str) -> tuple[dict, list[dict]]:
    """`modrwkv eval --task custom` of `model` on `data`: its summary's metrics and its predictions."""
    out = tmp_path / "eval" / name
    assert main(["eval", "--task", "custom", "--data", str(data), "--model", str(model), "--output", str(out),
                 "--no-progress", *extra]) == 0
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    return json.loads((out / "summary.json").read_text())["metrics"], predictions


def from_a_model_learning_colours(tmp_path: Path, **train_options) -> tuple[dict, Path]:
    """A config of 4 steps validated at 0, 2 and 4, each step's checkpoint kept, that starts from a model
    20 steps into learning the colours, whose replies are short and change from step to step; and it."""
    warm = val_config(tmp_path, "start", max_steps=20, val_every=0)
    warm["data"]["val"] = []
    start = train(warm).final_dir
    cfg = val_config(tmp_path, "run", val_at_start=True, max_steps=4, **train_options)
    cfg["output"].update(save_every=2, keep_last=10)
    cfg["model"] = {"init_from": str(start), "ctx_len": cfg["model"]["ctx_len"]}
    return cfg, start


def test_val_accuracy_is_what_eval_custom_scores_and_more_is_better(tmp_path):
    """`val_metric: accuracy` answers the val file greedily and scores it as `modrwkv eval --task custom`
    does. The val file is made so that the starting model answers three of its six questions right: their
    answers are that model's own replies (one long answer fixes how many tokens every reply may take), so
    the step-0 validation must say 50 %; each later one is what `modrwkv eval` says of that step's
    checkpoint, and best/ is the step with the highest accuracy (of equal ones, the lowest val loss)."""
    cfg, start = from_a_model_learning_colours(tmp_path, val_metric="accuracy")
    val_file = Path(cfg["data"]["val"][0])
    records = json.loads(val_file.read_text())
    for record in records:  # answers no colour model gives
        record["conversations"][1]["value"] = "not a colour"
    records[-1]["conversations"][1]["value"] = "a long answer that nothing replies " * 2  # 70 bytes
    val_file.write_text(json.dumps(records))
    _, replies = eval_custom(tmp_path, start, val_file, "start")
    for i in range(3):
        assert replies[i]["finish_reason"] == "stop" and replies[i]["prediction"], replies[i]
        records[i]["conversations"][1]["value"] = replies[i]["prediction"]
    val_file.write_text(json.dumps(records))
    assert eval_custom(tmp_path, start, val_file, "crafted")[0]["accuracy"] == pytest.approx(50.0)

    result = train(cfg)
    history = result.metrics["validation"]["history"]
    assert [(row["step"], row["val_accuracy"]) for row in history][0] == (0, pytest.approx(50.0))
    run = Path(cfg["output"]["dir"])
    for row in history[1:]:
        step = run / "checkpoints" / f"step-{int(row['step']):08d}"
        assert row["val_accuracy"] == pytest.approx(eval_custom(tmp_path, step, val_file, step.name)[0]["accuracy"])
    best = max(history, key=lambda row: (row["val_accuracy"], -row["val_loss"], -row["step"]))
    record = json.loads((run / "best" / "validation.json").read_text())
    assert (record["metric"], record["step"], record["val_accuracy"]) == ("val_accuracy", best["step"],
                                                                          best["val_accuracy"])


class CraftedScores:
    """Makes every validation's score (the scorer's number, e.g. accuracy) the next of `values`, its replies
    `distinct` different ones."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, values: list[float], distinct: int = 2) -> None:
        from modrwkv.training.validation import TaskScorer

        self.values = list(values)

        def crafted(scorer, model, trainer):
            scorer.distinct_replies = distinct
            return self.values.pop(0)

        monkeypatch.setattr(TaskScorer, "__call__", crafted)


def test_weights_that_give_every_val_sample_one_reply_are_named(tmp_path, monkeypatch, caplog):
    """Chosen weights that answer every val sample alike read nothing from the inputs (the forecasters of
    docs/forecasting.md wrote their baseline plus one offset): whatever the score, the run says so."""
    CraftedScores(monkeypatch, [10.0, 40.0], distinct=1)
    result = train(val_config(tmp_path, "one", val_every=1, max_steps=2, val_metric="accuracy"))
    assert result.metrics["validation"]["history"][1]["val_distinct_replies"] == 1
    assert ("the best validation's weights (step 2) give one reply to every one of the 6 val samples: they read "
            "nothing from the inputs") in caplog.text
    caplog.clear()
    CraftedScores(monkeypatch, [10.0, 40.0], distinct=3)
    train(val_config(tmp_path, "three", val_every=1, max_steps=2, val_metric="accuracy"))
    assert "give one reply" not in caplog.text


def test_accuracy_keeps_the_highest_and_of_equal_ones_the_lower_loss(tmp_path, monkeypatch):
    """More is better for accuracy: the best is the highest; of equal ones, the one with the lower val loss
    (an equal accuracy with a higher loss is no improvement and counts towards the patience)."""
    CraftedScores(monkeypatch, [10.0, 40.0, 40.0, 40.0, 30.0, 90.0])
    CraftedLosses(monkeypatch, [5.0, 4.0, 3.0, 3.5, 1.0, 1.0])
    cfg = val_config(tmp_path, "run", val_every=1, max_steps=6, early_stopping_patience=2, val_metric="accuracy")
    result = train(cfg)
    summary = result.metrics["validation"]
    # 40 at step 2, 40 with a lower loss at step 3 (the best), 40 with a higher loss at step 4 and 30 at step 5:
    # two validations without improving on step 3 end the run at step 5
    assert (summary["best_step"], summary["best"], summary["stopped_at"]) == (3, 40.0, 5)
    record = json.loads((Path(cfg["output"]["dir"]) / "best" / "validation.json").read_text())
    assert (record["step"], record["val_accuracy"], record["val_loss"]) == (3, 40.0, 3.0)


class ScriptedReplies:
    """Makes every validation's replies the next list of `replies` (one per val record, by its id), through the
    eval task's own scoring and summary; the model answers nothing."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, replies: list[list[str]]) -> None:
        from modrwkv.evaluation.tasks.custom import CustomTask

        self.replies = list(replies)

        def generate(task, pipeline, samples, max_new_tokens):
            said = self.replies.pop(0)
            return [{"prediction": said[int(sample.id)], "finish_reason": "stop"} for sample in samples]

        monkeypatch.setattr(CustomTask, "generate", generate)


def labelled_val_file(cfg: dict, answers: list[str], choices: list[str] | None = None) -> None:
    """val_config's val file with these answers (and, with `choices`, those options listed and given)."""
    val_file = Path(cfg["data"]["val"][0])
    records = json.loads(val_file.read_text())
    for record, answer in zip(records, answers, strict=True):
        record["conversations"][1]["value"] = answer
        if choices:
            record["conversations"][0]["value"] += "".join(f"\n{'ABC'[i]}. {c}" for i, c in enumerate(choices))
            record["choices"] = choices
    val_file.write_text(json.dumps(records))


def test_validation_names_the_weakest_answer_and_records_final_weights_breakdown_across_a_resume(tmp_path,
                                                                                                 monkeypatch):
    """Val answers that are a classifier's labels: each validation's line names the answer answered right least
    often, as `modrwkv eval`'s last line does, and the breakdown of the best validation (final/ with
    output.final best) is in best/validation.json, the run's validation summary and val_per_answer.md, also
    after a resume from a checkpoint taken before the last validation. Counts by hand from the scripted replies."""
    cfg = val_config(tmp_path, "run", val_every=1, max_steps=3, val_metric="accuracy")
    cfg["output"]["final"] = "best"
    labelled_val_file(cfg, ["red", "red", "blue", "blue", "green", "green"])
    ScriptedReplies(monkeypatch, [["red"] * 6,  # step 1: 2 of 6
                                  ["red", "red", "blue", "red", "green", "Green."],  # step 2: 5 of 6, the best
                                  ["red", "red", "blue", "blue", "red", "pink"]])  # step 3: 4 of 6
    lines: list[str] = []
    stopped = train(cfg, callbacks=[_SigtermAt(2)], progress=lines.append)
    assert stopped.stopped_by == "SIGTERM" and stopped.checkpoint.name == "step-00000002"
    assert "breakdown" not in stopped.metrics["validation"]  # no final/ yet: no breakdown of its weights
    resumed = train(copy.deepcopy(cfg), resume=True, progress=lines.append)
    validations = [line for line in lines if line.startswith("validation at step")]
    assert [line.split("; lowest accuracy of an answer: ")[1] for line in validations] == [
        "'blue' 0.0% (0 of 2), wrongly 'red' 2 times", "'blue' 50.0% (1 of 2), wrongly 'red' 1 time",
        "'green' 0.0% (0 of 2), wrongly 'red' 1 time"]
    summary = resumed.metrics["validation"]
    assert [row["val_accuracy"] for row in summary["history"]] == pytest.approx([100 / 3, 500 / 6, 400 / 6])
    step_2 = {"blue": {"samples": 2, "correct": 1, "recall": 50.0, "replied": 1, "precision": 100.0,
                       "confused_with": "red", "confused_count": 1},
              "green": {"samples": 2, "correct": 2, "recall": 100.0, "replied": 2, "precision": 100.0,
                        "confused_with": None, "confused_count": 0},
              "red": {"samples": 2, "correct": 2, "recall": 100.0, "replied": 3, "precision": 200 / 3,
                      "confused_with": None, "confused_count": 0}}
    assert summary["best_step"] == 2
    assert summary["breakdown"] == {"step": 2, "per_answer": step_2, "replies_outside_answers": 0}
    run = Path(cfg["output"]["dir"])
    record = json.loads((run / "best" / "validation.json").read_text())
    assert (record["step"], record["per_answer"], record["replies_outside_answers"]) == (2, step_2, 0)
    assert (run / "val_per_answer.md").read_text() == (
        "# val_accuracy per answer: final/ (step 2, the best validation) on data.val\n\n"
        "Per answer (accuracy: of the samples with this answer, those answered right; precision: of the replies "
        "giving this answer, those that were right):\n\n"
        "| answer | samples | accuracy (%) | replied | precision (%) | most frequent wrong reply |\n"
        "|---|---:|---:|---:|---:|---|\n"
        "| blue | 2 | 50.0 | 1 | 100.0 | red (1) |\n"
        "| green | 2 | 100.0 | 2 | 100.0 | – |\n"
        "| red | 2 | 100.0 | 3 | 66.7 | – |\n\n"
        "Replies outside the answers: 0\n")


def test_a_better_best_written_after_the_checkpoint_keeps_its_breakdown(tmp_path, monkeypatch):
    """Killed after best/ was written at step 3 but before a checkpoint after step 2: the resumed run keeps that
    best/ (a worse validation of step 3 trained again does not replace it), and with it the breakdown its
    validation.json records, not the checkpoint's best's."""
    cfg = val_config(tmp_path, "run", val_every=1, max_steps=4, val_metric="accuracy")
    cfg["output"].update(save_every=2, keep_last=10, final="best")
    labelled_val_file(cfg, ["red", "red", "blue", "blue", "green", "green"])
    scripted = ScriptedReplies(monkeypatch, [["red"] * 6, ["red"] * 6,
                                             ["red", "red", "blue", "blue", "green", "blue"]])  # step 3: 5 of 6
    with pytest.raises(_Killed, match="crashed"):
        train(cfg, callbacks=[_CrashAt(3)])
    scripted.replies = [["red"] * 6] * 2  # steps 3 and 4 again: 2 of 6
    summary = train(copy.deepcopy(cfg), resume=True).metrics["validation"]
    assert summary["best_step"] == 3
    assert summary["breakdown"]["step"] == 3
    assert summary["breakdown"]["per_answer"]["green"] == {"samples": 2, "correct": 1, "recall": 50.0, "replied": 1,
                                                           "precision": 100.0, "confused_with": "blue",
                                                           "confused_count": 1}



def test_a_checkpoint_from_before_breakdowns_resumes_with_best_validation_json_one(tmp_path, monkeypatch):
    """A checkpoint whose validation state has no breakdown (saved by a modrwkv before validations kept one)
    resumes with the breakdown of its best from best/'s validation.json, which recorded it: final/ (output.final
    best) still gets its table."""
    cfg = val_config(tmp_path, "run", val_every=1, max_steps=3, val_metric="accuracy")
    cfg["output"]["final"] = "best"
    labelled_val_file(cfg, ["red", "red", "red", "red", "blue", "blue"])
    ScriptedReplies(monkeypatch, [["red", "red", "red", "red", "blue", "red"],  # step 1: 5 of 6, the best
                                  ["red"] * 6, ["red"] * 6])
    stopped = train(cfg, callbacks=[_SigtermAt(2)])
    state_file = stopped.checkpoint / "training_state.ckpt"
    checkpoint = torch.load(state_file, weights_only=False)
    (state,) = [value for key, value in checkpoint["callbacks"].items() if key.startswith("Validation")]
    assert state.pop("best_breakdown")["step"] == 1 and state.pop("last_breakdown")["step"] == 2
    torch.save(checkpoint, state_file)
    summary = train(copy.deepcopy(cfg), resume=True).metrics["validation"]
    assert summary["best_step"] == 1
    assert summary["breakdown"]["step"] == 1
    assert summary["breakdown"]["per_answer"]["blue"] == {"samples": 2, "correct": 1, "recall": 50.0, "replied": 1,
                                                          "precision": 100.0, "confused_with": "red",
                                                          "confused_count": 1}
    assert "| blue | 2 | 50.0 | 1 | 100.0 | red (1) |" in (Path(cfg["output"]["dir"]) / "val_per_answer.md").read_text()

def test_a_multiple_choice_val_file_is_broken_down_by_right_option_and_only_answers_that_are_labels_are(
        tmp_path, monkeypatch, capsys):
    """Choice val files: the validation whose weights final/ holds (output.final last: the last) broken down per
    right option against the option selected, as `modrwkv eval` breaks it down, and the run's last line names
    the weakest; a val file of free-form answers gets no breakdown, table or line."""
    cfg = val_config(tmp_path, "run", val_every=1, max_steps=2, val_metric="accuracy")
    labelled_val_file(cfg, ["A", "A", "B", "B", "C", "C"], choices=["red", "blue", "green"])
    # always "A" (one reply selects none): 2 of 6, near chance with 3 options
    ScriptedReplies(monkeypatch, [["A", "A", "B", "B", "B", "B"],  # step 1: 4 of 6, the best
                                  ["A", "A", "A", "A", "A", "no idea"]])
    (tmp_path / "run.yaml").write_text(json.dumps(cfg))
    assert main(["train", str(tmp_path / "run.yaml")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-6].startswith("validation at step 1/2") and out[-6].endswith(
        "; lowest accuracy of an answer: 'C. green' 0.0% (0 of 2), wrongly 'B. blue' 2 times")
    assert out[-4].startswith("validation at step 2/2") and out[-4].endswith(
        "; lowest accuracy of an answer: 'B. blue' 0.0% (0 of 2), wrongly 'A. red' 2 times")
    run = Path(cfg["output"]["dir"])
    assert out[-1] == ("final/ on data.val (step 2): lowest accuracy of an answer: 'B. blue' 0.0% (0 of 2), wrongly "
                       f"'A. red' 2 times (every answer in {run / 'val_per_answer.md'})")
    assert (run / "val_per_answer.md").read_text() == (
        "# val_accuracy per answer: final/ (step 2, the last step) on data.val\n\n"
        "Per right answer (accuracy: of the samples whose right answer this option is, those answered right; "
        "selected: the replies selecting it; precision: of those, the ones that were right; an option that is no "
        "sample's right answer has a row when selected; a reply that selects no option is among "
        "replies_outside_answers):\n\n"
        "| right answer | samples | accuracy (%) | selected | precision (%) | most frequent wrong selection |\n"
        "|---|---:|---:|---:|---:|---|\n"
        "| A. red | 2 | 100.0 | 5 | 40.0 | – |\n"
        "| B. blue | 2 | 0.0 | 0 | – | A. red (2) |\n"
        "| C. green | 2 | 0.0 | 0 | – | A. red (1) |\n\n"
        "Replies outside the answers: 1\n")
    # free-form answers (all different): no breakdown
    free = val_config(tmp_path, "free", val_every=1, max_steps=1, val_metric="accuracy")
    free["data"]["val"] = [str(tmp_path / "free.json")]
    records = json.loads(Path(cfg["data"]["val"][0]).read_text())
    for i, record in enumerate(records):
        record["image"] = str(tmp_path / "data" / "val" / record["image"])
        record["conversations"][1]["value"] = f"answer {i}"
        record.pop("choices")
    (tmp_path / "free.json").write_text(json.dumps(records))
    ScriptedReplies(monkeypatch, [[f"answer {i}" for i in range(6)]])
    lines: list[str] = []
    result = train(free, progress=lines.append)
    assert result.metrics["validation"]["history"][0]["val_accuracy"] == 100.0
    assert "breakdown" not in result.metrics["validation"] and not (tmp_path / "free" / "val_per_answer.md").exists()
    assert not any("lowest accuracy" in line for line in lines)
    assert "per_answer" not in json.loads((tmp_path / "free" / "best" / "validation.json").read_text())


def test_the_answers_table_in_a_run_folder_is_the_current_runs(tmp_path, monkeypatch):
    """val_per_answer.md that an earlier run into the folder left (its checkpoints since removed) is gone once a
    run without validation, or one whose free-form answers break nothing down, has trained there; a run with a
    breakdown writes its own over it."""
    stale = "# val_accuracy per answer: final/ (step 2, the best validation) on data.val\n"
    runs = {"plain": val_config(tmp_path, "plain", val_every=0, max_steps=1),
            "free": val_config(tmp_path, "free", val_every=1, max_steps=1, val_metric="accuracy"),
            "labelled": val_config(tmp_path, "labelled", val_every=1, max_steps=1, val_metric="accuracy")}
    free = json.loads(Path(runs["free"]["data"]["val"][0]).read_text())
    for i, record in enumerate(free):
        record["image"] = str(tmp_path / "data" / "val" / record["image"])
        record["conversations"][1]["value"] = f"answer {i}"
    (tmp_path / "free.json").write_text(json.dumps(free))
    runs["free"]["data"]["val"] = [str(tmp_path / "free.json")]
    labelled_val_file(runs["labelled"], ["red", "red", "blue", "blue", "green", "green"])
    del runs["plain"]["data"]["val"]
    tables = {}
    for name, cfg in runs.items():
        table = Path(cfg["output"]["dir"]) / "val_per_answer.md"
        table.parent.mkdir(parents=True)
        table.write_text(stale)
        ScriptedReplies(monkeypatch, [["red"] * 6] if name == "labelled" else [[f"answer {i}" for i in range(6)]])
        train(cfg)
        tables[name] = table.read_text().splitlines()[0] if table.exists() else None
    assert tables == {"plain": None, "free": None,
                      "labelled": "# val_accuracy per answer: final/ (step 1, the last step) on data.val"}


def test_val_wer_is_what_eval_custom_scores_with_metric_wer(tmp_path):
    """`val_metric: wer` scores the answers by corpus WER, as `modrwkv eval --task custom --metric wer`, and
    keeps the lowest (of equal ones, the lowest val loss)."""
    cfg, start = from_a_model_learning_colours(tmp_path, val_metric="wer")
    result = train(cfg)
    history = result.metrics["validation"]["history"]
    run, val_file = Path(cfg["output"]["dir"]), Path(cfg["data"]["val"][0])
    for row in history:
        step = run / "checkpoints" / f"step-{int(row['step']):08d}" if row["step"] else start
        metrics, predictions = eval_custom(tmp_path, step, val_file, step.name, "--metric", "wer")
        assert row["val_wer"] == pytest.approx(metrics["wer"])
        assert row["val_distinct_replies"] == len({p["prediction"] for p in predictions})
    best = min(history, key=lambda row: (row["val_wer"], row["val_loss"], row["step"]))
    assert result.metrics["validation"]["best_step"] == best["step"]


@pytest.mark.parametrize("metric, change, message", [
    ("accuracy", "wer", r"records that `modrwkv eval --task custom` scores by WER \(%\) \(wer\): set "
                          r"train.val_metric wer"),
    ("accuracy", "unreadable", r"train.val_metric accuracy answers data.val as `modrwkv eval --task custom` does, "
                               r"which refuses it: .*val.txt: expected a .json, .jsonl, .parquet, .arrow or .tar "
                               r"file"),
    # files eval of both refuses: one validation number cannot average two ways of scoring
    ("accuracy", "mixed", r"which refuses it: .*the records suggest different metrics \('exact' from "
                          r".*train.json:\[0\], 'vqa' from .*vqa.json:\[0\]"),
    ("wer", "missing", r"which refuses it: .*train.json:\[0\]: media file not found: .*gone.png"),
])
def test_val_files_that_the_metric_cannot_score_are_one_line(tmp_path, capsys, metric, change, message):
    cfg = val_config(tmp_path, "run", val_metric=metric)
    folder = tmp_path / "data" / "val"
    if change == "wer":  # records that say how they are scored
        records = json.loads((folder / "train.json").read_text())
        for record in records:
            record["metric"] = "wer"
        (folder / "train.json").write_text(json.dumps(records))
    elif change == "missing":  # the training reader skips the record; `modrwkv eval` would refuse the file
        records = json.loads((folder / "train.json").read_text())
        records[0]["image"] = "gone.png"
        (folder / "train.json").write_text(json.dumps(records))
    elif change == "unreadable":
        records = json.loads((folder / "train.json").read_text())  # what the training reader reads: JSON lines
        (folder / "val.txt").write_text("".join(json.dumps(record) + "\n" for record in records))
        cfg["data"]["val"] = [str(folder / "val.txt")]
    else:
        records = json.loads((folder / "train.json").read_text())
        for record in records:
            record["answers"] = ["red"] * 3
        (folder / "vqa.json").write_text(json.dumps(records))
        cfg["data"]["val"].append(str(folder / "vqa.json"))
    (tmp_path / "run.yaml").write_text(json.dumps(cfg))
    assert main(["train", str(tmp_path / "run.yaml")]) != 0
    err = capsys.readouterr().err
    assert re.search(message, err) and "Traceback" not in err, err


def test_series_files_are_validated_by_forecast_mse_not_accuracy(tmp_path):
    cfg = val_config(tmp_path, "run", val_metric="accuracy")
    cfg["data"] = {"format": "series", "train": ["x.csv"], "options": {"lookback": 8, "horizon": 2}}
    with pytest.raises(ConfigError, match="train.val_metric accuracy scores answers to questions; series files "
                                          "are validated by forecast_mse"):
        config_from_dict(cfg)


def test_val_accuracy_reads_the_val_files_as_training_does_media_folder_and_wildcards(tmp_path):
    """The val files' media are under data.media_folder and data.val names them by a wildcard, as the
    training reader allows: every val record is answered (`modrwkv eval --media-folder` of the same file
    scores as many), where the scorer once looked beside the file and refused it, and did not expand the
    wildcard."""
    cfg = val_config(tmp_path, "run", val_metric="accuracy", max_steps=2)
    data, media, vals = tmp_path / "data", tmp_path / "media", tmp_path / "vals"
    media.mkdir()
    vals.mkdir()
    for part, source in (("train", data), ("val", data / "val")):
        records = json.loads((source / "train.json").read_text())
        for record in records:
            (source / record["image"]).rename(media / f"{part}-{record['image']}")
            record["image"] = f"{part}-{record['image']}"
        (vals if part == "val" else data).joinpath(f"{part}.json").write_text(json.dumps(records))
    cfg["data"].update(train=[str(data / "train.json")], val=[str(vals / "*.json")], media_folder=str(media))
    result = train(cfg)
    history = result.metrics["validation"]["history"]
    assert [row["step"] for row in history] == [2] and 0 <= history[0]["val_accuracy"] <= 100
    scored, _ = eval_custom(tmp_path, result.final_dir, vals / "val.json", "final", "--media-folder", str(media))
    assert history[0]["val_accuracy"] == pytest.approx(scored["accuracy"])


class Requests:
    """Every request the val scorer's pipeline is asked: its last user turn and reply length cap."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from modrwkv.inference import ModRWKVPipeline

        self.asked: list[tuple[str, int]] = []
        generate_batch = ModRWKVPipeline.generate_batch

        def recorded(pipeline, requests):
            self.asked += [(request.messages if isinstance(request.messages, str) else request.messages[-1]["content"],
                            request.sampling["max_new_tokens"]) for request in requests]
            return generate_batch(pipeline, requests)

        monkeypatch.setattr(ModRWKVPipeline, "generate_batch", recorded)


def test_val_accuracy_reads_sharegpt_columns_and_tags_given_in_data_options(tmp_path, monkeypatch):
    """ShareGPT files whose column and tag names data.options gives (not a dataset_info.json) are read by
    the scorer with them, as the val loss reads them: the value is what `modrwkv eval --task custom` scores
    on the same records described by a dataset_info.json with those names. The scorer once detected the
    format from the first record, found none, and refused the file as question-answer records."""
    cfg = val_config(tmp_path, "run", val_metric="accuracy", max_steps=2)
    columns, tags = {"messages": "dialog", "images": "pictures"}, {
        "role_tag": "speaker", "content_tag": "text", "user_tag": "person", "assistant_tag": "bot"}
    for folder in (tmp_path / "data", tmp_path / "data" / "val"):
        records = [{"dialog": [{"speaker": {"human": "person", "gpt": "bot"}[turn["from"]], "text": turn["value"]}
                               for turn in record["conversations"]], "pictures": [record["image"]]}
                   for record in json.loads((folder / "train.json").read_text())]
        (folder / "train.json").write_text(json.dumps(records))
    val = tmp_path / "data" / "val"
    (val / "described.json").write_text((val / "train.json").read_text())
    cfg["data"].update(format="sharegpt", options={"columns": columns, "tags": tags})
    requests = Requests(monkeypatch)
    result = train(cfg)
    [row] = result.metrics["validation"]["history"]
    assert [prompt for prompt, _ in requests.asked] == ["<image>\nWhat colour is it?"] * 6
    (val / "dataset_info.json").write_text(json.dumps({"colours": {
        "file_name": "described.json", "formatting": "sharegpt", "columns": columns, "tags": tags}}))
    scored, predictions = eval_custom(tmp_path, result.final_dir, val / "described.json", "final")
    assert len(predictions) == 6 and row["val_accuracy"] == pytest.approx(scored["accuracy"])


@pytest.mark.parametrize("val_options, asked", [
    ({}, "Write down what is said."),  # data.options' prompt, which the model records
    ({"prompt": "Say it."}, "Say it."),  # data.val_options' prompt, which the val loss reads the files with
    ({"prompt": None}, None),  # the audio alone
])
def test_val_wer_asks_an_asr_manifest_with_the_prompt_the_val_loss_reads(tmp_path, monkeypatch, val_options, asked):
    """An ASR manifest's val samples are asked with the prompt the val loss reads them with: data.options'
    prompt, or data.val_options' over it; the scorer once asked data.options' prompt (the model's) whatever
    val_options said."""
    import yaml
    from test_custom_eval_asr import REPO, manifest
    from test_pipeline import tiny_model_dir

    from modrwkv.data.readers import AsrManifestReader

    data, val = manifest(tmp_path / "train"), manifest(tmp_path / "val", ["two green birds", "red"])
    cfg = yaml.safe_load((REPO / "configs" / "tiny-cpu.yaml").read_text())
    cfg["data"] = {"format": "asr", "train": [str(data)], "val": [str(val)],
                   "options": {"prompt": "Write down what is said."}, "val_options": val_options}
    cfg["train"].update(max_steps=1, warmup_steps=0, batch_size=2, micro_batch_size=2, val_every=1, val_metric="wer")
    cfg["output"].update(dir=str(tmp_path / "run"), save_every=0)
    requests = Requests(monkeypatch)
    train(cfg, model=ModRWKV.from_pretrained(tiny_model_dir()))
    # The independent expectation: the user turns the val loss's reader builds from the same records.
    expected = [s.messages[0].content for s in AsrManifestReader(val, prompt=asked)]
    assert expected == [f"<audio>\n{asked}" if asked else "<audio>"] * 2
    assert [prompt for prompt, _ in requests.asked] == expected


def test_two_val_files_are_validated_as_eval_of_both_scores_them(tmp_path, monkeypatch):
    """data.val of two files is one val set, as `modrwkv eval --task custom --data A B --limit N` reads them:
    the loss and the answers take the first train.val_max_samples records of the files in order, known by
    eval's ids, every reply capped at the longest answer of either file + 16 tokens. The answers were once
    loaded file by file: ids counted in each file ("1" twice), each file's replies capped at its own."""
    from modrwkv.evaluation import runner
    from modrwkv.training import recipe

    cfg = val_config(tmp_path, "run", val_metric="accuracy", max_steps=2, val_max_samples=7)
    val = tmp_path / "data" / "val"
    records = json.loads((val / "train.json").read_text())
    for record in records:  # records known by their place: "file name:N" with several files
        record["conversations"][1]["value"] = "red"
        del record["id"]
    (val / "train.json").write_text(json.dumps(records))
    records[0]["conversations"][1]["value"] = "a long answer that nothing replies " * 2  # 70 bytes
    (val / "long.json").write_text(json.dumps(records[:2]))
    cfg["data"]["val"].append(str(val / "long.json"))
    loss_sources, answered = [], []  # the val loss's samples; (id, reply cap) of each sample answered

    class Recorded(recipe.Validation):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            loss_sources.extend(sample.source for sample in kwargs["samples"][:self.count])

    def recorded(task, pipeline, batch, max_new_tokens):
        answered.extend((sample.id, max_new_tokens) for sample in batch)
        return answer_batch(task, pipeline, batch, max_new_tokens)

    answer_batch = runner.answer_batch
    monkeypatch.setattr(recipe, "Validation", Recorded)
    monkeypatch.setattr(runner, "answer_batch", recorded)
    result = train(cfg)
    expected = [f"train.json:{n}" for n in range(1, 7)] + ["long.json:1"]  # 6 + 1 of 2: the first 7
    assert loss_sources == [f"{val / 'train.json'}:[{n}]" for n in range(6)] + [f"{val / 'long.json'}:[0]"]
    assert answered == [(identifier, 70 + 16) for identifier in expected]  # one validation, at step 2
    answered.clear()
    out = tmp_path / "eval" / "both"
    assert main(["eval", "--task", "custom", "--data", str(val / "train.json"), str(val / "long.json"), "--model",
                 str(result.final_dir), "--output", str(out), "--limit", "7", "--no-progress"]) == 0
    assert answered == [(identifier, 70 + 16) for identifier in expected]
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["id"] for p in predictions] == expected


def test_val_files_are_refused_for_duplicate_ids_as_eval_refuses_them_and_same_names_are_told_apart(tmp_path):
    """Validation loads data.val's files as `modrwkv eval --task custom` does, and refuses ids two records
    share with the same line (eval keeps, resumes and scores predictions by id); files of one name in two
    folders are told apart by their path (x1/test.jsonl:1, x2/test.jsonl:1) in both."""
    from modrwkv.data.readers import DataError
    from modrwkv.training.config import DataConfig
    from modrwkv.training.validation import answer_scorer

    files = []
    for folder, answer in (("x1", "7"), ("x2", "1")):
        (tmp_path / folder).mkdir()
        files.append(tmp_path / folder / "test.jsonl")
        files[-1].write_text(json.dumps({"question": "Which digit?", "answer": answer}) + "\n")
    scorer = answer_scorer(DataConfig(format="qa", train=[str(f) for f in files]), "accuracy", None)
    assert [s.id for s in scorer.samples] == ["x1/test.jsonl:1", "x2/test.jsonl:1"]
    for file in files:
        file.write_text(json.dumps({"id": "q1", "question": "Which digit?", "answer": "7"}) + "\n")
    with pytest.raises(DataError) as info:
        answer_scorer(DataConfig(format="qa", train=[str(f) for f in files]), "accuracy", None)
    assert str(info.value) == (f"train.val_metric accuracy answers data.val as `modrwkv eval --task custom` does, "
                               f"which refuses it: {files[0]}, {files[1]}: duplicate sample ids in the custom all "
                               "split (the first: 'q1', given to 2 samples)")
