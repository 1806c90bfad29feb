"""Long-form speech: cut a recording at its pauses into segments short enough to transcribe one by
one, as Whisper's long-form mode, whisper.cpp, NeMo and faster-whisper's VAD filter do.

The detector is energy-based (no model to download): a 25 ms frame every 10 ms is speech when its
RMS level is within `silence_db` of the recording's loudest frame. Speech runs separated by less
than `min_silence_seconds` of quiet belong to one segment (the stops inside and between words are
shorter); a longer pause ends a segment. A segment longer than `max_segment_seconds` is cut again at
its quietest point (the lowest 50 ms mean level) between half and all of the maximum from its start,
so every piece fits the maximum even when the speaker never pauses.

    segments = speech_segments(waveform, 16000, SegmentSettings(max_segment_seconds=8))
    [(s.start, s.end) for s in segments]   # seconds
"""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers

import numpy as np
from numpy.typing import ArrayLike

from ..constants import DEFAULT_MAX_SEGMENT_SECONDS

log = logging.getLogger(__name__)

FRAME_SECONDS = 0.025
HOP_SECONDS = 0.010
QUIETEST_POINT_SECONDS = 0.05  # the level a forced cut minimises is averaged over this, not one frame's dip


@dataclasses.dataclass(frozen=True)
class SegmentSettings:
    """How a recording is cut. `max_segment_seconds`: the longest segment (a model trained on short
    clips wants about their length; Whisper-style encoders read 30 s at a time). `min_silence_seconds`:
    the shortest quiet that ends a segment. `silence_db`: frames this many dB (negative) or more below
    the loudest frame are quiet. `min_speech_seconds`: shorter bursts of sound between pauses (a click,
    a breath) are dropped. `padding_seconds`: kept around each segment's speech, never past the
    middle of a pause."""

    max_segment_seconds: float = DEFAULT_MAX_SEGMENT_SECONDS
    min_silence_seconds: float = 0.3
    silence_db: float = -40.0
    min_speech_seconds: float = 0.1
    padding_seconds: float = 0.1

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem:
            raise ValueError(problem)

    def problem(self) -> str | None:
        """What is out of range, naming the field and its limits, or None."""
        limits = {
            "max_segment_seconds": (0.5, 600.0),
            "min_silence_seconds": (HOP_SECONDS, 10.0),
            "silence_db": (-120.0, -1.0),
            "min_speech_seconds": (0.0, 10.0),
            "padding_seconds": (0.0, 5.0),
        }
        for name, (low, high) in limits.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                return f"{name} must be a finite number, got {value!r}"
            if not low <= value <= high:
                return f"{name} must be between {low:g} and {high:g}, got {value:g}"
        if self.min_speech_seconds >= self.max_segment_seconds:
            return (f"min_speech_seconds ({self.min_speech_seconds:g}) must be less than max_segment_seconds "
                    f"({self.max_segment_seconds:g})")
        return None


@dataclasses.dataclass(frozen=True)
class SpeechSegment:
    """A stretch of the recording, in seconds from its start; `forced`: it ends at a quietest-point
    cut, not at a pause."""

    start: float
    end: float
    forced: bool = False


