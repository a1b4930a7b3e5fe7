"""Configuration: sources and their order, interpolation, validation errors that name the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from dewey.llm import Budget, FallbackModel, LiteLLMClient, LiteLLMConfig, LLMConfigError
from tests.servers.fake_provider import FakeProvider


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults() -> None:
    config = LiteLLMConfig.load()
    assert (config.model, config.timeout, config.max_retries, config.cache) == (None, 60.0, 2, False)
    assert config.sources["timeout"] == "default"


def test_yaml_llm_section_with_interpolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "sk-from-env-0123456789")
    monkeypatch.setenv("MY_TIMEOUT", "45")
    file = write(tmp_path / "conf.yaml", """
other: ignored
llm:
  model: ${MODEL:-gpt-4o}
  api_key: ${MY_KEY}
  timeout: ${MY_TIMEOUT}
  max_retries: ${RETRIES:-4}
  api_base: http://${HOST:-localhost}:4000/v1
  fallback_models:
    - gpt-4o-mini
    - {model: anthropic/claude-haiku-4-5, api_key: "${MY_KEY}"}
  budget: {daily_usd: 5}
""")
    config = LiteLLMConfig.from_yaml(file)
    assert config.model == "gpt-4o"
    assert config.api_key is not None and config.api_key.get_secret_value() == "sk-from-env-0123456789"
    assert (config.timeout, config.max_retries) == (45.0, 4)
    assert config.api_base == "http://localhost:4000/v1"
    assert config.fallback_models[0] == "gpt-4o-mini"
    assert isinstance(config.fallback_models[1], FallbackModel)
    assert config.budget == Budget(daily_usd=5)
    assert config.sources["model"] == f"file {file}"


def test_unset_variable_names_the_variable_and_key(tmp_path: Path) -> None:
    file = write(tmp_path / "conf.yaml", "llm:\n  api_key: ${NOT_SET_ANYWHERE}\n")
    with pytest.raises(LLMConfigError, match=r"'api_key' uses \$\{NOT_SET_ANYWHERE\}.*not set"):
        LiteLLMConfig.from_yaml(file)


def test_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_MODEL", "anthropic/claude-haiku-4-5")
    monkeypatch.setenv("LITELLM_TIMEOUT", "12.5")
    monkeypatch.setenv("LITELLM_MAX_RETRIES", "5")
    monkeypatch.setenv("LITELLM_FALLBACKS", "gpt-4o, gpt-4o-mini ,")
    monkeypatch.setenv("LITELLM_CACHE", "memory")
    monkeypatch.setenv("LITELLM_API_BASE", "http://127.0.0.1:4000")
    config = LiteLLMConfig.load()
    assert config.model == "anthropic/claude-haiku-4-5"
    assert (config.timeout, config.max_retries) == (12.5, 5)
    assert config.fallback_models == ["gpt-4o", "gpt-4o-mini"]
    assert config.cache == "memory"
    assert config.api_base == "http://127.0.0.1:4000"
    assert config.sources["timeout"] == "env LITELLM_TIMEOUT"


def test_precedence_arguments_over_env_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "dewey.yaml", "llm:\n  model: from-file\n  timeout: 10\n  max_retries: 7\n")
    monkeypatch.setenv("LITELLM_TIMEOUT", "20")
    monkeypatch.setenv("LITELLM_MODEL", "from-env")
    config = LiteLLMConfig.load(LiteLLMConfig(model="from-argument"))
    assert (config.model, config.timeout, config.max_retries) == ("from-argument", 20.0, 7)
    assert config.sources["model"] == "argument"
    assert config.sources["timeout"] == "env LITELLM_TIMEOUT"
    assert config.sources["max_retries"] == "file dewey.yaml"


def test_file_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user_file = write(tmp_path / "xdg_config_home" / "dewey" / "llm.yaml", "llm:\n  model: user-file\n")
    assert LiteLLMConfig.load().model == "user-file"
    write(tmp_path / "dewey.yaml", "llm:\n  model: project-file\n")
    assert LiteLLMConfig.load().model == "project-file"
    explicit = write(tmp_path / "elsewhere.yaml", "llm:\n  model: explicit-file\n")
    monkeypatch.setenv("DEWEY_LLM_CONFIG", str(explicit))
    assert LiteLLMConfig.load().model == "explicit-file"
    monkeypatch.setenv("DEWEY_LLM_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(LLMConfigError, match=r"DEWEY_LLM_CONFIG points to .*missing.yaml"):
        LiteLLMConfig.load()
    assert user_file.exists()


def test_the_client_reads_file_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       provider: FakeProvider) -> None:
    write(tmp_path / "dewey.yaml", f"llm:\n  model: openai/gpt-4o-mini\n  api_base: {provider.openai_base}\n")
    monkeypatch.setenv("LITELLM_API_KEY", "sk-env-key-0123456789")
    client = LiteLLMClient()
    assert client.generate_completion("hi").choices[0].message.content == "echo: hi"
    assert provider.requests[-1].headers["authorization"] == "Bearer sk-env-key-0123456789"


def test_misspelt_key_gets_a_did_you_mean(tmp_path: Path) -> None:
    with pytest.raises(LLMConfigError, match=r"unknown config key 'timout'; did you mean 'timeout'\?"):
        LiteLLMConfig(timout=5)
    file = write(tmp_path / "c.yaml", "llm:\n  fallback_model: [gpt-4o]\n")
    with pytest.raises(LLMConfigError, match="did you mean 'fallback_models'"):
        LiteLLMConfig.from_yaml(file)
    with pytest.raises(LLMConfigError, match=r"unknown config key 'budget.daily'; did you mean 'daily_usd'"):
        LiteLLMConfig(budget={"daily": 3})


def test_wrong_type_names_key_value_and_expectation() -> None:
    with pytest.raises(LLMConfigError, match=r"'timeout' has invalid value 'soon'.*valid number"):
        LiteLLMConfig(timeout="soon")
    with pytest.raises(LLMConfigError, match=r"'max_retries' has invalid value -1.*greater than or equal to 0"):
        LiteLLMConfig(max_retries=-1)
    with pytest.raises(LLMConfigError, match=r"'cache'"):
        LiteLLMConfig(cache="disk")


def test_a_bad_env_value_names_the_variable_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_TIMEOUT", "ten")
    with pytest.raises(LLMConfigError, match=r"'timeout' has invalid value 'ten'"):
        LiteLLMConfig.load()


def test_invalid_yaml_is_reported_with_the_file(tmp_path: Path) -> None:
    file = write(tmp_path / "bad.yaml", "llm: [unclosed\n")
    with pytest.raises(LLMConfigError, match=r"bad.yaml is not valid YAML"):
        LiteLLMConfig.from_yaml(file)


def test_secrets_are_masked_in_errors_and_reprs() -> None:
    config = LiteLLMConfig(api_key="sk-secret-abcdefghijkl")
    assert "sk-secret-abcdefghijkl" not in repr(config) + str(config)
    with pytest.raises(LLMConfigError) as caught:
        LiteLLMConfig(api_key=12345678901234)
    assert "12345678901234" not in str(caught.value)


def test_default_model_follows_the_keys_present(monkeypatch: pytest.MonkeyPatch) -> None:
    assert LiteLLMClient().model == "local/smollm2"
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-0123456789")
    assert LiteLLMClient().model == "claude-haiku-4-5"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789")
    assert LiteLLMClient().model == "gpt-4o-mini"


def test_a_budget_without_the_ledger_is_refused() -> None:
    with pytest.raises(LLMConfigError, match=r"a budget needs the usage ledger.*track_usage: true"):
        LiteLLMConfig(track_usage=False, budget={"daily_usd": 1})


def test_a_generation_parameter_in_the_config_points_to_params() -> None:
    with pytest.raises(LLMConfigError, match=r"'max_tokens' is a generation parameter.*params"):
        LiteLLMConfig(max_tokens=8)
    assert LiteLLMConfig(params={"max_tokens": 8}).params == {"max_tokens": 8}
