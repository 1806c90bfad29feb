"""ModRWKV: frozen (or trainable) modality encoders -> adapters -> the RWKV-7 LM.

The adapters' outputs replace the embeddings at placeholder positions (masked scatter), so any
number of images, audio clips and series may sit anywhere in a prompt; the spliced sequence then
passes through the LM exactly like token embeddings (including `ln0`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from ..adapters import AdapterConfig, build_adapter
from ..encoders import build_encoder
from ..encoders.base import ModalityEncoder
from ..lm import RWKV7, RWKV7Config, RWKV7State
from ..lm.checkpoint import CheckpointError, check_state_dict, load_state_dict
from ..lm.files import MODRWKV_FORMAT, read_json_object, read_safetensors
from ..processing import IGNORE_INDEX, PLACEHOLDER_IDS, Batch, Collator, ModRWKVProcessor, get_template
from ..tokenizer import WorldTokenizer

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = MODRWKV_FORMAT
FORMAT_VERSION = 1


@dataclasses.dataclass
class ModRWKVOutput:
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
    ) -> None:
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
        get_template(template)  # validates the name
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
        adapter_options: Mapping[str, Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> ModRWKV:
        """New adapters sized from each encoder and the LM. `adapter_options[modality]` may set
        `kind` ("mlp"; "speech" is the default for audio), `hidden_mult` and `compression`."""
        adapters = {}
        for modality, encoder in encoders.items():
            options = dict((adapter_options or {}).get(modality, {}))
            options.setdefault("kind", "speech" if modality == "audio" else "mlp")
            adapters[modality] = build_adapter(
                AdapterConfig(in_dim=encoder.output_dim, out_dim=lm.config.n_embd, **options)
            )
        return cls(lm, encoders, adapters, **kwargs)

    # ---------------------------------------------------------------- processing

    def processor(self, tokenizer: WorldTokenizer | None = None, **overrides: Any) -> ModRWKVProcessor:
        """The processor that matches this model's template, splicing and token counts."""
        options = {"splice": self.splice, "ctx_len": self.ctx_len, **overrides}
        return ModRWKVProcessor(
            tokenizer or WorldTokenizer(),
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

    def embed(self, input_ids: torch.Tensor, media: Mapping[str, Mapping[str, torch.Tensor]] | None = None) -> torch.Tensor:
        """Token embeddings with every placeholder position replaced by its media embedding."""
        placeholder = torch.zeros_like(input_ids, dtype=torch.bool)
        for pid in PLACEHOLDER_IDS.values():
            placeholder |= input_ids == pid
        embeds = self.lm.embed(input_ids.masked_fill(placeholder, 0))
        media = media or {}
        for modality, pid in PLACEHOLDER_IDS.items():
            positions = input_ids == pid
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
    ) -> ModRWKVOutput:
        """With `labels`, returns the mean next-token loss over supervised positions, computing
        the vocabulary head only there (for small LMs the head dominates the step otherwise).
        `logits` defaults to "none" with labels and "all" without."""
        embeds = self.embed(input_ids, media)
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
                loss = F.cross_entropy(self.lm.head(hidden).float(), targets[supervised])
        return ModRWKVOutput(loss, out.logits, out.state, out.hidden, n)

    def forward_batch(self, batch: Batch, **kwargs: Any) -> ModRWKVOutput:
        return self(batch.input_ids, batch.media, labels=batch.labels, attention_mask=batch.attention_mask, **kwargs)

    # ---------------------------------------------------------------- persistence

    def config_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "lm": self.lm.config.to_dict(),
            "encoders": {m: e.config_dict() for m, e in self.encoders.items()},
            "adapters": {m: a.config.to_dict() for m, a in self.adapters.items()},
            "template": self.template_name,
            "splice": self.splice,
            "ctx_len": self.ctx_len,
            "placeholder_ids": PLACEHOLDER_IDS,
        }

    def save_pretrained(self, folder: str | Path) -> None:
        """config.json + model.safetensors (LM and adapters); an encoder's own weights go to
        encoders/<modality>/ when it was trained or has no pretrained source to reload from."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {f"lm.{k}": v for k, v in self.lm.state_dict().items()}
        tensors.update({f"adapters.{k}": v for k, v in self.adapters.state_dict().items()})
        tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        config = self.config_dict()
        for modality, encoder in self.encoders.items():
            if _needs_own_weights(encoder):
                encoder.save_pretrained(folder / "encoders" / modality)
                config["encoders"][modality]["saved"] = f"encoders/{modality}"
        tmp = folder / (WEIGHTS_NAME + ".tmp")
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
        tmp.replace(folder / WEIGHTS_NAME)
        (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> ModRWKV:
        folder = Path(folder)
        config = read_config(folder)
        config_path = folder / CONFIG_NAME
        lm_config = RWKV7Config.from_dict(config["lm"])  # checked by read_config
        adapters = {m: build_adapter(AdapterConfig.from_dict(c)) for m, c in config["adapters"].items()}
        encoders = {}
        for modality, enc_cfg in config["encoders"].items():
            enc_cfg = dict(enc_cfg)
            saved = enc_cfg.pop("saved", None)
            try:
                encoders[modality] = build_encoder(**enc_cfg, weights=folder / saved if saved else None)
            except TypeError as exc:  # options this version's encoder does not take
                raise CheckpointError(f"{config_path}: encoders.{modality}: {exc}") from None
        with torch.device("meta"):
            lm = RWKV7(lm_config)
        model = cls(lm, encoders, adapters, config["template"], config["splice"], config["ctx_len"])
        tensors = read_safetensors(folder / WEIGHTS_NAME)
        lm_sd = {k[3:]: v for k, v in tensors.items() if k.startswith("lm.")}
        lm.load_state_dict({k: v.to(dtype) for k, v in check_state_dict(lm_sd, lm).items()}, assign=True)
        lm.use_weight_layout("decode")
        adapter_sd = {k[len("adapters."):]: v for k, v in tensors.items() if k.startswith("adapters.")}
        _load_strict(model.adapters, adapter_sd, folder / WEIGHTS_NAME)
        return model.to(device=device).to_lm_dtype(dtype).eval()

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
        template: str = "rwkv",
        splice: str = "placeholder",
        ctx_len: int | None = 2048,
        compression_stride: int = 2,
        dtype: torch.dtype = torch.float32,
    ) -> ModRWKV:
        """Loads the authors' single-file release (`proj.*` = adapter, `llm.*` = LM in the official
        layout); the encoder is built separately from its HF id. Sizes are read from the shapes."""
        tensors = load_state_dict(path)
        lm_sd = {k[4:]: v for k, v in tensors.items() if k.startswith("llm.")}
        proj = {k[5:]: v for k, v in tensors.items() if k.startswith("proj.")}
        other = sorted(k for k in tensors if not k.startswith(("llm.", "proj.")))
        if not lm_sd or not proj or other:
            raise CheckpointError(
                f"{path}: expected only llm.* and proj.* keys; found {len(lm_sd)} llm.*, {len(proj)} proj.*, "
                f"other keys {other[:10]}"
            )
        lm_config = RWKV7Config.from_state_dict(lm_sd)
        with torch.device("meta"):
            lm = RWKV7(lm_config)
        lm.load_state_dict({k: v.to(dtype) for k, v in check_state_dict(lm_sd, lm).items()}, assign=True)
        lm.use_weight_layout("decode")
        if "mlp.0.weight" not in proj or "mlp.2.weight" not in proj:
            raise CheckpointError(f"{path}: adapter keys proj.mlp.0.weight / proj.mlp.2.weight missing (have {sorted(proj)})")
        hidden, in_dim = proj["mlp.0.weight"].shape
        out_dim = proj["mlp.2.weight"].shape[0]
        if "pre_norm.weight" in proj:
            compression = None
            if "conv.weight" in proj:
                compression = (proj["conv.weight"].shape[-1], compression_stride)
            adapter_cfg = AdapterConfig("mlp", in_dim, out_dim, hidden // out_dim, compression)
        else:
            adapter_cfg = AdapterConfig("speech", proj["conv.weight"].shape[1], out_dim)
        adapter = build_adapter(adapter_cfg)
        _load_strict(adapter, proj, Path(path))
        model = cls(lm, {encoder.modality: encoder}, {encoder.modality: adapter}, template, splice, ctx_len)
        return model.to_lm_dtype(dtype).eval()


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
    if not path.exists():
        raise FileNotFoundError(f"{folder}: no {CONFIG_NAME}; not a ModRWKV model folder")
    config = read_json_object(path)
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a ModRWKV config (format={config.get('format')!r})")
    if config.get("placeholder_ids", PLACEHOLDER_IDS) != PLACEHOLDER_IDS:
        raise CheckpointError(f"{path}: placeholder ids {config['placeholder_ids']} differ from this version's")
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
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mis_shaped = sorted(k for k in set(expected) & set(state_dict) if tuple(state_dict[k].shape) != expected[k])
    if missing or unexpected or mis_shaped:
        raise CheckpointError(
            f"{where}: adapter weights do not match: missing {missing}, unexpected {unexpected}, mis-shaped {mis_shaped}"
        )
    module.load_state_dict(dict(state_dict))
