"""Tests for the RWKV World tokenizer.

The oracle is the official ``rwkv`` package's ``TRIE_TOKENIZER`` built from the
vocab file shipped *inside that package* (CRLF line endings there, LF in ours),
so our parsing, both of our encoders and our decoder are checked against an
independent implementation and an independent copy of the data.
"""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path

import pytest

from modrwkv.tokenizer import WorldTokenizer
from modrwkv.tokenizer import world

# One xdist worker runs the module: its fast tokenizer (~2-3.5 s to build) is made once, not on both.
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"), pytest.mark.xdist_group("test_tokenizer")]

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import rwkv  # its __init__ is empty; only the tokenizer submodule is used
    from rwkv.rwkv_tokenizer import TRIE_TOKENIZER

RWKV_VOCAB_PATH = os.path.join(os.path.dirname(rwkv.__file__), "rwkv_vocab_v20230424.txt")

try:
    import pyrwkv_tokenizer  # noqa: F401

    HAVE_FAST = True
except ImportError:
    HAVE_FAST = False

BACKENDS = [
    pytest.param(
        "fast", marks=pytest.mark.skipif(not HAVE_FAST, reason="pyrwkv-tokenizer not installed")
    ),
    "reference",
]


# --------------------------------------------------------------------------
# Fixtures and corpus
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def oracle() -> TRIE_TOKENIZER:
    return TRIE_TOKENIZER(RWKV_VOCAB_PATH)


@pytest.fixture(scope="module", params=BACKENDS)
def tok(request: pytest.FixtureRequest) -> WorldTokenizer:
    t = WorldTokenizer(backend=request.param)
    assert t.backend == request.param
    return t


FIXED_TEXTS: dict[str, str] = {
    "empty": "",
    "english": (
        "The quick brown fox jumps over the lazy dog. It's 3:45pm; isn't it? "
        "\"Quoted\" words, (parentheses), and hyphen-ated/slashed tokens -- plus... ellipses!"
    ),
    "python": (
        "def f(x: int) -> int:\n"
        "    \"\"\"Docstring.\"\"\"\n"
        "    if x > 0:\n"
        "\t\treturn x ** 2  # tab-indented\n"
        "    return -x\n\n\n"
        "class A(object):\n        pass\n"
    ),
    "c": "#include <stdio.h>\nint main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
    "json": '{\n  "a": [1, 2.5, -3e10, null, true],\n  "b": {"c": "d\\u00e9"},\n\t"e": ""\n}',
    "chinese": "我们今天去公园散步，天气非常好。机器学习是人工智能的一个分支。",
    "japanese": "東京は日本の首都です。ひらがな、カタカナ、漢字を使います。ｶﾀｶﾅ半角",
    "korean": "안녕하세요. 오늘 날씨가 정말 좋네요! 한국어 토크나이저 테스트.",
    "emoji": "Hi 😀👍🏽 🎉🎉🎉 ❤️ ☃",
    "emoji_zwj": "👨‍👩‍👧‍👦 👩🏽‍💻 🏳️‍🌈 🧑‍🤝‍🧑",
    "flags": "🇺🇸🇯🇵🇩🇪🇫🇷🇨🇳 🏴󠁧󠁢󠁳󠁣󠁴󠁿",
    "arabic_hebrew": "مرحبا بالعالم، كيف حالك؟ שלום עולם, מה שלומך? mixed עברית and English",
    "combining": "e\u0301 a\u0300\u0323 Z\u0351\u0352\u0353\u0354 n\u0303 \u1100\u1161\u11a8 cafe\u0301",
    "controls": "\x00a\x00\x00b\x01\x02\x7f\x16User: hi\x17\n\n\x16Assistant: ok\x17\r\n\x1b[31mred\x1b[0m",
    "crlf": "line1\r\nline2\r\n\r\nline3\r",
    "spaces": " " * 1 + "|" + " " * 7 + "|" + " " * 128 + "|" + " " * 300 + "x" + "\t" * 40,
    "newlines": "\n" * 50 + "a" + "\n\n\n" + "\r" * 9,
    "all_bytes_latin1": "".join(chr(c) for c in range(1, 256)),
    "chat": "\x16User: What is 2+2?\x17\n\n\x16Assistant: 4.\x17\n\n",
    "long_dashes": "-" * 200 + "=" * 97 + "#" * 64,
    "math_symbols": "∀x∈ℝ: x² ≥ 0 ∑ᵢ αᵢ ≠ ∞ — “smart quotes” ‘single’ …",
}


