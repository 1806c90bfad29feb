"""A VLMEvalKit model class for modrwkv, so that VLMEvalKit's own datasets and judges can score it.

VLMEvalKit calls `generate(message, dataset)` with a message of interleaved parts
(`[{"type": "image", "value": PATH}, {"type": "text", "value": PROMPT}]`), after asking
`use_custom_prompt(dataset)` whether the model builds its own prompt from the dataset row. This
class has that interface (its `vlmeval.vlm.base.BaseModel` methods re-implemented), so importing
it needs no VLMEvalKit; registering it does:

    python -m modrwkv.evaluation.harness.vlmevalkit --model-path runs/quickstart/model \\
        --run /path/to/VLMEvalKit/run.py -- --data MMBench_DEV_EN --model modrwkv

For multiple-choice datasets (MMBench, ScienceQA, SEEDBench) and short-answer ones (POPE, GQA,
TextVQA, VQAv2) the prompt is LLaVA-1.5's, as `modrwkv eval` asks them; other datasets keep
VLMEvalKit's own prompt.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import math
import mimetypes
import os
import runpy
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ...data.sample import MARKERS, escape_markers, place_media, unmarked_markers
from ..tasks.base import OPTION_LETTERS, SHORT_ANSWER_PROMPT, choice_prompt
from . import load_pipeline

MULTIPLE_CHOICE_DATASETS = ("MMBench", "ScienceQA", "SEEDBench")
SHORT_ANSWER_DATASETS = ("POPE", "GQA", "TextVQA", "VQAv2")


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and str(value).strip() != ""


try:  # with VLMEvalKit installed the model is one of its BaseModels (isinstance checks, helpers)
    from vlmeval.vlm.base import BaseModel as _VLMEvalBase
except ImportError:
    _VLMEvalBase = object


class ModRWKVVLM(_VLMEvalBase):
    """modrwkv as a VLMEvalKit model (greedy decoding, images interleaved with the text, multi-turn
    `chat`)."""

    INTERLEAVE = True
    allowed_types = ("text", "image")
    is_api = False

    def __init__(self, model_path: str | None = None, *, pipeline: Any = None, max_new_tokens: int = 128,
                 device: str = "cpu", dtype: str = "fp32", encoder: str | None = None,
                 encoder_source: str | None = None, template: str | None = None) -> None:
        """Loads `model_path` like `modrwkv chat --model` does, or wraps a ready `pipeline`."""
        super().__init__()
        if pipeline is None:
            if model_path is None:
                raise ValueError("ModRWKVVLM needs model_path (or a pipeline)")
            pipeline = load_pipeline(model_path, device=device, dtype=dtype, encoder=encoder,
                                     encoder_source=encoder_source, template=template)
        self.pipeline = pipeline
        self.max_new_tokens = max_new_tokens
        self.dump_image_func: Callable[[Any], Any] | None = None

    # --------------------------------------------------------------- VLMEvalKit's BaseModel API

    def set_dump_image(self, dump_image_func: Callable[[Any], Any]) -> None:
        """VLMEvalKit passes the dataset's function that writes a row's images to files."""
        self.dump_image_func = dump_image_func

    def dump_image(self, line: Mapping[str, Any], dataset: str | None = None) -> list[str]:
        if self.dump_image_func is None:
            raise ValueError("VLMEvalKit has not given the model its dump_image function (set_dump_image)")
        paths = self.dump_image_func(line)
        return [paths] if isinstance(paths, str) else list(paths)

    def use_custom_prompt(self, dataset: str | None) -> bool:
        return dataset is not None and dataset.startswith(MULTIPLE_CHOICE_DATASETS + SHORT_ANSWER_DATASETS)

    def build_prompt(self, line: Mapping[str, Any], dataset: str | None = None) -> list[dict[str, str]]:
        """LLaVA-1.5's prompt for a dataset row: lettered options for multiple choice, the
        single-word suffix for short answers."""
        question = str(line["question"])
        if dataset is not None and dataset.startswith(MULTIPLE_CHOICE_DATASETS):
            options = [str(line[c]) for c in OPTION_LETTERS if c in line and _present(line[c])]
            hint = str(line["hint"]) if "hint" in line and _present(line["hint"]) else ""
            if hint and dataset.startswith("ScienceQA"):
                hint = f"Context: {hint}"
            text = choice_prompt(question, options, hint)
        else:
            text = f"{question}\n{SHORT_ANSWER_PROMPT}"
        images = self.dump_image(line, dataset)
        return [*({"type": "image", "value": path} for path in images), {"type": "text", "value": text}]

    def generate(self, message: Any, dataset: str | None = None) -> str:
        """Accepts what VLMEvalKit's `BaseModel.generate` accepts: a string, one part, a list of
        strings (image paths recognised by their type), or a list of parts."""
        return self.generate_inner(self._parts(message), dataset)

    def generate_inner(self, message: Sequence[Mapping[str, str]], dataset: str | None = None) -> str:
        """The greedy reply to interleaved parts, laid out as a user turn of `chat_inner` is (`_user_text`)."""
        images: list[str] = []
        text = self._user_text(message, images)
        return self.pipeline.chat(text, images=images, temperature=0.0, max_new_tokens=self.max_new_tokens).strip()

    def chat(self, messages: Sequence[Mapping[str, Any]], dataset: str | None = None) -> str:
        """VLMEvalKit's multi-turn interface: `[{"role": "user" | "assistant" | "system",
        "content": parts}, ...]` ending with a user turn -> the greedy reply to the last turn."""
        return self.chat_inner(messages, dataset)

    def chat_inner(self, messages: Sequence[Mapping[str, Any]], dataset: str | None = None) -> str:
        """`chat`'s reply: each user turn laid out as `generate_inner` lays out its message (`_user_text`)."""
        conversation, images = [], []
        for index, turn in enumerate(messages):
            if not isinstance(turn, Mapping) or turn.get("role") not in ("system", "user", "assistant"):
                raise ValueError(f"chat message {index} must have a role of system, user or assistant: {turn!r}")
            parts = self._parts(turn.get("content", ""))
            text = self._user_text(parts, images) if turn["role"] == "user" else self._text(parts, images)
            conversation.append({"role": turn["role"], "content": text})
        if not conversation or conversation[-1]["role"] != "user":
            raise ValueError("a chat must end with a user message")
        return self.pipeline.chat(conversation, images=images, temperature=0.0,
                                  max_new_tokens=self.max_new_tokens).strip()

    def _user_text(self, parts: Sequence[Mapping[str, str]], images: list[str]) -> str:
        """A user turn's prompt text (`_text`), except for images that all come before the text: VLMEvalKit's
        default prompt of every image benchmark puts them there, which says nothing of where the model reads
        them, so they are placed as the model was trained (its `media_layout`: `place_media` of their
        `unmarked_markers`, as the prompt builder places a prompt's unmarked images), as `modrwkv eval`'s
        benchmarks and the lmms-eval adapter ask; in every turn of a multi-turn chat alike."""
        kinds = [part["type"] for part in parts]
        leading = kinds.count("image")
        if not (0 < leading < len(kinds) and kinds[:leading] == ["image"] * leading):
            return self._text(parts, images)
        images.extend(part["value"] for part in parts[:leading])
        text = self._text(parts[leading:], images)  # the text parts alone (their types checked)
        return place_media(text, unmarked_markers({"image": leading}), self.pipeline.processor.media_layout)

    def _text(self, parts: Sequence[Mapping[str, str]], images: list[str]) -> str:
        """The prompt text of interleaved parts, an image marker where each image sits; the image
        paths are appended to `images` in order."""
        pieces = []
        for part in parts:
            if part["type"] == "image":
                images.append(part["value"])
                pieces.append(MARKERS["image"])
            elif part["type"] == "text":
                pieces.append(escape_markers(part["value"]))  # text, even where it holds "<image>"
            else:
                raise ValueError(f"unsupported message part type {part['type']!r}; allowed: {self.allowed_types}")
        return "\n".join(pieces)

    def _parts(self, message: Any) -> list[dict[str, str]]:
        if isinstance(message, str):
            return [{"type": "text", "value": message}]
        if isinstance(message, Mapping):
            message = [message]
        parts = []
        for item in message:
            if isinstance(item, str):
                mime = mimetypes.guess_type(item)[0] if os.path.isfile(item) else None
                parts.append({"type": "image" if mime and mime.startswith("image/") else "text", "value": item})
            elif isinstance(item, Mapping) and "type" in item and "value" in item:
                parts.append({"type": item["type"], "value": item["value"]})
            else:
                raise ValueError(f"invalid VLMEvalKit message part {item!r}")
        return parts


def register(name: str = "modrwkv", **options: Any) -> None:
    """Adds the model to VLMEvalKit's `supported_VLM` under `name` (options go to `ModRWKVVLM`)."""
    from vlmeval.config import supported_VLM

    supported_VLM[name] = functools.partial(ModRWKVVLM, **options)


def main(argv: Sequence[str] | None = None) -> None:
    """Registers the model, then runs VLMEvalKit's run.py with the arguments after `--`."""
    parser = argparse.ArgumentParser(prog="python -m modrwkv.evaluation.harness.vlmevalkit",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-path", required=True, help="modrwkv model folder")
    parser.add_argument("--name", default="modrwkv", help="the name to give to VLMEvalKit's --model")
    parser.add_argument("--run", required=True, help="VLMEvalKit's run.py")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bf16", choices=("fp32", "bf16", "fp16", "int8"))
    parser.add_argument("run_args", nargs=argparse.REMAINDER, help="-- then VLMEvalKit's arguments")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.run):
        parser.error(f"--run {args.run}: no such file (VLMEvalKit's run.py, in its clone: git clone "
                     "https://github.com/open-compass/VLMEvalKit)")
    try:
        importlib.import_module("vlmeval")
    except ImportError as exc:
        if not (isinstance(exc, ModuleNotFoundError) and exc.name == "vlmeval"):  # installed, but its import fails
            parser.error(f"VLMEvalKit does not import: {type(exc).__name__}: {exc}")
        parser.error(f"VLMEvalKit is not installed (pip install -e {os.path.dirname(args.run) or '.'}, the clone "
                     "that holds run.py)")
    register(args.name, model_path=args.model_path, max_new_tokens=args.max_new_tokens, device=args.device,
             dtype=args.dtype)
    run_args = args.run_args[1:] if args.run_args[:1] == ["--"] else args.run_args
    sys.argv = [args.run, *run_args]
    runpy.run_path(args.run, run_name="__main__")


if __name__ == "__main__":
    main()
