"""The RWKV-7 WKV recurrence, one token at a time: the readable reference and the decoding path.

Per head, with the state S in R^{N x N} laid out [value, key]:
    S_t = S_{t-1} diag(w_t) + (S_{t-1} a_t) b_t^T + v_t k_t^T,      o_t = S_t r_t
where the model passes a = -kk and b = kk * (in-context learning rate), and w_t = exp(log_w_t).
"""

from __future__ import annotations

import torch


def wkv7_recurrent(
    r: torch.Tensor,
    log_w: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    state: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """r, log_w, k, v, a, b: [B, T, H, N]; state: [B, H, N, N] fp32. Returns (o [B,T,H,N], new state)."""
    dtype = r.dtype
    compute = torch.promote_types(dtype, torch.float32)  # fp32, or fp64 when checking numerics
    r, w, k, v, a, b = (t.to(compute) for t in (r, log_w.to(compute).exp(), k, v, a, b))
    S = state.to(compute)
    outputs = []
    for t in range(r.shape[1]):
        sa = S @ a[:, t, :, :, None]  # [B, H, N, 1]
        S = S * w[:, t, :, None, :] + sa * b[:, t, :, None, :] + v[:, t, :, :, None] * k[:, t, :, None, :]
        outputs.append((S @ r[:, t, :, :, None]).squeeze(-1))
    return torch.stack(outputs, dim=1).to(dtype), S
