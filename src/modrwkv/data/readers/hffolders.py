"""Hugging Face's metadata layout as records: a folder of media files with a metadata file whose rows name them,
the layout `datasets` reads with `load_dataset("imagefolder", data_dir=...)` (and `"audiofolder"`,
`"videofolder"`):

    data/captions/metadata.jsonl     {"file_name": "0001.png", "text": "a red square on white"}
    data/captions/0001.png           {"file_name": "photos/0002.jpg", "text": "two cats"}
    data/captions/photos/0002.jpg

The metadata file is `metadata.jsonl`, `metadata.csv` (with a header; a quoted cell may hold commas and line
breaks; a cell is text as written, but a `duration`, a number; an empty cell is missing) or `metadata.parquet`.
A folder is read with every metadata file in it and its subfolders
(hidden ones and what file managers leave aside, as `classfolders` does), all of one format; the metadata file
given itself is read alone. A row's media are its `file_name` column and any `*_file_name` one (one file each),
and `file_names` / `*_file_names` (lists): paths relative to the metadata file's folder (subfolders allowed),
their kind (image, audio, video) told by the extension as a WebDataset member's is (`MEDIA_EXTENSIONS`). Media
files no row names are not read, as `datasets` reads none.

Each row becomes the record a WebDataset sample with these media would (`webdataset.media_record`, the one
mapping): a row with `question`, `conversations` or `messages` is that whole record with its media (qa; llava,
openai or sharegpt, whose `images` / `audios` / `videos` lists its markers refer to); otherwise an image or video
with a caption column (`text`, `caption`: `CAPTION_KEYS`) is a captioned sample, asked the reader's `prompt`
(default `DEFAULT_CAPTION_PROMPTS`; training records it with the model and eval asks it again: `CaptionRecord`)
and scored by CIDEr-D, a list of captions its references;
audio alone with a transcript column (`text`, `transcript`, `sentence`, `transcription`: the ASR reader's
`TEXT_KEYS`) is an ASR record, its other columns the manifest's (`id`, `duration`); otherwise a row with a `label`
column (a class name or number; of a `metadata.parquet` `datasets` wrote with a ClassLabel, the class's name,
`hubrows.class_label`) is a labelled sample, asked the reader's `prompt` (default `CLASS_PROMPTS`) and
answered with its label, scored by exact match, as a folder of class folders is. Media paths are made absolute,
so the converters read them wherever the folder is given from; a caption's or label's id is the row's `id`, else
its first file's path from the folder given.

A table of such rows under another name is read the same way (`media_table_records`): a .csv, .tsv or .txt file
(not JSON) with a header row, one of whose columns names a media file in each row, as public sets ship them:

    flickr8k/captions.txt            image,caption                (Kaggle's Flickr8k: 5 rows per image)
    flickr8k/Images/1000268201_693b08cb0e.jpg
                                     1000268201_693b08cb0e.jpg,A child in a pink dress is climbing up ...
    flickr30k/results.csv            image_name| comment_number| comment
    pets/train.csv, pets/train/      image,label                  (a Kaggle competition's: or filename,label, id,label)
    aptos/train.csv, train_images/   id_code,diagnosis            (000c1434d8d7: train_images/000c1434d8d7.png)

(Flickr's own headerless token files, `Flickr8k.token.txt`, are `captionsplits`': a sample per image.)

Its media column is read as `file_name`, and its text column (the first of `TABLE_TEXT_KEYS`: a caption or
transcript column, or Flickr30k's `comment`) as the caption of an image or video; a `label` or `question` column as
a metadata row's. The delimiter is the header's (',' unless it has none but ';', tab or '|'; a .tsv: tab), white
space after it left out. A column of names without their extension is the media column when its first rows' files
are found with one (`_named_files_column`). A row's file is looked for in the media folder given
(`data.media_folder`, `--media-folder`), else in the table's folder and those beside it (`table_folders`); a file in
none of them is a bad record naming the paths tried. The reader's `label_column` names the column that answers
(APTOS's `diagnosis`); a table whose column names media but that has no text, label or question column, nor the
one named, is refused in one line listing its columns and those read.

A row that makes no record is a bad record (skipped and counted as a bad JSONL line is), named by its metadata
file and line (CSV: the line its row starts on; Parquet: "row N"): a file that does not exist, one that is no
image, audio or video by its extension, no text column, no label and no question. A first row without a `file_name`
column, metadata files in several formats, and a folder whose subfolders are splits each with its metadata
file (train/, test/) stop the reading with one line naming the file or folder and what to give instead.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import operator
import os
import posixpath
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ...textfiles import TextFileError, data_suffix, decode_text, open_data
from .asr import TEXT_KEYS
from .base import (METADATA_NAMES, WEB_ADDRESS, DataError, data_file_text, first_file, header_delimiter,
                   is_metadata_file, is_table_file, json_records, media_column, media_kind, subfolders, table_records,
                   where_rows)
from .classfolders import SPLIT_NAMES, is_visible, split_refusal, visible_tree
from .coco import image_folders
from .hubrows import class_label, parquet_class_names, where_class_numbers
from .speech_corpora import ljspeech_metadata
from .webdataset import (AUDIO_CAPTION_KEY, CAPTION_KEYS, LABEL_KEY, MEDIA_EXTENSIONS, READ_EXTENSIONS, RECORD_KEYS,
                         media_record)

# A CSV cell that is a number, as pandas reads one (no "nan", "inf" or "1_000", which Python's float takes).
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
# The CSV columns read as numbers (an ASR manifest's clip length). Every other cell is text as written: a
# transcript "7", a label "07", an id "001" (pandas would make them 7, 7 and 1, which no reader takes back).
NUMBER_COLUMNS = frozenset({"duration"})
# The files read as tables of media rows when a column names media files (`media_table`).
DELIMITED_EXTENSIONS = (".csv", ".tsv", ".txt")
# A table's column of text about its media, the first of these it has: a metadata row's caption and transcript
# columns, and Flickr30k's `comment`; with an image or video it is the caption.
TABLE_TEXT_KEYS = tuple(dict.fromkeys((*CAPTION_KEYS, *TEXT_KEYS, "comment")))
# The columns a table of media rows is read with, as messages list them.
TABLE_COLUMNS = (f"a caption or transcript column ({', '.join(TABLE_TEXT_KEYS)}), a {LABEL_KEY!r} column (a class) "
                 "or 'question' and 'answer' columns")
# What the media column of a table is told by: its cells in the first rows, read from the file's head.
_SNIFFED_ROWS = 20
_SNIFFED_BYTES = 1 << 16
# A cell that may be a media file's name without its extension (Kaggle's APTOS `id_code` 000c1434d8d7, HAM10000's
# `image_id` ISIC_0027419): no dot, no separator.
_BARE_NAME = re.compile(r"[\w-]+")
_LETTER = re.compile(r"[^\W\d_]")
# How many of a column's first cells must be found, with one extension, for its cells to be taken as file names
_FOUND_ROWS = 3


def _metadata_files(folder: Path) -> Iterator[Path]:
    """The metadata files in `folder` and its subfolders (`visible_tree`: not hidden ones, nor OS leftovers; a
    linked subfolder once), a folder's own before its subfolders', in name order."""
    for root, files in visible_tree(folder):
        yield from (root / name for name in files if name in METADATA_NAMES)


def has_metadata(path: Path) -> bool:
    """Whether the folder `path` holds a metadata file, in it or a subfolder: what makes it Hugging Face's
    metadata layout rather than a folder of class folders or shards."""
    return next(_metadata_files(path), None) is not None


def metadata_records(path: Path, caption_prompt: str | None = None,
                     where: Mapping[str, frozenset[str]] | None = None) -> Iterator[tuple[str, Callable[[], Any]]]:
    """(source, load) per row of the metadata files of `path` (a folder: all of its own and its subfolders'; a
    metadata file: its own), `load()` giving its record (the module docstring), a caption asked
    `caption_prompt` (None: the default). A folder of splits, or of metadata files in several formats, raises
    `DataError` (unreadable_file) naming it."""
    if not path.is_dir():
        yield from _file_records(path, path.parent, caption_prompt, where)
        return
    try:
        subfolders = sorted(entry.name for entry in os.scandir(path) if entry.is_dir() and is_visible(entry.name))
    except OSError as err:
        raise DataError(str(path), "unreadable_file", f"cannot list the folder: {err.strerror or err}") from None
    splits = [name for name in subfolders if name.lower() in SPLIT_NAMES and has_metadata(path / name)]
    if splits:
        raise split_refusal(path, splits, "with its metadata file")
    files = list(_metadata_files(path))
    kinds = {file.suffix: file for file in files}
    if len(kinds) > 1:
        shown = " and ".join(str(file) for file in kinds.values())
        raise DataError(str(path), "unreadable_file", f"holds metadata files in {len(kinds)} formats ({shown}): a "
                        "folder's metadata files are of one format, as Hugging Face's datasets reads them; keep "
                        "one (convert the others)")
    for file in files:
        yield from _file_records(file, path, caption_prompt, where)


def _file_records(file: Path, root: Path, caption_prompt: str | None,
                  where: Mapping[str, frozenset[str]] | None) -> Iterator[tuple[str, Callable[[], Any]]]:
    """(source, load) per row of one metadata file (those `where` keeps), its media ids relative to `root` (the
    folder given). LJSpeech's metadata.csv, in a folder given above its own, raises `DataError` (unreadable_file)
    naming the folder to give."""
    if ljspeech_metadata(file) is not None:
        raise DataError(str(file), "unreadable_file", "LJSpeech's metadata.csv ('<id>|<raw text>|<normalized text>' "
                        f"lines, the recordings in wavs/), not a Hugging Face metadata file: give {file.parent} itself")
    shown = None
    if is_table_file(file):  # (a metadata.parquet's ClassLabel kept by its class names too)
        where, shown = where_class_numbers(file, where)
    rows = where_rows(file, csv_records(file) if file.suffix == ".csv" else table_records(file) if is_table_file(file)
                      else json_records(file), where, shown)
    classes = None  # a ClassLabel label's class names, which it is answered with (a metadata.parquet `datasets` wrote)
    if is_table_file(file):
        classes = parquet_class_names(file, LABEL_KEY)
    # once per file, not per row: a row's media are joined to these (a metadata.csv of 100,000 rows was mapped
    # in 3.4 s with a relpath and a Path per row, 1.2 s so)
    folder = os.path.abspath(file.parent)
    prefix = Path(os.path.relpath(folder, os.path.abspath(root))).as_posix()
    for index, (source, load) in enumerate(rows):
        yield source, _row_loader(file, folder, prefix, source, load, index == 0, caption_prompt, classes)


def _row_loader(file: Path, folder: str, prefix: str, source: str, load: Callable[[], Any], first: bool,
                caption_prompt: str | None, classes: list[str] | None,
                is_media: Callable[[Any], bool] | None = None,
                locate: Callable[[str, str, str], str] | None = None) -> Callable[[], Any]:
    """The record of one row of `file` (its folder, absolute, and that folder's path from the folder given), its
    label a class name of `classes` (a ClassLabel's; None: as written); its media the columns `is_media` takes (None:
    `_media_column`'s), each file where `locate(name, its column and name, source)` finds it (None: joined to
    `folder`, a missing file the converters' to name)."""

    def build() -> dict[str, Any]:
        row = load()
        if not isinstance(row, dict):
            raise DataError(source, "wrong_type", f"a metadata row must be an object with a 'file_name', got "
                            f"{type(row).__name__}")
        columns = [key for key in row if (is_media or _media_column)(key)]
        if not columns:
            detail = (f"no 'file_name' column (its columns: {', '.join(map(str, row)) or 'none'}): a metadata file "
                      "names each row's media file in 'file_name' (or '<name>_file_name', 'file_names'), relative to "
                      "its folder, as Hugging Face's imagefolder reads it; see docs/custom-data.md")
            if first:  # the file's columns (a Parquet or CSV file's are every row's)
                raise DataError(str(file), "unreadable_file", detail)
            raise DataError(source, "missing_field", detail.replace(" column (its columns:", " (the row's fields:"))
        media: dict[str, list[str]] = {}
        named: dict[str, str] = {}  # each media path: its column and name in the row, for messages
        names: list[str] = []  # the row's file names, Windows separators written as /
        for column in columns:
            value = row[column]
            plural = column.endswith("file_names")
            if plural and not isinstance(value, list):
                raise DataError(source, "wrong_type", f"{column!r} must be a list of file names, got "
                                f"{type(value).__name__}")
            for name in value if plural else [value]:
                if not isinstance(name, str) or not name.strip():
                    raise DataError(source, "missing_media", f"{column!r} must name a media file, got {name!r}")
                kind = media_kind(Path(name))
                if kind is None:
                    extension = os.path.splitext(name)[1] or "none"
                    raise DataError(source, "unreadable_media", f"{column} {name!r} is no image, audio or video file "
                                    f"by its extension ({extension}; read: {READ_EXTENSIONS})")
                names.append(name.replace("\\", "/"))
                # absolute: the converters resolve a relative path against the data file's folder, which for a
                # folder given is the one above it; a missing file is theirs to name, with this row's source (a
                # table's `locate` looks in several folders, and names those tried)
                path = (locate(names[-1], f"{column} {name!r}", source) if locate is not None
                        else os.path.normpath(os.path.join(folder, names[-1])))
                media.setdefault(kind, []).append(path)
                named[path] = f"{column} {name!r}"
        metadata = {key: value for key, value in row.items() if key not in columns}
        if classes is not None and metadata.get(LABEL_KEY) is not None:
            metadata[LABEL_KEY] = class_label(metadata[LABEL_KEY], classes, LABEL_KEY, source)
        visual = "image" in media or "video" in media
        text = next((metadata[key] for key in CAPTION_KEYS if metadata.get(key) is not None), None) if visual else None
        key = str(row["id"]) if row.get("id") is not None else posixpath.normpath(posixpath.join(prefix, names[0]))

        def twice(field: str, kind: str, item: str) -> str:
            return (f"the row has {field!r} beside {named[item]}, which is its {kind}: leave {field!r} out of "
                    f"{file.name}")

        record = media_record(media, metadata, text, key, source, caption_prompt, twice)
        if record is None:
            what = (f"a caption ({' or '.join(map(repr, CAPTION_KEYS))})" if visual
                    else f"a transcript ({', '.join(map(repr, TEXT_KEYS))}) or a caption ({AUDIO_CAPTION_KEY!r})")
            raise DataError(source, "missing_field", f"no text: no column with {what}, no {LABEL_KEY!r} and no "
                            f"{', '.join(map(repr, RECORD_KEYS))} (the row's columns: {', '.join(map(str, row))})")
        return record

    return build


def _media_column(key: Any) -> bool:
    """A column naming media files, as `datasets` takes them: `file_name`, `*_file_name`, `file_names`,
    `*_file_names`."""
    return isinstance(key, str) and (key in ("file_name", "file_names") or key.endswith(("_file_name", "_file_names")))


def csv_records(path: Path, delimiter: str = ",",
                skip_initial_space: bool = False) -> Iterator[tuple[str, Callable[[], Any]]]:
    """(source "path:line", load) per row of a CSV file with a header (its line: the one the row starts on; blank
    lines are no rows), its cells split at `delimiter` (with `skip_initial_space`, the white space after one left
    out). A cell is text as written, a quoted one with its delimiters and line breaks (a quote left
    open, or text after a closing one, is the file's error; a .tsv's quotes are text, `_quoting`), but a
    `NUMBER_COLUMNS` cell (`duration`), which is a number; an empty cell is missing (None). A row with more or fewer
    cells than the header is a bad record; a file that does not read or decode raises `DataError` (unreadable_file)."""
    text = data_file_text(path)
    # strict: a quote left open would otherwise run silently to the end of the file, one row swallowing the rest
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, skipinitialspace=skip_initial_space,
                        strict=True, quoting=_quoting(path))
    rows: list[tuple[int, list[str]]] = []  # (the line a row starts on, its cells), the header first
    line = 1
    try:
        while True:
            line = reader.line_num + 1
            cells = next(reader, None)
            if cells is None:
                break
            if cells:
                rows.append((line, cells))
    except csv.Error as err:
        raise DataError(f"{path}:{line}", "unreadable_file", f"not a readable CSV file: {err} in the row that starts "
                        "on this line (a quoted cell ends with a quote, and a quote inside one is written \"\")") \
            from None
    if not rows:
        return
    header = rows[0][1]
    for line, cells in rows[1:]:
        source = f"{path}:{line}"
        if len(cells) != len(header):
            shown = "a comma" if delimiter == "," else repr(delimiter)
            quoting = ("a cell holding a tab is split by it: a .tsv is read unquoted, as Common Voice writes it"
                       if _quoting(path) == csv.QUOTE_NONE else f"a cell holding {shown} or a line break is quoted "
                       "(\"a, b\")")
            yield source, _refused(DataError(source, "wrong_type", f"{len(cells)} cells where the header "
                                             f"({', '.join(header)}) has {len(header)}: {quoting}"))
            continue
        record = {name: None if cell == "" else _number(cell) if name in NUMBER_COLUMNS else cell
                  for name, cell in zip(header, cells, strict=True)}
        yield source, lambda record=record: record


def _quoting(path: Path) -> int:
    """How a delimited file's cells are quoted: a .tsv's not at all, as tab-separated values are written (IANA's
    text/tab-separated-values; Common Voice's and CoVoST's sentences hold quotes, `"Hello," he said.`), a .csv's
    or .txt's as CSV quotes them."""
    return csv.QUOTE_NONE if data_suffix(path) == ".tsv" else csv.QUOTE_MINIMAL


def _number(cell: str) -> float | str:
    """A number column's cell as a number; as written when it is none (the reader that reads it names it)."""
    return float(cell) if _NUMBER.fullmatch(cell) else cell


def _refused(error: DataError) -> Callable[[], Any]:
    def load() -> Any:
        raise error

    return load


@dataclasses.dataclass(frozen=True)
class MediaTable:
    """A delimited file whose rows name media files (`media_table`): its delimiter, its columns (the header row as
    read, white space after a delimiter left out), the column naming the media and the kind of its first file."""

    delimiter: str
    columns: tuple[str, ...]
    media: str
    kind: str
    example: str  # the media column's first cell, for messages
    extension: str = ""  # what the media column's cells are written without (".png"), "" where they carry it


def media_table(path: Path) -> MediaTable | None:
    """The layout of `path` when it is a table of media rows: a .csv, .tsv or .txt file (not a metadata file, not
    JSON) with a header row of two or more columns, one of which names a media file (`media_kind`) in each of its
    first `_SNIFFED_ROWS` rows; else None."""
    if data_suffix(path) not in DELIMITED_EXTENSIONS or is_metadata_file(path) or not path.is_file():
        return None
    try:  # (the head only: a table's first rows tell it, and a series file may be large)
        with open_data(path) as handle:
            head = handle.read(_SNIFFED_BYTES)
        text = decode_text(head, path, partial=True)
    except (OSError, TextFileError):  # (its reader names what is wrong with it)
        return None
    if text.lstrip()[:1] in ("{", "["):  # JSON records, whatever the extension (a .txt of JSON Lines)
        return None
    if len(head) == _SNIFFED_BYTES:  # the head's last line may be cut short
        text = text[:text.rfind("\n") + 1]
    delimiter = "\t" if data_suffix(path) == ".tsv" else header_delimiter(text)
    rows: list[list[str]] = []
    try:
        for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, skipinitialspace=True,
                              quoting=_quoting(path)):
            if any(cell.strip() for cell in row):
                rows.append(row)
            if len(rows) > _SNIFFED_ROWS:
                break
    except csv.Error:
        return None
    if len(rows) < 2 or len(rows[0]) < 2:
        return None
    header, sampled = rows[0], rows[1:]
    index, extension = media_column(header, sampled), ""
    if index is None:
        index, extension = _named_files_column(header, sampled, path)
        if index is None:
            return None
    example = sampled[0][index]
    return MediaTable(delimiter, tuple(header), header[index], media_kind(Path(example + extension)), example,
                      extension)


