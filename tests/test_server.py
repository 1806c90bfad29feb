"""The OpenAI-compatible server, driven by the official `openai` client over real HTTP on 127.0.0.1:
text, image and audio requests, streaming, limits and errors, continuous batching, disconnects."""

import base64
import concurrent.futures
import contextlib
import dataclasses
import functools
import http.server
import io
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import warnings

import openai
import pytest
import uvicorn
from conftest import make_model
from test_pipeline import png_bytes, tiny_pipeline, wav_bytes  # noqa: F401

from modrwkv.lm import save_model
from modrwkv.serving import ServerLimits, create_app
import warm_start  # noqa: E402  (tests/)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

KEY = "test-key"
LIMITS = ServerLimits(max_body_bytes=1_000_000, max_image_pixels=40_000, max_audio_seconds=3, max_tokens=64,
                      default_max_tokens=16)


@dataclasses.dataclass
class Live:
    url: str
    app: object

    def client(self, key: str = KEY, **options) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, timeout=60, **options)

    def health(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/health", timeout=10) as response:
            return json.load(response)

    def wait_for(self, condition, timeout: float = 15.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            health = self.health()
            if condition(health):
                return health
            assert time.monotonic() < deadline, f"condition not reached; /health says {health}"
            time.sleep(0.05)


@contextlib.contextmanager
def live_server(pipeline=None, **options):
    """The app under uvicorn in a background thread, on a free port of 127.0.0.1."""
    app = create_app(pipeline or tiny_pipeline(), **{"model_name": "tiny", **options})
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield Live(f"http://127.0.0.1:{sock.getsockname()[1]}", app)
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()


@pytest.fixture(scope="module")
def live():
    with live_server(limits=LIMITS, api_key=KEY, max_batch=8, max_queue=16) as server:
        yield server


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def image_part(seed: int = 0, size=(48, 64)) -> dict:
    return {"type": "image_url", "image_url": {"url": data_uri(png_bytes(seed, size))}}


def audio_part(seconds: float = 1.0, seed: int = 0) -> dict:
    return {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav_bytes(seconds, seed)).decode(),
                                                   "format": "wav"}}


def ask(client: openai.OpenAI, messages, model: str = "tiny", **options):
    options = {"temperature": 0, "max_tokens": 8, **options}
    return client.chat.completions.create(model=model, messages=messages, **options)


def expected(messages, max_tokens: int = 8, **sampling) -> str:
    return tiny_pipeline().chat(messages, **{"temperature": 0, "max_new_tokens": max_tokens, **sampling})


# --- requests -----------------------------------------------------------------------------------


def test_text_image_and_audio_requests(live):
    client = live.client()
    conversations = [
        [{"role": "user", "content": "Hello there"}],
        [{"role": "user", "content": [image_part(1), {"type": "text", "text": "What is this?"}]}],
        [{"role": "system", "content": "Compare things."},
         {"role": "user", "content": [image_part(2), {"type": "text", "text": "and"}, image_part(3),
                                      audio_part(1.0), {"type": "text", "text": "What do you see and hear?"}]}],
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
         {"role": "user", "content": [audio_part(0.5, seed=1), {"type": "text", "text": "Transcribe"}]}],
    ]
    for messages in conversations:
        response = ask(client, messages)
        choice = response.choices[0]
        assert choice.message.role == "assistant" and choice.message.content == expected(messages)
        assert choice.finish_reason in ("stop", "length")
        prompt = tiny_pipeline().encode(messages)
        assert response.usage.prompt_tokens == len(prompt)
        assert 1 <= response.usage.completion_tokens <= 8
        assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens
        assert response.model == "tiny" and response.id.startswith("chatcmpl-")
    # Sampling options reach the sampler: a seed reproduces, a stop string cuts.
    sampled = [ask(client, conversations[0], temperature=1.0, top_p=0.9, seed=5).choices[0].message.content
               for _ in range(2)]
    assert sampled[0] == sampled[1] == expected(conversations[0], temperature=1.0, top_p=0.9, seed=5)
    # top_p 0, which OpenAI takes: only the most probable token, greedy decoding at any temperature
    nucleus = ask(client, conversations[0], temperature=1.5, top_p=0, max_tokens=16).choices[0].message.content
    assert nucleus == expected(conversations[0], max_tokens=16)
    full = ask(client, conversations[0], max_tokens=16).choices[0].message.content
    cut = ask(client, conversations[0], max_tokens=16, stop=[full[3:5]])
    assert cut.choices[0].message.content == full[: full.index(full[3:5])]
    assert cut.choices[0].finish_reason == "stop"
    default_length = ask(client, conversations[0], max_tokens=None)
    assert default_length.usage.completion_tokens <= LIMITS.default_max_tokens


def test_streaming_sends_sse_chunks_then_done(live):
    client = live.client()
    messages = [{"role": "user", "content": [image_part(4), {"type": "text", "text": "Describe it."}]}]
    chunks = list(ask(client, messages, max_tokens=12, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ask(client, messages, max_tokens=12).choices[0].message.content
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 2  # streamed, not one block
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishing) == 1 and finishing[0].choices[0].finish_reason in ("stop", "length")
    assert chunks[-1].usage.prompt_tokens == len(tiny_pipeline().encode(messages)) and not chunks[-1].choices
    # On the wire: only "data: " events, ending with [DONE].
    body = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "stream": True,
                       "max_tokens": 4, "temperature": 0}).encode()
    request = urllib.request.Request(f"{live.url}/v1/chat/completions", body, method="POST",
                                     headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = [e for e in response.read().decode().split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"


def test_models_health_and_api_key(live):
    models = live.client().models.list()
    assert [m.id for m in models.data] == ["tiny"]
    assert live.health()["status"] == "ok"  # open, for load balancers
    with urllib.request.urlopen(f"{live.url}/", timeout=10) as response:
        assert b"<title>modrwkv chat</title>" in response.read()
    with pytest.raises(openai.AuthenticationError, match="API key"):
        ask(live.client(key="wrong"), [{"role": "user", "content": "hi"}])
    for headers in ({}, {"Authorization": f"Basic {KEY}"}):  # no key at all; the key in the wrong scheme
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(urllib.request.Request(f"{live.url}/v1/models", headers=headers), timeout=10)
        assert raised.value.code == 401


# --- limits and errors --------------------------------------------------------------------------

USER = {"role": "user", "content": "hi"}
BAD_REQUESTS = [
    ({"model": "gpt-4"}, openai.NotFoundError, "does not exist"),
    ({"messages": []}, openai.BadRequestError, "non-empty list"),
    ({"messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]}, openai.BadRequestError,
     "messages[0] is a tool call or a tool's result; this server has no tool calling"),
    ({"messages": [USER, {"role": "assistant", "content": None, "tool_calls": [{"id": "1", "type": "function", "function": {
        "name": "f", "arguments": "{}"}}]}, USER]}, openai.BadRequestError, "messages[1] is a tool call"),
    ({"messages": [{"role": "critic", "content": "x"}]}, openai.BadRequestError, "unknown role"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]},
     openai.BadRequestError, "cannot be decoded"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]},
     openai.BadRequestError, "--allow-remote-media"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "file:///etc/hostname"}}]}]},
     openai.BadRequestError, "--allow-local-media"),
    ({"messages": [{"role": "user", "content": [image_part(0, size=(300, 300))]}]}, openai.BadRequestError,
     "90000 pixels"),
    ({"messages": [{"role": "user", "content": [audio_part(4.0)]}]}, openai.BadRequestError, "lasts 4.0 s"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "bm90IGF1ZGlv"}}]}]},
     openai.BadRequestError, "the audio in messages[0].content[0] cannot be decoded: not a recognised audio format"),
    ({"max_tokens": 65}, openai.BadRequestError, "max_tokens"),
    ({"max_tokens": 0}, openai.BadRequestError, "max_tokens"),
    ({"temperature": 3}, openai.BadRequestError, "temperature"),
    ({"top_p": 1.5}, openai.BadRequestError, "top_p"),
    ({"n": 17}, openai.BadRequestError, "'n' must be an integer from 1 to 16, got 17"),
    ({"response_format": {"type": "json_object"}}, openai.BadRequestError,
     "response_format type \"json_object\" is not supported: this server has no JSON mode or structured outputs"),
    ({"stop": [""]}, openai.BadRequestError, "stop"),
    ({"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}}, openai.BadRequestError,
     "this server answers in text only"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, openai.BadRequestError, "tools"),
    ({"messages": [{"role": "user", "content": "x" * 1_100_000}]}, openai.APIStatusError, "at most 1000000"),
    ({"messages": [USER, {"role": "assistant", "content": None}, USER]}, openai.BadRequestError,
     "messages[1].content must be str or list, got NoneType"),  # a type error, not training data's empty_answer
]


