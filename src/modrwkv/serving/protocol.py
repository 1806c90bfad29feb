"""The OpenAI chat-completions wire format: validating a request body into sampling settings, and
shaping results into `chat.completion` objects and `chat.completion.chunk` SSE events.

Fields are checked one by one with messages that name the field, because a client library's
"400 Bad Request" is only useful when the body says what was wrong. Unknown fields are ignored (as
OpenAI-compatible servers commonly do); fields that ask for features this server does not have
(tools, JSON mode) are refused rather than silently dropped.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from typing import Any

from ..generation import GenerationResult
from .limits import APIError, ServerLimits

MAX_STOP_SEQUENCES = 16
# Deepest JSON nesting a request may have; a chat request with media needs 6 levels.
MAX_JSON_DEPTH = 32
MAX_TOP_LOGPROBS = 20
MAX_CHOICES = 16  # `n`: choices of one chat request, each decoded in its own batch slot
_UNSUPPORTED = ("tools", "tool_choice", "functions", "function_call")


@dataclasses.dataclass
class CompletionRequest:
    model: str  # the name the reply reports
    messages: list[Any]
    sampling: dict[str, Any]  # SamplingParams fields
    stream: bool
    include_usage: bool
    logprobs: int | None = None  # alternatives per token when log-probabilities are asked for
    n: int = 1  # choices


def _number(body: dict[str, Any], name: str, low: float, high: float, default: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise APIError(400, f"'{name}' must be a number, got {json.dumps(value)[:50]}", param=name)
    if not low <= value <= high:
        raise APIError(400, f"'{name}' must lie in [{low:g}, {high:g}], got {value}", param=name)
    return float(value)


def _integer(body: dict[str, Any], name: str, low: int, high: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise APIError(400, f"'{name}' must be an integer, got {json.dumps(value)[:50]}", param=name)
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise APIError(400, f"'{name}' must be {bound}, got {value}", param=name,
                       code="max_tokens_exceeded" if high is not None and value > high else None)
    return value


def flag(body: dict[str, Any], name: str) -> bool:
    """A true/false field; null or absent is false, as OpenAI takes a null for any optional field
    (clients that serialise every field of their request type send `"stream": null`)."""
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise APIError(400, f"'{name}' must be true or false, got {json.dumps(value)[:50]}", param=name)
    return value


def decode_body(body: bytes) -> Any:
    """The request body as JSON (UTF-8, -16 or -32); raises a 400 `APIError` for anything else,
    including nesting deeper than MAX_JSON_DEPTH (which would otherwise exhaust the stack)."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise APIError(400, f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise APIError(400, f"the request body nests deeper than {MAX_JSON_DEPTH} levels",
                       code="invalid_json") from None
    if _depth(data) > MAX_JSON_DEPTH:
        raise APIError(400, f"the request body nests deeper than {MAX_JSON_DEPTH} levels", code="invalid_json")
    return data


