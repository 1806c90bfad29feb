"""`modrwkv eval`'s engine: batched greedy generation over a benchmark, written as it goes, resumable,
shardable, and summarised from the predictions file alone.

Output folder:
    run.json            what the predictions belong to (task, split, data and model fingerprints);
                        a rerun with anything else there is refused
    predictions.jsonl   one line per sample: id, context (the turns before the prompt, if any), prompt,
                        prediction, reference, score
    summary.json        metrics, counts, model, task, data, limit, time
    report.md           our numbers beside the paper's
    shards/             with --num-shards: one predictions log per shard

A progress bar (tqdm, on stderr) shows samples done, speed and time left; `progress=False` hides it.
Lines are appended and flushed per completed batch, so an interrupted run loses at most one batch;
a rerun reads what is there (a truncated last line from a kill is dropped and redone) and
generates only the rest. Greedy decoding of a batch gives the same text as one sample at a time,
so batch size, interruptions and shards never change a prediction; when every selected sample has
one, `predictions.jsonl` is rewritten in benchmark order and the summary computed from it.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..busy_cores import BusyCoreWatch
from ..data.readers.base import data_label
from ..data.sample import MediaLayout, unescape_markers
from ..lm.files import check_output_folder
from ..textfiles import append_text_durably, write_text_atomically
from .report import format_report
from .tasks import EvalSample, PaperResult, Task

if TYPE_CHECKING:
    from ..inference import ModRWKVPipeline

log = logging.getLogger(__name__)

FORMAT = "modrwkv-eval/1"
RUN_FILE, PREDICTIONS_FILE, SUMMARY_FILE, REPORT_FILE, SHARDS_DIR = (
    "run.json", "predictions.jsonl", "summary.json", "report.md", "shards")
_SAMPLED_BYTES = 1 << 20  # bytes read from each end of a weight file for the model fingerprint


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """How the model is loaded: what makes two runs' predictions comparable (weights, encoder,
    template, precision). The device is left out: a run may be resumed on another machine."""

    path: str
    encoder: str | None = None
    encoder_source: str | None = None
    template: str | None = None
    dtype: str = "fp32"
    prompt_format: str = "auto"  # of a released checkpoint
    initial_state: str | None = None  # a state file replacing the model's initial state

    def identity(self) -> dict[str, Any]:
        identity = {"fingerprint": model_fingerprint(Path(self.path)), "encoder": self.encoder,
                    "encoder_source": self.encoder_source, "template": self.template, "dtype": self.dtype}
        if self.prompt_format != "auto":  # absent otherwise, so that earlier runs still resume
            identity["prompt_format"] = self.prompt_format
        if self.initial_state is not None:  # likewise
            identity["initial_state"] = model_fingerprint(Path(self.initial_state))
        return identity

    def media_layout(self) -> MediaLayout:
        """Where the model puts media a text gives no place: its folder's `media_layout`, "media_text" for
        a released checkpoint or a folder that records none."""
        from ..multimodal.model import is_modrwkv_folder, read_config

        path = Path(self.path)
        return read_config(path).get("media_layout", "media_text") if is_modrwkv_folder(path) else "media_text"


@dataclasses.dataclass
class EvalResult:
    """What a call of `run_eval` did; `summary` is None while other shards are still missing."""

    output: Path
    total: int  # samples selected (after --limit)
    done: int  # of those, with a prediction (from any shard)
    generated: int  # predictions made by this call
    summary: dict[str, Any] | None


def model_fingerprint(path: Path) -> str:
    """A content fingerprint of a checkpoint file or folder, cheap for multi-GB weights: every
    file's relative name, size, and its first and last MiB. Paths themselves are left out, so a run
    copied to another machine still resumes."""
    if not path.exists():
        raise ValueError(f"no such model file or folder: {path}")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        size = file.stat().st_size
        digest.update(f"{file.relative_to(path) if path.is_dir() else file.name}:{size}".encode())
        with file.open("rb") as handle:
            digest.update(handle.read(_SAMPLED_BYTES))
            if size > 2 * _SAMPLED_BYTES:
                handle.seek(size - _SAMPLED_BYTES)
                digest.update(handle.read())
    return digest.hexdigest()


def data_fingerprint(samples: Sequence[EvalSample]) -> str:
    """Hashes every sample's id, prompt, context and reference (arrays by their bytes), not media paths:
    the same benchmark in another folder or on another machine is the same data."""
    digest = hashlib.sha256()

    def feed(value: Any) -> None:
        if isinstance(value, np.ndarray):
            digest.update(f"array{value.shape}{value.dtype}".encode())
            digest.update(np.ascontiguousarray(value).tobytes())
        elif isinstance(value, Mapping):
            for key in sorted(value):
                digest.update(f"\x00{key}\x01".encode())
                feed(value[key])
        elif isinstance(value, (list, tuple)):
            digest.update(f"\x02{len(value)}".encode())
            for item in value:
                feed(item)
        else:
            digest.update(json.dumps(value).encode())

    for sample in samples:  # the context only when there is one: earlier runs of one-question files still resume
        feed([sample.id, sample.prompt, sample.reference, *([sample.context] if sample.context else [])])
    return digest.hexdigest()


def _to_json(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def dumps(record: Mapping[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, default=_to_json)


def read_predictions(path: Path, repair: bool = False) -> dict[str, dict[str, Any]]:
    """The records of a predictions log by id. A last line without its newline is what a kill
    mid-write leaves: it is dropped (and with `repair`, cut from the file so appending continues
    cleanly). Any other malformed line is an error naming the file and line."""
    if not path.exists():
        return {}
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    complete, tail = lines[:-1], lines[-1]  # tail is b"" when the file ends with a newline
    records: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(complete, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: corrupt predictions line ({exc}); remove the line to redo it") from None
        if not isinstance(record, dict) or "id" not in record or "prediction" not in record:
            raise ValueError(f"{path}:{number}: not a predictions record (needs 'id' and 'prediction')")
        records[str(record["id"])] = record
    if tail.strip():
        log.warning("%s: dropping an incomplete last line (an interrupted write); it will be redone", path)
        if repair:
            with path.open("r+b") as handle:
                handle.truncate(len(raw) - len(tail))
    return records


def _chunks(items: Sequence[EvalSample], size: int) -> Iterator[Sequence[EvalSample]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _read_done(output: Path, known: set[str], log_path: Path, *, repair: bool) -> dict[str, dict[str, Any]]:
    """The predictions of the samples in `known` in the output folder: the merged file and every shard's
    log; `repair` cuts a half-written last line off this process's own log (`log_path`)."""
    done: dict[str, dict[str, Any]] = {}
    for path in [output / PREDICTIONS_FILE, *sorted((output / SHARDS_DIR).glob("*.jsonl"))]:
        for key, record in read_predictions(path, repair=repair and path == log_path).items():
            if key in known:
                done[key] = record
    return done


