"""The inference pipeline, multi-turn sessions, the prefix-state cache and `modrwkv chat`, on a tiny
random ModRWKV (image, audio and series encoders; World vocabulary so the real tokenizer works)."""

import atexit
import base64
import functools
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_model
from PIL import Image
from safetensors.torch import save_file

from modrwkv.data.sample import Message, Sample
from modrwkv.encoders import build_encoder
from modrwkv.inference import ModRWKVPipeline, encode_sample
from modrwkv.lm import RWKV7Config, save_model
from modrwkv.lm.checkpoint import CheckpointError
from modrwkv.lm.random_weights import random_official_state_dict
from modrwkv.multimodal import ModRWKV
from modrwkv.processing import PLACEHOLDER_IDS
import warm_start  # noqa: E402  (tests/)

LM = RWKV7Config(n_layer=2, n_embd=64, vocab_size=65536, dim_w=32, dim_a=32, dim_v=32, dim_g=32)
WHISPER = dict(d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
               encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=80, max_source_positions=1500)
SIGLIP = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=384,
              patch_size=16)
GREEDY = dict(temperature=0, max_new_tokens=8)


@functools.cache
def tiny_model_dir() -> Path:
    """A saved tiny ModRWKV, built once per test process (the server and web tests load it too)."""
    folder = Path(tempfile.mkdtemp(prefix="modrwkv-tiny-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    torch.manual_seed(0)
    encoders = {
        "image": build_encoder("tiny", width=32),
        "audio": build_encoder("whisper", config=WHISPER),
        "series": build_encoder("wavenet", layers=2, output_dim=24),
    }
    ModRWKV.build(make_model(LM, seed=1), encoders).eval().save_pretrained(folder / "tiny")
    return folder / "tiny"


@functools.cache
def tiny_pipeline() -> ModRWKVPipeline:
    return ModRWKVPipeline.from_pretrained(tiny_model_dir())


def image(seed: int = 0, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)


def png_bytes(seed: int = 0, size: tuple[int, int] = (48, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image(seed, size)).save(buffer, "PNG")
    return buffer.getvalue()


def wav_bytes(seconds: float = 1.0, seed: int = 0) -> bytes:
    import soundfile

    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    soundfile.write(buffer, 0.1 * rng.standard_normal(int(16000 * seconds)).astype(np.float32), 16000, format="WAV")
    return buffer.getvalue()


def series(seed: int = 0) -> np.ndarray:
    return np.cumsum(np.random.default_rng(seed).standard_normal(40)).astype(np.float32)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pipe() -> ModRWKVPipeline:
    return tiny_pipeline()


# --- prompts ------------------------------------------------------------------------------------


def test_message_by_message_encoding_equals_the_processor(pipe):
    """The pipeline's per-message encoding (which gives the boundaries the session and the cache
    rely on) produces exactly the processor's ids for the whole conversation."""
    sample = Sample(
        [Message("system", "Be brief."), Message("user", "<image>\nWhat is it? <audio>"),
         Message("assistant", "A cat."), Message("user", "And <image> here?")],
        images=[image(0), image(1)], audios=[wav_bytes(1.0)],
    )
    prompt = encode_sample(pipe.processor, sample)
    whole = pipe.processor(sample, add_generation_prompt=True)
    assert list(prompt.ids) == whole.input_ids.tolist()
    assert prompt.system_end == prompt.message_ends[0] < prompt.message_ends[1]
    assert [s.modality for s in prompt.spans] == ["image", "audio", "image"]
    for span in prompt.spans:
        assert set(prompt.ids[span.start : span.end]) == {PLACEHOLDER_IDS[span.modality]}
    assert prompt.spans[0].digest != prompt.spans[2].digest  # different pictures
    # The same picture arriving as PNG bytes or as a decoded array is the same prefix.
    a = pipe.encode("Hi", images=[png_bytes(3)])
    b = pipe.encode("Hi", images=[np.asarray(Image.open(io.BytesIO(png_bytes(3))))])
    assert a.digest(a.media_end) == b.digest(b.media_end)


def test_bad_conversations_are_refused_clearly(pipe):
    with pytest.raises(ValueError, match="non-empty list"):
        pipe.chat([])
    with pytest.raises(ValueError, match="role 'robot'"):
        pipe.chat([{"role": "robot", "content": "hi"}])
    with pytest.raises(ValueError, match=r"2 <image> marker\(s\) in the text but 1 image"):
        pipe.chat("<image> and <image>", images=[image()])
    with pytest.raises(ValueError, match="not both"):
        pipe.chat([{"role": "user", "content": [{"type": "text", "text": "hi"}]}], images=[image()])
    with pytest.raises(ValueError, match="no user message"):
        pipe.chat([{"role": "system", "content": "hi"}], images=[image()])
    with pytest.raises(ValueError, match=r"unknown sampling option 'max_tokens' \(did you mean 'max_new_tokens'\?\)"):
        pipe.chat("hi", max_tokens=3)  # the OpenAI name
    with pytest.raises(ValueError, match=r"unknown sampling option 'temprature' \(did you mean 'temperature'\?\)"):
        pipe.session(temprature=0)
    # images= and videos= are plural, audio= is not: `audios=` is named, not taken for a missing clip
    with pytest.raises(ValueError, match=r"unknown sampling option 'audios' \(did you mean 'audio'\?\)"):
        pipe.chat("<audio>\nTranscribe", audios=[wav_bytes()])
    with pytest.raises(ValueError, match=r"unknown sampling option 'image' \(did you mean 'images'\?\)"):
        pipe.session().send("<image> What?", image=[image()])
    with pytest.raises(ValueError, match="unknown field"):
        pipe.generate_batch([{"messages": "hi", "temperature": 0}])


@functools.cache
def question_media_question_dir() -> Path:
    """A saved tiny ModRWKV that records the quickstart's training layout, `media_layout` text_media_text."""
    folder = Path(tempfile.mkdtemp(prefix="modrwkv-qmq-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    torch.manual_seed(0)
    encoders = {"image": build_encoder("tiny", width=32), "series": build_encoder("wavenet", layers=2, output_dim=24)}
    ModRWKV.build(make_model(LM, seed=1), encoders, media_layout="text_media_text").eval().save_pretrained(folder)
    return folder


def test_unmarked_media_are_placed_as_the_model_was_trained_and_markers_where_the_user_put_them(tmp_path):
    """A model whose config says it was trained question, media, question (the quickstart) is asked that
    way when the text has no marker (`modrwkv chat --image`, `pipe.chat(text, images=)`, a session, the
    transformers processor): it used to be asked media first, whatever it was trained on. A marker the user
    placed, and content parts in the order given (the server's requests), are kept as they are."""
    from modrwkv.hf_integration import ModRWKVHFProcessor

    question, picture, values = "What colour is the circle?", image(2), series(1)
    assert json.loads((question_media_question_dir() / "config.json").read_text())["media_layout"] == "text_media_text"
    assert "| media without a marker (`media_layout`) | text_media_text |" in (
        question_media_question_dir() / "README.md").read_text()  # the model card says how it is asked
    pipe = ModRWKVPipeline.from_pretrained(question_media_question_dir())

    def ids(content: str, **media) -> list[int]:  # the processor on a sample written by hand
        sample = Sample([Message("user", content)], images=media.get("images", []), series=media.get("series", []))
        return pipe.processor(sample, add_generation_prompt=True).input_ids.tolist()

    trained = ids(f"{question}\n<image>\n{question}", images=[picture])
    assert list(pipe.encode(question, images=[picture]).ids) == trained
    assert ModRWKVHFProcessor.from_pretrained(question_media_question_dir())(
        question, images=[picture])["input_ids"][0].tolist() == trained
    assert list(pipe.encode(question, series=[values]).ids) == ids(f"{question}\n<series>\n{question}", series=[values])
    # a session's turn reads the same prompt: its state after a greedy reply is the explicit prompt's
    unmarked, explicit = pipe.session(**GREEDY), pipe.session(**GREEDY)
    unmarked.send(question, images=[picture])
    explicit.send(f"{question}\n<image>\n{question}", images=[picture])
    assert torch.equal(unmarked.state.wkv, explicit.state.wkv)
    # the user's own placement wins
    assert list(pipe.encode(f"<image>\n{question}", images=[picture]).ids) == ids(f"<image>\n{question}", images=[picture])
    parts = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,"
                                           + base64.b64encode(png_bytes(2)).decode()}},
                                          {"type": "text", "text": question}]}]
    assert list(pipe.encode(parts).ids) == ids(f"<image>\n{question}", images=[png_bytes(2)])
    assert list(pipe.encode("", images=[picture]).ids) == ids("<image>", images=[picture])  # media alone
    # a text that places its image but not its series is not repeated (its <image> would be twice): the
    # series goes before it, as a model trained LLaVA's way is asked
    compare = "Compare <image> with the series."
    assert list(pipe.encode(compare, images=[picture], series=[values]).ids) == ids(
        f"<series>\n{compare}", images=[picture], series=[values])
    # A model saved before the field (no "media_layout" in its config.json) is asked media first, as before.
    older = tmp_path / "older"
    shutil.copytree(question_media_question_dir(), older)
    config = json.loads((older / "config.json").read_text())
    del config["media_layout"]
    (older / "config.json").write_text(json.dumps(config))
    assert list(ModRWKVPipeline.from_pretrained(older).encode(question, images=[picture]).ids) == ids(
        f"<image>\n{question}", images=[picture])
    config["media_layout"] = "question_first"
    (older / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="config.json: 'media_layout' .* must be one of \"media_text\", "
                       "\"text_media_text\", got \"question_first\""):
        ModRWKV.from_pretrained(older)


