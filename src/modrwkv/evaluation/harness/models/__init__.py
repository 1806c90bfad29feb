"""lmms-eval's plugin hook: with `LMMS_EVAL_PLUGINS=modrwkv.evaluation.harness`, lmms-eval imports
this package and resolves each entry to `modrwkv.evaluation.harness.models.<name>.<class>`."""

AVAILABLE_MODELS = {"modrwkv": "ModRWKVLmms"}
