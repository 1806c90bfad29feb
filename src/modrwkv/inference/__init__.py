"""Inference: the chat pipeline, multi-turn sessions with a carried RNN state, the prefix-state
cache and the continuous-batching decode engine that the server builds on."""

from .cache import PrefixStateCache
from .engine import InferenceEngine, Prefilled, Row
from .pipeline import ChatRequest, ModRWKVPipeline, SeriesForecast, TranscribedSegment, Transcription
from .prompt import EncodedPrompt, MediaSpan, build_sample, encode_sample
from .session import ChatSession

__all__ = [
    "ChatRequest",
    "ChatSession",
    "EncodedPrompt",
    "InferenceEngine",
    "MediaSpan",
    "ModRWKVPipeline",
    "Prefilled",
    "PrefixStateCache",
    "Row",
    "SeriesForecast",
    "TranscribedSegment",
    "Transcription",
    "build_sample",
    "encode_sample",
]
