"""How many threads a training process's CPU operations use (`runtime.threads`).

torch gives each process one intra-op (OpenMP) thread per core, and each operation waits for all of its
threads. Where another process holds a core, the thread that shares it waits for its turn at every
operation: on this project's 2-core machine with one core busy, a tiny model's training step ran 16x
slower on torch's 2 threads than on 1 (147-207 vs 2,534-3,242 tokens/s, the digits worked example). So
- `runtime.threads: N` gives each process of the run N threads (what to set on a machine shared with
  other work);
- unset, a run of one process keeps torch's count; a run of several CPU processes on one machine gets
  Lightning's share of the cores (its launchers set it, and OMP_NUM_THREADS, unless OMP_NUM_THREADS was set).
The count is not chosen from how busy the machine looks: a count that changed with the load would change
the run's numbers (a reduction's order follows its threads), and a resumed run would not match the
uninterrupted one. Instead, where other processes kept cores busy while the run set up, or over a stretch
of `CHECK_SECONDS` of its training (a job started after it), more than torch's threads leave free
(`CoreUse`, Linux), a warning names the value to set, once a run. Other processes include the run's own
DataLoader workers (`data.num_workers`), whose cores torch's threads wait for just the same. `train()` gives the
caller's count (and OMP_NUM_THREADS) back when it returns (`callers_threads`): it is a library call.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Iterator

import lightning.pytorch as pl
import torch
from lightning.pytorch.accelerators import CPUAccelerator

log = logging.getLogger(__name__)


class CoreUse:
    """The busy CPU time of the cores this process may run on (/proc/stat's lines of its CPU affinity) and
    this process's own, when it is made: `others()` is the cores other processes kept busy since, on
    average (steal time too: a core the hypervisor gave away is not free either). None where /proc/stat
    cannot be read (not Linux)."""

    def __init__(self) -> None:
        self.cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        self.wall, self.machine, self.own = time.monotonic(), _busy_seconds(self.cores), _own_seconds()

    def others(self) -> float | None:
        machine = _busy_seconds(self.cores)
        wall = time.monotonic() - self.wall
        if machine is None or self.machine is None or wall <= 0:
            return None
        others = max(0.0, (machine - self.machine) - (_own_seconds() - self.own)) / wall
        return min(others, float(len(self.cores)))


def _busy_seconds(cores: list[int]) -> float | None:
    """CPU seconds `cores` spent busy since boot: their /proc/stat lines but the idle and iowait times."""
    if not cores:
        return None
    wanted, busy = {f"cpu{core}" for core in cores}, 0
    try:
        with open("/proc/stat") as handle:
            for line in handle:
                name, *fields = line.split()
                if name in wanted:
                    ticks = [int(field) for field in fields[:8]]  # user nice system idle iowait irq softirq steal
                    busy += sum(ticks) - ticks[3] - ticks[4]
                    wanted.discard(name)
    except (OSError, ValueError, IndexError):
        return None
    return None if wanted else busy / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


# How long a stretch of training the busy cores are measured over, each stretch after the last.
CHECK_SECONDS = 30.0


def busy_core_note(others: float, *, threads: int, cores: int, seconds: float, training: bool = False) -> str | None:
    """The warning for a run whose `threads` outnumber the cores other processes left free (they kept `others`
    of the `cores` busy over `seconds`, while the run set up or, `training`, while it trained), or None: fewer
    than half a core busy, or threads to spare."""
    free = max(1, cores - math.ceil(others - 0.5))
    if others < 0.5 or threads <= free:
        return None
    during = f"over {seconds:.0f} s of its training" if training else f"while it set up (over {seconds:.1f} s)"
    # a run under way keeps its count: a checkpoint and --resume change it (threads are set as a run sets up)
    how = (f"stop it (Ctrl-C saves a checkpoint) and continue with --resume --runtime.threads {free}" if training
           else f"set runtime.threads: {free} (`--runtime.threads {free}`)")
    return (f"other processes kept {others:.1f} of the {cores} cores this run may use busy {during}; torch's "
            f"{threads} threads each wait for a busy core at every operation, which made training up to 16x slower "
            f"on a 2-core machine (docs/custom-data.md): {how}")


class TrainingThreads(pl.Callback):
    """Sets each process's torch thread count to `configured` (runtime.threads) as the run sets up; unset,
    warns once where other processes' work leaves torch's threads waiting (`busy_core_note`): measured from
    `since` (the run's start) to its setup, then over each `CHECK_SECONDS` of training."""

    def __init__(self, configured: int | None, since: CoreUse | None = None) -> None:
        self.configured = configured
        self.since = since
        self.watching: CoreUse | None = None  # the stretch of training measured now; None: not measured

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.configured is not None:
            torch.set_num_threads(self.configured)
            return
        # a run of one process on the CPU: the peers of a run of several, busy setting up too, would count as
        # others (and Lightning shares the cores among them)
        if self.since is None or not isinstance(trainer.accelerator, CPUAccelerator) or trainer.num_devices != 1:
            return
        seconds = time.monotonic() - self.since.wall
        if seconds < 0.2 or not self._warned(self.since, seconds, training=False):
            self.watching = CoreUse()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: object, batch: object,
                           batch_idx: int) -> None:
        if self.watching is None or (seconds := time.monotonic() - self.watching.wall) < CHECK_SECONDS:
            return
        self.watching = None if self._warned(self.watching, seconds, training=True) else CoreUse()

    def _warned(self, since: CoreUse, seconds: float, *, training: bool) -> bool:
        others = since.others()
        note = None if others is None else busy_core_note(others, threads=torch.get_num_threads(),
                                                          cores=len(since.cores), seconds=seconds, training=training)
        if note:
            log.warning(note)
        return note is not None


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
