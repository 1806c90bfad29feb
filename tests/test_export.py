"""`modrwkv export`: GGUF files as llama.cpp names and shapes them, fla folders llama.cpp's converter
reads, and reading both back (`--model x.gguf`). The expected names come from gguf-py (llama.cpp's
own Python package), the expected shapes from llama.cpp's RWKV-7 loader (llama-model.cpp,
`create_tensor(..., {ne0, ne1, ...})`), the tensor transforms from convert_hf_to_gguf.py's
`Rwkv7Model`."""

import json
import os
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

from modrwkv.cli import main
from modrwkv.generation import SamplingParams, generate
from modrwkv.lm import RWKV7Config, load_model, save_model
from modrwkv.lm.errors import CheckpointError
from modrwkv.lm.gguf_format import gguf_differences, load_gguf, read_gguf, save_gguf
from modrwkv.processing import get_template
from modrwkv.lm.random_weights import random_official_state_dict
from modrwkv.tokenizer import WorldTokenizer
from modrwkv.tokenizer.world import DEFAULT_VOCAB_PATH
import warm_start  # noqa: E402  (tests/)

# One xdist worker runs the module: gguf-py reads each file once (read_each_gguf_once, ~2.5 s a file), not
# once on each worker.
pytestmark = pytest.mark.xdist_group("test_export")

# Every LoRA width different, so that a transposed or swapped tensor cannot pass the shape checks.
CONFIG = RWKV7Config(n_layer=2, n_embd=64, vocab_size=65536, head_size=32, dim_w=32, dim_a=48, dim_v=16,
                     dim_g=80, dim_ffn=192)


@pytest.fixture(scope="module")
def state_dict() -> dict[str, torch.Tensor]:
    return random_official_state_dict(CONFIG, seed=3)


