#!/usr/bin/env python
"""Speech Commands' ten words spoken by espeak-ng, as a folder of class folders, plus the baseline.

    python bench/speech_commands/prepare.py --out data/words [--train 55] [--test 15] [--seed 0]

Speaks each of the ten command words of Speech Commands (yes no up down left right on off stop go)
with the audio quickstart's synthesis (`modrwkv.quickstart.speech.synthesize`: a voice of its ten
espeak-ng voices and variants, 130-190 words per minute and pitch 25-75, drawn per clip) until it has
`--train` clips in the training voices and `--test` in the held-out ones, resamples every clip to
16 kHz mono 16-bit WAV and writes it in Speech Commands' layout,

    OUT/train/<word>/<word>-NNN-<voice>.wav     OUT/test/<word>/<word>-NNN-<voice>.wav

split by voice: the clips spoken in `HELD_OUT_VOICES` (the Scottish accent, which no training clip
has, and the US voice's female variant f3) are the held-out set, every other clip trains. Then
prints the held-out accuracy of the majority class and of logistic regression on MFCC features
(numpy, below) read back from the written files: the numbers a ModRWKV trained on OUT/train should
beat. The commands that train and evaluate through the CLI, and what they gave, are in
docs/custom-data.md ("A folder of class folders").
"""

from __future__ import annotations

import argparse
import json
import tempfile
import wave
from collections import Counter
from pathlib import Path

import numpy as np

from modrwkv.encoders.media import load_audio
from modrwkv.quickstart.speech import VOICES, Utterance, synthesize

WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
HELD_OUT_VOICES = ("en-gb-scotland", "en-us+f3")
SAMPLE_RATE = 16000
ROUND = 20  # clips spoken at a time, until a word has its training and held-out counts
MAX_ROUNDS = 100


def speak_words(out: Path, train: int, test: int, seed: int) -> dict[str, list[Path]]:
    """Every word spoken (`synthesize`, in rounds of `ROUND` clips seeded per word and round) until it has
    `train` clips in the training voices, written to OUT/train/<word>/, and `test` in the held-out ones,
    written to OUT/test/<word>/, at 16 kHz; clips past a split's count are left out. Returns each split's files."""
    written: dict[str, list[Path]] = {"train": [], "test": []}
    wanted = {"train": train, "test": test}
    with tempfile.TemporaryDirectory() as tmp:
        for index, word in enumerate(WORDS):
            have = {"train": 0, "test": 0}
            for round_ in range(MAX_ROUNDS):
                draw = (seed * len(WORDS) + index) * MAX_ROUNDS + round_  # distinct for every seed, word and round
                for utterance in synthesize([word] * ROUND, Path(tmp) / word, draw, f"{word}{round_}", workers=1):
                    split = split_of(utterance)
                    if have[split] < wanted[split]:
                        path = out / split / word / f"{word}-{have[split]:03d}-{utterance.voice}.wav"
                        write_wav(path, load_audio(utterance.path, SAMPLE_RATE))
                        written[split].append(path)
                        have[split] += 1
                if have == wanted:
                    break
            else:
                raise RuntimeError(f"{word!r}: {have} clips after {MAX_ROUNDS} rounds of {ROUND}, {wanted} wanted")
    return written


def split_of(utterance: Utterance) -> str:
    """"test" for a clip in a held-out voice, else "train"."""
    return "test" if utterance.voice in HELD_OUT_VOICES else "train"


