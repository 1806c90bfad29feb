"""What every reader shares: the error type, the skip report, the lazy iteration with its error
policy, JSON/JSONL record access, and the cheap media checks.

Real datasets always contain some broken records (LLaVA-665K references images that are not in the
download, scraped JSONL has truncated lines). Stopping a multi-hour run on the first one is as bad as
dropping them unnoticed, so every reader takes `on_error`: "raise" stops with a `DataError` naming
the file, the line and the problem; "skip" logs it and counts it in the reader's `ReadReport`.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import functools
import glob
import io
import json
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, Literal, TypeVar

import numpy as np

from ...textfiles import UTF16_BOMS, TextFileError, data_suffix, decode_text, open_data, unpacked_name
from ..sample import Sample

logger = logging.getLogger("modrwkv.data.readers")
# Not the readers' logger, which `modrwkv init` quietens while it lists the skipped records itself.
files_logger = logging.getLogger("modrwkv.data.files")

OnError = Literal["skip", "raise"]
PathLike = str | Path
_T = TypeVar("_T")
# The set of `DataError.reason` values, so that reports can be aggregated and tests can match them.
REASONS = (
    "bad_json",  # a JSONL line that does not parse
    "wrong_type",  # a field of the wrong JSON type (e.g. a number where text is expected)
    "missing_field",  # a required key is absent
    "unknown_field",  # a key the format does not read that looks like a misspelt one (e.g. 'img' for 'image')
    "other_format",  # a record whose fields are another format's (a file of another format, or mixing formats)
    "empty_conversation",  # no messages at all
    "unknown_role",  # a speaker other than system/user/assistant (or their aliases)
    "marker_mismatch",  # number of <image>/<audio>/<series>/<video> markers != number of items
    "unsupported_part",  # an OpenAI content part type that is not text/image/audio/video
    "missing_media",  # a referenced media file does not exist
    "unreadable_media",  # with verify_media=True: the file exists but does not decode
    "bad_media_data",  # a data URI or base64 payload that does not decode
    "remote_url",  # an http(s) URL while allow_remote=False
    "local_path_refused",  # a local path while allow_local_paths=False
    "unsupported_url",  # a URL scheme we do not handle (ftp:, s3:, ...)
    "empty_answer",  # an answer / assistant turn that is empty, null or NaN (it would teach silence)
    "too_short",  # a time series shorter than lookback + horizon
    "non_finite",  # a time-series window with NaN/inf (e.g. empty CSV cells)
    "invalid_sample",  # anything `Sample.validate` rejects that the checks above did not name
    "unreadable_file",  # the file itself cannot be used (always raised: there is nothing to skip to)
)


class DataError(ValueError):
    """A record (or file) that cannot become a `Sample`.

    `source` is "path:line" (or "path:[index]", "dataset[index]"), `reason` one of `REASONS`, and
    `detail` the human explanation; `str(err)` is "source: detail".
    """

    def __init__(self, source: str, reason: str, detail: str) -> None:
        super().__init__(f"{source}: {detail}" if source else detail)
        self.source = source
        self.reason = reason
        self.detail = detail

    def __reduce__(self) -> tuple[type[DataError], tuple[str, str, str]]:
        # Rebuilt from all three fields, so the error survives the trip out of a DataLoader worker.
        return DataError, (self.source, self.reason, self.detail)


@dataclasses.dataclass
class ReadReport:
    """What one pass of a reader did: how many records it saw, kept and skipped (per reason), with
    the first few errors kept whole so that the caller can show them or decide to abort."""

    name: str = ""
    total: int = 0
    kept: int = 0
    skipped: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    examples: list[DataError] = dataclasses.field(default_factory=list)
    max_examples: int = 5
    # each file's record format (`one_format`): the reader's once a record converted, another format when every
    # record read was refused as that format's (the first's); absent otherwise (no record, or some refused for
    # other reasons): what `common_format` checks a whole pass with
    formats: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())

    def check_one_format(self, reading: str) -> None:
        """`common_format` of the files this pass read, those read as `reading` (the reader's format) first:
        `MixedFormats` names a file every record of which was refused as another format's."""
        common_format(sorted(self.formats.items(), key=lambda found: found[1] != reading))

    def add_skip(self, error: DataError) -> None:
        self.skipped[error.reason] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(error)

    def summary(self) -> str:
        """One line for logs, e.g. "train.jsonl: kept 98 of 100 records; skipped 2 (missing_media: 2)"."""
        head = f"{self.name}: " if self.name else ""
        text = f"{head}kept {self.kept} of {self.total} records"
        if self.skipped:
            reasons = ", ".join(f"{reason}: {n}" for reason, n in self.skipped.most_common())
            text += f"; skipped {self.num_skipped} ({reasons})"
        return text


class Reader(abc.ABC, Iterable[Sample]):
    """Base class: iterating yields `Sample`s lazily and applies the error policy.

    Every pass starts a fresh `self.report`, so after `for s in reader: ...` the report describes
    that pass. Each skipped record is logged at WARNING (the first `log_limit` of a pass; later ones
    at DEBUG so that a dataset with thousands of missing images does not bury the training log) and a
    WARNING summary closes any pass that skipped something; with `log_limit=0` that summary is the
    pass's only line (a series with gaps, whose left-out windows are expected). Problems with a whole file (missing,
    not JSON at all, no such column) raise `DataError` whatever `on_error` says: no record is left.
    """

    def __init__(self, *, on_error: OnError = "skip", max_examples: int = 5, log_limit: int = 20) -> None:
        if on_error not in ("skip", "raise"):
            raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
        self.on_error = on_error
        self.max_examples = max_examples
        self.log_limit = log_limit
        self.report = ReadReport(name=self.name, max_examples=max_examples)

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """What the reader reads, for the report (a path, several paths, a dataset name)."""

    @abc.abstractmethod
    def _candidates(self) -> Iterator[Callable[[], Sample]]:
        """Yields one `build` per record; `build()` makes the sample or raises `DataError` naming
        the record's source. Building is deferred so that the error policy covers decoding the
        record itself (a broken JSONL line is one bad record, not a crashed pass)."""

    def count_records(self) -> int:
        """How many records the source holds, good or bad, without building them (a JSONL line is
        not even parsed): cheap next to reading the samples, whose media may be decoded."""
        return sum(1 for _ in self._candidates())

    def __iter__(self) -> Iterator[Sample]:
        report = ReadReport(name=self.name, max_examples=self.max_examples)
        self.report = report
        for build in self._candidates():
            report.total += 1
            try:
                sample = build()
                _check_sample(sample)
            except DataError as err:
                if self.on_error == "raise" or err.reason == "unreadable_file":  # a whole file: nothing to skip to
                    raise
                report.add_skip(err)
                level = logging.WARNING if report.num_skipped <= self.log_limit else logging.DEBUG
                logger.log(level, "skipping %s [%s]", err, err.reason)
                if report.num_skipped == self.log_limit + 1 and self.log_limit:
                    logger.warning("%s: further skipped records are logged at DEBUG level", self.name)
                continue
            report.kept += 1
            yield sample
        if report.skipped:
            logger.warning("%s", report.summary())


def _check_sample(sample: Sample) -> None:
    """Backstop for readers: `Sample.validate`'s complaints become DataErrors of this source, and an
    empty assistant turn (training data only: it would teach the model to say nothing) is one too."""
    try:
        sample.validate()
    except ValueError as err:
        reason = "marker_mismatch" if "marker" in str(err) else "invalid_sample"
        raise DataError(sample.source, reason, str(err).removeprefix(f"{sample.source}: ")) from None
    for index, message in enumerate(sample.messages):
        if message.role == "assistant" and not message.content.strip():
            raise DataError(sample.source, "empty_answer", f"message {index + 1} (assistant) is empty "
                            f"({message.content!r}): the model would learn to say nothing; give the answer, "
                            "or leave the record out")


def as_paths(paths: PathLike | Sequence[PathLike]) -> list[Path]:
    """One path or several (a LLaVA mix is often split over files)."""
    if isinstance(paths, (str, Path)):
        return [Path(paths)]
    return [Path(p) for p in paths]


def expand_paths(patterns: Sequence[str], setting: str) -> list[str]:
    """Data files, with shell-style wildcards expanded and a folder standing for the .tar or Parquet shards
    in it, as the hub stores a split (train-00000-of-00002.parquet, ...), sorted, so the order is
    reproducible, or for the .arrow shards of a data set `datasets`' save_to_disk wrote in it, in its order
    (`_pattern_files`). `setting` names where the patterns were given (data.train, --data) in the
    FileNotFoundError for a wildcard that matches nothing or a folder without shards. A file that
    two patterns give (overlapping wildcards, 'a.jsonl' and './a.jsonl') is listed once, where it
    came first, with a warning naming it and the patterns: read twice, its records would count twice."""
    return [path for path, _ in assign_paths(patterns, setting)]


def assign_paths(patterns: Sequence[str], setting: str,
                 repeats: Sequence[float] | None = None) -> list[tuple[str, int]]:
    """`expand_paths`' files, each with the index of the pattern it is read under. With `repeats` (one per
    pattern: data.train's weighted entries), a file that several patterns give is read under the one with
    the largest repeat (the first of those on a tie), in that pattern's place, and the warning names the
    entries and says how to upsample a file instead; without, under the first pattern that gives it."""
    weights = list(repeats) if repeats is not None else [1.0] * len(patterns)
    occurrences = [(index, path, Path(path).resolve())
                   for index, pattern in enumerate(patterns) for path in _pattern_files(pattern, setting)]
    found: dict[Path, list[tuple[int, str]]] = {}  # each file (resolved): the (pattern, path) pairs giving it
    for index, path, file in occurrences:
        found.setdefault(file, []).append((index, path))
    owner = {file: max(given, key=lambda pair: (weights[pair[0]], -pair[0])) for file, given in found.items()}
    # in the order the patterns give their files: each file where its owner gives it
    assigned = [(path, index) for index, path, file in occurrences if owner[file] == (index, path)]
    if repeats is None:
        repeated: dict[tuple[str, str], list[str]] = {}  # (earlier pattern, pattern): the files both give
        for index, path, file in occurrences:
            if (first := found[file][0][0]) != index:
                repeated.setdefault((patterns[first], patterns[index]), []).append(path)
        for (earlier, pattern), files in repeated.items():
            both = f"{pattern!r} twice" if pattern == earlier else f"both {earlier!r} and {pattern!r}"
            _warn_once(f"{setting}: {_shown(files)} {'is' if len(files) == 1 else 'are'} given by {both}; "
                       f"{'it is' if len(files) == 1 else 'each is'} read once")
    else:
        shared: dict[tuple[int, ...], list[str]] = {}  # the entries that give the same files: those files
        for file, given in found.items():
            if len(given) > 1:
                shared.setdefault(tuple(index for index, _ in given), []).append(owner[file][1])
        for indices, files in shared.items():
            one = len(files) == 1
            entries = [f"{setting}[{i}] ({patterns[i]!r}{'' if weights[i] == 1 else f', repeat {weights[i]:g}'})"
                       for i in indices]
            read = max(weights[i] for i in indices)
            how = "" if len(set(weights[i] for i in indices)) == 1 else f", with repeat {read:g} (the largest)"
            _warn_once(f"{setting}: {_shown(files)} {'is' if one else 'are'} given by {', '.join(entries[:-1])} and "
                       f"{entries[-1]}; {'it is' if one else 'each is'} read once{how}. To upsample a file, give it "
                       f"once with a repeat: {{path: {files[0]}, repeat: 2}} reads each of its samples twice per "
                       "epoch")
    return assigned


def _shown(files: Sequence[str]) -> str:
    return ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")


# A brace list or range as webdataset and the shell expand it: {a,b}, {000..099}.
_BRACES = re.compile(r"\{[^{}/]*(?:,|\.\.)[^{}/]*\}")
# A split's shard as `datasets` names it on the hub: test-00000-of-00003.parquet (older uploads add a hash:
# dev-00000-of-00001-75b6649fb044d38b.parquet), and a WebDataset split's the same way (train-00000-of-00002.tar).
# The one parser of shard names: a folder's splits here, a benchmark's hub copy in
# `evaluation.tasks.base.hub_shards`.
HUB_SHARD = re.compile(
    r"^(?P<split>.+?)-(?P<index>\d{5})-of-(?P<count>\d{5})(?:-[0-9a-f]+)?(?P<suffix>\.parquet|\.tar)$")


def _pattern_files(pattern: str, setting: str) -> list[str]:
    """The files one pattern of `expand_paths` stands for. A folder stands for its .tar shards when it
    has any (img2dataset writes a .parquet of each shard's download status beside it: metadata, not
    samples), else for its .parquet shards, else, with subfolders, for itself: a folder of class folders
    (`classfolders`), which `file_records` reads as one data file. A folder with a metadata file in it or a
    subfolder stands for itself before all that: Hugging Face's metadata layout (`hffolders`), whose
    metadata.parquet is no shard; so do a speech corpus's folders (`speech_corpora`) and a folder of torchvision's
    image set files (`torchvision_sets`), and a folder without shards of media files with their captions or
    transcripts beside them (`sidecars`). A folder `Dataset.save_to_disk` wrote stands for its .arrow shards
    (`_saved_shards`), one `DatasetDict.save_to_disk` wrote for its split's, and is refused with several splits
    (`SAVED_SPLITS`); a `load_dataset` cache entry likewise (`_cached_splits`). A folder of several splits'
    shards, by their names or split subfolders, is refused (`_refuse_splits`)."""
    if Path(pattern).is_dir():
        from .classfolders import has_class_folders  # (they build on this module)
        from .hffolders import has_metadata
        from .sidecars import has_sidecars
        from .speech_corpora import is_speech_corpus
        from .torchvision_sets import is_torchvision_set

        # read as one data file, which says itself which split of it to give (`file_records`)
        if has_metadata(Path(pattern)) or is_speech_corpus(Path(pattern)) or is_torchvision_set(Path(pattern)):
            return [pattern]
        if splits := _saved_splits(Path(pattern), setting):
            if len(splits) > 1:
                _refuse(Path(pattern), {split: f"{split}/" for split in splits}, "*/*.arrow", setting)
            return _pattern_files(str(Path(pattern) / splits[0]), setting)
        name, cached = _cached_splits(Path(pattern), setting)
        if cached:
            if len(cached) > 1:
                given = {split: Path(shards[0]).name if len(shards) == 1 else f"{name}-{split}-*.arrow"
                         for split, shards in cached.items()}
                _refuse(Path(pattern), given, f"{name}-*.arrow", setting)
            return next(iter(cached.values()))
        shards = _folder_shards(Path(pattern), setting) or _gluonts_split(Path(pattern))
        if not shards and has_sidecars(Path(pattern)):
            return [pattern]
        if not shards and has_class_folders(Path(pattern)):
            _refuse_splits(Path(pattern), _split_folder_shards(Path(pattern), setting), setting)
            return [pattern]
        if not shards:
            raise FileNotFoundError(f"{setting}: {pattern} is a folder with no .parquet or .tar file, no data set "
                                    f"saved by datasets' save_to_disk ({SAVED_STATE} and .arrow files) or cached by "
                                    f"load_dataset ({SAVED_INFO} and <name>-<split>.arrow files), no GluonTS "
                                    f"{GLUONTS_DATA}(.gz), no class "
                                    "folder, no metadata file and no media file with its caption or transcript "
                                    "beside it; give the data files (a wildcard such as data/train-*.parquet), a "
                                    "folder of class folders (train/cat/0001.jpg), a folder with a metadata.jsonl "
                                    "naming its media files (Hugging Face's imagefolder), or one of media files each "
                                    "with its .txt (0001.jpg and 0001.txt)")
        _refuse_splits(Path(pattern), shards, setting)
        return shards
    if _BRACES.search(pattern) and not Path(pattern).exists():
        raise FileNotFoundError(f"{setting}: no file {pattern}: brace lists (webdataset's shard-{{000..099}}.tar) "
                                f"are not expanded; give a wildcard ({_BRACES.sub('*', pattern)!r}) or the folder")
    if glob.has_magic(pattern) and not Path(pattern).exists():  # 'set[1].jsonl' may be a file's name
        matches = sorted(glob.glob(pattern))
        if not matches:
            raise FileNotFoundError(f"{setting}: no file matches {pattern!r}")
        return matches
    return [pattern]


def _folder_shards(folder: Path, setting: str) -> list[str]:
    """The shards a folder stands for: its .tar files when it has any (img2dataset's .parquet beside them are
    download statuses), else its .parquet files, in name order; else the .arrow files of a data set
    `Dataset.save_to_disk` wrote there (`_saved_shards`)."""
    files = [p for p in folder.iterdir() if p.is_file()]
    return (sorted(str(p) for p in files if is_tar(p))
            or sorted(str(p) for p in files if p.suffix.lower() == ".parquet") or _saved_shards(folder, setting))


# The file each split folder of a data set GluonTS saved (`TrainDatasets.save`: metadata.json beside train/ and
# test/) holds, one series per line, gzip-compressed by its default writer (data.json.gz) or not.
GLUONTS_DATA = "data.json"


def _gluonts_split(folder: Path) -> list[str]:
    """The data file of a split folder of a data set GluonTS saved (train/data.json.gz: `GLUONTS_DATA`, compressed
    or not); [] for another folder. (The data set's folder itself is named as such: `classfolders`.)"""
    return sorted(str(p) for p in folder.iterdir() if p.is_file() and unpacked_name(p.name) == GLUONTS_DATA)


# What `datasets`' save_to_disk writes beside a data set's .arrow shards: their order (state.json's
# "_data_files"), its features (`hubrows.saved_features`), and for a DatasetDict, the list of its splits, each
# saved in a subfolder of its name.
SAVED_STATE, SAVED_INFO, SAVED_SPLITS = "state.json", "dataset_info.json", "dataset_dict.json"


def _saved_shards(folder: Path, setting: str) -> list[str]:
    """The .arrow shards of a data set `Dataset.save_to_disk` wrote in `folder`, in the order its state.json lists
    them (the data set's row order: data-00000-of-00002.arrow, data-00001-of-00002.arrow); [] for a folder without
    a state.json. FileNotFoundError naming the state.json when it does not list them or lists a missing one."""
    state = folder / SAVED_STATE
    if not state.is_file():
        return []
    try:
        shards = [folder / entry["filename"] for entry in json.loads(state.read_bytes())["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise FileNotFoundError(f"{setting}: {state} does not list the data set's .arrow files as save_to_disk "
                                f"writes them ('_data_files': [{{'filename': ...}}]): {type(err).__name__}: "
                                f"{err}") from None
    missing = [str(shard) for shard in shards if not shard.is_file()]
    if missing:
        are = "is" if len(missing) == 1 else "are"
        raise FileNotFoundError(f"{setting}: {state} lists {_shown(missing)}, which {are} not there (an interrupted "
                                "copy?)")
    return [str(shard) for shard in shards]


# A split's .arrow file in the cache `datasets.load_dataset` fills: <data set>-<split>.arrow, or with several
# shards <data set>-<split>-00000-of-00003.arrow (`datasets.builder`'s names).
_CACHED_SHARD = re.compile(r"^(?P<name>.+?)(?:-(?P<index>\d{5})-of-(?P<count>\d{5}))?\.arrow$")


def _cached_splits(folder: Path, setting: str) -> tuple[str, dict[str, list[str]]]:
    """The .arrow shards of each split of a data set in the cache `datasets.load_dataset` fills
    (~/.cache/huggingface/datasets/<data set>/<config>/<version>/<hash>/), in the order of its `SAVED_INFO`'s
    splits: that file names the data set and its splits, each split's rows are <data set>-<split>.arrow or
    shards of it (`_CACHED_SHARD`), and there is no state.json (save_to_disk's). `cache-<hash>.arrow` files
    beside them hold `.map()` / `.filter()` results, not the data set: never read. Returns the data set's
    name and {split: shards}; {} for another folder. FileNotFoundError naming a split's missing shards (an
    interrupted download)."""
    info_file = folder / SAVED_INFO
    if (folder / SAVED_STATE).is_file() or not info_file.is_file():
        return "", {}
    try:
        info = json.loads(info_file.read_bytes())
        name, splits = info.get("dataset_name") or info["builder_name"], list(info["splits"])
    except (OSError, ValueError, KeyError, TypeError):  # no splits recorded: not a prepared cache entry
        return "", {}
    files = {path.name for path in folder.iterdir() if path.is_file()}
    found: dict[str, list[str]] = {}
    for split in splits:
        whole = f"{name}-{split}.arrow"
        shards = sorted(f for f in files if (m := _CACHED_SHARD.match(f)) and m["name"] == f"{name}-{split}" and m["count"])
        if whole in files:
            found[split] = [str(folder / whole)]
        elif shards:
            count = int(_CACHED_SHARD.match(shards[0])["count"])
            expected = [f"{name}-{split}-{index:05d}-of-{count:05d}.arrow" for index in range(count)]
            missing = [shard for shard in expected if shard not in files]
            if missing:
                are = "is" if len(missing) == 1 else "are"
                raise FileNotFoundError(f"{setting}: {folder} is a `datasets` cache entry whose split {split!r} has "
                                        f"{count} shards; {_shown(missing)} {are} not there (an interrupted download?)")
            found[split] = [str(folder / shard) for shard in expected]
    return name, found


def _saved_splits(folder: Path, setting: str) -> list[str]:
    """The splits of a `DatasetDict` that `save_to_disk` wrote in `folder` (its `SAVED_SPLITS` file's "splits");
    [] for another folder. FileNotFoundError naming the file when it does not list them."""
    listing = folder / SAVED_SPLITS
    if not listing.is_file():
        return []
    try:
        splits = json.loads(listing.read_bytes())["splits"]
        if not splits or not all(isinstance(split, str) and (folder / split).is_dir() for split in splits):
            raise ValueError(f"{splits!r} are not the folder's subfolders")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise FileNotFoundError(f"{setting}: {listing} does not list the data set's splits as save_to_disk writes "
                                f"them ({{'splits': ['train', 'test']}}, each a subfolder): {type(err).__name__}: "
                                f"{err}") from None
    return splits


def _split_folder_shards(folder: Path, setting: str) -> list[str]:
    """The shards (`_folder_shards`) of the subfolders of `folder` named as splits (`classfolders.split_kind`):
    a WebDataset repository on the hub keeps each split's shards in a folder of its own (train/00000.tar,
    test/00000.tar). Only split-named subfolders are listed, not every class folder of an image folder."""
    from .classfolders import split_kind  # (it builds on this module)

    return [shard for sub in sorted(folder.iterdir()) if sub.is_dir() and split_kind(sub.name) is not None
            for shard in _folder_shards(sub, setting)]


def _refuse_splits(folder: Path, shards: Sequence[str], setting: str) -> None:
    """FileNotFoundError for a folder whose .parquet or .tar shards are more than one split's, by their names as
    the hub and `datasets` give them (`HUB_SHARD`'s train-00000-of-00001.parquet or .tar, train.parquet beside
    test.parquet) or by the subfolders they are in (`_split_folder_shards`' train/00000.tar): a hub repository
    keeps every split in one folder (cifar10's plain_text/), which read whole would train on the test split too.
    The line names each split's wildcard (or subfolder), as `classfolders.split_refusal` names split folders."""
    from .classfolders import split_kind  # (it builds on this module)

    given: dict[str, str] = {}  # each split -> how it is given in the folder, in the shards' order
    for shard in map(Path, shards):
        if shard.parent != folder:
            given.setdefault(shard.parent.name, f"{shard.parent.name}/")
        elif (match := HUB_SHARD.match(shard.name)) is not None:
            given.setdefault(match["split"], f"{match['split']}-*{match['suffix']}")
        elif split_kind(shard.stem) is not None:
            given.setdefault(shard.stem, shard.name)
    # (shards of languages, en-* and fr-*, or of two data sets are no splits: read together, as given)
    if sum(split_kind(split) is not None for split in given) > 1:
        first = Path(shards[0])
        _refuse(folder, given, f"{'*/' if first.parent != folder else ''}*{first.suffix}", setting)


def _refuse(folder: Path, given: dict[str, str], whole: str, setting: str) -> None:
    """FileNotFoundError for a folder of several splits, `given` as in the folder (split -> "train/",
    "train-*.parquet"), `whole` the wildcard of every split's files (`classfolders.split_refusal`'s line)."""
    from .classfolders import split_refusal  # (it builds on this module)

    refusal = split_refusal(folder, list(given), "a split's rows, which the folder read whole would mix",
                            given.__getitem__)
    raise FileNotFoundError(f"{setting}: {refusal}; to read every split together, give {folder / whole}")


@functools.lru_cache(maxsize=64)
def _warn_once(message: str) -> None:
    """Logs a warning once per process: training expands the same data.train several times (a series
    run's baseline and season are fitted on its files before they are read)."""
    files_logger.warning("%s", message)


def warn_media_folder_unused(path: Path, media_folder: Path | None) -> None:
    """Warns that `media_folder` does not apply to `path` when it is a folder of class folders or of Hugging Face's
    metadata layout (or its metadata file): their media are found in and beside them, not in a media folder."""
    if media_folder is not None and (path.is_dir() or is_metadata_file(path)):
        _warn_once(f"{path}: the media folder {media_folder} does not apply to it: a folder of class folders or with "
                   "a metadata file holds its media itself (a row's file_name is relative to its metadata file's "
                   "folder)")


def data_label(data: PathLike | Sequence[PathLike]) -> str:
    """Data given as one path or several, as messages and reports name it."""
    return ", ".join(map(str, as_paths(data)))


# rows decoded at a time (into Python objects when records are read; of a cell's row group, when too big to
# keep, up to the rows kept): 64 images of a hub shard, a few MB
PARQUET_BATCH_ROWS = 64


def data_file_text(path: Path) -> str:
    """A data file's whole text (`textfiles.decode_text`; a compressed file's, `open_unpacked`); one that does not
    open, read or decode raises `DataError` (unreadable_file) naming it (and the line of a byte that is no UTF-8)."""
    with open_unpacked(path) as handle:
        raw = handle.read()
    try:
        return decode_text(raw, path)
    except TextFileError as err:
        raise DataError(err.source, "unreadable_file", err.detail) from None


def text_beside(path: Path, source: str, what: str) -> str:
    """The text of the caption or transcript file `path` (`what`, for messages), white space around it left out; a
    file that does not read or decode, or holds no text, is a bad record of `source` (the record it is the text of),
    not the reading's end."""
    try:
        text = data_file_text(path).strip()
    except DataError as err:
        raise DataError(source, "wrong_type", f"its {what} {err.source}: {err.detail}") from None
    if not text:
        raise DataError(source, "empty_answer", f"its {what} {path} is empty")
    return text


WHERE_OPTION = "where (data.options.where)"


def row_filter(where: Any) -> dict[str, frozenset[str]] | None:
    """The reader option `where` ({column: a value or a list of values}) as each column's values kept, as text: a
    CSV's cells are text, so ESC-50's fold 5 given as 5 matches its "5" (`cell_text`); None for none; ValueError
    for another shape."""
    if where is None:
        return None
    example = "e.g. {fold: [1, 2, 3, 4]}"
    if not isinstance(where, Mapping) or not where:
        raise ValueError(f"where must map columns to the values of the rows to read ({example}), got {where!r}")
    kept = {}
    for column, values in where.items():
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        if (not isinstance(column, str) or not values
                or not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in values)):
            raise ValueError(f"where: {column!r} must map to a value or a list of values ({example}), got {values!r}")
        kept[column] = frozenset(cell_text(value) for value in values)
    return kept


def cell_text(value: Any) -> str:
    """A cell as the text `where` compares: 5, 5.0 and "5" alike."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def where_rows(path: Path, rows: Iterator[tuple[str, Callable[[], Any]]],
               where: Mapping[str, frozenset[str]] | None,
               shown: Mapping[str, Mapping[str, str]] | None = None) -> Iterator[tuple[str, Callable[[], Any]]]:
    """The rows (source, load) of `path` whose cells are among `where`'s values, column by column (all rows without
    it): the others are not the data's, so they are not read as records, nor counted. A row that does not load
    is passed on (its reader names it); a column no row has, or no row kept, is the file's `DataError`, naming the
    columns or the values there are. `shown` ({column: {cell: text}}) is how that message and the count logged
    show a column's values where the cell is not what the user reads (a ClassLabel's number as its class,
    `hubrows.where_class_numbers`); any other value as it is."""
    if not where:
        yield from rows
        return
    seen: dict[str, set[str]] = {column: set() for column in where}
    kept = total = 0
    for source, load in rows:
        try:
            row = load()
        except DataError:
            yield source, load
            continue
        if not isinstance(row, Mapping):
            yield source, load
            continue
        missing = [column for column in where if column not in row]
        if missing:
            raise DataError(str(path), "unreadable_file", f"no column {missing[0]!r} to keep the rows by "
                            f"({WHERE_OPTION}); its columns: {', '.join(map(str, row))}")
        total += 1
        cells = {column: cell_text(row[column]) for column in where}
        if all(cells[column] in values for column, values in where.items()):
            kept += 1
            yield source, lambda row=row: row
        for column, cell in cells.items():
            if len(seen[column]) < 20:
                seen[column].add(cell)

    def listed(column: str, values: Iterable[str]) -> str:
        texts = (shown or {}).get(column, {})
        return ", ".join(sorted(texts.get(value, value) for value in values))

    wanted = "; ".join(f"{column} in {listed(column, values)}" for column, values in where.items())
    if total and not kept:
        there = "; ".join(f"{column}: {listed(column, values)}" for column, values in seen.items())
        raise DataError(str(path), "unreadable_file", f"no row has {wanted} ({WHERE_OPTION}); its values: {there}")
    logger.info("%s: %d of %d rows kept (%s)", path, kept, total, wanted)


def file_records(path: Path, *, caption_prompt: str | None = None, label_column: str | None = None,
                 columns: Mapping[str, str] | None = None, media_folder: Path | None = None,
                 split: Sequence[str] | None = None,
                 where: Mapping[str, frozenset[str]] | None = None) -> Iterator[tuple[str, Callable[[], Any]]]:
    """(source, load) per record of a data file: a Parquet or Arrow file's rows (`hubrows.hub_records`: a hub data
    set's plain rows of media and a label or caption as the records `webdataset.media_record` makes of them, asked
    `caption_prompt` and answered from `label_column` (None: the ClassLabel or `label` column), else the
    records they are, `table_records`), a WebDataset
    tar's samples (`webdataset.tar_records`, a captioned sample asked `caption_prompt`, None: the
    default), the rows of Hugging Face's metadata layout, a folder with a metadata file or such a file itself
    (`hffolders.metadata_records`, a captioned row asked `caption_prompt` too), a .csv / .tsv / .txt table whose
    column names media files as such rows, its files found in `media_folder` or beside it
    (`hffolders.media_table_records`), a speech corpus's utterances (`speech_corpora`: LibriSpeech, Aishell-1,
    LJSpeech, VCTK), a folder of media files with their captions or transcripts beside them
    (`sidecars.sidecar_records`, asked `caption_prompt` too), a folder of class folders' media
    files (`classfolders.class_folder_records`, asked `caption_prompt` too), else the JSON / JSONL records
    (`json_records`; one of a media path and a label or caption, `{"image": "a.png", "label": "cat"}`, as the
    record that makes, `hubrows.plain_records`; a COCO captions file's images, their files found in
    `media_folder`, None: beside the file, as such records, `coco`; a Karpathy split file's images of `split`, and a
    Flickr token file's (`captionsplits`: Flickr8k.token.txt, its images of `split` by the lists beside it), likewise;
    `split` for any other file is its error). `where` (`row_filter`) keeps the rows of a table of media rows, a
    metadata file, JSON / JSONL records and a Parquet / Arrow file by their cells (`where_rows`); for any other
    file it is its error. A
    Parquet row or JSON record of the_cauldron's
    `images` and `texts` is the LLaVA record it stands for (`hubrows.turns_record`). With `columns` (qa's
    `data.options.columns`, {field: the file's column}), a JSON / JSONL file's records or a Parquet file's rows are
    records with those columns renamed (`renamed_records`), never plain rows: the mapping says which columns are
    the record's fields."""
    from .captionsplits import is_caption_tokens, split_refused, token_records  # (they build on this module)
    from .speech_corpora import is_speech_corpus, speech_corpus_records
    from .torchvision_sets import is_torchvision_set, torchvision_records

    tokens = is_caption_tokens(path)
    if split is not None and not tokens and (path.is_dir() or is_metadata_file(path) or is_tar(path)
                                             or media_kind(path) is not None or is_table_file(path)
                                             or is_media_table(path) or is_speech_corpus(path)
                                             or is_torchvision_set(path)):
        return _refused(split_refused(path))
    if where and not (is_media_table(path) or is_metadata_file(path) or data_suffix(path) in (".json", ".jsonl")
                      or is_table_file(path) or path.is_dir() and not is_speech_corpus(path)
                      and not is_torchvision_set(path)):
        return _refused(DataError(str(path), "unreadable_file", f"{WHERE_OPTION} keeps the rows of a CSV / TSV table "
                                  "of media rows, a metadata file, JSON / JSONL records and Parquet / Arrow rows by "
                                  "their columns; this file is none of them: leave it out"))
    if columns:
        if (path.is_dir() or is_metadata_file(path) or is_tar(path) or media_kind(path) is not None
                or is_media_table(path) or tokens):
            return _refused(DataError(str(path), "unreadable_file", f"{COLUMNS_OPTION} renames the columns of JSON, "
                                      "JSONL, Parquet and Arrow records; a tar, a folder, a metadata file or a table "
                                      "of media rows names its own fields: leave it out for this file, or give the "
                                      "file's records as JSONL"))
        table = is_table_file(path)
        return renamed_records(table_records(path) if table else json_records(path, media_folder, split), columns,
                               "column" if table else "field")
    if is_speech_corpus(path):
        return speech_corpus_records(path)
    if is_torchvision_set(path):
        return torchvision_records(path, caption_prompt, label_column)
    if path.is_dir() or is_metadata_file(path):
        from .classfolders import class_folder_records  # (they build on this module)
        from .hffolders import has_metadata, metadata_records

        from .sidecars import has_sidecars, sidecar_records

        if is_metadata_file(path) or has_metadata(path):
            return metadata_records(path, caption_prompt, where)
        if where:
            return _refused(DataError(str(path), "unreadable_file", f"{WHERE_OPTION} keeps rows by their columns; "
                                      "a folder of class folders, or of media files with their text files, has none: "
                                      "leave it out"))
        if has_sidecars(path):
            return sidecar_records(path, caption_prompt)
        return class_folder_records(path, caption_prompt)
    from .hubrows import plain_records  # (it builds on this module)

    if tokens:
        return plain_records(token_records(path, media_folder, split), caption_prompt)
    if is_media_table(path):
        from .hffolders import media_table_records  # (it builds on this module)

        return media_table_records(path, caption_prompt, media_folder, label_column, where)
    if is_tar(path):
        from .webdataset import tar_records  # (it builds on this module)

        return tar_records(path, caption_prompt)
    if (kind := media_kind(path)) is not None:  # (a wildcard over a folder of media, 'pets/*')
        return _media_given(path, kind)
    if is_table_file(path):
        from .hubrows import hub_records  # (it builds on this module)

        return hub_records(path, caption_prompt, label_column, where)
    return plain_records(where_rows(path, json_records(path, media_folder, split), where), caption_prompt,
                         label_column)


def media_kind(path: Path) -> str | None:
    """"image", "audio" or "video" for a media file by its extension (`webdataset.MEDIA_EXTENSIONS`), else None."""
    from .webdataset import MEDIA_EXTENSIONS  # (it builds on this module)

    return MEDIA_EXTENSIONS.get(path.suffix.lower().lstrip("."))


def _media_given(path: Path, kind: str) -> Iterator[tuple[str, Callable[[], Any]]]:
    """The error of a media file given as a data file, raised as its records are read (as a file's are)."""
    return _refused(DataError(str(path), "unreadable_file", f"an {kind} file, not a data file: give the folder it "
                              "is in (a folder of class folders, or one with a metadata.jsonl naming its files), or a "
                              "file of records naming it (docs/custom-data.md)"))


def _refused(error: DataError) -> Iterator[tuple[str, Callable[[], Any]]]:
    """Records that are `error`, raised as they are read (as a file's own error is)."""
    raise error
    yield  # (a generator: the error comes when the records are read)


# How the mapping of record fields to a file's columns is given, for messages.
COLUMNS_OPTION = "data.options.columns"


def check_columns(columns: Any, fields: Sequence[str], data_format: str,
                  unmapped: bool = False) -> dict[str, Any] | None:
    """`columns` (`data.options.columns`: {a field of `data_format`'s records: the file's column holding it}) as a
    dict, or None for none; ValueError in one line for what is not such a mapping: a key that is no field of
    `fields` (they are listed), a column that is not text (None, "no such column", only where `unmapped` allows
    it: LLaMA-Factory's ShareGPT `system` and `tools`), two fields read from one column."""
    if columns is None:
        return None
    if not isinstance(columns, Mapping):
        raise ValueError(f"{COLUMNS_OPTION} must map {data_format} fields to the file's columns ({{field: column}}), "
                         f"got {type(columns).__name__}")
    unknown = [field for field in columns if field not in fields]
    if unknown:
        raise ValueError(f"{COLUMNS_OPTION}: {unknown[0]!r} is no field of {data_format} records (its fields: "
                         f"{', '.join(fields)})")
    for field, column in columns.items():
        if not (isinstance(column, str) and column or column is None and unmapped):
            raise ValueError(f"{COLUMNS_OPTION}: {field!r} maps to {column!r}; give the name of the file's column "
                             "that holds it")
    read: dict[str, str] = {}
    for field, column in columns.items():
        if column is not None and read.setdefault(column, field) != field:
            raise ValueError(f"{COLUMNS_OPTION} maps both {read[column]!r} and {field!r} to the column {column!r}: "
                             "a column is read as one field")
    return dict(columns)


def renamed_records(records: Iterable[tuple[str, Callable[[], Any]]], columns: Mapping[str, str],
                    kind: str = "field") -> Iterator[tuple[str, Callable[[], Any]]]:
    """(source, load) per record of `records`, each loaded with `columns` ({field: its column}) applied: the
    column's value under the field's name, as LLaMA-Factory reads a `dataset_info.json` entry's "columns"; a
    field of the mapped name already there is left aside (the mapping wins). A record without a mapped column is
    its `missing_field` error naming the column (`kind`: a Parquet row's "column", a JSON record's "field")."""
    for source, load in records:
        yield source, functools.partial(_renamed, source, load, columns, kind)


def _renamed(source: str, load: Callable[[], Any], columns: Mapping[str, str], kind: str) -> Any:
    record = load()
    if not isinstance(record, dict):  # (its reader names what it is)
        return record
    for field, column in columns.items():
        if column not in record:
            whose = "row's columns" if kind == "column" else "record's fields"
            raise DataError(source, "missing_field", f"no {column!r} {kind}, which {COLUMNS_OPTION} maps {field!r} "
                            f"to (the {whose}: {', '.join(map(str, record))})")
    kept = {key: value for key, value in record.items() if key not in columns and key not in columns.values()}
    return {**kept, **{field: record[column] for field, column in columns.items()}}


# The files of a table of rows (`open_table_file`), by extension: Parquet, and the Arrow files `datasets` writes
# (`Dataset.save_to_disk`'s data-00000-of-00001.arrow, its cache's).
# (.feather: pandas' `to_feather`, R's arrow: the Arrow IPC file format, which an .arrow file may hold too)
TABLE_EXTENSIONS = (".parquet", ".arrow", ".feather")


def is_table_file(path: Path) -> bool:
    """A Parquet or Arrow file by its extension (`TABLE_EXTENSIONS`): a table whose rows are records."""
    return path.suffix.lower() in TABLE_EXTENSIONS


# The metadata files of Hugging Face's imagefolder / audiofolder layout (`hffolders`), by their exact names as
# `datasets` finds them: a folder's rows, not a data file of records.
METADATA_NAMES = ("metadata.jsonl", "metadata.csv", "metadata.parquet")


# The files of a time series (`series.TimeSeriesReader`) by extension (.tsf: the Monash archive's, a series per line);
# Parquet / Arrow tables, JSON / JSON Lines files and workbooks are told by their columns
# (`seriesrows.is_series_rows`, `seriestables.is_series_table`).
SERIES_EXTENSIONS = (".csv", ".tsv", ".npz", ".tsf")
# Excel's workbooks: an .xlsx one's first worksheet is read as a table of series, an .xls one is refused
# (`seriestables.workbook_refusal`).
WORKBOOK_EXTENSIONS = (".xlsx", ".xls")
# How messages name every series file.
SERIES_FILES = (".csv/.tsv/.npz, .tsf, a .parquet/.arrow/.json/.jsonl/.xlsx table of series columns, or "
                ".parquet/.arrow/.jsonl of one series per row")


def is_series_file(path: Path) -> bool:
    """A time-series file: by its extension (`SERIES_EXTENSIONS`), a Parquet / JSON Lines file of one series per row
    (a `target` list column and no media, `seriesrows.is_series_rows`), or a Parquet / Arrow table of scalar columns,
    JSON / JSONL records of scalar fields or an .xlsx workbook's first worksheet holding numbers (as a CSV holds
    them, `seriestables.is_series_table`); not a Hugging Face metadata file (a folder's rows) nor a table of media
    rows (`is_media_table`: a column naming media files)."""
    if is_metadata_file(path):
        return False
    if data_suffix(path) in SERIES_EXTENSIONS:  # (x.csv.gz: a compressed CSV, `open_unpacked`)
        return not is_media_table(path)
    from .seriesrows import is_series_rows  # (they build on this module)
    from .seriestables import is_series_table

    return is_series_rows(path) or is_series_table(path)


def is_metadata_file(path: Path) -> bool:
    """A Hugging Face metadata file by its name (`METADATA_NAMES`): a folder's rows, not a series CSV or records."""
    return path.name in METADATA_NAMES and not path.is_dir()


def subfolders(folder: Path) -> list[Path]:
    """`folder`'s visible subfolders (not named ".*"), in name order; [] where it does not list (its reader names
    that): where a table's media and a speech corpus's splits are looked for."""
    try:
        with os.scandir(folder) as entries:
            return sorted(Path(entry.path) for entry in entries if not entry.name.startswith(".") and entry.is_dir())
    except OSError:
        return []


def first_file(folders: Sequence[str | Path], name: str) -> tuple[str | None, list[str]]:
    """The path of the file `name` in the first of `folders` holding it (None where none does) and the paths
    tried, in order: where a COCO file's images and a table's media files are looked for."""
    tried = list(dict.fromkeys(os.path.normpath(os.path.join(folder, name)) for folder in folders))
    return next((path for path in tried if os.path.isfile(path)), None), tried


def media_column(header: Sequence[str], rows: Sequence[Sequence[str]]) -> int | None:
    """The index of the first column of a delimited file whose cell names a media file (`media_kind`) in every
    one of `rows` (its first rows after the header); None where none does, or without rows."""
    if not rows:
        return None
    return next((index for index in range(len(header))
                 if all(len(row) > index and media_kind(Path(row[index])) is not None for row in rows)), None)


def is_media_table(path: Path) -> bool:
    """A .csv, .tsv or .txt table whose rows name media files in a column (`hffolders.media_table`: Kaggle's
    image,label and Flickr8k's image,caption files), read as the rows of a metadata file are: samples, not a series
    or JSON records."""
    from .hffolders import media_table  # (it builds on this module)

    return media_table(path) is not None


def header_delimiter(text: str) -> str:
    """The delimiter of a delimited text's header row: ',' unless the row has no comma but ';', tab or '|' (Excel in
    many locales writes ';', Flickr30k's results.csv '|')."""
    header = text.lstrip("\ufeff").split("\n", 1)[0]
    if "," in header:
        return ","
    return next((sep for sep in (";", "\t", "|") if sep in header), ",")


def is_tar(path: Path) -> bool:
    """A WebDataset shard: a .tar (a compressed one, .tar.gz and the like, is refused when read, with
    what to do, rather than read as text)."""
    return path.name.lower().endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar.zst"))


class EmbeddedBytes(abc.ABC):
    """Media bytes inside a data file (a Parquet cell, a tar member), kept as where they are rather than
    as the bytes, which a list of samples holding them would hold in memory (tens of GB for LLaVA-Pretrain
    or a LAION subset). The decoders (`modrwkv.encoders.media`) `read()` them when the item is decoded,
    in the data-loader worker that builds the sample."""

    __slots__ = ()

    @abc.abstractmethod
    def read(self) -> bytes:
        """The bytes; ValueError naming the file (and where in it) when they cannot be read."""


class NamedBytes(bytes):
    """Bytes read from a named member of a data file (a tar's `000000042.jpg`), so that a decoder's error
    names the member, not "<5120 bytes>" (`modrwkv.encoders.media.describe`)."""

    name: str

    def __new__(cls, data: bytes, name: str) -> NamedBytes:
        value = super().__new__(cls, data)
        value.name = name
        return value

    def __reduce__(self) -> tuple[type[NamedBytes], tuple[bytes, str]]:
        # bytes' own reduction rebuilds the value without `name`, which __new__ requires (pickle, copy)
        return NamedBytes, (bytes(self), self.name)


@dataclasses.dataclass(frozen=True, slots=True)
class TableBytes(EmbeddedBytes):
    """Media bytes embedded in a Parquet or Arrow file (the `bytes` of what HF `datasets` writes for an `Image()` /
    `Audio()` feature), kept as where they are rather than as the bytes: LLaVA-Pretrain on the hub is
    tens of GB of embedded images, which a list of samples holding them would hold in memory. The
    decoders (`modrwkv.encoders.media`) `read()` them when the item is decoded, in the data-loader
    worker that builds the sample.

    `row` counts within `row_group` (an Arrow file's record batch, `TableFile`); `keys` lead from the value of
    `column` in that row to the bytes (("bytes",) for an image, (2, "bytes") for the third image of a list)."""

    path: str
    row_group: int
    row: int
    column: str
    keys: tuple[str | int, ...]

    def read(self) -> bytes:
        """The bytes, from the row's cell as `_table_cell` reads it; ValueError naming the file and row
        when the file no longer reads or holds something else there (replaced since it was indexed)."""
        try:
            value = _table_cell(self.path, self.row_group, self.row, self.column)
            for key in self.keys:
                value = value[key]
        except DataError as err:  # (the file no longer opens: its detail, without the file's name again)
            raise ValueError(f"{self.path}: row {self.row} of row group {self.row_group}: the embedded "
                             f"{self.column!r} bytes cannot be read: {err.detail}") from None
        except (OSError, ValueError, IndexError, KeyError, TypeError) as err:
            raise ValueError(f"{self.path}: row {self.row} of row group {self.row_group}: the embedded "
                             f"{self.column!r} bytes cannot be read: {' '.join(str(err).split())}") from None
        if not isinstance(value, bytes):
            raise ValueError(f"{self.path}: row {self.row} of row group {self.row_group}: {self.column!r} holds no "
                             "bytes there any more (the file changed since it was indexed)")
        return value


# A process keeps the media column of the row group it read last, when that is up to this size
# (uncompressed), so that the samples of a row group, in any order, read it once. Of a bigger one
# (pandas and pyarrow write a whole file as one row group unless told otherwise) it keeps this much,
# from the row asked for on: every data-loader worker holding a whole data set's images would undo
# what TableBytes is for. `table_records` warns of such row groups.
ROW_GROUP_KEPT_BYTES = 128 * 2**20  # a hub shard's row group of 100-500 images is kept whole


@dataclasses.dataclass(frozen=True, slots=True)
class _KeptRows:
    key: tuple[int, str, int, str]  # (process id, path, row group, column)
    start: int  # the row (within the row group) that values[0] is
    values: Any  # a pyarrow array


# One entry: the process id keeps a forked data-loader worker from using what its parent read.
_KEPT: list[_KeptRows] = []


def _table_cell(path: str, row_group: int, row: int, column: str) -> Any:
    """The value of `column` in `row` of `row_group`, from the rows this process keeps, else read."""
    key = (os.getpid(), path, row_group, column)
    if not (_KEPT and _KEPT[0].key == key and _KEPT[0].start <= row < _KEPT[0].start + len(_KEPT[0].values)):
        # cleared before reading, with no other reference to what it held: a worker's memory is one row
        # group's rows, not two
        _KEPT.clear()
        _KEPT.append(_read_rows(key, row))
    return _KEPT[0].values[row - _KEPT[0].start].as_py()


def _read_rows(key: tuple[int, str, int, str], row: int) -> _KeptRows:
    import pyarrow

    _, path, row_group, column = key
    # one column, read in this thread and closed: an open file, or its pre-buffered reads, keep what they read
    with open_table_file(Path(path), streamed=True) as handle:
        size = handle.kept_bytes(row_group, column)
        if size <= ROW_GROUP_KEPT_BYTES:
            return _KeptRows(key, 0, handle.read_row_group(row_group, columns=[column], use_threads=False).column(0))
        rows = handle.row_group_rows(row_group)
        if row >= rows:
            raise IndexError(f"the row group has {rows} rows")
        end = row + max(PARQUET_BATCH_ROWS, ROW_GROUP_KEPT_BYTES * rows // size)
        # streamed a batch at a time, keeping the window's rows: reading the whole column and slicing it after
        # held all of it for a moment (2 GB of images, in each data-loader worker)
        kept, at = [], 0  # at: the row of the row group that a batch starts at
        for batch in handle.iter_batches(batch_size=PARQUET_BATCH_ROWS, row_groups=[row_group], columns=[column],
                                         use_threads=False):
            if at + batch.num_rows > row:
                part = batch.column(0).slice(max(0, row - at), end - max(row, at))
                # part of a batch is taken, not sliced: a slice keeps the whole batch's buffers alive
                kept.append(part if len(part) == batch.num_rows else part.take(pyarrow.array(range(len(part)))))
            at += batch.num_rows
            if at >= end:
                break
        return _KeptRows(key, row, pyarrow.chunked_array(kept, handle.schema_arrow.field(column).type))


def read_embedded(item: Any) -> Any:
    """`item`, with `EmbeddedBytes` read into the bytes they stand for (what decoders open)."""
    return item.read() if isinstance(item, EmbeddedBytes) else item


def table_records(path: Path) -> Iterator[tuple[str, Callable[[], Any]]]:
    """Yields (source, load) per row of a Parquet or Arrow file (`open_table_file`; "path:row N", counted from 0 as
    `datasets` and pandas index them), read `PARQUET_BATCH_ROWS` rows at a time. Each row is a record with the JSON
    formats' fields; what HF `datasets` writes for an `Image()` / `Audio()` feature, a struct
    {"bytes", "path"}, arrives as that dict, its bytes as a `TableBytes` (any binary value does): the
    records of a data set hold none of its media, which are read when a sample is built."""
    index, name = 0, str(path)
    with open_table_file(path) as handle:
        _warn_of_big_row_groups(path, handle)
        names = handle.schema_arrow.names
        for row_group in range(handle.num_row_groups):
            columns, unread = _listed_columns(handle, row_group)
            batches = handle.iter_batches(batch_size=PARQUET_BATCH_ROWS, row_groups=[row_group], columns=columns)
            row = 0
            for batch in decoded_batches(path, handle, batches, index):
                for record in batch.to_pylist():
                    where = functools.partial(TableBytes, name, row_group, row)
                    for column, fields in unread.items():  # bytes every row has, left in the file
                        record[column] = b"" if fields is None else {
                            key: b"" if skipped else record[column][key] for key, skipped in fields.items()}
                    yield f"{path}:row {index}", _constant({column: _refer_to_bytes(record[column], column, (), where)
                                                            for column in names})
                    index, row = index + 1, row + 1


def decoded_batches(path: Path, handle: TableFile, batches: Iterator[Any], first_row: int) -> Iterator[Any]:
    """`batches` (`handle.iter_batches`, from row `first_row` of the file on) as they decode; a damaged stretch is
    one DataError naming the row from which nothing decodes, since no row past it can be found."""
    row = first_row
    while True:
        try:
            batch = next(batches, None)
        except (OSError, ValueError) as err:
            raise DataError(f"{path}:row {row}", "unreadable_file",
                            f"the {handle.kind} data does not decode from this row on: {err}") from None
        if batch is None:
            return
        yield batch
        row += batch.num_rows


def _listed_columns(handle: TableFile, row_group: int) -> tuple[list[str], dict[str, dict[str, bool] | None]]:
    """What listing a row group's records reads: every column but the media bytes that every row of the row group
    has (a binary column, or a struct's binary field, as `datasets` stores an `Image()` / `Audio()`: {"bytes",
    "path"}, whose statistics count no null, `TableFile.never_null`), which the records only point to
    (`TableBytes`); and the columns left unread: None for a binary column, else the struct's fields in order,
    True for those unread. Reading them would read every image of a data set to list its questions (a hub copy of
    VQAv2 is tens of GB); bytes that may be null (no statistics, a null counted) or sit in a list are read, for
    what they hold decides what the record is."""
    import pyarrow

    never_null = handle.never_null(row_group)
    columns: list[str] = []
    unread: dict[str, dict[str, bool] | None] = {}
    for field in handle.schema_arrow:
        if is_binary_type(field.type) and field.name in never_null:
            unread[field.name] = None
            continue
        if pyarrow.types.is_struct(field.type):
            children = [field.type.field(k) for k in range(field.type.num_fields)]
            skipped = {child.name: is_binary_type(child.type) and f"{field.name}.{child.name}" in never_null
                       for child in children}
            kept = [child for child in children if not skipped[child.name]]
            # (a struct read through its other fields only: those must be plain values, one leaf each)
            plain = not any(pyarrow.types.is_nested(child.type) or is_binary_type(child.type) for child in kept)
            if any(skipped.values()) and kept and plain:
                columns += [f"{field.name}.{child.name}" for child in kept]
                unread[field.name] = skipped
                continue
        columns.append(field.name)
    return columns, unread


def is_binary_type(data_type: Any) -> bool:
    """Whether values of this pyarrow type are bytes (binary or large binary: embedded media)."""
    import pyarrow

    return pyarrow.types.is_binary(data_type) or pyarrow.types.is_large_binary(data_type)


def holds_bytes(data_type: Any) -> bool:
    """Whether values of this pyarrow type hold binary values (media), in structs and lists too."""
    import pyarrow

    if is_binary_type(data_type):
        return True
    if pyarrow.types.is_struct(data_type):
        return any(holds_bytes(data_type.field(i).type) for i in range(data_type.num_fields))
    if pyarrow.types.is_list(data_type) or pyarrow.types.is_large_list(data_type):
        return holds_bytes(data_type.value_type)
    return False


def is_list_type(data_type: Any) -> bool:
    """Whether values of this pyarrow type are lists (of any length, or of a fixed one)."""
    import pyarrow

    return (pyarrow.types.is_list(data_type) or pyarrow.types.is_large_list(data_type)
            or pyarrow.types.is_fixed_size_list(data_type))


def _warn_of_big_row_groups(path: Path, handle: TableFile) -> None:
    """A warning for a media column bigger in a row group than what a process keeps of it (`_read_rows`)."""
    media = [field.name for field in handle.schema_arrow if holds_bytes(field.type)]
    sizes = [(handle.kept_bytes(g, column), g, column) for g in range(handle.num_row_groups) for column in media]
    if sizes and max(sizes)[0] > ROW_GROUP_KEPT_BYTES:
        size, group, column = max(sizes)
        logger.warning("%s: row group %d holds %.0f MiB of %r (%d rows), more than the %.0f MiB of a row group's media a "
                       "process keeps: in a shuffled order a sample can cost reading the whole column of its row "
                       "group. Rewrite it with smaller row groups (datasets: Dataset.to_parquet(path, batch_size=100); "
                       "pyarrow: row_group_size=100)", path, group, size / 2**20, column,
                       handle.row_group_rows(group), ROW_GROUP_KEPT_BYTES / 2**20)


class TableFile(abc.ABC):
    """An open table file, Parquet or Arrow, as the readers use it: the part of `pyarrow.parquet.ParquetFile` they
    call (`schema_arrow`, `num_row_groups`, `iter_batches`, `read_row_group`), with what they learn from its
    metadata asked here (`num_rows`, `row_group_rows`, `never_null`, `kept_bytes`). An Arrow file's record batches
    are its row groups. A context manager, as ParquetFile is; `open_table_file` opens one."""

    kind: ClassVar[str]  # "Parquet" or "Arrow", for messages

    @property
    @abc.abstractmethod
    def schema_arrow(self) -> Any:
        """The file's `pyarrow.Schema`, with its metadata (`datasets`' `huggingface` features)."""

    @property
    @abc.abstractmethod
    def num_row_groups(self) -> int: ...

    @property
    def num_rows(self) -> int:
        return sum(self.row_group_rows(group) for group in range(self.num_row_groups))

    @abc.abstractmethod
    def row_group_rows(self, row_group: int) -> int: ...

    @abc.abstractmethod
    def never_null(self, row_group: int) -> set[str]:
        """The columns ("image") and struct fields ("image.bytes") known to hold no null in the row group (a
        field's nulls counting its struct's): what `_listed_columns` may leave unread."""

    @abc.abstractmethod
    def kept_bytes(self, row_group: int, column: str) -> int:
        """The memory a process holds to keep the row group's top-level `column` once read (`_read_rows`)."""

    @abc.abstractmethod
    def iter_batches(self, batch_size: int, row_groups: Sequence[int] | None = None,
                     columns: Sequence[str] | None = None, use_threads: bool = True) -> Iterator[Any]:
        """`pyarrow.RecordBatch`es of up to `batch_size` rows of the row groups (None: all), with `columns` only
        (None: all; a struct's field as "image.path": the struct with those fields)."""

    @abc.abstractmethod
    def read_row_group(self, row_group: int, columns: Sequence[str], use_threads: bool = True) -> Any:
        """The row group's `columns` as a `pyarrow.Table`."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> TableFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _ParquetTable(TableFile):
    kind = "Parquet"

    def __init__(self, handle: Any) -> None:
        self._handle = handle  # a pyarrow.parquet.ParquetFile

    @property
    def schema_arrow(self) -> Any:
        return self._handle.schema_arrow

    @property
    def num_row_groups(self) -> int:
        return self._handle.num_row_groups

    @property
    def num_rows(self) -> int:  # (the footer's count)
        return self._handle.metadata.num_rows

    def row_group_rows(self, row_group: int) -> int:
        return self._handle.metadata.row_group(row_group).num_rows

    def never_null(self, row_group: int) -> set[str]:
        # a column chunk's statistics, where the writer counted its nulls
        metadata = self._handle.metadata.row_group(row_group)
        chunks = [metadata.column(i) for i in range(metadata.num_columns)]
        return {chunk.path_in_schema for chunk in chunks if chunk.statistics is not None
                and chunk.statistics.has_null_count and chunk.statistics.null_count == 0}

    def kept_bytes(self, row_group: int, column: str) -> int:
        # its uncompressed size (a struct's: all its fields')
        metadata = self._handle.metadata.row_group(row_group)
        chunks = [metadata.column(i) for i in range(metadata.num_columns)]
        return sum(chunk.total_uncompressed_size for chunk in chunks
                   if chunk.path_in_schema == column or chunk.path_in_schema.startswith(column + "."))

    def iter_batches(self, batch_size: int, row_groups: Sequence[int] | None = None,
                     columns: Sequence[str] | None = None, use_threads: bool = True) -> Iterator[Any]:
        return self._handle.iter_batches(batch_size=batch_size, row_groups=row_groups, columns=columns,
                                         use_threads=use_threads)

    def read_row_group(self, row_group: int, columns: Sequence[str], use_threads: bool = True) -> Any:
        return self._handle.read_row_group(row_group, columns=columns, use_threads=use_threads)

    def close(self) -> None:
        self._handle.close()


class _ArrowTable(TableFile):
    """An Arrow IPC file, memory-mapped: its record batches reference the file's pages, read when touched and held
    by the page cache, not the process (a data set of images costs no memory to keep)."""

    kind = "Arrow"

    def __init__(self, source: Any, schema: Any, batches: list[Any]) -> None:
        self._source = source  # the pyarrow.MemoryMappedFile
        self._schema = schema
        self._batches = batches

    @property
    def schema_arrow(self) -> Any:
        return self._schema

    @property
    def num_row_groups(self) -> int:
        return len(self._batches)

    def row_group_rows(self, row_group: int) -> int:
        return self._batches[row_group].num_rows

    def never_null(self, row_group: int) -> set[str]:
        import pyarrow

        # an array's null count comes with it (the batch header's), its validity bitmap unread
        found = set()
        for field, array in zip(self._schema, self._batches[row_group].columns):
            if array.null_count:
                continue
            found.add(field.name)
            if pyarrow.types.is_struct(field.type):
                found.update(f"{field.name}.{child.name}" for child in field.type
                             if array.field(child.name).null_count == 0)
        return found

    def kept_bytes(self, row_group: int, column: str) -> int:
        return 0  # (the file's mapped pages)

    def _columns(self, row_group: int, columns: Sequence[str] | None) -> Any:
        """The row group with only `columns` (None: all; `iter_batches`)."""
        import pyarrow

        batch = self._batches[row_group]
        if columns is None:
            return batch
        fields: dict[str, list[str] | None] = {}  # each column read -> the struct fields read (None: all)
        for column in columns:
            name, _, child = column.partition(".")
            if not child:
                fields[name] = None
            elif (children := fields.setdefault(name, [])) is not None:
                children.append(child)
        arrays = []
        for name, children in fields.items():
            array = batch.column(name)
            if children is not None:
                array = pyarrow.StructArray.from_arrays([array.field(child) for child in children], children,
                                                        mask=array.is_null())
            arrays.append(array)
        return pyarrow.RecordBatch.from_arrays(arrays, list(fields))

    def iter_batches(self, batch_size: int, row_groups: Sequence[int] | None = None,
                     columns: Sequence[str] | None = None, use_threads: bool = True) -> Iterator[Any]:
        for row_group in range(self.num_row_groups) if row_groups is None else row_groups:
            batch = self._columns(row_group, columns)
            for start in range(0, batch.num_rows, batch_size):
                yield batch.slice(start, batch_size)

    def read_row_group(self, row_group: int, columns: Sequence[str], use_threads: bool = True) -> Any:
        import pyarrow

        return pyarrow.Table.from_batches([self._columns(row_group, columns)])

    def close(self) -> None:
        self._batches.clear()
        self._source.close()


def open_table_file(path: Path, streamed: bool = False) -> TableFile:
    """The table file `path` open (`TableFile`): a Parquet file by its .parquet extension, else an Arrow IPC file
    in the stream format, as `datasets` writes one (`Dataset.save_to_disk`, its cache), or the file format (Feather
    v2), memory-mapped. `streamed` reads a Parquet column chunk a MiB at a time, rather than whole (its compressed
    bytes) before decoding, and nothing ahead (an open file keeps what it pre-buffered). DataError naming the file
    for one that does not open or is not of its kind."""
    from ...extras import require

    if path.suffix.lower() == ".parquet":
        parquet = require("pyarrow.parquet", "train", "reading Parquet data files")
        try:
            return _ParquetTable(parquet.ParquetFile(path, pre_buffer=not streamed,
                                                     buffer_size=2**20 if streamed else 0))  # (0: unbuffered)
        except FileNotFoundError as err:
            raise DataError(str(path), "unreadable_file", f"cannot open: {err}") from err
        except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid (a ValueError) for a file that is not Parquet
            raise DataError(str(path), "unreadable_file", f"not a readable Parquet file: {err}") from None
    ipc = require("pyarrow.ipc", "train", "reading Arrow data files")
    import pyarrow

    try:
        source = pyarrow.memory_map(str(path))
    except OSError as err:
        raise DataError(str(path), "unreadable_file", f"cannot open: {err}") from None
    try:
        if _is_arrow_file_format(source):
            reader = ipc.open_file(source)
            batches = [reader.get_batch(i) for i in range(reader.num_record_batches)]
        else:  # the stream format: its batches' headers are read in turn (their data stays in the file)
            reader = ipc.open_stream(source)
            batches = list(reader)
    except (OSError, ValueError) as err:  # ArrowInvalid (a ValueError): not Arrow, or cut short
        source.close()
        raise DataError(str(path), "unreadable_file", f"not a readable Arrow file: {' '.join(str(err).split())}") \
            from None
    return _ArrowTable(source, reader.schema, batches)


def _is_arrow_file_format(source: Any) -> bool:
    """Whether the mapped file starts with the Arrow IPC file format's magic (Feather v2), not the stream's."""
    magic = source.read(6)
    source.seek(0)
    return magic == b"ARROW1"


def _refer_to_bytes(value: Any, column: str, keys: tuple[str | int, ...],
                    where: Callable[[str, tuple[str | int, ...]], TableBytes]) -> Any:
    """`value` (a column's value in one row) with each bytes object in it replaced by its `TableBytes`."""
    if isinstance(value, bytes):
        return where(column, keys)
    if isinstance(value, dict):
        return {key: _refer_to_bytes(item, column, (*keys, key), where) for key, item in value.items()}
    if isinstance(value, list):
        return [_refer_to_bytes(item, column, (*keys, k), where) for k, item in enumerate(value)]
    return value


def open_unpacked(path: Path) -> BinaryIO:
    """`path` open for reading the bytes of the data file it is or holds (`textfiles.open_data`: a gzip, bzip2 or
    xz compressed file is read decompressed); DataError (unreadable_file) naming it for one that does not open,
    an archive or a zstd file (which a text reader would read as garbage: `textfiles.packed_detail`), and for a
    read of a compressed stream that is cut short or corrupt."""
    try:
        return open_data(path, _unreadable)
    except OSError as err:
        raise DataError(str(path), "unreadable_file", f"cannot open: {err}") from err


def _unreadable(source: str, detail: str) -> DataError:
    return DataError(source, "unreadable_file", detail)


def json_records(path: Path, media_folder: Path | None = None,
                 split: Sequence[str] | None = None) -> Iterator[tuple[str, Callable[[], Any]]]:
    """Yields (source, load) per record of a JSON array ("path:[i]") or JSONL file ("path:line",
    1-based; blank lines are not records). The format is told by the first non-blank character
    ('[' = JSON array), not the extension, because LLaVA-style `.json` files are often JSONL. A file that is one
    JSON object is read as `_document_records` says (a COCO captions file's images found in `media_folder`, a
    Karpathy split file's images of `split`); `split` for a file of records is its error (it has no splits).

    A JSONL line is decoded (UTF-8, then JSON) by `load()`, so a broken line, including one with
    bytes that are not UTF-8, is one bad record; a broken JSON array cannot be split into records
    and raises `DataError` at once.
    """
    from .captionsplits import split_refused  # (it builds on this module)

    with open_unpacked(path) as handle:  # (packed, every line would be a record that is not UTF-8)
        if handle.read(2) in UTF16_BOMS:  # Windows tools write UTF-16: read it as the UTF-8 it stands for
            handle.seek(0)
            try:
                handle = io.BytesIO(decode_text(handle.read(), path).encode("utf-8"))
            except TextFileError as err:
                raise DataError(err.source, "unreadable_file", err.detail) from None
        handle.seek(0)
        opening = opening_byte(handle)
        if not opening:
            return
        handle.seek(0)
        if opening == b"[":
            if split is not None:
                raise split_refused(path)
            try:
                records = json.loads(handle.read().decode("utf-8-sig"))
            except UnicodeDecodeError as err:
                raise DataError(str(path), "unreadable_file",
                                f"not UTF-8 text: byte {err.object[err.start]:#04x} at offset {err.start}") from None
            except (json.JSONDecodeError, RecursionError) as err:
                raise DataError(str(path), "unreadable_file", f"invalid JSON array: {_json_error(err)}") from None
            for index, record in enumerate(records):
                yield f"{path}:[{index}]", _constant(record)
            return
        document = _single_document(handle, path)
        if document is not None:
            yield from _document_records(document, path, media_folder, split)
            return
        if split is not None:
            raise split_refused(path)
        handle.seek(0)
        for number, line in enumerate(handle, start=1):
            if number == 1:
                line = line.removeprefix(_UTF8_BOM)
            if line.strip():
                yield f"{path}:{number}", _json_line_loader(line, f"{path}:{number}")


def opening_byte(handle: BinaryIO) -> bytes:
    """The first byte of a binary text file that is not blank, from the handle's start (a UTF-8 BOM skipped), or
    b"" for a blank file: what tells a JSON array ('[') from records ('{'), read in chunks, never a whole line."""
    head = handle.read(4096).removeprefix(_UTF8_BOM).lstrip()
    while not head:
        chunk = handle.read(4096)
        if not chunk:
            return b""
        head = chunk.lstrip()
    return head[:1]


# The readers' record fields: a JSON object with one of them as a key is a record, not records keyed by id.
RECORD_FIELDS = frozenset({"id", "question", "answer", "answers", "choices", "metric", "conversations", "messages",
                           "system", "tools", "image", "images", "audio", "audios", "video", "videos", "series",
                           "audio_filepath", "path", "wav", "text", "transcript", "sentence", "transcription",
                           "duration"})


def _single_document(handle: Any, path: Path) -> tuple[int, Any] | None:
    """(line, value) when the file is one JSON object rather than JSONL: a record pretty-printed
    over several lines, or a whole file written by `json.dump(dict)`; None for JSONL. The first
    record line decides: if it parses on its own and another record line follows, it is JSONL (a
    later broken line is one bad record). A first line that is a lone '{' is no JSONL record, so a
    document that does not parse is an error naming its position, not every line a bad record."""
    lines = ((number, line.removeprefix(_UTF8_BOM) if number == 1 else line)
             for number, line in enumerate(handle, start=1))
    first_number, first = next((n, line) for n, line in lines if line.strip())
    try:
        value = json.loads(first)
        whole_line = True
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        whole_line = False
    if whole_line:  # JSONL, unless no other record line follows: the whole document on one line (json.dump's
        # default, COCO's files), parsed already
        if any(line.strip() for _, line in lines):
            return None
        return (first_number, value) if isinstance(value, dict) else None
    if first.rstrip().endswith(b"}"):  # a broken JSONL record: the reader's to skip and count
        return None
    handle.seek(0)
    try:
        value = json.loads(handle.read().decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        if first.strip() == b"{":  # what json.dump(..., indent=N) writes: pretty-printed beyond doubt
            detail = (f"not UTF-8 text: byte {err.object[err.start]:#04x} at offset {err.start}"
                      if isinstance(err, UnicodeDecodeError) else _json_error(err))
            raise DataError(str(path), "unreadable_file", f"one JSON object over several lines (not JSONL, one "
                            f"record per line), and it does not parse: {detail}") from None
        return None
    return (first_number, value) if isinstance(value, dict) else None


def _document_records(document: tuple[int, Any], path: Path, media_folder: Path | None,
                      split: Sequence[str] | None = None) -> Iterator[tuple[str, Callable[[], Any]]]:
    """The records of a file that is one JSON object: COCO's captions layout (`coco.coco_records`: an image and
    its captions each, their files in `media_folder`, None: beside the file), Karpathy's split layout
    (`captionsplits.karpathy_records`: likewise, the images of `split`), pandas' `to_json()` table (default
    orient="columns": {column: {row: value}}), records keyed by id ({"0001": {...}, ...}, pandas'
    orient="index"), or one record. `split` for a document of no splits (not Karpathy's) is its error."""
    line, value = document
    from .captionsplits import is_karpathy_layout, karpathy_records, split_refused  # (they build on this module)
    from .coco import coco_records, is_coco_layout

    if is_karpathy_layout(value):
        yield from karpathy_records(value, path, media_folder, split)
        return
    if split is not None:
        raise split_refused(path)
    if is_coco_layout(value):
        yield from coco_records(value, path, media_folder)
        return
    if value and all(isinstance(v, dict) for v in value.values()):
        rows = [list(v) for v in value.values()]
        if all(r == rows[0] for r in rows) and rows[0] and all(k.isdigit() for k in rows[0]) and not all(
                k.isdigit() for k in value):  # {column: {"0": ..., "1": ...}}: pandas' default layout
            logger.info("%s: a pandas to_json() table (orient='columns'): %d records", path, len(rows[0]))
            for index, row in enumerate(rows[0]):
                yield f"{path}:[{index}]", _constant({column: cells[row] for column, cells in value.items()})
            return
        if not RECORD_FIELDS & set(value):
            for key, record in value.items():  # records keyed by their id
                yield f"{path}:[{json.dumps(key)}]", _constant(record if "id" in record else {"id": key, **record})
            return
    yield f"{path}:{line}", _constant(value)


_UTF8_BOM = b"\xef\xbb\xbf"


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


def _json_error(err: Exception) -> str:
    if isinstance(err, RecursionError):
        return "nested too deeply"
    message = str(err)
    if isinstance(err, json.JSONDecodeError):  # json's own words point past a trailing comma, at what follows it
        before = err.doc[: err.pos].rstrip()
        closing = err.doc[err.pos : err.pos + 1]
        if before.endswith(",") and closing in ("]", "}"):
            line = err.doc.count("\n", 0, len(before)) + 1
            message += f"; the comma at the end of line {line} comes before {closing!r}: JSON allows no trailing comma"
    return message


def _json_line_loader(line: bytes, source: str) -> Callable[[], Any]:
    def load() -> Any:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as err:
            raise DataError(source, "bad_json", f"not UTF-8 text: byte {err.object[err.start]:#04x} at "
                            f"position {err.start + 1} of the line") from None
        try:
            return json.loads(text)
        except (json.JSONDecodeError, RecursionError) as err:
            raise DataError(source, "bad_json", f"invalid JSON: {_json_error(err)}") from None

    return load


def require(record: Any, kind: type | tuple[type, ...], what: str, source: str) -> Any:
    """Type check with an error that names the field and what was found instead."""
    if not isinstance(record, kind):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise DataError(source, "wrong_type", f"{what} must be {names}, got {type(record).__name__}")
    return record


def turn_text(value: Any, field: str, source: str, *, answer: bool) -> str:
    """A turn's text. null and NaN are what pandas writes for an empty cell (`to_json` / `to_dict`):
    as text they would be "None" / "nan". An answer (an assistant turn) that is null, NaN or blank
    is an `empty_answer`, since "" would train the model to say nothing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        found = "null" if value is None else "NaN"
        if answer:
            raise DataError(source, "empty_answer", f"{field} is {found} (an empty cell in the table this was "
                            "exported from?): give the answer, or leave the record out")
        raise DataError(source, "wrong_type", f"{field} is {found}; it must be text")
    if not isinstance(value, str):
        raise DataError(source, "wrong_type", f"{field} must be text, got {type(value).__name__}")
    if answer and not value.strip():
        raise DataError(source, "empty_answer", f"{field} is empty ({value!r}): the model would learn to say "
                        "nothing; give the answer, or leave the record out")
    return value


def as_rows(value: Any) -> Any:
    """A list of dicts from HF `datasets`' columnar form of it: a `Sequence({...})` feature yields
    {"from": [...], "value": [...]} instead of [{"from", "value"}, ...]. Anything else is returned
    unchanged for the caller's type check."""
    if isinstance(value, dict) and value and all(isinstance(v, list) for v in value.values()):
        lengths = {len(v) for v in value.values()}
        if len(lengths) == 1:
            return [dict(zip(value, row, strict=True)) for row in zip(*value.values(), strict=True)]
    return value


FORMAT_NAMES = {"qa": "question-answer", "llava": "LLaVA", "openai": "OpenAI chat",
                "sharegpt": "LLaMA-Factory ShareGPT", "asr": "ASR manifest"}


def record_format(record: Any) -> str | None:
    """The record format a record's fields suggest: `modrwkv init`'s detection, and the hint a
    reader gives when handed another format's file. `messages` with content parts is OpenAI chat;
    text turns with top-level `images` / `videos` / `audios` lists, or a `system` / `tools` column,
    are LLaMA-Factory's ShareGPT; other `conversations` are LLaVA. The fields that
    hold something decide first: a Parquet row (or a pandas table's) has every column, null where the
    record has no such field, so a qa row of a file that also holds conversations has `conversations`
    null; the null fields count only when those alone tell nothing."""
    if not isinstance(record, dict):
        return None
    return _fields_format({k: v for k, v in record.items() if v is not None}) or _fields_format(record)


def _fields_format(record: dict[str, Any]) -> str | None:
    key = "conversations" if "conversations" in record else "messages" if "messages" in record else None
    if key is not None:
        turns = as_rows(record[key])
        contents = [t.get("value", t.get("content")) for t in turns if isinstance(t, dict)] \
            if isinstance(turns, list) else []
        if key == "messages" and any(isinstance(c, list) for c in contents):
            return "openai"
        columns = any(record.get(k) is not None for k in ("audios", "system", "tools"))
        # (markers in text alone say nothing: OpenAI text may hold them as characters)
        media = any(record.get(k) is not None for k in ("images", "videos"))
        if columns or (key == "messages" and media):
            return "sharegpt"
        return "llava" if key == "conversations" else "openai"
    if "question" in record:
        return "qa"
    if any(k in record for k in ("audio_filepath", "text", "transcript", "sentence", "transcription")):
        return "asr"
    return None


def format_hint(record: Any, reading: str) -> str:
    """"; it looks like ... data (format: x)" when the record suggests a format other than `reading`."""
    other = record_format(record)
    if other is None or other == reading:
        return ""
    return (f"; it looks like {FORMAT_NAMES[other]} data (format: {other}), but this reads "
            f"{FORMAT_NAMES[reading]} records (docs/custom-data.md)")


def lacks_fields(record: Any, reading: str, source: str, detail: str) -> DataError:
    """The error for a record without the fields `reading` needs: `other_format`, with the format its
    fields suggest, when they suggest another one (`format_hint`); else `missing_field`."""
    hint = format_hint(record, reading)
    return DataError(source, "other_format" if hint else "missing_field", detail + hint)


class MixedFormats(ValueError):
    """Files read together hold records of different formats (`common_format`): one line naming two of
    the files and their formats."""


def common_format(formats: Iterable[tuple[str | Path, str]]) -> str | None:
    """The one record format of files read together, each given as (file, its format) in their order;
    None for no file. Every reader reads its files as one format, and would skip every record of a file
    of another, so a file whose format is not the first file's is `MixedFormats` naming both files and
    both formats: the one message of `modrwkv init --data`, its `--val`, `modrwkv eval --task custom --data`
    and training's data.train / data.val (each caller adds its own context), given the formats their readers
    found (`ReadReport.check_one_format`)."""
    first: tuple[str | Path, str] | None = None
    for file, data_format in formats:
        if first is None:
            first = (file, data_format)
        elif data_format != first[1]:
            raise MixedFormats(f"{file} holds {data_format} records, but {first[0]} holds {first[1]} records: one "
                               "reader reads them all, and it would skip every record of the other format; give "
                               "files of one format")
    return None if first is None else first[1]


def accepted_format(candidates: Iterable[str], read: Callable[[str], tuple[int, _T]]) -> tuple[str, _T]:
    """The format files read together are read as, and what `read(format)` made of them: `read` gives (the
    records kept, what it made), or raises `MixedFormats` (its reader refused every record of a file as
    another format's, `ReadReport.check_one_format`) or `DataError`. Of `candidates` (the formats detected of
    the files, in their order): `sharegpt` when it is one of them, whose reader reads the `system`, `tools`
    and `audios` columns the LLaVA and OpenAI readers pass over, so that its error is the files' (a file its
    reader refuses beside a file detected as `sharegpt` is `MixedFormats`: read by another reader, that file's
    columns would be lost unsaid); else the one whose reading keeps the most records, of equal ones the first;
    when every reading fails, the first one's error. So files one reader reads all of (ShareGPT files with
    and without a `system` column, OpenAI chat with and without `tools`) are one data set, whatever their
    order: the one rule of `modrwkv init --data` and `modrwkv eval --task custom --data`."""
    formats = list(dict.fromkeys(candidates))
    if len(formats) == 1 or "sharegpt" in formats:  # nothing to choose
        data_format = formats[0] if len(formats) == 1 else "sharegpt"
        return data_format, read(data_format)[1]
    best: tuple[tuple[int, int], str, _T] | None = None
    failed: MixedFormats | DataError | None = None
    for index, data_format in enumerate(formats):
        try:
            kept, made = read(data_format)
        except (MixedFormats, DataError) as exc:
            failed = failed or exc
            continue
        rank = (kept, -index)
        if best is None or rank > best[0]:
            best = (rank, data_format, made)
    if best is None:
        assert failed is not None
        raise failed
    return best[1], best[2]


def one_format(path: Path, reading: str, records: Iterable[tuple[str, Callable[[], Any]]],
               convert: Callable[[Any, str], Any], chosen: str = "",
               formats: dict[str, str] | None = None) -> Iterator[tuple[str, Callable[[], Any]]]:
    """(source, build) per record of `path` (from `json_records`), `build()` converting the record with
    `convert(record, source)`. A record refused as another format's (its error ends with `format_hint`)
    that comes after a record that converted is reported as the file mixing formats: the error names the format the record looks
    like and the line from which the file's records are `reading` records (`chosen` says how that
    format was chosen, e.g. ", detected from the first record"). `formats` (a `ReadReport.formats`) gets
    the file's format as built: `reading` once a record converted, else, while every record built was
    refused as another format's, the first one's (a whole file of another format, which `common_format`
    then names); a file none of whose records converted but some of which were refused for another reason
    (a missing image) is no other format's, and is left out. A record that fails before it parses (a broken
    JSON line) takes no part: a truncated line in a file of another format leaves it that format's."""
    key = str(path)
    first: list[str] = []  # the source of the first record that converted
    otherwise: list[str] = []  # the source of the first record refused for a reason other than its format

    def refused_otherwise(source: str) -> None:
        if not first and not otherwise and formats is not None:
            formats.pop(key, None)
        otherwise.append(source)

    for source, load in records:
        def build(source: str = source, load: Callable[[], Any] = load) -> Any:
            # a record that fails before it parses (broken JSON) says nothing of the file's format: it takes no part
            record = load()
            try:
                converted = convert(record, source)
            except DataError as err:
                hint, other = format_hint(record, reading), record_format(record)
                if other is None or not hint or not err.detail.endswith(hint):  # not a record of another format
                    refused_otherwise(source)
                    raise
                if formats is not None and not first and not otherwise:
                    formats.setdefault(key, other)
                if not first:
                    raise
                where = first[0].removeprefix(f"{path}:")
                where = f"line {where}" if where.isdigit() else where if where.startswith("row ") else f"record {where}"
                raise DataError(source, err.reason, (
                    f"{err.detail.removesuffix(hint)}; the file mixes formats: it looks like {FORMAT_NAMES[other]} "
                    f"data (format: {other}), but the records before it, from {where} on, are "
                    f"{FORMAT_NAMES[reading]} records (format: {reading}{chosen}); write each format to a file of "
                    "its own (docs/custom-data.md)")) from None
            if not first:
                first.append(source)
            if formats is not None:
                formats[key] = reading
            return converted

        yield source, build


def first_key(record: dict[str, Any], keys: Sequence[str]) -> str | None:
    """The first of `keys` present with a non-None value (datasets spell the same field many ways)."""
    return next((k for k in keys if record.get(k) is not None), None)


def is_pil_image(value: Any) -> bool:
    """True for a PIL image, without importing Pillow (no PIL image can exist unless it is loaded)."""
    module = sys.modules.get("PIL.Image")
    return module is not None and isinstance(value, module.Image)


# A web address (https://..., s3://...): a scheme of two or more letters (one is a Windows drive) and "://".
WEB_ADDRESS = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+://")
# A path written on Windows from a drive's root: C:\data\0001.png, D:/images/a.jpg
_WINDOWS_DRIVE = re.compile(r"[A-Za-z]:[\\/]")


def resolve_local(path: str, folder: Path | None, source: str) -> str:
    """Absolute path of a media file relative to `folder`; a missing file is a bad record (checked
    here because a stat is cheap, whereas finding out in a dataloader worker hours later is not)."""
    if not path.strip():
        raise DataError(source, "missing_media", "empty media path \"\"")
    if WEB_ADDRESS.match(path):  # (as a path, its "//" would collapse into a file "not found")
        from .openai_chat import redact_url

        raise DataError(source, "remote_url", f"{redact_url(path)} is a web address, and media are read from local "
                        "files (nothing is downloaded): download it and give its local path")
    resolved = Path(path).expanduser()
    if not resolved.is_absolute() and folder is not None:
        resolved = folder / resolved
    if not resolved.exists() and "\\" in path and os.sep == "/":  # written on Windows: images\0007.png
        windows = Path(path.replace("\\", "/"))
        resolved = windows if windows.is_absolute() or folder is None else folder / windows
    if not resolved.is_file() and _WINDOWS_DRIVE.match(path) and os.sep == "/":  # (read as a relative path here)
        raise DataError(source, "missing_media", f"media file not found: {path} is an absolute Windows path (drive "
                        f"{path[:2]}), which names no file on this machine: write the media paths relative to a folder "
                        "(the data file's, or the one data.media_folder / --media-folder names)")
    if not resolved.is_file():
        raise DataError(source, "missing_media", f"{resolved} is a folder, not a media file" if resolved.is_dir()
                        else f"media file not found: {resolved}")
    return str(resolved)


def media_item(value: Any, modality: str, folder: Path | None, source: str) -> Any:
    """Normalises one media reference to a `Sample` item: a path string (resolved, must exist),
    bytes (or a Parquet file's `TableBytes`, read when the sample is built), a PIL image or array
    (images), a [T, H, W, 3] array (video), a (waveform, sample_rate) pair (audio). Also accepts what
    HF `datasets` yields: `{"bytes", "path"}` dicts (undecoded Image/Audio features) and
    `{"array", "sampling_rate"}` dicts (decoded Audio)."""
    if isinstance(value, str):
        return resolve_local(value, folder, source)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, EmbeddedBytes):  # read when the sample is built
        return value
    if isinstance(value, dict):
        if isinstance(value.get("bytes"), EmbeddedBytes):
            return value["bytes"]
        if value.get("bytes") is not None:
            return bytes(require(value["bytes"], (bytes, bytearray), f"{modality} 'bytes'", source))
        if modality == "audio" and value.get("array") is not None and value.get("sampling_rate") is not None:
            return np.asarray(value["array"], dtype=np.float32), int(value["sampling_rate"])
        if value.get("path") is not None:
            return resolve_local(require(value["path"], str, f"{modality} 'path'", source), folder, source)
        raise DataError(source, "wrong_type", f"{modality} dict needs 'bytes' or 'path' (keys: {sorted(value)})")
    if modality == "image" and (is_pil_image(value) or isinstance(value, np.ndarray)):
        return value
    if modality == "video" and isinstance(value, np.ndarray) and value.ndim == 4:
        return value
    if modality == "audio" and isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], int):
        return np.asarray(value[0], dtype=np.float32), value[1]
    raise DataError(source, "wrong_type", f"unsupported {modality} value of type {type(value).__name__}")


def check_media(item: Any, modality: str, source: str) -> None:
    """Decodes a path/bytes item fully (opt-in: it costs as much as training's own decoding).
    Remote URLs (kept only with allow_remote) are left alone: fetching is the caller's job."""
    if isinstance(item, str) and item.startswith(("http://", "https://")):
        return
    if isinstance(item, EmbeddedBytes):
        try:
            item = item.read()
        except ValueError as err:
            raise DataError(source, "unreadable_media", str(err)) from None
    if isinstance(item, (str, bytes)):
        try:
            {"image": _verify_image, "audio": _verify_audio, "video": _verify_video}[modality](item, source)
        except DataError as err:
            if not isinstance(item, NamedBytes) or item.name in err.detail:  # (too large: the decoder named it)
                raise
            raise DataError(source, err.reason, f"{item.name}: {err.detail}") from None


def _verify_image(item: str | bytes, source: str) -> None:
    from PIL import UnidentifiedImageError

    from ...encoders.media import decoder_message, describe, open_image

    try:
        with open_image(item if isinstance(item, str) else io.BytesIO(item), describe(item)) as image:
            image.load()
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:  # ImageTooLarge is a ValueError
        # a file is named (which of a record's images), unless the record is that file (a class folder's image)
        record_is_file = isinstance(item, str) and os.path.abspath(source) == os.path.abspath(item)
        named = f" {describe(item)}" if isinstance(item, str) and not record_is_file else ""
        raise DataError(source, "unreadable_media",
                        f"image{named} does not decode: {decoder_message(err, 'the image')}") from None


def _verify_audio(item: str | bytes, source: str) -> None:
    from ...encoders.media import MediaError, audio_seconds

    try:  # the header: libsndfile knows the format and counts the samples (a truncated file reads short)
        audio_seconds(item)
    except MediaError as err:
        raise DataError(source, "unreadable_media", f"audio does not decode: {err}") from None


def _verify_video(item: str | bytes, source: str) -> None:
    from ...encoders.media import MediaError, VideoSampling, load_video

    try:  # one frame: the container, the stream and the codec all work
        load_video(item, VideoSampling(num_frames=1))
    except MediaError as err:
        raise DataError(source, "unreadable_media", f"video does not decode: {err}") from None


class JsonRecordsReader(Reader):
    """A reader over JSON / JSONL files whose records convert one by one into samples, with media
    paths relative to `media_folder` (default: each data file's folder)."""

    format: ClassVar[str]  # the record format read: a key of FORMAT_NAMES
    caption_prompt: str | None = None  # what a tar's captioned sample is asked (None: the default); qa's `prompt`
    # the column a hub Parquet file's plain rows answer with (None: their ClassLabel or label); qa's `label_column`
    label_column: str | None = None
    # the columns records' fields are read from ({field: column}, `file_records`); qa's `columns`
    field_columns: Mapping[str, str] | None = None
    # the splits of a Karpathy split file or a Flickr token file read (`captionsplits`; None: none); qa's `split`
    splits: tuple[str, ...] | None = None
    # each column's values of the rows read (`row_filter`; None: every row); qa's `where`
    where: dict[str, frozenset[str]] | None = None

    def __init__(
        self,
        paths: PathLike | Sequence[PathLike],
        media_folder: PathLike | None,
        *,
        on_error: OnError,
        max_examples: int,
        log_limit: int,
    ) -> None:
        self.paths = as_paths(paths)
        self.media_folder = Path(media_folder) if media_folder is not None else None
        super().__init__(on_error=on_error, max_examples=max_examples, log_limit=log_limit)

    @property
    def name(self) -> str:
        return data_label(self.paths)

    def _candidates(self) -> Iterator[Callable[[], Sample]]:
        for path in self.paths:
            warn_media_folder_unused(path, self.media_folder)
            folder = self.media_folder if self.media_folder is not None else path.parent
            records = self._file_records(path)
            for _, build in one_format(path, self.format, records,
                                       lambda record, source, folder=folder: self._convert(record, source, folder),
                                       formats=self.report.formats):
                yield build

    def count_records(self) -> int:
        """`Reader.count_records`, with a table file's rows counted from its footer (an Arrow file's from its record
        batches' headers): reading them would read every embedded image of a hub split (tens of GB) to count them
        (a tar's samples are counted from its headers)."""
        count = 0
        for path in self.paths:
            if is_table_file(path) and not self.where:  # (the rows `where` keeps are counted by reading them)
                with open_table_file(path) as handle:
                    count += handle.num_rows
            else:
                count += sum(1 for _ in self._file_records(path))
        return count

    def _file_records(self, path: Path) -> Iterator[tuple[str, Callable[[], Any]]]:
        """`file_records` of `path` with the reader's options (a table of media rows needs its label column even
        to be counted)."""
        return file_records(path, caption_prompt=self.caption_prompt, label_column=self.label_column,
                            columns=self.field_columns, media_folder=self.media_folder, split=self.splits,
                            where=self.where)

    @abc.abstractmethod
    def _convert(self, record: Any, source: str, folder: Path) -> Sample:
        """One record -> a Sample; raises DataError for a bad record."""


def data_name(data: str | Path) -> str:
    """A name for runs and configs: the file's name, or its folder's for a generic one
    (data/digits/train.jsonl and data/digits/test.jsonl -> digits), without a wildcard or a hub shard's
    numbering (data/digits/train-*.parquet and data/digits/train-00000-of-00002.parquet -> digits); a shard
    named by its number alone, as img2dataset names them, is named by its folder (cc3m/00000.tar -> cc3m); a
    Hugging Face metadata file as its folder (data/shapes/train/metadata.jsonl -> shapes); a compressed file as the
    file it holds (sales.csv.gz -> sales); a generic file in a split's folder as the folder above (GluonTS'
    m4_hourly/test/data.json.gz -> m4_hourly); a folder as its whole name (LJSpeech-1.1)."""
    path = Path(data)
    if is_metadata_file(path):
        return data_name(path.absolute().parent)  # (metadata.jsonl given from its own folder: that folder's name)
    pattern = not path.exists()  # a file's name may hold brackets
    # (a folder's name is its own: LJSpeech-1.1, not LJSpeech-1)
    name = path.name if path.is_dir() else Path(unpacked_name(path.name)).stem
    stem = re.sub(r"-\d+-of-\d+$", "", re.split(r"[*?\[]", name)[0] if pattern else name).rstrip("-_. ")
    if not (stem.lower() in _SPLIT_NAMES + ("", "data", "dataset", "all") or stem.isdigit()):
        return stem
    folder = path.resolve().parent
    if folder.name.lower() in _SPLIT_NAMES and folder.parent.name:  # (m4_hourly/test/data.json: m4_hourly)
        folder = folder.parent
    return folder.name if folder.name and not glob.has_magic(folder.name) else stem or "data"


_SPLIT_NAMES = ("train", "training", "test", "val", "valid", "validation", "dev", "eval")  # generic for data_name
