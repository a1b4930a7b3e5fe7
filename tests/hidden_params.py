"""What LiteLLM tells about a response beside its content, read where users read it.

LiteLLM keeps a response's cache flag and cost in ``response._hidden_params``, and the
README points users there (``response._hidden_params["cache_hit"]``); there is no public
accessor, so this is the one place the tests reach for it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["cache_hit", "hidden_params"]


def hidden_params(response: Any) -> dict[str, Any]:
    """``response._hidden_params``, as a user reads it."""
    params: dict[str, Any] = response._hidden_params  # noqa: SLF001 - LiteLLM's (documented) home of cache_hit and cost
    return params


def cache_hit(response: Any) -> object:
    """``response._hidden_params["cache_hit"]``, unconverted, so tests can assert ``is True``."""
    return hidden_params(response)["cache_hit"]
