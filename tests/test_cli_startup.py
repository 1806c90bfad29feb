"""The `modrwkv` command starts light: its module and parser import no torch, Lightning or transformers
(each command imports what it needs when it runs), so `--help` is instant, and a Ctrl-C at any moment,
also while a command is still importing them, ends it with one line and status 130, never a traceback."""

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from modrwkv.cli import build_parser
from modrwkv.constants import EVAL_TASKS
from modrwkv.lm import RWKV7Config
from modrwkv.lm.random_weights import random_official_state_dict

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "lightning", "transformers", "numpy")
COMMANDS = ("generate", "quickstart", "init", "train", "merge-lora", "import-released", "chat", "serve", "eval",
            "transcribe", "forecast", "export", "push-to-hub")


def test_importing_the_cli_and_building_its_parser_loads_nothing_heavy() -> None:
    script = ("import sys, modrwkv.cli; modrwkv.cli.build_parser(); "
              f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_the_package_loads_its_names_on_first_use() -> None:
    script = """
import sys
import modrwkv
before = "torch" in sys.modules
from modrwkv import load_model
print(before, "torch" in sys.modules, load_model.__module__, sorted(set(modrwkv.__all__) - set(dir(modrwkv))))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "True", "modrwkv.lm.checkpoint", "[]"]


def test_an_unknown_package_attribute_is_an_attribute_error() -> None:
    import modrwkv

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        modrwkv.nope  # noqa: B018


def subcommands() -> tuple[str, ...]:
    (action,) = (a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return tuple(action.choices)


def test_every_command_is_registered() -> None:
    assert subcommands() == COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_prints_its_help(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: modrwkv {command} ")
    assert "options:" in out


@pytest.mark.parametrize("command", COMMANDS)
def test_no_option_says_its_default_twice_or_a_none(command: str, capsys) -> None:
    """An option's help says its default once: not "(default: the model's own) (default: None)"."""
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines anywhere
    assert "(default: None)" not in help_text
    assert not re.search(r"\(default[^()]*\)\s*\(default", help_text), help_text


def test_the_offered_eval_tasks_are_the_registered_ones() -> None:
    from modrwkv.evaluation.tasks import TASKS

    assert EVAL_TASKS == tuple(TASKS)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    config = RWKV7Config(n_layer=1, n_embd=64, vocab_size=65536, head_size=64, dim_w=32, dim_a=32, dim_v=32, dim_g=32)
    path = tmp_path_factory.mktemp("model") / "tiny-world.pth"
    torch.save(random_official_state_dict(config, seed=1), path)
    return str(path)


