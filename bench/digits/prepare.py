#!/usr/bin/env python
"""scikit-learn's bundled handwritten digits as a user's own image data set, plus the baseline.

    python bench/digits/prepare.py --out data/digits [--seed 0] [--test-fraction 0.2] [--val-fraction 0.2]

Writes every 8x8 image as a PNG file (16 grey levels scaled to 0-255) under OUT/images/, a seeded
stratified split as OUT/train.jsonl and OUT/test.jsonl (with --val-fraction, OUT/val.jsonl holds that
share of the training images, at random, and train.jsonl the rest), question-answer records
({"image", "question", "answer"}: `data.format: qa` for `modrwkv train`, and what
`modrwkv eval --task custom` reads), and prints the held-out
accuracy of logistic regression on the same pixels (read back from the PNG files) and split: the
number a ModRWKV trained on this data should come close to. The numbers and the commands that
train and evaluate through the CLI are in docs/custom-data.md. `prepare_pairs.py` builds records
of two digits each from the same images and split.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
from PIL import Image

QUESTION = "Which digit is this?"


def write_digit_images(out: Path) -> tuple[list[str], np.ndarray]:
    """Every digit as OUT/images/NNNN.png; returns the file names and the digits they show."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    (out / "images").mkdir(parents=True, exist_ok=True)
    names = []
    for index, image in enumerate(digits.images):
        name = f"{index:04d}.png"
        pixels = np.round(image * (255 / 16)).astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(out / "images" / name)
        names.append(name)
    return names, digits.target


def split_images(targets: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The seeded, stratified split of the images into training and held-out indices."""
    from sklearn.model_selection import train_test_split

    return train_test_split(np.arange(len(targets)), test_size=test_fraction, random_state=seed, stratify=targets)


def fit_logistic_regression(out: Path, names: list[str], targets: np.ndarray, train_idx: np.ndarray):
    """Logistic regression on the training images' pixels, and every image's pixels (N x 64).

    The baseline sees exactly what the model sees: the pixels of the written files."""
    from sklearn.linear_model import LogisticRegression

    pixels = np.stack([np.asarray(Image.open(out / "images" / n), dtype=np.float64).ravel() / 255 for n in names])
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
    parser.add_argument("--out", default="data/digits", help="folder to write (images/, train.jsonl, test.jsonl)")
    add_split_arguments(parser)
    parser.add_argument("--val-fraction", type=float, default=0.0,
                        help="also write val.jsonl: this fraction of the training images, held out from train.jsonl")
    args = parser.parse_args()

    out = Path(args.out)
    names, targets = write_digit_images(out)
    train_idx, test_idx = split_images(targets, args.test_fraction, args.seed)
    files = [("train.jsonl", train_idx), ("test.jsonl", test_idx)]
    if args.val_fraction:
        fit_idx, val_idx = carve_validation(train_idx, args.val_fraction, args.seed)
        train_idx = np.asarray(fit_idx)
        files = [("train.jsonl", train_idx), ("val.jsonl", val_idx), ("test.jsonl", test_idx)]
    for file, subset in files:
        with (out / file).open("w") as handle:
            for i in subset:
                handle.write(json.dumps({"id": names[i], "image": f"images/{names[i]}", "question": QUESTION,
                                         "answer": str(targets[i])}) + "\n")

    classifier, pixels = fit_logistic_regression(out, names, targets, train_idx)
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
