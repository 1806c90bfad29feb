"""Short-answer visual question answering: VQAv2, TextVQA and GQA, prompted as LLaVA-1.5 does
("<image>\\n{question}\\nAnswer the question using a single word or phrase.").

VQAv2 and TextVQA are scored with the VQA accuracy (min(#matching humans / 3, 1) averaged over the
leave-one-out subsets of the ten answers, after the official answer normalisation); GQA with exact
match after LLaVA's conversion (trailing period removed, lower case).
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..metrics import gqa_accuracy, textvqa_accuracy, vqa_accuracy
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
    percent_mean,
    read_json,
    read_jsonl,
    short_answer,
)
from .paper import vision_paper


class VQAv2(Task):
    name = "vqav2"
    title = "VQAv2"
    splits = ("val", "test-dev")
    default_split = "val"
    max_new_tokens = 16
    headline = "accuracy"
    headline_label = "VQA accuracy (%)"
    layout = """vqav2/
  v2_OpenEnded_mscoco_val2014_questions.json     (split val)
  v2_mscoco_val2014_annotations.json             (split val)
  val2014/COCO_val2014_000000000042.jpg ...
  llava_vqav2_mscoco_test-dev2015.jsonl          (split test-dev; LLaVA's question file, or
    v2_OpenEnded_mscoco_test-dev2015_questions.json)
  llava_vqav2_mscoco_test2015.jsonl              (optional: all test questions, for the submission)
  test2015/COCO_test2015_000000000001.jpg ...
or, for split val, lmms-eval's copy, lmms-lab/VQAv2 (huggingface-cli download lmms-lab/VQAv2 --repo-type dataset
--local-dir vqav2 --include 'data/validation-*'; the hub cache's snapshot folder; or one shard):
vqav2/
  data/validation-00000-of-0000N.parquet ...    (columns question_id, question, answers, answer_type, image)"""

    paper_note = "the published VQAv2 numbers are on test-dev (scored by the EvalAI server)"

    def paper_results(self, split: str) -> list[PaperResult]:
        return vision_paper(self.name)

    def load(self, data: Path, split: str) -> list[EvalSample]:
        shards = hub_shards(data, ["data"], "validation", self.layout,
                            refusal=None if split == "val" else "the hub copy is read for split val; test-dev's "
                            "submission lists every test2015 question from the official files")
        if shards is not None:
            return self._load_hub(shards)
        expect_dir(data, "the VQAv2 files", self.layout)
        if split == "test-dev":
            return self._load_test_dev(data)
        questions_path = expect_file(data, ["v2_OpenEnded_mscoco_val2014_questions.json"], "questions", self.layout)
        answers_path = expect_file(data, ["v2_mscoco_val2014_annotations.json"], "answers", self.layout)
        questions, annotations = read_json(questions_path), read_json(answers_path)
        where_q, where_a = str(questions_path), str(answers_path)
        by_id = {}
        for i, annotation in enumerate(field(annotations, "annotations", list, where_a)):
            where = f"{where_a}: annotations[{i}]"
            answers = [field(a, "answer", str, f"{where}.answers") for a in field(annotation, "answers", list, where)]
            by_id[field(annotation, "question_id", int, where)] = {
                "answers": answers, "answer_type": annotation.get("answer_type", ""),
            }
        samples = []
        for i, q in enumerate(field(questions, "questions", list, where_q)):
            where = f"{where_q}: questions[{i}]"
            qid = field(q, "question_id", int, where)
            if qid not in by_id:
                raise BenchmarkFileError(f"{where}: question {qid} has no annotation in {where_a}")
            image = data / "val2014" / f"COCO_val2014_{field(q, 'image_id', int, where):012d}.jpg"
            samples.append(image_question(str(qid), short_answer(field(q, "question", str, where)),
                                          {"question_id": qid, **by_id[qid]}, image))
        return samples

    def _load_hub(self, shards: list[Path]) -> list[EvalSample]:
        """lmms-lab/VQAv2's validation split: each question with its annotation (the ten answers, the
        answer type) in its row, and its COCO val2014 image."""
        samples = []
        for shard in shards:
            for where, row in parquet_rows(shard, ("question_id", "question", "answers", "answer_type", "image"),
                                           self.layout):
                qid = field(row, "question_id", int, where)
                answers = [field(a, "answer", str, f"{where}: answers") for a in field(row, "answers", list, where)]
                samples.append(image_question(str(qid), short_answer(field(row, "question", str, where)),
                                              {"question_id": qid, "answers": answers,
                                               "answer_type": row.get("answer_type") or ""}, hub_image(row, where)))
        return samples

    def _load_test_dev(self, data: Path) -> list[EvalSample]:
        names = ["llava_vqav2_mscoco_test-dev2015.jsonl", "v2_OpenEnded_mscoco_test-dev2015_questions.json"]
        path = expect_file(data, names, "test-dev questions", self.layout)
        samples = []
        if path.suffix == ".jsonl":
            for i, record in enumerate(read_jsonl(path)):
                where = f"{path}: line {i + 1}"
                qid = field(record, "question_id", int, where)
                # LLaVA's file already holds the prompt, suffix included.
                samples.append(image_question(str(qid), field(record, "text", str, where), {"question_id": qid},
                                              data / "test2015" / field(record, "image", str, where)))
            return samples
        for i, q in enumerate(field(read_json(path), "questions", list, str(path))):
            where = f"{path}: questions[{i}]"
            qid = field(q, "question_id", int, where)
            image = data / "test2015" / f"COCO_test2015_{field(q, 'image_id', int, where):012d}.jpg"
            samples.append(image_question(str(qid), short_answer(field(q, "question", str, where)),
                                          {"question_id": qid}, image))
        return samples

    def score(self, record: dict[str, Any]) -> dict[str, Any]:
        if "answers" not in record["reference"]:
            return {}
        return {"accuracy": vqa_accuracy(record["prediction"], record["reference"]["answers"])}

    def summarize(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        if not records or "answers" not in records[0]["reference"]:
            return {}
        accuracies = [vqa_accuracy(r["prediction"], r["reference"]["answers"]) for r in records]
        by_type: dict[str, list[float]] = collections.defaultdict(list)
        for record, accuracy in zip(records, accuracies):
            by_type[record["reference"].get("answer_type") or "unknown"].append(accuracy)
        return {"accuracy": percent_mean(accuracies),
                "per_answer_type": {k: percent_mean(v) for k, v in sorted(by_type.items())}}


class TextVQA(Task):
    name = "textvqa"
    title = "TextVQA"
    splits = ("val",)
    default_split = "val"
    max_new_tokens = 16
    headline = "accuracy"
    headline_label = "VQA accuracy (%)"
    layout = """textvqa/
  TextVQA_0.5.1_val.json
  train_images/<image_id>.jpg ...                 (the val images ship in train_images)
  llava_textvqa_val_v051_ocr.jsonl                (optional: LLaVA-1.5's prompts with OCR tokens;
                                                   used when present, as LLaVA-1.5 evaluated)
