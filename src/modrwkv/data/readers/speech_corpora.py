"""The speech corpora the paper trains and evaluates on, read in the layouts their publishers ship, as ASR records
(`asr.asr_to_sample`) for training (`data.format: asr`) and by the `librispeech` and `aishell` eval tasks:

    LibriSpeech/train-clean-100/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt    (openslr.org/12)
        19-198-0001 THIS LITTLE WORK WAS FINISHED IN THE YEAR EIGHTEEN O THREE
    LibriSpeech/train-clean-100/<speaker>/<chapter>/<speaker>-<chapter>-0001.flac

    data_aishell/transcript/aishell_transcript_v0.8.txt                              (openslr.org/33)
        BAC009S0002W0122 而 对 楼市 成交 抑制 作用 最 大 的 限 购
    data_aishell/wav/train/<speaker>/BAC009S0002W0122.wav     (the per-speaker archives in wav/ extracted)

A LibriSpeech split folder (train-clean-100, ...), one of its speakers' or chapters' folders, or one chapter's
.trans.txt is read; the corpus folder holding several splits is refused with their names, as training on test-clean
by accident would be: give the splits to train on (data.train takes several). Of Aishell-1, a split's wav folder
(data_aishell/wav/train) is read with the corpus's transcript file; the corpus folder is refused likewise.

Each utterance is the record {"audio": its file, "text": its transcript, "id": its utterance id}, its source the
transcript file's line. LibriSpeech's transcripts are kept as written (upper case, no punctuation: the eval
normalises case); Aishell's words, which the transcript file separates by spaces, are joined, as Chinese is written
(its CER ignores spaces either way). A line that is not "<utterance-id> <transcript>" is a bad record naming the file
and line; an Aishell recording without a transcript is left out, as Kaldi's and ESPnet's recipes leave it out.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .base import DataError, data_file_text, subfolders

log = logging.getLogger(__name__)

LIBRISPEECH_TRANSCRIPTS = ".trans.txt"
AISHELL_TRANSCRIPT = Path("transcript") / "aishell_transcript_v0.8.txt"
AISHELL_LAYOUT = """data_aishell/
  transcript/aishell_transcript_v0.8.txt     ('<utterance-id> <words separated by spaces>')
  wav/<split>/<speaker>/<utterance-id>.wav   (the per-speaker archives in wav/ extracted)"""

Records = Iterator[tuple[str, Callable[[], Any]]]


def _is_chapter(folder: Path) -> bool:
    try:
        with os.scandir(folder) as entries:
            return any(e.name.endswith(LIBRISPEECH_TRANSCRIPTS) for e in entries)
    except OSError:
        return False


def _librispeech_depth(folder: Path) -> int | None:
    """How many folder levels above its chapters `folder` is in LibriSpeech's layout (0: a chapter, 1: a speaker, 2:
    a split, 3: the corpus of splits), told by its first subfolders alone (a class folder of a million images is not
    listed whole); None for another folder."""
    for depth in range(4):
        if _is_chapter(folder):
            return depth
        children = subfolders(folder)
        if not children:
            return None
        folder = children[0]
    return None


def _aishell_root(folder: Path) -> Path | None:
    """The Aishell-1 corpus folder `folder` is (data_aishell), or is the wav folder (data_aishell/wav) or a split's
    wav folder (data_aishell/wav/train) of; None for another folder."""
    for root, wav in ((folder, None), (folder.parent, folder), (folder.parent.parent, folder.parent)):
        if (wav is None or wav.name == "wav") and (root / AISHELL_TRANSCRIPT).is_file():
            return root
    return None


def is_speech_corpus(path: Path) -> bool:
    """Whether `path` is a LibriSpeech folder or chapter transcript, or an Aishell-1 folder (the module docstring)."""
    if path.is_file():
        return path.name.endswith(LIBRISPEECH_TRANSCRIPTS)
    return path.is_dir() and (_aishell_root(path) is not None or _librispeech_depth(path) is not None)


def speech_corpus_records(path: Path) -> Records:
    """(source "transcript:line", load) per utterance of the corpus folder or transcript `path` (`is_speech_corpus`),
    each loading its ASR record; a folder of several splits raises `DataError` (unreadable_file) naming them, as its
    records are read."""
    if path.is_file():
        yield from _librispeech_records([path])
        return
    root = _aishell_root(path)
    if root is not None:
        yield from _aishell_records(root, path)
        return
    depth = _librispeech_depth(path)
    if depth == 3:
        splits = ", ".join(child.name for child in subfolders(path))
        raise DataError(str(path), "unreadable_file", f"the LibriSpeech corpus, of the splits {splits}: give the "
                        f"split folders to read (e.g. {path / 'train-clean-100'}; data.train takes several), so that "
                        "no test or dev split is trained on")
    pattern = "/".join(["*"] * (depth or 0) + [f"*{LIBRISPEECH_TRANSCRIPTS}"])
    yield from _librispeech_records(sorted(path.glob(pattern)))


def _lines(path: Path) -> list[str]:
    return data_file_text(path).splitlines()


def _utterance(line: str, source: str) -> tuple[str, str]:
    utterance, _, text = line.strip().partition(" ")
    if not text.strip():
        raise DataError(source, "missing_field", f"expected '<utterance-id> <transcript>', got {line!r}")
    return utterance, text.strip()


def _librispeech_records(transcripts: list[Path]) -> Records:
    for path in transcripts:
        for number, line in enumerate(_lines(path), 1):
            if line.strip():
                source = f"{path}:{number}"
                yield source, _librispeech_loader(path.parent, line, source)


def _librispeech_loader(folder: Path, line: str, source: str) -> Callable[[], Any]:
    def load() -> dict[str, Any]:
        utterance, text = _utterance(line, source)
        # absolute: the converters resolve a relative path against the data file's folder (the one above a folder)
        return {"audio": os.path.abspath(folder / f"{utterance}.flac"), "text": text, "id": utterance}

    return load


def _aishell_records(root: Path, folder: Path) -> Records:
    if folder.parent.name != "wav" or folder.parent.parent != root:  # the corpus folder, or its wav folder
        splits = ", ".join(child.name for child in subfolders(root / "wav")) or "none extracted"
        raise DataError(str(root), "unreadable_file", f"the Aishell-1 corpus, of the splits {splits}: give a split's "
                        f"wav folder (e.g. {root / 'wav' / 'train'}; data.train takes several), so that no test or "
                        f"dev split is trained on. Expected layout:\n{AISHELL_LAYOUT}")
    transcript = root / AISHELL_TRANSCRIPT
    lines: dict[str, tuple[int, str]] = {}  # utterance -> (its line number, the line)
    for number, line in enumerate(_lines(transcript), 1):
        if line.strip():
            lines[line.split(maxsplit=1)[0]] = (number, line)
    wavs = sorted(folder.glob("*/*.wav"))
    if not wavs:
        raise DataError(str(folder), "unreadable_file", "no <speaker>/*.wav recordings (extract the per-speaker "
                        f"archives in wav/ first). Expected layout:\n{AISHELL_LAYOUT}")
    untranscribed = 0
    for wav in wavs:
        if wav.stem not in lines:
            untranscribed += 1
            continue
        number, line = lines[wav.stem]
        source = f"{transcript}:{number}"
        yield source, _aishell_loader(wav, line, source)
    if untranscribed:
        log.info("%s: %d recordings have no transcript and are left out", folder, untranscribed)


def _aishell_loader(wav: Path, line: str, source: str) -> Callable[[], Any]:
    def load() -> dict[str, Any]:
        utterance, text = _utterance(line, source)
        return {"audio": os.path.abspath(wav), "text": "".join(text.split()), "id": utterance}

    return load
