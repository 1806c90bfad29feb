"""Multimodal prompts for the decode engine (`modrwkv.generation.engine`), for the Python API,
the chat session, the server and evaluation.

`InferenceEngine.prefill` reads an `EncodedPrompt` (media through the encoders and adapters, text
through the embedding) into a state and next-token logits, reusing and filling the prefix-state
cache. `Row` is a decode row that also drops the chat template's content prefix from the reply;
rows then decode together in a `DecodeBatch` (`InferenceEngine.batch()`), joining and leaving
between steps (continuous batching).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Generator
from typing import Any

import torch

from ..generation import NumberListConstraint, PromptScorer, SamplingParams, TokenLogprob, mask_logits
from ..generation.engine import (
    PREFILL_CHUNK_TOKENS,
    DecodeBatch,
    DecodeRow,
    LogitsProcessor,
    prefill_steps,
    run_to_end,
)
from ..lm import RWKV7State
from ..multimodal import ModRWKV
from ..tokenizer import WorldTokenizer
from .cache import PrefixStateCache
from .prompt import EncodedPrompt

log = logging.getLogger(__name__)

__all__ = ["PREFILL_CHUNK_TOKENS", "InferenceEngine", "Prefilled", "Row"]


@dataclasses.dataclass
class Prefilled:
    """A prompt that has been read: its state and the logits for the first new token [1, V];
    `prompt_logprobs` when it was read with `score_top` (see `InferenceEngine.prefill_steps`)."""

    state: RWKV7State
    logits: torch.Tensor
    cached_tokens: int
    prompt_logprobs: list[TokenLogprob] | None = None


def constraint_processor(constraint: NumberListConstraint) -> LogitsProcessor:
    """A constraint's allowed ids as a per-row logits processor."""
    return lambda generated, logits: mask_logits(logits, constraint.allowed(generated))


class Row(DecodeRow):
    """A decode row for a chat reply: `text` excludes the template's leading content prefix (the
    space after "Assistant:"), which belongs to the format, not to the answer. `constraint`, if
    any, limits each step to the tokens it allows (see `generation.constraints`); it runs as the
    row's logits processor."""

    def __init__(
        self,
        engine: InferenceEngine,
        prompt: EncodedPrompt,
        params: SamplingParams,
        *,
        keep_state: bool = False,
        tag: Any = None,
        logits_processor: LogitsProcessor | None = None,
        constraint: NumberListConstraint | None = None,
        logprobs: int | None = None,
        raw: bool = False,
    ) -> None:
        """`logprobs`: record each sampled token's log-probability and that many alternatives
        (None: off). `raw`: the reply is a plain continuation, not a chat turn (its text keeps
        a leading space)."""
        if logprobs is not None:
            params = dataclasses.replace(params, logprobs=True, top_logprobs=logprobs)
        if constraint is not None:
            if logits_processor is not None:
                raise ValueError("pass a constraint or a logits processor, not both")
            logits_processor = constraint_processor(constraint)
        super().__init__(params, engine.tokenizer.token_bytes, engine.vocab_size, prompt_ids=prompt.ids,
                         banned_tokens=engine.banned_tokens, logits_processor=logits_processor,
                         keep_state=keep_state, tag=tag, device=engine.device)
        self.prompt = prompt
        prefix = "" if raw else engine.content_prefix
        self._content_prefix = prefix  # dropped from the start of the reply, if there
        self._lead = prefix  # what of it may still be ahead in the stream
        self._held = ""

    def accept(self, token: int) -> str:
        return self._strip_lead(super().accept(token))

    def _strip_lead(self, piece: str) -> str:
        """Withholds text until it is known whether the reply starts with the content prefix."""
        if not self._lead:
            return piece
        self._held += piece
        if self._lead.startswith(self._held) and self.finish_reason is None:
            return ""
        text = self._held.removeprefix(self._lead)
        self._lead = self._held = ""
        return text

    def final_text(self) -> str:
        return self.detokenizer.text.removeprefix(self._content_prefix)


