"""RWKV-7 language models as GGUF files, the format llama.cpp (and ollama, LM Studio, ...) reads.

The file is what llama.cpp's own ``convert_hf_to_gguf.py`` (class ``Rwkv7Model``) writes for an
fla ``RWKV7ForCausalLM`` folder, so llama.cpp loads it as architecture ``rwkv7``. Tensor names
follow gguf-py's ``MODEL_TENSORS[MODEL_ARCH.RWKV7]``; shapes are given here in PyTorch order
(GGUF stores the reverse):

====================================  =====================================  ======================
official                              GGUF                                   transform
====================================  =====================================  ======================
emb.weight [V,C]                      token_embd.weight                      none
blocks.0.ln0.{weight,bias}            token_embd_norm.{weight,bias}          none
ln_out.{weight,bias}                  output_norm.{weight,bias}              none
head.weight [V,C]                     output.weight                          none
blocks.L.ln1.*                        blk.L.attn_norm.*                      none
blocks.L.ln2.*                        blk.L.attn_norm_2.*                    none
blocks.L.att.x_{r,w,k,v,a,g}          blk.L.time_mix_lerp_fused.weight       stacked [6,1,1,C]
blocks.L.att.{w,a,v}0 [1,1,C]         blk.L.time_mix_{w,a,v}0.weight [C]     flatten
blocks.L.att.{w,a,v,g}1 [C,D]         blk.L.time_mix_{w,a,v,g}1.weight       transpose [D,C]
blocks.L.att.{w,a,v,g}2 [D,C]         blk.L.time_mix_{w,a,v,g}2.weight       transpose [C,D]
blocks.L.att.k_k, k_a [1,1,C]         blk.L.time_mix_k_k, k_a .weight [C]    flatten
blocks.L.att.r_k [H,N]                blk.L.time_mix_r_k.weight [H*N]        flatten
blocks.L.att.receptance/key/value     blk.L.time_mix_receptance/key/value    none
blocks.L.att.output.weight            blk.L.time_mix_output.weight           none
blocks.L.att.ln_x.{weight,bias}       blk.L.time_mix_ln.{weight,bias}        none
blocks.L.ffn.x_k [1,1,C]              blk.L.channel_mix_lerp_k.weight [C]    flatten
blocks.L.ffn.key/value.weight         blk.L.channel_mix_key/value.weight     none
====================================  =====================================  ======================

Layer 0 has no value-residual LoRA, but llama.cpp requires ``blk.0.time_mix_v{0,1,2}`` with the
in-context-learning-rate LoRA's sizes; like the converter, the writer stores copies of
``a0/a1/a2`` there and the reader ignores them. Tensors llama.cpp keeps in float32 (vectors,
norms, the decay LoRA and the fused token-shift mixes) are written as float32 whatever ``dtype``
says. The vocabulary is the RWKV World one (``tokenizer.ggml.model = "rwkv"``), with ``"\\n\\n"``
(261) as end-of-turn token and ``<s>`` (0) as begin and end of text, as the converter writes. The
chat template is our ``classic`` World format spelled in Jinja (`ChatTemplate.jinja`): llama.cpp
renders Jinja templates by default, so a bare template name would be printed rather than applied;
a comment names its built-in ``rwkv-world`` format for the tools that do not use Jinja.
Running the converter on ``modrwkv export --format fla`` gives the same tensors (bit for bit) and
metadata, ``general.name`` and the chat template's wording aside (bench/llama_cpp_check.py).

The reader also dequantizes files that ``llama-quantize`` produced (Q8_0, Q4_K, ...).
"""

from __future__ import annotations

import contextlib
import logging
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..constants import GGUF_DTYPES
from .config import LAYER0_UNUSED_KEYS
from .errors import CheckpointError
from ..weightfiles import writes_named
from .files import check_output_file

log = logging.getLogger(__name__)

__all__ = ["GGUF_ARCHITECTURE", "GGUF_DTYPES", "GGUFTensor", "gguf_differences", "is_gguf_file", "load_gguf",
           "official_to_gguf", "read_gguf", "save_gguf"]