def _named_files_column(header: Sequence[str], rows: Sequence[Sequence[str]], path: Path) -> tuple[int | None, str]:
    """The first column whose cells name media files without their extension (Kaggle's APTOS train.csv `id_code`
    for train_images/<id_code>.png, HAM10000's `image_id` for HAM10000_images_part_1/<image_id>.jpg), and that
    extension: every sampled cell a plain name (`_BARE_NAME`), one at least with a letter (a series' counts and
    dates are no names, and are not looked for), the first `_FOUND_ROWS` found with it in the folders beside the table
    `path` (`table_folders`, listed only for such a column); (None, "") where none is."""
    folders: list[Path] | None = None
    for index in range(len(header)):
        cells = [row[index] if len(row) > index else "" for row in rows]
        if not all(_BARE_NAME.fullmatch(cell) for cell in cells) or not any(map(_LETTER.search, cells)):
            continue
        folders = folders if folders is not None else table_folders(path)
        for extension in MEDIA_EXTENSIONS:
            if first_file(folders, f"{cells[0]}.{extension}")[0] is not None:
                found = all(first_file(folders, f"{cell}.{extension}")[0] is not None for cell in cells[:_FOUND_ROWS])
                if found:
                    return index, f".{extension}"
                break  # (the first file found and a later one not: no column of names)
    return None, ""


