"""Checkpoint formats: official .pth, safetensors, folders; errors that name the offending keys."""

import pytest
import torch
from safetensors.torch import save_file

from conftest import TINY, make_model
from modrwkv.lm import CheckpointError, load_model, save_model
from modrwkv.lm.random_weights import random_official_state_dict


@torch.no_grad()
def test_pth_safetensors_and_folder_load_identically(tmp_path):
    sd = random_official_state_dict(TINY, seed=3)
    torch.save(sd, tmp_path / "m.pth")
    save_file(sd, str(tmp_path / "m.safetensors"))
    tokens = torch.tensor([[1, 2, 3, 500, 7]])
    ref = load_model(tmp_path / "m.pth")(tokens).logits
    assert torch.equal(load_model(tmp_path / "m.safetensors")(tokens).logits, ref)
    assert torch.equal(load_model(tmp_path / "m")(tokens).logits, ref)  # official suffix-less name
    save_model(load_model(tmp_path / "m.pth"), tmp_path / "folder")
    reloaded = load_model(tmp_path / "folder")
    assert torch.equal(reloaded(tokens).logits, ref)
    assert reloaded.config == TINY
    assert reloaded.head.weight.stride() == (1, TINY.vocab_size)  # column-major head: faster decoding


def test_layer0_value_lora_is_accepted_and_ignored(tmp_path):
    sd = random_official_state_dict(TINY, seed=1, layer0_value_lora=True)
    torch.save(sd, tmp_path / "m.pth")
    assert "blocks.0.att.v0" not in load_model(tmp_path / "m.pth").state_dict()


def test_bf16_checkpoint_loads_in_requested_dtype(tmp_path):
    torch.save({k: v.bfloat16() for k, v in random_official_state_dict(TINY).items()}, tmp_path / "m.pth")
    assert load_model(tmp_path / "m.pth").dtype == torch.float32
    assert load_model(tmp_path / "m.pth", dtype=torch.bfloat16).dtype == torch.bfloat16


def test_errors_name_missing_unexpected_and_misshaped_keys(tmp_path):
    sd = random_official_state_dict(TINY)
    del sd["blocks.1.att.k_k"]
    sd["blocks.1.att.surprise"] = torch.zeros(3)
    sd["blocks.2.ffn.x_k"] = torch.zeros(1, 1, 5)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as err:
        load_model(tmp_path / "bad.pth")
    message = str(err.value)
    assert "blocks.1.att.k_k" in message and "blocks.1.att.surprise" in message and "blocks.2.ffn.x_k" in message


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_model(tmp_path / "absent.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_model(tmp_path / "junk.pth")
    torch.save({"emb.weight": torch.zeros(4, 4)}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="missing key"):
        load_model(tmp_path / "partial.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00garbage!")
    with pytest.raises(CheckpointError, match="cannot read as safetensors"):
        load_model(tmp_path / "junk.safetensors")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(CheckpointError, match="empty_dir is not a model folder: it has neither config.json nor model.safetensors"):
        load_model(tmp_path / "empty_dir")


def test_pickled_code_is_refused(tmp_path):
    """weights_only loading: a checkpoint that smuggles objects is an error, not executed."""

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"emb.weight": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "evil.pth")


def test_save_model_round_trips_a_trained_model(tmp_path):
    model = make_model()
    save_model(model, tmp_path / "out")
    again = load_model(tmp_path / "out")
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name


@torch.no_grad()
def test_fla_folder_loads_to_the_same_model(tmp_path):
    from modrwkv.lm.fla_format import official_to_fla, save_fla_folder

    sd = random_official_state_dict(TINY, seed=5, layer0_value_lora=False)
    torch.save(sd, tmp_path / "m.pth")
    save_fla_folder(sd, tmp_path / "fla")
    fla_sd, config = official_to_fla(sd)
    assert "model.layers.1.attn.w_lora.lora.0.weight" in fla_sd and config["model_type"] == "rwkv7"
    tokens = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])
    assert torch.equal(load_model(tmp_path / "fla")(tokens).logits, load_model(tmp_path / "m.pth")(tokens).logits)


@torch.no_grad()
def test_legacy_non_zip_pth_loads(tmp_path):
    """Checkpoints written before torch 1.6 (or with the legacy flag) cannot be memory-mapped."""
    sd = random_official_state_dict(TINY, seed=6)
    torch.save(sd, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    torch.save(sd, tmp_path / "zip.pth")
    tokens = torch.tensor([[5, 6, 7]])
    assert torch.equal(load_model(tmp_path / "legacy.pth")(tokens).logits, load_model(tmp_path / "zip.pth")(tokens).logits)


@pytest.mark.parametrize("fmt", ["pth", "safetensors", "fla"])
def test_nan_or_inf_weights_are_refused_naming_the_tensors(tmp_path, fmt):
    from modrwkv.lm.fla_format import save_fla_folder

    sd = random_official_state_dict(TINY, seed=2, layer0_value_lora=False)
    sd["blocks.1.att.key.weight"][3, 4] = float("nan")
    sd["head.weight"][0, 0] = float("inf")
    path = tmp_path / f"m.{fmt}"
    {"pth": lambda: torch.save(sd, path), "safetensors": lambda: save_file(sd, str(path)),
     "fla": lambda: save_fla_folder(sd, path)}[fmt]()
    with pytest.raises(CheckpointError, match="NaN or infinity") as err:
        load_model(path)
    if fmt != "fla":
        assert "'blocks.1.att.key.weight', 'head.weight'" in str(err.value) and str(path) in str(err.value)
    else:
        assert "model.layers.1.attn.k_proj.weight" in str(err.value) and "lm_head.weight" in str(err.value)


def test_corrupt_safetensors_inside_folders_name_the_file(tmp_path):
    from modrwkv.lm.fla_format import save_fla_folder

    save_fla_folder(random_official_state_dict(TINY, seed=1, layer0_value_lora=False), tmp_path / "fla")
    save_model(make_model(), tmp_path / "ours")
    for folder in ("fla", "ours"):
        (tmp_path / folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00garbage!")
        with pytest.raises(CheckpointError, match=f"{folder}/model.safetensors: cannot read as safetensors"):
            load_model(tmp_path / folder)


def test_config_json_that_is_not_an_object_or_not_json(tmp_path):
    save_model(make_model(), tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="config.json must hold a JSON object, got a JSON array"):
        load_model(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text('{"n_layer": 3,\n "n_embd": }')
    with pytest.raises(CheckpointError, match="config.json: invalid JSON at line 2, column 12"):
        load_model(tmp_path / "m")


@pytest.mark.parametrize("change, message", [
    ({"n_layer": "two"}, "n_layer must be an integer, got 'two'"),
    ({"n_embd": 12.5}, "n_embd must be an integer"),
    ({"dim_w": True}, "dim_w must be an integer or null, got True"),
    ({"vocab_size": 0}, "vocab_size must be positive"),
    ({"surprise": 1}, "unknown field"),
])
def test_config_values_of_the_wrong_type_are_named(change, message):
    from modrwkv.lm import RWKV7Config

    with pytest.raises(ValueError, match=message):
        RWKV7Config.from_dict({**TINY.to_dict(), **change})
    with pytest.raises(ValueError, match="missing field"):
        RWKV7Config.from_dict({"n_embd": 128})
    with pytest.raises(ValueError, match="expected an object of sizes, got list"):
        RWKV7Config.from_dict([3, 128])
