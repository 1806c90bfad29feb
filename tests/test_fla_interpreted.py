"""flash-linear-attention's RWKV-7 kernels on CPU, through Triton's interpreter, against our chunked form.

Why these exist: CI has no GPU, and tests/test_gpu.py (the same comparisons on CUDA) runs only where
one is lent. These run fla's real `chunk_rwkv7` and `fused_recurrent_rwkv7` kernel code, interpreted
(tests/triton_interpreter.py holds the patches the interpreter needs), through our adapter
`wkv7_fla`, so argument order, signs, the state's layout, dtypes, the backward and the kernel
selection are checked on every CI run. Tiny shapes: the interpreter runs each program instance in
NumPy. Selected with `pytest -m fla_interpreted`. Skipped where CUDA exists: the interpreter would
replace fla's compiled kernels for the whole process, and tests/test_gpu.py checks those for real.
"""

from __future__ import annotations

import functools
import importlib.util

import pytest
import torch

from modrwkv.lm.ops import fla as fla_ops
from modrwkv.lm.ops import wkv7_chunked, wkv7_fla

from test_wkv_ops import random_inputs

pytestmark = [
    pytest.mark.fla_interpreted,
    pytest.mark.xdist_group("test_fla_interpreted"),  # one xdist worker: the interpreter enabled once (~1 s)
    pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present: tests/test_gpu.py runs fla's compiled kernels"),
    pytest.mark.skipif(
        importlib.util.find_spec("fla") is None or importlib.util.find_spec("triton") is None,
        reason="flash-linear-attention / triton not installed (pip install -e .[test])",
    ),
]

NAMES = ("r", "log_w", "k", "v", "a", "b", "state")


@pytest.fixture(scope="module")
def used_kernels():
    """Enables the interpreter once; yields the names of the fla kernels `wkv7_fla` called since."""
    import triton_interpreter

    rwkv7 = triton_interpreter.enable()
    calls: list[str] = []

    def spy(kernel):
        @functools.wraps(kernel)  # keeps the signature: the adapter reads the kernel's keywords
        def call(**kwargs):
            calls.append(kernel.__name__)
            return kernel(**kwargs)

        return call

    fla_ops._kernels.cache_clear()
    original = fla_ops._kernels
    fla_ops._kernels = lambda: (spy(rwkv7.chunk_rwkv7), spy(rwkv7.fused_recurrent_rwkv7))
    yield calls
    fla_ops._kernels = original


def inputs(T: int, seed: int = 0, grad: bool = False) -> list[torch.Tensor]:
    tensors = [x.float().requires_grad_(grad) for x in random_inputs(2, T, 2, 64, seed=seed)]
    tensors[-1] = (0.2 * tensors[-1]).detach().requires_grad_(grad)  # a state of a plausible size
    return tensors


def assert_close_scaled(actual: torch.Tensor, expected: torch.Tensor, rel: float, what: str) -> None:
    """Max error relative to the expected tensor's largest entry (fp32 vs fp32, different order of sums)."""
    error = (actual.float() - expected.float()).abs().max().item()
    assert error <= rel * expected.abs().max().item(), f"{what}: max error {error:.3g}, scale {expected.abs().max().item():.3g}"


@pytest.mark.parametrize("length", [1, 17, 64])
def test_fla_forward_and_final_state_match_the_chunked_form(used_kernels, length):
    """One token: `fused_recurrent_rwkv7`; prompts: `chunk_rwkv7` (one chunk, a partial one, several)."""
    used_kernels.clear()
    x = inputs(length, seed=length)
    with torch.no_grad():
        o, state = wkv7_fla(*x)
        o_ref, state_ref = wkv7_chunked(*x)
    assert used_kernels == ["fused_recurrent_rwkv7" if length == 1 else "chunk_rwkv7"]
    assert o.shape == o_ref.shape and state.shape == state_ref.shape and state.dtype == torch.float32
    assert_close_scaled(o, o_ref, 1e-5, "output")
    assert_close_scaled(state, state_ref, 1e-5, "final state")


def backward(fn, x: list[torch.Tensor]) -> list[torch.Tensor]:
    """Gradients of every input, with incoming gradients on both the output and the final state."""
    o, state = fn(*x)
    g = torch.Generator().manual_seed(7)
    loss = (o * torch.randn(o.shape, generator=g)).sum() + (state * torch.randn(state.shape, generator=g)).sum()
    return list(torch.autograd.grad(loss, x))


@pytest.mark.parametrize("length", [1, 20])
def test_fla_gradients_match_the_chunked_form(used_kernels, length):
    """With gradients on, every length takes `chunk_rwkv7`, one token included (a one-token micro-batch).
    20 tokens: a whole chunk (fla's 16) and a partial one, so the state's gradient crosses a chunk boundary;
    each further chunk costs the interpreter ~6 s of the backward (40 tokens, three chunks: 17 s against 11 s)."""
    used_kernels.clear()
    x = inputs(length, seed=100 + length, grad=True)
    grads = backward(wkv7_fla, x)
    assert used_kernels == ["chunk_rwkv7"]
    for name, grad, expected in zip(NAMES, grads, backward(wkv7_chunked, x), strict=True):
        assert_close_scaled(grad, expected, 1e-5, f"gradient of {name}")


