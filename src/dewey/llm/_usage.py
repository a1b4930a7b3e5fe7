"""The usage ledger: one row per model call, read by ``dewey-llm usage`` and by budgets.

``Ledger.record`` runs on the hot path of every call, so it only appends to an in-memory
queue; one daemon thread per ledger writes the queue in batches to SQLite (the default,
``~/.local/share/dewey-llm/usage.db``) or PostgreSQL (shared by processes and machines,
so that a budget holds across all of them).  When storage is unavailable the ledger logs
one warning, keeps up to ``MAX_PENDING`` records in memory and retries with backoff: a
model call is never slowed down or failed by its bookkeeping.

Budgets hold across threads and processes through reservations: before a call is sent,
``check_budget`` stores its estimated cost (synchronously, so that every other caller sees
it), and the record of the call settles it: the reservation row is deleted in the same
transaction that writes the record, so others always see one or the other.  A reservation
never settled (its process died) stops counting after ``RESERVATION_TTL``.  This process's
own spend and reservations are also kept in memory, and budgets are checked against them
when storage cannot be read.

API keys are never stored: a record has no field for them.

This module imports neither LiteLLM nor psycopg (a Postgres ledger imports psycopg when
it first connects) nor pydantic, so that importing it stays cheap.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import re
import threading
import time
import uuid
import zlib
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ._exceptions import LLMBudgetExceededError, LLMConfigError, LLMError
from ._secrets import mask_url, redact, register_url_secrets

if TYPE_CHECKING:
    import sqlite3

    import psycopg

    from ._config import Budget

__all__ = [
    "MAX_PENDING",
    "RESERVATION_TTL",
    "Ledger",
    "LedgerUnavailableError",
    "PostgresLedger",
    "SQLiteLedger",
    "UsageRecord",
    "UsageSummary",
    "check_budget",
    "default_ledger_path",
    "mask_url",
    "open_ledger",
]

logger = logging.getLogger("dewey.llm")

MAX_PENDING = 10_000  # records kept in memory while storage is slow or down
BATCH_SIZE = 500
LINGER = 0.1  # seconds the writer waits to batch records into one commit
_MAX_BACKOFF = 30.0  # seconds between write attempts while storage is down
_READ_RETRY = 5.0  # after a failed read, reads fail fast for this long (no 3 s connect each call)
_COMMIT_WAIT = 1.0  # longest spent() waits for a commit in progress
_BUSY_TIMEOUT = 5.0  # SQLite: seconds to wait for another process's write lock
_CONNECT_TIMEOUT = 3  # Postgres: seconds
_INT64 = 2**63 - 1
RESERVATION_TTL = 600.0  # seconds a reservation counts if nothing settles it (its process died)
_DAY = 86400

_COLUMNS = ("time", "model", "provider", "kind", "outcome", "status_code", "attempt",
            "prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd", "saved_usd",
            "latency_s", "cache_hit", "tags", "user_label")
# "time" is a type name in Postgres: quote every column so one statement fits both engines.
_COLUMN_LIST = ", ".join(f'"{name}"' for name in _COLUMNS)

# Kept alive forever in a forked child: closing (or collecting) a connection inherited from
# the parent would send the server a goodbye on the parent's socket.
_ABANDONED: list[Any] = []


class LedgerUnavailableError(LLMError):
    """The usage ledger could not be read (database down, file unreadable)."""


@dataclass(frozen=True)
class UsageRecord:
    """One attempt at one model, as the client saw it."""

    model: str
    provider: str | None
    kind: str  # "completion" | "stream" | "embedding"
    outcome: str  # "ok" or the error class name, e.g. "LLMRateLimitError"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    saved_usd: float = 0.0  # what a cache hit saved
    latency_s: float = 0.0
    cache_hit: bool = False
    status_code: int | None = None
    attempt: int = 1
    tags: tuple[str, ...] = ()
    user: str | None = None
    time: float = field(default_factory=time.time)  # unix seconds (UTC)


@dataclass
class _Hold:
    """A reservation of this process: ``cost`` held against budgets until ``expires``."""

    id: str
    cost: float
    expires: float  # unix seconds
    stored: bool = False  # written to storage, where other processes see it


@dataclass(frozen=True)
class UsageSummary:
    """One row of :meth:`Ledger.summary`: the totals of one model or one UTC day."""

    key: str  # the model, or the day "YYYY-MM-DD" (UTC)
    calls: int
    errors: int
    cache_hits: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    saved_usd: float


# --- the ledger ---------------------------------------------------------------------------

class Ledger(ABC):
    """Records usage without ever blocking or failing a call, and answers what was spent.

    Subclasses implement storage (``_write``, ``_commit``, ``_query``); this class owns the
    queue, the writer thread, retries, and the SQL shared by both engines.

    ``spent()`` adds the records not yet committed to the stored total.  So that a batch
    is never counted twice (in the database and in memory) nor missed, a commit and the
    removal of its records from memory happen together under ``_commit_lock``, which a
    ``spent()`` that must read the database holds around its query (waiting at most
    ``_COMMIT_WAIT``; if a commit hangs longer it goes ahead and may over-count, which errs
    on the side of the budget).
    """

    location: str  # a path, or a URL with its password masked
    _table: str = "usage"
    _mark: str = "?"  # the engine's parameter placeholder
    _day_sql: str = ""  # SQL giving the UTC day "YYYY-MM-DD" of "time"
    _spent_ttl: float = 0.0  # seconds spent() may reuse a stored total
    _hint: str = ""  # how to fix unavailable storage, for warnings

    def __init__(self, location: str, *, max_pending: int = MAX_PENDING) -> None:
        self.location = location
        self._max_pending = max_pending
        self._init_state()

    def _init_state(self) -> None:
        self._lock = threading.Condition()  # guards everything below; never held during I/O
        self._commit_lock = threading.Lock()  # see the class docstring
        self._pending: deque[tuple[int, UsageRecord]] = deque()
        self._inflight: list[tuple[int, UsageRecord]] = []  # taken by the writer, not committed
        self._queued = 0  # sequence number of the last record queued
        self._done = 0  # ... of the last record written, dropped, or given up on for now
        self._generation = 0  # bumped after each write: cached totals are stale
        self._retry_at = 0.0  # monotonic time of the next write attempt after a failure
        self._failures = 0
        self._closing = False
        self._flushing = 0  # flush() calls waiting: the writer must not linger
        self._thread: threading.Thread | None = None
        self._warned: set[str] = set()
        self._spent_cache: dict[float | None, tuple[int, float, float]] = {}
        self._read_down_until = 0.0
        self._holds: dict[str, _Hold] = {}  # live reservations of this process
        self._settling: dict[int, _Hold] = {}  # record number -> stored reservation it settles
        self._own: dict[int, float] = {}  # this process's spend per UTC day number
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- writing ---------------------------------------------------------------------------

    def record(self, record: UsageRecord, *, settles: str | None = None) -> None:
        """Queue ``record`` for the writer thread. Never blocks on I/O, never raises.

        ``settles`` names the reservation (from :meth:`reserve`) this record replaces."""
        try:
            self._check_fork()
            with self._lock:
                hold = self._holds.pop(settles, None) if settles else None
                day = int(_number(record.time) // _DAY)
                self._own[day] = self._own.get(day, 0.0) + _money(record.cost_usd)
                if self._closing:
                    logger.debug("usage ledger %s is closed: record dropped", self.location)
                    return
                full = len(self._pending) + len(self._inflight) >= self._max_pending
                if not full:
                    self._queued += 1
                    self._pending.append((self._queued, record))
                    if hold is not None and hold.stored:
                        self._settling[self._queued] = hold
                    self._start_writer()
                    # Wake the writer only when it sleeps without a timeout (the queue was
                    # empty) or a batch is full: waking it on every call costs the caller
                    # a thread switch, and the writer lingers for more records anyway.
                    if len(self._pending) == 1 or len(self._pending) >= BATCH_SIZE:
                        self._lock.notify_all()
            if full:
                self._warn_once("full", (
                    f"usage ledger {self.location}: {self._max_pending} records are waiting "
                    "to be written; new records are dropped until storage accepts writes"))
        except Exception:  # bookkeeping must never fail a model call
            logger.debug("usage ledger: could not queue a record", exc_info=True)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every record queued so far is written, or failed to be."""
        self._check_fork()
        deadline = time.monotonic() + timeout
        with self._lock:
            target = self._queued
            self._flushing += 1
            self._lock.notify_all()  # the writer stops lingering
            try:
                while (self._done < target and self._thread is not None and self._thread.is_alive()
                       # Storage known to be down: waiting for the next retry would only stall.
                       and self._retry_at <= time.monotonic()):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return
                    self._lock.wait(remaining)
            finally:
                self._flushing -= 1

    def close(self) -> None:
        """Flush, stop the writer thread and close the connections."""
        with self._lock:
            unsettled = list(self._holds)  # e.g. streams never read to the end
        for hold in unsettled:
            self.release(hold)
        self.flush()
        with self._lock:
            self._closing = True
            self._lock.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
        atexit.unregister(self._at_exit)
        # A writer still stuck in I/O keeps its connection: closing it under its feet is worse.
        self._close_storage(writer=thread is None or not thread.is_alive())

    def _at_exit(self) -> None:
        # The writer is a daemon thread: without this, records queued just before the
        # interpreter exits would be lost.
        try:
            self.flush(timeout=2.0)
        except Exception:
            logger.debug("usage ledger: flush at exit failed", exc_info=True)

    def _start_writer(self) -> None:
        # Called with the lock held.  Started lazily: read-only users (the CLI) need no thread.
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="dewey-llm-usage-writer",
                                            daemon=True)
            self._thread.start()
            atexit.register(self._at_exit)

    def _run(self) -> None:
        try:
            while (batch := self._next_batch()) is not None:
                self._write_batch(batch)
        except Exception:  # a bug, not an outage: say so loudly rather than stop silently
            logger.exception("usage ledger %s: the writer thread stopped", self.location)

    def _next_batch(self) -> list[tuple[int, UsageRecord]] | None:
        with self._lock:
            while True:
                wait = self._retry_at - time.monotonic()
                if self._closing and (not self._pending or wait > 0):
                    return None
                if self._pending and wait <= 0:
                    linger = self._linger_left()
                    if linger <= 0:
                        break
                    wait = linger
                self._lock.wait(wait if self._pending else None)
            count = min(len(self._pending), BATCH_SIZE)
            self._inflight = [self._pending.popleft() for _ in range(count)]
            return list(self._inflight)

    def _linger_left(self) -> float:
        """Seconds to wait for more records before writing: one commit per ~LINGER of
        calls instead of one per call halves the writer's CPU (and GIL) cost. Nobody
        waits for it: flush() and close() cut it short."""
        if self._closing or self._flushing or len(self._pending) >= BATCH_SIZE:
            return 0.0
        oldest = self._pending[0][1].time
        return LINGER - (time.time() - oldest)

    def _write_batch(self, batch: list[tuple[int, UsageRecord]]) -> None:
        with self._lock:
            settled = [self._settling[n].id for n, _ in batch if n in self._settling]
        rows = []
        for _, item in batch:
            try:
                rows.append(_to_row(item))
            except Exception:  # a malformed record is dropped, not retried forever
                logger.debug("usage ledger: malformed record dropped: %r", item, exc_info=True)
        try:
            if rows or settled:
                self._write(rows, settled)
            with self._commit_lock:
                if rows or settled:
                    self._commit()
                recovered = self._settle(batch, retry=False)
        except Exception as error:
            retry = self._transient(error)
            # Warn before settling, so that flush() returns after the warning.
            if retry:
                self._warn_once("write", (
                    f"usage ledger {self.location} is unavailable ({_describe(error)}); usage "
                    f"is kept in memory (up to {self._max_pending} records) and written when "
                    f"it comes back. {self._hint}"))
            else:
                self._warn_once("reject", (
                    f"usage ledger {self.location} rejected {len(rows)} records, which are "
                    f"dropped: {_describe(error)}"))
            self._settle(batch, retry=retry)
            return
        if recovered:
            logger.info("usage ledger %s is available again", self.location)

    def _settle(self, batch: list[tuple[int, UsageRecord]], *, retry: bool) -> bool:
        """Take ``batch`` out of flight: done, or back in the queue to ``retry`` later.
        Returns whether this write ended an outage."""
        with self._lock:
            self._inflight = []
            if not retry:
                for number, _ in batch:
                    self._settling.pop(number, None)
            if retry:
                # Keep the records (they still count in spent()) and retry with backoff.
                self._pending.extendleft(reversed(batch))
                self._failures += 1
                self._retry_at = time.monotonic() + min(_MAX_BACKOFF, 2.0 ** (self._failures - 1))
                self._done = self._queued
                recovered = False
            else:
                self._generation += 1
                self._done = max(self._done, batch[-1][0])
                self._failures, self._retry_at = 0, 0.0
                recovered = "write" in self._warned
                self._warned.discard("write")  # warn again if it breaks again
            self._lock.notify_all()
            return recovered

    # --- reading -----------------------------------------------------------------------------

    def spent(self, since: float | None = None) -> float:
        """Total ``cost_usd`` of the records with ``time >= since``, queued ones included."""
        self._check_fork()
        queued, cached = self._snapshot(since)
        if cached is not None:
            return cached + queued
        locked = self._commit_lock.acquire(timeout=_COMMIT_WAIT)
        try:
            queued, _ = self._snapshot(since)  # no commit can happen until the query is done
            generation = self._generation
            where, params = self._where(since, None)
            rows = self._read(f"SELECT SUM(cost_usd) FROM {self._table}{where}", params)
        finally:
            if locked:
                self._commit_lock.release()
        stored = float(rows[0][0] or 0.0) if rows else 0.0
        if self._spent_ttl > 0:
            if len(self._spent_cache) > 64:
                self._spent_cache.clear()
            self._spent_cache[since] = (generation, time.monotonic(), stored)
        return stored + queued

    def _snapshot(self, since: float | None) -> tuple[float, float | None]:
        """The cost of the records not yet committed, and a stored total still valid."""
        with self._lock:
            queued = sum(_money(item.cost_usd) for _, item in (*self._inflight, *self._pending)
                         if since is None or _number(item.time) >= since)
            cached = self._spent_cache.get(since)
            if (cached is not None and cached[0] == self._generation
                    and time.monotonic() - cached[1] < self._spent_ttl):
                return queued, cached[2]
            return queued, None

    # --- reservations ------------------------------------------------------------------------

    def reserve(self, cost: float) -> str:
        """Hold ``cost`` USD against budgets, stored at once so that every process sees it;
        returns its id for ``record(..., settles=id)`` or :meth:`release`.  Never raises:
        if storage is down, the reservation is kept in this process only."""
        self._check_fork()
        hold = _Hold(uuid.uuid4().hex, _money(cost), time.time() + RESERVATION_TTL)
        with self._lock:
            self._holds[hold.id] = hold
        if time.monotonic() >= self._read_down_until:
            try:
                self._execute(f"INSERT INTO {self._table}_reservations (id, cost_usd, expires) "
                              f"VALUES ({self._mark}, {self._mark}, {self._mark})",
                              (hold.id, hold.cost, hold.expires))
                hold.stored = True
            except Exception as exc:
                self._read_down_until = time.monotonic() + _READ_RETRY
                logger.debug("usage ledger %s: reservation kept in memory: %s", self.location,
                             _describe(exc))
        return hold.id

    def release(self, hold_id: str) -> None:
        """Drop a reservation whose call was never sent. Never raises."""
        with self._lock:
            hold = self._holds.pop(hold_id, None)
        if hold is not None and hold.stored:
            try:
                self._execute(f"DELETE FROM {self._table}_reservations WHERE id = {self._mark}",
                              (hold.id,))
            except Exception as exc:  # it expires on its own
                logger.debug("usage ledger %s: reservation not released: %s", self.location,
                             _describe(exc))

    def spent_and_reserved(self, since: float | None = None) -> float:
        """What budgets must cover: :meth:`spent` plus the live reservations of every
        process, read in one statement so that a call settling in between is counted once.
        Raises :class:`LedgerUnavailableError` when storage cannot be read."""
        self._check_fork()
        now = time.time()
        locked = self._commit_lock.acquire(timeout=_COMMIT_WAIT)
        try:  # no commit can happen until the query is done: queued records match storage
            where, params = self._where(since, None)
            rows = self._read(
                f"SELECT (SELECT SUM(cost_usd) FROM {self._table}{where}), (SELECT SUM(cost_usd) "
                f"FROM {self._table}_reservations WHERE expires > {self._mark})", [*params, now])
            queued, _ = self._snapshot(since)
            with self._lock:
                # Stored reservations whose records are queued: counted by their records.
                settling = sum(h.cost for h in self._settling.values() if h.expires > now)
                unstored = sum(h.cost for h in self._holds.values()
                               if not h.stored and h.expires > now)
        finally:
            if locked:
                self._commit_lock.release()
        stored, reserved = (_money(rows[0][0]), _money(rows[0][1])) if rows else (0.0, 0.0)
        return stored + queued + reserved - settling + unstored

    def own_spend(self, since: float | None = None) -> float:
        """This process's spend (since ``since``) and live reservations, known without storage."""
        self._check_fork()
        now = time.time()
        first = -math.inf if since is None else since // _DAY
        with self._lock:
            spent = sum(cost for day, cost in self._own.items() if day >= first)
            return spent + sum(h.cost for h in self._holds.values() if h.expires > now)

    def summary(self, *, by: str = "model", since: float | None = None,
                model: str | None = None) -> list[UsageSummary]:
        """Totals per model (most expensive first) or per UTC day (oldest first)."""
        if by not in ("model", "day"):
            raise LLMConfigError(f"summary(by={by!r}) is not supported: use by='model' or by='day'")
        self.flush()
        key, order = ("model", "7 DESC, 1") if by == "model" else (self._day_sql, "1")
        where, params = self._where(since, model)
        rows = self._read(
            f"SELECT {key}, COUNT(*), SUM(CASE WHEN outcome = 'ok' THEN 0 ELSE 1 END), "
            "SUM(cache_hit), SUM(prompt_tokens), SUM(completion_tokens), SUM(cost_usd), "
            f"SUM(saved_usd) FROM {self._table}{where} GROUP BY 1 ORDER BY {order}", params)
        return [UsageSummary(str(r[0]), int(r[1]), int(r[2] or 0), int(r[3] or 0), int(r[4] or 0),
                             int(r[5] or 0), float(r[6] or 0.0), float(r[7] or 0.0))
                for r in rows]

    def records(self, *, since: float | None = None, model: str | None = None,
                limit: int = 1000) -> list[UsageRecord]:
        """The most recent records first."""
        self.flush()
        where, params = self._where(since, model)
        rows = self._read(f'SELECT {_COLUMN_LIST} FROM {self._table}{where} '
                          f'ORDER BY "time" DESC, id DESC LIMIT {self._mark}',
                          [*params, int(limit)])
        return [_from_row(row) for row in rows]

    def _where(self, since: float | None, model: str | None) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if since is not None:
            clauses.append(f'"time" >= {self._mark}')
            params.append(float(since))
        if model is not None:
            clauses.append(f"model = {self._mark}")
            params.append(model)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def _read(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        self._check_fork()
        if time.monotonic() < self._read_down_until:
            raise LedgerUnavailableError(
                f"usage ledger {self.location} is unavailable (it failed moments ago). "
                f"{self._hint}")
        try:
            return self._query(sql, params)
        except Exception as exc:
            self._read_down_until = time.monotonic() + _READ_RETRY
            raise LedgerUnavailableError(
                f"cannot read usage ledger {self.location}: {_describe(exc)}. {self._hint}"
            ) from exc

    # --- shared helpers ------------------------------------------------------------------------

    def _warn_once(self, key: str, message: str) -> None:
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        logger.warning(redact(message))

    def _check_fork(self) -> None:
        # A forked child inherits the queue but not the writer thread, and must not touch
        # the parent's connections: start over with fresh state.
        if self._pid != os.getpid():
            self._abandon_storage()
            self._init_state()

    # --- storage: implemented by subclasses ------------------------------------------------------

    @abstractmethod
    def _write(self, rows: list[tuple[Any, ...]], settled: list[str]) -> None:
        """Insert ``rows`` (in ``_COLUMNS`` order), delete the reservations ``settled`` and
        expired ones, in a transaction left open for ``_commit``; writer thread only.  On
        failure, roll back and raise."""

    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any]) -> None:
        """Run one write at once, on a connection of its own (never the writer's),
        creating the tables if needed."""

    @abstractmethod
    def _commit(self) -> None:
        """Commit the rows of the last ``_write``."""

    @abstractmethod
    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run a read on a connection of its own (never the writer's)."""

    @abstractmethod
    def _transient(self, error: Exception) -> bool:
        """Whether a failed write should be retried later (else its records are dropped)."""

    @abstractmethod
    def _close_storage(self, *, writer: bool) -> None:
        """Close the read connection, and the writer's when ``writer``."""

    @abstractmethod
    def _abandon_storage(self) -> None:
        """Forget connections inherited through fork, without closing them."""


class SQLiteLedger(Ledger):
    """A ledger in one SQLite file (WAL mode: readers never wait for the writer)."""

    _table = "usage"
    _mark = "?"
    _day_sql = "strftime('%Y-%m-%d', \"time\", 'unixepoch')"
    _hint = "Check that its directory exists or can be created, and is writable."

    def __init__(self, path: str | os.PathLike[str], *, max_pending: int = MAX_PENDING) -> None:
        self.path = Path(path).expanduser()
        if str(path) == ":memory:":
            raise LLMConfigError("the usage ledger cannot be ':memory:': give a file path")
        super().__init__(str(self.path), max_pending=max_pending)
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._created = False  # the reader created the file and its tables
        self._read_lock = threading.Lock()

    def _connect(self, *, create: bool) -> sqlite3.Connection:
        import sqlite3

        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT, check_same_thread=False)
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT * 1000)}")
            if create:
                connection.execute("PRAGMA journal_mode = WAL")
                connection.execute("PRAGMA synchronous = NORMAL")  # durable enough with WAL
                connection.executescript(_SQLITE_SCHEMA)
        except BaseException:
            connection.close()
            raise
        return connection

    def _write(self, rows: list[tuple[Any, ...]], settled: list[str]) -> None:
        try:
            if self._writer is None:
                self._writer = self._connect(create=True)
            # sqlite3 opens a transaction before the first INSERT; _commit ends it.
            self._writer.executemany(_insert_sql(self._table, "?"), rows)
            self._writer.executemany("DELETE FROM usage_reservations WHERE id = ?",
                                     [(hold,) for hold in settled])
            self._writer.execute("DELETE FROM usage_reservations WHERE expires <= ?", (time.time(),))
        except BaseException:
            self._close_writer()  # closing rolls back
            raise

    def _commit(self) -> None:
        try:
            if self._writer is not None:
                self._writer.commit()
        except BaseException:
            self._close_writer()
            raise

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
                if self._reader is not None:
                    self._reader.close()
                self._reader = self._connect(create=True)
                self._created = True
            try:
                self._reader.execute(sql, list(params))
                self._reader.commit()
            except BaseException:
                self._reader.rollback()
                raise

    def _transient(self, error: Exception) -> bool:
        import sqlite3

        return not isinstance(error, (sqlite3.IntegrityError, sqlite3.DataError,
                                      sqlite3.InterfaceError, ValueError, TypeError))

    def _close_writer(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:
                logger.debug("usage ledger: closing the SQLite writer failed", exc_info=True)
            self._writer = None

    def _close_storage(self, *, writer: bool) -> None:
        if writer:
            self._close_writer()
        with self._read_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    def _abandon_storage(self) -> None:
        _ABANDONED.extend(c for c in (self._writer, self._reader) if c is not None)
        self._writer = self._reader = None
        self._read_lock = threading.Lock()


class PostgresLedger(Ledger):
    """A ledger in a PostgreSQL table, shared by every process that points at it."""

    _mark = "%s"
    _day_sql = "to_char(to_timestamp(\"time\") AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
    _spent_ttl = 1.0  # a budget check per call must not cost a round trip per call
    _hint = "Check that PostgreSQL is running and the URL (usage_db) is right."

    def __init__(self, url: str, *, table: str = "dewey_usage",
                 max_pending: int = MAX_PENDING) -> None:
        if not _IDENTIFIER.fullmatch(table):
            raise LLMConfigError(
                f"invalid usage ledger table name {table!r}: use letters, digits and '_' "
                "(optionally schema.table)")
        register_url_secrets(url)
        super().__init__(mask_url(url), max_pending=max_pending)
        self.url = url
        self._table = table
        self._writer: psycopg.Connection[Any] | None = None
        self._reader: psycopg.Connection[Any] | None = None
        self._read_lock = threading.Lock()

    def _connect(self, *, autocommit: bool = True) -> psycopg.Connection[Any]:
        import psycopg

        return psycopg.connect(self.url, connect_timeout=_CONNECT_TIMEOUT, autocommit=autocommit,
                               application_name="dewey-llm")

    def _create_table(self, connection: psycopg.Connection[Any]) -> None:
        # CREATE TABLE IF NOT EXISTS races when two processes run it at once (duplicate
        # pg_type row): an advisory lock makes them take turns.
        lock_key = zlib.crc32(f"dewey-llm:{self._table}".encode())
        index = self._table.replace(".", "_") + "_time_idx"
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key,))
        connection.execute(_POSTGRES_SCHEMA.format(table=self._table))
        connection.execute(f'CREATE INDEX IF NOT EXISTS {index} ON {self._table} ("time")')
        connection.execute(f"CREATE TABLE IF NOT EXISTS {self._table}_reservations "
                           "(id TEXT PRIMARY KEY, cost_usd DOUBLE PRECISION, expires DOUBLE PRECISION)")
        connection.commit()

    def _write(self, rows: list[tuple[Any, ...]], settled: list[str]) -> None:
        try:
            if self._writer is None or self._writer.closed:
                connection = self._connect(autocommit=False)
                self._writer = connection
                self._create_table(connection)
            # One transaction per batch (opened by the first statement); _commit ends it.
            with self._writer.cursor() as cursor:
                if rows:
                    cursor.executemany(_insert_sql(self._table, "%s"), rows)
                cursor.execute(f"DELETE FROM {self._table}_reservations "
                               "WHERE id = ANY(%s) OR expires <= %s", (settled, time.time()))
        except BaseException:
            self._close_writer()  # closing rolls back
            raise

    def _commit(self) -> None:
        try:
            if self._writer is not None:
                self._writer.commit()
        except BaseException:
            self._close_writer()
            raise

    def _query(self, sql: str, params: Sequence[Any], *, fetch: bool = True) -> list[tuple[Any, ...]]:
        import psycopg

        with self._read_lock:
            try:
                if self._reader is None or self._reader.closed:
                    self._reader = self._connect()
                    # Its only writes are reservations: losing one in a server crash is
                    # harmless, waiting for a disk flush on every call is not.
                    self._reader.execute("SET synchronous_commit TO off")
                cursor = self._reader.execute(sql, list(params))  # autocommit: committed
                return cursor.fetchall() if fetch else []
            except psycopg.errors.UndefinedTable:
                if not fetch:
                    raise
                return []  # nothing was ever recorded here
            except BaseException:
                self._close_reader()
                raise

    def _execute(self, sql: str, params: Sequence[Any]) -> None:
        import psycopg

        try:
            self._query(sql, params, fetch=False)
        except psycopg.errors.UndefinedTable:
            with self._connect(autocommit=False) as connection:  # first use: create the tables
                self._create_table(connection)
            self._query(sql, params, fetch=False)

    def _transient(self, error: Exception) -> bool:
        import psycopg

        return not isinstance(error, (psycopg.DataError, psycopg.IntegrityError))

    def _close_writer(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:
                logger.debug("usage ledger: closing the Postgres writer failed", exc_info=True)
            self._writer = None

    def _close_reader(self) -> None:
        if self._reader is not None:
            try:
                self._reader.close()
            except Exception:
                logger.debug("usage ledger: closing the Postgres reader failed", exc_info=True)
            self._reader = None

    def _close_storage(self, *, writer: bool) -> None:
        if writer:
            self._close_writer()
        with self._read_lock:
            self._close_reader()

    def _abandon_storage(self) -> None:
        _ABANDONED.extend(c for c in (self._writer, self._reader) if c is not None)
        self._writer = self._reader = None
        self._read_lock = threading.Lock()


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?")

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    id INTEGER PRIMARY KEY, "time" REAL NOT NULL, model TEXT NOT NULL, provider TEXT,
    kind TEXT NOT NULL, outcome TEXT NOT NULL, status_code INTEGER, attempt INTEGER,
    prompt_tokens INTEGER, completion_tokens INTEGER, cached_tokens INTEGER, cost_usd REAL,
    saved_usd REAL, latency_s REAL, cache_hit INTEGER, tags TEXT, user_label TEXT
);
CREATE INDEX IF NOT EXISTS usage_time_idx ON usage ("time");
CREATE TABLE IF NOT EXISTS usage_reservations (id TEXT PRIMARY KEY, cost_usd REAL, expires REAL);
"""

# The SQLite table, with 64-bit integers (token counts can pass 2**31) and the same
# 0/1 cache_hit so that every query is shared.
_POSTGRES_SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    "time" DOUBLE PRECISION NOT NULL, model TEXT NOT NULL, provider TEXT,
    kind TEXT NOT NULL, outcome TEXT NOT NULL, status_code BIGINT, attempt BIGINT,
    prompt_tokens BIGINT, completion_tokens BIGINT, cached_tokens BIGINT,
    cost_usd DOUBLE PRECISION, saved_usd DOUBLE PRECISION, latency_s DOUBLE PRECISION,
    cache_hit INTEGER, tags TEXT, user_label TEXT
)
"""


