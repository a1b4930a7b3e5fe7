"""``Message``: one turn of a conversation, and conversion to the dicts providers take."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._exceptions import LLMConfigError

__all__ = ["IMAGE_PART", "ROLES", "Message", "has_images", "to_dicts"]

ROLES = ("system", "user", "assistant", "tool")
_DICT_ROLES = frozenset({*ROLES, "developer", "function"})  # roles a message dict may have
IMAGE_PART = "image_url"
"""The type of an OpenAI image content part: ``{"type": "image_url", "image_url": {"url": ...}}``,
the URL an http(s) address or a ``data:image/...;base64,`` URL.  LiteLLM translates it to
each provider's own image block."""


@dataclass(frozen=True)
class Message:
    """A chat message.

    ``content`` is a string or a list of content parts (``{"type": "text", ...}``,
    ``{"type": "image_url", ...}``); ``tool_calls`` and ``tool_call_id`` carry function
    calling turns.
    """

    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise LLMConfigError(
                f"Message role {self.role!r} is not valid: use one of {', '.join(ROLES)}"
            )
        _check_content(self.content, "Message content")
        if self.role == "tool" and not self.tool_call_id:
            raise LLMConfigError(
                "a Message with role 'tool' needs tool_call_id: the id of the call it answers")

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI-format dict LiteLLM takes (fields that are None are left out)."""
        data: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.name is not None:
            data["name"] = self.name
        if self.tool_call_id is not None:
            data["tool_call_id"] = self.tool_call_id
        if self.tool_calls is not None:
            data["tool_calls"] = [_dumped(call) for call in self.tool_calls]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        """Build a Message from an OpenAI-format dict (unknown keys are rejected)."""
        unknown = set(data) - {"role", "content", "name", "tool_call_id", "tool_calls"}
        if unknown:
            raise LLMConfigError(
                f"unknown message keys {sorted(unknown)}: a message has role, content, name, "
                "tool_call_id and tool_calls")
        return cls(**dict(data))


def _dumped(value: Any) -> Any:
    """A provider object (pydantic model) or dict as plain JSON-able data."""
    if hasattr(value, "model_dump"):
        return value.model_dump(exclude_none=True)
    return value


def to_dicts(messages: Iterable[Message | Mapping[str, Any]] | str) -> list[dict[str, Any]]:
    """Messages, dicts or a bare prompt string as a list of provider dicts."""
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if isinstance(messages, Mapping | Message) or not isinstance(messages, Iterable):
        # A lone message would be iterated key by key: name the fix instead.
        raise LLMConfigError(
            f"messages is a {type(messages).__name__}: pass a prompt string, or a list of "
            "Message objects or dicts (one message goes in a list too: [message])")
    result = []
    for index, message in enumerate(messages):
        # A plain dict first: most calls pass only those, and the Mapping check costs more.
        if type(message) is not dict and isinstance(message, Message):
            result.append(message.to_dict())
        elif type(message) is dict or isinstance(message, Mapping):
            role = message.get("role")
            if not isinstance(role, str) or role not in _DICT_ROLES:  # (a list is not hashable)
                raise LLMConfigError(
                    f"messages[{index}] has role {role!r}: "
                    f"use one of {', '.join(ROLES)}"
                )
            content = message.get("content")
            if content is not None and type(content) is not str:
                _check_content(content, f"messages[{index}].content")
            result.append({k: v if type(v) is str else _dumped(v)
                           for k, v in message.items() if v is not None or k == "content"})
        elif hasattr(message, "role") and hasattr(message, "content"):
            # A provider's message object, e.g. response.choices[0].message fed back in.
            result.append(_dumped(message))
        else:
            raise LLMConfigError(
                f"messages[{index}] is a {type(message).__name__}: pass Message objects or dicts"
            )
    if not result:
        raise LLMConfigError("messages is empty: pass at least one message")
    return result


def has_images(messages: Iterable[Mapping[str, Any]]) -> bool:
    """Whether any message of ``messages`` (provider dicts) has an image content part."""
    return any(isinstance(part, Mapping) and part.get("type") == IMAGE_PART
               for message in messages if isinstance(message.get("content"), list)
               for part in message["content"])


def _check_content(content: Any, where: str) -> None:
    """Content is text, a list of content-part dicts, or None (a tool-calling turn)."""
    if content is None or isinstance(content, str):
        return
    if isinstance(content, list):
        bad = next(((i, part) for i, part in enumerate(content)
                    if not isinstance(part, Mapping) or not isinstance(part.get("type"), str)), None)
        if bad is None:
            return
        where, content = f"{where}[{bad[0]}]", bad[1]
    raise LLMConfigError(
        f"{where} is {content!r:.60} ({type(content).__name__}): pass a string, or a list of "
        "content parts, each with a 'type', such as {'type': 'text', 'text': '...'} "
        "(for a number, str(value))")
