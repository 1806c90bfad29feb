"""`season: auto`: the seasonal period detected on the training rows (modrwkv.data.seasonality), on
hand-built series with known periods and on real series shipped inside statsmodels / pmdarima."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from modrwkv.data.seasonality import detect_season

REPO = Path(__file__).resolve().parents[1]
STEPS = np.arange(3000)


def noisy(signal: np.ndarray, scale: float, seed: int = 0) -> np.ndarray:
    return signal + np.random.default_rng(seed).normal(scale=scale, size=len(signal))


def test_known_periods_through_noise_trend_and_gaps() -> None:
    daily = np.sin(2 * np.pi * STEPS / 48)
    # a smooth season, noise of half its amplitude and a trend ten times its amplitude over the series
    trended = noisy(daily + STEPS / 300, 0.5)
    assert detect_season(trended, 200).period == 48
    # a flat-topped weekly pattern (5 high days, 2 low) in days, with gaps
    week = noisy(np.where(STEPS % 7 < 5, 1.0, -1.0), 0.3, seed=1)
    week[::13] = np.nan
    choice = detect_season(week, 60)
    assert choice.period == 7 and choice.strength > 0.8
    assert "season 7: autocorrelation" in choice.explain()
    # the search range is respected: a period beyond max_period cannot be found
    assert detect_season(trended, 40).period == 0


def test_constant_and_straight_line_series_are_left_out() -> None:
    """A straight line detrends to rounding error (a time-index column, standardised: a float ramp),
    whose autocorrelation has its own pattern: it gave a "season 13" of correlation 0.76; pooled as
    0, a constant column (a stuck sensor) halved a real season's correlation, and three hid it. Both
    are left out, and named."""
    ramp = np.linspace(0.0, 1.0, 500)
    choice = detect_season(ramp, 95)
    assert choice.period == 0 and choice.flat == 1
    assert choice.explain() == ("no season: the training series is constant or a straight line (nothing varies "
                                "beyond the trend)")
    assert "2 training series are constant" in detect_season([ramp, np.full(500, 3.0)], 95).explain()
    seasonal = noisy(np.sin(2 * np.pi * STEPS[:500] / 12), 1.0)
    alone = detect_season(seasonal, 95)
    assert alone.period == 12
    for others in ([np.zeros(500)], [np.ones(500)] * 3, [1e6 + 0.37 * STEPS[:500]]):
        pooled = detect_season([seasonal, *others], 95)
        assert (pooled.period, pooled.strength, pooled.bound, pooled.flat) == (12, alone.strength, alone.bound,
                                                                               len(others))
        assert pooled.explain().endswith("constant or a straight line (nothing varies beyond the trend), left out)")


def test_two_seasons_pick_the_lag_whose_copy_predicts_best() -> None:
    """A day (48) and a week (336): when weekends differ clearly, the week-ago copy is the better
    seasonal-naive forecast (higher autocorrelation) and is picked; when the weekly part is slight,
    the day is within the tolerance of the week and, being shorter, is picked."""
    day = np.sin(2 * np.pi * STEPS / 48)
    weekend = np.where((STEPS // 48) % 7 >= 5, -1.0, 0.0)
    strong = detect_season(noisy(day + weekend, 0.3), 700)
    assert strong.period == 336
    assert dict(strong.candidates)[48] < strong.strength - 0.1  # the day's peak is there, and lower
    slight = detect_season(noisy(day + 0.2 * weekend, 0.3), 700)
    assert slight.period == 48 and "shorter" in slight.explain()


@pytest.mark.parametrize("noise, expected", [(0.1, 48), (0.7, 12)])
def test_a_multiple_wins_only_when_it_halves_the_seasonal_naive_error(noise: float, expected: int) -> None:
    """sin(12) + 0.5 sin(48) + noise of variance s2 repeats every 48 steps. Analytically
    corr(12) = 0.5 / (0.625 + s2) (the slow part is a quarter cycle off) and corr(48) =
    0.625 / (0.625 + s2), so 1 - corr(48) is s2 / (0.125 + s2) of 1 - corr(12): with little noise
    (s2 0.01) 48 cuts the error 13-fold and is the season; with much (s2 0.49) it cuts it by a
    fifth only, and the year-like 12 is kept."""
    steps = np.arange(3000)
    series = noisy(np.sin(2 * np.pi * steps / 12) + 0.5 * np.sin(2 * np.pi * steps / 48), noise, seed=3)
    choice = detect_season(series, 100)
    assert choice.period == expected
    s2 = noise**2
    assert choice.strength == pytest.approx((0.625 if expected == 48 else 0.5) / (0.625 + s2), abs=0.03)
    if expected == 12:
        assert "not 2 times smaller" in choice.explain()


def test_too_short_to_search_says_so() -> None:
    """A period of 2 needs 5 x 2 rows (3 cycles and 2 for the trend); a search capped by the rows says where."""
    short = detect_season(np.sin(np.arange(9.0) * np.pi), 8)
    assert short.period == 0 and short.too_short
    assert short.explain().startswith("too few rows to detect a season: the longest training series has 9 steps")
    assert "at least 10 steps" in short.explain()
    capped = detect_season(noisy(np.sin(2 * np.pi * np.arange(100) / 4), 0.1), 96)
    assert capped.period == 4 and capped.search == (2, 20) and not capped.too_short
    assert "lags above 20 not searched: a period must fit 5 times into the 100 training rows" in capped.explain()
    assert detect_season(np.zeros(100), 1).explain() == "no period can be searched: the longest allowed, 1, is below 2"


@pytest.mark.parametrize("kind", ["white noise", "random walk", "ar1"])
def test_no_season_gives_none(kind: str) -> None:
    shocks = np.random.default_rng(2).normal(size=3000)
    series = {"white noise": shocks, "random walk": np.cumsum(shocks)}.get(kind)
    if series is None:  # AR(1), phi 0.95: a slowly decaying autocorrelation, no peak
        series = np.zeros(3000)
        for t in range(1, 3000):
            series[t] = 0.95 * series[t - 1] + shocks[t]
    choice = detect_season(series, 200)
    assert choice.period == 0 and choice.explain().startswith("no clear season")


def load_bench():
    """bench/seasonality.py, whose null series and training-rows cut the tests share."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_seasonality", REPO / "bench" / "seasonality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_short_persistent_series_without_a_season_get_none() -> None:
    """bench/seasonality.py's null families, 50 files of 500 rows each (350 training rows, search
    2-70 with a 96-step look-back), the bench's seeds: strength and prominence alone (the rule
    before the significance test) give a season to 17 of them (AR(1) 0.5 to 0.99, random walks
    with and without drift, ARIMA(1,1,0): slow swings that correlate at some lag by chance); the
    significance bound gives none."""
    bench = load_bench()
    found, before = {}, 0
    for index, (family, generate) in enumerate(bench.NULLS.items()):
        for seed in range(50):
            rows = bench.training_rows(generate(np.random.default_rng([index, 500, 96, seed]), 500), 96)
            choice = detect_season(rows, 95)
            if choice.period:
                found[f"{family} {seed}"] = choice.explain()
            before += detect_season(rows, 95, significance=None).period > 0
    assert found == {}
    assert before == 17


