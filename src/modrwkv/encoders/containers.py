"""Whether a media file's container is whole, from its structure alone (no decoding): the check
behind `load_audio`, `audio_seconds` and `load_video` for formats whose decoders read a cut-short
file silently as a shorter clip.

- Ogg (Vorbis, Opus, FLAC, Theora): no header states the length, but every page states its own size
  and checksum, and each logical stream (each link of a chained file) ends with a page flagged
  end-of-stream. A file that stops inside a page, or before a stream's last page, is cut short.
- Matroska / WebM: the Segment element declares its size; a file that ends before it is cut short.
  Bytes after a whole segment are not looked at (decoders ignore them). A segment of unknown size
  (what live encoders write) is walked element by element (and a Cluster of unknown size, as browsers
  record, block by block): one that runs past the end of the file is cut. A live file cut exactly
  between two elements cannot be told from a whole one.
- MP4 / QuickTime: each top-level box (ftyp, moov, mdat, ...) declares its size; FFmpeg decodes an
  mp4 whose last box is cut (a moov at the end, an mdat at the end of a "faststart" file) as far as
  it can, all of its frames when only the index's end is lost. The walk ends at bytes that are no
  top-level box (padding, appended data), which decoders ignore. Files that open with ftyp (every
  writer since 2001) and older QuickTime files that open with moov, mdat, wide, free, skip or pnot
  are walked; for the latter, whose first word is common in other data, only once a moov box is met.
- RIFF (WAV, RF64, AVI), Wave64 and AIFF: each chunk declares its size (RF64 in its ds64 chunk);
  libsndfile reads a WAV, RF64, Wave64 or AIFF whose data chunk is cut as a shorter clip, FFmpeg an
  AVI whose movi list is cut. A chunk of odd size is followed by a pad byte, which some writers
  leave out: a whole chunk that starts where the pad should be, when none starts after it, is read
  as the next chunk. A size left unknown by a writer that could not seek back (0, or a placeholder
  near 4 GiB) ends the walk; so do bytes that are no chunk after the last. An AVI over 1 GB (OpenDML)
  goes on in RIFF 'AVIX' chunks after its first, which FFmpeg plays: each is walked as the first, and a
  file cut exactly between two of them is told by the frame count of its OpenDML header (dmlh).
- CAF: after its 8-byte file header, each chunk declares its 64-bit size, the data chunk -1 when its
  writer left it unknown (it then runs to the end of the file); libsndfile reads a CAF whose data
  chunk is cut (of a PCM file, of an ALAC one with its packet table before the data) as a shorter clip.
- AU/SND: its 24-byte header declares where the samples start and how many bytes they take
  (0xFFFFFFFF: unknown); libsndfile reads the samples a cut file still holds.
- MP3: each frame's header gives its length. A file whose last frame runs past its end is cut short;
  bytes that are no frame of the same stream are skipped as mpg123 (libsndfile's decoder) skips them:
  where a frame follows within 1024 bytes (a stray byte mid-file), the walk goes on there, counting the
  frames after them; otherwise they end it (an ID3v1 or APE tag, or junk such as a stray byte or fewer
  bytes than a header, which libsndfile and FFmpeg skip). A Xing/Info or VBRI frame first counts the
  frames: a file that holds fewer was cut between two of them; one that holds more is refused too, as
  libsndfile decodes only the counted ones (a count of 0, left by a writer that could not seek back,
  is no count).

Other formats (FLAC, ...) return None here; the audio reader compares their sample counts with the
count their header declares (`modrwkv.encoders.media`).
"""

from __future__ import annotations

import dataclasses
import io
import zlib
from collections.abc import Iterator
from pathlib import Path

_OGG_CAPTURE = b"OggS"
_OGG_END_OF_STREAM = 0x04
_MATROSKA_EBML = bytes.fromhex("1A45DFA3")
_MATROSKA_SEGMENT = 0x18538067
_MATROSKA_CLUSTER = 0x1F43B675
_MATROSKA_VOID, _MATROSKA_CRC32 = 0xEC, 0xBF  # allowed inside any element
# The elements a Segment holds, and those a Cluster holds, by name: an element of a live (unknown
# size) segment or cluster that is none of its children ends it (Matroska's rule for unknown sizes).
_MATROSKA_SEGMENT_CHILDREN = {0x114D9B74: "SeekHead", 0x1549A966: "Info", 0x1654AE6B: "Tracks",
                              _MATROSKA_CLUSTER: "Cluster", 0x1C53BB6B: "Cues", 0x1043A770: "Chapters",
                              0x1254C367: "Tags", 0x1941A469: "Attachments", _MATROSKA_VOID: "Void",
                              _MATROSKA_CRC32: "CRC-32"}
_MATROSKA_CLUSTER_CHILDREN = {0xE7: "Timestamp", 0x5854: "SilentTracks", 0xA7: "Position", 0xAB: "PrevSize",
                              0xA3: "SimpleBlock", 0xA0: "BlockGroup", 0xAF: "EncryptedBlock",
                              _MATROSKA_VOID: "Void", _MATROSKA_CRC32: "CRC-32"}
