"""The digits task's image reader: each record's PNG, relative to the folder of the data file
(digits.yaml's data_files), as the RGB PIL image lmms-eval's own tasks hand to models."""

from pathlib import Path

from PIL import Image

DATA = Path("data/digits")  # digits.yaml's data_files folder


def doc_to_visual(doc: dict) -> list[Image.Image]:
    with Image.open(DATA / doc["image"]) as image:
        return [image.convert("RGB")]
