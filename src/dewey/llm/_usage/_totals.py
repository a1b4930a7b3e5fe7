"""Running totals: what budgets and reports read, so that they cost the same at ten
million rows as at ten.

Three tables sit beside the rows, updated in the transaction that writes them:

- ``{table}_daily`` (day, model): read by budget checks, ``by day`` and ``by model``;
  its size grows with days and models, not calls;
- ``{table}_totals`` (day, model, user): read by ``by user``;
- ``{table}_tags`` (day, model, tag): read by ``by tag``.  A call with two tags counts
  under both, so this table is never summed for spend; an untagged call counts under "".

A day is ``int(time / 86400)`` (UTC) in Python and in both engines' SQL, so totals built
from rows (``rebuild_sql``, the migration of a ledger written before totals existed) equal
totals kept as rows were written (``upserts``).  Rows deleted by retention stay counted.

A retry is an attempt after the first at the same model: a row with ``attempt > 1`` (the
recorder writes the retry plan's ``Step.number``, 1 for the first attempt at a model, so
a fallback model's first attempt is not a retry).  Totals written before ``retries`` was
one of their measures get it from the rows still there (``retries_migration``, once).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from ._records import UsageSummary, tags_of

__all__ = ["BY", "DAY", "KEYS", "MEASURES", "NO_TAGS", "add_partial", "day_of", "day_text",
           "fold", "fold_retries", "partial_rows", "rebuild_sql", "retries_migration", "schema",
           "spent_sql", "split_since", "summaries", "summarize", "totals_query", "upserts"]

DAY = 86400
_MAX_DAY = 2**62  # a day number both engines can store, whatever a record's time says
# Columns of every totals table, in UsageSummary's order.
MEASURES = ("calls", "errors", "cache_hits", "prompt_tokens", "completion_tokens", "cost_usd",
            "saved_usd", "retries")
# The key columns of each totals table, by its suffix.
KEYS = {"daily": ("day", "model"), "totals": ("day", "model", "user_label"),
        "tags": ("day", "model", "tag")}
# summary(by=...): the table (suffix) it reads, and its key column.
BY = {"model": ("daily", "model"), "user": ("totals", "user_label"), "tag": ("tags", "tag"),
      "day": ("daily", "day")}

Measures = list[float]  # calls, errors, ... in MEASURES order
Folded = dict[str, dict[tuple[Any, ...], Measures]]  # table suffix -> key -> measures


# SQL: a row's tags as a JSON list, with one "" when it has none (as ``_tags`` counts it).
NO_TAGS = "CASE WHEN tags IS NULL OR tags IN ('', '[]') THEN '[\"\"]' ELSE tags END"
# SQL: the MEASURES of a group of rows, as ``fold`` counts them.
_SUMS = ("COUNT(*), SUM(CASE WHEN outcome = 'ok' THEN 0 ELSE 1 END), SUM(cache_hit), "
         "SUM(prompt_tokens), SUM(completion_tokens), SUM(cost_usd), SUM(saved_usd), "
         "SUM(CASE WHEN attempt > 1 THEN 1 ELSE 0 END)")


def day_of(when: float) -> int:
    """The UTC day number of unix time ``when``: the same figure as the SQL of ``rebuild_sql``."""
    return max(-_MAX_DAY, min(_MAX_DAY, int(when / DAY)))


def day_text(day: Any) -> str:
    """"YYYY-MM-DD" of a UTC day number."""
    try:
        return datetime.fromtimestamp(int(day) * DAY, timezone.utc).date().isoformat()
    except (OverflowError, OSError, ValueError):
        return str(day)


def split_since(since: float | None) -> tuple[int | None, tuple[float, float] | None]:
    """``(first whole day, (start, end) of the part day before it)`` for ``time >= since``.

    Budgets ask from a midnight, which needs no rows; a ``--since 24h`` report reads the
    rows of its first, partial day (``start <= time < end``) and the totals of the rest."""
    if since is None:
        return None, None
    first = day_of(since)
    if first * DAY < since:
        first += 1
    return first, ((since, float(first * DAY)) if first * DAY > since else None)


def spent_sql(table: str, mark: str, since: float | None) -> tuple[str, list[Any]]:
    """An SQL expression of the stored spend since ``since``, and its parameters: the daily
    totals of whole days, and the rows of a first part day (none for budgets, which start
    at midnight)."""
    first, part = split_since(since)
    sql = f"SELECT SUM(cost_usd) FROM {table}_daily"
    params: list[Any] = []
    if first is not None:
        sql += f" WHERE day >= {mark}"
        params.append(first)
    total = f"COALESCE(({sql}), 0)"
    if part is not None:
        total += (f" + COALESCE((SELECT SUM(cost_usd) FROM {table} "
                  f'WHERE "time" >= {mark} AND "time" < {mark}), 0)')
        params.extend(part)
    return total, params


def summarize(read: Callable[[str, Sequence[Any]], list[tuple[Any, ...]]], table: str,
              mark: str, *, by: str, since: float | None,
              model: str | None) -> list[UsageSummary]:
    """``Ledger.summary``: the totals of whole days, and the rows of a first part day,
    per ``by`` key; most expensive first, or oldest day first."""
    first, part = split_since(since)
    sql, params = totals_query(table, mark, by, first, model)
    totals = {(day_text(r[0]) if by == "day" else str(r[0])): list(r[1:])
              for r in read(sql, params)}
    if part is not None:
        sql, params = partial_rows(table, mark, model)
        add_partial(totals, read(sql, [*part, *params]), by, day_text(day_of(part[0])))
    found = summaries(totals)
    if by == "day":
        return sorted(found, key=lambda row: row.key)
    return sorted(found, key=lambda row: (-row.cost_usd, row.key))


def totals_query(table: str, mark: str, by: str, first: int | None,
                 model: str | None) -> tuple[str, list[Any]]:
    """The SELECT of the measures per ``by`` key, from day ``first`` on, of ``model``."""
    suffix, key = BY[by]
    clauses: list[str] = []
    params: list[Any] = []
    if first is not None:
        clauses.append(f"day >= {mark}")
        params.append(first)
    if model is not None:
        clauses.append(f"model = {mark}")
        params.append(model)
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    sums = ", ".join(f"SUM({name})" for name in MEASURES)
    return f"SELECT {key}, {sums} FROM {table}_{suffix}{where} GROUP BY 1", params


def schema(table: str, *, integer: str, real: str) -> list[str]:
    """CREATE TABLE statements of the three totals tables, with the engine's column types."""
    numbers = ", ".join(f"{name} {real if name.endswith('_usd') else integer} NOT NULL DEFAULT 0"
                        for name in MEASURES)
    statements = []
    for suffix, keys in KEYS.items():
        columns = ", ".join(f"{key} {integer if key == 'day' else 'TEXT'} NOT NULL" for key in keys)
        statements.append(f"CREATE TABLE IF NOT EXISTS {table}_{suffix} ({columns}, {numbers}, "
                          f"PRIMARY KEY ({', '.join(keys)}))")
    return statements