@pytest.mark.parametrize("override,error,message", BAD_REQUESTS, ids=[m for _, _, m in BAD_REQUESTS])
def test_bad_requests_get_clear_errors(live, override, error, message):
    request = {"model": "tiny", "messages": [USER], **override}
    with pytest.raises(error) as raised:
        live.client().chat.completions.create(**request)
    assert message in raised.value.message
    assert raised.value.status_code == (413 if "at most 1000000" in message else 404 if "exist" in message else 400)


def test_media_the_model_has_no_encoder_for_are_named_by_part_before_decoding():
    """A series-only model: an audio or image part is refused as unreadable by this model, naming the part
    and what the model reads, before its bytes are decoded (these are no audio file and no image)."""
    from fastapi.testclient import TestClient

    from modrwkv.encoders import build_encoder
    from modrwkv.inference import ModRWKVPipeline
    from modrwkv.multimodal import ModRWKV
    from test_pipeline import LM

    series_only = ModRWKV.build(make_model(LM, seed=2), {"series": build_encoder("wavenet", layers=2, output_dim=24)})
    not_media = base64.b64encode(b"not a media file").decode()
    parts = {"audio": {"type": "input_audio", "input_audio": {"data": not_media, "format": "wav"}},
             "image": {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{not_media}"}}}
    with TestClient(create_app(ModRWKVPipeline(series_only), model_name="tiny")) as client:
        for modality, part in parts.items():
            reply = client.post("/v1/chat/completions", json={"model": "tiny", "messages": [
                {"role": "user", "content": [{"type": "text", "text": "What is it?"}, part]}]})
            assert reply.status_code == 400 and reply.json()["error"] == {
                "message": f"the {modality} in messages[0].content[1] cannot be read: the served model has no "
                           f"{modality} encoder (it reads series)",
                "type": "invalid_request_error", "param": "messages", "code": f"{modality}_unsupported"}


def test_a_video_is_refused_apart_for_a_model_without_an_image_encoder_and_a_server_without_pyav(monkeypatch):
    """Two refusals, two codes: the model has no encoder for video (400, as image_unsupported and
    audio_unsupported), or the server cannot decode video at all (501: PyAV, the [video] extra, missing)."""
    from fastapi.testclient import TestClient

    from modrwkv.encoders import build_encoder
    from modrwkv.inference import ModRWKVPipeline
    from modrwkv.multimodal import ModRWKV
    from test_pipeline import LM

    clip = base64.b64encode(b"not a video file").decode()
    video = {"type": "video_url", "video_url": {"url": f"data:video/mp4;base64,{clip}"}}
    request = {"model": "tiny", "messages": [{"role": "user", "content": [{"type": "text", "text": "What happens?"}, video]}]}
    monkeypatch.setitem(sys.modules, "av", None)  # PyAV not installed: importing it raises ImportError
    series_only = ModRWKV.build(make_model(LM, seed=2), {"series": build_encoder("wavenet", layers=2, output_dim=24)})
    with TestClient(create_app(ModRWKVPipeline(series_only), model_name="tiny")) as client:
        reply = client.post("/v1/chat/completions", json=request)
    assert reply.status_code == 400 and reply.json()["error"] == {
        "message": "the video in messages[0].content[1] cannot be read: the served model has no image encoder, "
                   "which reads a video's frames (it reads series)",
        "type": "invalid_request_error", "param": "messages", "code": "video_unsupported"}
    images = ModRWKV.build(make_model(LM, seed=2), {"image": build_encoder("tiny", width=32)})
    with TestClient(create_app(ModRWKVPipeline(images), model_name="tiny")) as client:
        reply = client.post("/v1/chat/completions", json=request)
    error = reply.json()["error"]
    assert (reply.status_code, error["code"]) == (501, "video_extra_missing"), error
    assert error["message"] == ("this server cannot read video: video input needs the 'av' package, which is not "
                                "installed: pip install 'modrwkv[video]'")


def test_an_empty_reply_in_the_history_is_accepted(live):
    """Training data refuses an empty assistant turn (empty_answer); a request's history may hold one."""
    for content in ("", [{"type": "text", "text": ""}]):
        messages = [USER, {"role": "assistant", "content": content}, USER]
        assert ask(live.client(), messages).choices[0].message.content == expected(
            [USER, {"role": "assistant", "content": ""}, USER])


def test_model_names_aliases_and_any_name():
    """A server answers to each of its names (reporting the one asked for) and lists them all; any
    other name is a 404 naming what is served and how to change it, unless it serves any name."""
    messages = [{"role": "user", "content": "Hello"}]
    with live_server(model_name=["tiny", "runs/tiny", "gpt-3.5-turbo"]) as server:
        client = server.client()
        assert [m.id for m in client.models.list().data] == ["tiny", "runs/tiny", "gpt-3.5-turbo"]
        assert [client.models.retrieve(name).id for name in ("runs/tiny", "gpt-3.5-turbo")] == ["runs/tiny", "gpt-3.5-turbo"]
        answers = {name: ask(client, messages, model=name) for name in ("tiny", "runs/tiny", "gpt-3.5-turbo")}
        assert {name: reply.model for name, reply in answers.items()} == {name: name for name in answers}
        assert len({reply.choices[0].message.content for reply in answers.values()}) == 1
        completion = client.completions.create(model="runs/tiny", prompt="Hello", max_tokens=3, temperature=0)
        assert completion.model == "runs/tiny"
        with pytest.raises(openai.NotFoundError) as raised:
            ask(client, messages, model="gpt-4o")
        assert raised.value.status_code == 404 and raised.value.code == "model_not_found"
        assert raised.value.body["message"] == (
            "The model 'gpt-4o' does not exist; this server serves 'tiny', 'runs/tiny' and 'gpt-3.5-turbo'. Send one "
            "of these names, or restart the server with more names (modrwkv serve --model-name NAME ...) or with "
            "--any-model-name to accept any name")
        status, reply = post_raw(server, json.dumps({"messages": messages}).encode())
        assert status == 400 and reply["error"]["param"] == "model" and "'model' is required" in reply["error"]["message"]
        status, reply = post_raw(server, json.dumps({"model": ["tiny"], "messages": messages}).encode())
        assert status == 400 and reply["error"]["message"].startswith("'model' must be a string, got [\"tiny\"]")
    with live_server(any_model_name=True) as server:  # llama.cpp's behaviour: one model, any name
        client = server.client()
        status, reply = post_raw(server, json.dumps({"model": 5, "messages": messages}).encode())
        assert status == 400 and reply["error"]["message"].startswith("'model' must be a string, got 5")
        assert [m.id for m in client.models.list().data] == ["tiny"]
        # every name is served, so each is a model of its own id (as OpenAI answers an alias); a
        # reply's `model` names the model that answered (below), as OpenAI's names an alias's snapshot
        (listed,) = client.models.list().data
        for name in ("tiny", "gpt-3.5-turbo", "org/model"):
            assert client.models.retrieve(name).model_dump() == {**listed.model_dump(), "id": name}
        assert ask(client, messages, model="tiny").model == "tiny"
        reply = ask(client, messages, model="gpt-3.5-turbo")
        assert reply.model == "tiny" and reply.choices[0].message.content == expected(messages)
        status, reply = post_raw(server, json.dumps({"messages": messages, "max_tokens": 8, "temperature": 0}).encode())
        assert status == 200 and reply["choices"][0]["message"]["content"] == expected(messages)
    with pytest.raises(ValueError, match="at least one non-empty name"):
        create_app(tiny_pipeline(), model_name=[])


def test_several_choices_streamed_or_not_each_as_a_request_of_its_own(live):
    """n choices: choice i is what a request with seed + i answers alone (every choice its own
    sample), streamed or not; usage counts the prompt once and every choice's tokens."""
    client = live.client()
    messages = [{"role": "user", "content": [image_part(5), {"type": "text", "text": "What is it?"}]}]
    # No top_p: a nucleus sorts the tiny random model's near-uniform probabilities, where the last-bit
    # differences between a batch of 3 and a batch of 1 reorder near-equal tokens.
    options = dict(max_tokens=6, temperature=1.0, seed=11)
    alone = [ask(client, messages, **{**options, "seed": 11 + i}) for i in range(3)]
    reply = ask(client, messages, n=3, **options)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert [c.message.content for c in reply.choices] == [a.choices[0].message.content for a in alone]
    assert len({c.message.content for c in reply.choices}) > 1
    assert reply.usage.prompt_tokens == alone[0].usage.prompt_tokens
    assert reply.usage.completion_tokens == sum(a.usage.completion_tokens for a in alone)
    chunks = list(ask(client, messages, n=3, stream=True, stream_options={"include_usage": True}, **options))
    texts, finishes = ["", "", ""], {}
    for chunk in chunks[:-1]:
        (choice,) = chunk.choices
        texts[choice.index] += choice.delta.content or ""
        if choice.finish_reason:
            finishes[choice.index] = choice.finish_reason
    assert texts == [c.message.content for c in reply.choices]
    assert finishes == {c.index: c.finish_reason for c in reply.choices}
    assert not chunks[-1].choices and chunks[-1].usage.completion_tokens == reply.usage.completion_tokens
    # /v1/completions: the n choices of each prompt in turn, each as the prompt alone with seed + j.
    text = dict(model="tiny", max_tokens=5, temperature=1.0, seed=3)
    several = client.completions.create(prompt=["Once upon", "The cat"], n=2, **text)
    assert [c.index for c in several.choices] == [0, 1, 2, 3]
    assert [c.text for c in several.choices] == [
        client.completions.create(prompt=prompt, **{**text, "seed": 3 + j}).choices[0].text
        for prompt in ("Once upon", "The cat") for j in range(2)]
    assert several.usage.prompt_tokens == sum(len(tiny_pipeline().tokenizer.encode(p)) for p in ("Once upon", "The cat"))
    with pytest.raises(openai.BadRequestError, match="one choice"):
        client.completions.create(prompt="Hi", n=2, stream=True, **text)
    greedy = ask(client, [USER], n=2, logprobs=True, max_tokens=4)  # logprobs per choice
    assert greedy.choices[0].message.content == greedy.choices[1].message.content
    assert [len(c.logprobs.content) for c in greedy.choices] == [greedy.usage.completion_tokens // 2] * 2


def test_model_retrieval_and_unknown_routes_answer_as_openai_does(live):
    client = live.client()
    assert client.models.retrieve("tiny").id == "tiny"
    with pytest.raises(openai.NotFoundError) as raised:
        client.models.retrieve("gpt-4o")
    assert raised.value.code == "model_not_found" and "this server serves 'tiny'" in raised.value.body["message"]
    with pytest.raises(openai.NotFoundError) as raised:  # routes this server does not have
        client.embeddings.create(model="tiny", input="Hello")
    assert raised.value.code == "unknown_url" and raised.value.body["message"] == (
        "unknown route POST /v1/embeddings; this server serves GET /v1/models, GET /v1/models/{model}, "
        "POST /v1/chat/completions, POST /v1/completions, POST /v1/audio/transcriptions, GET /, GET /health and "
        "GET /metrics")
    with pytest.raises(openai.APIStatusError) as raised:
        client.get("/chat/completions", cast_to=object)
    assert raised.value.status_code == 405 and raised.value.body == {
        "message": "/v1/chat/completions does not take GET", "type": "invalid_request_error", "param": None,
        "code": "method_not_allowed"}


def post_raw(live, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(f"{live.url}/v1/chat/completions", body, method="POST",
                                     headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


@pytest.mark.parametrize("body, message", [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe\x00\x00x", "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "nests deeper than 32 levels"),
    (json.dumps({"model": "tiny", "messages": [USER], "x": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]})
     .encode(), "nests deeper than 32 levels"),
])
def test_malformed_json_is_a_400(live, body, message):
    status, reply = post_raw(live, body)
    assert status == 400 and message in reply["error"]["message"] and reply["error"]["code"] == "invalid_json"
    assert live.health()["status"] == "ok"


def test_null_optional_fields_are_left_out(live):
    """OpenAI takes null for any optional field, and clients that serialise every field of their
    request type send them: a null `stream`, `logprobs` or `echo` is the default, not a 400."""
    nulls = {"stream": None, "logprobs": None, "top_logprobs": None, "stream_options": None}
    status, reply = post_raw(live, json.dumps({"model": "tiny", "messages": [USER], "max_tokens": 3, "temperature": 0,
                                               **nulls}).encode())
    assert status == 200 and reply["choices"][0]["logprobs"] is None
    assert reply["choices"][0]["message"]["content"] == expected([USER], max_tokens=3)
    completion = live.client().completions.create(model="tiny", prompt="Hello", max_tokens=3, temperature=0,
                                                  extra_body={"echo": None, "stream": None, "logprobs": None})
    assert completion.choices[0].text == live.client().completions.create(
        model="tiny", prompt="Hello", max_tokens=3, temperature=0).choices[0].text
    status, reply = post_raw(live, json.dumps({"model": "tiny", "messages": [USER], "stream": "yes"}).encode())
    assert status == 400 and reply["error"]["message"] == "'stream' must be true or false, got \"yes\""


# The keys OpenAI's chat.completion and chat.completion.chunk objects always hold (its API reference):
# clients with typed response schemas may require each.
OPENAI_REPLY_KEYS = {"id", "object", "created", "model", "choices", "usage", "system_fingerprint", "service_tier"}
OPENAI_MESSAGE_KEYS = {"role", "content", "refusal", "annotations"}
OPENAI_USAGE_KEYS = {"prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details",
                     "completion_tokens_details"}


def test_replies_hold_every_field_openai_always_sends(live):
    request = {"model": "tiny", "messages": [USER], "max_tokens": 3, "logprobs": True}
    status, reply = post_raw(live, json.dumps(request).encode())
    assert status == 200 and OPENAI_REPLY_KEYS <= set(reply), set(reply)
    choice = reply["choices"][0]
    assert {"index", "message", "logprobs", "finish_reason"} <= set(choice)
    assert OPENAI_MESSAGE_KEYS <= set(choice["message"]) and set(choice["logprobs"]) == {"content", "refusal"}
    assert OPENAI_USAGE_KEYS <= set(reply["usage"]) and reply["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0
    stream = urllib.request.Request(f"{live.url}/v1/chat/completions", json.dumps(
        {**request, "stream": True, "stream_options": {"include_usage": True}}).encode(), method="POST",
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    with urllib.request.urlopen(stream, timeout=30) as response:
        events = [json.loads(line[len("data: "):]) for line in response.read().decode().split("\n\n")
                  if line.startswith("data: {")]
    assert all(OPENAI_REPLY_KEYS - {"usage"} <= set(event) for event in events)
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert OPENAI_USAGE_KEYS <= set(events[-1]["usage"])


def truncated_png() -> bytes:
    data = png_bytes(3)
    return data[: len(data) // 2]


def truncated_jpeg() -> bytes:
    from PIL import Image

    from test_pipeline import image

    buffer = io.BytesIO()
    Image.fromarray(image(4, (48, 64))).save(buffer, "JPEG")
    return buffer.getvalue()[: buffer.tell() // 2]


def pillow_load_error(data: bytes) -> str:
    """What Pillow itself says when it decodes `data` (whose header it opens without complaint)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as picture:
        try:
            picture.load()
        except OSError as exc:
            return str(exc)
    raise AssertionError("the image decoded")


NOT_AN_IMAGE = "not a recognised image format (PNG, JPEG, WebP, GIF, BMP, TIFF, ...)"


def sound_bytes(fmt: str, subtype: str, seconds: float = 1.0) -> bytes:
    import numpy as np
    import soundfile

    buffer = io.BytesIO()
    wave = 0.1 * np.random.default_rng(7).standard_normal(int(16000 * seconds)).astype(np.float32)
    soundfile.write(buffer, wave, 16000, format=fmt, subtype=subtype)
    return buffer.getvalue()


def sound_part(data: bytes, fmt: str = "wav") -> dict:
    return {"type": "input_audio", "input_audio": {"data": base64.b64encode(data).decode(), "format": fmt}}


# Cut after their headers: a WAV whose data chunk declares 16000 samples (2 bytes each, after its 44-byte
# header) holding 7000 of them, and a FLAC and an MP3 cut in half.
CUT_WAV = sound_bytes("WAV", "PCM_16")[: 44 + 2 * 7000]
CUT_FLAC = sound_bytes("FLAC", "PCM_16")[: len(sound_bytes("FLAC", "PCM_16")) // 2]
CUT_MP3 = sound_bytes("MP3", "MPEG_LAYER_III")[: len(sound_bytes("MP3", "MPEG_LAYER_III")) // 2]
# An Ogg Vorbis file declares no length; 2.5 s cut in half, libsndfile reads it as a shorter clip.
CUT_OGG = sound_bytes("OGG", "VORBIS", seconds=2.5)[: len(sound_bytes("OGG", "VORBIS", seconds=2.5)) // 2]


def nan_wav() -> bytes:
    """A float WAV that decodes, to a NaN among its samples."""
    import numpy as np
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.array([0.1, np.nan, -0.1] * 1000, np.float32), 16000, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


NAN_WAV = nan_wav()


def libsndfile_read(data: bytes) -> tuple[int, str | None]:
    """What libsndfile itself makes of `data`: the samples it decodes, or its error."""
    import soundfile

    try:
        return len(soundfile.read(io.BytesIO(data))[0]), None
    except soundfile.LibsndfileError as exc:
        return 0, exc.error_string


@pytest.mark.parametrize("part, message, code", [
    ({"type": "image_url", "image_url": {"url": data_uri(truncated_png())}},
     f"the image in messages[1].content[1] cannot be decoded: {pillow_load_error(truncated_png())}", "bad_image"),
    ({"type": "image_url", "image_url": {"url": data_uri(truncated_jpeg(), "image/jpeg")}},
     f"the image in messages[1].content[1] cannot be decoded: {pillow_load_error(truncated_jpeg())}", "bad_image"),
    ({"type": "image_url", "image_url": {"url": data_uri(b"GIF89a" + bytes(40))}},
     f"the image in messages[1].content[1] cannot be decoded: {NOT_AN_IMAGE}", "bad_image"),
    ({"type": "image_url", "image_url": {"url": data_uri(b"\x00" * 64)}},
     f"the image in messages[1].content[1] cannot be decoded: {NOT_AN_IMAGE}", "bad_image"),
    ({"type": "input_audio", "input_audio": {"data": base64.b64encode(wav_bytes(0.5)[:30]).decode(), "format": "wav"}},
     "the audio in messages[1].content[1] cannot be decoded: its RIFF 'fmt ' chunk declares 16 bytes and the file "
     "holds 10 of them: it is cut short", "bad_audio"),
    ({"type": "input_audio", "input_audio": {"data": base64.b64encode(b"\x00" * 64).decode(), "format": "wav"}},
     "the audio in messages[1].content[1] cannot be decoded: not a recognised audio format (WAV, FLAC, OGG, MP3, ...)",
     "bad_audio"),
    (sound_part(CUT_WAV), "the audio in messages[1].content[1] cannot be decoded: its RIFF 'data' chunk declares "
     "32000 bytes and the file holds 14000 of them: it is cut short", "bad_audio"),
    (sound_part(CUT_FLAC, "flac"), "the audio in messages[1].content[1] cannot be decoded: "
     f"{libsndfile_read(CUT_FLAC)[1]}", "bad_audio"),
    (sound_part(CUT_MP3, "mp3"), "the audio in messages[1].content[1] cannot be decoded: its last MP3 frame (at byte ",
     "bad_audio"),
    (sound_part(CUT_OGG, "ogg"), "the audio in messages[1].content[1] cannot be decoded: its last Ogg page (at byte ",
     "bad_audio"),
    (sound_part(NAN_WAV), "the audio in messages[1].content[1] cannot be decoded: it contains NaN or infinite samples",
     "bad_audio"),
])
def test_damaged_media_errors_name_the_part_once_with_a_code_and_no_object_addresses(live, part, message, code):
    """A refusal from the media checks is the part's place and the decoder's reason, each said once,
    a truncated file whose header looks fine (Pillow or libsndfile opens it; decoding fails, or
    finds fewer samples than the header declares) included."""
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "What is this?"}, part]}]
    status, reply = post_raw(live, json.dumps({"model": "tiny", "messages": messages}).encode())
    error = reply["error"]
    assert status == 400 and error["code"] == code, error
    if message.endswith("(at byte "):  # the page's or frame's place and sizes: the file's structure
        assert error["message"].startswith(message) and error["message"].endswith("bytes: it is cut short"), error
        assert 0 < libsndfile_read(CUT_OGG)[0] < 40000 and libsndfile_read(CUT_OGG)[1] is None
        assert 0 < libsndfile_read(CUT_MP3)[0] < 16000 and libsndfile_read(CUT_MP3)[1] is None
    else:
        assert error["message"] == message if message.startswith("the ") else message in error["message"], error
    assert " at 0x" not in error["message"] and "object at" not in error["message"]


def test_audio_is_decoded_once_and_a_short_whole_clip_is_accepted(live, monkeypatch):
    """The media check reads a clip's data URI and checks its container once, for its length and to
    decode it, and hands the waveform on to the encoder, which does not decode it again; a clip as
    short as the cut WAV above, but whole, is answered."""
    from modrwkv.encoders import media

    assert libsndfile_read(CUT_WAV) == (7000, None)  # libsndfile alone would take the cut file
    calls = {"read": 0, "container": 0, "decode": 0}

    def counted(name: str, function):
        return lambda *args: calls.__setitem__(name, calls[name] + 1) or function(*args)

    for name, attribute in (("read", "_read_bytes_or_path"), ("container", "check_container"),
                            ("decode", "_decode_audio")):
        monkeypatch.setattr(media, attribute, counted(name, getattr(media, attribute)))
    short = sound_bytes("WAV", "PCM_16", seconds=7000 / 16000)
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, sound_part(short)]}]
    reply = ask(live.client(), messages)
    assert calls == {"read": 1, "container": 1, "decode": 1}
    assert reply.choices[0].message.content == expected(messages)


def test_an_mp3_under_the_length_limit_is_answered_whatever_its_cover_art(live):
    """An MP3 without a Xing frame declares no length, and libsndfile estimates one from the file's
    size: 300 kB of cover art in its ID3v2 tag make a 2 s clip 77 s, past this server's 3 s limit.
    The server's length check leaves the tag out, so the clip is answered as the same clip untagged."""
    import numpy as np
    import soundfile
    from test_media import id3v2_tag, mp3_without_xing

    plain = mp3_without_xing(0.3 * np.sin(2 * np.pi * 440 * np.arange(32000) / 16000).astype(np.float32))
    tagged = id3v2_tag(300_000) + plain
    assert soundfile.info(io.BytesIO(tagged)).duration > 10 * LIMITS.max_audio_seconds
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, sound_part(tagged, "mp3")]}]
    reply = ask(live.client(), messages)
    untagged = [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, sound_part(plain, "mp3")]}]
    assert reply.choices[0].message.content == expected(untagged)


def one_bit_png(size: tuple[int, int]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", size).save(buffer, "PNG")
    return buffer.getvalue()


def test_images_beyond_pillows_limit_are_a_400_that_names_the_limit(live):
    """A few kB of PNG can declare more pixels than Pillow decodes (89,478,485: it warns up to twice
    that and refuses beyond): the server answers what it answers for any image above its own limit."""
    from PIL import Image

    with warnings.catch_warnings(record=True) as caught:  # records warnings from the server's threads too
        warnings.simplefilter("always")
        for size, found in [((10000, 9000), "has 10000x9000 = 90000000 pixels"), ((14000, 13000), "has 182000000 pixels"),
                            ((300, 300), "has 300x300 = 90000 pixels")]:
            part = {"type": "image_url", "image_url": {"url": data_uri(one_bit_png(size))}}
            status, reply = post_raw(live, json.dumps({"model": "tiny", "messages": [
                {"role": "user", "content": [part, {"type": "text", "text": "What is it?"}]}]}).encode())
            assert status == 400 and reply["error"]["code"] == "image_too_large", reply
            assert reply["error"]["message"] == (f"the image in messages[0].content[0] {found}; this server accepts at most {LIMITS.max_image_pixels} "
                                                 "(its operator can raise that with --max-image-pixels; or scale the "
                                                 "image down)")
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def test_local_and_remote_media_only_when_enabled(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    (media / "a.png").write_bytes(png_bytes(9))
    (tmp_path / "secret.png").write_bytes(png_bytes(9))
    files = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(media)))
    threading.Thread(target=files.serve_forever, daemon=True).start()
    reference = [{"role": "user", "content": [image_part(9), {"type": "text", "text": "What?"}]}]
    limits = ServerLimits(allow_remote_media=True, allow_private_media_hosts=True, local_media_dir=media)
    try:
        with live_server(limits=limits) as server:
            client = server.client()
            # a relative path is read from the media folder (docs/serving.md)
            for url in (f"file://{media / 'a.png'}", "a.png", f"http://127.0.0.1:{files.server_address[1]}/a.png"):
                messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                                         {"type": "text", "text": "What?"}]}]
                assert ask(client, messages).choices[0].message.content == expected(reference)
            refusals = []
            # a file outside the folder is refused in the words of a missing one: no probing what exists there
            for url in (f"file://{tmp_path / 'secret.png'}", f"{media}/../secret.png", f"{tmp_path}/missing.png",
                        f"{media}/missing.png"):
                outside = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]
                with pytest.raises(openai.BadRequestError, match="outside the server's media folder") as raised:
                    ask(client, outside)
                refusals.append((raised.value.code, raised.value.param, raised.value.message))
            assert len(set(refusals)) == 1, refusals
            missing = [{"role": "user", "content": [{"type": "image_url", "image_url": {
                "url": f"http://127.0.0.1:{files.server_address[1]}/missing.png"}}]}]
            with pytest.raises(openai.BadRequestError, match=r"the image in messages\[0\]\.content\[0\] cannot be "
                               r"fetched from http://\S+/missing.png: the remote server answered HTTP status 404"):
                ask(client, missing)
    finally:
        files.shutdown()


