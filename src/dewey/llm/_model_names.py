"""Which configured name a model answers to: one rule for rate limits, prices and aliases.

A model is written with or without its provider prefix (``gpt-4o-mini``,
``openai/gpt-4o-mini``), and a setting keyed by model name must mean the same model
either way.  The rule, most specific first:

1. the name exactly as configured;
2. a configured name without a prefix applies to that name under every provider
   (``gpt-4o-mini`` applies to ``openai/gpt-4o-mini`` and to ``azure/gpt-4o-mini``);
3. a configured name with a prefix applies to the bare name (``openai/gpt-4o-mini``
   applies to ``gpt-4o-mini``), but never to the name under another provider.

``"*"`` is not a name here: the settings that have a default give it themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

__all__ = ["bare_name", "match_name", "names_match"]

T = TypeVar("T")


def bare_name(model: str) -> str:
    """``model`` without its first ``provider/`` segment (``openai/gpt-4o`` -> ``gpt-4o``)."""
    return model.split("/", 1)[1] if "/" in model else model


def names_match(configured: str, model: str) -> bool:
    """Whether a setting written for ``configured`` applies to calls to ``model``."""
    return match_name(model, (configured,)) is not None


def match_name(model: str, names: Iterable[str] | Mapping[str, T]) -> str | None:
    """The configured name among ``names`` that applies to ``model``, most specific first
    (the rule of this module's docstring); None when none does."""
    candidates = [name for name in names if name != "*"]
    if model in candidates:
        return model
    bare = bare_name(model)
    if "/" in model and bare in candidates:
        return bare
    if "/" not in model:
        return next((name for name in candidates if "/" in name and bare_name(name) == model), None)
    return None
