"""``dewey-llm usage --html``: the usage report as one HTML file of charts and tables.

The figures are those ``usage --json`` prints (``_report.usage_tables``; spend per day
of one model is ``usage --by day --model M --json``), written into the page three times:
drawn by Plotly, shown in tables, and kept whole as JSON (``<script id="usage-data">``).
Plotly's JavaScript is embedded once, so the file opens without a network.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from datetime import date, datetime, timezone
from importlib import import_module
from itertools import accumulate
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._extras import import_extra
from ._format import usd
from ._report import BY, USD_DIGITS, as_json, scope_text, unpriced_models, usage_document, usage_tables

if TYPE_CHECKING:
    from .._config import Budget
    from ._ledger import Ledger

__all__ = ["report_data", "usage_html", "write_usage_html"]

NEEDED_FOR = "dewey-llm usage --html"
CHART_HEIGHT = "420px"
# (budget field, the label of its line); daily on the spend per day, the others on the
# cumulative spend.
_BUDGETS = (("daily_usd", "daily budget"), ("monthly_usd", "monthly budget"),
            ("total_usd", "total budget"))
# The tables' columns: (header, field).
_COLUMNS = (("Calls", "calls"), ("Errors", "errors"), ("Retries", "retries"),
            ("Cache hits", "cache_hits"), ("Tokens in", "prompt_tokens"),
            ("Tokens out", "completion_tokens"), ("Cost", "cost_usd"), ("Saved", "saved_usd"))
# A dollar axis: "$0.00012", not Plotly's SI "120µ".
_USD = {"title": {"text": "USD"}, "tickformat": "$.2~g", "rangemode": "tozero"}
_DAY_MS = 86_400_000
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
section { margin-bottom: 2.5em; }
table { border-collapse: collapse; margin: .5em 0 1.5em; }
th, td { padding: .25em .75em; border-bottom: 1px solid #ddd; }
td.number, th.number { text-align: right; font-variant-numeric: tabular-nums; }
.note { color: #666; }
"""


def write_usage_html(ledger: Ledger, path: str | Path, *, since: float | None,
                     model: str | None, budget: Budget | None = None,
                     is_priced: Callable[[str], bool] | None = None) -> dict[str, Any]:
    """Write the report of the calls since ``since`` (to ``model``) to ``path``; returns
    its figures (``report_data``)."""
    data = report_data(ledger, since=since, model=model, is_priced=is_priced)
    page = usage_html(data, budget=budget, scope=scope_text(since, model), location=ledger.location)
    Path(path).write_text(page, encoding="utf-8")
    return data


def report_data(ledger: Ledger, *, since: float | None, model: str | None,
                is_priced: Callable[[str], bool] | None = None) -> dict[str, Any]:
    """``usage --json`` with the tables by tag and user too, and per model its spend per
    day (``by_day_and_model``)."""
    tables, total = usage_tables(ledger, ("day", "model", "tag", "user"), since=since,
                                 model=model)
    data = usage_document(tables, total)
    if is_priced is not None:
        data["unpriced"] = unpriced_models(ledger, tables, is_priced, since=since, model=model)
    data["by_day_and_model"] = {
        row.key: [as_json(day) for day in ledger.summary(by="day", since=since, model=row.key)]
        for row in tables["model"]}
    data["since"] = None if since is None else datetime.fromtimestamp(since, timezone.utc).isoformat()
    data["cumulative_start"] = _spend_before(ledger, since=since, model=model,
                                             first_day=tables["day"][0].key if tables["day"] else None)
    return data


def _spend_before(ledger: Ledger, *, since: float | None, model: str | None,
                  first_day: str | None) -> dict[str, float]:
    """What the cumulative lines start from: the spend before ``since`` in the month of
    the first day shown, and all the spend before ``since`` (of ``model``).  The budgets
    count those too, so lines from 0 would understate what they are compared with."""
    if since is None or first_day is None:
        return {"month": 0.0, "total": 0.0}

    def spend(start: float | None) -> float:  # read from the running totals
        return sum(row.cost_usd for row in ledger.summary(by="model", since=start, model=model))

    shown = spend(since)
    try:
        first = date.fromisoformat(first_day)
        month: float | None = datetime(first.year, first.month, 1, tzinfo=timezone.utc).timestamp()
    except ValueError:  # a day beyond year 9999 (day_text's fallback): no month to start
        month = None
    # Differences of two reads, so rounded as --json rounds, and never below 0 (a record
    # written between the reads).
    return {"month": _before(spend(month), shown) if month is not None and month < since else 0.0,
            "total": _before(spend(None), shown)}


