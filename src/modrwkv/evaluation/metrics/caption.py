"""Caption metrics as the COCO caption evaluation (pycocoevalcap 1.2) computes them: CIDEr-D and BLEU-1..4.

COCO, Flickr30k, NoCaps and TextCaps results, and lmms-eval's `coco_cap` / `flickr30k` tasks, are these
numbers. pycocoevalcap first tokenizes every caption with Stanford CoreNLP 3.4.1's PTBTokenizer
(`-preserveLines -lowerCase`) and drops its punctuation tokens (`tokenizer/ptbtokenizer.py`); `ptb_tokenize`
does the same in Python. Then, over the whole evaluated set at once:

- `cider_d` is `cider/cider_scorer.py`: each caption's 1- to 4-grams weighted by tf-idf, the document
  frequencies counted over the set's references (an n-gram's document frequency: the images with a reference
  holding it), the candidate's counts clipped to each reference's, a Gaussian penalty (sigma 6) on the
  difference in length, averaged over the n and the references, times 10. Its "length" is the number of
  bigrams (the scorer counts the n-grams of index 1), which we keep.
- `bleu` is `bleu/bleu_scorer.py` with `option="closest"` as `bleu/bleu.py` calls it: corpus BLEU, the clipped
  n-gram matches of all candidates over their n-grams, the brevity penalty against, for each candidate, the
  reference length closest to its own (the shorter on a tie), with the scorer's 1e-9 / 1e-15 guards.

`caption_scores` puts them together on raw text and reports them as captioning papers do: CIDEr and BLEU
times 100 (lmms-eval prints pycocoevalcap's own scale: 1.0 there is 100 here).
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence

__all__ = ["bleu", "caption_scores", "cider_d", "ptb_tokenize"]

NGRAMS = 4  # CIDEr-D and BLEU both count 1- to 4-grams
CIDER_SIGMA = 6.0  # CIDEr-D's Gaussian length penalty

# ptbtokenizer.py's PUNCTUATIONS, the tokens dropped after tokenizing. It lists the bracket tokens in upper case
# ("-LRB-") while -lowerCase writes them in lower case ("-lrb-"), so brackets stay in the COCO captions'
# text, and here.
PUNCTUATIONS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-",
                          "--", "...", ";"])
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
# What PTBTokenizer writes for quotes and typographic characters: double quotes as a token of their own, ``
# or '' (both dropped: '' here), single ones as ASCII apostrophes, "--" for dashes, "..." for an ellipsis.
_TYPOGRAPHY = str.maketrans({'"': " '' ", "\u201c": " '' ", "\u201d": " '' ", "\u201e": " '' ", "\u2018": "'",
                             "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2013": " -- ", "\u2014": " -- ",
                             "\u2026": " ... ", "\u00a0": " "})
# Characters that are always tokens of their own; `,` and `:` are, except between digits (1,000 and 5:30).
_ALWAYS_SPLIT = re.compile(r'(\.\.\.|--|[()\[\]{};!?#%$+=*~^]|(?<!\d)[,:]|[,:](?!\d))')
# A word's last period stays on it after an acronym or single letter (u.s.a., p.m., e.g., plan b.) and the
# abbreviations of PTBTokenizer's lexer (titles, months, companies, ...); it is a token of its own otherwise.
_ACRONYM = re.compile(r"[a-z](?:\.[a-z])*")
_ABBREVIATIONS = frozenset(
    "mr mrs ms miss dr drs prof profs sen sens rep reps atty attys lt col gen messrs gov govs adm rev maj sgt cpl pvt "
    "mt capt st ste ave pres lieut hon brig cmdr comdr pfc spc supt supts det mme mmes mlle mlles "
    "jan feb mar apr jun jul aug sep sept oct nov dec mon tue tues wed thu thurs fri "
    "inc co cos corp ltd plc bancorp dept bhd assn univ intl sys jr sr bros blvd rd esq etc al seq vs wm jos cie cf "
    "tel est ext sq".split())
_ABBREVIATIONS_BEFORE_NUMBER = frozenset("ca fig figs prop no nos art bldg pp op".split())
# Contractions split off a word's end (PTB: "do n't", "it 's", "they 're"), and words PTB writes as two.
_CONTRACTION = re.compile(r"^(.+?)(n't|'s|'re|'ve|'ll|'d|'m)$")
_SPLIT_WORDS = {"cannot": ["can", "not"], "gonna": ["gon", "na"], "gotta": ["got", "ta"], "wanna": ["wan", "na"],
                "lemme": ["lem", "me"], "gimme": ["gim", "me"], "'tis": ["'t", "is"], "'twas": ["'t", "was"]}
# Words that start with an apostrophe which is theirs, not an opening quote.
_APOSTROPHE_WORD = re.compile(r"^'(?:cause|em|n|til|till|\d0s)$")


def ptb_tokenize(text: str) -> str:
    """`text` as pycocoevalcap compares captions: lower-cased, split as Stanford's PTBTokenizer (CoreNLP 3.4.1)
    splits it (punctuation apart from words, except a period in an abbreviation and commas and colons between
    digits; contractions apart: "doesn't" -> "does n't", "dog's" -> "dog 's"; "cannot" -> "can not"; hyphenated
    words whole; brackets as -lrb- -rrb- ...), its punctuation tokens dropped, the rest joined by spaces.

    It is the Java tokenizer's rules for what captions hold (words, numbers, hyphens, quotes, brackets,
    contractions, ordinary punctuation and symbols). It may differ on what they rarely hold: URLs, e-mail
    addresses and HTML/SGML tags (which PTBTokenizer keeps whole), rare contractions and dialect forms (y'all,
    rock'n'roll, more'n), abbreviations outside the lexer's main lists, Unicode punctuation beyond quotes,
    dashes and the ellipsis, and currency signs other than $ (PTBTokenizer writes £5 as "# 5", €10 as "$ 10",
    ¢ as "cents")."""
    text = text.lower().translate(_TYPOGRAPHY)
    words = _ALWAYS_SPLIT.sub(r" \1 ", text).split()
    following = [*words[1:], ""]
    return " ".join(token for word, after in zip(words, following) for token in _word_tokens(word, after))


def _word_tokens(word: str, following: str) -> list[str]:
    """The tokens PTBTokenizer makes of a whitespace-separated piece of text (the characters that are always
    tokens of their own already apart), less those pycocoevalcap drops: its opening and closing quotes, a
    trailing hyphen and a sentence-final period split off and dropped, its contraction split off, a bracket
    named as PTB names it (the end first: "'90s." is the word '90s)."""
    while len(word) > 1 and (word[-1] in "'-" and word[-2] != word[-1]
                             or word[-1] == "." and not _keeps_period(word[:-1], following)):
        word = word[:-1]
    while len(word) > 1 and word[0] in "'`" and word not in _SPLIT_WORDS and not _APOSTROPHE_WORD.match(word):
        word = word[1:]
    if word in PUNCTUATIONS:
        return []
    if word in _SPLIT_WORDS:
        return _SPLIT_WORDS[word]
    contraction = _CONTRACTION.match(word)
    if contraction and not contraction.group(1).endswith("'"):
        return list(contraction.groups())
    return [_BRACKETS.get(word, word)]


def _keeps_period(stem: str, following: str) -> bool:
    """Whether the period after `stem` belongs to it (an abbreviation) rather than ending a sentence."""
    if _ACRONYM.fullmatch(stem) or stem in _ABBREVIATIONS:
        return True
    return stem in _ABBREVIATIONS_BEFORE_NUMBER and following[:1].isdigit()


def _ngram_counts(caption: str) -> Counter[tuple[str, ...]]:
    """The 1- to `NGRAMS`-grams of a tokenized caption (words split at spaces), counted."""
    words = caption.split()
    return Counter(tuple(words[start:start + n]) for n in range(1, NGRAMS + 1) for start in range(len(words) - n + 1))


def cider_d(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[float, list[float]]:
    """CIDEr-D of tokenized `candidates` (one per image) against each image's tokenized `references`, as
    pycocoevalcap's `CiderScorer.compute_score` gives it: (the mean over the images, each image's score)."""
    _check_pairs(candidates, references)
    candidate_counts = [_ngram_counts(candidate) for candidate in candidates]
    reference_counts = [[_ngram_counts(reference) for reference in image] for image in references]
    document_frequency: Counter[tuple[str, ...]] = Counter()
    for image in reference_counts:
        document_frequency.update({ngram for counts in image for ngram in counts})
    log_images = math.log(float(len(references)))

    def vector(counts: Counter[tuple[str, ...]]) -> tuple[list[dict[tuple[str, ...], float]], list[float], int]:
        """tf-idf weights by n (an n-gram in no reference counts as in one), their norms, the bigram count."""
        weights: list[dict[tuple[str, ...], float]] = [defaultdict(float) for _ in range(NGRAMS)]
        squares = [0.0] * NGRAMS
        for ngram, frequency in counts.items():
            weight = float(frequency) * (log_images - math.log(max(1.0, document_frequency[ngram])))
            weights[len(ngram) - 1][ngram] = weight
            squares[len(ngram) - 1] += weight ** 2
        return weights, [math.sqrt(square) for square in squares], sum(
            frequency for ngram, frequency in counts.items() if len(ngram) == 2)

    scores = []
    for candidate, image in zip(candidate_counts, reference_counts):
        weights, norms, length = vector(candidate)
        total = [0.0] * NGRAMS
        for reference in image:
            reference_weights, reference_norms, reference_length = vector(reference)
            penalty = math.exp(-(float(length - reference_length) ** 2) / (2 * CIDER_SIGMA ** 2))
            for n in range(NGRAMS):
                similarity = sum(min(weight, reference_weights[n][ngram]) * reference_weights[n][ngram]
                                 for ngram, weight in weights[n].items())
                if norms[n] != 0 and reference_norms[n] != 0:
                    similarity /= norms[n] * reference_norms[n]
                total[n] += similarity * penalty
        scores.append(sum(total) / NGRAMS / len(image) * 10.0)
    return sum(scores) / len(scores), scores


def bleu(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
    """Corpus BLEU-1 to BLEU-4 of tokenized `candidates` against each image's tokenized `references`, as
    pycocoevalcap's `Bleu.compute_score` gives them (`BleuScorer.compute_score(option="closest")`)."""
    _check_pairs(candidates, references)
    small, tiny = 1e-9, 1e-15  # the scorer's guards against dividing by 0
    guessed, correct = [0] * NGRAMS, [0] * NGRAMS
    candidate_length = reference_length = 0
    for candidate, image in zip(candidates, references):
        length = len(candidate.split())
        most: dict[tuple[str, ...], int] = {}  # each n-gram's most occurrences in one reference
        lengths = []
        for reference in image:
            lengths.append(len(reference.split()))
            for ngram, count in _ngram_counts(reference).items():
                most[ngram] = max(most.get(ngram, 0), count)
        for ngram, count in _ngram_counts(candidate).items():
            correct[len(ngram) - 1] += min(most.get(ngram, 0), count)
        for n in range(NGRAMS):
            guessed[n] += max(0, length - n)
        candidate_length += length
        reference_length += min((abs(other - length), other) for other in lengths)[1]
    scores, product = [], 1.0
    for n in range(NGRAMS):
        product *= float(correct[n] + tiny) / (guessed[n] + small)
        scores.append(product ** (1.0 / (n + 1)))
    ratio = (candidate_length + tiny) / (reference_length + small)
    if ratio < 1:
        scores = [score * math.exp(1 - 1 / ratio) for score in scores]
    return scores


def caption_scores(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """CIDEr-D ("cider") and BLEU-1..4 ("bleu_1" ... "bleu_4") of raw `predictions` against each one's raw
    `references` (all the captions of its image), tokenized by `ptb_tokenize`, over the whole set (its
    references give CIDEr's document frequencies), times 100 as captioning papers report them."""
    candidates = [ptb_tokenize(prediction) for prediction in predictions]
    tokenized = [[ptb_tokenize(reference) for reference in image] for image in references]
    scores = {"cider": 100.0 * cider_d(candidates, tokenized)[0]}
    scores.update({f"bleu_{n}": 100.0 * score for n, score in enumerate(bleu(candidates, tokenized), start=1)})
    return scores


def _check_pairs(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but references for {len(references)} images")
    if not candidates:
        raise ValueError("no captions to score")
    if not all(references):
        raise ValueError("an image without references: every candidate needs at least one reference caption")