def _random_texts(seed: int = 20230424, count: int = 300) -> list[str]:
    """Random strings that stress UTF-8 widths and token boundaries.

    Code points are drawn from every UTF-8 length class (skipping surrogates,
    which str.encode rejects), and half of the strings are built by gluing
    random vocab entries together so greedy longest-match is exercised at
    real token boundaries rather than only on byte fallback.
    """
    rng = random.Random(seed)
    ranges = [(0x00, 0x7F), (0x80, 0x7FF), (0x800, 0xD7FF), (0xE000, 0xFFFF), (0x10000, 0x10FFFF)]
    vocab = world._cached("vocab", str(world.DEFAULT_VOCAB_PATH.resolve()), world._parse_vocab)
    pieces = [b.decode("utf-8") for b in vocab.id_to_bytes.values() if b and _is_utf8(b)]
    texts: list[str] = []
    for i in range(count):
        n = rng.randint(1, 40)
        if i % 2:
            texts.append("".join(rng.choice(pieces) for _ in range(n)))
        else:
            chars = []
            for _ in range(n):
                lo, hi = rng.choice(ranges)
                chars.append(chr(rng.randint(lo, hi)))
            texts.append("".join(chars))
    return texts


def _is_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


RANDOM_TEXTS = _random_texts()
ALL_TEXTS = list(FIXED_TEXTS.values()) + RANDOM_TEXTS


# --------------------------------------------------------------------------
# Agreement with the official tokenizer
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FIXED_TEXTS))
def test_fixed_texts_match_oracle(tok: WorldTokenizer, oracle: TRIE_TOKENIZER, name: str) -> None:
    text = FIXED_TEXTS[name]
    ids = tok.encode(text)
    assert ids == oracle.encode(text)
    assert tok.decode(ids) == text
    assert tok.decode_bytes(ids) == text.encode("utf-8")


def test_random_texts_match_oracle(tok: WorldTokenizer, oracle: TRIE_TOKENIZER) -> None:
    for text in RANDOM_TEXTS:
        ids = tok.encode(text)
        assert ids == oracle.encode(text), repr(text)
        assert tok.decode(ids) == text, repr(text)


def test_long_document_matches_oracle(tok: WorldTokenizer, oracle: TRIE_TOKENIZER) -> None:
    text = "\n".join(ALL_TEXTS)
    ids = tok.encode(text)
    assert ids == oracle.encode(text)
    assert tok.decode(ids) == text


def test_encode_batch(tok: WorldTokenizer) -> None:
    texts = list(FIXED_TEXTS.values()) + RANDOM_TEXTS[:50]
    assert tok.encode_batch(texts) == [tok.encode(t) for t in texts]
    assert tok.encode_batch(tuple(texts[:3])) == [tok.encode(t) for t in texts[:3]]
    assert tok.encode_batch([]) == []


def test_backends_agree() -> None:
    if not HAVE_FAST:
        pytest.skip("pyrwkv-tokenizer not installed")
    fast, ref = WorldTokenizer(backend="fast"), WorldTokenizer(backend="reference")
    assert fast.encode_batch(ALL_TEXTS) == ref.encode_batch(ALL_TEXTS)


def test_every_vocab_entry_matches_oracle(tok: WorldTokenizer, oracle: TRIE_TOKENIZER) -> None:
    # Each entry on its own, and glued to its neighbour so matches cross entries.
    texts = [b.decode("utf-8") for b in oracle.idx2token.values() if _is_utf8(b)]
    texts += [a + b for a, b in zip(texts[::2], texts[1::2])]
    assert tok.encode_batch(texts) == [oracle.encode(t) for t in texts]


def test_token_bytes_match_oracle_vocab(oracle: TRIE_TOKENIZER) -> None:
    t = WorldTokenizer(backend="reference")
    assert t.num_vocab_entries == len(oracle.idx2token) == 65529
    for idx, expected in oracle.idx2token.items():
        assert t.token_bytes(idx) == expected
    for byte in range(256):
        assert t.token_bytes(byte + 1) == bytes([byte])


