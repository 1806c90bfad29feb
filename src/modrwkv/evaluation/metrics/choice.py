"""Multiple-choice scoring: option-letter extraction, MMBench CircularEval, MMMU parsing.

Sources reproduced (read, then rewritten):

* ScienceQA as LLaVA scores it (`llava/eval/eval_science_qa.py`): `scienceqa_choice`.
* MMBench as VLMEvalKit scores it without an LLM judge ("exact matching"):
  `vlmeval/utils/matching_util.py` (`can_infer_option`, `can_infer_text`) and the circular
  grouping of `vlmeval/dataset/utils/multiple_choice.py` (`mcq_circular_eval`).
* MMMU's official `eval/eval_utils.py` (`parse_multi_choice_response`, `parse_open_response`,
  `eval_open`). Where nothing can be parsed the official code draws a random option from the global
  `random` module seeded once with 42, so its result depends on question order and on anything else
  drawing from that generator. We draw from a `random.Random` seeded per question (by default with
  the question id), so a question's fallback is the same in every run, order and process.
"""

from __future__ import annotations

import ast
import logging
import random
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "circular_eval",
    "eval_mmmu_open",
    "extract_choice",
    "mmmu_accuracy",
    "option_letters",
    "parse_mmmu_multi_choice",
    "parse_mmmu_open",
    "scienceqa_choice",
    "vanilla_accuracy",
]

logger = logging.getLogger(__name__)

# MMBench gives every circular variant of question i the index i + k * 1e6.
CIRCULAR_INDEX_MODULUS = 1_000_000


def option_letters(n_choices: int) -> list[str]:
    """The option letters "A", "B", ... of a question with `n_choices` options."""
    if not 1 <= n_choices <= 26:
        raise ValueError(f"a question needs 1-26 options to be lettered A-Z, got {n_choices}")
    return list(string.ascii_uppercase[:n_choices])


# ----------------------------------------------------------------------------- ScienceQA (LLaVA)

# LLaVA's `--options` default; a list, so membership means equality ("AB" is not an option).
_SQA_LETTERS = ("A", "B", "C", "D", "E")
_SQA_ANSWER_IS_PERIOD = re.compile(r"The answer is ([A-E])\.")
_SQA_ANSWER_IS = re.compile(r"The answer is ([A-E])")


def scienceqa_choice(text: str, n_choices: int) -> str | None:
    """The option letter LLaVA's ScienceQA evaluation reads from a generation, or None ("FAILED").

    Exactly its rules, in order: newlines become ". "; the stripped text is a single letter A-E;
    the text starts with "<letter>. "; it contains "The answer is <letter>." or, failing that,
    "The answer is <letter>". A letter beyond the question's options counts as failed.
    """
    text = text.replace("\n", ". ")
    letter: str | None = None
    if text.strip() in _SQA_LETTERS:
        letter = text.strip()
    elif len(text) >= 3 and text[0] in _SQA_LETTERS and text[1:3] == ". ":
        letter = text[0]
    elif "The answer is " in text:
        match = _SQA_ANSWER_IS_PERIOD.search(text) or _SQA_ANSWER_IS.search(text)
        letter = match.group(1) if match else None
    if letter is None or letter not in option_letters(n_choices):
        return None
    return letter


# ------------------------------------------------------------------------- MMBench (VLMEvalKit)

_OPTION_SEPARATORS = str.maketrans({c: " " for c in ".()[],:;!*#{}"})


# VLMEvalKit answers "Z" (no option) for these refusals, and for a lone "Z" token.
_REFUSALS = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)
_NO_OPTION = "Z"


def _infer_option_letter(text: str, letters: Sequence[str]) -> str | None:
    """VLMEvalKit's `can_infer_option`: the letter, if exactly one option letter appears as a
    separate token once the characters .()[],:;!*#{} are turned into spaces ("(B)", "B.", "B. cat",
    "The answer is B"); "Z" for a refusal or a lone "Z" token; else None."""
    if any(refusal in text for refusal in _REFUSALS):
        return _NO_OPTION
    tokens = text.translate(_OPTION_SEPARATORS).split()
    found = [letter for letter in letters if letter in tokens]
    if len(found) == 1:
        return found[0]
    if not found and _NO_OPTION in tokens:
        return _NO_OPTION
    return None


