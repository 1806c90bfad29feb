"""Text generation with RWKV-7: the decode engine, sampling, streaming and resuming from states."""

from .constraints import NumberListConstraint, mask_logits
from .engine import (
    PREFILL_CHUNK_TOKENS,
    DecodeBatch,
    DecodeRow,
    FinishReason,
    GenerationResult,
    LogitsProcessor,
    prefill_steps,
    run_to_end,
)
from .generate import BatchGeneration, Tokenizer, generate, generate_batch, prefill, stream
from .sampling import BatchSampler, SamplingParams, apply_penalties, candidate_mask
from .scoring import PromptScorer, TokenLogprob
from .streaming import IncrementalDetokenizer, TextStream

__all__ = [
    "PREFILL_CHUNK_TOKENS",
    "BatchGeneration",
    "BatchSampler",
    "DecodeBatch",
    "DecodeRow",
    "FinishReason",
    "GenerationResult",
    "IncrementalDetokenizer",
    "LogitsProcessor",
    "NumberListConstraint",
    "PromptScorer",
    "SamplingParams",
    "TextStream",
    "TokenLogprob",
    "Tokenizer",
    "apply_penalties",
    "candidate_mask",
    "generate",
    "generate_batch",
    "mask_logits",
    "prefill",
    "prefill_steps",
    "run_to_end",
    "stream",
]
