"""Autoregressive generation with RWKV-7 from token ids or text: the plain-LM entry points of the
decode engine (`engine.py`).

Prompts of different lengths are left-padded and read in one batched pass (padding never touches a
row's state, so each row ends exactly as if it had been read alone). The decode loop then feeds one
token per active row; a row that stops (its stop token, stop string or token budget) leaves the
batch at once, so finished rows cost nothing. Because an RNN state is all that carries context,
generation can also start from any saved state, e.g. a cached system prompt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Sequence
from typing import Protocol

import torch

from modrwkv.lm import RWKV7, RWKV7State

from .engine import DecodeBatch, DecodeRow, GenerationResult, LogitsProcessor, prefill_steps, run_to_end, undecodable_ids
from .sampling import SamplingParams
from .streaming import TextStream

log = logging.getLogger(__name__)

Prompt = str | Sequence[int]
StartStates = RWKV7State | Sequence[RWKV7State | None] | None


class Tokenizer(Protocol):
    """What generation needs from a tokenizer (`modrwkv.tokenizer.WorldTokenizer` fits)."""

    def encode(self, text: str) -> list[int]: ...

    def token_bytes(self, token_id: int) -> bytes: ...


def _prompt_ids(tokenizer: Tokenizer, prompt: Prompt) -> list[int]:
    ids = tokenizer.encode(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]
    if not ids:
        raise ValueError(
            "a prompt must have at least one token: generation needs the logits after its last token"
        )
    return ids


def _start_state(model: RWKV7, states: StartStates, batch_size: int) -> RWKV7State:
    """One batch state from nothing (the model's `init_state`: zeros, or a tuned initial state), a
    shared one-row state, a batch state, or per-prompt states."""
    if states is None:
        return model.init_state(batch_size)
    if isinstance(states, RWKV7State):
        if states.batch_size == 1:
            states = states.expand(batch_size)
        elif states.batch_size != batch_size:
            allowed = "1 row" if batch_size == 1 else f"1 row (shared) or {batch_size} rows (one per prompt)"
            raise ValueError(f"the start state has {states.batch_size} rows; {batch_size} prompt(s) need {allowed}")
        return states.to(model.device, model.dtype)
    if len(states) != batch_size:
        raise ValueError(f"got {len(states)} start states for {batch_size} prompts")
    parts = []
    for i, s in enumerate(states):
        if s is not None and s.batch_size != 1:
            raise ValueError(f"start state {i} has batch size {s.batch_size}; per-prompt states need 1")
        parts.append(model.init_state(1) if s is None else s.to(model.device, model.dtype))
    return RWKV7State.cat(parts)


class BatchGeneration:
    """One batched generation run; `events()` drives it and yields (prompt index, text piece).

    Most callers want `generate`, `generate_batch` or `stream`; this class is for consumers that
    stream several prompts at once. Model calls run under `torch.inference_mode`, but the mode is
    never held across a `yield`, so the consumer's code runs in normal mode. `logits_processors`:
    one per prompt (or None), see `LogitsProcessor`.
    """

    def __init__(
        self,
        model: RWKV7,
        tokenizer: Tokenizer,
        prompts: Sequence[Prompt],
        params: SamplingParams | Sequence[SamplingParams] | None = None,
        states: StartStates = None,
        logits_processors: Sequence[LogitsProcessor | None] | None = None,
    ) -> None:
        if isinstance(prompts, str) or not prompts:
            raise ValueError("prompts must be a non-empty list of prompts (text or token ids)")
        if params is None or isinstance(params, SamplingParams):
            params = [params or SamplingParams()] * len(prompts)
        if len(params) != len(prompts):
            raise ValueError(f"got {len(params)} sampling params for {len(prompts)} prompts")
        processors = list(logits_processors) if logits_processors is not None else [None] * len(prompts)
        if len(processors) != len(prompts):
            raise ValueError(f"got {len(processors)} logits processors for {len(prompts)} prompts")
        self.model = model
        vocab = model.config.vocab_size
        banned = undecodable_ids(tokenizer, vocab)
        self.rows = [
            DecodeRow(sp, tokenizer.token_bytes, vocab, prompt_ids=_prompt_ids(tokenizer, p), banned_tokens=banned,
                      logits_processor=proc, device=model.device)
            for p, sp, proc in zip(prompts, params, processors)
        ]
        self._start = _start_state(model, states, len(prompts))
        self._started = False

    @torch.inference_mode()
    def _prefill(self) -> tuple[RWKV7State, torch.Tensor]:
        """Reads all prompts, left-padded; returns the batch state and next-token logits [B, V]."""
        lengths = [len(row.prompt_ids) for row in self.rows]
        B, T = len(lengths), max(lengths)
        ids = torch.zeros(B, T, dtype=torch.long)
        mask = torch.zeros(B, T, dtype=torch.bool)
        for i, row in enumerate(self.rows):
            ids[i, T - len(row.prompt_ids) :] = torch.tensor(row.prompt_ids)
            mask[i, T - len(row.prompt_ids) :] = True
        uniform = min(lengths) == T  # no padding: the mask-free path is faster
        log.debug("prefill: %d prompt(s), %d to %d tokens", B, min(lengths), T)
        return run_to_end(prefill_steps(self.model, input_ids=ids.to(self.model.device), state=self._start,
                                        attention_mask=None if uniform else mask.to(self.model.device)))

    def events(self) -> Generator[tuple[int, str], None, list[GenerationResult]]:
        """Yields (prompt index, new text) as text becomes final; returns one result per prompt.
        A run generates once: call this a single time."""
        if self._started:
            raise RuntimeError("this generation has already run; create a new BatchGeneration")
        self._started = True
        index = {id(row): i for i, row in enumerate(self.rows)}
        batch = DecodeBatch(self.model)
        batch.join(self.rows, *self._prefill())
        while batch.rows:
            pieces, _ = batch.step()
            for row, piece in pieces:
                yield index[id(row)], piece
        results = [row.result for row in self.rows if row.result is not None]
        assert len(results) == len(self.rows)
        for r in results:  # outside inference mode, so the states can take part in autograd later
            assert r.state is not None
            r.state = r.state.clone()
        return results


def generate_batch(
    model: RWKV7,
    tokenizer: Tokenizer,
    prompts: Sequence[Prompt],
    params: SamplingParams | Sequence[SamplingParams] | None = None,
    *,
    states: StartStates = None,
    on_text: Callable[[int, str], None] | None = None,
    logits_processors: Sequence[LogitsProcessor | None] | None = None,
) -> list[GenerationResult]:
    """Generates a completion for every prompt at once.

    `params` is shared or one per prompt. `states`: start from these states instead of zeros (one
    state shared by all prompts, a batch state, or one per prompt with None for the initial state); the prompt
    is then read as a continuation. `on_text(prompt index, piece)` receives text as it becomes final.
    `logits_processors`: one per prompt (or None), e.g. an allowed-token mask; see `LogitsProcessor`.
    """
    events = BatchGeneration(model, tokenizer, prompts, params, states, logits_processors).events()
    while True:
        try:
            row, piece = next(events)
        except StopIteration as end:
            return end.value
        if on_text is not None:
            on_text(row, piece)


def generate(
    model: RWKV7,
    tokenizer: Tokenizer,
    prompt: Prompt,
    params: SamplingParams | None = None,
    *,
    state: RWKV7State | None = None,
    on_text: Callable[[str], None] | None = None,
    logits_processor: LogitsProcessor | None = None,
) -> GenerationResult:
    """Generates a completion of one prompt (text or token ids), optionally from a start `state`."""
    callback = None if on_text is None else (lambda _row, piece: on_text(piece))
    return generate_batch(model, tokenizer, [prompt], params, states=state, on_text=callback,
                          logits_processors=[logits_processor])[0]


def stream(
    model: RWKV7,
    tokenizer: Tokenizer,
    prompt: Prompt,
    params: SamplingParams | None = None,
    *,
    state: RWKV7State | None = None,
    logits_processor: LogitsProcessor | None = None,
) -> TextStream[GenerationResult]:
    """Iterates over the completion's text as it is produced; `.result` afterwards gives the
    `GenerationResult`. Arguments are checked at once; the model runs as pieces are requested."""

    run = BatchGeneration(model, tokenizer, [prompt], params, state, [logits_processor])  # validates now, runs lazily

    def pieces() -> Generator[str, None, GenerationResult]:
        events = run.events()
        while True:
            try:
                _row, piece = next(events)
            except StopIteration as end:
                return end.value[0]
            yield piece

    return TextStream(pieces())


def prefill(
    model: RWKV7, tokenizer: Tokenizer, prompt: Prompt, state: RWKV7State | None = None
) -> RWKV7State:
    """The state after reading `prompt` (from `state`, or the initial state), e.g. a system prompt to save and
    reuse with `RWKV7State.save`. Generation from it needs at least one more prompt token, since a
    state does not hold the logits of the last token read."""
    ids = torch.tensor([_prompt_ids(tokenizer, prompt)], device=model.device)
    with torch.inference_mode():
        current, _ = run_to_end(prefill_steps(model, input_ids=ids, state=_start_state(model, state, 1), want_logits=False))
    return current.clone()  # a normal tensor again, usable with autograd