def _check_identity(output: Path, identity: dict[str, Any]) -> None:
    """Records the run's identity in a new output folder; refuses a folder whose predictions another run
    (model, data, task, settings) made. A folder without predictions (a run that failed before its first
    answer: a model without the task's encoder, a missing media file) takes the new run's identity."""
    path = output / RUN_FILE
    if not path.exists() or not _holds_predictions(output):
        write_text_atomically(path, json.dumps(identity, indent=2) + "\n")
        return
    try:
        existing = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, OSError) as exc:
        raise ValueError(f"{path}: unreadable ({exc}); remove {output} or choose another --output") from None
    # both ways: a setting given before and not now (task_options of an --asr-prompt run) differs too
    differing = [key for key in dict.fromkeys([*identity, *existing]) if existing.get(key) != identity.get(key)]
    if differing:
        shown = {"task", "split", "max_new_tokens", "format", "task_options", "media_layout"}
        described = ", ".join(f"{key} ({existing.get(key)!r} there, {identity.get(key)!r} now)" if key in shown
                              else {"data": "benchmark data", "model": "model (weights or loading options)"}[key]
                              for key in differing)
        raise ValueError(f"{output} holds predictions of a different run: {described}; choose another --output, "
                         "or remove the folder to start over")


def _holds_predictions(output: Path) -> bool:
    """Whether a predictions log in `output` holds a complete line: a torn last line alone (a kill during
    the first write) is no prediction, and `read_predictions` drops it."""
    for path in [output / PREDICTIONS_FILE, *(output / SHARDS_DIR).glob("*.jsonl")]:
        if path.is_file():
            with path.open("rb") as handle:
                if any(b"\n" in chunk for chunk in iter(lambda: handle.read(1 << 16), b"")):
                    return True
    return False


def missing_media(samples: Sequence[EvalSample], limit: int = 5) -> list[Path]:
    missing = []
    for sample in samples:
        for path in sample.media_paths():
            if not path.is_file():
                missing.append(path)
                if len(missing) >= limit:
                    return missing
    return missing


