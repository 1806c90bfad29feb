r"""The authors' (WorldRWKV) released single-file ModRWKV checkpoints: which layout a file has, and
how its tensors map onto our LM, adapter and encoder.

Two eras, told apart by their keys (docs/authors-checkpoints.md has the details):

- current (`infer/worldmodel.py`): the LM as `llm.*`, the vision adapter as
  `proj.{pre_norm, mlp.0, mlp.2[, conv]}`; prompt: the `worldrwkv` template, each image as
  `<|vision_start|>` + `<|image_pad|>` x N + `<|vision_end|>` at the start of its turn.
- paper (commit f15e179): bare LM keys (`emb.weight`, `blocks.*`), the adapter as
  `modality.world_encoder.adapter.{pre_norm, proj.0, proj.2}`; prompt: the `rwkv` template with all
  media before the text.

Speech adapters are named `conv, proj.0, proj.2` in both eras (under `proj.`, `encoder.adapter.`
or `modality.world_encoder.adapter.`); the authors only ever fed speech as a prefix followed by
`\x16Assistant:`, so speech releases get the paper's prompt whatever their era. A trained encoder
(`encoder.model.*`, `modality.world_encoder.model.*`) is loaded into the given encoder.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from collections.abc import Mapping
from typing import Literal

import torch

from ..adapters import AdapterConfig
from ..lm.errors import CheckpointError, check_keys
from ..processing import get_template

Era = Literal["current", "paper"]
PromptFormat = Literal["auto", "current", "paper"]
PROMPT_FORMATS = ("auto", "current", "paper")


_ADAPTER_PREFIXES = ("proj.", "encoder.adapter.", "modality.world_encoder.adapter.")
_ENCODER_PREFIXES = ("encoder.model.", "modality.world_encoder.model.")
_LM_ANCHOR = "emb.weight"


@dataclasses.dataclass
class ReleasedCheckpoint:
    """A released file split into its parts (tensors in the official / our adapter naming)."""

    era: Era
    lm: dict[str, torch.Tensor]
    adapter_config: AdapterConfig
    adapter: dict[str, torch.Tensor]  # our adapter's parameter names
    encoder: dict[str, torch.Tensor]  # the authors' encoder module's names; empty if not released

    @property
    def prompt(self) -> PromptSettings:
        """The template, splicing and tokenizer entries this release was trained with."""
        return prompt_settings("paper" if self.adapter_config.kind == "speech" else self.era)


@dataclasses.dataclass(frozen=True)
class PromptSettings:
    template: str
    splice: str
    special_tokens: dict[str, int]


def prompt_settings(era: Era) -> PromptSettings:
    if era == "current":
        # the entries the current release adds to the World vocabulary (its wr_vocab_v20230424)
        return PromptSettings("worldrwkv", "turn_start", dict(get_template("worldrwkv").special_tokens))
    return PromptSettings("rwkv", "prefix", {})


def key_families(keys: list[str]) -> str:
    """'llm.blocks.N.* (96), proj.mlp.N.* (4)': what a file holds, for error messages."""
    counts: collections.Counter[str] = collections.Counter()
    for key in keys:
        parts = [("N" if p.isdigit() else p) for p in key.split(".")]
        counts[".".join(parts[: min(3, len(parts) - 1)]) + ".*" if len(parts) > 1 else key] += 1
    return ", ".join(f"{family} ({n})" for family, n in sorted(counts.items()))


def split_released(tensors: Mapping[str, torch.Tensor], where: str, compression_stride: int = 2) -> ReleasedCheckpoint:
    """Recognises the era and modality from the keys; raises CheckpointError listing the key
    families found when the file is neither era's layout."""
    keys = sorted(tensors)
    if any(k.startswith("llm.") for k in keys):
        era: Era = "current"
        lm = {k[len("llm."):]: v for k, v in tensors.items() if k.startswith("llm.")}
    else:
        era = "paper"
        lm = {k: v for k, v in tensors.items() if not k.startswith((*_ADAPTER_PREFIXES, *_ENCODER_PREFIXES))}
    adapter_prefix = next((p for p in _ADAPTER_PREFIXES if any(k.startswith(p) for k in keys)), None)
    raw = {k[len(adapter_prefix):]: v for k, v in tensors.items() if adapter_prefix and k.startswith(adapter_prefix)}
    claimed = {k for k in keys if k.startswith("llm.") or (adapter_prefix and k.startswith(adapter_prefix))
               or k.startswith(_ENCODER_PREFIXES)}
    if era == "paper":
        claimed |= set(lm)
    others = [k for k in keys if k not in claimed]
    if _LM_ANCHOR not in lm or not raw or others:
        raise CheckpointError(
            f"{where}: not a released ModRWKV layout. Expected the LM as llm.* (current release) or bare "
            "official keys (paper era), and the adapter as proj.*, encoder.adapter.* or "
            f"modality.world_encoder.adapter.*; found {key_families(keys)}"
        )
    encoder = {}
    for prefix in _ENCODER_PREFIXES:
        encoder.update({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    config, adapter = _adapter(raw, int(lm[_LM_ANCHOR].shape[1]), compression_stride, f"{where} ({adapter_prefix}*)")
    return ReleasedCheckpoint(era, lm, config, adapter, encoder)


def _adapter(
    raw: dict[str, torch.Tensor], n_embd: int, stride: int, where: str
) -> tuple[AdapterConfig, dict[str, torch.Tensor]]:
    """Our adapter's config and tensors from the authors' names: VisualAdapter `pre_norm` + `mlp.N`
    (current) or `proj.N` (paper), optional `conv`; SpeechAdapter `conv` + `proj.N`."""
    renamed = {re.sub(r"^proj\.(\d)", r"mlp.\1", k): v for k, v in raw.items()}
    for needed in ("mlp.0.weight", "mlp.2.weight"):
        if needed not in renamed:
            raise CheckpointError(f"{where}: no {needed} (or proj.N) among the adapter keys {sorted(raw)}")
    hidden, in_dim = renamed["mlp.0.weight"].shape
    out_dim = int(renamed["mlp.2.weight"].shape[0])
    if out_dim != n_embd:
        raise CheckpointError(f"{where}: the adapter outputs {out_dim} features but the LM width is {n_embd}")
    if "pre_norm.weight" in renamed:  # VisualAdapter: y = mlp(x); y + pre_norm(y)
        conv = renamed.get("conv.weight")
        compression = (int(conv.shape[-1]), stride) if conv is not None else None
        in_features = int(conv.shape[1]) if conv is not None else int(in_dim)
        if hidden % out_dim:
            raise CheckpointError(f"{where}: MLP hidden width {hidden} is not a multiple of the LM width {out_dim}")
        config = AdapterConfig("mlp", in_features, out_dim, int(hidden) // out_dim, compression)
        return config, renamed
    if "conv.weight" not in renamed:
        raise CheckpointError(
            f"{where}: neither a vision adapter (pre_norm) nor a speech adapter (conv): {sorted(raw)}")
    return AdapterConfig("speech", int(renamed["conv.weight"].shape[1]), out_dim), renamed


def load_encoder_weights(encoder: torch.nn.Module, weights: Mapping[str, torch.Tensor], where: str) -> None:
    """Loads a released trained encoder into `encoder.model`, every key checked. The authors saved
    the HF module they ran (SigLIP: the `vision_model` transformer, which our SiglipVisionModel
    holds under `vision_model.`); its pooling head, which neither side runs, is skipped."""
    model = getattr(encoder, "model", None)
    if model is None:
        raise CheckpointError(
            f"{where}: the file holds encoder weights but the {type(encoder).__name__} has no HF model")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    prefix = max(("", "vision_model."), key=lambda p: sum(p + k in expected for k in weights))
    candidate = {prefix + k: v for k, v in weights.items()}
    unused_head = [k for k in candidate if k not in expected and k.removeprefix(prefix).startswith("head.")]
    check_keys(candidate, expected, f"{where}: released encoder weights do not fit the {encoder.name} encoder",
               ignore=unused_head)
    model.load_state_dict({k: v for k, v in candidate.items() if k in expected})
    if hasattr(encoder, "source"):
        encoder.source = None  # its weights are now the release's: save_pretrained must write them


def is_released(keys: list[str] | set[str]) -> bool:
    """Whether a state dict's keys hold a released ModRWKV adapter (either era)."""
    return any(k.startswith(_ADAPTER_PREFIXES) for k in keys)
