"""Training recipe on tiny models (World vocabulary, real tokenizer, width 64, one layer): config,
schedules, stages, loss, checkpoints and resume, LoRA merge, DDP on CPU, strategies, the CLI."""

import copy
import csv
import errno
import importlib.util
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from modrwkv.cli import main
from modrwkv.data.sample import Message, Sample
from modrwkv.lm import RWKV7Config
from modrwkv.lm.random_weights import random_official_state_dict
from modrwkv.multimodal import ModRWKV
from modrwkv.training import ConfigError, build_model, config_from_dict, latest_checkpoint, load_config, lr_at, train
from modrwkv.training.data import StepBatchSampler
from modrwkv.training.lora import load_lora, merge_lora
from modrwkv.training.merge import merge_lora_folder
from modrwkv.training.recipe import build_strategy
import warm_start  # noqa: E402  (tests/)

REPO = Path(__file__).resolve().parents[1]
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 210, 40)}


def image(colour: str) -> np.ndarray:
    return np.zeros((16, 16, 3), np.uint8) + np.array(COLOURS[colour], np.uint8)


def colour_samples(n: int, seed: int = 0, varied: bool = True) -> list[Sample]:
    """"What colour?" about a plain image; `varied`: answers of different lengths, so ranks and
    micro-batches hold different numbers of supervised tokens."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        colour = list(COLOURS)[rng.integers(len(COLOURS))]
        answer = colour if i % 2 or not varied else f"It is {colour}."
        samples.append(Sample([Message("user", "<image>\nWhat colour is it?"), Message("assistant", answer)],
                              images=[image(colour)], source=f"colours[{i}]"))
    return samples


def config(tmp_path: Path, name: str, **train_options) -> dict:
    """configs/tiny-cpu.yaml (stage 2, 30 steps of 8 samples) with `train_options`, its own output and
    no intermediate checkpoints."""
    cfg = yaml.safe_load((REPO / "configs" / "tiny-cpu.yaml").read_text())
    cfg["train"].update(train_options)
    cfg["output"]["dir"] = str(tmp_path / name)
    cfg["output"]["save_every"] = 0  # only the final checkpoint, unless a test asks for more (fast)
    return cfg


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- config -----------------------------------------------------------------------------------


def test_too_few_samples_for_a_batch_names_the_key_and_a_size_that_fits():
    """docs/state-tuning.md's config (train.batch_size left at 256) on a small file: the error says which
    key to lower and to what, and that value plans a run."""
    from modrwkv.training.recipe import plan_steps

    def config(**train):
        return config_from_dict({"train": train}, needs_data=False, needs_model=False)

    with pytest.raises(ConfigError) as error:
        plan_steps(config(), world_size=1, num_samples=40)
    assert str(error.value) == ("40 samples do not fill one batch of 256 (train.batch_size): set train.batch_size "
                                "to at most 40, a multiple of train.micro_batch_size 8")
    assert plan_steps(config(batch_size=40), world_size=1, num_samples=40).total_steps == 1
    with pytest.raises(ConfigError) as error:
        plan_steps(config(batch_size=64, micro_batch_size=16), world_size=2, num_samples=45)
    assert str(error.value) == ("45 samples do not fill one batch of 64 (train.batch_size): set train.batch_size "
                                "to at most 32, a multiple of train.micro_batch_size 16 x 2 processes")
    with pytest.raises(ConfigError) as error:
        plan_steps(config(), world_size=1, num_samples=5)
    assert str(error.value) == ("5 samples do not fill one micro-batch of 8: set train.micro_batch_size and "
                                "train.batch_size to at most 5")
    assert plan_steps(config(batch_size=5, micro_batch_size=5), world_size=1, num_samples=5).total_steps == 1
    with pytest.raises(ConfigError) as error:  # several processes: batch_size is micro_batch_size x processes
        plan_steps(config(batch_size=64, micro_batch_size=32), world_size=2, num_samples=45)
    assert str(error.value) == ("45 samples do not fill one micro-batch of 32 x 2 processes: set train.micro_batch_size "
                                "to at most 22, and train.batch_size to it x 2 (at most 44)")
    assert plan_steps(config(batch_size=44, micro_batch_size=22), world_size=2, num_samples=45).total_steps == 1


def test_unknown_keys_and_bad_values_are_named():
    with pytest.raises(ConfigError, match=r"train\.lerning_rate"):
        config_from_dict({"train": {"lerning_rate": 1e-3}}, needs_data=False, needs_model=False)
    # HF Trainer's names, which no near spelling leads to: the key to write instead
    with pytest.raises(ConfigError, match=r"did you mean 'train.lr' for 'train.learning_rate'\?"):
        config_from_dict({"train": {"learning_rate": 1e-3}}, needs_data=False, needs_model=False)
    with pytest.raises(ConfigError, match=r"did you mean 'output.save_every' for 'train.save_steps'\?"):
        config_from_dict({"train": {"save_steps": 100}}, needs_data=False, needs_model=False)
    with pytest.raises(ConfigError, match=r"did you mean 'train.warmup_steps' for 'train.warmup'\?"):
        config_from_dict({"train": {"warmup": 10}}, needs_data=False, needs_model=False)
    with pytest.raises(ConfigError, match=r"train\.stage: 3 is not one of"):
        config_from_dict({"train": {"stage": 3}}, needs_data=False, needs_model=False)
    with pytest.raises(ConfigError, match=r"train\.batch_size: expected an integer"):
        config_from_dict({"train": {"batch_size": "big"}}, needs_data=False, needs_model=False)
    with pytest.raises(ConfigError, match="exactly one of checkpoint or config"):
        config_from_dict({"model": {"encoders": {"image": {"name": "tiny"}}}}, needs_data=False)
    with pytest.raises(ConfigError, match="lora.targets"):
        config_from_dict({"train": {"lora": {"targets": ["att.query"]}}}, needs_data=False, needs_model=False)
    with pytest.raises(ConfigError, match=r"encoder_lr_scale: unknown modality 'video'"):
        config_from_dict({"train": {"encoder_lr_scale": {"video": 0.1}}}, needs_data=False, needs_model=False)
    with pytest.raises(ConfigError, match=r"encoder_lr_scale\.image must be > 0, got 0.0"):
        config_from_dict({"train": {"encoder_lr_scale": {"image": 0}}}, needs_data=False, needs_model=False)


def test_yaml_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  init_from: some/folder\ndata:\n  train: [a.json]\ntrain:\n  lr: 1e-3\n")
    cfg = load_config(path, ["--train.lr", "2e-5", "--data.train=[b.json, c.json]", "--train.stage", "lora",
                             "--runtime.precision", "32"])
    assert cfg.train.lr == 2e-5 and cfg.data.train == ["b.json", "c.json"] and cfg.train.stage == "lora"
    assert cfg.runtime.precision == "32"
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown key\(s\) \['train\.lr_max'\]"):
        load_config(path, ["--train.lr_max", "1"])


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg.train.betas == [0.9, 0.99] and cfg.train.eps == 1e-8


def test_paper_hyper_parameters_in_vision_configs():
    stage1, stage2 = load_config(REPO / "configs/vision-stage1.yaml"), load_config(REPO / "configs/vision-stage2.yaml")
    assert (stage1.train.stage, stage1.train.batch_size, stage1.train.lr) == ("1", 256, 1e-3)
    assert (stage2.train.stage, stage2.train.batch_size, stage2.train.lr) == ("2", 128, 2e-5)
    for cfg in (stage1, stage2):
        assert (cfg.train.warmup_steps, cfg.train.schedule, cfg.train.weight_decay) == (100, "cosine", 0.0)
        assert cfg.model.ctx_len == 2048 and cfg.runtime.precision == "bf16-mixed"
    assert stage2.model.init_from is not None


# --- schedules --------------------------------------------------------------------------------


def test_cosine_schedule_values():
    kw = dict(schedule="cosine", lr=1e-3, lr_final=1e-4, total_steps=110, warmup_steps=10)
    assert lr_at(0, **kw) == pytest.approx(1e-4)
    assert lr_at(4, **kw) == pytest.approx(5e-4)
    assert lr_at(9, **kw) == pytest.approx(1e-3)
    assert lr_at(10, **kw) == pytest.approx(1e-3)
    assert lr_at(60, **kw) == pytest.approx(1e-4 + 0.9e-3 * 0.5)  # half way: cos = 0
    assert lr_at(35, **kw) == pytest.approx(1e-4 + 0.9e-3 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_at(110, **kw) == pytest.approx(1e-4)


def test_warmup_stable_decay_values():
    kw = dict(schedule="wsd", lr=1e-3, lr_final=0.0, total_steps=100, warmup_steps=10, decay_fraction=0.2)
    assert lr_at(0, **kw) == pytest.approx(1e-4)
    assert all(lr_at(s, **kw) == pytest.approx(1e-3) for s in range(9, 80))
    assert lr_at(80, **kw) == pytest.approx(1e-3 * 19 / 20)
    assert lr_at(89, **kw) == pytest.approx(1e-3 * 10 / 20)
    assert lr_at(99, **kw) == pytest.approx(0.0)


# --- data order ---------------------------------------------------------------------------------


def test_sampler_shards_global_batches_and_resumes():
    kw = dict(micro_batch_size=2, total=7, seed=3)
    single = list(StepBatchSampler(10, world_size=1, rank=0, **{**kw, "micro_batch_size": 4}))
    rank0 = list(StepBatchSampler(10, world_size=2, rank=0, **kw))
    rank1 = list(StepBatchSampler(10, world_size=2, rank=1, **kw))
    assert len(single) == 7 and [a + b for a, b in zip(rank0, rank1, strict=True)] == single
    assert len({i for batch in single[:2] for i in batch}) == 8  # one pass: no repeats
    resumed = StepBatchSampler(10, world_size=2, rank=1, **kw)
    resumed.skip(3)
    assert list(resumed) == rank1[3:]


def test_length_grouping_keeps_similar_lengths_together():
    lengths = list(np.random.default_rng(0).integers(1, 1000, 256))
    sampler = StepBatchSampler(256, micro_batch_size=8, world_size=1, rank=0, total=32, seed=0, lengths=lengths)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(256))
    spread = np.mean([np.ptp([lengths[i] for i in b]) for b in batches])
    assert spread < 150  # random batches of 8 spread over ~780


# --- training ---------------------------------------------------------------------------------


def test_loss_falls_well_below_its_start(tmp_path):
    result = train(config(tmp_path, "run"), samples=colour_samples(64))
    losses = [row["loss"] for row in result.history]
    assert len(losses) == 30 and all(map(math.isfinite, losses))
    assert np.mean(losses[-5:]) < 0.5 * losses[0]
    assert result.final_dir is not None and (result.final_dir / "model.safetensors").exists()
    rows = list(csv.DictReader(open(next((tmp_path / "run" / "logs").rglob("metrics.csv")))))
    assert any(row.get("loss") for row in rows) and any(row.get("tok/s") for row in rows)


@pytest.fixture(scope="module")
def lm_checkpoint(tmp_path_factory) -> str:
    """A "pretrained" LM: random weights everywhere (a fresh RWKV-LM init mixes nothing across time,
    so a frozen one would pass no gradient from the answer back to the image)."""
    path = tmp_path_factory.mktemp("lm") / "tiny-world.pth"
    sizes = yaml.safe_load((REPO / "configs" / "tiny-cpu.yaml").read_text())["model"]["lm"]["config"]
    torch.save(random_official_state_dict(RWKV7Config(**sizes), seed=1), path)
    return str(path)


def test_stage1_changes_only_adapter_weights_and_stage2_keeps_them(tmp_path, lm_checkpoint):
    cfg = config(tmp_path, "stage1", stage="1", max_steps=5)
    cfg["model"]["lm"] = {"checkpoint": lm_checkpoint}
    cfg["model"]["encoders"]["image"]["trainable"] = False
    model = build_model(config_from_dict(cfg, needs_data=False).model, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train(cfg, samples=colour_samples(16), model=model)
    after = result.model.state_dict()
    assert set(after) == set(before)
    for key, value in after.items():
        if key.startswith("adapters."):
            continue
        assert torch.equal(value, before[key]), key
    adapter_weights = [k for k in before if k.startswith("adapters.") and k.endswith("weight")]
    assert adapter_weights and all(not torch.equal(after[k], before[k]) for k in adapter_weights)

    stage2 = {**config(tmp_path, "stage2", max_steps=2), "model": {"init_from": str(result.final_dir), "ctx_len": 64}}
    resumed_model = build_model(config_from_dict(stage2, needs_data=False).model, seed=1)
    for key, value in resumed_model.adapters.state_dict().items():
        assert torch.equal(value, after[f"adapters.{key}"]), key
    train(stage2, samples=colour_samples(16))


class _Modes(pl.Callback):
    """Every submodule's `training` flag at each step's start (the first: this part's first step when resumed)."""

    def __init__(self):
        self.steps: list[dict[str, bool]] = []

    def on_train_batch_start(self, trainer, pl_module, *args):
        self.steps.append({name: m.training for name, m in pl_module.model.named_modules()})


def test_fresh_resumed_and_loaded_runs_train_in_the_same_module_modes(tmp_path, lm_checkpoint):
    """A fresh model, an LM from model.lm.checkpoint, a resumed run and a model.init_from run train with every
    module in training mode but a frozen encoder's, at every step. from_pretrained and load_model return
    eval-mode models and Lightning leaves modes as they are: the last three used to train in eval mode
    (no LoRA dropout, no gradient checkpointing: the LM checkpoints only in training mode)."""
    def run(name: str, model: dict | None = None, **options) -> dict[str, bool]:
        cfg = config(tmp_path, name, max_steps=3)
        cfg["model"]["encoders"]["image"]["trainable"] = False
        if model is not None:
            cfg["model"] = model
        cfg["output"]["save_every"] = 1
        modes = _Modes()
        try:
            train(cfg, samples=colour_samples(8), callbacks=[modes, *options.pop("callbacks", [])], **options)
        except _Crash:
            pass
        assert modes.steps and all(step == modes.steps[0] for step in modes.steps), name  # validation restores them
        return modes.steps[0]

    fresh = run("fresh", callbacks=[_CrashAt(2)])  # after its checkpoint of step 1
    frozen = {name for name in fresh if name.startswith("encoders.image")}
    assert frozen and {name for name, training in fresh.items() if not training} == frozen
    assert run("fresh", resume=True) == fresh
    tiny = yaml.safe_load((REPO / "configs" / "tiny-cpu.yaml").read_text())["model"]
    checkpoint = {**tiny, "lm": {"checkpoint": lm_checkpoint},
                  "encoders": {"image": {**tiny["encoders"]["image"], "trainable": False}}}
    assert run("lm-checkpoint", checkpoint) == fresh
    assert run("init-from", {"init_from": str(latest_checkpoint(tmp_path / "fresh")), "ctx_len": 64}) == fresh


def test_encoder_lr_scale_scales_only_that_encoders_updates(tmp_path, lm_checkpoint):
    """Adam's first update is lr * g / (|g| + eps), about lr * sign(g): with the image encoder at a
    tenth of the rate, its weights move a tenth as far and every other weight moves the same."""
    samples = colour_samples(8)

    def cfg(name: str, **options) -> dict:
        c = config(tmp_path, name, max_steps=1, warmup_steps=0, **options)
        c["model"]["lm"] = {"checkpoint": lm_checkpoint}  # mixes across time, so the image gets a gradient
        return c

    init = build_model(config_from_dict(cfg("init"), needs_data=False).model, seed=0)
    before = {k: v.clone() for k, v in init.state_dict().items()}

    def one_step(name: str, **options) -> dict[str, torch.Tensor]:
        result = train(cfg(name, **options), samples=samples, model=copy.deepcopy(init))
        return {k: v - before[k] for k, v in result.model.state_dict().items()}

    full = one_step("full")
    scaled = one_step("scaled", encoder_lr_scale={"image": 0.1})
    encoder_keys = [k for k in full if k.startswith("encoders.image.")]
    assert encoder_keys and any(full[k].abs().max() > 1e-3 for k in encoder_keys)
    for key in full:
        expected = 0.1 * full[key] if key.startswith("encoders.image.") else full[key]
        torch.testing.assert_close(scaled[key], expected, rtol=1e-3, atol=1e-7, msg=key)


def test_gradient_accumulation_matches_one_big_micro_batch(tmp_path):
    """Accumulated micro-batches are averaged with equal weights: exact when they hold equally many
    supervised tokens (one-token colour names here)."""
    samples = colour_samples(16, varied=False)
    big = train(config(tmp_path, "big", max_steps=3), samples=samples)
    accumulated = train(config(tmp_path, "acc", max_steps=3, micro_batch_size=2), samples=samples)
    assert [r["loss"] for r in accumulated.history] == pytest.approx([r["loss"] for r in big.history], rel=1e-5)
    for (name, a), b in zip(big.model.state_dict().items(), accumulated.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_too_long_samples_are_dropped_and_counted_with_workers_grouping_bf16(tmp_path):
    samples = colour_samples(16)
    samples[3].messages[1].content = "red " * 200
    samples[9].messages[0].content = "<image>\n" + "what " * 200
    cfg = config(tmp_path, "long", max_steps=2, schedule="wsd", gradient_checkpointing=True)
    cfg["data"].update(num_workers=2, group_by_length=True)
    cfg["runtime"]["precision"] = "bf16-mixed"
    result = train(cfg, samples=samples)
    assert result.metrics["dropped"] == {"too_long": 2, "bad_media": 0}
    assert all(math.isfinite(row["loss"]) for row in result.history)


def test_a_checkpoints_time_is_not_counted_as_training_time(tmp_path, monkeypatch):
    """tokens/s is over the seconds in optimizer steps: the checkpoint saved at a step's end (here made
    slow) used to count in that step's seconds, so a run with save_every reported a fraction of its speed,
    and a resumed run other seconds than the checkpoint's totals held for the same steps."""
    import modrwkv.training.checkpoint as checkpoint

    # Each export "takes" an hour: the clock every part of the run reads (time.perf_counter) jumps by one as
    # the export ends, as if it had slept. A real sleep had to be short, and a loaded machine's step then took
    # longer than it (no step here comes near an hour), or long, and the test slow.
    CHECKPOINT_SECONDS = 3600.0
    export, perf_counter, slept = checkpoint.export_model, time.perf_counter, [0.0]

    def slow_export(*args):
        export(*args)
        slept[0] += CHECKPOINT_SECONDS

    monkeypatch.setattr(time, "perf_counter", lambda: perf_counter() + slept[0])
    monkeypatch.setattr(checkpoint, "export_model", slow_export)
    cfg = config(tmp_path, "slow", max_steps=4, micro_batch_size=4)  # two micro-batches per step
    cfg["output"].update(save_every=2, keep_last=3)
    lines: list[str] = []
    result = train(cfg, samples=colour_samples(16), progress=lines.append)
    assert slept[0] == 2 * CHECKPOINT_SECONDS  # the checkpoints of steps 2 and 4 were saved, and "took" their hour
    assert max(row["seconds"] for row in result.history) < CHECKPOINT_SECONDS, result.history
    # The progress line's tokens/s too (its line for step 2 was printed after the checkpoint, and counted it).
    assert [re.search(r"\| ([\d,]+) tokens/s", line)[1] for line in lines] == [
        f"{row['tokens'] / row['seconds']:,.0f}" for row in result.history]
    saved = torch.load(Path(cfg["output"]["dir"]) / "checkpoints" / "step-00000002" / "training_state.ckpt",
                       weights_only=True)["callbacks"]["RunTotals"]
    assert saved["step_seconds"] == sum(row["seconds"] for row in result.history[:2])
    assert result.metrics["tokens_per_s"] == pytest.approx(
        result.metrics["tokens"] / sum(row["seconds"] for row in result.history), rel=1e-9)


def test_a_resumed_run_counts_the_samples_dropped_before_its_stop(tmp_path):
    samples = colour_samples(16)
    for i in (2, 5, 11, 14):
        samples[i].messages[1].content = "red " * 200
    cfg = config(tmp_path, "dropping", max_steps=2)  # 2 steps of 8: every sample once
    stopped = train(cfg, samples=samples, callbacks=[_SignalAt(1, signal.SIGTERM)])
    assert stopped.stopped_by == "SIGTERM" and 0 < stopped.metrics["dropped"]["too_long"] < 4
    resumed = train(cfg, samples=samples, resume=True)
    assert resumed.metrics["dropped"] == {"too_long": 4, "bad_media": 0}  # it used to count step 2's only


def test_a_step_whose_every_sample_is_dropped_has_no_loss(tmp_path):
    """A step all of whose samples were dropped (too long here; media that do not decode alike) learns
    nothing and has no loss: its row's loss is NaN (metrics.csv: nan), its progress line says so, and the
    run's first and final loss are of steps that had one, where the step counted as a loss of 0.0000
    (pulling the line's mean down, and ending the run's summary at 0.0000)."""
    samples = colour_samples(24)
    for i in range(8, 16):  # the second step of three, unshuffled
        samples[i].messages[1].content = "red " * 200
    cfg = config(tmp_path, "dropped-step", max_steps=3, warmup_steps=1)
    cfg["data"]["shuffle"] = False
    lines: list[str] = []
    result = train(cfg, samples=samples, progress=lines.append)
    assert result.metrics["dropped"]["too_long"] == 8
    losses = [row["loss"] for row in result.history]
    assert math.isfinite(losses[0]) and math.isnan(losses[1]) and math.isfinite(losses[2])
    assert "| loss - (every sample dropped) |" in lines[1]
    assert f"| loss {losses[2]:.4f} |" in lines[2]
    assert (result.metrics["first_loss"], result.metrics["final_loss"]) == (losses[0], losses[2])
    cfg = config(tmp_path, "dropped-last", max_steps=2, warmup_steps=1)
    cfg["data"]["shuffle"] = False
    last = train(cfg, samples=samples[:16])
    assert last.metrics["final_loss"] == last.history[0]["loss"]  # the last step that had a loss
    # Stopped after step 1 and resumed: the resumed part's first step is the all-dropped one, and it is recorded
    # as the uninterrupted run's is, where it was taken for the run's first step and ended 'no token to learn from'.
    cfg = config(tmp_path, "dropped-resumed", max_steps=3, warmup_steps=1)
    cfg["data"]["shuffle"] = False
    stopped = train(cfg, samples=samples, callbacks=[_SignalAt(1, signal.SIGTERM)])
    assert stopped.stopped_by == "SIGTERM" and [row["step"] for row in stopped.history] == [1]
    resumed = train(cfg, samples=samples, resume=True)
    assert [row["step"] for row in resumed.history] == [2, 3]
    assert math.isnan(resumed.history[0]["loss"]) and resumed.history[1]["loss"] == pytest.approx(losses[2], rel=1e-5)
    assert (resumed.metrics["first_loss"], resumed.metrics["dropped"]["too_long"]) == (losses[0], 8)


def test_frozen_encoder_features_are_cached(tmp_path, lm_checkpoint):
    cfg = config(tmp_path, "cached", stage="1", max_steps=2)
    cfg["model"]["lm"] = {"checkpoint": lm_checkpoint}
    cfg["model"]["encoders"]["image"]["trainable"] = False
    cfg["model"]["feature_cache"] = str(tmp_path / "cache")
    result = train(cfg, samples=colour_samples(8))
    assert len(list((tmp_path / "cache" / "image").rglob("*.safetensors"))) == 4  # one per distinct image
    assert type(result.model.encoders["image"]).__name__ == "TinyVisionEncoder"  # unwrapped again


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, lm_checkpoint):
    """An uninterrupted 12-step LoRA run (with dropout, so the random numbers matter), saving every 4."""
    tmp_path = tmp_path_factory.mktemp("lora")
    cfg = config(tmp_path, "full", stage="lora", max_steps=12, lora={"rank": 4, "alpha": 8.0, "dropout": 0.1,
                                                                      "targets": ["att.key", "att.value", "ffn.key"]})
    cfg["model"]["lm"] = {"checkpoint": lm_checkpoint}
    cfg["output"]["save_every"] = 4
    modes = _Modes()
    full = train(cfg, samples=colour_samples(32), callbacks=[modes])
    assert_lora_dropout_on(modes.steps[0], full.model)
    return cfg, full, modes.steps[0]


def assert_lora_dropout_on(modes: dict[str, bool], model: ModRWKV) -> None:
    """The run trained with its LoRA dropout on (`modes`: at its first step), so its outcome depends on the RNG:
    the trained model, in training mode, gives different outputs twice on the same batch."""
    dropout = {name: training for name, training in modes.items() if name.startswith("lm.") and name.endswith(".dropout")}
    assert dropout and all(dropout.values()), dropout
    batch = model.collator()([model.processor()(s) for s in colour_samples(2, seed=3)])
    with torch.no_grad():
        once, again = (model.train()(batch.input_ids, batch.media, attention_mask=batch.attention_mask).logits
                       for _ in range(2))
    model.eval()
    assert not torch.equal(once, again)


class _Crash(BaseException):
    """Stands in for a kill (SIGKILL, a node lost): a BaseException, at which a run saves nothing (at an error, an
    Exception, it saves the last completed step: progress.SaveOnError)."""


class _CrashAt(pl.Callback):
    """Kills the run after optimizer step `step` (no teardown of ours runs, as after a SIGKILL)."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            raise _Crash()


@pytest.mark.xdist_group("lora_run")  # one xdist worker trains the fixture's run, not both
def test_killed_and_resumed_run_matches_the_uninterrupted_one(lora_run, tmp_path):
    cfg, full, modes = lora_run
    cfg = copy.deepcopy(cfg)
    cfg["output"]["dir"] = str(tmp_path / "killed")
    with pytest.raises(_Crash):
        train(cfg, samples=colour_samples(32), callbacks=[_CrashAt(6)])
    assert latest_checkpoint(cfg["output"]["dir"]).name == "step-00000004"
    resumed_modes = _Modes()
    resumed = train(cfg, samples=colour_samples(32), resume=True, callbacks=[resumed_modes])
    assert resumed_modes.steps[0] == modes  # it used to train in eval mode, without the LoRA dropout
    assert [row["step"] for row in resumed.history] == list(range(5, 13))
    expected = [row["loss"] for row in full.history[4:]]
    assert [row["loss"] for row in resumed.history] == pytest.approx(expected, rel=1e-5, abs=1e-6)
    a, b = load_file(str(full.final_dir / "lora.safetensors")), load_file(str(resumed.final_dir / "lora.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
        assert torch.equal(a[key], b[key]), key  # the same dropout masks: each step seeded by (seed, step, rank)
    a, b = load_file(str(full.final_dir / "model.safetensors")), load_file(str(resumed.final_dir / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
        assert torch.equal(a[key], b[key]), key  # the same dropout masks: each step seeded by (seed, step, rank)


def test_each_rank_and_step_draws_numbers_of_its_own_whatever_was_drawn_before():
    """Every optimizer step of every process starts from generators seeded by (seed, step, rank) (StepSeeds): the two
    ranks of a run draw different LoRA dropout masks at its first step (they drew the same ones, each rank seeded alike
    by seed_everything), agreeing where independent masks of rate 0.1 do (0.9^2 + 0.1^2 = 82% of the entries), and
    a step draws the same numbers whatever was drawn before it, as a resumed run, which drew nothing before, needs."""
    import random
    from types import SimpleNamespace

    from modrwkv.training.checkpoint import StepSeeds

    dropout, ones = torch.nn.Dropout(0.1), torch.ones(4, 32, 64)  # LoRA's dropout, on a micro-batch's inputs

    def drawn(rank: int, step: int, *, before: int = 0) -> tuple[torch.Tensor, float, float]:
        pl.seed_everything(7, verbose=False)  # as every rank of a run seeded 7 starts
        torch.rand(before), np.random.random(before), [random.random() for _ in range(before)]
        trainer = SimpleNamespace(global_step=step, global_rank=rank, accumulate_grad_batches=2)
        StepSeeds(7).on_train_batch_start(trainer, None, None, 0)  # type: ignore[arg-type]
        return dropout(ones) != 0, np.random.random(), random.random()

    def same(a: tuple[torch.Tensor, float, float], b: tuple[torch.Tensor, float, float]) -> list[bool]:
        return [torch.equal(a[0], b[0]), a[1] == b[1], a[2] == b[2]]

    rank_0, rank_1 = drawn(0, 0), drawn(1, 0)
    assert same(rank_0, rank_1) == [False] * 3
    assert 0.80 < (rank_0[0] == rank_1[0]).float().mean() < 0.84  # 8192 entries: 82% within ~5 sigma (0.4%)
    assert same(drawn(1, 5, before=1000), drawn(1, 5)) == [True] * 3
    assert same(drawn(1, 5), drawn(1, 6)) == [False] * 3
    assert same(drawn(1, 5), drawn(0, 5)) == [False] * 3
    # The step's later micro-batches go on drawing the step's numbers: not seeded again, also where the loop's
    # batch index restarts inside a step (an epoch of the loop need not hold whole steps).
    seeds, trainer = StepSeeds(7), SimpleNamespace(global_step=3, global_rank=0, accumulate_grad_batches=2)
    draws = []
    for batch_idx in (0, 1, 0):
        seeds.on_train_batch_start(trainer, None, None, batch_idx)  # type: ignore[arg-type]
        draws.append(torch.rand(3))
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])
    trainer.global_step = 4
    seeds.on_train_batch_start(trainer, None, None, 1)  # type: ignore[arg-type]
    next_step = (dropout(ones) != 0, np.random.random(), random.random())  # the next step's: seeded for it
    assert same(next_step, drawn(0, 4)) == [True] * 3


@torch.no_grad()
@pytest.mark.xdist_group("lora_run")  # one xdist worker trains the fixture's run, not both
def test_merged_lora_model_gives_the_same_outputs(lora_run, tmp_path):
    _, full, _ = lora_run
    unmerged = ModRWKV.from_pretrained(full.final_dir)
    load_lora(unmerged.lm, full.final_dir)
    assert any(p.abs().sum() > 0 for n, p in unmerged.lm.named_parameters() if n.endswith("lora_b"))
    # Every B moved from its zeros. From a fresh RWKV init (model.lm.config) none would: its att.output and
    # ffn.value are zeros, so no gradient reaches the B of att.key/value or ffn.key (stage lora warns of that LM).
    assert all(p.abs().sum() > 0 for n, p in unmerged.lm.named_parameters() if n.endswith("lora_b"))
    assert main(["merge-lora", str(full.output_dir), str(tmp_path / "merged")]) == 0
    merged = ModRWKV.from_pretrained(tmp_path / "merged")
    assert not (tmp_path / "merged" / "lora.json").exists()
    processor = unmerged.processor()
    batch = unmerged.collator()([processor(s) for s in colour_samples(4, seed=5)])
    expected = unmerged(batch.input_ids, batch.media, attention_mask=batch.attention_mask).logits
    actual = merged(batch.input_ids, batch.media, attention_mask=batch.attention_mask).logits
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)
    merge_lora(unmerged.lm)  # in memory, the same
    torch.testing.assert_close(unmerged(batch.input_ids, batch.media, attention_mask=batch.attention_mask).logits,
                               expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(FileNotFoundError, match="not the output of a LoRA run"):
        merge_lora_folder(tmp_path / "merged", tmp_path / "again")


def test_runtime_threads_sets_each_process_count_for_the_run_and_gives_the_callers_back(tmp_path):
    """runtime.threads: N threads while training (seen from inside a step), the caller's count again after the
    run and after a run ended by an error; 0 is refused naming the key."""
    seen = []

    class Threads(pl.Callback):
        def __init__(self, fail: bool = False):
            self.fail = fail

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(torch.get_num_threads())
            if self.fail:
                raise RuntimeError("injected")

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cfg = config(tmp_path, "run", max_steps=2)
        cfg["runtime"]["threads"] = 1
        train(cfg, samples=colour_samples(16), callbacks=[Threads()])
        assert seen == [1, 1] and torch.get_num_threads() == 2
        cfg = config(tmp_path, "failing", max_steps=2)
        cfg["runtime"]["threads"] = 1
        with pytest.raises(RuntimeError, match="injected"):
            train(cfg, samples=colour_samples(16), callbacks=[Threads(fail=True)])
        assert seen[2:] == [1] and torch.get_num_threads() == 2
        cfg["runtime"]["threads"] = 0
        with pytest.raises(ConfigError, match=r"^runtime.threads must be >= 1 \(or null: torch's count\), got 0$"):
            train(cfg, samples=colour_samples(16))
    finally:
        torch.set_num_threads(before)


def test_the_callers_threads_and_omp_num_threads_come_back_as_lightnings_launchers_change_them(monkeypatch):
    """Lightning's launchers of several CPU processes set torch's count and OMP_NUM_THREADS in the process that
    calls fit (`_set_num_threads_if_needed`); train() gives the caller's back, set or unset."""
    from lightning.fabric.utilities.distributed import _set_num_threads_if_needed

    from modrwkv.training.threads import callers_threads

    before = torch.get_num_threads()
    try:
        for variable in (None, "2"):
            torch.set_num_threads(2)
            if variable is None:
                monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
            else:
                monkeypatch.setenv("OMP_NUM_THREADS", variable)
            with callers_threads():
                monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
                _set_num_threads_if_needed(num_processes=2)  # as a 2-process CPU run's launcher does
                assert os.environ["OMP_NUM_THREADS"] == str(torch.get_num_threads())
                torch.set_num_threads(1)
            assert torch.get_num_threads() == 2 and os.environ.get("OMP_NUM_THREADS") == variable
    finally:
        torch.set_num_threads(before)


def test_the_busy_core_rule_by_hand():
    """Half a core busy at least, and threads beyond the cores left free: the count that leaves them alone."""
    from modrwkv.busy_cores import busy_core_note

    def note(others, threads, cores):
        return busy_core_note(others, threads=threads, cores=cores, during="", remedy="use {free}")

    assert note(0.4, 2, 2) is None and note(1.0, 1, 2) is None and note(1.0, 8, 16) is None
    assert note(0.6, 2, 2).endswith("use 1") and note(2.6, 16, 16).endswith("use 13")


def test_a_run_whose_threads_wait_for_cores_other_processes_hold_is_warned(tmp_path, caplog, busy_core):
    """A process spinning on a core while the run sets up, and torch given a thread per core: the warning names
    the busy cores (measured from /proc/stat, about 1 of them) and the runtime.threads value that leaves them
    alone."""
    cores, before = busy_core, torch.get_num_threads()
    try:
        time.sleep(0.5)  # (the spinner started)
        torch.set_num_threads(cores)

        class SetUp(Exception):
            pass

        class StopAtStart(pl.Callback):  # (the note is written as the run sets up: no step needed, slow here)
            def on_train_start(self, trainer, pl_module):
                raise SetUp

        with caplog.at_level("WARNING", logger="modrwkv.training.threads"), pytest.raises(SetUp):
            train(config(tmp_path, "run", max_steps=1), samples=colour_samples(8), callbacks=[StopAtStart()])
    finally:
        torch.set_num_threads(before)
    [note] = [record.getMessage() for record in caplog.records if record.name == "modrwkv.training.threads"]
    busy = float(re.search(r"kept ([0-9.]+) of the (\d+) cores this run may use busy while it set up", note)[1])
    assert f"of the {cores} cores this run may use" in note and busy >= 0.5, note
    # the count that leaves the busy cores alone: fewer than torch's (how many follows the load: other tests too)
    free = int(re.search(r"set runtime.threads: (\d+) \(`--runtime.threads \1`; the quickstart: `--threads \1`\)$",
                         note)[1])
    assert f"torch's {cores} threads" in note and 1 <= free < cores, note


@pytest.mark.parametrize("configured", [False, True])
def test_a_job_that_starts_after_the_run_set_up_is_warned_about_once(monkeypatch, caplog, request, configured):
    """The busy cores are measured over each stretch of training too (`CHECK_SECONDS`, shortened here): a
    process that starts spinning after the run set up is warned about once, with the way to change the
    count of a run under way (a checkpoint and --resume); a stretch not yet over measures nothing. A count
    set in runtime.threads is watched alike (set for an idle machine, it may meet a busy one)."""
    from types import SimpleNamespace

    from lightning.pytorch.accelerators import CPUAccelerator

    from modrwkv import busy_cores
    from modrwkv.training.threads import TrainingThreads

    monkeypatch.setattr(busy_cores, "CHECK_SECONDS", 1.0)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()  # (else: skipped)
    callback = TrainingThreads(cores if configured else None, since=busy_cores.CoreUse())
    trainer = SimpleNamespace(accelerator=CPUAccelerator(), num_devices=1)
    caplog.set_level("WARNING", logger="modrwkv.training.threads")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(cores)  # torch's count, or the configured one that setup sets
        callback.setup(trainer, None, "fit")  # at once: too short a time to measure, so the training is watched
        assert torch.get_num_threads() == cores
        request.getfixturevalue("busy_core")  # a job started after the setup
        callback.on_train_batch_end(trainer, None, None, None, 0)  # the stretch is not over: nothing measured
        assert not caplog.records
        time.sleep(1.2)
        for _ in range(2):  # once, however long the load lasts
            callback.on_train_batch_end(trainer, None, None, None, 1)
            time.sleep(1.1)
    finally:
        torch.set_num_threads(before)
    [note] = [record.getMessage() for record in caplog.records]
    busy = float(re.search(r"kept ([0-9.]+) of the \d+ cores this run may use busy over \d+ s of its training", note)[1])
    assert busy >= 0.5 and f"torch's {cores} threads" in note, note
    free = int(re.search(r"stop it \(Ctrl-C saves a checkpoint\) and continue with --resume --runtime.threads (\d+) "
                         r"\(the quickstart: the same command with --threads \1\)$", note)[1])
    assert 1 <= free < cores, note


# --- distributed, strategies, CLI ----------------------------------------------------------------


def write_llava(folder: Path, samples: list[Sample]) -> Path:
    """The samples as a LLaVA JSON file with PNG images, as the CLI reads them."""
    records = []
    for i, sample in enumerate(samples):
        Image.fromarray(sample.images[0]).save(folder / f"{i}.png")
        records.append({"id": str(i), "image": f"{i}.png", "conversations": [
            {"from": "human", "value": sample.messages[0].content},
            {"from": "gpt", "value": sample.messages[1].content}]})
    path = folder / "train.json"
    path.write_text(json.dumps(records))
    return path


def test_two_process_ddp_matches_single_process(tmp_path):
    data = write_llava(tmp_path, colour_samples(16))
    (tmp_path / "val").mkdir()
    val = write_llava(tmp_path / "val", colour_samples(5, seed=1))  # 5: the ranks score 3 and 2 (micro-batch 2)
    # val_metric wer: each rank answers its share of the val questions too, and the answers are gathered
    cfg = config(tmp_path, "unused", max_steps=4, batch_size=4, micro_batch_size=2, val_every=2, val_metric="wer")
    cfg["data"] = {"format": "llava", "train": [str(data)], "val": [str(val)]}
    cfg["runtime"].update(devices=2, strategy="ddp")
    cfg["output"]["dir"] = str(tmp_path / "ddp")
    (tmp_path / "ddp.yaml").write_text(json.dumps(cfg))  # JSON is YAML
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # torchrun, and each rank it starts (--no-python: the command line given), start warm
    command = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--no-python",
               *warm_start.command(["-m", "modrwkv.cli", "train", str(tmp_path / "ddp.yaml")])]
    proc = warm_start.run(command, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "model saved to" in proc.stdout

    single = load_config(tmp_path / "ddp.yaml", ["--runtime.devices", "1", "--runtime.strategy", "auto",
                                                 "--train.micro_batch_size", "4", "--output.dir",
                                                 str(tmp_path / "one")])
    result = train(single)
    rows = [r for r in csv.DictReader(open(next((tmp_path / "ddp" / "logs").rglob("metrics.csv")))) if r.get("loss")]
    assert [float(r["loss"]) for r in rows] == pytest.approx([r["loss"] for r in result.history], rel=1e-4)
    # validation: both ranks score their share, and the reduced val loss is the one process's
    val_rows = [r for r in csv.DictReader(open(next((tmp_path / "ddp" / "logs").rglob("metrics.csv"))))
                if r.get("val_loss")]
    assert [(int(r["step"]), float(r["val_loss"]), float(r["val_wer"])) for r in val_rows] == [
        (row["step"], pytest.approx(row["val_loss"], rel=1e-4), pytest.approx(row["val_wer"]))
        for row in result.metrics["validation"]["history"]]
    assert (tmp_path / "ddp" / "best" / "validation.json").is_file()
    a = load_file(str(tmp_path / "ddp" / "final" / "model.safetensors"))
    b = load_file(str(result.final_dir / "model.safetensors"))
    # Two micro-batches of 2 and one of 4 sum in different orders; Adam's normalised update can turn
    # a 1e-7 gradient difference on a near-zero entry into ~1e-5 after 4 steps (seen with 2 threads).
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=5e-5)


