"""Streams read the way the README says, on every model: through LiteLLM and real HTTP to
the fake provider (and the embedded local model), the ledger read back from storage."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dewey.llm import AsyncCompletionStream, AsyncLiteLLMClient, LiteLLMClient, LiteLLMConfig, LLMTimeoutError
from dewey.llm._usage import UsageRecord, open_ledger
from tests.conftest import TEST_KEY
from tests.servers.fake_provider import FakeProvider, Reply

WIRE = "gpt-4o-mini"
TEN_WORDS = "one two three four five six seven eight nine ten"  # 5 s at 0.5 s a word


def rows(client: Any) -> list[UsageRecord]:
    """The ledger's rows, oldest first, read back from storage by a ledger of their own."""
    # The client has no public flush, and another ledger reads only what reached storage.
    client._ledger.flush()  # noqa: SLF001 - see above
    with open_ledger(client.config.usage_db) as ledger:
        return list(reversed(ledger.records()))


def readme_loop(stream: Any) -> list[str]:
    """The loop the README shows, word for word (collected instead of printed)."""
    return [chunk.choices[0].delta.content for chunk in stream]


def price(client: Any, prompt_tokens: int, completion_tokens: int) -> float:
    details = client.get_model_details("gpt-4o-mini")
    cost: float = (prompt_tokens * details["input_cost_per_token"]
                   + completion_tokens * details["output_cost_per_token"])
    return cost


def async_client(provider: FakeProvider, **settings: Any) -> AsyncLiteLLMClient:
    return AsyncLiteLLMClient(config=LiteLLMConfig(
        model="openai/gpt-4o-mini", api_base=provider.openai_base, api_key=TEST_KEY, **settings))


# --- the usage chunk we ask for ------------------------------------------------------------------

def test_the_readme_loop_reads_every_chunk_and_the_usage_is_still_recorded(
        make_client: Any, provider: FakeProvider) -> None:
    client = make_client()
    provider.script(WIRE, Reply.ok("three little words", prompt_tokens=321, completion_tokens=45))
    stream = client.generate_completion("hi", stream=True)
    pieces = readme_loop(stream)

    assert "".join(p or "" for p in pieces) == "three little words"
    assert pieces[-1] is None  # the closing chunk (finish_reason) is the last one seen
    # We asked for usage to price the stream; the chunk that carried it was not shown ...
    assert provider.requests[-1].json["stream_options"] == {"include_usage": True}
    # ... but its tokens were priced and recorded.
    [row] = rows(client)
    assert (row.kind, row.outcome, row.prompt_tokens, row.completion_tokens) == ("stream", "ok", 321, 45)
    assert row.cost_usd == pytest.approx(price(client, 321, 45), rel=1e-12)
    assert client.completion_cost(stream) == pytest.approx(row.cost_usd, rel=1e-12)
    assert stream.response.usage.completion_tokens == 45


def test_a_cached_stream_replays_as_the_live_one_read(make_client: Any, provider: FakeProvider) -> None:
    client = make_client(cache="memory")
    live = readme_loop(client.generate_completion("Tell me a story", stream=True))
    replayed = readme_loop(client.generate_completion("Tell me a story", stream=True))

    assert len(provider.requests) == 1  # the second came from the cache
    # Split into pieces of its own, but read the same way: text, then the closing chunk.
    assert "".join(p or "" for p in replayed) == "".join(p or "" for p in live) == "echo: Tell me a story"
    assert replayed[-1] is None and live[-1] is None


def test_the_async_readme_loop_reads_every_chunk_live_and_replayed(provider: FakeProvider) -> None:
    client = async_client(provider, cache="memory")
    provider.script(WIRE, Reply.ok("a b c", prompt_tokens=7, completion_tokens=3))

    async def main() -> tuple[list[Any], list[Any]]:
        live = [c.choices[0].delta.content
                async for c in await client.generate_completion("hi", stream=True)]
        replayed = [c.choices[0].delta.content
                    async for c in await client.generate_completion("hi", stream=True)]
        return live, replayed

    try:
        live, replayed = asyncio.run(main())
        assert "".join(p or "" for p in live) == "".join(p or "" for p in replayed) == "a b c"
        assert live[-1] is None and replayed[-1] is None
        assert [(r.outcome, r.cache_hit, r.prompt_tokens, r.completion_tokens) for r in rows(client)] == [
            ("ok", False, 7, 3), ("ok", True, 7, 3)]
    finally:
        client.close()


def test_the_async_readme_loop_on_anthropic_through_litellm(provider: FakeProvider) -> None:
    # LiteLLM's Anthropic stream opens its bytes in its own __aiter__, which what we put
    # under LiteLLM's stream wrapper (the refusal tap) must call before reading on.
    provider.script("claude-3-5-haiku-20241022", Reply.ok("a b c", prompt_tokens=7, completion_tokens=3))

    async def main() -> tuple[list[Any], list[UsageRecord]]:
        async with AsyncLiteLLMClient(config=LiteLLMConfig(
                model="anthropic/claude-3-5-haiku-20241022", api_base=provider.anthropic_base,
                api_key=TEST_KEY, max_retries=0)) as client:
            stream = await client.generate_completion("hi", stream=True)
            return [c.choices[0].delta.content async for c in stream], rows(client)

    pieces, [row] = asyncio.run(main())
    assert "".join(p or "" for p in pieces) == "a b c"
    assert (row.outcome, row.prompt_tokens, row.completion_tokens) == ("ok", 7, 3)
    assert len(provider.requests) == 1


