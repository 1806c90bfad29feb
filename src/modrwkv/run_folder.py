"""The layout of a training run's output folder (`output.dir`), for what reads models from it without
training installed (Lightning): `checkpoints/step-NNNNNNNN/` model folders with their training state,
`checkpoints/latest` naming the newest, and `final/`, the model the run ends with."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
LATEST = "latest"
TRAINING_STATE = "training_state.ckpt"
FINAL = "final"


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest checkpoint of the run in `output_dir` that holds its training state, or None."""
    pointer = Path(output_dir) / CHECKPOINTS / LATEST
    if not pointer.exists():
        return None
    folder = pointer.parent / pointer.read_text().strip()
    return folder if (folder / TRAINING_STATE).exists() else None


def final_model(output_dir: Path) -> Path | None:
    """The model of the training run whose output folder is `output_dir` (final/), so that the folder can
    stand for its model wherever one is loaded; None when `output_dir` is no run's. Raises
    FileNotFoundError, naming the newest checkpoint (a model folder too), when the run has not finished."""
    final = output_dir / FINAL
    if (final / "config.json").is_file():
        log.info("%s is a training run's output folder: loading its model %s", output_dir, final)
        return final
    newest = latest_checkpoint(output_dir)
    if newest is None:
        return None
    raise FileNotFoundError(
        f"{output_dir} is a training run's output folder whose run has not finished: its model {final} is not "
        f"there yet (`modrwkv train CONFIG --resume` finishes it). Its newest checkpoint is a model folder too: "
        f"--model {newest}")
