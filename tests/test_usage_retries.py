"""Retries in the usage ledger's running totals: counted as rows are written, kept when
retention deletes the rows, shown by ``dewey-llm usage`` (table, ``--json``, ``--html``),
and counted from the rows once in a ledger an earlier version wrote."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from dewey.llm._usage import Ledger, SQLiteLedger, open_ledger
from tests.servers.fake_provider import FakeProvider, Reply
from tests.servers.postgres import PG_URL, needs_postgres
from tests.test_cli import cli_env, dewey_all, ok
from tests.test_usage_html import parse
from tests.test_usage_html import table as html_table
from tests.test_usage_totals import DAY, rows_sql, usage, wait_until_rows, write_old_ledger

MINI = "openai/gpt-4o-mini"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=needs_postgres)])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A usage_db setting: a SQLite file, or a PostgreSQL table of this test's own."""
    if request.param == "sqlite":
        return str(tmp_path / "usage.db")
    return f"{PG_URL}?table={request.getfixturevalue('pg_table')}"


def retries(ledger: Ledger, by: str = "model") -> dict[str, int]:
    return {row.key: row.retries for row in ledger.summary(by=by)}


def attempts(ledger: Ledger) -> dict[str, tuple[int, int, int]]:
    """(calls, errors, retries) per model: every attempt is a call."""
    return {row.key: (row.calls, row.errors, row.retries) for row in ledger.summary()}


def cells(table: str, header: str) -> dict[str, str]:
    """The column ``header`` of a table ``dewey-llm usage`` printed, by its rows' keys."""
    rows = [[cell.strip() for cell in line.replace("┃", "│").split("│")]
            for line in table.splitlines() if "│" in line or "┃" in line]
    column = next(row for row in rows if header in row).index(header)
    return {row[1]: row[column] for row in rows if len(row) > column and row[column] != header}


# --- counted as rows are written, kept by retention ------------------------------------------------

def test_retries_survive_retention_and_show_in_every_report(
        where: str, make_client: Any, provider: FakeProvider, tmp_path: Path) -> None:
    client = make_client(usage_db=where, max_retries=2, fallback_models=["openai/gpt-4o"])
    provider.script("gpt-4o-mini", Reply.error(500), Reply.error(503), Reply.ok("a"))
    client.generate_completion("retried twice", tags=["search"], user="ann")
    provider.script("gpt-4o-mini", Reply.error(500), Reply.error(500), Reply.error(500))
    client.generate_completion("falls back")  # gpt-4o's first attempt is not a retry
    client.close()
    assert len(provider.requests_for("gpt-4o-mini")) == 6

    now = time.time()
    with open_ledger(where, retention_days=2) as ledger:
        for attempt in (1, 2, 3):  # a call ten days ago, its first two attempts failed
            ledger.record(usage("old", 0.1, now - 10 * DAY + attempt, attempt=attempt,
                                outcome="ok" if attempt == 3 else "LLMServerError",
                                tags=("batch",), user="bob"))
        ledger.flush()
        assert wait_until_rows(ledger, 7) == 7  # the old call's rows are deleted
        assert rows_sql(ledger, "SELECT COUNT(*) FROM {table} WHERE model = 'old'")[0][0] == 0
        assert attempts(ledger) == {MINI: (6, 5, 4), "openai/gpt-4o": (1, 0, 0), "old": (3, 2, 2)}
        assert retries(ledger, "tag") == {"search": 2, "": 2, "batch": 2}
        assert retries(ledger, "user") == {"ann": 2, "": 2, "bob": 2}
        assert sum(retries(ledger, "day").values()) == 6
        # A --since starting mid-day reads that day's rows: their retries count too.
        assert {row.key: row.retries for row in ledger.summary(since=now - 3600)} == {
            MINI: 4, "openai/gpt-4o": 0}

    env = cli_env(tmp_path, LITELLM_USAGE_DB=where)
    page = tmp_path / "report.html"
    as_json, as_table, as_html = dewey_all(["usage", "--json"], ["usage", "--by", "model"],
                                           ["usage", "--html", str(page)], env=env, cwd=tmp_path)
    document = json.loads(ok(as_json).stdout)
    assert {row["key"]: row["retries"] for row in document["by_model"]} == {
        MINI: 4, "openai/gpt-4o": 0, "old": 2}
    assert sum(row["retries"] for row in document["by_day"]) == 6
    assert cells(ok(as_table).stdout, "Retries") == {MINI: "4", "openai/gpt-4o": "0", "old": "2",
                                                     "total": "6"}
    ok(as_html)
    dom = parse(page.read_text(encoding="utf-8"))  # the tables are written, not scripted
    assert html_table(dom, "model") == document["by_model"]
    assert "usage_retention_days" not in page.read_text(encoding="utf-8")


# --- ledgers written by earlier versions ----------------------------------------------------------

OLD_KEYS = {"daily": "day, model", "totals": "day, model, user_label", "tags": "day, model, tag"}


