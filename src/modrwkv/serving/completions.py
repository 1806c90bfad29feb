"""OpenAI's legacy `/v1/completions` (raw text continuation) and the log-probability objects of both
endpoints.

`/v1/completions` takes a prompt as text, token ids, or a list of either (one choice per prompt),
continues it without any chat template, and with ``logprobs: N`` returns each token's
log-probability and the N most likely alternatives; with ``echo`` the prompt's own tokens come
first (the first has no log-probability: nothing precedes it). That is what
lm-evaluation-harness's ``local-completions`` model sends to score log-likelihoods (``echo``,
``logprobs: 1``, ``max_tokens`` 0 or 1, ``temperature`` 0), so a modrwkv server can be evaluated
on any loglikelihood task. Echoed prompt log-probabilities are the model's log-softmax at each
position, taken while the scheduler reads the prompt (one read, on the thread that owns the model,
within the server's capacity limits; see `generation.PromptScorer`); generated tokens' come from
the decode engine, under the distribution they were sampled from (after penalties, bans and
processors, before temperature, top-k and top-p: with default settings, the model's, less token 0
and the ids no reply contains, which the server never emits). Streamed replies carry the same objects chunk by chunk (each
chunk's tokens; see `scored_tokens`, `TextOffsets`).
"""

from __future__ import annotations

import codecs
import dataclasses
from collections.abc import Sequence
from typing import Any

from ..generation import GenerationResult, TokenLogprob
from ..inference import EncodedPrompt
from ..tokenizer import WorldTokenizer
from .limits import APIError, ServerLimits
from .protocol import MAX_TOP_LOGPROBS, ModelNames, _integer, check_body, flag, parse_choices, parse_sampling


DEFAULT_COMPLETION_TOKENS = 16  # OpenAI's default max_tokens for /v1/completions
MAX_PROMPTS = 64


def scored_tokens(token_ids: Sequence[int], logprobs: Sequence[float],
                  top_logprobs: Sequence[list[tuple[int, float]]] | None, start: int = 0) -> list[TokenLogprob]:
    """`TokenLogprob`s of `token_ids[start:]` from the decode engine's lists (`top_logprobs` empty or
    None when no alternatives were asked for)."""
    return [TokenLogprob(token_ids[i], logprobs[i], list(top_logprobs[i]) if top_logprobs else [])
            for i in range(start, len(token_ids))]


def generated_logprobs(result: GenerationResult, start: int = 0) -> list[TokenLogprob] | None:
    """The decode engine's per-token log-probabilities of a reply (from token `start` on) as
    `TokenLogprob`s; None when they were not asked for."""
    if result.logprobs is None:
        return None
    return scored_tokens(result.token_ids, result.logprobs, result.top_logprobs, start)


@dataclasses.dataclass
class TextCompletionRequest:
    model: str  # the name the reply reports
    prompts: list[list[int]]
    sampling: dict[str, Any]  # SamplingParams fields
    echo: bool
    logprobs: int | None
    stream: bool
    include_usage: bool
    n: int = 1  # choices per prompt


