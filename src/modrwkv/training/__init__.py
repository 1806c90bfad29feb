"""Training ModRWKV: the two-stage recipe (plus LoRA) on PyTorch Lightning.

    from modrwkv.training import load_config, train
    result = train(load_config("configs/vision-stage1.yaml"))

`modrwkv train CONFIG.yaml [--dotted.key value ...] [--resume]` is the same from the shell, and
`modrwkv merge-lora RUN_FOLDER OUT` folds a LoRA run into a plain model folder.
"""

from ..extras import require

require("lightning", "train", "training")  # before the modules that import it: names the pip extra

from .checkpoint import export_model, latest_checkpoint  # noqa: E402
from .config import ConfigError, LoRAConfig, TrainConfig, apply_overrides, config_from_dict, load_config  # noqa: E402
from .lora import apply_lora, load_lora, merge_lora  # noqa: E402
from .merge import merge_lora_folder  # noqa: E402
from .recipe import TrainResult, build_model, train  # noqa: E402
from .schedules import lr_at  # noqa: E402

__all__ = [
    "ConfigError",
    "LoRAConfig",
    "TrainConfig",
    "TrainResult",
    "apply_lora",
    "apply_overrides",
    "build_model",
    "config_from_dict",
    "export_model",
    "latest_checkpoint",
    "load_config",
    "load_lora",
    "lr_at",
    "merge_lora",
    "merge_lora_folder",
    "train",
]
