"""Whether a media file's container is whole, from its structure alone (no decoding): the check
behind `load_audio` and `load_video` for formats whose decoders read a cut-short file silently as a
shorter clip.

- Ogg (Vorbis, Opus, FLAC, Theora): no header states the length, but every page states its own size
  and checksum, and each logical stream (each link of a chained file) ends with a page flagged
  end-of-stream. A file that stops inside a page, or before a stream's last page, is cut short.
- Matroska / WebM: the Segment element declares its size; a file that ends before it is cut short.
  Bytes after a whole segment are not looked at (decoders ignore them).
  A segment of unknown size (what live encoders write) declares nothing and is never refused.
- MP4 / QuickTime (opening with an ftyp box): each top-level box (ftyp, moov, mdat, ...) declares
  its size; FFmpeg decodes an mp4 whose last box is cut (a moov at the end, an mdat at the end of a
  "faststart" file) as far as it can, all of its frames when only the index's end is lost. The
  walk ends at bytes that are no top-level box (padding, appended data), which decoders ignore.

Other formats (WAV, MP3, FLAC, AVI, ...) return None here; the audio reader compares their sample
counts (`modrwkv.encoders.media`).
"""

from __future__ import annotations

import io
import zlib
from pathlib import Path

_OGG_CAPTURE = b"OggS"
_OGG_END_OF_STREAM = 0x04
_MATROSKA_EBML = bytes.fromhex("1A45DFA3")
_MATROSKA_SEGMENT = 0x18538067
# The box an MP4 or QuickTime file opens with (every writer since 2001; older QuickTime files open
# with wide, free, mdat or moov, words too common at bytes 4-8 of other data to take as a sign).
_MP4_FIRST_BOX = b"ftyp"
# The boxes ISO/IEC 14496-12 and QuickTime place at the top level; anything else there is data after
# the file (padding, an appended note), which FFmpeg ignores.
_MP4_TOP_LEVEL_BOXES = {b"ftyp", b"styp", b"pdin", b"moov", b"moof", b"mfra", b"mdat", b"free", b"skip", b"wide",
                        b"meta", b"uuid", b"sidx", b"ssix", b"prft", b"emsg", b"udta", b"pnot"}
_BIT_REVERSED = bytes(int(f"{byte:08b}"[::-1], 2) for byte in range(256))


def container_problem(source: Path | io.BytesIO) -> str | None:
    """Why the file's container is cut short or damaged (a sentence without the file's name, for
    the caller to name it), or None when it is whole or not a container checked here."""
    with open(source, "rb") if isinstance(source, Path) else _RestoredPosition(source) as stream:
        stream.seek(0, io.SEEK_END)
        size = stream.tell()
        stream.seek(0)
        head = stream.read(8)
        if head[:4] == _OGG_CAPTURE:
            return _ogg_problem(stream, size)
        if head[:4] == _MATROSKA_EBML:
            return _matroska_problem(stream, size)
        if head[4:8] == _MP4_FIRST_BOX:
            return _mp4_problem(stream, size)
        return None


class _RestoredPosition:
    """A buffer opened for a check and put back where its reader left it."""

    def __init__(self, buffer: io.BytesIO) -> None:
        self.buffer, self.start = buffer, buffer.tell()

    def __enter__(self) -> io.BytesIO:
        return self.buffer

    def __exit__(self, *exc: object) -> None:
        self.buffer.seek(self.start)


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


def _ebml_number(stream: io.BufferedIOBase, keep_marker: bool) -> tuple[int, int, bool] | None:
    """An EBML variable-length number at the stream's position: (value, its length in bytes,
    whether every value bit is set, which for a size means unknown); None where none is."""
    first = stream.read(1)
    if not first or first[0] == 0:
        return None
    length = 9 - first[0].bit_length()
    rest = stream.read(length - 1)
    if len(rest) < length - 1:
        return None
    marker = 1 << (7 * length)
    value = int.from_bytes(first + rest, "big")
    data = value ^ marker
    return (value if keep_marker else data), length, data == marker - 1


def _matroska_problem(stream: io.BufferedIOBase, size: int) -> str | None:
    position = 0
    while position < size:
        stream.seek(position)
        element, declared = _ebml_number(stream, keep_marker=True), _ebml_number(stream, keep_marker=False)
        if element is None or declared is None:
            return None  # not an element: nothing this check can say (the decoder reads what it can)
        (element_id, id_length, _), (data_size, size_length, unknown) = element, declared
        if unknown:
            return None  # a live stream's segment: its length is not declared
        start = position + id_length + size_length
        if start + data_size > size:
            name = "Segment element" if element_id == _MATROSKA_SEGMENT else f"top-level element 0x{element_id:X}"
            return (f"its Matroska {name} declares {data_size} bytes and the file holds {size - start} of "
                    "them: it is cut short")
        if element_id == _MATROSKA_SEGMENT:
            return None  # whole: what follows the segment (appended data, another file) is not read
        position = start + data_size
    return None


def _mp4_problem(stream: io.BufferedIOBase, size: int) -> str | None:
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
        if position + box_size > size:
            return (f"its MP4 '{kind.decode('ascii')}' box declares {box_size} bytes and the file holds "
                    f"{size - position} of them: it is cut short")
        position += box_size
    return None  # fewer than 8 bytes left are no box: padding (a cut there would have lost no box's data)
