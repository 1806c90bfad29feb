"""Starts a test's `python ...` command as a process forked from one that has imported torch, Lightning and
modrwkv already: a training command's start-up is then a fork (~50 ms) instead of ~5-8 s of imports (torch's
~3 s for generate, chat, serve), which the suite paid again for each of its ~25 such commands.

`popen(args, **kwargs)` is `subprocess.Popen([sys.executable, *args], **kwargs)` in every respect a test
sees: its process is a small client (plain Python, no torch) that hands its stdin, stdout and stderr, its
environment, working directory and arguments to this worker's warm server, forwards the signals it
receives (SIGINT, SIGTERM, ...) to the forked command, and exits as the command exits (its status, or
killed by the same signal). The command runs as `python -m MODULE` or `python SCRIPT` runs it; killing
the client kills the command. Where the server cannot fork safely (a thread was started while it
imported: fork keeps only the forking thread, and a lock another one held stays locked), or cannot be
reached, the client execs the plain command instead: a fresh process, as before.

Not for what a fork cannot give a fresh interpreter: tests of the command's own start-up (what it
imports, Ctrl-C while it imports), a process group or session of its own (the forked command is in the
server's), limits set in preexec_fn, a terminal (its stdio objects were made on pipes: buffered as on a
pipe), the interpreter's own report of a failed flush at exit (emulated as status 120, without its
"Exception ignored" line), a script that wants its own copy of a preloaded module, and what the interpreter
or a preloaded library reads from the environment once, as it starts or is imported: the server's values
(its environment as the tests were collected, OMP_NUM_THREADS=1: the OpenMP thread count is fixed at 1),
not the command's (PYTHONHASHSEED and other PYTHON* variables, OMP_*/MKL_*, TORCH*/TORCHDYNAMO_* settings).
Every warm command of one worker has the server's hash seed and numpy's global random state. The server
never runs a torch op (no OpenMP pool exists to be lost in a child), and it exits with the pytest worker
that started it.
"""

from __future__ import annotations

import array
import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile

HERE = os.path.abspath(__file__)
# What every training command imports; importing them is the start-up this module saves.
PRELOADED = ("torch", "torch._dynamo", "lightning.pytorch", "modrwkv.training", "modrwkv.quickstart.run")
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)

# How long a client waits for its server's first answer (its imports take ~5-8 s on 2 busy cores); the
# variable is for the test of that wait
SERVER_ANSWER_SECONDS = float(os.environ.get("MODRWKV_WARM_ANSWER_SECONDS", "120"))

_server: tuple[subprocess.Popen | None, str] | None = None
# The server's environment, which what it imports may read once (library settings, OMP_NUM_THREADS): as at
# collection, so that it does not depend on which test starts the first warm command and what it patched.
_ENVIRONMENT = dict(os.environ)


def command(args: list[str]) -> list[str]:
    """The command line that runs `python ARGS` warm (see the module's docstring), for a launcher that starts
    it itself (torchrun --no-python). `args`: `["-m", MODULE, ...]` or `[SCRIPT, ...]`."""
    if str(args[0]).startswith("-") and args[0] != "-m":
        raise ValueError(f"warm_start runs `-m MODULE` or a script, not {args[0]}")
    return [sys.executable, HERE, "run", _server_socket(), *map(str, args)]


def popen(args: list[str], **kwargs) -> subprocess.Popen:
    """`subprocess.Popen([sys.executable, *args], **kwargs)`, started warm."""
    return subprocess.Popen(command(args), **kwargs)


def run(args: list[str], *, input: str | bytes | None = None, timeout: float | None = None,
        **kwargs) -> subprocess.CompletedProcess:
    """`subprocess.run([sys.executable, *args], capture_output=True, input=input, timeout=timeout, **kwargs)`,
    started warm."""
    with popen(args, stdin=subprocess.PIPE if input is not None else None, stdout=subprocess.PIPE,
               stderr=subprocess.PIPE, **kwargs) as proc:
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except BaseException:
            proc.kill()
            raise
    return subprocess.CompletedProcess([sys.executable, *args], proc.returncode, out, err)


