"""Tokenizers for RWKV models."""

from modrwkv.tokenizer.world import END_OF_TEXT, VOCAB_SIZE, WorldTokenizer

__all__ = ["END_OF_TEXT", "VOCAB_SIZE", "WorldTokenizer"]
