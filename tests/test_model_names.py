"""One model-name rule for rate limits, prices and aliases; prices for unknown names; the
proxy's forms of Retry-After and cost; unpriced models warned about and listed."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from dewey.llm import LiteLLMClient, LiteLLMConfig, LLMConfigError
from dewey.llm._model_names import match_name
from dewey.llm._ratelimit import LocalRateLimiter
from dewey.llm._retry_after import parse_retry_after
from tests.servers.fake_provider import FakeProvider, Reply
from tests.test_cli import cli_env, dewey

MESSAGES = [{"role": "user", "content": "Hello!"}]


@pytest.mark.parametrize(("model", "names", "found"), [
    ("openai/gpt-4o-mini", ["gpt-4o-mini"], "gpt-4o-mini"),          # §2 name, §4 model
    ("gpt-4o-mini", ["openai/gpt-4o-mini"], "openai/gpt-4o-mini"),    # and the other way
    ("openai/gpt-4o-mini", ["gpt-4o-mini", "openai/gpt-4o-mini"], "openai/gpt-4o-mini"),  # exact first
    ("azure/gpt-4o-mini", ["openai/gpt-4o-mini"], None),              # never another provider's
    ("gpt-4o", ["gpt-4o-mini", "*"], None),
])
def test_one_rule_matches_names_with_and_without_the_provider(model: str, names: list[str],
                                                              found: str | None) -> None:
    assert match_name(model, names) == found


def test_a_limit_written_without_the_prefix_holds_the_prefixed_model_in_the_same_buckets() -> None:
    waits: list[float] = []
    config = LiteLLMConfig(rate_limits={"gpt-4o-mini": {"rpm": 1}})
    limiter = LocalRateLimiter(config.rate_limits, sleep=waits.append)
    for model in ("openai/gpt-4o-mini", "gpt-4o-mini", "openai/gpt-4o-mini"):
        limiter.acquire(model)
    assert waits == [pytest.approx(60.0, abs=0.5), pytest.approx(120.0, abs=0.5)]


@pytest.mark.parametrize("headers", [{"llm_provider-retry-after": "2"}, {"LLM_Provider-Retry-After": "2"},
                                     {"llm_provider-retry-after-ms": "2000"}, {"Retry-After": "2"}])
def test_retry_after_in_the_proxys_forwarded_forms(headers: dict[str, str]) -> None:
    assert parse_retry_after(headers) == 2.0


@pytest.mark.parametrize(("price", "words"), [
    ({}, "gives none"),
    ({"input_per_million": 1, "input_per_token": 1e-6}, "per million and per token"),
    ({"price_as": "gpt-4o", "output_per_million": 1}, "per million and price_as"),
    ({"input_per_million": -1}, "greater than or equal to 0"),
])
def test_a_price_is_one_clear_form(price: dict[str, object], words: str) -> None:
    with pytest.raises(LLMConfigError, match=f"prices.x.*{words}"):
        LiteLLMConfig(prices={"x": price})


def test_an_alias_of_an_alias_is_refused() -> None:
    with pytest.raises(LLMConfigError, match="'fast' names 'cheap', which is an alias itself"):
        LiteLLMConfig(aliases={"fast": "cheap", "cheap": "gpt-4o-mini"})


def test_an_alias_is_routed_as_its_model_also_as_a_fallback(
        make_client: Callable[..., LiteLLMClient], provider: FakeProvider) -> None:
    client = make_client(model="main", fallback_models=["fast"], max_retries=0,
                         aliases={"main": "openai/gpt-4o", "fast": "openai/gpt-4o-mini"})
    provider.script("gpt-4o", Reply.error(503))
    client.generate_completion(MESSAGES)
    assert [request.model for request in provider.requests] == ["gpt-4o", "gpt-4o-mini"]


def test_a_configured_price_prices_an_unknown_name(make_client: Callable[..., LiteLLMClient],
                                                   provider: FakeProvider) -> None:
    provider.script("my-finetune", Reply.ok("x", prompt_tokens=1000, completion_tokens=500))
    provider.script("claude-haiku", Reply.ok("x", prompt_tokens=1000, completion_tokens=500))
    client = make_client(prices={"my-finetune": {"input_per_million": 2.0, "output_per_million": 8.0},
                                 "claude-haiku": {"price_as": "gpt-4o-mini"}})
    tuned = client.generate_completion(MESSAGES, model="openai/my-finetune")
    assert client.completion_cost(tuned) == pytest.approx(1000 * 2e-6 + 500 * 8e-6)
    aliased = client.generate_completion(MESSAGES, model="openai/claude-haiku")
    known = client.get_model_details("gpt-4o-mini")
    assert client.completion_cost(aliased) == pytest.approx(
        1000 * known["input_cost_per_token"] + 500 * known["output_cost_per_token"])


def test_an_unpriced_model_is_warned_about_once_per_client(
        make_client: Callable[..., LiteLLMClient], caplog: pytest.LogCaptureFixture) -> None:
    client = make_client(model="openai/self-hosted-7b")
    with caplog.at_level(logging.WARNING, logger="dewey.llm"):
        client.generate_completion(MESSAGES)
        client.generate_completion(MESSAGES)
    warned = [r.getMessage() for r in caplog.records if "has no price" in r.getMessage()]
    assert len(warned) == 1 and "openai/self-hosted-7b" in warned[0]
    assert any("has no price" in str(problem) for problem in client.check())


def test_config_check_flags_limits_and_prices_that_match_no_model(
        make_client: Callable[..., LiteLLMClient]) -> None:
    client = make_client(rate_limits={"gpt-4o-mini": {"rpm": 5}, "gpt-4": {"rpm": 5}},
                         prices={"claude-haiku": {"price_as": "no-such-model"}})
    problems = [str(problem) for problem in client.check()]
    assert any("rate_limits: 'gpt-4'" in p for p in problems)
    assert not any("rate_limits: 'gpt-4o-mini'" in p for p in problems)
    assert any("prices: 'claude-haiku' matches no model" in p for p in problems)
    assert any("priced as 'no-such-model'" in p for p in problems)


def test_the_aliases_command_and_usage_listing_unpriced_models(tmp_path: Path, provider: FakeProvider) -> None:
    (tmp_path / "dewey.yaml").write_text("llm:\n  aliases: {fast: gpt-4o-mini}\n")
    env = cli_env(tmp_path, provider, LITELLM_MODEL="openai/self-hosted-7b")
    listed = dewey(["aliases", "--json"], env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == {"fast": "gpt-4o-mini"}
    assert "fast" in dewey(["aliases"], env, tmp_path).stdout
    chat = dewey(["chat", "hello"], env, tmp_path)
    assert chat.returncode == 0, chat.stderr
    assert "openai/self-hosted-7b has no price" in chat.stderr
    report = dewey(["usage", "--json"], env, tmp_path)
    assert json.loads(report.stdout)["unpriced"] == ["openai/self-hosted-7b"]
    checked = dewey(["config", "check"], env, tmp_path)
    assert "openai/self-hosted-7b has no price" in checked.stderr
