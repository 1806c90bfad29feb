"""What a training run tells its user while it runs, and how it stops without losing work.

- `ProgressLine` writes one line every `log_every` optimizer steps and at the last one, with or
  without Lightning's progress bar: step, epoch (data passes, fractional), samples seen, mean loss
  since the previous line, tokens/s, the time left (or "stopped early" at a stop before the last
  step, whose line is always written), and `media_reliance` when something logs it.
  It also logs `epoch` and `samples` into metrics.csv, so the `epoch` column counts data passes
  (one Lightning epoch is the whole run, see `data.StepBatchSampler`).
- `StopOnSignal` turns SIGTERM and the first Ctrl-C (SIGINT) into a stop at the next optimizer-step
  boundary, where it saves a resumable checkpoint; a second Ctrl-C, or one before training has
  started, interrupts at once: `train` raises KeyboardInterrupt (and the newest complete checkpoint
  stays the one to resume). One that arrives as training ends is recorded (`signal_at_end`). It is a
  `StopRequest`, which takes the same signals the same way for a training loop of one's own (the
  quickstart's vision encoder pretraining); `TakeSignalsAtSetup` hands them on to one as `train` ends.
- `SaveOnError` does the same for an error (an exception, not a signal: out of memory on one long
  sample, an encoder's RuntimeError, a data-loader worker that died, a failing validation): it saves
  the last completed optimizer step where that is safe (not inside the optimizer's update; in a run of
  several processes, by all of them where every one raised it at a step's end, else by the failed one
  alone under DDP, not under a sharded strategy), which `--resume` continues exactly, and adds a note to
  the error that says where (or why nothing was saved).
- `RunTotals` sums what the run's summary reports over all its steps, also across a stop and a
  resume: the part before the resume travels in the checkpoint.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
import torch

from .checkpoint import PretrainedCheckpoint, latest_checkpoint, raised_on_every_rank, replicated

if TYPE_CHECKING:
    from .module import ModRWKVModule

log = logging.getLogger(__name__)

EXTRA_METRICS = ("media_reliance",)  # shown on the line when logged by the module or a callback


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def _at_step_boundary(trainer: pl.Trainer, batch_idx: int) -> bool:
    return (batch_idx + 1) % trainer.accumulate_grad_batches == 0


class ProgressLine(pl.Callback):
    """See the module docstring. `emit` receives each line (default: logged at INFO)."""

    def __init__(self, *, total_steps: int, batch_size: int, steps_per_epoch: float, every: int,
                 emit: Callable[[str], None] | None = None) -> None:
        self.total_steps = total_steps
        self.batch_size = batch_size
        self.steps_per_epoch = steps_per_epoch
        self.every = every
        self.emit = emit or log.info
        self._pending: int | None = None  # step whose line waits for the module's history row
        self._stopping = False  # the pending line's step ends the run before its last step
        self._start_time = 0.0
        self._start_step = 0
        self._rows_printed = 0

    def epoch_at(self, step: int) -> float:
        return step / self.steps_per_epoch

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start_time = time.perf_counter()
        self._start_step = trainer.global_step
        self._rows_printed = len(getattr(pl_module, "history", []))

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._flush(trainer, pl_module)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not _at_step_boundary(trainer, batch_idx):
            return
        step = trainer.global_step
        pl_module.log("epoch", self.epoch_at(step), batch_size=1)
        pl_module.log("samples", float(step * self.batch_size), batch_size=1)
        # A stop before the last step (early stopping, a signal; the callbacks that decide it run before this
        # one) ends the run at this step: its line too, saying so instead of the time the steps left would take.
        stopping = trainer.should_stop and step < self.total_steps
        if step % self.every == 0 or step >= self.total_steps or stopping:
            # The module appends this step's history row after the callbacks' hooks: print once it has.
            self._pending, self._stopping = step, stopping

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush(trainer, pl_module)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._flush(trainer, pl_module)

    def _flush(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending is None or not trainer.is_global_zero:
            self._pending = None
            return
        step, self._pending = self._pending, None
        history = getattr(pl_module, "history", [])
        rows = history[self._rows_printed:]
        self._rows_printed = len(history)
        now = time.perf_counter()
        losses = [r["loss"] for r in rows if not math.isnan(r["loss"])]  # (a step of dropped samples has none)
        loss = (f"loss {sum(losses) / len(losses) if losses else math.nan:.4f}" if losses or not rows
                else "loss - (every sample dropped)")
        # Over the steps' own seconds, as the run's summary: a checkpoint saved since the last line is not training.
        tokens_per_s = sum(r["tokens"] for r in rows) / max(sum(r["seconds"] for r in rows), 1e-9) if rows else math.nan
        done = step - self._start_step
        eta = (self.total_steps - step) * (now - self._start_time) / done if done > 0 else math.nan
        parts = [f"step {step}/{self.total_steps}", f"epoch {self.epoch_at(step):.2f}",
                 f"samples {step * self.batch_size}", loss, f"{tokens_per_s:,.0f} tokens/s",
                 "stopped early" if self._stopping else f"ETA {format_duration(eta)}"]
        for name in EXTRA_METRICS:
            value = trainer.callback_metrics.get(name)
            if value is not None:
                parts.append(f"{name} {float(value):.3f}")
        self.emit(" | ".join(parts))


class Interrupted(BaseException):
    """Ctrl-C inside `Trainer.fit`, which `train` turns back into KeyboardInterrupt. Lightning answers a
    KeyboardInterrupt itself with sys.exit(1) (a wrong exit status, and the end of a notebook's
    kernel); any other exception it tears down after and passes on."""


class StopRequest:
    """SIGTERM and a first Ctrl-C (SIGINT), taken as a request to stop at the next point where the work
    can be saved; `signal_name` says which came first. A second Ctrl-C raises `interrupt` at once (a
    stop without saving). As a context manager it takes the signals inside its block, from the main
    thread (elsewhere no handler can be set, and it takes none). `saving` ends the warning: what is
    saved, and when."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, saving: str, interrupt: type[BaseException] = KeyboardInterrupt) -> None:
        self.saving = saving
        self.interrupt = interrupt
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.signal_name is not None and signum == signal.SIGINT:
            raise self.interrupt  # a second Ctrl-C: stop now, without saving
        self.signal_name = self.signal_name or name
        log.warning("%s received: saving %s, then stopping (Ctrl-C again to stop at once without saving)",
                    name, self.saving)

    def keep_handlers(self) -> bool:
        """Remembers the handlers in place, for `restore`; False off the main thread."""
        if threading.current_thread() is not threading.main_thread():
            return False
        self._previous = {number: signal.getsignal(number) for number in self.SIGNALS}
        return True

    def take_signals(self) -> None:
        for number in self._previous:
            signal.signal(number, self.handle)

    def restore(self) -> None:
        """Puts back the handlers `keep_handlers` remembered."""
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}

    def __enter__(self) -> StopRequest:
        if self.keep_handlers():
            self.take_signals()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.restore()


