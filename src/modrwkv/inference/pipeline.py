"""`ModRWKVPipeline`: chat with a ModRWKV (or plain RWKV-7) model from Python in one call.

    pipe = ModRWKVPipeline.from_pretrained("my-modrwkv")
    pipe.chat("What is in the picture?", images=["cat.jpg"], temperature=0)
    pipe.chat("What happens first?", videos=["clip.mp4"])   # frames as images: docs/custom-data.md
    for piece in pipe.chat_stream([{"role": "user", "content": "Tell me more"}]): print(piece, end="")
    session = pipe.session(system="You are terse.")   # multi-turn, constant memory

The pipeline owns the model, the tokenizer, the processor (template and token counts) and a
prefix-state cache, so that repeated questions about the same media skip re-reading them.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike

from ..constants import DEFAULT_TRANSCRIPT_TOKENS
from ..data.readers.series import (
    FORECAST_DECIMALS,
    FORECAST_MAX_DIGITS,
    cut_forecast,
    format_forecast,
    read_forecast,
    series_prompt_problem,
    series_prompt_template,
    series_user_turn,
)
from ..data.sample import Sample
from ..encoders import build_encoder
from ..encoders.base import ModalityEncoder
from ..generation import GenerationResult, NumberListConstraint, SamplingParams, TextStream
from ..lm import RWKV7State, load_model
from ..lm.checkpoint import load_state_dict, resolve_checkpoint
from ..multimodal import CachedEncoder, ModRWKV
from ..multimodal.model import is_modrwkv_folder
from ..multimodal.released import PromptFormat, is_released
from ..processing import get_template
from ..processing.speech_segments import SegmentSettings, SpeechSegment, speech_segments
from ..tokenizer import WorldTokenizer
from .cache import PrefixStateCache
from .engine import InferenceEngine, Row
from .prompt import EncodedPrompt, Messages, build_sample, encode_sample
from .session import ChatSession

log = logging.getLogger(__name__)

DEFAULT_PREFIX_CACHE_BYTES = 256 * 2**20
SEGMENT_SAMPLE_RATE = 16000
# transcribe_batch decodes this many clips or segments at a time: each row in a batch holds its
# prompt's media and a recurrent state, so an hour cut into ~1000 segments decoded at once held
# gigabytes (5 min, 120 segments: +560 MB on the tiny test model)
TRANSCRIBE_ROWS = 32


@dataclasses.dataclass
class ChatRequest:
    """One conversation for `generate_batch`; `sampling` holds `SamplingParams` fields and
    `constraint` (one per request) limits the reply's tokens."""

    messages: Messages
    images: Any = None
    audio: Any = None
    series: Any = None
    videos: Any = None
    sampling: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    constraint: NumberListConstraint | None = None


@dataclasses.dataclass
class SeriesForecast:
    """A forecast in the units of the series it continues.

    `values` is [horizon] ([horizon, channels] for a multivariate window); `text` is the model's
    reply, the forecast on the window's normalised scale in `format_forecast`'s form; `complete`
    says the reply was exactly the horizon's numbers (always, unless `max_new_tokens` cut it short:
    then the numbers read are padded with the last one); `prompt` is the user turn the model was
    asked (`series_user_turn`), for the record; `source` is "model" for a decoded forecast and
    "baseline" for the series encoder's baseline alone (a reply of zeros, not decoded: a model whose
    training could not show on val that its corrections beat it, `ModRWKV.series_baseline_only`).
    """

    values: np.ndarray
    text: str
    complete: bool
    prompt: str
    source: str = "model"


def baseline_forecast(encoder: ModalityEncoder, window: ArrayLike, horizon: int) -> np.ndarray:
    """[horizon, channels]: what a reply of zeros forecasts for `window` ([T] or [T, channels]) in its
    own units: the series encoder's baseline (seasonal naive + drift + ridge, as configured) mapped back
    with the window's mean and scale; the window's mean without a baseline."""
    extras = encoder.prepare(window).extras
    channels = 1 if np.ndim(window) == 1 else int(np.shape(window)[1])
    return encoder.denormalize(torch.zeros(horizon, channels, dtype=torch.float64), extras).numpy()


