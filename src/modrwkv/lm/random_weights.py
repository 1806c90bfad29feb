"""Random RWKV-7 weights in the official layout, for parity tests, benchmarks and demos.

Unlike `RWKV7.reset_parameters` (a training initialisation with many zeros), every tensor here is
random, at scales that keep activations and logits of order one, so that numerical comparisons
exercise every term of the equations.
"""

from __future__ import annotations

import torch

from .config import RWKV7Config


def random_official_state_dict(
    config: RWKV7Config, seed: int = 0, layer0_value_lora: bool = True
) -> dict[str, torch.Tensor]:
    """An official-layout state dict; `layer0_value_lora` adds layer 0's unused v0/v1/v2 as some
    official checkpoints do."""
    g = torch.Generator().manual_seed(seed)
    C, V, F = config.n_embd, config.vocab_size, config.dim_ffn

    def normal(*shape: int, std: float = 1.0, mean: float = 0.0) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * std + mean

    def uniform(*shape: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        return torch.rand(*shape, generator=g) * (high - low) + low

    sd: dict[str, torch.Tensor] = {
        "emb.weight": normal(V, C),
        "head.weight": normal(V, C, std=C**-0.5),
        "ln_out.weight": normal(C, std=0.1, mean=1.0),
        "ln_out.bias": normal(C, std=0.1),
        "blocks.0.ln0.weight": normal(C, std=0.1, mean=1.0),
        "blocks.0.ln0.bias": normal(C, std=0.1),
    }
    for i in range(config.n_layer):
        p = f"blocks.{i}."
        for ln in ("ln1", "ln2"):
            sd[p + ln + ".weight"] = normal(C, std=0.1, mean=1.0)
            sd[p + ln + ".bias"] = normal(C, std=0.1)
        att = p + "att."
        for name in ("x_r", "x_w", "x_k", "x_v", "x_a", "x_g"):
            sd[att + name] = uniform(1, 1, C)
        sd[att + "w0"] = uniform(1, 1, C, low=-3.0, high=2.0)
        sd[att + "a0"] = normal(1, 1, C, std=0.5)
        lora = [("w", config.dim_w), ("a", config.dim_a), ("g", config.dim_g)]
        if i > 0 or layer0_value_lora:
            sd[att + "v0"] = normal(1, 1, C, std=0.5)
            lora.append(("v", config.dim_v))
        for name, width in lora:
            sd[att + name + "1"] = normal(C, width, std=C**-0.5)
            sd[att + name + "2"] = normal(width, C, std=width**-0.5)
        sd[att + "k_k"] = uniform(1, 1, C, low=0.5, high=1.5)
        sd[att + "k_a"] = uniform(1, 1, C)
        sd[att + "r_k"] = normal(config.n_head, config.head_size, std=0.2)
        for name in ("receptance", "key", "value", "output"):
            sd[att + name + ".weight"] = normal(C, C, std=C**-0.5)
        sd[att + "ln_x.weight"] = normal(C, std=0.1, mean=1.0)
        sd[att + "ln_x.bias"] = normal(C, std=0.1)
        sd[p + "ffn.x_k"] = uniform(1, 1, C)
        sd[p + "ffn.key.weight"] = normal(F, C, std=C**-0.5)
        sd[p + "ffn.value.weight"] = normal(C, F, std=F**-0.5)
    return sd
