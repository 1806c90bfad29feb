"""OpenAI's /v1/audio/transcriptions on the server, driven by the official `openai` client over real
HTTP, and `modrwkv transcribe`: recordings of tones with known pauses, transcribed by a tiny random
model, against `ModRWKVPipeline.transcribe(long_form=True)` and the known pause times; subtitles
parsed back by a parser of this file's own."""

import concurrent.futures
import io
import json
import math
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
import zlib

import numpy as np
import openai
import pytest
import soundfile
import torch
from fastapi.testclient import TestClient
from test_pipeline import LM, png_bytes, tiny_model_dir, tiny_pipeline
from test_server import KEY, LIMITS, USER, ask, live_server

from modrwkv.cli import main
from modrwkv.encoders import build_encoder
from modrwkv.encoders.media import load_audio
from modrwkv.inference import ModRWKVPipeline
from modrwkv.generation import GenerationResult
from modrwkv.inference.pipeline import TranscribedSegment, Transcription, average_logprob
from modrwkv.inference.transcript_formats import compression_ratio, render_transcript
from modrwkv.multimodal import ModRWKV
from modrwkv.processing.speech_segments import SegmentSettings, speech_segments
from modrwkv.serving import ServerLimits, create_app

from conftest import make_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RATE = 16000
TOKENS = LIMITS.max_tokens  # the server's per-segment budget: min(256, --max-tokens)
# a segment edge sits within a frame (25 ms) of the sound's edge, plus the segmenter's 0.1 s padding
EDGE = 0.03
PADDING = 0.1


def tones(bursts: list[float], pauses: list[float], lead: float = 0.4, seed: int = 0) -> tuple[bytes, list[tuple[float, float]]]:
    """A WAV of noisy tone bursts of the given lengths, `lead` s of silence before the first and after
    the last and pauses[i] s of silence after burst i; returns it and each burst's (start, end)."""
    rng = np.random.default_rng(seed)
    parts, spans, at = [np.zeros(round(lead * RATE), np.float32)], [], lead
    for index, seconds in enumerate(bursts):
        t = np.arange(round(seconds * RATE)) / RATE
        parts.append((0.3 * np.sin(2 * np.pi * (220 + 110 * index) * t) + 0.05 * rng.standard_normal(len(t))
                      ).astype(np.float32))
        spans.append((at, at + seconds))
        at += seconds
        gap = pauses[index] if index < len(pauses) else lead
        parts.append(np.zeros(round(gap * RATE), np.float32))
        at += gap
    buffer = io.BytesIO()
    soundfile.write(buffer, np.concatenate(parts), RATE, format="WAV")
    return buffer.getvalue(), spans


RECORDING, BURSTS = tones([1.0, 0.7, 1.2], [0.6, 0.8])


@pytest.fixture(scope="module")
def live():
    limits = LIMITS.__class__(**{**LIMITS.__dict__, "max_transcription_seconds": 8.0})
    with live_server(limits=limits, api_key=KEY, max_batch=8, max_queue=16) as server:
        yield server


