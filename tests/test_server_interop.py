"""The server's interoperability surface, over real HTTP with the official `openai` client:
`/v1/completions` (raw text, token-id prompts, echo, logprobs: what lm-evaluation-harness's
`local-completions` sends), logprobs on chat, Prometheus `/metrics` (scraped and parsed), CORS.
Every log-probability is checked against one full-sequence forward of the model."""

import concurrent.futures
import contextlib
import json
import math
import re
import threading
import time
import urllib.request

import openai
import pytest
import torch

from test_pipeline import tiny_pipeline  # noqa: F401
from test_server import KEY, LIMITS, live_server

from modrwkv.generation import SamplingParams, generate
from modrwkv.generation.engine import undecodable_ids
from modrwkv.serving import ServerLimits

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ORIGIN = "http://localhost:3000"


@pytest.fixture(scope="module")
def live():
    with live_server(limits=LIMITS, api_key=KEY, max_batch=8, max_queue=16, cors_origins=[ORIGIN]) as server:
        yield server


def reference_logprobs(ids: list[int]) -> torch.Tensor:
    """log p(ids[i] | ids[:i]) for i >= 1, and the log-softmax rows, from one forward of the LM."""
    lm = tiny_pipeline().model.lm
    with torch.inference_mode():
        logp = torch.log_softmax(lm(torch.tensor([ids]), logits="all").logits[0].float(), dim=-1)
    return logp


def emitted_logprobs(row: torch.Tensor) -> torch.Tensor:
    """A log-softmax row renormalised as the decode engine scores what it generates: under the
    distribution it samples from, where the ids the server never emits (0 and the undecodable
    rows) have no mass."""
    row = row.clone()
    row[[0, *undecodable_ids(tiny_pipeline().tokenizer, row.shape[0])]] = -math.inf
    return row.log_softmax(-1)


def lm_eval_loglikelihood(choice, ctxlen: int) -> tuple[float, bool]:
    """lm-evaluation-harness's LocalCompletionsAPI.parse_logprobs, for one choice."""
    token_logprobs = choice.logprobs.token_logprobs[ctxlen:-1]
    top = choice.logprobs.top_logprobs[ctxlen:-1]
    return sum(token_logprobs), all(lp == max(t.values()) for lp, t in zip(token_logprobs, top))


def test_completions_echo_logprobs_match_a_full_forward(live):
    client = live.client()
    tokenizer = tiny_pipeline().tokenizer
    context, continuation = tokenizer.encode("The sky is"), tokenizer.encode(" blue today")
    ids = context + continuation
    reply = client.completions.create(model="tiny", prompt=[ids], max_tokens=1, echo=True, logprobs=3,
                                      temperature=0)
    choice = reply.choices[0]
    logp = reference_logprobs(ids)
    lp = choice.logprobs
    assert len(lp.tokens) == len(ids) + 1 and lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    for i in range(1, len(ids)):
        assert lp.token_logprobs[i] == pytest.approx(logp[i - 1, ids[i]].item(), abs=1e-4), i
        best = logp[i - 1].topk(3)
        assert list(lp.top_logprobs[i].values()) == pytest.approx(best.values.tolist(), abs=1e-4)
    generated = int(logp[-1].argmax())  # temperature 0: the greedy token, scored by the engine's logits
    assert lp.tokens[-1] == tokenizer.token_bytes(generated).decode("utf-8", "backslashreplace")
    assert lp.token_logprobs[-1] == pytest.approx(emitted_logprobs(logp[-1])[generated].item(), abs=1e-4)
    assert choice.text == tokenizer.decode(ids) + tokenizer.decode([generated])
    assert reply.usage.prompt_tokens == len(ids) and reply.usage.completion_tokens == 1
    # What lm-evaluation-harness computes from this reply: the continuation's log-likelihood.
    total, greedy = lm_eval_loglikelihood(choice, len(context))
    expected = sum(logp[i - 1, ids[i]].item() for i in range(len(context), len(ids)))
    assert total == pytest.approx(expected, abs=1e-3)
    assert greedy == all(int(logp[i - 1].argmax()) == ids[i] for i in range(len(context), len(ids)))
    # max_tokens 0 (older harness versions): the prompt scored, nothing generated
    only = client.completions.create(model="tiny", prompt="The sky is blue today", max_tokens=0, echo=True,
                                     logprobs=0, temperature=0).choices[0]
    assert only.text == "The sky is blue today" and only.finish_reason == "length"
    assert only.logprobs.token_logprobs[1:] == pytest.approx([logp[i - 1, ids[i]].item() for i in range(1, len(ids))],
                                                             abs=1e-4)


