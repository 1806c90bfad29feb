#!/usr/bin/env bash
# The GPU check, in one go (<= 550 s of stages on one GPU, inside one 10-minute device command):
# tests/test_gpu.py (fla kernels vs the chunked form, bf16 LM, FSDP / DeepSpeed / bf16-mixed training),
# then bench/bench_gpu.py (0.1B training throughput, prefill / decode tok/s at 0.1B and 1.5B) with
# the chunked PyTorch form first (no Triton, so no compiling) and then with fla's kernels, then
# bench/bench_memory.py on the GPU (the allocator's peak against the memory estimate, docs/memory.md).
# Results go to one folder; docs/benchmarks.md ("GPU") says what ran so far and what to copy from it.
# First run (H200, 2026-12-04): fla's first compile-and-autotune took the whole time given to it
# (hundreds of configurations per kernel family), so every stage now has its own limit, is stopped
# with SIGINT (Python prints where it was), the tests run one configuration per kernel and the
# benchmarks four (tests/triton_autotune.py).
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
    soundfile cffi pycparser jiwer rapidfuzz fastapi starlette uvicorn pyrwkv-tokenizer
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

# Each stage is stopped with SIGINT at its limit, so Python prints where it was (compiling, autotuning
# or waiting on a kernel), then killed 10 s later if it does not stop. A stage's limit is its own or
# what the whole run has left after the time kept for the stages after it, whichever is less, so a
# quick stage leaves its time to the next. `-o addopts=`: one process (the addopts start pytest-xdist
# workers, which would share the GPU); -v: a line per test as it ends; a test past 150 s has its
# threads' stacks dumped by pytest-timeout (where the image has it) and ends the run, which is why
# the tests that compile fla's backward come last in tests/test_gpu.py.
TOTAL=${GPU_CHECK_SECONDS:-550}  # the device command's 600 s less the set-up and a margin
stage() {
    local limit=$1 keep=$2 log=$3; shift 3
    local left=$((TOTAL - SECONDS - keep - 10))
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt 20 ]; then echo "skipped, ${left} s left: $*" | tee -a "$OUT/$log"; return; fi
    timeout -s INT -k 10 "$limit" "$@" 2>&1 | tee -a "$OUT/$log"
    echo "exit ${PIPESTATUS[0]} ($limit s limit, $SECONDS s into the run): $*" | tee -a "$OUT/$log"
}
per_test=$($PY -c "import pytest_timeout" 2>/dev/null && echo "--timeout 150 --timeout-method thread")
stage 240 290 test_gpu.txt $PY -m pytest -v -rA -o addopts= -p no:cacheprovider $per_test tests/test_gpu.py
# The loss lists of plain, FSDP and DeepSpeed ZeRO-1/2/3 training on one GPU, for docs/benchmarks.md.
stage 40 250 bench_gpu.txt $PY bench/bench_gpu.py --parts strategies --json "$OUT/bench_gpu_strategies.json"
# The chunked form first: real numbers in a minute whatever fla's compilation costs; then fla's kernels,
# tuned among 4 configurations each (all of them did not compile in 180 s on the first run), their
# autotuning printed as it ends; the first step and first prefill (in the JSON) include the compiling.
stage 90 170 bench_gpu.txt $PY bench/bench_gpu.py --wkv chunked --parts train,infer --json "$OUT/bench_gpu_chunked.json" --budget 75
stage 600 50 bench_gpu.txt env TRITON_PRINT_AUTOTUNING=1 $PY bench/bench_gpu.py --wkv auto --parts infer,train \
    --autotune-configs 4 --json "$OUT/bench_gpu_fla.json" --budget 400
# Three training cases (bf16 on fla's kernels), the allocator's peak against docs/memory.md's estimate.
stage 600 0 bench_memory.txt $PY bench/bench_memory.py --device cuda --autotune-configs 4 --only 0.1B-s2-bf16-256x1 \
    0.1B-s2-bf16-1024x2-ckpt-fewlabels 0.4B-lora-bf16-256x1-ckpt
