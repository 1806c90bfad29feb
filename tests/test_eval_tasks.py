"""`modrwkv eval`'s benchmark readers, prompts, per-task scoring, runner bookkeeping (resume, shards,
refusals), submission files and report, on tiny copies of each benchmark's released files. The
model is a stand-in whose reply is a function of the prompt, so these tests need no weights; the
end-to-end runs with a real model are in test_eval_run.py."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from eval_fixtures import (
    WRITERS,
    picture,
    write_etth1,
    write_mmbench,
    write_mmmu,
    write_scienceqa,
    write_vqav2,
)

from modrwkv.evaluation import (
    BenchmarkFileError,
    ModelSpec,
    export_submission,
    get_task,
    run_eval,
)
from modrwkv.data.readers import TimeSeriesReader
from modrwkv.evaluation.report import baseline_comparison, format_metric, format_report
from modrwkv.evaluation.runner import read_predictions
from modrwkv.evaluation.tasks import TASKS, CustomTask, PaperResult, custom_task

SUFFIX = "\nAnswer the question using a single word or phrase."
CHOICE = "\nAnswer with the option's letter from the given choices directly."


def records(task, samples, predictions):
    """What predictions.jsonl holds for these replies (references as JSON gives them back)."""
    return [{"id": s.id, "prediction": p, "reference": json.loads(json.dumps(s.reference, default=np.ndarray.tolist))}
            for s, p in zip(samples, predictions)]


# --- readers and prompts --------------------------------------------------------------------


def test_vqav2_val_and_test_dev_read_the_official_and_llava_files(tmp_path):
    folder = write_vqav2(tmp_path)
    task = get_task("vqav2")
    val = task.load(folder, "val")
    assert [s.id for s in val] == ["11", "12", "13"]
    assert val[0].prompt == "<image>\nWhat color is the cat?" + SUFFIX
    assert val[0].images == [folder / "val2014" / "COCO_val2014_000000000042.jpg"]
    assert val[1].reference["answers"] == ["2", "two", "2", "2", "3", "2", "2", "two", "2", "2"]
    test_dev = task.load(folder, "test-dev")
    assert [s.id for s in test_dev] == ["101", "102"]
    assert test_dev[0].prompt == "<image>\nWhat is this?" + SUFFIX  # LLaVA's text, suffix included
    assert test_dev[0].images == [folder / "test2015" / "COCO_test2015_000000000005.jpg"]
    assert task.summarize(records(task, test_dev, ["a", "b"])) == {}  # server-scored


def test_vqav2_scores_with_the_official_normalisation(tmp_path):
    task = get_task("vqav2")
    samples = task.load(write_vqav2(tmp_path), "val")
    # "Black." -> "black" (7 of 10 humans); "two" -> "2" (7 humans wrote "2"); "no" vs ten "yes".
    summary = task.summarize(records(task, samples, ["Black.", "two", "no"]))
    assert summary["accuracy"] == pytest.approx(200 / 3)
    assert summary["per_answer_type"] == {"other": 100.0, "yes/no": 0.0}
    # 2 humans said "two" literally, but the prediction is normalised to "2" and only the 7 "2" count:
    # min(1, 7/3) in every leave-one-out subset.
    assert task.score(records(task, samples, ["Black.", "two", "no"])[1]) == {"accuracy": 1.0}


def test_scienceqa_keeps_the_image_questions_with_llava_prompts(tmp_path):
    task = get_task("scienceqa")
    folder = write_scienceqa(tmp_path)
    samples = task.load(folder, "test")
    assert [s.id for s in samples] == ["1", "3"]  # problem 2 has no image
    assert samples[1].prompt == "<image>\nContext: Look at the map.\nWhich state is farthest north?\nA. Ohio\nB. Maine" + CHOICE
    assert samples[0].images == [folder / "images" / "test" / "1" / "image.png"]
    assert [s.id for s in task.load(folder, "minival")] == ["4"]
    summary = task.summarize(records(task, samples, ["B", "The answer is A."]))
    assert summary == {"accuracy": 50.0, "unparsed": 0}
    assert task.summarize(records(task, samples, ["whale", "B. Maine"])) == {"accuracy": 50.0, "unparsed": 1}


def test_mmbench_reads_circular_variants_and_scores_circular_eval(tmp_path):
    task = get_task("mmbench")
    samples = task.load(write_mmbench(tmp_path), "dev")
    assert [s.id for s in samples] == ["0", "1000000", "2000000", "1"]
    assert samples[0].prompt == "<image>\nA photo.\nWhat is shown?\nA. cat\nB. dog\nC. bird" + CHOICE
    assert samples[3].prompt == "<image>\nWhich colour?\nA. red\nB. blue" + CHOICE  # no hint, no option C
    assert samples[0].images[0].startswith("data:image/jpeg;base64,")
    # Question 0: all three variants right; question 1: wrong -> circular 50 %, vanilla 3/4.
    summary = task.summarize(records(task, samples, ["A", "C.", "(B)", "A"]))
    assert summary["circular_accuracy"] == 50.0 and summary["vanilla_accuracy"] == 75.0
    assert summary["circular_per_category"] == {"attribute": 0.0, "object": 100.0}
    # One wrong variant sinks the whole question.
    assert task.summarize(records(task, samples, ["A", "C", "A", "B"]))["circular_accuracy"] == 50.0
    test = task.load(write_mmbench(tmp_path / "t", with_answers=False), "test")
    assert task.summarize(records(task, test, ["A"] * 4)) == {}


def test_mmmu_reads_parquet_subjects_with_mmmu_llava_prompts(tmp_path):
    task = get_task("mmmu")
    samples = task.load(write_mmmu(tmp_path), "validation")
    assert [s.id for s in samples] == ["validation_Accounting_1", "validation_Accounting_2",
                                       "validation_Art_1", "validation_Art_2"]
    assert samples[0].prompt == ("<image>\n<image 1> Which is it?\n(A) cat\n(B) dog\n(C) cow\n\n"
                                 "Answer with the option's letter from the given choices directly.")
    assert samples[1].prompt == "<image>\nHow many legs does <image 1> show?" + SUFFIX
    assert samples[1].reference["answer"] == ["4", "four"]
    # the image stays in the parquet file until it is decoded (a benchmark's images are not held in memory)
    from modrwkv.data.readers.base import EmbeddedBytes, read_embedded
    assert isinstance(samples[0].images[0], EmbeddedBytes)
    assert Image.open(io.BytesIO(read_embedded(samples[0].images[0]))).tobytes() == picture(5).tobytes()
    summary = task.summarize(records(task, samples, ["(B)", "It has 4 legs", "A", "four"]))
    assert summary["accuracy"] == 75.0
    assert summary["per_subject"] == {"Accounting": 100.0, "Art": 50.0}


def test_benchmark_questions_leave_their_image_to_the_models_layout(tmp_path):
    """Every built-in question about one image is shown "<image>\\n" + its text (the tests above) and asked
    so by a model of the default layout, and asked text, image, text by a question-first model (its
    `media_layout` "text_media_text"); prompts that place their media themselves (ASR, forecasts) are
    asked as they are. A literal "<image>" in a question stays text in both copies."""
    from modrwkv.data.sample import count_markers
    from modrwkv.evaluation.tasks.base import image_question

    for name, writer in WRITERS.items():
        task = get_task(name)
        for sample in task.load(writer(tmp_path / name), task.default_split):
            if name in ("librispeech", "aishell", "etth1"):
                assert sample.laid_out("text_media_text") is sample, name
                continue
            assert len(sample.images) == 1 and sample.prompt.startswith("<image>\n"), name
            text = sample.prompt[len("<image>\n"):]
            assert sample.laid_out("media_text") == sample, name
            assert sample.laid_out("text_media_text").prompt == f"{text}\n<image>\n{text}", name
    literal = image_question("1", "What does <image> do in SVG?", {}, b"png").laid_out("text_media_text").prompt
    assert count_markers([literal])["image"] == 1 and literal.count("SVG?") == 2


def test_speech_corpora_pair_audio_with_transcripts(tmp_path):
    libri = get_task("librispeech").load(WRITERS["librispeech"](tmp_path), "test-clean")
    assert [s.id for s in libri] == ["174-50561-0000", "84-121123-0000", "84-121123-0001"]
    assert libri[1].reference == {"text": "GO DO YOU HEAR"} and libri[1].prompt == "<audio>\nTranscribe the audio."
    assert all(path.is_file() for s in libri for path in s.media_paths())
    aishell = get_task("aishell").load(WRITERS["aishell"](tmp_path), "test")
    assert [s.id for s in aishell] == ["BAC009S0764W0121", "BAC009S0764W0122"]  # W0999 has no transcript
    assert all(s.transcribe for s in [*libri, *aishell])  # asked with the model's own ASR prompt when it is loaded


def test_forecast_windows_follow_the_long_horizon_protocol(tmp_path):
    folder = write_etth1(tmp_path)
    task = get_task("etth1")
    samples = task.load(folder, "test")
    # ETTh1 borders: test rows [12*30*24 + 4*30*24 - 720, 20*30*24) = [10800, 14400): 3600 - 720 - 96 + 1
    # windows per channel, two channels, window-major order.
    assert len(samples) == 2 * 2785
    assert [s.id for s in samples[:3]] == ["HUFL/10800", "OT/10800", "HUFL/10801"]
    raw = np.loadtxt(folder / "ETTh1.csv", delimiter=",", skiprows=1, usecols=(1, 2))
    mean, std = raw[:8640].mean(axis=0), raw[:8640].std(axis=0)  # fitted on the 12 training months only
    last = samples[-1]
    assert last.id == "OT/13584"
    np.testing.assert_allclose(last.series[0], (raw[13584:14304, 1] - mean[1]) / std[1])
    np.testing.assert_allclose(last.reference["target"], (raw[14304:14400, 1] - mean[1]) / std[1])
    target = samples[0].reference["target"]
    predictions = records(task, samples[:2], ["", ""])
    predictions[0].update(forecast=(target + 0.5).tolist(), complete=True)
    predictions[1].update(forecast=[1.0] * 96, complete=False)  # a reply cut short, padded
    summary = task.summarize(predictions)
    expected_mse = (0.25 + np.mean((1.0 - samples[1].reference["target"]) ** 2)) / 2
    assert summary["mse"] == pytest.approx(expected_mse) and summary["unparsed"] == 1
    assert task.score(predictions[0]) == {"mse": pytest.approx(0.25), "mae": pytest.approx(0.5), "parsed": True}
    assert task.paper_results("test") and task.options == {"lookback": 720, "horizon": 96, "samples": 1}


def test_forecast_options_change_the_windows_and_drop_the_paper_numbers(tmp_path):
    folder = write_etth1(tmp_path)
    task = get_task("etth1").configure(lookback=96, horizon=24)
    samples = task.load(folder, "test")
    # test rows [11520 - 96, 14400): 2976 - 96 - 24 + 1 windows per channel
    assert len(samples) == 2 * 2857 and samples[0].id == "HUFL/11424" and samples[0].series[0].shape == (96,)
    assert samples[0].prompt == "<series>\nPredict the next 24 values of this series."
    assert task.paper_results("test") == [] and "no published numbers" in task.paper_note
    assert task.max_new_tokens >= 24 * 6 + 1  # the constrained reply always fits
    with pytest.raises(ValueError, match="no option"):
        get_task("etth1").configure(targets=["OT"])


def test_configure_copies_a_task_with_other_settings_and_refuses_the_rest():
    """One `Task.configure` for every task: a forecaster, a speech benchmark and custom-series keep
    their other settings and their identity; a task without settings takes none."""
    etth1 = get_task("etth1").configure(horizon=24).configure(samples=3)
    assert (etth1.name, etth1.files, etth1.options) == ("etth1", get_task("etth1").files,
                                                         {"lookback": 720, "horizon": 24, "samples": 3})
    aishell = get_task("aishell").configure(asr_prompt="")
    assert (type(aishell).__name__, aishell.asr_prompt, aishell.options) == ("Aishell", "", {"asr_prompt": ""})
    series = get_task("custom-series").configure(targets=["load"]).configure(horizon=6)
    assert (series.targets, series.horizon, series.lookback) == (["load"], 6, 96)
    with pytest.raises(ValueError, match=r"^librispeech has no option\(s\) \['horizon'\]; it takes \['asr_prompt', 'long_form'\]$"):
        get_task("librispeech").configure(horizon=3)
    with pytest.raises(ValueError, match=r"^pope has no option\(s\) \['asr_prompt'\]$"):
        get_task("pope").configure(asr_prompt="x")


def test_a_series_prompt_given_to_a_forecasting_benchmark_asks_with_it_and_marks_the_run(tmp_path):
    """--series-prompt on ETTh1: the samples show the turn the training reader builds with that
    template, the run's identity records it (a run asked the model's own does not resume as this one),
    and a template the reader refuses is refused here with the reader's words."""
    from modrwkv.data.readers import TimeSeriesReader

    csv = tmp_path / "one.csv"
    csv.write_text("value\n" + "".join(f"{i}\n" for i in range(40)))
    template = "Continue with {horizon} numbers ({channels} channel)."
    expected = next(iter(TimeSeriesReader(csv, lookback=8, horizon=24, prompt=template))).messages[0].content
    task = get_task("etth1").configure(lookback=96, horizon=24, series_prompt=template)
    assert task.load(write_etth1(tmp_path), "test")[0].prompt == expected
    assert task.options == {"lookback": 96, "horizon": 24, "samples": 1, "series_prompt": template}
    assert "series_prompt" not in get_task("etth1").options
    with pytest.raises(ValueError, match=r"^series_prompt: 'Next \{0\}' uses \{0\}; a series prompt may use only"):
        get_task("etth1").configure(series_prompt="Next {0}")