def test_the_readme_loop_on_the_local_model() -> None:
    client = LiteLLMClient()  # no key: the embedded local model
    stream = client.generate_completion("Count: one, two,", stream=True, max_tokens=8, temperature=0)
    pieces = readme_loop(stream)

    assert "".join(p or "" for p in pieces) == stream.response.choices[0].message.content
    [row] = rows(client)
    assert (row.model, row.outcome) == ("local/smollm2", "ok")
    assert row.prompt_tokens > 0 and row.completion_tokens > 0
    client.close()


# --- the caller's own stream_options ------------------------------------------------------------

def test_a_caller_asking_for_usage_gets_the_usage_chunk(make_client: Any, provider: FakeProvider) -> None:
    client = make_client(cache="memory")
    provider.script(WIRE, Reply.ok("a b", prompt_tokens=11, completion_tokens=2))
    options = {"include_usage": True}
    live = list(client.generate_completion("hi", stream=True, stream_options=options))
    replayed = list(client.generate_completion("hi", stream=True, stream_options=options))

    for chunks in (live, replayed):
        assert chunks[-1].choices == []
        assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (11, 2)
        assert all(chunk.choices for chunk in chunks[:-1])
    assert [(r.prompt_tokens, r.completion_tokens) for r in rows(client)] == [(11, 2), (11, 2)]


# --- servers that send usage unasked ------------------------------------------------------------

def test_a_usage_chunk_sent_unasked_is_not_shown_but_is_recorded(
        make_client: Any, provider: FakeProvider) -> None:
    # A provider we do not ask for stream usage, behind a gateway that sends it anyway.
    # (On OpenAI-format streams LiteLLM itself keeps such a chunk back; this holds the
    # caller's view and the ledger to it, whichever layer does the work.)
    client = make_client(model="deepinfra/served-model")
    provider.script("served-model", Reply.ok("x y z", prompt_tokens=97, completion_tokens=41,
                                             usage_unasked=True))
    pieces = readme_loop(client.generate_completion("hi", stream=True))

    assert "stream_options" not in (provider.requests[-1].body or {})
    assert "".join(p or "" for p in pieces) == "x y z"
    [row] = rows(client)
    assert (row.outcome, row.prompt_tokens, row.completion_tokens) == ("ok", 97, 41)


# --- async streams are read with async for --------------------------------------------------------

def test_an_async_stream_read_with_a_plain_for_says_how_and_records_nothing(
        provider: FakeProvider) -> None:
    client = async_client(provider, cache="memory")

    async def main() -> str:
        stream: AsyncCompletionStream = await client.generate_completion("one two three four", stream=True)
        with pytest.raises(TypeError, match="async for"):
            for _ in stream:
                pass
        with pytest.raises(TypeError, match=r"await stream\.atext\(\)"):
            stream.text()
        assert rows(client) == []  # nothing recorded as done ...
        return await stream.atext()  # ... and the stream can still be read the right way

    try:
        assert asyncio.run(main()) == "echo: one two three four"
        # The whole answer, not a partial one, was cached: the next call is answered whole.
        async def again() -> str:
            stream: AsyncCompletionStream = await client.generate_completion("one two three four", stream=True)
            return await stream.atext()

        assert asyncio.run(again()) == "echo: one two three four"
        assert len(provider.requests) == 1
        assert [r.outcome for r in rows(client)] == ["ok", "ok"]
    finally:
        client.close()


# --- the deadline covers the whole stream ---------------------------------------------------------

def test_a_stream_still_running_at_the_deadline_times_out_and_is_recorded(
        make_client: Any, provider: FakeProvider) -> None:
    client = make_client(deadline=2.0, cache="memory")
    provider.script(WIRE, Reply.ok(TEN_WORDS, chunk_delay=0.5))
    stream = client.generate_completion("hi", stream=True)
    seen: list[str] = []
    with pytest.raises(LLMTimeoutError, match="deadline"):
        for chunk in stream:
            seen.append(chunk.choices[0].delta.content or "")

    assert seen and "".join(seen) != TEN_WORDS
    [row] = rows(client)
    assert (row.kind, row.outcome) == ("stream", "LLMTimeoutError")
    assert client.total_cost == 0.0
    # Nothing partial was cached: asking again reaches the provider.
    assert client.generate_completion("hi", stream=True).text() == "echo: hi"
    assert len(provider.requests) == 2


def test_an_async_stream_still_running_at_the_deadline_times_out(provider: FakeProvider) -> None:
    client = async_client(provider, deadline=2.0)
    provider.script(WIRE, Reply.ok(TEN_WORDS, chunk_delay=0.5))

    async def main() -> None:
        stream = await client.generate_completion("hi", stream=True)
        with pytest.raises(LLMTimeoutError, match="deadline"):
            await stream.atext()

    try:
        asyncio.run(main())
        assert [(r.kind, r.outcome) for r in rows(client)] == [("stream", "LLMTimeoutError")]
    finally:
        client.close()
