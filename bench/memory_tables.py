"""Prints the estimated memory tables of docs/memory.md (no measurement: the estimator's numbers).

    .venv/bin/python bench/memory_tables.py

Training: per GPU, the RWKV-7 World sizes with the paper's vision recipe (configs/vision-stage*.yaml:
SigLIP2-base, ctx 2048, micro-batch 16 in stage 1 and 8 in stage 2 / LoRA, bf16-mixed), one
process, with and without gradient checkpointing, at two supervised fractions. Inference: weights
and the per-sequence state.
"""

from __future__ import annotations

import dataclasses

import torch

from modrwkv.lm import RWKV7Config
from modrwkv.training.memory import (
    GIB,
    KNOWN_ENCODERS,
    WORLD_SIZES,
    EncoderPlan,
    MemoryPlan,
    estimate_memory,
    lm_parameters,
    state_bytes,
)

RECIPE = {"1": 16, "2": 8, "lora": 8}  # micro-batch per stage (configs/vision-stage1.yaml, -stage2.yaml)
CTX = 2048
FRACTIONS = (1.0, 0.25)


def siglip2(n_embd: int) -> EncoderPlan:
    params, dim, tokens = KNOWN_ENCODERS["siglip2-base-patch16-384"]
    hidden = 4 * n_embd  # hidden_mult 4
    adapter = 2 * dim + dim * hidden + hidden + hidden * n_embd + n_embd  # LayerNorm + 2 linears
    return EncoderPlan("image", params, False, dim, adapter, hidden, tokens)


def training_table(wkv: str) -> str:
    lines = ["| size | stage | micro-batch x ctx | " + " | ".join(
        f"{'ckpt on' if ckpt else 'ckpt off'}, {fraction:.0%} supervised" for ckpt in (False, True)
        for fraction in FRACTIONS) + " |", "|---|---|---|" + "---:|" * 2 * len(FRACTIONS)]
    for size, (layers, width) in WORLD_SIZES.items():
        config = RWKV7Config(n_layer=layers, n_embd=width)
        for stage, batch in RECIPE.items():
            cells = []
            for ckpt in (False, True):
                for fraction in FRACTIONS:
                    plan = MemoryPlan(lm=config, stage=stage, micro_batch_size=batch, ctx_len=CTX,
                                      precision="bf16-mixed", gradient_checkpointing=ckpt,
                                      encoders=(siglip2(width),), supervised_fraction=fraction, gpu=True, wkv=wkv)
                    cells.append(f"{estimate_memory(plan).peak / GIB:.1f}")
            label = {"1": "1", "2": "2", "lora": "LoRA r16"}[stage]
            lines.append(f"| {size} | {label} | {batch} x {CTX} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def inference_table() -> str:
    lines = ["| size | layers x width | parameters | weights bf16 | weights fp32 | state per sequence "
             "(bf16 model) | state (fp32 model) | sequences per GiB of state |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for size, (layers, width) in WORLD_SIZES.items():
        config = RWKV7Config(n_layer=layers, n_embd=width)
        params = lm_parameters(config)
        bf16, fp32 = state_bytes(config, torch.bfloat16), state_bytes(config, torch.float32)
        lines.append(f"| {size} | {layers} x {width} | {params / 1e9:.2f} B | {2 * params / GIB:.2f} GiB | "
                     f"{4 * params / GIB:.2f} GiB | {bf16 / 2**20:.1f} MiB | {fp32 / 2**20:.1f} MiB | "
                     f"{GIB // bf16} |")
    return "\n".join(lines)


def main() -> None:
    print("## training, per GPU, flash-linear-attention WKV\n")
    print(training_table("fla"))
    print("\n## training, per GPU, pure-PyTorch chunked WKV (no fla)\n")
    print(training_table("chunked"))
    print("\n## inference\n")
    print(inference_table())
    print("\n## a stage-2 breakdown (1.5B, micro-batch 8 x 2048, ckpt on, 25% supervised, fla)\n")
    plan = MemoryPlan(lm=RWKV7Config(n_layer=24, n_embd=2048), stage="2", micro_batch_size=8, ctx_len=CTX,
                      precision="bf16-mixed", gradient_checkpointing=True, encoders=(siglip2(2048),),
                      supervised_fraction=0.25, gpu=True, wkv="fla")
    print(estimate_memory(plan).table())
    zero = estimate_memory(dataclasses.replace(plan, strategy="deepspeed_stage_1", world_size=8))
    print(f"\nthe same with ZeRO-1 over 8 GPUs (configs/vision-stage2.yaml): {zero.peak / GIB:.1f} GiB per GPU")


if __name__ == "__main__":
    main()
