"""What a stream's chunks say: whether one carries a token, the text they deliver, the
usage and identity of the answer they add up to, the JSON of a structured answer so far.

Read by the streams (``_stream``) for their own bookkeeping, from any transport's chunks
(``ChatResponse`` dicts, or objects with the same attributes), without wrapping them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AnswerJSON", "field", "final_usage", "has_token", "has_tool_call", "identity", "joined_text"]

# The tool LiteLLM forces to carry a ``json_schema`` answer where a provider has no JSON
# mode of its own (litellm.constants.RESPONSE_FORMAT_TOOL_NAME, pinned LiteLLM 1.110).
STRUCTURED_TOOL = "json_tool_call"


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


class AnswerJSON:
    """The JSON text of a streamed structured answer so far, one chunk at a time.

    The answer is the text (``delta.content``), or else (no text, as the assembled answer's
    ``parsed`` chooses) the arguments of LiteLLM's :data:`STRUCTURED_TOOL` call, which some
    routes stream as tool-call deltas: Azure before api_version 2024-08 or for a gpt-3.5
    deployment, for one (Anthropic's, LiteLLM turns into text deltas itself).  A call of
    another tool is the caller's own, never the answer.
    """

    def __init__(self) -> None:
        self.text = ""  # the JSON so far
        self._content = self._arguments = ""
        self._texted = False  # whether the text has more than whitespace: then it is the answer
        self._tool: int | None = None  # the index of the structured tool's call, once named

    def add(self, chunk: Any) -> bool:
        """Take ``chunk``'s piece of the answer; whether the JSON so far grew."""
        choices = field(chunk, "choices")
        if not choices:
            return False
        delta = field(choices[0], "delta")
        content = field(delta, "content")
        if content:
            self._content += content
            self._texted = self._texted or not content.isspace()
        else:
            for call in field(delta, "tool_calls") or ():
                self._tool_piece(call)
        text = self._content if self._texted else self._arguments
        grew, self.text = text != self.text, text
        return grew

    def _tool_piece(self, call: Any) -> None:
        index, function = field(call, "index") or 0, field(call, "function")
        name = field(function, "name")
        if name and self._tool is None and name == STRUCTURED_TOOL:
            self._tool = index
        elif name and index == self._tool:  # another call at that index: not the answer
            self._tool = None
        if index == self._tool:
            self._arguments += field(function, "arguments") or ""
