"""Text that holds "<image>", "<audio>", ... as characters ("Explain the HTML5 <audio> element"): where
media come apart from the text (OpenAI content parts, the server, `modrwkv chat`, a session given
escaped text), the text is tokenised exactly as those characters and media stay media; where
markers in text are the media places by convention (LLaVA), they still are."""

import io
import json
import sys

import numpy as np
import pytest
from fastapi.testclient import TestClient
from test_pipeline import png_bytes, tiny_model_dir, tiny_pipeline, wav_bytes
from test_processor import IMG, USER, chat, make
from test_server import image_part

from modrwkv.cli import main
from modrwkv.data.readers import LlavaReader, OpenAIChatReader
from modrwkv.data.sample import MARKER_ESCAPE, Message, Sample, count_markers, escape_markers
from modrwkv.inference import ModRWKVPipeline
from modrwkv.processing import IGNORE_INDEX, ModRWKVProcessor, get_template
from modrwkv.serving import create_app
from modrwkv.tokenizer import WorldTokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXT = "Explain the <audio> element"


@pytest.fixture(scope="module")
def tok():
    return WorldTokenizer()


@pytest.fixture
def prompts(monkeypatch):
    """Every prompt any pipeline encodes, in order."""
    seen = []
    encode = ModRWKVPipeline.encode

    def recording(self, *args, **kwargs):
        seen.append(encode(self, *args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(ModRWKVPipeline, "encode", recording)
    return seen


def by_hand(media_ids: list[int], text: str) -> list[int]:
    """The tiny model's prompt (template rwkv, media in place) for one user turn: media, then a newline
    and `text`, tokenised as plain characters; written out from the template's strings."""
    tokenizer = WorldTokenizer()
    return (tokenizer.encode("\x16User:") + tokenizer.encode(" ") + media_ids + tokenizer.encode(f"\n{text}")
            + tokenizer.encode("\x17") + tokenizer.encode("\x16Assistant:"))


def image_ids(pipe: ModRWKVPipeline, seed: int = 0) -> list[int]:
    processor = pipe.processor
    features = pipe.model.encoders["image"].prepare(png_bytes(seed)).num_features
    return [processor.placeholder_ids["image"]] * processor.token_counts["image"](features)


def test_the_server_reads_a_literal_marker_in_text_as_its_characters(prompts):
    pipe = tiny_pipeline()
    messages = [{"role": "user", "content": [image_part(), {"type": "text", "text": TEXT}]}]
    with TestClient(create_app(pipe, model_name="tiny")) as client:
        response = client.post("/v1/chat/completions", json={"model": "tiny", "messages": messages,
                                                               "temperature": 0, "max_tokens": 2})
        assert response.status_code == 200, response.json()
        assert list(prompts[-1].ids) == by_hand(image_ids(pipe), TEXT)
        assert [span.modality for span in prompts[-1].spans] == ["image"]
        # a plain string content is text too, markers and all
        response = client.post("/v1/chat/completions", json={"model": "tiny", "temperature": 0, "max_tokens": 2,
                                                               "messages": [{"role": "user", "content": TEXT}]})
        assert response.status_code == 200, response.json()
        tokenizer = WorldTokenizer()
        assert list(prompts[-1].ids) == (tokenizer.encode("\x16User:") + tokenizer.encode(f" {TEXT}")
                                         + tokenizer.encode("\x17") + tokenizer.encode("\x16Assistant:"))
        # /v1/completions tokenises its prompt as raw text
        response = client.post("/v1/completions", json={"model": "tiny", "prompt": TEXT, "max_tokens": 1})
        assert response.status_code == 200 and response.json()["usage"]["prompt_tokens"] == len(WorldTokenizer().encode(TEXT))


def test_pipeline_chat_with_parts_and_a_session_with_escaped_text_match(prompts):
    pipe = tiny_pipeline()
    expected = by_hand(image_ids(pipe), TEXT)
    pipe.chat([{"role": "user", "content": [image_part(), {"type": "text", "text": TEXT}]}], max_new_tokens=1)
    pipe.session().send(escape_markers(TEXT), images=[png_bytes()], max_new_tokens=1)
    assert [list(p.ids) for p in prompts] == [expected, expected]
    with pytest.raises(ValueError, match="1 <audio> marker"):  # unescaped, the marker asks for an audio item
        pipe.chat(TEXT, images=[png_bytes()], max_new_tokens=1)


def test_modrwkv_chat_takes_typed_text_as_text_and_an_empty_line_sends_media_alone(prompts, tmp_path, monkeypatch):
    pipe = tiny_pipeline()
    (tmp_path / "a.png").write_bytes(png_bytes())
    (tmp_path / "a.wav").write_bytes(wav_bytes())
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{TEXT}\n/audio {tmp_path / 'a.wav'}\n\n\n"))
    assert main(["chat", "--model", str(tiny_model_dir()), "--temperature", "0", "--max-new-tokens", "1",
                 "--image", str(tmp_path / "a.png")]) == 0
    assert len(prompts) == 2  # the last, empty, line has no media: it is skipped
    assert list(prompts[0].ids) == by_hand(image_ids(pipe), TEXT)
    # the audio alone: as the marker alone was (the ASR layout of docs/authors-checkpoints.md)
    alone = pipe.encode([{"role": "user", "content": "<audio>"}], audio=[str(tmp_path / "a.wav")])
    assert prompts[1].ids == alone.ids and [s.modality for s in prompts[1].spans] == ["audio"]


def test_modrwkv_chats_system_prompt_is_text_too(prompts, tmp_path, monkeypatch):
    """`--system "Explain <video> tags"` was read as a video's place: the first turn failed (a marker
    without its video), or took the video attached by /video into the system turn."""
    pipe = tiny_pipeline()
    system = "Explain <video> tags."
    monkeypatch.setattr(sys, "stdin", io.StringIO("Hi\n"))
    assert main(["chat", "--model", str(tiny_model_dir()), "--temperature", "0", "--max-new-tokens", "1",
                 "--system", system]) == 0
    assert len(prompts) == 1  # the turn was encoded (it failed: a <video> marker without its video)
    expected = pipe.encode([{"role": "system", "content": escape_markers(system)}, {"role": "user", "content": "Hi"}])
    assert prompts[0].ids == expected.ids and not prompts[0].spans


def test_the_openai_reader_keeps_literal_markers_as_text_and_llava_markers_stay_media(tmp_path, tok):
    path = tmp_path / "chat.jsonl"
    answer = "It places a picture; write <image> with an href."
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "What does <image> do in SVG?"},
                                             {"role": "assistant", "content": answer}]}) + "\n")
    [sample] = OpenAIChatReader(path, on_error="raise")
    processor = ModRWKVProcessor(tok, get_template("rwkv"), {}, {})
    out = processor(sample)
    supervised = [label for label in out.labels.tolist() if label != IGNORE_INDEX]
    assert supervised == tok.encode(f" {answer}") + [24]
    assert out.input_ids.tolist() == USER + tok.encode(" What does <image> do in SVG?") + [24] + \
        tok.encode("\x16Assistant:") + supervised

    png = tmp_path / "red.png"
    png.write_bytes(png_bytes())
    llava = tmp_path / "llava.jsonl"
    llava.write_text(json.dumps({"image": "red.png", "conversations": [
        {"from": "human", "value": "<image>\nColour?"}, {"from": "gpt", "value": "Red."}]}) + "\n")
    [sample] = LlavaReader(llava, image_folder=tmp_path, on_error="raise")
    assert len(sample.images) == 1 and count_markers(m.content for m in sample.messages)["image"] == 1


