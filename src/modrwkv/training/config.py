"""Training configuration: a tree of dataclasses, read from YAML with strict validation.

A config file mirrors the tree (`model`, `data`, `train`, `runtime`, `output`); every key is
checked, so a typo fails at once with the dotted path of the key and the keys that exist there,
instead of being silently ignored hours into a run. `--dotted.key value` overrides from the command
line are parsed as YAML scalars (`--train.lr 2e-5`, `--data.train '[a.json, b.json]'`).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

from ..adapters import AdapterConfig
from ..data.sample import MODALITIES
from ..constants import DEFAULT_MAX_IMAGE_PIXELS
from ..encoders.media import VideoSampling
from ..textfiles import TextFileError, read_yaml, write_text_atomically

# "1": adapters; "2": adapters + LM; "lora": adapters + LoRA layers; "state": the LM's initial WKV
# state only (state tuning), everything else frozen
Stage = Literal["1", "2", "lora", "state"]
Schedule = Literal["cosine", "wsd", "constant"]
# what validation scores: "loss" the mean token cross-entropy over the val samples; "forecast_mse" (series)
# the standardised MSE of greedy forecasts, as `modrwkv eval --task custom-series`; "accuracy", "cider" (higher
# is better), "wer", "cer", "mse" (question-answer and conversation files, captions) the greedy answers scored as
# `modrwkv eval --task custom` scores them
ValMetric = Literal["loss", "forecast_mse", "accuracy", "wer", "cer", "mse", "cider"]
Precision = Literal["32", "bf16-mixed"]
Strategy = Literal["auto", "ddp", "deepspeed_stage_1", "deepspeed_stage_2", "deepspeed_stage_3", "fsdp"]
DataFormat = Literal["llava", "qa", "openai", "sharegpt", "asr", "series"]
DEFAULT_LORA_TARGETS = ("att.receptance", "att.key", "att.value", "att.output", "ffn.key", "ffn.value")
LORA_TARGETS = (*DEFAULT_LORA_TARGETS, "head")


class ConfigError(ValueError):
    """A config that cannot be used; the message names the dotted key."""


@dataclasses.dataclass
class EncoderSpec:
    """Arguments of `build_encoder`: `name` from the registry, `source` (HF id or folder) for
    pretrained towers, `config` for a freshly initialised one, `options` for the encoder's own
    keyword options. `trainable: null` keeps the encoder's default (towers frozen, built-ins trained)."""

    name: str = ""
    source: str | None = None
    config: dict[str, Any] | None = None
    trainable: bool | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class LMSpec:
    """Exactly one of `checkpoint` (official .pth, safetensors or fla folder) or `config` (sizes of
    a fresh RWKV-7, initialised as RWKV-LM does)."""

    checkpoint: str | None = None
    config: dict[str, Any] | None = None


@dataclasses.dataclass
class ModelConfig:
    """Either `init_from` (a folder written by `save_pretrained`, e.g. the stage-1 output: LM,
    encoders and trained adapters all come from it) or `lm` + `encoders` + `adapters`."""

    init_from: str | None = None
    lm: LMSpec = dataclasses.field(default_factory=LMSpec)
    encoders: dict[str, EncoderSpec] = dataclasses.field(default_factory=dict)
    adapters: dict[str, AdapterConfig] = dataclasses.field(default_factory=dict)  # kind, hidden_mult, compression
    template: str = "rwkv"
    splice: Literal["placeholder", "prefix", "turn_start"] = "placeholder"
    ctx_len: int = 2048
    feature_cache: str | None = None  # folder for cached features of frozen encoders
    # which frames of a video the image encoder reads: num_frames, fps, max_frames, timestamps
    # (docs/custom-data.md); null: the init_from model's, or 8 frames; saved in the model's config
    video: dict[str, Any] | None = None


