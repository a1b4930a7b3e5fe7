"""What the ledger stores: usage records and summaries, and the rows they become."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["COLUMNS", "COLUMN_LIST", "UsageRecord", "UsageSummary", "from_row", "insert_sql",
           "money", "number", "tags_json", "tags_of", "to_row"]

_INT64 = 2**63 - 1

COLUMNS = ("time", "model", "provider", "kind", "outcome", "status_code", "attempt",
           "prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd", "saved_usd",
           "latency_s", "cache_hit", "tags", "user_label", "call_id")
# "time" is a type name in Postgres: quote every column so one statement fits both engines.
COLUMN_LIST = ", ".join(f'"{name}"' for name in COLUMNS)


@dataclass(frozen=True)
class UsageRecord:
    """One attempt at one model, as the client saw it."""

    model: str
    provider: str | None
    kind: str  # "completion" | "stream" | "embedding"
    outcome: str  # "ok" or the error class name, e.g. "LLMRateLimitError"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    saved_usd: float = 0.0  # what a cache hit saved
    latency_s: float = 0.0
    cache_hit: bool = False
    status_code: int | None = None
    attempt: int = 1
    tags: tuple[str, ...] = ()
    user: str | None = None
    time: float = field(default_factory=time.time)  # unix seconds (UTC)
    call_id: str | None = None  # the attempts of one call share it, and so does its log entry


@dataclass(frozen=True)
class UsageSummary:
    """One row of :meth:`Ledger.summary`: the totals of one model, user, tag or UTC day.

    ``calls`` counts attempts (a call retried once is two), ``errors`` the failed ones, and
    ``retries`` the attempts after the first at the same model (``attempt > 1``; a
    fallback model's first attempt is not a retry)."""

    key: str  # the model, user, tag, or the day "YYYY-MM-DD" (UTC)
    calls: int
    errors: int
    cache_hits: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    saved_usd: float
    retries: int = 0  # last, with a default: positional construction stays as it was


def insert_sql(table: str, mark: str) -> str:
    """The INSERT of one row into ``table``, with the engine's parameter ``mark``."""
    return f"INSERT INTO {table} ({COLUMN_LIST}) VALUES ({', '.join([mark] * len(COLUMNS))})"


def number(value: Any) -> float:
    """A finite float: NaN or infinity in a sum would silently disable every budget."""
    result = float(value or 0.0)
    return result if math.isfinite(result) else 0.0


def money(value: Any) -> float:
    """An amount of USD to add up: anything that is not a finite number counts as 0."""
    try:
        return number(value)
    except (TypeError, ValueError):
        return 0.0


def _integer(value: Any) -> int:
    return max(-_INT64, min(_INT64, int(value or 0)))  # both engines store 64-bit integers


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def tags_json(tags: Any) -> str:
    """How tags are stored (the ledger's rows and the prompt log's alike): a JSON list,
    each tag once, so that a call counts once under each of its tags."""
    if not tags and not isinstance(tags, str):
        return "[]"  # most calls: without encoding JSON on the writer thread
    listed = [tags] if isinstance(tags, str) else list(tags)
    return json.dumps(list(dict.fromkeys(str(tag) for tag in listed)))


def tags_of(stored: Any) -> tuple[str, ...]:
    """The tags :func:`tags_json` stored (none for a value that is not its JSON)."""
    if not stored or stored == "[]":
        return ()  # most rows: without decoding JSON (the writer folds every row it writes)
    try:
        listed = json.loads(stored)
    except ValueError:
        return ()
    return tuple(str(tag) for tag in listed) if isinstance(listed, list) else ()


def to_row(record: UsageRecord) -> tuple[Any, ...]:
    """The values of ``record`` in ``COLUMNS`` order; raises on a malformed record."""
    return (
        number(record.time), str(record.model), _text(record.provider), str(record.kind),
        str(record.outcome), None if record.status_code is None else _integer(record.status_code),
        _integer(record.attempt), _integer(record.prompt_tokens),
        _integer(record.completion_tokens), _integer(record.cached_tokens),
        number(record.cost_usd), number(record.saved_usd), number(record.latency_s),
        int(bool(record.cache_hit)), tags_json(record.tags),
        _text(record.user), _text(record.call_id),
    )


def from_row(row: Sequence[Any]) -> UsageRecord:
    """The record of a row read in ``COLUMNS`` order."""
    (when, model, provider, kind, outcome, status_code, attempt, prompt_tokens,
     completion_tokens, cached_tokens, cost_usd, saved_usd, latency_s, cache_hit, tags,
     user, call_id) = row
    return UsageRecord(
        model=model, provider=provider, kind=kind, outcome=outcome,
        prompt_tokens=int(prompt_tokens or 0), completion_tokens=int(completion_tokens or 0),
        cached_tokens=int(cached_tokens or 0), cost_usd=float(cost_usd or 0.0),
        saved_usd=float(saved_usd or 0.0), latency_s=float(latency_s or 0.0),
        cache_hit=bool(cache_hit), status_code=None if status_code is None else int(status_code),
        attempt=int(attempt or 1), tags=tags_of(tags), user=user,
        time=float(when), call_id=call_id,
    )
