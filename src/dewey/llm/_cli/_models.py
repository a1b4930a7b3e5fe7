"""``dewey-llm models``: the models a user can call, with context windows and prices.

Offline: the list comes from the configuration and the price map LiteLLM ships (read by
``Catalog``), one model's details from the client's ``get_model_details``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os

# argparse's subcommand action has no public name, but add_subparsers(action=...) is
# documented: subclassing it is the one way to let a word stand for `list WORD`.
from argparse import _SubParsersAction
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .._exceptions import LLMError
from ._output import NewCommand, load_config, price, stdout_console, tokens, write

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from .._catalog import Catalog
    from .._client import LiteLLMClient
    from .._config import LiteLLMConfig

__all__ = ["add"]

logger = logging.getLogger("dewey.llm")

_SEARCH = "list"


def add(commands: Any, command: NewCommand) -> None:
    """The ``models`` subcommand (a search term, ``list`` or ``show``) and its handlers."""
    models = command(
        commands, "models", "the models you can call, with prices; or one model's details",
        "List the configured models (primary, fallbacks, embedding model, and where each was "
        "configured), then the priced chat models of every provider whose key is set "
        "(OPENAI_API_KEY, ANTHROPIC_API_KEY, ...) and the offline local/smollm2, with context "
        "window and price per million tokens.  A search term lists only the models whose name "
        "or provider contains it.  `models show MODEL` prints everything LiteLLM knows about "
        "a model.",
        ("dewey-llm models", "dewey-llm models claude --all", "dewey-llm models show gpt-4o",
         "dewey-llm models show anthropic/claude-3-5-sonnet-latest --json"))
    models.add_argument("--all", action="store_true",
                        help="every priced model LiteLLM knows, whatever keys are set")
    models.add_argument("--json", action="store_true", help="print the lists as JSON")
    models.set_defaults(handler=_list, term=None)
    models_commands = models.add_subparsers(
        title="commands", metavar="[SEARCH | COMMAND]", action=_CommandOrSearch,
        help="a search term, or a command (without either: list the models)")
    search = command(
        models_commands, _SEARCH, "list the models whose name or provider contains SEARCH",
        "List the models you can call whose name or provider contains SEARCH (any case); "
        "`dewey-llm models SEARCH` is the short form.",
        ("dewey-llm models sonnet", "dewey-llm models list gemini --all --json"))
    search.add_argument("term", metavar="SEARCH", nargs="?", help="part of a model's name")
    search.add_argument("--all", action="store_true", default=argparse.SUPPRESS,
                        help="search every priced model, whatever keys are set")
    search.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print the lists as JSON")
    search.set_defaults(handler=_list)
    show = command(
        models_commands, "show", "all details of one model",
        "Print the context window, prices and capabilities LiteLLM's model map has for MODEL "
        "(offline: nothing is sent).",
        ("dewey-llm models show gpt-4o", "dewey-llm models show gemini/gemini-2.0-flash --json"))
    show.add_argument("model", metavar="MODEL", help="a model name, e.g. gpt-4o or "
                                                     "anthropic/claude-haiku-4-5")
    show.add_argument("--json", action="store_true", help="print the details as JSON")
    show.set_defaults(handler=_show)


class _AnyWord(Mapping[str, argparse.ArgumentParser]):
    """argparse's choices for a subcommand that may also be a search term: the subcommand
    parsers by name, and every word passes argparse's check."""

    def __init__(self, parsers: dict[str, argparse.ArgumentParser]) -> None:
        self._parsers = parsers

    def __contains__(self, word: object) -> bool:
        return True

    def __getitem__(self, name: str) -> argparse.ArgumentParser:
        return self._parsers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._parsers)

    def __len__(self) -> int:
        return len(self._parsers)


