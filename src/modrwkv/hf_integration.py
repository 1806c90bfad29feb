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
from collections.abc import Callable, Mapping, Sequence
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
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.feature_extraction_utils import BatchFeature
from transformers.utils import ModelOutput

from .generation import SamplingParams
from .generation.streaming import IncrementalDetokenizer
from .data.sample import MARKERS
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

    def generate(self, *args: Any, stop_strings: str | Sequence[str] | None = None, tokenizer: Any = None,
                 **kwargs: Any) -> Any:
        """transformers' `generate`, stopping as the pipeline does: at the template's end of turn and
        stop strings (the `classic` format's blank line, whichever tokens spell it) and at
        `stop_strings`. These are found in the decoded reply with the model's own tokenizer
        (`tokenizer=` is accepted and not needed), so the World vocabulary's byte tokens work."""
        if kwargs.get("num_beams", 1) > 1 or kwargs.get("num_beam_groups", 1) > 1:
            raise ValueError("ModRWKVForCausalLM does not do beam search (num_beams > 1): an RNN state per beam "
                             "would have to be reordered at every step; use greedy (do_sample=False) or sampling")
        if kwargs.get("num_return_sequences", 1) > 1 and kwargs.get("media"):
            # the media tensors hold items, not rows: transformers' expansion would not copy them per row
            raise ValueError("ModRWKVForCausalLM cannot give num_return_sequences > 1 for a prompt with media; "
                             "pass the conversation several times as a batch (processor([conversation] * n))")
        extra = [stop_strings] if isinstance(stop_strings, str) else list(stop_strings or ())
        strings = tuple(dict.fromkeys((*extra, *get_template(self.model.template_name).stop_strings)))
        if strings:
            prompt = kwargs.get("input_ids", kwargs.get("inputs", args[0] if args else None))
            if prompt is None:
                raise ValueError("ModRWKVForCausalLM.generate needs input_ids (the processor's output)")
            criteria = StoppingCriteriaList(kwargs.pop("stopping_criteria", None) or [])
            criteria.append(_StopStrings(self.model.tokenizer().token_bytes, strings, prompt.shape[1]))
            kwargs["stopping_criteria"] = criteria
        return super().generate(*args, **kwargs)

    def save_pretrained(self, save_directory: str | Path, *args: Any, **kwargs: Any) -> None:
        """Writes the ModRWKV folder (`ModRWKV.save_pretrained`: encoders, adapters, processor, remote
        code), which every loader reads back; transformers' own writer would drop the encoders'
        folders. Writing options of transformers' writer (safe_serialization, ...) are ignored: the folder
        is always safetensors; `push_to_hub=True` is refused rather than silently not pushed."""
        if kwargs.get("push_to_hub"):
            raise ValueError("ModRWKVForCausalLM.save_pretrained does not push: save the folder, then upload it with "
                             "`modrwkv push-to-hub --model FOLDER --repo ORG/NAME`")
        self.model.save_pretrained(save_directory)

    def _update_model_kwargs_for_generation(self, outputs: ModelOutput, model_kwargs: dict[str, Any],
                                            is_encoder_decoder: bool = False, num_new_tokens: int = 1) -> dict[str, Any]:
        model_kwargs["state"] = outputs.state
        return super()._update_model_kwargs_for_generation(outputs, model_kwargs, is_encoder_decoder, num_new_tokens)


class _StopStrings(StoppingCriteria):
    """Stops each row once its reply's text holds one of `strings` (the pipeline's detection:
    `IncrementalDetokenizer`); the prompt's first `prompt_length` tokens are not searched."""

    def __init__(self, token_bytes: Any, strings: Sequence[str], prompt_length: int) -> None:
        self.token_bytes = token_bytes
        self.strings = tuple(strings)
        self.prompt_length = prompt_length
        self.rows: list[IncrementalDetokenizer] = []
        self.read = 0  # reply tokens pushed into each row's detokenizer

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        if not self.rows:
            self.rows = [IncrementalDetokenizer(self.token_bytes, self.strings) for _ in range(input_ids.shape[0])]
        new = input_ids[:, self.prompt_length + self.read:].tolist()
        self.read += len(new[0]) if new else 0
        for row, tokens in zip(self.rows, new):
            for token in tokens:
                if row.stop_string is None:  # a stopped row only gets padding
                    row.push(token)
        return torch.tensor([row.stop_string is not None for row in self.rows], device=input_ids.device)