@pytest.fixture(scope="module")
def expected(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio") / "tones.wav"
    path.write_bytes(RECORDING)
    return tiny_pipeline().transcribe(str(path), long_form=True, max_new_tokens=TOKENS)


def transcribe(live, data: bytes = RECORDING, name: str = "tones.wav", **options):
    return live.client().audio.transcriptions.create(model="tiny", file=(name, data), **options)


def seconds(stamp: str) -> float:
    hours, minutes, rest = stamp.replace(",", ".").split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(rest)


def parse_subtitles(text: str, kind: str) -> list[tuple[float, float, str]]:
    """(start, end, text) of each cue of an SRT or WebVTT file."""
    if kind == "vtt":
        assert text.startswith("WEBVTT\n\n")
        text = text[len("WEBVTT\n\n"):]
    cues = []
    for block in text.strip("\n").split("\n\n"):
        lines = block.split("\n")
        if kind == "srt":
            assert lines.pop(0) == str(len(cues) + 1)
        decimal = "," if kind == "srt" else "."
        match = re.fullmatch(rf"(\d\d:\d\d:\d\d{decimal}\d\d\d) --> (\d\d:\d\d:\d\d{decimal}\d\d\d)", lines[0])
        assert match, lines[0]
        cues.append((seconds(match[1]), seconds(match[2]), "\n".join(lines[1:])))
    return cues


@pytest.mark.xdist_group("test_transcriptions_live")  # one xdist worker starts the server and transcribes the expected text, not both
def test_every_format_is_the_pipelines_long_form_transcript(live, expected):
    assert len(expected.segments) == 3 and expected.text  # a random model writes something for each tone
    assert transcribe(live).text == expected.text  # json, the default
    assert transcribe(live, response_format="text").strip() == expected.text
    verbose = transcribe(live, response_format="verbose_json", timestamp_granularities=["segment"])
    assert verbose.text == expected.text and verbose.duration == pytest.approx(len(load_audio(RECORDING)) / RATE)
    assert verbose.task == "transcribe" and verbose.language is None
    cut = speech_segments(load_audio(RECORDING), RATE)
    assert [(s.start, s.end) for s in verbose.segments] == [(s.start, s.end) for s in cut]
    assert [s.text for s in verbose.segments] == [s.text for s in expected.segments]
    assert [s.id for s in verbose.segments] == [0, 1, 2]
    assert [s.tokens for s in verbose.segments] == [s.token_ids for s in expected.segments]
    cues = [(s.start, s.end, s.text) for s in expected.segments if s.text]
    for kind in ("srt", "vtt"):
        assert parse_subtitles(transcribe(live, response_format=kind), kind) == cues


@pytest.mark.xdist_group("test_transcriptions_live")  # one xdist worker starts the server and transcribes the expected text, not both
@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_verbose_json_scores_each_segment_as_whisper_does(live, expected, temperature):
    """avg_logprob: as Whisper's decoder computes it, the sum of the log-probabilities of the segment's
    tokens over its text tokens plus one (a reply cut at the token budget, as each of these is, has no
    end token and is still divided by one more), recomputed here by one forward pass over the segment's
    prompt (its audio included) and reply, with token 0 banned as decoding bans it, and before any
    temperature (sampled at 0.8, the tokens are scored under the untempered distribution, as Whisper
    scores them); compression_ratio: the text's UTF-8 bytes over their zlib bytes."""
    pipeline = tiny_pipeline()
    clips, _, _ = pipeline.transcription_clips(RECORDING, SegmentSettings())
    verbose = transcribe(live, response_format="verbose_json", temperature=temperature)
    assert len(verbose.segments) == len(clips) == 3
    for clip, segment in zip(clips, verbose.segments):
        assert len(segment.tokens) == TOKENS and segment.tokens[-1] not in pipeline.template.stop_token_ids
        prompt = pipeline.transcription_prompt(clip)
        media = {"audio": pipeline.model.encoders["audio"].collate([span.prepared for span in prompt.spans])}
        with torch.no_grad():
            logits = pipeline.model(torch.tensor([list(prompt.ids) + segment.tokens[:-1]]), media).logits[0]
        logits = logits[len(prompt) - 1 :].float()
        logits[:, 0] = -math.inf
        scores = logits.log_softmax(-1).gather(-1, torch.tensor(segment.tokens)[:, None])
        want = float(scores.sum()) / (TOKENS + 1)
        assert segment.avg_logprob == pytest.approx(want, rel=1e-4)  # step by step vs one pass
        assert segment.compression_ratio == len(segment.text.encode()) / len(zlib.compress(segment.text.encode()))
    if temperature == 0:
        assert [s.avg_logprob for s in verbose.segments] == pytest.approx([s.avg_logprob for s in expected.segments])
    # bytes, not characters: "é" is two; a repeating text compresses well
    assert compression_ratio("é" * 200) == 400 / len(zlib.compress("é".encode() * 200)) > 10
    assert compression_ratio("") == 0.0


def test_avg_logprob_counts_a_stop_token_as_whispers_end_token():
    """A reply ended by its stop token: Whisper sums its text tokens' and its end token's log-probabilities
    over the text tokens plus one, the mean over every token here; cut at the budget, one more than the
    tokens; decoded without log-probabilities, none."""
    def reply(finish_reason, logprobs):
        return GenerationResult("a b", [5, 6, 7], finish_reason, [1], logprobs=logprobs)

    assert average_logprob(reply("stop", [-1.0, -2.0, -3.0])) == -2.0
    assert average_logprob(reply("length", [-1.0, -2.0, -3.0])) == -1.5
    assert average_logprob(reply("stop", None)) is None


def test_subtitles_keep_each_segment_one_cue_for_ffmpeg():
    """A segment's text with a blank line or "-->" (a model may write either) stays one cue, with its
    times, as FFmpeg's SRT and WebVTT readers read the file; hours past the first are written."""
    av = pytest.importorskip("av")
    segments = [TranscribedSegment(0.5, 1.0, "one\n\ntwo", "stop"), TranscribedSegment(61.0, 3725.5, "a --> b\n \nc", "stop")]
    transcription = Transcription("one two a b c", segments, "stop", 3726.0)
    for kind, demuxer in [("srt", "srt"), ("vtt", "webvtt")]:
        with av.open(io.BytesIO(render_transcript(transcription, kind).encode()), format=demuxer) as container:
            cues = [(float(p.pts * p.time_base), float((p.pts + p.duration) * p.time_base), bytes(p).decode())
                    for p in container.demux() if p.size]
        assert cues == [(0.5, 1.0, "one\ntwo"), (61.0, 3725.5, "a -> b\nc")], kind


@pytest.mark.xdist_group("test_transcriptions_live")  # one xdist worker starts the server and transcribes the expected text, not both
def test_segments_are_cut_at_the_known_pauses(live):
    verbose = transcribe(live, response_format="verbose_json")
    assert len(verbose.segments) == len(BURSTS)
    for segment, (start, end) in zip(verbose.segments, BURSTS):
        assert segment.start == pytest.approx(start - PADDING, abs=EDGE)
        assert segment.end == pytest.approx(end + PADDING, abs=EDGE)
    # no pause: one segment, the sound padded
    solid, (span,) = tones([2.5], [])
    (only,) = transcribe(live, solid, response_format="verbose_json").segments
    assert (only.start, only.end) == pytest.approx((span[0] - PADDING, span[1] + PADDING), abs=EDGE)
    # silence: no segment, no text
    silent = io.BytesIO()
    soundfile.write(silent, np.zeros(RATE, np.float32), RATE, format="WAV")
    nothing = transcribe(live, silent.getvalue(), response_format="verbose_json")
    assert nothing.text == "" and nothing.segments == []


@pytest.mark.xdist_group("test_transcriptions_live")  # one xdist worker starts the server and transcribes the expected text, not both
def test_streamed_deltas_one_per_segment_add_up_to_the_text(live, expected):
    events = list(transcribe(live, stream=True))
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    assert len(deltas) == sum(1 for s in expected.segments if s.text)
    assert [d.strip() for d in deltas] == [s.text for s in expected.segments if s.text]
    assert events[-1].type == "transcript.text.done" and events[-1].text == expected.text == "".join(deltas)
    assert events[-1].usage.output_tokens == sum(len(s.token_ids) for s in expected.segments)


@pytest.mark.xdist_group("test_transcriptions_live")  # one xdist worker starts the server and transcribes the expected text, not both
def test_transcriptions_and_chats_at_once_match_running_alone(live, expected):
    chat = [{"role": "user", "content": "Say something"}]
    alone = ask(live.client(), chat).choices[0].message.content
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        texts = [pool.submit(transcribe, live) for _ in range(3)]
        chats = [pool.submit(ask, live.client(), chat) for _ in range(3)]
        assert [f.result().text for f in texts] == [expected.text] * 3
        assert [f.result().choices[0].message.content for f in chats] == [alone] * 3
    assert live.health()["peak_batch"] > 1


@pytest.mark.xdist_group("test_transcriptions_live")  # one xdist worker starts the server and transcribes the expected text, not both
def test_more_segments_than_batch_slots_go_in_windows_in_order(expected):
    """Two slots and no queue: the three segments go as a window of two, then one; same text."""
    with live_server(limits=LIMITS, api_key=KEY, max_batch=2, max_queue=0) as small:
        assert transcribe(small).text == expected.text
        deltas = [e.delta for e in transcribe(small, stream=True) if e.type == "transcript.text.delta"]
        assert "".join(deltas) == expected.text
        # the scheduler counts a segment just after posting its result
        small.wait_for(lambda health: health["completed"] == 2 * len(expected.segments))


def test_a_later_window_waits_for_room_instead_of_failing(monkeypatch):
    """An admitted recording is not refused part way: two slots and no queue; while its second
    window's audio is prepared, two chats take both slots; the window waits for them instead of
    ending the request with a 429, and the text is the one the recording gets alone."""
    pipeline = tiny_pipeline()
    prepare, prepared = pipeline.transcription_prompt, []
    second_window, slots_taken = threading.Event(), threading.Event()

    def prompt(clip, *args, **kwargs):
        prepared.append(clip)
        if len(prepared) == 3:  # the second window's only segment
            second_window.set()
            assert slots_taken.wait(30)
        return prepare(clip, *args, **kwargs)

    monkeypatch.setattr(pipeline, "transcription_prompt", prompt)
    with live_server(limits=ServerLimits(max_tokens=100_000), api_key=KEY, max_batch=2, max_queue=0) as server:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(transcribe, server)  # three segments: a window of two, then one
            assert second_window.wait(30)
            server.wait_for(lambda health: health["running"] == 0)
            chats = [ask(server.client(), [USER], max_tokens=100_000, stream=True) for _ in range(2)]
            for chat in chats:
                next(iter(chat))
            server.wait_for(lambda health: health["running"] == 2)
            slots_taken.set()
            time.sleep(0.5)  # the window finds no room
            assert not waiting.done()
            for chat in chats:
                chat.close()
            text = waiting.result(timeout=60).text
        assert len(prepared) == 3
        assert text == transcribe(server).text  # alone


def test_a_full_queue_is_a_429_streamed_or_not():
    """The first window is queued before the reply starts: a streamed request the queue has no room
    for is a 429 (which the openai client retries), not a 200 whose stream holds an error."""
    with live_server(limits=ServerLimits(max_tokens=100_000), api_key=KEY, max_batch=2, max_queue=1) as server:
        chats = [ask(server.client(), [USER], max_tokens=100_000, stream=True) for _ in range(2)]
        for chat in chats:
            next(iter(chat))
        server.wait_for(lambda health: health["running"] == 2)
        for stream in (False, True):  # one queue place for a window of two segments
            with pytest.raises(openai.RateLimitError, match="busy"):
                transcribe(server, stream=stream)
        assert server.health()["queued"] == 0
        for chat in chats:
            chat.close()


def test_a_client_leaving_mid_stream_frees_its_segments_slots():
    """A streamed transcription whose client hangs up while a later window is decoded: that
    window's segment leaves the batch and no window after it is queued."""
    recording, _ = tones([0.5] * 4, [0.5] * 3)  # four segments, windows of one
    with live_server(limits=ServerLimits(max_tokens=100_000), api_key=KEY, max_batch=1, max_queue=0) as server:
        stream = transcribe(server, recording, stream=True)
        assert next(iter(stream)).type == "transcript.text.delta"
        server.wait_for(lambda h: h["completed"] == 1 and h["running"] == 1)  # the second window
        stream.close()
        health = server.wait_for(lambda h: h["running"] == 0 and h["cancelled"] == 1)
        time.sleep(0.5)  # no later window comes
        assert {**server.health(), "steps": health["steps"]} == health
        assert health["completed"] == 1 and health["queued"] == 0


def post(live, files=None, data=None, json_body=None) -> tuple[int, dict]:
    """A raw POST to the endpoint (multipart/form-data written here, or a JSON body): status, JSON reply."""
    if json_body is not None:
        body, content_type = json.dumps(json_body).encode(), "application/json"
    else:
        boundary = uuid.uuid4().hex
        parts = []
        for name, values in (data or {}).items():
            for value in values if isinstance(values, list) else [values]:
                parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
        for name, uploads in (files or {}).items():
            for filename, content in uploads if isinstance(uploads, list) else [uploads]:
                parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                             "Content-Type: application/octet-stream\r\n\r\n".encode() + content + b"\r\n")
        body, content_type = b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"
    request = urllib.request.Request(f"{live.url}/v1/audio/transcriptions", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {KEY}", "Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def long_recording() -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, 0.1 * np.ones(9 * RATE, np.float32), RATE, format="WAV")
    return buffer.getvalue()


