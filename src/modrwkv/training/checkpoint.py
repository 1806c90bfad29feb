"""Checkpoints a user can load as they are, and resume from exactly.

Layout of a run's output folder:

    config.yaml                      the resolved training config
    checkpoints/step-00001000/       config.json + model.safetensors (+ encoders/, lora.*):
                                     a `ModRWKV.from_pretrained` folder, plus
                                     training_state.ckpt (Lightning: optimizer, scheduler, loop
                                     progress; no weights, they are in the folder)
    checkpoints/latest               name of the newest complete checkpoint
    best/                            the best-validated weights so far (train.val_every; validation.py)
    val_per_answer.md                final/'s validation per answer, where the val answers are labels or options
    final/                           the trained model (from_pretrained format, its weights hard links to
                                     the last checkpoint's where the file system has them; LoRA runs: the base
                                     model + lora.safetensors, see `modrwkv merge-lora`)
    logs/                            metrics.csv (+ TensorBoard events)

Every folder is written under a temporary name and renamed when complete, and `latest` is
replaced atomically, so a run killed at any moment leaves only complete checkpoints behind. The
data position needs no saving: the batch order is a function of the seed, and the resumed run
skips `global_step * accumulation` micro-batches. Nor does the random-number state: each optimizer
step of each process starts from generators seeded by (seed, step, rank) (`StepSeeds`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import yaml
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, FSDPStrategy

from ..lm.model import INITIAL_STATE_NAME
from ..multimodal import ModRWKV
from ..multimodal.model import WEIGHTS_NAME
from ..run_folder import CHECKPOINTS, FINAL, LATEST, TRAINING_STATE, latest_checkpoint
from ..textfiles import write_text_atomically
from .config import LoRAConfig, TrainConfig, dump_config
from .lora import lora_unwrapped, save_lora

log = logging.getLogger(__name__)



def export_model(model: ModRWKV, folder: str | Path, lora: LoRAConfig | None,
                 training_config: dict[str, Any] | None = None) -> None:
    """The `save_pretrained` folder of `model` (its model card shows `training_config`); with LoRA
    layers, the base model plus the LoRA files."""
    with lora_unwrapped(model.lm):
        model.save_pretrained(folder, training_config=training_config)
    if lora is not None:
        save_lora(model.lm, lora, folder)


def step_folder_name(step: int) -> str:
    return f"step-{step:08d}"


# final/'s files hard-linked to the checkpoint's: the model's weights, which `save_pretrained` always writes
# under a temporary name and renames, so a save into final/ gives it new files and leaves the checkpoint's
# alone; they keep a finished run from storing its weights twice (6 GB for a 1.5B model in fp32). The rest
# is copied: save_pretrained writes config.json, the model card and an encoder's folder in place (and
# safetensors before 0.6 its files too), so linked, a model saved into final/ changed the checkpoint as well.
LINKED_INTO_FINAL = (WEIGHTS_NAME, INITIAL_STATE_NAME)


def replace_folder(tmp: Path, folder: Path) -> None:
    """Puts the complete folder `tmp` in the place of `folder` (a model, a checkpoint): the old one is
    renamed aside, not deleted, before the new one takes its name, and deleted after, so that a kill
    while a deletion is under way never leaves `folder` with some of its files gone (at worst `folder`
    is missing, and `aside_name(folder)` still holds the old one whole)."""
    old = aside_name(folder)
    shutil.rmtree(old, ignore_errors=True)
    if folder.is_dir():
        folder.rename(old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def claim_folder(tmp: Path, folder: Path) -> None:
    """Renames the complete folder `tmp` to `folder`, unless a complete checkpoint has that name already
    (another process that wrote the same checkpoint alone got there first, see `PretrainedCheckpoint.save`):
    `tmp` is deleted then. The rename is atomic and fails onto a folder that is not empty, so of processes
    claiming one name at once exactly one succeeds, and none replaces a folder another may be reading."""
    try:
        os.rename(tmp, folder)
    except OSError:
        if not (folder / TRAINING_STATE).is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def aside_name(folder: Path) -> Path:
    """Where `replace_folder` keeps the folder it replaces until the new one is in place."""
    return folder.with_name(f".{folder.name}.old")


def write_final(output_dir: str | Path, checkpoint: Path) -> Path:
    """`final/`: the last step's checkpoint without its training state (its weights linked, not copied).
    Also what a run resumed at its last step writes, when it was killed after that checkpoint but
    before `final/` was complete."""
    final = Path(output_dir) / FINAL
    tmp = final.with_name(f".{FINAL}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    checkpoint = Path(checkpoint)
    failures: list[OSError] = []  # copytree reports a file that failed as text: the first, as raised

    def link_or_copy(source: str, destination: str) -> None:
        try:
            if Path(source).parent == checkpoint and Path(source).name in LINKED_INTO_FINAL:
                with contextlib.suppress(OSError):  # a file system without hard links: copied
                    os.link(source, destination)
                    return
            shutil.copy2(source, destination)
        except OSError as exc:
            failures.append(exc)
            raise

    try:
        shutil.copytree(checkpoint, tmp, ignore=shutil.ignore_patterns(TRAINING_STATE), copy_function=link_or_copy)
    except OSError as exc:  # a full disk: nothing half-written stays, and the checkpoint still has it all
        shutil.rmtree(tmp, ignore_errors=True)
        cause = failures[0] if failures else exc
        raise OSError(cause.errno, f"{cause.strerror or cause}; the trained model was not written (its partial files "
                      f"are deleted); {checkpoint} holds it: make room and continue with --resume to write it",
                      str(final)) from exc
    replace_folder(tmp, final)
    log.info("saved the trained model to %s", final)
    return final


@contextlib.contextmanager
def failing_together(trainer: pl.Trainer) -> Iterator[None]:
    """A write that may fail on some ranks only (rank 0's export, one rank's part of a sharded state): as
    the block ends, every rank learns each rank's outcome, and if one failed, every rank raises, that rank
    its error and the others a copy (an OSError as it was, so that every rank says the same). Without it
    the other ranks wait at the next collective for the rank that left the run, for ever where its
    process lives on, a job burning its hours until its wall time. Every rank must enter it: its end is a
    collective, and so a barrier. In one process the block's error is raised as it is. An error every
    rank raises this way is `raised_on_every_rank`: the ranks can still take part in a collective together
    (the checkpoint `progress.SaveOnError` saves)."""
    error: Exception | None = None
    try:
        yield
    except Exception as exc:  # not a second Ctrl-C (a BaseException), which stops this rank at once, unsaved
        error = exc
    if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        outcomes: list[dict[str, Any] | None] = [None] * trainer.world_size
        torch.distributed.all_gather_object(outcomes, None if error is None else _portable(error, trainer.global_rank))
        failure = next((outcome for outcome in outcomes if outcome is not None), None)
        if error is None and failure is not None:
            log.error("rank %d could not write: %s", failure["rank"], failure["text"])
            error = _copied(failure)
        if error is not None:
            setattr(error, EVERY_RANK, True)
    if error is not None:
        raise error


EVERY_RANK = "modrwkv_raised_on_every_rank"  # the attribute `failing_together` sets on the errors it raises on every rank


def raised_on_every_rank(error: BaseException) -> bool:
    """Whether every rank of the run raised `error` at the same point (`failing_together`)."""
    return bool(getattr(error, EVERY_RANK, False))


def _portable(error: Exception, rank: int) -> dict[str, Any]:
    """What another rank needs to raise `error` as well, in plain types."""
    portable = {"rank": rank, "type": type(error).__name__, "text": str(error)}
    if isinstance(error, OSError):
        portable["os_error"] = (error.errno, error.strerror, error.filename, error.filename2)
    return portable


def _copied(failure: dict[str, Any]) -> Exception:
    if "os_error" in failure:
        number, strerror, filename, filename2 = failure["os_error"]
        # One without a strerror (OSError("quota exceeded")) is its text: still an OSError, which `save` names.
        return OSError(number, strerror, filename, None, filename2) if strerror else OSError(failure["text"])
    return RuntimeError(f"{failure['type']} on rank {failure['rank']}: {failure['text']}")


def _together(trainer: pl.Trainer, alone: bool) -> contextlib.AbstractContextManager[None]:
    """`failing_together` for a save by all processes; nothing for one process saving alone (no collective)."""
    return contextlib.nullcontext() if alone else failing_together(trainer)


class RunConfigWriter(pl.Callback):
    """Writes the run's config.yaml (on rank 0) as training sets up: after every rank has connected, and
    inside `failing_together`, so that a rank 0 that cannot write it (a full disk) ends every rank with
    its error. Written before the ranks connected, its failure ended rank 0 only, and the others waited
    for it at the rendezvous until the process group's timeout (30 minutes)."""

    def __init__(self, output_dir: Path, config: TrainConfig, header: str) -> None:
        self.output_dir = output_dir
        self.config = config
        self.header = header

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        with failing_together(trainer):
            if trainer.is_global_zero:
                self.output_dir.mkdir(parents=True, exist_ok=True)
                dump_config(self.config, self.output_dir / "config.yaml", header=self.header)


