"""Pretrained Hugging Face vision towers (SigLIP2, SigLIP, CLIP) as frozen `ModalityEncoder`s,
built on `HFEncoder` (hf.py).

Features are the tower's last hidden state: SigLIP(2) at 384 px / patch 16 gives 24x24 = 576
tokens; CLIP keeps its CLS token, so 336 px / patch 14 gives 577. NaFlex SigLIP2 checkpoints
(`Siglip2VisionModel`) give one token per valid patch, which depends on the image's aspect ratio
and is read from the image processor's output at prepare time.

Loading never silently leaves weights random: a checkpoint that lacks some of the tower's weights
is an error. Preprocessing is the checkpoint's own image processor (Pillow backend) when its folder
has one, otherwise the family's standard processor built from the model config (SigLIP: squash
resize, mean/std 0.5; CLIP: shortest-edge resize + centre crop, OpenAI mean/std).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch

from .base import EncoderOutput, Prepared
from .hf import (
    DTYPES,
    HFEncoder,
    load_checked,
    parse_dtype,
    quiet_transformers,
    read_hf_config,
)
from .media import load_image

logger = logging.getLogger(__name__)

_FAMILIES: dict[str, tuple[str, str, str]] = {
    # model_type of the tower or of the full model -> (family, config class, model class)
    "clip": ("clip", "CLIPVisionConfig", "CLIPVisionModel"),
    "clip_vision_model": ("clip", "CLIPVisionConfig", "CLIPVisionModel"),
    "siglip": ("siglip", "SiglipVisionConfig", "SiglipVisionModel"),
    "siglip_vision_model": ("siglip", "SiglipVisionConfig", "SiglipVisionModel"),
    "siglip2": ("naflex", "Siglip2VisionConfig", "Siglip2VisionModel"),
    "siglip2_vision_model": ("naflex", "Siglip2VisionConfig", "Siglip2VisionModel"),
}


class HFVisionEncoder(HFEncoder):
    """Shared by the SigLIP2 / SigLIP / CLIP encoders; subclasses only name the model types they accept."""

    modality = "image"
    model_types: ClassVar[tuple[str, ...]]
    default_model_type: ClassVar[str]

    def __init__(
        self,
        model: torch.nn.Module,
        processor: Any,
        family: str,
        *,
        source: str | None,
        config: dict[str, Any] | None,
        trainable: bool,
        dtype: str,
    ) -> None:
        super().__init__(model, source=source, config=config, trainable=trainable, dtype=dtype)
        self.processor = processor
        self.family = family
        vision_config = model.config
        self._width = int(vision_config.hidden_size)
        if family != "naflex":
            grid = int(vision_config.image_size) // int(vision_config.patch_size)
            self.image_size = int(vision_config.image_size)
            self.num_tokens = grid * grid + (1 if family == "clip" else 0)

    @classmethod
    def build(
        cls,
        *,
        source: str | None = None,
        config: Mapping[str, Any] | None = None,
        trainable: bool | None = None,
        weights: str | Path | None = None,
        dtype: str | torch.dtype = "float32",
    ) -> HFVisionEncoder:
        """From saved `weights`, else a pretrained `source`, else a random model from `config`."""
        import transformers

        dtype = parse_dtype(dtype)
        trainable = bool(trainable)
        folder = weights if weights is not None else source
        if folder is not None:
            model_type = read_hf_config(folder).get("model_type", "")
            family, config_class, model_class = cls._family(model_type, folder)
            vision_config = getattr(transformers, config_class).from_pretrained(str(folder))
            if hasattr(vision_config, "vision_use_head"):
                vision_config.vision_use_head = False  # the pooling head is unused: do not load or run it
            model = load_checked(getattr(transformers, model_class), folder, config=vision_config, dtype=DTYPES[dtype])
            processor = _load_image_processor(folder, family, model.config)
        elif config is not None:
            config = dict(config)
            tower = dict(config.get("vision_config", config))
            family, config_class, model_class = cls._family(tower.get("model_type", cls.default_model_type), "config")
            tower.pop("model_type", None)
            vision_config = getattr(transformers, config_class).from_dict(tower)
            if hasattr(vision_config, "vision_use_head"):
                vision_config.vision_use_head = False
            model = getattr(transformers, model_class)(vision_config).to(DTYPES[dtype])
            processor = _default_image_processor(family, model.config)
            logger.warning("built %s encoder with RANDOM weights from a config", cls.name)
        else:
            raise ValueError(f"the {cls.name} encoder needs a source (HF id or folder), a config or saved weights")
        return cls(
            model,
            processor,
            family,
            source=None if source is None else str(source),
            config=None if config is None else dict(config),
            trainable=trainable,
            dtype=dtype,
        )

    @classmethod
    def _family(cls, model_type: str, where: Any) -> tuple[str, str, str]:
        if model_type not in cls.model_types:
            raise ValueError(
                f"{str(where)!r} holds a {model_type or 'unknown'!r} model; the {cls.name} encoder "
                f"accepts model types {', '.join(cls.model_types)}"
            )
        return _FAMILIES[model_type]

    @property
    def output_dim(self) -> int:
        return self._width

    def prepare(self, item: Any) -> Prepared:
        image = load_image(item)
        out = self.processor(images=[image], return_tensors="pt")
        if self.family == "naflex":
            mask = out["pixel_attention_mask"][0].to(torch.bool)
            return Prepared(
                {
                    "pixel_values": out["pixel_values"][0].float(),
                    "pixel_attention_mask": mask,
                    "spatial_shapes": out["spatial_shapes"][0].long(),
                },
                int(mask.sum()),
            )
        pixels = out["pixel_values"][0].float()
        if tuple(pixels.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"the image processor gave {tuple(pixels.shape[-2:])} pixels but the {self.name} model "
                f"expects {self.image_size}x{self.image_size}; check the checkpoint's preprocessor_config.json"
            )
        return Prepared({"pixel_values": pixels}, self.num_tokens)

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        with self._grad_context():
            pixels = batch["pixel_values"].to(device=self.device, dtype=self.dtype)
            if self.family == "naflex":
                mask = batch["pixel_attention_mask"].to(self.device)
                hidden = self.model(
                    pixel_values=pixels,
                    pixel_attention_mask=mask.long(),
                    spatial_shapes=batch["spatial_shapes"].to(self.device),
                ).last_hidden_state
                hidden = hidden * mask[..., None].to(hidden.dtype)  # padded patches -> exact zeros
                lengths = mask.sum(-1).long()
            else:
                hidden = self.model(pixel_values=pixels).last_hidden_state
                lengths = torch.full((hidden.shape[0],), hidden.shape[1], dtype=torch.long, device=hidden.device)
        return EncoderOutput(hidden, lengths)

    def _save_preprocessing(self, folder: Path) -> None:
        self.processor.save_pretrained(str(folder))


def _load_image_processor(folder: str | Path, family: str, vision_config: Any) -> Any:
    """The checkpoint's own processor (Pillow backend), or the family default if it has none."""
    from transformers import AutoImageProcessor

    try:
        with quiet_transformers():
            return AutoImageProcessor.from_pretrained(str(folder), backend="pil")
    except (OSError, ValueError) as exc:
        logger.info("no image processor in %s (%s); using the %s defaults", folder, exc, family)
        return _default_image_processor(family, vision_config)


