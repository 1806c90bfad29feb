"""What a training data loader's worker processes run: `ProcessedDataset` (the processor per sample),
`DroppingCollator` (-> `TrainBatch`) and `init_worker`, each worker's start.

They live outside `modrwkv.training`, whose import loads PyTorch Lightning (seconds): a worker started
with spawn or forkserver (macOS's and Windows' default, and Linux's from Python 3.14) imports the
modules of what it unpickles, and would otherwise pay that at every start of the loader.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import signal
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data.sample import Sample
from .collator import Batch, Collator
from .processor import ModRWKVProcessor, ProcessedSample, SampleTooLong

log = logging.getLogger(__name__)

DROP_REASONS = ("too_long", "bad_media")  # why `ProcessedDataset` gives a sample up


@dataclasses.dataclass
class TrainBatch:
    """A collated micro-batch (None when every sample of it was dropped) and the drop counts.

    `dropped` is a plain dict holding every reason, zeros included: Lightning's FSDP precision plugin
    rebuilds the batch's mappings as dicts of their items, which turned an empty Counter (no drops)
    into {} and the step's lookup of a reason into a KeyError (H200, 2026-12-04)."""

    batch: Batch | None
    dropped: dict[str, int]

    def to(self, device: torch.device | str) -> TrainBatch:
        return TrainBatch(None if self.batch is None else self.batch.to(device), self.dropped)


class ProcessedDataset(Dataset):
    """Processes samples on access; returns (ProcessedSample or None, drop reason or "")."""

    def __init__(self, samples: Sequence[Sample], processor: ModRWKVProcessor) -> None:
        self.samples = samples
        self.processor = processor

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[ProcessedSample | None, str]:
        sample = self.samples[index]
        try:
            return self.processor(sample), ""
        except SampleTooLong as exc:
            log.warning("dropping a sample: %s", exc)
            return None, "too_long"
        except (ValueError, OSError) as exc:  # media that do not decode
            log.warning("dropping a sample: %s", exc)
            return None, "bad_media"


class DroppingCollator:
    """Collates what processing kept and counts what it dropped."""

    def __init__(self, collator: Collator) -> None:
        self.collator = collator

    def __call__(self, items: Sequence[tuple[ProcessedSample | None, str]]) -> TrainBatch:
        kept = [s for s, _ in items if s is not None]
        dropped = dict.fromkeys(DROP_REASONS, 0)
        for sample, reason in items:
            if sample is None:
                dropped[reason] = dropped.get(reason, 0) + 1
        return TrainBatch(self.collator(kept) if kept else None, dropped)


def init_worker(setup: Callable[[], None] | None, worker_id: int, rank: int) -> None:
    """A data-loader worker's start: the process-wide settings `setup` makes (a worker started with
    spawn or forkserver has none of its parent's), then the per-worker seeding that Lightning's
    seed_everything(workers=True) would have installed had the loader no init function (`seed_worker`)."""
    # A terminal's Ctrl-C and a scheduler's SIGTERM reach every process of the job. A worker that died of
    # one would end the run at once ("DataLoader worker exited unexpectedly"), before the main process
    # could finish its step and save: the main process alone answers them, and ends its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if setup is not None:
        setup()
    seed_worker(worker_id, rank)


_MASK64 = (1 << 64) - 1


def seed_worker(worker_id: int, rank: int) -> None:
    """Seeds torch, `random` and NumPy in a data-loader worker as Lightning's `pl_worker_init_function`
    (the worker init function `seed_everything(workers=True)` installs) does, so that each worker draws
    the same numbers (tests/test_loader_workers.py pins the equality); importing that function would import
    Lightning, which this module avoids.

    The contract: the loader seeded the worker's torch with base + worker_id, so the base comes back
    from torch. (base, worker_id, rank) packed into one integer is mixed with MurmurHash3's 64-bit
    finalizer, then stepped with Knuth's MMIX linear congruential generator: its first number seeds
    torch, the next two, as (second << 32) | third, seed `random`. NumPy's global generator takes four
    words of `SeedSequence([base, worker_id, rank])`."""
    base = torch.initial_seed() - worker_id
    state = (base << 32) | (worker_id << 16) | rank
    for multiplier in (0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53):
        state ^= state >> 33
        state = (state * multiplier) & _MASK64
    state ^= state >> 33
    draws = []
    for _ in range(3):
        state = (state * 6364136223846793005 + 1) & _MASK64
        draws.append(state)
    torch.manual_seed(draws[0])
    random.seed((draws[1] << 32) | draws[2])
    np.random.seed(np.random.SeedSequence([base, worker_id, rank]).generate_state(4))
