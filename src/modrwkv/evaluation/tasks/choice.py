"""Multiple-choice benchmarks: ScienceQA-IMG, MMBench (CircularEval) and MMMU.

Prompts follow LLaVA-1.5's evaluation: the options listed as "A. ..." (ScienceQA, MMBench) or
"(A) ..." (MMMU's own LLaVA-1.5 configuration), then "Answer with the option's letter from the
given choices directly." The letter is read from the reply as the reference scripts read it
(LLaVA's ScienceQA rules; VLMEvalKit's exact-matching rules for MMBench; MMMU's parser). A reply
with no readable letter counts as wrong for ScienceQA and MMBench and is counted as "unparsed" in
the summary (LLaVA's ScienceQA script draws a random option instead, unseeded); MMMU's own random
fallback is seeded per question, so every rerun gives the same numbers.
"""

from __future__ import annotations

import ast
import base64
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from ..metrics import (
    circular_eval,
    extract_choice,
    mmmu_accuracy,
    scienceqa_choice,
    vanilla_accuracy,
)
from .base import (
    CHOICE_PROMPT,
    OPTION_LETTERS,
    SHORT_ANSWER_PROMPT,
    BenchmarkFileError,
    EvalSample,
    PaperResult,
    Task,
    choice_prompt,
    expect_dir,
    expect_file,
    field,
    hub_image,
    hub_shards,
    image_question,
    parquet_rows,
    percent_mean,
    read_json,
)
from .paper import vision_paper


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise BenchmarkFileError("reading this benchmark needs pandas: pip install pandas") from None
    return pandas


# ------------------------------------------------------------------------------ ScienceQA


