"""How many threads a training process's CPU operations use (`runtime.threads`).

torch gives each process one intra-op (OpenMP) thread per core, and each operation waits for all of its
threads. Where another process holds a core, the thread that shares it waits for its turn at every
operation: on this project's 2-core machine with one core busy, a tiny model's training step ran 6.7x
slower on torch's 2 threads than on 1 (339 vs 2,276 tokens/s, the digits worked example). The same
happens to a run of several processes on one machine's CPU (`runtime.devices: 2` with Lightning's own
launcher, which, unlike torchrun, leaves each process torch's thread count): each process's threads are
as many as the cores. So
- `runtime.threads: N` gives each process N threads (what to set on a machine shared with other work);
- unset, a run of several CPU processes on a machine shares its threads among them, as torchrun's one
  thread per process does, unless OMP_NUM_THREADS says otherwise; a run of one process keeps torch's.
The count is set when training starts in each process and given back when it ends (train() is a library
call: the caller's setting is theirs). It is not chosen from how busy the machine looks: a count that
changed with the load would change the run's numbers (a reduction's order follows its threads), and a
resumed run would not match the uninterrupted one. Instead, where other processes kept cores busy while
the run set up (`CoreUse`, Linux), more than torch's threads leave free, a warning names the value to set.
"""

from __future__ import annotations

import logging
import math
import os
import time
import lightning.pytorch as pl
import torch
from lightning.pytorch.accelerators import CPUAccelerator

log = logging.getLogger(__name__)


def process_threads(configured: int | None, *, cpu_processes: int, default: int,
                    environment: dict[str, str] | os._Environ[str] = os.environ) -> int | None:
    """The intra-op threads of one training process: `configured` (runtime.threads) when set; else, with
    `cpu_processes` > 1 processes of the run training on this machine's CPU and no OMP_NUM_THREADS in
    `environment`, torch's `default` count shared among them (at least 1 each); else None: leave torch's."""
    if configured is not None:
        return configured
    if cpu_processes > 1 and "OMP_NUM_THREADS" not in environment:
        return max(1, default // cpu_processes)
    return None


class CoreUse:
    """The machine's busy CPU time (/proc/stat) and this process's own, from its creation on: `others()` is
    the cores other processes kept busy since, on average. None where /proc/stat is not there (not Linux)."""

    def __init__(self) -> None:
        self.wall, self.machine, self.own = time.monotonic(), _machine_busy_seconds(), _own_seconds()

    def others(self) -> float | None:
        machine = _machine_busy_seconds()
        wall = time.monotonic() - self.wall
        if machine is None or self.machine is None or wall <= 0:
            return None
        return max(0.0, (machine - self.machine) - (_own_seconds() - self.own)) / wall


def _machine_busy_seconds() -> float | None:
    """CPU seconds all cores spent busy since boot: /proc/stat's first line but its idle and iowait times."""
    try:
        with open("/proc/stat") as handle:
            ticks = [int(field) for field in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    busy = sum(ticks[:8]) - ticks[3] - ticks[4]  # user nice system idle iowait irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def busy_core_note(others: float, *, threads: int, cores: int, seconds: float) -> str | None:
    """The warning for a run whose `threads` outnumber the cores other processes left free (they kept `others`
    of the `cores` busy over `seconds`), or None: fewer than half a core busy, or threads to spare."""
    free = max(1, cores - math.ceil(others - 0.5))
    if others < 0.5 or threads <= free:
        return None
    return (f"other processes kept {others:.1f} of this machine's {cores} cores busy while the run set up (over "
            f"{seconds:.1f} s); torch's {threads} threads each wait for a busy core at every operation, which made "
            f"training up to 16x slower on a 2-core machine (docs/custom-data.md): set runtime.threads: {free} "
            f"(`--runtime.threads {free}`)")


class TrainingThreads(pl.Callback):
    """Sets each process's torch thread count for the run (`process_threads`) and gives the caller's back;
    warns where other processes' work leaves torch's threads waiting (`busy_core_note`, measured from
    `since`: the run's start)."""

    def __init__(self, configured: int | None, since: CoreUse | None = None) -> None:
        self.configured = configured
        self.since = since
        self._before: int | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        on_cpu = isinstance(trainer.accelerator, CPUAccelerator)
        threads = process_threads(self.configured, cpu_processes=trainer.num_devices if on_cpu else 1,
                                  default=torch.get_num_threads())
        if threads is not None and threads != torch.get_num_threads():
            self._before = torch.get_num_threads()
            torch.set_num_threads(threads)
            log.info("torch threads: %d in this process (was %d)", threads, self._before)
        # (a run of one process: the peers of a run of several, busy setting up too, would count as others)
        if self.since is not None and on_cpu and self.configured is None and trainer.num_devices == 1:
            seconds, others = time.monotonic() - self.since.wall, self.since.others()
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            note = None if others is None or seconds < 0.2 else busy_core_note(
                others, threads=torch.get_num_threads(), cores=cores, seconds=seconds)
            if note:
                log.warning(note)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._give_back()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._give_back()  # (Lightning calls no teardown hook after an error)

    def _give_back(self) -> None:
        if self._before is not None:
            torch.set_num_threads(self._before)
            self._before = None
