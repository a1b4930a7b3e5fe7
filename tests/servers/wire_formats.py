"""The fake provider's other wire formats: Groq, Mistral, Azure OpenAI, Ollama, Gemini,
Cohere v2 and Bedrock Converse, each under a path prefix of its own.

:class:`WireProvider` is a :class:`~tests.servers.fake_provider.FakeProvider` that also
answers, with each provider's own JSON, stream framing and error bodies::

    {url}/groq/openai/v1     groq/...           (OpenAI-compatible)
    {url}/mistral/v1         mistral/...        (OpenAI-compatible; own error bodies)
    {url}/azure              azure/<deployment> (/openai/deployments/{d}/..., api-key header)
    {url}/ollama             ollama_chat/..., ollama/... (/api/chat NDJSON, /api/embed)
    {url}/gemini             gemini/...         (/models/{m}:generateContent, ...)
    {url}/cohere/v2/chat     cohere_chat/...    (LiteLLM posts to api_base as given)
    {url}/cohere/v1/embed    cohere/embed-...
    {url}/bedrock            bedrock/converse/... (/model/{id}/converse, converse-stream)
    {url}/plaintext/v1       openai/... whose errors are plain text under a JSON type
    {url}/nofinish/v1        openai/... whose streams never set finish_reason

Scripts work as in ``FakeProvider`` (per model as the provider names it: the deployment
for Azure, the model id for Bedrock and Gemini).  ``Reply.error(429, retry_after=2)``
means "the provider asks for 2 s", said the provider's way: a ``retry-after`` header
(Groq, Azure), ``RetryInfo.retryDelay`` in the body (Gemini), or not at all (providers
that send no hint).  Request signatures and keys are not checked: a test that wants an
auth failure scripts ``Reply.error(401)`` (or 403), answered in the provider's words.

Every shape below is copied from the source named in its comment.
"""

from __future__ import annotations

import dataclasses
import json
import re
import struct
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from tests.servers.fake_provider import (
    MALFORMED_BODY,
    FakeProvider,
    Reply,
    _Answer,
    _answer,
    _ChatRequest,
    _default_message,
    _embedding,
    _embedding_inputs,
    _last_user_text,
    _OpenAIDialect,
    _pieces,
    _sse,
    _Stream,
    _text_of,
    _word_count,
)

__all__ = ["WireProvider"]

Serve = Callable[[Any, dict[str, Any], Reply], None]


@dataclass(frozen=True)
class Route:
    """A request claimed by a wire format: its model, whether it streams, who answers."""

    model: str
    stream: bool
    serve: Serve


def _retry_hint(reply: Reply) -> str | None:
    return reply.headers.get("Retry-After")


def _parse(messages: list[dict[str, Any]], model: str, stream: bool,
           extra_text: str = "", include_usage: bool = True) -> _ChatRequest:
    texts = [extra_text, *(_text_of(m.get("content")) for m in messages)]
    return _ChatRequest(model=model, stream=stream, include_usage=include_usage,
                        legacy_functions=False, prompt_words=_word_count(" ".join(texts)),
                        last_user_text=_last_user_text(messages))


class _Wire:
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


def serve_chat(handler: Any, wire: _Wire, request: _ChatRequest, reply: Reply) -> None:
    """Answer a chat request the way ``FakeProvider`` does, in ``wire``'s format."""
    if not handler._wait(reply.delay):
        return
    if reply.kind in ("error", "context_window"):
        status, body, headers = wire.error(reply)
        _send(handler, status, body, headers)
    elif reply.kind == "malformed" and request.stream:
        handler._send_head(200, wire.stream_type, None, None)
        handler._write_chunk(wire.malformed_stream())
        handler._write_chunk(b"")
    elif reply.kind == "malformed":
        handler._send_malformed(stream=False)
    elif reply.kind == "cut_stream" and not request.stream:
        handler._send_partial(json.dumps(wire.completion(request, _answer(request, reply))))
    elif request.stream:
        handler._send_stream(wire.stream(request, _answer(request, reply)),
                             cut_after=reply.after_chunks if reply.kind == "cut_stream" else None,
                             chunk_delay=reply.chunk_delay, content_type=wire.stream_type)
    else:
        handler._send_json(200, wire.completion(request, _answer(request, reply)))