class ScienceQA(Task):
    name = "scienceqa"
    title = "ScienceQA-IMG"
    splits = ("test", "val", "minival")
    default_split = "test"
    max_new_tokens = 16
    headline = "accuracy"
    headline_label = "accuracy (%), questions with an image"
    layout = """scienceqa/
  problems.json
  pid_splits.json
  images/test/<pid>/image.png ...                (images/<split>/<pid>/image.png)
or lmms-eval's copy, lmms-lab/ScienceQA (huggingface-cli download lmms-lab/ScienceQA --repo-type dataset
--local-dir scienceqa; the hub cache's snapshot folder; or one shard), split test or val:
scienceqa/
  ScienceQA-IMG/test-00000-of-00001.parquet  (validation-*.parquet for val; columns question, choices,
                                              answer, hint, subject, image; lmms-lab/ScienceQA-IMG: data/)"""
    hub_splits: ClassVar[dict[str, str]] = {"test": "test", "val": "validation"}

    def paper_results(self, split: str) -> list[PaperResult]:
        return vision_paper(self.name)

    def load(self, data: Path, split: str) -> list[EvalSample]:
        shards = hub_shards(data, ["ScienceQA-IMG", "data"], self.hub_splits.get(split, split), self.layout,
                            refusal=None if split in self.hub_splits else f"the hub copy has no split {split} (a part "
                            "of val LLaVA chose, listed in the official pid_splits.json); give the official files")
        if shards is not None:
            return self._load_hub(shards)
        expect_dir(data, "the ScienceQA files", self.layout)
        problems_path = expect_file(data, ["problems.json"], "the questions", self.layout)
        splits_path = expect_file(data, ["pid_splits.json"], "the split lists", self.layout)
        problems, splits = read_json(problems_path), read_json(splits_path)
        pids = field(splits, split, list, str(splits_path))
        image_folder = "val" if split == "minival" else split  # minival is a subset of val
        samples = []
        for pid in pids:
            where = f"{problems_path}: problem {pid}"
            if str(pid) not in problems:
                raise BenchmarkFileError(f"{splits_path}: split {split!r} lists problem {pid}, which {problems_path} lacks")
            problem = problems[str(pid)]
            if not field(problem, "image", (str, type(None)), where):
                continue  # the IMG subset: only questions with an image
            image = data / "images" / image_folder / str(pid) / problem["image"]
            samples.append(self._sample(str(pid), problem, image, where))
        return samples

    def _load_hub(self, shards: list[Path]) -> list[EvalSample]:
        """lmms-lab's ScienceQA-IMG: the problems of a split that have an image, with no problem id;
        each is named by its row in the split ("0", "1", ... over the shards in order)."""
        samples = []
        for shard in shards:
            for where, row in parquet_rows(shard, ("question", "choices", "answer", "hint", "image"), self.layout):
                if row["image"] is None:
                    continue  # the IMG subset, as for the official files
                samples.append(self._sample(str(len(samples)), row, hub_image(row, where), where))
        return samples

    @staticmethod
    def _sample(sample_id: str, problem: dict[str, Any], image: Any, where: str) -> EvalSample:
        """One problem with its image: LLaVA's prompt, the answer as a letter."""
        choices = field(problem, "choices", list, where)
        answer = field(problem, "answer", int, where)
        if not 0 <= answer < len(choices):
            raise BenchmarkFileError(f"{where}: answer index {answer} is outside its {len(choices)} choices")
        hint = problem.get("hint") or ""
        text = choice_prompt(field(problem, "question", str, where), choices, f"Context: {hint}" if hint else "")
        return image_question(sample_id, text, {"choices": choices, "answer": OPTION_LETTERS[answer],
                                                "subject": problem.get("subject") or ""}, image)

    def score(self, record: dict[str, Any]) -> dict[str, Any]:
        letter = scienceqa_choice(record["prediction"], len(record["reference"]["choices"]))
        return {"letter": letter, "correct": letter == record["reference"]["answer"]}

    def summarize(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        letters = [scienceqa_choice(r["prediction"], len(r["reference"]["choices"])) for r in records]
        correct = [letter == r["reference"]["answer"] for letter, r in zip(letters, records)]
        return {"accuracy": percent_mean(correct), "unparsed": sum(letter is None for letter in letters)}


# ------------------------------------------------------------------------------ MMBench


def _missing(value: Any) -> bool:
    """An empty cell: NaN (pandas' empty TSV cell), None, blank, or "nan", which lmms-lab's copy holds
    where the TSV is empty (lmms-eval skips such options and hints)."""
    if isinstance(value, float):
        return math.isnan(value)
    return value is None or (isinstance(value, str) and value.strip() in ("", "nan"))


class MMBench(Task):
    name = "mmbench"
    title = "MMBench"
    splits = ("dev", "test")
    default_split = "dev"
    max_new_tokens = 16
    headline = "circular_accuracy"
    headline_label = "CircularEval accuracy (%)"
    paper_note = "the published MMBench numbers are on the English dev set"
    files: ClassVar[dict[str, tuple[str, ...]]] = {"dev": ("MMBench_DEV_EN.tsv", "mmbench_dev_20230712.tsv"),
                                                   "test": ("MMBench_TEST_EN.tsv", "mmbench_test_en_20231003.tsv")}
    layout = """mmbench/
  MMBench_DEV_EN.tsv       (split dev; columns index, question, hint, A..D, answer, category, image
                            (base64); circular variants have index + k * 1000000)
  MMBench_TEST_EN.tsv      (split test: no answers; export the submission with --submission)
or, for split dev, lmms-eval's copy, lmms-lab/MMBench config en (huggingface-cli download lmms-lab/MMBench
--repo-type dataset --local-dir mmbench; the hub cache's snapshot folder; or one shard):
mmbench/
  en/dev-00000-of-00001.parquet  (the TSV's rows: columns index, question, hint, A..D, answer, category,
                                  image; lmms-lab/MMBench_EN: data/dev-*.parquet)"""

    def paper_results(self, split: str) -> list[PaperResult]:
        return vision_paper(self.name)

    def load(self, data: Path, split: str) -> list[EvalSample]:
        shards = hub_shards(data, ["en", "data"], "dev", self.layout,
                            refusal=None if split == "dev" else "the hub copy is read for split dev; the test split's "
                            "submission is made from the official MMBench_TEST_EN.tsv")
        if shards is not None:
            return [self._sample(row, hub_image(row, where), where) for shard in shards
                    for where, row in parquet_rows(shard, ("index", "question", "hint", "A", "B", "answer",
                                                           "category", "image"), self.layout)]
        pandas = _pandas()
        if data.is_file():
            path = data
        else:
            expect_dir(data, "the MMBench TSV", self.layout)
            path = expect_file(data, self.files[split], f"the MMBench {split} set", self.layout)
        try:
            table = pandas.read_csv(path, sep="\t", keep_default_na=True)
        except (OSError, ValueError) as exc:
            raise BenchmarkFileError(f"{path}: cannot read as a TSV file ({exc})") from None
        missing = [c for c in ("index", "question", "A", "B", "image") if c not in table.columns]
        if missing:
            raise BenchmarkFileError(f"{path}: missing column(s) {missing}; is this an MMBench TSV? "
                                     f"Expected layout:\n{self.layout}")
        samples = []
        for row_number, row in enumerate(table.to_dict("records"), 2):
            where = f"{path}: line {row_number}"
            if _missing(row["image"]):
                raise BenchmarkFileError(f"{where}: no base64 image in column 'image'")
            samples.append(self._sample(row, f"data:image/jpeg;base64,{row['image']}", where))
        self._check_base64(samples[:1], path)
        return samples

    @staticmethod
    def _sample(row: dict[str, Any], image: Any, where: str) -> EvalSample:
        """One row (a question or one of its circular variants): the options up to the first empty one,
        the hint when there is one, LLaVA's prompt; the answer when the row has one."""
        options = []
        for letter in OPTION_LETTERS:
            if _missing(row.get(letter)):
                break
            options.append(str(row[letter]))
        hint = "" if _missing(row.get("hint")) else str(row["hint"])
        text = choice_prompt(str(row["question"]), options, hint)
        try:
            index = int(row["index"])
        except (TypeError, ValueError):
            raise BenchmarkFileError(f"{where}: index must be a number, got {row['index']!r}") from None
        category = "" if _missing(row.get("category")) else str(row["category"])
        reference = {"index": index, "choices": options, "category": category}
        if not _missing(row.get("answer")):
            reference["answer"] = str(row["answer"]).strip()
        return image_question(str(index), text, reference, image)

    @staticmethod
    def _check_base64(samples: Sequence[EvalSample], path: Path) -> None:
        """The first image must decode, so that a TSV with a broken image column fails at once."""
        for sample in samples:
            try:
                base64.b64decode(sample.images[0].partition(",")[2], validate=True)
            except ValueError:
                raise BenchmarkFileError(f"{path}: index {sample.id}: column 'image' is not base64") from None

    def score(self, record: dict[str, Any]) -> dict[str, Any]:
        reference = record["reference"]
        letter = extract_choice(record["prediction"], reference["choices"])
        if "answer" not in reference:
            return {"letter": letter}
        return {"letter": letter, "correct": letter == reference["answer"]}

    def summarize(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        if not records or "answer" not in records[0]["reference"]:
            return {}
        rows = [{"index": r["reference"]["index"], "answer": r["reference"]["answer"],
                 "prediction": extract_choice(r["prediction"], r["reference"]["choices"]),
                 "category": r["reference"]["category"]} for r in records]
        circular = circular_eval(rows)
        return {"circular_accuracy": circular["accuracy"], "questions": circular["total"],
                "incomplete_questions": circular["skipped"],
                "circular_per_category": circular.get("per_category", {}),
                "vanilla_accuracy": vanilla_accuracy(rows)["accuracy"],
                "unparsed": sum(r["prediction"] is None for r in rows)}


# ------------------------------------------------------------------------------ MMMU

# The 30 subjects in the order of MMMU's own evaluation (CAT_SHORT2LONG).
MMMU_SUBJECTS = (
    "Accounting", "Agriculture", "Architecture_and_Engineering", "Art", "Art_Theory", "Basic_Medical_Science",
    "Biology", "Chemistry", "Clinical_Medicine", "Computer_Science", "Design", "Diagnostics_and_Laboratory_Medicine",
    "Economics", "Electronics", "Energy_and_Power", "Finance", "Geography", "History", "Literature", "Manage",
    "Marketing", "Materials", "Math", "Mechanical_Engineering", "Music", "Pharmacy", "Physics", "Psychology",
    "Public_Health", "Sociology",
)


class MMMU(Task):
    name = "mmmu"
    title = "MMMU"
    splits = ("validation", "dev")
    default_split = "validation"
    max_new_tokens = 128
    headline = "accuracy"
    headline_label = "accuracy (%)"
    layout = """mmmu/                                  (the Hugging Face dataset MMMU/MMMU)
  Accounting/validation-00000-of-00001.parquet
  Agriculture/validation-00000-of-00001.parquet
  ... one folder per subject, all 30 (dev-*.parquet for split dev)"""

    def paper_results(self, split: str) -> list[PaperResult]:
        return vision_paper(self.name)

    def load(self, data: Path, split: str) -> list[EvalSample]:
        expect_dir(data, "one folder per MMMU subject", self.layout)
        missing = [s for s in MMMU_SUBJECTS if not sorted((data / s).glob(f"{split}-*.parquet"))]
        if missing:
            raise BenchmarkFileError(f"{data}: no {split}-*.parquet for subject(s) {', '.join(missing)}. "
                                     f"Expected layout:\n{self.layout}")
        samples = []
        for subject in MMMU_SUBJECTS:
            for path in sorted((data / subject).glob(f"{split}-*.parquet")):
                for where, row in parquet_rows(path, ("id", "question", "question_type", "answer"), self.layout):
                    samples.append(self._sample(row, subject, where))
        return samples

    def _sample(self, row: dict[str, Any], subject: str, where: str) -> EvalSample:
        question_type = field(row, "question_type", str, where)
        question = field(row, "question", str, where)
        answer: Any = field(row, "answer", str, where)
        if question_type == "open" and answer.startswith("["):  # several accepted answers, as a list literal
            try:
                answer = [str(a) for a in ast.literal_eval(answer)]
            except (ValueError, SyntaxError):
                raise BenchmarkFileError(f"{where}: 'answer' is not a list literal: {answer!r}") from None
        reference: dict[str, Any] = {"question_type": question_type, "answer": answer, "subject": subject}
        if question_type == "multiple-choice":
            try:
                options = ast.literal_eval(field(row, "options", str, where))
            except (ValueError, SyntaxError):
                raise BenchmarkFileError(f"{where}: 'options' is not a list literal: {row['options']!r}") from None
            if not isinstance(options, list) or not options:
                raise BenchmarkFileError(f"{where}: 'options' must be a non-empty list")
            listed = "".join(f"({OPTION_LETTERS[i]}) {option}\n" for i, option in enumerate(options))
            text = f"{question}\n{listed}\n{CHOICE_PROMPT}"
            reference["choices"] = [str(o) for o in options]
        elif question_type == "open":
            text = f"{question}\n{SHORT_ANSWER_PROMPT}"
        else:
            raise BenchmarkFileError(f"{where}: unknown question_type {question_type!r} (multiple-choice or open)")
        # MMMU's LLaVA-1.5 evaluation reads the first image only; "<image k>" stays in the text, as
        # characters that name the image, not a place for it: it goes where the model's layout puts it.
        image = row.get("image_1")
        if isinstance(image, dict) and image.get("bytes"):
            return image_question(field(row, "id", str, where), text, reference, image["bytes"])
        return EvalSample(field(row, "id", str, where), text, reference)

    @staticmethod
    def _row(record: dict[str, Any]) -> dict[str, Any]:
        """The record as `mmmu_accuracy` takes it (the fallback of multiple-choice parsing is seeded
        with the question id)."""
        reference = record["reference"]
        return {"id": record["id"], "question_type": reference["question_type"], "answer": reference["answer"],
                "response": record["prediction"], "options": reference.get("choices"), "subject": reference["subject"]}

    def score(self, record: dict[str, Any]) -> dict[str, Any]:
        return {"correct": mmmu_accuracy([self._row(record)])["correct"] == 1}

    def summarize(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        result = mmmu_accuracy([self._row(r) for r in records])
        return {"accuracy": result["accuracy"], "per_subject": result.get("per_subject", {})}
