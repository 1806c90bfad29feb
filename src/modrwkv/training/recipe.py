"""The training recipe, start to end: set up the model, the data and the Lightning trainer; run;
finish (the result and its numbers). Each step is a function of its own.

    from modrwkv.training import load_config, train
    result = train(load_config("configs/vision-stage1.yaml", ["--train.lr", "5e-4"]))
    result.model, result.metrics, result.final_dir

`train` also takes ready-made `samples` and/or a ready-made `model` (what the quickstart does),
in which case `data` / `model` of the config are not read.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import logging
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy, SingleDeviceStrategy, Strategy
from torch.utils.data import DataLoader

from ..data.readers import DataError
from ..data.readers.asr import DEFAULT_ASR_PROMPT
from ..data.readers.series import series_prompt_problem, series_prompt_template
from ..data.readers.webdataset import CAPTIONED
from ..data.sample import Sample
from ..encoders import build_encoder
from ..encoders.media import VideoSampling, set_max_image_pixels
from ..lm import RWKV7, RWKV7Config, load_model
from ..lm.files import check_output_folder
from ..lm.model import Block
from ..multimodal import CachedEncoder, ModRWKV
from ..processing.loader import DroppingCollator, ProcessedDataset, init_worker
from .checkpoint import (FINAL, TRAINING_STATE, PretrainedCheckpoint, RunConfigWriter, StepSeeds, failing_together,
                         latest_checkpoint, write_final)
from .config import (ConfigError, ModelConfig, OptimConfig, TrainConfig, check_resume, config_from_dict,
                     source_path, unused_validation_options)
from .data import (SourceSpan, StepBatchSampler, check_data_files, check_pass_size, check_series_targets,
                   describe_mixture, estimate_lengths, fit_series_baseline, modalities_used, pass_size, read_samples,
                   read_sources, resolve_auto_season, series_target_options, size_linear_baseline,
                   val_files_trained_on)
from .lora import load_lora, read_lora_config
from .memory import estimate_memory, plan_from_model
from .module import ModRWKVModule, set_stage, warn_if_lm_frozen_untrained
from .progress import Interrupted, ProgressLine, RunTotals, SaveOnError, StopOnSignal
from .schedules import warmup_problem
from ..busy_cores import CoreUse
from .threads import TrainingThreads, callers_threads
from .validation import BEST, Validation, discard_answers_table, val_data_config, val_scorer

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainResult:
    model: ModRWKV  # as trained (LoRA layers still separate in a LoRA run; see merge_lora)
    output_dir: Path
    final_dir: Path | None  # None when the run stopped before its last step
    # per optimizer step of this part of the run (from its resume on): step, loss, lr, tokens, seconds, tokens_per_s
    history: list[dict[str, float]]
    metrics: dict[str, Any]  # totals over the whole run, its parts before a resume included (progress.RunTotals)
    stopped_by: str | None = None  # "SIGTERM" / "SIGINT" when a signal stopped the run early
    checkpoint: Path | None = None  # the newest resumable checkpoint of the run
    # A signal that arrived during the last step: the run finished all the same (final_dir is complete,
    # nothing to resume), but whoever sent it wants the program to end rather than go on to more work.
    signal_at_end: str | None = None


def build_model(config: ModelConfig, seed: int) -> ModRWKV:
    """A new ModRWKV from the `model` section: from a `save_pretrained` folder (`init_from`, which
    keeps its trained adapters and its template/splicing), or LM + encoders + fresh adapters."""
    if config.init_from is not None:
        if read_lora_config(config.init_from) is not None:
            raise ConfigError(f"model.init_from={config.init_from} holds a LoRA run; merge it first "
                              "(modrwkv merge-lora) and start from the merged folder")
        model = ModRWKV.from_pretrained(config.init_from)
        model.ctx_len = config.ctx_len
        if config.video is not None:
            model.video = VideoSampling.from_dict(config.video)
        return model
    torch.manual_seed(seed)
    if config.lm.checkpoint is not None:
        lm = load_model(config.lm.checkpoint)
    else:
        try:
            lm = RWKV7(RWKV7Config.from_dict(config.lm.config or {}))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"model.lm.config: {exc}") from None
    encoders = {}
    for modality, spec in config.encoders.items():
        encoder = build_encoder(spec.name, source=spec.source, config=spec.config, trainable=spec.trainable,
                                **spec.options)
        if encoder.modality != modality:
            raise ConfigError(f"model.encoders.{modality}: {spec.name} is a {encoder.modality} encoder")
        encoders[modality] = encoder
    return ModRWKV.build(lm, encoders, config.adapters, template=config.template, splice=config.splice,
                         ctx_len=config.ctx_len, video=config.video)


def build_strategy(name: str) -> Strategy | str:
    if name.startswith("deepspeed"):
        if importlib.util.find_spec("deepspeed") is None:
            raise ConfigError(f"runtime.strategy={name} needs DeepSpeed, which is not installed: "
                              "pip install deepspeed (on a machine with CUDA), or use ddp / fsdp")
        return name
    if name == "fsdp":
        return FSDPStrategy(auto_wrap_policy={Block}, state_dict_type="full")
    if name == "ddp":
        return DDPStrategy(find_unused_parameters=False)
    return "auto"


def build_loggers(config: TrainConfig) -> list[Logger]:
    output = Path(config.output.dir)
    loggers: list[Logger] = [CSVLogger(output, name="logs")]
    tensorboard = importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX")
    if config.output.tensorboard and tensorboard:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(output, name="logs", default_hp_metric=False))
    if config.output.wandb_project:
        if importlib.util.find_spec("wandb") is None:
            raise ConfigError("output.wandb_project is set but wandb is not installed (pip install wandb)")
        from lightning.pytorch.loggers import WandbLogger

        loggers.append(WandbLogger(project=config.output.wandb_project, save_dir=str(output)))
    return loggers


class TrainData(pl.LightningDataModule):
    """The training loader; its sampler is built once the trainer knows the world size and rank,
    and skips what a resumed run has already consumed."""

    def __init__(self, dataset: ProcessedDataset, collate: DroppingCollator, *, micro_batch_size: int,
                 total_micro_batches: int, seed: int, shuffle: bool, lengths: Sequence[int] | None,
                 num_workers: int, worker_setup: Callable[[], None] | None = None,
                 spans: Sequence[SourceSpan] | None = None) -> None:
        super().__init__()
        self.dataset = dataset
        self.collate = collate
        self.micro_batch_size = micro_batch_size
        self.total_micro_batches = total_micro_batches
        self.seed = seed
        self.shuffle = shuffle
        self.lengths = lengths
        self.num_workers = num_workers
        self.worker_setup = worker_setup  # process-wide settings, for workers that start afresh (spawn)
        self.spans = spans  # the data.train entries' samples and repeats (None: each sample once per pass)

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        sampler = StepBatchSampler(len(self.dataset), micro_batch_size=self.micro_batch_size,
                                   world_size=trainer.world_size, rank=trainer.global_rank,
                                   total=self.total_micro_batches, seed=self.seed, shuffle=self.shuffle,
                                   lengths=self.lengths, spans=self.spans)
        sampler.skip(trainer.global_step * trainer.accumulate_grad_batches)
        return DataLoader(self.dataset, batch_sampler=sampler, collate_fn=self.collate, num_workers=self.num_workers,
                          persistent_workers=False,
                          worker_init_fn=functools.partial(init_worker, self.worker_setup, rank=trainer.global_rank))


@dataclasses.dataclass(frozen=True)
class StepPlan:
    """How many optimizer steps the run makes and how a step's batch is split."""

    total_steps: int
    accumulation: int  # micro-batches per optimizer step on each process
    world_size: int
    num_samples: int
    batch_size: int
    steps_per_epoch: float  # one pass: every whole global micro-batch of the data once

    @property
    def epochs(self) -> float:
        """Passes over the data the steps make."""
        return self.total_steps / self.steps_per_epoch

    def describe(self, opt: OptimConfig) -> str:
        """The step count and where it came from (`max_steps` wins over `epochs`)."""
        source = (f"train.max_steps={opt.max_steps}, which overrides train.epochs" if opt.max_steps is not None
                  else f"train.epochs={opt.epochs:g}; set train.max_steps to override")
        return (f"{self.total_steps} optimizer steps of {self.batch_size} samples = {self.epochs:.2f} epochs of "
                f"{self.num_samples} samples ({source})")


