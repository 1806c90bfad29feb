"""Question-answer records: the simplest way to bring your own data, for training and evaluation.

    {"image": "cat.png", "question": "What animal is this?", "answer": "cat"}
    {"image": ["a.jpg", "b.jpg"], "question": "Which is larger?", "answer": "B",
     "choices": ["the left one", "the right one"]}
    {"audio": "clip.flac", "question": "Transcribe the audio.", "answer": "hello world"}
    {"series": [0.1, 0.4, 0.9, 1.6], "question": "Predict the next 2 values.", "answer": [2.5, 3.6]}
    {"video": "clip.mp4", "question": "Which digit appears first?", "answer": "7"}
    {"image": "street.jpg", "question": "What colour is the car?", "answers": ["red", "red", "dark red"]}

One record is one question about its media (`image`, `audio`, `series` or `video`: one item or a list, also
named `images`, `audios`, `videos`, as LLaVA and hub sets name a row's list; any file extension the decoder
reads; paths relative to the media folder, by default the data file's folder). The user turn is the media
markers, one line each (images, then videos, audio, series: `modrwkv.data.sample.unmarked_markers`), then the
question, then the choices as "A. ..." lines if
there are any: the same layout the LLaVA reader gives a record without markers, and the one the
prompt builder gives media passed without markers, so a model trained on these records is asked in
its own format. A question that holds its markers itself (`"<image>\\nWhat is it?"`) is used as
written.

The assistant turn (the training target) is `answer`, or the most frequent of `answers` (the first of those as
frequent: of VQA's ten human answers, which may be its `{"answer": ...}` entries, the consensus), except where the
answers are captions of the media (`QARecord.captions`: COCO's five per image): training then teaches each caption
as a sample of its own (`each_caption`), as BLIP and LLaVA train on COCO's captions; with `choices` it
is the option's letter (`answer` may be the letter, the option's text or, as an integer, its index from 0); a list
of numbers is written "2.5, 3.6". `modrwkv eval --task custom` reads the same records
with the same code, so training and evaluation prompts cannot drift apart.

A file that names the fields otherwise (a hub data set: `HuggingFaceM4/ChartQA`'s `query` and `label`) is read
with the reader's `columns` ({field: column}, `data.options.columns`), as LLaMA-Factory maps a data set's columns.
"""

from __future__ import annotations

import dataclasses
import math
import mimetypes
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..sample import MARKERS, Message, Sample, count_markers, unmarked_markers
from .base import (COLUMNS_OPTION, DataError, JsonRecordsReader, OnError, PathLike, check_columns, check_media,
                   lacks_fields, media_item, require, row_filter, turn_text)
from .captionsplits import split_names
from .hubrows import MEDIA_LIST_COLUMNS
from .webdataset import CAPTIONED, CaptionRecord

OPTION_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# The median number of words from which several answers per record are captions, not VQA's human answers: 89% of
# VQA's answers are one word and 99% at most three (Antol et al. 2015, section 3); COCO's captions have at least 8
# (Chen et al. 2015, the collection's instructions).
CAPTION_WORDS = 4
# The `Sample.meta` entry of a sample whose record holds several captions of its media (`QARecord.captions`): each
# of them, in the record's order; training teaches each as a sample of its own (`each_caption`).
CAPTIONS = "captions"


