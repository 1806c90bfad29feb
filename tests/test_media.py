"""Raw media -> RGB images and 16 kHz mono waveforms: every input form, every awkward mode, clear errors."""

from __future__ import annotations

import base64
import io
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

import modrwkv
from modrwkv.constants import DEFAULT_MAX_IMAGE_PIXELS
from modrwkv.encoders.media import (
    ImageTooLarge,
    MediaError,
    allow_images_of,
    audio_seconds,
    decode_audio,
    load_audio,
    load_image,
    max_image_pixels,
    set_max_image_pixels,
)

WHITE = (255, 255, 255)


def png_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **kwargs)
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------- images


def test_rgba_is_composited_onto_white() -> None:
    pixels = np.zeros((2, 3, 4), dtype=np.uint8)
    pixels[0, 0] = (0, 0, 0, 0)  # transparent black -> white, not black
    pixels[0, 1] = (255, 0, 0, 255)  # opaque red stays red
    pixels[0, 2] = (255, 0, 0, 128)  # half-transparent red -> pink
    image = load_image(Image.fromarray(pixels, mode="RGBA"))
    assert image.mode == "RGB" and image.size == (3, 2)
    assert image.getpixel((0, 0)) == WHITE
    assert image.getpixel((1, 0)) == (255, 0, 0)
    r, g, b = image.getpixel((2, 0))
    assert r == 255 and 120 <= g <= 135 and g == b


def test_rgba_numpy_array_and_png_file_agree(tmp_path) -> None:
    pixels = np.zeros((4, 4, 4), dtype=np.uint8)
    pixels[..., 3] = 0
    path = tmp_path / "transparent.png"
    Image.fromarray(pixels, mode="RGBA").save(path)
    for item in (pixels, path, str(path), path.read_bytes()):
        assert np.all(np.asarray(load_image(item)) == 255), type(item)


def test_la_is_composited_onto_white() -> None:
    image = Image.new("LA", (2, 1), (0, 0))
    image.putpixel((1, 0), (50, 255))
    rgb = load_image(image)
    assert rgb.getpixel((0, 0)) == WHITE
    assert rgb.getpixel((1, 0)) == (50, 50, 50)


def test_palette_with_transparency_index() -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))
    image.putpixel((0, 0), 0)
    image.putpixel((1, 0), 1)
    image.info["transparency"] = 0  # palette entry 0 (black) is transparent
    reloaded = Image.open(io.BytesIO(png_bytes(image, transparency=0)))
    assert reloaded.mode == "P"
    rgb = load_image(reloaded)
    assert rgb.getpixel((0, 0)) == WHITE
    assert rgb.getpixel((1, 0)) == (0, 255, 0)


def test_palette_without_transparency() -> None:
    image = Image.new("P", (1, 1))
    image.putpalette([10, 20, 30] + [0] * (256 * 3 - 3))
    assert load_image(image).getpixel((0, 0)) == (10, 20, 30)


def test_greyscale_l() -> None:
    rgb = load_image(np.full((2, 2), 77, dtype=np.uint8))
    assert rgb.mode == "RGB" and rgb.getpixel((1, 1)) == (77, 77, 77)
    assert load_image(np.full((2, 2, 1), 9, dtype=np.uint8)).getpixel((0, 0)) == (9, 9, 9)


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path) -> None:
    values = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode.startswith("I;16")
    expected = [(0, 0, 0), (100, 100, 100), WHITE]
    assert [load_image(image).getpixel((x, 0)) for x in range(3)] == expected
    path = tmp_path / "deep.png"
    image.save(path)  # a 16-bit PNG reopens as "I;16" or "I" depending on the Pillow version
    assert [load_image(path).getpixel((x, 0)) for x in range(3)] == expected


def test_float_greyscale_mode_f() -> None:
    image = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), mode="F")
    assert [load_image(image).getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_cmyk() -> None:
    image = Image.new("CMYK", (1, 1), (0, 255, 255, 0))  # no cyan, full magenta + yellow = red
    assert load_image(image).getpixel((0, 0)) == (255, 0, 0)
    buffer = io.BytesIO()
    Image.new("CMYK", (8, 8), (0, 0, 0, 0)).save(buffer, format="JPEG", quality=95)
    r, g, b = load_image(buffer.getvalue()).getpixel((4, 4))
    assert min(r, g, b) > 245  # CMYK white


def _left_red_right_blue(width: int = 32, height: int = 16) -> Image.Image:
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, : width // 2] = (255, 0, 0)
    pixels[:, width // 2 :] = (0, 0, 255)
    return Image.fromarray(pixels)


def test_exif_orientation_is_applied() -> None:
    image = _left_red_right_blue()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, exif=exif.tobytes())
    rgb = load_image(buffer.getvalue())
    assert rgb.size == (16, 32)  # width and height swapped
    top, bottom = np.asarray(rgb)[4, 8], np.asarray(rgb)[28, 8]
    assert top[0] > 200 and top[2] < 60  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_plain_rgb_and_data_uri() -> None:
    image = _left_red_right_blue(4, 2)
    assert np.array_equal(np.asarray(load_image(image)), np.asarray(image))
    uri = "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode()
    assert np.array_equal(np.asarray(load_image(uri)), np.asarray(image))


def test_float_array_in_unit_range() -> None:
    rgb = load_image(np.ones((2, 2, 3), dtype=np.float32))
    assert rgb.getpixel((0, 0)) == WHITE


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("/no/such/image.png", "file not found"),
        (b"definitely not an image", "cannot decode image"),
        (b"", "empty"),
        (np.zeros((2, 2, 2), dtype=np.uint8), "HxW"),
        (np.zeros((2, 2), dtype=np.int32), "uint8"),
        (np.full((2, 2), 3.0), "[0, 1]"),
        (12345, "unsupported image item"),
        ("data:image/png;base64,@@@", "base64"),
    ],
)
def test_image_errors_name_the_problem(item, message) -> None:
    with pytest.raises(ValueError) as info:
        load_image(item)
    assert message in str(info.value)


def test_truncated_image_file_names_the_path(tmp_path) -> None:
    path = tmp_path / "cut.png"
    path.write_bytes(png_bytes(_left_red_right_blue(64, 64))[:100])
    with pytest.raises(ValueError, match="cut.png"):
        load_image(path)


@pytest.fixture(scope="module")
def huge_pngs(tmp_path_factory) -> dict[str, Path]:
    """1-bit PNGs beyond Pillow's decompression-bomb limit (89,478,485 pixels), 11 and 22 kB:
    90 MP, which Pillow opens with a printed warning, and 182 MP, which it refuses."""
    folder = tmp_path_factory.mktemp("huge")
    paths = {}
    for name, size in {"warned": (10000, 9000), "refused": (14000, 13000)}.items():
        paths[name] = folder / f"{name}.png"
        Image.new("1", size).save(paths[name])
    return paths


def test_images_beyond_the_limit_get_one_clear_error(huge_pngs) -> None:
    assert max_image_pixels() == DEFAULT_MAX_IMAGE_PIXELS == 89_478_485  # Pillow's default
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a raw DecompressionBombWarning would surface as an exception
        with pytest.raises(ImageTooLarge, match=r"image '.*warned.png' has 10000x9000 = 90,000,000 pixels, more than "
                           r"the 89,478,485 allowed \(a guard against decompression bombs.*\); to load it, raise the "
                           r"limit to at least 90000000 with modrwkv.set_max_image_pixels\(90000000\) before loading, "
                           r"or scale the image down"):
            load_image(str(huge_pngs["warned"]))
        with pytest.raises(ImageTooLarge, match=r"image '.*refused.png' has 182,000,000 pixels, .* at least 182000000 "):
            load_image(huge_pngs["refused"])
        with pytest.raises(MediaError, match=r"image <\d+ bytes> has 10000x9000"):
            load_image(huge_pngs["warned"].read_bytes())
    modrwkv.set_max_image_pixels(90_000_000)  # what the message says to do
    assert load_image(huge_pngs["warned"]).size == (10000, 9000)
    modrwkv.set_max_image_pixels(None)  # no limit at all
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Image.open(huge_pngs["refused"]) as image:  # Pillow itself no longer refuses it either
            assert image.size == (14000, 13000)


