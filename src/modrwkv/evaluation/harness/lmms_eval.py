"""An lmms-eval model for modrwkv: `generate_until` (batched, per-request generation settings) and
`loglikelihood`, over a `ModRWKVPipeline`.

lmms-eval hands the model `Instance`s whose `args` are
`(context, gen_kwargs, doc_to_visual, doc_id, task, split)` for generation and
`(context, continuation, doc_to_visual, doc_id, task, split)` for log-likelihoods; the visuals come
from `doc_to_visual(self.task_dict[task][split][doc_id])` (PIL images, audio dicts with "array"
and "sampling_rate", or paths: images, audio, and video files, read as frames). `ModRWKVLmmsCore` implements that without importing lmms-eval;
`harness/models/modrwkv.py` mixes it into lmms-eval's `lmms` base class. lmms-eval finds it through
the `lmms_eval.models` entry point that modrwkv's package declares (`lmms_eval_manifest`; checked
with lmms-eval 0.7.3, docs/evaluation.md):

    python -m lmms_eval --model modrwkv \\
        --model_args pretrained=runs/quickstart/model,device=cuda,dtype=bf16 --tasks pope --batch_size 8

For `output_type: loglikelihood` tasks lmms-eval passes the task's `doc_to_target` function as the
continuation (a string for `multiple_choice`); both are read.

Under `accelerate launch` (one process per GPU) each process loads the model on its own GPU and
reports its rank and the world size, so that lmms-eval gives it its share of the requests.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from . import load_pipeline

LMMS_MODEL_ID = "modrwkv"
LMMS_CLASS_PATH = "modrwkv.evaluation.harness.models.modrwkv.ModRWKVLmms"


def lmms_eval_manifest() -> Any:
    """The `lmms_eval.models` entry point: lmms-eval's ModelManifest for `--model modrwkv`."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=LMMS_MODEL_ID, simple_class_path=LMMS_CLASS_PATH)


def distributed_position() -> tuple[int, int, int]:
    """(rank, world size, local rank) of this process: accelerate's when it is installed (it reads
    the launcher's environment), else the RANK / WORLD_SIZE / LOCAL_RANK variables torchrun and
    accelerate set; (0, 1, 0) when not launched in parallel."""
    try:
        from accelerate import PartialState
    except ImportError:
        env = os.environ
        return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))
    state = PartialState()
    return state.process_index, state.num_processes, state.local_process_index


_AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
_VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".m4v", ".mpg", ".mpeg")


def _split_visuals(visuals: Any) -> dict[str, list[Any]]:
    """lmms-eval visuals -> {"images", "audio", "videos"}: PIL images and image paths, audio dicts
    and paths, video paths (read as frames: docs/custom-data.md, "Video")."""
    media: dict[str, list[Any]] = {"images": [], "audio": [], "videos": []}
    if visuals is None:
        return media
    for visual in visuals if isinstance(visuals, (list, tuple)) else [visuals]:
        is_path = isinstance(visual, str)
        if (isinstance(visual, dict) and "array" in visual) or (is_path and visual.lower().endswith(_AUDIO_SUFFIXES)):
            media["audio"].append(visual)
        elif is_path and visual.lower().endswith(_VIDEO_SUFFIXES):
            media["videos"].append(visual)
        elif is_path and not visual.lower().endswith(_IMAGE_SUFFIXES):
            raise ValueError(f"unsupported visual {visual!r}: modrwkv reads images, audio and video "
                             f"({', '.join(_IMAGE_SUFFIXES + _AUDIO_SUFFIXES + _VIDEO_SUFFIXES)})")
        else:
            media["images"].append(visual)
    return media


