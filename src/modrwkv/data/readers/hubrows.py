"""The plain rows of a Hugging Face hub data set's Parquet files as records: a media column and a label, caption or
transcript, as `uoft-cs/cifar10`, `ylecun/mnist`, `food101`, `google/speech_commands` or a captioning set store
them, with no question and no answer:

    img: {"bytes": <PNG>, "path": null}   label: 3        (the schema's `huggingface` metadata: label is a
                                                            ClassLabel named airplane, automobile, bird, cat, ...)

Each row becomes the record a WebDataset sample with that media would (`webdataset.media_record`, the one mapping,
which tar shards and metadata folders go through): with the `label_column` chosen, or a ClassLabel column beside an
image or video, a labelled sample, the text columns left aside (`HubLayout.label_first`: hateful_memes' `text` is
the meme's words, no caption; beside audio a transcript answers first, TED-LIUM's `gender` ClassLabel being a fact
about the speaker of an ASR set); else an image or video with a caption column (`text`, `caption`: `CAPTION_KEYS`,
as a metadata folder's; a list of captions: flickr30k's) is a captioned sample, scored by CIDEr-D; audio with a
transcript column (`TEXT_KEYS`) an ASR record; otherwise the label makes a labelled sample. A labelled sample is
asked the reader's `prompt` (default `CLASS_PROMPTS`) and answered with the label, scored by exact match. A file
whose columns are a record format's (`question`, `conversations`, `messages`, an ASR manifest's `audio_filepath`)
is read as those records, whatever `label_column` says (it chooses among plain rows' columns, and may be given for
other files read alongside); so is a file read with qa's `columns` (`data.options.columns`, {field: column}: its
rows renamed, `base.file_records`). `modrwkv init` names the columns plain rows leave aside (`HubLayout.describe`):
ChartQA's question `query` and answers `label` beside its ClassLabel `human_or_machine` would otherwise train a
classification unseen.

- The media column is the one whose `huggingface` feature type is `Image`, `Audio` or `Video` (what `datasets`
  writes in the schema's metadata); without such metadata (pandas, pyarrow), the one named as hub sets name it
  (`MEDIA_COLUMNS`: `image`, `img`, `audio`, `video`, ...). Its value is a `{bytes, path}` struct or the bytes (read
  when the sample is built, `base.TableBytes`), or a path, relative to the file's folder (or the media folder); or
  a list of them (`Sequence(Image())`; by name `MEDIA_LIST_COLUMNS`: `images`, ...), the row's media in order.
  An .arrow file of `datasets` (save_to_disk's, the cache's) reads as the Parquet file of the same data set
  (`base.open_table_file`), and its rows are named "file.arrow:row N" alike.
- The label is the `ClassLabel` column, answered with its class name (`names[i]`), not the number; without one, a
  `label` / `labels` column as written. A file without `huggingface` metadata takes the features from the
  dataset_info.json beside an .arrow file (`saved_features`), else from the data set's card where the hub keeps
  them, the YAML header of a README.md in its folder or up to three above
  (`dataset_info: features: - name: label, dtype: class_label: names: {'0': airplane, ...}`; `card_features`).
  `label_column` (`data.options.label_column`, `init` / `eval --label-column`) names the column to answer with, and must where the file has several ClassLabel columns
  (cifar100's `fine_label` and `coarse_label`) and no transcript answers before them (FLEURS' `gender`, `lang_id` and
  `lang_group_id` beside its `transcription`); a label column chosen so is the answer even beside a caption.
- A feature counts only where the column holds what it describes (`_stored`: a ClassLabel over integers, media over
  a struct, bytes or a path), as `datasets` reads a file rewritten by pyarrow with its labels mapped to names.
- Several media columns, none (with a label), a label column that is not there, or a multi-label one (a list per
  row: `Sequence(ClassLabel)`) stop the reading with one line naming the file and its columns. A row whose media
  are null, whose label is null or no class (a ClassLabel's -1, which `datasets` writes for "no label"), is a bad
  record named "file.parquet:row N" with the column.

JSON / JSONL records of the same shape (`{"image": "a.png", "label": "cat"}`: one media field of those names
holding a path, and a label, caption or transcript field, no record format's fields) are mapped so too, record by
record (`plain_records`); a record without them is left as it is, for its reader to name what is missing.

Rows of conversations about images as `HuggingFaceM4/the_cauldron` (its 50 subsets) and `HuggingFaceM4/Docmatix`
store them, in Parquet or as JSON / JSONL records (images as paths), are the LLaVA records they stand for
(`turns_record`):

    images: [{"bytes": <PNG>, "path": null}, ...]   (Sequence(Image()))
    texts:  [{"user": "What is shown?", "assistant": "A square.", "source": "ai2d"}, ...]

Each of `texts` is a user turn and the assistant's answer; the row's images go before the first user turn's text,
where Idefics2 / SmolVLM's training put them (HuggingFace's nanoVLM reads these rows so: data/datasets.py,
`_get_messages`), which is where the LLaVA converter puts images its text has no marker for. The text is text: a
literal `<image>` in it is no media place (`escape_markers`). `source` (the subset's name) is left aside. A
`texts` list of strings (another set's column) is no turns: such a row is read as any other.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..sample import escape_markers
from .asr import TEXT_KEYS
from .base import (COLUMNS_OPTION, SAVED_INFO, WHERE_OPTION, DataError, as_rows, is_binary_type, is_list_type,
                   is_media_table, is_metadata_file, is_series_file, is_table_file, is_tar, json_records, media_kind,
                   open_table_file, record_format, require, table_records, turn_text, where_rows)
from .webdataset import AUDIO_CAPTION_KEY, CAPTION_KEYS, LABEL_KEY, RECORD_KEYS, media_record

# The `huggingface` feature types of media, and the kind of media each is.
MEDIA_TYPES = {"Image": "image", "Audio": "audio", "Video": "video"}
# A media column by its name, where the file has no `huggingface` metadata: the names hub data sets use.
MEDIA_COLUMNS = {"image": "image", "img": "image", "picture": "image", "photo": "image", "audio": "audio",
                 "speech": "audio", "video": "video"}
# A column of a list of media per row by its name (the_cauldron's, LLaVA's and ShareGPT's `images`).
MEDIA_LIST_COLUMNS = {"images": "image", "audios": "audio", "videos": "video"}
# A label column by its name, where no column is a ClassLabel.
LABEL_COLUMNS = ("label", "labels")
# the_cauldron's and Docmatix's column of a row's turns, each {"user", "assistant", "source"} (`turns_record`)
TURNS_COLUMN = "texts"
# What `modrwkv init` says of a Parquet file of such rows.
TURNS_NOTE = (f"rows of the_cauldron's layout ('images' and {TURNS_COLUMN!r}), read as LLaVA conversations: each "
              f"entry of {TURNS_COLUMN!r} a user turn and its answer, every answer trained, the images before the "
              "first user turn")
# The columns of a record format's file: such rows are records as they are (`_fields_format`'s keys); so are rows of
# turns (`TURNS_COLUMN`, told by what it holds: `_turns_type`, `_holds_turns`), as the records they stand for.
_RECORD_COLUMNS = (*RECORD_KEYS, "audio_filepath")
# How the setting that chooses a label column is given, for messages.
LABEL_OPTION = "data.options.label_column"
LABEL_SETTING = f"{LABEL_OPTION} (modrwkv init / eval --label-column)"
# How the mapping that reads plain rows as question-answer records is given, for messages.
COLUMNS_SETTING = f"{COLUMNS_OPTION} (modrwkv init --columns question=COLUMN,answer=COLUMN)"
# The most columns left aside `HubLayout.describe` names (a hub file may have dozens).
MAX_OTHERS_NAMED = 5


@dataclasses.dataclass(frozen=True)
class HubLayout:
    """What a file's plain rows hold: the media column and its kind, the label column (None: none) and its class
    names (a ClassLabel's; None: answered as written), the text column (a caption or transcript; None: none), and
    whether the label was chosen (`label_column`)."""

    media: str
    kind: str
    label: str | None
    names: list[str] | None
    text: str | None
    chosen: bool = False
    aside: tuple[str, ...] = ()  # ClassLabel columns a transcript answers before (several, none chosen: FLEURS')
    # the file's other columns, which a row's record leaves aside (ChartQA's question `query` and answers `label`)
    others: tuple[str, ...] = ()

    @property
    def label_first(self) -> bool:
        """Whether the label answers whatever text the row has: it was chosen, or is a ClassLabel beside an image
        or video, which declares the rows a classification's (hateful_memes' `text` is the meme's words, not a
        caption of it). Beside audio a transcript answers unless the label is chosen: speech sets keep speaker
        facts as ClassLabels (TED-LIUM's `gender`) beside the transcript they are for. A sound's caption
        (AudioCaps') is a caption, after a ClassLabel as an image's."""
        if self.label is None:
            return False
        return self.chosen or (self.names is not None and not self.transcribed)

    @property
    def transcribed(self) -> bool:
        """Whether the text column is a transcript: beside audio, but for AudioCaps' `caption` (a sound's)."""
        return self.kind == "audio" and self.text is not None and self.text != AUDIO_CAPTION_KEY

    def describe(self) -> str:
        """Which column a row is answered with, and which are left aside, for `modrwkv init`'s notes: a file whose
        rows are questions stored under other names is seen to be read as a classification (ChartQA's)."""
        return self._answered() + self._others_aside()

    def _others_aside(self) -> str:
        if not self.others:
            return ""
        shown = ", ".join(map(repr, self.others[:MAX_OTHERS_NAMED]))
        more = f" and {len(self.others) - MAX_OTHERS_NAMED} more" if len(self.others) > MAX_OTHERS_NAMED else ""
        return f"; columns left aside: {shown}{more} (to read the rows as questions, {COLUMNS_SETTING})"

    def _answered(self) -> str:
        media = f"the {self.kind} of {self.media!r}"
        text = "transcript" if self.transcribed else "caption"
        if self.label is None or not self.label_first and self.text is not None:
            if self.text is None:
                return f"{media}, with no label or {text} column"
            unused = self.aside if self.label is None else (self.label,)
            aside = ""
            if len(unused) == 1:
                aside = f"; {unused[0]!r} is left aside (to answer with it, {LABEL_SETTING})"
            elif unused:
                aside = f"; {', '.join(map(repr, unused))} are left aside (to answer with one, {LABEL_SETTING})"
            return f"{media} answered with the {text} {self.text!r}{aside}"
        classes = ""
        if self.names is not None:
            shown = ", ".join(self.names[:3]) + (", ..." if len(self.names) > 3 else "")
            classes = f" (ClassLabel of {len(self.names)} classes: {shown})"
        why = LABEL_OPTION if self.chosen else (f"a ClassLabel answers before a {text}; to answer with {self.text!r}, "
                                                f"remove {self.label!r} with datasets' Dataset.remove_columns")
        aside = "" if self.text is None else f"; {self.text!r} is left aside ({why})"
        return f"{media} answered with the label {self.label!r}{classes}{aside}"


def hub_features(schema: Any) -> dict[str, Any]:
    """The `datasets` features a Parquet schema's `huggingface` metadata describes (column -> its feature, a dict
    with `_type`); {} for a file without it (pandas, pyarrow) or with metadata that does not parse."""
    raw = (schema.metadata or {}).get(b"huggingface")
    try:
        features = json.loads(raw)["info"]["features"] if raw else {}
    except (ValueError, KeyError, TypeError):
        return {}
    return features if isinstance(features, dict) else {}


def saved_features(path: Path) -> dict[str, Any]:
    """The features of an .arrow file's data set as `datasets` describes it beside the file (`save_to_disk`'s, or
    its cache's, dataset_info.json: `SAVED_INFO`), as `hub_features` gives a schema's; {} for a Parquet file, without
    that file or with one that does not parse. `datasets` writes them into an .arrow file's schema too: this is for
    a file whose schema lost them."""
    info = path.parent / SAVED_INFO
    if path.suffix.lower() != ".arrow" or not info.is_file():
        return {}
    try:
        features = json.loads(info.read_bytes())["features"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return features if isinstance(features, dict) else {}


# The hub card's feature dtypes (README.md's `dataset_info`) as `datasets`' feature types.
_CARD_TYPES = {"image": "Image", "audio": "Audio", "video": "Video"}
# How many folders above a data file its card may be: repo/README.md beside repo/data/train-*.parquet, or
# repo/plain_text/train-*.parquet, or repo/data/en/train-*.parquet.
_CARD_LEVELS = 3


def card_features(path: Path) -> dict[str, Any]:
    """The features a hub data set's card describes (the YAML header of the first README.md in the data file's
    folder or up to `_CARD_LEVELS` above), as `hub_features` gives a schema's: media dtypes and class labels, a
    column whose configs' features disagree left out; {} without a card or one that does not parse."""
    folder = path.absolute().parent
    card = next((above / "README.md" for above in [folder, *folder.parents][:_CARD_LEVELS + 1]
                 if (above / "README.md").is_file()), None)
    if card is None:
        return {}
    try:
        stat = card.stat()
    except OSError:
        return {}
    # a copy: the callers' (one per shard: detection, init's notes, the reader) share one parse of the card
    return {name: dict(feature) for name, feature in _parsed_card(str(card), stat.st_mtime_ns, stat.st_size).items()}


@functools.lru_cache(maxsize=16)
def _parsed_card(card: str, mtime_ns: int, size: int) -> dict[str, Any]:
    """`card_features` of the card at `card` as it is at (`mtime_ns`, `size`): a YAML header of 1,000 class names
    takes 37 ms to parse, which 300 shards under one card took per shard, twice in `modrwkv init` (the 300 lookups
    after the first parse now take 6 ms)."""
    import yaml

    try:
        text = Path(card).read_text(encoding="utf-8")
        header = yaml.safe_load(text.split("\n---", 1)[0].removeprefix("---")) if text.startswith("---") else None
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    infos = header.get("dataset_info") if isinstance(header, dict) else None
    found: dict[str, list[dict[str, Any]]] = {}
    for info in infos if isinstance(infos, list) else [infos]:
        features = info.get("features") if isinstance(info, dict) else None
        for feature in features if isinstance(features, list) else []:
            converted = _card_feature(feature.get("dtype")) if isinstance(feature, dict) else None
            if converted is not None and isinstance(feature.get("name"), str):
                found.setdefault(feature["name"], []).append(converted)
    return {name: given[0] for name, given in found.items() if all(other == given[0] for other in given)}


def _card_feature(dtype: Any) -> dict[str, Any] | None:
    """A card's feature dtype (`image`, `{"class_label": {"names": {"0": "airplane", ...}}}`) as a schema's."""
    if isinstance(dtype, str) and dtype in _CARD_TYPES:
        return {"_type": _CARD_TYPES[dtype]}
    listed = next((dtype[key] for key in ("list", "sequence") if key in dtype), None) \
        if isinstance(dtype, dict) else None
    if isinstance(listed, str) and listed in _CARD_TYPES:  # `- list: image` (datasets 4), `- sequence: image`
        return {"_type": "List", "feature": {"_type": _CARD_TYPES[listed]}}
    names = dtype.get("class_label", {}).get("names") if isinstance(dtype, dict) else None
    if not isinstance(names, dict):
        return None
    try:
        numbered = {int(number): str(name) for number, name in names.items()}
    except (TypeError, ValueError):
        return None
    if sorted(numbered) != list(range(len(numbered))):
        return None
    return {"_type": "ClassLabel", "names": [numbered[i] for i in range(len(numbered))]}


def _type(features: dict[str, Any], column: str) -> str | None:
    feature = features.get(column)
    return feature.get("_type") if isinstance(feature, dict) else None


def class_names(features: dict[str, Any], column: str) -> list[str] | None:
    """The class names of a ClassLabel column (None: the column is none)."""
    names = features[column].get("names") if _type(features, column) == "ClassLabel" else None
    return [str(name) for name in names] if isinstance(names, list) else None


def parquet_class_names(path: Path, column: str) -> list[str] | None:
    """The class names of a Parquet file's ClassLabel column `column` (None: it is none, or the file has no
    `huggingface` metadata): a metadata folder's `metadata.parquet` written by `datasets` (`hffolders`)."""
    with open_table_file(path) as handle:
        return class_names(_stored(hub_features(handle.schema_arrow), handle.schema_arrow), column)


def file_features(path: Path, schema: Any) -> dict[str, Any]:
    """The `datasets` features of a Parquet / Arrow file of `schema`: its `huggingface` metadata's, else those of
    save_to_disk's dataset_info.json beside it, else its hub card's; each kept only where the column holds it."""
    return _stored(hub_features(schema) or saved_features(path) or card_features(path), schema)


def hub_layout(path: Path, label_column: str | None = None) -> HubLayout | None:
    """The layout of a Parquet file's plain rows (the module docstring), from its schema; None for a file of
    records (its columns a record format's, or no media and no label: the records' readers name what is missing).
    DataError (unreadable_file) naming the file and its columns for several media columns, a label without media,
    several ClassLabel columns and no `label_column` (but beside audio and a transcript), a `label_column` the file
    lacks, or a multi-label column."""
    with open_table_file(path) as handle:
        schema = handle.schema_arrow
    columns = list(schema.names)
    shown = ", ".join(columns)
    if _record_schema(schema):  # records, whatever label_column says (other files')
        return None
    if label_column is not None and label_column not in columns:
        raise DataError(str(path), "unreadable_file", f"{LABEL_OPTION} {label_column!r} is no column "
                        f"of the file (its columns: {shown})")
    features = file_features(path, schema)
    kinds = {column: kind for column in columns if (kind := _feature_media(features, column)) is not None}
    if not kinds:  # (by name: a pandas or pyarrow file, or a `datasets` one of paths as strings)
        kinds = {column: kind for column in columns if (kind := _named_media(column, schema.field(column).type))}
    media = list(kinds)
    labels = [column for column in columns if _type(features, column) == "ClassLabel"]
    named_label = next((column for column in LABEL_COLUMNS if column in columns), None)
    if len(media) > 1:
        raise DataError(str(path), "unreadable_file", f"{len(media)} media columns ({', '.join(media)}): a row "
                        "becomes one record with one image, audio clip or video; keep one column (datasets: "
                        "Dataset.remove_columns)")
    if not media:
        labelled = label_column or ", ".join(labels) or named_label
        if labelled is None:
            return None
        raise DataError(str(path), "unreadable_file", f"a label column ({labelled}) but no media column (its columns: "
                        f"{shown}): a row's image, audio or video is a column of datasets' Image(), Audio() or Video() "
                        "type (in the file's huggingface metadata, or its hub card's dataset_info), or one named "
                        f"{', '.join(MEDIA_COLUMNS)} holding {{bytes, path}}, the bytes or a path")
    kind = kinds[media[0]]
    keys = CAPTION_KEYS if kind in ("image", "video") else (*TEXT_KEYS, AUDIO_CAPTION_KEY)
    text = next((column for column in keys if column in columns), None)
    aside: tuple[str, ...] = ()
    if label_column is not None:
        label = label_column
    elif len(labels) > 1 and kind == "audio" and text not in (None, AUDIO_CAPTION_KEY):
        # a transcript answers before a ClassLabel (`HubLayout.label_first`), so before several: FLEURS keeps the
        # speaker's gender, the language and its group as ClassLabels beside each transcription
        label, aside = None, tuple(labels)
    elif len(labels) > 1:
        raise DataError(str(path), "unreadable_file", f"{len(labels)} ClassLabel columns ({', '.join(labels)}): "
                        f"choose the one to answer with, {LABEL_SETTING}: " + " or ".join(labels))
    else:
        label = labels[0] if labels else named_label
    # the label, or with nothing else to answer with a list of ClassLabel: told from the file's types, not row by
    # row, where every row would be refused
    listed = [column for column in columns if is_list_type(schema.field(column).type)
              and (column == label or label is None and text is None and _multi_label(features, column))]
    if listed:
        declared = " of ClassLabel" if _multi_label(features, listed[0]) else ""
        raise DataError(str(path), "unreadable_file", f"{listed[0]!r} is multi-label (a list{declared} per row), "
                        "which is not supported: a row is answered with one label; keep one label per row "
                        f"(datasets: Dataset.map), or answer with another column, {LABEL_SETTING}")
    others = tuple(column for column in columns if column not in (media[0], label, text, *aside, "id"))
    return HubLayout(media[0], kind, label, class_names(features, label) if label else None, text,
                     label_column is not None, aside, others)


# The `huggingface` feature types of a list of values (datasets 4's `List`, older versions' `Sequence`).
_LIST_TYPES = ("List", "LargeList", "Sequence")


def _feature_media(features: dict[str, Any], column: str) -> str | None:
    """The kind of media ("image", ...) a column's feature says it holds, one per row (`Image()`) or a list
    (`Sequence(Image())`: several images of one row, as LLaVA's `images`); None for any other column."""
    if _type(features, column) in _LIST_TYPES:
        inner = features[column].get("feature")
        return MEDIA_TYPES.get(inner.get("_type")) if isinstance(inner, dict) else None
    return MEDIA_TYPES.get(_type(features, column) or "")


def _named_media(column: str, data_type: Any) -> str | None:
    """The kind of media a column of a file without features holds by its name (`MEDIA_COLUMNS`; a list of them:
    `MEDIA_LIST_COLUMNS`) and type (`_media_type`: a struct of bytes, the bytes or a path); None for any other."""
    name = column.lower()
    if name in MEDIA_LIST_COLUMNS:
        return MEDIA_LIST_COLUMNS[name] if is_list_type(data_type) and _media_type(data_type.value_type) else None
    return MEDIA_COLUMNS.get(name) if _media_type(data_type) else None


def _multi_label(features: dict[str, Any], column: str) -> bool:
    """Whether a column's feature is a list of ClassLabel (`Sequence(ClassLabel)`: several labels per row)."""
    inner = features[column].get("feature") if _type(features, column) in _LIST_TYPES else None
    return isinstance(inner, dict) and inner.get("_type") == "ClassLabel"


def _stored(features: dict[str, Any], schema: Any) -> dict[str, Any]:
    """`features` without those the file's columns cannot hold as written: a ClassLabel over a column that is not
    integers, an Image, Audio or Video over one that holds no media (`_media_type`), a list over one that is no
    list (of media, for a list of media). pyarrow keeps a file's `huggingface` metadata when it rewrites the file
    with a column changed (labels mapped to their names), and `datasets` trusts a feature only where the stored type is its own
    (`Features.from_arrow_schema`): such a column is read as written."""
    import pyarrow

    holds = {"ClassLabel": pyarrow.types.is_integer, **{name: _media_type for name in MEDIA_TYPES},
             **{name: is_list_type for name in _LIST_TYPES}}

    def stored(column: str) -> bool:
        data_type = schema.field(column).type
        if not holds.get(_type(features, column), lambda _: True)(data_type):
            return False
        return _type(features, column) not in _LIST_TYPES or _feature_media(features, column) is None \
            or _media_type(data_type.value_type)

    return {column: feature for column, feature in features.items() if column in schema.names and stored(column)}


def takes_label_column(path: Path) -> bool:
    """Whether `label_column` chooses what some record of the data file `path` answers: a Parquet file of plain
    rows (no record format's columns), a table of media rows (`hffolders.media_table_records`: Kaggle's APTOS
    train.csv answered with `diagnosis`), a CIFAR-100 batch (`coarse_labels`), or a JSON / JSONL file one of whose
    first 100 records is plain (`plain_records`); not a file of records, a tar, a folder, a metadata file or a series file, whose answers are
    their own."""
    from .torchvision_sets import has_label_choice, is_torchvision_set  # (it builds on this module)

    if is_media_table(path) or has_label_choice(path):
        return True
    if is_torchvision_set(path):
        return False
    if path.is_dir() or is_metadata_file(path) or is_tar(path) or is_series_file(path) or media_kind(path):
        return False
    if is_table_file(path):
        with open_table_file(path) as handle:
            return not _record_schema(handle.schema_arrow)
    try:
        for _, load in itertools.islice(json_records(path), 100):
            try:
                if _plain_media(load()) is not None:
                    return True
            except DataError:  # (a broken line: the reader's to count)
                continue
    except DataError:  # (a file that does not read: its reading says so)
        return False
    return False


def unused_label_column(files: Sequence[Path], label_column: str | None) -> str | None:
    """The line refusing `--label-column` when no file of `files` takes it (`takes_label_column`): an option that
    would do nothing, as a mistyped or misplaced one would; None when one does, or none was given."""
    if label_column is None or any(takes_label_column(file) for file in files):
        return None
    return (f"label column {label_column!r} (--label-column, data.options.label_column): no data file has plain "
            "rows for it to choose the answer of (a hub data set's Parquet file of a media column and labels, a CSV "
            "table of media rows, or JSON records such as {\"image\": \"a.png\", \"label\": \"cat\"}); records, "
            "tars, folders and series answer with their own fields: leave it out")


def answer_notes(files: Sequence[Path], label_column: str | None,
                 field_columns: Mapping[str, str] | None = None) -> list[str]:
    """What the plain rows of the Parquet files among `files` are answered with (`HubLayout.describe`), or what
    their rows of turns become (`turns_record`), one line per description naming the files it holds for, for
    `modrwkv init` to say which column answers; none where `field_columns` (qa's {field: column}) make every
    row a record (`base.file_records`)."""
    described: dict[str, list[Path]] = {}
    for file in files:
        if not is_table_file(file) or is_metadata_file(file) or field_columns:
            continue
        layout = hub_layout(file, label_column)
        if layout is not None:
            described.setdefault(layout.describe(), []).append(file)
            continue
        with open_table_file(file) as handle:
            schema = handle.schema_arrow
        if _turns_type(schema) and record_format(dict.fromkeys(schema.names)) is None:
            described.setdefault(TURNS_NOTE, []).append(file)
    return [f"{given[0]}{f' and {len(given) - 1} more' if len(given) > 1 else ''}: {description}"
            for description, given in described.items()]


def _media_type(data_type: Any) -> bool:
    """Whether a column of this pyarrow type can hold media: a `{bytes, path}` struct, the bytes, or a path."""
    import pyarrow

    if pyarrow.types.is_struct(data_type):
        return {data_type.field(i).name for i in range(data_type.num_fields)} >= {"bytes"}
    return pyarrow.types.is_string(data_type) or pyarrow.types.is_large_string(data_type) or is_binary_type(data_type)


def hub_records(path: Path, caption_prompt: str | None = None, label_column: str | None = None,
                where: Mapping[str, frozenset[str]] | None = None) -> Iterator[tuple[str, Callable[[], Any]]]:
    """(source "path:row N", load) per row of a Parquet file (those `where` keeps, `base.where_rows`): a hub file's
    plain rows as records (the module docstring; a caption or label asked `caption_prompt`, None: the default), a
    file of records as they are (rows of turns as the records they stand for, `turns_record`)."""
    layout = hub_layout(path, label_column)
    rows = where_rows(path, table_records(path), *where_class_numbers(path, where))
    if layout is None:
        for source, load in rows:
            yield source, functools.partial(_turns_loaded, source, load)
        return
    for source, load in rows:
        yield source, _row_loader(layout, source, load, caption_prompt)


def where_class_numbers(path: Path, where: Mapping[str, frozenset[str]] | None
                         ) -> tuple[Mapping[str, frozenset[str]] | None, dict[str, dict[str, str]]]:
    """`where` with a ClassLabel column's values as the numbers the file stores: a class name as its number (CIFAR-10's
    `label=cat` keeps the rows of label 3; a name before a number: a class named "1" is that class), a number as
    itself; DataError naming the column's classes for a value that is neither. Beside it, how `base.where_rows`
    shows such a column's stored numbers ({column: {"3": "cat (3)"}}): as the classes the user names them by,
    with the number the file holds."""
    if not where:
        return where, {}
    with open_table_file(path) as handle:
        schema = handle.schema_arrow
    features = file_features(path, schema)
    numbered = dict(where)
    shown = {}
    for column, values in where.items():
        names = class_names(features, column) if column in features else None
        if names is None:
            continue
        numbers = set()
        for value in values:
            if value in names:
                numbers.add(str(names.index(value)))
            elif value.isdigit() and int(value) < len(names):
                numbers.add(str(int(value)))  # (07 is the 7 the file stores)
            else:
                classes = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
                raise DataError(str(path), "unreadable_file", f"{value!r} is no class of {column!r} "
                                f"({WHERE_OPTION}): its ClassLabel's classes are {classes} (or their numbers 0 to "
                                f"{len(names) - 1})")
        numbered[column] = frozenset(numbers)
        shown[column] = {str(number): f"{name} ({number})" for number, name in enumerate(names)}
    return numbered, shown


def _row_loader(layout: HubLayout, source: str, load: Callable[[], Any],
                caption_prompt: str | None) -> Callable[[], Any]:
    def build() -> dict[str, Any]:
        row = load()
        value = row[layout.media]
        items = value if isinstance(value, list) else [value]  # (a list column: the row's images, in order)
        if not items:
            raise DataError(source, "missing_media", f"{layout.media!r} is an empty list: no {layout.kind}")
        for index, item in enumerate(items):
            if item is None or (isinstance(item, dict) and item.get("bytes") is None and not item.get("path")):
                where = f"{layout.media!r}[{index}]" if isinstance(value, list) else repr(layout.media)
                raise DataError(source, "missing_media", f"{where} is null: no {layout.kind}")
        metadata = {} if layout.label_first else {key: value for key, value in row.items()
                                                  if key not in (layout.media, layout.label)}
        text = None
        if not layout.label_first and layout.kind != "audio" and layout.text is not None:
            text = metadata.pop(layout.text)  # (an audio's transcript stays a column of its ASR record)
        if text is None and layout.label is not None and (layout.kind != "audio" or not _transcribed(metadata)):
            metadata[LABEL_KEY] = class_label(row[layout.label], layout.names, layout.label, source)
        key = str(row["id"]) if row.get("id") is not None else None

        def twice(field: str, kind: str, _: Any) -> str:
            return f"the row has {field!r} beside {layout.media!r}, which is its {kind}: leave {field!r} out"

        record = media_record({layout.kind: items}, metadata, text, key, source, caption_prompt, twice)
        if record is None:
            raise DataError(source, "missing_field", f"no text: no column with a caption or transcript and no label "
                            f"(the row's columns: {', '.join(row)}); to answer with one, {LABEL_SETTING}")
        return record

    return build


def plain_records(records: Iterable[tuple[str, Callable[[], Any]]], caption_prompt: str | None = None,
                  label_column: str | None = None) -> Iterator[tuple[str, Callable[[], Any]]]:
    """(source, load) per JSON record of `records`, a plain one (the module docstring) as the record its media and
    label, caption or transcript make, asked `caption_prompt` and answered from `label_column` (None: `label` /
    `labels`); one of turns as the record it stands for (`turns_record`); any other as it is."""
    for source, load in records:
        yield source, functools.partial(_plain_record, source, load, caption_prompt, label_column)


def _plain_record(source: str, load: Callable[[], Any], caption_prompt: str | None, label_column: str | None) -> Any:
    record = _turns_loaded(source, load)
    media = _plain_media(record)
    if media is None:
        return record
    kind = {**MEDIA_COLUMNS, **MEDIA_LIST_COLUMNS}[media.lower()]
    text = next((key for key in ((*TEXT_KEYS, AUDIO_CAPTION_KEY) if kind == "audio" else CAPTION_KEYS)
                 if key in record), None)
    if label_column is not None and label_column not in record:
        raise DataError(source, "missing_field", f"no {label_column!r} field, the label {LABEL_OPTION} names (the "
                        f"record's fields: {', '.join(map(str, record))})")
    label = label_column or next((key for key in LABEL_COLUMNS if key in record), None)
    if label is None and text is None:
        return record
    layout = HubLayout(media, kind, label, None, text, label_column is not None)
    return _row_loader(layout, source, lambda: record, caption_prompt)()


def turns_record(record: Any, source: str) -> Any:
    """A row of the_cauldron's / Docmatix's layout (a `texts` list and no record format's fields; the module
    docstring) as the LLaVA record it stands for: each of `texts` a user turn and the assistant's answer, the row's
    other fields (its `images`) kept, for the LLaVA converter to put the images it does not find marked before the
    first user turn's text; any other record as it is. DataError naming the row's turn and field for a turn that is
    not {"user": text, "assistant": text} and for no turn at all."""
    if not isinstance(record, dict) or not _holds_turns(record.get(TURNS_COLUMN)) or record_format(record) is not None:
        return record
    turns = require(as_rows(record[TURNS_COLUMN]), list, repr(TURNS_COLUMN), source)
    if not turns:
        raise DataError(source, "empty_conversation", f"{TURNS_COLUMN!r} is empty: no question and answer")
    conversation = []
    for index, turn in enumerate(turns):
        where = f"{TURNS_COLUMN}[{index}]"
        require(turn, dict, where, source)
        for role, speaker in (("user", "human"), ("assistant", "gpt")):
            if role not in turn:
                raise DataError(source, "missing_field", f"{where} has no {role!r} (its keys: {', '.join(turn)})")
            text = turn_text(turn[role], f"{where}.{role}", source, answer=role == "assistant")
            conversation.append({"from": speaker, "value": escape_markers(text)})  # (media come from `images`)
    return {**{key: value for key, value in record.items() if key != TURNS_COLUMN}, "conversations": conversation}


def _holds_turns(value: Any) -> bool:
    """Whether a record's `texts` is the_cauldron's turns: a list of objects (a broken one its row's error), not a
    list of strings (another set's texts, read as any other column)."""
    turns = as_rows(value)
    return isinstance(turns, list) and all(isinstance(turn, dict) for turn in turns)


def _record_schema(schema: Any) -> bool:
    """Whether a table file's columns are a record format's (`_RECORD_COLUMNS`, or turns: `_turns_type`)."""
    return any(column in _RECORD_COLUMNS for column in schema.names) or _turns_type(schema)


def _turns_type(schema: Any) -> bool:
    """Whether a table file's `TURNS_COLUMN` holds the_cauldron's turns: a list of structs."""
    import pyarrow

    kind = schema.field(TURNS_COLUMN).type if TURNS_COLUMN in schema.names else None
    return kind is not None and is_list_type(kind) and pyarrow.types.is_struct(kind.value_type)


def _turns_loaded(source: str, load: Callable[[], Any]) -> Any:
    return turns_record(load(), source)


def _plain_media(record: Any) -> str | None:
    """The media field of a plain JSON record (one field named as `MEDIA_COLUMNS` holding a path, or as
    `MEDIA_LIST_COLUMNS` a list of paths, and no record format's fields, `label_column` or not: a file of records is
    read as those records); None for any other."""
    if not isinstance(record, dict) or any(key in record for key in _RECORD_COLUMNS) \
            or _holds_turns(record.get(TURNS_COLUMN)):
        return None
    media = [key for key, value in record.items() if isinstance(key, str) and (
        key.lower() in MEDIA_COLUMNS and isinstance(value, str)
        or key.lower() in MEDIA_LIST_COLUMNS and isinstance(value, list) and value
        and all(isinstance(item, str) for item in value))]
    return media[0] if len(media) == 1 else None


def _transcribed(metadata: dict[str, Any]) -> bool:
    return any(metadata.get(key) is not None for key in TEXT_KEYS)


def class_label(value: Any, names: list[str] | None, column: str, source: str) -> Any:
    """A label as answered: a ClassLabel's number as its class name (`names`), any other label as written; a
    null label, or a number that names no class, is the row's error."""
    if value is None:
        raise DataError(source, "missing_field", f"{column!r} is null: no label")
    if names is None:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(names):
        unlabelled = " (datasets writes -1 for a row without a label: a test split whose labels are withheld?)" \
            if value == -1 else ""
        raise DataError(source, "wrong_type", f"{column!r} is {value!r}, no class of its ClassLabel (0 to "
                        f"{len(names) - 1}: {', '.join(names[:5])}{', ...' if len(names) > 5 else ''}){unlabelled}")
    return names[value]
