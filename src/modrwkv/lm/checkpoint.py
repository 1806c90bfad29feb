"""Reading and writing RWKV-7 weights: official `.pth`, safetensors, fla HF folders, llama.cpp GGUF
files, our own folders.

Every format is converted to the official key layout, which is also the model's own parameter
naming, then checked against the model so that a wrong file fails with the offending keys named.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch

from ..constants import DTYPES
from .config import LAYER0_UNUSED_KEYS, RWKV7Config
from .errors import CheckpointError, check_keys
from .files import MODRWKV_FORMAT, read_json_object, read_safetensors, read_torch, safetensors_keys
from .fla_format import is_fla_folder, load_fla_folder
from .gguf_format import is_gguf_file, load_gguf
from .model import INITIAL_STATE_NAME, RWKV7
from .ops.linear import WeightFormat
from ..weightfiles import save_safetensors

log = logging.getLogger(__name__)


WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def resolve_dtype(dtype: torch.dtype | str, device: torch.device | str = "cpu") -> tuple[torch.dtype, WeightFormat]:
    """(the dtype the LM computes in, the format of its weight matrices) for a precision name.

    A torch dtype is taken as it is (the whole model in that dtype). Names, as users give them:
    "fp32"; "bf16": on CPU bf16 weight matrices with fp32 compute elsewhere (half the bytes read per
    token, fp32 norms and state), on CUDA the whole model in bf16; "fp16": the whole model in fp16;
    "int8": weight-only int8 matrices with per-channel scales, the rest fp32 (CPU) or bf16 (CUDA).
    """
    if isinstance(dtype, torch.dtype):
        return dtype, "native"
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {DTYPES}")
    cpu = torch.device(device).type == "cpu"
    if dtype == "fp32":
        return torch.float32, "native"
    if dtype == "fp16":
        return torch.float16, "native"
    if dtype == "bf16":
        return (torch.float32, "bf16") if cpu else (torch.bfloat16, "native")
    return (torch.float32 if cpu else torch.bfloat16), "int8"


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint file or folder at `path`, also found without its suffix; a missing one is a
    FileNotFoundError naming it."""
    path = Path(path)
    if path.exists():
        return path
    for suffix in (".pth", ".safetensors", ".gguf"):  # official tools name models without the suffix
        candidate = path.with_name(path.name + suffix)
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"no checkpoint at {path} (also tried .pth, .safetensors and .gguf)")


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Reads any supported checkpoint into an official-layout state dict (tensors as stored).

    A ModRWKV folder (`ModRWKV.save_pretrained`) gives its LM's weights, for text-only use."""
    path = resolve_checkpoint(path)
    if path.is_dir():
        return _load_folder(path)
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    if is_gguf_file(path):
        return load_gguf(path)
    if path.suffix.lower() == ".gguf":
        raise CheckpointError(f"{path}: not a GGUF file (it does not start with the GGUF magic bytes)")
    return read_torch(path)


def _load_folder(folder: Path) -> dict[str, torch.Tensor]:
    weights = folder / WEIGHTS_NAME
    config = read_json_object(folder / CONFIG_NAME) if (folder / CONFIG_NAME).exists() else None
    if config is not None and config.get("format") == MODRWKV_FORMAT:
        tensors = read_safetensors(weights)
        lm = {k.removeprefix("lm."): v for k, v in tensors.items() if k.startswith("lm.")}
        if not lm:
            raise CheckpointError(f"{weights} holds no LM weights (no lm.* tensors)")
        log.info("reading the LM of the ModRWKV folder %s (its encoders and adapters are not used)", folder)
        return lm
    if config is not None and is_fla_folder(folder):
        return load_fla_folder(folder)
    if not weights.exists():
        raise CheckpointError(
            f"{folder} is not a model folder: it has "
            + (f"{CONFIG_NAME} but no {WEIGHTS_NAME}" if config is not None else f"neither {CONFIG_NAME} nor {WEIGHTS_NAME}")
            + " (modrwkv and flash-linear-attention folders hold both; an official checkpoint is a single .pth file)"
        )
    if any(k.startswith(("lm.", "adapters.")) for k in safetensors_keys(weights)):
        problem = f"has no {CONFIG_NAME}" if config is None else (
            f"has a {CONFIG_NAME} that does not describe a ModRWKV model (format={config.get('format')!r})")
        raise CheckpointError(f"{folder} {problem}, but its {WEIGHTS_NAME} holds ModRWKV weights (lm.*, adapters.*), "
                              f"which cannot be loaded without the {CONFIG_NAME} saved beside them")
    return read_safetensors(weights)


