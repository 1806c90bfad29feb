"""llama.cpp itself against our exports: its converter on `modrwkv export --format fla`, and its
runtime's logits on `modrwkv export --format gguf`, for one random RWKV-7 model (fp32 reference).

    bash bench/llama_cpp_build.sh /tmp/llama-cpp            # llama.cpp from PyPI's llama-cpp-python sdist
    python bench/llama_cpp_check.py --llama-cpp /tmp/llama-cpp/llama.cpp --bindings /tmp/llama-cpp/site

1. Converter: `convert_hf_to_gguf.py FLA_FOLDER --outtype T` for T in f32, f16, bf16, q8_0, each
   file compared with our own `--format gguf --dtype T` export (`gguf_differences`: every metadata
   key and value, tensor name, shape, storage type and byte). The only expected differences are
   `general.name` (the converter names the model after its folder) and the chat template's
   wording (the converter ships its own Jinja file; we spell our `classic` template).
2. Runtime (with --bindings, a folder holding the `llama_cpp` package built by the script above):
   llama.cpp reads each GGUF and scores a prompt, all positions in one batch and then one token at
   a time (its recurrent path); its logits are compared with our model's in fp32: the random
   weights themselves for f32, the weights as read back from the same file for f16/bf16/q8_0
   (so the difference is llama.cpp's arithmetic at that precision, not the rounding of the
   weights). Also checks that llama.cpp tokenises text as our World tokenizer does.

Exits non-zero when the converter's file differs from ours beyond the expected keys, or llama.cpp's
f32 logits differ from ours by more than --tolerance. Measured results: docs/interop.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

OUTTYPES = ("f32", "f16", "bf16", "q8_0")
EXPECTED_DIFFERENCES = ("general.name", "tokenizer.chat_template")
PROMPT = ("The Eiffel tower is in Paris; the Colosseum is in Rome.\n\nUser: Wie geht's? 你好，世界！ "
          "def main():\n    return 42\n\nAssistant:")


def make_model(folder: Path, seed: int) -> Path:
    from modrwkv.lm import RWKV7Config
    from modrwkv.lm.random_weights import random_official_state_dict

    # Every LoRA width different, so that a transposed or swapped tensor cannot go unnoticed.
    config = RWKV7Config(n_layer=3, n_embd=128, vocab_size=65536, head_size=64, dim_w=32, dim_a=48, dim_v=16,
                         dim_g=80, dim_ffn=256)
    path = folder / "tiny.pth"
    torch.save(random_official_state_dict(config, seed=seed), path)
    return path


def convert(llama_cpp: Path, fla: Path, outtype: str, out: Path) -> float:
    started = time.perf_counter()
    run = subprocess.run([sys.executable, str(llama_cpp / "convert_hf_to_gguf.py"), str(fla), "--outtype", outtype,
                          "--outfile", str(out)], capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"convert_hf_to_gguf.py --outtype {outtype} failed:\n{run.stderr[-3000:]}")
    return time.perf_counter() - started


def llama_cpp_logits(bindings_module, path: Path, ids: list[int]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """llama.cpp's logits for every position, read in one batch and then one token at a time, and
    its tokenisation of PROMPT."""
    llm = bindings_module.Llama(model_path=str(path), n_ctx=512, n_batch=512, n_threads=1, logits_all=True,
                                verbose=False)
    try:
        tokens = llm.tokenize(PROMPT.encode(), add_bos=False, special=False)
        llm.eval(ids)
        batch = np.array(llm.scores[: len(ids)], dtype=np.float32)
        llm.reset()
        steps = []
        for token in ids:
            llm.eval([token])
            steps.append(np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32))
        return batch, np.stack(steps), tokens
    finally:
        llm.close()


def check_chat_template(bindings_module, path: Path) -> bool:
    """The GGUF's chat template as llama-cpp-python renders it (jinja2, from the file's metadata)
    against the prompt our processor builds, and whether llama.cpp's C API (its built-in,
    non-Jinja formats) recognises it."""
    import ctypes

    import gguf

    from modrwkv.data.sample import Message, Sample
    from modrwkv.processing import ModRWKVProcessor, get_template
    from modrwkv.tokenizer import WorldTokenizer

    template = gguf.GGUFReader(str(path)).get_field("tokenizer.chat_template").contents()
    messages = [("system", "Be brief."), ("user", "Hi!\n\n\nWhat is 2+2?"), ("assistant", "4."), ("user", "And 3+3?")]
    rendered = bindings_module.llama_chat_format.Jinja2ChatFormatter(template, eos_token="", bos_token="")(
        messages=[{"role": r, "content": c} for r, c in messages]).prompt
    tokenizer = WorldTokenizer()
    processor = ModRWKVProcessor(tokenizer, get_template("classic"), {}, {}, "placeholder", None, "drop")
    ids = processor(Sample([Message(r, c) for r, c in messages], source="bench"), add_generation_prompt=True).input_ids
    ours = tokenizer.decode(ids.tolist())
    chat = (bindings_module.llama_chat_message * len(messages))(
        *[bindings_module.llama_chat_message(role=r.encode(), content=c.encode()) for r, c in messages])
    buffer = ctypes.create_string_buffer(4096)
    legacy = bindings_module.llama_chat_apply_template(template.encode(), chat, len(messages), True, buffer, 4096)
    print(f"\n3. chat template: llama-cpp-python's Jinja rendering {'equals' if rendered == ours else 'DIFFERS from'} "
          f"our prompt ({len(ours)} characters); llama.cpp's built-in (non-Jinja) formats "
          f"{'do not recognise it' if legacy < 0 else 'recognise it'} (llama_chat_apply_template: {legacy})")
    return rendered == ours


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llama-cpp", type=Path, required=True,
                        help="a llama.cpp source tree (convert_hf_to_gguf.py, conversion/, gguf-py/)")
    parser.add_argument("--bindings", type=Path, help="a folder holding the llama_cpp package (runtime check)")
    parser.add_argument("--work", type=Path, help="where to write the model and the files (default: a temp folder)")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest f32 logit difference accepted")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from modrwkv.cli import main as modrwkv
    from modrwkv.lm import load_model
    from modrwkv.lm.gguf_format import gguf_differences
    from modrwkv.tokenizer import WorldTokenizer

    work = args.work or Path(tempfile.mkdtemp(prefix="llama-cpp-check-"))
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = make_model(work, args.seed)
    fla = work / "fla"
    if modrwkv(["export", "--model", str(checkpoint), "--format", "fla", "--output", str(fla), "--overwrite"]) != 0:
        return 1
    print(f"model: random RWKV-7 (seed {args.seed}, 3 layers, width 128, 65536 tokens) in {work}")
    print(f"llama.cpp: {args.llama_cpp.resolve()}")
    failed = False
    print("\n1. convert_hf_to_gguf.py on the fla export vs `modrwkv export --format gguf`")
    ours: dict[str, Path] = {}
    for outtype in OUTTYPES:
        ours[outtype] = work / f"ours-{outtype}.gguf"
        modrwkv(["export", "--model", str(checkpoint), "--format", "gguf", "--dtype", outtype, "--output",
                 str(ours[outtype]), "--overwrite"])
        converted = work / f"converter-{outtype}.gguf"
        seconds = convert(args.llama_cpp, fla, outtype, converted)
        differences = gguf_differences(converted, ours[outtype])
        unexpected = [d for d in differences if not any(d.startswith(f"metadata {k}:") for k in EXPECTED_DIFFERENCES)]
        print(f"  {outtype:5s} converter {seconds:5.1f} s: {len(differences) - len(unexpected)} expected difference(s)"
              f" ({', '.join(EXPECTED_DIFFERENCES)}), {len(unexpected)} other")
        for line in unexpected:
            print(f"        {line}")
        failed |= bool(unexpected)

    if args.bindings is None:
        print("\n2. llama.cpp runtime: skipped (no --bindings)")
        return int(failed)
    sys.path.insert(0, str(args.bindings))
    import llama_cpp

    tokenizer = WorldTokenizer()
    ids = tokenizer.encode(PROMPT)
    print(f"\n2. llama.cpp (llama-cpp-python {llama_cpp.__version__}) logits vs ours (fp32), {len(ids)}-token prompt")
    print(f"  {'file':24s} {'batch max|diff|':>15s} {'1-token max|diff|':>17s} {'argmax agree':>12s} {'max|logit|':>10s}")
    for outtype, path in [("f32", work / "converter-f32.gguf"), *ours.items()]:
        model = load_model(checkpoint if outtype == "f32" else path)
        with torch.inference_mode():
            reference = model(torch.tensor([ids]), logits="all").logits[0].float().numpy()
        batch, steps, tokens = llama_cpp_logits(llama_cpp, path, ids)
        if tokens != ids:
            print(f"  llama.cpp tokenises the prompt differently: {tokens} vs ours {ids}")
            failed = True
        batch_diff = float(np.abs(batch - reference).max())
        step_diff = float(np.abs(steps - reference).max())
        agree = float((batch.argmax(-1) == reference.argmax(-1)).mean())
        print(f"  {path.name:24s} {batch_diff:15.2e} {step_diff:17.2e} {agree:12.0%} {np.abs(reference).max():10.2f}")
        if outtype == "f32" and max(batch_diff, step_diff) > args.tolerance:
            failed = True
    print(f"  tokenisation of the prompt: {'identical' if tokens == ids else 'DIFFERENT'} ({len(ids)} tokens)")
    failed |= not check_chat_template(llama_cpp, ours["f32"])
    print(f"\nload: {os.getloadavg()[0]:.2f} (1-minute average); torch threads {torch.get_num_threads()}")
    print("FAILED" if failed else "OK")
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
