"""Forecasting end to end: the number-list constraint, and `ModRWKVPipeline.forecast` keeping level
and scale (RevIN), with the tiny random-weight model of test_pipeline (its forecasts are arbitrary;
what is tested is what must hold whatever the weights)."""

from __future__ import annotations

import dataclasses
import json
import logging
import re

import numpy as np
import pytest
import torch
from test_pipeline import series, tiny_pipeline

from modrwkv.data.readers import parse_forecast
from modrwkv.data.readers.series import cut_forecast
from modrwkv.evaluation.report import format_metric
from modrwkv.generation import NumberListConstraint, mask_logits
from modrwkv.tokenizer import WorldTokenizer

END = 24  # the rwkv template's end of turn


@pytest.fixture(scope="module")
def tokenizer() -> WorldTokenizer:
    return WorldTokenizer()


def constraint(tokenizer: WorldTokenizer, count: int, **options) -> NumberListConstraint:
    return NumberListConstraint(tokenizer.token_bytes, 65536, count=count, end_tokens=[END], prefix=" ", **options)


def walk(tokenizer: WorldTokenizer, rule: NumberListConstraint, seed: int) -> list[int]:
    """Decodes with random logits under the constraint until it allows nothing more."""
    generator = torch.Generator().manual_seed(seed)
    tokens: list[int] = []
    while True:
        allowed = rule.allowed(tokens)
        if allowed.numel() == 0:
            return tokens
        logits = mask_logits(torch.randn(1, 65536, generator=generator) * 3, allowed)
        tokens.append(int(logits.argmax()))
        assert len(tokens) <= rule.max_tokens


