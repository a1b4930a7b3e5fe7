"""``LiteLLMClient``: the client that blocks; ``AsyncLiteLLMClient`` (``_async_client``) awaits.

Everything but the blocking is ``_ClientCore``'s (``_core``), shared with the async client:
this module runs the retry plan of each call with ``run_sync`` and rate-limits each
attempt in the calling thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any, Literal, overload

from ._conversation import Conversation, resume
from ._core import _ClientCore
from ._embeddings import merge
from ._request import MessagesInput, Request, estimate_tokens
from ._resilience import RetryPlan, Step, run_sync
from ._response import ChatResponse
from ._stream import CompletionStream, Live, open_stream
from ._telemetry import finishing

__all__ = ["LiteLLMClient"]


class LiteLLMClient(_ClientCore):
    """One dependable interface to every LiteLLM model.

    >>> client = LiteLLMClient()  # doctest: +SKIP
    >>> client.generate_completion([Message(role="user", content="Hello!")])  # doctest: +SKIP

    Settings come from ``config`` (a :class:`LiteLLMConfig`) or keyword arguments (any
    of its fields: ``LiteLLMClient(model="gpt-4o", cache=True)``), over ``LITELLM_*``
    variables, over the YAML file, over defaults.  To share state between clients, pass
    the objects as ``cooldowns=``, ``response_cache=``, ``usage_ledger=`` or
    ``rate_limiter=``; ``transports={"native": ..., "litellm": ..., "local": ...}``
    replaces what sends the calls of the routes that take each (see ``transport``).  Each
    call is traced and measured with OpenTelemetry when a ``tracer_provider=`` /
    ``meter_provider=`` is given, or set globally before the client is made
    (docs/observability.md).
    """

    @overload
    def generate_completion(self, messages: MessagesInput, model: str | None = None, *,
                            stream: Literal[False] = False, **params: Any) -> ChatResponse: ...

    @overload
    def generate_completion(self, messages: MessagesInput, model: str | None = None, *,
                            stream: Literal[True], **params: Any) -> CompletionStream: ...

    @overload
    def generate_completion(self, messages: MessagesInput, model: str | None = None, *,
                            stream: bool, **params: Any) -> Any: ...

    def generate_completion(
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
    ) -> ChatResponse | CompletionStream:
        """A chat completion (a :class:`ChatResponse`, whatever transport or cache
        answered), or with ``stream=True`` a :class:`CompletionStream` of chunks.

        ``params`` pass through to LiteLLM (temperature, max_tokens, response_format, ...),
        plus ``cache=False`` / ``cache="refresh"``, ``tags=[...]`` and ``user=...``.

        ``response_format=Invoice`` (a pydantic model, dataclass, TypedDict or JSON-schema
        dict) asks for an answer matching its strict JSON schema and validates it:
        ``response.choices[0].message.parsed`` is the ``Invoice`` (None, with
        ``message.refusal`` set, when the model refuses).  An answer that does not validate
        is sent back with what is wrong, up to ``max_repairs`` times, then raises
        ``LLMOutputValidationError``.  A stream's ``partials()`` yields the object as it fills.
        """
        request, key, cached = self._start_completion(messages, model, stream, {
            **params, "functions": functions, "function_call": function_call,
            "tools": tools, "tool_choice": tool_choice})
        if cached is not None:
            return CompletionStream.replay(cached, request) if stream else cached
        with finishing(request.trace):
            plan = self._plan(request)
            if stream:
                return run_sync(plan, lambda step: self._open_stream(request, step, plan, key))
            response = run_sync(plan, lambda step: self._complete(request, step))
            while (follow_up := self._follow_up(request, response)) is not None:
                request = follow_up  # a repair: see _ClientCore._follow_up
                with finishing(request.trace):
                    response = run_sync(self._plan(request), partial(self._complete, request))
            self._recorder.store(key, response)
            return response

    def conversation(self, id: str | None = None, *, model: str | None = None,
                     system: str | None = None) -> Conversation:
        """A new :class:`Conversation` (with ``system`` first), or the logged one ``id``
        resumed from the prompt log, with its history and model (unless ``model``)."""
        return Conversation(self, *resume(self, id, model, system))

    def _complete(self, request: Request, step: Step) -> ChatResponse:
        self._acquire(request, step)
        response, started = self._attempt(request, step, lambda transport, kwargs: transport.complete(kwargs))
        return self._succeeded(request, step, response, started)

    def _open_stream(self, request: Request, step: Step, plan: RetryPlan, key: str | None) -> CompletionStream:
        self._acquire(request, step)
        (iterator, head), started = self._attempt(request, step, open_stream)
        live = Live(self._recorder, self._transports.for_route(step.route), request, step, plan, key, started)
        return CompletionStream(iterator, head, live)

    def generate_embedding(self, input: str | list[str], model: str | None = None,
                           **params: Any) -> ChatResponse:
        """Embeddings for a text or a batch: ``e["data"][i]["embedding"]``.

        With caching on, each text is cached on its own: only new texts are sent.
        """
        request, plan = self._start_embedding(input, model, params)
        fresh = None
        if plan.missing:

            def embed(step: Step) -> ChatResponse:
                self._acquire(request, step)
                response, started = self._attempt(request, step,
                                                  lambda transport, kwargs: transport.embed(kwargs))
                return self._succeeded(request, step, response, started)

            with finishing(request.trace):
                fresh = run_sync(self._plan(request), embed)
        elif request.trace is not None:  # every text was in the cache
            request.trace.returned()
        return merge(request, plan, fresh, self._recorder)

    def generate_completions(self, batch: Iterable[MessagesInput], model: str | None = None, *,
                             concurrency: int = 16, return_exceptions: bool = False,
                             progress: bool = False, **params: Any) -> list[Any]:
        """Many completions at once, at most ``concurrency`` in flight; results in input
        order.  With ``return_exceptions=True`` a failed item's ``LLMError`` takes its
        place instead of being raised."""
        from . import _batch  # asyncio and thread pools: only for batches

        return _batch.run_threads(
            lambda messages: self.generate_completion(messages, model, **params), list(batch),
            concurrency=concurrency, return_exceptions=return_exceptions, progress=progress,
            label="completions")

    def generate_embeddings(self, texts: Sequence[str], model: str | None = None, *,
                            batch_size: int = 128, concurrency: int = 4,
                            return_exceptions: bool = False, progress: bool = False,
                            **params: Any) -> list[Any]:
        """One vector per text, in input order, sent in provider-sized batches of
        ``batch_size``.  With ``return_exceptions=True`` the texts of a failed batch get
        its ``LLMError`` instead of a vector."""
        from . import _batch  # asyncio and thread pools: only for batches

        batches = _batch.chunked(list(texts), batch_size)
        results = _batch.run_threads(
            lambda chunk: self.generate_embedding(list(chunk), model, **params), batches,
            concurrency=concurrency, return_exceptions=return_exceptions, progress=progress,
            label="embeddings")
        return _batch.vectors(batches, results)

    def _acquire(self, request: Request, step: Step) -> None:
        if self._limiter is not None:
            self._limiter.acquire(step.route.model, estimate_tokens(request))

    def __enter__(self) -> LiteLLMClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
