"""Learning-rate schedules, as multipliers of the peak lr for `torch.optim.lr_scheduler.LambdaLR`.

Both span the whole run (`total_steps`), not an arbitrary "epoch" length as in the authors' code:
- `cosine`: linear warm-up, then cosine decay to `lr_final` (what the authors call "wsd").
- `wsd`: a true warm-up-stable-decay: linear warm-up, constant peak, then a linear decay to
  `lr_final` over the last `decay_fraction` of the steps.
- `constant`: linear warm-up, then the peak.
Warm-up reaches `lr * (s + 1) / warmup` at step s, so the first update is not wasted at lr 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from .config import Schedule


def lr_at(step: int, *, schedule: Schedule, lr: float, lr_final: float, total_steps: int,
          warmup_steps: int, decay_fraction: float = 0.2) -> float:
    """The learning rate used by the update of step `step` (0-based)."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return lr_final + (lr - lr_final) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "wsd":
        decay_steps = max(1, round(decay_fraction * total_steps))
        decay_start = max(warmup_steps, total_steps - decay_steps)
        if step < decay_start:
            return lr
        progress = min(1.0, (step - decay_start + 1) / max(1, total_steps - decay_start))
        return lr + (lr_final - lr) * progress
    raise ValueError(f"unknown schedule {schedule!r}")


def lr_multiplier(*, schedule: Schedule, lr: float, lr_final: float, total_steps: int, warmup_steps: int,
                  decay_fraction: float = 0.2) -> Callable[[int], float]:
    """`LambdaLR`'s factor: lr_at(step) / lr."""
    def factor(step: int) -> float:
        return lr_at(step, schedule=schedule, lr=lr, lr_final=lr_final, total_steps=total_steps,
                     warmup_steps=warmup_steps, decay_fraction=decay_fraction) / lr

    return factor


def warmup_problem(*, total_steps: int, warmup_steps: int, lr: float) -> str | None:
    """What is wrong with a warm-up that does not end well before the run does, or None. A run of
    fewer steps than its warm-up never trains at its learning rate: with the default batch of 256
    and warm-up of 100, 1000 samples make 3 steps at 1-3% of `lr`, and the model learns nothing."""
    if warmup_steps and warmup_steps >= total_steps:
        peak = lr_at(total_steps - 1, schedule="constant", lr=lr, lr_final=lr, total_steps=total_steps,
                     warmup_steps=warmup_steps)
        return (f"train.warmup_steps ({warmup_steps}) is not shorter than the run ({total_steps} steps): the learning "
                f"rate never gets past {peak:.3g} (train.lr is {lr:g}). Lower train.warmup_steps (a tenth of the run "
                "is usual), or train longer (train.epochs / train.max_steps, or a smaller train.batch_size)")
    return None
