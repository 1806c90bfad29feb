#!/usr/bin/env python
"""scikit-learn's bundled handwritten digits as a user's own image data set, plus the baseline.

    python bench/digits/prepare.py --out data/digits [--seed 0] [--test-fraction 0.2] [--val-fraction 0.2]
        [--layout jsonl|kaggle]

Writes every 8x8 image as a PNG file (16 grey levels scaled to 0-255) under OUT/images/, a seeded
stratified split as OUT/train.jsonl and OUT/test.jsonl (with --val-fraction, OUT/val.jsonl holds that
share of the training images, at random, and train.jsonl the rest), question-answer records
({"image", "question", "answer"}: `data.format: qa` for `modrwkv train`, and what
`modrwkv eval --task custom` reads), and prints the held-out
accuracy of logistic regression on the same pixels (read back from the PNG files) and split: the
number a ModRWKV trained on this data should come close to. The numbers and the commands that
train and evaluate through the CLI are in docs/custom-data.md. `prepare_pairs.py` builds records
of two digits each from the same images and split.

`--layout kaggle` writes the same split and pixels as a Kaggle competition (APTOS 2019) publishes its
images instead: OUT/train.csv with the header `id_code,digit` and ids of 12 hex digits written without
their extension, the images in OUT/train_images/<id_code>.png; test.csv and test_images/ (val.csv and
val_images/) likewise; no images/ folder and no JSONL. `modrwkv init --data OUT/train.csv
--label-column digit` reads it (docs/custom-data.md, "A table of media rows").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from pathlib import Path

import numpy as np
from PIL import Image

QUESTION = "Which digit is this?"


def digit_pixels() -> tuple[np.ndarray, np.ndarray]:
    """Every digit's pixels as they are written (N x 8 x 8, the 16 grey levels scaled to 0-255), and the digits."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return np.round(digits.images * (255 / 16)).astype(np.uint8), digits.target


def write_digit_images(out: Path) -> tuple[list[str], np.ndarray]:
    """Every digit as OUT/images/NNNN.png; returns the file names and the digits they show."""
    pixels, targets = digit_pixels()
    (out / "images").mkdir(parents=True, exist_ok=True)
    names = [f"{index:04d}.png" for index in range(len(pixels))]
    for name, image in zip(names, pixels, strict=True):
        Image.fromarray(image, mode="L").save(out / "images" / name)
    return names, targets


def kaggle_id(index: int) -> str:
    """The image's id in the Kaggle layout: 12 hex digits hashed from its index, as APTOS's id_code (000c1434d8d7)."""
    return hashlib.sha256(f"digit {index}".encode()).hexdigest()[:12]


def write_kaggle_layout(out: Path, files: list[tuple[str, np.ndarray]]) -> tuple[list[Path], np.ndarray]:
    """Each split as OUT/<split>.csv (`id_code,digit`, the ids without their extension) and its images as
    OUT/<split>_images/<id_code>.png; returns every image's path (by index) and the digits they show."""
    pixels, targets = digit_pixels()
    paths: list[Path] = [Path()] * len(pixels)
    for split, subset in files:
        (out / f"{split}_images").mkdir(parents=True, exist_ok=True)
        rows = ["id_code,digit"]
        for i in subset:
            paths[i] = out / f"{split}_images" / f"{kaggle_id(i)}.png"
            Image.fromarray(pixels[i], mode="L").save(paths[i])
            rows.append(f"{kaggle_id(i)},{targets[i]}")
        (out / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return paths, targets


def split_images(targets: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The seeded, stratified split of the images into training and held-out indices."""
    from sklearn.model_selection import train_test_split

    return train_test_split(np.arange(len(targets)), test_size=test_fraction, random_state=seed, stratify=targets)


def fit_logistic_regression(paths: list[Path], targets: np.ndarray, train_idx: np.ndarray):
    """Logistic regression on the training images' pixels, and every image's pixels (N x 64), by index.

    The baseline sees exactly what the model sees: the pixels of the written files."""
    from sklearn.linear_model import LogisticRegression

    pixels = np.stack([np.asarray(Image.open(path), dtype=np.float64).ravel() / 255 for path in paths])
    return LogisticRegression(max_iter=5000).fit(pixels[train_idx], targets[train_idx]), pixels


def add_split_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/test split")
    parser.add_argument("--test-fraction", type=float, default=0.2)


def carve_validation(train_idx: np.ndarray, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """The training indices shuffled (Python's `random`, seeded) and cut: the first to train on, the last
    `fraction` of them to validate on (docs/custom-data.md, "Validation by accuracy")."""
    order = [int(i) for i in train_idx]
    random.Random(seed).shuffle(order)
    cut = len(order) - round(fraction * len(order))
    return order[:cut], order[cut:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="data/digits",
                        help="folder to write (images/, train.jsonl, test.jsonl; or the --layout kaggle files)")
    add_split_arguments(parser)
    parser.add_argument("--val-fraction", type=float, default=0.0,
                        help="also write val.jsonl (val.csv): this share of the training images, held out from train")
    parser.add_argument("--layout", choices=["jsonl", "kaggle"], default="jsonl",
                        help="kaggle: train.csv (id_code,digit) and train_images/<id_code>.png, test.csv and "
                             "test_images/ likewise, as APTOS 2019 publishes its images")
    args = parser.parse_args()

    out = Path(args.out)
    targets = digit_pixels()[1]
    train_idx, test_idx = split_images(targets, args.test_fraction, args.seed)
    files = [("train", train_idx), ("test", test_idx)]
    if args.val_fraction:
        fit_idx, val_idx = carve_validation(train_idx, args.val_fraction, args.seed)
        train_idx = np.asarray(fit_idx)
        files = [("train", train_idx), ("val", val_idx), ("test", test_idx)]
    if args.layout == "kaggle":
        out.mkdir(parents=True, exist_ok=True)
        paths, targets = write_kaggle_layout(out, files)
    else:
        names, targets = write_digit_images(out)
        paths = [out / "images" / name for name in names]
        for split, subset in files:
            with (out / f"{split}.jsonl").open("w") as handle:
                for i in subset:
                    handle.write(json.dumps({"id": names[i], "image": f"images/{names[i]}", "question": QUESTION,
                                             "answer": str(targets[i])}) + "\n")

    classifier, pixels = fit_logistic_regression(paths, targets, train_idx)
    accuracy = 100 * classifier.score(pixels[test_idx], targets[test_idx])
    val = f", {len(files[1][1])} validation" if args.val_fraction else ""
    print(f"wrote {len(train_idx)} training{val} and {len(test_idx)} held-out images to {out}")
    if args.val_fraction:
        val_accuracy = 100 * classifier.score(pixels[files[1][1]], targets[files[1][1]])
        print(f"logistic regression on the validation images: {val_accuracy:.1f}%")
    print(f"logistic regression on the same pixels and split: {accuracy:.1f}% held-out accuracy")
    (out / "baseline.json").write_text(json.dumps({"logistic_regression_accuracy": accuracy,
                                                   "train": len(train_idx), "test": len(test_idx),
                                                   "seed": args.seed}) + "\n")


if __name__ == "__main__":
    main()
