"""``LiteLLMClient`` and ``AsyncLiteLLMClient``: thin orchestration.

A call goes: prepare the request -> cache lookup -> budget check -> the retry plan
(rate limit, one LiteLLM call per attempt, usage recorded per attempt) -> cache store.
Everything except the I/O itself lives in ``_ClientCore`` and is shared by both
clients; they differ only in whether they block or await.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ._backend import Backend
from ._config import FallbackModel, LiteLLMConfig, qualify_model
from ._exceptions import (
    LLMAuthenticationError,
    LLMConfigError,
    LLMConnectionError,
    LLMError,
    LLMResponseError,
    LLMTimeoutError,
)
from ._messages import Message, to_dicts
from ._resilience import Cooldowns, Policy, RetryPlan, Route, Try, run_async, run_sync
from ._response import ResponseData, as_dict, cached_response, usage_counts
from ._sendable import check_sendable
from ._stream import AsyncCompletionStream, CompletionStream
from ._tools import normalize_functions, normalize_tool_choice, normalize_tools

__all__ = ["AsyncLiteLLMClient", "LiteLLMClient"]

logger = logging.getLogger("dewey.llm")

CacheMode = bool | Literal["refresh"] | None
_COST_FIELD = "_dewey_cost_usd"
_ANSWER_TOKENS = 1024  # what a reservation assumes an answer costs when max_tokens is not set
MessagesInput = Iterable[Message | Mapping[str, Any]] | str


@dataclass
class Request:
    """One prepared call: what to send, where, and how to account for it."""

    kind: Literal["completion", "stream", "embedding"]
    model: str
    payload: dict[str, Any]  # model-independent arguments: messages/input and parameters
    cache: CacheMode
    tags: tuple[str, ...] = ()
    user: str | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)  # resolved when a call is needed
    estimate: float = 0.0  # USD held against budgets while an attempt is in flight
    hold: str | None = None  # the ledger reservation of the attempt in flight

    def cache_request(self) -> dict[str, Any]:
        return {"model": self.model, **self.payload}


class _ClientCore:
    """Configuration, caching, accounting and request building shared by both clients."""

    def __init__(
        self,
        config: LiteLLMConfig | None = None,
        *,
        backend: Backend | None = None,
        cooldowns: Cooldowns | None = None,
        response_cache: Any = None,
        usage_ledger: Any = None,
        rate_limiter: Any = None,
        **settings: Any,
    ) -> None:
        # Every LiteLLMConfig field is a keyword setting (cache=, track_usage=, ...); the
        # objects injected to share state or in tests have names no setting has.
        if config is not None and settings:
            raise LLMConfigError("pass either config= or keyword settings, not both")
        self.config = LiteLLMConfig.load(config if config is not None else settings)
        self._backend = backend or Backend()
        self._cooldowns = cooldowns or Cooldowns(self.config.cooldown_failures,
                                                 self.config.cooldown_seconds)
        self._cache = response_cache if response_cache is not None else _open_cache(self.config)
        self._ledger = usage_ledger if usage_ledger is not None else _open_ledger(self.config)
        self._limiter = rate_limiter if rate_limiter is not None else _open_limiter(self.config)
        self._cost_lock = threading.Lock()
        self._total_cost = 0.0
        self._providers: dict[tuple[str, str | None], str | None] = {}

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
        return self._total_cost

    def completion_cost(self, response: Any) -> float:
        """USD cost of a response this client returned (0 for a cache hit)."""
        if isinstance(response, CompletionStream | AsyncCompletionStream):
            return response.cost  # 0 until read to the end, and for a broken stream
        hidden = getattr(response, "_hidden_params", None) or {}
        if hidden.get("cache_hit"):
            return 0.0
        if "dewey_cost" in hidden:
            return float(hidden["dewey_cost"])
        return self._backend.cost(response)

    def get_model_details(self, model: str | None = None) -> dict[str, Any]:
        """Context window, prices and capabilities of ``model`` from LiteLLM's map (offline)."""
        return self._backend.model_details(model or self.model)

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

    def close(self) -> None:
        """Flush the usage ledger and close the cache and the rate limiter."""
        for resource in (self._ledger, self._cache, self._limiter):
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
        request = self._prepare_completion(messages, model, stream, params)
        key = self._cache_key(request)
        hit = self._cached(request, key)
        if hit is not None:
            return request, key, self._hit(request, hit)
        self._check_budget(request)
        return request, key, None

    def _start_embedding(self, input: str | list[str], model: str | None, params: dict[str, Any]
                         ) -> tuple[Request, list[str], list[Any], list[int], list[str | None]]:
        """Prepare embeddings: which texts the cache answers, and the request for the rest."""
        texts = _texts(input)
        request = self._prepare_embedding(texts, model, params)
        found, missing, keys = self._embedding_plan(texts, request)
        if missing:
            subset = [texts[i] for i in missing]
            single = isinstance(input, str) and len(subset) == 1
            request.payload = {**params, "input": subset[0] if single else subset}
            self._check_budget(request)
        return request, texts, found, missing, keys

    # --- preparing requests -----------------------------------------------------------------

    def _prepare_completion(
        self, messages: MessagesInput, model: str | None, stream: bool, params: dict[str, Any]
    ) -> Request:
        cache = params.pop("cache", None)
        tags = _tags(params.pop("tags", ()))
        user = params.get("user")
        params["functions"] = normalize_functions(params.get("functions"))
        params["tools"] = normalize_tools(params.get("tools"))
        for name in ("tool_choice", "function_call"):
            if params.get(name) is not None:
                params[name] = normalize_tool_choice(params[name])
        dicts = to_dicts(messages)
        payload = {**self.config.params, "messages": dicts,
                   **{k: v for k, v in params.items() if v is not None}}
        check_sendable(payload)
        chosen = _model_name(model) or self.model
        return Request("stream" if stream else "completion", chosen, payload, cache, tags,
                       user, dicts)

    def _prepare_embedding(self, texts: list[str], model: str | None,
                           params: dict[str, Any]) -> Request:
        cache = params.pop("cache", None)
        tags = _tags(params.pop("tags", ()))
        check_sendable({**params, "input": texts})
        chosen = (_model_name(model) or self.config.embedding_model
                  or _default_embedding_model(self.model))
        return Request("embedding", chosen, params, cache, tags, params.get("user"))

    def _routes(self, model: str) -> list[Route]:
        routes = [self._route(model)]
        for fallback in self.config.fallback_models:
            route = self._route(fallback) if isinstance(fallback, str) else _route_of(fallback)
            if route not in routes:
                routes.append(route)
        return routes

    def _route(self, model: str) -> Route:
        """Credentials for a model named by string: the configured ones when it is the
        configured model or served by the same provider (e.g. through the same proxy)."""
        config = self.config
        model = qualify_model(model)
        if config.api_key is None and config.api_base is None:
            return Route(model)
        primary = qualify_model(config.model) if config.model else None
        if primary is not None and model != primary and self._provider(model) != self._provider(primary):
            return Route(model)
        key = config.api_key.get_secret_value() if config.api_key else None
        return Route(model, key, config.api_base, config.api_version)

    def _provider(self, model: str, api_base: str | None = None) -> str | None:
        key = (model, api_base)
        if key not in self._providers:
            self._providers[key] = self._backend.provider(model, api_base)
        return self._providers[key]

    def _plan(self, request: Request) -> RetryPlan:
        # Loading LiteLLM takes seconds: not part of any attempt's latency or deadline.
        self._backend.load()
        config = self.config
        # Vectors from different models are not comparable: embeddings never fall back.
        request.routes = ([self._route(request.model)] if request.kind == "embedding"
                          else self._routes(request.model))
        policy = Policy(max_retries=config.max_retries, timeout=config.timeout,
                        deadline=config.deadline, backoff_base=config.backoff_base,
                        backoff_max=config.backoff_max, max_retry_after=config.max_retry_after)
        return RetryPlan(request.routes, policy, self._cooldowns, self._backend.context_window)

    def _kwargs(self, request: Request, attempt: Try) -> dict[str, Any]:
        """Arguments for one LiteLLM call: the SDK's own retries off, ours only."""
        route = attempt.route
        if self._provider(route.model, route.api_base) is None:
            raise self._backend.unknown_model_error(route.model)
        if route.api_key is None:
            missing = self._backend.missing_key_error(route.model, route.api_base)
            if missing is not None:
                raise missing
        kwargs: dict[str, Any] = {**request.payload, "model": route.model,
                                  "timeout": attempt.timeout, "max_retries": 0}
        for name in ("api_key", "api_base", "api_version"):
            value = getattr(route, name)
            if value is not None:
                kwargs[name] = value
        if request.kind == "stream" and "stream_options" not in kwargs and (
            self._backend.supports_stream_usage(self._provider(route.model, route.api_base))
        ):
            kwargs["stream_options"] = {"include_usage": True}
        return kwargs

    # --- caching -----------------------------------------------------------------------------

    def _cache_key(self, request: Request) -> str | None:
        _check_cache_mode(request.cache)
        if self._cache is None or request.cache is False:
            return None
        from ._cache import completion_key

        try:
            return completion_key(request.cache_request(), endpoint=self._endpoint(request))
        except LLMConfigError as exc:
            # A parameter that is not plain data cannot be keyed safely: call uncached.
            logger.info("not caching this call: %s", exc)
            return None

    def _endpoint(self, request: Request) -> str | None:
        """The server the call goes to, for its cache key: one name can mean different
        models (and answers) on two servers.  As in ``_kwargs``, the route's api_base wins
        over one given per call; the route is only worked out (which may load LiteLLM, for
        another model than the configured one) when there is a configured api_base."""
        routed = self._route(request.model).api_base if self.config.api_base else None
        return routed or request.payload.get("api_base") or request.payload.get("base_url")

    def _cached(self, request: Request, key: str | None) -> dict[str, Any] | None:
        if key is None or request.cache == "refresh":
            return None
        return self._cache.get(key)

    def _store(self, key: str | None, response: Any) -> None:
        if key is not None:
            # The original cost travels with the entry: a hit reports what it saved
            # without loading LiteLLM to price it.
            entry = {**as_dict(response), _COST_FIELD: self.completion_cost(response)}
            self._cache.set(key, entry, self.config.cache_ttl)

    def _hit(self, request: Request, data: dict[str, Any]) -> ResponseData:
        saved = float(data.pop(_COST_FIELD, 0.0) or 0.0)
        self._record(request, None, "ok", response=data, cache_hit=True, saved=saved)
        return cached_response(data)

    # --- accounting ---------------------------------------------------------------------------

    def _check_budget(self, request: Request) -> None:
        if self._ledger is None:
            return
        budget = self.config.budget
        if budget.daily_usd is None and budget.monthly_usd is None and budget.total_usd is None:
            return
        from ._usage import check_budget

        # Priced before the check and held in the ledger while the call is in flight, so
        # that concurrent calls (threads and processes) see it: about 4 characters a
        # prompt token, and the longest answer allowed.
        payload = request.payload
        answer = 0 if request.kind == "embedding" else int(
            payload.get("max_tokens") or payload.get("max_completion_tokens") or _ANSWER_TOKENS)
        request.estimate = self._backend.token_cost(
            qualify_model(request.model), _estimate_tokens(request, answer=0), answer)
        request.hold = check_budget(self._ledger, budget, reserve=request.estimate)

    def _hold(self, request: Request) -> None:
        """Reserve again for an attempt after one that failed (its record settled the hold)."""
        if request.estimate and request.hold is None and self._ledger is not None:
            request.hold = self._ledger.reserve(request.estimate)

    def _succeeded(self, request: Request, attempt: Try, response: Any, latency: float, *,
                   cost: float | None = None) -> Any:
        kind = "embedding" if request.kind == "embedding" else "completion"
        if cost is None:
            cost = self._backend.cost(response, attempt.route.model, kind)
        hidden = getattr(response, "_hidden_params", None)
        if isinstance(hidden, dict):
            hidden["dewey_cost"] = cost
            hidden.setdefault("cache_hit", False)
        with self._cost_lock:
            self._total_cost += cost
        self._record(request, attempt, "ok", response=response, cost=cost, latency=latency)
        return response

    def _explained(self, error: LLMError, route: Route) -> LLMError:
        """``error``, its message naming where a rejected key came from or which address
        could not be reached: the two things a user has to check first."""
        if isinstance(error, LLMAuthenticationError) and error.status_code is not None:
            hint = f"the API key came from {self._key_source(route)}"
        elif isinstance(error, LLMConnectionError) and not isinstance(error, LLMTimeoutError):
            url = route.api_base or self._backend.default_api_base(route.model)
            hint = f"could not reach {url}" if url else ""
        else:
            hint = ""
        if hint and hint not in error.message:
            error.message = f"{error.message} ({hint})"
            error.args = (error.message,)
        return error

    def _key_source(self, route: Route) -> str:
        config = self.config
        if route.api_key is None:
            variable = self._backend.key_variable(route.model)
            return f"the environment ({variable})" if variable else "the environment"
        if config.api_key is not None and route.api_key == config.api_key.get_secret_value():
            return f"api_key ({config.sources['api_key']})"
        return f"the fallback's api_key in fallback_models ({config.sources['fallback_models']})"

    def _failed(self, request: Request, attempt: Try, error: LLMError, latency: float) -> None:
        self._record(request, attempt, type(error).__name__, latency=latency,
                     status=error.status_code)

    def _record(self, request: Request, attempt: Try | None, outcome: str, *,
                response: Any = None, cost: float = 0.0, saved: float = 0.0,
                latency: float = 0.0, cache_hit: bool = False, status: int | None = None) -> None:
        if self._ledger is None:
            return
        from ._usage import UsageRecord

        usage = usage_counts(response)
        # A cache hit names the model as the call did: qualify it like a route, so that it
        # adds up with the calls that reached that model.
        route = attempt.route if attempt else Route(qualify_model(request.model))
        settles, request.hold = request.hold, None
        self._ledger.record(UsageRecord(
            model=route.model, provider=self._provider(route.model, route.api_base) if _loaded() else None,
            kind=request.kind, outcome=outcome, prompt_tokens=usage[0],
            completion_tokens=usage[1], cached_tokens=usage[2], cost_usd=cost, saved_usd=saved,
            latency_s=latency, cache_hit=cache_hit, status_code=status,
            attempt=attempt.number if attempt else 1, tags=request.tags, user=request.user),
            settles=settles)

    # --- one attempt, shared by sync and async ------------------------------------------------

    def _attempt(self, request: Request, attempt: Try,
                 send: Callable[[dict[str, Any]], Any]) -> Any:
        self._hold(request)
        started = time.monotonic()
        try:
            return send(self._kwargs(request, attempt)), started
        except LLMError as error:
            self._failed(request, attempt, self._explained(error, attempt.route),
                         time.monotonic() - started)
            raise
        except KeyboardInterrupt:  # Ctrl-C: the provider may still charge for the request
            self._record(request, attempt, "abandoned", latency=time.monotonic() - started)
            raise

    def _embedding_plan(self, texts: list[str], request: Request) -> tuple[list[Any], list[int], list[str | None]]:
        """Per-text cache lookups: the vectors found, and which inputs still need a call."""
        _check_cache_mode(request.cache)
        keys: list[str | None] = [None] * len(texts)
        found: list[Any] = [None] * len(texts)
        if self._cache is not None and request.cache is not False:
            from ._cache import embedding_key

            try:
                endpoint = self._endpoint(request)
                keys = [embedding_key(request.model, text, request.payload, endpoint=endpoint)
                        for text in texts]
            except LLMConfigError as exc:
                # As for completions: a parameter that is not plain data is called uncached.
                logger.info("not caching this call: %s", exc)
            if request.cache != "refresh" and keys[0] is not None:
                hits = self._cache.get_many([k for k in keys if k is not None])
                found = [hits.get(k) if k else None for k in keys]
        missing = [i for i, item in enumerate(found) if item is None]
        return found, missing, keys

    def _merge_embeddings(self, request: Request, texts: list[str], found: list[Any],
                          missing: list[int], keys: list[str | None], fresh: Any) -> Any:
        vectors = _vectors(request, fresh, len(missing)) if fresh is not None else []
        if fresh is not None:
            self._store_embeddings(fresh, vectors, missing, keys)
            if len(missing) == len(texts):
                return fresh
        # Texts the cache answered: recorded as one hit, with what they cost when computed.
        saved = sum(float(entry.get(_COST_FIELD) or 0.0) for entry in found if entry is not None)
        self._record(request, None, "ok", cache_hit=True, saved=saved)
        for vector, index in zip(vectors, missing, strict=True):
            found[index] = {"embedding": vector}
        data = [{"object": "embedding", "index": i, "embedding": entry["embedding"]}
                for i, entry in enumerate(found)]
        usage = usage_counts(fresh)
        response = ResponseData({"object": "list", "model": request.model, "data": data,
                                 "usage": {"prompt_tokens": usage[0], "total_tokens": usage[0]}})
        cost = self.completion_cost(fresh) if fresh is not None else 0.0
        object.__setattr__(response, "_hidden_params",
                           {"cache_hit": fresh is None, "response_cost": cost, "dewey_cost": cost})
        return response

    def _store_embeddings(self, fresh: Any, vectors: list[list[float]], missing: list[int],
                          keys: list[str | None]) -> None:
        if self._cache is None:
            return
        share = self.completion_cost(fresh) / max(1, len(missing))  # each vector's part of the cost
        items = {keys[index]: {"embedding": vector, _COST_FIELD: share}
                 for vector, index in zip(vectors, missing, strict=True)
                 if keys[index] is not None}
        if items:
            self._cache.set_many(items, self.config.cache_ttl)


