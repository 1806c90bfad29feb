"""The Lightning side of training: which weights train in each stage, the loss, the optimizer.

Loss: the mean cross-entropy over every supervised token of the global micro-batch (all ranks),
not a mean of per-rank means. Each rank scales its token-sum by world_size / global_tokens, so
the gradient average that DDP/FSDP/DeepSpeed perform yields exactly the global token mean, and N
processes match one process with the same global batch. Accumulated micro-batches are averaged
(Lightning divides by the accumulation count).

Media reliance: every `media_reliance_every` optimizer steps, the first micro-batch of the step is
also run with its media embeddings zeroed (no gradients). The loss without the media minus the loss
with them (nats per supervised token, over all ranks) is logged as `media_reliance`: how much the
model uses its images, audio or series. Near zero, the model answers from the text alone; a warning
says so when that lasts (a fresh LM frozen in stage 1, too few steps, a learning rate that never
warmed up, features that carry nothing...).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.plugins.precision import MixedPrecision
from lightning.pytorch.strategies import FSDPStrategy
import torch
from torch import nn

from ..multimodal import ModRWKV
from ..processing import IGNORE_INDEX
from ..processing.loader import DROP_REASONS, TrainBatch
from .config import LoRAConfig, OptimConfig
from .lora import apply_lora, lora_layers
from .schedules import lr_multiplier

log = logging.getLogger(__name__)


def set_stage(model: ModRWKV, stage: str, lora: LoRAConfig | None = None) -> None:
    """Freezes and unfreezes for a training stage: "1" adapters; "2" adapters + LM; "lora" adapters
    + LoRA layers on the LM (added here unless already loaded); "state" the LM's initial WKV state
    alone (state tuning: zeros unless already loaded; adapters and encoders stay frozen too).
    Trainable encoders (WaveNet, tiny) train in stages 1, 2 and lora; frozen towers never do.
    Puts the model in training mode, which a frozen encoder declines (it stays in eval mode)."""
    # A model from from_pretrained (resume, init_from) or an LM from load_model (lm.checkpoint) is in
    # eval mode, and Lightning leaves modes as they are: without this such a run trained without LoRA
    # dropout or gradient checkpointing, unlike a run from a fresh model, and a resumed one unlike the
    # run it continues.
    model.train()
    model.requires_grad_(False)
    if stage == "state":
        wkv = model.lm.enable_state_tuning()
        log.info("state tuning: the initial WKV state of %d layers (%d parameters)", wkv.shape[0], wkv.numel())
        return
    model.adapters.requires_grad_(True)
    for encoder in model.encoders.values():
        if encoder.trainable:
            encoder.requires_grad_(True)
    if stage == "2":
        model.lm.requires_grad_(True)
    elif stage == "lora":
        if not lora_layers(model.lm):
            if lora is None:
                raise ValueError("stage 'lora' needs a LoRA config")
            names = apply_lora(model.lm, lora)
            log.info("LoRA rank %d on %d linear layers", lora.rank, len(names))
        for layer in lora_layers(model.lm).values():
            layer.lora_a.requires_grad_(True)
            layer.lora_b.requires_grad_(True)
    elif stage != "1":
        raise ValueError(f"unknown stage {stage!r}")


def warn_if_lm_frozen_untrained(stage: str) -> None:
    """Stage 1 (and LoRA, state tuning) on a freshly initialised LM: the LM cannot learn to write, so the media
    cannot teach it anything; the run is almost certainly a mistake, but it is the user's to make."""
    if stage != "2":
        log.warning(
            "stage %s on a freshly initialised LM (model.lm.config, no checkpoint): the LM is %s, so it cannot "
            "learn to write text and the adapters cannot learn what to tell it. Start from a pretrained LM "
            "(model.lm.checkpoint), or train the LM first (stage 2, or on text alone).",
            stage, {"1": "frozen", "lora": "frozen except for its LoRA layers",
                    "state": "frozen except for its initial state"}[stage])


