"""``_ClientCore``: all of a call but its I/O, shared by ``LiteLLMClient`` and ``AsyncLiteLLMClient``.

A call goes: prepare the request (``_request``) -> cache lookup -> budget check -> the
retry plan (``_routing``, ``_resilience``: rate limit, one transport call per attempt,
usage recorded per attempt by the ``Recorder``) -> cache store.  Everything except the
I/O itself lives here; the two clients (``_client``, ``_async_client``) differ only in
whether they block or await.  Facts about models come from the ``Catalog``, I/O goes
through the ``Transport``s, which a client holds with its cache, ledger and rate limiter
(``_resources``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from ._catalog import Catalog
from ._checks import config_problems
from ._config import LiteLLMConfig
from ._embeddings import EmbeddingPlan, plan_embeddings
from ._exceptions import LLMConfigError, LLMError
from ._llama import model_details as local_model_details
from ._pricing import Pricing
from ._recorder import Recorder
from ._repair import repair_request
from ._request import MessagesInput, Request, completion_request, embedding_request, texts_of
from ._resilience import Cooldowns, RetryPlan, Step
from ._resources import Transports, close_each, open_resources
from ._response import ChatResponse, ResponseData
from ._routing import attempt_kwargs, endpoint_of, explained, request_routes, retry_plan, routes_for
from ._stream import AsyncCompletionStream, CompletionStream
from ._structured import OutputSchemas
from ._telemetry import guarded, open_telemetry
from ._transport import Transport

__all__ = ["_ClientCore"]

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
        self._transports = Transports(transports)  # each made when a route first needs it
        self._catalog = catalog or Catalog(local=local_model_details)
        self._cooldowns = cooldowns or Cooldowns(self.config.cooldown_failures,
                                                 self.config.cooldown_seconds)
        self._cache, self._ledger, self._limiter = open_resources(self.config, response_cache,
                                                                  usage_ledger, rate_limiter)
        # The prompt log lives in the ledger's store, beside the rows that price it.
        self._log = self._ledger if self.config.log else None
        self._recorder = Recorder(catalog=self._catalog, ledger=self._ledger, log=self._log,
                                  cache=self._cache, cache_ttl=self.config.cache_ttl,
                                  pricing=Pricing(self._catalog, self.config.prices))
        self._telemetry = open_telemetry(tracer_provider, meter_provider, self._catalog)
        self._schemas = OutputSchemas()  # response_format=Model: its schema built once

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
        # The transports that hold connections have close(); LiteLLM's has none.
        close_each(self._ledger, self._cache, self._limiter,
                   *(transport for transport in self._transports.each() if hasattr(transport, "close")))

    # --- the start of every call, shared by both clients ------------------------------------

    def _start_completion(self, messages: MessagesInput, model: str | None, stream: bool,
                          params: dict[str, Any]) -> tuple[Request, str | None, ResponseData | None]:
        """Prepare a completion; the cached answer if there is one, else check the budget."""
        request = completion_request(self.config, messages, model, stream, params, self._schemas)
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
        self._transports.loaded(request.routes[0])
        plan = retry_plan(self.config, request, self._cooldowns, self._catalog)
        if request.trace is not None:
            request.trace.plan = plan  # whose history has the wait before each attempt
        return plan

    # --- one attempt, shared by sync and async ------------------------------------------------

    def _begin(self, request: Request, step: Step) -> Transport:
        """What every attempt does before sending: its transport (LiteLLM loaded if that is
        the one), the budget hold, the trace's attempt span."""
        transport = self._transports.loaded(step.route)
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
        """The call that repairs a structured answer that did not validate (``_repair``),
        its budget reserved; None when the answer validated."""
        follow_up = repair_request(request, response, self.config.max_repairs)
        if follow_up is not None:
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
