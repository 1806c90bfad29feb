"""Adapters that let the popular evaluation harnesses drive a modrwkv model; neither harness is
needed to import them: `vlmevalkit.ModRWKVVLM` (VLMEvalKit) and `lmms_eval.ModRWKVLmmsCore`
(lmms-eval, registered through `LMMS_EVAL_PLUGINS=modrwkv.evaluation.harness`)."""
