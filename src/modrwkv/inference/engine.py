"""The decode engine shared by the Python API, the chat session and the server.

`InferenceEngine.prefill` reads an `EncodedPrompt` (media through the encoders and adapters, text
through the embedding) into a state and next-token logits, reusing and filling the prefix-state
cache. A `DecodeBatch` then decodes any number of sequences together: every step samples one token
per row and feeds all of them in one batched model call. Rows may join (after their own prefill)
and leave (finished or cancelled) between steps, which is continuous batching; each row keeps its
own state, sampler and stop conditions, so rows never influence each other.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Generator, Iterable
from typing import Any

import torch

from ..generation import BatchSampler, NumberListConstraint, SamplingParams, mask_logits
from ..generation.generate import FinishReason, ReplyTracker
from ..lm import RWKV7State
from ..multimodal import ModRWKV
from ..tokenizer import WorldTokenizer
from .cache import PrefixStateCache
from .prompt import EncodedPrompt

log = logging.getLogger(__name__)

# Longest stretch of prompt read in one model call. The scheduler decodes running requests between
# two calls, so this bounds how long a newly arrived long prompt can pause everyone else's stream.
PREFILL_CHUNK_TOKENS = 512


@dataclasses.dataclass
class ChatResult:
    """One completed reply.

    `text` excludes the template's leading space, the stop token's text and any stop string.
    `token_ids` are the sampled ids (with the stop token, if one ended the reply); `prompt_ids`
    the ids read before them (placeholder ids at media positions). `cached_tokens` of the prompt
    came from the prefix-state cache. `state` (when asked for) follows prompt and reply.
    """

    text: str
    token_ids: list[int]
    finish_reason: FinishReason
    prompt_ids: list[int]
    cached_tokens: int
    stop: int | str | None = None
    state: RWKV7State | None = None
    logprobs: list[TokenLogprob] | None = None  # one per token_ids entry, when the row asked for them

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)


@dataclasses.dataclass
class TokenLogprob:
    """A sampled token's log-probability under the model (log-softmax of the raw logits, before
    temperature, penalties or bans) and the `top` most likely tokens with theirs, best first."""

    token: int
    logprob: float
    top: list[tuple[int, float]]


def token_logprobs(logits: torch.Tensor, tokens: list[int], top: int) -> list[TokenLogprob]:
    """`TokenLogprob`s of `tokens[i]` under `logits[i]` ([N, V])."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    chosen = logp.gather(1, torch.tensor(tokens, device=logp.device).unsqueeze(1)).squeeze(1).tolist()
    if top > 0:
        values, indices = logp.topk(top, dim=-1)
        alternatives = [list(zip(i, v)) for i, v in zip(indices.tolist(), values.tolist())]
    else:
        alternatives = [[] for _ in tokens]
    return [TokenLogprob(t, lp, alt) for t, lp, alt in zip(tokens, chosen, alternatives)]


@dataclasses.dataclass
class Prefilled:
    """A prompt that has been read: its state and the logits for the first new token [1, V]."""

    state: RWKV7State
    logits: torch.Tensor
    cached_tokens: int


