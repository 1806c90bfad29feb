"""The lmms-eval model class: `ModRWKVLmmsCore` on lmms-eval's `lmms` base. Only lmms-eval imports
this module (it needs lmms-eval installed); everything else uses `harness.lmms_eval`."""

from lmms_eval.api.model import lmms

from ..lmms_eval import ModRWKVLmmsCore


class ModRWKVLmms(ModRWKVLmmsCore, lmms):
    """modrwkv for lmms-eval (`--model modrwkv --model_args pretrained=DIR,device=cuda,dtype=bf16`)."""
