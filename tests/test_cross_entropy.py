"""The chunked linear + cross-entropy (lm/ops/cross_entropy.py) against the plain head + F.cross_entropy."""

from __future__ import annotations

import pytest
import torch

from conftest import make_model
from modrwkv.lm.ops import cross_entropy
from modrwkv.lm.ops.cross_entropy import linear_cross_entropy, linear_cross_entropy_reference
from modrwkv.multimodal import ModRWKV
from modrwkv.processing import IGNORE_INDEX
from modrwkv.training import LoRAConfig, apply_lora
from modrwkv.training.memory import LiveTensorBytes

pytestmark = pytest.mark.usefixtures("one_torch_thread")

VOCAB, WIDTH = 97, 24


def inputs(n: int, seed: int = 0, head_grad: bool = True):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, WIDTH, generator=g, requires_grad=True)
    weight = (torch.randn(VOCAB, WIDTH, generator=g) * 0.5).requires_grad_(head_grad)
    targets = torch.randint(0, VOCAB, (n,), generator=g)
    return hidden, weight, targets


def loss_and_grads(fn, hidden, weight, targets, scale=1.0, **kwargs):
    h, w = hidden.detach().clone().requires_grad_(), weight.detach().clone().requires_grad_(weight.requires_grad)
    loss = fn(h, w, targets, **kwargs)
    (loss * scale).backward()
    return loss.detach(), h.grad, w.grad


