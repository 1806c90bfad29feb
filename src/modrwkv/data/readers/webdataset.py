"""WebDataset tar shards as record containers, as img2dataset (CC3M, LAION, DataComp), video2dataset and
audio corpora write them:

    00000.tar   000000000.jpg  000000000.txt  000000000.json  000000001.jpg  000000001.txt  ...

The members sharing a key (the member's name up to the first dot of its base name, in the same
directory), one after another in the tar, are one sample, as the WebDataset spec says. A sample becomes
one record of a training format:

- its media members, by extension: `image` (jpg jpeg png webp bmp gif tif tiff), `audio` (flac wav mp3
  ogg opus m4a), `video` (mp4 webm mkv avi mov), several of a kind in member order (numbered `key.1.jpg`,
  `key.2.jpg`, or of different extensions). They stay in the tar (`TarMember`: where their bytes are)
  and are read when the sample is built. Another compound extension (`key.seg.png`, `key.depth.png`) is
  a separate field, not the record's media, and is left aside like `.npy`;
- a `.json` member with `question`, `conversations` or `messages` is the whole record, of that format
  (qa, llava / sharegpt, openai), its media the sample's members (`image` / `audio` / `video` lists
  for qa, `images` / `audios` / `videos` for the conversation formats, which their markers refer to);
  a `.txt` member is then not read;
- otherwise a `.txt` member is the sample's text: with an image or video, its caption, as a qa record whose question
  is the reader's `prompt` (default `DEFAULT_CAPTION_PROMPTS`) and whose answer is the caption, scored in eval by
  CIDEr-D (`metric: cider`) (audio members beside the media, a clip's sound track, are the record's too); with audio
  alone, its transcript, as an ASR record (of one audio: the ASR reader refuses several). The `.json` is then
  metadata (img2dataset's url, caption, width, ...; DataComp's text) and none of its fields is read;
- otherwise, with audio alone, a `.json` holding a transcript (`text`, `transcript`, `sentence`,
  `transcription`) is an ASR record with that audio (Emilia's layout), and one holding a `caption`
  (`AUDIO_CAPTION_KEY`: AudioCaps', what is heard) a captioned sample, asked `DEFAULT_CAPTION_PROMPTS["audio"]`;
- otherwise a `.cls` member (ImageNet's shards: the class, a number or a name), or a `.json` with a
  `label`, is the sample's label: a qa record asked the reader's `prompt` (default `CLASS_PROMPTS`, by the
  kind of media) and answered with the label, scored by exact match, as a folder of class folders is;
- anything else is a bad record: no media member (missing_media), no text (missing_field), or a media,
  .txt or .json member that is a hard or symbolic link (which has no bytes of its own in the tar).

The mapping from a sample's media, `.json` and `.txt` to its record is `media_record`, which the rows of a Hugging
Face metadata folder go through too (`hffolders`: a row's file names are its media, its other columns its `.json`,
its caption column its `.txt`, its `label` column its `.cls`), and a hub Parquet file's plain rows (`hubrows`: its
media column, its caption, its label by class name). Other members (`.npy`, `.seg.png`, ...) are left aside. Only the small
`.txt` / `.json` members are read while the records are listed; a damaged or truncated tar, or one whose samples' members are apart (a
tar written `tar -cf s.tar *.png *.txt`), stops the reading with one line naming it. A sample cut in two
by such a tar makes a bad record before the reading gets to its second half: the first record that fails
has the whole tar's order checked (its headers alone, once per reading), and the file's line replaces
the record's error.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ...textfiles import PACKED_HEAD, packed_format
from .asr import TEXT_KEYS
from .base import DataError, EmbeddedBytes, NamedBytes, turn_text

MEDIA_EXTENSIONS = {
    **dict.fromkeys(("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"), "image"),
    **dict.fromkeys(("flac", "wav", "mp3", "ogg", "opus", "m4a"), "audio"),
    **dict.fromkeys(("mp4", "webm", "mkv", "avi", "mov"), "video"),
}
# The media extensions read, as messages list them (".jpg, .jpeg, ...").
READ_EXTENSIONS = ", ".join(f".{extension}" for extension in MEDIA_EXTENSIONS)
# What a captioned sample (media + .txt) is asked, by the kind of its media, unless the qa reader's
# `prompt` says otherwise.
DEFAULT_CAPTION_PROMPTS = {"image": "Write a short caption for the image.",
                           "video": "Write a short caption for the video.",
                           "audio": "Write a short caption for the audio."}
# A caption of audio alone (AudioCaps', Clotho's): a .json's, metadata row's or hub Parquet row's field of this name,
# where no transcript field (`TEXT_KEYS`) is; a .txt beside audio alone is its transcript, as Emilia's `text` is.
AUDIO_CAPTION_KEY = "caption"
# A caption, with an image or video, as a metadata row's or hub Parquet row's column (`hffolders`, `hubrows`): the
# column `datasets`' captioning guide writes, and the one img2dataset and most caption sets name.
CAPTION_KEYS = ("text", "caption")
RECORD_KEYS = ("question", "conversations", "messages")  # a .json with one of them is a whole record
# What a labelled sample (media + .cls, a class folder's file, a metadata row with a `label`) is asked, by the
# kind of its media, unless the qa reader's `prompt` says otherwise.
CLASS_PROMPTS = {"image": "What is shown in the image?",
                 "audio": "What is said or heard in the audio?",
                 "video": "What is shown in the video?"}
LABEL_KEY = "label"  # a .json's or a metadata row's field holding the sample's label (a .cls member's text)
# The `Sample.meta` flag of a sample built from a captioned tar sample (`CaptionRecord`): training records the
# question such samples were asked with the model (config.json `caption_prompt`) only when it read one.
CAPTIONED = "captioned"
# The small members read as the records are listed: a caption or transcript, a record or metadata, a label.
_TEXT_MEMBERS = ("txt", "json", "cls")
# The WebDataset key and extension of a member's name: up to, and after, the first dot of its base name.
_KEY = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")


class CaptionRecord(dict):
    """The qa record of a captioned sample (media + .txt), whose question is the reader's `prompt`: a dict
    like any record, told apart from a `.json` member's record (which asks its own question) so that the
    sample built from it is flagged `CAPTIONED`."""


class ClassRecord(CaptionRecord):
    """The qa record of a labelled sample (`CLASS_PROMPTS`): asked the reader's `prompt` as a captioned sample
    is (training records it with the model, and eval asks it again: `CAPTIONED`), scored by exact match."""


@dataclasses.dataclass(frozen=True, slots=True)
class TarMember(EmbeddedBytes):
    """A media member of a tar shard: its bytes are `size` bytes from `offset` of the file at `path`."""

    path: str
    offset: int
    size: int
    name: str  # the member's name in the tar, for messages

    def read(self) -> bytes:
        """The member's bytes, named (`NamedBytes`); ValueError naming the file and member when they no
        longer read (the file moved, or was cut short since it was indexed)."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read(self.size)
        except OSError as err:
            raise ValueError(f"{self.path}: {self.name}: cannot be read: {err.strerror or err}") from None
        if len(data) != self.size:
            raise ValueError(f"{self.path}: {self.name}: the tar ends inside this member (it is {len(data)} of "
                             f"{self.size} bytes): the file was cut short or changed since it was read")
        return NamedBytes(data, self.name)


