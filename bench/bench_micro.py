"""Costs that should be near zero, measured (never asserted in the test suite).

    python bench/bench_micro.py [--calls 20000]

- a rate limiter asked about a model it does not limit;
- a Redis cache whose server is down (it must not try the server at every call);
- ``Ledger.record`` while the ledger's storage is down (it must not block the caller),
  and ``Ledger.close`` afterwards.

Each line gives the median and p99 of one call in microseconds (for ``close``, one call).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from dewey.llm import RateLimit
from dewey.llm._cache import RedisCache
from dewey.llm._ratelimit import LocalRateLimiter
from dewey.llm._usage import Ledger, UsageRecord, open_ledger

DOWN_REDIS_URL = "redis://127.0.0.1:1/15"  # nothing listens on port 1
DOWN_PG_URL = "postgresql://postgres@127.0.0.1:1/test"


def timings_us(call: Callable[[], object], calls: int) -> tuple[float, float]:
    """(median, p99) of ``call`` in microseconds."""
    timings = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        call()
        timings.append((time.perf_counter_ns() - start) / 1000)
    timings.sort()
    return statistics.median(timings), timings[min(len(timings) - 1, int(len(timings) * 0.99))]


def record() -> UsageRecord:
    return UsageRecord(model="gpt-test", cost_usd=0.01, time=time.time(), provider="openai",
                       kind="completion", outcome="ok")


def recording_into(ledger: Ledger) -> Callable[[], None]:
    return lambda: ledger.record(record())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="timed calls per line")
    args = parser.parse_args(argv)
    rows: list[tuple[str, float, float]] = []

    limiter = LocalRateLimiter({"some-other-model": RateLimit(rpm=1)})
    rows.append(("rate limiter, unlimited model", *timings_us(
        lambda: limiter.acquire("unlisted-model", 10**9), args.calls)))

    cache = RedisCache(DOWN_REDIS_URL)
    cache.get("k")  # the first miss finds the server down
    rows.append(("Redis cache get, server down", *timings_us(lambda: cache.get("k"), args.calls)))
    cache.close()

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "a-file").write_text("not a directory")
        for name, location in (("postgres", DOWN_PG_URL), ("sqlite", str(Path(tmp) / "a-file" / "u.db"))):
            ledger = open_ledger(location)
            rows.append((f"ledger record, {name} down",
                         *timings_us(recording_into(ledger), min(args.calls, 2000))))
            ledger.flush(timeout=5)
            start = time.perf_counter_ns()
            ledger.close()
            close_us = (time.perf_counter_ns() - start) / 1000
            rows.append((f"ledger close, {name} down", close_us, close_us))

    print(f"{'what':<34} {'median µs':>10} {'p99 µs':>10}   (Python {sys.version.split()[0]})")
    for what, median, p99 in rows:
        print(f"{what:<34} {median:>10.1f} {p99:>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
