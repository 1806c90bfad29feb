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
    hub_image,
    hub_shards,
    image_question,
    parquet_rows,
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
  val2014/COCO_val2014_000000310196.jpg ...
or lmms-eval's copy, lmms-lab/POPE (huggingface-cli download lmms-lab/POPE --repo-type dataset --local-dir pope;
the hub cache's snapshot folder; or one shard):
pope/
  data/test-00000-of-00003.parquet ...   (columns question_id, question, answer, category, image)"""

    def paper_results(self, split: str) -> list[PaperResult]:
        ours, llava = VISION[self.name]
        return [PaperResult(MODRWKV_3B, ours), PaperResult(LLAVA_7B, llava)] if split == "all" else []

    def load(self, data: Path, split: str) -> list[EvalSample]:
        shards = hub_shards(data, ["data"], "test", self.layout)
        if shards is not None:
            return self._load_hub(shards, split)
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

    def _load_hub(self, shards: list[Path], split: str) -> list[EvalSample]:
        """lmms-lab/POPE's test split: the three official question files in one table, the file a row came
        from in its `category` and its number there in `question_id` (a string), so each question gets
        the official layout's id, label and group; the groups in the official order, each in its file's."""
        categories = POPE_SPLITS if split == "all" else (split,)
        groups: dict[str, list[EvalSample]] = {category: [] for category in categories}
        for shard in shards:
            for where, row in parquet_rows(shard, ("question_id", "question", "answer", "category", "image"),
                                           self.layout):
                category = field(row, "category", str, where)
                if category not in POPE_SPLITS:
                    raise BenchmarkFileError(f"{where}: category must be one of {', '.join(POPE_SPLITS)}, "
                                             f"got {category!r}")
                if category not in groups:
                    continue
                label = field(row, "answer", str, where).strip().lower()  # as lmms-eval reads it
                if label not in ("yes", "no"):
                    raise BenchmarkFileError(f"{where}: answer must be 'yes' or 'no', got {row['answer']!r}")
                qid = field(row, "question_id", (str, int), where)
                if not str(qid).isdigit():
                    raise BenchmarkFileError(f"{where}: question_id must be a number, got {qid!r}")
                groups[category].append(image_question(
                    f"{category}/{int(qid)}", short_answer(field(row, "question", str, where)),
                    {"category": category, "label": label}, hub_image(row, where)))
        empty = [category for category, samples in groups.items() if not samples]
        if empty:
            raise BenchmarkFileError(f"{shards[0].parent}: no question of category {', '.join(empty)} in "
                                     f"{len(shards)} shard(s)")
        return [sample for samples in groups.values() for sample in samples]

    def score(self, record: dict[str, Any]) -> dict[str, Any]:
        answer = parse_yes_no(record["prediction"])
        return {"answer": answer, "correct": answer == record["reference"]["label"]}

    def summarize(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        per_split = pope_split_metrics([r["prediction"] for r in records], [r["reference"]["label"] for r in records],
                                       [r["reference"]["category"] for r in records])
        mean = per_split.pop("mean")
        return {"f1": mean["f1"], "accuracy": mean["accuracy"], "mean": mean, "per_split": per_split}
