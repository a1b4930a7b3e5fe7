"""The prompt log: the text of every answered completion, beside the ledger rows it cost.

A :class:`LogEntry` goes through the ledger's queue and background writer, and into the
same transaction as the usage rows of its attempts: logging never slows or fails a call,
and a response is never stored without what it cost.  The attempts (retries, fallbacks,
each with its tokens and cost) are the ledger rows with the entry's ``call_id``.

Searching uses SQLite's FTS5 (an external-content index kept by triggers) or PostgreSQL's
full-text search (a GIN index on the same expression the query uses).  Texts are redacted
of every registered secret when written; headers and keys are never part of an entry.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._exceptions import LLMConfigError
from .._secrets import needs_redacting, redact
from ._records import COLUMN_LIST, UsageRecord, from_row, number, tags_json, tags_of

__all__ = ["LOG_COLUMNS", "ConversationSummary", "LogEntry", "LoggedResponse", "PromptLog",
           "as_sent", "log_insert_sql", "postgres_log_schema", "sqlite_log_schema", "to_log_row"]

LOG_COLUMNS = ("call_id", "time", "model", "conversation_id", "system", "prompt", "response",
               "messages", "tool_calls", "cache_hit", "tags", "user_label")
_LOG_LIST = ", ".join(f'"{name}"' for name in LOG_COLUMNS)
# Made once: json.dumps with options builds an encoder on every call.
_to_json = json.JSONEncoder(ensure_ascii=False, default=str).encode


@dataclass(frozen=True)
class LogEntry:
    """One answered completion, as queued for the writer."""

    call_id: str
    model: str  # the model that answered (after fallbacks), or was asked when cached
    messages: list[dict[str, Any]]  # as sent, the conversation's history included
    response: str
    tool_calls: list[Any] | None = None
    conversation_id: str | None = None
    cache_hit: bool = False
    tags: tuple[str, ...] = ()
    user: str | None = None
    time: float = field(default_factory=time.time)


@dataclass(frozen=True)
class LoggedResponse:
    """One logged exchange as read back, with the ledger rows of its attempts."""

    call_id: str
    time: float
    model: str
    conversation_id: str | None
    system: str | None
    prompt: str
    response: str
    messages: list[dict[str, Any]]
    tool_calls: list[Any] | None
    cache_hit: bool
    tags: tuple[str, ...]
    user: str | None
    attempts: list[UsageRecord]  # oldest first; the last one answered

    @property
    def cost_usd(self) -> float:
        """What every attempt of the call cost together (0 for a cache hit)."""
        return sum(attempt.cost_usd for attempt in self.attempts)

    @property
    def prompt_tokens(self) -> int:
        return sum(attempt.prompt_tokens for attempt in self.attempts)

    @property
    def completion_tokens(self) -> int:
        return sum(attempt.completion_tokens for attempt in self.attempts)

    def history(self) -> list[dict[str, Any]]:
        """The messages sent and the answer: what the next turn of its conversation sends."""
        reply: dict[str, Any] = {"role": "assistant", "content": self.response}
        if self.tool_calls:
            reply["tool_calls"] = self.tool_calls
        return [*self.messages, reply]


@dataclass(frozen=True)
class ConversationSummary:
    """One row of :meth:`PromptLog.conversations`."""

    id: str
    turns: int
    started: float
    latest: float
    model: str
    first_prompt: str
    cost_usd: float


def as_sent(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` (a request's own copies) safe from the caller's later changes until the
    writer thread stores them: only a list of content parts is still the caller's, copied
    here (a shallow copy of each part: their values are text, or an image's URL)."""
    if not any(isinstance(message.get("content"), list) for message in messages):
        return messages
    return [{**message, "content": [dict(part) if isinstance(part, dict) else part
                                    for part in message["content"]]}
            if isinstance(message.get("content"), list) else message for message in messages]


def text_of(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content
                         if isinstance(part, dict) and part.get("type") == "text")
    return "" if content is None else str(content)


