"""The usage ledger (SQLite and PostgreSQL), budgets, and the ``dewey-llm usage`` report."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from rich.console import Console

import dewey.llm._usage._ledger as usage_module
from dewey.llm._config import Budget
from dewey.llm._exceptions import LLMBudgetExceededError, LLMConfigError
from dewey.llm._usage import (
    Ledger,
    LedgerUnavailableError,
    LogEntry,
    PostgresLedger,
    SQLiteLedger,
    UsageRecord,
    UsageSummary,
    check_budget,
    default_ledger_path,
    mask_url,
    open_ledger,
    parse_since,
    render_usage,
)
from tests.servers.postgres import DOWN_PG_URL, PG_URL, needs_postgres

SRC = str(Path(__file__).resolve().parents[1] / "src")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=timezone.utc).timestamp()


NOW = utc(2026, 11, 15, 12, 0)  # all budget and summary tests use this "now"


def usage(model: str = "gpt-test", cost: float = 0.0, when: float = NOW,
          **fields: object) -> UsageRecord:
    values: dict[str, object] = {"provider": "openai", "kind": "completion", "outcome": "ok"}
    values.update(fields)
    return UsageRecord(model=model, cost_usd=cost, time=when, **values)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=needs_postgres)])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "sqlite":
        opened: Ledger = open_ledger(str(tmp_path / "data" / "usage.db"))
    else:
        opened = PostgresLedger(PG_URL, table=request.getfixturevalue("pg_table"))
    yield opened
    opened.close()


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "dewey.llm" and r.levelno == logging.WARNING]


# --- writing and reading back -----------------------------------------------------------------

def test_records_round_trip(ledger: Ledger) -> None:
    first = usage("gpt-4o", 0.0125, NOW - 60, prompt_tokens=100, completion_tokens=20,
                  cached_tokens=5, latency_s=1.5, status_code=200, tags=("batch", "eval"),
                  user="alice")
    second = usage("claude-3", 0.0, NOW, provider=None, kind="stream",
                   outcome="LLMRateLimitError", status_code=429, attempt=2)
    third = usage("gpt-4o", 0.0, NOW + 1, kind="embedding", cache_hit=True, saved_usd=0.01)
    for item in (first, second, third):
        ledger.record(item)
    ledger.flush()

    assert ledger.records() == [third, second, first]  # newest first, every field kept
    assert ledger.records(model="gpt-4o", since=NOW - 30) == [third]
    assert ledger.records(limit=1) == [third]
    assert ledger.spent() == pytest.approx(0.0125)


def test_sqlite_file_is_created_in_wal_mode_with_the_documented_table(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "usage.db"
    with SQLiteLedger(path) as ledger:
        ledger.record(usage())
        ledger.flush()
    assert ledger.location == str(path)
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        columns = [row[1] for row in connection.execute("PRAGMA table_info(usage)")]
        indexes = [row[1] for row in connection.execute("PRAGMA index_list(usage)")]
    assert columns == ["id", "time", "model", "provider", "kind", "outcome", "status_code",
                       "attempt", "prompt_tokens", "completion_tokens", "cached_tokens",
                       "cost_usd", "saved_usd", "latency_s", "cache_hit", "tags", "user_label",
                       "call_id"]
    assert "usage_time_idx" in indexes and "usage_call_idx" in indexes


def test_reading_a_ledger_that_does_not_exist_yet_creates_nothing(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "missing" / "usage.db")
    assert ledger.spent() == 0.0
    assert ledger.summary() == []
    assert not (tmp_path / "missing").exists()


def test_spent_counts_records_still_queued_exactly_once(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "usage.db")
    gate = threading.Event()
    # Slow the writer down to hold records in the queue: no public way to catch them there.
    write = ledger._write  # noqa: SLF001 - see above

    def slow_write(rows: list[tuple[object, ...]], settled: list[str],
                   logs: list[tuple[object, ...]]) -> None:
        gate.wait(5)
        write(rows, settled, logs)

    ledger._write = slow_write  # type: ignore[method-assign]  # noqa: SLF001
    for _ in range(4):
        ledger.record(usage(cost=0.5))
    assert ledger.spent() == pytest.approx(2.0)  # nothing written yet
    gate.set()
    ledger.flush()
    assert ledger.spent() == pytest.approx(2.0)  # written now, not counted twice
    ledger.close()


def test_spent_never_counts_a_batch_twice_or_misses_it_while_writing(ledger: Ledger) -> None:
    if isinstance(ledger, PostgresLedger):
        ledger._spent_ttl = 0.0  # noqa: SLF001 - query the database every time, to catch the race
    recorded = 0

    def write() -> None:
        nonlocal recorded
        for number in range(1500):
            ledger.record(usage(cost=1.0))
            recorded += 1
            if number % 100 == 0:
                time.sleep(0.002)  # let batches of different sizes form

    writer = threading.Thread(target=write)
    writer.start()
    seen = []
    while writer.is_alive():
        before = recorded
        seen.append((before, ledger.spent()))
    writer.join()
    ledger.flush()
    assert ledger.spent() == 1500.0
    assert all(before <= spent <= 1500 for before, spent in seen)
    assert [spent for _, spent in seen] == sorted(spent for _, spent in seen)


def test_garbage_costs_cannot_disable_budgets(tmp_path: Path) -> None:
    with SQLiteLedger(tmp_path / "usage.db") as ledger:
        ledger.record(usage(cost=float("nan")))
        ledger.record(usage(cost=None))  # type: ignore[arg-type]
        ledger.record(usage(cost=1.0, prompt_tokens=10**30))
        assert ledger.spent() == pytest.approx(1.0)
        ledger.flush()
        assert ledger.spent() == pytest.approx(1.0)
        assert len(ledger.records()) == 3


def test_record_after_close_is_ignored(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "usage.db")
    ledger.close()
    ledger.record(usage(cost=1.0))
    assert ledger.spent() == 0.0


# --- storage down -----------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["postgres", "sqlite"])
def test_record_never_blocks_and_warns_once_when_storage_is_down(
    where: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dewey.llm")
    if where == "postgres":
        ledger: Ledger = open_ledger(DOWN_PG_URL)
    else:
        (tmp_path / "a-file").write_text("not a directory")
        ledger = open_ledger(str(tmp_path / "a-file" / "usage.db"))

    for _ in range(200):  # what record() costs meanwhile: bench/bench_micro.py
        ledger.record(usage(cost=0.01))
    ledger.flush(timeout=5)
    for _ in range(50):
        ledger.record(usage(cost=0.01))
    ledger.flush(timeout=5)

    warnings = warnings_of(caplog)
    assert len(warnings) == 1, warnings
    assert "unavailable" in warnings[0] and ledger.location in warnings[0]
    ledger.close()


def test_records_kept_while_down_are_written_when_storage_comes_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(usage_module, "_MAX_BACKOFF", 0.05)
    caplog.set_level(logging.INFO, logger="dewey.llm")
    blocker = tmp_path / "ledger"
    blocker.write_text("in the way")
    ledger = SQLiteLedger(blocker / "usage.db")
    for _ in range(3):
        ledger.record(usage(cost=1.0))
    ledger.flush()
    assert len(warnings_of(caplog)) == 1
    assert ledger.spent() == pytest.approx(3.0)  # kept in memory, still counted
    # The prompt log's texts are not: they may be large, and no budget needs them.
    ledger.record(LogEntry("while-down", "m", [{"role": "user", "content": "hi"}], "hello"))

    blocker.unlink()  # storage is back
    deadline = time.monotonic() + 5
    while not any("available again" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, "the records were never written"
        time.sleep(0.02)
    assert len(ledger.records()) == 3
    assert ledger.spent() == pytest.approx(3.0)
    ledger.record(LogEntry("after", "m", [{"role": "user", "content": "hi"}], "hello"))
    assert [logged.call_id for logged in ledger.responses()] == ["after"]
    ledger.close()


def test_a_forked_child_records_through_its_own_writer(tmp_path: Path) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    ledger = SQLiteLedger(tmp_path / "usage.db")
    ledger.record(usage(cost=1.0))
    ledger.flush()
    pid = os.fork()
    if pid == 0:  # the child: record, flush, and leave without running pytest's cleanup
        try:
            ledger.record(usage(cost=2.0))
            ledger.flush()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert ledger.spent() == pytest.approx(3.0)
    ledger.close()


def test_budget_check_counts_own_spend_when_the_ledger_cannot_be_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="dewey.llm")
    ledger = open_ledger(DOWN_PG_URL)
    with pytest.raises(LedgerUnavailableError, match=r"127\.0\.0\.1"):
        ledger.spent()
    for _ in range(3):
        check_budget(ledger, Budget(daily_usd=1.0, total_usd=1.0))  # nothing spent yet
    warnings = warnings_of(caplog)
    assert len(warnings) == 1 and "budget" in warnings[0] and "own spend" in warnings[0]
    ledger.record(usage(cost=1.0, when=time.time()))  # known here although never stored
    with pytest.raises(LLMBudgetExceededError, match=r"daily budget spent: \$1\.00"):
        check_budget(ledger, Budget(daily_usd=1.0))
    assert len(warnings_of(caplog)) == 1
    ledger.close()


def test_a_full_queue_drops_records_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dewey.llm")
    (tmp_path / "a-file").write_text("")
    ledger = SQLiteLedger(tmp_path / "a-file" / "usage.db", max_pending=5)
    for _ in range(20):
        ledger.record(usage(cost=1.0))
    ledger.flush()
    assert ledger.spent() == pytest.approx(5.0)  # what is kept still counts for budgets
    assert sum("dropped" in message for message in warnings_of(caplog)) == 1
    ledger.close()


# --- summaries and budgets --------------------------------------------------------------------

def fill(ledger: Ledger) -> None:
    """Last month $10, yesterday $3, today $1 + an error + a cache hit."""
    ledger.record(usage("gpt-4o", 10.0, utc(2026, 10, 20, 8), prompt_tokens=1000))
    ledger.record(usage("gpt-4o", 3.0, utc(2026, 11, 14, 23, 59), prompt_tokens=300,
                        completion_tokens=30))
    ledger.record(usage("claude-3", 1.0, utc(2026, 11, 15, 0, 1), prompt_tokens=100))
    ledger.record(usage("claude-3", 0.0, utc(2026, 11, 15, 9), outcome="LLMServerError",
                        status_code=500))
    ledger.record(usage("claude-3", 0.0, utc(2026, 11, 15, 10), cache_hit=True, saved_usd=0.5))


def test_summary_by_model_and_by_day(ledger: Ledger) -> None:
    fill(ledger)
    assert ledger.summary(by="model") == [
        UsageSummary("gpt-4o", 2, 0, 0, 1300, 30, 13.0, 0.0),
        UsageSummary("claude-3", 3, 1, 1, 100, 0, 1.0, 0.5),
    ]
    assert ledger.summary(by="day") == [
        UsageSummary("2026-10-20", 1, 0, 0, 1000, 0, 10.0, 0.0),
        UsageSummary("2026-11-14", 1, 0, 0, 300, 30, 3.0, 0.0),
        UsageSummary("2026-11-15", 3, 1, 1, 100, 0, 1.0, 0.5),
    ]
    assert [s.key for s in ledger.summary(by="day", model="gpt-4o")] == ["2026-10-20", "2026-11-14"]
    assert ledger.summary(since=utc(2026, 11, 1), model="gpt-4o") == [
        UsageSummary("gpt-4o", 1, 0, 0, 300, 30, 3.0, 0.0)]
    with pytest.raises(LLMConfigError, match="by='day'"):
        ledger.summary(by="week")


def test_spent_since(ledger: Ledger) -> None:
    fill(ledger)
    assert ledger.spent() == pytest.approx(14.0)
    assert ledger.spent(utc(2026, 11, 1)) == pytest.approx(4.0)
    assert ledger.spent(utc(2026, 11, 15)) == pytest.approx(1.0)
    assert ledger.spent(utc(2026, 11, 16)) == 0.0


def test_check_budget_daily_monthly_total(ledger: Ledger) -> None:
    fill(ledger)  # today $1, this month $4, total $14
    check_budget(ledger, Budget(daily_usd=1.5, monthly_usd=4.5, total_usd=14.5), now=NOW)
    check_budget(ledger, Budget(), now=NOW)

    with pytest.raises(LLMBudgetExceededError) as daily:
        check_budget(ledger, Budget(daily_usd=1.0), now=NOW)
    assert "daily budget" in str(daily.value) and "$1.00" in str(daily.value)
    assert "raise budget.daily_usd in your config or wait until 00:00 UTC" in str(daily.value)

    with pytest.raises(LLMBudgetExceededError) as monthly:
        check_budget(ledger, Budget(daily_usd=2.0, monthly_usd=4.0), now=NOW)
    assert "monthly" in str(monthly.value) and "$4.00" in str(monthly.value)
    assert "budget.monthly_usd" in str(monthly.value) and "2026-12-01" in str(monthly.value)

    with pytest.raises(LLMBudgetExceededError, match=r"total budget.*\$14\.00.*budget\.total_usd"):
        check_budget(ledger, Budget(monthly_usd=5.0, total_usd=14.0), now=NOW)

    # At 00:30 on Dec 1st, November's spend no longer counts for the day or the month.
    check_budget(ledger, Budget(daily_usd=0.5, monthly_usd=0.5), now=utc(2026, 12, 1, 0, 30))
    # The day before, the $1 of the 15th counts for the month but not for the day.
    check_budget(ledger, Budget(daily_usd=0.5), now=utc(2026, 11, 16, 12))
    with pytest.raises(LLMBudgetExceededError, match="2027-01-01"):
        check_budget(ledger, Budget(monthly_usd=0.0), now=utc(2026, 12, 31, 12))


# --- PostgreSQL across processes --------------------------------------------------------------

WRITER = textwrap.dedent("""
    import sys
    from dewey.llm._usage import PostgresLedger, UsageRecord

    url, table, name = sys.argv[1:4]
    ledger = PostgresLedger(url, table=table)
    for number in range(25):
        ledger.record(UsageRecord(model=name, provider="test", kind="completion",
                                  outcome="ok", cost_usd=0.25, prompt_tokens=number))
    ledger.close()
