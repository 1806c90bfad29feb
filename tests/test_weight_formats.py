"""Inference weight formats (lm/ops/linear.py): int8 and bf16 matrices against their definitions and
against fp32, through the loaders, the CLI and the pipeline."""

import copy

import pytest
import torch
from conftest import TINY, make_model

from modrwkv.cli import main
from modrwkv.generation import SamplingParams, generate
from modrwkv.lm import RWKV7Config, load_model, resolve_dtype, save_model
from modrwkv.lm.ops.linear import BF16Linear, Int8Linear
from modrwkv.lm.random_weights import random_official_state_dict
from modrwkv.tokenizer import WorldTokenizer


def test_int8_linear_is_per_channel_round_to_nearest():
    """Each output channel is quantised symmetrically against its own max |w| / 127: the stored
    integers times the scale are within half a step of W, the largest weight maps to +-127, and the
    product equals x @ dequantised W^T (up to bf16 rounding of x)."""
    torch.manual_seed(0)
    w = torch.randn(48, 64) * torch.logspace(-3, 0, 48)[:, None]  # channels of very different ranges
    layer = Int8Linear(w)
    scale = layer.scale.float()
    torch.testing.assert_close(scale, (w.abs().amax(1) / 127).bfloat16().float())
    assert layer.weight.dtype == torch.int8 and int(layer.weight.abs().amax(1).min()) >= 126
    assert bool(((layer.dequantized() - w).abs() <= scale[:, None] / 2 + 1e-12).all())
    x = torch.randn(3, 5, 64)
    want = x.bfloat16().float() @ layer.dequantized().t()
    torch.testing.assert_close(layer(x), want, rtol=1e-2, atol=1e-2 * float(want.abs().max()))
    assert layer(x).dtype == torch.float32 and layer(x).shape == (3, 5, 48)


def test_bf16_linear_rounds_weights_and_inputs_only():
    torch.manual_seed(0)
    w, x = torch.randn(32, 64), torch.randn(2, 64)
    layer = BF16Linear(w)
    assert layer.weight.dtype == torch.bfloat16 and torch.equal(layer.dense_weight(), w.bfloat16())
    want = x.bfloat16().float() @ w.bfloat16().float().t()
    torch.testing.assert_close(layer(x), want, rtol=2e-2, atol=2e-2)


def test_bf16_linear_copies_saves_and_casts_its_plain_weight():
    """On CPUs where oneDNN runs bf16 the weight is an opaque pre-packed tensor: state_dict(),
    deepcopy and .to() must still see (and keep) the plain bf16 matrix, and a copy computes the same."""
    torch.manual_seed(0)
    w, x = torch.randn(48, 64), torch.randn(3, 64)
    layer = BF16Linear(w)
    saved = layer.state_dict()["weight"]
    assert saved.layout == torch.strided and torch.equal(saved, w.bfloat16())
    twin = copy.deepcopy(layer)
    assert torch.equal(twin(x), layer(x)) and twin.weight.layout == layer.weight.layout
    widened = copy.deepcopy(layer).float()
    assert widened.weight.layout == torch.strided and torch.equal(widened.weight, w.bfloat16().float())


@torch.no_grad()
@pytest.mark.parametrize("weight_format, tol", [("bf16", 0.02), ("int8", 0.05)])
def test_formats_follow_fp32_over_a_long_prompt(weight_format, tol):
    """The converted model's logits stay near fp32's over 300 tokens (errors must not accumulate in
    the recurrent state), its greedy choices mostly agree, and its state stays fp32."""
    model = make_model()
    ids = torch.randint(0, TINY.vocab_size, (1, 300), generator=torch.Generator().manual_seed(1))
    want = model(ids)
    converted = copy.deepcopy(model).use_weight_format(weight_format)
    assert converted.weight_format == weight_format and converted.dtype == torch.float32
    got = converted(ids)
    scale = float(want.logits.abs().max())
    assert float((got.logits - want.logits).abs().max()) < tol * scale
    agree = (got.logits.argmax(-1) == want.logits.argmax(-1)).float().mean()
    assert float(agree) > 0.9
    assert got.state.wkv.dtype == torch.float32
    # decoding token by token (int8: bf16 activations on the int8 kernel) gives what the one pass
    # (int8: dequantised weights, fp32 activations) gave, within the format's error
    state, steps = None, []
    for t in range(5):
        out = converted(ids[:, t : t + 1], state=state, logits="last")
        state = out.state
        steps.append(out.logits)
    torch.testing.assert_close(torch.stack(steps, 1), got.logits[:, :5], rtol=0, atol=tol * scale)


def test_weight_bytes_shrink():
    model = make_model()

    def matrix_bytes(m):
        return sum(b.numel() * b.element_size() for mod in m.modules()
                   if isinstance(mod, (torch.nn.Linear, BF16Linear, Int8Linear)) for b in mod.state_dict().values())

    fp32 = matrix_bytes(model)
    assert matrix_bytes(copy.deepcopy(model).use_weight_format("bf16")) == fp32 // 2
    int8 = matrix_bytes(copy.deepcopy(model).use_weight_format("int8"))
    assert fp32 // 4 < int8 < fp32 // 4 * 1.05  # the weights plus one bf16 scale per output channel


def test_resolve_dtype_names():
    assert resolve_dtype("fp32") == (torch.float32, "native")
    assert resolve_dtype("bf16") == (torch.float32, "bf16")  # CPU: bf16 matrices, fp32 compute
    assert resolve_dtype("bf16", "cuda") == (torch.bfloat16, "native")
    assert resolve_dtype("int8") == (torch.float32, "int8")
    assert resolve_dtype(torch.float16) == (torch.float16, "native")
    with pytest.raises(ValueError, match="unknown dtype 'int4'"):
        resolve_dtype("int4")
    with pytest.raises(ValueError, match="unknown weight format"):
        make_model().use_weight_format("fp8")


def test_a_converted_model_is_not_saved_as_a_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="converted to int8 for inference"):
        save_model(make_model().use_weight_format("int8"), tmp_path / "m")
    assert not (tmp_path / "m" / "model.safetensors").exists()


def test_load_model_with_a_format_and_the_cli(tmp_path, capsys):
    """`load_model(dtype="int8")` converts every matrix; `modrwkv generate --dtype int8` prints what
    generating with that model gives."""
    config = RWKV7Config(n_layer=1, n_embd=64, vocab_size=65536, head_size=64, dim_w=32, dim_a=32, dim_v=32, dim_g=32)
    path = tmp_path / "world.pth"
    torch.save(random_official_state_dict(config, seed=1), path)
    int8 = load_model(path, dtype="int8")
    assert int8.weight_format == "int8" and isinstance(int8.head, Int8Linear)
    assert isinstance(int8.blocks[0].att.receptance, Int8Linear) and isinstance(int8.blocks[0].ffn.value, Int8Linear)
    want = generate(int8, WorldTokenizer(), "Hello", SamplingParams(temperature=0, max_new_tokens=4)).text
    capsys.readouterr()
    assert main(["generate", "--model", str(path), "--prompt", "Hello", "--max-new-tokens", "4",
                 "--temperature", "0", "--dtype", "int8"]) == 0
    assert capsys.readouterr().out == want + "\n"
