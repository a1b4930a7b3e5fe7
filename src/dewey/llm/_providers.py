"""The one table of provider facts: keys, default models, endpoints, stream usage, names.

Each provider dewey-llm knows is a frozen :class:`Provider`; generic code reads these
facts instead of testing ``if provider == ...`` in many places.  Providers not in the
table still work through LiteLLM; they just get no defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from ._exceptions import LLMConfigError

__all__ = ["LOCAL_DEFAULT_MODEL", "PROVIDERS", "Provider", "default_embedding_model", "default_model",
           "key_variables", "provider_named", "qualify_model", "reports_stream_usage"]

LOCAL_DEFAULT_MODEL = "local/smollm2"


@dataclass(frozen=True)
class Provider:
    """What dewey-llm knows about one LiteLLM provider."""

    name: str
    """LiteLLM's name, the ``name/`` prefix of its models."""
    key_variables: tuple[str, ...] = ()
    """Environment variables LiteLLM reads the credentials from (none: no key needed)."""
    default_model: str | None = None
    """The chat model picked when the first key variable is set and no model is configured."""
    api_base: str | None = None
    """The default endpoint (None: per deployment, e.g. an Azure resource or a local server)."""
    stream_usage: bool = False
    """Whether streams report usage when asked with ``stream_options={"include_usage": True}``."""
    bare_prefixes: tuple[str, ...] = ()
    """How the provider's model names start when written without ``name/``."""
    needs_prefix: bool = False
    """Whether :func:`qualify_model` adds ``name/`` to those bare names: LiteLLM drops
    retired models from its map, and then cannot tell which provider a bare name is for."""
    embedding_model: str | None = None
    """The embedding model used with this provider's chat models when none is configured."""
    cached_input_share: float = 1.0
    """What a cached prompt token costs, as a share of the input rate, when the price map
    states no cache-read rate for a model."""


# Order matters: default_model() picks the first provider whose key is set.
PROVIDERS: tuple[Provider, ...] = (
    Provider("openai", ("OPENAI_API_KEY",), "gpt-4o-mini", "https://api.openai.com/v1", stream_usage=True,
             bare_prefixes=("gpt-", "o1", "o3", "o4"), embedding_model="text-embedding-3-small"),
    Provider("anthropic", ("ANTHROPIC_API_KEY",), "claude-haiku-4-5", "https://api.anthropic.com",
             bare_prefixes=("claude",), needs_prefix=True),
    Provider("gemini", ("GEMINI_API_KEY", "GOOGLE_API_KEY"), "gemini/gemini-2.0-flash",
             "https://generativelanguage.googleapis.com", bare_prefixes=("gemini-",), needs_prefix=True),
    Provider("mistral", ("MISTRAL_API_KEY",), "mistral/mistral-small-latest", "https://api.mistral.ai/v1",
             stream_usage=True, bare_prefixes=("mistral-",), needs_prefix=True),
    Provider("groq", ("GROQ_API_KEY",), "groq/llama-3.1-8b-instant", "https://api.groq.com/openai/v1",
             stream_usage=True),
    Provider("azure", ("AZURE_API_KEY",), stream_usage=True),
    Provider("bedrock", ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")),
    Provider("cohere", ("COHERE_API_KEY",), api_base="https://api.cohere.ai",
             bare_prefixes=("command-",), needs_prefix=True),
    Provider("cohere_chat", ("COHERE_API_KEY",), api_base="https://api.cohere.ai"),  # LiteLLM's v2 route
    Provider("ollama", api_base="http://localhost:11434"),
    Provider("ollama_chat", api_base="http://localhost:11434"),
    Provider("deepseek", ("DEEPSEEK_API_KEY",), api_base="https://api.deepseek.com", stream_usage=True),
    Provider("together_ai", ("TOGETHERAI_API_KEY",), api_base="https://api.together.xyz/v1", stream_usage=True),
    Provider("fireworks_ai", ("FIREWORKS_AI_API_KEY",), api_base="https://api.fireworks.ai/inference/v1",
             stream_usage=True, cached_input_share=0.5),  # LiteLLM: FIREWORKS_AI_DEFAULT_CACHE_READ_RATE_RATIO
    Provider("xai", ("XAI_API_KEY",), api_base="https://api.x.ai/v1", stream_usage=True),
    Provider("openrouter", ("OPENROUTER_API_KEY",), api_base="https://openrouter.ai/api/v1"),
    Provider("hosted_vllm", stream_usage=True),
    Provider("openai_like", stream_usage=True),
    Provider("text-completion-openai", ("OPENAI_API_KEY",), api_base="https://api.openai.com/v1",
             stream_usage=True),
    # Our llama.cpp provider: runs offline, reports real usage when asked, and embeds with
    # the chat model itself.
    Provider("local", stream_usage=True),
)

_BY_NAME = {provider.name: provider for provider in PROVIDERS}


def provider_named(name: str | None) -> Provider | None:
    """The table's entry for a LiteLLM provider name, if dewey-llm knows it."""
    return _BY_NAME.get(name) if name else None


def key_variables(provider: str | None) -> tuple[str, ...]:
    """The environment variables holding ``provider``'s credentials (none if unknown)."""
    found = provider_named(provider)
    return found.key_variables if found else ()


def reports_stream_usage(provider: str | None) -> bool:
    """Whether ``provider`` accepts ``stream_options={"include_usage": True}`` for usage on streams."""
    found = provider_named(provider)
    return found.stream_usage if found else False


def default_model(environ: Mapping[str, str] | None = None) -> str:
    """A model for the first provider key found in the environment, else the local model."""
    environ = os.environ if environ is None else environ
    for provider in PROVIDERS:
        if provider.default_model and environ.get(provider.key_variables[0]):
            return provider.default_model
    return LOCAL_DEFAULT_MODEL


def qualify_model(model: str) -> str:
    """Add the provider prefix to a bare model name LiteLLM may no longer map.

    ``claude-2`` -> ``anthropic/claude-2``: LiteLLM drops retired models from its map,
    and then cannot tell which provider a bare name belongs to.
    """
    if "/" in model:
        return model
    for provider in PROVIDERS:
        if provider.needs_prefix and model.startswith(provider.bare_prefixes):
            return f"{provider.name}/{model}"
    return model


def default_embedding_model(chat_model: str) -> str:
    """The embedding model to use alongside ``chat_model`` when none is configured.

    A local model embeds with itself; OpenAI chat models get OpenAI's small embedding
    model; for any other provider there is no safe guess, so the error says what to set.
    """
    provider = _provider_of(chat_model)
    if provider is not None and provider.name == "local":
        return chat_model
    if provider is not None and provider.embedding_model:
        return provider.embedding_model
    raise LLMConfigError(
        f"no embedding model is configured for {chat_model}: set embedding_model "
        "(e.g. text-embedding-3-small, or local/smollm2 to embed offline)")


def _provider_of(model: str) -> Provider | None:
    """The provider named by ``model``'s ``name/`` prefix, else the one its name starts like."""
    named = provider_named(model.split("/", 1)[0]) if "/" in model else None
    if named is not None:
        return named
    return next((p for p in PROVIDERS if p.bare_prefixes and model.startswith(p.bare_prefixes)), None)
