"""Optional packages: import one, or say which extra of dewey-llm brings it."""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

from ._exceptions import LLMConfigError

__all__ = ["import_extra"]


def import_extra(module: str, *, extra: str, needed_for: str) -> ModuleType:
    """``module``, imported; when it is not installed, an ``LLMConfigError`` that names the
    setting that needs it and the install command (never a bare ``ImportError``)."""
    try:
        return import_module(module)
    except ImportError:
        raise LLMConfigError(
            f"{needed_for} needs the {module} package, which is not installed: "
            f"pip install 'dewey-llm[{extra}]' (or change the setting)") from None
