"""The training-memory estimator: its parts against the real model (parameter counts, saved
activations counted by autograd, state tensors), one real training run measured against the whole
estimate, and `modrwkv train --estimate-memory`."""

import copy
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from modrwkv.cli import main
from modrwkv.data.sample import Message, Sample
from modrwkv.encoders import build_encoder
from modrwkv.lm import RWKV7, RWKV7Config
from modrwkv.lm.model import Block
from modrwkv.lm.ops.cross_entropy import CHUNK_ROWS
from modrwkv.lm.state import RWKV7State
from modrwkv.multimodal import ModRWKV
from modrwkv.training import ConfigError, LoRAConfig, apply_lora, config_from_dict, load_config, train
from modrwkv.training.config import Stage
from modrwkv.training.memory import (
    GPU_OVERHEAD_BYTES,
    LiveTensorBytes,
    MemoryPlan,
    estimate_memory,
    layer_activation_bytes,
    lm_parameters,
    lora_parameters,
    plan_from_config,
    plan_from_model,
    state_bytes,
)

REPO = Path(__file__).resolve().parents[1]
# distinct widths, so that a term counted with the wrong width shows
SHAPE = dict(n_layer=2, n_embd=128, vocab_size=1000, dim_w=32, dim_a=48, dim_v=16, dim_g=80, dim_ffn=448)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_parameter_counts_match_the_model():
    config = RWKV7Config(**SHAPE)
    model = RWKV7(config)
    assert lm_parameters(config) == sum(p.numel() for p in model.parameters())
    lora = LoRAConfig(rank=8, targets=["att.receptance", "att.output", "ffn.key", "ffn.value", "head"])
    before = sum(p.numel() for p in model.parameters())
    apply_lora(model, lora)
    assert lora_parameters(config, 8, lora.targets) == sum(p.numel() for p in model.parameters()) - before


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_state_bytes_match_the_state_tensors(dtype):
    config = RWKV7Config(**SHAPE)
    state = RWKV7State.zeros(config, 1, dtype=dtype)
    assert state_bytes(config, dtype) == sum(t.numel() * t.element_size() for t in (state.att_shift, state.wkv,
                                                                                   state.ffn_shift))
    # the spec's official figure: 0.4B (24 x 1024) holds L (2C + 64C) numbers, ~6.5 MB in fp32
    assert state_bytes(RWKV7Config(n_layer=24, n_embd=1024)) == 24 * 66 * 1024 * 4


