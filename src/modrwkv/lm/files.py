"""Opening the files a checkpoint is made of: safetensors, PyTorch `.pth` and JSON configs.

Every checkpoint reader (LM, fla folders, ModRWKV folders, released files, saved states) opens its
files here, so that each failure names the file and what is wrong with it (never a bare library
error, never an object address), and so that weights holding NaN or infinity are refused when they
are read rather than turning every later output into NaN.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from .errors import CheckpointError

log = logging.getLogger(__name__)

# The "format" field of the config.json that ModRWKV.save_pretrained writes.
MODRWKV_FORMAT = "modrwkv"


def read_safetensors(path: str | Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file; raises CheckpointError naming the file when it is missing,
    a folder, unreadable, or holds non-finite values."""
    path = Path(path)
    _check_is_file(path)
    try:
        tensors = load_file(str(path), device=device)
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: cannot read as safetensors ({exc})") from None
    check_finite(tensors, path)
    return tensors


def safetensors_keys(path: str | Path) -> set[str]:
    """The tensor names of a safetensors file, read from its header only."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return set(handle.keys())
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: cannot read as safetensors ({exc})") from None


def read_torch(path: str | Path) -> dict[str, torch.Tensor]:
    """A flat dict of tensors from a PyTorch checkpoint (weights only, never arbitrary pickles).

    Zip-format files (torch >= 1.6) are memory-mapped, so a large checkpoint is not read twice;
    the legacy format cannot be mapped and is read normally.
    """
    path = Path(path)
    _check_is_file(path)
    is_zip = zipfile.is_zipfile(path)
    if not is_zip:
        with open(path, "rb") as handle:
            head = handle.read(16)
        if head.startswith(b"PK\x03\x04"):
            raise CheckpointError(f"{path}: cannot read as a PyTorch checkpoint: a damaged or truncated zip "
                                  f"archive (no table of contents; {path.stat().st_size} bytes). Was the download or "
                                  "copy cut short?")
        if not head.startswith(_PICKLE_PROTOCOL_MARK):
            raise CheckpointError(f"{path}: cannot read as a PyTorch checkpoint: neither a zip archive nor a "
                                  f"pickle (it starts with {head!r})")
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True, mmap=is_zip)
    except Exception as exc:  # pickle, zip and torch errors come in many types
        raise CheckpointError(f"{path}: cannot read as a PyTorch checkpoint ({_torch_load_problem(exc)})") from None
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise CheckpointError(f"{path}: expected a flat dict of tensors (an RWKV-7 state dict), got "
                              f"{type(loaded).__name__}")
    tensors = dict(loaded)
    check_finite(tensors, path)
    return tensors


_PICKLE_PROTOCOL_MARK = b"\x80"  # the PROTO opcode that starts every pickle of protocol 2 or later (torch's)


def _torch_load_problem(exc: Exception) -> str:
    """torch.load's error in a line: its weights-only refusal is a page of advice for developers,
    of which the user needs the object it refused."""
    message = str(exc)
    if "Weights only load failed" in message:
        refused = message.partition("WeightsUnpickler error:")[2].strip().split(". ")[0]
        return (f"it holds Python objects besides tensors ({refused or 'not allowed'}), which are not loaded "
                "because unpickling them can run code; save a plain dict of tensors instead")
    return message.splitlines()[0] if message else type(exc).__name__


def check_finite(tensors: Mapping[str, torch.Tensor], where: str | Path) -> None:
    """Raises CheckpointError naming every floating-point tensor that holds NaN or infinity."""
    bad = sorted(k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all()))
    if bad:
        shown = bad[:10] + ([f"... {len(bad) - 10} more"] if len(bad) > 10 else [])
        raise CheckpointError(f"{where}: tensor(s) holding NaN or infinity: {shown}; the file is damaged "
                              "(or was saved after training diverged)")


def read_json_object(path: str | Path) -> dict[str, Any]:
    """A JSON file that must hold an object (a config); raises CheckpointError naming the file and,
    for a syntax error, the line and column."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckpointError(f"{path.parent} has no {path.name}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise CheckpointError(f"{path}: JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got a JSON {_json_kind(data)}")
    return data


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return "boolean" if isinstance(value, bool) else "number"


def _check_is_file(path: Path) -> None:
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a file")
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")


def check_output_file(path: str | Path) -> Path:
    """`path` as a file about to be written: raises an OSError naming the problem (the path is a
    folder, its folder is missing or not writable) before any work is done, rather than a writer's
    error about a temporary name after it."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name (e.g. {path / 'out'}{path.suffix})")
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {path}: " + (f"{folder} is a file" if folder.exists()
                                                            else f"no folder {folder}"))
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"cannot write {path}: the folder {folder} is not writable")
    return path


def check_output_folder(path: str | Path) -> Path:
    """`path` as a folder about to be written (it may not exist yet): raises an OSError naming the
    problem when it, or a folder above it, is a file."""
    path = Path(path)
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                what = "is a file" if folder == path else f"is inside {folder}, which is a file"
                raise NotADirectoryError(f"cannot write the folder {path}: it {what}")
            if not os.access(folder, os.W_OK):
                raise PermissionError(f"cannot write the folder {path}: {folder} is not writable")
            break
    return path
