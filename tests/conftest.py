"""Shared fixtures: an isolated environment for every test, and the servers tests talk to.

The servers' fixtures live beside them in ``tests/servers`` and reach every test module
through ``pytest_plugins``; test modules request them by name and never import them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# LiteLLM would try to download its price map at import: the bundled one is what we test.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from dewey.llm import LiteLLMClient, LiteLLMConfig
from tests.servers.fake_provider import FakeProvider

pytest_plugins = [
    "tests.servers.fixtures",  # provider, provider_session
    "tests.servers.postgres",  # pg_table
    "tests.servers.redis_server",  # redis_namespace
    "tests.servers.llama_server",  # llama_server
    "tests.servers.litellm_proxy",  # litellm_proxy
]

TEST_KEY = "sk-test-0123456789abcdef"
_PROVIDER_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "MISTRAL_API_KEY",
                  "GROQ_API_KEY", "OPENAI_API_BASE", "OPENAI_BASE_URL", "ANTHROPIC_API_BASE",
                  "ANTHROPIC_BASE_URL", "DEWEY_LLM_CONFIG")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No user config, keys, ledger or cache leak into a test (or out of it)."""
    for name in list(os.environ):
        if (name.startswith("LITELLM_") and name != "LITELLM_LOCAL_MODEL_COST_MAP") or (
            name in _PROVIDER_KEYS
        ):
            monkeypatch.delenv(name)
    for name in ("XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def make_client(provider: FakeProvider) -> Iterator[Callable[..., LiteLLMClient]]:
    """Clients pointed at the fake provider, with fast backoff; closed after the test."""
    clients: list[LiteLLMClient] = []

    def make(**settings: Any) -> LiteLLMClient:
        values: dict[str, Any] = {"model": "openai/gpt-4o-mini", "api_base": provider.openai_base,
                                  "api_key": TEST_KEY, "backoff_base": 0.01, "backoff_max": 0.05}
        values.update(settings)
        client = LiteLLMClient(config=LiteLLMConfig(**values))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