def _depth(value: Any) -> int:
    """Nesting depth of decoded JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if depth <= MAX_JSON_DEPTH:
                stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


@dataclasses.dataclass(frozen=True)
class ModelNames:
    """The names a server answers to: `names[0]` and its aliases (what /v1/models lists). With
    `any_name`, a request naming any other model (or none) is served too, as llama.cpp's server
    does, for clients whose model name cannot be changed; by default such a request is a 404 that
    lists the served names, as OpenAI and vLLM answer."""

    names: tuple[str, ...]
    any_name: bool = False

    def __post_init__(self) -> None:
        if not self.names or not all(isinstance(n, str) and n.strip() for n in self.names):
            raise ValueError(f"a served model needs at least one non-empty name, got {list(self.names)}")
        object.__setattr__(self, "names", tuple(dict.fromkeys(self.names)))  # duplicates once, order kept

    def resolve(self, requested: Any) -> str:
        """The name a reply reports for a request's `model`: the requested name when it is served,
        the first name when `any_name` lets another through; raises the 400/404 otherwise."""
        if requested in self.names:
            return requested
        if requested is not None and not isinstance(requested, str):
            raise APIError(400, f"'model' must be a string, got {json.dumps(requested)[:50]} (this server serves "
                           f"{self._listed()})", param="model")
        if self.any_name:
            return self.names[0]
        if not requested:
            raise APIError(400, f"'model' is required (this server serves {self._listed()})", param="model")
        shown = repr(requested) if len(requested) <= 100 else f"{requested[:100]!r}... ({len(requested)} characters)"
        raise APIError(404, f"The model {shown} does not exist; this server serves {self._listed()}. "
                       "Send one of these names, or restart the server with more names (modrwkv serve "
                       "--model-name NAME ...) or with --any-model-name to accept any name",
                       code="model_not_found", param="model")

    def _listed(self) -> str:
        return " and ".join(", ".join(map(repr, self.names)).rsplit(", ", 1))


def check_body(body: Any, names: ModelNames) -> str:
    """The checks every endpoint makes first: a JSON object naming a served model. Returns the name
    the reply reports (`ModelNames.resolve`)."""
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    return names.resolve(body.get("model"))


def parse_sampling(body: dict[str, Any], max_new_tokens: int) -> dict[str, Any]:
    """The sampling fields both endpoints share (temperature, top_p, penalties, top_k, seed, stop)
    as `SamplingParams` keyword arguments, each checked against OpenAI's ranges."""
    sampling: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "temperature": _number(body, "temperature", 0.0, 2.0, 1.0),
        "top_p": _number(body, "top_p", 0.0, 1.0, 1.0),
        "presence_penalty": _number(body, "presence_penalty", -2.0, 2.0, 0.0),
        "frequency_penalty": _number(body, "frequency_penalty", -2.0, 2.0, 0.0),
        "top_k": _integer(body, "top_k", 0) or 0,
        "seed": _integer(body, "seed", -(2**63)),
    }
    if sampling["top_p"] == 0.0:  # OpenAI takes 0: a nucleus of the most probable token alone, greedy decoding
        sampling.update(temperature=0.0, top_p=1.0)
    if sampling["seed"] is not None:
        sampling["seed"] %= 2**63  # torch generators take non-negative seeds; OpenAI allows any int64
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
            raise APIError(400, "'stop' must be a non-empty string or a list of them", param="stop")
        if len(stop) > MAX_STOP_SEQUENCES:
            raise APIError(400, f"'stop' may hold at most {MAX_STOP_SEQUENCES} sequences", param="stop")
        sampling["stop_strings"] = tuple(stop)
    return sampling


