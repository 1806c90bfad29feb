"""transformers idioms on a ModRWKV folder, each checked against an independent expectation: the
pipeline's greedy tokens on the same conversation, an unbatched run, the folder written by
`ModRWKV.save_pretrained`. Tiny random models; nothing downloads."""

import pytest
import torch
from conftest import make_model
from PIL import Image
from test_pipeline import LM, image, tiny_model_dir, tiny_pipeline
from transformers import AutoModelForCausalLM, AutoProcessor

from modrwkv.generation import TextStream
from modrwkv.hf_integration import ModRWKVConfig, ModRWKVForCausalLM, ModRWKVHFProcessor
from modrwkv.inference import ModRWKVPipeline
from modrwkv.multimodal import ModRWKV
from modrwkv.processing.template import TEMPLATES

QUESTION = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}]


def pipeline_tokens(pipeline: ModRWKVPipeline, messages, max_new_tokens: int = 8, **options) -> list[int]:
    """The pipeline's greedy reply, as token ids."""
    stream = TextStream(pipeline.run(pipeline.encode(messages, **options),
                                     pipeline.sampling_params(temperature=0, max_new_tokens=max_new_tokens)))
    "".join(stream)
    return stream.result.token_ids


def reply_tokens(model, inputs, **options) -> list[list[int]]:
    out = model.generate(**inputs, max_new_tokens=8, do_sample=False, **options)
    return [[t for t in row if t != 0] for row in out[:, inputs["input_ids"].shape[1]:].tolist()]


@pytest.fixture(scope="module")
def hf():
    folder = tiny_model_dir()
    return AutoModelForCausalLM.from_pretrained(folder), AutoProcessor.from_pretrained(folder)


def test_chat_template_idioms_give_the_pipelines_greedy_reply(hf):
    """The three ways transformers' VLM processors take an image: the rendered prompt with
    `images=`, `apply_chat_template(tokenize=True)` on parts carrying the image, and payload-less
    `{"type": "image"}` parts filled by `images=`; `.to(device)` on the inputs as for any BatchFeature."""
    model, processor = hf
    picture = Image.fromarray(image(0))
    expected = pipeline_tokens(tiny_pipeline(), "<image>\nWhat is this?", images=[picture])
    prompt = processor.apply_chat_template(QUESTION, add_generation_prompt=True)
    assert prompt == "\x16User: <image>\nWhat is this?\x17\x16Assistant:"
    assert processor.apply_chat_template([QUESTION, QUESTION]) == ["\x16User: <image>\nWhat is this?\x17"] * 2
    inputs = processor(text=prompt, images=[picture], return_tensors="pt").to("cpu")
    assert reply_tokens(model, inputs) == [expected]
    with_payload = [{"role": "user", "content": [{"type": "image", "image": picture},
                                                 {"type": "text", "text": "What is this?"}]}]
    inputs = processor.apply_chat_template(with_payload, add_generation_prompt=True, tokenize=True,
                                           return_dict=True, return_tensors="pt")
    assert reply_tokens(model, inputs) == [expected]
    assert reply_tokens(model, processor(QUESTION, images=[picture])) == [expected]
    assert torch.equal(processor.apply_chat_template(with_payload, tokenize=True, add_generation_prompt=True),
                       inputs["input_ids"])
    # a rendered prompt without the generation prompt stays without it
    history = processor.apply_chat_template([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}])
    assert processor(text=history)["input_ids"][0].tolist() == list(tiny_pipeline().encode(
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}], add_generation_prompt=False).ids)
    with pytest.raises(ValueError, match="not both"):  # images= fills payload-less parts only
        processor(with_payload, images=[picture])
    with pytest.raises(ValueError, match="unsupported content part"):
        processor.apply_chat_template([{"role": "user", "content": [{"type": "sticker"}]}])


