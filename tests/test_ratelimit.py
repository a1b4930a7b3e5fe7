"""Rate limits: exact waits with an injected clock, threads, asyncio, and Redis shared
across processes (the machine's Redis, ``tests/servers/redis_server.py``; each test's model
names carry its own namespace, so its keys are deleted afterwards)."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from dewey.llm import LLMConfigError, RateLimit
from dewey.llm._ratelimit import (
    KEY_PREFIX,
    LocalRateLimiter,
    RedisRateLimiter,
    open_limiter,
)
from tests.servers.redis_server import DOWN_REDIS_URL, REDIS_URL, connect_redis, needs_redis

ROOT = Path(__file__).resolve().parents[1]


class FakeClock:
    """A clock that only moves when the limiter sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


def unique(name: str = "model") -> str:
    return f"test-{name}-{uuid.uuid4().hex[:12]}"


def local(limits: dict[str, RateLimit], clock: FakeClock) -> LocalRateLimiter:
    return LocalRateLimiter(limits, clock=clock, sleep=clock.sleep, asleep=clock.asleep)


# --- in process -----------------------------------------------------------------------------

def test_rpm_the_next_call_waits_for_one_refill() -> None:
    clock, model = FakeClock(), unique()
    limiter = local({model: RateLimit(rpm=3)}, clock)
    assert [limiter.acquire(model) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert clock.slept == []
    assert limiter.acquire(model) == pytest.approx(20.0)  # 60 s / 3 requests
    assert limiter.acquire(model) == pytest.approx(20.0)
    assert clock.slept == pytest.approx([20.0, 20.0])
    clock.now += 60.0  # a quiet minute refills the whole burst
    assert [limiter.acquire(model) for _ in range(3)] == [0.0, 0.0, 0.0]


def test_tpm_waits_for_the_missing_tokens() -> None:
    clock, model = FakeClock(), unique()
    limiter = local({model: RateLimit(tpm=1000)}, clock)
    assert limiter.acquire(model, 600) == 0.0
    assert limiter.acquire(model, 600) == pytest.approx(12.0)  # 200 tokens at 1000/min
    assert limiter.acquire(model, 0) == 0.0  # the debt was just paid


def test_a_request_bigger_than_tpm_waits_for_a_full_bucket_then_goes_alone() -> None:
    clock, model = FakeClock(), unique()
    limiter = local({model: RateLimit(tpm=1000)}, clock)
    assert limiter.acquire(model, 500) == 0.0
    assert limiter.acquire(model, 50_000) == pytest.approx(30.0)  # charged 1000, not 50000
    assert limiter.acquire(model, 100) == pytest.approx(6.0)  # it used the whole bucket


def test_rpm_and_tpm_together_wait_for_the_slower() -> None:
    clock, model = FakeClock(), unique()
    limiter = local({model: RateLimit(rpm=60, tpm=600)}, clock)
    assert limiter.acquire(model, 600) == 0.0
    assert limiter.acquire(model, 60) == pytest.approx(6.0)  # tokens, not requests, bind


def test_star_limits_every_model_separately_and_listed_models_override_it() -> None:
    clock = FakeClock()
    a, b, free = unique("a"), unique("b"), unique("free")
    limiter = local({"*": RateLimit(rpm=1), free: RateLimit()}, clock)
    assert limiter.acquire(a) == 0.0
    assert limiter.acquire(b) == 0.0  # its own bucket
    assert limiter.acquire(a) == pytest.approx(60.0)
    assert [limiter.acquire(free) for _ in range(100)] == [0.0] * 100


def test_unlimited_models_never_wait() -> None:  # their cost: bench/bench_micro.py
    clock = FakeClock()
    limiter = local({"some-other-model": RateLimit(rpm=1)}, clock)
    assert [limiter.acquire("unlisted-model", 10**9) for _ in range(100)] == [0.0] * 100
    assert clock.slept == []
    assert limiter.limit_for("unlisted-model") is None


def test_threads_never_admit_more_than_the_limit() -> None:
    # A frozen clock makes the outcome exact: exactly rpm calls go at once, and every
    # other call gets its own slot, 60/rpm seconds apart (a lost update would repeat one).
    waits: list[float] = []
    model, rpm, threads, calls = unique(), 50, 8, 10
    limiter = LocalRateLimiter({model: RateLimit(rpm=rpm)}, clock=lambda: 0.0,
                               sleep=lambda _: None)
    barrier = threading.Barrier(threads)

    def worker() -> None:
        barrier.wait()
        for _ in range(calls):
            waits.append(limiter.acquire(model))

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    expected = [0.0] * rpm + [k * 60 / rpm for k in range(1, threads * calls - rpm + 1)]
    assert sorted(waits) == pytest.approx(expected)


def test_async_gather_queues_callers_in_turn() -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    model = unique()
    limiter = LocalRateLimiter({model: RateLimit(rpm=3)}, clock=lambda: 0.0, asleep=record)

    async def main() -> list[float]:
        return await asyncio.gather(*(limiter.aacquire(model) for _ in range(5)))

    assert asyncio.run(main()) == pytest.approx([0.0, 0.0, 0.0, 20.0, 40.0])
    assert waits == pytest.approx([20.0, 40.0])


def test_async_waiting_does_not_block_the_event_loop() -> None:
    model = unique()
    limiter = open_limiter({model: RateLimit(tpm=600)}, None)  # real clock: 10 tokens/s

    async def main() -> tuple[float, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.02)
                ticks += 1

        task = asyncio.create_task(ticker())
        await limiter.aacquire(model, 600)
        waited = await limiter.aacquire(model, 3)  # 0.3 s
        task.cancel()
        return waited, ticks

    waited, ticks = asyncio.run(main())
    assert waited == pytest.approx(0.3, abs=0.02)
    assert ticks >= 5


def test_a_url_that_is_not_redis_is_a_config_error() -> None:
    with pytest.raises(LLMConfigError, match="redis://"):
        open_limiter({"*": RateLimit(rpm=1)}, "http://user:secret@example.com")


# --- Redis ----------------------------------------------------------------------------------

@needs_redis
def test_redis_limits_with_the_same_arithmetic(redis_namespace: str) -> None:
    waits: list[float] = []
    model = f"{redis_namespace}-model"
    opened = open_limiter({model: RateLimit(rpm=3)}, REDIS_URL)
    assert isinstance(opened, RedisRateLimiter)
    opened.close()
    limiter = RedisRateLimiter({model: RateLimit(rpm=3)}, REDIS_URL, sleep=waits.append)  # records, never sleeps
    got = [limiter.acquire(model) for _ in range(5)]
    assert got[:3] == [0.0, 0.0, 0.0]
    assert got[3:] == pytest.approx([20.0, 40.0], abs=0.1)  # server time moves a little
    with connect_redis() as raw:
        ttl = raw.pttl(KEY_PREFIX + model)
    # Dropped once full again: 5 taken from 3, so 5 x 20 s of refill (+ 1 s of margin).
    assert 99_000 < ttl <= 101_000
    limiter.close()


@needs_redis
def test_redis_tpm_and_oversized_requests(redis_namespace: str) -> None:
    model = f"{redis_namespace}-model"
    limiter = RedisRateLimiter({model: RateLimit(tpm=1000)}, REDIS_URL, sleep=lambda _: None)
    assert limiter.acquire(model, 500) == 0.0
    assert limiter.acquire(model, 50_000) == pytest.approx(30.0, abs=0.1)
    assert limiter.acquire(model, 100) == pytest.approx(36.0, abs=0.1)
    limiter.close()


@needs_redis
def test_redis_async(redis_namespace: str) -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    model = f"{redis_namespace}-model"
    limiter = RedisRateLimiter({model: RateLimit(rpm=2)}, REDIS_URL, asleep=record)

    async def main() -> list[float]:
        return await asyncio.gather(*(limiter.aacquire(model) for _ in range(4)))

    assert sorted(asyncio.run(main())) == pytest.approx([0.0, 0.0, 30.0, 60.0], abs=0.1)
    assert sorted(waits) == pytest.approx([30.0, 60.0], abs=0.1)
    limiter.close()


CHILD = textwrap.dedent("""
    import sys, time
    from dewey.llm import RateLimit
    from dewey.llm._ratelimit import RedisRateLimiter

    model, url, calls, rpm = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    limiter = RedisRateLimiter({model: RateLimit(rpm=rpm)}, url)
    limiter._client.ping()  # connect before the start signal
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(calls):
        limiter.acquire(model)
        print(time.time(), flush=True)
""")


@needs_redis
def test_redis_limit_is_shared_across_processes(redis_namespace: str) -> None:
    # rpm=120: a burst of 120, then one request every 0.5 s.  3 processes x 42 = 126
    # requests: 120 go at once and the last 6 are spaced 0.5 s apart, so the last is
    # admitted 3.0 s after the start.  With a bucket per process each would make its 42
    # at once (42 < 120) and all would be done in a few milliseconds.
    model, rpm, processes, calls = f"{redis_namespace}-shared", 120, 3, 42
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD, model, REDIS_URL, str(calls), str(rpm)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(processes)]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        start = time.time()
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        admitted = sorted(float(line) - start for child in children
                          for line in child.communicate(timeout=20)[0].split())
    finally:
        for child in children:
            child.kill()
    assert [child.returncode for child in children] == [0] * processes
    assert len(admitted) == processes * calls
    assert sum(1 for at in admitted if at < 0.4) <= rpm  # no refill slot is due before 0.5 s
    # The k-th request past the burst is due 0.5 k s after the first one (a lower bound:
    # a busy machine can only make a process later, never earlier).
    for k in range(1, processes * calls - rpm + 1):
        assert admitted[rpm - 1 + k] >= 0.5 * k - 0.02


def test_redis_down_falls_back_to_the_process_with_one_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    clock, model = FakeClock(), unique()
    caplog.set_level(logging.WARNING, logger="dewey.llm")
    limiter = RedisRateLimiter({model: RateLimit(rpm=1)}, DOWN_REDIS_URL,
                               clock=clock, sleep=clock.sleep, asleep=clock.asleep)
    assert limiter.acquire(model) == 0.0
    assert limiter.acquire(model) == pytest.approx(60.0)  # still limited, in process
    assert asyncio.run(limiter.aacquire(model)) == pytest.approx(60.0)
    warnings = [r for r in caplog.records if r.name == "dewey.llm"]
    assert len(warnings) == 1
    assert "127.0.0.1:1" in warnings[0].getMessage()
    limiter.close()
