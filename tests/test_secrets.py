"""Keys and passwords never leave dewey-llm in clear: not in errors (nor anything chained
to them), logs, pickles, ``--debug`` tracebacks, ``config show`` or a config's repr."""

from __future__ import annotations

import io
import json
import logging
import pickle
import traceback
from pathlib import Path
from typing import Any

import pytest

from dewey.llm import LiteLLMConfig, LLMAuthenticationError, LLMError, ProviderError, RateLimit
from dewey.llm._secrets import mask_secrets, mask_url, redact
from tests.servers.fake_provider import FakeProvider, Reply
from tests.test_cli import cli_env, dewey, ok, one_error_line

# A key shaped like OpenAI's, and one no pattern recognises (a proxy's own token): the
# second is only redacted because the configuration that carries it registered it.
KEYS = ["sk-proj-leak0123456789abcdefXYZ", "proxytoken-0123456789-leak"]


def everything_reachable(error: BaseException) -> str:
    """The text of everything an error drags along: its chain, args and attributes."""
    seen: list[int] = []
    parts: list[str] = []

    def visit(value: Any, depth: int = 0) -> None:
        if id(value) in seen or depth > 6:
            return
        seen.append(id(value))
        if isinstance(value, BaseException):
            parts.append(f"{type(value).__name__}: {value!s} {value!r}")
            for linked in (value.__cause__, value.__context__, *value.args, *vars(value).values()):
                visit(linked, depth + 1)
        elif isinstance(value, dict):
            for key, item in value.items():
                visit(key, depth + 1)
                visit(item, depth + 1)
        elif isinstance(value, list | tuple | set):
            for item in value:
                visit(item, depth + 1)
        elif value is not None:
            parts.append(repr(value))
            if hasattr(value, "__dict__"):
                visit(vars(value), depth + 1)

    visit(error)
    return "\n".join(parts)


# --- errors -------------------------------------------------------------------------------------

@pytest.mark.parametrize("transport", ["native", "litellm"])
@pytest.mark.parametrize("key", KEYS)
def test_a_key_echoed_by_the_provider_is_nowhere_in_the_error(
        make_client: Any, provider: FakeProvider, key: str, caplog: pytest.LogCaptureFixture,
        transport: str) -> None:
    # OpenAI answers a wrong key with "Incorrect API key provided: sk-..." (masked there
    # today, but proxies and other providers echo keys whole): the fake echoes it whole.
    provider.script_all(
        Reply.error(500, f"upstream rejected credentials {key}"),
        Reply.error(401, f"Incorrect API key provided: {key}. You can find your API key at ..."))
    caplog.set_level(logging.DEBUG, logger="dewey.llm")  # the client's own attempt logs
    client = make_client(api_key=key, max_retries=1, max_retry_after=0, transport=transport)
    records = io.StringIO()
    handler = logging.StreamHandler(records)
    log = logging.getLogger("test_secrets.app")
    log.addHandler(handler)
    try:
        client.generate_completion("hi")
    except LLMError as caught:
        log.exception("the call failed")  # what an application does with an error
        error: LLMError = caught
    finally:
        log.removeHandler(handler)

    assert isinstance(error, LLMAuthenticationError) and error.status_code == 401
    assert len(error.attempts) == 2
    printed = "".join(traceback.format_exception(error))
    assert "attempt" in caplog.text
    for text in (printed, records.getvalue(), caplog.text, everything_reachable(error), str(error),
                 repr(error)):
        assert key not in text
    # The provider's words stay, for debugging: only the key is gone.
    assert "Incorrect API key provided" in printed and "Traceback" in records.getvalue()

    cause = error.__cause__
    if transport == "native":  # no cause: httpx's exceptions hold the request and its key
        assert cause is None and key.encode() not in pickle.dumps(error)
        return
    assert isinstance(cause, ProviderError)
    assert cause.status_code == 401 and "AuthenticationError" in cause.type_name
    assert cause.__cause__ is None and cause.__context__ is None and error.__suppress_context__
    assert not any(name.lower() in ("authorization", "api-key") for name in cause.headers)

    again = pickle.loads(pickle.dumps(error))
    assert key.encode() not in pickle.dumps(error) and key.encode() not in pickle.dumps(cause)
    assert type(again) is LLMAuthenticationError and again.status_code == 401
    assert pickle.loads(pickle.dumps(cause)).message == cause.message