def _insert_sql(table: str, mark: str) -> str:
    return f"INSERT INTO {table} ({_COLUMN_LIST}) VALUES ({', '.join([mark] * len(_COLUMNS))})"


# --- rows ------------------------------------------------------------------------------------

def _number(value: Any) -> float:
    """A finite float: NaN or infinity in a sum would silently disable every budget."""
    number = float(value or 0.0)
    return number if math.isfinite(number) else 0.0


def _money(value: Any) -> float:
    try:
        return _number(value)
    except (TypeError, ValueError):
        return 0.0


def _integer(value: Any) -> int:
    return max(-_INT64, min(_INT64, int(value or 0)))  # both engines store 64-bit integers


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _to_row(record: UsageRecord) -> tuple[Any, ...]:
    tags = [record.tags] if isinstance(record.tags, str) else list(record.tags or ())
    return (
        _number(record.time), str(record.model), _text(record.provider), str(record.kind),
        str(record.outcome), None if record.status_code is None else _integer(record.status_code),
        _integer(record.attempt), _integer(record.prompt_tokens),
        _integer(record.completion_tokens), _integer(record.cached_tokens),
        _number(record.cost_usd), _number(record.saved_usd), _number(record.latency_s),
        int(bool(record.cache_hit)), json.dumps([str(tag) for tag in tags]), _text(record.user),
    )