@dataclasses.dataclass
class QARecord:
    """A validated question-answer record: media items per modality, the question, the accepted
    answers (text; numbers for a numeric answer), the choices if any."""

    media: dict[str, list[Any]]
    question: str
    answers: list[str]
    choices: list[str]
    numbers: list[float] | None  # the answer as numbers when it was given as a list of numbers
    id: str | None
    metric: str | None

    def target(self) -> str:
        """The assistant turn: the most frequent answer, the first of those as frequent (the option letter when
        there are choices): of VQA's ten human answers the one VQAv2's `multiple_choice_answer` names, of several
        different accepted answers (a list of captions) the first."""
        return max(dict.fromkeys(self.answers), key=self.answers.count)

    def captions(self) -> list[str]:
        """The record's distinct answers when they are several captions of its media, [] otherwise. Captions are
        what the record says they are (`metric: cider`, which every caption reader writes: COCO's files, a shard's
        or a metadata row's list of captions), or, with no metric, three or more answers (no choices, not numbers)
        that are sentences, a median of `CAPTION_WORDS` words or more: the rule by which `modrwkv eval` scores a
        file's answers by CIDEr-D. VQA's ten one-word human answers are no captions: their consensus is taught."""
        distinct = list(dict.fromkeys(self.answers))
        if self.choices or self.numbers is not None or len(distinct) < 2:
            return []
        if self.metric is not None:
            return distinct if self.metric == "cider" else []
        words = float(np.median([len(answer.split()) for answer in self.answers]))
        return distinct if len(self.answers) >= 3 and words >= CAPTION_WORDS else []

    def prompt(self, template: str | None = None) -> str:
        """The user turn. `template` (with `{question}`, and optionally `{choices}`) replaces the
        default layout; the media markers always come first unless the question holds them."""
        has_markers = any(count_markers([self.question]).values())
        block = "" if has_markers else unmarked_markers({m: len(items) for m, items in self.media.items()})
        media = f"{block}\n" if block else ""
        choices = "".join(f"\n{OPTION_LETTERS[i]}. {c}" for i, c in enumerate(self.choices))
        if template is None:
            return f"{media}{self.question}{choices}"
        if "{question}" not in template:
            raise ValueError(f"prompt template {template!r} has no {{question}} placeholder")
        if "{choices}" in template:
            body = template.replace("{choices}", choices.lstrip("\n")).replace("{question}", self.question)
        else:  # the options follow the question, as in the default layout
            body = template.replace("{question}", f"{self.question}{choices}")
        return f"{media}{body}"


def parse_qa_record(record: Any, *, source: str = "", media_folder: PathLike | None = None,
                    verify_media: bool = False) -> QARecord:
    """Checks one record and resolves its media; raises `DataError` naming the source and field."""
    require(record, dict, "record", source)
    folder = Path(media_folder) if media_folder is not None else None
    media: dict[str, list[Any]] = {}
    for modality in MARKERS:  # the encoders' modalities, and video (read as image frames)
        value = _media_value(record, modality, source)
        if value is None:
            continue
        if modality == "series":
            media[modality] = _series_items(value, folder, source)
        else:
            values = value if isinstance(value, list) else [value]
            media[modality] = [media_item(v, modality, folder, source) for v in values]
            if verify_media:
                for item in media[modality]:
                    check_media(item, modality, source)
    question = record.get("question")
    if question is None:
        raise lacks_fields(record, "qa", source, f"no 'question' (fields: {sorted(record)})")
    question = require(question, str, "'question'", source)
    _check_media_field_names(record, source)
    choices = [str(c) for c in require(record.get("choices") or [], list, "'choices'", source)]
    if len(choices) > len(OPTION_LETTERS):
        raise DataError(source, "wrong_type", f"{len(choices)} choices; at most {len(OPTION_LETTERS)}")
    if ("answer" in record) == ("answers" in record):
        raise DataError(source, "missing_field", "give exactly one of 'answer' or 'answers' "
                        f"(fields: {sorted(record)})")
    numbers = None
    if "answers" in record:
        answers = require(record["answers"], list, "'answers'", source)
        if not answers:
            raise DataError(source, "empty_answer", "'answers' is an empty list: give at least one answer")
        answers = [_check_answer(_human_answer(value, index, source), f"'answers'[{index}]", source)
                   for index, value in enumerate(answers)]
    else:
        answer = record["answer"]
        if isinstance(answer, list):
            if not answer or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in answer):
                raise DataError(source, "wrong_type", "a list 'answer' must be numbers (a forecast); for several "
                                "accepted answers use 'answers' (a file that names them 'answer', as lmms-lab's "
                                f"COCO-Caption2017: {COLUMNS_OPTION} {{answers: answer}}, modrwkv init / eval "
                                "--columns answers=answer)")
            missing = next((i for i, v in enumerate(answer) if not math.isfinite(v)), None)
            if missing is not None:
                raise DataError(source, "empty_answer", f"'answer'[{missing}] is {answer[missing]}: a forecast "
                                "answer needs a number at every step")
            numbers = [float(v) for v in answer]
            answers = [format_numbers(numbers)]
        else:
            answers = [_check_answer(answer, "'answer'", source)]
    if choices:
        answers = [_choice_letter(a, choices, source) for a in answers]
    answers = [str(a) for a in answers]
    metric = record.get("metric")
    if metric is not None:
        require(metric, str, "'metric'", source)
    identifier = record.get("id")
    return QARecord(media, question, answers, choices, numbers, None if identifier is None else str(identifier),
                    metric)


