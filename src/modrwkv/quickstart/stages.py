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
from pathlib import Path
from typing import Any

from ..data.sample import Sample
from ..multimodal import ModRWKV

log = logging.getLogger(__name__)


def train_stage(model: ModRWKV, name: str, samples: list[Sample], *, steps: int, lr: float, batch_size: int,
                warmup_steps: int, seed: int, output_dir: Path, progress_bar: bool, media: str,
                train_extra: dict[str, Any] | None = None, model_extra: dict[str, Any] | None = None,
                media_reliance_every: int = 50) -> dict[str, Any]:
    """Train `model` in place for one quickstart stage ("0", "1" or "2") and return the run's metrics.
    `media` names what the model reads ("images and series", "audio") for the stage-1 note."""
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
    return train(config, samples=samples, model=model).metrics
