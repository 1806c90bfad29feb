"""The chunked linear + cross-entropy (`modrwkv.lm.ops.cross_entropy`) against the plain head +
`F.cross_entropy`, in one process, interleaved (A/B/A/B...): training-step time and peak live tensor
bytes.

    taskset -c 0 .venv/bin/python bench/bench_loss.py              # ~3 minutes on one core
    .venv/bin/python bench/bench_loss.py --rounds 3 --ctx 128      # a quick look

Cases (random weights of the 0.1B shape, 12 x 768, vocab 65536; every token supervised):
  step     RWKV-7 forward + loss + backward at batch 1 x --ctx tokens, fp32: the whole training step
           (the LM trains, so the head's weight gradient is built).
  loss     the head + loss alone on --loss-rows rows (more than one chunk), forward + backward.
A ratio is the median over rounds of chunked / plain time in that round; the 1-minute load average
is printed beside it. Peak bytes are measured in a separate round with `LiveTensorBytes`.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from modrwkv.lm import RWKV7, RWKV7Config
from modrwkv.lm.ops.cross_entropy import CHUNK_ROWS, linear_cross_entropy, linear_cross_entropy_reference
from modrwkv.training.memory import LiveTensorBytes

LOSSES = {"plain": linear_cross_entropy_reference, "chunked": linear_cross_entropy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--ctx", type=int, default=512)
    parser.add_argument("--loss-rows", type=int, default=CHUNK_ROWS + CHUNK_ROWS // 2)
    args = parser.parse_args()
    torch.manual_seed(0)
    config = RWKV7Config(n_layer=12, n_embd=768, vocab_size=65536, head_size=64)
    model = RWKV7(config)
    tokens = torch.randint(0, config.vocab_size, (1, args.ctx + 1))
    hidden_rows = torch.randn(args.loss_rows, config.n_embd, requires_grad=True)
    head = model.head.weight
    targets = torch.randint(0, config.vocab_size, (args.loss_rows,))

    def step(loss_fn) -> None:
        model.zero_grad(set_to_none=True)
        hidden = model(tokens[:, :-1], logits="none").hidden[0]
        loss_fn(hidden, head, tokens[0, 1:]).backward()

    def loss_only(loss_fn) -> None:
        head.grad = hidden_rows.grad = None
        loss_fn(hidden_rows, head, targets).backward()

    print(f"# {platform.machine()}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, CHUNK_ROWS {CHUNK_ROWS}", flush=True)
    for name, run in (("step", step), (f"loss {args.loss_rows} rows", loss_only)):
        peaks = {}
        for label, fn in LOSSES.items():
            run(fn)  # warm-up, and the gradients exist before the measured step, as in training
            with LiveTensorBytes() as tracker:
                run(fn)
            peaks[label] = tracker.peak
        times: dict[str, list[float]] = {label: [] for label in LOSSES}
        loads = []
        for _ in range(args.rounds):
            for label, fn in LOSSES.items():
                start = time.perf_counter()
                run(fn)
                times[label].append(time.perf_counter() - start)
            loads.append(os.getloadavg()[0])
        ratio = statistics.median(c / p for c, p in zip(times["chunked"], times["plain"]))
        print(f"{name:24s} plain {statistics.median(times['plain']):7.3f} s  chunked "
              f"{statistics.median(times['chunked']):7.3f} s  chunked/plain {ratio:.3f} (median of {args.rounds} "
              f"rounds; load {min(loads):.2f}-{max(loads):.2f})  peak live GiB: plain "
              f"{peaks['plain'] / 2**30:.3f}, chunked {peaks['chunked'] / 2**30:.3f}", flush=True)


if __name__ == "__main__":
    main()