def serve_embed(handler: Any, wire: _Wire, model: str, texts: list[str], reply: Reply) -> None:
    if not handler._wait(reply.delay):
        return
    if reply.kind in ("error", "context_window"):
        status, body, headers = wire.error(reply)
        _send(handler, status, body, headers)
    elif reply.kind == "malformed":
        handler._send_malformed(stream=False)
    else:
        handler._send_json(200, wire.embeddings(model, texts))


def _send(handler: Any, status: int, body: Any, headers: dict[str, str]) -> None:
    if isinstance(body, bytes):
        handler._send_head(status, headers.pop("Content-Type", "text/plain"), headers, len(body))
        handler.wfile.write(body)
        handler.wfile.flush()
    else:
        handler._send_json(status, body, headers)


# --------------------------------------------------------------------------- OpenAI-compatible


class _GroqWire(_Wire):
    """Groq: OpenAI's shapes.  Errors, from https://console.groq.com/docs/errors::

        {"error": {"message": "Invalid API Key", "type": "invalid_request_error",
                   "code": "invalid_api_key"}}

    and 429s carry ``retry-after`` (seconds; https://console.groq.com/docs/rate-limits).
    """

    openai = _OpenAIDialect()
    stream_type = "text/event-stream"
    context_message = "Please reduce the length of the messages or completion."

    def error(self, reply: Reply) -> tuple[int, Any, dict[str, str]]:
        if reply.kind == "context_window":
            return 400, {"error": {"message": self.context_message, "type": "invalid_request_error",
                                   "param": "messages", "code": "context_length_exceeded"}}, {}
        messages = {401: ("Invalid API Key", "invalid_api_key"),
                    429: ("Rate limit reached for model `llama-3.1-8b-instant` in organization "
                          "`org_01` on tokens per minute (TPM): Limit 6000, Used 5800, Requested "
                          "700. Please try again in 2.5s.", "rate_limit_exceeded")}
        message, code = messages.get(reply.status, (_default_message(reply.status), None))
        kind = ("tokens" if reply.status == 429 else "internal_server_error" if reply.status >= 500
                else "invalid_request_error")
        headers = {"retry-after": hint} if (hint := _retry_hint(reply)) else {}
        return reply.status, {"error": {"message": reply.message or message, "type": kind,
                                        "code": code}}, headers

    def completion(self, request: _ChatRequest, answer: _Answer) -> dict[str, Any]:
        # Groq adds these two to OpenAI's fields (https://console.groq.com/docs/api-reference#chat-create)
        return {**self.openai.completion(request, answer), "service_tier": "on_demand",
                "x_groq": {"id": f"req_{uuid.uuid4().hex[:26]}"}}

    def stream(self, request: _ChatRequest, answer: _Answer) -> _Stream:
        return self.openai.stream(request, answer)


class _PlainTextErrorsWire(_GroqWire):
    """An OpenAI-compatible gateway whose errors are plain words under a JSON
    content-type, as real traffic recorded from an OpenAI-compatible proxy showed (the
    case issue 17 quotes: LiteLLM reported it as just "Error code: 429")."""

    def error(self, reply: Reply) -> tuple[int, Any, dict[str, str]]:
        words = reply.message or _default_message(reply.status)
        return reply.status, words.encode(), {"Content-Type": "application/json"}


class _NoFinishReasonWire(_GroqWire):
    """An OpenAI-compatible stream that never sets ``finish_reason``: content (or a whole
    tool call), then a usage chunk, then ``data: [DONE]``, as the OpenRouter stream
    recorded in real traffic does (issue 17)."""

    def stream(self, request: _ChatRequest, answer: _Answer) -> _Stream:
        stream = self.openai.stream(dataclasses.replace(request, include_usage=True), answer)
        return _Stream(stream.preamble, stream.content, stream.closing[1:])  # no finish chunk


