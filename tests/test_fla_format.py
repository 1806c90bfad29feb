"""Tests for the official <-> flash-linear-attention (fla) RWKV-7 checkpoint conversion.

No fla import: the expected fla names, shapes and forward math below were written from reading
fla-org/flash-linear-attention's ``fla/layers/rwkv7.py`` (RWKV7Attention; commit 0315a70e),
``fla/layers/rwkv6.py`` (the ``LoRA`` module RWKV-7 reuses), ``fla/models/rwkv7/modeling_rwkv7.py``
(RWKV7Block / RWKV7FeedForward / RWKV7Model / RWKV7ForCausalLM), ``fla/ops/rwkv7/
gate_output_correction.py`` (``gate_output_correction_ref``) and ``utils/convert_from_rwkv7.py``.
"""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from modrwkv.lm.fla_format import (
    CheckpointError,
    fla_to_official,
    is_fla_folder,
    load_fla_folder,
    official_to_fla,
    save_fla_folder,
)

L, C, N, V = 3, 128, 64, 512
H = C // N
DW, DA, DV, DG, FFN = 32, 24, 16, 48, 4 * C


def make_official(
    *, layer0_v: bool = True, dtype: torch.dtype = torch.float32, seed: int = 0, n_layer: int = L
) -> dict[str, torch.Tensor]:
    """A random official-layout RWKV-7 state dict with values of plausible scale."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale + shift).to(dtype)

    def unif(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=g, dtype=torch.float64).to(dtype)

    sd = {
        "emb.weight": rnd(V, C),
        "head.weight": rnd(V, C, scale=C**-0.5),
        "ln_out.weight": rnd(C, scale=0.1, shift=1.0),
        "ln_out.bias": rnd(C, scale=0.1),
        "blocks.0.ln0.weight": rnd(C, scale=0.1, shift=1.0),
        "blocks.0.ln0.bias": rnd(C, scale=0.1),
    }
    for i in range(n_layer):
        p = f"blocks.{i}."
        for ln in ("ln1", "ln2"):
            sd[p + ln + ".weight"] = rnd(C, scale=0.1, shift=1.0)
            sd[p + ln + ".bias"] = rnd(C, scale=0.1)
        for m in "rwkvag":
            sd[p + f"att.x_{m}"] = unif(1, 1, C)
        sd[p + "att.w0"] = rnd(1, 1, C, scale=0.5, shift=-1.0)
        sd[p + "att.a0"] = rnd(1, 1, C, scale=0.5)
        sd[p + "att.k_k"] = rnd(1, 1, C, scale=0.1, shift=0.8)
        sd[p + "att.k_a"] = rnd(1, 1, C, scale=0.1, shift=1.0)
        sd[p + "att.w1"], sd[p + "att.w2"] = rnd(C, DW, scale=0.1), rnd(DW, C, scale=0.1)
        sd[p + "att.a1"], sd[p + "att.a2"] = rnd(C, DA, scale=0.1), rnd(DA, C, scale=0.1)
        sd[p + "att.g1"], sd[p + "att.g2"] = rnd(C, DG, scale=0.1), rnd(DG, C, scale=0.1)
        if i > 0 or layer0_v:
            sd[p + "att.v0"] = rnd(1, 1, C, scale=0.5)
            sd[p + "att.v1"], sd[p + "att.v2"] = rnd(C, DV, scale=0.1), rnd(DV, C, scale=0.1)
        sd[p + "att.r_k"] = rnd(H, N, scale=0.1)
        for name in ("receptance", "key", "value", "output"):
            sd[p + f"att.{name}.weight"] = rnd(C, C, scale=C**-0.5)
        sd[p + "att.ln_x.weight"] = rnd(C, scale=0.1, shift=1.0)
        sd[p + "att.ln_x.bias"] = rnd(C, scale=0.1)
        sd[p + "ffn.x_k"] = unif(1, 1, C)
        sd[p + "ffn.key.weight"] = rnd(FFN, C, scale=C**-0.5)
        sd[p + "ffn.value.weight"] = rnd(C, FFN, scale=FFN**-0.5)
    return sd


LAYER0_V = ("blocks.0.att.v0", "blocks.0.att.v1", "blocks.0.att.v2")


def assert_bit_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert a[k].shape == b[k].shape, k
        assert torch.equal(a[k], b[k]), k


# ---------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layer0_v", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_official_fla_official_round_trip(layer0_v: bool, dtype: torch.dtype) -> None:
    official = make_official(layer0_v=layer0_v, dtype=dtype)
    fla, config = official_to_fla(official)
    back = fla_to_official(fla, config)
    # Documented behaviour: fla has no layer-0 value LoRA, so blocks.0.att.v0/v1/v2 (unused by
    # the official model too: layer 0 takes v_first = v) are dropped and never come back.
    assert not any(k in back for k in LAYER0_V)
    expected = {k: v for k, v in official.items() if k not in LAYER0_V}
    assert_bit_identical(back, expected)
    # ... and the other direction is lossless too.
    assert_bit_identical(official_to_fla(back)[0], fla)


def test_round_trip_with_config_inferred_from_shapes() -> None:
    official = make_official(layer0_v=False)
    fla, _ = official_to_fla(official)
    assert_bit_identical(fla_to_official(fla, {}), official)


def test_save_load_folder_round_trip(tmp_path) -> None:
    official = make_official(layer0_v=True, dtype=torch.bfloat16)
    folder = tmp_path / "rwkv7-tiny"
    config = save_fla_folder(official, folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((folder / "config.json").read_text()) == config
    assert is_fla_folder(folder)
    loaded = load_fla_folder(folder)
    assert_bit_identical(loaded, {k: v for k, v in official.items() if k not in LAYER0_V})

    with pytest.raises(FileExistsError):
        save_fla_folder(official, folder)
    save_fla_folder(official, folder, overwrite=True)
    assert_bit_identical(load_fla_folder(folder), loaded)


def test_load_sharded_folder(tmp_path) -> None:
    official = make_official(layer0_v=False)
    fla, config = official_to_fla(official)
    keys = sorted(fla)
    shards = {"model-00001-of-00002.safetensors": keys[: len(keys) // 2],
              "model-00002-of-00002.safetensors": keys[len(keys) // 2:]}
    weight_map = {}
    for name, names in shards.items():
        save_file({k: fla[k].contiguous() for k in names}, str(tmp_path / name))
        weight_map.update(dict.fromkeys(names, name))
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert is_fla_folder(tmp_path)
    assert_bit_identical(load_fla_folder(tmp_path), official)

    # An index naming a key its shard does not hold is reported by name.
    weight_map["model.layers.0.attn.r_k"] = "model-00002-of-00002.safetensors" \
        if weight_map["model.layers.0.attn.r_k"].startswith("model-00001") \
        else "model-00001-of-00002.safetensors"
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(CheckpointError, match=r"model\.layers\.0\.attn\.r_k"):
        load_fla_folder(tmp_path)


def test_is_fla_folder_negative(tmp_path) -> None:
    assert not is_fla_folder(tmp_path / "absent")
    assert not is_fla_folder(tmp_path)  # empty
    (tmp_path / "config.json").write_text("{not json")
    assert not is_fla_folder(tmp_path)
    # A folder holding official-layout names is not an fla folder, whatever the config says.
    official = make_official(n_layer=1)
    save_file(official, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "rwkv7"}))
    assert not is_fla_folder(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert not is_fla_folder(tmp_path)


# ---------------------------------------------------------------------------------------------
# fla names, shapes and config (independent expectations from reading fla)
# ---------------------------------------------------------------------------------------------


def test_fla_names_and_shapes() -> None:
    fla, _ = official_to_fla(make_official(layer0_v=True))
    shapes = {k: list(v.shape) for k, v in fla.items()}
    # RWKV7ForCausalLM: model.embeddings (nn.Embedding), model.norm (LayerNorm), lm_head.
    assert shapes["model.embeddings.weight"] == [V, C]
    assert shapes["lm_head.weight"] == [V, C]
    assert shapes["model.norm.weight"] == shapes["model.norm.bias"] == [C]
    # RWKV7Block: pre_norm exists in layer 0 only (norm_first), then attn_norm / ffn_norm.
    assert shapes["model.layers.0.pre_norm.weight"] == [C]
    assert "model.layers.1.pre_norm.weight" not in fla
    # RWKV7Attention of layer 1, every parameter: x_* are nn.Parameter(zeros(1, 1, C)); k_k, k_a
    # are zeros(key_dim); r_k zeros(H, head_dim); LoRA = Sequential(Linear(C, D, bias=False),
    # act, Linear(D, C, bias)) whose lora.2.bias holds w0/a0/v0; g_lora is built with bias=False;
    # g_norm is a GroupNorm(H, value_dim) with affine weight and bias.
    attn = {k.removeprefix("model.layers.1.attn."): s for k, s in shapes.items()
            if k.startswith("model.layers.1.attn.")}
    assert attn == {
        "x_r": [1, 1, C], "x_w": [1, 1, C], "x_k": [1, 1, C], "x_v": [1, 1, C],
        "x_a": [1, 1, C], "x_g": [1, 1, C],
        "k_k": [C], "k_a": [C], "r_k": [H, N],
        "r_proj.weight": [C, C], "k_proj.weight": [C, C], "v_proj.weight": [C, C],
        "o_proj.weight": [C, C],
        "w_lora.lora.0.weight": [DW, C], "w_lora.lora.2.weight": [C, DW],
        "w_lora.lora.2.bias": [C],
        "a_lora.lora.0.weight": [DA, C], "a_lora.lora.2.weight": [C, DA],
        "a_lora.lora.2.bias": [C],
        "v_lora.lora.0.weight": [DV, C], "v_lora.lora.2.weight": [C, DV],
        "v_lora.lora.2.bias": [C],
        "g_lora.lora.0.weight": [DG, C], "g_lora.lora.2.weight": [C, DG],
        "g_norm.weight": [C], "g_norm.bias": [C],
    }
    # `if self.layer_idx != 0: self.v_lora = LoRA(...)`: no value LoRA in layer 0.
    assert not any(k.startswith("model.layers.0.attn.v_lora") for k in fla)
    # RWKV7FeedForward: x_k = zeros(C); key Linear(C, F); value Linear(F, C).
    ffn = {k.removeprefix("model.layers.1.ffn."): s for k, s in shapes.items()
           if k.startswith("model.layers.1.ffn.")}
    assert ffn == {"x_k": [C], "key.weight": [FFN, C], "value.weight": [C, FFN]}
    assert shapes["model.layers.1.attn_norm.bias"] == shapes["model.layers.1.ffn_norm.weight"]
    # 4 top-level + pre_norm (2) + per layer: 4 norm, 26 attention, 3 FFN tensors; minus layer 0's
    # absent v_lora (3).
    assert len(fla) == 4 + 2 + L * (4 + 26 + 3) - 3


def test_fla_values_map_by_transpose_and_flatten() -> None:
    official = make_official()
    fla, _ = official_to_fla(official)
    p, f = "blocks.2.att.", "model.layers.2.attn."
    assert torch.equal(fla[f + "w_lora.lora.0.weight"], official[p + "w1"].T)
    assert torch.equal(fla[f + "w_lora.lora.2.weight"], official[p + "w2"].T)
    assert torch.equal(fla[f + "w_lora.lora.2.bias"], official[p + "w0"].flatten())
    assert torch.equal(fla[f + "g_lora.lora.0.weight"], official[p + "g1"].T)
    assert torch.equal(fla[f + "k_k"], official[p + "k_k"].flatten())
    assert torch.equal(fla[f + "g_norm.bias"], official[p + "ln_x.bias"])
    assert torch.equal(fla[f + "r_proj.weight"], official[p + "receptance.weight"])
    assert torch.equal(fla["model.layers.2.ffn.x_k"], official["blocks.2.ffn.x_k"].flatten())


def test_config_fields() -> None:
    _, config = official_to_fla(make_official(dtype=torch.bfloat16))
    # Fields of fla's RWKV7Config (configuration_rwkv7.py) that fix the parameter shapes.
    assert config["model_type"] == "rwkv7"
    assert config["architectures"] == ["RWKV7ForCausalLM"]
    assert config["hidden_size"] == C and config["num_hidden_layers"] == L
    assert config["head_dim"] == N and config["num_heads"] == H
    assert config["vocab_size"] == V and config["intermediate_size"] == FFN
    assert config["hidden_ratio"] == 4
    assert (config["decay_low_rank_dim"], config["a_low_rank_dim"], config["v_low_rank_dim"],
            config["gate_low_rank_dim"]) == (DW, DA, DV, DG)
    assert config["value_dim"] == [C] * L
    assert config["norm_first"] is True and config["norm_bias"] is True
    assert config["norm_eps"] == 1e-5 and config["hidden_act"] == "sqrelu"
    assert config["attn"] is None and config["tie_word_embeddings"] is False
    assert config["torch_dtype"] == "bfloat16"
    json.dumps(config)  # serialisable as config.json

    _, config = official_to_fla(make_official(), config_overrides={"bos_token_id": 0})
    assert config["bos_token_id"] == 0
    with pytest.raises(ValueError, match="hidden_size"):
        official_to_fla(make_official(), config_overrides={"hidden_size": 64})


# ---------------------------------------------------------------------------------------------
# Older / variant fla layouts
# ---------------------------------------------------------------------------------------------


def test_legacy_fused_x_x() -> None:
    # fla's first RWKV7Attention had `x_x = nn.Parameter(torch.zeros(6, hidden_size))`, rows in
    # the order r, w, k, v, a, g (convert_from_rwkv7.py: 'rwkvag'.find(...); modeling_rwkv7.py's
    # version-1 -> version-2 migration in RWKV7Model.load_state_dict).
    official = make_official(layer0_v=False)
    fla, config = official_to_fla(official)
    for i in range(L):
        prefix = f"model.layers.{i}.attn."
        fla[prefix + "x_x"] = torch.cat([fla.pop(prefix + f"x_{m}").reshape(1, C)
                                         for m in "rwkvag"])
    assert_bit_identical(fla_to_official(fla, config), official)


def test_mix_vectors_stored_flat_and_k_k_stored_3d() -> None:
    official = make_official(layer0_v=False)
    fla, config = official_to_fla(official)
    fla["model.layers.1.attn.x_g"] = fla["model.layers.1.attn.x_g"].reshape(C)
    fla["model.layers.1.attn.k_k"] = fla["model.layers.1.attn.k_k"].reshape(1, 1, C)
    assert_bit_identical(fla_to_official(fla, config), official)


def test_tied_embeddings_and_no_norm_bias() -> None:
    official = make_official(layer0_v=False)
    fla, config = official_to_fla(official)
    del fla["lm_head.weight"]
    biases = [k for k in fla if k.endswith("norm.bias") and "g_norm" not in k]
    for k in biases:
        del fla[k]
    config = {**config, "tie_word_embeddings": True, "norm_bias": False}
    out = fla_to_official(fla, config)
    assert torch.equal(out["head.weight"], official["emb.weight"])
    assert torch.equal(out["blocks.1.ln2.bias"], torch.zeros(C))
    assert torch.equal(out["ln_out.bias"], torch.zeros(C))
    assert torch.equal(out["blocks.1.att.ln_x.bias"], official["blocks.1.att.ln_x.bias"])
    assert len(biases) == 2 * L + 2


# ---------------------------------------------------------------------------------------------
# Errors name every offending key
# ---------------------------------------------------------------------------------------------


def test_official_errors_name_all_keys() -> None:
    official = make_official()
    official["blocks.1.att.bogus"] = torch.zeros(3)
    del official["blocks.2.att.a2"]
    official["blocks.1.att.k_a"] = torch.zeros(C)  # should be [1, 1, C]
    official["blocks.1.att.g1"] = torch.zeros(C, DG + 1)  # LoRA width differs from layer 0
    with pytest.raises(CheckpointError) as err:
        official_to_fla(official)
    msg = str(err.value)
    for key in ("blocks.1.att.bogus", "blocks.2.att.a2", "blocks.1.att.k_a", "blocks.1.att.g1"):
        assert key in msg
    assert isinstance(err.value, ValueError)


def test_official_without_size_anchors() -> None:
    official = make_official()
    del official["emb.weight"], official["blocks.0.att.r_k"]
    with pytest.raises(CheckpointError, match=r"emb\.weight.*blocks\.0\.att\.r_k"):
        official_to_fla(official)


def test_fla_errors_name_all_keys() -> None:
    fla, config = official_to_fla(make_official())
    fla["model.layers.1.attn.bonus"] = torch.zeros(H, N)
    fla["model.layers.0.attn.v_lora.lora.0.weight"] = torch.zeros(DV, C)  # layer 0 has none
    del fla["model.layers.2.ffn.value.weight"]
    fla["model.layers.1.attn.w_lora.lora.0.weight"] = torch.zeros(C, DW)  # not transposed
    with pytest.raises(CheckpointError) as err:
        fla_to_official(fla, config)
    msg = str(err.value)
    for key in ("model.layers.1.attn.bonus", "model.layers.0.attn.v_lora.lora.0.weight",
                "model.layers.2.ffn.value.weight", "model.layers.1.attn.w_lora.lora.0.weight"):
        assert key in msg


def test_fla_config_disagreeing_with_tensors() -> None:
    fla, config = official_to_fla(make_official())
    with pytest.raises(CheckpointError, match=r"decay|w_lora"):
        fla_to_official(fla, {**config, "decay_low_rank_dim": DW * 2})
    with pytest.raises(CheckpointError, match=r"model\.layers\.2\."):
        fla_to_official(fla, {**config, "num_hidden_layers": L - 1, "value_dim": [C] * (L - 1)})
    with pytest.raises(CheckpointError, match="value_dim lists 3 layers"):
        fla_to_official(fla, {**config, "num_hidden_layers": L - 1})


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"attn": {"layers": [1], "num_heads": 2}}, "hybrid"),
        ({"value_dim": [2 * C] * L}, "value_dim"),
        ({"hidden_act": "swish"}, "hidden_act"),
        ({"norm_first": False}, "norm_first"),
        ({"model_type": "llama"}, "model_type"),
    ],
)
def test_fla_unsupported_configs(change: dict, pattern: str) -> None:
    fla, config = official_to_fla(make_official())
    with pytest.raises(CheckpointError, match=pattern):
        fla_to_official(fla, {**config, **change})


def test_non_default_norm_eps_warns(caplog) -> None:
    fla, config = official_to_fla(make_official())
    with caplog.at_level(logging.WARNING, logger="modrwkv.lm.fla_format"):
        fla_to_official(fla, {**config, "norm_eps": 1e-6})
    assert "norm_eps" in caplog.text


# ---------------------------------------------------------------------------------------------
# Semantics: an fla-style forward on fla-named tensors equals the official forward
# ---------------------------------------------------------------------------------------------


def wkv7(r, log_w, k, v, a, b):
    """The RWKV-7 state recurrence shared by both layouts (the kernels' common math).

    Per head: S <- S * exp(log_w)^T + (S a) b^T + v k^T and y = S r, with S [N_v, N_k].
    """
    bsz, t_len, h, n = r.shape
    state = torch.zeros(bsz, h, n, n, dtype=r.dtype)
    out = []
    for t in range(t_len):
        state = (state * log_w[:, t].exp()[:, :, None, :]
                 + (state @ a[:, t, :, :, None]) @ b[:, t, :, None, :]
                 + v[:, t, :, :, None] @ k[:, t, :, None, :])
        out.append((state @ r[:, t, :, :, None]).squeeze(-1))
    return torch.stack(out, 1)


def shift(x):
    return F.pad(x, (0, 0, 1, -1))  # previous token, zeros first (nn.ZeroPad2d((0, 0, 1, -1)))


def official_forward(sd, idx):
    """Logits of the official RWKV-7 (RWKV-LM's rwkv_v7_demo math), official names only."""
    def ln(x, name):
        return F.layer_norm(x, (C,), sd[name + ".weight"], sd[name + ".bias"], 1e-5)

    x = ln(sd["emb.weight"][idx][None], "blocks.0.ln0")
    v_first = None
    for i in range(L):
        p = f"blocks.{i}.att."
        xa_ = ln(x, f"blocks.{i}.ln1")
        bsz, t_len, _ = xa_.shape
        xx = shift(xa_) - xa_
        xr, xw, xk, xv, xa, xg = (xa_ + xx * sd[p + "x_" + m] for m in "rwkvag")
        r = xr @ sd[p + "receptance.weight"].T
        w = -F.softplus(-(sd[p + "w0"] + torch.tanh(xw @ sd[p + "w1"]) @ sd[p + "w2"])) - 0.5
        k = xk @ sd[p + "key.weight"].T
        v = xv @ sd[p + "value.weight"].T
        if i == 0:
            v_first = v
        else:
            v = v + (v_first - v) * torch.sigmoid(sd[p + "v0"] + (xv @ sd[p + "v1"]) @ sd[p + "v2"])
        a = torch.sigmoid(sd[p + "a0"] + (xa @ sd[p + "a1"]) @ sd[p + "a2"])
        g = torch.sigmoid(xg @ sd[p + "g1"]) @ sd[p + "g2"]
        kk = F.normalize((k * sd[p + "k_k"]).view(bsz, t_len, H, N), dim=-1, p=2.0)
        k = k * (1 + (a - 1) * sd[p + "k_a"])
        heads = [t.view(bsz, t_len, H, N) for t in (r, k, v, a)]
        o = wkv7(heads[0], -torch.exp(w).view(bsz, t_len, H, N), heads[1], heads[2],
                 -kk, kk * heads[3]).reshape(bsz, t_len, C)
        o = F.group_norm(o.view(bsz * t_len, C), H, sd[p + "ln_x.weight"], sd[p + "ln_x.bias"],
                         eps=64e-5).view(bsz, t_len, C)
        o = o + ((heads[0] * heads[1] * sd[p + "r_k"]).sum(-1, keepdim=True)
                 * heads[2]).view(bsz, t_len, C)
        x = x + (o * g) @ sd[p + "output.weight"].T
        f = f"blocks.{i}.ffn."
        h = ln(x, f"blocks.{i}.ln2")
        h = h + (shift(h) - h) * sd[f + "x_k"]
        x = x + torch.relu(h @ sd[f + "key.weight"].T) ** 2 @ sd[f + "value.weight"].T
    return ln(x, "ln_out") @ sd["head.weight"].T


def fla_forward(sd, config, idx):
    """Logits computed the way fla's RWKV7ForCausalLM does (non-fused paths), fla names only."""
    eps, head_dim = config["norm_eps"], config["head_dim"]
    n_head = config["hidden_size"] // head_dim

    def ln(x, name):
        return F.layer_norm(x, x.shape[-1:], sd[name + ".weight"], sd[name + ".bias"], eps)

    def lora(x, name, activation, bias=True):  # fla.layers.rwkv6.LoRA
        h = activation(F.linear(x, sd[name + ".lora.0.weight"]))
        return F.linear(h, sd[name + ".lora.2.weight"], sd[name + ".lora.2.bias"] if bias else None)

    hidden = sd["model.embeddings.weight"][idx][None]
    v_first = torch.zeros_like(hidden)
    for i in range(config["num_hidden_layers"]):
        lp = f"model.layers.{i}."
        p = lp + "attn."
        residual = ln(hidden, lp + "pre_norm") if i == 0 else hidden
        x = ln(residual, lp + "attn_norm")
        bsz, t_len, _ = x.shape
        delta = shift(x) - x  # token_shift
        xr, xw, xk, xv, xa, xg = (torch.addcmul(x, delta, sd[p + "x_" + m]) for m in "rwkvag")
        r = F.linear(xr, sd[p + "r_proj.weight"])
        w = -0.6065306597126334 * lora(xw, p + "w_lora", torch.tanh).sigmoid()
        k = F.linear(xk, sd[p + "k_proj.weight"])
        v = F.linear(xv, sd[p + "v_proj.weight"])
        if i == 0:
            v_first = v
        else:
            v = torch.lerp(v, v_first, lora(xv, p + "v_lora", lambda t: t).sigmoid())
        a = lora(xa, p + "a_lora", lambda t: t).sigmoid()
        g = lora(xg, p + "g_lora", torch.sigmoid, bias=False)
        kk = F.normalize((k * sd[p + "k_k"]).view(bsz, t_len, n_head, head_dim), dim=-1, p=2.0)
        k = k.addcmul(k * (a - 1), sd[p + "k_a"])  # fused_k_rwkv7
        r, w, k, a = (t.view(bsz, t_len, n_head, head_dim) for t in (r, w, k, a))
        v = v.view(bsz, t_len, n_head, head_dim)
        o = wkv7(r, w, k, v, -kk, kk * a)  # chunk_rwkv7(r, w, k, v, a=-kk, b=kk*a, scale=1)
        o = F.group_norm(o.reshape(bsz * t_len, -1), n_head, sd[p + "g_norm.weight"],
                         sd[p + "g_norm.bias"], eps=head_dim * eps).view(bsz, t_len, -1)
        # gate_output_correction_ref
        o = (o + ((r * k * sd[p + "r_k"]).sum(-1, keepdim=True) * v).view(o.shape)) * g
        hidden = residual + F.linear(o, sd[p + "o_proj.weight"])
        residual = hidden
        h = ln(hidden, lp + "ffn_norm")
        delta = shift(h) - h
        h = F.linear(torch.relu(F.linear(h.addcmul(delta, sd[lp + "ffn.x_k"]),
                                         sd[lp + "ffn.key.weight"])) ** 2,
                     sd[lp + "ffn.value.weight"])
        hidden = residual + h
    return F.linear(ln(hidden, "model.norm"), sd["lm_head.weight"])


def test_fla_style_forward_matches_official_forward() -> None:
    official = make_official(layer0_v=True, dtype=torch.float64, seed=3)
    fla, config = official_to_fla(official)
    idx = torch.tensor([5, 17, 300, 2, 2, 511, 64, 9])
    want = official_forward(official, idx)
    got = fla_forward(fla, config, idx)
    assert want.shape == (1, len(idx), V)
    assert want.std() > 0.1  # a non-degenerate model
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    # The check has teeth: a plausible wrong mapping (LoRA matrices not transposed) breaks it.
    wrong = dict(fla)
    for kind in "wag":
        name = f"model.layers.1.attn.{kind}_lora.lora.0.weight"
        wrong[name] = official[f"blocks.1.att.{kind}1"].T.flip(0).contiguous()
    assert not torch.allclose(fla_forward(wrong, config, idx), want, rtol=1e-3, atol=1e-3)


def test_decay_lora_semantics() -> None:
    """fla's log-decay -exp(-0.5) * sigmoid(w_lora(x)) equals the official -exp(w)."""
    official = make_official(dtype=torch.float64, seed=7)
    fla, _ = official_to_fla(official)
    x = torch.randn(4, 9, C, dtype=torch.float64)
    p, f = "blocks.1.att.", "model.layers.1.attn.w_lora.lora."
    z = F.linear(torch.tanh(F.linear(x, fla[f + "0.weight"])), fla[f + "2.weight"],
                 fla[f + "2.bias"])
    fla_log_decay = -0.6065306597126334 * torch.sigmoid(z)
    w = -F.softplus(-(official[p + "w0"] + torch.tanh(x @ official[p + "w1"]) @ official[p + "w2"]))
    official_log_decay = -torch.exp(w - 0.5)
    torch.testing.assert_close(fla_log_decay, official_log_decay, rtol=1e-12, atol=1e-12)
    assert math.isclose(0.6065306597126334, math.exp(-0.5), rel_tol=1e-15)
