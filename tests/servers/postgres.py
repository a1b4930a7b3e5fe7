"""The PostgreSQL the machine runs, for ledger tests: its URL, a skip mark, a table per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

PG_URL = os.environ.get("DEWEY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
DOWN_PG_URL = "postgresql://postgres@127.0.0.1:1/test"  # nothing listens on port 1


def postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=2):
            return True
    except Exception:
        return False


needs_postgres = pytest.mark.skipif(not postgres_available(), reason=f"no PostgreSQL at {PG_URL}")


@pytest.fixture
def pg_table() -> Iterator[str]:
    """A table of this test's own, dropped afterwards."""
    import psycopg

    table = f"dewey_usage_test_{uuid.uuid4().hex[:10]}"
    yield table
    with psycopg.connect(PG_URL, autocommit=True) as connection:
        connection.execute(f"DROP TABLE IF EXISTS {table}, {table}_reservations, {table}_daily, "
                           f"{table}_totals, {table}_tags, {table}_log")
