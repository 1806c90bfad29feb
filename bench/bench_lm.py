"""modrwkv's RWKV-7 LM against the official `rwkv` 0.8.32 package, interleaved in one process on CPU.

    python bench/bench_lm.py                     # full run (~6-10 minutes on 2 quiet cores)
    python bench/bench_lm.py --quick             # <= 2 minutes, even on a busy machine
    python bench/bench_lm.py --threads 1 --formats int8 --json out.json
    python bench/bench_lm.py --formats fp32 --parts speed --compile default   # + the step through torch.compile

Both engines load one random checkpoint of the 0.1B shape (12 x 768, head 64, vocab 65536; speed
does not depend on the values), written once as an official-layout bf16 `.pth`. The official
package runs `cpu fp32` with TorchScript; modrwkv runs each weight format asked for (`--formats`,
see `modrwkv.lm.ops.linear`). Every measurement is a sequence of *rounds*, and a round runs every
engine once, one after the other (A/B/C/A/B/C...), so that both see the same machine; a ratio is the
median over rounds of the per-round ratio. The CPU time other processes used during each round is
counted from /proc/stat: a round in which they used more than --max-other cores is not used, and a
ratio with fewer than --min-rounds clean rounds is not printed ("not measured cleanly"). The 1-minute
load average is printed beside each ratio.

Measurements, at each thread count of --threads (torch.set_num_threads, for both engines):
  bandwidth    best `.sum()` over a >= 0.5 GiB fp32 tensor: the machine's read bandwidth.
  decode b1    single-token steps after a 16-token prompt, last-token logits; ms per token, and the
               fraction of the bandwidth limit: bytes of weights read per token (all parameters and
               buffers but the embedding table, plus one embedding row) / time per token / bandwidth.
  prefill      one --prefill-len token prompt with last-position logits (modrwkv: the decode
               engine's chunked `prefill_steps`).
  memory       (not in --quick) peak resident memory above the loaded model while reading a 128
               and a 4096-token context and decoding 16 tokens (VmHWM, reset via clear_refs).
Logits are compared at the end as a sanity check (modrwkv fp32 against the official package).

--compile MODES (comma-separated torch.compile modes, "default" for none) adds, per mode, modrwkv's
fp32 model (the same object) called through `torch.compile(model, mode=..., dynamic=False)` to the
decode measurement; its first one-token call (the compilation) is timed and its logits are compared
with the uncompiled step's from the same state. A mode that fails to compile is reported, not measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
N_LAYER, N_EMBD, VOCAB = 12, 768, 65536
PROMPT_LEN = 16
SEED = 1234
TARGETS = {  # (measurement, threads or None for "the most asked for", engine): minimum ratio to official fp32
    ("decode", "max", "int8"): 2.5,
    ("decode", 1, "int8"): 1.8,
    ("decode", 1, "fp32"): 1.0,
    ("prefill", "max", "fp32"): 2.0,
}

# ----------------------------------------------------------------------------------------------- machine


def n_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine_busy_seconds() -> float:
    """CPU seconds all processes have used (all CPUs), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """Cores that *other* processes kept busy between `start()` and `stop()`."""

    def start(self) -> None:
        self._t, self._busy, self._own = time.perf_counter(), machine_busy_seconds(), time.process_time()

    def stop(self) -> float:
        dt = max(time.perf_counter() - self._t, 1e-9)
        other = machine_busy_seconds() - self._busy - (time.process_time() - self._own)
        return max(0.0, other) / dt


def load_avg() -> float:
    return os.getloadavg()[0]


def machine_info() -> dict:
    import torch

    info = {"platform": platform.platform(), "python": platform.python_version(), "cores": n_cores(),
            "torch": torch.__version__}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        info["ram_gib"] = round(int(Path("/proc/meminfo").read_text().split()[1]) / 2**20, 1)
    except (OSError, IndexError, ValueError):
        pass
    try:
        from importlib.metadata import version

        info["rwkv"] = version("rwkv")
    except ImportError:
        info["rwkv"] = None
    return info