def saved_bytes(config: RWKV7Config, batch: int, seq_len: int, bf16: bool, trainable: bool) -> int:
    """Bytes of the distinct storages a real block (layer 1) saves for its backward, counted by
    autograd's saved-tensor hooks: its input included, its parameters and v_first (layer 0's) not."""
    torch.manual_seed(0)
    block = Block(config, 1)
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.1)
        p.requires_grad_(trainable)
    x = torch.randn(batch, seq_len, config.n_embd, requires_grad=True)
    v_first = torch.randn(batch, seq_len, config.n_embd, dtype=torch.bfloat16 if bf16 else torch.float32,
                          requires_grad=True)
    state = RWKV7State.zeros(config, batch)
    skip = {p.untyped_storage().data_ptr() for p in block.parameters()} | {v_first.untyped_storage().data_ptr()}
    saved: dict[int, torch.Tensor] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in skip:
            saved.setdefault(ptr, t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        out = block(x, v_first, state.att_shift[0], state.wkv[0], state.ffn_shift[0], None, "chunked")
    assert out[0].requires_grad
    return sum(t.untyped_storage().nbytes() for t in saved.values())


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("trainable", [True, False], ids=["trained", "frozen"])
@pytest.mark.parametrize("batch,seq_len", [(2, 96), (1, 64)])
def test_layer_activations_are_what_the_block_saves(bf16, trainable, batch, seq_len):
    config = RWKV7Config(**SHAPE)
    expected = saved_bytes(config, batch, seq_len, bf16, trainable)
    estimated = layer_activation_bytes(config, batch, seq_len, precision="bf16-mixed" if bf16 else "32",
                                       lm_trainable=trainable)
    assert estimated == expected, (f"the block saves {expected} bytes, the estimate says {estimated}: if the model "
                                   "changed, update training/memory.py's layer_activation_bytes to match")


def test_weights_gradients_and_optimizer_by_stage():
    config = RWKV7Config(**SHAPE)
    params = lm_parameters(config)
    base = dict(lm=config, micro_batch_size=2, ctx_len=64, precision="32")
    stage2 = estimate_memory(MemoryPlan(stage="2", **base)).parts
    assert stage2["weights (LM)"] == 4 * params
    assert stage2["gradients"] == 4 * params
    assert stage2["optimizer states (AdamW)"] == 8 * params  # AdamW: exp_avg + exp_avg_sq, fp32
    stage1 = estimate_memory(MemoryPlan(stage="1", **base)).parts
    assert stage1["gradients"] == stage1["optimizer states (AdamW)"] == 0  # nothing trains without adapters
    lora = estimate_memory(MemoryPlan(stage="lora", lora_rank=4, **base)).parts
    added = lora_parameters(config, 4, MemoryPlan(stage="lora", **base).lora_targets)
    assert lora["weights (LM)"] == 4 * (params + added) and lora["gradients"] == 4 * added
    # ZeRO-2 over 4 ranks in bf16: bf16 weights, gradients / 4, 12 bytes of fp32 master + moments / 4
    zero = estimate_memory(MemoryPlan(stage="2", strategy="deepspeed_stage_2", world_size=4, gpu=True,
                                      **{**base, "precision": "bf16-mixed"}))
    assert zero.parts["weights (LM)"] == 2 * params
    assert zero.parts["gradients"] == 2 * params // 4
    assert zero.parts["optimizer states (AdamW)"] == 12 * params // 4
    assert zero.overhead == GPU_OVERHEAD_BYTES
    # state tuning: the initial WKV state [layers, heads, 64, 64] alone trains
    state = estimate_memory(MemoryPlan(stage="state", **base)).parts
    assert state["gradients"] == 4 * 2 * 2 * 64 * 64

    ddp = estimate_memory(MemoryPlan(stage="2", strategy="ddp", world_size=2, **base)).parts
    assert ddp["gradients"] == 2 * 4 * params  # the gradients and DDP's all-reduce buckets
    fsdp = estimate_memory(MemoryPlan(stage="2", strategy="fsdp", world_size=4, **base)).parts
    assert fsdp["weights (LM)"] == 4 * params // 4 and fsdp["optimizer states (AdamW)"] == 8 * params // 4
    assert fsdp["FSDP gathered weights"] > 4 * 2 * config.vocab_size * config.n_embd  # embedding + head + 2 blocks


def test_every_config_stage_is_estimated():
    """`train` logs an estimate for every run, so every stage the config accepts must have one."""
    for stage in typing.get_args(Stage):
        plan = MemoryPlan(lm=RWKV7Config(**SHAPE), stage=stage, micro_batch_size=1, ctx_len=32)
        assert estimate_memory(plan).peak > 4 * lm_parameters(plan.lm)


def test_logits_buffer_and_checkpointing():
    config = RWKV7Config(**SHAPE)
    plan = MemoryPlan(lm=config, stage="2", micro_batch_size=2, ctx_len=64, precision="32", supervised_fraction=0.5)
    estimate = estimate_memory(plan)
    assert estimate.parts["logits (64 rows at a time)"] == 4 * 64 * config.vocab_size  # 64 supervised, one chunk
    # beyond one chunk the logits stop growing with the supervised tokens
    many = estimate_memory(MemoryPlan(**{**plan.__dict__, "ctx_len": 4 * CHUNK_ROWS, "supervised_fraction": 1.0}))
    assert many.parts[f"logits ({CHUNK_ROWS} rows at a time)"] == 4 * CHUNK_ROWS * config.vocab_size
    checkpointed = estimate_memory(MemoryPlan(**{**plan.__dict__, "gradient_checkpointing": True}))
    layers = [k for k in estimate.parts if k.startswith("activations (2 layers")]
    assert checkpointed.parts["activations (2 layers, checkpointed)"] < estimate.parts[layers[0]] / 5


def fill_context(n: int, ctx_len: int) -> list[Sample]:
    answer = " ".join(["red square left"] * ctx_len)  # longer than ctx_len: truncation shortens it
    image = np.full((16, 16, 3), 128, np.uint8)
    return [Sample([Message("user", "<image>\nDescribe it."), Message("assistant", answer)], images=[image])
            for _ in range(n)]


def test_plan_from_the_papers_config_without_its_files(float32_matmul_precision):
    """configs/vision-stage1.yaml names a checkpoint and an encoder that are not on this machine."""
    plan = plan_from_config(load_config(REPO / "configs" / "vision-stage1.yaml", needs_data=False))
    assert (plan.lm.n_layer, plan.lm.n_embd) == (24, 2048)  # "...-World-1.5B-..." in the file name
    (image,) = plan.encoders
    assert (image.encoder_params, image.trainable, image.tokens_per_sample) == (93_176_064, False, 576)
    assert image.adapter_hidden == 4 * 2048
    assert (plan.world_size, plan.accumulation, plan.zero_stage, plan.wkv) == (8, 2, 1, "fla")
    # fp32 training keeps fp32 products (the chunked form) unless TF32 is allowed, as `select_impl` runs it
    fp32 = load_config(REPO / "configs" / "vision-stage1.yaml", ["--runtime.precision", "32"], needs_data=False)
    float32_matmul_precision("highest")
    assert plan_from_config(fp32).wkv == "chunked"
    float32_matmul_precision("high")
    assert plan_from_config(fp32).wkv == "fla"
    with pytest.raises(ConfigError, match="no known size"):
        plan_from_config(load_config(REPO / "configs" / "vision-stage1.yaml",
                                     ["--model.lm.checkpoint", "missing/model.pth"], needs_data=False))
    with pytest.raises(ConfigError, match="cannot size 'org/unknown-tower'"):
        plan_from_config(load_config(REPO / "configs" / "vision-stage1.yaml",
                                     ["--model.encoders.image.source", "org/unknown-tower"], needs_data=False))


def test_built_in_encoders_token_counts():
    """A vision encoder's patch grid fixes its tokens per image (the adapter's activations follow);
    a series encoder's count grows with the input, so the plan takes up to ctx_len."""
    config = config_from_dict({
        "model": {"lm": {"config": SHAPE},
                  "encoders": {"image": {"name": "tiny", "options": {"image_size": 16, "grid": 4, "width": 32}},
                               "series": {"name": "wavenet", "options": {"layers": 2, "output_dim": 24}}},
                  "ctx_len": 64},
    }, needs_data=False)
    image, series = sorted(plan_from_config(config).encoders, key=lambda e: e.modality)
    assert (image.tokens_per_sample, series.tokens_per_sample) == (16, None)
    model = ModRWKV.build(RWKV7(RWKV7Config(**SHAPE)), {"image": build_encoder("tiny", image_size=16, grid=4, width=32)})
    assert plan_from_model(model, config).encoders[0].tokens_per_sample == 16  # what `train` logs


def test_measured_training_peak_matches_the_estimate(tmp_path, caplog):
    """Two real optimizer steps (stage 2, fp32): the peak of live tensor bytes is the estimate's."""
    config = config_from_dict({
        "model": {"lm": {"config": {"n_layer": 2, "n_embd": 128, "dim_w": 32, "dim_a": 32, "dim_v": 32,
                                    "dim_g": 32}},
                  "encoders": {"image": {"name": "tiny", "options": {"image_size": 16, "grid": 2, "width": 32}}},
                  "ctx_len": 64},
        "data": {"format": "qa", "truncation": "shorten", "shuffle": False},
        "train": {"stage": "2", "max_steps": 2, "batch_size": 2, "micro_batch_size": 2, "warmup_steps": 0},
        "runtime": {"accelerator": "cpu", "devices": 1, "precision": "32"},
        "output": {"dir": str(tmp_path / "run"), "save_every": 0, "progress_bar": False, "tensorboard": False,
                   "media_reliance_every": 0, "log_every": 1},
    }, needs_data=False)
    import lightning.pytorch as pl

    tracker = LiveTensorBytes()
    peaks = []

    class Window(pl.Callback):
        def on_train_start(self, trainer, module):
            tracker.reset_peak()

        def on_train_end(self, trainer, module):
            peaks.append(tracker.peak)

    samples = fill_context(4, 64)
    with tracker, caplog.at_level("INFO", logger="modrwkv.training.recipe"):
        result = train(config, samples=samples, callbacks=[Window()])
    assert "estimated peak memory per device" in caplog.text  # every run logs the estimate
    labels = result.model.processor(truncation="shorten")(samples[0]).labels
    estimate = estimate_memory(plan_from_config(config, supervised_fraction=float((labels[1:] != -100).float().mean())))
    assert result.metrics["steps"] == 2
    print(f"estimate / measured: {estimate.peak / peaks[0]:.3f}")
    assert 0.85 < estimate.peak / peaks[0] < 1.15, (estimate.peak, peaks[0])


def test_cli_estimate_prints_the_table_and_trains_nothing(tmp_path, capsys):
    cfg = yaml.safe_load((REPO / "configs" / "tiny-cpu.yaml").read_text())
    cfg["output"]["dir"] = str(tmp_path / "run")
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path), "--estimate-memory", "--train.micro_batch_size", "4",
                 "--train.batch_size", "4"]) == 0
    out = capsys.readouterr().out
    assert "micro-batch 4 x 64 tokens" in out and "optimizer states (AdamW)" in out
    plan = plan_from_config(config_from_dict(copy.deepcopy({**cfg, "train": {**cfg["train"], "batch_size": 4,
                                                                              "micro_batch_size": 4}}),
                                             needs_data=False))
    assert f"{estimate_memory(plan).peak / 2**30:9.2f} GiB" in out
    assert not (tmp_path / "run").exists()  # no training, no output folder
    # the flags also come after the overrides; a bad fraction is a one-line error
    assert main(["train", str(path), "--train.lr", "1e-3", "--estimate-memory", "--supervised-fraction", "0.5"]) == 0
    assert "with 50% of them supervised" in capsys.readouterr().out
    assert main(["train", str(path), "--estimate-memory", "--supervised-fraction", "0"]) == 2
    assert "supervised_fraction must be in (0, 1]" in capsys.readouterr().err
