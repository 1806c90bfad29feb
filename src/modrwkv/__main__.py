"""The `modrwkv` command's entry point: the console script (pyproject.toml) and `python -m modrwkv`.

`cli.main` answers a Ctrl-C with one line and status 130, but importing the command line takes tens
of milliseconds before main runs, and a Ctrl-C pressed then was a KeyboardInterrupt outside it: a
traceback. So this module's first action, before it imports anything else, is to hold Ctrl-C; main
takes it over and answers a press held meanwhile as any other. (Python's own start, its `site`
module and the console script's `import re` come before this module, about 3 ms on the project's
2-core Xeon; no package can change them.)
"""

import signal

_pressed: list[int] = []
# Where SIGINT is ignored (a job started in the background by a non-interactive shell), it stays so.
_holding = signal.getsignal(signal.SIGINT) is signal.default_int_handler
if _holding:
    signal.signal(signal.SIGINT, lambda signum, _frame: _pressed.append(signum))


def _release_ctrl_c() -> bool:
    """Gives Ctrl-C back to Python (a KeyboardInterrupt) and says whether it was pressed while held."""
    if _holding:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return bool(_pressed)


def main() -> int:
    from modrwkv.cli import main as run_command

    return run_command(release_ctrl_c=_release_ctrl_c)


if __name__ == "__main__":
    import sys

    sys.exit(main())
