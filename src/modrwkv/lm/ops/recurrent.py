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
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """r, log_w, k, v, a, b: [B, T, H, N]; state: [B, H, N, N] fp32. Returns (o [B,T,H,N], new state).

    `out` (optional, no autograd) receives the new state, which saves a copy when the caller
    gathers the states of all layers in one tensor."""
    dtype = r.dtype
    compute = torch.promote_types(dtype, torch.float32)  # fp32, or fp64 when checking numerics
    if dtype != compute:
        r, k, v, a, b = (t.to(compute) for t in (r, k, v, a, b))
    log_w = log_w.to(compute)  # fp32 from the model, whatever its dtype
    S = state.to(compute)
    # [B, T, H, N] -> [B, H, N, T] columns (read along the key axis by S @ x) and [B, H, T, N] rows
    # (broadcast over the value axis); for T = 1 (decoding) these are free views, no slicing
    r, a, v = (t.permute(0, 2, 3, 1) for t in (r, a, v))
    w, k, b = log_w.transpose(1, 2).exp(), k.transpose(1, 2), b.transpose(1, 2)
    outputs = []
    T = r.shape[-1]
    for t in range(T):
        s = slice(t, t + 1)
        S = wkv7_step(S, w[:, :, s], k[:, :, s], v[..., s], a[..., s], b[:, :, s], out if t == T - 1 else None)
        outputs.append(S @ r[..., s])
    o = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)  # [B, H, N, T]
    return o.permute(0, 3, 1, 2).to(dtype), S


def wkv7_step(
    S: torch.Tensor,
    w: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """One token's state update. S: [B, H, N, N]; w (the decay itself, not its log), k, b: rows
    [B, H, 1, N]; v, a: columns [B, H, N, 1]. Returns the new state, in `out` if given (S itself is
    not modified). Three passes over the state, at most one allocating: S w, then both rank-1
    updates in place (five allocating element-wise ops otherwise)."""
    sa = S @ a
    S = S * w if out is None else torch.mul(S, w, out=out)
    return S.addcmul_(sa, b).addcmul_(v, k)
