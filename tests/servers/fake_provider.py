"""A fault-injecting fake LLM provider that speaks the OpenAI and Anthropic wire formats.

Tests start it on ``127.0.0.1`` with a random port and point real clients (LiteLLM, the
openai SDK) at it::

    with FakeProvider() as server:
        server.script("gpt-fake", Reply.error(429, retry_after=2), Reply.ok("hello"))
        litellm.completion(model="openai/gpt-fake", api_base=server.openai_base,
                           api_key="sk-test", messages=[...], max_retries=0)

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/embeddings``, ``POST /v1/messages``
(Anthropic; LiteLLM appends ``/v1/messages`` to :attr:`FakeProvider.anthropic_base`) and
``GET /v1/models``; anything else answers 404.  The ``/v1`` prefix is optional.

Every request is recorded (:class:`Recorded`) before it is answered.  Each request pops
the next :class:`Reply` scripted for its model (:meth:`FakeProvider.script`), else the
next one scripted for every model (:meth:`FakeProvider.script_all`), else ``Reply.ok()``.
A model with a per-model script never consumes ``script_all`` replies, even once its own
queue has run dry.

Wire details worth knowing: non-stream responses carry ``Content-Length`` and keep the
connection alive; streams use chunked transfer encoding, so a cut stream (no terminating
chunk) is detectable by HTTP clients as an incomplete body.

Run as a process for multi-process tests::

    python -m tests.servers.fake_provider --port 0      # prints "READY http://127.0.0.1:PORT"
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import hashlib
import json
import math
import re
import select
import signal
import socket
import struct
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from typing_extensions import Self  # typing.Self is 3.11+

__all__ = ["FakeProvider", "Recorded", "Reply"]

ReplyKind = Literal["ok", "tool_call", "error", "malformed", "cut_stream", "context_window"]

MALFORMED_BODY = b'{"id": "chatcmpl-broken", "choices": [ this is not JSON'
CONTEXT_WINDOW_MESSAGE = (
    "This model's maximum context length is 8192 tokens. However, your messages resulted "
    "in 12000 tokens. Please reduce the length of the messages."
)
ANTHROPIC_CONTEXT_WINDOW_MESSAGE = "prompt is too long: 212000 tokens > 200000 maximum"
EMBEDDING_DIMENSIONS = 8


# --------------------------------------------------------------------------- scripting


@dataclass(frozen=True)
class Reply:
    """One scripted behaviour of the fake provider; build it with the classmethods."""

    kind: ReplyKind
    content: str | None = None
    delay: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tool_name: str | None = None
    tool_arguments: dict[str, Any] | None = None
    call_id: str = "call_1"
    status: int = 200
    message: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    error_type: str | None = None
    code: str | None = None
    after_chunks: int = 2
    chunk_delay: float = 0.0
    usage_unasked: bool = False
    vectors: int | None = None
    refusal: str | None = None

    @classmethod
    def ok(
        cls,
        content: str | None = None,
        *,
        delay: float = 0.0,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        chunk_delay: float = 0.0,
        usage_unasked: bool = False,
    ) -> Reply:
        """A successful answer; ``content=None`` echoes the last user message.

        For streams, ``chunk_delay`` sleeps that long before each content chunk, and
        ``usage_unasked`` sends the usage-only chunk (empty ``choices``) even without
        ``stream_options.include_usage``, as some OpenAI-compatible servers do (e.g. vLLM
        started with ``--enable-force-include-usage``).
        """
        return cls(
            "ok",
            content=content,
            delay=delay,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            chunk_delay=chunk_delay,
            usage_unasked=usage_unasked,
        )

    @classmethod
    def refused(cls, refusal: str = "I'm sorry, I cannot assist with that request.", *,
                cut_after: int | None = None) -> Reply:
        """A model declining a structured-output request, as OpenAI reports it: the message's
        ``refusal`` holds why and its ``content`` is null; a stream sends the refusal in
        pieces in ``choices[0].delta.refusal`` (the first delta ``{"role": "assistant",
        "content": null, "refusal": ""}``), content null throughout, then finishes with
        ``stop`` (Anthropic's format has no such field and answers the text).  Shapes from
        https://platform.openai.com/docs/guides/structured-outputs#refusals, the
        ``choices[].message.refusal`` field of the chat completion object
        (https://platform.openai.com/docs/api-reference/chat/object) and the
        ``choices[].delta.refusal`` field of the chunk object
        (https://platform.openai.com/docs/api-reference/chat-streaming/streaming; the openai
        SDK's ``ChoiceDelta.refusal``, whose stream helper emits ``refusal.delta`` events).

        ``cut_after``: the connection drops after that many pieces of the refusal, as
        :meth:`cut_stream`'s does after its content chunks."""
        if cut_after is not None:
            return cls("cut_stream", content=refusal, refusal=refusal, after_chunks=cut_after)
        return cls("ok", content=refusal, refusal=refusal)

    @classmethod
    def tool_call(cls, name: str, arguments: dict[str, Any], *, call_id: str = "call_1") -> Reply:
        """An assistant message calling one tool (``function_call`` for legacy requests)."""
        return cls("tool_call", tool_name=name, tool_arguments=dict(arguments), call_id=call_id)

    @classmethod
    def error(
        cls,
        status: int,
        message: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        retry_after: float | str | None = None,
        retry_after_ms: int | None = None,
        error_type: str | None = None,
        code: str | None = None,
    ) -> Reply:
        """An HTTP error with a JSON body in the provider's format.

        ``message``, ``error_type`` and ``code`` default to realistic values for ``status``.
        ``retry_after`` sets ``Retry-After`` (seconds, or an HTTP-date string as given);
        ``retry_after_ms`` sets ``retry-after-ms``.
        """
        all_headers = dict(headers or {})
        if retry_after is not None:
            all_headers["Retry-After"] = _format_retry_after(retry_after)
        if retry_after_ms is not None:
            all_headers["retry-after-ms"] = str(retry_after_ms)
        return cls(
            "error",
            status=status,
            message=message,
            headers=all_headers,
            error_type=error_type,
            code=code,
        )

    @classmethod
    def few_vectors(cls, count: int) -> Reply:
        """An embeddings answer with only the first ``count`` vectors (a provider that
        drops inputs); chat requests get an ordinary answer."""
        return cls("ok", vectors=count)

    @classmethod
    def slow(cls, delay: float, content: str | None = None) -> Reply:
        """Sleep ``delay`` seconds, then answer like :meth:`ok`."""
        return cls.ok(content, delay=delay)

    @classmethod
    def malformed(cls) -> Reply:
        """A 200 whose body is not JSON (for streams: an SSE event whose data is not JSON)."""
        return cls("malformed")

    @classmethod
    def cut_stream(cls, after_chunks: int = 2) -> Reply:
        """Send ``after_chunks`` content chunks, then drop the connection without ``[DONE]``.

        Non-stream requests get half of a JSON body and a closed connection.
        """
        return cls("cut_stream", after_chunks=after_chunks)

    @classmethod
    def context_window(cls) -> Reply:
        """A 400 saying the prompt does not fit the model, in the provider's own words."""
        return cls("context_window", status=400)


@dataclass
class Recorded:
    """One request as the fake provider received it."""

    path: str
    model: str | None
    body: dict[str, Any] | None
    headers: dict[str, str]
    time: float
    stream: bool
    method: str = "POST"

    @property
    def json(self) -> dict[str, Any]:
        """The body, for a request that must have sent a JSON object (fails the test if not)."""
        assert self.body is not None, f"{self.path} was sent without a JSON object body"
        return self.body


def _format_retry_after(value: float | str) -> str:
    """Render a Retry-After value: whole seconds without a fraction, strings as given."""
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)


# --------------------------------------------------------------------------- text helpers


def _text_of(content: Any) -> str:
    """The plain text of a message content: a string, or a list of (text) parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = (_text_of_part(part) for part in content)
        return " ".join(text for text in texts if text)
    return ""


def _text_of_part(part: Any) -> str:
    """The text of one content part (OpenAI ``text`` parts, Anthropic text/tool_result)."""
    if isinstance(part, str):
        return part
    if not isinstance(part, dict):
        return ""
    if isinstance(part.get("text"), str):
        return str(part["text"])
    if part.get("type") == "tool_result":
        return _text_of(part.get("content"))
    return ""


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    """The text of the last user message that has any text."""
    for message in reversed(messages):
        text = _text_of(message.get("content"))
        if message.get("role") == "user" and text:
            return text
    return ""


def _word_count(text: str) -> int:
    """Whitespace-separated words in ``text``."""
    return len(text.split())


def _pieces(text: str) -> list[str]:
    """Split ``text`` into word-ish pieces whose concatenation is exactly ``text``."""
    pieces = re.findall(r"\s*\S+", text)
    tail = text[len("".join(pieces)) :]
    if tail:
        if pieces:
            pieces[-1] += tail
        else:
            pieces = [tail]
    return pieces


def _embedding(text: str) -> list[float]:
    """A deterministic unit vector derived from the sha256 of ``text``."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    raw = [
        int.from_bytes(digest[2 * i : 2 * i + 2], "big") / 65535 * 2 - 1
        for i in range(EMBEDDING_DIMENSIONS)
    ]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


def _sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event; ``data`` is JSON-encoded unless it is already a string."""
    payload = data if isinstance(data, str) else json.dumps(data)
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {payload}\n\n".encode()


# --------------------------------------------------------------------------- wire formats


@dataclass(frozen=True)
class _ChatRequest:
    """What the dialects need to know about a chat request."""

    model: str
    stream: bool
    include_usage: bool
    legacy_functions: bool
    prompt_words: int
    last_user_text: str


@dataclass(frozen=True)
class _Answer:
    """The concrete answer to a chat request: text or one tool call, plus token counts."""

    text: str
    tool_name: str | None
    tool_arguments: str
    call_id: str
    prompt_tokens: int
    completion_tokens: int
    refusal: str | None = None

    @property
    def is_tool_call(self) -> bool:
        return self.tool_name is not None


@dataclass
class _Stream:
    """A stream split so that it can be cut after some content events."""

    preamble: list[bytes]
    content: list[bytes]
    closing: list[bytes]


def _answer(request: _ChatRequest, reply: Reply) -> _Answer:
    """Resolve a ``Reply`` (ok / tool_call / cut_stream) against a request."""
    if reply.kind == "tool_call":
        arguments = json.dumps(reply.tool_arguments or {})
        text = ""
        completion_words = _word_count(arguments)
    else:
        if reply.kind == "cut_stream":
            text = " ".join(f"part{i}" for i in range(reply.after_chunks + 3))
        elif reply.content is not None:
            text = reply.content
        else:
            text = f"echo: {request.last_user_text}"
        arguments = ""
        completion_words = _word_count(text)
    return _Answer(
        text=text,
        tool_name=reply.tool_name if reply.kind == "tool_call" else None,
        tool_arguments=arguments,
        call_id=reply.call_id,
        prompt_tokens=_unless_none(reply.prompt_tokens, max(request.prompt_words, 1)),
        completion_tokens=_unless_none(reply.completion_tokens, completion_words),
        refusal=reply.refusal,
    )


def _unless_none(value: int | None, default: int) -> int:
    """``value``, or ``default`` when it is ``None`` (0 is a legitimate override)."""
    return default if value is None else value


class _OpenAIDialect:
    """OpenAI chat-completions JSON, SSE chunks and error bodies."""

    ERROR_DEFAULTS: dict[int, tuple[str, str | None]] = {
        400: ("invalid_request_error", None),
        401: ("invalid_request_error", "invalid_api_key"),
        403: ("permission_error", None),
        404: ("invalid_request_error", "model_not_found"),
        429: ("requests", "rate_limit_exceeded"),
    }

    def parse(self, body: dict[str, Any]) -> _ChatRequest:
        """Extract the fields the fake needs from a chat-completions request body."""
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        texts = [_text_of(m.get("content")) for m in messages]
        options = body.get("stream_options") or {}
        return _ChatRequest(
            model=str(body.get("model", "")),
            stream=bool(body.get("stream")),
            include_usage=bool(options.get("include_usage")),
            legacy_functions=bool(body.get("functions")) and not body.get("tools"),
            prompt_words=_word_count(" ".join(texts)),
            last_user_text=_last_user_text(messages),
        )

    def error_body(self, reply: Reply) -> dict[str, Any]:
        """``{"error": {message, type, param, code}}`` for an error or context-window reply."""
        if reply.kind == "context_window":
            return _openai_error(
                CONTEXT_WINDOW_MESSAGE,
                "invalid_request_error",
                "context_length_exceeded",
                param="messages",
            )
        default_type, default_code = self.ERROR_DEFAULTS.get(
            reply.status,
            ("server_error", None) if reply.status >= 500 else ("invalid_request_error", None),
        )
        return _openai_error(
            reply.message or _default_message(reply.status),
            reply.error_type or default_type,
            reply.code if reply.code is not None else default_code,
        )

    def completion(self, request: _ChatRequest, answer: _Answer) -> dict[str, Any]:
        """A complete ``chat.completion`` object."""
        message: dict[str, Any] = {"role": "assistant", "content": answer.text}
        finish_reason = "stop"
        if answer.refusal is not None:
            message = {"role": "assistant", "content": None, "refusal": answer.refusal}
        elif answer.is_tool_call and request.legacy_functions:
            message["content"] = None
            message["function_call"] = {
                "name": answer.tool_name,
                "arguments": answer.tool_arguments,
            }
            finish_reason = "function_call"
        elif answer.is_tool_call:
            message["content"] = None
            message["tool_calls"] = [self._tool_call(answer, answer.tool_arguments)]
            finish_reason = "tool_calls"
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
            ],
            "usage": _openai_usage(answer),
        }

    def stream(self, request: _ChatRequest, answer: _Answer) -> _Stream:
        """``chat.completion.chunk`` SSE events, ending with ``data: [DONE]``."""
        chunk_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return _sse(self._chunk(chunk_id, created, request.model, [choice]))

        first, deltas, finish_reason = self._stream_deltas(request, answer)
        closing = [chunk({}, finish_reason)]
        if request.include_usage:
            usage_chunk = self._chunk(chunk_id, created, request.model, [])
            usage_chunk["usage"] = _openai_usage(answer)
            closing.append(_sse(usage_chunk))
        closing.append(_sse("[DONE]"))
        return _Stream([chunk(first)], [chunk(delta) for delta in deltas], closing)

    def _stream_deltas(
        self, request: _ChatRequest, answer: _Answer
    ) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
        """The first delta, the content deltas and the finish reason of a stream."""
        first: dict[str, Any]
        deltas: list[dict[str, Any]]
        if answer.refusal is not None:
            deltas = [{"refusal": piece} for piece in _pieces(answer.refusal)]
            return {"role": "assistant", "content": None, "refusal": ""}, deltas, "stop"
        if not answer.is_tool_call:
            deltas = [{"content": piece} for piece in _pieces(answer.text)]
            return {"role": "assistant", "content": ""}, deltas, "stop"
        pieces = _pieces(answer.tool_arguments)
        if request.legacy_functions:
            first = {
                "role": "assistant",
                "content": None,
                "function_call": {"name": answer.tool_name, "arguments": ""},
            }
            deltas = [{"function_call": {"arguments": piece}} for piece in pieces]
            return first, deltas, "function_call"
        first = {"role": "assistant", "content": None, "tool_calls": [self._tool_call(answer, "")]}
        deltas = [
            {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]} for piece in pieces
        ]
        return first, deltas, "tool_calls"

    @staticmethod
    def _tool_call(answer: _Answer, arguments: str) -> dict[str, Any]:
        return {
            "index": 0,
            "id": answer.call_id,
            "type": "function",
            "function": {"name": answer.tool_name, "arguments": arguments},
        }

    @staticmethod
    def _chunk(
        chunk_id: str, created: int, model: str, choices: list[dict[str, Any]]
    ) -> dict[str, Any]:
        return {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": choices,
        }


class _AnthropicDialect:
    """Anthropic Messages API JSON, event stream and error bodies."""

    ERROR_TYPES: dict[int, str] = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        504: "timeout_error",
        529: "overloaded_error",
    }

    def parse(self, body: dict[str, Any]) -> _ChatRequest:
        """Extract the fields the fake needs from a Messages API request body."""
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        texts = [_text_of(m.get("content")) for m in messages]
        system = _text_of(body.get("system"))
        return _ChatRequest(
            model=str(body.get("model", "")),
            stream=bool(body.get("stream")),
            include_usage=True,
            legacy_functions=False,
            prompt_words=_word_count(" ".join([system, *texts])),
            last_user_text=_last_user_text(messages),
        )

    def error_body(self, reply: Reply) -> dict[str, Any]:
        """``{"type": "error", "error": {type, message}}``."""
        if reply.kind == "context_window":
            error_type, message = "invalid_request_error", ANTHROPIC_CONTEXT_WINDOW_MESSAGE
        else:
            default_type = self.ERROR_TYPES.get(
                reply.status, "api_error" if reply.status >= 500 else "invalid_request_error"
            )
            error_type = reply.error_type or default_type
            message = reply.message or _default_message(reply.status)
        return {"type": "error", "error": {"type": error_type, "message": message}}

    def completion(self, request: _ChatRequest, answer: _Answer) -> dict[str, Any]:
        """A complete ``message`` object."""
        if answer.is_tool_call:
            content = [self._tool_use(answer, json.loads(answer.tool_arguments))]
            stop_reason = "tool_use"
        else:
            content = [{"type": "text", "text": answer.text}]
            stop_reason = "end_turn"
        return {
            **self._message_header(request),
            "content": content,
            "stop_reason": stop_reason,
            "usage": {
                "input_tokens": answer.prompt_tokens,
                "output_tokens": answer.completion_tokens,
            },
        }

    def stream(self, request: _ChatRequest, answer: _Answer) -> _Stream:
        """``message_start`` ... ``message_stop`` events."""
        if answer.is_tool_call:
            block: dict[str, Any] = self._tool_use(answer, {})
            deltas = [
                {"type": "input_json_delta", "partial_json": piece}
                for piece in _pieces(answer.tool_arguments)
            ]
            stop_reason = "tool_use"
        else:
            block = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": piece} for piece in _pieces(answer.text)]
            stop_reason = "end_turn"
        start = {
            **self._message_header(request),
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": answer.prompt_tokens, "output_tokens": 1},
        }
        preamble = [
            _event("message_start", message=start),
            _event("content_block_start", index=0, content_block=block),
            _event("ping"),
        ]
        content = [_event("content_block_delta", index=0, delta=delta) for delta in deltas]
        closing = [
            _event("content_block_stop", index=0),
            _event(
                "message_delta",
                delta={"stop_reason": stop_reason, "stop_sequence": None},
                usage={"output_tokens": answer.completion_tokens},
            ),
            _event("message_stop"),
        ]
        return _Stream(preamble, content, closing)

    @staticmethod
    def _message_header(request: _ChatRequest) -> dict[str, Any]:
        return {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": request.model,
            "stop_sequence": None,
        }

    @staticmethod
    def _tool_use(answer: _Answer, arguments: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "tool_use",
            "id": answer.call_id,
            "name": answer.tool_name,
            "input": arguments,
        }


def _event(event_type: str, **fields: Any) -> bytes:
    """An Anthropic SSE event whose ``type`` field repeats the event name."""
    return _sse({"type": event_type, **fields}, event=event_type)


def _openai_error(
    message: str, error_type: str, code: str | None, *, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def _openai_usage(answer: _Answer) -> dict[str, int]:
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": answer.prompt_tokens + answer.completion_tokens,
    }


def _default_message(status: int) -> str:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return f"Injected {status} error from the fake provider: {phrase}"


class _AnthropicTextDialect(_AnthropicDialect):
    """Anthropic's legacy Text Completions API (``POST /v1/complete``), which LiteLLM
    still uses for ``claude-2`` and ``claude-instant-1``."""

    def parse(self, body: dict[str, Any]) -> _ChatRequest:
        prompt = str(body.get("prompt") or "")
        turns = re.split(r"\n\n(?:Human|Assistant):", prompt)
        last_human = prompt.rsplit("\n\nHuman:", 1)[-1].split("\n\nAssistant:", 1)[0]
        return _ChatRequest(
            model=str(body.get("model", "")),
            stream=bool(body.get("stream")),
            include_usage=False,
            legacy_functions=False,
            prompt_words=_word_count(" ".join(turns)),
            last_user_text=last_human.strip(),
        )

    def completion(self, request: _ChatRequest, answer: _Answer) -> dict[str, Any]:
        """A ``completion`` object: the text and why it stopped."""
        return {"id": f"compl_{uuid.uuid4().hex[:24]}", "type": "completion",
                "completion": answer.text, "stop_reason": "stop_sequence",
                "model": request.model}

    def stream(self, request: _ChatRequest, answer: _Answer) -> _Stream:
        """``completion`` events, the last one with a stop reason."""
        header = {"type": "completion", "model": request.model, "stop_reason": None}
        content = [_sse({**header, "completion": piece}, event="completion")
                   for piece in _pieces(answer.text)]
        closing = [_sse({**header, "completion": "", "stop_reason": "stop_sequence"},
                        event="completion")]
        return _Stream([], content, closing)


_Dialect = _OpenAIDialect | _AnthropicDialect
OPENAI = _OpenAIDialect()
ANTHROPIC = _AnthropicDialect()
ANTHROPIC_TEXT = _AnthropicTextDialect()
# POST endpoints (path without the optional "/v1") -> chat dialect, or None for embeddings.
POST_ENDPOINTS: dict[tuple[str, str], _Dialect | None] = {
    ("POST", "/chat/completions"): OPENAI,
    ("POST", "/messages"): ANTHROPIC,
    ("POST", "/complete"): ANTHROPIC_TEXT,
    ("POST", "/embeddings"): None,
}


# --------------------------------------------------------------------------- HTTP layer


class _Handler(BaseHTTPRequestHandler):
    """Routes requests to the fake endpoints; one instance per connection."""

    protocol_version = "HTTP/1.1"
    server_version = "FakeProvider/1.0"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: tests run thousands of requests."""

    # ---- entry points

    def do_GET(self) -> None:
        self._dispatch(has_body=False)

    def do_POST(self) -> None:
        self._dispatch(has_body=True)

    def _dispatch(self, *, has_body: bool) -> None:
        provider = self.server.provider
        with provider.serving():
            try:
                self._route(provider, has_body=has_body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

    def _route(self, provider: FakeProvider, *, has_body: bool) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        body = _parse_json(self._read_body()) if has_body else None
        model = body.get("model") if body else None
        model = model if isinstance(model, str) else None
        # Other wire formats (tests/servers/wire_formats.py) name the model and the
        # stream in the URL: a subclass's route() claims those requests.
        route = provider.route(self.command, self.path, body)
        provider.record(
            Recorded(
                path=path,
                model=route.model if route else model,
                body=body,
                headers={k.lower(): v for k, v in self.headers.items()},
                time=time.monotonic(),
                stream=route.stream if route else bool(body.get("stream")) if body else False,
                method=self.command,
            )
        )
        endpoint = (self.command, path.removeprefix("/v1"))
        if route is not None:
            route.serve(self, body or {}, provider.next_reply(route.model))
        elif endpoint == ("GET", "/models"):
            self.send_json(200, provider.models_listing())
        elif endpoint not in POST_ENDPOINTS:
            message = f"Unknown path {self.command} {path}"
            self.send_json(404, _openai_error(message, "invalid_request_error", "not_found"))
        elif body is None:
            message = "The request body is not a JSON object"
            self.send_json(400, _openai_error(message, "invalid_request_error", None))
        elif (dialect := POST_ENDPOINTS[endpoint]) is None:
            self._serve_embeddings(body, provider.next_reply(model))
        else:
            self._serve_chat(dialect, body, provider.next_reply(model))

    # ---- endpoints

    def _serve_chat(self, dialect: _Dialect, body: dict[str, Any], reply: Reply) -> None:
        request = dialect.parse(body)
        if reply.usage_unasked:
            request = dataclasses.replace(request, include_usage=True)
        if not self.wait(reply.delay):
            return
        if reply.kind in ("error", "context_window"):
            self.send_json(reply.status, dialect.error_body(reply), reply.headers)
        elif reply.kind == "malformed":
            self.send_malformed(stream=request.stream)
        elif reply.kind == "cut_stream" and not request.stream:
            self.send_partial(json.dumps(dialect.completion(request, _answer(request, reply))))
        elif request.stream:
            cut_after = reply.after_chunks if reply.kind == "cut_stream" else None
            self.send_stream(dialect.stream(request, _answer(request, reply)), cut_after=cut_after,
                              chunk_delay=reply.chunk_delay)
        else:
            self.send_json(200, dialect.completion(request, _answer(request, reply)))

    def _serve_embeddings(self, body: dict[str, Any], reply: Reply) -> None:
        if not self.wait(reply.delay):
            return
        if reply.kind in ("error", "context_window"):
            self.send_json(reply.status, OPENAI.error_body(reply), reply.headers)
        elif reply.kind == "malformed":
            self.send_malformed(stream=False)
        else:
            response = _embeddings_response(body)
            if reply.vectors is not None:
                response["data"] = response["data"][: reply.vectors]
            if reply.kind == "cut_stream":
                self.send_partial(json.dumps(response))
            else:
                self.send_json(200, response)

    # ---- low-level I/O

    def wait(self, seconds: float) -> bool:
        """Sleep before replying; False (and hang up) if the client left or the server stops.

        Noticing the hang-up ends the handler like a real server cancelling the request,
        so timed-out requests do not linger in ``peak_in_flight``.
        """
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            if self.server.provider.stopping or self._client_gone(min(remaining, 0.05)):
                self.close_connection = True
                return False
        return True

    def _client_gone(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the client socket to close (EOF or reset)."""
        readable, _, _ = select.select([self.connection], [], [], timeout)
        if not readable:
            return False
        try:
            pending = self.connection.recv(1, socket.MSG_PEEK)
        except OSError:
            return True
        if pending:  # a pipelined request, not a hang-up: just sleep out the slice
            time.sleep(timeout)
        return not pending

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked_body()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked_body(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline()

    def send_head(
        self, status: int, content_type: str, headers: dict[str, str] | None, length: int | None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("x-request-id", f"req_{uuid.uuid4().hex[:16]}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if length is None:
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_head(status, "application/json", headers, len(data))
        self.wfile.write(data)
        self.wfile.flush()

    def send_malformed(self, *, stream: bool) -> None:
        if stream:
            self.send_head(200, "text/event-stream", None, None)
            self.write_chunk(b"data: " + MALFORMED_BODY + b"\n\n")
            self.write_chunk(b"")
            return
        self.send_head(200, "application/json", None, len(MALFORMED_BODY))
        self.wfile.write(MALFORMED_BODY)
        self.wfile.flush()

    def send_partial(self, text: str) -> None:
        """Promise the whole body, send half of it, then hang up."""
        data = text.encode()
        self.send_head(200, "application/json", None, len(data))
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self._hang_up()

    def send_stream(self, stream: _Stream, *, cut_after: int | None, chunk_delay: float = 0.0,
                     content_type: str = "text/event-stream") -> None:
        self.send_head(200, content_type, None, None)
        for event in stream.preamble:
            self.write_chunk(event)
        for index, event in enumerate(stream.content):
            if cut_after is not None and index >= cut_after:
                break
            if not self.wait(chunk_delay):
                return
            self.write_chunk(event)
        if cut_after is not None:
            self._hang_up()
            return
        for event in stream.closing:
            self.write_chunk(event)
        self.write_chunk(b"")

    def write_chunk(self, data: bytes) -> None:
        """One HTTP chunk (empty ``data`` writes the terminating chunk), flushed at once."""
        self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _hang_up(self) -> None:
        """Close the connection without finishing the response."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def _parse_json(raw: bytes) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _embeddings_response(body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI embeddings response for string, string-list or token-list inputs."""
    items = _embedding_inputs(body.get("input"))
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, text in enumerate(items):
        vector = _embedding(text)
        encoded: Any = (
            base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            if as_base64
            else vector
        )
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(max(_word_count(text), 1) for text in items)
    return {
        "object": "list",
        "data": data,
        "model": str(body.get("model", "")),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _embedding_inputs(value: Any) -> list[str]:
    """Normalise ``input`` (str, [str], [int] or [[int]]) to one text per embedding."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        return []
    if value and all(isinstance(token, int) for token in value):
        return [" ".join(map(str, value))]
    return [item if isinstance(item, str) else " ".join(map(str, item)) for item in value]


class _Server(ThreadingHTTPServer):
    """A threading HTTP server that remembers its open connections so it can drop them."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], provider: FakeProvider) -> None:
        self.provider = provider
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Shut down every open client connection (idle keep-alives included)."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that went away; report anything else."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


# --------------------------------------------------------------------------- public server


class FakeProvider:
    """A scripted fake OpenAI/Anthropic HTTP server running in a background thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._address = (host, port)
        self._lock = threading.Lock()
        self._scripts: dict[str, deque[Reply]] = {}
        self._script_all: deque[Reply] = deque()
        self._requests: list[Recorded] = []
        self._in_flight_count = 0
        self._peak_in_flight = 0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle

    def start(self) -> FakeProvider:
        """Bind and serve in a daemon thread; returns ``self``."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(self._address, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-provider-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake sleeping replies and drop open connections."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.drop_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- addresses

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeProvider is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` of the running server."""
        return f"http://{self._address[0]}:{self.port}"

    @property
    def openai_base(self) -> str:
        """``api_base`` for OpenAI clients (``url + "/v1"``)."""
        return f"{self.url}/v1"

    @property
    def anthropic_base(self) -> str:
        """``api_base`` for Anthropic clients (they append ``/v1/messages``)."""
        return self.url

    # ---- scripting

    def script(self, model: str, *replies: Reply) -> None:
        """Queue replies for requests naming ``model`` (as sent in the body)."""
        with self._lock:
            self._scripts.setdefault(model, deque()).extend(replies)

    def script_all(self, *replies: Reply) -> None:
        """Queue replies for requests whose model has no per-model script."""
        with self._lock:
            self._script_all.extend(replies)

    def reset(self) -> None:
        """Forget scripts, recorded requests and the in-flight peak."""
        with self._lock:
            self._scripts.clear()
            self._script_all.clear()
            self._requests.clear()
            self._peak_in_flight = self._in_flight_count

    # ---- observations

    @property
    def requests(self) -> list[Recorded]:
        """A snapshot of every request received since the last reset, in order."""
        with self._lock:
            return list(self._requests)

    def requests_for(self, model: str) -> list[Recorded]:
        """The recorded requests that named ``model``."""
        return [r for r in self.requests if r.model == model]

    @property
    def peak_in_flight(self) -> int:
        """The most requests handled at the same time since the last reset."""
        with self._lock:
            return self._peak_in_flight

    # ---- the request handler's side: public so that the handler, another class, may call them

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` has begun (held responses give up then)."""
        return self._stopping.is_set()

    def route(self, method: str, target: str, body: dict[str, Any] | None) -> Any:  # noqa: ARG002
        """A subclass's handler for a request outside the OpenAI/Anthropic endpoints: an
        object with ``model``, ``stream`` and ``serve(handler, body, reply)``, or None."""
        return None

    def next_reply(self, model: str | None) -> Reply:
        with self._lock:
            queue = self._scripts.get(model) if model is not None else None
            if queue is not None:
                return queue.popleft() if queue else Reply.ok()
            return self._script_all.popleft() if self._script_all else Reply.ok()

    def record(self, recorded: Recorded) -> None:
        with self._lock:
            self._requests.append(recorded)

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        with self._lock:
            self._in_flight_count += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight_count)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight_count -= 1

    def models_listing(self) -> dict[str, Any]:
        with self._lock:
            names = sorted({"fake-model", *self._scripts})
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": 0, "owned_by": "fake-provider"}
                for name in names
            ],
        }


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> None:
    """Serve until killed, after printing ``READY <url>``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)

    def _terminate(_signum: int, _frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _terminate)
    with FakeProvider(args.host, args.port) as provider:
        print(f"READY {provider.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