@pytest.mark.parametrize("transport", ["native", "litellm"])
def test_debug_traceback_of_the_command_hides_an_echoed_key(
        provider: FakeProvider, tmp_path: Path, transport: str) -> None:
    key = "sk-debug-leak-0123456789abcdef"
    provider.script_all(Reply.error(401, f"Incorrect API key provided: {key}"))
    result = dewey(["--debug", "chat", "--no-stream", "hi"],
                   cli_env(tmp_path, provider, LITELLM_API_KEY=key, LITELLM_MAX_RETRIES="0",
                           LITELLM_TRANSPORT=transport), tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" in result.stderr and "LLMAuthenticationError" in result.stderr
    assert ("ProviderError" in result.stderr) == (transport == "litellm")  # native: no cause
    assert key not in result.stderr + result.stdout


def test_redact_and_mask_url() -> None:
    assert "sk-abcdefghijkl1234" not in redact("key sk-abcdefghijkl1234 refused")
    assert "tok3nvalue99" not in redact("Authorization: Bearer tok3nvalue99")
    assert "AIzaSyA0123456789abcdefghijkl" not in redact("x-goog-api-key: AIzaSyA0123456789abcdefghijkl")
    assert mask_url("http://user:pw@host:8/v1?x=1") == "http://user:***@host:8/v1?x=1"
    assert mask_url("http://host/v1?key=abc&api_key=def&q=1") == "http://host/v1?key=***&api_key=***&q=1"
    assert mask_url("https://host/v1") == "https://host/v1"
    assert mask_url("http://[::1/v1") == "http://***"


def test_mask_secrets_by_name_and_shape() -> None:
    shown = mask_secrets({
        "temperature": 0.2, "max_tokens": 10,
        "api_key": "abcdefghijklmnop",
        "extra_headers": {"Authorization": "Bearer abcdefghijklmnop", "api-key": "azurekey123",
                          "X-Api-Key": "anthropic-key-123", "x-goog-api-key": "AIzaXYZ",
                          "User-Agent": "me"},
        "nested": [{"token": "t0k3n"}, "Bearer qwertyuiopasdf"],
        "base": "http://u:pw12@h/v1",
    })
    text = json.dumps(shown)
    for secret in ("abcdefghijklmnop", "azurekey123", "anthropic-key-123", "AIzaXYZ", "t0k3n",
                   "qwertyuiopasdf", "pw12"):
        assert secret not in text, secret
    assert shown["temperature"] == 0.2 and shown["max_tokens"] == 10
    assert shown["extra_headers"]["User-Agent"] == "me"
    assert shown["extra_headers"]["Authorization"].startswith("Bearer ")
    assert shown["base"] == "http://u:***@h/v1"


# --- configuration as printed -------------------------------------------------------------------

SECRETS = ("hunter2pw", "sk-params-0123456789", "bearer-secret-0123456789", "azure-secret-0123",
           "anthropic-secret-0123", "fallbackpw", "redispw99")
CONFIG = """llm:
  model: openai/gpt-4o-mini
  api_base: http://user:hunter2pw@proxy.local/v1
  params:
    temperature: 0.3
    api_key: sk-params-0123456789
    extra_headers:
      Authorization: Bearer bearer-secret-0123456789
      api-key: azure-secret-0123
      x-api-key: anthropic-secret-0123
  fallback_models:
    - {model: anthropic/claude-haiku-4-5, api_base: "https://me:fallbackpw@gw.local"}
  rate_limit_url: redis://:redispw99@127.0.0.1:6379/0
"""


def test_config_show_masks_every_secret(tmp_path: Path) -> None:
    (tmp_path / "dewey.yaml").write_text(CONFIG)
    env = cli_env(tmp_path)
    table, as_json = (ok(dewey(args, env, tmp_path))
                      for args in (["config", "show"], ["config", "show", "--json"]))
    for output in (table.stdout + table.stderr, as_json.stdout + as_json.stderr):
        for secret in SECRETS:
            assert secret not in output, secret
    settings = json.loads(as_json.stdout)["settings"]
    assert settings["api_base"] == "http://user:***@proxy.local/v1"
    assert settings["params"]["temperature"] == 0.3
    assert settings["params"]["extra_headers"]["Authorization"].startswith("Bearer ")
    assert settings["fallback_models"][0]["api_base"] == "https://me:***@gw.local"
    assert "proxy.local" in table.stdout


def test_config_repr_masks_every_secret(tmp_path: Path) -> None:
    (tmp_path / "conf.yaml").write_text(CONFIG)
    config = LiteLLMConfig.from_yaml(tmp_path / "conf.yaml")
    for text in (repr(config), str(config), repr(config.fallback_models)):
        for secret in SECRETS:
            assert secret not in text, secret
    assert "proxy.local" in repr(config) and "temperature" in repr(config)
    # The values themselves are untouched: only their printing is masked.
    assert config.api_base == "http://user:hunter2pw@proxy.local/v1"


def test_a_wrong_setting_does_not_print_its_secret(tmp_path: Path) -> None:
    (tmp_path / "dewey.yaml").write_text(
        "llm:\n  model: openai/gpt-4o-mini\n  params: [sk-listed-0123456789]\n")
    line = one_error_line(dewey(["config", "show"], cli_env(tmp_path), tmp_path))
    assert "params" in line and "sk-listed-0123456789" not in line


def test_a_key_from_the_environment_is_redacted_too(
        make_client: Any, provider: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    # Shaped like no known key (as Mistral's are): only its variable's name gives it away.
    key = "Zq8mK2vP0rT5wX9yB3nC6dF1gH4jL7sA"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    provider.script_all(Reply.error(401, f"Incorrect API key provided: {key}"))
    with pytest.raises(LLMAuthenticationError) as caught:
        make_client(api_key=None, max_retries=0).generate_completion("hi")
    assert provider.requests[-1].headers.get("authorization") == f"Bearer {key}"
    assert key not in "".join(traceback.format_exception(caught.value))
    assert key not in everything_reachable(caught.value)


# --- URLs ---------------------------------------------------------------------------------------

def test_ledger_cache_and_rate_limiter_hide_a_url_password_alike(
        caplog: pytest.LogCaptureFixture) -> None:
    from dewey.llm._cache import RedisCache
    from dewey.llm._ratelimit import RedisRateLimiter
    from dewey.llm._usage import PostgresLedger

    caplog.set_level(logging.WARNING, logger="dewey.llm")
    dead = "redis://:sesame-0042@127.0.0.1:1/0"  # nothing listens on port 1
    limiter = RedisRateLimiter({"m": RateLimit(rpm=1)}, dead, sleep=lambda _: None)
    limiter.acquire("m")
    limiter.close()
    cache = RedisCache(dead)
    ledger = PostgresLedger("postgresql://bob:sesame-0042@127.0.0.1:1/test")
    shown = [cache.location, ledger.location, caplog.text]
    ledger.close()
    cache.close()
    assert shown[0] == "redis://:***@127.0.0.1:1/0"
    assert shown[1] == "postgresql://bob:***@127.0.0.1:1/test"
    assert "redis://:***@127.0.0.1:1/0" in shown[2]
    assert all("sesame-0042" not in text for text in shown)
