"""Long-form transcription: the pause-based segmenter against recordings whose pauses are known
(espeak-ng sentences joined with chosen silences; synthetic sound with a known quietest point), and
the pipeline / `modrwkv eval --long-form` plumbing on a tiny random model against asking each segment
by hand."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile
from test_custom_eval_asr import manifest
from test_pipeline import tiny_model_dir

from modrwkv.cli import main
from modrwkv.data.readers.asr import asr_user_turn
from modrwkv.encoders.media import load_audio
from modrwkv.inference import ModRWKVPipeline
from modrwkv.processing.speech_segments import SegmentSettings, speech_segments
from modrwkv.quickstart.speech import ESPEAK_HELP, EspeakMissing, espeak_binary

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RATE = 16000
SENTENCES = ["two red cats jump near the house", "nine white bears swim under the river",
             "five blue fish sit above the table"]


def spoken(sentence: str, folder: Path, speed: int = 175) -> np.ndarray:
    """One sentence from espeak-ng at 16 kHz, without the silence espeak-ng puts before and after it."""
    try:
        binary = espeak_binary()
    except EspeakMissing:
        pytest.skip(ESPEAK_HELP)  # says how to install it, as the other espeak-ng tests do
    path = folder / "sentence.wav"
    subprocess.run([binary, "-v", "en-us", "-s", str(speed), "-w", str(path), sentence + "."], check=True,
                   capture_output=True)
    wave = load_audio(str(path), RATE)
    sounding = np.flatnonzero(np.abs(wave) > 1e-3)
    return wave[sounding[0] : sounding[-1] + 1]


def joined(pieces: list[np.ndarray], pauses: list[float], lead: float = 0.3) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The pieces with `lead` s of silence first and last and pauses[i] s between piece i and i+1;
    returns the waveform and each piece's (start, end) in seconds."""
    parts, spans, at = [np.zeros(round(lead * RATE), np.float32)], [], lead
    for index, piece in enumerate(pieces):
        parts.append(piece)
        spans.append((at, at + len(piece) / RATE))
        at += len(piece) / RATE
        gap = pauses[index] if index < len(pauses) else lead
        parts.append(np.zeros(round(gap * RATE), np.float32))
        at += gap
    return np.concatenate(parts), spans


# A segment edge may sit up to one frame hop plus half a frame (22.5 ms) from the first or last
# sample above the threshold; the speech's own quiet onset and decay (below -40 dB of the loudest
# frame) may add as much again: 50 ms in all.
TOLERANCE = 0.05


def test_sentences_joined_with_pauses_are_cut_in_the_pauses(tmp_path):
    pieces = [spoken(sentence, tmp_path) for sentence in SENTENCES]
    wave, spans = joined(pieces, [0.5, 0.8])
    segments = speech_segments(wave, RATE, SegmentSettings(max_segment_seconds=10))
    assert len(segments) == 3, segments
    for segment, (start, end) in zip(segments, spans):
        # each segment holds its whole sentence and nothing of the next
        assert segment.start <= start + TOLERANCE and segment.end >= end - TOLERANCE, (segment, start, end)
        assert not segment.forced
    for before, after, (_, pause_start), (pause_end, _) in zip(segments, segments[1:], spans, spans[1:]):
        # the cut between two segments lies in the pause between their sentences
        assert pause_start - TOLERANCE <= before.end <= after.start <= pause_end + TOLERANCE
    # a pause shorter than min_silence_seconds does not cut: 0.2 s between the first two sentences
    wave, spans = joined(pieces, [0.2, 0.8])
    segments = speech_segments(wave, RATE, SegmentSettings(max_segment_seconds=10, min_silence_seconds=0.3))
    assert len(segments) == 2
    assert segments[0].start <= spans[0][0] + TOLERANCE and segments[0].end >= spans[1][1] - TOLERANCE


def test_speech_without_a_pause_is_cut_at_its_quietest_point_within_the_maximum(tmp_path):
    # espeak-ng's sentences of one call, as in bench/long_audio.py: no pause between them
    wave = np.concatenate([spoken(sentence, tmp_path, speed=190) for sentence in SENTENCES])
    seconds = len(wave) / RATE
    segments = speech_segments(wave, RATE, SegmentSettings(max_segment_seconds=2.5))
    assert all(s.end - s.start <= 2.5 + 1e-6 for s in segments), segments
    assert segments[0].start <= TOLERANCE and segments[-1].end >= seconds - TOLERANCE
    assert all(a.forced and a.end == b.start for a, b in zip(segments, segments[1:]))  # nothing left out
    # a synthetic one with known levels: a tone throughout, dips of -20 dB (at 4.0-4.1 s) and -10 dB
    # (at 5.5-5.6 s), both above the -40 dB silence threshold, so there is no pause anywhere
    time = np.arange(10 * RATE) / RATE
    tone = (0.5 * np.sin(2 * np.pi * 220 * time)).astype(np.float32)
    tone[round(4.0 * RATE) : round(4.1 * RATE)] *= 0.1
    tone[round(5.5 * RATE) : round(5.6 * RATE)] *= 0.316
    cuts = [s.end for s in speech_segments(tone, RATE, SegmentSettings(max_segment_seconds=6))[:-1]]
    assert len(cuts) == 1 and 4.0 <= cuts[0] <= 4.1  # the deeper dip, in [3 s, 6 s]
    # with a maximum of 9 s the cut must fall in [4.5 s, 9 s]: only the -10 dB dip is there
    cuts = [s.end for s in speech_segments(tone, RATE, SegmentSettings(max_segment_seconds=9))[:-1]]
    assert len(cuts) == 1 and 5.5 <= cuts[0] <= 5.6
    # a maximum of 3.5 s puts the first cut in [1.75, 3.5] s, before both dips
    first = speech_segments(tone, RATE, SegmentSettings(max_segment_seconds=3.5))[0]
    assert 1.75 <= first.end <= 3.5