def parameter_groups(model: ModRWKV, weight_decay: float, lr: float,
                     encoder_lr_scale: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """Trainable parameters; decoupled weight decay on matrices only (not on norms, biases, the
    per-channel mixing vectors, or LoRA's zero-initialised B and state tuning's zero-initialised
    initial state, which it would bias towards zero).
    The encoder of modality m learns at `encoder_lr_scale[m]` x `lr`: a pretrained encoder
    fine-tuned at the full rate forgets what it knew while the LM is still learning to read it.
    Groups at the full rate come first."""
    scales = encoder_lr_scale or {}
    encoder_rate = {id(p): lr * scales.get(modality, 1.0)
                    for modality, encoder in model.encoders.items() for p in encoder.parameters()}
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decays = p.ndim >= 2 and weight_decay > 0 and not name.endswith(("lora_b", "initial_wkv"))
        rate = encoder_rate.get(id(p), lr)
        groups.setdefault((rate, weight_decay if decays else 0.0), []).append(p)
    order = sorted(groups, key=lambda key: (key[0] != lr, key[1]))
    return [{"params": groups[key], "lr": key[0], "weight_decay": key[1]} for key in order]


def fused_adam_supported(params: Iterable[torch.Tensor]) -> bool:
    """Whether AdamW's fused kernel can update these parameters: one kernel per step instead of a
    dozen tensor ops per parameter, the same update up to float rounding. On CPU it is ~9x faster
    for the 65536-row embedding and head, which otherwise take a sixth of a small model's step."""
    return all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)


# Media reliance below this many nats per token counts as "near zero"; a warning follows when that
# holds for RELIANCE_PATIENCE measurements in a row after RELIANCE_GRACE of the run.
RELIANCE_FLOOR = 0.02
RELIANCE_PATIENCE = 3
RELIANCE_GRACE = 0.25


