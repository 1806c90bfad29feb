"""Training data: readers -> samples -> processed batches, in a deterministic, resumable order.

- `read_samples` reads the configured files with the reader of their format (the reader's report
  says what was skipped and why).
- `ProcessedDataset` (modrwkv.processing.loader, which the data-loader workers import without
  Lightning) runs the processor per sample (tokens, labels, media preparation) in the data-loader
  workers. A sample that does not fit `ctx_len` or whose media do not decode is dropped from its
  batch and counted (`TrainBatch.dropped`), never silently.
- `StepBatchSampler` yields every micro-batch of the whole run (as many passes over the data as
  the step count needs), so Lightning sees one epoch and a resumed run only has to skip the
  micro-batches already consumed. The order depends only on the seed and the pass number, and each
  global micro-batch is split across ranks, so N processes see exactly what one process with an
  N-times larger micro-batch sees.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import inspect
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from torch.utils.data import Sampler

from ..data.readers import FORMATS, DataError, Reader, TimeSeriesReader
from ..data.linear_baseline import LinearBaselineError, LinearBaselineFit, fit_linear_baseline
from ..data.readers.qa import each_caption
from ..data.readers.base import MixedFormats, ReadReport, assign_paths, expand_paths, is_series_file
from ..data.readers.series import LinearBaseline
from ..data.sample import MODALITIES, Sample
from ..data.seasonality import detect_season
from ..encoders.series import AUTO
from ..processing import ModRWKVProcessor
from .config import MAX_PASS_SAMPLES, ConfigError, DataConfig, DataSource, TrainConfig, source_path, source_repeat

log = logging.getLogger(__name__)

AUDIO_TOKENS_PER_SECOND = 25  # ~50 encoder frames per second (Whisper, WavLM), halved by the speech adapter


def build_reader(config: DataConfig, setting: str = "data.train") -> Reader:
    """The reader of `config`'s files (`config.train`, which `setting` names in errors: data.val's
    files are read through a copy of the section with them as its `train`), each file once, in the
    order training reads them (`data_sources`), whatever its entry's repeat."""
    make = reader_factory(config)
    return make([path for source in data_sources(config, setting) for path in source.files])


def check_data_files(config: DataConfig, *, train: bool = True) -> None:
    """FileNotFoundError naming the entry of data.train (unless `train` is false: samples given) or data.val
    whose pattern matches nothing or whose file does not exist: checked before the model is built and the
    training data read, which for a large model or data set take minutes before data.val is read."""
    for setting, entries in (("data.train", config.train if train else []), ("data.val", config.val)):
        if entries:
            for source in data_sources(dataclasses.replace(config, train=entries), setting):
                # (a folder here is a folder of class folders, `expand_paths`)
                missing = next((path for path in source.files if not Path(path).exists()), None)
                if missing is not None:
                    raise FileNotFoundError(f"{setting}[{source.index}]: {missing}: no such file")


def val_files_trained_on(config: DataConfig, settings: tuple[str, str] = ("data.train", "data.val")) -> list[str]:
    """The data.val files that data.train reads too (the same file, however its patterns name it), as
    data.val names them: a validation on them scores records the model trains on. Series files are not
    looked at: their val rows are not their training rows. `settings` name the two lists where the
    patterns were given (a file that two patterns give is warned about once, by that name)."""
    if config.format == "series":
        return []
    trained = {Path(path).resolve() for source in data_sources(config, settings[0]) for path in source.files}
    return [path for path in expand_paths([source_path(e) for e in config.val], settings[1])
            if Path(path).resolve() in trained]


@dataclasses.dataclass(frozen=True)
class SourceFiles:
    """The files one `data.train` entry is read from (those an earlier or more repeated entry also gives
    are read under that one), with the entry's repeat."""

    index: int
    pattern: str
    repeat: float
    files: list[str]


def data_sources(config: DataConfig, setting: str = "data.train") -> list[SourceFiles]:
    """Each entry of `config.train` with the files it is read from (`assign_paths`). The entries of
    data.train weight their files (a file two entries give is read under the one with the larger repeat,
    and the warning says how to upsample a file); those of data.val and --data do not."""
    patterns = [source_path(entry) for entry in config.train]
    repeats = [source_repeat(entry) for entry in config.train]
    assigned = assign_paths(patterns, setting, repeats if setting == "data.train" else None)
    return [SourceFiles(index, pattern, repeat, [path for path, owner in assigned if owner == index])
            for index, (pattern, repeat) in enumerate(zip(patterns, repeats, strict=True))]


