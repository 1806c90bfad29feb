"""The FastAPI app: an OpenAI-compatible chat-completions API, health, and the web page at `/`.

Request handling is split so that the event loop never runs model code: parsing and media
decoding (images, audio, preprocessing) run in a worker thread, the model runs in the scheduler's
thread, and the handler only moves events from the scheduler to the client. A client that goes
away (closed stream or abandoned request) cancels its ticket, which frees its batch slot at the
next decode step.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import importlib.resources
import importlib.util
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from ..data.readers import DataError, openai_to_sample
from ..data.readers.base import format_hint
from ..data.sample import Sample
from ..encoders.media import MediaError, allow_images_of
from ..generation import GenerationResult, SamplingParams
from ..inference import EncodedPrompt, ModRWKVPipeline
from ..constants import DEFAULT_TRANSCRIPT_TOKENS
from ..inference.pipeline import SEGMENT_SAMPLE_RATE, transcription_of
from ..inference.transcript_formats import MEDIA_TYPES, render_transcript
from ..processing.speech_segments import SegmentSettings, SpeechSegment
from ..tokenizer import WorldTokenizer
from . import completions, protocol, transcriptions
from .limits import LOCAL_MEDIA_REFUSED, APIError, ServerLimits, check_audio, check_media
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import ServerMetrics
from .scheduler import QueueFull, Scheduler, Ticket

log = logging.getLogger(__name__)

# How often a waiting handler checks whether its client is still connected.
DISCONNECT_POLL_SECONDS = 0.25
# How often a later window of a transcription tries the full queue again.
QUEUE_RETRY_SECONDS = 0.05
# Requests whose media are decoded and preprocessed at the same time.
PREPARE_THREADS = 4

_READER_HINTS = {
    "remote_url": (
        "remote media URLs are disabled on this server (the operator can enable them with --allow-remote-media)",
        "remote_media_disabled",
    ),
    "local_path_refused": (
        "local file paths are disabled on this server (the operator can allow a folder with --allow-local-media DIR)",
        "local_media_disabled",
    ),
    "missing_media": (LOCAL_MEDIA_REFUSED, "local_media_refused"),
}


def create_app(
    pipeline: ModRWKVPipeline,
    *,
    model_name: str | Sequence[str] = "modrwkv",
    any_model_name: bool = False,
    limits: ServerLimits | None = None,
    max_batch: int = 32,
    max_queue: int = 64,
    api_key: str | None = None,
    cors_origins: Sequence[str] = (),
) -> FastAPI:
    """An app serving `pipeline` under `model_name` (one name, or several: the first and its aliases,
    all listed by /v1/models); with `any_model_name`, requests naming any other model are served
    too (see `protocol.ModelNames`). With `api_key`, every /v1 route needs `Authorization: Bearer KEY`
    (the page, /health and /metrics stay open: they reveal nothing and the page asks for the key).
    `cors_origins` lets web pages from those origins ("*" for any) call the API from a browser."""
    names = protocol.ModelNames((model_name,) if isinstance(model_name, str) else tuple(model_name), any_model_name)
    limits = limits or ServerLimits()
    allow_images_of(limits.max_image_pixels)  # Pillow refuses images above its own limit otherwise
    scheduler = Scheduler(pipeline, max_batch=max_batch, max_queue=max_queue)
    created = int(time.time())
    # Media decoding runs in worker threads; a few at a time leaves the CPU to the decode thread.
    preparing = anyio.CapacityLimiter(PREPARE_THREADS)
    reads_video = importlib.util.find_spec("av") is not None  # the [video] extra
    page = importlib.resources.files(__package__).joinpath("static/index.html").read_text(encoding="utf-8")

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        scheduler.start()
        try:
            yield
        finally:
            scheduler.stop()

    app = FastAPI(title="modrwkv", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.scheduler = scheduler
    app.state.pipeline = pipeline
    app.state.limits = limits
    metrics = ServerMetrics(scheduler.snapshot)
    app.state.metrics = metrics
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST", "OPTIONS"],
                           allow_headers=["Authorization", "Content-Type"])

    app.add_middleware(_MeasureRequests, metrics=metrics)

    @app.exception_handler(APIError)
    async def _api_error(_request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Unknown routes and methods, as OpenAI error objects (clients show their message)."""
        if exc.status_code == 404:
            message = f"unknown route {request.method} {request.url.path}; this server serves {_offered_routes(app)}"
            error = APIError(404, message, code="unknown_url")
        elif exc.status_code == 405:
            error = APIError(405, f"{request.url.path} does not take {request.method}", code="method_not_allowed")
        else:
            error = APIError(exc.status_code, str(exc.detail))
        return JSONResponse(error.body(), status_code=error.status, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:  # logged by the server too
        return JSONResponse(_internal_error(exc).body(), status_code=500)

    def authorize(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise APIError(401, "missing or wrong API key (send 'Authorization: Bearer KEY')",
                           type="authentication_error", code="invalid_api_key")

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": names.names[0], **scheduler.snapshot()}

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        authorize(request)
        modalities = sorted(pipeline.model.encoders)
        if "image" in modalities and reads_video:  # a video reaches the model as image frames
            modalities = sorted([*modalities, "video"])
        return {"object": "list", "data": [
            # beyond OpenAI's fields: what the page at / needs to refuse a file before reading it, and to
            # order a message's parts as the model was trained to read them
            {"id": name, "object": "model", "created": created, "owned_by": "modrwkv", "modalities": modalities,
             "max_body_bytes": limits.max_body_bytes, "media_layout": pipeline.model.media_layout}
            for name in names.names
        ]}

    @app.get("/v1/models/{model:path}")
    async def model(model: str, request: Request) -> dict[str, Any]:
        """A served name's entry. With `any_model_name` every name is served, so another name is an
        entry of its own id (as OpenAI answers an alias), though a reply to it reports the first name."""
        authorize(request)
        served = names.resolve(model)  # the 404 of an unknown name, unless any name is served
        entry = next(entry for entry in (await models(request))["data"] if entry["id"] == served)
        return {**entry, "id": model or served}  # no name at all: the first name, as a request without one

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        authorize(request)
        body = await _read_body(request, limits.max_body_bytes)
        parsed = protocol.parse_request(protocol.decode_body(body), limits, names)
        arrived = time.perf_counter()
        if scheduler.full():  # refuse before decoding any media: an overloaded server has no time to waste
            raise _queue_full()
        prompt = await anyio.to_thread.run_sync(_prepare_prompt, pipeline, parsed.messages, limits,
                                                limiter=preparing)
        try:  # one decode per choice, batched together; choice i samples with seed + i
            params = [pipeline.sampling_params(**protocol.choice_sampling(parsed.sampling, index))
                      for index in range(parsed.n)]
        except ValueError as exc:
            raise APIError(400, str(exc)) from None
        tickets = _submit_all(scheduler, [(prompt, choice_params) for choice_params in params],
                              stream=parsed.stream, logprobs=parsed.logprobs)
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        now = int(time.time())
        if parsed.stream:
            events = _stream_events(tickets, request, request_id, now, parsed.model, parsed.include_usage,
                                    _Observer(metrics, "/v1/chat/completions", arrived), pipeline.tokenizer)
            return StreamingResponse(events, media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        results = await _wait_for_results(tickets, request)
        body = protocol.completion(request_id, now, parsed.model, results)
        metrics.tokens(body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"])
        for choice, result in zip(body["choices"], results):
            choice["logprobs"] = completions.chat_logprobs(pipeline.tokenizer, completions.generated_logprobs(result))
        return JSONResponse(body)

    @app.post("/v1/completions")
    async def text_completions(request: Request) -> Response:
        authorize(request)
        body = await _read_body(request, limits.max_body_bytes)
        parsed = completions.parse_text_completion(protocol.decode_body(body), limits, names, pipeline.tokenizer,
                                                   pipeline.model.lm.config.vocab_size)
        arrived = time.perf_counter()
        request_id = f"cmpl-{uuid.uuid4().hex}"
        now = int(time.time())
        generate = parsed.sampling["max_new_tokens"] > 0
        # The prompt's own tokens are scored by the scheduler as it reads the prompt (max_tokens 0: all it does).
        score_prompt = parsed.logprobs if parsed.echo and parsed.logprobs is not None else None
        try:  # a raw continuation: no template stop tokens, it stops where the client says
            params = [SamplingParams(**protocol.choice_sampling(parsed.sampling, j)) if generate else None
                      for j in range(parsed.n)]
        except ValueError as exc:
            raise APIError(400, str(exc)) from None
        # choices in OpenAI's order: the n choices of the first prompt, then of the next
        tickets = _submit_all(scheduler, [(completions.raw_prompt(ids), choice_params) for ids in parsed.prompts
                                          for choice_params in params],
                              stream=parsed.stream, logprobs=parsed.logprobs, raw=True, score_prompt=score_prompt)
        if parsed.stream:
            events = _stream_text_completion(tickets[0], request, request_id, now, parsed.model, parsed.include_usage,
                                             _Observer(metrics, "/v1/completions", arrived), pipeline.tokenizer,
                                             parsed.logprobs)
            return StreamingResponse(events, media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        results = await _wait_for_results(tickets, request)
        choices = [completions.text_completion_choice(pipeline.tokenizer, index, result, parsed.echo, parsed.logprobs)
                   for index, result in enumerate(results)]
        prompt_tokens = sum(result.prompt_tokens for result in results[::parsed.n])  # each prompt once
        completion_tokens = sum(result.completion_tokens for result in results)
        metrics.tokens(prompt_tokens, completion_tokens)
        return JSONResponse({"id": request_id, "object": "text_completion", "created": now, "model": parsed.model,
                             "choices": choices, "usage": {"prompt_tokens": prompt_tokens,
                                                           "completion_tokens": completion_tokens,
                                                           "total_tokens": prompt_tokens + completion_tokens}})

    @app.post("/v1/audio/transcriptions")
    async def audio_transcriptions(request: Request) -> Response:
        """OpenAI's transcription API: the upload cut at its pauses, each segment asked through the
        scheduler (a window of up to max_batch segments submitted together), the texts joined."""
        authorize(request)
        body = await _read_body(request, limits.max_body_bytes)
        form = await transcriptions.read_form(request.headers, body)
        try:
            parsed = await transcriptions.parse_transcription(form, names)
        finally:
            await form.close()  # the upload's spooled file: its bytes are read by now
        if "audio" not in pipeline.model.encoders:
            raise APIError(400, f"the served model cannot transcribe: it has no audio encoder (it reads "
                           f"{', '.join(sorted(pipeline.model.encoders)) or 'text only'})", code="audio_unsupported")
        arrived = time.perf_counter()
        if scheduler.full():
            raise _queue_full()
        clips, segments, duration = await anyio.to_thread.run_sync(_cut_recording, pipeline, parsed, limits,
                                                                   limiter=preparing)
        try:
            params = pipeline.transcription_params(parsed.temperature,
                                                   min(DEFAULT_TRANSCRIPT_TOKENS, limits.max_tokens))
        except ValueError as exc:
            raise APIError(400, str(exc)) from None
        tickets = await _submit_first_window(scheduler, pipeline, clips, params, limits, preparing)
        replies = _transcribe_in_order(scheduler, pipeline, clips, params, request, limits, preparing, tickets)
        observer = _Observer(metrics, "/v1/audio/transcriptions", arrived)
        if parsed.stream:
            return StreamingResponse(_stream_transcript(replies, segments, duration, observer),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        results = [result async for result in replies]
        for result in results:
            observer.done(result)
        transcript = render_transcript(transcription_of(segments, results, duration), parsed.response_format,
                                       parsed.temperature, extra={"usage": _transcription_usage(results)})
        return Response(transcript, media_type=MEDIA_TYPES[parsed.response_format])

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type=METRICS_CONTENT_TYPE)

    return app


def _offered_routes(app: FastAPI) -> str:
    """The app's routes as "GET /v1/models, ... and GET /metrics", the API's first (what a client
    that asked for an unknown one was looking for)."""
    routes = [f"{method} {route.path_format}" for route in app.routes if isinstance(route, Route)
              for method in sorted(route.methods - {"HEAD"})]
    routes.sort(key=lambda route: " /v1/" not in route)
    return " and ".join(", ".join(routes).rsplit(", ", 1))


class _MeasureRequests:
    """Counts every HTTP request and its latency (until the response is complete) by route.

    A plain ASGI middleware: Starlette's BaseHTTPMiddleware would hide client disconnects from the
    handlers, which free a request's batch slot when its client leaves."""

    def __init__(self, app: Any, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def send_and_note(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:  # the router put the matched route into the (shared) scope
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.request_done(route, status, time.perf_counter() - started)


@dataclasses.dataclass
class _Observer:
    """Reports a stream's first text and its token counts to the metrics."""

    metrics: ServerMetrics
    route: str
    arrived: float
    _seen_text: bool = False

    def text(self) -> None:
        if not self._seen_text:
            self._seen_text = True
            self.metrics.first_token(self.route, time.perf_counter() - self.arrived)

    def done(self, result: GenerationResult, count_prompt: bool = True) -> None:
        """`count_prompt` false for a request's later choices: usage counts its prompt once."""
        self.metrics.tokens(result.prompt_tokens if count_prompt else 0, result.completion_tokens)


async def _stream_text_completion(ticket: Ticket, request: Request, request_id: str, created: int, model: str,
                                  include_usage: bool, observer: _Observer, tokenizer: WorldTokenizer,
                                  logprobs: int | None) -> AsyncIterator[str]:
    """text_completion SSE events. With `logprobs`, each chunk carries the legacy logprobs object of
    its tokens (text offsets continue across chunks); tokens whose text never came out (a stop
    token or stop string) are scored in the last chunk, so the chunks together hold what a
    non-streamed reply holds."""
    offsets = completions.TextOffsets()

    def block(scored: list[completions.TokenLogprob] | None) -> dict[str, Any] | None:
        if logprobs is None or scored is None:
            return None
        return completions.legacy_logprobs(tokenizer, [s.token for s in scored], scored, logprobs, offsets)

    def event(text: str, finish_reason: str | None = None, usage: dict[str, Any] | None = None,
              scored: list[completions.TokenLogprob] | None = None) -> str:
        body: dict[str, Any] = {"id": request_id, "object": "text_completion", "created": created, "model": model,
                                "choices": [] if usage is not None else [
                                    {"index": 0, "text": text, "logprobs": block(scored),
                                     "finish_reason": finish_reason}]}
        if usage is not None:
            body["usage"] = usage
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    try:
        async for _, kind, value in _events([ticket], request):
            if kind == "text":
                piece, scored = value
                observer.text()
                yield event(piece, scored=scored)
            elif kind == "error":
                yield f"data: {json.dumps(_failure(value).body())}\n\n"
                return
            elif kind == "done":
                observer.done(value)
                yield event("", value.finish_reason, scored=_unsent_logprobs(ticket, value))
                if include_usage:
                    yield event("", usage={k: v for k, v in protocol.usage([value]).items() if not k.endswith("_details")})
                yield protocol.DONE
                return
    finally:
        ticket.cancel()


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"the request body has {declared} bytes; this server accepts at most {limit}",
                       code="body_too_large")
    parts, size = [], 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise APIError(413, f"the request body exceeds {limit} bytes", code="body_too_large")
        parts.append(part)
    return b"".join(parts)


def _prepare_prompt(pipeline: ModRWKVPipeline, messages: list[Any], limits: ServerLimits) -> EncodedPrompt:
    """Request messages -> model input (runs in a worker thread: decoding media is slow)."""
    try:
        sample = openai_to_sample(
            {"messages": messages},
            allow_remote=limits.allow_remote_media,
            allow_local_paths=limits.local_media_dir is not None,
            media_folder=limits.local_media_dir,
            answers_required=False,  # a request's history may hold an empty reply; it is not training data
        )
    except DataError as exc:
        # a request is no data file: the reader's guess at another file format (format_hint) would mislead
        detail = exc.detail.removesuffix(format_hint({"messages": messages}, "openai"))
        message, code = _READER_HINTS.get(exc.reason, (detail, exc.reason))
        raise APIError(400, message, code=code, param="messages") from None
    _check_modalities(sample, sorted(pipeline.model.encoders))
    check_media(sample, limits, pipeline.processor.video, _audio_rate(pipeline))
    try:
        prompt = pipeline.encode(sample)
    except MediaError as exc:  # media check_media passed that an encoder cannot read after all
        raise APIError(400, str(exc), code=f"bad_{exc.modality}", param="messages") from None
    except ValueError as exc:
        raise APIError(400, str(exc), param="messages") from None
    if len(prompt) > limits.max_prompt_tokens:
        raise APIError(400, f"the prompt has {len(prompt)} tokens (media included); this server accepts at most "
                       f"{limits.max_prompt_tokens}", code="context_length_exceeded", param="messages")
    return prompt


def _check_modalities(sample: Sample, encoders: list[str]) -> None:
    """Refuses the first media item the model has no encoder for, naming its content part and what the
    model reads, before anything is fetched or decoded."""
    for modality, items, encoder in (("image", sample.images, "image"), ("audio", sample.audios, "audio"),
                                     ("video", sample.videos, "image")):
        if items and encoder not in encoders:
            reads = ", ".join(encoders) or "text only"
            why = f"no {encoder} encoder" + (", which reads a video's frames" if modality == "video" else "")
            raise APIError(400, f"the {modality} in {sample.meta['media_parts'][modality][0]} cannot be read: the "
                           f"served model has {why} (it reads {reads})", code=f"{modality}_unsupported",
                           param="messages")


def _audio_rate(pipeline: ModRWKVPipeline) -> int | None:
    """The rate the model's audio encoder reads (each built-in one has a `sample_rate`), which a request's
    audio is decoded to; None without one (the file's own rate: encoding then refuses the audio)."""
    encoders = pipeline.model.encoders
    return getattr(encoders["audio"], "sample_rate", None) if "audio" in encoders else None


def _cut_recording(pipeline: ModRWKVPipeline, parsed: transcriptions.TranscriptionRequest,
                   limits: ServerLimits) -> tuple[list[Any], list[SpeechSegment], float]:
    """An upload decoded (within --max-transcription-seconds) and cut at its pauses (runs in a worker thread)."""
    name = f"the file {parsed.filename!r}"
    waveform = check_audio(parsed.audio, name, limits.max_transcription_seconds, "--max-transcription-seconds",
                           param="file", sample_rate=SEGMENT_SAMPLE_RATE)  # the rate its pauses are found at
    try:
        return pipeline.transcription_clips(waveform, SegmentSettings())
    except ValueError as exc:  # MediaError included
        raise APIError(400, f"{name} cannot be transcribed: {exc}", code="bad_audio", param="file") from None


def _segment_prompts(pipeline: ModRWKVPipeline, clips: Sequence[Any], limits: ServerLimits) -> list[EncodedPrompt]:
    """Each segment's prompt (runs in a worker thread: the audio is preprocessed here)."""
    prompts = [pipeline.transcription_prompt(clip) for clip in clips]
    for prompt in prompts:
        if len(prompt) > limits.max_prompt_tokens:
            raise APIError(400, f"a segment's prompt has {len(prompt)} tokens (its audio included); this server "
                           f"accepts at most {limits.max_prompt_tokens}", code="context_length_exceeded", param="file")
    return prompts


async def _submit_first_window(scheduler: Scheduler, pipeline: ModRWKVPipeline, clips: Sequence[Any],
                               params: SamplingParams, limits: ServerLimits,
                               preparing: anyio.CapacityLimiter) -> list[Ticket]:
    """A recording's first window of segments, prepared and queued all or none before the reply
    starts, so that a full queue (429) or a refused segment is the reply's status, streamed or not."""
    prompts = await anyio.to_thread.run_sync(_segment_prompts, pipeline, clips[: scheduler.max_batch], limits,
                                             limiter=preparing)
    return _submit_all(scheduler, [(prompt, params) for prompt in prompts])


async def _transcribe_in_order(scheduler: Scheduler, pipeline: ModRWKVPipeline, clips: Sequence[Any],
                               params: SamplingParams, request: Request, limits: ServerLimits,
                               preparing: anyio.CapacityLimiter, tickets: list[Ticket]) -> AsyncIterator[GenerationResult]:
    """The replies to a recording's segments, in order, each as soon as it and all before it are done.
    Segments are submitted together, up to max_batch at a time (a long recording's hundreds of
    segments would otherwise fill the queue that other requests wait in): `tickets` are the first
    window's (`_submit_first_window`); the next window's audio is prepared once the previous one is
    done, and waits for room in the queue instead of being refused: the request was admitted, and a
    429 then would throw away the windows already transcribed."""
    first = 0
    while True:
        try:
            finished: dict[int, GenerationResult] = {}
            following = 0
            async for index, kind, value in _events(tickets, request):
                if kind == "error":
                    raise _failure(value)
                if kind == "done":
                    finished[index] = value
                    while following in finished:
                        yield finished.pop(following)
                        following += 1
            if following < len(tickets):
                raise APIError(499, "the client closed the request")
        finally:
            for ticket in tickets:
                ticket.cancel()  # no-op once done
        first += scheduler.max_batch
        if first >= len(clips):
            return
        prompts = await anyio.to_thread.run_sync(_segment_prompts, pipeline, clips[first : first + scheduler.max_batch],
                                                 limits, limiter=preparing)
        tickets = await _submit_when_room(scheduler, [(prompt, params) for prompt in prompts], request)


def _transcription_usage(results: Sequence[GenerationResult]) -> dict[str, Any]:
    """OpenAI's token usage object of a transcription (its gpt-4o-transcribe form): every segment's
    prompt (audio positions included) and reply."""
    prompt = sum(result.prompt_tokens for result in results)
    reply = sum(result.completion_tokens for result in results)
    return {"type": "tokens", "input_tokens": prompt, "output_tokens": reply, "total_tokens": prompt + reply}


async def _stream_transcript(replies: AsyncIterator[GenerationResult], segments: Sequence[SpeechSegment],
                             duration: float, observer: _Observer) -> AsyncIterator[str]:
    """OpenAI's streamed transcription events: a `transcript.text.delta` per segment with text, in
    order, as it finishes (the space that joins it to the text before included, so the deltas add up
    to the text), then `transcript.text.done` with the whole text and the usage."""
    results: list[GenerationResult] = []
    separator = ""  # a space once some segment had text
    try:
        async for result in replies:
            results.append(result)
            observer.done(result)
            text = result.text.strip()
            if text:
                observer.text()
                delta, separator = separator + text, " "
                yield f"data: {json.dumps({'type': 'transcript.text.delta', 'delta': delta}, ensure_ascii=False)}\n\n"
    except APIError as exc:
        yield f"data: {json.dumps(exc.body())}\n\n"
        return
    transcription = transcription_of(segments, results, duration)
    done = {"type": "transcript.text.done", "text": transcription.text, "usage": _transcription_usage(results)}
    yield f"data: {json.dumps(done, ensure_ascii=False)}\n\n"


def _queue_full() -> APIError:
    # Retry-After: a slot frees as soon as any running request ends; OpenAI's clients retry a 429 after it
    return APIError(429, "the server is busy: too many requests are waiting; retry later", type="rate_limit_error",
                    code="queue_full", retry_after=1)


def _failure(exc: BaseException) -> APIError:
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, ValueError):
        return APIError(400, str(exc))
    return _internal_error(exc)


def _internal_error(exc: BaseException) -> APIError:
    """A server fault as the client sees it: the kind of error, never its text (which can carry file
    paths and internals); the server's log has the traceback."""
    return APIError(500, f"internal server error ({type(exc).__name__}); the server log has the details",
                    type="server_error")


async def _events(tickets: Sequence[Ticket], request: Request) -> AsyncIterator[tuple[int, str, Any]]:
    """(ticket index, kind, value): the tickets' events as they come, until each ticket is done or has
    failed, or the client disconnects (checked every DISCONNECT_POLL_SECONDS, also while events keep
    coming, since a stream that is being written never times out)."""
    loop = asyncio.get_running_loop()
    checked = loop.time()
    waiting = {asyncio.ensure_future(ticket.events.get()): index for index, ticket in enumerate(tickets)}
    try:
        while waiting:
            done, _ = await asyncio.wait(waiting, timeout=DISCONNECT_POLL_SECONDS, return_when=asyncio.FIRST_COMPLETED)
            if loop.time() - checked >= DISCONNECT_POLL_SECONDS:
                checked = loop.time()
                if await request.is_disconnected():
                    return
            for future in sorted(done, key=waiting.__getitem__):
                index = waiting.pop(future)
                kind, value = future.result()
                yield index, kind, value
                if kind not in ("done", "error"):
                    waiting[asyncio.ensure_future(tickets[index].events.get())] = index
    finally:
        for future in waiting:
            future.cancel()


async def _wait_for_results(tickets: Sequence[Ticket], request: Request) -> list[GenerationResult]:
    """Every ticket's result, in order. The tickets are awaited together, so the first failure is
    answered at once; then, or when the client leaves or the handler is cancelled, every ticket is
    cancelled (their slots freed: a failed request's other choices decode for nobody)."""
    results: dict[int, GenerationResult] = {}
    try:
        async for index, kind, value in _events(tickets, request):
            if kind == "error":
                raise _failure(value)
            if kind == "done":
                results[index] = value
        if len(results) < len(tickets):
            raise APIError(499, "the client closed the request")
        return [results[index] for index in range(len(tickets))]
    finally:
        for ticket in tickets:
            ticket.cancel()  # no-op once done


def _submit_all(scheduler: Scheduler, jobs: Sequence[tuple[EncodedPrompt, SamplingParams | None]],
                **options: Any) -> list[Ticket]:
    """Queues one decode per (prompt, params), all or none: when the queue fills part way, those
    already queued are cancelled and the request is refused (429). More than the server can ever hold
    at once is a 400: waiting would never help."""
    room = scheduler.max_batch + scheduler.max_queue
    if len(jobs) > room:
        raise APIError(400, f"this request needs {len(jobs)} decodes (one per choice and prompt); this server runs "
                       f"and queues at most {room} at once (its operator sets --max-batch-size and --max-queue); "
                       "ask for fewer choices ('n') or prompts", code="too_many_choices", param="n")
    tickets: list[Ticket] = []
    try:
        for prompt, params in jobs:
            tickets.append(scheduler.submit(prompt, params, **options))
    except QueueFull:
        for ticket in tickets:
            ticket.cancel()
        raise _queue_full() from None
    return tickets


async def _submit_when_room(scheduler: Scheduler, jobs: Sequence[tuple[EncodedPrompt, SamplingParams]],
                            request: Request) -> list[Ticket]:
    """Queues one decode per job, each as soon as the queue has room for it (tried every
    QUEUE_RETRY_SECONDS while the client is still there); those queued are cancelled if it leaves."""
    tickets: list[Ticket] = []
    try:
        for prompt, params in jobs:
            while True:
                try:
                    tickets.append(scheduler.submit(prompt, params))
                    break
                except QueueFull:
                    if await request.is_disconnected():
                        raise APIError(499, "the client closed the request") from None
                    await asyncio.sleep(QUEUE_RETRY_SECONDS)
    except BaseException:  # the client left (or the stream was closed) while this waited
        for ticket in tickets:
            ticket.cancel()
        raise
    return tickets


def _unsent_logprobs(ticket: Ticket, result: GenerationResult) -> list[completions.TokenLogprob] | None:
    """The scores of a finished streamed reply's tokens that no text chunk carried (a stop token or
    stop string); None when there are none or none were asked for."""
    return completions.generated_logprobs(result, ticket.scored_tokens) or None


async def _stream_events(tickets: Sequence[Ticket], request: Request, request_id: str, created: int, model: str,
                         include_usage: bool, observer: _Observer, tokenizer: WorldTokenizer) -> AsyncIterator[str]:
    """chat.completion.chunk SSE events, one choice per ticket (`index`), interleaved as they are
    decoded. With logprobs, each chunk carries the logprobs object of its tokens, and a choice's last
    chunk those of tokens whose text never came out (a stop token or stop string), so the chunks
    together hold what a non-streamed reply holds. The usage chunk comes after every choice is done."""
    try:
        for index in range(len(tickets)):
            yield protocol.chunk(request_id, created, model, {"role": "assistant", "content": "", "refusal": None}, index=index)
        finished: dict[int, GenerationResult] = {}
        async for index, kind, value in _events(tickets, request):
            if kind == "text":
                piece, scored = value
                observer.text()
                yield protocol.chunk(request_id, created, model, {"content": piece}, index=index,
                                     logprobs=completions.chat_logprobs(tokenizer, scored))
            elif kind == "error":
                yield f"data: {json.dumps(_failure(value).body())}\n\n"
                return
            elif kind == "done":
                observer.done(value, count_prompt=not finished)
                finished[index] = value
                yield protocol.chunk(request_id, created, model, {}, value.finish_reason, index=index,
                                     logprobs=completions.chat_logprobs(tokenizer,
                                                                        _unsent_logprobs(tickets[index], value)))
                if len(finished) == len(tickets):
                    if include_usage:
                        yield protocol.chunk(request_id, created, model, {},
                                             usage_block=protocol.usage([finished[i] for i in range(len(tickets))]))
                    yield protocol.DONE
                    return
        log.info("%s: client disconnected mid-stream", request_id)
    finally:
        for ticket in tickets:
            ticket.cancel()
