"""The core client through LiteLLM and real HTTP: completions, streams, tools, embeddings."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from typing import Any

import pytest

from dewey.llm import (
    LiteLLMClient,
    LiteLLMConfig,
    LLMAuthenticationError,
    LLMConfigError,
    LLMConnectionError,
    LLMContextWindowError,
    LLMError,
    LLMRateLimitError,
    LLMResponseError,
    LLMServerError,
    LLMTimeoutError,
    Message,
    tool,
)
from tests.conftest import TEST_KEY
from tests.servers.fake_provider import FakeProvider, Reply


@pytest.fixture
def seed_env(provider: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> FakeProvider:
    """Provider keys and bases in the environment, as a user of OpenAI and Anthropic has."""
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENAI_API_BASE", provider.openai_base)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-0123456789")
    monkeypatch.setenv("ANTHROPIC_API_BASE", provider.anthropic_base)
    return provider


# --- the seed's examples, verbatim -------------------------------------------------------

def test_seed_examples_verbatim(seed_env: FakeProvider) -> None:
    client = LiteLLMClient(config=LiteLLMConfig(model="claude-2", timeout=90,
                                                fallback_models=["gpt-4", "gpt-3.5-turbo"]))
    r = client.generate_completion([Message(role="system", content="You are helpful"),
                                    Message(role="user", content="Hello!")])
    assert r.choices[0].message.content == "echo: Hello!"
    received = seed_env.requests[-1]
    # LiteLLM speaks Anthropic's Text Completions API to claude-2.
    assert received.path == "/v1/complete" and received.model == "claude-2"
    assert "You are helpful" in received.json["prompt"]
    assert received.headers["x-api-key"] == "sk-ant-test-0123456789"

    # LiteLLM ends claude-2's legacy text-completion streams after one chunk (its parser
    # marks every chunk finished), so the streaming example runs on a current Claude.
    client = LiteLLMClient(config=LiteLLMConfig(model="claude-haiku-4-5", timeout=90,
                                                fallback_models=["gpt-4", "gpt-3.5-turbo"]))
    messages = [Message(role="user", content="Stream this please")]
    deltas = [chunk.choices[0].delta.content
              for chunk in client.generate_completion(messages, stream=True) if chunk.choices]
    assert "".join(d or "" for d in deltas) == "echo: Stream this please"

    client = LiteLLMClient()  # OPENAI_API_KEY is set: its default model
    e = client.generate_embedding("Sample text")
    assert len(e["data"][0]["embedding"]) == 8
    batch = client.generate_embedding(["a", "b"])
    assert [item["index"] for item in batch["data"]] == [0, 1]
    assert batch["data"][0]["embedding"] != batch["data"][1]["embedding"]

    details = client.get_model_details("gpt-4o")
    assert details["max_input_tokens"] == 128000
    assert details["max_output_tokens"] > 0
    assert details["input_cost_per_token"] > 0 and details["output_cost_per_token"] > 0
    assert details["supports_function_calling"] is True


def test_seed_fallback_reaches_the_next_provider(seed_env: FakeProvider) -> None:
    seed_env.script("claude-2", Reply.error(529, "overloaded"), Reply.error(529), Reply.error(529))
    client = LiteLLMClient(config=LiteLLMConfig(model="claude-2", timeout=90, backoff_base=0.01,
                                                fallback_models=["gpt-4", "gpt-3.5-turbo"]))
    r = client.generate_completion([{"role": "user", "content": "Hello!"}])
    assert r.choices[0].message.content == "echo: Hello!"
    assert [rec.model for rec in seed_env.requests] == ["claude-2"] * 3 + ["gpt-4"]


# --- messages and parameters --------------------------------------------------------------

def test_messages_dicts_and_parameters_pass_through(make_client: Any, provider: FakeProvider) -> None:
    client = make_client()
    client.generate_completion(
        [{"role": "system", "content": "Be brief"}, Message(role="user", content="Hi")],
        temperature=0.2, max_tokens=7, response_format={"type": "json_object"}, seed=3)
    body = provider.requests[-1].json
    assert body["messages"] == [{"role": "system", "content": "Be brief"},
                                {"role": "user", "content": "Hi"}]
    assert (body["temperature"], body["max_tokens"], body["seed"]) == (0.2, 7, 3)
    assert body["response_format"] == {"type": "json_object"}
    assert provider.requests[-1].headers["authorization"] == f"Bearer {TEST_KEY}"


def test_content_parts_are_sent_as_given(make_client: Any, provider: FakeProvider) -> None:
    parts: list[dict[str, Any]] = [{"type": "text", "text": "Describe"},
                                   {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]
    response = make_client().generate_completion([Message(role="user", content=parts)])
    assert provider.requests[-1].json["messages"][0]["content"] == parts
    assert response.choices[0].message.content == "echo: Describe"


def test_a_bad_role_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match=r"role 'usr' is not valid: use one of system, user"):
        Message(role="usr", content="hi")


def test_a_bad_message_dict_is_a_config_error(make_client: Any, provider: FakeProvider) -> None:
    with pytest.raises(LLMConfigError, match=r"messages\[0\] has role 'robot'"):
        make_client().generate_completion([{"role": "robot", "content": "hi"}])
    assert provider.requests == []


def test_stream_yields_text_as_it_comes(make_client: Any) -> None:
    stream = make_client().generate_completion("Tell me a story", stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "echo: Tell me a story"
    assert stream.response.choices[0].message.content == text
    assert stream.response.usage.completion_tokens == 5


# --- function and tool calling ------------------------------------------------------------

def get_weather(location: str, unit: str = "celsius") -> str:  # noqa: ARG001 - a tool: its signature is the schema
    """Get the current weather for a location.

    Args:
        location: City and country, e.g. Paris, France
        unit: celsius or fahrenheit
    """
    return f"sunny in {location}"


def test_tool_from_a_python_function() -> None:
    assert tool(get_weather) == {"type": "function", "function": {
        "name": "get_weather", "description": "Get the current weather for a location.",
        "parameters": {"type": "object", "required": ["location"], "properties": {
            "location": {"type": "string", "description": "City and country, e.g. Paris, France"},
            "unit": {"type": "string", "description": "celsius or fahrenheit", "default": "celsius"},
        }}}}


def test_tools_shorthand_and_callables(make_client: Any, provider: FakeProvider) -> None:
    provider.script("gpt-4o-mini", Reply.tool_call("get_weather", {"location": "Paris"}))
    shorthand = {"name": "lookup", "parameters": {"query": {"type": "string"}}}
    response = make_client().generate_completion(
        "Weather in Paris?", tools=[shorthand, get_weather], tool_choice="get_weather")
    call = response.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris"}
    sent = provider.requests[-1].json
    assert sent["tools"][0] == {"type": "function", "function": {
        "name": "lookup", "parameters": {"type": "object", "properties": {"query": {"type": "string"}},
                                         "required": ["query"]}}}
    assert sent["tools"][1]["function"]["parameters"]["required"] == ["location"]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


def test_tool_result_round_trip(make_client: Any, provider: FakeProvider) -> None:
    client = make_client()
    provider.script("gpt-4o-mini", Reply.tool_call("get_weather", {"location": "Oslo"}))
    first = client.generate_completion("Weather in Oslo?", tools=[get_weather])
    call = first.choices[0].message.tool_calls[0]
    client.generate_completion([
        Message(role="user", content="Weather in Oslo?"),
        first.choices[0].message,
        Message(role="tool", tool_call_id=call.id, content=get_weather("Oslo")),
    ], tools=[get_weather])
    sent = provider.requests[-1].json["messages"]
    assert sent[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert sent[2] == {"role": "tool", "tool_call_id": call.id, "content": "sunny in Oslo"}


def test_legacy_functions(make_client: Any, provider: FakeProvider) -> None:
    provider.script("gpt-4o-mini", Reply.tool_call("get_weather", {"location": "Rome"}))
    response = make_client().generate_completion(
        "Weather in Rome?", functions=[{"name": "get_weather", "parameters": {"location": {"type": "string"}}}],
        function_call={"name": "get_weather"})
    sent = provider.requests[-1].json
    assert sent["functions"][0]["parameters"]["properties"] == {"location": {"type": "string"}}
    assert sent["function_call"] == {"name": "get_weather"}
    message = response.choices[0].message
    assert json.loads(message.function_call.arguments) == {"location": "Rome"}


def test_anthropic_tool_calls_come_back_in_openai_shape(provider: FakeProvider) -> None:
    provider.script("claude-haiku-4-5", Reply.tool_call("get_weather", {"location": "Lima"}))
    client = LiteLLMClient(config=LiteLLMConfig(model="anthropic/claude-haiku-4-5",
                                                api_base=provider.anthropic_base,
                                                api_key="sk-ant-test-0123456789"))
    response = client.generate_completion("Weather in Lima?", tools=[get_weather])
    call = response.choices[0].message.tool_calls[0]
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"location": "Lima"})
    assert provider.requests[-1].json["tools"][0]["name"] == "get_weather"
    assert provider.requests[-1].json["tools"][0]["input_schema"]["required"] == ["location"]


def test_a_malformed_tool_is_a_clear_error(make_client: Any, provider: FakeProvider) -> None:
    with pytest.raises(LLMConfigError, match=r"tools\[0\].*parameter 'q' must be a schema"):
        make_client().generate_completion("x", tools=[{"name": "f", "parameters": {"q": "string"}}])
    assert provider.requests == []


# --- embeddings ----------------------------------------------------------------------------

def test_embeddings_single_and_batch(make_client: Any, provider: FakeProvider) -> None:
    client = make_client(embedding_model="openai/text-embedding-3-small")
    one = client.generate_embedding("Sample text")
    again = client.generate_embedding(["x", "Sample text"])
    assert one["data"][0]["embedding"] == again["data"][1]["embedding"]
    assert provider.requests[-1].json["input"] == ["x", "Sample text"]
    assert provider.requests[-1].json["model"] == "text-embedding-3-small"


# --- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("reply", "error", "status"), [
    (Reply.error(401, "Incorrect API key provided: sk-test-0123456789abcdef"), LLMAuthenticationError, 401),
    (Reply.error(403, "forbidden"), LLMAuthenticationError, 403),
    (Reply.error(400, "bad request"), LLMResponseError, 400),
    (Reply.context_window(), LLMContextWindowError, 400),
    (Reply.error(429, "slow down", retry_after=7), LLMRateLimitError, 429),
    (Reply.error(500, "boom"), LLMServerError, 500),
])
@pytest.mark.parametrize("transport", ["native", "litellm"])
def test_provider_errors_are_typed(make_client: Any, provider: FakeProvider, reply: Reply,
                                   error: type[LLMError], status: int, transport: str) -> None:
    provider.script_all(reply)
    with pytest.raises(error) as caught:
        make_client(max_retries=0, max_retry_after=0, transport=transport).generate_completion("hi")
    assert caught.value.status_code == status
    assert caught.value.model == "openai/gpt-4o-mini"
    # LiteLLM's exception stays the cause (redacted); the native transport's errors have
    # none, since httpx's exceptions hold the request and its Authorization header.
    cause = caught.value.__cause__
    assert isinstance(cause, Exception) if transport == "litellm" else cause is None
    assert TEST_KEY not in str(caught.value) and TEST_KEY not in repr(caught.value)
    assert TEST_KEY not in str(cause) and TEST_KEY not in repr(cause)
    if status == 429:
        assert caught.value.retry_after == 7


def test_anthropic_errors_are_typed_the_same(provider: FakeProvider) -> None:
    provider.script("claude-haiku-4-5", Reply.error(401), Reply.error(429, retry_after=3))
    client = LiteLLMClient(config=LiteLLMConfig(model="anthropic/claude-haiku-4-5", max_retries=0,
                                                api_base=provider.anthropic_base, max_retry_after=0,
                                                api_key="sk-ant-test-0123456789"))
    with pytest.raises(LLMAuthenticationError):
        client.generate_completion("hi")
    with pytest.raises(LLMRateLimitError) as caught:
        client.generate_completion("hi")
    assert caught.value.retry_after == 3


def test_timeout_and_connection_errors(make_client: Any, provider: FakeProvider) -> None:
    provider.script_all(Reply.slow(2.0))
    with pytest.raises(LLMTimeoutError):
        make_client(timeout=0.3, max_retries=0).generate_completion("hi")
    closed = make_client(api_base="http://127.0.0.1:9/v1", max_retries=0)
    with pytest.raises(LLMConnectionError) as caught:
        closed.generate_completion("hi")
    assert not isinstance(caught.value, LLMTimeoutError)


def test_malformed_json_is_a_response_error(make_client: Any, provider: FakeProvider) -> None:
    provider.script_all(Reply.malformed())
    with pytest.raises(LLMResponseError):
        make_client(max_retries=0).generate_completion("hi")


def test_a_stream_cut_midway_raises_after_the_text_it_gave(make_client: Any, provider: FakeProvider) -> None:
    provider.script("gpt-4o-mini", Reply.cut_stream(after_chunks=2))
    received = []
    with pytest.raises(LLMServerError, match="broke after"):
        for chunk in make_client().generate_completion("one two three four five", stream=True):
            if chunk.choices:
                received.append(chunk.choices[0].delta.content)
    # The two content chunks sent before the cut were delivered, and nothing else (a cut
    # stream's whole answer is "part0 part1 part2 part3 part4").
    assert "".join(r or "" for r in received).split() == ["part0", "part1"]
    assert len(provider.requests) == 1  # never restarted: that would repeat text


def test_embedding_errors_are_typed(make_client: Any, provider: FakeProvider) -> None:
    provider.script("text-embedding-3-small", Reply.error(401))
    with pytest.raises(LLMAuthenticationError):
        make_client().generate_embedding("x", model="openai/text-embedding-3-small")


def test_missing_key_names_the_variable(provider: FakeProvider) -> None:
    client = LiteLLMClient(config=LiteLLMConfig(model="gpt-4o"))
    with pytest.raises(LLMAuthenticationError, match="OPENAI_API_KEY"):
        client.generate_completion("hi")
    assert provider.requests == []


def test_litellm_debug_prints_are_silenced(make_client: Any, provider: FakeProvider,
                                          capfd: pytest.CaptureFixture[str]) -> None:
    provider.script_all(Reply.error(400, "nope"))
    with pytest.raises(LLMError):
        make_client().generate_completion("hi")
    out, err = capfd.readouterr()
    assert "Give Feedback" not in out + err and "LiteLLM.Info" not in out + err


# --- secrets, isolation, import cost -------------------------------------------------------

def test_keys_never_appear_in_reprs(make_client: Any) -> None:
    client = make_client()
    assert TEST_KEY not in repr(client) + repr(client.config) + str(client.config.model_dump())
    assert TEST_KEY not in client.config.model_dump_json()


def test_clients_with_different_configs_do_not_interfere() -> None:
    with FakeProvider() as first, FakeProvider() as second:
        clients = [
            LiteLLMClient(config=LiteLLMConfig(model="openai/model-a", api_base=first.openai_base,
                                               api_key="sk-first-000000000000")),
            LiteLLMClient(config=LiteLLMConfig(model="openai/model-b", api_base=second.openai_base,
                                               api_key="sk-second-11111111111")),
        ]
        errors: list[BaseException] = []

        def work(client: LiteLLMClient) -> None:
            try:
                for _ in range(5):
                    client.generate_completion("ping")
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(c,)) for c in clients for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert {(r.model, r.headers["authorization"]) for r in first.requests} == {
            ("model-a", "Bearer sk-first-000000000000")}
        assert {(r.model, r.headers["authorization"]) for r in second.requests} == {
            ("model-b", "Bearer sk-second-11111111111")}
        assert len(first.requests) == len(second.requests) == 15


def test_import_does_not_load_litellm() -> None:
    code = ("import sys, dewey.llm; from dewey.llm import LiteLLMClient, LiteLLMConfig, Message; "
            "LiteLLMConfig(model='gpt-4o'); Message(role='user', content='hi'); "
            "print('litellm' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_check_names_the_missing_key_of_each_route_and_sends_nothing(provider: FakeProvider) -> None:
    client = LiteLLMClient(model="gpt-4o", track_usage=False, fallback_models=[
        "claude-haiku-4-5",
        {"model": "openai/gpt-4o-mini", "api_key": "sk-fallback-12345678"},  # has its own key
        {"model": "openai/gpt-4.1", "api_base": provider.openai_base},  # a proxy may need none
    ])
    problems = client.check()
    assert [type(problem) for problem in problems] == [LLMAuthenticationError] * 2
    assert "gpt-4o needs an API key" in str(problems[0]) and "OPENAI_API_KEY" in str(problems[0])
    assert "ANTHROPIC_API_KEY" in str(problems[1])
    assert LiteLLMClient(model="openai/gpt-4o", api_key=TEST_KEY, track_usage=False).check() == []
    assert provider.requests == []
