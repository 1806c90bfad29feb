"""The web page at `/`, end to end in headless Chromium (Debian's `chromium`, driven by Playwright):
enter the API key, attach an image, ask, watch the answer stream in; then a follow-up turn, an
audio clip and a video. The page uses only the server's public API, so the answers must equal the API's.

`bash scripts/setup.sh --test` installs Chromium when it runs as root. Without Chromium this test
skips and says what to run; CI sets MODRWKV_REQUIRE_BROWSER=1, which turns that skip into a failure
so that CI cannot silently skip it. MODRWKV_SKIP_BROWSER=1 skips it deliberately.
"""

import os
import shutil

import pytest
from test_pipeline import GREEDY, png_bytes, question_media_question_dir, wav_bytes  # noqa: F401
from test_server import KEY, ask, audio_part, data_uri, image_part, live_server
from test_video import distinct_frames, encode_video

from modrwkv.serving import ServerLimits

# One xdist worker launches Chromium, not both.
pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.xdist_group("test_web")]

if os.environ.get("MODRWKV_SKIP_BROWSER") == "1":
    pytest.skip("MODRWKV_SKIP_BROWSER=1", allow_module_level=True)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MISSING = ("the web-page test needs Chromium, which is not installed: run `sudo apt-get install -y chromium` "
           "(or `bash scripts/setup.sh --test` as root)")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if os.environ.get("MODRWKV_REQUIRE_BROWSER") == "1":
            pytest.fail(MISSING + "; MODRWKV_REQUIRE_BROWSER=1 forbids skipping")
        pytest.skip(MISSING)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def finished_answer(page, index: int) -> tuple[str, int]:
    """Waits for the index-th assistant bubble to finish; returns its text and how many streamed
    updates built it."""
    bubble = page.locator(".msg.assistant").nth(index)
    bubble.wait_for()
    page.wait_for_function(
        "i => document.querySelectorAll('.msg.assistant')[i].dataset.done === 'true'", arg=index, timeout=30_000)
    return bubble.text_content(), int(bubble.get_attribute("data-chunks"))


def test_page_streams_answers_about_an_uploaded_image_audio_and_video(browser, tmp_path):
    (tmp_path / "picture.png").write_bytes(png_bytes(21))
    (tmp_path / "clip.wav").write_bytes(wav_bytes(0.6, seed=4))
    clip = encode_video(distinct_frames(6, size=32), "mp4", "libx264", "yuv420p", fps=4)
    (tmp_path / "clip.mp4").write_bytes(clip)
    with live_server(api_key=KEY) as server:
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(server.url + "/")
        page.fill("#api-key", KEY)
        page.dispatch_event("#api-key", "change")
        page.wait_for_function("document.getElementById('status').textContent.includes('model tiny')")
        assert page.text_content("#status") == "model tiny · accepts audio, image, video"
        page.fill("#temperature", "0")
        page.fill("#max-tokens", "12")

        page.set_input_files("#file", str(tmp_path / "picture.png"))
        page.locator("#attachments span", has_text="picture.png").wait_for()
        page.fill("#prompt", "What is in this picture?")
        page.click("#send")
        first, updates = finished_answer(page, 0)
        assert page.locator(".msg.user img").count() == 1
        question = [{"role": "user", "content": [image_part(21), {"type": "text", "text": "What is in this picture?"}]}]
        client = server.client()
        assert first and first == ask(client, question, max_tokens=12).choices[0].message.content
        assert updates >= 2  # the answer appeared piece by piece

        page.fill("#prompt", "Tell me more.")
        page.press("#prompt", "Enter")
        second, _ = finished_answer(page, 1)
        history = question + [{"role": "assistant", "content": first}, {"role": "user", "content": [
            {"type": "text", "text": "Tell me more."}]}]
        assert second == ask(client, history, max_tokens=12).choices[0].message.content

        page.set_input_files("#file", str(tmp_path / "clip.wav"))
        page.locator("#attachments span", has_text="clip.wav").wait_for()
        page.fill("#prompt", "And this sound?")
        page.click("#send")
        third, _ = finished_answer(page, 2)
        history += [{"role": "assistant", "content": second},
                    {"role": "user", "content": [audio_part(0.6, seed=4), {"type": "text", "text": "And this sound?"}]}]
        assert third == ask(client, history, max_tokens=12).choices[0].message.content

        page.set_input_files("#file", str(tmp_path / "clip.mp4"))  # sent as vLLM's video_url part
        page.locator("#attachments span", has_text="clip.mp4").wait_for()
        page.fill("#prompt", "What happens in this video?")
        page.click("#send")
        fourth, _ = finished_answer(page, 3)
        assert page.locator(".msg.user video").count() == 1
        history += [{"role": "assistant", "content": third},
                    {"role": "user", "content": [{"type": "video_url", "video_url": {"url": data_uri(clip, "video/mp4")}},
                                                 {"type": "text", "text": "What happens in this video?"}]}]
        assert fourth and fourth == ask(client, history, max_tokens=12).choices[0].message.content
        without_video = history[:-1] + [{"role": "user", "content": "What happens in this video?"}]
        assert fourth != ask(client, without_video, max_tokens=12).choices[0].message.content  # the video counted
        # a voice note recorded as WebM is audio (audio/webm), though .webm is also a video container
        page.set_input_files("#file", {"name": "note.webm", "mimeType": "audio/webm", "buffer": b"\x1aE\xdf\xa3"})
        page.locator("#attachments span", has_text="note.webm").wait_for()
        assert page.evaluate("chat.attachments.map((a) => [a.part.type, (a.part.input_audio || {}).format])") == [
            ["input_audio", "webm"]]
        page.click("#attachments span button")  # removed before sending
        assert page.evaluate("chat.attachments.length") == 0 and page.locator("#attachments span").count() == 0
        assert page.locator(".msg.error").count() == 0 and not errors


