#!/usr/bin/env python
"""What decoding a high-sample-rate audio file to the model's 16 kHz costs: peak memory and time of
`load_audio(path, 16000)` (every audio encoder's read) and of the server's path for an upload
(`check_audio`, which decodes the body within the length limit at the model's rate, then the
encoder's `load_audio` of that waveform), for mono 16-bit WAVs of noise and FLACs of silence (the
kind that fits a 32 MiB request body: 600 s at 655,350 Hz is 1.5 MB) at 44.1, 192 and 655.35 kHz.

    python bench/bench_audio_memory.py                           # 60 s and 600 s, every rate
    python bench/bench_audio_memory.py --seconds 60 --rates 192000

Each measurement runs in its own child process, which reports the wall time and how far the read
raised the process's resident memory at its peak above what it held before (Linux: the peak mark
is reset first; the server's body is held before). The files are written block by block to a
temporary folder (600 s of noise at 655,350 Hz is 786 MB) and deleted afterwards.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KINDS = {"wav-noise": ("WAV", "wav"), "flac-silence": ("FLAC", "flac")}


def write(path: Path, kind: str, rate: int, seconds: int) -> None:
    import numpy as np
    import soundfile

    container, _ = KINDS[kind]
    rng = np.random.default_rng(0)
    total, block = rate * seconds, 1 << 20
    with soundfile.SoundFile(path, "w", rate, 1, subtype="PCM_16", format=container) as sound:
        for start in range(0, total, block):
            count = min(block, total - start)
            sound.write(0.1 * rng.standard_normal(count) if kind == "wav-noise" else np.zeros(count))


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def child(path: str, way: str) -> None:
    """Runs one read and prints {"seconds", "peak_mb", "samples"} as JSON."""
    for module in ("scipy.signal", "soundfile"):  # imported by the first read otherwise: not the read's cost
        importlib.import_module(module)
    from modrwkv.encoders.media import load_audio
    from modrwkv.serving.limits import check_audio

    body = Path(path).read_bytes() if way == "server" else None
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # resets VmHWM to the current resident size
    before = _status_kb("VmRSS")
    start = time.perf_counter()
    if way == "server":
        wave = load_audio(check_audio(body, "the upload", 3600.0, sample_rate=16000), 16000)
    else:
        wave = load_audio(path, 16000)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": round(seconds, 2), "peak_mb": round((_status_kb("VmHWM") - before) / 1024),
                      "samples": len(wave)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, nargs="+", default=[60, 600])
    parser.add_argument("--rates", type=int, nargs="+", default=[44100, 192000, 655350])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--child", nargs=2, metavar=("PATH", "WAY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    print(f"# {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print("| file | rate (Hz) | seconds | size (MB) | read | peak (MB) | time (s) |")
    print("|---|---:|---:|---:|---|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for kind in args.kinds:
            for rate in args.rates:
                for seconds in args.seconds:
                    path = Path(folder) / f"{kind}-{rate}-{seconds}.{KINDS[kind][1]}"
                    write(path, kind, rate, seconds)
                    size = path.stat().st_size / 1e6
                    # an upload must fit the server's 32 MiB body
                    ways = ["load_audio"] + (["server"] if path.stat().st_size <= 32 * 2**20 else [])
                    for way in ways:
                        done = subprocess.run([sys.executable, __file__, "--child", str(path), way],
                                              capture_output=True, text=True)
                        if done.returncode != 0:
                            sys.exit(f"{path.name} {way} failed:\n{done.stderr}")
                        result = json.loads(done.stdout)
                        print(f"| {kind} | {rate} | {seconds} | {size:.1f} | {way} | {result['peak_mb']} | "
                              f"{result['seconds']} |", flush=True)
                    path.unlink()


if __name__ == "__main__":
    main()