def _last_texts(messages: Sequence[dict[str, Any]]) -> tuple[str | None, str | None]:
    """The text of the last system message and of the last user message (None: none)."""
    system = prompt = None
    for message in reversed(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role == "system" and system is None:
            system = text_of(message.get("content"))
        elif role == "user" and prompt is None:
            prompt = text_of(message.get("content"))
        if system is not None and prompt is not None:
            break
    return system, prompt


def to_log_row(entry: LogEntry) -> tuple[Any, ...]:
    """The values of ``entry`` in ``LOG_COLUMNS`` order, every registered secret redacted.

    Runs on the ledger's writer thread, which shares the GIL with the callers: texts are
    checked for secrets together, once (``needs_redacting``), and redacted one by one
    only when one may be there."""
    system, prompt = _last_texts(entry.messages)
    texts = [system, prompt or "", str(entry.response or ""),
             _to_json(entry.messages), _to_json(entry.tool_calls) if entry.tool_calls else None]
    if needs_redacting(*texts):
        texts = [None if text is None else redact(text) for text in texts]
    return (str(entry.call_id), number(entry.time), str(entry.model), entry.conversation_id,
            *texts, int(bool(entry.cache_hit)), tags_json(entry.tags),
            None if entry.user is None else str(entry.user))


def log_insert_sql(table: str, mark: str, entries: int = 1) -> str:
    """The INSERT of ``entries`` entries into ``table``'s log.  A call answered twice (a
    structured answer repaired by a follow-up) keeps the messages it was asked with and
    takes the last answer: the one its caller got (rows are inserted in order, so this
    holds within one statement too)."""
    values = ", ".join([f"({', '.join([mark] * len(LOG_COLUMNS))})"] * entries)
    return (f"INSERT INTO {table}_log ({_LOG_LIST}) VALUES {values} "
            "ON CONFLICT (call_id) DO UPDATE SET response = excluded.response, "
            "tool_calls = excluded.tool_calls")


def _log_table(table: str, key: str, real: str, text_index: str) -> list[str]:
    index = table.replace(".", "_")
    return [
        f'CREATE TABLE IF NOT EXISTS {table}_log (id {key}, call_id TEXT NOT NULL UNIQUE, '
        f'"time" {real} NOT NULL, model TEXT NOT NULL, conversation_id TEXT, system TEXT, '
        "prompt TEXT, response TEXT, messages TEXT, tool_calls TEXT, cache_hit INTEGER, "
        "tags TEXT, user_label TEXT)",
        f'CREATE INDEX IF NOT EXISTS {index}_log_time_idx ON {table}_log ("time")',
        f'CREATE INDEX IF NOT EXISTS {index}_log_conversation_idx ON {table}_log '
        '(conversation_id, "time")',
        f"CREATE INDEX IF NOT EXISTS {index}_call_idx ON {table} (call_id)",
        text_index,
    ]


def sqlite_log_schema(table: str) -> list[str]:
    """The SQLite log table and its FTS5 index (porter stemming: "retries" finds "retry")."""
    return [*_log_table(table, "INTEGER PRIMARY KEY", "REAL",
                        f"CREATE VIRTUAL TABLE IF NOT EXISTS {table}_log_fts USING fts5(prompt, "
                        f"response, content='{table}_log', content_rowid='id', "
                        "tokenize='porter unicode61')"),
            f"CREATE TRIGGER IF NOT EXISTS {table}_log_fts_insert AFTER INSERT ON {table}_log "
            f"BEGIN INSERT INTO {table}_log_fts(rowid, prompt, response) "
            "VALUES (new.id, new.prompt, new.response); END",
            f"CREATE TRIGGER IF NOT EXISTS {table}_log_fts_delete AFTER DELETE ON {table}_log "
            f"BEGIN INSERT INTO {table}_log_fts({table}_log_fts, rowid, prompt, response) "
            "VALUES ('delete', old.id, old.prompt, old.response); END",
            f"CREATE TRIGGER IF NOT EXISTS {table}_log_fts_update AFTER UPDATE ON {table}_log "
            f"BEGIN INSERT INTO {table}_log_fts({table}_log_fts, rowid, prompt, response) "
            "VALUES ('delete', old.id, old.prompt, old.response); "
            f"INSERT INTO {table}_log_fts(rowid, prompt, response) "
            "VALUES (new.id, new.prompt, new.response); END"]


POSTGRES_DOCUMENT = "to_tsvector('english', coalesce(prompt, '') || ' ' || coalesce(response, ''))"


def postgres_log_schema(table: str) -> list[str]:
    """The PostgreSQL log table, and a GIN index on what :meth:`PromptLog` searches."""
    index = table.replace(".", "_")
    return [f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS call_id TEXT",
            *_log_table(table, "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
                        "DOUBLE PRECISION",
                        f"CREATE INDEX IF NOT EXISTS {index}_log_search_idx ON {table}_log "
                        f"USING GIN ({POSTGRES_DOCUMENT})")]


class PromptLog:
    """The reading side of the prompt log, a base class of the ledger (which writes it)."""

    _table: str
    _mark: str
    _read: Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]
    flush: Callable[..., None]

    def _search(self, query: str) -> tuple[str, list[Any]]:
        """The engine's full-text condition on the log's rows for ``query``."""
        raise NotImplementedError

    def responses(self, *, query: str | None = None, model: str | None = None,
                  since: float | None = None, conversation: str | None = None,
                  limit: int | None = 3) -> list[LoggedResponse]:
        """The logged exchanges, most recent first (``limit=None``: all of them), that
        contain every word of ``query``, were answered by ``model``, since ``since``, in
        ``conversation``; each with the ledger rows of its attempts."""
        self.flush()
        clauses, params = [], []
        if query is not None and query.strip():
            clause, values = self._search(query)
            clauses.append(clause)
            params += values
        for column, value in (("model", model), ("conversation_id", conversation)):
            if value is not None:
                clauses.append(f"{column} = {self._mark}")
                params.append(value)
        if since is not None:
            clauses.append(f'"time" >= {self._mark}')
            params.append(float(since))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        tail = ""
        if limit is not None:
            tail = f" LIMIT {self._mark}"
            params.append(int(limit))
        rows = self._read(f'SELECT {_LOG_LIST} FROM {self._table}_log{where} '
                          f'ORDER BY "time" DESC, id DESC{tail}', params)
        attempts = self._attempts([row[0] for row in rows])
        return [_logged(row, attempts.get(row[0], [])) for row in rows]

    def _attempts(self, call_ids: list[str]) -> dict[str, list[UsageRecord]]:
        found: dict[str, list[UsageRecord]] = {}
        for start in range(0, len(call_ids), 500):  # bounded statement size
            chunk = call_ids[start:start + 500]
            marks = ", ".join([self._mark] * len(chunk))
            rows = self._read(f'SELECT {COLUMN_LIST} FROM {self._table} WHERE call_id IN '
                              f'({marks}) ORDER BY "time", id', chunk)
            for row in rows:
                record = from_row(row)
                found.setdefault(str(record.call_id), []).append(record)
        return found

    def conversations(self, *, limit: int | None = 20) -> list[ConversationSummary]:
        """The logged conversations, the most recently continued first."""
        self.flush()
        log, mark = f"{self._table}_log", self._mark
        tail, params = ("", []) if limit is None else (f" LIMIT {mark}", [int(limit)])
        rows = self._read(
            f'SELECT c.conversation_id, c.turns, c.started, c.latest, '
            f'(SELECT model FROM {log} l WHERE l.conversation_id = c.conversation_id '
            f'ORDER BY "time" DESC, id DESC LIMIT 1), '
            f'(SELECT prompt FROM {log} l WHERE l.conversation_id = c.conversation_id '
            f'ORDER BY "time", id LIMIT 1), '
            f'(SELECT SUM(cost_usd) FROM {self._table} u WHERE u.call_id IN '
            f'(SELECT call_id FROM {log} l WHERE l.conversation_id = c.conversation_id)) '
            f'FROM (SELECT conversation_id, COUNT(*) AS turns, MIN("time") AS started, '
            f'MAX("time") AS latest FROM {log} WHERE conversation_id IS NOT NULL '
            f'GROUP BY conversation_id) c ORDER BY c.latest DESC{tail}', params)
        return [ConversationSummary(str(cid), int(turns), float(started), float(latest), str(model or ""),
                             str(prompt or ""), float(cost or 0.0))
                for cid, turns, started, latest, model, prompt, cost in rows]

    def latest_conversation(self) -> str | None:
        """The id of the conversation continued last, if any was logged."""
        self.flush()
        rows = self._read(f'SELECT conversation_id FROM {self._table}_log WHERE conversation_id '
                          'IS NOT NULL ORDER BY "time" DESC, id DESC LIMIT 1', [])
        return str(rows[0][0]) if rows else None

    def conversation_turn(self, conversation: str) -> LoggedResponse:
        """The last logged exchange of ``conversation``: its history and model."""
        found = self.responses(conversation=conversation, limit=1)
        if not found:
            raise LLMConfigError(
                f"no conversation {conversation!r} in the prompt log: `dewey-llm logs list` "
                "shows the logged ones (and logging must be on: log: true)")
        return found[0]


def _logged(row: Sequence[Any], attempts: list[UsageRecord]) -> LoggedResponse:
    (call_id, when, model, conversation, system, prompt, response, messages, tool_calls,
     cache_hit, tags, user) = row
    return LoggedResponse(
        call_id=str(call_id), time=float(when), model=str(model), conversation_id=conversation,
        system=system, prompt=prompt or "", response=response or "",
        messages=_json(messages, []), tool_calls=_json(tool_calls, None),
        cache_hit=bool(cache_hit), tags=tags_of(tags), user=user,
        attempts=attempts)


def _json(text: Any, default: Any) -> Any:
    try:
        return json.loads(text) if text else default
    except ValueError:
        return default
