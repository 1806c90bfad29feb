"""LibriSpeech and Aishell-1 in the layouts openslr ships them, read for training (`data.format: asr`) by the same
code the `librispeech` and `aishell` eval tasks read them with (`data.readers.speech_corpora`)."""

from __future__ import annotations

import json
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
from modrwkv.training import config_from_dict
from modrwkv.training.data import build_reader
from test_class_folders import init_error

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


def waves(paths: list[Path], rate: int = 22050, audio_format: str = "WAV") -> None:
    """A second of a different tone in each file, so that no two decode alike."""
    for number, path in enumerate(paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        tone = 0.1 * np.sin(2 * np.pi * (220 + 40 * number) * np.arange(rate) / rate)
        soundfile.write(path, tone.astype(np.float32), rate, format=audio_format)


def manifest(path: Path, records: list[dict]) -> Path:
    """The records as the project's plain ASR manifest (JSONL, audio paths relative to it)."""
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def same_samples(given: Path, expected: Path) -> list[tuple]:
    """The samples read from `given` (a corpus's layout), which equal those of the JSONL manifest `expected`: the
    same turns, the same audio files, the same ids."""
    def read_all(path: Path) -> list[tuple]:
        return [(s.messages, [str(Path(a).resolve()) for a in s.audios], s.meta)
                for s in AsrManifestReader(path, on_error="raise")]

    samples = read_all(given)
    assert samples == read_all(expected) and samples
    return samples


# LJSpeech-1.1's metadata.csv: no header, '<id>|<raw text>|<normalized text>' (its first two lines, then lines in
# its style: numbers spelt out in the third field, quotes and commas as text)
LJSPEECH = [
    ("LJ001-0001", "Printing, in the only sense with which we are at present concerned, differs from most if not "
     "from all the arts and crafts represented in the Exhibition", None),
    ("LJ001-0002", "in being comparatively modern.", None),
    ("LJ002-0100", "In 1801 the prison held 300 debtors.", "In eighteen oh one the prison held three hundred debtors."),
    ("LJ003-0007", 'He said "no," twice; Mr. Neild wrote it down.', 'He said "no," twice; Mister Neild wrote it down.'),
]


def ljspeech(root: Path, lines: list[str] | None = None) -> Path:
    corpus = root / "LJSpeech-1.1"
    waves([corpus / "wavs" / f"{utterance}.wav" for utterance, _, _ in LJSPEECH])
    lines = lines or [f"{utterance}|{raw}|{normalized or raw}" for utterance, raw, normalized in LJSPEECH]
    (corpus / "metadata.csv").write_text("\n".join(lines) + "\n")
    (corpus / "README").write_text("LJ Speech Dataset\n")
    return corpus


def test_ljspeech_reads_its_normalized_transcripts_as_its_jsonl_manifest(tmp_path, monkeypatch, capsys):
    corpus = ljspeech(tmp_path)
    expected = manifest(tmp_path / "lj.jsonl", [{"audio": f"LJSpeech-1.1/wavs/{utterance}.wav",
                                                 "text": normalized or raw, "id": utterance}
                                                for utterance, raw, normalized in LJSPEECH])
    for given in (corpus, corpus / "metadata.csv"):
        assert detect_format(given) == "asr"
        samples = same_samples(given, expected)
        assert [s[0][1].content for s in samples][2:] == [
            "In eighteen oh one the prison held three hundred debtors.",
            'He said "no," twice; Mister Neild wrote it down.']
    assert next(iter(AsrManifestReader(corpus))).source == f"{corpus / 'metadata.csv'}:1"
    # init, as a user gives the folder: an asr config training reads the same samples from
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--data", "LJSpeech-1.1", "--yes", "--device", "cpu", "--output", "lj.yaml"]) == 0
    assert "LJSpeech-1.1: asr format, 4 usable samples, inputs: audio" in capsys.readouterr().out
    config = yaml.safe_load(Path("lj.yaml").read_text())
    assert config["data"] == {"format": "asr", "train": ["LJSpeech-1.1"]}
    assert config["output"]["dir"] == "runs/LJSpeech-1.1"  # (the folder's whole name)
    reader = build_reader(config_from_dict(config).data)
    assert [(s.meta["id"], s.messages[1].content) for s in reader] == [
        (utterance, normalized or raw) for utterance, raw, normalized in LJSPEECH]
    # eval reads it too: each utterance's transcript is its reference, scored by WER
    assert [(s.id, s.reference) for s in custom_task(str(corpus)).load(corpus, "all")][2] == (
        "LJ002-0100", {"metric": "wer", "answers": ["In eighteen oh one the prison held three hundred debtors."]})


def test_ljspeech_bad_lines_are_named_by_file_and_line(tmp_path, capsys):
    lines = ["LJ001-0001|Printing, in the only sense|Printing, in the only sense",
             "LJ001-0002|in being comparatively modern.",  # a field short
             "LJ009-0009|a line without its recording|a line without its recording",
             "LJ002-0100|In 1801 the prison held 300 debtors.|"]  # an empty normalized text
    corpus = ljspeech(tmp_path, lines)
    metadata = corpus / "metadata.csv"
    reader = AsrManifestReader(corpus)
    assert [s.meta["id"] for s in reader] == ["LJ001-0001"]
    assert [str(e) for e in reader.report.examples] == [
        f"{metadata}:2: 2 fields split at '|' where the file's first line has 3 "
        "('<id>|<raw text>|<normalized text>')",
        f"{metadata}:3: media file not found: {corpus / 'wavs' / 'LJ009-0009.wav'}",
        f"{metadata}:4: the normalized text (field 3) is empty"]
    # a corpus in LJSpeech's layout with '<id>|<text>' lines: the text is the transcript
    (corpus / "metadata.csv").write_text("LJ001-0002|in being comparatively modern.\n")
    assert read(corpus) == [("LJ001-0002", "LJ001-0002.wav", "in being comparatively modern.")]
    # a first line of another shape: one line saying what a line holds
    (corpus / "metadata.csv").write_text("LJ001-0002|a|b|c\n")
    assert init_error(capsys, corpus, tmp_path)[0] == (
        f"modrwkv init: error: {metadata}:1: 4 fields split at '|': a line of LJSpeech's metadata.csv is "
        "'<id>|<raw text>|<normalized text>' (or '<id>|<text>'), without a header. Expected layout:")
    # a Hugging Face metadata.csv beside a wavs/ folder (a header of comma-separated names) is read as one
    (corpus / "metadata.csv").write_text("file_name,transcription\nwavs/LJ001-0002.wav,in being comparatively modern\n")
    assert [(s.audios, s.messages[1].content) for s in AsrManifestReader(corpus, on_error="raise")] == [
        ([str(corpus / "wavs" / "LJ001-0002.wav")], "in being comparatively modern")]
    # the folder above the corpus's: read as Hugging Face's metadata layout, which LJSpeech's file is not
    (corpus / "metadata.csv").write_text("\n".join(lines) + "\n")
    assert init_error(capsys, tmp_path, tmp_path) == [
        f"modrwkv init: error: {metadata}: LJSpeech's metadata.csv ('<id>|<raw text>|<normalized text>' lines, the "
        f"recordings in wavs/), not a Hugging Face metadata file: give {corpus} itself"]


@pytest.mark.parametrize("release", ["0.80", "0.92"])
def test_vctk_reads_each_transcript_with_its_recording_as_its_jsonl_manifest(tmp_path, release):
    """VCTK-Corpus (0.80: wav48/<speaker>/<id>.wav) and VCTK-Corpus-0.92 (wav48_silence_trimmed/<speaker>/
    <id>_mic1.flac and _mic2.flac): a transcript per file in txt/<speaker>/, each with its first microphone's
    recording; p315's recordings, whose transcripts 0.92 lacks, are left out."""
    corpus = tmp_path / ("VCTK-Corpus" if release == "0.80" else "VCTK-Corpus-0.92")
    texts = {"p225_001": "Please call Stella.", "p225_002": "Ask her to bring these things with her from the store.",
             "p226_001": "Please call Stella."}
    folder, names = ("wav48", ["{}.wav"]) if release == "0.80" else ("wav48_silence_trimmed",
                                                                       ["{}_mic1.flac", "{}_mic2.flac"])
    waves([corpus / folder / utterance[:4] / name.format(utterance) for utterance in [*texts, "p315_001"]
           for name in names], rate=48000, audio_format="WAV" if release == "0.80" else "FLAC")
    for utterance, text in texts.items():
        (corpus / "txt" / utterance[:4]).mkdir(parents=True, exist_ok=True)
        (corpus / "txt" / utterance[:4] / f"{utterance}.txt").write_text(text + "\n")
    (corpus / "speaker-info.txt").write_text("ID  AGE  GENDER  ACCENTS  REGION\n225  23  F  English  Southern\n")
    expected = manifest(tmp_path / "vctk.jsonl", [
        {"audio": f"{corpus.name}/{folder}/{utterance[:4]}/{names[0].format(utterance)}", "text": text,
         "id": utterance} for utterance, text in texts.items()])
    assert detect_format(corpus) == "asr"
    same_samples(corpus, expected)
    assert next(iter(AsrManifestReader(corpus))).source == str(corpus / "txt" / "p225" / "p225_001.txt")
    # a transcript whose recording is missing is a bad record naming both; an empty one, one naming it
    (corpus / "txt" / "p226" / "p226_002.txt").write_text("Six spoons of fresh snow peas.\n")
    (corpus / "txt" / "p226" / "p226_003.txt").write_text("\n")
    reader = AsrManifestReader(corpus)
    assert len(list(reader)) == 3
    missing = corpus / folder / "p226" / names[0].format("p226_002")
    assert [str(e) for e in reader.report.examples] == [
        f"{corpus / 'txt' / 'p226' / 'p226_002.txt'}: media file not found: {missing}",
        f"{corpus / 'txt' / 'p226' / 'p226_003.txt'}: its transcript {corpus / 'txt' / 'p226' / 'p226_003.txt'} is "
        "empty"]


def test_the_quickstarts_espeak_speech_in_ljspeech_layout_reads_as_the_quickstarts_samples(tmp_path):
    """The audio quickstart's own clips (espeak-ng, its voices, speeds and pitches) written in LJSpeech's layout:
    the samples read from metadata.csv are the ones the quickstart trains on, and the clips decode."""
    from modrwkv.encoders.media import load_audio
    from modrwkv.quickstart.speech import ESPEAK_HELP, EspeakMissing, espeak_binary, split_sentences, synthesize, \
        to_samples

    try:
        espeak_binary()
    except EspeakMissing:
        pytest.skip(ESPEAK_HELP)
    corpus = tmp_path / "LJSpeech-1.1"
    sentences, _ = split_sentences(6, 0, seed=0)
    clips = synthesize(sentences, corpus / "wavs", seed=1, prefix="LJ001", workers=2)
    (corpus / "metadata.csv").write_text("".join(f"{clip.path.stem}|{clip.text}|{clip.text}\n" for clip in clips))
    quickstart = to_samples(clips)
    read = list(AsrManifestReader(corpus, on_error="raise"))
    assert [(s.messages, s.audios) for s in read] == [(s.messages, [str(a) for a in s.audios]) for s in quickstart]
    assert all(len(load_audio(s.audios[0])) > 16000 * 0.8 for s in read)  # each a spoken sentence, at 16 kHz
