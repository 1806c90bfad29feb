"""How the LM's weight matrices are stored and multiplied: the CPU speed machinery behind `linear`.

The model (`..model`) only ever calls `linear(layer, x, splits)`; what happens there depends on the
*weight format* chosen with `use_weight_format` and the *layout* chosen with `use_weight_layout`:

- "native": `nn.Linear` in the model's dtype. In fp32 on CPU, a one-row product in the "decode"
  layout (column-major, see `use_weight_layout`) is split over torch's threads (`_split_product`),
  and products of more rows run through oneDNN (`_onednn_product`); except on Intel CPUs, where
  torch's own product (MKL) is faster for both (`MKL_ON_INTEL`).
- "bf16": `BF16Linear`, weights bf16 in oneDNN's pre-packed layout on CPU (row-major elsewhere),
  activations cast to bf16 for the product only.
- "int8": `Int8Linear`, weight-only int8 with one bf16 scale per output channel (symmetric, round
  to nearest), multiplied by `torch._weight_int8pack_mm` with bf16 activations; prompts of many
  rows multiply the dequantised weight through oneDNN instead (compute bound, 2x faster): bf16
  on CPUs with AMX (`AMX_BF16`), fp32 elsewhere.

Batch-1 decoding reads every weight once per token, so its speed is bytes per token over memory
bandwidth: bf16 halves the bytes of the matrices, int8 quarters them. Everything else in the model
(embedding, norms, token-shift mixes, the low-rank LoRA products, the recurrent state) keeps the
model's dtype. Converted models are for inference: the formats have no autograd-friendly layout,
and `state_dict()` of a converted model holds the converted tensors.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

WeightFormat = Literal["native", "bf16", "int8"]
WEIGHT_FORMATS = ("native", "bf16", "int8")
WeightLayout = Literal["decode", "training"]
WEIGHT_LAYOUTS = ("decode", "training")


def _cpu_vendor() -> str:
    """The CPU's vendor id ("GenuineIntel", "AuthenticAMD", ...), or "" where /proc/cpuinfo has none."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


# torch's own fp32 products go to MKL, which runs its fast (AVX-512) kernels on Intel CPUs only; on
# other CPUs `linear` works around it (`_split_product`, `_onednn_product`). Measured with the 0.1B
# model at 2 threads: on a 2-core AMD EPYC MKL ran a one-row product on one core (splitting: a
# step's products 23.3 -> 15.5 ms) and oneDNN ran 512 rows at 450 instead of 200 GFLOP/s. On a
# 2-core Intel Xeon (2026-12-01) MKL used both cores for one row (splitting cost 1.1 ms per token
# more, 27.7 -> 28.9 ms) and was faster than oneDNN at every row count (all the 0.1B matrices at 2 /
# 16 / 64 / 512 rows: 33.5 / 41.2 / 70.3 / 399 ms against 35.6 / 56.2 / 96.5 / 528).
MKL_ON_INTEL = torch.backends.mkl.is_available() and _cpu_vendor() == "GenuineIntel"
# oneDNN's fp32 linear (`_onednn_product`), where torch was built with it.
ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
# From this many rows, an int8 product dequantises its weight (once per call) and runs on
# oneDNN (fp32, or bf16 where `AMX_BF16`): the product is then compute bound and the dequantisation
# costs a few percent.
INT8_DEQUANTIZE_ROWS = 64
# oneDNN's bf16 products with pre-packed weights (`BF16Linear`), where this CPU runs bf16 in oneDNN.
ONEDNN_BF16 = ONEDNN and hasattr(torch.ops.mkldnn, "_reorder_linear_weight") and torch.ops.mkldnn._is_mkldnn_bf16_supported()
# CPUs with AMX tiles (Intel Xeon from Sapphire Rapids on): there an int8 prompt's products run
# on the weights dequantised to bf16, with bf16 activations as when decoding (2-core Xeon,
# 2026-12-01, 0.1B model, 512 tokens at 2 threads: 944 -> 1474 tok/s against fp32 dequantisation;
# largest logit difference to fp32 0.16 -> 0.18). Elsewhere (not measured) they stay fp32.
AMX_BF16 = ONEDNN_BF16 and bool(getattr(torch._C._cpu, "_init_amx", lambda: False)())