GGUF_ARCHITECTURE = "rwkv7"
GGUF_MAGIC = b"GGUF"
_Q8_0_BLOCK = 32
#: Order of the six token-shift mixes in time_mix_lerp_fused (the converter's ``lerp_list``).
LERP_ORDER = ("r", "w", "k", "v", "a", "g")
RWKV_WORLD_EOT = 261  # "\n\n", the converter's end-of-turn token
RWKV_WORLD_TEXT_BOUNDARY = 0  # "<s>", the converter's begin- and end-of-text token
CONTEXT_LENGTH = 1048576  # what the converter writes: an RNN has no context limit
# llama.cpp's built-in (non-Jinja) chat formats, used by llama-completion and under --no-jinja,
# recognise a template by the name "rwkv-world" in its text; a Jinja comment carries it.
_LLAMA_CPP_FORMAT_NAME = "{#- rwkv-world (the RWKV World chat format) -#}"

_RENAMES = {
    "emb.weight": "token_embd.weight",
    "blocks.0.ln0.weight": "token_embd_norm.weight",
    "blocks.0.ln0.bias": "token_embd_norm.bias",
    "ln_out.weight": "output_norm.weight",
    "ln_out.bias": "output_norm.bias",
    "head.weight": "output.weight",
}
_LAYER_RENAMES = {
    "ln1.weight": "attn_norm.weight", "ln1.bias": "attn_norm.bias",
    "ln2.weight": "attn_norm_2.weight", "ln2.bias": "attn_norm_2.bias",
    "att.receptance.weight": "time_mix_receptance.weight", "att.key.weight": "time_mix_key.weight",
    "att.value.weight": "time_mix_value.weight", "att.output.weight": "time_mix_output.weight",
    "att.ln_x.weight": "time_mix_ln.weight", "att.ln_x.bias": "time_mix_ln.bias",
    "ffn.key.weight": "channel_mix_key.weight", "ffn.value.weight": "channel_mix_value.weight",
}
_LAYER_FLATTENED = {
    "att.k_k": "time_mix_k_k.weight", "att.k_a": "time_mix_k_a.weight", "att.r_k": "time_mix_r_k.weight",
    "ffn.x_k": "channel_mix_lerp_k.weight",
    **{f"att.{kind}0": f"time_mix_{kind}0.weight" for kind in "wav"},
}
_LAYER_TRANSPOSED = {f"att.{kind}{i}": f"time_mix_{kind}{i}.weight" for kind in "wavg" for i in (1, 2)}


def _gguf() -> Any:
    try:
        import gguf
    except ImportError:
        raise ImportError("GGUF files need the gguf package (a modrwkv dependency): pip install gguf") from None
    return gguf


def check_gguf_output(path: str | Path, overwrite: bool) -> Path:
    """`path` as a GGUF file to write: refuses an existing file unless `overwrite`, and a path that
    cannot be written (see `check_output_file`)."""
    path = Path(path)
    if path.is_file() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True (modrwkv export --overwrite) to replace it")
    return check_output_file(path)


def is_gguf_file(path: str | Path) -> bool:
    """Whether ``path`` is a file starting with the GGUF magic bytes. Never raises."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == GGUF_MAGIC
    except OSError:
        return False


def _layers(state_dict: Mapping[str, torch.Tensor]) -> int:
    indices = {int(k.split(".")[1]) for k in state_dict if k.startswith("blocks.")}
    return max(indices) + 1 if indices else 0


def official_to_gguf(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official-layout tensors -> llama.cpp's names and shapes (PyTorch order), values unchanged."""
    from .config import RWKV7Config

    RWKV7Config.from_state_dict(state_dict)  # raises naming missing anchors for a non-RWKV-7 dict
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        if key not in state_dict:
            raise CheckpointError(f"cannot write GGUF: the state dict has no {key}")
        used.add(key)
        return state_dict[key].detach()

    for official, name in _RENAMES.items():
        out[name] = take(official)
    for i in range(_layers(state_dict)):
        src, dst = f"blocks.{i}.", f"blk.{i}."
        for official, name in _LAYER_RENAMES.items():
            out[dst + name] = take(src + official)
        for official, name in _LAYER_FLATTENED.items():
            if i == 0 and official == "att.v0":
                continue
            out[dst + name] = take(src + official).reshape(-1)
        for official, name in _LAYER_TRANSPOSED.items():
            if i == 0 and official.startswith("att.v"):
                continue
            out[dst + name] = take(src + official).t()
        out[dst + "time_mix_lerp_fused.weight"] = torch.stack([take(f"{src}att.x_{m}") for m in LERP_ORDER])
        if i == 0:  # llama.cpp requires a layer-0 value LoRA, sized like the ICLR LoRA, and never uses it
            for j in range(3):
                out[f"{dst}time_mix_v{j}.weight"] = out[f"{dst}time_mix_a{j}.weight"]
    unused = sorted(set(state_dict) - used - set(LAYER0_UNUSED_KEYS))
    if unused:
        raise CheckpointError(f"cannot write GGUF: key(s) with no llama.cpp RWKV-7 equivalent: {unused}")
    return out


