"""``MemoryCache``: a bounded in-process cache for one client or one script."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from .._exceptions import LLMConfigError
from ._base import CacheBackend, CacheStats, dumps, loads, reset_after_fork


class MemoryCache(CacheBackend):
    """A dict behind a lock; past ``max_entries`` the least recently used entry goes."""

    backend = "memory"
    location = "process memory"

    def __init__(self, max_entries: int = 10_000) -> None:
        super().__init__()
        if max_entries < 1:
            raise LLMConfigError(f"MemoryCache max_entries must be at least 1, not {max_entries}")
        self.max_entries = max_entries
        # key -> (JSON text, monotonic expiry or None). Text, not the dict: every get
        # returns a fresh dict, and a caller mutating its value cannot change the cache.
        self._entries: OrderedDict[str, tuple[str, float | None]] = OrderedDict()
        self._lock = threading.Lock()
        reset_after_fork(self)

    def after_fork(self) -> None:
        self._lock = threading.Lock()  # another thread may have held it at fork time

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            text = self._live(key, time.monotonic())
        return None if text is None else loads(text)

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            texts = {key: text for key in keys if (text := self._live(key, now)) is not None}
        return {key: value for key, text in texts.items() if (value := loads(text)) is not None}

    def _live(self, key: str, now: float) -> str | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] is not None and entry[1] <= now:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def set(self, key: str, value: dict[str, Any], ttl: float | None = None) -> None:
        self.set_many({key: value}, ttl)

    def set_many(self, items: dict[str, dict[str, Any]], ttl: float | None = None) -> None:
        try:
            texts = {key: dumps(value) for key, value in items.items()}
        except (TypeError, ValueError) as exc:
            self._warn("encoding a value", exc)
            return
        expires = None if ttl is None else time.monotonic() + ttl
        with self._lock:
            for key, text in texts.items():
                self._entries.pop(key, None)
                if ttl is None or ttl > 0:
                    self._entries[key] = (text, expires)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def delete(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> int:
        with self._lock:
            removed = len(self._entries)
            self._entries.clear()
        return removed

    def purge_expired(self) -> int:
        """Drop expired entries now; returns how many."""
        now = time.monotonic()
        with self._lock:
            dead = [k for k, (_, expires) in self._entries.items()
                    if expires is not None and expires <= now]
            for key in dead:
                del self._entries[key]
        return len(dead)

    def stats(self) -> CacheStats:
        now = time.monotonic()
        with self._lock:
            entries = list(self._entries.items())
        expired = sum(1 for _, (_, expires) in entries if expires is not None and expires <= now)
        size = sum(len(key) + len(text.encode("utf-8")) for key, (text, _) in entries)
        return CacheStats(self.backend, self.location, len(entries) - expired, expired, size)
