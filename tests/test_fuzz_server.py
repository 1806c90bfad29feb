"""Fuzzing the server's request parsing over real HTTP (seeded and bounded: the same inputs on every
run, a few seconds in all).

Random JSON shapes and types in every field of a chat request, random media payloads, text
encodings (UTF-8/16/32), damaged bytes: the server answers each with a success or a 4xx whose body
is an OpenAI error object with a message, never a 5xx, and it still serves a normal request after.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_pipeline import png_bytes, wav_bytes  # noqa: F401
from test_server import KEY, USER, ask, live  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FUZZ = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
                    st.text(max_size=8))
ANY = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                     st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                   max_leaves=12)
PAYLOADS = st.one_of(st.just(png_bytes(1, (8, 8))), st.just(wav_bytes(0.2)), st.binary(max_size=40),
                     st.just(png_bytes(2, (8, 8))[:40]))
URLS = st.one_of(
    st.builds(lambda data, mime: f"data:{mime};base64,{base64.b64encode(data).decode()}", PAYLOADS,
              st.sampled_from(["image/png", "image/jpeg", "audio/wav", "text/plain", ""])),
    st.sampled_from(["data:image/png;base64,!!", "data:,x", "https://example.com/a.png", "file:///etc/passwd",
                     "/etc/passwd", "ftp://x", ""]),
    ANY)
def mostly(valid: st.SearchStrategy, weight: int = 4) -> st.SearchStrategy:
    """Usually a well-formed value (so that requests get past the first checks to the deeper
    ones: media decoding, sampling, generation), sometimes anything at all."""
    return st.sampled_from([True] * weight + [False]).flatmap(lambda well_formed: valid if well_formed else ANY)


PARTS = mostly(st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": mostly(st.text(max_size=20))}),
    st.fixed_dictionaries({"type": st.just("image_url"), "image_url": mostly(st.fixed_dictionaries({"url": URLS}))}),
    st.fixed_dictionaries({"type": st.just("input_audio"), "input_audio": mostly(st.fixed_dictionaries({
        "data": mostly(PAYLOADS.map(lambda b: base64.b64encode(b).decode())),
        "format": st.sampled_from(["wav", "mp3", "flac", "xyz"])}))})))
MESSAGES = st.lists(mostly(st.fixed_dictionaries({
    "role": mostly(st.sampled_from(["user", "user", "assistant", "system"])),
    "content": mostly(st.one_of(st.text(max_size=30), st.lists(PARTS, max_size=3)))})), min_size=1, max_size=3)
FIELDS = {
    "temperature": mostly(st.floats(-0.5, 2.5)), "top_p": mostly(st.floats(-0.2, 1.2)),
    "max_tokens": mostly(st.integers(-1, 70)), "max_completion_tokens": mostly(st.integers(-1, 70)),
    "n": mostly(st.integers(0, 2)), "stop": mostly(st.one_of(st.text(max_size=3), st.lists(st.text(max_size=3)))),
    "stream": mostly(st.booleans()), "stream_options": mostly(st.just({"include_usage": True})),
    "seed": mostly(st.integers(-(2**70), 2**70)), "top_k": mostly(st.integers(-2, 50)),
    "presence_penalty": mostly(st.floats(-2.5, 2.5)), "frequency_penalty": mostly(st.floats(-2.5, 2.5)),
    "response_format": mostly(st.just({"type": "text"})), "logprobs": st.one_of(st.just(False), ANY),
}
REQUESTS = mostly(st.builds(lambda model, messages, extra: {"model": model, "messages": messages, **extra},
                            mostly(st.just("tiny"), 8), MESSAGES, st.fixed_dictionaries({}, optional=FIELDS)), 8)


def encode(body, how: int, noise: bytes, where: int) -> bytes:
    """The request in UTF-8, UTF-16 or UTF-32 (all valid JSON encodings), or UTF-8 with bytes planted."""
    text = json.dumps(body, ensure_ascii=how == 4)
    if how in (1, 2):
        return text.encode("utf-16" if how == 1 else "utf-32")
    data = text.encode()
    if how == 3:
        where = where % (len(data) + 1)
        return data[:where] + noise + data[where:]
    return data


def post(url: str, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(f"{url}/v1/chat/completions", body, method="POST",
                                     headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@FUZZ
@given(body=REQUESTS, how=st.sampled_from([0, 0, 0, 0, 1, 2, 3, 4]), noise=st.binary(min_size=1, max_size=4), where=st.integers(0, 10**6))
def test_random_requests_get_an_answer_or_a_clear_4xx(live, body, how, noise, where):
    status, reply = post(live.url, encode(body, how, noise, where))
    assert status < 500, reply[:500]
    if status >= 400:
        error = json.loads(reply)["error"]
        assert isinstance(error["message"], str) and error["message"] and " object at 0x" not in error["message"]
    elif reply.startswith(b"data: "):  # a stream: every event is JSON and it ends with [DONE] (or an error event)
        events = [line.removeprefix(b"data: ") for line in reply.split(b"\n\n") if line]
        assert all(json.loads(e) for e in events[:-1]) and (events[-1] == b"[DONE]" or b"error" in events[-1])
    else:
        assert json.loads(reply)["object"] == "chat.completion"


def test_server_is_alive_after_the_fuzzing(live):
    assert live.health()["status"] == "ok" and live.health()["failed"] == 0
    assert ask(live.client(), [USER], max_tokens=3).usage.completion_tokens <= 3