class _MistralWire(_GroqWire):
    """Mistral: OpenAI's shapes, its own errors (https://docs.mistral.ai/api/ and the
    bodies its API returns)::

        401 {"message": "Unauthorized", "request_id": "..."}
        400 {"object": "error", "message": "Prompt contains 40000 tokens ... too large for
             model with 32768 maximum context length", "type": "invalid_request_message_error",
             "param": null, "code": "3051"}

    Its 429 is modelled without a retry hint: we found none documented.
    """

    context_message = ("Prompt contains 40000 tokens and 0 draft tokens, too large for model "
                       "with 32768 maximum context length")

    def error(self, reply: Reply) -> tuple[int, Any, dict[str, str]]:
        if reply.kind == "context_window":
            return 400, {"object": "error", "message": self.context_message,
                         "type": "invalid_request_message_error", "param": None, "code": "3051"}, {}
        if reply.status == 401:
            return 401, {"message": "Unauthorized", "request_id": uuid.uuid4().hex}, {}
        if reply.status == 429:
            return 429, {"message": "Requests rate limit exceeded"}, {}
        return reply.status, {"object": "error", "message": reply.message or _default_message(reply.status),
                              "type": "api_error" if reply.status >= 500 else "invalid_request_error",
                              "param": None, "code": None}, {}

    def embeddings(self, model: str, texts: list[str]) -> dict[str, Any]:
        # https://docs.mistral.ai/api/#tag/embeddings
        tokens = sum(max(_word_count(t), 1) for t in texts)
        return {"id": uuid.uuid4().hex, "object": "list", "model": model,
                "data": [{"object": "embedding", "embedding": _embedding(t), "index": i}
                         for i, t in enumerate(texts)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0}}


class _AzureWire(_GroqWire):
    """Azure OpenAI: OpenAI's answers; errors from
    https://learn.microsoft.com/azure/ai-services/openai/reference and its quota docs::

        401 {"error": {"code": "401", "message": "Access denied due to invalid subscription
             key or wrong API endpoint. ..."}}
        429 {"error": {"code": "429", "message": "Requests to the ChatCompletions_Create
             Operation under Azure OpenAI API version ... Please retry after 2 seconds."}}
             with retry-after and retry-after-ms headers
        400 {"error": {"message": "The response was filtered ...", "type": null, "param":
             "prompt", "code": "content_filter", "status": 400, "innererror": {...}}}
    """

    context_message = ("This model's maximum context length is 8192 tokens. However, your "
                       "messages resulted in 12000 tokens. Please reduce the length of the messages.")

    def error(self, reply: Reply) -> tuple[int, Any, dict[str, str]]:
        if reply.kind == "context_window":
            return 400, {"error": {"message": self.context_message, "type": "invalid_request_error",
                                   "param": "messages", "code": "context_length_exceeded"}}, {}
        hint = _retry_hint(reply)
        if reply.status == 401:
            message = ("Access denied due to invalid subscription key or wrong API endpoint. Make "
                       "sure to provide a valid key for an active subscription and use a correct "
                       "regional API endpoint for your resource.")
            return 401, {"error": {"code": "401", "message": message}}, {}
        if reply.status == 429:
            message = ("Requests to the ChatCompletions_Create Operation under Azure OpenAI API "
                       "version 2024-10-21 have exceeded token rate limit of your current OpenAI "
                       f"S0 pricing tier. Please retry after {hint or 1} seconds.")
            headers = {"retry-after": hint, "retry-after-ms": str(int(float(hint) * 1000))} if hint else {}
            return 429, {"error": {"code": "429", "message": message}}, headers
        if reply.code == "content_filter":
            return 400, {"error": {
                "message": ("The response was filtered due to the prompt triggering Azure "
                            "OpenAI's content management policy. Please modify your prompt and retry."),
                "type": None, "param": "prompt", "code": "content_filter", "status": 400,
                "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
                    "hate": {"filtered": True, "severity": "high"}}}}}, {}
        return reply.status, {"error": {"code": str(reply.status),
                                        "message": reply.message or _default_message(reply.status)}}, {}

    def embeddings(self, model: str, texts: list[str]) -> dict[str, Any]:
        return _MistralWire.embeddings(self, model, texts)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- Ollama