class Row(ReplyTracker):
    """One sequence being decoded: its sampler, text decoding and stop conditions.

    Created before the prompt is read, so that bad sampling settings fail before any model work.
    `tag` is the caller's handle (the server keeps its request there). `constraint`, if any,
    limits each step to the tokens it allows (see `generation.constraints`). `result` is set once
    the row finishes.
    """

    def __init__(
        self,
        engine: InferenceEngine,
        prompt: EncodedPrompt,
        params: SamplingParams,
        *,
        keep_state: bool = False,
        tag: Any = None,
        constraint: NumberListConstraint | None = None,
        logprobs: int | None = None,
        raw: bool = False,
    ) -> None:
        """`logprobs`: record each sampled token's log-probability and that many alternatives
        (None: off). `raw`: the reply is a plain continuation, not a chat turn (its text keeps
        a leading space)."""
        super().__init__(params, engine.tokenizer.token_bytes)
        self.constraint = constraint
        self.prompt = prompt
        self.cached_tokens = 0  # set from the prefill, for the usage report
        self.keep_state = keep_state
        self.tag = tag
        self.sampler = BatchSampler([params], engine.vocab_size, engine.device, engine.banned_tokens)
        self.result: ChatResult | None = None
        self.top_logprobs = logprobs
        self.logprobs: list[TokenLogprob] = []
        prefix = "" if raw else engine.content_prefix
        self._content_prefix = prefix  # dropped from the start of the reply, if there
        self._lead = prefix  # what of it may still be ahead in the stream
        self._held = ""

    def accept(self, token: int) -> str:
        return self._strip_lead(super().accept(token))

    def _strip_lead(self, piece: str) -> str:
        """Withholds text until it is known whether the reply starts with the template's content
        prefix (the space after "Assistant:"), which belongs to the format, not to the answer."""
        if not self._lead:
            return piece
        self._held += piece
        if self._lead.startswith(self._held) and self.finish_reason is None:
            return ""
        text = self._held.removeprefix(self._lead)
        self._lead = self._held = ""
        return text

    def finish(self, state: RWKV7State | None) -> ChatResult:
        assert self.finish_reason is not None
        text = self.detokenizer.text.removeprefix(self._content_prefix)
        self.result = ChatResult(text, list(self.token_ids), self.finish_reason, list(self.prompt.ids),
                                 self.cached_tokens, self.stop, state,
                                 list(self.logprobs) if self.top_logprobs is not None else None)
        return self.result


class InferenceEngine:
    """Reads prompts into states (with the prefix-state cache) and creates decode rows."""

    def __init__(self, model: ModRWKV, tokenizer: WorldTokenizer, content_prefix: str, cache: PrefixStateCache) -> None:
        self.model = model
        self.lm = model.lm
        self.tokenizer = tokenizer
        self.content_prefix = content_prefix
        self.cache = cache
        self.vocab_size = model.lm.config.vocab_size
        # Ids the tokenizer cannot show (the rows above the World vocabulary, placeholders among them).
        self.banned_tokens = [t for t in range(self.vocab_size) if not _decodable(tokenizer, t)]

    @property
    def device(self) -> torch.device:
        return self.lm.device

    def prefill(self, prompt: EncodedPrompt, state: RWKV7State | None = None) -> Prefilled:
        """Reads `prompt` from `state` (or from zeros, then with the prefix-state cache)."""
        steps = self.prefill_steps(prompt, state)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value

    @torch.inference_mode()
    def prefill_steps(
        self, prompt: EncodedPrompt, state: RWKV7State | None = None
    ) -> Generator[int, None, Prefilled]:
        """`prefill` in steps of at most PREFILL_CHUNK_TOKENS positions: it yields the number of
        positions each model call read, so that a scheduler can decode running requests in between
        instead of stalling them for a whole long prompt. Returns the `Prefilled` prompt."""
        if not prompt.ids:
            raise ValueError("cannot generate from an empty prompt")
        start, stores = 0, set()
        if state is None and self.cache.max_bytes > 0:
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
            state, logits = yield from self._read(prompt, start, end, state, want_logits=end == len(prompt))
            if end in stores:
                self.cache.put(prompt.digest(end), state)
            start = end
        log.debug("prefill: %d tokens, %d of them from the prefix cache", len(prompt), cached)
        assert state is not None and logits is not None
        return Prefilled(state, logits, cached)

    def _read(
        self, prompt: EncodedPrompt, start: int, end: int, state: RWKV7State | None, want_logits: bool
    ) -> Generator[int, None, tuple[RWKV7State, torch.Tensor | None]]:
        """Runs positions [start, end): media items through their encoders in one batch per
        modality, then the LM in chunks (yielding after each), which also bounds activation memory."""
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
        logits = None
        for begin in range(0, end - start, PREFILL_CHUNK_TOKENS):
            stop = min(begin + PREFILL_CHUNK_TOKENS, end - start)
            inputs = {"input_ids": ids[:, begin:stop]} if embeds is None else {"inputs_embeds": embeds[:, begin:stop]}
            last = want_logits and stop == end - start
            out = self.lm(**inputs, state=state, logits="last" if last else "none")
            state, logits = out.state, out.logits
            yield stop - begin
        assert state is not None
        return state, logits

    @torch.inference_mode()
    def feed(self, state: RWKV7State, ids: list[int]) -> RWKV7State:
        """The state after reading text ids (e.g. a turn end the reply did not produce)."""
        return self.lm(torch.tensor([ids], device=self.device), state=state, logits="none").state