def fold(rows: Iterable[Sequence[Any]]) -> Folded:
    """The totals of ``rows`` (in ``COLUMNS`` order, as ``to_row`` makes them), per table."""
    # Summed per (day, model, user, tags) first: a batch's rows mostly share one, which
    # then goes to the three tables once, not once a row.
    groups: dict[tuple[int, str, str, Any], Measures] = {}
    for row in rows:
        when, model, _, _, outcome, _, attempt, *_, cache_hit, tags, user, _ = row  # the last: call_id
        prompt, completion, cost, saved = row[7], row[8], row[10], row[11]
        values = [1, int(outcome != "ok"), int(cache_hit), prompt, completion, cost, saved,
                  int((attempt or 0) > 1)]
        group = (day_of(when), model, user or "", tags)
        total = groups.get(group)
        groups[group] = values if total is None else [a + b for a, b in zip(total, values, strict=True)]
    folded: Folded = {suffix: {} for suffix in KEYS}
    for group, values in groups.items():
        _add(folded, group, values)
    return folded


def fold_retries(rows: Iterable[Sequence[Any]]) -> Folded:
    """The totals, retries alone, of ``retries_migration``'s SELECT: ``(day, model, user,
    tags, retries)`` rows."""
    folded: Folded = {suffix: {} for suffix in KEYS}
    for day, model, user, tags, retries in rows:
        values = [0] * len(MEASURES)
        values[MEASURES.index("retries")] = int(retries)
        _add(folded, (day, model, user, tags), values)
    return folded


def _add(folded: Folded, group: tuple[int, str, str, Any], values: Sequence[float]) -> None:
    """Add ``values`` under a row's ``(day, model, user, tags)`` key in each table."""
    day, model, user, tags = group
    keys: list[tuple[str, tuple[Any, ...]]] = [("daily", (day, model)),
                                                ("totals", (day, model, user))]
    keys += [("tags", (day, model, tag)) for tag in _tags(tags)]
    for suffix, key in keys:
        # A new list each time, never one changed in place: ``values`` may serve every table.
        totals = folded[suffix]
        total = totals.get(key)
        totals[key] = list(values) if total is None else [a + b for a, b in zip(total, values, strict=True)]