def _before(since_start: float, shown: float) -> float:
    return max(0.0, round(since_start - shown, USD_DIGITS))


def usage_html(data: dict[str, Any], *, budget: Budget | None = None, scope: str = "",
               location: str = "") -> str:
    """The page of ``report_data``: charts, tables, and the figures as JSON."""
    import_extra("plotly", extra="report", needed_for=NEEDED_FOR)  # missing: say which extra
    go = import_module("plotly.graph_objects")
    plotly_js = import_module("plotly.offline").get_plotlyjs()
    limits = {name: getattr(budget, name, None) for name, _ in _BUDGETS}
    data = {**data, "budget": limits}
    sections = [_chart(chart_id, title, figure)
                for chart_id, title, figure in _figures(go, data, limits)]
    tables = [_table(key, data[f"by_{key}"]) for key in ("model", "tag", "user", "day")]
    # "<" escaped: no "</script>" in a tag or user name can end the JSON early.
    figures = json.dumps(data, sort_keys=True).replace("<", "\\u003c")
    title, total = f"dewey-llm usage{scope}", data["total_usd"]
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>", f"<style>{_STYLE}</style>",
        f"<script>{plotly_js}</script>", "</head>", "<body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p>Total spend <strong id="total-usd" data-value="{json.dumps(total)}">{usd(total)}'
        "</strong>" + (f' <span class="note">({html.escape(location)})</span>' if location else "")
        + "</p>",
        *_unpriced(data.get("unpriced") or []),
        *sections, '<section id="tables"><h2>Figures</h2>', *tables,
        '<p class="note">Calls count attempts: a call retried once is two calls, one of '
        "them a retry. A call with several tags counts under each of them.</p>",
        "</section>",
        f'<script type="application/json" id="usage-data">{figures}</script>',
        "</body>", "</html>", ""])


def _figures(go: Any, data: dict[str, Any],
             limits: dict[str, float | None]) -> list[tuple[str, str, Any]]:
    """``(id, title, plotly figure)`` of each chart."""
    by_day = data["by_day"]
    days = [row["key"] for row in by_day]

    spend = go.Figure([go.Bar(name=_literal(name), x=[row["key"] for row in rows],
                              y=[row["cost_usd"] for row in rows])
                       for name, rows in data["by_day_and_model"].items()])
    spend.update_layout(barmode="stack", yaxis=_USD)
    _budget_lines(spend, limits, ("daily_usd",))

    costs = [row["cost_usd"] for row in by_day]
    start = data.get("cumulative_start") or {}
    # With --since the lines start from the spend before it, as the budgets count it.
    names = ("this month", "whole report") if data.get("since") is None else (
        "month to date", "total to date")
    cumulative = go.Figure([
        go.Scatter(name=names[0], x=days, y=_month_to_date(days, costs, start.get("month", 0.0)),
                   mode="lines+markers"),
        go.Scatter(name=names[1], x=days,
                   y=list(accumulate(costs, initial=start.get("total", 0.0)))[1:],
                   mode="lines+markers"),
    ])
    cumulative.update_layout(yaxis=_USD)
    _budget_lines(cumulative, limits, ("monthly_usd", "total_usd"))

    tokens = go.Figure([go.Bar(name=label, x=days, y=[row[field] for row in by_day])
                        for label, field in (("tokens in", "prompt_tokens"),
                                             ("tokens out", "completion_tokens"))])
    tokens.update_layout(barmode="stack", yaxis_title="tokens")

    cache = go.Figure([go.Bar(name="saved by cache hits", x=days,
                              y=[row["saved_usd"] for row in by_day],
                              customdata=[row["cache_hits"] for row in by_day],
                              hovertemplate="%{x}: %{y} USD saved by %{customdata} hits")])
    cache.update_layout(yaxis=_USD, showlegend=True)

    models = [_literal(row["key"]) for row in data["by_model"]]
    errors = go.Figure([go.Bar(name=name, x=models, y=[row[name] for row in data["by_model"]])
                        for name in ("errors", "retries")])
    # Axes of names are category axes: Plotly would put names that look like dates (a tag
    # "2025-01-10") on a time line.
    errors.update_layout(barmode="group", yaxis_title="attempts", xaxis_type="category")

    for figure in (spend, cumulative, tokens, cache):
        _days_axis(figure, days)
    charts = [("chart-spend", "Spend per day by model", spend),
              ("chart-cumulative", "Cumulative spend and budgets", cumulative),
              ("chart-tokens", "Tokens per day", tokens),
              ("chart-cache", "Cache savings per day", cache),
              ("chart-errors", "Errors and retries by model", errors)]
    for key in ("tag", "user"):
        missing = BY[key][2]
        rows = data[f"by_{key}"]
        figure = go.Figure([go.Bar(name="spend", orientation="h",
                                   x=[row["cost_usd"] for row in rows],
                                   y=[_literal(row["key"] or missing) for row in rows])])
        figure.update_layout(xaxis=_USD, yaxis_autorange="reversed", yaxis_type="category")
        charts.append((f"chart-{key}", f"Spend by {key}", figure))
    return charts


