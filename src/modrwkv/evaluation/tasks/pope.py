"""POPE (object hallucination): yes/no questions about COCO val2014 images in three splits
(random, popular, adversarial), prompted as LLaVA-1.5 does and scored with LLaVA's POPE script
(the reply's first sentence is "no" when it contains "No", "not" or "no", else "yes").

Metrics are reported per split; the headline is the mean F1 over the splits evaluated, the number
LLaVA-1.5 and the ModRWKV paper report.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..metrics import parse_yes_no, pope_split_metrics
from .base import (
    BenchmarkFileError,
    EvalSample,
    PaperResult,
    Task,
    expect_dir,
    expect_file,
    field,
    image_question,
    read_jsonl,
    short_answer,
)
from .paper import LLAVA_7B, MODRWKV_3B, VISION

POPE_SPLITS = ("random", "popular", "adversarial")


class POPE(Task):
    name = "pope"
    title = "POPE"
    splits = ("all", *POPE_SPLITS)
    default_split = "all"
    max_new_tokens = 16
    headline = "f1"
    headline_label = "F1 (%), mean of the splits"
    layout = """pope/
  coco_pope_random.json        (JSON lines: question_id, image, text, label)
  coco_pope_popular.json
  coco_pope_adversarial.json
  val2014/COCO_val2014_000000310196.jpg ..."""

    def paper_results(self, split: str) -> list[PaperResult]:
        ours, llava = VISION[self.name]
        return [PaperResult(MODRWKV_3B, ours), PaperResult(LLAVA_7B, llava)] if split == "all" else []

    def load(self, data: Path, split: str) -> list[EvalSample]:
        expect_dir(data, "the POPE question files and COCO val2014 images", self.layout)
        samples = []
        for category in POPE_SPLITS if split == "all" else (split,):
            path = expect_file(data, [f"coco_pope_{category}.json"], f"the {category} split", self.layout)
            for i, record in enumerate(read_jsonl(path)):
                where = f"{path}: line {i + 1}"
                label = field(record, "label", str, where)
                if label not in ("yes", "no"):
                    raise BenchmarkFileError(f"{where}: label must be 'yes' or 'no', got {label!r}")
                qid = field(record, "question_id", int, where)
                samples.append(image_question(
                    f"{category}/{qid}", short_answer(field(record, "text", str, where)),
                    {"category": category, "label": label}, data / "val2014" / field(record, "image", str, where),
                ))
        return samples

    def score(self, record: dict[str, Any]) -> dict[str, Any]:
        answer = parse_yes_no(record["prediction"])
        return {"answer": answer, "correct": answer == record["reference"]["label"]}

    def summarize(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        per_split = pope_split_metrics([r["prediction"] for r in records], [r["reference"]["label"] for r in records],
                                       [r["reference"]["category"] for r in records])
        mean = per_split.pop("mean")
        return {"f1": mean["f1"], "accuracy": mean["accuracy"], "mean": mean, "per_split": per_split}
