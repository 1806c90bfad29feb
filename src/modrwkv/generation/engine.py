"""The decode engine: every caller that generates text (`generate`, the pipeline, chat sessions,
the server, evaluation) reads prompts with `prefill_steps` and decodes with a `DecodeBatch`.

- `prefill_steps` reads a prompt (token ids or embeddings, one row or a left-padded batch) in
  chunks of PREFILL_CHUNK_TOKENS positions, which bounds activation memory for any length and lets
  a scheduler decode running requests between two chunks.
- A `DecodeRow` is one sequence: its sampling settings, stop conditions, incremental text and an
  optional per-row `LogitsProcessor` (e.g. a grammar's allowed-token mask).
- A `DecodeBatch` decodes its rows together: each step samples one token for every row in one
  batched sampler call and feeds all of them in one batched model call. Rows join (`join`, after
  their prefill) and leave (finished, or `drop`ped) between steps: continuous batching. Rows never
  influence each other: each keeps its own state, penalties, random generator and stop conditions.

The model is only used through `lm(ids | inputs_embeds, state=, attention_mask=, logits=)` and
`lm.config.vocab_size`, the interface of `RWKV7`, whatever its weight format.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import weakref
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any, Literal

import torch

from modrwkv.lm import RWKV7, RWKV7State
from modrwkv.lm.ops.linear import linear, split_count

from .sampling import BatchSampler, SamplingParams
from .scoring import PromptScorer, TokenLogprob
from .streaming import IncrementalDetokenizer

log = logging.getLogger(__name__)

# Longest stretch of prompt read in one model call, for every caller. It bounds prefill memory
# (flat from 128 to 4096 tokens of context, docs/benchmarks.md) and, in the server, how long a newly
# arrived long prompt can pause everyone else's stream. Prefill speed is the same from 512 tokens up.
PREFILL_CHUNK_TOKENS = 512

FinishReason = Literal["stop", "length"]

LogitsProcessor = Callable[[Sequence[int], torch.Tensor], torch.Tensor]
"""A per-row hook on the next-token scores: called with the ids the row generated so far and its
logits [V] (after penalties and bans, before top-k/top-p/temperature), returns the logits to sample
from, e.g. with disallowed tokens set to -inf. Called once per row per step."""


@dataclasses.dataclass
class GenerationResult:
    """One finished reply, from any entry point.

    `token_ids` holds every sampled token, including a stop token that ended generation; `text`
    excludes the stop token's text and is cut before a stop string. `prompt_ids` are the ids read
    before the reply (placeholder ids at media positions), `cached_tokens` of them came from the
    prefix-state cache. `state` (when kept) is the model state after prompt and reply, so a
    conversation can continue from it. `logprobs` (with `SamplingParams(logprobs=True)`) holds the
    log-probability of each token of `token_ids` under the model's distribution after penalties,
    bans and logits processors (before temperature, top-k and top-p); `top_logprobs` (with
    `SamplingParams(top_logprobs=k)`) the k most likely (token, log-probability) pairs of each step.
    `prompt_logprobs` (when the prompt was read with a `PromptScorer`) scores the prompt's own
    tokens from the second on, under the model's log-softmax.
    """

    text: str
    token_ids: list[int]
    finish_reason: FinishReason
    prompt_ids: list[int]
    cached_tokens: int = 0
    stop: int | str | None = None  # the stop token or stop string that ended generation, if any
    state: RWKV7State | None = None
    logprobs: list[float] | None = None
    top_logprobs: list[list[tuple[int, float]]] | None = None
    prompt_logprobs: list[TokenLogprob] | None = None

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)


class DecodeRow:
    """One sequence being decoded: its sampler row, stop conditions and text.

    Created before its prompt is read, so that bad sampling settings fail before any model work.
    `keep_state`: the result carries the state after the reply. `tag` is the caller's handle (the
    server keeps its request there). `logits_processor`: see `LogitsProcessor`. `result` is set
    once the row finishes.
    """

    def __init__(
        self,
        params: SamplingParams,
        token_bytes: Callable[[int], bytes],
        vocab_size: int,
        *,
        prompt_ids: Sequence[int] = (),
        banned_tokens: Sequence[int] = (),
        logits_processor: LogitsProcessor | None = None,
        keep_state: bool = True,
        tag: Any = None,
        device: torch.device | str = "cpu",
    ) -> None:
        outside = sorted(t for t in (*params.stop_tokens, *params.banned_tokens, *banned_tokens) if t >= vocab_size)
        if outside:
            raise ValueError(f"token id(s) {outside} lie outside the vocabulary (ids 0 to {vocab_size - 1}): they "
                             "could never stop or be sampled")
        self.params = params
        self.stop_tokens = frozenset(params.stop_tokens)
        self.detokenizer = IncrementalDetokenizer(token_bytes, params.stop_strings)
        self.sampler = BatchSampler([params], vocab_size, device, banned_tokens)  # joins a batch's sampler
        self.prompt_ids = list(prompt_ids)
        self.logits_processor = logits_processor
        self.keep_state = keep_state
        self.tag = tag
        self.cached_tokens = 0
        self.prompt_logprobs: list[TokenLogprob] | None = None  # set by whoever read the prompt with a scorer
        self.token_ids: list[int] = []
        self.logprobs: list[float] = []
        self.top_logprobs: list[list[tuple[int, float]]] = []
        self.finish_reason: FinishReason | None = None
        self.stop: int | str | None = None
        self.result: GenerationResult | None = None

    def accept(self, token: int) -> str:
        """Records a sampled token, decides whether the reply is done, returns the text released."""
        self.token_ids.append(token)
        if token in self.stop_tokens:
            self.finish_reason, self.stop = "stop", token
            piece = self.detokenizer.finish()
        else:
            piece = self.detokenizer.push(token)
            if self.detokenizer.stop_string is None and len(self.token_ids) >= self.params.max_new_tokens:
                self.finish_reason = "length"
                piece += self.detokenizer.finish()
        if self.detokenizer.stop_string is not None:
            self.finish_reason, self.stop = "stop", self.detokenizer.stop_string
        return piece

    def final_text(self) -> str:
        return self.detokenizer.text

    def finish(self, state: RWKV7State | None) -> GenerationResult:
        assert self.finish_reason is not None
        self.result = GenerationResult(
            self.final_text(), list(self.token_ids), self.finish_reason, list(self.prompt_ids), self.cached_tokens,
            self.stop, state, list(self.logprobs) if self.params.logprobs else None,
            list(self.top_logprobs) if self.params.logprobs and self.params.top_logprobs else None,
            self.prompt_logprobs,
        )
        return self.result


_UNDECODABLE: weakref.WeakKeyDictionary[Any, dict[int, tuple[int, ...]]] = weakref.WeakKeyDictionary()
_UNDECODABLE_LOCK = threading.Lock()


def undecodable_ids(tokenizer: Any, vocab_size: int) -> list[int]:
    """Model ids the tokenizer has no bytes for (World models have 65536 rows for 65530 ids, and
    the placeholder ids of media positions); rows ban them, since they could not be shown and are
    untrained. Found by asking the tokenizer for every id (~10 ms for 65536), once per tokenizer
    and vocabulary size: a tokenizer's vocabulary does not change."""
    with _UNDECODABLE_LOCK:
        known = _UNDECODABLE.setdefault(tokenizer, {})
        if vocab_size not in known:
            missing = []
            for token in range(vocab_size):
                try:
                    tokenizer.token_bytes(token)
                except ValueError:
                    missing.append(token)
            known[vocab_size] = tuple(missing)
        return list(known[vocab_size])  # a copy: the cached ids stay as found