@pytest.mark.parametrize("n,chunk", [(50, 16), (50, 50), (50, 7), (1, 4), (1, 1), (33, 1000)])
def test_fp32_matches_the_reference(n, chunk):
    hidden, weight, targets = inputs(n)
    ref = loss_and_grads(linear_cross_entropy_reference, hidden, weight, targets)
    got = loss_and_grads(linear_cross_entropy, hidden, weight, targets, chunk_rows=chunk)
    assert got[0].dtype == torch.float32
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scale", [0.5, 3.0])
def test_gradients_scale_with_the_incoming_gradient(scale):
    hidden, weight, targets = inputs(40, seed=1)
    ref = loss_and_grads(linear_cross_entropy_reference, hidden, weight, targets, scale=scale)
    got = loss_and_grads(linear_cross_entropy, hidden, weight, targets, scale=scale, chunk_rows=16)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_gradients_accumulate_over_two_losses():
    hidden, weight, targets = inputs(30, seed=2)
    grads = []
    for fn in (linear_cross_entropy_reference, lambda h, w, t: linear_cross_entropy(h, w, t, chunk_rows=8)):
        h, w = hidden.detach().clone().requires_grad_(), weight.detach().clone().requires_grad_()
        (fn(h[:20], w, targets[:20]) * 0.5 + fn(h[10:], w, targets[10:]) * 0.5).backward()
        grads.append((h.grad, w.grad))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_frozen_head_builds_no_weight_gradient():
    hidden, weight, targets = inputs(25, seed=3, head_grad=False)
    ref = loss_and_grads(linear_cross_entropy_reference, hidden, weight, targets)
    got = loss_and_grads(linear_cross_entropy, hidden, weight, targets, chunk_rows=10)
    assert got[2] is None and ref[2] is None
    torch.testing.assert_close(got[0], ref[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got[1], ref[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("head_grad", [True, False])
def test_bf16_autocast_matches_the_reference(head_grad):
    """Under autocast the products run in bf16 and the loss in fp32, as in the plain form: same
    loss and gradient dtypes (the inputs' fp32), values within bf16 rounding."""
    hidden, weight, targets = inputs(45, seed=4, head_grad=head_grad)
    results = []
    for fn, kwargs in ((linear_cross_entropy_reference, {}), (linear_cross_entropy, {"chunk_rows": 16})):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h, w = hidden.detach().clone().requires_grad_(), weight.detach().clone().requires_grad_(head_grad)
            loss = fn(h, w, targets, **kwargs)
        (loss * 0.5).backward()
        results.append((loss.detach(), h.grad, w.grad))
    (ref_loss, ref_h, ref_w), (loss, h_grad, w_grad) = results
    assert loss.dtype == torch.float32 and h_grad.dtype == torch.float32
    torch.testing.assert_close(loss, ref_loss, rtol=1e-3, atol=1e-3)  # same bf16 logits, fp32 sums
    torch.testing.assert_close(h_grad, ref_h, rtol=2e-2, atol=2e-3)
    if head_grad:
        assert w_grad.dtype == torch.float32
        torch.testing.assert_close(w_grad, ref_w, rtol=2e-2, atol=2e-3)
    else:
        assert w_grad is None
    # and bf16 is a real difference from fp32 (the tolerance above is not vacuous)
    fp32 = loss_and_grads(linear_cross_entropy_reference, hidden, weight, targets, scale=0.5)
    assert not torch.equal(h_grad, fp32[1])


def test_without_gradients_only_the_loss_is_computed(monkeypatch):
    hidden, weight, targets = inputs(20, seed=5)
    calls = []
    real = cross_entropy._loss_and_gradients
    monkeypatch.setattr(cross_entropy, "_loss_and_gradients", lambda *a, **k: calls.append(k) or real(*a, **k))
    with torch.no_grad():
        loss = linear_cross_entropy(hidden, weight, targets, chunk_rows=8)
    assert calls == [{"hidden_grad": False, "weight_grad": False}]
    assert not loss.requires_grad
    torch.testing.assert_close(loss, linear_cross_entropy_reference(hidden, weight, targets).detach())


@pytest.mark.parametrize("grad", [True, False])
def test_one_chunk_of_logits_alive_at_a_time(grad):
    """Peak live bytes of the loss over three chunks: one chunk's fp32 logits, plus the inputs, the
    gradients it returns (the head's, the head input's) and per-row vectors, never two chunks' logits."""
    rows, vocab, width, chunk = 192, 4096, 8, 64
    g = torch.Generator().manual_seed(8)
    hidden = torch.randn(rows, width, generator=g, requires_grad=grad)
    weight = torch.randn(vocab, width, generator=g, requires_grad=grad)
    targets = torch.randint(0, vocab, (rows,), generator=g)
    with LiveTensorBytes() as tracker:
        linear_cross_entropy(hidden, weight, targets, chunk_rows=chunk)
    logits = 4 * chunk * vocab
    inputs = 4 * (vocab + rows) * width  # the tracker counts the inputs' storages once an op reads a view of them
    gradients = inputs if grad else 0
    assert logits < tracker.peak < 1.05 * logits + inputs + gradients, (tracker.peak, logits, inputs, gradients)


def test_second_backward_is_a_clear_error():
    hidden, weight, targets = inputs(5)
    loss = linear_cross_entropy(hidden, weight, targets)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="once per forward"):
        loss.backward()


def test_bad_shapes_are_clear_errors():
    hidden, weight, targets = inputs(5)
    with pytest.raises(ValueError, match="targets"):
        linear_cross_entropy(hidden, weight, targets[:3])
    with pytest.raises(ValueError, match="no rows"):
        linear_cross_entropy(hidden[:0], weight, targets[:0])
    with pytest.raises(ValueError, match=r"\[n, C\]"):
        linear_cross_entropy(hidden, weight[:, :3], targets)


@pytest.mark.parametrize("lora_head", [False, True])
def test_model_loss_takes_the_head_it_has(lora_head):
    """ModRWKV's training loss: the chunked form for a plain head (loss and head gradient as the
    plain form gives them); the whole head output for a LoRA-wrapped head, whose `.weight` is only
    the frozen base (the chunked form on it would silently drop the LoRA term)."""
    model = ModRWKV.build(make_model(), {})
    if lora_head:
        apply_lora(model.lm, LoRAConfig(rank=4, targets=["head"]))
        with torch.no_grad():
            model.lm.head.lora_b.normal_(std=0.5, generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(6)
    ids = torch.randint(0, model.lm.config.vocab_size, (2, 40), generator=g)
    labels = ids.masked_fill(torch.rand(ids.shape, generator=g) < 0.3, IGNORE_INDEX)
    loss = model(ids, labels=labels).loss
    head = model.lm.head
    trained = head.lora_b if lora_head else head.weight
    (grad,) = torch.autograd.grad(loss, trained)

    hidden = model.lm(ids, logits="none").hidden[:, :-1]
    supervised = labels[:, 1:] != IGNORE_INDEX
    reference = torch.nn.functional.cross_entropy(head(hidden[supervised]), labels[:, 1:][supervised])
    (reference_grad,) = torch.autograd.grad(reference, trained)
    torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, reference_grad, rtol=1e-4, atol=1e-7)
    if lora_head:  # the LoRA term is in the loss
        base_only = linear_cross_entropy_reference(hidden[supervised], head.weight, labels[:, 1:][supervised])
        assert (loss - base_only).abs() > 1e-2