def _decodable(tokenizer: WorldTokenizer, token: int) -> bool:
    try:
        tokenizer.token_bytes(token)
    except ValueError:
        return False
    return True


class DecodeBatch:
    """The rows decoded together, their stacked states and next-token logits."""

    def __init__(self, engine: InferenceEngine) -> None:
        self.engine = engine
        self.rows: list[Row] = []
        self._state: RWKV7State | None = None
        self._logits: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def join(self, row: Row, prefilled: Prefilled) -> None:
        if self._state is None or self._logits is None:
            self._state, self._logits = prefilled.state, prefilled.logits
        else:
            self._state = RWKV7State.cat([self._state, prefilled.state])
            self._logits = torch.cat([self._logits, prefilled.logits])
        self.rows.append(row)

    def drop(self, rows: Iterable[Row]) -> None:
        """Removes rows that will not finish (e.g. their client went away)."""
        gone = set(map(id, rows))
        keep = [j for j, row in enumerate(self.rows) if id(row) not in gone]
        self._keep(keep)

    def _keep(self, keep: list[int]) -> None:
        if len(keep) == len(self.rows):
            return
        self.rows = [self.rows[j] for j in keep]
        if not keep:
            self._state = self._logits = None
            return
        assert self._state is not None and self._logits is not None
        index = torch.tensor(keep, device=self._logits.device)
        self._state = self._state.select(keep)
        self._logits = self._logits.index_select(0, index)

    def _row_logits(self, j: int, row: Row) -> torch.Tensor:
        assert self._logits is not None
        logits = self._logits[j : j + 1]
        return logits if row.constraint is None else mask_logits(logits, row.constraint.allowed(row.token_ids))

    @torch.inference_mode()
    def step(self) -> tuple[list[tuple[Row, str]], list[Row]]:
        """Samples and feeds one token for every row. Returns the text pieces released and the rows
        that finished (they leave the batch; their `result` is set)."""
        assert self._state is not None and self._logits is not None
        tokens = torch.cat([row.sampler.sample(self._row_logits(j, row)) for j, row in enumerate(self.rows)])
        vocab = self.engine.vocab_size
        for j, (row, token) in enumerate(zip(self.rows, tokens.tolist())):
            if row.top_logprobs is not None:  # the model's own distribution, before any constraint
                row.logprobs += token_logprobs(self._logits[j : j + 1, :vocab], [token], row.top_logprobs)
        pieces, keep, done = [], [], []
        for j, (row, token) in enumerate(zip(self.rows, tokens.tolist())):
            piece = row.accept(token)
            if piece:
                pieces.append((row, piece))
            (done if row.finish_reason else keep).append(j)
        if keep or any(self.rows[j].keep_state for j in done):
            out = self.engine.lm(tokens.unsqueeze(1), state=self._state, logits="last" if keep else "none")
            self._state, self._logits = out.state, out.logits if keep else self._logits
        finished = []
        for j in done:
            row = self.rows[j]
            row.finish(self._state.select([j]) if row.keep_state else None)
            finished.append(row)
        self._keep(keep)
        return pieces, finished