def check_sample_ids(samples: Sequence[EvalSample], label: str, task: str, split: str) -> None:
    """A ValueError naming the first id given to several samples: predictions are kept, resumed and scored by
    id (validation during training refuses the val files with it too, as this command does)."""
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        repeated, count = next((i, n) for i, n in collections.Counter(ids).items() if n > 1)  # in first-seen order
        raise ValueError(f"{label}: duplicate sample ids in the {task} {split} split (the first: {repeated!r}, "
                         f"given to {count} samples)")


def run_eval(
    task: Task,
    data: str | Path | Sequence[str | Path],
    output: str | Path,
    *,
    model: ModelSpec,
    load_pipeline: Callable[[], ModRWKVPipeline],
    split: str | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    max_new_tokens: int | None = None,
    num_shards: int = 1,
    shard_index: int = 0,
    merge_only: bool = False,
    progress: bool = True,
) -> EvalResult:
    """Evaluates a model on one benchmark (see the module docstring for the output folder).

    `load_pipeline` is called only if something is left to generate, so a finished run re-scores
    (or merges, or exports) without loading the model. With `num_shards` > 1 this process takes
    every `num_shards`-th selected sample starting at `shard_index`; the process that completes the
    set (or a later call with `merge_only`) writes the merged predictions and the summary.
    """
    data = Path(data) if isinstance(data, (str, Path)) else [Path(d) for d in data]  # several: --task custom's files
    output = Path(output)
    label = data_label(data)
    split = task.check_split(split)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if max_new_tokens is not None and max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    check_output_folder(output)
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index must lie in [0, {num_shards}), got {shard_index}")
    task.adopt_model_settings(model)  # before loading: what the model records may decide how samples are asked
    samples = task.load(data, split)
    max_new_tokens = max_new_tokens or task.max_new_tokens  # after loading: a custom task sizes it from the answers
    if not samples:
        raise ValueError(f"{label}: the {task.name} {split} split has no samples")
    check_sample_ids(samples, label, task.name, split)
    ids = [s.id for s in samples]
    selected = samples[:limit] if limit else samples
    identity = {"format": FORMAT, "task": task.name, "split": split, "max_new_tokens": max_new_tokens,
                "data": data_fingerprint(samples), "model": model.identity()}
    if task.options:
        identity["task_options"] = task.options
    if any(s.unplaced is not None for s in samples) and (layout := model.media_layout()) != "media_text":
        # absent for the default, so that earlier runs still resume; until 2026-12-03 a benchmark's questions
        # were asked image first whatever the model's layout, and such a run's predictions do not mix with these
        identity["media_layout"] = layout
    output.mkdir(parents=True, exist_ok=True)
    _check_identity(output, identity)

    sharded = num_shards > 1
    log_path = output / SHARDS_DIR / f"shard-{shard_index}-of-{num_shards}.jsonl" if sharded else output / PREDICTIONS_FILE
    done = _read_done(output, set(ids), log_path, repair=not merge_only)
    mine = selected[shard_index::num_shards]
    todo = [s for s in mine if s.id not in done]
    generated, seconds = 0, 0.0
    if todo and not merge_only:
        missing = missing_media(todo)
        if missing:
            raise ValueError(f"missing media file(s) for {task.name}: {', '.join(map(str, missing))}. "
                             f"Expected layout:\n{task.layout}")
        log.info("%s %s: %d of %d selected samples to generate (batch %d)", task.name, split, len(todo), len(mine),
                 batch_size)
        _note_unrecorded_asr_prompt(task, model, todo)
        started = time.monotonic()
        generated = _generate(task, todo, load_pipeline(), log_path, batch_size, max_new_tokens, done, progress)
        seconds = time.monotonic() - started
    remaining = [s.id for s in selected if s.id not in done]
    if remaining and generated and sharded:
        # the other shards read before this one generated (shards started together): the last one to
        # finish sees them all now, as its last batch was on disk before this read
        done = {**_read_done(output, set(ids), log_path, repair=False), **done}
        remaining = [s.id for s in selected if s.id not in done]
    if remaining:
        if merge_only or not sharded:
            raise ValueError(f"{output}: {len(remaining)} of {len(selected)} samples have no prediction yet "
                             f"(first: {remaining[0]}); run the missing shard(s) first")
        log.info("shard %d of %d is complete; %d samples wait for other shards", shard_index, num_shards, len(remaining))
        return EvalResult(output, len(selected), len(selected) - len(remaining), generated, None)
    summary = _finish(task, data, output, split, selected, len(samples), done, model, limit, batch_size, max_new_tokens,
                      generated, seconds)
    return EvalResult(output, len(selected), len(selected), generated, summary)


