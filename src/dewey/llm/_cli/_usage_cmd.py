"""``dewey-llm usage``: what the recorded calls cost, by day and by model, or by tag or user.

The report itself (tables, chart, JSON) is the library's ``_usage._report``, the HTML
page ``_usage._html``; this module owns the command's options and opens and closes the
ledger.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from ._output import NewCommand, load_config, stdout_console

__all__ = ["add"]


def add(commands: Any, command: NewCommand) -> None:
    """The ``usage`` subcommand, its options and its handler."""
    usage = command(
        commands, "usage", "spend and tokens by day and by model, tag or user",
        "Report what the recorded calls cost: spend by day and by model, as tables and a chart, "
        "or by tag, user, model or day alone (--by), from the usage ledger (usage_db).",
        ("dewey-llm usage", "dewey-llm usage --since 7d --model gpt-4o-mini",
         "dewey-llm usage --by tag --since 30d", "dewey-llm usage --since 2026-11-01 --json",
         "dewey-llm usage --since 30d --html report.html"))
    usage.add_argument("--since", metavar="WHEN",
                       help="only calls since WHEN: a duration (30m, 24h, 7d, 2w), a UTC date "
                            "(2026-11-01) or an ISO datetime; default: all recorded calls")
    usage.add_argument("--model", metavar="MODEL", help="only calls to this model")
    usage.add_argument("--by", choices=("tag", "user", "model", "day"),
                       help="one table of spend per tag, user, model or day (a call with "
                            "several tags counts under each); default: by day and by model")
    usage.add_argument("--json", action="store_true", help="print the report as JSON")
    usage.add_argument("--html", metavar="FILE",
                       help="write the report to FILE as one HTML page of charts (spend per "
                            "day by model against the budgets, tokens, cache savings, errors "
                            "and retries, spend by tag and user) that opens without a "
                            "network; needs pip install 'dewey-llm[report]'")
    usage.set_defaults(handler=_usage)


def _usage(args: argparse.Namespace) -> int:
    from .._catalog import Catalog
    from .._exceptions import LLMConfigError
    from .._llama import model_details
    from .._pricing import Pricing
    from .._usage import open_ledger, parse_since, render_usage

    if args.html is not None and (args.json or args.by):
        raise LLMConfigError("--html writes every table and chart to its file: leave out "
                             "--json and --by (use them in a command of their own)")
    since = parse_since(args.since) if args.since else None
    config = load_config()
    pricing = Pricing(Catalog(local=model_details), config.prices)
    ledger = open_ledger(config.usage_db)
    try:
        if args.html is not None:
            _write_html(ledger, args, since, config, pricing.is_priced)
        else:
            render_usage(ledger, since=since, model=args.model, as_json=args.json,
                         console=stdout_console(), by=args.by, is_priced=pricing.is_priced)
    finally:
        ledger.close()
    return 0


def _write_html(ledger: Any, args: argparse.Namespace, since: float | None, config: Any,
                is_priced: Callable[[str], bool]) -> None:
    from .._exceptions import LLMConfigError
    from .._usage import usd
    from .._usage._html import write_usage_html

    try:
        data = write_usage_html(ledger, args.html, since=since, model=args.model,
                                budget=config.budget, is_priced=is_priced)
    except OSError as error:
        raise LLMConfigError(f"cannot write --html {args.html!r}: {error.strerror or error}; "
                             "give a path in a directory you can write to") from None
    calls = sum(row["calls"] for row in data["by_day"])
    print(f"wrote {args.html}: {calls:,} calls, {usd(data['total_usd'])}")
