"""``Recorder``: what a call reports: the ledger, costs, budgets, the prompt log, the cache.

The client and its streams report through it (success, failure, an abandoned call, a
cache hit) instead of reaching into each other: a stream holds the recorder, the
request and its step, and nothing of the client.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._catalog import Catalog
from ._exceptions import LLMConfigError, LLMError
from ._pricing import Pricing
from ._request import Request, check_cache_mode, estimate_tokens
from ._resilience import Route, Step
from ._response import (
    ResponseData,
    answer_text,
    answer_tool_calls,
    as_dict,
    cached_response,
    usage_counts,
)

if TYPE_CHECKING:
    from ._config import Budget

__all__ = ["COST_FIELD", "Recorder"]

logger = logging.getLogger("dewey.llm")

COST_FIELD = "_dewey_cost_usd"  # a cache entry's original cost: a hit reports what it saved
_ANSWER_TOKENS = 1024  # what a reservation assumes an answer costs when max_tokens is not set


class Recorder:
    """Records a client's calls in its ledger, adds up their cost, stores answers in its cache."""

    def __init__(self, *, catalog: Catalog, ledger: Any, cache: Any, cache_ttl: float | None,
                 pricing: Pricing | None = None, log: Any = None) -> None:
        self.catalog = catalog
        self.pricing = pricing or Pricing(catalog)
        self.ledger, self.cache, self.cache_ttl = ledger, cache, cache_ttl
        self.log = log  # the ledger the prompt log goes to (None: not logged)
        self._cost_lock = threading.Lock()
        self.total_cost = 0.0  # USD spent through this recorder (cache hits cost nothing)
        self._unpriced_warned: set[str] = set()  # models already warned about, once each

    # --- costs --------------------------------------------------------------------------------

    def price(self, response: Any, model: str | None = None, kind: str = "completion") -> float:
        """USD cost of a response by the rule of ``_pricing``: the server's figure, else the
        config's or the price map's price for ``model``; 0 (warned once) when unpriced."""
        model = model or str(getattr(response, "model", "") or "")
        cost = self.pricing.cost(response, model, kind)
        if cost is not None:
            return cost
        if any(usage_counts(response)[:2]) and model not in self._unpriced_warned:
            self._unpriced_warned.add(model)
            logger.warning(
                "%s has no price: its calls are recorded at $0, which budgets cannot count. "
                "Price it in the config: prices: {%s: {input_per_million: ..., "
                "output_per_million: ...}}, or {price_as: MODEL} for a model of the price map",
                model, model)
        return 0.0

    def cost_of(self, response: Any) -> float:
        """USD cost of a response a client returned (0 for a cache hit)."""
        hidden = getattr(response, "_hidden_params", None) or {}
        if hidden.get("cache_hit"):
            return 0.0
        if "dewey_cost" in hidden:
            return float(hidden["dewey_cost"])
        return self.price(response)

    # --- budgets ------------------------------------------------------------------------------

    def reserve(self, request: Request, budget: Budget) -> None:
        """Refuse ``request`` if a budget is spent, else hold its estimated cost."""
        if self.ledger is None:
            return
        if budget.daily_usd is None and budget.monthly_usd is None and budget.total_usd is None:
            return
        from ._providers import qualify_model
        from ._usage import check_budget

        # Priced before the check and held in the ledger while the call is in flight, so
        # that concurrent calls (threads and processes) see it: about 4 characters a
        # prompt token, and the longest answer allowed.
        payload = request.payload
        answer = 0 if request.kind == "embedding" else int(
            payload.get("max_tokens") or payload.get("max_completion_tokens") or _ANSWER_TOKENS)
        model, prompt = qualify_model(request.model), estimate_tokens(request, answer=0)
        request.estimate = self.pricing.estimate(
            model, prompt, answer, "embedding" if request.kind == "embedding" else "completion")
        request.hold = check_budget(self.ledger, budget, reserve=request.estimate)

    def hold(self, request: Request) -> None:
        """Reserve again for an attempt after one that failed (its record settled the hold)."""
        if request.estimate and request.hold is None and self.ledger is not None:
            request.hold = self.ledger.reserve(request.estimate)

    # --- outcomes -----------------------------------------------------------------------------

    def succeeded(self, request: Request, step: Step, response: Any, latency: float, *,
                  cost: float | None = None) -> Any:
        """Record a successful attempt, priced (unless ``cost`` is given); the response.

        A structured answer is validated here, so that its row says whether it did: an
        answer that does not is paid for all the same, and recorded as
        ``LLMOutputValidationError``; its errors stay in ``_hidden_params`` for the client."""
        outcome = "ok"
        if request.output is not None:
            from ._structured import check

            if check(request.output, response):
                outcome = "LLMOutputValidationError"
        kind = "embedding" if request.kind == "embedding" else "completion"
        if cost is None:
            cost = self.price(response, step.route.model, kind)
        hidden = getattr(response, "_hidden_params", None)
        if isinstance(hidden, dict):
            hidden["dewey_cost"] = cost
            hidden.setdefault("cache_hit", False)
        with self._cost_lock:
            self.total_cost += cost
        if request.trace is not None:
            request.trace.succeeded(response, cost)
        self.record(request, step, outcome, response=response, cost=cost, latency=latency)
        if request.kind == "completion":  # a stream logs its text once read to the end
            self.logged(request, step.route.model, response)
        return response

    def failed(self, request: Request, step: Step, error: LLMError, latency: float) -> None:
        if request.trace is not None:
            request.trace.failed(error)
        self.record(request, step, type(error).__name__, latency=latency, status=error.status_code)

    def abandoned(self, request: Request, step: Step, latency: float) -> None:
        """A call left before its end: the provider may still charge for it."""
        if request.trace is not None:
            request.trace.abandoned()
        self.record(request, step, "abandoned", latency=latency)

    def hit(self, request: Request, data: dict[str, Any]) -> ResponseData:
        """Record a cache hit; the cached answer as a response."""
        saved = float(data.pop(COST_FIELD, 0.0) or 0.0)
        if request.trace is not None:
            request.trace.cache_hit(data, saved)
        self.record(request, None, "ok", response=data, cache_hit=True, saved=saved)
        # Logged like any answer: it is what the caller saw, and a conversation goes on from it.
        from ._providers import qualify_model

        self.logged(request, qualify_model(request.model), data, cache_hit=True)
        return cached_response(data)

    def record(self, request: Request, step: Step | None, outcome: str, *,
               response: Any = None, cost: float = 0.0, saved: float = 0.0,
               latency: float = 0.0, cache_hit: bool = False, status: int | None = None) -> None:
        """One row in the ledger (settling the request's hold), if usage is tracked."""
        if self.ledger is None:
            return
        from ._providers import qualify_model
        from ._usage import UsageRecord

        usage = usage_counts(response)
        # A cache hit names the model as the call did: qualify it like a route, so that it
        # adds up with the calls that reached that model.
        route = step.route if step else Route(qualify_model(request.model))
        # A cache hit does not read the catalog just to name the provider.
        provider = self.catalog.provider(route.model) if step or self.catalog.loaded else None
        settles, request.hold = request.hold, None
        self.ledger.record(UsageRecord(
            model=route.model, provider=provider, kind=request.kind, outcome=outcome,
            prompt_tokens=usage[0], completion_tokens=usage[1], cached_tokens=usage[2],
            cost_usd=cost, saved_usd=saved, latency_s=latency, cache_hit=cache_hit,
            status_code=status, attempt=step.number if step else 1, tags=request.tags,
            user=request.user, call_id=request.call_id), settles=settles)

    def logs(self, request: Request) -> bool:
        """Whether ``request``'s answer goes to the prompt log (the client's and the call's say)."""
        return self.log is not None and request.log and request.kind != "embedding"

    def logged(self, request: Request, model: str, response: Any = None, *, text: str | None = None,
               cache_hit: bool = False) -> None:
        """Queue the prompt log's entry of an answered completion (its ``response``, or the
        ``text`` a stream delivered), if the client and the call log.  Never raises."""
        if not self.logs(request):
            return
        try:
            from ._usage._log import LogEntry, as_sent

            # Only what may change under the writer is taken here (the texts, a snapshot of
            # content parts); the row (JSON, redaction) is built on the writer thread.
            self.log.record(LogEntry(
                call_id=request.call_id, model=model, messages=as_sent(request.messages),
                response=answer_text(response) if text is None else text,
                tool_calls=answer_tool_calls(response), conversation_id=request.conversation_id,
                cache_hit=cache_hit, tags=request.tags, user=request.user))
        except Exception:  # bookkeeping must never fail a model call
            logger.debug("prompt log: could not queue an entry", exc_info=True)

    # --- the cache ----------------------------------------------------------------------------

    def lookup(self, request: Request, endpoint: Callable[[Request], str | None]
               ) -> tuple[str | None, ResponseData | None]:
        """The completion's cache key (None: not cached) and its cached answer, if any
        (recorded as a hit).  ``endpoint`` names the server, asked only when caching."""
        check_cache_mode(request.cache)
        if self.cache is None or request.cache is False:
            return None, None
        from ._cache import completion_key

        try:
            key = completion_key(request.cache_request(), endpoint=endpoint(request))
        except LLMConfigError as exc:
            # A parameter that is not plain data cannot be keyed safely: call uncached.
            logger.info("not caching this call: %s", exc)
            return None, None
        found = None if request.cache == "refresh" else self.cache.get(key)
        if found is not None and request.output is not None:
            from ._structured import check

            # Validated again (into message.parsed): a model's validators may have changed
            # since it was stored.  One that no longer validates is a miss, replaced.
            if check(request.output, found):
                logger.info("a cached answer no longer matches %s: calling", request.output.name)
                found = None
        return key, (self.hit(request, found) if found is not None else None)

    def store(self, key: str | None, response: Any) -> None:
        """Cache ``response`` under ``key`` (None: not cached), with what it cost."""
        if key is not None:
            # The original cost travels with the entry: a hit reports what it saved
            # without loading LiteLLM to price it.
            entry = {**as_dict(response), COST_FIELD: self.cost_of(response)}
            self.cache.set(key, entry, self.cache_ttl)

