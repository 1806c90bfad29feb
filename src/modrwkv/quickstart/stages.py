"""The quickstarts' training stages, shared by the image/series and the audio quickstart.

Offline there is no pretrained World LM, so each quickstart first warms a fresh LM up on its
conversations with the media removed (stage "0", trained as a stage-2 run: everything trainable),
then runs the paper's two stages on the same model object with the regular trainer:
  1. adapters (and trainable encoders), LM frozen;
  2. everything.
A frozen LM that has only seen text cannot yet carry media across the prompt, so the media
reliance measured in stage 1 stays near zero; stage 2, which trains the LM, is where the model
learns to use its media. The trainer's near-zero warning says so for a frozen LM, and stage 1
logs it up front (shown with -v).

A quickstart keeps a record of itself in its output folder (`RunRecord`, quickstart.json): the
options it was started with and the result of each stage as the stage completes. Run again after an
interruption, it skips the completed stages (loading the model each one left behind) and resumes a
training stage that was stopped from its checkpoint with the trainer's own `resume`, so that the
rerun ends where an uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..data.sample import MediaLayout, Sample
from ..multimodal import ModRWKV
from ..textfiles import write_text_atomically

log = logging.getLogger(__name__)

RECORD = "quickstart.json"
MODEL_DIR = "model"  # the folder in a quickstart's output folder that holds its final model, written as its last stage ends


class StageStopped(Exception):
    """A training stage stopped by SIGTERM or Ctrl-C, with a checkpoint saved (`step` of `total`), or,
    when `step` is None, finished as the signal arrived. Either way the quickstart ends there; run
    again, it continues from the checkpoint or with the next stage. `title` names the stage in the
    message (default: "stage <stage>")."""

    def __init__(self, stage: str, signal_name: str, step: int | None = None, total: int | None = None, *,
                 title: str | None = None) -> None:
        title = title or f"stage {stage}"
        what = (f"{title} finished as {signal_name} arrived" if step is None
                else f"{title} stopped by {signal_name} at step {step} of {total}, checkpoint saved")
        super().__init__(what)
        self.stage = stage
        self.signal_name = signal_name
        self.step = step


def check_new_folder(folder: Path, what: str = "output folder") -> None:
    """Refuses a `folder` that is not empty and holds no quickstart record: nothing is written over, or
    deleted, that the quickstart did not write."""
    if not (folder / RECORD).is_file() and folder.is_dir() and any(folder.iterdir()):
        raise ValueError(f"{folder} already exists and is not empty; choose another {what} or remove it")


def final_model(folder: Path) -> Path | None:
    """The final model of the quickstart whose output folder is `folder`, so that the folder can stand
    for its model wherever one is loaded; None when `folder` holds no quickstart record. Raises
    FileNotFoundError, naming the newest model the run saved, when its run has not finished."""
    if not (folder / RECORD).is_file():
        return None
    model = folder / MODEL_DIR
    if model.is_dir():
        log.info("%s is a quickstart's output folder: loading its final model %s", folder, model)
        return model
    from ..run_folder import FINAL, latest_checkpoint

    saved = [path for stage_dir in sorted(folder.glob("stage*"), reverse=True)  # the newest stage first
             for path in (latest_checkpoint(stage_dir), stage_dir / FINAL) if path is not None and path.is_dir()]
    newest = (f"The newest model it saved is {saved[0]} (a stage's, not the final model)." if saved
              else "It has saved no model yet.")
    raise FileNotFoundError(
        f"{folder} is a quickstart's output folder whose run has not finished: its final model {model} is not "
        f"there yet; run the quickstart again with the options it was started with to finish it. {newest}")


class RunRecord:
    """quickstart.json in a quickstart's output folder: the options the run was started with, each
    completed stage's result and the time the run has taken, all its processes together; rewritten
    atomically as each stage completes (a kill never leaves half of it) and as a process ends (`write`)."""

    def __init__(self, folder: Path, options: dict[str, Any], results: dict[str, Any],
                 seconds_before: float = 0.0, loading_seconds: float = 0.0) -> None:
        self.folder = folder
        self.options = options
        self.results = results
        self._seconds_before = seconds_before  # the processes that ran it before this one
        self._started = time.monotonic()
        self._loading_seconds = loading_seconds  # all its processes', in `loading_completed_work`

    @classmethod
    def open(cls, folder: str | Path, options: Mapping[str, Any], *, restart: bool = False,
             option_names: Mapping[str, str] | None = None, how_to_continue: str = "") -> RunRecord:
        """The record of the run in `folder` when it was started with `options` (JSON values), or a new
        one. A run started with other options is refused, naming each (`option_names` says how the user
        sets an option; `how_to_continue` ends the message), unless `restart`, which deletes it and
        starts afresh. A folder that is not empty and holds no record is refused: nothing is deleted
        that the quickstart did not write."""
        folder = Path(folder)
        options = json.loads(json.dumps(dict(options)))  # tuples as lists, as the file holds them
        path = folder / RECORD
        if path.is_file():
            try:
                saved = json.loads(path.read_text())
                saved_options, results = saved["options"], saved["results"]
                seconds_before = float(saved.get("seconds", 0.0))  # none in a record written before runs counted them
                loading_seconds = float(saved.get("loading_seconds", 0.0))  # nor before loads were told apart
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}: not a quickstart record ({exc}); remove {folder} or choose another "
                                 "output folder") from None
            if restart:
                log.info("starting %s over", folder)
                shutil.rmtree(folder)
            elif saved_options != options:
                names = option_names or {}
                changed = [f"{names.get(key, key)} {saved_options.get(key)!r} (now {options.get(key)!r})"
                           for key in sorted(set(saved_options) | set(options))
                           if saved_options.get(key) != options.get(key)]
                raise ValueError(f"{folder} holds a quickstart started with other options: {', '.join(changed)}. "
                                 f"{how_to_continue}".strip())
            else:
                return cls(folder, options, results, seconds_before, loading_seconds)
        else:
            check_new_folder(folder)
        folder.mkdir(parents=True, exist_ok=True)
        record = cls(folder, options, {})
        record.write()
        return record

    def seconds(self) -> float:
        """The run's time so far: this process's since it opened the record, and the earlier processes'
        as far as they recorded it (each record write does; one killed outright loses the time since its
        last), as a stage's seconds add up the parts of a stage that was resumed."""
        return self._seconds_before + time.monotonic() - self._started

    def training_seconds(self) -> float:
        """`seconds` less `loading_seconds`: a rerun loads its skipped stages' models again, which is no
        training."""
        return self.seconds() - self._loading_seconds

    @property
    def loading_seconds(self) -> float:
        """The time every process spent loading what an earlier one had completed (a rerun's skipped
        stages' models, `loading_completed_work`)."""
        return self._loading_seconds

    @contextlib.contextmanager
    def loading_completed_work(self) -> Iterator[None]:
        """Counts the block's time as loading what an earlier process completed, left out of
        `training_seconds`."""
        started = time.monotonic()
        try:
            yield
        finally:
            self._loading_seconds += time.monotonic() - started

    def result(self, stage: str) -> Any:
        """The recorded result of `stage`, None until it completed."""
        if stage in self.results:
            log.info("%s: complete in %s, skipped", stage, self.folder)
        return self.results.get(stage)

    def complete(self, stage: str, result: Any) -> Any:
        """Records `stage` as complete with `result` (JSON values) and returns it."""
        self.results[stage] = json.loads(json.dumps(result))
        self.write()
        return self.results[stage]

    def write(self) -> None:
        """Writes the record; a quickstart also does as its process ends, a signal or an error ending it,
        so that the time it took counts in the rerun's totals."""
        write_text_atomically(self.folder / RECORD, json.dumps(
            {"options": self.options, "results": self.results, "seconds": self.seconds(),
             "loading_seconds": self._loading_seconds}, indent=1) + "\n")

    @contextlib.contextmanager
    def counting_this_process(self) -> Iterator[None]:
        """Writes the record as the block ends, also when a signal or an error ends it, so that the time
        this process took counts in a rerun's totals. When an error ends it, that error is the one raised:
        a record that cannot be written then (the same full disk) is logged, not raised in its place."""
        try:
            yield
        except BaseException:
            try:
                self.write()
            except OSError as exc:
                log.warning("the time this run took was not recorded: %s", exc)
            raise
        self.write()