def write_custom_csv(path: Path, rows: int = 200) -> tuple[Path, np.ndarray]:
    """A 'ds' date column, two series, and empty cells early on (in the training rows)."""
    t = np.arange(rows)
    values = np.stack([100 + 10 * np.sin(2 * np.pi * t / 12) + 0.1 * t, np.cos(t / 5.0)], axis=1)
    lines = ["ds,load,temp"]
    for i, (a, b) in enumerate(values):
        lines.append(f"2020-01-{i:04d},{'' if i in (3, 4) else repr(float(a))},{repr(float(b))}")
    path.write_text("\n".join(lines) + "\n")
    values[[3, 4], 0] = np.nan
    return path, values


def test_custom_series_reads_any_csv_as_the_training_reader_does(tmp_path):
    path, values = write_custom_csv(tmp_path / "mine.csv")
    task = get_task("custom-series").configure(lookback=24, horizon=6, targets=["load"])
    samples = task.load(path, "test")
    # 70/10/20 borders: test rows [200 - 40 - 24, 200), standardised with the first 140 rows' statistics
    train = values[:140, 0]
    mean, std = np.nanmean(train), np.nanstd(train)
    assert [s.id for s in samples[:2]] == ["load/136", "load/137"] and len(samples) == 64 - 24 - 6 + 1
    np.testing.assert_allclose(samples[0].series[0], (values[136:160, 0] - mean) / std, rtol=1e-5)
    np.testing.assert_allclose(samples[-1].reference["target"], (values[194:200, 0] - mean) / std, rtol=1e-5)
    reader = TimeSeriesReader(path, lookback=24, horizon=6, columns=["load"], split="test", standardize=True)
    assert [s.meta["start"] for s in reader] == [s.reference["start"] for s in samples]
    assert task.paper_results("test") == []
    # the val split: the validation rows [140 - 24, 160), on the same scaler, so settings can be
    # chosen without the test windows
    val = task.load(path, task.check_split("val"))
    assert [s.reference["start"] for s in val] == list(range(116, 160 - 24 - 6 + 1))
    np.testing.assert_allclose(val[-1].reference["target"], (values[154:160, 0] - mean) / std, rtol=1e-5)
    every = get_task("custom-series").configure(lookback=24, horizon=6).load(path, "test")
    assert {s.reference["channel"] for s in every} == {"load", "temp"}  # the ds column is not a series
    with pytest.raises(BenchmarkFileError, match="no column 'nope'"):
        get_task("custom-series").configure(targets=["nope"]).load(path, "test")
    with pytest.raises(BenchmarkFileError, match="no usable test window.*too_short"):
        get_task("custom-series").configure(horizon=100).load(path, "test")
    with pytest.raises(BenchmarkFileError, match=r"lookback 150 is longer than the 140 training rows \(200 rows, the "
                                                 r"first 70% of them training rows\): use a shorter"):
        get_task("custom-series").configure(lookback=150).load(path, "test")


