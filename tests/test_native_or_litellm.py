"""The client works the same whichever transport sends a call, through real HTTP.

Each test runs once with ``transport="native"`` (the OpenAI wire spoken directly) and
once with ``transport="litellm"``; ``auto`` picks native for these OpenAI-compatible
routes.  The last tests prove a native call never imports LiteLLM, in a fresh process.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dewey.llm import (
    AsyncLiteLLMClient,
    ChatResponse,
    LiteLLMClient,
    LiteLLMConfig,
    LLMBudgetExceededError,
    LLMConfigError,
)
from tests.conftest import TEST_KEY
from tests.hidden_params import cache_hit, hidden_params
from tests.servers.fake_provider import FakeProvider, Reply
from tests.test_cli import cli_env, dewey

WIRE = "gpt-4o-mini"  # the model name the fake provider sees
Make = Callable[..., LiteLLMClient]


@pytest.fixture(params=["native", "litellm"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def client(make_client: Make, transport: str) -> LiteLLMClient:
    return make_client(transport=transport)


def content(response: Any) -> str:
    return str(response.choices[0].message.content)


def test_a_completion_is_one_response_type(client: LiteLLMClient, provider: FakeProvider) -> None:
    provider.script(WIRE, Reply.ok("hello there", prompt_tokens=12, completion_tokens=3))
    response = client.generate_completion("hi", temperature=0.5)
    assert type(response) is ChatResponse
    assert content(response) == response["choices"][0]["message"]["content"] == "hello there"
    assert response.usage.prompt_tokens == 12 and response.usage.completion_tokens == 3
    assert response.model_dump()["choices"][0]["message"]["role"] == "assistant"
    assert cache_hit(response) is False
    assert hidden_params(response)["dewey_cost"] == client.completion_cost(response) > 0
    sent = provider.requests[-1]
    assert sent.path == "/v1/chat/completions" and sent.body is not None
    assert sent.body["temperature"] == 0.5 and sent.headers["authorization"] == f"Bearer {TEST_KEY}"


def test_the_readme_stream_loop(client: LiteLLMClient, provider: FakeProvider) -> None:
    provider.script(WIRE, Reply.ok("one two three", prompt_tokens=5, completion_tokens=3))
    stream = client.generate_completion("count", stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    assert text == "one two three"
    assert type(stream.response) is ChatResponse and content(stream.response) == text
    assert stream.cost == client.total_cost > 0
    assert provider.requests[-1].body["stream_options"] == {"include_usage": True}  # type: ignore[index]


def test_a_tool_call(client: LiteLLMClient, provider: FakeProvider) -> None:
    provider.script(WIRE, Reply.tool_call("get_weather", {"city": "Paris"}))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    response = client.generate_completion("Weather in Paris?", tools=tools)
    call = response.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert response.choices[0].finish_reason == "tool_calls"


def test_embeddings(client: LiteLLMClient, provider: FakeProvider) -> None:
    response = client.generate_embedding(["one", "two"], model="text-embedding-3-small")
    assert type(response) is ChatResponse
    assert [item["index"] for item in response["data"]] == [0, 1]
    assert len(response.data[0].embedding) == 8 and response.usage.prompt_tokens > 0
    assert provider.requests[-1].path == "/v1/embeddings"


def test_retries_wait_as_retry_after_asks(client: LiteLLMClient, provider: FakeProvider) -> None:
    provider.script(WIRE, Reply.error(429, "slow down", retry_after_ms=300), Reply.ok("at last"))
    assert content(client.generate_completion("hi")) == "at last"
    first, second = provider.requests
    # The backoff is at most 0.05 s here: the gap is the server's 0.3 s (plus, on a cold
    # LiteLLM, its first error handling).
    assert 0.25 <= second.time - first.time < 5


def test_fallback_from_an_openai_compatible_server_to_anthropic_through_litellm(
        make_client: Make, provider: FakeProvider, transport: str) -> None:
    provider.script(WIRE, *[Reply.error(503, "down")] * 2)
    provider.script("claude-haiku-4-5", Reply.ok("from claude"))
    client = make_client(transport=transport, max_retries=1, fallback_models=[{
        "model": "anthropic/claude-haiku-4-5", "api_base": provider.anthropic_base, "api_key": TEST_KEY}])
    response = client.generate_completion("hi")
    assert content(response) == "from claude" and type(response) is ChatResponse
    assert [r.path for r in provider.requests] == ["/v1/chat/completions"] * 2 + ["/v1/messages"]


def test_a_cache_hit(make_client: Make, provider: FakeProvider, transport: str) -> None:
    client = make_client(transport=transport, cache="memory")
    first = client.generate_completion("cache me")
    again = client.generate_completion("cache me")
    assert len(provider.requests) == 1
    assert type(again) is ChatResponse and cache_hit(again) is True
    assert content(again) == content(first) and again.usage == first.usage


def test_the_ledger_records_the_same_cost_on_both(make_client: Make, provider: FakeProvider) -> None:
    costs = []
    for transport in ("native", "litellm"):
        provider.script(WIRE, Reply.ok("x", prompt_tokens=1000, completion_tokens=500))
        client = make_client(transport=transport, usage_db=f"{transport}.db")
        client.generate_completion("price me")
        [row] = client.usage()
        costs.append((row.cost_usd, row.prompt_tokens, row.completion_tokens, client.total_cost))
    assert costs[0] == costs[1] and costs[0][0] > 0


def test_a_spent_budget_refuses_before_sending(make_client: Make, provider: FakeProvider, transport: str) -> None:
    client = make_client(transport=transport, budget={"total_usd": 1e-9})
    provider.script(WIRE, Reply.ok("x", prompt_tokens=1000, completion_tokens=500))
    client.generate_completion("one")
    with pytest.raises(LLMBudgetExceededError):
        client.generate_completion("two")
    assert len(provider.requests) == 1


def test_a_rate_limited_client_still_answers(make_client: Make, transport: str) -> None:
    client = make_client(transport=transport, rate_limits={"*": {"rpm": 600}})
    assert [content(client.generate_completion(f"n{i}")) for i in range(3)] == ["echo: n0", "echo: n1", "echo: n2"]


def test_the_async_client_and_a_batch(provider: FakeProvider, transport: str) -> None:
    config = LiteLLMConfig(model="openai/gpt-4o-mini", api_base=provider.openai_base, api_key=TEST_KEY,
                           transport=transport, track_usage=False)

    async def main() -> tuple[Any, str, Any, list[Any]]:
        async with AsyncLiteLLMClient(config=config) as client:
            response = await client.generate_completion("hi")
            text = await (await client.generate_completion("stream", stream=True)).atext()
            vectors = await client.generate_embedding("v", model="text-embedding-3-small")
            batch = await client.generate_completions([f"b{i}" for i in range(6)], concurrency=3)
            return response, text, vectors, batch

    response, text, vectors, batch = asyncio.run(main())
    assert type(response) is ChatResponse and content(response) == "echo: hi"
    assert text == "echo: stream" and type(vectors) is ChatResponse
    assert [content(r) for r in batch] == [f"echo: b{i}" for i in range(6)]


def test_a_sync_batch(client: LiteLLMClient) -> None:
    answers = client.generate_completions([f"q{i}" for i in range(5)], concurrency=3)
    assert [content(r) for r in answers] == [f"echo: q{i}" for i in range(5)]


# --- LiteLLM is never imported for a native route ------------------------------------------------

CHILD = textwrap.dedent("""
    import asyncio, sys
    from dewey.llm import AsyncLiteLLMClient, LiteLLMClient
    base, key = sys.argv[1], sys.argv[2]
    with LiteLLMClient(model="openai/gpt-4o-mini", api_base=base, api_key=key) as client:
        assert client.generate_completion("hi").choices[0].message.content == "echo: hi"
        assert client.generate_completion("s", stream=True).text() == "echo: s"
        assert len(client.generate_embedding("e", model="text-embedding-3-small").data) == 1
        client.usage()

    async def main():
        async with AsyncLiteLLMClient(model="openai/gpt-4o-mini", api_base=base, api_key=key) as client:
            assert (await client.generate_completion("a")).choices[0].message.content == "echo: a"
            assert await (await client.generate_completion("b", stream=True)).atext() == "echo: b"

    asyncio.run(main())
    print(sorted(name for name in sys.modules if name.split(".")[0] == "litellm"))
