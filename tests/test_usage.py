"""Cost tracking, the usage ledger and budgets, end to end: the real client, LiteLLM's
price map and HTTP to the fake provider; the ledger read back from its storage."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dewey.llm import (
    AsyncLiteLLMClient,
    LiteLLMClient,
    LiteLLMConfig,
    LLMBudgetExceededError,
    LLMConfigError,
    LLMError,
    LLMServerError,
)
from dewey.llm._usage import PostgresLedger, UsageRecord, UsageSummary, open_ledger
from tests.conftest import TEST_KEY
from tests.servers.fake_provider import FakeProvider, Reply
from tests.servers.postgres import DOWN_PG_URL, PG_URL, needs_postgres

MINI = "openai/gpt-4o-mini"


@pytest.fixture
def pg_usage_db(pg_table: str) -> str:
    """A ``usage_db`` URL naming a Postgres table of this test's own, dropped afterwards."""
    return f"{PG_URL}?table={pg_table}"


def price(client: LiteLLMClient, model: str, prompt_tokens: int, completion_tokens: int = 0) -> float:
    """What LiteLLM's price map says ``model`` charges for these tokens."""
    details = client.get_model_details(model)
    cost: float = (prompt_tokens * details["input_cost_per_token"]
                   + completion_tokens * details.get("output_cost_per_token", 0.0))
    return cost


def exactly(value: float) -> Any:
    return pytest.approx(value, rel=1e-12, abs=0)


def rows(client: LiteLLMClient | AsyncLiteLLMClient) -> list[UsageRecord]:
    """The ledger's rows, oldest first, read back from storage by a ledger of their own."""
    # The client has no public flush, and another ledger reads only what reached storage.
    client._ledger.flush()  # noqa: SLF001 - see above
    with open_ledger(client.config.usage_db) as ledger:
        return list(reversed(ledger.records()))


def ledger_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "dewey.llm" and r.levelno == logging.WARNING]


def last_body(provider: FakeProvider) -> dict[str, Any]:
    body = provider.requests[-1].json
    assert body is not None
    return body


def default_ledger_file() -> Path:
    return Path(os.environ["XDG_DATA_HOME"]) / "dewey-llm" / "usage.db"


# --- what one call costs ------------------------------------------------------------------------

def test_cost_of_a_priced_model_is_exact_in_the_response_the_client_and_the_ledger(
        make_client: Any, provider: FakeProvider) -> None:
    client = make_client()
    expected = price(client, "gpt-4o-mini", 1000, 500)
    assert expected > 0
    provider.script("gpt-4o-mini", Reply.ok("x", prompt_tokens=1000, completion_tokens=500, delay=0.2))

    before = time.time()
    response = client.generate_completion("hi")
    after = time.time()

    assert client.completion_cost(response) == exactly(expected)
    assert client.total_cost == exactly(expected)
    [row] = rows(client)
    assert (row.model, row.provider, row.kind, row.outcome) == (MINI, "openai", "completion", "ok")
    assert (row.prompt_tokens, row.completion_tokens, row.cached_tokens) == (1000, 500, 0)
    assert row.cost_usd == exactly(expected)
    assert (row.cache_hit, row.saved_usd, row.attempt, row.status_code) == (False, 0.0, 1, None)
    assert 0.2 <= row.latency_s <= after - before  # the server's delay, within the call
    assert before <= row.time <= after


def test_default_ledger_is_a_sqlite_file_under_xdg_data_home(make_client: Any) -> None:
    assert not default_ledger_file().exists()
    client = make_client()
    client.generate_completion("hi")
    client.close()  # flushes
    assert default_ledger_file().is_file()
    with open_ledger() as ledger:  # a new reader, as another process would open it
        assert [r.model for r in ledger.records()] == [MINI]
        assert ledger.location == str(default_ledger_file())


def test_a_failed_attempt_and_the_fallback_each_record_a_row(
        make_client: Any, provider: FakeProvider) -> None:
    client = make_client(max_retries=1, fallback_models=["openai/gpt-4o"])
    provider.script("gpt-4o-mini", Reply.error(429), Reply.error(500))
    provider.script("gpt-4o", Reply.ok("x", prompt_tokens=100, completion_tokens=50))

    response = client.generate_completion("hi")

    expected = price(client, "gpt-4o", 100, 50)
    assert [(r.model, r.outcome, r.attempt, r.status_code) for r in rows(client)] == [
        (MINI, "LLMRateLimitError", 1, 429),
        (MINI, "LLMServerError", 2, 500),
        ("openai/gpt-4o", "ok", 1, None),
    ]
    assert [r.cost_usd for r in rows(client)] == [0.0, 0.0, exactly(expected)]
    assert all(r.latency_s > 0 for r in rows(client))
    assert client.completion_cost(response) == exactly(expected)
    assert client.total_cost == exactly(expected)


