"""Serving: an OpenAI-compatible HTTP server (FastAPI + uvicorn) with continuous batching,
request limits and a web chat page. Start it with `modrwkv serve --model DIR`, or build the app
with `create_app(pipeline)` and run it under any ASGI server.

Names are imported on first use, so that `modrwkv.serving.limits` (which the CLI reads for its
defaults) does not pull in FastAPI.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..extras import require

_EXPORTS = {
    "create_app": ".app",
    "APIError": ".limits",
    "ServerLimits": ".limits",
    "QueueFull": ".scheduler",
    "Scheduler": ".scheduler",
    "Ticket": ".scheduler",
}
__all__ = ["APIError", "QueueFull", "Scheduler", "ServerLimits", "Ticket", "create_app"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _EXPORTS[name] != ".limits":
        require("fastapi", "serve", "the server")
        require("anyio", "serve", "the server")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
