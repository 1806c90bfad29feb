"""`pip install modrwkv` is the library and the inference CLI; training, serving, evaluation and
audio resampling come with extras, and a missing one is named with the pip command to run."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from modrwkv.lm import RWKV7Config
from modrwkv.lm.random_weights import random_official_state_dict

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = ("lightning", "fastapi", "uvicorn", "jiwer", "scipy", "anyio", "starlette", "pandas")


def test_core_dependencies_leave_the_heavy_parts_to_extras():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {d.split(">")[0].split("=")[0].split(";")[0].strip().lower() for d in project["dependencies"]}
    assert not core & {"lightning", "fastapi", "uvicorn", "jiwer", "scipy"}
    extras = project["optional-dependencies"]
    assert {"train", "serve", "eval", "gpu", "all"} <= set(extras)
    assert any(d.startswith("lightning") for d in extras["train"])
    assert {"fastapi", "uvicorn"} <= {d.split(">")[0] for d in extras["serve"]}
    assert any(d.startswith("jiwer") for d in extras["eval"])
    assert extras["all"] == ["modrwkv[audio,video,train,serve,eval]"]
    assert "extras=(all)" in (ROOT / "scripts" / "setup.sh").read_text()  # the README's commands install [all]


def test_inference_works_without_extras_and_the_others_name_their_pip_install(tmp_path):
    checkpoint = tmp_path / "tiny.pth"
    config = RWKV7Config(n_layer=1, n_embd=64, vocab_size=65536, dim_w=32, dim_a=32, dim_v=32, dim_g=32)
    torch.save(random_official_state_dict(config, seed=1), checkpoint)
    # A fresh interpreter in which the optional packages cannot be imported, as after a bare pip install.
    script = f"""
import contextlib, io, sys
for name in {OPTIONAL!r}:
    sys.modules[name] = None
from modrwkv.cli import main
def run(*args):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = main(list(args))
    print(status, err.getvalue().strip().replace(chr(10), " "))
run("generate", "--model", {str(checkpoint)!r}, "--prompt", "Hi", "--max-new-tokens", "2", "--temperature", "0")
run("export", "--model", {str(checkpoint)!r}, "--format", "fla", "--output", {str(tmp_path / "fla")!r})
run("train", "config.yaml")
run("init", "--data", "data.jsonl")
run("quickstart", "--output", {str(tmp_path / "qs")!r})
run("serve", "--model", {str(checkpoint)!r})
from modrwkv.evaluation.metrics import wer
try:
    wer(["a b"], ["a c"])
except ImportError as exc:
    print("wer:", exc)
"""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line[:1].isdigit() or line.startswith("wer:")]
    generate, export, train, init, quickstart, serve, wer_line = lines
    assert generate.startswith("0 ") and export.startswith("0 ")
    for line, extra in ((train, "train"), (init, "train"), (quickstart, "train"), (serve, "serve")):
        assert line.startswith("2 ") and f"pip install 'modrwkv[{extra}]'" in line, line
        assert "Traceback" not in line
    assert "pip install 'modrwkv[eval]'" in wer_line
