"""OpenAI-compatible wire formats: Groq, Mistral, Azure OpenAI, and two gateways with
real-world oddities (plain-text errors; streams without ``finish_reason``)."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from tests.servers.fake_provider import (
    Reply,
    _Answer,
    _ChatRequest,
    _default_message,
    _embedding,
    _OpenAIDialect,
    _Stream,
    _word_count,
)
from tests.servers.wire_base import Wire, retry_hint

__all__ = ["AZURE", "GROQ", "MISTRAL", "NO_FINISH", "PLAIN"]


class GroqWire(Wire):
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
        headers = {"retry-after": hint} if (hint := retry_hint(reply)) else {}
        return reply.status, {"error": {"message": reply.message or message, "type": kind,
                                        "code": code}}, headers

    def completion(self, request: _ChatRequest, answer: _Answer) -> dict[str, Any]:
        # Groq adds these two to OpenAI's fields (https://console.groq.com/docs/api-reference#chat-create)
        return {**self.openai.completion(request, answer), "service_tier": "on_demand",
                "x_groq": {"id": f"req_{uuid.uuid4().hex[:26]}"}}

    def stream(self, request: _ChatRequest, answer: _Answer) -> _Stream:
        return self.openai.stream(request, answer)


class PlainTextErrorsWire(GroqWire):
    """An OpenAI-compatible gateway whose errors are plain words under a JSON
    content-type, as real traffic recorded from an OpenAI-compatible proxy showed (the
    case issue 17 quotes: LiteLLM reported it as just "Error code: 429")."""

    def error(self, reply: Reply) -> tuple[int, Any, dict[str, str]]:
        words = reply.message or _default_message(reply.status)
        return reply.status, words.encode(), {"Content-Type": "application/json"}


class NoFinishReasonWire(GroqWire):
    """An OpenAI-compatible stream that never sets ``finish_reason``: content (or a whole
    tool call), then a usage chunk, then ``data: [DONE]``, as the OpenRouter stream
    recorded in real traffic does (issue 17)."""

    def stream(self, request: _ChatRequest, answer: _Answer) -> _Stream:
        stream = self.openai.stream(dataclasses.replace(request, include_usage=True), answer)
        return _Stream(stream.preamble, stream.content, stream.closing[1:])  # no finish chunk


class MistralWire(GroqWire):
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


class AzureWire(GroqWire):
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
        hint = retry_hint(reply)
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
        return MistralWire.embeddings(self, model, texts)  # type: ignore[arg-type]




GROQ, MISTRAL, AZURE = GroqWire(), MistralWire(), AzureWire()
PLAIN, NO_FINISH = PlainTextErrorsWire(), NoFinishReasonWire()
