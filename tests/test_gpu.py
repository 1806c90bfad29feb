"""CUDA paths, skipped on machines without a GPU (CI has none): flash-linear-attention's RWKV-7
kernels against the pure-PyTorch chunked form, the LM in bf16, and one-GPU training with
bf16-mixed, FSDP and DeepSpeed against the plain single-device strategy.

On a GPU machine: `pip install -e .[gpu,test]`, then `pytest -v tests/test_gpu.py`. The tests that
compile fla's backward come last: on a fresh machine that compilation is the slow part.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from modrwkv.lm import RWKV7, RWKV7Config, load_model
from modrwkv.lm.ops import select_impl
from modrwkv.lm.random_weights import random_official_state_dict
from modrwkv.training import train

from test_training import colour_samples, config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
needs_fla = pytest.mark.skipif(importlib.util.find_spec("fla") is None, reason="flash-linear-attention is not installed")
needs_deepspeed = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="DeepSpeed is not installed")


@pytest.fixture(scope="module", autouse=True)
def one_configuration_per_kernel():
    """fla autotunes its Triton kernels the first time it meets them: hundreds of configurations for
    the chunk path, each compiled (the first backward ran past 100 s on an H200). These tests check
    results, not speed, so each kernel runs one configuration, the one needing the least shared memory
    (`triton_autotune.keep_configs(1)`; bench/bench_gpu.py says how many it keeps). The same choice
    passes tests/test_fla_interpreted.py through Triton's interpreter (2026-12-04: 14 kernels, each a
    valid configuration of its own autotuning list)."""
    if importlib.util.find_spec("triton") is None:
        yield
        return
    from triton_autotune import keep_configs

    restore = keep_configs(1)
    yield
    restore()


@pytest.fixture(scope="module")
def lm_path(tmp_path_factory) -> Path:
    """Random weights in the official layout (every weight non-zero, so every path mixes)."""
    path = tmp_path_factory.mktemp("gpu") / "lm.pth"
    cfg = RWKV7Config(n_layer=2, n_embd=128, vocab_size=65536, dim_w=32, dim_a=32, dim_v=32, dim_g=32)
    torch.save(random_official_state_dict(cfg, seed=3), path)
    return path


def run_lm(model: RWKV7, impl: str, ids: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.wkv_impl = impl
    with torch.no_grad():
        out = model(ids, logits="all")
    return out.logits.float(), [s.float() for s in out.state.wkv]


def assert_close_scaled(actual: torch.Tensor, expected: torch.Tensor, rel: float, what: str) -> None:
    error, scale = (actual - expected).abs().max().item(), expected.abs().max().item()
    assert error <= rel * scale, f"{what}: max error {error:.3g} against a scale of {scale:.3g}"


@needs_fla
@pytest.mark.parametrize("length", [1, 17, 64, 333])
def test_fla_kernels_match_the_chunked_form_in_fp32(lm_path, length):
    """`chunk_rwkv7` for prompts, `fused_recurrent_rwkv7` for one token: same logits and state.

    fla's chunk kernel multiplies fp32 in TF32 (Triton's default where the GPU has it): on an H200
    (2026-12-04) it missed an fp32 tolerance (rtol 1e-3, atol 2e-3) at 17, 64 and 333 tokens. TF32
    emulated in Triton's interpreter on this test's model (operands truncated to 10 mantissa bits)
    gives state errors of 7e-4 to 1e-3 of the state's scale and logit errors of 4e-4 of theirs:
    hence 3e-3 of scale. A wrong sign, layout or argument order errs by the scale itself."""
    model = load_model(lm_path, device="cuda")
    ids = torch.randint(0, 65536, (2, length), generator=torch.Generator().manual_seed(length)).cuda()
    logits, states = run_lm(model, "chunked", ids)
    fla_logits, fla_states = run_lm(model, "fla", ids)
    assert_close_scaled(fla_logits, logits, 3e-3, "logits")
    for layer, (fla_state, state) in enumerate(zip(fla_states, states, strict=True)):
        assert_close_scaled(fla_state, state, 3e-3, f"layer {layer}'s WKV state")


@needs_fla
def test_auto_runs_fla_for_bf16_and_keeps_fp32_exact(float32_matmul_precision):
    """fp32 stays fp32 (the chunked form) until TF32 is allowed, as torch's own matmuls do."""
    cuda = torch.device("cuda")
    float32_matmul_precision("highest")
    assert (select_impl(cuda, 64, torch.bfloat16), select_impl(cuda, 64, torch.float32)) == ("fla", "chunked")
    float32_matmul_precision("high")
    assert select_impl(cuda, 64, torch.float32) == "fla"


def test_bf16_logits_stay_close_to_fp32(lm_path):
    ids = torch.randint(0, 65536, (2, 128), generator=torch.Generator().manual_seed(1)).cuda()
    reference, _ = run_lm(load_model(lm_path, device="cuda"), "auto", ids)
    half, _ = run_lm(load_model(lm_path, device="cuda", dtype=torch.bfloat16), "auto", ids)
    assert torch.isfinite(half).all()
    agreement = (half.argmax(-1) == reference.argmax(-1)).float().mean().item()
    assert agreement > 0.9, agreement


def gpu_run(tmp_path: Path, name: str, strategy: str, precision: str = "32") -> list[float]:
    cfg = config(tmp_path, name, max_steps=4, batch_size=8, micro_batch_size=8)
    cfg["runtime"].update(accelerator="gpu", devices=1, strategy=strategy, precision=precision)
    result = train(cfg, samples=colour_samples(32))
    assert result.final_dir is not None and (result.final_dir / "model.safetensors").exists()
    return [row["loss"] for row in result.history]


@pytest.mark.parametrize("strategy", [
    "fsdp",
    pytest.param("deepspeed_stage_1", marks=needs_deepspeed),
    pytest.param("deepspeed_stage_2", marks=needs_deepspeed),
    pytest.param("deepspeed_stage_3", marks=needs_deepspeed),
])
def test_sharded_strategies_train_like_one_device(tmp_path, strategy):
    """On one GPU a sharded strategy holds everything itself: the same losses as plain training."""
    assert gpu_run(tmp_path, strategy, strategy) == pytest.approx(gpu_run(tmp_path, "plain", "auto"), rel=1e-3)


def test_one_gpu_training_bf16_mixed(tmp_path):
    """fp32 training runs the chunked form, bf16-mixed fla's kernels (compiling their bf16 backward)."""
    fp32 = gpu_run(tmp_path, "fp32", "auto")
    bf16 = gpu_run(tmp_path, "bf16", "auto", "bf16-mixed")
    assert bf16 == pytest.approx(fp32, rel=5e-2)


@needs_fla
def test_fla_gradients_match_the_chunked_form(lm_path):
    """fp32, so TF32 inside fla: emulated in Triton's interpreter on this model (40 tokens), the
    gradients' largest error is 1.8e-3 of their scale and every entry passes the tolerance below."""
    model = load_model(lm_path, device="cuda")
    model.use_weight_layout("training")
    ids = torch.randint(0, 65536, (2, 96), generator=torch.Generator().manual_seed(0)).cuda()
    grads = {}
    for impl in ("chunked", "fla"):
        model.zero_grad(set_to_none=True)
        model.wkv_impl = impl
        model.requires_grad_(True)
        model(ids, logits="all").logits.float().logsumexp(-1).mean().backward()
        grads[impl] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert grads["fla"].keys() == grads["chunked"].keys()
    for name, grad in grads["chunked"].items():
        torch.testing.assert_close(grads["fla"][name], grad, rtol=2e-2, atol=1e-4, msg=name)