def _default_image_processor(family: str, vision_config: Any) -> Any:
    """The family's standard preprocessing at the model's resolution (Pillow backend, no torchvision)."""
    import transformers

    if family == "naflex":
        return transformers.Siglip2ImageProcessorPil(
            patch_size=int(vision_config.patch_size), max_num_patches=int(vision_config.num_patches)
        )
    size = int(vision_config.image_size)
    if family == "clip":
        return transformers.CLIPImageProcessorPil(
            size={"shortest_edge": size}, crop_size={"height": size, "width": size}
        )
    return transformers.SiglipImageProcessorPil(
        size={"height": size, "width": size}, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]
    )


class SigLIP2Encoder(HFVisionEncoder):
    """SigLIP2 (the paper's main encoder). Fixed-resolution checkpoints such as
    `google/siglip2-base-patch16-384` are SigLIP-architecture models; NaFlex checkpoints
    (`Siglip2VisionModel`) keep the aspect ratio and give a variable number of tokens."""

    name = "siglip2"
    model_types = ("siglip", "siglip_vision_model", "siglip2", "siglip2_vision_model")
    default_model_type = "siglip_vision_model"


class SigLIPEncoder(HFVisionEncoder):
    name = "siglip"
    model_types = ("siglip", "siglip_vision_model")
    default_model_type = "siglip_vision_model"


class CLIPEncoder(HFVisionEncoder):
    """CLIP ViT; the CLS token is kept (577 tokens at 336 px / patch 14), as in the paper."""

    name = "clip"
    model_types = ("clip", "clip_vision_model")
    default_model_type = "clip_vision_model"
