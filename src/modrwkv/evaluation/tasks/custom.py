"""`custom`: your own evaluation file, asked in the model's own training format and scored as you say.

The file is JSON (an array), JSONL, Parquet (rows with the same fields, media embedded as
`datasets` writes them), a WebDataset tar (`modrwkv.data.readers.webdataset`), a folder of class folders
(`classfolders`) or a Hugging Face metadata folder or its metadata file (`hffolders`) in any training format
`modrwkv init` detects, so a held-out split is evaluated as it was written for training.
Question-answer records (`data.format: qa`, `modrwkv.data.readers.qa`):

    {"image": "images/0007.png", "question": "Which digit is this?", "answer": "7"}
    {"audio": "clips/1.flac", "question": "Transcribe the audio.", "answer": "hello world"}
    {"image": "x.jpg", "question": "What is shown?", "answer": "B", "choices": ["a dog", "a cat"]}
    {"series": [0.1, 0.4, 0.9], "question": "Predict the next 2 values.", "answer": [1.6, 2.5]}

Conversations (LLaVA, OpenAI chat, LLaMA-Factory ShareGPT) and ASR manifests are read by their
training converters: the last assistant turn is the reference answer, the user turn before it the
prompt, and everything earlier (a system prompt, earlier turns) the context the model reads first,
as chat and training give it; bad records are named as the training readers name them (file:line,
field). Beside the turns, a conversation record may carry what a question-answer record says about
its answer, with the same meaning (training ignores these fields, and trains on the turns):

    {"image": "x.jpg", "conversations": [{"from": "human", "value": "<image>\nWhat colour is the car?"},
     {"from": "gpt", "value": "red"}], "answers": ["red", "red", "dark red"]}
    {"image": "x.jpg", "conversations": [{"from": "human", "value": "<image>\nWhat is shown?\nA. a dog\nB. a cat"},
     {"from": "gpt", "value": "B"}], "choices": ["a dog", "a cat"]}

`answers` (the accepted answers) is then the reference instead of the last assistant turn;
`choices` letters the options A, B, ... and the answer is the correct one's letter or text. The turns
are asked as written, so the options must appear in them (`A. a dog` lines, as a question-answer
record's prompt shows them).

Media paths are relative to the file's folder (or `media_folder`), with any extension the decoders
read. The prompt is exactly the user turn training builds from the same record (media markers,
question, lettered choices), with nothing appended, unless `prompt` gives a template
(`"{question} Answer with one word."`; in a conversation `{question}` is the last user turn). An
ASR manifest holds no prompt: its user turn is the audio and the ASR prompt the model was trained
with (training records `data.options.prompt` as `asr_prompt` in the model folder's config.json;
null there asks the audio alone), put in when the model is loaded; `asr_prompt` asks with another
text instead ("": the audio alone). A folder saved before the record existed is asked the
default, "Transcribe the audio.", with a warning. Likewise a WebDataset shard's captioned sample (media +
.txt) is asked the question training asked it (the model folder's `caption_prompt`; null: the reader's
default, also for a folder saved before the record existed, with a warning), or `caption_prompt`, as are a
metadata folder's captioned rows and a hub Parquet file's plain rows (`hubrows`: media and a label, answered
from the reader option `label_column`, else the file's ClassLabel column by class name, else `label`). Records
whose fields are other columns are read with the reader option `columns` ({field: column}: ChartQA's
`{"question": "query", "answers": "label"}`, its `label` list then the accepted answers), as training reads them.

Metrics (the `metric` option, else a `metric` field of the records, else inferred per file): `choice` (records with
choices: the letter the reply selects, `extract_choice`), `mse` (numeric answers: MSE / MAE of the numbers in the
reply), `vqa` (`answers` with 3 or more human answers: the VQA accuracy; sentences, a median of
`CAPTION_WORDS` words or more, are captions: `cider`), `wer` (audio: corpus WER after Whisper's
English normalisation), `cer` (audio whose transcripts are mostly in a script written without spaces between words,
such as Chinese: corpus CER after Aishell-1's normalisation; any text answer with `--metric cer`), `cider`
(captioned samples, whose records say so: a shard's .txt caption, a metadata folder's or hub Parquet file's caption,
or a list of captions per image: CIDEr-D times 100 as the COCO caption evaluation computes it over the whole file,
all of a record's captions its references, with BLEU-1..4 beside it, `metrics.caption_scores`; any text answer with
`--metric cider`), `exact` (otherwise: the reply equals one of the answers after trimming, dropping trailing periods
and lower-casing both). `choice`, `mse`, `wer` and `cer` score against one answer: of several, the one training
teaches (`QARecord.target`). The report holds only the numbers the user supplies (`baselines`), never the paper's: a
custom data set has no published results. Scored by `exact` with one answer per record, a file whose answers are a
classifier's labels (`metrics.label_breakdown`) gets them per answer too (`per_answer`: accuracy, precision, the
most frequent wrong reply), which the report tabulates; so does a file scored by `choice`, per right option against
the option each reply selects (a reply that selects none is outside the answers), named by letter, or "B. a cat"
when every record offers the same options.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...constants import EVAL_METRICS as METRICS
from ...data.readers import FORMATS
from ...data.readers.asr import DEFAULT_ASR_PROMPT
from ...data.readers.base import (DataError, EmbeddedBytes, MixedFormats, ReadReport, accepted_format, as_paths,
                                  data_label, expand_paths, file_records, is_media_table, is_metadata_file,
                                  is_table_file, is_tar, one_format, row_filter,
                                  warn_media_folder_unused)
from ...data.readers.captionsplits import is_caption_tokens, split_names
from ...data.readers.qa import CAPTION_WORDS, LABEL_AND_COLUMNS, OPTION_LETTERS, QARecord, parse_qa_record
from ...data.readers.detect import FormatUnknown, detect_format
from ...data.readers.hubrows import hub_layout, unused_label_column
from ...data.readers.webdataset import CLASS_PROMPTS, DEFAULT_CAPTION_PROMPTS
from ...data.readers.sharegpt import dataset_info_entry, sharegpt_mapping
from ...data.readers.speech_corpora import is_speech_corpus
from ...data.readers.torchvision_sets import is_torchvision_set
from ...data.sample import MARKERS, Sample, unescape_markers
from ...processing.speech_segments import SegmentSettings
from ...textfiles import data_suffix
from ..metrics import (caption_scores, cer, extract_choice, label_breakdown, mae, mse, normalize_short_answer,
                       vqa_accuracy, wer)
from .base import BenchmarkFileError, EvalSample, PaperResult, Task, percent_mean

if TYPE_CHECKING:
    from ..runner import ModelSpec

log = logging.getLogger(__name__)

_ERROR_RATES = ("wer", "cer")  # corpus-level error rates of a text answer (a transcript)
_ONE_ANSWER = ("choice", "mse", *_ERROR_RATES)  # metrics that score a reply against one answer
_CORPUS_TEXT = (*_ERROR_RATES, "cider")  # corpus-level scores of text answers: no per-record score
_HEADLINES = {  # metric -> (headline key, label)
    "exact": ("accuracy", "exact-match accuracy (%)"),
    "vqa": ("accuracy", "VQA accuracy (%)"),
    "choice": ("accuracy", "choice accuracy (%)"),
    "wer": ("wer", "WER (%)"),
    "cer": ("cer", "CER (%)"),
    "mse": ("mse", "MSE"),
    "cider": ("cider", "CIDEr-D (x100)"),
}


def infer_metric(record: QARecord) -> str:
    if record.choices:
        return "choice"
    if record.numbers is not None:
        return "mse"
    if len(record.answers) >= 3:
        return "vqa"
    if record.media.get("audio"):
        return "wer"
    return "exact"


def _first_records(metrics: dict[str, str]) -> str:
    """"'cer' from a.jsonl:1, 'exact' from a.jsonl:2": where to look, in a file of thousands of records."""
    return ", ".join(f"{metric!r} from {source}" for metric, source in sorted(metrics.items()))


def exact_match(prediction: str, answers: Sequence[str]) -> bool:
    predicted = normalize_short_answer(prediction)
    return any(predicted == normalize_short_answer(answer) for answer in answers)


class CustomTask(Task):
    """A user's evaluation file in a training format; `metric`, `prompt`, `asr_prompt`, `media_folder` and
    `baselines` (name -> value shown beside the model's number) as the module docstring says.
    `data_format` and `reader_options` read the file as a training config's `data.format` and
    `data.options` read it (validation during training): that format rather than the detected one, and
    the reader's options (qa's and ShareGPT's `columns`, ShareGPT's `tags`, an ASR manifest's `prompt`,
    `verify_media`, ...) applied to each record."""

    name = "custom"
    title = "custom data"
    splits = ("all",)
    default_split = "all"
    max_new_tokens = 64  # until the file is read: then the longest answer's bytes + 16
    headline = "accuracy"
    headline_label = "accuracy (%)"
    layout = """a .json / .jsonl / .parquet file of records in a training format (or WebDataset .tar shards), such as
  {"image": "images/1.png", "question": "Which digit is this?", "answer": "7"}
  or conversations (llava, openai, sharegpt) whose last assistant turn is the answer
  (media paths relative to the file's folder, or to --media-folder); see docs/custom-data.md"""

    def __init__(self, *, metric: str | None = None, prompt: str | None = None, asr_prompt: str | None = None,
                 media_folder: str | Path | None = None, baselines: Mapping[str, float] | None = None,
                 long_form: SegmentSettings | None = None, data_format: str | None = None,
                 reader_options: Mapping[str, Any] | None = None, caption_prompt: str | None = None) -> None:
        if metric is not None and metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
        if prompt is not None and "{question}" not in prompt:
            raise ValueError(f"prompt template {prompt!r} has no {{question}} placeholder")
        self.reader_options = dict(reader_options or {})
        if self.reader_options.get("label_column") is not None and self.reader_options.get("columns"):
            raise ValueError(LABEL_AND_COLUMNS)
        # the reader options `split` and `where`, checked and in the readers' form
        self.reader_splits = split_names(self.reader_options.get("split"), "reader_options' split")
        self.where = row_filter(self.reader_options.get("where"))
        if data_format == "asr" and "prompt" in self.reader_options:
            # The reader's prompt is the ASR prompt the manifest is asked with, whatever the model records.
            if asr_prompt is not None:
                raise ValueError("asr_prompt and reader_options' prompt both give the ASR prompt; give one")
            asr_prompt = self.reader_options["prompt"] or ""  # None (the audio alone) is asr_prompt's ""
        if caption_prompt is not None and "prompt" in self.reader_options:
            raise ValueError("caption_prompt and reader_options' prompt both give the caption question; give one")
        # what WebDataset shards' captioned samples are asked instead of the question the model's training
        # asked them (`adopt_model_settings`); None: that one
        self.caption_prompt = caption_prompt
        self.model_caption_prompt: str | None = None  # the model folder's record (None: the reader's default)
        self.caption_unrecorded = False  # the model is a folder saved before folders recorded that question
        self.data_format = data_format
        # each file's format as the last `load` read it (`ReadReport.formats`), also when it failed: what
        # `modrwkv init --val` names a val file of another format than the training files' by
        self.formats: dict[str, str] = {}
        self.metric = metric
        self.prompt = prompt
        self.asr_prompt = asr_prompt
        self.long_form = long_form
        self.media_folder = Path(media_folder) if media_folder is not None else None
        self.baselines = dict(baselines or {})
        if metric is not None:
            self.headline, self.headline_label = _HEADLINES[metric]
        if self.baselines:
            self.paper_note = "compared only with the baselines given on the command line (--baseline)"

    def adopt_model_settings(self, model: ModelSpec) -> None:
        """The question the model's training asked WebDataset shards' captioned samples (its folder's
        `caption_prompt`), which they are asked unless `caption_prompt` or the reader's `prompt` says another;
        a released checkpoint, or a folder saved before folders recorded it (then `load` warns), the default."""
        from ...multimodal.model import is_modrwkv_folder, read_config

        path = Path(model.path)
        config = read_config(path) if is_modrwkv_folder(path) else {}
        self.model_caption_prompt = config.get("caption_prompt")
        self.caption_unrecorded = bool(config) and "caption_prompt" not in config

    def paper_results(self, split: str) -> list[PaperResult]:
        return [PaperResult(name, value) for name, value in self.baselines.items()]

    def check_split(self, split: str | None) -> str:
        """"all" (every record), or, with the reader option `split` (`--split`: the splits of a Karpathy split file
        or a Flickr token file read), its names joined by commas ("train,restval"), which its reader checks against
        the file's; another split is a ValueError: the records read are the option's."""
        read = self.default_split if self.reader_splits is None else ",".join(self.reader_splits)
        if split not in (None, self.default_split, read):
            given = f"is {read}" if self.reader_splits is not None else "is not given"
            raise ValueError(f"{self.name}: split {split!r} is read as the reader option split (--split, "
                             f"data.options.split), which {given}")
        return read

    def transcription_prompt(self, model_asr_prompt: str | None) -> str:
        """An ASR manifest's user turn (`Task.transcription_prompt`), with `prompt` applied to it."""
        return _templated(super().transcription_prompt(model_asr_prompt), self.prompt)

    def load(self, data: Path | Sequence[Path], split: str) -> list[EvalSample]:
        """The records of `data`: a file, or what `data.train` takes (several files, wildcards, a folder of
        .parquet or WebDataset .tar shards), all of one format. A record without an `id` is known by its
        place: its number in a single file, else "file name:number"; a tar sample's id is its key, with
        several files "file name:key"; files of the same name in different folders are named by their path
        from the folder they share (`_place_names`). The splits of a Karpathy split file or a Flickr token file
        read are the reader option `split`'s (`check_split`)."""
        label = data_label(data)
        try:
            files = [Path(file) for file in expand_paths([str(path) for path in as_paths(data)], "--data")]
        except FileNotFoundError as exc:
            raise BenchmarkFileError(str(exc)) from None
        for file in files:
            # the readers' own predicates: a .tar.gz goes on to the tar reader, which says to decompress it
            # (a folder here is a folder of class folders or with a metadata file: `expand_paths`)
            if not (file.is_dir() or is_tar(file) or is_table_file(file) or is_metadata_file(file)
                    or data_suffix(file) in (".json", ".jsonl") or is_media_table(file) or is_speech_corpus(file)
                    or is_torchvision_set(file) or is_caption_tokens(file)):
                raise BenchmarkFileError(f"{file}: expected a .json, .jsonl, .parquet, .arrow or .tar file of records "
                                         f"in a training format, a .csv / .tsv / .txt table whose rows name media "
                                         f"files, a Flickr token file (Flickr8k.token.txt), a folder of class "
                                         f"folders or a folder with a metadata file: "
                                         f"{self.layout}")
            if not file.exists():  # (a folder here is a folder of class folders or with a metadata file)
                raise BenchmarkFileError(f"{file}: no such file")
        try:
            refusal = unused_label_column(files, self.reader_options.get("label_column"))
        except DataError as exc:
            raise BenchmarkFileError(str(exc)) from None
        if refusal is not None:
            raise BenchmarkFileError(refusal)
        # The ASR manifest's prompt until the model is loaded: the one given, else the default
        # (`transcription_prompt` then decides, with the model's own).
        manifest_prompt = DEFAULT_ASR_PROMPT if self.asr_prompt is None else self.asr_prompt or None
        try:
            # each file's format and how it was chosen; a file whose format is not told (FormatUnknown: no known
            # fields, an empty file) is read as question-answer records, whose reader names what is missing, and
            # takes no part in the files' one format
            folder = _given_folder(self.data_format or "qa", self.reader_options, self.media_folder)
            detected = {file: _file_format(file, self.data_format, self.reader_options.get("label_column"),
                                           self.reader_options.get("columns"), folder) for file in files}
            # the files' one format, as training's one reader reads them (`accepted_format`)
            data_format, (records, defaulted) = accepted_format(
                [found[0] for found in detected.values() if found is not None] or ["qa"],
                lambda data_format: self._read(detected, data_format, manifest_prompt))
        except (DataError, MixedFormats) as exc:
            raise BenchmarkFileError(str(exc)) from None
        if not records:
            raise BenchmarkFileError(f"{label}: no records")
        if defaulted and self.caption_unrecorded:
            log.warning("the model folder does not record the question its training asked WebDataset shards' captions "
                        "(a folder saved before 2026-12-03): %d captioned samples of %s are asked the default; "
                        "--caption-prompt TEXT asks the one it was trained with", defaulted, label)
        metric = self._file_metric(label, [(q.source, q.record) for _, q in records])
        self.headline, self.headline_label = _HEADLINES[metric]
        samples = []
        longest = 0
        for identifier, question in records:
            source, record = question.source, question.record
            if metric == "choice" and not record.choices:
                raise BenchmarkFileError(f"{source}: the choice metric needs 'choices' in every record")
            if metric in _CORPUS_TEXT and (record.choices or record.numbers is not None):
                raise BenchmarkFileError(f"{source}: the {metric} metric scores a text answer (a transcript, a "
                                         f"caption), not {'choices' if record.choices else 'a list of numbers'}")
            # A metric of one right answer (an option, a forecast, a transcript) scores the one training teaches:
            # of several answers the most frequent (`QARecord.target`), not whichever the file lists first.
            answers = [record.target()] if metric in _ONE_ANSWER else record.answers
            numbers = record.numbers
            if metric == "mse" and numbers is None:
                try:
                    numbers = _numbers(answers[0])
                except ValueError:
                    raise BenchmarkFileError(f"{source}: the mse metric needs a numeric answer "
                                             f"(a list of numbers), got {answers[0]!r}") from None
            reference: dict[str, Any] = {"metric": metric, "answers": answers}
            if record.choices:
                reference["choices"] = record.choices
            if numbers is not None:
                reference["numbers"] = numbers
            longest = max(longest, *(len(a.encode()) for a in record.answers))
            samples.append(EvalSample(identifier, question.prompt,
                                      reference, images=[_path(i) for i in record.media.get("image", [])],
                                      audio=[_path(i) for i in record.media.get("audio", [])],
                                      series=record.media.get("series", []),
                                      videos=[_path(i) for i in record.media.get("video", [])],
                                      context=question.context,
                                      transcribe=data_format == "asr"))
        # A World token is at least one byte: the longest answer fits, with room for a short preamble.
        self.max_new_tokens = longest + 16
        return samples

    def _read(self, detected: Mapping[Path, tuple[str, str] | None], reading: str,
              manifest_prompt: str | None) -> tuple[int, tuple[list[tuple[Any, _Question]], int]]:
        """Every record of the files as a question (of a Karpathy split file or a Flickr token file, those of the
        reader option `split`; of a table, the rows `where` keeps), a file of a told format read as `reading` records (the
        files' one format), one of no told format as its own (`_file_format`: qa): how many, and (the
        records as (the sample's id: the record's own, else its place; the question), how many tar captions
        were asked the default question). Every file is read to the end, so that
        `ReadReport.check_one_format` knows which file every record of which was refused as another format's
        (`MixedFormats`) before the first bad record's `DataError` is raised; `self.formats` is each file's
        format as read."""
        files = list(detected)
        report = ReadReport()
        self.formats = report.formats
        origin = {found[0]: file for file, found in reversed(detected.items()) if found is not None}
        records: list[tuple[Any, _Question]] = []
        names = _place_names(files)
        defaulted = 0  # tar captions asked the default question
        first_error: DataError | None = None
        empty = []  # files with no record at all, which one file alone would be refused for
        first_sources: dict[tuple[Path, Any], str] = {}  # a metadata file's row ids -> the first row with each
        # a caption's media, prompt and context -> the index in `records` of the sample its rows' captions join
        caption_samples: dict[tuple[Any, ...], int] = {}
        for file, found in detected.items():
            rows_read = 0
            data_format, chosen = found or ("qa", "")
            if found is not None and data_format != reading:  # read as the format of the files before it
                data_format, chosen = reading, f", detected from the first record of {origin[reading]}"
            data_format, chosen, convert = _converter(file, data_format, chosen, manifest_prompt, self.reader_options,
                                                      self.media_folder)
            columns = self.reader_options.get("columns")
            if columns is not None:
                _check_columns(file, data_format, chosen, columns)
            if self.asr_prompt is not None and data_format != "asr":
                raise BenchmarkFileError(f"{file}: --asr-prompt applies to an ASR manifest, but this file holds "
                                         f"{data_format} records{chosen}, whose prompts are in the records")
            if self.long_form is not None and data_format != "asr":
                raise BenchmarkFileError(f"{file}: --long-form applies to an ASR manifest, but this file holds "
                                         f"{data_format} records{chosen}")
            # the files whose records may be asked a caption question: shards, folders, metadata files, hub rows
            label_column = self.reader_options.get("label_column")
            # qa records are read with their columns renamed (sharegpt's mapping is its converter's)
            renamed = columns if data_format == "qa" else None
            # rows of media files named in a metadata file or a table (a folder's rows, known by their files)
            media_rows = file.is_dir() or is_metadata_file(file) or is_media_table(file)
            captioned = (is_tar(file) or media_rows or is_torchvision_set(file)
                         or is_table_file(file) and not renamed and hub_layout(file, label_column) is not None)
            if self.caption_prompt is not None and not captioned:
                raise BenchmarkFileError(f"{file}: --caption-prompt applies to WebDataset .tar shards, folders of "
                                         "class folders, Hugging Face metadata folders, tables of media rows and "
                                         "hub Parquet files of media and labels or captions (the question their "
                                         "captioned samples and labelled files are asked); this file is none of them")
            if self.caption_prompt is not None and data_format != "qa":
                raise BenchmarkFileError(f"{file}: --caption-prompt applies to captioned samples (qa records), but "
                                         f"this file holds {data_format} records{chosen}")
            # a tar's captioned samples (and a class folder's files) are asked what training asked them: the
            # question given, else the reader's prompt (validation during training), else the model folder's record
            caption = (self.caption_prompt if self.caption_prompt is not None else self.reader_options["prompt"]
                       if "prompt" in self.reader_options else self.model_caption_prompt)
            records_of = file_records(file, caption_prompt=caption if data_format == "qa" else None,
                                      label_column=label_column, columns=renamed,
                                      media_folder=_given_folder(data_format, self.reader_options, self.media_folder),
                                      split=self.reader_splits, where=self.where)
            default_captions = caption is None and data_format == "qa" and captioned
            for number, (source, build) in enumerate(one_format(
                    file, data_format, records_of, lambda record, source: convert(record, source, self.prompt),
                    chosen, formats=None if found is None else report.formats), start=1):
                try:
                    question = build()
                except DataError as exc:
                    if exc.reason == "unreadable_file":  # a whole file: nothing further to read
                        raise
                    first_error = first_error or exc
                    continue
                rows_read += 1
                # rows of one image's captions (one per caption, as Karpathy-split exports write them) are one
                # sample with all of them its references, as the COCO caption evaluation scores each image once
                # (a tar's samples are each its own, by key: its images are not compared)
                scored_as_captions = self.metric == "cider" or self.metric is None and question.record.metric == "cider"
                key = _caption_key(question, by_bytes=not is_tar(file)) if scored_as_captions else None
                if key is not None and key in caption_samples:
                    index = caption_samples[key]
                    earlier = records[index][1]
                    answers = earlier.record.answers + question.record.answers
                    joined = dataclasses.replace(earlier.record, answers=answers)
                    records[index] = (records[index][0], dataclasses.replace(earlier, record=joined))
                    continue
                if key is not None:
                    caption_samples[key] = len(records)
                if default_captions and question.record.question in (*DEFAULT_CAPTION_PROMPTS.values(),
                                                                     *CLASS_PROMPTS.values()):
                    defaulted += 1
                identifier = question.record.id
                if identifier is not None and media_rows:
                    # a metadata row without an `id` is known by its file, which rows of captions may share
                    first = first_sources.setdefault((file, identifier), source)
                    if first != source:
                        raise BenchmarkFileError(f"{source}: the id {identifier!r} of {first} too (a row is known by "
                                                 "its 'id', else its file): give each row an 'id' of its own (an "
                                                 "'id' column) to evaluate rows that share a file")
                if identifier is None:
                    identifier = str(number) if len(files) == 1 else f"{names[file]}:{number}"
                elif len(files) > 1 and (source == f"{file}:{identifier}" and is_tar(file) or media_rows):
                    # a tar sample's id is its key, which the shards of one dataset reuse (each counting
                    # from 000), and a class folder file's "class/name" (a metadata row's file name) may be
                    # another folder's too, so with several files it is known as a JSONL record's place is
                    identifier = f"{names[file]}:{identifier}"
                records.append((identifier, question))
            if not rows_read:  # (a file of bad records: the first one's error is raised below)
                empty.append(file)
        report.check_one_format(reading)
        if first_error is not None:
            raise first_error
        if records:
            for file in empty:
                log.warning("%s: no records; the samples of the other files are evaluated", file)
        return len(records), (records, defaulted)

    def _file_metric(self, data: str, records: Sequence[tuple[str, QARecord]]) -> str:
        if self.metric is not None:
            return self.metric
        stated: dict[str, str] = {}  # each metric a record names -> the first record naming it
        for source, record in records:
            if record.metric is not None:
                stated.setdefault(record.metric, source)
        if len(stated) > 1:
            raise BenchmarkFileError(f"{data}: the records name different metrics ({_first_records(stated)}); use "
                                     "one, or --metric")
        if stated:
            [(metric, source)] = stated.items()
            if metric not in METRICS:
                raise BenchmarkFileError(f"{source}: unknown metric {metric!r}; choose from {', '.join(METRICS)}")
            return metric
        inferred: dict[str, str] = {}
        for source, record in records:
            inferred.setdefault(infer_metric(record), source)
        if len(inferred) > 1:
            raise BenchmarkFileError(f"{data}: the records suggest different metrics ({_first_records(inferred)}: "
                                     "choices, numeric answers, several answers or audio in some records only); "
                                     "choose one with --metric or a 'metric' field")
        [metric] = inferred
        if metric == "vqa":
            words = float(np.median([len(answer.split()) for _, record in records for answer in record.answers]))
            if words >= CAPTION_WORDS:  # sentences, not VQA's short human answers: several captions of each image
                log.info("%s: the answers are sentences (a median of %g words), several per record: captions, "
                         "scored by CIDEr-D (--metric vqa to override)", data, words)
                return "cider"
        if metric == "wer":
            share = unsegmented_share([r.answers[0] for _, r in records])
            if share > 0.5:  # words are not spaced apart: WER would count whole sentences as words
                log.info("%s: %.0f%% of the transcripts' letters are of scripts written without spaces between "
                         "words (Chinese, Japanese, Thai, ...): scored by CER (--metric wer to override)",
                         data, 100 * share)
                return "cer"
        return metric

    def score(self, record: dict[str, Any]) -> dict[str, Any]:
        reference, prediction = record["reference"], record["prediction"]
        metric = reference["metric"]
        if metric == "exact":
            return {"correct": exact_match(prediction, reference["answers"])}
        if metric == "vqa":
            return {"accuracy": vqa_accuracy(prediction, reference["answers"])}
        if metric == "choice":
            selected = extract_choice(prediction, reference["choices"])
            return {"selected": selected, "correct": selected == reference["answers"][0]}
        if metric in _CORPUS_TEXT:
            # corpus-level only: a per-utterance rate is undefined for empty references, and CIDEr's weights are
            # the whole set's document frequencies
            return {}
        values, parsed = reply_numbers(prediction, len(reference["numbers"]))
        return {"mse": mse(values, reference["numbers"]), "mae": mae(values, reference["numbers"]), "parsed": parsed}

    def summarize(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        metric = records[0]["reference"]["metric"]
        self.headline, self.headline_label = _HEADLINES[metric]
        if metric in _ERROR_RATES:
            rate = {"wer": wer, "cer": cer}[metric]
            return {metric: rate([r["reference"]["answers"][0] for r in records], [r["prediction"] for r in records]),
                    "metric": metric}
        if metric == "cider":
            # every caption of a record is a reference (the headline CIDEr-D, BLEU-4 beside it, as COCO reports them)
            if len(records) == 1:
                log.warning("CIDEr-D of one caption is 0 whatever it says: its n-grams' weights are the log of the "
                            "images over those whose references hold them, log(1 / 1) = 0 (pycocoevalcap's too); "
                            "score several images (no --limit 1), or read BLEU beside it")
            return {**caption_scores([r["prediction"] for r in records], [r["reference"]["answers"] for r in records]),
                    "metric": metric}
        if metric == "mse":
            scores = [self.score(r) for r in records]
            predicted = np.concatenate([reply_numbers(r["prediction"], len(r["reference"]["numbers"]))[0]
                                        for r in records])
            target = np.concatenate([np.asarray(r["reference"]["numbers"], dtype=np.float64) for r in records])
            return {"mse": mse(predicted, target), "mae": mae(predicted, target),
                    "unparsed": sum(not s["parsed"] for s in scores), "metric": metric}
        key = "accuracy" if metric == "vqa" else "correct"
        scores = [self.score(r) for r in records]
        summary = {"accuracy": percent_mean([float(score[key]) for score in scores]), "metric": metric}
        if metric == "exact" and all(len(r["reference"]["answers"]) == 1 for r in records):
            # a classifier's labels (class folders, digits): which ones it gets wrong, and as what
            summary.update(label_breakdown([r["reference"]["answers"][0] for r in records],
                                           [r["prediction"] for r in records]) or {})
        elif metric == "choice":
            # the option selected against the right one: a model that always selects "A" hides behind an
            # accuracy near chance, and shows here as every other right answer's accuracy 0, wrongly "A"
            name = _option_names(records)
            offered = OPTION_LETTERS[:max(len(r["reference"]["choices"]) for r in records)]
            summary.update(label_breakdown([name(r["reference"]["answers"][0]) for r in records],
                                           [None if score["selected"] is None else name(score["selected"])
                                            for score in scores],
                                           options=[name(letter) for letter in offered]) or {})
        return summary


def _option_names(records: Sequence[dict[str, Any]]) -> Callable[[str], str]:
    """How a multiple-choice file's breakdown names an option letter: "LETTER. text" ("B. a cat") when every
    record offers the same options (a classifier asked to choose), else the letter alone (the options differ
    from record to record: the letter is where the right one stood)."""
    first = records[0]["reference"]["choices"]
    if all(r["reference"]["choices"] == first for r in records):
        return lambda letter: f"{letter}. {first[OPTION_LETTERS.index(letter)]}"
    return lambda letter: letter


@dataclasses.dataclass
class _Question:
    """One record as it is asked: the question-answer view scoring reads, the final user turn (the
    prompt) and the turns before it."""

    source: str
    record: QARecord
    prompt: str
    context: list[dict[str, str]]


Converter = Callable[[Any, str, "str | None"], _Question]


def _place_names(files: Sequence[Path]) -> dict[Path, str]:
    """What names each file in its records' ids when there are several: its name, or, when two files share
    one (x1/test.jsonl and x2/test.jsonl), its path from the folder all the files are in (x1/test.jsonl), so
    that ids stay unique; unique names stay as they were, and with them earlier runs' ids."""
    if len({file.name for file in files}) == len(files):
        return {file: file.name for file in files}
    absolute = {file: Path(os.path.abspath(file)) for file in files}
    common = Path(os.path.commonpath([str(path.parent) for path in absolute.values()]))
    return {file: path.relative_to(common).as_posix() for file, path in absolute.items()}


def _file_format(data: Path, data_format: str | None, label_column: str | None = None,
                 columns: Mapping[str, str] | None = None, media_folder: Path | None = None) -> tuple[str, str] | None:
    """The format `data`'s records are read as and how it was chosen (for an error about a record of another
    format): `data_format`, else the training format `modrwkv init` detects (a LLaMA-Factory
    `dataset_info.json` naming the file, else the first record's fields, with qa's `columns` renamed, a COCO
    file's images in `media_folder`); None when nothing is recognised."""
    if data_format is not None:
        return data_format, ", as data.format says"
    try:
        data_format = detect_format(data, label_column, columns, media_folder)
    except FormatUnknown:
        return None
    entry = dataset_info_entry(data)
    return data_format, ", as dataset_info.json says" if entry is not None else ", detected from the first record"


def _check_columns(data: Path, data_format: str, chosen: str, columns: Any) -> None:
    """BenchmarkFileError for a `columns` option (`--columns`, data.options.columns) that `data_format`'s records
    do not take, or that is no mapping of their fields (`RecordFormat.field_columns`)."""
    check = FORMATS[data_format].field_columns
    if check is None:
        raise BenchmarkFileError(f"{data}: --columns (data.options.columns) maps the fields of question-answer records "
                                 f"to the file's columns, but this file holds {data_format} records{chosen}, which "
                                 "take no such mapping")
    try:
        check(columns)
    except ValueError as exc:
        raise BenchmarkFileError(f"{data}: {exc}") from None


def _converter(data: Path, data_format: str, chosen: str, asr_prompt: str | None, options: Mapping[str, Any],
               media_folder: Path | None) -> tuple[str, str, Converter]:
    """How this file's records become questions as `data_format` records (`chosen` says how that format was
    chosen): that format, `chosen` and the converter. The records are
    converted as the training reader converts them with `options` (its keyword options; a ShareGPT file
    without `columns` and `tags` takes its dataset_info.json's), an ASR manifest's user turn built with
    `asr_prompt` (None: the audio alone), media paths relative to `media_folder`, else the reader's folder
    option, else the file's folder."""
    to_sample, folder_keyword = FORMATS[data_format].to_sample, FORMATS[data_format].folder_option
    keywords = inspect.signature(to_sample).parameters
    # the reader's options its converter takes; the media folder and an ASR prompt are decided here
    kwargs = {name: value for name, value in options.items()
              if name in keywords and name not in ("source", "prompt", folder_keyword)}
    if data_format == "sharegpt":
        kwargs.update(sharegpt_mapping(data, options.get("columns"), options.get("tags")))
    if data_format == "asr":
        kwargs["prompt"] = asr_prompt
    given = _given_folder(data_format, options, media_folder)
    warn_media_folder_unused(data, given)
    folder = data.parent if given is None else given
    kwargs[folder_keyword] = folder
    if data_format == "qa":
        def ask(record: Any, source: str, template: str | None) -> _Question:
            qa = parse_qa_record(record, source=source, **kwargs)
            return _Question(source, qa, qa.prompt(template), [])

        return data_format, chosen, ask

    def convert(record: Any, source: str, template: str | None) -> _Question:
        return _conversation_question(to_sample(record, source=source, **kwargs), record, template)

    return data_format, chosen, convert


def _given_folder(data_format: str, options: Mapping[str, Any], media_folder: Path | None) -> Path | None:
    """The folder `data_format`'s media paths are relative to as given: `media_folder` (--media-folder), else the
    reader's folder option (data.media_folder); None for none (the file's folder, a COCO file's image folders)."""
    given = media_folder if media_folder is not None else options.get(FORMATS[data_format].folder_option)
    return None if given is None else Path(given)


def _caption_key(question: _Question, by_bytes: bool) -> tuple[Any, ...] | None:
    """What rows of captions of one sample share: their media (a file's path; with `by_bytes`, embedded bytes by
    their SHA-256, as a hub Parquet file of a row per caption repeats an image's bytes), the prompt and the turns
    before it; None for media that are neither (arrays, decoded images), which rows are not known to share."""
    media = []
    for modality, items in sorted(question.record.media.items()):
        keys = [_media_key(item, by_bytes) for item in items]
        if not keys or None in keys:
            return None
        media.append((modality, tuple(keys)))
    if not media:
        return None
    return tuple(media), question.prompt, tuple((turn["role"], turn["content"]) for turn in question.context)


def _media_key(item: Any, by_bytes: bool) -> str | None:
    """A media item's identity for `_caption_key`: a path made absolute, or (`by_bytes`) a digest of its bytes."""
    if isinstance(item, str):
        return os.path.abspath(item)
    if not by_bytes:
        return None
    if isinstance(item, EmbeddedBytes):
        try:
            item = item.read()
        except ValueError:  # (unreadable bytes: the sample's own error, when it is answered)
            return None
    if isinstance(item, bytes):
        return "sha256:" + hashlib.sha256(item).hexdigest()
    return None


def _conversation_question(sample: Sample, record: Any, template: str | None) -> _Question:
    """A conversation as a question: its last assistant turn is the reference answer, the user turn
    before it the prompt (with `template` applied as to a question), everything earlier (a system
    prompt, earlier turns) the context, as chat and training give it to the model. Top-level
    `answers` and `choices` beside the turns mean what they mean in a question-answer record (the
    accepted answers; the options, asked in the turns as written), `id` and `metric` likewise."""
    source = sample.source
    try:
        sample.validate()
    except ValueError as err:
        raise DataError(source, "invalid_sample", str(err).removeprefix(f"{source}: ")) from None
    messages = sample.messages
    if messages[-1].role != "assistant":
        raise DataError(source, "missing_field", f"the last turn is a {messages[-1].role} turn; a held-out record "
                        "ends with the assistant's answer, which is the reference the reply is scored against")
    if len(messages) < 2 or messages[-2].role != "user":
        raise DataError(source, "missing_field", "the answer (the last assistant turn) must follow a user turn, the "
                        "question it answers")
    fields = {key: record[key] for key in ("answers", "choices", "metric")
              if isinstance(record, dict) and key in record}
    # The reference and the options are compared with what the model says, i.e. with the characters of
    # the turns: an OpenAI record's text "write <image>" is held escaped (no media place), not so replied.
    if "answers" not in fields:
        fields["answer"] = unescape_markers(messages[-1].content)
    # The question-answer reader's checks and meaning: choice letters, accepted answers, the metric.
    qa = parse_qa_record({"question": messages[-2].content, **fields}, source=source)
    asked = [unescape_markers(m.content).casefold() for m in messages[:-1] if m.role != "assistant"]
    for index, choice in enumerate(qa.choices):  # the turns are asked as written, so they must show the options
        if not any(choice.casefold() in text for text in asked):
            raise DataError(source, "missing_field", f"'choices'[{index}] {choice!r} is not in the question: a "
                            "conversation is asked as written, so its user turn lists the options (as in "
                            f"\"{OPTION_LETTERS[index]}. {choice}\" lines)")
    media = {modality: list(sample.media(modality)) for modality in MARKERS if sample.media(modality)}
    identifier = sample.meta.get("id")
    qa = dataclasses.replace(qa, media=media, id=None if identifier is None else str(identifier))
    prompt = _templated(messages[-2].content, template)
    context = [{"role": m.role, "content": m.content} for m in messages[:-2]]
    return _Question(source, qa, prompt, context)


def _templated(turn: str, template: str | None) -> str:
    """A user turn that holds its media markers and options already, with `template` applied to it as
    to a bare question."""
    return QARecord(media={}, question=turn, answers=[], choices=[], numbers=None, id=None,
                    metric=None).prompt(template)


# Scripts written without spaces between words, where an error rate counts characters (CER): kana, CJK
# ideographs (with their extensions and compatibility forms), Thai, Lao, Khmer, Myanmar. Korean is
# written with spaces between words and is not among them.
_UNSEGMENTED = ((0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x3FFFF),
                (0x0E00, 0x0EFF), (0x1780, 0x17FF), (0x1000, 0x109F))


def unsegmented_share(texts: Sequence[str]) -> float:
    """The share of the letters (not spaces, digits or punctuation) in `texts` that belong to a script
    written without spaces between words; 0 when there are no letters."""
    letters = [ord(char) for text in texts for char in text if char.isalpha()]
    if not letters:
        return 0.0
    return sum(any(low <= code <= high for low, high in _UNSEGMENTED) for code in letters) / len(letters)


_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def reply_numbers(text: str, count: int) -> tuple[np.ndarray, bool]:
    """The numbers a reply states, in order, and whether there were exactly `count`; otherwise
    they are cut, or padded with the last one (0 when there is none), so the reply is still scored."""
    found = [float(n) for n in _NUMBER.findall(text)]
    complete = len(found) == count
    found = found[:count]
    fill = found[-1] if found else 0.0
    return np.array(found + [fill] * (count - len(found)), dtype=np.float64), complete


def _numbers(text: str) -> list[float]:
    values = [float(v) for v in text.replace(",", " ").split()]
    if not values:
        raise ValueError("no numbers")
    return values


def _path(item: Any) -> Any:
    """Resolved media paths as `Path`s, so the runner checks they exist before a long run."""
    return Path(item) if isinstance(item, str) else item
