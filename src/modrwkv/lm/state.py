"""The RWKV-7 recurrent state: a fixed-size summary of everything a sequence has read."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError

from .config import RWKV7Config
from .errors import CheckpointError
from .files import check_output_file, read_safetensors
from ..weightfiles import save_safetensors


@dataclasses.dataclass
class RWKV7State:
    """Per-layer state for a batch of sequences.

    att_shift / ffn_shift: the previous token's input to TimeMix / ChannelMix, [L, B, C].
    wkv: the fast-weight matrix of every head, [L, B, H, N(value), N(key)], always fp32 because it
    accumulates over the whole sequence.
    """

    att_shift: torch.Tensor
    wkv: torch.Tensor
    ffn_shift: torch.Tensor

    @classmethod
    def zeros(
        cls,
        config: RWKV7Config,
        batch_size: int = 1,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> RWKV7State:
        L, C, H, N = config.n_layer, config.n_embd, config.n_head, config.head_size
        return cls(
            att_shift=torch.zeros(L, batch_size, C, device=device, dtype=dtype),
            wkv=torch.zeros(L, batch_size, H, N, N, device=device, dtype=torch.float32),
            ffn_shift=torch.zeros(L, batch_size, C, device=device, dtype=dtype),
        )

    @property
    def batch_size(self) -> int:
        return self.att_shift.shape[1]

    @property
    def device(self) -> torch.device:
        return self.wkv.device

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._tensors())

    def _tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.att_shift, self.wkv, self.ffn_shift

    def clone(self) -> RWKV7State:
        return RWKV7State(*(t.clone() for t in self._tensors()))

    def detach(self) -> RWKV7State:
        return RWKV7State(*(t.detach() for t in self._tensors()))

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> RWKV7State:
        """Moves the state; `dtype` applies to the shift vectors only (wkv stays fp32)."""
        return RWKV7State(
            self.att_shift.to(device=device, dtype=dtype),
            self.wkv.to(device=device),
            self.ffn_shift.to(device=device, dtype=dtype),
        )

    def select(self, rows: Sequence[int] | torch.Tensor) -> RWKV7State:
        """The states of the given batch rows (a copy), e.g. to drop finished sequences."""
        index = torch.as_tensor(rows, dtype=torch.long, device=self.device)
        return RWKV7State(*(t.index_select(1, index) for t in self._tensors()))

    def expand(self, batch_size: int) -> RWKV7State:
        """Repeats a one-row state, e.g. a cached prompt state, into a batch (a copy)."""
        if self.batch_size != 1:
            raise ValueError(f"expand needs a state of batch size 1, got {self.batch_size}")
        return RWKV7State(*(t.expand(t.shape[0], batch_size, *t.shape[2:]).clone() for t in self._tensors()))

    @classmethod
    def cat(cls, states: Sequence[RWKV7State]) -> RWKV7State:
        """Joins states along the batch dimension."""
        if not states:
            raise ValueError("cat needs at least one state")
        return cls(*(torch.cat(parts, dim=1) for parts in zip(*(s._tensors() for s in states))))

    def save(self, path: str | Path, metadata: dict[str, str] | None = None) -> None:
        """Writes the state to a safetensors file (written to a temporary name, then renamed)."""
        path = check_output_file(path)
        meta = {"format": "modrwkv-rwkv7-state", **(metadata or {})}
        tmp = path.with_name(path.name + ".tmp")
        tensors = dict(zip(_NAMES, (t.detach().contiguous().cpu() for t in self._tensors())))
        try:
            save_safetensors(tensors, str(tmp), metadata=meta)
            tmp.replace(path)
        except (OSError, SafetensorError) as exc:
            if tmp.is_file():
                tmp.unlink()
            raise OSError(f"cannot write the state to {path}: {exc}") from None

    @classmethod
    def load(
        cls, path: str | Path, config: RWKV7Config | None = None, device: torch.device | str | None = None
    ) -> RWKV7State:
        """Reads a state saved by `save`; with `config`, checks that it fits that model. Raises
        ValueError naming the file and the problem (not a state file, wrong ranks or shapes, NaN)."""
        try:
            tensors = read_safetensors(path, device=str(device) if device is not None else "cpu")
        except CheckpointError as exc:
            raise ValueError(f"cannot load a state: {exc}") from None
        missing = [k for k in _NAMES if k not in tensors]
        if missing:
            raise ValueError(f"{path}: not an RWKV-7 state file, missing tensor(s) {missing}")
        ranks = {"att_shift": 3, "wkv": 5, "ffn_shift": 3}  # [L, B, C] and [L, B, H, N, N]
        wrong = [f"{k} has shape {tuple(tensors[k].shape)}, expected {ranks[k]} dimensions"
                 for k in _NAMES if tensors[k].dim() != ranks[k]]
        wrong += [f"{k} is {tensors[k].dtype}, expected floating point" for k in _NAMES
                  if not tensors[k].is_floating_point()]
        if wrong:
            raise ValueError(f"{path}: not an RWKV-7 state: " + "; ".join(wrong))
        layers_rows = {k: tuple(tensors[k].shape[:2]) for k in _NAMES}
        if len(set(layers_rows.values())) != 1:
            raise ValueError(f"{path}: the state tensors disagree on (layers, batch rows): {layers_rows}")
        state = cls(tensors["att_shift"], tensors["wkv"], tensors["ffn_shift"])
        if config is not None:
            expected = cls.zeros(config, state.batch_size, device="meta")
            wrong = [f"state tensor {name} has shape {tuple(have.shape)}, but this model needs {tuple(want.shape)}"
                     for name, have, want in zip(_NAMES, state._tensors(), expected._tensors())
                     if have.shape != want.shape]
            if wrong:
                raise ValueError(f"{path}: " + "; ".join(wrong) + f" ({json.dumps(config.to_dict())})")
        return state


_NAMES = ("att_shift", "wkv", "ffn_shift")
