"""The `modrwkv` command line.

Each subcommand is a pair of functions: `_add_<name>(subparsers)` declares its options and sets
`handler=_run_<name>`, which returns the exit status; `main` parses and dispatches. New commands
(train, chat, serve, eval) are added the same way and registered in `build_parser`.

User errors (missing files, bad values) become a one-line message on stderr and exit status 2,
like argparse's own usage errors; `-v` adds the traceback. Only the CLI prints; the library logs.
"""

from __future__ import annotations

import argparse
import codecs
import logging
import sys
from collections.abc import Iterable, Sequence
from typing import NoReturn

import torch
from safetensors import SafetensorError

from modrwkv import __version__
from modrwkv.generation import SamplingParams, generate, stream
from modrwkv.lm import RWKV7, RWKV7Config, RWKV7State, load_model
from modrwkv.lm.random_weights import random_official_state_dict
from modrwkv.tokenizer import WorldTokenizer

log = logging.getLogger("modrwkv.cli")

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
USAGE_ERROR = 2


class CLIError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors, matching the errors the commands themselves report."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _unescape(text: str) -> str:
    """Interprets backslash escapes (\\n, \\t, \\x17, \\u4f60, \\\\), since RWKV prompts and stop
    strings are full of control characters that a shell makes awkward to type."""
    try:
        return codecs.decode(text.encode("latin-1", "backslashreplace"), "unicode_escape")
    except UnicodeDecodeError as exc:
        raise CLIError(f"bad backslash escape in {text!r}: {exc.reason}") from None


def _device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise CLIError("--device cuda was requested but no CUDA GPU is available to PyTorch")
    return torch.device(name)


def _print_stream(pieces: Iterable[str]) -> None:
    """Writes text pieces as they arrive, so the completion appears while it is generated."""
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")


# --- generate -------------------------------------------------------------------------------


def _add_generate(subparsers: argparse._SubParsersAction) -> None:
    defaults = SamplingParams()
    p = subparsers.add_parser(
        "generate",
        help="complete a text prompt with an RWKV-7 model",
        description="Complete a raw text prompt (no chat template) with an RWKV-7 World model. "
        "Backslash escapes (\\n, \\x17, ...) are interpreted in --prompt and --stop.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", required=True, help="checkpoint: official .pth, .safetensors or a model folder")
    p.add_argument("--prompt", required=True, help="text to continue")
    p.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens, help="token budget")
    p.add_argument("--temperature", type=float, default=defaults.temperature, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=defaults.top_p, help="nucleus sampling mass, in (0, 1]")
    p.add_argument("--top-k", type=int, default=defaults.top_k, help="0 = off")
    p.add_argument("--presence-penalty", type=float, default=defaults.presence_penalty,
                   help="subtracted from the logit of every token already generated")
    p.add_argument("--frequency-penalty", type=float, default=defaults.frequency_penalty,
                   help="subtracted per (decayed) occurrence of a generated token")
    p.add_argument("--penalty-decay", type=float, default=defaults.penalty_decay,
                   help="occurrence counts are multiplied by this every token")
    p.add_argument("--stop", action="append", default=[], metavar="STR", help="stop string (repeatable)")
    p.add_argument("--stop-token", action="append", type=int, default=[], metavar="ID",
                   help="stop token id (repeatable), e.g. 24 for the multimodal chat format's \\x17")
    p.add_argument("--seed", type=int, help="random seed, for reproducible sampling")
    p.add_argument("--stream", action="store_true", help="print the text as it is generated")
    p.add_argument("--load-state", metavar="PATH", help="start from a saved state (the prompt continues it)")
    p.add_argument("--save-state", metavar="PATH", help="save the state after prompt and completion")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the model runs")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="fp32", help="weight precision")
    p.set_defaults(handler=_run_generate)


