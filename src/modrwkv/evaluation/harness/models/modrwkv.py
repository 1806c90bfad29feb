"""The lmms-eval model class: `ModRWKVLmmsCore` on lmms-eval's `lmms` base. Only lmms-eval imports
this module (it needs lmms-eval installed); everything else uses `harness.lmms_eval`."""

from lmms_eval.api.model import lmms

from ..lmms_eval import ModRWKVLmmsCore

try:  # lmms-eval versions before the plugin-path registry find models through this decorator
    from lmms_eval.api.registry import register_model
except ImportError:  # pragma: no cover - newer lmms-eval
    register_model = None


class ModRWKVLmms(ModRWKVLmmsCore, lmms):
    """modrwkv for lmms-eval (`--model modrwkv --model_args pretrained=DIR,device=cuda,dtype=bf16`)."""


if register_model is not None:
    register_model("modrwkv")(ModRWKVLmms)