def prefill_steps(
    lm: RWKV7,
    *,
    input_ids: torch.Tensor | None = None,
    inputs_embeds: torch.Tensor | None = None,
    state: RWKV7State | None = None,
    attention_mask: torch.Tensor | None = None,
    want_logits: bool = True,
    scorer: PromptScorer | None = None,
) -> Generator[int, None, tuple[RWKV7State, torch.Tensor | None]]:
    """Reads [B, T] ids (or [B, T, C] embeddings) from `state` (the model's `init_state` when None)
    in chunks of PREFILL_CHUNK_TOKENS; yields the positions each model call read; returns (state, next-token
    logits [B, V] of each row's last real position, or None without `want_logits`). Left padding
    (`attention_mask` false) leaves a row's state untouched. `scorer` (one row, no padding) is
    given every position's final hidden state, to score the prompt's tokens in the same pass.
    Run it under `torch.inference_mode`."""
    inputs = input_ids if inputs_embeds is None else inputs_embeds
    T = inputs.shape[1]
    if T == 0:
        raise ValueError("cannot read an empty prompt")
    if scorer is not None and (inputs.shape[0] != 1 or attention_mask is not None):
        raise ValueError("a prompt scorer reads one unpadded row")
    logits = None
    for begin in range(0, T, PREFILL_CHUNK_TOKENS):
        end = min(begin + PREFILL_CHUNK_TOKENS, T)
        mask = None if attention_mask is None else attention_mask[:, begin:end]
        last_chunk_logits = want_logits and end == T
        logits_mode = "last" if last_chunk_logits and scorer is None else "none"
        if inputs_embeds is None:
            out = lm(inputs[:, begin:end], state=state, attention_mask=mask, logits=logits_mode)
        else:
            out = lm(inputs_embeds=inputs[:, begin:end], state=state, attention_mask=mask, logits=logits_mode)
        state, logits = out.state, out.logits
        if scorer is not None:
            scorer.read(lm, out.hidden[0])
            if last_chunk_logits:  # what logits="last" computes, from the hidden states at hand
                last = out.hidden[:, -1:]
                logits = linear(lm.head, last, split_count(last))[:, 0]
        yield end - begin
    assert state is not None
    return state, logits


