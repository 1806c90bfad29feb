"""LoRA on the RWKV-7 LM's linear layers: low-memory fine-tuning, saved apart, merged back.

`apply_lora` replaces each targeted `nn.Linear` by a `LoRALinear` that keeps the frozen original
and adds `scale * B(A(dropout(x)))` (A: rank x in, Kaiming-initialised; B: out x rank, zeros, so
training starts from the unchanged model). The LoRA weights are saved to `lora.safetensors` +
`lora.json` beside a normal `save_pretrained` folder of the base model (`lora_unwrapped` gives the
base module tree back for that), and `merge_lora` folds W + scale * B @ A into plain linears.
LoRA is applied after the base weights are loaded, never before (a bug of the authors' forks).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from ..lm.errors import CheckpointError
from ..lm.files import read_json_object, read_safetensors
from ..textfiles import write_text_atomically
from ..weightfiles import save_safetensors
from .config import ConfigError, LoRAConfig, _build

LORA_WEIGHTS = "lora.safetensors"
LORA_CONFIG = "lora.json"


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float) -> None:
        super().__init__()
        self.base = base
        self.base.requires_grad_(False)
        self.rank = rank
        self.scale = alpha / rank
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, **factory))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, **factory))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @property
    def weight(self) -> torch.Tensor:
        """The base weight, for code that reads `.weight` of the layer it replaced."""
        return self.base.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (self.dropout(x) @ self.lora_a.t() @ self.lora_b.t()) * self.scale

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """A plain linear computing the same function (dropout aside)."""
        delta = (self.lora_b.float() @ self.lora_a.float()) * self.scale
        merged = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None,
                           device=self.base.weight.device, dtype=self.base.weight.dtype)
        merged.weight.copy_((self.base.weight.float() + delta).to(self.base.weight.dtype))
        if self.base.bias is not None:
            merged.bias.copy_(self.base.bias)
        merged.weight.requires_grad_(self.base.weight.requires_grad)
        return merged


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    """Puts `module` at the dotted path `name` under `root`."""
    parent_name, _, attr = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, attr, module)


def _matches(name: str, targets: list[str]) -> bool:
    return any(name == t or name.endswith("." + t) for t in targets)


def apply_lora(lm: nn.Module, config: LoRAConfig) -> list[str]:
    """Wraps the targeted linears of `lm` in place; returns their names. Raises if a target
    matches nothing (a typo would otherwise train nothing)."""
    wrapped = []
    for name, module in list(lm.named_modules()):
        if isinstance(module, nn.Linear) and _matches(name, config.targets):
            wrapper = LoRALinear(module, config.rank, config.alpha, config.dropout)
            _set_submodule(lm, name, wrapper.train(module.training))  # an eval-mode model stays without dropout
            wrapped.append(name)
    unmatched = [t for t in config.targets if not any(_matches(n, [t]) for n in wrapped)]
    if unmatched:
        raise ValueError(f"LoRA targets {unmatched} match no linear layer of the LM")
    return wrapped


def lora_layers(module: nn.Module) -> dict[str, LoRALinear]:
    return {name: m for name, m in module.named_modules() if isinstance(m, LoRALinear)}


@contextlib.contextmanager
def lora_unwrapped(module: nn.Module) -> Iterator[nn.Module]:
    """Temporarily puts the base linears back, so `state_dict` / `save_pretrained` see the
    original module tree and key names."""
    layers = lora_layers(module)
    for name, layer in layers.items():
        _set_submodule(module, name, layer.base)
    try:
        yield module
    finally:
        for name, layer in layers.items():
            _set_submodule(module, name, layer)


def merge_lora(module: nn.Module) -> int:
    """Replaces every LoRALinear by its merged linear, in place; returns how many were merged."""
    layers = lora_layers(module)
    for name, layer in layers.items():
        _set_submodule(module, name, layer.merged())
    return len(layers)


def lora_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """`{"<layer>.lora_a": ..., "<layer>.lora_b": ...}` for every LoRA layer, names relative to `module`."""
    tensors = {}
    for name, layer in lora_layers(module).items():
        tensors[f"{name}.lora_a"] = layer.lora_a.detach().contiguous().cpu()
        tensors[f"{name}.lora_b"] = layer.lora_b.detach().contiguous().cpu()
    return tensors


def save_lora(module: nn.Module, config: LoRAConfig, folder: str | Path) -> None:
    folder = Path(folder)
    save_safetensors(lora_state_dict(module), str(folder / LORA_WEIGHTS))
    write_text_atomically(folder / LORA_CONFIG, json.dumps(dataclasses.asdict(config), indent=2) + "\n")


def read_lora_config(folder: str | Path) -> LoRAConfig | None:
    path = Path(folder) / LORA_CONFIG
    if not path.exists():
        return None
    try:
        return _build(LoRAConfig, read_json_object(path), "")
    except ConfigError as exc:  # a damaged or hand-edited file: name it, with the field
        raise CheckpointError(f"{path}: {exc}") from None


def load_lora(module: nn.Module, folder: str | Path) -> LoRAConfig:
    """Applies the LoRA saved in `folder` to `module` (an LM with base weights already loaded)."""
    config = read_lora_config(folder)
    if config is None:
        raise FileNotFoundError(f"{folder}: no {LORA_CONFIG}; not a LoRA checkpoint")
    apply_lora(module, config)
    tensors = read_safetensors(Path(folder) / LORA_WEIGHTS)
    expected = {f"{n}.{p}" for n in lora_layers(module) for p in ("lora_a", "lora_b")}
    if set(tensors) != expected:
        missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise ValueError(f"{folder}/{LORA_WEIGHTS}: keys differ from the LoRA layers: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    with torch.no_grad():
        for name, layer in lora_layers(module).items():
            layer.lora_a.copy_(tensors[f"{name}.lora_a"])
            layer.lora_b.copy_(tensors[f"{name}.lora_b"])
    return config
