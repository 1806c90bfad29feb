"""ModRWKV end to end on tiny random encoders: token counts, splicing, gradients, persistence."""

import json
import re
import shutil

import numpy as np
import pytest
import torch

from conftest import make_model
from modrwkv.adapters import AdapterConfig
from modrwkv.data.sample import Message, Sample
from modrwkv.encoders import build_encoder
from modrwkv.lm import RWKV7Config
from modrwkv.lm.random_weights import random_official_state_dict
from modrwkv.multimodal import CachedEncoder, ModRWKV
from modrwkv.processing import PLACEHOLDER_IDS
from modrwkv.tokenizer import WorldTokenizer

TOWER = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
ENCODER_CASES = {
    "siglip2": dict(config=dict(TOWER, image_size=384, patch_size=16)),
    "siglip": dict(config=dict(TOWER, image_size=384, patch_size=16)),
    "clip": dict(config=dict(TOWER, image_size=336, patch_size=14)),
    "tiny": dict(width=32),
    "whisper": dict(config=dict(d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                                decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                                num_mel_bins=80, max_source_positions=1500)),
    "wavlm": dict(config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                              conv_dim=(8,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                              num_buckets=32, max_bucket_distance=80)),
    "wavenet": dict(layers=2, output_dim=24),
}
# World vocabulary (65536) so the real tokenizer can be used; small width keeps it fast.
LM = RWKV7Config(n_layer=2, n_embd=64, vocab_size=65536, dim_w=32, dim_a=32, dim_v=32, dim_g=32)


def lm():
    return make_model(LM, seed=1)


def item_for(modality, seed=0):
    rng = np.random.default_rng(seed)
    if modality == "image":
        return rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    if modality == "audio":
        return (0.1 * rng.standard_normal(16000 * 3).astype(np.float32), 16000)  # 3 s
    return np.cumsum(rng.standard_normal(40)).astype(np.float32)


def sample_for(modality, n_items=1, answer="yes"):
    marker = {"image": "<image>", "audio": "<audio>", "series": "<series>"}[modality]
    items = [item_for(modality, i) for i in range(n_items)]
    kwargs = {"image": "images", "audio": "audios", "series": "series"}
    text = " and ".join([marker] * n_items) + "\nWhat is it?"
    return Sample([Message("user", text), Message("assistant", answer)], **{kwargs[modality]: items})


@pytest.fixture(scope="module")
def tok():
    return WorldTokenizer()


# Compression belongs to the MLP adapter; audio uses the speech adapter.
COMBINATIONS = [(n, None) for n in ENCODER_CASES] + [(n, (3, 2)) for n in ENCODER_CASES if n not in ("whisper", "wavlm")]


@pytest.mark.parametrize("name,compression", COMBINATIONS)
def test_token_counts_for_every_encoder_and_adapter(name, compression, tok):
    encoder = build_encoder(name, **ENCODER_CASES[name])
    model = ModRWKV.build(lm(), {encoder.modality: encoder}, {encoder.modality: AdapterConfig(compression=compression)})
    processor = model.processor(tok)
    processed = processor(sample_for(encoder.modality, n_items=2))
    features = processed.media[encoder.modality][0].num_features
    adapter = model.adapters[encoder.modality]
    expected_tokens = adapter.output_length(features)
    if name in ("siglip2", "siglip"):
        assert features == 576
    elif name == "clip":
        assert features == 577
    if compression == (3, 2) and name == "clip":
        assert expected_tokens == 288
    if encoder.modality == "audio":
        assert expected_tokens == (features + 1) // 2 + 1  # speech adapter: k3 s2 p2
    pid = PLACEHOLDER_IDS[encoder.modality]
    assert processed.input_ids.tolist().count(pid) == 2 * expected_tokens
    batch = model.collator()([processed, processor(sample_for(encoder.modality, n_items=1))])
    with torch.no_grad():
        out = model.forward_batch(batch)
    assert torch.isfinite(out.loss)
    assert out.num_label_tokens == 2 * len(tok.encode(" yes") + [24])


def test_stage1_gradients_reach_only_the_adapter(tok):
    encoder = build_encoder("siglip", **ENCODER_CASES["siglip"])
    model = ModRWKV.build(lm(), {"image": encoder})
    model.lm.requires_grad_(False)
    batch = model.collator()([model.processor(tok)(sample_for("image"))])
    model.forward_batch(batch).loss.backward()
    assert all(p.grad is None for p in model.lm.parameters())
    assert all(p.grad is None for p in model.encoders.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.adapters.parameters())


