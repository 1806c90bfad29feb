"""transformers' Auto classes for ModRWKV folders: `AutoConfig`, `AutoModel(ForCausalLM)`, `AutoProcessor`.

Importing this module registers the classes under ``model_type = "modrwkv"``. A folder written by
`ModRWKV.save_pretrained` also carries an ``auto_map`` and three small modules that import these
classes (the fla-hub pattern), so that without importing modrwkv first,

    AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)

works as well, as long as modrwkv is installed. The model keeps its RNN state between generation
steps (``state`` in the model kwargs, as transformers' own RWKV does), so ``generate()`` reads each
new token once. The processor turns a conversation (text with ``<image>``/``<audio>``/``<series>``
markers and the media) into ``input_ids``, ``attention_mask`` and ``media`` for ``generate()``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoProcessor,
    GenerationMixin,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.utils import ModelOutput

from .generation import SamplingParams
from .lm import RWKV7State
from .multimodal import ModRWKV
from .multimodal.model import HF_MODEL_TYPE
from .processing import get_template

__all__ = ["MODEL_TYPE", "ModRWKVCausalLMOutput", "ModRWKVConfig", "ModRWKVForCausalLM", "ModRWKVHFProcessor"]

MODEL_TYPE = HF_MODEL_TYPE


class ModRWKVConfig(PretrainedConfig):
    """A ModRWKV folder's config.json (`ModRWKV.config_dict`) as a transformers config."""

    model_type = MODEL_TYPE

    def __init__(self, lm: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        self.lm = dict(lm or {})
        kwargs.setdefault("tie_word_embeddings", False)
        kwargs.setdefault("eos_token_id", 0)  # the World vocabulary's end of text
        kwargs.setdefault("pad_token_id", 0)
        super().__init__(**kwargs)
        if self.lm.get("vocab_size"):
            self.vocab_size = self.lm["vocab_size"]


@dataclasses.dataclass
class ModRWKVCausalLMOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    state: RWKV7State | None = None


def _torch_dtype(value: Any) -> torch.dtype:
    if isinstance(value, torch.dtype):
        return value
    if value in (None, "auto"):
        return torch.float32
    return getattr(torch, str(value).removeprefix("torch."))


class ModRWKVForCausalLM(PreTrainedModel, GenerationMixin):
    """A `ModRWKV` behind transformers' model interface (forward with labels, `generate`)."""

    config_class = ModRWKVConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    _is_stateful = True
    _supports_cache_class = False

    def __init__(self, config: ModRWKVConfig, model: ModRWKV | None = None) -> None:
        if model is None:
            raise ValueError("ModRWKVForCausalLM wraps a ModRWKV: load one with from_pretrained(folder or hub id), "
                             "or build it with modrwkv (ModRWKV.build) and pass it as model=")
        super().__init__(config)
        self.model = model
        self.post_init()
        # Generation as the pipeline does it: stop at the template's end of turn, never emit what the
        # pipeline's default sampling never emits (end of text, and the ids no reply contains).
        self.generation_config.eos_token_id = list(get_template(model.template_name).stop_token_ids)
        self.generation_config.pad_token_id = 0
        self.generation_config.suppress_tokens = list(
            dict.fromkeys((*SamplingParams().banned_tokens, *model.unspoken_token_ids())))

    def _init_weights(self, module: torch.nn.Module) -> None:
        """Weights come from the folder (or `ModRWKV`'s own initialisation); nothing to redo."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *args: Any, **kwargs: Any) -> ModRWKVForCausalLM:
        """Loads with `ModRWKV.from_pretrained` (hub ids included); honours `dtype`/`torch_dtype`
        and a single-device `device_map`."""
        from .hub import resolve_model_path

        folder = resolve_model_path(pretrained_model_name_or_path, **_hub_options(kwargs))
        dtype = _torch_dtype(kwargs.get("dtype", kwargs.get("torch_dtype")))
        device_map = kwargs.get("device_map")
        device = device_map if isinstance(device_map, (str, torch.device)) and device_map != "auto" else "cpu"
        config = kwargs.get("config")
        if not isinstance(config, ModRWKVConfig):
            config = ModRWKVConfig.from_pretrained(folder)
        return cls(config, ModRWKV.from_pretrained(folder, device=device, dtype=dtype)).eval()

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.model.lm.emb

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.model.lm.head

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        state: RWKV7State | None = None,
        media: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        return_dict: bool | None = None,
        logits_to_keep: int = 0,
        **kwargs: Any,
    ) -> ModRWKVCausalLMOutput:
        """`state` continues a sequence (only the new tokens are passed); `media` fills the
        placeholder positions; `labels` gives the mean next-token loss (logits then omitted
        unless asked by `logits_to_keep`)."""
        if input_ids is None:
            raise ValueError("ModRWKVForCausalLM needs input_ids (media go in `media`, placed by the processor)")
        mask = attention_mask
        if mask is not None and bool(mask.all()):
            mask = None  # no padding: the faster unmasked path
        which = "last" if logits_to_keep == 1 else "all"
        out = self.model(input_ids, media, labels=labels, attention_mask=mask, state=state,
                         logits=which if labels is None or logits_to_keep else "none")
        logits = out.logits
        if logits is not None and which == "last":
            logits = logits.unsqueeze(1)  # [B, 1, V], as transformers models return
        elif logits is not None and logits_to_keep > 1:
            logits = logits[:, -logits_to_keep:]
        return ModRWKVCausalLMOutput(loss=out.loss, logits=logits, state=out.state)

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        state: RWKV7State | None = None,
        attention_mask: torch.Tensor | None = None,
        media: Any = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The first step reads the prompt (and its media); later steps only the newest token,
        continuing the carried state."""
        if state is not None:
            return {"input_ids": input_ids[:, -1:], "state": state, "logits_to_keep": 1}
        return {"input_ids": input_ids, "attention_mask": attention_mask, "media": media, "logits_to_keep": 1}

    def _update_model_kwargs_for_generation(self, outputs: ModelOutput, model_kwargs: dict[str, Any],
                                            is_encoder_decoder: bool = False, num_new_tokens: int = 1) -> dict[str, Any]:
        model_kwargs["state"] = outputs.state
        return super()._update_model_kwargs_for_generation(outputs, model_kwargs, is_encoder_decoder, num_new_tokens)


class ModRWKVHFProcessor:
    """`AutoProcessor` for ModRWKV folders: conversations -> model inputs, ids -> text.

    Call it with a string, a list of ``{"role", "content"}`` messages, or a list of such
    conversations (a batch, left-padded), plus ``images=`` / ``audio=`` / ``series=``; it returns
    ``input_ids``, ``attention_mask`` and ``media`` ready for ``model.generate(**inputs)``.
    """

    def __init__(self, processor: Any, collator: Any) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.collator = collator

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs: Any) -> ModRWKVHFProcessor:
        from .hub import resolve_model_path

        folder = resolve_model_path(pretrained_model_name_or_path, **_hub_options(kwargs))
        model = ModRWKV.from_pretrained(folder)  # the processor asks the encoders and adapters for token counts
        return cls(model.processor(ctx_len=None), model.collator(padding_side="left"))

    def __call__(self, conversations: Any = None, *, text: Any = None, images: Any = None, audio: Any = None,
                 series: Any = None, add_generation_prompt: bool = True, **_: Any) -> dict[str, Any]:
        from .inference.prompt import build_sample

        conversations = conversations if conversations is not None else text
        batch = conversations if _is_batch(conversations) else [conversations]
        if len(batch) > 1 and any(v is not None for v in (images, audio, series)):
            raise ValueError("for a batch, put the media in each conversation's content parts")
        samples = [self.processor(build_sample(c, images=images, audio=audio, series=series),
                                  add_generation_prompt=add_generation_prompt) for c in batch]
        collated = self.collator(samples)
        return {"input_ids": collated.input_ids, "attention_mask": collated.attention_mask, "media": collated.media}

    def decode(self, token_ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = False, **_: Any) -> str:
        """The text of `token_ids` (padding dropped); `skip_special_tokens`, as in transformers, also drops
        the chat format's end-of-turn token (`\x17`), which `generate` returns as the last token of a reply."""
        ids = token_ids.tolist() if isinstance(token_ids, torch.Tensor) else list(token_ids)
        dropped = {0, *self.processor.template.stop_token_ids} if skip_special_tokens else {0}
        return self.tokenizer.decode([i for i in ids if i not in dropped])

    def batch_decode(self, sequences: Sequence[Sequence[int]] | torch.Tensor, **kwargs: Any) -> list[str]:
        return [self.decode(s, **kwargs) for s in sequences]


def _hub_options(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The `from_pretrained` keyword arguments that say where a hub id is looked up."""
    return {"revision": kwargs.get("revision"), "cache_dir": kwargs.get("cache_dir"), "token": kwargs.get("token"),
            "offline": True if kwargs.get("local_files_only") else None}


def _is_batch(conversations: Any) -> bool:
    """A list of conversations (each a string or a list of messages) rather than one conversation."""
    return isinstance(conversations, (list, tuple)) and bool(conversations) and all(
        isinstance(c, (str, list, tuple)) for c in conversations)


AutoConfig.register(MODEL_TYPE, ModRWKVConfig, exist_ok=True)
AutoModel.register(ModRWKVConfig, ModRWKVForCausalLM, exist_ok=True)
AutoModelForCausalLM.register(ModRWKVConfig, ModRWKVForCausalLM, exist_ok=True)
AutoProcessor.register(ModRWKVConfig, ModRWKVHFProcessor, exist_ok=True)