@pytest.mark.parametrize("count,per_line", [(1, 0), (7, 0), (24, 0), (6, 3)])
def test_constrained_replies_are_exactly_count_numbers(tokenizer, count, per_line) -> None:
    for seed in range(8):
        rule = constraint(tokenizer, count, per_line=per_line)
        tokens = walk(tokenizer, rule, seed)
        assert tokens[-1] == END
        text = cut_forecast(tokenizer.decode(tokens[:-1]), count)
        assert text.startswith(" ") and not text.startswith("  ")
        channels = per_line or None
        values = parse_forecast(text, count // (per_line or 1), channels)
        assert values.size == count and np.all(np.abs(values) <= 99.99)


def test_constraint_follows_any_tokenisation_and_refuses_others(tokenizer) -> None:
    rule = constraint(tokenizer, 3)
    ids = tokenizer.encode(" 13 -1307 5")
    assert END not in rule.allowed(ids[:-1]).tolist()  # two numbers so far: not the end yet
    assert END in rule.allowed(ids).tolist()  # three: may end ...
    space = tokenizer.encode(" ")[0]
    assert space in rule.allowed(ids).tolist()  # ... or close the last number,
    assert rule.allowed([*ids, space]).tolist() == [END]  # after the closing space only the end
    minus = tokenizer.encode(" -")[0]
    assert constraint(tokenizer, 3).allowed([*ids, minus]).tolist() == [END]  # " -" closes the list too:
    assert constraint(tokenizer, 3).allowed([*ids, *tokenizer.encode(" 4")]).tolist() == [END]  # no 4th number
    assert cut_forecast(" 13 -1307 5 -", 3) == " 13 -1307 5" and cut_forecast("1 2", 3) == "1 2"
    assert constraint(tokenizer, 3).allowed([*ids, END]).numel() == 0
    five_digits = tokenizer.encode("1")[0]
    assert five_digits not in constraint(tokenizer, 3).allowed(tokenizer.encode(" 1234")).tolist()
    with pytest.raises(ValueError, match="breaks the number list"):
        constraint(tokenizer, 3).allowed(tokenizer.encode(" 12 abc"))
    masked = mask_logits(torch.zeros(1, 8), torch.tensor([2, 5]))
    assert torch.isfinite(masked).nonzero()[:, 1].tolist() == [2, 5]


def test_forecast_moves_with_the_series_level_and_scale() -> None:
    """RevIN done right: the model sees the same normalised window for x and 3x + 5, writes the same
    text, and the pipeline maps it back with each window's own statistics."""
    pipe = tiny_pipeline()
    x = series(3).astype(np.float64)
    base = pipe.forecast(x, 12)
    assert base.complete and base.values.shape == (12,)
    assert base.values.tolist() == pytest.approx(parse_forecast(base.text, 12) * np.sqrt(x.var() + 1e-5) + x.mean(),
                                                 rel=1e-5)
    for a, b in [(3.0, 5.0), (0.5, -40.0), (1000.0, 1e4)]:  # scales well above the variance floor (eps)
        moved = pipe.forecast(a * x + b, 12)
        assert moved.text == base.text
        np.testing.assert_allclose(moved.values, a * base.values + b, rtol=1e-5, atol=1e-5 * abs(b))


def test_forecast_batch_equals_one_at_a_time_and_marks_cut_replies() -> None:
    pipe = tiny_pipeline()
    windows = [series(seed)[: 20 + 3 * seed] for seed in range(3)]
    together = pipe.forecast_batch(windows, 8)
    alone = [pipe.forecast(w, 8) for w in windows]
    assert [f.text for f in together] == [f.text for f in alone]
    assert all(f.complete and len(parse_forecast(f.text, 8)) == 8 for f in together)
    short = pipe.forecast(windows[0], 8, max_new_tokens=3)  # cut short: still 8 values, marked incomplete
    assert not short.complete and short.values.shape == (8,)
    with pytest.raises(ValueError, match="horizon"):
        pipe.forecast(windows[0], 0)


def test_seasonal_corrections_round_trip_hand_computed(tmp_path) -> None:
    """With a season the reader writes the future minus the seasonal-naive forecast, and the encoder
    adds that baseline back. Look-back 1..6 (mean 3.5, scale sqrt(17.5 / 6 + 1e-5) = 1.70783),
    season 2, future 7 6 5: the baseline is 5 6 5, the corrections 2 0 0 = 117 0 0 hundredths of the
    scale; with drift (mean change over one season: 2) the baseline is 7 8 9 and the text 0 -117 -234."""
    from modrwkv.data.readers.series import TimeSeriesReader, seasonal_baseline
    from modrwkv.encoders.series import WaveNetConfig, WaveNetSeriesEncoder

    path = tmp_path / "s.csv"
    path.write_text("v\n" + "\n".join(map(str, [1, 2, 3, 4, 5, 6, 7, 6, 5])) + "\n")
    scale = np.sqrt(17.5 / 6 + 1e-5)
    for drift, text, baseline in ((False, "117 0 0", [5, 6, 5]), (True, "0 -117 -234", [7, 8, 9])):
        [sample] = list(TimeSeriesReader(path, lookback=6, horizon=3, season=2, drift=drift))
        assert sample.messages[1].content == text and sample.meta["season"] == 2
        encoder = WaveNetSeriesEncoder(WaveNetConfig(patch_len=3, season=2, drift=drift))
        extras = encoder.prepare(sample.series[0]).extras
        zero = encoder.denormalize(torch.zeros(3, 1, dtype=torch.float64), extras)[:, 0].numpy()
        np.testing.assert_allclose(zero, baseline, rtol=1e-6)  # no correction: the baseline itself
        back = encoder.denormalize(torch.from_numpy(parse_forecast(text, 3)[:, None]), extras)[:, 0].numpy()
        np.testing.assert_allclose(back, [7, 6, 5], atol=0.005 * scale)  # within half a hundredth of the scale
        np.testing.assert_allclose(back, np.array(baseline) + np.array([int(v) for v in text.split()]) / 100 * scale,
                                   rtol=1e-6)
    # the baseline repeats the last season for horizons beyond it, and a short look-back is refused
    assert seasonal_baseline(np.array([0.0, 1, 2, 3]), 5, 3).tolist() == [1, 2, 3, 1, 2]
    with pytest.raises(ValueError, match="season"):
        TimeSeriesReader(path, lookback=6, horizon=3, season=7)
    with pytest.raises(ValueError, match="drift needs a season"):
        TimeSeriesReader(path, lookback=6, horizon=3, drift=True)
    with pytest.raises(ValueError, match="fewer than one season"):
        WaveNetSeriesEncoder(WaveNetConfig(season=8)).prepare(np.arange(6.0))


def test_seasonal_forecast_adds_the_baseline_and_keeps_level_and_scale() -> None:
    pipe = tiny_pipeline()
    config = pipe.model.encoders["series"].config
    config.season = 5
    try:  # the tiny model may be shared with other tests: put its season back
        x = series(3).astype(np.float64)
        base = pipe.forecast(x, 12)
        moved = pipe.forecast(3 * x + 5, 12)
    finally:
        config.season = 0
    scale = np.sqrt(x.var() + 1e-5)
    baseline = np.tile(x[-5:], 3)[:12]
    np.testing.assert_allclose(base.values, baseline + parse_forecast(base.text, 12) * scale, rtol=1e-5, atol=1e-5)
    assert moved.text == base.text
    np.testing.assert_allclose(moved.values, 3 * base.values + 5, rtol=1e-5, atol=1e-4)


def test_pass_residuals_appends_each_patchs_change_over_one_season() -> None:
    """Look-back 1 2 3 5 4 8 (variance 30.8333 / 6), season 2, patches of 2: the changes over one
    season are 0 0 (no season before), 3-1 5-2, 4-3 8-5, in units of the window's scale."""
    from modrwkv.encoders.series import WaveNetConfig, WaveNetSeriesEncoder

    encoder = WaveNetSeriesEncoder(WaveNetConfig(patch_len=2, layers=2, output_dim=8, season=2, pass_residuals=True))
    assert encoder.output_dim == 8 + 2
    [features] = encoder.encode([np.array([1.0, 2, 3, 5, 4, 8])])
    expected = np.array([[0, 0], [2, 3], [1, 3]]) / np.sqrt(30.8333333 / 6 + 1e-5)
    np.testing.assert_allclose(features[:, -2:].detach().numpy(), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="pass_residuals needs a season"):
        WaveNetConfig(pass_residuals=True)


def load_bench():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "forecasting.py"
    spec = importlib.util.spec_from_file_location("bench_forecasting", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_windows_of_a_series_with_gaps_log_one_summary_line(tmp_path, caplog) -> None:
    """co2's empty weeks: bench/forecasting.py printed a "skipping" line per left-out window (20, then
    "further skipped records ..."), which buried its table. One gap at row 20 is in the target of the
    two training windows that start at rows 11 and 12 (look-back 8, horizon 2); windows that only
    read it in their look-back are kept."""
    rows = ["1", "3", "2", "0"] * 15
    rows[20] = ""
    path = tmp_path / "gap.csv"
    path.write_text("date,v\n" + "".join(f"{day},{value}\n" for day, value in enumerate(rows)))
    with caplog.at_level(logging.DEBUG, logger="modrwkv"):
        past, _ = load_bench().split_windows(path, "train", 8, 2)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    total = 42 - 8 - 2 + 1  # the 70 % training rows of 60, cut into windows of 8 + 2
    assert warnings == [f"{path}: kept {total - 2} of {total} records; skipped 2 (non_finite: 2)"]
    assert len(past) == total - 2


def test_ridge_baseline_learns_a_linear_rule_hand_computed(tmp_path) -> None:
    """bench/forecasting.py's ridge baseline on 1 3 2 0 repeated (period 4) with a wrong season
    (2): seasonal naive says the value two steps back, the ridge (alpha chosen on val: the small
    one) learns the rule. The train scaler gives mean 1.5, std sqrt(1.25); after ... 2 0 1 the
    next two values are 3 2, i.e. 1.5 / sqrt(1.25) and 0.5 / sqrt(1.25) standardised."""
    pytest.importorskip("sklearn")
    bench = load_bench()
    path = tmp_path / "cycle.csv"
    path.write_text("v\n" + "1\n3\n2\n0\n" * 60)
    windows = {split: bench.split_windows(path, split, 8, 2) for split in ("train", "val", "test")}
    ridge = bench.RidgeForecaster(period=2, drift=True).fit(windows["train"], windows["val"], alphas=(1e-6, 1e3))
    assert ridge.alpha == 1e-6 and ridge.val_mse[1e-6] < 1e-8 < ridge.val_mse[1e3]
    past, future = windows["test"]
    ends_201 = np.flatnonzero(np.isclose(past[:, -3:], (np.array([2, 0, 1]) - 1.5) / np.sqrt(1.25), atol=1e-6).all(axis=1))
    assert len(ends_201) > 5
    hand = np.array([1.5, 0.5]) / np.sqrt(1.25)
    np.testing.assert_allclose(future[ends_201], np.tile(hand, (len(ends_201), 1)), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ridge.predict(past[ends_201]), future[ends_201], atol=1e-4)
    from modrwkv.evaluation.metrics import forecast_baselines

    naive = forecast_baselines(past[ends_201], 2, 2)["seasonal naive"][0]  # two back: 0 then 1
    np.testing.assert_allclose(naive, (np.array([0, 1]) - 1.5) / np.sqrt(1.25), atol=1e-6)


def wave_csv(path, rows: int = 400):
    """A period-12 wave with a trend and noise: what a seasonal + linear baseline reads."""
    rng = np.random.default_rng(0)
    t = np.arange(rows)
    values = np.sin(2 * np.pi * t / 12) + 0.01 * t + 0.3 * rng.standard_normal(rows)
    path.write_text("value\n" + "".join(f"{v:.5f}\n" for v in values))
    return path


def sklearn_ridge_on_bench_windows(path, lookback: int, horizon: int, season: int):
    """The independent fit: bench/forecasting.py's training windows and inputs (the correction to
    seasonal naive + drift on the normalised look-back), the alpha chosen by scikit-learn ridges
    fitted on the windows whose future ends before the last fifth begins and scored on that fifth
    (series units), then scikit-learn's `Ridge` with that alpha on every training window."""
    from sklearn.linear_model import Ridge

    bench = load_bench()
    ridge = bench.RidgeForecaster(season, drift=True)
    past, future = bench.split_windows(path, "train", lookback, horizon)
    z, base, mean, scale = ridge._inputs(past, horizon)
    target = (future - mean) / scale - base
    held = int(round(len(z) * 0.2))
    fit_rows, held_rows = slice(0, len(z) - held - horizon + 1), slice(len(z) - held, None)
    scores = {alpha: float(np.mean(((Ridge(alpha=alpha).fit(z[fit_rows], target[fit_rows]).predict(z[held_rows])
                                      - target[held_rows]) * scale[held_rows]) ** 2))
              for alpha in (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)}
    alpha = min(scores, key=scores.__getitem__)
    return Ridge(alpha=alpha).fit(z, target), scores, ridge


def test_the_linear_baseline_is_scikit_learns_ridge_with_alpha_chosen_on_the_training_tail(tmp_path) -> None:
    pytest.importorskip("sklearn")
    from modrwkv.data.linear_baseline import fit_linear_baseline
    from modrwkv.data.readers.series import TimeSeriesReader

    path = wave_csv(tmp_path / "wave.csv")
    reader = TimeSeriesReader(path, lookback=32, horizon=8, split="train", standardize=True, season=12, drift=True)
    fit = fit_linear_baseline(list(reader), 12, True)
    expected, scores, _ = sklearn_ridge_on_bench_windows(path, 32, 8, 12)
    assert fit.held_out_mse.keys() == scores.keys() and len(set(np.round(list(scores.values()), 6))) > 1
    np.testing.assert_allclose(list(fit.held_out_mse.values()), list(scores.values()), rtol=1e-6)
    assert fit.alpha == min(scores, key=scores.__getitem__)
    np.testing.assert_allclose(fit.baseline.weight, expected.coef_.T, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(fit.baseline.bias, expected.intercept_, rtol=1e-6, atol=1e-9)
    assert fit.windows == 400 * 7 // 10 - 32 - 8 + 1 and fit.held_out == round(fit.windows * 0.2)


def test_a_linear_baseline_forecaster_writing_zeros_forecasts_the_ridge_forecast(tmp_path, capsys) -> None:
    """`linear_baseline: true` trains (fitting the ridge first), saves the fitted weights, and every
    loaded path adds them back: a reply of zeros is the independent ridge + seasonal naive + drift
    forecast; the pipeline adds the same baseline to what the model wrote; eval forecasts as the
    pipeline does; the reader writes training targets relative to the same baseline."""
    pytest.importorskip("sklearn")
    from modrwkv.cli import main
    from modrwkv.data.readers.series import TimeSeriesReader
    from modrwkv.inference import ModRWKVPipeline

    path = wave_csv(tmp_path / "wave.csv")
    run = tmp_path / "run"
    assert main(["train", "configs/series-cpu.yaml", "--data.train", f"[{path}]", "--data.options.lookback", "32",
                 "--data.options.horizon", "8", "--train.max_steps", "1", "--train.warmup_steps", "1",
                 "--model.lm.config", "{n_layer: 1, n_embd: 64}", "--model.encoders.series.options.season", "12",
                 "--model.encoders.series.options.drift", "true", "--model.encoders.series.options.linear_baseline",
                 "true", "--output.dir", str(run)]) == 0
    assert "linear baseline (" in capsys.readouterr().out
    saved = json.loads((run / "final" / "encoders" / "series" / "encoder.json").read_text())["config"]
    assert (saved["linear_baseline"], saved["linear_lookback"], saved["linear_horizon"]) == (True, 32, 8)
    pipe = ModRWKVPipeline.from_pretrained(run / "final")
    encoder = pipe.model.encoders["series"]
    expected, _, bench_ridge = sklearn_ridge_on_bench_windows(path, 32, 8, 12)
    bench_ridge.model = expected
    past = load_bench().split_windows(path, "test", 32, 8)[0][:3]
    ridge_forecast = bench_ridge.predict(past)
    for window, forecast in zip(past, ridge_forecast, strict=True):
        extras = encoder.prepare(window).extras
        zero = encoder.denormalize(torch.zeros(8, 1, dtype=torch.float64), extras)[:, 0].numpy()
        np.testing.assert_allclose(zero, forecast, rtol=1e-6, atol=1e-6)
    written = pipe.forecast(past[0], 8)
    scale = np.sqrt(past[0].var() + 1e-5)
    np.testing.assert_allclose(written.values, ridge_forecast[0] + parse_forecast(written.text, 8) * scale, atol=1e-4)
    with pytest.raises(ValueError, match="fitted for a horizon of 8 steps; forecast at most 8, not 9"):
        pipe.forecast(past[0], 9)
    assert main(["eval", "--task", "custom-series", "--data", str(path), "--model", str(run / "final"), "--lookback",
                 "32", "--horizon", "8", "--limit", "1", "--output", str(tmp_path / "eval"), "--no-progress",
                 "--baseline", "ARIMA=0.25"]) == 0
    [record] = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    np.testing.assert_allclose(record["forecast"], pipe.forecast(past[0], 8).values, rtol=1e-5)
    # beside the given baseline and simple forecasts of the same window, the seasonal ones of the model's season
    # (its saved config)
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    baselines = summary["metrics"]["baselines"]
    assert summary["paper"][0] == {"model": "ARIMA", "value": 0.25} and "--baseline" in summary["paper_note"]
    truth = load_bench().split_windows(path, "test", 32, 8)[1][:1]
    naive = np.repeat(past[:1, -1:], 8, axis=1)
    seasonal = past[:1, 32 - 12 + np.arange(8) % 12]
    assert baselines["repeat-last"]["mse"] == pytest.approx(np.mean((naive - truth) ** 2), rel=1e-6)
    assert baselines["seasonal naive (period 12)"]["mae"] == pytest.approx(np.mean(np.abs(seasonal - truth)), rel=1e-6)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith(f"baselines on the same windows, MSE (standardised): repeat-last "
                           f"{format_metric(baselines['repeat-last']['mse'])}, look-back mean ") and \
        f"seasonal naive (period 12) {format_metric(baselines['seasonal naive (period 12)']['mse'])}, " in last
    # training targets: the future minus this same baseline, in hundredths of the window's scale
    reader = TimeSeriesReader(path, lookback=32, horizon=8, split="test", standardize=True, season=12, drift=True,
                              linear_baseline=encoder.linear())
    sample = next(iter(reader))
    correction = (sample.meta["target"] - ridge_forecast[0]) / scale
    np.testing.assert_allclose(parse_forecast(sample.messages[1].content, 8), correction, atol=0.0051)
    assert sample.meta["linear_baseline"] is True


def test_a_linear_baseline_refuses_too_few_windows_a_singular_fit_and_other_shapes(tmp_path, capsys) -> None:
    from modrwkv.cli import main
    from modrwkv.data.linear_baseline import LinearBaselineError, fit_linear_baseline
    from modrwkv.data.readers.series import TimeSeriesReader
    from modrwkv.encoders.series import WaveNetConfig, WaveNetSeriesEncoder

    short = wave_csv(tmp_path / "short.csv", rows=60)  # 42 training rows: 3 windows of 32 + 8
    assert main(["train", "configs/series-cpu.yaml", "--data.train", f"[{short}]", "--data.options.lookback", "32",
                 "--data.options.horizon", "8", "--train.max_steps", "1", "--model.encoders.series.options.linear_baseline",
                 "true", "--output.dir", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"modrwkv train: error: model.encoders.series.options.linear_baseline on {short}: 3 training windows "
        "(look-back 32, horizon 8) are too few to fit a linear baseline: its alpha is chosen on the last fifth of them "
        "and fitted on the windows whose future ends before that, which leaves 0; give more training rows or a "
        "shorter look-back (or set linear_baseline: false to train without it)")
    samples = list(TimeSeriesReader(wave_csv(tmp_path / "w.csv", rows=100), lookback=32, horizon=8))  # 61 windows
    with pytest.raises(LinearBaselineError, match="the ridge fit with alpha 0 on 33 windows of 32 steps is singular"):
        fit_linear_baseline(samples[:50], alphas=(0.0,))  # 10 held out, 33 fitted: fewer than the look-back
    with pytest.raises(ValueError, match="linear_baseline needs linear_lookback >= max"):
        WaveNetConfig(linear_baseline=True)
    with pytest.raises(ValueError, match="linear_baseline 'auto' is resolved from the training windows by `modrwkv train`"):
        WaveNetConfig(linear_baseline="auto")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="linear_baseline must be true or false, or 'auto' in a training config, got 'yes'"):
        WaveNetConfig(linear_baseline="yes")  # type: ignore[arg-type]
    encoder = WaveNetSeriesEncoder(WaveNetConfig(linear_baseline=True, linear_lookback=32, linear_horizon=8))
    with pytest.raises(ValueError, match="series has 40 steps, but the linear baseline .* reads exactly 32"):
        encoder.prepare(np.arange(40.0))


def test_series_cpu_yaml_as_shipped_fits_the_ridge_on_a_seasonal_file_and_still_trains_a_short_one(tmp_path,
                                                                                                    capsys) -> None:
    """The generic config (`season: auto`, `drift: true`, `linear_baseline: auto`), its look-back 96
    and horizon 24 untouched: on 600 rows of a period-12 wave it detects 12 and fits the ridge that
    scikit-learn fits on bench/forecasting.py's windows; on a 200-row file (140 training rows: 21
    windows, too few for the ridge) it trains without the ridge and says why, where an explicit
    `linear_baseline: true` stops with an error (the previous test)."""
    pytest.importorskip("sklearn")
    from modrwkv.cli import main
    from modrwkv.multimodal import ModRWKV

    tiny = ["--train.max_steps", "1", "--train.warmup_steps", "1", "--model.lm.config", "{n_layer: 1, n_embd: 64}"]
    seasonal, short = wave_csv(tmp_path / "seasonal.csv", rows=600), wave_csv(tmp_path / "short.csv", rows=200)
    for path in (seasonal, short):
        assert main(["train", "configs/series-cpu.yaml", "--data.train", f"[{path}]", *tiny,
                     "--output.dir", str(tmp_path / path.stem)]) == 0
    out = capsys.readouterr().out
    saved = {path.stem: json.loads((tmp_path / path.stem / "final" / "encoders" / "series" / "encoder.json").read_text())
             ["config"] for path in (seasonal, short)}
    assert (saved["seasonal"]["season"], saved["seasonal"]["drift"], saved["seasonal"]["linear_baseline"]) == (12, True, True)
    expected = sklearn_ridge_on_bench_windows(seasonal, 96, 24, 12)[0]
    fitted = ModRWKV.from_pretrained(tmp_path / "seasonal" / "final").encoders["series"].linear()
    np.testing.assert_allclose(fitted.weight, expected.coef_.T, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(fitted.bias, expected.intercept_, rtol=1e-6, atol=1e-9)
    assert f"linear_baseline auto ({seasonal}): a linear baseline is fitted" in out
    assert saved["short"]["linear_baseline"] is False and saved["short"]["linear_lookback"] == 0
    assert (f"linear_baseline auto ({short}): training without a linear baseline: 21 training windows (look-back 96, "
            "horizon 24) are too few to fit a linear baseline") in out
    assert main(["train", "configs/series-cpu.yaml", "--estimate-memory"]) == 0  # sized without reading data


def test_a_multivariate_linear_baseline_is_the_fit_on_each_channel_as_its_own_series(tmp_path) -> None:
    """A multivariate window is one regression row per channel, each channel its own series (its
    own held-out tail): the same fit as reading the columns as separate univariate series."""
    from modrwkv.data.linear_baseline import fit_linear_baseline
    from modrwkv.data.readers.series import TimeSeriesReader

    t = np.arange(300)
    rng = np.random.default_rng(0)
    path = tmp_path / "two.csv"
    path.write_text("a,b\n" + "".join(f"{np.sin(i / 2):.4f},{np.cos(i / 3) + rng.normal(0, 0.1):.4f}\n" for i in t))
    both = fit_linear_baseline(list(TimeSeriesReader(path, lookback=16, horizon=4, multivariate=True)), 6, True)
    apart = fit_linear_baseline(list(TimeSeriesReader(path, lookback=16, horizon=4)), 6, True)
    assert (both.windows, both.held_out, both.alpha) == (apart.windows, apart.held_out, apart.alpha)
    np.testing.assert_allclose(both.baseline.weight, apart.baseline.weight, atol=1e-9)
    np.testing.assert_allclose(list(both.held_out_mse.values()), list(apart.held_out_mse.values()), rtol=1e-9)


def test_refitting_a_loaded_linear_baseline_on_data_of_another_shape_is_a_config_error(tmp_path) -> None:
    """A stage 2 from a stage-1 folder (model.init_from) refits the baseline on its data; data cut
    with another look-back than the folder's model reads is one clear line, not a traceback."""
    from modrwkv.encoders.series import WaveNetConfig, WaveNetSeriesEncoder
    from modrwkv.training.config import ConfigError, DataConfig
    from modrwkv.training.data import fit_series_baseline

    path = wave_csv(tmp_path / "wave.csv")
    encoder = WaveNetSeriesEncoder(WaveNetConfig(linear_baseline=True, linear_lookback=32, linear_horizon=8))
    data = DataConfig(format="series", train=[str(path)], options={"lookback": 24, "horizon": 8})
    with pytest.raises(ConfigError, match="reads a look-back of 32 and forecasts 8 steps .* but data.options has "
                                          "lookback 24 and horizon 8; train with lookback 32 and horizon 8"):
        fit_series_baseline(data, encoder)
    assert "ridge regression on" in fit_series_baseline(dataclasses.replace(data, options={"lookback": 32, "horizon": 8}), encoder)
    assert encoder.linear_weight.abs().sum() > 0


def test_a_linear_baseline_forecaster_cast_to_bf16_still_forecasts() -> None:
    """`.to(torch.bfloat16)` (a user's cast, or an all-bf16 device run) casts the float64 buffers
    too; the baseline is still read (numpy has no bfloat16) and is the bf16-rounded fit."""
    from modrwkv.data.readers.series import LinearBaseline
    from modrwkv.encoders.series import WaveNetConfig, WaveNetSeriesEncoder

    encoder = WaveNetSeriesEncoder(WaveNetConfig(linear_baseline=True, linear_lookback=4, linear_horizon=2))
    weight = np.arange(8.0).reshape(4, 2) / 3
    encoder.set_linear_baseline(LinearBaseline(weight, np.array([0.5, -1.0])))
    encoder.to(torch.bfloat16)
    baseline = encoder.linear()
    assert baseline.weight.dtype == np.float64
    np.testing.assert_allclose(baseline.weight, weight, rtol=2**-8)
    np.testing.assert_allclose(baseline(np.ones((4, 1)), 2)[:, 0], weight.sum(axis=0) + [0.5, -1.0], rtol=2**-7)


def test_training_passes_the_encoders_season_to_the_reader() -> None:
    from modrwkv.encoders.series import WaveNetConfig, WaveNetSeriesEncoder
    from modrwkv.training.config import ConfigError, DataConfig
    from modrwkv.training.data import series_target_options

    encoder = WaveNetSeriesEncoder(WaveNetConfig(season=48, drift=True))
    data = DataConfig(format="series", train=["x.csv"], options={"lookback": 96, "horizon": 24})
    assert series_target_options(data, encoder).options == {"lookback": 96, "horizon": 24, "season": 48, "drift": True}
    assert series_target_options(data, WaveNetSeriesEncoder(WaveNetConfig())) is data
    with pytest.raises(ConfigError, match="data.options.season is 24 but the series encoder's season is 48"):
        series_target_options(DataConfig(format="series", train=["x.csv"], options={"season": 24}), encoder)
    linear = WaveNetSeriesEncoder(WaveNetConfig(linear_baseline=True, linear_lookback=96, linear_horizon=24))
    options = series_target_options(data, linear).options
    assert options["linear_baseline"].weight.shape == (96, 24) and "season" in options
    with pytest.raises(ConfigError, match="data.options.linear_baseline is not a reader option"):
        series_target_options(DataConfig(format="series", train=["x.csv"], options={"linear_baseline": True}), linear)


def test_sampled_forecast_is_the_median_of_its_replies_and_reproducible() -> None:
    pipe = tiny_pipeline()
    x = series(4).astype(np.float64)
    sampled = pipe.forecast(x, 6, samples=3)
    replies = sampled.text.split("\n\n")
    assert len(replies) == 3 and sampled.complete
    each = [parse_forecast(r, 6) * np.sqrt(x.var() + 1e-5) + x.mean() for r in replies]
    np.testing.assert_allclose(sampled.values, np.median(each, axis=0), rtol=1e-5)
    again = pipe.forecast_batch([x, x[:30]], 6, samples=3)
    assert again[0].text == sampled.text  # seeded: the same replies, alone or in a batch
    with pytest.raises(ValueError, match="samples"):
        pipe.forecast(x, 6, samples=0)


def test_a_trained_forecaster_reads_its_own_look_back_and_refuses_a_shorter_one(tmp_path, capsys) -> None:
    """Training records the look-back with the model; a longer series is read as its last
    `lookback` steps (what training showed), a shorter one is an error naming both lengths, in
    Python and in `modrwkv eval` (docs/forecasting.md measures what a shorter one costs)."""
    import json

    from modrwkv.cli import main
    from modrwkv.inference import ModRWKVPipeline

    values = np.sin(np.arange(400) / 6.0) + 0.01 * np.arange(400)
    csv = tmp_path / "wave.csv"
    csv.write_text("value\n" + "".join(f"{v:.5f}\n" for v in values))
    run = tmp_path / "run"
    assert main(["train", "configs/series-cpu.yaml", "--data.train", f"[{csv}]", "--data.options.lookback", "32",
                 "--data.options.horizon", "8", "--train.max_steps", "1", "--train.warmup_steps", "1",
                 "--model.lm.config", "{n_layer: 1, n_embd: 64}", "--output.dir", str(run)]) == 0
    saved = json.loads((run / "final" / "config.json").read_text())
    assert (saved["series_lookback"], saved["series_horizon"]) == (32, 8)
    assert saved["series_prompt"] == "Predict the next {horizon} values of this series."  # the reader's default
    pipe = ModRWKVPipeline.from_pretrained(run / "final")
    assert pipe.model.series_lookback == 32
    whole, last = pipe.forecast(values[:100], 8), pipe.forecast(values[68:100], 8)
    assert whole.text == last.text and whole.values.tolist() == last.values.tolist()
    with pytest.raises(ValueError) as caught:
        pipe.forecast(values[:20], 8)
    assert str(caught.value) == ("the series has 20 steps but this model was trained to forecast from a look-back of "
                                 "32: give at least the last 32 steps")
    assert main(["eval", "--task", "custom-series", "--data", str(csv), "--model", str(run / "final"), "--lookback",
                 "16", "--horizon", "8", "--limit", "2", "--output", str(tmp_path / "eval"), "--no-progress"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "modrwkv eval: error: --lookback 16, but the model was trained to forecast from 32 steps: evaluate with "
        "--lookback 32")


def test_forecasting_bench_names_a_missing_package_before_any_work(tmp_path, monkeypatch, capsys) -> None:
    """`bench/forecasting.py report --plot` without matplotlib used to compute the whole report and
    then die in a traceback at the plot; each command now checks what it imports first and stops
    with one line naming the package and the extra that installs it."""
    import importlib.util

    bench = load_bench()
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real_find_spec(name, *a))
    with pytest.raises(SystemExit) as stopped:  # the eval folder does not exist: nothing was read
        bench.main(["report", "--eval", str(tmp_path / "no-run"), "--period", "52", "--plot", str(tmp_path / "p.png")])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert error.endswith("error: plot needs matplotlib, which is not installed: pip install -e '.[forecast-demo]'\n")
    assert error.count("\n") == 1  # one line: no usage text, since the command line was right
    assert bench.missing_packages("plot") is not None and not (tmp_path / "p.png").exists()


def test_forecasting_bench_refuses_a_partial_eval_run_naming_its_limit(tmp_path, capsys) -> None:
    """`baselines --eval RUN` with a run made with --limit used to raise a ValueError traceback that
    guessed "another lookback?"; it now stops with one line giving the run's limit and look-back."""
    pytest.importorskip("sklearn")
    bench = load_bench()
    path = tmp_path / "cycle.csv"
    path.write_text("v\n" + "1\n3\n2\n0\n" * 60)
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"split": "test", "limit": 3}))
    (run / "run.json").write_text(json.dumps({"task_options": {"lookback": 8, "horizon": 2, "samples": 1}}))
    (run / "predictions.jsonl").write_text("".join(json.dumps({"forecast": [0.0, 0.0]}) + "\n" for _ in range(3)))
    test_windows = len(bench.split_windows(path, "test", 8, 2)[1])
    with pytest.raises(SystemExit, match=rf"run: 3 test windows, this table has {test_windows}; --eval needs a run "
                                         r"over every window of this look-back \(the run: --limit 3, --lookback 8; "
                                         r"this table: --lookback 8\)"):
        bench.baselines(path, 8, 2, 4, [run])


def test_a_custom_series_prompt_is_saved_and_asked_by_forecast_and_eval(tmp_path, capsys, monkeypatch) -> None:
    """Training with data.options.prompt records the template with the model (`series_prompt`);
    `pipe.forecast` and `modrwkv eval --task custom-series` ask with it: the user turn the model
    encodes is the training reader's own sample's for the same window. A per-call prompt still
    wins, a folder without the record is asked the default, and a bad record is a CheckpointError."""
    import json

    from modrwkv.cli import main
    from modrwkv.data.readers import TimeSeriesReader
    from modrwkv.inference import ModRWKVPipeline
    from modrwkv.lm.errors import CheckpointError
    from modrwkv.multimodal import ModRWKV

    values = np.sin(np.arange(200) / 5.0) + 0.02 * np.arange(200)
    csv = tmp_path / "wave.csv"
    csv.write_text("value\n" + "".join(f"{v:.5f}\n" for v in values))
    template = "Forecast {horizon} steps of {channels} series, please."
    run = tmp_path / "run"
    assert main(["train", "configs/series-cpu.yaml", "--data.train", f"[{csv}]", "--data.options.lookback", "32",
                 "--data.options.horizon", "8", "--data.options.prompt", template, "--train.max_steps", "2",
                 "--train.batch_size", "8", "--train.micro_batch_size", "8", "--train.warmup_steps", "1",
                 "--model.lm.config", "{n_layer: 1, n_embd: 64}", "--output.dir", str(run),
                 "--train.baseline_fallback", "false"]) == 0  # decoded: the prompt is what is tested
    assert json.loads((run / "final" / "config.json").read_text())["series_prompt"] == template

    asked: list = []  # the user turn of every prompt the model encodes
    encode = ModRWKVPipeline.encode
    monkeypatch.setattr(ModRWKVPipeline, "encode", lambda self, messages, **media: (
        asked.append(messages), encode(self, messages, **media))[1])

    trained = TimeSeriesReader(csv, lookback=32, horizon=8, prompt=template)
    first = next(iter(trained))
    assert first.messages[0].content == "<series>\nForecast 8 steps of 1 series, please."
    pipe = ModRWKVPipeline.from_pretrained(run / "final")
    assert pipe.model.series_prompt == template
    forecast = pipe.forecast(first.series[0], 8)
    assert asked == [first.messages[0].content] and forecast.prompt == first.messages[0].content
    assert pipe.forecast(first.series[0], 8, prompt="Next {horizon}?").prompt == "<series>\nNext 8?"
    with pytest.raises(ValueError, match=r"prompt: 'Next \{steps\}' uses \{steps\}; a series prompt may use only"):
        pipe.forecast(first.series[0], 8, prompt="Next {steps}")

    asked.clear()
    assert main(["eval", "--task", "custom-series", "--data", str(csv), "--model", str(run / "final"), "--lookback",
                 "32", "--horizon", "8", "--limit", "3", "--output", str(tmp_path / "eval"), "--no-progress"]) == 0
    test_windows = list(TimeSeriesReader(csv, lookback=32, horizon=8, prompt=template, split="test",
                                         standardize=True))[:3]
    expected = [s.messages[0].content for s in test_windows]
    records = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in records] == expected and asked == expected
    assert [r["reference"]["start"] for r in records] == [s.meta["start"] for s in test_windows]

    # save / load round trip, and a folder saved before the record: the reader's default
    ModRWKV.from_pretrained(run / "final").save_pretrained(tmp_path / "copy")
    assert ModRWKV.from_pretrained(tmp_path / "copy").series_prompt == template
    config = json.loads((tmp_path / "copy" / "config.json").read_text())
    del config["series_prompt"]
    (tmp_path / "copy" / "config.json").write_text(json.dumps(config))
    assert ModRWKVPipeline.from_pretrained(tmp_path / "copy").forecast(first.series[0], 8).prompt == \
        next(iter(TimeSeriesReader(csv, lookback=32, horizon=8))).messages[0].content

    # --series-prompt asks with the template given: the old folder with the one it was trained with, the
    # new one with another; --task custom on the .csv takes it too
    def eval_prompts(folder, output, *options):
        asked.clear()
        assert main(["eval", "--task", *options, "--data", str(csv), "--model", str(folder), "--lookback", "32",
                     "--horizon", "8", "--limit", "3", "--output", str(tmp_path / output), "--no-progress"]) == 0
        records = [json.loads(line) for line in (tmp_path / output / "predictions.jsonl").read_text().splitlines()]
        assert [r["prompt"] for r in records] == asked
        return asked[:]

    def reader_turns(prompt):
        windows = TimeSeriesReader(csv, lookback=32, horizon=8, prompt=prompt, split="test", standardize=True)
        return [s.messages[0].content for s in list(windows)[:3]]

    other = "Next {horizon} values of {channels} series?"
    assert eval_prompts(tmp_path / "copy", "old", "custom-series", "--series-prompt", template) == expected
    assert eval_prompts(run / "final", "other", "custom", "--series-prompt", other) == reader_turns(other)
    assert reader_turns(other)[0] == "<series>\nNext 8 values of 1 series?"
    for bad, problem in (("Next {steps}", "'Next {steps}' uses {steps}; a series prompt may use only {horizon} and "
                                          "{channels} (write {{ and }} for literal braces)"),
                         ("Next {horizon", "'Next {horizon' is not a valid template (expected '}' before end of "
                                           "string; write {{ and }} for literal braces)")):
        assert main(["eval", "--task", "custom-series", "--data", str(csv), "--model", str(run / "final"),
                     "--series-prompt", bad, "--output", str(tmp_path / "bad-eval")]) == 2
        assert f"modrwkv eval: error: --series-prompt: {problem}" in capsys.readouterr().err
    assert main(["eval", "--task", "gqa", "--data", str(csv), "--model", str(run / "final"),
                 "--series-prompt", other]) == 2
    assert "--series-prompt: gqa takes no such option (forecasting tasks do)" in capsys.readouterr().err
    for bad, problem in (("Next {steps} values.", "'Next {steps} values.' uses {steps}; a series prompt may use only "
                                                  "{horizon} and {channels} (write {{ and }} for literal braces)"),
                         ("Next {horizon values.", "'Next {horizon values.' is not a valid template (expected '}' "
                                                   "before end of string; write {{ and }} for literal braces)")):
        (tmp_path / "copy" / "config.json").write_text(json.dumps({**config, "series_prompt": bad}))
        with pytest.raises(CheckpointError) as caught:
            ModRWKV.from_pretrained(tmp_path / "copy")
        assert str(caught.value) == (f"{tmp_path / 'copy' / 'config.json'}: 'series_prompt' (the template training "
                                     f"asked for forecasts with): {problem}")
    (tmp_path / "copy" / "config.json").write_text(json.dumps({**config, "series_prompt": 5}))
    with pytest.raises(CheckpointError, match="'series_prompt' must be a string or null, got 5"):
        ModRWKV.from_pretrained(tmp_path / "copy")
    with pytest.raises(ValueError, match=r"prompt: 'Next \{0\}' uses \{0\}"):
        TimeSeriesReader(csv, lookback=32, horizon=8, prompt="Next {0}")
    # samples given to train() bypass the reader; the template is still checked before it is recorded
    from modrwkv.training import ConfigError, load_config, train

    config = load_config("configs/series-cpu.yaml", ["--data.options.lookback=32", "--data.options.horizon=8",
                                                     "--data.options.prompt=Next {steps}", f"--data.train=[{csv}]",
                                                     "--model.lm.config={n_layer: 1, n_embd: 64}",
                                                     f"--output.dir={tmp_path / 'bad'}",
                                                     # samples given: nothing to detect a season or fit a ridge on
                                                     "--model.encoders.series.options.season=0",
                                                     "--model.encoders.series.options.drift=false",
                                                     "--model.encoders.series.options.linear_baseline=false"])
    with pytest.raises(ConfigError, match=r"^data.options.prompt: 'Next \{steps\}' uses \{steps\}"):
        train(config, samples=[first])