def test_transformers_streamers_and_decoding_the_whole_output_show_the_pipelines_reply(hf):
    """docs/interop.md's `streamer=TextIteratorStreamer(processor.tokenizer)`: the streamer decodes the
    prompt too (media placeholders, which have no text) and passes `skip_special_tokens`; it used to
    raise in generate's thread ("token id ... is not in the vocabulary"), leaving the loop over the
    streamer waiting for ever. The streamed text, and `batch_decode` of the whole output, are the
    rendered prompt's text without the image's place, then the pipeline's greedy reply."""
    from threading import Thread

    from transformers import TextIteratorStreamer

    model, processor = hf
    picture = Image.fromarray(image(0))
    pipeline = tiny_pipeline()
    expected = pipeline_tokens(pipeline, "<image>\nWhat is this?", images=[picture])
    reply = pipeline.model.tokenizer().decode([t for t in expected if t != 0])
    inputs = processor(QUESTION, images=[picture])
    for skip_prompt in (False, True):
        streamer = TextIteratorStreamer(processor.tokenizer, skip_prompt=skip_prompt, timeout=60)
        thread = Thread(target=model.generate, kwargs={**inputs, "max_new_tokens": 8, "do_sample": False,
                                                       "streamer": streamer})
        thread.start()
        text = "".join(streamer)
        thread.join()
        assert text == ("" if skip_prompt else "\x16User: \nWhat is this?\x17\x16Assistant:") + reply
    out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert processor.batch_decode(out) == ["\x16User: \nWhat is this?\x17\x16Assistant:" + reply]


def test_rendered_conversations_read_back_as_their_turns():
    turns = [("system", "be brief"), ("user", "<image>\nhi\n"), ("assistant", " yo\nx"), ("user", "")]
    for template in TEMPLATES.values():
        for prompt in (True, False):
            assert template.parse(template.render(turns, prompt)) == (turns, prompt), template.name
        assert template.parse("What is this?") is None and template.parse("") is None


def test_batched_left_padded_generate_equals_each_conversation_alone(hf):
    model, processor = hf
    picture = Image.fromarray(image(1))
    conversations = [[{"role": "user", "content": [{"type": "image", "image": picture},
                                                   {"type": "text", "text": "Describe it."}]}],
                     "Tell me a much longer story about cats, dogs and a ferry across the river"]
    inputs = processor(conversations, return_tensors="pt")
    assert inputs["attention_mask"][0, 0] == 0 or inputs["attention_mask"][1, 0] == 0  # left padding
    alone = [reply_tokens(model, processor(c))[0] for c in conversations]
    assert reply_tokens(model, inputs) == alone
    assert alone == [pipeline_tokens(tiny_pipeline(), "<image>\nDescribe it.", images=[picture]),
                     pipeline_tokens(tiny_pipeline(), conversations[1])]


def test_labels_loss_ignores_minus_100_as_transformers_computes_it(hf):
    model, processor = hf
    inputs = processor(text="What is this?", images=[Image.fromarray(image(2))])
    labels = inputs["input_ids"].clone()
    labels[:, :20] = -100
    loss = model(**inputs, labels=labels).loss
    logits = model(**inputs).logits[0]
    keep = labels[0, 1:] != -100
    expected = -torch.log_softmax(logits[:-1][keep], -1).gather(1, labels[0, 1:][keep, None]).mean()
    assert torch.allclose(loss, expected, atol=1e-5)


def biased_model(template: str, favourites: list[int]) -> ModRWKV:
    """A tiny model whose greedy choice is `favourites[0]` at every step."""
    lm = make_model(LM, seed=2)
    with torch.no_grad():  # the final hidden state always lies ~20 along u, so these rows win every step
        u = torch.nn.functional.normalize(torch.randn(LM.n_embd, generator=torch.Generator().manual_seed(0)), dim=0)
        lm.ln_out.bias += 20 * u
        for rank, token in enumerate(favourites):
            lm.head.weight[token] = (4.0 - 0.2 * rank) * u
    return ModRWKV(lm, {}, {}, template=template, ctx_len=None).eval()


