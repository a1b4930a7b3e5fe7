"""Streamed completions: chunks as they arrive, recorded and cached once complete.

A stream is opened by the client's retry loop with :func:`open_stream`, which reads it
up to its first token (so a provider failing before any text is retried or fallen back
from); from then on the chunks are the user's, and a failure is raised, never silently
restarted.  A live stream reports through its :class:`Live` (the call's ``Recorder``),
never through the client.

``CompletionStream`` and ``AsyncCompletionStream`` are siblings: what they share (the
bookkeeping of one streamed call) is ``_StreamCall``; they differ only in how they read.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from ._chunks import AnswerJSON, final_usage, has_token, has_tool_call, identity, joined_text
from ._exceptions import LLMConfigError, LLMError, LLMServerError, LLMTimeoutError
from ._response import ResponseData, delta_text, replay_chunks
from ._structured import invalid_answer, output_errors

if TYPE_CHECKING:
    from ._recorder import Recorder
    from ._request import Request
    from ._resilience import RetryPlan, Step
    from ._transport import Transport

__all__ = ["AsyncCompletionStream", "CompletionStream", "Live", "aopen_stream", "open_stream"]


def open_stream(transport: Transport, kwargs: dict[str, Any]) -> tuple[Iterator[Any], list[Any]]:
    """Start a stream and read up to its first token, so that a failure before any
    text arrives is an ordinary (retryable) failure of this attempt, whatever the transport."""
    iterator = transport.stream(kwargs)
    head: list[Any] = []
    while not head or not has_token(head[-1]):
        try:
            head.append(next(iterator))
        except StopIteration:
            break
    return iterator, head


async def aopen_stream(transport: Transport, kwargs: dict[str, Any]) -> tuple[AsyncIterator[Any], list[Any]]:
    """:func:`open_stream`, awaited."""
    iterator = await transport.astream(kwargs)
    head: list[Any] = []
    while not head or not has_token(head[-1]):
        try:
            head.append(await iterator.__anext__())
        except StopAsyncIteration:
            break
    return iterator, head


@dataclass(frozen=True)
class Live:
    """What a live (not replayed) stream reports through, and the attempt it came from."""

    recorder: Recorder
    transport: Transport  # what sent it, and so assembles its chunks
    request: Request
    step: Step
    plan: RetryPlan  # its deadline is the whole call's
    key: str | None  # the cache key the answer is stored under (None: not cached)
    started: float  # time.monotonic() when the attempt started


class _StreamCall:
    """The bookkeeping of one streamed call, shared by the sync and async streams.

    Every chunk received is kept (to assemble and price the answer), but a usage-only
    chunk (``choices == []``) reaches the caller only if they passed ``stream_options``
    themselves: we ask for usage wherever the provider supports it (to price the stream),
    some servers send it unasked, and either way the README's ``chunk.choices[0]`` must
    not fail on it.  A cache replay is filtered the same way, so it reads like live.
    """

    def __init__(self, live: Live | None, head: list[Any]) -> None:
        self._live, self._head = live, list(head)
        self._chunks: list[Any] = []  # every chunk received, shown to the caller or not
        self._broke = self._finished = False
        self._response: Any = None
        self._usage_chunks_wanted = live is not None and "stream_options" in live.request.payload
        self._output = live.request.output if live is not None else None  # response_format=Model
        self._deadline = live.plan.deadline if live is not None else None  # the whole call's
        self.cost = 0.0  # USD, known once the stream has been read to its end
        self._on_end: list[Callable[[str], None]] = []  # given the text, once read to the end

    def _replayed(self, response: ResponseData, request: Request) -> None:
        """Make this a replay of a cached answer, as the caller would see it live."""
        options = request.payload.get("stream_options") or {}
        self._usage_chunks_wanted = bool(options.get("include_usage"))
        self._response = response
        self._output = request.output

    @property
    def response(self) -> Any:
        """The whole answer as one response, once the stream has been read to its end."""
        live = self._live
        if self._response is None and self._finished and live is not None:
            self._response = live.transport.assemble(self._chunks, live.request.messages)
            hidden = getattr(self._response, "_hidden_params", None)
            if isinstance(hidden, dict):
                hidden["dewey_cost"] = self.cost
        return self._response

    def _ended(self) -> None:
        """Read to the end (live or replayed): tell whoever waits for the text, once."""
        waiting, self._on_end = self._on_end, []
        if waiting and not self._broke:
            text = joined_text(self._chunks)
            for callback in waiting:
                callback(text)

    def _shown(self, chunk: Any) -> bool:
        """Keep ``chunk``; whether the caller is to see it.  (This and ``_past_deadline``
        run for every chunk: they read plainly, without helpers.)"""
        self._chunks.append(chunk)
        if isinstance(chunk, dict):
            return bool(dict.get(chunk, "choices")) or not dict.get(chunk, "usage") or self._usage_chunks_wanted
        return bool(getattr(chunk, "choices", None)) or not getattr(chunk, "usage", None) or self._usage_chunks_wanted

    def _past_deadline(self) -> bool:
        """Checked with each chunk read after the head: the deadline is the whole call's.

        A read that stalls is bounded by the attempt's timeout, which was cut to the time
        left when the attempt started: a stalled stream ends too, as this same timeout.
        """
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _broken(self, error: LLMError | None) -> LLMError:
        """Record the stream as failed (after ``error``, or at the deadline); the error to raise."""
        assert self._live is not None
        live = self._live
        model = live.step.route.model
        failure: LLMError
        if error is None or self._past_deadline():
            failure = LLMTimeoutError(
                f"the stream from {model} was still running at the call's deadline "
                f"({live.plan.policy.deadline}s) after {len(self._chunks)} chunks: raise "
                "`deadline`, or ask for a shorter answer (max_tokens)", model=model)
        else:
            failure = LLMServerError(
                f"the stream from {model} broke after {len(self._chunks)} chunks: "
                f"{error.message} (not retried, to avoid repeating text)",
                model=model, provider=error.provider, status_code=error.status_code)
        self._broke = True  # _finish must not record, price or cache the partial answer
        live.recorder.failed(live.request, live.step, failure, time.monotonic() - live.started)
        return failure

    def _finish(self) -> None:
        assert self._live is not None
        if self._finished or self._broke:
            # Iterated again after the end: recorded, priced and cached once only.  After
            # a break the iterator just stops: the failure is what was recorded.
            return
        self._finished = True
        live = self._live
        latency = time.monotonic() - live.started
        usage = final_usage(self._chunks)
        if usage is not None and live.key is None and self._output is None:
            # The provider counted the tokens: price them without assembling the whole
            # answer (stream_chunk_builder costs more than the rest of our work together).
            counted = {**identity(self._chunks), "usage": usage}
            self.cost = live.recorder.price(counted, live.step.route.model)
            live.recorder.succeeded(live.request, live.step, counted, latency, cost=self.cost)
            self._log(None)
            return
        response = self.response
        if response is None:
            return
        live.recorder.succeeded(live.request, live.step, response, latency)  # validates it
        self.cost = live.recorder.cost_of(response)
        errors = output_errors(response)
        if self._output is not None and errors:
            # Not repaired: its text has been delivered, and a second answer would follow it.
            raise invalid_answer(live.request.model, self._output, response, errors,
                                 "a stream is not repaired")
        live.recorder.store(live.key, response)
        self._log(response)

    def _log(self, response: Any) -> None:
        """The prompt log's entry: the assembled answer, else the text delivered (the
        answer is assembled only when it has tool calls, which need it)."""
        assert self._live is not None
        live = self._live
        if not live.recorder.logs(live.request):
            return  # nothing to join the text for
        if response is None and any(has_tool_call(chunk) for chunk in self._chunks):
            response = self.response
        # Joined here, not on the writer thread: the chunks are the caller's, free to change.
        text = None if response is not None else joined_text(self._chunks)
        live.recorder.logged(live.request, live.step.route.model, response, text=text)

    def _partial(self, answer: AnswerJSON, chunk: Any, last: Any) -> Any:
        """The object the JSON so far holds, with ``chunk``'s piece (``last`` if unchanged)."""
        if self._output is None or not answer.add(chunk):
            return last
        current = self._output.partial(answer.text)
        return last if current is None or current == last else current

    def _check_partials(self) -> None:
        if self._output is None:
            raise LLMConfigError("partials() is for a structured answer: pass "
                                 "response_format=SomeModel with stream=True")

    def _abandon(self) -> None:
        """A stream left before its end is recorded as abandoned (the provider may still
        charge for it) and is not cached."""
        live = self._live
        if live is None or self._finished or self._broke:
            return
        self._broke = True
        live.recorder.abandoned(live.request, live.step, time.monotonic() - live.started)


