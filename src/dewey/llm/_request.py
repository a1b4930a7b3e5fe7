"""Preparing a request and checking it can be sent: what fails here was never sent.

A call's arguments become a :class:`Request`: messages and tools normalised, the
configured parameters merged in, ``tags``, ``user`` and the cache mode taken out, and
the whole checked to be sendable.  A request that cannot be encoded (a NaN
temperature, a lone surrogate in the text, an object where JSON is needed) fails deep
inside LiteLLM, which reports it as a 500: it would be retried and counted toward the
model's cooldown, yet it is the caller's to fix.  Caught here it is an
``LLMConfigError``, raised once, with nothing sent.  The check is one ``json.dumps`` in
C; only a failure walks the request to name the value at fault.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ._exceptions import LLMConfigError
from ._messages import IMAGE_PART, Message, has_images, to_dicts
from ._providers import default_embedding_model
from ._tools import normalize_functions, normalize_tool_choice, normalize_tools

if TYPE_CHECKING:
    from ._config import LiteLLMConfig
    from ._resilience import Route
    from ._structured import OutputSchema, OutputSchemas
    from ._telemetry import CallTrace

__all__ = ["CacheMode", "MessagesInput", "Request", "check_cache_mode", "check_sendable",
           "completion_request", "embedding_request", "estimate_tokens", "texts_of"]

CacheMode = bool | Literal["refresh"] | None
MessagesInput = Iterable[Message | Mapping[str, Any]] | str
_IMAGE_TOKENS = 1600


@dataclass
class Request:
    """One prepared call: what to send, where, and how to account for it."""

    kind: Literal["completion", "stream", "embedding"]
    model: str
    payload: dict[str, Any]  # model-independent arguments: messages/input and parameters
    cache: CacheMode
    tags: tuple[str, ...] = ()
    user: str | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)  # resolved when a call is needed
    estimate: float = 0.0  # USD held against budgets while an attempt is in flight
    hold: str | None = None  # the ledger reservation of the attempt in flight
    trace: CallTrace | None = None  # its OpenTelemetry span, when telemetry is on
    log: bool = True  # log its messages and answer (when the client logs)
    conversation_id: str | None = None  # the conversation it continues, in the prompt log
    call_id: str = field(default_factory=lambda: uuid.uuid4().hex)  # links log and ledger rows
    output: OutputSchema | None = None  # the structured answer asked for (response_format=Model)
    repairs: int = 0  # follow-up calls made so far because the answer did not validate

    def cache_request(self) -> dict[str, Any]:
        return {"model": self.model, **self.payload}


def completion_request(config: LiteLLMConfig, messages: MessagesInput, model: Any, stream: bool,
                       params: dict[str, Any], schemas: OutputSchemas) -> Request:
    """A chat completion's request; ``params`` are the call's keyword arguments, ``schemas``
    the client's structured outputs built so far."""
    cache = params.pop("cache", None)
    tags = _tags(params.pop("tags", ()))
    user = params.get("user")
    log, conversation_id = _log_params(params.pop("log", True), params.pop("conversation_id", None))
    params["functions"] = normalize_functions(params.get("functions"))
    params["tools"] = normalize_tools(params.get("tools"))
    for name in ("tool_choice", "function_call"):
        if params.get(name) is not None:
            params[name] = normalize_tool_choice(params[name])
    dicts = to_dicts(messages)
    payload = {**config.params, "messages": dicts,
               **{k: v for k, v in params.items() if v is not None}}
    output = None
    if payload.get("response_format") is not None:
        # A type (or a bare JSON schema) is sent as the strict schema it stands for, so
        # that every transport, and the cache key, see the same plain dict.
        output = schemas.get(payload["response_format"])
        if output is not None:
            payload["response_format"] = output.response_format
    check_sendable(payload)
    # An alias is resolved here, so that the cache key, the budget's estimate and the
    # ledger name the model it stands for.
    chosen = config.resolve_alias(_model_name(model) or config.resolved_model())
    return Request("stream" if stream else "completion", chosen, payload, cache, tags, user, dicts,
                   output=output, log=log, conversation_id=conversation_id)


def embedding_request(config: LiteLLMConfig, texts: list[str], model: Any,
                      params: dict[str, Any]) -> Request:
    """An embedding request for ``texts``; its payload is set once the cache has answered."""
    cache = params.pop("cache", None)
    tags = _tags(params.pop("tags", ()))
    check_sendable({**params, "input": texts})
    chosen = config.resolve_alias(_model_name(model) or config.embedding_model
                                  or default_embedding_model(config.resolved_model()))
    return Request("embedding", chosen, params, cache, tags, params.get("user"))