def _note_unrecorded_asr_prompt(task: Task, model: ModelSpec, samples: Sequence[EvalSample]) -> None:
    """A model folder saved before folders recorded the ASR prompt they were trained with is asked
    the default one, which may not be what it was trained on: said once, before generating (unless
    the run gives its own, `task.asr_prompt`)."""
    from ..data.readers.asr import DEFAULT_ASR_PROMPT
    from ..multimodal.model import CONFIG_NAME, is_modrwkv_folder, read_config

    path = Path(model.path)
    if task.asr_prompt is None and any(s.transcribe for s in samples) and is_modrwkv_folder(path) and "asr_prompt" not in read_config(path):
        log.warning("%s: the model's %s does not record the ASR prompt it was trained with (a folder saved before "
                    "it did); its transcripts are asked with the default %r", path, CONFIG_NAME, DEFAULT_ASR_PROMPT)


def answer_batch(task: Task, pipeline: ModRWKVPipeline, batch: Sequence[EvalSample],
                 max_new_tokens: int) -> list[dict[str, Any]]:
    """The prediction records of one batch of samples, scored, as predictions.jsonl holds them: the
    model's answers (`task.generate`; a transcription sample asked with the model's ASR prompt unless the
    task gives its own; a benchmark question's image placed as the model's `media_layout` says), each
    with its sample's id, the prompt as the model was asked it, and the reference. Validation during
    training scores its val samples with this too, so that its numbers are `modrwkv eval`'s."""
    layout = _media_layout(pipeline)
    batch = [dataclasses.replace(s, prompt=task.transcription_prompt(pipeline.model.asked_asr_prompt))
             if s.transcribe else s.laid_out(layout) for s in batch]
    try:
        answers = task.generate(pipeline, batch, max_new_tokens)
    except ValueError as exc:
        failed, error = batch, exc
        for sample in batch if len(batch) > 1 else ():  # which of them (one image that does not decode): each alone
            try:
                task.generate(pipeline, [sample], max_new_tokens)
            except ValueError as alone:
                failed, error = [sample], alone
                break
        which = f"sample{'s' if len(failed) > 1 else ''} {', '.join(s.id for s in failed)}"
        raise ValueError(f"{task.name} {which}: {error}") from error
    records = []
    for sample, answer in zip(batch, answers, strict=True):
        # a "prompt" in the answer (what a forecaster was asked) replaces the sample's; the record shows the
        # turns' characters (a literal "<audio>" in a question is held escaped, which the reader must not see)
        context = [{**turn, "content": unescape_markers(turn["content"])} for turn in sample.context]
        record = {"id": sample.id, **({"context": context} if context else {}),
                  "prompt": unescape_markers(sample.prompt), **answer, "reference": sample.reference}
        record = json.loads(dumps(record))  # exactly what a rerun will read back
        record["score"] = task.score(record)
        records.append(record)
    return records


def _on_cpu(pipeline: ModRWKVPipeline) -> bool:
    """Whether the pipeline's model runs on the CPU (one that answers from the text alone, without a model: yes)."""
    model = getattr(pipeline, "model", None)
    parameter = next(model.parameters(), None) if model is not None else None
    return parameter is None or parameter.device.type == "cpu"


def _media_layout(pipeline: ModRWKVPipeline) -> MediaLayout:
    """Where `pipeline` puts media a text gives no place: its processor's `media_layout`, which its
    prompt builder follows; the default, LLaVA's layout, for a pipeline without a ModRWKV processor
    behind it (one that answers from the prompt's text alone)."""
    processor = getattr(pipeline, "processor", None)
    return "media_text" if processor is None else processor.media_layout