@pytest.fixture(scope="module")
def gguf_path(state_dict, tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    save_gguf(state_dict, path, dtype="f32", name="tiny")
    return path


@pytest.fixture(scope="module", autouse=True)
def read_each_gguf_once():
    """gguf-py's GGUFReader parses the World vocabulary's 65536 strings one by one (~2.5 s a file);
    this module's tests, which use it as the reference reader, share one reader per file (keyed on
    its path, size and modification time, so a rewritten file is read again)."""
    uncached = gguf.GGUFReader
    readers: dict[tuple, gguf.GGUFReader] = {}

    def cached(path, *args, **kwargs):
        stat = os.stat(path)
        key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = uncached(path, *args, **kwargs)
        return readers[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gguf, "GGUFReader", cached)
        yield


@pytest.fixture(scope="module")
def reader(gguf_path):
    return gguf.GGUFReader(str(gguf_path))


def assert_reads_as_gguf_py_reads(path):
    """read_gguf (load_gguf's parser) against gguf-py's GGUFReader, the independent reference:
    every metadata key and value, every tensor's name, ggml type, shape and bytes."""
    metadata, tensors = read_gguf(path)
    reference = gguf.GGUFReader(str(path))
    expected = {key: field.contents() for key, field in reference.fields.items() if not key.startswith("GGUF.")}
    assert metadata.keys() == expected.keys()
    for key, value in expected.items():
        assert metadata[key] == value, key
    assert list(tensors) == [t.name for t in reference.tensors]
    for t in reference.tensors:
        ours = tensors[t.name]
        assert (ours.tensor_type, ours.shape) == (t.tensor_type, tuple(t.shape.tolist())), t.name
        assert ours.data.tobytes() == np.asarray(t.data).tobytes(), t.name


def llama_cpp_shapes(c: int, v: int, n_layer: int, d_w: int, d_a: int, d_v: int, d_g: int, f: int) -> dict:
    """llama_model_rwkv7::load_arch_tensors, in ggml's ne order (innermost first)."""
    shapes = {"token_embd.weight": (c, v), "token_embd_norm.weight": (c,), "token_embd_norm.bias": (c,),
              "output_norm.weight": (c,), "output_norm.bias": (c,), "output.weight": (c, v)}
    for i in range(n_layer):
        d_value = d_a if i == 0 else d_v  # layer 0's unused value LoRA takes the ICLR LoRA's size
        layer = {
            "attn_norm.weight": (c,), "attn_norm.bias": (c,), "attn_norm_2.weight": (c,), "attn_norm_2.bias": (c,),
            "time_mix_w0.weight": (c,), "time_mix_w1.weight": (c, d_w), "time_mix_w2.weight": (d_w, c),
            "time_mix_a0.weight": (c,), "time_mix_a1.weight": (c, d_a), "time_mix_a2.weight": (d_a, c),
            "time_mix_v0.weight": (c,), "time_mix_v1.weight": (c, d_value), "time_mix_v2.weight": (d_value, c),
            "time_mix_g1.weight": (c, d_g), "time_mix_g2.weight": (d_g, c),
            "time_mix_lerp_fused.weight": (c, 1, 1, 6),
            "time_mix_k_k.weight": (c,), "time_mix_k_a.weight": (c,), "time_mix_r_k.weight": (c,),
            "time_mix_key.weight": (c, c), "time_mix_value.weight": (c, c), "time_mix_receptance.weight": (c, c),
            "time_mix_ln.weight": (c,), "time_mix_ln.bias": (c,), "time_mix_output.weight": (c, c),
            # channel_mix_lerp_k is declared {n_embd, 1, 1}; the converter writes it squeezed to [n_embd]
            "channel_mix_lerp_k.weight": (c,),
            "channel_mix_key.weight": (c, f), "channel_mix_value.weight": (f, c),
        }
        shapes.update({f"blk.{i}.{k}": s for k, s in layer.items()})
    return shapes


def test_gguf_names_shapes_and_metadata_are_llama_cpps(reader):
    tensors = {t.name: t for t in reader.tensors}
    # Names: exactly the tensors gguf-py lists for MODEL_ARCH.RWKV7 (norms have a bias too).
    expected_names = set()
    for kind in gguf.MODEL_TENSORS[gguf.MODEL_ARCH.RWKV7]:
        template = gguf.TENSOR_NAMES[kind]
        for i in range(CONFIG.n_layer) if "{bid}" in template else [None]:
            base = template.format(bid=i)
            expected_names.add(base + ".weight")
            if kind in (gguf.MODEL_TENSOR.TOKEN_EMBD_NORM, gguf.MODEL_TENSOR.OUTPUT_NORM, gguf.MODEL_TENSOR.ATTN_NORM,
                        gguf.MODEL_TENSOR.ATTN_NORM_2, gguf.MODEL_TENSOR.TIME_MIX_LN):
                expected_names.add(base + ".bias")
    assert set(tensors) == expected_names
    shapes = llama_cpp_shapes(CONFIG.n_embd, CONFIG.vocab_size, CONFIG.n_layer, CONFIG.dim_w, CONFIG.dim_a,
                              CONFIG.dim_v, CONFIG.dim_g, CONFIG.dim_ffn)
    assert {name: tuple(int(n) for n in t.shape) for name, t in tensors.items()} == shapes

    def field(key):
        return reader.get_field(key).contents()

    arch = "rwkv7"
    assert field("general.architecture") == arch
    assert field("general.name") == "tiny"
    assert field(f"{arch}.block_count") == CONFIG.n_layer
    assert field(f"{arch}.embedding_length") == CONFIG.n_embd
    assert field(f"{arch}.feed_forward_length") == CONFIG.dim_ffn
    assert field(f"{arch}.wkv.head_size") == CONFIG.head_size
    assert field(f"{arch}.attention.decay_lora_rank") == CONFIG.dim_w
    assert field(f"{arch}.attention.iclr_lora_rank") == CONFIG.dim_a
    assert field(f"{arch}.attention.value_residual_mix_lora_rank") == CONFIG.dim_v
    assert field(f"{arch}.attention.gate_lora_rank") == CONFIG.dim_g
    assert field(f"{arch}.attention.layer_norm_epsilon") == pytest.approx(1e-5)
    assert field(f"{arch}.attention.head_count") == 0
    assert field(f"{arch}.context_length") == 1048576
    assert field("tokenizer.ggml.model") == "rwkv"
    # our classic template in Jinja, named for llama.cpp's built-in formats (llama-completion, --no-jinja)
    assert field("tokenizer.chat_template") == "{#- rwkv-world (the RWKV World chat format) -#}" + \
        get_template("classic").jinja()
    assert field("tokenizer.ggml.eot_token_id") == 261
    assert field("tokenizer.ggml.bos_token_id") == field("tokenizer.ggml.eos_token_id") == 0
    assert field("general.quantization_version") == gguf.GGML_QUANT_VERSION
    assert field("general.size_label") == "8.5M"  # 2 x 65536 x 64 in the embedding and head, 0.1M in the blocks
    tokens = field("tokenizer.ggml.tokens")
    assert len(tokens) == CONFIG.vocab_size
    # the converter's rendering: id 0 "<s>", then each vocabulary entry as its escaped bytes, then padding
    tokenizer = WorldTokenizer()
    assert tokens[0] == "<s>"
    for token_id in (1, 11, 33, 261, 1000, 30000, 65529):
        assert tokens[token_id] == repr(tokenizer.token_bytes(token_id))[2:-1], token_id
    assert tokens[65530:] == [f"[PAD{i}]" for i in range(65530, 65536)]
    types = field("tokenizer.ggml.token_type")
    assert types[0] == gguf.TokenType.CONTROL and types[1] == gguf.TokenType.NORMAL
    assert types[65535] == gguf.TokenType.UNUSED


def test_gguf_values_follow_the_converters_transforms(reader, state_dict):
    tensors = {t.name: t for t in reader.tensors}

    def value(name):
        return torch.from_numpy(np.array(tensors[name].data))

    sd = state_dict
    assert torch.equal(value("token_embd.weight"), sd["emb.weight"])
    assert torch.equal(value("blk.1.time_mix_w1.weight"), sd["blocks.1.att.w1"].t())  # [D, C] in PyTorch order
    assert torch.equal(value("blk.1.time_mix_g2.weight"), sd["blocks.1.att.g2"].t())
    assert torch.equal(value("blk.1.time_mix_r_k.weight"), sd["blocks.1.att.r_k"].flatten())
    assert torch.equal(value("blk.1.time_mix_w0.weight"), sd["blocks.1.att.w0"].flatten())
    fused = value("blk.1.time_mix_lerp_fused.weight")
    for j, mix in enumerate("rwkvag"):  # the converter's lerp_list order
        assert torch.equal(fused[j].flatten(), sd[f"blocks.1.att.x_{mix}"].flatten())
    assert torch.equal(value("blk.0.time_mix_v1.weight"), value("blk.0.time_mix_a1.weight"))
    assert torch.equal(value("blk.0.attn_norm_2.bias"), sd["blocks.0.ln2.bias"])


def test_gguf_reads_back_exactly_and_loads_as_model(gguf_path, state_dict, tmp_path):
    assert_reads_as_gguf_py_reads(gguf_path)
    # The file reads like any checkpoint (also without its suffix), exactly, and generates the same text.
    model = load_model(str(gguf_path).removesuffix(".gguf"))
    back = model.state_dict()
    expected = {k: v for k, v in state_dict.items() if k not in ("blocks.0.att.v0", "blocks.0.att.v1", "blocks.0.att.v2")}
    assert set(back) == set(expected)
    for key, tensor in expected.items():
        assert torch.equal(back[key], tensor), key
    tokenizer, params = WorldTokenizer(), SamplingParams(temperature=0, max_new_tokens=6)
    reference = load_model(_save(state_dict, tmp_path))
    ids = torch.tensor([tokenizer.encode("The capital of France is")])
    assert torch.equal(model(ids).logits, reference(ids).logits)
    assert generate(model, tokenizer, "Hi", params).text == generate(reference, tokenizer, "Hi", params).text


def _save(state_dict, folder):
    model = load_model_from(state_dict)
    save_model(model, folder / "ref")
    return folder / "ref"


def load_model_from(state_dict):
    from modrwkv.lm import RWKV7

    model = RWKV7(RWKV7Config.from_state_dict(state_dict))
    model.load_state_dict({k: v for k, v in state_dict.items() if k in model.state_dict()})
    return model.eval()


def test_gguf_half_precision_keeps_llama_cpps_fp32_tensors(state_dict, tmp_path):
    path = save_gguf(state_dict, tmp_path / "half.gguf", dtype="f16")
    tensors = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    f32, f16 = gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16
    for name in ("blk.0.time_mix_w1.weight", "blk.0.time_mix_w2.weight", "blk.0.time_mix_lerp_fused.weight",
                 "blk.0.attn_norm.weight", "blk.0.time_mix_k_k.weight", "output_norm.bias"):
        assert tensors[name].tensor_type == f32, name
    for name in ("token_embd.weight", "output.weight", "blk.0.time_mix_a1.weight", "blk.1.channel_mix_key.weight"):
        assert tensors[name].tensor_type == f16, name
    assert np.array_equal(np.array(tensors["token_embd.weight"].data), state_dict["emb.weight"].half().numpy())
    assert_reads_as_gguf_py_reads(path)
    with pytest.raises(FileExistsError, match="already exists"):
        save_gguf(state_dict, path)


def test_gguf_errors_name_the_problem(tmp_path):
    other = tmp_path / "llama.gguf"
    writer = gguf.GGUFWriter(str(other), "llama")
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(CheckpointError, match="architecture is 'llama'"):
        load_gguf(other)
    small = random_official_state_dict(RWKV7Config(n_layer=1, n_embd=64, vocab_size=1024), seed=0)
    with pytest.raises(CheckpointError, match="65530 tokens but the model only 1024 embedding rows"):
        save_gguf(small, tmp_path / "small.gguf")


def small_gguf(path, endianess=gguf.GGUFEndian.LITTLE):
    """A file of gguf-py's own writer with one value of each kind load_gguf's parser reads."""
    writer = gguf.GGUFWriter(str(path), "rwkv7", endianess=endianess)
    writer.add_uint32("rwkv7.block_count", 0)
    writer.add_float32("test.float", 0.5)
    writer.add_bool("test.bool", True)
    writer.add_array("test.ints", [1, -2, 3])
    writer.add_array("test.strings", ["a", "bé", ""])
    writer.add_tensor("token_embd.weight", np.arange(32, dtype=np.float32).reshape(4, 8))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_reader_refuses_damaged_and_unsupported_files(tmp_path):
    path = small_gguf(tmp_path / "small.gguf")
    assert_reads_as_gguf_py_reads(path)
    whole = path.read_bytes()
    name_at = whole.index(b"token_embd.weight")  # the tensor's name in the header
    damaged = {
        "text.gguf": (b"not gguf", "it does not start with the GGUF magic bytes"),
        "name.gguf": (whole[:name_at + 10], f"a string of 17 bytes at byte {name_at} runs past the end of the file"),
        "header.gguf": (whole[:name_at + 17 + 2], "the file ends inside its header"),
        "data.gguf": (whole[:-8], "tensor token_embd.weight's 128 bytes at byte"),
        "v1.gguf": (whole[:4] + (1).to_bytes(4, "little") + whole[8:],
                    r"GGUF version 1 is not supported \(only 2 and 3\)\)$"),
    }
    for name, (content, message) in damaged.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match=f"{tmp_path / name}: cannot read as GGUF \\(.*{message}"):
            load_gguf(tmp_path / name)
    with pytest.raises(CheckpointError, match=r"big-endian GGUF files are not supported\)$"):
        load_gguf(small_gguf(tmp_path / "big.gguf", gguf.GGUFEndian.BIG))