def run_to_end(steps: Generator[Any, None, Any]) -> Any:
    """Drives a generator of steps (e.g. `prefill_steps`) and returns its result."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


class DecodeBatch:
    """The rows decoded together, their stacked states, next-token logits and one batched sampler."""

    def __init__(self, lm: RWKV7) -> None:
        self.lm = lm
        self.rows: list[DecodeRow] = []
        self._state: RWKV7State | None = None
        self._logits: torch.Tensor | None = None
        self._sampler: BatchSampler | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def join(self, rows: Sequence[DecodeRow], state: RWKV7State, logits: torch.Tensor) -> None:
        """Admits rows whose prompts have been read: `state` and next-token `logits` [n, V] hold
        their rows in the same order."""
        if state.batch_size != len(rows) or logits.shape[0] != len(rows):
            raise ValueError(f"{len(rows)} rows joined with a state of {state.batch_size} and {logits.shape[0]} logits rows")
        samplers = [row.sampler for row in rows]
        if self._state is None or self._logits is None or self._sampler is None:
            self._state, self._logits = state, logits
            self._sampler = BatchSampler.cat(samplers)
        else:
            self._state = RWKV7State.cat([self._state, state])
            self._logits = torch.cat([self._logits, logits])
            self._sampler = BatchSampler.cat([self._sampler, *samplers])
        self.rows.extend(rows)

    def drop(self, rows: Iterable[DecodeRow]) -> None:
        """Removes rows that will not finish (e.g. their client went away)."""
        gone = set(map(id, rows))
        self._keep([j for j, row in enumerate(self.rows) if id(row) not in gone])

    def _keep(self, keep: list[int]) -> None:
        if len(keep) == len(self.rows):
            return
        self.rows = [self.rows[j] for j in keep]
        if not keep:
            self._state = self._logits = self._sampler = None
            return
        assert self._state is not None and self._logits is not None and self._sampler is not None
        self._state = self._state.select(keep)
        self._logits = self._logits.index_select(0, torch.tensor(keep, device=self._logits.device))
        self._sampler.select(keep)

    def _process(self, scores: torch.Tensor) -> torch.Tensor:
        """Applies the rows' logits processors to their rows of the scores [B, V]."""
        for j, row in enumerate(self.rows):
            if row.logits_processor is not None:
                scores[j] = row.logits_processor(row.token_ids, scores[j])
        return scores

    @torch.inference_mode()
    def step(self) -> tuple[list[tuple[DecodeRow, str]], list[DecodeRow]]:
        """Samples and feeds one token for every row. Returns the text pieces released and the rows
        that finished (they leave the batch; their `result` is set)."""
        assert self._state is not None and self._logits is not None and self._sampler is not None
        processors = any(row.logits_processor is not None for row in self.rows)
        tokens = self._sampler.sample(self._logits, self._process if processors else None)
        if any(row.params.logprobs for row in self.rows):
            logprobs = self._sampler.logprobs(tokens).tolist()
            for row, value in zip(self.rows, logprobs):
                row.logprobs.append(value)
            top = max(row.params.top_logprobs for row in self.rows if row.params.logprobs)
            if top:
                values, ids = self._sampler.top_logprobs(top)
                for row, row_values, row_ids in zip(self.rows, values.tolist(), ids.tolist()):
                    if row.params.logprobs and row.params.top_logprobs:
                        row.top_logprobs.append(list(zip(row_ids, row_values))[: row.params.top_logprobs])
        pieces, keep, done = [], [], []
        for j, (row, token) in enumerate(zip(self.rows, tokens.tolist())):
            piece = row.accept(token)
            if piece:
                pieces.append((row, piece))
            (done if row.finish_reason else keep).append(j)
        if keep or any(self.rows[j].keep_state for j in done):
            out = self.lm(tokens.unsqueeze(1), state=self._state, logits="last" if keep else "none")
            self._state, self._logits = out.state, out.logits if keep else self._logits
        finished = []
        for j in done:
            row = self.rows[j]
            row.finish(self._state.select([j]) if row.keep_state else None)
            log.debug("a row finished (%s) after %d tokens", row.finish_reason, len(row.token_ids))
            finished.append(row)
        self._keep(keep)
        return pieces, finished