def test_a_peak_chance_explains_is_named_with_its_bound() -> None:
    """A random walk's 210 training rows (a 300-row file): a strong, prominent peak at 26 (0.48)
    that a series this short and persistent reaches by chance; the note names the peak and the bound."""
    bench = load_bench()
    rows = bench.training_rows(bench.NULLS["random walk"](np.random.default_rng([4, 300, 96, 53]), 300), 96)
    assert detect_season(rows, 95, significance=None).period == 26
    choice = detect_season(rows, 95)
    assert choice.period == 0 and choice.candidates == () and [lag for lag, _, _ in choice.rejected] == [26]
    (_, corr, bound), = choice.rejected
    assert 0.45 < corr < 0.5 < bound
    assert choice.explain().startswith(
        "no clear season: the strong, prominent autocorrelation peaks of the detrended training rows over lags 2-42 "
        f"stay below what chance alone reaches in a series this short and persistent (26: {corr:.2f} < {bound:.2f}; "
        "lags above 42 not searched")


@pytest.mark.parametrize("rows, period", [(300, 7), (300, 12), (1000, 24)])
def test_a_sine_as_strong_as_the_noise_is_found(rows: int, period: int) -> None:
    """Power: a sine plus noise of the same variance (SNR 1), 20 files each (bench/seasonality.py's
    third table: 98-100 % of 100 there): every one gets exactly the sine's period, above its
    significance bound."""
    bench = load_bench()
    steps = np.arange(rows)
    for seed in range(20):
        rng = np.random.default_rng([7, rows, period, seed])
        values = np.sqrt(2) * np.sin(2 * np.pi * steps / period + rng.uniform(0, 2 * np.pi)) + rng.normal(size=rows)
        choice = detect_season(bench.training_rows(values, 96), 95)
        assert choice.period == period and 0 < choice.bound < choice.strength


def near_copies(common: np.ndarray, noise: float, rng: np.random.Generator, columns: int = 7) -> list[np.ndarray]:
    """The training rows of `columns` columns that move together, as an ETT-style CSV's do: each the
    common series plus its own small noise (`noise` times the common series' spread)."""
    bench = load_bench()
    spread = noise * np.std(common)
    return [bench.training_rows(common + spread * rng.normal(size=len(common)), 96) for _ in range(columns)]


