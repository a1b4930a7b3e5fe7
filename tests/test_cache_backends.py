"""The response cache: key stability and sensitivity, and each backend for real.

SQLite runs on files in ``tmp_path``; Redis on the machine's server (``tests/servers/
redis_server.py``) with a key prefix of the test's own (only that prefix is ever deleted).  Concurrency tests
hammer one store from 8 threads and 4 spawned processes at once and check that no read
ever sees a value mixed from two writes.
"""

from __future__ import annotations

import copy
import json
import logging
import multiprocessing
import os
import random
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from dewey.llm._cache import (
    CacheSetting,
    CacheStats,
    MemoryCache,
    RedisCache,
    ResponseCache,
    SQLiteCache,
    completion_key,
    default_cache_path,
    embedding_key,
    mask_url,
    open_cache,
)
from dewey.llm._exceptions import LLMConfigError, LLMError
from tests.servers.redis_server import REDIS_URL, connect_redis, needs_redis

CLOSED_PORT_URL = "redis://:s3cret-redis-pass@127.0.0.1:1/0"
SECRET = "sk-live-abcdef0123456789"

TOOL = {"type": "function", "function": {
    "name": "weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
BASE: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    "temperature": 0.2,
    "max_tokens": 50,
    "tools": [TOOL],
    "response_format": {"type": "json_object"},
}
RESPONSE = {"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "Hello!"}}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}}


def request(**changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(BASE), **changes}


# --- keys ----------------------------------------------------------------------------------

def test_completion_key_is_a_prefixed_sha256() -> None:
    key = completion_key(BASE)
    assert key.startswith("dewey:v1:chat:")
    digest = key.removeprefix("dewey:v1:chat:")
    assert re.fullmatch("[0-9a-f]{64}", digest)  # lowercase hex of 32 bytes
    assert completion_key(request()) == key
    assert completion_key(request(max_tokens=51)) != key


def test_completion_key_ignores_dict_order_and_none_values() -> None:
    reordered = {k: BASE[k] for k in reversed(list(BASE))}
    reordered["messages"] = [dict(reversed(list(m.items()))) for m in BASE["messages"]]
    reordered["tools"] = [{"function": TOOL["function"], "type": "function"}]
    with_nones = request(seed=None, stop=None, messages=[
        {"role": "system", "content": "Be brief.", "name": None},
        {"role": "user", "content": "Hi", "name": None, "tool_calls": None},
    ])
    assert completion_key(reordered) == completion_key(BASE)
    assert completion_key(with_nones) == completion_key(BASE)
    assert completion_key(request(temperature=1)) == completion_key(request(temperature=1.0))


def test_completion_key_accepts_message_objects() -> None:
    class Msg(BaseModel):
        role: str
        content: str | None = None
        name: str | None = None

    objects = request(messages=[Msg(role="system", content="Be brief."),
                                Msg(role="user", content="Hi")])
    assert completion_key(objects) == completion_key(BASE)


def test_completion_key_ignores_transport_and_never_holds_the_api_key() -> None:
    transport = {
        "api_key": SECRET, "api_base": "https://proxy.example/v1", "base_url": "https://x/v1",
        "api_version": "2024-06-01", "timeout": 3, "deadline": 9, "max_retries": 5,
        "num_retries": 2, "stream": True, "stream_options": {"include_usage": True},
        "metadata": {"trace": "abc"}, "user": "u-1", "tags": ["batch"], "cache": "refresh",
        "extra_headers": {"Authorization": f"Bearer {SECRET}"}, "headers": {"x": "y"},
        "caching": True, "organization": "org-1", "aws_secret_access_key": SECRET,
    }
    key = completion_key(request(**transport))
    assert key == completion_key(BASE)
    assert SECRET not in key
    for name, value in transport.items():
        assert completion_key(request(**{name: value})) == completion_key(BASE), name


def _set_path(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(req: dict[str, Any]) -> None:
        target: Any = req
        parts = path.split(".")
        for part in parts[:-1]:
            target = target[int(part)] if part.isdigit() else target[part]
        target[int(parts[-1]) if parts[-1].isdigit() else parts[-1]] = value
    return change


CHANGES: dict[str, Callable[[dict[str, Any]], None]] = {
    "model": _set_path("model", "gpt-4o"),
    "message content": _set_path("messages.1.content", "Hi!"),
    "message role": _set_path("messages.0.role", "user"),
    "message name": _set_path("messages.1.name", "alice"),
    "message order": lambda r: r["messages"].reverse(),
    "extra message": lambda r: r["messages"].append({"role": "user", "content": "More"}),
    "temperature": _set_path("temperature", 0.3),
    "max_tokens": _set_path("max_tokens", 51),
    "top_p": _set_path("top_p", 0.9),
    "seed": _set_path("seed", 7),
    "stop": _set_path("stop", ["\n"]),
    "n": _set_path("n", 2),
    "tool description": _set_path("tools.0.function.description", "Weather in a city"),
    "tool parameters": _set_path("tools.0.function.parameters.required", []),
    "second tool": lambda r: r["tools"].append({"type": "function", "function": {"name": "t"}}),
    "tool_choice": _set_path("tool_choice", "required"),
    "functions": _set_path("functions", [TOOL["function"]]),
    "function_call": _set_path("function_call", {"name": "weather"}),
    "response_format": _set_path("response_format", {"type": "text"}),
    "logit_bias": _set_path("logit_bias", {"50256": -100}),
}


@pytest.mark.parametrize("change", list(CHANGES.values()), ids=list(CHANGES))
def test_completion_key_changes_with_anything_that_changes_the_answer(
    change: Callable[[dict[str, Any]], None],
) -> None:
    changed = request()
    change(changed)
    assert completion_key(changed) != completion_key(BASE)


def test_completion_key_with_a_pydantic_response_format() -> None:
    class Person(BaseModel):
        name: str

    class Place(BaseModel):
        name: str
        country: str

    person = completion_key(request(response_format=Person))
    assert person == completion_key(request(response_format=Person))
    assert person != completion_key(request(response_format=Place))


def test_completion_key_refuses_values_that_are_not_json_data() -> None:
    with pytest.raises(LLMConfigError, match="temperature"):
        completion_key(request(temperature=object()))


def test_completion_key_with_unicode() -> None:
    def key(text: str) -> str:
        return completion_key(request(messages=[{"role": "user", "content": text}]))

    assert key("Grüße 🦉 你好 مرحبا") == key("Grüße 🦉 你好 مرحبا")
    assert key("Grüße 🦉 你好 مرحبا") != key("Grüsse 🦉 你好 مرحبا")
    assert key("e\u0301") != key("\u00e9")  # no Unicode normalisation: the model sees bytes


def test_embedding_key() -> None:
    key = embedding_key("text-embedding-3-small", "hello", {"dimensions": 256})
    assert key.startswith("dewey:v1:emb:") and len(key) == len("dewey:v1:emb:") + 64
    same = embedding_key("text-embedding-3-small", "hello",
                         {"dimensions": 256, "api_key": SECRET, "timeout": 5, "user": None,
                          "input": ["hello", "world"], "model": "other"})
    assert same == key
    assert embedding_key("text-embedding-3-small", "hello", {"dimensions": 512}) != key
    assert embedding_key("text-embedding-3-small", "hello") != key
    assert embedding_key("text-embedding-3-large", "hello", {"dimensions": 256}) != key
    assert embedding_key("text-embedding-3-small", "hello!", {"dimensions": 256}) != key
    assert embedding_key("m", "x", {"encoding_format": "base64"}) != embedding_key("m", "x")
    assert not embedding_key("m", "x").startswith("dewey:v1:chat:")


# --- every backend -------------------------------------------------------------------------

@pytest.fixture
def redis_cache(redis_namespace: str) -> Iterator[RedisCache]:
    cache = RedisCache(REDIS_URL, prefix=f"dewey-llm-{redis_namespace}:")
    yield cache
    cache.close()


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=needs_redis)])
def cache(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ResponseCache]:
    made: ResponseCache
    if request.param == "memory":
        made = MemoryCache()
    elif request.param == "sqlite":
        made = SQLiteCache(tmp_path / "cache.db")
    else:
        made = request.getfixturevalue("redis_cache")
    yield made
    made.close()