def test_a_call_that_fails_everywhere_records_every_attempt_and_costs_nothing(
        make_client: Any, provider: FakeProvider) -> None:
    client = make_client(max_retries=0)
    provider.script("gpt-4o-mini", Reply.error(400, "bad"))
    with pytest.raises(LLMError):
        client.generate_completion("hi")
    [row] = rows(client)
    assert (row.outcome, row.status_code, row.cost_usd) == ("LLMBadRequestError", 400, 0.0)
    assert client.total_cost == 0.0


# --- streams and embeddings ----------------------------------------------------------------------

def test_a_stream_records_the_usage_the_provider_reports(
        make_client: Any, provider: FakeProvider) -> None:
    client = make_client()
    # Token counts no tokenizer would give for these words: they must come from the provider.
    provider.script("gpt-4o-mini", Reply.ok("three little words", prompt_tokens=321,
                                            completion_tokens=45))
    stream = client.generate_completion("hi", stream=True, tags=["streamed"])
    assert stream.text() == "three little words"

    assert last_body(provider)["stream_options"] == {"include_usage": True}
    expected = price(client, "gpt-4o-mini", 321, 45)
    [row] = rows(client)
    assert (row.kind, row.outcome, row.prompt_tokens, row.completion_tokens) == (
        "stream", "ok", 321, 45)
    assert row.cost_usd == exactly(expected)
    assert row.tags == ("streamed",)
    assert client.completion_cost(stream) == exactly(expected)
    assert client.completion_cost(stream.response) == exactly(expected)
    assert client.total_cost == exactly(expected)


def test_a_cut_stream_is_recorded_as_a_failure_and_nothing_is_charged_or_cached(
        make_client: Any, provider: FakeProvider) -> None:
    client = make_client(cache="memory")
    provider.script("gpt-4o-mini", Reply.cut_stream(after_chunks=2))
    stream = client.generate_completion("hi", stream=True)
    with pytest.raises(LLMServerError, match="broke after"):
        stream.text()
    assert list(stream) == []  # reading on after the break: the stream just ends ...

    [row] = rows(client)  # ... and records no success for the partial answer
    assert (row.kind, row.outcome, row.cost_usd) == ("stream", "LLMServerError", 0.0)
    assert client.total_cost == 0.0 and client.completion_cost(stream) == 0.0
    # The partial answer was not cached either: asking again reaches the provider.
    assert client.generate_completion("hi", stream=True).text() == "echo: hi"
    assert len(provider.requests) == 2
    assert [r.outcome for r in rows(client)] == ["LLMServerError", "ok"]


def test_embedding_usage_is_recorded(make_client: Any) -> None:
    client = make_client()
    response = client.generate_embedding(["alpha beta", "gamma"])  # the fake counts 3 tokens

    expected = price(client, "text-embedding-3-small", 3)
    assert expected > 0
    [row] = rows(client)
    assert (row.model, row.kind, row.outcome) == ("text-embedding-3-small", "embedding", "ok")
    assert (row.prompt_tokens, row.completion_tokens) == (3, 0)
    assert row.cost_usd == exactly(expected)
    assert client.completion_cost(response) == exactly(expected)
    assert client.total_cost == exactly(expected)


def test_async_calls_are_recorded_too(provider: FakeProvider) -> None:
    client = AsyncLiteLLMClient(config=LiteLLMConfig(
        model=MINI, api_base=provider.openai_base, api_key=TEST_KEY,
        embedding_model="openai/text-embedding-3-small"))
    provider.script("gpt-4o-mini", Reply.ok("a", prompt_tokens=10, completion_tokens=2),
                    Reply.ok("b c", prompt_tokens=20, completion_tokens=4))

    async def main() -> None:
        await client.generate_completion("one", tags=["async"])
        stream = await client.generate_completion("two", stream=True)
        assert await stream.atext() == "b c"
        await client.generate_embedding("three words here")

    try:
        asyncio.run(main())
        assert [(r.kind, r.prompt_tokens, r.completion_tokens) for r in rows(client)] == [
            ("completion", 10, 2), ("stream", 20, 4), ("embedding", 3, 0)]
        assert client.total_cost == exactly(sum(r.cost_usd for r in rows(client)))
    finally:
        client.close()


