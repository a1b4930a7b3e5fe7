"""``dewey-llm usage --html``: the report file, opened in headless Chromium.

The ledger is filled by real calls through the fake provider (two models, a call retried
after a 500, a cache hit, tags and users) and by rows of earlier days written through the
ledger's API; the real command writes the page, Chromium renders it (its scripts run), and
the rendered DOM is checked: every chart drawn as SVG, and every figure equal to what
``dewey-llm usage --json`` prints for the same ledger.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from dewey.llm._usage import SQLiteLedger, UsageRecord, open_ledger
from tests.servers.fake_provider import FakeProvider, Reply
from tests.servers.postgres import PG_URL, needs_postgres
from tests.test_cli import cli_env, dewey, dewey_all, ok, one_error_line

MINI, BIG, OLD = "openai/gpt-4o-mini", "openai/gpt-4o", "anthropic/claude-3-5-haiku-latest"
CHARTS = ("chart-spend", "chart-cumulative", "chart-tokens", "chart-cache", "chart-errors",
          "chart-tag", "chart-user")
# Plotly would read its HTML: drawn bold and italic, not as these characters.
MARKUP = "<b>bold</b> & <i>co</i>"
MARKED = f"acme/{MARKUP}"  # a model's name
DATED = ("2025-01-01", "2025-01-02", "2025-01-10")  # tags: a batch run's, say
BUDGET = "llm:\n  budget:\n    daily_usd: 0.5\n    monthly_usd: 5\n    total_usd: 50\n"


# --- the rendered page ----------------------------------------------------------------------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    text: str = ""

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.walk()

    def find(self, **wanted: str) -> list[Node]:
        """Elements (this one included) with these attributes; ``class_`` is one of its classes."""
        def matches(node: Node) -> bool:
            for name, value in wanted.items():
                if name == "class_":
                    if value not in node.attrs.get("class", "").split():
                        return False
                elif node.attrs.get(name) != value:
                    return False
            return True
        return [node for node in self.walk() if matches(node)]

    def one(self, **wanted: str) -> Node:
        [node] = self.find(**wanted)
        return node

    def all_text(self) -> str:
        return "".join(node.text for node in self.walk())


class TreeBuilder(HTMLParser):
    """The DOM Chromium dumped, as a tree of ``Node``s (enough for these checks)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {name: value or "" for name, value in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {name: value or "" for name, value in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].text += data


def parse(page: str) -> Node:
    builder = TreeBuilder()
    builder.feed(page)
    builder.close()
    return builder.root


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI") == "true":  # CI installs it (.ci/run): missing is a failure
            pytest.fail("chromium is not installed: .ci/run installs Debian's chromium package")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


def rendered(page: Path) -> Node:
    """The DOM of ``page`` once Chromium has run its scripts."""
    result = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
         "--window-size=1200,900", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return parse(result.stdout)


# --- the ledger -----------------------------------------------------------------------------------

def fill_ledger(make_client: Any, provider: FakeProvider, db: Path) -> None:
    client = make_client(usage_db=str(db), cache="memory", max_retries=1)
    provider.script("gpt-4o-mini", Reply.error(500), Reply.ok("a", prompt_tokens=1000,
                                                               completion_tokens=500))
    client.generate_completion("one", tags=["search"], user="ann")  # a 500, then retried
    client.generate_completion("two", user="ann")
    client.generate_completion("two", user="ann")  # answered from the cache
    assert len(provider.requests_for("gpt-4o-mini")) == 3
    client.generate_completion("three", model=BIG, tags=["chat", "beta", MARKUP], user=MARKUP)
    client.close()
    now = time.time()
    with SQLiteLedger(db) as ledger:  # earlier days: a chart of several days, one without calls
        ledger.record(UsageRecord(OLD, "anthropic", "completion", "ok", prompt_tokens=2000,
                                  completion_tokens=100, cost_usd=0.25, tags=("chat",),
                                  time=now - 3 * 86400))
        ledger.record(UsageRecord(MINI, "openai", "completion", "LLMServerError",
                                  status_code=503, time=now - 86400))


@pytest.fixture
def report(make_client: Any, provider: FakeProvider, tmp_path: Path) -> dict[str, Any]:
    """The report written by the command, and ``usage --json`` of the same ledger."""
    db = tmp_path / "ledger.db"
    fill_ledger(make_client, provider, db)
    (tmp_path / "dewey.yaml").write_text(BUDGET, encoding="utf-8")
    env = cli_env(tmp_path, LITELLM_USAGE_DB=str(db), DEWEY_LLM_CONFIG=str(tmp_path / "dewey.yaml"))
    page = tmp_path / "report.html"
    written, everything, by_tag, by_user, *per_model = dewey_all(
        ["usage", "--html", str(page)], ["usage", "--json"], ["usage", "--by", "tag", "--json"],
        ["usage", "--by", "user", "--json"],
        *(["usage", "--by", "day", "--model", name, "--json"] for name in (MINI, BIG, OLD)),
        env=env, cwd=tmp_path)
    document = json.loads(ok(everything).stdout)
    return {"page": page, "stdout": ok(written).stdout, "json": document,
            "by_tag": json.loads(ok(by_tag).stdout)["by_tag"],
            "by_user": json.loads(ok(by_user).stdout)["by_user"],
            "by_day_and_model": {name: json.loads(ok(result).stdout)["by_day"]
                                 for name, result in zip((MINI, BIG, OLD), per_model, strict=True)}}


# --- tests ----------------------------------------------------------------------------------------

def table(dom: Node, key: str) -> list[dict[str, Any]]:
    """The rows of the page's table ``by-<key>``, from the exact figures of its cells."""
    rows = []
    for row in dom.one(id=f"by-{key}").walk():
        if row.tag == "tr" and "data-key" in row.attrs:
            values: dict[str, Any] = {"key": row.attrs["data-key"]}
            for cell in row.walk():
                if "data-field" in cell.attrs:
                    values[cell.attrs["data-field"]] = json.loads(cell.attrs["data-value"])
            rows.append(values)
    return rows


def ticks(dom: Node, chart: str, axis: str) -> list[str]:
    """The labels Plotly drew on an axis of a chart."""
    return sorted(text.text for tick in dom.one(id=chart).find(class_=f"{axis}tick")
                  for text in tick.walk() if text.tag == "text")


def read_as_html(dom: Node) -> list[Node]:
    """What Plotly drew from HTML in a chart's text: a bold or italic part, or a link."""
    return [node for chart in CHARTS for node in dom.one(id=chart).walk()
            if node.tag == "a" or (node.tag == "tspan" and any(
                style in node.attrs.get("style", "").replace(" ", "")
                for style in ("font-weight:bold", "font-style:italic")))]


def test_the_report_draws_every_chart_with_the_figures_of_usage_json(report: dict[str, Any]) -> None:
    document = report["json"]
    by_model = {row["key"]: row for row in document["by_model"]}
    assert set(by_model) == {MINI, BIG, OLD}
    mini = by_model[MINI]  # what the calls above did, as --json says
    assert (mini["errors"], mini["cache_hits"]) == (2, 1) and mini["saved_usd"] > 0
    assert report["stdout"].startswith(f"wrote {report['page']}: 7 calls, $")

    dom = rendered(report["page"])

    for chart in CHARTS:  # Plotly ran and drew each chart
        div = dom.one(id=chart)
        assert div.find(class_="main-svg"), chart
        traces = div.find(class_="trace")
        assert traces, chart
        drawn = [node for trace in traces for node in trace.walk() if node.tag == "path"
                 and node.attrs.get("d", "") not in ("", "M0,0Z")]  # Plotly's empty bar
        assert drawn, chart

    # Spend per day: one trace of bars per model, as many bars as --by day --model M has days.
    spend = dom.one(id="chart-spend")
    legend = [node.text for node in spend.find(class_="legendtext")]
    assert sorted(legend) == sorted(by_model)
    bars = sorted(len(trace.find(class_="point")) for trace in spend.find(class_="bars"))
    assert bars == sorted(len(days) for days in report["by_day_and_model"].values())
    assert "daily budget $0.50" in spend.all_text()
    cumulative = dom.one(id="chart-cumulative").all_text()
    assert "monthly budget $5.00" in cumulative and "total budget $50.00" in cumulative

    # Bars named by --json's keys: models with errors and retries, tags, users; MARKUP as
    # its characters, not read as HTML.
    assert ticks(dom, "chart-errors", "x") == sorted(by_model)
    assert ticks(dom, "chart-tag", "y") == sorted(row["key"] or "(no tag)" for row in report["by_tag"])
    assert ticks(dom, "chart-user", "y") == sorted(
        row["key"] or "(no user)" for row in report["by_user"])
    assert MARKUP in ticks(dom, "chart-tag", "y") and MARKUP in ticks(dom, "chart-user", "y")
    assert not read_as_html(dom)

    # The figures as text: the tables' cells and the JSON equal usage --json exactly.
    models = table(dom, "model")
    retries = {row["key"]: row["retries"] for row in models}
    assert retries == {MINI: 1, BIG: 0, OLD: 0}  # the 500 was retried once, at gpt-4o-mini
    assert models == document["by_model"]
    assert table(dom, "day") == document["by_day"]
    assert table(dom, "tag") == report["by_tag"]
    assert table(dom, "user") == report["by_user"]
    assert json.loads(dom.one(id="total-usd").attrs["data-value"]) == document["total_usd"]
    data = json.loads(dom.one(id="usage-data").text)
    assert {key: data[key] for key in document} == document
    assert (data["by_tag"], data["by_user"]) == (report["by_tag"], report["by_user"])
    assert data["by_day_and_model"] == report["by_day_and_model"]
    assert data["budget"] == {"daily_usd": 0.5, "monthly_usd": 5, "total_usd": 50}


def test_the_report_needs_no_network(report: dict[str, Any]) -> None:
    page = report["page"].read_text(encoding="utf-8")
    dom = parse(page)
    outside = [node.attrs for node in dom.walk()
               if any(node.attrs.get(name, "").startswith(("http:", "https:", "//"))
                      for name in ("src", "href", "data"))]
    assert outside == []
    scripts = [node for node in dom.walk() if node.tag == "script"]
    assert any("plotly.js" in script.text[:2000] for script in scripts)  # embedded, not fetched


def test_html_with_json_or_by_is_refused_and_a_missing_plotly_names_the_extra(
        tmp_path: Path) -> None:
    env = cli_env(tmp_path, LITELLM_USAGE_DB=str(tmp_path / "ledger.db"))
    both = dewey(["usage", "--html", "r.html", "--json"], env, tmp_path)
    assert "--html" in one_error_line(both) and not (tmp_path / "r.html").exists()
    # `sys.modules[name] = None` makes `import plotly` fail as if it were not installed.
    probe = ("import sys; sys.modules['plotly'] = None; from dewey.llm._cli import main; "
             "sys.exit(main(['usage', '--html', 'r.html']))")
    missing = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path, text=True,
                             capture_output=True, timeout=120, check=False)
    assert "pip install 'dewey-llm[report]'" in one_error_line(missing)
    assert not (tmp_path / "r.html").exists()


