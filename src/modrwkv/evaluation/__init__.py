"""Evaluation of modrwkv models on the paper's benchmarks, scored as the official scripts score them.

    from modrwkv.evaluation import ModelSpec, get_task, run_eval
    run_eval(get_task("gqa"), "data/gqa", "runs/eval/gqa", model=ModelSpec("my-model"),
             load_pipeline=lambda: ModRWKVPipeline.from_pretrained("my-model"))

`tasks` reads each benchmark's released files and prompts it as LLaVA-1.5 does; `metrics`
reproduces the official scoring; `runner` generates (batched, greedy, resumable, shardable);
`report` and `submission` write the Markdown table and the server submission files; `harness`
holds the adapters that let VLMEvalKit and lmms-eval drive a modrwkv model.
"""

from .report import format_report
from .runner import EvalResult, ModelSpec, run_eval
from .submission import export_submission
from .tasks import TASKS, BenchmarkFileError, EvalSample, Task, get_task

__all__ = [
    "TASKS",
    "BenchmarkFileError",
    "EvalResult",
    "EvalSample",
    "ModelSpec",
    "Task",
    "export_submission",
    "format_report",
    "get_task",
    "run_eval",
]
