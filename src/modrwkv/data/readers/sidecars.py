"""Media files each with a text file of the same name beside it, its caption or transcript, as records: the layout of
kohya-ss' sd-scripts and most image-caption training folders (a tagger writes each image's caption beside it), and of
speech folders with a transcript beside each recording:

    data/captions/0001.jpg       data/captions/0001.txt      a red square on white
    data/speech/p225_001.wav     data/speech/p225_001.txt    Please call Stella.
    data/img/10_mychar/0001.png  data/img/10_mychar/0001.txt (kohya's <repeats>_<name> subfolders)

A media file (image, audio or video by its extension, `MEDIA_EXTENSIONS`) and the `.txt` (else `.caption`, kohya's
other caption extension) of its name without its extension, in the same folder, are one sample, which becomes the
record a WebDataset sample of these two members makes (`webdataset.media_record`, the one mapping): an image or
video with its caption (a qa record asked the reader's `prompt`, default `DEFAULT_CAPTION_PROMPTS`, scored by
CIDEr-D), audio with its transcript (an ASR record). The text is the file's, white space around it left out. The
folder given and its subfolders are read (`classfolders.visible_tree`: hidden ones and OS leftovers aside), a
folder's files in name order before its subfolders'; a record's source is its media file, its id the file's path
from the folder given.

What tells this layout from a folder of class folders, whose files are media alone and whose folder's name is the
answer: the first folder holding media files (the folder given, else its first subfolder that does, three levels
down at most) has one with its text file beside it. A media file without its text file is a bad record naming the
file looked for (skipped and counted); text files of no media file (a README.txt) and other files (kohya's cached
latents, .npz) are left aside. Images and audio together, or a folder whose subfolders are splits each of such
files (train/, test/), stop the reading with one line saying what to give instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .base import DataError, media_kind, subfolders, text_beside
from .classfolders import SPLIT_NAMES, is_visible, split_refusal, visible_tree
from .webdataset import media_record

# The extensions of a media file's caption or transcript file, the first found read
TEXT_EXTENSIONS = (".txt", ".caption")
# How deep below the folder given its first media files are looked for (kohya's img/10_name/ is one level)
_DEPTH = 3


def _texts(names: list[str]) -> dict[str, str]:
    """{the name without its extension: the text file's name} of the caption or transcript files among `names` (one
    folder's), a name's `.txt` before its `.caption`."""
    texts: dict[str, str] = {}
    for extension in reversed(TEXT_EXTENSIONS):
        texts.update((name[:-len(extension)], name) for name in names if name.endswith(extension))
    return texts


def _media_folder(folder: Path, depth: int = _DEPTH) -> tuple[Path, list[str]] | None:
    """The first folder at or below `folder` (its own files, then its subfolders in name order, `depth` levels at
    most; hidden ones and OS leftovers aside, `is_visible`) holding media files, and its files' names; None where
    none does."""
    try:
        with os.scandir(folder) as scanned:
            entries = sorted((entry for entry in scanned if is_visible(entry.name)), key=lambda entry: entry.name)
        names = [entry.name for entry in entries if entry.is_file()]
        children = [Path(entry.path) for entry in entries if entry.is_dir()] if depth else []
    except OSError:
        return None
    if any(media_kind(Path(name)) is not None for name in names):
        return folder, names
    return next((found for child in children if (found := _media_folder(child, depth - 1)) is not None), None)


def has_sidecars(folder: Path) -> bool:
    """Whether `folder` is a folder of media files with their text files beside them (the module docstring tells it
    from a folder of class folders)."""
    found = _media_folder(folder)
    if found is None:
        return False
    texts = _texts(found[1])
    return any(os.path.splitext(name)[0] in texts for name in found[1] if media_kind(Path(name)) is not None)


def sidecar_records(folder: Path, caption_prompt: str | None = None) -> Iterator[tuple[str, Callable[[], Any]]]:
    """(source, load) per media file in `folder` and its subfolders (`has_sidecars`), `load()` giving its record
    (the module docstring), a caption asked `caption_prompt` (None: the default). A folder of splits, or of images
    and audio, raises `DataError` (unreadable_file) naming it."""
    splits = [child.name for child in subfolders(folder) if child.name.lower() in SPLIT_NAMES and has_sidecars(child)]
    if splits:
        raise split_refusal(folder, splits, "of media files with their captions or transcripts")
    samples: list[tuple[Path, str | None]] = []  # each media file, its text file's name (None: none beside it)
    kinds: dict[str, Path] = {}  # image or video, audio: the first such file
    for root, names in visible_tree(folder):
        texts = _texts(names)
        for name in names:
            kind = media_kind(Path(name))
            if kind is not None:
                samples.append((root / name, texts.get(os.path.splitext(name)[0])))
                kinds.setdefault("audio" if kind == "audio" else "image or video", root / name)
    if len(kinds) > 1:
        raise DataError(str(folder), "unreadable_file", f"holds audio ({kinds['audio']}) and images or video "
                        f"({kinds['image or video']}) with their text files: the records would be transcripts and "
                        "captions, of two formats; put each kind in a folder of its own")
    for media, text in samples:
        yield str(media), _loader(folder, media, text, caption_prompt)


def _loader(folder: Path, media: Path, text: str | None, caption_prompt: str | None) -> Callable[[], Any]:
    source = str(media)

    def load() -> dict[str, Any]:
        stem = os.path.splitext(media.name)[0]
        if text is None:
            looked = " or ".join(stem + extension for extension in TEXT_EXTENSIONS)
            raise DataError(source, "missing_field", f"no {looked} beside it: in a folder of media files with their "
                            "captions or transcripts, each file has its text file of the same name beside it")
        kind = media_kind(media)
        what = "transcript" if kind == "audio" else "caption"
        path = os.path.abspath(media)  # (the converters resolve a relative path against the folder above this one)
        key = media.relative_to(folder).as_posix()
        # (no metadata beside the media names media of its own: `twice`'s message is never asked for)
        return media_record({kind: [path]}, {}, text_beside(media.parent / text, source, what), key, source,
                            caption_prompt, lambda *_: "")

    return load