def test_crlf_vocab_file_parses_identically() -> None:
    crlf = WorldTokenizer(RWKV_VOCAB_PATH, backend="reference")
    lf = WorldTokenizer(backend="reference")
    assert crlf._vocab.id_to_bytes == lf._vocab.id_to_bytes
    text = FIXED_TEXTS["chat"] + FIXED_TEXTS["python"]
    assert crlf.encode(text) == lf.encode(text)


# --------------------------------------------------------------------------
# Known ids and constants
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("\n", [11]),
        ("\x16", [23]),
        ("\x17", [24]),
        ("\n\n", [261]),
        ("\x00", [1]),
        ("\x16User:", [23, 24281, 59]),
        ("\x16Assistant:", [23, 5585, 41693, 59]),
    ],
)
def test_known_ids(tok: WorldTokenizer, text: str, ids: list[int]) -> None:
    assert tok.encode(text) == ids
    assert tok.decode(ids) == text


def test_constants_and_sizes(tok: WorldTokenizer) -> None:
    assert world.END_OF_TEXT == 0
    assert world.DOUBLE_NEWLINE == 261 == tok.encode("\n\n")[0]
    assert tok.vocab_size == world.VOCAB_SIZE == 65536
    assert len(tok) == 65536
    assert tok.num_vocab_entries == 65529
    assert Path(tok.vocab_path) == world.DEFAULT_VOCAB_PATH.resolve()


def test_end_of_text_decodes_to_nothing(tok: WorldTokenizer) -> None:
    assert tok.token_bytes(0) == b""
    assert tok.decode_bytes([0]) == b""
    assert tok.decode([0, 11, 0, 0, 11, 0]) == "\n\n"
    assert 0 not in tok.encode(FIXED_TEXTS["controls"])


# --------------------------------------------------------------------------
# Byte-exact decoding and invalid UTF-8
# --------------------------------------------------------------------------


def test_decode_bytes_of_split_emoji_is_exact(tok: WorldTokenizer) -> None:
    emoji = "👨‍👩‍👧"
    raw = emoji.encode("utf-8")
    byte_ids = [b + 1 for b in raw]  # ids 1..256 are single bytes
    for cut in range(len(raw) + 1):
        assert tok.decode_bytes(byte_ids[:cut]) == raw[:cut]
        assert tok.decode_bytes(byte_ids[cut:]) == raw[cut:]
    assert tok.decode(byte_ids) == emoji
    # Whatever the encoder chose, concatenated token bytes are exact too.
    ids = tok.encode(emoji)
    assert b"".join(tok.token_bytes(i) for i in ids) == raw
    assert tok.decode_bytes(ids) == raw


@pytest.mark.parametrize(
    "ids",
    [
        [0xE4 + 1],  # lone lead byte of a 3-byte sequence
        [0xE4 + 1, 0xBD + 1],  # truncated 3-byte sequence
        [0xFF + 1],  # never valid in UTF-8
        [0x80 + 1, 98],  # stray continuation byte, then "a"
        [98, 0xF0 + 1, 0x9F + 1, 98],  # truncated 4-byte sequence mid-text
    ],
)
@pytest.mark.parametrize("errors", ["replace", "ignore", "backslashreplace", "surrogateescape"])
def test_decode_invalid_utf8_matches_bytes_decode(
    tok: WorldTokenizer, ids: list[int], errors: str
) -> None:
    expected = tok.decode_bytes(ids).decode("utf-8", errors)
    assert tok.decode(ids, errors=errors) == expected


def test_decode_default_errors_replace(tok: WorldTokenizer) -> None:
    assert tok.decode([0xE4 + 1]) == "\ufffd"
    assert tok.decode([98, 0xFF + 1, 98]) == "a\ufffda"
    with pytest.raises(UnicodeDecodeError):
        tok.decode([0xE4 + 1], errors="strict")


def test_decode_accepts_array_likes(tok: WorldTokenizer) -> None:
    import numpy as np
    ids = tok.encode(FIXED_TEXTS["chinese"])
    assert tok.decode(np.asarray(ids, dtype=np.int64)) == FIXED_TEXTS["chinese"]
    assert tok.decode(tuple(ids)) == FIXED_TEXTS["chinese"]
    assert tok.decode(iter(ids)) == FIXED_TEXTS["chinese"]


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


