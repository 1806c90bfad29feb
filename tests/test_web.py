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
from test_pipeline import png_bytes, wav_bytes  # noqa: F401
from test_server import KEY, ask, audio_part, data_uri, image_part, live_server
from test_video import distinct_frames, encode_video

pytestmark = pytest.mark.usefixtures("one_torch_thread")

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
