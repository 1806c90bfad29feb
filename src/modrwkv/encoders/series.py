"""`wavenet`: the paper's time-series encoder, a WaveNet-style stack trained from scratch.

- Each series is normalised per channel, `z = (x - mean) / sqrt(var + eps)` (RevIN-style, with
  `instance_stats`, the statistics the time-series reader normalises its targets with). The mean
  and scale go to `Prepared.extras` so that forecasts can be mapped back with `denormalize`.
  Missing values (NaN) become 0 after normalisation, i.e. the series mean.
- Optional patching: `patch_len` consecutive steps (all channels) form one token, so a series of T
  steps gives `ceil(T / patch_len)` tokens; when T is not a multiple, the series is left-padded
  with the mean (the latest steps stay aligned with the last token). Default: one token per step.
- The network is causal over tokens: dilated causal 1-D convolutions (dilations 1, 2, 4, ...)
  with gated activations `tanh(f) * sigmoid(g)`, residual and skip connections; token t never
  sees later tokens, so it can serve autoregressive forecasting.
- `pass_patches`: each token's features are followed by the patch's normalised values themselves,
  `[WaveNet(z)_t ; z_t]`, so the adapter reads exact levels beside the learnt features (what made
  small forecasters trained from scratch keep the last values right).
- `pass_residuals` (with a season): each token's features are also followed by the patch's change
  over one season, `z_t - z_{t - season}` (0 where the look-back holds no season before it): how
  this week differs from last week is what the correction to the seasonal-naive forecast reads.
- `season` (> 0): the forecaster writes corrections to the seasonal-naive forecast of that period
  (the last `season` steps of the look-back repeated, plus with `drift` their mean change over one
  season), and `denormalize` adds the baseline back. The time-series reader writes its targets
  the same way when training passes it the same `season` (`seasonal_baseline`, one function).
- `linear_baseline`: the forecaster writes corrections to a linear forecast from the normalised
  look-back (on top of the seasonal one when there is a `season`): a ridge regression that
  `modrwkv train` fits on the training windows before training (`fit_linear_baseline`) and keeps
  in this encoder's buffers `linear_weight` [linear_lookback, linear_horizon] and `linear_bias`,
  saved and loaded with its weights. The reader and `denormalize` share `forecast_baseline`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.linear_baseline import describe_linear_fit, linear_fit_problem
from ..data.readers.series import SERIES_EPS, LinearBaseline, forecast_baseline, instance_stats
from .base import EncoderOutput, Prepared
from .native import NativeEncoder

AUTO = "auto"  # `season: auto` / `linear_baseline: auto` in a training config: resolved from the training data


@dataclasses.dataclass
class WaveNetConfig:
    in_channels: int = 1  # variables of a multivariate series
    patch_len: int = 1  # steps per token
    residual_channels: int = 64
    skip_channels: int = 128
    output_dim: int = 256
    kernel_size: int = 2
    layers: int = 10  # per stack; dilation doubles each layer
    stacks: int = 1
    eps: float = SERIES_EPS  # variance floor of the normalisation
    pass_patches: bool = False  # append each patch's normalised values to its features
    season: int = 0  # > 0: forecasts are corrections to the seasonal-naive forecast of this period
    drift: bool = False  # ... plus the look-back's mean change over one season
    pass_residuals: bool = False  # with a season: also append each patch's change over one season
    linear_baseline: bool = False  # forecasts are (also) corrections to a linear forecast fitted by training
    linear_lookback: int = 0  # ... from this many steps (set by `modrwkv train`: the data's look-back)
    linear_horizon: int = 0  # ... of this many (the data's horizon)
    # ... its kind and parameters, recorded by `modrwkv train` (`LinearBaselineFit.record`: {"kind": "ridge",
    # "alpha": 100.0} or {"kind": "damped_trend", "level": ..., "slope": ..., "damping": ...}); None: not recorded
    linear_fit: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        for field in ("in_channels", "patch_len", "residual_channels", "skip_channels", "output_dim", "kernel_size", "layers", "stacks"):
            if int(getattr(self, field)) < 1:
                raise ValueError(f"wavenet {field} must be >= 1, got {getattr(self, field)}")
        if self.season == AUTO:
            raise ValueError("wavenet season 'auto' is resolved from the training rows by `modrwkv train` "
                             "(modrwkv.training.data.resolve_auto_season); a model is built with its integer period")
        if isinstance(self.season, bool) or not isinstance(self.season, int):
            raise ValueError(f"wavenet season must be a whole number of steps (0: none), or 'auto' in a training "
                             f"config, got {self.season!r}")
        if self.season < 0:
            raise ValueError(f"wavenet season must be >= 0 (0: none), got {self.season}")
        if self.drift and not self.season:
            raise ValueError("wavenet drift needs a season (the drift is the mean change over one season)")
        if self.pass_residuals and not self.season:
            raise ValueError("wavenet pass_residuals needs a season (a residual is the change over one season)")
        if self.linear_baseline == AUTO:
            raise ValueError("wavenet linear_baseline 'auto' is resolved from the training windows by `modrwkv train` "
                             "(modrwkv.training.data.size_linear_baseline); a model is built with true or false")
        if not isinstance(self.linear_baseline, bool):
            raise ValueError(f"wavenet linear_baseline must be true or false, or 'auto' in a training config, got "
                             f"{self.linear_baseline!r}")
        if self.linear_baseline and (self.linear_lookback < max(1, self.season) or self.linear_horizon < 1):
            raise ValueError(f"wavenet linear_baseline needs linear_lookback >= max(1, season) and linear_horizon >= 1 "
                             f"(`modrwkv train` sets them to the data's look-back and horizon), got "
                             f"{self.linear_lookback} and {self.linear_horizon}")
        if self.linear_fit is not None:
            if not self.linear_baseline:
                raise ValueError("wavenet linear_fit records the linear baseline `modrwkv train` fitted; it needs "
                                 "linear_baseline true")
            if problem := linear_fit_problem(self.linear_fit):
                raise ValueError(f"wavenet linear_fit (the linear baseline training fitted) {problem}")

    @property
    def receptive_field(self) -> int:
        """Tokens that token t can see, t included."""
        return 1 + self.stacks * (self.kernel_size - 1) * (2**self.layers - 1)


def describe_baseline(config: dict[str, Any]) -> str:
    """What a wavenet encoder's baseline alone forecasts, from its config (config.json's encoders.series.config):
    "damped trend (level 0.8, trend 1, damping 0.95)", "seasonal naive (period 52) + drift + ridge regression
    (alpha 100)"; without a season or a linear baseline, the look-back's mean (a normalised forecast of zeros)."""
    parts = []
    if config.get("season"):
        parts.append(f"seasonal naive (period {config['season']})" + (" + drift" if config.get("drift") else ""))
    if config.get("linear_baseline"):
        fit = config.get("linear_fit")
        parts.append(describe_linear_fit(fit) if fit is not None and not linear_fit_problem(fit)
                     else "a linear baseline (its kind not recorded)")
    return " + ".join(parts) or "the look-back's mean"