class ModRWKVLmmsCore:
    """What lmms-eval's `lmms` subclass needs, on a `ModRWKVPipeline` (see the module docstring)."""

    def __init__(self, pretrained: str | None = None, device: str = "cpu", dtype: str = "fp32",
                 batch_size: int | str = 1, max_new_tokens: int | str = 1024, encoder: str | None = None,
                 encoder_source: str | None = None, template: str | None = None, pipeline: Any = None,
                 max_batch_size: int | None = None, **unused: Any) -> None:
        """Arguments arrive from `--model_args key=value,...` as lmms-eval parses them (numbers and
        true/false converted, the rest strings), with `batch_size` (a string) and, when given on its
        command line, `device` and `max_batch_size` (the cap of `--batch_size auto`, which modrwkv
        does not size, so it is unused); `pipeline` (Python only) wraps a ready pipeline instead of
        loading `pretrained`."""
        super().__init__()
        if unused:
            raise ValueError(f"unknown modrwkv model_args {sorted(unused)}")
        if not str(batch_size).isdigit() or int(batch_size) < 1:
            raise ValueError(f"the modrwkv lmms-eval model needs --batch_size N (a whole number of at least 1), "
                             f"got {batch_size!r}")
        self._rank, self._world_size, local_rank = distributed_position()
        if self._world_size > 1:
            if device == "cuda":  # one GPU per process
                device = f"cuda:{local_rank}"
            from accelerate import Accelerator  # lmms-eval gathers results across processes through it

            self.accelerator = Accelerator()
        if pipeline is None:
            if pretrained is None:
                raise ValueError("the modrwkv lmms-eval model needs pretrained=MODEL_DIR")
            pipeline = load_pipeline(str(pretrained), device=device, dtype=dtype, encoder=encoder,
                                     encoder_source=encoder_source, template=template)
        self.pipeline = pipeline
        self.batch_size_per_gpu = int(batch_size)
        self.max_new_tokens = int(max_new_tokens)
        self.task_dict: dict[str, Any] = getattr(self, "task_dict", {})

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def world_size(self) -> int:
        return self._world_size

    @property
    def device(self) -> Any:
        return self.pipeline.engine.device

    def _inputs(self, request: Any) -> tuple[str, Any, dict[str, list[Any]]]:
        """(context, generation settings or continuation, media) of one request; a continuation
        given as a function (`output_type: loglikelihood` passes the task's `doc_to_target`) is
        applied to the request's document."""
        context, second, doc_to_visual, doc_id, task, split = request.args
        doc = self.task_dict[task][split][doc_id]
        visuals = doc_to_visual(doc) if doc_to_visual is not None else None
        if callable(second):
            second = str(second(doc))
        return context, second, _split_visuals(visuals)

    def _sampling(self, gen_kwargs: dict[str, Any]) -> dict[str, Any]:
        if int(gen_kwargs.get("num_beams") or 1) > 1:
            raise ValueError(f"the modrwkv lmms-eval model decodes greedily or samples; beam search "
                             f"(num_beams={gen_kwargs['num_beams']}) is not supported")
        until = gen_kwargs.get("until") or []
        until = [until] if isinstance(until, str) else list(until)
        temperature = float(gen_kwargs.get("temperature") or 0.0)
        if not gen_kwargs.get("do_sample", temperature > 0):
            temperature = 0.0
        return {"max_new_tokens": int(gen_kwargs.get("max_new_tokens") or self.max_new_tokens),
                "temperature": temperature, "top_p": float(gen_kwargs.get("top_p") or 1.0),
                "stop_strings": [s for s in until if s]}

    def generate_until(self, requests: Sequence[Any]) -> list[str]:
        """Replies to `requests`, decoded `batch_size` at a time; each keeps its own `until`,
        `max_new_tokens`, `temperature` and `top_p` (greedy unless sampling is asked for)."""
        from ...inference import ChatRequest

        replies = []
        for start in range(0, len(requests), self.batch_size_per_gpu):
            batch = []
            for request in requests[start : start + self.batch_size_per_gpu]:
                context, gen_kwargs, media = self._inputs(request)
                batch.append(ChatRequest(context, **media, sampling=self._sampling(dict(gen_kwargs))))
            replies.extend(result.text for result in self.pipeline.generate_batch(batch))
        return replies

    @torch.no_grad()
    def loglikelihood(self, requests: Sequence[Any]) -> list[tuple[float, bool]]:
        """(-log P(continuation | context), whether greedy decoding would produce it), the
        continuation being the assistant's reply to the context (with its media). The first is a
        loss (lower is likelier), lmms-eval's convention: its `multiple_choice` scoring (0.7.3)
        picks the option with the smallest value, as its models return their loss."""
        pipeline = self.pipeline
        results = []
        for request in requests:
            context, continuation, media = self._inputs(request)
            prompt = pipeline.encode(context, **media)
            reply = pipeline.tokenizer.encode(pipeline.template.content_prefix + continuation.lstrip())
            prefilled = pipeline.engine.prefill(prompt)
            logits = prefilled.logits.reshape(1, -1)
            if len(reply) > 1:
                ids = torch.tensor([reply[:-1]], device=pipeline.engine.device)
                rest = pipeline.model.lm(ids, state=prefilled.state, logits="all").logits[0]
                logits = torch.cat([logits, rest.reshape(len(reply) - 1, -1)])
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            target = torch.tensor(reply, device=logprobs.device)
            loss = -float(logprobs.gather(1, target[:, None]).sum())
            results.append((loss, bool((logprobs.argmax(-1) == target).all())))
        return results

    def generate_until_multi_round(self, requests: Sequence[Any]) -> list[str]:
        raise NotImplementedError("multi-round generation is not supported by the modrwkv lmms-eval model")