def _literal(name: str) -> str:
    """``name`` as Plotly draws it character for character: Plotly reads <b>, <i>, <br>,
    <a href> and the like in trace names and category labels, and decodes entities."""
    return html.escape(name, quote=False)


def _days_axis(figure: Any, days: list[str]) -> None:
    """Whole days on the x axis: one tick a day for up to a month (else Plotly picks), never
    the hours Plotly shows between two days."""
    figure.update_xaxes(type="date", tickformat="%Y-%m-%d",
                        dtick=_DAY_MS if len(days) < 2 or _span(days) <= 31 else None)


def _span(days: list[str]) -> int:
    try:
        return (date.fromisoformat(days[-1]) - date.fromisoformat(days[0])).days
    except ValueError:
        return 0


def _budget_lines(figure: Any, limits: dict[str, float | None], names: tuple[str, ...]) -> None:
    for name, label in _BUDGETS:
        limit = limits.get(name)
        if name in names and limit is not None:
            figure.add_hline(y=limit, line_dash="dash", line_color="#d62728",
                             annotation_text=f"{label} {usd(limit)}")


def _month_to_date(days: list[str], costs: list[float], start: float) -> list[float]:
    """The spend of each day's month up to that day: the first month's from ``start`` (its
    spend before the report's period), each later month's from 0."""
    totals: list[float] = []
    for index, (day, cost) in enumerate(zip(days, costs, strict=True)):
        same_month = index > 0 and days[index - 1][:7] == day[:7]
        totals.append((totals[-1] if same_month else start if index == 0 else 0.0) + cost)
    return totals


def _chart(chart_id: str, title: str, figure: Any) -> str:
    figure.update_layout(margin={"t": 30})
    div = figure.to_html(full_html=False, include_plotlyjs=False, div_id=chart_id,
                         default_height=CHART_HEIGHT, config={"displaylogo": False})
    return f'<section><h2>{html.escape(title)}</h2>{div}</section>'


def _unpriced(models: list[str]) -> list[str]:
    """A warning naming the models recorded at $0 for want of a price (none: nothing)."""
    if not models:
        return []
    names = ", ".join(html.escape(name) for name in models)
    return [f'<p class="note" id="unpriced">Unpriced, recorded at $0 (their spend is missing '
            f"from these figures): {names}. Price them under <code>prices:</code> in the "
            "config.</p>"]


def _table(key: str, rows: list[dict[str, Any]]) -> str:
    """A table of ``rows`` with each figure in ``data-value`` as well (exact, as in JSON)."""
    title, header, missing = BY[key]
    head = "".join(f'<th class="number">{name}</th>' for name, _ in _COLUMNS)
    body = []
    for row in rows:
        cells = "".join(_cell(field, row[field]) for _, field in _COLUMNS)
        body.append(f'<tr data-key="{html.escape(row["key"])}">'
                    f"<td>{html.escape(row['key'] or missing)}</td>{cells}</tr>")
    return (f'<h3>{html.escape(title)}</h3><table id="by-{key}"><thead><tr>'
            f"<th>{html.escape(header)}</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def _cell(field: str, value: float) -> str:
    text = usd(value) if field.endswith("_usd") else f"{value:,}"
    return f'<td class="number" data-field="{field}" data-value="{json.dumps(value)}">{text}</td>'

