#!/usr/bin/env python
"""What large images cost the server before any model work: decoding and preprocessing the images
of one request (`modrwkv serve`'s `_prepare_prompt`: JSON body -> base64 -> full decode ->
encoder preprocessing), for images of 1024x1024, 2048x2048 and 4096x4096 pixels.

    python bench/bench_image_limits.py               # 4 images per request, tiny and SigLIP2 preprocessing
    python bench/bench_image_limits.py --images 8

Each size runs in its own child process, which reports the wall time of the request's preparation
(median of 3) and how far it raised the process's resident memory at its peak (Linux: the peak mark
is reset before each run) above what the loaded model and one warm-up request already used. Images are synthetic photographs (smooth gradients plus
noise, JPEG quality 90: a few MB each, so 4 of them fit the default 32 MB body) and solid-colour
JPEGs (a few kB that decode to the same number of pixels: the cheapest way to make the server work).
The encoders have random weights; preprocessing does not depend on them.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

SIDES = (1024, 2048, 4096)


def jpeg(side: int, photo: bool, seed: int) -> bytes:
    import numpy as np
    from PIL import Image

    if photo:
        rng = np.random.default_rng(seed)
        y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
        base = np.stack([x, y, (x + y) / 2], axis=-1) * 200 + rng.normal(0, 12, (side, side, 3))
        pixels = np.clip(base, 0, 255).astype(np.uint8)
    else:
        pixels = np.full((side, side, 3), (40, 120, 200), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def pipeline(encoder: str):
    import torch

    from modrwkv.encoders import build_encoder
    from modrwkv.inference import ModRWKVPipeline
    from modrwkv.lm import RWKV7, RWKV7Config
    from modrwkv.multimodal import ModRWKV

    torch.manual_seed(0)
    lm = RWKV7(RWKV7Config(n_layer=2, n_embd=64, vocab_size=65536, dim_w=32, dim_a=32, dim_v=32, dim_g=32))
    if encoder == "tiny":
        vision = build_encoder("tiny", width=32)
    else:
        vision = build_encoder("siglip2", config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                                      num_attention_heads=2, image_size=384, patch_size=16))
    return ModRWKVPipeline(ModRWKV.build(lm, {"image": vision}).eval())


def write_request(path: str, side: int, images: int, photo: bool) -> int:
    """The request's messages as JSON in a file, made here so that drawing the images does not count
    towards the child's peak memory; returns the body size in bytes."""
    parts = [{"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,"
                                                 + base64.b64encode(jpeg(side, photo, i)).decode()}}
             for i in range(images)]
    body = json.dumps({"messages": [{"role": "user", "content": [*parts, {"type": "text", "text": "What?"}]}]})
    with open(path, "w") as handle:
        handle.write(body)
    return len(body)


def child(path: str, side: int, encoder: str) -> None:
    import torch

    from modrwkv.serving.app import _prepare_prompt
    from modrwkv.serving.limits import ServerLimits

    torch.set_num_threads(1)
    pipe = pipeline(encoder)
    limits = ServerLimits(max_image_pixels=side * side)
    warm = [{"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "data:image/jpeg;base64," + base64.b64encode(jpeg(64, False, 0)).decode()}}]}]
    _prepare_prompt(pipe, warm, limits)
    with open(path) as handle:
        body = handle.read()
    times, rises = [], []
    for _ in range(3):
        before = _reset_peak_rss()
        started = time.perf_counter()
        _prepare_prompt(pipe, json.loads(body)["messages"], limits)  # parsing the body is part of the cost
        times.append(time.perf_counter() - started)
        rises.append(_status_kb("VmHWM") - before)
    print(json.dumps({"seconds": statistics.median(times), "peak_rise_mb": max(rises) / 1024}))


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(field + ":"))


def _reset_peak_rss() -> int:
    """Resets the kernel's peak-RSS mark (Linux >= 4.0), so that the next peak is this request's;
    returns the current RSS in kB."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    return _status_kb("VmRSS")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4, help="images per request")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        path, side, encoder = args.child
        child(path, int(side), encoder)
        return
    load = os.getloadavg()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {load[0]:.2f}, one torch thread; "
          f"{args.images} images per request")
    print(f"{'encoder':8} {'image':>10} {'kind':6} {'body MB':>8} {'seconds':>8} {'peak RSS rise MB':>17}")
    with tempfile.TemporaryDirectory() as folder:
        for photo in (True, False):
            for side in SIDES:
                path = os.path.join(folder, f"{side}-{photo}.json")
                body_bytes = write_request(path, side, args.images, photo)
                for encoder in ("tiny", "siglip2"):
                    out = subprocess.run([sys.executable, __file__, "--child", path, str(side), encoder],
                                         capture_output=True, text=True, check=True)
                    r = json.loads(out.stdout.strip().splitlines()[-1])
                    print(f"{encoder:8} {side:>5}x{side:<4} {'photo' if photo else 'solid':6} {body_bytes / 2**20:8.2f} "
                          f"{r['seconds']:8.2f} {r['peak_rise_mb']:17.0f}", flush=True)


if __name__ == "__main__":
    main()