# media are the files a.png, b.png, c.wav and "values", a series the reader reads inline (numbers)
@pytest.mark.parametrize("reader, fields, media", [
    ("qa", {"image": "a.png", "series": "values"}, dict(images=["a.png"], series=["values"])),
    ("qa", {"image": ["a.png", "b.png"]}, dict(images=["a.png", "b.png"])),
    ("qa", {"audio": "c.wav", "image": "a.png"}, dict(images=["a.png"], audio=["c.wav"])),
    ("llava", {"images": ["a.png", "b.png"]}, dict(images=["a.png", "b.png"])),
    ("llava", {"audio": "c.wav", "image": "a.png"}, dict(images=["a.png"], audio=["c.wav"])),
], ids=["qa-image-series", "qa-two-images", "qa-image-audio", "llava-two-images", "llava-image-audio"])
def test_several_unmarked_media_are_asked_as_the_readers_trained_them(pipe, tmp_path, reader, fields, media):
    """Media a text does not place, several of one kind or of several kinds: the prompt builder
    (`pipe.encode(question, images=...)`) gives the user turn the qa and LLaVA readers train on for the
    same media and question, token for token. It used to write "<image><image>" on one line and a
    later modality's line first ("<series>\\n<image>"), a layout no reader trains on."""
    from modrwkv.data.readers.llava import llava_to_sample
    from modrwkv.data.readers.qa import qa_to_sample
    from modrwkv.inference.prompt import build_sample

    (tmp_path / "a.png").write_bytes(png_bytes(1))
    (tmp_path / "b.png").write_bytes(png_bytes(2, (40, 56)))
    (tmp_path / "c.wav").write_bytes(wav_bytes(0.5))
    values = series(3)
    fields = {key: values.tolist() if value == "values" else value for key, value in fields.items()}
    media = {key: [values if name == "values" else str(tmp_path / name) for name in names]
             for key, names in media.items()}
    question, answer = "Which comes first?", "The left one."
    if reader == "qa":
        sample = qa_to_sample({**fields, "question": question, "answer": answer}, media_folder=tmp_path)
    else:
        sample = llava_to_sample({**fields, "conversations": [{"from": "human", "value": question},
                                                              {"from": "gpt", "value": answer}]},
                                 image_folder=tmp_path)
    trained = pipe.processor(sample).input_ids.tolist()
    conversation = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    built = build_sample(conversation, **media, media_layout=pipe.processor.media_layout)
    assert pipe.processor(built).input_ids.tolist() == trained
    asked = list(pipe.encode(question, **media).ids)  # the prompt: the training turn up to the answer
    assert trained[: len(asked)] == asked


