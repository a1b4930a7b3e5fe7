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

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from tests.servers.fake_provider import (
    FakeProvider,
    Reply,
    _embedding_inputs,
    _text_of,
)
from tests.servers.wire_base import Route, Wire, parse, serve_chat, serve_embed
from tests.servers.wire_native import BEDROCK, COHERE, GEMINI, OLLAMA
from tests.servers.wire_openai_compatible import AZURE, GROQ, MISTRAL, NO_FINISH, PLAIN

__all__ = ["WireProvider", "route"]


def _openai_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in body.get("messages") or [] if isinstance(m, dict)]


def _gemini_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": c.get("role", "user"), "content": [p for p in c.get("parts", []) if "text" in p]}
            for c in body.get("contents") or [] if isinstance(c, dict)]


def _bedrock_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": m.get("role"), "content": [p for p in m.get("content", []) if "text" in p]}
            for m in body.get("messages") or [] if isinstance(m, dict)]


def _chat(wire: Wire, model: str, stream: bool, messages: Callable[[dict[str, Any]], list[dict[str, Any]]],
          include_usage: Callable[[dict[str, Any]], bool] = lambda _body: True) -> Route:
    def serve(handler: Any, body: dict[str, Any], reply: Reply) -> None:
        request = parse(messages(body), model, stream, include_usage=include_usage(body))
        serve_chat(handler, wire, request, reply)
    return Route(model, stream, serve)


def _embed(wire: Wire, model: str, texts: Callable[[dict[str, Any]], list[str]]) -> Route:
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
            request = parse(_bedrock_messages(body), bedrock_model, action == "converse-stream", system)
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


