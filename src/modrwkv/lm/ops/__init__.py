"""WKV kernels: one contract, three implementations, chosen per call.

`wkv7(r, log_w, k, v, a, b, state)` with r, log_w, k, v, a, b of shape [B, T, H, N] and the state
[B, H, N(value), N(key)] in fp32 returns (o [B, T, H, N], new state). log_w is the log of the decay
(negative). a and b are the official kernel's arguments: a = -kk, b = kk * (learning rate).
"""

from __future__ import annotations

from typing import Literal

import torch

from .chunked import wkv7_chunked
from .fla import fla_available, wkv7_fla
from .recurrent import wkv7_recurrent

Impl = Literal["auto", "recurrent", "chunked", "fla"]
IMPLEMENTATIONS = ("auto", "recurrent", "chunked", "fla")

# Below this many tokens the per-token loop beats the chunked form's fixed cost on CPU.
CHUNKED_MIN_TOKENS = 8


def tf32_allowed() -> bool:
    """Whether fp32 matrix products on CUDA may run in TF32, as torch's own are told to:
    `torch.set_float32_matmul_precision("high")`, `torch.backends.cuda.matmul.fp32_precision = "tf32"`,
    `torch.backends.fp32_precision = "tf32"` or the older `torch.backends.cuda.matmul.allow_tf32 = True`
    (which the official `rwkv` package sets when imported). torch >= 2.9 raises when
    `get_float32_matmul_precision()` or `allow_tf32` is read after the other API set it; `fp32_precision`
    answers whichever set it."""
    matmul = torch.backends.cuda.matmul
    precision = getattr(matmul, "fp32_precision", None)
    return precision == "tf32" if precision is not None else bool(matmul.allow_tf32)


def fla_computes_as_asked(dtype: torch.dtype) -> bool:
    """Whether fla's kernels compute inputs of `dtype` as torch's own products would: bf16 and fp16 always,
    fp32 only where TF32 is allowed (`tf32_allowed`; fla's chunk kernel multiplies fp32 in TF32)."""
    return dtype != torch.float32 or tf32_allowed()


def select_impl(device: torch.device, seq_len: int, dtype: torch.dtype = torch.float32) -> str:
    """What `impl="auto"` runs: fla's kernels on CUDA, except for fp32 inputs while torch keeps fp32
    matrix products exact (its default; `tf32_allowed`). fla's chunk
    kernel multiplies fp32 operands in TF32, Triton's default on GPUs that have it: up to ~1e-3 of the
    WKV state's scale (its fp32 results missed the fp32 tolerance on an H200, 2026-12-04, and TF32
    emulated in Triton's interpreter misses it by as much; docs/benchmarks.md, "GPU"). There the
    chunked form computes in fp32 as asked; `torch.set_float32_matmul_precision("high")` lets fla's
    kernels run, as it lets torch's matmuls use TF32. Elsewhere: the per-token loop below
    CHUNKED_MIN_TOKENS tokens, the chunked form from there on."""
    if device.type == "cuda" and fla_computes_as_asked(dtype) and fla_available():
        return "fla"
    return "recurrent" if seq_len < CHUNKED_MIN_TOKENS else "chunked"


def wkv_state_buffer(wkv: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
    """Without autograd, one pre-allocated tensor [L, B, H, N, N] whose slice i layer i's kernel
    fills with its new WKV state (`wkv7(..., out=buffer[i])`), so the returned state needs no
    stacking: that copy is the largest part of the state (at batch 16, 37.7 MB per step for the
    0.1B model, ~10% of a decode step). None with autograd, where each layer returns its own."""
    if torch.is_grad_enabled():
        return None
    return torch.empty(wkv.shape, dtype=torch.promote_types(dtype, torch.float32), device=wkv.device)


def wkv7(
    r: torch.Tensor,
    log_w: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    state: torch.Tensor,
    impl: Impl = "auto",
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`out` (optional, inference only: no autograd) receives the new state, which is returned."""
    if impl == "auto":
        impl = select_impl(r.device, r.shape[1], r.dtype)
    if impl == "recurrent":
        return wkv7_recurrent(r, log_w, k, v, a, b, state, out)
    if impl == "chunked":
        o, new_state = wkv7_chunked(r, log_w, k, v, a, b, state)
    elif impl == "fla":
        if r.device.type != "cuda":
            raise ValueError("the 'fla' WKV implementation runs on CUDA tensors only")
        o, new_state = wkv7_fla(r, log_w, k, v, a, b, state)
    else:
        raise ValueError(f"unknown WKV implementation {impl!r}; choose one of {IMPLEMENTATIONS}")
    return o, new_state if out is None else out.copy_(new_state)


__all__ = ["IMPLEMENTATIONS", "wkv7", "wkv_state_buffer", "wkv7_chunked", "wkv7_recurrent", "wkv7_fla", "fla_available", "select_impl", "tf32_allowed",
           "fla_computes_as_asked"]
