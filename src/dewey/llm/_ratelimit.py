"""Client-side rate limits: wait until a call fits a model's requests- and tokens-per-minute.

Each limited model has two token buckets, one for requests (capacity ``rpm``) and one for
tokens (capacity ``tpm``).  A bucket starts full and refills continuously at its
capacity per 60 seconds, so a model may burst up to its per-minute limit and is then
held to the steady rate (at most ``limit + limit * T / 60`` in any T seconds).  A call
*reserves* its share at once and then sleeps until the reservation is due (the GCRA way
of running a token bucket): one look-up per call, callers are served in arrival order,
and nobody spins retrying.

A request estimated at more tokens than ``tpm`` is let through alone: it is charged the
whole bucket (``tpm``) instead of its real size, so it waits for a full bucket and then
uses all of it, instead of waiting forever for capacity that can never exist.

``rate_limits`` is keyed by model name, matched by the rule of ``_model_names`` (with or
without a provider prefix: ``gpt-4o-mini`` limits ``openai/gpt-4o-mini`` too), and the
names one limit matches share its buckets.  ``"*"`` gives the limits of every model not
listed (each model still has its own buckets).  A listed model with neither ``rpm`` nor
``tpm`` is unlimited, even when ``"*"`` is set.

With a ``redis://`` URL the buckets live in Redis (``dewey-llm-rl:<model>``), so every
process and machine using that Redis shares them; the Lua script reads the Redis server
clock, so the callers' clocks need not agree.  When Redis cannot be reached the limiter
warns once and limits within the process until Redis answers again: a rate limiter must
never be the reason a call fails.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._exceptions import LLMConfigError
from ._extras import import_extra
from ._model_names import match_name
from ._secrets import mask_url, redact, register_url_secrets

if TYPE_CHECKING:
    from ._config import RateLimit

__all__ = ["LocalRateLimiter", "RateLimiter", "RedisRateLimiter", "open_limiter"]

logger = logging.getLogger("dewey.llm")

WINDOW = 60.0  # seconds: limits are per minute
KEY_PREFIX = "dewey-llm-rl:"  # not under the cache's "dewey-llm:" keys, which `cache clear` deletes
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")

Clock = Callable[[], float]
Sleep = Callable[[float], None]
AsyncSleep = Callable[[float], Awaitable[Any]]


def open_limiter(limits: Mapping[str, RateLimit], url: str | None = None) -> RateLimiter:
    """An in-process limiter, or with a ``redis://`` URL one shared through Redis."""
    if url is None:
        return LocalRateLimiter(limits)
    if url.startswith(REDIS_SCHEMES):
        return RedisRateLimiter(limits, url)
    raise LLMConfigError(
        f"rate_limit_url must be a redis:// (or rediss://, unix://) URL, not {mask_url(url)!r}: "
        "fix it, or leave it unset to limit within this process"
    )


class RateLimiter:
    """Per-model limits; subclasses decide where the buckets live (:meth:`reserve`)."""

    def __init__(self, limits: Mapping[str, RateLimit], *, sleep: Sleep = time.sleep,
                 asleep: AsyncSleep = asyncio.sleep) -> None:
        self._configured: dict[str, _Limit | None] = {
            model: _Limit.of(limit) for model, limit in limits.items() if model != "*"}
        default = limits.get("*")
        self._default = _Limit.of(default) if default is not None else None
        # Each model name called, with the buckets' name and the limit that apply to it:
        # after the first call of a name, the hot path is a single dict look-up.
        self._resolved: dict[str, tuple[str, _Limit] | None] = {}
        self._sleep, self._asleep = sleep, asleep

    def limit_for(self, model: str) -> _Limit | None:
        """The model's limits (its own, else ``"*"``), or None when it is unlimited."""
        found = self._bucket(model)
        return found[1] if found is not None else None

    def _bucket(self, model: str) -> tuple[str, _Limit] | None:
        """The name of the buckets ``model`` draws from (the configured name it matches, so
        that every way of writing it shares them) and their limit; None: unlimited."""
        try:
            return self._resolved[model]
        except KeyError:
            pass
        name = match_name(model, self._configured)
        limit = self._configured[name] if name is not None else self._default
        found = None if limit is None else (name or model, limit)
        self._resolved[model] = found  # a race computes the same value twice: harmless
        return found

    def acquire(self, model: str, tokens: int = 0) -> float:
        """Block until one request of about ``tokens`` tokens fits; return seconds waited."""
        found = self._bucket(model)
        if found is None:
            return 0.0
        wait = self.reserve(found[0], found[1], tokens)
        if wait > 0:
            self._sleep(wait)
        return wait

    async def aacquire(self, model: str, tokens: int = 0) -> float:
        """:meth:`acquire` for asyncio: waits with ``asyncio.sleep``, never blocking the loop."""
        found = self._bucket(model)
        if found is None:
            return 0.0
        wait = await self.areserve(found[0], found[1], tokens)
        if wait > 0:
            await self._asleep(wait)
        return wait

    def close(self) -> None:
        """Release connections (nothing to do in process)."""

    def reserve(self, model: str, limit: _Limit, tokens: int) -> float:
        """Charge one request and ``tokens``; return the seconds until that charge is due."""
        raise NotImplementedError

    async def areserve(self, model: str, limit: _Limit, tokens: int) -> float:
        return self.reserve(model, limit, tokens)


