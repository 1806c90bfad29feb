"""Procedural multimodal data for the offline quickstart: no downloads, unlimited, honest.

Images: 1-3 shapes (circle, square, triangle) in 6 colours, each in its own quadrant of a 64x64
picture, with questions about count, colour, shape and position. Time series: a trend plus a
periodic component plus noise, with questions about the trend, the period and the next step.
Every question is unambiguous by construction (the object it refers to is unique), and its
answer is a short phrase scored by exact match.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageDraw

from ..data.sample import MediaLayout, Message, Sample, place_media

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 210, 40),
    "purple": (140, 60, 180),
    "orange": (240, 140, 30),
}
SHAPES = ("circle", "square", "triangle")
POSITIONS = ("top left", "top right", "bottom left", "bottom right")
IMAGE_QUESTION_TYPES = ("count", "colour", "shape", "position")
SERIES_QUESTION_TYPES = ("trend", "period", "next")
TRENDS = ("rising", "falling", "flat")
PERIODS = (4, 6, 8, 12)
IMAGE_SIZE = 64
SERIES_LENGTH = 48


@dataclasses.dataclass(frozen=True)
class Shape:
    kind: str
    colour: str
    position: str


def draw_scene(shapes: list[Shape], rng: random.Random, size: int = IMAGE_SIZE) -> Image.Image:
    """Draws each shape at a random size and offset inside its quadrant, on a light background."""
    background = tuple(rng.randint(225, 255) for _ in range(3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    half = size // 2
    for shape in shapes:
        row, col = divmod(POSITIONS.index(shape.position), 2)
        extent = rng.randint(int(half * 0.55), int(half * 0.85))
        x0 = col * half + rng.randint(1, half - extent - 1)
        y0 = row * half + rng.randint(1, half - extent - 1)
        box = (x0, y0, x0 + extent, y0 + extent)
        colour = tuple(min(255, max(0, c + rng.randint(-20, 20))) for c in COLOURS[shape.colour])
        if shape.kind == "circle":
            draw.ellipse(box, fill=colour)
        elif shape.kind == "square":
            draw.rectangle(box, fill=colour)
        else:
            draw.polygon([(x0 + extent / 2, y0), (x0, y0 + extent), (x0 + extent, y0 + extent)], fill=colour)
    return image


def random_shapes(rng: random.Random) -> list[Shape]:
    """1-3 shapes in distinct quadrants with distinct (kind, colour) pairs."""
    count = rng.randint(1, 3)
    positions = rng.sample(POSITIONS, count)
    pairs = rng.sample([(k, c) for k in SHAPES for c in COLOURS], count)
    return [Shape(kind, colour, pos) for (kind, colour), pos in zip(pairs, positions)]


def image_question(shapes: list[Shape], kind: str, rng: random.Random) -> tuple[str, str]:
    """A question of the given type about `shapes`, and its answer."""
    if kind == "count":
        return "How many shapes are there?", str(len(shapes))
    target = rng.choice(shapes)
    if kind == "colour":
        unique_kinds = [s for s in shapes if sum(o.kind == s.kind for o in shapes) == 1]
        if unique_kinds and rng.random() < 0.5:
            target = rng.choice(unique_kinds)
            return f"What colour is the {target.kind}?", target.colour
        return f"What colour is the shape in the {target.position}?", target.colour
    if kind == "shape":
        unique_colours = [s for s in shapes if sum(o.colour == s.colour for o in shapes) == 1]
        if unique_colours and rng.random() < 0.5:
            target = rng.choice(unique_colours)
            return f"What shape is {target.colour}?", target.kind
        return f"What shape is in the {target.position}?", target.kind
    if kind == "position":
        return f"Where is the {target.colour} {target.kind}?", target.position
    raise ValueError(f"unknown image question type {kind!r}; choose from {IMAGE_QUESTION_TYPES}")


def random_series(rng: random.Random, length: int = SERIES_LENGTH) -> tuple[np.ndarray, dict[str, str]]:
    """A trend + sinusoid + noise series and the ground truth of every series question."""
    trend = rng.choice(TRENDS)
    period = rng.choice(PERIODS)
    slope = {"rising": 1.0, "falling": -1.0, "flat": 0.0}[trend] * rng.uniform(0.08, 0.2)
    amplitude = rng.uniform(0.8, 1.5)
    phase = rng.uniform(0, 2 * math.pi)
    t = np.arange(length + 1)
    values = slope * t + amplitude * np.sin(2 * math.pi * t / period + phase)
    values = values + np.array([rng.gauss(0, 0.05) for _ in t]) + rng.uniform(-5, 5)
    series, following = values[:length].astype(np.float32), float(values[length])
    truth = {"trend": trend, "period": str(period), "next": "up" if following > series[-1] else "down"}
    return series, truth


SERIES_QUESTIONS = {
    "trend": "Is the series rising, falling or flat?",
    "period": "What is the period of the series?",
    "next": "Will the next value go up or down?",
}


def media_layout(question_first: bool) -> MediaLayout:
    """The layout of the quickstart's user turns, which its model records so that a prompt without a
    marker (`modrwkv chat --image`) is asked the same way: asked first, the question comes again after
    the media (an RNN that has read the question before the media knows what to look for in them)."""
    return "text_media_text" if question_first else "media_text"


def _chat(question: str, marker: str, answer: str, question_first: bool) -> list[Message]:
    user = place_media(question, marker, media_layout(question_first))
    return [Message("user", user), Message("assistant", answer)]


def generate_samples(
    n: int, seed: int, *, series_fraction: float = 0.25, question_first: bool = True
) -> Iterator[Sample]:
    """`n` samples, a `series_fraction` of them about time series, the rest about images.
    `meta` holds the question type and the answer for scoring."""
    rng = random.Random(seed)
    for i in range(n):
        if rng.random() < series_fraction:
            series, truth = random_series(rng)
            kind = rng.choice(SERIES_QUESTION_TYPES)
            messages = _chat(SERIES_QUESTIONS[kind], "<series>", truth[kind], question_first)
            yield Sample(messages, series=[series], source=f"quickstart[{seed}:{i}]",
                         meta={"modality": "series", "type": kind, "answer": truth[kind]})
        else:
            shapes = random_shapes(rng)
            kind = rng.choice(IMAGE_QUESTION_TYPES)
            question, answer = image_question(shapes, kind, rng)
            messages = _chat(question, "<image>", answer, question_first)
            yield Sample(messages, images=[draw_scene(shapes, rng)], source=f"quickstart[{seed}:{i}]",
                         meta={"modality": "image", "type": kind, "answer": answer})
