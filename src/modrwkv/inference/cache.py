"""An LRU cache of RNN states after prompt prefixes.

Reading an image costs an encoder pass plus hundreds of LM positions; the state afterwards is a
few megabytes whatever the length. Keeping the state after a (system prompt + media) prefix makes
every further question about the same media cost only its own tokens.
"""

from __future__ import annotations

import collections
import logging
import threading

from ..lm import RWKV7State

log = logging.getLogger(__name__)


class PrefixStateCache:
    """Maps prefix digests (`EncodedPrompt.digest`) to the state after that prefix.

    Bounded by bytes, least recently used entries go first. States are stored and returned as is:
    nothing in modrwkv modifies a state in place, so sharing them is safe.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0 (0 disables the cache), got {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: collections.OrderedDict[str, RWKV7State] = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, key: str) -> RWKV7State | None:
        with self._lock:
            state = self._entries.get(key)
            if state is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return state

    def put(self, key: str, state: RWKV7State) -> None:
        size = state.nbytes()
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes()
            self._entries[key] = state
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.nbytes()
                log.debug("prefix cache full: evicted a state (%d entries left)", len(self._entries))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