def _run_generate(args: argparse.Namespace) -> int:
    params = SamplingParams(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        presence_penalty=args.presence_penalty,
        frequency_penalty=args.frequency_penalty,
        penalty_decay=args.penalty_decay,
        stop_tokens=tuple(args.stop_token),
        stop_strings=tuple(_unescape(s) for s in args.stop),
        seed=args.seed,
    )
    prompt = _unescape(args.prompt)
    device = _device(args.device)
    model = load_model(args.model, device=device, dtype=DTYPES[args.dtype])
    tokenizer = WorldTokenizer()
    if model.config.vocab_size < tokenizer.vocab_size:
        raise CLIError(
            f"{args.model}: the model has {model.config.vocab_size} token rows, but the World "
            f"tokenizer needs {tokenizer.vocab_size}"
        )
    state = None
    if args.load_state:
        try:
            state = RWKV7State.load(args.load_state, model.config, device)
        except SafetensorError as exc:
            raise CLIError(f"{args.load_state}: not a state file ({exc})") from None
    if args.stream:
        pieces = stream(model, tokenizer, prompt, params, state=state)
        _print_stream(pieces)
        result = pieces.result
    else:
        result = generate(model, tokenizer, prompt, params, state=state)
        print(result.text)
    log.info("%d prompt tokens, %d generated, finish reason %r", result.prompt_tokens,
             len(result.token_ids), result.finish_reason)
    if args.save_state:
        result.state.save(args.save_state, metadata={"source": "modrwkv generate", "model": str(args.model)})
    return 0


# --- quickstart -----------------------------------------------------------------------------

QUICKSTART_CONFIG = RWKV7Config(
    n_layer=2, n_embd=64, vocab_size=65536, head_size=64, dim_w=32, dim_a=32, dim_v=32, dim_g=32
)
QUICKSTART_PROMPT = "User: What can an RNN see and hear?\n\nAssistant:"


def _add_quickstart(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "quickstart",
        help="smoke test: stream text from a tiny RANDOM model (placeholder for the multimodal demo)",
        description="Builds a tiny RWKV-7 with random weights and streams a short generation, to "
        "check that the installation works end to end. The output is gibberish by design.",
    )
    p.set_defaults(handler=_run_quickstart)


def _run_quickstart(args: argparse.Namespace) -> int:
    print(
        "modrwkv quickstart (placeholder): the model below has RANDOM weights, so its text is "
        "gibberish.\nThe real multimodal quickstart (a released ModRWKV checkpoint describing an "
        "image) comes in a later version.\n"
    )
    with torch.device("meta"):  # skip the training initialisation; the random weights replace it
        model = RWKV7(QUICKSTART_CONFIG)
    weights = random_official_state_dict(QUICKSTART_CONFIG, seed=0, layer0_value_lora=False)
    model.load_state_dict(weights, assign=True)
    model.eval()
    params = SamplingParams(max_new_tokens=24, seed=0, stop_strings=("\n\n",))
    print(f"prompt: {QUICKSTART_PROMPT!r}\ncompletion: ", end="")
    pieces = stream(model, WorldTokenizer(), QUICKSTART_PROMPT, params)
    _print_stream(pieces)
    result = pieces.result
    print(
        f"\n{len(result.token_ids)} tokens generated (finish reason: {result.finish_reason}); the "
        f"recurrent state is {result.state.nbytes()} bytes whatever the text length."
    )
    return 0


# --- entry point ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="modrwkv", description="ModRWKV: multimodal language models on RWKV-7.")
    parser.add_argument("--version", action="version", version=f"modrwkv {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv for debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    _add_generate(subparsers)
    _add_quickstart(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=max(logging.DEBUG, logging.WARNING - 10 * args.verbose),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if hasattr(sys.stdout, "reconfigure"):  # generated text may not fit a non-UTF-8 console
        sys.stdout.reconfigure(errors="replace")
    try:
        return args.handler(args)
    except (CLIError, ValueError, OSError, SafetensorError) as exc:
        if args.verbose:
            log.exception("details")
        message = str(exc).replace("\n", " ")
        print(f"modrwkv {args.command}: error: {message}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