class TakeSignalsAtSetup(pl.Callback):
    """Makes `request` take the signals as the trainer sets up, ahead of `train`'s own handlers, which give
    them back to it as they end: what a caller protects with it once `train` has returned is protected
    from the moment training ends (see quickstart.stages). It is the caller's to `restore`."""

    def __init__(self, request: StopRequest) -> None:
        self.request = request

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.request.keep_handlers():
            self.request.take_signals()


class StopOnSignal(StopRequest, pl.Callback):
    """See the module docstring. After a stop, `signal_name` says which signal asked for it and
    `checkpoint` where the run was saved. `restore` is called once `Trainer.fit` has returned or
    raised."""

    def __init__(self, checkpointer: PretrainedCheckpoint) -> None:
        super().__init__("a checkpoint at the end of this optimizer step", Interrupted)
        self.checkpointer = checkpointer
        self.checkpoint: Path | None = None
        self._started = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # In place before Lightning's own handlers, these are the ones Lightning's teardown puts back: a
        # signal as training ends is recorded (a Ctrl-C used to interrupt a run that had finished, and a
        # SIGTERM to reach the handler outside `train`). Lightning adds its SIGTERM handler to ours;
        # on_train_start sets ours alone.
        if self.keep_handlers():
            for number in self.SIGNALS:
                signal.signal(number, self._until_started)

    def _until_started(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and not self._started:
            raise self.interrupt  # nothing to save yet: Ctrl-C interrupts at once
        self.handle(signum, frame)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = True
        if not self._previous:
            return
        self.take_signals()
        # A SIGTERM before training started reached Lightning's handler too, which would stop the run at the
        # first step, unsaved; ours has recorded it, to stop at the first step with a checkpoint.
        trainer._signal_connector.received_sigterm = False

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not _at_step_boundary(trainer, batch_idx):
            return
        number = signal.Signals[self.signal_name].value if self.signal_name is not None else 0
        if trainer.world_size > 1:
            # Every rank stops at the same step (a signal may reach one only), and names the signal: a run's exit
            # status is the signal's on every rank (SIGTERM's, where a rank received SIGTERM and another SIGINT).
            number = int(trainer.strategy.reduce(torch.tensor(number, device=trainer.strategy.root_device),
                                                 reduce_op="max").item())
        if number and trainer.global_step < self.checkpointer.total_steps:
            self.signal_name = signal.Signals(number).name  # the reduced one, also where this rank received another
            self.checkpoint = self.checkpointer.save_now(trainer, pl_module)
            trainer.should_stop = True


class SaveOnError(pl.Callback):
    """At an error that ends training (an `Exception`; a KeyboardInterrupt or a second Ctrl-C is not one,
    and a signal stops the run by `StopOnSignal`), a checkpoint of the last completed optimizer step, saved
    by the run's `PretrainedCheckpoint` (no second one where that step has one: `save_every` hit it, or
    the run resumed from it), and a note added to the error (`BaseException.add_note`) that says where it
    is and that `--resume` continues from it, exactly as after a signal; or why no checkpoint was saved
    and which is the newest. An error
    - in a step's forward or backward pass (also between accumulated micro-batches) or in the data loader
      leaves the weights and the optimizer as the last step left them: the checkpoint is that step's,
      with the loops' progress and the module's step counters as they were at its end (taken there, as the
      signal's checkpoint is; gradients are never saved; the random numbers of the steps after it are the
      seed's, `checkpoint.StepSeeds`);
    - after a step's update (a validation, a callback's step-end work) saves that step; the validation
      that failed is not in the checkpoint, and the resumed run makes it first (`Validation`);
    - inside the optimizer's update (from `on_before_optimizer_step` until the step completes) may leave
      some weights updated and others not: nothing is saved, and the note says so;
    - while a checkpoint is written, or once training has finished (writing final/), says itself what
      was saved;
    - in a run of several processes, raised by every process at the same step end (`failing_together`:
      one's validation ran out of memory), is saved by all of them together, as a checkpoint always is;
    - of one process of several (out of memory in its forward pass), which may leave the others waiting
      for it in a collective (the step's gradient reduction), is saved by that process alone, without a
      collective, under DDP (`replicated`: each process holds the whole model and optimizer state, the
      same at every step's end): the files a save of all of them writes, the same step's state. The
      others stay in the collective until the failed process ends (gloo: "Connection closed by peer";
      NCCL may not see a peer's end: the launcher ends them at that exit, torchrun does, or the process
      group's timeout does); each one's error then saves the step the same way, or finds it saved
      (one written alone is renamed into place whole, and the first one of several is kept), so every
      process names the same checkpoint. Under FSDP and DeepSpeed each process holds only its part of the
      weights and the optimizer state (DeepSpeed's ZeRO shards the optimizer's from stage 1): no process
      can write the checkpoint alone, nothing is saved and the note names the newest checkpoint.
    A failure of this save does not hide the error: the note names it too. A callback of one's own whose
    state changes within a step is saved as the error found it."""

    def __init__(self, checkpointer: PretrainedCheckpoint) -> None:
        self.checkpointer = checkpointer
        self._started = False
        self._updating: int | None = None  # the step the optimizer is updating from, until the step's end
        self._step_end: dict[str, Any] | None = None  # the newest step's end, as its checkpoint holds it

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = True

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        self._updating = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not _at_step_boundary(trainer, batch_idx):
            return
        self._updating = None
        # One process, or DDP: this one may save the step alone at an error in the next. (A few kB, ~0.5 ms a
        # step on a CPU; after the other callbacks' step-end work, as the stopper saves.)
        if replicated(trainer):
            self._step_end = {"loops": trainer.fit_loop.state_dict(), "module": pl_module.step_state()}

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, Exception) and self._started:
            note = self._save(trainer, pl_module, raised_on_every_rank(exception))
            if note is not None:
                exception.add_note(note)

    def _save(self, trainer: pl.Trainer, pl_module: pl.LightningModule, every_rank: bool) -> str | None:
        checkpointer, step = self.checkpointer, trainer.global_step
        if checkpointer.writing or (step >= checkpointer.total_steps and step == checkpointer.last_saved):
            return None  # a checkpoint's or final/'s own error, which says what is saved
        # The update of step `_updating + 1` has begun, and ended once `step` has advanced (a step-end hook failed).
        updated = self._updating is not None and step > self._updating
        where = (f"training stopped at this error {'after' if updated else 'in'} step "
                 f"{step if updated else step + 1} of {checkpointer.total_steps}")
        if self._updating == step:
            return (f"{where}, inside its optimizer step, which may have updated some weights and not others, so no "
                    f"checkpoint was saved; {self._newest()}")
        if step == checkpointer.last_saved:  # nothing trained since the newest checkpoint
            newest = latest_checkpoint(checkpointer.output_dir)
            return None if newest is None else f"{where}; {_resume_from(newest)}"
        # Every process raised it at a step's end (`failing_together`): they save together. Otherwise the others
        # may be waiting for this one in a collective it left (a gradient reduction): it writes alone.
        alone = trainer.world_size > 1 and not (updated and every_rank)
        if alone and not replicated(trainer):
            return (f"{where}; no checkpoint was saved: under {type(trainer.strategy).__name__} each of the "
                    f"{trainer.world_size} processes holds only its part of the weights and optimizer state, so they "
                    f"can only write it together, and the others may be waiting for this one in a collective it "
                    f"left; {self._newest()}")
        if self._updating is None and self._step_end is not None:  # in the next step: back to the end of this one
            trainer.fit_loop.load_state_dict(self._step_end["loops"])
            pl_module.restore_step_state(self._step_end["module"])
        try:
            folder = checkpointer.save(trainer, pl_module, alone=alone)
        except Exception as exc:  # the error that ended training stays the one raised
            log.error("saving the checkpoint of step %d after an error failed too: %s", step, exc)
            return (f"{where}; saving the checkpoint of step {step} failed too ({type(exc).__name__}: {exc}); "
                    f"{self._newest()}")
        return f"{where}; the checkpoint of step {step}, the last completed, is saved to {folder}: --resume continues from it"

    def _newest(self) -> str:
        return _resume_from(latest_checkpoint(self.checkpointer.output_dir))