# One rank of `modrwkv train` in a two-process run, started as a cluster's scheduler (or torchrun on each of
# two nodes) starts each rank: nothing ends the other ranks when one fails. MODRWKV_TEST_FULL_DISK, if set to
# RANK:STEP:WRITE, makes that rank's (or those ranks', RANK `0,1`) WRITE of step STEP fail as a full disk does:
# `model` rank 0's export of the checkpoint's weights, `state` the training state (which a sharded strategy
# writes on every rank; DDP on rank 0 only, so on rank 1 this stands for its shard), `final` the copy into final/
# (rank 0's), `config` the run's config.yaml (rank 0's, before the first step; STEP is not used); `validation`
# (not a write) an error in that rank's validation forward (STEP is not used); `forward:MICRO` and
# `backward:MICRO` (not writes) that rank running out of memory in micro-batch MICRO (0 the first, of the step's
# accumulated ones) of step STEP: as its training step starts, or in its backward pass at the gradient of the
# model's first weight (the input side, computed last: the gradients of the layers above it are reduced already
# or under way); `step_end` (not a write) an error of that rank's step-end work after step STEP's update, before
# the checkpoint of that step is written (a callback of one's own). The failing rank lives on after its error until its stdin closes, as a notebook's kernel does
# (and as a peer's exit goes unnoticed by NCCL): a rank that waits for it waits for ever.
RANK_LAUNCHER = '''
import errno, os, sys
from pathlib import Path

rank, step, write, *micro = os.environ.get("MODRWKV_TEST_FULL_DISK", "-:-:-").split(":")
if os.environ["LOCAL_RANK"] in rank.split(","):
    import shutil

    import lightning.pytorch.strategies as strategies
    import modrwkv.training.checkpoint as checkpoint

    def full_disk(owner, name, folder_of, folder):
        original = getattr(owner, name)

        def write(*args, **kwargs):
            if folder_of(*args).name == folder:
                raise OSError(errno.ENOSPC, "No space left on device", str(folder_of(*args)))
            return original(*args, **kwargs)

        setattr(owner, name, write)

    step_tmp = f".step-{int(step):08d}.tmp"
    if write == "model":
        full_disk(checkpoint, "export_model", lambda model, folder, *rest: Path(folder), step_tmp)
    elif write == "state":
        full_disk(strategies.DDPStrategy, "save_checkpoint", lambda self, state, path, *rest: Path(path).parent,
                  step_tmp)
    elif write == "final":
        full_disk(shutil, "copytree", lambda source, destination, *rest: Path(destination), ".final.tmp")
    elif write == "validation":  # not a write: the rank runs out of memory in validation's forward (eval mode)
        from modrwkv.multimodal import ModRWKV

        def out_of_memory(forward_batch):
            def forward(self, *args, **kwargs):
                if not self.training:
                    raise RuntimeError("CUDA out of memory")
                return forward_batch(self, *args, **kwargs)
            return forward

        ModRWKV.forward_batch = out_of_memory(ModRWKV.forward_batch)
    elif write in ("forward", "backward"):  # not a write: the rank runs out of memory in a training step
        import torch
        from modrwkv.training.module import ModRWKVModule

        micro_batch = int(micro[0]) if micro else 0

        def out_of_memory(*args):
            raise torch.OutOfMemoryError(f"CUDA out of memory (injected in the {write} pass)")

        def failing(training_step):
            def step_of_training(self, batch, batch_idx):
                if (self.global_step + 1, batch_idx % self.trainer.accumulate_grad_batches) == (int(step), micro_batch):
                    if write == "forward":
                        out_of_memory()
                    next(p for p in self.model.parameters() if p.requires_grad).register_hook(out_of_memory)
                return training_step(self, batch, batch_idx)
            return step_of_training

        ModRWKVModule.training_step = failing(ModRWKVModule.training_step)
    elif write == "step_end":
        original_end = checkpoint.PretrainedCheckpoint.on_train_batch_end

        def failing_end(self, trainer, *args):
            if trainer.global_step == int(step):
                raise RuntimeError("a step-end callback failed (injected)")
            return original_end(self, trainer, *args)

        checkpoint.PretrainedCheckpoint.on_train_batch_end = failing_end
    else:
        import modrwkv.training.config as config

        full_disk(config, "write_text_atomically", lambda path, *rest: Path(path), "config.yaml")

from modrwkv.cli import main

status = main(sys.argv[1:])
if os.environ["LOCAL_RANK"] in rank.split(","):
    sys.stdin.read()
sys.stdout.flush()
sys.stderr.flush()
os._exit(status)  # not through the interpreter's shutdown, which takes a rank 2 s more (in C, after main)
'''


