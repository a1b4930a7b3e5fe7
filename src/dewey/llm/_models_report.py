"""``dewey-llm models``: the models a user can call, with context windows and prices.

Offline: everything comes from the configuration and LiteLLM's bundled price map.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import TYPE_CHECKING, Any

from ._exceptions import LLMError
from ._usage import _usd

if TYPE_CHECKING:
    from rich.console import Console

    from ._catalog import Catalog
    from ._config import LiteLLMConfig

__all__ = ["available_models", "backend", "configured_models", "price", "render_model", "render_models"]

logger = logging.getLogger("dewey.llm")


def backend() -> Catalog:
    """The model catalog the client reads its facts from."""
    from ._catalog import Catalog
    from ._litellm import local_model_details

    return Catalog(local=local_model_details)


def configured_models(config: LiteLLMConfig, seam: Catalog) -> list[dict[str, Any]]:
    """The primary, fallback and embedding models with where each was configured."""
    from ._providers import PROVIDERS

    sources = config.sources
    entries: list[tuple[str, str, str]] = []
    if config.model:
        entries.append(("primary", config.model, sources["model"]))
    else:
        model = config.resolved_model()
        variable = next((p.key_variables[0] for p in PROVIDERS
                         if p.default_model == model and os.environ.get(p.key_variables[0])), None)
        why = f"{variable} is set" if variable else "no provider key: offline"
        entries.append(("primary", model, f"default ({why})"))
    for fallback in config.fallback_models:
        name = fallback if isinstance(fallback, str) else fallback.model
        entries.append(("fallback", name, sources["fallback_models"]))
    if config.embedding_model:
        entries.append(("embedding", config.embedding_model, sources["embedding_model"]))
    else:
        from ._providers import default_embedding_model

        with contextlib.suppress(LLMError):
            entries.append(("embedding", default_embedding_model(config.resolved_model()),
                            "default (for the primary)"))
    rows = []
    for role, model, source in entries:
        try:
            details = seam.details(model)
        except Exception as exc:  # unknown to LiteLLM's map, or the local provider is absent
            logger.debug("no details for %s: %s", model, exc)
            details = {}
        provider = details.get("litellm_provider") or seam.provider(model)
        rows.append({"role": role, **_row(model, provider, details), "source": source})
    return rows


def available_models(config: LiteLLMConfig, *, every: bool, term: str | None
                     ) -> tuple[list[dict[str, Any]], list[str]]:
    """Priced chat models of the providers with a key set (every priced model with
    ``every``), plus the local model, matching ``term``; and those providers."""
    from ._catalog import Catalog
    from ._providers import LOCAL_DEFAULT_MODEL

    price_map: dict[str, Any] = Catalog().entries
    keyed = _providers_with_keys(config, {str(facts.get("litellm_provider"))
                                          for facts in price_map.values()
                                          if isinstance(facts, dict)})
    rows = [_row(LOCAL_DEFAULT_MODEL, "local", {})]
    for name, facts in sorted(price_map.items()):
        if not isinstance(facts, dict) or facts.get("input_cost_per_token") is None:
            continue  # unpriced, or the map's "sample_spec" documentation entry
        if name == "sample_spec" or name.startswith("ft:"):  # ft: names are templates
            continue
        provider = str(facts.get("litellm_provider"))
        if not every and (facts.get("mode") != "chat" or provider not in keyed):
            continue
        rows.append(_row(name, provider, facts))
    if term:
        needle = term.lower()
        rows = [row for row in rows if needle in f"{row['model']} {row['provider']}".lower()]
    return rows, sorted(keyed)


def _providers_with_keys(config: LiteLLMConfig, providers: set[str]) -> set[str]:
    """Providers whose conventional key variable (OPENAI_API_KEY, ...) is set, and the
    configured model's provider when api_key is configured."""
    keyed = {p for p in providers if os.environ.get(f"{p.upper()}_API_KEY")}
    if config.api_key is not None and config.model:
        from ._catalog import Catalog

        provider = Catalog().provider(config.model)
        if provider:
            keyed.add(provider)
    return keyed


def _row(model: str, provider: str | None, details: dict[str, Any]) -> dict[str, Any]:
    return {"model": model, "provider": provider,
            "max_input_tokens": details.get("max_input_tokens"),
            "input_usd_per_1m": _per_million(details.get("input_cost_per_token")),
            "output_usd_per_1m": _per_million(details.get("output_cost_per_token"))}


def _per_million(value: Any) -> float | None:
    if value is None:
        return None
    return round(float(value) * 1_000_000, 6)


def render_models(configured: list[dict[str, Any]], available: list[dict[str, Any]],
                  keyed: list[str], *, every: bool, term: str | None, console: Console) -> None:
    """The configured models, then the ones that can be called, as tables."""
    from rich.text import Text

    if configured:
        table = _table("Configured models", "Role")
        table.add_column("Configured by", overflow="fold")
        for row in configured:
            table.add_row(row["role"], *_cells(row), row["source"])
        console.print(table)
    title = ("Every priced model" if every else
             f"Models you can call (keys set: {', '.join(keyed) or 'none'})")
    table = _table(f"{title}{f', matching {term!r}' if term else ''}", "Provider")
    for row in available:
        table.add_row(row["provider"] or "?", *_cells(row))
    console.print(table)
    more = "" if every else "; `dewey-llm models --all` lists every priced model"
    console.print(Text(f"{len(available):,} models{more}", style="dim"))


def _table(title: str, first: str) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column(first, overflow="fold", max_width=14)
    table.add_column("Model", overflow="fold")
    for header in ("Context", "In $/1M", "Out $/1M"):
        table.add_column(header, justify="right", no_wrap=True)
    return table


def _cells(row: dict[str, Any]) -> tuple[str, ...]:
    return (row["model"], _tokens(row["max_input_tokens"]), price(row["input_usd_per_1m"]),
            price(row["output_usd_per_1m"]))


def _tokens(value: Any) -> str:
    return f"{int(value):,}" if value else "?"


def price(value: float | None) -> str:
    """A price per million tokens: ``$0.15``, ``$0.075``, or ``?`` when unknown."""
    return "?" if value is None else _usd(value)


def render_model(model: str, details: dict[str, Any], console: Console) -> None:
    """Everything LiteLLM's map knows about one model, with prices per million tokens."""
    from rich.table import Table

    table = Table(title=f"Model {model}", title_justify="left")
    table.add_column("Detail", style="bold")
    table.add_column("Value", overflow="fold")
    for key, value in details.items():
        table.add_row(key, _plain(value))
    for side in ("input", "output"):
        per_token = details.get(f"{side}_cost_per_token")
        if per_token is not None:
            table.add_row(f"{side} $/1M tokens", price(_per_million(per_token)))
    console.print(table, highlight=False)


def _plain(value: Any) -> str:
    import json

    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, default=str)
    return str(value)
