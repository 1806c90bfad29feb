#!/usr/bin/env bash
# Creates .venv/ at the repository root and installs modrwkv into it (editable).
#   bash scripts/setup.sh          # the library and the `modrwkv` command
#   bash scripts/setup.sh --test   # plus the test dependencies (pytest, the official `rwkv` oracle) and
#                                  # Chromium for the web-page test (apt-get, when run as root)
# TORCH_SPEC chooses the torch build (default torch==2.13.0, the CPU build this project is tested
# with); GPU users may set e.g. TORCH_SPEC="torch>=2.4" or install torch themselves first.
set -euo pipefail
cd "$(dirname "$0")/.."

# The web-page test (tests/test_web.py) drives a headless Chromium. Installing it needs root; without
# root the test skips itself and says what to run.
install_chromium() {
    if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
        return 0
    fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup.sh: installing Chromium for the web-page test (apt-get install chromium)" >&2
        if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; then
            return 0
        fi
        echo "setup.sh: apt-get could not install chromium" >&2
    fi
    echo "setup.sh: Chromium is not installed, so tests/test_web.py will skip; to run it:" \
         "sudo apt-get install -y chromium" >&2
}

extras=""
if [ "${1:-}" = "--test" ]; then
    extras="[test]"
    install_chromium
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
py=.venv/bin/python
if ! "$py" -c "import torch" 2>/dev/null; then
    "$py" -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
fi
"$py" -m pip install -q -e ".${extras}"
