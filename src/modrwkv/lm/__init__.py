"""The RWKV-7 language model: configuration, model, recurrent state, checkpoints, WKV kernels."""

from .checkpoint import DTYPES, CheckpointError, build_lm, load_model, load_state_dict, resolve_dtype, save_model
from .config import RWKV7Config
from .model import RWKV7, RWKV7Output
from .state import RWKV7State

__all__ = [
    "DTYPES",
    "RWKV7",
    "CheckpointError",
    "RWKV7Config",
    "RWKV7Output",
    "RWKV7State",
    "build_lm",
    "load_model",
    "load_state_dict",
    "resolve_dtype",
    "save_model",
]