# --- labels, caching, summaries ------------------------------------------------------------------

def test_tags_and_user_are_recorded(make_client: Any, provider: FakeProvider) -> None:
    client = make_client()
    client.generate_completion("hi", tags=["nightly", "eval"], user="alice")
    assert last_body(provider)["user"] == "alice"  # user is the provider's too
    assert "tags" not in last_body(provider)  # tags are ours only
    client.generate_embedding("hello", tags="indexing", user="bob")
    client.generate_completion("hi again")

    assert [(r.kind, r.tags, r.user) for r in rows(client)] == [
        ("completion", ("nightly", "eval"), "alice"),
        ("embedding", ("indexing",), "bob"),
        ("completion", (), None),
    ]


def test_a_cache_hit_costs_nothing_and_records_what_it_saved(
        make_client: Any, provider: FakeProvider) -> None:
    client = make_client(cache="memory")
    provider.script("gpt-4o-mini", Reply.ok("x", prompt_tokens=1000, completion_tokens=500))
    original = client.completion_cost(client.generate_completion("hi", tags=["t"]))
    assert original == exactly(price(client, "gpt-4o-mini", 1000, 500))

    hit = client.generate_completion("hi", tags=["t"])

    assert hit.cache_hit is True and len(provider.requests) == 1
    assert client.completion_cost(hit) == 0.0
    assert client.total_cost == exactly(original)
    fresh, cached = rows(client)
    assert (fresh.cache_hit, fresh.cost_usd, fresh.saved_usd) == (False, exactly(original), 0.0)
    assert (cached.cache_hit, cached.cost_usd, cached.saved_usd) == (True, 0.0, exactly(original))
    assert (cached.model, cached.outcome, cached.tags) == (MINI, "ok", ("t",))
    assert (cached.prompt_tokens, cached.completion_tokens) == (1000, 500)
    [summary] = client.usage()
    assert (summary.calls, summary.cache_hits) == (2, 1)
    assert summary.saved_usd == exactly(original)


def test_a_cache_hit_on_a_model_named_per_call_adds_up_with_its_calls(
        make_client: Any, provider: FakeProvider) -> None:
    client = make_client(cache="memory", model="claude-3-5-haiku-latest",
                         api_base=provider.anthropic_base)
    client.generate_completion("hi")
    client.generate_completion("hi")  # a hit
    assert len(provider.requests) == 1
    assert [(r.model, r.cache_hit) for r in rows(client)] == [
        ("anthropic/claude-3-5-haiku-latest", False), ("anthropic/claude-3-5-haiku-latest", True)]


def test_usage_summarises_by_model(make_client: Any, provider: FakeProvider) -> None:
    client = make_client(max_retries=0)
    provider.script("gpt-4o-mini", Reply.ok("a", prompt_tokens=1000, completion_tokens=500),
                    Reply.error(500), Reply.ok("b", prompt_tokens=1000, completion_tokens=500))
    provider.script("gpt-4o", Reply.ok("c", prompt_tokens=100, completion_tokens=50))
    client.generate_completion("one")
    with pytest.raises(LLMServerError):
        client.generate_completion("two")
    client.generate_completion("three")
    client.generate_completion("four", model="openai/gpt-4o")

    mini, big = price(client, "gpt-4o-mini", 1000, 500), price(client, "gpt-4o", 100, 50)
    assert 2 * mini > big  # so that the order below is by cost, most expensive first
    assert client.usage() == [
        UsageSummary(MINI, calls=3, errors=1, cache_hits=0, prompt_tokens=2000,
                     completion_tokens=1000, cost_usd=exactly(2 * mini), saved_usd=0.0),
        UsageSummary("openai/gpt-4o", calls=1, errors=0, cache_hits=0, prompt_tokens=100,
                     completion_tokens=50, cost_usd=exactly(big), saved_usd=0.0),
    ]
    assert client.total_cost == exactly(2 * mini + big)
    assert client.usage(since=time.time() + 60) == []


