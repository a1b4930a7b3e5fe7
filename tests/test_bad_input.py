"""Bad input, through the real client and the fake provider: a clear ``LLMError`` naming
the problem and the fix, nothing sent (the provider's journal stays empty), nothing
retried, nothing counted toward the model's cooldown."""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dewey.llm import (
    AsyncLiteLLMClient,
    LiteLLMClient,
    LiteLLMConfig,
    LLMBadRequestError,
    LLMConfigError,
    LLMError,
    LLMResponseError,
    Message,
    tool,
)
from tests.conftest import TEST_KEY
from tests.hidden_params import cache_hit
from tests.servers.fake_provider import FakeProvider, Reply

EMBEDDING_MODEL = "openai/text-embedding-3-small"


# --- 1. every setting is a constructor keyword -------------------------------------------------

def _default(name: str) -> Any:
    return LiteLLMConfig.model_fields[name].get_default(call_default_factory=True)


@pytest.mark.parametrize("client_class", [LiteLLMClient, AsyncLiteLLMClient])
@pytest.mark.parametrize("name", sorted(LiteLLMConfig.model_fields))
def test_every_setting_is_a_constructor_keyword(client_class: type, name: str) -> None:
    client = client_class(**{name: _default(name)})
    try:
        assert client.config.sources[name] == "argument"
    finally:
        client.close()


def test_injected_objects_have_names_no_setting_has() -> None:
    for client_class in (LiteLLMClient, AsyncLiteLLMClient):
        parameters = inspect.signature(client_class).parameters
        injected = {name for name, p in parameters.items() if p.kind is p.KEYWORD_ONLY}
        assert {"response_cache", "usage_ledger", "rate_limiter"} <= injected
        assert not injected & set(LiteLLMConfig.model_fields)


@pytest.mark.parametrize("cache", [True, "sqlite", "memory"])
def test_cache_as_a_keyword_caches(provider: FakeProvider, cache: Any) -> None:
    with LiteLLMClient(model="openai/gpt-4o-mini", api_base=provider.openai_base,
                       api_key=TEST_KEY, cache=cache) as client:
        client.generate_completion("Cache me")
        hit = client.generate_completion("Cache me")
    assert cache_hit(hit) is True
    assert len(provider.requests) == 1


def test_cache_false_as_a_keyword_does_not_cache(provider: FakeProvider) -> None:
    with LiteLLMClient(model="openai/gpt-4o-mini", api_base=provider.openai_base,
                       api_key=TEST_KEY, cache=False) as client:
        client.generate_completion("Not cached")
        client.generate_completion("Not cached")
    assert len(provider.requests) == 2


# --- 2. what was never sent is the caller's: no retry, no cooldown -----------------------------

class NotJSON:
    pass


