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