def test_generate_stops_at_stop_strings_as_the_pipeline():
    """The classic format ends a turn with a blank line, which the model may spell as two "\\n"
    tokens (11) rather than the "\\n\\n" token (261): the pipeline stops there, so generate must;
    `stop_strings=` works with the World tokenizer."""
    model = biased_model("classic", [11])
    pipeline = ModRWKVPipeline(model)
    hf = ModRWKVForCausalLM(ModRWKVConfig(vocab_size=LM.vocab_size), model)
    processor = ModRWKVHFProcessor(model.processor(ctx_len=None), model.collator(padding_side="left"))
    expected = pipeline_tokens(pipeline, "Hello there")
    assert expected == [11, 11]
    assert reply_tokens(hf, processor("Hello there")) == [expected]
    model = biased_model("rwkv", [32122, 102])  # " stop", then "e"
    hf = ModRWKVForCausalLM(ModRWKVConfig(vocab_size=LM.vocab_size), model)
    processor = ModRWKVHFProcessor(model.processor(ctx_len=None), model.collator(padding_side="left"))
    stream = TextStream(ModRWKVPipeline(model).run(ModRWKVPipeline(model).encode("Hi"), ModRWKVPipeline(model)
                        .sampling_params(temperature=0, max_new_tokens=8, stop_strings=["stop stop"])))
    "".join(stream)
    got = reply_tokens(hf, processor("Hi"), stop_strings=["stop stop"], tokenizer=processor.tokenizer)
    assert got == [stream.result.token_ids] == [[32122, 32122]]


def test_beam_search_and_repeated_media_rows_are_refused_in_one_line(hf):
    model, processor = hf
    with pytest.raises(ValueError, match="does not do beam search"):
        model.generate(**processor("Hi"), num_beams=2, max_new_tokens=2)
    with pytest.raises(ValueError, match="as a batch"):  # the media would not be copied per returned sequence
        model.generate(**processor(text="Hi", images=[image(0)]), do_sample=True, num_return_sequences=2)


def test_save_pretrained_of_the_wrapped_model_reloads(hf, tmp_path):
    model, processor = hf
    model.save_pretrained(tmp_path / "copy")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "copy")
    picture = Image.fromarray(image(3))
    inputs = AutoProcessor.from_pretrained(tmp_path / "copy")(text="What is this?", images=[picture])
    assert reply_tokens(reloaded, inputs) == reply_tokens(model, processor(text="What is this?", images=[picture]))
    # transformers' push_to_hub=True was dropped without a word (nothing pushed): refused, naming the command
    with pytest.raises(ValueError, match="modrwkv push-to-hub --model FOLDER --repo ORG/NAME"):
        model.save_pretrained(tmp_path / "pushed", push_to_hub=True, repo_id="me/model")
    assert not (tmp_path / "pushed").exists()


def test_a_literal_marker_in_a_text_part_stays_text_through_the_rendered_prompt(hf):
    """"Explain the HTML <audio> element" beside an image part: `apply_chat_template(tokenize=True)` reads the
    text as its characters (content parts), and so must the rendered prompt read back by `processor(text=...)`
    (it was one <audio> marker without audio, an error); both equal the pipeline's ids of the escaped text."""
    from modrwkv.data import escape_markers, unescape_markers

    _, processor = hf
    picture = Image.fromarray(image(0))
    question = "Explain the HTML <audio> element"
    parts = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    direct = processor(parts, images=[picture])["input_ids"]
    rendered = processor(text=processor.apply_chat_template(parts, add_generation_prompt=True), images=[picture])
    expected = tiny_pipeline().encode("<image>\n" + escape_markers(question), images=[picture]).ids
    assert torch.equal(rendered["input_ids"], direct) and rendered["input_ids"][0].tolist() == list(expected)
    # docs/interop.md: the escape must stay for the round trip; unescaped, the prompt is for people only
    text = processor.apply_chat_template(parts, add_generation_prompt=True)
    assert unescape_markers(text) == f"\x16User: <image>\n{question}\x17\x16Assistant:"
    with pytest.raises(ValueError, match="1 <audio> marker"):
        processor(text=unescape_markers(text), images=[picture])


