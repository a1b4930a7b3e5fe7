"""Budget checks and ``dewey-llm usage`` on a ledger of a year's volume (10 million rows).

    python bench/bench_ledger_scale.py [--rows 10000000] [--repeat 50] [--stores sqlite,postgres]

For each store (a SQLite file in a temporary directory; a table of its own in the
PostgreSQL at ``$DEWEY_TEST_POSTGRES_URL`` or 127.0.0.1:5432/test, dropped afterwards):

1. writes ``--rows`` rows as an earlier version left them (rows only, no totals), spread
   over the last 365 days, 8 models, 40 users and 0 to 2 of 6 tags, in bulk
   (``executemany`` in SQLite, ``COPY`` in PostgreSQL);
2. opens the ledger as a new version does: its first read builds the running totals from
   the rows (the migration; timed);
3. times the budget check (``check_budget``: daily, monthly, total, each alone, and the
   three with a reservation; median of ``--repeat``), the ``usage`` summary's queries
   (``summary_query_ms``: by day and by model, what the issue timed at 1.65 s for 2 million
   rows) and the summary as ``dewey-llm usage`` prints it (``summary_ms``: queries and
   rich's tables and chart; median of 5 each), and the whole
   ``dewey-llm usage`` command once (a new process: interpreter start and imports included;
   ``cli_empty_ms`` is the same command on an empty ledger, for scale);
4. for contrast, the query budgets ran before (``SUM(cost_usd)`` over every row), once.

Goals (issue 18): budget check < 5 ms and ``dewey-llm usage`` < 300 ms, for both stores.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from rich.console import Console  # noqa: E402

from dewey.llm._config import Budget  # noqa: E402
from dewey.llm._usage import Ledger, check_budget, open_ledger, render_usage  # noqa: E402
from dewey.llm._usage._records import COLUMNS, insert_sql  # noqa: E402

PG_URL = os.environ.get("DEWEY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MODELS = ["gpt-4o-mini", "gpt-4o", "claude-3-5-haiku", "claude-3-5-sonnet", "gemini-1.5-flash",
          "mistral-small", "llama-3-70b", "text-embedding-3-small"]
USERS = [f"user-{n:02d}" for n in range(40)] + [None]
TAGS = ["search", "eval", "batch", "chat", "support", "nightly"]
CHUNK = 100_000
BIG = 1e12  # budgets never reached: the check runs to the end


def rows(count: int, now: float) -> Iterator[list[tuple[Any, ...]]]:
    """``count`` rows in ``COLUMNS`` order, in chunks, oldest first."""
    rng = random.Random(18)
    start = now - 365 * 86400
    step = 365 * 86400 / count
    tag_sets = [json.dumps(rng.sample(TAGS, k)) for k in (0, 1, 1, 2) for _ in range(8)]
    for first in range(0, count, CHUNK):
        chunk = []
        for n in range(first, min(count, first + CHUNK)):
            prompt, completion = rng.randrange(20, 4000), rng.randrange(0, 800)
            hit = rng.random() < 0.1
            chunk.append((start + n * step, rng.choice(MODELS), "openai", "completion",
                          "ok" if rng.random() < 0.98 else "LLMRateLimitError", 200, 1, prompt,
                          completion, 0, 0.0 if hit else (prompt * 0.15 + completion * 0.6) / 1e6,
                          0.001 if hit else 0.0, 0.8, int(hit), rng.choice(tag_sets),
                          rng.choice(USERS)))
        yield chunk


def fill_sqlite(path: Path, count: int, now: float) -> None:
    import sqlite3

    from dewey.llm._usage._sqlite import _SQLITE_SCHEMA

    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = OFF")
    connection.executescript(_SQLITE_SCHEMA)  # the rows' tables only: no totals yet
    for chunk in rows(count, now):
        connection.executemany(insert_sql("usage", "?"), chunk)
    connection.commit()
    connection.close()


def fill_postgres(table: str, count: int, now: float) -> None:
    import psycopg

    from dewey.llm._usage._postgres import _POSTGRES_SCHEMA

    with psycopg.connect(PG_URL) as connection:
        connection.execute(_POSTGRES_SCHEMA.format(table=table))
        connection.execute(f"CREATE TABLE {table}_reservations "
                           "(id TEXT PRIMARY KEY, cost_usd DOUBLE PRECISION, expires DOUBLE PRECISION)")
        columns = ", ".join(f'"{name}"' for name in COLUMNS)
        with connection.cursor() as cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for chunk in rows(count, now):
                for row in chunk:
                    copy.write_row(row)
        connection.execute(f'CREATE INDEX {table}_time_idx ON {table} ("time")')
        connection.execute(f"ANALYZE {table}")


def drop_postgres(table: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as connection:
        connection.execute(f"DROP TABLE IF EXISTS {table}, {table}_reservations, {table}_daily, "
                           f"{table}_totals, {table}_tags")


def median_ms(action: Callable[[], object], repeat: int) -> float:
    action()  # warm: connections open, pages cached
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def once_ms(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def cli_ms(where: str) -> float:
    """Wall time of ``dewey-llm usage`` in a new process."""
    env = {**os.environ, "LITELLM_USAGE_DB": where, "COLUMNS": "120",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    return once_ms(lambda: subprocess.run([sys.executable, "-m", "dewey.llm", "usage"], env=env,
                                          check=True, capture_output=True))


def measure(name: str, where: str, fill: Callable[[], None], repeat: int) -> dict[str, float]:
    figures = {"cli_empty_ms": cli_ms(where), "fill_s": 0.0}
    figures["fill_s"] = once_ms(fill) / 1000
    ledger: Ledger = open_ledger(where)
    try:
        figures["migration_s"] = once_ms(ledger.spent) / 1000  # the first read builds the totals
        for window, budget in (("daily", Budget(daily_usd=BIG)), ("monthly", Budget(monthly_usd=BIG)),
                               ("total", Budget(total_usd=BIG))):
            figures[f"check_{window}_ms"] = median_ms(partial(check_budget, ledger, budget), repeat)
        every = Budget(daily_usd=BIG, monthly_usd=BIG, total_usd=BIG)

        def reserve_and_release() -> None:
            hold = check_budget(ledger, every, reserve=0.001)
            if hold is not None:
                ledger.release(hold)

        figures["check_all_reserve_ms"] = median_ms(reserve_and_release, repeat)

        def report() -> None:
            render_usage(ledger, since=None, model=None, as_json=False,
                         console=Console(file=io.StringIO(), width=120))

        figures["summary_query_ms"] = median_ms(
            lambda: (ledger.summary(by="day"), ledger.summary(by="model")), 5)
        figures["summary_ms"] = median_ms(report, 5)
        figures["summary_by_tag_ms"] = median_ms(lambda: ledger.summary(by="tag"), 5)
        figures["summary_by_user_ms"] = median_ms(lambda: ledger.summary(by="user"), 5)
        old = f"SELECT SUM(cost_usd) FROM {ledger._table}"  # noqa: SLF001 - the query of before
        figures["old_total_query_ms"] = once_ms(lambda: ledger._query(old, []))  # noqa: SLF001
    finally:
        ledger.close()
    figures["cli_usage_ms"] = cli_ms(where)
    print(f"{name}: " + ", ".join(f"{key} {value:.2f}" for key, value in figures.items()), flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--stores", default="sqlite,postgres")
    args = parser.parse_args()
    now = time.time()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="dewey-ledger-scale-") as tmp:
        if "sqlite" in args.stores:
            path = Path(tmp) / "usage.db"
            results["sqlite"] = measure("sqlite", str(path),
                                        lambda: fill_sqlite(path, args.rows, now), args.repeat)
            results["sqlite"]["file_mb"] = sum(
                f.stat().st_size for f in Path(tmp).iterdir()) / 1e6
        if "postgres" in args.stores:
            table = f"dewey_usage_scale_{uuid.uuid4().hex[:8]}"
            try:
                results["postgres"] = measure("postgres", f"{PG_URL}?table={table}",
                                              lambda: fill_postgres(table, args.rows, now),
                                              args.repeat)
            finally:
                drop_postgres(table)
    print(json.dumps({"rows": args.rows, "repeat": args.repeat, "results": results}, indent=2))


if __name__ == "__main__":
    main()
