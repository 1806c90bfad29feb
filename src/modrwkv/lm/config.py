"""RWKV-7 model configuration, inferred from checkpoint shapes rather than hard-coded sizes."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..textfiles import write_text_atomically

LAYER_NORM_EPS = 1e-5
# The official implementations use 64e-5 for the per-head GroupNorm (1e-5 * head_size_divisor**2
# with divisor 8), independently of the head size; parity requires the same constant.
GROUP_NORM_EPS = 64e-5
# Layer 0's value-residual LoRA is unused (layer 0 takes v_first itself); official files carry it.
LAYER0_UNUSED_KEYS = ("blocks.0.att.v0", "blocks.0.att.v1", "blocks.0.att.v2")


def lora_width(n_embd: int, factor: float, power: float) -> int:
    """The LoRA width RWKV-LM uses when it initialises a new model: a multiple of 32, at least 32."""
    return max(32, int(round(factor * n_embd**power / 32)) * 32)


@dataclasses.dataclass(frozen=True)
class RWKV7Config:
    """Sizes of an RWKV-7 LM. Build one with `from_state_dict` for real checkpoints."""

    n_layer: int
    n_embd: int
    vocab_size: int = 65536
    head_size: int = 64
    dim_w: int | None = None  # LoRA widths; None -> RWKV-LM's default for n_embd
    dim_a: int | None = None
    dim_v: int | None = None
    dim_g: int | None = None
    dim_ffn: int | None = None  # None -> 4 * n_embd

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            optional = field.default is None
            if (value is None and not optional) or (
                value is not None and (isinstance(value, bool) or not isinstance(value, int))
            ):
                kind = "an integer or null" if optional else "an integer"
                raise ValueError(f"RWKV7Config: {field.name} must be {kind}, got {value!r}")
            if value is not None and value < 1:
                raise ValueError(f"RWKV7Config: {field.name} must be positive, got {value}")
        if self.n_embd % self.head_size:
            raise ValueError(
                f"RWKV7Config: n_embd={self.n_embd} is not a multiple of head_size={self.head_size}"
            )
        defaults = {
            "dim_w": lora_width(self.n_embd, 1.8, 0.5),
            "dim_a": lora_width(self.n_embd, 1.8, 0.5),
            "dim_v": lora_width(self.n_embd, 1.3, 0.5),
            "dim_g": lora_width(self.n_embd, 0.6, 0.8),
            "dim_ffn": 4 * self.n_embd,
        }
        for name, value in defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)

    @property
    def n_head(self) -> int:
        return self.n_embd // self.head_size

    def state_numel(self) -> int:
        """Numbers in the recurrent state of one sequence: L * (2C + C*N), independent of length."""
        return self.n_layer * (2 * self.n_embd + self.n_embd * self.head_size)

    def num_parameters(self) -> int:
        c, v = self.n_embd, self.vocab_size
        att = 4 * c * c + 2 * c * (self.dim_w + self.dim_a + self.dim_v + self.dim_g) + 16 * c
        ffn = 2 * c * self.dim_ffn + c
        return 2 * v * c + self.n_layer * (att + ffn + 4 * c) + 4 * c

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RWKV7Config:
        if not isinstance(data, Mapping):
            raise ValueError(f"RWKV7Config: expected an object of sizes, got {type(data).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ValueError(f"RWKV7Config: unknown field(s) {unknown}")
        missing = sorted(f.name for f in dataclasses.fields(cls)
                         if f.default is dataclasses.MISSING and f.name not in data)
        if missing:
            raise ValueError(f"RWKV7Config: missing field(s) {missing}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        write_text_atomically(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> RWKV7Config:
        return cls.from_dict(json.loads(Path(path).read_text()))

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> RWKV7Config:
        """Reads every size from the shapes of an official-layout state dict."""
        required = ("emb.weight", "blocks.0.att.r_k", "blocks.0.att.w1", "blocks.0.att.a1",
                    "blocks.0.att.g1", "blocks.0.ffn.key.weight")
        missing = [k for k in required if k not in state_dict]
        if missing:
            raise ValueError(
                f"not an RWKV-7 checkpoint in the official layout: missing key(s) {missing}"
            )
        layers = {int(m.group(1)) for k in state_dict if (m := re.match(r"blocks\.(\d+)\.", k))}
        n_layer = max(layers) + 1
        vocab_size, n_embd = state_dict["emb.weight"].shape
        n_head, head_size = state_dict["blocks.0.att.r_k"].shape
        if n_head * head_size != n_embd:
            raise ValueError(
                f"blocks.0.att.r_k has shape {tuple(state_dict['blocks.0.att.r_k'].shape)} but "
                f"emb.weight width is {n_embd}"
            )
        dim_v = None
        for i in range(1, n_layer):  # layer 0 has no value-residual LoRA
            if f"blocks.{i}.att.v1" in state_dict:
                dim_v = state_dict[f"blocks.{i}.att.v1"].shape[1]
                break
        else:
            if "blocks.0.att.v1" in state_dict:
                dim_v = state_dict["blocks.0.att.v1"].shape[1]
        return cls(
            n_layer=n_layer,
            n_embd=n_embd,
            vocab_size=vocab_size,
            head_size=head_size,
            dim_w=state_dict["blocks.0.att.w1"].shape[1],
            dim_a=state_dict["blocks.0.att.a1"].shape[1],
            dim_v=dim_v,
            dim_g=state_dict["blocks.0.att.g1"].shape[1],
            dim_ffn=state_dict["blocks.0.ffn.key.weight"].shape[0],
        )