class CompletionStream(_StreamCall):
    """The chunks of a streamed completion, as they arrive.

    The chunks up to the first token were read when the stream was opened, so a provider
    that fails before sending any text was retried or fallen back from transparently.  A failure after
    text was delivered raises ``LLMServerError`` (never a silent restart that would
    repeat text), a stream still running at the call's ``deadline`` ``LLMTimeoutError``.
    Once complete, ``response`` holds the assembled answer, and it is recorded and cached.
    """

    def __init__(self, iterator: Iterator[Any], head: list[Any], live: Live | None = None) -> None:
        super().__init__(live, head)
        self._iterator = iterator

    @classmethod
    def replay(cls, response: ResponseData, request: Request) -> CompletionStream:
        stream = cls(replay_chunks(response), [])
        stream._replayed(response, request)
        return stream

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        while True:
            if self._head:
                chunk = self._head.pop(0)
            else:
                try:
                    chunk = self._next()
                except StopIteration:
                    self._ended()
                    raise
            if self._shown(chunk):
                return chunk

    def _next(self) -> Any:
        if self._live is None:  # a replayed cache hit
            return next(self._iterator)
        try:
            chunk = next(self._iterator)
        except StopIteration:
            self._finish()
            raise
        except LLMError as error:
            raise self._broken(error) from error.__cause__
        if self._past_deadline():
            failure = self._broken(None)
            self._close_iterator()
            raise failure
        return chunk

    def text(self) -> str:
        """Read the whole stream and return the text it delivered."""
        return "".join(delta_text(chunk) for chunk in self)

    def partials(self) -> Iterator[Any]:
        """Read the stream, yielding the structured answer (``response_format=Model``) each
        time it fills further: a copy of the model with every field optional, None until
        filled (for a target that is not a pydantic model, its JSON data so far).  At the
        end ``response.choices[0].message.parsed`` is the validated object."""
        self._check_partials()
        answer, last = AnswerJSON(), None
        for chunk in self:
            current = self._partial(answer, chunk, last)
            if current is not last:
                last = current
                yield current

    def close(self) -> None:
        """Stop reading. A stream left before its end is recorded as abandoned (the
        provider may still charge for it) and is not cached."""
        self._close_iterator()
        self._abandon()

    def _close_iterator(self) -> None:
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> CompletionStream:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class AsyncCompletionStream(_StreamCall):
    """:class:`CompletionStream` for ``async for`` (and ``await stream.atext()``)."""

    def __init__(self, iterator: AsyncIterator[Any], head: list[Any], live: Live | None = None) -> None:
        super().__init__(live, head)
        self._aiterator = iterator

    @classmethod
    def replay(cls, response: ResponseData, request: Request) -> AsyncCompletionStream:
        stream = cls(_aiter(replay_chunks(response)), [])
        stream._replayed(response, request)
        return stream

    def __iter__(self) -> NoReturn:
        # Python's own "object is not iterable" would not say what to do instead.
        raise TypeError("an AsyncCompletionStream is read with `async for chunk in stream` "
                        "or `await stream.atext()`, not `for` or `.text()`")

    def text(self) -> NoReturn:
        """Not for async streams: ``await stream.atext()``."""
        self.__iter__()

    def __aiter__(self) -> AsyncCompletionStream:
        return self

    async def __anext__(self) -> Any:
        while True:
            if self._head:
                chunk = self._head.pop(0)
            else:
                try:
                    chunk = await self._anext()
                except StopAsyncIteration:
                    self._ended()
                    raise
            if self._shown(chunk):
                return chunk

    async def _anext(self) -> Any:
        if self._live is None:  # a replayed cache hit
            return await self._aiterator.__anext__()
        try:
            chunk = await self._aiterator.__anext__()
        except StopAsyncIteration:
            self._finish()
            raise
        except LLMError as error:
            raise self._broken(error) from error.__cause__
        if self._past_deadline():
            failure = self._broken(None)
            await self._aclose_iterator()
            raise failure
        return chunk

    async def atext(self) -> str:
        """Read the whole stream and return the text it delivered."""
        return "".join([delta_text(chunk) async for chunk in self])

    async def apartials(self) -> AsyncIterator[Any]:
        """:meth:`CompletionStream.partials`, for ``async for``."""
        self._check_partials()
        answer, last = AnswerJSON(), None
        async for chunk in self:
            current = self._partial(answer, chunk, last)
            if current is not last:
                last = current
                yield current

    async def aclose(self) -> None:
        """Stop reading; see :meth:`CompletionStream.close`."""
        await self._aclose_iterator()
        self._abandon()

    async def _aclose_iterator(self) -> None:
        close = getattr(self._aiterator, "aclose", None)
        if close is not None:
            await close()

    async def __aenter__(self) -> AsyncCompletionStream:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()


async def _aiter(items: Iterable[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item
