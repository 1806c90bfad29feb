"""Whisper encoders from CTranslate2 model folders (what faster-whisper, whisper-ctranslate2 and many
desktop apps ship: `model.bin` + `config.json`), read without the ctranslate2 package.

`model.bin` (binary format v6) is a header followed by named variables (shape, dtype, bytes). The
encoder's variables map one to one onto HF's `WhisperEncoder`, except that CTranslate2 fuses the
query, key and value projections into one matrix, and stores no key bias (Whisper's key projection
has none; HF keeps the layer without a bias too).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
_BFLOAT16 = 5  # no numpy dtype: read as raw 16-bit words
_FORMAT_VERSIONS = (5, 6)


class CTranslate2FormatError(ValueError):
    """A file that is not a CTranslate2 model this reader understands."""


def is_ctranslate2_folder(path: str | Path) -> bool:
    """A local folder holding a CTranslate2 `model.bin` (and no HF weights)."""
    folder = Path(path)
    return (folder / "model.bin").is_file() and not any(
        (folder / name).exists() for name in ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json"))


def read_ctranslate2(path: str | Path) -> dict[str, np.ndarray]:
    """All variables of a CTranslate2 `model.bin`, as numpy arrays (views into the file's bytes)."""
    path = Path(path)
    data = path.read_bytes()
    pos = 0

    def take(fmt: str) -> Any:
        nonlocal pos
        if pos + struct.calcsize(fmt) > len(data):
            raise CTranslate2FormatError(f"{path}: truncated at byte {pos}")
        (value,) = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return value

    def string() -> str:
        nonlocal pos
        size = take("H")
        text = data[pos : pos + size - 1].decode("utf-8", errors="replace")
        pos += size
        return text

    version = take("I")
    if version not in _FORMAT_VERSIONS:
        raise CTranslate2FormatError(f"{path}: CTranslate2 binary format version {version} is not supported "
                                     f"(this reader knows {_FORMAT_VERSIONS})")
    spec = string()
    take("I")  # spec revision
    variables: dict[str, np.ndarray] = {}
    for _ in range(take("I")):
        name = string()
        shape = [take("I") for _ in range(take("B"))]
        code = take("B")
        if code not in _DTYPES and code != _BFLOAT16:
            raise CTranslate2FormatError(f"{path}: variable {name!r} has unknown dtype code {code}")
        size = take("I")
        if code == _BFLOAT16:  # widen the raw bits to float32
            raw = np.frombuffer(data, np.uint16, size // 2, pos).astype(np.uint32) << 16
            variables[name] = raw.view(np.float32).reshape(shape)
        else:
            dtype = np.dtype(_DTYPES[code])
            variables[name] = np.frombuffer(data, dtype, size // dtype.itemsize, pos).reshape(shape)
        pos += size
    if not spec.startswith("Whisper") and "encoder/conv1/weight" not in variables:
        raise CTranslate2FormatError(f"{path}: a CTranslate2 {spec or 'model'}, not Whisper")
    return variables


def whisper_encoder_from_ctranslate2(folder: str | Path, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """HF `WhisperEncoder` with the weights of the CTranslate2 Whisper model in `folder`."""
    import transformers
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    folder = Path(folder)
    v = read_ctranslate2(folder / "model.bin")
    quantized = sorted(k for k in v if k.startswith("encoder/") and k.endswith("weight_scale"))
    if quantized:
        raise CTranslate2FormatError(
            f"{folder}: the encoder weights are int8-quantized ({len(quantized)} scaled matrices); convert the model "
            "with --quantization float16 or float32 (ct2-transformers-converter) to use it as an encoder")
    if "encoder/conv1/weight" not in v:
        raise CTranslate2FormatError(f"{folder / 'model.bin'}: no encoder/conv1/weight; not a Whisper model")

    def t(name: str) -> torch.Tensor:
        key = f"encoder/{name}"
        if key not in v:
            raise CTranslate2FormatError(f"{folder / 'model.bin'}: missing variable {key!r}")
        return torch.from_numpy(v[key].astype(np.float32))

    layer_ids = {int(k.split("/")[1][len("layer_"):]) for k in v
                 if k.startswith("encoder/layer_") and k.split("/")[1][len("layer_"):].isdigit()}
    if not layer_ids:
        raise CTranslate2FormatError(f"{folder / 'model.bin'}: no encoder layers")
    layers = 1 + max(layer_ids)
    config = transformers.WhisperConfig(
        d_model=v["encoder/conv1/weight"].shape[0],
        encoder_layers=layers,
        encoder_attention_heads=int(v["encoder/num_heads"]) if "encoder/num_heads" in v else 0,
        encoder_ffn_dim=v["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        num_mel_bins=v["encoder/conv1/weight"].shape[1],
        max_source_positions=v["encoder/position_encodings/encodings"].shape[0],
    )
    if not config.encoder_attention_heads:
        raise CTranslate2FormatError(f"{folder / 'model.bin'}: no encoder/num_heads")
    state = {
        "embed_positions.weight": t("position_encodings/encodings"),
        "layer_norm.weight": t("layer_norm/gamma"),
        "layer_norm.bias": t("layer_norm/beta"),
    }
    for conv in ("conv1", "conv2"):
        state[f"{conv}.weight"], state[f"{conv}.bias"] = t(f"{conv}/weight"), t(f"{conv}/bias")
    for i in range(layers):
        ct, hf = f"layer_{i}/", f"layers.{i}."
        q, k, value = t(ct + "self_attention/linear_0/weight").chunk(3)  # fused q, k, v
        q_bias, _, v_bias = t(ct + "self_attention/linear_0/bias").chunk(3)  # the key part is zeros
        state |= {
            hf + "self_attn.q_proj.weight": q,
            hf + "self_attn.q_proj.bias": q_bias,
            hf + "self_attn.k_proj.weight": k,
            hf + "self_attn.v_proj.weight": value,
            hf + "self_attn.v_proj.bias": v_bias,
        }
        linears = {"self_attn.out_proj": "self_attention/linear_1", "fc1": "ffn/linear_0", "fc2": "ffn/linear_1"}
        for ours, theirs in linears.items():
            state[hf + ours + ".weight"], state[hf + ours + ".bias"] = t(ct + theirs + "/weight"), t(ct + theirs + "/bias")
        norms = {"self_attn_layer_norm": "self_attention/layer_norm", "final_layer_norm": "ffn/layer_norm"}
        for ours, theirs in norms.items():
            state[hf + ours + ".weight"], state[hf + ours + ".bias"] = t(ct + theirs + "/gamma"), t(ct + theirs + "/beta")
    encoder = WhisperEncoder(config)
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CTranslate2FormatError(f"{folder}: encoder weights do not match Whisper's: missing {sorted(missing)}, "
                                     f"unexpected {sorted(unexpected)}")
    return encoder.to(dtype).eval()
