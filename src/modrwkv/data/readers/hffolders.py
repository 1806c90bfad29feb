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

A row that makes no record is a bad record (skipped and counted as a bad JSONL line is), named by its metadata
file and line (CSV: the line its row starts on; Parquet: "row N"): a file that does not exist, one that is no
image, audio or video by its extension, no text column, no label and no question. A first row without a `file_name`
column, metadata files in several formats, and a folder whose subfolders are splits each with its metadata
file (train/, test/) stop the reading with one line naming the file or folder and what to give instead.
"""

from __future__ import annotations

import csv
import io
import os
import posixpath
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ...textfiles import TextFileError, decode_text
from .asr import TEXT_KEYS
from .base import METADATA_NAMES, DataError, is_table_file, json_records, media_kind, table_records
from .classfolders import SPLIT_NAMES, is_visible, split_refusal
from .hubrows import class_label, parquet_class_names
from .webdataset import AUDIO_CAPTION_KEY, CAPTION_KEYS, LABEL_KEY, READ_EXTENSIONS, RECORD_KEYS, media_record

# A CSV cell that is a number, as pandas reads one (no "nan", "inf" or "1_000", which Python's float takes).
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
# The CSV columns read as numbers (an ASR manifest's clip length). Every other cell is text as written: a
# transcript "7", a label "07", an id "001" (pandas would make them 7, 7 and 1, which no reader takes back).
NUMBER_COLUMNS = frozenset({"duration"})


def _metadata_files(folder: Path) -> Iterator[Path]:
    """The metadata files in `folder` and its subfolders (not hidden ones, nor OS leftovers), a folder's own
    before its subfolders', in name order. A linked subfolder is read as the folder it links to (as a class
    folder is), each folder once: a link back up the tree is not followed round."""
    seen: set[str] = set()
    for root, folders, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            folders[:] = []
            continue
        seen.add(real)
        folders[:] = sorted(name for name in folders if is_visible(name))
        yield from (Path(root) / name for name in sorted(files) if name in METADATA_NAMES)


def has_metadata(path: Path) -> bool:
    """Whether the folder `path` holds a metadata file, in it or a subfolder: what makes it Hugging Face's
    metadata layout rather than a folder of class folders or shards."""
    return next(_metadata_files(path), None) is not None


def metadata_records(path: Path, caption_prompt: str | None = None) -> Iterator[tuple[str, Callable[[], Any]]]:
    """(source, load) per row of the metadata files of `path` (a folder: all of its own and its subfolders'; a
    metadata file: its own), `load()` giving its record (the module docstring), a caption asked
    `caption_prompt` (None: the default). A folder of splits, or of metadata files in several formats, raises
    `DataError` (unreadable_file) naming it."""
    if not path.is_dir():
        yield from _file_records(path, path.parent, caption_prompt)
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
        yield from _file_records(file, path, caption_prompt)


def _file_records(file: Path, root: Path, caption_prompt: str | None) -> Iterator[tuple[str, Callable[[], Any]]]:
    """(source, load) per row of one metadata file, its media ids relative to `root` (the folder given)."""
    rows = csv_records(file) if file.suffix == ".csv" else table_records(file) if is_table_file(file) else \
        json_records(file)
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
                caption_prompt: str | None, classes: list[str] | None) -> Callable[[], Any]:
    """The record of one row of `file` (its folder, absolute, and that folder's path from the folder given), its
    label a class name of `classes` (a ClassLabel's; None: as written)."""

    def build() -> dict[str, Any]:
        row = load()
        if not isinstance(row, dict):
            raise DataError(source, "wrong_type", f"a metadata row must be an object with a 'file_name', got "
                            f"{type(row).__name__}")
        columns = [key for key in row if _media_column(key)]
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
                # folder given is the one above it; a missing file is theirs to name, with this row's source
                path = os.path.normpath(os.path.join(folder, names[-1]))
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


def csv_records(path: Path) -> Iterator[tuple[str, Callable[[], Any]]]:
    """(source "path:line", load) per row of a CSV file with a header (its line: the one the row starts on; blank
    lines are no rows). A cell is text as written, a quoted one with its commas and line breaks (a quote left
    open, or text after a closing one, is the file's error), but a `NUMBER_COLUMNS` cell (`duration`), which is a
    number; an empty cell is missing (None). A row with more or fewer cells than the header is a bad record; a
    file that does not read or decode raises `DataError` (unreadable_file)."""
    try:
        text = decode_text(path.read_bytes(), path)
    except OSError as err:
        raise DataError(str(path), "unreadable_file", f"cannot open: {err}") from err
    except TextFileError as err:
        raise DataError(err.source, "unreadable_file", err.detail) from None
    # strict: a quote left open would otherwise run silently to the end of the file, one row swallowing the rest
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
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
            yield source, _refused(DataError(source, "wrong_type", f"{len(cells)} cells where the header "
                                             f"({', '.join(header)}) has {len(header)}: a cell holding a comma or "
                                             "a line break is quoted (\"a, b\")"))
            continue
        record = {name: None if cell == "" else _number(cell) if name in NUMBER_COLUMNS else cell
                  for name, cell in zip(header, cells, strict=True)}
        yield source, lambda record=record: record


def _number(cell: str) -> float | str:
    """A number column's cell as a number; as written when it is none (the reader that reads it names it)."""
    return float(cell) if _NUMBER.fullmatch(cell) else cell


def _refused(error: DataError) -> Callable[[], Any]:
    def load() -> Any:
        raise error

    return load
