"""Storage of a ledger: the hooks each engine implements, and its two connections.

A ledger has a ``_writer`` connection, used by its writer thread only, and a ``_reader``,
used by every other thread under ``_read_lock``: a slow commit never blocks a read.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Protocol

__all__ = ["Storage"]

logger = logging.getLogger("dewey.llm")

# The one module-global: connections inherited by a forked child are kept alive forever,
# because closing (or collecting) one would send the server a goodbye on the parent's socket.
_ABANDONED: list[Any] = []


class _Connection(Protocol):
    """What the shared code needs of a SQLite or psycopg connection."""

    def commit(self) -> None: ...

    def close(self) -> None: ...


class Storage(ABC):
    """The storage side of :class:`Ledger` (its base class): SQLite or PostgreSQL."""

    _writer: _Connection | None
    _reader: _Connection | None

    def _init_connections(self) -> None:
        self._writer = None
        self._reader = None
        self._read_lock = threading.Lock()

    @abstractmethod
    def _write(self, rows: list[tuple[Any, ...]], settled: list[str],
               logs: list[tuple[Any, ...]]) -> None:
        """Insert ``rows`` (in ``COLUMNS`` order) and the prompt log's ``logs`` (in
        ``LOG_COLUMNS`` order), delete the reservations ``settled`` and expired ones, in a
        transaction left open for ``_commit``; writer thread only.  On failure, roll back
        and raise."""

    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any]) -> None:
        """Run one write at once, on a connection of its own (never the writer's),
        creating the tables if needed."""

    @abstractmethod
    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run a read on a connection of its own (never the writer's)."""

    @abstractmethod
    def _transient(self, error: Exception) -> bool:
        """Whether a failed write should be retried later (else its records are dropped)."""

    # --- connections: shared by both engines -------------------------------------------------

    def _commit(self) -> None:
        """Commit the rows of the last ``_write``; on failure, close the writer and raise."""
        try:
            if self._writer is not None:
                self._writer.commit()
        except BaseException:
            self._close_writer()
            raise

    def _close_writer(self) -> None:
        _close(self._writer, "writer")
        self._writer = None

    def _close_reader(self) -> None:
        # Called with _read_lock held.
        _close(self._reader, "reader")
        self._reader = None

    def _close_storage(self, *, writer: bool) -> None:
        """Close the read connection, and the writer's when ``writer``."""
        if writer:
            self._close_writer()
        with self._read_lock:
            self._close_reader()

    def _abandon_storage(self) -> None:
        """Forget connections inherited through fork, without closing them."""
        _ABANDONED.extend(c for c in (self._writer, self._reader) if c is not None)
        self._writer = self._reader = None
        self._read_lock = threading.Lock()


def _close(connection: _Connection | None, role: str) -> None:
    """Close ``connection``, if any; a failure to close is only worth a debug line."""
    if connection is not None:
        try:
            connection.close()
        except Exception:
            logger.debug("usage ledger: closing the %s connection failed", role, exc_info=True)
