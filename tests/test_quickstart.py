"""The quickstart's own pieces: the procedural data, the vision encoder's pretraining, its stages and
how they stop and continue. (The whole `modrwkv quickstart` command runs end to end in test_cli.py.)"""

import json
import os
import signal
import time

import numpy as np
import pytest
import torch

from modrwkv.encoders import build_encoder
from modrwkv.quickstart.data import COLOURS, POSITIONS, SHAPES, Shape, generate_samples
from modrwkv.quickstart.encoder_pretraining import cell_labels, pretrain_vision_encoder


def test_cell_labels_name_the_object_of_each_cells_quadrant():
    shapes = [Shape("circle", "red", "top right"), Shape("triangle", "orange", "bottom left")]
    # colours: red = 1, orange = 6; shapes: circle = 1, triangle = 3; 0 = empty
    assert cell_labels(shapes, 2) == ([0, 1, 6, 0], [0, 1, 3, 0])
    colours, kinds = cell_labels(shapes, 4)
    assert colours == [0, 0, 1, 1,
                       0, 0, 1, 1,
                       6, 6, 0, 0,
                       6, 6, 0, 0]
    assert kinds == [0 if c == 0 else (1 if c == 1 else 3) for c in colours]
    with pytest.raises(ValueError, match="even image grid"):
        cell_labels(shapes, 3)


def test_pretraining_teaches_the_encoder_to_see_and_is_refused_on_a_frozen_one():
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        encoder = build_encoder("tiny", image_size=64, grid=2, width=32)
        result = pretrain_vision_encoder(encoder, 300, batch_size=16, seed=0, held_out=128, progress_bar=False)
    finally:
        torch.set_num_threads(threads)
    # about half the cells are empty, so always answering "empty" scores ~50%; chance is lower
    assert result.colour_accuracy > 0.9 and result.shape_accuracy > 0.9
    assert sum(result.losses[-10:]) / 10 < 0.2 * result.losses[0]
    frozen = build_encoder("tiny", image_size=64, grid=2, width=32, trainable=False)
    with pytest.raises(ValueError, match="frozen"):
        pretrain_vision_encoder(frozen, 1)


def _signal_at_call(monkeypatch, calls: int, *signums: int) -> None:
    """Sends `signums` to this process (real signals, as a kill or a terminal sends them) while the
    pretraining draws its `calls`-th batch of scenes."""
    from modrwkv.quickstart import encoder_pretraining

    draw, count = encoder_pretraining._scenes, []

    def scenes(*args, **kwargs):
        count.append(1)
        if len(count) == calls:
            for signum in signums:
                os.kill(os.getpid(), signum)
        return draw(*args, **kwargs)

    monkeypatch.setattr(encoder_pretraining, "_scenes", scenes)


def test_a_recorded_stage_of_a_folder_from_before_keep_to_is_loaded_from_its_final_folder(tmp_path):
    """Until stage 2 kept its model in the quickstart's model/ (`keep_to`), it left it in stage2/final and
    the quickstart saved model/ after its evaluation. Such a folder killed between stage 2's record and
    model/ holds stage 2's only model in stage2/final: a rerun deleted it (as final/ beside model/) and
    then failed to load model/. It now moves final/ to model/ and carries on."""
    from modrwkv.multimodal import ModRWKV
    from modrwkv.quickstart.run import QuickstartSettings, build_model
    from modrwkv.quickstart.stages import RunRecord, train_stage

    model = build_model(QuickstartSettings(n_layer=1, n_embd=64, encoder_width=32))
    record = RunRecord.open(tmp_path, {"test": 1})
    model.save_pretrained(tmp_path / "stage2" / "final")
    record.complete("stage2", {"steps": 3})
    loaded, metrics = train_stage(build_model(QuickstartSettings(n_layer=1, n_embd=64, encoder_width=32, seed=1)),
                                  "2", [], record=record, steps=3, lr=1e-2, batch_size=4, warmup_steps=0, seed=0,
                                  output_dir=tmp_path, progress_bar=False, media="images and series",
                                  keep_to=tmp_path / "model")
    assert metrics == {"steps": 3} and not (tmp_path / "stage2" / "final").exists()
    for state in (loaded.state_dict(), ModRWKV.from_pretrained(tmp_path / "model").state_dict()):
        assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_a_stage_records_the_quickstarts_media_layout_on_a_model_from_before_media_layout(tmp_path):
    """A quickstart whose stage 1 completed under a version from before media_layout (its model's
    config.json names none, so it loads as the default, "media_text") and whose stage 2 trained after it
    saved model/ as "media_text": chat then asked the question-first model media-first. Each stage now
    records the quickstart's layout on what it loads and on what it trains and keeps."""
    from modrwkv.multimodal import ModRWKV
    from modrwkv.quickstart.data import generate_samples
    from modrwkv.quickstart.run import QuickstartSettings, build_model
    from modrwkv.quickstart.stages import RunRecord, train_stage

    record = RunRecord.open(tmp_path, {"test": 1})
    old = build_model(QuickstartSettings(n_layer=1, n_embd=64, encoder_width=32))
    old.save_pretrained(tmp_path / "stage1" / "final")
    config_file = tmp_path / "stage1" / "final" / "config.json"
    config = json.loads(config_file.read_text())
    del config["media_layout"]  # as a version from before the field wrote it
    config_file.write_text(json.dumps(config))
    record.complete("stage1", {"steps": 3})
    common = dict(record=record, lr=1e-2, batch_size=4, warmup_steps=0, seed=0, output_dir=tmp_path,
                  progress_bar=False, media="images and series", media_layout="text_media_text")
    assert ModRWKV.from_pretrained(tmp_path / "stage1" / "final").media_layout == "media_text"
    stage1, _ = train_stage(None, "1", [], steps=3, **common)
    assert stage1.media_layout == "text_media_text"
    stage1.media_layout = "media_text"  # the model a stage starts from does not decide what it keeps
    trained, _ = train_stage(stage1, "2", list(generate_samples(8, 0, question_first=True)), steps=2,
                             keep_to=tmp_path / "model", **common)
    assert trained.media_layout == "text_media_text"
    assert json.loads((tmp_path / "model" / "config.json").read_text())["media_layout"] == "text_media_text"


