"""Exact-match accuracy for short answers (GQA), and its breakdown by answer for a classifier's labels.

LLaVA converts its GQA predictions with `scripts/convert_gqa_for_eval.py`
(`text.rstrip('.').lower()`, on generations that were already whitespace-stripped) and the official
GQA `eval.py` then counts `predicted == gold` as correct, gold being the raw annotation (always a
lower-case word or phrase in GQA). We do the same; the whitespace strip of the generation step is
folded into `normalize_short_answer`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

__all__ = ["gqa_accuracy", "gqa_score", "label_breakdown", "normalize_short_answer"]

# An evaluation set is a classifier's when its records share few answers: at most this many different ones,
MAX_LABELS = 100
# each given to this many records on average (a free-form QA file, whose answers are mostly unique, is not).
MIN_SAMPLES_PER_LABEL = 2


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


def label_breakdown(answers: Sequence[str], predictions: Sequence[str | None],
                    options: Sequence[str] = ()) -> dict[str, Any] | None:
    """Per answer, what a classification report gives (scikit-learn's `classification_report`): the records
    with that answer (`samples`), those answered right (`correct`, `recall` in percent), the replies giving
    it (`replied`) and the share of them that were right (`precision`, None when no reply gave it), and the
    most frequent wrong reply to its records (`confused_with`, `confused_count`). Answers and replies are
    compared as exact match compares them (`normalize_short_answer`); an answer, and a wrong reply that is
    one of the answers, is shown as first written, another reply as first replied. A None prediction is a
    reply that gave no answer at all (a multiple-choice reply that selects no option): wrong, and no reply
    to be confused with. `options` are further replies a record may get that are no record's answer (a
    multiple-choice file's options that are never the right one): each one replied gets a row of 0 samples
    (`recall` None) with its replies, so that a model selecting it is seen doing so. Returns {"per_answer":
    {answer: counts, ...} in answer order (numbers in numeric order), "replies_outside_answers": how many
    replies gave none of the answers and options}, or None unless the answers are a classifier's labels (at
    most `MAX_LABELS` different ones, `MIN_SAMPLES_PER_LABEL` records each on average)."""
    if len(answers) != len(predictions):
        raise ValueError(f"{len(predictions)} predictions but {len(answers)} answers")
    truths = [normalize_short_answer(answer) for answer in answers]
    labels: dict[str, str] = {}  # normalised -> as first written
    for truth, answer in zip(truths, answers):
        labels.setdefault(truth, answer)
    if not labels or len(labels) > MAX_LABELS or len(answers) < MIN_SAMPLES_PER_LABEL * len(labels):
        return None
    replies = [None if prediction is None else normalize_short_answer(prediction) for prediction in predictions]
    for option in options:  # (after the limits: they count the answers the records have)
        option_key = normalize_short_answer(option)
        if option_key not in labels and option_key in replies:
            labels[option_key] = option
    written = dict(labels)  # normalised -> as shown: an answer as written, another reply as first replied
    for reply, prediction in zip(replies, predictions):
        if reply is not None:
            written.setdefault(reply, prediction.strip())
    samples, correct = Counter(truths), Counter()
    replied = Counter(reply for reply in replies if reply is not None)
    confusions: dict[str, Counter[str]] = {label: Counter() for label in labels}
    for truth, reply in zip(truths, replies):
        if reply == truth:
            correct[truth] += 1
        elif reply is not None:
            confusions[truth][reply] += 1
    per_answer = {}
    # numbers in numeric order (2 before 10: digits, class indices), other labels as Python sorts text
    numeric = all(_is_number(label) for label in labels.values())
    for label, answer in sorted(labels.items(), key=lambda item: (float(item[1]) if numeric else 0.0, item[1])):
        confused = confusions[label].most_common(1)
        per_answer[answer] = {
            "samples": samples[label], "correct": correct[label],
            "recall": 100.0 * correct[label] / samples[label] if samples[label] else None,
            "replied": replied[label],
            "precision": 100.0 * correct[label] / replied[label] if replied[label] else None,
            "confused_with": written[confused[0][0]] if confused else None,
            "confused_count": confused[0][1] if confused else 0}
    outside = sum(reply is None or reply not in labels for reply in replies)
    return {"per_answer": per_answer, "replies_outside_answers": outside}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
