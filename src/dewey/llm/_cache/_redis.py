"""``RedisCache``: entries shared by machines, with Redis's own expiry.

``redis`` is imported when a cache is opened, not with this module.  Redis being down
means misses and skipped writes: after a connection failure the cache makes no network
call for ``retry_interval`` seconds, so an unreachable server costs one timeout per
interval, not one per call, and one warning in all.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterable, Iterator
from typing import Any

from .._exceptions import LLMConfigError
from .._extras import import_extra
from .._secrets import mask_url, redact, register_url_secrets
from ._base import CacheBackend, CacheStats, chunks, dumps, loads, logger

REDIS_KEY_PREFIX = "dewey-llm:"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class RedisCache(CacheBackend):
    """Each entry is the string key ``prefix + key`` holding JSON text (``SET ... PX``)."""

    backend = "redis"

    def __init__(self, url: str = DEFAULT_REDIS_URL, *, prefix: str = REDIS_KEY_PREFIX,
                 retry_interval: float = 10.0) -> None:
        super().__init__()
        self.location = mask_url(url)
        self.prefix = prefix
        self.retry_interval = retry_interval
        self._down_until = 0.0  # monotonic time before which calls skip Redis
        register_url_secrets(url)  # so that redis-py's words quoting it are redacted
        redis = import_extra("redis", extra="redis", needed_for="cache: redis")
        try:
            # No connection is made here: opening never fails because Redis is down.
            self._client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        except ValueError as exc:
            raise LLMConfigError(
                f"invalid Redis cache URL {self.location}: {redact(str(exc))}; "
                "expected redis://[:password@]host:port/db"
            ) from None
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._outage: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError)

    # --- health --------------------------------------------------------------------------

    def _skip(self) -> bool:
        return bool(self._down_until) and time.monotonic() < self._down_until

    def _failed(self, kind: str, exc: BaseException) -> None:
        if isinstance(exc, self._outage):
            self._down_until = time.monotonic() + self.retry_interval
            kind = "connecting"
        self._warn(kind, exc)

    def _ok(self) -> None:
        if self._down_until:
            self._down_until = 0.0
            logger.info("response cache (redis at %s) is reachable again", self.location)

    # --- entries -------------------------------------------------------------------------

    def get(self, key: str) -> dict[str, Any] | None:
        if self._skip():
            return None
        try:
            raw = self._client.get(self.prefix + key)
        except self._errors as exc:
            self._failed("reading", exc)
            return None
        self._ok()
        return None if raw is None else loads(raw)

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        unique = list(dict.fromkeys(keys))
        if self._skip() or not unique:
            return {}
        found: dict[str, dict[str, Any]] = {}
        try:
            for chunk in chunks(unique, 1000):
                raws = self._client.mget([self.prefix + key for key in chunk])
                for key, raw in zip(chunk, raws, strict=True):
                    if raw is not None and (value := loads(raw)) is not None:
                        found[key] = value
        except self._errors as exc:
            self._failed("reading", exc)
            return {}
        self._ok()
        return found

    def set(self, key: str, value: dict[str, Any], ttl: float | None = None) -> None:
        self.set_many({key: value}, ttl)

    def set_many(self, items: dict[str, dict[str, Any]], ttl: float | None = None) -> None:
        if self._skip() or not items:
            return
        try:
            texts = {self.prefix + key: dumps(value) for key, value in items.items()}
        except (TypeError, ValueError) as exc:
            self._warn("encoding a value", exc)
            return
        try:
            if ttl is not None and ttl <= 0:  # expired on arrival
                self._client.unlink(*texts)
            else:
                px = None if ttl is None else max(1, round(ttl * 1000))
                with self._client.pipeline(transaction=True) as pipe:
                    for name, text in texts.items():
                        pipe.set(name, text, px=px)
                    pipe.execute()
        except self._errors as exc:
            self._failed("writing", exc)
            return
        self._ok()

    def delete(self, key: str) -> None:
        if self._skip():
            return
        try:
            self._client.unlink(self.prefix + key)
        except self._errors as exc:
            self._failed("writing", exc)

    # --- administration (these raise) ------------------------------------------------------

    def _own_keys(self) -> Iterator[bytes]:
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self.prefix) + "*"  # glob-escape the prefix
        yield from self._client.scan_iter(match=pattern, count=1000)

    def clear(self) -> int:
        """Delete our keys only (SCAN + UNLINK in batches of 500); returns how many."""
        removed = 0
        try:
            batch: list[bytes] = []
            for name in self._own_keys():
                batch.append(name)
                if len(batch) >= 500:
                    removed += int(self._client.unlink(*batch))
                    batch = []
            if batch:
                removed += int(self._client.unlink(*batch))
        except self._errors as exc:
            raise self._admin_error("clear", exc) from None
        return removed

    def stats(self) -> CacheStats:
        """Our keys, counted with SCAN (expired ones are already gone in Redis)."""
        try:
            entries = sum(1 for _ in self._own_keys())
        except self._errors as exc:
            raise self._admin_error("stats", exc) from None
        return CacheStats(self.backend, self.location, entries, 0, None)

    def _admin_error(self, what: str, exc: BaseException) -> LLMConfigError:
        return LLMConfigError(
            f"cache {what} failed: Redis at {self.location}: {exc}; "
            "check that Redis is running and that cache_url is right"
        )

    def close(self) -> None:
        with contextlib.suppress(*self._errors):
            self._client.close()