def test_loading_a_completed_stages_model_is_not_counted_as_training(tmp_path, monkeypatch):
    """A rerun loads the model each completed stage left behind: that time counted in the report's
    train_seconds, as training. It is left out now, in the process that loads and, through the record,
    in every later one (`total_seconds`, `seconds`, still counts it). Here a load "takes" an hour: the clock the
    record reads (time.monotonic) jumps by one as it loads, as if it had slept (a real sleep of 0.3 s could be
    overslept past the bound below on a loaded machine)."""
    from modrwkv.quickstart import stages

    LOAD_SECONDS = 3600.0
    monotonic, slept = time.monotonic, [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: monotonic() + slept[0])
    record = stages.RunRecord.open(tmp_path, {"test": 1})
    record.complete("stage0", {"steps": 3})

    def slow_load(folder):
        slept[0] += LOAD_SECONDS
        return f"the model in {folder.name}"

    monkeypatch.setattr(stages.ModRWKV, "from_pretrained", slow_load)
    seconds, training = record.seconds(), record.training_seconds()
    loaded = stages.train_stage(None, "0", [], record=record, steps=3, lr=1e-2, batch_size=4, warmup_steps=0, seed=0,
                                output_dir=tmp_path, progress_bar=False, media="images and series")
    assert loaded == ("the model in final", {"steps": 3})
    loading = (record.seconds() - seconds) - (record.training_seconds() - training)
    assert LOAD_SECONDS <= loading < LOAD_SECONDS + 1.0  # the load's time, and nothing else of the stage's
    record.write()
    rerun = stages.RunRecord.open(tmp_path, {"test": 1})
    assert rerun.seconds() - rerun.training_seconds() == pytest.approx(loading, abs=1e-3)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_pretraining_with_its_state_saved_and_it_continues_exactly(tmp_path, monkeypatch, signum):
    """The vision encoder pretraining used to start over from step 0 when stopped: it now saves its
    state at the end of the step a signal arrives in, and continues from it to the weights, losses
    and held-out accuracies of an uninterrupted pretraining. A second Ctrl-C stops at once, unsaved."""
    from modrwkv.quickstart.stages import StageStopped

    def pretrain(state_file=None):
        torch.manual_seed(0)
        encoder = build_encoder("tiny", image_size=64, grid=2, width=32)
        result = pretrain_vision_encoder(encoder, 6, batch_size=4, seed=0, held_out=16, progress_bar=False,
                                         state_file=state_file)
        return encoder, result

    expected_encoder, expected = pretrain()
    state_file = tmp_path / "pretraining.pt"
    with monkeypatch.context() as patch:
        _signal_at_call(patch, 3, signum)
        with pytest.raises(StageStopped) as stopped:
            pretrain(state_file)
    assert str(stopped.value) == (f"vision encoder pretraining stopped by {signal.Signals(signum).name} at step 3 "
                                  "of 6, checkpoint saved")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers put back
    encoder, result = pretrain(state_file)
    assert result.resumed_from_step == 3 and expected.resumed_from_step is None
    assert result.losses == expected.losses
    assert (result.colour_accuracy, result.shape_accuracy) == (expected.colour_accuracy, expected.shape_accuracy)
    got, want = encoder.state_dict(), expected_encoder.state_dict()
    assert all(torch.equal(got[key], want[key]) for key in want)

    state_file.unlink()
    with monkeypatch.context() as patch:
        _signal_at_call(patch, 2, signal.SIGINT, signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            pretrain(state_file)
    assert not state_file.exists()


def _quadrants(image) -> dict[str, tuple[float, ...] | None]:
    """Mean colour of the drawn (non-background) pixels of each quadrant, None when it is empty."""
    pixels = np.asarray(image, dtype=np.float32)
    result = {}
    for index, name in enumerate(POSITIONS):
        row, col = divmod(index, 2)
        cell = pixels[row * 32:(row + 1) * 32, col * 32:(col + 1) * 32].reshape(-1, 3)
        drawn = cell[cell.min(axis=1) < 200]  # backgrounds are 225-255 in every channel
        result[name] = tuple(drawn.mean(axis=0)) if len(drawn) > 20 else None
    return result


def _nearest_colour(rgb: tuple[float, ...]) -> str:
    return min(COLOURS, key=lambda name: sum((a - b) ** 2 for a, b in zip(rgb, COLOURS[name])))


def test_generated_answers_agree_with_the_drawn_pixels():
    """Counts and colours checked against the images themselves; same seed, same data; every
    question type and answer value occurs."""
    samples = list(generate_samples(300, seed=3, series_fraction=0.0))
    answers = set()
    for sample in samples:
        quadrants = _quadrants(sample.images[0])
        question, answer = sample.messages[0].content.split("\n")[0], sample.meta["answer"]
        answers.add(answer)
        if sample.meta["type"] == "count":
            assert int(answer) == sum(q is not None for q in quadrants.values())
        elif question.startswith("What colour is the shape in the "):
            position = question.removeprefix("What colour is the shape in the ").rstrip("?")
            assert _nearest_colour(quadrants[position]) == answer
        elif sample.meta["type"] == "position":
            assert quadrants[answer] is not None and _nearest_colour(quadrants[answer]) == question.split()[3]
    assert {s.meta["type"] for s in samples} == {"count", "colour", "shape", "position"}
    assert set(COLOURS) | set(SHAPES) | set(POSITIONS) | {"1", "2", "3"} <= answers
    again = list(generate_samples(20, seed=3, series_fraction=0.0))
    assert [s.messages for s in again] == [s.messages for s in samples[:20]]
    assert all(np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0])) for a, b in zip(again, samples))


