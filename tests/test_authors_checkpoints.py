"""The authors' (WorldRWKV) released checkpoints: prompt ids token for token, greedy replies against
the official `rwkv` package fed the authors' spliced embeddings, and every released key family.

The expectations are built the authors' way, independently of modrwkv's processor: their prompt
strings (infer/worldmodel.py, world/utils.py; commit f15e179 for the paper era) encoded by a plain
greedy longest match over their vocabulary (the World vocabulary plus three entries), SigLIP
features through `AutoModel(...).vision_model` and `SiglipImageProcessor` as their encoder runs
them, their adapter's arithmetic written out, `ln0` over the whole spliced sequence, then the
official package's `forward_one_alt` one embedding at a time.
"""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import make_model
from modrwkv.data.readers.asr import asr_to_sample
from modrwkv.data.sample import Message, Sample
from modrwkv.encoders import build_encoder
from modrwkv.evaluation.tasks.speech import ASR_PROMPT, LibriSpeech
from modrwkv.inference import ModRWKVPipeline
from modrwkv.lm import CheckpointError, RWKV7Config
from modrwkv.lm.random_weights import random_official_state_dict
from modrwkv.multimodal import ModRWKV
from modrwkv.processing import IGNORE_INDEX
from modrwkv.tokenizer.world import DEFAULT_VOCAB_PATH

LM = RWKV7Config(n_layer=2, n_embd=64, vocab_size=65536, dim_w=32, dim_a=32, dim_v=32, dim_g=32)
TOWER = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, patch_size=16)
SPECIAL = {"<|vision_start|>": 65530, "<|vision_end|>": 65531, "<|image_pad|>": 65532}
START, END, PAD = "<|vision_start|>", "<|vision_end|>", "<|image_pad|>"


class AuthorsTokenizer:
    """Greedy longest byte match over the authors' vocabulary file (ours plus their three lines),
    written without modrwkv's tokenizer code."""

    def __init__(self, vocab_text: str) -> None:
        import ast

        self.table = {}
        for line in vocab_text.splitlines():
            first, last = line.index(" "), line.rindex(" ")
            value = ast.literal_eval(line[first:last].strip())
            self.table[value.encode() if isinstance(value, str) else value] = int(line[:first])
        self.longest = max(map(len, self.table))

    def encode(self, text: str) -> list[int]:
        data, ids, pos = text.encode(), [], 0
        while pos < len(data):
            for length in range(min(self.longest, len(data) - pos), 0, -1):
                if data[pos : pos + length] in self.table:
                    ids.append(self.table[data[pos : pos + length]])
                    pos += length
                    break
        return ids


# One xdist worker runs the module: its module fixtures (the authors' tokenizer, a SigLIP folder, a release's
# tensors) made once, not once on each worker.
pytestmark = pytest.mark.xdist_group("test_authors_checkpoints")


@pytest.fixture(scope="module")
def authors_tok():
    extra = "".join(f"{i} {t!r} {len(t)}\n" for t, i in SPECIAL.items())
    return AuthorsTokenizer(DEFAULT_VOCAB_PATH.read_text(encoding="utf-8") + extra)


def picture(seed, size=(48, 64)):
    return np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)


def adapter_tensors(d_in, d, hidden_mult, names, seed, conv=False):
    """The authors' VisualAdapter: Linear -> ReLU -> Linear, then y + LayerNorm(y)."""
    g = torch.Generator().manual_seed(seed)
    h = hidden_mult * d
    first, second = names
    out = {
        f"{first}.weight": torch.randn(h, d_in, generator=g) * 0.3, f"{first}.bias": torch.randn(h, generator=g) * 0.1,
        f"{second}.weight": torch.randn(d, h, generator=g) * 0.3, f"{second}.bias": torch.randn(d, generator=g) * 0.1,
        "pre_norm.weight": 1 + 0.1 * torch.randn(d, generator=g), "pre_norm.bias": 0.1 * torch.randn(d, generator=g),
    }
    if conv:
        out["conv.weight"] = torch.randn(d_in, d_in, 3, generator=g) * 0.2
    return out


