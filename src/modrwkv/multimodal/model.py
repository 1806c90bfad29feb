"""ModRWKV: frozen (or trainable) modality encoders -> adapters -> the RWKV-7 LM.

The adapters' outputs replace the embeddings at placeholder positions (masked scatter), so any
number of images, audio clips and series may sit anywhere in a prompt; the spliced sequence then
passes through the LM exactly like token embeddings (including `ln0`).
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..adapters import AdapterConfig, build_adapter
from ..data.readers.asr import DEFAULT_ASR_PROMPT
from ..data.readers.series import series_prompt_problem
from ..data.sample import MEDIA_LAYOUTS, MediaLayout, check_media_layout
from ..encoders import build_encoder
from ..encoders.base import ModalityEncoder
from ..encoders.media import VideoSampling
from ..generation.engine import undecodable_ids
from ..lm import RWKV7, RWKV7Config, RWKV7State
from ..lm.checkpoint import CheckpointError, build_lm, check_savable, load_state_dict, resolve_dtype, save_initial_state_file
from ..lm.errors import check_keys
from ..lm.files import MODRWKV_FORMAT, read_json_object, read_safetensors
from ..lm.model import INITIAL_STATE_NAME
from ..lm.ops.cross_entropy import linear_cross_entropy
from ..processing import IGNORE_INDEX, PLACEHOLDER_IDS, Batch, Collator, ModRWKVProcessor, get_template
from ..processing.processor import SPLICE_MODES
from ..tokenizer import WorldTokenizer
from .released import PROMPT_FORMATS, PromptFormat, load_encoder_weights, prompt_settings, split_released
from ..textfiles import write_text_atomically
from ..weightfiles import save_safetensors


class Unrecorded(enum.Enum):
    """A setting that a model folder saved before it was recorded does not hold (`UNRECORDED`)."""

    UNRECORDED = "unrecorded"


# The prompts a model folder records that its training asked with (the ASR prompt, the caption question of
# WebDataset shards). A model loaded from a folder saved before folders recorded one keeps it UNRECORDED rather
# than taking it for the default, so that saving the model again (save_pretrained, merge-lora, a stage 2 from it,
# a resumed run that asked none) leaves the key out of config.json as before, and eval still warns about it.
RECORDED_PROMPTS = ("asr_prompt", "caption_prompt")
UNRECORDED = Unrecorded.UNRECORDED

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = MODRWKV_FORMAT
FORMAT_VERSION = 1
MODEL_CARD_NAME = "README.md"
# What makes a saved folder a transformers model folder too (see modrwkv.hf_integration): the
# model type and class, and an auto_map whose modules import modrwkv's classes (fla-hub's pattern).
HF_MODEL_TYPE = "modrwkv"
HF_ARCHITECTURE = "ModRWKVForCausalLM"
HF_AUTO_MAP = {
    "AutoConfig": "configuration_modrwkv.ModRWKVConfig",
    "AutoModel": "modeling_modrwkv.ModRWKVForCausalLM",
    "AutoModelForCausalLM": "modeling_modrwkv.ModRWKVForCausalLM",
}
HF_REMOTE_CODE = {
    "configuration_modrwkv.py": "from modrwkv.hf_integration import ModRWKVConfig\n\n__all__ = ['ModRWKVConfig']\n",
    "modeling_modrwkv.py": "from modrwkv.hf_integration import ModRWKVForCausalLM\n\n__all__ = ['ModRWKVForCausalLM']\n",
    "processing_modrwkv.py": "from modrwkv.hf_integration import ModRWKVHFProcessor\n\n__all__ = ['ModRWKVHFProcessor']\n",
}
HF_PROCESSOR_CONFIG_NAME = "processor_config.json"
HF_PROCESSOR_CONFIG = {"processor_class": "ModRWKVHFProcessor",
                       "auto_map": {"AutoProcessor": "processing_modrwkv.ModRWKVHFProcessor"}}
EncoderSources = Literal["reference", "copy", "link"]


class ModRWKVOutput(NamedTuple):
    """A named tuple, not a dataclass: DeepSpeed ZeRO-3 re-gathers a module's partitioned weights for
    its backward through hooks on the tensors its forward returns, and finds them only in tuples,
    lists and dicts (the head's weight, which the chunked loss reads directly, was gone by then)."""

    loss: torch.Tensor | None  # mean cross-entropy over supervised tokens
    logits: torch.Tensor | None
    state: RWKV7State
    hidden: torch.Tensor
    num_label_tokens: int = 0


class ModRWKV(nn.Module):
    def __init__(
        self,
        lm: RWKV7,
        encoders: Mapping[str, ModalityEncoder],
        adapters: Mapping[str, nn.Module],
        template: str = "rwkv",
        splice: str = "placeholder",
        ctx_len: int | None = 2048,
        placeholder_ids: Mapping[str, int] | None = None,
        special_tokens: Mapping[str, int] | None = None,
        asr_prompt: str | None | Unrecorded = DEFAULT_ASR_PROMPT,
        video: VideoSampling | Mapping[str, Any] | None = None,
        series_lookback: int | None = None,
        series_horizon: int | None = None,
        series_prompt: str | None = None,
        series_baseline_only: bool = False,
        media_layout: MediaLayout = "media_text",
        caption_prompt: str | None | Unrecorded = None,
    ) -> None:
        """`placeholder_ids`: the id marking each modality's positions (default `PLACEHOLDER_IDS`);
        `special_tokens`: `{text: id}` entries the model's tokenizer adds to the World vocabulary
        (default: the template's, e.g. WorldRWKV's `<|vision_start|>` ...); `asr_prompt`: the user text that asked for a
        transcript in training (None: the audio alone, the authors' layout; `UNRECORDED` as for `caption_prompt`,
        asked as the default, `asked_asr_prompt`); `video`: which frames
        of a video the image encoder reads (`VideoSampling`, default 8 frames); `series_lookback`: the
        look-back length (steps) the model was trained to forecast from (None: not trained on windows);
        `series_horizon`: the horizon (steps) it was trained to forecast (None: not recorded; `modrwkv forecast` and
        `modrwkv eval --task custom-series` forecast as many by default);
        `series_prompt`: the template that asked for its forecasts in training (with {horizon} and
        {channels}; None: the reader's default for the window's shape, `series_prompt_template`);
        `series_baseline_only`: forecasts are the series encoder's baseline alone, not decoded (set by
        training when validation could not show that the model's corrections beat it;
        `ModRWKVPipeline.forecast_batch`); `media_layout`: where a prompt's media go when its text places
        no marker for them, the layout the model was trained with ("media_text", LLaVA's, or
        "text_media_text", the quickstart's; `modrwkv.data.sample.place_media`); `caption_prompt`: the question
        training asked WebDataset shards' captioned samples (image or video + .txt; the qa reader's `prompt`),
        None for the reader's default ("Write a short caption for the image." / "... the video."), `UNRECORDED`
        for a folder saved before folders recorded it (left out of the saved config, `RECORDED_PROMPTS`). All are
        saved in the model's config."""
        super().__init__()
        if set(encoders) != set(adapters):
            raise ValueError(f"every encoder needs an adapter: encoders {sorted(encoders)}, adapters {sorted(adapters)}")
        for modality, encoder in encoders.items():
            if encoder.modality != modality:
                raise ValueError(f"encoder {encoder.name!r} handles {encoder.modality}, not {modality}")
            adapter_cfg: AdapterConfig = adapters[modality].config
            if adapter_cfg.in_dim != encoder.output_dim or adapter_cfg.out_dim != lm.config.n_embd:
                raise ValueError(
                    f"{modality} adapter maps {adapter_cfg.in_dim} -> {adapter_cfg.out_dim} but the encoder gives "
                    f"{encoder.output_dim} and the LM width is {lm.config.n_embd}"
                )
        chat_template = get_template(template)  # validates the name
        check_media_layout(media_layout)
        if splice not in SPLICE_MODES:
            raise ValueError(f"splice must be one of {', '.join(SPLICE_MODES)}, got {splice!r}")
        self.placeholder_ids = dict(PLACEHOLDER_IDS if placeholder_ids is None else placeholder_ids)
        self.special_tokens = dict(chat_template.special_tokens if special_tokens is None else special_tokens)
        self.asr_prompt = asr_prompt
        self.series_lookback = series_lookback
        self.series_horizon = series_horizon
        self.series_prompt = series_prompt
        self.series_baseline_only = series_baseline_only
        self.media_layout = media_layout
        self.caption_prompt = caption_prompt
        self.video = video if isinstance(video, VideoSampling) else VideoSampling.from_dict(video)
        for modality in encoders:
            if modality not in self.placeholder_ids:
                raise ValueError(f"no placeholder id for {modality} (have {self.placeholder_ids})")
            for text in (chat_template.media_open.get(modality), chat_template.media_close.get(modality)):
                if text is not None and text not in self.special_tokens:
                    raise ValueError(f"the {template!r} template wraps {modality} in {text!r}, which is not among "
                                     f"the model's special tokens {sorted(self.special_tokens) or '(none)'}")
        self.lm = lm
        self.encoders = nn.ModuleDict(dict(encoders))
        self.adapters = nn.ModuleDict(dict(adapters))
        self.template_name = template
        self.splice = splice
        self.ctx_len = ctx_len

    @classmethod
    def build(
        cls,
        lm: RWKV7,
        encoders: Mapping[str, ModalityEncoder],
        adapters: Mapping[str, AdapterConfig] | None = None,
        **kwargs: Any,
    ) -> ModRWKV:
        """New adapters sized from each encoder and the LM; `adapters[modality]` chooses the kind
        ("speech" is the default for audio, "mlp" otherwise), `hidden_mult` and `compression`."""
        unknown = sorted(set(adapters or {}) - set(encoders))
        if unknown:
            raise ValueError(f"adapters given for {unknown}, which have no encoder")
        built = {}
        for modality, encoder in encoders.items():
            config = (adapters or {}).get(modality, AdapterConfig())
            built[modality] = build_adapter(config.sized(modality, encoder.output_dim, lm.config.n_embd))
        return cls(lm, encoders, built, **kwargs)

    # ---------------------------------------------------------------- processing

    def tokenizer(self) -> WorldTokenizer:
        """The World tokenizer with this model's special tokens."""
        return WorldTokenizer(special_tokens=self.special_tokens)

    def unspoken_token_ids(self, tokenizer: WorldTokenizer | None = None) -> list[int]:
        """Ids a reply never contains, whichever way it is generated (the pipeline, the server,
        transformers' `generate`): ids `tokenizer` (default: the model's) has no text for, and the
        media scaffolding, i.e. the placeholder ids and the special tokens that open and close
        media blocks. Their head rows are never trained as answers, and a reply cannot carry media.
        End of text (id 0) is not among them: `SamplingParams.banned_tokens` bans it by default."""
        tokenizer = tokenizer or self.tokenizer()
        vocab_size = self.lm.config.vocab_size
        scaffolding = {*self.placeholder_ids.values(), *self.special_tokens.values(),
                       *tokenizer.special_tokens.values()}
        return sorted({*undecodable_ids(tokenizer, vocab_size), *(t for t in scaffolding if t < vocab_size)})

    def processor(self, tokenizer: WorldTokenizer | None = None, **overrides: Any) -> ModRWKVProcessor:
        """The processor that matches this model's template, splicing, placeholder ids and token
        counts; `overrides` are `ModRWKVProcessor` options (e.g. `supervise_prefix`, `truncation`)."""
        options = {"splice": self.splice, "ctx_len": self.ctx_len, "placeholder_ids": self.placeholder_ids,
                   "video": self.video, "media_layout": self.media_layout, **overrides}
        return ModRWKVProcessor(
            tokenizer or self.tokenizer(),
            get_template(self.template_name),
            dict(self.encoders.items()),
            {m: self.adapters[m].output_length for m in self.adapters},
            **options,
        )

    def collator(self, padding_side: str = "right") -> Collator:
        return Collator(dict(self.encoders.items()), padding_side=padding_side)

    # ---------------------------------------------------------------- forward

    def media_embeddings(self, modality: str, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """All items of one modality in a batch -> their adapter outputs, concatenated [N, C]."""
        encoder = self.encoders[modality]
        with torch.set_grad_enabled(encoder.trainable and torch.is_grad_enabled()):
            out = encoder(dict(batch))
        tokens, lengths = self.adapters[modality](out.features.to(self.lm.dtype), out.lengths)
        keep = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < lengths[:, None]
        return tokens[keep]

    def embed(self, input_ids: torch.Tensor, media: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
              zero_media: bool = False) -> torch.Tensor:
        """Token embeddings with every placeholder position replaced by its media embedding, or
        by zeros with `zero_media` (the encoders do not run): what the model predicts without its
        media, which measures how much it relies on them."""
        positions_of = {modality: input_ids == pid for modality, pid in self.placeholder_ids.items()}
        placeholder = torch.zeros_like(input_ids, dtype=torch.bool)
        for positions in positions_of.values():
            placeholder |= positions
        embeds = self.lm.embed(input_ids.masked_fill(placeholder, 0))
        if zero_media:
            return embeds.masked_fill(placeholder.unsqueeze(-1), 0.0)
        media = media or {}
        for modality, positions in positions_of.items():
            n_positions = int(positions.sum())
            if modality not in media:
                if n_positions:
                    raise ValueError(f"input has {n_positions} {modality} positions but no {modality} input was given")
                continue
            if modality not in self.encoders:
                raise ValueError(f"this model has no {modality} encoder (it has {sorted(self.encoders)})")
            values = self.media_embeddings(modality, media[modality])
            if values.shape[0] != n_positions:
                raise ValueError(
                    f"{modality}: the adapter produced {values.shape[0]} embeddings for {n_positions} placeholder "
                    "positions; the processor and the model disagree on token counts"
                )
            embeds = embeds.masked_scatter(positions.unsqueeze(-1), values.to(embeds.dtype))
        return embeds

    def forward(
        self,
        input_ids: torch.Tensor,
        media: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
        *,
        labels: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        state: RWKV7State | None = None,
        logits: str | None = None,
        zero_media: bool = False,
    ) -> ModRWKVOutput:
        """With `labels`, returns the mean next-token loss over supervised positions, computing
        the vocabulary head only there (for small LMs the head dominates the step otherwise).
        `logits` defaults to "none" with labels and "all" without. `zero_media`: see `embed`."""
        embeds = self.embed(input_ids, media, zero_media=zero_media)
        out = self.lm(inputs_embeds=embeds, state=state, attention_mask=attention_mask,
                      logits=logits or ("none" if labels is not None else "all"))
        loss, n = None, 0
        if labels is not None:
            targets = labels[:, 1:]
            supervised = targets != IGNORE_INDEX
            n = int(supervised.sum())
            if n == 0:
                loss = out.hidden.sum() * 0.0  # keeps the graph (and DDP) intact for empty batches
            else:
                hidden = out.hidden[:, :-1][supervised]
                head = self.lm.head
                if type(head) is nn.Linear and head.bias is None:
                    # chunked: never the whole [tokens x vocab] logits (see lm/ops/cross_entropy.py)
                    loss = linear_cross_entropy(hidden, head.weight, targets[supervised])
                else:
                    # the head is not one weight matrix: a LoRA-wrapped head (`train.lora.targets:
                    # [..., head]`) or an inference-only bf16 / int8 head (`--dtype`); the whole
                    # logits then (docs/memory.md counts them for LoRA)
                    loss = F.cross_entropy(head(hidden).float(), targets[supervised])
        return ModRWKVOutput(loss, out.logits, out.state, out.hidden, n)

    def forward_batch(self, batch: Batch, **kwargs: Any) -> ModRWKVOutput:
        return self(batch.input_ids, batch.media, labels=batch.labels, attention_mask=batch.attention_mask, **kwargs)

    # ---------------------------------------------------------------- persistence

    @property
    def asked_asr_prompt(self) -> str | None:
        """The ASR prompt a transcript is asked with: the recorded `asr_prompt` (None: the audio alone), the default
        for a model whose folder records none (`UNRECORDED`; eval warns about it), as such a folder was read before."""
        return DEFAULT_ASR_PROMPT if self.asr_prompt is UNRECORDED else self.asr_prompt

    def config_dict(self) -> dict[str, Any]:
        """What config.json holds; a prompt the model's folder did not record (`UNRECORDED`) is left out."""
        config = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "lm": self.lm.config.to_dict(),
            "encoders": {m: e.config_dict() for m, e in self.encoders.items()},
            "adapters": {m: a.config.to_dict() for m, a in self.adapters.items()},
            "template": self.template_name,
            "splice": self.splice,
            "ctx_len": self.ctx_len,
            "placeholder_ids": self.placeholder_ids,
            "special_tokens": self.special_tokens,
            "asr_prompt": self.asr_prompt,
            "video": self.video.to_dict(),
            "series_lookback": self.series_lookback,
            "series_horizon": self.series_horizon,
            "series_prompt": self.series_prompt,
            "series_baseline_only": self.series_baseline_only,
            "media_layout": self.media_layout,
            "caption_prompt": self.caption_prompt,
        }
        return {name: value for name, value in config.items() if value is not UNRECORDED}

    def save_pretrained(
        self,
        folder: str | Path,
        encoder_sources: EncoderSources = "reference",
        *,
        training_config: Mapping[str, Any] | None = None,
        eval_results: Sequence[str | Path | Mapping[str, Any]] = (),
        repo_id: str | None = None,
    ) -> None:
        """config.json + model.safetensors (LM and adapters); an encoder's own weights go to
        encoders/<modality>/ when it was trained or has no pretrained source to reload from; the
        LM's initial state, when state tuning gave it one, to state.safetensors (`from_pretrained`
        and `modrwkv.lm.load_model` start every sequence from it).

        A frozen pretrained encoder is reloaded from its source, stored as `encoder_sources` says:
        "reference" (its hub id, or the absolute path of a local folder), "copy" (its weights
        saved into encoders/<modality>/: the folder is self-contained, at the cost of the
        encoder's size) or "link" (a symbolic link encoders/<modality>-source to a local source).

        The folder is also a transformers model folder (`model_type`, `architectures`, an
        `auto_map` with its three small modules, processor_config.json) and carries a model card
        (README.md) describing the architecture, encoders, `training_config` and the
        `modrwkv eval` results in `eval_results` (summaries, summary.json files or eval folders)."""
        from ..hub import model_card, read_eval_summaries

        if encoder_sources not in ("reference", "copy", "link"):
            raise ValueError(f"encoder_sources must be 'reference', 'copy' or 'link', got {encoder_sources!r}")
        check_savable(self.lm)
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {f"lm.{k}": v for k, v in self.lm.weights().items()}
        tensors.update({f"adapters.{k}": v for k, v in self.adapters.state_dict().items()})
        tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        config = self.config_dict()
        for modality, encoder in self.encoders.items():
            source = config["encoders"][modality].get("source")
            local = source is not None and Path(source).is_absolute() and Path(source).exists()
            if _needs_own_weights(encoder) or encoder_sources == "copy":
                encoder.save_pretrained(folder / "encoders" / modality)
                config["encoders"][modality]["saved"] = f"encoders/{modality}"
            elif encoder_sources == "link" and local:
                link = folder / "encoders" / f"{modality}-source"
                link.parent.mkdir(exist_ok=True)
                if link.is_symlink() or link.exists():
                    link.unlink()
                link.symlink_to(source, target_is_directory=True)
                config["encoders"][modality]["source"] = f"encoders/{modality}-source"
        tmp = folder / (WEIGHTS_NAME + ".tmp")
        save_safetensors(tensors, str(tmp), metadata={"format": FORMAT})
        tmp.replace(folder / WEIGHTS_NAME)
        save_initial_state_file(self.lm, folder)
        config.update({"model_type": HF_MODEL_TYPE, "architectures": [HF_ARCHITECTURE], "auto_map": HF_AUTO_MAP})
        write_text_atomically(folder / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
        for name, code in HF_REMOTE_CODE.items():
            write_text_atomically(folder / name, code)
        write_text_atomically(folder / HF_PROCESSOR_CONFIG_NAME, json.dumps(HF_PROCESSOR_CONFIG, indent=2) + "\n")
        card = model_card(config, training_config=training_config,
                          eval_summaries=read_eval_summaries(eval_results), repo_id=repo_id)
        write_text_atomically(folder / MODEL_CARD_NAME, card)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Saves this model with its card and uploads it to the hub (see `modrwkv.hub.push_to_hub`)."""
        from ..hub import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype | str = torch.float32
    ) -> ModRWKV:
        """Loads a `save_pretrained` folder, or a hub id ``org/name[@revision]`` (see `modrwkv.hub`).
        `dtype`: a torch dtype or a precision name ("fp32", "bf16", "fp16", "int8"; see
        `modrwkv.lm.resolve_dtype`)."""
        from ..hub import resolve_model_path

        dtype, weight_format = resolve_dtype(dtype, device)
        folder = resolve_model_path(folder)
        config = read_config(folder)
        config_path = folder / CONFIG_NAME
        lm_config = RWKV7Config.from_dict(config["lm"])  # checked by read_config
        adapters = {m: build_adapter(AdapterConfig.from_dict(c)) for m, c in config["adapters"].items()}
        encoders = {}
        for modality, enc_cfg in config["encoders"].items():
            enc_cfg = dict(enc_cfg)
            saved = enc_cfg.pop("saved", None)
            if isinstance(enc_cfg.get("source"), str) and (folder / enc_cfg["source"]).exists():  # linked in the folder
                enc_cfg["source"] = str(folder / enc_cfg["source"])
            try:
                encoders[modality] = build_encoder(**enc_cfg, weights=folder / saved if saved else None)
            except TypeError as exc:  # options this version's encoder does not take
                raise CheckpointError(f"{config_path}: encoders.{modality}: {exc}") from None
        tensors = read_safetensors(folder / WEIGHTS_NAME)
        lm_sd = {k[3:]: v for k, v in tensors.items() if k.startswith("lm.")}
        lm = build_lm(lm_sd, config=lm_config, dtype=dtype, where=folder / WEIGHTS_NAME)
        # Folders written before placeholder ids (or the series prompt, the media layout) were recorded used today's
        # defaults; a prompt of one written before it was recorded stays unknown (`UNRECORDED`, `RECORDED_PROMPTS`).
        model = cls(lm, encoders, adapters, config["template"], config["splice"], config["ctx_len"],
                    config.get("placeholder_ids", PLACEHOLDER_IDS), config.get("special_tokens", {}),
                    video=config.get("video"), series_lookback=config.get("series_lookback"),
                    series_horizon=config.get("series_horizon"),
                    series_prompt=config.get("series_prompt"),
                    series_baseline_only=config.get("series_baseline_only", False),
                    media_layout=config.get("media_layout", "media_text"),
                    **{name: config.get(name, UNRECORDED) for name in RECORDED_PROMPTS})
        adapter_sd = {k[len("adapters."):]: v for k, v in tensors.items() if k.startswith("adapters.")}
        _load_strict(model.adapters, adapter_sd, folder / WEIGHTS_NAME)
        model = model.to(device=device).to_lm_dtype(dtype).eval()
        model.lm.use_weight_format(weight_format)  # after the cast, which would widen bf16 buffers
        if (folder / INITIAL_STATE_NAME).exists():  # state tuning's output; after the cast: it stays fp32
            model.lm.load_initial_state(folder / INITIAL_STATE_NAME)
        return model

    def to_lm_dtype(self, dtype: torch.dtype) -> ModRWKV:
        """Casts LM and adapters; encoders keep their own dtype (fp32 on CPU)."""
        self.lm.to(dtype)
        self.adapters.to(dtype)
        return self

    @classmethod
    def from_released_checkpoint(
        cls,
        path: str | Path,
        encoder: ModalityEncoder,
        *,
        prompt_format: PromptFormat = "auto",
        ctx_len: int | None = 2048,
        compression_stride: int = 2,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | str = torch.float32,
    ) -> ModRWKV:
        """Loads the authors' (WorldRWKV) single-file release, current or paper-era (see
        `released.py`); the encoder is built separately (e.g. from its HF id) and receives the
        file's encoder weights if it has any. Sizes are read from the shapes. `prompt_format`
        "auto" takes the prompt layout the release was trained with from its keys; "current" or
        "paper" overrides it. `dtype`: a torch dtype or a precision name (see `resolve_dtype`)."""
        dtype, weight_format = resolve_dtype(dtype, device)
        if prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"prompt_format must be one of {', '.join(PROMPT_FORMATS)}, got {prompt_format!r}")
        released = split_released(load_state_dict(path), str(path), compression_stride)
        speech = released.adapter_config.kind == "speech"
        if speech != (encoder.modality == "audio"):
            # the widths alone may agree (Whisper-small and SigLIP2-base both give 768 features)
            what = ("a speech release (its adapter is the authors' SpeechAdapter: conv, proj.0, proj.2): it reads audio; "
                    "pass an audio encoder (whisper or wavlm)" if speech else
                    "a vision release (its adapter is the authors' VisualAdapter, with pre_norm): it reads images; pass "
                    "an image encoder (e.g. siglip2)")
            raise CheckpointError(f"{path} is {what}, not the {encoder.modality} encoder {encoder.name!r}")
        lm = build_lm(released.lm, dtype=dtype, where=path)
        adapter = build_adapter(released.adapter_config)
        _load_strict(adapter, released.adapter, Path(path))
        if released.encoder:
            load_encoder_weights(encoder, released.encoder, str(path))
        settings = released.prompt if prompt_format == "auto" else prompt_settings(prompt_format)
        log.info("%s: %s-era release (%s adapter), prompt format %s", path, released.era,
                 released.adapter_config.kind, settings.template)
        model = cls(
            lm, {encoder.modality: encoder}, {encoder.modality: adapter}, settings.template, settings.splice, ctx_len,
            special_tokens=settings.special_tokens,
            asr_prompt=None if released.adapter_config.kind == "speech" else DEFAULT_ASR_PROMPT,
        )
        model = model.to(device=device).to_lm_dtype(dtype).eval()
        model.lm.use_weight_format(weight_format)  # after the cast, which would widen bf16 buffers
        return model


def is_modrwkv_folder(path: str | Path) -> bool:
    """Whether `path` is a folder whose config.json says it is a ModRWKV model. A config.json that
    cannot be read or is not a JSON object raises CheckpointError (every model folder's config is one)."""
    path = Path(path)
    if not (path.is_dir() and (path / CONFIG_NAME).exists()):
        return False
    return read_json_object(path / CONFIG_NAME).get("format") == FORMAT


def read_config(folder: str | Path) -> dict[str, Any]:
    """The config.json of a ModRWKV folder, checked field by field before anything is built, so
    that a damaged or hand-edited config fails with the file and the field named."""
    folder = Path(folder)
    path = folder / CONFIG_NAME
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: no such folder")
    if not path.exists():
        raise FileNotFoundError(f"{folder}: no {CONFIG_NAME}; not a ModRWKV model folder")
    config = read_json_object(path)
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a ModRWKV config (format={config.get('format')!r})")
    for name in ("placeholder_ids", "special_tokens"):  # {modality or text: id}
        value = config.get(name, {})
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 65536
            for k, v in value.items()
        ):
            raise CheckpointError(f"{path}: '{name}' must be a JSON object of ids in [0, 65536), "
                                  f"got {json.dumps(value)[:60]}")
    for name in RECORDED_PROMPTS:
        if not isinstance(config.get(name), (str, type(None))):
            raise CheckpointError(f"{path}: '{name}' must be a string or null, got {json.dumps(config[name])[:60]}")
    for name in ("series_lookback", "series_horizon"):
        steps = config.get(name)
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise CheckpointError(f"{path}: '{name}' must be a whole number >= 1 or null, got "
                                  f"{json.dumps(steps)[:60]}")
    series_prompt = config.get("series_prompt")
    if not isinstance(series_prompt, (str, type(None))):
        raise CheckpointError(f"{path}: 'series_prompt' must be a string or null, got {json.dumps(series_prompt)[:60]}")
    problem = series_prompt_problem(series_prompt)
    if problem:
        raise CheckpointError(f"{path}: 'series_prompt' (the template training asked for forecasts with): {problem}")
    if not isinstance(config.get("series_baseline_only", False), bool):
        raise CheckpointError(f"{path}: 'series_baseline_only' must be true or false, got "
                              f"{json.dumps(config['series_baseline_only'])[:60]}")
    if config.get("media_layout", "media_text") not in MEDIA_LAYOUTS:
        raise CheckpointError(f"{path}: 'media_layout' (where a prompt's media go when its text has no marker for "
                              f"them) must be one of {', '.join(map(json.dumps, MEDIA_LAYOUTS))}, got "
                              f"{json.dumps(config['media_layout'])[:60]}")
    if not isinstance(config.get("video") or {}, dict):
        raise CheckpointError(f"{path}: 'video' must be a JSON object, got {json.dumps(config['video'])[:60]}")
    try:
        VideoSampling.from_dict(config.get("video"))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: 'video': {exc}") from None
    fields = {"lm": dict, "encoders": dict, "adapters": dict, "template": str, "splice": str}
    missing = sorted(name for name in (*fields, "ctx_len") if name not in config)
    if missing:
        raise CheckpointError(f"{path}: missing field(s) {missing}")
    for name, kind in fields.items():
        if not isinstance(config[name], kind):
            raise CheckpointError(f"{path}: '{name}' must be a JSON {'object' if kind is dict else 'string'}, "
                                  f"got {json.dumps(config[name])[:60]}")
    ctx_len = config["ctx_len"]
    if ctx_len is not None and (isinstance(ctx_len, bool) or not isinstance(ctx_len, int) or ctx_len < 1):
        raise CheckpointError(f"{path}: 'ctx_len' must be a positive integer or null, got {json.dumps(ctx_len)[:60]}")
    try:
        RWKV7Config.from_dict(config["lm"])
    except ValueError as exc:
        raise CheckpointError(f"{path}: 'lm': {exc}") from None
    if set(config["encoders"]) != set(config["adapters"]):
        raise CheckpointError(f"{path}: every encoder needs an adapter: encoders {sorted(config['encoders'])}, "
                              f"adapters {sorted(config['adapters'])}")
    for modality in config["encoders"]:
        encoder, adapter = config["encoders"][modality], config["adapters"][modality]
        if not isinstance(encoder, dict) or not isinstance(encoder.get("name"), str):
            raise CheckpointError(f"{path}: encoders.{modality} must be an object with a 'name'")
        if not isinstance(adapter, dict):
            raise CheckpointError(f"{path}: adapters.{modality} must be an object")
        try:
            AdapterConfig.from_dict(adapter)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: adapters.{modality}: {exc}") from None
    return config


def _needs_own_weights(encoder: ModalityEncoder) -> bool:
    return encoder.trainable or not encoder.config_dict().get("source")


def _load_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], where: Path) -> None:
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    check_keys(state_dict, expected, f"{where}: adapter weights do not match")
    module.load_state_dict(dict(state_dict))