TEXT_FIELDS = ("question", "answer", "answers", "choices", "id", "metric")
# A record's fields, which the reader's `columns` may read from other columns.
QA_FIELDS = (*TEXT_FIELDS, *MARKERS)


# Why `label_column` and `columns` are not given together (the reader's options, `eval --task custom`'s).
LABEL_AND_COLUMNS = (f"data.options.label_column chooses the answer of plain rows, and {COLUMNS_OPTION} reads the rows "
                     "as records of the fields it maps: give one (the label's column as 'answer' in columns)")


def qa_columns(columns: Any) -> dict[str, str] | None:
    """The reader's `columns` ({field: the file's column}) checked (`base.check_columns`); None for none."""
    return check_columns(columns, QA_FIELDS, "qa")


# A modality's field of a list of items, as hub rows name it (`images`: the_cauldron's, LLaVA's)
_PLURALS = {kind: field for field, kind in MEDIA_LIST_COLUMNS.items()}


def _media_value(record: dict[str, Any], modality: str, source: str) -> Any:
    """The record's `modality` field, or its plural (`images`, `audios`, `videos`: a list, as LLaVA, ShareGPT and hub
    sets such as the_cauldron name a row's images); None for neither; DataError for both."""
    plural = _PLURALS.get(modality)
    if plural is None or record.get(plural) is None:
        return record.get(modality)
    if record.get(modality) is not None:
        raise DataError(source, "wrong_type", f"both {modality!r} and {plural!r}: give the record's {modality} items "
                        "in one of them (one item or a list)")
    return record[plural]


def _check_media_field_names(record: dict[str, Any], source: str) -> None:
    """Fields this format does not read are left aside (records may carry their own metadata), but a
    record without media whose other field names a media file ('img': 'a.png', 'images': [...]) meant
    it as its media: read as text alone, it would train or be scored silently without them."""
    if any(modality in record or _PLURALS.get(modality) in record for modality in MARKERS):
        return
    for key, value in record.items():
        if key in TEXT_FIELDS:  # a question may well name a file
            continue
        values = value if isinstance(value, list) else [value]
        kinds = {(mimetypes.guess_type(v)[0] or "").split("/")[0] for v in values if isinstance(v, str)}
        kind = next((k for k in ("image", "audio", "video") if k in kinds), None)
        if kind is not None:
            raise DataError(source, "unknown_field", f"field {key!r} names {kind} files, but qa records read media "
                            f"only from {', '.join(repr(m) for m in MARKERS)} (each one item or a list; lists also as "
                            "'images', 'audios', 'videos'): rename "
                            f"it to {kind!r}, or drop it to train on the text alone (fields: {sorted(record)})")


