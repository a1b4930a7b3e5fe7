"""Reading ``Retry-After``: the seconds a provider asked us to wait, from its headers.

Besides the standard ``Retry-After`` (seconds or an HTTP date) and OpenAI's
``retry-after-ms``, the forms a LiteLLM proxy forwards: it passes every header of the
provider's reply on as ``llm_provider-<header>`` (LiteLLM's
``litellm_core_utils/llm_response_utils/get_headers.py``), so a provider's 429 reaches
the caller with ``llm_provider-retry-after: 2``, while the proxy's own limits answer with
a plain ``retry-after``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

__all__ = ["parse_retry_after"]

_PREFIXES = ("", "llm_provider-")  # the header as sent; as a LiteLLM proxy forwards it


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date),
    as sent or as a LiteLLM proxy forwards them (``llm_provider-retry-after``)."""
    if not headers:
        return None
    get = _getter(headers)
    for prefix in _PREFIXES:
        millis = get(prefix + "retry-after-ms")
        if millis:
            try:
                return max(0.0, float(millis) / 1000)
            except ValueError:
                pass
        value = get(prefix + "retry-after")
        if value:
            seconds = _seconds(str(value))
            if seconds is not None:
                return seconds
    return None


def _getter(headers: Any) -> Callable[[str], Any]:
    """A case-insensitive look-up: httpx's and aiohttp's headers are; a plain dict is not."""
    if isinstance(headers, dict) or not hasattr(headers, "get"):
        lowered = {str(name).lower(): value for name, value in dict(headers).items()}
        return lowered.get
    return headers.get  # type: ignore[no-any-return]


def _seconds(value: str) -> float | None:
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None