@dataclasses.dataclass
class DataSource:
    """A `data.train` entry that weights its files: `{path: PATTERN, repeat: R}` (a plain PATTERN is
    `repeat: 1`). Each pass over the data (epoch) holds every sample of the files R times when R is whole;
    a fractional part f adds round(f x n) of the n samples, a seeded draw that changes from pass to pass
    (`training.data.StepBatchSampler`); R < 1 subsamples. `data.val` takes the mapping too, without a
    repeat: validation counts each sample once."""

    path: str | None = None
    repeat: float = 1.0


# The most samples a pass over the data (an epoch) may hold: the sampler builds each pass in memory on every
# rank, ~24 bytes an index at its peak and ~0.1 s a million (measured for 10**8: 2.4 GB, 9 s; with
# data.group_by_length 4.5 GB, 23 s, and 5.7 GB, 41 s at one sample a global micro-batch); a repeat that
# makes more is an error before training starts.
MAX_PASS_SAMPLES = 10**8


def source_path(entry: str | DataSource) -> str:
    """The file pattern of a `data.train` / `data.val` entry."""
    return (entry.path or "") if isinstance(entry, DataSource) else entry


def source_repeat(entry: str | DataSource) -> float:
    """How many times a pass over the data holds each sample of an entry's files (1 for a plain pattern)."""
    return entry.repeat if isinstance(entry, DataSource) else 1.0


@dataclasses.dataclass
class DataConfig:
    """`train`: data files of `format`; `media_folder`: where relative media paths point (images
    for llava, media for openai, audio for asr); `options`: the reader's other keyword options
    (e.g. `lookback`/`horizon` for series, `prompt` for asr: null gives the authors' ASR layout,
    audio then the assistant's transcript with no user turn, for splice "prefix")."""

    format: DataFormat = "llava"
    # file patterns (a file, a wildcard, a folder of shards), or `{path: PATTERN, repeat: R}` to weight them
    train: list[str | DataSource] = dataclasses.field(default_factory=list)
    # validation files, read with the same format and reader; `val_options` are merged over `options`
    # for them. Series: `split` is `val` unless val_options says otherwise, and without `val` the
    # training files are read (their validation rows, with the training rows' scaler)
    val: list[str | DataSource] = dataclasses.field(default_factory=list)
    val_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    media_folder: str | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    on_error: Literal["skip", "raise"] = "skip"
    truncation: Literal["drop", "shorten"] = "drop"
    # label the assistant's role prefix too, as the authors' training does; null: the template's
    # default (true for "worldrwkv", false for "rwkv" and "classic")
    supervise_prefix: bool | None = None
    shuffle: bool = True
    group_by_length: bool = False
    num_workers: int = 0
    # largest image (width x height) decoded, a guard against decompression bombs: larger ones are
    # bad samples (on_error); raise it for big scans (encoders.media.set_max_image_pixels)
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS


@dataclasses.dataclass
class LoRAConfig:
    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    targets: list[str] = dataclasses.field(default_factory=lambda: list(DEFAULT_LORA_TARGETS))


@dataclasses.dataclass
class OptimConfig:
    """`batch_size` is the global batch (samples per optimizer step over all devices and
    accumulation); `micro_batch_size` what one device runs at once. Accumulation follows from them."""

    stage: Stage = "1"
    lora: LoRAConfig = dataclasses.field(default_factory=LoRAConfig)
    epochs: float = 1.0
    max_steps: int | None = None  # when set, the run makes exactly this many steps, whatever epochs says
    batch_size: int = 256
    micro_batch_size: int = 8
    lr: float = 1e-3
    lr_final: float = 0.0
    schedule: Schedule = "cosine"
    warmup_steps: int = 100
    decay_fraction: float = 0.2  # wsd: the last fraction of steps decays linearly to lr_final
    betas: list[float] = dataclasses.field(default_factory=lambda: [0.9, 0.99])
    eps: float = 1e-8
    weight_decay: float = 0.0  # decoupled, on weight matrices only
    # per modality: a trainable encoder learns at this multiple of lr (1 when not listed); lower it
    # to fine-tune a pretrained encoder gently
    encoder_lr_scale: dict[str, float] = dataclasses.field(default_factory=dict)
    grad_clip: float | None = 1.0
    gradient_checkpointing: bool = False
    seed: int = 42
    val_every: int = 0  # optimizer steps between validations on data.val (0: none); also at the last step
    val_at_start: bool = False  # also validate the model as it starts (step 0)
    val_metric: ValMetric = "loss"
    val_max_samples: int | None = None  # the first this many val samples, of all the files together (null: all)
    # stop after this many validations in a row without improving on the best (0: never stop early)
    early_stopping_patience: int = 0
    # val_metric forecast_mse: at the end, ship the series encoder's baseline alone (a reply of zeros) unless the
    # best weights beat it on val beyond the noise of the val blocks (validation.baseline_decision); false: ship
    # the best weights whatever they score. Ignored with other metrics.
    baseline_fallback: bool = True


