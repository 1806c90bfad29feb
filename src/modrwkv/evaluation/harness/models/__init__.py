"""lmms-eval model classes (they import lmms-eval); lmms-eval finds them through the
`lmms_eval.models` entry point (`harness.lmms_eval.lmms_eval_manifest`)."""
