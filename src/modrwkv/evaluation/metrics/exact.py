"""Exact-match accuracy for short answers (GQA).

LLaVA converts its GQA predictions with `scripts/convert_gqa_for_eval.py`
(`text.rstrip('.').lower()`, on generations that were already whitespace-stripped) and the official
GQA `eval.py` then counts `predicted == gold` as correct, gold being the raw annotation (always a
lower-case word or phrase in GQA). We do the same; the whitespace strip of the generation step is
folded into `normalize_short_answer`.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["gqa_accuracy", "gqa_score", "normalize_short_answer"]


def normalize_short_answer(text: str) -> str:
    """Strip surrounding whitespace, then trailing periods, then lower-case ("Yes." -> "yes")."""
    return text.strip().rstrip(".").lower()


def gqa_accuracy(prediction: str, answer: str) -> bool:
    """Whether a prediction counts as correct for GQA's official evaluation.

    Only the prediction is normalised; the gold answer is compared as written, like `eval.py`.
    """
    return normalize_short_answer(prediction) == answer


def gqa_score(predictions: Sequence[str], answers: Sequence[str]) -> float:
    """GQA accuracy in percent (0-100) over paired predictions and gold answers."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions but {len(answers)} gold answers")
    if len(predictions) == 0:
        raise ValueError("no predictions to score")
    correct = sum(gqa_accuracy(p, a) for p, a in zip(predictions, answers))
    return 100.0 * correct / len(predictions)
