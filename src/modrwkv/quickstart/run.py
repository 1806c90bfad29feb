"""`modrwkv quickstart`: a whole ModRWKV pipeline on a laptop CPU, offline, in minutes.

Generates the procedural data set (images of shapes, time series), builds a tiny ModRWKV (the
built-in CNN vision encoder + a WaveNet series encoder + a small RWKV-7 with the World vocabulary)
and trains it. Offline there is no pretrained encoder or World LM, and the two-stage recipe assumes
both, so two short steps stand in for them before the regular trainer runs the recipe:
  E. the vision encoder learns to name the object in each image cell (encoder_pretraining.py);
  0. the LM alone on the conversations with their media removed; this model is also the
     text-only baseline;
  1. stage 1: adapters and the trainable encoders, LM frozen;
  2. stage 2: everything.
In stages 1 and 2 the pretrained vision encoder keeps training at a twentieth of the learning rate
(at the full rate it forgets what it learnt while the LM is still learning to read it).
Stage 2 is where the model learns to read its media, one skill after another (count and trend
first, the colour-shape bindings last), each at a time that float summation order alone moves by
hundreds of steps. So stage 2 holds its peak learning rate until the last 30% of its steps
(warm-up-stable-decay, not cosine: under cosine a late skill was still half-learnt when the rate ran
out) and keeps the weights that score best on a validation split, scored over its second half;
stage 1, which cannot teach a frozen text-only LM anything, and stage 0 are kept short to pay for it.
It then evaluates on held-out samples, prints accuracy per question type beside the text-only
baseline (and the best any text-only model could score), shows a few answers, and saves a model
that `modrwkv chat` / `modrwkv serve` load.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from ..data.sample import MARKERS, Message, Sample
from ..encoders import build_encoder
from ..generation import SamplingParams, generate
from ..lm import RWKV7, RWKV7Config
from ..multimodal import ModRWKV
from ..processing import IGNORE_INDEX
from ..textfiles import write_bytes_atomically, write_text_atomically
from ..tokenizer import WorldTokenizer
from ..weightfiles import save_safetensors
from .data import generate_samples, media_layout
from .encoder_pretraining import pretrain_vision_encoder
from .stages import MODEL_DIR, RunRecord, train_stage

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class QuickstartSettings:
    """The recipe. Defaults were tuned on a 2-core CPU (see README); every field may be changed."""

    seed: int = 0
    train_samples: int = 24000
    validation_samples: int = 400  # generated apart from the training and the test samples
    test_samples: int = 600
    series_fraction: float = 0.35
    question_first: bool = True
    n_layer: int = 2
    n_embd: int = 128
    image_size: int = 64  # the encoder's input resolution (images are drawn at 64x64)
    image_grid: int = 2  # image tokens = grid**2
    encoder_width: int = 64
    encoder_pretrain_steps: int = 300
    image_encoder_lr_scale: float = 0.05  # in stages 1 and 2
    stage0_steps: int = 120
    stage1_steps: int = 50
    stage2_steps: int = 1000
    batch_size: int = 64
    lr_stage0: float = 2e-3
    lr_stage1: float = 2e-3
    lr_stage2: float = 1e-3
    warmup_steps: int = 100
    stage2_schedule: str = "wsd"
    stage2_decay_fraction: float = 0.3  # the last fraction of stage 2, where the learning rate decays to 0
    validate_every: int = 100  # stage-2 steps between validation scores, over its second half (0: none)


def build_model(settings: QuickstartSettings) -> ModRWKV:
    torch.manual_seed(settings.seed)
    lm = RWKV7(RWKV7Config(n_layer=settings.n_layer, n_embd=settings.n_embd, vocab_size=65536,
                           dim_w=32, dim_a=32, dim_v=32, dim_g=32))
    encoders = {
        "image": build_encoder("tiny", image_size=settings.image_size, grid=settings.image_grid,
                               width=settings.encoder_width),
        "series": build_encoder("wavenet", patch_len=4, output_dim=settings.encoder_width, layers=6,
                                residual_channels=32, skip_channels=64),
    }
    return ModRWKV.build(lm, encoders, template="rwkv", ctx_len=256, media_layout=media_layout(settings.question_first))


def without_media(samples: Sequence[Sample]) -> list[Sample]:
    """The same conversations with every media marker and item removed: what a text-only model sees."""
    stripped = []
    for s in samples:
        messages = [Message(m.role, re.sub(r"<(image|audio|series)>\n?", "", m.content)) for m in s.messages]
        stripped.append(Sample(messages, source=s.source, meta=s.meta))
    return stripped


def _compact(samples: list[Sample]) -> list[Sample]:
    """PNG-encodes images: a few hundred bytes each instead of a decoded bitmap in memory."""
    for sample in samples:
        encoded = []
        for image in sample.images:
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            encoded.append(buffer.getvalue())
        sample.images = encoded
    return samples


@torch.no_grad()
def evaluate(model: ModRWKV, samples: Sequence[Sample], tokenizer: WorldTokenizer, batch_size: int = 64) -> dict[str, list[bool]]:
    """Exact match per question type. Teacher-forced: a sample counts as correct when the argmax at
    every answer position, including the closing end-of-turn token, is the reference token — exactly
    when greedy decoding would reproduce the reference answer and stop."""
    model.eval()
    processor = model.processor(tokenizer)
    collator = model.collator()
    results: dict[str, list[bool]] = collections.defaultdict(list)
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        batch = collator([processor(s) for s in chunk])
        out = model(batch.input_ids, batch.media, attention_mask=batch.attention_mask, logits="none")
        predictions = model.lm.head(out.hidden[:, :-1]).argmax(-1)
        targets = batch.labels[:, 1:]
        supervised = targets != IGNORE_INDEX
        correct = ((predictions == targets) | ~supervised).all(dim=1)
        for sample, ok in zip(chunk, correct.tolist()):
            results[f"{sample.meta['modality']}/{sample.meta['type']}"].append(ok)
    return dict(results)


def text_only_ceiling(train: Sequence[Sample], test: Sequence[Sample]) -> dict[str, float]:
    """The best accuracy any model without the image or series can reach: each question's wording
    reveals nothing about its answer beyond the answer distribution for that wording, so the ceiling
    is the most frequent training answer per question, scored on the test set."""
    answers: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for s in train:
        answers[s.messages[0].content.split("\n")[0]][s.meta["answer"]] += 1
    hits: dict[str, list[bool]] = collections.defaultdict(list)
    for s in test:
        counts = answers.get(s.messages[0].content.split("\n")[0])
        guess = counts.most_common(1)[0][0] if counts else ""
        hits[f"{s.meta['modality']}/{s.meta['type']}"].append(guess == s.meta["answer"])
    return {k: sum(v) / len(v) for k, v in hits.items()}


def answer(model: ModRWKV, tokenizer: WorldTokenizer, sample: Sample) -> str:
    """Greedy answer to the sample's first user turn, generated token by token from the RNN state."""
    question = Sample([sample.messages[0]], images=sample.images, series=sample.series)
    processed = model.processor(tokenizer)(question, add_generation_prompt=True)
    batch = model.collator()([processed])
    with torch.no_grad():
        embeds = model.embed(batch.input_ids, batch.media)
        state = model.lm(inputs_embeds=embeds[:, :-1], logits="none").state
    last = int(batch.input_ids[0, -1])
    params = SamplingParams(max_new_tokens=8, temperature=0.0, stop_tokens=(24,))
    return generate(model.lm, tokenizer, [last], params, state=state).text.strip()