# --- generation ---------------------------------------------------------------------------------


def test_chat_with_every_modality_and_streaming(pipe):
    reply = pipe.chat("What is shown?", images=[image()], **GREEDY)
    assert isinstance(reply, str) and reply
    stream = pipe.chat_stream("What is shown?", images=[image()], **GREEDY)
    pieces = list(stream)
    assert "".join(pieces) == reply == stream.result.text
    assert stream.result.finish_reason in ("stop", "length") and stream.result.completion_tokens <= 8
    audio_reply = pipe.chat([{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav_bytes()).decode(), "format": "wav"}},
        {"type": "text", "text": "Transcribe."}]}], **GREEDY)
    assert audio_reply == pipe.chat("<audio>\nTranscribe.", audio=[wav_bytes()], **GREEDY)
    assert pipe.chat("Forecast:", series=[series()], **GREEDY)
    with pytest.raises(ValueError, match="no image encoder|has no image"):
        ModRWKVPipeline(ModRWKV(make_model(LM, seed=1), {}, {})).chat("hi", images=[image()])


def test_batched_generation_equals_one_at_a_time(pipe):
    requests = [
        {"messages": "Hello there", "sampling": dict(temperature=0, max_new_tokens=3)},
        {"messages": "Describe it.", "images": [image(1)], "sampling": dict(temperature=0, max_new_tokens=9)},
        {"messages": "What was said?", "audio": [wav_bytes(0.5)], "sampling": dict(temperature=0, max_new_tokens=6)},
        {"messages": [{"role": "system", "content": "Count."}, {"role": "user", "content": "1 2 3"}],
         "sampling": dict(temperature=0, max_new_tokens=7)},
    ]
    batched = pipe.generate_batch(requests)
    for request, got in zip(requests, batched):
        alone = pipe.chat_stream(request["messages"], images=request.get("images"), audio=request.get("audio"),
                                 **request["sampling"])
        list(alone)
        assert got.token_ids == alone.result.token_ids and got.text == alone.result.text
    assert len({len(r.token_ids) for r in batched}) > 1  # rows left the batch at different steps
    # Seeded sampling is reproducible. (Against one-at-a-time it may differ: a batched matmul can
    # change logits in the last bit, which moves a draw across a boundary of a flat distribution.)
    sampled = [{"messages": m, "sampling": dict(temperature=0.8, top_p=0.9, seed=7, max_new_tokens=7)}
               for m in ("One", "Two")]
    assert [r.token_ids for r in pipe.generate_batch(sampled)] == [r.token_ids for r in pipe.generate_batch(sampled)]