def _interrupt(checkpoint: str, when) -> subprocess.CompletedProcess:
    """Starts a long `modrwkv generate`, sends SIGINT once `when(process)` is true, and waits for it.
    Through the command's entry point (modrwkv.__main__), which holds Ctrl-C from its first line:
    `python -m modrwkv.cli` would have none while it imports the command line (~40 ms, longer than
    0.1 s on a busy machine)."""
    command = [sys.executable, "-m", "modrwkv", "generate", "--model", checkpoint, "--prompt", "hi",
               "--max-new-tokens", "100000"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        while proc.poll() is None and not when(proc):
            time.sleep(0.01)
        assert proc.poll() is None, "the command ended before it was interrupted"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def _assert_one_line_interrupted(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 128 + signal.SIGINT, proc.stderr
    assert proc.stderr.strip() in ("modrwkv generate: interrupted", "modrwkv: interrupted"), proc.stderr
    assert proc.stdout == ""


def _cpu_seconds(pid: int) -> float:
    """The CPU time a process has used (user and system, /proc/PID/stat): how far it has got, whatever the load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # from the state, the 3rd field
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime and stime, the 14th and 15th


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc/PID/stat (Linux)")
@pytest.mark.parametrize("delay", [0.1, 0.3, 0.6, 1.0, 1.5])
def test_ctrl_c_at_any_moment_of_a_command_is_one_line_and_status_130(checkpoint: str, delay: float) -> None:
    """Before the change, a Ctrl-C in the first ~1.5 s (while `import modrwkv` loaded torch) printed a
    traceback. The generation runs for minutes, so each delay lands in start-up, importing, loading or
    generating: every one must end the same way. A delay is the command's own CPU time: in wall time, 0.1 s
    on a busy machine (the suite's two workers and more) could end before Python had started the command's
    entry point (Python's start and `site`, ~20 ms of CPU), where no package can answer a Ctrl-C."""

    def past(proc: subprocess.Popen) -> bool:
        try:
            return _cpu_seconds(proc.pid) >= delay
        except OSError:  # it has ended
            return False

    _assert_one_line_interrupted(_interrupt(checkpoint, past))


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/PID/maps (Linux)")
def test_ctrl_c_while_the_command_imports_torch_is_one_line_and_status_130(checkpoint: str) -> None:
    """The moment the old code could not handle, caught deterministically: torch's shared library is
    mapped into the process, i.e. the command is importing torch."""

    def importing_torch(proc: subprocess.Popen) -> bool:
        try:
            return "libtorch" in Path(f"/proc/{proc.pid}/maps").read_text()
        except OSError:
            return False

    _assert_one_line_interrupted(_interrupt(checkpoint, importing_torch))


def _console_script(folder: Path) -> Path:
    """The `modrwkv` console script as pip and uv write it for pyproject.toml's [project.scripts] entry:
    the command a user runs, whatever this environment has installed."""
    entry = re.search(r'^modrwkv = "([\w.]+):(\w+)"', (REPO / "pyproject.toml").read_text(), re.M)
    module, function = entry.groups()
    script = folder / "modrwkv"
    script.write_text(f"# -*- coding: utf-8 -*-\nimport re\nimport sys\nfrom {module} import {function}\n"
                      "if __name__ == '__main__':\n"
                      "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
                      f"    sys.exit({function}())\n")
    return script


def _shell_status(returncode: int) -> int:
    """The status a shell reports: 128 + N for a process that a signal N ended."""
    return 128 - returncode if returncode < 0 else returncode


# Moments in the first ~50 ms of `modrwkv ...`, before `cli.main` runs: "import NAME" is the moment the
# interpreter has just imported NAME (-X importtime says so on stderr), a number is milliseconds after
# the entry point's first line (its `import signal`). Python's own start, its `site` module and the
# console script's `import re` come before any code of the package, and a Ctrl-C there prints Python's
# traceback (a few ms; over 25 ms on a busy machine, as when the suite's two workers share the cores):
# no moment here falls into them.
EARLY_MOMENTS = ["import modrwkv.__main__", "import argparse", "import typing", "import safetensors",
                 "import modrwkv.cli", 10, 30]  # both inside the ~40 ms import of modrwkv.cli


@pytest.mark.parametrize(("how", "moment"), [("console script", moment) for moment in EARLY_MOMENTS]
                         # `python -m` runs modrwkv/__main__.py without importing it as a module
                         + [("python -m modrwkv", moment) for moment in EARLY_MOMENTS[1:]])
def test_ctrl_c_while_the_command_starts_is_one_line_and_status_130(checkpoint: str, tmp_path, how: str,
                                                                    moment) -> None:
    """Before the entry point held Ctrl-C, one pressed while the console script imported modrwkv.cli
    (the first ~50 ms) was a KeyboardInterrupt outside main: a traceback, and status 130 only as the
    signal's."""
    launcher = [str(_console_script(tmp_path))] if how == "console script" else ["-m", "modrwkv"]
    command = [sys.executable, "-X", "importtime", *launcher, "generate", "--model", checkpoint, "--prompt", "hi",
               "--max-new-tokens", "1"]  # ends by itself if never interrupted
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        name = "signal" if isinstance(moment, int) else moment.removeprefix("import ")
        while not (line := proc.stderr.readline()).startswith("import time:") or line.split("|")[-1].strip() != name:
            assert line, f"the command never imported {name}"
        if isinstance(moment, int):
            time.sleep(moment / 1000)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    messages = [line for line in err.splitlines() if not line.startswith("import time:") and line.strip()]
    assert "Traceback" not in err, err[-3000:]
    assert _shell_status(proc.returncode) == 130, err[-3000:]
    assert messages in (["modrwkv: interrupted"], ["modrwkv generate: interrupted"]), messages
    assert out == ""