def _accuracy(results: dict[str, list[bool]], prefix: str) -> float:
    values = [ok for key, oks in results.items() if key.startswith(prefix) for ok in oks]
    return sum(values) / max(1, len(values))


def data_digest(*sets: Sequence[Sample]) -> str:
    """A fingerprint of generated samples (text, image bytes, series values), by which a rerun checks
    that it trains on the data the stopped run trained on."""
    digest = hashlib.sha256()
    for samples in sets:
        for sample in samples:
            digest.update(json.dumps([[m.role, m.content] for m in sample.messages]).encode())
            for image in sample.images:
                digest.update(image)  # PNG bytes (_compact)
            for series in sample.series:
                digest.update(np.ascontiguousarray(series).tobytes())
    return digest.hexdigest()


def run_quickstart(output_dir: str | Path = "runs/quickstart", settings: QuickstartSettings | None = None,
                   progress_bar: bool = True, restart: bool = False,
                   option_names: dict[str, str] | None = None, how_to_continue: str = "",
                   announce: Callable[[RunRecord], None] | None = None) -> dict[str, Any]:
    """Runs the quickstart into `output_dir` and returns its report. Run again into the same folder
    with the same settings, it continues where an interrupted run stopped (stages/RunRecord), or
    returns the report of a finished one; with other settings it is refused (`option_names`,
    `how_to_continue`: for the message), unless `restart`, which starts it over. `announce` receives
    the record once the run is accepted, before any work: a refused run prints nothing but its refusal."""
    settings = settings or QuickstartSettings()
    output_dir = Path(output_dir)
    record = RunRecord.open(output_dir, dataclasses.asdict(settings), restart=restart, option_names=option_names,
                            how_to_continue=how_to_continue)
    if announce is not None:
        announce(record)
    if (report := record.result("report")) is not None:
        return report
    with record.counting_this_process():
        return _train_and_report(record, settings, output_dir, progress_bar, how_to_continue)


