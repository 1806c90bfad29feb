"""POPE (object hallucination) scoring as LLaVA's `llava/eval/eval_pope.py` and the POPE
repository's `evaluate.py` do it.

Both read a yes/no from the first sentence of the generation and report accuracy, precision,
recall and F1 of "yes" as the positive class, plus the fraction of "yes" answers, per split
(random / popular / adversarial). They print fractions; we return **percent** (0-100) like the
paper tables (LLaVA-style "POPE 86.5" is the F1, averaged over the three COCO splits, times 100).
Where the official code would divide by zero (no "yes" predicted, or no "yes" label) the metric is
reported as 0 instead of crashing.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["parse_yes_no", "pope_metrics", "pope_split_metrics"]

_NEGATIONS = frozenset({"No", "not", "no"})
_METRICS = ("accuracy", "precision", "recall", "f1", "yes_ratio")


def parse_yes_no(text: str) -> str:
    """Read "no" when the first sentence contains the word "No", "no" or "not", otherwise "yes".

    As the official code: keep the text before the first ".", delete commas, split on single
    spaces (so "Nope" or "NO" read as "yes"). Surrounding whitespace is stripped first, which is
    what LLaVA's generation step already does to its outputs.
    """
    text = text.strip()
    if "." in text:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if any(word in _NEGATIONS for word in words) else "yes"


def _ratio(numerator: int, denominator: int) -> float:
    return 100.0 * numerator / denominator if denominator else 0.0


def pope_metrics(predictions: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """POPE metrics of raw generations against "yes"/"no" labels.

    Returns accuracy, precision, recall, f1 and yes_ratio in percent, and the counts tp, fp, tn, fn.
    Predictions are parsed with `parse_yes_no` (so "yes"/"no" pass through unchanged).
    """
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions but {len(labels)} labels")
    if len(predictions) == 0:
        raise ValueError("no predictions to score")
    bad = sorted({label for label in labels if label not in ("yes", "no")})
    if bad:
        raise ValueError(f"POPE labels must be 'yes' or 'no', got {bad[:5]}")
    tp = fp = tn = fn = 0
    for prediction, label in zip(predictions, labels):
        said_yes = parse_yes_no(prediction) == "yes"
        is_yes = label == "yes"
        tp += said_yes and is_yes
        fp += said_yes and not is_yes
        tn += not said_yes and not is_yes
        fn += not said_yes and is_yes
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": _ratio(tp + tn, len(labels)),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_ratio": _ratio(tp + fp, len(labels)),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


def pope_split_metrics(
    predictions: Sequence[str], labels: Sequence[str], splits: Sequence[str]
) -> dict[str, dict[str, float]]:
    """`pope_metrics` per split (e.g. "adversarial", "popular", "random") and their unweighted
    mean under "mean" (accuracy, precision, recall, f1, yes_ratio), the average papers report."""
    if not len(predictions) == len(labels) == len(splits):
        raise ValueError(
            f"predictions ({len(predictions)}), labels ({len(labels)}) and splits ({len(splits)}) "
            "must have the same length"
        )
    if len(predictions) == 0:
        raise ValueError("no predictions to score")
    members: dict[str, list[int]] = {}
    for position, split in enumerate(splits):
        members.setdefault(split, []).append(position)
    result = {
        split: pope_metrics([predictions[i] for i in rows], [labels[i] for i in rows])
        for split, rows in sorted(members.items())
    }
    result["mean"] = {m: sum(r[m] for r in result.values()) / len(result) for m in _METRICS}
    return result
