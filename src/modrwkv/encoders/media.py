"""Turns raw media items (paths, bytes, decoded objects) into the one in-memory form each encoder
expects: an RGB `PIL.Image` for images, a float32 mono waveform at a fixed rate for audio, and for
video a few RGB frames sampled uniformly over the clip, each with its timestamp (a video reaches
the model as images: see `modrwkv.processing.video`).

Encoders never see the many ways an image or a clip can arrive, and every unreadable item fails
here with a `ValueError` that names the item, so a bad sample in a million-line dataset can be
found. Optional libraries (Pillow, soundfile, scipy, PyAV) are imported on first use: the LM and the
series encoder work without them.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import io
import logging
import math
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data.readers.base import NamedBytes, read_embedded
from .containers import TRUNCATION_MARGIN, ContainerCheck, check_container

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)

# Modes whose alpha channel must be composited away (Pillow's convert("RGB") would drop it and
# reveal whatever colour the transparent pixels happen to hold, often black).
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}


def describe(item: Any) -> str:
    """A short, log-safe name for an item, used in every error message."""
    if isinstance(item, (str, os.PathLike)):
        text = os.fspath(item)
        if text.startswith("data:"):
            return f"<data URI, {len(text)} chars>"
        return repr(text)
    if isinstance(item, NamedBytes):  # a tar member's: its name
        return f"{item.name} ({len(item)} bytes)"
    if isinstance(item, (bytes, bytearray, memoryview)):
        return f"<{len(item)} bytes>"
    if isinstance(item, np.ndarray):
        return f"<array {item.dtype} {tuple(item.shape)}>"
    if isinstance(item, Mapping):
        if item.get("path"):
            return repr(str(item["path"]))
        return f"<dict with keys {sorted(map(str, item))}>"
    if isinstance(item, tuple):
        return f"<tuple of {len(item)}>"
    return f"<{type(item).__name__}>"


class MediaError(ValueError):
    """A media item that cannot be read; `modality` is "image", "audio" or "video". `reason` is what
    is wrong without the item's name, for a caller that names the item its own way (the server names
    the request's content part); it defaults to the message."""

    def __init__(self, modality: str, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.modality = modality
        self.reason = reason or message


# How the running program's user raises the limit, quoted by ImageTooLarge (set_max_image_pixels).
_how_to_raise = "modrwkv.set_max_image_pixels({pixels}) before loading"
_PILLOW_BOMB_SIZE = re.compile(r"Image size \((\d+) pixels\)")


class ImageTooLarge(MediaError):
    """An image with more pixels than this process decodes (`set_max_image_pixels`: Pillow's
    `PIL.Image.MAX_IMAGE_PIXELS`, its guard against decompression bombs). `size` is (width, height),
    or None when Pillow refused the image before telling it (above twice the limit); `pixels` is
    width x height (from Pillow's message then), or None if unknown."""

    def __init__(self, where: str, size: tuple[int, int] | None, limit: int, pixels: int | None = None) -> None:
        self.size = size
        self.pixels = size[0] * size[1] if size is not None else pixels
        self.limit = limit
        if size is not None:
            found = f"{size[0]}x{size[1]} = {self.pixels:,}"
        else:
            found = f"{self.pixels:,}" if self.pixels is not None else f"more than {2 * limit:,}"
        needed = self.pixels if self.pixels is not None else 2 * limit + 1
        super().__init__("image", (
            f"image {where} has {found} pixels, more than the {limit:,} allowed (a guard against decompression "
            f"bombs: small files that decode to gigabytes); to load it, raise the limit to at least {needed} "
            f"with {_how_to_raise.format(pixels=needed)}, or scale the image down"))


def open_image(source: Any, where: str) -> Image.Image:
    """`PIL.Image.open(source)` (reads the header, not the pixels), with Pillow's decompression-bomb
    guard reported as one `ImageTooLarge` naming the item: Pillow itself prints a
    DecompressionBombWarning for images between its limit and twice that, which it then decodes
    anyway, and raises its own error above."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    # Pillow warns while opening; the check below says the same once, as an error that names the item.
    # (catch_warnings swaps the process's filter list: concurrent openers can at worst leave this
    # one "ignore" filter in place, for a warning that only ever comes from here.)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(source)
        except Image.DecompressionBombError as exc:
            told = _PILLOW_BOMB_SIZE.search(str(exc))
            raise ImageTooLarge(where, None, limit or 0, int(told.group(1)) if told else None) from None
    if limit is not None and image.width * image.height > limit:
        image.close()
        raise ImageTooLarge(where, image.size, limit)
    return image


def max_image_pixels() -> int | None:
    """The largest image (width x height) this process decodes; None: no limit."""
    from PIL import Image

    return Image.MAX_IMAGE_PIXELS


def set_max_image_pixels(pixels: int | None, *, how_to_raise: str | None = None) -> None:
    """Sets the largest image (width x height) that every image reader in this process decodes
    (`load_image`, and so processors, pipelines, training data and evaluation); larger ones raise
    `ImageTooLarge`. None removes the limit (only for trusted images). Default: Pillow's 89,478,485.

    The limit is Pillow's decompression-bomb guard, `PIL.Image.MAX_IMAGE_PIXELS`: process-wide, as
    images are decoded in worker threads and data-loader processes. `how_to_raise` is how the
    program's user changes it, quoted by the error with `{pixels}` replaced by the size needed (the
    CLI passes e.g. "modrwkv chat --max-image-pixels {pixels}")."""
    global _how_to_raise
    from PIL import Image

    if pixels is not None and (isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 1):
        raise ValueError(f"the image pixel limit must be a positive integer or None, got {pixels!r}")
    if pixels != Image.MAX_IMAGE_PIXELS:
        logger.info("image size limit: %s pixels (was %s)", pixels, Image.MAX_IMAGE_PIXELS)
    Image.MAX_IMAGE_PIXELS = pixels
    if how_to_raise is not None:
        _how_to_raise = how_to_raise


def allow_images_of(pixels: int) -> None:
    """Raises the process's image size limit (`set_max_image_pixels`) to at least `pixels`, never
    lowering it: for a server whose own, per-request limit (`ServerLimits.max_image_pixels`) is
    checked before decoding, sharing the process with other image readers."""
    limit = max_image_pixels()
    if limit is not None and pixels > limit:
        set_max_image_pixels(pixels)


def decoder_message(exc: BaseException, where: str) -> str:
    """A decoder's complaint, with the object reprs that Pillow and soundfile put in their messages
    (`<_io.BytesIO object at 0x7f...>`, meaningless to whoever sent the file) replaced by `where`."""
    pil = sys.modules.get("PIL")  # no PIL error can exist unless Pillow was imported
    if pil is not None and isinstance(exc, pil.UnidentifiedImageError):
        return "not a recognised image format (PNG, JPEG, WebP, GIF, BMP, TIFF, ...)"
    soundfile = sys.modules.get("soundfile")
    if soundfile is not None and isinstance(exc, soundfile.LibsndfileError):
        if "Format not recognised" in exc.error_string:
            return "not a recognised audio format (WAV, FLAC, OGG, MP3, ...)"
        return exc.error_string  # without its "Error opening <object>: " prefix: the caller names the item
    return _OBJECT_REPR.sub(where, str(exc))


_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


def _read_bytes_or_path(item: Any) -> tuple[Any, str]:
    """Resolves data URIs, byte buffers and paths to something a decoder can open."""
    where = describe(item)
    if isinstance(item, (bytes, bytearray, memoryview)):
        if len(item) == 0:
            raise ValueError(f"empty byte string {where}")
        return io.BytesIO(bytes(item)), where
    text = os.fspath(item)
    if text.startswith("data:"):
        header, _, payload = text.partition(",")
        if ";base64" not in header:
            raise ValueError(f"only base64 data URIs are supported, got {header!r}")
        try:
            raw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"invalid base64 in data URI {where}: {exc}") from exc
        if not raw:
            raise ValueError(f"empty data URI {where}")
        return io.BytesIO(raw), where
    path = Path(text).expanduser()
    if not path.is_file():
        raise ValueError(f"file not found: {where}")
    return path, where


def _naming_media_errors(kind: str, load: Callable[..., Any], item: Any, *args: Any) -> Any:
    """`load(item, *args)`, with a plain ValueError from a decoder reported as the `kind`'s MediaError;
    bytes embedded in a data file (a Parquet cell, a tar member) are read here, as the item is decoded
    (`read_embedded`)."""
    try:
        return load(read_embedded(item), *args)
    except MediaError:
        raise
    except ValueError as exc:
        raise MediaError(kind, str(exc)) from exc


def _refuse_damaged_container(modality: str, source: Path | io.BytesIO, where: str) -> ContainerCheck:
    """Raises `MediaError` for a file whose container is cut short or damaged (`check_container`:
    Ogg, Matroska/WebM, MP4, RIFF, AIFF, CAF, AU, MP3), which its decoder would read silently as a shorter clip;
    returns what the walk found otherwise (an MP3's sample count)."""
    try:
        check = check_container(source)
    except OSError as exc:  # a file that cannot be read (permissions, an I/O error): what the decoder would say
        reason = exc.strerror or str(exc)
        raise MediaError(modality, f"cannot read {modality} {where}: {reason}", reason=reason) from exc
    if check.problem is not None:
        raise MediaError(modality, f"cannot decode {modality} {where}: {check.problem}", reason=check.problem)
    return check


# ------------------------------------------------------------------------------------------ images


def load_image(item: Any) -> Image.Image:
    """Any supported image item -> an RGB `PIL.Image` with its EXIF orientation applied; raises
    `MediaError` naming the item.

    Accepts a path, a base64 `data:` URI, encoded bytes, a `PIL.Image`, or a numpy array (uint8
    HxW / HxWx1 / HxWx3 / HxWx4, or float in [0, 1]). Transparency is composited onto white (the
    usual convention for documents and icons, and what pretrained encoders were mostly shown);
    16-bit and float greyscale are scaled to 8 bits rather than clipped.
    """
    return _naming_media_errors("image", _load_image, item)


def _load_image(item: Any) -> Image.Image:
    from PIL import Image, ImageOps, UnidentifiedImageError

    where = describe(item)
    if isinstance(item, Image.Image):
        image = item
    elif isinstance(item, np.ndarray):
        image = _image_from_array(item, where)
    elif isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview)):
        source, where = _read_bytes_or_path(item)
        try:
            image = open_image(source, where)
            image.load()  # decode now so truncated or corrupt files fail here, with the item's name
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            detail = decoder_message(exc, where)
            raise MediaError("image", f"cannot decode image {where}: {detail}", reason=detail) from exc
    else:
        raise ValueError(f"unsupported image item {where}: expected a path, bytes, a PIL image or a numpy array")
    try:
        image = ImageOps.exif_transpose(image)
        return _to_rgb(image)
    except (OSError, ValueError) as exc:
        raise MediaError("image", f"cannot convert image {where} (mode {image.mode}) to RGB: "
                         f"{decoder_message(exc, where)}") from exc