@pytest.mark.parametrize("bad_id", [65530, 65535, 65536, 10**9, -1, -65529])
def test_unknown_id_raises_value_error(tok: WorldTokenizer, bad_id: int) -> None:
    with pytest.raises(ValueError, match=str(bad_id)):
        tok.decode([11, bad_id, 11])
    with pytest.raises(ValueError, match=str(bad_id)):
        tok.decode_bytes([bad_id])
    with pytest.raises(ValueError, match=str(bad_id)):
        tok.token_bytes(bad_id)


def test_non_int_id_raises_value_error(tok: WorldTokenizer) -> None:
    with pytest.raises(ValueError, match="'x'"):
        tok.decode([11, "x"])  # type: ignore[list-item]


@pytest.mark.parametrize("bad", [None, b"abc", 5, ["a"]])
def test_encode_non_str_raises_type_error(tok: WorldTokenizer, bad: object) -> None:
    with pytest.raises(TypeError, match="expects str"):
        tok.encode(bad)  # type: ignore[arg-type]


def test_encode_batch_type_errors(tok: WorldTokenizer) -> None:
    with pytest.raises(TypeError, match="item 1"):
        tok.encode_batch(["a", b"b"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="single str"):
        tok.encode_batch("abc")


def test_lone_surrogate_raises_unicode_error(tok: WorldTokenizer) -> None:
    with pytest.raises(UnicodeEncodeError):
        tok.encode("a\ud800b")


def test_constructor_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="backend"):
        WorldTokenizer(backend="turbo")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        WorldTokenizer(tmp_path / "missing.txt")


# --------------------------------------------------------------------------
# Backend selection, caching, custom vocab files
# --------------------------------------------------------------------------


def test_auto_backend_falls_back_without_rust(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(world, "_fast_available", lambda: False)
    t = WorldTokenizer()
    assert t.backend == "reference"
    assert t.encode("\x16User:") == [23, 24281, 59]
    with pytest.raises(ImportError, match="pyrwkv-tokenizer"):
        WorldTokenizer(backend="fast")


def test_auto_backend_prefers_rust() -> None:
    expected = "fast" if HAVE_FAST else "reference"
    assert WorldTokenizer().backend == expected


def test_parsed_vocab_is_shared_between_instances() -> None:
    a = WorldTokenizer(backend="reference")
    b = WorldTokenizer(str(world.DEFAULT_VOCAB_PATH), backend="reference")
    assert a._vocab is b._vocab
    assert a.encode("\n\n") == b.encode("\n\n") == [261]
    key = ("trie", str(world.DEFAULT_VOCAB_PATH.resolve()))
    trie = world._CACHES[key]
    WorldTokenizer(backend="reference").encode("x")
    assert world._CACHES[key] is trie


def _write_vocab(path: Path, extra: list[tuple[int, object]]) -> None:
    lines = [f"{b + 1} {bytes([b])!r} 1" for b in range(256)]
    for idx, tok in extra:
        n = len(tok.encode("utf-8") if isinstance(tok, str) else tok)  # type: ignore[union-attr]
        lines.append(f"{idx} {tok!r} {n}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_custom_vocab_greedy_longest_match(tmp_path: Path) -> None:
    vocab = tmp_path / "v.txt"
    _write_vocab(vocab, [(257, "ab"), (258, "abcd"), (259, "bc"), (260, "é"), (261, b"\xc3")])
    t = WorldTokenizer(vocab, backend="reference")
    # Greedy: "abc" -> "ab" + "c" even though "a" + "bc" is also possible.
    assert t.encode("abc") == [257, ord("c") + 1]
    assert t.encode("abcdabcd") == [258, 258]
    assert t.encode("é") == [260]
    assert t.token_bytes(261) == b"\xc3"
    assert t.vocab_size == 320  # 262 rows rounded up to a multiple of 64
    assert t.num_vocab_entries == 261


def test_custom_vocab_validation(tmp_path: Path) -> None:
    bad_len = tmp_path / "bad_len.txt"
    bad_len.write_text("1 'ab' 3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bytes"):
        WorldTokenizer(bad_len, backend="reference").decode([1])

    bad_literal = tmp_path / "bad_literal.txt"
    bad_literal.write_text("1 'a' 1\n2 __import__('os') 1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="literal"):
        WorldTokenizer(bad_literal, backend="reference").decode([1])

    incomplete = tmp_path / "incomplete.txt"
    incomplete.write_text("1 'a' 1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="0x62"):
        WorldTokenizer(incomplete, backend="reference").encode("ab")
