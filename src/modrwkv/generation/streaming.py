"""Turning generated token ids into text pieces that are safe to show as soon as they exist.

Two things make naive `decode(new_token)` wrong for streaming:
- a World token may be part of a multi-byte UTF-8 character (CJK, emoji), so bytes are pushed
  through an incremental UTF-8 decoder that holds back an incomplete character;
- text that could be the start of a stop string must not be shown until it is known not to be one,
  because the stop string itself is never part of the output.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Generator, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class IncrementalDetokenizer:
    """Decodes one sequence's tokens incrementally and detects stop strings.

    `push` returns the text that has become safe to emit; the concatenation of everything returned
    by `push` and `finish` equals `text`. Once a stop string is found (`stop_string` is set), `text`
    ends right before it and nothing more may be pushed.
    """

    def __init__(self, token_bytes: Callable[[int], bytes], stop_strings: Sequence[str] = ()) -> None:
        self._token_bytes = token_bytes
        self._stop_strings = tuple(stop_strings)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._text = ""
        self._emitted = 0  # characters of _text already returned
        self.stop_string: str | None = None

    @property
    def text(self) -> str:
        """All text decoded so far, including any held-back part."""
        return self._text

    def push(self, token_id: int) -> str:
        """Adds one token; returns the newly safe text (often "")."""
        return self.push_bytes(self._token_bytes(token_id))

    def push_bytes(self, data: bytes) -> str:
        if self.stop_string is not None:
            raise RuntimeError(f"the text already ended at stop string {self.stop_string!r}")
        return self._advance(self._decoder.decode(data))

    def finish(self) -> str:
        """Ends the sequence: flushes an incomplete trailing character (as U+FFFD) and releases the
        held-back text, which can no longer become a stop string."""
        piece = "" if self.stop_string is not None else self._advance(self._decoder.decode(b"", final=True))
        rest = self._text[self._emitted :]
        self._emitted = len(self._text)
        return piece + rest

    def _advance(self, new: str) -> str:
        self._text += new
        # A stop string cannot start inside the emitted text: that text was emitted only because no
        # suffix of it was a stop-string prefix.
        found = [(i, s) for s in self._stop_strings if (i := self._text.find(s, self._emitted)) >= 0]
        if found:
            cut, self.stop_string = min(found, key=lambda hit: hit[0])
            self._text = self._text[:cut]
            safe = cut
        else:
            safe = len(self._text) - self._held_back()
        piece = self._text[self._emitted : safe]
        self._emitted = safe
        return piece

    def _held_back(self) -> int:
        """Length of the longest unemitted suffix that is a proper prefix of a stop string."""
        pending = len(self._text) - self._emitted
        best = 0
        for s in self._stop_strings:
            for n in range(min(len(s) - 1, pending), best, -1):
                if self._text.endswith(s[:n]):
                    best = n
                    break
        return best


class TextStream(Generic[T]):
    """An iterator of text pieces whose final result is available once it is exhausted.

    Wraps a generator that yields pieces and returns the result, so that `for piece in stream:`
    stays the simple way to stream while `stream.result` still gives ids, finish reason and state.
    """

    def __init__(self, pieces: Generator[str, None, T]) -> None:
        self._pieces = pieces
        self._result: T | None = None
        self._done = False

    def __iter__(self) -> TextStream[T]:
        return self

    def __next__(self) -> str:
        if self._done:
            raise StopIteration
        try:
            return next(self._pieces)
        except StopIteration as end:
            self._done = True
            self._result = end.value
            raise

    @property
    def result(self) -> T:
        """The final result; only available after the stream has been consumed."""
        if not self._done:
            raise RuntimeError("the stream has not finished yet: iterate it to the end first")
        assert self._result is not None
        return self._result
