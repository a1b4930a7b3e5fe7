"""The fake provider speaks real wire formats: prove it through LiteLLM, the openai SDK and httpx.

These tests also pin down how LiteLLM reports each injected fault, because dewey-llm's
error mapping depends on it (see the comments on each fault test).
"""

# Pytest fixtures are imported by name and then requested as same-named parameters.

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

import httpx
import litellm
import openai
import pytest

from tests.servers.fake_provider import FakeProvider, Reply

litellm.suppress_debug_info = True

MESSAGES: Any = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "hello there general kenobi"},
]
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- helpers


def openai_completion(server: FakeProvider, model: str = "gpt-fake", **kwargs: Any) -> Any:
    """``litellm.completion`` against the fake's OpenAI endpoint."""
    kwargs.setdefault("messages", MESSAGES)
    return litellm.completion(
        model=f"openai/{model}",
        api_base=server.openai_base,
        api_key="sk-test",
        max_retries=0,
        **kwargs,
    )


def anthropic_completion(server: FakeProvider, model: str = "claude-fake", **kwargs: Any) -> Any:
    """``litellm.completion`` against the fake's Anthropic endpoint."""
    kwargs.setdefault("messages", MESSAGES)
    return litellm.completion(
        model=f"anthropic/{model}",
        api_base=server.anthropic_base,
        api_key="sk-ant-test",
        max_retries=0,
        **kwargs,
    )


COMPLETIONS = {"openai": openai_completion, "anthropic": anthropic_completion}
MODELS = {"openai": "gpt-fake", "anthropic": "claude-fake"}


def stream_text(chunks: Iterator[Any], received: list[str] | None = None) -> str:
    """Join the content deltas of a LiteLLM stream, appending each one to ``received``."""
    received = [] if received is None else received
    for chunk in chunks:
        if chunk.choices and chunk.choices[0].delta.content:
            received.append(chunk.choices[0].delta.content)
    return "".join(received)


def stream_tool_calls(chunks: Iterator[Any]) -> tuple[list[dict[str, Any]], str | None]:
    """Assemble streamed tool-call deltas into ``[{id, name, arguments}]`` plus finish reason."""
    calls: dict[int, dict[str, Any]] = {}
    finish_reason = None
    for chunk in chunks:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        finish_reason = choice.finish_reason or finish_reason
        for delta in choice.delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": None, "name": None, "arguments": ""})
            call["id"] = delta.id or call["id"]
            call["name"] = delta.function.name or call["name"]
            call["arguments"] += delta.function.arguments or ""
    return [calls[i] for i in sorted(calls)], finish_reason


def retry_after_of(exc: Exception) -> str | None:
    """Where LiteLLM exposes the provider's Retry-After header.

    ``exc.litellm_response_headers`` (an ``httpx.Headers``) carries the provider's response
    headers for both OpenAI and Anthropic.  ``exc.response.headers`` only has them for the
    OpenAI route; for Anthropic ``exc.response`` is a synthetic response with no headers.
    ``exc.headers`` stays ``None``.
    """
    headers = getattr(exc, "litellm_response_headers", None) or {}
    return headers.get("retry-after")


# --------------------------------------------------------------------------- OpenAI chat


def test_openai_completion_echoes_and_counts_words(provider: FakeProvider) -> None:
    response = openai_completion(provider)

    assert response.choices[0].message.content == "echo: hello there general kenobi"
    assert response.choices[0].finish_reason == "stop"
    assert response.model.endswith("gpt-fake")
    assert response.usage.prompt_tokens == 7  # "You are terse." + "hello there general kenobi"
    assert response.usage.completion_tokens == 5
    assert response.usage.total_tokens == 12


def test_openai_scripted_content_and_token_override(provider: FakeProvider) -> None:
    provider.script("gpt-fake", Reply.ok("first"), Reply.ok("second", prompt_tokens=100))

    first = openai_completion(provider)
    second = openai_completion(provider)
    third = openai_completion(provider)

    assert first.choices[0].message.content == "first"
    assert second.choices[0].message.content == "second"
    assert second.usage.prompt_tokens == 100
    assert third.choices[0].message.content.startswith("echo: ")  # script exhausted