def _infer_option_text(text: str, choices: Sequence[str], letters: Sequence[str]) -> str | None:
    """VLMEvalKit's `can_infer_text`: the letter of the only option whose text (lower-cased)
    occurs inside the lower-cased answer."""
    lowered = text.lower()
    found = [letter for letter, choice in zip(letters, choices) if str(choice).lower() in lowered]
    return found[0] if len(found) == 1 else None


def extract_choice(text: str, choices: Sequence[str]) -> str | None:
    """The option letter ("A", "B", ...) a free-form answer selects, or None when undecidable.

    `choices` are the option texts, lettered in order. Heuristics, first hit wins:

    1. LLaVA's ScienceQA rules (`scienceqa_choice`): "B", "B. cat", "The answer is B.";
    2. LLaVA's MMBench rule: the answer stripped of periods and upper-cased is a letter ("b.");
    3. VLMEvalKit's `can_infer_option`: exactly one option letter as a token ("(B)", "B) cat");
    4. VLMEvalKit's `can_infer_text`: exactly one option's text occurs in the answer ("cat").

    As in VLMEvalKit, a refusal (or a lone "Z") ends the search with None.

    This union is more lenient than LLaVA's ScienceQA script: to reproduce ScienceQA numbers
    exactly use `scienceqa_choice`. Like VLMEvalKit, an article "A" in a sentence that names no
    other letter is read as option A.
    """
    letters = option_letters(len(choices))
    letter = scienceqa_choice(text, len(choices))
    if letter is not None:
        return letter
    bare = text.strip(".").strip().upper()
    if bare in letters:
        return bare
    letter = _infer_option_letter(text, letters)
    if letter == _NO_OPTION and _NO_OPTION not in letters:
        return None  # VLMEvalKit stops here: a refusal is not matched against option texts
    return letter or _infer_option_text(text, choices, letters)


def _is_hit(record: Mapping[str, Any]) -> bool:
    prediction = record.get("prediction")
    return prediction is not None and str(prediction).strip() == str(record["answer"]).strip()


def _percent(hits: Sequence[bool]) -> float:
    return 100.0 * sum(hits) / len(hits)


_MMBENCH_GROUPS = (("category", "per_category"), ("l2-category", "per_l2_category"))


def _summarise(
    units: Sequence[tuple[Mapping[str, Any], bool]],
    group_fields: Sequence[tuple[str, str]] = _MMBENCH_GROUPS,
) -> dict[str, Any]:
    """Overall accuracy in percent of (representative record, hit) pairs, plus per-group accuracy
    under `key` for every (`field`, `key`) whose field some record carries."""
    if not units:
        raise ValueError("no records to score")
    hits = [hit for _, hit in units]
    summary: dict[str, Any] = {
        "accuracy": _percent(hits),
        "correct": sum(hits),
        "total": len(hits),
    }
    for field, key in group_fields:
        if any(field in record for record, _ in units):
            groups: dict[str, list[bool]] = {}
            for record, hit in units:
                groups.setdefault(str(record.get(field)), []).append(hit)
            summary[key] = {name: _percent(groups[name]) for name in sorted(groups)}
    return summary


def _record_index(record: Mapping[str, Any]) -> int:
    index = record.get("index")
    if isinstance(index, bool) or not isinstance(index, int):
        raise TypeError(f"MMBench record needs an integer 'index', got {index!r} in {record!r}")
    return index