def parse_request(body: Any, limits: ServerLimits, names: ModelNames) -> CompletionRequest:
    """Checks a decoded request body; raises `APIError` naming the first bad field."""
    model = check_body(body, names)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "'messages' must be a non-empty list", param="messages")
    for name in _UNSUPPORTED:
        if body.get(name):
            raise APIError(400, f"'{name}' is not supported by this server (no tool calling)", param=name)
    for index, message in enumerate(messages):  # a conversation that went through tools elsewhere
        if isinstance(message, dict) and (message.get("role") in ("tool", "function") or message.get("tool_calls")
                                          or message.get("function_call")):
            raise APIError(400, f"messages[{index}] is a tool call or a tool's result; this server has no tool "
                           "calling", param="messages")
    modalities = body.get("modalities")
    if body.get("audio") or (isinstance(modalities, list) and set(modalities) - {"text"}):
        raise APIError(400, "this server answers in text only: 'modalities' must be ['text'] and 'audio' unset "
                       "(audio and image inputs are fine)", param="modalities")
    if body.get("logit_bias"):
        raise APIError(400, "'logit_bias' is not supported by this server", param="logit_bias")
    wants_logprobs = flag(body, "logprobs")
    top_logprobs = _integer(body, "top_logprobs", 0, MAX_TOP_LOGPROBS)
    if top_logprobs is not None and not wants_logprobs:
        raise APIError(400, "'top_logprobs' needs 'logprobs': true", param="top_logprobs")
    n = parse_choices(body)
    response_format = body.get("response_format")
    if response_format is not None and (not isinstance(response_format, dict) or response_format.get("type") != "text"):
        asked = response_format.get("type") if isinstance(response_format, dict) else response_format
        raise APIError(400, f"response_format type {json.dumps(asked)[:50]} is not supported: this server has no "
                       "JSON mode or structured outputs (only {'type': 'text'})", param="response_format")

    max_tokens = _integer(body, "max_completion_tokens", 1, limits.max_tokens)
    if max_tokens is None:
        max_tokens = _integer(body, "max_tokens", 1, limits.max_tokens)
    sampling = parse_sampling(body, max_tokens or limits.default_max_tokens)
    stream = flag(body, "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise APIError(400, "'stream_options' must be an object", param="stream_options")
    return CompletionRequest(model, messages, sampling, stream, bool(options.get("include_usage")),
                             (top_logprobs or 0) if wants_logprobs else None, n)


def parse_choices(body: dict[str, Any]) -> int:
    """`n`, the choices asked for (default 1)."""
    n = body.get("n")
    n = 1 if n is None else n
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CHOICES:
        raise APIError(400, f"'n' must be an integer from 1 to {MAX_CHOICES}, got {json.dumps(n)[:50]}", param="n")
    return n


def choice_sampling(sampling: dict[str, Any], index: int) -> dict[str, Any]:
    """The sampling settings of a request's `index`-th choice: with a seed, seed + index, so that
    the choices differ from each other and the request as a whole is reproducible."""
    if index == 0 or sampling.get("seed") is None:
        return sampling
    return {**sampling, "seed": (sampling["seed"] + index) % 2**63}


def usage(results: Sequence[GenerationResult]) -> dict[str, Any]:
    """The usage of a request whose choices are `results`: its prompt once (as OpenAI counts it),
    the tokens of every choice."""
    prompt = results[0].prompt_tokens
    generated = sum(result.completion_tokens for result in results)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": generated,
        "total_tokens": prompt + generated,
        "prompt_tokens_details": {"cached_tokens": results[0].cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": 0},  # OpenAI's, always sent: no reasoning tokens here
    }


def completion(request_id: str, created: int, model: str, results: Sequence[GenerationResult]) -> dict[str, Any]:
    """A `chat.completion` object with every field OpenAI always sends (clients with typed response
    schemas may require them): a reply's `refusal` and `annotations` (this model has neither) and the
    reply's `system_fingerprint` and `service_tier` (null: no backend configuration to report)."""
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": index,
            "message": {"role": "assistant", "content": result.text, "refusal": None, "annotations": []},
            "finish_reason": result.finish_reason,
            "logprobs": None,
        } for index, result in enumerate(results)],
        "usage": usage(results),
        "system_fingerprint": None,
        "service_tier": None,
    }


def chunk(request_id: str, created: int, model: str, delta: dict[str, Any], finish_reason: str | None = None,
          usage_block: dict[str, Any] | None = None, logprobs: dict[str, Any] | None = None,
          index: int = 0) -> str:
    """One SSE event of choice `index`. The usage-only chunk (stream_options.include_usage) has no
    choices. `logprobs` is the choice's log-probability object for the tokens of this chunk, as in a
    whole reply."""
    body: dict[str, Any] = {"id": request_id, "object": "chat.completion.chunk", "created": created, "model": model,
                            "system_fingerprint": None, "service_tier": None}
    if usage_block is not None:
        body["choices"], body["usage"] = [], usage_block
    else:
        body["choices"] = [{"index": index, "delta": delta, "finish_reason": finish_reason, "logprobs": logprobs}]
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


DONE = "data: [DONE]\n\n"