# --- sessions -----------------------------------------------------------------------------------


def test_three_turn_session_equals_reading_the_whole_conversation_at_once(pipe):
    """Each turn feeds only its new tokens into the carried state; the result is the same as one
    pass over the whole conversation (previous turns included) from an empty state."""
    session = pipe.session(system="You describe pictures.", **GREEDY)
    turns = [("What is this?", [image(4)]), ("And this one?", [image(5)]), ("Which is brighter?", [])]
    ids, images = [], []
    for turn, (text, pictures) in enumerate(turns):
        session.send(text, images=pictures)
        result = session.last_result
        ids += result.prompt_ids
        images += pictures
        if turn < 2:
            ids += result.token_ids
            if result.finish_reason == "length":  # the session closes unfinished turns itself
                ids += pipe.tokenizer.encode(pipe.template.turn_end)
    third = session.last_result
    assert session.turns == 3 and session.num_tokens > len(ids)
    assert sum(i == PLACEHOLDER_IDS["image"] for i in ids) == 2 * 64
    # One parallel pass over everything, then greedy decoding of the third reply.
    model = pipe.model
    encoder = model.encoders["image"]
    banned = torch.zeros(LM.vocab_size, dtype=torch.bool)
    banned[pipe.engine.banned_tokens] = True
    with torch.inference_mode():
        media = {"image": encoder.collate([encoder.prepare(p) for p in images])}
        out = model.lm(inputs_embeds=model.embed(torch.tensor([ids]), media), logits="last")
        state, logits, tokens = out.state, out.logits, []
        for _ in range(len(third.token_ids)):
            tokens.append(int(logits.masked_fill(banned, -torch.inf).argmax()))
            out = model.lm(torch.tensor([[tokens[-1]]]), state=state, logits="last")
            state, logits = out.state, out.logits
    assert tokens == third.token_ids
    torch.testing.assert_close(state.wkv, third.state.wkv, atol=1e-4, rtol=1e-4)


def test_session_reset_save_and_load(pipe, tmp_path):
    session = pipe.session(**GREEDY)
    with pytest.raises(ValueError, match="empty"):
        session.save_state(tmp_path / "empty.state")
    session.send("Remember the number seven.", images=[image(2)])
    session.save_state(tmp_path / "one.state")
    second = session.send("What number?")
    session.reset()
    assert session.state is None and session.num_tokens == 0
    session.send("What number?")
    session.load_state(tmp_path / "one.state")
    assert session.turns == 1 and session.send("What number?") == second
    (tmp_path / "bad.state").write_bytes(b"not a state")
    with pytest.raises(ValueError, match="bad.state: cannot read as safetensors"):
        session.load_state(tmp_path / "bad.state")
    # An abandoned stream leaves the session where it was.
    before = session.num_tokens
    stream = session.stream("Say more")
    next(stream)
    del stream
    assert session.num_tokens == before