def _from_row(row: Sequence[Any]) -> UsageRecord:
    (when, model, provider, kind, outcome, status_code, attempt, prompt_tokens,
     completion_tokens, cached_tokens, cost_usd, saved_usd, latency_s, cache_hit, tags,
     user) = row
    try:
        tag_list = json.loads(tags) if tags else []
    except ValueError:
        tag_list = []
    return UsageRecord(
        model=model, provider=provider, kind=kind, outcome=outcome,
        prompt_tokens=int(prompt_tokens or 0), completion_tokens=int(completion_tokens or 0),
        cached_tokens=int(cached_tokens or 0), cost_usd=float(cost_usd or 0.0),
        saved_usd=float(saved_usd or 0.0), latency_s=float(latency_s or 0.0),
        cache_hit=bool(cache_hit), status_code=None if status_code is None else int(status_code),
        attempt=int(attempt or 1), tags=tuple(str(tag) for tag in tag_list), user=user,
        time=float(when),
    )


def _describe(error: BaseException | None) -> str:
    text = str(error).strip().splitlines()[0] if error is not None and str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# --- opening ----------------------------------------------------------------------------------

def default_ledger_path() -> Path:
    """``$XDG_DATA_HOME/dewey-llm/usage.db``, else ``~/.local/share/dewey-llm/usage.db``."""
    data_home = os.environ.get("XDG_DATA_HOME")
    base = Path(data_home).expanduser() if data_home else Path.home() / ".local" / "share"
    return base / "dewey-llm" / "usage.db"