def media_table_records(path: Path, caption_prompt: str | None = None, media_folder: Path | None = None,
                        label_column: str | None = None,
                        where: Mapping[str, frozenset[str]] | None = None) -> Iterator[tuple[str, Callable[[], Any]]]:
    """(source "path:line", load) per row of the table of media rows `path` (`media_table`), each loading the
    record its row makes as a metadata row (the module docstring), its media found in `media_folder` (None: beside
    the table, `table_folders`), a caption asked `caption_prompt` (None: the default); with `label_column` (the
    reader's option), answered with that column as its label whatever else it holds. A table without a text, label
    or question column, or without the `label_column` named, raises `DataError` (unreadable_file) naming its
    columns and those read."""
    table = media_table(path)
    if table is None:  # (changed since it was told to be one)
        raise DataError(str(path), "unreadable_file", "no column naming media files in its first rows")
    if WEB_ADDRESS.match(table.example):  # where a table names its media: LAION's and CC3M's url,caption files
        raise DataError(str(path), "unreadable_file", f"its column {table.media!r} holds web addresses "
                        f"({table.example}), and training reads local files (nothing is downloaded while it runs): "
                        "download them first, e.g. with img2dataset (--input_format csv --url_col "
                        f"{table.media} --caption_col CAPTION_COLUMN --output_format webdataset), and give its .tar "
                        "shards, or give a column of local paths")
    others = [column for column in table.columns if column not in (table.media, "id")]
    if label_column is not None and label_column not in table.columns:
        raise DataError(str(path), "unreadable_file", f"no column {label_column!r} (data.options.label_column) to "
                        f"answer with; its columns: {', '.join(table.columns)}")
    text = next((column for column in TABLE_TEXT_KEYS if column in table.columns), None)
    if (label_column is None and text is None and LABEL_KEY not in table.columns
            and not set(RECORD_KEYS) & set(table.columns)):
        unnamed = (f"; its first row names a media file ({table.media}), not a column: the file needs a header row "
                   "(e.g. image,caption)" if media_kind(Path(table.media)) else "")
        answer = (f"; or name the column that says what they show: data.options.label_column (modrwkv init "
                  f"--label-column {others[0] if len(others) == 1 else 'COLUMN'})" if others and not unnamed else "")
        raise DataError(str(path), "unreadable_file", f"its column {table.media!r} names media files "
                        f"({table.example}{table.extension}), but no column says what they show (its columns: "
                        f"{', '.join(table.columns)}){unnamed}; a table of media rows is read as samples with "
                        f"{TABLE_COLUMNS} (docs/custom-data.md){answer}")
    # what a metadata row's text column is: with an image or video a caption (`CAPTION_KEYS`), with audio alone a
    # transcript (`TEXT_KEYS`) or a caption (`AUDIO_CAPTION_KEY`); another one is read as the caption
    read = CAPTION_KEYS if table.kind in ("image", "video") else (*TEXT_KEYS, AUDIO_CAPTION_KEY)
    caption = text if text is not None and text not in read else None
    folders = [media_folder] if media_folder is not None else table_folders(path)
    locate = functools.partial(located, [os.path.abspath(folder) for folder in folders])
    is_media = functools.partial(operator.eq, table.media)
    folder = os.path.abspath(path.parent)
    rows = where_rows(path, csv_records(path, table.delimiter, skip_initial_space=True), where)
    for index, (source, load) in enumerate(rows):
        row = functools.partial(_table_row, load, table, caption, label_column)
        yield source, _row_loader(path, folder, ".", source, row, index == 0, caption_prompt, None, is_media, locate)


