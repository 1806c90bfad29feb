#!/usr/bin/env bash
# Creates .venv/ at the repository root and installs modrwkv into it (editable).
#   bash scripts/setup.sh          # the library, the `modrwkv` command and every extra but [gpu]
#   bash scripts/setup.sh --test   # plus the test dependencies (pytest, the official `rwkv` oracle),
#                                  # Chromium for the web-page test (apt-get, when run as root) and
#                                  # llama.cpp's converter in .cache/llama.cpp (tests/test_export.py) and
#                                  # lmms-eval's and pycocoevalcap's wheels in .cache/wheels
#                                  # (tests/test_lmms_lab_layouts.py, the caption metrics' tests)
#   bash scripts/setup.sh --audio  # plus what `modrwkv quickstart --modality audio` needs (Whisper tiny.en)
# The options combine. With --test or --audio, as root on a Debian/Ubuntu machine, it also installs
# espeak-ng (the speech synthesiser of the audio quickstart and its test) with apt-get; elsewhere,
# install it yourself.
# TORCH_SPEC chooses the torch build (default torch==2.13.0, the CPU build this project is tested
# with); GPU users may set e.g. TORCH_SPEC="torch>=2.4" or install torch themselves first.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages that tests or the quickstarts need: installed with apt-get when run as root,
# otherwise the command to run is printed (what needs them skips itself, or says so).
install_package() {  # PACKAGE BINARY PURPOSE
    local package=$1 binary=$2 purpose=$3
    if command -v "$binary" >/dev/null 2>&1 || command -v "$binary-browser" >/dev/null 2>&1; then
        return 0
    fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup.sh: installing $package for $purpose (apt-get install $package)" >&2
        if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null; then
            return 0
        fi
        echo "setup.sh: apt-get could not install $package" >&2
    fi
    echo "setup.sh: $package is not installed ($purpose); to install it: sudo apt-get install -y $package" >&2
}

# llama.cpp's convert_hf_to_gguf.py (with its conversion/ and gguf-py/), which tests/test_export.py
# runs on our fla export: taken from the llama.cpp tree that PyPI's llama-cpp-python sdist vendors
# (0.3.36 = llama.cpp 0c1e57098), since nothing but package registries can be reached.
LLAMA_CPP_PYTHON=0.3.36
fetch_llama_cpp_converter() {
    local dest=.cache/llama.cpp tree="llama_cpp_python-$LLAMA_CPP_PYTHON/vendor/llama.cpp" tmp
    if [ "$(cat "$dest/VERSION" 2>/dev/null)" = "$LLAMA_CPP_PYTHON" ]; then
        return 0
    fi
    tmp=$(mktemp -d)
    if "$py" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$LLAMA_CPP_PYTHON" -d "$tmp"; then
        rm -rf "$dest" && mkdir -p "$dest"
        tar xzf "$tmp/llama_cpp_python-$LLAMA_CPP_PYTHON.tar.gz" -C "$dest" --strip-components=3 \
            "$tree/convert_hf_to_gguf.py" "$tree/conversion" "$tree/gguf-py"
        echo "$LLAMA_CPP_PYTHON" > "$dest/VERSION"
    else
        echo "setup.sh: could not download llama-cpp-python $LLAMA_CPP_PYTHON (llama.cpp's converter test will skip)" >&2
    fi
    rm -rf "$tmp"
}

# Reference implementations the tests read from their wheels, not installed into .venv (lmms-eval's dependencies
# are heavy; pycocoevalcap is 100 MB of Java jars around a few Python files): lmms-eval's task code scores the
# hub copies' rows in tests/test_lmms_lab_layouts.py beside our scoring; pycocoevalcap's CIDEr-D, BLEU and
# PTBTokenizer are what the caption metrics are checked against (tests/test_eval_metrics.py,
# tests/test_hub_parquet.py)
LMMS_EVAL=0.7.3
PYCOCOEVALCAP=1.2
fetch_wheel() {  # PACKAGE VERSION WHEEL-FILE-PREFIX
    local dest=.cache/wheels
    if [ -f "$dest/$3-$2-py3-none-any.whl" ]; then
        return 0
    fi
    mkdir -p "$dest"
    if ! "$py" -m pip download -q --no-deps "$1==$2" -d "$dest"; then
        echo "setup.sh: could not download $1 $2 (the comparison with its scoring will skip)" >&2
    fi
}

extras=(all)  # every feature but [gpu]
for arg in "$@"; do
    case "$arg" in
        --test)
            extras+=(test)
            install_package chromium chromium "the web-page test, tests/test_web.py"
            install_package espeak-ng espeak-ng "the audio quickstart's test"
            ;;
        --audio)
            extras+=(quickstart-audio)
            install_package espeak-ng espeak-ng "modrwkv quickstart --modality audio"
            ;;
        *) echo "setup.sh: unknown option $arg (use --test and/or --audio)" >&2; exit 2 ;;
    esac
done
spec=""
[ ${#extras[@]} -gt 0 ] && spec="[$(IFS=,; echo "${extras[*]}")]"
[ -x .venv/bin/python ] || python3 -m venv .venv
py=.venv/bin/python
if ! "$py" -c "import torch" 2>/dev/null; then
    "$py" -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
fi
"$py" -m pip install -q -e ".${spec}"
if [[ " ${extras[*]} " == *" test "* ]]; then
    fetch_llama_cpp_converter
    fetch_wheel lmms-eval "$LMMS_EVAL" lmms_eval
    fetch_wheel pycocoevalcap "$PYCOCOEVALCAP" pycocoevalcap
fi
