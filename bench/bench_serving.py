#!/usr/bin/env python
"""Serving throughput, the prefix-state cache, and memory as a multimodal conversation grows:
modrwkv against a Transformer of the same width and depth (HF `LlamaForCausalLM`), fp32 on CPU.

    python bench/bench_serving.py                 # full run (several minutes on 2 cores)
    python bench/bench_serving.py --quick         # smoke run of the script itself (tiny models)
    python bench/bench_serving.py --json out.json # also save every number
    python bench/bench_serving.py --only throughput --serve-model runs/quickstart/model
                                                  # throughput of a saved model (e.g. the quickstart's)

Models have random weights (speed and memory do not depend on the values): an RWKV-7 of the 0.1B
shape (12 x 768, vocab 65536) with the built-in `tiny` vision encoder, and a Llama with the same
hidden size, layer count, head size, vocabulary and a 4x MLP.

1. Throughput: `modrwkv serve` runs in its own process; 1, 8 and 32 clients (threads with the
   official `openai` client) each send 3 requests in a row, sampled with a per-request seed. Two
   workloads: text chat (a short question, 64 tokens generated: decode-bound), and one image
   (64 positions) with a question, 32 tokens generated (prompt-bound on a CPU). Requests/s and
   generated tokens/s over the wall time of each level; the server's /health counters give the
   mean batch per decode step.
2. Prefix-state cache: time to the first token of a question about an image (576 positions, the
   SigLIP2 count) with a system prompt, cold, then for another question about the same image.
3. Memory: one child process per model. A conversation grows by one image (576 positions) plus a
   question and a short answer per turn; after 1, 8 and 32 images we record what the model keeps
   for the conversation (RWKV: its state; Llama: its KV cache), the process's resident memory, and
   the time of a text-only follow-up turn. The Llama is fed exactly as many embedding positions per
   turn as modrwkv reads (its image positions are random embeddings: the cost is the same).
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import datetime
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from pathlib import Path

MARK = "@@BENCH "
SECTIONS = ("throughput", "prefix_cache", "memory")
SYSTEM = "You are a helpful assistant. Describe images precisely and answer questions about them."


def sizes(quick: bool) -> dict:
    if quick:
        return dict(n_layer=2, n_embd=64, grid=8, image_size=32, images=(1, 2, 4), concurrency=(1, 2, 4),
                    requests=2, max_tokens=8, answer_tokens=4)
    return dict(n_layer=12, n_embd=768, grid=24, image_size=96, images=(1, 8, 32), concurrency=(1, 8, 32),
                requests=3, max_tokens=32, answer_tokens=16)


def rss() -> dict[str, int]:
    """Current and peak resident memory of this process, in bytes (Linux)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def busy_cpu_seconds() -> float:
    """CPU time spent by the whole machine (all processes), from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the server, the memory runs)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class OtherLoad:
    """Measures how many cores *other* processes used while a section ran: timings on a shared
    machine are only comparable when this is near zero."""

    def __enter__(self) -> OtherLoad:  # noqa: PYI034 (typing.Self needs Python 3.11)
        self.start = (time.perf_counter(), busy_cpu_seconds(), own_cpu_seconds())
        return self

    def __exit__(self, *exc: object) -> None:
        wall, busy, own = (b - a for a, b in zip(self.start, (time.perf_counter(), busy_cpu_seconds(),
                                                              own_cpu_seconds())))
        self.cores = max(0.0, busy - own) / wall


def png(seed: int, size: int = 64) -> bytes:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def build_model(folder: Path, n_layer: int, n_embd: int, grid: int, image_size: int) -> None:
    import torch

    from modrwkv.encoders import build_encoder
    from modrwkv.lm import RWKV7, RWKV7Config
    from modrwkv.lm.random_weights import random_official_state_dict
    from modrwkv.multimodal import ModRWKV

    config = RWKV7Config(n_layer=n_layer, n_embd=n_embd, vocab_size=65536)
    with torch.device("meta"):
        lm = RWKV7(config)
    lm.load_state_dict(random_official_state_dict(config, seed=0, layer0_value_lora=False), assign=True)
    torch.manual_seed(0)
    encoder = build_encoder("tiny", grid=grid, image_size=image_size, width=128)
    ModRWKV.build(lm.eval(), {"image": encoder}).eval().save_pretrained(folder)


# ------------------------------------------------------------------------------------ throughput


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def health(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/health", timeout=10) as response:
        return json.load(response)


def throughput(model_dir: Path, s: dict) -> list[dict]:
    import openai

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "modrwkv.cli", "serve", "--model", str(model_dir), "--port", str(port),
         "--max-batch-size", str(max(s["concurrency"])), "--max-queue", "256", "--model-name", "bench"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"modrwkv serve failed: {server.stderr.read().decode()[-2000:]}")
            try:
                health(url)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("modrwkv serve did not start") from None
                time.sleep(0.2)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=600)
        images = {seed: base64.b64encode(png(seed)).decode() for seed in range(max(s["concurrency"]) * s["requests"] + 1)}

        def request(workload: str, seed: int) -> tuple[float, int]:
            if workload == "image":
                content = [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{images[seed]}"}},
                           {"type": "text", "text": f"Question {seed}: what is in this picture?"}]
                max_tokens = s["max_tokens"]
            else:
                content, max_tokens = f"Request {seed}: tell me a long story.", 2 * s["max_tokens"]
            start = time.perf_counter()
            reply = client.chat.completions.create(model="bench", messages=[{"role": "user", "content": content}],
                                                   max_tokens=max_tokens, temperature=1.0, seed=seed)
            return time.perf_counter() - start, reply.usage.completion_tokens

        levels = []
        for workload in ("text", "image"):
            request(workload, len(images) - 1)  # warm-up
            for clients in s["concurrency"]:
                def worker(index: int, workload: str = workload) -> list[tuple[float, int]]:
                    return [request(workload, index * s["requests"] + j) for j in range(s["requests"])]

                before = health(url)
                start = time.perf_counter()
                with concurrent.futures.ThreadPoolExecutor(clients) as pool:
                    done = [r for rs in pool.map(worker, range(clients)) for r in rs]
                wall = time.perf_counter() - start
                after = health(url)
                tokens = sum(n for _, n in done)
                latencies = sorted(t for t, _ in done)
                steps = after["steps"] - before["steps"]
                levels.append({
                    "workload": workload, "clients": clients, "requests": len(done), "wall_s": wall,
                    "requests_per_s": len(done) / wall, "tokens_per_s": tokens / wall, "completion_tokens": tokens,
                    "latency_p50_s": statistics.median(latencies), "latency_max_s": latencies[-1],
                    "mean_batch": tokens / steps if steps else 0.0,
                })
                print(f"  {workload:5s} {clients:3d} clients: {levels[-1]['requests_per_s']:.2f} req/s, "
                      f"{levels[-1]['tokens_per_s']:.1f} tokens/s, mean batch {levels[-1]['mean_batch']:.1f}, "
                      f"median latency {levels[-1]['latency_p50_s']:.1f} s", flush=True)
        return levels
    finally:
        server.terminate()
        server.wait(30)


# --------------------------------------------------------------------------------- prefix cache


def prefix_cache(model_dir: Path, repeats: int = 3) -> dict:
    from modrwkv.inference import ModRWKVPipeline

    pipe = ModRWKVPipeline.from_pretrained(model_dir)
    image = png(1000, 96)
    cold, warm = [], []
    for r in range(repeats + 1):
        pipe.cache.clear()
        times = []
        for question in ("What is in the picture?", "Which colour dominates?"):
            messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
            start = time.perf_counter()
            stream = pipe.chat_stream(messages, images=[image], temperature=0, max_new_tokens=1)
            next(iter(stream), None)
            times.append(time.perf_counter() - start)
            list(stream)
        if r:  # the first round warms up
            cold.append(times[0])
            warm.append(times[1])
    result = stream.result
    return {"prompt_tokens": result.prompt_tokens, "cached_tokens": result.cached_tokens,
            "cold_ttft_s": statistics.median(cold), "warm_ttft_s": statistics.median(warm),
            "speedup": statistics.median(cold) / statistics.median(warm)}


# ---------------------------------------------------------------------------------- memory child


def child_memory(engine: str, model_dir: Path, s: dict, image_turn: int, followup_turn: int) -> None:
    """Runs in its own process; prints one JSON line per checkpoint (1, 8, 32 images)."""
    import torch

    warnings.filterwarnings("ignore")
    torch.set_grad_enabled(False)
    checkpoints = set(s["images"])
    answer = s["answer_tokens"]
    if engine == "modrwkv":
        from modrwkv.inference import ModRWKVPipeline

        session = ModRWKVPipeline.from_pretrained(model_dir, prefix_cache_bytes=0).session(
            temperature=0, max_new_tokens=answer)
        session.send("What changed since the previous picture?")  # warm-up, the same turn as the Llama's below

        def image_turn_fn(k: int) -> None:
            session.send("Describe this picture.", images=[png(k, 96)])

        def followup() -> None:
            session.send("What changed since the previous picture?")

        def held() -> tuple[int, int]:
            return session.state.nbytes(), session.num_tokens
    else:
        from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

        config = LlamaConfig(vocab_size=65536, hidden_size=s["n_embd"], intermediate_size=4 * s["n_embd"],
                             num_hidden_layers=s["n_layer"], num_attention_heads=s["n_embd"] // 64,
                             num_key_value_heads=s["n_embd"] // 64, head_dim=64, max_position_embeddings=1 << 17,
                             tie_word_embeddings=False)
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).eval()
        cache = DynamicCache()

        def turn(positions: int) -> None:
            embeds = torch.randn(1, positions, s["n_embd"]) * 0.02
            logits = model(inputs_embeds=embeds, cache=cache, use_cache=True, logits_to_keep=1).logits
            for _ in range(answer):  # greedy, one position per token
                token = logits[:, -1].argmax(-1, keepdim=True)
                logits = model(input_ids=token, cache=cache, use_cache=True, logits_to_keep=1).logits
            model(input_ids=torch.tensor([[24]]), cache=cache, use_cache=True, logits_to_keep=1)  # turn end

        turn(followup_turn)  # warm-up: the conversation starts with a short exchange, as above

        def image_turn_fn(k: int) -> None:
            turn(image_turn)

        def followup() -> None:
            turn(followup_turn)

        def held() -> tuple[int, int]:
            return sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers), cache.get_seq_length()

    for k in range(1, max(checkpoints) + 1):
        image_turn_fn(k)
        if k in checkpoints:
            start = time.perf_counter()
            followup()
            seconds = time.perf_counter() - start
            nbytes, positions = held()
            print(MARK + json.dumps({"engine": engine, "images": k, "positions": positions, "held_bytes": nbytes,
                                     "followup_turn_s": seconds, **rss()}), flush=True)


def memory(model_dir: Path, s: dict, quick: bool) -> list[dict]:
    from modrwkv.inference import ModRWKVPipeline

    pipe = ModRWKVPipeline.from_pretrained(model_dir)
    image_turn = len(pipe.encode("Describe this picture.", images=[png(0, 96)]))
    followup_turn = len(pipe.encode("What changed since the previous picture?"))
    rows = []
    for engine in ("modrwkv", "llama"):
        command = [sys.executable, __file__, "--child", engine, "--model-dir", str(model_dir),
                   "--turns", f"{image_turn},{followup_turn}"] + (["--quick"] if quick else [])
        run = subprocess.run(command, capture_output=True, text=True, check=False)
        if run.returncode:
            raise RuntimeError(f"{engine} memory run failed:\n{run.stderr[-3000:]}")
        for line in run.stdout.splitlines():
            if line.startswith(MARK):
                rows.append(json.loads(line[len(MARK):]))
                row = rows[-1]
                print(f"  {engine:8s} {row['images']:3d} images ({row['positions']} positions): holds "
                      f"{row['held_bytes'] / 2**20:8.1f} MiB, RSS {row['VmRSS'] / 2**20:7.0f} MiB, "
                      f"follow-up turn {row['followup_turn_s']:.2f} s", flush=True)
    return rows


# ---------------------------------------------------------------------------------------- report


def machine() -> dict:
    import torch

    return {"date": datetime.date.today().isoformat(), "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "load_average_at_start": os.getloadavg()}


def summary(results: dict) -> None:
    print("\nratios")
    levels = {(level["workload"], level["clients"]): level for level in results.get("throughput", [])}
    for (workload, clients), level in levels.items():
        first = min(c for w, c in levels if w == workload)
        ratio = level["tokens_per_s"] / levels[(workload, first)]["tokens_per_s"]
        print(f"  {workload} throughput, {clients} clients / {first}: {ratio:.1f}x tokens/s")
    if "prefix_cache" in results:
        cache = results["prefix_cache"]
        print(f"  prefix cache: first token {cache['speedup']:.1f}x sooner for a second question about the same "
              f"image ({cache['cached_tokens']} of {cache['prompt_tokens']} positions reused)")
    by = {(r["engine"], r["images"]): r for r in results.get("memory", [])}
    for images in sorted({r["images"] for r in results.get("memory", [])}):
        rwkv, llama = by[("modrwkv", images)], by[("llama", images)]
        print(f"  {images:3d} images: Llama KV cache / RWKV state = {llama['held_bytes'] / rwkv['held_bytes']:.0f}x; "
              f"follow-up turn Llama / RWKV = {llama['followup_turn_s'] / rwkv['followup_turn_s']:.1f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny models and few requests (checks the script)")
    parser.add_argument("--json", metavar="PATH", help="write all results to this file")
    parser.add_argument("--only", action="append", choices=SECTIONS, help="run only this section (repeatable)")
    parser.add_argument("--serve-model", type=Path, metavar="DIR",
                        help="measure throughput on this saved model (e.g. runs/quickstart/model) instead of the random 0.1B-shape one")
    parser.add_argument("--child", choices=("modrwkv", "llama"), help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--turns", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_model and not args.serve_model.is_dir():
        parser.error(f"--serve-model {args.serve_model}: no such model folder (run `modrwkv quickstart` first?)")
    s = sizes(args.quick)
    if args.child:
        image_turn, followup_turn = map(int, args.turns.split(","))
        child_memory(args.child, args.model_dir, s, image_turn, followup_turn)
        return 0
    results = {"machine": machine(), "sizes": s}
    print(f"machine: {results['machine']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="modrwkv-bench-") as tmp:
        small = Path(tmp) / "serving-model"  # 64 positions per image: many requests
        build_model(small, s["n_layer"], s["n_embd"], 8, 32 if args.quick else 64)
        large = Path(tmp) / "siglip-size-model"  # 576 positions per image, as SigLIP2
        build_model(large, s["n_layer"], s["n_embd"], s["grid"], s["image_size"])
        load = {}
        sections = args.only or SECTIONS
        if "throughput" in sections:
            print("throughput (modrwkv serve): text chat, then one image + a question per request", flush=True)
            with OtherLoad() as load["throughput"]:
                results["throughput"] = throughput(args.serve_model or small, s)
            results["throughput_model"] = str(args.serve_model or "random 0.1B shape, tiny encoder (64 positions per image)")
        if "prefix_cache" in sections:
            print("prefix-state cache", flush=True)
            with OtherLoad() as load["prefix_cache"]:
                results["prefix_cache"] = prefix_cache(large)
            print(f"  cold {results['prefix_cache']['cold_ttft_s'] * 1000:.0f} ms -> warm "
                  f"{results['prefix_cache']['warm_ttft_s'] * 1000:.0f} ms to the first token", flush=True)
        if "memory" in sections:
            print("memory as the conversation grows", flush=True)
            with OtherLoad() as load["memory"]:
                results["memory"] = memory(large, s, args.quick)
    results["machine"]["other_processes_cores"] = {name: round(m.cores, 2) for name, m in load.items()}
    print(f"cores used by other processes meanwhile: {results['machine']['other_processes_cores']}")
    results["machine"]["load_average_at_end"] = os.getloadavg()
    summary(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