def test_the_limit_can_be_lowered_and_names_how_the_program_raises_it(tmp_path) -> None:
    path = tmp_path / "scan.png"
    Image.new("RGB", (300, 200)).save(path)
    set_max_image_pixels(50_000, how_to_raise="`mytool --pixels {pixels}`")
    with pytest.raises(ImageTooLarge, match=r"image '.*scan.png' has 300x200 = 60,000 pixels, more than the 50,000 "
                       r"allowed .* at least 60000 with `mytool --pixels 60000`, or scale") as raised:
        load_image(path)
    assert (raised.value.size, raised.value.pixels, raised.value.limit) == ((300, 200), 60_000, 50_000)
    set_max_image_pixels(60_000)
    assert load_image(path).size == (300, 200)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="positive integer or None"):
            set_max_image_pixels(bad)


def test_allow_images_of_only_raises_the_limit() -> None:
    set_max_image_pixels(89_478_485)
    allow_images_of(4096 * 4096)
    assert Image.MAX_IMAGE_PIXELS == 89_478_485
    allow_images_of(200_000_000)
    assert Image.MAX_IMAGE_PIXELS == 200_000_000


# ------------------------------------------------------------------------------------------ audio


def dominant_frequency(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(wave.size)))
    return float(np.fft.rfftfreq(wave.size, 1.0 / rate)[np.argmax(spectrum)])


def sine(freq: float, rate: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.sin(2 * np.pi * freq * t)


def test_stereo_44k_to_mono_16k_keeps_frequency_and_duration() -> None:
    left, right = 0.5 * sine(1000, 44100), 0.3 * sine(1000, 44100)
    stereo = np.stack([left, right], axis=1).astype(np.float32)  # [N, 2], soundfile layout
    out = load_audio((stereo, 44100))
    assert out.dtype == np.float32 and out.ndim == 1
    assert out.shape[0] == 16000
    assert abs(dominant_frequency(out, 16000) - 1000) <= 1.0
    middle = out[1000:-1000]
    assert abs(np.abs(middle).max() - 0.4) < 0.01  # the channel mean, not the sum or one channel
    channels_first = load_audio((stereo.T.copy(), 44100))  # [2, N], torchaudio layout
    np.testing.assert_allclose(channels_first, out, atol=1e-6)


def test_resampling_is_anti_aliased() -> None:
    # 10 kHz is above the 8 kHz Nyquist limit of 16 kHz audio: plain decimation would fold it to
    # 6 kHz at full strength; a proper resampler removes it.
    out = load_audio((sine(10000, 48000).astype(np.float32), 48000))
    assert out.shape[0] == 16000
    assert np.sqrt(np.mean(out[500:-500] ** 2)) < 0.01


RATE_PAIRS = [(44100, 16000), (48000, 16000), (8000, 16000), (22050, 16000), (655350, 16000), (16000, 44100),
              (16000, 16000)]


@pytest.mark.parametrize(("rate", "target"), RATE_PAIRS)
def test_resampling_block_by_block_gives_resample_poly_of_the_whole_signal(rate, target) -> None:
    """`Resampler` resamples a signal given in blocks, carrying its filter's state across them, so
    that a file is resampled as it decodes: its output is scipy's `resample_poly` of the whole signal
    (same filter, length and alignment), for downsampling, upsampling and the same rate, signals
    shorter than the filter, and blocks of 1 sample, a prime count, and more than the signal holds."""
    from math import gcd

    from scipy.signal import resample_poly

    from modrwkv.encoders.media import Resampler, resample

    rng = np.random.default_rng(rate)
    up, down = target // gcd(rate, target), rate // gcd(rate, target)
    for length in (1, 2, 101, 20011):
        signal = rng.uniform(-1, 1, length).astype(np.float32)
        expected = resample_poly(signal.astype(np.float64), up, down).astype(np.float32)
        assert len(expected) == -(-length * target // rate)
        for size in (1, 13, 997, length + 5):
            if size < 100 and length > 101:  # 20011 samples in 997s and whole: a few calls of a long filter
                continue
            resampler = Resampler(rate, target)
            parts = [resampler.feed(signal[start : start + size]) for start in range(0, length, size)]
            out = np.concatenate([*parts, resampler.finish()])
            assert out.dtype == np.float32
            np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6, err_msg=f"{length} samples, blocks of {size}")
        np.testing.assert_allclose(resample(signal, rate, target), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("size", [1, 500, 4096])
def test_resampling_blocks_read_into_one_reused_buffer(size) -> None:
    """Blocks read into one float64 buffer that the caller reuses (soundfile's `read(out=...)`,
    `blocks(out=...)`): `Resampler` copies what it keeps of a block. It held the first block by
    reference (as its own float64 copy would be), so the next read changed the input it still
    needed: output off by up to 2 on a signal in [-1, 1]."""
    from scipy.signal import resample_poly

    from modrwkv.encoders.media import Resampler

    signal = np.random.default_rng(0).uniform(-1, 1, 8192)
    resampler, buffer, parts = Resampler(44100, 16000), np.empty(size), []
    for start in range(0, len(signal), size):
        block = signal[start : start + size]
        buffer[: len(block)] = block
        parts.append(resampler.feed(buffer[: len(block)]))  # what soundfile returns: a view of the buffer
    out = np.concatenate([*parts, resampler.finish()])
    np.testing.assert_allclose(out, resample_poly(signal, 160, 441), rtol=0, atol=1e-6)


@pytest.mark.parametrize(("fmt", "rate", "channels"), [("WAV", 44100, 2), ("FLAC", 48000, 1), ("WAV", 8000, 1)])
def test_a_file_resampled_as_it_decodes_is_resample_poly_of_its_whole_waveform(fmt, rate, channels) -> None:
    """`load_audio` and `decode_audio(..., sample_rate=)` resample a file's blocks as they are decoded
    (more than one block of 2**18 samples here): the waveform the whole decoded file gave before."""
    from scipy.signal import resample_poly

    rng = np.random.default_rng(rate)
    wave = rng.uniform(-0.5, 0.5, (300_001, channels)).astype(np.float32)
    data = encoded(wave, rate, fmt, "PCM_16")
    whole, own_rate = decode_audio(data)
    assert own_rate == rate and len(whole) == 300_001
    up, down = 16000 // np.gcd(rate, 16000), rate // np.gcd(rate, 16000)
    expected = resample_poly(whole.astype(np.float64), up, down).astype(np.float32)
    np.testing.assert_allclose(load_audio(data), expected, rtol=0, atol=1e-6)
    waveform, resampled_rate = decode_audio(data, max_seconds=60, sample_rate=16000)
    assert resampled_rate == 16000
    np.testing.assert_allclose(waveform, expected, rtol=0, atol=1e-6)


def traced_peak(read, *args, **kwargs) -> tuple[int, object]:
    """(the peak of the memory Python and numpy allocated while `read(*args)` ran, what it returned)"""
    import tracemalloc

    tracemalloc.start()
    try:
        result = read(*args, **kwargs)
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


def test_a_high_rate_file_costs_memory_at_the_models_rate_not_its_own() -> None:
    """A file was decoded whole at its own rate and then resampled with `resample_poly` in float64:
    8 s of silence at 655,350 Hz (5.2 M samples, an 18 kB FLAC) peaked at 75 MB of arrays to give
    0.5 MB at 16 kHz, and 600 s of it (a 1.5 MB upload) raised a server's memory by 4.6 GB. Resampled
    as it decodes, the peak is the filter's design (262,141 taps at this rate), a block and the
    output: 13 MB, in `load_audio` and in the server's check of an upload (`check_audio` at the
    model's rate, whose waveform the encoder then reads as it is)."""
    from modrwkv.serving.limits import check_audio

    rate, seconds = 655_350, 8
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", rate, 1, format="FLAC", subtype="PCM_16") as file:
        for _ in range(seconds):
            file.write(np.zeros(rate, np.float32))
    data = buffer.getvalue()
    peak, waveform = traced_peak(load_audio, data)
    assert waveform.shape == (seconds * 16000,) and peak < 25e6, peak
    peak, (checked, checked_rate) = traced_peak(check_audio, data, "the upload", 600.0, sample_rate=16000)
    assert checked_rate == 16000 and np.array_equal(checked, waveform) and peak < 25e6, peak
    assert np.array_equal(load_audio((checked, checked_rate)), waveform)


def test_the_server_decodes_uploads_at_the_rate_its_model_reads() -> None:
    """A chat's audio is decoded at the model's audio encoder's rate, and a transcription's upload at
    the 16 kHz its pauses are found at, as they are read: the waveform handed on (which the encoder
    reads as it is) was the upload's at its own rate (48 kHz here), resampled whole later."""
    import base64
    from types import SimpleNamespace

    from modrwkv.serving import ServerLimits
    from modrwkv.serving.app import _cut_recording, _prepare_prompt
    from modrwkv.serving.transcriptions import TranscriptionRequest

    upload = encoded((0.3 * sine(440, 48000, 0.5)).astype(np.float32), 48000, "WAV", "PCM_16")
    model_reads = load_audio(upload, 16000)
    handed_on = []
    pipeline = SimpleNamespace(processor=SimpleNamespace(video=None),
                               model=SimpleNamespace(encoders={"audio": SimpleNamespace(sample_rate=16000)}),
                               encode=lambda sample: handed_on.append(sample.audios[0]) or [0],
                               transcription_clips=lambda waveform, settings: handed_on.append(waveform))
    part = {"type": "input_audio", "input_audio": {"data": base64.b64encode(upload).decode(), "format": "wav"}}
    _prepare_prompt(pipeline, [{"role": "user", "content": [part]}], ServerLimits())
    _cut_recording(pipeline, TranscriptionRequest("tiny", upload, "a.wav", "json", 0.0, False), ServerLimits())
    for waveform, rate in handed_on:
        assert rate == 16000 and np.array_equal(waveform, model_reads)


def test_integer_pcm_and_tensors_and_hf_dicts() -> None:
    import torch
    wave = (0.25 * sine(440, 16000)).astype(np.float32)
    pcm = np.round(wave * 32768).astype(np.int16)
    np.testing.assert_allclose(load_audio((pcm, 16000)), wave, atol=1e-4)
    np.testing.assert_allclose(load_audio((torch.from_numpy(wave), 16000)), wave)
    np.testing.assert_allclose(load_audio({"array": wave, "sampling_rate": 16000}), wave)
    unsigned = (np.round(wave * 127) + 128).astype(np.uint8)
    np.testing.assert_allclose(load_audio((unsigned, 16000)), wave, atol=0.01)


@pytest.mark.parametrize(("fmt", "subtype", "tolerance"), [("WAV", "PCM_16", 1e-4), ("FLAC", "PCM_16", 1e-4), ("OGG", "VORBIS", None)])
def test_files_and_bytes_written_by_soundfile(tmp_path, fmt, subtype, tolerance) -> None:
    rate = 22050
    wave = (0.5 * sine(600, rate, 0.5)).astype(np.float32)
    stereo = np.stack([wave, wave], axis=1)
    path = tmp_path / f"clip.{fmt.lower()}"
    sf.write(path, stereo, rate, format=fmt, subtype=subtype)
    from_path = load_audio(path)
    from_bytes = load_audio(path.read_bytes())
    assert np.array_equal(load_audio({"path": str(path)}), from_path)
    np.testing.assert_array_equal(from_path, from_bytes)
    assert from_path.shape[0] == 8000
    assert abs(dominant_frequency(from_path, 16000) - 600) <= 2.0
    if tolerance is not None:
        np.testing.assert_allclose(load_audio(path, sample_rate=rate), wave, atol=tolerance)


def test_audio_errors_name_the_problem(tmp_path) -> None:
    with pytest.raises(ValueError, match="file not found: '.*missing.wav'"):
        load_audio(tmp_path / "missing.wav")
    buffer = io.BytesIO()
    sf.write(buffer, sine(440, 16000, 0.5), 16000, format="WAV")
    wave = buffer.getvalue()
    for load in (load_audio, audio_seconds):  # the decoder's reason once, without its own "Error opening <object>"
        with pytest.raises(MediaError) as raised:
            load(b"RIFF this is not a wave")
        assert str(raised.value) == "cannot decode audio <23 bytes>: not a recognised audio format (WAV, FLAC, OGG, MP3, ...)"
        assert raised.value.reason == "not a recognised audio format (WAV, FLAC, OGG, MP3, ...)"
        with pytest.raises(MediaError, match=r"^cannot decode audio <30 bytes>: its RIFF 'fmt ' chunk declares 16 bytes "
                           r"and the file holds 10 of them: it is cut short$"):
            load(wave[:30])  # the header cut off inside its format chunk
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"fLaC" + bytes(100))
    with pytest.raises(ValueError, match="bad.flac"):
        load_audio(bad)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 1), dtype=np.float32), 16000)
    with pytest.raises(ValueError, match="empty audio"):
        load_audio(empty)
    with pytest.raises(ValueError, match="empty audio"):
        load_audio((np.zeros(0, dtype=np.float32), 16000))
    with pytest.raises(ValueError, match="NaN"):
        load_audio((np.array([0.0, np.nan]), 16000))
    with pytest.raises(ValueError, match="sample rate"):
        load_audio((np.zeros(10), 0))
    with pytest.raises(ValueError, match="unsupported audio item"):
        load_audio(3.5)


