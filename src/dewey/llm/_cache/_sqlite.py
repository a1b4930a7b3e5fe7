"""``SQLiteCache``: one file shared by every thread and process on the machine.

WAL mode lets readers run while a writer commits, ``synchronous=NORMAL`` keeps commits
cheap, and a 5 s busy timeout makes a process wait for another's write instead of failing.
Each thread has its own connection; each write is one ``INSERT OR REPLACE`` transaction,
so a reader sees a whole entry or none, never a mix of two writers.

A file that cannot be used (not a database, damaged, in a read-only place) makes the cache
unusable, not the client: one warning, then every call runs uncached, trying the file
again every ``_RETRY`` seconds.  ``clear`` deletes such a file and creates it anew.

With ``max_entries``, the least recently used entries go first: a hit is noted in memory
and written to ``used_at`` with the next write (one UPDATE for many hits, none on the read
path), and the writer evicts the entries beyond the bound every ``max_entries // 100``
writes, so the file may hold up to 1% more for a moment.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .._dirs import cache_home
from .._exceptions import LLMConfigError
from ._base import CacheBackend, CacheStats, chunks, dumps, loads, logger, reset_after_fork

_SCHEMA = ("CREATE TABLE IF NOT EXISTS responses "
           "(key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL, expires REAL, used_at REAL)")
_USED_INDEX = "CREATE INDEX IF NOT EXISTS responses_used_at ON responses (used_at)"
_GET = "SELECT value, expires FROM responses WHERE key = ?"
_PUT = ("INSERT OR REPLACE INTO responses (key, value, created, expires, used_at) "
        "VALUES (?, ?, ?, ?, ?)")
_TOUCH = "UPDATE responses SET used_at = ? WHERE key = ? AND used_at < ?"
_EVICT = ("DELETE FROM responses WHERE key IN "
          "(SELECT key FROM responses ORDER BY used_at LIMIT ?)")
_MAX_TOUCHED = 10_000  # hits remembered between writes; more are not worth the memory
# "AND expires <= ?" spares an entry another process rewrote since we read it.
_DROP_EXPIRED = "DELETE FROM responses WHERE key = ? AND expires <= ?"

_RETRY = 30.0  # seconds an unusable file is left alone before it is tried again
_FIX = ("run `dewey-llm cache clear` (it recreates the file), set cache_url to a writable file path, "
        "or set cache=false")

# Connections inherited by a forked child: never used nor closed there (closing could
# release the parent's locks), only kept referenced so that they are not finalised.
_inherited: list[sqlite3.Connection] = []


def default_cache_path() -> Path:
    """``$XDG_CACHE_HOME/dewey-llm/cache.db``, else ``~/.cache/dewey-llm/cache.db``."""
    return cache_home() / "cache.db"


class SQLiteCache(CacheBackend):
    """Responses in ``responses(key, value, created, expires)`` of one SQLite file."""

    backend = "sqlite"

    def __init__(self, path: str | os.PathLike[str] | None = None, *, timeout: float = 5.0,
                 max_entries: int | None = None) -> None:
        super().__init__()
        if max_entries is not None and (isinstance(max_entries, bool) or max_entries < 1):
            raise LLMConfigError(f"cache_max_entries must be a whole number >= 1, not {max_entries!r}")
        self.max_entries = max_entries
        self._touched: dict[str, float] = {}  # key -> time of a hit not yet written
        self._writes = 0  # writes since the last eviction
        self.path = Path(path).expanduser() if path else default_cache_path()
        self.location = str(self.path)
        self._timeout = timeout
        self._closed = False
        self._lock = threading.Lock()
        self._local = threading.local()
        self._connections: list[tuple[weakref.ref[threading.Thread], sqlite3.Connection]] = []
        self._open_lock = threading.Lock()
        self._ready = False  # the file exists and has its table
        self._retry_at = 0.0  # monotonic time before which an unusable file is not tried
        self._failure = ""  # why it is unusable
        reset_after_fork(self)
        # Opened now, so that a bad file is reported when the client starts; if it cannot
        # be used, that was warned and the cache runs as all misses.
        with contextlib.suppress(sqlite3.Error):
            self._conn()

    # --- connections ---------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._ready:
            return conn
        if conn is not None:  # the file turned out unusable: this thread drops its connection
            self._local.conn = None
            self._forget(conn)
        self._open()
        conn = getattr(self._local, "conn", None)
        return conn if conn is not None else self._connect()

    def _open(self) -> None:
        """Create the file and its table once; on failure, warn once and fail fast for a while."""
        with self._open_lock:
            if self._ready:
                return
            if time.monotonic() < self._retry_at:
                raise _Unusable(self._failure)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                _create_schema(self._connect())
            except (OSError, sqlite3.Error) as exc:
                conn = getattr(self._local, "conn", None)
                if conn is not None:
                    self._local.conn = None
                    self._forget(conn)
                self._unusable(exc)
                raise _Unusable(self._failure) from exc
            self._ready = True

    def _unusable(self, exc: BaseException) -> None:
        self._ready = False
        self._retry_at = time.monotonic() + _RETRY
        self._failure = f"{type(exc).__name__}: {exc}"
        self._warn("opening", exc, fix=_FIX)

    def _failed(self, kind: str, exc: BaseException) -> None:
        """Log a failed read or write once; a damaged file makes the cache unusable."""
        if isinstance(exc, _Unusable):
            return  # warned when it became unusable
        if _damaged(exc):
            with self._open_lock:
                self._unusable(exc)
        else:
            self._warn(kind, exc)

    def _forget(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            self._connections = [(t, c) for t, c in self._connections if c is not conn]
        conn.close()

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

    def after_fork(self) -> None:
        _inherited.extend(conn for _, conn in self._connections)
        self._connections = []
        self._lock = threading.Lock()
        self._open_lock = threading.Lock()
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
            self._failed("reading", exc)
            return None
        if row is None:
            return None
        if row[1] is not None and row[1] <= time.time():
            self._drop_expired([key])
            return None
        self._touch([key])
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
            self._failed("reading", exc)
            return {}
        if expired:
            self._drop_expired(expired)
        self._touch(found)
        return found

    def _touch(self, keys: Iterable[str]) -> None:
        """Note hits for the next write to store in ``used_at`` (only with a bound)."""
        if self.max_entries is None:
            return
        now = time.time()
        with self._lock:
            for key in keys:
                if len(self._touched) < _MAX_TOUCHED or key in self._touched:
                    self._touched[key] = now

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
            rows = [(key, dumps(value), now, expires, now) for key, value in items.items()]
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
            if self.max_entries is not None:
                self._bound(conn, len(rows))
        except (sqlite3.Error, ValueError) as exc:
            self._failed("writing", exc)

    def _bound(self, conn: sqlite3.Connection, written: int) -> None:
        """Store the hits noted since the last write; every ``max_entries // 100`` writes,
        delete the least recently used entries beyond ``max_entries``."""
        assert self.max_entries is not None
        with self._lock:
            touched, self._touched = self._touched, {}
            self._writes += written
            due = self._writes >= max(1, self.max_entries // 100)
            if due:
                self._writes = 0
        if touched:
            conn.executemany(_TOUCH, [(used, key, used) for key, used in touched.items()])
        if due:
            count = conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
            if count > self.max_entries:
                conn.execute(_EVICT, (count - self.max_entries,))

    def delete(self, key: str) -> None:
        try:
            self._conn().execute("DELETE FROM responses WHERE key = ?", (key,))
        except sqlite3.Error as exc:
            self._failed("writing", exc)

    # --- administration (these raise) ------------------------------------------------------

    def clear(self) -> int:
        """Delete every entry; returns how many.  A file that cannot be used as a cache
        (not a database, damaged, read-only) is deleted and created anew: 0 entries."""
        with self._open_lock:
            self._retry_at = 0.0  # the user asks now: do not wait for the next retry
        try:
            return int(self._conn().execute("DELETE FROM responses").rowcount)
        except sqlite3.Error as exc:
            if _busy(exc):
                raise LLMConfigError(f"cache clear failed on {self.path}: {exc}") from exc
        self._recreate()
        return 0

    def _recreate(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for _, conn in connections:
            conn.close()
        self._local = threading.local()
        with self._open_lock:
            self._ready, self._retry_at = False, 0.0
        try:
            # The -wal and -shm files first: an old log must never be replayed into the new file.
            for name in (self.path.name + "-wal", self.path.name + "-shm", self.path.name):
                self.path.with_name(name).unlink(missing_ok=True)
            self._conn()
        except (OSError, sqlite3.Error) as exc:
            raise LLMConfigError(
                f"cannot recreate the response cache {self.path}: {exc}; make its directory "
                "writable, set cache_url to a writable file path, or set cache=false") from exc

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
            raise LLMConfigError(f"cache {what} failed on {self.path}: {exc}; {_FIX}") from exc


class _Unusable(sqlite3.OperationalError):
    """The file cannot be used now; a warning said so already."""


def _damaged(exc: BaseException) -> bool:
    """Whether an error says the file is not a (whole) database: retrying cannot help."""
    name = getattr(exc, "sqlite_errorname", "")
    return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or (
        "malformed" in str(exc) or "not a database" in str(exc))


def _busy(exc: BaseException) -> bool:
    """Another connection holds a lock: the file is fine, only busy."""
    return "locked" in str(exc) or "busy" in str(exc)


def _create_schema(conn: sqlite3.Connection) -> None:
    """WAL mode (kept by the file) and the table: once per open, safe against races."""
    for attempt in range(40):
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_SCHEMA)
            columns = [row[1] for row in conn.execute("PRAGMA table_info(responses)")]
            if "used_at" not in columns:  # a file of an earlier version: last used = created
                _add_used_at(conn)
            conn.execute(_USED_INDEX)
            return
        except sqlite3.OperationalError as exc:
            # Switching to WAL can report "locked" at once, without the busy timeout,
            # while another process creates the same file: retry instead of failing.
            if "locked" not in str(exc) or attempt == 39:
                raise
            time.sleep(0.05)


def _add_used_at(conn: sqlite3.Connection) -> None:
    """Add ``used_at`` to an earlier version's table, unless another process just did."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(responses)")]
        if "used_at" not in columns:
            conn.execute("ALTER TABLE responses ADD COLUMN used_at REAL")
            conn.execute("UPDATE responses SET used_at = created")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
