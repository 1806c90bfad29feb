"""The RWKV-7 "Goose" language model, one module per box of the architecture diagram.

Parameter names and shapes are exactly those of the official BlinkDL checkpoints
(`emb.weight`, `blocks.{i}.att.x_r`, ...), so an official state dict loads without renaming.
Equations (per layer, head size N): see ../../../shared/spec and `ops/` for the WKV recurrence.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .config import GROUP_NORM_EPS, LAYER_NORM_EPS, RWKV7Config
from .ops import Impl, wkv7, wkv_state_buffer
from .ops.decode import decode_blocks
from .ops.linear import WeightFormat, WeightLayout, linear, split_count, use_weight_format, use_weight_layout, weight_format_of
from .state import RWKV7State

log = logging.getLogger(__name__)

# The initial state's file in a model folder (written by `save_pretrained` / `save_model`).
INITIAL_STATE_NAME = "state.safetensors"

DECAY_SCALE = math.exp(-0.5)  # log w = -e^{-0.5} * sigmoid(w~), so w lies in (0.545, 1)

LogitsMode = Literal["all", "last", "none"]


@dataclasses.dataclass
class TokenShiftPlan:
    """Where each position's "previous token" lives when some positions are padding.

    Indexes refer to the sequence [carried state, x_0, ..., x_{T-1}]: index 0 is the carried state.
    A padded position neither becomes anyone's previous token nor changes the recurrent state.
    """

    valid: torch.Tensor  # [B, T, 1] float: 1 for real tokens, 0 for padding
    prev_index: torch.Tensor  # [B, T]
    final_index: torch.Tensor  # [B]

    @classmethod
    def from_mask(cls, mask: torch.Tensor, dtype: torch.dtype) -> TokenShiftPlan:
        mask = mask.bool()
        B, T = mask.shape
        positions = torch.arange(T, device=mask.device).expand(B, T)
        last_valid = torch.where(mask, positions, -1).cummax(dim=1).values + 1  # 0 = none yet
        prev_index = torch.cat([last_valid.new_zeros(B, 1), last_valid[:, :-1]], dim=1)
        return cls(mask.unsqueeze(-1).to(dtype), prev_index, last_valid[:, -1])

    def shift(self, x: torch.Tensor, prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        extended = torch.cat([prev.unsqueeze(1), x], dim=1)
        index = self.prev_index.unsqueeze(-1).expand(-1, -1, x.shape[-1])
        rows = torch.arange(x.shape[0], device=x.device)
        return extended.gather(1, index) - x, extended[rows, self.final_index]


def token_shift(
    x: torch.Tensor, prev: torch.Tensor, plan: TokenShiftPlan | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (x[t-1] - x[t], the new carried token); x[-1] is the carried `prev`."""
    if plan is not None:
        return plan.shift(x, prev)
    if x.shape[1] == 1:
        return prev.unsqueeze(1) - x, x[:, -1]
    return torch.cat([prev.unsqueeze(1), x[:, :-1]], dim=1) - x, x[:, -1]


