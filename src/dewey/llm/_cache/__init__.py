"""The response cache: keys that name an answer, and three backends that store it.

``completion_key``/``embedding_key`` hash everything that changes the answer and nothing
of transport.  Backends store JSON text, never pickle: ``MemoryCache`` (one process),
``SQLiteCache`` (one file shared by every thread and process on a machine) and
``RedisCache`` (shared by machines).  ``open_cache`` picks one from the configuration.

A cache must never break a call: at runtime a backend turns its own failures into misses
and skipped writes, with one warning on ``logging.getLogger("dewey.llm")``.  Opening a
cache, ``clear`` and ``stats`` raise ``LLMConfigError``, naming the fix.

Importing this package must stay cheap and must not import LiteLLM (a cache hit never
needs it); ``redis`` is imported only when a Redis cache is opened.
"""

from __future__ import annotations

from pathlib import Path

from .._exceptions import LLMConfigError
from .._secrets import mask_url
from ._base import CacheSetting, CacheStats, ResponseCache
from ._keys import CHAT_PREFIX, EMBEDDING_PREFIX, completion_key, embedding_key
from ._memory import MemoryCache
from ._redis import DEFAULT_REDIS_URL, REDIS_KEY_PREFIX, REDIS_SCHEMES, RedisCache
from ._sqlite import SQLiteCache, default_cache_path

__all__ = [
    "CHAT_PREFIX",
    "DEFAULT_REDIS_URL",
    "EMBEDDING_PREFIX",
    "REDIS_KEY_PREFIX",
    "CacheSetting",
    "CacheStats",
    "MemoryCache",
    "RedisCache",
    "ResponseCache",
    "SQLiteCache",
    "completion_key",
    "default_cache_path",
    "embedding_key",
    "mask_url",
    "open_cache",
]

_CHOICES = "false, true (SQLite), 'sqlite', 'memory' or 'redis'"


def open_cache(setting: CacheSetting | None, url: str | None = None, *,
               max_entries: int | None = None) -> ResponseCache | None:
    """The cache for a ``cache``/``cache_url`` setting, or None when caching is off.

    ``True`` means SQLite at ``url`` (``sqlite:///abs/path`` or a plain path) or at
    :func:`default_cache_path`, or Redis when ``url`` is a ``redis://`` URL.
    ``max_entries`` (the ``cache_max_entries`` setting) bounds a SQLite cache: the least
    recently used answers go first.  Redis bounds itself (``maxmemory-policy allkeys-lru``).
    """
    if setting is None or setting is False:
        return None
    is_redis_url = bool(url) and str(url).startswith(REDIS_SCHEMES)
    name = setting
    if setting is True:
        name = "redis" if is_redis_url else "sqlite"
    if isinstance(name, str):
        name = name.strip().lower()
        if name == "memory":
            return MemoryCache()
        if name == "sqlite":
            if is_redis_url:
                raise LLMConfigError(
                    f"cache='sqlite' but cache_url is a Redis URL ({mask_url(str(url))}): "
                    "set cache='redis', or give cache_url a file path")
            return SQLiteCache(_sqlite_path(url), max_entries=max_entries)
        if name == "redis":
            if url and not is_redis_url:
                raise LLMConfigError(
                    f"cache='redis' needs a redis://, rediss:// or unix:// cache_url, not {url!r}")
            return RedisCache(url or DEFAULT_REDIS_URL)
    raise LLMConfigError(f"unknown cache setting {setting!r}: use {_CHOICES}")


def _sqlite_path(url: str | None) -> Path:
    """The file of ``sqlite:///path`` (the URL's path, so absolute) or of a plain path."""
    if not url:
        return default_cache_path()
    path = url
    if url.startswith("sqlite:"):
        path = url[len("sqlite:"):].split("?", 1)[0]
        if path.startswith("//"):
            path = path[2:]  # "sqlite:///tmp/c.db" -> "/tmp/c.db"
        if path.startswith("//"):
            path = "/" + path.lstrip("/")  # SQLAlchemy's "sqlite:////tmp/c.db" too
    if path in ("", ":memory:"):
        raise LLMConfigError(
            f"cache_url {url!r} names no file: give a file path, or use cache='memory'")
    return Path(path).expanduser()
