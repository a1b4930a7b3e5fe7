"""Running totals of the usage ledger, retention, ``dewey-llm usage --by``, and the SQLite
cache's size bound: what budgets and reports read once a ledger is large."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dewey.llm import LiteLLMClient
from dewey.llm._cache import SQLiteCache, open_cache
from dewey.llm._config import Budget, LiteLLMConfig
from dewey.llm._exceptions import LLMBudgetExceededError
from dewey.llm._usage import Ledger, LogEntry, SQLiteLedger, UsageRecord, check_budget, open_ledger
from tests.conftest import TEST_KEY
from tests.hidden_params import cache_hit
from tests.servers.fake_provider import FakeProvider
from tests.servers.postgres import PG_URL, needs_postgres
from tests.test_cli import cli_env, dewey, ok

SRC = str(Path(__file__).resolve().parents[1] / "src")
DAY = 86400.0


def usage(model: str = "gpt-test", cost: float = 0.0, when: float | None = None,
          **fields: Any) -> UsageRecord:
    values: dict[str, Any] = {"provider": "openai", "kind": "completion", "outcome": "ok"}
    values.update(fields)
    return UsageRecord(model=model, cost_usd=cost, time=time.time() if when is None else when,
                       **values)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=needs_postgres)])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A usage_db setting: a SQLite file, or a PostgreSQL table of this test's own."""
    if request.param == "sqlite":
        return str(tmp_path / "usage.db")
    return f"{PG_URL}?table={request.getfixturevalue('pg_table')}"


@pytest.fixture
def ledger(where: str) -> Iterator[Ledger]:
    opened = open_ledger(where)
    yield opened
    opened.close()


def rows_sql(ledger: Ledger, sql: str) -> list[tuple[Any, ...]]:
    """A query straight on the rows, bypassing the totals."""
    return ledger._query(sql.format(table=ledger._table), [])  # noqa: SLF001


def by_model_from_rows(ledger: Ledger) -> dict[str, tuple[int, float, int]]:
    rows = rows_sql(ledger, "SELECT model, COUNT(*), SUM(cost_usd), SUM(prompt_tokens) "
                            "FROM {table} GROUP BY model")
    return {model: (int(calls), round(float(cost), 9), int(tokens)) for model, calls, cost, tokens in rows}


def by_model_from_totals(ledger: Ledger) -> dict[str, tuple[int, float, int]]:
    return {s.key: (s.calls, round(s.cost_usd, 9), s.prompt_tokens) for s in ledger.summary()}


# --- totals equal the rows ----------------------------------------------------------------------

def test_totals_equal_the_rows_after_writes_from_threads(ledger: Ledger) -> None:
    def write(worker: int) -> None:
        for number in range(300):
            ledger.record(usage(f"model-{number % 3}", 0.001 * (worker + 1), prompt_tokens=number,
                                tags=(f"t{number % 2}",), user=f"user-{worker}"))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ledger.flush()
    expected = by_model_from_rows(ledger)
    assert sum(calls for calls, _, _ in expected.values()) == 1200
    assert by_model_from_totals(ledger) == expected
    assert ledger.spent() == pytest.approx(300 * 0.001 * (1 + 2 + 3 + 4))
    assert {s.key: s.calls for s in ledger.summary(by="user")} == {f"user-{n}": 300 for n in range(4)}
    assert {s.key: s.calls for s in ledger.summary(by="tag")} == {"t0": 600, "t1": 600}


WRITER = textwrap.dedent("""
    import sys
    from dewey.llm._usage import UsageRecord, open_ledger

    where, name = sys.argv[1:3]
    ledger = open_ledger(where)
    for number in range(200):
        ledger.record(UsageRecord(model=f"m{number % 4}", provider="test", kind="completion",
                                  outcome="ok", cost_usd=0.5, prompt_tokens=number,
                                  tags=(name, "shared"), user=name))
    ledger.close()
""")


