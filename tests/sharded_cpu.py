"""Trains the tiny test model (tests/test_training.py's config and samples) through `modrwkv.training.train`
with Lightning's FSDP and DeepSpeed ZeRO-1/2/3 strategies on CPU and prints each run's losses and whether its
final model was written, as JSON (rank 0); each run stops after step 2 and resumes from its checkpoint:

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/sharded_cpu.py OUT_DIR RUN ...

where a RUN is a strategy (stage 2 training) or STRATEGY:lora.

With two processes the weights are really sharded (one process holds them all: FSDP falls back to NO_SHARD).
Run by tests/test_training.py: DeepSpeed picks its accelerator when imported, and both initialise
torch.distributed (gloo). Lightning runs these strategies on CUDA only, and refuses CPU before
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

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.seed import reset_seed
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, FSDPStrategy
from torch.distributed.fsdp import FullStateDictConfig, FullyShardedDataParallel, OptimStateKeyType, StateDictType
from torch.distributed.fsdp.api import FullOptimStateDictConfig

from modrwkv.training import recipe, train
from test_training import colour_samples, config


class CPUFSDP(FSDPStrategy):
    """Wraps the model for a CPU device itself (Lightning passes the device's index, None on CPU, and torch's
    FSDP then looks for an accelerator); Lightning keeps a model that is already wrapped. The training state's
    full state dict is gathered as Lightning does but without offloading to the CPU (where it already is:
    torch's FSDP crashed doing so in a two-process run)."""

    def _full_state_dict(self):
        return FullyShardedDataParallel.state_dict_type(
            self.model, StateDictType.FULL_STATE_DICT, FullStateDictConfig(offload_to_cpu=False, rank0_only=True),
            FullOptimStateDictConfig(offload_to_cpu=False, rank0_only=True))

    def lightning_module_state_dict(self) -> dict[str, torch.Tensor]:
        with self._full_state_dict():
            return self.model.state_dict()

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict:
        optimizer = getattr(optimizer, "_optimizer", optimizer)  # Lightning's wrapper
        with self._full_state_dict():
            state = FullyShardedDataParallel.optim_state_dict(self.model, optimizer)
        if self.global_rank == 0:  # the standard layout, as Lightning stores it
            state = FullyShardedDataParallel.rekey_optim_state_dict(state, OptimStateKeyType.PARAM_ID, self.model)
        return state

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


class StopAfter(pl.Callback):
    """Ends training after optimizer step `step` on every process, as a signal would (a checkpoint is there)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, *_: object) -> None:
        if trainer.global_step == self.step:
            trainer.should_stop = True


LORA = {"rank": 4, "alpha": 8.0, "dropout": 0.0}


def losses(out: Path, run: str, devices: int = 1, stop_after: int | None = None) -> dict:
    """Four steps of 8 samples (8 // devices per process) of run "STRATEGY" (stage 2) or "STRATEGY:lora" on
    `devices` CPU processes, in out/RUN; with `stop_after`, stopped after that step and resumed from its
    checkpoint in a second `train` call."""
    strategy, _, stage = run.partition(":")
    options = {"stage": "lora", "lora": LORA} if stage == "lora" else {}
    cfg = config(out, run.replace(":", "-"), max_steps=4, batch_size=8, micro_batch_size=8 // devices, **options)
    cfg["runtime"].update(accelerator="cpu", devices=devices, strategy=strategy, precision="32")
    history = []
    if stop_after is not None:
        cfg["output"]["save_every"] = stop_after
        history = train(cfg, samples=colour_samples(32), callbacks=[StopAfter(stop_after)]).history
    result = train(cfg, samples=colour_samples(32), resume=stop_after is not None)
    return {"losses": [row["loss"] for row in history + result.history],
            "final": result.final_dir is not None and (result.final_dir / "model.safetensors").exists()}


if __name__ == "__main__":
    os.environ["DS_ACCELERATOR"] = "cpu"  # before DeepSpeed's first import
    import deepspeed

    # The shared-memory collectives' C++ op, which DeepSpeed would compile at start (~35 s), is not needed.
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    recipe.build_strategy = cpu_strategy
    world = int(os.environ.get("WORLD_SIZE", "1"))
    results = {name: losses(Path(sys.argv[1]), name, world, stop_after=2) for name in sys.argv[2:]}
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(results))
