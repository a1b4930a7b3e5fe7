"""Conversations: turns that keep their history, logged under one id to be resumed.

``client.conversation()`` starts one, ``client.conversation(id=...)`` resumes one from the
prompt log (in this process or another): its history is the last logged turn's messages
and answer.  Each turn is an ordinary call, so it is retried, cached, priced and logged
like any other; its log entry carries the conversation's id.  A failed turn leaves the
history as it was; a streamed one joins it when the stream has been read to its end.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, overload

from ._exceptions import LLMConfigError
from ._messages import Message, to_dicts
from ._response import ChatResponse, answer_text, answer_tool_calls

if TYPE_CHECKING:
    from ._async_client import AsyncLiteLLMClient
    from ._client import LiteLLMClient
    from ._core import _ClientCore
    from ._stream import AsyncCompletionStream, CompletionStream

__all__ = ["AsyncConversation", "Conversation", "new_id", "resume"]

Prompt = str | Message | Mapping[str, Any]


def new_id() -> str:
    """A new conversation's id: 64 random bits, short enough to type after ``--cid``."""
    return uuid.uuid4().hex[:16]


def resume(client: _ClientCore, id: str | None, model: str | None,
           system: str | None) -> tuple[str, str | None, list[dict[str, Any]]]:
    """The id, model and history of a new conversation, or of the logged one ``id``."""
    if id is None:
        start = [{"role": "system", "content": system}] if system else []
        return new_id(), model, start
    if not isinstance(id, str) or not id:
        raise LLMConfigError(f"id={id!r:.60} is not a conversation id: pass one that "
                             "conversation().id gave, or leave it out to start a new one")
    if system is not None:
        raise LLMConfigError("system= starts a new conversation; a resumed one keeps its own: "
                             "leave system out, or leave id out")
    log = client._log  # noqa: SLF001 - the client's own prompt log
    if log is None:
        raise LLMConfigError("resuming a conversation reads the prompt log, and logging is off: "
                             "set log: true and track_usage: true (and unset DEWEY_LLM_LOG=0)")
    turn = log.conversation_turn(id)
    return id, model or turn.model, turn.history()


class _Turns:
    """What both conversations keep: the id, the model and the history."""

    def __init__(self, id: str, model: str | None, messages: list[dict[str, Any]]) -> None:
        self.id = id  #: the conversation's id in the prompt log
        self.model = model  #: the model its turns ask (None: the client's)
        self.messages = messages  #: the history, sent before each new prompt

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, turns={self._turns()})"

    def _turns(self) -> int:
        return sum(1 for message in self.messages if message.get("role") == "assistant")

    def _ask(self, prompt: Prompt, params: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The messages of the next turn and its call's keyword arguments."""
        if isinstance(prompt, str):
            new = [{"role": "user", "content": prompt}]
        elif isinstance(prompt, Message | Mapping):
            new = to_dicts([prompt])
        else:
            raise LLMConfigError(f"send() takes the prompt as a string or a message, not "
                                 f"{type(prompt).__name__}")
        return [*self.messages, *new], {**params, "conversation_id": self.id}

    def _answered(self, messages: list[dict[str, Any]], text: str,
                  response: ChatResponse | None = None) -> None:
        reply: dict[str, Any] = {"role": "assistant", "content": text}
        calls = answer_tool_calls(response) if response is not None else None
        if calls:
            reply["tool_calls"] = calls
        self.messages = [*messages, reply]


class Conversation(_Turns):
    """A conversation with a model: each :meth:`send` sends the history before the prompt.

    >>> chat = client.conversation(system="Be terse.")  # doctest: +SKIP
    >>> chat.send("Name a prime.").choices[0].message.content  # doctest: +SKIP
    >>> chat.send("Another one?")  # doctest: +SKIP
    >>> client.conversation(id=chat.id)  # later, even in another process  # doctest: +SKIP
    """

    def __init__(self, client: LiteLLMClient, id: str, model: str | None,
                 messages: list[dict[str, Any]]) -> None:
        super().__init__(id, model, messages)
        self._client = client

    @overload
    def send(self, prompt: Prompt, *, stream: Literal[False] = False, **params: Any) -> ChatResponse: ...

    @overload
    def send(self, prompt: Prompt, *, stream: Literal[True], **params: Any) -> CompletionStream: ...

    def send(self, prompt: Prompt, *, stream: bool = False,
             **params: Any) -> ChatResponse | CompletionStream:
        """Send ``prompt`` after the history: a :class:`ChatResponse`, or with
        ``stream=True`` a :class:`CompletionStream` (the answer joins the history once
        read to its end).  ``params`` are :meth:`LiteLLMClient.generate_completion`'s."""
        messages, kwargs = self._ask(prompt, params)
        model = kwargs.pop("model", None) or self.model
        if stream:
            chunks = self._client.generate_completion(messages, model, stream=True, **kwargs)
            chunks._on_end.append(lambda text: self._answered(messages, text))  # noqa: SLF001
            return chunks
        response: ChatResponse = self._client.generate_completion(messages, model, **kwargs)
        self._answered(messages, answer_text(response), response)
        return response


class AsyncConversation(_Turns):
    """:class:`Conversation` for asyncio: ``await conversation.send(...)``."""

    def __init__(self, client: AsyncLiteLLMClient, id: str, model: str | None,
                 messages: list[dict[str, Any]]) -> None:
        super().__init__(id, model, messages)
        self._client = client

    @overload
    async def send(self, prompt: Prompt, *, stream: Literal[False] = False,
                   **params: Any) -> ChatResponse: ...

    @overload
    async def send(self, prompt: Prompt, *, stream: Literal[True],
                   **params: Any) -> AsyncCompletionStream: ...

    async def send(self, prompt: Prompt, *, stream: bool = False,
                   **params: Any) -> ChatResponse | AsyncCompletionStream:
        """See :meth:`Conversation.send`; with ``stream=True`` an :class:`AsyncCompletionStream`."""
        messages, kwargs = self._ask(prompt, params)
        model = kwargs.pop("model", None) or self.model
        if stream:
            chunks = await self._client.generate_completion(messages, model, stream=True, **kwargs)
            chunks._on_end.append(lambda text: self._answered(messages, text))  # noqa: SLF001
            return chunks
        response: ChatResponse = await self._client.generate_completion(messages, model, **kwargs)
        self._answered(messages, answer_text(response), response)
        return response

