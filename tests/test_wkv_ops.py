"""The chunked WKV form against the per-token recurrence: outputs, states and gradients."""

import pytest
import torch

from modrwkv.lm.ops import select_impl, wkv7, wkv7_chunked, wkv7_recurrent


def random_inputs(B, T, H, N, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    r, k, v = (torch.randn(B, T, H, N, generator=g, dtype=dtype) for _ in range(3))
    log_w = -0.606531 * torch.sigmoid(3 * torch.randn(B, T, H, N, generator=g, dtype=dtype))
    kk = torch.nn.functional.normalize(torch.randn(B, T, H, N, generator=g, dtype=dtype), dim=-1)
    rate = torch.sigmoid(torch.randn(B, T, H, N, generator=g, dtype=dtype))
    state = torch.randn(B, H, N, N, generator=g, dtype=dtype)
    return r, log_w, k, v, -kk, kk * rate, state


def naive(r, log_w, k, v, a, b, state):
    """The spec's equation written with explicit matrices, one head at a time."""
    B, T, H, N = r.shape
    S = state.clone()
    out = torch.zeros_like(r)
    for t in range(T):
        for bi in range(B):
            for h in range(H):
                transition = torch.diag(log_w[bi, t, h].exp()) + torch.outer(a[bi, t, h], b[bi, t, h])
                S[bi, h] = S[bi, h] @ transition + torch.outer(v[bi, t, h], k[bi, t, h])
                out[bi, t, h] = S[bi, h] @ r[bi, t, h]
    return out, S


def test_recurrent_matches_naive_equation():
    inputs = random_inputs(2, 5, 2, 8)
    o1, s1 = wkv7_recurrent(*inputs)
    o2, s2 = naive(*inputs)
    torch.testing.assert_close(o1, o2)
    torch.testing.assert_close(s1, s2)


@pytest.mark.parametrize("T", [1, 7, 31, 32, 33, 100])
@pytest.mark.parametrize("chunk", [16, 32, 64])
def test_chunked_equals_recurrent_fp64(T, chunk):
    inputs = random_inputs(2, T, 3, 64)
    o1, s1 = wkv7_recurrent(*inputs)
    o2, s2 = wkv7_chunked(*inputs, chunk_size=chunk)
    torch.testing.assert_close(o2, o1, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(s2, s1, rtol=1e-10, atol=1e-10)


def test_chunked_equals_recurrent_fp32():
    inputs = random_inputs(1, 200, 2, 64)
    o_ref, s_ref = wkv7_recurrent(*inputs)
    o, s = wkv7_chunked(*(x.float() for x in inputs))
    scale = o_ref.abs().max()
    assert (o.double() - o_ref).abs().max() <= 1e-5 * scale
    assert (s.double() - s_ref).abs().max() <= 1e-5 * s_ref.abs().max()


def test_chunked_gradients_equal_recurrent():
    inputs = random_inputs(2, 45, 2, 16)
    grads = []
    for fn in (wkv7_recurrent, wkv7_chunked):
        leaves = [x.clone().requires_grad_(True) for x in inputs]
        o, s = fn(*leaves)
        weights = torch.linspace(-1, 1, o.numel(), dtype=o.dtype).view_as(o)
        ((o * weights).sum() + (s**2).sum() * 1e-2).backward()
        grads.append([x.grad for x in leaves])
    for name, g_rec, g_chunk in zip(("r", "log_w", "k", "v", "a", "b", "state"), *grads):
        torch.testing.assert_close(g_chunk, g_rec, rtol=1e-8, atol=1e-8, msg=f"gradient of {name}")


def test_chunked_handles_bf16_inputs_with_fp32_state():
    inputs = random_inputs(1, 40, 2, 64, dtype=torch.float32)
    o, s = wkv7_chunked(*(x.bfloat16() for x in inputs[:6]), inputs[6])
    assert o.dtype == torch.bfloat16 and s.dtype == torch.float32
    o_ref, _ = wkv7_recurrent(*inputs)
    assert (o.float() - o_ref).abs().max() <= 0.05 * o_ref.abs().max()


def test_dispatch():
    assert select_impl(torch.device("cpu"), 1) == "recurrent"
    assert select_impl(torch.device("cpu"), 1024) == "chunked"


def test_dispatch_on_cuda_keeps_fp32_exact_unless_tf32_is_allowed(monkeypatch, float32_matmul_precision):
    """fla's chunk kernel computes fp32 products in TF32; torch's fp32 matmuls stay fp32 by default. So
    on CUDA fp32 takes the chunked form until `set_float32_matmul_precision` allows TF32, as for torch."""
    import modrwkv.lm.ops as ops

    monkeypatch.setattr(ops, "fla_available", lambda: True)  # this machine has no GPU: the decision alone
    cuda = torch.device("cuda")
    float32_matmul_precision("highest")  # torch's default
    assert [select_impl(cuda, 64, dtype) for dtype in (torch.bfloat16, torch.float16)] == ["fla", "fla"]
    assert (select_impl(cuda, 64, torch.float32), select_impl(cuda, 1, torch.float32)) == ("chunked", "recurrent")
    assert select_impl(torch.device("cpu"), 64, torch.bfloat16) == "chunked"
    float32_matmul_precision("high")
    assert select_impl(cuda, 64, torch.float32) == "fla"
    # the older switch, as the official `rwkv` package uses it: mixing the two APIs makes torch raise on
    # `get_float32_matmul_precision()`, not on the reading `select_impl` makes
    torch.backends.cuda.matmul.allow_tf32 = False
    assert select_impl(cuda, 64, torch.float32) == "chunked"
    torch.backends.cuda.matmul.allow_tf32 = True
    assert select_impl(cuda, 64, torch.float32) == "fla"
    inputs = random_inputs(1, 3, 1, 64, dtype=torch.float32)
    with pytest.raises(ValueError, match="CUDA"):
        wkv7(*inputs, impl="fla")
    with pytest.raises(ValueError, match="unknown WKV implementation"):
        wkv7(*inputs, impl="nope")
