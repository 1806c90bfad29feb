"""The image sets tutorials start from, read from the files torchvision (and the sets' own pages) download, as
labelled images (`webdataset.ClassRecord`: asked the reader's `prompt`, default "What is shown in the image?",
answered with the class, scored by exact match), for training and `modrwkv eval --task custom`:

    MNIST/raw/train-images-idx3-ubyte(.gz) + train-labels-idx1-ubyte(.gz)    (t10k-*: the test split; also
        FashionMNIST/raw/, KMNIST/raw/: the IDX files of yann.lecun.com's layout)
    cifar-10-batches-py/data_batch_1 ... data_batch_5, test_batch + batches.meta   (cs.toronto.edu/~kriz/cifar)
    cifar-100-python/train, test + meta

A data file is one split: an IDX images file (its labels file found beside it by name), or one CIFAR batch (its
class names from the meta file beside it). A folder holding both splits (MNIST/raw/, cifar-10-batches-py/) is
refused naming the files to train and to evaluate on, as a folder of train/ and test/ splits is. MNIST's answers are
its digits, Fashion-MNIST's (a FashionMNIST folder, as torchvision names it) and CIFAR's their class names
(CIFAR-100's fine labels; the reader's `label_column: coarse_labels` answers with its 20 superclasses), KMNIST's
and any other IDX set's its label numbers. A record's id is "file name:index" (test_batch:0).

CIFAR's batches are Python pickles. They are read with an unpickler that builds nothing but dicts, lists, numbers,
bytes and numpy arrays (`_SafeUnpickler`): a pickle can run any code when loaded, and a data file is no place for
that; any other object is the file's error.
"""

from __future__ import annotations

import gzip
import io
import pickle
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .base import DataError
from .webdataset import CLASS_PROMPTS, ClassRecord

Records = Iterator[tuple[str, Callable[[], Any]]]

# torchvision's class names of Fashion-MNIST (its `FashionMNIST.classes`), in label order
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
_IDX_IMAGES = re.compile(r"(?P<split>.+)-images-idx3-ubyte(?P<gz>\.gz)?")
_IDX_MAGIC = {0x0803: 3, 0x0801: 1}  # unsigned-byte IDX files of 3 dimensions (images) and 1 (labels)
_CIFAR_BATCHES = re.compile(r"data_batch_\d+|test_batch|train|test")
_CIFAR_META = ("batches.meta", "meta")
CIFAR_LABELS = {"batches.meta": ("labels", "label_names"), "meta": ("fine_labels", "fine_label_names")}
CIFAR100_COARSE = ("coarse_labels", "coarse_label_names")


def is_torchvision_set(path: Path) -> bool:
    """An IDX images file, a CIFAR batch (a batch name beside CIFAR's meta file), or a folder holding either."""
    if path.is_dir():
        return bool(_idx_images(path) or _cifar_batches(path))
    return bool(_IDX_IMAGES.fullmatch(path.name)) or _cifar_meta(path) is not None


def has_label_choice(path: Path) -> bool:
    """Whether the reader's `label_column` chooses what `path` answers: a CIFAR-100 batch (fine or coarse labels)."""
    meta = _cifar_meta(path) if path.is_file() else None
    return meta is not None and meta.name == "meta"


def torchvision_records(path: Path, prompt: str | None = None, label_column: str | None = None) -> Records:
    """(source "file:index", load) per image of the IDX images file or CIFAR batch `path` (`is_torchvision_set`),
    each loading its labelled record; a folder of both splits raises `DataError` (unreadable_file) naming them."""
    if path.is_dir():
        files = _idx_images(path) or _cifar_batches(path)
        train = [name for name in files if not name.startswith(("t10k", "test"))]
        test = [name for name in files if name.startswith(("t10k", "test"))]
        several = len(train) > 1 and train[0].startswith("data_batch_")  # CIFAR-10's five training batches
        given = str(path / "data_batch_*") if several else ", ".join(str(path / name) for name in train)
        raise DataError(str(path), "unreadable_file", f"holds the set's files {', '.join(files)}: give the files of "
                        f"one split, {given} to train on (modrwkv init --data, data.train)"
                        + (f", {path / test[0]} to evaluate on (modrwkv eval --task custom --data)" if test else ""))
    question = prompt if prompt is not None else CLASS_PROMPTS["image"]
    if _IDX_IMAGES.fullmatch(path.name):
        if label_column is not None:
            raise DataError(str(path), "unreadable_file", f"an IDX set answers with its labels file, not a column "
                            f"{label_column!r} (data.options.label_column): leave it out")
        images, labels, names = _idx_set(path)
    else:
        images, labels, names = _cifar_set(path, label_column)
    for index in range(len(images)):
        yield f"{path}:{index}", _loader(images, labels, names, index, question, f"{path}:{index}",
                                         f"{path.name}:{index}")


def _loader(images: np.ndarray, labels: np.ndarray, names: tuple[str, ...] | None, index: int, question: str,
            source: str, identifier: str) -> Callable[[], Any]:
    def load() -> ClassRecord:
        label = int(labels[index])
        if names is not None and not 0 <= label < len(names):
            raise DataError(source, "wrong_type", f"label {label} is no class of the {len(names)} named")
        answer = names[label] if names is not None else str(label)
        return ClassRecord({"image": images[index], "question": question, "answer": answer, "id": identifier,
                            "metric": "exact"})

    return load