def plan_steps(config: TrainConfig, world_size: int, num_samples: int) -> StepPlan:
    """The run's step count: `train.max_steps` when set, else `train.epochs` passes over the data
    (rounded down to whole steps, at least one)."""
    opt = config.train
    if opt.batch_size % (opt.micro_batch_size * world_size):
        raise ConfigError(f"train.batch_size {opt.batch_size} is not a multiple of micro_batch_size "
                          f"{opt.micro_batch_size} x {world_size} processes")
    accumulation = opt.batch_size // (opt.micro_batch_size * world_size)
    micro_batches_per_pass = num_samples // (opt.micro_batch_size * world_size)
    if micro_batches_per_pass < accumulation:  # say which key to lower, and to what
        micro = opt.micro_batch_size * world_size
        if micro_batches_per_pass == 0:
            fits = num_samples // world_size  # the largest micro-batch each process can fill
            if world_size == 1:
                raise ConfigError(f"{num_samples} samples do not fill one micro-batch of {opt.micro_batch_size}: set "
                                  f"train.micro_batch_size and train.batch_size to at most {fits}")
            raise ConfigError(f"{num_samples} samples do not fill one micro-batch of {opt.micro_batch_size} x "
                              f"{world_size} processes: set train.micro_batch_size to at most {fits}, and "
                              f"train.batch_size to it x {world_size} (at most {fits * world_size})")
        raise ConfigError(f"{num_samples} samples do not fill one batch of {opt.batch_size} (train.batch_size): set "
                          f"train.batch_size to at most {micro_batches_per_pass * micro}, a multiple of "
                          f"train.micro_batch_size {opt.micro_batch_size}"
                          f"{f' x {world_size} processes' if world_size > 1 else ''}")
    total = opt.max_steps or max(1, math.floor(opt.epochs * micro_batches_per_pass / accumulation))
    return StepPlan(total, accumulation, world_size, num_samples, opt.batch_size, micro_batches_per_pass / accumulation)


