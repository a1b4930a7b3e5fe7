"""The usage ledger: one row per model call, read by ``dewey-llm usage`` and by budgets;
and the prompt log beside it (``_log``), read by ``dewey-llm logs`` and conversations.

Records go to SQLite (the default, ``~/.local/share/dewey-llm/usage.db``) or PostgreSQL
(shared by processes and machines, so that a budget holds across all of them), written in
the background so that a model call is never slowed down or failed by its bookkeeping
(``_ledger``).  Budgets hold across threads and processes through reservations
(``_budgets``).  ``open_ledger`` picks the storage from the ``usage_db`` setting.

API keys are never stored: a record has no field for them.

This package imports neither LiteLLM nor psycopg (a Postgres ledger imports psycopg when
it first connects) nor pydantic, so that importing it stays cheap.
"""

from __future__ import annotations

from .._exceptions import LedgerUnavailableError, LLMConfigError
from .._secrets import mask_url
from ._budgets import RESERVATION_TTL, check_budget
from ._format import usd
from ._ledger import MAX_PENDING, Ledger
from ._log import ConversationSummary, LogEntry, LoggedResponse
from ._postgres import PostgresLedger, postgres_ledger
from ._records import UsageRecord, UsageSummary
from ._report import parse_since, render_usage
from ._sqlite import SQLiteLedger, default_ledger_path

__all__ = [
    "MAX_PENDING",
    "RESERVATION_TTL",
    "ConversationSummary",
    "Ledger",
    "LedgerUnavailableError",
    "LogEntry",
    "LoggedResponse",
    "PostgresLedger",
    "SQLiteLedger",
    "UsageRecord",
    "UsageSummary",
    "check_budget",
    "default_ledger_path",
    "mask_url",
    "open_ledger",
    "parse_since",
    "render_usage",
    "usd",
]


def open_ledger(url: str | None = None, *, retention_days: float | None = None) -> Ledger:
    """The ledger for a ``usage_db`` setting.

    ``None`` -> SQLite at :func:`default_ledger_path`; a path, or ``sqlite:///relative.db``
    / ``sqlite:////absolute.db`` (SQLAlchemy's convention) -> SQLite;
    ``postgresql://...`` or ``postgres://...`` -> PostgreSQL, in the table ``dewey_usage``
    unless the URL names another with ``?table=NAME`` (or ``schema.NAME``), e.g. to keep
    two teams' ledgers apart in one database.  ``retention_days`` (the
    ``usage_retention_days`` setting): rows older than that are deleted in the background,
    their running totals kept, so budgets and reports still count them.
    """
    text = (url or "").strip()
    if not text:
        return SQLiteLedger(default_ledger_path(), retention_days=retention_days)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in ("postgresql", "postgres"):
        return postgres_ledger(text, retention_days=retention_days)
    if scheme == "sqlite":
        prefix = "sqlite:///"
        path = text[len(prefix):].split("?", 1)[0] if text.lower().startswith(prefix) else ""
        if not path or path == ":memory:":
            raise LLMConfigError(f"usage_db {text!r} names no file: write sqlite:///usage.db "
                                 "(relative) or sqlite:////var/lib/usage.db (absolute)")
        return SQLiteLedger(path, retention_days=retention_days)
    if scheme:
        raise LLMConfigError(
            f"usage_db {mask_url(text)!r} is not supported: use a SQLite file path, "
            "sqlite:///path, or postgresql://user@host:5432/db")
    return SQLiteLedger(text, retention_days=retention_days)