class _Limit:
    """A model's rpm and tpm as floats, 0.0 meaning "not limited"."""

    __slots__ = ("rpm", "tpm")

    def __init__(self, rpm: float, tpm: float) -> None:
        self.rpm, self.tpm = rpm, tpm

    @classmethod
    def of(cls, limit: RateLimit) -> _Limit | None:
        if not limit.rpm and not limit.tpm:
            return None
        return cls(float(limit.rpm or 0), float(limit.tpm or 0))

    def cost(self, tokens: int) -> float:
        # Capped at tpm so an oversized request waits for a full bucket, not forever.
        return float(min(max(tokens, 0), self.tpm))

    def __repr__(self) -> str:
        return f"_Limit(rpm={self.rpm:g}, tpm={self.tpm:g})"


# --- in process -----------------------------------------------------------------------------

class _Buckets:
    """The request and token buckets of one model; levels go negative while callers queue."""

    __slots__ = ("requests", "stamp", "tokens")

    def __init__(self, limit: _Limit, now: float) -> None:
        self.requests, self.tokens, self.stamp = limit.rpm, limit.tpm, now

    def reserve(self, limit: _Limit, cost: float, now: float) -> float:
        elapsed = max(0.0, now - self.stamp)  # a clock that steps back refills nothing
        self.stamp = max(self.stamp, now)
        self.requests, request_wait = _take(self.requests, limit.rpm, 1.0, elapsed)
        self.tokens, token_wait = _take(self.tokens, limit.tpm, cost, elapsed)
        return max(request_wait, token_wait)


def _take(level: float, capacity: float, amount: float, elapsed: float) -> tuple[float, float]:
    """Refill ``level`` for ``elapsed`` seconds, take ``amount``: (new level, seconds of debt)."""
    if not capacity:
        return level, 0.0
    rate = capacity / WINDOW
    level = min(capacity, level + elapsed * rate) - amount
    return level, (-level / rate if level < 0 else 0.0)


class LocalRateLimiter(RateLimiter):
    """Buckets in this process, shared by its threads and event loops."""

    def __init__(self, limits: Mapping[str, RateLimit], *, clock: Clock = time.monotonic,
                 sleep: Sleep = time.sleep, asleep: AsyncSleep = asyncio.sleep) -> None:
        super().__init__(limits, sleep=sleep, asleep=asleep)
        self._clock = clock
        self._buckets: dict[str, _Buckets] = {}
        # Held only to update the numbers, never while sleeping, so the event loop is safe.
        self._lock = threading.Lock()

    def reserve(self, model: str, limit: _Limit, tokens: int) -> float:
        cost = limit.cost(tokens)
        with self._lock:
            now = self._clock()
            buckets = self._buckets.get(model)
            if buckets is None:
                buckets = self._buckets[model] = _Buckets(limit, now)
            return buckets.reserve(limit, cost, now)


# --- in Redis -------------------------------------------------------------------------------