class LiteLLMClient(_ClientCore):
    """One dependable interface to every LiteLLM model.

    >>> client = LiteLLMClient()  # doctest: +SKIP
    >>> client.generate_completion([Message(role="user", content="Hello!")])  # doctest: +SKIP

    Settings come from ``config`` (a :class:`LiteLLMConfig`) or keyword arguments (any
    of its fields: ``LiteLLMClient(model="gpt-4o", cache=True)``), over ``LITELLM_*``
    variables, over the YAML file, over defaults.  To share state between clients, pass
    the objects as ``cooldowns=``, ``response_cache=``, ``usage_ledger=`` or
    ``rate_limiter=``.
    """

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
    ) -> Any:
        """A chat completion (LiteLLM's ``ModelResponse``), or an iterator of chunks.

        ``params`` pass through to LiteLLM (temperature, max_tokens, response_format, ...),
        plus ``cache=False`` / ``cache="refresh"``, ``tags=[...]`` and ``user=...``.
        """
        request, key, cached = self._start_completion(messages, model, stream, {
            **params, "functions": functions, "function_call": function_call,
            "tools": tools, "tool_choice": tool_choice})
        if cached is not None:
            return CompletionStream.replay(cached, request) if stream else cached
        if stream:
            return self._stream(request, key)
        response = run_sync(self._plan(request), lambda attempt: self._complete(request, attempt))
        self._store(key, response)
        return response

    def _complete(self, request: Request, attempt: Try) -> Any:
        self._acquire(request, attempt)
        response, started = self._attempt(request, attempt, self._backend.complete)
        return self._succeeded(request, attempt, response, time.monotonic() - started)

    def _stream(self, request: Request, key: str | None) -> CompletionStream:
        plan = self._plan(request)

        def open_stream(attempt: Try) -> CompletionStream:
            self._acquire(request, attempt)
            (iterator, head), started = self._attempt(request, attempt, self._backend.open_stream)
            return CompletionStream(self, request, attempt, iterator, head, started, key, plan.deadline)

        return run_sync(plan, open_stream)

    def generate_embedding(self, input: str | list[str], model: str | None = None,
                           **params: Any) -> Any:
        """Embeddings for a text or a batch: ``e["data"][i]["embedding"]``.

        With caching on, each text is cached on its own: only new texts are sent.
        """
        request, texts, found, missing, keys = self._start_embedding(input, model, params)
        fresh = None
        if missing:

            def embed(attempt: Try) -> Any:
                self._acquire(request, attempt)
                response, started = self._attempt(request, attempt, self._backend.embed)
                return self._succeeded(request, attempt, response, time.monotonic() - started)

            fresh = run_sync(self._plan(request), embed)
        return self._merge_embeddings(request, texts, found, missing, keys, fresh)

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

    def _acquire(self, request: Request, attempt: Try) -> None:
        if self._limiter is not None:
            self._limiter.acquire(attempt.route.model, _estimate_tokens(request))

    def __enter__(self) -> LiteLLMClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class AsyncLiteLLMClient(_ClientCore):
    """:class:`LiteLLMClient` for asyncio: the same API, awaited."""

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
    ) -> Any:
        """See :meth:`LiteLLMClient.generate_completion`; with ``stream=True`` this returns
        an async iterator of chunks."""
        request, key, cached = self._start_completion(messages, model, stream, {
            **params, "functions": functions, "function_call": function_call,
            "tools": tools, "tool_choice": tool_choice})
        if cached is not None:
            return AsyncCompletionStream.replay(cached, request) if stream else cached
        if stream:
            plan = self._plan(request)
            return await run_async(plan, lambda attempt: self._open_stream(request, attempt, key,
                                                                            plan.deadline))
        response = await run_async(self._plan(request),
                                   lambda attempt: self._complete(request, attempt))
        self._store(key, response)
        return response

    async def _complete(self, request: Request, attempt: Try) -> Any:
        await self._aacquire(request, attempt)
        response, started = await self._aattempt(request, attempt, self._backend.acomplete)
        return self._succeeded(request, attempt, response, time.monotonic() - started)

    async def _open_stream(self, request: Request, attempt: Try, key: str | None,
                           deadline: float | None) -> AsyncCompletionStream:
        await self._aacquire(request, attempt)
        (iterator, head), started = await self._aattempt(request, attempt, self._backend.aopen_stream)
        return AsyncCompletionStream(self, request, attempt, iterator, head, started, key, deadline)

    async def generate_embedding(self, input: str | list[str], model: str | None = None,
                                 **params: Any) -> Any:
        """See :meth:`LiteLLMClient.generate_embedding`."""
        request, texts, found, missing, keys = self._start_embedding(input, model, params)
        fresh = None
        if missing:

            async def embed(attempt: Try) -> Any:
                await self._aacquire(request, attempt)
                response, started = await self._aattempt(request, attempt, self._backend.aembed)
                return self._succeeded(request, attempt, response, time.monotonic() - started)

            fresh = await run_async(self._plan(request), embed)
        return self._merge_embeddings(request, texts, found, missing, keys, fresh)

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

    async def _aattempt(self, request: Request, attempt: Try,
                        send: Callable[[dict[str, Any]], Awaitable[Any]]) -> Any:
        self._hold(request)
        started = time.monotonic()
        try:
            return await send(self._kwargs(request, attempt)), started
        except LLMError as error:
            self._failed(request, attempt, self._explained(error, attempt.route),
                         time.monotonic() - started)
            raise
        except (KeyboardInterrupt, asyncio.CancelledError):  # the provider may still charge
            self._record(request, attempt, "abandoned", latency=time.monotonic() - started)
            raise

    async def _aacquire(self, request: Request, attempt: Try) -> None:
        if self._limiter is not None:
            await self._limiter.aacquire(attempt.route.model, _estimate_tokens(request))

    async def __aenter__(self) -> AsyncLiteLLMClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        self.close()


