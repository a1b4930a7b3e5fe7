"""Which transport a model's calls take (``_routing.transport_for``): pure, no I/O.

``auto`` takes the native transport where tests/test_native.py proves it sends what
LiteLLM sends (provider ``openai``), LiteLLM everywhere else and for the models whose
requests LiteLLM rewrites in ways the native transport does not mirror; ``local/`` models
always run in process (``local``).
"""

from __future__ import annotations

import pytest

from dewey.llm import FallbackModel, LiteLLMConfig, LLMConfigError
from dewey.llm._catalog import Catalog
from dewey.llm._routing import routes_for, transport_for


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog()


@pytest.mark.parametrize("model", [
    "gpt-4o-mini", "openai/gpt-4o-mini", "openai/my-vllm-model", "gpt-4.1", "text-embedding-3-small",
    "openai/text-embedding-3-large",
])
def test_auto_speaks_openai_natively(catalog: Catalog, model: str) -> None:
    assert transport_for("auto", model, catalog) == "native"


@pytest.mark.parametrize("model", [
    "anthropic/claude-3-5-haiku-latest", "gemini/gemini-2.0-flash",
    "groq/llama-3.1-8b-instant", "mistral/mistral-small-latest", "azure/my-deployment",
])
def test_auto_takes_litellm_for_other_providers(catalog: Catalog, model: str) -> None:
    assert transport_for("auto", model, catalog) == "litellm"


@pytest.mark.parametrize("setting", ["auto", "native", "litellm"])
def test_local_models_run_in_process_under_every_setting(catalog: Catalog, setting: str) -> None:
    # The setting says how remote providers are reached; a local model has one way only,
    # so `transport: litellm` (or native) with a local fallback keeps working.
    assert transport_for(setting, "local/smollm2", catalog) == "local"
    assert transport_for(setting, "local//models/any.gguf", catalog) == "local"
    config = LiteLLMConfig(model="gpt-4o-mini", transport=setting, fallback_models=["local/smollm2"])
    assert routes_for(config, config.resolved_model(), catalog)[-1].transport == "local"


@pytest.mark.parametrize("model", ["o1", "o3-mini", "openai/o3-mini", "o4-mini", "gpt-5", "openai/gpt-5-mini"])
def test_auto_takes_litellm_where_litellm_rewrites_the_request(catalog: Catalog, model: str) -> None:
    # LiteLLM sends their system messages as user messages, refuses a temperature, ...
    assert transport_for("auto", model, catalog) == "litellm"
    assert transport_for("native", model, catalog) == "native"  # forced: the user's choice


def test_user_outside_the_catalog_goes_through_litellm_under_auto(catalog: Catalog) -> None:
    # LiteLLM drops ``user`` for such a model; auto must not change what the server gets.
    assert transport_for("auto", "openai/my-vllm-model", catalog, {"user": "u-1"}) == "litellm"
    assert transport_for("auto", "openai/gpt-4o-mini", catalog, {"user": "u-1"}) == "native"
    assert transport_for("auto", "openai/my-vllm-model", catalog, {"temperature": 0}) == "native"


def test_a_pydantic_response_format_goes_through_litellm(catalog: Catalog) -> None:
    from pydantic import BaseModel

    class City(BaseModel):
        name: str

    # LiteLLM turns the class into a json_schema; a dict schema is sent as given on both.
    assert transport_for("auto", "gpt-4o-mini", catalog, {"response_format": City}) == "litellm"
    assert transport_for("auto", "gpt-4o-mini", catalog, {"response_format": {"type": "json_object"}}) == "native"


def test_litellm_forced_everywhere(catalog: Catalog) -> None:
    assert transport_for("litellm", "openai/gpt-4o-mini", catalog) == "litellm"


def test_native_forced_on_another_provider_names_the_fix(catalog: Catalog) -> None:
    with pytest.raises(LLMConfigError) as caught:
        transport_for("native", "anthropic/claude-3-5-haiku-latest", catalog)
    message = caught.value.message
    assert "provider anthropic" in message and "transport to auto or litellm" in message
    assert "'openai/claude-3-5-haiku-latest' and set api_base" in message


def test_each_route_carries_its_transport(catalog: Catalog) -> None:
    config = LiteLLMConfig(model="openai/my-model", api_base="http://127.0.0.1:9/v1", api_key="sk-x", fallback_models=[
        "anthropic/claude-3-5-haiku-latest",
        FallbackModel(model="gpt-4o-mini", transport="litellm"),
        FallbackModel(model="openai/other", api_base="http://127.0.0.1:8/v1"),
    ])
    routes = routes_for(config, config.resolved_model(), catalog)
    assert [(r.model, r.transport) for r in routes] == [
        ("openai/my-model", "native"), ("anthropic/claude-3-5-haiku-latest", "litellm"),
        ("gpt-4o-mini", "litellm"), ("openai/other", "native")]


def test_the_setting_comes_from_config_env_and_fallbacks() -> None:
    assert LiteLLMConfig().transport == "auto"
    assert LiteLLMConfig.load(environ={"LITELLM_TRANSPORT": "LiteLLM"}).transport == "litellm"
    assert LiteLLMConfig.load({"transport": "native"}, environ={"LITELLM_TRANSPORT": "litellm"}).transport == "native"
    with pytest.raises(LLMConfigError) as caught:
        LiteLLMConfig(transport="fast")
    assert "transport" in caught.value.message and "auto" in caught.value.message
    with pytest.raises(LLMConfigError) as caught:
        LiteLLMConfig(fallback_models=[{"model": "gpt-4o", "transport": "httpx"}])
    assert "fallback_models.0.transport" in caught.value.message
