"""The one retry loop, proved against the fault-injecting server: what it received, and when."""

from __future__ import annotations

import itertools
import logging
import time
from email.utils import formatdate
from typing import Any

import pytest

from dewey.llm import (
    FallbackModel,
    LLMAuthenticationError,
    LLMBadRequestError,
    LLMConnectionError,
    LLMContextWindowError,
    LLMRateLimitError,
    LLMServerError,
    LLMTimeoutError,
)
from tests.conftest import TEST_KEY
from tests.servers.fake_provider import FakeProvider, Reply


@pytest.fixture(autouse=True)
def litellm_loaded() -> None:
    """Tests below time whole calls: LiteLLM's one-off import must not be in them."""
    from dewey.llm._litellm import litellm

    litellm()


def gaps(provider: FakeProvider) -> list[float]:
    times = [r.time for r in provider.requests]
    return [b - a for a, b in itertools.pairwise(times)]


def test_retryable_errors_are_retried_then_succeed(make_client: Any, provider: FakeProvider) -> None:
    provider.script("gpt-4o-mini", Reply.error(500), Reply.error(503), Reply.error(408), Reply.ok("fine"))
    response = make_client(max_retries=3).generate_completion("hi")
    assert response.choices[0].message.content == "fine"
    assert len(provider.requests) == 4


def test_max_retries_counts_retries_and_the_error_carries_the_history(
        make_client: Any, provider: FakeProvider) -> None:
    provider.script_all(Reply.error(502), Reply.error(502), Reply.error(502), Reply.error(502))
    with pytest.raises(LLMServerError) as caught:
        make_client(max_retries=2).generate_completion("hi")
    assert len(provider.requests) == 3
    history = caught.value.attempts
    assert [(a.model, a.number, a.status_code) for a in history] == [
        ("openai/gpt-4o-mini", 1, 502), ("openai/gpt-4o-mini", 2, 502), ("openai/gpt-4o-mini", 3, 502)]
    assert all(a.waited > 0 for a in history[:2]) and history[2].waited == 0
    assert "after 3 attempts" in str(caught.value)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_non_retryable_errors_are_sent_once(make_client: Any, provider: FakeProvider, status: int) -> None:
    provider.script_all(*[Reply.error(status, "no")] * 4)
    with pytest.raises((LLMBadRequestError, LLMAuthenticationError)):
        make_client(max_retries=3).generate_completion("hi")
    assert len(provider.requests) == 1


def test_retry_after_seconds_is_honoured(make_client: Any, provider: FakeProvider) -> None:
    provider.script("gpt-4o-mini", Reply.error(429, retry_after=1), Reply.ok())
    make_client().generate_completion("hi")
    assert len(provider.requests) == 2
    assert 0.95 <= gaps(provider)[0] < 2.0


def test_retry_after_ms_and_http_date(make_client: Any, provider: FakeProvider) -> None:
    provider.script("gpt-4o-mini", Reply.error(429, retry_after_ms=600),
                    Reply.error(503, retry_after=formatdate(time.time() + 2, usegmt=True)), Reply.ok())
    make_client().generate_completion("hi")
    first, second = gaps(provider)
    assert 0.55 <= first < 1.5
    assert 0.3 <= second < 3.0  # an HTTP date has a one-second resolution


def test_retry_after_is_capped(make_client: Any, provider: FakeProvider) -> None:
    provider.script("gpt-4o-mini", Reply.error(429, retry_after=30), Reply.ok())
    make_client(max_retry_after=0.3).generate_completion("hi")
    assert 0.25 <= gaps(provider)[0] < 1.5  # 0.3 s, not 30


def test_backoff_grows_exponentially(make_client: Any, provider: FakeProvider) -> None:
    provider.script_all(*[Reply.error(500)] * 3)
    with pytest.raises(LLMServerError) as caught:
        make_client(max_retries=2, backoff_base=0.2, backoff_max=10).generate_completion("hi")
    waits = [a.waited for a in caught.value.attempts]
    assert 0 <= waits[0] <= 0.2 and 0 <= waits[1] <= 0.4  # full jitter under the cap