def _train_and_report(record: RunRecord, settings: QuickstartSettings, output_dir: Path, progress_bar: bool,
                      how_to_continue: str) -> dict[str, Any]:
    """The quickstart's work, its record opened: data, training, evaluation, the report."""
    tokenizer = WorldTokenizer()
    log.info("generating %d training and %d held-out samples", settings.train_samples, settings.test_samples)
    make = lambda n, seed: _compact(list(generate_samples(  # noqa: E731
        n, seed, series_fraction=settings.series_fraction, question_first=settings.question_first)))
    train_set = make(settings.train_samples, settings.seed * 1000 + 1)
    test_set = make(settings.test_samples, settings.seed * 1000 + 2)
    validation_set = make(settings.validation_samples, settings.seed * 1000 + 3)
    # Generating is quick (seconds), so a rerun generates again, and checks it got the same samples.
    digest = data_digest(train_set, test_set, validation_set)
    recorded = record.result("data") or record.complete("data", {"digest": digest})
    if recorded["digest"] != digest:
        raise ValueError(f"{output_dir}: the generated data differ from those the run was started with (a "
                         f"different modrwkv version?), so it cannot continue; start it over. {how_to_continue}".strip())
    model = build_model(settings)

    def validation_score(model: ModRWKV) -> float:
        """The mean accuracy over question types: a run that masters every type but one scores below
        one that is good at all of them."""
        results = evaluate(model, validation_set, tokenizer)
        return sum(sum(oks) / len(oks) for oks in results.values()) / len(results)

    def stage(model: ModRWKV, name: str, steps: int, lr: float, samples: list[Sample],
              **extra: Any) -> tuple[ModRWKV, dict[str, Any]]:
        validate = name == "2" and settings.validate_every and validation_set
        return train_stage(model, name, samples, record=record, steps=steps, lr=lr, batch_size=settings.batch_size,
                           warmup_steps=settings.warmup_steps, seed=settings.seed, output_dir=output_dir,
                           progress_bar=progress_bar, media="images and series",
                           train_extra={"encoder_lr_scale": {"image": settings.image_encoder_lr_scale}, **extra},
                           validate=validation_score if validate else None, validate_every=settings.validate_every,
                           validate_from=steps // 2, keep_to=output_dir / MODEL_DIR if name == "2" else None,
                           media_layout=media_layout(settings.question_first))

    encoder_file = output_dir / "vision_encoder.safetensors"
    if (pretraining := record.result("vision_encoder")) is None:
        state_file = output_dir / "vision_encoder_pretraining.pt"  # where a stopped pretraining continues from
        result = pretrain_vision_encoder(model.encoders["image"], settings.encoder_pretrain_steps,
                                         batch_size=settings.batch_size, seed=settings.seed, progress_bar=progress_bar,
                                         state_file=state_file)
        tmp = encoder_file.with_name(f".{encoder_file.name}.tmp")
        save_safetensors(model.encoders["image"].state_dict(), str(tmp))
        os.replace(tmp, encoder_file)
        resumed = {} if result.resumed_from_step is None else {"resumed_from_step": result.resumed_from_step}
        pretraining = record.complete("vision_encoder", {
            "steps": settings.encoder_pretrain_steps, "final_loss": result.losses[-1],
            "cell_colour_accuracy": result.colour_accuracy, "cell_shape_accuracy": result.shape_accuracy, **resumed})
        state_file.unlink()
    else:
        with record.loading_completed_work():
            model.encoders["image"].load_state_dict(load_file(str(encoder_file)))
    metrics = {"vision_encoder": pretraining}
    model, metrics["stage0"] = stage(model, "0", settings.stage0_steps, settings.lr_stage0, without_media(train_set))
    text_only = (record.result("text_only_model")
                 or record.complete("text_only_model", evaluate(model, without_media(test_set), tokenizer)))
    model, metrics["stage1"] = stage(model, "1", settings.stage1_steps, settings.lr_stage1, train_set)
    model, metrics["stage2"] = stage(model, "2", settings.stage2_steps, settings.lr_stage2, train_set,
                                     schedule=settings.stage2_schedule, decay_fraction=settings.stage2_decay_fraction)
    trained_seconds = record.training_seconds()  # an interrupted run's processes together, as each stage's seconds
    results = evaluate(model, test_set, tokenizer)
    ceiling = text_only_ceiling(train_set, test_set)
    examples = [(s, answer(model, tokenizer, s)) for s in test_set[:6]]
    # A held-out scene to try the model on, the one the README's examples ask about if there is one.
    images = [s for s in test_set if s.images]
    scene = next((s for s in images if _question(s) == "What colour is the circle?"), images[0])
    write_bytes_atomically(output_dir / "shapes.png", scene.images[0])  # PNG bytes (_compact)
    report = {
        "accuracy": {k: sum(v) / len(v) for k, v in sorted(results.items())},
        "count": {k: len(v) for k, v in sorted(results.items())},
        "text_only_ceiling": dict(sorted(ceiling.items())),
        "text_only_model": {k: sum(v) / len(v) for k, v in sorted(text_only.items())},
        "series_text_only_model": _accuracy(text_only, "series/"),
        "image_accuracy": _accuracy(results, "image/"),
        "series_accuracy": _accuracy(results, "series/"),
        "series_text_only_ceiling": sum(ceiling[k] * len(results[k]) for k in results if k.startswith("series/"))
        / max(1, sum(len(v) for k, v in results.items() if k.startswith("series/"))),
        "train_seconds": trained_seconds,
        "total_seconds": record.seconds(),
        "training": metrics,
        "examples": [{"question": _question(s), "reference": s.meta["answer"], "answer": a}
                     for s, a in examples],
        "model_dir": str(output_dir / MODEL_DIR),
        "example_image": {"path": str(output_dir / "shapes.png"), "question": _question(scene),
                          "reference": scene.meta["answer"]},
        "settings": dataclasses.asdict(settings),
    }
    write_text_atomically(output_dir / "report.json", json.dumps(report, indent=2) + "\n")
    return record.complete("report", report)


