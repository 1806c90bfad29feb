"""`tiny`: a small trainable CNN vision encoder for offline use (the quickstart, tests, CPU demos),
where no pretrained tower can be downloaded.

Design: an RGB image (default 64x64) plus two coordinate channels (CoordConv, so convolutions can
tell *where* something is, not only *what*) goes through 4 conv stages; the first
`log2(image_size / grid)` halve the resolution. The final `grid x grid` map becomes `grid**2`
tokens in row-major order, each with a learned 2-D position embedding, then LayerNorm. That is
enough to learn the colour, shape, count and position of simple shapes.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from .base import EncoderOutput, Prepared
from .media import load_image
from .native import NativeEncoder

logger = logging.getLogger(__name__)

@dataclasses.dataclass
class TinyVisionConfig:
    image_size: int = 64
    grid: int = 8  # tokens = grid**2
    width: int = 128  # output_dim
    mean: float = 0.5
    std: float = 0.5

    def __post_init__(self) -> None:
        ratio = self.image_size / self.grid
        if self.image_size % self.grid or ratio < 1 or not float(math.log2(ratio)).is_integer() or ratio > 32:
            raise ValueError(f"image_size / grid must be 1, 2, 4, 8, 16 or 32, got {self.image_size} / {self.grid}")
        if self.width % 32:  # the first stage has width/4 channels in 8 GroupNorm groups
            raise ValueError(f"width must be a multiple of 32, got {self.width}")


class _Stage(nn.Module):
    """Residual block: a full 3x3 conv (strided where the stage downsamples), then a cheap
    depthwise-separable 3x3 conv, GroupNorm and GELU."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)
        self.norm1 = nn.GroupNorm(8, c_out)
        self.depthwise = nn.Conv2d(c_out, c_out, 3, padding=1, groups=c_out)
        self.pointwise = nn.Conv2d(c_out, c_out, 1)
        self.norm2 = nn.GroupNorm(8, c_out)
        self.skip = nn.Conv2d(c_in, c_out, 1, stride=stride) if (c_in != c_out or stride != 1) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.gelu(self.norm1(self.conv1(x)))
        y = self.norm2(self.pointwise(self.depthwise(y)))
        return nn.functional.gelu(y + self.skip(x))


class TinyVisionEncoder(NativeEncoder):
    modality = "image"
    name = "tiny"
    config_class = TinyVisionConfig

    def __init__(self, config: TinyVisionConfig, trainable: bool = True) -> None:
        super().__init__(config, trainable)
        downsamples = int(math.log2(config.image_size // config.grid))
        stages = max(4, downsamples)
        widths = [config.width // 4, config.width // 2] + [config.width] * (stages - 2)
        strides = [2] * downsamples + [1] * (stages - downsamples)
        layers, c_in = [], 5  # RGB + (x, y) coordinates
        for c_out, stride in zip(widths, strides):
            layers.append(_Stage(c_in, c_out, stride))
            c_in = c_out
        self.stages = nn.Sequential(*layers)
        self.position = nn.Parameter(torch.randn(config.grid * config.grid, config.width) * 0.02)
        self.norm = nn.LayerNorm(config.width)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, config.image_size), torch.linspace(-1, 1, config.image_size), indexing="ij")
        self.register_buffer("coords", torch.stack([xs, ys]), persistent=False)
        self._finish_init()

    @property
    def output_dim(self) -> int:
        return self.config.width

    @property
    def num_tokens(self) -> int:
        return self.config.grid * self.config.grid

    def prepare(self, item: Any) -> Prepared:
        from PIL import Image

        image = load_image(item)
        size = self.config.image_size
        if image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        pixels = (pixels - self.config.mean) / self.config.std
        return Prepared({"pixel_values": pixels.contiguous()}, self.num_tokens)

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        with self._grad_context():
            pixels = batch["pixel_values"].to(device=self.device, dtype=self.position.dtype)
            coords = self.coords.to(pixels.dtype).expand(pixels.shape[0], -1, -1, -1)
            grid = self.stages(torch.cat([pixels, coords], dim=1))  # [B, width, grid, grid]
            tokens = grid.flatten(2).transpose(1, 2) + self.position
            features = self.norm(tokens)
        lengths = torch.full((features.shape[0],), self.num_tokens, dtype=torch.long, device=features.device)
        return EncoderOutput(features, lengths)