# --- --since: the cumulative lines start from the spend before it ---------------------------------

@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=needs_postgres)])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A usage_db setting: a SQLite file, or a PostgreSQL table of this test's own."""
    if request.param == "sqlite":
        return str(tmp_path / "usage.db")
    return f"{PG_URL}?table={request.getfixturevalue('pg_table')}"


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def translate(node: Node) -> tuple[float, float]:
    x, y = node.attrs["transform"].split("translate(")[1].split(")")[0].split(",")
    return float(x), float(y)


def drawn_lines(dom: Node, chart: str) -> dict[str, list[float]]:
    """The values a chart's lines are drawn at, by their legend's names: the height of each
    marker read against the labelled ticks of the dollar axis."""
    div = dom.one(id=chart)
    labels = [(float(text.text.replace("$", "")), translate(text)[1])
              for tick in div.find(class_="ytick") for text in tick.walk() if text.tag == "text"]
    (low, low_y), (high, high_y) = labels[0], labels[-1]
    # Markers are placed within the plot area, the ticks within the whole picture.
    top = translate(div.one(class_="overplot").children[0])[1]
    lines = [[low + (top + translate(point)[1] - low_y) * (high - low) / (high_y - low_y)
              for point in trace.find(class_="point")]
             for trace in div.find(class_="scatter") if "trace" in trace.attrs["class"].split()]
    return dict(zip([node.text for node in div.find(class_="legendtext")], lines, strict=True))