def test_trainable_encoder_receives_gradients(tok):
    model = ModRWKV.build(lm(), {"series": build_encoder("wavenet", **ENCODER_CASES["wavenet"])})
    batch = model.collator()([model.processor(tok)(sample_for("series"))])
    model.forward_batch(batch).loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoders.parameters())


@torch.no_grad()
def test_prefix_equals_placeholder_at_the_start(tok):
    """Media first, then text: placeholder splicing and explicit concatenation agree exactly."""
    encoder = build_encoder("tiny", width=32)
    model = ModRWKV.build(lm(), {"image": encoder}).eval()
    prepared = encoder.prepare(item_for("image"))
    media = {"image": encoder.collate([prepared])}
    n = model.adapters["image"].output_length(prepared.num_features)
    text = tok.encode("\x16User: what colour?\x17")
    ids = torch.tensor([[PLACEHOLDER_IDS["image"]] * n + text])
    via_placeholder = model(ids, media).logits
    media_embeds = model.media_embeddings("image", media["image"])
    embeds = torch.cat([media_embeds[None], model.lm.embed(torch.tensor([text]))], dim=1)
    via_prefix = model.lm(inputs_embeds=embeds).logits
    assert torch.equal(via_placeholder, via_prefix)
    prefix_proc = model.processor(tok, splice="prefix")
    processed = prefix_proc(Sample([Message("user", "<image>\nwhat colour?")], images=[item_for("image")]))
    assert processed.input_ids.tolist()[:n] == [PLACEHOLDER_IDS["image"]] * n


@torch.no_grad()
def test_recurrent_inference_equals_parallel_on_spliced_sequence(tok):
    encoder = build_encoder("tiny", width=32)
    model = ModRWKV.build(lm(), {"image": encoder}).eval()
    processed = model.processor(tok)(sample_for("image", n_items=2), add_generation_prompt=False)
    batch = model.collator()([processed])
    embeds = model.embed(batch.input_ids, batch.media)
    parallel = model.lm(inputs_embeds=embeds).logits
    state, steps = None, []
    for t in range(embeds.shape[1]):
        out = model.lm(inputs_embeds=embeds[:, t : t + 1], state=state, logits="last")
        state = out.state
        steps.append(out.logits)
    torch.testing.assert_close(torch.stack(steps, 1), parallel, atol=1e-4, rtol=1e-4)


def test_count_mismatch_between_ids_and_media_is_an_error(tok):
    encoder = build_encoder("tiny", width=32)
    model = ModRWKV.build(lm(), {"image": encoder})
    media = {"image": encoder.collate([encoder.prepare(item_for("image"))])}
    with pytest.raises(ValueError, match="placeholder"):
        model(torch.tensor([[PLACEHOLDER_IDS["image"]] * 3]), media)
    with pytest.raises(ValueError, match="no image input"):
        model(torch.tensor([[PLACEHOLDER_IDS["image"]] * 3]))


@torch.no_grad()
def test_save_and_from_pretrained_round_trip(tmp_path, tok):
    encoders = {
        "image": build_encoder("tiny", width=32),  # trained: weights saved with the model
        "audio": build_encoder("whisper", **ENCODER_CASES["whisper"]),  # random config, no source: saved too
        "series": build_encoder("wavenet", **ENCODER_CASES["wavenet"]),
    }
    model = ModRWKV.build(lm(), encoders, {"image": AdapterConfig(compression=(3, 2), hidden_mult=2)}, template="classic").eval()
    model.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["template"] == "classic" and config["adapters"]["image"]["compression"] == [3, 2]
    again = ModRWKV.from_pretrained(tmp_path / "m")
    sample = Sample(
        [Message("user", "<audio> <image> <series> hi"), Message("assistant", "ok")],
        images=[item_for("image")], audios=[item_for("audio")], series=[item_for("series")],
    )
    outs = []
    for m in (model, again):
        batch = m.collator()([m.processor(tok)(sample)])
        outs.append(m.forward_batch(batch, logits="all"))
    assert torch.equal(outs[0].logits, outs[1].logits)
    assert again.processor(tok).template.name == "classic"


