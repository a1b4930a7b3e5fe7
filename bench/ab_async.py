"""A/B of async completions (``AsyncLiteLLMClient``, native) against raw aiohttp, for two trees.

    python bench/ab_async.py --baseline-src ../main/src [--rounds 3] [--blocks 6] [--calls 1000]
    python bench/ab_async.py --profile [--calls 1000]      # cProfile of this tree's dewey rows

The goal (issue 13: 1,000 calls at concurrency 50, dewey >= 0.5x raw aiohttp's calls per
second) is a ratio within one process that moves with the machine's load: to tell whether
a change helped, each round measures this tree, then ``--baseline-src``, each in a fresh
process, alternately.  A process alternates blocks of ``--calls`` raw and dewey calls
(``bench_transports.bench_async``'s two rows) and prints the median calls per second and
CPU milliseconds per call of each (this process's CPU: the event loop and everything it
runs; the server runs in another process), and the ratios: the median of each dewey
block's against the raw block just before it.  CPU per call is what a change to the
client moves; the wall ratio follows it only as far as the machine is idle.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SRC = str(HERE.parent / "src")


async def _rows(base: str, blocks: int, calls: int, concurrency: int,
                profile: bool) -> dict[str, list[tuple[float, float]]]:
    """(calls per second, CPU ms per call) of each row's blocks, in the order run."""
    from bench_transports import NATIVE_ASYNC, RAW_ASYNC, async_rows

    semaphore = asyncio.Semaphore(concurrency)

    async def block(call: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
        async def one() -> None:
            async with semaphore:
                await call()

        started, started_cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one() for _ in range(calls)))
        wall, cpu = time.perf_counter() - started, time.process_time() - started_cpu
        return calls / wall, cpu / calls * 1000

    async with async_rows(base) as named:
        rows = {"raw": named[RAW_ASYNC], "dewey": named[NATIVE_ASYNC]}
        for call in rows.values():  # warm up: pools, imports, caches
            await block(call)
        if profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(blocks):
                await block(rows["dewey"])
            profiler.disable()
            stats = pstats.Stats(profiler).sort_stats("tottime")
            stats.print_stats(40)
            stats.sort_stats("cumulative").print_stats(60)
            return {}
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in rows}
        for _ in range(blocks):
            for name, call in rows.items():
                results[name].append(await block(call))
    return results


def measure(blocks: int, calls: int, concurrency: int, profile: bool) -> str:
    sys.path.insert(0, str(HERE))
    from bench_native import fast_server

    with fast_server() as base:
        rows = asyncio.run(_rows(base, blocks, calls, concurrency, profile))
    if profile:
        return ""
    raw, dewey = rows["raw"], rows["dewey"]
    # The ratios are the medians of each dewey block's against the raw block just before it:
    # the load of the machine's other work moves on the scale of seconds, both alike.
    rate_ratio = statistics.median(d[0] / r[0] for r, d in zip(raw, dewey, strict=True))
    cpu_ratio = statistics.median(d[1] / r[1] for r, d in zip(raw, dewey, strict=True))
    return (f"raw {statistics.median(r for r, _ in raw):.0f}/s ({statistics.median(c for _, c in raw):.3f} "
            f"CPU ms), dewey {statistics.median(r for r, _ in dewey):.0f}/s "
            f"({statistics.median(c for _, c in dewey):.3f} CPU ms): rate {rate_ratio:.2f}x, CPU {cpu_ratio:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-src", help="the other tree's src/ (e.g. the main branch's)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--profile", action="store_true", help="cProfile this tree's dewey rows instead")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.measure or args.profile:
        print(measure(args.blocks, args.calls, args.concurrency, args.profile))
        return
    if args.baseline_src is None:
        parser.error("--baseline-src is required for an A/B (or pass --profile)")
    for round_number in range(1, args.rounds + 1):
        for label, src in (("this tree", SRC), ("baseline", args.baseline_src)):
            result = subprocess.run([sys.executable, __file__, "--measure", "--blocks", str(args.blocks),
                                     "--calls", str(args.calls), "--concurrency", str(args.concurrency)],
                                    env={**os.environ, "PYTHONPATH": src},
                                    capture_output=True, text=True, check=True)
            print(f"round {round_number}, {label}: {result.stdout.strip()}", flush=True)


if __name__ == "__main__":
    main()
