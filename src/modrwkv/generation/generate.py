"""Autoregressive generation with RWKV-7: batched prefill, then a decode loop that shrinks.

Prompts of different lengths are left-padded and read in one batched pass (padding never touches a
row's state, so each row ends exactly as if it had been read alone). The decode loop then feeds one
token per active row; a row that stops (its stop token, stop string or token budget) leaves the
batch at once, so finished rows cost nothing. Because an RNN state is all that carries context,
generation can also start from any saved state, e.g. a cached system prompt.

The model is only used through `model(ids, state=, attention_mask=, logits=)`, `init_state`,
`config.vocab_size`, `device` and `dtype`, the interface of `RWKV7`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Generator, Sequence
from typing import Literal, Protocol

import torch

from modrwkv.lm import RWKV7, RWKV7State

from .sampling import BatchSampler, SamplingParams
from .streaming import IncrementalDetokenizer, TextStream

log = logging.getLogger(__name__)

# Prompts are read in chunks of this many tokens, which bounds prefill memory for long prompts.
PREFILL_CHUNK_TOKENS = 1024

FinishReason = Literal["stop", "length"]
Prompt = str | Sequence[int]
StartStates = RWKV7State | Sequence[RWKV7State | None] | None


class Tokenizer(Protocol):
    """What generation needs from a tokenizer (`modrwkv.tokenizer.WorldTokenizer` fits)."""

    def encode(self, text: str) -> list[int]: ...

    def token_bytes(self, token_id: int) -> bytes: ...


@dataclasses.dataclass
class GenerationResult:
    """The outcome of generating from one prompt.

    `token_ids` holds every sampled token, including a stop token that ended generation, and
    `state` is the model state after reading the prompt and all of `token_ids`, so a conversation
    can continue from it. `text` excludes the stop token's text and is cut before a stop string.
    """

    text: str
    token_ids: list[int]
    finish_reason: FinishReason
    prompt_tokens: int
    state: RWKV7State
    stop: int | str | None = None  # the stop token or stop string that ended generation, if any


class ReplyTracker:
    """One reply as it is sampled: its tokens, its text, and the stop condition that ended it
    (a stop token, a stop string or the token budget). Shared by `generate` and the inference engine."""

    def __init__(self, params: SamplingParams, token_bytes: Callable[[int], bytes]) -> None:
        self.params = params
        self.stop_tokens = frozenset(params.stop_tokens)
        self.detokenizer = IncrementalDetokenizer(token_bytes, params.stop_strings)
        self.token_ids: list[int] = []
        self.finish_reason: FinishReason | None = None
        self.stop: int | str | None = None

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


class _Sequence(ReplyTracker):
    """A reply of `generate`, with the prompt it continues."""

    def __init__(self, prompt_ids: list[int], params: SamplingParams, tokenizer: Tokenizer) -> None:
        super().__init__(params, tokenizer.token_bytes)
        self.prompt_ids = prompt_ids

    def result(self, state: RWKV7State) -> GenerationResult:
        assert self.finish_reason is not None
        return GenerationResult(
            text=self.detokenizer.text,
            token_ids=list(self.token_ids),
            finish_reason=self.finish_reason,
            prompt_tokens=len(self.prompt_ids),
            state=state,
            stop=self.stop,
        )


def _undecodable_ids(tokenizer: Tokenizer, vocab_size: int) -> list[int]:
    """Model ids the tokenizer has no bytes for (World models have 65536 rows for 65530 ids);
    they are banned, since they could not be shown and are untrained."""
    missing = []
    for token in range(vocab_size):
        try:
            tokenizer.token_bytes(token)
        except ValueError:
            missing.append(token)
    return missing


def _prompt_ids(tokenizer: Tokenizer, prompt: Prompt) -> list[int]:
    ids = tokenizer.encode(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]
    if not ids:
        raise ValueError(
            "a prompt must have at least one token: generation needs the logits after its last token"
        )
    return ids


def _start_state(model: RWKV7, states: StartStates, batch_size: int) -> RWKV7State:
    """One batch state from nothing (zeros), a shared one-row state, a batch state, or per-prompt states."""
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
    stream several prompts at once (e.g. a server). Model calls run under `torch.inference_mode`,
    but the mode is never held across a `yield`, so the consumer's code runs in normal mode.
    """

    def __init__(
        self,
        model: RWKV7,
        tokenizer: Tokenizer,
        prompts: Sequence[Prompt],
        params: SamplingParams | Sequence[SamplingParams] | None = None,
        states: StartStates = None,
    ) -> None:
        if isinstance(prompts, str) or not prompts:
            raise ValueError("prompts must be a non-empty list of prompts (text or token ids)")
        if params is None or isinstance(params, SamplingParams):
            params = [params or SamplingParams()] * len(prompts)
        if len(params) != len(prompts):
            raise ValueError(f"got {len(params)} sampling params for {len(prompts)} prompts")
        self.model = model
        self.sequences = [_Sequence(_prompt_ids(tokenizer, p), sp, tokenizer) for p, sp in zip(prompts, params)]
        self._start = _start_state(model, states, len(prompts))
        vocab = model.config.vocab_size
        self._sampler = BatchSampler(params, vocab, model.device, _undecodable_ids(tokenizer, vocab))
        self._results: list[GenerationResult | None] = [None] * len(prompts)
        self._started = False

    @torch.inference_mode()
    def _prefill(self) -> tuple[RWKV7State, torch.Tensor]:
        """Reads all prompts, left-padded; returns the batch state and next-token logits [B, V]."""
        lengths = [len(s.prompt_ids) for s in self.sequences]
        B, T = len(lengths), max(lengths)
        ids = torch.zeros(B, T, dtype=torch.long)
        mask = torch.zeros(B, T, dtype=torch.bool)
        for row, seq in enumerate(self.sequences):
            ids[row, T - len(seq.prompt_ids) :] = torch.tensor(seq.prompt_ids)
            mask[row, T - len(seq.prompt_ids) :] = True
        ids, mask = ids.to(self.model.device), mask.to(self.model.device)
        uniform = min(lengths) == T  # no padding: the mask-free path is faster
        log.debug("prefill: %d prompt(s), %d to %d tokens", B, min(lengths), T)
        state = self._start
        for start in range(0, T, PREFILL_CHUNK_TOKENS):
            end = min(start + PREFILL_CHUNK_TOKENS, T)
            out = self.model(
                ids[:, start:end],
                state=state,
                attention_mask=None if uniform else mask[:, start:end],
                logits="last" if end == T else "none",
            )
            state = out.state
        return state, out.logits

    @torch.inference_mode()
    def _decode_step(
        self, active: list[int], state: RWKV7State, logits: torch.Tensor
    ) -> tuple[list[tuple[int, str]], list[int], RWKV7State, torch.Tensor]:
        """Samples one token per active row, feeds it, retires finished rows (their state then
        includes their last token). Returns the text pieces and the new active set/state/logits."""
        tokens = self._sampler.sample(logits)
        pieces, keep, done = [], [], []
        for j, (row, token) in enumerate(zip(active, tokens.tolist())):
            seq = self.sequences[row]
            piece = seq.accept(token)
            if piece:
                pieces.append((row, piece))
            (done if seq.finish_reason else keep).append(j)
        out = self.model(tokens.unsqueeze(1), state=state, logits="last" if keep else "none")
        for j in done:
            row = active[j]
            self._results[row] = self.sequences[row].result(out.state.select([j]))
            log.debug("prompt %d finished (%s) after %d tokens", row, self.sequences[row].finish_reason,
                      len(self.sequences[row].token_ids))
        if not done:
            return pieces, active, out.state, out.logits
        if keep:
            self._sampler.select(keep)
            index = torch.tensor(keep, device=out.logits.device)
            return pieces, [active[j] for j in keep], out.state.select(keep), out.logits.index_select(0, index)
        return pieces, [], out.state, out.logits

    def events(self) -> Generator[tuple[int, str], None, list[GenerationResult]]:
        """Yields (prompt index, new text) as text becomes final; returns one result per prompt.
        A run generates once: call this a single time."""
        if self._started:
            raise RuntimeError("this generation has already run; create a new BatchGeneration")
        self._started = True
        state, logits = self._prefill()
        active = list(range(len(self.sequences)))
        while active:
            pieces, active, state, logits = self._decode_step(active, state, logits)
            yield from pieces
        results = [r for r in self._results if r is not None]
        assert len(results) == len(self.sequences)
        for r in results:  # outside inference mode, so the states can take part in autograd later
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
) -> list[GenerationResult]:
    """Generates a completion for every prompt at once.

    `params` is shared or one per prompt. `states`: start from these states instead of zeros (one
    state shared by all prompts, a batch state, or one per prompt with None for zeros); the prompt
    is then read as a continuation. `on_text(prompt index, piece)` receives text as it becomes final.
    """
    events = BatchGeneration(model, tokenizer, prompts, params, states).events()
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
) -> GenerationResult:
    """Generates a completion of one prompt (text or token ids), optionally from a start `state`."""
    callback = None if on_text is None else (lambda _row, piece: on_text(piece))
    return generate_batch(model, tokenizer, [prompt], params, states=state, on_text=callback)[0]


def stream(
    model: RWKV7,
    tokenizer: Tokenizer,
    prompt: Prompt,
    params: SamplingParams | None = None,
    *,
    state: RWKV7State | None = None,
) -> TextStream[GenerationResult]:
    """Iterates over the completion's text as it is produced; `.result` afterwards gives the
    `GenerationResult`. Arguments are checked at once; the model runs as pieces are requested."""

    run = BatchGeneration(model, tokenizer, [prompt], params, state)  # validates now, runs lazily

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
    """The state after reading `prompt` (from `state`, or zeros), e.g. a system prompt to save and
    reuse with `RWKV7State.save`. Generation from it needs at least one more prompt token, since a
    state does not hold the logits of the last token read."""
    ids = torch.tensor([_prompt_ids(tokenizer, prompt)], device=model.device)
    with torch.inference_mode():
        current = _start_state(model, state, 1)
        for begin in range(0, ids.shape[1], PREFILL_CHUNK_TOKENS):
            current = model(ids[:, begin : begin + PREFILL_CHUNK_TOKENS], state=current, logits="none").state
    return current.clone()  # a normal tensor again, usable with autograd
