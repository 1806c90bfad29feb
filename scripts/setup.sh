#!/usr/bin/env bash
# Creates .venv/ at the repository root and installs modrwkv into it (editable).
#   bash scripts/setup.sh          # the library and the `modrwkv` command
#   bash scripts/setup.sh --test   # plus the test dependencies (pytest, the official `rwkv` oracle)
# TORCH_SPEC chooses the torch build (default torch==2.13.0, the CPU build this project is tested
# with); GPU users may set e.g. TORCH_SPEC="torch>=2.4" or install torch themselves first.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"
[ -x .venv/bin/python ] || python3 -m venv .venv
py=.venv/bin/python
if ! "$py" -c "import torch" 2>/dev/null; then
    "$py" -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
fi
"$py" -m pip install -q -e ".${extras}"