def setup_model(config: TrainConfig, model: ModRWKV | None, resume_from: Path | None) -> ModRWKV:
    """The model to train: the checkpoint's when resuming, the given one, or a new one from the
    `model` section; with its stage's weights unfrozen and the runtime's kernels."""
    if resume_from is not None:
        if model is not None:
            raise ValueError("resume rebuilds the model from its checkpoint; do not pass a model")
        model = ModRWKV.from_pretrained(resume_from)
        if read_lora_config(resume_from) is not None:
            load_lora(model.lm, resume_from)
        log.info("resuming from %s", resume_from)
    elif model is None:
        model = build_model(config.model, config.train.seed)
        if config.model.init_from is None and config.model.lm.checkpoint is None:
            warn_if_lm_frozen_untrained(config.train.stage)
    if config.model.feature_cache:
        for modality, encoder in list(model.encoders.items()):
            if not encoder.trainable and not isinstance(encoder, CachedEncoder):
                model.encoders[modality] = CachedEncoder(encoder, Path(config.model.feature_cache) / modality)
    set_stage(model, config.train.stage, config.train.lora)
    # A folder whose training shipped its baseline alone (model.init_from a best/) decodes again: validation scores
    # what this run's weights write, and its own end decides what ships.
    model.series_baseline_only = False
    model.lm.gradient_checkpointing = config.train.gradient_checkpointing
    model.lm.wkv_impl = config.runtime.wkv_impl
    return model


