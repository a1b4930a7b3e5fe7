"""``dewey-llm cache``: inspect or clear the response cache.

``stats`` prints the backend, location, entries and size; ``clear`` deletes every entry
(after asking, on a terminal).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .._exceptions import LLMConfigError
from ._output import NewCommand, group_help, is_tty, load_config, stdout_console, write

__all__ = ["add"]


def add(commands: Any, command: NewCommand) -> None:
    """The ``cache`` command group (``stats``, ``clear``) and its handlers."""
    cache = command(
        commands, "cache", "inspect or clear the response cache",
        "Inspect or clear the configured response cache (the default SQLite file when caching "
        "is off or set to true).",
        ("dewey-llm cache stats", "dewey-llm cache clear --yes",
         "LITELLM_CACHE=redis LITELLM_CACHE_URL=redis://localhost:6379/0 dewey-llm cache stats"))
    cache.set_defaults(handler=lambda _args: group_help(cache))
    cache_commands = cache.add_subparsers(title="commands", metavar="COMMAND",
                                          help="what to do with the cache")
    stats = command(
        cache_commands, "stats", "entries and size of the cache",
        "Print the cache backend, its location, its live and expired entries and its size.",
        ("dewey-llm cache stats", "dewey-llm cache stats --json"))
    stats.add_argument("--json", action="store_true", help="print the statistics as JSON")
    stats.set_defaults(handler=_stats)
    clear = command(
        cache_commands, "clear", "delete every cached answer",
        "Delete every entry of the response cache (asks first on a terminal).",
        ("dewey-llm cache clear", "dewey-llm cache clear --yes"))
    clear.add_argument("-y", "--yes", action="store_true",
                       help="do not ask for confirmation (needed when stdin is not a terminal)")
    clear.set_defaults(handler=_clear)


def _open_cache() -> Any:
    """The configured cache, or the default SQLite file when caching is off (a cache's
    ``location`` is not part of the ``ResponseCache`` protocol: hence ``Any``)."""
    from .._cache import open_cache

    config = load_config()
    return open_cache(config.cache or True, config.cache_url)


def _stats(args: argparse.Namespace) -> int:
    cache = _open_cache()
    try:
        stats = cache.stats()
    finally:
        cache.close()
    document = {name: getattr(stats, name)
                for name in ("backend", "location", "entries", "expired", "size_bytes")}
    if args.json:
        write(json.dumps(document, indent=2) + "\n")
        return 0
    from rich.table import Table

    table = Table(title="Response cache", title_justify="left", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", overflow="fold")
    table.add_row("backend", stats.backend)
    table.add_row("location", stats.location)
    table.add_row("entries", f"{stats.entries:,}")
    table.add_row("expired", f"{stats.expired:,}")
    table.add_row("size", _size(stats.size_bytes))
    stdout_console().print(table, highlight=False)
    return 0


def _size(value: int | None) -> str:
    if value is None:
        return "unknown"
    size = float(value)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} bytes"  # pragma: no cover


def _clear(args: argparse.Namespace) -> int:
    if not args.yes and not is_tty(sys.stdin):
        raise LLMConfigError("cache clear asks for confirmation: pass --yes to clear without "
                             "a terminal")
    cache = _open_cache()
    try:
        try:
            stats = cache.stats()
            what, damaged = f"{stats.entries:,} cached entries from", False
        except LLMConfigError:  # a file that cannot be read: clearing recreates it
            what, damaged = "the unreadable file of", True
        if not args.yes:
            answer = input(f"Delete {what} the {cache.backend} cache at {cache.location}? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("Nothing deleted.", file=sys.stderr)
                return 1
        removed = cache.clear()
    finally:
        cache.close()
    if damaged:
        write(f"recreated the {cache.backend} cache at {cache.location} (it could not be read)\n")
        return 0
    noun = "entry" if removed == 1 else "entries"
    write(f"cleared {removed:,} {noun} from the {cache.backend} cache at {cache.location}\n")
    return 0