@contextlib.contextmanager
def full_parameters(trainer: pl.Trainer, module: pl.LightningModule) -> Iterator[None]:
    """Makes the full (unsharded) weights visible on rank 0 under FSDP and DeepSpeed ZeRO-3; a
    no-op for other strategies. Every rank must enter it."""
    strategy = trainer.strategy
    if isinstance(strategy, FSDPStrategy):  # (a subclass too: its weights are as sharded)
        from torch.distributed.fsdp import FullyShardedDataParallel

        # (offloading to the CPU what is on the CPU already crashed torch's FSDP in a process of a two-process run)
        with FullyShardedDataParallel.summon_full_params(strategy.model, writeback=False, rank0_only=True,
                                                         offload_to_cpu=strategy.root_device.type != "cpu"), \
                _fsdp_units_unwrapped(module):
            yield
    elif getattr(strategy, "zero_stage_3", False):
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
            yield
    else:
        yield


@contextlib.contextmanager
def _fsdp_units_unwrapped(module: torch.nn.Module) -> Iterator[None]:
    """The modules FSDP wrapped as units (each RWKV block) put back in their parents' place for the block's
    length, so that saving reads them as the plain modules they hold, full inside `summon_full_params`.
    Through the wrappers `state_dict()` runs FSDP's state-dict hooks, which expect the module tree FSDP
    wrapped: saving a LoRA run's base model (`lora.lora_unwrapped` takes the LoRA layers out) failed with
    "FSDP assumes blocks.0.att.receptance.lora_a is in the state_dict"."""
    from torch.distributed.fsdp import FullyShardedDataParallel

    swapped = [(parent, name, child) for parent in module.modules() for name, child in parent.named_children()
               if isinstance(child, FullyShardedDataParallel)]
    for parent, name, child in swapped:
        parent._modules[name] = child.module
    try:
        yield
    finally:
        for parent, name, child in swapped:
            parent._modules[name] = child


