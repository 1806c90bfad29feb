"""Checks shared by the tests of the record containers (Parquet files, WebDataset tar shards): what
`modrwkv eval --task custom` and `modrwkv init` make of a container, to compare with its JSONL twin."""

from __future__ import annotations

import io
import json
import re
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from modrwkv.cli import main
from modrwkv.data.readers import QAReader
from modrwkv.data.readers.base import expand_paths
from modrwkv.data.sample import Sample
from modrwkv.encoders.media import load_image
from modrwkv.evaluation.tasks import BenchmarkFileError, CustomTask
from modrwkv.training import config_from_dict


def eval_custom(model: Path, data: list[str], output: Path,
                *options: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`modrwkv eval --task custom` of `data` (greedy, 4 new tokens; further `options`): its metrics and
    prediction records."""
    assert main(["eval", "--model", str(model), "--task", "custom", "--data", *data, "--output", str(output),
                 "--max-new-tokens", "4", *options]) == 0
    predictions = [json.loads(line) for line in (output / "predictions.jsonl").read_text().splitlines()]
    return json.loads((output / "summary.json").read_text())["metrics"], predictions


def check_init_reads_qa_folder(folder: Path, output: Path, capsys: Any, usable: int) -> None:
    """`modrwkv init --data FOLDER` finds `usable` qa samples with images and writes the folder as data.train."""
    capsys.readouterr()
    assert main(["init", "--data", str(folder), "--yes", "--device", "cpu", "--output", str(output)]) == 0
    assert f"{folder}: qa format, {usable} usable samples, inputs: image" in capsys.readouterr().out
    config = config_from_dict(yaml.safe_load(output.read_text()))
    assert config.data.format == "qa" and config.data.train == [str(folder)]


def noise_pngs(count: int, seed: int = 0) -> list[bytes]:
    """`count` uncompressed 256x256 PNGs of noise (about 197 KB each): media no container can shrink."""
    from PIL import Image

    rng, images = np.random.default_rng(seed), []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(buffer, format="PNG", compress_level=0)
        images.append(buffer.getvalue())
    return images


def read_qa_holding(path: Path) -> tuple[list[Sample], int]:
    """The samples of a qa container and the bytes Python holds once they are listed (tracemalloc)."""
    tracemalloc.start()
    try:
        samples = list(QAReader(path, on_error="raise"))
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return samples, held


def check_images_read_back(samples: list[Sample], images: list[bytes]) -> None:
    """Each sample's image reads back as the bytes written, and decodes as they do."""
    from PIL import Image

    assert [s.images[0].read() for s in samples[::19]] == images[::19]
    assert np.array_equal(np.asarray(load_image(samples[5].images[0])), np.asarray(Image.open(io.BytesIO(images[5]))))


def check_hub_split_shards_refused(folder: Path, suffix: str, write: Callable[[Path, int], None], output: Path,
                                   capsys: Any) -> None:
    """A folder (relative, under the working directory) as the hub keeps a repository: two train shards of 2 rows and
    a test shard of 1 (`write(path, rows)` writes one), of `suffix` (.parquet, .tar). Read whole it would mix the
    splits: `expand_paths`, `modrwkv init` and `eval --task custom` refuse it with one line naming each split's
    wildcard; the wildcard it names reads the split, and a folder of one split's shards stands for them."""
    folder.mkdir(parents=True)
    write(folder / f"train-00000-of-00002{suffix}", 2)
    write(folder / f"train-00001-of-00002{suffix}", 2)
    write(folder / f"test-00000-of-00001{suffix}", 1)
    refusal = (f"{folder}: holds the splits test-*{suffix}, train-*{suffix}, each a split's rows, which the folder "
               f"read whole would mix: give one split, {folder}/train-*{suffix} to train on (modrwkv init --data, "
               f"data.train); evaluate on {folder}/test-*{suffix} (modrwkv eval --task custom --data); to read every "
               f"split together, give {folder}/*{suffix}")
    with pytest.raises(FileNotFoundError) as caught:
        expand_paths([str(folder)], "data.train")
    assert str(caught.value) == f"data.train: {refusal}"
    assert main(["init", "--data", str(folder), "--yes", "--device", "cpu", "--output", str(output)]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"modrwkv init: error: --data: {refusal}"
    with pytest.raises(BenchmarkFileError, match=re.escape(f"--data: {refusal}")):
        CustomTask().load(folder, "test")
    assert main(["init", "--data", str(folder / f"train-*{suffix}"), "--yes", "--device", "cpu", "--output",
                 str(output)]) == 0
    assert "qa format, 4 usable samples" in capsys.readouterr().out
    (folder / f"test-00000-of-00001{suffix}").unlink()
    assert expand_paths([str(folder)], "data.train") == [str(folder / f"train-0000{k}-of-00002{suffix}")
                                                         for k in range(2)]
