"""``dewey-llm usage``: spend by day and by model (or by tag, user, model or day alone),
as tables and a bar chart, or as JSON."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from .._exceptions import LLMConfigError
from ._format import usd
from ._records import UsageSummary

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from ._ledger import Ledger

__all__ = ["BY", "USD_DIGITS", "as_json", "parse_since", "render_usage", "scope_text", "usage_document", "usage_tables"]

# --by: the table's title, its key's header, and how a call without that key is shown.
BY = {"day": ("Spend by day", "Day (UTC)", ""), "model": ("Spend by model", "Model", ""),
      "user": ("Spend by user", "User", "(no user)"), "tag": ("Spend by tag", "Tag", "(no tag)")}

# No 0.30000000000000004 in reports, but every digit of a cheap call: 6 decimals showed a
# $0.0000013 call as $0.000001.
USD_DIGITS = 12
CHART_DAYS = 60  # a longer period shows only its last days: one line per day stays readable
_BLOCKS = " ▏▎▍▌▋▊▉"  # eighths of a cell, so small differences still show
_FULL = "█"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_SINCE_FORMS = ("a duration like 7d, 24h or 30m (s, m, h, d, w), a UTC date like 2026-11-01, "
                "or an ISO datetime like 2026-11-01T09:30:00+00:00 (UTC if no offset)")


def parse_since(text: str, *, now: float | None = None) -> float:
    """Unix seconds for ``--since``: "7d", "24h", "30m", "2026-11-01" (UTC) or ISO datetime."""
    value = text.strip()
    now = time.time() if now is None else now
    duration = _DURATION.fullmatch(value)
    if duration:
        since = now - float(duration.group(1)) * _UNITS[duration.group(2)]
        try:  # 99999999d reaches before year 1, where no date (and no ledger row) is
            datetime.fromtimestamp(since, timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise LLMConfigError(
                f"--since {text!r} reaches back before year 1: use a shorter duration, or "
                "leave --since out for every recorded call") from None
        return since
    try:
        if _DATE.fullmatch(value):
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()
        # Python 3.10's fromisoformat does not know the "Z" suffix.
        parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value[-1:] in "Zz" else value)
    except (ValueError, IndexError):
        raise LLMConfigError(f"cannot read --since {text!r}: use {_SINCE_FORMS}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def render_usage(ledger: Ledger, *, since: float | None, model: str | None, as_json: bool,
                 console: Console, by: str | None = None,
                 is_priced: Callable[[str], bool] | None = None) -> None:
    """Print spend by day and by model (tables and a cost-per-day chart), or one JSON document
    ``{"by_day": [...], "by_model": [...], "total_usd": ...}``.

    ``by`` ("day", "model", "user" or "tag") prints that table alone (``{"by_tag": [...],
    "total_usd": ...}``).  A call with several tags counts under each, so the tags' rows
    may add up to more than the total, which counts every call once.

    With ``is_priced``, the models whose calls used tokens but were recorded at $0 and
    that have no price are listed as unpriced (``"unpriced": [...]``): their spend is missing."""
    if by is not None and by not in BY:
        raise LLMConfigError(f"--by {by!r} is not supported: use --by tag, user, model or day")
    tables, total = usage_tables(ledger, ("day", "model") if by is None else (by,),
                                 since=since, model=model)
    unpriced = unpriced_models(ledger, tables, is_priced, since=since, model=model)
    if as_json:
        document = usage_document(tables, total)
        if is_priced is not None:
            document["unpriced"] = unpriced
        # out(), not print(): no wrapping or markup, so the output stays valid JSON.
        console.out(json.dumps(document, indent=2), highlight=False)
        return

    from rich.text import Text

    scope = scope_text(since, model)
    if not any(tables.values()):  # every call counts in each table
        console.print(Text(f"No usage recorded{scope} in {ledger.location}."))
        return
    console.print(Text(f"Usage{scope} - {usd(total)} in total ({ledger.location})", style="bold"))
    for key, rows in tables.items():
        title, header, missing = BY[key]
        shown = [replace(row, key=row.key or missing) for row in rows]
        if by is None and key == "day" and len(shown) > CHART_DAYS:
            # A year is 365 lines, and rendering them costs more than reading the ledger.
            title += f" (last {CHART_DAYS} of {len(shown)} days; --by day shows every day)"
            shown = shown[-CHART_DAYS:]
        console.print(_table(title, header, shown, console.width, totals=_totals(rows)))
    if by == "tag":
        console.print(Text("A call with several tags counts under each of them."))
    if unpriced:
        console.print(Text(f"Unpriced, recorded at $0 (their spend is missing): {', '.join(unpriced)}. "
                           "Price them under prices: in the config.", style="yellow"))
    if "day" in tables:
        console.print(Text("Cost per day", style="bold"))
        for line in _chart(tables["day"], console.width):
            console.print(Text(line), no_wrap=True, overflow="crop")


def usage_tables(ledger: Ledger, keys: Sequence[str], *, since: float | None,
                 model: str | None) -> tuple[dict[str, list[UsageSummary]], float]:
    """The summaries ``by`` each of ``keys``, and the total spend (each call once): what
    ``usage --json`` prints and ``usage --html`` draws."""
    by_day = ledger.summary(by="day", since=since, model=model)  # the daily totals: cheap
    tables = {key: by_day if key == "day" else ledger.summary(by=key, since=since, model=model)
              for key in keys}
    return tables, sum(row.cost_usd for row in by_day)


def unpriced_models(ledger: Ledger, tables: dict[str, list[UsageSummary]],
                    is_priced: Callable[[str], bool] | None, *, since: float | None,
                    model: str | None) -> list[str]:
    """The models whose calls used tokens but were recorded at $0 and that have no price
    (none when ``is_priced`` is not given): their spend is missing from the figures."""
    if is_priced is None:
        return []
    by_model = tables.get("model") or ledger.summary(by="model", since=since, model=model)
    return [row.key for row in by_model if not row.cost_usd and row.key
            and row.prompt_tokens + row.completion_tokens and not is_priced(row.key)]


def usage_document(tables: dict[str, list[UsageSummary]], total: float) -> dict[str, Any]:
    """``{"by_day": [...], "by_model": [...], "total_usd": ...}`` of ``usage_tables``."""
    document: dict[str, Any] = {f"by_{key}": [as_json(row) for row in rows]
                                for key, rows in tables.items()}
    document["total_usd"] = round(total, USD_DIGITS)
    return document


# Columns in the order they are given up when the terminal is too narrow for all of them.
_COLUMNS = (("Cost", "cost_usd"), ("Calls", "calls"), ("Tokens in", "prompt_tokens"),
            ("Tokens out", "completion_tokens"), ("Errors", "errors"), ("Retries", "retries"),
            ("Cache hits", "cache_hits"), ("Saved", "saved_usd"))


def _table(title: str, key_header: str, rows: list[UsageSummary], width: int, *,
           totals: UsageSummary) -> Table:
    """``rows`` and a footer of ``totals`` (those of the whole period, when ``rows`` are
    only its last days)."""
    from rich.table import Table

    cells = {attribute: [_cell(getattr(row, attribute)) for row in (*rows, totals)]
             for _, attribute in _COLUMNS}
    # Keep the columns that fit (a cell needs its text + 3 for padding and border); a
    # narrow terminal loses the least useful columns and may fold model names, but never
    # cuts a number.
    room = width - 1 - min(24, max(len(key_header), *(len(row.key) for row in rows))) - 3
    shown: list[tuple[str, str]] = []
    for header, attribute in _COLUMNS:
        needed = max(len(header), *(len(text) for text in cells[attribute])) + 3
        if needed > room and shown:
            break
        shown.append((header, attribute))
        room -= needed
    shown.sort(key=lambda column: _DISPLAY_ORDER.index(column[1]))

    table = Table(title=title, title_justify="left", show_footer=len(rows) > 1)
    table.add_column(key_header, footer="total", overflow="fold")
    for header, attribute in shown:
        table.add_column(header, justify="right", footer=cells[attribute][-1], no_wrap=True,
                         min_width=max(len(text) for text in cells[attribute]))
    for index, row in enumerate(rows):
        table.add_row(row.key, *(cells[attribute][index] for _, attribute in shown))
    return table


_DISPLAY_ORDER = ("calls", "errors", "retries", "cache_hits", "prompt_tokens",
                  "completion_tokens", "cost_usd", "saved_usd")


def _cell(value: float) -> str:
    return _count(value) if isinstance(value, int) else usd(value)


def _chart(by_day: list[UsageSummary], width: int) -> list[str]:
    """One line per day: the day, a bar of block characters scaled to ``width``, the cost."""
    costs = _every_day(by_day)
    note = []
    if len(costs) > CHART_DAYS:
        note = [f"(last {CHART_DAYS} of {len(costs)} days)"]
        costs = costs[-CHART_DAYS:]
    labels = [usd(cost) for _, cost in costs]
    label_width = max(len(label) for label in labels)
    bar_width = max(10, width - len("2026-11-01") - label_width - 4)
    peak = max(cost for _, cost in costs)
    lines = []
    for (day, cost), label in zip(costs, labels, strict=True):
        bar = _bar(cost / peak * bar_width if peak > 0 else 0.0, visible=cost > 0)
        lines.append(f"{day}  {bar:<{bar_width}}  {label:>{label_width}}")
    return note + lines


def _bar(cells: float, *, visible: bool) -> str:
    full = int(cells)
    eighths = int((cells - full) * 8)
    bar = _FULL * full + (_BLOCKS[eighths] if eighths else "")
    return bar or ("▏" if visible else "")  # a tiny spend still shows


def _every_day(by_day: list[UsageSummary]) -> list[tuple[str, float]]:
    """Cost per day from the first to the last, days without calls included (as 0)."""
    known = {row.key: row.cost_usd for row in by_day}
    try:
        first, last = date.fromisoformat(by_day[0].key), date.fromisoformat(by_day[-1].key)
    except (IndexError, ValueError):
        return list(known.items())
    days = (first + timedelta(days=n) for n in range((last - first).days + 1))
    return [(day.isoformat(), known.get(day.isoformat(), 0.0)) for day in days]


def _totals(rows: list[UsageSummary]) -> UsageSummary:
    return UsageSummary(
        "total", sum(r.calls for r in rows), sum(r.errors for r in rows),
        sum(r.cache_hits for r in rows), sum(r.prompt_tokens for r in rows),
        sum(r.completion_tokens for r in rows), sum(r.cost_usd for r in rows),
        sum(r.saved_usd for r in rows), sum(r.retries for r in rows))


def scope_text(since: float | None, model: str | None) -> str:
    """" since 2026-11-01 09:30 UTC for gpt-4o": what a report covers ("" for everything)."""
    parts = []
    if since is not None:
        parts.append(f" since {datetime.fromtimestamp(since, timezone.utc):%Y-%m-%d %H:%M} UTC")
    if model is not None:
        parts.append(f" for {model}")
    return "".join(parts)


def as_json(row: UsageSummary) -> dict[str, Any]:
    document = asdict(row)
    document["cost_usd"] = round(row.cost_usd, USD_DIGITS)
    document["saved_usd"] = round(row.saved_usd, USD_DIGITS)
    return document


def _count(value: int) -> str:
    return f"{value:,}"
