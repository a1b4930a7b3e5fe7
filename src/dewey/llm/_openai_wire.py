"""The OpenAI Chat Completions and Embeddings wire format, as pure functions (no I/O).

:mod:`._native` does the HTTP; this module decides what to send and what an answer means:
the request (:func:`chat_request`, :func:`embedding_request`), the responses shaped like
LiteLLM's (:func:`completion`, :func:`chunk`, :func:`embedding`, and :func:`assemble` for a
whole stream), server-sent events
(:class:`EventReader`) and HTTP errors (:func:`http_error`).

Responses are :class:`ResponseData` whose ``model_dump()`` equals LiteLLM's
``ModelResponse`` / ``ModelResponseStream`` / ``EmbeddingResponse`` ``model_dump()`` for the
same server reply (tests/test_native.py proves it): LiteLLM fills in keys the server may
leave out (``message.tool_calls``, ``usage.prompt_tokens_details``, ...) and readers rely
on them being there.  What LiteLLM adds that is not on the wire is left out: keys it
copies onto some chunks and not others from the openai SDK (``citations``,
``moderation``, ``obfuscation``, ``service_tier``, ``delta.refusal``), numbers it computes
(``usage.cost``, token details, usage estimated with a tokenizer when the server sent
none); and a usage chunk the server sent unasked is passed on, not dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._exceptions import (
    LLMAuthenticationError,
    LLMBadRequestError,
    LLMConfigError,
    LLMContextWindowError,
    LLMError,
    LLMRateLimitError,
    LLMResponseError,
    LLMServerError,
    LLMTimeoutError,
)
from ._response import ResponseData, wrapped
from ._retry_after import parse_retry_after

__all__ = ["DEFAULT_API_BASE", "PROVIDER", "EventReader", "HTTPRequest", "assemble", "chat_request",
           "chunk", "completion", "embedding", "embedding_request", "error_in_reply", "http_error",
           "malformed", "wire_model"]

PROVIDER = "openai"
DEFAULT_API_BASE = "https://api.openai.com/v1"

# Arguments that steer the call rather than travel in the JSON body.
_CONTROL = frozenset({"model", "api_key", "api_base", "api_version", "timeout", "max_retries",
                      "extra_body", "extra_headers", "stream", "custom_llm_provider",
                      "drop_params", "metadata", "client"})
_CONTEXT_PHRASES = ("context length", "context window", "maximum context", "too many tokens",
                    "prompt is too long", "context_length_exceeded")
_BAD_REQUEST = frozenset({400, 404, 413, 422})
_PROMPT_TOKEN_KINDS = ("audio_tokens", "cached_tokens", "text_tokens", "image_tokens", "video_tokens",
                       "initial_prompt_tokens")
_REASONING_MODEL = re.compile(r"(o\d|gpt-5)")  # o1, o3-mini, o4-mini, gpt-5...: see chat_request
# json.dumps with these arguments would make this (stateless) encoder anew for every request.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True)
class HTTPRequest:
    """What to POST: the path under ``api_base``, the JSON body (and its bytes) and the
    extra headers."""

    api_base: str
    api_key: str | None
    path: str
    body: dict[str, Any]
    content: bytes
    headers: dict[str, str]
    timeout: float | None


def wire_model(model: str) -> str:
    """The model name the server knows: ``openai/gpt-4o`` -> ``gpt-4o``."""
    return model.removeprefix("openai/")


def _body(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body: the server's model name, then every argument that is not a control
    argument (None means "not given", as in LiteLLM)."""
    model = kwargs.get("model")
    if not isinstance(model, str) or not model.strip():
        raise LLMConfigError(f"model must be a model name such as 'openai/gpt-4o-mini', not {model!r}")
    body = {"model": wire_model(model)}
    body.update((name, value) for name, value in kwargs.items() if name not in _CONTROL and value is not None)
    return body