def open_ledger(url: str | None = None) -> Ledger:
    """The ledger for a ``usage_db`` setting.

    ``None`` -> SQLite at :func:`default_ledger_path`; a path, or ``sqlite:///relative.db``
    / ``sqlite:////absolute.db`` (SQLAlchemy's convention) -> SQLite;
    ``postgresql://...`` or ``postgres://...`` -> PostgreSQL, in the table ``dewey_usage``
    unless the URL names another with ``?table=NAME`` (or ``schema.NAME``), e.g. to keep
    two teams' ledgers apart in one database.
    """
    text = (url or "").strip()
    if not text:
        return SQLiteLedger(default_ledger_path())
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in ("postgresql", "postgres"):
        return _postgres_ledger(text)
    if scheme == "sqlite":
        prefix = "sqlite:///"
        path = text[len(prefix):].split("?", 1)[0] if text.lower().startswith(prefix) else ""
        if not path or path == ":memory:":
            raise LLMConfigError(f"usage_db {text!r} names no file: write sqlite:///usage.db "
                                 "(relative) or sqlite:////var/lib/usage.db (absolute)")
        return SQLiteLedger(path)
    if scheme:
        raise LLMConfigError(
            f"usage_db {mask_url(text)!r} is not supported: use a SQLite file path, "
            "sqlite:///path, or postgresql://user@host:5432/db")
    return SQLiteLedger(text)


