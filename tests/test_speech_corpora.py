"""LibriSpeech and Aishell-1 in the layouts openslr ships them, read for training (`data.format: asr`) by the same
code the `librispeech` and `aishell` eval tasks read them with (`data.readers.speech_corpora`)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile
import yaml

from eval_fixtures import write_aishell
from modrwkv.cli import main
from modrwkv.data.readers import AsrManifestReader, DataError
from modrwkv.data.readers.detect import detect_format
from modrwkv.evaluation.tasks import custom_task, get_task

# train-clean-100's first chapter of speaker 19 and of speaker 26, as the transcripts open (abridged)
CHAPTERS = {
    ("train-clean-100", "19", "198"): ["NORTHANGER ABBEY", "THIS LITTLE WORK WAS FINISHED IN THE YEAR EIGHTEEN O THREE"],
    ("train-clean-100", "26", "495"): ["CHAPTER ONE MISSUS RACHEL LYNDE IS SURPRISED"],
    ("test-clean", "1089", "134686"): ["HE HOPED THERE WOULD BE STEW FOR DINNER"],
}


def librispeech(root: Path) -> Path:
    corpus = root / "LibriSpeech"
    for (split, speaker, chapter), texts in CHAPTERS.items():
        folder = corpus / split / speaker / chapter
        folder.mkdir(parents=True)
        lines = []
        for number, text in enumerate(texts):
            utterance = f"{speaker}-{chapter}-{number:04d}"
            soundfile.write(folder / f"{utterance}.flac", np.zeros(1600, dtype=np.float32), 16000, format="FLAC")
            lines.append(f"{utterance} {text}")
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return corpus


def read(path: Path) -> list[tuple[str, str, str]]:
    return [(s.meta["id"], Path(s.audios[0]).name, s.messages[-1].content)
            for s in AsrManifestReader(path, on_error="raise")]


TRAIN = [("19-198-0000", "19-198-0000.flac", "NORTHANGER ABBEY"),
         ("19-198-0001", "19-198-0001.flac", "THIS LITTLE WORK WAS FINISHED IN THE YEAR EIGHTEEN O THREE"),
         ("26-495-0000", "26-495-0000.flac", "CHAPTER ONE MISSUS RACHEL LYNDE IS SURPRISED")]


def test_a_librispeech_split_its_speakers_chapters_and_transcripts_train_as_asr_records(tmp_path):
    corpus = librispeech(tmp_path)
    split = corpus / "train-clean-100"
    assert detect_format(split) == "asr"
    assert read(split) == TRAIN
    assert read(split / "19") == TRAIN[:2] and read(split / "19" / "198") == TRAIN[:2]
    assert read(split / "26" / "495" / "26-495.trans.txt") == TRAIN[2:]
    sample = next(iter(AsrManifestReader(split)))
    assert sample.source == f"{split / '19' / '198' / '19-198.trans.txt'}:1"
    assert sample.messages[0].content == "<audio>\nTranscribe the audio."
    # the eval task reads the test split with the same code: its utterances, its references
    task = get_task("librispeech")
    assert [(s.id, s.reference["text"], s.audio[0].name) for s in task.load(corpus, "test-clean")] == [
        ("1089-134686-0000", "HE HOPED THERE WOULD BE STEW FOR DINNER", "1089-134686-0000.flac")]
    assert [(s.id, s.reference["answers"]) for s in custom_task(str(corpus / "test-clean")).load(
        corpus / "test-clean", "all")] == [("1089-134686-0000", ["HE HOPED THERE WOULD BE STEW FOR DINNER"])]


def test_the_corpus_of_splits_is_refused_naming_them_and_bad_lines_are_named(tmp_path, capsys):
    corpus = librispeech(tmp_path)
    refusal = (f"{corpus}: the LibriSpeech corpus, of the splits test-clean, train-clean-100: give the split folders "
               f"to read (e.g. {corpus / 'train-clean-100'}; data.train takes several), so that no test or dev split "
               "is trained on")
    with pytest.raises(DataError, match=re.escape(refusal)):
        list(AsrManifestReader(corpus))
    assert main(["init", "--data", str(corpus), "--yes", "--output", str(tmp_path / "x.yaml")]) != 0
    assert refusal in capsys.readouterr().err
    chapter = corpus / "train-clean-100" / "19" / "198"
    transcripts = chapter / "19-198.trans.txt"
    transcripts.write_text("19-198-0000 NORTHANGER ABBEY\n19-198-0001\n19-198-0002 A LINE WITHOUT ITS AUDIO\n")
    reader = AsrManifestReader(chapter)
    assert [s.meta["id"] for s in reader] == ["19-198-0000"]
    assert [(e.source, e.reason) for e in reader.report.examples] == [
        (f"{transcripts}:2", "missing_field"), (f"{transcripts}:3", "missing_media")]
    assert reader.report.examples[0].detail == "expected '<utterance-id> <transcript>', got '19-198-0001'"
    assert str(chapter / "19-198-0002.flac") in reader.report.examples[1].detail


def test_init_writes_a_config_that_trains_the_split_and_evaluates_the_test_split(tmp_path, monkeypatch, capsys):
    librispeech(tmp_path)
    monkeypatch.chdir(tmp_path)  # the split given relative to here, as a user types it
    assert main(["init", "--data", "LibriSpeech/train-clean-100", "--yes", "--device", "cpu",
                 "--output", "libri.yaml"]) == 0
    assert "evaluate:  modrwkv eval --task custom --model runs/train-clean-100/final --data LibriSpeech/test-clean" \
        in capsys.readouterr().out
    config = yaml.safe_load(Path("libri.yaml").read_text())
    assert config["data"]["format"] == "asr" and config["data"]["train"] == ["LibriSpeech/train-clean-100"]
    assert read(Path("LibriSpeech/train-clean-100")) == TRAIN


def test_an_aishell_split_trains_with_its_words_joined_and_the_corpus_is_refused(tmp_path):
    corpus = write_aishell(tmp_path)  # test/S0764: two transcribed recordings and one without (left out)
    split = corpus / "wav" / "test"
    assert detect_format(split) == "asr"
    assert read(split) == [("BAC009S0764W0121", "BAC009S0764W0121.wav", "甚至出现交易几乎停滞的情况"),
                           ("BAC009S0764W0122", "BAC009S0764W0122.wav", "一二线城市虽然也处于调整中")]
    transcript = corpus / "transcript" / "aishell_transcript_v0.8.txt"
    assert next(iter(AsrManifestReader(split))).source == f"{transcript}:1"
    for given in (corpus, corpus / "wav"):
        with pytest.raises(DataError, match=re.escape(f"{corpus}: the Aishell-1 corpus, of the splits test: give a "
                                                      f"split's wav folder (e.g. {corpus / 'wav' / 'train'};")):
            list(AsrManifestReader(given))
    # the eval task: the same utterances; CER ignores the spaces the transcript file writes between words
    assert [(s.id, s.reference["text"]) for s in get_task("aishell").load(corpus, "test")] == [
        ("BAC009S0764W0121", "甚至出现交易几乎停滞的情况"), ("BAC009S0764W0122", "一二线城市虽然也处于调整中")]
