"""The RWKV "World" tokenizer (vocabulary ``rwkv_vocab_v20230424``).

The World tokenizer is a plain greedy longest-match over UTF-8 *bytes*: at
every position the longest vocabulary entry that is a prefix of the remaining
bytes is emitted.  There are no merges, no normalisation and no pre-splitting,
so any two implementations of that rule produce identical ids; this module
offers two of them:

* ``"fast"`` -- the Rust extension ``pyrwkv_tokenizer`` (roughly 10x faster
  than pure Python).  It is only used for *encoding*: its ``decode`` panics on
  byte sequences that are not valid UTF-8 (a ``PanicException`` that derives
  from ``BaseException``, so ``except Exception`` does not catch it), maps id 0
  to ``"\\x00"`` and panics on unknown ids.  Decoding therefore always goes
  through our own id -> bytes table, which makes both backends agree exactly.
* ``"reference"`` -- a pure-Python byte trie, used where the wheel is not
  available and as an independently written cross-check.

Vocabulary layout: the file has 65529 entries with ids 1..65529 (ids 1..256
are the single bytes 0x00..0xFF, i.e. ``id == byte + 1``).  Id 0 is not in the
file; it is the end-of-text / padding token and decodes to nothing.  RWKV World
models have 65536 embedding rows, so ids 65530..65535 exist in the model but
not in the vocabulary: they are free for special tokens.
"""

from __future__ import annotations

import logging
import os
import threading
from ast import literal_eval
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

__all__ = [
    "DEFAULT_VOCAB_PATH",
    "DOUBLE_NEWLINE",
    "END_OF_TEXT",
    "VOCAB_SIZE",
    "WorldTokenizer",
]

logger = logging.getLogger(__name__)

#: The vocabulary shipped as package data.
DEFAULT_VOCAB_PATH: Path = Path(__file__).with_name("rwkv_vocab_v20230424.txt")

#: End-of-text / padding id.  Not in the vocab file; decodes to ``b""``.
END_OF_TEXT: int = 0

#: ``"\n\n"``, the turn separator of the RWKV chat format (a common stop token).
DOUBLE_NEWLINE: int = 261

#: Embedding rows of RWKV World models.  The default vocab uses ids 0..65529;
#: 65530..65535 are unused by the vocabulary and free for special tokens.
VOCAB_SIZE: int = 65536

# Model embedding tables are padded to a multiple of this many rows.
_EMBEDDING_ROW_MULTIPLE = 64

Backend = Literal["auto", "fast", "reference"]
_EncodeOne = Callable[[str], list[int]]
_EncodeMany = Callable[[list[str]], list[list[int]]]
_BACKENDS: tuple[str, ...] = ("auto", "fast", "reference")


# --------------------------------------------------------------------------
# Vocabulary parsing (cached per file, shared by all tokenizer instances)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Vocab:
    """Parsed vocabulary.

    ``id_to_bytes`` is a dict rather than a list so that negative ids, ids in
    gaps and ids past the end all fail the same way (``KeyError``) instead of
    negative indices silently wrapping around.
    """

    id_to_bytes: dict[int, bytes]
    num_entries: int
    max_id: int


