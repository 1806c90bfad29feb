"""Fuzzing the data readers (seeded and bounded: the same few hundred inputs on every run).

Whatever a data file holds (random JSON shapes and types, bytes that are not UTF-8, truncated
lines, damaged CSV and NPZ files), a reader either yields samples or reports the bad record as a
`DataError` whose source names the file and the line; it never raises anything else, and with
`on_error="skip"` every non-blank line of a JSONL file is either kept or counted as skipped.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from modrwkv.data.readers import AsrManifestReader, DataError, LlavaReader, OpenAIChatReader, TimeSeriesReader
from modrwkv.textfiles import packed_format

FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Keys the readers look for, so that random records often get past the first checks.
KEYS = ["conversations", "from", "value", "image", "images", "messages", "role", "content", "type", "text",
        "image_url", "url", "input_audio", "data", "format", "audio", "audio_filepath", "path", "duration", "id",
        "human", "gpt", "user", "assistant", "system"]
TEXTS = st.one_of(st.sampled_from(["<image>", "<audio>", "<series>", "a.png", "tone.wav", "missing.png",
                                   "data:image/png;base64,AAAA", "http://x/y.png", "user", "assistant", "human",
                                   "gpt", "text", "image_url", "input_audio", "wav"]),
                  st.text(max_size=12))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                    st.floats(allow_nan=True, allow_infinity=True), TEXTS)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=6)), inner, max_size=5)),
    max_leaves=20)


def _line(value, raw: bytes, mode: int) -> bytes:
    """One JSONL line: the JSON of a random value, random bytes, or that JSON damaged."""
    text = json.dumps(value, allow_nan=True).encode()
    if mode == 0:
        return text
    if mode == 1:
        return raw.replace(b"\n", b" ")
    cut = len(text) // 2
    return (text[:cut] + raw + text[cut:]).replace(b"\n", b" ")


LINES = st.lists(st.tuples(VALUES, st.binary(max_size=8), st.integers(0, 2)), min_size=1, max_size=8)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz-media")  # pytest's: deleted after a passing run (mkdtemp's never was)
    Image.new("RGB", (4, 4), (255, 0, 0)).save(folder / "a.png")
    import soundfile

    soundfile.write(folder / "tone.wav", np.zeros(800, dtype=np.float32), 16000)
    return folder


@pytest.mark.parametrize("reader_cls", [LlavaReader, OpenAIChatReader, AsrManifestReader])
@FUZZ
@given(lines=LINES)
def test_jsonl_readers_keep_or_report_every_line(media, reader_cls, lines):
    path = media / "fuzz.jsonl"
    body = [_line(*line) for line in lines]
    path.write_bytes(b"\n".join(body) + b"\n")
    body[0] = body[0].removeprefix(b"\xef\xbb\xbf")  # a byte-order mark starting the file is not data
    records = sum(1 for line in body if line.strip())
    is_array = b"\n".join(body).lstrip().startswith(b"[")  # how readers tell a JSON array from JSONL
    # A file that is one JSON object of objects holds records keyed by id (or a pandas table): not one per line.
    keyed = records == 1 and mode_is_object_of_objects(next(line for line in body if line.strip()))
    reader = reader_cls(path, on_error="skip")
    try:
        samples = list(reader)
    except DataError as err:  # only a file that looks like one JSON array, or an archive's, can fail as a whole
        assert err.reason == "unreadable_file" and (is_array or packed_format(path.read_bytes()[:16])), err
        return
    if is_array:
        return  # the file parsed as one JSON array: its records are numbered [i], not by line
    report = reader.report
    assert len(samples) == report.kept and report.kept + report.num_skipped == report.total
    assert keyed or report.total == records
    source = rf"{re.escape(str(path))}:(\d+|\[.+\])" if keyed else rf"{re.escape(str(path))}:\d+"
    for error in report.examples:
        assert re.fullmatch(source, error.source), error.source
    try:
        for _ in reader_cls(path, on_error="raise"):
            pass
    except DataError as err:
        assert re.fullmatch(source, err.source)


def mode_is_object_of_objects(line: bytes) -> bool:
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        return False
    return isinstance(value, dict) and bool(value) and all(isinstance(v, dict) for v in value.values())


CELLS = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers().map(str),
                  st.sampled_from(["", " ", "x", "1e5", "nan", '"', "\x00"]), st.text(max_size=5))


@FUZZ
@given(header=st.lists(st.sampled_from(["date", "a", "b", "OT", ""]), min_size=1, max_size=3),
       rows=st.lists(st.lists(CELLS, min_size=0, max_size=4), max_size=12), noise=st.binary(max_size=6),
       where=st.integers(0, 400))
def test_csv_reader_reports_bad_files_with_their_line(media, header, rows, noise, where):
    text = "\n".join(",".join(row) for row in [header, *rows]).encode()
    path = media / "fuzz.csv"
    path.write_bytes(text[:where] + noise + text[where:])
    reader = TimeSeriesReader(path, lookback=3, horizon=2, on_error="skip")
    try:
        samples = list(reader)
    except DataError as err:
        assert err.source == str(path) or re.fullmatch(rf"{re.escape(str(path))}:\d+", err.source), err.source
        return
    assert all(np.isfinite(s.series[0]).all() for s in samples)


@FUZZ
@given(arrays=st.dictionaries(st.sampled_from(["a", "b", "x"]),
                              st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=12), max_size=3),
       cut=st.integers(0, 2000), noise=st.binary(max_size=6))
def test_npz_reader_reports_damaged_archives(media, arrays, cut, noise):
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.array(v) for k, v in arrays.items()})
    data = buffer.getvalue()
    path = media / "fuzz.npz"
    path.write_bytes(data[:cut] + noise + data[cut + len(noise):] if cut < len(data) else data)
    try:
        list(TimeSeriesReader(path, lookback=3, horizon=2, on_error="skip"))
    except DataError as err:
        assert err.source == str(path) and err.reason in ("unreadable_file", "too_short")


def test_npz_holding_a_single_array_is_named(media):
    path = media / "single.npz"
    with open(path, "wb") as handle:
        np.save(handle, np.arange(10.0))
    with pytest.raises(DataError, match="holds a single .npy array, not an NPZ archive"):
        list(TimeSeriesReader(path, lookback=3, horizon=2))
    path.write_bytes(zipfile.ZipFile.__doc__.encode()[:30])
    with pytest.raises(DataError, match="cannot read NPZ"):
        list(TimeSeriesReader(path, lookback=3, horizon=2))
