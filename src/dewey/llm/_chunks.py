"""What a stream's chunks say: whether one carries a token, the text they deliver, the
usage and identity of the answer they add up to.

Read by the streams (``_stream``) for their own bookkeeping, from any transport's chunks
(``ChatResponse`` dicts, or objects with the same attributes), without wrapping them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["field", "final_usage", "has_token", "has_tool_call", "identity", "joined_text"]


def field(chunk: Any, name: str) -> Any:
    """``chunk``'s ``name``, read as it is (dict.get: a chunk's parts need no wrapping here)."""
    return dict.get(chunk, name) if isinstance(chunk, dict) else getattr(chunk, name, None)


def has_token(chunk: Any) -> bool:
    """Whether a stream chunk carries text, a refusal (OpenAI's, to a structured-output
    request: the answer, given instead of the JSON), a tool call, a finish or usage."""
    choices = field(chunk, "choices") or []
    if not choices:
        return field(chunk, "usage") is not None
    choice = choices[0]
    delta = field(choice, "delta")
    return bool(field(choice, "finish_reason") or field(delta, "content") or field(delta, "refusal")
                or field(delta, "tool_calls") or field(delta, "function_call"))


def has_tool_call(chunk: Any) -> bool:
    choices = field(chunk, "choices") or []
    return bool(choices) and bool(field(field(choices[0], "delta"), "tool_calls"))


def joined_text(chunks: list[Any]) -> str:
    """The text ``chunks`` delivered (their first choices' contents), in one pass."""
    pieces = []
    for chunk in chunks:
        choices = field(chunk, "choices")
        if choices:
            content = field(field(choices[0], "delta"), "content")
            if content:
                pieces.append(content)
    return "".join(pieces)


def final_usage(chunks: list[Any]) -> Any:
    """The usage a provider sent at the end of a stream, if it did."""
    for chunk in reversed(chunks[-3:]):
        usage = field(chunk, "usage")
        if usage:
            return usage
    return None


def identity(chunks: list[Any]) -> dict[str, Any]:
    """The answer's id, model and finish reason, as a stream's chunks tell them."""
    first = chunks[0] if chunks else None
    reasons = [field(choice, "finish_reason") for chunk in chunks[-3:] for choice in field(chunk, "choices") or []]
    return {"id": field(first, "id"), "model": field(first, "model"),
            "choices": [{"finish_reason": reason} for reason in reasons if reason]}
