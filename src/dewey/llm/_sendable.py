"""Whether a request can be sent at all, checked before it is: what fails here was never sent.

A request that cannot be encoded (a NaN temperature, a lone surrogate in the text, an
object where JSON is needed) fails deep inside LiteLLM, which reports it as a 500: it
would be retried and counted toward the model's cooldown, yet it is the caller's to
fix.  Caught here it is an ``LLMConfigError``, raised once, with nothing sent.

The check is one ``json.dumps`` in C; only a failure walks the request to name the value
at fault.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from ._exceptions import LLMConfigError

__all__ = ["check_sendable"]

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
        json.dumps(body, allow_nan=False, ensure_ascii=False, default=_as_data).encode("utf-8")
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
        f"response_format={value!r:.80} is not a response format: pass "
        "{'type': 'json_object'}, {'type': 'json_schema', 'json_schema': {'name': ..., "
        "'schema': {...}}}, or a pydantic model class")