# --- small helpers ------------------------------------------------------------------------

def _loaded() -> bool:
    from ._backend import is_loaded

    return is_loaded()


def _model_name(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise LLMConfigError(
        f"model={value!r:.60} is a {type(value).__name__}, not a model name: pass a string "
        "such as 'gpt-4o-mini' or 'anthropic/claude-haiku-4-5' (or leave it out for the "
        "configured model)")


def _tags(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple | set | frozenset) and all(isinstance(t, str) for t in value):
        return tuple(value)
    raise LLMConfigError(
        f"tags={value!r:.60} is not a list of strings: pass tags=['nightly', 'eval'] "
        "(or one tag as a string)")


def _check_cache_mode(value: Any) -> None:
    """A per-call ``cache=`` other than True, False or "refresh" is a mistake (a typo of
    "refresh", the string "false"): refuse it rather than read the cache anyway."""
    if value is not None and value is not True and value is not False and value != "refresh":
        raise LLMConfigError(
            f"cache={value!r} is not a cache mode: pass cache=True, cache=False (neither read "
            "nor write the cache) or cache='refresh' (call, then overwrite the entry)")


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return value
    raise LLMConfigError("generate_embedding takes a string or a non-empty list of strings")


def _route_of(fallback: FallbackModel) -> Route:
    key = fallback.api_key.get_secret_value() if fallback.api_key else None
    return Route(qualify_model(fallback.model), key, fallback.api_base, fallback.api_version, fallback.timeout)


def _default_embedding_model(chat_model: str) -> str:
    if chat_model.startswith("local/"):
        return chat_model
    if chat_model.startswith(("gpt-", "o1", "o3", "o4", "openai/")):
        return "text-embedding-3-small"
    raise LLMConfigError(
        f"no embedding model is configured for {chat_model}: set embedding_model "
        "(e.g. text-embedding-3-small, or local/smollm2 to embed offline)")


def _embedding_items(response: Any) -> list[list[float]]:
    data = response["data"] if isinstance(response, dict) else response.data
    ordered = sorted(data, key=lambda item: item["index"] if isinstance(item, dict) else item.index)
    return [item["embedding"] if isinstance(item, dict) else item.embedding for item in ordered]


def _vectors(request: Request, response: Any, expected: int) -> list[list[float]]:
    """The response's vectors in input order, one per text sent, or an error: a vector
    matched to the wrong text would be silently wrong (and cached)."""
    vectors = _embedding_items(response)
    if len(vectors) != expected:
        raise LLMResponseError(
            f"{request.model} returned {len(vectors)} embeddings for {expected} texts: the "
            "provider dropped (or added) some, so none can be matched to its text and "
            "nothing was cached; retry, or send smaller batches (batch_size)",
            model=request.model)
    return vectors


def _estimate_tokens(request: Request, answer: int | None = None) -> int:
    """A cheap token estimate for rate limiting (about 4 characters a token), with
    ``answer`` tokens for the answer (default: max_tokens, else 256)."""
    payload = request.payload
    text = json.dumps(payload.get("messages") or payload.get("input") or "", default=str)
    if answer is None:
        answer = int(payload.get("max_tokens") or 256)
    return len(text) // 4 + answer


def _open_cache(config: LiteLLMConfig) -> Any:
    if not config.cache:
        return None
    from ._cache import open_cache

    return open_cache(config.cache, config.cache_url)


def _open_ledger(config: LiteLLMConfig) -> Any:
    if not config.track_usage:
        return None
    from ._usage import open_ledger

    return open_ledger(config.usage_db)


def _open_limiter(config: LiteLLMConfig) -> Any:
    if not config.rate_limits:
        return None
    from ._ratelimit import open_limiter

    return open_limiter(config.rate_limits, config.rate_limit_url)