def speech_tensors(d_in, d, seed):
    """The authors' SpeechAdapter: Conv1d(d_in -> 2d, 3, 2, pad 2), Linear(2d, 2d), ReLU, Linear(2d, d)."""
    g = torch.Generator().manual_seed(seed)
    return {
        "conv.weight": torch.randn(2 * d, d_in, 3, generator=g) * 0.2, "conv.bias": torch.randn(2 * d, generator=g) * 0.1,
        "proj.0.weight": torch.randn(2 * d, 2 * d, generator=g) * 0.2, "proj.0.bias": torch.zeros(2 * d),
        "proj.2.weight": torch.randn(d, 2 * d, generator=g) * 0.2, "proj.2.bias": torch.zeros(d),
    }


def visual_adapter(x, t, first, second):
    y = F.linear(F.relu(F.linear(x, t[f"{first}.weight"], t[f"{first}.bias"])), t[f"{second}.weight"], t[f"{second}.bias"])
    return y + F.layer_norm(y, (y.shape[-1],), t["pre_norm.weight"], t["pre_norm.bias"])


@pytest.fixture(scope="module")
def siglip_folder(tmp_path_factory):
    """A tiny random SigLIP saved as an HF folder, as the authors' `encoder_path` would be."""
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel

    folder = tmp_path_factory.mktemp("siglip")
    torch.manual_seed(0)
    config = SiglipConfig(
        text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                         vocab_size=64, max_position_embeddings=16),
        vision_config=dict(TOWER, image_size=64),
    )
    SiglipModel(config).save_pretrained(str(folder))
    SiglipImageProcessorPil(size={"height": 64, "width": 64}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(str(folder))
    return folder


def authors_features(folder, images):
    """Their SiglipEncoder: AutoModel(...).vision_model on SiglipImageProcessor's pixels."""
    from transformers import AutoModel, SiglipImageProcessorPil

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vision = AutoModel.from_pretrained(str(folder)).vision_model.eval()
        processor = SiglipImageProcessorPil.from_pretrained(str(folder))
    with torch.no_grad():
        pixels = processor([__import__("PIL.Image").Image.fromarray(i) for i in images], return_tensors="pt")["pixel_values"]
        return vision(pixels).last_hidden_state


def official_greedy(lm_path, inputs_embeds, max_new_tokens):
    """The official package, fed (already ln0-normalised) embeddings one at a time with
    `forward_one_alt`; then greedy with token 0 banned and token 24 stopping, as the authors'
    PIPELINE_ARGS (top_p=0) do."""
    from rwkv.model import RWKV

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = RWKV(model=str(lm_path)[: -len(".pth")], strategy="cpu fp32")
    state = model.generate_zero_state()
    with torch.no_grad():
        for x in inputs_embeds:
            logits, state = model.forward_one_alt(x, state)
        first_logits, out = logits.clone(), []
        for _ in range(max_new_tokens):
            logits = logits.clone()
            logits[0] = -float("inf")
            token = int(logits.argmax())
            if token == 24:
                break
            out.append(token)
            logits, state = model.forward_one_alt(model.z["emb.weight"][token], state)
    return first_logits, out


def spliced(lm_sd, ids, features):
    """The authors' splice: embeddings of the ids, 65532 positions replaced in order, ln0 over all."""
    x = lm_sd["emb.weight"][torch.tensor(ids)].clone()
    x[torch.tensor(ids) == 65532] = features.reshape(-1, x.shape[-1])
    return F.layer_norm(x, (x.shape[-1],), lm_sd["blocks.0.ln0.weight"], lm_sd["blocks.0.ln0.bias"])


def reply_ids(result):
    """The reply without the stop token (which the authors' loop does not keep)."""
    return result.token_ids[:-1] if result.stop == 24 else result.token_ids


# --- prompt ids, token for token ------------------------------------------------------------------


@pytest.fixture(scope="module")
def current_model():
    """A current-era release with a 384 px SigLIP: 576 positions per image, as the authors hard-code."""
    encoder = build_encoder("siglip2", config=dict(TOWER, image_size=384))
    released = {f"llm.{k}": v for k, v in random_official_state_dict(LM, seed=2).items()}
    released.update({f"proj.{k}": v for k, v in adapter_tensors(16, LM.n_embd, 4, ("mlp.0", "mlp.2"), 0).items()})
    return released, encoder


def test_current_release_prompt_ids_equal_the_authors(tmp_path, current_model, authors_tok):
    released, encoder = current_model
    torch.save(released, tmp_path / "rwkv7-siglip2.pth")
    pipe = ModRWKVPipeline.from_pretrained(tmp_path / "rwkv7-siglip2.pth", encoder=encoder)
    assert (pipe.template.name, pipe.processor.splice) == ("worldrwkv", "turn_start")
    block = START + PAD * 576 + END
    for n_images in (1, 2):
        prompt = pipe.encode("What is unusual about this image?", images=[picture(i) for i in range(n_images)])
        want = authors_tok.encode("\x16User:" + block * n_images + "What is unusual about this image?\x17\x16Assistant:")
        assert list(prompt.ids) == want
        assert want[3] == 65530 and want.count(65532) == 576 * n_images
    # multi-turn training sample: the image marker of LLaVA data, both assistant turns labelled whole
    sample = Sample([Message("user", "<image>\nWhat is it?"), Message("assistant", "A cat."),
                     Message("user", "Colour?"), Message("assistant", "Black (mostly).")], images=[picture(0)])
    processed = pipe.model.processor()(sample)
    pieces = [("\x16User:" + block + "What is it?\x17", False), ("\x16Assistant:A cat.\x17", True),
              ("\x16User:Colour?\x17", False), ("\x16Assistant:Black (mostly).\x17", True)]
    prefix = len(authors_tok.encode("\x16Assistant:"))
    want_ids, want_labels, without_prefix = [], [], []
    for text, supervised in pieces:
        ids = authors_tok.encode(text)
        want_ids += ids
        want_labels += ids if supervised else [IGNORE_INDEX] * len(ids)
        without_prefix += [IGNORE_INDEX] * prefix + ids[prefix:] if supervised else [IGNORE_INDEX] * len(ids)
    assert processed.input_ids.tolist() == want_ids
    assert processed.labels.tolist() == want_labels
    # opting out of the authors' loss mask leaves the role prefix unlabelled
    assert pipe.model.processor(supervise_prefix=False)(sample).labels.tolist() == without_prefix
    # user text cannot forge the special tokens
    forged = pipe.encode(f"{START}{PAD}hi")
    assert 65530 not in forged.ids and 65532 not in forged.ids


def test_paper_release_prompt_ids_equal_the_authors(tmp_path, authors_tok):
    encoder = build_encoder("siglip", config=dict(TOWER, image_size=64))
    released = random_official_state_dict(LM, seed=2)
    released.update({f"modality.world_encoder.adapter.{k}": v
                     for k, v in adapter_tensors(16, LM.n_embd, 2, ("proj.0", "proj.2"), 0).items()})
    torch.save(released, tmp_path / "paper.pth")
    pipe = ModRWKVPipeline.from_pretrained(tmp_path / "paper.pth", encoder=encoder)
    assert (pipe.template.name, pipe.processor.splice) == ("rwkv", "prefix")
    assert pipe.model.adapters["image"].config.hidden_mult == 2
    prompt = pipe.encode("<image>\nWhat is in the image?", images=[picture(0)])
    media = [pipe.model.placeholder_ids["image"]] * 16
    assert list(prompt.ids) == media + authors_tok.encode("\x16User: What is in the image?\x17\x16Assistant:")
    sample = Sample([Message("user", "<image>\nQ?"), Message("assistant", "Yes.")], images=[picture(0)])
    processed = pipe.model.processor(supervise_prefix=True)(sample)
    answer = authors_tok.encode("\x16Assistant: Yes.\x17")
    assert processed.input_ids.tolist() == media + authors_tok.encode("\x16User: Q?\x17") + answer
    assert processed.labels.tolist()[-len(answer):] == answer
    # --released-format overrides what the keys say
    forced = ModRWKVPipeline.from_pretrained(tmp_path / "paper.pth", encoder=encoder, prompt_format="current")
    assert forced.template.name == "worldrwkv"


def test_asr_in_the_authors_layout(tmp_path, authors_tok):
    """Paper-era speech: audio first, then "\\x16Assistant: transcript\\x17", no user turn."""
    encoder = build_encoder("whisper", config=dict(d_model=16, encoder_layers=1, decoder_layers=1,
                                                   encoder_attention_heads=2, decoder_attention_heads=2,
                                                   encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=80,
                                                   max_source_positions=1500))
    released = random_official_state_dict(LM, seed=2)
    released.update({f"modality.world_encoder.adapter.{k}": v for k, v in speech_tensors(16, LM.n_embd, 0).items()})
    torch.save(released, tmp_path / "asr.pth")
    model = ModRWKV.from_released_checkpoint(tmp_path / "asr.pth", encoder)
    assert (model.template_name, model.splice, model.adapters["audio"].config.kind) == ("rwkv", "prefix", "speech")
    audio = (0.1 * np.random.default_rng(0).standard_normal(16000).astype(np.float32), 16000)
    sample = asr_to_sample({"audio": audio, "text": "hello world"}, prompt=None)
    processed = model.processor(supervise_prefix=True)(sample)
    n = int((processed.input_ids == model.placeholder_ids["audio"]).sum())
    text = authors_tok.encode("\x16Assistant: hello world\x17")
    assert n > 0 and processed.input_ids.tolist() == [model.placeholder_ids["audio"]] * n + text
    assert processed.labels.tolist() == [IGNORE_INDEX] * n + text
    pipe = ModRWKVPipeline(model)
    prompt = pipe.encode([{"role": "user", "content": "<audio>"}], audio=[audio])
    assert list(prompt.ids)[n:] == authors_tok.encode("\x16Assistant:")
    # `modrwkv eval librispeech` asks a released speech model the same way, and the layout survives saving
    assert LibriSpeech().transcription_prompt(pipe.model.asr_prompt) == "<audio>"
    model.save_pretrained(tmp_path / "saved")
    assert ModRWKV.from_pretrained(tmp_path / "saved").asr_prompt is None
    ours = ModRWKV.build(make_model(LM), {"audio": encoder})
    assert LibriSpeech().transcription_prompt(ModRWKVPipeline(ours).model.asr_prompt) == ASR_PROMPT


# --- greedy replies against the official package ---------------------------------------------------


@pytest.mark.parametrize("n_images", [1, 2])
def test_current_release_replies_equal_official_rwkv(tmp_path, siglip_folder, authors_tok, n_images):
    lm_sd = random_official_state_dict(LM, seed=5)
    proj = adapter_tensors(16, LM.n_embd, 4, ("mlp.0", "mlp.2"), 1)
    torch.save({**{f"llm.{k}": v for k, v in lm_sd.items()}, **{f"proj.{k}": v for k, v in proj.items()}},
               tmp_path / "release.pth")
    torch.save(lm_sd, tmp_path / "lm.pth")
    images = [picture(i, size=(40 + 8 * i, 56)) for i in range(n_images)]
    question = "Describe the picture."
    ids = authors_tok.encode("\x16User:" + (START + PAD * 16 + END) * n_images + question + "\x17\x16Assistant:")
    features = visual_adapter(authors_features(siglip_folder, images), proj, "mlp.0", "mlp.2")
    want_logits, want = official_greedy(tmp_path / "lm.pth", spliced(lm_sd, ids, features), max_new_tokens=12)

    pipe = ModRWKVPipeline.from_pretrained(tmp_path / "release.pth", encoder="siglip2", encoder_source=str(siglip_folder))
    logits = pipe.engine.prefill(pipe.encode(question, images=images)).logits.reshape(-1)
    assert (logits - want_logits).abs().max() <= 1e-4
    stream = pipe.chat_stream(question, images=images, temperature=0, max_new_tokens=12)
    list(stream)
    assert stream.result.prompt_ids == ids
    assert reply_ids(stream.result) == want and len(want) >= 3


def test_paper_release_replies_equal_official_rwkv(tmp_path, siglip_folder, authors_tok):
    lm_sd = random_official_state_dict(LM, seed=6)
    adapter = adapter_tensors(16, LM.n_embd, 2, ("proj.0", "proj.2"), 2)
    torch.save({**lm_sd, **{f"modality.world_encoder.adapter.{k}": v for k, v in adapter.items()}}, tmp_path / "p.pth")
    torch.save(lm_sd, tmp_path / "lm.pth")
    image = picture(3)
    ids = authors_tok.encode("\x16User: What is this?\x17\x16Assistant:")
    features = visual_adapter(authors_features(siglip_folder, [image]), adapter, "proj.0", "proj.2")[0]
    x = torch.cat([features, lm_sd["emb.weight"][torch.tensor(ids)]])  # f15e179: media prepended, then ln0
    x = F.layer_norm(x, (x.shape[-1],), lm_sd["blocks.0.ln0.weight"], lm_sd["blocks.0.ln0.bias"])
    want_logits, want = official_greedy(tmp_path / "lm.pth", x, max_new_tokens=12)
    pipe = ModRWKVPipeline.from_pretrained(tmp_path / "p.pth", encoder="siglip2", encoder_source=str(siglip_folder))
    logits = pipe.engine.prefill(pipe.encode("<image>\nWhat is this?", images=[image])).logits.reshape(-1)
    assert (logits - want_logits).abs().max() <= 1e-4
    stream = pipe.chat_stream("<image>\nWhat is this?", images=[image], temperature=0, max_new_tokens=12)
    list(stream)
    assert reply_ids(stream.result) == want and len(want) >= 3


# --- every released key family -------------------------------------------------------------------


def _load(tmp_path, tensors, encoder, name="x.pth"):
    torch.save(tensors, tmp_path / name)
    return ModRWKV.from_released_checkpoint(tmp_path / name, encoder)


def test_every_released_family_loads(tmp_path):
    siglip = dict(TOWER, image_size=64)
    whisper = dict(d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                   encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=80, max_source_positions=1500)
    lm_sd = random_official_state_dict(LM, seed=2)
    llm = {f"llm.{k}": v for k, v in lm_sd.items()}
    d = LM.n_embd
    # current vision, with the Conv1d compression
    proj = adapter_tensors(16, d, 4, ("mlp.0", "mlp.2"), 0, conv=True)
    model = _load(tmp_path, {**llm, **{f"proj.{k}": v for k, v in proj.items()}}, build_encoder("siglip2", config=siglip))
    assert model.adapters["image"].config.compression == (3, 2)
    assert torch.equal(model.adapters["image"].conv.weight, proj["conv.weight"])
    assert torch.equal(model.lm.blocks[1].att.w1, lm_sd["blocks.1.att.w1"])
    # current speech, under proj.* and under encoder.adapter.*
    speech = speech_tensors(16, d, 0)
    for prefix in ("proj.", "encoder.adapter."):
        model = _load(tmp_path, {**llm, **{prefix + k: v for k, v in speech.items()}}, build_encoder("whisper", config=whisper))
        adapter = model.adapters["audio"]
        assert adapter.config.kind == "speech" and torch.equal(adapter.mlp[2].weight, speech["proj.2.weight"])
        assert model.template_name == "rwkv" and model.splice == "prefix"
    # paper-era speech
    model = _load(tmp_path, {**lm_sd, **{f"modality.world_encoder.adapter.{k}": v for k, v in speech.items()}},
                  build_encoder("whisper", config=whisper))
    assert torch.equal(model.adapters["audio"].conv.weight, speech["conv.weight"])
    # a trained encoder released with the model (current: encoder.model.* = the SigLIP vision_model)
    donor = build_encoder("siglip2", config=siglip)
    trained = {f"encoder.model.{k.removeprefix('vision_model.')}": v + 1 for k, v in donor.model.state_dict().items()}
    encoder = build_encoder("siglip2", config=siglip)
    model = _load(tmp_path, {**llm, **{f"proj.{k}": v for k, v in proj.items()}, **trained}, encoder)
    key = next(iter(donor.model.state_dict()))
    assert torch.equal(model.encoders["image"].model.state_dict()[key], donor.model.state_dict()[key] + 1)
    model.save_pretrained(tmp_path / "saved")  # the release's encoder weights are kept, not its source's
    again = ModRWKV.from_pretrained(tmp_path / "saved")
    assert torch.equal(again.encoders["image"].model.state_dict()[key], donor.model.state_dict()[key] + 1)
    assert again.template_name == "worldrwkv" and again.special_tokens == SPECIAL


def test_unknown_and_broken_layouts_are_named(tmp_path):
    encoder = build_encoder("siglip2", config=dict(TOWER, image_size=64))
    lm_sd = random_official_state_dict(LM, seed=2)
    with pytest.raises(CheckpointError, match=r"found .*blocks\.N\.att\.\* .*decoder\.fc\.\* \(1\)"):
        _load(tmp_path, {**lm_sd, "decoder.fc.weight": torch.zeros(2)}, encoder)
    proj = {f"proj.{k}": v for k, v in adapter_tensors(16, LM.n_embd, 4, ("mlp.0", "mlp.2"), 0).items()}
    del proj["proj.pre_norm.bias"]
    with pytest.raises(CheckpointError, match=r"missing keys \['pre_norm.bias'\]"):
        _load(tmp_path, {**{f"llm.{k}": v for k, v in lm_sd.items()}, **proj}, encoder)
    broken = {f"llm.{k}": v for k, v in lm_sd.items() if k != "blocks.1.ffn.key.weight"}
    proj = {f"proj.{k}": v for k, v in adapter_tensors(16, LM.n_embd, 4, ("mlp.0", "mlp.2"), 0).items()}
    with pytest.raises(CheckpointError, match=r"x\.pth does not match the RWKV-7 model: missing keys \['blocks\.1\.ffn\.key\.weight'\]"):
        _load(tmp_path, {**broken, **proj}, encoder)
    # a speech release given an image encoder of the same width (Whisper-small and SigLIP2-base: 768 both)
    speech = {f"modality.world_encoder.adapter.{k}": v for k, v in speech_tensors(16, LM.n_embd, 0).items()}
    with pytest.raises(CheckpointError, match=r"speech\.pth is a speech release \(its adapter is the authors' SpeechAdapter: "
                       r"conv, proj\.0, proj\.2\): it reads audio; pass an audio encoder \(whisper or wavlm\), not the "
                       r"image encoder 'siglip2'"):
        _load(tmp_path, {**lm_sd, **speech}, encoder, name="speech.pth")
    # and the reverse, a vision release given an audio encoder of the same width, in the same check
    whisper = build_encoder("whisper", config=dict(d_model=16, encoder_layers=1, decoder_layers=1,
                                                   encoder_attention_heads=2, decoder_attention_heads=2,
                                                   encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=80,
                                                   max_source_positions=1500))
    vision = {f"proj.{k}": v for k, v in adapter_tensors(16, LM.n_embd, 4, ("mlp.0", "mlp.2"), 0).items()}
    with pytest.raises(CheckpointError, match=r"/vision\.pth is a vision release \(its adapter is the authors' "
                       r"VisualAdapter, with pre_norm\): it reads images; pass an image encoder \(e\.g\. siglip2\), "
                       r"not the audio encoder 'whisper'$"):
        _load(tmp_path, {**{f"llm.{k}": v for k, v in lm_sd.items()}, **vision}, whisper, name="vision.pth")
    from modrwkv.lm import load_model

    with pytest.raises(CheckpointError, match=r"x\.pth is a ModRWKV checkpoint \(it holds llm\.\*, proj\.\* keys\)"):
        load_model(tmp_path / "x.pth")


def test_one_lm_path_serves_every_loader(tmp_path):
    """load_model, from_pretrained and the released formats give the same LM, and fail the same way."""
    from modrwkv.lm import load_model, save_model

    lm = make_model(LM, seed=4)
    save_model(lm, tmp_path / "folder")
    torch.save({k: v for k, v in lm.state_dict().items()}, tmp_path / "lm.pth")
    ids = torch.tensor([[1, 500, 24, 65000]])
    want = lm(ids).logits
    assert torch.equal(load_model(tmp_path / "folder")(ids).logits, want)
    encoder = build_encoder("siglip2", config=dict(TOWER, image_size=64))
    proj = {f"proj.{k}": v for k, v in adapter_tensors(16, LM.n_embd, 4, ("mlp.0", "mlp.2"), 0).items()}
    released = _load(tmp_path, {**{f"llm.{k}": v for k, v in lm.state_dict().items()}, **proj}, encoder)
    assert torch.equal(released.lm(ids).logits, want)
    released.save_pretrained(tmp_path / "mm")
    assert torch.equal(ModRWKV.from_pretrained(tmp_path / "mm").lm(ids).logits, want)


def test_cli_reads_the_format_from_the_keys_and_the_flag_overrides_it(tmp_path, siglip_folder, capsys):
    from modrwkv.cli import _load_pipeline, build_parser, main

    released = {f"llm.{k}": v for k, v in random_official_state_dict(LM, seed=2).items()}
    released.update({f"proj.{k}": v for k, v in adapter_tensors(16, LM.n_embd, 4, ("mlp.0", "mlp.2"), 0).items()})
    torch.save(released, tmp_path / "r.pth")
    common = ["chat", "--model", str(tmp_path / "r.pth"), "--encoder", "siglip2", "--encoder-source", str(siglip_folder)]
    for extra, template in (([], "worldrwkv"), (["--released-format", "paper"], "rwkv")):
        pipe = _load_pipeline(build_parser().parse_args(common + extra))
        assert pipe.template.name == template
    assert main(["chat", "--model", str(tmp_path / "r.pth"), "--released-format", "paper"]) != 0
    assert "--released-format applies to released checkpoints" in capsys.readouterr().err
    # the mistakes docs/authors-checkpoints.md's commands invite, answered in the command's own terms
    assert main(["chat", "--model", str(tmp_path / "r.pth")]) == 2
    assert "its encoder is not in the file: name it, e.g. --encoder siglip2 --encoder-source " \
        "google/siglip2-base-patch16-384 (Python: encoder='siglip2'," in capsys.readouterr().err
    assert main(["import-released", str(tmp_path / "r.pth"), str(tmp_path / "folder"), "--encoder", "siglip2",
                 "--encoder-source", str(siglip_folder)]) == 0
    assert main(["chat", "--model", str(tmp_path / "folder"), "--encoder", "siglip2"]) == 2
    assert "is a ModRWKV folder with its own encoders; leave out --encoder (Python: encoder=)" in capsys.readouterr().err


def test_import_released_writes_a_folder_that_keeps_the_layout(tmp_path, siglip_folder, capsys):
    from modrwkv.cli import main

    released = {f"llm.{k}": v for k, v in random_official_state_dict(LM, seed=2).items()}
    released.update({f"proj.{k}": v for k, v in adapter_tensors(16, LM.n_embd, 4, ("mlp.0", "mlp.2"), 0).items()})
    torch.save(released, tmp_path / "r.pth")
    assert main(["import-released", str(tmp_path / "r.pth"), str(tmp_path / "out"), "--encoder", "siglip2",
                 "--encoder-source", str(siglip_folder)]) == 0
    folder = ModRWKVPipeline.from_pretrained(tmp_path / "out")
    direct = ModRWKVPipeline.from_pretrained(tmp_path / "r.pth", encoder="siglip2", encoder_source=str(siglip_folder))
    image = picture(1)
    assert folder.encode("Hi?", images=[image]).ids == direct.encode("Hi?", images=[image]).ids
    assert folder.chat("Hi?", images=[image], temperature=0, max_new_tokens=6) == \
        direct.chat("Hi?", images=[image], temperature=0, max_new_tokens=6)


def test_a_missing_release_is_named_before_its_encoder_is_built(tmp_path, monkeypatch, capsys):
    """docs/authors-checkpoints.md's commands with a mistyped .pth: the file is named at once, not
    after the encoder's hub id has been retried for half a minute offline."""
    import modrwkv.encoders
    import modrwkv.inference.pipeline
    from modrwkv.cli import main

    def no_encoder(*args, **kwargs):
        raise AssertionError("the encoder was built before the checkpoint was found")

    monkeypatch.setattr(modrwkv.inference.pipeline, "build_encoder", no_encoder)
    monkeypatch.setattr(modrwkv.encoders, "build_encoder", no_encoder)
    missing = str(tmp_path / "rwkv7-0.4b-siglip2.pth")
    encoder = ["--encoder", "siglip2", "--encoder-source", "google/siglip2-base-patch16-384"]
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*rwkv7-0.4b-siglip2.pth"):
        ModRWKVPipeline.from_pretrained(missing, encoder="siglip2", encoder_source="google/siglip2-base-patch16-384")
    for command in (["chat", "--model", missing, *encoder], ["import-released", missing, str(tmp_path / "out"), *encoder]):
        assert main(command) == 2
        assert f"error: no checkpoint at {missing}" in capsys.readouterr().err


def test_tokenizer_special_tokens(authors_tok):
    from modrwkv.tokenizer import WorldTokenizer

    plain, special = WorldTokenizer(), WorldTokenizer(special_tokens=SPECIAL)
    text = f"x <{PAD}>{START}\x16User:{END}é"
    assert special.encode(text) == authors_tok.encode(text)
    assert special.encode_batch([text, "plain"]) == [authors_tok.encode(text), plain.encode("plain")]
    assert 65532 not in plain.encode(text) and special.decode(special.encode(text)) == text
    assert special.vocab_size == 65536 and special.token_bytes(65531) == END.encode()
    with pytest.raises(ValueError, match="already uses"):
        WorldTokenizer(special_tokens={"<x>": 100})
    with pytest.raises(ValueError, match="share ids"):
        WorldTokenizer(special_tokens={"<x>": 65530, "<y>": 65530})


def test_an_imported_release_fine_tunes_in_its_own_layout(tmp_path, siglip_folder):
    from modrwkv.cli import main
    from modrwkv.training import train

    released = {f"llm.{k}": v for k, v in random_official_state_dict(LM, seed=2).items()}
    released.update({f"proj.{k}": v for k, v in adapter_tensors(16, LM.n_embd, 4, ("mlp.0", "mlp.2"), 0).items()})
    torch.save(released, tmp_path / "r.pth")
    assert main(["import-released", str(tmp_path / "r.pth"), str(tmp_path / "imported"), "--encoder", "siglip2",
                 "--encoder-source", str(siglip_folder)]) == 0
    samples = [Sample([Message("user", "<image>\nWhat is it?"), Message("assistant", f"Picture {i}.")],
                      images=[picture(i)], source=f"s{i}") for i in range(4)]
    result = train({
        "model": {"init_from": str(tmp_path / "imported"), "ctx_len": 64},
        "data": {"format": "llava", "train": ["unused.json"], "supervise_prefix": True},
        "train": {"stage": "1", "max_steps": 2, "batch_size": 2, "micro_batch_size": 2, "lr": 1e-2, "warmup_steps": 0},
        "runtime": {"accelerator": "cpu", "devices": 1, "precision": "32"},
        "output": {"dir": str(tmp_path / "ft"), "save_every": 0, "progress_bar": False, "log_every": 1},
    }, samples=samples)
    assert len(result.history) == 2
    tuned = ModRWKV.from_pretrained(result.final_dir)
    assert (tuned.template_name, tuned.splice, tuned.special_tokens) == ("worldrwkv", "turn_start", SPECIAL)
    assert not torch.equal(tuned.adapters["image"].mlp[0].weight, released["proj.mlp.0.weight"])
    assert torch.equal(tuned.lm.blocks[0].att.w1, released["llm.blocks.0.att.w1"])  # stage 1: LM frozen
