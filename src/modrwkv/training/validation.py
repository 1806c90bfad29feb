"""Validation during training: the model scored on `data.val` every `train.val_every` optimizer steps
(at step 0 too with `train.val_at_start`, and always at the last step), the best weights kept in
`best/`, and early stopping.

- The metric (`train.val_metric`): "loss", the mean token cross-entropy over the val samples (every supervised
  token weighs the same, as in a training step's loss; samples in file order, no shuffle; the first
  `train.val_max_samples` of all the files when set, one cap over them all); for series, "forecast_mse": the
  standardised MSE of greedy forecasts of the val windows, computed by the `custom-series` eval task itself,
  so it is the number `modrwkv eval --task custom-series --split val` reports; for question-answer and
  conversation files, "accuracy" (higher is better), "wer", "cer" or "mse", for captions "cider" (CIDEr-D,
  higher is better): the val files answered greedily and scored by the `custom` eval task, the number `modrwkv
  eval --task custom --data FILE ... [--limit N]` reports for the same files (`answer_scorer`). Token
  cross-entropy weighs every token of an answer alike, a digit or a word's ending as much as what decides it,
  so it need not track the score a user wants; the val loss is computed and logged with every metric.
- Every rank takes part: each scores its share of the val samples (every world_size-th), and the
  sums are reduced, so that every rank gets the same value and takes the same decisions; an error on
  one rank ends every rank with it (`failing_together`), none waits for it in the reduce.
- `best/` (a `save_pretrained` folder, as `final/`) holds the weights of the best validation so far
  (of equal values, the one with the lower val loss, else the earlier), with `validation.json` saying
  the step and the value.
  `output.final: best` makes `final/` a copy of it at the end. It is replaced by renames, so that a run
  killed meanwhile leaves a complete one (put back at the next start).
- A validation's state (its row, the best, the patience count) changes once it has ended, best/
  written: an error in it leaves the checkpoint `progress.SaveOnError` saves at that step without it,
  and the resumed run validates that step first.
- `train.early_stopping_patience` validations in a row without improving on the best end the run at
  that step, as if it were the last (a checkpoint and `final/` are written).
- Shipping the baseline when validation cannot tell (`val_metric: forecast_mse`, `train.baseline_fallback`,
  on by default): at the end, the best weights' per-window val MSE is compared with a reply of zeros' (the
  series encoder's baseline alone), averaged over blocks of `horizon` consecutive windows of a series (so
  that no two blocks share a target value; a series of fewer windows, as `holdout: last` holds out, one block) and tested with a one-sample t statistic over the blocks'
  gains. The weights ship only when `t >= SIGNIFICANT_T` over at least `MIN_BLOCKS` blocks; otherwise
  best/ (and final/, its copy) is marked `series_baseline_only` and forecasts with the baseline alone
  (`ModRWKVPipeline.forecast_batch`). The decision is in best/'s validation.json ("shipped") and the
  run's last line.
- Each validation is a progress line and a row in the loggers (metrics.csv, TensorBoard: `val_loss`,
  `val_forecast_mse`, `val_accuracy`, ..., and `val_distinct_replies` beside an eval task's metric), at
  its step. The best value, its step and the patience count travel in the run's checkpoints, so that a
  resumed run goes on with them; a better best/ from a step after the checkpoint (the run was stopped
  before its next one) stays the best.
- Where the eval task breaks its score down per answer (`metrics.label_breakdown`: exact-match answers that
  are a classifier's labels, or multiple-choice options), each validation's line names the answer answered
  right least often, as `modrwkv eval`'s last line does; the best validation's breakdown is in best/'s
  validation.json, and that of the validation whose weights final/ holds (the best with `output.final:
  best`, else the last) in `summary()` and the run folder's `ANSWERS_TABLE`. Both breakdowns travel in the
  checkpoints (the history's rows hold only the loggers' numbers). A run removes the table an earlier run
  into its folder left (`discard_answers_table`) as it starts, so the one there is always this run's.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import logging
import math
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from ..data.readers import DataError
from ..data.readers.base import data_label, expand_paths
from ..multimodal.model import CONFIG_NAME
from ..data.sample import Sample
from ..processing.loader import DroppingCollator, ProcessedDataset
from ..textfiles import write_text_atomically
from .checkpoint import PretrainedCheckpoint, aside_name, export_model, failing_together, replace_folder
from .config import ConfigError, DataConfig, LoRAConfig, OptimConfig, source_path

log = logging.getLogger(__name__)

BEST = "best"
BEST_RECORD = "validation.json"  # in best/: the step and the value it was chosen at
EVAL_BATCH_SIZE = 8  # `modrwkv eval`'s default (evaluation.runner)
HIGHER_IS_BETTER = ("accuracy", "cider")  # the val_metric values where more is better
# in a validation's row beside the metric: the different replies the val samples got (1: the same reply to
# all, weights that read nothing from the inputs, whatever their score)
DISTINCT = "val_distinct_replies"
# A validation's breakdown by answer, when the val files' answers are a classifier's labels or options
# (`metrics.label_breakdown`, through the eval task's summary): these keys of the summary, in best/'s
# validation.json, in `Validation.summary()` for the validation whose weights final/ holds, and as a table in
# the run folder
BREAKDOWN_KEYS = ("per_answer", "replies_outside_answers")
ANSWERS_TABLE = "val_per_answer.md"
WINDOW_MSE = "val_window_mse"  # in best/'s validation.json (forecast_mse): each val window's MSE, in the scorer's order
# The baseline-fallback test (module docstring): the weights ship when the mean gain over a reply of zeros, per
# block of `horizon` windows, is at least 2 standard errors above 0 (a one-sided level of about 5 % for the
# 5-30 blocks a val split gives: Student's t 0.95 quantile is 2.13 with 4 degrees of freedom, 1.70 with 29) ...
SIGNIFICANT_T = 2.0
# ... over at least 5 blocks: with fewer, the spread of the blocks is itself too uncertain for any t to mean
# much (with 2 blocks, one degree of freedom, t reaches 2 by chance 15 % of the time for a gain of 0), so the
# baseline ships.
MIN_BLOCKS = 5


def discard_answers_table(output_dir: Path) -> None:
    """Removes the `ANSWERS_TABLE` an earlier run into `output_dir` left, as a run starts training: the table
    there is then always the current run's, written when it finishes with a breakdown (`Validation.write_breakdown`;
    a resumed run's breakdowns are in its checkpoint), and none after a run without validation, one whose
    validations break nothing down, or one not finished."""
    (output_dir / ANSWERS_TABLE).unlink(missing_ok=True)


def val_data_config(config: DataConfig) -> DataConfig:
    """The `data` section that reads the validation files: `val` as the files, `val_options` over
    `options`; for series the `val` split unless `val_options` names another, and without `val` the
    training files (their validation rows)."""
    series = config.format == "series"
    options = {**config.options, **({"split": "val"} if series else {}), **config.val_options}
    files = config.val or (config.train if series else [])  # series: the training files, unweighted
    return dataclasses.replace(config, train=[source_path(entry) for entry in files], val=[], val_options={},
                               options=options)


def best_record(row: dict[str, float], metric: str, window_mse: Sequence[float] | None = None,
                breakdown: dict[str, Any] | None = None) -> dict[str, Any]:
    """best/'s validation.json: the validation's step, the metric it was chosen by, and its values, a NaN
    as null (strict JSON has none; the val loss of a forecast_mse run whose val rows hold no supervised
    token is NaN); for forecast_mse, each val window's MSE (what the baseline-fallback test reads); with
    a breakdown by answer (`BREAKDOWN_KEYS`), that."""
    values = {key: None if math.isnan(value) else value for key, value in row.items() if key != "step"}
    windows = {} if window_mse is None else {WINDOW_MSE: [None if math.isnan(v) else v for v in window_mse]}
    answers = {key: breakdown[key] for key in BREAKDOWN_KEYS} if breakdown else {}
    return {"step": int(row["step"]), "metric": metric, **values, **windows, **answers}


def block_means(values: Sequence[float], keys: Sequence[Any], starts: Sequence[int], size: int) -> np.ndarray:
    """The means of `values` (one per window) over blocks of `size` consecutive windows of one series
    (`keys`: which series each window is of; `starts`: where it starts), each series' windows in order of
    their start; a series' last windows that fill no whole block are left out, and a series of fewer windows
    than a block is one block (`holdout: last` holds out one val window per series). With a block one horizon
    long, windows of different blocks share no target value, so the blocks' means are close to independent
    (consecutive windows at stride 1 share all but one; windows of two series share none)."""
    series: dict[Any, list[tuple[int, float]]] = {}
    for key, start, value in zip(keys, starts, values, strict=True):
        series.setdefault(key, []).append((start, value))
    blocks = []
    for windows in series.values():
        ordered = [value for _, value in sorted(windows, key=lambda window: window[0])]
        if len(ordered) < size:
            blocks.append(float(np.mean(ordered)))
            continue
        blocks += [float(np.mean(ordered[i:i + size])) for i in range(0, len(ordered) - size + 1, size)]
    return np.array(blocks, dtype=np.float64)


def t_statistic(values: np.ndarray) -> float:
    """One-sample t statistic of the mean of `values` against 0: mean / (sample standard deviation /
    sqrt(n)); +-inf when every value is the same non-zero number, 0 when all are 0, NaN below 2 values."""
    if len(values) < 2:
        return math.nan
    mean, spread = float(np.mean(values)), float(np.std(values, ddof=1))
    if spread == 0:
        return math.copysign(math.inf, mean) if mean else 0.0
    return mean / (spread / math.sqrt(len(values)))


def baseline_decision(model_mse: Sequence[float], zeros_mse: Sequence[float], keys: Sequence[Any],
                      starts: Sequence[int], horizon: int) -> dict[str, Any]:
    """Whether chosen weights beat a reply of zeros on val by more than the noise of the val blocks: their
    gain (the zeros' window MSE less theirs) averaged per block of `horizon` windows (`block_means`), its t
    statistic over the blocks; they ship ("shipped": "model") when it is at least SIGNIFICANT_T over at
    least MIN_BLOCKS blocks, else the baseline does. The record best/'s validation.json keeps."""
    model_arr, zeros_arr = np.asarray(model_mse, dtype=np.float64), np.asarray(zeros_mse, dtype=np.float64)
    blocks = block_means(zeros_arr - model_arr, keys, starts, horizon)
    t = t_statistic(blocks)
    model_value, zeros_value = float(np.mean(model_arr)), float(np.mean(zeros_arr))
    change = model_value / zeros_value - 1 if zeros_value else math.nan
    per_series = collections.Counter(keys).values()
    shape = (f"one per series (each holds fewer val windows than a block of {horizon})"
             if per_series and max(per_series) < horizon else f"of {horizon} windows")
    measured = (f"val_forecast_mse {model_value:.5f} against a reply of zeros' {zeros_value:.5f} ({abs(change):.1%} "
                f"{'higher' if change > 0 else 'lower'}), t {t:.2f} over {len(blocks)} blocks {shape} "
                "(the gain's mean over its standard error)")
    if len(blocks) < MIN_BLOCKS:
        shipped, why = "baseline", (f"{measured}: fewer than {MIN_BLOCKS} blocks cannot show that the model's "
                                    "corrections beat the baseline")
    elif not t >= SIGNIFICANT_T:  # NaN (a NaN window) too
        shipped, why = "baseline", f"{measured}: below t {SIGNIFICANT_T:g}, within the noise of the val blocks"
    else:
        shipped, why = "model", f"{measured}: at least t {SIGNIFICANT_T:g}, better than the baseline beyond noise"
    # validation.json is strict JSON, which has no NaN or infinity: an undefined or unbounded t is null
    return {"shipped": shipped, "val_forecast_mse": model_value, "zeros_forecast_mse": zeros_value,
            "t": t if math.isfinite(t) else None, "blocks": len(blocks), "block_windows": horizon,
            "significant_t": SIGNIFICANT_T, "min_blocks": MIN_BLOCKS, "reason": why}


def shipped_line(decision: dict[str, Any], step: int, final_is_best: bool) -> str:
    """The one line that says what a forecast_mse run ships and why (`baseline_decision`'s record)."""
    folders = "best/ and final/" if final_is_best else "best/"
    if decision["shipped"] == "model":
        return f"shipping the model (step {step}) in {folders}: {decision['reason']}"
    return (f"shipping the baseline alone in {folders} (the series encoder's forecast, not decoded; step {step}'s "
            f"weights kept beside it): {decision['reason']}; train.baseline_fallback false ships the weights, "
            "`modrwkv eval --force-model` / forecast(force_model=True) decodes them")


class TaskScorer:
    """Val samples answered and scored by an eval task exactly as `modrwkv eval` answers and scores them
    (greedy replies in batches, `evaluation.runner.answer_batch`, the task's summary): the value is the
    summary's `key`. Every rank answers its share of the samples, each reply capped at the task's
    `max_new_tokens` (as `modrwkv eval` caps it); the records are gathered."""

    def __init__(self, task: Any, samples: Sequence[Any], key: str) -> None:
        self.task, self.samples, self.key = task, list(samples), key
        self.higher_is_better = key in HIGHER_IS_BETTER
        self.distinct_replies = 0  # how many different replies the last call's samples got
        self.records: list[dict[str, Any]] = []  # the last call's records, in the order of `samples`
        self.summary: dict[str, Any] = {}  # the task's summary of the last call's records

    def __call__(self, model: Any, trainer: pl.Trainer) -> float:
        from ..evaluation.runner import answer_batch
        from ..inference import ModRWKVPipeline

        world_size = trainer.world_size
        shard = self.samples[trainer.global_rank::world_size]
        records = []
        with failing_together(trainer):  # a rank's error (out of memory) ends every rank, not one in the gather
            pipeline = ModRWKVPipeline(model, prefix_cache_bytes=0)  # no cache: the weights change between calls
            for start in range(0, len(shard), EVAL_BATCH_SIZE):  # in batches, as `modrwkv eval` decodes them
                records += answer_batch(self.task, pipeline, shard[start:start + EVAL_BATCH_SIZE],
                                        self.task.max_new_tokens)
        if world_size > 1:
            gathered: list[Any] = [None] * world_size
            torch.distributed.all_gather_object(gathered, records)
            ordered: list[Any] = [None] * len(self.samples)
            for rank, part in enumerate(gathered):  # rank r answered samples r, r + world_size, ...
                ordered[rank::world_size] = part
            records = ordered
        self.records = records
        self.distinct_replies = len({record["prediction"] for record in records})
        self.summary = self.task.summarize(records)
        return float(self.summary[self.key])

    def breakdown(self) -> dict[str, Any] | None:
        """The last call's breakdown by answer (`BREAKDOWN_KEYS` of the summary), where the task's summary
        gives one: exact-match answers that are a classifier's labels, or options, as `modrwkv eval` gives it."""
        if "per_answer" not in self.summary:
            return None
        return {key: self.summary[key] for key in BREAKDOWN_KEYS}


class ForecastScorer(TaskScorer):
    """`val_metric: forecast_mse`: the standardised MSE of greedy forecasts of the val windows of series
    files, the `custom-series` eval task's own windows (held out as `data.options.holdout` holds them out), forecasts
    and score."""

    def __init__(self, config: DataConfig, max_samples: int | None) -> None:
        from ..evaluation.tasks.base import BenchmarkFileError  # evaluation imports the readers training uses
        from ..evaluation.tasks.series import CustomSeries

        options = config.options
        if options.get("multivariate"):
            raise ConfigError("train.val_metric forecast_mse scores every column on its own (as `modrwkv eval "
                              "--task custom-series` does); with data.options.multivariate use val_metric loss")
        task = CustomSeries(lookback=int(options["lookback"]), horizon=int(options["horizon"]),
                            targets=options.get("columns"), id_columns=options.get("id_columns"),
                            holdout=options.get("holdout") or "ratio")
        split = options.get("split") or "val"
        samples, keys = [], []  # keys: which series each window is of (a file's column), for `block_means`
        try:
            for index, path in enumerate(expand_paths(config.train, "data.val")):  # wildcards, as training reads them
                loaded = task.load(Path(path), split)
                samples += loaded
                keys += [(index, sample.reference["channel"]) for sample in loaded]
        except BenchmarkFileError as exc:
            raise DataError("", "unreadable_file", str(exc)) from None
        super().__init__(task, samples[:max_samples], "mse")
        self.keys = keys[:max_samples]
        self.starts = [int(sample.reference["start"]) for sample in self.samples]

    def window_mse(self) -> list[float]:
        """Each val window's MSE in the last call, in the order of `samples`."""
        return [float(record["score"]["mse"]) for record in self.records]

    def zeros(self, model: Any) -> float:
        """The MSE of the forecasts a reply of zeros gives: the series encoder's baseline alone (seasonal
        naive + drift + ridge with the generic config), what the model's corrections have to beat."""
        return self.zeros_scores(model)[0]

    def zeros_scores(self, model: Any) -> tuple[float, list[float]]:
        """`zeros`, and each val window's MSE under a reply of zeros (in the order of `samples`), from one
        pass of baseline forecasts."""
        from ..inference.pipeline import baseline_forecast

        encoder = model.encoders["series"]
        records = [{"forecast": baseline_forecast(encoder, sample.series[0], self.task.horizon)[:, 0].tolist(),
                    "reference": sample.reference} for sample in self.samples]
        return (float(self.task.summarize(records)["mse"]),
                [float(self.task.score(record)["mse"]) for record in records])


def val_scorer(config: DataConfig, metric: str, max_samples: int | None) -> TaskScorer | None:
    """What scores the val files by `train.val_metric` (`config`: `val_data_config`'s), besides their loss;
    None for "loss"."""
    if metric == "loss":
        return None
    if metric == "forecast_mse":
        return ForecastScorer(config, max_samples)
    return answer_scorer(config, metric, max_samples)


def answer_scorer(config: DataConfig, metric: str, max_samples: int | None) -> TaskScorer:
    """`val_metric` accuracy / wer / cer / mse / cider: the val files answered and scored by the `custom` eval
    task, so that a validation's value is what `modrwkv eval --task custom --data FILE ...` prints for the
    same weights and the same files: they are loaded together as that command loads them (a record
    without an id known as "file name:N"; ids two records share refused, as it refuses them), one cap
    over all of them (the first `max_samples` records of the files in order, as its `--limit`), every reply
    capped at the longest answer of any file + 16 tokens (its `max_new_tokens`). The records are read as
    the val loss reads them (the data.format, data.options and data.val_options of `config`), where that
    command reads a file by itself (its format
    detected, ShareGPT names from a dataset_info.json, the ASR prompt the model records). The files'
    records decide how accuracy is counted (exact match, VQA accuracy or the choice taken), as that
    command decides; wer, cer, mse and cider are its `--metric` of that name (captions are scored by cider
    unless another is set; accuracy counts their exact matches, its `--metric exact`)."""
    from ..evaluation.runner import check_sample_ids
    from ..evaluation.tasks.base import BenchmarkFileError, EvalSample
    from ..evaluation.tasks.custom import CustomTask

    # data.val's wildcards, as the reader of the val loss expands them (and names them in an error)
    paths = [Path(path) for path in expand_paths(config.train, "data.val")]
    refused = f"train.val_metric {metric} answers data.val as `modrwkv eval --task custom` does, which refuses it"

    def loaded(eval_metric: str | None) -> tuple[CustomTask, list[EvalSample]]:
        # The val records read as the val loss reads them: data.format, data.options with data.val_options over
        # them (ShareGPT columns and tags, an ASR manifest's prompt), data.media_folder as `--media-folder`.
        task = CustomTask(metric=eval_metric, media_folder=config.media_folder, data_format=config.format,
                          reader_options=config.options)
        try:
            return task, task.load(paths, "all")
        except BenchmarkFileError as exc:
            raise DataError("", "unreadable_file", f"{refused}: {exc}") from None

    task, samples = loaded(None if metric == "accuracy" else metric)
    if metric == "accuracy" and task.headline == "cider":
        # captions counted by exact match, as `modrwkv eval --task custom --metric exact` counts them: class names
        # written as captions (the digits' .txt in docs/custom-data.md), which a config from before captions were
        # scored by CIDEr-D validates so
        task, samples = loaded("exact")
    try:  # predictions are told apart by id there: ids two records share are refused alike
        check_sample_ids(samples, data_label(paths), task.name, "all")
    except ValueError as exc:
        raise DataError("", "unreadable_file", f"{refused}: {exc}") from None
    if task.headline != metric:
        raise ConfigError(f"train.val_metric is {metric}, but {data_label(paths)} holds records that `modrwkv eval "
                          f"--task custom` scores by {task.headline_label} ({samples[0].reference['metric']}): set "
                          f"train.val_metric {task.headline}")
    return TaskScorer(task, samples[:max_samples], metric)


class Validation(pl.Callback):
    """See the module docstring."""

    def __init__(self, *, output_dir: Path, samples: Sequence[Sample], dataset: ProcessedDataset,
                 collate: DroppingCollator, optim: OptimConfig, total_steps: int, checkpointer: PretrainedCheckpoint,
                 lora: LoRAConfig | None, scorer: TaskScorer | None = None,
                 emit: Callable[[str], None] | None = None) -> None:
        self.output_dir = output_dir
        self.dataset = dataset
        self.collate = collate
        self.micro_batch_size = optim.micro_batch_size
        self.every, self.at_start = optim.val_every, optim.val_at_start
        self.metric = f"val_{optim.val_metric}"
        self.patience = optim.early_stopping_patience
        self.count = len(samples) if optim.val_max_samples is None else min(len(samples), optim.val_max_samples)
        self.total_steps = total_steps
        self.checkpointer = checkpointer
        self.lora = lora
        self.scorer = scorer
        self.higher_is_better = scorer is not None and scorer.higher_is_better
        self.emit = emit or log.info
        # what travels in the checkpoints
        self.history: list[dict[str, float]] = []  # per validation: step, val_loss (, the scorer's val_<metric>)
        self.best: dict[str, float] | None = None  # the history row of the best validation
        self.since_best = 0  # validations since the best one
        self.stopped_at: int | None = None  # the step early stopping ended the run at
        self.zeros_mse: float | None = None  # forecast_mse: what a reply of zeros scores (ForecastScorer.zeros)
        self.zeros_window_mse: list[float] = []  # ... per val window
        self.fallback = optim.baseline_fallback and isinstance(scorer, ForecastScorer)
        self.decision: dict[str, Any] | None = None  # the baseline-fallback test's record (`baseline_decision`)
        # the breakdown by answer (`TaskScorer.breakdown`, with its "step") of the best validation and of the
        # last: final/'s is one of them; a row of the history holds only numbers, the loggers' columns
        self.best_breakdown: dict[str, Any] | None = None
        self.last_breakdown: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "best": self.best, "since_best": self.since_best,
                "stopped_at": self.stopped_at, "best_breakdown": self.best_breakdown,
                "last_breakdown": self.last_breakdown}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict["history"])
        self.best, self.since_best = state_dict["best"], int(state_dict["since_best"])
        self.stopped_at = state_dict["stopped_at"]
        # (a checkpoint saved before validations kept their breakdown has none)
        self.best_breakdown = state_dict.get("best_breakdown")
        self.last_breakdown = state_dict.get("last_breakdown")
        if self.stopped_at is not None:  # resumed after early stopping had ended the run: it stays ended
            self.checkpointer.total_steps = self.stopped_at

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if isinstance(self.scorer, ForecastScorer):
            self.zeros_mse, self.zeros_window_mse = self.scorer.zeros_scores(pl_module.model)
            if trainer.is_global_zero:
                self.emit(f"validation: a reply of zeros (the series encoder's baseline alone) scores val_forecast_mse "
                          f"{self.zeros_mse:.4f} on the {len(self.scorer.samples)} val windows")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        finished = trainer.global_step >= self.checkpointer.total_steps  # not stopped by a signal
        if finished and self.best is None and self.checkpointer.final_source is not None:
            log.warning("output.final is best, but no validation gave a number (every %s was NaN): final/ holds "
                        "the last step", self.metric)
            self.checkpointer.final_source = None
        # (with the baseline fallback such weights never ship, and its line says why)
        if (finished and not self.fallback and self.zeros_mse is not None and self.best is not None
                and self.best[self.metric] > self.zeros_mse):
            log.warning("the best validation (val_forecast_mse %.4f at step %d) is worse than a reply of zeros "
                        "(%.4f, the series encoder's baseline alone): on these val rows the model's corrections do "
                        "not pay; forecast with the baseline alone (train.baseline_fallback true ships it), or "
                        "train less", self.best[self.metric], int(self.best["step"]), self.zeros_mse)
        if finished and self.best is not None and self.best.get(DISTINCT) == 1 and len(self.scorer.samples) > 1:
            log.warning("the best validation's weights (step %d) give one reply to every one of the %d val samples: "
                        "they read nothing from the inputs, and a score above a baseline is the val set's own bias, "
                        "not skill (docs/forecasting.md, \"Three seeds, and what validation picks\")",
                        int(self.best["step"]), len(self.scorer.samples))
        if finished and self.fallback and self.best is not None:
            self._ship_or_fall_back(trainer)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self._finish_best_swap()
        if trainer.global_step > 0:  # resumed
            self._keep_later_best(trainer)
        step = trainer.global_step
        if self.stopped_at is not None:  # (Lightning skips training when the checkpoint's epoch had ended)
            trainer.should_stop = True
        elif self.at_start and step == 0 and not self.history:
            self.validate(trainer, pl_module)
        elif step > 0 and self._due(step) and not (self.history and self.history[-1]["step"] >= step):
            # Resumed from the checkpoint an error left after this step's update, before its validation ended.
            self.validate(trainer, pl_module)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if (batch_idx + 1) % trainer.accumulate_grad_batches:
            return
        if self._due(trainer.global_step):
            self.validate(trainer, pl_module)

    def _due(self, step: int) -> bool:
        """Whether the run validates at `step`: every `every` steps, and at the last."""
        return step % self.every == 0 or step == self.total_steps

    def summary(self, finished: bool = True) -> dict[str, Any]:
        """What `TrainResult.metrics["validation"]` holds; "breakdown" (its "step", `BREAKDOWN_KEYS`) only where
        validations break the score down by answer and the run `finished` (final/ holds the weights it is of;
        a run stopped by a signal has no final/)."""
        summary = {"metric": self.metric, "best_step": None if self.best is None else int(self.best["step"]),
                   "best": None if self.best is None else self.best[self.metric], "stopped_at": self.stopped_at,
                   "zeros_forecast_mse": self.zeros_mse, "shipped": self.decision, "history": self.history}
        if finished and (breakdown := self.final_breakdown()) is not None:
            summary["breakdown"] = breakdown
        return summary

    def final_breakdown(self) -> dict[str, Any] | None:
        """The breakdown by answer of the validation whose weights final/ holds: the best's with `output.final:
        best`, else the last's (the last step is always validated)."""
        return self.best_breakdown if self._final_is_best() else self.last_breakdown

    def _final_is_best(self) -> bool:
        return self.best is not None and self.checkpointer.final_source == self.output_dir / BEST

    def write_breakdown(self) -> Path | None:
        """`ANSWERS_TABLE` in the run folder: `final_breakdown` as `modrwkv eval`'s report.md tabulates it; None
        (nothing written) without one."""
        from ..evaluation.report import per_answer_table

        breakdown = self.final_breakdown()
        if breakdown is None:
            return None
        which = "the best validation" if self._final_is_best() else "the last step"
        choice = self.scorer is not None and self.scorer.samples[0].reference["metric"] == "choice"
        lines = [f"# {self.metric} per answer: final/ (step {breakdown['step']}, {which}) on data.val", "",
                 *per_answer_table(breakdown["per_answer"], choice=choice),
                 f"Replies outside the answers: {breakdown['replies_outside_answers']}", ""]
        path = self.output_dir / ANSWERS_TABLE
        write_text_atomically(path, "\n".join(lines))
        return path

    def validate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from ..evaluation.report import weakest_answer

        model, step = pl_module.model, trainer.global_step
        modes = {module: module.training for module in model.modules()}  # frozen encoders stay in eval mode
        model.eval()
        try:
            with torch.no_grad():
                row = {"step": float(step), "val_loss": self._loss(trainer, model)}
                if self.scorer is not None:
                    row[self.metric] = self.scorer(model, trainer)
                    row[DISTINCT] = float(self.scorer.distinct_replies)
        finally:
            for module, training in modes.items():
                module.train(training)
        value = row[self.metric]
        breakdown = self.scorer.breakdown() if self.scorer is not None else None
        if breakdown is not None:
            breakdown = {"step": step, **breakdown}
        # NaN (a diverged model, a val set without a supervised token) is never the best: compared, it would
        # be, as the first value, one that nothing improves on, and best/ would hold it.
        # A resumed run validates again the steps after its checkpoint; at the step of a best it kept from best/
        # (`_keep_later_best`), the same value is that best again, and the steps before it are not "since" it.
        improved = self._improves(row, self.best) or (self.best is not None and step == self.best["step"] and not (
            math.isnan(value) or self._better(self.best[self.metric], value)))
        # The state changes once best/ is written: after an error, a checkpoint of this step holds no part of
        # this validation, which the resumed run then makes (on_train_start).
        if improved:
            self._save_best(trainer, pl_module, row, breakdown)
            self.best, self.since_best, self.best_breakdown = row, 0, breakdown
        elif self.best is None or step > self.best["step"]:
            self.since_best += 1
        self.history.append(row)
        self.last_breakdown = breakdown
        for logger in trainer.loggers:
            logger.log_metrics({k: v for k, v in row.items() if k != "step"}, step=step)
        stop = bool(self.patience) and self.since_best >= self.patience and step < self.total_steps
        if trainer.is_global_zero:
            values = ", ".join(f"{k} {v:.0f}" if k == DISTINCT else f"{k} {v:.4f}" for k, v in row.items() if k != "step")
            best = self.best or row
            note = (f"; stopping early: {self.since_best} validations without improving on it" if stop else "")
            weakest = (f"; lowest accuracy of an answer: {weakest_answer(breakdown['per_answer'])}"
                       if breakdown is not None else "")
            self.emit(f"validation at step {step}/{self.total_steps}: {values} (best {self.metric} "
                      f"{best[self.metric]:.4f} at step {int(best['step'])}){weakest}{note}")
        if stop:  # the same decision on every rank: the values are reduced over all of them
            self.stopped_at = step
            self.checkpointer.total_steps = step  # this step is the run's last: a checkpoint and final/ follow
            trainer.should_stop = True

    def _better(self, value: float, than: float) -> bool:
        return value > than if self.higher_is_better else value < than

    def _improves(self, row: dict[str, float], best: dict[str, float] | None) -> bool:
        """Whether a validation's values beat the best so far: a better value of the metric, or, for a
        metric other than the loss, an equal one with a lower val loss. Accuracy over a few hundred
        questions often stays the same for many validations once training converges; of weights that
        answer as many right, the earliest did worse on held-out digits than the later ones, surer of
        their answers (docs/custom-data.md, "Validation by accuracy"). NaN is never better."""
        value = row[self.metric]
        if math.isnan(value):
            return False
        if best is None or self._better(value, best[self.metric]):
            return True
        return (self.metric != "val_loss" and value == best[self.metric]
                and row.get("val_loss", math.nan) < best.get("val_loss", math.nan))

    def _loss(self, trainer: pl.Trainer, model: Any) -> float:
        """The mean token cross-entropy over this rank's share of the val samples, reduced over all ranks."""
        rank, world, size = trainer.global_rank, trainer.world_size, self.micro_batch_size
        loss_sum, labels = 0.0, 0.0
        # One rank's error (out of memory on a longer sample of its share) ends every rank with it: without it
        # the others waited in the reduce below for ever, where that rank's process lived on.
        with failing_together(trainer), trainer.precision_plugin.val_step_context():
            for start in range(rank * size, self.count, world * size):
                batch = self.collate([self.dataset[i] for i in range(start, min(start + size, self.count))])
                if batch.batch is None:
                    continue
                out = model.forward_batch(batch.batch.to(trainer.strategy.root_device))
                if out.num_label_tokens:
                    loss_sum += float(out.loss.float()) * out.num_label_tokens
                    labels += out.num_label_tokens
        totals = torch.tensor([loss_sum, labels], dtype=torch.float64, device=trainer.strategy.root_device)
        if world > 1:
            totals = trainer.strategy.reduce(totals, reduce_op="sum")
        loss_sum, labels = totals.tolist()
        return loss_sum / labels if labels else math.nan

    def _save_best(self, trainer: pl.Trainer, pl_module: pl.LightningModule, row: dict[str, float],
                   breakdown: dict[str, Any] | None) -> None:
        best = self.output_dir / BEST
        tmp = best.with_name(f".{BEST}.tmp")
        with failing_together(trainer):
            if trainer.is_global_zero:
                shutil.rmtree(tmp, ignore_errors=True)
                export_model(pl_module.model, tmp, self.lora, self.checkpointer.run_config())
                # written last: a new best/ with its record is complete (`_finish_best_swap`)
                windows = self.scorer.window_mse() if isinstance(self.scorer, ForecastScorer) else None
                record = best_record(row, self.metric, windows, breakdown)
                write_text_atomically(tmp / BEST_RECORD, json.dumps(record, indent=1, allow_nan=False) + "\n")
                replace_folder(tmp, best)
                log.info("best %s so far (%.4f at step %d): saved to %s", self.metric, row[self.metric],
                         int(row["step"]), best)

    def _ship_or_fall_back(self, trainer: pl.Trainer) -> None:
        """The baseline-fallback test on best/ (module docstring): its result in best/'s validation.json
        ("shipped") and, where the baseline ships, `series_baseline_only` in its config.json, before final/ is
        copied from it; then the run's line saying what ships and why. A best/ decided already (a run
        resumed at its last step) keeps its decision."""
        best = self.output_dir / BEST
        decision = None
        with failing_together(trainer):
            if trainer.is_global_zero and not (best / BEST_RECORD).is_file():
                log.warning("%s is missing: the baseline-fallback test has nothing to test", best / BEST_RECORD)
            elif trainer.is_global_zero:
                record = json.loads((best / BEST_RECORD).read_text())
                decision = record.get("shipped")
                windows = record.get(WINDOW_MSE)
                if decision is None and (windows is None or len(windows) != len(self.zeros_window_mse)):
                    log.warning("%s has no per-window val MSE of its weights (saved by an older modrwkv): the "
                                "baseline-fallback test cannot run, and its weights ship", best)
                elif decision is None:
                    windows = [math.nan if value is None else value for value in windows]
                    decision = baseline_decision(windows, self.zeros_window_mse, self.scorer.keys, self.scorer.starts,
                                                 self.scorer.task.horizon)
                    if decision["shipped"] == "baseline":
                        config = json.loads((best / CONFIG_NAME).read_text())
                        config["series_baseline_only"] = True
                        write_text_atomically(best / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
                    record["shipped"] = decision
                    write_text_atomically(best / BEST_RECORD, json.dumps(record, indent=1, allow_nan=False) + "\n")
        self.decision = trainer.strategy.broadcast(decision, src=0)
        if self.decision is not None and trainer.is_global_zero:
            log.info("%s", shipped_line(self.decision, int(self.best["step"]), self.checkpointer.final_source == best))

    def _finish_best_swap(self) -> None:
        """A run killed while `replace_folder` swapped best/ left it under another name: the new one if it
        was complete (its record is written last), else the one it was replacing."""
        best = self.output_dir / BEST
        old = aside_name(best)
        if not best.is_dir():
            for candidate in (best.with_name(f".{BEST}.tmp"), old):
                if (candidate / BEST_RECORD).is_file():
                    candidate.rename(best)
                    log.info("%s: restored from %s, left by a run stopped while it replaced best/", best, candidate)
                    break
        shutil.rmtree(old, ignore_errors=True)

    def _keep_later_best(self, trainer: pl.Trainer) -> None:
        """A resumed run's best so far is the checkpoint's, unless best/ holds a better one from a later step
        (written before the run was stopped, and its next checkpoint never was): then it stays the best, so
        that a worse validation of the steps trained again does not replace it."""
        record = None
        if trainer.is_global_zero:
            with contextlib.suppress(OSError, ValueError):
                record = json.loads((self.output_dir / BEST / BEST_RECORD).read_text())
        record = trainer.strategy.broadcast(record, src=0)  # every rank takes the same decisions
        if not isinstance(record, dict) or record.get("metric") != self.metric or not isinstance(record.get("step"), int):
            return
        if record["step"] <= trainer.global_step:
            if self.best_breakdown is None and self.best is not None and record["step"] == int(self.best["step"]):
                # a checkpoint saved before validations kept their breakdown: its best's is in best/'s record
                self.best_breakdown = _record_breakdown(record)
            return
        value = record.get(self.metric)
        if not isinstance(value, (int, float)):
            return
        later = {"step": float(record["step"]), **{key: float(v) for key, v in record.items()
                                                   if key.startswith("val_") and isinstance(v, (int, float))}}
        if not self._improves(later, self.best):
            return
        self.best = later
        self.best_breakdown = _record_breakdown(record)
        log.info("resumed at step %d: best/ keeps the best %s so far, %.4f at step %d (after the checkpoint)",
                 trainer.global_step, self.metric, value, record["step"])


def _record_breakdown(record: dict[str, Any]) -> dict[str, Any] | None:
    """The breakdown by answer (with its "step") best/'s validation.json records, None where it has none."""
    if not all(key in record for key in BREAKDOWN_KEYS):
        return None
    return {"step": record["step"], **{key: record[key] for key in BREAKDOWN_KEYS}}