def setup_data(config: TrainConfig, model: ModRWKV,
               samples: Sequence[Sample]) -> tuple[ProcessedDataset, list[int] | None]:
    """The processed dataset (and length estimates when grouping by length)."""
    missing = sorted(modalities_used(samples) - set(model.encoders))
    if missing:
        raise ConfigError(f"the data has {missing} inputs but the model has encoders only for {sorted(model.encoders)}")
    if config.data.format == "asr":  # recorded with the model, so that evaluation asks the same way
        model.asr_prompt = config.data.options.get("prompt", DEFAULT_ASR_PROMPT)
    if config.data.format == "qa" and any(sample.meta.get(CAPTIONED) for sample in samples):
        # WebDataset shards' captioned samples were asked the reader's prompt (None: the default): recorded
        # with the model, so that evaluation asks the same shards the same way. Without such samples (.json
        # records in shards ask their own questions) the model keeps the record of the folder it started from.
        model.caption_prompt = config.data.options.get("prompt")
    if config.data.format == "series":  # recorded with the model, so that a forecast is asked from as many steps,
        model.series_lookback = int(config.data.options["lookback"])  # for as many (the default horizon of
        model.series_horizon = int(config.data.options["horizon"])  # `modrwkv forecast`), with the reader's template
        prompt = config.data.options.get("prompt")
        problem = series_prompt_problem(prompt)
        if problem:  # the reader checks it too, but samples given to train() bypass the reader
            raise ConfigError(f"data.options.prompt: {problem}")
        model.series_prompt = series_prompt_template(prompt, bool(config.data.options.get("multivariate", False)))
    processor = model.processor(truncation=config.data.truncation, supervise_prefix=config.data.supervise_prefix)
    lengths = estimate_lengths(samples, processor) if config.data.group_by_length else None
    return ProcessedDataset(samples, processor), lengths


def setup_trainer(config: TrainConfig) -> pl.Trainer:
    trainer = pl.Trainer(
        accelerator=config.runtime.accelerator,
        devices=config.runtime.devices,
        num_nodes=config.runtime.num_nodes,
        strategy=build_strategy(config.runtime.strategy),
        precision=config.runtime.precision,
        max_epochs=1,  # one Lightning epoch = the whole run; the sampler makes the data passes
        gradient_clip_val=config.train.grad_clip,
        logger=build_loggers(config),
        log_every_n_steps=config.output.log_every,
        enable_progress_bar=config.output.progress_bar,
        enable_checkpointing=False,  # PretrainedCheckpoint does it
        enable_model_summary=False,
        use_distributed_sampler=False,  # StepBatchSampler shards by rank itself
        num_sanity_val_steps=0,
        default_root_dir=config.output.dir,
    )
    if config.model.feature_cache and config.data.num_workers and not isinstance(trainer.accelerator, CPUAccelerator):
        raise ConfigError("model.feature_cache computes features in the data-loader workers, which cannot use "
                          "the GPU: set data.num_workers to 0 (the cache makes later passes cheap anyway)")
    return trainer


def setup_validation(config: TrainConfig, model: ModRWKV, series_encoder: object | None, dataset: ProcessedDataset,
                     checkpointer: PretrainedCheckpoint, total_steps: int,
                     progress: Callable[[str], None] | None, samples_given: bool = False) -> Validation | None:
    """The validation callback when `train.val_every` is set: the `data.val` samples, read and processed
    as the training samples are (a series' targets relative to the same baseline). `samples_given`: the
    training samples replace data.train's files, which are then not looked at."""
    opt = config.train
    if not opt.val_every:
        return None
    val_config = val_data_config(config.data)
    try:
        samples = read_samples(series_target_options(val_config, series_encoder),
                               "data.val" if config.data.val else "data.train")  # series: the training files' val rows
        scorer = val_scorer(val_config, opt.val_metric, opt.val_max_samples)
    except DataError as exc:
        if config.data.val:  # files the user named must hold val samples
            raise
        # The series default, the training files' val rows, on a file too short to have any: the generic
        # config still trains it (as without a linear baseline), and says so.
        note = (f"training without validation: the val rows of {', '.join(val_config.train)} hold no window of "
                f"look-back + horizon ({exc}); give data.val, or set train.val_every 0")
        log.warning("%s", note)
        if progress is not None:
            progress(note)
        checkpointer.final_source = None
        return None
    check_series_targets(samples, series_encoder)
    trained_on = [] if samples_given else val_files_trained_on(config.data)
    if trained_on:
        log.warning("data.val: %s %s read by data.train too: a validation on records the model trains on tells how "
                    "well it has learnt them, not how it does on new ones (and picks output.final best, and early "
                    "stopping, by that); give held-out records", ", ".join(trained_on),
                    "is" if len(trained_on) == 1 else "are")
    log.info("validation every %d steps on %d samples of %s (%s)", opt.val_every, len(samples),
             ", ".join(val_config.train), opt.val_metric)
    return Validation(output_dir=Path(config.output.dir), samples=samples,
                      dataset=ProcessedDataset(samples, dataset.processor), collate=DroppingCollator(model.collator()),
                      optim=opt, total_steps=total_steps, checkpointer=checkpointer,
                      lora=checkpointer.lora, scorer=scorer, emit=progress)