def _keeps_fp32(name: str, tensor: torch.Tensor) -> bool:
    """The converter's rule: vectors, norms, biases, the decay LoRA and the fused mixes stay fp32."""
    return (
        tensor.dim() <= 1
        or not name.endswith(".weight")
        or name.endswith("_norm.weight")
        or any(name.endswith(s) for s in ("time_mix_w1.weight", "time_mix_w2.weight", "time_mix_lerp_fused.weight"))
    )


def _vocabulary(vocab_size: int, vocab_path: Path) -> tuple[list[bytes], list[int]]:
    """The token list the converter builds from rwkv_vocab_v20230424.txt: id 0 is ``<s>``,
    file entries as Python-escaped text, ``[PADi]`` up to the embedding rows."""
    from ..tokenizer.world import _parse_vocab  # the tokenizer's parser: one reading of the vocab format

    gguf = _gguf()
    try:
        vocab = _parse_vocab(str(vocab_path))
    except ValueError as exc:
        raise CheckpointError(f"not a vocabulary file: {exc}") from None
    if vocab.max_id != vocab.num_entries:
        raise CheckpointError(f"{vocab_path}: token ids must run 1..{vocab.num_entries} without gaps for GGUF")
    tokens: list[bytes] = [b"<s>"] + [repr(vocab.id_to_bytes[i])[2:-1].encode("utf-8")
                                      for i in range(1, vocab.max_id + 1)]
    types: list[int] = [gguf.TokenType.CONTROL] + [gguf.TokenType.NORMAL] * vocab.num_entries
    if len(tokens) > vocab_size:
        raise CheckpointError(f"{vocab_path} has {len(tokens)} tokens but the model only {vocab_size} embedding rows")
    for i in range(len(tokens), vocab_size):
        tokens.append(f"[PAD{i}]".encode())
        types.append(gguf.TokenType.UNUSED)
    return tokens, types