# The hash a finished sample's key is remembered by (Python's str hash: 64 bits, salted per process, which
# matters not: it is compared within one reading); a name, so that a test can make every key collide.
_key_hash = hash


class _FinishedKeys:
    """The keys of the samples gathered so far, to refuse a tar whose sample's members come back after
    other samples'. Kept as 64-bit hashes, in a sorted array and a set of the latest, merged into the
    array when it reaches a 32nd of it: 8 bytes a sample, with the set and a merge's copy 21 MB at the peak
    for a million samples, where a set of the keys themselves held 92 MB (docs/custom-data.md). `may_hold`
    is true for every key added, and for another whose hash is one of theirs (among a million keys, a chance
    of about 3 in 10^8), which `_SampleOrder` confirms against the tar's earlier members."""

    def __init__(self) -> None:
        self._sorted = np.empty(0, dtype=np.int64)
        self._recent: set[int] = set()

    def add(self, key: str) -> None:
        self._recent.add(_key_hash(key))
        if len(self._recent) >= max(4096, len(self._sorted) >> 5):
            recent = np.sort(np.fromiter(self._recent, np.int64, len(self._recent)))
            self._sorted = np.insert(self._sorted, np.searchsorted(self._sorted, recent), recent)  # linear time
            self._recent.clear()

    def may_hold(self, key: str) -> bool:
        code = _key_hash(key)
        if code in self._recent:
            return True
        index = self._sorted.searchsorted(code)
        return bool(index < len(self._sorted) and self._sorted[index] == code)