def test_fla_gradient_of_a_learned_initial_state_matches_the_chunked_form(used_kernels):
    """State tuning: one learned state [H, N, N] shared by every row is the only input with a
    gradient (layer 0 of a frozen LM), here for a one-token micro-batch: fla's chunk kernel must be
    chosen and its gradient of the initial state match ours (longer inputs: the test above)."""
    used_kernels.clear()
    *x, state = inputs(1, seed=201)
    learned = state[0].detach().requires_grad_(True)

    def state_grad(fn) -> torch.Tensor:
        o, final = fn(*x, learned.unsqueeze(0).expand(state.shape))
        g = torch.Generator().manual_seed(9)
        loss = (o * torch.randn(o.shape, generator=g)).sum() + (final * torch.randn(final.shape, generator=g)).sum()
        return torch.autograd.grad(loss, learned)[0]

    grad = state_grad(wkv7_fla)
    assert used_kernels == ["chunk_rwkv7"]
    assert_close_scaled(grad, state_grad(wkv7_chunked), 1e-5, "gradient of the learned initial state")


def test_fla_fused_recurrent_has_no_backward(used_kernels):
    """Why the selection above matters: fla's one-token kernel cannot be differentiated."""
    import fla.ops.rwkv7

    r, log_w, k, v, a, b, state = inputs(1, grad=True)
    o, _ = fla.ops.rwkv7.fused_recurrent_rwkv7(r=r, w=log_w, k=k, v=v, a=a, b=b, scale=1.0, initial_state=state)
    with pytest.raises(NotImplementedError):
        o.sum().backward()


def test_fla_takes_the_models_bf16_inputs(used_kernels):
    """As a bf16 model calls it: bf16 r, k, v, a, b; fp32 log-decay and state. Output bf16, state fp32."""
    r, log_w, k, v, a, b, state = inputs(33, seed=5)
    half = [t.bfloat16() for t in (r, k, v, a, b)]
    with torch.no_grad():
        o, new_state = wkv7_fla(half[0], log_w, *half[1:], state)
        o_ref, state_ref = wkv7_chunked(half[0].float(), log_w, *(t.float() for t in half[1:]), state)
    assert o.dtype == torch.bfloat16 and new_state.dtype == torch.float32
    # fla rounds its intermediates (decay-scaled q, k, a, b, the WY factors) to bf16: ~1% of the scale
    assert_close_scaled(o, o_ref, 2e-2, "bf16 output")
    assert_close_scaled(new_state, state_ref, 2e-2, "final state")


def test_fla_chunk_kernel_under_tf32_stays_inside_the_gpu_tests_fp32_tolerance(used_kernels):
    """Why tests/test_gpu.py compares fla's fp32 results to 3e-3 of scale rather than fp32's 1e-5: on a
    GPU with TF32 fla's chunk kernel multiplies fp32 in TF32 (it missed an fp32 tolerance on an H200,
    2026-12-04). With TF32 emulated the error is far above fp32's and inside 3e-3 of scale."""
    import triton_interpreter

    x = inputs(40, seed=11)
    with torch.no_grad():
        o_ref, state_ref = wkv7_chunked(*x)
        with triton_interpreter.tf32_dots():
            o, state = wkv7_fla(*x)
    for actual, expected, what in ((o, o_ref, "output"), (state, state_ref, "final state")):
        error = (actual - expected).abs().max().item() / expected.abs().max().item()
        assert 1e-5 < error <= 3e-3, f"{what}: TF32 error {error:.3g} of scale"



def test_first_use_of_each_fla_kernel_is_announced_once(used_kernels, caplog):
    """Triton compiles and autotunes fla's kernels on first use (minutes on a fresh GPU machine, which
    looks like a hang): said once per kernel, dtype and direction, naming where Triton caches it."""
    fla_ops._announce_first_use.cache_clear()
    x = inputs(2, seed=3)  # two tokens: the chunk kernel, at the interpreter's least cost
    with caplog.at_level("WARNING", logger="modrwkv.lm.ops.fla"), torch.no_grad():
        wkv7_fla(*x)
        wkv7_fla(*x)
        wkv7_fla(*(t.bfloat16() if i in (0, 2, 3, 4, 5) else t for i, t in enumerate(x)))
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert "first chunk_rwkv7 call with float32 inputs" in messages[0] and "TRITON_CACHE_DIR" in messages[0]
    assert "with bfloat16 inputs" in messages[1]


def test_narrowed_autotuning_tunes_each_kernel_among_a_spread_of_its_configurations(used_kernels):
    """`triton_autotune.keep_configs(n)` (tests/test_gpu.py: 1, the benchmarks: 4): every fla kernel
    that autotunes times at most n configurations, n where it has that many, and results stay exact."""
    import gc

    from triton.runtime.autotuner import Autotuner

    from triton_autotune import keep_configs

    tuners = [t for t in gc.get_objects() if issubclass(type(t), Autotuner) and t.base_fn.__module__.startswith("fla.")]
    for tuner in tuners:  # tuned by earlier tests: tune again
        tuner.cache.clear()
        tuner.configs_timings = None
    x = inputs(20, seed=5, grad=True)
    restore = keep_configs(2)
    try:
        grads = backward(wkv7_fla, x)
    finally:
        restore()
    timed = {t.base_fn.__name__: len(t.configs_timings) for t in tuners if t.configs_timings}
    assert len(timed) >= 5 and max(timed.values()) == 2, timed
    for name, grad, expected in zip(NAMES, grads, backward(wkv7_chunked, x), strict=True):
        assert_close_scaled(grad, expected, 1e-5, f"gradient of {name}")


def test_spread_keeps_the_least_and_the_most_shared_memory_and_evenly_between():
    from types import SimpleNamespace

    from triton_autotune import spread

    configs = [SimpleNamespace(num_stages=s, kwargs={"BK": b}, num_warps=w) for s in (3, 1, 2) for b in (64, 32) for w in (4,)]
    kept = spread(configs, 3)
    assert [(c.num_stages, c.kwargs["BK"]) for c in kept] == [(1, 32), (2, 32), (3, 64)]  # sorted: 1/32 1/64 2/32 2/64 3/32 3/64
    assert spread(configs, 1)[0].num_stages == 1 and len(spread(configs, 9)) == 6
