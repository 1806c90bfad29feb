"""Reading the text files users write: data records, CSV series, YAML configs; and writing the
project's own text files whole (`write_text_atomically`).

One decoder for all of them, so that each accepts what common editors and shells write (UTF-8 with
or without a byte-order mark, UTF-16 with one, as Windows PowerShell's `>` and Notepad's "Unicode"
produce, any line ending) and each failure names the file and line. YAML errors name the line and
column of the problem instead of PyYAML's multi-line report about "<unicode string>".
"""

from __future__ import annotations

import bz2
import codecs
import contextlib
import gzip
import io
import lzma
import os
import stat
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


class TextFileError(ValueError):
    """A text file that cannot be read as text (or as YAML); `source` is "path" or "path:line"."""

    def __init__(self, source: str, detail: str) -> None:
        super().__init__(f"{source}: {detail}")
        self.source = source
        self.detail = detail


def write_bytes_atomically(path: Path, data: bytes | memoryview) -> None:
    """Writes `data` to `path` through a temporary file and a rename: a reader, a concurrent writer
    finishing at the same moment, or a kill midway never leaves half a file. A write that fails (a
    full disk, a quota, `path` a folder) is an OSError naming `path`; the partial temporary file is
    deleted. As a plain write would, it writes a symlink's target (the link stays a link) and keeps an
    existing file's permissions (a config made private stays private; a new file's come from the umask)."""
    target = Path(os.path.realpath(path))
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        mode = stat.S_IMODE(target.stat().st_mode) if target.is_file() else None
        temporary.write_bytes(data)
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, target)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


def write_text_atomically(path: Path, text: str) -> None:
    """`write_bytes_atomically` of `text` in UTF-8."""
    write_bytes_atomically(path, text.encode("utf-8"))


def append_text_durably(path: Path, text: str) -> None:
    """Appends `text` (UTF-8) to `path` and waits until it is on disk. A write that fails (a full disk)
    is an OSError naming `path`, and the file is cut back to what it held: never half of `text`."""
    data = memoryview(text.encode("utf-8"))
    try:
        with path.open("ab", buffering=0) as handle:  # unbuffered: nothing left to write at close
            size = handle.seek(0, os.SEEK_END)
            try:
                while data:
                    data = data[handle.write(data):]
                os.fsync(handle.fileno())
            except OSError:
                with contextlib.suppress(OSError):
                    handle.truncate(size)
                raise
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


# What an archive or a compressed file starts with, what it is, and the command that unpacks it: an archive given as
# a data file (a Kaggle download's .zip) is read once unpacked, and told so rather than "not UTF-8 text"; a file
# compressed by a compression of `_COMPRESSIONS` is read through it (`open_data`).
_PACKED = {b"PK\x03\x04": ("a ZIP archive", "unzip"), b"\x1f\x8b": ("gzip-compressed", "gunzip"),
           b"BZh": ("bzip2-compressed", "bunzip2"), b"\xfd7zXZ\x00": ("xz-compressed", "unxz"),
           b"\x28\xb5\x2f\xfd": ("zstd-compressed", "unzstd"), b"7z\xbc\xaf\x27\x1c": ("a 7-Zip archive", "7z x"),
           b"Rar!\x1a\x07": ("a RAR archive", "unrar x")}
# The compressions of a single file the standard library reads, by `_PACKED`'s name: (their name in messages, the
# file's suffix, their reader). A data file so compressed (pandas' `to_csv("x.csv.gz")`, GluonTS' train/data.json.gz,
# `datasets`' .jsonl.gz / .json.xz) is read as the file it holds, by that file's name (`unpacked_name`); archives of
# several files and zstd (no standard library module) are refused (`packed_detail`).
_COMPRESSIONS: dict[str, tuple[str, str, Callable[[BinaryIO], BinaryIO]]] = {
    "gzip-compressed": ("gzip", ".gz", gzip.open), "bzip2-compressed": ("bzip2", ".bz2", bz2.open),
    "xz-compressed": ("xz", ".xz", lzma.open)}
COMPRESSED_SUFFIXES = tuple(suffix for _, suffix, _ in _COMPRESSIONS.values())


PACKED_HEAD = 10  # the bytes `packed_format` reads of a file's start (bzip2's magic and its first block's)


def packed_format(head: bytes) -> tuple[str, str] | None:
    """(what it is, the command that unpacks it) of a file starting with `head` that is an archive or compressed
    (`_PACKED`: "gzip-compressed", "gunzip"); None for any other file. bzip2's "BZh" is text a line may begin with:
    a bzip2 file is told by its block size digit and the magic of its first block (or of the stream's end) too."""
    if head.startswith(b"BZh") and not (head[3:4].isdigit() and head[4:10] in (b"1AY&SY", b"\x17rE8P\x90")):
        return None
    return next((kind for magic, kind in _PACKED.items() if head.startswith(magic)), None)


def packed_detail(head: bytes) -> str | None:
    """What a file starting with `head` is, and what to do, when it is an archive or compressed (`packed_format`);
    None for any other file."""
    packed = packed_format(head)
    if packed is None:
        return None
    what, command = packed
    return f"{what}, not a data file: unpack it ({command}) and give the file or folder inside"