class _RemoteMedia(http.server.BaseHTTPRequestHandler):
    """A media host: /a.png a picture, /slow.png the same after `slow_seconds`, /big.png more than
    the test server accepts, /private.png the picture for `credentials` only (HTTP Basic), else 401;
    /to-file.png, /to-ftp.png and /hop.png redirect to a file: URL, an ftp: URL and /private.png;
    anything else 404. A query string is ignored."""

    picture = png_bytes(9)
    slow_seconds = 3.0
    released = threading.Event()  # set at the end of the test: a slow answer stops waiting
    credentials = "alice:s3cret"
    redirects = {"/to-file.png": "file:///etc/passwd", "/to-ftp.png": "ftp://127.0.0.1/a.png", "/hop.png": "/private.png"}

    def do_GET(self) -> None:
        self.path = self.path.partition("?")[0]
        if self.path in self.redirects:
            self.send_response(302)
            self.send_header("Location", self.redirects[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/private.png":
            if self.headers.get("Authorization") != "Basic " + base64.b64encode(self.credentials.encode()).decode():
                self.send_error(401, "Wrong or no credentials")
                return
            self.path = "/a.png"
        if self.path == "/slow.png":
            self.released.wait(self.slow_seconds)
        if self.path not in ("/a.png", "/slow.png", "/big.png"):
            self.send_error(404, "No such picture")
            return
        body = self.picture * 40 if self.path == "/big.png" else self.picture
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # quiet
        pass


def test_a_failed_remote_fetch_names_the_part_the_url_and_the_cause_in_plain_words():
    """A closed port, a 404, a host that answers later than the server waits, a name no DNS knows, a
    file beyond the size limit and a redirect away from http(s): each refusal names the content part,
    the URL and what went wrong, never urllib's "<urlopen error [Errno 111] ...>"; the same host's good
    picture is still fetched."""
    # A port nothing listens on, held bound (not listening: a connection is refused) for the whole test:
    # released at once, the system could hand it to the media host or the server started next (a flake).
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    host = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RemoteMedia)
    threading.Thread(target=host.serve_forever, daemon=True).start()
    served = f"http://127.0.0.1:{host.server_address[1]}"
    size_limit = 4 * len(_RemoteMedia.picture)  # the request itself is far smaller; /big.png is 40 pictures
    limits = ServerLimits(allow_remote_media=True, allow_private_media_hosts=True, remote_timeout_seconds=0.5,
                          max_body_bytes=size_limit,
                          max_image_pixels=40_000)
    part = "the image in messages[0].content[1]"
    cases = [
        (f"http://127.0.0.1:{closed_port}/a.png", 400, "bad_remote_media",
         "the connection was refused (nothing listens at that host and port)"),
        (f"{served}/missing.png", 400, "bad_remote_media", "the remote server answered HTTP status 404 (No such picture)"),
        (f"{served}/slow.png", 400, "bad_remote_media", "no answer within 0.5 s (the server's remote media timeout)"),
        ("http://no-such-host.invalid/a.png", 400, "bad_remote_media",
         f"the host name cannot be resolved ({socket_error_of('no-such-host.invalid')})"),
        (f"{served}/big.png", 413, "media_too_large", f"it is larger than this server's {size_limit} bytes"),
        (f"{served}/to-file.png", 400, "bad_remote_media",
         "it redirects to a non-http(s) URL (file:), which is not followed"),
        (f"{served}/to-ftp.png", 400, "bad_remote_media",
         "it redirects to a non-http(s) URL (ftp:), which is not followed"),
    ]
    try:
        with live_server(limits=limits) as server:
            for url, status, code, cause in cases:
                messages = [{"role": "user", "content": [{"type": "text", "text": "What?"},
                                                         {"type": "image_url", "image_url": {"url": url}}]}]
                got, reply = post_raw(server, json.dumps({"model": "tiny", "messages": messages}).encode())
                assert (got, reply["error"]["code"]) == (status, code), reply
                assert reply["error"]["message"] == f"{part} cannot be fetched from {url}: {cause}"
            good = [{"role": "user", "content": [{"type": "text", "text": "What?"},
                                                 {"type": "image_url", "image_url": {"url": f"{served}/a.png"}}]}]
            assert post_raw(server, json.dumps({"model": "tiny", "messages": good, "max_tokens": 2}).encode())[0] == 200
    finally:
        _RemoteMedia.released.set()
        host.shutdown()
        closed.close()


def test_credentials_in_a_media_url_reach_its_host_and_no_message_or_log(caplog):
    """A URL's `user:password@` goes to its host as HTTP Basic authentication (and not along a
    redirect); no answer shows it, and the log shows neither it nor the query string (a signed URL's
    token); the answer keeps the query, which is the client's own."""
    host = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RemoteMedia)
    threading.Thread(target=host.serve_forever, daemon=True).start()
    where = f"127.0.0.1:{host.server_address[1]}"
    part = "the image in messages[0].content[1]"
    caplog.set_level(logging.DEBUG)
    try:
        with live_server(limits=ServerLimits(allow_remote_media=True, allow_private_media_hosts=True,
                                             max_image_pixels=40_000)) as server:
            def fetch(url: str) -> tuple[int, dict]:
                messages = [{"role": "user", "content": [{"type": "text", "text": "What?"},
                                                         {"type": "image_url", "image_url": {"url": url}}]}]
                return post_raw(server, json.dumps({"model": "tiny", "messages": messages, "max_tokens": 2}).encode())

            status, reply = fetch(f"http://alice:s3cret@{where}/private.png?token=t0ken#frag")
            assert status == 200, reply
            refused = "the remote server answered HTTP status 401 (Wrong or no credentials)"
            for url, shown in [(f"http://alice:wrong-pass@{where}/private.png?sig=abc", f"http://{where}/private.png?sig=abc"),
                               (f"http://alice:s3cret@{where}/hop.png", f"http://{where}/hop.png"),
                               (f"http://{where}/private.png", f"http://{where}/private.png")]:
                status, reply = fetch(url)
                assert (status, reply["error"]["message"]) == (400, f"{part} cannot be fetched from {shown}: {refused}")
    finally:
        host.shutdown()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert f"fetched {len(_RemoteMedia.picture)} bytes of remote media from http://{where}/private.png\n" in logged + "\n"
    for secret in ("alice", "s3cret", "wrong-pass", "t0ken", "sig=abc", "frag"):
        assert secret not in logged