class _SampleOrder:
    """Follows the keys of a tar's members, in order: which member starts a sample, and a `DataError` for
    one of a sample finished before (a tar written `tar -cf s.tar *.png *.txt`, its members by extension:
    each of its samples would be cut in two bad ones)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.key: str | None = None  # the sample being gathered
        self.finished = _FinishedKeys()

    def starts(self, key: str, info: tarfile.TarInfo) -> bool:
        """Whether `info`, a member of `key`, starts a sample (the one before it then finished)."""
        if key == self.key:
            return False
        if self.finished.may_hold(key) and _member_before(self.path, key, info.offset):
            raise DataError(str(self.path), "unreadable_file", f"the members of sample {key} are not one after "
                            f"another ({info.name} comes after other samples' members): a WebDataset shard holds "
                            "each sample's members together, in key order; write it so (`tar --sort=name -cf "
                            "shard.tar ...`, or webdataset's TarWriter)")
        if self.key is not None:
            self.finished.add(self.key)
        self.key = key
        return True


def _keyed_members(archive: tarfile.TarFile) -> Iterator[tuple[tarfile.TarInfo, str | None, str]]:
    """(member, key, extension) per member of the tar, in order; the key None for one that is no field of a
    sample (a folder or a device, or without an extension, which WebDataset leaves aside too). A hard or
    symbolic link has its key: `_add_member` names it in its sample. tarfile keeps every member's TarInfo
    (~440 bytes each: GBs for a tar of millions of samples); only the one in hand is kept."""
    while (info := archive.next()) is not None:
        archive.members.clear()
        match = _KEY.match(info.name) if info.isfile() or info.islnk() or info.issym() else None
        yield info, match and match.group(1), match.group(2).lower() if match else ""


def _member_before(path: Path, key: str, offset: int) -> bool:
    """Whether a member of `key` comes before `offset` in the tar: a key whose hash is a finished sample's
    is another sample's only if so (the tar read as far as it was; a damaged part is not reached)."""
    with path.open("rb") as handle, tarfile.open(fileobj=handle, mode="r:") as archive:
        for info, member_key, _ in _keyed_members(archive):
            if info.offset >= offset:
                return False
            if member_key == key:
                return True
    return False


def _order_error(path: Path) -> DataError | None:
    """The error of a tar whose samples' members are apart (`_SampleOrder`), from its headers alone; None
    for one in order, or damaged before any returns (which the reading itself names)."""
    order = _SampleOrder(path)
    try:
        with path.open("rb") as handle, tarfile.open(fileobj=handle, mode="r:") as archive:
            for info, key, _ in _keyed_members(archive):
                if key is not None:
                    order.starts(key, info)
    except DataError as err:
        return err
    except (tarfile.TarError, OSError):
        pass
    return None


@dataclasses.dataclass
class _Sample:
    """The members of one sample as the tar is scanned: media by kind, the .txt / .json contents."""

    key: str
    names: list[str] = dataclasses.field(default_factory=list)
    media: dict[str, list[TarMember]] = dataclasses.field(default_factory=dict)
    texts: dict[str, bytes] = dataclasses.field(default_factory=dict)  # "txt" / "json" / "cls" -> the member's bytes
    repeated: str | None = None  # a member name that came twice
    link: DataError | None = None  # the error of its first media, .txt or .json member that is a link


