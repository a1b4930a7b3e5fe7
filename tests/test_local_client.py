"""The embedded default through the client: no key, no network, a real local model, no LiteLLM."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dewey.llm import LiteLLMClient, LiteLLMConfig, LLMAuthenticationError
from dewey.llm._usage import open_ledger
from tests.servers.fake_provider import FakeProvider, Reply


def test_with_no_key_the_client_answers_from_the_local_model() -> None:
    client = LiteLLMClient()
    assert client.model == "local/smollm2"
    response = client.generate_completion("What is the capital of France?", max_tokens=12)
    assert response.choices[0].message.content.strip()
    assert response.usage.completion_tokens > 0
    assert client.completion_cost(response) == 0.0
    client.close()
    rows = open_ledger(None).records()
    assert [(r.model, r.outcome, r.cost_usd) for r in rows] == [("local/smollm2", "ok", 0.0)]
    assert rows[0].prompt_tokens > 0


def test_local_streaming_through_the_client() -> None:
    stream = LiteLLMClient().generate_completion("Count: one, two,", stream=True,
                                                              max_tokens=8, temperature=0)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text and text == stream.response.choices[0].message.content
    # The model's own counts, reported at the stream's end.
    assert stream.response.usage.prompt_tokens > 0
    assert 0 < stream.response.usage.completion_tokens <= 8


def test_local_embeddings_through_the_client() -> None:
    client = LiteLLMClient(config=LiteLLMConfig(embedding_model="local/smollm2"))
    result = client.generate_embedding(["a cat", "a cat", "stock prices"])
    vectors = [item["embedding"] for item in result["data"]]
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-4) for v in vectors)
    assert vectors[0] == vectors[1] and vectors[0] != vectors[2]
    assert client.completion_cost(result) == 0.0


def test_an_explicit_model_without_its_key_names_the_variable() -> None:
    with pytest.raises(LLMAuthenticationError, match="set ANTHROPIC_API_KEY"):
        LiteLLMClient(config=LiteLLMConfig(model="anthropic/claude-haiku-4-5")).generate_completion("hi")


def test_fallback_from_a_failing_provider_to_the_llama_server(
        make_client: Any, provider: FakeProvider, llama_server: str) -> None:
    provider.script("gpt-4o-mini", Reply.error(503), Reply.error(503))
    client = make_client(max_retries=1, fallback_models=[
        {"model": "openai/smollm2", "api_base": llama_server, "api_key": "sk-no-key-needed"}])
    response = client.generate_completion("Say hi.", max_tokens=8)
    assert response.choices[0].message.content.strip()
    assert len(provider.requests) == 2
    assert response.model.endswith("smollm2")


def test_a_keyless_chat_never_imports_litellm(isolated: Path) -> None:
    # The whole CLI in a fresh process, as a user with no key runs it: the local model
    # answers through LocalTransport, sync, streamed and async, and embeds.
    code = (
        "import asyncio, runpy, sys\n"
        "sys.argv = ['dewey-llm', 'chat', '--no-cache', '--max-tokens', '4', 'hi']\n"
        "try:\n    runpy.run_module('dewey.llm', run_name='__main__')\n"
        "except SystemExit as exit:\n    assert not exit.code, exit.code\n"
        "from dewey.llm import AsyncLiteLLMClient, LiteLLMClient\n"
        "with LiteLLMClient() as client:\n"
        "    assert client.generate_completion('s', stream=True, max_tokens=4).text()\n"
        "    assert client.generate_embedding('e', model='local/smollm2').data\n"
        "async def main():\n"
        "    async with AsyncLiteLLMClient() as client:\n"
        "        assert (await client.generate_completion('a', max_tokens=4)).choices[0].message.content\n"
        "asyncio.run(main())\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] == 'litellm'), file=sys.stderr)")
    env = {name: value for name, value in os.environ.items() if not name.startswith("LITELLM_")}
    env.update(PYTHONPATH=os.pathsep.join(sys.path), XDG_DATA_HOME=str(isolated / "data"))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env=env, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()  # the local model's answer
    assert result.stderr.strip().splitlines()[-1] == "[]"


def test_structured_output_offline_under_the_local_grammar() -> None:
    # llama.cpp turns the strict JSON schema into a grammar: a valid object, with no key.
    from pydantic import BaseModel

    class Capital(BaseModel):
        city: str
        country: str

    with LiteLLMClient() as client:
        response = client.generate_completion(
            "The capital of France, as JSON.", response_format=Capital, max_tokens=40, temperature=0)
    capital = response.choices[0].message.parsed
    assert isinstance(capital, Capital) and capital.city.strip()
    assert Capital.model_validate_json(response.choices[0].message.content) == capital