def test_series_validation_scores_what_eval_scores_on_the_val_rows(tmp_path, capsys) -> None:
    """`configs/series-cpu.yaml` validates on the training file's val rows with the forecast MSE of the
    `custom-series` eval task: best/'s recorded value is what `modrwkv eval --split val` gives for best/,
    and a reply of zeros scores what the encoder's baseline alone forecasts."""
    pytest.importorskip("sklearn")
    from modrwkv.cli import main
    from modrwkv.inference import ModRWKVPipeline

    path, run = wave_csv(tmp_path / "wave.csv"), tmp_path / "run"
    assert main(["train", "configs/series-cpu.yaml", "--data.train", f"[{path}]", "--data.options.lookback", "32",
                 "--data.options.horizon", "8", "--train.max_steps", "4", "--train.warmup_steps", "1",
                 "--train.val_every", "2", "--model.lm.config", "{n_layer: 1, n_embd: 64}",
                 "--model.encoders.series.options.season", "12", "--output.dir", str(run)]) == 0
    out = capsys.readouterr().out
    assert re.findall(r"validation at step (\d)/4", out) == ["0", "2", "4"]
    record = json.loads((run / "best" / "validation.json").read_text())
    assert json.loads((run / "final" / "validation.json").read_text()) == record  # output.final: best
    assert main(["eval", "--task", "custom-series", "--data", str(path), "--model", str(run / "best"), "--lookback",
                 "32", "--horizon", "8", "--split", "val", "--output", str(tmp_path / "eval"), "--no-progress",
                 "--force-model"]) == 0  # decoded: 4 steps do not beat the baseline, which best/ then ships alone
    report = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert record["val_forecast_mse"] == pytest.approx(report["metrics"]["mse"], rel=1e-6)
    # a reply of zeros: the encoder's baseline, added to nothing
    pipe = ModRWKVPipeline.from_pretrained(run / "best")
    encoder = pipe.model.encoders["series"]
    windows, targets = load_bench().split_windows(path, "val", 32, 8)[:2]
    zeros = np.stack([encoder.denormalize(torch.zeros(8, 1, dtype=torch.float64), encoder.prepare(w).extras)[:, 0]
                      for w in windows])
    expected = float(np.mean((zeros - np.asarray(targets)) ** 2))
    assert f"a reply of zeros (the series encoder's baseline alone) scores val_forecast_mse {expected:.4f}" in out