def test_get_set_delete(cache: ResponseCache) -> None:
    assert isinstance(cache, ResponseCache)
    assert cache.get("k1") is None
    cache.set("k1", RESPONSE)
    assert cache.get("k1") == RESPONSE
    cache.set("k1", {"v": 2})
    assert cache.get("k1") == {"v": 2}
    cache.delete("k1")
    cache.delete("never-set")
    assert cache.get("k1") is None


def test_get_returns_a_fresh_dict(cache: ResponseCache) -> None:
    value = {"choices": [{"text": "a"}]}
    cache.set("k", value)
    value["choices"].append({"text": "changed after set"})
    first = cache.get("k")
    assert first == {"choices": [{"text": "a"}]}
    first["choices"][0]["text"] = "mutated by caller"
    assert cache.get("k") == {"choices": [{"text": "a"}]}


def test_get_many_set_many_clear_stats(cache: ResponseCache) -> None:
    cache.set_many({f"k{i}": {"i": i} for i in range(5)})
    assert cache.get_many(["k0", "k3", "missing", "k3"]) == {"k0": {"i": 0}, "k3": {"i": 3}}
    assert cache.get_many([]) == {}
    stats = cache.stats()
    assert isinstance(stats, CacheStats)
    assert (stats.backend, stats.entries, stats.expired) == (cache.backend, 5, 0)
    assert stats.location
    assert cache.clear() == 5
    assert cache.get("k0") is None
    assert cache.stats().entries == 0
    assert cache.clear() == 0