class ModRWKVHFProcessor:
    """`AutoProcessor` for ModRWKV folders: conversations -> model inputs, ids -> text.

    Call it with a string, a list of ``{"role", "content"}`` messages, or a list of such
    conversations (a batch, left-padded), plus ``images=`` / ``audio=`` / ``series=``; it returns
    ``input_ids``, ``attention_mask`` and ``media`` ready for ``model.generate(**inputs)``.
    """

    def __init__(self, processor: Any, collator: Any) -> None:
        self.processor = processor
        self.tokenizer = _TransformersTokenizer(processor.tokenizer, self.decode)
        self.collator = collator

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs: Any) -> ModRWKVHFProcessor:
        from .hub import resolve_model_path

        folder = resolve_model_path(pretrained_model_name_or_path, **_hub_options(kwargs))
        model = ModRWKV.from_pretrained(folder)  # the processor asks the encoders and adapters for token counts
        return cls(model.processor(ctx_len=None), model.collator(padding_side="left"))

    def __call__(self, conversations: Any = None, *, text: Any = None, images: Any = None, audio: Any = None,
                 series: Any = None, add_generation_prompt: bool | None = None, **_: Any) -> BatchFeature:
        """A text that `apply_chat_template` rendered is read back as its turns (its `<image>`
        markers filled by `images=`, in order); any other string is one user message.

        `add_generation_prompt` (default: True) ends a conversation with the assistant's turn start. A
        rendered text has it or not as rendered, since transformers' processors tokenise text as given
        (the flag is `apply_chat_template`'s); a flag that contradicts the text is refused rather than
        ignored."""
        from .inference.prompt import build_sample

        conversations = conversations if conversations is not None else text
        batch = conversations if _is_batch(conversations) else [conversations]
        if len(batch) > 1 and any(v is not None for v in (images, audio, series)):
            raise ValueError("for a batch, put the media in each conversation's content parts")
        samples = []
        for conversation in batch:
            prompt = True if add_generation_prompt is None else add_generation_prompt
            rendered = self.processor.template.parse(conversation) if isinstance(conversation, str) else None
            if rendered is not None:
                turns, prompt = rendered
                if add_generation_prompt is not None and add_generation_prompt != prompt:
                    raise ValueError(
                        f"add_generation_prompt={add_generation_prompt} but the rendered prompt "
                        f"{'ends' if prompt else 'does not end'} with the assistant's turn start, and a rendered text "
                        f"is read as rendered: render it with apply_chat_template(..., add_generation_prompt="
                        f"{add_generation_prompt}), pass the messages instead, or leave the argument out")
                conversation = [{"role": role, "content": content} for role, content in turns]
            sample = build_sample(conversation, images=images, audio=audio, series=series,
                                  media_layout=self.processor.media_layout)
            samples.append(self.processor(sample, add_generation_prompt=prompt))
        collated = self.collator(samples)
        return BatchFeature({"input_ids": collated.input_ids, "attention_mask": collated.attention_mask,
                             "media": collated.media})

    def apply_chat_template(self, conversation: Any, add_generation_prompt: bool = False, tokenize: bool = False,
                            return_dict: bool = False, images: Any = None, audio: Any = None, series: Any = None,
                            **_: Any) -> Any:
        """transformers' processor idiom: a conversation (or a list of them) of ``{"role", "content"}``
        messages, content as text or parts (``{"type": "text"}``, ``{"type": "image"}`` with or without
        its ``"image"``). `tokenize=False` gives the prompt text, with ``<image>`` markers where the
        media go, for ``processor(text=..., images=...)``; `tokenize=True` gives the model inputs
        (`return_dict=True`) or their input_ids."""
        if tokenize:
            inputs = self(conversation, images=images, audio=audio, series=series,
                          add_generation_prompt=add_generation_prompt)
            return inputs if return_dict else inputs["input_ids"]
        batch = conversation if _is_batch(conversation) else [conversation]
        texts = [self.processor.template.render(_turns(c), add_generation_prompt) for c in batch]
        return texts if batch is conversation else texts[0]

    def decode(self, token_ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = False, **_: Any) -> str:
        """The text of `token_ids`, without the ids that have none (padding, and the media placeholders of
        a prompt: `generate()` returns the prompt before the reply); `skip_special_tokens`, as in
        transformers, also drops the chat format's end-of-turn token (`\x17`), which `generate` returns as
        the last token of a reply."""
        ids = token_ids.tolist() if isinstance(token_ids, torch.Tensor) else list(token_ids)
        dropped = {0, *self.processor.template.stop_token_ids} if skip_special_tokens else {0}
        world = self.processor.tokenizer
        return world.decode([i for i in ids if i not in dropped and _has_text(world, i)])

    def batch_decode(self, sequences: Sequence[Sequence[int]] | torch.Tensor, **kwargs: Any) -> list[str]:
        return [self.decode(s, **kwargs) for s in sequences]


