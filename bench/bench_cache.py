"""Cache hit latency of each backend: median and p99 of ``get`` on a warm entry.

    python bench/bench_cache.py [--gets 10000] [--redis-url redis://127.0.0.1:6379/15]

Each backend stores one realistic chat completion (about 2 KB of JSON), is warmed up,
then timed over ``--gets`` calls.  The SQLite goal is a median under 1 ms; the exit
status is 1 if it is missed.  Redis keys use a unique prefix and are deleted afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dewey.llm import LLMError
from dewey.llm._cache import (
    MemoryCache,
    RedisCache,
    ResponseCache,
    SQLiteCache,
    completion_key,
)

SQLITE_GOAL_US = 1000.0


def sample_response() -> dict[str, Any]:
    """A chat completion as the client stores it."""
    text = "The quick brown fox jumps over the lazy dog. Übermäßig schön! 🦊 " * 25
    return {
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 42, "completion_tokens": 400, "total_tokens": 442},
        "_dewey_cost": 0.000246,
    }


def measure(cache: ResponseCache, gets: int, warmup: int) -> tuple[float, float, float]:
    """(median, p99, mean) of ``get`` hits, in microseconds."""
    key = completion_key({"model": "gpt-4o-mini",
                          "messages": [{"role": "user", "content": "benchmark"}]})
    cache.set(key, sample_response())
    for _ in range(warmup):
        if cache.get(key) is None:
            raise RuntimeError(f"{cache.backend}: the entry just stored is a miss")
    timings = []
    clock = time.perf_counter_ns
    for _ in range(gets):
        start = clock()
        cache.get(key)
        timings.append((clock() - start) / 1000)
    timings.sort()
    p99 = timings[min(len(timings) - 1, int(len(timings) * 0.99))]
    return statistics.median(timings), p99, statistics.fmean(timings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gets", type=int, default=10_000, help="timed gets per backend")
    parser.add_argument("--warmup", type=int, default=1_000, help="untimed gets first")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args(argv)

    results: dict[str, tuple[float, float, float] | str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        prefix = f"dewey-llm-bench:{uuid.uuid4().hex}:"
        openers: dict[str, Callable[[], ResponseCache]] = {
            "memory": lambda: MemoryCache(),
            "sqlite": lambda: SQLiteCache(Path(tmp) / "bench.db"),
            "redis": lambda: RedisCache(args.redis_url, prefix=prefix),
        }
        for name, opener in openers.items():
            cache = opener()
            try:
                results[name] = measure(cache, args.gets, args.warmup)
            except RuntimeError as exc:  # Redis down: its get is a miss
                results[name] = f"unavailable ({exc})"
            finally:
                if name == "redis":
                    with contextlib.suppress(LLMError):  # unreachable: nothing to clean up
                        cache.clear()
                cache.close()

    print(f"get hit latency, {args.gets} gets after {args.warmup} warm-up "
          f"(Python {sys.version.split()[0]})")
    print(f"{'backend':<8} {'median µs':>10} {'p99 µs':>10} {'mean µs':>10}")
    for name, result in results.items():
        if isinstance(result, str):
            print(f"{name:<8} {result}")
        else:
            median, p99, mean = result
            print(f"{name:<8} {median:>10.1f} {p99:>10.1f} {mean:>10.1f}")
    sqlite = results["sqlite"]
    ok = not isinstance(sqlite, str) and sqlite[0] < SQLITE_GOAL_US
    print(f"SQLite goal (median < {SQLITE_GOAL_US:.0f} µs): {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
