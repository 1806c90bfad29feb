"""Optional parts of modrwkv and the pip extras that install them.

`pip install modrwkv` is the library and the command line for inference (generate, chat, export);
training, serving, evaluation and audio resampling need more packages, installed with
``pip install 'modrwkv[train]'`` (or ``[serve]``, ``[eval]``, ``[audio]``, ``[video]``, ``[gpu]``, ``[all]``).
`require` imports such a package or fails with the command to run.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingExtraError", "require"]


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the pip command that adds it."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Imports `module`, or raises MissingExtraError: "`purpose` needs `module`: pip install 'modrwkv[extra]'"."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        raise MissingExtraError(
            f"{purpose} needs the {top!r} package, which is not installed: pip install 'modrwkv[{extra}]'"
        ) from exc