def table_folders(path: Path) -> list[Path]:
    """Where the files a table of media rows names are looked for without a media folder, in order: its folder, the
    `Images/` and `images/` in it (Kaggle's Flickr8k), the one of its folder's name in it (Kaggle's Flickr30k:
    flickr30k_images/flickr30k_images/), the table's name with `_images` (a Kaggle competition's train_images/
    beside train.csv), `clips/` (Common Voice's, beside its train.tsv), a COCO file's (`coco.image_folders`: `train/`
    beside train.csv, the folder above), the other folders beside it with "image" in their name (HAM10000's
    HAM10000_images_part_1/ and _part_2/), then an `audio/` folder in it or beside it and that folder's subfolders
    (ESC-50's meta/esc50.csv and audio/; UrbanSound8K's metadata/UrbanSound8K.csv and audio/fold1/ ...)."""
    path = path.absolute()
    here = path.parent
    named = [folder for folder in subfolders(here) if "image" in folder.name.lower()]
    audio = [folder for folder in (here / "audio", here.parent / "audio") if folder.is_dir()]
    return list(dict.fromkeys([here, here / "Images", here / "images", here / here.name, here / f"{path.stem}_images",
                               here / "clips", *image_folders(path), *named,
                               *(found for folder in audio for found in (folder, *subfolders(folder)))]))


