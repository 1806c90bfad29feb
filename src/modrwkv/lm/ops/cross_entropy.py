"""The training loss: mean cross-entropy of `hidden @ weight.T` (the vocabulary head) against the
targets, computed a chunk of rows at a time so that the [tokens x vocabulary] logits never exist
whole.

The plain form (`linear_cross_entropy_reference`: head, then `F.cross_entropy`) holds three fp32
[tokens x vocab] buffers at once in its backward (the saved log-probabilities, the incoming
gradient, the result): 768 KiB per supervised token at vocabulary 65536. `linear_cross_entropy`
walks the rows in chunks of `CHUNK_ROWS`; for each it computes the logits, the chunk's loss sum
and, when gradients are needed, the gradient of the mean loss w.r.t. the chunk's logits
(softmax - one-hot, over the token count), from which the gradient w.r.t. the chunk's hidden rows
and (if the head trains) the head weight's gradient accumulated over chunks follow. The backward
then only scales these by the incoming gradient (1 for a plain `loss.backward()`, 1/k under
gradient accumulation). The same three matrix products as the plain form, so no slower; peak
memory holds one chunk of logits plus the head weight's gradient, which the plain form also builds.

Under `torch.autocast` the products run in the autocast dtype (as `nn.Linear` does there) and the
softmax and loss in fp32 (as `F.cross_entropy(logits.float(), ...)`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Rows per chunk: 2048 x 65536 fp32 logits are 512 MiB, against 24 GiB for the plain form's
# buffers at 16 x 2048 supervised tokens; big enough that each product stays efficient.
CHUNK_ROWS = 2048


def linear_cross_entropy_reference(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The plain form, for tests and comparisons: the head's logits in full, then cross-entropy in fp32."""
    return F.cross_entropy(F.linear(hidden, weight).float(), targets)


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         chunk_rows: int = CHUNK_ROWS) -> torch.Tensor:
    """Mean cross-entropy of `hidden [n, C] @ weight[V, C].T` against `targets [n]` (class indices),
    in fp32, equal to `linear_cross_entropy_reference` up to rounding, chunk by chunk (module doc).
    Gradient work is done only when autograd needs it: nothing for the weight when it is frozen,
    nothing at all without grad mode or when neither input requires grad."""
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"linear_cross_entropy: hidden {tuple(hidden.shape)} and weight {tuple(weight.shape)} "
                         "must be [n, C] and [vocab, C]")
    if targets.shape != hidden.shape[:1]:
        raise ValueError(f"linear_cross_entropy: targets {tuple(targets.shape)} must be [n] for hidden {tuple(hidden.shape)}")
    if hidden.shape[0] == 0:
        raise ValueError("linear_cross_entropy: no rows (the mean over zero tokens is undefined)")
    if chunk_rows < 1:
        raise ValueError(f"linear_cross_entropy: chunk_rows must be at least 1, got {chunk_rows}")
    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
        # differentiable casts: their backward returns the gradients in the inputs' own dtypes
        hidden, weight = hidden.to(dtype), weight.to(dtype)
    elif hidden.dtype != weight.dtype:
        raise ValueError(f"linear_cross_entropy: hidden is {hidden.dtype} but the weight is {weight.dtype}")
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        return _LinearCrossEntropy.apply(hidden, weight, targets, chunk_rows)
    return _loss_and_gradients(hidden, weight, targets, chunk_rows, hidden_grad=False, weight_grad=False)[0]


def _loss_and_gradients(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_rows: int, *,
                        hidden_grad: bool, weight_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(mean loss, d loss / d hidden or None, d loss / d weight or None), chunk by chunk."""
    n = hidden.shape[0]
    loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
    grad_hidden = hidden.new_empty(hidden.shape) if hidden_grad else None
    grad_weight = None  # accumulated in fp32: a bf16 sum over chunks would round at every addition
    with torch.autocast(hidden.device.type, enabled=False):
        for start in range(0, n, chunk_rows):
            rows = hidden[start:start + chunk_rows]
            chunk_loss, grad = _chunk_loss(rows, weight, targets[start:start + chunk_rows], n,
                                           with_grad=hidden_grad or weight_grad)
            loss += chunk_loss
            if grad is None:
                continue
            if hidden_grad:
                torch.mm(grad, weight, out=grad_hidden[start:start + chunk_rows])
            if weight_grad:
                if grad_weight is None:  # the first chunk's product is the result (no zero fill)
                    grad_weight = grad.t() @ rows
                elif grad.dtype == torch.float32:
                    grad_weight.addmm_(grad.t(), rows)  # in place, no [vocab, C] temporary
                else:  # bf16 products, summed from the second chunk on in fp32 (`.float()` is a no-op then)
                    grad_weight = grad_weight.float()
                    grad_weight += grad.t() @ rows
            # freed before the next chunk's logits exist: otherwise two chunks would be alive at once
            del grad
    if grad_weight is not None:
        grad_weight = grad_weight.to(weight.dtype)
    return loss / n, grad_hidden, grad_weight


def _chunk_loss(rows: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, n: int, *,
                with_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(the sum of one chunk's losses, d mean loss / d the chunk's logits in the weight's dtype, or
    None without `with_grad`), with one fp32 [rows, vocab] buffer, freed on return unless it is the
    gradient (fp32 products)."""
    logits = F.linear(rows, weight).float()  # a fresh fp32 tensor (a copy when the product is bf16)
    target = targets.unsqueeze(1)
    target_logit = logits.gather(1, target)
    # log-sum-exp in place in the logits buffer (torch.logsumexp would allocate a second one)
    top = logits.amax(dim=1, keepdim=True)
    # below -87 exp is subnormal in fp32, which x86 CPUs compute ~20x slower; clamping changes each
    # such term by < 2e-38 (log_softmax's kernel is not affected either way)
    total = logits.sub_(top).clamp_(min=-87.0).exp_().sum(dim=1, keepdim=True)
    loss = (top + total.log() - target_logit).sum()
    if not with_grad:
        return loss, None
    # d mean / d logits = (softmax - one-hot) / n, in place
    grad = logits.div_(total)
    grad.scatter_add_(1, target, torch.full_like(target, -1, dtype=grad.dtype))
    return loss, grad.div_(n).to(weight.dtype)


class _LinearCrossEntropy(torch.autograd.Function):
    """The forward computes the loss and the gradients of the mean loss (the chunked loop); the
    backward scales them by the incoming gradient, in place (they are used once)."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_rows: int) -> torch.Tensor:
        loss, grad_hidden, grad_weight = _loss_and_gradients(hidden, weight, targets, chunk_rows,
                                                  hidden_grad=ctx.needs_input_grad[0],
                                                  weight_grad=ctx.needs_input_grad[1])
        ctx.grads = (grad_hidden, grad_weight)
        return loss

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        if ctx.grads is None:
            raise RuntimeError("linear_cross_entropy: its backward runs once per forward (its gradients are "
                               "computed in the forward and handed over); compute the loss again to differentiate again")
        grad_hidden, grad_weight = ctx.grads
        ctx.grads = None
        # always scaled (no check for 1: that would wait for the device); cheap next to the products
        grad_hidden = None if grad_hidden is None else grad_hidden.mul_(grad_output.to(grad_hidden.dtype))
        grad_weight = None if grad_weight is None else grad_weight.mul_(grad_output.to(grad_weight.dtype))
        return grad_hidden, grad_weight, None, None
