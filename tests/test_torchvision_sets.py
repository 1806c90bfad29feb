"""MNIST's IDX files and CIFAR's pickled batches, as torchvision downloads them, read as labelled images
(`data.readers.torchvision_sets`): pixels and labels checked against the sets' published byte layouts."""

from __future__ import annotations

import gzip
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from modrwkv.cli import main
from modrwkv.data.readers import DataError, QAReader
from modrwkv.data.readers.detect import detect_format
from modrwkv.evaluation.tasks import CustomTask

CIFAR10 = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]


def idx(values: np.ndarray, magic: int) -> bytes:
    """An IDX file as yann.lecun.com/exdb/mnist specifies it: a big-endian magic number (0x0803 images, 0x0801
    labels), each dimension's size as a big-endian 32-bit integer, then the unsigned bytes."""
    return magic.to_bytes(4, "big") + b"".join(size.to_bytes(4, "big") for size in values.shape) + values.tobytes()


def write_mnist(raw: Path, gz: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = {}
    for split, count in (("train", 4), ("t10k", 2)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, count, dtype=np.uint8)
        for name, data in ((f"{split}-images-idx3-ubyte", idx(images, 0x0803)),
                           (f"{split}-labels-idx1-ubyte", idx(labels, 0x0801))):
            (raw / (name + ".gz" if gz else name)).write_bytes(gzip.compress(data) if gz else data)
        written[split] = images, labels
    return written


def python2_pickle(value: object) -> bytes:
    """A pickle as CIFAR's (Python 2's cPickle, protocol 2) names numpy: `numpy.core.multiarray._reconstruct`."""
    return pickle.dumps(value, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def write_cifar10(folder: Path) -> dict[str, tuple[np.ndarray, list[int]]]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    written = {}
    for name in ("data_batch_1", "data_batch_2", "test_batch"):
        data = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
        labels = [int(label) for label in rng.integers(0, 10, 3)]
        (folder / name).write_bytes(python2_pickle({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                                                    b"filenames": [b"a.png", b"b.png", b"c.png"]}))
        written[name] = data, labels
    (folder / "batches.meta").write_bytes(python2_pickle({b"num_cases_per_batch": 10000, b"label_names": CIFAR10,
                                                          b"num_vis": 3072}))
    return written


def test_mnist_idx_files_read_as_their_images_and_digits(tmp_path):
    for gz in (False, True):
        raw = tmp_path / ("gz" if gz else "plain") / "MNIST" / "raw"
        written = write_mnist(raw, gz)
        train = raw / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
        assert detect_format(train) == "qa"
        samples = list(QAReader(train, on_error="raise"))
        images, labels = written["train"]
        assert [s.messages[1].content for s in samples] == [str(label) for label in labels]
        assert all(np.array_equal(s.images[0], image) for s, image in zip(samples, images, strict=True))
        assert [s.meta["id"] for s in samples] == [f"{train.name}:{i}" for i in range(4)]
        assert samples[0].messages[0].content == "<image>\nWhat is shown in the image?"
    # Fashion-MNIST (torchvision's folder name): its class names
    raw = tmp_path / "FashionMNIST" / "raw"
    _, labels = write_mnist(raw)["t10k"]
    fashion = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
    assert [s.reference["answers"] for s in CustomTask().load(raw / "t10k-images-idx3-ubyte", "all")] == [
        [fashion[label]] for label in labels]


def test_cifar_batches_read_as_their_images_and_class_names(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "cifar-10-batches-py"
    written = write_cifar10(folder)
    data, labels = written["data_batch_2"]
    samples = list(QAReader(folder / "data_batch_2", on_error="raise"))
    assert [s.messages[1].content for s in samples] == [CIFAR10[label].decode() for label in labels]
    for sample, row in zip(samples, data, strict=True):  # CIFAR's row: 1024 red, 1024 green, 1024 blue, row-major
        image = sample.images[0]
        assert image.shape == (32, 32, 3)
        assert all(image[y, x, c] == row[c * 1024 + y * 32 + x] for y, x, c in ((0, 0, 0), (5, 17, 1), (31, 31, 2)))
    # data_batch_* for training (the five batches), test_batch for eval
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--data", "cifar-10-batches-py/data_batch_*", "--yes", "--device", "cpu",
                 "--output", "cifar.yaml"]) == 0
    out = capsys.readouterr().out
    assert "cifar-10-batches-py/data_batch_*: qa format, 6 usable samples, inputs: image" in out
    assert "--data cifar-10-batches-py/test_batch\n" in out  # the held-out batch, as init names it
    assert [len(list(QAReader(folder / name))) for name in ("data_batch_1", "data_batch_2")] == [3, 3]
    test = CustomTask().load(folder / "test_batch", "all")
    assert [(s.id, s.reference) for s in test] == [
        (f"test_batch:{i}", {"metric": "exact", "answers": [CIFAR10[label].decode()]})
        for i, label in enumerate(written["test_batch"][1])]


def test_cifar100_answers_its_fine_or_coarse_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    data = np.zeros((2, 3072), dtype=np.uint8)
    fine = [f"fine{k}".encode() for k in range(100)]
    coarse = [f"coarse{k}".encode() for k in range(20)]
    (folder / "train").write_bytes(python2_pickle({b"filenames": [b"a", b"b"], b"batch_label": b"training batch 1 of 1",
                                                   b"fine_labels": [19, 29], b"coarse_labels": [11, 15], b"data": data}))
    (folder / "meta").write_bytes(python2_pickle({b"fine_label_names": fine, b"coarse_label_names": coarse}))
    assert [s.messages[1].content for s in QAReader(folder / "train")] == ["fine19", "fine29"]
    assert [s.messages[1].content for s in QAReader(folder / "train", label_column="coarse_labels")] == [
        "coarse11", "coarse15"]
    with pytest.raises(DataError, match="no labels 'label' .* this set's are 'fine_labels' and 'coarse_labels'"):
        list(QAReader(folder / "train", label_column="label"))
    assert main(["init", "--data", str(folder / "train"), "--label-column", "coarse_labels", "--yes", "--device",
                 "cpu", "--output", str(tmp_path / "c100.yaml")]) == 0


def test_a_folder_of_both_splits_and_damaged_or_hostile_files_are_refused(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    write_mnist(raw)
    with pytest.raises(DataError, match=re.escape(
            f"{raw}: holds the set's files t10k-images-idx3-ubyte, train-images-idx3-ubyte: give the files of one "
            f"split, {raw / 'train-images-idx3-ubyte'} to train on (modrwkv init --data, data.train), "
            f"{raw / 't10k-images-idx3-ubyte'} to evaluate on (modrwkv eval --task custom --data)")):
        list(QAReader(raw))
    cifar = tmp_path / "cifar-10-batches-py"
    write_cifar10(cifar)
    with pytest.raises(DataError, match=re.escape(f"give the files of one split, {cifar / 'data_batch_*'} to train on")):
        list(QAReader(cifar))
    labels = raw / "train-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-1])
    with pytest.raises(DataError, match=r"holds 3 bytes of values for the shape \[4\] its header gives"):
        list(QAReader(raw / "train-images-idx3-ubyte"))
    # a pickle that would run a command when loaded is refused, the command not run
    marker = tmp_path / "ran"

    class Hostile:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    (cifar / "data_batch_1").write_bytes(pickle.dumps({b"data": Hostile()}, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_1: not a CIFAR batch: (posix|os|nt)\.system is no array"):
        list(QAReader(cifar / "data_batch_1"))
    assert not marker.exists()