@pytest.mark.parametrize("files, data, status, message", [
    (None, {"model": "tiny"}, 400, "'file' is required"),
    ({"file": ("a.wav", b"")}, {"model": "tiny"}, 400, "'file' ('a.wav') is empty"),
    ({"file": ("a.wav", b"\x00" * 64)}, {"model": "tiny"}, 400,
     "the file 'a.wav' cannot be decoded: not a recognised audio format"),
    ({"file": ("a.png", png_bytes())}, {"model": "tiny"}, 400, "the file 'a.png' cannot be decoded"),
    # a text field sent as a file part (with a filename), and a second recording
    ({"file": ("a.wav", RECORDING), "model": ("model.txt", b"tiny")}, {}, 400,
     "'model' must be a text field (a part without a filename), not a file ('model.txt')"),
    ({"file": ("a.wav", RECORDING), "response_format": ("f.txt", b"srt")}, {"model": "tiny"}, 400,
     "'response_format' must be a text field"),
    ({"file": ("a.wav", RECORDING), "timestamp_granularities[]": ("g.txt", b"segment")},
     {"model": "tiny", "response_format": "verbose_json"}, 400,
     "'timestamp_granularities[]' must be a text field (a part without a filename), not a file ('g.txt')"),
    ({"file": [("a.wav", RECORDING), ("b.wav", RECORDING)]}, {"model": "tiny"}, 400,
     "'file' is given 2 times; send one recording per request"),
    ({"file": ("a.wav", RECORDING)}, {"model": "tiny", "response_format": "tsv"}, 400,
     "'response_format' must be one of json, text, srt, verbose_json, vtt, got 'tsv'"),
    ({"file": ("a.wav", RECORDING)}, {"model": "whisper-1"}, 404, "The model 'whisper-1' does not exist"),
    ({"file": ("a.wav", RECORDING)}, {"model": "m" * 500_000}, 404,  # not echoed whole
     f"The model '{'m' * 100}'... (500000 characters) does not exist"),
    ({"file": ("a.wav", RECORDING)}, {"model": "tiny", "response_format": "verbose_json",
                                      "timestamp_granularities[]": ["word"]}, 400,
     "'timestamp_granularities[]' word is not supported"),
    ({"file": ("a.wav", RECORDING)}, {"model": "tiny", "language": "en"}, 400,
     "'language' is not supported: the model has no language switch"),
    ({"file": ("a.wav", RECORDING)}, {"model": "tiny", "prompt": "Earlier"}, 400,
     "'prompt' is not supported: the model was never trained to continue earlier text"),
    ({"file": ("a.wav", RECORDING)}, {"model": "tiny", "include[]": ["logprobs"]}, 400,
     "'include[]' (logprobs) is not supported: this server returns no per-token logprobs with a transcript"),
    ({"file": ("a.wav", RECORDING)}, {"model": "tiny", "include": "logprobs"}, 400,
     "'include' (logprobs) is not supported"),
    ({"file": ("a.wav", RECORDING)}, {"model": "tiny", "temperature": "hot"}, 400,
     "'temperature' must be a number in [0, 1]"),
    ({"file": ("a.wav", RECORDING)}, {"model": "tiny", "stream": "true", "response_format": "srt"}, 400,
     "'stream' works with response_format json or text"),
    ({"file": ("long.wav", long_recording())}, {"model": "tiny"}, 400,
     "the file 'long.wav' lasts 9.0 s; this server accepts at most 8 s (its operator sets --max-transcription-seconds)"),
])
@pytest.mark.xdist_group("test_transcriptions_live")  # one xdist worker starts the server and transcribes the expected text, not both
def test_bad_uploads_get_clear_errors(live, files, data, status, message):
    code, reply = post(live, files=files, data=data)
    assert code == status, reply
    assert message in reply["error"]["message"]
    if message.startswith(("the file", "'")):  # the field is named
        assert reply["error"]["param"] == ("file" if message.startswith("the file") else message.split("'")[1]), reply


