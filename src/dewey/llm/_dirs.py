"""Where dewey-llm keeps files by default: the XDG base directories, under ``dewey-llm``."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_home", "data_home"]


def cache_home() -> Path:
    """``$XDG_CACHE_HOME/dewey-llm``, else ``~/.cache/dewey-llm``: the response cache and
    the parsed price map, which can be rebuilt."""
    return _xdg("XDG_CACHE_HOME", ".cache")


def data_home() -> Path:
    """``$XDG_DATA_HOME/dewey-llm``, else ``~/.local/share/dewey-llm``: the usage ledger
    and the prompt log, which cannot."""
    return _xdg("XDG_DATA_HOME", ".local/share")


def _xdg(variable: str, default: str) -> Path:
    # The XDG specification: a relative path in the variable is invalid and ignored.
    value = Path(os.environ.get(variable) or "").expanduser()
    return (value if value.is_absolute() else Path.home() / default) / "dewey-llm"