def texts_of(value: Any) -> list[str]:
    """The texts to embed: one string or a non-empty list of them."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return value
    raise LLMConfigError("generate_embedding takes a string or a non-empty list of strings")


def check_cache_mode(value: Any) -> None:
    """A per-call ``cache=`` other than True, False or "refresh" is a mistake (a typo of
    "refresh", the string "false"): refuse it rather than read the cache anyway."""
    if value is not None and value is not True and value is not False and value != "refresh":
        raise LLMConfigError(
            f"cache={value!r} is not a cache mode: pass cache=True, cache=False (neither read "
            "nor write the cache) or cache='refresh' (call, then overwrite the entry)")


def estimate_tokens(request: Request, answer: int | None = None) -> int:
    """A cheap token estimate for rate limits and budgets (about 4 characters a token),
    with ``answer`` tokens for the answer (default: max_tokens, else 256)."""
    payload = request.payload
    messages, images = payload.get("messages"), 0
    if messages and has_images(messages):
        messages, images = _without_images(messages)
    text = json.dumps(messages or payload.get("input") or "", default=str)
    if answer is None:
        answer = int(payload.get("max_tokens") or 256)
    return len(text) // 4 + images * _IMAGE_TOKENS + answer


def _without_images(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """``messages`` without their image parts, and how many there were.

    An image costs tokens by its size in pixels, not by the length of its base64 data (a
    1 MB photo would count as 350,000 tokens): each counts as ``_IMAGE_TOKENS``, about
    what Anthropic documents for an image at the largest size it keeps (~1.15 megapixels).
    """
    kept, images = [], 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            parts = [part for part in content
                     if not (isinstance(part, Mapping) and part.get("type") == IMAGE_PART)]
            images += len(content) - len(parts)
            message = {**message, "content": parts}
        kept.append(message)
    return kept, images


def _model_name(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise LLMConfigError(
        f"model={value!r:.60} is a {type(value).__name__}, not a model name: pass a string "
        "such as 'gpt-4o-mini' or 'anthropic/claude-haiku-4-5' (or leave it out for the "
        "configured model)")


def _tags(value: Any) -> tuple[str, ...]:
    if value is None or (type(value) is tuple and not value):  # no tags: most calls
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple | set | frozenset) and all(isinstance(t, str) for t in value):
        return tuple(value)
    raise LLMConfigError(
        f"tags={value!r:.60} is not a list of strings: pass tags=['nightly', 'eval'] "
        "(or one tag as a string)")


def _log_params(log: Any, conversation_id: Any) -> tuple[bool, str | None]:
    if not isinstance(log, bool):
        raise LLMConfigError(f"log={log!r:.60} is not a bool: pass log=False to keep this call "
                             "out of the prompt log")
    if conversation_id is not None and not (isinstance(conversation_id, str) and conversation_id):
        raise LLMConfigError(f"conversation_id={conversation_id!r:.60} is not a conversation id: "
                             "pass the id of client.conversation(), or leave it out")
    return log, conversation_id


# --- sendable -----------------------------------------------------------------------------

# Arguments LiteLLM uses itself and never puts in the request body.
_NOT_SENT = frozenset({"client", "logger_fn", "azure_ad_token_provider", "metadata",
                       "timeout", "mock_response"})
_RESPONSE_FORMATS = ("text", "json_object", "json_schema")


def check_sendable(payload: Mapping[str, Any]) -> None:
    """Raise ``LLMConfigError`` naming the first value of ``payload`` that JSON (strict:
    no NaN or infinity) or UTF-8 cannot carry, or a misshapen ``response_format``."""
    body = {name: value for name, value in payload.items()
            if name not in _NOT_SENT and not name.startswith("litellm_")}
    if body.get("response_format") is not None:
        _check_response_format(body["response_format"])
    try:
        _CHECKER.encode(body).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:  # UnicodeEncodeError is a ValueError
        fault = next(filter(None, (_fault(value, name, 0) for name, value in body.items())), None)
        raise LLMConfigError(fault or f"the request cannot be encoded as JSON: {exc}") from None


def _as_data(value: Any) -> Any:
    """What LiteLLM turns a pydantic model (class or instance) into before sending it."""
    if isinstance(value, type) and hasattr(value, "model_json_schema"):
        return value.model_json_schema()  # response_format=SomeModel: its schema is sent
    if callable(getattr(value, "model_dump", None)):
        return value.model_dump()
    raise TypeError(type(value).__name__)


# json.dumps with these arguments would make this (stateless) encoder anew for every call.
_CHECKER = json.JSONEncoder(allow_nan=False, ensure_ascii=False, default=_as_data)


def _fault(value: Any, path: str, depth: int) -> str | None:
    """Why ``value`` (at ``path``) cannot be sent, or None if it can."""
    if depth > 64:
        return f"{path} is nested more than 64 levels deep: is there a circular reference?"
    if value is None or isinstance(value, bool | int):
        return None
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        return (f"{path} is {value!r}: JSON has no NaN or infinity, so no provider can "
                "receive it; pass a finite number")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return (f"{path} contains {value[exc.start:exc.end]!r} at index {exc.start}, a lone "
                    "surrogate that is not valid UTF-8 (text decoded with "
                    "errors='surrogateescape' has them); clean the text first, e.g. "
                    "text.encode('utf-8', 'replace').decode('utf-8')")
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str | int | float | bool) and key is not None:
                return (f"{path} has the key {key!r:.60} ({type(key).__name__}): JSON keys are "
                        "strings; use str keys")
            fault = _fault(key, f"{path} key", depth + 1) or _fault(item, f"{path}.{key}", depth + 1)
            if fault:
                return fault
        return None
    if isinstance(value, list | tuple):
        return next(filter(None, (_fault(item, f"{path}[{i}]", depth + 1)
                                  for i, item in enumerate(value))), None)
    try:
        data = _as_data(value)
    except TypeError:
        return (f"{path} is {value!r:.60} ({type(value).__name__}), which cannot be sent as "
                "JSON: pass strings, numbers, booleans, lists and dicts")
    return _fault(data, path, depth + 1)


def _check_response_format(value: Any) -> None:
    if isinstance(value, type) and hasattr(value, "model_json_schema"):
        return  # a pydantic model class: LiteLLM sends its JSON schema
    if isinstance(value, Mapping) and value.get("type") in _RESPONSE_FORMATS and (
        value["type"] != "json_schema" or isinstance(value.get("json_schema"), Mapping)
    ):
        return
    raise LLMConfigError(
        f"response_format={value!r:.80} is not a response format: pass a pydantic model, a "
        "dataclass or a TypedDict (the answer is validated into it: message.parsed), a JSON "
        "schema dict, {'type': 'json_object'}, or {'type': 'json_schema', 'json_schema': "
        "{'name': ..., 'schema': {...}}}")