class ForecastPipeline:
    """Forecasts the last value of each window (repeat-last), as `ModRWKVPipeline.forecast_batch` returns it."""

    def forecast_batch(self, windows, horizon, prompt=None, max_new_tokens=None, samples=1, force_model=False):
        from modrwkv.inference import SeriesForecast

        # the task's defaults: greedy, the model's own prompt, what the model's folder ships
        assert samples == 1 and prompt is None and not force_model

        return [SeriesForecast(np.full(horizon, float(w[-1])), "0 " * (horizon - 1) + "0", True, "<series>\nnext?")
                for w in windows]


def test_custom_series_eval_scores_the_pipeline_forecasts_beside_the_naive_ones(tmp_path, weights):
    """The model's forecasts are scored, and shown beside simple forecasts of the same windows: a pipeline that
    forecasts repeat-last scores exactly the repeat-last baseline (computed apart, from the samples), and its MASE
    and sMAPE are the naive forecast's computed from the file's own values."""
    path, values = write_custom_csv(tmp_path / "mine.csv")
    task = get_task("custom-series").configure(lookback=24, horizon=6)
    result = run_eval(task, path, tmp_path / "out", model=weights, load_pipeline=ForecastPipeline, batch_size=16)
    samples = task.load(path, "test")
    inputs = np.array([s.series[0][-1] for s in samples])[:, None]
    targets = np.array([s.reference["target"] for s in samples])
    metrics = result.summary["metrics"]
    assert metrics["mse"] == pytest.approx(np.mean((inputs - targets) ** 2)) and metrics["unparsed"] == 0
    assert list(metrics["baselines"]) == ["repeat-last", "look-back mean", "train mean"]  # no model season
    assert metrics["baselines"]["repeat-last"] == {
        name: pytest.approx(metrics[name], rel=1e-12) for name in ("mse", "mae", "mase", "smape")}
    # each test window (rows [136, 200) of each column, 70/10/20) in the file's units: the naive forecast's MAE over
    # the mean absolute one-step change of every value before its target (the empty cells left out), and its sMAPE
    mases, smapes = [], []
    for column in range(2):
        for start in range(136, 200 - 30 + 1):
            history, truth = values[:start + 24, column], values[start + 24:start + 30, column]
            history = history[~np.isnan(history)]
            error = np.abs(history[-1] - truth)
            mases.append(error.mean() / np.abs(np.diff(history)).mean())
            smapes.append(np.mean(200 * error / (np.abs(history[-1]) + np.abs(truth))))
    assert metrics["mase"] == pytest.approx(np.mean(mases), rel=1e-6)
    assert metrics["smape"] == pytest.approx(np.mean(smapes), rel=1e-6)
    assert (metrics["mase_period"], metrics["mase_undefined"], metrics["padded"]) == (1, 0, 0)
    means = np.array([np.mean(s.series[0]) for s in samples])[:, None]
    assert metrics["baselines"]["look-back mean"]["mse"] == pytest.approx(np.mean((means - targets) ** 2))
    assert metrics["baselines"]["train mean"]["mae"] == pytest.approx(np.mean(np.abs(targets)))
    # computed here, not published: the run stays in the table of runs without published numbers (also when
    # reported beside a benchmark run that has them), the baselines in its line below, as every metric is shown
    assert result.summary["paper"] == []
    etth1 = {**result.summary, "task": "etth1", "title": "ETTh1", "paper": [{"model": "TimesFM (paper)",
                                                                            "value": 0.4}]}
    report = (tmp_path / "out" / "report.md").read_text()
    combined = format_report([etth1, result.summary])
    mse_cell = format_metric(metrics["mse"])
    row = f"| custom series | test | 70 | MSE (standardised) | {mse_cell} |"
    assert row in report.splitlines() and row in combined.split("Runs without published numbers")[1]
    assert "repeat-last |" not in report
    assert (f"- baselines on the same windows, MSE (standardised): repeat-last {mse_cell}, look-back mean "
            f"{format_metric(metrics['baselines']['look-back mean']['mse'])}") in report
    lowest = metrics["baselines"]["look-back mean"]["mse"]  # these windows' best: the model is repeat-last
    assert lowest < metrics["mse"] and f"the model's {mse_cell} is " \
        f"{(metrics['mse'] - lowest) / lowest * 100:.0f}% higher than the best of them (look-back mean)" in report
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["task_options"] == {"lookback": 24, "horizon": 6, "targets": None, "samples": 1}
    with pytest.raises(ValueError, match="task_options"):  # the same folder with other settings is refused
        run_eval(get_task("custom-series").configure(lookback=12, horizon=6), path, tmp_path / "out", model=weights,
                 load_pipeline=ForecastPipeline)


