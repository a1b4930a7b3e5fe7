"""The frame of the fake provider's extra wire formats: a :class:`Route` claims a
request, a :class:`Wire` supplies one provider's bodies, and :func:`serve_chat` /
:func:`serve_embed` answer a scripted :class:`~tests.servers.fake_provider.Reply` over
the fake provider's HTTP handler.  See tests/servers/wire_formats.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.servers.fake_provider import (
    MALFORMED_BODY,
    Reply,
    _Answer,
    _answer,
    _ChatRequest,
    _last_user_text,
    _Stream,
    _text_of,
    _word_count,
)

__all__ = ["Route", "Wire", "parse", "retry_hint", "serve_chat", "serve_embed"]

Serve = Callable[[Any, dict[str, Any], Reply], None]


@dataclass(frozen=True)
class Route:
    """A request claimed by a wire format: its model, whether it streams, who answers."""

    model: str
    stream: bool
    serve: Serve


def retry_hint(reply: Reply) -> str | None:
    """The seconds a scripted error asks for (``Reply.error(..., retry_after=...)``), which
    each wire format says its provider's way, or not at all."""
    return reply.headers.get("Retry-After")


def parse(messages: list[dict[str, Any]], model: str, stream: bool,
          extra_text: str = "", include_usage: bool = True) -> _ChatRequest:
    """What the answer depends on, from messages already in OpenAI's shape."""
    texts = [extra_text, *(_text_of(m.get("content")) for m in messages)]
    return _ChatRequest(model=model, stream=stream, include_usage=include_usage,
                        legacy_functions=False, prompt_words=_word_count(" ".join(texts)),
                        last_user_text=_last_user_text(messages))


class Wire:
    """What a wire format supplies; ``serve_chat``/``serve_embed`` do the HTTP."""

    stream_type = "text/event-stream"
    context_message = "the prompt is too long"

    def error(self, reply: Reply) -> tuple[int, Any, dict[str, str]]:
        raise NotImplementedError

    def completion(self, request: _ChatRequest, answer: _Answer) -> dict[str, Any]:
        raise NotImplementedError

    def stream(self, request: _ChatRequest, answer: _Answer) -> _Stream:
        raise NotImplementedError

    def malformed_stream(self) -> bytes:
        return b"data: " + MALFORMED_BODY + b"\n\n"

    def embeddings(self, model: str, texts: list[str]) -> dict[str, Any]:
        raise NotImplementedError


def serve_chat(handler: Any, wire: Wire, request: _ChatRequest, reply: Reply) -> None:
    """Answer a chat request the way ``FakeProvider`` does, in ``wire``'s format."""
    if not handler.wait(reply.delay):
        return
    if reply.kind in ("error", "context_window"):
        status, body, headers = wire.error(reply)
        _send(handler, status, body, headers)
    elif reply.kind == "malformed" and request.stream:
        handler.send_head(200, wire.stream_type, None, None)
        handler.write_chunk(wire.malformed_stream())
        handler.write_chunk(b"")
    elif reply.kind == "malformed":
        handler.send_malformed(stream=False)
    elif reply.kind == "cut_stream" and not request.stream:
        handler.send_partial(json.dumps(wire.completion(request, _answer(request, reply))))
    elif request.stream:
        handler.send_stream(wire.stream(request, _answer(request, reply)),
                             cut_after=reply.after_chunks if reply.kind == "cut_stream" else None,
                             chunk_delay=reply.chunk_delay, content_type=wire.stream_type)
    else:
        handler.send_json(200, wire.completion(request, _answer(request, reply)))


def serve_embed(handler: Any, wire: Wire, model: str, texts: list[str], reply: Reply) -> None:
    if not handler.wait(reply.delay):
        return
    if reply.kind in ("error", "context_window"):
        status, body, headers = wire.error(reply)
        _send(handler, status, body, headers)
    elif reply.kind == "malformed":
        handler.send_malformed(stream=False)
    else:
        handler.send_json(200, wire.embeddings(model, texts))


def _send(handler: Any, status: int, body: Any, headers: dict[str, str]) -> None:
    if isinstance(body, bytes):
        handler.send_head(status, headers.pop("Content-Type", "text/plain"), headers, len(body))
        handler.wfile.write(body)
        handler.wfile.flush()
    else:
        handler.send_json(status, body, headers)