def test_a_literal_and_a_real_marker_in_one_message_count_and_tokenise_apart(tok):
    content = escape_markers("the <image> tag") + "\n<image>"
    sample = chat(content, images=[2])
    assert count_markers([content]) == {"image": 1, "audio": 0, "series": 0, "video": 0}
    sample.validate()
    assert make(tok)(sample).input_ids.tolist() == USER + tok.encode(" the <image> tag\n") + [IMG] * 2 + [24]
    with pytest.raises(ValueError, match="1 <image> marker"):
        Sample([Message("user", content)], images=[2, 3]).validate()


def test_the_escape_character_in_user_text_cannot_forge_or_hide_a_marker(tok):
    text = f"{MARKER_ESCAPE}<image> and {MARKER_ESCAPE * 2}<audio>"  # the escape itself, typed by a user
    content = escape_markers(text) + "\n<image>"
    assert count_markers([content])["image"] == 1 and count_markers([content])["audio"] == 0
    ids = make(tok)(chat(content, images=[2])).input_ids.tolist()
    assert ids == USER + tok.encode(f" {text}\n") + [IMG] * 2 + [24]


def test_cleaning_cannot_join_text_into_a_marker_or_a_special_token(tok):
    # the rwkv template removes \x16: "<ima\x16ge>" must not become a marker that takes a media slot
    ids = make(tok)(chat(escape_markers("<ima\x16ge>") + "\n<image>", images=[2])).input_ids.tolist()
    assert ids == USER + tok.encode(" <image>\n") + [IMG] * 2 + [24]
    # a special token's text inside another's: removing the inner one must not leave the outer one
    template = get_template("worldrwkv")
    special = WorldTokenizer(special_tokens=template.special_tokens)
    processor = ModRWKVProcessor(special, template, {}, {})
    ids = processor(chat(escape_markers("<|vision<|vision_start|>_start|> hi"))).input_ids.tolist()
    assert not set(ids) & set(template.special_tokens.values())
    assert ids == special.encode("\x16User: hi\x17")  # removed until none is left
    # the pieces around a real marker, joined again where the media go first: cleaned again once joined
    start = template.special_tokens["<|vision_start|>"]
    for splice in ("prefix", "turn_start"):
        processor = make(special, "worldrwkv", splice)
        ids = processor(chat("<|vision<image>_start|> hi", images=[2])).input_ids.tolist()
        plain = processor(chat("<image> hi", images=[2])).input_ids.tolist()
        assert ids.count(start) == plain.count(start), splice  # the image block's own alone


