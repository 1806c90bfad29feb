"""Adapters: the spec's shapes and token counts, paper compression settings, padding independence."""

import pytest
import torch

from modrwkv.adapters import AdapterConfig, MLPAdapter, SpeechAdapter, build_adapter


@pytest.mark.parametrize("compression,expected", [(None, 577), ((3, 2), 288), ((4, 3), 192), ((5, 4), 144)])
def test_paper_compression_token_counts(compression, expected):
    adapter = MLPAdapter(AdapterConfig("mlp", in_dim=16, out_dim=8, compression=compression))
    assert adapter.output_length(577) == expected
    out, lengths = adapter(torch.randn(2, 577, 16), torch.tensor([577, 577]))
    assert out.shape == (2, expected, 8) and lengths.tolist() == [expected, expected]


def test_mlp_adapter_is_linear_relu_linear_plus_layernorm():
    torch.manual_seed(0)
    adapter = MLPAdapter(AdapterConfig("mlp", in_dim=6, out_dim=4, hidden_mult=2))
    with torch.no_grad():
        adapter.pre_norm.weight.normal_()
        adapter.pre_norm.bias.normal_()
    x = torch.randn(1, 3, 6)
    W1, b1 = adapter.mlp[0].weight, adapter.mlp[0].bias
    W2, b2 = adapter.mlp[2].weight, adapter.mlp[2].bias
    y = torch.relu(x @ W1.T + b1) @ W2.T + b2
    mu, var = y.mean(-1, keepdim=True), y.var(-1, unbiased=False, keepdim=True)
    expected = y + (y - mu) / torch.sqrt(var + 1e-5) * adapter.pre_norm.weight + adapter.pre_norm.bias
    out, _ = adapter(x, torch.tensor([3]))
    torch.testing.assert_close(out, expected)
    assert W1.shape == (8, 6) and W2.shape == (4, 8)  # hidden = hidden_mult * out_dim


def test_released_parameter_names():
    names = set(MLPAdapter(AdapterConfig("mlp", 16, 8, compression=(3, 2))).state_dict())
    assert names == {"conv.weight", "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias", "pre_norm.weight", "pre_norm.bias"}
    conv = MLPAdapter(AdapterConfig("mlp", 16, 8, compression=(3, 2))).conv
    assert conv.weight.shape == (16, 16, 3) and conv.bias is None and conv.stride == (2,)


def test_speech_adapter_shapes():
    adapter = SpeechAdapter(AdapterConfig("speech", in_dim=12, out_dim=8))
    assert adapter.conv.weight.shape == (16, 12, 3)  # Conv1d(d_enc -> 2d, k3)
    for n in (1, 2, 50, 1500):
        assert adapter.output_length(n) == (n + 4 - 3) // 2 + 1
    out, lengths = adapter(torch.randn(1, 50, 12), torch.tensor([50]))
    assert out.shape == (1, 26, 8) and lengths.tolist() == [26]


@pytest.mark.parametrize("config", [AdapterConfig("mlp", 10, 6, compression=(3, 2)), AdapterConfig("speech", 10, 6)])
def test_batched_items_equal_single_items(config):
    """Garbage past an item's length (encoder padding) must not leak into its tokens."""
    torch.manual_seed(1)
    adapter = build_adapter(config)
    short, long = torch.randn(1, 9, 10), torch.randn(1, 20, 10)
    padded = torch.cat([torch.cat([short, torch.full((1, 11, 10), 7.0)], 1), long])
    out, lengths = adapter(padded, torch.tensor([9, 20]))
    alone, n = adapter(short, torch.tensor([9]))
    torch.testing.assert_close(out[0, : int(lengths[0])], alone[0, : int(n[0])])


def test_config_validation_and_round_trip():
    with pytest.raises(ValueError, match="kind"):
        AdapterConfig("transformer")
    with pytest.raises(ValueError, match="mlp"):
        AdapterConfig("speech", compression=(3, 2))
    cfg = AdapterConfig("mlp", 5, 7, 2, (4, 3))
    assert AdapterConfig.from_dict(cfg.to_dict()) == cfg
