"""Speech recognition: LibriSpeech (WER after Whisper's English text normalisation) and Aishell-1
(CER), read from the corpora as released, with the ASR prompt modrwkv's ASR data uses.

The metric is corpus-level (total edits over total reference words or characters), as the papers
report it; the per-sample line carries the utterance's own WER/CER for inspection.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...data.readers.asr import DEFAULT_ASR_PROMPT, asr_user_turn
from ...data.readers.base import DataError
from ...data.readers.speech_corpora import is_librispeech, speech_corpus_records
from ...processing.speech_segments import SegmentSettings
from ..metrics import cer, wer
from .base import (
    BenchmarkFileError,
    EvalSample,
    PaperResult,
    Task,
    expect_dir,
    expect_file,
)
from .paper import AISHELL, ASR_ENCODERS, LIBRISPEECH

# What the samples show until the model is loaded; each is asked with the model's own ASR prompt
# (`transcribe`, `Task.transcription_prompt`), e.g. the audio alone for a model trained that way (the
# authors' layout), or with the run's --asr-prompt.
ASR_PROMPT = asr_user_turn(DEFAULT_ASR_PROMPT)


def _asr_paper(table: dict[str, tuple[float, ...]], split: str) -> list[PaperResult]:
    if split not in table:
        return []
    return [PaperResult(f"ModRWKV RWKV7-0.4B + {encoder} (paper)", value)
            for encoder, value in zip(ASR_ENCODERS, table[split])]


class _SpeechTask(Task):
    """What the ASR benchmarks share: every sample asks for a transcript (`transcribe`), with the
    model's own ASR prompt unless `asr_prompt` gives another ("": the audio alone); `long_form` cuts
    each recording at its pauses and transcribes the segments (`Task.long_form`)."""

    settings = ("asr_prompt", "long_form")

    def __init__(self, asr_prompt: str | None = None, long_form: SegmentSettings | None = None) -> None:
        self.asr_prompt = asr_prompt
        self.long_form = long_form


def _transcribed(folder: Path) -> list[EvalSample]:
    """The utterances of a speech corpus's split folder, read as training reads them (`speech_corpora`), each asked
    for its transcript; a bad line or a missing split is the file's error."""
    samples = []
    try:
        for _, load in speech_corpus_records(folder):
            record = load()
            samples.append(EvalSample(record["id"], ASR_PROMPT, {"text": record["text"]}, audio=[Path(record["audio"])],
                                      transcribe=True))
    except DataError as exc:
        raise BenchmarkFileError(str(exc)) from None
    return samples


class LibriSpeech(_SpeechTask):
    name = "librispeech"
    title = "LibriSpeech"
    splits = ("test-clean", "test-other", "dev-clean", "dev-other")
    default_split = "test-clean"
    max_new_tokens = 256
    headline = "wer"
    headline_label = "WER (%)"
    layout = """LibriSpeech/                   (or the split folder itself)
  test-clean/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt
  test-clean/<speaker>/<chapter>/<speaker>-<chapter>-0000.flac ..."""

    def paper_results(self, split: str) -> list[PaperResult]:
        return _asr_paper(LIBRISPEECH, split)

    def load(self, data: Path, split: str) -> list[EvalSample]:
        expect_dir(data, "the LibriSpeech corpus", self.layout)
        folder = data / split if (data / split).is_dir() else data
        if not is_librispeech(folder):
            raise BenchmarkFileError(f"{folder}: no <speaker>/<chapter>/*.trans.txt transcripts. "
                                     f"Expected layout:\n{self.layout}")
        return _transcribed(folder)

    def score(self, record: dict[str, Any]) -> dict[str, Any]:
        return {"wer": wer([record["reference"]["text"]], [record["prediction"]])}

    def summarize(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return {"wer": wer([r["reference"]["text"] for r in records], [r["prediction"] for r in records]),
                "utterances": len(records)}


class Aishell(_SpeechTask):
    name = "aishell"
    title = "Aishell-1"
    splits = ("test", "dev")
    default_split = "test"
    max_new_tokens = 128
    headline = "cer"
    headline_label = "CER (%)"
    layout = """data_aishell/
  transcript/aishell_transcript_v0.8.txt     ('<utterance-id> <words separated by spaces>')
  wav/test/<speaker>/<utterance-id>.wav ...  (the per-speaker archives in wav/ extracted)
  wav/dev/<speaker>/<utterance-id>.wav ..."""

    def paper_results(self, split: str) -> list[PaperResult]:
        return _asr_paper(AISHELL, split)

    def load(self, data: Path, split: str) -> list[EvalSample]:
        expect_dir(data, "the Aishell-1 corpus", self.layout)
        expect_file(data / "transcript", ["aishell_transcript_v0.8.txt"], "the transcripts", self.layout)
        return _transcribed(data / "wav" / split)

    def score(self, record: dict[str, Any]) -> dict[str, Any]:
        return {"cer": cer([record["reference"]["text"]], [record["prediction"]])}

    def summarize(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return {"cer": cer([r["reference"]["text"] for r in records], [r["prediction"] for r in records]),
                "utterances": len(records)}
