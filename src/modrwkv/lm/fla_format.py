"""Conversion between the official BlinkDL RWKV-7 layout and flash-linear-attention's HF format.

flash-linear-attention (``fla``) publishes RWKV-7 models as Hugging Face folders (the
``fla-hub/rwkv7-*`` repositories): a ``config.json`` with ``model_type: "rwkv7"`` and
``architectures: ["RWKV7ForCausalLM"]`` plus one or more ``*.safetensors`` files. This module
renames and reshapes tensors between that layout and the official layout that modrwkv uses,
without importing ``fla`` (which needs a GPU) or ``transformers``.

The mapping follows fla's ``fla/layers/rwkv7.py`` (``RWKV7Attention``),
``fla/models/rwkv7/modeling_rwkv7.py`` (``RWKV7Block``, ``RWKV7FeedForward``, ``RWKV7Model``,
``RWKV7ForCausalLM``), ``fla/models/rwkv7/configuration_rwkv7.py`` and fla's own converter
``utils/convert_from_rwkv7.py`` (fla-org/flash-linear-attention, layer file at commit
0315a70ea55304398ad372e56cdd211ce0119571). ``C`` is the width, ``H`` the number of heads, ``N``
the head size, ``L`` a layer index, ``D*`` the LoRA widths, ``F`` the FFN width:

=================================  ======================================  ====================
official                           fla                                     transform
=================================  ======================================  ====================
emb.weight [V,C]                   model.embeddings.weight [V,C]           none
head.weight [V,C]                  lm_head.weight [V,C]                    none
ln_out.{weight,bias} [C]           model.norm.{weight,bias}                none
blocks.0.ln0.{weight,bias}         model.layers.0.pre_norm.{weight,bias}   none
blocks.L.ln1.{weight,bias}         model.layers.L.attn_norm.*              none
blocks.L.ln2.{weight,bias}         model.layers.L.ffn_norm.*               none
blocks.L.att.x_{r,w,k,v,a,g}       model.layers.L.attn.x_* [1,1,C]         none
blocks.L.att.k_k, k_a [1,1,C]      model.layers.L.attn.k_k, k_a [C]        flatten
blocks.L.att.r_k [H,N]             model.layers.L.attn.r_k [H,N]           none
blocks.L.att.receptance.weight     model.layers.L.attn.r_proj.weight       none
blocks.L.att.key.weight            model.layers.L.attn.k_proj.weight       none
blocks.L.att.value.weight          model.layers.L.attn.v_proj.weight       none
blocks.L.att.output.weight         model.layers.L.attn.o_proj.weight       none
blocks.L.att.ln_x.{weight,bias}    model.layers.L.attn.g_norm.*            none
blocks.L.att.{w,a,v}0 [1,1,C]      attn.{w,a,v}_lora.lora.2.bias [C]       flatten
blocks.L.att.{w,a,v,g}1 [C,D]      attn.{w,a,v,g}_lora.lora.0.weight [D,C] transpose
blocks.L.att.{w,a,v,g}2 [D,C]      attn.{w,a,v,g}_lora.lora.2.weight [C,D] transpose
blocks.L.ffn.x_k [1,1,C]           model.layers.L.ffn.x_k [C]              flatten
blocks.L.ffn.key.weight [F,C]      model.layers.L.ffn.key.weight           none
blocks.L.ffn.value.weight [C,F]    model.layers.L.ffn.value.weight         none
=================================  ======================================  ====================

Semantics (why renaming alone is exact): fla's ``LoRA`` is ``Linear(C,D,bias=False) -> act ->
Linear(D,C,bias)``, so ``lora.0.weight = w1.T``, ``lora.2.weight = w2.T`` and the bias holds
``w0``/``a0``/``v0`` unchanged. The activations sit where the official code has them: tanh for
the decay, none for ``a`` and ``v`` (sigmoid applied afterwards by the layer) and sigmoid between
the two matrices for the gate, which has no bias (``g = sigmoid(x@g1)@g2``). fla's log-decay is
``-exp(-0.5) * sigmoid(w0 + tanh(x@w1)@w2)``, which equals the official ``-exp(w)`` with
``w = -softplus(-(w0 + ...)) - 0.5``, so ``w0`` is stored as is. fla's ``g_norm`` is a
GroupNorm(H) with ``eps = head_dim * norm_eps`` (64e-5 for the defaults), the official ``ln_x``.

Differences worth knowing:

* fla builds no ``v_lora`` in layer 0 (the official checkpoints carry an unused
  ``blocks.0.att.v0/v1/v2``); :func:`official_to_fla` drops them and :func:`fla_to_official`
  does not produce them.
* The first fla versions stored the six token-shift mixes stacked as ``attn.x_x`` [6, C] in the
  order r, w, k, v, a, g; :func:`fla_to_official` still reads that layout.
* A config with ``tie_word_embeddings`` may omit ``lm_head.weight``; the head then copies the
  embeddings. A config with ``norm_bias: false`` has no LayerNorm biases; zeros are used.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from .config import LAYER0_UNUSED_KEYS
from .errors import CheckpointError, check_keys
from .files import check_output_folder, read_json_object, read_safetensors, safetensors_keys
from ..textfiles import write_text_atomically
from ..weightfiles import save_safetensors

logger = logging.getLogger(__name__)

__all__ = [
    "CheckpointError",
    "FLA_ARCHITECTURE",
    "FLA_MODEL_TYPE",
    "fla_to_official",
    "is_fla_folder",
    "load_fla_folder",
    "official_to_fla",
    "save_fla_folder",
]

FLA_MODEL_TYPE = "rwkv7"
FLA_ARCHITECTURE = "RWKV7ForCausalLM"
# An early fla configuration class registered itself as "rwkv7_fla"; accepted when reading.
_ACCEPTED_MODEL_TYPES = frozenset({"rwkv7", "rwkv7_fla"})
_ACCEPTED_ARCHITECTURES = frozenset({"RWKV7ForCausalLM", "RWKV7Model"})

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"

# Order of the six token-shift mixes in the legacy stacked `attn.x_x` [6, C] parameter.
_MIX_ORDER = ("r", "w", "k", "v", "a", "g")
_PROJECTIONS = (("receptance", "r_proj"), ("key", "k_proj"), ("value", "v_proj"),
                ("output", "o_proj"))
_LAYER_NORMS = (("ln1", "attn_norm"), ("ln2", "ffn_norm"))
_LORA_MODULES = {"w": "w_lora", "a": "a_lora", "v": "v_lora", "g": "g_lora"}

# Transformations applied when going official -> fla; each is exactly invertible.
_SAME = "same"
_FLATTEN = "flatten"  # [1, 1, C] -> [C]
_TRANSPOSE = "transpose"  # [A, B] -> [B, A]


@dataclasses.dataclass(frozen=True)
class _Dims:
    n_layer: int
    n_embd: int
    head_size: int
    vocab_size: int
    dim_ffn: int
    dim_w: int
    dim_a: int
    dim_v: int
    dim_g: int

    @property
    def n_head(self) -> int:
        return self.n_embd // self.head_size


@dataclasses.dataclass(frozen=True)
class _Entry:
    official: str
    fla: str
    official_shape: tuple[int, ...]
    transform: str

    @property
    def fla_shape(self) -> tuple[int, ...]:
        if self.transform == _FLATTEN:
            return (math.prod(self.official_shape),)
        if self.transform == _TRANSPOSE:
            return tuple(reversed(self.official_shape))
        return self.official_shape


def _layout(dims: _Dims) -> list[_Entry]:
    """Every tensor of a model with these sizes, in both layouts (layer-0 v-LoRA excluded)."""
    c, vec = dims.n_embd, (1, 1, dims.n_embd)
    entries = [
        _Entry("emb.weight", "model.embeddings.weight", (dims.vocab_size, c), _SAME),
        _Entry("blocks.0.ln0.weight", "model.layers.0.pre_norm.weight", (c,), _SAME),
        _Entry("blocks.0.ln0.bias", "model.layers.0.pre_norm.bias", (c,), _SAME),
    ]
    lora_dims = {"w": dims.dim_w, "a": dims.dim_a, "v": dims.dim_v, "g": dims.dim_g}
    for i in range(dims.n_layer):
        o, f = f"blocks.{i}", f"model.layers.{i}"
        for ln, fla_ln in _LAYER_NORMS:
            for p in ("weight", "bias"):
                entries.append(_Entry(f"{o}.{ln}.{p}", f"{f}.{fla_ln}.{p}", (c,), _SAME))
        for m in _MIX_ORDER:
            entries.append(_Entry(f"{o}.att.x_{m}", f"{f}.attn.x_{m}", vec, _SAME))
        for p in ("k_k", "k_a"):
            entries.append(_Entry(f"{o}.att.{p}", f"{f}.attn.{p}", vec, _FLATTEN))
        entries.append(_Entry(f"{o}.att.r_k", f"{f}.attn.r_k", (dims.n_head, dims.head_size),
                              _SAME))
        for name, fla_name in _PROJECTIONS:
            entries.append(_Entry(f"{o}.att.{name}.weight", f"{f}.attn.{fla_name}.weight", (c, c),
                                  _SAME))
        for p in ("weight", "bias"):
            entries.append(_Entry(f"{o}.att.ln_x.{p}", f"{f}.attn.g_norm.{p}", (c,), _SAME))
        for kind, module in _LORA_MODULES.items():
            if kind == "v" and i == 0:
                continue  # fla builds no v_lora in layer 0 (v_first is taken there)
            d, lora = lora_dims[kind], f"{f}.attn.{module}.lora"
            if kind != "g":  # the gate LoRA has no bias in either layout
                entries.append(_Entry(f"{o}.att.{kind}0", f"{lora}.2.bias", vec, _FLATTEN))
            entries.append(_Entry(f"{o}.att.{kind}1", f"{lora}.0.weight", (c, d), _TRANSPOSE))
            entries.append(_Entry(f"{o}.att.{kind}2", f"{lora}.2.weight", (d, c), _TRANSPOSE))
        entries.append(_Entry(f"{o}.ffn.x_k", f"{f}.ffn.x_k", vec, _FLATTEN))
        entries.append(_Entry(f"{o}.ffn.key.weight", f"{f}.ffn.key.weight", (dims.dim_ffn, c),
                              _SAME))
        entries.append(_Entry(f"{o}.ffn.value.weight", f"{f}.ffn.value.weight",
                              (c, dims.dim_ffn), _SAME))
    entries += [
        _Entry("ln_out.weight", "model.norm.weight", (c,), _SAME),
        _Entry("ln_out.bias", "model.norm.bias", (c,), _SAME),
        _Entry("head.weight", "lm_head.weight", (dims.vocab_size, c), _SAME),
    ]
    return entries


def _to_fla_tensor(t: torch.Tensor, transform: str) -> torch.Tensor:
    if transform == _FLATTEN:
        return t.reshape(-1)
    if transform == _TRANSPOSE:
        return t.t().contiguous()
    return t


def _to_official_tensor(t: torch.Tensor, entry: _Entry) -> torch.Tensor:
    if entry.transform == _FLATTEN:
        return t.reshape(entry.official_shape)
    if entry.transform == _TRANSPOSE:
        return t.t().contiguous()
    return t


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape)


_BLOCK_RE = re.compile(r"blocks\.(\d+)\.")
_LAYER_RE = re.compile(r"model\.layers\.(\d+)\.")


def _layer_count(keys: Iterable[str], pattern: re.Pattern[str]) -> int:
    indices = [int(m.group(1)) for k in keys if (m := pattern.match(k))]
    return max(indices) + 1 if indices else 0


# ---------------------------------------------------------------------------------------------
# official -> fla
# ---------------------------------------------------------------------------------------------


def _official_dims(state_dict: Mapping[str, torch.Tensor]) -> _Dims:
    anchors = ("emb.weight", "blocks.0.att.r_k", "blocks.0.att.w1", "blocks.0.att.a1",
               "blocks.0.att.g1", "blocks.0.ffn.key.weight")
    missing = [k for k in anchors if k not in state_dict]
    bad = [k for k in anchors if k in state_dict
           and not (isinstance(state_dict[k], torch.Tensor) and state_dict[k].dim() == 2)]
    if missing or bad:
        raise CheckpointError(
            "cannot read the model sizes from the official-layout state dict: "
            + "; ".join(p for p in (missing and f"missing key(s): {missing}",
                                    bad and f"key(s) that are not matrices: {bad}") if p)
        )
    n_layer = _layer_count(state_dict, _BLOCK_RE)
    vocab_size, n_embd = _shape(state_dict["emb.weight"])
    n_head, head_size = _shape(state_dict["blocks.0.att.r_k"])
    if n_head * head_size != n_embd:
        raise CheckpointError(
            f"blocks.0.att.r_k has shape {[n_head, head_size]}, which does not split "
            f"emb.weight's width {n_embd} into heads"
        )
    dim_v = 32  # what fla's converter assumes when no layer has a value LoRA
    for i in [*range(1, n_layer), 0]:
        t = state_dict.get(f"blocks.{i}.att.v1")
        if isinstance(t, torch.Tensor) and t.dim() == 2:
            dim_v = int(t.shape[1])
            break
    return _Dims(
        n_layer=n_layer,
        n_embd=n_embd,
        head_size=head_size,
        vocab_size=vocab_size,
        dim_ffn=int(state_dict["blocks.0.ffn.key.weight"].shape[0]),
        dim_w=int(state_dict["blocks.0.att.w1"].shape[1]),
        dim_a=int(state_dict["blocks.0.att.a1"].shape[1]),
        dim_v=dim_v,
        dim_g=int(state_dict["blocks.0.att.g1"].shape[1]),
    )


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _fla_config(dims: _Dims, dtype: torch.dtype) -> dict[str, Any]:
    """A config.json that fla's RWKV7Config accepts, with every size spelled out."""
    ratio = dims.dim_ffn / dims.n_embd
    return {
        "architectures": [FLA_ARCHITECTURE],
        "model_type": FLA_MODEL_TYPE,
        "attn_mode": "chunk",
        "hidden_size": dims.n_embd,
        "hidden_ratio": int(ratio) if ratio.is_integer() else ratio,
        "intermediate_size": dims.dim_ffn,
        "num_hidden_layers": dims.n_layer,
        "head_dim": dims.head_size,
        "num_heads": dims.n_head,
        "decay_low_rank_dim": dims.dim_w,
        "gate_low_rank_dim": dims.dim_g,
        "a_low_rank_dim": dims.dim_a,
        "v_low_rank_dim": dims.dim_v,
        "value_dim": [dims.n_embd] * dims.n_layer,
        "hidden_act": "sqrelu",
        "max_position_embeddings": 2048,
        "norm_first": True,
        "norm_bias": True,
        "norm_eps": 1e-5,
        "attn": None,
        "use_cache": True,
        "pad_token_id": None,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "tie_word_embeddings": False,
        "initializer_range": 0.02,
        "fuse_norm": True,
        "fuse_cross_entropy": True,
        "fuse_linear_cross_entropy": False,
        "use_l2warp": True,
        "vocab_size": dims.vocab_size,
        "torch_dtype": _dtype_name(dtype),
    }


