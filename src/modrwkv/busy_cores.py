"""Whether other processes hold the cores torch's threads need, and the warning that says what to set.

torch gives each process one intra-op (OpenMP) thread per core, and each operation waits for all of its
threads. Where another process holds a core, the thread that shares it waits for its turn at every
operation: on this project's 2-core machine with one core busy, a tiny model's training step ran 16x
slower on torch's 2 threads than on 1, and `modrwkv eval` of 150 clips took 5 min rather than 26 s.
The thread count is never chosen from the load (a count that followed the load would change a run's
numbers, since a sum's order follows its threads); training (`runtime.threads`) and the inference
commands (`--threads`) take one, and warn where the count they run with waits for busy cores (Linux:
/proc/stat). Training checks this as it sets up and over each `CHECK_SECONDS` of its steps; `eval`
over each stretch of its generation (`BusyCoreWatch`).
"""

from __future__ import annotations

import math
import os
import time

import torch

# How long a stretch of work the busy cores are measured over, each stretch after the last.
CHECK_SECONDS = 30.0


class CoreUse:
    """The busy CPU time of the cores this process may run on (/proc/stat's lines of its CPU affinity) and
    this process's own, when it is made: `others()` is the cores other processes kept busy since, on
    average (steal time too: a core the hypervisor gave away is not free either). Other processes include
    this one's children (DataLoader workers), whose cores torch's threads wait for just the same. None
    where /proc/stat cannot be read (not Linux)."""

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


def busy_core_note(others: float, *, threads: int, cores: int, during: str, remedy: str) -> str | None:
    """The warning for work whose `threads` outnumber the cores other processes left free (they kept `others`
    of the `cores` busy `during` it), or None: fewer than half a core busy, or threads to spare. `remedy`
    says what to do, `{free}` standing for the thread count that leaves the busy cores alone."""
    free = max(1, cores - math.ceil(others - 0.5))
    if others < 0.5 or threads <= free:
        return None
    return (f"other processes kept {others:.1f} of the {cores} cores this run may use busy {during}; torch's "
            f"{threads} threads each wait for a busy core at every operation, which made training up to 16x slower "
            f"on a 2-core machine (docs/custom-data.md): {remedy.format(free=free)}")


class BusyCoreWatch:
    """Measures the busy cores over each stretch of `CHECK_SECONDS` from its making; `check()`, cheap until a
    stretch is over, returns the note (`busy_core_note`, `remedy` as there) the first time torch's threads
    wait for busy cores, and None otherwise and ever after."""

    def __init__(self, remedy: str, what: str) -> None:
        self.remedy, self.what = remedy, what  # what: the work measured, "its training"
        self.since: CoreUse | None = CoreUse()

    def check(self) -> str | None:
        if self.since is None or (seconds := time.monotonic() - self.since.wall) < CHECK_SECONDS:
            return None
        others = self.since.others()
        note = None if others is None else busy_core_note(
            others, threads=torch.get_num_threads(), cores=len(self.since.cores),
            during=f"over {seconds:.0f} s of {self.what}", remedy=self.remedy)
        self.since = None if note or others is None else CoreUse()
        return note