def reader_factory(config: DataConfig) -> Callable[[list[str]], Reader]:
    """What reads files of `config`'s format with its options (checked here, before any file is looked
    for: a misspelt option is named whatever the files)."""
    reader_cls, folder_option = FORMATS[config.format].reader, FORMATS[config.format].folder_option
    options = dict(config.options)
    if config.media_folder is not None:
        if not folder_option:
            raise ConfigError(f"data.media_folder does not apply to the {config.format} format")
        if not Path(config.media_folder).is_dir():
            raise ConfigError(f"data.media_folder {config.media_folder}: no such folder")
        options[folder_option] = config.media_folder
    check_options(reader_cls, options, config.format)

    def make(paths: list[str]) -> Reader:
        series_files = [p for p in paths if is_series_file(Path(p))]
        if series_files and config.format != "series":
            raise ConfigError(f"data.format is {config.format}, but {series_files[0]} is a time-series file; "
                              "set data.format: series (with data.options lookback and horizon)")
        return reader_cls(paths, on_error=config.on_error, **options)

    return make


def check_options(reader_cls: type[Reader], options: dict, data_format: str) -> None:
    """data.options against the reader's keyword arguments: each unknown one (with the closest known
    name) and each required one that is missing, in config terms rather than a Python TypeError."""
    parameters = inspect.signature(reader_cls.__init__).parameters
    known = sorted(name for name, p in parameters.items() if p.kind is p.KEYWORD_ONLY and name != "on_error")
    problems = []
    for name in sorted(set(options) - set(known)):
        close = difflib.get_close_matches(name, known, n=1)
        problems.append(f"unknown option {name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    missing = [name for name in known if parameters[name].default is inspect.Parameter.empty and name not in options]
    if missing:
        problems.append(f"the {data_format} format needs {' and '.join(missing)}")
    if problems:
        shown = [name for name in known if name not in getattr(reader_cls, "set_by_training", ())]
        raise ConfigError(f"data.options: {'; '.join(problems)} (options of the {data_format} format: {shown})")


def resolve_auto_season(config: TrainConfig, samples_given: bool = False) -> tuple[TrainConfig, str | None]:
    """`config` with a series encoder's `season: auto` replaced by the period detected on the
    training rows of `data.train` (`detect_season`, searched up to the look-back; with `drift`, up
    to one step less, so that the drift has a change to average). The choice and its reason are
    returned (None when nothing was detected); the integer is what the model is built with and
    saves, so a loaded model never detects again. No clear season: season 0, and `drift` is
    dropped with it (a warning says so). Too few rows (or too short a look-back) to search any
    period: a ConfigError, not a silent season 0. Each file's rows count once, whatever its entry's
    repeat (unlike the linear baseline's fit, `fit_training_windows`): the detection is a test of
    whether the rows have a period, which a repeat does not change, and its significance counts each
    pair of rows as evidence once; counted as more pairs, a repeat would let a file show a season its
    rows do not support, beyond the false-season rates bench/seasonality.py measured."""
    spec = config.model.encoders.get("series")
    if spec is None or spec.options.get("season") != AUTO:
        return config, None
    if samples_given or config.data.format != "series":
        raise ConfigError("model.encoders.series.options.season: auto detects the period on the training rows of "
                          "data.train series files (data.format: series); give the period as an integer instead")
    reader = build_reader(config.data)
    assert isinstance(reader, TimeSeriesReader)
    drift = bool(spec.options.get("drift", False))
    choice = detect_season(reader.training_rows(), reader.lookback - 1 if drift else reader.lookback)
    if choice.too_short:
        raise ConfigError(f"model.encoders.series.options.season: auto on {reader.name} (look-back {reader.lookback}): "
                          f"{choice.explain()}; give the period as an integer instead (0: none)")
    options = {**spec.options, "season": choice.period}
    note = f"season auto ({reader.name}): {choice.explain()}"
    log.info("%s", note)
    if not choice.period and drift:
        options["drift"] = False
        log.warning("season auto found no season in %s, so the series encoder has no seasonal baseline and no drift",
                    reader.name)
    encoders = {**config.model.encoders, "series": dataclasses.replace(spec, options=options)}
    return dataclasses.replace(config, model=dataclasses.replace(config.model, encoders=encoders)), note


def size_linear_baseline(config: TrainConfig, samples_given: bool = False) -> tuple[TrainConfig, str | None]:
    """`config` with a series encoder's `linear_baseline: true` given the shape of its regression,
    `linear_lookback` / `linear_horizon` = data.options lookback / horizon, so that the model is
    built (and saved) with buffers of that shape; `fit_series_baseline` fills them once it is built.
    `linear_baseline: auto` (the generic configs/series-cpu.yaml) is true when the training windows
    give a fit, and false otherwise (too few windows for a short file, or a singular fit), with a
    warning: what was decided is returned as a note (None without `auto`). Explicitly true, a fit
    that cannot be made stops training (`fit_series_baseline`)."""
    spec = config.model.encoders.get("series")
    if spec is None or not spec.options.get("linear_baseline"):
        return config, None
    if samples_given or config.data.format != "series":
        raise ConfigError(f"model.encoders.series.options.linear_baseline: {spec.options['linear_baseline']} is fitted "
                          "on the training windows of data.train series files (data.format: series), which this run "
                          "does not read; set linear_baseline: false")
    shape = {"linear_lookback": config.data.options.get("lookback"), "linear_horizon": config.data.options.get("horizon")}
    for key, value in shape.items():
        if spec.options.get(key) not in (None, value):
            raise ConfigError(f"model.encoders.series.options.{key} is {spec.options[key]!r}, but training sets it from "
                              f"data.options ({value!r}); leave it out")
    if "linear_fit" in spec.options:
        raise ConfigError("model.encoders.series.options.linear_fit is recorded by training (the kind and parameters "
                          "of the linear baseline it fits); leave it out")
    options, note = {**spec.options, **shape}, None
    if spec.options["linear_baseline"] == AUTO:
        season, drift = spec.options.get("season", 0), bool(spec.options.get("drift", False))
        season = season if isinstance(season, int) else 0  # a bad one is named when the encoder is built
        data = with_seasonality(config.data, season, drift) if season else config.data
        reader = build_reader(data)
        assert isinstance(reader, TimeSeriesReader)
        try:
            fit_training_windows(data, season, drift)  # fitted again, into the model, once it is built
            options["linear_baseline"] = True
            note = f"linear_baseline auto ({reader.name}): a linear baseline is fitted (the training windows allow it)"
        except LinearBaselineError as exc:
            options = {key: value for key, value in spec.options.items() if key not in shape}
            options["linear_baseline"] = False
            note = (f"linear_baseline auto ({reader.name}): training without a linear baseline: {exc} "
                    "(linear_baseline: true makes this an error)")
            log.warning("%s", note)
    encoders = {**config.model.encoders, "series": dataclasses.replace(spec, options=options)}
    return dataclasses.replace(config, model=dataclasses.replace(config.model, encoders=encoders)), note


def fit_series_baseline(config: DataConfig, encoder: object | None) -> str | None:
    """Fits the linear baseline of a series encoder with `linear_baseline` on the training windows
    of `config` (cut as training cuts them, with the encoder's season and drift) and stores it in
    the encoder; returns what was fitted, or None for an encoder without one. Too few windows or a
    singular fit: a ConfigError naming the files and the problem."""
    inner = getattr(encoder, "inner", encoder)  # through a feature cache
    if not getattr(getattr(inner, "config", None), "linear_baseline", False):
        return None
    data = series_target_options(config, encoder, linear=False)
    reader = build_reader(data)
    assert isinstance(reader, TimeSeriesReader)
    shape = (inner.config.linear_lookback, inner.config.linear_horizon)
    if (reader.lookback, reader.horizon) != shape:  # a model from model.init_from keeps its own shape
        raise ConfigError(f"the series encoder's linear baseline reads a look-back of {shape[0]} and forecasts "
                          f"{shape[1]} steps (model.init_from's), but data.options has lookback {reader.lookback} "
                          f"and horizon {reader.horizon}; train with lookback {shape[0]} and horizon {shape[1]}")
    try:
        fit = fit_training_windows(data, reader.season, reader.drift)
    except LinearBaselineError as exc:
        raise ConfigError(f"model.encoders.series.options.linear_baseline on {reader.name}: {exc} (or set "
                          "linear_baseline: false to train without it)") from None
    inner.set_linear_baseline(fit.baseline, fit.record())  # its kind and parameters saved in config.json
    note = f"linear baseline ({reader.name}): {fit.explain()}"
    log.info("%s", note)
    return note


def fit_training_windows(config: DataConfig, season: int, drift: bool) -> LinearBaselineFit:
    """`fit_linear_baseline` on every training window of `config`'s data.train entries (cut with its
    options at stride 1, whatever `stride` training cuts them with), each weighted in proportion to how
    many times an epoch holds its entry's windows (`SourceSpan.weight`: the entry's repeat), so that the
    baseline is the one fitted on the mixture the model trains on: `{path: a.csv, repeat: 2}` beside b.csv
    weighs a.csv's windows twice b.csv's; every repeat alike, the unweighted fit. Stride 1 because the ridge is
    a closed-form fit that costs little per window and gains from each: on the test rows of the real
    series of docs/forecasting.md, the fit on windows one horizon apart scored 0.00445 (co2) and 0.76
    (El Nino) where the fit on every window scores 0.00277 and 0.218 (docs/forecasting.md). With
    `holdout: last` (the fixed-horizon protocol, scored by MASE) errors count over their series' MASE scale, of
    each file's MASE period (`mase_period`: a .tsf @frequency's, else the season's)."""
    config = dataclasses.replace(config, options={**config.options, "stride": 1})
    samples, spans = read_sources(config)
    weights = [span.weight for span in spans for _ in range(span.start, span.stop)]
    if config.options.get("holdout") != "last":
        return fit_linear_baseline(samples, season, drift, weights=weights)
    from ..evaluation.metrics.series import mase_period  # (evaluation imports training's readers)

    def period_of(file: str) -> int:  # the fixed-horizon protocol is scored by MASE: fitted to it
        return mase_period(Path(file), season)

    return fit_linear_baseline(samples, season, drift, weights=weights, mase_period=period_of)


def series_target_options(config: DataConfig, encoder: object | None, linear: bool = True) -> DataConfig:
    """`config` with the series encoder's `season`, `drift` and (unless `linear` is False) fitted
    linear baseline passed to the time-series reader, so that the targets it writes are the
    corrections the encoder adds its baseline back to. A data.options value that disagrees with the
    model is a ConfigError, not a silent choice."""
    season, drift, baseline = _seasonality(encoder)
    if config.format != "series":
        return config
    if "linear_baseline" in config.options:
        raise ConfigError("data.options.linear_baseline is not a reader option: training fits it when "
                          "model.encoders.series.options.linear_baseline is true")
    if not season and (baseline is None or not linear):
        return config
    config = with_seasonality(config, season, drift)
    if linear and baseline is not None:
        config = dataclasses.replace(config, options={**config.options, "linear_baseline": baseline})
    return config


def with_seasonality(config: DataConfig, season: int, drift: bool) -> DataConfig:
    """`config` with the series encoder's `season` and `drift` as reader options; a data.options
    value that disagrees is a ConfigError, not a silent choice."""
    options = dict(config.options)
    for key, value in (("season", season), ("drift", drift)):
        if key in options and options[key] != value:
            raise ConfigError(f"data.options.{key} is {options[key]!r} but the series encoder's {key} is {value!r}; "
                              "set it once, in model.encoders.series.options")
        options[key] = value
    return dataclasses.replace(config, options=options)


def check_series_targets(samples: Sequence[Sample], encoder: object | None) -> None:
    """Series samples must be written relative to the same baseline as the encoder's."""
    season, _, baseline = _seasonality(encoder)
    linear = baseline is not None
    for sample in samples:
        if sample.series and sample.meta.get("season", 0) != season:
            raise ConfigError(f"{sample.source}: sample targets written with season {sample.meta.get('season', 0)}, "
                              f"but the series encoder adds a season-{season} baseline back")
        if sample.series and sample.meta.get("linear_baseline", False) != linear:
            raise ConfigError(f"{sample.source}: sample targets written {'with' if not linear else 'without'} a linear "
                              f"baseline, but the series encoder {'adds' if linear else 'adds no'} linear baseline back")


def _seasonality(encoder: object | None) -> tuple[int, bool, LinearBaseline | None]:
    """The series encoder's (season, drift, linear baseline); (0, False, None) for none or an
    encoder without them."""
    inner = getattr(encoder, "inner", encoder)  # through a feature cache
    config = getattr(inner, "config", None)
    baseline = inner.linear() if getattr(config, "linear_baseline", False) else None
    return int(getattr(config, "season", 0)), bool(getattr(config, "drift", False)), baseline


def read_samples(config: DataConfig, setting: str = "data.train") -> list[Sample]:
    """All samples of the configured files, each once; skipped records are logged by the reader."""
    return read_sources(config, setting)[0]


@dataclasses.dataclass(frozen=True)
class SourceSpan:
    """samples[start:stop] of `read_sources`: the samples of data.train[entry], which a pass over the data
    holds `repeat` times (`repeat_count`)."""

    entry: int
    start: int
    stop: int
    repeat: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.stop:
            raise ValueError(f"data.train[{self.entry}]: a span's start {self.start} and stop {self.stop} must "
                             "satisfy 0 <= start <= stop")
        # what the config allows (and 0), so that per_pass is a finite count: 1e308 x 10 samples overflowed
        if not (math.isfinite(self.repeat) and 0 <= self.repeat <= MAX_PASS_SAMPLES):
            raise ValueError(f"data.train[{self.entry}]: repeat must be a number from 0 to {MAX_PASS_SAMPLES:_}, "
                             f"got {self.repeat:g}")

    @property
    def per_pass(self) -> int:
        return repeat_count(self.stop - self.start, self.repeat)

    @property
    def weight(self) -> float:
        """How many times an epoch holds each of the span's samples, on average: its whole copies and
        the share of them the fractional draw takes (per_pass / samples: repeat 0.5 of 3 samples is 2/3)."""
        return self.per_pass / (self.stop - self.start) if self.stop > self.start else 0.0


def pass_size(spans: Sequence[SourceSpan]) -> int:
    """How many samples one pass over the data (an epoch) holds: each span's samples times its repeat."""
    return sum(span.per_pass for span in spans)


def repeat_count(num_samples: int, repeat: float) -> int:
    """How many samples a pass over the data draws from `num_samples` at `repeat`: floor(repeat) copies of
    each, and round(fraction x num_samples) more (rounded half up: 0.5 of 3 samples is 2)."""
    return math.floor(repeat * num_samples + 0.5)


def read_sources(config: DataConfig, setting: str = "data.train") -> tuple[list[Sample], list[SourceSpan]]:
    """All samples of the configured files, each file read once (`data_sources`), entry by entry, with
    the span of the samples each entry gave; each entry's reader logs its summary (its skipped records). A record
    of several captions gives a sample of each (`qa.each_caption`: COCO's five per image are five samples).
    A file of another format than data.format, every record of which a reader skipped, is an error naming
    it (a warning among the skipped records would leave training on part of the data)."""
    samples: list[Sample] = []
    spans: list[SourceSpan] = []
    summaries: list[str] = []
    examples: list[DataError] = []
    formats: dict[str, str] = {}  # each file's record format, over all the entries' readers
    make = reader_factory(config)
    sources = data_sources(config, setting)
    for source in sources:
        if not source.files:  # all of them given by another entry (the warning said so)
            continue
        reader = make(source.files)
        start = len(samples)
        captioned = 0  # records of several captions
        for sample in reader:
            taught = each_caption(sample)
            captioned += len(taught) > 1
            samples += taught
        log.info("%s[%d]: %s", setting, source.index, reader.report.summary())
        if captioned:
            log.info("%s[%d]: %d records hold several captions each, each caption a sample of its own: %d samples",
                     setting, source.index, captioned, len(samples) - start)
        summaries.append(reader.report.summary())
        examples += reader.report.examples
        formats.update(reader.report.formats)
        spans.append(SourceSpan(source.index, start, len(samples), source.repeat))
    if not samples:
        first = f"; the first: {examples[0]}" if examples else ""
        name = ", ".join(path for source in sources for path in source.files)
        raise DataError(name, "unreadable_file", f"no usable sample ({'; '.join(summaries)}{first})")
    try:
        ReadReport(formats=formats).check_one_format(config.format)
    except MixedFormats as exc:
        raise DataError(setting, "other_format", f"{exc} (data.format: {config.format})") from None
    return samples, spans


def describe_mixture(spans: Sequence[SourceSpan], entries: Sequence[str | DataSource] | None = None) -> str:
    """What each data.train entry puts in a pass over the data, e.g. "data.train[0] a.jsonl: 10 samples x
    repeat 2 = 20 per epoch; data.train[1] b/*.jsonl: 30 samples = 30 per epoch (50 samples per epoch,
    40 read)"; without `entries` (spans given to `StepBatchSampler` directly), "data.train[0]: 10 ..."."""
    parts = []
    for span in spans:
        n = span.stop - span.start
        weight = f" x repeat {span.repeat:g}" if span.repeat != 1 else ""
        name = "" if entries is None else f" {source_path(entries[span.entry])}"
        parts.append(f"data.train[{span.entry}]{name}: {n} samples{weight} = {span.per_pass} per epoch")
    total, read = pass_size(spans), sum(span.stop - span.start for span in spans)
    return f"{'; '.join(parts)} ({total} samples per epoch, {read} read)"


def check_pass_size(spans: Sequence[SourceSpan], entries: Sequence[str | DataSource] | None = None) -> None:
    """A ConfigError naming each entry's samples per epoch (`describe_mixture`) when the repeats make an
    epoch larger than MAX_PASS_SAMPLES (each rank builds a pass in memory): arithmetic on the spans alone,
    before anything is allocated. Training checks its spans at setup, with the entries' paths;
    `StepBatchSampler` checks those it is given."""
    total = pass_size(spans)
    if total > MAX_PASS_SAMPLES:
        raise ConfigError(f"data.train: an epoch of {total:_} samples is more than the {MAX_PASS_SAMPLES:_} a pass "
                          "over the data may hold (each rank builds it in memory): "
                          f"{describe_mixture(spans, entries)}; lower the repeats")


def estimate_lengths(samples: Sequence[Sample], processor: ModRWKVProcessor) -> list[int]:
    """Cheap token-count estimates for length grouping: text characters / 4, plus per media item
    the token count of the first item of its modality (exact for fixed-size images); audio with a
    known `meta["duration"]` counts 25 tokens per second (50 encoder frames/s, halved by the adapter);
    a video counts as many images as the processor samples from a long clip (an upper bound)."""
    per_item: dict[str, int] = {}
    for modality in MODALITIES:
        first = next((s for s in samples if s.media(modality)), None)
        if first is None and modality == "image":  # the frames of a video
            first = next((processor.expand_videos(s) for s in samples if s.videos), None)
        if first is not None and modality in processor.encoders:
            prepared = processor.encoders[modality].prepare(first.media(modality)[0])
            per_item[modality] = int(processor.token_counts[modality](prepared.num_features))
    video = processor.video
    frames_per_video = video.max_frames if video.fps is not None else min(video.num_frames, video.max_frames)
    lengths = []
    for sample in samples:
        n = sum(len(m.content) for m in sample.messages) // 4
        for modality, count in per_item.items():
            items = sample.media(modality)
            if modality == "audio" and "duration" in sample.meta:
                n += int(sample.meta["duration"] * AUDIO_TOKENS_PER_SECOND) * len(items)
            else:
                n += count * len(items)
        n += per_item.get("image", 0) * frames_per_video * len(sample.videos)
        lengths.append(n)
    return lengths


class StepBatchSampler(Sampler[list[int]]):
    """Index lists for every micro-batch of the run, on one rank.

    A pass over the data (an epoch) holds each sample of a span (`SourceSpan`: a data.train entry's
    samples) `repeat` times: its whole copies, one after the other, then a fractional part drawn afresh
    for each pass (by the seed, the pass and the entry, so a resumed run draws what the uninterrupted one
    did), kept in file order. Without spans, each sample once. A pass is cut into global micro-batches of
    `micro_batch_size * world_size` indices (the remainder is dropped), shuffled by `seed + pass`; with
    `lengths`, indices are sorted by length within chunks of `group_chunk` global micro-batches before
    cutting, so that padding stays small while the batch order stays random. Rank r takes slice r of
    each global micro-batch. `skip(n)` makes the next iteration start after n micro-batches (resuming).
    """

    def __init__(self, num_samples: int, *, micro_batch_size: int, world_size: int, rank: int, total: int,
                 seed: int, shuffle: bool = True, lengths: Sequence[int] | None = None, group_chunk: int = 64,
                 spans: Sequence[SourceSpan] | None = None) -> None:
        super().__init__()
        self.spans = list(spans) if spans is not None else [SourceSpan(0, 0, num_samples)]
        if self.spans and self.spans[-1].stop != num_samples:
            raise ValueError(f"the spans cover {self.spans[-1].stop} samples, the data set holds {num_samples}")
        check_pass_size(self.spans)  # before a pass is built: a repeat of 1e9 exhausted memory when iterated
        self.global_micro = micro_batch_size * world_size
        self.num_samples = pass_size(self.spans)  # in one pass
        if self.num_samples < self.global_micro:
            raise ValueError(f"{self.num_samples} samples are fewer than one global micro-batch ({self.global_micro})")
        self.micro_batch_size = micro_batch_size
        self.rank = rank
        self.per_pass = self.num_samples // self.global_micro
        self.total = total
        self.seed = seed
        self.shuffle = shuffle
        self.lengths = None if lengths is None else torch.as_tensor(list(lengths))
        self.group_chunk = group_chunk
        self._skip = 0

    def skip(self, consumed: int) -> None:
        self._skip = consumed

    def __len__(self) -> int:
        return self.total

    @property
    def batch_size(self) -> int:
        """The micro-batch size, under torch's BatchSampler's name: Lightning's DeepSpeed strategy reads
        it for DeepSpeed's `train_micro_batch_size_per_gpu` (it raised AttributeError without, H200 2026-12-04)."""
        return self.micro_batch_size

    def pass_samples(self, pass_index: int) -> torch.Tensor:
        """The data set's indices one pass holds, in file order, each as many times as its span's repeat
        says (the whole data set once, without spans)."""
        parts = []
        for span in self.spans:
            indices = torch.arange(span.start, span.stop)
            whole = math.floor(span.repeat)
            parts.append(indices.repeat(whole))  # one tensor: a list of R references costs 8 bytes x R more
            extra = span.per_pass - whole * len(indices)
            if extra:
                key = hashlib.sha256(f"repeat {self.seed} {pass_index} {span.entry}".encode()).digest()
                generator = torch.Generator().manual_seed(int.from_bytes(key[:8], "little") >> 1)
                chosen = torch.randperm(len(indices), generator=generator)[:extra]
                parts.append(indices[torch.sort(chosen).values])
        return torch.cat(parts) if parts else torch.arange(0)

    def pass_batches(self, pass_index: int) -> torch.Tensor:
        """The global micro-batches of one pass over the data, one a row (a single tensor: a list of row
        tensors cost ~600 bytes a batch)."""
        generator = torch.Generator().manual_seed(self.seed + pass_index)
        pool = self.pass_samples(pass_index)
        n = len(pool)
        order = pool[torch.randperm(n, generator=generator)] if self.shuffle else pool
        if self.lengths is not None:
            chunk = self.group_chunk * self.global_micro
            parts = []
            for start in range(0, n, chunk):
                part = order[start:start + chunk]
                parts.append(part[torch.argsort(self.lengths[part], descending=True, stable=True)])
            order = torch.cat(parts)
        batches = order[: self.per_pass * self.global_micro].view(self.per_pass, self.global_micro)
        if self.lengths is not None and self.shuffle:
            batches = batches[torch.randperm(len(batches), generator=generator)]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        consumed = self._skip
        self._skip = 0
        pass_index, offset = divmod(consumed, self.per_pass)
        while consumed < self.total:
            batches = self.pass_batches(pass_index)
            for row in range(offset, len(batches)):  # by index: iterating a tensor unbinds every row at once
                if consumed >= self.total:
                    return
                batch = batches[row]
                start = self.rank * self.micro_batch_size
                yield batch[start:start + self.micro_batch_size].tolist()
                consumed += 1
            pass_index, offset = pass_index + 1, 0


def modalities_used(samples: Sequence[Sample]) -> set[str]:
    """The encoders the samples need (a video needs the image encoder)."""
    return {m for s in samples for m in MODALITIES if s.media(m)} | ({"image"} if any(s.videos for s in samples) else set())