def test_openai_stream_with_usage(provider: FakeProvider) -> None:
    provider.script("gpt-fake", Reply.ok("The  quick brown fox. "))

    chunks = list(openai_completion(provider, stream=True, stream_options={"include_usage": True}))

    assert stream_text(iter(chunks)) == "The  quick brown fox. "
    assert chunks[-1].usage.prompt_tokens == 7
    assert chunks[-1].usage.completion_tokens == 4
    finish_reasons = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert "stop" in finish_reasons
    assert provider.requests[-1].stream is True


def test_openai_tool_call(provider: FakeProvider) -> None:
    provider.script("gpt-fake", Reply.tool_call("get_weather", {"city": "Paris"}, call_id="c-9"))

    response = openai_completion(provider, tools=[WEATHER_TOOL])

    [call] = response.choices[0].message.tool_calls
    assert response.choices[0].finish_reason == "tool_calls"
    assert (call.id, call.function.name) == ("c-9", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Paris"}


def test_openai_tool_call_stream(provider: FakeProvider) -> None:
    arguments = {"city": "New York", "units": "metric"}
    provider.script("gpt-fake", Reply.tool_call("get_weather", arguments))

    calls, finish_reason = stream_tool_calls(
        openai_completion(provider, tools=[WEATHER_TOOL], stream=True)
    )

    assert [(c["id"], c["name"]) for c in calls] == [("call_1", "get_weather")]
    assert json.loads(calls[0]["arguments"]) == arguments
    assert finish_reason == "tool_calls"


# --------------------------------------------------------------------------- openai SDK


def openai_client(server: FakeProvider, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.openai_base, api_key="sk-test", max_retries=0, **kwargs)


def test_openai_sdk_chat_and_stream(provider: FakeProvider) -> None:
    client = openai_client(provider)

    response = client.chat.completions.create(model="sdk-model", messages=MESSAGES)
    stream = client.chat.completions.create(
        model="sdk-model",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    assert response.model == "sdk-model"
    assert response.choices[0].message.content == "echo: hello there general kenobi"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello there general kenobi"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 12


def test_openai_sdk_parse_reads_a_scripted_refusal(provider: FakeProvider) -> None:
    from pydantic import BaseModel

    class City(BaseModel):
        name: str

    provider.script("sdk-model", Reply.refused("I can't help with that."), Reply.ok('{"name": "Oslo"}'))
    client = openai_client(provider)

    refused = client.chat.completions.parse(model="sdk-model", messages=MESSAGES, response_format=City)
    answered = client.chat.completions.parse(model="sdk-model", messages=MESSAGES, response_format=City)

    assert refused.choices[0].message.refusal == "I can't help with that."
    assert (refused.choices[0].message.content, refused.choices[0].message.parsed) == (None, None)
    assert answered.choices[0].message.parsed == City(name="Oslo")


def test_openai_sdk_stream_reads_a_scripted_refusal(provider: FakeProvider) -> None:
    # The SDK's stream helper accumulates delta.refusal into the final message's refusal.
    from pydantic import BaseModel

    class City(BaseModel):
        name: str

    provider.script("sdk-model", Reply.refused("I can't help with that."))
    with openai_client(provider).chat.completions.stream(
            model="sdk-model", messages=MESSAGES, response_format=City) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_completion()

    assert events.count("refusal.delta") > 1 and "content.delta" not in events
    message = final.choices[0].message
    assert (message.refusal, message.content, message.parsed) == ("I can't help with that.", None, None)


def test_openai_sdk_legacy_functions_get_function_call(provider: FakeProvider) -> None:
    provider.script("sdk-model", Reply.tool_call("get_weather", {"city": "Oslo"}))

    response = openai_client(provider).chat.completions.create(
        model="sdk-model",
        messages=MESSAGES,
        functions=[WEATHER_TOOL["function"]],
    )

    message = response.choices[0].message
    assert response.choices[0].finish_reason == "function_call"
    assert message.tool_calls is None
    assert message.function_call is not None
    assert message.function_call.name == "get_weather"
    assert json.loads(message.function_call.arguments) == {"city": "Oslo"}


def test_openai_sdk_models_list(provider: FakeProvider) -> None:
    models = openai_client(provider).models.list()

    assert "fake-model" in [m.id for m in models]


# --------------------------------------------------------------------------- embeddings


def test_litellm_embedding_is_deterministic(provider: FakeProvider) -> None:
    def embed(inputs: list[str]) -> Any:
        return litellm.embedding(
            model="openai/embed-fake",
            api_base=provider.openai_base,
            api_key="sk-test",
            input=inputs,
            max_retries=0,
        )

    first = embed(["alpha beta", "gamma"])
    again = embed(["gamma"])

    vectors = [item["embedding"] for item in first.data]
    assert [item["index"] for item in first.data] == [0, 1]
    assert all(len(v) == 8 for v in vectors)
    assert all(math.isclose(sum(x * x for x in v), 1.0) for v in vectors)
    assert vectors[0] != vectors[1]
    assert again.data[0]["embedding"] == vectors[1]
    assert first.usage.prompt_tokens == 3


def test_openai_sdk_embedding_base64_and_tokens(provider: FakeProvider) -> None:
    client = openai_client(provider)

    default = client.embeddings.create(model="embed-fake", input="alpha beta")  # base64 on wire
    as_float = client.embeddings.create(
        model="embed-fake", input="alpha beta", encoding_format="float"
    )
    tokens = client.embeddings.create(
        model="embed-fake", input=[[1, 2, 3]], encoding_format="float"
    )

    assert default.data[0].embedding == pytest.approx(as_float.data[0].embedding, rel=1e-6)
    assert len(tokens.data[0].embedding) == 8
    assert tokens.usage.prompt_tokens == 3


def test_embedding_errors_are_scripted_too(provider: FakeProvider) -> None:
    # LiteLLM bug: the OpenAI embedding route does ``max_retries or DEFAULT_MAX_RETRIES``, so
    # max_retries=0 becomes 2 retries inside the openai SDK.  retry-after-ms keeps them fast.
    provider.script("embed-fake", *[Reply.error(429, retry_after_ms=10) for _ in range(3)])

    with pytest.raises(litellm.exceptions.RateLimitError):
        litellm.embedding(
            model="openai/embed-fake",
            api_base=provider.openai_base,
            api_key="sk-test",
            input="x",
            max_retries=0,
        )

    retry_counts = [r.headers["x-stainless-retry-count"] for r in provider.requests]
    assert retry_counts == ["0", "1", "2"]


# --------------------------------------------------------------------------- Anthropic


def test_anthropic_completion(provider: FakeProvider) -> None:
    response = anthropic_completion(provider)

    assert response.choices[0].message.content == "echo: hello there general kenobi"
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.prompt_tokens == 7
    assert response.usage.completion_tokens == 5
    recorded = provider.requests_for("claude-fake")
    assert [r.path for r in recorded] == ["/v1/messages"]
    assert recorded[0].headers["x-api-key"] == "sk-ant-test"
    assert recorded[0].body is not None
    assert recorded[0].body["system"]  # LiteLLM moves the system prompt out of messages


def test_anthropic_stream(provider: FakeProvider) -> None:
    provider.script("claude-fake", Reply.ok("streamed  from claude"))

    chunks = list(anthropic_completion(provider, stream=True))

    assert stream_text(iter(chunks)) == "streamed  from claude"
    finish_reasons = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert "stop" in finish_reasons


def test_anthropic_tool_call(provider: FakeProvider) -> None:
    provider.script("claude-fake", Reply.tool_call("get_weather", {"city": "Rome"}, call_id="tu_1"))

    response = anthropic_completion(provider, tools=[WEATHER_TOOL])

    [call] = response.choices[0].message.tool_calls
    assert response.choices[0].finish_reason == "tool_calls"
    assert (call.id, call.function.name) == ("tu_1", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Rome"}


def test_anthropic_tool_call_stream(provider: FakeProvider) -> None:
    provider.script("claude-fake", Reply.tool_call("get_weather", {"city": "Rome", "days": 3}))

    calls, finish_reason = stream_tool_calls(
        anthropic_completion(provider, tools=[WEATHER_TOOL], stream=True)
    )

    assert [(c["id"], c["name"]) for c in calls] == [("call_1", "get_weather")]
    assert json.loads(calls[0]["arguments"]) == {"city": "Rome", "days": 3}
    assert finish_reason == "tool_calls"


# --------------------------------------------------------------------------- HTTP errors


@pytest.mark.parametrize("flavour", ["openai", "anthropic"])
@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply.error(401), litellm.exceptions.AuthenticationError),
        (Reply.error(429), litellm.exceptions.RateLimitError),
        (Reply.error(500), litellm.exceptions.InternalServerError),
        (Reply.context_window(), litellm.exceptions.ContextWindowExceededError),
    ],
    ids=["401", "429", "500", "context-window"],
)
def test_error_status_maps_to_litellm_exception(
    provider: FakeProvider, flavour: str, reply: Reply, expected: type[openai.APIStatusError]
) -> None:
    provider.script(MODELS[flavour], reply)

    with pytest.raises(expected) as caught:
        COMPLETIONS[flavour](provider)

    assert caught.value.status_code == reply.status
    assert len(provider.requests) == 1  # recorded although it was answered with an error