def _fit(trainer: pl.Trainer, module: ModRWKVModule, data: TrainData, resume_from: Path | None,
         stopper: StopOnSignal) -> None:
    with warnings.catch_warnings():
        # The sampler resumes mid-epoch by itself (from the global step), which Lightning cannot see.
        warnings.filterwarnings("ignore", message=".*ended before the epoch ended.*")
        # Frozen encoders stay in eval mode on purpose (no dropout, fixed normalisation statistics).
        warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode at the start of training.*")
        # Lightning 2.6 calling a torch pytree API that torch 2.13 deprecated; nothing for users to do.
        warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
        # A run shorter than output.log_every still gets its progress line at its last step.
        warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
        module.model.lm.use_weight_layout("training")  # row-major: no transposed gradient copies, fused AdamW
        try:
            state = None if resume_from is None else resume_from / TRAINING_STATE
            trainer.fit(module, datamodule=data, ckpt_path=state)
        except Interrupted:
            raise KeyboardInterrupt from None
        finally:
            stopper.restore()
            module.model.lm.use_weight_layout("decode")


def train(
    config: TrainConfig | Mapping[str, Any],
    *,
    samples: Sequence[Sample] | None = None,
    model: ModRWKV | None = None,
    resume: bool = False,
    callbacks: Sequence[pl.Callback] = (),
    progress: Callable[[str], None] | None = None,
) -> TrainResult:
    """Trains as the config says and returns the trained model, the loss history and metrics. A resumed
    run's history holds the steps made by this call; its metrics are the whole run's (first and final
    loss, tokens, tokens/s over the seconds in optimizer steps, the seconds of all its parts, samples
    dropped), as an uninterrupted run's.

    `config`: a `TrainConfig` from `load_config` / `config_from_dict` (which validate it), or the
    nested dict a YAML file holds (validated here). `samples` replace `data.train` files; `model`
    replaces the `model` section (it is trained in place). `resume` continues from the newest
    checkpoint in `output.dir` (weights, optimizer, scheduler, data position; the random numbers of each step
    are the seed's, `checkpoint.StepSeeds`).
    `callbacks` are extra Lightning callbacks; `progress` receives the progress line written every
    `output.log_every` steps (default: logged at INFO). SIGTERM or Ctrl-C stops the run at the next
    optimizer step with a checkpoint saved (`TrainResult.stopped_by`, `.checkpoint`); a second Ctrl-C, or
    one before training starts, raises KeyboardInterrupt at once (the newest checkpoint stays resumable).
    An error that ends training is raised as it is, after a checkpoint of the last completed optimizer step
    was saved where that is safe (`progress.SaveOnError`: not inside the optimizer's update; in a run of
    several processes under FSDP or DeepSpeed only for an error every process raised at a step's end); a
    note added to it names the checkpoint `resume` continues from, or says why none was saved."""
    if not isinstance(config, TrainConfig):
        # A resumed run rebuilds its model from the checkpoint.
        config = config_from_dict(config, needs_data=samples is None, needs_model=model is None and not resume)
    config, season_note = resolve_auto_season(config, samples_given=samples is not None)
    config, linear_note = size_linear_baseline(config, samples_given=samples is not None)
    for note in (season_note, linear_note):
        if note and progress is not None:  # the choice is seen where the progress lines are
            progress(note)
    opt, out = config.train, check_output_folder(config.output.dir)
    started, core_use = time.perf_counter(), CoreUse()
    limit_images = functools.partial(set_max_image_pixels, config.data.max_image_pixels, how_to_raise=(
        "data.max_image_pixels: {pixels} in the config (or `modrwkv train CONFIG --data.max_image_pixels {pixels}`)"))
    limit_images()
    pl.seed_everything(opt.seed, workers=True, verbose=False)

    # Set up: the model, the data, the trainer.
    resume_from = None
    if resume:
        resume_from = latest_checkpoint(out)
        if not out.is_dir():  # a relative output.dir read from another folder, or a misspelt one
            raise FileNotFoundError(f"--resume: no run to continue: {out} does not exist (output.dir, relative "
                                    f"to the folder the command runs in: {Path.cwd()})")
        if resume_from is None:
            raise FileNotFoundError(f"--resume: no complete checkpoint under {out / 'checkpoints'} (the run stopped "
                                    "before its first one): start it again without --resume")
        check_resume(config, out)
    elif out.exists() and latest_checkpoint(out) is not None:
        if (out / FINAL).is_dir():  # written whole, at the last step: the run is complete
            raise FileExistsError(f"{out} holds a finished run (its model is {out / FINAL}); to train again, choose "
                                  f"another output.dir (e.g. --output.dir {out}-2) or remove {out}")
        raise FileExistsError(f"{out} holds checkpoints of an unfinished run; continue it (--resume) or choose "
                              "another output.dir")
    check_data_files(config.data, train=samples is None)  # a misspelt file before minutes of setup
    model = setup_model(config, model, resume_from)
    series_encoder = model.encoders["series"] if "series" in model.encoders else None
    if resume_from is None:  # a resumed run's baseline is in its checkpoint
        baseline_note = fit_series_baseline(config.data, series_encoder)
        if baseline_note and progress is not None:
            progress(baseline_note)
    spans: list[SourceSpan] | None = None
    if samples is None:
        samples, spans = read_sources(series_target_options(config.data, series_encoder))
        check_pass_size(spans, config.data.train)
        mixture = describe_mixture(spans, config.data.train)
        log.info("data.train: %s", mixture)
        if progress is not None and any(span.repeat != 1 for span in spans):  # weighted: the mix, where the run reports
            progress(f"data.train: {mixture}")
        for span in spans:
            if span.stop == span.start:  # an empty file, or every record skipped (its reader said which)
                log.warning("data.train[%d] %s gives no usable sample: the entry adds nothing to an epoch",
                            span.entry, source_path(config.data.train[span.entry]))
            elif not span.per_pass:
                log.warning("data.train[%d]: repeat %g of its %d samples puts none in an epoch; raise the repeat or "
                            "leave the entry out", span.entry, span.repeat, span.stop - span.start)
    # one pass over the data (an epoch): each entry's samples times its repeat
    samples_per_pass = len(samples) if spans is None else pass_size(spans)
    check_series_targets(samples, series_encoder)
    dataset, lengths = setup_data(config, model, samples)
    try:
        trainer = setup_trainer(config)
    except MisconfigurationException as exc:  # e.g. runtime.accelerator gpu on a machine without one
        r = config.runtime
        raise ConfigError(f"runtime (accelerator: {r.accelerator}, devices: {r.devices}): {exc}") from None
    plan = plan_steps(config, trainer.world_size, samples_per_pass)
    trainer.accumulate_grad_batches = plan.accumulation
    trainer.fit_loop.epoch_loop.max_steps = plan.total_steps
    if problem := warmup_problem(total_steps=plan.total_steps, warmup_steps=opt.warmup_steps, lr=opt.lr):
        log.warning(problem)
    single = isinstance(trainer.strategy, SingleDeviceStrategy)
    sharded = config.runtime.strategy in ("fsdp", "deepspeed_stage_3")
    module = ModRWKVModule(model, opt, plan.total_steps, touch_unused=not (sharded or single),
                           media_reliance_every=config.output.media_reliance_every)
    data = TrainData(dataset, DroppingCollator(model.collator()), micro_batch_size=opt.micro_batch_size,
                     total_micro_batches=plan.total_steps * plan.accumulation, seed=opt.seed,
                     shuffle=config.data.shuffle, lengths=lengths, num_workers=config.data.num_workers,
                     worker_setup=limit_images, spans=spans)
    lora = opt.lora if opt.stage == "lora" else None
    checkpointer = PretrainedCheckpoint(out, save_every=config.output.save_every, keep_last=config.output.keep_last,
                                        total_steps=plan.total_steps, lora=lora)
    if unused := unused_validation_options(config):
        log.warning("train.val_every is 0, so the run does not validate: %s go unused (final/ holds the last "
                    "step)", ", ".join(unused))
    elif config.output.final == "best":
        checkpointer.final_source = out / BEST
    validation = setup_validation(config, model, series_encoder, dataset, checkpointer, plan.total_steps, progress,
                                  samples_given=spans is None)  # (spans: read from data.train)
    stopper = StopOnSignal(checkpointer)
    reporter = ProgressLine(total_steps=plan.total_steps, batch_size=opt.batch_size,
                            steps_per_epoch=plan.steps_per_epoch, every=config.output.log_every, emit=progress)
    totals = RunTotals(started)
    # The step's seeds before anything draws. The caller's callbacks next: a checkpoint taken at a step (the
    # stopper's too) holds what they did at it. Validation before the checkpointer: a checkpoint at a step holds
    # that step's validation.
    trainer.callbacks.extend([TrainingThreads(config.runtime.threads, since=core_use), StepSeeds(opt.seed), *callbacks,
                              RunConfigWriter(out, config, f"this run: {plan.describe(opt)}"), totals,
                              *([validation] if validation else []), checkpointer, stopper, reporter,
                              SaveOnError(checkpointer)])
    log.info("training stage %s: %s; %d x %d processes x %d accumulation per step", opt.stage,
             plan.describe(opt), opt.micro_batch_size, plan.world_size, plan.accumulation)
    log.info(estimate_memory(plan_from_model(model, config, world_size=plan.world_size)).summary())
    # (every process: removing a file already removed is no error)
    discard_answers_table(out)  # an earlier run's; this run writes its own at its end

    # Run.
    with callers_threads():
        _fit(trainer, module, data, resume_from, stopper)

    # Finish: the plain encoders back in place, the numbers.
    for modality, encoder in list(model.encoders.items()):
        if isinstance(encoder, CachedEncoder):
            model.encoders[modality] = encoder.inner
    history, run = module.history, totals.summary(module)
    metrics = {
        "steps": trainer.global_step,
        "total_steps": plan.total_steps,
        "epochs": plan.epochs,
        "samples": samples_per_pass,
        "first_loss": run["first_loss"],
        "final_loss": run["final_loss"],
        "tokens": int(run["tokens"]),
        # Over the time in optimizer steps: the run's setup (twice, in a resumed run) is not training speed.
        "tokens_per_s": run["tokens"] / run["step_seconds"] if run["step_seconds"] else math.nan,
        "dropped": run["dropped"],
        "media_reliance": run["media_reliance"],
        "seconds": run["seconds"],
    }
    # checkpointer.total_steps: the step early stopping ended the run at, if it did
    final_dir = out / FINAL if trainer.global_step >= checkpointer.total_steps else None
    if validation is not None:
        metrics["validation"] = validation.summary(finished=final_dir is not None)
    if final_dir is not None and resume_from is not None and checkpointer.last_checkpoint is None:
        # Resumed at its last step, so Lightning trained nothing (no checkpoint, no final/): the earlier run was
        # killed after that step's checkpoint but before final/ was complete. Every rank takes part, as in a run's
        # own end (PretrainedCheckpoint.on_train_end): rank 0 alone, its failure (a full disk) ended rank 0 only.
        with failing_together(trainer):
            if trainer.is_global_zero and not final_dir.is_dir():
                write_final(out, checkpointer.final_source or resume_from)
    if final_dir is not None and validation is not None and trainer.is_global_zero:
        validation.write_breakdown()  # beside final/: which answers its weights get wrong on data.val
    stopped_by = signal_at_end = stopper.signal_name
    if final_dir is None:
        signal_at_end = None
    else:
        stopped_by = None
        if signal_at_end is not None:
            log.warning("%s arrived as training finished: the run is complete (the trained model is in %s) "
                        "and nothing needs resuming", signal_at_end, final_dir)
    return TrainResult(model, out, final_dir, history, metrics, stopped_by=stopped_by,
                       checkpoint=checkpointer.last_checkpoint or latest_checkpoint(out), signal_at_end=signal_at_end)
