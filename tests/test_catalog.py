"""The catalog and the provider table, checked against LiteLLM itself (differential tests).

LiteLLM is imported here on purpose: it is the reference our own reading of its price map
must agree with.  Nothing of LiteLLM is mocked.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from dewey.llm import _providers
from dewey.llm._catalog import Catalog, NotPriced
from dewey.llm._exceptions import LLMConfigError

# Small, tiny, and past the 128k/200k/272k thresholds some models bill higher above.
TOKEN_COUNTS = ((1000, 500), (1, 1), (123456, 7), (300_000, 3))

# Providers whose log-in LiteLLM attempts (a device-code flow over the network) just to
# name the provider of a model: asking would hang offline, so they are left out.
NEEDS_LOGIN = ("github_copilot/", "chatgpt/")

# LiteLLM asks these providers' local servers for model info, ignoring its map's numbers.
ASKS_ITS_SERVER = ("lemonade/",)

# LiteLLM's get_llm_provider disagrees with its own map for these names; ours follows the
# map (or the name's prefix), which is where the model is served.
PROVIDER_EXCEPTIONS = {
    ("ai21", "ai21_chat"): "LiteLLM routes the legacy bare ai21 names through its ai21_chat client",
    ("azure", "openai"): "azure/mistral-large-latest: LiteLLM treats it as an OpenAI-compatible name",
}


@pytest.fixture(scope="module")
def litellm() -> ModuleType:
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    import litellm as module

    module.suppress_debug_info = True
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    return module


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog()


def _their_provider(litellm: ModuleType, model: str) -> str | None:
    try:
        return str(litellm.get_llm_provider(model)[1])
    except Exception:
        return None


def _misrouted(litellm: ModuleType, catalog: Catalog, model: str) -> bool:
    theirs = _their_provider(litellm, model)
    return theirs is None or (catalog.provider(model), theirs) in PROVIDER_EXCEPTIONS


def _priced_models(catalog: Catalog) -> list[str]:
    return [name for name, entry in catalog.entries.items()
            if entry.get("mode") in ("chat", "embedding") and not name.startswith(NEEDS_LOGIN)]


# --- token_cost == litellm.cost_per_token ----------------------------------------------------

def test_token_cost_equals_litellm_for_every_chat_and_embedding_model(
        litellm: ModuleType, catalog: Catalog) -> None:
    equal: set[str] = set()
    refused: set[str] = set()  # NotPriced: the caller asks LiteLLM instead
    # LiteLLM cannot name the provider, or names one its map disagrees with (see
    # PROVIDER_EXCEPTIONS), so it finds no price; ours reads the map's.
    unroutable: set[str] = set()
    wrong: list[tuple[str, int, int, Any, Any]] = []
    for model in _priced_models(catalog):
        window = catalog.context_window(model)
        for prompt, completion in TOKEN_COUNTS:
            if window and prompt > window:
                continue
            try:
                ours: float | None = catalog.token_cost(model, prompt, completion)
            except NotPriced:
                refused.add(model)
                continue
            try:
                theirs = sum(litellm.cost_per_token(model=model, prompt_tokens=prompt,
                                                    completion_tokens=completion))
            except Exception:
                if ours == 0.0:
                    equal.add(model)  # neither prices it
                elif _misrouted(litellm, catalog, model):
                    unroutable.add(model)
                else:
                    wrong.append((model, prompt, completion, ours, "error"))
                continue
            if ours is not None and math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=1e-15):
                equal.add(model)
            else:
                wrong.append((model, prompt, completion, ours, theirs))
    assert wrong == [], "\n".join(map(str, wrong))
    equal -= refused | unroutable
    assert len(equal) > 3000, len(equal)
    # Refusals are the few pricing schemes the per-token formula does not model.
    assert len(refused) < 0.05 * len(equal), sorted(refused)
    assert len(unroutable) < 50, sorted(unroutable)


def test_refused_models_are_priced_in_a_way_the_formula_does_not_model(catalog: Catalog) -> None:
    schemes = ("cost_per_second", "per_character", "per_request", "per_query", "off_peak")
    for model in _priced_models(catalog):
        try:
            catalog.token_cost(model, 10, 10)
        except NotPriced:
            entry = catalog.details(model)
            assert any(s in key for key in entry for s in schemes), model


def test_cached_tokens_cost_as_litellm_says_for_every_model(litellm: ModuleType, catalog: Catalog) -> None:
    from litellm.types.utils import PromptTokensDetailsWrapper, Usage

    usage = Usage(prompt_tokens=1000, completion_tokens=50, total_tokens=1050,
                  prompt_tokens_details=PromptTokensDetailsWrapper(cached_tokens=400))
    equal, wrong = 0, []
    for model in _priced_models(catalog):
        try:
            ours = catalog.token_cost(model, 1000, 50, cached_tokens=400)
            theirs = sum(litellm.cost_per_token(model=model, usage_object=usage))
        except Exception:  # NotPriced, or LiteLLM cannot price it: both checked above
            continue
        if math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=1e-15):
            equal += 1
        else:
            wrong.append((model, ours, theirs))
    assert wrong == [], "\n".join(map(str, wrong))
    assert equal > 3000


def test_unknown_and_unpriced_models_cost_nothing(catalog: Catalog) -> None:
    assert catalog.token_cost("no-such-model-anywhere", 100, 100) == 0.0
    assert not catalog.is_priced("no-such-model-anywhere")
    assert catalog.is_priced("gpt-4o")


# --- context windows and providers ------------------------------------------------------------

def test_context_window_equals_litellm_model_info(litellm: ModuleType, catalog: Catalog) -> None:
    compared, wrong = 0, []
    for model in catalog.entries:
        if model.startswith(NEEDS_LOGIN + ASKS_ITS_SERVER):
            continue
        try:
            theirs = litellm.get_model_info(model).get("max_input_tokens")
        except Exception:
            continue  # LiteLLM cannot route the name; ours still reads the map
        if catalog.context_window(model) != (int(theirs) if theirs else None):
            wrong.append((model, catalog.context_window(model), theirs))
        compared += 1
    assert wrong == []
    assert compared > 4000




def test_provider_equals_litellm_for_every_map_name(litellm: ModuleType, catalog: Catalog) -> None:
    agreed = 0
    for model in catalog.entries:
        if model.startswith(NEEDS_LOGIN):
            continue
        ours, theirs = catalog.provider(model), _their_provider(litellm, model)
        if theirs is None:
            assert ours, model  # LiteLLM cannot tell; the map can
            continue
        assert ours == theirs or (ours, theirs) in PROVIDER_EXCEPTIONS, (model, ours, theirs)
        agreed += ours == theirs
    assert agreed > 4000


def test_a_fine_tune_is_placed_and_priced_as_litellm_does(litellm: ModuleType, catalog: Catalog) -> None:
    for name in ("ft:gpt-4o-mini-2024-07-18:my-org:custom:abc123",
                 "openai/ft:gpt-4o-mini-2024-07-18:my-org:custom:abc123"):
        assert catalog.provider(name) == litellm.get_llm_provider(name)[1] == "openai"
        theirs = sum(litellm.cost_per_token(model=name, prompt_tokens=1000, completion_tokens=100))
        assert theirs > 0 and catalog.token_cost(name, 1000, 100) == pytest.approx(theirs, rel=1e-12)


def test_provider_of_prefixed_names_not_in_the_map(catalog: Catalog) -> None:
    assert catalog.provider("openai/my-private-model") == "openai"
    assert catalog.provider("hosted_vllm/whatever") == "hosted_vllm"
    assert catalog.provider("openai_like/whatever") == "openai_like"
    assert catalog.provider("no-such-model") is None


# --- details, names, suggestions -----------------------------------------------------------------

def test_details_of_a_known_model(catalog: Catalog) -> None:
    details = catalog.details("openai/gpt-4o")
    assert details["model"] == "openai/gpt-4o"
    assert details["litellm_provider"] == "openai"
    assert details["max_input_tokens"] == catalog.context_window("gpt-4o")


def test_unknown_model_says_what_was_meant_and_how_to_use_a_compatible_server(catalog: Catalog) -> None:
    with pytest.raises(LLMConfigError) as caught:
        catalog.details("gpt-4o-mnii")
    message = str(caught.value)
    assert "'gpt-4o-mini'" in message
    assert "openai/gpt-4o-mnii" in message and "api_base" in message


def test_models_lists_one_provider_and_mode(catalog: Catalog) -> None:
    names = catalog.models("anthropic")
    assert names and all(catalog.provider(n) == "anthropic" for n in names)
    assert all(catalog.entries[n]["mode"] == "chat" for n in names)
    assert "text-embedding-3-small" in catalog.models("openai", mode="embedding")


def test_extra_entries_add_local_models(catalog: Catalog) -> None:
    local = Catalog(extra={"local/tiny": {"max_input_tokens": 2048, "input_cost_per_token": 0.0,
                                          "output_cost_per_token": 0.0, "mode": "chat",
                                          "litellm_provider": "local"}})
    assert local.context_window("local/tiny") == 2048
    assert local.provider("local/tiny") == "local"
    assert local.token_cost("local/tiny", 100, 100) == 0.0
    assert "local/tiny" in local.models("local")
    assert catalog.context_window("local/tiny") is None


def test_using_the_catalog_does_not_import_litellm() -> None:
    code = ("import sys\nfrom dewey.llm._catalog import Catalog\nc = Catalog()\n"
            "c.token_cost('gpt-4o', 10, 10); c.provider('gpt-4o'); c.context_window('gpt-4o')\n"
            "c.models(); c.suggest('gpt4o')\n"
            "assert 'litellm' not in sys.modules, 'litellm imported'\nprint('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.stdout.strip() == "ok", result.stderr


# --- the parsed map kept between processes --------------------------------------------------------

def _write_map(path: Path, window: int) -> None:
    path.write_text(json.dumps({"my-model": {"max_input_tokens": window, "mode": "chat",
                                             "litellm_provider": "openai"}}))


def _copies(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "xdg_cache_home" / "dewey-llm").glob("*.marshal"))


def test_the_parsed_map_is_kept_and_read_afresh_when_the_file_changes(tmp_path: Path) -> None:
    source = tmp_path / "map.json"
    _write_map(source, 1000)
    assert Catalog(path=source).context_window("my-model") == 1000
    assert len(_copies(tmp_path)) == 1
    # Same path, size and time: the kept copy answers, so the JSON is not parsed again.
    before = source.stat()
    source.write_text("x" * before.st_size)
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert Catalog(path=source).context_window("my-model") == 1000
    # A new file (LiteLLM upgraded) is read afresh, and the stale copy goes.
    _write_map(source, 2000)
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    assert Catalog(path=source).context_window("my-model") == 2000
    assert len(_copies(tmp_path)) == 1


def test_a_torn_or_unwritable_copy_falls_back_to_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "map.json"
    _write_map(source, 1000)
    Catalog(path=source).entries  # noqa: B018 - writes the copy
    (copy,) = _copies(tmp_path)
    copy.write_bytes(copy.read_bytes()[:20])
    assert Catalog(path=source).context_window("my-model") == 1000
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))  # no directory can be made there
    assert Catalog(path=source).context_window("my-model") == 1000
    assert Catalog().context_window("gpt-4o") == 128000


# --- the provider table ---------------------------------------------------------------------------

SAMPLE_MODELS = {
    "openai": "gpt-4o", "anthropic": "anthropic/claude-haiku-4-5", "gemini": "gemini/gemini-2.0-flash",
    "mistral": "mistral/mistral-small-latest", "groq": "groq/llama-3.1-8b-instant", "azure": "azure/gpt-4o",
    "bedrock": "bedrock/anthropic.claude-3-haiku-20240307-v1:0", "cohere": "cohere/command-r",
    "deepseek": "deepseek/deepseek-chat", "together_ai": "together_ai/meta-llama/Llama-3-8b",
    "fireworks_ai": "fireworks_ai/accounts/fireworks/models/llama", "xai": "xai/grok-2",
    "openrouter": "openrouter/openai/gpt-4o",
}


def test_key_variables_are_the_ones_litellm_asks_for(litellm: ModuleType) -> None:
    for provider, model in SAMPLE_MODELS.items():
        missing = litellm.validate_environment(model, api_key=None)["missing_keys"]
        keys = {k for k in missing if not k.endswith(("_API_BASE", "_API_VERSION"))}
        assert set(_providers.key_variables(provider)) == keys, provider


def test_every_provider_in_the_table_is_one_litellm_knows(litellm: ModuleType) -> None:
    known = {str(getattr(p, "value", p)) for p in litellm.provider_list} | {"local"}
    assert {p.name for p in _providers.PROVIDERS} <= known


def test_default_model_follows_the_first_key_present() -> None:
    cases: list[tuple[dict[str, str], str]] = [
        ({}, "local/smollm2"), ({"OPENAI_API_KEY": "k"}, "gpt-4o-mini"),
        ({"ANTHROPIC_API_KEY": "k"}, "claude-haiku-4-5"),
        ({"GROQ_API_KEY": "k", "MISTRAL_API_KEY": "k"}, "mistral/mistral-small-latest"),
        ({"GEMINI_API_KEY": ""}, "local/smollm2"),
        ({"GEMINI_API_KEY": "k", "OPENAI_API_KEY": "k"}, "gpt-4o-mini"),
        ({"COHERE_API_KEY": "k"}, "local/smollm2")]
    for environ, expected in cases:
        assert _providers.default_model(environ) == expected, environ


def test_qualify_model_adds_the_prefix_of_providers_litellm_may_no_longer_map() -> None:
    cases = {"claude-2": "anthropic/claude-2", "claude-haiku-4-5": "anthropic/claude-haiku-4-5",
             "gemini-1.5-pro": "gemini/gemini-1.5-pro", "mistral-large": "mistral/mistral-large",
             "command-r": "cohere/command-r", "gpt-4o": "gpt-4o", "o3-mini": "o3-mini",
             "anthropic/claude-2": "anthropic/claude-2", "llama3": "llama3",
             "openai/claude-x": "openai/claude-x", "commander": "commander"}
    for name, expected in cases.items():
        assert _providers.qualify_model(name) == expected, name


def test_stream_usage_is_asked_of_the_providers_that_report_it() -> None:
    reporting = {"openai", "azure", "openai_like", "deepseek", "groq", "mistral", "together_ai",
                 "fireworks_ai", "xai", "hosted_vllm", "text-completion-openai", "local"}
    for name in [p.name for p in _providers.PROVIDERS] + ["vertex_ai", "unknown", None]:
        assert _providers.reports_stream_usage(name) == (name in reporting), name


def test_default_embedding_model_follows_the_chat_model() -> None:
    cases: dict[str, str | None] = {
        "local/smollm2": "local/smollm2", "gpt-4o": "text-embedding-3-small",
        "o1-mini": "text-embedding-3-small", "o3": "text-embedding-3-small",
        "o4-mini": "text-embedding-3-small", "openai/my-model": "text-embedding-3-small",
        "claude-2": None, "anthropic/claude-2": None, "gemini/gemini-2.0-flash": None,
        "azure/gpt-4o": None, "text-completion-openai/x": None, "llama3": None,
        "gpt-4o/odd": "text-embedding-3-small"}
    for chat_model, expected in cases.items():
        try:
            ours: str | None = _providers.default_embedding_model(chat_model)
        except LLMConfigError as exc:
            assert "embedding_model" in str(exc)
            ours = None
        assert ours == expected, chat_model


def test_provider_named_returns_the_table_entry() -> None:
    openai = _providers.provider_named("openai")
    assert openai is not None and openai.api_base == "https://api.openai.com/v1"
    assert _providers.provider_named("nope") is None and _providers.provider_named(None) is None
