"""``LiteLLMClient``: thin orchestration of one call (``AsyncLiteLLMClient`` awaits the same).

A call goes: prepare the request (``_request``) -> cache lookup -> budget check -> the
retry plan (``_routing``, ``_resilience``: rate limit, one transport call per attempt,
usage recorded per attempt by the ``Recorder``) -> cache store.  Everything except the
I/O itself lives in ``_ClientCore`` and is shared with ``_async_client``; the two differ
only in whether they block or await.  Facts about models come from the ``Catalog``, I/O goes
through the ``Transport``.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, Literal, TypeVar, overload

from ._catalog import Catalog
from ._checks import config_problems
from ._config import LiteLLMConfig
from ._conversation import Conversation, resume
from ._embeddings import EmbeddingPlan, merge, plan_embeddings
from ._exceptions import LLMConfigError, LLMError
from ._litellm import LiteLLMTransport
from ._llama import model_details as local_model_details
from ._pricing import Pricing
from ._recorder import Recorder
from ._request import (
    MessagesInput,
    Request,
    completion_request,
    embedding_request,
    estimate_tokens,
    texts_of,
)
from ._resilience import Cooldowns, RetryPlan, Route, Step, run_sync
from ._response import ChatResponse, ResponseData
from ._routing import (
    attempt_kwargs,
    endpoint_of,
    explained,
    request_routes,
    retry_plan,
    routes_for,
)
from ._stream import AsyncCompletionStream, CompletionStream, Live, open_stream
from ._structured import invalid_answer, output_errors, repair_messages
from ._telemetry import finishing, guarded, open_telemetry
from ._transport import Transport

__all__ = ["LiteLLMClient"]

logger = logging.getLogger("dewey.llm")
T = TypeVar("T")


class _ClientCore:
    """Configuration, caching, accounting and request building shared by both clients."""

    def __init__(
        self,
        config: LiteLLMConfig | None = None,
        *,
        transports: Mapping[str, Transport] | None = None,
        catalog: Catalog | None = None,
        cooldowns: Cooldowns | None = None,
        response_cache: Any = None,
        usage_ledger: Any = None,
        rate_limiter: Any = None,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        **settings: Any,
    ) -> None:
        # Every LiteLLMConfig field is a keyword setting (cache=, track_usage=, ...); the
        # objects injected to share state or in tests have names no setting has.
        if config is not None and settings:
            raise LLMConfigError("pass either config= or keyword settings, not both")
        self.config = LiteLLMConfig.load(config if config is not None else settings)
        # One transport of each kind ("native", "litellm", "local"), made when a route
        # first needs it, unless given in ``transports``: LiteLLM is imported by the first
        # call of a route through it, never for a native or local one.
        self._transports: dict[str, Transport] = dict(transports or {})
        self._transports_lock = threading.Lock()
        self._catalog = catalog or Catalog(local=local_model_details)
        self._cooldowns = cooldowns or Cooldowns(self.config.cooldown_failures,
                                                 self.config.cooldown_seconds)
        self._cache, self._ledger, self._limiter = _resources(self.config, response_cache,
                                                              usage_ledger, rate_limiter)
        # The prompt log lives in the ledger's store, beside the rows that price it.
        self._log = self._ledger if self.config.log else None
        self._recorder = Recorder(catalog=self._catalog, ledger=self._ledger, log=self._log,
                                  cache=self._cache, cache_ttl=self.config.cache_ttl,
                                  pricing=Pricing(self._catalog, self.config.prices))
        self._telemetry = open_telemetry(tracer_provider, meter_provider, self._catalog)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r})"

    # --- public, shared -------------------------------------------------------------------

    @property
    def model(self) -> str:
        """The model calls go to when none is given."""
        return self.config.resolved_model()

    @property
    def total_cost(self) -> float:
        """USD spent by this client so far (cache hits cost nothing)."""
        return self._recorder.total_cost

    def completion_cost(self, response: Any) -> float:
        """USD cost of a response this client returned (0 for a cache hit)."""
        if isinstance(response, CompletionStream | AsyncCompletionStream):
            return response.cost  # 0 until read to the end, and for a broken stream
        return self._recorder.cost_of(response)

    def get_model_details(self, model: str | None = None) -> dict[str, Any]:
        """Context window, prices and capabilities of ``model`` from LiteLLM's map (offline)."""
        return self._catalog.details(model or self.model)

    def usage(self, *, since: float | None = None) -> list[Any]:
        """Spend and tokens by model from the usage ledger, since ``since`` (seconds since
        the epoch, as ``time.time()`` gives) when given."""
        if since is not None and (isinstance(since, bool) or not isinstance(since, int | float)):
            raise LLMConfigError(
                f"since={since!r:.60} is not a time: pass seconds since the epoch, e.g. "
                "since=time.time() - 86400 for the last day (or datetime.timestamp())")
        if self._ledger is None:
            raise LLMConfigError("usage tracking is off: set track_usage: true to record usage")
        return list(self._ledger.summary(by="model", since=since))

    def logs(self, query: str | None = None, *, model: str | None = None,
             since: float | None = None, conversation: str | None = None,
             limit: int | None = 3) -> list[Any]:
        """The logged exchanges (:class:`LoggedResponse`), most recent first: those that
        contain every word of ``query`` (full-text), answered by ``model``, since ``since``
        (seconds since the epoch), in ``conversation``; ``limit=None`` for all of them.
        Each carries its attempts from the usage ledger, and so its cost."""
        if self._log is None:
            raise LLMConfigError("the prompt log is off: set log: true and track_usage: true "
                                 "(and unset DEWEY_LLM_LOG=0)")
        return list(self._log.responses(query=query, model=model, since=since,
                                        conversation=conversation, limit=limit))

    def close(self) -> None:
        """Flush the usage ledger, close the cache, the rate limiter and the connections."""
        # The transports that hold connections have close(); LiteLLM's has none.  One
        # object may serve both kinds (given in ``transports=``): closed once.
        transports = {id(t): t for t in self._transports.values() if hasattr(t, "close")}.values()
        for resource in (self._ledger, self._cache, self._limiter, *transports):
            if resource is None:
                continue
            try:
                resource.close()
            except Exception:  # one failing resource must not keep the others open
                logger.warning("closing %s failed", type(resource).__name__, exc_info=True)

    # --- the start of every call, shared by both clients ------------------------------------

    def _start_completion(self, messages: MessagesInput, model: str | None, stream: bool,
                          params: dict[str, Any]) -> tuple[Request, str | None, ResponseData | None]:
        """Prepare a completion; the cached answer if there is one, else check the budget."""
        request = completion_request(self.config, messages, model, stream, params)
        request.trace = self._telemetry.start(request) if self._telemetry else None
        with guarded(request.trace):
            key, hit = self._recorder.lookup(request, self._endpoint)
            if hit is not None:
                return request, key, hit
            self._recorder.reserve(request, self.config.budget)
        return request, key, None

    def _start_embedding(self, input: str | list[str], model: str | None, params: dict[str, Any]
                         ) -> tuple[Request, EmbeddingPlan]:
        """Prepare embeddings: which texts the cache answers, and the request for the rest."""
        texts = texts_of(input)
        request = embedding_request(self.config, texts, model, params)
        request.trace = self._telemetry.start(request) if self._telemetry else None
        with guarded(request.trace):
            endpoint = self._endpoint(request) if self._cache is not None else None
            plan = plan_embeddings(texts, request, self._cache, endpoint)
            if plan.missing:
                subset = [texts[i] for i in plan.missing]
                single = isinstance(input, str) and len(subset) == 1
                request.payload = {**params, "input": subset[0] if single else subset}
                self._recorder.reserve(request, self.config.budget)
        return request, plan

    def _endpoint(self, request: Request) -> str | None:
        """The server ``request`` goes to, for its cache keys."""
        return endpoint_of(self.config, request, self._catalog)

    def _plan(self, request: Request) -> RetryPlan:
        request.routes = request_routes(self.config, request, self._catalog)
        # Loading LiteLLM takes seconds: not part of the first attempt's latency or the
        # call's deadline (a fallback through LiteLLM loads it when it is reached).
        self._load(self._transport(request.routes[0]))
        plan = retry_plan(self.config, request, self._cooldowns, self._catalog)
        if request.trace is not None:
            request.trace.plan = plan  # whose history has the wait before each attempt
        return plan

    def _transport(self, route: Route) -> Transport:
        """The transport that sends ``route``'s calls, made on first use."""
        transport = self._transports.get(route.transport)
        if transport is None:
            with self._transports_lock:
                transport = self._transports.get(route.transport)
                if transport is None:
                    transport = self._transports[route.transport] = _new_transport(route.transport)
        return transport

    @staticmethod
    def _load(transport: Transport) -> None:
        load = getattr(transport, "load", None)
        if load is not None:
            load()

    # --- one attempt, shared by sync and async ------------------------------------------------

    def _begin(self, request: Request, step: Step) -> Transport:
        """What every attempt does before sending: its transport (LiteLLM loaded if that is
        the one), the budget hold, the trace's attempt span."""
        transport = self._transport(step.route)
        self._load(transport)
        self._recorder.hold(request)
        if request.trace is not None:
            request.trace.attempt_started(step)
        return transport

    def _attempt(self, request: Request, step: Step,
                 send: Callable[[Transport, dict[str, Any]], T]) -> tuple[T, float]:
        """``send`` the step's arguments through its transport; the result and when the
        attempt started."""
        transport = self._begin(request, step)
        started = time.monotonic()
        try:
            return send(transport, attempt_kwargs(request, step, self._catalog)), started
        except LLMError as error:
            self._failed(request, step, error, started)
            raise
        except KeyboardInterrupt:  # Ctrl-C: the provider may still charge for the request
            self._recorder.abandoned(request, step, time.monotonic() - started)
            raise

    async def _aattempt(self, request: Request, step: Step,
                        send: Callable[[Transport, dict[str, Any]], Awaitable[T]]) -> tuple[T, float]:
        """:meth:`_attempt`, awaited."""
        import asyncio  # here, not at the top: a sync process (the CLI) does not pay its import

        transport = self._begin(request, step)
        started = time.monotonic()
        try:
            return await send(transport, attempt_kwargs(request, step, self._catalog)), started
        except LLMError as error:
            self._failed(request, step, error, started)
            raise
        except (KeyboardInterrupt, asyncio.CancelledError):  # the provider may still charge
            self._recorder.abandoned(request, step, time.monotonic() - started)
            raise

    def _failed(self, request: Request, step: Step, error: LLMError, started: float) -> None:
        explained(error, step.route, self.config, self._catalog)
        self._recorder.failed(request, step, error, time.monotonic() - started)

    def _succeeded(self, request: Request, step: Step, response: Any, started: float) -> ChatResponse:
        # Every transport answers with a ChatResponse (LiteLLM's is converted at its boundary).
        answer: ChatResponse = self._recorder.succeeded(request, step, response, time.monotonic() - started)
        return answer

    def _follow_up(self, request: Request, response: ChatResponse) -> Request | None:
        """The call that repairs a structured answer that did not validate (None: it did),
        or ``LLMOutputValidationError`` once ``max_repairs`` follow-ups have been made.

        Not a retry: the answer arrived, was paid for and is in the ledger (its outcome
        ``LLMOutputValidationError``).  The follow-up is a new call, with its own retry
        plan and ledger row, whose conversation holds that answer and what is wrong with
        it, so that the model corrects it rather than tries its luck again."""
        errors = output_errors(response)
        if request.output is None or not errors:
            return None
        if request.repairs >= self.config.max_repairs:
            tries = request.repairs + 1
            raise invalid_answer(request.model, request.output, response, errors,
                                 f"{tries} {'try' if tries == 1 else 'tries'}, "
                                 f"max_repairs={self.config.max_repairs}")
        messages = repair_messages(request.messages, response, errors)
        follow_up = dataclasses.replace(
            request, payload={**request.payload, "messages": messages}, messages=messages,
            repairs=request.repairs + 1, routes=[], estimate=0.0, hold=None, trace=None)
        follow_up.trace = self._telemetry.start(follow_up) if self._telemetry else None
        with guarded(follow_up.trace):
            self._recorder.reserve(follow_up, self.config.budget)
        return follow_up

    # --- checking the configuration (``dewey-llm config check``) -------------------------------

    def check(self) -> list[LLMError]:
        """What would stop a call, or make its record wrong (``_checks``).  Nothing is sent."""
        return config_problems(self.config, self.model, self._catalog, self._recorder.pricing)

    def transports(self, model: str | None = None) -> dict[str, str]:
        """Which transport (``native``, ``litellm`` or ``local``) ``model`` (default: the client's)
        and each fallback take, by model name.  Nothing is sent; LiteLLM is not loaded."""
        chosen = model or self.model
        routes = routes_for(self.config, chosen, self._catalog)
        shown = {chosen: routes[0].transport}  # under the name asked for, qualified or not
        shown.update((route.model, route.transport) for route in routes[1:])
        return shown


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
        live = Live(self._recorder, self._transport(step.route), request, step, plan, key, started)
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


def _new_transport(name: str) -> Transport:
    """A transport by its route name."""
    if name == "native":
        from ._native import NativeTransport  # httpx: imported for the first native call

        return NativeTransport()
    if name == "local":
        from ._local_transport import LocalTransport

        return LocalTransport()
    return LiteLLMTransport()


def _resources(config: LiteLLMConfig, cache: Any, ledger: Any, limiter: Any) -> tuple[Any, Any, Any]:
    """The cache, ledger and rate limiter: those given, else those the config asks for."""
    if cache is None and config.cache:
        from ._cache import open_cache

        cache = open_cache(config.cache, config.cache_url, max_entries=config.cache_max_entries)
    if ledger is None and config.track_usage:
        from ._usage import open_ledger

        ledger = open_ledger(config.usage_db, retention_days=config.usage_retention_days)
    if limiter is None and config.rate_limits:
        from ._ratelimit import open_limiter

        limiter = open_limiter(config.rate_limits, config.rate_limit_url)
    return cache, ledger, limiter
