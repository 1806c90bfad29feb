"""One token through all the blocks, without autograd: the decoding path of `RWKV7.forward`.

The model's modules (`TimeMix`, `ChannelMix`, `Block` in `..model`) are the readable reference;
this computes the same equations for one position of every row (x: [B, C], fp32), in fewer and
cheaper torch calls. Decoding one token of the 0.1B model on CPU is bound by reading its weights
from memory, and what the step adds on top are its ~50 small ops per layer, whose cost is mostly
fixed per call: measured on a 2-core Intel Xeon (2026-12-01), the same step ran 28.5 ms through the
modules and 26.3 ms here at 2 threads (45.3 -> 42.9 ms at 1 thread), with the products alone taking
21.6 / 37.6 ms. What it saves: no module calls (their Python dispatch), [B, C] rows instead of
[B, 1, C] (no token-shift gathers, no views over a time axis), the WKV update without the
per-token loop's permutes and casts (`recurrent.wkv7_step` itself), the decay computed as a decay
(no log round trip), and no Python-number arithmetic, which converts each number to a tensor
first (~1 us per op). `tests/test_lm_model.py` compares it with the modules.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .linear import linear
from .recurrent import wkv7_step

# w = exp(-e^{-0.5} * sigmoid(w~)) (the model's DECAY_SCALE), as a tensor: a Python number in an
# op is converted to a tensor on every call. A 0-dim CPU tensor mixes with tensors on any device.
NEG_DECAY_SCALE = torch.tensor(-math.exp(-0.5))
ONE = torch.tensor(1.0)


def decode_blocks(
    blocks: Sequence[nn.Module], x: torch.Tensor, att_shift: torch.Tensor, wkv: torch.Tensor,
    ffn_shift: torch.Tensor, wkv_out: torch.Tensor, splits: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Runs x [B, C] (fp32 embeddings; `ln0` first, as `Block` 0 does) through `blocks` from the state
    (att_shift, ffn_shift [L, B, C]; wkv [L, B, H, N, N]); writes the new WKV states into wkv_out
    [L, B, H, N, N] and returns (x after the last block [B, C], new att_shift, new ffn_shift)."""
    att_shifts, ffn_shifts = [], []
    v_first = None
    x = _layer_norm(blocks[0].ln0, x)
    for i, block in enumerate(blocks):
        h = _layer_norm(block.ln1, x)
        att_shifts.append(h)
        dx, v_first = _time_mix(block.att, h, att_shift[i], wkv[i], v_first, wkv_out[i], splits)
        x = x + dx
        h = _layer_norm(block.ln2, x)
        ffn_shifts.append(h)
        x = x + _channel_mix(block.ffn, h, ffn_shift[i], splits)
    return x, torch.stack(att_shifts), torch.stack(ffn_shifts)


def _layer_norm(ln: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)


def _time_mix(
    att: nn.Module, x: torch.Tensor, prev: torch.Tensor, S: torch.Tensor, v_first: torch.Tensor | None,
    S_out: torch.Tensor, splits: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`TimeMix.forward` for one position: x, prev [B, C]; S [B, H, N, N] -> (output, v_first)."""
    B, C = x.shape
    H, N = att.n_head, att.head_size
    mixes = torch.cat([att.x_r, att.x_w, att.x_k, att.x_v, att.x_a, att.x_g])  # [6, 1, C]
    xr, xw, xk, xv, xa, xg = torch.addcmul(x, prev - x, mixes).unbind(0)
    r = linear(att.receptance, xr, splits)
    k = linear(att.key, xk, splits)
    v = linear(att.value, xv, splits)
    # the decay itself (the reference's exp(log_w)); addmm(b, x, W) is b + x @ W in one call
    w = torch.exp(torch.sigmoid(torch.addmm(att.w0[0], torch.tanh(xw @ att.w1), att.w2)).mul_(NEG_DECAY_SCALE))
    a = torch.sigmoid(torch.addmm(att.a0[0], xa @ att.a1, att.a2))
    g = torch.sigmoid(xg @ att.g1) @ att.g2

    kk = F.normalize((k * att.k_k[0]).view(B, H, N), dim=-1, p=2.0, eps=1e-12).view(B, C)
    k = k * torch.addcmul(ONE, a - ONE, att.k_a[0])  # k * (1 + (a - 1) * k_a)
    if att.layer_id == 0:
        v_first = v
    else:
        v = torch.lerp(v, v_first, torch.sigmoid(torch.addmm(att.v0[0], xv @ att.v1, att.v2)))

    rows, columns = (lambda t: t.view(B, H, 1, N)), (lambda t: t.view(B, H, N, 1))  # noqa: E731
    S = wkv7_step(S, rows(w), rows(k), columns(v), columns(-kk), rows(kk * a), S_out)
    y = F.group_norm((S @ columns(r)).view(B, C), H, att.ln_x.weight, att.ln_x.bias, att.ln_x.eps).view(B, H, N)
    y = torch.addcmul(y, (r * k * att.r_k.view(C)).view(B, H, N).sum(dim=-1, keepdim=True), v.view(B, H, N))
    return linear(att.output, y.view(B, C) * g, splits), v_first


def _channel_mix(ffn: nn.Module, x: torch.Tensor, prev: torch.Tensor, splits: int) -> torch.Tensor:
    hidden = linear(ffn.key, torch.addcmul(x, prev - x, ffn.x_k[0]), splits).relu_()
    return linear(ffn.value, hidden.mul_(hidden), splits)