class TimeMix(nn.Module):
    """RWKV-7 attention replacement: a per-head fast-weight state updated by a generalized delta rule."""

    def __init__(self, config: RWKV7Config, layer_id: int) -> None:
        super().__init__()
        C, H, N = config.n_embd, config.n_head, config.head_size
        self.layer_id, self.n_head, self.head_size = layer_id, H, N

        def vector() -> nn.Parameter:
            return nn.Parameter(torch.empty(1, 1, C))

        self.x_r, self.x_w, self.x_k, self.x_v, self.x_a, self.x_g = (vector() for _ in range(6))
        self.w0, self.a0 = vector(), vector()
        self.w1, self.w2 = nn.Parameter(torch.empty(C, config.dim_w)), nn.Parameter(torch.empty(config.dim_w, C))
        self.a1, self.a2 = nn.Parameter(torch.empty(C, config.dim_a)), nn.Parameter(torch.empty(config.dim_a, C))
        if layer_id > 0:  # layer 0 defines v_first, so it has no value-residual gate
            self.v0 = vector()
            self.v1, self.v2 = nn.Parameter(torch.empty(C, config.dim_v)), nn.Parameter(torch.empty(config.dim_v, C))
        self.g1, self.g2 = nn.Parameter(torch.empty(C, config.dim_g)), nn.Parameter(torch.empty(config.dim_g, C))
        self.k_k, self.k_a = vector(), vector()
        self.r_k = nn.Parameter(torch.empty(H, N))
        self.receptance = nn.Linear(C, C, bias=False)
        self.key = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(C, C, bias=False)
        self.output = nn.Linear(C, C, bias=False)
        self.ln_x = nn.GroupNorm(H, C, eps=GROUP_NORM_EPS)

    def forward(
        self,
        x: torch.Tensor,
        shift: torch.Tensor,
        wkv_state: torch.Tensor,
        v_first: torch.Tensor | None,
        plan: TokenShiftPlan | None,
        impl: Impl,
        splits: int = 1,
        wkv_out: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        B, T, C = x.shape
        H, N = self.n_head, self.head_size
        xx, new_shift = token_shift(x, shift, plan)
        # the six token-shift interpolations as one op ([6, B, T, C]), not six: decoding a token runs
        # ~150 small ops per layer, whose dispatch costs add up to ~15% of a batch-1 step
        mixes = torch.cat([self.x_r, self.x_w, self.x_k, self.x_v, self.x_a, self.x_g]).unsqueeze(1)
        xr, xw, xk, xv, xa, xg = torch.addcmul(x, xx, mixes).unbind(0)

        r = linear(self.receptance, xr, splits)
        k = linear(self.key, xk, splits)
        v = linear(self.value, xv, splits)
        w_logit = self.w0 + torch.tanh(xw @ self.w1) @ self.w2
        log_w = -DECAY_SCALE * torch.sigmoid(w_logit.float())
        a = torch.sigmoid(self.a0 + (xa @ self.a1) @ self.a2)
        g = torch.sigmoid(xg @ self.g1) @ self.g2

        kk = F.normalize((k * self.k_k).view(B, T, H, N), dim=-1, p=2.0, eps=1e-12).view(B, T, C)
        k = k * (1 + (a - 1) * self.k_a)
        if self.layer_id == 0:
            v_first = v
        else:
            v = torch.lerp(v, v_first, torch.sigmoid(self.v0 + (xv @ self.v1) @ self.v2).to(v.dtype))

        removal, replacement = -kk, kk * a
        if plan is not None:  # padding: decay 1, nothing written, nothing removed
            log_w, k, replacement = log_w * plan.valid, k * plan.valid, replacement * plan.valid

        heads = lambda t: t.view(B, T, H, N)  # noqa: E731
        y, new_wkv = wkv7(heads(r), heads(log_w), heads(k), heads(v), heads(removal), heads(replacement), wkv_state, impl, wkv_out)

        y = self.ln_x(y.reshape(B * T, C)).view(B, T, H, N)
        y = torch.addcmul(y, (heads(r) * heads(k) * self.r_k).sum(dim=-1, keepdim=True), heads(v)).view(B, T, C)
        return linear(self.output, y * g, splits), new_shift, new_wkv, v_first


class ChannelMix(nn.Module):
    """The feed-forward half of a block: token shift, then relu(.)^2 through a 4C hidden layer."""

    def __init__(self, config: RWKV7Config) -> None:
        super().__init__()
        C = config.n_embd
        self.x_k = nn.Parameter(torch.empty(1, 1, C))
        self.key = nn.Linear(C, config.dim_ffn, bias=False)
        self.value = nn.Linear(config.dim_ffn, C, bias=False)

    def forward(
        self, x: torch.Tensor, shift: torch.Tensor, plan: TokenShiftPlan | None, splits: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        xx, new_shift = token_shift(x, shift, plan)
        hidden = torch.relu(linear(self.key, torch.addcmul(x, xx, self.x_k), splits)).square()
        return linear(self.value, hidden, splits), new_shift


class Block(nn.Module):
    def __init__(self, config: RWKV7Config, layer_id: int) -> None:
        super().__init__()
        C = config.n_embd
        if layer_id == 0:
            self.ln0 = nn.LayerNorm(C, eps=LAYER_NORM_EPS)
        self.ln1 = nn.LayerNorm(C, eps=LAYER_NORM_EPS)
        self.ln2 = nn.LayerNorm(C, eps=LAYER_NORM_EPS)
        self.att = TimeMix(config, layer_id)
        self.ffn = ChannelMix(config)

    def forward(
        self,
        x: torch.Tensor,
        v_first: torch.Tensor | None,
        att_shift: torch.Tensor,
        wkv_state: torch.Tensor,
        ffn_shift: torch.Tensor,
        plan: TokenShiftPlan | None,
        impl: Impl,
        splits: int = 1,
        wkv_out: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        if hasattr(self, "ln0"):
            # in the block that owns it (as RWKV-LM does): FSDP gathers a block's sharded weights only
            # for that block's forward, and ln0 called from RWKV7.forward read an empty shard on rank 1
            x = self.ln0(x)
        dx, att_shift, wkv_state, v_first = self.att(
            self.ln1(x), att_shift, wkv_state, v_first, plan, impl, splits, wkv_out
        )
        x = x + dx
        dx, ffn_shift = self.ffn(self.ln2(x), ffn_shift, plan, splits)
        return x + dx, v_first, att_shift, wkv_state, ffn_shift


class RWKV7Output(NamedTuple):
    """A named tuple for DeepSpeed ZeRO-3, as `ModRWKVOutput` (multimodal/model.py) says."""

    logits: torch.Tensor | None  # [B, T, V] ("all"), [B, V] ("last") or None ("none")
    state: RWKV7State
    hidden: torch.Tensor  # final normalised hidden states [B, T, C] (the head's input)


class RWKV7(nn.Module):
    """RWKV-7 LM. `forward` reads token ids or input embeddings, carrying an optional state."""

    def __init__(self, config: RWKV7Config) -> None:
        super().__init__()
        self.config = config
        self.emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_out = nn.LayerNorm(config.n_embd, eps=LAYER_NORM_EPS)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.gradient_checkpointing = False
        self.wkv_impl: Impl = "auto"
        # One-token steps without autograd (decoding) run `ops.decode.decode_blocks`, the same
        # equations in fewer torch calls; False runs them through the modules below (the reference).
        self.fast_decode = True
        # The learned initial WKV state of state tuning, [L, H, N(value), N(key)] fp32, or None (zeros).
        # Saved apart from the weights (INITIAL_STATE_NAME), see `weights()`.
        self.initial_wkv: nn.Parameter | None
        self.register_parameter("initial_wkv", None)
        if not any(p.is_meta for p in self.parameters()):
            self.reset_parameters()
        self.use_weight_layout("decode")  # on the meta device too: loaders copy weights into this layout

    def use_weight_layout(self, layout: WeightLayout) -> None:
        """Stores every linear weight for decoding ("decode", column-major: the fresh and loaded
        default) or for training ("training", row-major); values and `state_dict()` keys stay the
        same. Training code switches for the length of a run. See `ops.linear.use_weight_layout`."""
        use_weight_layout(self, layout)

    def use_weight_format(self, weight_format: WeightFormat) -> RWKV7:
        """Stores the weight matrices as "native" (unchanged), "bf16" or "int8" (weight-only, one
        scale per output channel) for faster inference; the rest keeps the model's dtype.
        In place, not undoable; see `ops.linear.use_weight_format`."""
        return use_weight_format(self, weight_format)

    @property
    def weight_format(self) -> WeightFormat:
        return weight_format_of(self)

    @property
    def device(self) -> torch.device:
        return self.ln_out.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the model computes in (weight matrices may be stored narrower)."""
        return self.ln_out.weight.dtype

    def init_state(self, batch_size: int = 1) -> RWKV7State:
        """The state every sequence starts from: zeros, with the learned initial WKV state (state
        tuning) in every row when the model has one. Differentiable with respect to that state."""
        state = RWKV7State.zeros(self.config, batch_size, self.device, self.dtype)
        if self.initial_wkv is not None:
            state.wkv = self.initial_wkv.float().unsqueeze(1).expand_as(state.wkv).clone()
        return state

    def enable_state_tuning(self) -> nn.Parameter:
        """Makes the initial WKV state a trainable parameter (zeros, so training starts from the
        unchanged model; a state already set, e.g. loaded, is kept) and returns it."""
        if self.initial_wkv is None:
            L, H, N = self.config.n_layer, self.config.n_head, self.config.head_size
            self.initial_wkv = nn.Parameter(torch.zeros(L, H, N, N, device=self.device, dtype=torch.float32))
        return self.initial_wkv.requires_grad_(True)

    def set_initial_state(self, wkv: torch.Tensor | None) -> None:
        """Sets the initial WKV state [L, H, N(value), N(key)] (frozen until `enable_state_tuning`),
        or removes it (None: sequences start from zeros). Raises ValueError naming both shapes when
        it does not fit this model."""
        if wkv is None:
            self.initial_wkv = None
            return
        L, H, N = self.config.n_layer, self.config.n_head, self.config.head_size
        if tuple(wkv.shape) != (L, H, N, N):
            raise ValueError(f"an initial WKV state of shape {tuple(wkv.shape)} does not fit this model, which needs "
                             f"{(L, H, N, N)} (layers, heads, head size, head size)")
        data = wkv.detach().to(device=self.device, dtype=torch.float32).clone()
        self.initial_wkv = nn.Parameter(data, requires_grad=False)

    def load_initial_state(self, path: str | Path) -> None:
        """Loads an initial state saved by `save_initial_state` (or `ModRWKV.save_pretrained`, as
        INITIAL_STATE_NAME in the model folder). Raises ValueError naming the file and, for a state of
        another model, both shapes."""
        state = RWKV7State.load(path, self.config, self.device)
        if state.batch_size != 1 or state.att_shift.any() or state.ffn_shift.any():
            raise ValueError(f"{path}: not an initial state (one row, token-shift vectors zero) but a state saved "
                             f"after reading text ({state.batch_size} row(s)); continue from it with "
                             "`generate(..., state=RWKV7State.load(path))` or `--load-state` instead")
        self.set_initial_state(state.wkv[:, 0])
        log.info("initial state loaded from %s", path)

    def save_initial_state(self, path: str | Path) -> None:
        """Writes the initial state as a one-row `RWKV7State` file (zero token-shift vectors)."""
        if self.initial_wkv is None:
            raise ValueError("this model has no initial state to save (train one with stage 'state')")
        state = RWKV7State.zeros(self.config, 1, "cpu")
        state.wkv = self.initial_wkv.detach().float().cpu().unsqueeze(1)
        state.save(path, metadata={"kind": "initial state (state tuning)"})

    def weights(self) -> dict[str, torch.Tensor]:
        """The tensors a checkpoint holds: `state_dict()` in the official layout, without the
        initial state, which is saved apart (`save_initial_state`)."""
        return {k: v for k, v in self.state_dict().items() if k != "initial_wkv"}

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """RWKV-LM's initialisation for training from scratch (layer-dependent mixes and decays)."""
        cfg = self.config
        C, L = cfg.n_embd, cfg.n_layer
        ddd = torch.arange(C, dtype=torch.float32) / C
        for i, block in enumerate(self.blocks):
            r0 = i / (L - 1) if L > 1 else 0.0  # 0 -> 1 over depth
            r1 = 1.0 - i / L  # 1 -> ~0 over depth
            att = block.att
            for name, p in (("x_r", 0.2), ("x_w", 0.9), ("x_k", 0.7), ("x_v", 0.7), ("x_a", 0.9), ("x_g", 0.2)):
                getattr(att, name).copy_((1.0 - ddd.pow(p * r1)).view(1, 1, C))
            n = torch.arange(C, dtype=torch.float32)
            decay = -7 + 5 * (n / max(C - 1, 1)).pow(0.85 + r0**0.5)
            att.w0.copy_((decay + 0.5).view(1, 1, C))
            att.a0.zero_()
            lora_pairs = [(att.w1, att.w2), (att.a1, att.a2), (att.g1, att.g2)]
            if i > 0:
                att.v0.fill_(1.0)
                lora_pairs.append((att.v1, att.v2))
            for down, up in lora_pairs:
                down.zero_()
                nn.init.orthogonal_(up, gain=0.1)
            att.k_k.fill_(0.85)
            att.k_a.fill_(1.0)
            att.r_k.fill_(-0.04)
            bound = 0.5 / math.sqrt(C)
            att.receptance.weight.uniform_(-bound, bound)
            att.key.weight.uniform_(-0.1 * bound, 0.1 * bound)
            att.value.weight.uniform_(-bound, bound)
            att.output.weight.zero_()
            att.ln_x.weight.fill_(((1 + i) / L) ** 0.7)
            att.ln_x.bias.zero_()
            block.ffn.x_k.copy_((1.0 - ddd.pow(r1**4)).view(1, 1, C))
            nn.init.orthogonal_(block.ffn.key.weight)
            block.ffn.value.weight.zero_()
            for ln in (block.ln1, block.ln2, getattr(block, "ln0", None)):
                if ln is not None:
                    ln.reset_parameters()
        self.emb.weight.uniform_(-1e-4, 1e-4)
        self.ln_out.reset_parameters()
        gain = 0.5 * math.sqrt(cfg.vocab_size / C) if cfg.vocab_size > C else 0.5
        nn.init.orthogonal_(self.head.weight, gain=gain)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings, the same space that multimodal adapters write into."""
        return self.emb(input_ids)

    def _run_blocks(
        self, x: torch.Tensor, state: RWKV7State, plan: TokenShiftPlan | None, splits: int, new_wkv: torch.Tensor | None
    ) -> tuple[torch.Tensor, RWKV7State]:
        """x [B, T, C] (embeddings; block 0 applies `ln0`) through every block: (the last block's output, the
        new state)."""
        att_shifts, wkvs, ffn_shifts = [], [], []
        v_first = None
        for i, block in enumerate(self.blocks):
            wkv_out = None if new_wkv is None else new_wkv[i]
            args = (x, v_first, state.att_shift[i], state.wkv[i], state.ffn_shift[i], plan, self.wkv_impl, splits, wkv_out)
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x, v_first, att_shift, wkv_state, ffn_shift = checkpoint(block, *args, use_reentrant=False)
            else:
                x, v_first, att_shift, wkv_state, ffn_shift = block(*args)
            att_shifts.append(att_shift)
            wkvs.append(wkv_state)
            ffn_shifts.append(ffn_shift)
        wkv = torch.stack(wkvs) if new_wkv is None else new_wkv
        return x, RWKV7State(torch.stack(att_shifts), wkv, torch.stack(ffn_shifts))

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        *,
        inputs_embeds: torch.Tensor | None = None,
        state: RWKV7State | None = None,
        attention_mask: torch.Tensor | None = None,
        logits: LogitsMode = "all",
    ) -> RWKV7Output:
        """Runs a batch of sequences from `state` (when None, `init_state()`: zeros, or the tuned
        initial state).

        input_ids [B, T] or inputs_embeds [B, T, C] (exactly one). attention_mask [B, T], true for
        real positions: padded positions leave each row's state untouched, wherever they are.
        logits: "all" positions, the "last" real position of each row, or "none" (use `hidden`).
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if logits not in ("all", "last", "none"):
            raise ValueError(f"logits must be 'all', 'last' or 'none', got {logits!r}")
        if input_ids is not None:
            if input_ids.dim() != 2:
                raise ValueError(f"input_ids must be [batch, time], got shape {tuple(input_ids.shape)}")
            if input_ids.numel():
                low, high = (int(t) for t in torch.aminmax(input_ids))
                if low < 0 or high >= self.config.vocab_size:
                    raise ValueError(f"token ids must lie in [0, {self.config.vocab_size}), got [{low}, {high}]")
            x = self.embed(input_ids)
        else:
            x = inputs_embeds
            if x.dim() != 3 or x.shape[-1] != self.config.n_embd:
                raise ValueError(
                    f"inputs_embeds must be [batch, time, {self.config.n_embd}], got shape {tuple(x.shape)}"
                )
            x = x.to(self.dtype)
        B, T, _ = x.shape
        if T == 0:
            raise ValueError("cannot run an empty sequence (time dimension is 0)")
        if state is None:
            state = self.init_state(B)
        elif state.batch_size != B:
            raise ValueError(f"state has batch size {state.batch_size} but the input has {B}")
        plan = None
        if attention_mask is not None:
            if attention_mask.shape != (B, T):
                raise ValueError(f"attention_mask must have shape {(B, T)}, got {tuple(attention_mask.shape)}")
            plan = TokenShiftPlan.from_mask(attention_mask.to(x.device), x.dtype)

        splits = split_count(x)
        new_wkv = wkv_state_buffer(state.wkv, x.dtype)  # layer i writes its new WKV state into new_wkv[i]
        if (self.fast_decode and T == 1 and new_wkv is not None and plan is None and x.dtype == torch.float32
                and self.wkv_impl in ("auto", "recurrent")):
            x, att_shift, ffn_shift = decode_blocks(self.blocks, x[:, 0], state.att_shift, state.wkv, state.ffn_shift,
                                                    new_wkv, splits)
            x = x.unsqueeze(1)
            new_state = RWKV7State(att_shift, new_wkv, ffn_shift)
        else:
            x, new_state = self._run_blocks(x, state, plan, splits, new_wkv)

        if logits == "last":
            if plan is None:
                x = x[:, -1:]
            else:
                last = (plan.final_index - 1).clamp(min=0)
                x = x[torch.arange(B, device=x.device), last].unsqueeze(1)
        hidden = self.ln_out(x)
        out = None
        if logits != "none":
            out = linear(self.head, hidden, splits)
            if logits == "last":
                out = out[:, 0]
        return RWKV7Output(out, new_state, hidden)