class BF16Linear(nn.Module):
    """A bias-free linear layer with bf16 weights [out, in]; returns the input's dtype.

    On a CPU where oneDNN runs bf16 (`ONEDNN_BF16`), the weight is stored pre-packed in oneDNN's
    own blocked layout (an opaque `torch._mkldnn` tensor): given a plain row-major bf16 weight,
    oneDNN re-lays it out on every call, which made a one-row product compute bound (2-core Intel
    Xeon with AMX, 2026-12-01, a whole 0.1B step's products at one thread: 29.0 ms plain, 22.6 ms
    packed; at 2 threads 19.2 -> 13.2 ms; the same results at 1-16 rows, equal speed at 512 rows).
    Elsewhere (another device, no oneDNN) it is a plain row-major tensor. `dense_weight()` gives
    the plain [out, in] bf16 matrix in either case; `state_dict()`, `copy.deepcopy` and `.to(...)`
    see that plain matrix.
    """

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.register_buffer("weight", _packed_if_possible(weight.detach().to(torch.bfloat16).contiguous()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.is_mkldnn:
            y = torch.ops.mkldnn._linear_pointwise(x.to(torch.bfloat16), self.weight, None, "none", [], "")
        else:
            y = nn.functional.linear(x.to(torch.bfloat16), self.weight)
        return y.to(x.dtype)

    def dense_weight(self) -> torch.Tensor:
        """The weight as a plain (strided) [out, in] tensor."""
        return self.weight.to_dense() if self.weight.is_mkldnn else self.weight

    def dequantized(self) -> torch.Tensor:
        return self.dense_weight().float()

    # An opaque oneDNN tensor has no storage to copy, save or cast: these go through the plain matrix.
    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        destination[prefix + "weight"] = self.dense_weight()

    def _apply(self, fn, recurse: bool = True):  # noqa: ANN001, ANN202 (nn.Module's signature)
        self.weight = self.dense_weight()
        super()._apply(fn, recurse)
        self.weight = _packed_if_possible(self.weight)
        return self

    def __deepcopy__(self, memo: dict) -> BF16Linear:
        copy = BF16Linear(self.dense_weight())
        copy.train(self.training)
        return copy


def _packed_if_possible(weight: torch.Tensor) -> torch.Tensor:
    """`weight` (bf16 [out, in]) in oneDNN's pre-packed layout for one-row products where oneDNN
    runs bf16 on this CPU; otherwise `weight` unchanged."""
    if ONEDNN_BF16 and weight.device.type == "cpu" and weight.dtype == torch.bfloat16 and not weight.requires_grad:
        return torch.ops.mkldnn._reorder_linear_weight(weight, 1)
    return weight


class Int8Linear(nn.Module):
    """A bias-free linear layer with int8 weights [out, in] and one scale per output channel:
    W ~= scale[:, None] * weight. Returns the input's dtype."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        w = weight.detach().float()
        scale = w.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny) / 127
        # The kernel takes scales in the activations' dtype (bf16); quantising against the rounded
        # scale keeps weight * scale the nearest representable value of W.
        scale = scale.to(torch.bfloat16)
        q = (w / scale.float()[:, None]).round().clamp(-127, 127).to(torch.int8)
        self.register_buffer("weight", q.contiguous())
        self.register_buffer("scale", scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        if rows.shape[0] >= INT8_DEQUANTIZE_ROWS and ONEDNN and x.dtype == torch.float32 and x.device.type == "cpu":
            if AMX_BF16:
                w = self.weight.to(torch.bfloat16) * self.scale[:, None]
                y = torch.ops.mkldnn._linear_pointwise(rows.to(torch.bfloat16), w, None, "none", [], "")
            else:
                y = _onednn_product(self.dequantized(), rows)
        else:
            y = torch._weight_int8pack_mm(rows.to(torch.bfloat16), self.weight, self.scale)
        return y.view(*x.shape[:-1], self.out_features).to(x.dtype)

    def dequantized(self) -> torch.Tensor:
        return self.weight.float() * self.scale.float()[:, None]


def linear(layer: nn.Module, x: torch.Tensor, splits: int) -> torch.Tensor:
    """`layer(x)`, computed the fastest way for its weight format and the number of rows.

    fp32 `nn.Linear` without autograd on CPU, except with MKL on Intel CPUs (`MKL_ON_INTEL`): one
    row as `splits` partial products run in parallel (`_split_product`), more rows through oneDNN
    (`_onednn_product`). Any other layer (bf16, int8, a LoRA wrapper, a bias) or training is simply
    called.
    """
    if type(layer) is not nn.Linear or layer.bias is not None or MKL_ON_INTEL:
        return layer(x)
    rows = x.numel() // x.shape[-1]
    if rows == 1 and splits > 1:
        return _split_product(layer.weight, x, splits)
    if rows > 1 and ONEDNN and x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled():
        return _onednn_product(layer.weight, x)
    return layer(x)


def _onednn_product(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """x @ weight.T through oneDNN, in fp32 (fp32 products and sums: the results differ from MKL's
    only in the order of the additions, ~1e-6 relative).

    torch sends fp32 products to MKL, which runs AVX2 code on AMD CPUs (on Intel CPUs MKL is faster,
    and `linear` does not come here: `MKL_ON_INTEL`); oneDNN picks its kernel
    from the instruction set and uses AVX-512 where there is one. Measured on this project's
    2-core AMD EPYC (AVX-512) with the 0.1B matrices at 512 rows: 200 -> 450 GFLOP/s, and 2x at
    2-64 rows (decoding batches). Either weight layout works (oneDNN reads the strides).
    """
    return torch.ops.mkldnn._linear_pointwise(x, weight, None, "none", [], "")


def _split_product(weight: torch.Tensor, x: torch.Tensor, splits: int) -> torch.Tensor:
    """x @ weight.T for a column-major weight, as `splits` partial products over slices of the
    input dimension.

    Decoding a few rows is bound by reading the weights from memory, and on AMD CPUs MKL runs a
    one-row product on a single core whatever the thread count (on Intel CPUs it uses them all:
    `split_count` is 1 there). With W^T one contiguous [in, out] matrix, slicing
    the input dimension into `splits` blocks is a free view: one batched product (which torch
    spreads over its threads) plus a sum of the partial results. Measured on 2 cores, a whole 0.1B
    decode step's products against the plain product in the same layout: 23.3 -> 15.5 ms at batch 1,
    65.7 -> 50.4 ms at batch 16. Like every multi-threaded torch op it stalls when other processes
    hold the cores (use fewer threads there).
    """
    n_out, n_in = weight.shape
    if weight.stride() != (1, n_out) or n_in % splits or not x.is_contiguous():
        return nn.functional.linear(x, weight)
    block = n_in // splits
    rows = x.numel() // n_in
    # [splits, rows, block] @ [splits, block, n_out], both as strided views without copies
    parts = torch.bmm(x.as_strided((splits, rows, block), (block, n_in, 1)),
                      weight.as_strided((splits, block, n_out), (block * n_out, n_out, 1)))
    return parts.sum(0).view(x.shape[:-1] + (n_out,))


def split_count(x: torch.Tensor) -> int:
    """How many partial products `linear` uses for a single row: torch's thread count on CPU,
    except where MKL spreads a one-row product over the threads itself (`MKL_ON_INTEL`)."""
    return torch.get_num_threads() if x.device.type == "cpu" and not MKL_ON_INTEL else 1


@torch.no_grad()
def use_weight_layout(model: nn.Module, layout: WeightLayout) -> None:
    """Stores every `nn.Linear` weight in `model` for decoding ("decode") or training ("training").

    Only the memory order changes: shapes, values and `state_dict()` keys stay the same.
    - "decode" keeps each [out, in] weight column-major, i.e. as one contiguous [in, out] matrix
      (the official package's pre-transposed `x @ W`). A one-row fp32 GEMV reads that ~1.3x faster
      from memory on CPU than row-major (MKL: 65536 x 768 head 11.5 -> 7.3 ms) and it lets
      `linear` split a product over threads without copies.
    - "training" is plain row-major: with column-major weights every optimizer step
      transpose-copies the gradients and AdamW's fused kernels leave their fast path.
    Modules wrapping a linear (LoRA) are covered: the wrapped `nn.Linear` is found and changed.
    Works on meta-device models, so that a loader can allocate each weight in its final layout.
    bf16 and int8 layers keep their own (row-major) layout.
    """
    if layout not in WEIGHT_LAYOUTS:
        raise ValueError(f"unknown weight layout {layout!r}; choose one of {WEIGHT_LAYOUTS}")
    for module in model.modules():
        if isinstance(module, nn.Linear):
            weight = module.weight
            if layout == "decode" and not weight.t().is_contiguous():
                weight.data = weight.data.t().contiguous().t()
            elif layout == "training" and not weight.is_contiguous():
                weight.data = weight.data.contiguous()


@torch.no_grad()
def use_weight_format(model: nn.Module, weight_format: WeightFormat) -> nn.Module:
    """Converts every bias-free `nn.Linear` in `model` (in place) to `weight_format` and returns
    the model. "native" leaves them as they are. A conversion cannot be undone (int8 loses precision):
    load the checkpoint again for another format."""
    if weight_format not in WEIGHT_FORMATS:
        raise ValueError(f"unknown weight format {weight_format!r}; choose one of {WEIGHT_FORMATS}")
    if weight_format == "native":
        return model
    cls = BF16Linear if weight_format == "bf16" else Int8Linear
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear and child.bias is None:
                if child.weight.is_meta:
                    raise ValueError("load the weights before converting them (the model is on the meta device)")
                setattr(parent, name, cls(child.weight))
    return model


def weight_format_of(model: nn.Module) -> WeightFormat:
    """The format of the model's linear layers ("native" when it holds no converted layer)."""
    for module in model.modules():
        if isinstance(module, Int8Linear):
            return "int8"
        if isinstance(module, BF16Linear):
            return "bf16"
    return "native"