def _has_text(tokenizer: Any, token_id: int) -> bool:
    try:
        tokenizer.token_bytes(token_id)
    except ValueError:
        return False
    return True


class _TransformersTokenizer:
    """`processor.tokenizer`: the World tokenizer, decoding as the processor decodes. transformers'
    streamers (`TextStreamer(processor.tokenizer)`) decode the prompt's ids too, media placeholders
    included, and pass `skip_special_tokens`; the World tokenizer's own `decode` refuses both."""

    def __init__(self, tokenizer: Any, decode: Callable[..., str]) -> None:
        self._tokenizer = tokenizer
        self.decode = decode

    def __getattr__(self, name: str) -> Any:
        if name == "_tokenizer":  # not set yet (a copy being built): no recursion
            raise AttributeError(name)
        return getattr(self._tokenizer, name)


def _hub_options(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The `from_pretrained` keyword arguments that say where a hub id is looked up."""
    return {"revision": kwargs.get("revision"), "cache_dir": kwargs.get("cache_dir"), "token": kwargs.get("token"),
            "offline": True if kwargs.get("local_files_only") else None}


def _turns(conversation: Any) -> list[tuple[str, str]]:
    """The (role, text) turns of a conversation, content parts read as `openai_to_sample` reads them
    (`content_text`), media parts as their markers: rendering needs the media's places only, not the media."""
    from .data.readers.openai_chat import PART_MODALITIES, ROLES, content_text
    from .inference.prompt import ROLES as PLAIN_ROLES

    if isinstance(conversation, str):
        return [("user", conversation)]
    turns = []
    # as `build_sample` reads them: in a conversation with content parts, every text is its characters
    # (markers escaped, so that the rendered prompt read back keeps them text); without, markers are media
    with_parts = any(isinstance(m, Mapping) and isinstance(m.get("content"), list) for m in conversation)
    # the roles `build_sample` takes: the OpenAI reader's (its "developer" is a system turn) with parts
    roles = ROLES if with_parts else {role: role for role in PLAIN_ROLES}
    for index, m in enumerate(conversation if isinstance(conversation, (list, tuple)) else ()):
        content = m.get("content") if isinstance(m, Mapping) else None
        if not isinstance(m, Mapping) or m.get("role") not in roles or not isinstance(content, (str, list)):
            raise ValueError(f"messages[{index}] must be {{'role': {'|'.join(map(repr, roles))}, 'content': text "
                             f"or a list of parts}}, got {m!r:.200}")
        text = content_text(content, f"messages[{index}].content", "",
                            lambda kind, part, where: MARKERS[PART_MODALITIES[kind]]) if with_parts else content
        turns.append((roles[m["role"]], text))
    if not turns:
        raise ValueError("apply_chat_template needs a conversation: a non-empty list of messages")
    return turns


def _is_batch(conversations: Any) -> bool:
    """A list of conversations (each a string or a list of messages) rather than one conversation."""
    return isinstance(conversations, (list, tuple)) and bool(conversations) and all(
        isinstance(c, (str, list, tuple)) for c in conversations)


AutoConfig.register(MODEL_TYPE, ModRWKVConfig, exist_ok=True)
AutoModel.register(ModRWKVConfig, ModRWKVForCausalLM, exist_ok=True)
AutoModelForCausalLM.register(ModRWKVConfig, ModRWKVForCausalLM, exist_ok=True)
AutoProcessor.register(ModRWKVConfig, ModRWKVHFProcessor, exist_ok=True)