def _table_row(load: Callable[[], Any], table: MediaTable, caption: str | None, label_column: str | None) -> Any:
    """A table's row as a metadata row: its media cell with the extension its files have (`MediaTable.extension`),
    the cell as written its id (where the table has no `id` column), its text column `caption` read as its caption;
    with `label_column`, its media, `id` and that column as its label alone, so that the label answers whatever else
    the row holds."""
    row = dict(load())  # (a copy: the loaded row is the table's, and a record may be built again)
    if table.extension and isinstance(row.get(table.media), str):
        if row.get("id") is None:  # predictions name APTOS's row 000c1434d8d7, as its submission file does
            row["id"] = row[table.media]
        row[table.media] += table.extension
    if label_column is not None:
        kept = {"id": row["id"]} if row.get("id") is not None else {}
        return {**kept, table.media: row[table.media], LABEL_KEY: row.get(label_column)}
    if caption is not None:
        row["caption"] = row.pop(caption)  # (the caption column of every kind: `CAPTION_KEYS`, `AUDIO_CAPTION_KEY`)
    return row


def located(folders: list[str], name: str, named: str, source: str) -> str:
    """The absolute path of the file `name` in the first of `folders` holding it; missing_media naming the paths
    tried where none does."""
    found, tried = first_file(folders, name)
    if found is None:
        raise DataError(source, "missing_media", f"{named} is not found: tried {', '.join(tried)}; give the folder of "
                        "the media files as the media folder (data.media_folder, --media-folder)")
    return found
