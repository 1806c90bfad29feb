"""modrwkv: ModRWKV multimodal language models on the RWKV-7 linear-time RNN."""

from .encoders.media import set_max_image_pixels
from .lm import RWKV7, RWKV7Config, RWKV7State, load_model, save_model

__version__ = "0.1.0"

__all__ = ["RWKV7", "RWKV7Config", "RWKV7State", "load_model", "save_model", "set_max_image_pixels", "__version__"]