def _postgres_ledger(url: str) -> PostgresLedger:
    """A Postgres ledger; a ``table=`` query parameter is ours, not libpq's: take it out."""
    parts = urlsplit(url)
    params = parse_qsl(parts.query, keep_blank_values=True)
    tables = [value for key, value in params if key == "table"]
    if not tables:
        return PostgresLedger(url)
    if len(tables) > 1:
        raise LLMConfigError(f"usage_db {mask_url(url)!r} names the table more than once")
    query = urlencode([(key, value) for key, value in params if key != "table"])
    return PostgresLedger(urlunsplit((parts.scheme, parts.netloc, parts.path, query,
                                      parts.fragment)), table=tables[0])


# --- budgets ----------------------------------------------------------------------------------

def check_budget(ledger: Ledger, budget: Budget, now: float | None = None, *,
                 reserve: float | None = None) -> str | None:
    """Raise :class:`LLMBudgetExceededError` if a daily, monthly or total budget is spent.

    With ``reserve`` (a call's estimated cost), hold that much first and return the
    reservation's id for ``Ledger.record(..., settles=id)``: it is stored before the check,
    so concurrent callers in every process see each other's calls in flight, and a budget
    is overshot by at most what those calls cost beyond their estimates.  The call's own
    reservation does not count against it ("spent" is what came before it).

    Days and months are UTC.  When the ledger cannot be read, one warning is logged and
    budgets are checked against this process's own spend and reservations.
    """
    now = time.time() if now is None else now
    windows = _budget_windows(budget, now)
    if not windows:
        return None
    hold = ledger.reserve(reserve) if reserve is not None else None
    own = _money(reserve) if reserve is not None else 0.0
    for name, limit, since, scope, fix in windows:
        try:
            spent = max(0.0, ledger.spent_and_reserved(since) - own)
        except Exception as exc:  # storage down: what this process spent still counts
            spent = max(0.0, ledger.own_spend(since) - own)
            ledger._warn_once("budget", (
                f"cannot check the budget against usage ledger {ledger.location}; until it "
                f"can be read, budgets count only this process's own spend: {exc}"))
        if spent >= limit:
            if hold is not None:
                ledger.release(hold)
            raise LLMBudgetExceededError(
                f"{name} budget spent: {_usd(spent)} {scope} (calls in flight included) "
                f">= budget.{name}_usd "
                f"{_usd(limit)}; nothing was sent. To continue, {fix}")
    return hold