class _RecordingMedia(_RemoteMedia):
    """`_RemoteMedia` that records in `seen` each path it is asked for."""

    seen: list[str] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        super().do_GET()


def _recording_host(address: str, away: str = "") -> http.server.ThreadingHTTPServer:
    """A `_RecordingMedia` host on `address` with its own record (`host.RequestHandlerClass.seen`),
    whose /away.png redirects to `away`."""
    handler = type("Recording", (_RecordingMedia,), {"seen": [], "redirects": {**_RemoteMedia.redirects,
                                                                              "/away.png": away}})
    host = http.server.ThreadingHTTPServer((address, 0), handler)
    threading.Thread(target=host.serve_forever, daemon=True).start()
    return host


def _fetch_reply(server, url: str) -> tuple[int, dict]:
    messages = [{"role": "user", "content": [{"type": "text", "text": "What?"},
                                             {"type": "image_url", "image_url": {"url": url}}]}]
    return post_raw(server, json.dumps({"model": "tiny", "messages": messages, "max_tokens": 2}).encode())


@pytest.mark.parametrize("address, public", [
    ("8.8.8.8", True), ("2606:4700:4700::1111", True), ("2002:808:808::1", True),  # 6to4 of 8.8.8.8
    ("127.0.0.1", False), ("10.0.0.1", False), ("172.16.0.1", False), ("192.168.1.1", False), ("100.64.0.1", False),
    ("169.254.169.254", False), ("0.0.0.0", False), ("224.0.0.1", False), ("240.0.0.1", False), ("255.255.255.255", False),
    ("::1", False), ("::", False), ("fc00::1", False), ("fe80::1", False), ("ff02::1", False),
    ("::ffff:127.0.0.1", False), ("::ffff:8.8.8.8", False),  # IPv4-mapped: never a remote host's own address
    ("2002:a9fe:a9fe::1", False),  # 6to4 of 169.254.169.254
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", False),  # Teredo whose client is 127.0.0.1 (bits inverted)
    ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
])
def test_which_addresses_count_as_public(address, public):
    import ipaddress

    from modrwkv.serving.limits import _is_public_address

    assert _is_public_address(ipaddress.ip_address(address)) is public