def test_a_given_baseline_named_as_a_computed_one_is_told_apart(tmp_path, weights):
    """`--baseline repeat-last=0.5` beside the repeat-last computed on the same windows: the report's column says
    it is the given one, and the line of computed baselines keeps its own number under the plain name."""
    path, _ = write_custom_csv(tmp_path / "mine.csv")
    task = custom_task(path, baselines={"repeat-last": 0.5, "ARIMA": 0.25}).configure(lookback=24, horizon=6)
    summary = run_eval(task, path, tmp_path / "out", model=weights, load_pipeline=ForecastPipeline,
                       batch_size=16).summary
    assert summary["paper"] == [{"model": "repeat-last (given)", "value": 0.5}, {"model": "ARIMA", "value": 0.25}]
    report = (tmp_path / "out" / "report.md").read_text().splitlines()
    computed = summary["metrics"]["baselines"]["repeat-last"]["mse"]
    assert computed != 0.5
    assert report[2] == "| benchmark | split | samples | metric | this model | repeat-last (given) | ARIMA |"
    assert report[4].endswith(" | 0.5 | 0.25 |")
    assert any(line.startswith(f"- baselines on the same windows, MSE (standardised): repeat-last "
                               f"{format_metric(computed)}, ") for line in report)


def test_naive_baselines_of_real_series_with_the_models_season(tmp_path, monkeypatch):
    """statsmodels' yearly sunspots (309 years, the solar cycle 11) as a user's CSV, evaluated with a model folder
    whose series encoder has season 11: the seasonal-naive baselines take that period, and every baseline is
    what indexing the standardised series gives; co2's weekly series has empty cells, and no baseline is NaN."""
    import statsmodels.api as sm

    from modrwkv.multimodal.model import FORMAT

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "format": FORMAT, "lm": {"n_embd": 64, "n_layer": 1}, "adapters": {"series": {}}, "template": "rwkv",
        "splice": "replace", "ctx_len": 4096,
        "encoders": {"series": {"name": "wavenet", "config": {"season": 11, "drift": True}}}}))
    years = sm.datasets.sunspots.load_pandas().data
    path = tmp_path / "sunspots.csv"
    years.to_csv(path, index=False)
    task = custom_task(path, baselines={"ARIMA": 0.5}).configure(lookback=33, horizon=8)
    result = run_eval(task, path, tmp_path / "out", model=ModelSpec(str(folder)), load_pipeline=ForecastPipeline)
    got = result.summary["metrics"]["baselines"]
    assert list(got) == ["repeat-last", "look-back mean", "train mean", "seasonal naive (period 11)",
                         "seasonal naive (period 11) + drift"]
    values = years["SUNACTIVITY"].to_numpy()
    n_train, n_test = int(309 * 0.7), int(309 * 0.2)
    series = (values - values[:n_train].mean()) / values[:n_train].std()
    cuts = np.arange(309 - n_test, 309 - 8 + 1)  # the first step of each test window's target
    truth = np.stack([series[c:c + 8] for c in cuts])
    forecasts = {"repeat-last": np.repeat(series[cuts - 1, None], 8, axis=1),
                 "look-back mean": np.stack([np.repeat(series[c - 33:c].mean(), 8) for c in cuts]),
                 "train mean": np.zeros_like(truth),
                 "seasonal naive (period 11)": np.stack([series[c - 11 + np.arange(8)] for c in cuts])}
    for name, forecast in forecasts.items():  # the reader holds windows in float32, as the model is scored on them
        assert got[name]["mse"] == pytest.approx(np.mean((forecast - truth) ** 2), rel=1e-6), name
        assert got[name]["mae"] == pytest.approx(np.mean(np.abs(forecast - truth)), rel=1e-6), name
    assert [p["model"] for p in result.summary["paper"]] == ["ARIMA"]  # the user's; the computed ones are metrics
    assert baseline_comparison(result.summary).startswith(
        f"baselines on the same windows, MSE (standardised): repeat-last {format_metric(got['repeat-last']['mse'])}, ")

    weeks = sm.datasets.co2.load_pandas().data.iloc[:400]  # its first 400 weeks: the test rows have empty cells
    co2 = tmp_path / "co2.csv"
    weeks.to_csv(co2, index_label="date")
    samples = get_task("custom-series").load(co2, "test")
    assert np.isnan(samples[0].series[0][-1]) and all(np.isnan(s.series[0]).any() for s in samples)  # gaps, one last
    scores = get_task("custom-series").computed_baselines(samples)
    assert all(np.isfinite(value) for score in scores.values() for value in score.values())
    # computed in chunks (Traffic's look-backs do not fit at once): chunks of 3 windows sum to the same
    monkeypatch.setattr("modrwkv.evaluation.tasks.series.BASELINE_CHUNK", 3)
    chunked = get_task("custom-series").computed_baselines(samples)
    assert len(samples) % 3 and list(chunked) == list(scores)
    assert all(chunked[name] == pytest.approx(scores[name], rel=1e-12) for name in scores)