def save_gguf(
    state_dict: Mapping[str, torch.Tensor],
    path: str | Path,
    *,
    dtype: str = "f16",
    name: str | None = None,
    vocab_path: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Writes an official-layout RWKV-7 state dict as a GGUF file llama.cpp loads (``rwkv7``).

    ``dtype`` ("f32", "f16", "bf16") is the precision of the large matrices, as the converter's
    ``--outtype``. Refuses to replace an existing file unless ``overwrite`` is set.
    """
    gguf = _gguf()
    from ..processing.template import get_template
    from ..tokenizer.world import DEFAULT_VOCAB_PATH
    from .config import LAYER_NORM_EPS, RWKV7Config

    if dtype not in GGUF_DTYPES:
        raise ValueError(f"GGUF dtype must be one of {GGUF_DTYPES}, got {dtype!r}")
    path = check_gguf_output(path, overwrite)
    config = RWKV7Config.from_state_dict(state_dict)
    tensors = official_to_gguf(state_dict)
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[dtype]
    writer = gguf.GGUFWriter(str(path), GGUF_ARCHITECTURE)
    writer.add_type(gguf.GGUFType.MODEL)
    if name:
        writer.add_name(name)
    writer.add_context_length(CONTEXT_LENGTH)
    writer.add_embedding_length(config.n_embd)
    writer.add_block_count(config.n_layer)
    writer.add_layer_norm_eps(LAYER_NORM_EPS)
    writer.add_wkv_head_size(config.head_size)
    writer.add_decay_lora_rank(config.dim_w)
    writer.add_iclr_lora_rank(config.dim_a)
    writer.add_value_residual_mix_lora_rank(config.dim_v)
    writer.add_gate_lora_rank(config.dim_g)
    writer.add_feed_forward_length(config.dim_ffn)
    writer.add_file_type(file_type)
    writer.add_head_count(0)  # required by llama.cpp, unused by RWKV
    tokens, types = _vocabulary(config.vocab_size, Path(vocab_path or DEFAULT_VOCAB_PATH))
    writer.add_tokenizer_model("rwkv")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_chat_template(_LLAMA_CPP_FORMAT_NAME + get_template("classic").jinja())
    writer.add_bos_token_id(RWKV_WORLD_TEXT_BOUNDARY)
    writer.add_eos_token_id(RWKV_WORLD_TEXT_BOUNDARY)
    writer.add_eot_token_id(RWKV_WORLD_EOT)
    for tensor_name, tensor in tensors.items():
        t = tensor.float().contiguous()
        if _keeps_fp32(tensor_name, t) or dtype == "f32":
            writer.add_tensor(tensor_name, t.numpy())
        elif dtype == "f16" or (dtype == "q8_0" and t.shape[-1] % _Q8_0_BLOCK):
            writer.add_tensor(tensor_name, t.half().numpy())
        elif dtype == "q8_0":
            kind = gguf.GGMLQuantizationType.Q8_0
            writer.add_tensor(tensor_name, gguf.quants.quantize(t.numpy(), kind), raw_dtype=kind)
        else:  # numpy has no bfloat16: hand the raw 16-bit words over with their type
            raw = t.bfloat16().view(torch.int16).numpy()
            writer.add_tensor(tensor_name, raw, raw_shape=raw.shape, raw_dtype=gguf.GGMLQuantizationType.BF16)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_size_label(gguf.size_label(*writer.get_total_parameter_count()))  # e.g. "17M", as the converter
    try:
        with writes_named(path):  # the gguf package's writes name no file when the disk is full
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
            writer.close()
    except OSError:
        with contextlib.suppress(OSError):  # closing flushes what is buffered, which fails again
            writer.close()
        Path(path).unlink(missing_ok=True)  # half a model only takes space
        raise
    log.info("wrote a GGUF RWKV-7 model (%d tensors, %s) to %s", len(tensors), dtype, path)
    return path


# GGUF metadata value types (gguf-py's GGUFValueType): struct formats of the scalars, numpy dtypes of arrays.
_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9
_GGUF_VERSIONS = (2, 3)
_GGUF_DEFAULT_ALIGNMENT = 32


@dataclass(frozen=True)
class GGUFTensor:
    """One tensor of a GGUF file: its ggml type number, shape in ggml order (innermost first) and raw bytes."""

    tensor_type: int
    shape: tuple[int, ...]
    data: np.ndarray  # uint8, mapped from the file


class _GGUFCursor:
    """Reads a GGUF file's little-endian header fields one after the other from a mapped file."""

    def __init__(self, buffer: np.ndarray) -> None:
        # a memoryview: slicing the memmap itself costs a numpy view per string (gguf-py's slowness)
        self.buffer, self.offset = memoryview(buffer), 0

    def scalar(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self.buffer, self.offset)
        self.offset += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        size = self.scalar("<Q")
        if self.offset + size > len(self.buffer):
            raise ValueError(f"a string of {size} bytes at byte {self.offset} runs past the end of the file")
        text = str(self.buffer[self.offset:self.offset + size], "utf-8")
        self.offset += size
        return text

    def value(self, kind: int) -> Any:
        if kind in _GGUF_SCALARS:
            return self.scalar(_GGUF_SCALARS[kind])
        if kind == _GGUF_STRING:
            return self.string()
        if kind != _GGUF_ARRAY:
            raise ValueError(f"unknown metadata value type {kind} at byte {self.offset - 4}")
        item_kind, count = self.scalar("<I"), self.scalar("<Q")
        if item_kind in _GGUF_SCALARS:
            dtype = np.dtype(_GGUF_SCALARS[item_kind])
            if self.offset + count * dtype.itemsize > len(self.buffer):
                raise ValueError(f"an array of {count} items at byte {self.offset} runs past the end of the file")
            items = np.frombuffer(self.buffer, dtype, count, self.offset).tolist()
            self.offset += count * dtype.itemsize
            return items
        return [self.value(item_kind) for _ in range(count)]


def read_gguf(path: str | Path) -> tuple[dict[str, Any], dict[str, GGUFTensor]]:
    """A GGUF file's metadata (key to value, arrays as lists) and tensors (name to `GGUFTensor`,
    data mapped, not read). Reads the header in bulk where gguf-py's GGUFReader makes several numpy
    views per array item (~2 s for the World vocabulary's 65536 tokens). Raises ValueError on a
    file that is not a little-endian GGUF v2/v3 file or is cut short."""
    buffer = np.memmap(path, dtype=np.uint8, mode="r")
    cursor = _GGUFCursor(buffer)
    try:
        if bytes(buffer[:len(GGUF_MAGIC)]) != GGUF_MAGIC:
            raise ValueError("it does not start with the GGUF magic bytes")
        cursor.offset = len(GGUF_MAGIC)
        version = cursor.scalar("<I")
        if version not in _GGUF_VERSIONS and int.from_bytes(version.to_bytes(4, "little"), "big") in _GGUF_VERSIONS:
            raise ValueError("big-endian GGUF files are not supported")
        if version not in _GGUF_VERSIONS:
            raise ValueError(f"GGUF version {version} is not supported (only {' and '.join(map(str, _GGUF_VERSIONS))})")
        n_tensors, n_values = cursor.scalar("<Q"), cursor.scalar("<Q")
        metadata: dict[str, Any] = {}
        for _ in range(n_values):
            key = cursor.string()
            metadata[key] = cursor.value(cursor.scalar("<I"))
        infos = []
        for _ in range(n_tensors):
            name = cursor.string()
            n_dims = cursor.scalar("<I")
            shape = tuple(cursor.scalar("<Q") for _ in range(n_dims))
            infos.append((name, shape, cursor.scalar("<I"), cursor.scalar("<Q")))
    except struct.error as exc:
        raise ValueError(f"the file ends inside its header ({exc})") from None
    alignment = metadata.get("general.alignment", _GGUF_DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise ValueError(f"general.alignment {alignment!r} is not a power of two")
    data_start = -(-cursor.offset // alignment) * alignment
    gguf = _gguf()
    tensors: dict[str, GGUFTensor] = {}
    for name, shape, kind, offset in infos:
        if kind not in gguf.GGML_QUANT_SIZES:
            raise ValueError(f"tensor {name} has unknown ggml type {kind}")
        if name in tensors:
            raise ValueError(f"tensor {name} appears twice")
        block, block_bytes = gguf.GGML_QUANT_SIZES[kind]
        size = math.prod(shape) // block * block_bytes
        start = data_start + offset
        if start + size > len(buffer):
            raise ValueError(f"tensor {name}'s {size} bytes at byte {start} run past the end of the file")
        tensors[name] = GGUFTensor(kind, shape, buffer[start:start + size])
    return metadata, tensors


def _as_torch(tensor: GGUFTensor) -> torch.Tensor:
    """One GGUF tensor, dequantized to float32, in PyTorch (row-major) order."""
    gguf = _gguf()
    kind = gguf.GGMLQuantizationType
    shape = tuple(reversed(tensor.shape))
    if tensor.tensor_type == kind.F32:
        data = tensor.data.view("<f4")
    elif tensor.tensor_type == kind.F16:
        data = tensor.data.view("<f2").astype(np.float32)
    elif tensor.tensor_type == kind.BF16:
        words = torch.from_numpy(tensor.data.view("<i2").copy())
        return words.view(torch.bfloat16).float().reshape(shape)
    else:
        block, block_bytes = gguf.GGML_QUANT_SIZES[tensor.tensor_type]
        rows = tensor.data.reshape(-1, tensor.shape[0] // block * block_bytes)
        data = gguf.quants.dequantize(rows, kind(tensor.tensor_type))
    return torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32).reshape(shape).copy())


def load_gguf(path: str | Path) -> dict[str, torch.Tensor]:
    """Reads a llama.cpp ``rwkv7`` GGUF file into an official-layout state dict (float32)."""
    path = Path(path)
    try:
        metadata, tensors = read_gguf(path)
    except (ValueError, OSError) as exc:
        hint = "" if "supported" in str(exc) else f"; damaged or truncated? ({path.stat().st_size} bytes)"
        raise CheckpointError(f"{path}: cannot read as GGUF ({exc}{hint})") from exc
    arch = metadata.get("general.architecture")
    if arch != GGUF_ARCHITECTURE:
        raise CheckpointError(f"{path}: GGUF architecture is {arch!r}; only {GGUF_ARCHITECTURE!r} (RWKV-7) is supported")
    out: dict[str, torch.Tensor] = {}
    missing: list[str] = []

    def get(name: str) -> torch.Tensor | None:
        if name not in tensors:
            missing.append(name)
            return None
        return _as_torch(tensors[name])

    n_layer = int(metadata.get(f"{GGUF_ARCHITECTURE}.block_count") or 0)
    head_size = int(metadata.get(f"{GGUF_ARCHITECTURE}.wkv.head_size") or 64)
    for official, name in _RENAMES.items():
        if (t := get(name)) is not None:
            out[official] = t
    for i in range(n_layer):
        src, dst = f"blocks.{i}.", f"blk.{i}."
        for official, name in _LAYER_RENAMES.items():
            if (t := get(dst + name)) is not None:
                out[src + official] = t
        for official, name in _LAYER_FLATTENED.items():
            if i == 0 and official == "att.v0":
                continue
            if (t := get(dst + name)) is not None:
                shape = (t.numel() // head_size, head_size) if official == "att.r_k" else (1, 1, t.numel())
                out[src + official] = t.reshape(shape)
        for official, name in _LAYER_TRANSPOSED.items():
            if i == 0 and official.startswith("att.v"):
                continue
            if (t := get(dst + name)) is not None:
                out[src + official] = t.t().contiguous()
        if (fused := get(dst + "time_mix_lerp_fused.weight")) is not None:
            if fused.shape[0] != len(LERP_ORDER):
                raise CheckpointError(f"{path}: {dst}time_mix_lerp_fused has {fused.shape[0]} mixes, RWKV-7 has 6")
            for j, m in enumerate(LERP_ORDER):
                out[f"{src}att.x_{m}"] = fused[j].reshape(1, 1, -1)
    if missing:
        raise CheckpointError(f"{path}: GGUF RWKV-7 tensor(s) missing: {missing}")
    known = set(official_to_gguf_names(n_layer))
    unexpected = sorted(set(tensors) - known)
    if unexpected:
        raise CheckpointError(f"{path}: GGUF tensor(s) with no RWKV-7 meaning: {unexpected}")
    log.info("read %d GGUF tensors from %s", len(tensors), path)
    return out


def official_to_gguf_names(n_layer: int) -> list[str]:
    """Every tensor name a GGUF RWKV-7 with ``n_layer`` layers holds (layer 0's dummy v-LoRA included)."""
    names = list(_RENAMES.values())
    for i in range(n_layer):
        dst = f"blk.{i}."
        names += [dst + n for n in _LAYER_RENAMES.values()]
        names += [dst + n for n in _LAYER_FLATTENED.values()]
        names += [dst + n for n in _LAYER_TRANSPOSED.values()]
        names.append(dst + "time_mix_lerp_fused.weight")
    return names


def gguf_differences(path_a: str | Path, path_b: str | Path, ignore_keys: tuple[str, ...] = ()) -> list[str]:
    """What differs between two GGUF files, one line each: metadata keys and values (less
    `ignore_keys`), tensor names, shapes, storage types and bytes. Tensor order is not compared:
    llama.cpp finds tensors by name. Empty when the files hold the same model."""
    gguf = _gguf()
    files = [read_gguf(p) for p in (path_a, path_b)]
    metadata = [{k: v for k, v in m.items() if k not in ignore_keys} for m, _ in files]
    out = []
    for key in sorted(set(metadata[0]) | set(metadata[1])):
        a, b = (m.get(key, "<absent>") for m in metadata)
        if a != b:
            out.append(f"metadata {key}: {_short(a)} != {_short(b)}")
    tensors = [t for _, t in files]
    for name in sorted(set(tensors[0]) ^ set(tensors[1])):
        out.append(f"tensor {name}: only in {path_a if name in tensors[0] else path_b}")
    for name in sorted(set(tensors[0]) & set(tensors[1])):
        a, b = tensors[0][name], tensors[1][name]
        if a.shape != b.shape or a.tensor_type != b.tensor_type:
            kind_a, kind_b = (gguf.GGMLQuantizationType(t.tensor_type).name for t in (a, b))
            out.append(f"tensor {name}: {kind_a}{list(a.shape)} != {kind_b}{list(b.shape)}")
        elif a.data.tobytes() != b.data.tobytes():
            out.append(f"tensor {name}: same shape and type, different values")
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"