def _resume_from(newest: Path | None) -> str:
    """What an error's note says of the newest checkpoint."""
    if newest is None:
        return "the run has no checkpoint: start it again"
    return f"the newest checkpoint is {newest}: --resume continues from it"


class RunTotals(pl.Callback):
    """A run's totals over all its optimizer steps (`summary`): the first and the last step's loss, the
    tokens trained on, the seconds in optimizer steps and in the whole run (its setup included), the
    samples dropped and the last media reliance. A run stopped and resumed reports what an uninterrupted
    one would, and the time of its parts added up (not the gap between them): the totals of the parts
    before the resume travel in its checkpoint, as this callback's state."""

    def __init__(self, started: float) -> None:
        self.started = started  # time.perf_counter() when this part of the run began
        self.earlier: dict[str, Any] = {"recorded_steps": 0, "first_loss": math.nan, "final_loss": math.nan,
                                        "tokens": 0.0, "step_seconds": 0.0, "seconds": 0.0, "dropped": {},
                                        "media_reliance": None}  # the parts before a resume
        self._module: ModRWKVModule | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._module = pl_module  # type: ignore[assignment]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A resumed run's progress lines show the media reliance measured before the stop until it measures
        # again, as the uninterrupted run's lines show their last measurement (not nothing).
        if self.earlier["media_reliance"] is not None and "media_reliance" not in trainer.callback_metrics:
            trainer.callback_metrics["media_reliance"] = torch.tensor(self.earlier["media_reliance"])

    def state_dict(self) -> dict[str, Any]:
        # Plain numbers (and a None), so that the checkpoint loads with torch.load(weights_only=True).
        return self.summary(self._module) if self._module is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.earlier = dict(state_dict)

    def summary(self, module: ModRWKVModule) -> dict[str, Any]:
        """The totals up to now, the step that has just ended included (a checkpoint saved at a step's end
        is taken before the module records that step)."""
        rows = list(module.history)
        if (row := module.unrecorded_step()) is not None:
            rows.append(row)
        earlier = self.earlier
        losses = [row["loss"] for row in rows if not math.isnan(row["loss"])]  # the steps that had a loss
        first = earlier["first_loss"] if not math.isnan(earlier["first_loss"]) else losses[0] if losses else math.nan
        return {
            "recorded_steps": earlier["recorded_steps"] + len(rows),
            "first_loss": first,
            "final_loss": losses[-1] if losses else earlier["final_loss"],
            "tokens": earlier["tokens"] + sum(r["tokens"] for r in rows),
            "step_seconds": earlier["step_seconds"] + sum(r["seconds"] for r in rows),
            "seconds": earlier["seconds"] + time.perf_counter() - self.started,
            "dropped": {reason: earlier["dropped"].get(reason, 0) + n for reason, n in module.dropped.items()},
            "media_reliance": module.media_reliance[-1][1] if module.media_reliance else earlier["media_reliance"],
        }
