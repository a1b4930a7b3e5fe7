"""What every backend shares: the interface, JSON values, one-time warnings, fork safety."""

from __future__ import annotations

import json
import logging
import os
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from .._secrets import redact

logger = logging.getLogger("dewey.llm")

CacheSetting = bool | str  # False/None: off; True or "sqlite"; "memory"; "redis"

_B = TypeVar("_B", bound="CacheBackend")


@dataclass(frozen=True)
class CacheStats:
    """What a cache holds, for ``dewey-llm cache stats``."""

    backend: str  # "memory" | "sqlite" | "redis"
    location: str  # file path, redis URL (password masked) or "process memory"
    entries: int  # live (unexpired) entries
    expired: int  # past their TTL but not yet purged (0 where unknown)
    size_bytes: int | None


@runtime_checkable
class ResponseCache(Protocol):
    """What the client needs of a cache. Only ``clear`` and ``stats`` ever raise."""

    backend: str

    def get(self, key: str) -> dict[str, Any] | None: ...
    def get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]: ...
    def set(self, key: str, value: dict[str, Any], ttl: float | None = None) -> None: ...
    def set_many(self, items: dict[str, dict[str, Any]], ttl: float | None = None) -> None: ...
    def delete(self, key: str) -> None: ...
    def clear(self) -> int: ...
    def stats(self) -> CacheStats: ...
    def close(self) -> None: ...


# --- values: JSON text, never pickle -------------------------------------------------------

def dumps(value: dict[str, Any]) -> str:
    """Compact JSON text of a dict (TypeError/ValueError if it is not JSON data)."""
    if not isinstance(value, dict):
        raise TypeError(f"cache values must be dicts, not {type(value).__name__}")
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: store it escaped rather than fail
        text = json.dumps(value, separators=(",", ":"))
    return text


def loads(text: str | bytes) -> dict[str, Any] | None:
    """A fresh dict from stored text; anything corrupt is a miss."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class CacheBackend:
    """Plumbing for the cache backends: one warning per kind of failure, ``with``, repr."""

    backend = ""
    location = ""

    def __init__(self) -> None:
        self._warned: set[str] = set()
        self._warn_lock = threading.Lock()

    def _warn(self, kind: str, exc: BaseException, fix: str = "") -> None:
        # Once per cache and kind: a dead cache must not flood the log at every call.
        with self._warn_lock:
            first = kind not in self._warned
            self._warned.add(kind)
        log = logger.warning if first else logger.debug
        log("response cache (%s at %s): %s failed, continuing uncached: %s%s",
            self.backend, self.location, kind, redact(f"{type(exc).__name__}: {exc}"),
            f"; to repair it, {fix}" if fix else "")

    def close(self) -> None:
        """Release connections; later calls are misses."""

    def __enter__(self: _B) -> _B:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"


# --- fork safety ----------------------------------------------------------------------------

class _ForkSensitive(Protocol):
    def after_fork(self) -> None: ...


# Caches holding locks or SQLite connections, which a forked child must not reuse.
_fork_sensitive: weakref.WeakSet[_ForkSensitive] = weakref.WeakSet()


def reset_after_fork(cache: _ForkSensitive) -> None:
    """Have ``cache.after_fork()`` run in every forked child process."""
    _fork_sensitive.add(cache)


def _after_fork() -> None:
    for cache in list(_fork_sensitive):
        cache.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
