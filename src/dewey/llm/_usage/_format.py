"""Plain text for people: dollar amounts, and errors in one line (used by the CLI too)."""

from __future__ import annotations

import math

__all__ = ["describe", "usd"]


def usd(value: float) -> str:
    """Dollars with cents, and two significant digits below a cent: ``$1,234.50``,
    ``$0.50``, ``$0.075``, ``$0.000029``.  A real but tiny spend never shows as ``$0.00``:
    a cheap model's calls and a budget of cents must stay distinguishable."""
    if value == 0:
        return "$0.00"
    decimals = max(2, 1 - math.floor(math.log10(abs(value))))
    whole, _, fraction = f"{abs(value):,.{decimals}f}".partition(".")
    fraction = fraction[:2] + fraction[2:].rstrip("0")
    return f"{'-' if value < 0 else ''}${whole}.{fraction}"


def describe(error: BaseException | None) -> str:
    """``"OperationalError: unable to open database file"``: the type and the first line."""
    text = str(error).strip().splitlines()[0] if error is not None and str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