class _GatedLayer(nn.Module):
    """Causal dilated conv -> tanh * sigmoid gate -> (residual output, skip output). The last layer
    has no residual branch: only its skip output is used."""

    def __init__(self, residual: int, skip: int, kernel_size: int, dilation: int, last: bool) -> None:
        super().__init__()
        self.left_pad = (kernel_size - 1) * dilation
        self.conv = nn.Conv1d(residual, 2 * residual, kernel_size, dilation=dilation)
        self.residual = None if last else nn.Conv1d(residual, residual, 1)
        self.skip = nn.Conv1d(residual, skip, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        filt, gate = self.conv(nn.functional.pad(x, (self.left_pad, 0))).chunk(2, dim=1)
        z = torch.tanh(filt) * torch.sigmoid(gate)
        if self.residual is not None:
            x = (x + self.residual(z)) * math.sqrt(0.5)
        return x, self.skip(z)


class WaveNetSeriesEncoder(NativeEncoder):
    modality = "series"
    name = "wavenet"
    config_class = WaveNetConfig

    def __init__(self, config: WaveNetConfig, trainable: bool = True) -> None:
        super().__init__(config, trainable)
        c = config
        self.input = nn.Linear(c.patch_len * c.in_channels, c.residual_channels)
        dilations = [2**i for _ in range(c.stacks) for i in range(c.layers)]
        self.layers = nn.ModuleList(
            _GatedLayer(c.residual_channels, c.skip_channels, c.kernel_size, d, last=n == len(dilations) - 1)
            for n, d in enumerate(dilations)
        )
        self.head = nn.Sequential(
            nn.ReLU(), nn.Conv1d(c.skip_channels, c.skip_channels, 1), nn.ReLU(), nn.Conv1d(c.skip_channels, c.output_dim, 1)
        )
        if c.linear_baseline:  # fitted by training (`set_linear_baseline`), saved and loaded with the weights
            self.register_buffer("linear_weight", torch.zeros(c.linear_lookback, c.linear_horizon, dtype=torch.float64))
            self.register_buffer("linear_bias", torch.zeros(c.linear_horizon, dtype=torch.float64))
        self._finish_init()

    def linear(self) -> LinearBaseline | None:
        """The linear forecast this forecaster corrects, or None without `linear_baseline`."""
        if not self.config.linear_baseline:
            return None
        # `model.to(torch.bfloat16)` casts buffers too; numpy has no bfloat16, and the fit was float64
        return LinearBaseline(self.linear_weight.detach().to("cpu", torch.float64).numpy(),
                              self.linear_bias.detach().to("cpu", torch.float64).numpy())

    def set_linear_baseline(self, baseline: LinearBaseline, fitted: dict[str, Any] | None = None) -> None:
        """Stores the fitted linear baseline (its shape must be the configured one) and, in the config saved with it,
        `fitted`, its kind and parameters (`LinearBaselineFit.record`; None: not known)."""
        c = self.config
        if not c.linear_baseline or (baseline.lookback, baseline.horizon) != (c.linear_lookback, c.linear_horizon):
            raise ValueError(f"a linear baseline of look-back {baseline.lookback} and horizon {baseline.horizon} does "
                             f"not fit this encoder (linear_baseline {c.linear_baseline}, linear_lookback "
                             f"{c.linear_lookback}, linear_horizon {c.linear_horizon})")
        if fitted is not None and (problem := linear_fit_problem(fitted)):
            raise ValueError(f"fitted {problem}")
        with torch.no_grad():
            self.linear_weight.copy_(torch.from_numpy(baseline.weight))
            self.linear_bias.copy_(torch.from_numpy(baseline.bias))
        self.config.linear_fit = None if fitted is None else dict(fitted)

    @property
    def output_dim(self) -> int:
        c = self.config
        patch = c.patch_len * c.in_channels
        return c.output_dim + (patch if c.pass_patches else 0) + (patch if c.pass_residuals else 0)

    def prepare(self, item: Any) -> Prepared:
        """[T] or [T, channels] (numpy, list or tensor) -> normalised patches [tokens, patch_len * channels]."""
        if hasattr(item, "detach"):
            item = item.detach().cpu().numpy()
        try:
            values = np.asarray(item, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"series must be numeric [T] or [T, channels]: {exc}") from exc
        if values.ndim == 1:
            values = values[:, None]
        if values.ndim != 2:
            raise ValueError(f"series must be [T] or [T, channels], got shape {values.shape}")
        steps, channels = values.shape
        if steps == 0:
            raise ValueError("empty series")
        if channels != self.config.in_channels:
            raise ValueError(f"series has {channels} channel(s) but the wavenet encoder takes {self.config.in_channels}")
        if np.isinf(values).any():
            raise ValueError("series contains infinite values")
        observed = ~np.isnan(values)
        if not observed.any(axis=0).all():
            raise ValueError("series has a channel with no observed (non-NaN) values")
        if steps < self.config.season:
            raise ValueError(f"series has {steps} steps, fewer than one season ({self.config.season}) of the "
                             "seasonal baseline this forecaster adds its corrections to")
        if self.config.linear_baseline and steps != self.config.linear_lookback:
            raise ValueError(f"series has {steps} steps, but the linear baseline this forecaster adds its corrections "
                             f"to reads exactly {self.config.linear_lookback}")
        mean, scale = instance_stats(values, self.config.eps)
        normalised = np.where(observed, (values - mean) / scale, 0.0)
        pad = (-steps) % self.config.patch_len
        normalised = np.concatenate([np.zeros((pad, channels)), normalised])
        patches = torch.from_numpy(normalised.reshape(-1, self.config.patch_len * channels).astype(np.float32))
        inputs = {"patches": patches}
        if self.config.pass_residuals:  # how each step differs from one season before (0 in the first season)
            season = self.config.season
            residuals = np.zeros_like(normalised)
            residuals[pad + season :] = normalised[pad + season :] - normalised[pad : len(normalised) - season]
            inputs["residuals"] = torch.from_numpy(residuals.reshape(patches.shape).astype(np.float32))
        extras = {
            "mean": torch.from_numpy(mean.astype(np.float32)),
            "scale": torch.from_numpy(scale.astype(np.float32)),
            "pad": pad,
            "steps": steps,
        }
        if self.config.season or self.config.linear_baseline:  # what `denormalize` rebuilds the baseline from
            extras["past"] = torch.from_numpy(normalised[pad:])
        return Prepared(inputs, patches.shape[0], extras)

    def denormalize(self, values: torch.Tensor, extras: dict[str, Any]) -> torch.Tensor:
        """Maps normalised values [..., channels] (e.g. a forecast) back to the series' units. With
        a `season` or `linear_baseline`, `values` is a forecast [horizon, channels] of corrections:
        the baseline of the look-back (`forecast_baseline`, the function the reader subtracted) is
        added first."""
        mean = extras["mean"].to(values.device, values.dtype)
        scale = extras["scale"].to(values.device, values.dtype)
        c = self.config
        if c.season or c.linear_baseline:
            if values.ndim != 2:
                raise ValueError(f"a forecaster with a baseline denormalises forecasts [horizon, channels], got "
                                 f"{tuple(values.shape)}")
            baseline = forecast_baseline(extras["past"].numpy(), values.shape[0], c.season, c.drift, self.linear())
            values = values + torch.from_numpy(baseline).to(values.device, values.dtype)
        return values * scale + mean

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        with self._grad_context():
            patches = batch["patches"].to(device=self.device, dtype=self.input.weight.dtype)
            x = self.input(patches).transpose(1, 2)  # [B, residual, tokens]
            skips = torch.zeros((), dtype=x.dtype, device=x.device)
            for layer in self.layers:
                x, skip = layer(x)
                skips = skips + skip
            features = self.head(skips).transpose(1, 2)  # [B, tokens, output_dim]
            if self.config.pass_patches:
                features = torch.cat([features, patches], dim=-1)
            if self.config.pass_residuals:
                features = torch.cat([features, batch["residuals"].to(features)], dim=-1)
        return EncoderOutput(features, batch["num_features"].to(features.device))