def official_to_fla(
    state_dict: Mapping[str, torch.Tensor],
    *,
    config_overrides: Mapping[str, Any] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Converts an official-layout RWKV-7 state dict to fla's ``RWKV7ForCausalLM`` layout.

    Returns the fla state dict and a ``config.json`` dict whose sizes are read from the tensor
    shapes. ``config_overrides`` replaces config fields that shapes cannot tell (token ids,
    ``max_position_embeddings``, ...); size fields cannot be overridden. Tensor values and dtypes
    are kept exactly; outputs may share storage with the inputs. Layer 0's unused
    ``v0``/``v1``/``v2`` are dropped (fla has no layer-0 value LoRA).

    Raises:
        CheckpointError: naming every key that cannot be mapped, is missing or has a wrong shape.
    """
    dims = _official_dims(state_dict)
    layout = _layout(dims)
    layer0_unused = LAYER0_UNUSED_KEYS
    check_keys(state_dict, {e.official: e.official_shape for e in layout},
               "official RWKV-7 state dict", ignore=layer0_unused)
    dropped = [k for k in layer0_unused if k in state_dict]
    if dropped:
        logger.info("dropping %s: fla's RWKV-7 has no value LoRA in layer 0", dropped)

    out = {e.fla: _to_fla_tensor(state_dict[e.official], e.transform) for e in layout}
    config = _fla_config(dims, state_dict["emb.weight"].dtype)
    if config_overrides:
        sizes = {"hidden_size", "hidden_ratio", "intermediate_size", "num_hidden_layers",
                 "head_dim", "num_heads", "decay_low_rank_dim", "gate_low_rank_dim",
                 "a_low_rank_dim", "v_low_rank_dim", "value_dim", "vocab_size", "model_type",
                 "architectures", "norm_first", "norm_bias", "attn", "hidden_act",
                 "tie_word_embeddings"}
        clash = sorted(set(config_overrides) & sizes)
        if clash:
            raise ValueError(f"config_overrides may not set field(s) fixed by the weights: {clash}")
        config.update(config_overrides)
    return out, config


# ---------------------------------------------------------------------------------------------
# fla -> official
# ---------------------------------------------------------------------------------------------


def _config_dict(config: Any) -> dict[str, Any]:
    if isinstance(config, Mapping):
        return dict(config)
    if hasattr(config, "to_dict"):  # a transformers PretrainedConfig
        return dict(config.to_dict())
    raise TypeError(f"config must be a mapping, got {type(config).__name__}")


def _upgrade_legacy(
    state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any], n_embd: int | None
) -> dict[str, torch.Tensor]:
    """Brings older or compact fla variants to the current fla key set and shapes."""
    sd = dict(state_dict)
    for key in [k for k in sd if k.endswith(".attn.x_x")]:
        fused = sd[key]
        if not isinstance(fused, torch.Tensor) or fused.dim() != 2 or fused.shape[0] != 6:
            continue  # left in place: reported as a key that cannot be mapped
        prefix = key[: -len("x_x")]
        targets = [f"{prefix}x_{m}" for m in _MIX_ORDER]
        if any(t in sd for t in targets):
            continue  # both layouts present: reported as unmappable rather than guessed
        del sd[key]
        for i, target in enumerate(targets):
            sd[target] = fused[i].reshape(1, 1, -1).clone()
        logger.info("split legacy fused %s into %s", key, [t.rsplit(".", 1)[1] for t in targets])
    if n_embd is not None:
        # Some fla revisions and converters stored the mixes as [C] and k_k/k_a as [1, 1, C].
        for key, t in list(sd.items()):
            if not isinstance(t, torch.Tensor) or t.numel() != n_embd:
                continue
            leaf = key.rsplit(".", 1)[-1]
            if ".attn.x_" in key and _shape(t) == (n_embd,):
                sd[key] = t.reshape(1, 1, n_embd)
            elif ((".attn." in key and leaf in ("k_k", "k_a")) or key.endswith(".ffn.x_k")) \
                    and _shape(t) == (1, 1, n_embd):
                sd[key] = t.reshape(n_embd)
    if config.get("tie_word_embeddings") and "lm_head.weight" not in sd \
            and "model.embeddings.weight" in sd:
        logger.info("tie_word_embeddings: using model.embeddings.weight as lm_head.weight")
        sd["lm_head.weight"] = sd["model.embeddings.weight"].clone()
    if config.get("norm_bias") is False and n_embd is not None:
        norms = [k[: -len(".weight")] for k in sd
                 if re.fullmatch(r"model\.(norm|layers\.\d+\.(pre_norm|attn_norm|ffn_norm))"
                                 r"\.weight", k)]
        added = []
        for norm in norms:
            if f"{norm}.bias" not in sd:
                weight = sd[f"{norm}.weight"]
                sd[f"{norm}.bias"] = torch.zeros_like(weight)
                added.append(f"{norm}.bias")
        if added:
            logger.warning("norm_bias is false: using zero LayerNorm biases for %d norms",
                           len(added))
    return sd


def _fla_dims(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> _Dims:
    problems: list[str] = []

    def from_shape(key: str, axis: int, field: str) -> int:
        t = state_dict.get(key)
        if isinstance(t, torch.Tensor) and t.dim() > axis:
            return int(t.shape[axis])
        problems.append(f"config has no {field!r} and {key} is missing or malformed")
        return 0

    def field_or(name: str, key: str, axis: int) -> int:
        value = config.get(name)
        return int(value) if value is not None else from_shape(key, axis, name)

    n_embd = field_or("hidden_size", "model.embeddings.weight", 1)
    vocab_size = field_or("vocab_size", "model.embeddings.weight", 0)
    n_layer = config.get("num_hidden_layers")
    n_layer = int(n_layer) if n_layer is not None else _layer_count(state_dict, _LAYER_RE)
    if config.get("head_dim") is not None:
        head_size = int(config["head_dim"])
    elif config.get("num_heads") is not None and n_embd:
        head_size = n_embd // int(config["num_heads"])
    else:
        head_size = from_shape("model.layers.0.attn.r_k", 1, "head_dim")
    if config.get("intermediate_size") is not None:
        dim_ffn = int(config["intermediate_size"])
    elif config.get("hidden_ratio") is not None and n_embd:
        # fla's RWKV7FeedForward: int(C * ratio) rounded up to a multiple of 32
        dim_ffn = 32 * ((int(n_embd * config["hidden_ratio"]) + 31) // 32)
    else:
        dim_ffn = from_shape("model.layers.0.ffn.key.weight", 0, "intermediate_size")
    v_key = "model.layers.1.attn.v_lora.lora.0.weight"
    dim_v = config.get("v_low_rank_dim")
    if dim_v is None:
        dim_v = from_shape(v_key, 0, "v_low_rank_dim") if n_layer > 1 else 32
    dims = _Dims(
        n_layer=n_layer,
        n_embd=n_embd,
        head_size=head_size,
        vocab_size=vocab_size,
        dim_ffn=dim_ffn,
        dim_w=field_or("decay_low_rank_dim", "model.layers.0.attn.w_lora.lora.0.weight", 0),
        dim_a=field_or("a_low_rank_dim", "model.layers.0.attn.a_lora.lora.0.weight", 0),
        dim_v=int(dim_v),
        dim_g=field_or("gate_low_rank_dim", "model.layers.0.attn.g_lora.lora.0.weight", 0),
    )
    if not problems and (dims.n_layer < 1 or dims.head_size < 1
                         or dims.n_embd % dims.head_size):
        problems.append(f"inconsistent sizes {dims}")
    if problems:
        raise CheckpointError("cannot determine the fla RWKV-7 model sizes: " + "; ".join(problems))
    return dims


def _check_fla_config(config: Mapping[str, Any], n_layer: int, n_embd: int | None) -> None:
    problems = []
    model_type = config.get("model_type")
    if model_type is not None and model_type not in _ACCEPTED_MODEL_TYPES:
        problems.append(f"model_type is {model_type!r}, expected {FLA_MODEL_TYPE!r}")
    hybrid = config.get("attn")
    if hybrid:
        layers = hybrid.get("layers") if isinstance(hybrid, Mapping) else hybrid
        problems.append(
            f"hybrid softmax-attention layers {layers} (config 'attn') have no official "
            "RWKV-7 equivalent"
        )
    act = config.get("hidden_act", "sqrelu")
    if act != "sqrelu":
        problems.append(f"hidden_act is {act!r}; the official FFN uses squared ReLU ('sqrelu')")
    if config.get("norm_first") is False:
        problems.append("norm_first is false (no pre_norm / ln0); the official model needs ln0")
    value_dim = config.get("value_dim")
    if value_dim is not None and n_embd is not None:
        dims = list(value_dim) if isinstance(value_dim, (list, tuple)) else [value_dim] * n_layer
        odd = [i for i, d in enumerate(dims) if int(d) != n_embd]
        if len(dims) != n_layer:
            problems.append(f"value_dim lists {len(dims)} layers, num_hidden_layers is {n_layer}")
        if odd:
            problems.append(
                f"value_dim {value_dim} differs from hidden_size {n_embd} in layer(s) {odd}; "
                "the official RWKV-7 has value_dim == hidden_size"
            )
    if problems:
        raise CheckpointError("unsupported fla RWKV-7 config: " + "; ".join(problems))
    eps = config.get("norm_eps")
    if eps is not None and not math.isclose(float(eps), 1e-5):
        logger.warning(
            "norm_eps=%s: the official model uses 1e-5 for LayerNorm and 64e-5 for ln_x; "
            "converted outputs will differ slightly", eps,
        )


def fla_to_official(
    state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]
) -> dict[str, torch.Tensor]:
    """Converts an fla ``RWKV7ForCausalLM`` state dict to the official layout.

    ``config`` is the parsed ``config.json`` (or a transformers config object). Sizes it gives
    are checked against the tensors; sizes it omits are read from the tensor shapes. Also reads
    fla's first layout (stacked ``attn.x_x``), a tied head, and ``norm_bias: false`` (zero
    biases). Tensor values and dtypes are kept exactly; outputs may share storage with inputs.

    Raises:
        CheckpointError: naming every key that cannot be mapped, is missing or has a wrong
            shape, or describing a config with no official equivalent (hybrid attention layers,
            value_dim != hidden_size, another activation, no pre_norm).
    """
    cfg = _config_dict(config)
    emb = state_dict.get("model.embeddings.weight")
    width = cfg.get("hidden_size")
    if width is None and isinstance(emb, torch.Tensor) and emb.dim() == 2:
        width = emb.shape[1]
    n_layer = cfg.get("num_hidden_layers")
    n_layer = int(n_layer) if n_layer is not None else _layer_count(state_dict, _LAYER_RE)
    _check_fla_config(cfg, n_layer, int(width) if width is not None else None)
    sd = _upgrade_legacy(state_dict, cfg, int(width) if width is not None else None)
    dims = _fla_dims(sd, cfg)
    layout = _layout(dims)
    check_keys(sd, {e.fla: e.fla_shape for e in layout}, "fla RWKV-7 state dict")
    return {e.official: _to_official_tensor(sd[e.fla], e) for e in layout}


# ---------------------------------------------------------------------------------------------
# Folders
# ---------------------------------------------------------------------------------------------


def _weight_files(folder: Path) -> tuple[list[Path], dict[str, str] | None]:
    """The safetensors files to read, and the index's weight map when the folder is sharded."""
    index_path = folder / WEIGHTS_INDEX_NAME
    if index_path.is_file():
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
            raise CheckpointError(f"cannot read the weight map of {index_path}: {err}") from err
        names = sorted(set(weight_map.values()))
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise CheckpointError(f"{index_path} names missing shard file(s) {missing}")
        return [folder / n for n in names], dict(weight_map)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{folder} holds no *.safetensors file")
    return files, None