def test_remote_media_at_private_or_local_addresses_is_refused_before_any_connection(monkeypatch):
    """Without --allow-private-media-hosts, a URL whose host is or resolves to loopback, a private
    network, link-local (the cloud metadata address), or such an address written another way
    (IPv4-mapped IPv6, a decimal IPv4 number, a public-looking name) is refused in one message that
    does not tell whether anything listens there, and the host that listens there gets no request."""
    host = _recording_host("127.0.0.1")
    port = host.server_address[1]
    resolve = socket.getaddrinfo

    def getaddrinfo(name, *args, **kwargs):  # a public-looking name whose DNS answer is the local host
        if name == "media.example.com":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return resolve(name, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    urls = [f"http://127.0.0.1:{port}/a.png", f"http://localhost:{port}/a.png", f"http://[::1]:{port}/a.png",
            "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/a.png",
            f"http://[::ffff:127.0.0.1]:{port}/a.png", f"http://2130706433:{port}/a.png",
            f"http://media.example.com:{port}/a.png", f"https://media.example.com:{port}/a.png"]
    try:
        with live_server(limits=ServerLimits(allow_remote_media=True)) as server:
            for url in urls:
                status, reply = _fetch_reply(server, url)
                assert (status, reply["error"]["code"]) == (400, "remote_media_refused"), (url, reply)
                assert reply["error"]["message"] == (
                    f"the image in messages[0].content[1] cannot be fetched from {url}: its host resolves to a "
                    "private or local address, which this server does not fetch")
    finally:
        host.shutdown()
    assert host.RequestHandlerClass.seen == []


def test_a_redirect_to_a_private_address_is_refused_and_the_checked_address_is_the_one_connected(monkeypatch):
    """With 127.0.0.1 counted as public (as a public media host would be) and 127.0.0.2 not, a
    redirect from the first to the second is refused before the second gets a request; a name is
    resolved once and connected at the address that was checked, so a second DNS answer (a rebind to
    a private address) is never used."""
    from modrwkv.serving import limits as limits_module

    is_public = limits_module._is_public_address
    monkeypatch.setattr(limits_module, "_is_public_address",
                        lambda address: str(address) == "127.0.0.1" or is_public(address))
    private = _recording_host("127.0.0.2")
    public = _recording_host("127.0.0.1", away=f"http://127.0.0.2:{private.server_address[1]}/a.png")
    port = public.server_address[1]
    resolve, answers = socket.getaddrinfo, []

    def getaddrinfo(name, *args, **kwargs):  # the first answer is the "public" host, any later one private
        if name == "media.example.com":
            answers.append(name)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1" if len(answers) == 1 else "127.0.0.2", port))]
        return resolve(name, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    try:
        with live_server(limits=ServerLimits(allow_remote_media=True, max_image_pixels=40_000)) as server:
            status, reply = _fetch_reply(server, f"http://127.0.0.1:{port}/away.png")
            assert (status, reply["error"]["code"]) == (400, "remote_media_refused"), reply
            assert reply["error"]["message"] == (
                f"the image in messages[0].content[1] cannot be fetched from http://127.0.0.1:{port}/away.png: it "
                "redirects to a host that resolves to a private or local address, which this server does not fetch")
            assert _fetch_reply(server, f"http://media.example.com:{port}/a.png")[0] == 200
    finally:
        public.shutdown()
        private.shutdown()
    assert public.RequestHandlerClass.seen == ["/away.png", "/a.png"]
    assert private.RequestHandlerClass.seen == [] and answers == ["media.example.com"]


def socket_error_of(hostname: str) -> str:
    """The resolver's own words for a name it cannot resolve (they differ between C libraries)."""
    with pytest.raises(socket.gaierror) as caught:
        socket.getaddrinfo(hostname, 80)
    return caught.value.strerror


# --- continuous batching ------------------------------------------------------------------------


def test_concurrent_conversations_are_batched_and_match_running_alone(live):
    """Different conversations arrive at staggered times, are decoded together (joining and leaving
    the running batch between steps; a long prompt is read a chunk at a time in between), and each
    gets exactly what it gets alone (greedy)."""
    conversations = [
        ([{"role": "user", "content": "Tell me a story"}], dict(max_tokens=40)),
        ([{"role": "user", "content": [image_part(11), {"type": "text", "text": "What is it?"}]}], dict(max_tokens=25)),
        ([{"role": "user", "content": [audio_part(0.7, seed=2), {"type": "text", "text": "Transcribe"}]}],
         dict(max_tokens=30, stream=True)),
        ([{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Count to ten"},
          {"role": "assistant", "content": "1 2 3"}, {"role": "user", "content": "Go on"}], dict(max_tokens=50)),
        ([{"role": "user", "content": "Sample something"}], dict(max_tokens=35)),
        ([{"role": "user", "content": "lorem ipsum " * 700 + "Summarise."}], dict(max_tokens=20)),  # read in chunks
        ([{"role": "user", "content": [image_part(12), image_part(13), {"type": "text", "text": "Differences?"}]}],
         dict(max_tokens=45, stream=True)),
    ]
    client = live.client()

    def run(index: int) -> str:
        time.sleep(0.04 * index)
        messages, options = conversations[index]
        if options.get("stream"):
            options = {k: v for k, v in options.items() if k != "stream"}
            chunks = ask(client, messages, stream=True, **options)
            return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return ask(client, messages, **options).choices[0].message.content

    before = dict(live.health())
    with concurrent.futures.ThreadPoolExecutor(len(conversations)) as pool:
        together = list(pool.map(run, range(len(conversations))))
    after = live.health()
    assert after["peak_batch"] >= 3 and after["joined_running"] > before["joined_running"]
    alone = []
    for messages, options in conversations:
        options = {k: v for k, v in options.items() if k != "stream"}
        alone.append(ask(client, messages, **options).choices[0].message.content)
    assert together == alone
    assert len(set(together)) == len(together)  # no cross-talk between rows


def open_request(url: str, body: dict) -> socket.socket:
    """Sends a request on a raw socket and returns it unread, so the test can hang up mid-request."""
    host, port = url.removeprefix("http://").split(":")
    payload = json.dumps(body).encode()
    sock = socket.create_connection((host, int(port)))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
    return sock


def test_full_queue_is_429_and_disconnects_free_their_slots():
    limits = ServerLimits(max_tokens=100_000)
    long_request = {"model": "tiny", "messages": [USER], "max_tokens": 100_000, "temperature": 0}
    with live_server(limits=limits, max_batch=1, max_queue=1) as server:
        client = server.client()
        stream = ask(client, [USER], max_tokens=100_000, stream=True)  # takes the only slot
        assert next(iter(stream)).choices[0].delta.role == "assistant"
        waiting = open_request(server.url, long_request)  # takes the only queue place
        server.wait_for(lambda h: h["running"] == 1 and h["queued"] == 1)
        with pytest.raises(openai.RateLimitError, match="busy") as refused:
            ask(client, [USER])
        assert refused.value.response.headers["Retry-After"] == "1"  # when OpenAI's clients retry
        stream.close()  # a streaming client hangs up: its slot goes to the waiting request
        server.wait_for(lambda h: h["cancelled"] == 1 and h["running"] == 1 and h["queued"] == 0)
        waiting.close()  # a non-streaming client hangs up too
        health = server.wait_for(lambda h: h["cancelled"] == 2 and h["running"] == 0)
        assert health["completed"] == 0
        assert ask(client, [USER], max_tokens=3).usage.completion_tokens <= 3  # the slot is free again


def test_several_choices_are_queued_all_or_none():
    """n choices take n queue places: when the queue fills part way through them, the request is a
    429 and the choices already queued are withdrawn, never decoded for a client that got an error."""
    with live_server(limits=ServerLimits(max_tokens=100_000), max_batch=1, max_queue=2) as server:
        client = server.client()
        stream = ask(client, [USER], max_tokens=100_000, stream=True)  # takes the only slot
        next(iter(stream))
        server.wait_for(lambda h: h["running"] == 1)
        with pytest.raises(openai.RateLimitError, match="busy"):
            ask(client, [USER], n=3, max_tokens=2)  # 2 queue places for 3 choices
        assert server.health()["queued"] == 0
        with pytest.raises(openai.RateLimitError, match="busy"):  # 3 prompts
            client.completions.create(model="tiny", prompt=["Once upon", "The cat", "A"], max_tokens=2)
        assert server.health()["queued"] == 0
        stream.close()  # the slot frees up: nothing refused may take it
        health = server.wait_for(lambda h: h["running"] == 0 and h["cancelled"] == 1 + 2 + 2)
        assert health["completed"] == 0 and health["queued"] == 0
        assert len(ask(client, [USER], n=2, max_tokens=2).choices) == 2  # the places are free again
        # More choices than the server can ever hold is no reason to retry: a 400 that says so.
        with pytest.raises(openai.BadRequestError, match="needs 4 decodes .* at most 3 at once") as raised:
            ask(client, [USER], n=4, max_tokens=2)
        assert raised.value.code == "too_many_choices"
        with pytest.raises(openai.BadRequestError, match="needs 4 decodes"):
            client.completions.create(model="tiny", prompt=["Once upon", "The cat"], n=2, max_tokens=2)
        assert len(client.completions.create(model="tiny", prompt=["Once upon", "The cat"], max_tokens=2).choices) == 2


def test_a_client_leaving_or_a_choice_failing_cancels_every_choice(monkeypatch):
    """A request's choices live and die together: when its client hangs up (streamed or not), or
    one choice fails, every other choice leaves the batch at once instead of decoding for nobody."""
    long = dict(max_tokens=100_000, temperature=0, n=3)
    with live_server(limits=ServerLimits(max_tokens=100_000), max_batch=8) as server:
        client = server.client().with_options(timeout=20)
        waiting = open_request(server.url, {"model": "tiny", "messages": [USER], **long})  # not streamed
        server.wait_for(lambda h: h["running"] == 3)
        waiting.close()
        server.wait_for(lambda h: h["running"] == 0 and h["cancelled"] == 3)
        stream = ask(client, [USER], stream=True, **long)
        next(iter(stream))
        server.wait_for(lambda h: h["running"] == 3)
        stream.close()
        server.wait_for(lambda h: h["running"] == 0 and h["cancelled"] == 6)

        engine = server.app.state.pipeline.engine
        read_prompt, calls = engine.prefill_steps, []

        def second_choice_fails(prompt, *args, **kwargs):
            calls.append(prompt)
            if len(calls) % 3 == 2:
                raise RuntimeError("choice 1 broke")
            return read_prompt(prompt, *args, **kwargs)

        monkeypatch.setattr(engine, "prefill_steps", second_choice_fails)
        with pytest.raises(openai.InternalServerError, match="RuntimeError"):  # answered without waiting for choice 0
            ask(client, [USER], **long)
        server.wait_for(lambda h: h["running"] == 0 and h["cancelled"] == 8)
        with pytest.raises(openai.APIError, match="RuntimeError"):  # streamed: an error event ends the stream
            list(ask(client, [USER], stream=True, **long))
        health = server.wait_for(lambda h: h["running"] == 0 and h["cancelled"] == 10)
        assert health["failed"] == 2 and health["completed"] == 0


def test_queue_limit_counts_only_requests_beyond_the_free_slots():
    """A burst fills the free slots first, then the queue: with 4 slots and 4 queue places, 8
    requests submitted at once are all accepted (the 9th is refused), also while some still wait
    to be admitted."""
    import asyncio

    from modrwkv.serving.scheduler import QueueFull, Scheduler

    pipe = tiny_pipeline()
    prompt = pipe.encode([USER])
    params = pipe.sampling_params(max_new_tokens=1)

    async def burst() -> None:
        scheduler = Scheduler(pipe, max_batch=4, max_queue=4)  # not started: nothing is admitted yet
        tickets = [scheduler.submit(prompt, params) for _ in range(8)]
        assert scheduler.full()
        with pytest.raises(QueueFull, match="every slot is taken and 4 requests are waiting"):
            scheduler.submit(prompt, params)
        tickets[0].cancel()  # a client that left frees its place
        scheduler.submit(prompt, params)

    asyncio.run(burst())


def test_a_request_is_counted_as_completed_before_its_answer_is_posted(monkeypatch):
    """/metrics' modrwkv_completed_requests_total (the scheduler's stats) counts a request before its answer goes
    to its client: a client that scrapes once it has its reply finds it counted. It was counted just after, and a
    scrape in between (the decode thread paused there on a busy machine) missed it. A generating request and one
    that only scores its prompt (answered without a decode step)."""
    import asyncio

    from modrwkv.serving.scheduler import Scheduler, Ticket

    pipe = tiny_pipeline()
    prompt = pipe.encode([USER])
    counted_when_posted: list[int] = []
    post = Ticket.post

    def noting_post(self, kind, value):
        if kind == "done":
            counted_when_posted.append(self._scheduler.stats["completed"])
        post(self, kind, value)

    monkeypatch.setattr(Ticket, "post", noting_post)

    async def one_after_the_other() -> None:
        scheduler = Scheduler(pipe, max_batch=4, max_queue=4)
        scheduler.start()
        try:
            for params, score_prompt in ((pipe.sampling_params(max_new_tokens=2), None), (None, 1)):
                ticket = scheduler.submit(prompt, params, score_prompt=score_prompt)
                while (kind := (await asyncio.wait_for(ticket.events.get(), 60))[0]) != "done":
                    assert kind != "error"
        finally:
            scheduler.stop()

    asyncio.run(one_after_the_other())
    assert counted_when_posted == [1, 2]


# --- modrwkv serve ------------------------------------------------------------------------------


def test_serve_command_with_a_plain_lm_checkpoint(tmp_path):
    """`modrwkv serve` end to end in its own process; a text-only RWKV-7 checkpoint is served with
    the classic template."""
    from test_pipeline import LM

    save_model(make_model(LM, seed=4), tmp_path / "rwkv7-tiny")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    process = warm_start.popen(
        ["-m", "modrwkv.cli", "serve", "--model", str(tmp_path / "rwkv7-tiny"), "--port", str(port),
         "--max-batch-size", "4"],
        env={**os.environ, "MODRWKV_API_KEY": "env-key", "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        server = Live(f"http://127.0.0.1:{port}", None)
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stderr.read().decode()
            try:
                assert server.health()["model"] == "rwkv7-tiny"
                break
            except OSError:
                assert time.monotonic() < deadline, "modrwkv serve did not come up"
                time.sleep(0.1)
        models = server.client(key="env-key").models.list()
        # Served under the folder's name and under --model as given (what vLLM serves by default).
        assert [m.id for m in models.data] == ["rwkv7-tiny", str(tmp_path / "rwkv7-tiny")]
        assert models.data[0].modalities == [] and models.data[0].media_layout == "media_text"
        for name in ("rwkv7-tiny", str(tmp_path / "rwkv7-tiny")):
            reply = server.client(key="env-key").chat.completions.create(
                model=name, messages=[USER], temperature=0, max_tokens=5)
            assert reply.usage.completion_tokens <= 5 and reply.model == name
        with pytest.raises(openai.BadRequestError, match="no image encoder"):
            ask(server.client(key="env-key"), [{"role": "user", "content": [image_part()]}], model="rwkv7-tiny")
    finally:
        process.terminate()
        process.wait(20)


def test_a_server_fault_is_a_500_that_names_its_kind_but_not_its_text(live, monkeypatch, caplog):
    engine = live.app.state.pipeline.engine

    def broken_prefill(prompt, state=None, score_top=None):
        raise RuntimeError("/home/alice/secret/weights.pth: internal detail")
        yield  # a generator, as the scheduler expects

    monkeypatch.setattr(engine, "prefill_steps", broken_prefill)
    with caplog.at_level("WARNING", logger="modrwkv.serving.scheduler"):
        with pytest.raises(openai.InternalServerError) as raised:
            ask(live.client(), [USER], max_tokens=2)
    message = raised.value.body["message"]
    assert "RuntimeError" in message and "server log" in message
    assert "alice" not in message and "weights.pth" not in message
    # The operator still gets the traceback of what is a bug, not a bad request.
    assert any(record.exc_info and "alice" in str(record.exc_info[1]) for record in caplog.records)
    monkeypatch.undo()
    assert ask(live.client(), [USER], max_tokens=2).choices[0].message.content is not None  # still serving
