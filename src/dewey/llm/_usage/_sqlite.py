"""The SQLite ledger: one file on this machine, shared by its threads and processes."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._dirs import data_home
from .._exceptions import LLMConfigError
from ._ledger import MAX_PENDING, Ledger
from ._log import log_insert_sql, sqlite_log_schema
from ._records import insert_sql
from ._totals import NO_TAGS, fold, fold_retries, rebuild_sql, retries_migration, schema, upserts

if TYPE_CHECKING:
    import sqlite3

__all__ = ["SQLiteLedger", "default_ledger_path"]

_BUSY_TIMEOUT = 5.0  # seconds to wait for another process's write lock
_MIGRATION_WAIT = 600.0  # seconds to wait for another connection's migration of an old file
_POLL = 0.05  # seconds between looks while waiting for it
_LOG_ROWS = 64  # prompt log rows per INSERT at most (see _insert_logs)

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    id INTEGER PRIMARY KEY, "time" REAL NOT NULL, model TEXT NOT NULL, provider TEXT,
    kind TEXT NOT NULL, outcome TEXT NOT NULL, status_code INTEGER, attempt INTEGER,
    prompt_tokens INTEGER, completion_tokens INTEGER, cached_tokens INTEGER, cost_usd REAL,
    saved_usd REAL, latency_s REAL, cache_hit INTEGER, tags TEXT, user_label TEXT, call_id TEXT
);
CREATE INDEX IF NOT EXISTS usage_time_idx ON usage ("time");
CREATE TABLE IF NOT EXISTS usage_reservations (id TEXT PRIMARY KEY, cost_usd REAL, expires REAL);
"""


class SQLiteLedger(Ledger):
    """A ledger in one SQLite file (WAL mode: readers never wait for the writer)."""

    _table = "usage"
    _mark = "?"
    _day_sql = 'CAST("time" / 86400.0 AS INTEGER)'
    _hint = "Check that its directory exists or can be created, and is writable."
    _writer: sqlite3.Connection | None
    _reader: sqlite3.Connection | None

    def __init__(self, path: str | os.PathLike[str], *, max_pending: int = MAX_PENDING,
                 retention_days: float | None = None) -> None:
        self.path = Path(path).expanduser()
        if str(path) == ":memory:":
            raise LLMConfigError("the usage ledger cannot be ':memory:': give a file path")
        super().__init__(str(self.path), max_pending=max_pending, retention_days=retention_days)
        self._created = False  # the reader created the file and its tables

    def _connect(self, *, create: bool) -> sqlite3.Connection:
        import sqlite3

        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT, check_same_thread=False)
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT * 1000)}")
            if create:
                _use_wal(connection)
                connection.execute("PRAGMA synchronous = NORMAL")  # durable enough with WAL
                connection.executescript(_SQLITE_SCHEMA)
            _add_call_id(connection)
            if create:
                _create_log(connection, self._table)
            self._ensure_totals(connection)
        except BaseException:
            connection.close()
            raise
        return connection

    def _ensure_totals(self, connection: sqlite3.Connection) -> None:
        """Create the totals tables; in a file written before they existed, build them from
        its rows first, and in one written before they counted retries, count those (once:
        the write lock makes other processes wait, then see them)."""
        if not self._lock_if_outdated(connection):
            return  # up to date, or no ledger in this file yet
        try:
            outdated = self._outdated(connection)
            if outdated is not None and connection.execute(
                    f"SELECT 1 FROM {self._table} LIMIT 1").fetchone():
                self._migrating(outdated)
            if outdated == "totals":
                for statement in schema(self._table, integer="INTEGER", real="REAL"):
                    connection.execute(statement)
                for statement in rebuild_sql(self._table, day_sql=self._day_sql,
                                             tags_from=f", json_each({NO_TAGS}) AS tag"):
                    connection.execute(statement)
            elif outdated == "retries":
                alters, select = retries_migration(self._table, integer="INTEGER",
                                                   day_sql=self._day_sql)
                for statement in alters:
                    connection.execute(statement)
                found = fold_retries(connection.execute(select).fetchall())
                for sql, params in upserts(self._table, "?", found):
                    connection.executemany(sql, params)
            connection.commit()
        except BaseException:
            connection.rollback()
            raise

    def _lock_if_outdated(self, connection: sqlite3.Connection) -> bool:
        """Whether the file is outdated, with its write lock taken (BEGIN IMMEDIATE) if so.

        Looks again every ``_POLL`` rather than waiting on the write lock: a reader gets
        here holding ``_commit_lock`` (in ``spent()``), which this ledger's writer may be
        waiting for with the write lock held, having just brought the file up to date."""
        import sqlite3

        deadline = time.monotonic() + _MIGRATION_WAIT
        connection.execute(f"PRAGMA busy_timeout = {int(_POLL * 1000)}")
        try:
            while True:
                try:
                    if self._outdated(connection) is None:
                        return False
                    connection.execute("BEGIN IMMEDIATE")
                    return True
                except sqlite3.OperationalError as exc:
                    # Also reported at once, without the busy timeout, while another
                    # connection switches the file to WAL.
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                time.sleep(_POLL)
        finally:
            connection.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT * 1000)}")

    def _outdated(self, connection: sqlite3.Connection) -> str | None:
        """What a file written by an earlier version lacks: "totals" (the tables), "retries"
        (their column), or None (up to date, or no ledger in this file yet)."""
        found = {name for name, in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN (?, ?)",
            (self._table, f"{self._table}_daily"))}
        if self._table not in found:
            return None
        if f"{self._table}_daily" not in found:
            return "totals"
        columns = {row[1] for row in connection.execute(f"PRAGMA table_info({self._table}_daily)")}
        return None if "retries" in columns else "retries"

    def _write(self, rows: list[tuple[Any, ...]], settled: list[str],
               logs: list[tuple[Any, ...]]) -> None:
        try:
            if self._writer is None:
                self._writer = self._connect(create=True)
            # sqlite3 opens a transaction before the first INSERT; _commit ends it.
            self._writer.executemany(insert_sql(self._table, "?"), rows)
            _insert_logs(self._writer, self._table, logs)
            for sql, params in upserts(self._table, "?", fold(rows)):
                self._writer.executemany(sql, params)
            self._writer.executemany("DELETE FROM usage_reservations WHERE id = ?",
                                     [(hold,) for hold in settled])
            self._writer.execute("DELETE FROM usage_reservations WHERE expires <= ?", (time.time(),))
        except BaseException:
            self._close_writer()  # closing rolls back
            raise

    def _delete_before(self, cutoff: float, limit: int) -> int:
        try:
            if self._writer is None:
                self._writer = self._connect(create=True)
            # The prompt log goes with the rows that priced it.
            deleted = max(self._writer.execute(
                f'DELETE FROM {table} WHERE id IN (SELECT id FROM {table} '
                'WHERE "time" < ? ORDER BY "time" LIMIT ?)', (cutoff, limit)).rowcount
                for table in (self._table, f"{self._table}_log"))
            self._writer.commit()
        except BaseException:
            self._close_writer()
            raise
        return int(deleted)

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        import sqlite3

        with self._read_lock:
            if self._reader is None:
                if not self.path.exists():
                    return []  # nothing recorded yet: don't create files just to read
                self._reader = self._connect(create=False)
            try:
                return self._reader.execute(sql, list(params)).fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return []  # the writer has not created it yet
                raise

    def _execute(self, sql: str, params: Sequence[Any]) -> None:
        with self._read_lock:
            if self._reader is None or not self._created:
                self._close_reader()
                self._reader = self._connect(create=True)
                self._created = True
            try:
                self._reader.execute(sql, list(params))
                self._reader.commit()
            except BaseException:
                self._reader.rollback()
                raise

    def _search(self, query: str) -> tuple[str, list[Any]]:
        words = query.split()
        if not self._read("SELECT 1 FROM sqlite_master WHERE name = ?", [f"{self._table}_log_fts"]):
            # A SQLite built without FTS5: every word, as a substring, without an index.
            escaped = ["%" + re.sub(r"([\\%_])", r"\\\1", word) + "%" for word in words]
            return (" AND ".join(["(prompt LIKE ? ESCAPE '\\' OR response LIKE ? ESCAPE '\\')"]
                                 * len(words)), [w for word in escaped for w in (word, word)])
        # Each word quoted: the user's text is words to find, not FTS5 query syntax.
        quoted = " ".join('"' + word.replace('"', '""') + '"' for word in words)
        return (f"id IN (SELECT rowid FROM {self._table}_log_fts WHERE "
                f"{self._table}_log_fts MATCH ?)", [quoted])

    def _transient(self, error: Exception) -> bool:
        import sqlite3

        return not isinstance(error, (sqlite3.IntegrityError, sqlite3.DataError,
                                      sqlite3.InterfaceError, ValueError, TypeError))