def proc_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


# ----------------------------------------------------------------------------------------------- engines


class Official:
    label = "official fp32"

    def __init__(self, ckpt: Path) -> None:
        os.environ.update(RWKV_V7_ON="1", RWKV_JIT_ON="1", RWKV_CUDA_ON="0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from rwkv.model import RWKV

            self.model = RWKV(model=str(ckpt)[: -len(".pth")], strategy="cpu fp32")
        self.bytes_per_token = None  # filled in from modrwkv's fp32 model (same tensors)

    def prompt(self, ids):
        return self.model.forward(ids, None)

    def step(self, token: int, state):
        return self.model.forward([token], state)

    def prefill(self, ids):
        return self.model.forward(ids, None, full_output=False)[0]


class Mod:
    def __init__(self, ckpt: Path, weight_format: str) -> None:
        import torch

        from modrwkv.generation import prefill_steps, run_to_end
        from modrwkv.lm import load_model

        self.torch, self._prefill, self._run = torch, prefill_steps, run_to_end
        self.label = f"modrwkv {weight_format}"
        self.model = load_model(ckpt, dtype=weight_format)
        tensors = [*self.model.parameters(), *self.model.buffers()]
        emb = self.model.emb.weight
        self.bytes_per_token = sum(t.numel() * t.element_size() for t in tensors if t is not emb) \
            + emb.shape[1] * emb.element_size()

    def prompt(self, ids):
        with self.torch.inference_mode():
            out = self.model(self.torch.tensor([ids]), logits="last")
        return out.logits[0], out.state

    def step(self, token: int, state):
        with self.torch.inference_mode():
            out = self.model(self.torch.tensor([[token]]), state=state, logits="last")
        return out.logits[0], out.state

    def prefill(self, ids):
        with self.torch.inference_mode():
            _, logits = self._run(self._prefill(self.model, input_ids=self.torch.tensor([ids])))
        return logits[0]


class CompiledStep(Mod):
    """`base`'s model (the same weights) with its one-token step called through torch.compile; the
    prompt and prefill stay uncompiled."""

    def __init__(self, base: Mod, mode: str, prompt_ids: list[int], token: int) -> None:
        self.torch, self._prefill, self._run = base.torch, base._prefill, base._run
        self.model, self.bytes_per_token = base.model, base.bytes_per_token
        self.label = f"{base.label} compile={mode}"
        self.compiled = base.torch.compile(base.model, mode=None if mode == "default" else mode, dynamic=False)
        state = base.prompt(prompt_ids)[1]
        reference = base.step(token, state)[0]
        start = time.perf_counter()
        logits = self.step(token, state)[0]  # compiles
        self.compile_s = time.perf_counter() - start
        self.max_logit_diff = float((logits - reference).abs().max())

    def step(self, token: int, state):
        with self.torch.inference_mode():
            out = self.compiled(self.torch.tensor([[token]]), state=state, logits="last")
        return out.logits[0], out.state


# ----------------------------------------------------------------------------------------------- measuring


def rounds(engines: list, run: Callable[[object], float], *, max_rounds: int, budget_s: float, max_other: float,
           min_rounds: int, warmup: int = 1) -> dict:
    """Runs `run(engine)` (returns seconds per unit) for every engine in turn, round after round,
    until `max_rounds` clean rounds or `budget_s` seconds. Returns per-engine times of clean rounds
    and each round's other-process load."""
    for _ in range(warmup):
        for engine in engines:
            run(engine)
    meter = OtherLoad()
    clean: list[dict[str, float]] = []
    others = []
    deadline = time.perf_counter() + budget_s
    while len(clean) < max_rounds and time.perf_counter() < deadline:
        meter.start()
        times = {engine.label: run(engine) for engine in engines}
        other = meter.stop()
        others.append(other)
        if other <= max_other:
            clean.append(times)
    return {"clean": clean, "other_cores": others, "load_avg": load_avg(), "enough": len(clean) >= min_rounds}


def summarize(result: dict, baseline: str) -> dict:
    out = {}
    for label in (result["clean"][0] if result["clean"] else {}):
        times = [r[label] for r in result["clean"]]
        ratios = [r[baseline] / r[label] for r in result["clean"]] if baseline in result["clean"][0] else []
        out[label] = {"median_s": statistics.median(times), "min_s": min(times),
                      "ratio": statistics.median(ratios) if ratios and result["enough"] else None,
                      "ratio_range": [min(ratios), max(ratios)] if ratios and result["enough"] else None}
    return out


def bandwidth(torch, gib: float) -> float:
    x = torch.ones(int(gib * 2**30) // 4)
    best = min(_timed(x.sum) for _ in range(5))
    return x.numel() * 4 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def memory_growth(engine: Mod, contexts: tuple[int, ...], tokens) -> dict[int, float]:
    """MiB of peak RSS above the resident model while reading `context` tokens and decoding 16."""
    growth = {}
    for n in contexts:
        ids = tokens[:n]
        base = proc_kib("VmRSS")
        if not reset_peak_rss():
            return {}
        with engine.torch.inference_mode():
            state, _ = engine._run(engine._prefill(engine.model, input_ids=engine.torch.tensor([ids])))
            for t in tokens[:16]:
                _, state = engine.step(t, state)
        growth[n] = (proc_kib("VmHWM") - base) / 1024
    return growth


# ----------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a <= 2 minute run: fewer rounds, prefill 512, no memory part")
    p.add_argument("--threads", default=None,
                   help="comma-separated torch thread counts to measure at (default: all cores, then 1)")
    p.add_argument("--formats", default="fp32,bf16,int8", help="modrwkv weight formats (fp32, bf16, int8)")
    p.add_argument("--no-official", action="store_true", help="modrwkv only (no ratios)")
    p.add_argument("--parts", default="speed,memory", help="speed, memory or both (memory is skipped with --quick)")
    p.add_argument("--steps", type=int, default=None, help="decode steps per engine per round")
    p.add_argument("--rounds", type=int, default=None, help="clean rounds wanted per measurement")
    p.add_argument("--min-rounds", type=int, default=3, help="fewer clean rounds than this: no ratio printed")
    p.add_argument("--prefill-len", type=int, default=None)
    p.add_argument("--max-other", type=float, default=0.15,
                   help="a round during which other processes kept more than this many cores busy is not used")
    p.add_argument("--budget", type=float, default=None, help="seconds per measurement (rounds stop there)")
    p.add_argument("--compile", default="",
                   help="comma-separated torch.compile modes (\"default\", \"max-autotune-no-cudagraphs\", ...): "
                        "also decode with modrwkv fp32's step compiled in each")
    p.add_argument("--ckpt-cache", type=Path, help="keep/reuse the random checkpoint in this folder")
    p.add_argument("--json", type=Path, help="also write every number to this file")
    args = p.parse_args(argv)
    q = args.quick
    steps = args.steps or (8 if q else 16)
    want_rounds = args.rounds or (5 if q else 15)
    prefill_len = args.prefill_len or (512 if q else 1024)
    budget = args.budget or (10 if q else 90)
    threads = [int(t) for t in args.threads.split(",")] if args.threads else sorted({n_cores(), 1}, reverse=True)

    try:
        import modrwkv  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(REPO / "src"))
    import torch

    from modrwkv.lm import RWKV7Config
    from modrwkv.lm.random_weights import random_official_state_dict

    wall0 = time.perf_counter()
    info = machine_info()
    print(f"# {info.get('cpu', '?')}, {info['cores']} cores, {info.get('ram_gib')} GiB | torch {info['torch']} | "
          f"rwkv {info.get('rwkv')} | load avg {load_avg():.2f} | {time.strftime('%Y-%m-%d %H:%M')}")

    tmp = tempfile.TemporaryDirectory(prefix="bench_lm_")
    folder = args.ckpt_cache or Path(tmp.name)
    folder.mkdir(parents=True, exist_ok=True)
    ckpt = folder / "rwkv7-random-0.1b-bf16.pth"
    if not ckpt.exists():
        sd = random_official_state_dict(RWKV7Config(n_layer=N_LAYER, n_embd=N_EMBD, vocab_size=VOCAB), seed=0,
                                        layer0_value_lora=False)
        torch.save({k: v.to(torch.bfloat16).contiguous() for k, v in sd.items()}, ckpt.with_suffix(".tmp"))
        ckpt.with_suffix(".tmp").replace(ckpt)
        del sd

    engines: list = []
    if not args.no_official:
        try:
            engines.append(Official(ckpt))
        except ImportError:
            print("! the official `rwkv` package is not installed: measuring modrwkv only (no ratios)")
    mods = {f: Mod(ckpt, f) for f in args.formats.split(",") if f}
    engines.extend(mods.values())
    g = torch.Generator().manual_seed(SEED)
    tokens = torch.randint(0, VOCAB, (8192,), generator=g).tolist()
    compiled = {}
    for mode in (m for m in args.compile.split(",") if m):
        if "fp32" not in mods:
            p.error("--compile needs fp32 in --formats")
        torch.set_num_threads(threads[0])
        try:
            engine = CompiledStep(mods["fp32"], mode, tokens[:PROMPT_LEN], tokens[PROMPT_LEN])
        except Exception as e:  # noqa: BLE001 - a failed compilation is a result to report
            compiled[mode] = {"error": f"{type(e).__name__}: {e}"}
            print(f"! torch.compile mode={mode} failed: {type(e).__name__}: {e}")
            continue
        compiled[mode] = {"compile_s": engine.compile_s, "max_logit_diff_to_uncompiled": engine.max_logit_diff}
        print(f"compiled modrwkv fp32 step, mode={mode}: first call {engine.compile_s:.1f}s, "
              f"max |logit - uncompiled step| {engine.max_logit_diff:.1e}")
        engines.append(engine)
    baseline = engines[0].label
    if engines and isinstance(engines[0], Official) and "fp32" in mods:
        engines[0].bytes_per_token = mods["fp32"].bytes_per_token
    print(f"loaded {', '.join(e.label for e in engines)} in {time.perf_counter() - wall0:.0f}s; "
          f"bytes read per decoded token: " + ", ".join(f"{e.label} {e.bytes_per_token / 1e6:.0f} MB"
                                                      for e in engines if e.bytes_per_token))

    results: dict = {"machine": info, "settings": vars(args) | {"threads": threads, "steps": steps,
                                                                 "prefill_len": prefill_len}, "runs": {},
                     "compile": compiled}
    parts = set(args.parts.split(","))
    for t in threads if "speed" in parts else []:
        torch.set_num_threads(t)
        bw = bandwidth(torch, 0.5 if q else 1.0)
        print(f"\n== {t} thread(s): read bandwidth {bw:.1f} GB/s (load avg {load_avg():.2f})")
        states = {e.label: e.prompt(tokens[:PROMPT_LEN])[1] for e in engines}
        position = {"i": PROMPT_LEN}

        def decode(engine) -> float:
            state = states[engine.label]
            start = time.perf_counter()
            for i in range(steps):
                _, state = engine.step(tokens[position["i"] + i], state)
            states[engine.label] = state
            return (time.perf_counter() - start) / steps

        dec = rounds(engines, decode, max_rounds=want_rounds, budget_s=budget, max_other=args.max_other,
                     min_rounds=args.min_rounds)
        dec_sum = summarize(dec, baseline)
        _report("decode b1", dec, dec_sum, baseline, "ms/token", 1e3,
                extra=lambda e, s: f"  {engines_by(engines, e).bytes_per_token / s['median_s'] / 1e9:5.1f} GB/s = "
                                   f"{100 * engines_by(engines, e).bytes_per_token / s['median_s'] / 1e9 / bw:3.0f}% of bandwidth")
        prefill_ids = tokens[:prefill_len]
        pre = rounds([e for e in engines if e is engines[0] or e.label.endswith("fp32") or e.label.endswith("int8")],
                     lambda e: _timed(lambda: e.prefill(prefill_ids)), max_rounds=max(2, want_rounds // 3),
                     budget_s=budget, max_other=args.max_other, min_rounds=min(args.min_rounds, 2))
        pre_sum = summarize(pre, baseline)
        _report(f"prefill {prefill_len}", pre, pre_sum, baseline, "s", 1.0,
                extra=lambda e, s: f"  {prefill_len / s['median_s']:6.0f} tok/s")
        for label, s in dec_sum.items():
            s["bandwidth_fraction"] = engines_by(engines, label).bytes_per_token / s["median_s"] / 1e9 / bw
        results["runs"][t] = {"bandwidth_gb_s": bw, "decode": {**dec_sum, "rounds": dec["other_cores"],
                                                               "load_avg": dec["load_avg"]},
                              "prefill": {**pre_sum, "rounds": pre["other_cores"], "load_avg": pre["load_avg"]}}

    if not q and "memory" in parts and reset_peak_rss():
        torch.set_num_threads(threads[0])
        print("\n== memory: peak RSS above the loaded model, reading a context then decoding 16 tokens")
        results["memory_mib"] = {}
        for label, engine in ((e.label, e) for e in mods.values()):
            growth = memory_growth(engine, (128, 4096), tokens)
            results["memory_mib"][label] = growth
            print(f"  {label:<16} " + "  ".join(f"context {n}: +{m:.0f} MiB" for n, m in growth.items()))

    checks = {}
    if "speed" in parts and isinstance(engines[0], Official) and "fp32" in mods:
        a = engines[0].prefill(tokens[:PROMPT_LEN]).float()
        for label, engine in ((e.label, e) for e in mods.values()):
            checks[label] = float((engine.prefill(tokens[:PROMPT_LEN]).float() - a).abs().max())
        print("\nmax |logit - official fp32| after a 16-token prompt: " +
              ", ".join(f"{k} {v:.1e}" for k, v in checks.items()) + f" (logits up to {float(a.abs().max()):.1f})")
    results["logit_checks"] = checks
    results["targets"] = _targets(results, threads)
    results["total_s"] = time.perf_counter() - wall0
    print(f"total {results['total_s']:.0f}s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    tmp.cleanup()
    return 0


def engines_by(engines: list, label: str):
    return next(e for e in engines if e.label == label)


def _report(name: str, result: dict, summary: dict, baseline: str, unit: str, scale: float,
            extra: Callable[[str, dict], str]) -> None:
    others = result["other_cores"]
    print(f"  {name}: {len(result['clean'])} clean rounds of {len(others)} (other processes: "
          f"{min(others, default=0):.2f}-{max(others, default=0):.2f} cores), load avg {result['load_avg']:.2f}")
    if not result["enough"]:
        print("    not measured cleanly: too few rounds without other processes on the cores; no ratio")
    for label, s in summary.items():
        ratio = "" if s["ratio"] is None or label == baseline else \
            f"  {s['ratio']:.2f}x (rounds {s['ratio_range'][0]:.2f}-{s['ratio_range'][1]:.2f}, load avg {result['load_avg']:.2f})"
        print(f"    {label:<16}{s['median_s'] * scale:8.2f} {unit}{extra(label, s)}{ratio}")


def _targets(results: dict, threads: list[int]) -> dict:
    out = {}
    for (measure, t, fmt), want in TARGETS.items():
        t = max(threads) if t == "max" else t
        run = results["runs"].get(t, {}).get(measure, {})
        got = run.get(f"modrwkv {fmt}", {}).get("ratio")
        name = f"{measure} {fmt} at {t} thread(s) >= {want}x official fp32"
        if not run:
            continue
        out[name] = {"ratio": got, "met": None if got is None else got >= want}
        print(f"target {name}: " + ("not measured cleanly" if got is None else
                                     f"{got:.2f}x {'MET' if got >= want else 'NOT MET'}"))
    return out


if __name__ == "__main__":
    sys.exit(main())