def _check_answer(value: Any, field: str, source: str) -> str | int | float:
    """One answer: text or a number (a whole one as an integer), and not empty, null or NaN (`turn_text`)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value):
        if math.isinf(value):
            raise DataError(source, "wrong_type", f"{field} is {value}, not an answer")
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            # pandas stores an integer column with a gap as floats: the label 7.0 is the class 7, answered "7"
            return int(value)
        return value
    return turn_text(value, field, source, answer=True)


def format_numbers(values: Sequence[float]) -> str:
    """A numeric answer as text: "2.5, 3.6" (shortest exact form of each value)."""
    return ", ".join(f"{v:g}" if float(v).is_integer() else repr(float(v)) for v in values)


def _human_answer(value: Any, index: int, source: str) -> Any:
    """One of `answers`: as written, or the `answer` of an annotator's entry (VQAv2's, OK-VQA's and VizWiz's
    `{"answer": "red", "answer_confidence": "yes", "answer_id": 1}`, as their hub copies store them)."""
    if not isinstance(value, dict):
        return value
    if "answer" not in value:
        raise DataError(source, "wrong_type", f"'answers'[{index}] is an object without 'answer' (fields: "
                        f"{sorted(value)}): give the answers as text, or as VQA's {{\"answer\": ...}} entries")
    return value["answer"]


def _choice_letter(answer: str | int | float, choices: Sequence[str], source: str) -> str:
    """The option letter an answer names: an integer is the option's index from 0 (the hub copies of ScienceQA,
    MMLU and A-OKVQA store it so), text the letter or the option's text."""
    letters = OPTION_LETTERS[: len(choices)]
    if isinstance(answer, int):
        if not 0 <= answer < len(choices):
            text = (f"; to name the option {str(answer)!r} by its text, write the answer as text: \"{answer}\""
                    if str(answer) in choices else "")
            raise DataError(source, "wrong_type", f"answer {answer} is no option's index (0 to {len(choices) - 1} "
                            f"for the choices {list(choices)}){text}")
        return letters[answer]
    answer = str(answer)
    if answer.strip().upper() in letters and len(answer.strip()) == 1:
        return answer.strip().upper()
    if answer in choices:
        return letters[list(choices).index(answer)]
    raise DataError(source, "wrong_type", f"answer {answer!r} is neither an option letter ({', '.join(letters)}) "
                    f"nor one of the choices {list(choices)}")


def _series_items(value: Any, folder: Path | None, source: str) -> list[np.ndarray]:
    """One series given inline ([T] numbers, or [T][channels] rows), or .npy file path(s)."""
    paths = [value] if isinstance(value, str) else value if isinstance(value, list) and value and all(
        isinstance(v, str) for v in value) else None
    if paths is None:
        try:
            arrays = [np.asarray(value, dtype=np.float32)]
        except (TypeError, ValueError):
            raise DataError(source, "wrong_type", "'series' must be numbers, rows of numbers or .npy paths") from None
    else:
        arrays = []
        for item in paths:
            path = Path(media_item(item, "series", folder, source))
            if path.suffix != ".npy":
                raise DataError(source, "wrong_type", f"series file {path} must be .npy (or give the numbers inline)")
            try:
                array = np.load(path, allow_pickle=False)
            except (OSError, ValueError, EOFError) as err:
                raise DataError(source, "unreadable_media", f"cannot read series file {path}: {err}") from None
            if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
                raise DataError(source, "wrong_type", f"series file {path} holds {array.dtype}, not numbers")
            arrays.append(array)
    for array in arrays:
        if array.ndim not in (1, 2) or array.shape[0] < 1:
            raise DataError(source, "wrong_type", f"a series must be [T] or [T, channels] numbers, got shape {array.shape}")
        if not np.isfinite(array).all():
            position = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
            raise DataError(source, "wrong_type", f"the series has a missing or non-finite value (null, NaN or "
                            f"infinity) at {list(position)}: write a number there")
    return [a.astype(np.float32) for a in arrays]


