"""``AsyncLiteLLMClient``: :class:`LiteLLMClient` for asyncio, the same calls awaited.

Everything but the awaiting is ``_ClientCore``'s (``_core``), shared with the sync client.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Sequence
from functools import partial
from typing import Any, Literal, overload

from ._conversation import AsyncConversation
from ._core import _ClientCore
from ._embeddings import merge
from ._request import (
    MessagesInput,
    Request,
    estimate_tokens,
)
from ._resilience import RetryPlan, Step, run_async
from ._response import ChatResponse
from ._stream import AsyncCompletionStream, Live, aopen_stream
from ._telemetry import finishing
from ._transport import Transport

__all__ = ["AsyncLiteLLMClient"]


class AsyncLiteLLMClient(_ClientCore):
    """:class:`LiteLLMClient` for asyncio: the same API, awaited."""

    @overload
    async def generate_completion(self, messages: MessagesInput, model: str | None = None, *,
                                  stream: Literal[False] = False, **params: Any) -> ChatResponse: ...

    @overload
    async def generate_completion(self, messages: MessagesInput, model: str | None = None, *,
                                  stream: Literal[True], **params: Any) -> AsyncCompletionStream: ...

    @overload
    async def generate_completion(self, messages: MessagesInput, model: str | None = None, *,
                                  stream: bool, **params: Any) -> Any: ...

    async def generate_completion(
        self,
        messages: MessagesInput,
        model: str | None = None,
        *,
        stream: bool = False,
        functions: list[Any] | None = None,
        function_call: Any = None,
        tools: list[Any] | None = None,
        tool_choice: Any = None,
        **params: Any,
    ) -> ChatResponse | AsyncCompletionStream:
        """See :meth:`LiteLLMClient.generate_completion`; with ``stream=True`` this returns
        an :class:`AsyncCompletionStream`."""
        request, key, cached = self._start_completion(messages, model, stream, {
            **params, "functions": functions, "function_call": function_call,
            "tools": tools, "tool_choice": tool_choice})
        if cached is not None:
            return AsyncCompletionStream.replay(cached, request) if stream else cached
        with finishing(request.trace):
            plan = self._plan(request)
            if stream:
                return await run_async(plan, lambda step: self._open_stream(request, step, plan, key))
            response = await run_async(plan, partial(self._complete, request))
            while (follow_up := self._follow_up(request, response)) is not None:
                request = follow_up  # a repair: see _ClientCore._follow_up
                with finishing(request.trace):
                    response = await run_async(self._plan(request), partial(self._complete, request))
            self._recorder.store(key, response)
            return response

    def conversation(self, id: str | None = None, *, model: str | None = None,
                     system: str | None = None) -> AsyncConversation:
        """See :meth:`LiteLLMClient.conversation`.  Resuming one (``id=...``) reads the
        prompt log in a worker thread, not on the event loop: ``chat = await
        client.conversation(id=...)`` reads it there and then (an unknown id raises); not
        awaited, its first ``send`` does.  A new conversation needs no ``await``."""
        return AsyncConversation.start(self, id, model, system)

    async def _complete(self, request: Request, step: Step) -> ChatResponse:
        if self._limiter is not None:  # (tested here: a coroutine for nothing costs every call)
            await self._aacquire(request, step)
        response, started = await self._aattempt(request, step, _acomplete)
        return self._succeeded(request, step, response, started)

    async def _open_stream(self, request: Request, step: Step, plan: RetryPlan,
                           key: str | None) -> AsyncCompletionStream:
        await self._aacquire(request, step)
        (iterator, head), started = await self._aattempt(request, step, aopen_stream)
        live = Live(self._recorder, self._transports.for_route(step.route), request, step, plan, key, started)
        return AsyncCompletionStream(iterator, head, live)

    async def generate_embedding(self, input: str | list[str], model: str | None = None,
                                 **params: Any) -> ChatResponse:
        """See :meth:`LiteLLMClient.generate_embedding`."""
        request, plan = self._start_embedding(input, model, params)
        fresh = None
        if plan.missing:

            async def embed(step: Step) -> ChatResponse:
                await self._aacquire(request, step)
                response, started = await self._aattempt(
                    request, step, lambda transport, kwargs: transport.aembed(kwargs))
                return self._succeeded(request, step, response, started)

            with finishing(request.trace):
                fresh = await run_async(self._plan(request), embed)
        elif request.trace is not None:  # every text was in the cache
            request.trace.returned()
        return merge(request, plan, fresh, self._recorder)

    async def generate_completions(self, batch: Iterable[MessagesInput], model: str | None = None,
                                   *, concurrency: int = 16, return_exceptions: bool = False,
                                   progress: bool = False, **params: Any) -> list[Any]:
        """See :meth:`LiteLLMClient.generate_completions`."""
        from . import _batch  # asyncio and thread pools: only for batches

        return await _batch.run_async(
            lambda messages: self.generate_completion(messages, model, **params), list(batch),
            concurrency=concurrency, return_exceptions=return_exceptions, progress=progress,
            label="completions")

    async def generate_embeddings(self, texts: Sequence[str], model: str | None = None, *,
                                  batch_size: int = 128, concurrency: int = 4,
                                  return_exceptions: bool = False, progress: bool = False,
                                  **params: Any) -> list[Any]:
        """See :meth:`LiteLLMClient.generate_embeddings`."""
        from . import _batch  # asyncio and thread pools: only for batches

        batches = _batch.chunked(list(texts), batch_size)
        results = await _batch.run_async(
            lambda chunk: self.generate_embedding(list(chunk), model, **params), batches,
            concurrency=concurrency, return_exceptions=return_exceptions, progress=progress,
            label="embeddings")
        return _batch.vectors(batches, results)

    async def _aacquire(self, request: Request, step: Step) -> None:
        if self._limiter is not None:
            await self._limiter.aacquire(step.route.model, estimate_tokens(request))

    async def __aenter__(self) -> AsyncLiteLLMClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """:meth:`close`, and the connections of the running event loop too."""
        for transport in self._transports.each():
            aclose = getattr(transport, "aclose", None)
            if aclose is not None:
                await aclose()
        self.close()


def _acomplete(transport: Transport, kwargs: dict[str, Any]) -> Awaitable[Any]:
    """What an attempt at a completion sends (a function, not a lambda made per call)."""
    return transport.acomplete(kwargs)