def test_totals_equal_the_rows_after_writes_from_two_processes(where: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, where, f"proc-{n}"], env=env,
                                stderr=subprocess.PIPE, text=True) for n in (1, 2)]
    for writer in writers:
        _, errors = writer.communicate(timeout=60)
        assert writer.returncode == 0, errors
        assert "Traceback" not in errors, errors
    with open_ledger(where) as ledger:
        expected = by_model_from_rows(ledger)
        assert sum(calls for calls, _, _ in expected.values()) == 400
        assert by_model_from_totals(ledger) == expected
        assert ledger.spent() == pytest.approx(200.0)
        tags = {s.key: (s.calls, s.cost_usd) for s in ledger.summary(by="tag")}
        assert tags == {"shared": (400, 200.0), "proc-1": (200, 100.0), "proc-2": (200, 100.0)}


def test_a_part_day_since_adds_rows_to_whole_days(ledger: Ledger) -> None:
    midnight = (time.time() // DAY) * DAY
    ledger.record(usage("a", 1.0, midnight - DAY + 60, user="u"))  # yesterday, early: outside
    ledger.record(usage("a", 2.0, midnight - 600, user="u"))  # yesterday, late: inside
    ledger.record(usage("b", 4.0, midnight + 1, tags=("x", "y")))  # today
    ledger.flush()
    since = midnight - 3600
    assert ledger.spent(since) == 6.0
    assert ledger.spent(midnight) == 4.0
    assert ledger.spent() == 7.0
    assert {s.key: s.cost_usd for s in ledger.summary(by="model", since=since)} == {"a": 2.0, "b": 4.0}
    assert {s.key: s.cost_usd for s in ledger.summary(by="user", since=since)} == {"u": 2.0, "": 4.0}
    assert {s.key: s.cost_usd for s in ledger.summary(by="tag", since=since)} == {
        "": 2.0, "x": 4.0, "y": 4.0}
    assert [s.cost_usd for s in ledger.summary(by="day", since=since)] == [2.0, 4.0]


# --- retention ---------------------------------------------------------------------------------

def wait_until_rows(ledger: Ledger, count: int) -> int:
    """Rows left, once the background retention pass has brought them to ``count``
    (or after a generous wait: the assertion then shows what is left)."""
    deadline = time.monotonic() + 30
    left = -1
    while time.monotonic() < deadline:
        left = int(rows_sql(ledger, "SELECT COUNT(*) FROM {table}")[0][0])
        if left == count:
            break
        time.sleep(0.05)
    return left


def test_retention_deletes_old_rows_and_keeps_their_totals(where: str) -> None:
    now = time.time()
    with open_ledger(where, retention_days=2) as ledger:
        for days_ago in (10, 5, 3):
            ledger.record(usage("old", 1.0, now - days_ago * DAY, tags=("batch",), user="ann"))
        ledger.record(usage("new", 0.5, now - 3600, tags=("batch",), user="bob"))
        for days_ago in (10, 0):  # the prompt log goes with the rows
            ledger.record(LogEntry(f"call-{days_ago}", "m", [], "text", time=now - days_ago * DAY))
        ledger.flush()
        assert wait_until_rows(ledger, 1) == 1
        assert [r.model for r in ledger.records()] == ["new"]
        assert [r.call_id for r in ledger.responses()] == ["call-0"]
        # Folded into the totals: budgets and reports still count the deleted rows.
        assert ledger.spent() == 3.5
        assert {s.key: (s.calls, s.cost_usd) for s in ledger.summary()} == {
            "old": (3, 3.0), "new": (1, 0.5)}
        assert {s.key: s.calls for s in ledger.summary(by="tag")} == {"batch": 4}
        assert {s.key: s.cost_usd for s in ledger.summary(by="user")} == {"ann": 3.0, "bob": 0.5}
        assert len(ledger.summary(by="day")) == 4
        with pytest.raises(LLMBudgetExceededError, match=r"total budget spent: \$3\.50"):
            check_budget(ledger, Budget(total_usd=3.0))
        check_budget(ledger, Budget(daily_usd=1.0, total_usd=4.0))


def test_retention_deletes_in_batches_until_done(tmp_path: Path) -> None:
    import dewey.llm._usage._ledger as ledger_module

    old = time.time() - 30 * DAY
    with SQLiteLedger(tmp_path / "usage.db", retention_days=7) as ledger:
        batch = ledger_module.PRUNE_BATCH
        ledger_module.PRUNE_BATCH = 7  # several passes, each one its own short transaction
        try:
            for number in range(30):
                ledger.record(usage(cost=0.1, when=old + number))
            ledger.record(usage(cost=0.1))
            ledger.flush()
            assert wait_until_rows(ledger, 1) == 1
        finally:
            ledger_module.PRUNE_BATCH = batch
        assert ledger.spent() == pytest.approx(3.1)


# --- the budget check reads the totals ------------------------------------------------------------

def test_budget_counts_rows_deleted_behind_its_back(ledger: Ledger) -> None:
    ledger.record(usage(cost=2.0))
    ledger.record(usage(cost=2.0))
    ledger.flush()
    ledger._execute(f"DELETE FROM {ledger._table}", [])  # noqa: SLF001 - as retention would
    assert rows_sql(ledger, "SELECT COUNT(*) FROM {table}")[0][0] == 0
    for budget in (Budget(daily_usd=3.0), Budget(monthly_usd=3.0), Budget(total_usd=3.0)):
        with pytest.raises(LLMBudgetExceededError, match=r"\$4\.00"):
            check_budget(ledger, budget)
    # Reservations still count on top of the totals.
    hold = check_budget(ledger, Budget(total_usd=5.0), reserve=0.75)
    assert hold is not None
    with pytest.raises(LLMBudgetExceededError, match=r"\$4\.75"):
        check_budget(ledger, Budget(total_usd=4.5))
    ledger.release(hold)
    check_budget(ledger, Budget(total_usd=4.5))


# --- migration of a ledger written before totals ---------------------------------------------------

OLD_SQLITE = """
CREATE TABLE usage (
    id INTEGER PRIMARY KEY, "time" REAL NOT NULL, model TEXT NOT NULL, provider TEXT,
    kind TEXT NOT NULL, outcome TEXT NOT NULL, status_code INTEGER, attempt INTEGER,
    prompt_tokens INTEGER, completion_tokens INTEGER, cached_tokens INTEGER, cost_usd REAL,
    saved_usd REAL, latency_s REAL, cache_hit INTEGER, tags TEXT, user_label TEXT
);
CREATE INDEX usage_time_idx ON usage ("time");
CREATE TABLE usage_reservations (id TEXT PRIMARY KEY, cost_usd REAL, expires REAL);
"""

OLD_POSTGRES = """
CREATE TABLE {table} (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    "time" DOUBLE PRECISION NOT NULL, model TEXT NOT NULL, provider TEXT,
    kind TEXT NOT NULL, outcome TEXT NOT NULL, status_code BIGINT, attempt BIGINT,
    prompt_tokens BIGINT, completion_tokens BIGINT, cached_tokens BIGINT,
    cost_usd DOUBLE PRECISION, saved_usd DOUBLE PRECISION, latency_s DOUBLE PRECISION,
    cache_hit INTEGER, tags TEXT, user_label TEXT
)
"""

OLD_ROWS = [  # time, model, outcome, prompt, completion, cost, saved, cache_hit, tags, user
    (1_700_000_000.0, "gpt-4o", "ok", 100, 10, 1.25, 0.0, 0, '["eval", "batch"]', "ann"),
    (1_700_000_100.0, "gpt-4o", "LLMRateLimitError", 0, 0, 0.0, 0.0, 0, "[]", None),
    (1_700_090_000.0, "claude", "ok", 50, 5, 0.5, 0.25, 1, '["eval"]', "bob"),
    (1_700_090_001.0, "claude", "ok", 7, 1, 0.125, 0.0, 0, '["eval"]', "ann"),
]


def write_old_ledger(where: str) -> None:
    insert = ("INSERT INTO {table} (\"time\", model, provider, kind, outcome, prompt_tokens, "
              "completion_tokens, cost_usd, saved_usd, cache_hit, tags, user_label) "
              "VALUES ({marks})")
    if where.startswith("postgresql"):
        import psycopg

        url, table = where.split("?table=")
        with psycopg.connect(url) as connection:
            connection.execute(OLD_POSTGRES.format(table=table))
            connection.execute(f"CREATE TABLE {table}_reservations "
                               "(id TEXT PRIMARY KEY, cost_usd DOUBLE PRECISION, expires DOUBLE PRECISION)")
            sql = insert.format(table=table, marks=", ".join(["%s"] * 12))
            connection.cursor().executemany(sql, [(t, m, "p", "completion", *rest) for t, m, *rest in OLD_ROWS])
        return
    db = sqlite3.connect(where)
    db.executescript(OLD_SQLITE)
    db.executemany(insert.format(table="usage", marks=", ".join(["?"] * 12)),
                   [(t, m, "p", "completion", *rest) for t, m, *rest in OLD_ROWS])
    db.commit()
    db.close()


def test_an_old_ledger_gets_its_totals_built_on_first_open(where: str,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    write_old_ledger(where)
    with open_ledger(where) as reader:  # a read-only user first, as `dewey-llm usage` is
        assert reader.spent() == 1.875
        assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
            f"usage ledger {reader.location}: building its running totals from the rows an "
            "earlier version wrote (once; this can take minutes for millions of rows)"]
        assert [(s.key, s.calls, s.errors, s.cache_hits, s.prompt_tokens, s.cost_usd, s.saved_usd)
                for s in reader.summary()] == [("gpt-4o", 2, 1, 0, 100, 1.25, 0.0),
                                               ("claude", 2, 0, 1, 57, 0.625, 0.25)]
        assert [(s.key, s.calls) for s in reader.summary(by="day")] == [
            ("2023-11-14", 2), ("2023-11-15", 2)]
        assert {s.key: (s.calls, s.cost_usd) for s in reader.summary(by="user")} == {
            "ann": (2, 1.375), "bob": (1, 0.5), "": (1, 0.0)}
        assert {s.key: s.calls for s in reader.summary(by="tag")} == {"eval": 3, "batch": 1, "": 1}
        # The prompt log came later: its rows read as none, not as an error.
        assert [r.call_id for r in reader.records()] == [None] * 4 and reader.responses() == []
    with open_ledger(where) as writer:  # built once: a second open adds nothing
        writer.record(usage("claude", 1.0, 1_700_090_002.0, tags=("eval",), user="bob",
                            call_id="call-1"))
        writer.record(LogEntry("call-1", "claude", [{"role": "user", "content": "hi"}], "hello"))
        writer.flush()
        [logged] = writer.responses()
        assert (logged.prompt, logged.response, logged.cost_usd) == ("hi", "hello", 1.0)
        assert writer.spent() == 2.875
        assert {s.key: s.calls for s in writer.summary(by="tag")}["eval"] == 4
        assert by_model_from_totals(writer) == by_model_from_rows(writer)


# --- dewey-llm usage --by -------------------------------------------------------------------------

def test_usage_by_tag_and_by_user_show_what_was_recorded(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    with SQLiteLedger(db) as ledger:
        ledger.record(usage("gpt-4o", 1.5, tags=("search", "beta"), user="ann", prompt_tokens=10))
        ledger.record(usage("gpt-4o", 0.25, tags=("search",), user="bob", prompt_tokens=20))
        ledger.record(usage("claude", 2.0, user="ann", prompt_tokens=30))
    env = cli_env(tmp_path, LITELLM_USAGE_DB=str(db))
    by_tag = json.loads(ok(dewey(["usage", "--by", "tag", "--json"], env, tmp_path)).stdout)
    assert by_tag["total_usd"] == 3.75  # each call once, though tags count it twice
    assert [(r["key"], r["calls"], r["cost_usd"], r["prompt_tokens"]) for r in by_tag["by_tag"]] == [
        ("", 1, 2.0, 30), ("search", 2, 1.75, 30), ("beta", 1, 1.5, 10)]
    by_user = json.loads(ok(dewey(["usage", "--by", "user", "--json"], env, tmp_path)).stdout)
    assert [(r["key"], r["calls"], r["cost_usd"]) for r in by_user["by_user"]] == [
        ("ann", 2, 3.5), ("bob", 1, 0.25)]
    # That table alone (no by_day or by_model), and no model went unpriced.
    assert set(by_user) == {"by_user", "total_usd", "unpriced"} and by_user["unpriced"] == []
    table = ok(dewey(["usage", "--by", "tag"], env, tmp_path)).stdout
    assert "Spend by tag" in table and "(no tag)" in table and "$1.75" in table
    assert "counts under each" in table
    table = ok(dewey(["usage", "--by", "user", "--model", "claude"], env, tmp_path)).stdout
    assert "ann" in table and "bob" not in table and "$2.00" in table
    wrong = dewey(["usage", "--by", "week"], env, tmp_path)
    assert wrong.returncode != 0 and "tag" in wrong.stderr


# --- the SQLite response cache's bound ----------------------------------------------------------

def test_cache_evicts_the_least_recently_used_first(tmp_path: Path) -> None:
    cache = SQLiteCache(tmp_path / "cache.db", max_entries=3)
    try:
        for key in ("a", "b", "c"):
            cache.set(key, {"v": key})
        assert cache.get("a") == {"v": "a"}  # a is now used more recently than b
        assert cache.get_many(["c"]) == {"c": {"v": "c"}}
        cache.set("d", {"v": "d"})
        assert cache.get("b") is None
        assert {key: cache.get(key) is not None for key in "acd"} == {"a": True, "c": True, "d": True}
        cache.set("e", {"v": "e"})  # a, c and d were all read after b was evicted: a is oldest
        assert cache.get("a") is None
        assert cache.stats().entries == 3
    finally:
        cache.close()


def test_cache_bound_comes_from_the_config_and_upgrades_an_old_file(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, "
                "created REAL, expires REAL)")
    old.executemany("INSERT INTO responses VALUES (?, ?, ?, NULL)",
                    [(f"k{n}", json.dumps({"n": n}), 1000.0 + n) for n in range(5)])
    old.commit()
    old.close()
    config = LiteLLMConfig(model="openai/gpt-4o-mini", cache="sqlite", cache_url=str(path),
                           cache_max_entries=4)
    cache = open_cache(config.cache, config.cache_url, max_entries=config.cache_max_entries)
    assert isinstance(cache, SQLiteCache)
    try:
        assert cache.get("k0") == {"n": 0}  # the oldest entry, used again
        cache.set("new", {"n": 99})
        left = sorted(row[0] for row in sqlite3.connect(path).execute("SELECT key FROM responses"))
        assert left == ["k0", "k3", "k4", "new"]
    finally:
        cache.close()


def test_the_client_keeps_its_sqlite_cache_within_cache_max_entries(provider: FakeProvider,
                                                                    tmp_path: Path) -> None:
    path = tmp_path / "bounded.db"
    with LiteLLMClient(model="openai/gpt-4o-mini", api_base=provider.openai_base, api_key=TEST_KEY,
                       cache="sqlite", cache_url=str(path), cache_max_entries=3) as client:
        for n in range(12):
            client.generate_completion(f"question {n}")
        answered = client.generate_completion("question 11")  # the newest is still there
    assert cache_hit(answered) is True
    assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM responses").fetchone()[0] <= 3