@dataclasses.dataclass
class TranscribedSegment:
    """One stretch of a recording (seconds from its start) and the model's transcript of it; `forced`:
    the stretch ends at a quietest-point cut, not at a pause (`SpeechSegment`)."""

    start: float
    end: float
    text: str
    finish_reason: str
    forced: bool = False
    token_ids: list[int] = dataclasses.field(default_factory=list)  # the reply's tokens (verbose_json's `tokens`)
    # Whisper's avg_logprob: see `average_logprob`; None when not measured
    avg_logprob: float | None = None


def average_logprob(result: GenerationResult) -> float | None:
    """Whisper's avg_logprob of a reply decoded with `ModRWKVPipeline.transcription_params`: the sum of
    its tokens' log-probabilities (under the distribution they were drawn from, before temperature) over
    its text tokens plus one, as Whisper's decoder divides it (openai-whisper's decoding.py). A reply
    ended by its stop token counts that token as Whisper counts its end token, so this is the mean over
    `token_ids`; one cut at the token budget has no end token and is still divided by one more. None
    for a reply decoded without log-probabilities."""
    if not result.logprobs:
        return None
    return math.fsum(result.logprobs) / (len(result.logprobs) + (result.finish_reason == "length"))


@dataclasses.dataclass
class Transcription:
    """A recording's transcript: the segments' texts joined by spaces; `segments` holds each with its
    times (one segment, the whole clip, without long-form); `finish_reason` is "length" when any
    segment's reply stopped at max_new_tokens; `duration`: the recording's length in seconds."""

    text: str
    segments: list[TranscribedSegment]
    finish_reason: str
    duration: float


def transcription_of(segments: Sequence[SpeechSegment], results: Sequence[GenerationResult],
                     duration: float) -> Transcription:
    """A recording's `Transcription` from its segments and the replies to them, in order: the texts
    stripped and joined by spaces (empty ones left out). The replies carry their tokens' log-probabilities
    (decoded with `ModRWKVPipeline.transcription_params`)."""
    done = [TranscribedSegment(s.start, s.end, r.text.strip(), r.finish_reason, s.forced, list(r.token_ids),
                               average_logprob(r))
            for s, r in zip(segments, results, strict=True)]
    return Transcription(" ".join(d.text for d in done if d.text), done,
                         "length" if any(d.finish_reason == "length" for d in done) else "stop", duration)