def test_export_cli_fla_folder_for_llama_cpps_converter(state_dict, tmp_path, capsys):
    source = _save(state_dict, tmp_path)
    out = tmp_path / "fla"
    assert main(["export", "--model", str(source), "--format", "fla", "--output", str(out)]) == 0
    assert "wrote fla export" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    # What convert_hf_to_gguf.py's Rwkv7Model reads from an fla folder.
    assert config["architectures"] == ["RWKV7ForCausalLM"]
    for key, value in {"head_dim": 32, "norm_eps": 1e-5, "hidden_size": 64, "intermediate_size": 192,
                       "num_hidden_layers": 2, "decay_low_rank_dim": 32, "a_low_rank_dim": 48,
                       "v_low_rank_dim": 16, "gate_low_rank_dim": 80, "vocab_size": 65536}.items():
        assert config[key] == value, key
    assert (out / "rwkv_vocab_v20230424.txt").read_bytes() == DEFAULT_VOCAB_PATH.read_bytes()
    # The fla-hub remote-code pattern: auto_map entries resolve to modules re-exporting fla's classes.
    for auto, target in config["auto_map"].items():
        module, cls = target.split(".")
        assert f"import {cls}" in (out / f"{module}.py").read_text() or f", {cls}" in (out / f"{module}.py").read_text()
        assert "from fla.models.rwkv7" in (out / f"{module}.py").read_text(), auto
    back = load_model(out)
    for key, tensor in back.state_dict().items():
        assert torch.equal(tensor, state_dict[key]), key
    # refusing to overwrite, with a one-line error
    assert main(["export", "--model", str(source), "--format", "fla", "--output", str(out)]) == 2
    assert "already holds weights" in capsys.readouterr().err