def test_a_stage_ends_with_the_weights_that_scored_best_on_validation(tmp_path):
    """train_stage scores the model every `validate_every` steps from `validate_from` on and at the
    last step, and hands back the weights of the best score, not the last ones."""
    from modrwkv.quickstart.run import QuickstartSettings, build_model
    from modrwkv.quickstart.stages import train_stage

    from modrwkv.multimodal import ModRWKV
    from modrwkv.quickstart.stages import RunRecord

    model = build_model(QuickstartSettings(n_layer=1, n_embd=64, encoder_width=32))
    samples = list(generate_samples(16, 0))
    scores = iter([0.2, 0.7, 0.4, 0.7 - 1e-9])  # the second call (step 4) is best
    snapshots = []

    def validate(model) -> float:
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(scores)

    record = RunRecord.open(tmp_path, {"test": 1})
    model, metrics = train_stage(model, "2", samples, record=record, steps=7, lr=1e-2, batch_size=4, warmup_steps=0,
                                 seed=0, output_dir=tmp_path, progress_bar=False, media="images and series",
                                 validate=validate, validate_every=2, validate_from=2, keep_to=tmp_path / "kept")
    assert [step for step, _ in metrics["validation"]] == [2, 4, 6, 7] and metrics["best_step"] == 4
    for final in (model.state_dict(), ModRWKV.from_pretrained(tmp_path / "kept").state_dict()):
        assert all(torch.equal(final[k], snapshots[1][k]) for k in final)
    assert not all(torch.equal(snapshots[1][k], snapshots[3][k]) for k in snapshots[1])  # training went on after it


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_the_quickstart_instead_of_its_stage_and_the_stage_resumes_with_its_best_weights(
        tmp_path, signum):
    """A stage stopped by a signal (first Ctrl-C, SIGTERM) used to return as if finished: the quickstart
    went on to the next stage with a half-trained model. Now it ends there with a checkpoint, and the
    same stage run again resumes from it with the scores and weights it had kept: it ends as an
    uninterrupted stage does."""
    from modrwkv.quickstart.run import QuickstartSettings, build_model
    from modrwkv.quickstart.stages import RunRecord, StageStopped, train_stage

    samples = list(generate_samples(16, 0))
    calls, signalled = [], []

    def validate(model) -> float:  # the signal arrives at step 2; the stage stops there
        if not signalled:
            signalled.append(signum)
            os.kill(os.getpid(), signum)
        calls.append(len(calls))
        return [0.5, 0.9, 0.1, 0.2][len(calls) - 1]  # step 4 is best

    def run(folder):
        model = build_model(QuickstartSettings(n_layer=1, n_embd=64, encoder_width=32))
        record = RunRecord.open(folder, {"test": 1})
        return train_stage(model, "2", samples, record=record, steps=7, lr=1e-2, batch_size=4, warmup_steps=0,
                           seed=0, output_dir=folder, progress_bar=False, media="images and series",
                           validate=validate, validate_every=2, validate_from=2, keep_to=folder / "kept")

    with pytest.raises(StageStopped) as stopped:
        run(tmp_path / "stopped")
    assert (stopped.value.stage, stopped.value.signal_name, stopped.value.step) == ("2", signal.Signals(signum).name, 2)
    assert calls == [0]
    model, metrics = run(tmp_path / "stopped")  # resumed from step 2, with step 2's score
    assert metrics["resumed_from_step"] == 2 and calls == [0, 1, 2, 3]
    assert metrics["validation"] == [[2, 0.5], [4, 0.9], [6, 0.1], [7, 0.2]] and metrics["best_step"] == 4
    calls.clear()  # the uninterrupted stage (no signal this time), validated with the same scores
    reference, expected = run(tmp_path / "uninterrupted")
    assert calls == [0, 1, 2, 3] and expected["validation"] == metrics["validation"]
    got, want = model.state_dict(), reference.state_dict()
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-6)


