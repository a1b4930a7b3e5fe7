"""The one retry loop: which model to try next, how long to wait, when to give up.

``RetryPlan`` is pure logic (no I/O, no sleeping): the sync and async clients drive the
same plan with ``run_sync``/``run_async``, which differ only in how they sleep.  LiteLLM
and the provider SDKs are always called with their own retries off, so a request is
never retried by two loops at once.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from ._exceptions import (
    Attempt,
    LLMAuthenticationError,
    LLMBadRequestError,
    LLMConnectionError,
    LLMContextWindowError,
    LLMError,
    LLMRateLimitError,
    LLMServerError,
)

__all__ = ["Cooldowns", "Policy", "RetryPlan", "Route", "Step", "run_async", "run_sync"]

logger = logging.getLogger("dewey.llm")
T = TypeVar("T")

_RETRYABLE_STATUS = {408, 409, 429}
_NOT_FOUND_PHRASES = ("model not found", "does not exist", "no such model", "unknown model",
                      "model_not_found", "not_found_error")


@dataclass(frozen=True)
class Route:
    """One model to call, with the credentials to call it with."""

    model: str
    api_key: str | None = None
    api_base: str | None = None
    api_version: str | None = None
    timeout: float | None = None
    transport: str = "litellm"
    """What sends the calls: ``"native"`` (the OpenAI wire) or ``"litellm"``."""

    def __repr__(self) -> str:  # never show the key
        return f"Route({self.model!r}, api_base={self.api_base!r}, transport={self.transport!r})"


@dataclass(frozen=True)
class Policy:
    """How hard to try: retries per model, backoff, Retry-After cap, deadline."""

    max_retries: int = 2
    timeout: float = 60.0
    deadline: float | None = None
    backoff_base: float = 0.5
    backoff_max: float = 20.0
    max_retry_after: float = 60.0


@dataclass(frozen=True)
class Step:
    """The plan's instruction: the attempt the driver should make now.

    Not to be confused with :class:`Attempt`, the record of an attempt made."""

    route: Route
    number: int  # 1 for the first attempt at this route
    timeout: float


class Cooldowns:
    """Models that failed ``failures`` times in a row are skipped for ``seconds``.

    One instance per client (pass the same one to several clients to share it).
    """

    def __init__(self, failures: int = 3, seconds: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.failures, self.seconds, self._clock = failures, seconds, clock
        self._streak: dict[str, int] = {}
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def remaining(self, model: str) -> float:
        """Seconds left in this model's cooldown (0 when it may be called)."""
        with self._lock:
            return max(0.0, self._until.get(model, 0.0) - self._clock())

    def failed(self, model: str) -> None:
        with self._lock:
            streak = self._streak.get(model, 0) + 1
            self._streak[model] = streak
            if streak >= self.failures and self.seconds > 0:
                self._until[model] = self._clock() + self.seconds
                self._streak[model] = 0
                logger.warning("%s failed %d times in a row: skipping it for %.0fs",
                               model, streak, self.seconds)

    def succeeded(self, model: str) -> None:
        with self._lock:
            self._streak.pop(model, None)
            self._until.pop(model, None)


def is_retryable(error: LLMError) -> bool:
    """Only what can succeed on retry: 408, 409, 429, 5xx, connection errors, timeouts."""
    if isinstance(error, LLMBadRequestError | LLMAuthenticationError):
        return False
    return (isinstance(error, LLMConnectionError | LLMRateLimitError | LLMServerError)
            or error.status_code in _RETRYABLE_STATUS
            or (error.status_code or 0) >= 500)


def is_model_missing(error: LLMError) -> bool:
    text = error.message.lower()
    return error.status_code == 404 or any(p in text for p in _NOT_FOUND_PHRASES)