def test_correlated_columns_pooled_count_as_few_series() -> None:
    """Seven near-copies of one AR(1) 0.9 (350 training rows, search 2-70) carry little more than
    one column's evidence: pooled as independent series, the bound shrank by sqrt(7) and 2 of these
    50 got a season (a reviewer's 200: 7.5 %, none with one column); the columns' correlation now
    widens it back. A season the columns share, a sine as strong as their common AR(1) 0.5 noise,
    is still found, its bound close to one column's."""
    bench = load_bench()
    for seed in range(50):
        rng = np.random.default_rng([15, seed])
        choice = detect_season(near_copies(bench.ar1(rng, 500, 0.9), 0.1, rng), 95)
        assert choice.period == 0, (seed, choice.explain())
    steps = np.arange(500)
    for seed in range(20):
        rng = np.random.default_rng([16, seed])
        season = np.sqrt(2) * np.sin(2 * np.pi * steps / 12 + rng.uniform(0, 2 * np.pi))
        columns = near_copies(season + np.sqrt(0.75) * bench.ar1(rng, 500, 0.5), 0.3, rng)
        choice, alone = detect_season(columns, 95), detect_season(columns[:1], 95)
        assert choice.period == 12 and choice.pooled == 7 and 0 < choice.bound < choice.strength
        assert 0.8 * alone.bound < choice.bound < 1.1 * alone.bound, (seed, choice.bound, alone.bound)


def train_rows(values) -> np.ndarray:
    """The training rows of the 70/10/20 layout `season: auto` reads."""
    values = np.asarray(values, dtype=np.float64).ravel()
    return values[: int(0.7 * len(values))]


