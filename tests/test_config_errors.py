"""Wrong configuration gives one clear ``LLMConfigError`` naming the value, what was
expected and the fix: never a raw exception, a hang, or "this is a bug"."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dewey.llm import LiteLLMConfig, LLMConfigError
from tests.test_cli import cli_env, dewey, one_error_line

# --- numbers ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("settings", "key", "expected"), [
    ({"timeout": float("inf")}, "timeout", "finite"),
    ({"timeout": float("nan")}, "timeout", "finite"),
    ({"timeout": 1e9}, "timeout", "less than or equal to 86400"),
    ({"deadline": float("inf")}, "deadline", "finite"),
    ({"backoff_base": 1e308}, "backoff_base", "less than or equal to 3600"),
    ({"backoff_max": float("inf")}, "backoff_max", "finite"),
    ({"max_retry_after": 1e12}, "max_retry_after", "less than or equal"),
    ({"cooldown_seconds": float("nan")}, "cooldown_seconds", "finite"),
    ({"cache_ttl": float("inf")}, "cache_ttl", "finite"),
    ({"budget": {"daily_usd": float("inf")}}, "budget.daily_usd", "finite"),
    ({"fallback_models": [{"model": "gpt-4o", "timeout": float("inf")}]}, "fallback_models.0", "finite"),
])
def test_float_settings_must_be_finite_and_sane(settings: dict[str, Any], key: str, expected: str) -> None:
    with pytest.raises(LLMConfigError) as caught:
        LiteLLMConfig(**settings)
    message = str(caught.value)
    assert f"config key '{key}" in message and expected in message


def test_the_message_says_what_the_setting_is_and_how_to_fix_it() -> None:
    with pytest.raises(LLMConfigError) as caught:
        LiteLLMConfig(timeout=float("inf"))
    assert str(caught.value) == (
        "invalid configuration: config key 'timeout' has invalid value inf: input should be a "
        "finite number (timeout: seconds allowed for one attempt; fix it, or remove it for the "
        "default, 60.0)")


@pytest.mark.parametrize(("variable", "value"), [
    ("LITELLM_TIMEOUT", "inf"), ("LITELLM_TIMEOUT", "nan"), ("LITELLM_DEADLINE", "inf"),
    ("LITELLM_CACHE_TTL", "1e308"),
])
def test_environment_numbers_are_checked_too(variable: str, value: str) -> None:
    with pytest.raises(LLMConfigError, match=variable.removeprefix("LITELLM_").lower()):
        LiteLLMConfig.load(environ={variable: value})


def test_yaml_infinity_is_refused(tmp_path: Path) -> None:
    (tmp_path / "conf.yaml").write_text("llm:\n  backoff_base: .inf\n  deadline: 1e308\n")
    with pytest.raises(LLMConfigError) as caught:
        LiteLLMConfig.from_yaml(tmp_path / "conf.yaml")
    assert "'backoff_base'" in str(caught.value) and "'deadline'" in str(caught.value)


def test_the_command_reports_an_infinite_timeout_in_one_line(tmp_path: Path) -> None:
    line = one_error_line(dewey(["config", "show"], cli_env(tmp_path, LITELLM_TIMEOUT="inf"), tmp_path))
    assert "'timeout'" in line and "finite" in line and "this is a bug" not in line


def test_sane_values_still_pass() -> None:
    config = LiteLLMConfig(timeout=86_400, deadline=3_600, backoff_base=0, backoff_max=3_600,
                           cache_ttl=30 * 86_400, budget={"daily_usd": 1e6})
    assert (config.timeout, config.backoff_max) == (86_400, 3_600)


# --- files --------------------------------------------------------------------------------------

def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "conf.yaml").write_bytes(b"llm:\n  model: caf\xe9\n")
    with pytest.raises(LLMConfigError) as caught:
        LiteLLMConfig.from_yaml(tmp_path / "conf.yaml")
    message = str(caught.value)
    assert "conf.yaml" in message and "not UTF-8" in message and "0xe9" in message
    assert "save it as UTF-8" in message


@pytest.mark.parametrize("document", [
    "llm:\n  fallback_models: &loop [gpt-4o, *loop]\n",
    "llm: &me\n  params: *me\n",
])
def test_a_recursive_alias(tmp_path: Path, document: str) -> None:
    (tmp_path / "conf.yaml").write_text(document)
    with pytest.raises(LLMConfigError, match="recursive YAML alias"):
        LiteLLMConfig.from_yaml(tmp_path / "conf.yaml")


def test_aliases_that_merely_repeat_a_part_are_fine(tmp_path: Path) -> None:
    (tmp_path / "conf.yaml").write_text(
        "defaults: &limits {rpm: 60}\nllm:\n  rate_limits: {'*': *limits, gpt-4o: *limits}\n")
    config = LiteLLMConfig.from_yaml(tmp_path / "conf.yaml")
    assert config.rate_limits["gpt-4o"].rpm == 60


BILLION_LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
) + "llm:\n  params: {x: *i}\n"


def test_an_alias_bomb_is_refused(tmp_path: Path) -> None:
    # 9 ** 9 (387 million) strings once expanded: before the node limit this grew memory
    # without bound.  A subprocess with a timeout, so that a regression fails, not hangs.
    (tmp_path / "bomb.yaml").write_text(BILLION_LAUGHS)
    code = ("from dewey.llm import LiteLLMConfig, LLMConfigError\n"
            "try:\n    LiteLLMConfig.from_yaml('bomb.yaml')\n"
            "except LLMConfigError as error:\n    print(error)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, env=cli_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "bomb.yaml" in result.stdout and "aliases" in result.stdout


def test_the_command_refuses_an_alias_bomb_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "dewey.yaml").write_text(BILLION_LAUGHS)
    line = one_error_line(dewey(["config", "show"], cli_env(tmp_path), tmp_path))
    assert "dewey.yaml" in line and "YAML nodes" in line


def test_a_key_that_is_not_a_name(tmp_path: Path) -> None:
    (tmp_path / "conf.yaml").write_text("llm:\n  1: x\n")
    with pytest.raises(LLMConfigError, match=r"config key 1 .* is not a name"):
        LiteLLMConfig.from_yaml(tmp_path / "conf.yaml")


def test_yaml_syntax_and_nesting_errors_say_where(tmp_path: Path) -> None:
    (tmp_path / "tabs.yaml").write_text("llm:\n\tmodel: x\n")
    with pytest.raises(LLMConfigError, match=r"tabs\.yaml is not valid YAML(.|\n)*tabs\.yaml\", line 2"):
        LiteLLMConfig.from_yaml(tmp_path / "tabs.yaml")
    (tmp_path / "deep.yaml").write_text("llm:\n  params: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(LLMConfigError, match=r"deep\.yaml is nested too deeply"):
        LiteLLMConfig.from_yaml(tmp_path / "deep.yaml")
