"""tests/warm_start.py: a warm command ends, reports and reads its rank as a fresh interpreter would."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import warm_start  # noqa: E402  (tests/)

SCRIPT = """
import sys, threading, time
from lightning.fabric.utilities.rank_zero import rank_zero_only

print("rank", rank_zero_only.rank, flush=True)
threading.Thread(target=lambda: (time.sleep(0.2), print("thread done", flush=True))).start()
sys.excepthook = lambda kind, value, tb: print("hook:", kind.__name__, value, file=sys.stderr)
raise ValueError("bad input")
"""


def test_a_warm_command_joins_its_threads_uses_its_excepthook_and_reads_its_rank(tmp_path):
    """As `python SCRIPT` ends: its non-daemon thread finishes before exit, its own sys.excepthook reports
    the exception (status 1), and Lightning's rank-zero guard reads the command's LOCAL_RANK, not the
    server's environment (a DDP rank 1 started warm was rank zero, its thread killed, a traceback printed)."""
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    run = warm_start.run([str(script)], text=True, timeout=120, env={**os.environ, "LOCAL_RANK": "1"})
    assert (run.returncode, run.stdout, run.stderr) == (1, "rank 1\nthread done\n", "hook: ValueError bad input\n")


def test_a_server_that_never_answers_makes_the_command_start_fresh(tmp_path):
    """A server whose imports hang (it listens, so the client connects, but never accepts) made every
    warm command of its worker wait for ever; past MODRWKV_WARM_ANSWER_SECONDS the client runs the
    command as a fresh interpreter instead."""
    import socket
    import subprocess
    import time

    path = tmp_path / "socket"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    script = tmp_path / "script.py"
    script.write_text("import sys; print('fresh', 'torch' in sys.modules)")
    started = time.monotonic()
    try:
        run = subprocess.run([sys.executable, warm_start.HERE, "run", str(path), str(script)], capture_output=True,
                             text=True, timeout=60, env={**os.environ, "MODRWKV_WARM_ANSWER_SECONDS": "1"})
    finally:
        listener.close()
    assert (run.returncode, run.stdout, run.stderr) == (0, "fresh False\n", "")
    assert 1 <= time.monotonic() - started < 30
