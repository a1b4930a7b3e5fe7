"""The Redis the machine runs, for cache and rate-limit tests: its URL, a skip mark, a
namespace per test.

Tests use db 15 and touch only keys carrying their own namespace, so they can run beside
each other (and beside other users of the server) and leave nothing behind.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

REDIS_URL = os.environ.get("DEWEY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
DOWN_REDIS_URL = "redis://127.0.0.1:1/15"  # nothing listens on port 1: refused at once


def connect_redis() -> redis.Redis[bytes]:
    """A raw client on the test database, to look at what the code under test stored."""
    return redis.Redis.from_url(REDIS_URL, socket_timeout=5, socket_connect_timeout=2)


def redis_available() -> bool:
    try:
        with connect_redis() as client:
            return bool(client.ping())
    except Exception:
        return False


needs_redis = pytest.mark.skipif(not redis_available(), reason=f"no Redis at {REDIS_URL}")


@pytest.fixture
def redis_namespace() -> Iterator[str]:
    """A word of this test's own, to put in key prefixes, model names or prompts.

    Afterwards every key whose name contains it is deleted, and so is every string value
    containing it: cache entries are named by a hash of the request, so a test finds its
    own by the namespace it put in the prompt (and so in the stored answer).
    """
    namespace = f"test-{uuid.uuid4().hex}"
    yield namespace
    word = namespace.encode()
    with connect_redis() as client:
        # types-redis leaves Redis.type() untyped
        mine = [name for name in client.scan_iter(count=1000)
                if word in name
                or (client.type(name) == b"string"  # type: ignore[no-untyped-call]
                    and word in (client.get(name) or b""))]
        if mine:
            client.unlink(*mine)