# Not subscripted: _SubParsersAction is generic only in typeshed, not at runtime.
class _CommandOrSearch(_SubParsersAction):  # type: ignore[type-arg]
    """``models show X`` runs the subcommand; ``models WORD`` searches, as ``models list WORD``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.choices = _AnyWord(self._name_parser_map)  # type: ignore[assignment]

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        if values and values[0] not in self._name_parser_map:
            values = [_SEARCH, *values]
        super().__call__(parser, namespace, values, option_string)


# --- the handlers -----------------------------------------------------------------------------

def _list(args: argparse.Namespace) -> int:
    config = load_config()
    # A search looks through what can be called; the configuration has its own command.
    configured = [] if args.term else _configured_models(config)
    available, keyed = _available_models(config, every=args.all, term=args.term)
    if args.json:
        write(json.dumps({"configured": configured, "models": available}, indent=2) + "\n")
        return 0
    _render_models(configured, available, keyed, every=args.all, term=args.term,
                   console=stdout_console())
    return 0


def _show(args: argparse.Namespace) -> int:
    with _facts_client() as client:
        details = client.get_model_details(args.model)
        details["transport"] = client.transports(args.model)[args.model]
    if args.json:
        write(json.dumps(details, indent=2, default=str) + "\n")
        return 0
    _render_model(args.model, details, stdout_console())
    return 0


def _facts_client() -> LiteLLMClient:
    """A client asked only for model facts: it records and caches nothing."""
    from .._client import LiteLLMClient

    return LiteLLMClient(track_usage=False, cache=False)


# --- the lists --------------------------------------------------------------------------------

def _configured_models(config: LiteLLMConfig) -> list[dict[str, Any]]:
    """The primary, fallback and embedding models with where each was configured."""
    from .._catalog import Catalog
    from .._providers import PROVIDERS, default_embedding_model

    sources = config.sources
    entries: list[tuple[str, str, str]] = []
    if config.model:
        entries.append(("primary", config.model, sources["model"]))
    else:
        model = config.resolved_model()
        variable = next((v for p in PROVIDERS if p.default_model == model
                         for v in p.key_variables[:1] if os.environ.get(v)), None)
        why = f"{variable} is set" if variable else "no provider key: offline"
        entries.append(("primary", model, f"default ({why})"))
    for fallback in config.fallback_models:
        name = fallback if isinstance(fallback, str) else fallback.model
        entries.append(("fallback", name, sources["fallback_models"]))
    if config.embedding_model:
        entries.append(("embedding", config.embedding_model, sources["embedding_model"]))
    else:
        with contextlib.suppress(LLMError):
            entries.append(("embedding", default_embedding_model(config.resolved_model()),
                            "default (for the primary)"))
    catalog = Catalog()
    rows = []
    with _facts_client() as client:
        for role, model, source in entries:
            try:
                details = client.get_model_details(model)
            except Exception as exc:  # unknown to LiteLLM's map, or the local extra is absent
                logger.debug("no details for %s: %s", model, exc)
                details = {}
            provider = details.get("litellm_provider") or catalog.provider(model)
            rows.append({"role": role, **_row(model, provider, details), "source": source})
    return rows


def _available_models(config: LiteLLMConfig, *, every: bool, term: str | None
                      ) -> tuple[list[dict[str, Any]], list[str]]:
    """Priced chat models of the providers with a key set (every priced model with
    ``every``), plus the local model, matching ``term``; and those providers."""
    from .._catalog import Catalog
    from .._providers import LOCAL_DEFAULT_MODEL

    catalog = Catalog()
    price_map = catalog.entries
    keyed = _providers_with_keys(config, catalog, {str(facts.get("litellm_provider"))
                                                   for facts in price_map.values()})
    rows = [_row(LOCAL_DEFAULT_MODEL, "local", {})]
    for name, facts in sorted(price_map.items()):
        if facts.get("input_cost_per_token") is None:
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


def _providers_with_keys(config: LiteLLMConfig, catalog: Catalog, providers: set[str]) -> set[str]:
    """Providers whose conventional key variable (OPENAI_API_KEY, ...) is set, and the
    configured model's provider when api_key is configured."""
    keyed = {p for p in providers if os.environ.get(f"{p.upper()}_API_KEY")}
    if config.api_key is not None and config.model:
        provider = catalog.provider(config.model)
        if provider:
            keyed.add(provider)
    return keyed


def _row(model: str, provider: str | None, details: Mapping[str, Any]) -> dict[str, Any]:
    return {"model": model, "provider": provider,
            "max_input_tokens": details.get("max_input_tokens"),
            "input_usd_per_1m": _per_million(details.get("input_cost_per_token")),
            "output_usd_per_1m": _per_million(details.get("output_cost_per_token"))}


def _per_million(value: Any) -> float | None:
    if value is None:
        return None
    return round(float(value) * 1_000_000, 6)


# --- the tables -------------------------------------------------------------------------------

def _render_models(configured: list[dict[str, Any]], available: list[dict[str, Any]],
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


def _table(title: str, first: str) -> Table:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column(first, overflow="fold", max_width=14)
    table.add_column("Model", overflow="fold")
    for header in ("Context", "In $/1M", "Out $/1M"):
        table.add_column(header, justify="right", no_wrap=True)
    return table


def _cells(row: dict[str, Any]) -> tuple[str, ...]:
    return (row["model"], tokens(row["max_input_tokens"]), price(row["input_usd_per_1m"]),
            price(row["output_usd_per_1m"]))


def _render_model(model: str, details: dict[str, Any], console: Console) -> None:
    """Everything LiteLLM's map knows about one model, with prices per million tokens."""
    from rich.table import Table

    table = Table(title=f"Model {model}", title_justify="left")
    table.add_column("Detail", style="bold")
    table.add_column("Value", overflow="fold")
    for key, value in details.items():
        table.add_row(key, _as_cell(value))
    for side in ("input", "output"):
        per_token = details.get(f"{side}_cost_per_token")
        if per_token is not None:
            table.add_row(f"{side} $/1M tokens", price(_per_million(per_token)))
    console.print(table, highlight=False)


def _as_cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, default=str)
    return str(value)
