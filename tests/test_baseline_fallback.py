"""Shipping the baseline when validation cannot tell (train.baseline_fallback, val_metric forecast_mse): the
block t statistic by hand, the decision on crafted val forecasts (corrections that are noise: the baseline
ships, exactly; corrections clearly better: the model ships), the flag through save_pretrained /
from_pretrained, `forecast` and `modrwkv eval` on a model that ships its baseline."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from test_forecasting import wave_csv

from modrwkv.training.validation import (
    MIN_BLOCKS,
    SIGNIFICANT_T,
    ForecastScorer,
    baseline_decision,
    block_means,
    t_statistic,
    val_data_config,
)

LOOKBACK, HORIZON = 32, 8


def test_block_t_statistic_hand_computed() -> None:
    """Gains 1 3 | 2 4 | 6 8 (+ 5, a block's start only: left out) of one series, given out of order, and a
    second series' 10 10: blocks of 2 consecutive windows of one series give means 2, 3, 7 and 10; their mean
    is 5.5, their sample variance (12.25 + 6.25 + 2.25 + 20.25) / 3 = 41 / 3, so t = 5.5 / sqrt(41 / 3 / 4)."""
    gains = [4, 2, 1, 3, 8, 6, 5, 10, 10]
    keys = ["a"] * 7 + ["b"] * 2
    starts = [3, 2, 0, 1, 5, 4, 6, 0, 1]
    blocks = block_means(gains, keys, starts, 2)
    np.testing.assert_array_equal(blocks, [2, 3, 7, 10])
    assert t_statistic(blocks) == pytest.approx(5.5 / math.sqrt(41 / 3 / 4), rel=1e-12)  # 2.9755
    assert t_statistic(np.array([1.0, 1.0])) == math.inf and t_statistic(np.array([0.0, 0.0])) == 0
    assert math.isnan(t_statistic(np.array([1.0])))
    # blocks of 3: a's 1 3 2 | 4 6 8 (+ 5 left out); a series of fewer windows than a block (holdout last: its one
    # val window) is one block: b's 10 10, and c's 2 3
    np.testing.assert_array_equal(block_means([*gains, 2, 3], [*keys, "c", "c"], [*starts, 0, 1], 3), [2, 6, 10, 2.5])


def test_one_val_window_per_series_is_tested_window_by_window() -> None:
    """`holdout: last` holds out each series' one val window: 40 series better by 0.5 each (a little noise) ship
    the model over 40 blocks; before, no block of 8 windows of one series existed and the baseline always shipped."""
    better = [0.5 + 0.01 * (i % 3) for i in range(40)]
    decided = baseline_decision(better, [1.0] * 40, list(range(40)), [0] * 40, 8)
    assert decided["shipped"] == "model" and decided["blocks"] == 40 and decided["t"] > SIGNIFICANT_T
    assert "over 40 blocks one per series (each holds fewer val windows than a block of 8)" in decided["reason"]


def test_decision_needs_enough_blocks_and_a_t_above_the_threshold() -> None:
    zeros = [1.0] * 40
    starts, keys = list(range(40)), [0] * 40
    better = [0.5 + 0.01 * (i % 3) for i in range(40)]  # 5 blocks of 8, each clearly better
    shipped = baseline_decision(better, zeros, keys, starts, 8)
    assert shipped["shipped"] == "model" and shipped["blocks"] == MIN_BLOCKS and shipped["t"] > SIGNIFICANT_T
    few = baseline_decision(better[:39], zeros[:39], keys[:39], starts[:39], 8)  # 4 whole blocks
    assert few["shipped"] == "baseline" and few["blocks"] == 4
    assert "fewer than 5 blocks cannot show" in few["reason"]
    # a gain in one block alone: positive on average, not beyond the spread of the blocks
    lucky = [0.2 if i < 8 else 1.0 for i in range(40)]
    decided = baseline_decision(lucky, zeros, keys, starts, 8)
    assert decided["shipped"] == "baseline" and decided["t"] == pytest.approx(1.0)  # mean 0.16, sd 0.358, n 5
    assert decided["val_forecast_mse"] < decided["zeros_forecast_mse"]
    # every block gains exactly as much: t is unbounded, shipped, and recorded as null (strict JSON has no inf)
    even = baseline_decision([0.5] * 40, zeros, keys, starts, 8)
    assert even["shipped"] == "model" and even["t"] is None
    json.dumps(even, allow_nan=False)


def crafted_scorer(monkeypatch: pytest.MonkeyPatch, correction) -> None:
    """Validation's forecasts replaced by the baseline plus `correction(baseline, target, rng)`, so that what the
    model's corrections do on val is known; scored as ForecastScorer scores them."""
    from modrwkv.inference.pipeline import baseline_forecast

    def call(self, model, trainer):
        rng = np.random.default_rng(0)
        encoder, records = model.encoders["series"], []
        for sample in self.samples:
            baseline = baseline_forecast(encoder, sample.series[0], HORIZON)[:, 0]
            target = np.asarray(sample.reference["target"])
            record = {"forecast": (baseline + correction(baseline, target, rng)).tolist(), "reference": sample.reference}
            records.append({**record, "score": self.task.score(record)})
        self.records, self.distinct_replies = records, len(records)
        return float(self.task.summarize(records)["mse"])

    monkeypatch.setattr(ForecastScorer, "__call__", call)


def train_wave(tmp_path: Path, capsys, *options: str) -> tuple[Path, Path, str]:
    """configs/series-cpu.yaml on an 800-row wave (73 val windows: 9 blocks of 8), 2 steps; no season, drift or
    ridge, so that a reply of zeros is the look-back's mean, computed by hand below."""
    from modrwkv.cli import main

    path, run = wave_csv(tmp_path / "wave.csv", rows=800), tmp_path / "run"
    assert main(["train", "configs/series-cpu.yaml", "--data.train", f"[{path}]", "--data.options.lookback",
                 str(LOOKBACK), "--data.options.horizon", str(HORIZON), "--train.max_steps", "2",
                 "--train.warmup_steps", "1", "--train.val_every", "2", "--model.lm.config", "{n_layer: 1, n_embd: 64}",
                 "--model.encoders.series.options.season", "0", "--model.encoders.series.options.drift", "false",
                 "--model.encoders.series.options.linear_baseline", "false", "--output.dir", str(run), *options]) == 0
    return path, run, capsys.readouterr().out


def eval_val(tmp_path: Path, model: Path, data: Path, name: str, *extra: str) -> dict:
    from modrwkv.cli import main

    assert main(["eval", "--task", "custom-series", "--data", str(data), "--model", str(model), "--lookback",
                 str(LOOKBACK), "--horizon", str(HORIZON), "--split", "val", "--output", str(tmp_path / name),
                 "--no-progress", *extra]) == 0
    return json.loads((tmp_path / name / "summary.json").read_text())["metrics"]


def test_corrections_that_are_noise_ship_the_baseline_exactly(tmp_path, monkeypatch, capsys, caplog) -> None:
    from modrwkv.inference import ModRWKVPipeline
    from modrwkv.multimodal import ModRWKV
    from modrwkv.multimodal.model import CheckpointError
    from modrwkv.training import load_config

    crafted_scorer(monkeypatch, lambda baseline, target, rng: rng.normal(0, 0.3, HORIZON))
    data, run, out = train_wave(tmp_path, capsys)
    record = json.loads((run / "best" / "validation.json").read_text())
    decision = record["shipped"]
    assert decision["shipped"] == "baseline" and decision["blocks"] == 9 and decision["t"] < SIGNIFICANT_T
    assert decision["val_forecast_mse"] > decision["zeros_forecast_mse"]
    assert "worse than a reply of zeros" not in caplog.text  # the decision's line says it instead
    step = record["step"]  # of equal values, the lower val loss
    assert out.rstrip().splitlines()[-1].startswith(
        f"shipping the baseline alone in best/ and final/ (the series encoder's forecast, not decoded; step {step}'s "
        f"weights kept beside it): val_forecast_mse {decision['val_forecast_mse']:.5f} against a reply of zeros' "
        f"{decision['zeros_forecast_mse']:.5f} (")
    for folder in ("best", "final"):
        assert json.loads((run / folder / "config.json").read_text())["series_baseline_only"] is True

    # the flag through save_pretrained / from_pretrained
    model = ModRWKV.from_pretrained(run / "final")
    assert model.series_baseline_only is True
    model.save_pretrained(tmp_path / "copy")
    assert ModRWKV.from_pretrained(tmp_path / "copy").series_baseline_only is True
    model.series_baseline_only = False
    model.save_pretrained(tmp_path / "decoding")
    assert ModRWKV.from_pretrained(tmp_path / "decoding").series_baseline_only is False
    config_json = json.loads((tmp_path / "decoding" / "config.json").read_text())
    (tmp_path / "decoding" / "config.json").write_text(json.dumps({**config_json, "series_baseline_only": "yes"}))
    with pytest.raises(CheckpointError, match="'series_baseline_only' must be true or false, got \"yes\""):
        ModRWKV.from_pretrained(tmp_path / "decoding")
    del config_json["series_baseline_only"]  # a folder saved before the flag: decoded, as before
    (tmp_path / "decoding" / "config.json").write_text(json.dumps(config_json))
    assert ModRWKV.from_pretrained(tmp_path / "decoding").series_baseline_only is False

    # forecast: the baseline, exactly; here the look-back's mean at every step (no season, drift or ridge)
    pipe = ModRWKVPipeline.from_pretrained(run / "final")
    config = load_config(run / "config.yaml")
    scorer = ForecastScorer(val_data_config(config.data), None)
    [train_file] = [Path(file) for file in config.data.train]  # a wildcard reads as training reads it
    wildcard = dataclasses.replace(config.data, train=[str(train_file.with_suffix("")) + "*" + train_file.suffix])
    read = ForecastScorer(val_data_config(wildcard), None)
    assert read.starts == scorer.starts and read.keys == scorer.keys and len(read.samples) == len(scorer.samples) > 0
    assert all(np.array_equal(a.series[0], b.series[0]) for a, b in zip(read.samples, scorer.samples, strict=True))
    window = np.asarray(scorer.samples[5].series[0])
    forecast = pipe.forecast(window, HORIZON)
    assert forecast.source == "baseline" and forecast.text == " ".join(["0"] * HORIZON) and forecast.complete
    encoder = pipe.model.encoders["series"]
    zeros = encoder.denormalize(torch.zeros(HORIZON, 1, dtype=torch.float64), encoder.prepare(window).extras)[:, 0]
    np.testing.assert_array_equal(forecast.values, zeros.numpy())
    # by hand: the look-back's mean (which the encoder keeps in float32)
    np.testing.assert_array_equal(forecast.values, np.full(HORIZON, np.float32(window.astype(np.float64).mean())))
    assert pipe.forecast(window, HORIZON, force_model=True).source == "model"

    # eval scores exactly what a reply of zeros scores; --force-model decodes
    metrics = eval_val(tmp_path, run / "final", data, "eval")
    assert "; forecasts: the baseline alone, the look-back's mean, not decoded (--force-model decodes); report:" \
        in capsys.readouterr().out
    assert metrics["mse"] == scorer.zeros(pipe.model) and metrics["source"] == "baseline"
    assert eval_val(tmp_path, run / "final", data, "forced", "--force-model")["source"] == "model"


def test_corrections_clearly_better_ship_the_model(tmp_path, monkeypatch, capsys) -> None:
    from modrwkv.inference import ModRWKVPipeline

    crafted_scorer(monkeypatch, lambda baseline, target, rng: 0.9 * (target - baseline))
    _, run, out = train_wave(tmp_path, capsys)
    decision = json.loads((run / "best" / "validation.json").read_text())["shipped"]
    assert decision["shipped"] == "model" and decision["t"] > SIGNIFICANT_T and decision["blocks"] == 9
    step = json.loads((run / "best" / "validation.json").read_text())["step"]
    assert out.rstrip().splitlines()[-1].startswith(f"shipping the model (step {step}) in best/ and final/: ")
    assert json.loads((run / "final" / "config.json").read_text())["series_baseline_only"] is False
    window = np.linspace(0, 1, LOOKBACK)
    assert ModRWKVPipeline.from_pretrained(run / "final").forecast(window, HORIZON).source == "model"


def test_baseline_fallback_false_ships_the_weights(tmp_path, monkeypatch, capsys, caplog) -> None:
    crafted_scorer(monkeypatch, lambda baseline, target, rng: rng.normal(0, 0.3, HORIZON))
    _, run, out = train_wave(tmp_path, capsys, "--train.baseline_fallback", "false")
    assert "shipped" not in json.loads((run / "best" / "validation.json").read_text())
    assert json.loads((run / "final" / "config.json").read_text())["series_baseline_only"] is False
    assert "shipping" not in out
    assert "is worse than a reply of zeros (0." in caplog.text and "(train.baseline_fallback true ships it)" in caplog.text
