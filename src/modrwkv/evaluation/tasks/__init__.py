"""The benchmarks `modrwkv eval` runs, one module per family; `TASKS` maps a task name to it."""

from collections.abc import Mapping, Sequence
from pathlib import Path

from ...data.readers.base import SERIES_FILES, is_series_file
from ...processing.speech_segments import SegmentSettings
from .base import BenchmarkFileError, EvalSample, PaperResult, Task
from .choice import MMMU, MMBench, ScienceQA
from .custom import METRICS, CustomTask
from .pope import POPE
from .series import SERIES_TASKS, Forecast
from .speech import Aishell, LibriSpeech
from .vqa import GQA, TextVQA, VQAv2

TASKS: dict[str, Task] = {
    task.name: task
    for task in (VQAv2(), GQA(), TextVQA(), ScienceQA(), POPE(), MMBench(), MMMU(), LibriSpeech(), Aishell(),
                 *SERIES_TASKS, CustomTask())
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    return TASKS[name]


# `custom` with a series file (.csv, .tsv, .npz, .tsf, a Parquet / JSON / .xlsx table of series columns or a
# Parquet / JSONL file of series rows) is a forecasting series: the task registered under this name reads it, as
# training reads such a file (`is_series_file`).
CUSTOM_SERIES = "custom-series"


def custom_task(data: str | Path | Sequence[str | Path], *, metric: str | None = None, prompt: str | None = None,
                asr_prompt: str | None = None, media_folder: str | Path | None = None,
                baselines: Mapping[str, float] | None = None, long_form: SegmentSettings | None = None,
                caption_prompt: str | None = None, label_column: str | None = None,
                columns: Mapping[str, str] | None = None, split: str | None = None,
                where: Mapping[str, Sequence[str]] | None = None) -> Task:
    """The task `--task custom` means for `data`: .json / .jsonl / .parquet / .tar files in a training format
    (one, or several as data.train takes them), configured with these options, or, for a series file (.csv,
    .tsv, .npz, .tsf, a .parquet / .json / .xlsx table of series columns or a .parquet / .jsonl of series rows,
    `is_series_file`; not a Hugging Face metadata file), the `custom-series` forecasting task (`baselines`: other
    methods' MSE on its windows). `label_column` is the column a hub Parquet file's plain rows are answered with
    (data.options.label_column), `columns` the file's column of each field of question-answer records
    (data.options.columns), `split` the splits of a Karpathy split file or a Flickr token file to read
    (data.options.split; several joined by commas: "train,restval"), `where` the values of the rows to read by column
    (data.options.where: ESC-50's held-out `{"fold": ["5"]}`); a series file's split is its task's own
    (`Task.check_split`)."""
    given = [data] if isinstance(data, (str, Path)) else list(data)
    series = [path for path in given if is_series_file(Path(path))]
    if series and len(given) > 1:
        raise ValueError(f"{series[0]}: a {Path(series[0]).suffix} file is a forecasting series, evaluated one file "
                         "at a time; give it alone")
    if not series:
        options = {"label_column": label_column, "columns": columns,
                   "split": None if split is None else split.split(","), "where": where}
        return CustomTask(metric=metric, prompt=prompt, asr_prompt=asr_prompt, media_folder=media_folder,
                          baselines=baselines, long_form=long_form, caption_prompt=caption_prompt,
                          reader_options={option: value for option, value in options.items() if value is not None})
    if CUSTOM_SERIES not in TASKS:
        raise ValueError(f"{series[0]}: a {Path(series[0]).suffix} file is evaluated as a forecasting series by the "
                         f"{CUSTOM_SERIES!r} task, "
                         f"which this installation of modrwkv does not have (tasks: {', '.join(TASKS)}); give a "
                         ".json / .jsonl file of records in a training format instead")
    if (metric not in (None, "mse") or prompt is not None or asr_prompt is not None or media_folder is not None
            or long_form is not None or caption_prompt is not None or label_column is not None or columns is not None
            or where is not None):
        raise ValueError(f"{series[0]}: --metric, --prompt, --asr-prompt, --caption-prompt, --label-column, --columns, "
                         "--long-form, --where and --media-folder apply to .json / .jsonl files and shards of records; "
                         f"a series file ({SERIES_FILES}) is read by the {CUSTOM_SERIES!r} task with its own options")
    # --baseline: other methods' MSE on the same windows, shown beside the model's as for records
    return TASKS[CUSTOM_SERIES].configure(baselines=dict(baselines)) if baselines else TASKS[CUSTOM_SERIES]


__all__ = ["CUSTOM_SERIES", "METRICS", "TASKS", "CustomTask", "custom_task",
           "BenchmarkFileError", "EvalSample", "Forecast", "PaperResult", "Task", "get_task"]