def unpacked_name(name: str) -> str:
    """A file's name without its compression's suffix (`COMPRESSED_SUFFIXES`, any case): the name of the file it
    holds, which tells its format ("data.json.gz": "data.json"); any other name as it is."""
    stem, suffix = os.path.splitext(name)
    return stem if suffix.lower() in COMPRESSED_SUFFIXES else name


def data_suffix(path: str | Path) -> str:
    """The extension, lower case, of the data file `path` holds: ".csv" for x.csv and x.csv.gz (`unpacked_name`),
    "" for data.gz."""
    return Path(unpacked_name(Path(path).name)).suffix.lower()


_DECOMPRESSED_BUFFER = 1 << 16  # the decompressed bytes read at a time (lines are cut from them)


def open_data(path: str | Path, error: Callable[[str, str], Exception] = TextFileError) -> BinaryIO:
    """`path` open for reading the bytes of the data file it is, or holds when it is compressed by one of
    `_COMPRESSIONS` (told by its first bytes, whatever its name): the compressed stream is read as it is read, once
    (a seek back to the start starts it again, cheaply after a file's head; a seek forward decompresses up to it).
    An archive or a zstd file raises `error(path, packed_detail)`; a read of a compressed stream that is cut short
    or corrupt raises `error(path, "truncated gzip stream: ...")`, "not valid bzip2 data (...)"; OSError for a file
    that does not open."""
    handle = open(path, "rb")  # (returned open, or closed below)
    head = handle.read(PACKED_HEAD)
    handle.seek(0)
    packed = packed_format(head)
    if packed is None:
        return handle
    if packed[0] not in _COMPRESSIONS:
        handle.close()
        raise error(str(path), packed_detail(head) or "")
    return io.BufferedReader(_Decompressed(handle, packed[0], str(path), error), buffer_size=_DECOMPRESSED_BUFFER)


class _Decompressed(io.RawIOBase):
    """The bytes a compressed file holds (`open_data`), read through its compression's module: a stream cut short
    or corrupt is `error` naming the file, not the module's EOFError or OSError."""

    def __init__(self, handle: BinaryIO, compression: str, name: str,
                 error: Callable[[str, str], Exception]) -> None:
        super().__init__()
        self._kind, _, opener = _COMPRESSIONS[compression]
        self._file, self._stream = handle, opener(handle)
        self._name, self._error = name, error

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._reading(self._stream.readinto, buffer)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._reading(self._stream.seek, offset, whence)

    def tell(self) -> int:
        return self._stream.tell()

    def close(self) -> None:
        if not self.closed:
            self._stream.close()
            self._file.close()
        super().close()

    def _reading(self, read: Callable[..., int], *args: Any) -> int:
        try:
            return read(*args)
        except EOFError:
            raise self._error(self._name, f"truncated {self._kind} stream: the file ends before its compressed data "
                              "does (an interrupted download or copy?)") from None
        except (OSError, zlib.error, lzma.LZMAError) as err:
            raise self._error(self._name, f"not valid {self._kind} data ({err})") from None


def decode_text(raw: bytes, name: str | Path, *, partial: bool = False) -> str:
    """`raw` as text: UTF-16 when it starts with a UTF-16 byte-order mark, else UTF-8 (a UTF-8
    byte-order mark is dropped). `partial`: `raw` is the head of a longer file, so a character cut
    at its end is not an error. Raises TextFileError naming the line of the first bad byte."""
    encoding = "utf-16" if raw.startswith(UTF16_BOMS) else "utf-8-sig"
    try:
        return codecs.getincrementaldecoder(encoding)().decode(raw, final=not partial)
    except UnicodeDecodeError as err:
        if encoding == "utf-16":
            raise TextFileError(str(name), "starts with a UTF-16 byte-order mark but is not UTF-16 text") from None
        packed = packed_detail(raw)
        if packed is not None:
            raise TextFileError(str(name), packed) from None
        line = raw.count(b"\n", 0, err.start) + 1
        raise TextFileError(f"{name}:{line}", f"not UTF-8 text: byte {raw[err.start]:#04x} (save the file as UTF-8)"
                            ) from None


def read_text(path: str | Path) -> str:
    """A whole text file, decompressed as `open_data` reads it and decoded as `decode_text` does. A missing file or
    a folder raises the OSError naming it."""
    with open_data(path) as handle:
        return decode_text(handle.read(), path)


def read_yaml(path: str | Path) -> Any:
    """The YAML document in `path` (None when it is empty); syntax errors raise TextFileError
    "path:line:column: problem (context)"."""
    import yaml

    try:
        return yaml.safe_load(read_text(path))
    except yaml.MarkedYAMLError as err:
        raise TextFileError(*_yaml_problem(str(path), err)) from None
    except yaml.YAMLError as err:
        raise TextFileError(str(path), f"not valid YAML ({err})") from None


def _yaml_problem(name: str, err: Any) -> tuple[str, str]:
    """("path:line:column", "problem (context at line L, column C)") from a PyYAML MarkedYAMLError."""
    mark = err.problem_mark or err.context_mark
    source = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else name
    detail = err.problem or "not valid YAML"
    if err.context:
        where = err.context_mark
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None and where != mark else ""
        detail += f" ({err.context}{at})"
    if "\t" in detail or "'\\t'" in detail:
        detail += "; YAML indents with spaces, not tabs"
    return source, f"invalid YAML: {detail}"