class _OllamaWire(_Wire):
    """Ollama's native API, from https://github.com/ollama/ollama/blob/main/docs/api.md:
    ``POST /api/chat`` answers one JSON object, or (streaming) NDJSON lines, the last with
    ``"done": true`` and the counts ``prompt_eval_count``/``eval_count``; tool calls carry
    arguments as an object; errors are ``{"error": "..."}``; ``POST /api/embed`` answers
    ``{"model", "embeddings": [[...]], "prompt_eval_count"}``."""

    stream_type = "application/x-ndjson"

    def error(self, reply: Reply) -> tuple[int, Any, dict[str, str]]:
        words = {404: 'model "llama3.1" not found, try pulling it first',
                 500: "llama runner process has terminated: signal: killed",
                 503: "server busy, please try again.  maximum pending requests exceeded"}
        return reply.status, {"error": reply.message or words.get(reply.status) or
                              _default_message(reply.status)}, {}

    def _line(self, request: _ChatRequest, message: dict[str, Any], **more: Any) -> bytes:
        return json.dumps({"model": request.model, "created_at": "2024-07-22T20:33:28.123Z",
                           "message": message, **more}).encode() + b"\n"

    def _done(self, answer: _Answer) -> dict[str, Any]:
        return {"done": True, "done_reason": "stop", "total_duration": 4883583458,
                "load_duration": 1334875, "prompt_eval_count": answer.prompt_tokens,
                "prompt_eval_duration": 342546000, "eval_count": answer.completion_tokens,
                "eval_duration": 4535599000}

    def _message(self, answer: _Answer, text: str) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if answer.is_tool_call:
            message["tool_calls"] = [{"function": {"name": answer.tool_name,
                                                   "arguments": json.loads(answer.tool_arguments)}}]
        return message

    def completion(self, request: _ChatRequest, answer: _Answer) -> dict[str, Any]:
        return json.loads(self._line(request, self._message(answer, answer.text), **self._done(answer)))

    def stream(self, request: _ChatRequest, answer: _Answer) -> _Stream:
        if answer.is_tool_call:  # Ollama streams a tool call whole, in one line
            content = [self._line(request, self._message(answer, ""), done=False)]
        else:
            content = [self._line(request, {"role": "assistant", "content": piece}, done=False)
                       for piece in _pieces(answer.text)]
        closing = [self._line(request, {"role": "assistant", "content": ""}, **self._done(answer))]
        return _Stream([], content, closing)

    def malformed_stream(self) -> bytes:
        return MALFORMED_BODY + b"\n"

    def embeddings(self, model: str, texts: list[str]) -> dict[str, Any]:
        return {"model": model, "embeddings": [_embedding(t) for t in texts],
                "total_duration": 14143917, "load_duration": 1019500,
                "prompt_eval_count": sum(max(_word_count(t), 1) for t in texts)}


# --------------------------------------------------------------------------- Gemini