def is_fla_folder(path: str | Path) -> bool:
    """Whether ``path`` looks like an fla RWKV-7 HF folder (config.json + fla-named safetensors).

    Checks the config's ``model_type``/``architectures`` and that the weight names follow fla's
    ``model.layers.N.attn.*`` scheme, reading only safetensors headers. Never raises.
    """
    folder = Path(path)
    try:
        if not folder.is_dir():
            return False
        config = read_json_object(folder / CONFIG_NAME)
        architectures = config.get("architectures") or []
        if config.get("model_type") not in _ACCEPTED_MODEL_TYPES and not (
            set(architectures) & _ACCEPTED_ARCHITECTURES
        ):
            return False
        files, weight_map = _weight_files(folder)
        if weight_map is not None:
            keys: set[str] = set(weight_map)
        else:
            keys = set()
            for file in files:
                keys |= safetensors_keys(file)
        return "model.embeddings.weight" in keys and any(
            k.startswith("model.layers.") and ".attn." in k for k in keys
        )
    except Exception:  # noqa: BLE001 - a probe: anything unreadable is "not an fla folder"
        logger.debug("is_fla_folder(%s): not readable as an fla folder", folder, exc_info=True)
        return False


def load_fla_folder(path: str | Path) -> dict[str, torch.Tensor]:
    """Reads an fla RWKV-7 folder (single or sharded safetensors) into the official layout."""
    folder = Path(path)
    config = read_json_object(folder / CONFIG_NAME)
    files, weight_map = _weight_files(folder)
    tensors: dict[str, torch.Tensor] = {}
    location: dict[str, str] = {}
    duplicates: list[str] = []
    for file in files:
        part = read_safetensors(file)
        duplicates += [k for k in part if k in tensors]
        tensors.update(part)
        location.update((k, file.name) for k in part)
    if duplicates:
        raise CheckpointError(f"key(s) stored in more than one shard of {folder}: "
                              f"{sorted(duplicates)}")
    if weight_map is not None:
        absent = sorted(k for k in weight_map if k not in tensors)
        misplaced = sorted(k for k, name in weight_map.items()
                           if k in location and location[k] != name)
        if absent or misplaced:
            raise CheckpointError(
                f"{folder / WEIGHTS_INDEX_NAME} does not match its shards: "
                f"absent key(s) {absent}, key(s) in another shard {misplaced}"
            )
    logger.info("read %d tensors from %d file(s) in %s", len(tensors), len(files), folder)
    return fla_to_official(tensors, config)


