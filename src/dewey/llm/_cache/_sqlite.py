"""``SQLiteCache``: one file shared by every thread and process on the machine.

WAL mode lets readers run while a writer commits, ``synchronous=NORMAL`` keeps commits
cheap, and a 5 s busy timeout makes a process wait for another's write instead of failing.
Each thread has its own connection; each write is one ``INSERT OR REPLACE`` transaction,
so a reader sees a whole entry or none, never a mix of two writers.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .._exceptions import LLMConfigError
from ._base import Backend, CacheStats, chunks, dumps, loads, logger, reset_after_fork

_SCHEMA = ("CREATE TABLE IF NOT EXISTS responses "
           "(key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL, expires REAL)")
_GET = "SELECT value, expires FROM responses WHERE key = ?"
_PUT = "INSERT OR REPLACE INTO responses (key, value, created, expires) VALUES (?, ?, ?, ?)"
# "AND expires <= ?" spares an entry another process rewrote since we read it.
_DROP_EXPIRED = "DELETE FROM responses WHERE key = ? AND expires <= ?"

# Connections inherited by a forked child: never used nor closed there (closing could
# release the parent's locks), only kept referenced so that they are not finalised.
_inherited: list[sqlite3.Connection] = []


def default_cache_path() -> Path:
    """``$XDG_CACHE_HOME/dewey-llm/cache.db``, else ``~/.cache/dewey-llm/cache.db``."""
    base = os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "dewey-llm" / "cache.db"


class SQLiteCache(Backend):
    """Responses in ``responses(key, value, created, expires)`` of one SQLite file."""

    backend = "sqlite"

    def __init__(self, path: str | os.PathLike[str] | None = None, *, timeout: float = 5.0) -> None:
        super().__init__()
        self.path = Path(path).expanduser() if path else default_cache_path()
        self.location = str(self.path)
        self._timeout = timeout
        self._closed = False
        self._lock = threading.Lock()
        self._local = threading.local()
        self._connections: list[tuple[weakref.ref[threading.Thread], sqlite3.Connection]] = []
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _create_schema(self._conn())
        except (OSError, sqlite3.Error) as exc:
            self.close()
            raise LLMConfigError(
                f"cannot open the response cache {self.path}: {exc}; set cache_url to a writable "
                "file path, delete the file if it is not a cache database, or set cache=false"
            ) from exc
        reset_after_fork(self)

    # --- connections ---------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        return conn if conn is not None else self._connect()

    def _connect(self) -> sqlite3.Connection:
        if self._closed:
            raise sqlite3.ProgrammingError("the cache is closed")
        # timeout= sets SQLite's busy timeout; isolation_level=None: autocommit, so a
        # single statement is its own transaction and reads hold no lock afterwards.
        conn = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            alive = []
            for thread, other in self._connections:  # close those of finished threads
                owner = thread()
                if owner is None or not owner.is_alive():
                    other.close()
                else:
                    alive.append((thread, other))
            self._connections = [*alive, (weakref.ref(threading.current_thread()), conn)]
        self._local.conn = conn
        return conn

    def _reset_after_fork(self) -> None:
        _inherited.extend(conn for _, conn in self._connections)
        self._connections = []
        self._lock = threading.Lock()
        self._local = threading.local()

    def close(self) -> None:
        self._closed = True
        with self._lock:
            connections, self._connections = self._connections, []
        for _, conn in connections:
            conn.close()
        self._local = threading.local()

    # --- reads ---------------------------------------------------------------------------

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            row = self._conn().execute(_GET, (key,)).fetchone()
        except (sqlite3.Error, ValueError) as exc:
            self._warn("reading", exc)
            return None
        if row is None:
            return None
        if row[1] is not None and row[1] <= time.time():
            self._drop_expired([key])
            return None
        return loads(row[0])

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        expired: list[str] = []
        now = time.time()
        try:
            conn = self._conn()
            for chunk in chunks(list(dict.fromkeys(keys)), 500):
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT key, value, expires FROM responses WHERE key IN ({marks})"
                for key, text, expires in conn.execute(sql, chunk):
                    if expires is not None and expires <= now:
                        expired.append(key)
                    elif (value := loads(text)) is not None:
                        found[key] = value
        except (sqlite3.Error, ValueError) as exc:
            self._warn("reading", exc)
            return {}
        if expired:
            self._drop_expired(expired)
        return found

    def _drop_expired(self, keys: list[str]) -> None:
        # Best effort, and never wait for another writer: a read must not block for the
        # busy timeout just to tidy up.  An entry left behind is still a miss, and the
        # next set of that key replaces it.
        try:
            conn = self._conn()
            conn.execute("PRAGMA busy_timeout=0")
            try:
                now = time.time()
                conn.executemany(_DROP_EXPIRED, [(key, now) for key in keys])
            finally:
                conn.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")
        except sqlite3.Error as exc:
            logger.debug("response cache %s: could not drop expired entries: %s", self.path, exc)

    # --- writes --------------------------------------------------------------------------

    def set(self, key: str, value: dict[str, Any], ttl: float | None = None) -> None:
        self.set_many({key: value}, ttl)

    def set_many(self, items: dict[str, dict[str, Any]], ttl: float | None = None) -> None:
        if ttl is not None and ttl <= 0:  # expired on arrival
            for key in items:
                self.delete(key)
            return
        now = time.time()
        expires = None if ttl is None else now + ttl
        try:
            rows = [(key, dumps(value), now, expires) for key, value in items.items()]
        except (TypeError, ValueError) as exc:
            self._warn("encoding a value", exc)
            return
        try:
            conn = self._conn()
            if len(rows) == 1:
                conn.execute(_PUT, rows[0])
            elif rows:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(_PUT, rows)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        except (sqlite3.Error, ValueError) as exc:
            self._warn("writing", exc)

    def delete(self, key: str) -> None:
        try:
            self._conn().execute("DELETE FROM responses WHERE key = ?", (key,))
        except sqlite3.Error as exc:
            self._warn("writing", exc)

    # --- administration (these raise) ------------------------------------------------------

    def clear(self) -> int:
        """Delete every entry; returns how many."""
        return int(self._admin("clear", "DELETE FROM responses").rowcount)

    def purge_expired(self) -> int:
        """Delete expired entries now; returns how many."""
        sql = "DELETE FROM responses WHERE expires <= ?"
        return int(self._admin("purge", sql, (time.time(),)).rowcount)

    def stats(self) -> CacheStats:
        now = time.time()
        sql = ("SELECT COALESCE(SUM(expires IS NULL OR expires > ?), 0), "
               "COALESCE(SUM(expires <= ?), 0) FROM responses")
        live, expired = self._admin("stats", sql, (now, now)).fetchone()
        files = (self.path, self.path.with_name(self.path.name + "-wal"))
        size = sum(f.stat().st_size for f in files if f.exists())
        return CacheStats(self.backend, self.location, int(live), int(expired), size)

    def _admin(self, what: str, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        try:
            return self._conn().execute(sql, args)
        except sqlite3.Error as exc:
            raise LLMConfigError(f"cache {what} failed on {self.path}: {exc}") from exc


def _create_schema(conn: sqlite3.Connection) -> None:
    """WAL mode (kept by the file) and the table: once per open, safe against races."""
    for attempt in range(40):
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_SCHEMA)
            return
        except sqlite3.OperationalError as exc:
            # Switching to WAL can report "locked" at once, without the busy timeout,
            # while another process creates the same file: retry instead of failing.
            if "locked" not in str(exc) or attempt == 39:
                raise
            time.sleep(0.05)
