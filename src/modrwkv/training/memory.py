"""How much memory a training run needs, per device: weights, gradients, optimizer states,
activations and the logits buffer, from the config alone (nothing is allocated).

    plan = plan_from_config(load_config("configs/vision-stage1.yaml"))
    print(estimate_memory(plan).table())

`modrwkv train CONFIG.yaml --estimate-memory` prints the same table and exits.

What is counted, and why (each term is checked against the real model in tests/test_memory.py and
against measured peaks in bench/bench_memory.py):

- Weights: the model's parameters in fp32 (Lightning's bf16-mixed keeps fp32 weights and casts
  inside autocast; DeepSpeed's bf16 keeps bf16 weights and an fp32 master copy in the optimizer).
- Gradients: one fp32 tensor per trainable parameter; AdamW: two (exp_avg, exp_avg_sq).
- Activations: the tensors autograd saves for the backward pass, per token and layer, as the
  block's ops and its WKV kernel save them (`layer_activation_bytes`, derived from the saved-tensor
  list of one block: tests count them on a real block). Under bf16 autocast each block also saves
  a bf16 copy of its weight matrices (the backward needs them, frozen or not).
- Logits: the head runs on the supervised positions only, through the chunked linear +
  cross-entropy (`modrwkv.lm.ops.cross_entropy`): one chunk of at most `CHUNK_ROWS` rows of fp32
  logits at a time (4 bytes x rows x vocab; 6 under bf16 autocast, where the bf16 product and its
  fp32 copy meet), and, when the head trains, its weight's gradient accumulated in fp32 during the
  loss's forward and held until its backward.
- The peak: the static part (weights + optimizer states) plus the largest of four moments: the
  end of the forward (activations + one chunk of logits + the head's gradient being accumulated +
  the previous step's gradients, which Lightning frees only after the forward), the loss backward
  (activations + the head's gradient), the backward of the last layer (activations, that layer
  recomputed under gradient checkpointing, and the working set of its FFN's backward, which comes
  first) and the optimizer step (all gradients + the non-fused AdamW's temporaries).

The WKV kernel is our pure-PyTorch chunked form on CPU (and on CUDA without fla), measured; on a
GPU with flash-linear-attention it is fla's, which saves its inputs and recomputes the rest in its
backward (read from its source, not measured: no GPU has run this). A GPU also needs memory for
the CUDA context and kernel workspaces, added as the `GPU_OVERHEAD_BYTES` allowance.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import typing
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from ..adapters import AdapterConfig, build_adapter
from ..encoders.series import AUTO
from ..lm import RWKV7, RWKV7Config
from ..lm.checkpoint import load_state_dict
from ..lm.ops import fla_computes_as_asked
from ..lm.ops.chunked import DEFAULT_CHUNK
from ..lm.ops.cross_entropy import CHUNK_ROWS
from ..multimodal import ModRWKV
from .config import DEFAULT_LORA_TARGETS, ConfigError, Strategy, TrainConfig

log = logging.getLogger(__name__)

GIB = 2**30
# The official RWKV-7 World sizes (layers, width); read from the checkpoint when it exists, else
# recognised in its file name (RWKV-x070-World-1.5B-...). 7.2B: the RWKV7-G0 7.2B release.
WORLD_SIZES = {"0.1B": (12, 768), "0.4B": (24, 1024), "1.5B": (24, 2048), "2.9B": (32, 2560), "7.2B": (32, 4096)}
# Pretrained towers that `plan_from_config` sizes without their files: vision/audio tower
# parameters (counted on the transformers architecture with the release's config), feature width,
# tokens per item (None: depends on the input's length).
KNOWN_ENCODERS: dict[str, tuple[int, int, int | None]] = {
    "siglip2-base-patch16-384": (93_176_064, 768, 576),
    "wavlm-large": (315_453_120, 1024, None),
}
# CUDA context, cuBLAS/Triton workspaces and allocator slack that a GPU process holds on top of
# its tensors; an allowance (no GPU has run this project's training yet), not a measurement.
GPU_OVERHEAD_BYTES = int(1.5 * GIB)

Precision = Literal["32", "bf16-mixed"]
# "1" adapters; "2" adapters + LM; "lora" adapters + LoRA layers; "state" the LM's initial WKV state
# alone (state tuning: adapters and encoders frozen too)
STAGES = ("1", "2", "lora", "state")
Wkv = Literal["chunked", "fla"]


@dataclasses.dataclass(frozen=True)
class EncoderPlan:
    """One modality's encoder and adapter, as numbers."""

    modality: str
    encoder_params: int
    trainable: bool
    feature_dim: int
    adapter_params: int
    adapter_hidden: int  # the adapter MLP's hidden width
    tokens_per_sample: int | None = None  # features entering the adapter; None: up to ctx_len

    def __post_init__(self) -> None:
        if self.encoder_params < 0 or self.adapter_params < 0:
            raise ValueError(f"{self.modality}: parameter counts must be >= 0")


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """Everything the estimate depends on. `micro_batch_size` sequences of `ctx_len` tokens each
    (the worst case a length-grouped batch reaches), of which `supervised_fraction` carry labels."""

    lm: RWKV7Config
    stage: str  # one of STAGES
    micro_batch_size: int
    ctx_len: int
    precision: Precision = "bf16-mixed"
    gradient_checkpointing: bool = False
    strategy: str = "auto"
    world_size: int = 1
    accumulation: int = 1
    lora_rank: int = 16
    lora_targets: tuple[str, ...] = DEFAULT_LORA_TARGETS
    encoders: tuple[EncoderPlan, ...] = ()
    supervised_fraction: float = 1.0
    grad_clip: bool = True
    gpu: bool = False
    wkv: Wkv = "chunked"

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.wkv not in ("chunked", "fla"):
            raise ValueError(f"wkv must be 'chunked' or 'fla', got {self.wkv!r}")
        if self.strategy not in typing.get_args(Strategy):
            raise ValueError(f"strategy must be one of {typing.get_args(Strategy)}, got {self.strategy!r}")
        if self.precision not in ("32", "bf16-mixed"):
            raise ValueError(f"precision must be '32' or 'bf16-mixed', got {self.precision!r}")
        for name in ("micro_batch_size", "ctx_len", "world_size", "accumulation", "lora_rank"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.supervised_fraction <= 1:
            raise ValueError(f"supervised_fraction must be in (0, 1], got {self.supervised_fraction}")

    @property
    def zero_stage(self) -> int:
        """DeepSpeed ZeRO stage (0: not DeepSpeed)."""
        match = re.fullmatch(r"deepspeed_stage_(\d)", self.strategy)
        return int(match.group(1)) if match else 0

    @property
    def fused_adam(self) -> bool:
        """As `ModRWKVModule.configure_optimizers` decides: Lightning cannot clip the gradients of
        a fused AdamW under mixed precision, so bf16-mixed with clipping runs the non-fused one."""
        return not (self.precision == "bf16-mixed" and self.grad_clip)


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per device. `parts` are the components; `peak` = static + the largest moment."""

    plan: MemoryPlan
    parts: dict[str, int]
    moments: dict[str, int]  # what is live on top of `static` at each candidate peak
    static: int
    overhead: int  # GPU allowance (0 on CPU)

    @property
    def peak_moment(self) -> str:
        return max(self.moments, key=self.moments.__getitem__)

    @property
    def peak(self) -> int:
        return self.static + self.moments[self.peak_moment] + self.overhead

    def summary(self) -> str:
        """One line: the peak and its largest parts."""
        parts = ", ".join(f"{name} {value / GIB:.2f}" for name, value in self.parts.items() if value >= 0.01 * GIB)
        return f"estimated peak memory per device {self.peak / GIB:.2f} GiB ({parts} GiB; at the {self.peak_moment})"

    def table(self) -> str:
        p = self.plan
        c = p.lm
        head = (f"memory estimate per device: RWKV-7 {c.n_layer}x{c.n_embd} (vocab {c.vocab_size}), stage {p.stage}"
                f"{f' (LoRA rank {p.lora_rank})' if p.stage == 'lora' else ''}, micro-batch {p.micro_batch_size} x "
                f"{p.ctx_len} tokens, precision {p.precision}, gradient checkpointing "
                f"{'on' if p.gradient_checkpointing else 'off'}, strategy {p.strategy} x {p.world_size}")
        width = max(len(name) for name in [*self.parts, "CUDA context + workspace"]) + 2
        lines = [head, ""]
        lines += [f"  {name:<{width}}{value / GIB:9.2f} GiB" for name, value in self.parts.items()]
        if self.overhead:
            lines.append(f"  {'CUDA context + workspace':<{width}}{self.overhead / GIB:9.2f} GiB  (allowance)")
        lines.append(f"  {'peak':<{width}}{self.peak / GIB:9.2f} GiB  (at the {self.peak_moment})")
        lines.append("")
        lines.append("  peak = weights + optimizer states + the largest of: "
                     + ", ".join(f"{name} {value / GIB:.2f}" for name, value in self.moments.items()) + " GiB")
        lines.append(f"  assumes every sequence is {p.ctx_len} tokens with {p.supervised_fraction:.0%} of them "
                     "supervised (the logits are computed on supervised tokens only)")
        if p.wkv == "fla":
            lines.append("  WKV activations as flash-linear-attention's kernel saves them (it recomputes the rest); "
                         "no GPU has run to measure them")
        return "\n".join(lines)


def lora_parameters(config: RWKV7Config, rank: int, targets: Sequence[str]) -> int:
    """Parameters `apply_lora` adds: rank x (in + out) per targeted linear."""
    c, f = config.n_embd, config.dim_ffn
    shapes = {"att.receptance": (c, c), "att.key": (c, c), "att.value": (c, c), "att.output": (c, c),
              "ffn.key": (c, f), "ffn.value": (f, c)}
    per_layer = sum(rank * sum(shapes[t]) for t in targets if t in shapes)
    head = rank * (c + config.vocab_size) if "head" in targets else 0
    return config.n_layer * per_layer + head


def lm_parameters(config: RWKV7Config) -> int:
    """Parameters of the LM, counted on the model itself, built on the meta device (no memory)."""
    with torch.device("meta"):
        return sum(p.numel() for p in RWKV7(config).parameters())


def state_bytes(config: RWKV7Config, dtype: torch.dtype = torch.float32) -> int:
    """Bytes of one sequence's recurrent state (what serving holds per request, at any length):
    the two token-shift vectors per layer in the model's dtype, the WKV matrices in fp32."""
    shift = 2 * config.n_layer * config.n_embd * torch.empty((), dtype=dtype).element_size()
    return shift + 4 * config.n_layer * config.n_head * config.head_size**2


def matrix_parameters(config: RWKV7Config) -> int:
    """Parameters of one block's weight matrices (what autocast casts to bf16)."""
    c = config.n_embd
    return 4 * c * c + 2 * c * config.dim_ffn + 2 * c * (config.dim_w + config.dim_a + config.dim_v + config.dim_g)


def layer_activation_bytes(config: RWKV7Config, batch: int, seq_len: int, *, precision: Precision,
                           lm_trainable: bool, wkv: Wkv = "chunked") -> int:
    """Bytes one RWKV-7 block saves for the backward pass (its input included), for a batch of
    `batch` sequences of `seq_len` tokens: the block's own ops plus the WKV kernel's.

    Counted from the saved-tensor list of our block (tests/test_memory.py counts them on a real
    one). Per token, outside the WKV kernel: the block input and 27 more C-wide fp32 tensors when
    the weights train (the six token-shift mixes stored as one tensor, r/k/v/a/g/decay and their
    products, kk's normalisation, the bonus, the gate, the FFN input), 15 when they are frozen (the
    weight-gradient inputs are not kept); the FFN's 4C hidden layer twice (once frozen); the LoRA
    widths; 5 scalars per head. Under bf16 autocast the projections' outputs are bf16 and the block
    keeps a bf16 copy of each weight matrix (its backward needs them, frozen or not).
    """
    c, f, h = config.n_embd, config.dim_ffn, config.n_head
    tokens = batch * seq_len
    loras = config.dim_w + config.dim_g + (config.dim_a + config.dim_v if lm_trainable else 0)
    if precision == "32":
        per_token = 4 * c + (108 if lm_trainable else 60) * c + 4 * (2 if lm_trainable else 1) * f + 4 * loras
        weights = 0
    else:
        per_token = 4 * c + (84 if lm_trainable else 50) * c + 2 * (2 if lm_trainable else 1) * f + 2 * loras
        weights = 2 * matrix_parameters(config)
    block = tokens * (per_token + 20 * h + 16) + weights + 24 * c
    return int(block + wkv_activation_bytes(config, batch, seq_len, precision=precision, wkv=wkv))


def wkv_activation_bytes(config: RWKV7Config, batch: int, seq_len: int, *, precision: Precision,
                         wkv: Wkv = "chunked") -> int:
    """Bytes the WKV kernel of one block saves beyond what the block's other ops already keep.

    "chunked" (ours, pure PyTorch, chunks of L = 32): per token, its six inputs rescaled by the
    cumulative decay and their transposed copies (18 C-wide fp32 tensors), four L x L intra-chunk
    matrices per head; per chunk, three H x N x N fp32 states (the chunk start states and their
    factors); the carried state. Its matrix products run in bf16 under autocast, hence fewer bytes
    there. A batch of one sequence takes another memory layout in a few reshapes (5 C-wide tensors
    more in fp32, 1 fewer in bf16).
    "fla" (flash-linear-attention, CUDA): the kernel saves its inputs and recomputes the rest in
    its backward; new beyond the block's own are the fp32 log-decay, the two delta-rule vectors
    and the initial state.
    """
    c, h, n, chunk = config.n_embd, config.n_head, config.head_size, DEFAULT_CHUNK
    value_bytes = 4 if precision == "32" else 2
    if wkv == "fla":
        return batch * seq_len * (4 + 2 * value_bytes) * c + batch * 4 * h * n * n
    padded = -(-seq_len // chunk) * chunk
    tokens, chunks = batch * padded, batch * padded // chunk
    if precision == "32":
        per_token = 72 * c + 4 * c / chunk + (20 * c if batch == 1 else 0) + 16 * chunk * h
        per_chunk, per_sequence = 12 * h * n * n, 4 * h * n * n
    else:
        per_token = 78 * c + 4 * c / chunk - (4 * c if batch == 1 else 0) + 10 * chunk * h
        per_chunk, per_sequence = 6 * h * n * n, -2 * h * n * n
    return int(tokens * per_token + chunks * per_chunk + batch * per_sequence + 2048)


def estimate_memory(plan: MemoryPlan) -> MemoryEstimate:
    """Per-device bytes of a training step as `plan` describes it; see the module docstring."""
    cfg = plan.lm
    lm_params = lm_parameters(cfg)
    lora = lora_parameters(cfg, plan.lora_rank, plan.lora_targets) if plan.stage == "lora" else 0
    media_params = sum(e.encoder_params + e.adapter_params for e in plan.encoders)
    initial_state = cfg.n_layer * cfg.n_head * cfg.head_size**2 if plan.stage == "state" else 0
    if plan.stage == "state":
        trainable = initial_state
    else:
        trainable = (sum(e.adapter_params + (e.encoder_params if e.trainable else 0) for e in plan.encoders)
                     + (lm_params if plan.stage == "2" else lora))
    all_params = lm_params + lora + initial_state + media_params
    bf16 = plan.precision == "bf16-mixed"
    n = plan.world_size

    # Weights, gradients, optimizer states per device, by strategy.
    zero = plan.zero_stage
    if zero:
        # DeepSpeed bf16: bf16 weights and gradients, fp32 master weights + Adam moments (12 bytes)
        # sharded over the ranks from ZeRO-1, gradients from ZeRO-2, weights at ZeRO-3.
        weight_bytes, grad_bytes, optimizer_bytes = (2, 2, 12) if bf16 else (4, 4, 8)
        weights = weight_bytes * all_params // (n if zero >= 3 else 1)
        grads = grad_bytes * trainable // (n if zero >= 2 else 1)
        optimizer = optimizer_bytes * trainable // n
    elif plan.strategy == "fsdp":
        weights, grads, optimizer = 4 * all_params // n, 4 * trainable // n, 8 * trainable // n
    else:
        weights, grads, optimizer = 4 * all_params, 4 * trainable, 8 * trainable
    # DDP copies gradients into its all-reduce buckets; FSDP gathers the unsharded embedding,
    # head and norms (outside the per-block wrap) and two blocks at a time (one prefetched).
    buckets = grads if plan.strategy == "ddp" and n > 1 else 0
    gathered = 0
    if plan.strategy == "fsdp" and n > 1:
        block = (lm_params - 2 * cfg.vocab_size * cfg.n_embd) // cfg.n_layer
        gathered = (2 if bf16 else 4) * (2 * cfg.vocab_size * cfg.n_embd + 2 * block)

    # Activations.
    batch, tokens = plan.micro_batch_size, plan.micro_batch_size * plan.ctx_len
    lm_trainable = plan.stage in ("2", "lora")
    layer = layer_activation_bytes(cfg, batch, plan.ctx_len, precision=plan.precision, lm_trainable=lm_trainable,
                                   wkv=plan.wkv)
    if plan.gradient_checkpointing:
        # each block keeps its input (fp32 residual stream) and its carried state; one block at a
        # time is recomputed. Under autocast the trainable weights' bf16 copies stay cached until
        # the forward ends (Lightning's autocast spans the training step, not the backward, whose
        # recomputation casts each block's weights again).
        state = batch * (2 * cfg.n_embd + cfg.n_head * cfg.head_size**2) * 4
        layers = cfg.n_layer * (4 * tokens * cfg.n_embd + state)
        recompute = layer
        cast_cache = 2 * matrix_parameters(cfg) * cfg.n_layer if bf16 and plan.stage == "2" else 0
    else:
        layers, recompute, cast_cache = cfg.n_layer * layer, 0, 0
    # around the blocks: the embedding output and ln0 (fp32), v_first, ln_out's input and output
    value_bytes = 2 if bf16 else 4
    lm_io = tokens * cfg.n_embd * (4 * 3 + value_bytes)
    # The last block's backward starts with its FFN (measured: the peak of that backward, while the
    # block's saved tensors are all still alive): the gradient w.r.t. the squared-ReLU output and
    # its backward's three [tokens, 4C] temporaries (x, 2x, their product with the gradient), in
    # the projections' dtype, beside the fp32 gradient of the residual stream.
    block_backward = tokens * (4 * cfg.dim_ffn * value_bytes + 4 * cfg.n_embd)
    supervised = int(tokens * plan.supervised_fraction)
    # the chunked loss (lm/ops/cross_entropy.py): one chunk's fp32 logits (+ its bf16 product, then
    # its bf16 gradient, under autocast), the gradient w.r.t. the head's input, and when the head
    # trains its weight's gradient, built during the forward: each chunk's product, summed from the
    # second chunk on in an fp32 accumulator. The bf16 head copy lives only for the loss.
    chunk_rows, matrix = min(supervised, CHUNK_ROWS), cfg.vocab_size * cfg.n_embd
    head_copy = 2 * matrix * bf16
    logits = (6 if bf16 else 4) * chunk_rows * cfg.vocab_size
    if plan.stage != "2":
        loss_work = logits
    elif bf16:
        accumulator = 4 * matrix if supervised > CHUNK_ROWS else 0
        loss_work = max(logits + accumulator, 2 * chunk_rows * cfg.vocab_size + accumulator + 2 * matrix)
    else:
        loss_work = logits + 4 * matrix
    loss_forward = head_copy + supervised * cfg.n_embd * value_bytes + loss_work
    loss_backward = supervised * cfg.n_embd * (value_bytes + 4)
    if plan.stage == "lora" and "head" in plan.lora_targets:
        # a LoRA-wrapped head takes the plain head + cross-entropy: its fp32 log-probabilities
        # [n, vocab], twice at the end of the forward and three times in the backward; autocast's
        # bf16 head copy is kept for the backward
        chunk_rows, logits = supervised, 4 * supervised * cfg.vocab_size
        loss_forward, loss_backward = head_copy + 2 * logits, head_copy + 3 * logits
    # the adapter MLP keeps its input, the normalised input, the hidden layer before and after GELU
    adapters = sum(4 * batch * min(e.tokens_per_sample or plan.ctx_len, plan.ctx_len)
                   * (2 * e.feature_dim + 2 * e.adapter_hidden) for e in plan.encoders)
    activations = layers + lm_io + adapters
    head_grad = 4 * cfg.vocab_size * cfg.n_embd * (1.5 if bf16 else 1) if plan.stage == "2" else 0
    # Lightning zeroes the gradients after the training step's forward, just before its backward:
    # the forward runs beside the previous step's gradients (DeepSpeed zeroes them in its step);
    # with accumulation, so does the backward.
    accumulated = grads if plan.accumulation > 1 else 0
    previous = accumulated if zero else grads
    # The non-fused AdamW: on CUDA torch picks its foreach form, whose sqrt of the second moments is
    # one copy of all of them; on CPU the per-tensor loop, which holds two temporaries of the
    # largest trainable tensor (the embedding or the head when the LM trains).
    if plan.fused_adam:
        step_temporaries = 0
    elif plan.gpu:
        step_temporaries = 4 * trainable // (n if zero or plan.strategy == "fsdp" else 1)
    else:
        largest = max([cfg.vocab_size * cfg.n_embd if plan.stage == "2" else initial_state]
                      + [e.adapter_hidden * max(e.feature_dim, cfg.n_embd) for e in plan.encoders
                         if plan.stage != "state"])
        step_temporaries = 2 * 4 * largest

    moments = {
        "end of the forward": activations + cast_cache + loss_forward + previous,
        "loss backward": activations + int(head_grad) + loss_backward + accumulated,
        "last layer's backward": activations + int(head_grad) + recompute + block_backward + accumulated,
        "optimizer step": grads + buckets + step_temporaries,
    }
    moments = {k: v + gathered for k, v in moments.items()}
    parts = {
        "weights (LM)": weights * (lm_params + lora + initial_state) // max(all_params, 1),
        "weights (encoders + adapters)": weights * media_params // max(all_params, 1),
        "gradients": grads + buckets,
        "optimizer states (AdamW)": optimizer,
        f"activations ({cfg.n_layer} layers{', checkpointed' if plan.gradient_checkpointing else ''})": layers,
        "activations (embeddings, head input, adapters)": lm_io + adapters,
        f"logits ({chunk_rows} rows at a time)": logits,
    }
    if gathered:
        parts["FSDP gathered weights"] = gathered
    return MemoryEstimate(plan, parts, moments, static=weights + optimizer,
                          overhead=GPU_OVERHEAD_BYTES if plan.gpu else 0)


class LiveTensorBytes(TorchDispatchMode):
    """Measures: the bytes of the tensor storages alive that were created under this mode, and
    their peak. Every op's outputs pass through `__torch_dispatch__` (forward, backward, optimizer);
    each storage is counted once and uncounted when it is freed. On a GPU this is what
    `torch.cuda.max_memory_allocated` reports; on a CPU, where no allocator keeps such statistics,
    it is the counterpart (the process's RSS adds the C allocator's caching and fragmentation).
    Buffers a kernel allocates and frees inside itself are not seen.

        with LiveTensorBytes() as tracker:
            train(config)
        tracker.peak
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._storages: dict[int, weakref.ref] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor) and tensor.device.type != "meta":
                self._track(tensor.untyped_storage())
        return out

    def _track(self, storage: torch.UntypedStorage) -> None:
        key = id(storage)
        known = self._storages.get(key)
        if known is not None and known() is storage:
            return
        nbytes = storage.nbytes()
        self._storages[key] = weakref.ref(storage, lambda _, key=key, nbytes=nbytes: self._release(key, nbytes))
        self.live += nbytes
        self.peak = max(self.peak, self.live)

    def _release(self, key: int, nbytes: int) -> None:
        self._storages.pop(key, None)
        self.live -= nbytes

    def reset_peak(self) -> None:
        self.peak = self.live


# --------------------------------------------------------------------------- from a config


def lm_config_for(config: TrainConfig) -> RWKV7Config:
    """The LM's sizes: `lm.config`, the checkpoint's tensor shapes (memory-mapped, not loaded),
    `init_from`'s config.json, or an official World size named in a checkpoint file name that is
    not on this machine."""
    m = config.model
    if m.init_from is not None:
        path = Path(m.init_from) / "config.json"
        if path.exists():
            return RWKV7Config.from_dict(json.loads(path.read_text())["lm"])
        raise ConfigError(f"model.init_from: {path} does not exist; the LM's size is read from it "
                          "(estimate the stage-1 config, or run stage 1 first)")
    if m.lm.config is not None:
        return RWKV7Config.from_dict(m.lm.config)
    checkpoint = str(m.lm.checkpoint)
    try:
        return RWKV7Config.from_state_dict(load_state_dict(checkpoint))
    except FileNotFoundError:
        match = re.search(r"(\d+(?:\.\d+)?)B", Path(checkpoint).name, flags=re.IGNORECASE)
        size = f"{match.group(1)}B" if match else None
        if size not in WORLD_SIZES:
            raise ConfigError(f"model.lm.checkpoint: {checkpoint} does not exist and its name holds no known size "
                              f"({', '.join(WORLD_SIZES)})") from None
        log.info("%s is not here: sizing the LM as the official World %s", checkpoint, size)
        n_layer, n_embd = WORLD_SIZES[size]
        return RWKV7Config(n_layer=n_layer, n_embd=n_embd)


def _encoder_plan(modality: str, spec: dict, adapter: AdapterConfig, n_embd: int) -> EncoderPlan:
    """Sizes of one encoder (built-in ones are built, known pretrained towers looked up) and of
    its adapter (built on the meta device)."""
    from ..encoders import build_encoder

    name, source = spec["name"], spec.get("source")
    known = KNOWN_ENCODERS.get(Path(str(source)).name) if source else None
    tokens = None
    if known is not None:
        params, dim, tokens = known
        trainable = bool(spec.get("trainable"))
    elif source is None:  # built-in (tiny, wavenet): small, built for real
        options = dict(spec.get("options", {}))
        if options.get("season") == AUTO:  # resolved from the data by training; no size depends on it
            options["season"] = 1
        if options.get("linear_baseline") == AUTO:  # resolved by training; sized as if fitted (buffers only)
            options["linear_baseline"] = True
        if options.get("linear_baseline") and not options.get("linear_lookback"):  # shaped by training; buffers only
            options.update(linear_lookback=max(1, int(options.get("season", 0))), linear_horizon=1)
        encoder = build_encoder(name, config=spec.get("config"), trainable=spec.get("trainable"), **options)
        params, dim, trainable = sum(p.numel() for p in encoder.parameters()), encoder.output_dim, encoder.trainable
        tokens = fixed_tokens(encoder)
    else:
        raise ConfigError(f"model.encoders.{modality}: cannot size {source!r} without loading it; known towers: "
                          f"{sorted(KNOWN_ENCODERS)}")
    with torch.device("meta"):
        built = build_adapter(adapter.sized(modality, dim, n_embd))
    return EncoderPlan(modality, params, trainable, dim, sum(p.numel() for p in built.parameters()),
                       _widest_linear(built), tokens)


def plan_from_config(config: TrainConfig, *, world_size: int | None = None,
                     supervised_fraction: float = 1.0) -> MemoryPlan:
    """The `MemoryPlan` of a training config, without building the model. `world_size` defaults
    to devices x nodes (1 when `runtime.devices` is "auto")."""
    model = config.model
    lm = lm_config_for(config)
    encoders: list[EncoderPlan] = []
    if model.init_from is not None:
        saved = json.loads((Path(model.init_from) / "config.json").read_text())
        for modality, spec in saved.get("encoders", {}).items():
            adapter = AdapterConfig(**{k: v for k, v in saved.get("adapters", {}).get(modality, {}).items()
                                       if k in ("kind", "hidden_mult", "compression")})
            encoders.append(_encoder_plan(modality, spec, adapter, lm.n_embd))
    else:
        for modality, spec in model.encoders.items():
            encoders.append(_encoder_plan(modality, dataclasses.asdict(spec), model.adapters.get(modality, AdapterConfig()),
                                          lm.n_embd))
    return _plan(config, lm, encoders, model.ctx_len, world_size, supervised_fraction)


def plan_from_model(model: ModRWKV, config: TrainConfig, *, world_size: int | None = None,
                    supervised_fraction: float = 1.0) -> MemoryPlan:
    """The `MemoryPlan` of training `model` (built, or on the meta device) as `config` says: what
    `train` logs when it starts."""
    encoders = []
    for modality, encoder in model.encoders.items():
        adapter = model.adapters[modality]
        encoders.append(EncoderPlan(modality, sum(p.numel() for p in encoder.parameters()), encoder.trainable,
                                    encoder.output_dim, sum(p.numel() for p in adapter.parameters()),
                                    _widest_linear(adapter), fixed_tokens(encoder)))
    ctx_len = model.ctx_len or config.model.ctx_len  # a model without a limit trains on what the config allows
    return _plan(config, model.lm.config, encoders, ctx_len, world_size, supervised_fraction)


def fixed_tokens(encoder: torch.nn.Module) -> int | None:
    """Tokens per item of an encoder whose count does not depend on its input (a vision encoder's
    patch grid), like `KNOWN_ENCODERS`' counts; None for audio and series, whose count grows with
    the input's length."""
    tokens = getattr(encoder, "num_tokens", None)
    return tokens if isinstance(tokens, int) else None


def _widest_linear(module: torch.nn.Module) -> int:
    return max((m.out_features for m in module.modules() if isinstance(m, torch.nn.Linear)), default=0)


def _plan(config: TrainConfig, lm: RWKV7Config, encoders: Sequence[EncoderPlan], ctx_len: int,
          world_size: int | None, supervised_fraction: float) -> MemoryPlan:
    rt, opt = config.runtime, config.train
    if world_size is None:
        world_size = (rt.devices if isinstance(rt.devices, int) else 1) * rt.num_nodes
    gpu = rt.accelerator in ("gpu", "cuda")
    return MemoryPlan(
        lm=lm, stage=opt.stage, micro_batch_size=opt.micro_batch_size, ctx_len=ctx_len,
        precision=rt.precision, gradient_checkpointing=opt.gradient_checkpointing, strategy=rt.strategy,
        world_size=world_size, accumulation=max(1, opt.batch_size // (opt.micro_batch_size * world_size)),
        lora_rank=opt.lora.rank, lora_targets=tuple(opt.lora.targets), encoders=tuple(encoders),
        supervised_fraction=supervised_fraction, grad_clip=opt.grad_clip is not None, gpu=gpu,
        # as `select_impl` decides: fp32 training keeps fp32 products (the chunked form) unless TF32 is allowed
        wkv="fla" if gpu and (rt.wkv_impl == "fla" or rt.wkv_impl == "auto" and fla_computes_as_asked(
            torch.float32 if rt.precision == "32" else torch.bfloat16)) else "chunked",
    )