def test_fallbacks_in_order_after_retries(make_client: Any, provider: FakeProvider) -> None:
    provider.script("gpt-4o-mini", *[Reply.error(500)] * 2)
    provider.script("gpt-4o", *[Reply.error(503)] * 2)
    response = make_client(max_retries=1, fallback_models=["openai/gpt-4o", "openai/gpt-4.1"]
                           ).generate_completion("hi")
    assert response.choices[0].message.content == "echo: hi"
    assert [r.model for r in provider.requests] == ["gpt-4o-mini"] * 2 + ["gpt-4o"] * 2 + ["gpt-4.1"]


def test_fallback_with_its_own_credentials(make_client: Any, provider: FakeProvider) -> None:
    with FakeProvider() as other:
        provider.script("gpt-4o-mini", Reply.error(401))
        client = make_client(fallback_models=[{"model": "anthropic/claude-haiku-4-5",
                                               "api_base": other.anthropic_base,
                                               "api_key": "sk-ant-other-9876543210"}])
        response = client.generate_completion("hi")
        assert response.choices[0].message.content == "echo: hi"
        assert len(provider.requests) == 1  # auth errors skip straight to the next model
        assert other.requests[0].path.endswith("/v1/messages")
        assert other.requests[0].headers["x-api-key"] == "sk-ant-other-9876543210"
        assert isinstance(client.config.fallback_models[0], FallbackModel)


def test_model_not_found_skips_to_the_next_model(make_client: Any, provider: FakeProvider) -> None:
    provider.script("gpt-9", Reply.error(404, "The model `gpt-9` does not exist", code="model_not_found"))
    make_client(model="openai/gpt-9", fallback_models=["openai/gpt-4o"]).generate_completion("hi")
    assert [r.model for r in provider.requests] == ["gpt-9", "gpt-4o"]


def test_a_plain_bad_request_does_not_fall_back(make_client: Any, provider: FakeProvider) -> None:
    provider.script("gpt-4o-mini", Reply.error(400, "temperature must be <= 2"))
    with pytest.raises(LLMBadRequestError, match="temperature"):
        make_client(fallback_models=["openai/gpt-4o"]).generate_completion("hi")
    assert [r.model for r in provider.requests] == ["gpt-4o-mini"]


def test_context_window_goes_to_a_larger_model(make_client: Any, provider: FakeProvider) -> None:
    provider.script("gpt-4", Reply.context_window())
    client = make_client(model="openai/gpt-4",  # 8,192 tokens
                         fallback_models=["openai/gpt-4-0613", "openai/gpt-4o"])  # 8,192; 128,000
    client.generate_completion("a very long prompt")
    assert [r.model for r in provider.requests] == ["gpt-4", "gpt-4o"]


def test_context_window_with_nothing_larger_raises(make_client: Any, provider: FakeProvider) -> None:
    provider.script("gpt-4", Reply.context_window())
    with pytest.raises(LLMContextWindowError):
        make_client(model="openai/gpt-4", fallback_models=["openai/gpt-4-0613"]).generate_completion("x")
    assert len(provider.requests) == 1