def test_real_series_periods() -> None:
    """taylor (half-hourly): the week within a two-week look-back, the day within two days; co2
    (weekly): 52 weeks; elnino (monthly sea temperatures, a table of years x months): 12 months,
    also when the search reaches 48 or 84 months, which correlate more on the training rows (a
    slow El Nino cycle lining up) but do not halve the error; sunspots (yearly): the ~11-year
    solar cycle, the search capped by its 216 training rows; nile (yearly river flow): none."""
    sm = pytest.importorskip("statsmodels.api")
    pmdarima = pytest.importorskip("pmdarima.datasets")
    taylor = train_rows(pmdarima.load_taylor())
    assert detect_season(taylor, 671).period == 336
    assert detect_season(taylor, 96).period == 48
    co2 = train_rows(sm.datasets.co2.load_pandas().data["co2"])  # 59 empty weeks
    assert detect_season(co2, 96).period == 52
    elnino = train_rows(sm.datasets.elnino.load_pandas().data.iloc[:, 1:].to_numpy())
    assert [detect_season(elnino, longest).period for longest in (36, 47, 95)] == [12, 12, 12]
    sunspots = detect_season(train_rows(sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"]), 95)
    assert sunspots.period == 11 and sunspots.search == (2, 43)
    nile = detect_season(train_rows(sm.datasets.nile.load_pandas().data["volume"]), 30)
    assert nile.period == 0 and nile.explain().startswith("no clear season")
    # every season above stands clear of the significance bound (sunspots, 216 rows, the closest)
    for choice in (detect_season(taylor, 671), detect_season(co2, 96), sunspots):
        assert 0 < choice.bound < choice.strength
    # macrodata: quarterly US series, seasonally adjusted; each column alone and all 12 pooled
    macro = sm.datasets.macrodata.load_pandas().data.drop(columns=["year", "quarter"])
    columns = [train_rows(macro[column]) for column in macro.columns]
    assert [detect_season(column, 95).period for column in columns + [columns]] == [0] * 13
    # pmdarima's monthly wine sales and air passengers (12), quarterly beer (4), lynx trappings (~9-10 years)
    for name, longest, period in (("wineind", 95, 12), ("airpassengers", 23, 12), ("ausbeer", 95, 4),
                                  ("lynx", 23, 9)):
        assert detect_season(train_rows(getattr(pmdarima, f"load_{name}")()), longest).period == period, name


def write_csv(path: Path, values: np.ndarray) -> Path:
    path.write_text("load\n" + "".join(f"{v:.5f}\n" for v in values))
    return path


def test_training_resolves_auto_once_and_saves_the_integer(tmp_path) -> None:
    """`season: auto` is detected on the training rows, the model is built and saved with the integer
    (a loaded model reads 12, never "auto"); no season found drops the drift; no files is an error."""
    from modrwkv.encoders.series import WaveNetConfig
    from modrwkv.multimodal import ModRWKV
    from modrwkv.training import train
    from modrwkv.training.config import ConfigError, config_from_dict
    from modrwkv.training.data import resolve_auto_season

    monthly = write_csv(tmp_path / "monthly.csv", noisy(np.sin(2 * np.pi * np.arange(600) / 12), 0.2))
    cfg = yaml.safe_load((REPO / "configs" / "series-cpu-taylor.yaml").read_text())
    cfg["model"]["lm"]["config"] = {"n_layer": 1, "n_embd": 64}
    cfg["model"]["encoders"]["series"]["options"].update(patch_len=12, layers=2, season="auto")
    cfg["data"].update(train=[str(monthly)], options={**cfg["data"]["options"], "lookback": 48, "horizon": 6})
    cfg["train"].update(max_steps=1, batch_size=2, micro_batch_size=2, warmup_steps=0)
    cfg["output"]["dir"] = str(tmp_path / "run")
    notes: list[str] = []
    train(cfg, progress=notes.append)
    assert notes[0].startswith("season auto") and "season 12: autocorrelation" in notes[0]
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["model"]["encoders"]["series"]["options"]["season"] == 12
    encoder = ModRWKV.from_pretrained(tmp_path / "run" / "final").encoders["series"]
    assert (encoder.config.season, encoder.config.drift) == (12, True)

    cfg["data"]["train"] = [str(write_csv(tmp_path / "noise.csv", noisy(np.zeros(600), 1.0)))]
    resolved, note = resolve_auto_season(config_from_dict(cfg))
    assert resolved.model.encoders["series"].options | {"patch_len": 0} == \
        {**cfg["model"]["encoders"]["series"]["options"], "season": 0, "drift": False, "patch_len": 0}
    assert "no clear season" in note
    with pytest.raises(ConfigError, match="season: auto detects the period on the training rows"):
        resolve_auto_season(config_from_dict(cfg), samples_given=True)
    # 9 rows, of which the train split holds 6 (a look-back shorter than them is needed to get here)
    cfg["data"]["train"] = [str(write_csv(tmp_path / "short.csv", np.sin(np.arange(9.0))))]
    cfg["data"]["options"].update(lookback=4, horizon=1)
    with pytest.raises(ConfigError, match=r"season: auto on .*short.csv \(look-back 4\): too few rows to detect a "
                                          r"season: the longest training series has 6 steps.*give the period as an integer"):
        resolve_auto_season(config_from_dict(cfg))
    with pytest.raises(ValueError, match="resolved from the training rows"):
        WaveNetConfig(season="auto")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="season must be a whole number of steps .* got 'weekly'"):
        WaveNetConfig(season="weekly")  # type: ignore[arg-type]


def test_init_writes_season_auto_for_seasonal_data_only(tmp_path, capsys) -> None:
    from modrwkv.cli import main

    for name, values in (("seasonal", np.sin(2 * np.pi * np.arange(800) / 24)), ("flat", noisy(np.zeros(800), 1.0))):
        data = write_csv(tmp_path / f"{name}.csv", values)
        assert main(["init", "--data", str(data), "--yes", "--output", str(tmp_path / f"{name}.yaml"),
                     "--lookback", "48", "--horizon", "8"]) == 0
        options = yaml.safe_load((tmp_path / f"{name}.yaml").read_text())["model"]["encoders"]["series"]["options"]
        out = capsys.readouterr().out
        if name == "seasonal":
            assert options["season"] == "auto" and options["drift"] is True and options["linear_baseline"] == "auto"
            assert "training will pick season 24: autocorrelation" in out
        else:  # the ridge alone (configs/series-cpu.yaml's rule): what a reply of zeros forecasts
            assert "season" not in options and options["linear_baseline"] == "auto"
            assert "no seasonal baseline, no clear season" in out


def test_estimate_memory_of_a_season_auto_config_needs_no_data(capsys) -> None:
    """`--estimate-memory` reads no data, so `season: auto` is not resolved there; it sizes the same
    model as any integer period would (pass_residuals widens the features by one patch either way)."""
    from modrwkv.cli import main
    from modrwkv.training import load_config
    from modrwkv.training.memory import plan_from_config

    config = REPO / "configs" / "series-cpu-taylor.yaml"
    assert main(["train", str(config), "--estimate-memory"]) == 0
    assert "peak" in capsys.readouterr().out
    residuals = "--model.encoders.series.options.pass_residuals"
    auto = plan_from_config(load_config(config, [residuals, "true"], needs_data=False))
    weekly = plan_from_config(load_config(config, [residuals, "true", "--model.encoders.series.options.season", "336"],
                                          needs_data=False))
    assert auto == weekly and auto.encoders[0].feature_dim == 128 + 2 * 24
    # the config's `linear_baseline: true` is shaped from the data by training too; it adds buffers, no parameters
    plain = plan_from_config(load_config(config, [residuals, "true", "--model.encoders.series.options.linear_baseline",
                                                  "false"], needs_data=False))
    assert plain == auto