def _prompt_ids(value: Any, tokenizer: WorldTokenizer, vocab_size: int, where: str) -> list[int]:
    if isinstance(value, str):
        ids = tokenizer.encode(value)
    elif isinstance(value, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        bad = [t for t in value if not 0 <= t < vocab_size]
        if bad:
            raise APIError(400, f"'{where}' holds token id(s) outside the vocabulary [0, {vocab_size}): {bad[:5]}",
                           param="prompt")
        ids = list(value)
    else:
        raise APIError(400, f"'{where}' must be a string or a list of token ids", param="prompt")
    if not ids:
        raise APIError(400, f"'{where}' is empty", param="prompt")
    return ids


def parse_text_completion(body: Any, limits: ServerLimits, names: ModelNames, tokenizer: WorldTokenizer,
                          vocab_size: int) -> TextCompletionRequest:
    """Checks a /v1/completions body; raises `APIError` naming the first bad field."""
    model = check_body(body, names)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and prompt and all(isinstance(p, (str, list)) for p in prompt):
        if len(prompt) > MAX_PROMPTS:
            raise APIError(400, f"'prompt' holds {len(prompt)} prompts; at most {MAX_PROMPTS} per request",
                           param="prompt")
        prompts = [_prompt_ids(p, tokenizer, vocab_size, f"prompt[{i}]") for i, p in enumerate(prompt)]
    else:
        prompts = [_prompt_ids(prompt, tokenizer, vocab_size, "prompt")]
    for total in (len(p) for p in prompts):
        if total > limits.max_prompt_tokens:
            raise APIError(400, f"a prompt has {total} tokens; this server accepts at most {limits.max_prompt_tokens}",
                           code="context_length_exceeded", param="prompt")
    for name in ("suffix", "logit_bias"):
        if body.get(name):
            raise APIError(400, f"'{name}' is not supported by this server", param=name)
    n = parse_choices(body)
    if _integer(body, "best_of", 1) not in (None, 1):
        raise APIError(400, "'best_of' must be 1: this server does not rank candidates", param="best_of")
    echo = flag(body, "echo")
    logprobs = _integer(body, "logprobs", 0, MAX_TOP_LOGPROBS)
    max_tokens = _integer(body, "max_tokens", 0, limits.max_tokens)
    max_tokens = DEFAULT_COMPLETION_TOKENS if max_tokens is None else max_tokens
    if max_tokens == 0 and not echo:
        raise APIError(400, "'max_tokens' 0 only makes sense with 'echo' (scoring the prompt)", param="max_tokens")
    sampling = parse_sampling(body, max_tokens)
    stream = flag(body, "stream")
    if stream and (echo or len(prompts) > 1 or max_tokens == 0 or n > 1):
        raise APIError(400, "'stream' works with one prompt and one choice (n 1), without 'echo'", param="stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise APIError(400, "'stream_options' must be an object", param="stream_options")
    return TextCompletionRequest(model, prompts, sampling, echo, logprobs, stream, bool(options.get("include_usage")), n)


def raw_prompt(ids: Sequence[int]) -> EncodedPrompt:
    """Token ids as an engine prompt: no template, no media, one stretch."""
    return EncodedPrompt(ids=tuple(ids), spans=(), message_ends=(), system_end=0)


def token_text(tokenizer: WorldTokenizer, token: int) -> str:
    """A token as text; bytes that are not UTF-8 on their own appear as \\xNN escapes, so that
    different tokens never share a name in a top_logprobs object."""
    return tokenizer.token_bytes(token).decode("utf-8", errors="backslashreplace")


class TextOffsets:
    """`text_offset`s of consecutive tokens: where each token's text starts in the text of all of
    them. Keeps its UTF-8 decoder between calls, so that a stream's chunks get the offsets of the
    whole reply (a character split over two tokens counts once, where it is completed)."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._length = 0

    def __call__(self, tokenizer: WorldTokenizer, tokens: Sequence[int]) -> list[int]:
        offsets = []
        for token in tokens:
            offsets.append(self._length)
            self._length += len(self._decoder.decode(tokenizer.token_bytes(token)))
        return offsets


def legacy_logprobs(tokenizer: WorldTokenizer, tokens: Sequence[int], scored: Sequence[TokenLogprob | None],
                    top: int, offsets: TextOffsets | None = None) -> dict[str, Any]:
    """The /v1/completions `logprobs` object: tokens, token_logprobs, top_logprobs, text_offset
    (`scored[i]` None: the first prompt token, which has no log-probability). A stream passes its
    `offsets`, which continue from the tokens of its earlier chunks."""
    return {
        "tokens": [token_text(tokenizer, t) for t in tokens],
        "token_logprobs": [None if s is None else s.logprob for s in scored],
        "top_logprobs": [None if s is None else {token_text(tokenizer, t): lp for t, lp in s.top[:top]}
                         for s in scored],
        "text_offset": (offsets or TextOffsets())(tokenizer, tokens),
    }


def chat_logprobs(tokenizer: WorldTokenizer, scored: Sequence[TokenLogprob] | None) -> dict[str, Any] | None:
    """A chat choice's `logprobs` object ({"content": [...]}) for these tokens (a whole reply, or
    the tokens of one stream chunk); None when log-probabilities were not asked for."""
    if scored is None:
        return None

    def entry(token: int, logprob: float) -> dict[str, Any]:
        raw = tokenizer.token_bytes(token)
        return {"token": token_text(tokenizer, token), "logprob": logprob, "bytes": list(raw)}

    return {"content": [{**entry(s.token, s.logprob), "top_logprobs": [entry(t, lp) for t, lp in s.top]}
                        for s in scored], "refusal": None}


def text_completion_choice(tokenizer: WorldTokenizer, index: int, result: GenerationResult, echo: bool,
                           logprobs: int | None) -> dict[str, Any]:
    """One choice of a text_completion (a result without tokens when max_tokens was 0). With `echo`
    and `logprobs`, the result carries its prompt's scores (`prompt_logprobs`)."""
    prompt = result.prompt_ids
    text = (tokenizer.decode(prompt) if echo else "") + result.text
    block = None
    if logprobs is not None:
        tokens: list[int] = []
        scored: list[TokenLogprob | None] = []
        if echo:
            if result.prompt_logprobs is None:
                raise ValueError("an echoed prompt's scores were not computed")
            tokens += prompt
            scored += [None, *result.prompt_logprobs]
        tokens += result.token_ids
        scored += generated_logprobs(result) or []
        block = legacy_logprobs(tokenizer, tokens, scored, logprobs)
    return {"index": index, "text": text, "logprobs": block, "finish_reason": result.finish_reason}
