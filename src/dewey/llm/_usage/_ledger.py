"""The ledger's engine-neutral part: a queue, the background writer, and retention.

``Ledger.record`` runs on the hot path of every call, so it only appends to an in-memory
queue; one daemon thread per ledger writes the queue in batches to storage, with the
running totals that budgets and reports read (``_totals``), and deletes the rows older
than the retention, a bounded batch at a time.  When storage
is unavailable the ledger logs one warning, keeps up to ``MAX_PENDING`` records in memory
and retries with backoff: a model call is never slowed down or failed by its bookkeeping.
What was spent is read by ``_reads``.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import deque

from .._secrets import redact
from ._budgets import Reservations
from ._format import describe
from ._log import LogEntry, PromptLog, to_log_row
from ._reads import Reads
from ._records import UsageRecord, number, to_row
from ._storage import Storage
from ._totals import DAY

__all__ = ["MAX_PENDING", "Ledger"]

logger = logging.getLogger("dewey.llm")

MAX_PENDING = 10_000  # records kept in memory while storage is slow or down
BATCH_SIZE = 500
LINGER = 0.1  # seconds the writer waits to batch records into one commit
_MAX_BACKOFF = 30.0  # seconds between write attempts while storage is down
PRUNE_BATCH = 5000  # rows deleted per retention transaction: never a long write lock

Entry = UsageRecord | LogEntry  # what the writer's queue holds


class Ledger(Reads, Reservations, PromptLog, Storage):
    """Records usage without ever blocking or failing a call, and answers what was spent.

    Subclasses implement storage (see :class:`Storage`); reads (``spent``, ``summary``,
    ``records``) come from :class:`Reads`, reservations from :class:`Reservations`, reading
    the prompt log from :class:`PromptLog`; this class owns the queue (usage records and
    prompt log entries), the writer thread, its retries, and retention.  A commit and the
    removal of its records from memory happen together under ``_commit_lock``, so that
    ``spent()`` counts a batch once (see :class:`Reads`).

    :class:`Reads` comes first: it provides the reads :class:`Reservations` declares.
    """

    location: str  # a path, or a URL with its password masked
    _table: str = "usage"
    _mark: str = "?"  # the engine's parameter placeholder
    _day_sql: str = ""  # SQL giving the UTC day number of "time", as _totals.day_of
    _spent_ttl: float = 0.0  # seconds spent() may reuse a stored total
    _hint: str = ""  # how to fix unavailable storage, for warnings
    _prune_every: float = 60.0  # seconds between retention passes once nothing is left

    def __init__(self, location: str, *, max_pending: int = MAX_PENDING,
                 retention_days: float | None = None) -> None:
        self.location = location
        self._max_pending = max_pending
        self._retention = retention_days
        self._init_connections()
        self._init_state()

    def _init_state(self) -> None:
        self._lock = threading.Condition()  # guards everything below; never held during I/O
        self._commit_lock = threading.Lock()  # see the class docstring
        self._pending: deque[tuple[int, Entry]] = deque()
        self._inflight: list[tuple[int, Entry]] = []  # taken by the writer, not committed
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
        self._read_down_until = 0.0  # monotonic time until which reads fail fast
        self._read_failure = ""  # why, in a sentence (keys masked)
        self._prune_at = 0.0  # monotonic time of the next retention pass
        self._init_reservations()
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- writing ---------------------------------------------------------------------------

    def record(self, record: Entry, *, settles: str | None = None) -> None:
        """Queue ``record`` (a usage record, or a prompt log entry) for the writer thread.
        Never blocks on I/O, never raises.

        ``settles`` names the reservation (from :meth:`reserve`) this record replaces."""
        try:
            self._check_fork()
            with self._lock:
                hold = self._count_own(record, settles) if isinstance(record, UsageRecord) else None
                if self._closing:
                    logger.debug("usage ledger %s is closed: record dropped", self.location)
                    return
                if self._failures and isinstance(record, LogEntry):
                    # Storage is down: the usage records wait in memory (budgets count
                    # them), the prompt log's texts, which may be large, do not.
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
                if batch:
                    self._write_batch(batch)
                    self._prune_soon_if_old(batch)
                self._prune()
        except Exception:  # a bug, not an outage: say so loudly rather than stop silently
            logger.exception("usage ledger %s: the writer thread stopped", self.location)

    def _next_batch(self) -> list[tuple[int, Entry]] | None:
        with self._lock:
            while True:
                wait = self._retry_at - time.monotonic()
                if self._closing and (not self._pending or wait > 0):
                    return None
                timeout: float | None = wait
                if self._pending and wait <= 0:
                    timeout = self._linger_left()
                    if timeout <= 0:
                        break
                elif not self._pending:
                    timeout = self._prune_wait()
                    if timeout is not None and timeout <= 0:
                        return []  # nothing to write: a retention pass
                self._lock.wait(timeout)
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

    def _write_batch(self, batch: list[tuple[int, Entry]]) -> None:
        with self._lock:
            settled = [self._settling[n].id for n, _ in batch if n in self._settling]
        rows, logs = [], []
        for _, item in batch:
            try:
                if isinstance(item, LogEntry):
                    logs.append(to_log_row(item))
                else:
                    rows.append(to_row(item))
            except Exception:  # a malformed record is dropped, not retried forever
                logger.debug("usage ledger: malformed record dropped: %r", item, exc_info=True)
        try:
            if rows or settled or logs:
                self._write(rows, settled, logs)
            with self._commit_lock:
                if rows or settled or logs:
                    self._commit()
                recovered = self._settle(batch, retry=False)
        except Exception as error:
            retry = self._transient(error)
            # Warn before settling, so that flush() returns after the warning.
            if retry:
                self._warn_once("write", (
                    f"usage ledger {self.location} is unavailable ({describe(error)}); usage "
                    f"is kept in memory (up to {self._max_pending} records) and written when "
                    f"it comes back. {self._hint}"))
            else:
                self._warn_once("reject", (
                    f"usage ledger {self.location} rejected {len(rows)} records, which are "
                    f"dropped: {describe(error)}"))
            self._settle(batch, retry=retry)
            return
        if recovered:
            logger.info("usage ledger %s is available again", self.location)

    def _settle(self, batch: list[tuple[int, Entry]], *, retry: bool) -> bool:
        """Take ``batch`` out of flight: done, or back in the queue to ``retry`` later.
        Returns whether this write ended an outage."""
        with self._lock:
            self._inflight = []
            if not retry:
                for serial, _ in batch:
                    self._settling.pop(serial, None)
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

    def _prune_wait(self) -> float | None:
        """Seconds until the next retention pass (None: no retention)."""
        return None if self._retention is None else self._prune_at - time.monotonic()

    def _prune_soon_if_old(self, batch: list[tuple[int, Entry]]) -> None:
        """Records older than the retention when written (backfills, tests) are deleted
        at once, not at the next pass a minute later."""
        if self._retention is not None:
            cutoff = time.time() - self._retention * DAY
            if any(number(item.time) < cutoff for _, item in batch):
                self._prune_at = 0.0

    def _prune(self) -> None:
        """Delete one batch of rows older than the retention (their totals stay); writer
        thread only, between writes, so that a call never waits for it."""
        wait = self._prune_wait()
        if wait is None or wait > 0 or self._retention is None:
            return
        cutoff = time.time() - self._retention * DAY
        try:
            deleted = self._delete_before(cutoff, PRUNE_BATCH)
        except Exception as error:  # retried at the next pass; the rows are still counted
            logger.debug("usage ledger %s: retention pass failed: %s", self.location,
                         describe(error))
            deleted = 0
        more = deleted >= PRUNE_BATCH
        self._prune_at = time.monotonic() + (0.0 if more else self._prune_every)

    # --- shared helpers ------------------------------------------------------------------------

    def _warn_once(self, key: str, message: str) -> None:
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        logger.warning(redact(message))

    def _delete_before(self, cutoff: float, limit: int) -> int:
        """Delete up to ``limit`` of the oldest rows with ``time < cutoff`` in a transaction
        of their own; returns how many.  Writer thread only."""
        raise NotImplementedError

    def _migrating(self, outdated: str) -> None:
        """Say why the first open of a ledger of an earlier version takes a while:
        ``outdated`` is "totals" (none yet) or "retries" (totals without them)."""
        what = ("building its running totals" if outdated == "totals"
                else "counting the retries in its running totals")
        self._warn_once("migrate", (
            f"usage ledger {self.location}: {what} from the rows an earlier version wrote "
            "(once; this can take minutes for millions of rows)"))

    def _check_fork(self) -> None:
        # A forked child inherits the queue but not the writer thread, and must not touch
        # the parent's connections: start over with fresh state.
        if self._pid != os.getpid():
            self._abandon_storage()
            self._init_state()