# The box an MP4 or QuickTime file opens with (every writer since 2001).
_MP4_FIRST_BOX = b"ftyp"
# What older QuickTime files open with instead: words too common at bytes 4-8 of other data to take
# as a sign alone, so such a file is judged only once its walk meets a moov box (`_MOOV_CHILDREN`).
_QUICKTIME_FIRST_BOXES = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}
# The boxes ISO/IEC 14496-12 and QuickTime place at the top level; anything else there is data after
# the file (padding, an appended note), which FFmpeg ignores.
_MP4_TOP_LEVEL_BOXES = {b"ftyp", b"styp", b"pdin", b"moov", b"moof", b"mfra", b"mdat", b"free", b"skip", b"wide",
                        b"meta", b"uuid", b"sidx", b"ssix", b"prft", b"emsg", b"udta", b"pnot", b"PICT"}
# What a moov box opens with (its header, or a compressed or profiled movie), by which a legacy
# QuickTime file's moov is told from other data that happens to hold the word.
_MOOV_CHILDREN = {b"mvhd", b"cmov", b"prfl", b"iods", b"trak", b"udta", b"meta", b"mvex"}
_BIT_REVERSED = bytes(int(f"{byte:08b}"[::-1], 2) for byte in range(256))
# A 32-bit chunk size at or above this (4 KiB short of 2 GiB) is a placeholder, not a size: writers
# that cannot seek back to fill it in leave 0xFFFFFFFF (ffmpeg), 0x7FFFFFFF or 0x7FFFF000 (sox), and
# libsndfile reads such a file to its end. A real chunk this large is past any clip this library reads.
_RIFF_UNKNOWN_SIZE = 0x7FFFF000
_RF64_SIZE_IN_DS64 = 0xFFFFFFFF
# A file this much shorter than its header says is cut short (fewer frames than an MP3's Xing frame
# counts, fewer samples decoded than a header declares); the margin keeps a count that is off by an
# encoder's padding from refusing a whole file.
TRUNCATION_MARGIN = 0.01
_WAVE64_RIFF = b"riff" + bytes.fromhex("2E91CF11A5D628DB04C10000")  # Wave64's GUIDs: a chunk name and 12 fixed bytes


@dataclasses.dataclass(frozen=True)
class Mp3Stream:
    """What walking an MP3 found, all of it read in the one walk that checks it for a cut."""

    # Its samples per channel, counted frame by frame from its first (a Xing/Info frame, which holds none,
    # included) as the walk reads each frame's header; None where no frame was found. An MP3 without a
    # Xing/Info frame states no length, and libsndfile decodes it only as far as it estimates from its
    # first frame's bitrate, which a variable bitrate makes a fraction of this.
    samples: int | None
    # The audio frames its first frame counts when that is a Xing/Info (LAME, FFmpeg) or VBRI (Fraunhofer)
    # frame, which decoders take as the stream's length; None without one, or one whose writer left the
    # count out (the length is then estimated, as without the frame).
    declared_frames: int | None
    # What libsndfile estimates the length of an MP3 without a count from: `counted_bytes` (the file less
    # a 128-byte ID3v1 tag at its end) at the first frame's bitrate, `tag_bytes` of which are tags (ID3v2
    # before the audio, APE after it), which cover art makes hundreds of kilobytes.
    counted_bytes: int
    tag_bytes: int

    @property
    def declares_length(self) -> bool:
        return self.declared_frames is not None


@dataclasses.dataclass(frozen=True)
class ContainerCheck:
    """What walking a file's container found."""

    problem: str | None  # why it is cut short or damaged (a sentence without the file's name), or None
    mp3: Mp3Stream | None = None  # for an MP3 (a file opening with an ID3v2 tag or a frame header)
    # A CAF whose data chunk's size is written as unknown (-1: to the end of the file, as a writer that
    # cannot seek back leaves it): (where that 8-byte size is, the size it stands for). libsndfile takes
    # -1 for a negative size and refuses the file as malformed, so the decoder is given this size instead.
    caf_data_size: tuple[int, int] | None = None


def check_container(source: Path | io.BytesIO) -> ContainerCheck:
    """The file's container walked: whether it is cut short or damaged (`ContainerCheck.problem`, None
    when it is whole or not a container checked here) and, for an MP3, what its frames and tags say of
    its length (`Mp3Stream`): the file's only read by this library (its decoder reads it on its own)."""
    with open(source, "rb") if isinstance(source, Path) else _RestoredPosition(source) as stream:
        stream.seek(0, io.SEEK_END)
        size = stream.tell()
        stream.seek(0)
        head = stream.read(16)
        if head[:4] == _OGG_CAPTURE:
            return ContainerCheck(_ogg_problem(stream, size))
        if head[:4] == _MATROSKA_EBML:
            return ContainerCheck(_matroska_problem(stream, size))
        if head[4:8] == _MP4_FIRST_BOX or head[4:8] in _QUICKTIME_FIRST_BOXES:
            return ContainerCheck(_mp4_problem(stream, size, needs_moov=head[4:8] != _MP4_FIRST_BOX))
        if head[:4] in (b"RIFF", b"RF64") and head[8:12] in (b"WAVE", b"AVI "):  # other RIFF forms are not media
            return ContainerCheck(_chunks_problem(stream, size, _RIFF if head[:4] == b"RIFF" else _RF64))
        if head == _WAVE64_RIFF:
            return ContainerCheck(_chunks_problem(stream, size, _WAVE64))
        if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
            return ContainerCheck(_chunks_problem(stream, size, _AIFF))
        if head[:4] == b"caff":
            to_end: list[tuple[int, int]] = []
            return ContainerCheck(_chunks_problem(stream, size, _CAF, to_end), caf_data_size=next(iter(to_end), None))
        if head[:4] in _AU_MAGIC:
            return ContainerCheck(_au_problem(head, size))
        if head[:3] == b"ID3" or _mp3_frame(head) is not None:
            return _walk_mp3(stream, size)
        return ContainerCheck(None)