def test_a_quickstart_stopped_in_its_encoder_pretraining_continues_it_and_a_refusal_comes_alone(
        capsys, tmp_path, monkeypatch, one_torch_thread):
    """SIGTERM in the vision encoder pretraining of a real `modrwkv quickstart`: it ends with the line the
    training stages give, and the same command run again continues the pretraining from the step the
    signal arrived in, to the encoder an uninterrupted pretraining trains. A rerun with other options is
    refused with its error alone: the run's header line used to come first."""
    from safetensors.torch import load_file

    from modrwkv.cli import main
    from modrwkv.quickstart.run import QuickstartSettings, build_model

    options = ["--encoder-steps", "6", "--stage0-steps", "1", "--stage1-steps", "1", "--steps", "1", "--train-samples",
               "16", "--test-samples", "8", "--validation-samples", "8", "--batch-size", "4", "--no-progress"]
    output = tmp_path / "qs"
    with monkeypatch.context() as patch:
        _signal_at_call(patch, 3, signal.SIGTERM)
        assert main(["quickstart", "--output", str(output), *options]) == 143
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == (
        "modrwkv quickstart: vision encoder pretraining stopped by SIGTERM at step 3 of 6, checkpoint saved; run the "
        "same command again to continue from there")

    assert main(["quickstart", "--output", str(output), *options, "--seed", "1"]) == 2
    refused = capsys.readouterr()
    assert refused.out == "" and refused.err == (
        f"modrwkv quickstart: error: {output} holds a quickstart started with other options: --seed 0 (now 1). Run it "
        "with the options it was started with to continue it, add --restart to start it over (its folder is deleted), "
        "or choose another --output\n")

    assert main(["quickstart", "--output", str(output), *options]) == 0
    out = capsys.readouterr().out
    assert out.startswith("modrwkv quickstart: training a tiny ModRWKV") and "finished" not in out.split("\n")[1]
    pretraining = json.loads((output / "quickstart.json").read_text())["results"]["vision_encoder"]
    encoder = build_model(QuickstartSettings(encoder_pretrain_steps=6, batch_size=4)).encoders["image"]
    expected = pretrain_vision_encoder(encoder, 6, batch_size=4, seed=0, progress_bar=False)  # uninterrupted
    assert pretraining == {"steps": 6, "final_loss": expected.losses[-1], "cell_colour_accuracy": expected.colour_accuracy,
                           "cell_shape_accuracy": expected.shape_accuracy, "resumed_from_step": 3}
    saved, want = load_file(str(output / "vision_encoder.safetensors")), encoder.state_dict()
    assert saved.keys() == want.keys() and all(torch.equal(saved[key], want[key]) for key in want)
    assert not (output / "vision_encoder_pretraining.pt").exists()


