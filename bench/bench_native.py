"""How fast NativeTransport speaks the OpenAI wire, against raw httpx and its async options.

    python bench/bench_native.py [--calls 1000] [--concurrency 50] [--url URL]

Without ``--url`` it starts ``bench/fast_server.py`` in its own process (so the server
never competes with the client for the GIL).  It reports:

* sync: one call at a time, median and mean per call: a raw ``httpx.Client.post`` +
  ``json()`` (the floor) against ``NativeTransport.complete`` (what the wire code adds),
  and with ``--litellm`` ``litellm.completion`` (and its import time);
* async: ``--calls`` completions at ``--concurrency`` in flight, calls per second, on
  plain ``httpx.AsyncClient`` and on ``httpx.AsyncClient`` over httpx-aiohttp's
  ``AiohttpTransport``, each raw and through ``NativeTransport.acomplete``.

Numbers depend on the machine; compare rows of one run, not runs of different machines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from fast_server import running
from httpx_aiohttp import AiohttpTransport

from dewey.llm._native import NativeTransport

fast_server = running  # the server these benchmarks call (a name they import)

MESSAGES = [{"role": "user", "content": "Say hello."}]
BODY = {"model": "bench", "messages": MESSAGES}
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=100)

def per_call(function: Callable[[], Any], calls: int) -> tuple[float, float]:
    """Median and mean seconds per call, after a warm-up."""
    for _ in range(20):
        function()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), statistics.fmean(times)


async def throughput(call: Callable[[], Awaitable[Any]], calls: int, concurrency: int) -> float:
    """Calls per second with ``concurrency`` calls in flight."""
    semaphore = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with semaphore:
            await call()

    await asyncio.gather(*(one() for _ in range(concurrency)))  # warm up the pool
    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(calls)))
    return calls / (time.perf_counter() - start)


def bench_sync(base: str, calls: int, with_litellm: bool) -> None:
    raw = httpx.Client(base_url=base, headers={"Authorization": "Bearer sk-bench"}, limits=LIMITS)
    native = NativeTransport()
    kwargs = {"model": "openai/bench", "messages": MESSAGES, "api_base": base, "api_key": "sk-bench"}
    rows: list[tuple[str, Callable[[], Any]]] = [
        ("raw httpx.Client post+json", lambda: raw.post("/chat/completions", json=BODY).json()),
        ("NativeTransport.complete", lambda: native.complete(kwargs))]
    if with_litellm:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        start = time.perf_counter()
        import litellm

        print(f"import litellm: {time.perf_counter() - start:.2f} s")
        rows.append(("litellm.completion", lambda: litellm.completion(**kwargs, max_retries=0)))
    for name, function in rows:
        median, mean = per_call(function, calls)
        print(f"sync  {name:<40} median {median * 1e6:7.0f} us   mean {mean * 1e6:7.0f} us")
    raw.close()
    native.close()


async def bench_async(base: str, calls: int, concurrency: int) -> None:
    headers = {"Authorization": "Bearer sk-bench"}
    for label, transport in (("httpx", None), ("aiohttp", AiohttpTransport(limits=LIMITS))):
        client = httpx.AsyncClient(base_url=base, headers=headers, limits=LIMITS, transport=transport)

        async def raw(client: httpx.AsyncClient = client) -> Any:
            return (await client.post("/chat/completions", json=BODY)).json()

        rate = await throughput(raw, calls, concurrency)
        print(f"async raw httpx.AsyncClient on {label:<10} {rate:8.0f} calls/s")
        await client.aclose()
    native = NativeTransport()
    kwargs = {"model": "openai/bench", "messages": MESSAGES, "api_base": base, "api_key": "sk-bench"}
    rate = await throughput(lambda: native.acomplete(kwargs), calls, concurrency)
    print(f"async NativeTransport.acomplete            {rate:8.0f} calls/s")
    await native.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--url", help="an already running server's /v1 base")
    parser.add_argument("--litellm", action="store_true", help="also time litellm.completion (sync)")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        base = args.url or stack.enter_context(fast_server())
        bench_sync(base, args.calls, args.litellm)
        asyncio.run(bench_async(base, args.calls, args.concurrency))


if __name__ == "__main__":
    main()
