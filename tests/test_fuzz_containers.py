"""Fuzzing the container check (seeded and bounded: the same few hundred inputs on every run).

Real files written by libsndfile and FFmpeg, cut at random places, with random bits flipped or
random bytes written over their headers, are either passed or refused with a sentence by
`check_container`, which never raises; the readers built on it (`audio_seconds`, `load_video`)
raise nothing but `MediaError`. A WAV, RF64, Wave64, AIFF, CAF or AU file cut anywhere never loads.
"""

from __future__ import annotations

import io
import random
import sys
from pathlib import Path

import numpy as np
import pytest

from modrwkv.encoders.containers import check_container
from modrwkv.encoders.media import MediaError, VideoSampling, audio_seconds, load_audio, load_video

sys.path.insert(0, str(Path(__file__).parent))
from test_media import encoded, id3v2_tag, mp3_without_xing, sine  # noqa: E402

WAVE = (0.5 * sine(440, 16000)).astype(np.float32)
AUDIO = {"wav-u8": ("WAV", "PCM_U8"), "wav-float": ("WAV", "FLOAT"), "rf64": ("RF64", "PCM_16"),
         "w64": ("W64", "PCM_16"), "aiff": ("AIFF", "PCM_16"), "caf": ("CAF", "PCM_16"), "caf-alac": ("CAF", "ALAC_16"),
         "au": ("AU", "PCM_16"), "mp3-xing": ("MP3", "MPEG_LAYER_III"), "ogg": ("OGG", "VORBIS")}
VIDEO = ["mkv", "mkv-live", "mkv-live-unknown-clusters", "mp4", "mov-moov-first", "avi", "avi-opendml"]


def audio_file(name: str) -> bytes:
    if name == "mp3-plain-tagged":
        return id3v2_tag(500) + mp3_without_xing(WAVE) + b"TAG" + bytes(125)
    fmt, subtype = AUDIO[name]
    return encoded(WAVE[:15999], 16000, fmt, subtype)  # an odd count: 8-bit samples get a pad byte


def video_file(name: str, tmp_path) -> bytes:
    pytest.importorskip("av", reason="video files need PyAV")
    from test_video import (distinct_frames, encode_video, legacy_quicktime, matroska_live_clusters, opendml_avi,
                            written_by_ffmpeg)

    frames = distinct_frames(8, size=16)
    if name == "mkv":
        return encode_video(frames)
    if name == "mp4":
        return written_by_ffmpeg(tmp_path / "clip.mp4", "mp4", "libx264", "yuv420p", frames)
    if name == "avi":
        return written_by_ffmpeg(tmp_path / "clip.avi", "avi", "mjpeg", "yuvj420p", frames)
    if name == "avi-opendml":
        return opendml_avi(frames, tmp_path)[0]
    if name == "mov-moov-first":
        return legacy_quicktime(frames, tmp_path, moov_first=True)
    live = bytearray(written_by_ffmpeg(tmp_path / "live.mkv", "matroska", "ffv1", "bgr0", frames, {"live": "1"}))
    if name == "mkv-live-unknown-clusters":
        for start, size_length in matroska_live_clusters(bytes(live)):
            live[start + 4 : start + 4 + size_length] = bytes([0xFF >> (size_length - 1)]) + b"\xff" * (size_length - 1)
    return bytes(live)


def damaged(data: bytes, rng: random.Random) -> bytes:
    """`data` cut short, with 1-4 bits flipped, both, or 4 random bytes written over its first 200."""
    data = bytearray(data)
    kind = rng.randrange(4)
    if kind in (0, 2):
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    if kind in (1, 2):
        data = data[: rng.randrange(1, len(data))]
    if kind == 3:
        start = rng.randrange(min(len(data), 200))
        data[start : start + 4] = bytes(rng.randrange(256) for _ in range(4))
    return bytes(data)


def assert_a_sentence_or_none(problem: str | None) -> bool:
    assert problem is None or problem.endswith(("it is cut short", "the file is damaged")), problem
    return problem is not None


@pytest.mark.parametrize("name", [*AUDIO, "mp3-plain-tagged"])
def test_damaged_audio_is_passed_or_refused_and_never_raises_anything_else(name):
    whole, rng = audio_file(name), random.Random(name)
    assert check_container(io.BytesIO(whole)).problem is None
    refused = 0
    for _ in range(150):
        data = damaged(whole, rng)
        refused += assert_a_sentence_or_none(check_container(io.BytesIO(data)).problem)
        try:
            audio_seconds(data)
        except MediaError:
            pass
    assert refused > 0


@pytest.mark.parametrize("name", VIDEO)
def test_damaged_video_is_passed_or_refused_and_never_raises_anything_else(tmp_path, name):
    whole, rng = video_file(name, tmp_path), random.Random(name)
    assert check_container(io.BytesIO(whole)).problem is None
    refused = 0
    for attempt in range(150):
        data = damaged(whole, rng)
        refused += assert_a_sentence_or_none(check_container(io.BytesIO(data)).problem)
        if attempt < 10:  # decoding is the slow part
            try:
                load_video(data, VideoSampling(num_frames=2))
            except MediaError:
                pass
    assert refused > 0


@pytest.mark.parametrize("name", ["wav-u8", "wav-float", "rf64", "w64", "aiff", "caf", "caf-alac", "au"])
def test_chunked_audio_cut_anywhere_never_loads(name):
    """Whatever a cut loses (a header chunk, samples), the file is refused: by its structure, or by
    libsndfile where no chunk is left to declare a size (a cut between the header's chunks)."""
    whole, rng = audio_file(name), random.Random(name)
    ends = rng.sample(range(1, len(whole) - 1), 40)  # not the last byte: the U8 file's pad byte
    for end in ends:
        with pytest.raises(MediaError):
            load_audio(whole[:end])
