#!/usr/bin/env python
"""One digit made rare in the training data, to measure `repeat` (docs/custom-data.md, "Weighting sources").

    python bench/digits/rare_class.py split --data data/digits [--digit 8] [--keep 10]
    python bench/digits/rare_class.py score runs/eval/custom-digits [...] [--digit 8]

`split` cuts DATA/train.jsonl (written by prepare.py) into DATA/common-D.jsonl, every training record
of the other digits, and DATA/rare-D.jsonl, the first KEEP records of digit D in the file's order
(the others of D are left out): a data set where D is rare, as two files a config can weight.
`score` reads `modrwkv eval --task custom` output folders (their predictions.jsonl) and prints, per
folder, the held-out accuracy over all images and over the images of digit D.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def split(data: Path, digit: int, keep: int) -> None:
    records = [json.loads(line) for line in (data / "train.jsonl").read_text().splitlines() if line.strip()]
    rare = [r for r in records if r["answer"] == str(digit)]
    common = [r for r in records if r["answer"] != str(digit)]
    if len(rare) < keep:
        raise SystemExit(f"{data / 'train.jsonl'} holds {len(rare)} images of {digit}, fewer than --keep {keep}")
    for name, subset in ((f"common-{digit}.jsonl", common), (f"rare-{digit}.jsonl", rare[:keep])):
        (data / name).write_text("".join(json.dumps(r) + "\n" for r in subset))
    print(f"wrote {len(common)} records of the other digits to {data / f'common-{digit}.jsonl'} and {keep} of the "
          f"{len(rare)} of digit {digit} to {data / f'rare-{digit}.jsonl'}")


def score(folder: Path, digit: int) -> tuple[float, float, int]:
    """(accuracy over all images, accuracy over the images of `digit`, how many of those) in percent."""
    records = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines() if line.strip()]
    right = [(r["reference"]["answers"][0], bool(r["score"]["correct"])) for r in records]  # as eval scored it
    of_digit = [ok for answer, ok in right if answer == str(digit)]
    return 100 * sum(ok for _, ok in right) / len(right), 100 * sum(of_digit) / len(of_digit), len(of_digit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    cut = commands.add_parser("split", help="write common-D.jsonl and rare-D.jsonl from train.jsonl")
    cut.add_argument("--data", default="data/digits", help="the folder prepare.py wrote")
    cut.add_argument("--digit", type=int, default=8)
    cut.add_argument("--keep", type=int, default=10, help="training images of the digit kept")
    scoring = commands.add_parser("score", help="accuracy overall and on the digit, per eval output folder")
    scoring.add_argument("folders", nargs="+", type=Path)
    scoring.add_argument("--digit", type=int, default=8)
    args = parser.parse_args()
    if args.command == "split":
        split(Path(args.data), args.digit, args.keep)
        return
    for folder in args.folders:
        overall, on_digit, count = score(folder, args.digit)
        print(f"{folder}: {overall:.1f}% of all held-out images, {on_digit:.1f}% of the {count} of digit {args.digit}")


if __name__ == "__main__":
    main()