@dataclasses.dataclass
class RuntimeConfig:
    accelerator: str = "auto"  # auto | cpu | gpu
    devices: int | str = "auto"
    num_nodes: int = 1
    strategy: Strategy = "auto"
    precision: Precision = "bf16-mixed"
    wkv_impl: str = "auto"
    # intra-op threads of each process's CPU work; None: torch's, shared among a run's CPU processes (threads.py)
    threads: int | None = None


@dataclasses.dataclass
class OutputConfig:
    dir: str = "runs/modrwkv"
    save_every: int = 1000  # steps; 0 = only at the end
    keep_last: int = 2  # step checkpoints kept (the final model is always kept)
    # what final/ holds: the last step's weights, or the best-validated ones (best/, needs train.val_every)
    final: Literal["last", "best"] = "last"
    log_every: int = 10
    media_reliance_every: int = 50  # steps between media-reliance measurements (0: never); see training/module.py
    progress_bar: bool = True
    tensorboard: bool = True  # when tensorboard is installed
    wandb_project: str | None = None  # W&B logging when set and wandb is installed


@dataclasses.dataclass
class TrainConfig:
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self, *, needs_data: bool = True, needs_model: bool = True) -> None:
        """Cross-field checks (types were checked on loading). `needs_data` / `needs_model`: false
        when the caller supplies samples / a model itself."""
        m, d, t, o = self.model, self.data, self.train, self.output
        self._validate_sources()
        if needs_model:
            self._validate_model()
        if m.ctx_len < 1:
            raise ConfigError("model.ctx_len must be >= 1")
        if needs_data and not d.train:
            raise ConfigError("data.train: no training files given")
        if d.num_workers < 0:
            raise ConfigError("data.num_workers must be >= 0")
        if d.max_image_pixels < 1:
            raise ConfigError(f"data.max_image_pixels must be >= 1, got {d.max_image_pixels}")
        positive = {"train.batch_size": t.batch_size, "train.micro_batch_size": t.micro_batch_size,
                    "output.log_every": o.log_every, "train.lora.rank": t.lora.rank}
        for key, value in positive.items():
            if value < 1:
                raise ConfigError(f"{key} must be >= 1, got {value}")
        if t.batch_size % t.micro_batch_size:
            raise ConfigError(f"train.batch_size ({t.batch_size}) must be a multiple of "
                              f"train.micro_batch_size ({t.micro_batch_size})")
        if o.media_reliance_every < 0:
            raise ConfigError(f"output.media_reliance_every must be >= 0, got {o.media_reliance_every}")
        if t.max_steps is not None and t.max_steps < 1:
            raise ConfigError("train.max_steps must be >= 1")
        if t.max_steps is None and not (t.epochs > 0 and math.isfinite(t.epochs)):
            raise ConfigError("train.epochs must be > 0 (or set train.max_steps)")
        if not (t.lr > 0 and 0 <= t.lr_final <= t.lr):
            raise ConfigError(f"need train.lr > 0 and 0 <= train.lr_final <= train.lr, got {t.lr}, {t.lr_final}")
        if t.warmup_steps < 0 or not 0 < t.decay_fraction <= 1:
            raise ConfigError("train.warmup_steps must be >= 0 and train.decay_fraction in (0, 1]")
        if len(t.betas) != 2 or not all(0 <= b < 1 for b in t.betas) or t.eps <= 0 or t.weight_decay < 0:
            raise ConfigError(f"bad Adam settings: betas {t.betas}, eps {t.eps}, weight_decay {t.weight_decay}")
        for modality, scale in t.encoder_lr_scale.items():
            if modality not in MODALITIES:
                raise ConfigError(f"train.encoder_lr_scale: unknown modality {modality!r} (image, audio or series)")
            if not (scale > 0 and math.isfinite(scale)):
                raise ConfigError(f"train.encoder_lr_scale.{modality} must be > 0, got {scale} "
                                  "(to keep an encoder fixed, set trainable: false on it)")
        if t.grad_clip is not None and t.grad_clip <= 0:
            raise ConfigError("train.grad_clip must be > 0 or null")
        if not 0 <= t.lora.dropout < 1 or t.lora.alpha <= 0:
            raise ConfigError("train.lora: need 0 <= dropout < 1 and alpha > 0")
        bad_targets = sorted(set(t.lora.targets) - set(LORA_TARGETS))
        if bad_targets or not t.lora.targets:
            raise ConfigError(f"train.lora.targets: unknown {bad_targets}; choose from {list(LORA_TARGETS)}")
        if o.save_every < 0 or o.keep_last < 1:
            raise ConfigError("output.save_every must be >= 0 and output.keep_last >= 1")
        if self.runtime.num_nodes < 1:
            raise ConfigError("runtime.num_nodes must be >= 1")
        if self.runtime.threads is not None and self.runtime.threads < 1:
            raise ConfigError(f"runtime.threads must be >= 1 (or null: torch's count), got {self.runtime.threads}")
        self._validate_validation()

    def _validate_sources(self) -> None:
        for key, entries in (("data.train", self.data.train), ("data.val", self.data.val)):
            for index, entry in enumerate(entries):
                if not isinstance(entry, DataSource):
                    continue
                if not entry.path:
                    raise ConfigError(f"{key}[{index}].path is required (the file, wildcard or folder to read), "
                                      f"got {entry.path!r}")
                if key == "data.val" and entry.repeat != 1:
                    raise ConfigError(f"{key}[{index}].repeat: validation is not weighted (each val sample counts "
                                      "once); remove the repeat")
                if not (entry.repeat > 0 and math.isfinite(entry.repeat)):
                    raise ConfigError(f"{key}[{index}].repeat must be a number > 0 (2: every sample twice per "
                                      f"epoch, 0.5: half of them), got {entry.repeat:g}")
                if entry.repeat > MAX_PASS_SAMPLES:  # more than an epoch may hold from a single sample
                    raise ConfigError(f"{key}[{index}].repeat must be at most {MAX_PASS_SAMPLES:_} (an epoch holds "
                                      f"at most {MAX_PASS_SAMPLES:_} samples), got {entry.repeat:g}")

    def _validate_validation(self) -> None:
        d, t = self.data, self.train
        if t.val_every < 0 or t.early_stopping_patience < 0:
            raise ConfigError(f"train.val_every and train.early_stopping_patience must be >= 0, got {t.val_every} "
                              f"and {t.early_stopping_patience}")
        if t.val_max_samples is not None and t.val_max_samples < 1:
            raise ConfigError(f"train.val_max_samples must be >= 1 or null, got {t.val_max_samples}")
        if d.val_options and not d.val and d.format != "series":
            raise ConfigError("data.val_options is set but data.val lists no validation files")
        if d.val and not t.val_every:
            raise ConfigError("data.val is set but train.val_every is 0: set how many steps apart to validate "
                              "(e.g. --train.val_every 100)")
        if not t.val_every:  # no validation: the options below go unused (`unused_validation_options`)
            return
        if not d.val and d.format != "series":  # series: the training files' validation rows
            raise ConfigError("train.val_every is set but data.val lists no validation files")
        if t.val_metric == "forecast_mse" and d.format != "series":
            raise ConfigError(f"train.val_metric forecast_mse needs data.format series, not {d.format!r}")
        if t.val_metric in ("accuracy", "wer", "cer", "mse", "cider") and d.format == "series":
            raise ConfigError(f"train.val_metric {t.val_metric} scores answers to questions; series files are "
                              "validated by forecast_mse (or loss)")
        if self.runtime.strategy in ("fsdp", "deepspeed_stage_3"):
            raise ConfigError(f"validation (train.val_every) is not supported with runtime.strategy "
                              f"{self.runtime.strategy!r}, which shards the weights; use ddp")

    def _validate_model(self) -> None:
        m = self.model
        if m.init_from is None:
            if (m.lm.checkpoint is None) == (m.lm.config is None):
                raise ConfigError("model.lm: give exactly one of checkpoint or config (or model.init_from)")
            if not m.encoders and self.train.stage != "state":
                raise ConfigError("model.encoders: at least one encoder is needed (or model.init_from); "
                                  "only train.stage 'state' tunes a text-only LM")
        elif m.lm.checkpoint or m.lm.config or m.encoders or m.adapters:
            raise ConfigError("model.init_from takes LM, encoders and adapters from the folder; "
                              "remove model.lm / model.encoders / model.adapters")
        for modality, spec in m.encoders.items():
            if modality not in MODALITIES:
                raise ConfigError(f"model.encoders: unknown modality {modality!r} (image, audio or series)")
            if not spec.name:
                raise ConfigError(f"model.encoders.{modality}.name is required")
        if m.video is not None:
            try:
                sampling = VideoSampling.from_dict(m.video)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"model.video: {exc}") from None
            if sampling.timestamps and m.init_from is None and m.splice != "placeholder":
                raise ConfigError(f"model.video.timestamps needs model.splice 'placeholder', not {m.splice!r}")
        unknown_adapters = sorted(set(m.adapters) - set(m.encoders))
        if unknown_adapters:
            raise ConfigError(f"model.adapters: {unknown_adapters} have no encoder")
        for modality, adapter in m.adapters.items():
            if adapter.in_dim is not None or adapter.out_dim is not None:
                raise ConfigError(f"model.adapters.{modality}: in_dim / out_dim are sized from the encoder and "
                                  "the LM; remove them")
            try:
                adapter.sized(modality, 1, 1)  # the checks the model applies when it builds the adapter
            except ValueError as exc:
                raise ConfigError(f"model.adapters.{modality}: {exc}") from None