def _request(kwargs: Mapping[str, Any], path: str, body: dict[str, Any]) -> HTTPRequest:
    body.update(kwargs.get("extra_body") or {})
    timeout = kwargs.get("timeout")
    api_base = str(kwargs.get("api_base") or DEFAULT_API_BASE).rstrip("/")
    if not api_base.startswith(("http://", "https://")):
        raise LLMConfigError(f"api_base must be an http(s) URL such as 'http://localhost:8000/v1', "
                             f"not {api_base!r}")
    try:  # encoded here, so that an argument JSON cannot carry is named before anything is sent
        content = _ENCODER.encode(body).encode()
    except (TypeError, ValueError) as exc:
        raise LLMConfigError(f"the request cannot be sent as JSON: {exc}; pass plain dicts, lists, "
                             "strings and finite numbers") from None
    return HTTPRequest(
        api_base=api_base,
        api_key=kwargs.get("api_key"),
        path=path,
        body=body,
        content=content,
        headers={str(k): str(v) for k, v in (kwargs.get("extra_headers") or {}).items()},
        timeout=float(timeout) if timeout is not None else None,
    )


def chat_request(kwargs: Mapping[str, Any], *, stream: bool) -> HTTPRequest:
    """``POST /chat/completions`` for completion()-style ``kwargs``; ``stream_options``
    travels only with ``stream``, as LiteLLM sends it."""
    body = _body(kwargs)
    body["messages"] = [_wire_message(message) for message in kwargs.get("messages") or []]
    if not body.get("tools"):  # OpenAI refuses a tool_choice without tools; LiteLLM drops it
        body.pop("tool_choice", None)
    # OpenAI's reasoning models refuse max_tokens and take max_completion_tokens instead.
    if _REASONING_MODEL.match(body["model"]) and "max_tokens" in body and "max_completion_tokens" not in body:
        body["max_completion_tokens"] = body.pop("max_tokens")
    if stream:
        body["stream"] = True
    else:
        body.pop("stream_options", None)
    return _request(kwargs, "/chat/completions", body)


def _wire_message(message: Any) -> Any:
    """A message as LiteLLM sends it to an OpenAI-compatible server: without keys whose
    value is None (an assistant turn's ``"content": None`` beside its tool calls), the
    ``developer`` role as ``system`` (which every chat template knows), and an
    ``image_url`` given as a bare string as the ``{"url": ...}`` object the API wants."""
    if not isinstance(message, dict):
        return message
    sent = {key: value for key, value in message.items() if value is not None}
    if sent.get("role") == "developer":
        sent["role"] = "system"
    if isinstance(sent.get("content"), list):
        sent["content"] = [
            {**part, "image_url": {"url": part["image_url"]}}
            if isinstance(part, dict) and isinstance(part.get("image_url"), str) else part
            for part in sent["content"]]
    return sent


def embedding_request(kwargs: Mapping[str, Any]) -> HTTPRequest:
    """``POST /embeddings`` for embedding()-style ``kwargs``."""
    return _request(kwargs, "/embeddings", _body(kwargs))


# --------------------------------------------------------------------------- responses


def _usage(data: Any) -> dict[str, Any]:
    # LiteLLM's Usage: zeros when the server reported none (embeddings have no completion).
    usage: dict[str, Any] = {"completion_tokens": 0, "prompt_tokens": 0, "total_tokens": 0}
    usage.update(data if isinstance(data, dict) else {})
    for name in ("completion_tokens_details", "prompt_tokens_details"):
        usage.setdefault(name, None)
    return usage


def _message(data: Mapping[str, Any]) -> dict[str, Any]:
    # LiteLLM's Message always has these four; other fields (refusal, annotations, ...)
    # only when the server sent them.
    message: dict[str, Any] = {"content": None, "role": "assistant", "tool_calls": None,
                               "function_call": None}
    message.update(data)
    return message


def _checked(data: Any, model: str, items: str, what: str) -> dict[str, Any]:
    """``data`` if it is an object whose ``items`` is a list of objects, else its error:
    the provider's, when a 200 carries ``{"error": ...}`` (some proxies do), or malformed."""
    if isinstance(data, dict):
        if data.get("error") is not None:
            raise error_in_reply(model, data["error"])
        listed = data.get(items)
        if isinstance(listed, list) and all(isinstance(item, dict) for item in listed):
            return data
    raise malformed(model, f"the reply is not {what}: {json.dumps(data)[:200]}")


def completion(data: Any, model: str) -> ResponseData:
    """A ``chat.completion`` body as a response."""
    data = _checked(data, model, "choices", "a chat completion")
    choices = []
    for choice in data["choices"]:
        choices.append({"finish_reason": choice.get("finish_reason"), "index": choice.get("index", 0),
                        "message": _message(choice.get("message") or {}),
                        "provider_specific_fields": {}, "logprobs": choice.get("logprobs")})
    return ResponseData({"object": "chat.completion", **data, "choices": choices,
                         "usage": _usage(data.get("usage"))})


