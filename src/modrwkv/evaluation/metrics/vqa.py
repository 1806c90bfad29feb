"""VQA accuracy as the official VQA evaluation (VQAv2) and LLaVA's TextVQA evaluator compute it.

VQAv2 (`GT-Vision-Lab/VQA`, `PythonEvaluationTools/vqaEvaluation/vqaEval.py`, Python 3 version):

* the prediction goes through newline/tab -> space, `strip`, `processPunctuation` and
  `processDigitArticle` (lower-case, number words -> digits, articles dropped, contractions
  restored);
* the human answers go through `processPunctuation` only, and only when they are not all identical
  (a quirk of the official script, reproduced here: ten identical answers are compared raw, so an
  un-normalised annotation such as "T-shirt" can never be matched);
* the score is the mean, over leaving out each human answer in turn, of
  min(1, #remaining answers equal to the prediction / 3).

TextVQA as LLaVA scores it (`llava/eval/m4c_evaluator.py`, `TextVQAAccuracyEvaluator`, taken from
MMF's `EvalAIAnswerProcessor`) uses the same leave-one-out formula, but normalises the prediction
*and every human answer* with the EvalAI processor, which first lower-cases, deletes commas and
question marks and splits "'s" off the word before the steps above. The two therefore differ on,
e.g., "Coca-Cola's" or unprocessed human answers, and `textvqa_accuracy` is provided for it.

Scores per question are fractions in [0, 1]; `vqa_score` averages them in percent (the official
script additionally rounds its printout to 2 decimals; we keep full precision).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

__all__ = [
    "normalize_textvqa_answer",
    "normalize_vqa_answer",
    "textvqa_accuracy",
    "vqa_accuracy",
    "vqa_score",
]

# The official contraction map (VQA evaluation, Python 3 version; identical in MMF/EvalAI). It is
# data: entries that can never fire after lower-casing ("Im", "Ive", "Id've") and the reversed
# "somebody'd" -> "somebodyd" are kept so that the mapping stays exactly the official one.
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've",
    "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}  # fmt: skip

_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_ARTICLES = frozenset({"a", "an", "the"})

# Order matters: each mark is handled in turn on the progressively edited text.
_PUNCTUATION = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`",
    ",", "?", "!",
)  # fmt: skip
_DIGIT_COMMA_DIGIT = re.compile(r"(\d)(,)(\d)")
# The official pattern is "(?!<=\d)(\.)(?!\d)": its first group is a mistyped look-behind that is
# really a look-ahead, always true in front of a ".". In effect a period is removed whenever no
# digit follows it ("5." -> "5", "3.5" kept, ".5" kept).
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")
# The official call passes re.UNICODE (32) where `re.sub` expects `count`, so at most 32 periods are
# removed from one answer; reproduced for exactness.
_PERIOD_MAX_REMOVALS = int(re.UNICODE)


def _process_punctuation(text: str) -> str:
    """The official `processPunctuation`.

    A mark is deleted when it touches a space in the *original* text, or when the text contains a
    comma between two digits ("1,000" -> "1000"); otherwise it becomes a space ("t-shirt" ->
    "t shirt"). Periods not followed by a digit are then deleted.
    """
    has_digit_comma = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for mark in _PUNCTUATION:
        if mark + " " in text or " " + mark in text or has_digit_comma:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", out, count=_PERIOD_MAX_REMOVALS)


def _process_digit_article(text: str) -> str:
    """The official `processDigitArticle`: lower-case, words "none"/"zero".."ten" -> digits, drop
    a/an/the, then restore contractions written without apostrophe ("dont" -> "don't")."""
    words = [_NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    words = [word for word in words if word not in _ARTICLES]
    return " ".join(_CONTRACTIONS.get(word, word) for word in words)


def normalize_vqa_answer(text: str) -> str:
    """Normalise a predicted answer exactly as the official VQA evaluation does.

    Examples: "Two" -> "2", "a dog" -> "dog", "yes." -> "yes", "dont" -> "don't",
    "1,000" -> "1000", "3.5" -> "3.5", "t-shirt" -> "t shirt".
    """
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return _process_digit_article(_process_punctuation(text))


def normalize_textvqa_answer(text: str) -> str:
    """Normalise an answer as MMF's `EvalAIAnswerProcessor` (LLaVA's TextVQA evaluator) does.

    Its extra first step lower-cases, deletes every comma and question mark and writes "'s" as
    " 's"; the VQA punctuation and digit/article steps follow. (Because commas are gone by then,
    its digit-comma-digit test never fires; the shared `_process_punctuation` is thus exact here.)
    """
    text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return _process_digit_article(_process_punctuation(text))


def _leave_one_out_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """Mean over i of min(1, #{j != i : answers[j] == prediction} / 3)."""
    matches = sum(answer == prediction for answer in answers)
    total = 0.0
    for answer in answers:
        others_matching = matches - (answer == prediction)
        total += min(1.0, others_matching / 3)
    return total / len(answers)


def _check_answers(answers: Sequence[str]) -> None:
    if isinstance(answers, str):
        raise TypeError("answers must be a sequence of human answer strings, not one string")
    if len(answers) == 0:
        raise ValueError("answers is empty: VQA accuracy needs at least one human answer")


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """Official VQA accuracy (in [0, 1]) of one prediction against the human answers.

    With 10 answers of which k equal the prediction the score is 0.3, 0.6, 0.9, 1.0 for
    k = 1, 2, 3, >= 4. Any number of answers is accepted; note that with a single answer the
    leave-one-out leaves none to match, so the official formula gives 0.
    """
    _check_answers(answers)
    predicted = normalize_vqa_answer(prediction)
    human = list(answers)
    if len(set(human)) > 1:  # the official quirk: identical answers are left unprocessed
        human = [_process_punctuation(answer) for answer in human]
    return _leave_one_out_accuracy(predicted, human)


def textvqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """TextVQA accuracy (in [0, 1]) as LLaVA's `TextVQAAccuracyEvaluator` computes it: the VQA
    leave-one-out formula with `normalize_textvqa_answer` applied to prediction and all answers.
    (The original asserts exactly 10 answers; any number >= 1 is accepted here.)"""
    _check_answers(answers)
    human = [normalize_textvqa_answer(answer) for answer in answers]
    return _leave_one_out_accuracy(normalize_textvqa_answer(prediction), human)


_SCORERS: dict[str, Callable[[str, Sequence[str]], float]] = {
    "vqa": vqa_accuracy,
    "textvqa": textvqa_accuracy,
}


def vqa_score(
    predictions: Sequence[str], answer_lists: Sequence[Sequence[str]], *, style: str = "vqa"
) -> float:
    """Mean accuracy in percent (0-100) over questions.

    Args:
        predictions: one predicted answer per question.
        answer_lists: the human answers of each question, in the same order.
        style: "vqa" (official VQAv2 evaluation) or "textvqa" (LLaVA's TextVQA evaluator).
    """
    if style not in _SCORERS:
        raise ValueError(f"unknown VQA scoring style {style!r}; expected one of {sorted(_SCORERS)}")
    if len(predictions) != len(answer_lists):
        raise ValueError(
            f"{len(predictions)} predictions but {len(answer_lists)} answer lists: they must pair up"
        )
    if len(predictions) == 0:
        raise ValueError("no predictions to score")
    scorer = _SCORERS[style]
    return 100.0 * sum(scorer(p, a) for p, a in zip(predictions, answer_lists)) / len(predictions)
