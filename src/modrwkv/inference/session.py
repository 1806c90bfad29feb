"""A multi-turn chat whose whole history lives in one fixed-size RNN state.

A Transformer chat re-reads (or caches, with memory growing per token) the whole conversation
every turn. Here each turn feeds only its own tokens, the user's message, any new media and the
generation prompt, into the state carried from the previous turn, and the reply's tokens are
already in the state once it has been generated. Memory and per-turn cost stay flat however long
the conversation gets, and the state can be saved and restored like a file.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import SafetensorError, safe_open

from ..data.sample import Message
from ..generation import GenerationResult, TextStream
from ..lm import RWKV7State

if TYPE_CHECKING:
    from .pipeline import ModRWKVPipeline

log = logging.getLogger(__name__)

STATE_KIND = "modrwkv-chat-session"


class ChatSession:
    """One conversation. `send` / `stream` run a turn; `reset`, `save_state`, `load_state` manage
    the carried state. `num_tokens` counts every position read so far (media included)."""

    def __init__(self, pipeline: ModRWKVPipeline, system: str | None = None, **sampling: Any) -> None:
        pipeline.sampling_params(**sampling)  # bad defaults fail here, not at the first turn
        self.pipeline = pipeline
        self.system = system
        self.defaults = dict(sampling)
        self.state: RWKV7State | None = None
        self.num_tokens = 0
        self.turns = 0
        self.last_result: GenerationResult | None = None
        self._version = 0  # changes with every state change, so a stale turn cannot overwrite it

    def reset(self) -> None:
        """Starts the conversation over (the system prompt, if any, applies again)."""
        self.state, self.num_tokens, self.turns, self.last_result = None, 0, 0, None
        self._version += 1

    def send(self, text: str, *, images: Any = None, audio: Any = None, series: Any = None, videos: Any = None,
             **sampling: Any) -> str:
        """Runs one turn and returns the reply. Media attach to this message (where the model's
        `media_layout` puts them, at its start by default, unless the text places `<image>` / `<audio>` /
        `<series>` / `<video>` markers)."""
        stream = self.stream(text, images=images, audio=audio, series=series, videos=videos, **sampling)
        for _ in stream:
            pass
        return stream.result.text

    def stream(self, text: str, *, images: Any = None, audio: Any = None, series: Any = None, videos: Any = None,
               **sampling: Any) -> TextStream[GenerationResult]:
        """Like `send`, yielding the reply as it is generated. The session advances when the
        stream is exhausted; a stream abandoned midway leaves the session as it was."""
        if not isinstance(text, str):
            raise ValueError(f"a message must be text, got {type(text).__name__}")
        messages = [Message("user", text)]
        if self.state is None and self.system:
            messages.insert(0, Message("system", self.system))
        params = self.pipeline.sampling_params(**{**self.defaults, **sampling})  # first, as chat_stream's
        prompt = self.pipeline.encode(messages, images=images, audio=audio, series=series, videos=videos)
        run = self.pipeline.run(prompt, params, state=self.state, keep_state=True)
        version = self._version

        def pieces() -> Generator[str, None, GenerationResult]:
            result = yield from run
            if self._version != version:
                raise RuntimeError("the session changed while this reply was generated; its turn is discarded")
            self._close_turn(result)
            return result

        return TextStream(pieces())

    def _close_turn(self, result: GenerationResult) -> None:
        """Adopts the state after the reply; a reply that did not end with the template's own
        stop (e.g. it ran out of tokens) gets the turn end fed, as a finished turn would have."""
        template = self.pipeline.template
        assert result.state is not None
        state, closing = result.state, 0
        if result.stop not in (*template.stop_token_ids, *template.stop_strings):
            ids = self.pipeline.tokenizer.encode(template.turn_end)
            state, closing = self.pipeline.engine.feed(state, ids), len(ids)
        self.state = state
        self.num_tokens += result.prompt_tokens + result.completion_tokens + closing
        self.turns += 1
        self.last_result = result
        self._version += 1

    def save_state(self, path: str | Path) -> None:
        """Writes the conversation so far (one state file, a few MB whatever its length)."""
        if self.state is None:
            raise ValueError("the conversation is empty: there is no state to save yet")
        self.state.save(path, metadata={
            "kind": STATE_KIND,
            "template": self.pipeline.template.name,
            "num_tokens": str(self.num_tokens),
            "turns": str(self.turns),
        })

    def load_state(self, path: str | Path) -> None:
        """Continues a conversation saved by `save_state` (or any one-row state of this model,
        e.g. from `modrwkv generate --save-state`)."""
        lm = self.pipeline.model.lm
        state = RWKV7State.load(path, lm.config, lm.device)
        if state.batch_size != 1:
            raise ValueError(f"{path}: holds {state.batch_size} states; a session needs one")
        try:
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
        except SafetensorError as exc:
            raise ValueError(f"{path}: not a readable state file ({exc})") from exc
        counts = {}
        for name in ("num_tokens", "turns"):
            try:
                counts[name] = int(meta.get(name, 0))
            except ValueError:
                raise ValueError(f"{path}: metadata {name}={meta[name]!r} is not a number") from None
        if meta.get("kind") == STATE_KIND and meta.get("template") != self.pipeline.template.name:
            log.warning("%s was saved with the %r template; this session uses %r", path, meta.get("template"),
                        self.pipeline.template.name)
        # Everything was checked above: the conversation only changes once the new one is complete.
        self.state = state.to(lm.device, lm.dtype)
        self.num_tokens = counts["num_tokens"]
        self.turns = counts["turns"]
        self.last_result = None
        self._version += 1