# --- prefix-state cache -------------------------------------------------------------------------


def test_prefix_cache_reuses_system_prompt_and_media(pipe):
    uncached = ModRWKVPipeline(pipe.model, pipe.tokenizer, prefix_cache_bytes=0)
    pipe.cache.clear()
    system = {"role": "system", "content": "You are a careful observer."}
    questions = ["What colour dominates?", "How many objects?"]
    for n, question in enumerate(questions):
        messages = [system, {"role": "user", "content": question}]
        stream = pipe.chat_stream(messages, images=[image(6)], **GREEDY)
        list(stream)
        prompt = pipe.encode(messages, images=[image(6)])
        assert stream.result.cached_tokens == (prompt.media_end if n else 0)
        assert stream.result.text == uncached.chat(messages, images=[image(6)], **GREEDY)
    other = pipe.chat_stream([system, {"role": "user", "content": "Shapes?"}], images=[image(7)], **GREEDY)
    list(other)
    assert other.result.cached_tokens == pipe.encode([system]).message_ends[0]  # only the system prompt
    # A client re-sending the history (as OpenAI clients do) resumes from before its last message.
    history = [system, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
               {"role": "user", "content": "Again"}]
    list(pipe.chat_stream(history, **GREEDY))
    longer = history + [{"role": "assistant", "content": "Sure."}, {"role": "user", "content": "Once more"}]
    stream = pipe.chat_stream(longer, **GREEDY)
    list(stream)
    assert stream.result.cached_tokens == pipe.encode(longer).message_ends[2]
    assert stream.result.text == uncached.chat(longer, **GREEDY)


# --- loading ------------------------------------------------------------------------------------


def test_plain_lm_and_released_checkpoints(tmp_path):
    save_model(make_model(LM, seed=3), tmp_path / "lm")
    text_only = ModRWKVPipeline.from_pretrained(tmp_path / "lm")
    assert text_only.template.name == "classic" and not text_only.model.encoders
    assert isinstance(text_only.chat("Hi", **GREEDY), str)
    with pytest.raises(ValueError, match="no image encoder"):
        text_only.chat("Hi", images=[image()])

    d_enc, d = SIGLIP["hidden_size"], LM.n_embd
    g = torch.Generator().manual_seed(0)
    released = {f"llm.{k}": v for k, v in random_official_state_dict(LM, seed=2).items()}
    released.update({
        "proj.mlp.0.weight": torch.randn(4 * d, d_enc, generator=g) * 0.1, "proj.mlp.0.bias": torch.zeros(4 * d),
        "proj.mlp.2.weight": torch.randn(d, 4 * d, generator=g) * 0.1, "proj.mlp.2.bias": torch.zeros(d),
        "proj.pre_norm.weight": torch.ones(d), "proj.pre_norm.bias": torch.zeros(d),
    })
    torch.save(released, tmp_path / "rwkv7-siglip.pth")
    with pytest.raises(ValueError, match="encoder="):
        ModRWKVPipeline.from_pretrained(tmp_path / "rwkv7-siglip.pth")
    pipe = ModRWKVPipeline.from_pretrained(tmp_path / "rwkv7-siglip.pth", encoder=build_encoder("siglip", config=SIGLIP))
    assert pipe.template.name == "worldrwkv"  # the current release's layout, read from its keys
    stream = pipe.chat_stream("What is it?", images=[image()], **GREEDY)
    list(stream)
    assert stream.result.prompt_tokens > 576  # SigLIP: 24 x 24 positions per image
    with pytest.raises(ValueError, match="encoder_source needs encoder"):
        ModRWKVPipeline.from_pretrained(tmp_path / "lm", encoder_source="google/siglip2-base-patch16-384")


# --- modrwkv chat -------------------------------------------------------------------------------