def test_silence_clicks_and_bad_settings():
    assert speech_segments(np.zeros(RATE, np.float32), RATE) == []
    wave = np.zeros(3 * RATE, np.float32)
    wave[RATE : RATE + 80] = 0.5  # a 5 ms click: shorter than min_speech_seconds
    wave[2 * RATE : round(2.5 * RATE)] = 0.3 * np.sin(np.arange(RATE // 2) / 5)
    segments = speech_segments(wave, RATE)
    assert len(segments) == 1 and 1.85 <= segments[0].start <= 2.0 and 2.5 <= segments[0].end <= 2.65
    for settings, message in [({"max_segment_seconds": 0}, "max_segment_seconds must be between 0.5 and 600, got 0"),
                              ({"silence_db": 6}, "silence_db must be between -120 and -1, got 6"),
                              ({"min_silence_seconds": float("nan")}, "min_silence_seconds must be a finite number, got nan"),
                              ({"max_segment_seconds": float("inf")}, "max_segment_seconds must be a finite number, got inf"),
                              ({"max_segment_seconds": 1, "min_speech_seconds": 2}, "min_speech_seconds (2) must be less")]:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            SegmentSettings(**settings)
    with pytest.raises(ValueError, match=r"mono waveform \[samples\], got shape \(2, 100\)"):
        speech_segments(np.zeros((2, 100)), RATE)


def test_transcribe_long_form_joins_what_each_segment_is_answered(tmp_path):
    pipe = ModRWKVPipeline.from_pretrained(tiny_model_dir())
    rng = np.random.default_rng(0)
    wave, _ = joined([0.3 * rng.standard_normal(round(0.6 * RATE)).astype(np.float32) for _ in range(3)], [0.5, 0.5])
    path = tmp_path / "three.wav"
    soundfile.write(path, wave, RATE)
    settings = SegmentSettings(max_segment_seconds=5)
    result = pipe.transcribe(str(path), long_form=settings, max_new_tokens=3)
    expected_segments = speech_segments(wave, RATE, settings)
    assert [(s.start, s.end) for s in result.segments] == [(s.start, s.end) for s in expected_segments]
    assert len(result.segments) == 3
    turn = asr_user_turn(pipe.model.asr_prompt)
    by_hand = [pipe.chat(turn, audio=[(wave[round(s.start * RATE) : round(s.end * RATE)], RATE)], temperature=0,
                         max_new_tokens=3).strip() for s in expected_segments]
    assert [s.text for s in result.segments] == by_hand
    assert result.text == " ".join(t for t in by_hand if t)
    whole = pipe.transcribe(str(path), max_new_tokens=3)  # the default: the recording asked whole
    assert whole.text == pipe.chat(turn, audio=[str(path)], temperature=0, max_new_tokens=3).strip()
    assert [(s.start, s.end) for s in whole.segments] == [(0.0, round(len(wave) / RATE, 3))]
    with pytest.raises(ValueError, match="long_form must be True, False or a SegmentSettings"):
        pipe.transcribe(str(path), long_form="yes")
    with pytest.raises(ValueError, match="non-empty list of recordings"):
        pipe.transcribe_batch(str(path))


def test_eval_long_form_asks_each_segment(tmp_path, capsys):
    data = manifest(tmp_path / "data")
    model = tiny_model_dir()
    out = tmp_path / "eval"
    assert main(["eval", "--task", "custom", "--data", str(data), "--model", str(model), "--output", str(out),
                 "--long-form", "--max-segment-seconds", "2", "--max-new-tokens", "3", "--no-progress"]) == 0
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    pipe = ModRWKVPipeline.from_pretrained(model)
    settings = SegmentSettings(max_segment_seconds=2)
    for index, record in enumerate(records):
        expected = pipe.transcribe(str(data.parent / f"{index}.wav"), long_form=settings, max_new_tokens=3)
        assert record["prediction"] == expected.text
        assert record["segments"] == [[s.start, s.end] for s in expected.segments]
    assert json.loads((out / "summary.json").read_text())["samples"] == 2
    # the same folder without --long-form is another run: refused, naming the difference
    capsys.readouterr()
    assert main(["eval", "--task", "custom", "--data", str(data), "--model", str(model), "--output", str(out),
                 "--max-new-tokens", "3", "--no-progress"]) != 0
    assert "holds predictions of a different run: task_options ({'long_form'" in capsys.readouterr().err
    for argv, message in [(["--long-form", "--max-segment-seconds", "0"],
                           "--max-segment-seconds: max_segment_seconds must be between 0.5 and 600, got 0"),
                          (["--max-segment-seconds", "5"], "--max-segment-seconds needs --long-form")]:
        assert main(["eval", "--task", "custom", "--data", str(data), "--model", str(model),
                     "--output", str(tmp_path / "other"), *argv]) != 0
        assert message in capsys.readouterr().err
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"question": "Which?", "answer": "7"}) + "\n", encoding="utf-8")
    assert main(["eval", "--task", "custom", "--data", str(qa), "--model", str(model), "--long-form",
                 "--output", str(tmp_path / "qa")]) != 0
    assert "--long-form applies to an ASR manifest, but this file holds qa records" in capsys.readouterr().err
    assert main(["eval", "--task", "pope", "--data", str(tmp_path), "--model", str(model), "--long-form"]) != 0
    assert "--long-form: pope takes no such option (librispeech, aishell, custom do)" in capsys.readouterr().err


