"""GPU numbers for docs/benchmarks.md, on one CUDA GPU (run by bench/gpu_check.sh; NOT yet run).

    python bench/bench_gpu.py --json out.json [--budget SECONDS] [--parts train,infer,strategies]
                              [--wkv auto|chunked|fla] [--autotune-configs N]

Parts, each recorded even if a later one fails (the JSON is rewritten after every part):
  train       0.1B shape (12 x 768, vocab 65536): training steps with bf16 autocast, fp32 master
              weights and fused AdamW, 8 x 1024 tokens per step, fla's chunk kernel (wkv_impl
              "auto"): tokens/s over timed steps after warm-up, peak CUDA memory.
  infer       0.1B and 1.5B (24 x 2048) shapes, bf16 weights: prefill of 1 x 1024 and 8 x 1024
              tokens (last-position logits), then greedy decoding at batch 1 and 16 (one token per
              step, fla's fused-recurrent kernel): tokens/s, peak memory.
  strategies  the tiny multimodal training of tests/test_gpu.py, 4 steps, with strategy "auto" (plain),
              "fsdp" and "deepspeed_stage_{1,2,3}" on one GPU: the loss lists and their largest
              relative difference to plain training (expected ~0: one GPU holds every shard).
`--autotune-configs N`: fla's kernels are tuned among N of their configurations each (spread from the
least shared memory to the most, tests/triton_autotune.py) instead of all of them, whose compiling took
the whole first GPU run; recorded in the JSON. Weights are random (values do not change the speed). Timings: wall clock between CUDA syncs, median
of repeats after a warm-up; the GPU is the machine's only one and nothing else runs on it.
`--smoke` runs every part on CPU with tiny shapes (checks the script, measures nothing).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]

from modrwkv.lm import RWKV7, RWKV7Config  # noqa: E402
from modrwkv.lm.ops import select_impl  # noqa: E402

SHAPES = {"0.1B": RWKV7Config(n_layer=12, n_embd=768), "1.5B": RWKV7Config(n_layer=24, n_embd=2048)}


DEVICE = torch.device("cuda")  # --smoke: CPU and tiny shapes, to check this script without a GPU
WKV = "auto"  # --wkv: the WKV implementation every part uses ("auto": fla's kernels on CUDA)


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def once(fn: Callable[[], Any]) -> float:
    """Seconds of one call: the first one, with whatever compiling it triggers."""
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def timed(fn: Callable[[], Any], repeats: int) -> float:
    """Seconds per call, median of `repeats` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def reset_peak() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if DEVICE.type == "cuda" else float("nan")


def build(config: RWKV7Config, dtype: torch.dtype) -> RWKV7:
    with DEVICE:
        model = RWKV7(config)
    return model.to(dtype)