def circular_eval(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """MMBench CircularEval: a question counts only if every circular variant is answered right.

    Each record has `index` (variants of question i carry i + k * 1_000_000), `prediction` (the
    extracted letter, or None) and `answer` (the gold letter of that variant), optionally
    `category` / `l2-category`. As in VLMEvalKit, a group is scored only when its main record
    (index < 1_000_000) is present, and categories are read from that record.

    Returns accuracy (percent), correct, total (questions), skipped (groups without a main record)
    and, when the fields exist, per_category / per_l2_category (percent).
    """
    groups: dict[int, list[Mapping[str, Any]]] = {}
    for record in records:
        groups.setdefault(_record_index(record) % CIRCULAR_INDEX_MODULUS, []).append(record)
    units = []
    skipped = 0
    for group_index in sorted(groups):
        group = groups[group_index]
        main = next((r for r in group if _record_index(r) == group_index), None)
        if main is None:
            skipped += 1
            continue
        units.append((main, all(_is_hit(record) for record in group)))
    if skipped:
        logger.warning("CircularEval skipped %d question(s) whose main record is missing", skipped)
    return {**_summarise(units), "skipped": skipped}


def vanilla_accuracy(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Plain accuracy: every record (circular variants included) scored on its own.

    Same record fields and result keys as `circular_eval` (without `skipped`).
    """
    return _summarise([(record, _is_hit(record)) for record in records])


# -------------------------------------------------------------------------------- MMMU (official)

_MMMU_STRIP_CHARS = (",", ".", "!", "?", ";", ":", "'")


def parse_mmmu_multi_choice(
    response: str,
    all_choices: Sequence[str],
    index2ans: Mapping[str, str],
    *,
    seed: int | str = 42,
) -> str:
    """MMMU's `parse_multi_choice_response`: the option letter a response picks.

    Looks for "(A)" forms, then " A " tokens, then (only for responses of more than 5 words) option
    texts; with several candidates the one occurring last wins. When nothing is found a letter is
    drawn with `random.Random(seed)`: pass a per-question seed (e.g. the question id) for
    reproducible results.
    """
    for char in _MMMU_STRIP_CHARS:
        response = response.strip(char)
    response = f" {response} "

    candidates = [choice for choice in all_choices if f"({choice})" in response]
    with_brackets = bool(candidates)
    if not candidates:
        candidates = [choice for choice in all_choices if f" {choice} " in response]
    by_content = False
    if not candidates and len(response.split()) > 5:
        lowered = response.lower()
        candidates = [index for index, ans in index2ans.items() if ans.lower() in lowered]
        by_content = bool(candidates)

    if not candidates:
        return random.Random(seed).choice(list(all_choices))
    if len(candidates) == 1:
        return candidates[0]
    if by_content:
        lowered = response.lower()
        positions = [lowered.rfind(index2ans[c].lower()) for c in candidates]
    elif with_brackets:
        positions = [response.rfind(f"({c})") for c in candidates]
    else:
        positions = [response.rfind(f" {c} ") for c in candidates]
    return candidates[positions.index(max(positions))]  # first of equal maxima, as np.argmax


def _mmmu_normalize(text: str) -> list[str | float]:
    """MMMU's `normalize_str`: numbers (commas dropped, anything `float` accepts) -> [round(x, 2)];
    other text -> [lower-cased], single characters -> [" c", "c "] to avoid trivial matches."""
    text = text.strip()
    try:
        return [round(float(text.replace(",", "")), 2)]
    except ValueError:
        pass
    text = text.lower()
    return [" " + text, text + " "] if len(text) == 1 else [text]


_NUMBER_WITH_COMMAS = re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b")
_NUMBER_SCIENTIFIC = re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+")
_NUMBER_SIMPLE = re.compile(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])")


def _mmmu_extract_numbers(text: str) -> list[str]:
    """MMMU's `extract_numbers`: "1,234" forms, then scientific notation, then plain numbers."""
    return (
        _NUMBER_WITH_COMMAS.findall(text)
        + _NUMBER_SCIENTIFIC.findall(text)
        + _NUMBER_SIMPLE.findall(text)
    )


_KEY_INDICATORS = ("could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ")
_TRIVIAL_KEYS = frozenset({":", ",", ".", "!", "?", ";", "'"})


def _mmmu_key_subresponses(response: str) -> list[str]:
    """MMMU's `get_key_subresponses`: per line, the shortest tail after an indicator word.

    The official split pattern r"\\.\\s(?=[A-Z])|\\n" runs on lower-cased text, so in effect only
    newlines split; reproduced as is.
    """
    response = response.strip().strip(".").lower()
    sub_responses = re.split(r"\.\s(?=[A-Z])|\n", response)
    keys = []
    for position, sub in enumerate(sub_responses):
        indicators = _KEY_INDICATORS + (("=",) if position == len(sub_responses) - 1 else ())
        shortest: str | None = None
        for indicator in indicators:
            if indicator in sub:
                tail = sub.split(indicator)[-1].strip()
                if not shortest or len(tail) < len(shortest):
                    shortest = tail
        if shortest and shortest.strip() not in _TRIVIAL_KEYS:
            keys.append(shortest)
    return keys or [response]


def parse_mmmu_open(response: str) -> list[str | float]:
    """MMMU's `parse_open_response`: candidate answers (normalised strings and rounded numbers).

    The official code removes duplicates through a `set`; we keep first occurrences in order so
    the list itself is deterministic (scoring does not depend on the order).
    """
    keys = _mmmu_key_subresponses(response)
    candidates = list(keys)
    for key in keys:
        candidates.extend(_mmmu_extract_numbers(key))
    normalized = [value for candidate in candidates for value in _mmmu_normalize(candidate)]
    return list(dict.fromkeys(normalized))


def eval_mmmu_open(gold: str | Sequence[str], parsed: Sequence[str | float]) -> bool:
    """MMMU's `eval_open`: a parsed string contains a normalised gold string, or a parsed number
    equals a normalised gold number (both rounded to 2 decimals)."""
    golds = [gold] if isinstance(gold, str) else list(gold)
    norm_answers = [value for answer in golds for value in _mmmu_normalize(answer)]
    for pred in parsed:
        if isinstance(pred, str):
            if any(isinstance(ans, str) and ans in pred for ans in norm_answers):
                return True
        elif pred in norm_answers:
            return True
    return False


def _mmmu_options(record: Mapping[str, Any]) -> list[str]:
    options = record.get("options")
    if isinstance(options, str):  # the MMMU release stores them as a Python list literal
        options = ast.literal_eval(options)
    if not isinstance(options, Sequence) or isinstance(options, str) or not options:
        raise ValueError(f"MMMU multiple-choice record {record.get('id')!r} has no options list")
    return [str(option) for option in options]


def _mmmu_correct(record: Mapping[str, Any]) -> bool:
    question_type = record.get("question_type")
    gold = record["answer"]
    if question_type == "multiple-choice":
        if "parsed_pred" in record:
            parsed = record["parsed_pred"]
        else:
            options = _mmmu_options(record)
            letters = option_letters(len(options))
            parsed = parse_mmmu_multi_choice(
                record["response"], letters, dict(zip(letters, options)), seed=str(record["id"])
            )
        golds = [gold] if isinstance(gold, str) else list(gold)
        return parsed in golds  # `eval_multi_choice`: exact equality
    if question_type == "open":
        if "parsed_pred" in record:
            parsed = record["parsed_pred"]
        else:
            parsed = parse_mmmu_open(record["response"])
        return eval_mmmu_open(gold, parsed)
    raise ValueError(
        f"MMMU record {record.get('id')!r}: question_type must be 'multiple-choice' or 'open', "
        f"got {question_type!r}"
    )


def mmmu_accuracy(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """MMMU accuracy in percent over records, overall and per `subject` when present.

    Each record has `id`, `question_type` ("multiple-choice" or "open"), `answer` (a letter, or the
    open answer; a list of accepted answers also works) and either `response` (the raw generation;
    multiple-choice records also need `options`, a list or its string literal) or an already parsed
    `parsed_pred`. The random fallback of multiple-choice parsing is seeded with the record id.
    """
    units = [(record, _mmmu_correct(record)) for record in records]
    return _summarise(units, (("subject", "per_subject"),))
