"""docs/scaling.md §4 for real: a LiteLLM proxy in front of the fake provider.

The client runs the documented configuration (the proxy as ``api_base``, a string
fallback through it, the cache and rate limits in Redis, the ledger in PostgreSQL) plus
the §2 rate limit written the §2 way (``gpt-4o-mini``) and a price for the proxy's
alias.  The proxy is ``litellm --config ...`` (tests/servers/litellm_proxy.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from dewey.llm import LiteLLMClient, LiteLLMConfig
from dewey.llm._ratelimit import KEY_PREFIX, RedisRateLimiter
from dewey.llm._usage import open_ledger
from tests.servers.fake_provider import FakeProvider, Reply
from tests.servers.litellm_proxy import LiteLLMProxy, needs_proxy
from tests.servers.postgres import PG_URL, needs_postgres
from tests.servers.redis_server import REDIS_URL, connect_redis, needs_redis

pytestmark = [needs_proxy, needs_postgres, needs_redis]

MESSAGES = [{"role": "user", "content": "Hello!"}]


def section_4_config(proxy: LiteLLMProxy, usage_db: str, path: Path) -> LiteLLMConfig:
    """docs/scaling.md's §4 client config, the §2 limit and a price, with this test's servers."""
    path.write_text(yaml.safe_dump({"llm": {
        "model": "openai/gpt-4o-mini",
        "api_base": proxy.api_base,
        "api_key": proxy.master_key,
        "fallback_models": ["openai/claude-haiku"],
        "cache": "redis", "cache_url": REDIS_URL,
        "usage_db": usage_db,
        "rate_limits": {"gpt-4o-mini": {"rpm": 1}},  # written the §2 way
        "rate_limit_url": REDIS_URL,
        "prices": {"claude-haiku": {"price_as": "anthropic/claude-haiku-4-5"}},
        "max_retries": 1, "backoff_base": 0.01, "backoff_max": 0.05,
    }}))
    return LiteLLMConfig.from_yaml(path)


@pytest.fixture
def waits() -> list[float]:
    """The rate limiter's waits, recorded instead of slept (rpm: 1 would wait a minute)."""
    return []


@pytest.fixture
def client(litellm_proxy: LiteLLMProxy, provider: FakeProvider, pg_table: str, tmp_path: Path,  # noqa: ARG001 (reset before each test)
           waits: list[float]) -> Iterator[LiteLLMClient]:
    config = section_4_config(litellm_proxy, f"{PG_URL}?table={pg_table}", tmp_path / "dewey.yaml")
    with connect_redis() as raw:
        raw.delete(KEY_PREFIX + "gpt-4o-mini")
    limiter = RedisRateLimiter(config.rate_limits, REDIS_URL, sleep=waits.append)
    made = LiteLLMClient(config=config, rate_limiter=limiter)
    yield made
    made.close()
    with connect_redis() as raw:
        raw.delete(KEY_PREFIX + "gpt-4o-mini")


def recorded_costs(client: LiteLLMClient) -> dict[str, float]:
    """Cost by model in the PostgreSQL ledger, once the client's records are written."""
    usage_db = client.config.usage_db
    assert usage_db is not None
    client.close()  # flushes the ledger
    with open_ledger(usage_db) as ledger:
        return {row.key: row.cost_usd for row in ledger.summary(by="model")}


def test_the_documented_config_checks_clean(client: LiteLLMClient) -> None:
    assert client.check() == []


def test_a_completion_records_the_proxys_own_cost(client: LiteLLMClient, litellm_proxy: LiteLLMProxy,
                                                  redis_namespace: str) -> None:
    before = len(litellm_proxy.charges())
    answer = client.generate_completion([{"role": "user", "content": f"hi {redis_namespace}"}])
    assert answer.choices[0].message.content == f"echo: hi {redis_namespace}"
    charged = litellm_proxy.wait_for_charges(before + 1)[-1]["response_cost"]
    assert charged > 0
    assert client.completion_cost(answer) == pytest.approx(charged)
    assert recorded_costs(client) == {"openai/gpt-4o-mini": pytest.approx(charged)}


def test_the_readme_stream_loop_through_the_proxy_is_priced_as_the_proxy_does(
        client: LiteLLMClient, litellm_proxy: LiteLLMProxy, provider: FakeProvider,
        redis_namespace: str) -> None:
    provider.script("claude-haiku-4-5", Reply.ok(f"streamed words for {redis_namespace}"))
    before = len(litellm_proxy.charges())
    pieces = []
    for chunk in client.generate_completion(MESSAGES, model="openai/claude-haiku", stream=True):
        pieces.append(chunk.choices[0].delta.content or "")
    assert "".join(pieces) == f"streamed words for {redis_namespace}"
    # A stream's headers leave before its cost is known: the proxy sends none, and the
    # client prices the alias by the config's price (price_as), as the proxy prices the model.
    charged = litellm_proxy.wait_for_charges(before + 1)[-1]["response_cost"]
    assert charged > 0
    assert recorded_costs(client) == {"openai/claude-haiku": pytest.approx(charged)}


def test_a_failing_proxy_model_falls_back_to_the_other(client: LiteLLMClient, provider: FakeProvider,
                                                        redis_namespace: str) -> None:
    provider.script("gpt-4o-mini", Reply.error(503), Reply.error(503))
    answer = client.generate_completion([{"role": "user", "content": f"fall {redis_namespace}"}])
    assert answer.choices[0].message.content == f"echo: fall {redis_namespace}"
    assert [request.model for request in provider.requests] == ["gpt-4o-mini", "gpt-4o-mini",
                                                                "claude-haiku-4-5"]


def test_a_429s_retry_after_is_honoured_through_the_proxy(client: LiteLLMClient, provider: FakeProvider,
                                                          redis_namespace: str) -> None:
    provider.script("claude-haiku-4-5", Reply.error(429, retry_after=2), Reply.ok("after the wait"))
    answer = client.generate_completion([{"role": "user", "content": f"limited {redis_namespace}"}],
                                        model="openai/claude-haiku")
    assert answer.choices[0].message.content == "after the wait"
    first, second = provider.requests_for("claude-haiku-4-5")
    # The proxy forwards the provider's header as llm_provider-retry-after: 2.
    assert second.time - first.time >= 2.0


def test_an_rpm_limit_written_without_the_prefix_limits_the_proxy_model(
        client: LiteLLMClient, waits: list[float], redis_namespace: str) -> None:
    for number in range(3):
        client.generate_completion([{"role": "user", "content": f"call {number} {redis_namespace}"}])
    # rpm: 1 for gpt-4o-mini holds openai/gpt-4o-mini: the 2nd call waits a minute, the 3rd two.
    assert waits == [pytest.approx(60.0, abs=1.0), pytest.approx(120.0, abs=1.0)]
