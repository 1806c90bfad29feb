"""Real speech for the offline audio quickstart: sentences from a small grammar, spoken by espeak-ng
in several voices, speeds and pitches, with a held-out set of sentences never heard in training.

Every word slot is drawn independently ("<number> <colour> <animal> <verb> <place> the <thing>"),
so the LM alone cannot guess a transcript from its context: a model that ignores the audio scores
no better than the most frequent training sentence.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import random
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ..data.readers.asr import asr_to_sample
from ..data.sample import Sample

NUMBERS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
COLOURS = ("red", "green", "blue", "yellow", "black", "white")
ANIMALS = ("cats", "dogs", "birds", "fish", "frogs", "mice", "horses", "bears")
VERBS = ("jump", "sit", "run", "sleep", "wait", "swim")
PLACES = ("near", "under", "behind", "above")
THINGS = ("house", "table", "river")
VOCABULARY = sorted({*NUMBERS, *COLOURS, *ANIMALS, *VERBS, *PLACES, *THINGS, "the"})
# espeak-ng voices (+variants change the timbre: f = female, m = male) and the ranges drawn per clip.
VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-us+f3", "en-gb+f2", "en-us+m3",
          "en-gb-x-gbclan+f4", "en-us+m5")
SPEEDS = (130, 190)  # words per minute
PITCHES = (25, 75)  # espeak-ng's 0-99 scale

ESPEAK_HELP = ("espeak-ng is not installed. The audio quickstart speaks its sentences with it: on Debian/Ubuntu "
               "`sudo apt-get install espeak-ng` (scripts/setup.sh does this when run as root), on macOS "
               "`brew install espeak-ng`, on Fedora `sudo dnf install espeak-ng`; or put an `espeak-ng` binary "
               "on PATH (or set ESPEAK_NG=/path/to/espeak-ng).")


class EspeakMissing(RuntimeError):
    """espeak-ng cannot be found."""


@dataclasses.dataclass(frozen=True)
class Utterance:
    text: str
    voice: str
    speed: int
    pitch: int
    path: Path


def espeak_binary() -> str:
    found = os.environ.get("ESPEAK_NG") or shutil.which("espeak-ng")
    if not found:
        raise EspeakMissing(ESPEAK_HELP)
    return found


def random_sentence(rng: random.Random) -> str:
    return " ".join([rng.choice(NUMBERS), rng.choice(COLOURS), rng.choice(ANIMALS), rng.choice(VERBS),
                     rng.choice(PLACES), "the", rng.choice(THINGS)])


def split_sentences(train: int, test: int, seed: int) -> tuple[list[str], list[str]]:
    """`train` + `test` distinct sentences; no test sentence occurs in training."""
    rng = random.Random(seed)
    sentences: dict[str, None] = {}
    while len(sentences) < train + test:
        sentences[random_sentence(rng)] = None
    ordered = list(sentences)
    return ordered[:train], ordered[train:]


def synthesize(sentences: Sequence[str], folder: Path, seed: int, prefix: str, workers: int = 4) -> list[Utterance]:
    """Speaks each sentence once, in a voice, speed and pitch drawn at random, to `folder`/*.wav
    (22.05 kHz mono). Existing files are kept (the draw is seeded, so a rerun asks for the same)."""
    binary = espeak_binary()
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    jobs = [Utterance(text, rng.choice(VOICES), rng.randint(*SPEEDS), rng.randint(*PITCHES),
                      folder / f"{prefix}-{index:05d}.wav") for index, text in enumerate(sentences)]

    def speak(job: Utterance) -> None:
        if job.path.exists() and job.path.stat().st_size > 44:
            return
        tmp = job.path.with_suffix(".tmp")
        result = subprocess.run([binary, "-v", job.voice, "-s", str(job.speed), "-p", str(job.pitch), "-w", str(tmp),
                                 job.text], capture_output=True, text=True, check=False)
        if result.returncode != 0 or not tmp.exists():
            raise RuntimeError(f"espeak-ng failed on {job.text!r} (voice {job.voice}): {result.stderr.strip()}")
        tmp.replace(job.path)

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(speak, jobs))
    return jobs


def to_samples(utterances: Sequence[Utterance]) -> list[Sample]:
    """ASR samples in the layout of modrwkv's ASR manifests (user: audio + prompt; assistant: text)."""
    samples = []
    for u in utterances:
        sample = asr_to_sample({"audio": str(u.path), "text": u.text}, source=u.path.name)
        sample.meta.update({"voice": u.voice, "speed": u.speed, "pitch": u.pitch})
        samples.append(sample)
    return samples