class _GeminiWire(_Wire):
    """Gemini API (generativelanguage.googleapis.com/v1beta), from
    https://ai.google.dev/api/generate-content and https://ai.google.dev/gemini-api/docs/troubleshooting.

    Errors are Google's ``{"error": {"code", "message", "status", "details"}}``; a 429
    says how long to wait in a ``google.rpc.RetryInfo`` detail and sends no Retry-After
    header, as in the recorded answer quoted in Aider-AI/aider#3694::

        {"error": {"code": 429, "message": "You exceeded your current quota ...",
         "status": "RESOURCE_EXHAUSTED", "details": [..., {"@type":
         "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2s"}]}}

    A bad key is a 400 ``INVALID_ARGUMENT`` with reason ``API_KEY_INVALID``.
    """

    context_message = ("The input token count (1196265) exceeds the maximum number of tokens "
                       "allowed (1048576).")

    def error(self, reply: Reply) -> tuple[int, Any, dict[str, str]]:
        if reply.kind == "context_window":
            return 400, self._error(400, self.context_message, "INVALID_ARGUMENT"), {}
        if reply.status in (401, 403):  # what Gemini answers to a wrong key
            details: list[Any] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"}}]
            return 400, self._error(400, "API key not valid. Please pass a valid API key.",
                                    "INVALID_ARGUMENT", details), {}
        if reply.status == 429:
            details = [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
                {"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                 "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]}]
            if (hint := _retry_hint(reply)) is not None:
                details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{hint}s"})
            message = ("You exceeded your current quota, please check your plan and billing "
                       "details. For more information on this error, head to: "
                       "https://ai.google.dev/gemini-api/docs/rate-limits.")
            return 429, self._error(429, message, "RESOURCE_EXHAUSTED", details), {}
        status_name = {500: "INTERNAL", 503: "UNAVAILABLE", 404: "NOT_FOUND"}.get(reply.status, "INVALID_ARGUMENT")
        return reply.status, self._error(reply.status, reply.message or _default_message(reply.status),
                                         status_name), {}

    @staticmethod
    def _error(code: int, message: str, status: str, details: list[Any] | None = None) -> dict[str, Any]:
        error: dict[str, Any] = {"code": code, "message": message, "status": status}
        if details:
            error["details"] = details
        return {"error": error}

    def _chunk(self, request: _ChatRequest, parts: list[dict[str, Any]], answer: _Answer,
               finish: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if finish:
            candidate["finishReason"] = "STOP"
        return {"candidates": [candidate],
                "usageMetadata": {"promptTokenCount": answer.prompt_tokens,
                                  "candidatesTokenCount": answer.completion_tokens if finish else 0,
                                  "totalTokenCount": answer.prompt_tokens +
                                  (answer.completion_tokens if finish else 0)},
                "modelVersion": request.model, "responseId": uuid.uuid4().hex[:20]}

    @staticmethod
    def _call(answer: _Answer) -> dict[str, Any]:
        return {"functionCall": {"name": answer.tool_name, "args": json.loads(answer.tool_arguments)}}

    def completion(self, request: _ChatRequest, answer: _Answer) -> dict[str, Any]:
        parts = [self._call(answer)] if answer.is_tool_call else [{"text": answer.text}]
        return self._chunk(request, parts, answer, finish=True)

    def stream(self, request: _ChatRequest, answer: _Answer) -> _Stream:
        if answer.is_tool_call:  # Gemini sends a function call whole
            return _Stream([], [], [_sse(self._chunk(request, [self._call(answer)], answer, True))])
        pieces = _pieces(answer.text)
        content = [_sse(self._chunk(request, [{"text": p}], answer, False)) for p in pieces[:-1]]
        closing = [_sse(self._chunk(request, [{"text": pieces[-1] if pieces else ""}], answer, True))]
        return _Stream([], content, closing)

    def embeddings(self, model: str, texts: list[str]) -> dict[str, Any]:
        # https://ai.google.dev/api/embeddings#method:-models.batchembedcontents
        return {"embeddings": [{"values": _embedding(t)} for t in texts]}


# --------------------------------------------------------------------------- Cohere


class _CohereWire(_Wire):
    """Cohere v2, from https://docs.cohere.com/reference/chat and chat-stream: the answer
    is ``{"id", "message": {"role", "content": [{"type": "text", "text"}] | "tool_calls"},
    "finish_reason": "COMPLETE" | "TOOL_CALL", "usage": {"billed_units", "tokens"}}``; the
    stream is SSE events ``message-start``, ``content-start``, ``content-delta``,
    ``content-end``, ``message-end`` (with the usage); errors are ``{"message": "..."}``
    (https://docs.cohere.com/reference/errors); a 429 is modelled without a retry hint,
    as none is documented."""

    context_message = ("too many tokens: size limit exceeded by 11326 tokens. Try using shorter "
                       "or fewer inputs, or setting prompt_truncation='AUTO'.")

    def error(self, reply: Reply) -> tuple[int, Any, dict[str, str]]:
        if reply.kind == "context_window":
            return 400, {"message": self.context_message}, {}
        words = {401: "invalid api token",
                 429: ("You are using a Trial key, which is limited to 10 API calls / minute. "
                       "You can continue to use the Trial key for free or upgrade to a Production key.")}
        return reply.status, {"message": reply.message or words.get(reply.status) or
                              _default_message(reply.status)}, {}

    @staticmethod
    def _usage(answer: _Answer) -> dict[str, Any]:
        return {"billed_units": {"input_tokens": answer.prompt_tokens, "output_tokens": answer.completion_tokens},
                "tokens": {"input_tokens": answer.prompt_tokens, "output_tokens": answer.completion_tokens}}

    @staticmethod
    def _tool_call(answer: _Answer, arguments: str) -> dict[str, Any]:
        return {"id": answer.call_id, "type": "function",
                "function": {"name": answer.tool_name, "arguments": arguments}}

    def completion(self, request: _ChatRequest, answer: _Answer) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant"}
        if answer.is_tool_call:
            message["tool_plan"] = "I will call the tool."
            message["tool_calls"] = [self._tool_call(answer, answer.tool_arguments)]
        else:
            message["content"] = [{"type": "text", "text": answer.text}]
        return {"id": str(uuid.uuid4()), "message": message,
                "finish_reason": "TOOL_CALL" if answer.is_tool_call else "COMPLETE",
                "usage": self._usage(answer)}

    stream_type = "application/stream+json"

    def stream(self, request: _ChatRequest, answer: _Answer) -> _Stream:
        # One JSON object a line, as recorded from api.cohere.com/v2/chat in
        # M-Lai-ai/LLM-Provider-reference (Cohere/streaming.md), which LiteLLM parses.
        def event(kind: str, **fields: Any) -> bytes:
            return json.dumps({"type": kind, **fields}).encode() + b"\n"

        start = event("message-start", id=str(uuid.uuid4()),
                      delta={"message": {"role": "assistant", "content": [], "tool_plan": "",
                                         "tool_calls": [], "citations": []}})
        if answer.is_tool_call:
            preamble = [start, event("tool-call-start", index=0, delta={"message": {
                "tool_calls": self._tool_call(answer, "")}})]
            content = [event("tool-call-delta", index=0, delta={"message": {
                "tool_calls": {"function": {"arguments": piece}}}})
                for piece in _pieces(answer.tool_arguments)]
            closing = [event("tool-call-end", index=0)]
            finish = "TOOL_CALL"
        else:
            preamble = [start, event("content-start", index=0,
                                     delta={"message": {"content": {"type": "text", "text": ""}}})]
            content = [event("content-delta", index=0,
                             delta={"message": {"content": {"text": piece}}})
                       for piece in _pieces(answer.text)]
            closing = [event("content-end", index=0)]
            finish = "COMPLETE"
        closing.append(event("message-end", delta={"finish_reason": finish, "usage": self._usage(answer)}))
        return _Stream(preamble, content, closing)

    def malformed_stream(self) -> bytes:
        return MALFORMED_BODY + b"\n"

    def embeddings(self, model: str, texts: list[str]) -> dict[str, Any]:
        # https://docs.cohere.com/v1/reference/embed
        return {"id": str(uuid.uuid4()), "embeddings": [_embedding(t) for t in texts], "texts": texts,
                "meta": {"api_version": {"version": "1"},
                         "billed_units": {"input_tokens": sum(max(_word_count(t), 1) for t in texts)}},
                "response_type": "embeddings_floats"}


# --------------------------------------------------------------------------- Bedrock


def _aws_event(event_type: str, payload: dict[str, Any]) -> bytes:
    """One message of the AWS event-stream framing (``application/vnd.amazon.eventstream``):
    prelude (total length, headers length, CRC32), string headers, payload, CRC32 of all."""
    headers = b""
    for name, value in ((":event-type", event_type), (":content-type", "application/json"),
                        (":message-type", "event")):
        headers += struct.pack(">B", len(name)) + name.encode() + struct.pack(">BH", 7, len(value)) + value.encode()
    body = json.dumps(payload).encode()
    prelude = struct.pack(">II", 16 + len(headers) + len(body), len(headers))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers + body
    return message + struct.pack(">I", zlib.crc32(message))


class _BedrockWire(_Wire):
    """Bedrock Converse, from https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html
    and ConverseStream: ``{"output": {"message": {"role", "content": [{"text"} | {"toolUse"}]}},
    "stopReason", "usage": {"inputTokens", "outputTokens", "totalTokens"}, "metrics"}``;
    the stream is event-stream messages ``messageStart``, ``contentBlockStart``,
    ``contentBlockDelta``, ``contentBlockStop``, ``messageStop``, ``metadata`` (usage).
    Errors are ``{"message"}`` with the exception in ``x-amzn-ErrorType``: 429
    ``ThrottlingException`` (no retry hint is documented), 403 ``UnrecognizedClientException``, 400
    ``ValidationException``."""

    stream_type = "application/vnd.amazon.eventstream"
    context_message = "Input is too long for requested model."

    def error(self, reply: Reply) -> tuple[int, Any, dict[str, str]]:
        if reply.kind == "context_window":
            kind, message, status = "ValidationException", self.context_message, 400
        else:
            bad_token = ("UnrecognizedClientException", "The security token included in the request is invalid.")
            kind, message = {401: bad_token, 403: bad_token,
                             429: ("ThrottlingException", "Too many requests, please wait before trying again."),
                             500: ("InternalServerException", "The server encountered an internal error."),
                             503: ("ServiceUnavailableException", "Bedrock is unable to process your request."),
                             }.get(reply.status, ("ValidationException", _default_message(reply.status)))
            status, message = (403 if reply.status == 401 else reply.status), reply.message or message
        return status, {"message": message}, {
            "x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"}

    @staticmethod
    def _usage(answer: _Answer) -> dict[str, int]:
        return {"inputTokens": answer.prompt_tokens, "outputTokens": answer.completion_tokens,
                "totalTokens": answer.prompt_tokens + answer.completion_tokens}

    def completion(self, request: _ChatRequest, answer: _Answer) -> dict[str, Any]:
        block = ({"toolUse": {"toolUseId": answer.call_id, "name": answer.tool_name,
                              "input": json.loads(answer.tool_arguments)}}
                 if answer.is_tool_call else {"text": answer.text})
        return {"output": {"message": {"role": "assistant", "content": [block]}},
                "stopReason": "tool_use" if answer.is_tool_call else "end_turn",
                "usage": self._usage(answer), "metrics": {"latencyMs": 120}}

    def stream(self, request: _ChatRequest, answer: _Answer) -> _Stream:
        preamble = [_aws_event("messageStart", {"role": "assistant"})]
        if answer.is_tool_call:
            preamble.append(_aws_event("contentBlockStart", {"contentBlockIndex": 0, "start": {
                "toolUse": {"toolUseId": answer.call_id, "name": answer.tool_name}}}))
            deltas: list[dict[str, Any]] = [{"toolUse": {"input": piece}} for piece in _pieces(answer.tool_arguments)]
        else:
            deltas = [{"text": piece} for piece in _pieces(answer.text)]
        content = [_aws_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": d}) for d in deltas]
        closing = [_aws_event("contentBlockStop", {"contentBlockIndex": 0}),
                   _aws_event("messageStop", {"stopReason": "tool_use" if answer.is_tool_call else "end_turn"}),
                   _aws_event("metadata", {"usage": self._usage(answer), "metrics": {"latencyMs": 120}})]
        return _Stream(preamble, content, closing)

    def malformed_stream(self) -> bytes:
        return _aws_event("contentBlockDelta", {"contentBlockIndex": 0})[:-4] + b"\0\0\0\0"  # bad CRC


# --------------------------------------------------------------------------- routing

GROQ, MISTRAL, AZURE = _GroqWire(), _MistralWire(), _AzureWire()
PLAIN, NO_FINISH = _PlainTextErrorsWire(), _NoFinishReasonWire()
OLLAMA, GEMINI, COHERE, BEDROCK = _OllamaWire(), _GeminiWire(), _CohereWire(), _BedrockWire()


def _openai_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in body.get("messages") or [] if isinstance(m, dict)]


def _gemini_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": c.get("role", "user"), "content": [p for p in c.get("parts", []) if "text" in p]}
            for c in body.get("contents") or [] if isinstance(c, dict)]


