"""Every chat model of provider openai in the price map: under ``transport: auto`` a call
either goes native and the server receives exactly the JSON body LiteLLM would send, or
it goes through LiteLLM (``transports()`` / ``transport_for`` say so).

LiteLLM rewrites or refuses some arguments per model (max_tokens -> max_completion_tokens
for reasoning models, ``user`` left out outside OpenAI's catalog, ``reasoning_effort``
refused by models that do not reason, an alias row sent as the row it names, ...).
``_routing.transport_for`` encodes those rules as data; this test holds them to LiteLLM's
behaviour, through real HTTP to the fake provider, for each model and a representative
argument set.  Only the (model, arguments) pairs routed native are sent twice: the others
need no proof (LiteLLM sends them).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import litellm
import pytest

from dewey.llm import LiteLLMClient
from dewey.llm._catalog import Catalog
from dewey.llm._exceptions import LLMBadRequestError, LLMConfigError
from dewey.llm._native import NativeTransport
from dewey.llm._routing import transport_for
from tests.conftest import TEST_KEY
from tests.servers.fake_provider import FakeProvider

litellm.suppress_debug_info = True

CATALOG = Catalog()
MODELS = sorted(f"openai/{name.removeprefix('openai/')}" for name, entry in CATALOG.entries.items()
                if entry.get("litellm_provider") == "openai" and entry.get("mode") == "chat")
# A model the map does not know (a vLLM or proxy model): LiteLLM treats it otherwise.
OUTSIDE = "openai/my-served-model"
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]

# Grouped so that a model refusing one argument (LiteLLM raises before sending) does not
# hide what it does with the others: the arguments every OpenAI chat model takes in one
# call, those LiteLLM treats per model each in its own.
ARGUMENTS: dict[str, dict[str, Any]] = {
    "sampling_and_tools": {
        "max_tokens": 20, "temperature": 0.3, "top_p": 0.9, "n": 2, "stop": ["END"], "seed": 7,
        "logprobs": True, "top_logprobs": 2, "presence_penalty": 0.1, "frequency_penalty": 0.2,
        "logit_bias": {"50256": -100}, "tools": TOOLS, "tool_choice": "auto", "parallel_tool_calls": False,
        "max_completion_tokens": 30, "store": True, "service_tier": "auto", "prompt_cache_key": "k",
        "modalities": ["text"], "prediction": {"type": "content", "content": "x"}},
    "response_format": {"response_format": {"type": "json_object"}},
    "user": {"user": "user-1234"},
    "reasoning_effort": {"reasoning_effort": "low"},
    "verbosity": {"verbosity": "low"},
}


@pytest.fixture(scope="module")
def native() -> Iterator[NativeTransport]:
    with NativeTransport() as transport:
        yield transport


def _sent(provider: FakeProvider, call: Any, kwargs: dict[str, Any]) -> Any:
    """The body the server received for ``call(kwargs)``, or the error that stopped it
    before anything was sent."""
    provider.reset()
    try:
        call(kwargs)
    except Exception as exc:  # LiteLLM's UnsupportedParamsError: a refusal, nothing sent
        if not provider.requests:
            return f"refused before sending: {type(exc).__name__}"
    return provider.requests[-1].body


def _differences(provider: FakeProvider, native: NativeTransport, arguments: dict[str, Any],
                 models: list[str]) -> tuple[list[str], int]:
    """The models whose native call would differ from LiteLLM's, and how many were compared."""
    wrong, compared = [], 0
    for model in models:
        if transport_for("auto", model, CATALOG, arguments) != "native":
            continue
        kwargs = {"model": model, "messages": MESSAGES, "api_base": provider.openai_base,
                  "api_key": TEST_KEY, "timeout": 10, "max_retries": 0, **arguments}
        expected = _sent(provider, lambda kw: litellm.completion(**kw), kwargs)
        got = _sent(provider, native.complete, kwargs)
        compared += 1
        if got != expected:
            wrong.append(f"{model}: LiteLLM sent {expected}, native {got}")
    return wrong, compared


@pytest.mark.parametrize("group", sorted(ARGUMENTS))
def test_every_openai_model_goes_native_only_where_it_sends_what_litellm_sends(
        group: str, provider: FakeProvider, native: NativeTransport) -> None:
    wrong, compared = _differences(provider, native, ARGUMENTS[group], [*MODELS, OUTSIDE])
    assert wrong == []
    # verbosity is refused by every model outside the reasoning families: none goes native.
    assert compared > 0 or group == "verbosity"


def test_the_rules_leave_most_models_native_and_send_the_rest_through_litellm() -> None:
    """The proof above is not vacuous: the plain models (gpt-4o, gpt-4.1, ...) go native,
    and the ones LiteLLM rewrites go through it."""
    routes = {model: transport_for("auto", model, CATALOG, ARGUMENTS["sampling_and_tools"]) for model in MODELS}
    assert len(MODELS) > 50
    assert {routes[m] for m in ("openai/gpt-4o", "openai/gpt-4.1-mini", "openai/gpt-3.5-turbo")} == {"native"}
    assert {routes[m] for m in ("openai/o3-mini", "openai/gpt-5", "openai/gpt-5-chat-latest")} == {"litellm"}
    assert sum(route == "native" for route in routes.values()) >= len(MODELS) // 3
    aliases = [model for model in MODELS if CATALOG.is_alias(model)]
    assert aliases and {routes[m] for m in aliases} == {"litellm"}


def test_transports_names_the_route_of_each_model(provider: FakeProvider) -> None:
    with LiteLLMClient(model="openai/gpt-4o", api_base=provider.openai_base, api_key=TEST_KEY) as client:
        assert client.transports("openai/gpt-4o")["openai/gpt-4o"] == "native"
        assert client.transports("openai/o4-mini")["openai/o4-mini"] == "litellm"


def test_each_call_is_routed_by_its_arguments(provider: FakeProvider) -> None:
    """The rules apply per call: gpt-4o goes native, but a call of it with
    ``reasoning_effort`` goes through LiteLLM, which refuses it before sending, as it would
    under ``transport: litellm``; forced native, it is sent as given."""
    with LiteLLMClient(model="openai/gpt-4o", api_base=provider.openai_base, api_key=TEST_KEY,
                       max_retries=0) as client:
        assert client.generate_completion("hi").choices[0].message.content == "echo: hi"
        with pytest.raises(LLMBadRequestError, match="reasoning_effort"):
            client.generate_completion("hi", reasoning_effort="low")
    assert len(provider.requests) == 1
    with LiteLLMClient(model="openai/gpt-4o", api_base=provider.openai_base, api_key=TEST_KEY,
                       transport="native") as client:
        client.generate_completion("hi", reasoning_effort="low")
    assert provider.requests[-1].body is not None and provider.requests[-1].body["reasoning_effort"] == "low"


def test_native_forced_for_a_model_litellm_rewrites_is_still_allowed(provider: FakeProvider) -> None:
    """``transport: native`` is the user's choice for an OpenAI model: the rules above are
    what ``auto`` does, not a refusal."""
    with LiteLLMClient(model="openai/o4-mini", api_base=provider.openai_base, api_key=TEST_KEY,
                       transport="native") as client:
        assert client.transports()["openai/o4-mini"] == "native"
    with pytest.raises(LLMConfigError, match="speaks the OpenAI wire only"):
        LiteLLMClient(model="anthropic/claude-haiku-4-5", api_key=TEST_KEY, transport="native").transports()
