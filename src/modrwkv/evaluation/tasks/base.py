"""What every benchmark task shares: the sample it yields, the interface the runner drives, and
the file helpers that turn a missing or malformed benchmark file into one clear error.

A task reads a benchmark's standard released files from a local folder into `EvalSample`s (prompt
text with media markers, the media items, and the reference the metric needs), scores one
prediction for the per-sample line of `predictions.jsonl`, and computes the benchmark's metrics
from those lines, so that the summary is always a function of the predictions file alone.
"""

from __future__ import annotations

import abc
import dataclasses
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...data.readers.asr import asr_user_turn
from ...data.readers.base import HUB_SHARD
from ...data.readers.qa import OPTION_LETTERS
from ...data.sample import MediaLayout, escape_markers, place_media, unmarked_markers
from ...textfiles import TextFileError, read_text

if TYPE_CHECKING:
    from ...inference import ModRWKVPipeline
    from ..runner import ModelSpec
    from ...processing.speech_segments import SegmentSettings

# The suffix LLaVA-1.5's evaluation appends to short-answer questions (VQAv2, GQA, TextVQA, POPE).
SHORT_ANSWER_PROMPT = "Answer the question using a single word or phrase."
# ... and to multiple-choice questions (ScienceQA, MMBench, MMMU).
CHOICE_PROMPT = "Answer with the option's letter from the given choices directly."


class BenchmarkFileError(ValueError):
    """A benchmark file that is missing or not what the benchmark releases; the message names the
    file and what was expected, so the user knows what to download or where to put it."""


@dataclasses.dataclass
class EvalSample:
    """One question of a benchmark.

    `prompt` is the user message (with `<image>` / `<audio>` / `<series>` / `<video>` markers where the media
    go); `context` the turns before it ({"role", "content"}: a system prompt, earlier user and assistant
    turns, whose markers take the first media items), empty for a one-question sample; `reference` holds everything scoring needs (answers, label, options, category, ...) and is
    written to `predictions.jsonl`, so it must be JSON-serialisable. Media items stay unread
    (paths, bytes, data URIs, arrays) until the batch that needs them. `transcribe` marks a sample
    that asks for a transcript the way the model was trained to give one: when the model is loaded,
    its prompt becomes `Task.transcription_prompt` of the model's recorded ASR prompt (until then it
    shows the default one). `unplaced` is the user turn's text (markers escaped) of a question that
    gives its images no place (`image_question`): when the model is loaded, its prompt becomes that
    text with the images where the model's `media_layout` puts them (`laid_out`); until then, and in
    a run's identity, it shows the default layout's, LLaVA's image first.
    """

    id: str
    prompt: str
    reference: dict[str, Any]
    images: list[Any] = dataclasses.field(default_factory=list)
    audio: list[Any] = dataclasses.field(default_factory=list)
    series: list[Any] = dataclasses.field(default_factory=list)
    videos: list[Any] = dataclasses.field(default_factory=list)
    context: list[dict[str, str]] = dataclasses.field(default_factory=list)
    transcribe: bool = False
    unplaced: str | None = None

    def laid_out(self, layout: MediaLayout) -> EvalSample:
        """This sample as a model whose `media_layout` is `layout` is asked it: the images of an
        `unplaced` text placed by the prompt builder (`build_sample`), as `modrwkv chat --image`, the
        server and the harness adapters place them; any other sample as it is."""
        if self.unplaced is None:
            return self
        from ...inference.prompt import build_sample

        placed = build_sample([*self.context, {"role": "user", "content": self.unplaced}], images=list(self.images),
                              media_layout=layout)
        return dataclasses.replace(self, prompt=placed.messages[-1].content)

    def conversation(self) -> str | list[dict[str, str]]:
        """What the model is asked: the prompt alone, or the context followed by it as the last user turn."""
        return [*self.context, {"role": "user", "content": self.prompt}] if self.context else self.prompt

    def media_paths(self) -> Iterator[Path]:
        """The media items that are local files (checked before a run starts)."""
        for item in (*self.images, *self.audio, *self.videos):
            if isinstance(item, Path):
                yield item