def test_transcribe_decodes_a_bounded_number_of_segments_at_a_time(tmp_path, monkeypatch):
    from modrwkv.inference import pipeline as pipeline_module

    pipe = ModRWKVPipeline.from_pretrained(tiny_model_dir())
    rng = np.random.default_rng(1)
    wave, _ = joined([0.3 * rng.standard_normal(round(0.6 * RATE)).astype(np.float32) for _ in range(5)], [0.5] * 4)
    settings = SegmentSettings(max_segment_seconds=5)
    at_once = pipe.transcribe((wave, RATE), long_form=settings, max_new_tokens=3)
    sizes: list[int] = []
    decode = pipe._decode
    monkeypatch.setattr(pipe, "_decode", lambda prepared: sizes.append(len(prepared)) or decode(prepared))
    monkeypatch.setattr(pipeline_module, "TRANSCRIBE_ROWS", 2)
    chunked = pipe.transcribe((wave, RATE), long_form=settings, max_new_tokens=3)
    assert sizes == [2, 2, 1]
    # the same transcript; the log-probabilities, computed in batches of other sizes, to float rounding
    assert [s.avg_logprob for s in chunked.segments] == pytest.approx([s.avg_logprob for s in at_once.segments], rel=1e-4)
    unscored = [dataclasses.replace(t, segments=[dataclasses.replace(s, avg_logprob=None) for s in t.segments])
                for t in (chunked, at_once)]
    assert unscored[0] == unscored[1]


def test_sound_in_the_last_partial_frame_is_found():
    # 1 s of silence, then a 7.5 ms click after the last whole 25 ms frame (which ends at 0.995 s):
    # shorter than min_speech_seconds, so no segment (it was in no frame, the frames were all
    # equally silent, and the whole second became one segment)
    wave = np.zeros(RATE + 50, np.float32)
    wave[RATE - 70 :] = 0.5
    assert speech_segments(wave, RATE) == []
    # the same sound 0.3 s long (from 0.703 s; the padding reaches 0.1 s before it) is speech that
    # reaches the recording's end
    wave = np.zeros(RATE + 50, np.float32)
    wave[-round(0.3 * RATE) :] = 0.5
    segments = speech_segments(wave, RATE)
    assert len(segments) == 1 and 0.55 <= segments[0].start <= 0.71 and segments[0].end == round(len(wave) / RATE, 3)


def test_non_finite_samples_are_refused_and_numpy_rates_taken():
    wave = 0.3 * np.sin(np.arange(RATE, dtype=np.float32) / 5)
    assert speech_segments(wave, np.int64(RATE)) == speech_segments(wave, RATE) != []
    for bad in (np.nan, np.inf):
        broken = wave.copy()
        broken[8000] = bad  # was [] (a NaN level is never loud) or only the inf frames
        with pytest.raises(ValueError, match=r"non-finite sample \(NaN or inf\) at sample 8000 \(0.500 s\)"):
            speech_segments(broken, RATE)
    with pytest.raises(ValueError, match="sample_rate must be a whole number of Hz"):
        speech_segments(wave, 16000.0)


def test_a_long_recording_is_cut_without_copies_of_it():
    import tracemalloc

    wave = (0.1 * np.random.default_rng(2).standard_normal(600 * RATE)).astype(np.float32)  # 10 min, 38 MB
    tracemalloc.start()
    try:
        speech_segments(wave, RATE)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # one float32 array of squares and small per-frame arrays; a float64 and a padded copy made it 2x
    assert peak < 1.4 * wave.nbytes, peak / wave.nbytes
