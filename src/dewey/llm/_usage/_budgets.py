"""Budgets: reservations that hold a call's cost across processes, and the budget check.

Before a call is sent, :func:`check_budget` stores its estimated cost (synchronously, so
that every other caller sees it), and the record of the call settles it: the reservation
row is deleted in the same transaction that writes the record, so others always see one
or the other.  A reservation never settled (its process died) stops counting after
``RESERVATION_TTL``.  This process's own spend and reservations are also kept in memory,
and budgets are checked against them when storage cannot be read.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .._exceptions import LLMBudgetExceededError
from ._format import describe, usd
from ._records import UsageRecord, money, number

if TYPE_CHECKING:
    from .._config import Budget

__all__ = ["RESERVATION_TTL", "Reservations", "check_budget"]

logger = logging.getLogger("dewey.llm")

RESERVATION_TTL = 600.0  # seconds a reservation counts if nothing settles it (its process died)
_DAY = 86400


@dataclass
class Hold:
    """A reservation of this process: ``cost`` held against budgets until ``expires``."""

    id: str
    cost: float
    expires: float  # unix seconds
    stored: bool = False  # written to storage, where other processes see it


class Reservations(ABC):
    """The budget side of :class:`Ledger` (its base class): reservations and own spend.

    The ledger provides the locks, the storage and the reads declared abstract here; its
    ``_lock`` guards the three dictionaries made by ``_init_reservations``.
    """

    location: str
    _table: str
    _mark: str
    _lock: threading.Condition

    def _init_reservations(self) -> None:
        self._holds: dict[str, Hold] = {}  # live reservations of this process
        self._settling: dict[int, Hold] = {}  # record number -> stored reservation it settles
        self._own: dict[int, float] = {}  # this process's spend per UTC day number

    def _count_own(self, record: UsageRecord, settles: str | None) -> Hold | None:
        """Add ``record`` to this process's spend and take the reservation it settles.
        Called with ``_lock`` held."""
        hold = self._holds.pop(settles, None) if settles else None
        day = int(number(record.time) // _DAY)
        self._own[day] = self._own.get(day, 0.0) + money(record.cost_usd)
        return hold

    def reserve(self, cost: float) -> str:
        """Hold ``cost`` USD against budgets, stored at once so that every process sees it;
        returns its id for ``record(..., settles=id)`` or :meth:`release`.  Never raises:
        if storage is down, the reservation is kept in this process only."""
        self._check_fork()
        hold = Hold(uuid.uuid4().hex, money(cost), time.time() + RESERVATION_TTL)
        with self._lock:
            self._holds[hold.id] = hold
        if not self._reads_down():
            try:
                self._execute(f"INSERT INTO {self._table}_reservations (id, cost_usd, expires) "
                              f"VALUES ({self._mark}, {self._mark}, {self._mark})",
                              (hold.id, hold.cost, hold.expires))
                hold.stored = True
            except Exception as exc:
                self._reads_failed(exc)
                logger.debug("usage ledger %s: reservation kept in memory: %s", self.location,
                             describe(exc))
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
                             describe(exc))

    def spent_and_reserved(self, since: float | None = None) -> float:
        """What budgets must cover: ``spent()`` plus the live reservations of every
        process, read in one statement so that a call settling in between is counted once.
        Raises :class:`LedgerUnavailableError` when storage cannot be read."""
        self._check_fork()
        now = time.time()
        with self._no_commits():  # queued records match storage until the query is done
            total, params = self._spent_sql(since)  # running totals: cheap at any size
            rows = self._read(
                f"SELECT {total}, (SELECT SUM(cost_usd) "
                f"FROM {self._table}_reservations WHERE expires > {self._mark})", [*params, now])
            queued, _ = self._snapshot(since)
            with self._lock:
                # Stored reservations whose records are queued: counted by their records.
                settling = sum(h.cost for h in self._settling.values() if h.expires > now)
                unstored = sum(h.cost for h in self._holds.values()
                               if not h.stored and h.expires > now)
        stored, reserved = (money(rows[0][0]), money(rows[0][1])) if rows else (0.0, 0.0)
        return stored + queued + reserved - settling + unstored

    def own_spend(self, since: float | None = None) -> float:
        """This process's spend (since ``since``) and live reservations, known without storage."""
        self._check_fork()
        now = time.time()
        first = -math.inf if since is None else since // _DAY
        with self._lock:
            spent = sum(cost for day, cost in self._own.items() if day >= first)
            return spent + sum(h.cost for h in self._holds.values() if h.expires > now)

    def spent_for_budget(self, since: float | None, *, own: float = 0.0) -> float:
        """:meth:`spent_and_reserved` less ``own`` (the caller's reservation); when storage
        cannot be read, one warning, and :meth:`own_spend` less ``own``."""
        # Rounded to a picodollar: adding and then removing the reservation leaves float
        # noise (1.35e-06 + r - r > 1.35e-06) that would change the figure users see.
        try:
            return max(0.0, round(self.spent_and_reserved(since) - own, 12))
        except Exception as exc:  # storage down: what this process spent still counts
            spent = max(0.0, round(self.own_spend(since) - own, 12))
            self._warn_once("budget", (
                f"cannot check the budget against usage ledger {self.location}; until it "
                f"can be read, budgets count only this process's own spend: {exc}"))
            return spent

    # --- provided by the ledger ------------------------------------------------------------

    @abstractmethod
    def _check_fork(self) -> None: ...

    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any]) -> None: ...

    @abstractmethod
    def _read(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]: ...

    @abstractmethod
    def _spent_sql(self, since: float | None) -> tuple[str, list[Any]]: ...

    @abstractmethod
    def _snapshot(self, since: float | None) -> tuple[float, float | None]: ...

    @abstractmethod
    def _no_commits(self) -> AbstractContextManager[None]: ...

    @abstractmethod
    def _reads_down(self) -> bool: ...

    @abstractmethod
    def _reads_failed(self, exc: BaseException) -> None: ...

    @abstractmethod
    def _warn_once(self, key: str, message: str) -> None: ...


def check_budget(ledger: Reservations, budget: Budget, now: float | None = None, *,
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
    own = money(reserve) if reserve is not None else 0.0
    for name, limit, since, scope, fix in windows:
        spent = ledger.spent_for_budget(since, own=own)
        if spent >= limit:
            if hold is not None:
                ledger.release(hold)
            raise LLMBudgetExceededError(
                f"{name} budget spent: {usd(spent)} {scope} (calls in flight included) "
                f">= budget.{name}_usd "
                f"{usd(limit)}; nothing was sent. To continue, {fix}")
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
