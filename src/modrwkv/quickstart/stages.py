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
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..data.sample import Sample
from ..multimodal import ModRWKV

log = logging.getLogger(__name__)


class StageStopped(Exception):
    """A stage stopped early by SIGTERM or Ctrl-C. The quickstart keeps its model in memory between
    stages and cannot resume, so it ends there rather than go on with a half-trained model."""

    def __init__(self, stage: str, signal_name: str) -> None:
        super().__init__(f"stage {stage} stopped by {signal_name}")
        self.stage = stage
        self.signal_name = signal_name


def train_stage(model: ModRWKV, name: str, samples: list[Sample], *, steps: int, lr: float, batch_size: int,
                warmup_steps: int, seed: int, output_dir: Path, progress_bar: bool, media: str,
                train_extra: dict[str, Any] | None = None, model_extra: dict[str, Any] | None = None,
                media_reliance_every: int = 50, validate: Callable[[], float] | None = None,
                validate_every: int = 100, validate_from: int = 0) -> dict[str, Any]:
    """Train `model` in place for one quickstart stage ("0", "1" or "2") and return the run's metrics.
    `media` names what the model reads ("images and series", "audio") for the stage-1 note.
    `validate`: a score on a validation split (higher is better), taken every `validate_every`
    steps from step `validate_from` on and at the last step; the model ends the stage with the
    weights that scored best (metrics "validation": [(step, score), ...], "best_step"). Raises
    StageStopped when a signal stopped the stage."""
    from ..training import train

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
        "output": {"dir": str(output_dir / f"stage{name}"), "save_every": 0, "progress_bar": progress_bar,
                   "log_every": 10, "media_reliance_every": media_reliance_every},
        "data": {"shuffle": True},
    }
    keeper = _keep_best(model, validate, validate_every, validate_from, steps) if validate is not None else None
    result = train(config, samples=samples, model=model, callbacks=[keeper] if keeper is not None else [])
    if result.stopped_by is not None:
        raise StageStopped(name, result.stopped_by)
    metrics = result.metrics
    if keeper is None:
        return metrics
    model.load_state_dict(keeper.best_state)
    log.info("stage %s: validation scores %s; keeping the weights of step %d",
             name, ", ".join(f"{step}: {score:.3f}" for step, score in keeper.scores), keeper.best_step)
    return {**metrics, "validation": keeper.scores, "best_step": keeper.best_step}


def _keep_best(model: ModRWKV, validate: Callable[[], float], every: int, start: int, total_steps: int) -> Any:
    """A Lightning callback that scores the model every `every` steps from step `start` on and at the
    last step, and keeps a copy of the best-scoring weights (of equal scores, the later ones)."""
    import lightning.pytorch as pl
    import torch

    class KeepBest(pl.Callback):
        def __init__(self) -> None:
            self.scores: list[tuple[int, float]] = []
            self.best_step, self.best_state = -1, {}

        def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
            step = trainer.global_step
            if step != total_steps and (step < start or step % every):
                return
            with torch.no_grad():
                score = validate()
            pl_module.train()  # validate() puts the model in eval mode
            self.scores.append((step, score))
            if score >= max(s for _, s in self.scores):
                self.best_step = step
                self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    return KeepBest()
