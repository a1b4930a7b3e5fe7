"""Wire formats of providers with APIs of their own: Ollama, Gemini, Cohere v2 and
Bedrock Converse (with AWS event-stream framing)."""

from __future__ import annotations

import json
import struct
import uuid
import zlib
from typing import Any

from typing_extensions import override

from tests.servers.fake_provider import (
    MALFORMED_BODY,
    Reply,
    _Answer,
    _ChatRequest,
    _default_message,
    _embedding,
    _pieces,
    _sse,
    _Stream,
    _word_count,
)
from tests.servers.wire_base import Wire, retry_hint

__all__ = ["BEDROCK", "COHERE", "GEMINI", "OLLAMA"]


class OllamaWire(Wire):
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
        completion: dict[str, Any] = json.loads(
            self._line(request, self._message(answer, answer.text), **self._done(answer)))
        return completion

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


class GeminiWire(Wire):
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
            if (hint := retry_hint(reply)) is not None:
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

    @override
    def embeddings(self, model: str, texts: list[str]) -> dict[str, Any]:
        # https://ai.google.dev/api/embeddings#method:-models.batchembedcontents
        return {"embeddings": [{"values": _embedding(t)} for t in texts]}


# --------------------------------------------------------------------------- Cohere


class CohereWire(Wire):
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

    @override
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

    @override
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

    @override
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


class BedrockWire(Wire):
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

    @override
    def completion(self, request: _ChatRequest, answer: _Answer) -> dict[str, Any]:
        block = ({"toolUse": {"toolUseId": answer.call_id, "name": answer.tool_name,
                              "input": json.loads(answer.tool_arguments)}}
                 if answer.is_tool_call else {"text": answer.text})
        return {"output": {"message": {"role": "assistant", "content": [block]}},
                "stopReason": "tool_use" if answer.is_tool_call else "end_turn",
                "usage": self._usage(answer), "metrics": {"latencyMs": 120}}

    @override
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




OLLAMA, GEMINI, COHERE, BEDROCK = OllamaWire(), GeminiWire(), CohereWire(), BedrockWire()
