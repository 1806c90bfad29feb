#!/usr/bin/env bash
# The GPU check, in one go (<= 8.5 minutes on one GPU, inside one 10-minute device command): tests/test_gpu.py (fla kernels vs the chunked
# form, bf16 LM, bf16-mixed / FSDP / DeepSpeed training), then bench/bench_gpu.py (bf16 training
# throughput at the 0.1B shape, prefill / decode tok/s at 0.1B and 1.5B, single-GPU loss equality of
# FSDP and DeepSpeed against plain training), then bench/bench_memory.py on the GPU (the allocator's
# peak against the memory estimate with fla's WKV, docs/memory.md). Results go to one folder; docs/benchmarks.md says what
# to copy from it. Status: prepared, NOT yet run on a GPU (see docs/benchmarks.md, "GPU").
#
#   bash bench/gpu_check.sh --fetch-wheels     # on a machine with PyPI (here): wheels into .whl/
#   bash bench/gpu_check.sh [OUT_DIR]          # on the GPU machine (no index needed if .whl/ is there)
#
# The GPU image (docs/benchmarks.md) has torch, triton, lightning, transformers, safetensors, ... but
# not flash-linear-attention, DeepSpeed or a few of modrwkv's own dependencies: those travel as
# wheels (Python 3.12, x86-64) and are installed with --target into /tmp/site, never over its torch.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=.whl
# Pinned as in pyproject's test extra; the rest are what the GPU image lacks (checked 2026-11-30).
PACKAGES=(
    flash-linear-attention==0.6.0 fla-core==0.6.0 deepspeed==0.19.8 hjson
    pydantic pydantic-core annotated-types typing-inspection
    soundfile jiwer rapidfuzz fastapi starlette uvicorn pyrwkv-tokenizer
)

if [ "${1:-}" = "--fetch-wheels" ]; then
    mkdir -p "$WHEELS"
    exclude=$(git rev-parse --git-path info/exclude)  # wheels travel to the GPU machine, never into git
    grep -qxF "/$WHEELS/" "$exclude" 2>/dev/null || echo "/$WHEELS/" >> "$exclude"
    # DeepSpeed publishes only an sdist: `pip wheel` builds its pure-Python wheel (13 MB in all, 2026-11-30).
    for package in "${PACKAGES[@]}"; do
        $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
            --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$WHEELS" "$package" \
            || $PY -m pip wheel -q --no-deps -w "$WHEELS" "$package" \
            || echo "could not fetch $package" >&2
    done
    du -sh "$WHEELS"; ls "$WHEELS"
    exit 0
fi

OUT=${1:-${OUT:-bench/results/gpu-$(date -u +%F)}}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl \
        || { echo "wheel install failed" | tee "$OUT/env.txt"; exit 1; }
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src:$PWD/tests${PYTHONPATH:+:$PYTHONPATH}

{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    $PY - <<'EOF'
import importlib, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))
for name in ("triton", "fla", "deepspeed", "lightning", "transformers"):
    try:
        print(name, getattr(importlib.import_module(name), "__version__", "?"))
    except Exception as error:
        print(name, "MISSING", type(error).__name__, error)
EOF
} 2>&1 | tee "$OUT/env.txt"

# At most 3.5 minutes for the tests, 3 for the benchmark (it stops its parts early if short of time) and
# 1.5 for the memory check: with the wheel install, well inside the device's 10-minute command limit.
# `-o addopts=`: in one process, as the timings above assume (pyproject's addopts start pytest-xdist
# workers, which the GPU image may not have, and two workers would share the GPU and its ports).
timeout 210 $PY -m pytest -q -rA -o addopts= -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$OUT/test_gpu.txt"
echo "pytest exit: ${PIPESTATUS[0]}" | tee -a "$OUT/test_gpu.txt"
timeout 180 $PY bench/bench_gpu.py --json "$OUT/bench_gpu.json" --budget 160 2>&1 | tee "$OUT/bench_gpu.txt"
echo "bench exit: ${PIPESTATUS[0]}" | tee -a "$OUT/bench_gpu.txt"
# Three bf16 training cases, the allocator's peak against docs/memory.md's estimate.
timeout 90 $PY bench/bench_memory.py --device cuda --only 0.1B-s2-bf16-256x1 \
    0.1B-s2-bf16-1024x2-ckpt-fewlabels 0.4B-lora-bf16-256x1-ckpt 2>&1 | tee "$OUT/bench_memory.txt"
echo "memory bench exit: ${PIPESTATUS[0]}" | tee -a "$OUT/bench_memory.txt"
