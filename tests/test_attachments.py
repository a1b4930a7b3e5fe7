"""Images in a prompt: ``chat -a FILE|URL``, and the client's check that the model takes them.

The CLI runs for real (``python -m dewey.llm``, helpers from tests/test_cli.py) against the
fake provider, whose journal shows what each wire received: OpenAI's ``image_url`` part
on the native transport, Anthropic's ``image`` block when LiteLLM translates it.
"""

from __future__ import annotations

import base64
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

from dewey.llm import LiteLLMClient, LiteLLMConfig, LLMConfigError
from dewey.llm._config import RateLimit
from dewey.llm._ratelimit import LocalRateLimiter
from tests.conftest import TEST_KEY
from tests.servers.fake_provider import FakeProvider, Reply
from tests.test_cli import WIRE_MODEL, cli_env, finish, ok, one_error_line, start

NO_VISION = "openai/o3-mini"  # LiteLLM's map: supports_vision false


def png(width: int = 1, height: int = 1) -> bytes:
    """A valid PNG of ``width`` x ``height`` black pixels (RGB, 8 bits), made by hand."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x00\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def image_message(text: str, data: bytes) -> list[dict[str, Any]]:
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    return [{"role": "user", "content": [{"type": "text", "text": text},
                                         {"type": "image_url", "image_url": {"url": url}}]}]


# --- the library ------------------------------------------------------------------------------

def test_images_to_a_model_that_takes_none_are_refused_before_sending(
        make_client: Any, provider: FakeProvider) -> None:
    client = make_client(model=NO_VISION)
    for stream in (False, True):
        with pytest.raises(LLMConfigError, match=r"openai/o3-mini does not take images .*"
                                                 r"supports_vision: false.*such as '") as caught:
            client.generate_completion(image_message("What is this?", png()), stream=stream)
        assert caught.value.model == NO_VISION
    assert provider.requests == []  # nothing was sent
    assert client.generate_completion("text only").choices[0].message.content == "echo: text only"

    # A model the map does not know (a self-hosted vision model) is the server's to judge.
    unknown = make_client(model="openai/my-own-vision-model")
    unknown.generate_completion(image_message("Describe", png()))
    assert provider.requests_for("my-own-vision-model")[0].json["messages"][0]["content"][1][
        "type"] == "image_url"


def test_fallbacks_that_take_no_images_are_skipped(make_client: Any, provider: FakeProvider) -> None:
    provider.script(WIRE_MODEL, Reply.error(503))
    client = make_client(max_retries=0, fallback_models=[NO_VISION, "openai/gpt-4o"])
    response = client.generate_completion(image_message("Describe", png()))
    assert response.choices[0].message.content == "echo: Describe"
    assert [request.model for request in provider.requests] == [WIRE_MODEL, "gpt-4o"]


def test_an_image_counts_as_its_tokens_not_its_base64_length(provider: FakeProvider) -> None:
    # 200 KB of image data is ~70,000 tokens by its length; a rate limit of 20,000 tokens a
    # minute would make the second call wait a minute.  Counted as an image, neither waits.
    waits: list[float] = []
    limiter = LocalRateLimiter({"*": RateLimit(tpm=20_000)}, sleep=waits.append)
    config = LiteLLMConfig(model="openai/gpt-4o-mini", api_base=provider.openai_base,
                           api_key=TEST_KEY, track_usage=False)
    big = png(300, 300) + bytes(200_000)  # the size is what matters here, not the pixels
    with LiteLLMClient(config=config, rate_limiter=limiter) as client:
        for _ in range(2):
            client.generate_completion(image_message("Describe", big))
    assert waits == []
    assert len(provider.requests) == 2


# --- the command line ---------------------------------------------------------------------------

def test_chat_attaches_files_and_urls_after_stdin_and_prompt(provider: FakeProvider,
                                                              tmp_path: Path) -> None:
    image = png(2, 2)
    (tmp_path / "shot.png").write_bytes(image)
    data_url = "data:image/png;base64," + base64.b64encode(image).decode()
    env = cli_env(tmp_path, provider)
    attached = start(["chat", "-a", "shot.png", "What is wrong?"], env, tmp_path,
                     stdin="12:00 disk full\n")
    two = start(["chat", "--no-stream", "-a", "https://example.com/cat.jpg", "--attachment",
                 "shot.png", "Compare them"], env, tmp_path)
    alone = start(["chat", "-a", "shot.png"], env, tmp_path)  # an image without a question
    first, second, third = finish(attached), finish(two), finish(alone)

    # stdin first, then the prompt (llm's order), then the image.
    assert ok(first).stdout == "echo: 12:00 disk full\n\nWhat is wrong?\n"
    assert ok(second).stdout == "echo: Compare them\n"
    ok(third)
    sent = sorted((request.json["messages"][0]["content"] for request in provider.requests_for(WIRE_MODEL)),
                  key=len)
    image_part = {"type": "image_url", "image_url": {"url": data_url}}
    assert sent == [
        [image_part],
        [{"type": "text", "text": "12:00 disk full\n\nWhat is wrong?"}, image_part],
        [{"type": "text", "text": "Compare them"},
         {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}, image_part],
    ]


def test_chat_refuses_what_is_not_an_image_and_models_without_vision(
        provider: FakeProvider, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a picture\n", encoding="utf-8")
    (tmp_path / "shot.png").write_bytes(png())
    (tmp_path / "pictures").mkdir()
    env = cli_env(tmp_path, provider)
    runs = [start(args, env, tmp_path) for args in (
        ["chat", "-a", "notes.txt", "hi"],
        ["chat", "-a", "missing.png", "hi"],
        ["chat", "-a", "pictures", "hi"],
        ["chat", "-m", NO_VISION, "-a", "shot.png", "hi"],
    )]
    text, missing, folder, no_vision = (one_error_line(finish(run)) for run in runs)
    assert text.startswith("error: -a notes.txt is not an image (text/plain, by its extension): "
                           "attach PNG, JPEG, GIF or WebP images")
    assert missing == "error: -a missing.png: no such file (attach an image file or an http(s) URL)"
    assert folder.startswith("error: -a pictures: is a directory")
    assert no_vision.startswith("error: openai/o3-mini does not take images")
    assert "send them to a model that does, such as '" in no_vision
    assert provider.requests == []  # nothing was sent


def test_chat_image_reaches_anthropic_as_its_image_block(provider: FakeProvider,
                                                          tmp_path: Path) -> None:
    # LiteLLM translates OpenAI's image_url part into Anthropic's image block, whose
    # documented shape is {"type": "image", "source": {"type": "base64", "media_type":
    # "image/png", "data": ...}} (docs.anthropic.com/en/docs/build-with-claude/vision).
    image = png(3, 1)
    (tmp_path / "chart.png").write_bytes(image)
    env = cli_env(tmp_path, LITELLM_MODEL="anthropic/claude-haiku-4-5",
                  LITELLM_API_BASE=provider.anthropic_base)
    result = ok(finish(start(["chat", "-a", "chart.png", "Describe the chart"], env, tmp_path)))
    assert result.stdout == "echo: Describe the chart\n"
    [request] = provider.requests
    assert request.path.endswith("/v1/messages")
    blocks = request.json["messages"][0]["content"]
    assert {"type": "text", "text": "Describe the chart"} in blocks
    [block] = [block for block in blocks if block.get("type") == "image"]
    assert block["source"] == {"type": "base64", "media_type": "image/png",
                               "data": base64.b64encode(image).decode()}


# --- chat -a -: the image piped on stdin ------------------------------------------------------------

# The first bytes of each type the command recognizes (the rest is not looked at, and the
# fake provider does not decode images).
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(32)
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00" + bytes(32)
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(32)


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def test_chat_attaches_the_image_piped_on_stdin(provider: FakeProvider, tmp_path: Path) -> None:
    image = png(2, 3)
    (tmp_path / "shot.png").write_bytes(image)
    env = cli_env(tmp_path, provider)
    runs = [start(["chat", "-a", "-", "describe"], env, tmp_path, stdin=image),
            start(["chat", "--no-stream", "-a", "shot.png", "--attachment", "-", "jpeg"], env,
                  tmp_path, stdin=JPEG),
            start(["chat", "-a", "-", "gif"], env, tmp_path, stdin=GIF),
            start(["chat", "-a", "-", "webp"], env, tmp_path, stdin=WEBP)]
    described, jpeg, gif, webp = (ok(finish(run)) for run in runs)

    # stdin is the image, not text before the prompt: the prompt is the argument alone.
    assert described.stdout == "echo: describe\n"
    assert (jpeg.stdout, gif.stdout, webp.stdout) == ("echo: jpeg\n", "echo: gif\n", "echo: webp\n")
    sent = {request.json["messages"][-1]["content"][0]["text"]: request.json["messages"]
            for request in provider.requests_for(WIRE_MODEL)}
    assert len(sent) == 4

    def part(mime: str, data: bytes) -> dict[str, Any]:
        return {"type": "image_url", "image_url": {"url": data_url(mime, data)}}

    assert sent["describe"] == [{"role": "user", "content": [
        {"type": "text", "text": "describe"}, part("image/png", image)]}]
    # In the order given: the file, then stdin's image.
    assert sent["jpeg"][-1]["content"] == [
        {"type": "text", "text": "jpeg"}, part("image/png", image), part("image/jpeg", JPEG)]
    assert sent["gif"][-1]["content"][1:] == [part("image/gif", GIF)]
    assert sent["webp"][-1]["content"][1:] == [part("image/webp", WEBP)]


def test_chat_refuses_stdin_that_holds_no_image_and_misuse_of_a_dash(
        provider: FakeProvider, tmp_path: Path) -> None:
    env = cli_env(tmp_path, provider)
    pdf = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + bytes(100)
    runs = [start(["chat", "-a", "-", "hi"], env, tmp_path, stdin=stdin) for stdin in (
        b"12:00 disk full\n", pdf, b"")]
    usage = [start(args, env, tmp_path, stdin=png()) for args in (
        ["chat", "-a", "-"], ["chat", "-a", "-", "-a", "-", "hi"])]
    text, binary, empty = (one_error_line(finish(run)) for run in runs)
    no_prompt, twice = (finish(run) for run in usage)

    assert text == ("error: -a -: stdin holds no PNG, JPEG, GIF or WebP image but 16 bytes of "
                    "text ('12:00 disk full\\n'): to send text, pipe it without -a -")
    assert binary == ("error: -a -: stdin holds no PNG, JPEG, GIF or WebP image: 115 bytes of "
                      "binary data starting 25 50 44 46 2d 31 2e 37; pipe an image in: "
                      "cat photo.png | dewey-llm chat -a - PROMPT")
    assert empty == ("error: -a -: stdin is empty: pipe an image in: "
                     "cat photo.png | dewey-llm chat -a - PROMPT")
    # Usage errors (exit 2), naming the fix.
    assert no_prompt.returncode == 2
    assert no_prompt.stderr.splitlines()[-1] == (
        "dewey-llm chat: error: -a - reads the image from stdin, so the prompt must be an "
        'argument: cat photo.png | dewey-llm chat -a - "What is in this image?"')
    assert twice.returncode == 2
    assert "-a - is given twice: stdin holds one image" in twice.stderr

    # A terminal on stdin has no image to read: a usage error rather than a wait for one.
    controller, terminal = os.openpty()
    try:
        on_terminal = subprocess.run([sys.executable, "-m", "dewey.llm", "chat", "-a", "-", "hi"],
                                     env=env, cwd=tmp_path, stdin=terminal, capture_output=True,
                                     text=True, timeout=120)
    finally:
        os.close(terminal)
        os.close(controller)
    assert on_terminal.returncode == 2
    assert "-a - reads the image from stdin, but stdin is a terminal: pipe the image in" in (
        on_terminal.stderr)
    assert provider.requests == []  # nothing was sent