def tar_records(path: Path, caption_prompt: str | None = None) -> Iterator[tuple[str, Callable[[], Any]]]:
    """(source, load) per sample of a WebDataset tar ("path:key"), `load()` giving its record (the module
    docstring), a captioned one asked `caption_prompt` (None: `DEFAULT_CAPTION_PROMPTS`). A file that is no
    tar, a compressed one, or one damaged or cut short raises `DataError` (unreadable_file) naming it."""
    name = str(path)
    try:
        handle = path.open("rb")
    except OSError as err:
        raise DataError(name, "unreadable_file", f"cannot open: {err}") from err
    with handle:
        try:
            archive = tarfile.open(fileobj=handle, mode="r:")
        except tarfile.TarError as err:
            # Only a file that is no plain tar is looked at as a compressed one: a tar's first member may be
            # named BZh9.png, whose header starts with bzip2's magic.
            handle.seek(0)
            packed = packed_format(handle.read(PACKED_HEAD))
            if packed is not None and packed[0].endswith("-compressed"):  # ("gzip-compressed": a .tar.gz)
                raise DataError(name, "unreadable_file", f"a {packed[0]} tar: a sample's media are read "
                                "from their place in the file when the sample is built, which a compressed stream "
                                "does not allow; decompress it to a .tar") from None
            raise DataError(name, "unreadable_file", f"not a readable tar file ({err})") from None
        sample: _Sample | None = None
        order = _SampleOrder(path)
        checked: list[DataError | None] = []  # the whole tar's order, checked once a record fails
        last = None  # the last member read, for messages
        members = _keyed_members(archive)
        while True:
            try:
                info, key, extension = next(members, (None, None, ""))
                if info is not None and key is not None:
                    if order.starts(key, info):
                        if sample is not None:
                            yield _record_loader(path, sample, caption_prompt, checked)
                        sample = _Sample(key)
                    assert sample is not None  # (the first member starts one)
                    _add_member(path, archive, info, extension, sample)
            except (tarfile.TarError, OSError) as err:
                where = f"after {last}" if last else "at its first member"
                raise DataError(name, "unreadable_file", f"the tar is damaged or cut short {where} ({err})") from None
            if info is None:
                break
            last = info.name
        _check_end(handle, archive.offset, name, last)
        if sample is not None:
            yield _record_loader(path, sample, caption_prompt, checked)


def _add_member(path: Path, archive: tarfile.TarFile, info: tarfile.TarInfo, extension: str, sample: _Sample) -> None:
    """Adds a member (of extension `extension`) to the sample being gathered: a media member by where its
    bytes are, a .txt / .json by its bytes."""
    if info.name in sample.names:
        sample.repeated = sample.repeated or info.name
    sample.names.append(info.name)
    kind = _media_kind(extension)
    if not info.isfile():  # a link, with no bytes of its own: WebDataset reads none (the sample would lose it)
        # GNU tar stores a file hard-linked to one archived before (identical images deduplicated) as a link
        if sample.link is None and (kind is not None or extension in _TEXT_MEMBERS):
            hard = info.islnk()
            sample.link = DataError(
                f"{path}:{sample.key}", "missing_media" if kind else "missing_field",
                f"{info.name} is a {'hard' if hard else 'symbolic'} link to {info.linkname}, which is not read (a "
                "member's bytes are read from its own place in the tar); write the tar with the files themselves "
                f"(`tar {'--hard-dereference' if hard else '--dereference'} -cf ...`)")
    elif kind is not None:
        sample.media.setdefault(kind, []).append(TarMember(str(path), info.offset_data, info.size, info.name))
    elif extension in _TEXT_MEMBERS:
        member = archive.extractfile(info)
        assert member is not None  # a regular file
        data = member.read()
        if len(data) != info.size:
            raise tarfile.ReadError("unexpected end of data")
        sample.texts.setdefault(extension, data)


def _media_kind(extension: str) -> str | None:
    """The kind of media of a member by its extension: a plain one (`jpg`), or one numbered among several of
    a sample (`1.jpg`, `2.jpg`); another compound one (`seg.png`, `depth.png`, `mask.png`: WebDataset's
    separate fields, a segmentation beside the image) is no media of the record, and left aside."""
    number, _, plain = extension.rpartition(".")
    return MEDIA_EXTENSIONS.get(plain) if not number or number.isdigit() else None


def _check_end(handle: Any, offset: int, name: str, last: str | None) -> None:
    """A tar ends with zero blocks. `tarfile` stops silently where a header is garbled or cut short, or at
    the end of the file, so what follows the last member is checked: anything but zeros is a damaged tar,
    nothing at all one cut short (a download or a writer stopped at a member's end)."""
    handle.seek(offset)
    tail = handle.read(2 * tarfile.BLOCKSIZE)
    after = f"after {last}" if last else "at its start"
    if not tail:
        raise DataError(name, "unreadable_file", f"the tar is cut short {after}: it ends without the zero blocks "
                        "that close a tar (an interrupted download or writer?)")
    if tail.strip(b"\0"):
        raise DataError(name, "unreadable_file", f"the tar is damaged {after}: the bytes at offset {offset} are no "
                        "tar header")


