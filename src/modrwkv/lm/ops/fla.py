"""flash-linear-attention's Triton RWKV-7 kernels (CUDA only), behind modrwkv's WKV contract.

fla is imported lazily: it cannot even be imported without a GPU. fla keeps the state as
[B, H, K, V] (key-major), the transpose of ours, and its keyword for the log-decay changed across
releases (`w` in most, `log_w` where `w` means the raw decay logit), so the call is adapted here.
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any, Callable

import torch

logger = logging.getLogger(__name__)


@functools.cache
def _kernels() -> tuple[Callable[..., Any], Callable[..., Any]]:
    from fla.ops.rwkv7 import chunk_rwkv7, fused_recurrent_rwkv7

    return chunk_rwkv7, fused_recurrent_rwkv7


def fla_available() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        _kernels()
    except Exception:  # any import-time failure (no triton, driver mismatch) means "not usable"
        return False
    return True


@functools.cache
def _announce_first_use(kernel: str, dtype: torch.dtype, backward: bool) -> None:
    """Said once per kernel, dtype and direction: Triton compiles and autotunes fla's kernels the first
    time it meets them: hundreds of configurations for the chunk path (fla 0.6.0's output kernels alone
    try 135 each, forward and backward, on a GPU with Hopper's shared memory). On a fresh machine that
    takes minutes and looks like a hang (the first backward ran past 100 s on an H200, 2026-12-04).
    Triton keeps what it compiled, and fla the winning configurations, in TRITON_CACHE_DIR
    (~/.triton/cache), so later runs on the machine start at once."""
    logger.warning("fla: first %s%s call with %s inputs: Triton compiles and autotunes it now (minutes on a fresh "
                   "machine; cached in TRITON_CACHE_DIR afterwards; the 'chunked' WKV implementation, "
                   "runtime.wkv_impl in training, needs no compiling)", kernel, " (with backward)" if backward else "",
                   str(dtype).removeprefix("torch."))


def _decay_keyword(kernel: Callable[..., Any]) -> str:
    return "log_w" if "log_w" in inspect.signature(kernel).parameters else "w"


def wkv7_fla(
    r: torch.Tensor,
    log_w: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    state: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as `wkv7_recurrent`: [B, T, H, N] inputs, state [B, H, N(value), N(key)] fp32."""
    chunk, recurrent = _kernels()
    # fla's fused-recurrent kernel is inference-only (its backward raises NotImplementedError), so a
    # one-token step that autograd will differentiate (e.g. a one-token micro-batch) takes the chunk one.
    needs_grad = torch.is_grad_enabled() and any(x.requires_grad for x in (r, log_w, k, v, a, b, state))
    kernel = recurrent if r.shape[1] == 1 and not needs_grad else chunk
    _announce_first_use(kernel.__name__, r.dtype, needs_grad)
    o, final = kernel(
        r=r,
        k=k,
        v=v,
        a=a,
        b=b,
        scale=1.0,
        initial_state=state.transpose(-1, -2).contiguous(),
        output_final_state=True,
        **{_decay_keyword(kernel): log_w},
    )
    return o, final.transpose(-1, -2).float()