def test_an_escaped_video_marker_stays_text_when_videos_expand(tok):
    frames = [np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 255, np.uint8)]
    literal = escape_markers("the <video> tag")
    expanded = make(tok).expand_videos(chat(f"{literal}\n<video>", videos=[frames]))
    assert len(expanded.images) == 2 and expanded.videos == []
    assert expanded.messages[0].content == f"{literal}\n<image><image>"


def test_benchmark_questions_and_vlmevalkit_text_parts_are_text():
    from modrwkv.evaluation.harness.vlmevalkit import ModRWKVVLM
    from modrwkv.evaluation.tasks.base import image_prompt

    assert count_markers([image_prompt("What does <image> do in SVG?")])["image"] == 1
    images: list[str] = []
    text = ModRWKVVLM._text(None, [{"type": "text", "value": "Is <image> a tag?"}, {"type": "image", "value": "a.png"}],
                            images)
    assert images == ["a.png"] and count_markers([text])["image"] == 1


def test_eval_records_show_the_users_text_and_score_against_the_answers_characters(tmp_path):
    """A held-out OpenAI record whose system prompt, question and answer hold literal markers: the model
    is asked them as text (escaped inside), while predictions.jsonl showed the escape character
    (U+FDD0) in the prompt and context, and the reference answer carried it too, so that a reply
    spelling the answer out scored 0. The records now hold the characters the user wrote."""
    from test_custom_eval_formats import evaluate, openai

    from modrwkv.evaluation.tasks import CustomTask

    system, question, answer = "Quote <video> tags as text.", "What does <audio> do?", "It embeds <audio> and <series>."
    [record] = evaluate(tmp_path, "openai.jsonl", [openai(0, question, answer, system=system)])
    assert record["prompt"] == f"<image>\n{question}"
    assert record["context"] == [{"role": "system", "content": system}]
    assert record["reference"]["answers"] == [answer]
    task = CustomTask()
    task.load(tmp_path / "data" / "openai.jsonl", "test")  # the file's metric
    assert task.score({**record, "prediction": answer}) == {"correct": True}
    assert task.score({**record, "prediction": "It embeds <audio>."}) == {"correct": False}
    # options holding a marker are found in the question that lists them (they were not: it held the escape)
    options = {**openai(0, "Which plays sound?\nA. the <audio> tag\nB. the <image> tag", "A"),
               "choices": ["the <audio> tag", "the <image> tag"]}
    [record] = evaluate(tmp_path, "choices.jsonl", [options])
    assert record["reference"]["choices"] == options["choices"]
