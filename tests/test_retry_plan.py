"""The retry plan's decisions on their own: a fake clock, no sockets, exact numbers."""

from __future__ import annotations

import pytest

from dewey.llm import (
    LLMAuthenticationError,
    LLMBadRequestError,
    LLMConnectionError,
    LLMContextWindowError,
    LLMRateLimitError,
    LLMServerError,
)
from dewey.llm._resilience import Cooldowns, Policy, RetryPlan, Route, run_sync


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def plan(*models: str, clock: Clock, windows: dict[str, int] | None = None, **policy: float) -> RetryPlan:
    return RetryPlan([Route(m) for m in models], Policy(**policy),  # type: ignore[arg-type]
                     Cooldowns(clock=clock), context_window=(windows or {}).get,
                     clock=clock, jitter=lambda _low, high: high)


def test_backoff_doubles_up_to_its_cap() -> None:
    clock = Clock()
    retry = plan("a", clock=clock, max_retries=5, backoff_base=0.5, backoff_max=3.0)
    attempt = retry.start()
    waits = []
    for _ in range(5):
        attempt, wait = retry.failed(attempt, LLMServerError("boom", status_code=500), 0.0)
        waits.append(wait)
    assert waits == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert attempt.number == 6


def test_retry_after_wins_over_backoff_and_is_capped() -> None:
    clock = Clock()
    retry = plan("a", clock=clock, max_retry_after=10.0)
    attempt = retry.start()
    attempt, wait = retry.failed(attempt, LLMRateLimitError("slow", status_code=429, retry_after=4.0), 0.0)
    assert wait == 4.0
    _, wait = retry.failed(attempt, LLMRateLimitError("slow", status_code=429, retry_after=600.0), 0.0)
    assert wait == 10.0


def test_retries_spent_then_fallbacks_in_order_then_the_last_error() -> None:
    clock = Clock()
    calls: list[str] = []

    def call(attempt):  # type: ignore[no-untyped-def]
        calls.append(attempt.route.model)
        raise LLMConnectionError("down", model=attempt.route.model)

    with pytest.raises(LLMConnectionError) as caught:
        run_sync(plan("a", "b", "c", clock=clock, max_retries=1), call, sleep=clock.sleep)
    assert calls == ["a", "a", "b", "b", "c", "c"]
    assert caught.value.model == "c"
    assert [(a.model, a.number) for a in caught.value.attempts] == [
        ("a", 1), ("a", 2), ("b", 1), ("b", 2), ("c", 1), ("c", 2)]


def test_auth_errors_skip_retries_and_bad_requests_stop_everything() -> None:
    clock = Clock()
    retry = plan("a", "b", clock=clock, max_retries=3)
    attempt, wait = retry.failed(retry.start(), LLMAuthenticationError("no", status_code=401), 0.0)
    assert (attempt.route.model, attempt.number, wait) == ("b", 1, 0.0)
    with pytest.raises(LLMBadRequestError):
        retry.failed(attempt, LLMBadRequestError("bad", status_code=400), 0.0)


def test_context_window_picks_the_next_larger_model() -> None:
    clock = Clock()
    retry = plan("small", "same", "unknown", "large", clock=clock,
                 windows={"small": 8192, "same": 8192, "large": 128000})
    attempt, _ = retry.failed(retry.start(), LLMContextWindowError("long", status_code=400), 0.0)
    assert attempt.route.model == "large"


def test_no_wait_may_pass_the_deadline() -> None:
    clock = Clock()
    retry = plan("a", "b", clock=clock, deadline=5.0, max_retries=3, max_retry_after=60.0)
    attempt = retry.start()
    clock.now += 2.0
    # A 10 s Retry-After would pass the deadline: go to the fallback now instead.
    attempt, wait = retry.failed(attempt, LLMRateLimitError("slow", status_code=429, retry_after=10.0), 2.0)
    assert (attempt.route.model, wait) == ("b", 0.0)
    assert attempt.timeout == 3.0  # what is left of the deadline
    clock.now += 3.5
    with pytest.raises(LLMServerError):
        retry.failed(attempt, LLMServerError("boom", status_code=500), 3.5)


def test_cooldown_skips_a_model_until_it_ends() -> None:
    clock = Clock()
    cooldowns = Cooldowns(failures=2, seconds=30.0, clock=clock)
    for _ in range(2):
        cooldowns.failed("a")
    retry = RetryPlan([Route("a"), Route("b")], Policy(), cooldowns, clock=clock)
    assert retry.start().route.model == "b"
    clock.now += 31
    assert RetryPlan([Route("a"), Route("b")], Policy(), cooldowns, clock=clock).start().route.model == "a"
