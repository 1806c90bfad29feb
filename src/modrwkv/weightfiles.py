"""Writing safetensors files that others may read, like every other file the user writes.

safetensors 0.8 writes through a temporary file that it creates with mode 0600 and renames into
place (safetensors/safetensors#782), ignoring the umask: a model folder's weights, unlike the
config.json beside them, would be readable by their owner alone, so another account (a serving
user, a teammate on a shared cluster, a container that runs as non-root) could not load the model.
`save_safetensors` gives the file the mode `open()` gives a new file under the process's umask.

A write that fails (a full disk, a file-size limit) is an OSError naming the file, with its half-
written file deleted: safetensors reports it as "Error while serializing: I/O error: No space left
on device (os error 28)" and torch.save as "unexpected pos 4224 vs 4118", neither naming the file.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from .textfiles import write_bytes_atomically


def save_safetensors(tensors: Mapping[str, torch.Tensor], path: str | Path,
                     metadata: Mapping[str, str] | None = None) -> None:
    """`safetensors.torch.save_file`, then the file's mode as the umask makes it (0644 under 022)."""
    try:
        with writes_named(path):
            save_file(dict(tensors), str(path), metadata=None if metadata is None else dict(metadata))
    except OSError:
        Path(path).unlink(missing_ok=True)
        raise
    os.chmod(path, 0o666 & ~_umask())


@contextlib.contextmanager
def writes_named(path: str | Path) -> Iterator[None]:
    """A write inside the block that fails (a full disk, a file-size limit) raised as an OSError naming
    `path`, for writers whose errors name nothing: safetensors ("... (os error 28)"), and a Python file's
    `write` ("[Errno 28] No space left on device"), as transformers' `save_pretrained` and the gguf
    package's writer use. An error that names its file already is raised as it is."""
    try:
        yield
    except SafetensorError as exc:
        code = re.search(r"\(os error (\d+)\)", str(exc))
        if code is None:
            raise
        raise OSError(int(code[1]), os.strerror(int(code[1])), str(path)) from exc
    except OSError as exc:
        if exc.filename is not None or exc.errno is None:
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


def save_torch(obj: Any, path: str | Path) -> None:
    """`torch.save(obj, path)`, written atomically (`write_bytes_atomically`); serialised in memory
    first so that a failed write is the OSError of writing the file (naming it), not torch's
    "unexpected pos"."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes_atomically(Path(path), buffer.getbuffer())


def _umask() -> int:
    """The process's umask: read from /proc on Linux; elsewhere only setting it returns it, so it is set
    to a common restrictive value and put back at once (a file another thread creates in that instant
    is never more open than 0644)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