def _type_name(kind: Any) -> str:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):  # "str | DataSource", not the module paths
        return " | ".join("None" if arg is type(None) else _type_name(arg) for arg in typing.get_args(kind))
    return getattr(kind, "__name__", None) or str(kind).replace("typing.", "")


def _convert(value: Any, kind: Any, key: str) -> Any:
    """Checks (and mildly coerces: int -> float, scalar -> str for str fields) one value."""
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        sections = [option for option in args if dataclasses.is_dataclass(option)]
        if len(sections) == 1 and isinstance(value, (Mapping, sections[0])):  # its own error names the key at fault
            return _convert(value, sections[0], key)
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(value, option, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} is not {_type_name(kind)}")
    if origin is Literal:
        text = str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
        if text not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {list(args)}")
        return text
    if dataclasses.is_dataclass(kind):
        return _build(kind, value, key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{key}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {str(k): _convert(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if kind is Any:
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if kind is str:
        if isinstance(value, (list, dict)) or value is None:
            raise ConfigError(f"{key}: expected text, got {value!r}")
        return str(value)
    raise ConfigError(f"{key}: unsupported type {kind}")


# What HF Trainer, Lightning and torchtune call settings of this config, which difflib does not match
# (learning_rate is no near spelling of lr), with the key to write here.
OTHER_TRAINERS_NAMES = {
    "learning_rate": "train.lr", "num_train_epochs": "train.epochs", "max_epochs": "train.epochs",
    "per_device_train_batch_size": "train.micro_batch_size", "train_batch_size": "train.batch_size",
    "gradient_accumulation_steps": "train.batch_size (micro_batch_size x accumulation x processes)",
    "max_grad_norm": "train.grad_clip", "gradient_clip_val": "train.grad_clip", "clip_grad_norm": "train.grad_clip",
    "num_warmup_steps": "train.warmup_steps", "lr_scheduler_type": "train.schedule",
    "save_steps": "output.save_every", "logging_steps": "output.log_every", "output_dir": "output.dir",
    "save_total_limit": "output.keep_last", "eval_steps": "train.val_every", "max_seq_length": "model.ctx_len",
}


def _build(cls: type, data: Any, key: str) -> Any:
    if data is None:
        data = {}
    if isinstance(data, cls):  # a section built in Python (`DataSource("a.jsonl", 2)`): checked as its mapping
        data = {field.name: getattr(data, field.name) for field in dataclasses.fields(cls)}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{key or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        where = f"{key}." if key else ""
        known = f"known keys of {key}" if key else "known keys"
        # `{path:a.jsonl}` (no space after the colon, as typed in a --data.train override) is one YAML key
        glued = {k: str(k).partition(":") for k in unknown if str(k).partition(":")[0].strip() in fields}
        guesses = {k: [OTHER_TRAINERS_NAMES[str(k)]] if str(k) in OTHER_TRAINERS_NAMES
                   else [where + m for m in difflib.get_close_matches(str(k), fields, n=1)]
                   for k in unknown if k not in glued}
        hint = "".join(f"; did you mean {close[0]!r} for {where + str(k)!r}?" for k, close in guesses.items() if close)
        hint += "".join(f"; {where + str(k)!r} is one key: YAML needs a space after the colon "
                        f"({name.strip()}: {value.strip()})" for k, (name, _, value) in glued.items())
        raise ConfigError(f"unknown key(s) {[where + str(k) for k in unknown]}{hint} ({known}: {sorted(fields)})")
    values = {name: _convert(value, hints[name], f"{key}.{name}" if key else name) for name, value in data.items()}
    try:
        return cls(**values)
    except ValueError as exc:  # the dataclass's own checks (e.g. AdapterConfig)
        raise ConfigError(f"{key or 'config'}: {exc}") from None


def config_from_dict(data: Mapping[str, Any], *, needs_data: bool = True, needs_model: bool = True) -> TrainConfig:
    """Builds and validates a config from a nested dict (what a YAML file holds)."""
    config = _build(TrainConfig, data, "")
    config.validate(needs_data=needs_data, needs_model=needs_model)
    return config


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Applies `["--train.lr", "2e-5", "--output.dir=runs/x", ...]` to a nested dict (in place)."""
    items: list[tuple[str, str]] = []
    tokens = list(overrides)
    while tokens:
        token = tokens.pop(0)
        if not token.startswith("--") or len(token) == 2:
            raise ConfigError(f"override {token!r}: expected --dotted.key value")
        name, sep, value = token[2:].partition("=")
        if not sep:
            if not tokens:
                raise ConfigError(f"override --{name} has no value")
            value = tokens.pop(0)
        items.append((name, value))
    for name, text in items:
        *parents, leaf = name.split(".")
        node = data
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override --{name}: {part} is not a section")
            node = child
        try:
            node[leaf] = yaml.safe_load(text) if text != "" else ""
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(f"override --{name} {text!r}: not a YAML value ({problem}); quote text, "
                              "write lists as '[a, b]'") from None
    return data


def load_config(path: str | Path | None = None, overrides: Sequence[str] = (), *,
                needs_data: bool = True) -> TrainConfig:
    """Reads a YAML config (relative data/model paths stay relative to the working directory),
    applies command-line overrides and validates the result."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = read_yaml(path)
        except TextFileError as exc:
            raise ConfigError(str(exc)) from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        data = loaded or {}
    try:
        return config_from_dict(apply_overrides(data, overrides), needs_data=needs_data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path else str(exc)) from None


def dump_config(config: TrainConfig, path: str | Path, header: str = "") -> None:
    """Writes the resolved config as YAML that `load_config` reads back; `header` becomes leading
    comment lines (e.g. what the run made of `epochs` / `max_steps`)."""
    data = json.loads(json.dumps(config.to_dict()))  # tuples as lists, which YAML's safe dumper wants
    comments = "".join(f"# {line}\n" for line in header.splitlines())
    write_text_atomically(Path(path), comments + yaml.safe_dump(data, sort_keys=False))


def unused_validation_options(config: TrainConfig) -> list[str]:
    """The validation options a config sets while `train.val_every` is 0 (validation off), so that a
    run can say they go unused: `--train.val_every 0` turns a config's validation off as it stands."""
    t, o = config.train, config.output
    if t.val_every:
        return []
    settings = {"train.val_at_start": t.val_at_start, "train.val_metric": t.val_metric != "loss",
                "train.val_max_samples": t.val_max_samples is not None,
                "train.early_stopping_patience": bool(t.early_stopping_patience), "output.final": o.final == "best"}
    return [key for key, used in settings.items() if used]


# What a resumed run may change: where and how it runs and reports, not what it trains or on what.
RESUMABLE_CHANGES = ("runtime.", "output.", "data.num_workers", "data.max_image_pixels")


def check_resume(config: TrainConfig, output_dir: str | Path) -> None:
    """Raises ConfigError when `config` differs from the config the run in `output_dir` was started
    with (its config.yaml) in what the checkpoint depends on: the model, the data, the optimisation.
    Resuming then would fail deep inside a state dict, or quietly train something else."""
    saved_path = Path(output_dir) / "config.yaml"
    try:
        saved = read_yaml(saved_path)
    except (OSError, TextFileError):
        return  # no record of the run's config (written by an older version): nothing to compare with

    def flat(node: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(node, Mapping) and node:
            return {k: v for key, value in node.items() for k, v in flat(value, f"{prefix}{key}.").items()}
        return {prefix.removesuffix("."): node}

    def entry(item: Any) -> Any:
        # `{path: a.jsonl}` / `{path: a.jsonl, repeat: 1}` read what `a.jsonl` reads: the same entry
        if isinstance(item, Mapping) and set(item) <= {"path", "repeat"}:
            repeat = item.get("repeat", 1)
            return item.get("path") if repeat == 1 else {"path": item.get("path"), "repeat": float(repeat)}
        return item

    def resolved(tree: Any) -> dict[str, Any]:
        tree = json.loads(json.dumps(tree))  # tuples as lists, as config.yaml holds them
        data = tree.get("data") if isinstance(tree, Mapping) else None
        for key in ("train", "val"):
            if isinstance(data, Mapping) and isinstance(data.get(key), list):
                data[key] = [entry(item) for item in data[key]]
        return flat(tree)

    # A key that one side lacks (a config.yaml written before the key existed) has its default value.
    old, new, default = resolved(saved or {}), resolved(config.to_dict()), resolved(TrainConfig().to_dict())
    value = {key: (old.get(key, default.get(key)), new.get(key, default.get(key))) for key in set(old) | set(new)}
    changed = [f"{key}: {before!r} -> {after!r}" for key, (before, after) in sorted(value.items())
               if before != after and not key.startswith(RESUMABLE_CHANGES)]
    if changed:
        raise ConfigError(
            f"--resume: the run in {output_dir} was started with a different config ({saved_path}): "
            f"{'; '.join(changed)}. Resume with the run's own config (modrwkv train {saved_path} --resume), "
            "or start a new run in another output.dir")