# Top-level keys of the authors' released ModRWKV files (LM + adapter [+ encoder]).
_MULTIMODAL_PREFIXES = ("llm.", "proj.", "modality.", "encoder.")


def check_state_dict(
    state_dict: Mapping[str, torch.Tensor], model: RWKV7, where: str | Path = "checkpoint"
) -> dict[str, torch.Tensor]:
    """Returns the tensors the model uses; raises CheckpointError naming missing, unexpected or
    mis-shaped keys. Layer 0's value-residual LoRA (v0/v1/v2) is unused and silently dropped."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    check_keys(state_dict, expected, f"{where} does not match the RWKV-7 model", ignore=LAYER0_UNUSED_KEYS)
    return {k: state_dict[k] for k in expected}


def build_lm(
    state_dict: Mapping[str, torch.Tensor],
    *,
    config: RWKV7Config | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    where: str | Path = "checkpoint",
) -> RWKV7:
    """The one way every format becomes a model: an official-layout state dict (from any reader)
    -> an RWKV-7 sized from its shapes (or `config`), with every key checked. Each tensor is
    converted straight into the memory layout the (meta) model holds, the "decode" weight layout:
    one copy, where converting and then re-laying out would briefly hold two."""
    config = config or RWKV7Config.from_state_dict(state_dict)
    with torch.device("meta"):
        model = RWKV7(config)
    tensors = check_state_dict(state_dict, model, where)
    layout = model.state_dict()
    tensors = {k: torch.empty_like(layout[k], device=device, dtype=dtype).copy_(v) for k, v in tensors.items()}
    model.load_state_dict(tensors, assign=True)
    log.info("loaded RWKV-7 %s from %s (%.1fM parameters)", config, where,
             sum(t.numel() for t in tensors.values()) / 1e6)
    return model.eval()


def load_model(
    path: str | Path,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | str = torch.float32,
) -> RWKV7:
    """Builds an RWKV-7 model from any supported checkpoint, sized from the checkpoint's shapes;
    ``path`` may also be a hub id ``org/name[@revision]`` (resolved to its local snapshot first).
    `dtype`: a torch dtype or a precision name ("fp32", "bf16", "fp16", "int8"; see `resolve_dtype`)."""
    from ..hub import resolve_model_path

    dtype, weight_format = resolve_dtype(dtype, device)
    path = resolve_model_path(path)
    state_dict = load_state_dict(path)
    multimodal = sorted({k.split(".")[0] + ".*" for k in state_dict if k.startswith(_MULTIMODAL_PREFIXES)})
    if multimodal:
        raise CheckpointError(
            f"{path} is a ModRWKV checkpoint (it holds {', '.join(multimodal)} keys), not a plain RWKV-7 LM: load "
            "it with its encoder (modrwkv chat --model ... --encoder NAME, or ModRWKVPipeline.from_pretrained(..., "
            "encoder=...)); see docs/authors-checkpoints.md"
        )
    model = build_lm(state_dict, device=device, dtype=dtype, where=path)
    if path.is_dir() and (path / INITIAL_STATE_NAME).exists():  # a state-tuned model's folder
        model.load_initial_state(path / INITIAL_STATE_NAME)
    return model.use_weight_format(weight_format)


def check_savable(model: RWKV7) -> None:
    """Checkpoints hold full-precision weights: a model converted for inference cannot be saved."""
    if model.weight_format != "native":
        raise ValueError(f"this model's matrices were converted to {model.weight_format} for inference and "
                         "cannot be saved as a checkpoint; save the model loaded without dtype='int8'/'bf16'")


def save_model(model: RWKV7, path: str | Path) -> None:
    """Writes a folder with config.json and model.safetensors (official key names), and the initial
    state (INITIAL_STATE_NAME) of a state-tuned model."""
    check_savable(model)
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.weights().items()}
    tmp = folder / (WEIGHTS_NAME + ".tmp")
    save_safetensors(tensors, str(tmp), metadata={"format": "pt", "architecture": "rwkv7"})
    tmp.replace(folder / WEIGHTS_NAME)
    model.config.save(folder / CONFIG_NAME)
    save_initial_state_file(model, folder)


def save_initial_state_file(model: RWKV7, folder: Path) -> None:
    """Writes the model's initial state to `folder`/INITIAL_STATE_NAME, or removes a stale one there
    when the model has none (the folder then describes this model, not an earlier one)."""
    if model.initial_wkv is not None:
        model.save_initial_state(folder / INITIAL_STATE_NAME)
    else:
        (folder / INITIAL_STATE_NAME).unlink(missing_ok=True)