def _record_loader(path: Path, sample: _Sample, caption_prompt: str | None,
                   checked: list[DataError | None]) -> tuple[str, Callable[[], Any]]:
    """(source, load) of a gathered sample. A sample that makes no record may be the first half of one cut
    in two by a tar whose members are apart, which the reading names only when it gets to the second half:
    the first failure has the tar's order checked (`_order_error`, kept in `checked`), and a tar out of
    order raises the file's error instead of the record's."""
    source = f"{path}:{sample.key}"

    def load() -> dict[str, Any]:
        try:
            return _record(sample, source, caption_prompt)
        except DataError:
            if not checked:
                checked.append(_order_error(path))
            if checked[0] is not None:
                raise DataError(checked[0].source, checked[0].reason, checked[0].detail) from None
            raise

    return source, load


def _record(sample: _Sample, source: str, caption_prompt: str | None) -> dict[str, Any]:
    """The sample's record (the module docstring says how); DataError for a sample that makes none."""
    names = ", ".join(sample.names)
    if sample.repeated:
        raise DataError(source, "wrong_type", f"the member {sample.repeated} comes twice in the sample")
    if sample.link is not None:
        raise sample.link
    if not sample.media:
        raise DataError(source, "missing_media", f"no image, audio or video member (the sample's members: {names})")

    def twice(field: str, kind: str, member: TarMember) -> str:
        return (f"{sample.key}.json has {field!r}, but the sample's {kind} is its member {member.name}: leave "
                f"{field!r} out of the .json")

    metadata = _json_member(sample, source)
    label = _text_member(sample, source, "cls")
    if label is not None and LABEL_KEY not in metadata:  # (a .json's own label is the record's say)
        metadata = {**metadata, LABEL_KEY: label}
    record = media_record(sample.media, metadata, _text_member(sample, source), sample.key, source, caption_prompt,
                          twice)
    if record is None:
        visual = any(kind in sample.media for kind in ("image", "video"))
        what = "with its image or video, a caption" if visual else "with its audio, a transcript"
        raise DataError(source, "missing_field", f"no text: no .txt member ({what}), no .cls member (a label) and no "
                        f".json holding a record ({', '.join(repr(k) for k in RECORD_KEYS)}"
                        f"{'' if visual else ', or a transcript'}) (the sample's members: {names})")
    return record


def media_record(media: dict[str, list[Any]], metadata: dict[str, Any], text: Any, key: str | None, source: str,
                 caption_prompt: str | None, twice: Callable[[str, str, Any], str]) -> dict[str, Any] | None:
    """The record of a sample's `media` (kind -> its items, in order), its `metadata` (a .json member's object,
    a metadata file's row without its file names) and its `text` (a .txt member; a caption column; None without
    one), with the meaning the module docstring gives a tar sample's members: the record `metadata` is (with
    `question`, `conversations` or `messages`), else a caption asked `caption_prompt` (None:
    `DEFAULT_CAPTION_PROMPTS`) whose id is `key` (None: none, a record known by its place), else an ASR record,
    else, with a `label` in `metadata` (a .cls member's), a labelled sample asked `caption_prompt` (None:
    `CLASS_PROMPTS`); None for a sample without text or label, which the caller names. The one mapping of
    WebDataset shards, Hugging Face metadata folders (`hffolders`) and hub Parquet files' plain rows (`hubrows`).
    `twice(field, kind, item)` is the message for `metadata` naming media of a kind the sample has itself."""
    if any(field in metadata for field in RECORD_KEYS):  # a whole record
        plural = "question" not in metadata  # the conversation formats' lists, to which their markers refer
        return {**metadata, **_media_fields(media, metadata, plural, source, twice)}
    visual = next((kind for kind in ("image", "video") if kind in media), None)
    if text is not None and visual is not None:  # a caption
        return _caption_record(media, visual, text, key, source, caption_prompt)
    if visual is None and (text is not None or any(field in metadata for field in TEXT_KEYS)):  # a transcript
        # (several audio items are a list, which the ASR reader refuses naming them: a record has one audio)
        if text is not None:
            return {**_media_fields(media, {}, False, source, twice), "text": text, "id": key}
        return {**metadata, **_media_fields(media, metadata, False, source, twice)}
    if visual is None and "audio" in media and metadata.get(AUDIO_CAPTION_KEY) is not None:  # a sound's caption
        return _caption_record(media, "audio", metadata[AUDIO_CAPTION_KEY], key, source, caption_prompt)
    label = metadata.get(LABEL_KEY)
    if label is not None:
        if isinstance(label, bool) or not isinstance(label, (str, int, float)) or not str(label).strip():
            raise DataError(source, "wrong_type", f"the label must be a class name or number, got {label!r}")
        kind = visual or "audio"
        question = caption_prompt if caption_prompt is not None else CLASS_PROMPTS[kind]
        # scored by exact match whatever the media (an audio record's default is WER, for transcripts): a label
        return ClassRecord({**media, "question": question, "answer": str(label).strip(), "id": key, "metric": "exact"})
    return None


