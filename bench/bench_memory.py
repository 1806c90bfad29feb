"""Measured peak training memory against `modrwkv.training.memory.estimate_memory`.

    taskset -c 0 .venv/bin/python bench/bench_memory.py             # every case (~13 min, 1 core)
    .venv/bin/python bench/bench_memory.py --only 0.1B-s2-fp32-256x1  # one case
    python bench/bench_memory.py --device cuda --only ...             # on a GPU: the allocator's peak

Each case runs `modrwkv.training.train` (Lightning, the real trainer) for two optimizer steps in a
fresh process, on generated image-question samples that fill `ctx_len` exactly (the built-in
`tiny` vision encoder: no downloads), and records the peak of live tensor bytes between the start
and the end of training with `modrwkv.training.memory.LiveTensorBytes` (a TorchDispatchMode that
sees every tensor any op creates: forward, backward, optimizer, Lightning). That is what
`torch.cuda.max_memory_allocated` reports on a GPU, and what the estimate models. The growth of the
process's peak RSS from before the model was built is printed beside it: it adds glibc's caching
and fragmentation and the libraries loaded on first use, so it runs higher.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

import torch

GIB = 2**30

# name: (layers, width, stage, precision, ctx_len, micro-batch, gradient checkpointing). Cases named
# "-fewlabels" supervise only the last ~30 tokens of each sequence (a long prompt, a short answer: the
# logits buffer is small, activations dominate); in the others the answer fills the context.
CASES: dict[str, tuple[int, int, str, str, int, int, bool]] = {
    "tiny-s2-fp32-64x2": (2, 64, "2", "32", 64, 2, False),
    "0.1B-s1-fp32-256x1": (12, 768, "1", "32", 256, 1, False),
    "0.1B-s2-fp32-256x1": (12, 768, "2", "32", 256, 1, False),
    "0.1B-lora-fp32-256x1": (12, 768, "lora", "32", 256, 1, False),
    "0.1B-s2-bf16-256x1": (12, 768, "2", "bf16-mixed", 256, 1, False),
    "0.1B-s1-bf16-256x4": (12, 768, "1", "bf16-mixed", 256, 4, False),
    "0.1B-s2-fp32-1024x1-ckpt": (12, 768, "2", "32", 1024, 1, True),
    "0.1B-s1-fp32-1024x4-ckpt": (12, 768, "1", "32", 1024, 4, True),
    "0.1B-s2-fp32-1024x1-fewlabels": (12, 768, "2", "32", 1024, 1, False),
    "0.1B-s2-fp32-1024x1-ckpt-fewlabels": (12, 768, "2", "32", 1024, 1, True),
    "0.1B-s1-bf16-1024x2-fewlabels": (12, 768, "1", "bf16-mixed", 1024, 2, False),
    "0.1B-s2-bf16-1024x2-ckpt-fewlabels": (12, 768, "2", "bf16-mixed", 1024, 2, True),
    "0.4B-s1-fp32-256x1": (24, 1024, "1", "32", 256, 1, False),
    "0.4B-s2-fp32-256x1": (24, 1024, "2", "32", 256, 1, False),
    "0.4B-lora-bf16-256x1-ckpt": (24, 1024, "lora", "bf16-mixed", 256, 1, True),
    "0.1B-state-fp32-1024x2": (12, 768, "state", "32", 1024, 2, False),
}


def samples(n: int, ctx_len: int, few_labels: bool) -> list:
    """Samples longer than `ctx_len` (truncation shortens the answer to fit): the whole answer
    supervised, or, with `few_labels`, a prompt of ctx_len - 32 - 16 one-token words first."""
    from modrwkv.data.sample import Message, Sample
    import numpy as np

    rng = np.random.default_rng(0)
    words = ["red", "green", "blue", "circle", "square", "left", "right", "top", "bottom", "small", "large"]
    answer = " ".join(rng.choice(words, size=ctx_len))
    prompt = "Describe it." + " red" * (ctx_len - 48 if few_labels else 0)
    image = np.full((16, 16, 3), 128, dtype=np.uint8)
    return [Sample([Message("user", f"<image>\n{prompt}"), Message("assistant", answer)], images=[image],
                   source=f"bench[{i}]") for i in range(n)]


def run_case(name: str, device: str) -> dict[str, Any]:
    """One case in this process. On "cuda" the measurement is the caching allocator's own peak
    (`max_memory_allocated`; `max_memory_reserved` in the RSS column) and the estimate is compared
    without its CUDA-context allowance, which the allocator does not see."""
    import lightning.pytorch as pl

    from modrwkv.training import config_from_dict, train
    from modrwkv.training.memory import LiveTensorBytes, estimate_memory, plan_from_config

    layers, width, stage, precision, ctx, batch, ckpt = CASES[name]
    rss_base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with tempfile.TemporaryDirectory() as out:
        cfg = config_from_dict({
            "model": {"lm": {"config": {"n_layer": layers, "n_embd": width}},
                      "encoders": {"image": {"name": "tiny", "options": {"image_size": 16, "grid": 2, "width": 32}}},
                      "ctx_len": ctx},
            "data": {"format": "qa", "truncation": "shorten", "shuffle": False},
            "train": {"stage": stage, "max_steps": 2, "batch_size": batch, "micro_batch_size": batch, "lr": 1e-4,
                      "warmup_steps": 0, "gradient_checkpointing": ckpt, "grad_clip": 1.0},
            "runtime": {"accelerator": "gpu" if device == "cuda" else "cpu", "devices": 1, "precision": precision},
            "output": {"dir": out, "save_every": 0, "progress_bar": False, "tensorboard": False,
                       "media_reliance_every": 0, "log_every": 1},
        }, needs_data=False)
        data = samples(2 * batch, ctx, name.endswith("-fewlabels"))
        tracker = LiveTensorBytes()
        marks: dict[str, float] = {}

        class Window(pl.Callback):
            def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
                tracker.reset_peak()
                if device == "cuda":
                    torch.cuda.reset_peak_memory_stats()

            def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
                if device == "cuda":
                    marks["peak"] = torch.cuda.max_memory_allocated()
                    marks["rss_end"] = torch.cuda.max_memory_reserved() + rss_base
                else:
                    marks["peak"] = tracker.peak
                    marks["rss_end"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

        started = time.perf_counter()
        if device == "cuda":  # the allocator counts; the dispatch mode would only slow the kernels down
            result = train(cfg, samples=data, callbacks=[Window()])
        else:
            with tracker:
                result = train(cfg, samples=data, callbacks=[Window()])
        processor = result.model.processor(truncation="shorten")
        labels = processor(data[0]).labels
        supervised = float((labels[1:] != -100).float().mean())
    estimate = estimate_memory(plan_from_config(cfg, supervised_fraction=supervised))
    return {"name": name, "measured": marks["peak"], "rss_growth": marks["rss_end"] - rss_base,
            "estimate": estimate.peak - estimate.overhead, "moment": estimate.peak_moment, "supervised": supervised,
            "seconds": time.perf_counter() - started, "steps": result.metrics["steps"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=sorted(CASES), help="cases to run (default: all)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: train on the GPU and read its allocator's peak (GPU column: reserved)")
    parser.add_argument("--autotune-configs", type=int, default=0, metavar="N",
                        help="tune fla's kernels among N configurations each (0: all; tests/triton_autotune.py)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.autotune_configs:
            sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
            from triton_autotune import keep_configs

            keep_configs(args.autotune_configs)
        torch.set_num_threads(1)
        print(json.dumps(run_case(args.child, args.device)), flush=True)
        return
    where = torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor() or platform.machine()
    print(f"# {where}, torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.2f}", flush=True)
    print(f"{'case':36s} {'measured GiB':>12s} {'estimate GiB':>12s} {'est/meas':>8s} {'RSS growth':>10s} {'labelled':>8s}  "
          f"peak moment (estimate), seconds", flush=True)
    ratios = []
    for name in args.only or CASES:
        run = subprocess.run([sys.executable, __file__, "--child", name, "--device", args.device,
                              "--autotune-configs", str(args.autotune_configs)],
                             capture_output=True, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
        if run.returncode:
            print(f"{name:36s} FAILED: {run.stderr.strip().splitlines()[-1] if run.stderr.strip() else run.returncode}",
                  flush=True)
            continue
        r = json.loads(run.stdout.strip().splitlines()[-1])
        ratio = r["estimate"] / r["measured"]
        ratios.append(ratio)
        print(f"{name:36s} {r['measured'] / GIB:12.3f} {r['estimate'] / GIB:12.3f} {ratio:8.3f} "
              f"{r['rss_growth'] / GIB:10.3f} {r['supervised']:8.0%}  {r['moment']}, {r['seconds']:.0f} s", flush=True)
    if ratios:
        print(f"# estimate / measured: min {min(ratios):.3f}, max {max(ratios):.3f}")


if __name__ == "__main__":
    main()
