"""Reading ``Retry-After``: the seconds a provider asked us to wait, from its headers."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from typing import Any

__all__ = ["parse_retry_after"]


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    if not headers:
        return None
    get = headers.get if hasattr(headers, "get") else dict(headers).get
    millis = get("retry-after-ms") or get("Retry-After-Ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = get("retry-after") or get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(str(value)).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None
