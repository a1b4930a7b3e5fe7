"""The async client and batches: same behaviour as the sync client, order kept, bounds honoured."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dewey.llm import (
    AsyncLiteLLMClient,
    LiteLLMConfig,
    LLMAuthenticationError,
    LLMBadRequestError,
    LLMServerError,
    Message,
    RateLimit,
)
from dewey.llm._ratelimit import open_limiter
from tests.conftest import TEST_KEY
from tests.servers.fake_provider import FakeProvider, Reply
from tests.servers.redis_server import REDIS_URL, needs_redis


def async_client(provider: FakeProvider, **settings: Any) -> AsyncLiteLLMClient:
    values: dict[str, Any] = {"model": "openai/gpt-4o-mini", "api_base": provider.openai_base,
                              "api_key": TEST_KEY, "backoff_base": 0.01,
                              "embedding_model": "openai/text-embedding-3-small"}
    return AsyncLiteLLMClient(config=LiteLLMConfig(**{**values, **settings}))


def test_async_completion_stream_and_embedding(provider: FakeProvider) -> None:
    client = async_client(provider)

    async def main() -> tuple[str, str, int]:
        response = await client.generate_completion([Message(role="user", content="Hello!")])
        stream = await client.generate_completion("stream me", stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        embedding = await client.generate_embedding(["a", "b"])
        return response.choices[0].message.content, text, len(embedding["data"])

    assert asyncio.run(main()) == ("echo: Hello!", "echo: stream me", 2)


def test_async_retries_and_falls_back_like_sync(provider: FakeProvider) -> None:
    provider.script("gpt-4o-mini", Reply.error(429, retry_after=0.2), Reply.error(401))
    client = async_client(provider, fallback_models=["openai/gpt-4o"])
    response = asyncio.run(client.generate_completion("hi"))
    assert response.choices[0].message.content == "echo: hi"
    assert [r.model for r in provider.requests] == ["gpt-4o-mini", "gpt-4o-mini", "gpt-4o"]
    assert provider.requests[1].time - provider.requests[0].time >= 0.19


def test_async_stream_falls_back_before_the_first_token(provider: FakeProvider) -> None:
    provider.script("gpt-4o-mini", Reply.error(500), Reply.error(500), Reply.error(500))
    client = async_client(provider, fallback_models=["openai/gpt-4o"])

    async def main() -> str:
        stream = await client.generate_completion("hi", stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    assert asyncio.run(main()) == "echo: hi"
    assert [r.model for r in provider.requests][-1] == "gpt-4o"


def test_async_errors_are_typed(provider: FakeProvider) -> None:
    provider.script("gpt-4o-mini", Reply.error(401))
    with pytest.raises(LLMAuthenticationError):
        asyncio.run(async_client(provider).generate_completion("hi"))
    provider.script("gpt-4o-mini", Reply.cut_stream(after_chunks=2))

    async def read_all() -> None:
        stream = await async_client(provider).generate_completion("one two three", stream=True)
        async for _ in stream:
            pass

    with pytest.raises(LLMServerError, match="broke after"):
        asyncio.run(read_all())


def test_sync_batch_keeps_order_and_bounds_concurrency(make_client: Any, provider: FakeProvider) -> None:
    provider.script_all(*[Reply.slow(0.05)] * 40)
    prompts = [f"question {i}" for i in range(40)]
    results = make_client().generate_completions(prompts, concurrency=4)
    assert [r.choices[0].message.content for r in results] == [f"echo: {p}" for p in prompts]
    assert provider.peak_in_flight <= 4
    assert provider.peak_in_flight >= 2  # and it did run calls side by side


def test_async_batch_bounds_concurrency(provider: FakeProvider) -> None:
    provider.script_all(*[Reply.slow(0.05)] * 60)
    prompts = [[{"role": "user", "content": f"q{i}"}] for i in range(60)]
    results = asyncio.run(async_client(provider).generate_completions(prompts, concurrency=10))
    assert [r.choices[0].message.content for r in results] == [f"echo: q{i}" for i in range(60)]
    assert 2 <= provider.peak_in_flight <= 10


def test_batch_errors_returned_in_place(make_client: Any, provider: FakeProvider) -> None:
    provider.script("gpt-4o-mini", Reply.ok(), Reply.error(400, "bad one"), Reply.ok())
    results = make_client().generate_completions(["a", "b", "c"], concurrency=1, return_exceptions=True)
    assert results[0].choices[0].message.content == "echo: a"
    assert isinstance(results[1], LLMBadRequestError)
    assert results[2].choices[0].message.content == "echo: c"
    provider.script("gpt-4o-mini", Reply.error(400))
    with pytest.raises(LLMBadRequestError):
        make_client().generate_completions(["a", "b"], concurrency=1)


def test_embedding_batches_are_provider_sized(make_client: Any, provider: FakeProvider) -> None:
    client = make_client(embedding_model="openai/text-embedding-3-small")
    texts = [f"text {i}" for i in range(250)]
    vectors = client.generate_embeddings(texts, batch_size=100, concurrency=2)
    sizes = sorted(len(r.json["input"]) for r in provider.requests)
    assert sizes == [50, 100, 100]
    single = client.generate_embedding("text 137")["data"][0]["embedding"]
    assert vectors[137] == single and len(vectors) == 250


def test_async_embedding_batches_with_errors(provider: FakeProvider) -> None:
    provider.script("text-embedding-3-small", Reply.ok(), Reply.error(400, "too long"))
    client = async_client(provider)
    vectors = asyncio.run(client.generate_embeddings(["a", "b", "c", "d"], batch_size=2,
                                                     concurrency=1, return_exceptions=True))
    assert isinstance(vectors[0], list) and isinstance(vectors[1], list)
    assert isinstance(vectors[2], LLMBadRequestError) and vectors[2] is vectors[3]


@needs_redis
def test_client_rate_limit_is_shared_through_redis(make_client: Any, provider: FakeProvider,
                                                   redis_namespace: str) -> None:
    model = f"openai/{redis_namespace}"
    client = make_client(model=model, rate_limits={model: {"rpm": 120}}, rate_limit_url=REDIS_URL)
    client.generate_completion("before", model="openai/gpt-4o-mini")  # not limited: goes at once
    other_process = open_limiter({model: RateLimit(rpm=120)}, REDIS_URL)
    for _ in range(120):  # another machine spends the whole burst
        other_process.acquire(model)
    assert client.generate_completion("hi").choices[0].message.content == "echo: hi"
    before, limited = provider.requests
    # Its turn comes one refill (0.5 s at 120 rpm) after the burst was spent, which was
    # after "before" arrived.  With a bucket of its own the client would have gone at once.
    assert (before.model, limited.model) == ("gpt-4o-mini", redis_namespace)
    assert limited.time - before.time >= 0.45
    other_process.close()
