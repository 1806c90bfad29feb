"""fla's RWKV-7 kernels on one CUDA GPU, step by step: how long the first call takes (Triton's
compilation and autotuning), how long later calls take, and how far the results are from our chunked
PyTorch form, forward and backward, fp32 and bf16 inputs.

    python bench/fla_probe.py --json probe.json [--steps fwd-fp32,fwd-bf16,bwd-fp32,bwd-bf16] [--ieee]
    python bench/fla_probe.py --smoke --json probe.json   # CPU, Triton's interpreter: checks the script

Why it exists: the first GPU run of tests/test_gpu.py (2026-12-04, H200, triton 3.6.0, fla 0.6.0)
saw the chunk kernel's fp32 forward differ from the chunked form by more than the test's tolerance
and the first backward run past 100 s without finishing. Each step here is printed and saved as it
ends, and Python's stack is dumped every `--stall` seconds, so a run cut short still tells whether
the time went to compiling, autotuning or a kernel that does not return.
`--ieee` sets TRITON_F32_DEFAULT=ieee before Triton is imported: fp32 `tl.dot` in full precision
rather than TF32, to tell TF32 rounding from a wrong result.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]

STEPS = ("fwd-fp32", "fwd-bf16", "bwd-fp32", "bwd-bf16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--steps", default=",".join(STEPS))
    parser.add_argument("--length", type=int, default=64, help="tokens (fla's chunk: 16)")
    parser.add_argument("--ieee", action="store_true", help="fp32 dots in IEEE precision (no TF32)")
    parser.add_argument("--stall", type=float, default=30, help="seconds between stack dumps while a step runs")
    parser.add_argument("--smoke", action="store_true", help="CPU through Triton's interpreter, tiny shapes")
    args = parser.parse_args()
    if args.ieee:
        os.environ["TRITON_F32_DEFAULT"] = "ieee"
    if args.smoke:
        os.environ["TRITON_INTERPRET"] = "1"

    import torch

    from modrwkv.lm.ops import fla as fla_ops
    from modrwkv.lm.ops import wkv7_chunked, wkv7_fla
    from test_wkv_ops import random_inputs

    if args.smoke:
        import triton_interpreter

        rwkv7 = triton_interpreter.enable()
        fla_ops._kernels = lambda: (rwkv7.chunk_rwkv7, rwkv7.fused_recurrent_rwkv7)
        device, heads, length = torch.device("cpu"), 1, min(args.length, 20)
    elif torch.cuda.is_available():
        device, heads, length = torch.device("cuda"), 12, args.length  # the 0.1B model's 12 heads of 64
    else:
        sys.exit("fla_probe.py needs a CUDA GPU (or --smoke)")

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def inputs(half: bool, grad: bool) -> list[torch.Tensor]:
        r, log_w, k, v, a, b, state = (x.float().to(device) for x in random_inputs(2, length, heads, 64, seed=1))
        state = 0.2 * state  # a state of a plausible size
        if half:  # as a bf16 model calls it: bf16 r, k, v, a, b; fp32 log-decay and state
            r, k, v, a, b = (x.bfloat16() for x in (r, k, v, a, b))
        return [x.requires_grad_(grad) for x in (r, log_w, k, v, a, b, state)]

    def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
        return ((actual.float() - expected.float()).abs().max() / expected.float().abs().max()).item()

    def run(step: str) -> dict[str, object]:
        kind, dtype = step.split("-")
        x = inputs(dtype == "bf16", kind == "bwd")
        reference_inputs = [t.detach().float().requires_grad_(kind == "bwd") for t in x]
        weights = None

        def call(fn, xs):
            o, state = fn(*xs)
            if kind == "fwd":
                return [o, state]
            nonlocal weights
            if weights is None:
                g = torch.Generator().manual_seed(7)
                weights = (torch.randn(o.shape, generator=g).to(device), torch.randn(state.shape, generator=g).to(device))
            loss = (o.float() * weights[0]).sum() + (state * weights[1]).sum()
            return list(torch.autograd.grad(loss, xs))

        grad_mode = torch.enable_grad() if kind == "bwd" else torch.no_grad()
        with grad_mode:
            sync()
            start = time.perf_counter()
            got = call(wkv7_fla, x)
            sync()
            first = time.perf_counter() - start
            times = []
            for _ in range(3):
                start = time.perf_counter()
                call(wkv7_fla, x)
                sync()
                times.append(time.perf_counter() - start)
            expected = call(wkv7_chunked, reference_inputs)
        names = ["output", "final state"] if kind == "fwd" else ["d r", "d log_w", "d k", "d v", "d a", "d b", "d state"]
        return {"first_call_s": first, "later_call_s": sorted(times)[1], "tokens": length, "heads": heads,
                "relative_max_error": {n: relative_error(g, e) for n, g, e in zip(names, got, expected, strict=True)}}

    import triton

    results: dict[str, object] = {
        "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else "none (smoke run)",
        "torch": torch.__version__, "triton": triton.__version__,
        "TRITON_F32_DEFAULT": os.environ.get("TRITON_F32_DEFAULT", "(unset: tf32 where supported)"), "steps": {},
    }
    for step in args.steps.split(","):
        faulthandler.dump_traceback_later(args.stall, repeat=True)  # where a long step spends its time
        started = time.perf_counter()
        try:
            results["steps"][step] = run(step)
        except Exception as error:  # record and go on: a failing step is a result too
            results["steps"][step] = f"{type(error).__name__}: {error}"
        faulthandler.cancel_dump_traceback_later()
        print(f"{step} ({time.perf_counter() - started:.1f} s): {json.dumps(results['steps'][step])}", flush=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
