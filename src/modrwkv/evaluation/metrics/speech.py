"""ASR error rates: LibriSpeech WER with Whisper's English normaliser, Aishell-1 CER.

WER follows the Whisper paper's evaluation: both sides go through OpenAI Whisper's
`EnglishTextNormalizer` ("Mr." -> "mister", "colour" -> "color", "twenty five" -> "25", fillers
and bracketed text dropped, punctuation removed) and `jiwer.wer` is taken over the whole corpus
(total edits / total reference words), in percent.

The normaliser is `transformers.models.whisper.english_normalizer.EnglishTextNormalizer`, a port of
Whisper's `whisper/normalizers/english.py` (checked to give identical output). It needs Whisper's
British -> American spelling map (`english.json`), which no installed package ships offline (the
Hugging Face Whisper repos carry it as `normalizer.json`, a hub download). We therefore ship it
unchanged as package data, `data/whisper_english_spelling.json`, under Whisper's MIT licence
(`data/WHISPER_LICENSE` records licence, origin and checksum).

CER for Aishell-1: the reference recipes (WeNet/ESPnet `compute-cer.py`, `--char=1`) drop spaces and
a list of punctuation marks, compare case-insensitively, and count character edits over the corpus.
Aishell-1 transcripts carry no punctuation, so the punctuation only matters for generated text; we
remove every Unicode punctuation character (category P*) and all whitespace, upper-case Latin
letters, and take `jiwer.cer` over the corpus, in percent. No number or traditional/simplified
conversion is applied (none of the reference scripts does).
"""

from __future__ import annotations

import functools
import json
import unicodedata
from collections.abc import Sequence
from importlib import resources

from types import ModuleType

from ...extras import require

__all__ = ["cer", "normalize_chinese", "normalize_english", "wer"]


def _jiwer() -> ModuleType:
    """jiwer, imported when a score is computed (it comes with the [eval] extra)."""
    return require("jiwer", "eval", "scoring speech recognition")

_SPELLING_MAP = "data/whisper_english_spelling.json"


@functools.lru_cache(maxsize=1)
def _english_normalizer():
    # transformers is a core dependency; importing it lazily keeps `import metrics` cheap.
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    spelling = json.loads(resources.files(__package__).joinpath(_SPELLING_MAP).read_text("utf-8"))
    return EnglishTextNormalizer(spelling)


def normalize_english(text: str) -> str:
    """Whisper's English text normalisation ("Mr. Smith's colour" -> "mister smith's color")."""
    return _english_normalizer()(text)


def normalize_chinese(text: str) -> str:
    """Aishell-style normalisation for CER: drop whitespace and punctuation, upper-case Latin."""
    return "".join(
        char.upper()
        for char in text
        if not char.isspace() and not unicodedata.category(char).startswith("P")
    )


def _check_pairs(references: Sequence[str], hypotheses: Sequence[str]) -> None:
    if isinstance(references, str) or isinstance(hypotheses, str):
        raise TypeError("references and hypotheses must be sequences of strings, not one string")
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    if len(references) == 0:
        raise ValueError("no utterances to score")


def wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER in percent after Whisper English normalisation of both sides."""
    _check_pairs(references, hypotheses)
    refs = [normalize_english(text) for text in references]
    hyps = [normalize_english(text) for text in hypotheses]
    if not any(ref.split() for ref in refs):
        raise ValueError("every reference is empty after normalisation: WER is undefined")
    return 100.0 * _jiwer().wer(refs, hyps)


def cer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus CER in percent after `normalize_chinese` of both sides (Aishell-1 protocol)."""
    _check_pairs(references, hypotheses)
    refs = [normalize_chinese(text) for text in references]
    hyps = [normalize_chinese(text) for text in hypotheses]
    if not any(refs):
        raise ValueError("every reference is empty after normalisation: CER is undefined")
    return 100.0 * _jiwer().cer(refs, hyps)