def write_wav(path: Path, waveform: np.ndarray) -> None:
    """`waveform` (float, -1..1) as a 16 kHz mono 16-bit PCM WAV file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.round(np.clip(waveform, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(SAMPLE_RATE)
        handle.writeframes(pcm.tobytes())


def read_wav(path: Path) -> np.ndarray:
    """A file `write_wav` wrote, as floats in -1..1."""
    with wave.open(str(path), "rb") as handle:
        if (handle.getframerate(), handle.getnchannels(), handle.getsampwidth()) != (SAMPLE_RATE, 1, 2):
            raise ValueError(f"{path}: not a 16 kHz mono 16-bit WAV file (rerun prepare.py to rewrite it)")
        return np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2").astype(np.float64) / 32768


def mel_filters(bands: int = 40, fft: int = 512) -> np.ndarray:
    """Triangular mel filters (HTK mel scale) over the FFT bins of 16 kHz audio [bands, fft // 2 + 1]."""
    top = 2595 * np.log10(1 + (SAMPLE_RATE / 2) / 700)  # the mel of the highest frequency
    edges = 700 * (10 ** (np.linspace(0, top, bands + 2) / 2595) - 1)  # band edges, evenly spaced in mel
    bins = np.linspace(0, SAMPLE_RATE / 2, fft // 2 + 1)
    rising = (bins[None] - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None])
    falling = (edges[2:, None] - bins[None]) / (edges[2:, None] - edges[1:-1, None])
    return np.maximum(0, np.minimum(rising, falling))


def mfcc_features(waveform: np.ndarray, segments: int = 4, coefficients: int = 13) -> np.ndarray:
    """A fixed-size summary of a clip: 13 MFCCs (25 ms frames, 10 ms hop, 40 mel bands) of its voiced part
    (the frames within 40 dB of its loudest), averaged over each of `segments` equal stretches of it (the
    order of the sounds), and their mean and standard deviation over the whole of it."""
    from scipy.fft import dct

    frame, hop, fft = 400, 160, 512
    waveform = np.pad(waveform, (0, max(0, frame - len(waveform))))
    count = 1 + (len(waveform) - frame) // hop
    frames = np.stack([waveform[i * hop:i * hop + frame] for i in range(count)]) * np.hamming(frame)
    power = np.abs(np.fft.rfft(frames, fft)) ** 2
    log_mel = np.log(power @ mel_filters(fft=fft).T + 1e-10)
    cepstra = dct(log_mel, type=2, norm="ortho", axis=1)[:, :coefficients]
    energy = power.sum(axis=1)
    voiced = cepstra[energy >= energy.max() * 1e-4]  # within 40 dB of the loudest frame
    stretches = [part.mean(axis=0) for part in np.array_split(voiced, segments) if len(part)]
    stretches += [stretches[-1]] * (segments - len(stretches))  # a clip of fewer voiced frames than segments
    return np.concatenate([*stretches, voiced.mean(axis=0), voiced.std(axis=0)])


def baseline(out: Path) -> dict[str, float]:
    """Held-out accuracies (%) of the majority class of OUT/train and of logistic regression on
    `mfcc_features` of the files in OUT/train, both scored on OUT/test."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def read(split: str) -> tuple[np.ndarray, np.ndarray]:
        files = sorted((out / split).glob("*/*.wav"))
        return np.stack([mfcc_features(read_wav(f)) for f in files]), np.array([f.parent.name for f in files])

    (x_train, y_train), (x_test, y_test) = read("train"), read("test")
    majority = Counter(y_train).most_common(1)[0][0]
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(x_train, y_train)
    return {"majority_class_accuracy": 100 * float(np.mean(y_test == majority)),
            "logistic_regression_accuracy": 100 * classifier.score(x_test, y_test)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="data/words", help="folder to write (train/ and test/, a folder per word)")
    parser.add_argument("--train", type=int, default=55, help="training clips per word (in the training voices)")
    parser.add_argument("--test", type=int, default=15, help="held-out clips per word (in HELD_OUT_VOICES)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the voices, speeds and pitches drawn")
    args = parser.parse_args()

    out = Path(args.out)
    for split in ("train", "test"):  # a rerun with fewer clips or another seed leaves no stale file
        for old in (out / split).glob("*/*.wav"):
            old.unlink()
    written = speak_words(out, args.train, args.test, args.seed)
    training_voices = sorted(set(VOICES) - set(HELD_OUT_VOICES))
    print(f"wrote {len(written['train'])} training clips ({', '.join(training_voices)}) to {out / 'train'} and "
          f"{len(written['test'])} held-out clips ({', '.join(HELD_OUT_VOICES)}) to {out / 'test'}")
    for split, files in written.items():
        counts = Counter(f.parent.name for f in files)
        print(f"  {split}: " + ", ".join(f"{word} {counts[word]}" for word in WORDS))
    scores = baseline(out)
    print(f"majority class of the training clips: {scores['majority_class_accuracy']:.1f}% held-out accuracy")
    print(f"logistic regression on MFCC features, same split: {scores['logistic_regression_accuracy']:.1f}% "
          "held-out accuracy")
    (out / "baseline.json").write_text(json.dumps({**scores, "train": len(written["train"]),
                                                   "test": len(written["test"]),
                                                   "seed": args.seed, "held_out_voices": HELD_OUT_VOICES}) + "\n")


if __name__ == "__main__":
    main()
