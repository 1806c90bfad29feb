"""Pretraining the quickstart's vision encoder: the offline stand-in for a pretrained tower.

Real ModRWKV starts from an encoder that already recognises things (SigLIP2, trained on billions
of captioned images). Offline there is none, so the quickstart first teaches its built-in CNN to
name the object in each cell of its token grid (its colour and shape, or "empty") on freshly drawn
scenes. It never sees a question or a held-out image, and learns nothing about where a cell is:
positions are for the LM to work out from the order of the image tokens.

Why: learning to see only through the LM's answers is a chicken-and-egg problem. The LM cannot
learn to bind a colour to a shape before the encoder shows them, and the encoder gets no useful
gradient before the LM binds; runs of the full recipe stalled with colour or shape questions at
chance. With direct labels the encoder learns to see in a few hundred steps (about 15 s on 2 cores).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from ..encoders.tiny_vision import TinyVisionEncoder
from ..weightfiles import save_torch
from .data import COLOURS, POSITIONS, SHAPES, Shape, draw_scene, random_shapes

log = logging.getLogger(__name__)

_COLOUR_CLASSES = 1 + len(COLOURS)  # 0 = empty cell
_SHAPE_CLASSES = 1 + len(SHAPES)


@dataclasses.dataclass(frozen=True)
class PretrainingResult:
    losses: list[float]
    colour_accuracy: float  # per cell, on freshly drawn held-out scenes
    shape_accuracy: float
    resumed_from_step: int | None = None  # where a stopped pretraining continued from (`state_file`)


def cell_labels(shapes: list[Shape], grid: int) -> tuple[list[int], list[int]]:
    """Colour and shape class of every cell of a `grid` x `grid` token map (row-major): those of
    the object in the cell's quadrant, 0 where the quadrant is empty."""
    if grid < 2 or grid % 2:
        raise ValueError(f"cell labels need an even image grid (each cell inside one quadrant), got {grid}")
    by_quadrant = {POSITIONS.index(s.position): s for s in shapes}
    colours, kinds = [], []
    half = grid // 2
    for cell in range(grid * grid):
        row, col = divmod(cell, grid)
        shape = by_quadrant.get((row // half) * 2 + col // half)
        colours.append(0 if shape is None else 1 + list(COLOURS).index(shape.colour))
        kinds.append(0 if shape is None else 1 + SHAPES.index(shape.kind))
    return colours, kinds


def _scenes(encoder: TinyVisionEncoder, n: int, rng: random.Random) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    prepared, colours, kinds = [], [], []
    for _ in range(n):
        shapes = random_shapes(rng)
        prepared.append(encoder.prepare(draw_scene(shapes, rng)))
        c, k = cell_labels(shapes, encoder.config.grid)
        colours.append(c)
        kinds.append(k)
    batch = {key: value.to(encoder.device) for key, value in encoder.collate(prepared).items()}
    return batch, torch.tensor(colours, device=encoder.device), torch.tensor(kinds, device=encoder.device)


def pretrain_vision_encoder(encoder: TinyVisionEncoder, steps: int, *, batch_size: int = 32, lr: float = 2e-3,
                            seed: int = 0, held_out: int = 256, progress_bar: bool = True,
                            state_file: Path | None = None) -> PretrainingResult:
    """Trains `encoder` in place with a linear head per cell (dropped afterwards) and AdamW, then
    measures per-cell accuracy on `held_out` new scenes.

    With a `state_file`, the pretraining can stop and continue exactly: SIGTERM or a first Ctrl-C
    during the steps saves its state there (weights, head, optimizer, random generators, losses; a
    second Ctrl-C stops at once, unsaved) and raises StageStopped; so does the end of the last step,
    before the held-out scenes are drawn. Called again with the state file there, it continues from
    it and ends as an uninterrupted pretraining would have."""
    from ..training.progress import StopRequest
    from .stages import StageStopped

    if not encoder.trainable:
        raise ValueError("the vision encoder is frozen (trainable=False); nothing to pretrain")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"need steps >= 1 and batch_size >= 1, got {steps} and {batch_size}")
    rng = random.Random(seed)
    torch.manual_seed(seed)
    head = nn.Linear(encoder.output_dim, _COLOUR_CLASSES + _SHAPE_CLASSES).to(encoder.device)
    optimizer = torch.optim.AdamW([*encoder.parameters(), *head.parameters()], lr=lr)
    cross_entropy = nn.functional.cross_entropy
    recipe = {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed}
    losses: list[float] = []
    resumed_from = None
    if state_file is not None and state_file.is_file():
        state = torch.load(state_file, map_location=encoder.device, weights_only=True)
        if state["recipe"] != recipe:
            raise ValueError(f"{state_file}: saved by a pretraining with {state['recipe']}, not {recipe}; "
                             "remove it to start the pretraining over")
        encoder.load_state_dict(state["encoder"])
        head.load_state_dict(state["head"])
        optimizer.load_state_dict(state["optimizer"])
        rng.setstate(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        losses, resumed_from = list(state["losses"]), state["step"]
        log.info("vision encoder pretraining: resuming from step %d of %d (%s)", resumed_from, steps, state_file)

    def logits(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        out = head(encoder(batch).features)  # [B, cells, classes]
        return out[..., :_COLOUR_CLASSES], out[..., _COLOUR_CLASSES:]

    def save(step: int) -> None:
        assert state_file is not None
        save_torch({"recipe": recipe, "step": step, "losses": losses, "encoder": encoder.state_dict(),
                    "head": head.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng.getstate(),
                    "torch_rng": torch.get_rng_state()}, state_file)

    encoder.train()
    start = len(losses)
    stop = StopRequest("the pretraining state at the end of this step") if state_file is not None else None
    with stop or contextlib.nullcontext():
        for step in tqdm(range(start + 1, steps + 1), desc="vision encoder pretraining", initial=start, total=steps,
                         disable=not progress_bar):
            batch, colours, kinds = _scenes(encoder, batch_size, rng)
            colour_logits, shape_logits = logits(batch)
            loss = (cross_entropy(colour_logits.flatten(0, 1), colours.flatten())
                    + cross_entropy(shape_logits.flatten(0, 1), kinds.flatten()))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if stop is not None and (stop.signal_name is not None or step == steps):
                save(step)  # at the last step too: whatever stops the run after it, the steps are kept
                if stop.signal_name is not None:
                    raise StageStopped("vision_encoder", stop.signal_name, step, steps,
                                       title="vision encoder pretraining")
    with torch.no_grad():
        batch, colours, kinds = _scenes(encoder, held_out, rng)
        colour_logits, shape_logits = logits(batch)
    result = PretrainingResult(losses, (colour_logits.argmax(-1) == colours).float().mean().item(),
                               (shape_logits.argmax(-1) == kinds).float().mean().item(), resumed_from)
    log.info("vision encoder pretrained: %d steps, loss %.3f, held-out cell accuracy colour %.1f%% shape %.1f%%",
             steps, losses[-1], 100 * result.colour_accuracy, 100 * result.shape_accuracy)
    return result
