"""Adapters that let the popular evaluation harnesses drive a modrwkv model; neither harness is
needed to import them: `vlmevalkit.ModRWKVVLM` (VLMEvalKit) and `lmms_eval.ModRWKVLmmsCore`
(lmms-eval, registered through the `lmms_eval.models` entry point in pyproject.toml)."""

from __future__ import annotations

from typing import Any


def load_pipeline(model_path: str, *, device: str, dtype: str, encoder: str | None, encoder_source: str | None,
                  template: str | None) -> Any:
    """A harness's model arguments (all strings, as the harnesses pass them) -> `ModRWKVPipeline`,
    loaded as `modrwkv chat --model` loads it."""
    from ...inference import ModRWKVPipeline
    from ...lm import DTYPES

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    return ModRWKVPipeline.from_pretrained(model_path, encoder=encoder, encoder_source=encoder_source,
                                           template=template, device=device, dtype=dtype)