_DELTA_KEYS = {"content": None, "role": None, "function_call": None, "tool_calls": None, "audio": None}


def _delta(data: Mapping[str, Any]) -> dict[str, Any]:
    # LiteLLM's delta always has these keys, and every tool call in it an id, a type
    # and a function name (None after the first piece of a call): readers rely on them.
    delta: dict[str, Any] = {**_DELTA_KEYS, **data}
    if isinstance(delta["function_call"], dict):
        delta["function_call"] = {"name": None, **delta["function_call"]}
    if isinstance(delta["tool_calls"], list):
        delta["tool_calls"] = [{"id": None, "type": "function", **call,
                                "function": {"name": None, **(call.get("function") or {})}}
                               for call in delta["tool_calls"]]
    return delta


def chunk(data: Any, model: str) -> ResponseData:
    """A ``chat.completion.chunk`` event as a stream chunk, its choices and deltas
    :class:`ResponseData` already (a stream's reader reads each several times)."""
    data = _checked(data, model, "choices", "a chat completion chunk")
    choices = wrapped([ResponseData(finish_reason=choice.get("finish_reason"), index=choice.get("index", 0),
                                    delta=ResponseData(_delta(choice.get("delta") or {})),
                                    logprobs=choice.get("logprobs"))
                       for choice in data["choices"]])
    result = ResponseData(data, choices=choices, provider_specific_fields=None)
    if choices:  # unlike a completion or a usage chunk, LiteLLM's always has this key
        result.setdefault("system_fingerprint", None)
    if data.get("usage") is not None:
        usage = result["usage"] = _usage(data["usage"])
        if isinstance(usage["prompt_tokens_details"], dict):  # LiteLLM's stream spells them all out
            usage["prompt_tokens_details"] = {**dict.fromkeys(_PROMPT_TOKEN_KINDS), **usage["prompt_tokens_details"]}
    return result


def embedding(data: Any, model: str) -> ResponseData:
    """An embeddings body as a response."""
    data = _checked(data, model, "data", "a list of embeddings")
    return ResponseData({**data, "object": data.get("object", "list"),
                         "usage": _usage(data.get("usage"))})


def assemble(chunks: list[Any]) -> ResponseData:
    """The complete response a stream's chunks add up to, like LiteLLM's
    ``stream_chunk_builder``: contents, refusals and tool-call arguments joined, the last finish
    reason, and the usage the server reported (None if it sent none: LiteLLM would
    estimate it with a tokenizer)."""
    if not chunks:
        raise malformed("(unknown model)", "a stream without chunks cannot make a response")
    first = chunks[0]
    choices: dict[int, dict[str, Any]] = {}
    for piece in chunks:
        for choice in piece["choices"]:
            _add_delta(choices.setdefault(choice["index"], _empty_choice(choice["index"])),
                       choice["delta"], choice["finish_reason"])
    usage = next((piece["usage"] for piece in reversed(chunks) if piece.get("usage")), None)
    for choice in choices.values():
        calls = choice["message"]["tool_calls"]
        choice["message"]["tool_calls"] = [calls[i] for i in sorted(calls)] if calls else None
    return ResponseData({"id": first["id"], "created": first["created"], "model": first["model"],
                         "object": "chat.completion", "system_fingerprint": first["system_fingerprint"],
                         "choices": [choices[i] for i in sorted(choices)], "usage": usage})


def _empty_choice(index: int) -> dict[str, Any]:
    return {"finish_reason": None, "index": index, "message": {
        "content": None, "role": "assistant", "tool_calls": {}, "function_call": None}}