CONFIG_DAMAGE = [
    (lambda c: [c], "config.json must hold a JSON object, got a JSON array"),
    (lambda c: {k: v for k, v in c.items() if k != "lm"}, "missing field(s) ['lm']"),
    (lambda c: {**c, "lm": {**c["lm"], "n_layer": "two"}}, "'lm': RWKV7Config: n_layer must be an integer, got 'two'"),
    (lambda c: {**c, "lm": [2, 64]}, "'lm' must be a JSON object, got [2, 64]"),
    (lambda c: {**c, "encoders": {**c["encoders"], "image": 3}}, "every encoder needs an adapter"),
    (lambda c: {**c, "adapters": {"series": {**c["adapters"]["series"], "kind": "bogus"}}},
     "adapters.series: adapter kind must be 'mlp' or 'speech'"),
    (lambda c: {**c, "adapters": {"series": {**c["adapters"]["series"], "extra": 1}}}, "adapters.series:"),
    (lambda c: {**c, "encoders": {"series": {"layers": 2}}}, "encoders.series must be an object with a 'name'"),
    (lambda c: {**c, "ctx_len": "long"}, "'ctx_len' must be a positive integer or null"),
    (lambda c: {**c, "format": "other"}, "not a ModRWKV config (format='other')"),
]


@pytest.fixture(scope="module")
def saved_series_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved") / "m"
    ModRWKV.build(lm(), {"series": build_encoder("wavenet", **ENCODER_CASES["wavenet"])}).save_pretrained(folder)
    return folder


@pytest.mark.xdist_group("saved_series_model")  # one xdist worker builds the fixture's model, not both
@pytest.mark.parametrize("damage, message", CONFIG_DAMAGE, ids=[m[:30] for _, m in CONFIG_DAMAGE])
def test_damaged_config_json_is_a_clear_error(tmp_path, saved_series_model, damage, message):
    from modrwkv.inference import ModRWKVPipeline
    from modrwkv.lm import CheckpointError

    shutil.copytree(saved_series_model, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps(damage(config)))
    with pytest.raises(CheckpointError) as err:
        ModRWKV.from_pretrained(tmp_path / "m")
    assert str(err.value).startswith(str(tmp_path / "m" / "config.json")) and message in str(err.value)
    if "format=" in message:  # not a ModRWKV folder, as far as the pipeline can tell: the LM readers say why
        message = "has a config.json that does not describe a ModRWKV model (format='other'), but its"
    with pytest.raises(CheckpointError, match=re.escape(message)):
        ModRWKVPipeline.from_pretrained(tmp_path / "m")


def test_folder_problems_are_described(tmp_path, saved_series_model):
    from modrwkv.inference import ModRWKVPipeline
    from modrwkv.lm import CheckpointError

    shutil.copytree(saved_series_model, tmp_path / "m")
    (tmp_path / "m" / "config.json").rename(tmp_path / "config.json.bak")
    with pytest.raises(CheckpointError, match="m has no config.json, but its model.safetensors holds ModRWKV weights"):
        ModRWKVPipeline.from_pretrained(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="no config.json; not a ModRWKV model folder"):
        ModRWKV.from_pretrained(tmp_path / "m")
    (tmp_path / "config.json.bak").rename(tmp_path / "m" / "config.json")
    weights = sorted((tmp_path / "m").rglob("*.safetensors"))
    assert [p.relative_to(tmp_path / "m").as_posix() for p in weights] == ["encoders/series/model.safetensors",
                                                                            "model.safetensors"]
    for damaged in reversed(weights):  # the LM's and adapters' weights, then (read first) the encoder's
        damaged.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00garbage!")
        for load in (ModRWKV.from_pretrained, ModRWKVPipeline.from_pretrained):
            with pytest.raises(CheckpointError, match=f"{damaged}: cannot read as safetensors"):
                load(tmp_path / "m")


@torch.no_grad()
def test_released_checkpoint_layout(tmp_path, tok):
    """The authors' single file: proj.* (adapter, 4x hidden, optional conv) + llm.* (official LM)."""
    encoder = build_encoder("siglip", **ENCODER_CASES["siglip"])
    d_enc, d = encoder.output_dim, LM.n_embd
    g = torch.Generator().manual_seed(0)
    released = {f"llm.{k}": v for k, v in random_official_state_dict(LM, seed=2).items()}
    released.update({
        "proj.conv.weight": torch.randn(d_enc, d_enc, 3, generator=g),
        "proj.mlp.0.weight": torch.randn(4 * d, d_enc, generator=g) * 0.1,
        "proj.mlp.0.bias": torch.randn(4 * d, generator=g) * 0.1,
        "proj.mlp.2.weight": torch.randn(d, 4 * d, generator=g) * 0.1,
        "proj.mlp.2.bias": torch.randn(d, generator=g) * 0.1,
        "proj.pre_norm.weight": torch.ones(d),
        "proj.pre_norm.bias": torch.zeros(d),
    })
    torch.save(released, tmp_path / "rwkv7-siglip2.pth")
    model = ModRWKV.from_released_checkpoint(tmp_path / "rwkv7-siglip2.pth", encoder)
    adapter = model.adapters["image"]
    assert adapter.config.hidden_mult == 4 and adapter.config.compression == (3, 2)
    assert adapter.output_length(577) == 288 and adapter.output_length(576) == 287
    assert torch.equal(adapter.mlp[0].weight, released["proj.mlp.0.weight"])
    assert torch.equal(model.lm.blocks[1].att.w1, released["llm.blocks.1.att.w1"])
    processed = model.processor()(sample_for("image"))
    assert processed.input_ids.tolist().count(PLACEHOLDER_IDS["image"]) == 287  # 576 SigLIP tokens
    del released["proj.pre_norm.bias"]
    torch.save(released, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="pre_norm.bias"):
        ModRWKV.from_released_checkpoint(tmp_path / "broken.pth", encoder)


