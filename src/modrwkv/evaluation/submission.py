"""Submission files for the benchmarks whose test answers are secret and scored by a server.

VQAv2 test-dev (EvalAI): `[{"question_id": int, "answer": str}, ...]` over all test2015 questions,
the answers put through the EvalAI answer processor and the questions outside test-dev given "",
as LLaVA's `convert_vqav2_for_submission.py` does.

MMBench (OpenCompass server): the benchmark's own table without its hint, category, source,
image, comment and l2-category columns, with a `prediction` column holding the raw replies, as
LLaVA's `convert_mmbench_for_submission.py` writes it; .xlsx (needs openpyxl) or .tsv by the
destination's suffix.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..textfiles import write_bytes_atomically, write_text_atomically
from .metrics import normalize_textvqa_answer
from .runner import PREDICTIONS_FILE, SUMMARY_FILE, read_predictions
from .tasks import BenchmarkFileError, Task
from .tasks.base import field, read_json, read_jsonl
from .tasks.choice import MMBench

log = logging.getLogger(__name__)

SUBMISSIONS = {"vqav2": "test-dev", "mmbench": "test"}
_MMBENCH_DROPPED = ("hint", "category", "source", "image", "comment", "l2-category")


def export_submission(task: Task, output: Path, data: Path, destination: Path) -> Path:
    """Writes the submission file of the finished run in `output` to `destination`."""
    if task.name not in SUBMISSIONS:
        raise ValueError(f"{task.name} is scored locally; submission files exist for {', '.join(SUBMISSIONS)}")
    summary_path = output / SUMMARY_FILE
    if not summary_path.is_file():
        raise ValueError(f"{output}: no {SUMMARY_FILE}; finish the run before exporting a submission")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    if summary["task"] != task.name or summary["split"] != SUBMISSIONS[task.name]:
        raise ValueError(f"{output} holds a {summary['task']} {summary['split']} run; the {task.name} submission "
                         f"is for --split {SUBMISSIONS[task.name]}")
    if summary["samples"] != summary["samples_in_split"]:
        log.warning("the run covers %d of %d questions (--limit); the server will score the rest as wrong",
                    summary["samples"], summary["samples_in_split"])
    predictions = read_predictions(output / PREDICTIONS_FILE)
    destination.parent.mkdir(parents=True, exist_ok=True)
    if task.name == "vqav2":
        _vqav2(predictions, data, destination)
    else:
        _mmbench(predictions, data, MMBench.files[summary["split"]], destination)
    log.info("wrote %s", destination)
    return destination


def _vqav2(predictions: dict[str, dict[str, Any]], data: Path, destination: Path) -> None:
    answers = {int(r["reference"]["question_id"]): normalize_textvqa_answer(r["prediction"]) for r in predictions.values()}
    question_ids: list[int]
    if (data / "llava_vqav2_mscoco_test2015.jsonl").is_file():
        path = data / "llava_vqav2_mscoco_test2015.jsonl"
        question_ids = [field(r, "question_id", int, f"{path}: line {i + 1}") for i, r in enumerate(read_jsonl(path))]
    elif (data / "v2_OpenEnded_mscoco_test2015_questions.json").is_file():
        path = data / "v2_OpenEnded_mscoco_test2015_questions.json"
        question_ids = [field(q, "question_id", int, f"{path}: questions[{i}]")
                        for i, q in enumerate(field(read_json(path), "questions", list, str(path)))]
    else:
        log.warning("%s: no llava_vqav2_mscoco_test2015.jsonl or v2_OpenEnded_mscoco_test2015_questions.json; the "
                    "submission holds the test-dev questions only (EvalAI expects every test2015 question)", data)
        question_ids = list(answers)
    unknown = set(answers) - set(question_ids)
    if unknown:
        raise BenchmarkFileError(f"{len(unknown)} predicted question ids are not test2015 questions (e.g. {min(unknown)})")
    entries = [{"question_id": qid, "answer": answers.get(qid, "")} for qid in question_ids]
    write_text_atomically(destination, json.dumps(entries))


def _mmbench(predictions: dict[str, dict[str, Any]], data: Path, names: Sequence[str], destination: Path) -> None:
    import pandas

    path = data if data.is_file() else next((data / name for name in names if (data / name).is_file()), None)
    if path is None:
        raise BenchmarkFileError(f"{data}: no {' or '.join(names)}")
    table = pandas.read_csv(path, sep="\t")
    table = table.drop(columns=[c for c in _MMBENCH_DROPPED if c in table.columns])
    options = [i for i, column in enumerate(table.columns) if len(column) == 1 and column.isupper()]
    table.insert(options[-1] + 1 if options else len(table.columns), "prediction",
                 [predictions.get(str(index), {}).get("prediction") for index in table["index"]])
    if destination.suffix.lower() == ".xlsx":
        workbook = io.BytesIO()  # written whole by one writer that names the file when it fails
        try:
            table.to_excel(workbook, index=False, engine="openpyxl")
        except ImportError:
            raise ValueError("writing .xlsx needs openpyxl (pip install openpyxl); or give a .tsv destination") from None
        write_bytes_atomically(destination, workbook.getbuffer())
    else:
        write_text_atomically(destination, table.to_csv(sep="\t", index=False))
