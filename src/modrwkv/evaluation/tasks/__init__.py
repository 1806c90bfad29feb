"""The benchmarks `modrwkv eval` runs, one module per family; `TASKS` maps a task name to it."""

from .base import BenchmarkFileError, EvalSample, PaperResult, Task
from .choice import MMMU, MMBench, ScienceQA
from .pope import POPE
from .series import SERIES_TASKS, Forecast
from .speech import Aishell, LibriSpeech
from .vqa import GQA, TextVQA, VQAv2

TASKS: dict[str, Task] = {
    task.name: task
    for task in (VQAv2(), GQA(), TextVQA(), ScienceQA(), POPE(), MMBench(), MMMU(), LibriSpeech(), Aishell(), *SERIES_TASKS)
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    return TASKS[name]


__all__ = ["TASKS", "BenchmarkFileError", "EvalSample", "Forecast", "PaperResult", "Task", "get_task"]