def _idx_images(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if _IDX_IMAGES.fullmatch(p.name))


def _cifar_batches(folder: Path) -> list[str]:
    if not any((folder / meta).is_file() for meta in _CIFAR_META):
        return []
    return sorted(p.name for p in folder.iterdir() if _CIFAR_BATCHES.fullmatch(p.name) and p.is_file())


def _cifar_meta(path: Path) -> Path | None:
    """The meta file of a CIFAR batch `path` (batches.meta for CIFAR-10's, meta for CIFAR-100's)."""
    if not _CIFAR_BATCHES.fullmatch(path.name):
        return None
    return next((path.parent / meta for meta in _CIFAR_META if (path.parent / meta).is_file()), None)


def _read(path: Path) -> bytes:
    try:
        data = path.read_bytes()
        return gzip.decompress(data) if path.suffix == ".gz" else data
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise DataError(str(path), "unreadable_file", f"cannot read: {err}") from None


def _idx(path: Path, dimensions: int) -> np.ndarray:
    """An unsigned-byte IDX array (magic 0x0803: [N, rows, columns], 0x0801: [N]), as LeCun's page specifies."""
    data = _read(path)
    magic = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if _IDX_MAGIC.get(magic) != dimensions:  # type: ignore[arg-type]
        raise DataError(str(path), "unreadable_file", f"not an unsigned-byte IDX file of {dimensions} dimension(s) "
                        f"(its magic number: {magic!r})")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dimensions))
    start = 4 + 4 * dimensions
    if len(data) - start != int(np.prod(shape)):
        raise DataError(str(path), "unreadable_file", f"holds {len(data) - start} bytes of values for the shape "
                        f"{list(shape)} its header gives: truncated or damaged")
    return np.frombuffer(data, dtype=np.uint8, offset=start).reshape(shape)


def _idx_set(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...] | None]:
    match = _IDX_IMAGES.fullmatch(path.name)
    assert match is not None
    labels_path = path.with_name(f"{match['split']}-labels-idx1-ubyte{match['gz'] or ''}")
    if not labels_path.is_file():
        raise DataError(str(path), "unreadable_file", f"its labels file {labels_path.name} is not beside it")
    images, labels = _idx(path, 3), _idx(labels_path, 1)
    if len(images) != len(labels):
        raise DataError(str(path), "unreadable_file", f"{len(images)} images but {len(labels)} labels in "
                        f"{labels_path.name}")
    parts = {part.lower() for part in path.parts}
    names = FASHION_CLASSES if "fashionmnist" in parts or "fashion-mnist" in parts else None
    return images, labels, names


class _SafeUnpickler(pickle.Unpickler):
    """Builds dicts, lists, numbers, bytes and numpy arrays only (the module docstring)."""

    _reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's own, wherever this numpy keeps it
    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"): _reconstruct,
                ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
                ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):  # how protocol 2 writes bytes from Python 3
            import codecs

            return lambda text, encoding="latin1": codecs.encode(text, "latin1")
        found = self._ALLOWED.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"{module}.{name} is no array, list or number")
        return found


def _unpickle(path: Path) -> dict[str, Any]:
    try:
        value = _SafeUnpickler(io.BytesIO(_read(path)), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise DataError(str(path), "unreadable_file", f"not a CIFAR batch: {err}") from None
    if not isinstance(value, dict):
        raise DataError(str(path), "unreadable_file", f"not a CIFAR batch: holds a {type(value).__name__}")
    return {key.decode("latin1") if isinstance(key, bytes) else key: item for key, item in value.items()}


def _cifar_set(path: Path, label_column: str | None) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    meta_path = _cifar_meta(path)
    assert meta_path is not None
    labels_key, names_key = CIFAR_LABELS[meta_path.name]
    if label_column is not None:
        if meta_path.name != "meta" or label_column not in (labels_key, CIFAR100_COARSE[0]):
            raise DataError(str(path), "unreadable_file", f"no labels {label_column!r} (data.options.label_column) "
                            f"to answer with: this set's are {labels_key!r}"
                            + (f" and {CIFAR100_COARSE[0]!r}" if meta_path.name == "meta" else ""))
        if label_column == CIFAR100_COARSE[0]:
            labels_key, names_key = CIFAR100_COARSE
    batch, meta = _unpickle(path), _unpickle(meta_path)
    data, labels, names = batch.get("data"), batch.get(labels_key), meta.get(names_key)
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels is None:
        raise DataError(str(path), "unreadable_file", f"not a CIFAR batch: no [N, 3072] 'data' and {labels_key!r} "
                        f"(its keys: {', '.join(map(str, batch))})")
    if not isinstance(names, list) or len(data) != len(labels):
        raise DataError(str(meta_path), "unreadable_file", f"no {names_key!r} list of class names, or "
                        f"{len(data)} images but {len(labels)} labels in {path.name}")
    # CIFAR stores each image as its red, then green, then blue 32 x 32 plane
    images = data.astype(np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, np.asarray(labels), tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