def test_track_usage_false_writes_nothing(make_client: Any, provider: FakeProvider) -> None:
    client = make_client(track_usage=False)
    provider.script("gpt-4o-mini", Reply.ok("x", prompt_tokens=1000, completion_tokens=500))
    response = client.generate_completion("hi")
    client.generate_completion("hi", stream=True).text()
    client.generate_embedding("hi")
    client.close()

    assert not (Path(os.environ["XDG_DATA_HOME"]) / "dewey-llm").exists()
    assert client.completion_cost(response) == exactly(price(client, "gpt-4o-mini", 1000, 500))
    assert client.total_cost > client.completion_cost(response)  # still counted in memory
    with pytest.raises(LLMConfigError, match="track_usage"):
        client.usage()


# --- budgets ----------------------------------------------------------------------------------------

def test_a_spent_budget_refuses_calls_before_anything_is_sent(
        make_client: Any, provider: FakeProvider) -> None:
    probe = make_client(track_usage=False)
    cost = price(probe, "gpt-4o-mini", 1000, 500)
    client = make_client(budget={"total_usd": 1.5 * cost}, cache="memory")
    provider.script("gpt-4o-mini", *[Reply.ok("x", prompt_tokens=1000, completion_tokens=500)] * 2)
    client.generate_completion("one")  # $0 spent before it
    client.generate_completion("two")  # less than the budget spent before it
    assert len(provider.requests) == 2

    calls: list[Callable[[], object]] = [lambda: client.generate_completion("three"),
                                         lambda: client.generate_completion("three", stream=True),
                                         lambda: client.generate_embedding("three")]
    for call in calls:
        with pytest.raises(LLMBudgetExceededError, match=r"total budget spent.*nothing was sent") as caught:
            call()
        assert isinstance(caught.value, LLMError)
    assert len(provider.requests) == 2  # nothing new reached the provider

    # A cached answer costs nothing: it is still served.
    assert client.generate_completion("one").cache_hit is True
    assert len(provider.requests) == 2
    assert client.total_cost == exactly(2 * cost)


def test_spend_recorded_earlier_in_the_same_ledger_counts_against_budgets(
        make_client: Any, provider: FakeProvider) -> None:
    # Earlier spend, e.g. by another process using the same (default) ledger file.
    now = time.time()
    with open_ledger() as ledger:
        ledger.record(UsageRecord(MINI, "openai", "completion", "ok", cost_usd=3.0,
                                  time=now - 40 * 86400))
        ledger.record(UsageRecord(MINI, "openai", "completion", "ok", cost_usd=0.5, time=now))

    make_client(budget={"daily_usd": 1.0}).generate_completion("under the daily budget")
    assert len(provider.requests) == 1
    with pytest.raises(LLMBudgetExceededError, match=r"daily budget spent: \$0\.50"):
        make_client(budget={"daily_usd": 0.5}).generate_completion("hi")
    with pytest.raises(LLMBudgetExceededError, match=r"total budget spent: \$3\.50"):
        make_client(budget={"total_usd": 3.5}).generate_completion("hi")
    assert len(provider.requests) == 1


def test_a_postgres_usage_db_can_name_its_table() -> None:
    ledger = open_ledger("postgresql://u@db:5432/x?sslmode=disable&table=team_a.usage")
    assert isinstance(ledger, PostgresLedger)
    # Where rows go: seen without a database only on the ledger itself.
    assert ledger._table == "team_a.usage"  # noqa: SLF001 - see above
    assert ledger.url == "postgresql://u@db:5432/x?sslmode=disable"  # libpq never sees table=
    assert open_ledger("postgresql://u@db/x")._table == "dewey_usage"  # noqa: SLF001
    with pytest.raises(LLMConfigError, match="table name"):
        open_ledger("postgresql://u@db/x?table=usage;drop")
    with pytest.raises(LLMConfigError, match="more than once"):
        open_ledger("postgresql://u@db/x?table=a&table=b")


SPENDER = textwrap.dedent("""
    import os
    from dewey.llm import LiteLLMClient, LiteLLMConfig

    client = LiteLLMClient(config=LiteLLMConfig(
        model="openai/gpt-4o-mini", api_base=os.environ["FAKE_OPENAI_BASE"],
        api_key=os.environ["FAKE_API_KEY"], usage_db=os.environ["USAGE_DB"]))
    client.generate_completion("spend", tags=["process-a"])
    client.close()
    print(repr(client.total_cost))
""")