def _question(sample: Sample) -> str:
    """The question of a quickstart sample: its first line that is not a media marker (a sample asked
    question-first repeats the question after the media)."""
    return next(line for line in sample.messages[0].content.split("\n") if line not in MARKERS.values())


def format_report(report: dict[str, Any]) -> str:
    encoder = report["training"]["vision_encoder"]
    pretraining = (f"vision encoder pretraining: held-out per-cell accuracy colour {encoder['cell_colour_accuracy']:.1%}, "
                   f"shape {encoder['cell_shape_accuracy']:.1%}")
    lines = ["", pretraining, "", "held-out exact-match accuracy (greedy):",
             f"  {'question type':<18}{'n':>5}{'ModRWKV':>10}{'text-only LM':>14}{'text-only best':>16}"]
    for key, acc in report["accuracy"].items():
        lines.append(f"  {key:<18}{report['count'][key]:>5}{acc:>10.1%}{report['text_only_model'][key]:>14.1%}"
                     f"{report['text_only_ceiling'][key]:>16.1%}")
    lines.append(f"  {'image (all)':<18}{'':>5}{report['image_accuracy']:>10.1%}")
    lines.append(f"  {'series (all)':<18}{'':>5}{report['series_accuracy']:>10.1%}"
                 f"{report['series_text_only_model']:>14.1%}{report['series_text_only_ceiling']:>16.1%}")
    lines.append("  (text-only LM: the stage-0 model, which never saw the media; text-only best: the most "
                 "frequent answer to each question)")
    lines.append("")
    lines.append("examples:")
    for ex in report["examples"]:
        mark = "ok" if ex["answer"] == ex["reference"] else "WRONG"
        lines.append(f"  Q: {ex['question']}  A: {ex['answer']!r}  (reference {ex['reference']!r}, {mark})")
    lines.append("")
    lines.append(f"trained in {report['train_seconds'] / 60:.1f} min, total {report['total_seconds'] / 60:.1f} min")
    example = report["example_image"]
    lines.append(f"model saved to {report['model_dir']}; try it on a held-out scene (ask: {example['question']!r}, "
                 f"reference {example['reference']!r}; --temperature 0 answers greedily, as the evaluation above):")
    lines.append(f"  modrwkv chat --model {report['model_dir']} --image {example['path']} --temperature 0")
    return "\n".join(lines)
