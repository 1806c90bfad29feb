"""Long recordings through the user-facing ways in: `ModRWKVPipeline.transcribe_batch(long_form=True)`
(the library), `modrwkv transcribe` (the command line) and `modrwkv serve`'s /v1/audio/transcriptions
(the official `openai` client, one request per clip, `verbose_json`), on `bench/long_audio.py`'s
clips, scored by WER after Whisper's English normalisation; says whether the three agree text for
text and the server's segment times equal the library's.

    python bench/long_audio_api.py --model runs/quickstart-audio/model --sentence-pause 0.4   # 10 clips of 35-90 s

The clips, the command line's files and report.json are written to --output (default
runs/long-audio-api).
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from long_audio import command_line_clips


def served_transcripts(model_dir: str, paths: list[str]) -> list:
    """Each clip through a `modrwkv serve` of `model_dir` on a free local port (verbose_json)."""
    import openai

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "modrwkv.cli", "serve", "--model", model_dir, "--model-name",
                               "model", "--port", str(port)])
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=600)
        deadline = time.monotonic() + 300
        while True:
            try:
                client.models.list()
                break
            except openai.APIConnectionError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the server did not start") from None
                time.sleep(1)
        results = []
        for path in paths:
            with open(path, "rb") as recording:
                results.append(client.audio.transcriptions.create(model="model", file=recording,
                                                                  response_format="verbose_json"))
        return results
    finally:
        server.terminate()
        server.wait(60)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="an audio ModRWKV folder")
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--min-seconds", type=float, default=35.0)
    parser.add_argument("--max-seconds", type=float, default=90.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sentence-pause", type=float, metavar="SECONDS",
                        help="speak each sentence alone and join them with this much silence (bench/long_audio.py's)")
    parser.add_argument("--output", default="runs/long-audio-api")
    args = parser.parse_args(argv)

    from modrwkv.evaluation.metrics import wer
    from modrwkv.inference import ModRWKVPipeline

    output = Path(args.output)
    clips, paths, references = command_line_clips(args, output)

    started = time.time()
    library = ModRWKVPipeline.from_pretrained(args.model).transcribe_batch(paths, long_form=True)
    report = {"library": {"texts": [t.text for t in library], "seconds": time.time() - started}}

    started = time.time()
    subprocess.run([sys.executable, "-m", "modrwkv.cli", "transcribe", "--model", args.model, *paths,
                    "--format", "verbose_json", "--output-dir", str(output / "cli")], check=True)
    written = [json.loads((output / "cli" / f"{Path(p).stem}.json").read_text()) for p in paths]
    report["modrwkv transcribe"] = {"texts": [w["text"] for w in written], "seconds": time.time() - started}

    started = time.time()
    served = served_transcripts(args.model, paths)
    report["/v1/audio/transcriptions"] = {"texts": [s.text for s in served], "seconds": time.time() - started}
    same_times = all([(s.start, s.end) for s in reply.segments] == [(s.start, s.end) for s in own.segments]
                     for reply, own in zip(served, library))

    for name, system in report.items():
        system["wer"] = wer(references, system["texts"])
        same = system["texts"] == report["library"]["texts"]
        print(f"{name:>26}: WER {system['wer']:.2f}%, texts identical to the library's: {same} "
              f"({system['seconds']:.0f} s)")
    print(f"segments: {sum(len(t.segments) for t in library)}; the server's times equal the library's: {same_times}")
    (output / "report.json").write_text(json.dumps({"clips": clips, "systems": report, "same_segment_times": same_times},
                                                   indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
