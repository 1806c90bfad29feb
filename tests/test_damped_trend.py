"""The damped trend among a forecaster's linear baselines (`modrwkv.data.linear_baseline`): its forecast against
statsmodels' Holt, its grid search against a brute-force one, the choice against the ridge on series each kind
fits, and the fixed-horizon protocol's MASE-scaled errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from modrwkv.data.linear_baseline import (
    DAMPED_TREND_DAMPINGS,
    DAMPED_TREND_LEVELS,
    DAMPED_TREND_SLOPES,
    DampedTrend,
    fit_damped_trend,
    fit_linear_baseline,
    training_windows,
)
from modrwkv.data.readers.series import TimeSeriesReader, forecast_baseline
from modrwkv.training.config import DataConfig
from modrwkv.training.data import fit_training_windows


@pytest.mark.parametrize(("level", "slope", "damping"), [(0.3, 0.2, 0.9), (0.7, 0.5, 0.98), (1.0, 1.0, 0.8)])
def test_the_damped_trend_forecasts_as_statsmodels_holt(level, slope, damping):
    """z @ weight is Holt's damped-trend forecast as statsmodels computes it, started at level z_0 and trend
    z_1 - z_0 (statsmodels' known initial state before z_1)."""
    holt = pytest.importorskip("statsmodels.tsa.holtwinters", reason="statsmodels is a test dependency").Holt
    z = np.random.default_rng(0).normal(size=12).cumsum()
    expected = holt(z[1:], damped_trend=True, initialization_method="known", initial_level=z[0],
                    initial_trend=z[1] - z[0]).fit(smoothing_level=level, smoothing_trend=slope,
                                                   damping_trend=damping, optimized=False).forecast(5)
    np.testing.assert_allclose(z @ DampedTrend(level, slope, damping).weight(12, 5), expected, rtol=1e-12)


def test_the_damped_trend_moves_with_the_window_and_extends_a_line():
    """Its coefficients sum to 1 for each future step (a + b z forecasts a + b forecast(z): no bias needed); with no
    damping and full smoothing it continues a straight line exactly; a look-back of one step has no trend."""
    weight = DampedTrend(0.4, 0.3, 0.9).weight(10, 6)
    np.testing.assert_allclose(weight.sum(axis=0), np.ones(6), rtol=1e-12)
    line = 3.0 + 0.5 * np.arange(10)
    np.testing.assert_allclose(line @ DampedTrend(1.0, 1.0, 1.0).weight(10, 4), 3.0 + 0.5 * np.arange(10, 14))
    with pytest.raises(ValueError, match="at least 2 steps"):
        DampedTrend(0.5, 0.5, 0.9).weight(1, 3)


def test_the_grid_search_from_square_sums_is_the_brute_force_argmin():
    """fit_damped_trend scores each candidate from the rows' square sums; the brute-force weighted MSE (errors x
    units, rows weighted) over the same grid has the same argmin."""
    rng = np.random.default_rng(1)
    z = rng.normal(size=(300, 8)).cumsum(axis=1)
    y = z[:, -1:] + 0.3 * (z[:, -1:] - z[:, -2:-1]) * np.arange(1, 5) + rng.normal(scale=0.2, size=(300, 4))
    units, w = rng.uniform(0.5, 2.0, 300), rng.uniform(0.1, 3.0, 300)
    rows = np.arange(40, 300)
    best = min(((level, slope, damping) for level in DAMPED_TREND_LEVELS for slope in DAMPED_TREND_SLOPES
                for damping in DAMPED_TREND_DAMPINGS),
               key=lambda p: np.sum(w[rows, None] * ((z[rows] @ DampedTrend(*p).weight(8, 4) - y[rows])
                                                     * units[rows, None]) ** 2))
    assert fit_damped_trend(z, y, units, w, rows) == DampedTrend(*best)


def _write(path: Path, columns: dict[str, np.ndarray]) -> Path:
    names = list(columns)
    lines = [",".join(names)] + [",".join(f"{columns[n][i]:.6f}" for n in names) for i in range(len(columns[names[0]]))]
    path.write_text("\n".join(lines) + "\n")
    return path


def _training_samples(path: Path, **options) -> list:
    return list(TimeSeriesReader(path, lookback=24, horizon=6, split="train", standardize=True, **options))


def _trending(tmp_path: Path) -> Path:
    """Three series whose slope wanders (a random walk's integral): the damped trend's."""
    rng = np.random.default_rng(2)
    slopes = rng.normal(size=(3, 600)).cumsum(axis=1) * 0.05
    return _write(tmp_path / "trend.csv", {f"s{i}": (slopes[i].cumsum() + rng.normal(scale=0.1, size=600))
                                           for i in range(3)})


def _oscillating(tmp_path: Path) -> Path:
    """A stationary AR(2) oscillation: the ridge's."""
    rng = np.random.default_rng(3)
    ar = np.zeros(2000)
    for t in range(2, 2000):
        ar[t] = 1.6 * ar[t - 1] - 0.9 * ar[t - 2] + rng.normal()
    return _write(tmp_path / "ar.csv", {"x": ar})


def test_the_damped_trend_is_chosen_for_local_trends_and_the_ridge_for_a_fixed_linear_rule(tmp_path):
    """The choice is each kind's MSE on the training windows' held-out tail. Series whose slope wanders (a random
    walk's integral: each window's recent slope goes on) are the damped trend's; a stationary AR(2) oscillation (a
    fixed linear rule of the last two values, which no trend follows) the ridge's. A forecaster with a season is
    offered no damped trend (it would forecast the series, not what the season leaves)."""
    trending, oscillating = _trending(tmp_path), _oscillating(tmp_path)
    fit = fit_linear_baseline(_training_samples(trending))
    assert fit.damped_trend is not None and fit.alpha is None
    assert fit.damped_trend_mse < min(fit.held_out_mse.values())
    assert fit.explain().startswith(f"damped trend ({fit.damped_trend}) on {fit.windows} training windows, not the "
                                    "ridge (MSE on the last")
    window = np.asarray(_training_samples(trending)[0].series[0], dtype=np.float64)
    z = (window - window.mean()) / window.std()
    np.testing.assert_allclose(fit.baseline(z[:, None], 6)[:, 0], z @ fit.damped_trend.weight(24, 6), rtol=1e-12)

    fit = fit_linear_baseline(_training_samples(oscillating))
    assert fit.damped_trend is None and fit.alpha is not None
    assert fit.damped_trend_mse > fit.held_out_mse[fit.alpha]
    assert fit.explain().endswith(f"; damped trend: {fit.damped_trend_mse:.4f})")

    seasonal = fit_linear_baseline(_training_samples(trending, season=12, drift=True), season=12, drift=True)
    assert (seasonal.damped_trend, seasonal.damped_trend_mse) == (None, None)
    assert "damped" not in seasonal.explain()


def test_mase_weights_are_one_over_each_series_squared_mase_scale(tmp_path):
    """Under the fixed-horizon protocol each series' rows weigh 1 / scale^2, its scale the mean absolute lag-m change
    of the values its windows cover (hand-computed: steps of 1 and of 10 alternating in sign, lag 1; lag 2 makes the
    first series' changes 0 + 2 alternately). A constant series weighs as the median series."""
    n = 60
    columns = {"small": np.cumsum(np.tile([1.0, -1.0, 1.0, 1.0], n // 4)), "big": 10 * np.tile([0.0, 1.0], n // 2),
               "flat": np.full(n, 4.0)}
    path = _write(tmp_path / "three.csv", columns)
    samples = list(TimeSeriesReader(path, lookback=8, horizon=2))  # no split, no standardising: series units = file
    found = training_windows(samples, 0, False)
    assert [len(h) for h in found.histories] == [n, n, n]
    np.testing.assert_array_equal(found.histories[0], columns["small"])
    lag_two = np.mean(np.abs(columns["small"][2:] - columns["small"][:-2]))
    expected = {1: (1 / 1.0**2, 1 / 10.0**2), 2: (1 / lag_two**2, np.nan)}
    for period, (small, big) in expected.items():
        weights = found.mase_weights(lambda file, period=period: period)
        per_series = [weights[run][0] for run in found.runs]
        assert all(np.all(weights[run] == weights[run][0]) for run in found.runs)
        if period == 1:
            np.testing.assert_allclose(per_series, [small, big, np.median([small, big])])
        else:  # lag 2: big's changes are all 0 (no scale), like flat's: both weigh as small, the one series with one
            np.testing.assert_allclose(per_series, [small, small, small])


def test_training_fits_to_mase_under_the_fixed_horizon_protocol(tmp_path):
    """fit_training_windows weighs errors by their series' MASE scale where data.options.holdout is last (the
    protocol's score), of the period its .tsf @frequency gives (monthly: 12), and not with the 70/10/20 windows."""
    rng = np.random.default_rng(3)
    lines = ["@relation demo", "@attribute series_name string", "@frequency monthly", "@horizon 6",
             "@missing false", "@equallength true", "@data"]
    for i in range(4):
        values = 50 + 10 * np.sin(np.arange(120) * 2 * np.pi / 12) + rng.normal(scale=1 + i, size=120).cumsum()
        lines.append(f"T{i}:" + ",".join(f"{v:.4f}" for v in values))
    path = tmp_path / "demo.tsf"
    path.write_text("\n".join(lines) + "\n")
    options = {"lookback": 24, "horizon": 6, "split": "train", "standardize": True}
    last = fit_training_windows(DataConfig(format="series", train=[str(path)], options={**options, "holdout": "last"}),
                                0, False)
    ratio = fit_training_windows(DataConfig(format="series", train=[str(path)], options=options), 0, False)
    assert "over their series' MASE scale" in last.explain() and last.scaled
    assert "MASE" not in ratio.explain() and not ratio.scaled
    samples = list(TimeSeriesReader(path, lookback=24, horizon=6, split="train", holdout="last", standardize=True))
    windows = training_windows(samples, 0, False)
    from modrwkv.evaluation.metrics.series import mase_scale

    by_hand = [1 / mase_scale(history, 12) ** 2 for history in windows.histories]
    np.testing.assert_allclose([windows.mase_weights(lambda file: 12)[run][0] for run in windows.runs], by_hand)
    assert last.baseline(np.zeros((24, 1)), 6).shape == (6, 1)
    assert forecast_baseline(np.zeros(24), 6, 0, False, last.baseline).shape == (6,)


def test_the_model_records_which_linear_baseline_training_fitted(tmp_path, capsys):
    """Training's fit (fit_series_baseline) records its kind and parameters in the encoder's config, saved in
    config.json: the damped trend's three numbers rebuild the weights the encoder forecasts with, the ridge's alpha is
    the one the fit chose. `modrwkv forecast` and `modrwkv eval` of a model shipping its baseline alone name it."""
    from conftest import make_model
    from test_pipeline import LM

    from modrwkv.cli import main
    from modrwkv.encoders import build_encoder
    from modrwkv.lm.checkpoint import CheckpointError
    from modrwkv.multimodal import ModRWKV
    from modrwkv.training.data import fit_series_baseline

    for path in (_trending(tmp_path), _oscillating(tmp_path)):
        encoder = build_encoder("wavenet", layers=2, output_dim=24, linear_baseline=True, linear_lookback=24,
                                linear_horizon=6)
        data = DataConfig(format="series", train=[str(path)],
                          options={"lookback": 24, "horizon": 6, "split": "train", "standardize": True})
        note = fit_series_baseline(data, encoder)
        expected = fit_linear_baseline(_training_samples(path))  # the same windows, fitted apart
        if expected.damped_trend is not None:
            trend = expected.damped_trend
            assert encoder.config.linear_fit == {"kind": "damped_trend", "level": trend.level, "slope": trend.slope,
                                                 "damping": trend.damping}
            recorded = DampedTrend(**{k: v for k, v in encoder.config.linear_fit.items() if k != "kind"})
            np.testing.assert_allclose(encoder.linear().weight, recorded.weight(24, 6), rtol=1e-12)
            named = f"damped trend (level {trend.level:g}, trend {trend.slope:g}, damping {trend.damping:g})"
        else:
            assert encoder.config.linear_fit == {"kind": "ridge", "alpha": expected.alpha}
            np.testing.assert_allclose(encoder.linear().weight, expected.baseline.weight, rtol=1e-9)
            assert f"alpha {expected.alpha:g}" in note
            named = f"ridge regression (alpha {expected.alpha:g})"
        model = ModRWKV.build(make_model(LM, seed=1), {"series": encoder}, series_lookback=24, series_horizon=6,
                              series_baseline_only=True)
        folder = tmp_path / f"model-{path.stem}"
        model.eval().save_pretrained(folder)
        config = json.loads((folder / "config.json").read_text())
        assert config["encoders"]["series"]["config"]["linear_fit"] == encoder.config.linear_fit
        assert ModRWKV.from_pretrained(folder).encoders["series"].config.linear_fit == encoder.config.linear_fit
        assert main(["forecast", "--model", str(folder), "--data", str(path)]) == 0
        assert f"; the model's baseline alone, {named}, not decoded (series_baseline_only)" in capsys.readouterr().err
        assert main(["eval", "--task", "custom-series", "--data", str(path), "--model", str(folder), "--lookback",
                     "24", "--horizon", "6", "--limit", "4", "--output", str(tmp_path / f"eval-{path.stem}"),
                     "--no-progress"]) == 0
        assert f"; forecasts: the baseline alone, {named}, not decoded (--force-model decodes)" \
            in capsys.readouterr().out
        summary = json.loads((tmp_path / f"eval-{path.stem}" / "summary.json").read_text())
        assert summary["metrics"]["baseline"] == named

    saved = json.loads((folder / "encoders" / "series" / "encoder.json").read_text())  # what the encoder is built from
    saved["config"]["linear_fit"] = {"kind": "holt", "alpha": 1}
    (folder / "encoders" / "series" / "encoder.json").write_text(json.dumps(saved))
    with pytest.raises(CheckpointError, match=r"encoders/series/encoder.json: wavenet linear_fit \(the linear baseline "
                                              r"training fitted\) must be an object whose kind is 'ridge' or "
                                              "'damped_trend', got"):
        ModRWKV.from_pretrained(folder)
    with pytest.raises(ValueError, match="linear_fit .* needs linear_baseline true"):
        build_encoder("wavenet", linear_fit={"kind": "ridge", "alpha": 1.0})


def test_a_training_config_does_not_give_the_recorded_fit(tmp_path):
    """linear_fit is what training fitted: a config giving one is refused, naming the option."""
    from modrwkv.training.config import ConfigError, EncoderSpec, ModelConfig, TrainConfig
    from modrwkv.training.data import size_linear_baseline

    series = EncoderSpec(name="wavenet", options={"linear_baseline": True,
                                                  "linear_fit": {"kind": "ridge", "alpha": 1.0}})
    config = TrainConfig(model=ModelConfig(encoders={"series": series}),
                         data=DataConfig(format="series", train=[str(_oscillating(tmp_path))],
                                         options={"lookback": 24, "horizon": 6}))
    with pytest.raises(ConfigError, match="model.encoders.series.options.linear_fit is recorded by training"):
        size_linear_baseline(config)
