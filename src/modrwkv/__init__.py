"""modrwkv: ModRWKV multimodal language models on the RWKV-7 linear-time RNN."""

from .lm import RWKV7, RWKV7Config, RWKV7State, load_model, save_model

__version__ = "0.1.0"

__all__ = ["RWKV7", "RWKV7Config", "RWKV7State", "load_model", "save_model", "__version__"]
