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
    with pytest.raises(CheckpointError, match="neither"):
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