def test_since_starts_the_cumulative_lines_from_the_spend_before_it(
        where: str, tmp_path: Path) -> None:
    spends = [("2025-02-20T09:00", 1.0), ("2025-03-02T09:00", 0.5), ("2025-03-05T10:00", 0.25),
              ("2025-03-05T15:00", 0.125), ("2025-03-20T09:00", 0.0625),
              ("2025-04-02T09:00", 0.03125)]
    with open_ledger(where) as ledger:
        for index, (when, cost) in enumerate(spends):
            ledger.record(UsageRecord(MARKED if index == 4 else MINI, "openai", "completion", "ok",
                                      cost_usd=cost, time=utc(when), tags=(DATED[index % 3],)))
    env = cli_env(tmp_path, LITELLM_USAGE_DB=where)
    since, whole = tmp_path / "since.html", tmp_path / "whole.html"
    for result in dewey_all(["usage", "--since", "2025-03-05T12:00", "--html", str(since)],
                            ["usage", "--html", str(whole)], env=env, cwd=tmp_path):
        ok(result)

    # From 12:00 on 5 March: this month had $0.75 before it (two calls), and the
    # ledger $1.75 (one more in February), which the budgets count too.
    dom = rendered(since)
    data = json.loads(dom.one(id="usage-data").text)
    assert data["cumulative_start"] == {"month": 0.75, "total": 1.75}
    assert data["since"] == "2025-03-05T12:00:00+00:00"
    assert [row["key"] for row in data["by_day"]] == ["2025-03-05", "2025-03-20", "2025-04-02"]
    drawn = drawn_lines(dom, "chart-cumulative")
    assert drawn == {"month to date": pytest.approx([0.875, 0.9375, 0.03125], abs=0.01),
                     "total to date": pytest.approx([1.875, 1.9375, 1.96875], abs=0.01)}
    # Names as they are: a model's HTML is not read, and tags that look like dates are
    # names, not points in time.
    assert MARKED in [node.text for node in dom.one(id="chart-spend").find(class_="legendtext")]
    assert ticks(dom, "chart-errors", "x") == sorted([MINI, MARKED])
    assert ticks(dom, "chart-tag", "y") == sorted(DATED)
    assert not read_as_html(dom)

    # Without --since the lines start from 0 and end where the other report's do.
    dom = rendered(whole)
    assert json.loads(dom.one(id="usage-data").text)["cumulative_start"] == {
        "month": 0.0, "total": 0.0}
    assert drawn_lines(dom, "chart-cumulative") == {
        "this month": pytest.approx([1.0, 0.5, 0.875, 0.9375, 0.03125], abs=0.01),
        "whole report": pytest.approx([1.0, 1.5, 1.875, 1.9375, 1.96875], abs=0.01)}