@pytest.mark.xdist_group("test_transcriptions_live")  # one xdist worker starts the server and transcribes the expected text, not both
def test_a_json_body_and_a_model_without_audio_are_refused_by_name(live):
    code, reply = post(live, json_body={"model": "tiny", "file": "a.wav"})
    assert code == 400 and "takes multipart/form-data" in reply["error"]["message"]
    series_only = ModRWKV.build(make_model(LM, seed=2), {"series": build_encoder("wavenet", layers=2, output_dim=24)})
    with TestClient(create_app(ModRWKVPipeline(series_only), model_name="tiny")) as client:
        reply = client.post("/v1/audio/transcriptions", files={"file": ("a.wav", RECORDING)}, data={"model": "tiny"})
    assert reply.status_code == 400 and "has no audio encoder" in reply.json()["error"]["message"]
    with pytest.raises(openai.BadRequestError, match="'language' is not supported"):
        transcribe(live, language="en")
    with pytest.raises(openai.BadRequestError, match=r"'include\[\]' \(logprobs\) is not supported"):
        transcribe(live, include=["logprobs"])  # what the client sends for gpt-4o-transcribe's logprobs
    with pytest.raises(openai.APIStatusError, match="this server accepts at most 1000000") as refused:
        transcribe(live, b"\x00" * 1_100_000)
    assert refused.value.status_code == 413