def bench_train(batch: int = 8, length: int = 1024, steps: int = 10) -> dict[str, Any]:
    reset_peak()
    model = build(SHAPES["0.1B"], torch.float32)
    model.wkv_impl = WKV
    model.use_weight_layout("training")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=DEVICE.type == "cuda")
    ids = torch.randint(0, model.config.vocab_size, (batch, length + 1), device=DEVICE)

    def step() -> None:
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
            logits = model(ids[:, :-1], logits="all").logits
        loss = F.cross_entropy(logits.float().flatten(0, 1), ids[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    first_step_s = once(step)  # allocations, and fla's compilation and autotuning on a fresh machine
    seconds = timed(step, steps)
    return {"shape": "0.1B", "tokens_per_step": batch * length, "s_per_step": seconds,
            "tokens_per_s": batch * length / seconds, "peak_gib": peak_gib(), "first_step_s": first_step_s,
            "wkv": select_impl(ids.device, length, torch.bfloat16) if WKV == "auto" else WKV}  # autocast: bf16


@torch.no_grad()
def bench_infer(name: str, length: int = 1024, decode_steps: int = 64) -> dict[str, Any]:
    reset_peak()
    model = build(SHAPES[name], torch.bfloat16)
    model.wkv_impl = WKV
    vocab = model.config.vocab_size
    result: dict[str, Any] = {"shape": name}
    for batch in (1, 8):
        ids = torch.randint(0, vocab, (batch, length), device=DEVICE)
        if batch == 1:
            result["first_prefill_s"] = once(lambda: model(ids, logits="last"))
        seconds = timed(lambda: model(ids, logits="last"), 5)
        result[f"prefill_b{batch}_x{length}_tokens_per_s"] = batch * length / seconds
    for batch in (1, 16):
        out = model(torch.randint(0, vocab, (batch, 16), device=DEVICE), logits="last")

        def decode(out=out) -> None:
            state, token = out.state, out.logits.argmax(-1, keepdim=True)
            for _ in range(decode_steps):
                step = model(token, state=state, logits="last")
                state, token = step.state, step.logits.argmax(-1, keepdim=True)

        seconds = timed(decode, 3)
        result[f"decode_b{batch}_tokens_per_s"] = batch * decode_steps / seconds
    result["peak_gib"] = peak_gib()
    return result


def bench_strategies(accelerator: str = "gpu") -> dict[str, Any]:
    from test_training import colour_samples, config

    from modrwkv.training import train

    losses = {}
    with tempfile.TemporaryDirectory() as tmp:
        for strategy in ("auto", "fsdp", "deepspeed_stage_1", "deepspeed_stage_2", "deepspeed_stage_3"):
            try:
                cfg = config(Path(tmp), strategy, max_steps=4, batch_size=8, micro_batch_size=8)
                cfg["runtime"].update(accelerator=accelerator, devices=1, strategy=strategy, precision="32", wkv_impl=WKV)
                losses[strategy] = [row["loss"] for row in train(cfg, samples=colour_samples(32)).history]
            except Exception as error:  # record and go on: one strategy's failure is a result too
                losses[strategy] = f"{type(error).__name__}: {error}"
    plain = losses["auto"]
    difference = {
        name: max(abs(a - b) / abs(b) for a, b in zip(values, plain, strict=True))
        for name, values in losses.items()
        if name != "auto" and isinstance(values, list) and isinstance(plain, list)
    }
    return {"losses": losses, "max_relative_difference_to_plain": difference}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--budget", type=float, default=250, help="seconds; parts not started by then are skipped")
    parser.add_argument("--parts", default="train,infer,strategies")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny shapes: checks the script only")
    parser.add_argument("--wkv", choices=("auto", "chunked", "fla"), default="auto",
                        help="WKV implementation (auto: fla on CUDA; chunked: the PyTorch form, no Triton)")
    parser.add_argument("--autotune-configs", type=int, default=0, metavar="N",
                        help="tune fla's kernels among N configurations each (0: all of them, fla's own autotuning)")
    args = parser.parse_args()
    if args.autotune_configs:
        from triton_autotune import keep_configs

        keep_configs(args.autotune_configs)
    global DEVICE, WKV
    WKV = args.wkv
    if args.smoke:
        DEVICE = torch.device("cpu")
        tiny = RWKV7Config(n_layer=2, n_embd=128, vocab_size=1024)
        SHAPES.update({"0.1B": tiny, "1.5B": tiny})
    elif not torch.cuda.is_available():
        sys.exit("bench_gpu.py needs a CUDA GPU (or --smoke)")

    began = time.monotonic()
    results: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(0) if DEVICE.type == "cuda" else "none (smoke run)", "torch": torch.__version__, "python": platform.python_version(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "wkv": WKV,
        "autotune_configs_per_kernel": args.autotune_configs or "all", "parts": {},
    }
    small = {"batch": 2, "length": 64, "steps": 2} if args.smoke else {}
    length, strategy_device = (64, "cpu") if args.smoke else (1024, "gpu")
    jobs = {"train": [("train_0.1B", lambda: bench_train(**small))],
            "infer": [(f"infer_{name}", lambda name=name: bench_infer(name, length)) for name in ("0.1B", "1.5B")],
            "strategies": [("strategies", lambda: bench_strategies(strategy_device))]}
    for part in args.parts.split(","):
        for name, job in jobs[part]:
            if time.monotonic() - began > args.budget:
                results["parts"][name] = "skipped: out of time"
                continue
            start = time.monotonic()
            try:
                results["parts"][name] = job()
            except Exception as error:
                results["parts"][name] = f"{type(error).__name__}: {error}"
            print(f"{name} ({time.monotonic() - start:.0f} s): {json.dumps(results['parts'][name])}", flush=True)
            args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