def upserts(table: str, mark: str, folded: Folded) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """``(sql, params)`` adding ``folded`` to the totals tables.  Keys go in sorted order,
    so that two PostgreSQL writers lock rows in the same order and never deadlock."""
    statements = []
    for suffix, keys in KEYS.items():
        if not folded[suffix]:
            continue
        columns = [*keys, *MEASURES]
        sql = (f"INSERT INTO {table}_{suffix} AS t ({', '.join(columns)}) "
               f"VALUES ({', '.join([mark] * len(columns))}) ON CONFLICT ({', '.join(keys)}) "
               "DO UPDATE SET " + ", ".join(f"{m} = t.{m} + excluded.{m}" for m in MEASURES))
        statements.append((sql, [(*key, *values) for key, values in sorted(folded[suffix].items())]))
    return statements


def rebuild_sql(table: str, *, day_sql: str, tags_from: str) -> list[str]:
    """INSERT ... SELECT statements building the totals from every row of ``table`` (into
    empty totals tables).  ``day_sql`` is ``day_of`` in SQL; ``tags_from`` joins each row
    to its tags as ``tag(value)``, with one "" for a row without tags."""
    sums, into = _SUMS, ", ".join(MEASURES)
    return [
        f"INSERT INTO {table}_daily (day, model, {into}) SELECT {day_sql}, model, {sums} "
        f"FROM {table} GROUP BY 1, 2",
        f"INSERT INTO {table}_totals (day, model, user_label, {into}) SELECT {day_sql}, model, "
        f"COALESCE(user_label, ''), {sums} FROM {table} GROUP BY 1, 2, 3",
        f"INSERT INTO {table}_tags (day, model, tag, {into}) SELECT {day_sql}, model, "
        f"tag.value, {sums} FROM {table} {tags_from} GROUP BY 1, 2, 3",
    ]


def retries_migration(table: str, *, integer: str, day_sql: str) -> tuple[list[str], str]:
    """Totals kept before ``retries`` was a measure: the ALTER TABLE statements adding its
    column (0 everywhere), and the SELECT of the retries in the rows per day, model, user
    and tag list, for ``fold_retries`` and ``upserts``.  Rows already deleted by retention
    cannot be counted: their retries stay 0."""
    alters = [f"ALTER TABLE {table}_{suffix} ADD COLUMN retries {integer} NOT NULL DEFAULT 0"
              for suffix in KEYS]
    select = (f"SELECT {day_sql}, model, COALESCE(user_label, ''), tags, COUNT(*) FROM {table} "
              "WHERE attempt > 1 GROUP BY 1, 2, 3, 4")
    return alters, select


def partial_rows(table: str, mark: str, model: str | None) -> tuple[str, list[Any]]:
    """SQL (and its model parameter) giving the totals of rows with ``start <= time < end``
    (the two first parameters) per model, user and tag list; ``summaries`` splits them."""
    sql = (f"SELECT model, COALESCE(user_label, ''), tags, {_SUMS} "
           f'FROM {table} WHERE "time" >= {mark} AND "time" < {mark}')
    params: list[Any] = []
    if model is not None:
        sql += f" AND model = {mark}"
        params.append(model)
    return sql + " GROUP BY 1, 2, 3", params


def add_partial(totals: dict[str, Measures], rows: Iterable[Sequence[Any]], by: str,
                day: str) -> None:
    """Add the ``partial_rows`` of one ``day`` ("YYYY-MM-DD") to ``totals`` keyed ``by``."""
    for model, user, tags, *values in rows:
        keys = _tags(tags) if by == "tag" else [{"model": model, "user": user, "day": day}[by]]
        for key in keys:
            total = totals.setdefault(key, [0] * len(MEASURES))
            for index, value in enumerate(values):
                total[index] += value or 0


def summaries(totals: dict[str, Measures]) -> list[UsageSummary]:
    """``UsageSummary`` rows of ``{key: measures}``."""
    return [UsageSummary(str(key), int(v[0] or 0), int(v[1] or 0), int(v[2] or 0), int(v[3] or 0),
                         int(v[4] or 0), float(v[5] or 0.0), float(v[6] or 0.0), int(v[7] or 0))
            for key, v in totals.items()]


def _tags(text: Any) -> list[str]:
    """The distinct tags of a row's JSON list; [""] when it has none."""
    return list(dict.fromkeys(tags_of(text))) or [""]