def start_ranks(tmp_path: Path, *, max_steps: int, output: dict, env: dict[str, str],
                args: Sequence[str] = (), val_every: int = 0) -> list[subprocess.Popen]:
    """The two ranks (RANK_LAUNCHER, each with `env` added) of a DDP run of this file's `config` for `max_steps`
    with `output` settings (dir: tmp_path/run) on 8 LLaVA colour samples, a batch of 4 in micro-batches of 2:
    one on each rank, `modrwkv train` given `args` too, validated every `val_every` steps (if set) on 4 others.
    Their output is read line by line."""
    cfg = config(tmp_path, "run", max_steps=max_steps, batch_size=4, micro_batch_size=2, val_every=val_every)
    cfg["data"] = {"format": "llava", "train": [str(write_llava(tmp_path, colour_samples(8)))]}
    if val_every:
        (tmp_path / "val").mkdir()
        cfg["data"]["val"] = [str(write_llava(tmp_path / "val", colour_samples(4, seed=1)))]
    cfg["runtime"].update(devices=2, strategy="ddp")
    cfg["output"].update(output)
    (tmp_path / "run.yaml").write_text(json.dumps(cfg))  # JSON is YAML
    (tmp_path / "rank.py").write_text(RANK_LAUNCHER)
    with socket.socket() as sock:  # a free port for rank 0's rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "NODE_RANK": "0", **env}
    return [warm_start.popen([str(tmp_path / "rank.py"), "train", str(tmp_path / "run.yaml"), *args],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=tmp_path, env={**env, "LOCAL_RANK": str(rank)}) for rank in range(2)]


