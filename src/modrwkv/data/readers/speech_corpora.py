"""The speech corpora the paper trains and evaluates on, and others ASR and TTS recipes train on, read in the layouts
their publishers ship, as ASR records (`asr.asr_to_sample`) for training (`data.format: asr`) and by the `librispeech`
and `aishell` eval tasks:

    LibriSpeech/train-clean-100/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt    (openslr.org/12)
        19-198-0001 THIS LITTLE WORK WAS FINISHED IN THE YEAR EIGHTEEN O THREE
    LibriSpeech/train-clean-100/<speaker>/<chapter>/<speaker>-<chapter>-0001.flac

    data_aishell/transcript/aishell_transcript_v0.8.txt                              (openslr.org/33)
        BAC009S0002W0122 而 对 楼市 成交 抑制 作用 最 大 的 限 购
    data_aishell/wav/train/<speaker>/BAC009S0002W0122.wav     (the per-speaker archives in wav/ extracted)

    LJSpeech-1.1/metadata.csv                                                        (keithito.com)
        LJ001-0002|in being comparatively modern.|in being comparatively modern.
    LJSpeech-1.1/wavs/LJ001-0009.wav

    VCTK-Corpus/txt/p225/p225_001.txt                  (datashare.ed.ac.uk, 0.80; 0.92 as VCTK-Corpus-0.92)
    VCTK-Corpus/wav48/p225/p225_001.wav                (0.92: wav48_silence_trimmed/p225/p225_001_mic1.flac)

A LibriSpeech split folder (train-clean-100, ...), one of its speakers' or chapters' folders, or one chapter's
.trans.txt is read; the corpus folder holding several splits is refused with their names, as training on test-clean
by accident would be: give the splits to train on (data.train takes several). Of Aishell-1, a split's wav folder
(data_aishell/wav/train) is read with the corpus's transcript file; the corpus folder is refused likewise.

Each utterance is the record {"audio": its file, "text": its transcript, "id": its utterance id}, its source the
transcript file's line. LibriSpeech's transcripts are kept as written (upper case, no punctuation: the eval
normalises case); Aishell's words, which the transcript file separates by spaces, are joined, as Chinese is written
(its CER ignores spaces either way). A line that is not "<utterance-id> <transcript>" is a bad record naming the file
and line; an Aishell recording without a transcript is left out, as Kaldi's and ESPnet's recipes leave it out.

LJSpeech's metadata.csv (no header; fields split at '|', quotes are text) is read given itself or its folder: a
line's transcript is its normalized text, the third field (numbers and abbreviations spelt out, as ESPnet's and
Coqui's recipes train on it); a file of two fields a line (`<id>|<text>`, as many corpora in LJSpeech's layout are
written) is read with the second. A line with another number of fields than the file's first is a bad record
naming the file and line; a metadata.csv with a header (Hugging Face's audiofolder) is not LJSpeech's.

VCTK's corpus folder is read a transcript file at a time (txt/<speaker>/<utterance>.txt, its text stripped), each
with its recording of the same name in wav48/ (0.80) or, of 0.92, its first microphone's in wav48_silence_trimmed/
(`_mic1.flac`, as Coqui's VCTK recipe reads it; the second microphone records the same speech). A transcript whose
recording is missing is a bad record naming both; a recording without a transcript (0.92's p315, whose transcripts
were lost) is left out, as Aishell's are.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ...textfiles import TextFileError, decode_text, open_data
from .base import DataError, data_file_text, subfolders, text_beside

log = logging.getLogger(__name__)

LIBRISPEECH_TRANSCRIPTS = ".trans.txt"
AISHELL_TRANSCRIPT = Path("transcript") / "aishell_transcript_v0.8.txt"
AISHELL_LAYOUT = """data_aishell/
  transcript/aishell_transcript_v0.8.txt     ('<utterance-id> <words separated by spaces>')
  wav/<split>/<speaker>/<utterance-id>.wav   (the per-speaker archives in wav/ extracted)"""
LJSPEECH_METADATA = "metadata.csv"
LJSPEECH_WAVS = "wavs"
# What a line of LJSpeech's metadata.csv holds, by its number of fields
LJSPEECH_FIELDS = {3: "<id>|<raw text>|<normalized text>", 2: "<id>|<text>"}
LJSPEECH_LAYOUT = """LJSpeech-1.1/
  metadata.csv     ('<id>|<raw text>|<normalized text>' a line, no header; or '<id>|<text>')
  wavs/<id>.wav"""
VCTK_TRANSCRIPTS = "txt"
# Where VCTK keeps the recording of txt/<speaker>/<utterance>.txt, by release: 0.80's folder and file name, then
# 0.92's (its first microphone's: the second records the same speech)
VCTK_RECORDINGS = (("wav48", "{}.wav"), ("wav48_silence_trimmed", "{}_mic1.flac"))
VCTK_LAYOUT = """VCTK-Corpus/
  txt/<speaker>/<utterance>.txt     (its transcript)
  wav48/<speaker>/<utterance>.wav   (0.92: wav48_silence_trimmed/<speaker>/<utterance>_mic1.flac)"""

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


def is_librispeech(folder: Path) -> bool:
    """Whether `folder` is LibriSpeech's corpus folder, one of its splits, speakers or chapters."""
    return _librispeech_depth(folder) is not None