@contextlib.contextmanager
def model_reads(lm):
    """Records (thread name, positions) of every call of `lm` while the block runs."""
    calls = []
    forward = lm.forward

    def recording(*args, **kwargs):
        inputs = args[0] if args else kwargs.get("input_ids", kwargs.get("inputs_embeds"))
        calls.append((threading.current_thread().name, inputs.shape[1]))
        return forward(*args, **kwargs)

    lm.forward = recording
    try:
        yield calls
    finally:
        del lm.forward


def test_echo_reads_each_prompt_once_on_the_scheduler_thread(live):
    """Scoring an echoed prompt costs no second read of it, and only the scheduler's thread runs
    the model (no scoring beside the batched decoding, outside the server's capacity limits)."""
    client = live.client()
    ids = tiny_pipeline().tokenizer.encode("A prompt of a few words, scored and then continued")
    for max_tokens in (1, 0):
        with model_reads(live.app.state.pipeline.model.lm) as calls:
            reply = client.completions.create(model="tiny", prompt=[ids], max_tokens=max_tokens, echo=True,
                                              logprobs=2, temperature=0)
        assert len(reply.choices[0].logprobs.tokens) == len(ids) + max_tokens
        assert {thread for thread, _ in calls} == {"modrwkv-scheduler"}
        assert sum(positions for _, positions in calls) == len(ids)  # one token generated: no further read


def test_echo_requests_take_slots_like_any_other():
    """A prompt-scoring request (echo, max_tokens 0) waits for a slot and is refused with 429 when
    every slot and queue place is taken, like a generating one."""
    limits = ServerLimits(max_tokens=100_000)
    with live_server(limits=limits, max_batch=1, max_queue=0) as server:
        client = server.client()
        stream = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}],
                                                max_tokens=100_000, temperature=0, stream=True)
        assert next(iter(stream)).choices[0].delta.role == "assistant"  # takes the only slot
        with pytest.raises(openai.RateLimitError, match="busy"):
            client.completions.create(model="tiny", prompt="Score me", max_tokens=0, echo=True, logprobs=0)
        stream.close()
        server.wait_for(lambda h: h["running"] == 0)
        scored = client.completions.create(model="tiny", prompt="Score me", max_tokens=0, echo=True, logprobs=0)
        assert scored.choices[0].text == "Score me" and len(scored.choices[0].logprobs.tokens) >= 2


def test_concurrent_echo_and_chat_requests_match_running_alone(live):
    """Prompt scoring and chat replies interleaved in the running batch give exactly what each gives
    alone."""
    client = live.client()
    texts = ["The quick brown fox jumps over the lazy dog", "lorem ipsum " * 300, "One two three four"]
    requests = [("echo", dict(prompt=texts[0], max_tokens=0, echo=True, logprobs=3)),
                ("chat", dict(messages=[{"role": "user", "content": "Tell me a story"}], max_tokens=30)),
                ("echo", dict(prompt=texts[1], max_tokens=5, echo=True, logprobs=1)),  # read in two chunks
                ("chat", dict(messages=[{"role": "user", "content": "Count to ten"}], max_tokens=25)),
                ("echo", dict(prompt=[texts[2], texts[0]], max_tokens=3, echo=True, logprobs=2)),
                ("chat", dict(messages=[{"role": "user", "content": "Why?"}], max_tokens=20, logprobs=True))]

    def run(index: int) -> list[tuple[str, list[float | None]]]:
        """Each choice's text and log-probabilities (an echo's prompt tokens first)."""
        time.sleep(0.03 * index)
        kind, options = requests[index]
        if kind == "chat":
            choice = client.chat.completions.create(model="tiny", temperature=0, **options).choices[0]
            return [(choice.message.content, [t.logprob for t in choice.logprobs.content] if choice.logprobs else [])]
        reply = client.completions.create(model="tiny", temperature=0, **options)
        return [(c.text, c.logprobs.token_logprobs) for c in reply.choices]

    with concurrent.futures.ThreadPoolExecutor(len(requests)) as pool:
        together = list(pool.map(run, range(len(requests))))
    alone = [run(index) for index in range(len(requests))]
    tokenizer = tiny_pipeline().tokenizer
    for (kind, options), mixed, single in zip(requests, together, alone):
        prompts = options.get("prompt", [])
        prompts = prompts if isinstance(prompts, list) else [prompts]
        for j, ((text, logprobs), (text_alone, logprobs_alone)) in enumerate(zip(mixed, single, strict=True)):
            assert text == text_alone
            # A prompt is read on its own, so its scores are bit-identical; a generated token's score
            # comes from a batched step, whose sums the other rows can reorder.
            read = len(tokenizer.encode(prompts[j])) if prompts else 0
            assert logprobs[:read] == logprobs_alone[:read]
            assert logprobs[read:] == pytest.approx(logprobs_alone[read:], abs=1e-5)
    ids = tokenizer.encode(texts[0])
    logp = reference_logprobs(ids)
    _, token_logprobs = together[0][0]
    assert token_logprobs[1:] == pytest.approx([logp[i - 1, ids[i]].item() for i in range(1, len(ids))], abs=1e-4)