def outputs_when_one_fails(ranks: list[subprocess.Popen], failed: int, timeout: float) -> list[tuple[str, str]]:
    """Each rank's (stdout, stderr) where rank `failed` (RANK_LAUNCHER's failing one, which lives on until its stdin
    closes) failed: the other's once it ends, then that one's; the test fails, both killed, if the other still
    waits for it after `timeout` s."""
    other = 1 - failed
    outputs: list[tuple[str, str]] = [("", ""), ("", "")]
    try:
        outputs[other] = ranks[other].communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for rank in ranks:
            rank.kill()
        stderr = [rank.communicate()[1][-1500:] for rank in ranks]
        pytest.fail(f"rank {other} still waits for rank {failed} after {timeout} s:\n{stderr[0]}\n{stderr[1]}")
    outputs[failed] = ranks[failed].communicate("", timeout=60)
    return outputs


def test_sigterm_to_one_rank_stops_every_rank_at_one_checkpoint(tmp_path):
    """A scheduler's SIGTERM may reach one rank only: every rank stops after the same step, which is saved, and
    says so with the signal's exit status. The rank that did not receive it used to name the signal "a signal
    on another rank" and fail looking up that name's number (a KeyError traceback, exit status 1)."""
    ranks = start_ranks(tmp_path, max_steps=100000, output={"log_every": 1}, env={})
    # Rank 0's first progress line: training is under way. A run that never gets there (a rendezvous that
    # waits, a rank that failed) would hold this read for ever: both ranks are killed after 120 s, which ends it.
    watchdog = threading.Timer(120, lambda: [rank.kill() for rank in ranks])
    watchdog.start()
    try:
        first = ranks[0].stdout.readline()
    finally:
        watchdog.cancel()
    if not first.startswith("step 1/100000 | "):
        for rank in ranks:
            rank.kill()
        pytest.fail(f"rank 0 did not start training: {first}{ranks[0].communicate()[1][-3000:]}")
    ranks[1].send_signal(signal.SIGTERM)
    try:
        outputs = [rank.communicate(timeout=120) for rank in ranks]
    except subprocess.TimeoutExpired:
        for rank in ranks:
            rank.kill()
        pytest.fail("a rank still ran 120 s after rank 1's SIGTERM")
    lasts = []
    for rank, (out, err) in zip(ranks, outputs):
        assert rank.returncode == 128 + signal.SIGTERM, err[-3000:]
        lasts.append(out.strip().splitlines()[-1])
    step = int(lasts[0].split("stopped at step ")[1].split()[0])
    checkpoint = tmp_path / "run" / "checkpoints" / f"step-{step:08d}"
    assert lasts == [f"stopped at step {step} of 100000 (SIGTERM); checkpoint saved to {checkpoint}. "
                     f"Continue with: modrwkv train {tmp_path / 'run.yaml'} --resume"] * 2
    assert latest_checkpoint(tmp_path / "run") == checkpoint
    assert ModRWKV.from_pretrained(checkpoint).lm.config.n_embd == 64