def _image_from_array(array: np.ndarray, where: str) -> Image.Image:
    from PIL import Image

    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"image array {where} must be HxW, HxWx1, HxWx3 or HxWx4")
    if array.size == 0:
        raise ValueError(f"empty image array {where}")
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0:
            raise ValueError(f"float image array {where} must hold finite values in [0, 1]")
        array = np.round(array * 255.0).astype(np.uint8)
    elif array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype != np.uint8:
        raise ValueError(f"image array {where} must be uint8 (or float in [0, 1]), got {array.dtype}")
    return Image.fromarray(np.ascontiguousarray(array))  # 2-D -> "L", 3 channels -> "RGB", 4 -> "RGBA"


def _to_rgb(image: Image.Image) -> Image.Image:
    from PIL import Image

    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "PA" or (mode == "P" and ("transparency" in image.info or image.palette.mode == "RGBA")):
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_wide_to_uint8(image), mode="L").convert("RGB")
    return image.convert("RGB")


def _wide_to_uint8(image: Image.Image) -> np.ndarray:
    """16/32-bit integer or float greyscale -> 8 bits by scaling (Pillow would clip at 255)."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        top = 1.0 if values.size and values.max() <= 1.0 else 255.0
    elif image.mode.startswith("I;16") or (values.size and values.max() > 255):
        top = 65535.0  # 16-bit data, also when Pillow reports a 16-bit PNG as mode "I"
    else:
        top = 255.0
    return np.clip(np.round(values * (255.0 / top)), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------- audio


def load_audio(item: Any, sample_rate: int = 16000) -> np.ndarray:
    """Any supported audio item -> float32 mono waveform at `sample_rate`, shape [N]; raises
    `MediaError` naming the item.

    Accepts a path or encoded bytes (anything libsndfile reads: wav, flac, ogg/vorbis, mp3, ...),
    a base64 `data:` URI, a `(waveform, sample_rate)` tuple, or a Hugging Face `datasets` audio dict
    (`{"array", "sampling_rate"}` or `{"bytes"|"path"}`). Channels are averaged. For 2-D arrays the
    shorter axis is taken as channels, so both [N, C] (soundfile) and [C, N] (torchaudio) work.
    Integer PCM is scaled to [-1, 1]. Resampling is polyphase with an anti-aliasing filter.
    """
    return _naming_media_errors("audio", _load_audio, item, sample_rate)


def _load_audio(item: Any, sample_rate: int) -> np.ndarray:
    where = describe(item)
    if isinstance(item, Mapping):
        if item.get("array") is not None:
            item = (item["array"], item.get("sampling_rate"))
        elif item.get("bytes"):
            item = item["bytes"]
        elif item.get("path"):
            item = item["path"]
        else:
            raise ValueError(f"audio dict {where} needs 'array' and 'sampling_rate', 'bytes' or 'path'")
    if isinstance(item, tuple):
        waveform, rate = _waveform_and_rate(item, where)
    elif isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview)):
        waveform, rate, where = _decode_audio(item, None, sample_rate)  # resampled as it decodes
    else:
        raise ValueError(f"unsupported audio item {where}: expected a path, bytes, a (waveform, rate) tuple or a dict")
    mono = _to_mono(waveform, where)
    if rate != sample_rate:
        mono = resample(mono, rate, sample_rate)
    return mono


def _waveform_and_rate(item: tuple, where: str) -> tuple[np.ndarray, int]:
    """A decoded `(waveform, sample_rate)` item, checked: numeric samples and a positive whole rate."""
    if len(item) != 2:
        raise ValueError(f"audio tuple {where} must be (waveform, sample_rate)")
    waveform, rate = item
    waveform = _as_numpy(waveform, where)
    if rate is None or isinstance(rate, bool) or not float(rate).is_integer() or rate <= 0:
        raise ValueError(f"audio {where} has an invalid sample rate {rate!r}")
    if not _plausible_sample_rate(int(rate)):
        raise ValueError(f"audio {where} has a sample rate of {int(rate)} Hz, {_SAMPLE_RATES_TEXT}")
    return waveform, int(rate)


# Sample rates of real audio, from narrow-band telephony's (8 kHz, 4 kHz for some codecs) to 768 kHz.
# Outside them a rate is a damaged header or a mistake, and resampling from it takes hours or a
# filter of gigabytes (a Wave64 whose rate a bit flip made 2147434112 Hz never finished).
SAMPLE_RATES = (1_000, 768_000)
_SAMPLE_RATES_TEXT = f"outside real audio's {SAMPLE_RATES[0]} to {SAMPLE_RATES[1]} Hz"


def _plausible_sample_rate(rate: int) -> bool:
    return SAMPLE_RATES[0] <= rate <= SAMPLE_RATES[1]


def _refuse_implausible_rate(rate: int, where: str) -> None:
    """Raises `MediaError` for an encoded file whose header declares a rate outside `SAMPLE_RATES`:
    `audio_seconds` (a data set's check, the server's) refuses it as decoding later would."""
    if not _plausible_sample_rate(rate):
        detail = f"its header declares a sample rate of {rate} Hz, {_SAMPLE_RATES_TEXT} (damaged?)"
        raise MediaError("audio", f"cannot decode audio {where}: {detail}", reason=detail)


def _as_numpy(waveform: Any, where: str) -> np.ndarray:
    if hasattr(waveform, "detach"):  # torch tensor, without importing torch here
        waveform = waveform.detach().cpu().numpy()
    array = np.asarray(waveform)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"audio waveform {where} must be numeric, got {array.dtype}")
    return array


def audio_seconds(item: Any) -> float:
    """The duration of an audio item: of an encoded one (path, bytes, data URI) from its header,
    without decoding it; of a `(waveform, sample_rate)` tuple its samples over its rate (a 2-D
    waveform's shorter axis is its channels, as `load_audio` reads it). Raises `MediaError` for a
    file that is not audio libsndfile reads, or holds no samples (what `load_audio` would refuse later)."""
    return _naming_media_errors("audio", _audio_seconds, item)


def _audio_seconds(item: Any) -> float:
    import soundfile

    if isinstance(item, tuple):
        waveform, rate = _waveform_and_rate(item, describe(item))
        return (max(waveform.shape) if waveform.ndim == 2 else len(waveform)) / float(rate)
    source, where, check = _audio_source(item)
    try:
        info = soundfile.info(source)
        if info.frames == _UNKNOWN_FRAMES:  # no header to read it from: its samples are counted, none kept
            _refuse_implausible_rate(info.samplerate, where)
            with _open_sound(source) as sound:
                frames = sum(len(block) for block in _blocks(sound, reuse=True))
            if frames == 0:
                raise MediaError("audio", f"empty audio {where}: no samples", reason="no samples")
            return frames / float(info.samplerate)
    except MediaError:
        raise
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as exc:
        detail = decoder_message(exc, where)
        raise MediaError("audio", f"cannot decode audio {where}: {detail}", reason=detail) from exc
    return _declared_seconds(info, where, check)


# What libsndfile reports as the frame count of a file whose header leaves its length unknown: a FLAC
# whose writer could not seek back to fill in its total_samples (FFmpeg's, writing to a pipe, leaves 0).
_UNKNOWN_FRAMES = 2**63 - 1


def _open_sound(source: Path | io.BytesIO) -> Any:
    """`soundfile.SoundFile` on `source` from its start, reading a file of unknown length to its end:
    libsndfile reads such a FLAC whole but cannot seek to its end, and soundfile seeks to where each
    read ended, so the read of its last samples failed ("Internal psf_fseek() failed")."""
    return _sound_file_type()(_rewind(source))


@functools.cache
def _sound_file_type() -> type:
    import soundfile

    class SoundFile(soundfile.SoundFile):
        def seek(self, frames: int, whence: int = soundfile.SEEK_SET) -> int:
            try:
                return super().seek(frames, whence)
            except soundfile.LibsndfileError:
                if self.frames != _UNKNOWN_FRAMES:
                    raise
                return -1  # soundfile's position update after the last read: nothing is read after it

    return SoundFile


def _blocks(sound: Any, reuse: bool = False) -> Iterator[np.ndarray]:
    """`sound`'s samples as float32 [frames, channels] blocks of `_AUDIO_BLOCK_FRAMES` until its data end
    (the last one shorter, possibly empty). Read in blocks, never all at once: that allocates the count
    the header declares, which a damaged header makes terabytes. `reuse`: every block is read into the
    same buffer (for a caller that keeps none)."""
    buffer = np.empty((_AUDIO_BLOCK_FRAMES, sound.channels), np.float32) if reuse else None
    while True:
        block = sound.read(_AUDIO_BLOCK_FRAMES, dtype="float32", always_2d=True, out=buffer)
        yield block
        if len(block) < _AUDIO_BLOCK_FRAMES:
            return


def _audio_source(item: Any) -> tuple[Path | io.BytesIO, str, ContainerCheck]:
    """An encoded audio item (path, bytes, data URI) ready for libsndfile, its name and what its
    container's walk found; raises `MediaError` for an empty file or a container cut short
    (`_refuse_damaged_container`)."""
    source, where = _read_bytes_or_path(item)
    if isinstance(source, Path) and source.stat().st_size == 0:
        raise MediaError("audio", f"empty file {where} (0 bytes)", reason="empty file (0 bytes)")
    check = _refuse_damaged_container("audio", source, where)
    if check.caf_data_size is not None:  # a CAF data chunk of unknown size: given its size to the end of the file
        offset, data_size = check.caf_data_size
        source = io.BytesIO(source.read_bytes() if isinstance(source, Path) else source.getvalue())
        source.getbuffer()[offset : offset + 8] = data_size.to_bytes(8, "big")
    return source, where, check


def _declared_seconds(header: Any, where: str, check: ContainerCheck) -> float:
    """The length an audio file's header declares (`header`: its `soundfile.info`, or the open
    `SoundFile`). An MP3 without a Xing/Info frame declares none: its frames' count from the container's
    walk (`check`) stands in for libsndfile's estimate from the first frame's bitrate, which a variable
    bitrate makes a fraction of it; where the walk found no frame, the estimate with the file's tags
    left out (`Mp3Stream.tag_bytes`)."""
    _refuse_implausible_rate(header.samplerate, where)
    if header.frames <= 0:
        raise MediaError("audio", f"empty audio {where}: no samples", reason="no samples")
    frames = header.frames
    if header.format == "MP3" and (mp3 := check.mp3) is not None and not mp3.declares_length:
        frames = (mp3.samples if mp3.samples is not None
                  else frames * (mp3.counted_bytes - mp3.tag_bytes) / mp3.counted_bytes)
    return frames / float(header.samplerate)


class AudioTooLong(MediaError):
    """An audio file longer than `decode_audio`'s `max_seconds`: refused before any sample is decoded
    when its header says so, or as decoding passes the limit (`at_least`: `seconds` is how far it got)
    when its header declares no length."""

    def __init__(self, where: str, seconds: float, limit: float, at_least: bool = False) -> None:
        lasts = f"lasts at least {seconds:.2f} s" if at_least else f"lasts {seconds:.1f} s"
        super().__init__("audio", f"audio {where} {lasts}, more than {limit:g} s",
                         reason=f"it {lasts}, more than {limit:g} s")
        self.seconds = seconds
        self.at_least = at_least


def decode_audio(item: Any, max_seconds: float | None = None, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """An encoded audio item (path, bytes, data URI) decoded in full: (float32 mono waveform, its
    sample rate), which `load_audio` takes as a `(waveform, sample_rate)` item. The rate is
    `sample_rate`, the samples resampled to it as they are decoded (`load_audio`'s, holding the
    output and one block at the file's rate), or with None the file's own. Raises `MediaError` for a
    file that does not decode, or that holds fewer samples than its header declares
    (`_decode_audio`), and `AudioTooLong` for one whose header declares more than `max_seconds`
    (`audio_seconds`' count), before decoding it, or that declares no length and decodes to more, as
    soon as it does (holding at most `max_seconds` and one block of samples): the item is read and
    its container checked once for both."""
    return _naming_media_errors("audio", _decode_mono_audio, item, max_seconds, sample_rate)


def _decode_mono_audio(item: Any, max_seconds: float | None, sample_rate: int | None) -> tuple[np.ndarray, int]:
    waveform, rate, where = _decode_audio(item, max_seconds, sample_rate)
    return _to_mono(waveform, where), rate


# What an MP3 decoder leaves out of its frames' samples (the decoder's delay, the encoder's padding): under
# two frames of 1152.
_MP3_DECODER_SLACK = 2304
_AUDIO_BLOCK_FRAMES = 1 << 18


def _decode_audio(item: Any, max_seconds: float | None = None,
                  sample_rate: int | None = None) -> tuple[np.ndarray, int, str]:
    """(mono float32 waveform [N], rate, the item's name): at `sample_rate`, resampled block by block
    as it decodes (`Resampler`), or with None at the file's rate. A file cut short after its header is refused
    rather than read as a shorter clip, which libsndfile does silently: an MP3 or FLAC decodes fewer
    samples than its header counts; a WAV, RF64, Wave64, AIFF or CAF whose data chunk holds less than it
    declares, an AU/SND file whose header declares more samples than it holds, an Ogg file that ends without its last page, and an MP3 whose last frame is cut are
    refused by their structure (`check_container`). An MP3 without a Xing, Info or VBRI frame
    declares no count: libsndfile estimates one from the file's size at its first frame's bitrate,
    which a variable bitrate makes a fraction of the count its frames hold; that count, from the
    same walk of its frames, is its length for `max_seconds` and what the decoder must find, so one
    cut exactly between two frames is read as it is. A FLAC whose header leaves its length unknown
    is decoded to its end, and against `max_seconds` as it is."""
    import soundfile

    source, where, check = _audio_source(item)
    try:
        with _open_sound(source) as sound:
            _refuse_implausible_rate(sound.samplerate, where)
            unknown = sound.frames == _UNKNOWN_FRAMES
            if (max_seconds is not None and not unknown
                    and (seconds := _declared_seconds(sound, where, check)) > max_seconds):
                raise AudioTooLong(where, seconds, max_seconds)
            counted = not unknown and (sound.format != "MP3" or check.mp3 is not None and check.mp3.declares_length)
            declared = sound.frames if counted else 0
            rate = sound.samplerate
            # resampled as it is read: what is held grows with the output's rate, not the file's (600 s at
            # 192 kHz held whole was 115 M samples, and resample_poly's float64 copy of them)
            resampler = Resampler(rate, sample_rate) if sample_rate not in (None, rate) else None
            blocks, frames = [], 0
            for block in _blocks(sound):
                # mixed down as it is read: a many-channel file (8 channels of a FLAC's silence compress
                # to nearly nothing) holds one channel's samples, not eight
                mono = _mix_down(block)
                blocks.append(mono if resampler is None else resampler.feed(mono))
                frames += len(block)
                # libsndfile reads no further than the count a header declares, checked above; where
                # none is declared, decoding stops here, having held one block more than the limit
                if max_seconds is not None and frames / float(rate) > max_seconds:
                    raise AudioTooLong(where, frames / float(rate), max_seconds, at_least=True)
            if resampler is not None:
                blocks.append(resampler.finish())
            waveform = np.concatenate(blocks)
    except MediaError:
        raise
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as exc:
        detail = decoder_message(exc, where)
        raise MediaError("audio", f"cannot decode audio {where}: {detail}", reason=detail) from exc
    if frames < declared * (1 - TRUNCATION_MARGIN):
        detail = (f"the file holds {frames} of the {declared} samples its header declares "
                  f"({frames / rate:.2f} of {declared / rate:.2f} s): it is cut short")
        raise MediaError("audio", f"cannot decode audio {where}: {detail}", reason=detail)
    if (not counted and check.mp3 is not None and (held := check.mp3.samples) is not None
            and frames < held * (1 - TRUNCATION_MARGIN) - _MP3_DECODER_SLACK):
        detail = (f"its MP3 frames hold {held} samples ({held / rate:.2f} s) and libsndfile decodes {frames} "
                  f"({frames / rate:.2f} s) of them: a variable-bitrate MP3 without a Xing/Info frame, whose "
                  "length libsndfile estimates from its first frame; re-encode it (LAME and FFmpeg write that frame "
                  "by default)")
        raise MediaError("audio", f"cannot decode audio {where}: {detail}", reason=detail)
    return waveform, int(rate if resampler is None else sample_rate), where


def _mix_down(block: np.ndarray) -> np.ndarray:
    """A decoded float32 [frames, channels] block as its channels' mean, computed as `_to_mono` computes it."""
    if block.shape[1] == 1:
        return block[:, 0]
    return block.astype(np.float64).mean(axis=1).astype(np.float32)


def _to_mono(waveform: np.ndarray, where: str) -> np.ndarray:
    if waveform.size == 0:
        raise MediaError("audio", f"empty audio {where}", reason="it holds no samples")
    if waveform.ndim == 2:
        channel_axis = 1 if waveform.shape[1] <= waveform.shape[0] else 0
        if np.issubdtype(waveform.dtype, np.integer):
            waveform = _int_to_float(waveform)
        waveform = waveform.astype(np.float64).mean(axis=channel_axis)
    elif waveform.ndim != 1:
        raise ValueError(f"audio waveform {where} must be [N] or [N, channels], got shape {tuple(waveform.shape)}")
    if np.issubdtype(waveform.dtype, np.integer):
        waveform = _int_to_float(waveform)
    if not np.isfinite(waveform).all():
        raise MediaError("audio", f"audio {where} contains NaN or infinite samples",
                         reason="it contains NaN or infinite samples")
    return np.ascontiguousarray(waveform, dtype=np.float32)


def _int_to_float(waveform: np.ndarray) -> np.ndarray:
    info = np.iinfo(waveform.dtype)
    if info.min == 0:  # unsigned PCM (8-bit wav) is centred on the middle code
        return (waveform.astype(np.float64) - (info.max + 1) / 2) / ((info.max + 1) / 2)
    return waveform.astype(np.float64) / float(-info.min)


def resample(waveform: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling (scipy's `resample_poly`, Kaiser-windowed anti-aliasing low-pass) of a
    whole mono waveform: `Resampler` given it as one block.

    The output has exactly `ceil(N * target_rate / rate)` samples, so durations are preserved.
    """
    resampler = Resampler(rate, target_rate)
    out = np.concatenate([resampler.feed(waveform), resampler.finish()])
    logger.debug("resampled %d samples from %d Hz to %d Hz", waveform.size, rate, target_rate)
    return out


class Resampler:
    """scipy's `resample_poly(signal, up, down)` (up/down: `target_rate`/`rate` in lowest terms) of a
    mono signal given block by block, as float32: `feed` each block in order, then `finish`; the
    outputs, concatenated, are `resample_poly`'s of the whole signal (same filter, length and
    alignment; each output sample is the same sum of the same products). It holds one block and the
    filter's span of input before it, so a file decoded through it costs memory at the target rate,
    not at its own (600 s at 192 kHz: 115 M samples, which `resample_poly` wanted whole in float64).

    How: the output sample i is sample i + `skip` of `upfirdn(h, x, up, down)`, whose sample m sums
    h[m * down - j * up] * x[j] over the x[j] that the filter's L taps reach. Each output is computed
    once its last input has arrived (`finish` adds the zeros after the signal), by `upfirdn` over the
    input held since the first x[j] the next output needs, that index rounded down to a multiple of
    `down` so the held part's outputs fall on the whole signal's (m shifted by start * up / down)."""

    def __init__(self, rate: int, target_rate: int) -> None:
        from ..extras import require

        signal = require("scipy.signal", "audio", "resampling audio")
        self._upfirdn = signal.upfirdn
        g = math.gcd(rate, target_rate)
        self.up, self.down = target_rate // g, rate // g
        # resample_poly's default filter: firwin's Kaiser-windowed (beta 5) low-pass at the lower rate's
        # Nyquist frequency, 10 zero crossings each side, gain `up`, zero-padded in front so that its
        # centre falls on an output sample, which is the first kept (`skip`)
        if self.up == self.down:  # the same rate: resample_poly copies the signal
            self._filter, self._skip = np.ones(1), 0
        else:
            half_len = 10 * max(self.up, self.down)
            taps = signal.firwin(2 * half_len + 1, 1.0 / max(self.up, self.down), window=("kaiser", 5.0)) * self.up
            pad = self.down - half_len % self.down
            self._filter = np.concatenate([np.zeros(pad), taps])
            self._skip = (half_len + pad) // self.down
        self._held = np.zeros(0)  # the input from sample `_start` on, float64 as resample_poly computes
        self._start = 0
        self._received = 0
        self._produced = 0

    def feed(self, block: np.ndarray) -> np.ndarray:
        """The output samples that `block` (the signal's next samples, 1-D) completes."""
        samples = np.asarray(block, dtype=np.float64)
        # a whole waveform given as one block is held as its float64 copy, not copied again; a float64 block
        # is the caller's, perhaps a read buffer it reuses: what is kept of it is copied
        own = not len(self._held) and not np.may_share_memory(samples, block)
        self._held = samples if own else np.concatenate([self._held, samples])
        self._received += len(samples)
        return self._emit(-(-self._received * self.up // self.down) - self._skip)

    def finish(self) -> np.ndarray:
        """The remaining output samples, up to `ceil(N * up / down)` for the N samples fed."""
        count = -(-self._received * self.up // self.down)
        if count > self._produced:  # the zeros after the signal that the last outputs' taps reach
            reach = (count - 1 + self._skip) * self.down // self.up + 1
            self._held = np.concatenate([self._held, np.zeros(max(0, reach - self._start - len(self._held)))])
        return self._emit(count)

    def _emit(self, end: int) -> np.ndarray:
        """Output samples `_produced` to `end` (those whose inputs are all held), then drops the held
        input that no later output reaches."""
        if end <= self._produced:
            return np.zeros(0, np.float32)
        shift = self._start // self.down * self.up - self._skip  # upfirdn's index of the held part, less ours
        out = self._upfirdn(self._filter, self._held, self.up, self.down)[self._produced - shift : end - shift]
        self._produced = end
        first = max(0, -(-((end + self._skip) * self.down - len(self._filter) + 1) // self.up))
        start = first // self.down * self.down
        self._held = self._held[start - self._start :]
        self._start = start
        return out.astype(np.float32)


# ------------------------------------------------------------------------------------------- video


@dataclasses.dataclass(frozen=True)
class VideoSampling:
    """Which frames of a video the model sees: `num_frames` spread uniformly over the clip, or, with
    `fps`, about `fps` frames per second of video; never more than `max_frames` (a long clip then gets
    `max_frames` frames spread over its whole length). A clip with fewer frames gives all of them.
    `timestamps`: each frame is preceded by its time as text ("0.5s:"), see `modrwkv.processing.video`."""

    num_frames: int = 8
    fps: float | None = None
    max_frames: int = 32
    timestamps: bool = False

    def __post_init__(self) -> None:
        for name in ("num_frames", "max_frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"video {name} must be a positive integer, got {value!r}")
        if self.fps is not None and (isinstance(self.fps, bool) or not isinstance(self.fps, (int, float))
                                     or not math.isfinite(self.fps) or self.fps <= 0):
            raise ValueError(f"video fps must be a positive number or null, got {self.fps!r}")
        if not isinstance(self.timestamps, bool):
            raise ValueError(f"video timestamps must be true or false, got {self.timestamps!r}")

    @classmethod
    def from_dict(cls, options: Mapping[str, Any] | None) -> VideoSampling:
        """From a config's `video` section; unknown keys are an error naming them."""
        options = dict(options or {})
        unknown = sorted(set(options) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown video option(s) {unknown}; expected num_frames, fps, max_frames, timestamps")
        return cls(**options)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def count(self, available: int, seconds: float | None) -> int:
        """How many frames to take from a clip of `available` frames lasting `seconds`."""
        wanted = self.num_frames if self.fps is None or seconds is None else max(1, math.ceil(seconds * self.fps))
        return min(wanted, self.max_frames, available)


@dataclasses.dataclass(frozen=True)
class VideoFrame:
    """One sampled frame: its presentation time in seconds from the clip's start (None for frames
    given as images, which have no clock) and the RGB image."""

    time: float | None
    image: Image.Image


def uniform_indices(available: int, count: int) -> list[int]:
    """`count` of `available` frame indices, the middle frame of each of `count` equal segments (so
    a clip cut into equal scenes gives one frame from the middle of each, never a cut's edge)."""
    return [int((k + 0.5) * available / count) for k in range(count)]


class VideoTooLong(MediaError):
    """An encoded video whose frames span more than `load_video`'s `max_seconds`, found as its packets
    are read (a container that states no length, as a live Matroska/WebM stream or a browser's
    recording, or a wrong one): reading stops at the first frame that takes its frames' span past the
    limit, `seconds` that span."""

    def __init__(self, where: str, seconds: float, limit: float) -> None:
        super().__init__("video", f"video {where} lasts at least {seconds:.2f} s, more than {limit:g} s",
                         reason=f"it lasts at least {seconds:.2f} s, more than {limit:g} s")
        self.seconds = seconds


def load_video(item: Any, sampling: VideoSampling | None = None, max_seconds: float | None = None) -> list[VideoFrame]:
    """Any supported video item -> its sampled frames in time order; raises `MediaError` naming
    the item, or `MissingExtraError` (an ImportError) when PyAV is not installed.

    Accepts a path, a base64 `data:` URI or encoded bytes of any container and codec FFmpeg reads
    (mp4, webm, mkv, avi, mov, animated gif, ...), a uint8 array [T, H, W, 3], or a list of frames
    (anything `load_image` reads). Frames are chosen by `uniform_indices`, counted by `sampling`;
    a list of `VideoFrame`s, what this function returned before, is taken as it is. `max_seconds`:
    an encoded video whose frames span more is refused (`VideoTooLong`) as its packets are read,
    whatever its container declares, before any frame is decoded (a stream without timestamps: as its
    frames are counted, at its frame rate).
    """
    sampling = sampling or VideoSampling()
    return _naming_media_errors("video", _load_video, item, sampling, max_seconds)


def _load_video(item: Any, sampling: VideoSampling, max_seconds: float | None = None) -> list[VideoFrame]:
    where = describe(item)
    if isinstance(item, list) and item and all(isinstance(frame, VideoFrame) for frame in item):
        return item  # decoded and sampled already (the server's media check does that)
    if isinstance(item, np.ndarray) and item.ndim == 4:
        item = list(item)
    if isinstance(item, Sequence) and not isinstance(item, (str, bytes, bytearray, memoryview, tuple)):
        if not item:
            raise ValueError(f"empty list of video frames {where}")
        chosen = uniform_indices(len(item), sampling.count(len(item), None))
        try:
            return [VideoFrame(None, load_image(item[i])) for i in chosen]
        except MediaError as exc:
            raise MediaError("video", f"video frame of {where}: {exc}") from exc
    if not isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview)):
        raise ValueError(f"unsupported video item {where}: expected a path, bytes, a [T, H, W, 3] array or a list "
                         "of frames")
    from ..extras import require

    av = require("av", "video", f"decoding the video {where}")
    source, where = _read_bytes_or_path(item)
    _refuse_damaged_container("video", source, where)
    try:
        times = _frame_times(av, source, where, max_seconds)
        chosen = uniform_indices(len(times), sampling.count(len(times), _duration(times)))
        frames = _decode_frames(av, source, set(chosen))
    except av.FFmpegError as exc:
        # FFmpeg's text without its errno and file name ("[Errno 1094995529] ...: '<none>'")
        problem = getattr(exc, "strerror", None) or decoder_message(exc, where)
        raise MediaError("video", f"cannot decode video {where}: {problem}", reason=problem) from exc
    missing = [i for i in chosen if i not in frames]
    if missing:  # the stream ended before its packets said it would: a truncated or corrupt file
        problem = f"frame {missing[0]} of its {len(times)} does not decode (truncated or corrupt file)"
        raise MediaError("video", f"cannot decode video {where}: {problem}", reason=problem)
    logger.debug("video %s: %d frames, sampled %d", where, len(times), len(chosen))
    return [VideoFrame(times[i], _to_rgb(frames[i])) for i in chosen]


def _rewind(source: Any) -> Any:
    if isinstance(source, io.BytesIO):
        source.seek(0)
    return source if isinstance(source, io.BytesIO) else str(source)


def _frame_times(av: Any, source: Any, where: str, max_seconds: float | None = None) -> list[float]:
    """The presentation times of the first video stream's frames, from its packets (no decoding),
    read no further than the first frame that makes them span more than `max_seconds` (`VideoTooLong`)."""
    with av.open(_rewind(source)) as container:
        if not container.streams.video:
            raise MediaError("video", f"{where} has no video stream", reason="it has no video stream")
        stream = container.streams.video[0]
        base = float(stream.time_base) if stream.time_base else None
        packets = _within(container.demux(stream), base, where, max_seconds, lambda _, packet: packet.pts)
        stamps = [packet.pts for packet in packets if packet.size and packet.pts is not None]
        if not stamps or base is None:  # containers without timestamps (raw streams): count decoded frames
            rate = float(stream.average_rate or stream.guessed_rate or 1)
            frames = _within(_rewind_decode(av, source), 1.0 / rate, where, max_seconds, lambda index, _: index)
            count = sum(1 for _ in frames)
            stamps, base = list(range(count)), 1.0 / rate
    if not stamps:
        raise MediaError("video", f"{where} contains no video frames", reason="it contains no video frames")
    start = min(stamps)
    return [(pts - start) * base for pts in sorted(stamps)]


def _within(items: Iterator[Any], base: float | None, where: str, max_seconds: float | None,
            stamp: Callable[[int, Any], int | None]) -> Iterator[Any]:
    """`items` (packets, or the decoded frames of a stream without timestamps) until the stamps
    `stamp(index, item)` seen span more than `max_seconds` (in `base` units), latest to earliest, which
    raises `VideoTooLong`: the check a container's declared length cannot be trusted for (it may
    state none, or a wrong one). The span, not each stamp's distance from the earliest before it: a
    stream whose stamps go backwards spans as much, and `_frame_times` sorts them."""
    if max_seconds is None or base is None:
        yield from items
        return
    earliest = latest = None
    for index, item in enumerate(items):
        if (at := stamp(index, item)) is not None:
            earliest = at if earliest is None else min(earliest, at)
            latest = at if latest is None else max(latest, at)
            if (latest - earliest) * base > max_seconds:
                raise VideoTooLong(where, (latest - earliest) * base, max_seconds)
        yield item


def _rewind_decode(av: Any, source: Any) -> Any:
    with av.open(_rewind(source)) as container:
        yield from container.decode(video=0)


def _decode_frames(av: Any, source: Any, wanted: set[int]) -> dict[int, Image.Image]:
    """The wanted frames (indices in presentation order) as PIL images; decoding stops after the last."""
    frames: dict[int, Image.Image] = {}
    last = max(wanted)
    for index, frame in enumerate(_rewind_decode(av, source)):
        if index in wanted:
            frames[index] = frame.to_image()
        if index >= last:
            break
    return frames


def _duration(times: list[float]) -> float | None:
    """The clip's length: the span of its frame times plus one frame interval."""
    if len(times) < 2:
        return None
    return times[-1] - times[0] + (times[-1] - times[0]) / (len(times) - 1)