def _caption_record(media: dict[str, list[Any]], kind: str, text: Any, key: str | None, source: str,
                    caption_prompt: str | None) -> CaptionRecord:
    """The qa record of a captioned sample whose media are of `kind`: asked `caption_prompt` (None: the kind's
    `DEFAULT_CAPTION_PROMPTS`), answered with `text` (`_caption_answers`)."""
    question = caption_prompt if caption_prompt is not None else DEFAULT_CAPTION_PROMPTS[kind]
    return CaptionRecord({**media, "question": question, **_caption_answers(text, source), "id": key})


def _caption_answers(text: Any, source: str) -> dict[str, Any]:
    """A caption as its record's answer; a list of captions (flickr30k's five per image) as its accepted answers:
    training teaches each as a sample of its own (`qa.each_caption`), eval scores the reply against all of them.
    Either is scored by CIDEr-D (`metric: cider`), as captioning benchmarks score captions: exact match would count a right caption in other words wrong, and several captions
    are no human answers to score with VQA's accuracy, which three or more answers would get."""
    if not isinstance(text, list):
        return {"answer": text, "metric": "cider"}
    if not text:
        raise DataError(source, "empty_answer", "the list of captions is empty: give at least one caption")
    return {"answers": [turn_text(caption, f"caption {number}", source, answer=True)
                        for number, caption in enumerate(text, 1)], "metric": "cider"}


def _media_fields(media: dict[str, list[Any]], record: dict[str, Any], plural: bool, source: str,
                  twice: Callable[[str, str, Any], str]) -> dict[str, Any]:
    """The media items as the record's fields (`image` or `images`, ...): they are the sample's media, so a
    record that names media of the same kind itself is refused (`twice` says so) rather than overridden."""
    fields: dict[str, Any] = {}
    for kind, items in media.items():
        given = [name for name in (kind, kind + "s") if record.get(name) is not None]
        if given:
            raise DataError(source, "wrong_type", twice(given[0], kind, items[0]))
        fields[kind + "s" if plural else kind] = items if plural or len(items) > 1 else items[0]
    return fields


def _json_member(sample: _Sample, source: str) -> dict[str, Any]:
    """The sample's .json object ({} without one)."""
    data = sample.texts.get("json")
    if data is None:
        return {}
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise DataError(source, "bad_json", f"{sample.key}.json is not UTF-8 text (byte {err.object[err.start]:#04x} "
                        f"at offset {err.start})") from None
    except (json.JSONDecodeError, RecursionError) as err:
        raise DataError(source, "bad_json", f"{sample.key}.json is not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise DataError(source, "wrong_type", f"{sample.key}.json must hold an object, got {type(value).__name__}")
    return value


def _text_member(sample: _Sample, source: str, extension: str = "txt") -> str | None:
    """The sample's .txt (or .cls), without the surrounding white space (a line's newline is no part of a caption)."""
    data = sample.texts.get(extension)
    if data is None:
        return None
    try:
        return data.decode("utf-8-sig").strip()
    except UnicodeDecodeError as err:
        raise DataError(source, "wrong_type", f"{sample.key}.{extension} is not UTF-8 text (byte "
                        f"{err.object[err.start]:#04x} at offset {err.start})") from None
