"""The ModRWKV multimodal model: encoders + adapters + RWKV-7."""

from .feature_cache import CachedEncoder
from .model import ModRWKV, ModRWKVOutput

__all__ = ["CachedEncoder", "ModRWKV", "ModRWKVOutput"]
