"""Continue stage 2 of the audio quickstart's model on a mix of its single-sentence clips and
longer clips of several training sentences in one espeak-ng voice: 400 of 2-8 sentences (3-21 s)
and 40 of 15-22 sentences (27-51 s, most past Whisper's 30 s window), so that it learns to write a
transcript of more than one sentence. The model measured in docs/audio.md ("Audio longer than 30 s").

    modrwkv quickstart --modality audio                       # runs/quickstart-audio/model
    python bench/long_audio_train.py --quickstart runs/quickstart-audio --output runs/long-audio-train
    python bench/long_audio.py --model runs/quickstart-audio/model --model runs/long-audio-train/model
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quickstart", default="runs/quickstart-audio", help="the audio quickstart's output folder")
    parser.add_argument("--output", default="runs/long-audio-train")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--multi", type=int, default=400, help="clips of 2-8 sentences")
    parser.add_argument("--long", type=int, default=40, help="clips of 15-22 sentences")
    parser.add_argument("--lr", type=float, default=5e-4)
    args = parser.parse_args(argv)

    from modrwkv.data.readers.asr import asr_to_sample
    from modrwkv.multimodal import ModRWKV
    from modrwkv.quickstart.speech import PITCHES, SPEEDS, VOICES, espeak_binary, split_sentences
    from modrwkv.quickstart.stages import train_stage

    base, output = Path(args.quickstart), Path(args.output)
    train_text, _ = split_sentences(1000, 100, 0)  # the quickstart's default recipe (seed 0)
    singles = [asr_to_sample({"audio": str(base / "audio" / f"train-{i:05d}.wav"), "text": text})
               for i, text in enumerate(train_text)]
    binary, rng = espeak_binary(), random.Random(5)
    folder = output / "clips"
    folder.mkdir(parents=True, exist_ok=True)

    def spoken(name: str, count: int):
        voice, speed, pitch = rng.choice(VOICES), rng.randint(*SPEEDS), rng.randint(*PITCHES)
        sentences = [rng.choice(train_text) for _ in range(count)]
        path = folder / f"{name}.wav"
        if not path.exists():
            subprocess.run([binary, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path),
                            ". ".join(sentences) + "."], check=True, capture_output=True)
        return asr_to_sample({"audio": str(path), "text": " ".join(sentences)})

    multi = [spoken(f"multi-{i:04d}", rng.randint(2, 8)) for i in range(args.multi)]
    long = [spoken(f"long-{i:04d}", rng.randint(15, 22)) for i in range(args.long)]
    model = ModRWKV.from_pretrained(base / "model")
    model.ctx_len = 4096
    started = time.time()
    # ctx_len: a 51 s clip is ~1300 audio tokens (Whisper at clip length, adapter stride 2) + ~170 of text
    train_stage(model, "2", singles + multi + long, steps=args.steps, lr=args.lr, batch_size=16, warmup_steps=20,
                seed=1, output_dir=output, progress_bar=False, media="audio",
                model_extra={"feature_cache": str(output / "features"), "ctx_len": 4096}, media_reliance_every=0)
    print(f"trained {args.steps} steps in {time.time() - started:.0f} s", flush=True)
    model.save_pretrained(output / "model")
    return 0


if __name__ == "__main__":
    sys.exit(main())
