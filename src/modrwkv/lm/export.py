"""`modrwkv export`: the text LM of any checkpoint as a folder or file other runtimes read.

* ``fla``: a flash-linear-attention ``RWKV7ForCausalLM`` folder (config.json + model.safetensors)
  with the World vocabulary file ``rwkv_vocab_v20230424.txt`` beside it and an ``auto_map`` whose
  two small modules import fla's classes (the fla-hub pattern, for
  ``AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)``). llama.cpp's
  ``convert_hf_to_gguf.py`` reads such a folder (it needs the vocabulary file).
* ``gguf``: a GGUF file llama.cpp loads directly (see :mod:`modrwkv.lm.gguf_format`).

A ModRWKV folder exports its LM only: encoders and adapters have no equivalent in either format.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch

from ..textfiles import write_bytes_atomically, write_text_atomically
from ..tokenizer.world import DEFAULT_VOCAB_PATH
from .checkpoint import load_state_dict
from .fla_format import save_fla_folder
from .files import check_output_folder
from .gguf_format import check_gguf_output, save_gguf
from .model import INITIAL_STATE_NAME

log = logging.getLogger(__name__)

__all__ = ["EXPORT_FORMATS", "export_model", "lm_state_dict", "save_fla_export"]

EXPORT_FORMATS = ("fla", "gguf")
FLA_AUTO_MAP = {
    "AutoConfig": "configuration_rwkv7.RWKV7Config",
    "AutoModel": "modeling_rwkv7.RWKV7Model",
    "AutoModelForCausalLM": "modeling_rwkv7.RWKV7ForCausalLM",
}
# The remote-code modules of fla-hub folders: they re-export fla's own classes.
_FLA_CODE = {
    "configuration_rwkv7.py": "from fla.models.rwkv7.configuration_rwkv7 import RWKV7Config\n\n"
    "__all__ = ['RWKV7Config']\n",
    "modeling_rwkv7.py": "from fla.models.rwkv7.modeling_rwkv7 import RWKV7ForCausalLM, RWKV7Model\n\n"
    "__all__ = ['RWKV7ForCausalLM', 'RWKV7Model']\n",
}


def lm_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The official-layout LM tensors of any checkpoint `load_state_dict` reads (a ModRWKV folder
    gives its LM), warning when encoders and adapters are left behind."""
    from ..multimodal.model import is_modrwkv_folder, read_config

    if is_modrwkv_folder(path) and read_config(path)["encoders"]:
        log.warning("%s: exporting the text LM only; its encoders and adapters have no equivalent in the "
                    "exported format", path)
    if Path(path).is_dir() and (Path(path) / INITIAL_STATE_NAME).exists():
        log.warning("%s: its tuned initial state (%s) has no equivalent in the exported format and is left out; "
                    "the exported LM starts from zeros", path, INITIAL_STATE_NAME)
    return load_state_dict(path)


def save_fla_export(
    state_dict: Mapping[str, torch.Tensor], folder: str | Path, *, overwrite: bool = False
) -> Path:
    """An fla folder plus the vocabulary file and the remote-code `auto_map` (see module doc)."""
    folder = Path(folder)
    save_fla_folder(state_dict, folder, overwrite=overwrite,
                    config_overrides={"auto_map": FLA_AUTO_MAP})
    write_bytes_atomically(folder / DEFAULT_VOCAB_PATH.name, DEFAULT_VOCAB_PATH.read_bytes())
    for name, code in _FLA_CODE.items():
        write_text_atomically(folder / name, code)
    return folder


def export_model(
    source: str | Path,
    output: str | Path,
    format: str,
    *,
    dtype: str = "f16",
    overwrite: bool = False,
) -> Path:
    """Writes the text LM of ``source`` (any checkpoint `load_model` reads, or a ModRWKV folder) as
    ``format`` ("fla" folder or "gguf" file) to ``output``; ``dtype`` is the GGUF precision."""
    if format not in EXPORT_FORMATS:
        raise ValueError(f"export format must be one of {EXPORT_FORMATS}, got {format!r}")
    # The output is checked before the (possibly large) checkpoint is read.
    check_output_folder(output) if format == "fla" else check_gguf_output(output, overwrite)
    state_dict = lm_state_dict(source)
    if format == "fla":
        return save_fla_export(state_dict, output, overwrite=overwrite)
    return save_gguf(state_dict, output, dtype=dtype, name=Path(str(source)).name, overwrite=overwrite)