def test_chat_command_with_piped_input(pipe, tmp_path):
    """`modrwkv chat` in a subprocess: media commands, streaming replies, state save/load/reset,
    errors that do not end the chat. Its replies equal an in-process session's."""
    (tmp_path / "cat.png").write_bytes(png_bytes(8))
    (tmp_path / "hello.wav").write_bytes(wav_bytes(0.5))
    state = tmp_path / "chat.state"
    save_file({"att_shift": torch.zeros(3), "wkv": torch.zeros(3), "ffn_shift": torch.zeros(3)}, str(tmp_path / "rank.state"))
    script = "\n".join([
        "Hello!",
        f"/image {tmp_path / 'cat.png'}",
        f"/audio {tmp_path / 'hello.wav'}",
        "What do you see and hear?",
        f"/save-state {state}",
        "Tell me more.",
        "/reset",
        f"/load-state {state}",
        "Tell me more.",
        "/image /no/such/file.png",
        "/frobnicate",
        f"/load-state {tmp_path / 'rank.state'}",  # wrong ranks: an error, and the conversation goes on
        f"/load-state {tmp_path}",
        f"/load-state {tmp_path / 'cat.png'}",
        "Tell me more.",
        "/exit",
    ]) + "\n"
    run = warm_start.run(
        ["-m", "modrwkv.cli", "chat", "--model", str(tiny_model_dir()), "--temperature", "0",
         "--max-new-tokens", "6", "--system", "Be helpful."],
        input=script.encode(), timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    stdout, stderr = run.stdout.decode(), run.stderr.decode()  # bytes: keep any "\r" a reply holds
    assert run.returncode == 0, stderr
    options = dict(temperature=0, max_new_tokens=6, top_p=0.3, presence_penalty=0.5, frequency_penalty=0.5)
    session = pipe.session(system="Be helpful.", **options)
    expected, cut = [session.send("Hello!")], [session.last_result.finish_reason == "length"]
    expected.append(session.send("What do you see and hear?", images=[str(tmp_path / "cat.png")],
                                 audio=[str(tmp_path / "hello.wav")]))
    cut.append(session.last_result.finish_reason == "length")
    more = session.send("Tell me more.")
    cut += [session.last_result.finish_reason == "length"] * 2
    expected += [more, more, session.send("Tell me more.")]
    cut.append(session.last_result.finish_reason == "length")
    assert stdout == "".join(f"Assistant: {reply}\n" for reply in expected)
    # a reply cut by the token budget says so (a long recording's transcript needs a larger one)
    assert any(cut) and stderr.count("[the reply stopped at --max-new-tokens 6; run chat with a larger") == sum(cut)
    assert "no such file: /no/such/file.png" in stderr and "unknown command /frobnicate" in stderr
    assert "rank.state: not an RWKV-7 state: att_shift has shape (3,), expected 3 dimensions" in stderr
    assert f"{tmp_path} is a folder, not a file" in stderr and "cat.png: cannot read as safetensors" in stderr
    assert "Traceback" not in stderr
    assert state.exists()


def test_int8_pipeline_from_pretrained_matches_converting_by_hand():
    """`from_pretrained(dtype="int8")` (what `chat`, `serve` and `eval --dtype int8` load) converts
    the LM's matrices and leaves encoders and adapters in fp32; its replies are those of the fp32
    model converted by hand."""
    pipe = ModRWKVPipeline.from_pretrained(tiny_model_dir(), dtype="int8")
    assert pipe.model.lm.weight_format == "int8" and pipe.model.lm.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in pipe.model.adapters.parameters())
    by_hand = ModRWKVPipeline.from_pretrained(tiny_model_dir())
    by_hand.model.lm.use_weight_format("int8")
    question = dict(images=[image(3)], temperature=0, max_new_tokens=6)
    assert pipe.chat("What is this?", **question) == by_hand.chat("What is this?", **question)


def test_chat_says_when_the_token_budget_cut_the_reply(caplog):
    # chat() returns text only: a reply cut by max_new_tokens is logged; chat_stream's result is the oracle
    pipe = ModRWKVPipeline.from_pretrained(tiny_model_dir())  # its own: the first cut is the one warned of
    outcomes = []
    for budget in (1, 2, 8, 64):
        stream = pipe.chat_stream("What is shown?", images=[image()], temperature=0, max_new_tokens=budget)
        "".join(stream)
        caplog.clear()
        with caplog.at_level("DEBUG", logger="modrwkv.inference.pipeline"):
            reply = pipe.chat("What is shown?", images=[image()], temperature=0, max_new_tokens=budget)
        assert reply == stream.result.text
        said = [r.levelname for r in caplog.records if f"max_new_tokens={budget} " in r.getMessage()]
        cut = stream.result.finish_reason == "length"
        # a warning the first time, debug after that (a harness asking for one-word answers cuts most replies)
        assert said == (["DEBUG" if "length" in outcomes else "WARNING"] if cut else []), (budget, said)
        outcomes.append(stream.result.finish_reason)
    assert "length" in outcomes
