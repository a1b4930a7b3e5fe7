"""A real LiteLLM proxy (``litellm --config ...``) in front of the fake provider.

It runs docs/scaling.md's §4 proxy configuration, with the models pointed at the
session's fake provider: ``gpt-4o-mini`` (OpenAI's wire) and ``claude-haiku``
(Anthropic's).  Two settings beyond the documented ones, each for a reason:

- ``master_key``: the proxy refuses to start without one (it would accept every
  request unauthenticated); callers use it as their API key.
- a success callback (LiteLLM's documented ``CustomLogger`` hook) that appends what the
  proxy itself charged for each call, ``{"model", "response_cost"}``, to a file: the
  proxy's own figure, for streams too, without the database its spend logs need.

The proxy takes seconds to import, so one is started per test module (the fixture is
module-scoped) and stopped at its end.  Needs the proxy's packages (``litellm[proxy]``'s
server part: uvicorn, fastapi, ...); without them the tests that ask for it are skipped.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import stop_process
from tests.servers.fake_provider import FakeProvider

__all__ = ["LiteLLMProxy", "litellm_proxy", "proxy_available"]

_STARTUP_SECONDS = 180.0  # an import of the proxy on a busy 2-core machine takes up to a minute

_COST_LOGGER = '''
import json, os
from litellm.integrations.custom_logger import CustomLogger


class CostLog(CustomLogger):
    """Appends the proxy's own charge for each successful call to $PROXY_COST_LOG."""

    def _write(self, kwargs):
        with open(os.environ["PROXY_COST_LOG"], "a", encoding="utf-8") as log:
            log.write(json.dumps({"model": kwargs.get("model"),
                                  "response_cost": kwargs.get("response_cost")}) + "\\n")

    def log_success_event(self, kwargs, response_obj, start_time, end_time):
        self._write(kwargs)

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        self._write(kwargs)


cost_log = CostLog()
'''


def proxy_available() -> bool:
    """Whether the proxy's server packages are installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("uvicorn", "fastapi", "litellm"))


needs_proxy = pytest.mark.skipif(not proxy_available(), reason="LiteLLM proxy packages not installed")


@dataclass
class LiteLLMProxy:
    """A running proxy: its OpenAI-compatible base URL, its key, and its cost log."""

    api_base: str
    master_key: str
    cost_log: Path

    def charges(self) -> list[dict[str, Any]]:
        """What the proxy charged, one entry per successful call, oldest first."""
        if not self.cost_log.exists():
            return []
        return [json.loads(line) for line in self.cost_log.read_text(encoding="utf-8").splitlines()]

    def wait_for_charges(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The charges once there are ``count`` (the proxy logs after it has answered)."""
        deadline = time.monotonic() + timeout
        while len(self.charges()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.charges()


def proxy_config(provider: FakeProvider, master_key: str) -> dict[str, Any]:
    """docs/scaling.md's proxy config.yaml, its providers being the fake provider."""
    return {
        "model_list": [
            {"model_name": "gpt-4o-mini",
             "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-fake-openai",
                                "api_base": provider.openai_base}},
            {"model_name": "claude-haiku",
             "litellm_params": {"model": "anthropic/claude-haiku-4-5", "api_key": "sk-fake-anthropic",
                                "api_base": provider.anthropic_base}},
        ],
        "litellm_settings": {"num_retries": 0, "callbacks": "cost_logger.cost_log"},
        "general_settings": {"master_key": master_key},
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def litellm_proxy(provider_session: FakeProvider, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[LiteLLMProxy]:
    """A LiteLLM proxy for this module, in front of the session's fake provider."""
    if not proxy_available():
        pytest.skip("LiteLLM proxy packages not installed")
    folder = tmp_path_factory.mktemp("litellm-proxy")
    master_key = "sk-" + secrets.token_hex(32)
    (folder / "config.yaml").write_text(json.dumps(proxy_config(provider_session, master_key)))
    (folder / "cost_logger.py").write_text(_COST_LOGGER)
    port = _free_port()
    cost_log = folder / "charges.jsonl"
    environ = {**os.environ, "PROXY_COST_LOG": str(cost_log), "LITELLM_LOCAL_MODEL_COST_MAP": "True",
               "PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])}
    command = [str(Path(sys.executable).with_name("litellm")), "--config", str(folder / "config.yaml"),
               "--host", "127.0.0.1", "--port", str(port)]
    with (folder / "proxy.log").open("wb") as log:
        process = subprocess.Popen(command, cwd=folder, env=environ, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_until_ready(process, f"http://127.0.0.1:{port}", folder / "proxy.log")
        yield LiteLLMProxy(f"http://127.0.0.1:{port}/v1", master_key, cost_log)
    finally:
        stop_process(process, timeout=15)


def _wait_until_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + _STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the LiteLLM proxy exited ({process.returncode}):\n"
                               + log.read_text(errors="replace")[-3000:])
        try:
            if httpx.get(url + "/health/readiness", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the LiteLLM proxy was not ready after {_STARTUP_SECONDS:.0f} s:\n"
                       + log.read_text(errors="replace")[-3000:])