# The same arithmetic as _Buckets.reserve, in milliseconds of the Redis server's clock.
# KEYS[1]: the model's hash {r: request level, t: token level, ts: last update}.
# ARGV: rpm, tpm (0: not limited), token cost.  Returns 0 when admitted now, else the
# milliseconds until the reservation it has just made is due.
_RESERVE_LUA = """
if redis.replicate_commands then redis.replicate_commands() end  -- TIME before writes, Redis < 5
local rpm, tpm, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
local state = redis.call('HMGET', KEYS[1], 'r', 't', 'ts')
local stamp = tonumber(state[3]) or now
local elapsed = math.max(0, now - stamp)
local wait, refill = 0, 0

local function take(level, capacity, amount)
  if capacity <= 0 then return level end
  local rate = capacity / 60000
  level = math.min(capacity, (tonumber(level) or capacity) + elapsed * rate) - amount
  if level < 0 then wait = math.max(wait, -level / rate) end
  refill = math.max(refill, (capacity - level) / rate)
  return level
end

local requests = take(state[1], rpm, 1)
local tokens = take(state[2], tpm, cost)
local fields = {'ts', string.format('%.3f', math.max(stamp, now))}
if rpm > 0 then table.insert(fields, 'r'); table.insert(fields, string.format('%.6f', requests)) end
if tpm > 0 then table.insert(fields, 't'); table.insert(fields, string.format('%.6f', tokens)) end
redis.call('HSET', KEYS[1], unpack(fields))
-- Once refilled the bucket is the same as no bucket, so let Redis drop it.
redis.call('PEXPIRE', KEYS[1], math.ceil(refill) + 1000)
return math.ceil(wait)
"""


class RedisRateLimiter(RateLimiter):
    """Buckets in Redis, shared by every process and machine that uses it.

    Falls back to a :class:`LocalRateLimiter` (one warning) while Redis is unreachable,
    and tries Redis again every ``reconnect_after`` seconds.
    """

    reconnect_after = 30.0  # seconds between tries of an unreachable Redis

    def __init__(self, limits: Mapping[str, RateLimit], url: str, *,
                 clock: Clock = time.monotonic, sleep: Sleep = time.sleep,
                 asleep: AsyncSleep = asyncio.sleep, timeout: float = 2.0) -> None:
        super().__init__(limits, sleep=sleep, asleep=asleep)
        self._url, self._clock = url, clock
        register_url_secrets(url)  # redis-py's words may quote it
        self._fallback = LocalRateLimiter(limits, clock=clock, sleep=sleep, asleep=asleep)
        self._down_until: float | None = None  # set while Redis is failing
        self._client: Any = None
        self._script: Any = None
        redis = import_extra("redis", extra="redis", needed_for="rate_limit_url")
        try:
            self._client = redis.Redis.from_url(
                url, socket_connect_timeout=timeout, socket_timeout=timeout)
            self._script = self._client.register_script(_RESERVE_LUA)
        except Exception as exc:  # a malformed URL: limit within this process, never break calls
            self._failed(exc)

    def reserve(self, model: str, limit: _Limit, tokens: int) -> float:
        down_until = self._down_until
        if self._script is None or (down_until is not None and self._clock() < down_until):
            return self._fallback.reserve(model, limit, tokens)
        try:
            waited_ms = self._script(keys=[KEY_PREFIX + model],
                                     args=[limit.rpm, limit.tpm, limit.cost(tokens)])
        except Exception as exc:  # connection, timeout, script errors alike: limit locally
            self._failed(exc)
            return self._fallback.reserve(model, limit, tokens)
        if self._down_until is not None:
            self._down_until = None
            logger.warning("rate limit store %s is back: limits are shared again",
                           mask_url(self._url))
        return int(waited_ms) / 1000.0

    async def areserve(self, model: str, limit: _Limit, tokens: int) -> float:
        # A Redis round trip is short but blocking: keep it off the event loop.
        return await asyncio.to_thread(self.reserve, model, limit, tokens)

    def _failed(self, error: BaseException) -> None:
        if self._down_until is None:  # one warning per outage, not one per call
            logger.warning(
                "rate limit store %s is unreachable (%s: %s): limiting within this process "
                "until it answers", mask_url(self._url), type(error).__name__, redact(str(error)))
        self._down_until = self._clock() + self.reconnect_after

    def close(self) -> None:
        """Close the Redis connections."""
        if self._client is not None:
            self._client.close()