def default_ledger_path() -> Path:
    """``$XDG_DATA_HOME/dewey-llm/usage.db``, else ``~/.local/share/dewey-llm/usage.db``."""
    return data_home() / "usage.db"


def _create_log(connection: sqlite3.Connection, table: str) -> None:
    """The prompt log's table and, where SQLite has FTS5 (nearly every build), its index."""
    import sqlite3

    for statement in sqlite_log_schema(table):
        try:
            connection.execute(statement)
        except sqlite3.OperationalError as exc:
            if "fts5" not in str(exc):
                raise
            return  # no FTS5: the index and its triggers are left out, searches use LIKE


def _insert_logs(connection: sqlite3.Connection, table: str, logs: list[tuple[Any, ...]]) -> None:
    """Insert the prompt log's rows, many to a statement.

    FTS5 writes out what its insert trigger indexed at the end of every statement: one
    statement per entry cost ~15 us of the writer's CPU per entry for that
    alone, one per ``_LOG_ROWS`` entries costs a fraction of it.  Statements of 64, 32,
    ..., 1 rows: a few shapes, prepared once each (the connection caches them), and
    well under SQLite's oldest limit of 999 parameters."""
    start, size = 0, _LOG_ROWS
    while start < len(logs):
        while size > len(logs) - start:
            size //= 2
        chunk = logs[start:start + size]
        connection.execute(log_insert_sql(table, "?", size), [value for row in chunk for value in row])
        start += size


def _add_call_id(connection: sqlite3.Connection) -> None:
    """The ``call_id`` column, in a file written before the prompt log existed (readers
    too: they select it)."""
    import sqlite3

    columns = {row[1] for row in connection.execute("PRAGMA table_info(usage)")}
    if columns and "call_id" not in columns:
        try:
            connection.execute("ALTER TABLE usage ADD COLUMN call_id TEXT")
        except sqlite3.OperationalError as exc:
            if "duplicate column" not in str(exc):  # another process added it meanwhile
                raise


def _use_wal(connection: sqlite3.Connection) -> None:
    """Switch the file to WAL (kept by the file), waiting out other processes.

    Switching reports "database is locked" at once, without the busy timeout, while
    another connection (a second process opening the same new file) holds it: without
    the wait the ledger took itself for unavailable and a process's records were lost.
    """
    import sqlite3

    deadline = time.monotonic() + _BUSY_TIMEOUT
    while True:
        try:
            if connection.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