""")


def _child_env(isolated: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("LITELLM_")}
    return {**env, "PYTHONPATH": os.pathsep.join(sys.path), "XDG_DATA_HOME": str(isolated / "data")}


def test_a_native_client_never_imports_litellm(provider: FakeProvider, isolated: Path) -> None:
    result = subprocess.run([sys.executable, "-c", CHILD, provider.openai_base, TEST_KEY],
                            capture_output=True, text=True, timeout=120, env=_child_env(isolated))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_cli_chats_without_importing_litellm(provider: FakeProvider, isolated: Path) -> None:
    code = ("import runpy, sys; sys.argv = ['dewey-llm', 'chat', '--no-cache', 'hi']\n"
            "try:\n    runpy.run_module('dewey.llm', run_name='__main__')\n"
            "except SystemExit as exit:\n    assert not exit.code, exit.code\n"
            "print(sorted(n for n in sys.modules if n.split('.')[0] == 'litellm'), file=sys.stderr)\n"
            "print(sorted({'click', 'pygments'} & set(sys.modules)), file=sys.stderr)")
    env = {**_child_env(isolated), "LITELLM_MODEL": "openai/gpt-4o-mini",
           "LITELLM_API_BASE": provider.openai_base, "LITELLM_API_KEY": TEST_KEY}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert "echo: hi" in result.stdout
    litellm_modules, httpx_cli = result.stderr.strip().splitlines()[-2:]
    assert litellm_modules == "[]"
    assert httpx_cli == "[]"  # nor httpx's own command line, which its __init__ imports


def test_the_cli_says_which_transport_a_model_takes(provider: FakeProvider, tmp_path: Path) -> None:
    env = cli_env(tmp_path, provider, LITELLM_MODEL="openai/my-model",
                  LITELLM_FALLBACKS="anthropic/claude-haiku-4-5")
    shown = json.loads(dewey(["config", "show", "--json"], env, tmp_path).stdout)
    assert shown["transports"] == {"openai/my-model": "native", "anthropic/claude-haiku-4-5": "litellm"}
    text = dewey(["config", "show"], env, tmp_path).stdout
    assert "Sent through: openai/my-model native, anthropic/claude-haiku-4-5 litellm" in text
    assert json.loads(dewey(["models", "show", "gpt-4o-mini", "--json"], env, tmp_path).stdout)[
        "transport"] == "native"
    forced = {**env, "LITELLM_TRANSPORT": "litellm"}
    assert json.loads(dewey(["models", "show", "gpt-4o-mini", "--json"], forced, tmp_path).stdout)[
        "transport"] == "litellm"
    assert "transport  " in dewey(["models", "show", "anthropic/claude-haiku-4-5"], env, tmp_path).stdout


def test_native_forced_on_anthropic_is_refused_before_sending(provider: FakeProvider) -> None:
    client = LiteLLMClient(model="anthropic/claude-haiku-4-5", api_base=provider.anthropic_base,
                           api_key=TEST_KEY, transport="native", track_usage=False)
    with pytest.raises(LLMConfigError, match="transport to auto or litellm"):
        client.generate_completion("hi")
    assert provider.requests == []
