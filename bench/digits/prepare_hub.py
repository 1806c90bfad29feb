#!/usr/bin/env python
"""scikit-learn's digits as a Hugging Face hub data set stores them: Parquet files of plain rows.

    python bench/digits/prepare_hub.py --out data/digits-hub [--seed 0] [--test-fraction 0.2]

Writes the images and seeded stratified split of `prepare.py` (under OUT/images/, and its
train.jsonl / test.jsonl, from which the logistic-regression baseline is printed) as
OUT/train.parquet and OUT/test.parquet, written by `datasets` as `uoft-cs/cifar10` or `ylecun/mnist`
are on the hub: a column `image` (an `Image()` feature, the PNG bytes embedded) and a column `label`
(a `ClassLabel` feature named "zero" .. "nine", stored as the class's number), no question and no
answer. `modrwkv init --data OUT/train.parquet` reads them as labelled images answered with the class
names (docs/custom-data.md, "Parquet / Hugging Face datasets", where the numbers are).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="data/digits-hub", help="folder to write (train.parquet, test.parquet)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/test split")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    args = parser.parse_args()
    out = Path(args.out)
    # the images, split and baseline exactly as the worked example's
    subprocess.run([sys.executable, str(Path(__file__).with_name("prepare.py")), "--out", str(out), "--seed",
                    str(args.seed), "--test-fraction", str(args.test_fraction)], check=True)

    from datasets import ClassLabel, Dataset, Features, Image

    features = Features({"image": Image(), "label": ClassLabel(names=NAMES)})
    for split in ("train", "test"):
        records = [json.loads(line) for line in (out / f"{split}.jsonl").open()]
        # the bytes themselves, not paths: from_dict with {"bytes"} embeds them, as push_to_hub does
        ds = Dataset.from_dict({"image": [{"bytes": (out / r["image"]).read_bytes(), "path": Path(r["image"]).name}
                                          for r in records],
                                "label": [int(r["answer"]) for r in records]}, features=features)
        ds.to_parquet(str(out / f"{split}.parquet"), batch_size=100)
        print(f"wrote {out / f'{split}.parquet'}: {len(ds)} rows")


if __name__ == "__main__":
    main()