def test_a_developer_turn_renders_as_the_system_turn_it_is_read_as(hf):
    """With content parts, OpenAI's "developer" role is a system turn for `apply_chat_template(tokenize=True)`
    (the OpenAI reader's roles); the rendered prompt refused it. Both now give the same ids."""
    _, processor = hf
    picture = Image.fromarray(image(1))
    messages = [{"role": "developer", "content": "Answer briefly."}, *QUESTION]
    rendered = processor.apply_chat_template(messages, add_generation_prompt=True)
    assert rendered.startswith("\x16System: Answer briefly.")
    assert torch.equal(processor(text=rendered, images=[picture])["input_ids"],
                       processor(messages, images=[picture])["input_ids"])


def test_rendered_turns_are_the_openai_readers_messages(tmp_path):
    """`apply_chat_template` and the OpenAI reader read content parts with one function: for parts of every
    kind (text holding literal markers and the escape character, payload-less and URL media parts, audio
    given inline), the rendered turns' texts are the messages `openai_to_sample` makes of the same record,
    which the processor then tokenises; an unsupported part is named by where it is in both."""
    import base64

    from test_pipeline import png_bytes, wav_bytes

    from modrwkv.data.readers.base import DataError
    from modrwkv.data.readers.openai_chat import openai_to_sample
    from modrwkv.data.sample import MARKER_ESCAPE
    from modrwkv.hf_integration import _turns

    png = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    messages = [
        {"role": "developer", "content": "Never say <image>."},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": f"Is <audio> {MARKER_ESCAPE}<video> HTML?"},
                                     {"type": "image_url", "image_url": {"url": png}},
                                     {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav_bytes()).decode(),
                                                                             "format": "wav"}}]},
        {"role": "assistant", "content": "Yes: <audio> and <video> are elements."},
        {"role": "user", "content": [{"type": "text", "text": "And <series>?"}]},
    ]
    sample = openai_to_sample({"messages": messages, "images": [png_bytes()]}, answers_required=False)
    assert _turns(messages) == [(m.role, m.content) for m in sample.messages]
    assert [len(sample.images), len(sample.audios)] == [2, 1]
    bad = [{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "sticker"}]}]
    for read in (_turns, lambda m: openai_to_sample({"messages": m}, answers_required=False)):
        with pytest.raises(DataError, match=r"messages\[0\]\.content\[1\] is an unsupported content part \(type 'sticker'"):
            read(bad)


def test_add_generation_prompt_with_a_rendered_prompt_is_kept_or_refused_never_ignored(hf):
    """transformers' processors tokenise a rendered text as given (`add_generation_prompt` belongs to
    `apply_chat_template`): a flag that agrees with the text is fine, one that contradicts it was silently
    ignored (`add_generation_prompt=True` on a text rendered without it generated no reply turn) and is now
    refused in one line; for messages, the flag decides as before."""
    _, processor = hf
    messages = [{"role": "user", "content": "Hi"}]
    ids = {flag: list(tiny_pipeline().encode(messages, add_generation_prompt=flag).ids) for flag in (True, False)}
    for flag in (True, False):
        rendered = processor.apply_chat_template(messages, add_generation_prompt=flag)
        assert processor(text=rendered)["input_ids"][0].tolist() == ids[flag]
        assert processor(text=rendered, add_generation_prompt=flag)["input_ids"][0].tolist() == ids[flag]
        with pytest.raises(ValueError, match=f"add_generation_prompt={not flag} but the rendered prompt "
                                             f"{'ends' if flag else 'does not end'} with the assistant's turn start"):
            processor(text=rendered, add_generation_prompt=not flag)
        assert processor(messages, add_generation_prompt=flag)["input_ids"][0].tolist() == ids[flag]
    assert processor(messages)["input_ids"][0].tolist() == ids[True]