class InferenceEngine:
    """Reads prompts into states (with the prefix-state cache) and creates decode rows."""

    def __init__(self, model: ModRWKV, tokenizer: WorldTokenizer, content_prefix: str, cache: PrefixStateCache) -> None:
        self.model = model
        self.lm = model.lm
        self.tokenizer = tokenizer
        self.content_prefix = content_prefix
        self.cache = cache
        self.vocab_size = model.lm.config.vocab_size
        # Ids a reply never contains (the rule transformers' generate() shares, see ModRWKV.unspoken_token_ids).
        self.banned_tokens = model.unspoken_token_ids(tokenizer)

    @property
    def device(self) -> torch.device:
        return self.lm.device

    def prefill(self, prompt: EncodedPrompt, state: RWKV7State | None = None) -> Prefilled:
        """Reads `prompt` from `state` (or from the initial state, then with the prefix-state cache)."""
        return run_to_end(self.prefill_steps(prompt, state))

    def batch(self) -> DecodeBatch:
        """An empty decode batch for rows of this engine."""
        return DecodeBatch(self.lm)

    def admit(self, batch: DecodeBatch, row: Row, prefilled: Prefilled) -> None:
        """Adds a row whose prompt has been read to `batch`."""
        row.cached_tokens = prefilled.cached_tokens
        row.prompt_logprobs = prefilled.prompt_logprobs
        batch.join([row], prefilled.state, prefilled.logits)

    @torch.inference_mode()
    def prefill_steps(
        self, prompt: EncodedPrompt, state: RWKV7State | None = None, score_top: int | None = None
    ) -> Generator[int, None, Prefilled]:
        """`prefill` in steps of at most PREFILL_CHUNK_TOKENS positions: it yields the number of
        positions each model call read, so that a scheduler can decode running requests in between
        instead of stalling them for a whole long prompt. Returns the `Prefilled` prompt. With
        `score_top` (a number of alternatives), the prompt's own tokens are scored in the same pass
        (`Prefilled.prompt_logprobs`); every position is then read, none taken from the cache."""
        if not prompt.ids:
            raise ValueError("cannot generate from an empty prompt")
        scorer = None if score_top is None else PromptScorer(prompt.ids, score_top)
        start, stores = 0, set()
        if state is None and self.cache.max_bytes > 0 and scorer is None:
            for point in reversed(prompt.split_points()):
                found = self.cache.get(prompt.digest(point))
                if found is not None:
                    start, state = point, found
                    break
            stores = set(prompt.store_points())
        cached = start
        if state is not None:
            state = state.to(self.device, self.lm.dtype)
        logits = None
        for end in [*(p for p in prompt.split_points() if p > start), len(prompt)]:
            state, logits = yield from self._read(prompt, start, end, state, end == len(prompt), scorer)
            if end in stores:
                self.cache.put(prompt.digest(end), state)
            start = end
        log.debug("prefill: %d tokens, %d of them from the prefix cache", len(prompt), cached)
        assert state is not None and logits is not None
        return Prefilled(state, logits, cached, None if scorer is None else scorer.scores)

    def _read(
        self, prompt: EncodedPrompt, start: int, end: int, state: RWKV7State | None, want_logits: bool,
        scorer: PromptScorer | None,
    ) -> Generator[int, None, tuple[RWKV7State, torch.Tensor | None]]:
        """Runs positions [start, end): media items through their encoders in one batch per
        modality, then the LM in chunks (`prefill_steps`, yielding after each)."""
        ids = torch.tensor([prompt.ids[start:end]], dtype=torch.long, device=self.device)
        spans = prompt.spans_in(start, end)
        embeds = None
        if spans:
            media = {}
            for modality in sorted({s.modality for s in spans}):
                encoder = self.model.encoders[modality]
                batch = encoder.collate([s.prepared for s in spans if s.modality == modality])
                media[modality] = {k: v.to(encoder.device) for k, v in batch.items()}
            embeds = self.model.embed(ids, media)
        inputs = {"input_ids": ids} if embeds is None else {"inputs_embeds": embeds}
        return (yield from prefill_steps(self.lm, **inputs, state=state, want_logits=want_logits, scorer=scorer))

    @torch.inference_mode()
    def feed(self, state: RWKV7State, ids: list[int]) -> RWKV7State:
        """The state after reading text ids (e.g. a turn end the reply did not produce)."""
        return self.lm(torch.tensor([ids], device=self.device), state=state, logits="none").state
