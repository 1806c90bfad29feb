"""Trains the tiny test model (tests/test_training.py's config and samples) through `modrwkv.training.train`
with Lightning's FSDP and DeepSpeed ZeRO-1/2/3 strategies on CPU, one process, and prints each run's losses and
whether its final checkpoint was written, as JSON: `python tests/sharded_cpu.py OUT_DIR [STRATEGY ...]`.

Run by tests/test_training.py in a process of its own: DeepSpeed picks its accelerator when imported, and both
initialise torch.distributed (gloo). Lightning runs these strategies on CUDA only, and refuses CPU before
anything starts, though torch's FSDP and DeepSpeed's CPU accelerator run there; the two subclasses below
lift only those refusals (and give DeepSpeed the device index it asks of a GPU), so everything else is the
real path: our strategy options, Lightning's wrapping, precision plugins, gradient clipping and checkpointing,
and ZeRO-3's hooks on our modules. On an H200 (2026-12-04) FSDP and ZeRO-3 failed where these fail without
their fixes.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ["DS_ACCELERATOR"] = "cpu"

import deepspeed  # noqa: E402
import torch  # noqa: E402
from lightning.fabric.utilities.seed import reset_seed  # noqa: E402
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, FSDPStrategy  # noqa: E402
from torch.distributed.fsdp import FullyShardedDataParallel  # noqa: E402

from modrwkv.training import recipe, train  # noqa: E402
from test_training import colour_samples, config  # noqa: E402

# One process needs no shared-memory collectives, whose C++ op DeepSpeed compiles at start (~35 s).
deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


class CPUFSDP(FSDPStrategy):
    """Wraps the model for a CPU device itself (Lightning passes the device's index, None on CPU, and torch's
    FSDP then looks for an accelerator); Lightning keeps a model that is already wrapped."""

    def _setup_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return super()._setup_model(FullyShardedDataParallel(model, device_id=torch.device("cpu"), **self.kwargs))


class CPUDeepSpeed(DeepSpeedStrategy):
    """Without the CUDA-only checks of `setup_environment` and `setup_distributed`; device index 0."""

    @property
    def root_device(self) -> torch.device:
        return torch.device("cpu", 0)

    def setup_environment(self) -> None:
        DDPStrategy.setup_environment(self)

    def setup_distributed(self) -> None:
        reset_seed()
        self.set_world_ranks()
        self._init_deepspeed_distributed()


def cpu_strategy(name: str, build=recipe.build_strategy):
    """`recipe.build_strategy`'s strategy with the CPU lifts above, its options unchanged."""
    strategy = build(name)
    if isinstance(strategy, FSDPStrategy):
        return CPUFSDP(**{**strategy.kwargs, "state_dict_type": strategy._state_dict_type, "process_group_backend": "gloo"})
    if name.startswith("deepspeed_stage_"):
        return CPUDeepSpeed(stage=int(name.removeprefix("deepspeed_stage_")))
    return strategy


def losses(out: Path, strategy: str) -> dict:
    cfg = config(out, strategy, max_steps=4, batch_size=8, micro_batch_size=8)
    cfg["runtime"].update(accelerator="cpu", devices=1, strategy=strategy, precision="32")
    result = train(cfg, samples=colour_samples(32))
    return {"losses": [row["loss"] for row in result.history],
            "final": result.final_dir is not None and (result.final_dir / "model.safetensors").exists()}


if __name__ == "__main__":
    recipe.build_strategy = cpu_strategy
    out = Path(sys.argv[1])
    print(json.dumps({name: losses(out, name) for name in ["auto", *sys.argv[2:]]}))