def _bedrock_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": m.get("role"), "content": [p for p in m.get("content", []) if "text" in p]}
            for m in body.get("messages") or [] if isinstance(m, dict)]


def _chat(wire: _Wire, model: str, stream: bool, messages: Callable[[dict[str, Any]], list[dict[str, Any]]],
          include_usage: Callable[[dict[str, Any]], bool] = lambda body: True) -> Route:
    def serve(handler: Any, body: dict[str, Any], reply: Reply) -> None:
        request = _parse(messages(body), model, stream, include_usage=include_usage(body))
        serve_chat(handler, wire, request, reply)
    return Route(model, stream, serve)


def _embed(wire: _Wire, model: str, texts: Callable[[dict[str, Any]], list[str]]) -> Route:
    return Route(model, False, lambda handler, body, reply: serve_embed(handler, wire, model, texts(body), reply))


def _openai_usage_asked(body: dict[str, Any]) -> bool:
    return bool((body.get("stream_options") or {}).get("include_usage"))


def route(method: str, target: str, body: dict[str, Any] | None) -> Route | None:
    """The wire format that answers ``method target``, if any (see the module docstring)."""
    path = unquote(target.split("?", 1)[0]).rstrip("/")
    body = body or {}
    model = str(body.get("model", ""))
    stream = bool(body.get("stream"))
    if method != "POST":
        return None
    if match := re.fullmatch(r"/(groq)/openai/v1/chat/completions|/(mistral)/v1/chat/completions", path):
        if match.group(1):
            return _chat(GROQ, model, stream, _openai_messages, _openai_usage_asked)
        # Mistral's last chunk carries the usage whether or not it was asked for.
        return _chat(MISTRAL, model, stream, _openai_messages)
    if path == "/plaintext/v1/chat/completions":
        return _chat(PLAIN, model, stream, _openai_messages, _openai_usage_asked)
    if path == "/nofinish/v1/chat/completions":
        return _chat(NO_FINISH, model, stream, _openai_messages)
    if path == "/mistral/v1/embeddings":
        return _embed(MISTRAL, model, lambda b: _embedding_inputs(b.get("input")))
    if match := re.fullmatch(r"/azure/openai/deployments/([^/]+)/(chat/completions|embeddings)", path):
        if match.group(2) == "embeddings":
            return _embed(AZURE, match.group(1), lambda b: _embedding_inputs(b.get("input")))
        return _chat(AZURE, match.group(1), stream, _openai_messages, _openai_usage_asked)
    if path == "/ollama/api/chat":
        return _chat(OLLAMA, model, body.get("stream", True) is not False, _openai_messages)
    if path == "/ollama/api/embed":
        return _embed(OLLAMA, model, lambda b: _embedding_inputs(b.get("input")))
    if match := re.fullmatch(r"/gemini/models/([^/:]+):(\w+)", path):
        gemini_model, action = match.groups()
        if action in ("generateContent", "streamGenerateContent"):
            return _chat(GEMINI, gemini_model, action == "streamGenerateContent", _gemini_messages)
        if action == "batchEmbedContents":
            return _embed(GEMINI, gemini_model, lambda b: [
                _text_of(r.get("content", {}).get("parts")) for r in b.get("requests", [])])
        if action == "embedContent":
            return _embed(GEMINI, gemini_model, lambda b: [_text_of(b.get("content", {}).get("parts"))])
    if path == "/cohere/v2/chat":
        return _chat(COHERE, model, stream, _openai_messages)
    if path in ("/cohere/v1/embed", "/cohere/v2/embed"):
        return _embed(COHERE, model, lambda b: [str(t) for t in b.get("texts", [])])
    if match := re.fullmatch(r"/bedrock/model/([^/]+)/(converse|converse-stream)", path):
        system = " ".join(str(p.get("text", "")) for p in body.get("system") or [])
        bedrock_model, action = match.groups()

        def serve(handler: Any, body: dict[str, Any], reply: Reply) -> None:
            request = _parse(_bedrock_messages(body), bedrock_model, action == "converse-stream", system)
            serve_chat(handler, BEDROCK, request, reply)
        return Route(bedrock_model, action == "converse-stream", serve)
    return None


class WireProvider(FakeProvider):
    """A ``FakeProvider`` that also speaks the wire formats above, under their prefixes."""

    def route(self, method: str, target: str, body: dict[str, Any] | None) -> Route | None:
        return route(method, target, body)

    def base(self, name: str) -> str:
        """The ``api_base`` that points provider ``name``'s LiteLLM route at this server."""
        return self.url + {"openai": "/v1", "anthropic": "", "groq": "/groq/openai/v1",
                           "mistral": "/mistral/v1", "azure": "/azure", "ollama": "/ollama",
                           "gemini": "/gemini", "cohere": "/cohere/v2/chat",
                           "cohere_embed": "/cohere/v1/embed", "bedrock": "/bedrock",
                           "plaintext": "/plaintext/v1", "nofinish": "/nofinish/v1"}[name]