@dataclasses.dataclass(frozen=True)
class PaperResult:
    """A published number for the Markdown report (spec section 3)."""

    model: str
    value: float


class Task(abc.ABC):
    """One benchmark: how to read it, prompt it, score it and summarise it."""

    name: str
    title: str  # as the paper's table names it
    splits: tuple[str, ...]
    default_split: str
    max_new_tokens: int
    headline: str  # the metrics key the paper reports (and the report table shows)
    headline_label: str  # what that number is, e.g. "accuracy (%)"
    layout: str  # the expected folder layout, shown in errors and docs
    paper_note: str = ""  # how the published numbers relate to this split, for the report
    settings: tuple[str, ...] = ()  # the options `configure` takes (e.g. a forecast's lookback)
    # An ASR prompt given for the run (--asr-prompt): transcripts are asked with it instead of the
    # model's own ("": the audio alone). None: the model's (`transcription_prompt`).
    asr_prompt: str | None = None
    # Long-form transcription (--long-form): each `transcribe` sample's audio is cut at its pauses into
    # segments, each asked from a fresh state, the texts joined (`ModRWKVPipeline.transcribe_batch`).
    # None: each recording is asked whole.
    long_form: SegmentSettings | None = None

    def paper_results(self, split: str) -> list[PaperResult]:
        """Published numbers for this benchmark and split (none by default)."""
        return []

    @property
    def options(self) -> dict[str, Any]:
        """Settings that change the samples or their scoring (e.g. a forecast's lookback); they
        belong to a run's identity. By default only a given `asr_prompt`: a run asked with the model's
        own prompt resumes as before, and one asked with another text is another run; likewise a
        `long_form` setting."""
        options: dict[str, Any] = {} if self.asr_prompt is None else {"asr_prompt": self.asr_prompt}
        if self.long_form is not None:
            options["long_form"] = dataclasses.asdict(self.long_form)
        return options

    def adopt_model_settings(self, model: ModelSpec) -> None:
        """Takes, before the samples are loaded, what the model's folder records that decides how they are
        asked (`run_eval` calls it; the custom task: the caption question of WebDataset shards, so that it is
        in the samples' prompts and the run's identity). Nothing by default."""

    def computed_baselines(self, samples: Sequence[EvalSample]) -> dict[str, dict[str, float]]:
        """Simple methods' metrics on exactly `samples` (name -> {metric: value}, the headline among them),
        from the data alone (a forecast's look-back and target): what the model's number is to be read
        against. `run_eval` puts them in the summary (`metrics.baselines`) and beside the model's number in the
        report. None by default."""
        return {}

    def check_pipeline(self, pipeline: ModRWKVPipeline) -> None:
        """Raises ValueError, before anything is generated, for a model this task's settings do not
        fit (e.g. a forecaster trained on another look-back). Nothing by default."""

    def configure(self, **options: Any) -> Task:
        """A copy with other `settings` (the rest as `_init_args` gives them); a task without any
        takes none."""
        unknown = set(options) - set(self.settings)
        if unknown:
            takes = f"; it takes {list(self.settings)}" if self.settings else ""
            raise ValueError(f"{self.name} has no option(s) {sorted(unknown)}{takes}")
        return type(self)(**{**self._init_args(), **options})

    def _init_args(self) -> dict[str, Any]:
        """The constructor's arguments that make this task again: its `settings`, by default."""
        return {name: getattr(self, name) for name in self.settings}

    def transcription_prompt(self, model_asr_prompt: str | None) -> str:
        """The user turn a `transcribe` sample is asked with: the audio, then the run's `asr_prompt`
        when one is given ("": the audio alone), else the ASR prompt the model was trained with (its
        config's `asr_prompt`, the default for a folder saved before it was recorded, which
        `run_eval` warns about; None: the audio alone). The one place this precedence is decided."""
        if self.asr_prompt is not None:
            return asr_user_turn(self.asr_prompt or None)
        return asr_user_turn(model_asr_prompt)

    def generate(self, pipeline: ModRWKVPipeline, samples: Sequence[EvalSample], max_new_tokens: int) -> list[dict[str, Any]]:
        """The model's answers to a batch of samples, decoded greedily together: per sample the
        record fields "prediction" (the reply's text), "finish_reason" and any task-specific ones,
        "prompt" among them when the model's own settings chose what it was asked (forecasts)."""
        from ...inference import ChatRequest

        if self.long_form is not None and any(s.transcribe for s in samples):
            return self._generate_long_form(pipeline, samples, max_new_tokens)
        sampling = {"temperature": 0.0, "max_new_tokens": max_new_tokens}
        requests = [ChatRequest(s.conversation(), images=list(s.images), audio=list(s.audio), series=list(s.series),
                                videos=list(s.videos), sampling=sampling) for s in samples]
        return [{"prediction": r.text.strip(), "finish_reason": r.finish_reason} for r in pipeline.generate_batch(requests)]

    def _generate_long_form(self, pipeline: ModRWKVPipeline, samples: Sequence[EvalSample],
                            max_new_tokens: int) -> list[dict[str, Any]]:
        """Transcripts of `transcribe` samples (each one recording, asked with its prompt) cut into
        segments by `long_form`; "segments" records each segment's [start, end] in seconds."""
        if not all(s.transcribe and len(s.audio) == 1 and not s.context for s in samples):
            raise ValueError("long-form transcription applies to samples that each ask for the transcript of one "
                             "recording")
        prompts = {s.prompt for s in samples}
        if len(prompts) > 1:
            raise ValueError(f"long-form transcription asks every sample of a batch the same way; got {sorted(prompts)}")
        results = pipeline.transcribe_batch([s.audio[0] for s in samples], long_form=self.long_form,
                                            user_turn=prompts.pop(), max_new_tokens=max_new_tokens)
        return [{"prediction": r.text, "finish_reason": r.finish_reason,
                 "segments": [[s.start, s.end] for s in r.segments]} for r in results]

    @abc.abstractmethod
    def load(self, data: Path, split: str) -> list[EvalSample]:
        """All samples of `split`, in the benchmark's own order (the order `--limit` cuts)."""

    @abc.abstractmethod
    def score(self, record: dict[str, Any]) -> dict[str, Any]:
        """The per-sample score written beside the prediction (e.g. {"accuracy": 0.6}), from a
        record with "id", "prediction" and "reference"; {} where the split has no answers."""

    @abc.abstractmethod
    def summarize(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The benchmark's metrics from `predictions.jsonl` records ({"id", "prediction",
        "reference"}), or {} when the split has no public answers (server-scored)."""

    def check_split(self, split: str | None) -> str:
        split = split or self.default_split
        if split not in self.splits:
            raise ValueError(f"{self.name}: unknown split {split!r}; choose from {', '.join(self.splits)}")
        return split


# ------------------------------------------------------------------------------ file helpers


def expect_dir(path: Path, what: str, layout: str) -> Path:
    if not path.is_dir():
        raise BenchmarkFileError(f"{path}: expected a folder with {what}. Expected layout:\n{layout}")
    return path


def expect_file(folder: Path, names: Sequence[str], what: str, layout: str) -> Path:
    """The first of `names` that exists in `folder`, or an error listing them all."""
    for name in names:
        if (folder / name).is_file():
            return folder / name
    wanted = " or ".join(repr(n) for n in names)
    raise BenchmarkFileError(f"{folder}: no {wanted} ({what}). Expected layout:\n{layout}")


def read_benchmark_text(path: Path) -> str:
    try:
        return read_text(path)
    except (OSError, TextFileError) as exc:
        raise BenchmarkFileError(str(exc) if isinstance(exc, TextFileError) else f"{path}: cannot read ({exc})"
                                 ) from None


def read_json(path: Path) -> Any:
    try:
        return json.loads(read_benchmark_text(path))
    except json.JSONDecodeError as exc:
        raise BenchmarkFileError(f"{path}: not valid JSON ({exc})") from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(read_benchmark_text(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BenchmarkFileError(f"{path}:{number}: not a JSON line ({exc})") from None
        if not isinstance(record, dict):
            raise BenchmarkFileError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        records.append(record)
    return records


def field(record: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """`record[key]`, which must exist and be of `kind`; the error names the file and entry."""
    if not isinstance(record, dict):
        raise BenchmarkFileError(f"{where}: expected an object, got {type(record).__name__}")
    if key not in record:
        raise BenchmarkFileError(f"{where}: missing field {key!r} (fields: {sorted(record)})")
    value = record[key]
    allowed = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
        names = " or ".join(k.__name__ for k in allowed)
        raise BenchmarkFileError(f"{where}: field {key!r} must be {names}, got {type(value).__name__}")
    return value


# ------------------------------------------------------------------------------ Hugging Face hub copies



def hub_shards(data: Path, folders: Sequence[str], split: str, layout: str,
               refusal: str | None = None) -> list[Path] | None:
    """The Parquet shards of `split` in a Hugging Face hub copy of a benchmark (lmms-eval's copies), or
    None when `data` holds no Parquet shards at all (it is the official layout, read as such).

    `data` is the repository's folder (`huggingface-cli download REPO --repo-type dataset --local-dir D`,
    or the cache's `snapshots/<revision>` folder), whose shards are in the first of `folders` that has
    any (the config's folder: `data/` for a default config, `ScienceQA-IMG/`, `en/`); that folder
    itself; the cache's `datasets--ORG--NAME` folder, when it holds one snapshot; or one shard, which
    stands for every shard of its split beside it. Every shard of the split must be there: a partial
    download is an error naming the missing ones, not a benchmark scored on some of its questions.
    `refusal`: the split asked for is not read from a hub copy, and this says why (an error when `data` is one,
    before its shards are looked for: the split's absence would be the less useful message)."""
    if data.is_file():
        if data.suffix != ".parquet":
            return None
        match = HUB_SHARD.match(data.name)
        if match is None:
            raise BenchmarkFileError(f"{data}: not named as a Hugging Face split's shard "
                                     f"(<split>-00000-of-00001.parquet). Expected layout:\n{layout}")
        if refusal is not None:
            raise BenchmarkFileError(f"{data}: {refusal}. Expected layout:\n{layout}")
        if match["split"] != split:
            raise BenchmarkFileError(f"{data}: a shard of split {match['split']!r}; this evaluation reads split "
                                     f"{split!r}. Expected layout:\n{layout}")
        return _complete_shards(data.parent, split, layout)
    if (data / "snapshots").is_dir():  # the hub cache's folder of one repository
        revisions = sorted(path for path in (data / "snapshots").iterdir() if path.is_dir())
        if len(revisions) != 1:
            raise BenchmarkFileError(f"{data / 'snapshots'}: {len(revisions)} snapshots; give the one to read "
                                     f"(--data {data / 'snapshots'}/<revision>)")
        data = revisions[0]
    for folder in (*(data / name for name in folders), data):
        if any(HUB_SHARD.match(path.name) for path in folder.glob("*.parquet")):
            if refusal is not None:
                raise BenchmarkFileError(f"{data}: {refusal}. Expected layout:\n{layout}")
            return _complete_shards(folder, split, layout)
    return None


def _complete_shards(folder: Path, split: str, layout: str) -> list[Path]:
    """Every shard of `split` in `folder`, in order; an error naming those missing."""
    shards = {}
    for path in folder.glob("*.parquet"):
        match = HUB_SHARD.match(path.name)
        if match is not None and match["split"] == split:
            shards[(int(match["index"]), int(match["count"]))] = path
    if not shards:
        present = sorted({m["split"] for m in map(HUB_SHARD.match, (p.name for p in folder.glob("*.parquet"))) if m})
        raise BenchmarkFileError(f"{folder}: no {split}-*.parquet shards (it has split(s) {', '.join(present)}). "
                                 f"Expected layout:\n{layout}")
    counts = {count for _, count in shards}
    if len(counts) > 1:
        raise BenchmarkFileError(f"{folder}: {split} shards of {len(counts)} different uploads "
                                 f"(-of-{', -of-'.join(f'{c:05d}' for c in sorted(counts))}); keep one")
    count = counts.pop()
    missing = [f"{split}-{k:05d}-of-{count:05d}.parquet" for k in range(count) if (k, count) not in shards]
    if missing:
        raise BenchmarkFileError(f"{folder}: missing shard(s) {', '.join(missing)} of split {split!r} "
                                 "(an interrupted download? run it again)")
    return [shards[key] for key in sorted(shards)]


def parquet_rows(path: Path, columns: Sequence[str], layout: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """("path:row N", row) for each row of a Parquet file that has `columns`, as the training readers read
    it (`table_records`: an `Image()` cell's bytes stay in the file, read when the image is decoded, so
    a benchmark's thousands of images are not held in memory); a file without them is refused naming
    what is missing."""
    from ...data.readers.base import DataError, open_table_file, table_records
    from ...extras import require

    require("pyarrow.parquet", "eval", "reading a benchmark's Parquet files")  # (the readers name [train])
    try:
        with open_table_file(path) as handle:
            names = handle.schema_arrow.names
        missing = [column for column in columns if column not in names]
        if missing:
            raise BenchmarkFileError(f"{path}: missing column(s) {missing} (it has {names}). Expected layout:\n{layout}")
        for where, load in table_records(path):
            yield where, load()
    except DataError as exc:
        raise BenchmarkFileError(str(exc)) from None


def hub_image(row: dict[str, Any], where: str) -> Any:
    """The bytes (or their place in the file) of a row's `datasets` `Image()` cell, {"bytes", "path"}."""
    image = row.get("image")
    if not isinstance(image, dict) or image.get("bytes") is None:
        raise BenchmarkFileError(f"{where}: column 'image' holds no image bytes")
    return image["bytes"]


def image_prompt(text: str) -> str:
    """The user turn of `text` (as its characters: a benchmark's image comes apart from its
    question) and one image in LLaVA's layout, the default `media_layout`: the image first."""
    return place_media(escape_markers(text), unmarked_markers({"image": 1}), "media_text")


def image_question(sample_id: str, text: str, reference: dict[str, Any], image: Any) -> EvalSample:
    """A benchmark question about one image whose text gives the image no place: the model is asked
    it with the image where its `media_layout` puts it (`EvalSample.laid_out`), as lmms-eval's
    adapter and `modrwkv chat --image` ask it, so a question-first model is not asked image first;
    until then it shows LLaVA's layout (`image_prompt`), what a run's data fingerprint hashes."""
    return EvalSample(sample_id, image_prompt(text), reference, images=[image], unplaced=escape_markers(text))


def short_answer(question: str) -> str:
    """LLaVA-1.5's short-answer text: the question, then the suffix asking for a word or phrase."""
    return f"{question}\n{SHORT_ANSWER_PROMPT}"


def choice_prompt(question: str, options: Sequence[str], context: str = "") -> str:
    """LLaVA-1.5's multiple-choice text (ScienceQA, MMBench): the context line if any, the question,
    the options as "A. first" lines, then the instruction to answer with the letter."""
    lead = f"{context}\n" if context else ""
    listed = "\n".join(f"{OPTION_LETTERS[i]}. {option}" for i, option in enumerate(options))
    return f"{lead}{question}\n{listed}\n{CHOICE_PROMPT}"


def percent_mean(values: Sequence[float]) -> float:
    return 100.0 * sum(values) / len(values) if values else 0.0