@pytest.mark.parametrize(("here", "there", "named"), [
    (signal.SIGINT, signal.SIGTERM, "SIGTERM"), (None, signal.SIGINT, "SIGINT"), (signal.SIGTERM, 0, "SIGTERM")])
def test_every_rank_stops_with_the_signal_reduced_over_the_ranks(here, there, named):
    """The ranks agree on one signal, the highest number any received (SIGTERM over Ctrl-C): each says it, and exits
    with its status. A rank that received Ctrl-C while another received a scheduler's SIGTERM used to keep its own
    name, and exit 130 where the others exited 143. (Two stubbed ranks: this one, and `there` for the other.)"""
    from types import SimpleNamespace

    from modrwkv.training.progress import StopOnSignal

    saved: list[int] = []
    checkpointer = SimpleNamespace(total_steps=10, save_now=lambda trainer, module: saved.append(trainer.global_step))
    strategy = SimpleNamespace(root_device=torch.device("cpu"), reduce=lambda tensor, reduce_op: (
        torch.maximum(tensor, torch.tensor(int(there))) if reduce_op == "max" else None))
    trainer = SimpleNamespace(world_size=2, accumulate_grad_batches=1, global_step=3, strategy=strategy,
                              should_stop=False)
    stopper = StopOnSignal(checkpointer)  # type: ignore[arg-type]
    if here is not None:
        stopper.handle(here, None)
    stopper.on_train_batch_end(trainer, None, None, None, 0)  # type: ignore[arg-type]
    assert (stopper.signal_name, saved, trainer.should_stop) == (named, [3], True)