def _budget_windows(budget: Budget, now: float) -> list[tuple[str, float, float | None, str, str]]:
    """``(name, limit, since, scope, fix)`` for each budget that is set."""
    today = datetime.fromtimestamp(now, timezone.utc).replace(hour=0, minute=0, second=0,
                                                              microsecond=0)
    month = today.replace(day=1)
    next_month = (month.replace(year=month.year + 1, month=1) if month.month == 12
                  else month.replace(month=month.month + 1))
    windows: list[tuple[str, float, float | None, str, str]] = []
    if budget.daily_usd is not None:
        windows.append(("daily", budget.daily_usd, today.timestamp(), "since 00:00 UTC",
                        "raise budget.daily_usd in your config or wait until 00:00 UTC"))
    if budget.monthly_usd is not None:
        windows.append(("monthly", budget.monthly_usd, month.timestamp(),
                        f"since {month:%Y-%m-%d} 00:00 UTC",
                        "raise budget.monthly_usd in your config or wait until "
                        f"{next_month:%Y-%m-%d} 00:00 UTC"))
    if budget.total_usd is not None:
        windows.append(("total", budget.total_usd, None, "in total",
                        "raise budget.total_usd in your config"))
    return windows


def _usd(value: float) -> str:
    """Dollars with cents, and two significant digits below a cent: ``$1,234.50``,
    ``$0.50``, ``$0.075``, ``$0.000029``.  A real but tiny spend never shows as ``$0.00``:
    a cheap model's calls and a budget of cents must stay distinguishable."""
    if value == 0:
        return "$0.00"
    decimals = max(2, 1 - math.floor(math.log10(abs(value))))
    whole, _, fraction = f"{abs(value):,.{decimals}f}".partition(".")
    fraction = fraction[:2] + fraction[2:].rstrip("0")
    return f"{'-' if value < 0 else ''}${whole}.{fraction}"