def test_a_stream_that_fails_before_its_first_chunk_falls_back(
        make_client: Any, provider: FakeProvider) -> None:
    provider.script("gpt-4o-mini", Reply.error(500), Reply.error(500))
    stream = make_client(max_retries=1, fallback_models=["openai/gpt-4o"]).generate_completion(
        "stream please", stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "echo: stream please"
    assert [(r.model, r.stream) for r in provider.requests] == [
        ("gpt-4o-mini", True), ("gpt-4o-mini", True), ("gpt-4o", True)]


def test_a_stream_cut_before_any_text_is_retried(make_client: Any, provider: FakeProvider) -> None:
    provider.script("gpt-4o-mini", Reply.cut_stream(after_chunks=0), Reply.ok("whole"))
    stream = make_client().generate_completion("hi", stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "whole"
    assert len(provider.requests) == 2


def test_the_deadline_stops_waits_that_would_pass_it(make_client: Any, provider: FakeProvider) -> None:
    # Waiting 5 s and retrying would have succeeded; giving up at once (and not after the
    # wait: see test_retry_plan.py, with a fake clock) leaves the 429.
    provider.script_all(Reply.error(429, retry_after=5), Reply.ok())
    with pytest.raises(LLMRateLimitError):
        make_client(deadline=1.0).generate_completion("hi")
    assert len(provider.requests) == 1


def test_timeout_is_per_attempt_and_retried(make_client: Any, provider: FakeProvider) -> None:
    provider.script("gpt-4o-mini", Reply.slow(1.5), Reply.ok("quick"))
    response = make_client(timeout=0.4).generate_completion("hi")
    assert response.choices[0].message.content == "quick"
    assert len(provider.requests) == 2


def test_the_deadline_bounds_the_whole_call(make_client: Any, provider: FakeProvider) -> None:
    provider.script_all(*[Reply.slow(2.0)] * 6)
    with pytest.raises(LLMTimeoutError):
        make_client(timeout=0.5, deadline=1.2, max_retries=5).generate_completion("hi")
    # 0.5 s attempts in a 1.2 s deadline: three at most, where six were allowed.
    assert 1 <= len(provider.requests) <= 3


def test_cooldown_skips_a_failing_model(make_client: Any, provider: FakeProvider) -> None:
    provider.script("gpt-4o-mini", *[Reply.error(500)] * 2)
    client = make_client(max_retries=1, cooldown_failures=2, cooldown_seconds=60,
                         fallback_models=["openai/gpt-4o"])
    client.generate_completion("one")
    client.generate_completion("two")
    assert [r.model for r in provider.requests] == ["gpt-4o-mini", "gpt-4o-mini", "gpt-4o", "gpt-4o"]


def test_cooldown_without_fallback_fails_fast(make_client: Any, provider: FakeProvider) -> None:
    provider.script_all(*[Reply.error(500)] * 2)
    client = make_client(max_retries=1, cooldown_failures=2, cooldown_seconds=60)
    with pytest.raises(LLMServerError):
        client.generate_completion("one")
    with pytest.raises(LLMConnectionError, match="cooldown") as caught:
        client.generate_completion("two")
    assert len(provider.requests) == 2
    assert caught.value.retry_after is not None and caught.value.retry_after > 50


def test_every_attempt_is_logged_without_secrets(make_client: Any, provider: FakeProvider,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    provider.script("gpt-4o-mini", Reply.error(401, f"bad key {TEST_KEY}"))
    caplog.set_level(logging.DEBUG, logger="dewey.llm")
    make_client(fallback_models=["openai/gpt-4o"]).generate_completion("hi")
    lines = [r.getMessage() for r in caplog.records if r.name == "dewey.llm"]
    assert any("model=openai/gpt-4o-mini attempt=1 outcome=LLMAuthenticationError status=401" in line
               for line in lines)
    assert any("model=openai/gpt-4o attempt=1 outcome=ok" in line for line in lines)
    assert all("latency=" in line and "wait=" in line for line in lines if "attempt=" in line)
    assert TEST_KEY not in caplog.text


@pytest.mark.parametrize("transport", ["native", "litellm"])
def test_embeddings_are_retried_but_never_fall_back(make_client: Any, provider: FakeProvider,
                                                    transport: str) -> None:
    provider.script("text-embedding-3-small", Reply.error(503), Reply.ok())
    client = make_client(embedding_model="openai/text-embedding-3-small",
                         fallback_models=["openai/gpt-4o"], transport=transport)
    result = client.generate_embedding(["a"])
    assert len(result["data"]) == 1
    assert [r.model for r in provider.requests] == ["text-embedding-3-small"] * 2
    if transport == "litellm":  # Each request is ours: the openai SDK's own retries are off.
        assert [r.headers.get("x-stainless-retry-count") for r in provider.requests] == ["0", "0"]
