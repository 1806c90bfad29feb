"""Adapters: map encoder features into the LM's embedding space, optionally compressing the sequence.

Every adapter reports `output_length(n)` so the prompt processor can reserve exactly the right number
of positions before any network runs (the splicing contract is explicit, never a magic number).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import torch
from torch import nn

AdapterKind = Literal["mlp", "speech"]


def conv_output_length(n: torch.Tensor | int, kernel: int, stride: int, padding: int) -> Any:
    """floor((n + 2p - k) / s) + 1, elementwise for tensors."""
    return (n + 2 * padding - kernel) // stride + 1


def _zero_padding(features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Zeroes positions past each item's length so convolutions read zero padding, as they would
    for that item alone."""
    positions = torch.arange(features.shape[1], device=features.device)
    return features * (positions[None, :] < lengths[:, None]).unsqueeze(-1).to(features.dtype)


@dataclasses.dataclass(frozen=True)
class AdapterConfig:
    """One adapter, from the training YAML (`model.adapters.<modality>`) to the saved model.

    In a YAML file only the choices are given (`kind`, `hidden_mult`, `compression`);
    `ModRWKV.build` fills in the sizes from the encoder and the LM (`sized`), and `config.json` of a
    saved model holds them all."""

    kind: AdapterKind | None = None  # None: "speech" for audio, "mlp" otherwise
    in_dim: int | None = None  # the encoder's feature width
    out_dim: int | None = None  # the LM's embedding width
    hidden_mult: int = 4  # MLP hidden width = hidden_mult * out_dim (2 in paper-era code, 4 later)
    compression: tuple[int, int] | None = None  # (kernel, stride) of the optional Conv1d, MLP only

    def __post_init__(self) -> None:
        if self.kind not in (None, "mlp", "speech"):
            raise ValueError(f"adapter kind must be 'mlp' or 'speech', got {self.kind!r}")
        if self.hidden_mult < 1:
            raise ValueError(f"hidden_mult must be >= 1, got {self.hidden_mult}")
        if self.compression is not None:
            if self.kind == "speech":
                raise ValueError("sequence compression applies to the 'mlp' adapter only")
            if len(self.compression) != 2:
                raise ValueError(f"compression must be (kernel, stride), got {self.compression}")
            kernel, stride = self.compression
            if kernel < 1 or stride < 1:
                raise ValueError(f"compression (kernel, stride) must be positive, got {self.compression}")
            object.__setattr__(self, "compression", (int(kernel), int(stride)))

    def sized(self, modality: str, in_dim: int, out_dim: int) -> AdapterConfig:
        """This config for an encoder of `in_dim` features feeding an LM of width `out_dim`."""
        kind = self.kind or ("speech" if modality == "audio" else "mlp")
        if kind == "speech" and self.compression is not None:
            raise ValueError(f"{modality} adapter: sequence compression applies to the 'mlp' adapter only")
        return dataclasses.replace(self, kind=kind, in_dim=in_dim, out_dim=out_dim)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["compression"] = None if self.compression is None else list(self.compression)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdapterConfig:
        data = dict(data)
        if data.get("compression") is not None:
            data["compression"] = tuple(data["compression"])
        return cls(**data)


class MLPAdapter(nn.Module):
    """Vision / time-series adapter: [Conv1d(k, s) compression] -> Linear -> ReLU -> Linear, then
    y + LayerNorm(y). Parameter names follow the authors' released checkpoints (`conv`, `mlp.0`,
    `mlp.2`, `pre_norm`)."""

    def __init__(self, config: AdapterConfig) -> None:
        super().__init__()
        self.config = config
        if config.compression is not None:
            kernel, stride = config.compression
            self.conv = nn.Conv1d(config.in_dim, config.in_dim, kernel, stride=stride, bias=False)
        hidden = config.hidden_mult * config.out_dim
        self.mlp = nn.Sequential(nn.Linear(config.in_dim, hidden), nn.ReLU(), nn.Linear(hidden, config.out_dim))
        self.pre_norm = nn.LayerNorm(config.out_dim)

    def output_length(self, n: Any) -> Any:
        if self.config.compression is None:
            return n
        kernel, stride = self.config.compression
        return conv_output_length(n, kernel, stride, 0)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features [B, L, in_dim], lengths [B] -> ([B, L', out_dim], lengths')."""
        if self.config.compression is not None:
            features = self.conv(_zero_padding(features, lengths).transpose(1, 2)).transpose(1, 2)
        y = self.mlp(features)
        return y + self.pre_norm(y), self.output_length(lengths)


class SpeechAdapter(nn.Module):
    """Speech adapter: Conv1d(in -> 2d, kernel 3, stride 2, padding 2) halves the frame rate, then
    Linear(2d -> 2d) -> ReLU -> Linear(2d -> d); no LayerNorm residual."""

    KERNEL, STRIDE, PADDING = 3, 2, 2

    def __init__(self, config: AdapterConfig) -> None:
        super().__init__()
        self.config = config
        wide = 2 * config.out_dim
        self.conv = nn.Conv1d(config.in_dim, wide, self.KERNEL, stride=self.STRIDE, padding=self.PADDING)
        self.mlp = nn.Sequential(nn.Linear(wide, wide), nn.ReLU(), nn.Linear(wide, config.out_dim))

    def output_length(self, n: Any) -> Any:
        return conv_output_length(n, self.KERNEL, self.STRIDE, self.PADDING)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv(_zero_padding(features, lengths).transpose(1, 2)).transpose(1, 2)
        return self.mlp(x), self.output_length(lengths)


def build_adapter(config: AdapterConfig) -> MLPAdapter | SpeechAdapter:
    if config.kind is None or config.in_dim is None or config.out_dim is None:
        raise ValueError(f"adapter config {config} is not sized: use config.sized(modality, in_dim, out_dim)")
    return MLPAdapter(config) if config.kind == "mlp" else SpeechAdapter(config)


__all__ = ["AdapterConfig", "MLPAdapter", "SpeechAdapter", "build_adapter", "conv_output_length"]