def test_completions_continue_raw_text_like_generate(live):
    client = live.client()
    pipeline = tiny_pipeline()
    params = SamplingParams(temperature=0, max_new_tokens=6)
    prompts = ["Once upon a time", "def main():"]
    reply = client.completions.create(model="tiny", prompt=prompts, max_tokens=6, temperature=0)
    assert [c.index for c in reply.choices] == [0, 1]
    for prompt, choice in zip(prompts, reply.choices):
        # no chat template, no stripped leading space: exactly what plain generation continues with
        assert choice.text == generate(pipeline.model.lm, pipeline.tokenizer, prompt, params).text
        assert choice.logprobs is None
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="tiny", prompt=prompts[0], max_tokens=6, temperature=0, stream=True) if c.choices)
    assert streamed == reply.choices[0].text


def test_completions_refuse_bad_requests(live):
    client = live.client()
    for kwargs, pattern in [
        ({"prompt": [[1, 2, 70000]]}, "outside the vocabulary"),
        ({"prompt": "x", "max_tokens": 0}, "only makes sense with 'echo'"),
        ({"prompt": "x", "logprobs": 21}, "'logprobs' must be between 0 and 20"),
        ({"prompt": "x", "stream": True, "echo": True}, "'stream' works with one prompt"),
        ({"prompt": ""}, "'prompt' is empty"),
    ]:
        with pytest.raises(openai.BadRequestError, match=pattern):
            client.completions.create(model="tiny", **kwargs)


def test_chat_logprobs_match_a_full_forward(live):
    pipeline = tiny_pipeline()
    messages = [{"role": "user", "content": "Name a colour."}]
    reply = live.client().chat.completions.create(model="tiny", messages=messages, max_tokens=5, temperature=0,
                                                  logprobs=True, top_logprobs=2)
    content = reply.choices[0].logprobs.content
    assert len(content) == reply.usage.completion_tokens
    prompt = list(pipeline.encode(messages).ids)
    generated: list[int] = []
    for entry in content:  # temperature 0: each token is the best under the full forward of what precedes it
        row = emitted_logprobs(reference_logprobs(prompt + generated)[-1])
        token = int(row.argmax())
        assert bytes(entry.bytes) == pipeline.tokenizer.token_bytes(token)
        assert entry.logprob == pytest.approx(row[token].item(), abs=1e-4)
        assert [t.logprob for t in entry.top_logprobs] == pytest.approx(row.topk(2).values.tolist(), abs=1e-4)
        assert entry.top_logprobs[0].token == entry.token
        generated.append(token)
    with pytest.raises(openai.BadRequestError, match="'top_logprobs' needs 'logprobs'"):
        live.client().chat.completions.create(model="tiny", messages=messages, top_logprobs=2)


def test_streamed_chat_logprobs_are_the_whole_replys(live):
    """stream + logprobs + top_logprobs: each chunk scores its own tokens; together they are the
    non-streamed reply's logprobs, including the tokens of a stop string, whose text never comes out
    (they go with the last chunk)."""
    client = live.client()
    request = dict(model="tiny", messages=[{"role": "user", "content": "Name a colour."}], max_tokens=16,
                   temperature=0, logprobs=True, top_logprobs=3, stop=[" infiltration"])
    whole = client.chat.completions.create(**request).choices[0]
    assert whole.finish_reason == "stop" and len(whole.logprobs.content) >= 4
    chunks = [c.choices[0] for c in client.chat.completions.create(**request, stream=True) if c.choices]
    assert "".join(c.delta.content or "" for c in chunks) == whole.message.content
    streamed = [entry for c in chunks if c.logprobs is not None for entry in c.logprobs.content]
    assert [(e.token, e.bytes, [t.token for t in e.top_logprobs]) for e in streamed] == \
        [(e.token, e.bytes, [t.token for t in e.top_logprobs]) for e in whole.logprobs.content]
    assert [[e.logprob, *(t.logprob for t in e.top_logprobs)] for e in streamed] == \
        [pytest.approx([e.logprob, *(t.logprob for t in e.top_logprobs)], abs=1e-6) for e in whole.logprobs.content]
    text_chunks = [c for c in chunks if c.delta.content]
    assert len(text_chunks) > 1 and all(c.logprobs is not None and c.logprobs.content for c in text_chunks)
    last = chunks[-1]  # the stop string's tokens: scored, never shown
    assert last.finish_reason == "stop" and not last.delta.content
    assert "".join(e.token for e in last.logprobs.content).endswith(" infiltration")
    # Without logprobs a stream carries none.
    request.pop("top_logprobs")
    assert all(c.choices[0].logprobs is None for c in client.chat.completions.create(
        **{**request, "logprobs": False}, stream=True) if c.choices)


