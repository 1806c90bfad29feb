#!/usr/bin/env python
"""Records of two handwritten digits and a question only both answer, plus baselines.

    python bench/digits/prepare_pairs.py --out data/digit-pairs [--question digits|sum|larger]
        [--train-pairs 2000] [--test-pairs 1000] [--first-image-only] [--seed 0] [--test-fraction 0.2]

Writes scikit-learn's digits as PNG files (as `prepare.py` does, with its seeded stratified split of
the images) and LLaVA records with two images each, the first user turn interleaving text and
images ("First: <image>\\nSecond: <image>\\nWhat are the two digits, in order?", answered "3, 7"):
OUT/train.jsonl pairs training images only, OUT/test.jsonl held-out images only, so no held-out
image is seen in training. `--question sum` asks "What is the sum of the two digits?" (0-18)
instead, `--question larger` "Which is larger, the first or the second digit?" (first / second /
equal). `--first-image-only` writes the same pairs and answers with only the first image given: the
control that shows what the second image adds.

Prints and writes to OUT/baseline.json the held-out accuracy of
- always giving the most frequent training answer,
- logistic regression on each image separately (trained on the training images' pixels, read back
  from the PNG files), its two digits composed into the answer,
- the same regression on the first image alone, answered with the training pairs' most frequent
  answer for that digit: what a model that reads the first image perfectly and ignores the second
  can reach.
The commands that train and evaluate through the CLI, and the numbers, are in docs/custom-data.md.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from prepare import add_split_arguments, fit_logistic_regression, split_images, write_digit_images

QUESTIONS = {"digits": "What are the two digits, in order?",
             "sum": "What is the sum of the two digits?",
             "larger": "Which is larger, the first or the second digit?"}


def answer(question: str, first: int, second: int) -> str:
    if question == "digits":
        return f"{first}, {second}"
    if question == "sum":
        return str(first + second)
    return "first" if first > second else "second" if second > first else "equal"


def accuracy(predicted: list[str], truth: list[str]) -> float:
    return 100 * float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="data/digit-pairs", help="folder to write (images/, train.jsonl, test.jsonl)")
    parser.add_argument("--question", choices=list(QUESTIONS), default="digits")
    parser.add_argument("--train-pairs", type=int, default=2000, help="pairs drawn from the training images")
    parser.add_argument("--test-pairs", type=int, default=1000, help="pairs drawn from the held-out images")
    parser.add_argument("--first-image-only", action="store_true",
                        help="give only the first image of each pair (the control; same pairs and answers)")
    add_split_arguments(parser)
    args = parser.parse_args()
    if args.train_pairs < 1 or args.test_pairs < 1:
        parser.error(f"--train-pairs and --test-pairs must be at least 1, got {args.train_pairs} and {args.test_pairs}")

    out = Path(args.out)
    names, targets = write_digit_images(out)
    train_idx, test_idx = split_images(targets, args.test_fraction, args.seed)
    rng = np.random.default_rng(args.seed)
    pairs = {"train": rng.choice(train_idx, size=(args.train_pairs, 2)),
             "test": rng.choice(test_idx, size=(args.test_pairs, 2))}
    answers = {split: [answer(args.question, targets[a], targets[b]) for a, b in p] for split, p in pairs.items()}
    for split, split_pairs in pairs.items():
        with (out / f"{split}.jsonl").open("w") as handle:
            for n, ((a, b), reply) in enumerate(zip(split_pairs, answers[split], strict=True)):
                shown = [a] if args.first_image_only else [a, b]
                turn = "First: <image>\n" + ("" if args.first_image_only else "Second: <image>\n")
                handle.write(json.dumps({
                    "id": f"{split}-{n:05d}", "image": [f"images/{names[i]}" for i in shown],
                    "conversations": [{"from": "human", "value": turn + QUESTIONS[args.question]},
                                      {"from": "gpt", "value": reply}]}) + "\n")

    classifier, pixels = fit_logistic_regression([out / "images" / name for name in names], targets, train_idx)
    read = classifier.predict(pixels)
    most_frequent = Counter(answers["train"]).most_common(1)[0][0]
    answers_by_first_digit: dict[int, Counter[str]] = {digit: Counter() for digit in range(10)}
    for (a, _), reply in zip(pairs["train"], answers["train"], strict=True):
        answers_by_first_digit[targets[a]][reply] += 1
    # a first digit that opens no training pair is answered with the most frequent answer overall
    by_first_digit = {digit: counts.most_common(1)[0][0] if counts else most_frequent
                      for digit, counts in answers_by_first_digit.items()}
    truth = answers["test"]
    baselines = {
        "most_frequent_answer": accuracy([most_frequent] * len(truth), truth),
        "logistic_regression_per_image": accuracy([answer(args.question, read[a], read[b]) for a, b in pairs["test"]], truth),
        "logistic_regression_first_image_only": accuracy([by_first_digit[read[a]] for a, _ in pairs["test"]], truth),
    }
    print(f"wrote {len(pairs['train'])} training pairs of {len(train_idx)} images and {len(pairs['test'])} "
          f"held-out pairs of {len(test_idx)} other images to {out}"
          + (" (first image only)" if args.first_image_only else ""))
    print(f"held-out accuracy of the most frequent training answer ({most_frequent!r}): "
          f"{baselines['most_frequent_answer']:.1f}%")
    print("logistic regression on each image, the two digits composed: "
          f"{baselines['logistic_regression_per_image']:.1f}%")
    print("logistic regression on the first image only, its most frequent training answer: "
          f"{baselines['logistic_regression_first_image_only']:.1f}%")
    (out / "baseline.json").write_text(json.dumps({**baselines, "question": args.question,
                                                   "most_frequent": most_frequent, "seed": args.seed,
                                                   "train_pairs": len(pairs["train"]),
                                                   "test_pairs": len(pairs["test"])}) + "\n")


if __name__ == "__main__":
    main()