def test_a_server_without_python_multipart_says_which_package_to_install(monkeypatch):
    """Without python-multipart, Starlette cannot parse a form (it asserts the package is there): the
    reply names the package and the extra that installs it instead of an internal error."""
    import starlette.formparsers

    monkeypatch.setattr(starlette.formparsers, "multipart", None)
    with TestClient(create_app(tiny_pipeline(), model_name="tiny")) as client:
        reply = client.post("/v1/audio/transcriptions", files={"file": ("a.wav", RECORDING)}, data={"model": "tiny"})
    assert reply.status_code == 501, reply.text
    assert "needs the 'python-multipart' package" in reply.json()["error"]["message"]
    assert "pip install 'modrwkv[serve]'" in reply.json()["error"]["message"]


# --- modrwkv transcribe -------------------------------------------------------------------------


@pytest.mark.xdist_group("test_transcriptions_live")  # one xdist worker starts the server and transcribes the expected text, not both
def test_transcribe_command_writes_each_format_as_the_server_does(tmp_path, capsys, expected, live):
    recording = tmp_path / "tones.wav"
    recording.write_bytes(RECORDING)
    model = str(tiny_model_dir())
    assert main(["transcribe", "--model", model, str(recording), "--max-new-tokens", str(TOKENS)]) == 0
    assert capsys.readouterr().out == expected.text + "\n"
    for kind, extension in [("srt", "srt"), ("vtt", "vtt"), ("verbose_json", "json"), ("text", "txt")]:
        out = tmp_path / kind
        assert main(["transcribe", "--model", model, str(recording), "--format", kind, "--output-dir", str(out),
                     "--max-new-tokens", str(TOKENS)]) == 0
        written = (out / f"tones.{extension}").read_text()
        served = transcribe(live, response_format=kind)
        if kind == "verbose_json":
            served = served.model_dump(exclude_unset=True)
            served.pop("usage")
            assert json.loads(written) == served
        else:
            assert written == served
    # --whole asks the recording whole: one segment, the whole clip
    assert main(["transcribe", "--model", model, str(recording), "--whole", "--format", "verbose_json",
                 "--max-new-tokens", str(TOKENS)]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert [(s["start"], s["end"]) for s in whole["segments"]] == [(0.0, whole["duration"])]


@pytest.mark.parametrize("arguments, message", [
    (["missing.wav"], "missing.wav: no such file"),
    (["not-audio.wav"], "cannot decode audio 'not-audio.wav': not a recognised audio format"),
    (["--max-segment-seconds", "0.1", "tones.wav"], "--max-segment-seconds: max_segment_seconds must be between"),
    (["--whole", "--max-segment-seconds", "5", "tones.wav"], "--max-segment-seconds cuts at pauses; it does not apply with --whole"),
    (["--output-dir", "out", "tones.wav", "sub/tones.wav"], "several recordings would be written to out/tones.txt (the same file named twice, or the same name in different folders)"),
    (["--model", "series-only", "tones.wav"], "series-only cannot transcribe: it has no audio encoder (it reads series)"),
    (["--output-dir", "not-audio.wav", "tones.wav"], "--output-dir not-audio.wav: is a file, not a folder"),
])
def test_transcribe_command_bad_input_is_one_line(tmp_path, monkeypatch, capsys, arguments, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tones.wav").write_bytes(RECORDING)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "tones.wav").write_bytes(RECORDING)
    (tmp_path / "not-audio.wav").write_bytes(b"\x00" * 64)
    if "series-only" in arguments:
        series = {"series": build_encoder("wavenet", layers=2, output_dim=24)}
        ModRWKV.build(make_model(LM, seed=2), series).save_pretrained(tmp_path / "series-only")
    assert main(["transcribe", "--model", str(tiny_model_dir()), *arguments]) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error and error.endswith("\n") and not (tmp_path / "out").exists(), error
    # the last line (a model's weights load under a progress bar first)
    assert error.splitlines()[-1].startswith(f"modrwkv transcribe: error: {message}"), error
    if "--output-dir" in message:  # found before the model loads and the recordings are transcribed
        assert "Loading weights" not in error, error


def test_transcribe_command_groups_recordings_by_count_and_seconds():
    from modrwkv.cli import TRANSCRIPTION_GROUP_SECONDS, _transcription_groups
    from modrwkv.inference.pipeline import TRANSCRIBE_ROWS

    half = TRANSCRIPTION_GROUP_SECONDS / 2
    # a long recording is a group of its own; two halves fill one; short clips go TRANSCRIBE_ROWS at a time
    assert _transcription_groups([3 * half, half, half, half]) == [[0], [1, 2], [3]]
    assert _transcription_groups([1.0] * (TRANSCRIBE_ROWS + 1)) == [list(range(TRANSCRIBE_ROWS)), [TRANSCRIBE_ROWS]]
    assert _transcription_groups([]) == []


def test_transcribe_command_keeps_what_was_written_when_a_later_recording_fails(tmp_path, monkeypatch, capsys):
    long_one = tmp_path / "first.wav"
    soundfile.write(long_one, np.zeros(RATE, np.float32), RATE)
    later = tmp_path / "later.wav"
    later.write_bytes(RECORDING)
    monkeypatch.setattr("modrwkv.cli.TRANSCRIPTION_GROUP_SECONDS", 0.5)  # one recording per group
    asked = ModRWKVPipeline.transcribe_batch

    def failing_on_later(self, audio, **kwargs):
        if str(later) in map(str, audio):
            raise RuntimeError("the later recording failed")
        return asked(self, audio, **kwargs)

    monkeypatch.setattr(ModRWKVPipeline, "transcribe_batch", failing_on_later)
    with pytest.raises(RuntimeError, match="the later recording failed"):
        main(["transcribe", "--model", str(tiny_model_dir()), str(long_one), str(later), "--output-dir",
              str(tmp_path / "out"), "--max-new-tokens", "4"])
    assert (tmp_path / "out" / "first.txt").is_file()  # written before the later group was asked
    assert "first.wav -> " in capsys.readouterr().err