def _parse_vocab(path: str) -> _Vocab:
    """Parse ``<id> <python literal> <byte length>`` lines.

    Literals are evaluated with ``ast.literal_eval`` (never ``eval``) because a
    vocab path may come from a user.  Evaluating all literals as one list is
    ~2x faster than one call per line; per-line parsing is only redone to give
    a precise error message when that fails.
    """
    with open(path, encoding="utf-8", newline="") as f:
        raw = f.read()
    # Split on "\n" only: str.splitlines() would also split on characters such
    # as "\x85" or "\u2028" that a literal could contain unescaped.
    lines = [line.rstrip("\r") for line in raw.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()

    ids: list[int] = []
    literals: list[str] = []
    lengths: list[int] = []
    for lineno, line in enumerate(lines, start=1):
        first, last = line.find(" "), line.rfind(" ")
        if first <= 0 or last <= first:
            raise ValueError(f"{path}:{lineno}: malformed vocab line {line!r}")
        try:
            ids.append(int(line[:first]))
            lengths.append(int(line[last + 1 :]))
        except ValueError:
            raise ValueError(f"{path}:{lineno}: malformed vocab line {line!r}") from None
        literals.append(line[first + 1 : last])

    try:
        values: list[Any] = literal_eval("[" + ",".join(literals) + "]")
        if len(values) != len(literals):  # a literal contained a comma-joined tuple
            raise ValueError
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        values = []
        for lineno, lit in enumerate(literals, start=1):
            try:
                values.append(literal_eval(lit))
            except (ValueError, SyntaxError) as exc:
                raise ValueError(f"{path}:{lineno}: bad token literal {lit!r}") from exc

    id_to_bytes: dict[int, bytes] = {END_OF_TEXT: b""}
    for lineno, (idx, value, length) in enumerate(zip(ids, values, lengths), start=1):
        if isinstance(value, str):
            value = value.encode("utf-8")
        elif not isinstance(value, bytes):
            raise ValueError(f"{path}:{lineno}: token must be str or bytes, got {value!r}")
        if len(value) != length:
            raise ValueError(
                f"{path}:{lineno}: token {value!r} has {len(value)} bytes, file says {length}"
            )
        if idx <= END_OF_TEXT or idx in id_to_bytes:
            raise ValueError(f"{path}:{lineno}: invalid or duplicate token id {idx}")
        id_to_bytes[idx] = value

    logger.debug("parsed %d vocab entries from %s", len(ids), path)
    return _Vocab(id_to_bytes=id_to_bytes, num_entries=len(ids), max_id=max(id_to_bytes))


class _ByteTrie:
    """Greedy longest-match encoder over a byte trie.

    The trie is flattened into a single dict keyed by ``node << 8 | byte``
    plus a list of terminal ids per node: ~116k nodes for the World vocab, far
    smaller than one object (or 256-slot list) per node and just as fast to
    walk.
    """

    __slots__ = ("_edges", "_terminal")

    def __init__(self, vocab: _Vocab) -> None:
        edges: dict[int, int] = {}
        terminal: list[int] = [-1]  # node 0 is the root; -1 = no token ends here
        # Ascending id order: if two ids ever shared the same bytes, the later
        # one wins, matching the official tokenizer's bytes -> id dict.
        for idx in sorted(vocab.id_to_bytes):
            token = vocab.id_to_bytes[idx]
            if not token:
                continue  # id 0 is never produced by encoding
            node = 0
            for byte in token:
                key = (node << 8) | byte
                child = edges.get(key)
                if child is None:
                    child = len(terminal)
                    edges[key] = child
                    terminal.append(-1)
                node = child
            terminal[node] = idx
        self._edges = edges
        self._terminal = terminal

    def encode(self, data: bytes) -> list[int]:
        edges_get = self._edges.get
        terminal = self._terminal
        out: list[int] = []
        append = out.append
        n = len(data)
        pos = 0
        while pos < n:
            node = 0
            best_id = -1
            best_end = pos
            j = pos
            while j < n:
                node = edges_get((node << 8) | data[j])
                if node is None:
                    break
                j += 1
                tid = terminal[node]
                if tid >= 0:
                    best_id = tid
                    best_end = j
            if best_id < 0:
                # Only possible with a custom vocab lacking some single bytes.
                raise ValueError(f"no vocabulary entry matches byte 0x{data[pos]:02x} at {pos}")
            append(best_id)
            pos = best_end
        return out


_T = TypeVar("_T")
_CACHE_LOCK = threading.RLock()  # re-entrant: the trie builder loads the vocab
_CACHES: dict[tuple[str, str], Any] = {}


def _cached(kind: str, path: str, build: Callable[[str], _T]) -> _T:
    """Build once per (kind, path) per process.

    Parsing costs ~0.2 s, the trie ~0.3 s and the Rust tokenizer ~0.7 s, so
    tokenizers constructed repeatedly (per request, per test) must share them.
    The lock makes concurrent first uses build only once.
    """
    key = (kind, path)
    try:
        return _CACHES[key]  # type: ignore[no-any-return]
    except KeyError:
        pass
    with _CACHE_LOCK:
        if key not in _CACHES:
            _CACHES[key] = build(path)
        return _CACHES[key]  # type: ignore[no-any-return]


def _build_trie(path: str) -> _ByteTrie:
    return _ByteTrie(_cached("vocab", path, _parse_vocab))


def _build_fast(path: str) -> Any:
    import pyrwkv_tokenizer

    return pyrwkv_tokenizer.WorldTokenizer(path)


def _fast_available() -> bool:
    try:
        import pyrwkv_tokenizer  # noqa: F401
    except ImportError:  # absent wheel or a broken extension module
        return False
    return True


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


class WorldTokenizer:
    """RWKV World tokenizer with a Rust fast path and a pure-Python fallback.

    Both backends return identical ids (greedy longest byte match) and share
    one decoder, so the backend choice never changes results, only speed.
    Parsed data is cached per vocab file, so constructing many instances is
    cheap after the first.

    Args:
        vocab_path: vocab file; defaults to the one shipped with the package.
        backend: ``"fast"`` (Rust ``pyrwkv_tokenizer``; ``ImportError`` if it
            is not installed), ``"reference"`` (pure Python) or ``"auto"``
            (fast when importable, else reference).
        special_tokens: extra entries ``{text: id}`` at ids the vocabulary
            leaves free (e.g. WorldRWKV's ``"<|image_pad|>": 65532``).  They
            are ordinary entries of the longest-match trie, as in the authors'
            ``wr_vocab_v20230424``: text spelling one encodes to its id, and
            the id decodes to that text.
    """

    def __init__(
        self,
        vocab_path: str | os.PathLike[str] | None = None,
        backend: Backend = "auto",
        special_tokens: Mapping[str, int] | None = None,
    ) -> None:
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
        path = Path(DEFAULT_VOCAB_PATH if vocab_path is None else vocab_path).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"RWKV vocab file not found: {path}")
        self._path = str(path)

        if backend == "auto":
            backend = "fast" if _fast_available() else "reference"
            logger.debug("WorldTokenizer backend=auto resolved to %r", backend)
        elif backend == "fast" and not _fast_available():
            raise ImportError(
                "WorldTokenizer(backend='fast') needs the 'pyrwkv-tokenizer' package; "
                "install it or use backend='reference'"
            )
        self._backend: str = backend
        # Encoding backends are built on first use (see _encoder).
        self._encode_one: _EncodeOne | None = None
        self._encode_many: _EncodeMany | None = None
        self._special = self._check_special(dict(special_tokens or {}))
        self._special_vocab: _Vocab | None = None
        self._special_trie: _ByteTrie | None = None

    def _check_special(self, special: dict[str, int]) -> dict[str, int]:
        taken = self._vocab.id_to_bytes
        for text, idx in special.items():
            if not isinstance(text, str) or not text or isinstance(idx, bool) or not isinstance(idx, int):
                raise ValueError(f"special token {text!r}: {idx!r} must map non-empty text to an integer id")
            if idx in taken:
                raise ValueError(f"special token {text!r} wants id {idx}, which the vocabulary already uses")
            if idx >= VOCAB_SIZE:
                raise ValueError(f"special token {text!r} wants id {idx}; ids must be below {VOCAB_SIZE}")
        if len(set(special.values())) != len(special):
            raise ValueError(f"special tokens share ids: {special}")
        return special

    # -- lazily built, process-wide shared state ---------------------------

    @property
    def _vocab(self) -> _Vocab:
        return _cached("vocab", self._path, _parse_vocab)

    @property
    def _table(self) -> dict[int, bytes]:
        """id -> bytes for decoding: the vocabulary plus the special tokens."""
        if not self._special:
            return self._vocab.id_to_bytes
        return self._with_special().id_to_bytes

    def _with_special(self) -> _Vocab:
        if self._special_vocab is None:
            base = self._vocab
            table = {**base.id_to_bytes, **{i: t.encode("utf-8") for t, i in self._special.items()}}
            self._special_vocab = _Vocab(table, base.num_entries + len(self._special), max(table))
        return self._special_vocab

    @property
    def special_tokens(self) -> dict[str, int]:
        """The extra ``{text: id}`` entries this tokenizer knows (empty for plain World)."""
        return dict(self._special)

    def _encoders(self) -> tuple[_EncodeOne, _EncodeMany]:
        if self._encode_one is None or self._encode_many is None:
            if self._backend == "fast":
                fast = _cached("fast", self._path, _build_fast)
                self._encode_one, self._encode_many = fast.encode, fast.encode_batch
            else:
                trie = _cached("trie", self._path, _build_trie)

                def encode_one(text: str) -> list[int]:
                    return trie.encode(text.encode("utf-8"))

                def encode_many(texts: list[str]) -> list[list[int]]:
                    return [trie.encode(t.encode("utf-8")) for t in texts]

                self._encode_one, self._encode_many = encode_one, encode_many
        return self._encode_one, self._encode_many

    # -- properties --------------------------------------------------------

    @property
    def backend(self) -> str:
        """The resolved backend, ``"fast"`` or ``"reference"``."""
        return self._backend

    @property
    def vocab_path(self) -> str:
        return self._path

    @property
    def vocab_size(self) -> int:
        """Embedding rows a model needs: ``max id + 1`` rounded up to 64.

        65536 for the World vocab, whose file has 65529 entries (ids 1..65529)
        plus id 0; ids 65530..65535 are free for special tokens.
        """
        rows = (self._with_special() if self._special else self._vocab).max_id + 1
        return -(-rows // _EMBEDDING_ROW_MULTIPLE) * _EMBEDDING_ROW_MULTIPLE

    @property
    def num_vocab_entries(self) -> int:
        """Entries in the vocab file (65529 for World), excluding id 0."""
        return self._vocab.num_entries

    def __len__(self) -> int:
        """Same as :attr:`vocab_size`: the size of an id-indexed table."""
        return self.vocab_size

    def __repr__(self) -> str:
        special = f", special_tokens={self._special!r}" if self._special else ""
        return f"{type(self).__name__}(vocab_path={self._path!r}, backend={self._backend!r}{special})"

    # -- encoding ----------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Encode text to ids.  Never emits :data:`END_OF_TEXT`.

        Raises:
            TypeError: ``text`` is not a ``str``.
            UnicodeEncodeError: ``text`` contains lone surrogates.
        """
        if not isinstance(text, str):
            raise TypeError(
                f"WorldTokenizer.encode() expects str, got {type(text).__name__}"
                + (" (decode bytes to str first)" if isinstance(text, (bytes, bytearray)) else "")
            )
        if self._special and any(t in text for t in self._special):
            return self._encode_with_special(text)
        # Without a special token's full text present, no added entry can match anywhere, so the
        # plain vocabulary gives the identical greedy result.
        return self._encoders()[0](text)

    def _encode_with_special(self, text: str) -> list[int]:
        if self._special_trie is None:
            # Shared by every tokenizer with the same vocabulary and special tokens (~0.3 s to build).
            kind = "trie+" + repr(sorted(self._special.items()))
            self._special_trie = _cached(kind, self._path, lambda _: _ByteTrie(self._with_special()))
        return self._special_trie.encode(text.encode("utf-8"))

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Encode several texts; the fast backend does so in parallel."""
        if isinstance(texts, str):
            raise TypeError(
                "WorldTokenizer.encode_batch() expects a sequence of str, got a single str"
            )
        batch = list(texts)
        for i, text in enumerate(batch):
            if not isinstance(text, str):
                raise TypeError(
                    "WorldTokenizer.encode_batch() expects str items, "
                    f"item {i} is {type(text).__name__}"
                )
        if self._special and any(t in text for text in batch for t in self._special):
            return [self.encode(text) for text in batch]
        return self._encoders()[1](batch)

    # -- decoding (backend independent) ------------------------------------

    def token_bytes(self, token_id: int) -> bytes:
        """The exact bytes of one token (may be a partial UTF-8 character)."""
        try:
            return self._table[token_id]
        except (KeyError, TypeError):
            raise ValueError(f"token id {token_id!r} is not in the vocabulary") from None

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        """Concatenate token bytes exactly, without any UTF-8 interpretation.

        This is what a streaming detokenizer needs: it can hold back an
        incomplete trailing UTF-8 sequence instead of emitting U+FFFD.
        Accepts anything with ``tolist()`` (numpy arrays, torch tensors).
        """
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        table = self._table
        try:
            return b"".join([table[i] for i in ids])
        except (KeyError, TypeError):
            pass
        # Slow path only to name the offending id.
        for i in ids:
            try:
                table[i]
            except (KeyError, TypeError):
                raise ValueError(f"token id {i!r} is not in the vocabulary") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def decode(self, ids: Sequence[int], errors: str = "replace") -> str:
        """Decode ids to text; ``errors`` is passed to ``bytes.decode``.

        The default ``"replace"`` turns each invalid or truncated UTF-8
        sequence into U+FFFD (unlike the official ``TRIE_TOKENIZER``, which
        replaces the *whole* output with a single U+FFFD).
        """
        return self.decode_bytes(ids).decode("utf-8", errors)