def _check_inputs(task: Task, pipeline: ModRWKVPipeline, samples: Sequence[EvalSample]) -> None:
    """Samples with media the model has no encoder for, named before anything is generated (the
    first batch would fail on them, after the progress bar started)."""
    encoders = getattr(getattr(pipeline, "model", None), "encoders", None)
    if encoders is None:  # a pipeline without a ModRWKV model behind it checks its inputs as it answers
        return
    needs = {"image": lambda s: s.images or s.videos, "audio": lambda s: s.audio, "series": lambda s: s.series}
    for modality, has in needs.items():
        lacking = [s.id for s in samples if has(s)] if modality not in encoders else []
        if lacking:
            owned = ", ".join(sorted(encoders)) or "none"
            raise ValueError(f"{task.name}: {len(lacking)} sample(s) have {modality} input (first: {lacking[0]}), but "
                             f"the model has no {modality} encoder (its encoders: {owned})")


def _generate(task: Task, todo: Sequence[EvalSample], pipeline: ModRWKVPipeline, log_path: Path, batch_size: int,
              max_new_tokens: int, done: dict[str, dict[str, Any]], progress: bool = True) -> int:
    from tqdm.auto import tqdm

    task.check_pipeline(pipeline)
    _check_inputs(task, pipeline, todo)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started, count = time.monotonic(), 0
    # on the CPU, torch's threads may wait for cores other jobs hold (eval of 150 clips: 5 min rather than 26 s)
    watch = BusyCoreWatch("stop it (Ctrl-C keeps the predictions so far) and run the same command with --threads "
                          "{free} (in Python, torch.set_num_threads({free})): it continues where it stopped",
                          what="its generation") if _on_cpu(pipeline) else None
    with tqdm(total=len(todo), desc=f"{task.name}", unit="sample", disable=not progress, dynamic_ncols=True) as bar:
        for batch in _chunks(todo, batch_size):
            records = answer_batch(task, pipeline, batch, max_new_tokens)
            if watch is not None and (note := watch.check()):
                log.warning(note)
            lines = []
            for record in records:
                lines.append(dumps(record))
                done[record["id"]] = record
            try:
                append_text_durably(log_path, "".join(line + "\n" for line in lines))
            except OSError as exc:
                raise OSError(exc.errno, f"{exc.strerror}; the answers before this batch are kept there: run the "
                              "same command again when there is room, and it continues", exc.filename) from exc
            count += len(batch)
            bar.update(len(batch))
            log.info("%s: %d/%d generated (%.1f samples/s)", task.name, count, len(todo),
                     count / max(time.monotonic() - started, 1e-9))
    return count


def _told_apart(given: Sequence[PaperResult], computed: Mapping[str, Any]) -> list[PaperResult]:
    """`given` (published numbers, and a custom run's --baseline NAME=VALUE), each named as the report shows it: one
    named as a baseline computed here (`--baseline repeat-last=0.41` beside the repeat-last of these windows) as
    "repeat-last (given)", since the table's column and the line of computed baselines would otherwise show two
    numbers under one name. Kept rather than refused: a method of that name run elsewhere (another library's
    seasonal naive, on its own terms) is a number the user asked to see beside this one."""
    return [dataclasses.replace(result, model=f"{result.model} (given)") if result.model in computed else result
            for result in given]


def _finish(task: Task, data: Path | list[Path], output: Path, split: str, selected: Sequence[EvalSample], total: int,
            done: dict[str, dict[str, Any]], model: ModelSpec, limit: int | None, batch_size: int,
            max_new_tokens: int, generated: int, seconds: float) -> dict[str, Any]:
    """Writes the ordered predictions, the summary and the report."""
    records = [done[s.id] for s in selected]
    write_text_atomically(output / PREDICTIONS_FILE, "".join(dumps(r) + "\n" for r in records))
    metrics = task.summarize(records)
    baselines = task.computed_baselines(selected) if metrics else {}
    if baselines:
        metrics["baselines"] = baselines
    summary = {
        "task": task.name,
        "title": task.title,
        "split": split,
        "data": str(data) if isinstance(data, Path) else [str(d) for d in data],
        "model": model.path,
        "limit": limit,
        "samples": len(records),
        "samples_in_split": total,
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "metrics": metrics,
        "headline": {"metric": task.headline, "label": task.headline_label, "value": metrics.get(task.headline)},
        # published numbers and the user's --baseline ones; what is computed here (metrics.baselines) is not
        # one of them: a run with those alone has no published number to stand beside
        "paper": [dataclasses.asdict(p) for p in _told_apart(task.paper_results(split), baselines)],
        "paper_note": task.paper_note,
        "server_scored": not metrics,
        "generated_this_run": generated,
        "generation_seconds": round(seconds, 3),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    write_text_atomically(output / SUMMARY_FILE, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    write_text_atomically(output / REPORT_FILE, format_report([summary]))
    return summary