def frame_levels(waveform: np.ndarray, sample_rate: int) -> np.ndarray:
    """RMS level in dB of each 25 ms frame, one every 10 ms (frame i starts at i * 10 ms)."""
    frame, hop = round(FRAME_SECONDS * sample_rate), round(HOP_SECONDS * sample_rate)
    # zero-padded to whole hops: the last frame reaches the last sample (a sound in the final
    # partial hop was in no frame, and a recording otherwise silent became all "speech")
    count = 1 + math.ceil(max(len(waveform) - frame, 0) / hop)
    # one float32 array of squares, padded in place: a float64 copy and a padded copy held an hour's
    # 230 MB twice over; the frames' means are summed in float64
    squares = np.zeros(frame + (count - 1) * hop, np.float32)
    np.square(waveform, out=squares[: len(waveform)], dtype=np.float32)
    power = np.lib.stride_tricks.sliding_window_view(squares, frame)[::hop]
    return 10 * np.log10(power.mean(axis=1, dtype=np.float64) + 1e-20)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index pairs of the True runs of a boolean array."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def speech_segments(waveform: ArrayLike, sample_rate: int, settings: SegmentSettings | None = None) -> list[SpeechSegment]:
    """The segments of speech in a mono waveform, in order, none longer than
    `settings.max_segment_seconds`; [] for a recording without sound."""
    settings = settings or SegmentSettings()
    wave = np.asarray(waveform, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"speech_segments takes a mono waveform [samples], got shape {wave.shape}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Integral) or sample_rate < 1000:
        raise ValueError(f"sample_rate must be a whole number of Hz (at least 1000), got {sample_rate!r}")
    sample_rate = int(sample_rate)
    if not np.isfinite(wave).all():  # a NaN level is never loud: the recording would silently have no speech
        bad = int(np.flatnonzero(~np.isfinite(wave))[0])
        raise ValueError(f"the waveform holds a non-finite sample (NaN or inf) at sample {bad} ({bad / sample_rate:.3f} s)")
    duration = len(wave) / sample_rate
    if not len(wave) or not np.any(wave):
        return []
    levels = frame_levels(wave, sample_rate)
    loud = levels >= levels.max() + settings.silence_db

    # quiet runs shorter than min_silence_seconds are the stops inside speech: they join their neighbours
    regions: list[list[int]] = []  # [first loud frame, last loud frame + 1]
    for start, end in _runs(loud):
        if regions and (start - regions[-1][1]) * HOP_SECONDS < settings.min_silence_seconds:
            regions[-1][1] = end
        else:
            regions.append([start, end])
    # in seconds: from the first loud frame's start to the last one's end
    spans = [(start * HOP_SECONDS, min((end - 1) * HOP_SECONDS + FRAME_SECONDS, duration)) for start, end in regions]
    spans = [(start, end) for start, end in spans if end - start >= settings.min_speech_seconds]

    smoothed = np.convolve(levels, np.ones(max(1, round(QUIETEST_POINT_SECONDS / HOP_SECONDS))), mode="same")
    longest = settings.max_segment_seconds
    pieces: list[tuple[float, float, bool]] = []  # start, end, whether it ends at a forced cut
    for start, end in spans:
        while end - start > longest:
            # cut between half the maximum and the maximum from the start; when what is left fits in two
            # pieces, not before the point that leaves the last one the maximum, so it is not a sliver
            low = start + longest / 2
            if end - start <= 2 * longest:
                low = max(low, end - longest)
            high = start + longest
            # frame i's centre is at i * hop + frame / 2: the frames whose centres lie in [low, high]
            first = math.ceil((low - FRAME_SECONDS / 2) / HOP_SECONDS)
            last = math.floor((high - FRAME_SECONDS / 2) / HOP_SECONDS)
            window = smoothed[first : last + 1]
            cut = (first + int(np.argmin(window))) * HOP_SECONDS + FRAME_SECONDS / 2 if len(window) else high
            pieces.append((start, cut, True))
            start = cut
        pieces.append((start, end, False))

    padding = settings.padding_seconds
    segments = []
    for index, (start, end, forced) in enumerate(pieces):
        # padded into the pauses around it (not across a forced cut), at most to their middles, and
        # never past the maximum
        room = max(settings.max_segment_seconds - (end - start), 0.0)
        after_pause = index == 0 or not pieces[index - 1][2]
        before = min(padding, room / 2) if after_pause else 0.0
        after = 0.0 if forced else min(padding, room - before)
        start = max(start - before, (pieces[index - 1][1] + start) / 2 if index else 0.0)
        end = min(end + after, (end + pieces[index + 1][0]) / 2 if index + 1 < len(pieces) else duration)
        segments.append(SpeechSegment(round(start, 3), round(end, 3), forced))
    log.debug("%.1f s of audio -> %d segments (%d forced cuts)", duration, len(segments), sum(s.forced for s in segments))
    return segments
