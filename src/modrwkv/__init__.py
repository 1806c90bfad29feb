"""modrwkv: ModRWKV multimodal language models on the RWKV-7 linear-time RNN.

The names below are imported on first use (PEP 562), so that `import modrwkv` (and the `modrwkv`
command, which imports it) does not load torch until something needs it.
"""

from __future__ import annotations

# Nothing is imported here, not even `typing` (a few milliseconds): the `modrwkv` command imports this
# package before its entry point (modrwkv.__main__) can hold Ctrl-C, and the sooner it can, the better.
TYPE_CHECKING = False  # as type checkers read it: true for them, false at run time

__version__ = "0.1.0"

# name -> the module that defines it
_EXPORTS = {
    "RWKV7": ".lm",
    "RWKV7Config": ".lm",
    "RWKV7State": ".lm",
    "load_model": ".lm",
    "save_model": ".lm",
    "set_max_image_pixels": ".encoders.media",
}

__all__ = ["RWKV7", "RWKV7Config", "RWKV7State", "load_model", "save_model", "set_max_image_pixels", "__version__"]

if TYPE_CHECKING:  # what type checkers and editors see
    from typing import Any

    from .encoders.media import set_max_image_pixels
    from .lm import RWKV7, RWKV7Config, RWKV7State, load_model, save_model


def __getattr__(name: str) -> Any:
    import importlib

    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
