"""Constrained decoding: a per-row mask of the tokens that keep a reply well-formed.

A constraint sees the tokens a row has generated so far and returns the ids allowed next; the
decode loop sets every other logit to -inf before sampling (`mask_logits`). This keeps the rule
out of the engines: any decode loop applies it with one call per constrained row.

`NumberListConstraint` makes a forecast reply exactly `count` whole numbers (`format_forecast`'s
form: "-?" and 1 to `max_digits` digits, separated by spaces, or by a newline after every
`per_line` numbers), preceded by the template's content prefix and followed by one of the end
tokens, never anything else. The last number may also be closed by a token that starts with a space
(" ", " -", " 7": the model wants another value), after which only the end may come; the caller
cuts the reply after the last number (`data.readers.series.cut_forecast`). So a model that would
go on to a 25th value of 24 ends there, instead of being pushed into more digits of the 24th. A greedy model that would have written 95 or 97 values, a stray
word or an endless digit string now always writes a parsable forecast of the right length, and
the reply cannot run past len(prefix) + count * (max_digits + 2) + 2 tokens.

The grammar runs over characters, so any tokenisation of a valid text is allowed ("130" as "13"
"0" or "1" "30"). Tokens made only of the grammar's characters are the candidates (a few hundred
of the World vocabulary); the allowed ids of each grammar state are computed once and shared by
all rows and runs with the same settings.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import torch

_DIGITS = frozenset("0123456789")
# Grammar state: (prefix characters read, separators read, digits in the current number or -1
# right after a sign, 0 at the start of a number).
_State = tuple[int, int, int]


def mask_logits(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Logits [..., V] with every id outside `allowed` (a 1-D tensor of ids) set to -inf."""
    masked = torch.full_like(logits, -math.inf)
    index = allowed.to(logits.device)
    masked[..., index] = logits[..., index]
    return masked


class _NumberGrammar:
    """The state machine and the allowed ids of each of its states (computed on first use)."""

    def __init__(self, candidates: tuple[tuple[int, str], ...], count: int, per_line: int, max_digits: int,
                 prefix: str, end_tokens: tuple[int, ...]) -> None:
        self.candidates, self.count, self.per_line = candidates, count, per_line
        self.text_of = dict(candidates)
        self.max_digits, self.prefix, self.end_tokens = max_digits, prefix, end_tokens
        self._allowed: dict[_State, torch.Tensor] = {}

    def step(self, state: _State, text: str) -> _State | None:
        """The state after reading `text`, or None if the text breaks the grammar."""
        read, separators, digits = state
        if separators == self.count:  # closed: only an end token may follow
            return None
        for char in text:
            if read < len(self.prefix):
                if char != self.prefix[read]:
                    return None
                read += 1
            elif char in _DIGITS:
                if digits >= self.max_digits:
                    return None
                digits = max(digits, 0) + 1
            elif char == "-":
                if digits != 0:
                    return None
                digits = -1
            else:
                last = separators + 1 == self.count
                expected = " " if last else "\n" if (separators + 1) % self.per_line == 0 else " "
                if char != expected or digits < 1:
                    return None
                separators, digits = separators + 1, 0
                if last:  # the token that closes the list: the rest of it is cut off by the caller
                    break
        return read, separators, digits

    def is_complete(self, state: _State) -> bool:
        """All numbers written: the last one has a digit, or it was closed by a separator."""
        read, separators, digits = state
        return read == len(self.prefix) and (separators == self.count or separators == self.count - 1 and digits >= 1)

    def allowed(self, state: _State) -> torch.Tensor:
        found = self._allowed.get(state)
        if found is None:
            ids = [token for token, text in self.candidates if self.step(state, text) is not None]
            if self.is_complete(state):
                ids.extend(self.end_tokens)
            found = self._allowed[state] = torch.tensor(ids, dtype=torch.long)
        return found


class NumberListConstraint:
    """Exactly `count` whole numbers, then an end token (see the module docstring). One object per
    row: it remembers how far it has read that row's tokens."""

    def __init__(
        self,
        token_bytes: Callable[[int], bytes],
        vocab_size: int,
        *,
        count: int,
        end_tokens: Sequence[int],
        per_line: int = 0,
        max_digits: int = 4,
        prefix: str = "",
    ) -> None:
        """`token_bytes(id)` is the tokenizer's (ValueError for ids without text); `per_line` > 0
        puts a newline instead of a space after every `per_line` numbers (multivariate forecasts)."""
        if count < 1 or max_digits < 1 or per_line < 0:
            raise ValueError(f"count and max_digits must be >= 1 and per_line >= 0, got {count}, {max_digits}, {per_line}")
        if not end_tokens:
            raise ValueError("a number list needs at least one end token")
        self.grammar = _grammar(_candidates(token_bytes, vocab_size, prefix), count, per_line or count + 1, max_digits,
                                prefix, tuple(end_tokens))
        self._state: _State | None = (0, 0, 0)
        self._read = 0

    @property
    def max_tokens(self) -> int:
        """The longest reply the grammar allows: prefix, numbers with sign and separator, the
        token that closes the list, the end token."""
        g = self.grammar
        return len(g.prefix) + g.count * (g.max_digits + 2) + 2

    def allowed(self, generated: Sequence[int]) -> torch.Tensor:
        """The ids allowed after `generated` (this row's tokens so far) as a 1-D long tensor; empty
        once the reply is complete (an end token was generated)."""
        if len(generated) < self._read:
            raise ValueError("the generated tokens must only grow between calls")
        for token in generated[self._read :]:
            if self._state is None:
                raise ValueError(f"token {token} follows the end of the number list")
            if token in self.grammar.end_tokens and self.grammar.is_complete(self._state):
                self._state = None
                continue
            text = self.grammar.text_of.get(token)
            state = None if text is None else self.grammar.step(self._state, text)
            if state is None:
                raise ValueError(f"token {token} breaks the number list")
            self._state = state
        self._read = len(generated)
        return torch.empty(0, dtype=torch.long) if self._state is None else self.grammar.allowed(self._state)


@functools.lru_cache(maxsize=8)
def _candidates_cached(token_bytes: Callable[[int], bytes], vocab_size: int,
                       chars: frozenset[str]) -> tuple[tuple[int, str], ...]:
    found = []
    for token in range(vocab_size):
        try:
            text = token_bytes(token).decode("utf-8")
        except (ValueError, UnicodeDecodeError):  # no bytes, or not whole characters
            continue
        if text and set(text) <= chars:
            found.append((token, text))
    return tuple(found)


def _candidates(token_bytes: Callable[[int], bytes], vocab_size: int, prefix: str) -> tuple[tuple[int, str], ...]:
    """The tokens made only of the grammar's characters (cached per tokenizer: a bound method
    of the same tokenizer compares equal)."""
    return _candidates_cached(token_bytes, vocab_size, frozenset(_DIGITS | {"-", " ", "\n"} | set(prefix)))


@functools.lru_cache(maxsize=32)
def _grammar(candidates: tuple[tuple[int, str], ...], count: int, per_line: int, max_digits: int, prefix: str,
             end_tokens: tuple[int, ...]) -> _NumberGrammar:
    return _NumberGrammar(candidates, count, per_line, max_digits, prefix, end_tokens)


__all__ = ["NumberListConstraint", "mask_logits"]