@pytest.mark.parametrize("flavour", ["openai", "anthropic"])
@pytest.mark.parametrize("value", [7, "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_rate_limit_exposes_retry_after(
    provider: FakeProvider, flavour: str, value: int | str
) -> None:
    provider.script(MODELS[flavour], Reply.error(429, retry_after=value, retry_after_ms=7000))

    with pytest.raises(litellm.exceptions.RateLimitError) as caught:
        COMPLETIONS[flavour](provider)

    assert retry_after_of(caught.value) == str(value)
    assert caught.value.litellm_response_headers["retry-after-ms"] == "7000"  # type: ignore[attr-defined]
    if flavour == "openai":  # only the OpenAI route keeps the real response on the exception
        assert caught.value.response.headers["retry-after"] == str(value)


def test_error_bodies_use_each_providers_format(provider: FakeProvider) -> None:
    provider.script("gpt-fake", Reply.error(429, "slow down", code="rate_limit_exceeded"))
    provider.script("claude-fake", Reply.error(529), Reply.context_window())
    chat = {"model": "gpt-fake", "messages": MESSAGES}
    message = {"model": "claude-fake", "max_tokens": 5, "messages": MESSAGES[1:]}

    with httpx.Client(base_url=provider.url) as client:
        openai_error = client.post("/v1/chat/completions", json=chat)
        overloaded = client.post("/v1/messages", json=message)
        too_long = client.post("/v1/messages", json=message)

    assert openai_error.json() == {
        "error": {
            "message": "slow down",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    assert overloaded.status_code == 529
    assert overloaded.json()["error"]["type"] == "overloaded_error"
    assert too_long.status_code == 400
    assert too_long.json()["error"]["message"].startswith("prompt is too long")


# --------------------------------------------------------------------------- broken replies


def test_malformed_json(provider: FakeProvider) -> None:
    # LiteLLM reports an unparseable 200 as InternalServerError (OpenAI route, via the SDK)
    # but as APIConnectionError on the Anthropic route; both wrap a JSONDecodeError.
    provider.script("gpt-fake", Reply.malformed())
    provider.script("claude-fake", Reply.malformed())

    with pytest.raises(litellm.exceptions.InternalServerError):
        openai_completion(provider)
    with pytest.raises(litellm.exceptions.APIConnectionError):
        anthropic_completion(provider)


def test_malformed_stream_event(provider: FakeProvider) -> None:
    # An SSE event whose data is not JSON: MidStreamFallbackError on the OpenAI route.
    # (LiteLLM's Anthropic stream parser buffers undecodable data as "partial JSON" and
    # silently drops it at the end, so the Anthropic route raises nothing.)
    provider.script("gpt-fake", Reply.malformed())

    with pytest.raises(litellm.exceptions.MidStreamFallbackError):
        stream_text(openai_completion(provider, stream=True))


@pytest.mark.parametrize("flavour", ["openai", "anthropic"])
def test_cut_stream_raises_after_some_chunks(provider: FakeProvider, flavour: str) -> None:
    # The chunked body ends without its terminating chunk: httpx raises RemoteProtocolError
    # ("incomplete chunked read"), which LiteLLM's stream wrapper re-raises as
    # MidStreamFallbackError (a ServiceUnavailableError with status_code 500).
    provider.script(MODELS[flavour], Reply.cut_stream(after_chunks=2))
    received: list[str] = []

    with pytest.raises(litellm.exceptions.MidStreamFallbackError) as caught:
        stream_text(COMPLETIONS[flavour](provider, stream=True), received)

    assert received == ["part0", " part1"]
    assert isinstance(caught.value, litellm.exceptions.ServiceUnavailableError)


@pytest.mark.parametrize("flavour", ["openai", "anthropic"])
def test_cut_non_stream_body(provider: FakeProvider, flavour: str) -> None:
    # Half a body then a closed connection: InternalServerError on both routes (the OpenAI
    # SDK calls it APIConnectionError "Connection error.", LiteLLM maps that to a 500).
    provider.script(MODELS[flavour], Reply.cut_stream())

    with pytest.raises(litellm.exceptions.InternalServerError):
        COMPLETIONS[flavour](provider)


def test_refused_connection_is_reported_as_internal_server_error() -> None:
    # What a dead provider looks like to LiteLLM: a 500 InternalServerError whose cause
    # chain ends in ConnectionRefusedError.
    with FakeProvider() as dead:
        base = dead.openai_base
    with pytest.raises(litellm.exceptions.InternalServerError) as caught:
        litellm.completion(
            model="openai/gpt-fake",
            api_base=base,
            api_key="sk-test",
            messages=MESSAGES,
            max_retries=0,
        )

    assert isinstance(root_cause(caught.value), ConnectionRefusedError)


def root_cause(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return exc


@pytest.mark.parametrize("flavour", ["openai", "anthropic"])
def test_slow_reply_times_out(provider: FakeProvider, flavour: str) -> None:
    provider.script(MODELS[flavour], Reply.slow(3.0))

    with pytest.raises(litellm.exceptions.Timeout):
        COMPLETIONS[flavour](provider, timeout=0.3)


def test_slow_reply_without_timeout_waits(provider: FakeProvider) -> None:
    provider.script("gpt-fake", Reply.slow(0.3, "late"))

    response = openai_completion(provider)
    openai_completion(provider)  # sent once the late answer has arrived

    assert response.choices[0].message.content == "late"
    slow, after = provider.requests
    assert after.time - slow.time >= 0.3  # the answer left the server no earlier than its delay


# --------------------------------------------------------------------------- bookkeeping


def test_peak_in_flight_with_ten_threads(provider: FakeProvider) -> None:
    provider.script("gpt-fake", *[Reply.slow(0.5) for _ in range(10)])

    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(lambda _: openai_completion(provider), range(10)))

    assert len(results) == 10
    assert provider.peak_in_flight == 10
    provider.reset()
    assert provider.peak_in_flight == 0


def test_requests_are_recorded_with_metadata(provider: FakeProvider) -> None:
    before = time.monotonic()
    openai_completion(provider, model="model-a")
    list(openai_completion(provider, model="model-b", stream=True))

    a = provider.requests_for("model-a")
    assert len(a) == 1
    assert a[0].path == "/v1/chat/completions"
    assert a[0].headers["authorization"] == "Bearer sk-test"
    assert a[0].body is not None and a[0].body["messages"][-1] == MESSAGES[-1]
    assert a[0].stream is False and a[0].time >= before
    assert [r.model for r in provider.requests] == ["model-a", "model-b"]


def test_script_all_applies_to_unscripted_models_only(provider: FakeProvider) -> None:
    provider.script("own", Reply.ok("own reply"))
    provider.script_all(Reply.ok("shared 1"), Reply.ok("shared 2"))

    replies = [
        openai_completion(provider, model=name).choices[0].message.content
        for name in ("own", "x", "own", "y", "z")
    ]

    assert replies[:2] == ["own reply", "shared 1"]
    assert replies[2].startswith("echo: ")  # exhausted per-model script: default, not shared
    assert replies[3:] == ["shared 2", "echo: hello there general kenobi"]


def test_reset_clears_scripts_and_records(provider: FakeProvider) -> None:
    provider.script("gpt-fake", Reply.error(500))
    provider.script_all(Reply.error(500))
    with pytest.raises(litellm.exceptions.InternalServerError):
        openai_completion(provider, model="other-model")

    provider.reset()

    assert provider.requests == []
    assert openai_completion(provider).choices[0].message.content.startswith("echo: ")


def test_unknown_path_and_keep_alive(provider: FakeProvider) -> None:
    with httpx.Client(base_url=provider.url) as client:
        missing = client.post("/v1/nope", json={})
        models = client.get("/v1/models")

    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert models.headers["content-length"] == str(len(models.content))
    assert models.headers.get("connection", "").lower() != "close"
    assert [r.path for r in provider.requests] == ["/v1/nope", "/v1/models"]


def test_runs_as_a_process() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.servers.fake_provider", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready = process.stdout.readline().split()
        assert ready[0] == "READY"
        reply = httpx.post(
            f"{ready[1]}/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "ping"}]},
        )
        assert reply.json()["choices"][0]["message"]["content"] == "echo: ping"
    finally:
        process.terminate()
        process.wait(timeout=10)