@dataclass
class RetryPlan:
    """Decides, after each failure, what to try next and how long to wait first."""

    routes: list[Route]
    policy: Policy
    cooldowns: Cooldowns = field(default_factory=Cooldowns)
    context_window: Callable[[str], int | None] = lambda _model: None
    clock: Callable[[], float] = time.monotonic
    jitter: Callable[[float, float], float] = random.uniform
    history: list[Attempt] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._started = self.clock()
        self._deadline = self._started + self.policy.deadline if self.policy.deadline else None

    # --- the driver's three calls ---------------------------------------------------------

    def start(self) -> Step:
        """The first attempt: the first route that is not cooling down."""
        index = self._next_available(0)
        if index is None:
            model = self.routes[0].model
            wait = self.cooldowns.remaining(model)
            raise LLMConnectionError(
                f"{model} is in cooldown after repeated failures; try again in {wait:.0f}s "
                "or configure fallback_models", model=model, retry_after=wait)
        return self._step(index, 1)

    def failed(self, step: Step, error: LLMError, latency: float) -> tuple[Step, float]:
        """Record a failure; return the next step and the seconds to wait before it.

        Raises ``error`` (with the whole history attached) when nothing is left to try.
        """
        retryable = is_retryable(error)
        if retryable:
            self.cooldowns.failed(step.route.model)
        decision = self._decide(step, error, retryable)
        waited = decision[1] if decision else 0.0
        self._log(step, error, latency, waited)
        if decision is None:
            error.attempts = list(self.history)
            raise error
        return decision

    def succeeded(self, step: Step, latency: float) -> None:
        self.cooldowns.succeeded(step.route.model)
        self._log(step, None, latency, 0.0)

    # --- decisions ------------------------------------------------------------------------

    def _decide(self, step: Step, error: LLMError, retryable: bool) -> tuple[Step, float] | None:
        index = self.routes.index(step.route)
        if retryable and step.number <= self.policy.max_retries:
            wait = self._wait_for(step.number, error)
            # A model in cooldown is not chosen again, but the call that is already
            # using it spends its retries: max_retries is a promise to the caller.
            if self._fits(wait):
                return self._step(index, step.number + 1), wait
        if retryable or isinstance(error, LLMAuthenticationError) or is_model_missing(error):
            following = self._next_available(index + 1)
        elif isinstance(error, LLMContextWindowError):
            following = self._next_larger(index)
        else:
            return None  # a bad request fails the same way everywhere: raise at once
        if following is None or not self._fits(0.0):
            return None
        return self._step(following, 1), 0.0

    def _wait_for(self, number: int, error: LLMError) -> float:
        if error.retry_after is not None:
            return min(error.retry_after, self.policy.max_retry_after)
        ceiling = min(self.policy.backoff_max, self.policy.backoff_base * 2 ** (number - 1))
        return self.jitter(0.0, ceiling)  # full jitter: spreads a thundering herd

    def _fits(self, wait: float) -> bool:
        """No wait is started (and no attempt made) that would pass the deadline."""
        return self._deadline is None or self.clock() + wait < self._deadline

    def _next_available(self, start: int) -> int | None:
        for index in range(start, len(self.routes)):
            if not self.cooldowns.remaining(self.routes[index].model):
                return index
            logger.info("skipping %s: in cooldown", self.routes[index].model)
        return None

    def _next_larger(self, index: int) -> int | None:
        current = self.context_window(self.routes[index].model)
        for candidate in range(index + 1, len(self.routes)):
            size = self.context_window(self.routes[candidate].model)
            larger = size is not None and (current is None or size > current)
            if larger and not self.cooldowns.remaining(self.routes[candidate].model):
                return candidate
        return None

    def _step(self, index: int, number: int) -> Step:
        route = self.routes[index]
        timeout = route.timeout or self.policy.timeout
        remaining = None if self._deadline is None else self._deadline - self.clock()
        if remaining is not None and remaining < timeout:
            # Rounded up to a quarter second: LiteLLM keeps one SDK client (and its
            # connection pool) per timeout value, so an exact value would mean a new
            # client, and a new connection, on every attempt.
            timeout = max(0.25, math.ceil(remaining * 4) / 4)
        return Step(route, number, timeout)

    def _log(self, step: Step, error: LLMError | None, latency: float, wait: float) -> None:
        outcome = "ok" if error is None else type(error).__name__
        self.history.append(Attempt(
            model=step.route.model, number=step.number, outcome=outcome,
            status_code=error.status_code if error else None,
            error=error.message if error else None, latency=latency, waited=wait))
        level = logging.DEBUG if error is None else logging.WARNING
        logger.log(level, "model=%s attempt=%d outcome=%s status=%s latency=%.3fs wait=%.2fs",
                   step.route.model, step.number, outcome,
                   error.status_code if error else 200, latency, wait)

    @property
    def deadline(self) -> float | None:
        """When the whole call must be over, on ``clock`` (None: no deadline)."""
        return self._deadline

    def remaining_time(self) -> float | None:
        return None if self._deadline is None else self._deadline - self.clock()


def run_sync(plan: RetryPlan, call: Callable[[Step], T],
             sleep: Callable[[float], None] = time.sleep) -> T:
    """Drive ``plan``: call, and on a typed failure wait and try what it says next."""
    step = plan.start()
    while True:
        started = plan.clock()
        try:
            result = call(step)
        except LLMError as error:
            step, wait = plan.failed(step, error, plan.clock() - started)
            if wait > 0:
                sleep(wait)
        else:
            plan.succeeded(step, plan.clock() - started)
            return result


async def run_async(plan: RetryPlan, call: Callable[[Step], Awaitable[T]]) -> T:
    """``run_sync`` for coroutines: the same plan, an asyncio sleep."""
    import asyncio

    step = plan.start()
    while True:
        started = plan.clock()
        try:
            result = await call(step)
        except LLMError as error:
            step, wait = plan.failed(step, error, plan.clock() - started)
            if wait > 0:
                await asyncio.sleep(wait)
        else:
            plan.succeeded(step, plan.clock() - started)
            return result