def _server_socket() -> str:
    """This process's warm server's socket, started on first use. The socket listens at once (the
    server accepts once its imports are done), so starting a command never waits for the server."""
    global _server
    if _server is None:
        path = os.path.join(tempfile.mkdtemp(prefix="modrwkv-warm-"), "socket")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(path)
        except OSError:  # a TMPDIR too long for a socket's path (107 bytes): no server; each client execs
            listener.close()
            os.rmdir(os.path.dirname(path))
            _server = None, path
            return path
        listener.listen(64)
        env = {**_ENVIRONMENT, "OMP_NUM_THREADS": "1"}  # as the tests' commands run
        # Pipes (read by no one: the server writes nothing) for its stdio, so that Python makes the stdio objects
        # that each command takes over (with the file descriptors under them) as it makes a command's on pipes.
        server = subprocess.Popen([sys.executable, HERE, "serve", str(listener.fileno())], pass_fds=[listener.fileno()],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        listener.close()
        _server = server, path
        atexit.register(_stop_server)
    return _server[1]


def _stop_server() -> None:
    server, path = _server
    if server is None:
        return
    server.kill()
    server.wait()
    os.unlink(path)
    os.rmdir(os.path.dirname(path))


# --- the server (`warm_start.py serve FD`) -----------------------------------------------------------


def _serve(listener_fd: int) -> None:
    import importlib

    listener = socket.socket(fileno=listener_fd)
    parent = os.getppid()
    for name in PRELOADED:
        importlib.import_module(name)
    # Native threads too (an OpenMP pool, a library's worker): a forked child would have lost them.
    forkable = len(os.listdir("/proc/self/task")) == 1
    listener.settimeout(1.0)
    path = listener.getsockname()
    while os.getppid() == parent:  # ends with the pytest worker that started it
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        finally:
            while True:  # reap the supervisors that have ended
                try:
                    if os.waitpid(-1, os.WNOHANG)[0] == 0:
                        break
                except ChildProcessError:
                    break
        if os.fork() == 0:
            listener.close()
            conn.settimeout(None)
            _supervise(conn, forkable)
        conn.close()
    try:  # the worker died without its exit handlers (killed, crashed), which remove the socket otherwise
        os.unlink(path)
        os.rmdir(os.path.dirname(path))
    except OSError:
        pass


def _send(conn: socket.socket, message: dict) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


def _supervise(conn: socket.socket, forkable: bool) -> None:
    """One command: receives the client's stdio and request, forks the command, tells the client its
    pid and, once it ends, its wait status; kills it if the client dies first."""
    try:
        _send(conn, {"accepted": True})  # only now does the client hand over its stdio (see _client)
        fds = array.array("i")
        data, ancillary, _, _ = conn.recvmsg(1 << 16, socket.CMSG_SPACE(3 * fds.itemsize))
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        while not data.endswith(b"\n"):
            more = conn.recv(1 << 16)
            if not more:
                os._exit(1)
            data += more
        request = json.loads(data)
        if not forkable or len(fds) != 3:
            _send(conn, {"refused": "not forkable" if forkable else "no stdio"})
            os._exit(0)
        pid = os.fork()
        if pid == 0:
            conn.close()
            _run_command(request, list(fds))
        for fd in fds:
            os.close(fd)
        try:
            _send(conn, {"pid": pid})
        except OSError:  # the client died while the server was still importing: its command goes with it
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return
        pidfd = os.pidfd_open(pid)
        import select

        while True:
            ready, _, _ = select.select([conn, pidfd], [], [])
            if pidfd in ready:
                _send(conn, {"status": os.waitpid(pid, 0)[1]})
                break
            if not conn.recv(1):  # the client died (SIGKILL): its command goes with it
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
    finally:
        os._exit(0)


def _run_command(request: dict, fds: list[int]) -> None:
    """In the forked child: becomes `python ARGS` in the client's directory, environment and stdio, and
    ends as the interpreter would (SystemExit's status, 1 and sys.excepthook's report for an exception,
    killed by SIGINT for an uncaught KeyboardInterrupt; non-daemon threads joined, then exit handlers run
    and stdio flushed)."""
    import runpy
    import threading

    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    # Lightning sets its rank-zero guard from RANK, LOCAL_RANK, ... as it is imported: here that was in the
    # server, with none set, which would make every rank of a multi-process run rank zero until its strategy
    # is set up. Set it from the command's own environment, as its own import would.
    rank_zero = sys.modules.get("lightning.fabric.utilities.rank_zero")
    if rank_zero is not None:
        rank_zero.rank_zero_only.rank = rank_zero._get_rank() or 0
    args = request["args"]
    status = 0
    try:
        try:
            if args[0] == "-m":
                # Not imported before it runs as __main__, as in a fresh interpreter (runpy warns on stderr if it was).
                # A package runs its __main__ submodule; the package itself is imported first there too, and a
                # second copy of it (popped here) would lack the attributes its preloaded submodules set on it.
                name = args[1] + ".__main__" if hasattr(sys.modules.get(args[1]), "__path__") else args[1]
                sys.modules.pop(name, None)
                sys.argv = ["-m", *args[2:]]
                sys.path[0] = request["cwd"]
                runpy.run_module(args[1], run_name="__main__", alter_sys=True)
            else:
                sys.argv = list(args)
                sys.path[0] = os.path.dirname(os.path.abspath(args[0]))
                runpy.run_path(args[0], run_name="__main__")
        except SystemExit as exc:
            if exc.code is None:
                status = 0
            elif isinstance(exc.code, int):
                status = exc.code
            else:
                print(exc.code, file=sys.stderr)
                status = 1
        except KeyboardInterrupt as exc:
            _report_uncaught(exc, runpy.__file__)
            status = -signal.SIGINT
        except BaseException as exc:
            _report_uncaught(exc, runpy.__file__)
            status = 1
        threading._shutdown()  # the interpreter waits for non-daemon threads before it runs the exit handlers
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                status = 120 if status == 0 else status  # as the interpreter: a failed flush at exit is 120
    finally:
        if status < 0:
            signal.signal(-status, signal.SIG_DFL)
            os.kill(os.getpid(), -status)
        os._exit(status & 0xFF)


def _report_uncaught(exc: BaseException, runpy_file: str) -> None:
    """sys.excepthook (the command may have set its own), on the traceback from the command's first frame,
    without this module's and runpy's frames above it."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename in (HERE, runpy_file, "<frozen runpy>"):
        tb = tb.tb_next
    sys.excepthook(type(exc), exc.with_traceback(tb), tb)  # the default hook prints exc.__traceback__


# --- the client (`warm_start.py run SOCKET ARGS...`) -------------------------------------------------


def _client(path: str, args: list[str]) -> None:
    child: list[int] = []
    pending: list[int] = []

    def forward(signum: int, _frame) -> None:
        if not child:
            pending.append(signum)
            return
        try:
            os.kill(child[0], signum)
        except ProcessLookupError:  # it has ended: its status is on its way
            pass

    installed = [signum for signum in FORWARDED if signal.getsignal(signum) is not signal.SIG_IGN]
    for signum in installed:  # an ignored one stays ignored, for the command too (as across exec)
        signal.signal(signum, forward)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # A server whose imports hang would hang every warm command of its worker (a test reading a command's
    # output line by line has no timeout of its own): past this, the command starts fresh instead. The
    # stdio goes to the server only once it has accepted: passed to a connection it never accepts, the
    # pipes would stay open in its queue, and a reader of the fresh command's output would wait for ever.
    conn.settimeout(SERVER_ANSWER_SECONDS)
    try:
        conn.connect(path)
        replies = conn.makefile("rb")
        if not replies.readline():
            raise OSError("the server ended")
        request = json.dumps({"args": args, "env": dict(os.environ), "cwd": os.getcwd()}).encode() + b"\n"
        conn.sendmsg([request[:1]], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [0, 1, 2]))])
        conn.sendall(request[1:])
        reply = json.loads(replies.readline() or b'{"refused": "the server ended"}')
    except OSError:
        reply = {"refused": "no server"}
    if "refused" in reply:  # a fresh interpreter in this process, as without this module
        for signum in installed:
            signal.signal(signum, signal.SIG_DFL)
        if pending:  # what the command would have received as it started
            os.kill(os.getpid(), pending[0])
        os.execv(sys.executable, [sys.executable, *args])
    conn.settimeout(None)  # the command's own run takes what it takes
    child.append(reply["pid"])
    for signum in pending:
        forward(signum, None)
    status = json.loads(replies.readline())["status"]
    if os.WIFSIGNALED(status):
        signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
        os.kill(os.getpid(), os.WTERMSIG(status))
    os._exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        _serve(int(sys.argv[2]))
    else:
        _client(sys.argv[2], sys.argv[3:])
