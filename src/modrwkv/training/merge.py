"""`modrwkv merge-lora`: a LoRA run's output -> one plain `from_pretrained` folder."""

from __future__ import annotations

import logging
from pathlib import Path

from ..multimodal import ModRWKV
from .checkpoint import FINAL, export_model
from .lora import LORA_CONFIG, load_lora, merge_lora

log = logging.getLogger(__name__)


def merge_lora_folder(source: str | Path, destination: str | Path) -> Path:
    """`source`: a folder with lora.json (a LoRA checkpoint or `final/`), or a run folder whose
    `final/` is one. Writes the merged model to `destination` and returns it."""
    source = Path(source)
    if not (source / LORA_CONFIG).exists() and (source / FINAL / LORA_CONFIG).exists():
        source = source / FINAL
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such folder")
    if not (source / LORA_CONFIG).exists():
        raise FileNotFoundError(f"{source}: no {LORA_CONFIG}; not the output of a LoRA run")
    destination = Path(destination)
    if destination.resolve() == source.resolve():
        raise ValueError("merge-lora writes a new folder; choose a destination other than the source")
    model = ModRWKV.from_pretrained(source)
    load_lora(model.lm, source)
    merged = merge_lora(model.lm)
    export_model(model, destination, lora=None)
    log.info("merged %d LoRA layers from %s into %s", merged, source, destination)
    return destination