def llama_cpp_converter() -> Path | None:
    """convert_hf_to_gguf.py of the llama.cpp tree that scripts/setup.sh --test puts in .cache/llama.cpp
    (or MODRWKV_LLAMA_CPP names); without it the test skips, or fails under MODRWKV_REQUIRE_LLAMA_CPP=1 (CI)."""
    tree = Path(os.environ.get("MODRWKV_LLAMA_CPP") or Path(__file__).parents[1] / ".cache" / "llama.cpp")
    converter = tree / "convert_hf_to_gguf.py"
    if converter.is_file():
        return converter
    message = f"llama.cpp's converter is not in {tree}: run bash scripts/setup.sh --test"
    if os.environ.get("MODRWKV_REQUIRE_LLAMA_CPP") == "1":
        pytest.fail(message + "; MODRWKV_REQUIRE_LLAMA_CPP=1 forbids skipping")
    pytest.skip(message)


def test_llama_cpps_converter_turns_our_fla_export_into_our_gguf(state_dict, tmp_path):
    """llama.cpp's own convert_hf_to_gguf.py, run on `modrwkv export --format fla`, writes the file
    `--format gguf` writes: same metadata, tensor names, shapes, storage types and bytes (with
    q8_0: which tensors stay fp32, their values, the 8-bit blocks of the others). Only the model's
    name (the converter takes the folder's) and the chat template's wording differ.
    bench/llama_cpp_check.py does the same for f32, f16 and bf16 and runs llama.cpp on the files
    (docs/interop.md); one converter run is what CI can afford (~5 s)."""
    outtype = "q8_0"
    converter = llama_cpp_converter()
    source = _save(state_dict, tmp_path)
    fla, converted, ours = tmp_path / "fla", tmp_path / "converted.gguf", tmp_path / "ours.gguf"
    assert main(["export", "--model", str(source), "--format", "fla", "--output", str(fla)]) == 0
    run = warm_start.run([str(converter), str(fla), "--outtype", outtype, "--outfile", str(converted)], text=True,
                         timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert main(["export", "--model", str(source), "--format", "gguf", "--dtype", outtype, "--output", str(ours)]) == 0
    differences = gguf_differences(converted, ours)
    assert_reads_as_gguf_py_reads(converted)
    assert_reads_as_gguf_py_reads(ours)
    assert [d.split(":")[0] for d in differences] == ["metadata general.name", "metadata tokenizer.chat_template"], \
        differences


def test_gguf_differences_names_what_differs(gguf_path, state_dict, tmp_path):
    changed = dict(state_dict, **{"blocks.1.att.k_k": state_dict["blocks.1.att.k_k"] + 1})
    save_gguf(changed, tmp_path / "changed.gguf", dtype="f16", name="changed")
    differences = gguf_differences(gguf_path, tmp_path / "changed.gguf")
    assert differences[:2] == ["metadata general.file_type: 0 != 1", "metadata general.name: 'tiny' != 'changed'"]
    assert "tensor blk.0.time_mix_key.weight: F32[64, 64] != F16[64, 64]" in differences
    assert "tensor blk.1.time_mix_k_k.weight: same shape and type, different values" in differences  # kept fp32
    assert "tensor blk.1.time_mix_k_a.weight: same shape and type, different values" not in differences


def test_gguf_differences_leaves_out_the_ignored_keys_only(tmp_path):
    """On two small GGUF files of gguf-py's own writer."""
    paths = []
    for name, value in (("a", 1), ("b", 2)):
        writer = gguf.GGUFWriter(str(tmp_path / f"{name}.gguf"), arch="test")
        writer.add_name(name)
        writer.add_uint32("test.count", value)
        writer.add_tensor("t", np.arange(4, dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        paths.append(tmp_path / f"{name}.gguf")
    assert gguf_differences(*paths) == ["metadata general.name: 'a' != 'b'", "metadata test.count: 1 != 2"]
    assert gguf_differences(*paths, ignore_keys=("general.name",)) == ["metadata test.count: 1 != 2"]
    assert gguf_differences(*paths, ignore_keys=("general.name", "test.count")) == []


def test_export_of_a_modrwkv_folder_writes_its_lm(tmp_path, caplog):
    from test_pipeline import tiny_model_dir

    folder = tiny_model_dir()
    out = tmp_path / "lm.gguf"
    assert main(["export", "--model", str(folder), "--format", "gguf", "--output", str(out), "--dtype", "f32"]) == 0
    assert "exporting the text LM only; its encoders and adapters have no equivalent" in caplog.text
    from modrwkv.multimodal import ModRWKV

    lm = ModRWKV.from_pretrained(folder).lm
    exported = load_model(out)
    assert all(torch.equal(t, lm.state_dict()[k]) for k, t in exported.state_dict().items())


def test_gguf_q8_0_quantizes_the_matrices_and_reads_back_dequantized(state_dict, tmp_path):
    path = save_gguf(state_dict, tmp_path / "q8.gguf", dtype="q8_0")
    reader = gguf.GGUFReader(str(path))
    tensors = {t.name: t for t in reader.tensors}
    assert tensors["blk.0.time_mix_key.weight"].tensor_type == gguf.GGMLQuantizationType.Q8_0
    assert tensors["blk.0.time_mix_w1.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    assert tensors["blk.0.time_mix_a2.weight"].tensor_type == gguf.GGMLQuantizationType.F16  # rows of 48: not blocks of 32
    assert_reads_as_gguf_py_reads(path)
    assert reader.get_field("general.file_type").contents() == gguf.LlamaFileType.MOSTLY_Q8_0
    model = load_model(path)
    for key in ("blocks.1.att.key.weight", "emb.weight", "blocks.0.ffn.value.weight"):
        original = state_dict[key]
        # Q8_0: per block of 32, q = round(x / d) with d = max|x| / 127, stored as fp16(d); so the
        # error is at most d/2 plus |q| <= 127 times fp16's relative rounding of d (2**-11)
        blocks = original.reshape(-1, 32)
        step = (blocks.abs().amax(dim=1, keepdim=True) / 127).expand_as(blocks).reshape(original.shape)
        error = (model.state_dict()[key] - original).abs()
        assert (error <= step * (0.5 + 127 * 2**-11) + 1e-7).all(), key
        assert error.max() > 0  # quantized, not stored exactly