def _signal_in_lightnings_teardown(patch, stages, send):
    from lightning.pytorch.trainer.connectors.signal_connector import _SignalConnector

    teardown = _SignalConnector.teardown

    def teardown_then_signal(self):  # Lightning has given back the handlers it found
        teardown(self)
        send()

    patch.setattr(_SignalConnector, "teardown", teardown_then_signal)


def _signal_as_train_returns(patch, stages, send):
    from modrwkv.training.progress import StopOnSignal

    restore = StopOnSignal.restore

    def restore_then_signal(self):  # `train`'s own handlers are gone
        restore(self)
        send()

    patch.setattr(StopOnSignal, "restore", restore_then_signal)


def _signal_while_saving_the_kept_weights(patch, stages, send):
    save = stages.save_model_atomically

    def save_when_signalled(*args):
        send()
        save(*args)

    patch.setattr(stages, "save_model_atomically", save_when_signalled)


class _Terminated(BaseException):
    """What the quickstart's command makes of a SIGTERM outside the stages' own handling."""


def _terminate(signum, frame):
    raise _Terminated


def _train_small_stage(folder):
    """Stage 2 of a tiny quickstart model, 3 steps, validated at steps 2 and 3, its weights kept in folder/kept."""
    from modrwkv.quickstart.run import QuickstartSettings, build_model
    from modrwkv.quickstart.stages import RunRecord, train_stage

    model = build_model(QuickstartSettings(n_layer=1, n_embd=64, encoder_width=32))
    return train_stage(model, "2", list(generate_samples(8, 0)), record=RunRecord.open(folder, {"test": 1}), steps=3,
                       lr=1e-2, batch_size=4, warmup_steps=0, seed=0, output_dir=folder, progress_bar=False,
                       media="images and series", validate=lambda model: 0.5, validate_every=2, validate_from=2,
                       keep_to=folder / "kept")


@pytest.fixture(scope="module")
def small_stage_metrics(tmp_path_factory):
    return _train_small_stage(tmp_path_factory.mktemp("stage") / "uninterrupted")[1]


@pytest.mark.xdist_group("small_stage_metrics")  # one xdist worker trains the fixture's stage, not both
@pytest.mark.parametrize("moment, signum", [
    (_signal_in_lightnings_teardown, signal.SIGTERM), (_signal_in_lightnings_teardown, signal.SIGINT),
    (_signal_as_train_returns, signal.SIGTERM), (_signal_while_saving_the_kept_weights, signal.SIGTERM)])
def test_a_signal_once_a_stage_has_trained_waits_until_the_stage_is_recorded(tmp_path, monkeypatch, moment, signum,
                                                                            small_stage_metrics):
    """A signal after a stage's training (in Lightning's teardown, as `train` returns, while the stage saves
    the weights it keeps): it used to stop the run at once, before the stage was recorded complete (a
    Ctrl-C in the teardown even as an interruption of an unfinished run), and the rerun resumed it at its
    last step, training nothing. Now the stage is recorded first, the run then stops ("finished as SIGTERM
    arrived"), and the rerun takes the recorded stage as it is."""
    from modrwkv.quickstart import stages
    from modrwkv.quickstart.stages import StageStopped

    sent = []

    def send():
        if not sent:  # once
            sent.append(signum)
            os.kill(os.getpid(), signum)

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with monkeypatch.context() as patch:
            moment(patch, stages, send)
            with pytest.raises(StageStopped, match=f"stage 2 finished as {signal.Signals(signum).name} arrived"):
                _train_small_stage(tmp_path / "stopped")
        assert sent and signal.getsignal(signal.SIGTERM) is _terminate  # the handlers are put back
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        model, metrics = _train_small_stage(tmp_path / "stopped")
    finally:
        signal.signal(signal.SIGTERM, previous)
    timing = ("seconds", "tokens_per_s")
    assert {k: v for k, v in metrics.items() if k not in timing} == {
        k: v for k, v in json.loads(json.dumps(small_stage_metrics)).items() if k not in timing}
    assert metrics["final_loss"] == metrics["final_loss"] and (tmp_path / "stopped" / "kept").is_dir()