BAD_REQUESTS: dict[str, tuple[dict[str, Any], str]] = {
    "nan temperature": ({"temperature": math.nan}, r"temperature is nan: .*finite number"),
    "infinite temperature": ({"temperature": math.inf}, r"temperature is inf"),
    "lone surrogate": ({"messages": [{"role": "user", "content": "caf\udce9"}]},
                       r"messages\[0\]\.content contains '\\udce9' at index 3.*surrogate"),
    "content=123": ({"messages": [{"role": "user", "content": 123}]},
                    r"messages\[0\]\.content is 123 \(int\): pass a string"),
    "content part without a type": ({"messages": [{"role": "user", "content": [{"text": "hi"}]}]},
                                    r"messages\[0\]\.content\[0\] is \{'text': 'hi'\}.*'type'"),
    "unserialisable parameter": ({"seed": NotJSON()}, r"seed is <.*NotJSON.*cannot be sent as JSON"),
    "response_format='json'": ({"response_format": "json"},
                               r"response_format='json' is not a response format.*json_object"),
    "tool schema properties": ({"tools": [{"name": "f", "parameters": {"type": "object",
                                                                         "properties": ["q"]}}]},
                               r"tools\[0\]: 'properties' must map each parameter name"),
    "tool schema required": ({"tools": [{"name": "f", "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}}, "required": "q"}}]},
        r"tools\[0\]: 'required' must be a list"),
    "tools not a list": ({"tools": {"name": "f"}}, r"tools must be a list of tools, not a dict"),
}


def _call(client: LiteLLMClient, arguments: dict[str, Any]) -> Any:
    arguments = dict(arguments)
    messages = arguments.pop("messages", "hi")
    return client.generate_completion(messages, **arguments)


@pytest.mark.parametrize("arguments,message", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_a_request_that_cannot_be_built_is_never_sent(
    make_client: Any, provider: FakeProvider, arguments: dict[str, Any], message: str,
) -> None:
    # One counted failure would put the model in cooldown and refuse the good call below.
    client = make_client(cooldown_failures=1, max_retries=3)
    for _ in range(2):
        with pytest.raises(LLMConfigError, match=message) as caught:
            _call(client, arguments)
        assert caught.value.attempts == []
    assert provider.requests == []
    assert client.generate_completion("hi").choices[0].message.content == "echo: hi"
    assert len(provider.requests) == 1


def test_unusual_but_valid_requests_are_sent(make_client: Any, provider: FakeProvider) -> None:
    from pydantic import BaseModel

    class City(BaseModel):
        name: str

    client = make_client()
    provider.script("gpt-4o-mini", Reply.ok('{"name": "Oslo"}'))
    client.generate_completion("hi", response_format=City, logit_bias={"1234": -100})
    body = provider.requests[-1].json
    assert body["response_format"]["json_schema"]["schema"]["properties"] == {
        "name": {"title": "Name", "type": "string"}}
    assert body["logit_bias"] == {"1234": -100}


def test_a_bad_stream_request_is_never_sent(make_client: Any, provider: FakeProvider) -> None:
    client = make_client(cooldown_failures=1)
    with pytest.raises(LLMConfigError, match="temperature is nan"):
        client.generate_completion("hi", stream=True, temperature=math.nan)
    assert provider.requests == []
    assert "".join(c.choices[0].delta.content or "" for c in client.generate_completion(
        "hi", stream=True) if c.choices) == "echo: hi"


def test_bad_embedding_input_is_never_sent(make_client: Any, provider: FakeProvider) -> None:
    client = make_client(cooldown_failures=1, embedding_model=EMBEDDING_MODEL)
    with pytest.raises(LLMConfigError, match=r"input\[1\] contains '\\ud800'"):
        client.generate_embedding(["fine", "bad \ud800"])
    assert provider.requests == []
    assert len(client.generate_embedding(["fine"])["data"]) == 1


def test_the_async_client_refuses_the_same_requests(provider: FakeProvider) -> None:
    async def main() -> None:
        async with AsyncLiteLLMClient(model="openai/gpt-4o-mini", api_base=provider.openai_base,
                                      api_key=TEST_KEY, cooldown_failures=1) as client:
            with pytest.raises(LLMConfigError, match="response_format"):
                await client.generate_completion("hi", response_format="json")
            with pytest.raises(LLMConfigError, match="temperature is -inf"):
                await client.generate_completion("hi", temperature=-math.inf)
            assert provider.requests == []
            answer = await client.generate_completion("hi")
            assert answer.choices[0].message.content == "echo: hi"

    asyncio.run(main())


def test_a_failure_inside_litellm_before_sending_is_not_retried(
    make_client: Any, provider: FakeProvider,
) -> None:
    """What our checks let through but LiteLLM cannot build (for Anthropic it rounds
    max_tokens, so a string fails inside it, reported as a 500) is the caller's too: one
    attempt, no status, no cooldown, nothing sent."""
    client = make_client(model="anthropic/claude-haiku-4-5", api_base=provider.anthropic_base,
                         cooldown_failures=1, max_retries=3)
    with pytest.raises(LLMBadRequestError, match="the call's arguments") as caught:
        client.generate_completion("hi", max_tokens="many")
    assert caught.value.status_code is None  # no provider said anything
    assert len(caught.value.attempts) == 1
    assert provider.requests == []
    answer = client.generate_completion("hi", max_tokens=20)
    assert answer.choices[0].message.content == "echo: hi"
    assert len(provider.requests) == 1


# --- 3. clear errors for wrong arguments -------------------------------------------------------

def test_a_bad_role_names_the_roles() -> None:
    with pytest.raises(LLMConfigError, match=r"role 'robot' is not valid: use one of system, user"):
        Message(role="robot", content="hi")


def test_bad_message_content_names_the_fix() -> None:
    not_text: Any = 123  # as an untyped caller may pass it
    with pytest.raises(LLMConfigError, match=r"content is 123 \(int\).*str\(value\)"):
        Message(role="user", content=not_text)


def test_a_lone_message_is_asked_to_be_in_a_list(make_client: Any, provider: FakeProvider) -> None:
    with pytest.raises(LLMConfigError, match=r"messages is a Message.*\[message\]"):
        make_client().generate_completion(Message(role="user", content="hi"))
    with pytest.raises(LLMConfigError, match=r"messages is a int"):
        make_client().generate_completion(123)
    assert provider.requests == []


@pytest.mark.parametrize("call,message", [
    (lambda c: c.generate_completion("hi", tags=123), r"tags=123 is not a list of strings"),
    (lambda c: c.generate_completion("hi", tags=["ok", 7]), r"tags=\['ok', 7\] is not a list"),
    (lambda c: c.generate_completion("hi", model=123), r"model=123 is a int, not a model name"),
    (lambda c: c.generate_embedding("hi", model=123), r"model=123 is a int"),
    (lambda c: c.usage(since="x"), r"since='x' is not a time: pass seconds since the epoch"),
], ids=["tags=123", "tags with a number", "model=123", "embedding model=123", "usage since"])
def test_wrong_argument_types_are_config_errors(make_client: Any, provider: FakeProvider,
                                                call: Any, message: str) -> None:
    with pytest.raises(LLMConfigError, match=message):
        call(make_client())
    assert provider.requests == []


def test_a_tool_with_an_unresolvable_annotation(make_client: Any, provider: FakeProvider) -> None:
    def lookup(x: Undefined) -> str:  # type: ignore[name-defined]  # noqa: F821, ARG001 - the annotation is the test
        """Look x up."""
        return ""

    with pytest.raises(LLMConfigError, match=r"cannot build a tool schema for lookup: .*Undefined"
                                             r".*define or import that type"):
        tool(lookup)
    with pytest.raises(LLMConfigError, match="cannot build a tool schema for lookup"):
        make_client().generate_completion("hi", tools=[lookup])
    assert provider.requests == []


def test_no_bad_argument_escapes_as_a_raw_python_error(make_client: Any) -> None:
    client = make_client()
    attempts: list[Callable[[], object]] = [
        lambda: Message(role="robot"),
        lambda: client.generate_completion("hi", tags=123),
        lambda: client.generate_completion("hi", model=123),
        lambda: client.usage(since="x"),
        lambda: client.generate_completion([{"role": "user", "content": 1.5}]),
        lambda: client.generate_completion("hi", functions="f"),
    ]
    for attempt in attempts:
        with pytest.raises(LLMError):
            attempt()


# --- 4. the endpoint is part of the cache key, the API key is not -----------------------------

def test_two_servers_with_one_model_name_do_not_share_answers(
    provider: FakeProvider, isolated: Path,
) -> None:
    cache_file = isolated / "shared.db"
    with FakeProvider() as other:
        provider.script("gpt-4o-mini", Reply.ok("answer from A"))
        other.script("gpt-4o-mini", Reply.ok("answer from B"))
        answers = []
        for base, key in ((provider.openai_base, TEST_KEY), (other.openai_base, "sk-other-987654321")):
            with LiteLLMClient(model="openai/gpt-4o-mini", api_base=base, api_key=key,
                               cache="sqlite", cache_url=str(cache_file)) as client:
                answers.append(client.generate_completion("Who are you?").choices[0].message.content)
        assert answers == ["answer from A", "answer from B"]
        assert len(provider.requests) == len(other.requests) == 1
    stored = cache_file.read_bytes()
    assert TEST_KEY.encode() not in stored and b"sk-other-987654321" not in stored


def test_embeddings_from_two_servers_do_not_share_vectors(
    provider: FakeProvider, isolated: Path,
) -> None:
    with FakeProvider() as other:
        for base in (provider.openai_base, other.openai_base):
            with LiteLLMClient(model="openai/gpt-4o-mini", api_base=base, api_key=TEST_KEY,
                               embedding_model=EMBEDDING_MODEL, cache="sqlite",
                               cache_url=str(isolated / "shared.db")) as client:
                client.generate_embedding("hello")
        assert len(provider.requests) == len(other.requests) == 1


def test_a_new_api_key_for_the_same_server_still_hits(provider: FakeProvider, isolated: Path) -> None:
    for key in (TEST_KEY, "sk-rotated-0000000000"):
        with LiteLLMClient(model="openai/gpt-4o-mini", api_base=provider.openai_base + "/",
                           api_key=key, cache="sqlite", cache_url=str(isolated / "c.db")) as client:
            client.generate_completion("Same server")
    assert len(provider.requests) == 1


# --- 5. a provider that drops embeddings ---------------------------------------------------------

def test_fewer_embeddings_than_texts_is_a_response_error(make_client: Any, provider: FakeProvider) -> None:
    client = make_client(embedding_model=EMBEDDING_MODEL, cache="memory")
    provider.script("text-embedding-3-small", Reply.few_vectors(1))
    with pytest.raises(LLMResponseError, match=r"openai/text-embedding-3-small returned 1 "
                                               r"embeddings for 3 texts") as caught:
        client.generate_embedding(["one", "two", "three"])
    assert caught.value.model == EMBEDDING_MODEL
    # Nothing of the broken answer was cached: the next call sends all three texts again.
    answer = client.generate_embedding(["one", "two", "three"])
    assert len(answer["data"]) == 3
    assert provider.requests[-1].json["input"] == ["one", "two", "three"]
