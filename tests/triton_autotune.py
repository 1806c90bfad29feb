"""Fewer autotuning configurations for Triton kernels, for GPU runs that cannot wait for fla's full
autotuning (test and bench support; the library never narrows it).

fla autotunes each Triton kernel the first time it meets a shape: every configuration its list keeps
after pruning is compiled and timed, hundreds for the chunk path (on an H200, 2026-12-04, the first
bf16 training step did not finish in 180 s). `keep_configs(n)` keeps `n` of each kernel's pruned
configurations, spread evenly over them ordered from the least shared memory (fewest pipeline stages,
smallest blocks, fewest warps) to the most: n=1 is the cheapest, which is what tests want (results,
not speed); benchmarks keep several so the kernels are still tuned among real alternatives and say
how many they kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _footprint(config: Any) -> tuple:
    return config.num_stages, sorted(config.kwargs.values()), config.num_warps


def spread(configs: list, n: int) -> list:
    """`n` of `configs` evenly spread from the smallest footprint to the largest (all if n >= len)."""
    ordered = sorted(configs, key=_footprint)
    if n >= len(ordered):
        return ordered
    if n == 1:
        return ordered[:1]
    return [ordered[round(i * (len(ordered) - 1) / (n - 1))] for i in range(n)]


def keep_configs(n: int) -> Callable[[], None]:
    """From now on every Triton autotuner benchmarks at most `n` configurations per kernel; returns
    the function that restores Triton's own pruning."""
    from triton.runtime import autotuner

    prune = autotuner.Autotuner.prune_configs

    def pruned_then_spread(self, kwargs):
        return spread(prune(self, kwargs), n)

    def restore() -> None:
        autotuner.Autotuner.prune_configs = prune

    autotuner.Autotuner.prune_configs = pruned_then_spread
    return restore