def qa_to_sample(record: Any, *, source: str = "", media_folder: PathLike | None = None,
                 verify_media: bool = False) -> Sample:
    """One question-answer record as a training sample (user: markers + question [+ choices];
    assistant: the answer); a tar's captioned sample (`CaptionRecord`) is flagged `meta[CAPTIONED]`, a record's
    several captions are `meta[CAPTIONS]` (`each_caption` makes a sample of each)."""
    qa = parse_qa_record(record, source=source, media_folder=media_folder, verify_media=verify_media)
    messages = [Message("user", qa.prompt()), Message("assistant", qa.target())]
    meta: dict[str, Any] = {"id": qa.id} if qa.id is not None else {}
    if isinstance(record, CaptionRecord):
        meta[CAPTIONED] = True
    captions = qa.captions()
    if captions:
        meta[CAPTIONS] = captions
    return Sample(messages=messages, images=qa.media.get("image", []), audios=qa.media.get("audio", []),
                  series=qa.media.get("series", []), videos=qa.media.get("video", []), source=source, meta=meta)


def each_caption(sample: Sample) -> list[Sample]:
    """The samples training makes of one: a sample of each of its captions (`meta[CAPTIONS]`), each answered with
    that caption and otherwise the same (media shared, not copied); the sample itself when it has none. An image's
    five COCO captions are five samples, as Karpathy's split and BLIP count COCO's training pairs, and as a table
    of one caption per row (Kaggle's Flickr8k captions.txt) gives them: every caption is taught, none favoured."""
    captions = sample.meta.get(CAPTIONS)
    if not captions:
        return [sample]
    meta = {key: value for key, value in sample.meta.items() if key != CAPTIONS}
    return [dataclasses.replace(sample, messages=[*sample.messages[:-1], Message("assistant", caption)],
                                meta=dict(meta)) for caption in captions]


class QAReader(JsonRecordsReader):
    """Reads question-answer JSON/JSONL/Parquet files, WebDataset tars, folders of class folders and Hugging Face
    metadata folders (see the module docstring). Without `media_folder`, media paths are relative to each data
    file's folder. `prompt` is the question of a tar's captioned samples (media + .txt;
    `modrwkv.data.readers.webdataset`) and of a metadata folder's captioned rows (`hffolders`), by
    default "Write a short caption for the image." ("... the video." for a video), and of a class folder's
    files (`modrwkv.data.readers.classfolders`) and a hub Parquet file's labelled rows (`hubrows`), by default
    "What is shown in the image?" ("What is said or heard in the audio?", "What is shown in the video?").
    `label_column` is the column such rows answer with (None: the file's ClassLabel column, else `label`).
    `columns` ({field: the file's column}, e.g. `{"question": "query", "answers": "label"}` for ChartQA's hub copy)
    reads each JSON / JSONL record and Parquet row with those columns as the fields (`base.renamed_records`): such
    a file is read as records, never as plain rows. `split` (a name or a list) reads the images of those splits of a
    Karpathy split file (dataset_coco.json: `[train, restval]`) or of the Flickr_8k.*Images.txt lists beside
    Flickr8k.token.txt (`captionsplits`); a file of several splits is refused without it. `where` ({column: a value
    or a list}, e.g. `{"fold": [1, 2, 3, 4]}` for ESC-50's esc50.csv) reads only the rows of a table of media rows,
    a metadata file, JSON / JSONL records or a Parquet / Arrow file whose cells are among those values
    (`base.where_rows`)."""

    format = "qa"

    def __init__(
        self,
        paths: PathLike | Sequence[PathLike],
        *,
        media_folder: PathLike | None = None,
        verify_media: bool = False,
        prompt: str | None = None,
        label_column: str | None = None,
        columns: Mapping[str, str] | None = None,
        split: str | Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
        on_error: OnError = "skip",
        max_examples: int = 5,
        log_limit: int = 20,
    ) -> None:
        self.verify_media = verify_media
        self.caption_prompt = prompt
        self.label_column = label_column
        self.field_columns = qa_columns(columns)
        self.splits = split_names(split)
        self.where = row_filter(where)
        if label_column is not None and self.field_columns:
            raise ValueError(LABEL_AND_COLUMNS)
        super().__init__(paths, media_folder, on_error=on_error, max_examples=max_examples, log_limit=log_limit)

    def _convert(self, record: Any, source: str, folder: Path) -> Sample:
        return qa_to_sample(record, source=source, media_folder=folder, verify_media=self.verify_media)