def test_feature_cache_reuses_encoder_outputs(tmp_path, tok):
    encoder = build_encoder("siglip", **ENCODER_CASES["siglip"])
    cached = CachedEncoder(encoder, tmp_path / "cache")
    image = item_for("image")
    first = cached.prepare(image)
    second = cached.prepare(image)
    assert (cached.misses, cached.hits) == (1, 1)
    direct = encoder.encode([image])[0]
    torch.testing.assert_close(second.tensors["features"], direct)
    model_plain = ModRWKV.build(lm(), {"image": encoder}).eval()
    model_cached = ModRWKV(model_plain.lm, {"image": cached}, dict(model_plain.adapters.items())).eval()
    sample = sample_for("image")
    with torch.no_grad():
        a = model_plain.forward_batch(model_plain.collator()([model_plain.processor(tok)(sample)]))
        b = model_cached.forward_batch(model_cached.collator()([model_cached.processor(tok)(sample)]))
    torch.testing.assert_close(a.loss, b.loss)
    assert first.num_features == 576
    with pytest.raises(ValueError, match="trainable"):
        CachedEncoder(build_encoder("tiny"), tmp_path / "c2")


class CountingSha256:
    """hashlib.sha256 that records how many bytes each call feeds it."""

    def __init__(self, hashed: list[int], real, data: bytes = b"") -> None:
        self._hashed, self._hash = hashed, real(data)
        hashed.append(len(data))

    def update(self, data) -> None:
        self._hashed.append(len(memoryview(data).cast("B")))
        self._hash.update(data)

    def digest(self) -> bytes:
        return self._hash.digest()

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def test_an_image_through_the_feature_cache_is_hashed_once(tmp_path, tok, monkeypatch):
    """A prompt's image is hashed once, for the feature cache's key; the prefix-state cache reuses
    that digest (the same picture matches, another does not) instead of hashing the features."""
    import hashlib

    from modrwkv.inference.prompt import encode_sample

    encoder = build_encoder("siglip", **ENCODER_CASES["siglip"])
    cached = CachedEncoder(encoder, tmp_path / "cache")
    plain = ModRWKV.build(lm(), {"image": encoder})
    model = ModRWKV(plain.lm, {"image": cached}, dict(plain.adapters.items())).eval()
    processor = model.processor(tok, ctx_len=None)
    sample = Sample([Message("user", "<image>\nWhat is it?")], images=[item_for("image", 3)])
    pixels = encoder.prepare(item_for("image", 3)).tensors["pixel_values"]
    for misses in (1, 1):  # a miss computes and stores the features, then a hit reads them: one hash each time
        hashed: list[int] = []
        monkeypatch.setattr(hashlib, "sha256", lambda data=b"", real=hashlib.sha256: CountingSha256(hashed, real, data))
        first = encode_sample(processor, sample)
        monkeypatch.undo()
        assert cached.misses == misses
        assert sum(n for n in hashed if n >= 1024) == pixels.numel() * pixels.element_size()
    again = encode_sample(processor, Sample([Message("user", "<image>\nAgain?")], images=[item_for("image", 3)]))
    other = encode_sample(processor, Sample([Message("user", "<image>\nWhat is it?")], images=[item_for("image", 4)]))
    assert again.spans[0].digest == first.spans[0].digest != other.spans[0].digest
    end = first.spans[0].end
    assert first.digest(end) != other.digest(end) and first.ids[:end] == other.ids[:end]


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_saved_weights_are_as_readable_as_the_files_beside_them(tmp_path, umask):
    """safetensors 0.8 creates its files with mode 0600 whatever the umask (safetensors#782): another
    account (a serving user, a teammate) could read a saved model's config.json but not its weights.
    Every file of a saved ModRWKV (its LM, encoder, tuned initial state), a saved state and an fla
    export gets the mode the umask gives a new file, as config.json does."""
    import os
    import stat

    from modrwkv.lm.export import export_model

    previous = os.umask(umask)
    try:
        model = ModRWKV.build(lm(), {"series": build_encoder("wavenet", **ENCODER_CASES["wavenet"])})
        model.lm.set_initial_state(torch.zeros(LM.n_layer, LM.n_embd // 64, 64, 64))
        model.save_pretrained(tmp_path / "m")
        model.lm.init_state().save(tmp_path / "conversation.state")
        export_model(tmp_path / "m", tmp_path / "fla", "fla")
    finally:
        os.umask(previous)
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    weights = [path.relative_to(tmp_path).as_posix() for path in files if path.suffix in (".safetensors", ".state")]
    assert {"m/model.safetensors", "m/state.safetensors", "m/encoders/series/model.safetensors",
            "conversation.state", "fla/model.safetensors"} <= set(weights)
    assert {path.name: oct(stat.S_IMODE(path.stat().st_mode)) for path in files} == {
        path.name: oct(0o666 & ~umask) for path in files}


@torch.no_grad()
def test_two_images_of_a_record_reach_their_own_placeholders_in_order(tmp_path, tok):
    """A LLaVA record with two images (scikit-learn's handwritten 0 and 1) and text between them:
    training (reader -> processor) and `--task custom` evaluation (file -> prompt -> pipeline) give
    the same tokens, the first image's adapter output fills the first placeholder run and the second
    the second (equal to splicing them in by hand), and swapping the images changes the prediction."""
    from PIL import Image
    from sklearn.datasets import load_digits

    from modrwkv.data.readers import LlavaReader
    from modrwkv.evaluation.tasks import CustomTask
    from modrwkv.inference import ModRWKVPipeline

    digits = load_digits()
    pictures = [np.round(digits.images[list(digits.target).index(d)] * 255 / 16).astype(np.uint8) for d in (0, 1)]
    for d, pixels in enumerate(pictures):
        Image.fromarray(pixels, mode="L").save(tmp_path / f"{d}.png")
    turn = "First: <image>\nSecond: <image>\nWhat are the two digits, in order?"
    for name, order, reply in (("in_order", ["0.png", "1.png"], "0, 1"), ("swapped", ["1.png", "0.png"], "1, 0")):
        (tmp_path / f"{name}.jsonl").write_text(json.dumps({"image": order, "conversations": [
            {"from": "human", "value": turn}, {"from": "gpt", "value": reply}]}) + "\n")
    encoder = build_encoder("tiny", image_size=16, grid=2, width=32)
    model = ModRWKV.build(lm(), {"image": encoder}).eval()
    pipeline = ModRWKVPipeline(model, tok)

    def spliced_by_hand(ids: torch.Tensor, files: list[str]) -> torch.Tensor:
        """Text embeddings with each placeholder run replaced by one image's adapter output."""
        is_image = ids == PLACEHOLDER_IDS["image"]
        embeds = model.lm.embed(torch.where(is_image, 0, ids)[None])[0]
        starts = [i for i in range(len(ids)) if is_image[i] and (i == 0 or not is_image[i - 1])]
        assert len(starts) == 2 and not is_image[starts[0]:starts[1]].all()  # two runs, text between them
        for start, file in zip(starts, files, strict=True):
            image = model.media_embeddings("image", encoder.collate([encoder.prepare(str(tmp_path / file))]))
            embeds[start:start + len(image)] = image
        return embeds

    last_logits = {}
    for name, files in (("in_order", ["0.png", "1.png"]), ("swapped", ["1.png", "0.png"])):
        sample = next(iter(LlavaReader(tmp_path / f"{name}.jsonl")))
        assert sample.images == [str(tmp_path / f) for f in files]
        processed = model.processor(tok)(sample)
        question = CustomTask().load(tmp_path / f"{name}.jsonl", "all")[0]
        asked = pipeline.encode(question.prompt, images=question.images).ids
        assert list(asked) == processed.input_ids.tolist()[:len(asked)]  # the answer follows the same prompt
        batch = model.collator()([processed])
        logits = model(batch.input_ids, batch.media).logits[0]
        by_hand = model.lm(inputs_embeds=spliced_by_hand(processed.input_ids, files)[None]).logits[0]
        # Two paths to the same sums, in different orders (threads): 1.1e-5 apart was seen. A wrong image in
        # a run moves the logits by more than 1e-3 (the swapped check below).
        torch.testing.assert_close(logits, by_hand, atol=1e-4, rtol=1e-4)
        last_logits[name] = logits[len(asked) - 1]
    assert not torch.allclose(last_logits["in_order"], last_logits["swapped"], atol=1e-3)
