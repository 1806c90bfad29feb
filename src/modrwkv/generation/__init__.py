"""Text generation with RWKV-7: sampling, batched decoding, streaming and resuming from states."""

from .constraints import NumberListConstraint, mask_logits
from .generate import (
    BatchGeneration,
    GenerationResult,
    Tokenizer,
    generate,
    generate_batch,
    prefill,
    stream,
)
from .sampling import BatchSampler, SamplingParams, apply_penalties, candidate_mask
from .streaming import IncrementalDetokenizer, TextStream

__all__ = [
    "BatchGeneration",
    "BatchSampler",
    "GenerationResult",
    "IncrementalDetokenizer",
    "NumberListConstraint",
    "SamplingParams",
    "TextStream",
    "Tokenizer",
    "apply_penalties",
    "candidate_mask",
    "generate",
    "generate_batch",
    "mask_logits",
    "prefill",
    "stream",
]
