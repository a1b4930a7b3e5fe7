"""A/B of the native stream against raw httpx streaming, for two source trees.

    python bench/ab_streams.py --baseline-src ../main/src [--rounds 3] [--blocks 40]

The stream goal (native / raw httpx <= 1.3x, first text and total) is a ratio within one
process, but on a shared machine one run's ratio moves by +-0.05: to tell whether a change
helped, each round runs ``bench_transports``' two stream rows in a fresh process for this
tree, then for ``--baseline-src``, alternately.  Prints each run's median wall and CPU
time per stream (CPU: this process's, all threads; the server runs in another) and ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = str(HERE.parent / "src")


def measure(blocks: int) -> str:
    """This process's stream rows: ``raw`` and ``native``, median per stream over blocks of 20."""
    sys.path.insert(0, str(HERE))
    import httpx
    from bench_native import fast_server
    from bench_transports import KEY, MODEL, _dewey_stream, _raw_stream

    from dewey.llm import LiteLLMClient

    with fast_server() as base:
        native = LiteLLMClient(model=MODEL, api_base=base, api_key=KEY, track_usage=False, transport="native")
        raw = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"})
        rows: dict[str, Callable[[], object]] = {"raw": lambda: _raw_stream(raw),
                                                 "native": lambda: _dewey_stream(native)}
        for function in rows.values():
            for _ in range(100):
                function()
        cpu: dict[str, list[float]] = {name: [] for name in rows}
        wall: dict[str, list[float]] = {name: [] for name in rows}
        for _ in range(blocks):
            for name, function in rows.items():
                started, started_cpu = time.perf_counter(), time.process_time()
                for _ in range(20):
                    function()
                wall[name].append((time.perf_counter() - started) / 20 * 1000)
                cpu[name].append((time.process_time() - started_cpu) / 20 * 1000)
        native.close()
    ms = {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in rows}
    return (f"raw {ms['raw'][0]:.3f} ms ({ms['raw'][1]:.3f} CPU), native {ms['native'][0]:.3f} ms "
            f"({ms['native'][1]:.3f} CPU): wall {ms['native'][0] / ms['raw'][0]:.2f}x, "
            f"CPU {ms['native'][1] / ms['raw'][1]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-src", required=True, help="the other tree's src/ (e.g. the main branch's)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--blocks", type=int, default=40)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.measure:
        print(measure(args.blocks))
        return
    for round_number in range(1, args.rounds + 1):
        for label, src in (("this tree", SRC), ("baseline", args.baseline_src)):
            result = subprocess.run([sys.executable, __file__, "--measure", "--baseline-src", src,
                                     "--blocks", str(args.blocks)], env={**os.environ, "PYTHONPATH": src},
                                    capture_output=True, text=True, check=True)
            print(f"round {round_number}, {label}: {result.stdout.strip()}")


if __name__ == "__main__":
    main()