class ModRWKVPipeline:
    """Chat, streaming, batched generation and sessions over one model."""

    def __init__(
        self,
        model: ModRWKV,
        tokenizer: WorldTokenizer | None = None,
        *,
        template: str | None = None,
        prefix_cache_bytes: int = DEFAULT_PREFIX_CACHE_BYTES,
    ) -> None:
        """`template` overrides the model's chat template (see `processing.TEMPLATES`);
        `prefix_cache_bytes=0` turns the prefix-state cache off."""
        self.model = model.eval()
        self.tokenizer = tokenizer or model.tokenizer()
        if model.lm.config.vocab_size < self.tokenizer.vocab_size:
            raise ValueError(
                f"the model has {model.lm.config.vocab_size} token rows but the World tokenizer needs "
                f"{self.tokenizer.vocab_size}"
            )
        # Inference never truncates: an RNN reads any length; limits belong to the caller (the server).
        self.processor = model.processor(self.tokenizer, ctx_len=None)
        if template is not None:
            self.processor.template = get_template(template)
        self.template = self.processor.template
        self.cache = PrefixStateCache(prefix_cache_bytes)
        self.engine = InferenceEngine(model, self.tokenizer, self.template.content_prefix, self.cache)
        self._said_budget_cut = False  # chat() warns of the first reply cut by max_new_tokens, then logs at debug
        self._said_baseline_only = False  # forecast_batch warns once that it returns the baseline alone

    # ------------------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        encoder: ModalityEncoder | str | None = None,
        encoder_source: str | None = None,
        template: str | None = None,
        prompt_format: PromptFormat = "auto",
        device: torch.device | str = "cpu",
        dtype: torch.dtype | str = torch.float32,
        prefix_cache_bytes: int = DEFAULT_PREFIX_CACHE_BYTES,
        feature_cache: str | Path | None = None,
        initial_state: str | Path | None = None,
    ) -> ModRWKVPipeline:
        """`feature_cache`: a folder where the frozen encoders' features are kept (the training
        feature cache's format, so features computed in training are reused). `initial_state`: a
        state file (state tuning's state.safetensors) to start every conversation from, instead of
        the model's own (see `load_initial_state`).

        Loads a ModRWKV folder (`save_pretrained`), a plain RWKV-7 checkpoint (official `.pth`,
        `.safetensors`, fla or modrwkv LM folder: text-only chat, "classic" template unless told),
        or the authors' released single-file ModRWKV checkpoint, whose encoder is not in the file:
        pass `encoder` (a built encoder, or a registry name such as "siglip2" with
        `encoder_source`, an HF id or folder). A release's prompt layout (current or paper era) is
        read from its keys; `prompt_format` ("current" / "paper") overrides it. `dtype`: a torch dtype or a precision name, "fp32", "bf16", "fp16" or "int8"
        (weight-only int8 matrices; see `modrwkv.lm.resolve_dtype`). ``path`` may be a hub id
        ``org/name[@revision]``."""
        from ..hub import resolve_model_path

        path = resolve_model_path(path)
        if encoder is None and encoder_source is not None:
            raise ValueError("encoder_source needs encoder=NAME (e.g. 'siglip2')")
        if is_modrwkv_folder(path):
            if encoder is not None:
                raise ValueError(f"{path} is a ModRWKV folder with its own encoders; leave out --encoder (Python: encoder=)")
            model = ModRWKV.from_pretrained(path, device=device, dtype=dtype)
        elif encoder is not None:
            # A mistyped checkpoint path fails here, before the encoder is built (which may reach the hub).
            path = resolve_checkpoint(path)
            if not isinstance(encoder, ModalityEncoder):
                encoder = build_encoder(encoder, source=encoder_source)
            model = ModRWKV.from_released_checkpoint(path, encoder, prompt_format=prompt_format, device=device,
                                                     dtype=dtype)
        else:
            if path.is_file() and is_released(set(load_state_dict(path))):
                raise ValueError(
                    f"{path} is a released ModRWKV checkpoint (it holds adapter weights); its encoder is not in the "
                    "file: name it, e.g. --encoder siglip2 --encoder-source google/siglip2-base-patch16-384 (Python: "
                    "encoder='siglip2', encoder_source='google/siglip2-base-patch16-384')"
                )
            lm = load_model(path, device=device, dtype=dtype)
            model = ModRWKV(lm, {}, {}, template="classic", ctx_len=None)
        if feature_cache is not None:
            for modality, inner in list(model.encoders.items()):
                if not inner.trainable and not isinstance(inner, CachedEncoder):
                    model.encoders[modality] = CachedEncoder(inner, Path(feature_cache) / modality)
        log.info("loaded %s (template %s, encoders %s)", path, template or model.template_name, sorted(model.encoders))
        pipeline = cls(model, template=template, prefix_cache_bytes=prefix_cache_bytes)
        if initial_state is not None:
            pipeline.load_initial_state(initial_state)
        return pipeline

    def load_initial_state(self, path: str | Path | None) -> None:
        """Starts every conversation from the initial state in `path` (a state-tuned model's
        state.safetensors), or from zeros with None: states are swapped on one base model. Cached
        prefix states, read from the previous initial state, are dropped. Raises ValueError naming
        both shapes when the state belongs to another model."""
        if path is None:
            self.model.lm.set_initial_state(None)
        else:
            self.model.lm.load_initial_state(path)
        self.cache.clear()

    # ------------------------------------------------------------------------------ prompts

    def sampling_params(self, **sampling: Any) -> SamplingParams:
        """`SamplingParams` from keyword fields, with the template's stop tokens and strings added
        (a reply ends where the chat format ends a turn)."""
        known = [field.name for field in dataclasses.fields(SamplingParams)]
        for name in sampling:
            if name not in known:
                # chat's media arguments too: a misspelt one (`audios=`) arrives here among the sampling options
                close = (difflib.get_close_matches(name, [*known, "images", "audio", "series", "videos"], n=1)
                         or (["max_new_tokens"] if "tokens" in name else []))
                raise ValueError(f"unknown sampling option {name!r}" + (f" (did you mean {close[0]!r}?)" if close
                                                                         else f"; the options: {known}"))
        params = SamplingParams(**sampling)
        return dataclasses.replace(
            params,
            stop_tokens=tuple(dict.fromkeys((*params.stop_tokens, *self.template.stop_token_ids))),
            stop_strings=tuple(dict.fromkeys((*params.stop_strings, *self.template.stop_strings))),
        )

    def encode(
        self,
        messages: Messages | Sample,
        *,
        images: Any = None,
        audio: Any = None,
        series: Any = None,
        videos: Any = None,
        add_generation_prompt: bool = True,
    ) -> EncodedPrompt:
        """The prompt ids and media of a conversation (see `build_sample` for accepted forms)."""
        if isinstance(messages, Sample):
            if images is not None or audio is not None or series is not None or videos is not None:
                raise ValueError("a Sample carries its own media; do not pass images=/audio=/series=/videos=")
            sample = messages
        else:
            sample = build_sample(messages, images=images, audio=audio, series=series, videos=videos,
                                  media_layout=self.processor.media_layout)
        return encode_sample(self.processor, sample, add_generation_prompt)

    # ------------------------------------------------------------------------------ generation

    def chat(self, messages: Messages, *, images: Any = None, audio: Any = None, series: Any = None,
             videos: Any = None, **sampling: Any) -> str:
        """The assistant's reply to a conversation. `sampling`: `SamplingParams` fields, e.g.
        `temperature=0` (greedy), `max_new_tokens`, `top_p`, `seed`, `stop_strings`."""
        stream = self.chat_stream(messages, images=images, audio=audio, series=series, videos=videos, **sampling)
        for _ in stream:
            pass
        if stream.result.finish_reason == "length":  # chat returns text only, so the cut must be said here
            # once as a warning: a harness asking for one-word answers cuts most replies, on purpose
            log.log(logging.DEBUG if self._said_budget_cut else logging.WARNING,
                    "the reply stopped at max_new_tokens=%d (e.g. the transcript of a long recording); pass a "
                    "larger max_new_tokens for a longer one%s", len(stream.result.token_ids),
                    "" if self._said_budget_cut else " (later cut replies are logged at debug level)")
            self._said_budget_cut = True
        return stream.result.text

    def chat_stream(self, messages: Messages, *, images: Any = None, audio: Any = None, series: Any = None,
                    videos: Any = None, **sampling: Any) -> TextStream[GenerationResult]:
        """Like `chat`, but yields the reply's text as it is generated; `.result` afterwards holds
        the `GenerationResult` (ids, finish reason, token counts). Inputs are checked at once."""
        params = self.sampling_params(**sampling)  # first: a misspelt media argument is named, not its <audio> marker
        prompt = self.encode(messages, images=images, audio=audio, series=series, videos=videos)
        return TextStream(self.run(prompt, params))

    def run(
        self, prompt: EncodedPrompt, params: SamplingParams, state: RWKV7State | None = None, keep_state: bool = False
    ) -> Generator[str, None, GenerationResult]:
        """Generates one reply to an encoded prompt, from `state` or the initial state (then using the prefix
        cache); yields text pieces, returns the `GenerationResult` (with its final state if `keep_state`)."""
        row = Row(self.engine, prompt, params, keep_state=keep_state)
        batch = self.engine.batch()
        self.engine.admit(batch, row, self.engine.prefill(prompt, state))
        while batch.rows:
            pieces, _ = batch.step()
            for _, piece in pieces:
                yield piece
        assert row.result is not None
        return row.result

    def generate_batch(self, requests: Sequence[ChatRequest | Mapping[str, Any]]) -> list[GenerationResult]:
        """Replies to several conversations, decoded together in one batch (each with its own
        state and sampling); a request is a `ChatRequest` or a dict of its fields."""
        if isinstance(requests, (str, Mapping)) or not requests:
            raise ValueError("requests must be a non-empty list of ChatRequest or dicts")
        prepared = []
        for index, request in enumerate(requests):
            if isinstance(request, Mapping):
                unknown = set(request) - {f.name for f in dataclasses.fields(ChatRequest)}
                if unknown:
                    raise ValueError(f"requests[{index}] has unknown field(s) {sorted(unknown)}")
                request = ChatRequest(**request)
            prompt = self.encode(request.messages, images=request.images, audio=request.audio, series=request.series,
                                 videos=request.videos)
            prepared.append((prompt, self.sampling_params(**request.sampling), request.constraint))
        return self._decode(prepared)

    def _decode(
        self, prepared: Sequence[tuple[EncodedPrompt, SamplingParams, NumberListConstraint | None]]
    ) -> list[GenerationResult]:
        batch = self.engine.batch()
        rows = [Row(self.engine, prompt, params, constraint=constraint) for prompt, params, constraint in prepared]
        for row in rows:
            self.engine.admit(batch, row, self.engine.prefill(row.prompt))
        while batch.rows:
            batch.step()
        return [row.result for row in rows if row.result is not None]

    def transcribe(self, audio: Any, *, long_form: bool | SegmentSettings = False, user_turn: str | None = None,
                   max_new_tokens: int = DEFAULT_TRANSCRIPT_TOKENS) -> Transcription:
        """The transcript of one recording (a path, bytes, a `(waveform, sample_rate)` tuple; see
        `transcribe_batch`)."""
        return self.transcribe_batch([audio], long_form=long_form, user_turn=user_turn,
                                     max_new_tokens=max_new_tokens)[0]

    def transcribe_batch(self, audio: Sequence[Any], *, long_form: bool | SegmentSettings = False,
                         user_turn: str | None = None, max_new_tokens: int = DEFAULT_TRANSCRIPT_TOKENS) -> list[Transcription]:
        """Transcripts of several recordings, decoded greedily together.

        Each recording is asked whole by default. `long_form=True` (or a `SegmentSettings`) cuts it
        at its pauses into segments no longer than `max_segment_seconds` (`speech_segments`), asks
        about each segment from a fresh state (the segments of all recordings decoded together,
        `TRANSCRIBE_ROWS` at a time) and joins the texts, as long-form ASR systems do: for a model
        trained on clips much shorter than the recording. `user_turn` is what each clip or segment is asked with, holding one <audio> marker
        (default: the model's recorded ASR prompt after the audio, as training asked it);
        `max_new_tokens` bounds each reply."""
        if isinstance(audio, (str, bytes, Path, tuple, Mapping)) or not isinstance(audio, Sequence) or not audio:
            raise ValueError("transcribe_batch takes a non-empty list of recordings (use transcribe for one)")
        if isinstance(long_form, SegmentSettings):
            settings: SegmentSettings | None = long_form
        elif isinstance(long_form, bool):
            settings = SegmentSettings() if long_form else None
        else:
            raise ValueError(f"long_form must be True, False or a SegmentSettings, got {long_form!r}")
        params = self.transcription_params(temperature=0.0, max_new_tokens=max_new_tokens)
        clips, spans, durations = [], [], []  # spans[i]: recording i's segments
        for item in audio:
            pieces, segments, duration = self.transcription_clips(item, settings)
            clips.extend(pieces)
            spans.append(segments)
            durations.append(duration)
        decoded: list[GenerationResult] = []
        for first in range(0, len(clips), TRANSCRIBE_ROWS):
            decoded.extend(self._decode([(self.transcription_prompt(clip, user_turn), params, None)
                                         for clip in clips[first : first + TRANSCRIBE_ROWS]]))
        transcripts, used = [], 0
        for segments, duration in zip(spans, durations):
            transcripts.append(transcription_of(segments, decoded[used : used + len(segments)], duration))
            used += len(segments)
        return transcripts

    def transcription_params(self, temperature: float, max_new_tokens: int) -> SamplingParams:
        """The sampling settings a transcript's segments are decoded with: the template's stop tokens,
        and each token's log-probability kept (verbose_json's avg_logprob)."""
        return self.sampling_params(temperature=temperature, max_new_tokens=max_new_tokens, logprobs=True)

    def transcription_clips(self, item: Any, settings: SegmentSettings | None) -> tuple[list[Any], list[SpeechSegment], float]:
        """One recording as the clips `transcribe_batch` asks about: (clips, their segments, the
        recording's seconds). Without `settings`, the whole item as one segment; with them, cut at its
        pauses (`speech_segments`) into 16 kHz (waveform, rate) pieces, none for a silent recording.
        The server's /v1/audio/transcriptions cuts its uploads here too."""
        from ..encoders.media import audio_seconds, load_audio

        if "audio" not in self.model.encoders:
            raise ValueError(f"this model has no audio encoder (it has {sorted(self.model.encoders)})")
        if settings is None:
            duration = round(audio_seconds(item), 3)
            return [item], [SpeechSegment(0.0, duration)], duration
        # cut at 16 kHz (the encoders' rate; another one resamples the pieces as it would the whole)
        wave = load_audio(item, SEGMENT_SAMPLE_RATE)
        segments = speech_segments(wave, SEGMENT_SAMPLE_RATE, settings)
        clips = [(wave[round(s.start * SEGMENT_SAMPLE_RATE) : round(s.end * SEGMENT_SAMPLE_RATE)], SEGMENT_SAMPLE_RATE)
                 for s in segments]
        return clips, segments, round(len(wave) / SEGMENT_SAMPLE_RATE, 3)

    def transcription_prompt(self, clip: Any, user_turn: str | None = None) -> EncodedPrompt:
        """The prompt a clip or segment is transcribed with: `user_turn` (one <audio> marker), by default
        the model's recorded ASR prompt after the audio, as training asked it."""
        from ..data.readers.asr import asr_user_turn

        return self.encode(asr_user_turn(self.model.asked_asr_prompt) if user_turn is None else user_turn, audio=[clip])

    def forecast(self, series: ArrayLike, horizon: int, *, prompt: str | None = None,
                 max_new_tokens: int | None = None, samples: int = 1, force_model: bool = False) -> SeriesForecast:
        """The next `horizon` steps of a series [T] or [T, channels], in its own units (see
        `forecast_batch`)."""
        return self.forecast_batch([series], horizon, prompt=prompt, max_new_tokens=max_new_tokens,
                                   samples=samples, force_model=force_model)[0]

    def forecast_batch(self, windows: Sequence[ArrayLike], horizon: int, *, prompt: str | None = None,
                       max_new_tokens: int | None = None, samples: int = 1,
                       force_model: bool = False) -> list[SeriesForecast]:
        """Forecasts of several look-back windows, decoded together.

        The model reads each window normalised with its own statistics and writes the normalised
        future (as the time-series reader trains it to), decoding constrained to exactly
        `horizon` numbers per channel; the numbers are then mapped back with the window's mean and
        scale, so a forecast moves with its input (`3x + 5` -> `3 forecast(x) + 5`). The model is
        asked with the prompt template it was trained with (`model.series_prompt`, recorded by
        training; a model that records none, the reader's default); `prompt` asks with another
        template, which may use {horizon} and {channels}.

        A model trained on windows (`model.series_lookback`, recorded by training) reads the last
        that many steps of each series; a shorter series is a ValueError naming both lengths.

        `samples` = 1 decodes greedily. Greedy decoding picks the likeliest token at each step,
        which for a number written digit by digit is not its likeliest value: "-1" followed by the
        end of the number beats any one of "-10" ... "-19", so replies drift towards short numbers.
        With `samples` = N > 1 each window is decoded N times from the model's own distribution
        (temperature 1, seeds 0 .. N-1, so the result is reproducible) and the forecast is the
        step-wise median of the N decoded forecasts (robust to a sampled digit slip); `text` then
        holds the N replies separated by blank lines. N times the decoding work.

        A model saved with `series_baseline_only` (training's validation could not show that its
        corrections beat a reply of zeros; docs/forecasting.md, "Shipping the baseline when validation
        cannot tell") returns the series encoder's baseline alone, without decoding: `source`
        "baseline", `text` the reply of zeros. `force_model=True` decodes the model anyway (analysis).
        """
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        if "series" not in self.model.encoders:
            raise ValueError(f"this model has no series encoder (it has {sorted(self.model.encoders)})")
        encoder = self.model.encoders["series"]
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        problem = series_prompt_problem(prompt)
        if problem:
            raise ValueError(f"prompt: {problem}")
        template = prompt if prompt is not None else self.model.series_prompt
        if self.model.series_baseline_only and not force_model:
            if not self._said_baseline_only:
                log.warning("this model forecasts with its baseline alone, not decoded: its training could not show "
                            "on the val rows that its corrections beat it (series_baseline_only in its config.json; "
                            "force_model=True, or `modrwkv eval --force-model`, decodes it anyway)")
                self._said_baseline_only = True
            return [self._baseline_forecast(window, horizon, template) for window in windows]
        prepared, shapes = [], []
        for window in windows:
            window = self._trained_lookback(window)
            multivariate = np.ndim(window) == 2
            channels = int(np.shape(window)[1]) if multivariate else 1
            user_turn = series_user_turn(series_prompt_template(template, multivariate), horizon, channels)
            encoded = self.encode(user_turn, series=[window])
            for seed in range(samples):
                constraint = NumberListConstraint(  # one per row: it follows that row's reply
                    self.tokenizer.token_bytes, self.model.lm.config.vocab_size, count=horizon * channels,
                    per_line=channels if multivariate else 0, max_digits=FORECAST_MAX_DIGITS,
                    prefix=self.template.content_prefix, end_tokens=self.template.stop_token_ids)
                greedy = {"temperature": 0.0} if samples == 1 else {"temperature": 1.0, "seed": seed}
                params = self.sampling_params(**greedy, max_new_tokens=max_new_tokens or constraint.max_tokens)
                prepared.append((encoded, params, constraint))
            extras = next(s.prepared.extras for s in encoded.spans if s.modality == "series")
            shapes.append((channels if multivariate else None, extras, user_turn))
        decoded = []
        for index, result in enumerate(self._decode(prepared)):
            channels, extras, user_turn = shapes[index // samples]
            text = cut_forecast(result.text, horizon * (channels or 1))
            normalised, complete = read_forecast(text, horizon, channels, FORECAST_DECIMALS)
            values = encoder.denormalize(torch.from_numpy(normalised.reshape(horizon, channels or 1)), extras)
            decoded.append(SeriesForecast(values.numpy().reshape(normalised.shape), text, complete, user_turn))
        return [
            SeriesForecast(np.median([d.values for d in draws], axis=0), "\n\n".join(d.text for d in draws),
                           all(d.complete for d in draws), draws[0].prompt) if samples > 1 else draws[0]
            for draws in (decoded[i : i + samples] for i in range(0, len(decoded), samples))
        ]

    def _baseline_forecast(self, window: ArrayLike, horizon: int, template: str | None) -> SeriesForecast:
        """The forecast a reply of zeros gives (the series encoder's baseline alone), as `forecast_batch`
        returns it, for a model saved with `series_baseline_only`."""
        window = self._trained_lookback(window)
        multivariate = np.ndim(window) == 2
        channels = int(np.shape(window)[1]) if multivariate else 1
        zeros = np.zeros((horizon, channels) if multivariate else horizon)
        values = baseline_forecast(self.model.encoders["series"], window, horizon)
        user_turn = series_user_turn(series_prompt_template(template, multivariate), horizon, channels)
        return SeriesForecast(values if multivariate else values[:, 0], format_forecast(zeros), True, user_turn,
                              source="baseline")

    def _trained_lookback(self, window: ArrayLike) -> ArrayLike:
        """The window as the model was trained to read it: its last `series_lookback` steps. A
        shorter one is refused: the model never saw one, and its forecasts degrade without a sign
        (docs/forecasting.md, "Look-back length")."""
        lookback = self.model.series_lookback
        steps = len(window)
        if lookback is None or steps == lookback:
            return window
        if steps < lookback:
            raise ValueError(f"the series has {steps} steps but this model was trained to forecast from a look-back "
                             f"of {lookback}: give at least the last {lookback} steps")
        return window[-lookback:]

    def session(self, system: str | None = None, **sampling: Any) -> ChatSession:
        """A multi-turn conversation that carries the RNN state between turns; `sampling` sets the
        defaults of its turns."""
        return ChatSession(self, system=system, **sampling)