def replicated(trainer: pl.Trainer) -> bool:
    """Whether every process of the run holds the whole model and optimizer state, the same at each optimizer
    step's end, so that any one of them can write the run's checkpoint alone: one process, or DDP (a full
    replica on each). FSDP shards the weights and the optimizer state, DeepSpeed the optimizer state (ZeRO
    stage 1 and up) and more: each process holds its part only."""
    strategy = trainer.strategy
    return trainer.world_size == 1 or (isinstance(strategy, DDPStrategy)
                                       and not isinstance(strategy, DeepSpeedStrategy))


def seed_step(seed: int, step: int, rank: int) -> None:
    """Seeds the process's global generators, torch's (the CPU's and every CUDA device's), NumPy's and Python's,
    for the optimizer step after `step` of process `rank` of a run seeded with `seed`: from a hash of the three,
    so that each (step, rank) draws a stream of its own."""
    digest = hashlib.sha256(f"step {seed} {step} {rank}".encode()).digest()
    torch.manual_seed(int.from_bytes(digest[:8], "little") >> 1)  # (below 2**63: any torch accepts it)
    np.random.seed(np.frombuffer(digest[8:24], dtype="<u4"))
    random.seed(int.from_bytes(digest[24:], "little"))


class StepSeeds(pl.Callback):
    """Seeds the generators as each optimizer step starts (`seed_step`): what a step draws (LoRA dropout, a
    callback's augmentation) is a function of the run's seed, the step and the process's rank alone. So
    - `--resume` draws what the uninterrupted run drew without any random-number state saved, on every process
      of a run of several: the state of one process, saved in the checkpoint and restored on every process,
      made the others draw other numbers (they draw other amounts: their micro-batches are padded to other
      lengths), also where one process saved the checkpoint alone (`progress.SaveOnError`), which cannot ask
      the others for theirs;
    - the processes of a run draw different numbers: seeded alike (`pl.seed_everything`, which builds the same
      model on each), they drew the same dropout masks for different samples wherever their shapes matched: the
      masks of a global batch were world-size copies of fewer independent draws (torchtune's `set_seed` seeds
      each process apart too, by seed + rank).
    (~0.17 ms a step on a CPU, most of it torch.manual_seed's seeding of every kind of device torch knows; no
    collective, and nothing in the checkpoint.) It must come before every callback that draws in
    `on_train_batch_start`.
    What a data-loader worker draws (nothing in modrwkv's own loading) is seeded per worker (`loader.seed_worker`)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._seeded: int | None = None  # the step whose seeds were set last

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        # The step's first micro-batch, known by the step count (a batch index restarts at each epoch of the
        # loop, which need not hold whole steps).
        if trainer.global_step != self._seeded:
            seed_step(self.seed, trainer.global_step, trainer.global_rank)
            self._seeded = trainer.global_step


class PretrainedCheckpoint(pl.Callback):
    """Saves every `save_every` optimizer steps and at the end, keeping the `keep_last` newest
    step checkpoints; writes the final model when the run completes."""

    def __init__(self, output_dir: str | Path, *, save_every: int, keep_last: int, total_steps: int,
                 lora: LoRAConfig | None) -> None:
        self.output_dir = Path(output_dir)
        self.save_every = save_every
        self.keep_last = keep_last
        self.total_steps = total_steps
        self.lora = lora
        self.last_saved = -1  # the step of the newest checkpoint this run wrote or resumed from
        self.last_checkpoint: Path | None = None  # the newest step checkpoint this run wrote
        self.writing = False  # a save is under way, or failed: an error then is the save's own (SaveOnError)
        self.final_source: Path | None = None  # what final/ is written from, when not the last step's checkpoint

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.last_saved = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if self.save_every and step != self.last_saved and step % self.save_every == 0 and step < self.total_steps:
            self.save(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step != self.last_saved:
            self.save(trainer, pl_module)
        if trainer.global_step >= self.total_steps:
            with failing_together(trainer):
                if trainer.is_global_zero:
                    write_final(self.output_dir, self.final_source or
                                self.output_dir / CHECKPOINTS / step_folder_name(trainer.global_step))

    def run_config(self) -> dict[str, Any] | None:
        """The run's resolved config.yaml (written before training starts), for the model card."""
        path = self.output_dir / "config.yaml"
        return yaml.safe_load(path.read_text()) if path.is_file() else None

    def save(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *, alone: bool = False) -> Path:
        """The checkpoint of the current step, written by every rank together (their writes end together:
        `failing_together`). `alone`: this process writes all of it by itself, with no collective, as one
        process of a `replicated` run can (`progress.SaveOnError`, at an error of this process that may
        have left the others waiting for it in a collective). Several may then write it at once, each under
        a name of its own: the first complete one takes the step's name, and one already there is kept (a
        replicated run's processes hold the same weights and state at a step's end)."""
        if alone and not replicated(trainer):
            raise ValueError(f"under {type(trainer.strategy).__name__} each process holds a part of the model: "
                             "the checkpoint is written by all of them together")
        step = trainer.global_step
        root = self.output_dir / CHECKPOINTS
        name = step_folder_name(step)
        folder = root / name
        tmp = root / (f".{name}.rank{trainer.global_rank}.tmp" if alone else f".{name}.tmp")
        writes = alone or trainer.is_global_zero
        self.writing = True
        try:
            self._write(trainer, pl_module, tmp, folder, alone=alone, writes=writes)
        except Exception as exc:
            if writes:
                shutil.rmtree(tmp, ignore_errors=True)  # half a checkpoint only takes space
            self._broken_collective(trainer, exc, alone)
            if not isinstance(exc, OSError):
                raise
            # a full disk, a quota: say which checkpoint, and what is still there
            newest = latest_checkpoint(self.output_dir)
            then = (f"{newest} is the newest complete checkpoint: make room and continue with --resume"
                    if newest is not None else "no checkpoint of this run was complete yet")
            raise OSError(exc.errno, f"{exc.strerror or exc}; the checkpoint of step {step} was not saved and its "
                          f"partial files are deleted; {then}", str(folder)) from exc
        try:  # the folder is complete: an error from here on (writing `latest`) is raised as it is
            with _together(trainer, alone):
                if writes:
                    write_text_atomically(root / LATEST, name)
                    # Only this step's predecessors make way: a newer step folder is left over from a run killed
                    # before it could point `latest` at it, and the next save of that step replaces it. So do the
                    # temporary folders of older steps: a process's own, written alone, that another claimed the
                    # name before (ended while it wrote: Lightning's launcher ends every process once one fails).
                    kept = sorted(p for p in root.glob("step-*") if p.is_dir() and p.name <= name)
                    for old in kept[: -self.keep_last]:
                        shutil.rmtree(old, ignore_errors=True)
                    for left in root.glob(".step-*.tmp"):
                        if left.name[1:].split(".")[0] < name:
                            shutil.rmtree(left, ignore_errors=True)
                    log.info("checkpoint %s", folder)
        except Exception as exc:
            self._broken_collective(trainer, exc, alone)
            raise
        self.last_saved, self.writing = step, False
        self.last_checkpoint = folder
        return folder

    def _broken_collective(self, trainer: pl.Trainer, error: Exception, alone: bool) -> None:
        """After `error` in a save by all processes: where it is not the save's own (raised on every process by
        `failing_together`) but a collective's that broke because a process left the run (having saved this
        step alone after an error of its own), the save is over, and `SaveOnError` may save the step alone."""
        if trainer.world_size > 1 and not alone and not raised_on_every_rank(error):
            self.writing = False

    def _write(self, trainer: pl.Trainer, pl_module: pl.LightningModule, tmp: Path, folder: Path, *,
               alone: bool, writes: bool) -> None:
        """`save`'s writing of the checkpoint: in `tmp`, renamed to `folder` when complete (alone: unless another
        process's is there already); `writes`: this process writes the files (alone, or rank 0)."""
        written_by_another = alone and (folder / TRAINING_STATE).is_file()
        if not written_by_another:
            with _together(trainer, alone):
                if writes:
                    shutil.rmtree(tmp, ignore_errors=True)
                    tmp.mkdir(parents=True)
            # (a collective only where the processes hold parts of the model, which never save alone)
            with full_parameters(trainer, pl_module), _together(trainer, alone):
                if writes:
                    export_model(pl_module.model, tmp, self.lora, self.run_config())
            # Trainer.save_checkpoint's steps without its closing barrier, where the ranks whose part was
            # written would wait for one whose part failed: dumping the state is collective (FSDP gathers
            # the optimizer's), writing it not (DDP's is rank 0's, a sharded strategy's each rank's part).
            # Alone, a replicated run's dump is this process's own (DDP's optimizer state is not sharded),
            # and it writes the file itself where the strategy would write rank 0's only.
            state = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)
            with _together(trainer, alone):
                if alone:
                    trainer.strategy.checkpoint_io.save_checkpoint(state, tmp / TRAINING_STATE)
                else:
                    trainer.strategy.save_checkpoint(state, tmp / TRAINING_STATE)
        with _together(trainer, alone):
            if writes:
                if not alone:
                    replace_folder(tmp, folder)
                elif not written_by_another:
                    claim_folder(tmp, folder)

    def save_now(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Path:
        """A checkpoint of the current step (the existing one if this step was just saved)."""
        if trainer.global_step == self.last_saved and self.last_checkpoint is not None:
            return self.last_checkpoint
        return self.save(trainer, pl_module)
