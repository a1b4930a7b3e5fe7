"""Streamed completions: chunks as they arrive, recorded and cached once complete.

A stream is opened by the client's retry loop, which reads it up to its first token (so
a provider failing before any text is retried or fallen back from); from then on the
chunks are the user's, and a failure is raised, never silently restarted.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ._exceptions import LLMError, LLMServerError
from ._resilience import Try
from ._response import ResponseData, replay_chunks, usage_counts

if TYPE_CHECKING:
    from ._client import Request, _ClientCore

__all__ = ["AsyncCompletionStream", "CompletionStream"]


class CompletionStream:
    """The chunks of a streamed completion, as they arrive.

    The chunks up to the first token were read when the stream was opened, so a provider
    that fails before sending any text was retried or fallen back from transparently.  A failure after
    text was delivered raises ``LLMServerError`` (never a silent restart that would
    repeat text).  Once complete, ``response`` holds the assembled answer, and it is
    recorded and cached.
    """

    def __init__(self, client: _ClientCore | None, request: Request | None, attempt: Try | None,
                 iterator: Iterator[Any], head: list[Any], started: float, key: str | None) -> None:
        self._client, self._request, self._attempt = client, request, attempt
        self._iterator, self._head, self._started, self._key = iterator, list(head), started, key
        self._chunks: list[Any] = []
        self._broke = self._finished = False
        self._response: Any = None
        self.cost = 0.0  # USD, known once the stream has been read to its end

    @classmethod
    def replay(cls, response: ResponseData) -> CompletionStream:
        stream = cls(None, None, None, replay_chunks(response), [], 0.0, None)
        stream._response = response
        return stream

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        chunk = self._head.pop(0) if self._head else self._next()
        self._chunks.append(chunk)
        return chunk

    def _next(self) -> Any:
        if self._client is None:  # a replayed cache hit
            return next(self._iterator)
        assert self._request is not None and self._attempt is not None
        try:
            return self._client._backend.next_chunk(self._iterator, self._attempt.route.model)
        except StopIteration:
            self._finish()
            raise
        except LLMError as error:
            raise self._broken(error) from error.__cause__

    def _broken(self, error: LLMError) -> LLMError:
        assert self._client is not None and self._request is not None and self._attempt is not None
        broken = LLMServerError(
            f"the stream from {self._attempt.route.model} broke after {len(self._chunks)} "
            f"chunks: {error.message} (not retried, to avoid repeating text)",
            model=self._attempt.route.model, provider=error.provider,
            status_code=error.status_code)
        self._broke = True  # _finish must not record, price or cache the partial answer
        self._client._failed(self._request, self._attempt, broken,
                             time.monotonic() - self._started)
        return broken

    def _finish(self) -> None:
        assert self._client is not None and self._request is not None and self._attempt is not None
        if self._finished or self._broke:
            # Iterated again after the end: recorded, priced and cached once only.  After
            # a break the iterator just stops: the failure is what was recorded.
            return
        self._finished = True
        client, attempt = self._client, self._attempt
        latency = time.monotonic() - self._started
        usage = _final_usage(self._chunks)
        if usage is not None and self._key is None:
            # The provider counted the tokens: price them without assembling the whole
            # answer (stream_chunk_builder costs more than the rest of our work together).
            self.cost = client._backend.token_cost(attempt.route.model, *usage_counts({"usage": usage})[:2])
            client._succeeded(self._request, attempt, {"usage": usage}, latency, cost=self.cost)
            return
        response = self.response
        if response is None:
            return
        self.cost = client._succeeded(self._request, attempt, response, latency)._hidden_params["dewey_cost"]
        client._store(self._key, response)

    @property
    def response(self) -> Any:
        """The whole answer as one response, once the stream has been read to its end."""
        if self._response is None and self._finished and self._client is not None:
            assert self._request is not None
            self._response = self._client._backend.build_stream_response(self._chunks, self._request.messages)
            hidden = getattr(self._response, "_hidden_params", None)
            if isinstance(hidden, dict):
                hidden["dewey_cost"] = self.cost
        return self._response

    def text(self) -> str:
        """Read the whole stream and return the text it delivered."""
        return "".join(_delta_text(chunk) for chunk in self)

    def close(self) -> None:
        """Stop reading. A stream left before its end is recorded as abandoned (the
        provider may still charge for it) and is not cached."""
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()
        if self._client is None or self._finished or self._broke:
            return
        assert self._request is not None and self._attempt is not None
        self._broke = True
        self._client._record(self._request, self._attempt, "abandoned",
                             latency=time.monotonic() - self._started)

    def __enter__(self) -> CompletionStream:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class AsyncCompletionStream(CompletionStream):
    """:class:`CompletionStream` for ``async for``."""

    _aiterator: AsyncIterator[Any]

    def __init__(self, client: _ClientCore | None, request: Request | None, attempt: Try | None,
                 iterator: Any, head: list[Any], started: float, key: str | None) -> None:
        super().__init__(client, request, attempt, iter(()), head, started, key)
        self._aiterator = iterator

    @classmethod
    def replay(cls, response: ResponseData) -> AsyncCompletionStream:
        stream = cls(None, None, None, _aiter(replay_chunks(response)), [], 0.0, None)
        stream._response = response
        return stream

    def __aiter__(self) -> AsyncCompletionStream:
        return self

    async def __anext__(self) -> Any:
        if self._head:
            chunk = self._head.pop(0)
        else:
            chunk = await self._anext()
        self._chunks.append(chunk)
        return chunk

    async def _anext(self) -> Any:
        if self._client is None:
            return await self._aiterator.__anext__()
        assert self._attempt is not None
        try:
            return await self._client._backend.anext_chunk(self._aiterator, self._attempt.route.model)
        except StopAsyncIteration:
            self._finish()
            raise
        except LLMError as error:
            raise self._broken(error) from error.__cause__

    async def atext(self) -> str:
        """Read the whole stream and return the text it delivered."""
        return "".join([_delta_text(chunk) async for chunk in self])


async def _aiter(items: Iterable[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


def _final_usage(chunks: list[Any]) -> Any:
    """The usage a provider sent at the end of a stream, if it did."""
    for chunk in reversed(chunks[-3:]):
        usage = chunk.get("usage") if isinstance(chunk, dict) else getattr(chunk, "usage", None)
        if usage:
            return usage
    return None


def _delta_text(chunk: Any) -> str:
    choices = chunk["choices"] if isinstance(chunk, dict) else chunk.choices
    if not choices:
        return ""
    delta = choices[0]["delta"] if isinstance(choices[0], dict) else choices[0].delta
    content = delta.get("content") if isinstance(delta, dict) else getattr(delta, "content", None)
    return content or ""
