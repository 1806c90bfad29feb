"""How many threads a training process's CPU operations use (`runtime.threads`).

- `runtime.threads: N` gives each process of the run N threads (what to set on a machine shared with
  other work: `modrwkv.busy_cores` says why);
- unset, a run of one process keeps torch's count; a run of several CPU processes on one machine gets
  Lightning's share of the cores (its launchers set it, and OMP_NUM_THREADS, unless OMP_NUM_THREADS was set).
The count is not chosen from how busy the machine looks (a resumed run would not match the uninterrupted
one); where, for a run of one CPU process, other processes kept cores busy while the run set up, or over a stretch of its training (a job
started after it), more than torch's threads leave free, a warning names the value to set, once a run.
`train()` gives the caller's count (and OMP_NUM_THREADS) back when it returns (`callers_threads`): it is a
library call.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator

import lightning.pytorch as pl
import torch
from lightning.pytorch.accelerators import CPUAccelerator

from ..busy_cores import BusyCoreWatch, CoreUse, busy_core_note

log = logging.getLogger(__name__)


class TrainingThreads(pl.Callback):
    """Sets each process's torch thread count to `configured` (runtime.threads) as the run sets up, and warns
    once where other processes' work leaves torch's threads waiting (`busy_core_note`): measured from
    `since` (the run's start) to its setup, then over each stretch of training (`BusyCoreWatch`)."""

    def __init__(self, configured: int | None, since: CoreUse | None = None) -> None:
        self.configured = configured
        self.since = since
        self.watch: BusyCoreWatch | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.configured is not None:  # (then watched as well: a count set for an idle machine may meet a busy one)
            torch.set_num_threads(self.configured)
        # a run of one process on the CPU: the peers of a run of several, busy setting up too, would count as
        # others (and Lightning shares the cores among them)
        if self.since is None or not isinstance(trainer.accelerator, CPUAccelerator) or trainer.num_devices != 1:
            return
        seconds, others = time.monotonic() - self.since.wall, self.since.others()
        if others is not None and seconds >= 0.2 and (note := busy_core_note(
                others, threads=torch.get_num_threads(), cores=len(self.since.cores),
                during=f"while it set up (over {seconds:.1f} s)",
                remedy="set runtime.threads: {free} (`--runtime.threads {free}`; the quickstart: `--threads {free}`)")):
            log.warning(note)
            return
        # a run under way keeps its count: a checkpoint and --resume change it (threads are set as a run sets up)
        self.watch = BusyCoreWatch("stop it (Ctrl-C saves a checkpoint) and continue with --resume "
                                   "--runtime.threads {free} (the quickstart: the same command with --threads {free})",
                                   what="its training")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: object, batch: object,
                           batch_idx: int) -> None:
        if self.watch is not None and (note := self.watch.check()):
            log.warning(note)


@contextlib.contextmanager
def callers_threads() -> Iterator[None]:
    """Gives back, on leaving, the torch thread count and OMP_NUM_THREADS of the caller: `runtime.threads`
    and Lightning's launchers of several processes (which set both in the process that calls fit) change them
    for the run only."""
    threads, variable = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if variable is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = variable