def _unshared(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous tensors of which no two share storage, as safetensors' save_file requires."""
    seen: set[int] = set()
    out = {}
    for key, t in tensors.items():
        t = t.contiguous()
        if t.untyped_storage().data_ptr() in seen:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[key] = t
    return out


def save_fla_folder(
    state_dict: Mapping[str, torch.Tensor],
    path: str | Path,
    *,
    config_overrides: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Writes an official-layout state dict as an fla folder: config.json + model.safetensors.

    Returns the config written. Refuses a folder that already holds weights unless
    ``overwrite`` is set, in which case the old ``*.safetensors`` files and shard index go.
    """
    tensors, config = official_to_fla(state_dict, config_overrides=config_overrides)
    folder = check_output_folder(path)
    folder.mkdir(parents=True, exist_ok=True)
    old = sorted(folder.glob("*.safetensors")) + [
        p for p in (folder / WEIGHTS_INDEX_NAME,) if p.exists()
    ]
    if old:
        if not overwrite:
            raise FileExistsError(f"{folder} already holds weights {[p.name for p in old]}; "
                                  "pass overwrite=True (modrwkv export --overwrite) to replace them")
        for p in old:
            p.unlink()
    save_safetensors(_unshared(tensors), str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
    write_text_atomically(folder / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    logger.info("wrote an fla RWKV-7 folder (%d tensors) to %s", len(tensors), folder)
    return config
