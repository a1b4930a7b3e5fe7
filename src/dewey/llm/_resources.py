"""What a client holds open: its transports, cache, usage ledger and rate limiter.

One transport of each kind (``native``, ``litellm``, ``local``) is made when a route first
needs it, unless the client was given one: LiteLLM is imported by the first call of a
route through it, never for a native or local one.  The cache, ledger and rate limiter
are those given to share state, else those the settings ask for.  Closing closes each
once, and one that fails does not keep the others open.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from ._config import LiteLLMConfig
from ._litellm import LiteLLMTransport
from ._resilience import Route
from ._transport import Transport

__all__ = ["Transports", "close_each", "open_resources"]

logger = logging.getLogger("dewey.llm")


class Transports:
    """A client's transports by kind, each made on first use (thread-safe)."""

    def __init__(self, given: Mapping[str, Transport] | None = None) -> None:
        self._made: dict[str, Transport] = dict(given or {})
        self._lock = threading.Lock()

    def for_route(self, route: Route) -> Transport:
        """The transport that sends ``route``'s calls, made on first use."""
        transport = self._made.get(route.transport)
        if transport is None:
            with self._lock:
                transport = self._made.get(route.transport)
                if transport is None:
                    transport = self._made[route.transport] = _new_transport(route.transport)
        return transport

    def loaded(self, route: Route) -> Transport:
        """:meth:`for_route`, ready to send: LiteLLM's imports LiteLLM here (seconds)."""
        transport = self.for_route(route)
        load = getattr(transport, "load", None)
        if load is not None:
            load()
        return transport

    def each(self) -> list[Transport]:
        """Every transport made or given, once: one object may serve several kinds."""
        return list({id(transport): transport for transport in self._made.values()}.values())


def _new_transport(name: str) -> Transport:
    """A transport by its route name."""
    if name == "native":
        from ._native import NativeTransport  # httpx: imported for the first native call

        return NativeTransport()
    if name == "local":
        from ._local_transport import LocalTransport

        return LocalTransport()
    return LiteLLMTransport()


def open_resources(config: LiteLLMConfig, cache: Any, ledger: Any, limiter: Any) -> tuple[Any, Any, Any]:
    """The cache, ledger and rate limiter: those given, else those the config asks for."""
    if cache is None and config.cache:
        from ._cache import open_cache

        cache = open_cache(config.cache, config.cache_url, max_entries=config.cache_max_entries)
    if ledger is None and config.track_usage:
        from ._usage import open_ledger

        ledger = open_ledger(config.usage_db, retention_days=config.usage_retention_days)
    if limiter is None and config.rate_limits:
        from ._ratelimit import open_limiter

        limiter = open_limiter(config.rate_limits, config.rate_limit_url)
    return cache, ledger, limiter


def close_each(*resources: Any) -> None:
    """Close every resource given (None: there is none)."""
    for resource in resources:
        if resource is None:
            continue
        try:
            resource.close()
        except Exception:  # one failing resource must not keep the others open
            logger.warning("closing %s failed", type(resource).__name__, exc_info=True)