class _RestoredPosition:
    """A buffer opened for a check and put back where its reader left it."""

    def __init__(self, buffer: io.BytesIO) -> None:
        self.buffer, self.start = buffer, buffer.tell()

    def __enter__(self) -> io.BytesIO:
        return self.buffer

    def __exit__(self, *exc: object) -> None:
        self.buffer.seek(self.start)


# ------------------------------------------------------------------------------------------------ Ogg


def _ogg_crc(page: bytes) -> int:
    """Ogg's page checksum: CRC-32 with polynomial 0x04C11DB7, not reflected, initial value 0 and
    no final xor. zlib's CRC-32 is the reflected form of the same polynomial, so it gives Ogg's on
    bit-reversed bytes (at C speed, where a Python loop would take seconds on a long file)."""
    reflected = zlib.crc32(page.translate(_BIT_REVERSED), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{reflected:032b}"[::-1], 2)


def _ogg_problem(stream: io.BufferedIOBase, size: int) -> str | None:
    ended: dict[int, bool] = {}  # each logical stream's serial number: whether its last page came
    position = 0
    while position < size:
        stream.seek(position)
        header = stream.read(27)
        if header[:4] != _OGG_CAPTURE:
            if ended and all(ended.values()):
                break  # data after complete streams (a tag some tools append): decoders ignore it
            return f"byte {position} is not the start of an Ogg page: the file is damaged"
        segments = stream.read(header[26]) if len(header) == 27 else b""
        page_size = 27 + len(segments) + sum(segments)
        if len(header) < 27 or len(segments) < header[26] or position + page_size > size:
            return (f"its last Ogg page (at byte {position}) holds {size - position} of its "
                    f"{max(page_size, 27)} bytes: it is cut short")
        page = header + segments + stream.read(page_size - 27 - len(segments))
        if _ogg_crc(page[:22] + b"\0\0\0\0" + page[26:]) != int.from_bytes(page[22:26], "little"):
            return f"the Ogg page at byte {position} fails its checksum: the file is damaged"
        serial = int.from_bytes(header[14:18], "little")
        ended[serial] = ended.get(serial, False) or bool(header[5] & _OGG_END_OF_STREAM)
        position += page_size
    if not all(ended.values()):
        return f"its Ogg stream stops at byte {size} without its end-of-stream page: it is cut short"
    return None


# ------------------------------------------------------------------------------------------- Matroska


@dataclasses.dataclass(frozen=True)
class _Element:
    """An EBML element's header: its ID, where its data starts, and its data's size (None: unknown)."""

    id: int
    start: int
    size: int | None


def _matroska_element(stream: io.BufferedIOBase, position: int) -> _Element | bytes | None:
    """The EBML element header at `position`: an `_Element`; the bytes read when the file ends
    inside the header (for the caller to judge); None where the bytes are no element header."""
    stream.seek(position)
    data = stream.read(12)  # an ID of at most 4 bytes and a size of at most 8
    if not data or data[0] < 0x10:  # IDs longer than 4 bytes are not Matroska's
        return None
    id_length = 9 - data[0].bit_length()
    if len(data) <= id_length:
        return data
    if data[id_length] == 0:
        return None
    size_length = 9 - data[id_length].bit_length()
    if len(data) < id_length + size_length:
        return data
    marker = 1 << (7 * size_length)
    data_size = int.from_bytes(data[id_length : id_length + size_length], "big") ^ marker
    return _Element(int.from_bytes(data[:id_length], "big"), position + id_length + size_length,
                    None if data_size == marker - 1 else data_size)


def _matroska_cut(name: str, element: _Element, size: int) -> str:
    return (f"its Matroska {name} element declares {element.size} bytes and the file holds "
            f"{size - element.start} of them: it is cut short")


def _matroska_problem(stream: io.BufferedIOBase, size: int) -> str | None:
    position = 0
    while position < size:
        element = _matroska_element(stream, position)
        if not isinstance(element, _Element):
            return None  # not an element: nothing this check can say (the decoder reads what it can)
        if element.size is None:
            if element.id != _MATROSKA_SEGMENT:
                return None  # an unknown size where none is expected: the decoder reads what it can
            return _live_elements_problem(stream, element.start, size, _MATROSKA_SEGMENT_CHILDREN)[1]
        if element.start + element.size > size:
            name = "Segment" if element.id == _MATROSKA_SEGMENT else f"top-level 0x{element.id:X}"
            return _matroska_cut(name, element, size)
        if element.id == _MATROSKA_SEGMENT:
            return None  # whole: what follows the segment (appended data, another file) is not read
        position = element.start + element.size
    return None


def _live_elements_problem(stream: io.BufferedIOBase, position: int, size: int,
                           children: dict[int, str]) -> tuple[int, str | None]:
    """Walks the elements of a Segment or Cluster of unknown size from `position`: (where it ends,
    at the first element that is none of its `children` or at the file's end; why the file is cut
    short, or None)."""
    while position < size:
        element = _matroska_element(stream, position)
        if isinstance(element, bytes):  # the file ends inside this header: cut, if it begins one of the children
            partial_id = element[: 9 - element[0].bit_length()]
            if any(child.to_bytes((child.bit_length() + 7) // 8, "big").startswith(partial_id) for child in children):
                return position, (f"the file ends inside the header of its Matroska element at byte {position}: "
                                  "it is cut short")
            return position, None
        if element is None or element.id not in children:
            return position, None
        if element.size is None:
            if element.id != _MATROSKA_CLUSTER:
                return size, None  # no other element may have an unknown size: the decoder reads what it can
            position, problem = _live_elements_problem(stream, element.start, size, _MATROSKA_CLUSTER_CHILDREN)
            if problem is not None:
                return position, problem
            continue
        if element.start + element.size > size:
            return position, _matroska_cut(children[element.id], element, size)
        position = element.start + element.size
    return position, None


# ---------------------------------------------------------------------------------------- MP4 / QuickTime


def _mp4_problem(stream: io.BufferedIOBase, size: int, needs_moov: bool) -> str | None:
    position = 0
    while position + 8 <= size:
        stream.seek(position)
        header = stream.read(16)
        box_size, kind = int.from_bytes(header[:4], "big"), header[4:8]
        if box_size == 0:
            return None  # the last box, running to the end of the file
        if box_size == 1:  # a 64-bit size follows the type
            box_size = int.from_bytes(header[8:16], "big") if len(header) == 16 else 0
        if box_size < 8 or kind not in _MP4_TOP_LEVEL_BOXES:
            return None  # not a box: data after the file's boxes (padding, a tool's note), decoders ignore it
        needs_moov = needs_moov and not (kind == b"moov" and header[12:16] in _MOOV_CHILDREN)
        if position + box_size > size:
            if needs_moov:
                return None  # no moov met: not a QuickTime file at all (or one FFmpeg cannot open)
            return (f"its MP4 '{kind.decode('ascii')}' box declares {box_size} bytes and the file holds "
                    f"{size - position} of them: it is cut short")
        position += box_size
    return None  # fewer than 8 bytes left are no box: padding (a cut there would have lost no box's data)


# ---------------------------------------------------------------------------- RIFF, Wave64, AIFF, CAF


@dataclasses.dataclass(frozen=True)
class _ChunkFormat:
    """How a chunked format lays out its chunks: an ID (a 4-byte name, or Wave64's 16-byte GUID, whose
    first 4 bytes are its name), then its size; each chunk starts at a multiple of `alignment`."""

    name: str
    id_bytes: int
    size_bytes: int
    byteorder: str
    size_counts_header: bool  # Wave64's sizes count the chunk's 24-byte header
    alignment: int
    # Where the chunks start when they are not inside an outer chunk (RIFF, FORM) that holds them all:
    # CAF's, after its file header.
    first_chunk: int | None = None
    # The chunk names the format defines, where no outer chunk bounds its chunks: bytes after the last
    # chunk (another tool's note) are told from a chunk by their name. None: any printable name.
    names: frozenset[bytes] | None = None
    unknown_size: int | None = None  # a size that says the chunk runs to the end of the file


_RIFF = _ChunkFormat("RIFF", 4, 4, "little", False, 2)
_RF64 = _ChunkFormat("RF64", 4, 4, "little", False, 2)
_WAVE64 = _ChunkFormat("Wave64", 16, 8, "little", True, 8)
_AIFF = _ChunkFormat("AIFF", 4, 4, "big", False, 2)
_CAF = _ChunkFormat(  # the chunk types of Apple's CAF specification; -1 as a signed 64-bit size: unknown
    "CAF", 4, 8, "big", False, 1, first_chunk=8, unknown_size=(1 << 64) - 1,
    names=frozenset({b"desc", b"data", b"pakt", b"kuki", b"chan", b"free", b"info", b"uuid", b"strg", b"mark",
                     b"regn", b"inst", b"midi", b"ovvw", b"peak", b"edct", b"umid", b"ldsc"}))


def _rf64_sizes(stream: io.BufferedIOBase) -> dict[bytes, int]:
    """An RF64 file's 64-bit sizes from its ds64 chunk (the first, at byte 12), for the chunks whose
    32-bit size says 0xFFFFFFFF: its own (b"RF64"), its data chunk's and its table's."""
    stream.seek(12)
    header = stream.read(36)
    if header[:4] != b"ds64" or len(header) < 36:
        return {}
    sizes = {b"RF64": int.from_bytes(header[8:16], "little"), b"data": int.from_bytes(header[16:24], "little")}
    for _ in range(min(int.from_bytes(header[32:36], "little"), 64)):
        entry = stream.read(12)
        if len(entry) < 12:
            break
        sizes[entry[:4]] = int.from_bytes(entry[4:], "little")
    return sizes


def _chunks_problem(stream: io.BufferedIOBase, size: int, layout: _ChunkFormat,
                    to_end: list[tuple[int, int]] | None = None) -> str | None:
    """Why the chunks of a file in `layout` are cut short, or None; `to_end` receives (where its size is,
    the bytes to the end of the file) of a chunk whose size is written as unknown."""
    header_bytes = layout.id_bytes + layout.size_bytes
    large = _rf64_sizes(stream) if layout is _RF64 else {}

    def declared(header: bytes) -> int | None:
        """A chunk's data size from its header; None when its writer left it unknown."""
        value = int.from_bytes(header[layout.id_bytes : header_bytes], layout.byteorder)
        if layout.size_counts_header:
            return value - header_bytes if value >= header_bytes else None
        if value == layout.unknown_size:
            return None
        if value == _RF64_SIZE_IN_DS64 and header[:4] in large:
            value = large[header[:4]]
        elif value >= _RIFF_UNKNOWN_SIZE and layout.size_bytes == 4:
            return None
        if value == 0 and header[:4] in (b"data", b"RIFF", b"RF64"):
            return None  # a size a streaming writer never filled in
        return value

    def whole_chunk_at(position: int) -> bool:
        """Whether a chunk with a name and a size that fits in the file starts at `position`."""
        stream.seek(position)
        header = stream.read(header_bytes)
        data_size = declared(header) if len(header) == header_bytes and _is_chunk_name(header[:4]) else None
        return data_size is not None and position + header_bytes + data_size <= size

    def chunks_problem(position: int, end: int, part: str) -> str | None:
        """Walks the chunks from `position` to `end`; `part` names the outer chunk they are in, where
        the file has more than one."""
        while position + header_bytes <= end:
            stream.seek(position)
            header = stream.read(header_bytes)
            name = header[:4]
            if layout.id_bytes == 4 and not _is_chunk_name(name) or layout.names is not None and name not in layout.names:
                return None  # not a chunk: data after the file's chunks, which decoders ignore
            data_size = declared(header)
            if data_size is None:  # written as unknown: the data runs to the end of the file
                if to_end is not None:
                    to_end.append((position + layout.id_bytes, size - position - header_bytes))
                return None
            if position + header_bytes + data_size > size:
                return (f"its {layout.name} '{name.decode('latin-1')}' chunk{part} declares {data_size} bytes and "
                        f"the file holds {size - position - header_bytes} of them: it is cut short")
            position += header_bytes + data_size
            # the pad byte after an odd size (it may be missing at the end); some writers leave it out
            # even where another chunk follows (libsndfile reads such a WAV whole): a whole chunk where
            # the pad byte should be, and none after it, is taken as the next chunk
            if position % layout.alignment and not (layout.id_bytes == 4 and whole_chunk_at(position)
                                                    and not whole_chunk_at(position + 1)):
                position += -position % layout.alignment
        return None

    if layout.first_chunk is not None:
        return chunks_problem(layout.first_chunk, size, "")
    form_bytes = 4 if layout.id_bytes == 4 else 16  # the form type after the outer chunk's header
    outer_start, part = 0, ""
    parts: list[tuple[int, int]] = []  # an AVI's RIFF chunks walked: where each one's chunks start and end
    while True:
        stream.seek(outer_start)
        outer = declared(stream.read(header_bytes))
        # the chunks inside the outer chunk; bytes after it are not read (decoders ignore them)
        end = size if outer is None else min(size, outer_start + header_bytes + outer)
        problem = chunks_problem(outer_start + header_bytes + form_bytes, end, part)
        if problem is None and part and outer is not None and outer_start + header_bytes + outer > size:
            # cut between two of its chunks: an OpenDML part's size is written as it is closed, never a guess
            problem = (f"its OpenDML 'AVIX' part at byte {outer_start} declares {outer} bytes and the file holds "
                       f"{size - outer_start - header_bytes} of them: it is cut short")
        if problem is not None or outer is None or layout is not _RIFF:
            return problem
        parts.append((outer_start + header_bytes + form_bytes, end))
        # OpenDML: an AVI over 1 GB goes on in RIFF 'AVIX' chunks after its first, each holding a movi
        # list of more frames, which FFmpeg plays on from the first's: each is walked as the first is
        outer_start = end + (outer & 1)
        stream.seek(outer_start)
        following = stream.read(header_bytes + form_bytes)
        if following[:4] == b"RIFF" and len(following) < header_bytes + form_bytes:
            return (f"the file ends inside the header of its RIFF chunk at byte {outer_start} (an OpenDML AVI's "
                    "next part): it is cut short")
        if following[:4] != b"RIFF" or following[8:12] != b"AVIX":
            return _opendml_frames_problem(stream, parts)
        part = f" (in its OpenDML 'AVIX' part at byte {outer_start})"


def _riff_chunks(stream: io.BufferedIOBase, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """The (name, data start, data size) of the RIFF chunks from `start` to `end` (each padded to an
    even size); a chunk that is no chunk or runs past `end` ends them (the walk above judged the file;
    this reads what it holds)."""
    while start + 8 <= end:
        stream.seek(start)
        header = stream.read(8)
        data_size = int.from_bytes(header[4:], "little")
        if not _is_chunk_name(header[:4]) or start + 8 + data_size > end:
            return
        yield header[:4], start + 8, data_size
        start += 8 + data_size + (data_size & 1)


def _list_type(stream: io.BufferedIOBase, name: bytes, data_start: int, data_size: int) -> bytes | None:
    """A LIST chunk's list type ('hdrl', 'movi', ...); None for another chunk."""
    if name != b"LIST" or data_size < 4:
        return None
    stream.seek(data_start)
    return stream.read(4)


# The audio formats (WAVEFORMATEX tags) whose packets FFmpeg's AVI writer adds to the video frames in
# the OpenDML header's frame count: MPEG audio layer 2 and 3.
_MPEG_AUDIO_TAGS = {0x50, 0x55}


def _opendml_frames_problem(stream: io.BufferedIOBase, parts: list[tuple[int, int]]) -> str | None:
    """An OpenDML AVI (its header list 'hdrl' holds a LIST 'odml' with a 'dmlh' chunk) that holds fewer
    frames than the dmlh chunk counts: cut exactly between two of its RIFF parts, which FFmpeg plays as
    the shorter clip the parts left hold. Its frames are its video chunks ('NNdc', 'NNdb') in every part's
    movi list (in 'rec ' lists too), the most of any video stream, plus its MPEG audio chunks, which
    FFmpeg's writer counts too (other writers count the video frames alone: more chunks than the count is
    never a problem). An AVI without a count (FFmpeg's of one RIFF chunk: it leaves the odml list a JUNK
    chunk until a second part starts) or with a count of 0 is not looked at; one of one RIFF chunk with a
    count is (other writers count a file's frames whatever its size, and a file cut right after its first
    part is one)."""
    first_start, first_end = parts[0]
    kinds: list[tuple[bytes, int | None]] = []  # each stream's type ('vids', 'auds', ...) and audio format tag
    declared = 0
    for name, start, data_size in _riff_chunks(stream, first_start, first_end):
        if _list_type(stream, name, start, data_size) != b"hdrl":
            continue
        for inner, inner_start, inner_size in _riff_chunks(stream, start + 4, start + data_size):
            kind = _list_type(stream, inner, inner_start, inner_size)
            if kind == b"strl":
                stream_kind, tag = b"", None
                for item, item_start, item_size in _riff_chunks(stream, inner_start + 4, inner_start + inner_size):
                    stream.seek(item_start)
                    if item == b"strh":
                        stream_kind = stream.read(4)
                    elif item == b"strf" and stream_kind == b"auds" and item_size >= 2:
                        tag = int.from_bytes(stream.read(2), "little")
                kinds.append((stream_kind, tag))
            elif kind == b"odml":
                for item, item_start, item_size in _riff_chunks(stream, inner_start + 4, inner_start + inner_size):
                    if item == b"dmlh" and item_size >= 4:
                        stream.seek(item_start)
                        declared = int.from_bytes(stream.read(4), "little")
        break
    if not declared:
        return None
    counts = [0] * len(kinds)

    def count(start: int, end: int, in_group: bool) -> bool:
        """Counts the frame chunks from `start` to `end`; whether they were walked to `end` (a writer
        that left out pad bytes, or a chunk that is no chunk, stops the walk early: then the count is
        not the file's, and the file is not judged by it)."""
        walked = start
        for name, data_start, data_size in _riff_chunks(stream, start, end):
            if not in_group and _list_type(stream, name, data_start, data_size) == b"rec ":  # a group of chunks
                if not count(data_start + 4, data_start + data_size, True):
                    return False
            elif name[:2].isdigit() and int(name[:2]) < len(kinds):
                counts[int(name[:2])] += 1
            walked = data_start + data_size + (data_size & 1)
        return walked >= end - 1  # the last chunk's pad byte may be cut with the list

    for start, end in parts:
        for name, data_start, data_size in _riff_chunks(stream, start, end):
            if _list_type(stream, name, data_start, data_size) == b"movi" and not count(
                    data_start + 4, data_start + data_size, False):
                return None
    frames = max((n for n, (kind, _) in zip(counts, kinds) if kind == b"vids"), default=0) + sum(
        n for n, (kind, tag) in zip(counts, kinds) if kind == b"auds" and tag in _MPEG_AUDIO_TAGS)
    if frames >= declared:
        return None
    return (f"its OpenDML header (dmlh) counts {declared} frames and the file holds {frames} (in {len(parts)} "
            f"RIFF part{'s' if len(parts) > 1 else ''}): it is cut short")


def _is_chunk_name(name: bytes) -> bool:
    """Whether 4 bytes are a RIFF, AIFF or CAF chunk name: printable ASCII."""
    return len(name) == 4 and all(0x20 <= byte < 0x7F for byte in name)


# ---------------------------------------------------------------------------------------------- AU/SND


_AU_MAGIC = {b".snd": "big", b"dns.": "little"}  # Sun's; DEC's little-endian variant, which libsndfile reads too
_AU_UNKNOWN_SIZE = 0xFFFFFFFF


def _au_problem(head: bytes, size: int) -> str | None:
    """An AU file (`head`: its first 16 bytes) cut before the end of the samples its header declares."""
    byteorder = _AU_MAGIC[head[:4]]
    if len(head) < 12:
        return f"its AU header holds {len(head)} of its 24 bytes: it is cut short"
    start, data_size = int.from_bytes(head[4:8], byteorder), int.from_bytes(head[8:12], byteorder)
    if data_size == _AU_UNKNOWN_SIZE or start + data_size <= size:
        return None
    return (f"its AU header declares {data_size} bytes of samples and the file holds {max(size - start, 0)} of "
            "them: it is cut short")


# ----------------------------------------------------------------------------------------------- MP3


@dataclasses.dataclass(frozen=True)
class _Mp3Frame:
    stream: tuple[int, int, int]  # MPEG version, layer and sample rate, which every frame of a stream shares
    length: int  # in bytes, its 4-byte header included
    samples: int  # per channel: 384 (layer I), 1152 (layer II; layer III of MPEG-1), 576 (layer III of MPEG-2/2.5)


_MP3_KBITS = {  # bitrate index 1-14, in kbit/s, by (MPEG-1 or not, layer)
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_KBITS[(False, 3)] = _MP3_KBITS[(False, 2)]
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}  # by version bits


def _mp3_frame(header: bytes) -> _Mp3Frame | None:
    """The MPEG audio frame whose header `header` begins with; None where it is no frame header (a
    reserved field, or a free-format bitrate, whose frames' lengths no header states)."""
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version, layer_bits = (header[1] >> 3) & 3, (header[1] >> 1) & 3
    bitrate_index, rate_index, padding = header[2] >> 4, (header[2] >> 2) & 3, (header[2] >> 1) & 1
    if version == 1 or layer_bits == 0 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    layer, mpeg1 = 4 - layer_bits, version == 3
    bits_per_second = _MP3_KBITS[(mpeg1, layer)][bitrate_index - 1] * 1000
    rate = _MP3_RATES[version][rate_index]
    if layer == 1:
        length = (12 * bits_per_second // rate + padding) * 4
    else:
        length = (144 if layer == 2 or mpeg1 else 72) * bits_per_second // rate + padding
    samples = 384 if layer == 1 else 1152 if layer == 2 or mpeg1 else 576
    return _Mp3Frame((version, layer, rate), length, samples)


def id3v2_tags_end(stream: io.BufferedIOBase) -> int:
    """Where an MP3's audio starts: after the ID3v2 tags before it (each skipped, as FFmpeg adds its
    own after any other). The stream is left there."""
    stream.seek(0)
    while (tag := stream.read(10))[:3] == b"ID3" and len(tag) == 10:
        length = sum((byte & 0x7F) << shift for byte, shift in zip(tag[6:10], (21, 14, 7, 0)))
        stream.seek(length + (10 if tag[5] & 0x10 else 0), 1)  # 4 syncsafe bytes, then a footer if flagged
    stream.seek(-len(tag), 1)
    return stream.tell()


def _walk_mp3(stream: io.BufferedIOBase, size: int) -> ContainerCheck:
    start = id3v2_tags_end(stream)
    data = stream.read()
    tags = _mp3_tags(data, start, size)
    # the first frame: a header followed by another of the same stream (sync bytes occur in other data)
    first = None
    for offset in range(min(len(data) - 3, 4096)):
        frame = _mp3_frame(data[offset : offset + 4])
        if frame is not None:
            following = _mp3_frame(data[offset + frame.length : offset + frame.length + 4])
            if following is not None and following.stream == frame.stream:
                first = offset
                break
    if first is None:
        return ContainerCheck(None, Mp3Stream(None, None, *tags))
    counter, declared_frames = _mp3_frame_counter(data[first : first + _MP3_COUNTER_BYTES])
    position, stream_kind, samples, frames = first, _mp3_frame(data[first : first + 4]).stream, 0, 0
    problem = None
    while position < len(data):
        frame = _mp3_frame(data[position : position + 4])
        if frame is None or frame.stream != stream_kind:
            # bytes that are no frame: the decoders skip them and go on at the next frame (a stray byte
            # mid-file), or the audio's end: a tag (ID3v1, APE) or other bytes after it (an old ripper's
            # padding, fewer bytes than a header), which libsndfile (mpg123) and FFmpeg skip, decoding
            # every frame before them
            resumed = _mp3_resync(data, position, stream_kind)
            if resumed is None:
                break
            position = resumed
            continue
        if position + frame.length > len(data):
            problem = (f"its last MP3 frame (at byte {start + position}) holds {len(data) - position} of its "
                       f"{frame.length} bytes: it is cut short")
            break
        position += frame.length
        samples += frame.samples
        frames += 1
    held = frames - 1 if counter is not None else frames  # the counting frame holds no audio
    # a file cut exactly between two frames: fewer than its counter counts (a frame's slack for writers
    # that count the counting frame too, and 1% for a count that is off by an encoder's padding)
    if problem is None and declared_frames is not None and held + 1 < declared_frames * (1 - TRUNCATION_MARGIN):
        problem = (f"its {counter} frame counts {declared_frames} MP3 frames and the file holds {held} of them: "
                   "it is cut short")
    # more frames than counted (a damaged count, or files joined after the first's counting frame):
    # libsndfile decodes only the counted ones, silently a shorter clip (FFmpeg plays them all)
    if problem is None and declared_frames is not None and held > declared_frames * (1 + TRUNCATION_MARGIN) + 1:
        problem = (f"its {counter} frame counts {declared_frames} MP3 frames and the file holds {held}: libsndfile "
                   "decodes only those it counts (a damaged count, or files joined after it); re-encode it")
    return ContainerCheck(problem, Mp3Stream(samples, declared_frames, *tags))


# mpg123 (libsndfile's MP3 decoder) looks this far past bytes that are no frame for the next one, and
# stops decoding with an error when none starts within them.
_MP3_RESYNC_LIMIT = 1024


def _mp3_resync(data: bytes, position: int, stream_kind: tuple[int, int, int]) -> int | None:
    """Where the frames go on after bytes at `position` that are no frame of the stream, as mpg123
    resyncs: the next header of the same stream within _MP3_RESYNC_LIMIT bytes that another follows
    (sync bytes occur in other data, in a tag's cover art); None where none does (the audio ended)."""
    offset = data.find(b"\xff", position + 1, position + 1 + _MP3_RESYNC_LIMIT)
    while offset != -1:
        frame = _mp3_frame(data[offset : offset + 4])
        if frame is not None and frame.stream == stream_kind:
            following = _mp3_frame(data[offset + frame.length : offset + frame.length + 4])
            if following is not None and following.stream == stream_kind:
                return offset
        offset = data.find(b"\xff", offset + 1, position + 1 + _MP3_RESYNC_LIMIT)
    return None


# A Xing/Info frame's tag follows the first frame's header (and its CRC, if any) and side information:
# by (MPEG-1 or not, mono or not), in bytes; a VBRI tag sits 32 bytes after the header whatever the frame.
_MP3_SIDE_INFO = {(True, False): 32, (True, True): 17, (False, False): 17, (False, True): 9}
_MP3_VBRI = 36
# The first frame's bytes that hold its count: a VBRI tag's name, version, delay, quality, byte count
# and frame count (the furthest; a Xing tag's name, flags and count end at most 4 + 2 + 32 + 12 bytes in).
_MP3_COUNTER_BYTES = _MP3_VBRI + 18


def _mp3_frame_counter(head: bytes) -> tuple[str | None, int | None]:
    """The counting frame the first frame (`head`: its first bytes) is: ("Xing", "Info" or "VBRI", the
    audio frames it counts or None where it leaves them out), or (None, None) for an audio frame."""
    mpeg1, mono, protected = (head[1] >> 3) & 3 == 3, head[3] >> 6 == 3, not head[1] & 1
    xing = 4 + (2 if protected else 0) + _MP3_SIDE_INFO[(mpeg1, mono)]
    name = head[xing : xing + 4]
    if name in (b"Xing", b"Info"):
        has_count = head[xing + 7] & 1 if len(head) >= xing + 8 else 0  # the flags' lowest bit
        count = int.from_bytes(head[xing + 8 : xing + 12], "big") if has_count and len(head) >= xing + 12 else 0
        return name.decode("ascii"), count or None  # a count of 0 (a writer that could not seek back): mpg123 estimates
    if head[_MP3_VBRI : _MP3_VBRI + 4] == b"VBRI" and len(head) >= _MP3_COUNTER_BYTES:
        return "VBRI", int.from_bytes(head[_MP3_COUNTER_BYTES - 4 : _MP3_COUNTER_BYTES], "big") or None
    return None, None


def _mp3_tags(data: bytes, leading: int, size: int) -> tuple[int, int]:
    """(`Mp3Stream.counted_bytes`, `Mp3Stream.tag_bytes`) of an MP3 whose `leading` bytes are ID3v2
    tags and `data` the rest."""
    counted = size - 128 if data[-128:-125] == b"TAG" else size
    footer_end = counted - leading
    footer = data[footer_end - 32 : footer_end] if footer_end >= 32 else b""  # an APE tag's footer
    ape = 0  # its size counts its items and its footer, not its header
    if footer[:8] == b"APETAGEX":
        ape = int.from_bytes(footer[12:16], "little") + (32 if footer[23] & 0x80 else 0)  # flag: has a header
    return counted, min(leading + ape, counted - 1)
