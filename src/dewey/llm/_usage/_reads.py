"""The ledger's read side: what was spent, summaries and records.

Budgets and reports read the running totals (``_totals``), never a sum over every row;
``spent()`` adds the records still queued in memory, so a budget counts a call the moment
it is recorded.  After a failed read, reads fail fast for a while: a budget check per call
must not wait for a connect timeout per call while storage is down.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .._exceptions import LedgerUnavailableError, LLMConfigError
from ._format import describe
from ._log import LogEntry
from ._records import COLUMN_LIST, UsageRecord, UsageSummary, from_row, money, number
from ._totals import BY, spent_sql, summarize

__all__ = ["Reads"]

_READ_RETRY = 5.0  # after a failed read, reads fail fast for this long (no 3 s connect each call)
_COMMIT_WAIT = 1.0  # longest spent() waits for a commit in progress


class Reads(ABC):
    """The read side of :class:`Ledger` (its base class).

    ``spent()`` adds the records not yet committed to the stored total.  So that a batch
    is never counted twice (in the database and in memory) nor missed, the ledger's
    writer commits a batch and removes its records from memory together under
    ``_commit_lock``, which a ``spent()`` that must read the database holds around its
    query (waiting at most ``_COMMIT_WAIT``; if a commit hangs longer it goes ahead and
    may over-count, which errs on the side of the budget).
    """

    location: str
    _table: str
    _mark: str
    _hint: str
    _spent_ttl: float
    # The writer's state, guarded by _lock (see Ledger._init_state).
    _lock: threading.Condition
    _commit_lock: threading.Lock
    _pending: deque[tuple[int, UsageRecord | LogEntry]]
    _inflight: list[tuple[int, UsageRecord | LogEntry]]
    _generation: int
    _spent_cache: dict[float | None, tuple[int, float, float]]
    _read_down_until: float
    _read_failure: str

    def spent(self, since: float | None = None) -> float:
        """Total ``cost_usd`` of the records with ``time >= since``, queued ones included."""
        self._check_fork()
        queued, cached = self._snapshot(since)
        if cached is not None:
            return cached + queued
        with self._no_commits():
            queued, _ = self._snapshot(since)
            generation = self._generation
            total, params = self._spent_sql(since)
            rows = self._read(f"SELECT {total}", params)
        stored = float(rows[0][0] or 0.0) if rows else 0.0
        if self._spent_ttl > 0:
            if len(self._spent_cache) > 64:
                self._spent_cache.clear()
            self._spent_cache[since] = (generation, time.monotonic(), stored)
        return stored + queued

    def _snapshot(self, since: float | None) -> tuple[float, float | None]:
        """The cost of the records not yet committed, and a stored total still valid."""
        with self._lock:
            # The queue holds prompt log entries too: they cost nothing.
            queued = sum(money(item.cost_usd) for _, item in (*self._inflight, *self._pending)
                         if isinstance(item, UsageRecord)
                         and (since is None or number(item.time) >= since))
            cached = self._spent_cache.get(since)
            if (cached is not None and cached[0] == self._generation
                    and time.monotonic() - cached[1] < self._spent_ttl):
                return queued, cached[2]
            return queued, None

    def _spent_sql(self, since: float | None) -> tuple[str, list[Any]]:
        return spent_sql(self._table, self._mark, since)

    def summary(self, *, by: str = "model", since: float | None = None,
                model: str | None = None) -> list[UsageSummary]:
        """Totals per model, user or tag (most expensive first), or per UTC day (oldest
        first), read from the running totals: attempts, errors, retries, tokens, cost
        (see :class:`UsageSummary`).  A call with several tags counts under each of them;
        calls without a user or tag are under ""."""
        if by not in BY:
            raise LLMConfigError(f"summary(by={by!r}) is not supported: use by='model', "
                                 "by='user', by='tag' or by='day'")
        self.flush()
        return summarize(self._read, self._table, self._mark, by=by, since=since, model=model)

    def records(self, *, since: float | None = None, model: str | None = None,
                limit: int = 1000) -> list[UsageRecord]:
        """The most recent records first."""
        self.flush()
        where, params = self._where(since, model)
        rows = self._read(f'SELECT {COLUMN_LIST} FROM {self._table}{where} '
                          f'ORDER BY "time" DESC, id DESC LIMIT {self._mark}',
                          [*params, int(limit)])
        return [from_row(row) for row in rows]

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
        if self._reads_down():
            raise LedgerUnavailableError(
                f"usage ledger {self.location} is unavailable (it failed moments ago: "
                f"{self._read_failure}). {self._hint}")
        try:
            return self._query(sql, params)
        except Exception as exc:
            self._reads_failed(exc)
            raise LedgerUnavailableError(
                f"cannot read usage ledger {self.location}: {describe(exc)}. {self._hint}"
            ) from exc

    def _reads_down(self) -> bool:
        return time.monotonic() < self._read_down_until

    def _reads_failed(self, exc: BaseException) -> None:
        # Reads fail fast for a while: no connect timeout on each call while storage is down.
        self._read_down_until = time.monotonic() + _READ_RETRY
        self._read_failure = describe(exc)  # said by the reads that fail fast meanwhile

    @contextmanager
    def _no_commits(self) -> Iterator[None]:
        """Hold off commits (see the class docstring) for at most ``_COMMIT_WAIT``."""
        locked = self._commit_lock.acquire(timeout=_COMMIT_WAIT)
        try:
            yield
        finally:
            if locked:
                self._commit_lock.release()


    # --- provided by the ledger and its storage -----------------------------------------------

    @abstractmethod
    def flush(self, timeout: float = 5.0) -> None: ...

    @abstractmethod
    def _check_fork(self) -> None: ...

    @abstractmethod
    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]: ...