def test_fsdp_strategy_constructs():
    from lightning.pytorch.strategies import FSDPStrategy

    from modrwkv.lm.model import Block

    strategy = build_strategy("fsdp")
    assert isinstance(strategy, FSDPStrategy)
    assert strategy.kwargs["auto_wrap_policy"]._module_classes == {Block}  # one FSDP unit per RWKV block
    with pytest.raises(ValueError, match="requires a GPU"):  # Lightning runs FSDP on GPUs only
        pl.Trainer(accelerator="cpu", devices=1, strategy=strategy, logger=False)


def test_gradient_clipping_under_fsdp_uses_fsdps_own_norm():
    """Lightning's FSDP precision plugin raises on norm clipping: the module clips through FSDP's
    `clip_grad_norm_` (the norm over every shard), every other strategy through Lightning (tests/test_gpu.py
    checks the losses against plain training on a GPU)."""
    import types

    from modrwkv.training.module import ModRWKVModule

    calls = []
    fsdp = build_strategy("fsdp")
    fsdp.model = types.SimpleNamespace(clip_grad_norm_=lambda value: calls.append(("fsdp", value)))
    for strategy in (fsdp, "auto"):
        module = types.SimpleNamespace(trainer=types.SimpleNamespace(strategy=strategy),
                                       clip_gradients=lambda optimizer, value, algorithm: calls.append(("lightning", value, algorithm)))
        ModRWKVModule.configure_gradient_clipping(module, None, 0.5, "norm")
        ModRWKVModule.configure_gradient_clipping(module, None, None, None)  # train.grad_clip: null
    assert calls == [("fsdp", 0.5), ("lightning", 0.5, "norm")]


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="DeepSpeed is not installed")
@pytest.mark.parametrize("stage", [1, 2, 3])
def test_deepspeed_strategies_construct(stage):
    """Each ZeRO stage builds its strategy. Lightning trains with DeepSpeed on CUDA only, so the
    training steps are in tests/test_gpu.py."""
    from lightning.pytorch.strategies import DeepSpeedStrategy

    trainer = pl.Trainer(accelerator="cpu", devices=1, strategy=build_strategy(f"deepspeed_stage_{stage}"),
                         logger=False)
    assert isinstance(trainer.strategy, DeepSpeedStrategy)
    assert trainer.strategy.config["zero_optimization"]["stage"] == stage


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="DeepSpeed is not installed")
def test_deepspeed_takes_the_micro_batch_size_from_our_batch_sampler():
    """Lightning's DeepSpeed strategy sets DeepSpeed's `train_micro_batch_size_per_gpu` from the
    training loader's `batch_sampler.batch_size` (on an H200, 2026-12-04, every ZeRO stage raised
    AttributeError there before the first step)."""
    import types

    from torch.utils.data import DataLoader

    from modrwkv.training.data import StepBatchSampler

    loader = DataLoader(range(10), batch_sampler=StepBatchSampler(10, micro_batch_size=3, world_size=1, rank=0,
                                                                   total=4, seed=0))
    source = types.SimpleNamespace(is_defined=lambda: True, dataloader=lambda: loader)
    strategy = pl.Trainer(accelerator="cpu", devices=1, strategy=build_strategy("deepspeed_stage_2"), logger=False).strategy
    strategy._lightning_module = types.SimpleNamespace(trainer=types.SimpleNamespace(
        fit_loop=types.SimpleNamespace(_data_source=source)))
    assert strategy._auto_select_batch_size() == 3