def test_page_refuses_files_beyond_the_servers_limit_before_reading_them(browser):
    """The page learns the server's request size limit from /v1/models and refuses, with a message, a
    file whose base64 cannot fit before reading it, a file the browser cannot read, and a turn whose
    request (the whole conversation) would exceed the limit, before sending it."""
    limit = 60_000
    # a data URI of n bytes has 4 * ceil(n / 3) base64 characters after its header: 44,982 bytes fit
    assert len(data_uri(bytes(44_982), "audio/wav")) <= limit < len(data_uri(bytes(44_983), "audio/wav"))
    with live_server(limits=ServerLimits(max_body_bytes=limit)) as server:
        page = browser.new_page()
        errors, posts = [], []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("request", lambda request: posts.append(request.url) if request.method == "POST" else None)
        page.goto(server.url + "/")
        page.wait_for_function("document.getElementById('status').textContent.includes('model tiny')")
        page.evaluate("""() => {  // counts the files the page reads
            window.reads = 0;
            window.counted = function (file) { window.reads += 1; return window.read.call(this, file); };
            window.read = FileReader.prototype.readAsDataURL;
            FileReader.prototype.readAsDataURL = window.counted;
        }""")
        page.set_input_files("#file", [
            {"name": "edge.wav", "mimeType": "audio/wav", "buffer": bytes(44_982)},
            {"name": "over.wav", "mimeType": "audio/wav", "buffer": bytes(44_983)},
            {"name": "big.wav", "mimeType": "audio/wav", "buffer": bytes(46_000)}])
        page.locator("#attachments span", has_text="edge.wav").wait_for()
        page.locator(".msg.error").nth(1).wait_for()
        assert page.evaluate("window.reads") == 1 and page.evaluate("chat.attachments.map((a) => a.name)") == ["edge.wav"]
        # 46,000 bytes = 45 KB; 22 + 4 * 15,334 = 61,358 bytes = 60 KB; 60,000 bytes = 59 KB
        assert page.locator(".msg.error").all_text_contents() == [
            "over.wav (44 KB) is too large to send: base64-encoded for the request it takes 59 KB, and this server "
            "accepts at most 59 KB per request",
            "big.wav (45 KB) is too large to send: base64-encoded for the request it takes 60 KB, and this server "
            "accepts at most 59 KB per request"]

        page.evaluate("""() => {  // what the browser does when a file cannot be read (moved, no permission)
            FileReader.prototype.readAsDataURL = function () {
                Object.defineProperty(this, "error", {value: new DOMException("The file could not be read.", "NotReadableError")});
                setTimeout(() => this.onerror(new ProgressEvent("error")));
            };
        }""")
        page.set_input_files("#file", {"name": "gone.png", "mimeType": "image/png", "buffer": png_bytes(1)})
        page.locator(".msg.error").nth(2).wait_for()
        assert page.locator(".msg.error").nth(2).text_content() == "gone.png cannot be read: The file could not be read."
        assert page.evaluate("chat.attachments.map((a) => a.name)") == ["edge.wav"]

        page.fill("#prompt", "What is this?")  # edge.wav fits alone, not with the request around it
        page.click("#send")
        page.locator(".msg.error").nth(3).wait_for()
        refusal = page.locator(".msg.error").nth(3).text_content()
        assert refusal == ("this message with the conversation before it takes 59 KB, more than the 59 KB this server "
                           "accepts per request: remove an attachment or start a New chat")
        assert not posts and page.locator(".msg.user").count() == 0 and page.input_value("#prompt") == "What is this?"

        page.click("#attachments span button")  # a smaller clip instead: sent and answered
        page.evaluate("() => { FileReader.prototype.readAsDataURL = window.counted; }")
        page.set_input_files("#file", {"name": "clip.wav", "mimeType": "audio/wav", "buffer": wav_bytes(0.6, seed=4)})
        page.locator("#attachments span", has_text="clip.wav").wait_for()
        page.click("#send")
        answer, _ = finished_answer(page, 0)
        assert answer and posts == [server.url + "/v1/chat/completions"]
        assert page.locator(".msg.error").count() == 4 and not errors