""")


@needs_postgres
def test_two_processes_share_a_postgres_budget(pg_table: str) -> None:
    # Both create the table at the same moment, then write 25 x $0.25 each.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, PG_URL, pg_table, f"proc-{n}"],
                                env=env, stderr=subprocess.PIPE, text=True) for n in (1, 2)]
    for writer in writers:
        _, errors = writer.communicate(timeout=30)
        assert writer.returncode == 0, errors
        assert "Traceback" not in errors and "WARNING" not in errors.upper(), errors

    third = PostgresLedger(PG_URL, table=pg_table)
    try:
        assert third.spent() == pytest.approx(12.5)
        assert [(s.key, s.calls) for s in third.summary()] == [("proc-1", 25), ("proc-2", 25)]
        check_budget(third, Budget(total_usd=13.0))
        with pytest.raises(LLMBudgetExceededError, match=r"\$12\.50"):
            check_budget(third, Budget(daily_usd=12.5))
    finally:
        third.close()


@needs_postgres
def test_postgres_location_hides_the_password() -> None:
    url = PG_URL.replace("postgres@", "postgres:s3cret-pw@")
    ledger = open_ledger(url)
    assert isinstance(ledger, PostgresLedger)
    assert "s3cret" not in ledger.location and ":***@" in ledger.location
    assert "s3cret" not in repr(ledger)


# --- opening ----------------------------------------------------------------------------------

def test_default_path_follows_xdg_data_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_ledger_path() == tmp_path / "xdg" / "dewey-llm" / "usage.db"
    ledger = open_ledger()
    assert isinstance(ledger, SQLiteLedger) and ledger.path == default_ledger_path()
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    home_data = tmp_path / "home" / ".local" / "share"
    assert default_ledger_path() == home_data / "dewey-llm" / "usage.db"


def test_open_ledger_forms(tmp_path: Path) -> None:
    assert isinstance(open_ledger(str(tmp_path / "u.db")), SQLiteLedger)
    assert open_ledger("sqlite:///relative/u.db").location == "relative/u.db"
    assert open_ledger(f"sqlite:///{tmp_path}/u.db").location == f"{tmp_path}/u.db"  # 4 slashes
    assert isinstance(open_ledger("postgres://u@h/db"), PostgresLedger)
    with pytest.raises(LLMConfigError, match="postgresql://"):
        open_ledger("mysql://root:pw@localhost/db")
    with pytest.raises(LLMConfigError, match="names no file"):
        open_ledger("sqlite:///:memory:")
    with pytest.raises(LLMConfigError, match="table name"):
        PostgresLedger("postgresql://h/db", table="usage; drop table x")


def test_mask_url() -> None:
    assert mask_url("postgresql://bob:pw@db:5432/x") == "postgresql://bob:***@db:5432/x"
    assert mask_url("postgresql://db/x?password=pw&sslmode=require") == (
        "postgresql://db/x?password=***&sslmode=require")
    assert mask_url("postgresql://bob@db/x") == "postgresql://bob@db/x"


def test_importing_the_ledger_loads_neither_litellm_nor_psycopg(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import sys
        import dewey.llm
        before = set(sys.modules)
        from dewey.llm._usage import UsageRecord, open_ledger
        with open_ledger({str(tmp_path / "u.db")!r}) as ledger:
            ledger.record(UsageRecord("m", None, "completion", "ok", cost_usd=1.0))
            ledger.flush()
            assert ledger.spent() == 1.0
        print(sorted({{m.split(".")[0] for m in set(sys.modules) - before}}))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=30, check=True)
    loaded = set(json.loads(result.stdout.replace("'", '"')))
    assert not loaded & {"litellm", "psycopg", "pydantic", "rich", "httpx"}


# --- the report -------------------------------------------------------------------------------

def test_parse_since() -> None:
    assert parse_since("7d", now=NOW) == NOW - 7 * 86400
    assert parse_since("24h", now=NOW) == NOW - 86400
    assert parse_since("30m", now=NOW) == NOW - 1800
    assert parse_since("2026-11-01") == utc(2026, 11, 1)
    assert parse_since("2026-11-01T09:30:00") == utc(2026, 11, 1, 9, 30)
    assert parse_since("2026-11-01T09:30:00Z") == utc(2026, 11, 1, 9, 30)
    assert parse_since("2026-11-01T10:30:00+01:00") == utc(2026, 11, 1, 9, 30)
    for wrong in ("yesterday", "7 days", "2026-13-01", "", "-3d"):
        with pytest.raises(LLMConfigError, match=r"7d, 24h or 30m.*2026-11-01"):
            parse_since(wrong)


def test_render_usage_tables_and_chart(tmp_path: Path) -> None:
    with SQLiteLedger(tmp_path / "usage.db") as ledger:
        fill(ledger)
        console = Console(record=True, width=100)
        render_usage(ledger, since=utc(2026, 11, 1), model=None, as_json=False, console=console)
    text = console.export_text()
    assert "Spend by day" in text and "Spend by model" in text and "Cost per day" in text
    assert "2026-11-14" in text and "2026-11-15" in text and "2026-10-20" not in text
    assert "gpt-4o" in text and "claude-3" in text and "$4.00" in text
    bars = {line[:10]: line for line in text.splitlines() if "█" in line}
    assert set(bars) == {"2026-11-14", "2026-11-15"}
    # $3 fills the width, $1 a third of it; the line fits the 100 columns.
    assert bars["2026-11-14"].count("█") > 2.5 * bars["2026-11-15"].count("█") > 50
    assert all(len(line) <= 100 for line in text.splitlines())


def test_render_usage_json_and_empty(tmp_path: Path) -> None:
    with SQLiteLedger(tmp_path / "usage.db") as ledger:
        fill(ledger)
        console = Console(record=True, width=100)
        render_usage(ledger, since=None, model="claude-3", as_json=True, console=console)
        document = json.loads(console.export_text())
        assert document["total_usd"] == 1.0
        assert [row["key"] for row in document["by_model"]] == ["claude-3"]
        assert document["by_day"][0] == {
            "key": "2026-11-15", "calls": 3, "errors": 1, "cache_hits": 1, "prompt_tokens": 100,
            "completion_tokens": 0, "cost_usd": 1.0, "saved_usd": 0.5, "retries": 0}

        console = Console(record=True, width=100)
        render_usage(ledger, since=None, model="nothing", as_json=False, console=console)
        assert "No usage recorded for nothing" in console.export_text()