def _add_delta(choice: dict[str, Any], delta: Mapping[str, Any], finish_reason: str | None) -> None:
    message = choice["message"]
    if delta.get("content") is not None:
        message["content"] = (message["content"] or "") + delta["content"]
    if delta.get("refusal"):  # a model declining a schema: the message has it only then
        message["refusal"] = message.get("refusal", "") + delta["refusal"]
    if delta.get("function_call"):
        call = message["function_call"] = message["function_call"] or {"arguments": "", "name": None}
        call["name"] = call["name"] or delta["function_call"].get("name")
        call["arguments"] += delta["function_call"].get("arguments") or ""
    for part in delta.get("tool_calls") or []:
        call = message["tool_calls"].setdefault(part.get("index", 0), {
            "function": {"arguments": "", "name": None}, "id": None, "type": "function"})
        call["id"] = call["id"] or part.get("id")
        function = part.get("function") or {}
        call["function"]["name"] = call["function"]["name"] or function.get("name")
        call["function"]["arguments"] += function.get("arguments") or ""
    choice["finish_reason"] = finish_reason or choice["finish_reason"]


# --------------------------------------------------------------------------- server-sent events


class EventReader:
    """Turns the lines of an SSE body into chunks, one per event.

    An event is its ``data:`` lines up to a blank line (``event:`` names it; ``id:``,
    ``retry:`` and ``:`` comments do not matter here).  ``data: [DONE]`` ends the stream;
    an ``error`` event, or data holding an ``error`` object, is the provider failing.
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self.done = False  # [DONE] arrived
        self.finished = False  # a choice arrived with its finish_reason
        self._data: list[str] = []
        self._event = ""

    def feed(self, line: str) -> ResponseData | None:
        """The chunk that ``line`` (one line of the body, without its newline) completes,
        if it completes one.  (Not a generator: this runs for every line of every stream.)"""
        if not line:
            return self.flush()
        if line.startswith("data:"):
            self._data.append(line[5:].removeprefix(" "))
        elif line.startswith("event:"):
            self._event = line[6:].strip()
        return None

    def flush(self) -> ResponseData | None:
        """The pending event as a chunk (also for a body whose last event has no blank line)."""
        lines, event = self._data, self._event
        data = lines[0] if len(lines) == 1 else "\n".join(lines)
        lines.clear()
        self._event = ""
        if not data or self.done:
            return None
        if data[0] != "{" and data.strip() == "[DONE]":
            self.done = True
            return None
        try:
            payload = json.loads(data)
        except ValueError:
            raise malformed(self.model, "a stream event is not JSON") from None
        if event == "error":
            raise error_in_reply(self.model, payload.get("error", payload) if isinstance(payload, dict) else payload)
        result = chunk(payload, self.model)
        if not self.finished:  # read from the plain data: no wrapping on this path
            for choice in payload["choices"]:
                if choice.get("finish_reason"):
                    self.finished = True
        return result


# --------------------------------------------------------------------------- errors


def _error_text(body: bytes | str) -> tuple[str, str | None]:
    """The provider's own message and error code from an error body."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data = json.loads(text)
    except ValueError:  # a proxy's HTML page, say: its start is enough to recognise it
        text = " ".join(text.split())
        return (text[:300] + "..." if len(text) > 300 else text) or "(empty body)", None
    error = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(error, dict):
        code = error.get("code")
        message = error.get("message") or json.dumps(error)
        return str(message), str(code) if code is not None else None
    return str(error), None


def http_error(status: int, headers: Mapping[str, str], body: bytes, model: str) -> LLMError:
    """The error for an HTTP error reply, named by its status."""
    message, code = _error_text(body)
    cls: type[LLMError]
    if status in (401, 403):
        cls = LLMAuthenticationError
    elif status == 429:
        cls = LLMRateLimitError
    elif status == 408:
        cls = LLMTimeoutError
    elif status == 400 and (code == "context_length_exceeded"
                            or any(p in message.lower() for p in _CONTEXT_PHRASES)):
        cls = LLMContextWindowError
    elif status in _BAD_REQUEST:
        cls = LLMBadRequestError
    elif status >= 500 or status == 409:  # 409: a conflict that clears on its own
        cls = LLMServerError
    else:
        cls = LLMResponseError
    return cls(f"{model}: {message}", model=model, provider=PROVIDER, status_code=status,
               retry_after=parse_retry_after(headers))


def error_in_reply(model: str, error: Any) -> LLMServerError:
    """An error the provider reported inside a 200: an error event mid-stream, or a body."""
    message, _ = _error_text(json.dumps({"error": error}))
    return LLMServerError(f"{model}: {message}", model=model, provider=PROVIDER)


def malformed(model: str, what: str) -> LLMResponseError:
    """A reply that is not the JSON the wire promises."""
    return LLMResponseError(f"{model}: {what}", model=model, provider=PROVIDER)