def test_season_gives_the_seasonal_baselines_a_period_the_model_has_none_of(tmp_path, monkeypatch, capsys):
    """`modrwkv eval --season 4` on a period-4 pattern plus a trend of 0.5 a step, with a model that records no
    season: seasonal naive repeats the look-back's last period, 4 steps behind, so every step it forecasts is
    off by the trend over 4 steps, 2.0; its MSE is (2.0 / the training rows' std)^2 on standardised values, and
    + drift (the look-back's mean change over a period, that 2.0) is exact. Only the baselines change: a rerun
    into the same folder with --season resumes the model's forecasts."""
    import modrwkv.cli
    from modrwkv.cli import main

    monkeypatch.setattr(modrwkv.cli, "_load_pipeline", lambda *args, **kwargs: ForecastPipeline())
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.pth").write_bytes(b"not loaded")
    t = np.arange(60)
    values = np.array([0.0, 3.0, -1.0, 2.0])[t % 4] + 0.5 * t
    path = tmp_path / "pattern.csv"
    path.write_text("y\n" + "".join(f"{value}\n" for value in values))
    out = tmp_path / "out"
    command = ["eval", "--task", "custom-series", "--data", str(path), "--model", str(model), "--lookback", "12",
               "--horizon", "3", "--output", str(out), "--no-progress"]
    assert main(command) == 0
    first = json.loads((out / "summary.json").read_text())["metrics"]
    assert list(first["baselines"]) == ["repeat-last", "look-back mean", "train mean"]  # the model has no season
    assert main([*command, "--season", "4"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    metrics = json.loads((out / "summary.json").read_text())["metrics"]
    assert metrics["mse"] == first["mse"]  # the model's forecasts, resumed
    std = values[:int(60 * 0.7)].std()  # the training rows' scaler
    seasonal = metrics["baselines"]["seasonal naive (period 4)"]
    assert seasonal["mse"] == pytest.approx((2.0 / std) ** 2, rel=1e-5)
    assert metrics["baselines"]["seasonal naive (period 4) + drift"]["mse"] == pytest.approx(0, abs=1e-9)
    assert f"seasonal naive (period 4) {format_metric(seasonal['mse'])}, " in last
    # a built-in benchmark takes it too: the same windows give the same number
    samples = get_task("custom-series").configure(lookback=12, horizon=3).load(path, "test")
    builtin = get_task("etth1").configure(lookback=12, horizon=3, season=4).computed_baselines(samples)
    assert builtin["seasonal naive (period 4)"]["mse"] == pytest.approx(seasonal["mse"], rel=1e-12)
    # a period the look-back cannot hold twice, or none, is refused; so is --season where nothing is forecast
    for season in ("1", "12"):
        assert main([*command, "--season", season]) == 2
        assert capsys.readouterr().err.strip().splitlines()[-1] == (
            f"modrwkv eval: error: season {season}: the seasonal baselines' period must be an integer from 2 to 11 "
            "(under the look-back, 12, so that it holds more than one period)")
    assert main(["eval", "--task", "pope", "--data", str(tmp_path), "--model", str(model), "--season", "24"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "modrwkv eval: error: --season: pope takes no such option (forecasting tasks do)")


def test_a_tsv_or_npz_series_is_evaluated_as_its_csv_is(tmp_path, weights):
    """`--task custom` sends every series file training reads (.csv, .tsv, .npz) to custom-series, which
    cuts and scores the same windows from each (it routed only .csv, and read a .tsv as records)."""
    path, values = write_custom_csv(tmp_path / "mine.csv")
    tsv = tmp_path / "mine.tsv"
    tsv.write_text(path.read_text().replace(",", "\t"))
    npz = tmp_path / "mine.npz"
    np.savez(npz, load=values[:, 0], temp=values[:, 1])  # NaN: the CSV's empty cells
    scores = {}
    for data in (path, tsv, npz):
        task = custom_task(data)
        assert task is TASKS["custom-series"]
        result = run_eval(task.configure(lookback=24, horizon=6), data, tmp_path / data.suffix[1:], model=weights,
                          load_pipeline=ForecastPipeline, batch_size=16)
        predictions = read_predictions(tmp_path / data.suffix[1:] / "predictions.jsonl")
        scores[data.suffix] = (len(predictions), result.summary["metrics"]["mse"])
    assert scores[".tsv"] == scores[".csv"] and scores[".npz"] == pytest.approx(scores[".csv"])
    assert scores[".csv"][0] == 2 * (64 - 24 - 6 + 1)  # both series, every test window
    assert isinstance(custom_task(tmp_path / "metadata.csv"), CustomTask)  # Hugging Face's folder rows
    with pytest.raises(ValueError, match="mine.npz: a .npz file is a forecasting series, evaluated one file at a"):
        custom_task([npz, tmp_path / "x.jsonl"])
    with pytest.raises(ValueError, match=r"a series file \(.csv/.tsv/.npz, .tsf, a .parquet/.arrow/.json/.jsonl/.xlsx "
                       r"table of series columns, or .parquet/.arrow/.jsonl of one series per row\) is read by the "
                       r"'custom-series'"):
        custom_task(tsv, prompt="{question}")
    for option in ({"label_column": "x"}, {"columns": {"question": "x"}}):
        with pytest.raises(ValueError, match="--label-column, --columns, --long-form"):
            custom_task(npz, **option)
    # other methods' MSE on these windows, given as for records, beside the simple forecasts computed here
    given = custom_task(npz, baselines={"ARIMA": 0.41})
    assert isinstance(given, type(TASKS["custom-series"]))
    assert given.paper_results("test") == [PaperResult("ARIMA", 0.41)]
    assert "--baseline" in given.paper_note and "baselines" not in given.configure(lookback=24).options
    with pytest.raises(BenchmarkFileError,
                       match=r"expected a series file \(.csv/.tsv/.npz, .tsf, a .parquet/.arrow/.json/.jsonl/.xlsx "
                             r"table of series columns, or .parquet/.arrow/.jsonl of one series per row\)"):
        get_task("custom-series").load(tmp_path, "test")


def test_series_rows_are_evaluated_as_their_csv_files_are(tmp_path, weights):
    """`--task custom` sends a Parquet (Chronos' layout) or JSONL (GluonTS') file of series rows to custom-series,
    which scores each row's test windows as it scores the CSV of that series: statsmodels' sunspots and Nile, two
    rows of different lengths, score the windows and MSE of their two CSV files together."""
    pytest.importorskip("statsmodels")
    from eval_fixtures import real_series, write_series_layouts

    series = {name: values for name, values in real_series().items() if name in ("sunspots", "nile")}
    csvs, parquet, jsonl = write_series_layouts(tmp_path / "data", series)
    scores = {}
    for data in (*csvs, parquet, jsonl):
        task = custom_task(data)
        assert task is TASKS["custom-series"]
        result = run_eval(task.configure(lookback=12, horizon=4), data, tmp_path / data.name, model=weights,
                          load_pipeline=ForecastPipeline, batch_size=16)
        predictions = read_predictions(tmp_path / data.name / "predictions.jsonl")
        scores[data.name] = (len(predictions), result.summary["metrics"]["mse"])
    (sun_windows, sun_mse), (nile_windows, nile_mse) = scores["sunspots.csv"], scores["nile.csv"]
    assert (sun_windows, nile_windows) == (int(309 * 0.2) - 4 + 1, int(100 * 0.2) - 4 + 1)  # the test rows' windows
    pooled = (sun_windows * sun_mse + nile_windows * nile_mse) / (sun_windows + nile_windows)
    for data in (parquet, jsonl):
        assert scores[data.name] == (sun_windows + nile_windows, pytest.approx(pooled, rel=1e-12))
    # (by id: a row's windows, named by its row, are told from another row's, and a run resumes by them)
    first = next(iter(read_predictions(tmp_path / parquet.name / "predictions.jsonl")))
    assert first == f"row 0 (id 'sunspots') target/{309 - int(309 * 0.2) - 12}"


# --- bad input --------------------------------------------------------------------------------


def test_missing_and_malformed_files_are_named(tmp_path):
    with pytest.raises(BenchmarkFileError, match="v2_mscoco_val2014_annotations.json"):
        folder = write_vqav2(tmp_path / "a")
        (folder / "v2_mscoco_val2014_annotations.json").unlink()
        get_task("vqav2").load(folder, "val")
    folder = write_vqav2(tmp_path / "b")
    (folder / "v2_OpenEnded_mscoco_val2014_questions.json").write_text('{"questions": [{"question_id": 11}]}')
    with pytest.raises(BenchmarkFileError, match=r"questions\[0\]: missing field 'image_id'"):
        get_task("vqav2").load(folder, "val")
    (folder / "v2_OpenEnded_mscoco_val2014_questions.json").write_text("{not json")
    with pytest.raises(BenchmarkFileError, match="not valid JSON"):
        get_task("vqav2").load(folder, "val")
    with pytest.raises(BenchmarkFileError, match="expected a folder"):
        get_task("gqa").load(tmp_path / "nowhere", "testdev-balanced")
    mmmu = write_mmmu(tmp_path / "c")
    for parquet in (mmmu / "Physics").glob("*.parquet"):
        parquet.unlink()
    with pytest.raises(BenchmarkFileError, match="subject.*Physics"):
        get_task("mmmu").load(mmmu, "validation")
    tsv = write_mmbench(tmp_path / "d") / "MMBench_DEV_EN.tsv"
    tsv.write_text("index\tquestion\n0\tq\n")
    with pytest.raises(BenchmarkFileError, match="missing column"):
        get_task("mmbench").load(tsv.parent, "dev")
    short = write_etth1(tmp_path / "e", rows=14000)
    with pytest.raises(BenchmarkFileError, match="ETTh1.csv.*14400 rows"):
        get_task("etth1").load(short, "test")
    with pytest.raises(ValueError, match="unknown split 'train'"):
        get_task("pope").check_split("train")


# --- runner bookkeeping -----------------------------------------------------------------------


@dataclasses.dataclass
class Reply:
    text: str
    finish_reason: str = "stop"


class EchoPipeline:
    """Replies with the last word of the question; counts the samples it is asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def generate_batch(self, requests):
        self.asked.extend(r.messages for r in requests)
        return [Reply(r.messages.split("\n")[1].split()[-1].rstrip("?")) for r in requests]


@pytest.fixture
def weights(tmp_path) -> ModelSpec:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"weights-1")
    return ModelSpec(str(path))


def test_resume_redoes_only_what_is_missing_and_drops_a_torn_line(tmp_path, weights):
    task, data = get_task("pope"), WRITERS["pope"](tmp_path)
    complete = run_eval(task, data, tmp_path / "full", model=weights, load_pipeline=EchoPipeline, batch_size=4)
    assert complete.generated == 6 and complete.summary["samples"] == 6
    # A run killed mid-batch: two complete lines and a torn third.
    lines = (tmp_path / "full" / "predictions.jsonl").read_text().splitlines()
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "run.json").write_text((tmp_path / "full" / "run.json").read_text())
    (partial / "predictions.jsonl").write_text("\n".join(lines[:2]) + "\n" + lines[2][:30])
    echo = EchoPipeline()
    resumed = run_eval(task, data, partial, model=weights, load_pipeline=lambda: echo, batch_size=4)
    assert resumed.generated == 4 and len(echo.asked) == 4
    assert (partial / "predictions.jsonl").read_bytes() == (tmp_path / "full" / "predictions.jsonl").read_bytes()
    assert resumed.summary["metrics"] == complete.summary["metrics"]
    # Finished: a rerun loads no model at all.
    again = run_eval(task, data, partial, model=weights, load_pipeline=lambda: pytest.fail("model loaded"))
    assert again.generated == 0 and again.summary["metrics"] == complete.summary["metrics"]


def test_a_run_that_failed_before_its_first_prediction_does_not_block_the_next(tmp_path, weights):
    """An eval that stopped before answering anything (here the model cannot load; the CLI: a model without
    the task's encoder) leaves run.json in the default output folder; the next run, with another model,
    has nothing there to resume or protect and goes ahead."""
    task, data = get_task("pope"), WRITERS["pope"](tmp_path)

    def no_model():
        raise ValueError("this model has no image encoder")

    with pytest.raises(ValueError, match="no image encoder"):
        run_eval(task, data, tmp_path / "out", model=weights, load_pipeline=no_model, limit=2)
    assert (tmp_path / "out" / "run.json").is_file()
    Path(weights.path).write_bytes(b"weights-2")
    assert run_eval(task, data, tmp_path / "out", model=weights, load_pipeline=EchoPipeline, limit=2).generated == 2
    Path(weights.path).write_bytes(b"weights-1")  # now the folder holds weights-2's answers
    with pytest.raises(ValueError, match="different run: model"):
        run_eval(task, data, tmp_path / "out", model=weights, load_pipeline=EchoPipeline, limit=2)


def test_a_torn_first_line_is_no_prediction_to_protect(tmp_path, weights):
    """A kill during the first write leaves only half a line (no prediction: `read_predictions` drops it);
    the next run, with another model, goes ahead and cuts it off."""
    task, data = get_task("pope"), WRITERS["pope"](tmp_path)
    output = tmp_path / "out"

    def killed_in_its_first_write():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_eval(task, data, output, model=weights, load_pipeline=killed_in_its_first_write, limit=2)
    (output / "predictions.jsonl").write_bytes(b'{"id": "random/1", "predic')
    Path(weights.path).write_bytes(b"weights-2")
    assert run_eval(task, data, output, model=weights, load_pipeline=EchoPipeline, limit=2).generated == 2
    assert len(read_predictions(output / "predictions.jsonl")) == 2
    assert (output / "predictions.jsonl").read_bytes().count(b"\n") == 2


def test_a_different_model_or_task_in_the_output_is_refused(tmp_path, weights):
    task, data = get_task("pope"), WRITERS["pope"](tmp_path)
    run_eval(task, data, tmp_path / "out", model=weights, load_pipeline=EchoPipeline, limit=2)
    Path(weights.path).write_bytes(b"weights-2")
    with pytest.raises(ValueError, match="different run: model"):
        run_eval(task, data, tmp_path / "out", model=weights, load_pipeline=EchoPipeline)
    Path(weights.path).write_bytes(b"weights-1")
    with pytest.raises(ValueError, match="different run: split"):
        run_eval(task, data, tmp_path / "out", model=weights, load_pipeline=EchoPipeline, split="random")
    with pytest.raises(ValueError, match="different run: task"):
        run_eval(get_task("gqa"), WRITERS["gqa"](tmp_path), tmp_path / "out", model=weights, load_pipeline=EchoPipeline)
    (tmp_path / "out" / "predictions.jsonl").write_text('{"id": "random/1"}\n{"id": 2, "prediction": "x"}\n')
    with pytest.raises(ValueError, match=r"predictions.jsonl:1: not a predictions record"):
        run_eval(task, data, tmp_path / "out", model=weights, load_pipeline=EchoPipeline)


def test_shards_merge_into_the_single_process_result(tmp_path, weights):
    task, data = get_task("pope"), WRITERS["pope"](tmp_path)
    single = run_eval(task, data, tmp_path / "single", model=weights, load_pipeline=EchoPipeline, batch_size=2)
    first = run_eval(task, data, tmp_path / "sharded", model=weights, load_pipeline=EchoPipeline, num_shards=3, shard_index=0)
    assert first.summary is None and first.done == 2
    with pytest.raises(ValueError, match="4 of 6 samples have no prediction"):
        run_eval(task, data, tmp_path / "sharded", model=weights, load_pipeline=EchoPipeline, num_shards=3, merge_only=True)
    run_eval(task, data, tmp_path / "sharded", model=weights, load_pipeline=EchoPipeline, num_shards=3, shard_index=2)
    last = run_eval(task, data, tmp_path / "sharded", model=weights, load_pipeline=EchoPipeline, num_shards=3, shard_index=1)
    assert last.summary["metrics"] == single.summary["metrics"]
    assert (tmp_path / "sharded" / "predictions.jsonl").read_bytes() == (tmp_path / "single" / "predictions.jsonl").read_bytes()


def test_missing_media_is_reported_before_generating(tmp_path, weights):
    data = WRITERS["gqa"](tmp_path)
    (data / "images" / "n1001.jpg").unlink()
    with pytest.raises(ValueError, match=r"missing media file\(s\) for gqa: .*n1001.jpg"):
        run_eval(get_task("gqa"), data, tmp_path / "out", model=weights, load_pipeline=EchoPipeline)


# --- submissions and report -------------------------------------------------------------------


def test_vqav2_submission_follows_llavas_conversion(tmp_path, weights):
    data = write_vqav2(tmp_path)

    class Shouting(EchoPipeline):
        def generate_batch(self, requests):
            return [Reply("Two Dogs." if "What is" in r.messages else "NO") for r in requests]

    task = get_task("vqav2")
    result = run_eval(task, data, tmp_path / "out", model=weights, load_pipeline=Shouting, split="test-dev")
    assert result.summary["server_scored"] and "server-scored" in (tmp_path / "out" / "report.md").read_text()
    path = export_submission(task, tmp_path / "out", data, tmp_path / "answers.json")
    # Every test2015 question, test-dev ones answered through the EvalAI processor, the rest "".
    assert json.loads(path.read_text()) == [{"question_id": 100, "answer": ""}, {"question_id": 101, "answer": "2 dogs"},
                                            {"question_id": 102, "answer": "no"}, {"question_id": 103, "answer": ""}]


def test_mmbench_submission_table_has_the_raw_predictions(tmp_path, weights):
    import pandas

    data = write_mmbench(tmp_path, with_answers=False)
    task = get_task("mmbench")
    run_eval(task, data, tmp_path / "out", model=weights, load_pipeline=EchoPipeline, split="test")
    path = export_submission(task, tmp_path / "out", data, tmp_path / "mmbench.tsv")
    table = pandas.read_csv(path, sep="\t")
    assert list(table.columns) == ["index", "question", "A", "B", "C", "prediction", "split"]
    assert table["prediction"].tolist() == ["photo.", "photo.", "photo.", "colour"]
    with pytest.raises(ValueError, match="scored locally"):
        export_submission(get_task("gqa"), tmp_path / "out", data, tmp_path / "x.json")


def test_report_puts_the_paper_numbers_beside_ours(tmp_path, weights):
    run_eval(get_task("pope"), WRITERS["pope"](tmp_path), tmp_path / "out", model=weights, load_pipeline=EchoPipeline, limit=4)
    report = (tmp_path / "out" / "report.md").read_text()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert "| benchmark | split | samples | metric | this model | ModRWKV RWKV7-3B (paper) | LLaVA-1.5-7B (paper) |" in report
    assert f"| POPE | all | 4 of 6 | F1 (%), mean of the splits | {summary['metrics']['f1']:.2f} | 87.1 | 86.5 |" in report
    assert "not comparable with the published numbers" in report
    assert read_predictions(tmp_path / "out" / "predictions.jsonl").keys() == {"random/1", "random/2", "popular/1", "popular/2"}


def test_report_keeps_three_significant_digits_of_small_values():
    """A forecaster's standardised MSE of 0.00325 was reported as 0.003 (three decimals): the digits that tell
    two models apart were lost. Small values keep three significant digits; the rest as before."""
    from modrwkv.evaluation.report import format_report

    summary = {"paper": [], "server_scored": False, "headline": {"value": 0.003253, "label": "MSE (standardised)",
                                                                  "metric": "mse"},
               "samples": 24, "samples_in_split": 24, "title": "custom series", "split": "test", "model": "m",
               "data": "d", "max_new_tokens": 60, "paper_note": None,
               "metrics": {"mse": 0.003253, "mae": 0.04512, "unparsed": 0, "bias": 0.25, "loss": 1.5}}
    report = format_report([summary])
    assert "| custom series | test | 24 | MSE (standardised) | 0.00325 |" in report
    assert "- mae: 0.0451" in report and "- bias: 0.250" in report and "- loss: 1.50" in report


class RightPipeline:
    """Answers every POPE question right (the fixture's dogs are there, its cars are not)."""

    def generate_batch(self, requests):
        return [Reply("Yes" if "dog" in r.messages else "No") for r in requests]


def test_the_console_report_and_model_card_show_a_metric_alike(tmp_path, capsys):
    """All right, POPE's F1 is 100 (hand-computed: no false positive or negative in any split); the
    console line, report.md and the model card show it with the same digits (the console's 4 significant
    digits once printed "100" beside the report's "100.00")."""
    from modrwkv.cli import main
    from modrwkv.hub import model_card

    task, data = get_task("pope"), WRITERS["pope"](tmp_path)
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"weights-1")
    spec = ModelSpec(str(weights))  # as the CLI's defaults give it
    run_eval(task, data, tmp_path / "out", model=spec, load_pipeline=RightPipeline)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["headline"]["value"] == 100
    # the predictions are all there: the CLI scores them again without loading a model
    assert main(["eval", "--task", "pope", "--data", str(data), "--model", str(weights),
                 "--output", str(tmp_path / "out"), "--no-progress"]) == 0
    assert "F1 (%), mean of the splits 100.00 over 6 samples" in capsys.readouterr().out
    assert "| POPE | all | 6 | F1 (%), mean of the splits | 100.00 |" in (tmp_path / "out" / "report.md").read_text()
    from modrwkv.lm import RWKV7Config

    lm = RWKV7Config(n_layer=1, n_embd=64, vocab_size=65536, head_size=64, dim_w=32, dim_a=32, dim_v=32, dim_g=32)
    card = model_card({"lm": dataclasses.asdict(lm)}, eval_summaries=[summary])
    assert "| POPE | all | F1 (%), mean of the splits | 100.00 | 6 |" in card