def save_model_atomically(model: ModRWKV, folder: Path) -> None:
    """`model.save_pretrained(folder)` under a temporary name, renamed when complete."""
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def train_stage(model: ModRWKV, name: str, samples: list[Sample], *, record: RunRecord, steps: int, lr: float,
                batch_size: int, warmup_steps: int, seed: int, output_dir: Path, progress_bar: bool, media: str,
                train_extra: dict[str, Any] | None = None, model_extra: dict[str, Any] | None = None,
                media_reliance_every: int = 50, validate: Callable[[ModRWKV], float] | None = None,
                validate_every: int = 100, validate_from: int = 0,
                keep_to: Path | None = None, media_layout: MediaLayout | None = None) -> tuple[ModRWKV, dict[str, Any]]:
    """Trains `model` (in place) for one quickstart stage ("0", "1" or "2") in output_dir/stage<name>
    and returns the trained model and the stage's metrics, recorded in `record`. A stage the record
    holds as complete is not trained again: the model it left behind is loaded. A stage stopped
    mid-way (its folder holds a checkpoint) resumes from that checkpoint, exactly.
    `media` names what the model reads ("images and series", "audio") for the stage-1 note.
    `validate`: a score of a model on a validation split (higher is better), taken every
    `validate_every` steps from step `validate_from` on and at the last step; the stage ends with the
    weights that scored best (metrics "validation": [(step, score), ...], "best_step"). `keep_to`: where
    the stage keeps its model instead of its final/ (a quickstart's last stage: its model/, so that the
    folder holds one model per stage); needed with `validate`. `media_layout`: how the samples place
    their media (`modrwkv.data.sample.place_media`), recorded on the model the stage returns and on the
    model/ it keeps (`keep_to`), whatever the model it starts from records (a stage completed or
    checkpointed by a version from before media_layout left a model that records the default; a
    stage-0 or stage-1 final/ resumed from such a checkpoint keeps it on disk, and gets the layout when
    loaded here). Raises StageStopped when a signal
    stopped the stage, or arrived as it finished."""
    from ..training import latest_checkpoint, train
    from ..training.checkpoint import FINAL
    from ..training.progress import StopRequest, TakeSignalsAtSetup

    stage_dir = output_dir / f"stage{name}"
    kept = keep_to or stage_dir / FINAL
    if validate is not None and keep_to is None:
        raise ValueError("a stage with validation needs keep_to, the folder for the weights it keeps")
    if (metrics := record.result(f"stage{name}")) is not None:
        if kept != stage_dir / FINAL and not kept.is_dir() and (stage_dir / FINAL).is_dir():
            # a folder written before the stage kept its model in `keep_to` (until 2026-12-01), killed after
            # the stage's record: its final/ is the stage's only model, which the line below would delete
            os.replace(stage_dir / FINAL, kept)
        _discard_resume_points(stage_dir, kept)  # left behind when a kill came right after the record
        with record.loading_completed_work():
            loaded = ModRWKV.from_pretrained(kept)
        return _laid_out(loaded, media_layout), metrics
    if name == "1":
        log.info("stage 1: the LM is frozen and has only seen text, so it cannot carry the %s across the "
                 "prompt yet: media reliance stays near 0 in this stage and a warning about it is expected. "
                 "Stage 2 trains the LM to use them.", media)
    config = {
        "train": {"stage": "2" if name == "0" else name, "max_steps": steps, "batch_size": batch_size,
                  "micro_batch_size": batch_size, "lr": lr, "lr_final": 0.0, "schedule": "cosine",
                  "warmup_steps": min(warmup_steps, steps // 4), "seed": seed, **(train_extra or {})},
        "model": dict(model_extra or {}),
        "runtime": {"accelerator": "cpu", "devices": 1, "precision": "32"},
        "output": {"dir": str(stage_dir), "save_every": 0, "progress_bar": progress_bar,
                   "log_every": 10, "media_reliance_every": media_reliance_every},
        "data": {"shuffle": True},
    }
    keeper = _keep_best(validate, validate_every, validate_from, steps) if validate is not None else None
    checkpoint = latest_checkpoint(stage_dir)
    if checkpoint is not None:
        log.info("stage %s: resuming from %s", name, checkpoint)
    # Once trained, a signal waits until the stage is recorded complete (taken at once, it left a trained stage
    # unrecorded, for a rerun to resume at its last step). `late` takes the signals as Lightning sets up, so that
    # it is what the trainer's handlers give back to as training ends: no moment is left between them.
    late = StopRequest(f"stage {name}'s result first")
    try:
        start = None if checkpoint is not None else _laid_out(model, media_layout)
        result = train(config, samples=samples, model=start,
                       resume=checkpoint is not None,
                       callbacks=[*([keeper] if keeper is not None else []), TakeSignalsAtSetup(late)])
        if result.stopped_by is not None:
            raise StageStopped(name, result.stopped_by, result.metrics["steps"], steps)
        model, metrics = _laid_out(result.model, media_layout), result.metrics
        if checkpoint is not None:
            metrics["resumed_from_step"] = int(checkpoint.name.removeprefix("step-"))
        if keeper is not None:
            model.load_state_dict(keeper.best_state)
            log.info("stage %s: validation scores %s; keeping the weights of step %d",
                     name, ", ".join(f"{step}: {score:.3f}" for step, score in keeper.scores), keeper.best_step)
            metrics = {**metrics, "validation": keeper.scores, "best_step": keeper.best_step}
        if kept != stage_dir / FINAL:
            save_model_atomically(model, kept)
        metrics = record.complete(f"stage{name}", metrics)
    finally:
        late.restore()
    _discard_resume_points(stage_dir, kept)
    if (signal_name := result.signal_at_end or late.signal_name) is not None:
        raise StageStopped(name, signal_name)
    return model, metrics


def _laid_out(model: ModRWKV, media_layout: MediaLayout | None) -> ModRWKV:
    """`model`, recording `media_layout` where one is given."""
    if media_layout is not None:
        model.media_layout = media_layout
    return model


def _discard_resume_points(stage_dir: Path, kept: Path) -> None:
    """Deletes what only resuming a stage needs, once the record holds it complete (a recorded stage is
    never resumed): its step checkpoints, whose optimizer state makes them about three times the
    model's size, and final/ when the stage keeps its model in `kept` instead. A quickstart
    folder keeps one model per stage, the logs and the report."""
    from ..training.checkpoint import CHECKPOINTS, FINAL

    shutil.rmtree(stage_dir / CHECKPOINTS, ignore_errors=True)
    if kept != stage_dir / FINAL:
        shutil.rmtree(stage_dir / FINAL, ignore_errors=True)


def _keep_best(validate: Callable[[ModRWKV], float], every: int, start: int, total_steps: int) -> Any:
    """A Lightning callback that scores the model every `every` steps from step `start` on and at the
    last step, and keeps a copy of the best-scoring weights (of equal scores, the later ones). Its
    scores and weights travel in the run's checkpoints, so that a resumed stage keeps the same ones."""
    import lightning.pytorch as pl
    import torch

    class KeepBest(pl.Callback):
        def __init__(self) -> None:
            self.scores: list[tuple[int, float]] = []
            self.best_step, self.best_state = -1, {}

        def state_dict(self) -> dict[str, Any]:
            return {"scores": [list(score) for score in self.scores], "best_step": self.best_step,
                    "best_state": self.best_state}

        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            self.scores = [(int(step), float(score)) for step, score in state_dict["scores"]]
            self.best_step, self.best_state = state_dict["best_step"], state_dict["best_state"]

        def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
            step = trainer.global_step
            if step != total_steps and (step < start or step % every):
                return
            model = pl_module.model
            with torch.no_grad():
                score = validate(model)
            pl_module.train()  # validate() puts the model in eval mode
            self.scores.append((step, score))
            if score >= max(s for _, s in self.scores):
                self.best_step = step
                self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    return KeepBest()
