"""Forecasting tasks.

The long-horizon benchmarks (ETTh1/2, ETTm1/2, ECL, Weather, Traffic) run zero-shot as the usual
protocol does: lookback 720, horizon 96, every channel forecast on its own (channel-independent),
the test windows at stride 1 inside the Time-Series-Library borders, values standardised with a
scaler fitted on the training rows only, MSE and MAE on standardised values. `--lookback` and
`--horizon` change the window; the paper's numbers are then left out of the report, as they are
for `custom-series`, which runs the same protocol on any series file training reads (CSV, TSV, NPZ,
a Parquet / Arrow / JSON / .xlsx table of scalar columns read as its CSV, Parquet / JSONL of series rows; 70/10/20
borders, of each row's length in a file of series rows; columns chosen with `targets`, read by the training reader
itself, so training and evaluation see the same rows, empty cells, date columns and scaling).

The model is asked with the prompt template it was trained with (`series_prompt` in its
config.json; the reader's default for a folder without one), or with the task's `series_prompt`
when one is given (`--series-prompt`), the user turn recorded as the record's "prompt". It reads the look-back window normalised with its own statistics and writes the
normalised forecast, constrained to exactly `horizon` numbers; `ModRWKVPipeline.forecast_batch`
maps it back with the window's mean and scale. A record keeps the model's text as "prediction"
and the de-normalised numbers as "forecast", which is what is scored; "complete" is false when
the reply was cut short (then padded with its last number) and counted as "unparsed"; "source" is
"baseline" where the model's folder ships its baseline alone (`series_baseline_only`: the forecast is
the series encoder's, not decoded; `force_model` decodes it anyway), the summary's "source" too.

Beside the model's numbers, the run reports simple forecasts of exactly the windows it scores
(`computed_baselines`: repeat-last, look-back mean, train mean, and seasonal naive (+ drift) of the
model's `season`, or of the task's `season` when one is given, `--season N`: the baselines only, not the model),
and for `custom-series` the MSE of other methods the user gives (`baselines`, `--baseline NAME=VALUE`), as
`custom` shows its baselines.

`custom-series` also scores each window's MASE (its MAE over the seasonal-naive one's on the history before its
target: `mase_scales`) and sMAPE (in the file's units), the model's and the baselines'. With `holdout="last"` (the
default for a .tsf file stating its @horizon) it runs the fixed-horizon protocol of the Monash archive, M4 and GluonTS
instead: one window per series, its last `horizon` steps (val: the `horizon` before them), MASE's period the one the
archive gives the file's @frequency (`SEASONALITY`; else the model's season, else 1), and the mean MASE over
series, the archive's headline, is the run's.

With `quantiles` (`--quantiles 0.1,0.5,0.9`) `custom-series` also forecasts those quantiles of each window
(`modrwkv.inference.intervals`: the point forecast plus the quantiles of the run's own forecaster's residuals on the
windows of each series' history that end before the scored split's first target, the val and training rows, never a
scored target), records them as "quantiles", and scores them in the file's units (`quantile_scores`: GluonTS' mean
weighted quantile loss, `wql`, and each level's and central interval's coverage), beside repeat-last's intervals
calibrated the same way on the same windows (`metrics.baselines`).
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...constants import DEFAULT_FORECAST_BATCH, SERIES_HOLDOUTS
from ...data.readers.base import SERIES_FILES, DataError
from ...data.readers.series import (
    DATE_COLUMN_NAMES,
    FORECAST_MAX_DIGITS,
    Holdout,
    TimeSeriesReader,
    series_prompt_problem,
    series_prompt_template,
    series_user_turn,
)
from ...inference.intervals import (
    Calibration,
    calibrate,
    check_levels,
    level_name,
    min_windows,
    past_windows,
    pipeline_forecaster,
)
from ..metrics import (
    apply_standard,
    fit_standard,
    forecast_baselines,
    forecast_windows,
    long_horizon_split,
    mae,
    mase,
    mase_scales,
    mse,
    quantile_scores,
    smape,
)
from ..metrics.series import mase_period
from .base import (
    BenchmarkFileError,
    EvalSample,
    PaperResult,
    Task,
    expect_dir,
    expect_file,
    read_benchmark_text,
)
from .paper import SERIES

if TYPE_CHECKING:
    from ...inference import ModRWKVPipeline
    from ..runner import ModelSpec

log = logging.getLogger(__name__)

LOOKBACK = 720
HORIZON = 96
BASELINE_CHUNK = 4096  # windows whose baselines are computed at once: Traffic's 2.9M look-backs do not fit together


def read_table(path: Path) -> tuple[list[str], np.ndarray]:
    """The numeric columns of a benchmark CSV (date columns left out) as [rows, channels]; a
    benchmark file must be complete (custom-series accepts gaps)."""
    reader = csv.reader(io.StringIO(read_benchmark_text(path), newline=""))
    try:
        rows = list(reader)
    except csv.Error as exc:  # e.g. a NUL byte, or a quoted field that never ends
        raise BenchmarkFileError(f"{path}:{reader.line_num}: not CSV ({exc})") from None
    if len(rows) < 2:
        raise BenchmarkFileError(f"{path}: expected a header row and data rows")
    header, body = rows[0], rows[1:]
    keep = [i for i, name in enumerate(header) if name.strip().lower() not in DATE_COLUMN_NAMES]
    table = np.empty((len(body), len(keep)), dtype=np.float64)
    for i, row in enumerate(body):
        if len(row) != len(header):
            raise BenchmarkFileError(f"{path}:{i + 2}: {len(row)} fields, the header has {len(header)}")
        try:
            table[i] = [float(row[j]) for j in keep]
        except ValueError:
            raise BenchmarkFileError(f"{path}:{i + 2}: a value is empty or not a number: "
                                     f"{[row[j] for j in keep]}") from None
    if not np.isfinite(table).all():
        raise BenchmarkFileError(f"{path}: contains NaN or infinite values")
    return [header[j] for j in keep], table


class _Forecasting(Task):
    """What the forecasting tasks share: the window settings, constrained forecasts, scoring."""

    splits = ("test",)
    default_split = "test"
    headline = "mse"
    headline_label = "MSE (standardised)"

    settings = ("lookback", "horizon", "samples", "series_prompt", "force_model", "season")

    def __init__(self, lookback: int, horizon: int, samples: int = 1, series_prompt: str | None = None,
                 force_model: bool = False, season: int | None = None) -> None:
        for label, value in (("lookback", lookback), ("horizon", horizon), ("samples", samples)):
            if value < 1:
                raise ValueError(f"{label} must be >= 1, got {value}")
        if season is not None and (not isinstance(season, int) or isinstance(season, bool)
                                   or not 2 <= season < lookback):
            raise ValueError(f"season {season!r}: the seasonal baselines' period must be an integer from 2 to "
                             f"{lookback - 1} (under the look-back, {lookback}, so that it holds more than one period)")
        problem = series_prompt_problem(series_prompt)
        if problem:
            raise ValueError(f"series_prompt: {problem}")
        self.lookback, self.horizon, self.samples = lookback, horizon, samples
        self.series_prompt = series_prompt  # None: the template the model was trained with
        # the model's series encoder's `season` (`adopt_model_settings`): the seasonal baselines' period
        self.model_season = 0
        # what the model's series encoder's baseline alone forecasts, in words (`adopt_model_settings`); None: unknown
        self.model_baseline: str | None = None
        # the seasonal baselines' period given for this run (`--season`), in place of the model's; None: the model's
        self.season = season
        # decode a model saved with series_baseline_only anyway (`ModRWKVPipeline.forecast_batch`), for analysis
        self.force_model = force_model

    @property
    def options(self) -> dict[str, Any]:
        # A given prompt (and --force-model) only: a run asked with the model's own template resumes as before.
        # The baselines' season changes neither the samples nor their scores: not the run's identity.
        return {k: v for k, v in self._init_args().items()
                if not (k == "series_prompt" and v is None or k == "force_model" and not v or k == "season")}

    @property
    def max_new_tokens(self) -> int:  # type: ignore[override]
        """The longest reply the forecast grammar allows: the content prefix, `horizon` numbers
        of up to FORECAST_MAX_DIGITS digits with sign and separator, a closing token, the end of
        turn (`NumberListConstraint.max_tokens`)."""
        return self.horizon * (FORECAST_MAX_DIGITS + 2) + 3

    def prompt(self) -> str:
        """A sample's prompt until the model is loaded: the given `series_prompt`'s, else the reader's
        default. The model is asked with the template it was trained with unless `series_prompt` is
        given (`ModRWKVPipeline.forecast_batch`), which `generate` records as the prediction's prompt."""
        return series_user_turn(series_prompt_template(self.series_prompt, multivariate=False), self.horizon, 1)

    def adopt_model_settings(self, model: ModelSpec) -> None:
        """The period of the model's seasonal baseline (its series encoder's `season`, in its folder's
        config.json), for the seasonal-naive baselines (`computed_baselines`); none for a released checkpoint
        or a model without one. Also what its baseline alone forecasts (`describe_baseline`), which the summary
        names where that is what was scored (`series_baseline_only`)."""
        from ...encoders.series import describe_baseline
        from ...multimodal.model import is_modrwkv_folder, read_config

        path = Path(model.path)
        encoder = (read_config(path).get("encoders") or {}).get("series") if is_modrwkv_folder(path) else None
        config = (encoder or {}).get("config") or {}
        season = config.get("season", 0)
        self.model_season = season if isinstance(season, int) and not isinstance(season, bool) and season > 0 else 0
        self.model_baseline = describe_baseline(config) if (encoder or {}).get("name") == "wavenet" else None

    def computed_baselines(self, samples: Sequence[EvalSample]) -> dict[str, dict[str, float]]:
        """MSE and MAE (custom-series: MASE and sMAPE too) of the simple forecasts (`forecast_baselines`: repeat-last,
        look-back mean, train mean, and with the task's `season`, else the model's, else custom-series' MASE period,
        seasonal naive (+ drift), the period in their names) of exactly
        these windows: their look-backs and targets,
        standardised with the train-split scaler as the model's forecasts are scored. In chunks: a benchmark's
        look-backs (Traffic: 862 channels x 3.4k windows x 720 steps) do not fit in memory at once."""
        if not samples:
            return {}
        if self.season is not None:
            period = self.season
        elif self.model_season:
            period = self.model_season if self.model_season <= self.lookback else 0
        else:  # custom-series: the period MASE scales by (a .tsf file's @frequency's), where a look-back holds it
            period = samples[0].reference.get("mase_period", 0)
            period = period if 2 <= period <= self.lookback else 0
        totals: dict[str, np.ndarray] = {}
        scaled: dict[str, list[dict[str, float | None]]] = {}  # (custom-series) each window's MASE and sMAPE
        for start in range(0, len(samples), BASELINE_CHUNK):
            chunk = samples[start:start + BASELINE_CHUNK]
            past = np.stack([np.asarray(s.series[0], dtype=np.float64).reshape(-1) for s in chunk])
            truth = np.array([s.reference["target"] for s in chunk], dtype=np.float64)
            for name, forecast in forecast_baselines(past, self.horizon, period).items():
                name = name.replace("seasonal naive", f"seasonal naive (period {period})")
                error = forecast - truth
                totals[name] = totals.get(name, np.zeros(2)) + [np.square(error).sum(), np.abs(error).sum()]
                if "mase_scale" in chunk[0].reference:
                    scaled.setdefault(name, []).extend(
                        _scaled_errors(values, s.reference) for values, s in zip(forecast, chunk, strict=True))
        count = len(samples) * self.horizon
        return {name: {"mse": float(sse / count), "mae": float(sae / count),
                       **(_scaled_means(scaled[name]) if name in scaled else {})}
                for name, (sse, sae) in totals.items()}

    def check_pipeline(self, pipeline: ModRWKVPipeline) -> None:
        trained = getattr(getattr(pipeline, "model", None), "series_lookback", None)
        if trained is not None and trained != self.lookback:
            raise ValueError(f"--lookback {self.lookback}, but the model was trained to forecast from {trained} steps: "
                             f"evaluate with --lookback {trained}")

    def generate(self, pipeline: ModRWKVPipeline, samples: Sequence[EvalSample], max_new_tokens: int) -> list[dict[str, Any]]:
        forecasts = pipeline.forecast_batch([s.series[0] for s in samples], self.horizon, prompt=self.series_prompt,
                                            max_new_tokens=max_new_tokens, samples=self.samples,
                                            force_model=self.force_model)
        return [{"prompt": f.prompt, "prediction": f.text, "finish_reason": "stop" if f.complete else "length",
                 "forecast": f.values.tolist(), "complete": f.complete, "source": f.source} for f in forecasts]

    def _forecast(self, record: dict[str, Any]) -> np.ndarray:
        if "forecast" not in record:
            raise ValueError(f"prediction {record.get('id')!r} has no 'forecast' (written by an older modrwkv?); "
                             "remove the run folder to redo it")
        return np.asarray(record["forecast"], dtype=np.float64)

    def score(self, record: dict[str, Any]) -> dict[str, Any]:
        values, reference = self._forecast(record), record["reference"]
        scaled = _scaled_errors(values, reference) if "mase_scale" in reference else {}
        return {"mse": mse(values, reference["target"]), "mae": mae(values, reference["target"]), **scaled,
                "parsed": bool(record.get("complete", True))}

    def summarize(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        predicted = np.stack([self._forecast(r) for r in records])
        target = np.array([r["reference"]["target"] for r in records], dtype=np.float64)
        scaled: dict[str, Any] = {}
        if records and "mase_scale" in records[0]["reference"]:  # (custom-series)
            scores = [_scaled_errors(v, r["reference"]) for v, r in zip(predicted, records, strict=True)]
            scaled = {**_scaled_means(scores), "mase_period": records[0]["reference"]["mase_period"],
                      # windows left out of the mean MASE (a constant history) and look-backs begun with gaps
                      "mase_undefined": sum(score["mase"] is None for score in scores),
                      "padded": sum(r["reference"]["start"] < 0 for r in records)}
        sources = {r.get("source", "model") for r in records}
        # "baseline": the model's folder ships its baseline alone (series_baseline_only), not decoded; which it is
        baseline = {"baseline": self.model_baseline} if "baseline" in sources and self.model_baseline else {}
        return {"mse": mse(predicted, target), "mae": mae(predicted, target), **scaled, "windows": len(records),
                "unparsed": sum(not r.get("complete", True) for r in records),
                "source": "/".join(sorted(sources)), **baseline,
                "lookback": self.lookback, "horizon": self.horizon}


class Forecast(_Forecasting):
    """One long-horizon data set; `name` and the file it reads differ per data set."""

    def __init__(self, name: str, title: str, files: Sequence[str], lookback: int = LOOKBACK,
                 horizon: int = HORIZON, samples: int = 1, series_prompt: str | None = None,
                 force_model: bool = False, season: int | None = None) -> None:
        super().__init__(lookback, horizon, samples, series_prompt, force_model, season)
        self.name, self.title, self.files = name, title, tuple(files)
        self.layout = f"""{name}/                       (or the CSV file itself)
  {files[0]}                 (header row: date, then one column per channel)"""

    def _init_args(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "files": self.files, **super()._init_args()}

    @property
    def options(self) -> dict[str, Any]:
        return {k: v for k, v in super().options.items() if k not in ("name", "title", "files")}

    @property
    def paper_setting(self) -> bool:
        return (self.lookback, self.horizon) == (LOOKBACK, HORIZON)

    @property
    def paper_note(self) -> str:  # type: ignore[override]
        if self.paper_setting:
            return "the published numbers are zero-shot MSE with lookback 720, horizon 96"
        return (f"lookback {self.lookback}, horizon {self.horizon}: not the published setting (720, 96), "
                "so no published numbers are shown")

    def paper_results(self, split: str) -> list[PaperResult]:
        if not self.paper_setting:
            return []
        ours, timesfm = SERIES[self.name]
        return [PaperResult("ModRWKV (paper, 100% GIFT-Eval)", ours), PaperResult("TimesFM (paper)", timesfm)]

    def load(self, data: Path, split: str) -> list[EvalSample]:
        path = data if data.is_file() else expect_file(expect_dir(data, f"the {self.title} CSV", self.layout),
                                                       self.files, f"the {self.title} data", self.layout)
        columns, table = read_table(path)
        try:
            borders = long_horizon_split(self.name, len(table), self.lookback)
        except ValueError as exc:
            raise BenchmarkFileError(f"{path}: {exc}") from None
        stats = fit_standard(table[slice(*borders["train"])])
        values = apply_standard(table, stats.mean, stats.std)
        start, end = borders["test"]
        try:
            inputs, targets = forecast_windows(values, start, end, self.lookback, self.horizon)
        except ValueError as exc:
            raise BenchmarkFileError(f"{path}: {exc}") from None
        return [
            EvalSample(f"{column}/{start + i}", self.prompt(),
                       {"channel": column, "start": start + i, "target": targets[i, :, c]},
                       series=[inputs[i, :, c]])
            for i in range(len(inputs)) for c, column in enumerate(columns)
        ]


class CustomSeries(_Forecasting):
    """Any series file training reads: a CSV / TSV (a header row; date columns optional; empty cells are gaps in a
    look-back and leave out the windows whose target they fall in), an NPZ (each array a series, a 2-D one a
    series per column), a Parquet / Arrow table of scalar columns, JSON records of scalar fields or an .xlsx
    workbook's first worksheet (read as the CSV of the same table), a
    Parquet / JSONL file of one series per row (`target`, the hub's and GluonTS' layout) or a Monash archive .tsf
    file (a series per line), forecast with the long-horizon protocol's 70/10/20 borders and train-split scaler, or
    with `holdout="last"` the fixed-horizon protocol's one window per series (the module docstring).
    The `val` split scores the validation rows, for choosing settings without looking at the test windows."""

    name = "custom-series"
    splits = ("test", "val")
    title = "custom series"
    layout = """FILE.csv   (header row; an optional date column (date, datetime, time, timestamp or ds);
            one numeric column per series; empty cells allowed; FILE.tsv: the same, tab-separated)
FILE.npz   (numpy.savez: each array a series, a 2-D array [steps, series] one per column)
FILE.csv   (long format: several series one under another, told apart by id columns, e.g. unique_id,ds,y
            or item_id,timestamp,target (read by those names), or store_nbr,family (--id-column, as training's
            data.options.id_columns))
FILE.parquet / FILE.arrow   (a table of scalar columns, as df.to_parquet() writes one: read as the CSV of it;
            likewise FILE.json / FILE.jsonl records of scalar fields (df.to_json()) and FILE.xlsx's first sheet)
FILE.parquet / FILE.jsonl   (one series per row: its values in `target`, a list of numbers, null = a gap,
            or [channels, steps]; Chronos' `id`/`timestamp` columns and GluonTS' `item_id`/`start` are not read)
FILE.tsf   (the Monash archive's: @attribute lines, @horizon, ..., @data, then a series per line,
            series_name:start_timestamp:1.5,2,?,4 with `?` a gap; the attributes are not read)"""

    settings = (*_Forecasting.settings, "targets", "id_columns", "baselines", "holdout", "quantiles")

    def __init__(self, lookback: int = 96, horizon: int = 24, targets: Sequence[str] | None = None,
                 samples: int = 1, series_prompt: str | None = None, force_model: bool = False,
                 season: int | None = None, baselines: Mapping[str, float] | None = None,
                 id_columns: Sequence[str] | None = None, holdout: Holdout = "ratio",
                 quantiles: Sequence[float] | None = None) -> None:
        super().__init__(lookback, horizon, samples, series_prompt, force_model, season)
        # the quantile levels forecast beside each point forecast (`modrwkv.inference.intervals`); None: none
        self.quantiles = check_levels(quantiles) if quantiles is not None else None
        # set by `load`: each series' values (standardised) and the first step its scored split forecasts, whose
        # history calibrates the intervals; the model's calibration, made at the first batch it forecasts
        self._history: dict[str, np.ndarray] = {}
        self._origins: dict[str, int] = {}
        self._calibration: Calibration | None = None
        if holdout not in SERIES_HOLDOUTS:
            raise ValueError(f"holdout must be {' or '.join(SERIES_HOLDOUTS)}, got {holdout!r}")
        self.holdout = holdout
        if holdout == "last":  # the fixed-horizon protocol's headline: the mean over series of their MASE
            self.headline, self.headline_label = "mase", "MASE (mean over series)"
        self.targets = list(targets) if targets else None
        # the columns telling apart the series of a long-format CSV (training's data.options.id_columns); None: the
        # reader's own (a unique_id, item_id or series_id column)
        self.id_columns = list(id_columns) if id_columns is not None else None
        # other methods' MSE on these windows given by the user (--baseline NAME=VALUE), shown as `custom` shows them
        self.baselines = dict(baselines or {})

    @property
    def options(self) -> dict[str, Any]:
        # numbers shown beside the model's change neither the samples nor their scores: not the run's identity
        # (nor id_columns unset and the 70/10/20 holdout, as runs from before they existed were made)
        return {k: v for k, v in super().options.items() if k != "baselines" and not (k == "id_columns" and v is None)
                and not (k == "holdout" and v == "ratio") and not (k == "quantiles" and v is None)}

    @property
    def paper_note(self) -> str:  # type: ignore[override]
        given = " and the baselines given on the command line (--baseline)" if self.baselines else ""
        protocol = ("; the fixed-horizon protocol (the Monash archive's, M4's): each series' last horizon"
                    if self.holdout == "last" else "")
        return (f"a custom data set, with no published numbers: compared with simple forecasts of the same windows "
                f"(computed here){given}{protocol}")

    def paper_results(self, split: str) -> list[PaperResult]:
        return [PaperResult(name, value) for name, value in self.baselines.items()]

    def load(self, data: Path, split: str) -> list[EvalSample]:
        if not data.is_file():
            raise BenchmarkFileError(f"{data}: expected a series file ({SERIES_FILES}). Expected layout:\n"
                                     f"{self.layout}")
        reader = TimeSeriesReader(data, lookback=self.lookback, horizon=self.horizon, columns=self.targets,
                                  id_columns=self.id_columns, split=split, holdout=self.holdout, standardize=True)
        try:
            samples = list(reader)
            series = reader.scaled_series()
            # not the run's --season, which changes the baselines shown and never the scores, so that a finished
            # run is shown beside other baselines without decoding it again
            period = mase_period(data, self.model_season)
        except DataError as exc:
            raise BenchmarkFileError(str(exc)) from None
        if not samples:
            raise BenchmarkFileError(f"{data}: no usable {split} window of lookback {self.lookback} + horizon "
                                     f"{self.horizon} ({reader.report.summary()})")
        if reader.report.skipped:
            log.warning("%s: %s", data, reader.report.summary())
        # each window's MASE scale: the history before its target, of its series (all of a series' windows at once)
        members: dict[str, list[int]] = {}
        for i, sample in enumerate(samples):
            members.setdefault(sample.meta["series"], []).append(i)
        scales: dict[int, float] = {}
        units: dict[str, list[float]] = {}  # each series' scaler back to the file's units, where sMAPE is computed
        for label, found in members.items():
            values, (mean, std) = series[label]
            ends = [samples[i].meta["start"] + self.lookback for i in found]
            scales.update(zip(found, mase_scales(values, ends, period).tolist(), strict=True))
            units[label] = [float(mean[0]), float(std[0])]
        self._history = {label: np.asarray(values, dtype=np.float64).reshape(-1)
                         for label, (values, _) in series.items() if label in members}
        self._origins = {label: min(samples[i].meta["start"] for i in found) + self.lookback
                         for label, found in members.items()}
        self._calibration = None
        if self.quantiles:  # said before the model loads: `calibrate` would refuse it after the first batch
            held = sum(len(past_windows(self._history[label], origin, self.lookback, self.horizon)[0])
                       for label, origin in self._origins.items())
            if held < min_windows(self.quantiles):
                raise BenchmarkFileError(
                    f"{data}: prediction intervals at levels {', '.join(f'{q:g}' for q in self.quantiles)} need at "
                    f"least {min_windows(self.quantiles)} windows (look-back {self.lookback} + horizon "
                    f"{self.horizon}) before the {split} split's targets, and its {len(self._origins)} series hold "
                    f"{held}")
        return [
            EvalSample(f"{s.meta['series']}/{s.meta['start']}", self.prompt(),
                       {"channel": s.meta["series"], "start": s.meta["start"], "target": s.meta["target"],
                        # MASE's scale: the seasonal-naive MAE of the history before the target (None: a constant
                        # history, whose MASE is undefined)
                        "mase_scale": scales[i] if scales[i] > 0 else None, "mase_period": period,
                        "unit": units[s.meta["series"]]},
                       series=list(s.series))
            for i, s in enumerate(samples)
        ]

    def generate(self, pipeline: ModRWKVPipeline, samples: Sequence[EvalSample],
                 max_new_tokens: int) -> list[dict[str, Any]]:
        records = super().generate(pipeline, samples, max_new_tokens)
        if self.quantiles:
            if self._calibration is None:  # every series' at once: a series with too few windows takes the pooled
                forecaster = pipeline_forecaster(pipeline, self.horizon, samples=self.samples,
                                                 prompt=self.series_prompt, force_model=self.force_model)
                self._calibration = self._calibrate(forecaster)
            for record, sample in zip(records, samples, strict=True):
                found = self._calibration.interval(sample.reference["channel"], np.asarray(record["forecast"]),
                                                   sample.series[0])
                record["quantiles"] = {level_name(q): values.tolist() for q, values in zip(self.quantiles, found)}
                # calibrated on the pooled residuals of all series (its own history holds too few windows)
                record["quantiles_pooled"] = sample.reference["channel"] in self._calibration.pooled
        return records

    def _calibrate(self, forecaster: Any, quiet: bool = False) -> Calibration:
        """The residual quantiles of `forecaster` on each series' history before its scored split (`calibrate`)."""
        assert self.quantiles
        if not self._history:
            raise ValueError("custom-series: intervals are calibrated on the series `load` read; load them first")
        return calibrate(self._history, self._origins, self.lookback, self.horizon, self.quantiles, forecaster,
                         batch_size=BASELINE_CHUNK if quiet else DEFAULT_FORECAST_BATCH, quiet=quiet)

    def summarize(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        summary = super().summarize(records)
        if self.quantiles:
            if any("quantiles" not in r for r in records):
                raise ValueError("a prediction has no 'quantiles' (written without --quantiles?); remove the run "
                                 "folder to redo it")
            found = np.array([[r["quantiles"][level_name(q)] for q in self.quantiles] for r in records])
            summary.update(self._interval_scores(found, records))
            summary["quantiles"]["pooled_windows"] = sum(bool(r.get("quantiles_pooled")) for r in records)
        return summary

    def computed_baselines(self, samples: Sequence[EvalSample]) -> dict[str, dict[str, float]]:
        """`_Forecasting.computed_baselines`; with `quantiles`, repeat-last's intervals too, calibrated as the model's
        are (`calibrate` on the same history, of repeat-last's residuals), scored as they are."""
        found = super().computed_baselines(samples)
        if self.quantiles and samples and "repeat-last" in found:
            calibration = self._calibrate(lambda windows: forecast_baselines(windows, self.horizon)["repeat-last"],
                                          quiet=True)
            past = [np.asarray(s.series[0], dtype=np.float64).reshape(-1) for s in samples]
            naive = forecast_baselines(np.stack(past), self.horizon)["repeat-last"]
            intervals = np.stack([calibration.interval(s.reference["channel"], point, window)
                                  for s, point, window in zip(samples, naive, past, strict=True)])
            scores = self._interval_scores(intervals, [{"reference": s.reference} for s in samples])
            found["repeat-last"].update({key: scores[key] for key in ("wql", "interval_coverage")})
        return found

    def _interval_scores(self, quantiles: np.ndarray, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """`quantile_scores` of windows' quantile forecasts [windows, levels, horizon] (standardised, as the records'
        targets) in the file's units (each record's `unit`): `wql` beside MASE and sMAPE, the rest under
        "quantiles"."""
        assert self.quantiles
        units = np.array([r["reference"]["unit"] for r in records], dtype=np.float64)  # [windows, (mean, std)]
        target = np.array([r["reference"]["target"] for r in records], dtype=np.float64)
        mean, std = units[:, 0, None], units[:, 1, None]
        scaled = quantiles * std[:, None] + mean[:, None]
        scores = quantile_scores(self.quantiles, np.moveaxis(scaled, 1, 0), target * std + mean)
        return {"wql": scores.pop("wql"), "interval_coverage": scores.pop("interval_coverage"),
                "quantiles": {"levels": list(self.quantiles), **scores}}


def _scaled_errors(forecast: np.ndarray, reference: Mapping[str, Any]) -> dict[str, float | None]:
    """A custom-series window's MASE (None where its history is constant) and sMAPE (in the file's units, `unit`'s
    mean and std mapping the standardised values back; None where forecast and target are all 0)."""
    target = np.asarray(reference["target"], dtype=np.float64)
    scale = reference["mase_scale"]
    mean, std = reference["unit"]
    percent = smape(np.asarray(forecast) * std + mean, target * std + mean)
    return {"mase": mase(forecast, target, scale) if scale else None,
            "smape": None if np.isnan(percent) else percent}


def _scaled_means(scores: Sequence[Mapping[str, float | None]]) -> dict[str, float | None]:
    """The mean over windows (series, with holdout "last") of their MASE and sMAPE, the undefined ones left out."""
    means = {}
    for metric in ("mase", "smape"):
        defined = [score[metric] for score in scores if score[metric] is not None]
        means[metric] = float(np.mean(defined)) if defined else None
    return means


SERIES_TASKS = (
    Forecast("etth1", "ETTh1", ["ETTh1.csv"]),
    Forecast("etth2", "ETTh2", ["ETTh2.csv"]),
    Forecast("ettm1", "ETTm1", ["ETTm1.csv"]),
    Forecast("ettm2", "ETTm2", ["ETTm2.csv"]),
    Forecast("ecl", "ECL", ["electricity.csv", "ECL.csv"]),
    Forecast("weather", "Weather", ["weather.csv"]),
    Forecast("traffic", "Traffic", ["traffic.csv"]),
    CustomSeries(),
)
