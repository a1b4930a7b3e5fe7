"""``Message``: one turn of a conversation, and conversion to the dicts providers take."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ROLES", "Message", "to_dicts"]

ROLES = ("system", "user", "assistant", "tool")


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
            raise ValueError(
                f"Message role {self.role!r} is not valid: use one of {', '.join(ROLES)}"
            )
        if self.content is not None and not isinstance(self.content, (str, list)):
            raise ValueError(
                f"Message content must be a string or a list of content parts, "
                f"not {type(self.content).__name__}"
            )
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a Message with role 'tool' needs tool_call_id: the id of the call it answers")

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI-format dict LiteLLM takes (fields that are None are left out)."""
        data: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.name is not None:
            data["name"] = self.name
        if self.tool_call_id is not None:
            data["tool_call_id"] = self.tool_call_id
        if self.tool_calls is not None:
            data["tool_calls"] = [_plain(call) for call in self.tool_calls]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        """Build a Message from an OpenAI-format dict (unknown keys are rejected)."""
        unknown = set(data) - {"role", "content", "name", "tool_call_id", "tool_calls"}
        if unknown:
            raise ValueError(f"unknown message keys {sorted(unknown)}")
        return cls(**dict(data))


def _plain(value: Any) -> Any:
    """A provider object (pydantic model) or dict as plain JSON-able data."""
    if hasattr(value, "model_dump"):
        return value.model_dump(exclude_none=True)
    return value


def to_dicts(messages: Iterable[Message | Mapping[str, Any]] | str) -> list[dict[str, Any]]:
    """Messages, dicts or a bare prompt string as a list of provider dicts."""
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    result = []
    for index, message in enumerate(messages):
        if isinstance(message, Message):
            result.append(message.to_dict())
        elif isinstance(message, Mapping):
            if message.get("role") not in (*ROLES, "developer", "function"):
                raise ValueError(
                    f"messages[{index}] has role {message.get('role')!r}: "
                    f"use one of {', '.join(ROLES)}"
                )
            result.append({k: _plain(v) for k, v in message.items() if v is not None or k == "content"})
        elif hasattr(message, "role") and hasattr(message, "content"):
            # A provider's message object, e.g. response.choices[0].message fed back in.
            result.append(_plain(message))
        else:
            raise ValueError(
                f"messages[{index}] is a {type(message).__name__}: pass Message objects or dicts"
            )
    if not result:
        raise ValueError("messages is empty: pass at least one message")
    return result