def assert_cut_short(cut: bytes, path: Path, reason: str) -> None:
    """`cut`, as bytes and written to `path`, is refused by load_audio and audio_seconds for `reason`."""
    path.write_bytes(cut)
    for item, where in ((cut, f"<{len(cut)} bytes>"), (path, repr(str(path)))):
        for read in (load_audio, audio_seconds):
            with pytest.raises(MediaError) as raised:
                read(item)
            assert (str(raised.value), raised.value.reason) == (f"cannot decode audio {where}: {reason}", reason)


def encoded(wave: np.ndarray, rate: int, fmt: str, subtype: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


@pytest.mark.parametrize("subtype, sample_bytes", [("PCM_16", 2), ("FLOAT", 4)])
def test_a_wav_cut_short_after_its_header_is_refused_not_read_as_a_shorter_clip(tmp_path, subtype, sample_bytes):
    """libsndfile reads a WAV whose data chunk declares more than the file holds as a shorter clip;
    load_audio and audio_seconds refuse it, naming the item and both sizes. A short clip that is
    whole, and a WAV streamed with its data size unknown (0xFFFFFFFF, by a writer that could not seek
    back), load."""
    wave = (0.5 * sine(440, 16000)).astype(np.float32)
    whole = encoded(wave, 16000, "WAV", subtype)
    header = len(whole) - sample_bytes * 16000  # whatever chunks precede the samples (FLOAT adds fact, PEAK)
    cut = whole[: header + sample_bytes * 6000 + 1]  # 6000 samples and a byte of the next
    assert len(sf.read(io.BytesIO(cut))[0]) == 6000  # libsndfile alone: a shorter clip, no error
    assert_cut_short(cut, tmp_path / "cut.wav", f"its RIFF 'data' chunk declares {sample_bytes * 16000} bytes and "
                     f"the file holds {sample_bytes * 6000 + 1} of them: it is cut short")
    short = load_audio(encoded(wave[:6000], 16000, "WAV", subtype))
    np.testing.assert_array_equal(short, load_audio(whole)[:6000])
    # the data chunk's size field, just before the samples, as writers into a pipe leave it: ffmpeg's
    # 0xFFFFFFFF, sox's 0x7FFFF000, 0x7FFFFFFF
    for placeholder in (b"\xff\xff\xff\xff", b"\x00\xf0\xff\x7f", b"\xff\xff\xff\x7f"):
        streamed = bytearray(whole)
        streamed[header - 4 : header] = placeholder
        np.testing.assert_array_equal(load_audio(bytes(streamed)), load_audio(whole))


# libsndfile's container, subtype, the name the refusal gives the format and the chunk with the samples
CHUNKED_AUDIO = [("WAV", "PCM_U8", "RIFF", "data"), ("RF64", "PCM_16", "RF64", "data"),
                 ("W64", "PCM_16", "Wave64", "data"), ("AIFF", "PCM_16", "AIFF", "SSND"),
                 ("CAF", "PCM_16", "CAF", "data")]
# Bytes the chunk with the samples holds before them: AIFF's SSND its offset and block size, CAF's data its edit count.
FIELDS_BEFORE_SAMPLES = {"AIFF": 8, "CAF": 4}


@pytest.mark.parametrize("fmt, subtype, name, chunk", CHUNKED_AUDIO, ids=[case[0] for case in CHUNKED_AUDIO])
def test_chunked_audio_cut_short_is_refused_and_a_whole_file_never(tmp_path, fmt, subtype, name, chunk):
    """A WAV, RF64 (its sizes in its ds64 chunk), Wave64, AIFF or CAF file declares the size of each chunk;
    libsndfile reads one whose sample chunk is cut as a shorter clip. load_audio and audio_seconds
    refuse it naming the file, the chunk and both sizes. A whole file loads: with an odd number of
    8-bit samples (a pad byte after the chunk, or none where a writer left it out at the end of the
    file) and with bytes after its outer chunk."""
    wave = (0.5 * sine(440, 16000)).astype(np.float32)[:15999]  # odd: 8-bit samples need a pad byte
    whole = encoded(wave, 16000, fmt, subtype)
    decoded = load_audio(whole)
    assert len(decoded) == 15999 and audio_seconds(whole) == pytest.approx(15999 / 16000)
    for tail in (b"appended by another tool", bytes(3)):
        assert audio_seconds(whole + tail) > 0.99
        if fmt != "W64":  # libsndfile reads bytes after a Wave64 file's data chunk as more samples
            np.testing.assert_array_equal(load_audio(whole + tail), decoded)
    if subtype == "PCM_U8":
        assert len(whole) % 2 == 0 and whole[-1] == 0  # the pad byte after 15999 bytes of samples
        np.testing.assert_array_equal(load_audio(whole[:-1]), decoded)
    sample_bytes = 1 if subtype == "PCM_U8" else 2
    data_start = len(whole) - sample_bytes * 15999 - (1 if subtype == "PCM_U8" else 0)
    path = tmp_path / f"cut.{fmt.lower()}"
    # libsndfile refuses a CAF that lost more than about an eighth of its samples itself
    first_kept = (1, 8000 * sample_bytes + 1) if fmt != "CAF" else (14000 * sample_bytes, 15000 * sample_bytes + 1)
    for kept in (*first_kept, 15998 * sample_bytes):
        cut = whole[: data_start + kept]
        assert 0 <= len(sf.read(io.BytesIO(cut))[0]) < 15999  # libsndfile alone: a shorter clip, no error
        fields = FIELDS_BEFORE_SAMPLES.get(fmt, 0)
        declared, held = sample_bytes * 15999 + fields, kept + fields
        assert_cut_short(cut, path, f"its {name} '{chunk}' chunk declares {declared} bytes and the file holds {held} "
                         "of them: it is cut short")


def test_an_au_file_cut_short_is_refused_and_a_whole_one_never(tmp_path):
    """An AU (.au, .snd) file's header declares how many bytes of samples follow it; libsndfile reads a
    cut one as a shorter clip. A whole one loads, with bytes after it too, and so does one whose writer
    left the size unknown (0xFFFFFFFF, as a pipe makes it): its samples run to the end of the file."""
    wave = (0.5 * sine(440, 16000)).astype(np.float32)[:15999]
    whole = encoded(wave, 16000, "AU", "PCM_16")
    decoded = load_audio(whole)
    assert len(decoded) == 15999 and audio_seconds(whole) == pytest.approx(15999 / 16000)
    np.testing.assert_array_equal(load_audio(whole + b"appended by another tool"), decoded)
    np.testing.assert_array_equal(load_audio(whole[:8] + b"\xff" * 4 + whole[12:]), decoded)
    assert len(whole) == 24 + 2 * 15999  # its header, then the samples
    for kept in (0, 8001, 2 * 15998):
        cut = whole[: 24 + kept]
        assert len(sf.read(io.BytesIO(cut))[0]) == kept // 2  # libsndfile alone: a shorter clip, no error
        assert_cut_short(cut, tmp_path / "cut.au", f"its AU header declares {2 * 15999} bytes of samples and the "
                         f"file holds {kept} of them: it is cut short")


def test_a_caf_whose_writer_left_its_data_size_unknown_loads_to_the_end_of_the_file(tmp_path):
    """Apple's CAF specification: a data chunk size of -1 means the samples run to the end of the file
    (a writer that could not seek back). libsndfile takes it for a negative size and refuses the file
    as malformed; it loads, from bytes and from a path, as the same file with its size written."""
    wave = (0.5 * sine(440, 16000)).astype(np.float32)[:15999]
    whole = encoded(wave, 16000, "CAF", "PCM_16")
    size_at = whole.index(b"data") + 4
    unknown = whole[:size_at] + (-1).to_bytes(8, "big", signed=True) + whole[size_at + 8:]
    with pytest.raises(sf.LibsndfileError, match="malformed"):
        sf.read(io.BytesIO(unknown))  # libsndfile alone
    path = tmp_path / "unknown.caf"
    path.write_bytes(unknown)
    for item in (unknown, path):
        np.testing.assert_array_equal(load_audio(item), load_audio(whole))
        assert audio_seconds(item) == pytest.approx(15999 / 16000)
    with pytest.raises(MediaError, match="lasts 1.0 s"):
        decode_audio(unknown, max_seconds=0.5)
    assert path.read_bytes() == unknown  # the file itself is left as it is


def test_a_wav_whose_writer_left_out_a_pad_byte_loads():
    """Some writers leave out the pad byte after a chunk of odd size (here 15999 8-bit samples) even
    where another chunk follows; libsndfile reads the file whole, and so must the cut-short check:
    read a byte too far on, the next chunk's name and size made a chunk of 1.2 GB that the file was
    'cut short' of."""
    wave = (0.5 * sine(440, 16000)).astype(np.float32)[:15999]
    whole = encoded(wave, 16000, "WAV", "PCM_U8")
    assert whole[-1] == 0  # the pad byte after the samples, left out below
    title = b"a spoken title".ljust(56)  # LIST then holds 68 (0x44) bytes
    name_chunk = b"INAM" + len(title).to_bytes(4, "little") + title
    trailer = b"LIST" + (4 + len(name_chunk)).to_bytes(4, "little") + b"INFO" + name_chunk
    assert trailer[4] == ord("D")  # a byte too far on, 'IST' + 'D' reads as a chunk name
    unpadded = whole[:-1] + trailer
    unpadded = unpadded[:4] + (len(unpadded) - 8).to_bytes(4, "little") + unpadded[8:]
    assert len(sf.read(io.BytesIO(unpadded))[0]) == 15999  # libsndfile reads it whole
    np.testing.assert_array_equal(load_audio(unpadded), load_audio(whole))
    assert audio_seconds(unpadded) == pytest.approx(15999 / 16000)
    with pytest.raises(MediaError, match="chunk declares .* it is cut short"):
        load_audio(unpadded[: len(unpadded) - len(trailer) - 100])  # a cut is still seen
    # a pad byte that is there but not 0 (a writer's stray byte, printable) is still read as a pad
    stray = whole[:-1] + b"L" + trailer
    stray = stray[:4] + (len(stray) - 8).to_bytes(4, "little") + stray[8:]
    np.testing.assert_array_equal(load_audio(stray), load_audio(whole))


def mp3_frames(data: bytes) -> list[tuple[int, int]]:
    """Where each audio frame of an MP3 starts and how long it is, as FFmpeg's demuxer finds them."""
    av = pytest.importorskip("av")
    with av.open(io.BytesIO(data)) as container:
        return [(packet.pos, packet.size) for packet in container.demux(audio=0) if packet.size]


def test_an_mp3_cut_between_frames_is_refused_by_its_xing_count_before_decoding(tmp_path):
    """An MP3's Xing frame counts its frames; cut between two frames half way, the walk that checks
    its frames holds fewer, and the file is refused by `audio_seconds` too (the server's check before
    decoding), where only the decoder's count (4655 of 16000 samples) caught it before."""
    whole = encoded((0.5 * sine(440, 16000)).astype(np.float32), 16000, "MP3", "MPEG_LAYER_III")
    assert load_audio(whole).shape == (16000,) and audio_seconds(whole) == 1.0
    frames = mp3_frames(whole)  # the audio frames, as FFmpeg's demuxer finds them (the Xing frame left out)
    cut = whole[: max(start for start, _ in frames if start <= len(whole) // 2)]
    kept = sum(1 for start, _ in frames if start < len(cut))
    assert len(sf.read(io.BytesIO(cut))[0]) < 0.9 * 16000  # what libsndfile decodes of it, silently
    assert_cut_short(cut, tmp_path / "cut.mp3", f"its Xing frame counts {len(frames)} MP3 frames and the file holds "
                     f"{kept} of them: it is cut short")


def test_an_mp3_whose_last_frame_is_cut_is_refused_with_or_without_a_xing_frame(tmp_path):
    """Each MP3 frame's header gives its length: a file that ends inside a frame is cut short, which
    libsndfile reads silently as a shorter clip, and an MP3 without a Xing/Info frame (no count to
    compare) is caught too, behind ID3v2 tags as well. Whole files, and files with an ID3v1 or APE
    tag after their frames, load; one without a Xing frame cut exactly between two frames cannot be
    told from a whole one and loads as the shorter clip it is."""
    wave = (0.5 * sine(440, 16000, seconds=2.0)).astype(np.float32)
    id3v1 = b"TAG" + bytes(125)
    for whole in (mp3_without_xing(wave), encoded(wave, 16000, "MP3", "MPEG_LAYER_III"),
                  id3v2_tag(50_000) + mp3_without_xing(wave)):
        frames, decoded = mp3_frames(whole), len(sf.read(io.BytesIO(whole))[0])
        assert len(load_audio(whole)) == decoded >= 32000
        for tail in (id3v1, ape_tag(1000), ape_tag(1000) + id3v1):
            assert len(load_audio(whole + tail)) == len(load_audio(whole))
            assert audio_seconds(whole + tail) == pytest.approx(audio_seconds(whole), abs=1152 / 16000)
        path = tmp_path / "cut.mp3"
        for start, length in (frames[len(frames) // 2], frames[-1]):
            for kept in (4, length // 2, length - 1):
                cut = whole[: start + kept]
                assert 0 < len(sf.read(io.BytesIO(cut))[0]) < decoded  # libsndfile alone: a shorter clip, no error
                assert_cut_short(cut, path, f"its last MP3 frame (at byte {start}) holds {kept} of its "
                                 f"{length} bytes: it is cut short")
    plain = mp3_without_xing(wave)
    between = plain[: mp3_frames(plain)[len(mp3_frames(plain)) // 2][0]]
    assert 0 < len(load_audio(between)) < 32000


def id3v2_tag(payload_bytes: int) -> bytes:
    """An ID3v2.4 tag holding one picture frame of `payload_bytes` (cover art, as music files carry)."""
    def syncsafe(n: int) -> bytes:
        return bytes((n >> shift) & 0x7F for shift in (21, 14, 7, 0))

    frame = b"APIC" + syncsafe(payload_bytes) + b"\x00\x00" + b"\x00" * payload_bytes
    return b"ID3\x04\x00\x00" + syncsafe(len(frame)) + frame


def mp3_without_xing(wave: np.ndarray, rate: int = 16000) -> bytes:
    """An MP3 of a mono clip written by LAME through PyAV's FFmpeg without a Xing/Info frame (FFmpeg's
    -write_xing 0, as many streaming encoders write), at a constant 32 kbit/s."""
    return constant_bitrate_mp3(wave, rate, xing=False)


def constant_bitrate_mp3(wave: np.ndarray, rate: int = 16000, xing: bool = True) -> bytes:
    """An MP3 of a mono clip written by LAME through PyAV's FFmpeg at a constant 32 kbit/s, with an Info
    frame counting its frames (FFmpeg's default) or without one."""
    av = pytest.importorskip("av")
    out = io.BytesIO()
    with av.open(out, "w", format="mp3", options={"write_xing": str(int(xing))}) as container:
        stream = container.add_stream("libmp3lame", rate=rate, options={"b": "32k"})
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray((wave[None] * 32767).astype(np.int16), format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return out.getvalue()


def ape_tag(payload_bytes: int) -> bytes:
    """An APEv2 tag (header, one binary item of `payload_bytes`, footer), as some taggers append
    cover art after the audio."""
    item = payload_bytes.to_bytes(4, "little") + bytes(4) + b"Cover Art (Front)\x00" + b"\x01" * payload_bytes
    size = len(item) + 32  # the items and the footer, not the header

    def header(flags: int) -> bytes:
        return b"APETAGEX" + b"".join(n.to_bytes(4, "little") for n in (2000, size, 1, flags)) + bytes(8)

    return header(0xA0000000) + item + header(0x80000000)


def test_an_mp3_without_a_xing_frame_declares_no_length_and_loads_whole_behind_a_large_tag():
    """An MP3 written without a Xing/Info frame (FFmpeg's -write_xing 0, many streaming encoders)
    has no sample count; libsndfile estimates one from the file's size, and 300 kB of cover art in
    its ID3 tag makes that estimate several times the truth: the file loads whole rather than being
    refused as cut short. With a Xing frame behind the same tag, a cut is still found."""
    wave = (0.5 * sine(440, 16000, seconds=2.0)).astype(np.float32)
    plain = mp3_without_xing(wave)
    tagged = id3v2_tag(300_000) + plain
    with sf.SoundFile(io.BytesIO(tagged)) as sound:
        assert sound.frames > 3 * 32000  # libsndfile's estimate, counting the tag as audio
    decoded = load_audio(tagged)
    assert 32000 <= decoded.shape[0] < 32000 + 2 * 1152  # the clip and the encoder's delay and padding
    np.testing.assert_array_equal(decoded, load_audio(plain))
    tag, with_xing = id3v2_tag(300_000), encoded(wave, 16000, "MP3", "MPEG_LAYER_III")
    assert load_audio(tag + with_xing).shape == (32000,)
    between_frames = max(start for start, _ in mp3_frames(with_xing) if start <= len(with_xing) // 2)
    with pytest.raises(MediaError, match=r"its Xing frame counts 58 MP3 frames and the file holds \d+ of them: it is cut"):
        load_audio(tag + with_xing[:between_frames])


def test_the_length_of_an_mp3_without_a_xing_frame_leaves_its_tags_out():
    """libsndfile estimates an MP3 without a Xing frame at its first frame's bitrate over the whole
    file, cover art in an ID3v2 tag before the audio or an APE tag after it included (a 2 s clip
    reads as 77 s behind 300 kB of art); `audio_seconds`, which the server checks against its limit
    before decoding, counts the audio bytes alone and agrees with the samples decoded."""
    plain = mp3_without_xing((0.5 * sine(440, 16000, seconds=2.0)).astype(np.float32))
    decoded_seconds = len(load_audio(plain)) / 16000
    id3v1 = b"TAG" + bytes(125)
    for tagged in (id3v2_tag(300_000) + plain, plain + ape_tag(100_000) + id3v1,
                   id3v2_tag(1000) + id3v2_tag(50_000) + plain + ape_tag(100_000)):
        assert sf.info(io.BytesIO(tagged)).duration > 10 * decoded_seconds  # libsndfile alone
        assert audio_seconds(tagged) == pytest.approx(decoded_seconds, abs=1152 / 16000)  # within one frame
    assert audio_seconds(plain + id3v1) == pytest.approx(decoded_seconds, abs=1152 / 16000)


def ogg_bytes(seconds: float, subtype: str, channels: int = 1, rate: int = 48000) -> bytes:
    """An OGG file written by libsndfile: a tone with noise (what a lossy codec keeps some of)."""
    t = np.arange(int(rate * seconds)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.random.default_rng(3).standard_normal(len(t))
    if channels == 2:
        wave = np.stack([wave, wave[::-1]], axis=1)
    return encoded(wave.astype(np.float32), rate, "OGG", subtype)


def ogg_pages(data: bytes) -> list[int]:
    """Where each page of an Ogg file starts: 27 header bytes, a segment table of `data[26]` bytes,
    then the body, whose size is the table's sum (RFC 3533)."""
    starts, position = [], 0
    while position < len(data):
        starts.append(position)
        segments = data[position + 27 : position + 27 + data[position + 26]]
        position += 27 + len(segments) + sum(segments)
    return starts


@pytest.mark.parametrize("subtype", ["VORBIS", "OPUS"])
def test_an_ogg_cut_short_is_refused_and_a_whole_one_never(tmp_path, subtype):
    """An Ogg file states no length, and libsndfile reads one cut short as a shorter clip. Its pages
    do: each states its size, and each stream's last page carries the end-of-stream flag, so a file
    cut inside a page, or between pages, is refused naming the item; a page whose checksum fails is
    damaged. Whole files (short and long, mono and stereo, two chained) load to their length."""
    for seconds, channels in ((0.05, 1), (2.0, 2), (8.0, 1)):
        whole = ogg_bytes(seconds, subtype, channels)
        assert len(load_audio(whole, 48000)) == sf.info(io.BytesIO(whole)).frames == int(48000 * seconds)
    whole = ogg_bytes(8.0, subtype)
    pages = ogg_pages(whole)
    assert pages[-1] < len(whole) and whole[pages[-1] + 5] & 0x04  # the last page ends the stream
    path = tmp_path / "cut.ogg"
    for cut, reason in [
        (whole[: len(whole) // 2], f"its last Ogg page (at byte {max(p for p in pages if p <= len(whole) // 2)}) "),
        (whole[: pages[len(pages) // 2]], f"its Ogg stream stops at byte {pages[len(pages) // 2]} without its "
                                          "end-of-stream page: it is cut short"),
        (whole[: pages[-1]], f"its Ogg stream stops at byte {pages[-1]} without its end-of-stream page: it is "
                             "cut short"),
    ]:
        assert 0 < len(sf.read(io.BytesIO(cut))[0]) < 8 * 48000  # libsndfile alone: a shorter clip, no error
        path.write_bytes(cut)
        for item, where in ((cut, f"<{len(cut)} bytes>"), (path, repr(str(path)))):
            with pytest.raises(MediaError) as raised:
                load_audio(item)
            assert str(raised.value).startswith(f"cannot decode audio {where}: {reason}")
            assert raised.value.reason.endswith("it is cut short")
            with pytest.raises(MediaError, match="it is cut short"):
                audio_seconds(item)  # the header check the server and the data readers make
    damaged = bytearray(whole)
    damaged[pages[2] + 200] ^= 0x10
    with pytest.raises(MediaError, match=rf"the Ogg page at byte {pages[2]} fails its checksum: the file is damaged$"):
        load_audio(bytes(damaged))
    chained = ogg_bytes(0.5, subtype) + ogg_bytes(1.0, "VORBIS")  # two links, each ending its stream
    assert audio_seconds(chained) > 0 and len(load_audio(chained, 48000)) > 0
    with pytest.raises(MediaError, match="it is cut short"):
        load_audio(chained[:-1])


def test_a_media_file_that_cannot_be_read_is_a_media_error(tmp_path, monkeypatch):
    """A file the process may not read (permissions, an I/O error) is refused as the media's error,
    naming the file and the system's reason, by the container check that reads it first (as the
    decoders' own errors are), not left to escape as a traceback."""
    from modrwkv.encoders import containers

    path = tmp_path / "clip.ogg"
    path.write_bytes(ogg_bytes(0.5, "VORBIS"))

    def denied(file, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(containers, "open", denied, raising=False)  # as an unreadable file (root reads any)
    for read in (audio_seconds, load_audio):
        with pytest.raises(MediaError, match=rf"^cannot read audio {re.escape(repr(str(path)))}: Permission denied$"):
            read(path)


@pytest.mark.parametrize("file_format", ["WAV", "W64"])
def test_a_sample_rate_no_audio_has_is_refused_before_resampling(file_format):
    """A bit flip in a Wave64 header's rate (found by fuzzing) made it 2147434112 Hz, and resampling
    that to 16 kHz never finished; a rate of 3 Hz would make a second of audio 85 million samples."""
    wave = (0.3 * np.sin(np.arange(16000) / 10)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, wave, 16000, format=file_format)
    raw = bytearray(buffer.getvalue())
    at = raw.index((16000).to_bytes(4, "little"))  # the header's rate field, libsndfile's own layout
    raw[at:at + 4] = (2147434112).to_bytes(4, "little")
    assert sf.info(io.BytesIO(bytes(raw))).samplerate == 2147434112  # libsndfile takes it as it is
    for decode in (load_audio, decode_audio, audio_seconds):  # audio_seconds said 7 microseconds
        with pytest.raises(MediaError, match=re.escape(
                f"cannot decode audio <{len(raw)} bytes>: its header declares a sample rate of 2147434112 Hz, outside "
                "real audio's 1000 to 768000 Hz (damaged?)")):
            decode(bytes(raw))
    with pytest.raises(MediaError, match=re.escape(
            "audio <tuple of 2> has a sample rate of 3 Hz, outside real audio's 1000 to 768000 Hz")):
        load_audio((wave, 3))
    assert load_audio((wave, 1000)).shape == (256000,) and load_audio((wave, 768000)).shape == (334,)


def vbr_mp3_without_xing() -> tuple[bytes, int, int]:
    """(a 3 s variable-bitrate MP3 of 16 kHz whose Xing frame is taken out (libsndfile's own, as a tool
    that drops the frame leaves it), the samples its frames hold as FFmpeg's demuxer finds them, the
    samples libsndfile decodes of it)."""
    rng = np.random.default_rng(0)
    t = np.arange(48000) / 16000
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(3 * t)) + 0.05 * rng.standard_normal(48000) * (t > 1.5))
    whole = encoded(wave.astype(np.float32), 16000, "MP3", "MPEG_LAYER_III")
    assert len(load_audio(whole)) == 48000  # with its Xing frame: whole
    frames = mp3_frames(whole)  # the audio frames, as FFmpeg's demuxer finds them (it reads the Xing frame itself)
    tag = whole.index(b"Xing") if b"Xing" in whole else whole.index(b"Info")
    xing_start = whole.rindex(b"\xff", 0, tag)  # its header's sync byte; zeros of side information follow it
    stripped = whole[:xing_start] + whole[frames[0][0]:]
    held, decoded = len(frames) * 576, len(sf.read(io.BytesIO(stripped))[0])  # MPEG-2 layer III: 576 per frame
    assert len({length for _, length in frames}) > 2 and decoded < held / 2  # variable; libsndfile alone reads part
    return stripped, held, decoded


def test_an_mp3_holding_more_frames_than_its_xing_frame_counts_is_refused_and_a_count_of_0_counts_none():
    """libsndfile decodes only the frames a Xing frame counts: a count below the frames the file holds
    (damaged, or files joined after the first's Xing frame) was read silently as a shorter clip. A
    count of 0 (a writer that could not seek back to fill it in) is no count: mpg123 estimates the
    length from the first frame, which this variable-bitrate file makes under half its frames; both
    were loaded without an error."""
    rng = np.random.default_rng(0)
    t = np.arange(48000) / 16000
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(3 * t)) + 0.05 * rng.standard_normal(48000) * (t > 1.5))
    whole = encoded(wave.astype(np.float32), 16000, "MP3", "MPEG_LAYER_III")
    frames = len(mp3_frames(whole))
    tag = whole.index(b"Xing")
    assert int.from_bytes(whole[tag + 8 : tag + 12], "big") == frames and len(load_audio(whole)) == 48000

    def counting(count: int) -> bytes:
        return whole[: tag + 8] + count.to_bytes(4, "big") + whole[tag + 12 :]

    short = frames * 2 // 3
    assert len(sf.read(io.BytesIO(counting(short)))[0]) < 48000 * 0.7  # libsndfile alone: the counted frames
    for read in (load_audio, audio_seconds):
        with pytest.raises(MediaError, match=f"its Xing frame counts {short} MP3 frames and the file holds {frames}: "
                           "libsndfile decodes only those it counts"):
            read(counting(short))
    held = (frames + 1) * 576  # the walk's count: the Xing frame's too (MPEG-2 layer III: 576 per frame)
    assert audio_seconds(counting(0)) == held / 16000
    with pytest.raises(MediaError, match=f"its MP3 frames hold {held} samples"):
        load_audio(counting(0))


def test_a_variable_bitrate_mp3_without_its_xing_frame_is_refused_not_read_in_part(tmp_path):
    """libsndfile estimates the length of an MP3 without a Xing/Info frame from its first frame's
    bitrate and decodes only that far: of this variable-bitrate file it read 0.85 of 3.10 s, without an
    error."""
    stripped, held, decoded = vbr_mp3_without_xing()
    path = tmp_path / "vbr.mp3"
    path.write_bytes(stripped)
    for item, where in ((stripped, f"<{len(stripped)} bytes>"), (path, repr(str(path)))):
        with pytest.raises(MediaError) as raised:
            load_audio(item)
        assert str(raised.value) == (
            f"cannot decode audio {where}: its MP3 frames hold {held} samples ({held / 16000:.2f} s) and libsndfile "
            f"decodes {decoded} ({decoded / 16000:.2f} s) of them: a variable-bitrate MP3 without a Xing/Info frame, "
            "whose length libsndfile estimates from its first frame; re-encode it (LAME and FFmpeg write that frame by "
            "default)")


def test_a_variable_bitrate_mp3_without_its_xing_frame_lasts_what_its_frames_hold_walked_once(monkeypatch):
    """Its length for a limit (the server's --max-audio-seconds) is its frames' count, from the walk
    that checks them for a cut: it was libsndfile's estimate from the first frame's bitrate (0.85 of
    its 3.10 s), so a clip over the limit was decoded before it was refused, and the frames were walked
    twice (for a cut, then for their count)."""
    from modrwkv.encoders import containers
    from modrwkv.encoders.media import AudioTooLong

    stripped, held, _ = vbr_mp3_without_xing()
    assert audio_seconds(stripped) == held / 16000
    walks = []
    walk = containers._walk_mp3
    monkeypatch.setattr(containers, "_walk_mp3", lambda stream, size: walks.append(1) or walk(stream, size))
    with pytest.raises(AudioTooLong) as too_long:
        decode_audio(stripped, max_seconds=2.0)
    assert too_long.value.seconds == held / 16000 and len(walks) == 1
    walks.clear()
    with pytest.raises(MediaError, match=f"its MP3 frames hold {held} samples"):  # under the limit: decoded, refused
        decode_audio(stripped, max_seconds=5.0)
    assert len(walks) == 1


def test_bytes_between_two_mp3_frames_are_skipped_as_mpg123_skips_them_so_every_frame_counts():
    """mpg123 (libsndfile's decoder) skips up to 1024 bytes that are no frame between two frames and
    decodes the frames after them; the walk stopped there, so a stray byte early in a file without a
    Xing frame made its length a few frames: a limit (the server's --max-audio-seconds) was checked
    against that and the file decoded past it, and libsndfile's partial read of this variable-bitrate
    file was not refused. With a Xing frame, such a file was refused as cut short."""
    from modrwkv.encoders.media import AudioTooLong

    stripped, held, _ = vbr_mp3_without_xing()
    at = mp3_frames(stripped)[3][0]
    for junk in (b"\x00", b"\xff" * 5, bytes(1000)):
        strayed = stripped[:at] + junk + stripped[at:]
        assert audio_seconds(strayed) == held / 16000
        with pytest.raises(AudioTooLong):
            decode_audio(strayed, max_seconds=2.0)
        with pytest.raises(MediaError, match=f"its MP3 frames hold {held} samples"):
            load_audio(strayed)
    whole = encoded((0.5 * sine(440, 16000, seconds=2.0)).astype(np.float32), 16000, "MP3", "MPEG_LAYER_III")
    at = mp3_frames(whole)[3][0]
    assert len(load_audio(whole[:at] + bytes(1000) + whole[at:])) == len(load_audio(whole))
    # more than mpg123 looks past: it stops there, and the Xing frame's count finds the frames missing
    with pytest.raises(MediaError, match="its Xing frame counts 58 MP3 frames and the file holds 3 of them"):
        load_audio(whole[:at] + bytes(1100) + whole[at:])


def test_an_mp3_is_read_once_by_this_library_and_its_length_is_what_its_frames_say(tmp_path, monkeypatch):
    """The walk that checks an MP3 for a cut reads its tags and its Xing/Info frame too: `decode_audio`
    with a length limit opens the file once (libsndfile opens it on its own), where it read the file's
    head three times (the walk, then its tags and first frame for the limit and again for the decoded
    count), and `audio_seconds` once. Lengths are what independent counts give: the clip's 2 s where a
    Xing/Info frame counts the frames (libsndfile's LAME writes VBR, FFmpeg's Info frame CBR), FFmpeg's
    demuxer's frames without one, and the same behind an ID3v2 tag or before APE and ID3v1 tags."""
    import builtins

    from modrwkv.encoders.media import AudioTooLong

    wave = (0.5 * sine(440, 16000, seconds=2.0)).astype(np.float32)
    stripped, stripped_held, _ = vbr_mp3_without_xing()
    plain = mp3_without_xing(wave)
    files = {"cbr-info": (constant_bitrate_mp3(wave), 2.0), "vbr-xing": (encoded(wave, 16000, "MP3", "MPEG_LAYER_III"), 2.0),
             "cbr-without-xing": (plain, len(mp3_frames(plain)) * 576 / 16000),
             "vbr-without-xing": (stripped, stripped_held / 16000)}
    for name, (data, seconds) in list(files.items()):
        files[f"{name}-id3v2"] = (id3v2_tag(50_000) + data, seconds)
        files[f"{name}-ape-id3v1"] = (data + ape_tag(1000) + b"TAG" + bytes(125), seconds)
    opened = []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda file, *args, **kwargs: (
        opened.append(file) or real_open(file, *args, **kwargs)))
    for name, (data, seconds) in files.items():
        path = tmp_path / f"{name}.mp3"
        path.write_bytes(data)
        opened.clear()
        assert audio_seconds(path) == seconds, name
        assert opened == [path], name
        opened.clear()
        if name in ("vbr-without-xing", "vbr-without-xing-ape-id3v1"):  # libsndfile decodes a part of it: refused
            # (behind the 50 kB ID3v2 tag, counted as audio by its estimate, it decodes the whole)
            with pytest.raises(MediaError, match=f"its MP3 frames hold {stripped_held} samples"):
                decode_audio(path, max_seconds=100)
        else:
            waveform, rate = decode_audio(path, max_seconds=100)
            assert rate == 16000 and len(waveform) == len(sf.read(path)[0]), name
            assert len(waveform) == 32000 if seconds == 2.0 else len(waveform) > 32000, name
        assert opened == [path], name
        opened.clear()
        with pytest.raises(AudioTooLong):
            decode_audio(path, max_seconds=seconds - 0.01)
        assert opened == [path], name


def ffmpeg_decoded_samples(data: bytes) -> int:
    """The samples FFmpeg decodes of an audio file, skipping packets it cannot decode (as its command
    line tool does)."""
    av = pytest.importorskip("av")
    samples = 0
    with av.open(io.BytesIO(data)) as container:
        for packet in container.demux(audio=0):
            try:
                samples += sum(frame.samples for frame in packet.decode())
            except av.error.InvalidDataError:
                pass
    return samples


def test_bytes_after_an_mp3s_last_frame_that_are_no_frame_are_skipped_as_its_decoders_skip_them(tmp_path):
    """Bytes after the last whole frame that cannot be a frame (a stray byte, a NUL, fewer bytes than
    a frame's 4-byte header, an old ripper's padding, bytes that are no valid header) are skipped by
    libsndfile (mpg123) and FFmpeg, which decode every frame before them; a lone 0xFF byte, or the
    first 1-3 bytes of a header, was refused as a cut header. A cut that leaves part of a header is
    then a cut between frames: refused by a Xing frame's count, read as it is without one. A frame
    whose whole header is there and fewer bytes than it states is still cut short."""
    wave = (0.5 * sine(440, 16000, seconds=2.0)).astype(np.float32)
    for whole in (mp3_without_xing(wave), encoded(wave, 16000, "MP3", "MPEG_LAYER_III")):
        frames = mp3_frames(whole)
        decoded, seconds = load_audio(whole), audio_seconds(whole)
        libsndfile, ffmpeg = len(sf.read(io.BytesIO(whole))[0]), ffmpeg_decoded_samples(whole)
        header = whole[frames[-1][0] : frames[-1][0] + 4]
        for junk in (b"\xff", b"\x00", header[:2], header[:3], b"\xff" * 3, b"\xff" * 7, bytes(300),
                     b"TAG" + bytes(10)):
            assert len(sf.read(io.BytesIO(whole + junk))[0]) == libsndfile, junk  # the decoders skip it
            if len(junk) < 4:
                assert ffmpeg_decoded_samples(whole + junk) == ffmpeg, junk
            np.testing.assert_array_equal(load_audio(whole + junk), decoded)
            assert audio_seconds(whole + junk) == seconds
        last = frames[-1][1]
        assert_cut_short(whole + header + bytes(10), tmp_path / "cut.mp3",
                         f"its last MP3 frame (at byte {len(whole)}) holds 14 of its {last} bytes: it is cut short")
        middle = frames[len(frames) // 2][0]
        if b"Xing" in whole:
            with pytest.raises(MediaError, match=f"its Xing frame counts 58 MP3 frames and the file holds {len(frames) // 2} "
                               "of them: it is cut short"):
                audio_seconds(whole[: middle + 3])
        else:
            np.testing.assert_array_equal(load_audio(whole[: middle + 3]), load_audio(whole[:middle]))


def test_an_mp3s_counting_frame_is_read_where_its_writer_put_it_vbri_or_xing_without_a_count(tmp_path):
    """Hand-built from FFmpeg's constant-bitrate file: its Info frame made a Fraunhofer VBRI frame
    (its count 54 bytes in, after its version, delay, quality and byte count), whose count finds a cut
    between two frames before decoding; and an Info frame whose flags leave the count out, which
    declares no length (libsndfile counts none, and decodes its frames, not the 1.4% more it estimates):
    it was taken as counting and the whole file refused as cut short."""
    wave = (0.5 * sine(440, 16000, seconds=2.0)).astype(np.float32)
    info = constant_bitrate_mp3(wave)
    frames = mp3_frames(info)
    first = info.index(b"\xff\xf3")  # the Info frame's header, after FFmpeg's ID3v2 tag
    assert info[first + 13 : first + 17] == b"Info"  # MPEG-2 mono: 9 bytes of side information before it
    vbri_tag = b"VBRI" + b"".join(n.to_bytes(size, "big") for n, size in
                                  ((1, 2), (0, 2), (75, 2), (len(info) - first, 4), (len(frames), 4)))
    vbri = info[: first + 4] + bytes(32) + vbri_tag + bytes(frames[0][0] - first - 36 - len(vbri_tag)) + info[frames[0][0] :]
    assert len(load_audio(vbri)) == len(sf.read(io.BytesIO(vbri))[0])  # whole: loads as libsndfile reads it
    middle = frames[len(frames) // 2][0]
    assert 0 < len(sf.read(io.BytesIO(vbri[:middle]))[0])  # libsndfile alone: a shorter clip, no error
    assert_cut_short(vbri[:middle], tmp_path / "cut.mp3", f"its VBRI frame counts {len(frames)} MP3 frames and the "
                     f"file holds {len(frames) // 2} of them: it is cut short")
    uncounted = bytearray(info)
    uncounted[first + 13 + 7] &= ~1  # the flags' lowest bit: the count is there
    uncounted = bytes(uncounted)
    decoded = len(sf.read(io.BytesIO(uncounted))[0])
    assert decoded == len(frames) * 576 < sf.info(io.BytesIO(uncounted)).frames  # libsndfile's estimate: more
    assert len(load_audio(uncounted)) == decoded
    assert audio_seconds(uncounted) == (len(frames) + 1) * 576 / 16000  # the walk's count, the Info frame's included


def flac_of_unknown_length(data: bytes) -> bytes:
    """The FLAC `data` with its STREAMINFO's total_samples 0, "unknown": what a writer that cannot seek
    back to fill it in leaves (FFmpeg writing to a pipe)."""
    streamed = bytearray(data)
    assert streamed[:4] == b"fLaC" and streamed[4] & 0x7F == 0  # STREAMINFO, the first block
    # total_samples: the low 36 bits of STREAMINFO's bytes 10 to 17 (the file's 18 to 25)
    field = int.from_bytes(streamed[18:26], "big")
    assert field & ((1 << 36) - 1) > 0
    streamed[18:26] = (field & ~((1 << 36) - 1)).to_bytes(8, "big")
    return bytes(streamed)


def test_a_flac_of_unknown_length_decodes_whole_and_a_limit_stops_its_decoding_as_it_passes():
    """A FLAC whose header leaves its length unknown was refused by every length limit (the server's
    --max-audio-seconds) as lasting 576460752303423.5 s, libsndfile's 2**63 - 1 frames for "unknown",
    and `load_audio` failed on it ("Internal psf_fseek() failed"). It now decodes to the samples of the
    same FLAC with its count, `audio_seconds` counts them, and a limit stops the decoding as soon as
    it passes it: after the first block of 2**18 samples (16.4 s at 16 kHz), not the whole file."""
    from modrwkv.encoders.media import AudioTooLong
    from modrwkv.serving.limits import APIError, check_audio

    wave = (0.5 * sine(440, 16000, seconds=3.0)).astype(np.float32)
    whole = encoded(wave, 16000, "FLAC", "PCM_16")
    streamed = flac_of_unknown_length(whole)
    assert sf.info(io.BytesIO(streamed)).frames == 2**63 - 1  # libsndfile's "unknown"
    assert audio_seconds(streamed) == 3.0
    assert np.array_equal(load_audio(streamed), load_audio(whole))
    for limit in (None, 3.0):
        waveform, rate = decode_audio(streamed, max_seconds=limit)
        assert rate == 16000 and np.array_equal(waveform, decode_audio(whole)[0])
    long = flac_of_unknown_length(encoded(np.tile(wave, 20), 16000, "FLAC", "PCM_16"))  # 60 s
    assert audio_seconds(long) == 60.0
    with pytest.raises(AudioTooLong, match=r"^audio <\d+ bytes> lasts at least 16\.38 s, more than 2 s$"):
        decode_audio(long, max_seconds=2.0)
    with pytest.raises(APIError, match=r"^the recording lasts at least 16\.38 s; this server accepts at most 2 s$"):
        check_audio(long, "the recording", 2.0)


def test_a_many_channel_file_is_mixed_down_as_it_decodes_holding_one_channel_not_all():
    """A FLAC of 8 channels' silence compresses to almost nothing, and a server accepts it by its
    length: decoded whole before being mixed down, it held 8 channels' float32 samples (a 56 kB file of
    10 s at 655,350 Hz took 651 MB). Each block is now mixed down as it is read: decoding an 8-channel
    file peaks at under twice what the same length in one channel takes (5.2 times before), and the
    mono waveform is the channels' mean, as libsndfile's whole read averaged in float64 gives it; a
    file shorter than its channel count is averaged over its channels, not over its frames."""
    import tracemalloc

    rate, rng = 16000, np.random.default_rng(0)
    short = rng.uniform(-0.5, 0.5, (3 * rate, 8)).astype(np.float32)
    data = encoded(short, rate, "FLAC", "PCM_24")
    expected = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)[0].astype(np.float64).mean(axis=1)
    assert np.array_equal(decode_audio(data)[0], expected.astype(np.float32))
    two_frames = encoded(short[:2], rate, "WAV", "FLOAT")
    assert np.array_equal(decode_audio(two_frames)[0], short[:2].astype(np.float64).mean(axis=1).astype(np.float32))

    def silence(channels: int, seconds: int = 200) -> bytes:  # written a second at a time: no 100 MB array here
        buffer = io.BytesIO()
        with sf.SoundFile(buffer, "w", rate, channels, format="FLAC", subtype="PCM_16") as file:
            for _ in range(seconds):
                file.write(np.zeros((rate, channels), np.float32))
        return buffer.getvalue()

    def peak(data: bytes) -> int:
        tracemalloc.start()
        try:
            waveform, _ = decode_audio(data, max_seconds=600)
            assert waveform.shape == (200 * rate,)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    assert peak(silence(8)) < 2 * peak(silence(1))