or lmms-eval's copy, lmms-lab/textvqa (huggingface-cli download lmms-lab/textvqa --repo-type dataset
--local-dir textvqa; the hub cache's snapshot folder; or one shard), asked without OCR tokens:
textvqa/
  data/validation-00000-of-00003.parquet ...    (columns question_id, question, answers, image)"""

    def paper_results(self, split: str) -> list[PaperResult]:
        return vision_paper(self.name)

    def load(self, data: Path, split: str) -> list[EvalSample]:
        shards = hub_shards(data, ["data"], "validation", self.layout)
        if shards is not None:
            return [self._sample(row, hub_image(row, where), where) for shard in shards
                    for where, row in parquet_rows(shard, ("question_id", "question", "answers", "image"), self.layout)]
        expect_dir(data, "the TextVQA files", self.layout)
        path = expect_file(data, ["TextVQA_0.5.1_val.json"], "questions and answers", self.layout)
        llava_prompts = {}
        if (data / "llava_textvqa_val_v051_ocr.jsonl").is_file():
            llava_file = data / "llava_textvqa_val_v051_ocr.jsonl"
            for i, record in enumerate(read_jsonl(llava_file)):
                where = f"{llava_file}: line {i + 1}"
                llava_prompts[field(record, "question_id", int, where)] = field(record, "text", str, where)
        samples = []
        for i, q in enumerate(field(read_json(path), "data", list, str(path))):
            where = f"{path}: data[{i}]"
            image = data / "train_images" / f"{field(q, 'image_id', str, where)}.jpg"
            samples.append(self._sample(q, image, where, llava_prompts))
        return samples

    @staticmethod
    def _sample(q: dict[str, Any], image: Any, where: str, llava_prompts: dict[int, str] | None = None) -> EvalSample:
        """One question: LLaVA-1.5's prompt for it when given, else the question with the short-answer suffix."""
        qid = field(q, "question_id", int, where)
        answers = field(q, "answers", list, where)
        if not answers or not all(isinstance(a, str) for a in answers):
            raise BenchmarkFileError(f"{where}: 'answers' must be a non-empty list of strings")
        question = field(q, "question", str, where)
        text = llava_prompts[qid] if llava_prompts and qid in llava_prompts else short_answer(question)
        return image_question(str(qid), text, {"question_id": qid, "answers": answers}, image)

    def score(self, record: dict[str, Any]) -> dict[str, Any]:
        return {"accuracy": textvqa_accuracy(record["prediction"], record["reference"]["answers"])}

    def summarize(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return {"accuracy": percent_mean([textvqa_accuracy(r["prediction"], r["reference"]["answers"]) for r in records])}


def image_index(folder: Path) -> dict[str, Path]:
    """Image files of `folder` by name without extension (a `.jpg` wins over another file of the
    same name), so a data set saved as PNG or WebP is read as it is."""
    if not folder.is_dir():
        return {}
    index: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and (path.stem not in index or path.suffix.lower() == ".jpg"):
            index[path.stem] = path
    return index


class GQA(Task):
    name = "gqa"
    title = "GQA"
    splits = ("testdev-balanced",)
    default_split = "testdev-balanced"
    max_new_tokens = 16
    headline = "accuracy"
    headline_label = "accuracy (%)"
    layout = """gqa/
  testdev_balanced_questions.json
  images/<imageId>.jpg ...                        (any image extension: .png, .jpeg, .webp, ...)
or lmms-eval's copy, lmms-lab/GQA (huggingface-cli download lmms-lab/GQA --repo-type dataset --local-dir gqa
--include 'testdev_balanced_*'; the hub cache's snapshot folder), its questions joined to its images by image id:
gqa/
  testdev_balanced_instructions/testdev-00000-of-00001.parquet   (columns id, imageId, question, answer)
  testdev_balanced_images/testdev-00000-of-00001.parquet         (columns id, image)"""

    def paper_results(self, split: str) -> list[PaperResult]:
        return vision_paper(self.name)

    def load(self, data: Path, split: str) -> list[EvalSample]:
        shards = hub_shards(data, ["testdev_balanced_instructions"], "testdev", self.layout)
        if shards is not None:
            return self._load_hub(shards)
        expect_dir(data, "the GQA files", self.layout)
        path = expect_file(data, ["testdev_balanced_questions.json"], "questions and answers", self.layout)
        questions = read_json(path)
        if not isinstance(questions, dict):
            raise BenchmarkFileError(f"{path}: expected an object mapping question ids to questions, "
                                     f"got {type(questions).__name__}")
        images = image_index(data / "images")
        samples = []
        for qid, q in questions.items():
            where = f"{path}: question {qid}"
            image_id = field(q, "imageId", str, where)
            image = images.get(image_id, data / "images" / f"{image_id}.jpg")
            samples.append(image_question(str(qid), short_answer(field(q, "question", str, where)),
                                          {"answer": field(q, "answer", str, where)}, image))
        return samples

    def _load_hub(self, shards: list[Path]) -> list[EvalSample]:
        """lmms-lab/GQA's testdev_balanced_instructions (the questions), each asked with the image of
        testdev_balanced_images (a config beside it) whose `id` is its `imageId`, as lmms-eval joins them."""
        root = shards[0].parent.parent
        if not (root / "testdev_balanced_images").is_dir():
            raise BenchmarkFileError(f"{root}: no testdev_balanced_images folder beside testdev_balanced_instructions "
                                     f"(the questions' images). Expected layout:\n{self.layout}")
        images = {}
        for shard in hub_shards(root, ["testdev_balanced_images"], "testdev", self.layout) or []:
            for where, row in parquet_rows(shard, ("id", "image"), self.layout):
                images[field(row, "id", str, where)] = hub_image(row, where)
        samples = []
        for shard in shards:
            for where, row in parquet_rows(shard, ("id", "imageId", "question", "answer"), self.layout):
                image_id = field(row, "imageId", str, where)
                if image_id not in images:
                    raise BenchmarkFileError(f"{where}: image {image_id!r} is not in {root / 'testdev_balanced_images'}")
                samples.append(image_question(field(row, "id", str, where),
                                              short_answer(field(row, "question", str, where)),
                                              {"answer": field(row, "answer", str, where)}, images[image_id]))
        return samples

    def score(self, record: dict[str, Any]) -> dict[str, Any]:
        return {"correct": gqa_accuracy(record["prediction"], record["reference"]["answer"])}

    def summarize(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return {"accuracy": percent_mean([gqa_accuracy(r["prediction"], r["reference"]["answer"]) for r in records])}
