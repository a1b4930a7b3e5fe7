"""Cache keys: a hash of everything that changes the answer, and nothing of transport.

Rotating an API key or changing timeouts keeps the cache warm; any change to the model,
messages, tools or a generation parameter gives a new key, and so does the endpoint
(``api_base``): two servers may serve different models under one name.  Credentials are
never part of a key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from enum import Enum
from typing import Any

from .._exceptions import LLMConfigError

CHAT_PREFIX = "dewey:v1:chat:"
EMBEDDING_PREFIX = "dewey:v1:emb:"

# Parameters that change how a request travels, never what the model answers.
TRANSPORT_PARAMS = frozenset({
    "api_key", "api_base", "base_url", "api_version", "timeout", "request_timeout", "deadline",
    "max_retries", "num_retries", "stream", "stream_options", "metadata", "user", "tags",
    "extra_headers", "headers", "cache", "caching", "organization", "client", "logger_fn",
    "azure_ad_token", "azure_ad_token_provider", "aws_access_key_id", "aws_secret_access_key",
    "aws_session_token", "vertex_credentials", "ssl_verify", "fallbacks",
})
_SECRET_WORDS = ("api_key", "secret", "password")


def completion_key(request: Mapping[str, Any], *, endpoint: str | None = None) -> str:
    """``dewey:v1:chat:<sha256>`` of the answer-changing part of a completion request,
    sent to ``endpoint`` (the ``api_base`` the call goes to; None: the provider's own).

    Dict key order does not matter, list order does; None-valued parameters and message
    keys count as absent.  Raises ``LLMConfigError`` if a parameter is not JSON data.
    """
    payload = {
        name: _canonical(value, drop_none=(name == "messages"), path=name)
        for name, value in request.items()
        if value is not None and not _is_transport(name)
    }
    if endpoint:
        payload[_ENDPOINT] = _endpoint(endpoint)
    return CHAT_PREFIX + _digest(payload)


def embedding_key(model: str, text: str, params: Mapping[str, Any] | None = None, *,
                  endpoint: str | None = None) -> str:
    """``dewey:v1:emb:<sha256>`` of model, one text and the answer-changing parameters,
    sent to ``endpoint`` (as for :func:`completion_key`).

    ``params`` may be the whole request: its ``model`` and ``input`` are ignored.
    """
    kept = {
        name: _canonical(value, drop_none=False, path=name)
        for name, value in (params or {}).items()
        if value is not None and not _is_transport(name) and name not in ("model", "input")
    }
    payload: dict[str, Any] = {"model": model, "input": text, "params": kept}
    if endpoint:
        payload[_ENDPOINT] = _endpoint(endpoint)
    return EMBEDDING_PREFIX + _digest(payload)


# Not a parameter name anyone sends, so it cannot collide with one.  Added only when an
# endpoint is set: keys of calls to a provider's own endpoint are unchanged.
_ENDPOINT = "$endpoint"


def _endpoint(url: str) -> str:
    """The endpoint without what does not change the server: case of the scheme and
    host, a trailing slash, and a user:password@ or query (credentials stay out of keys)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    except ValueError:  # not a URL (a bad port): as given, still one endpoint
        return url.strip().rstrip("/")
    if not parts.scheme or not host:
        return url.strip().rstrip("/")
    return f"{parts.scheme.lower()}://{host}{parts.path.rstrip('/')}"


def _is_transport(name: str) -> bool:
    lowered = name.lower()
    return (lowered in TRANSPORT_PARAMS or lowered.startswith("litellm_")
            or any(word in lowered for word in _SECRET_WORDS))


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _canonical(value: Any, drop_none: bool, path: str) -> Any:
    """``value`` as plain JSON data (in messages, a None-valued key means "absent")."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else value  # temperature=1 and 1.0 agree
    if isinstance(value, Mapping):
        return {str(k): _canonical(v, drop_none, f"{path}.{k}") for k, v in value.items()
                if not (drop_none and v is None)}
    if isinstance(value, (list, tuple)):
        return [_canonical(v, drop_none, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, type) and hasattr(value, "model_json_schema"):
        # response_format=SomePydanticModel: the schema is what the provider sees.
        schema = value.model_json_schema()
        return {"$model": value.__qualname__, "schema": _canonical(schema, False, path)}
    if callable(getattr(value, "model_dump", None)):
        try:
            dumped = value.model_dump(mode="json")
        except TypeError:  # a model_dump without ``mode``
            dumped = value.model_dump()
        return _canonical(dumped, drop_none, path)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _canonical(dataclasses.asdict(value), drop_none, path)
    if isinstance(value, Enum):
        return _canonical(value.value, drop_none, path)
    if isinstance(value, (set, frozenset)):
        items = [_canonical(v, drop_none, path) for v in value]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
    # Not repr(): an object's repr can be equal for different values (a wrong answer
    # served) or differ for equal ones.  Refusing is the only safe choice.
    raise LLMConfigError(
        f"cannot build a cache key: {path} is a {type(value).__name__}, not JSON data; "
        "pass dicts, lists, strings and numbers (or turn the cache off for this call)"
    )