def test_streamed_completion_logprobs_are_the_whole_replys(live):
    client = live.client()
    # "obtain" is held back as the start of the stop string until "heed" completes it
    request = dict(model="tiny", prompt="Once upon a time", max_tokens=12, temperature=0, logprobs=2,
                   stop=["obtainhe"])
    whole = client.completions.create(**request).choices[0]
    assert whole.finish_reason == "stop" and whole.text == "tain Def"
    chunks = [c.choices[0] for c in client.completions.create(**request, stream=True) if c.choices]
    assert "".join(c.text for c in chunks) == whole.text
    merged: dict[str, list] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for chunk in chunks:
        if chunk.logprobs is not None:
            for key, values in merged.items():
                values += getattr(chunk.logprobs, key)
    assert merged["tokens"] == whole.logprobs.tokens == ["tain", " Def", "obtain", "heed"]
    assert merged["text_offset"] == whole.logprobs.text_offset  # offsets run on across chunks
    assert merged["token_logprobs"] == pytest.approx(whole.logprobs.token_logprobs, abs=1e-6)
    assert [list(t) for t in merged["top_logprobs"]] == [list(t) for t in whole.logprobs.top_logprobs]
    assert chunks[-1].finish_reason == "stop" and chunks[-1].logprobs.tokens == ["obtain", "heed"]


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.M))
    assert types["modrwkv_request_latency_seconds"] == "histogram" and types["modrwkv_queue_requests"] == "gauge"
    return samples


def test_metrics_count_requests_tokens_and_latency(live):
    before = scrape(live.url)
    client = live.client()
    usage = [client.completions.create(model="tiny", prompt="Hello", max_tokens=3, temperature=0).usage
             for _ in range(2)]
    chunks = list(client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}],
                                                 max_tokens=3, stream=True, stream_options={"include_usage": True}))
    usage.append(chunks[-1].usage)
    after = scrape(live.url)

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    ok = 'modrwkv_requests_total{route="/v1/completions",status="200"}'
    assert delta(ok) == 2
    assert delta('modrwkv_tokens_total{kind="completion"}') == sum(u.completion_tokens for u in usage)
    assert delta('modrwkv_tokens_total{kind="prompt"}') == sum(u.prompt_tokens for u in usage)
    latency = 'modrwkv_request_latency_seconds_count{route="/v1/completions"}'
    assert delta(latency) == 2
    buckets = [v for k, v in after.items()
               if k.startswith("modrwkv_request_latency_seconds_bucket") and 'route="/v1/completions"' in k]
    assert buckets == sorted(buckets) and buckets[-1] == after[latency]  # cumulative, ending at +Inf
    assert after['modrwkv_time_to_first_token_seconds_count{route="/v1/chat/completions"}'] >= 1
    assert after["modrwkv_generation_tokens_per_second"] > 0
    assert after["modrwkv_queue_requests"] == 0 and after["modrwkv_batch_slots"] == 8
    assert delta("modrwkv_completed_requests_total") == 3


def test_cors_preflight_for_allowed_origins_only(live):
    def preflight(origin: str) -> dict:
        request = urllib.request.Request(f"{live.url}/v1/chat/completions", method="OPTIONS", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return dict(response.headers)
        except urllib.error.HTTPError as exc:
            return dict(exc.headers)

    assert preflight(ORIGIN).get("access-control-allow-origin") == ORIGIN
    assert "access-control-allow-origin" not in {k.lower() for k in preflight("http://evil.example")}
    reply = urllib.request.urlopen(urllib.request.Request(
        f"{live.url}/v1/models", headers={"Origin": ORIGIN, "Authorization": f"Bearer {KEY}"}), timeout=10)
    assert reply.headers["access-control-allow-origin"] == ORIGIN
    assert json.load(reply)["data"][0]["id"] == "tiny"