def run_sql(where: str, statements: list[str]) -> None:
    """Run ``statements`` (``{table}``: the ledger's table) straight on its storage, in one
    transaction, without opening the ledger (which would bring its tables up to date)."""
    if where.startswith("postgresql"):
        import psycopg

        url, table = where.split("?table=")
        with psycopg.connect(url) as postgres:  # commits at the end of the block
            for statement in statements:
                postgres.execute(statement.format(table=table))
        return
    with sqlite3.connect(where) as sqlite:  # commits at the end of the block, but stays open
        for statement in statements:
            sqlite.execute(statement.format(table="usage"))
    sqlite.close()


def drop_retries_from_totals(where: str) -> None:
    """Give the totals tables the schema of the version before retries: the same tables,
    keys and figures, without the ``retries`` column."""
    postgres = where.startswith("postgresql")
    integer, real = ("BIGINT", "DOUBLE PRECISION") if postgres else ("INTEGER", "REAL")
    measures = ("calls", "errors", "cache_hits", "prompt_tokens", "completion_tokens",
                "cost_usd", "saved_usd")
    statements = []
    for suffix, keys in OLD_KEYS.items():
        name = f"{{table}}_{suffix}"
        columns = ", ".join(f"{key} {integer if key == 'day' else 'TEXT'} NOT NULL"
                            for key in keys.split(", "))
        numbers = ", ".join(f"{m} {real if m.endswith('_usd') else integer} NOT NULL DEFAULT 0"
                            for m in measures)
        statements += [
            f"CREATE TABLE {name}_old ({columns}, {numbers}, PRIMARY KEY ({keys}))",
            f"INSERT INTO {name}_old SELECT {keys}, {', '.join(measures)} FROM {name}",
            f"DROP TABLE {name}", f"ALTER TABLE {name}_old RENAME TO {name}"]
    run_sql(where, statements)


def test_totals_without_retries_get_them_from_their_rows_once(
        where: str, caplog: pytest.LogCaptureFixture) -> None:
    day = 1_700_000_000.0
    with open_ledger(where) as ledger:
        ledger.record(usage("gpt-4o", 0.0, day, outcome="LLMServerError", tags=("eval",), user="ann"))
        ledger.record(usage("gpt-4o", 1.0, day + 1, attempt=2, tags=("eval",), user="ann"))
        ledger.record(usage("claude", 0.5, day + 2, attempt=3, user="bob"))
        ledger.record(usage("claude", 0.25, day - 5 * DAY, attempt=2))
        ledger.flush()
        # Deleted by retention before the upgrade: counted in the totals, its retry lost.
        ledger._execute(f'DELETE FROM {ledger._table} WHERE "time" < {day - DAY}', [])  # noqa: SLF001
    drop_retries_from_totals(where)

    with open_ledger(where) as reader:  # a read-only user first, as `dewey-llm usage` is
        assert attempts(reader) == {"gpt-4o": (2, 1, 1), "claude": (2, 0, 1)}
        assert retries(reader, "tag") == {"eval": 1, "": 1}
        assert retries(reader, "user") == {"ann": 1, "bob": 1, "": 0}
        assert retries(reader, "day") == {"2023-11-14": 2, "2023-11-09": 0}
        assert reader.spent() == 1.75
        assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
            f"usage ledger {reader.location}: counting the retries in its running totals from "
            "the rows an earlier version wrote (once; this can take minutes for millions of rows)"]
    with open_ledger(where) as writer:  # counted once: a second open adds only new retries
        writer.record(usage("claude", 0.5, day + 3, attempt=2, user="bob"))
        writer.flush()
        assert attempts(writer) == {"gpt-4o": (2, 1, 1), "claude": (3, 0, 2)}
        assert retries(writer, "user") == {"ann": 1, "bob": 2, "": 0}


def test_an_old_ledger_without_totals_gets_its_retries_with_them(where: str) -> None:
    write_old_ledger(where)  # rows only, as the version before running totals wrote them
    run_sql(where, ["UPDATE {table} SET attempt = 2 WHERE model = 'claude' AND user_label = 'ann'"])
    with open_ledger(where) as ledger:
        assert {row.key: (row.calls, row.retries) for row in ledger.summary()} == {
            "gpt-4o": (2, 0), "claude": (2, 1)}
        assert retries(ledger, "tag") == {"eval": 1, "batch": 0, "": 0}


def test_reading_while_the_writer_creates_the_file_never_waits_for_it(tmp_path: Path) -> None:
    # The reader brings a file it sees half created up to date (BEGIN IMMEDIATE) while
    # holding the commit lock; the writer, having just finished, holds the write lock
    # for its first batch and waits for that commit lock.  Waiting on the write lock
    # deadlocked them (500 s, then "database is locked"); the reader looks again instead.
    for trial in range(20):
        with SQLiteLedger(tmp_path / f"{trial}" / "usage.db") as ledger:
            ledger.record(usage(cost=1.0))
            reads_until = time.monotonic() + 0.3  # past the writer's first commit
            while time.monotonic() < reads_until:
                assert ledger.spent() == 1.0
            assert [row.calls for row in ledger.summary()] == [1]