def ljspeech_metadata(path: Path) -> Path | None:
    """The LJSpeech metadata.csv `path` is, or holds as its folder: a metadata.csv beside a wavs/ folder whose first
    line splits at '|'; None for another path (a Hugging Face metadata.csv, whose header's names are
    comma-separated)."""
    file = path / LJSPEECH_METADATA if path.is_dir() else path
    if file.name != LJSPEECH_METADATA or not file.is_file() or not (file.parent / LJSPEECH_WAVS).is_dir():
        return None
    try:  # (its head: the first line tells it)
        with open_data(file) as handle:
            head = decode_text(handle.read(4096), file, partial=True)
    except (OSError, TextFileError):  # (its reader names what is wrong with it)
        return None
    return file if "|" in next((line for line in head.splitlines() if line.strip()), "") else None


def _vctk_recordings(folder: Path) -> tuple[Path, str] | None:
    """The folder of recordings of the VCTK corpus folder `folder`, and the name of a transcript's recording in it
    (`VCTK_RECORDINGS`); None for another folder."""
    if not (folder / VCTK_TRANSCRIPTS).is_dir():
        return None
    return next(((folder / name, file) for name, file in VCTK_RECORDINGS if (folder / name).is_dir()), None)


def is_speech_corpus(path: Path) -> bool:
    """Whether `path` is a LibriSpeech folder or chapter transcript, an Aishell-1 folder, LJSpeech's folder or
    metadata.csv, or VCTK's corpus folder (the module docstring)."""
    if path.is_file():
        return path.name.endswith(LIBRISPEECH_TRANSCRIPTS) or ljspeech_metadata(path) is not None
    return path.is_dir() and (_aishell_root(path) is not None or ljspeech_metadata(path) is not None
                              or _vctk_recordings(path) is not None or is_librispeech(path))


def speech_corpus_records(path: Path) -> Records:
    """(source "transcript:line", load) per utterance of the corpus folder or transcript `path` (`is_speech_corpus`),
    each loading its ASR record; a folder of several splits raises `DataError` (unreadable_file) naming them, as its
    records are read."""
    metadata = ljspeech_metadata(path)
    if metadata is not None:
        yield from _ljspeech_records(metadata)
        return
    if path.is_file():
        yield from _librispeech_records([path])
        return
    root = _aishell_root(path)
    if root is not None:
        yield from _aishell_records(root, path)
        return
    recordings = _vctk_recordings(path)
    if recordings is not None:
        yield from _vctk_records(path, *recordings)
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


def _ljspeech_records(metadata: Path) -> Records:
    wavs = metadata.parent / LJSPEECH_WAVS
    fields = None  # the file's, its first line's
    for number, line in enumerate(_lines(metadata), 1):
        if not line.strip():
            continue
        source = f"{metadata}:{number}"
        if fields is None:
            fields = line.count("|") + 1
            if fields not in LJSPEECH_FIELDS:
                raise DataError(source, "unreadable_file", f"{fields} fields split at '|': a line of LJSpeech's "
                                f"metadata.csv is '{LJSPEECH_FIELDS[3]}' (or '{LJSPEECH_FIELDS[2]}'), without a "
                                f"header. Expected layout:\n{LJSPEECH_LAYOUT}")
        yield source, _ljspeech_loader(wavs, line, fields, source)


def _ljspeech_loader(wavs: Path, line: str, fields: int, source: str) -> Callable[[], Any]:
    def load() -> dict[str, Any]:
        cells = line.split("|")
        if len(cells) != fields:
            raise DataError(source, "wrong_type", f"{len(cells)} fields split at '|' where the file's first line has "
                            f"{fields} ('{LJSPEECH_FIELDS[fields]}')")
        utterance, text = cells[0].strip(), cells[-1].strip()
        if not utterance:
            raise DataError(source, "missing_field", "no id before the first '|' (its recording is wavs/<id>.wav)")
        if not text:
            what = "normalized text" if fields == 3 else "text"
            raise DataError(source, "empty_answer", f"the {what} (field {fields}) is empty")
        return {"audio": os.path.abspath(wavs / f"{utterance}.wav"), "text": text, "id": utterance}

    return load


def _vctk_records(folder: Path, recordings: Path, name: str) -> Records:
    transcripts = sorted((folder / VCTK_TRANSCRIPTS).glob("*/*.txt"))
    if not transcripts:
        raise DataError(str(folder / VCTK_TRANSCRIPTS), "unreadable_file", "no <speaker>/*.txt transcripts. "
                        f"Expected layout:\n{VCTK_LAYOUT}")
    transcribed = set()
    for transcript in transcripts:
        audio = recordings / transcript.parent.name / name.format(transcript.stem)
        transcribed.add(audio)
        yield str(transcript), _vctk_loader(transcript, audio)
    untranscribed = sum(1 for audio in recordings.glob(f"*/{name.format('*')}") if audio not in transcribed)
    if untranscribed:
        log.info("%s: %d recordings have no transcript and are left out", recordings, untranscribed)


def _vctk_loader(transcript: Path, audio: Path) -> Callable[[], Any]:
    def load() -> dict[str, Any]:
        text = text_beside(transcript, str(transcript), "transcript")
        # (a recording that is missing is the converter's to name, with this transcript)
        return {"audio": os.path.abspath(audio), "text": text, "id": transcript.stem}

    return load