def test_ttl_expiry(cache: ResponseCache) -> None:
    cache.set("short", {"v": 1}, ttl=0.2)
    cache.set_many({"short2": {"v": 2}}, ttl=0.2)
    cache.set("long", {"v": 3}, ttl=60)
    cache.set("forever", {"v": 4})
    assert cache.get("short") == {"v": 1}
    time.sleep(0.3)
    if cache.backend != "redis":  # Redis drops expired keys itself
        assert cache.stats().expired == 2
    assert cache.get("short") is None
    assert cache.get_many(["short", "short2", "long", "forever"]) == {"long": {"v": 3},
                                                                      "forever": {"v": 4}}
    assert cache.stats().entries == 2
    cache.set("zero", {"v": 5}, ttl=0)
    assert cache.get("zero") is None


def test_unicode_values(cache: ResponseCache) -> None:
    value = {"content": "Grüße 🦉 你好 مرحبا e\u0301 \x00 end", "lone": "\ud800",
             "nested": [{"ключ": "значение"}], "n": 1.5}
    key = completion_key({"model": "m", "messages": [{"role": "user", "content": "🦉"}]})
    cache.set(key, value)
    assert cache.get(key) == value
    assert cache.get_many([key]) == {key: value}


def test_bad_values_are_skipped_not_raised(cache: ResponseCache,
                                           caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dewey.llm"):
        cache.set("k", {"obj": object()})
        cache.set("k", ["not", "a", "dict"])  # type: ignore[arg-type]
    assert cache.get("k") is None
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_memory_cache_evicts_least_recently_used() -> None:
    cache = MemoryCache(max_entries=3)
    cache.set_many({"a": {"v": 1}, "b": {"v": 2}, "c": {"v": 3}})
    assert cache.get("a") == {"v": 1}  # "b" is now the oldest
    cache.set("d", {"v": 4})
    assert cache.get("b") is None
    assert cache.get_many(["a", "c", "d"]).keys() == {"a", "c", "d"}
    assert cache.stats().entries == 3


# --- SQLite --------------------------------------------------------------------------------

def test_sqlite_file_schema_and_settings(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "cache.db"
    cache = SQLiteCache(path)
    cache.set("k", RESPONSE, ttl=60)
    assert path.is_file()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    columns = [(c[1], c[2], c[3], c[5]) for c in raw.execute("PRAGMA table_info(responses)")]
    assert columns == [("key", "TEXT", 0, 1), ("value", "TEXT", 1, 0),
                       ("created", "REAL", 0, 0), ("expires", "REAL", 0, 0),
                       ("used_at", "REAL", 0, 0)]
    value, created, expires = raw.execute(
        "SELECT value, created, expires FROM responses WHERE key = 'k'").fetchone()
    assert json.loads(value) == RESPONSE  # JSON text, never pickle
    assert 59 < expires - created <= 60
    raw.close()
    conn = cache._conn()  # noqa: SLF001 - PRAGMAs are per connection: only the cache's own shows them
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert cache.stats().size_bytes
    cache.close()


def test_sqlite_instances_share_a_file(tmp_path: Path) -> None:
    one, two = SQLiteCache(tmp_path / "c.db"), SQLiteCache(tmp_path / "c.db")
    one.set("k", {"v": 1})
    assert two.get("k") == {"v": 1}
    two.delete("k")
    assert one.get("k") is None
    one.close()
    two.close()


def test_sqlite_unusable_files_warn_once_give_misses_and_stats_name_the_path(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="dewey.llm")
    directory = tmp_path / "a-directory"
    directory.mkdir()
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not a database" * 100)
    for path in (directory, not_a_dir / "cache.db", corrupt):
        caplog.clear()
        cache = SQLiteCache(path)  # a cache never stops the client from starting
        cache.set("k", {"v": 1})
        assert cache.get("k") is None and cache.get_many(["k"]) == {}
        [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert str(path) in warning and "dewey-llm cache clear" in warning
        with pytest.raises(LLMConfigError, match="cache_url") as caught:
            cache.stats()
        assert str(path) in str(caught.value)
        cache.close()


def test_sqlite_closed_cache_gives_misses(tmp_path: Path) -> None:
    cache = SQLiteCache(tmp_path / "c.db")
    cache.set("k", {"v": 1})
    cache.close()
    assert cache.get("k") is None
    assert cache.get_many(["k"]) == {}
    cache.set("k", {"v": 2})  # no exception


def test_sqlite_locked_database_skips_the_write(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    cache = SQLiteCache(tmp_path / "c.db", timeout=0.1)
    cache.set("k", {"v": 1})
    blocker = sqlite3.connect(tmp_path / "c.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    with caplog.at_level(logging.WARNING, logger="dewey.llm"):
        cache.set("k", {"v": 2})
        cache.set_many({"k": {"v": 3}, "j": {"v": 3}})
        assert cache.get("k") == {"v": 1}  # WAL: readers are not blocked by the writer
    blocker.execute("ROLLBACK")
    blocker.close()
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    cache.set("k", {"v": 4})
    assert cache.get("k") == {"v": 4}
    cache.close()


def test_sqlite_expired_read_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    cache = SQLiteCache(tmp_path / "c.db", timeout=120)
    cache.set("k", {"v": 1}, ttl=0.05)
    time.sleep(0.1)
    blocker = sqlite3.connect(tmp_path / "c.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    got: list[Any] = []
    reader = threading.Thread(target=lambda: got.append(cache.get("k")))
    reader.start()
    reader.join(timeout=60)  # a guard against hanging: waiting for the writer takes 120 s
    read_while_locked = not reader.is_alive()
    blocker.execute("ROLLBACK")
    blocker.close()
    reader.join()
    assert read_while_locked and got == [None]
    assert cache.stats().expired == 1  # dropping it needed the writer's lock: left for later
    # PRAGMAs are per connection: only the cache's own shows the timeout it set
    assert cache._conn().execute("PRAGMA busy_timeout").fetchone()[0] == 120_000  # noqa: SLF001
    cache.close()


def _forked_child(results: Any) -> None:
    cache = _FORKED[0]
    assert isinstance(cache, SQLiteCache)
    cache.set("from-child", {"v": os.getpid()})
    results.put((cache.get("from-parent"), _FORKED[1].get("m")))


_FORKED: list[Any] = []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_caches_survive_fork(tmp_path: Path) -> None:
    sqlite_cache, memory = SQLiteCache(tmp_path / "c.db"), MemoryCache()
    sqlite_cache.set("from-parent", {"v": 1})
    memory.set("m", {"v": 2})
    _FORKED[:] = [sqlite_cache, memory]
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_forked_child, args=(results,))
    child.start()
    assert results.get(timeout=30) == ({"v": 1}, {"v": 2})
    child.join(timeout=30)
    assert child.exitcode == 0
    assert sqlite_cache.get("from-child") == {"v": child.pid}
    assert sqlite_cache.get("from-parent") == {"v": 1}  # the parent's connection still works
    sqlite_cache.close()
    _FORKED.clear()


def test_sqlite_purge_expired(tmp_path: Path) -> None:
    cache = SQLiteCache(tmp_path / "c.db")
    cache.set_many({"a": {"v": 1}, "b": {"v": 2}}, ttl=0.05)
    cache.set("c", {"v": 3})
    time.sleep(0.1)
    assert cache.purge_expired() == 2
    assert (cache.stats().entries, cache.stats().expired) == (1, 0)
    cache.close()


# --- Redis ---------------------------------------------------------------------------------

@needs_redis
def test_redis_keys_are_namespaced_json_with_native_expiry(redis_cache: RedisCache) -> None:
    raw = connect_redis()
    redis_cache.set("k", RESPONSE, ttl=30)
    redis_cache.set("forever", {"v": 1})
    name = redis_cache.prefix + "k"
    stored = raw.get(name)
    assert stored is not None and json.loads(stored) == RESPONSE
    assert 0 < raw.pttl(name) <= 30_000
    assert raw.pttl(redis_cache.prefix + "forever") == -1
    assert raw.get("k") is None
    raw.close()


@needs_redis
def test_redis_clear_deletes_only_its_prefix(redis_namespace: str) -> None:
    mine = RedisCache(REDIS_URL, prefix=f"dewey-llm-{redis_namespace}:[*]?:")
    other = RedisCache(REDIS_URL, prefix=f"dewey-llm-{redis_namespace}:x:")
    mine.set_many({f"k{i}": {"i": i} for i in range(1200)})
    other.set("k", {"v": 1})
    assert mine.stats().entries == 1200
    assert mine.clear() == 1200
    assert other.get("k") == {"v": 1}
    assert other.clear() == 1


def test_redis_default_prefix_and_location() -> None:
    cache = RedisCache("redis://:pa55word-xyz@127.0.0.1:6379/15")
    assert cache.prefix == "dewey-llm:"
    assert cache.location == "redis://:***@127.0.0.1:6379/15"
    assert "pa55word" not in repr(cache)


def test_redis_down_gives_misses_and_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    cache = RedisCache(CLOSED_PORT_URL, retry_interval=0)  # retry Redis at every call
    with caplog.at_level(logging.DEBUG, logger="dewey.llm"):
        for _ in range(3):
            assert cache.get("k") is None
            assert cache.get_many(["k", "j"]) == {}
            cache.set("k", {"v": 1})
            cache.set_many({"k": {"v": 1}}, ttl=5)
            cache.delete("k")
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "127.0.0.1:1" in warnings[0].getMessage()
    assert "s3cret" not in caplog.text
    for admin in (cache.clear, cache.stats):
        with pytest.raises(LLMError) as caught:
            admin()
        assert "s3cret" not in str(caught.value) and "***" in str(caught.value)
    cache.close()


def test_redis_down_is_not_retried_at_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = RedisCache(CLOSED_PORT_URL)
    tries = []
    # Count what reaches the redis client: connection attempts have no public counter.
    redis_client = cache._client  # noqa: SLF001 - see above
    real_get = redis_client.get

    def counted_get(name: str) -> Any:
        tries.append(name)
        return real_get(name)

    monkeypatch.setattr(redis_client, "get", counted_get)
    for _ in range(100):
        assert cache.get("k") is None
    assert len(tries) == 1


# --- many threads and processes --------------------------------------------------------------

KEYS = [f"shared-{i}" for i in range(12)]


def _value(writer: int, n: int) -> dict[str, Any]:
    serial = writer * 1_000_000 + n
    return {"a": serial, "b": serial, "writer": writer,
            "text": f"<{serial}>" + "é🦉" * (200 + n % 300) + f"</{serial}>"}


def _consistent(value: dict[str, Any]) -> bool:
    serial = value["a"]
    text = value["text"]
    return bool(value["b"] == serial and value["writer"] == serial // 1_000_000
                and text.startswith(f"<{serial}>") and text.endswith(f"</{serial}>"))


def _hammer(cache: ResponseCache, writer: int, rounds: int) -> tuple[int, list[Any]]:
    rng = random.Random(writer)
    checked, bad = 0, []
    for n in range(rounds):
        if n % 10 == 0:
            cache.set_many({key: _value(writer, n) for key in rng.sample(KEYS, 3)})
        else:
            cache.set(rng.choice(KEYS), _value(writer, n))
        seen = [cache.get(rng.choice(KEYS)), *cache.get_many(rng.sample(KEYS, 4)).values()]
        for value in seen:
            if value is not None:
                checked += 1
                if not _consistent(value):
                    bad.append(value)
    return checked, bad


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _open(kind: str, location: str, prefix: str) -> ResponseCache:
    return SQLiteCache(location) if kind == "sqlite" else RedisCache(location, prefix=prefix)


def _process_worker(kind: str, location: str, prefix: str, writer: int, rounds: int,
                    barrier: Any, results: Any) -> None:
    handler = _Warnings()
    logging.getLogger("dewey.llm").addHandler(handler)
    cache = _open(kind, location, prefix)
    barrier.wait(timeout=60)
    checked, bad = _hammer(cache, writer, rounds)
    cache.close()
    results.put((writer, checked, bad[:3], handler.messages))


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("redis", marks=needs_redis)])
def test_threads_and_processes_never_see_a_mixed_entry(kind: str, tmp_path: Path,
                                                       request: pytest.FixtureRequest) -> None:
    if kind == "sqlite":
        location, prefix = str(tmp_path / "shared.db"), ""
    else:
        location, prefix = REDIS_URL, f"dewey-llm-{request.getfixturevalue('redis_namespace')}:"
    rounds = 150
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(4 + 8), context.Queue()
    processes = [context.Process(target=_process_worker,
                                 args=(kind, location, prefix, 100 + i, rounds, barrier, results))
                 for i in range(4)]
    for process in processes:
        process.start()

    cache = _open(kind, location, prefix)  # one instance, 8 threads
    handler = _Warnings()
    logging.getLogger("dewey.llm").addHandler(handler)
    outcomes: list[tuple[int, int, list[Any], list[str]]] = []

    def run_thread(writer: int) -> None:
        barrier.wait(timeout=60)
        checked, bad = _hammer(cache, writer, rounds)
        outcomes.append((writer, checked, bad[:3], []))

    threads = [threading.Thread(target=run_thread, args=(i + 1,)) for i in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        outcomes.extend(results.get(timeout=60) for _ in processes)
        for process in processes:
            process.join(timeout=30)
            assert process.exitcode == 0
        final = cache.get_many(KEYS)
        assert len(final) == len(KEYS)
        assert all(_consistent(value) for value in final.values())
    finally:
        logging.getLogger("dewey.llm").removeHandler(handler)
        cache.close()
        for process in processes:
            if process.is_alive():
                process.kill()
    assert len(outcomes) == 12
    assert sum(checked for _, checked, _, _ in outcomes) > 1000
    assert [bad for _, _, bad, _ in outcomes if bad] == []
    assert handler.messages == [] and [m for *_, m in outcomes if m] == []


# --- open_cache ------------------------------------------------------------------------------

def test_open_cache_off() -> None:
    assert open_cache(None) is None
    assert open_cache(False) is None
    assert open_cache(False, "redis://127.0.0.1:6379/0") is None


def test_open_cache_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    default = open_cache(True)
    assert isinstance(default, SQLiteCache)
    assert default.path == tmp_path / "xdg" / "dewey-llm" / "cache.db" == default_cache_path()
    default.close()
    cases: list[tuple[CacheSetting, str | None, Path]] = [
        ("sqlite", None, tmp_path / "xdg" / "dewey-llm" / "cache.db"),
        ("SQLite", str(tmp_path / "plain.db"), tmp_path / "plain.db"),
        (True, f"sqlite://{tmp_path}/url.db", tmp_path / "url.db"),
        (True, f"sqlite:///{tmp_path}/alchemy.db", tmp_path / "alchemy.db"),
    ]
    for setting, url, expected in cases:
        cache = open_cache(setting, url)
        assert isinstance(cache, SQLiteCache) and cache.path == expected, (setting, url)
        assert cache.stats().backend == "sqlite"
        cache.close()


def test_open_cache_memory_and_redis() -> None:
    assert isinstance(open_cache("memory"), MemoryCache)
    redis_cases: list[tuple[CacheSetting, str | None, str]] = [
        ("redis", None, "redis://127.0.0.1:6379/0"),
        ("redis", "redis://127.0.0.1:6379/15", "redis://127.0.0.1:6379/15"),
        (True, "redis://:hunter22secret@127.0.0.1:6379/15", "redis://:***@127.0.0.1:6379/15"),
    ]
    for setting, url, location in redis_cases:
        cache = open_cache(setting, url)
        assert isinstance(cache, RedisCache) and cache.location == location
        cache.close()


@pytest.mark.parametrize(("setting", "url"), [
    ("postgres", None), ("yes", None), ("", None), (1, None),
    ("sqlite", "redis://127.0.0.1:6379/0"), ("redis", "/tmp/cache.db"),
    ("sqlite", "sqlite://"), (True, ":memory:"), ("redis", "redis://h:notaport/0"),
])
def test_open_cache_bad_settings(setting: Any, url: str | None) -> None:
    with pytest.raises(LLMConfigError) as caught:
        open_cache(setting, url)
    message = str(caught.value)
    if url is None:  # an unknown setting: the message names it and the choices
        assert repr(setting) in message and "'memory'" in message and "'redis'" in message


def test_default_cache_path_reads_the_environment(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "one"))
    assert default_cache_path() == tmp_path / "one" / "dewey-llm" / "cache.db"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_path() == tmp_path / "home" / ".cache" / "dewey-llm" / "cache.db"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # not absolute: ignored (XDG spec)
    assert default_cache_path() == tmp_path / "home" / ".cache" / "dewey-llm" / "cache.db"


def test_mask_url() -> None:
    assert mask_url("redis://:pw12345@h:6379/0") == "redis://:***@h:6379/0"
    assert mask_url("rediss://user:pw12345@h/0") == "rediss://user:***@h/0"
    assert mask_url("redis://h:6379/0?password=pw12345&x=1") == "redis://h:6379/0?password=***&x=1"
    assert mask_url("redis://h:6379/0") == "redis://h:6379/0"


def test_importing_the_cache_loads_neither_litellm_nor_redis() -> None:
    code = ("import sys, dewey.llm._cache as c; c.open_cache('memory').get('k'); "
            "print(sorted({'litellm', 'redis', 'pydantic'} & set(sys.modules)))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSTARTUP"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env, timeout=60)
    assert out.stdout.strip() == "[]"
