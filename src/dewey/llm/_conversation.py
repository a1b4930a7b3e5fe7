"""Conversations: turns that keep their history, logged under one id to be resumed.

``client.conversation()`` starts one, ``client.conversation(id=...)`` resumes one from the
prompt log (in this process or another): its history is the last logged turn's messages
and answer.  Each turn is an ordinary call, so it is retried, cached, priced and logged
like any other; its log entry carries the conversation's id.  A failed turn leaves the
history as it was; a streamed one joins it when the stream has been read to its end.
"""

from __future__ import annotations

import uuid
from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any, Literal, overload

from ._chunks import has_tool_call as _has_tool_call
from ._exceptions import LLMConfigError
from ._messages import Message, to_dicts
from ._response import ChatResponse, answer_text, answer_tool_calls

if TYPE_CHECKING:
    from ._async_client import AsyncLiteLLMClient
    from ._client import LiteLLMClient
    from ._core import _ClientCore
    from ._stream import AsyncCompletionStream, CompletionStream
    from ._usage._log import PromptLog

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
    return id, *_logged(_log_to_resume(client, id, system), id, model)


def _logged(log: PromptLog, id: str, model: str | None) -> tuple[str | None, list[dict[str, Any]]]:
    """The model and history of the logged conversation ``id`` (reads the log)."""
    turn = log.conversation_turn(id)
    return model or turn.model, turn.history()


def _log_to_resume(client: _ClientCore, id: str, system: str | None) -> PromptLog:
    """The prompt log conversation ``id`` is to be read from, or the error that says why
    it cannot be; reads nothing yet."""
    if not isinstance(id, str) or not id:
        raise LLMConfigError(f"id={id!r:.60} is not a conversation id: pass one that "
                             "conversation().id gave, or leave it out to start a new one")
    if system is not None:
        raise LLMConfigError("system= starts a new conversation; a resumed one keeps its own: "
                             "leave system out, or leave id out")
    log: PromptLog | None = client._log  # noqa: SLF001 - the client's own prompt log
    if log is None:
        raise LLMConfigError("resuming a conversation reads the prompt log, and logging is off: "
                             "set log: true and track_usage: true (and unset DEWEY_LLM_LOG=0)")
    return log


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

    def _answer_at_end(self, stream: CompletionStream | AsyncCompletionStream,
                       messages: list[dict[str, Any]]) -> None:
        """Join ``stream``'s answer to the history once it has been read to its end, with
        its tool calls as the same call without ``stream`` would."""
        def ended(text: str) -> None:
            # Assembled only when it called a tool (LiteLLM's assembly is costly): else
            # the text is all the answer there is.
            called = any(_has_tool_call(chunk) for chunk in stream._chunks)  # noqa: SLF001
            self._answered(messages, text, stream.response if called else None)

        stream._on_end.append(ended)  # noqa: SLF001

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
            self._answer_at_end(chunks, messages)
            return chunks
        response: ChatResponse = self._client.generate_completion(messages, model, **kwargs)
        self._answered(messages, answer_text(response), response)
        return response


class AsyncConversation(_Turns):
    """:class:`Conversation` for asyncio: ``await conversation.send(...)``.

    One resumed from the prompt log reads its history in a worker thread, never on the
    event loop: ``chat = await client.conversation(id=...)`` reads it then (an unknown id
    raises there), else the first :meth:`send` does.  Awaiting a new one, or one already
    read, returns it at once.
    """

    def __init__(self, client: AsyncLiteLLMClient, id: str, model: str | None,
                 messages: list[dict[str, Any]], unread: PromptLog | None = None) -> None:
        super().__init__(id, model, messages)
        self._client = client
        self._unread = unread  # the prompt log the history is still to be read from

    @classmethod
    def start(cls, client: AsyncLiteLLMClient, id: str | None, model: str | None,
              system: str | None) -> AsyncConversation:
        """A new conversation, or the logged one ``id`` with its history still unread
        (what is wrong with the arguments is raised now, before any reading)."""
        if id is None:
            return cls(client, *resume(client, None, model, system))
        return cls(client, id, model, [], unread=_log_to_resume(client, id, system))

    def __await__(self) -> Generator[Any, None, AsyncConversation]:
        return self._read().__await__()

    async def _read(self) -> AsyncConversation:
        if self._unread is not None:
            import asyncio  # here, not at the top: the CLI's plain chat never loads it

            model, messages = await asyncio.to_thread(_logged, self._unread, self.id, self.model)
            self.model, self.messages, self._unread = model, messages, None
        return self

    @overload
    async def send(self, prompt: Prompt, *, stream: Literal[False] = False,
                   **params: Any) -> ChatResponse: ...

    @overload
    async def send(self, prompt: Prompt, *, stream: Literal[True],
                   **params: Any) -> AsyncCompletionStream: ...

    async def send(self, prompt: Prompt, *, stream: bool = False,
                   **params: Any) -> ChatResponse | AsyncCompletionStream:
        """See :meth:`Conversation.send`; with ``stream=True`` an :class:`AsyncCompletionStream`."""
        await self._read()
        messages, kwargs = self._ask(prompt, params)
        model = kwargs.pop("model", None) or self.model
        if stream:
            chunks = await self._client.generate_completion(messages, model, stream=True, **kwargs)
            self._answer_at_end(chunks, messages)
            return chunks
        response: ChatResponse = await self._client.generate_completion(messages, model, **kwargs)
        self._answered(messages, answer_text(response), response)
        return response