@needs_postgres
def test_processes_share_a_postgres_ledger_and_its_budget(
        make_client: Any, provider: FakeProvider, pg_usage_db: str) -> None:
    provider.script("gpt-4o-mini", Reply.ok("x", prompt_tokens=1000, completion_tokens=500))
    env = {**os.environ, "FAKE_OPENAI_BASE": provider.openai_base, "FAKE_API_KEY": TEST_KEY,
           "USAGE_DB": pg_usage_db}
    spender = subprocess.run([sys.executable, "-c", SPENDER], env=env, capture_output=True,
                             text=True, timeout=60)
    assert spender.returncode == 0, spender.stderr
    assert "WARNING" not in spender.stderr.upper(), spender.stderr
    spent = float(spender.stdout)
    assert spent == exactly(price(make_client(track_usage=False), "gpt-4o-mini", 1000, 500))
    assert len(provider.requests) == 1

    # This process, with a budget below what the other one spent, sends nothing.
    with pytest.raises(LLMBudgetExceededError, match="total budget spent"):
        make_client(usage_db=pg_usage_db, budget={"total_usd": spent * 0.9}).generate_completion("hi")
    assert len(provider.requests) == 1

    # Both processes' calls add up in the one ledger.
    client = make_client(usage_db=pg_usage_db, budget={"total_usd": spent * 10})
    provider.script("gpt-4o-mini", Reply.ok("x", prompt_tokens=1000, completion_tokens=500))
    client.generate_completion("hi", tags=["process-b"])
    assert [(r.tags, r.cost_usd) for r in rows(client)] == [
        (("process-a",), exactly(spent)), (("process-b",), exactly(spent))]
    [summary] = client.usage()
    assert (summary.key, summary.calls, summary.cost_usd) == (MINI, 2, exactly(2 * spent))


# --- a ledger that is down -----------------------------------------------------------------------

@pytest.mark.parametrize("where", ["postgres", "sqlite"])
def test_calls_succeed_with_one_warning_when_the_ledger_is_unavailable(
        make_client: Any, provider: FakeProvider, caplog: pytest.LogCaptureFixture,
        tmp_path: Path, where: str) -> None:
    if where == "postgres":
        usage_db = DOWN_PG_URL  # nothing listens on port 1
    else:
        (tmp_path / "not-a-directory").write_text("")
        usage_db = str(tmp_path / "not-a-directory" / "usage.db")  # cannot be created
    client = make_client(usage_db=usage_db)

    for n in range(3):
        assert client.generate_completion(f"call {n}").choices[0].message.content == f"echo: call {n}"
    client.generate_completion("streamed", stream=True).text()
    client.generate_embedding("embedded")
    client.close()  # flushes the ledger

    assert len(provider.requests) == 5
    [warning] = ledger_warnings(caplog)
    assert "usage ledger" in warning and "unavailable" in warning
    assert client.total_cost > 0  # the client's own count does not depend on the ledger


def test_an_abandoned_stream_is_recorded_and_not_cached(make_client: Any, provider: FakeProvider) -> None:
    client = make_client(cache=True)  # the SQLite cache, shared by both clients
    with client.generate_completion("one two three four", stream=True) as stream:
        next(stream)
    client.close()
    ledger = open_ledger(None)
    assert [r.outcome for r in ledger.records()] == ["abandoned"]
    ledger.close()
    make_client(cache=True).generate_completion("one two three four")
    assert len(provider.requests) == 2


def test_embedding_cache_hits_record_what_they_saved(make_client: Any, provider: FakeProvider) -> None:
    provider.script("text-embedding-3-small", Reply.ok(prompt_tokens=1000))
    client = make_client(cache="memory", embedding_model="openai/text-embedding-3-small")
    first = client.generate_embedding(["alpha", "beta"])
    paid = client.completion_cost(first)
    assert paid > 0
    again = client.generate_embedding(["alpha", "beta"])
    assert client.completion_cost(again) == 0.0
    client.close()
    hit = open_ledger(None).records()[0]
    assert (hit.cache_hit, hit.cost_usd) == (True, 0.0)
    assert hit.saved_usd == pytest.approx(paid)
    assert len(provider.requests) == 1