def test_page_asks_a_model_in_the_layout_it_was_trained_on(browser, tmp_path):
    """A model trained question, image, question (the quickstart's, `media_layout` text_media_text, which
    /v1/models reports) is sent the question, the image and the question again, as parts: the reply
    the pipeline gives that question with the image unmarked. It was sent image then question."""
    from modrwkv.inference import ModRWKVPipeline

    (tmp_path / "picture.png").write_bytes(png_bytes(21))
    question = "What colour is the circle?"
    pipe = ModRWKVPipeline.from_pretrained(question_media_question_dir())
    with live_server(pipe, model_name="qmq") as server:
        page = browser.new_page()
        page.goto(server.url + "/")
        page.wait_for_function("document.getElementById('status').textContent.includes('model qmq')")
        page.fill("#temperature", "0")
        page.fill("#max-tokens", "12")
        page.set_input_files("#file", str(tmp_path / "picture.png"))
        page.locator("#attachments span", has_text="picture.png").wait_for()
        page.fill("#prompt", question)
        with page.expect_request("**/v1/chat/completions") as sent:
            page.click("#send")
        reply, _ = finished_answer(page, 0)
    text = {"type": "text", "text": question}
    assert sent.value.post_data_json["messages"] == [{"role": "user", "content": [text, image_part(21), text]}]
    assert reply == pipe.chat(question, images=[png_bytes(21)], **{**GREEDY, "max_new_tokens": 12})


def test_page_sends_attachments_in_the_order_the_prompt_builder_places_media_without_markers(browser, tmp_path):
    """A clip and two pictures picked in that order are sent images first, then the audio, one part
    each: the readers' and the prompt builder's layout of media a text does not place
    (`unmarked_markers`), so the reply is the pipeline's for the question with those media unmarked.
    They were sent in the order picked, a layout the model was not trained on."""
    from test_pipeline import tiny_pipeline

    (tmp_path / "clip.wav").write_bytes(wav_bytes(0.6, seed=4))
    (tmp_path / "first.png").write_bytes(png_bytes(21))
    (tmp_path / "second.png").write_bytes(png_bytes(22))
    question = "What do you see and hear?"
    with live_server() as server:
        page = browser.new_page()
        page.goto(server.url + "/")
        page.wait_for_function("document.getElementById('status').textContent.includes('model tiny')")
        page.fill("#temperature", "0")
        page.fill("#max-tokens", "12")
        for name in ("clip.wav", "first.png", "second.png"):
            page.set_input_files("#file", str(tmp_path / name))
            page.locator("#attachments span", has_text=name).wait_for()
        page.fill("#prompt", question)
        with page.expect_request("**/v1/chat/completions") as sent:
            page.click("#send")
        reply, _ = finished_answer(page, 0)
    assert sent.value.post_data_json["messages"] == [{"role": "user", "content": [
        image_part(21), image_part(22), audio_part(0.6, seed=4), {"type": "text", "text": question}]}]
    assert reply == tiny_pipeline().chat(question, images=[png_bytes(21), png_bytes(22)], audio=[wav_bytes(0.6, seed=4)],
                                         **{**GREEDY, "max_new_tokens": 12})
