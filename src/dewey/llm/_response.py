"""``ResponseData``: the one response type every call returns, without importing LiteLLM.

Whatever answered (the native transport, LiteLLM, the cache), a response reads the same
as LiteLLM's ``ModelResponse`` does: ``r.choices[0].message.content``,
``r["choices"][0]["message"]["content"]``, ``r.usage.prompt_tokens``, ``r.model_dump()``
and ``r._hidden_params`` all work.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["ChatResponse", "ResponseData", "answer_text", "answer_tool_calls", "as_dict", "delta_text",
           "from_litellm", "replay_chunks", "wrapped"]


def _key_attribute(name: str) -> Any:
    """``response.<name>`` read straight from the key: an attribute found on the class
    skips the failed lookup (and its AttributeError) that reaches ``__getattr__`` first,
    which costs more than the read itself.  For the keys a stream's reader reads on every
    chunk (``chunk.choices[0].delta.content``); a response without the key still raises
    AttributeError, as for any other name."""

    def read(self: ChatResponse) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    return property(read)


class ChatResponse(dict[str, Any]):
    """A chat completion or embedding response, whatever transport or cache answered.

    A dict whose keys also read as attributes, recursively, like LiteLLM's objects:
    ``response.choices[0].message.content`` or ``response["choices"][0]["message"]["content"]``,
    ``response.usage``, ``response.choices[0].message.tool_calls``, ``model_dump()``.
    ``response._hidden_params`` holds what is not part of the answer (``cache_hit``,
    ``dewey_cost``), as on LiteLLM's responses.
    """

    choices = _key_attribute("choices")
    delta = _key_attribute("delta")
    message = _key_attribute("message")
    content = _key_attribute("content")
    usage = _key_attribute("usage")

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            if name == "_hidden_params":  # made on first use, kept out of the data
                hidden: dict[str, Any] = {}
                object.__setattr__(self, "_hidden_params", hidden)
                return hidden
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __getitem__(self, key: str) -> Any:
        value = dict.__getitem__(self, key)
        # Inline rather than through _wrap: this runs for every attribute read of every
        # chunk (``chunk.choices[0].delta.content``), and most values need no wrapping.
        if isinstance(value, dict | list) and not isinstance(value, ChatResponse | _Wrapped):
            value = _wrap(value)  # kept, so that the next read (a stream reads each chunk
            dict.__setitem__(self, key, value)  # several times) neither copies nor wraps
        return value

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else _wrap(default)

    def model_dump(self, **_: Any) -> dict[str, Any]:
        return _json_copy(self)

    def json(self, **_: Any) -> str:
        return json.dumps(self, default=_plain)

    def model_dump_json(self, **_: Any) -> str:
        return json.dumps(self, default=_plain)


ResponseData = ChatResponse
"""The name the code used before the type was public; the same class."""


class _Wrapped(list[Any]):
    """A list whose items were wrapped already: read again, it is returned as it is."""


def wrapped(items: list[ChatResponse]) -> list[Any]:
    """``items`` as a list that reads back as it is: no copy on the first read."""
    return _Wrapped(items)


def _wrap(value: Any) -> Any:
    if isinstance(value, dict) and not isinstance(value, ResponseData):
        return ResponseData(value)
    if isinstance(value, list) and not isinstance(value, _Wrapped):
        return _Wrapped([_wrap(item) for item in value])
    return value


def from_litellm(response: Any) -> ResponseData:
    """LiteLLM's ``ModelResponse`` / ``EmbeddingResponse`` as a :class:`ResponseData`,
    its ``_hidden_params`` kept."""
    data = ResponseData(response.model_dump())
    hidden = getattr(response, "_hidden_params", None)
    object.__setattr__(data, "_hidden_params", dict(hidden) if isinstance(hidden, dict) else {})
    return data


def as_dict(response: Any) -> dict[str, Any]:
    """Plain JSON-able data of a LiteLLM response (or of a ``ResponseData``)."""
    if isinstance(response, dict):
        return _json_copy(response)
    return _json_copy(response.model_dump() if hasattr(response, "model_dump") else dict(response))


def _json_copy(data: dict[str, Any]) -> dict[str, Any]:
    """A deep copy through JSON: plain data only."""
    copied: dict[str, Any] = json.loads(json.dumps(data, default=_plain))
    return copied


def _plain(value: Any) -> Any:
    """A value JSON has no type for: a structured answer's object (``message.parsed``, a
    pydantic model or dataclass) as its data; anything else as its ``str``."""
    from pydantic_core import PydanticSerializationError, to_jsonable_python

    try:
        return to_jsonable_python(value)
    except PydanticSerializationError:
        return str(value)


def cached_response(data: dict[str, Any]) -> ResponseData:
    """A cache hit: the stored answer, marked as such."""
    response = ResponseData(data)
    response.pop("_hidden_params", None)
    # An instance attribute, like LiteLLM's, so it stays out of model_dump().
    object.__setattr__(response, "_hidden_params", {"cache_hit": True, "response_cost": 0.0})
    object.__setattr__(response, "cache_hit", True)
    return response


def replay_chunks(data: dict[str, Any]) -> Iterator[ResponseData]:
    """A stored complete answer replayed as stream chunks (one per word, then usage)."""
    created = data.get("created") or int(time.time())
    base = {"id": data.get("id"), "object": "chat.completion.chunk", "created": created,
            "model": data.get("model"), "system_fingerprint": data.get("system_fingerprint")}
    for index, choice in enumerate(data.get("choices") or []):
        message = choice.get("message") or {}
        yield _chunk(base, index, {"role": "assistant", "content": ""}, None)
        for piece in _pieces(message.get("content") or ""):
            yield _chunk(base, index, {"content": piece}, None)
        if message.get("tool_calls"):
            calls = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
            yield _chunk(base, index, {"tool_calls": calls}, None)
        if message.get("function_call"):  # legacy functions=
            yield _chunk(base, index, {"function_call": dict(message["function_call"])}, None)
        yield _chunk(base, index, {}, choice.get("finish_reason") or "stop")
    if data.get("usage"):
        yield _marked(ResponseData({**base, "choices": [], "usage": data["usage"]}))


# Every key a fresh LiteLLM delta has, so that ``chunk.choices[0].delta.content`` (None on
# the closing chunk) reads the same on a replayed chunk as on a fresh one.
_DELTA = {"role": None, "content": None, "function_call": None, "tool_calls": None}


def _chunk(base: dict[str, Any], index: int, delta: dict[str, Any], finish: str | None) -> ResponseData:
    choice = {"index": index, "delta": {**_DELTA, **delta}, "finish_reason": finish,
              "logprobs": None}
    return _marked(ResponseData({**base, "choices": [choice]}))


def _marked(chunk: ResponseData) -> ResponseData:
    """A replayed chunk, marked as a cache hit the way a response is (not in its data)."""
    object.__setattr__(chunk, "_hidden_params", {"cache_hit": True})
    return chunk


def _pieces(text: str) -> Iterator[str]:
    """Split into words that keep their following space, so joined deltas equal text."""
    start = 0
    for position, char in enumerate(text):
        if char == " " and position + 1 < len(text) and text[position + 1] != " ":
            yield text[start:position + 1]
            start = position + 1
    if start < len(text):
        yield text[start:]


def usage_counts(response: Any) -> tuple[int, int, int]:
    """(prompt, completion, cached) tokens of a response, chunk or plain dict."""
    if response is None:
        return 0, 0, 0
    usage = _field(response, "usage")
    if not usage:
        return 0, 0, 0
    cached = _field(_field(usage, "prompt_tokens_details") or {}, "cached_tokens")
    return (int(_field(usage, "prompt_tokens") or 0), int(_field(usage, "completion_tokens") or 0),
            int(cached or 0))


def delta_text(chunk: Any) -> str:
    """The text a stream chunk adds ("" for a chunk with none, e.g. usage or a tool call)."""
    choices = _field(chunk, "choices")
    if not choices:
        return ""
    return _field(_field(choices[0], "delta"), "content") or ""


def answer_text(response: Any) -> str:
    """The text of a complete response's first choice ("" when it has none)."""
    choices = _field(response, "choices")
    if not choices:
        return ""
    return _field(_field(choices[0], "message"), "content") or ""


def answer_tool_calls(response: Any) -> list[Any] | None:
    """The tool calls of a complete response's first choice, as plain data (None: none)."""
    choices = _field(response, "choices")
    calls = _field(_field(choices[0], "message"), "tool_calls") if choices else None
    return [dict(call) if isinstance(call, dict) else call for call in calls] if calls else None


def _field(item: Any, name: str) -> Any:
    # dict.get: these read plain values out (text, tool calls), so nothing needs wrapping.
    return dict.get(item, name) if isinstance(item, dict) else getattr(item, name, None)
