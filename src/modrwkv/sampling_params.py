"""`SamplingParams`: how to pick tokens and when to stop.

A module of its own, importing no torch, so that the command line can offer these defaults in its
options without loading the sampling code (`modrwkv.generation.sampling`, which applies them).
"""

from __future__ import annotations

import dataclasses
import math

from modrwkv.tokenizer import END_OF_TEXT


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens and when to stop, for one sequence.

    The defaults sample from the model's own distribution (temperature 1, no top-k/top-p, no
    penalties) and ban token 0 (end of text / padding), which RWKV World models must never emit.

    Attributes:
        max_new_tokens: stop ("length") after this many generated tokens.
        temperature: 0 for greedy decoding; otherwise probabilities are raised to 1/temperature.
        top_p: keep the smallest set of most probable tokens whose probability reaches top_p (1 = off).
        top_k: keep only the k most probable tokens (0 = off).
        presence_penalty: subtracted from the logit of every token already generated.
        frequency_penalty: subtracted once per (decayed) occurrence of a generated token.
        penalty_decay: occurrence counts are multiplied by this each step, so old repeats fade.
        stop_tokens: generation stops ("stop") when one of these is sampled; it is not part of the text.
        stop_strings: generation stops when the text contains one; the text is cut before it.
        banned_tokens: never sampled.
        seed: seeds a private random generator, so the same seed gives the same output.
        logprobs: also return each generated token's log-probability (`GenerationResult.logprobs`).
        top_logprobs: with `logprobs`, also the this many most likely tokens of each step with theirs
            (`GenerationResult.top_logprobs`).
    """

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    penalty_decay: float = 0.996
    stop_tokens: tuple[int, ...] = ()
    stop_strings: tuple[str, ...] = ()
    banned_tokens: tuple[int, ...] = (END_OF_TEXT,)
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int = 0

    def __post_init__(self) -> None:
        # Lists are accepted for convenience but stored as tuples so the params stay hashable.
        for name in ("stop_tokens", "stop_strings", "banned_tokens"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)):
                raise TypeError(f"{name} must be a sequence, not a single {type(value).__name__}")
            object.__setattr__(self, name, tuple(value))
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty", "penalty_decay"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must lie in (0, 1], got {self.top_p}")
        if self.top_logprobs < 0:
            raise ValueError(f"top_logprobs must be >= 0, got {self.top_logprobs}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0 <= self.penalty_decay <= 1:
            raise ValueError(f"penalty_decay must lie in [0, 1], got {self.penalty_decay}")
        if any(not isinstance(s, str) or not s for s in self.stop_strings):
            raise ValueError(f"stop_strings must be non-empty strings, got {self.stop_strings!r}")
        for name in ("stop_tokens", "banned_tokens"):
            if any(not isinstance(t, int) or t < 0 for t in getattr(self, name)):
                raise ValueError(f"{name} must be non-negative token ids, got {getattr(self, name)!r}")
        both = set(self.stop_tokens) & set(self.banned_tokens)
        if both:
            raise ValueError(f"token(s) {sorted(both)} are both stop and banned tokens, so they could never stop")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0