class ModRWKVModule(pl.LightningModule):
    def __init__(self, model: ModRWKV, optim: OptimConfig, total_steps: int, touch_unused: bool = True,
                 media_reliance_every: int = 0) -> None:
        """`touch_unused`: join every trainable weight to each step's graph (needed by DDP; off
        for one device and for sharded strategies, which do not require it: on a small model the
        zero gradients it writes into every weight cost a tenth of the step).
        `media_reliance_every`: optimizer steps between media-reliance measurements (0: never)."""
        super().__init__()
        self.model = model
        self.optim = optim
        self.total_steps = total_steps
        self.touch_unused = touch_unused
        self.media_reliance_every = media_reliance_every
        self.media_reliance: list[tuple[int, float]] = []  # (step, nats per token), all ranks
        self._reliance_warned = False
        self._lr = optim.lr
        self.dropped = dict.fromkeys(DROP_REASONS, 0)  # samples dropped from this fit's batches, all ranks
        self.history: list[dict[str, float]] = []  # one row per optimizer step, on every rank
        self._window = self._empty_window()
        self._clock = time.perf_counter()  # when this optimizer step began
        self._step_end = self._clock  # when the optimizer last stepped
        # Weights live in the save_pretrained folder of each checkpoint; the Lightning state file
        # holds optimizer, scheduler and loop state only (see on_save_checkpoint).
        self.strict_loading = False

    def _touch_trainable(self) -> torch.Tensor:
        """0 * sum of all trainable weights: every parameter joins the graph even when a batch has
        no media of some modality (or nothing at all), which DDP's gradient reduction requires."""
        return sum((p.sum() * 0.0 for p in self.parameters() if p.requires_grad), torch.zeros((), device=self.device))

    def training_step(self, batch: TrainBatch, batch_idx: int) -> torch.Tensor:
        if batch.batch is None:  # every sample dropped: a label-free token keeps all ranks in step
            ids = torch.zeros(1, 1, dtype=torch.long, device=self.device)
            loss_sum = self.model(ids, labels=torch.full_like(ids, IGNORE_INDEX)).loss
            n_labels, n_tokens = 0, 0
        else:
            out = self.model.forward_batch(batch.batch)
            n_labels = out.num_label_tokens
            n_tokens = int(batch.batch.attention_mask.sum())
            loss_sum = out.loss.float() * n_labels
        loss_value = loss_sum.detach().item()
        measure = self._reliance_due(batch_idx)
        blind_sum, media_labels = 0.0, 0.0
        if measure and batch.batch is not None and batch.batch.media and n_labels:
            with torch.no_grad():
                blind = self.model.forward_batch(batch.batch, zero_media=True).loss.float() * n_labels
            blind_sum, media_labels = blind.item() - loss_value, float(n_labels)
        drops = [float(batch.dropped[reason]) for reason in DROP_REASONS]
        stats = torch.tensor([loss_value, float(n_labels), float(n_tokens), blind_sum, media_labels, *drops],
                             device=self.device)
        stats = self.trainer.strategy.reduce(stats, reduce_op="sum")
        for reason, count in zip(DROP_REASONS, stats.tolist()[5:], strict=True):
            self.dropped[reason] += int(count)
        if measure and float(stats[4]) > 0:
            self._record_reliance(float(stats[3]) / float(stats[4]))
        global_labels = float(stats[1])
        loss = loss_sum * (self.trainer.world_size / max(global_labels, 1.0))
        if self.touch_unused:
            loss = loss + self._touch_trainable()
        for key, value in zip(("loss_sum", "labels", "tokens"), stats.tolist()[:3], strict=True):
            self._window[key] += value
        self._window["micro_batches"] += 1
        last_micro_batch = (batch_idx + 1) % self.trainer.accumulate_grad_batches == 0
        if last_micro_batch and self.global_step == 0 and not self._window["labels"]:  # the same on every rank
            # A first step with nothing to learn means the data is unusable (media that do not decode,
            # samples too long for model.ctx_len): stop before any checkpoint of an untrained model. The run's
            # first step, not this process's (a resumed part's history starts empty): a later all-dropped step
            # has no loss (NaN) whether or not the run was resumed before it.
            dropped = ", ".join(f"{reason}: {n}" for reason, n in self.dropped.items() if n) or "none dropped"
            raise ValueError(f"step {self.global_step + 1} of training had no token to learn from: its samples "
                             f"were dropped ({dropped}; the reasons are logged above) or have no reply. Fix the data "
                             "(or data.media_folder, model.ctx_len) and run again")
        return loss

    def _reliance_due(self, batch_idx: int) -> bool:
        """The first micro-batch of every `media_reliance_every`-th optimizer step, and of the last
        step (the same answer on every rank, so that the reduction stays collective)."""
        every = self.media_reliance_every
        if not every or batch_idx % self.trainer.accumulate_grad_batches:
            return False
        step = self.global_step
        return step % every == 0 or step == self.total_steps - 1

    def _record_reliance(self, value: float) -> None:
        self.media_reliance.append((self.global_step, value))
        self.log("media_reliance", value, prog_bar=True, batch_size=1)
        recent = [v for _, v in self.media_reliance[-RELIANCE_PATIENCE:]]
        late = self.global_step >= RELIANCE_GRACE * self.total_steps
        if (not self._reliance_warned and late and len(recent) == RELIANCE_PATIENCE
                and all(v < RELIANCE_FLOOR for v in recent)):
            self._reliance_warned = True
            lm_frozen = not any(p.requires_grad for p in self.model.lm.parameters())
            if lm_frozen:
                advice = ("The LM is frozen in this run: that is expected if it has never been trained with media "
                          "(a fresh LM, or one warmed up on text only), and the stage that trains the LM (stage 2) "
                          "teaches it to use them; with a pretrained World LM, check the learning rate and warm-up "
                          "against the number of steps, and the data.")
            else:
                # A trained LM can settle on the answers' prior (the most likely reply whatever the media)
                # and stay there; on the digit pairs (docs/custom-data.md) a third of the learning rate
                # got every seed out of it, so that is the concrete step to suggest.
                advice = (f"If the media do tell the answers, the model may be stuck at the answers' prior: train "
                          f"again with a lower learning rate (--train.lr {self.optim.lr / 3:.2g}, a third of this "
                          f"run's {self.optim.lr:.2g}) or another --train.seed; otherwise check the data.")
            log.warning(
                "media reliance is near zero (%s nats per token over the last %d checks, at step %d of %d): the "
                "loss is the same with the media embeddings zeroed, so the model ignores its media and answers "
                "from the text alone. %s",
                ", ".join(f"{v:.3f}" for v in recent), RELIANCE_PATIENCE, self.global_step, self.total_steps, advice)

    def _step_row(self) -> dict[str, float]:
        w = self._window
        seconds = max(self._step_end - self._clock, 1e-9)
        return {
            "step": float(self.global_step),
            # a step whose every sample was dropped has no token to learn from, and no loss (not 0)
            "loss": w["loss_sum"] / w["labels"] if w["labels"] else math.nan,
            "lr": self._lr,
            "tokens": w["tokens"],
            "seconds": seconds,
            "tokens_per_s": w["tokens"] / seconds,
        }

    def unrecorded_step(self) -> dict[str, float] | None:
        """At an optimizer step's end, the step's `history` row while it is not in `history` yet: the
        callbacks' step-end hooks (a checkpoint saved there) run before the module's, which appends it."""
        return self._step_row() if self._window["micro_batches"] else None

    def step_state(self) -> dict[str, Any]:
        """What this module counts per optimizer step, as it stands (at a step's end: what a checkpoint of
        that step holds of it), for `restore_step_state`."""
        return {"history": len(self.history), "window": dict(self._window), "dropped": dict(self.dropped),
                "media_reliance": len(self.media_reliance), "clock": self._clock, "step_end": self._step_end}

    def restore_step_state(self, state: dict[str, Any]) -> None:
        """Forgets what came after `state` was taken: the micro-batches of a step that an error ended."""
        del self.history[state["history"]:]
        del self.media_reliance[state["media_reliance"]:]
        self._window, self.dropped = dict(state["window"]), dict(state["dropped"])
        self._clock, self._step_end = state["clock"], state["step_end"]

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        # The step's time ends here: the callbacks' step-end work that follows (a checkpoint, the quickstart's
        # validation) is not training, and a checkpoint's totals hold the same seconds as the step's row.
        self._step_end = time.perf_counter()

    def on_train_batch_end(self, outputs: Any, batch: TrainBatch, batch_idx: int) -> None:
        if (batch_idx + 1) % self.trainer.accumulate_grad_batches:
            return
        row = self._step_row()
        self.history.append(row)
        self.log("loss", row["loss"], prog_bar=True, batch_size=1)
        self.log("tok/s", row["tokens_per_s"], prog_bar=True, batch_size=1)
        self.log("lr", row["lr"], batch_size=1)
        self.log("tokens", row["tokens"], batch_size=1, reduce_fx="sum")
        self._window = self._empty_window()
        self._clock = time.perf_counter()

    @staticmethod
    def _empty_window() -> dict[str, float]:
        """What an optimizer step sums over its micro-batches (all ranks')."""
        return {"tokens": 0.0, "loss_sum": 0.0, "labels": 0.0, "micro_batches": 0.0}

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self._lr = optimizer.param_groups[0]["lr"]

    def on_train_start(self) -> None:
        self._clock = time.perf_counter()

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        if gradient_clip_val is None:
            return
        if isinstance(self.trainer.strategy, FSDPStrategy):
            # Lightning's FSDP precision plugin refuses norm clipping (every FSDP run with train.grad_clip
            # failed at its first step, H200 2026-12-04); FSDP's own clip_grad_norm_ takes the norm over
            # every shard of every process, as plain clipping takes it over the whole model.
            self.trainer.strategy.model.clip_grad_norm_(gradient_clip_val)
        else:
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self) -> dict[str, Any]:
        o = self.optim
        groups = parameter_groups(self.model, o.weight_decay, o.lr, o.encoder_lr_scale)
        # Lightning's mixed-precision plugin cannot clip the gradients of a fused optimizer.
        mixed = isinstance(self.trainer.precision_plugin, MixedPrecision)
        fused = not (mixed and o.grad_clip) and fused_adam_supported(p for g in groups for p in g["params"])
        optimizer = torch.optim.AdamW(groups, lr=o.lr, betas=(o.betas[0], o.betas[1]), eps=o.eps, fused=fused)
        factor = lr_multiplier(schedule=o.schedule, lr=o.lr, lr_final=o.lr_final, total_steps=self.total_steps,
                               warmup_steps=o.warmup_steps, decay_fraction=o.decay_fraction)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = {}

    def on_train_end(self) -> None:
        if any(self.dropped.values()):
            log.warning("dropped samples in this run: %s", self.dropped)