def test_drop_counts_are_a_dict_of_every_reason_that_fsdps_input_conversion_keeps():
    """FSDP's precision plugin rebuilds a batch's mappings from their items: an empty Counter (a step
    that dropped nothing) reached the step as {} and counting its reasons raised KeyError (H200)."""
    from lightning.pytorch.plugins.precision import FSDPPrecision

    from modrwkv.processing.loader import DROP_REASONS, DroppingCollator

    collate = DroppingCollator(lambda kept: None)
    for items, expected in (([(object(), "")], [0, 0]), ([(None, "bad_media"), (object(), "")], [0, 1])):
        batch = FSDPPrecision("32-true").convert_input(collate(items))
        assert type(batch.dropped) is dict and [batch.dropped[r] for r in DROP_REASONS] == expected
        assert dict(batch.dropped.items()) == batch.dropped  # what a rebuild from items gives back


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="DeepSpeed is not installed")
def test_two_process_fsdp_and_deepspeed_train_like_one_process(tmp_path):
    """FSDP (full sharding) and DeepSpeed ZeRO-2/3 over two processes, each with half of every batch, stopped
    after step 2 and resumed from its checkpoint: the same losses, step by step, as one process training alone
    without a stop, and a final model with the same weights, gathered from the shards. Through `train` and Lightning's strategies on CPU (torch's FSDP and DeepSpeed's CPU
    accelerator over gloo; tests/sharded_cpu.py lifts Lightning's CUDA-only checks). What it caught: on an
    H200, FSDP failing at its first step (Lightning refuses norm clipping under FSDP) and ZeRO-3 in its first
    backward (dataclass outputs hid the tensors its hooks look for); here, `ln0` run outside the block that
    owns it (FSDP gathers a block's weights for that block's forward: rank 1 read an empty shard), and a LoRA
    run's final save under FSDP ("FSDP assumes blocks.0.att.receptance.lora_a is in the state_dict").
    tests/test_gpu.py runs the strategies on CUDA."""
    from sharded_cpu import losses

    plain = {"": losses(tmp_path, "auto"), "lora": losses(tmp_path, "auto:lora")}
    strategies = ["fsdp", "deepspeed_stage_2", "deepspeed_stage_3", "fsdp:lora"]
    command = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--no-python",
               *warm_start.command([str(REPO / "tests" / "sharded_cpu.py"), str(tmp_path), *strategies])]
    paths = [str(REPO / "tests"), str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    run = warm_start.run(command, text=True, timeout=600, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(paths), "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(run.stdout.strip().splitlines()[-1])
    for run in plain.values():
        assert len(run["losses"]) == 4 and run["losses"][-1] < run["losses"][0]  # it learns
    for strategy in strategies:
        stage = strategy.partition(":")[2]
        assert results[strategy]["final"], strategy
        assert results[strategy]["losses"] == pytest.approx(plain[stage]["losses"], rel=1e-5), strategy
        # the model; of a LoRA run, its base model and its LoRA weights
        for name in ["model.safetensors"] + (["lora.safetensors"] if stage else []):
            expected = load_file(str(tmp_path / ("auto-" + stage if stage else "auto") / "final" / name))
            weights = load_file(str(tmp_path / strategy.replace(":", "-") / "final" / name))
            assert weights.keys() == expected.keys(), (strategy, name)
            for key in expected:  # the halves' gradients sum in another order (the DDP test's tolerance)
                torch.testing.assert_close(weights[key], expected[key], rtol=1e-4, atol=5e-5, msg=f"{strategy}: {key}")


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is not None, reason="DeepSpeed is installed")
@pytest.mark.parametrize("stage", [1, 2, 3])
def test_deepspeed_without_deepspeed_is_a_clear_error(stage):
    with pytest.raises(ConfigError, match="needs DeepSpeed, which is not installed: pip install deepspeed"):
        build_strategy(f"deepspeed_stage_{stage}")


def test_wandb_without_wandb_is_a_clear_error(tmp_path):
    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed")
    cfg = config(tmp_path, "wandb")
    cfg["output"]["wandb_project"] = "modrwkv"
    with pytest.raises(ConfigError, match="wandb is not installed"):
        train(cfg, samples=colour_samples(8))


def test_cli_reports_config_errors(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  stage: 1\n  max_step: 10\n")
    assert main(["train", str(path)]) == 2
    assert "unknown key(s) ['train.max_step']" in capsys.readouterr().err


# --- progress and stopping --------------------------------------------------------------------


class _LogReliance(pl.Callback):
    """Stands in for a callback that logs `media_reliance` (shown on the progress line when logged)."""

    def on_train_batch_end(self, trainer, pl_module, *args):
        pl_module.log("media_reliance", 0.25, batch_size=1)


def test_progress_line_every_log_every_steps_and_epoch_column(tmp_path):
    lines = []
    cfg = config(tmp_path, "progress", max_steps=12)
    cfg["output"]["log_every"] = 5
    result = train(cfg, samples=colour_samples(32), progress=lines.append, callbacks=[_LogReliance()])
    assert [line.split(" | ")[0] for line in lines] == ["step 5/12", "step 10/12", "step 12/12"]
    losses = [row["loss"] for row in result.history]
    for line, rows in zip(lines, (losses[:5], losses[5:10], losses[10:])):
        fields = dict(part.rsplit(" ", 1) for part in line.split(" | ") if " " in part and "/" not in part)
        assert float(fields["loss"]) == pytest.approx(np.mean(rows), abs=1e-4)  # the mean since the last line
        assert "tokens/s" in line and "ETA" in line and fields["media_reliance"] == "0.250"
    assert "epoch 2.50" in lines[1] and "samples 80" in lines[1]  # 10 steps x 8 samples, of 32
    rows = list(csv.DictReader(open(tmp_path / "progress" / "logs" / "version_0" / "metrics.csv")))
    epochs = {int(float(r["step"])): float(r["epoch"]) for r in rows if r.get("loss")}
    assert epochs == {4: 40 / 32, 9: 80 / 32}  # Lightning's step column counts from 0: after steps 5 and 10
    saved = (tmp_path / "progress" / "config.yaml").read_text()
    assert saved.startswith("# this run: 12 optimizer steps of 8 samples = 3.00 epochs of 32 samples "
                            "(train.max_steps=12, which overrides train.epochs)")
    assert load_config(tmp_path / "progress" / "config.yaml", needs_data=False).train.max_steps == 12


def test_a_resumed_runs_progress_lines_show_the_media_reliance_measured_before_its_stop(tmp_path):
    """Media reliance measured every 5 steps (and at the last); stopped at step 6 and resumed, the resumed
    run's line of step 8 shows what the uninterrupted run's shows, the measurement before the stop (it
    used to be absent until the resumed run measured again)."""
    def lines_of(name, **extra):
        cfg = config(tmp_path, name, max_steps=10)
        cfg["output"].update(log_every=2, media_reliance_every=5)
        lines = []
        result = train(cfg, samples=colour_samples(16), progress=lines.append, **extra)
        return cfg, result, {line.split(" | ")[0]: line.split(" | ")[-1] for line in lines}

    _, _, full = lines_of("full")
    cfg, stopped, first = lines_of("stopped", callbacks=[_SignalAt(6, signal.SIGTERM)])
    assert stopped.stopped_by == "SIGTERM" and first["step 6/10"] == full["step 6/10"]
    resumed = []
    train(cfg, samples=colour_samples(16), resume=True, progress=resumed.append)
    tails = {line.split(" | ")[0]: line.split(" | ")[-1] for line in resumed}
    assert full["step 8/10"].startswith("media_reliance ") and tails["step 8/10"] == full["step 8/10"]


def test_a_run_shorter_than_log_every_has_no_lightning_warning(tmp_path):
    """A short run (state tuning's and the audio quickstart's few steps) printed Lightning's "number
    of training batches is smaller than the logging interval" warning, though the run's own progress
    line comes at its last step anyway."""
    lines = []
    cfg = config(tmp_path, "short", max_steps=2)
    cfg["output"]["log_every"] = 5
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(cfg, samples=colour_samples(16), progress=lines.append)
    assert [line.split(" | ")[0] for line in lines] == ["step 2/2"]
    assert not [w for w in caught if "logging interval" in str(w.message)]


class _SignalAt(pl.Callback):
    def __init__(self, step, signum):
        self.step, self.signum = step, signum

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


@pytest.mark.xdist_group("lora_run")  # one xdist worker trains the fixture's run, not both
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_a_checkpoint_and_resume_matches_the_uninterrupted_run(lora_run, tmp_path, signum):
    cfg, full, modes = lora_run
    cfg = copy.deepcopy(cfg)
    cfg["output"]["dir"] = str(tmp_path / "stopped")
    previous = signal.getsignal(signum)
    stopped = train(cfg, samples=colour_samples(32), callbacks=[_SignalAt(6, signum)])
    assert signal.getsignal(signum) is previous  # the handlers are put back
    # The caller's callbacks run before the stopper's step-end check: the run stops at this step.
    assert stopped.stopped_by == signal.Signals(signum).name and stopped.final_dir is None
    assert stopped.checkpoint.name == "step-00000006" == latest_checkpoint(cfg["output"]["dir"]).name
    assert [row["step"] for row in stopped.history] == list(range(1, 7))
    # The run's totals so far travel in the checkpoint, step 6 included (saved before the module records it).
    saved = torch.load(stopped.checkpoint / "training_state.ckpt", weights_only=True)["callbacks"]["RunTotals"]
    assert saved["recorded_steps"] == 6 and saved["tokens"] == sum(r["tokens"] for r in stopped.history)
    assert saved["first_loss"] == stopped.history[0]["loss"] and saved["final_loss"] == stopped.history[-1]["loss"]
    resumed_modes = _Modes()
    resumed = train(cfg, samples=colour_samples(32), resume=True, callbacks=[resumed_modes])
    assert resumed_modes.steps[0] == modes  # it used to train in eval mode, without the LoRA dropout
    assert [row["loss"] for row in resumed.history] == pytest.approx([r["loss"] for r in full.history[6:]],
                                                                      rel=1e-5, abs=1e-6)
    # The summary is the whole run's, as the uninterrupted run's: it used to cover steps 7-12 only.
    ours, theirs = resumed.metrics, full.metrics
    assert ours["first_loss"] == theirs["first_loss"] == full.history[0]["loss"]
    assert ours["tokens"] == theirs["tokens"] == sum(r["tokens"] for r in full.history)
    assert ours["final_loss"] == pytest.approx(theirs["final_loss"], rel=1e-5)
    # Time: both parts' added up; tokens/s: all the tokens over both parts' seconds in optimizer steps.
    step_seconds = saved["step_seconds"] + sum(r["seconds"] for r in resumed.history)
    assert ours["tokens_per_s"] == pytest.approx(ours["tokens"] / step_seconds, rel=1e-9)
    assert ours["seconds"] > saved["seconds"] + step_seconds - saved["step_seconds"]
    a, b = load_file(str(full.final_dir / "lora.safetensors")), load_file(str(resumed.final_dir / "lora.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
        assert torch.equal(a[key], b[key]), key  # the same dropout masks: each step seeded by (seed, step, rank)


def start_cli_train(tmp_path: Path, num_samples: int, output: dict, *, data: dict | None = None,
                    popen: dict | None = None, **train_options: object) -> subprocess.Popen:
    """`modrwkv train` in a child process (one thread) on `num_samples` LLaVA colour samples, with this
    file's `config` with `train_options`, `output` settings (dir: tmp_path/run) and `data` settings; its
    output is read line by line. Started warm (tests/warm_start.py), unless `popen` asks for what only a
    fresh process has (a session of its own)."""
    cfg = config(tmp_path, "unused", **train_options)
    cfg["data"] = {"format": "llava", "train": [str(write_llava(tmp_path, colour_samples(num_samples)))],
                   **(data or {})}
    cfg["output"].update(dir=str(tmp_path / "run"), **output)
    (tmp_path / "run.yaml").write_text(json.dumps(cfg))
    command = ["-m", "modrwkv.cli", "train", str(tmp_path / "run.yaml")]
    options = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    if popen:
        return subprocess.Popen([sys.executable, *command], **options, **popen)
    return warm_start.popen(command, **options)


def test_cli_saves_on_sigterm_and_says_how_to_resume(tmp_path):
    proc = start_cli_train(tmp_path, 16, {"log_every": 2}, max_steps=100000)
    first = proc.stdout.readline()  # the first progress line: training is under way
    assert first.startswith("step 2/100000 | epoch 1.00 | samples 16 | loss "), first + proc.stderr.read()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]  # not success: the run is unfinished
    last = out.strip().splitlines()[-1]
    step = int(last.split("stopped at step ")[1].split()[0])
    checkpoint = tmp_path / "run" / "checkpoints" / f"step-{step:08d}"
    assert last == (f"stopped at step {step} of 100000 (SIGTERM); checkpoint saved to {checkpoint}. "
                    f"Continue with: modrwkv train {tmp_path / 'run.yaml'} --resume")
    assert latest_checkpoint(tmp_path / "run") == checkpoint


def test_cli_sigterm_in_the_last_step_completes_the_run_and_exits_0(tmp_path):
    """The last step finishes, final/ is written and nothing is left to resume: the run is complete, so
    the command says so and succeeds. It used to exit 143 as if stopped, which makes a batch scheduler
    or `modrwkv train ... && modrwkv eval ...` treat a finished model as unfinished."""
    proc = start_cli_train(tmp_path, 32, {"log_every": 1}, max_steps=3, batch_size=32, micro_batch_size=1)  # long steps
    for expected in ("step 1/3", "step 2/3"):  # step 2's line is written as step 3, the last, begins
        line = proc.stdout.readline()
        assert line.startswith(expected), line + proc.stderr.read()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    final = tmp_path / "run" / "final"
    assert ModRWKV.from_pretrained(final).lm.config.n_embd == 64
    assert out.strip().splitlines()[-1].startswith("trained 3 steps: loss ")
    assert err.strip().splitlines()[-1] == (f"WARNING modrwkv.training.recipe: SIGTERM arrived as training finished: "
                                            f"the run is complete (the trained model is in {final}) and nothing "
                                            "needs resuming")


def test_a_spawn_started_data_worker_enforces_the_configured_image_limit(tmp_path, monkeypatch):
    """The image pixel limit is process-wide, and a data-loader worker started with spawn (macOS's and
    Windows' default) inherits nothing from its parent: the worker's own setup must apply
    data.max_image_pixels, or it decodes what the config refuses with Pillow's default (89 million)."""
    from torch.utils.data import DataLoader

    from modrwkv.training import recipe

    paths = []
    for i, side in enumerate((8, 16, 8, 16)):  # 64 pixels (allowed) and 256 pixels (over the limit of 100)
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(np.full((side, side, 3), 40 * i, np.uint8)).save(paths[-1])
    samples = [Sample([Message("user", "<image>\nWhat colour is it?"), Message("assistant", "grey")],
                      images=[str(path)], source=f"grey[{i}]") for i, path in enumerate(paths)]
    contexts = []

    def spawned_loader(*args, **kwargs):
        loader = DataLoader(*args, **kwargs, multiprocessing_context="spawn")
        contexts.append((loader.num_workers, loader.multiprocessing_context.get_start_method()))
        return loader

    monkeypatch.setattr(recipe, "DataLoader", spawned_loader)
    cfg = config(tmp_path, "spawn", max_steps=1, batch_size=4, micro_batch_size=4)
    cfg["data"].update(num_workers=1, max_image_pixels=100)
    result = train(cfg, samples=samples)
    assert contexts == [(1, "spawn")]
    assert result.metrics["dropped"] == {"too_long": 0, "bad_media": 2}  # the two 16x16 images, in the worker


def test_second_ctrl_c_while_saving_stops_at_once_and_the_previous_checkpoint_resumes(tmp_path, monkeypatch):
    import modrwkv.training.checkpoint as checkpoint

    cfg = config(tmp_path, "twice", max_steps=8)
    cfg["output"]["save_every"] = 2
    export = checkpoint.export_model
    pressed = []

    def export_pressing_again(model, folder, *args):  # the second Ctrl-C lands while a checkpoint is written
        if pressed:
            os.kill(os.getpid(), signal.SIGINT)
        export(model, folder, *args)

    class CtrlCAt(pl.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 3:
                pressed.append(True)
                os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(checkpoint, "export_model", export_pressing_again)
    previous = signal.getsignal(signal.SIGINT)
    # Lightning answers a KeyboardInterrupt with sys.exit(1): here it stays a KeyboardInterrupt.
    with pytest.raises(KeyboardInterrupt):
        train(cfg, samples=colour_samples(16), callbacks=[CtrlCAt()])
    assert signal.getsignal(signal.SIGINT) is previous
    # Step 3's checkpoint was cut short: the one before it is the newest, complete and resumable.
    assert latest_checkpoint(cfg["output"]["dir"]).name == "step-00000002"
    monkeypatch.setattr(checkpoint, "export_model", export)
    resumed = train(cfg, samples=colour_samples(16), resume=True)
    assert [row["step"] for row in resumed.history] == list(range(3, 9)) and resumed.final_dir.is_dir()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_before_training_starts(tmp_path, monkeypatch, signum):
    """While Lightning sets up the data (its SIGTERM handler in place, ours not yet): SIGTERM still
    stops with a checkpoint (Lightning's would exit with status 0 after a step, unsaved), Ctrl-C
    stops at once as a KeyboardInterrupt (Lightning's: sys.exit(1))."""
    from modrwkv.training.recipe import TrainData

    loader = TrainData.train_dataloader

    def signalled_loader(self):
        os.kill(os.getpid(), signum)
        return loader(self)

    monkeypatch.setattr(TrainData, "train_dataloader", signalled_loader)
    cfg = config(tmp_path, "early", max_steps=4)
    previous = signal.getsignal(signum)
    if signum == signal.SIGINT:
        with pytest.raises(KeyboardInterrupt):
            train(cfg, samples=colour_samples(16))
        assert latest_checkpoint(cfg["output"]["dir"]) is None
    else:
        stopped = train(cfg, samples=colour_samples(16))
        assert stopped.stopped_by == "SIGTERM" and stopped.final_dir is None and len(stopped.history) == 1
        assert stopped.checkpoint == latest_checkpoint(cfg["output"]["dir"])
        assert stopped.checkpoint.name == "step-00000001"
    assert signal.getsignal(signum) is previous


def test_ctrl_c_in_lightnings_teardown_of_a_finished_run_is_recorded_not_an_interruption(tmp_path, monkeypatch):
    """Lightning's teardown gives back the handlers it found when it set up: they used to include one that
    raised KeyboardInterrupt at once, so a Ctrl-C there called a run whose final/ was written interrupted."""
    from lightning.pytorch.trainer.connectors.signal_connector import _SignalConnector

    teardown = _SignalConnector.teardown

    def teardown_then_ctrl_c(self):
        teardown(self)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(_SignalConnector, "teardown", teardown_then_ctrl_c)
    result = train(config(tmp_path, "torn", max_steps=2), samples=colour_samples(8))
    assert result.final_dir.is_dir() and result.signal_at_end == "SIGINT" and result.stopped_by is None
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_keep_last_never_deletes_the_checkpoint_it_just_wrote(tmp_path, monkeypatch):
    """A run killed between renaming step 4's folder into place and pointing `latest` at it leaves a
    newer folder than `latest`; a resumed run stopped at step 3 must keep step 3 (keep_last: 1)."""
    import modrwkv.training.checkpoint as checkpoint

    cfg = config(tmp_path, "stale", max_steps=8)
    cfg["output"].update(save_every=2, keep_last=1)
    write = checkpoint.write_text_atomically

    def killed_at_step_4(path, text):
        if text == "step-00000004":
            raise _Crash()
        write(path, text)

    monkeypatch.setattr(checkpoint, "write_text_atomically", killed_at_step_4)
    with pytest.raises(_Crash):
        train(cfg, samples=colour_samples(16))
    monkeypatch.setattr(checkpoint, "write_text_atomically", write)
    assert latest_checkpoint(cfg["output"]["dir"]).name == "step-00000002"

    class SigtermInStep3(pl.Callback):
        def on_train_batch_start(self, trainer, *args):
            if trainer.global_step == 2:
                os.kill(os.getpid(), signal.SIGTERM)

    stopped = train(cfg, samples=colour_samples(16), resume=True, callbacks=[SigtermInStep3()])
    assert stopped.checkpoint.name == "step-00000003"
    assert latest_checkpoint(cfg["output"]["dir"]) == stopped.checkpoint  # still there, so --resume finds it


def test_run_killed_while_writing_its_final_model_is_finished_by_resume(tmp_path, monkeypatch):
    import modrwkv.training.checkpoint as checkpoint

    cfg = config(tmp_path, "final", max_steps=4)
    replace = os.replace

    def killed_before_final(source, target):
        if Path(target).name == "final":
            raise _Crash()
        replace(source, target)

    monkeypatch.setattr(checkpoint.os, "replace", killed_before_final)
    with pytest.raises(_Crash):
        train(cfg, samples=colour_samples(16))
    monkeypatch.setattr(checkpoint.os, "replace", replace)
    out = Path(cfg["output"]["dir"])
    assert not (out / "final").exists() and latest_checkpoint(out).name == "step-00000004"
    with pytest.raises(FileExistsError, match=r"holds checkpoints of an unfinished run; continue it \(--resume\)"):
        train(cfg, samples=colour_samples(16))  # the same command again, without --resume
    resumed = train(cfg, samples=colour_samples(16), resume=True)
    assert resumed.history == [] and resumed.final_dir == out / "final"
    # Its numbers are the killed run's, which the checkpoint carries (they used to be NaN: no step was made).
    assert math.isfinite(resumed.metrics["first_loss"]) and resumed.metrics["tokens"] > 0
    with pytest.raises(FileExistsError, match=re.escape(f"{out} holds a finished run (its model is {out / 'final'}); "
                                                          "to train again, choose another output.dir")):
        train(cfg, samples=colour_samples(16))
    saved = load_file(str(latest_checkpoint(out) / "model.safetensors"))
    final = load_file(str(out / "final" / "model.safetensors"))
    assert saved.keys() == final.keys() and all(torch.equal(saved[k], final[k]) for k in saved)
    # final/ links the checkpoint's weights rather than storing them a second time, and keeps them when the
    # checkpoints are deleted.
    step = latest_checkpoint(out)
    assert os.path.samefile(out / "final" / "model.safetensors", step / "model.safetensors")
    # A model saved into final/ leaves the checkpoint as it was: save_pretrained writes the model card, config.json
    # and the encoder's folder in place, so these are final/'s own copies (linked, the card changed in both).
    before = {path: path.read_bytes() for path in step.rglob("*") if path.is_file()}
    ModRWKV.from_pretrained(out / "final").save_pretrained(out / "final")  # its card: without the run's config
    assert (out / "final" / "README.md").read_text() != (step / "README.md").read_text()
    assert {path: path.read_bytes() for path in step.rglob("*") if path.is_file()} == before
    shutil.rmtree(out / "checkpoints")
    assert ModRWKV.from_pretrained(out / "final").lm.config.n_embd == 64


def test_final_is_a_copy_where_the_file_system_has_no_hard_links(tmp_path, monkeypatch):
    import modrwkv.training.checkpoint as checkpoint

    step = tmp_path / "checkpoints" / "step-00000002"
    (step / "encoders").mkdir(parents=True)
    for name, data in {"model.safetensors": b"weights", "encoders/image.bin": b"encoder",
                       checkpoint.TRAINING_STATE: b"optimizer"}.items():
        (step / name).write_bytes(data)

    def no_links(source, destination):
        raise OSError(errno.EPERM, "Operation not permitted")  # e.g. FAT, some network file systems

    monkeypatch.setattr(checkpoint.os, "link", no_links)
    final = checkpoint.write_final(tmp_path, step)
    assert {str(p.relative_to(final)): p.read_bytes() for p in final.rglob("*") if p.is_file()} == {
        "model.safetensors": b"weights", "encoders/image.bin": b"encoder"}
    assert not any(os.path.samefile(final / name, step / name) for name in ("model.safetensors", "encoders/image.bin"))


def test_cli_twice_ctrl_c_exits_130_and_says_what_to_run(tmp_path):
    proc = start_cli_train(tmp_path, 32, {"log_every": 1, "save_every": 0}, max_steps=100000, batch_size=32,
                           micro_batch_size=1)  # long steps
    first = proc.stdout.readline()
    assert first.startswith("step 1/100000"), first + proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    while "SIGINT received" not in (line := proc.stderr.readline()):  # the first one is taken
        assert line, proc.stdout.read()
    proc.send_signal(signal.SIGINT)  # within the same 32-micro-batch step, before anything is saved
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]  # Lightning's own handling exits with 1
    assert "Traceback" not in err and "Detected KeyboardInterrupt" not in err
    again = f"modrwkv train {tmp_path / 'run.yaml'}"
    assert err.strip().splitlines()[-1] == f"modrwkv train: interrupted; no checkpoint was saved: start again with {again}"


def test_ctrl_c_from_a_terminal_reaches_the_loader_workers_too_and_still_saves(tmp_path):
    """A terminal's Ctrl-C signals the whole foreground process group: the data-loader workers used to
    die of it, ending the run with "DataLoader worker exited unexpectedly" and no checkpoint."""
    proc = start_cli_train(tmp_path, 16, {"log_every": 1}, data={"num_workers": 1}, max_steps=100000,
                           popen={"start_new_session": True})
    first = proc.stdout.readline()
    assert first.startswith("step 1/100000"), first + proc.stderr.read()
    os.killpg(proc.pid, signal.SIGINT)  # as the terminal does
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
    step = int(out.split("stopped at step ")[1].split()[0])
    assert latest_checkpoint(tmp_path / "run").name == f"step-{step:08d}"


def test_resume_without_a_checkpoint_says_to_start_again(tmp_path, capsys):
    cfg = config(tmp_path, "never-saved")
    (tmp_path / "never-saved").mkdir()  # a run stopped before its first checkpoint leaves its config and logs
    (tmp_path / "run.yaml").write_text(json.dumps(cfg))
    assert main(["train", str(tmp_path / "run.yaml"), "--resume"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"modrwkv train: error: --resume: no complete checkpoint under {tmp_path / 'never-saved' / 'checkpoints'} "
        "(the run stopped before its first one): start it again without --resume")
    # no folder at all: a run started from another folder (a relative output.dir) or a misspelt one
    (tmp_path / "run.yaml").write_text(json.dumps(config(tmp_path, "elsewhere")))
    assert main(["train", str(tmp_path / "run.yaml"), "--resume"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"modrwkv train: error: --resume: no run to continue: {tmp_path / 'elsewhere'} does not exist (output.dir, "
        f"relative to the folder the command runs in: {Path.cwd()})")
