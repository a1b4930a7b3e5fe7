"""A setting whose package is missing names the extra that brings it."""

from __future__ import annotations

import subprocess
import sys

import pytest

# `sys.modules[name] = None` makes `import name` fail as if the package were not installed.
PROBE = """
import sys
sys.modules[{module!r}] = None
from dewey.llm import LiteLLMClient, LLMConfigError
try:
    LiteLLMClient(model="openai/gpt-4o-mini", {setting})
except LLMConfigError as error:
    print(error)
"""


@pytest.mark.parametrize(("module", "setting", "words"), [
    ("redis", "cache='redis'", ["cache: redis", "pip install 'dewey-llm[redis]'"]),
    ("redis", "rate_limits={'*': {'rpm': 5}}, rate_limit_url='redis://127.0.0.1:6379/15'",
     ["rate_limit_url", "pip install 'dewey-llm[redis]'"]),
    ("psycopg", "usage_db='postgresql://127.0.0.1:5432/test'",
     ["usage_db: postgresql://", "pip install 'dewey-llm[postgres]'"]),
])
def test_a_missing_optional_package_names_its_extra(module: str, setting: str, words: list[str]) -> None:
    result = subprocess.run([sys.executable, "-c", PROBE.format(module=module, setting=setting)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert all(word in result.stdout for word in words), result.stdout
