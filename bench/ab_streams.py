"""A/B of the native transport against raw httpx, for two source trees.

    python bench/ab_streams.py --baseline-src ../main/src [--rounds 3] [--blocks 40]
                               [--completions]

The goals (native / raw httpx <= 1.3x: a stream's first text and total, one sync
completion) are ratios within one process, but on a shared machine one run's ratio moves
by +-0.05: to tell whether a change helped, each round runs ``bench_transports``' two
stream rows in a fresh process for this tree, then for ``--baseline-src``, alternately.
With ``--completions`` the rows are sync completions instead: raw ``httpx`` post+json,
the client untracked, and with its default ledger and prompt log on (and with the log
off).  Prints each run's median wall and CPU time per call (CPU: this process's, all
threads, the ledger's writer included; the server runs in another) and the ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = str(HERE.parent / "src")


def _timed(rows: dict[str, Callable[[], object]], blocks: int, calls: int,
           after_block: Callable[[str], None] | None = None) -> dict[str, tuple[float, float]]:
    """Median wall and CPU ms per call of each row, over ``blocks`` rounds of ``calls``
    calls a row, after 100 warm-up calls each; ``after_block(name)`` runs after each
    block, its wall time left out (its CPU time counted)."""
    for function in rows.values():
        for _ in range(100):
            function()
    cpu: dict[str, list[float]] = {name: [] for name in rows}
    wall: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(blocks):
        for name, function in rows.items():
            started, started_cpu = time.perf_counter(), time.process_time()
            for _ in range(calls):
                function()
            ended = time.perf_counter()
            if after_block is not None:
                after_block(name)
            wall[name].append((ended - started) / calls * 1000)
            cpu[name].append((time.process_time() - started_cpu) / calls * 1000)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in rows}


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
        ms = _timed(rows, blocks, 20)
        native.close()
    return (f"raw {ms['raw'][0]:.3f} ms ({ms['raw'][1]:.3f} CPU), native {ms['native'][0]:.3f} ms "
            f"({ms['native'][1]:.3f} CPU): wall {ms['native'][0] / ms['raw'][0]:.2f}x, "
            f"CPU {ms['native'][1] / ms['raw'][1]:.2f}x")


def measure_completions(blocks: int) -> str:
    """This process's sync completion rows, median per call over blocks of 100."""
    sys.path.insert(0, str(HERE))
    import tempfile

    import httpx
    from bench_native import fast_server
    from bench_transports import BODY, KEY, MESSAGES, MODEL

    from dewey.llm import LiteLLMClient

    with fast_server() as base, tempfile.TemporaryDirectory() as tmp:
        raw = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"})
        clients = {"native": LiteLLMClient(model=MODEL, api_base=base, api_key=KEY, track_usage=False,
                                           transport="native"),
                   "ledger+log": LiteLLMClient(model=MODEL, api_base=base, api_key=KEY, transport="native",
                                               usage_db=f"{tmp}/log.db"),
                   "ledger": LiteLLMClient(model=MODEL, api_base=base, api_key=KEY, transport="native",
                                           log=False, usage_db=f"{tmp}/nolog.db")}
        rows: dict[str, Callable[[], object]] = {"raw": lambda: raw.post("/chat/completions", json=BODY).json()}
        rows.update({name: partial(client.generate_completion, MESSAGES) for name, client in clients.items()})
        def flush(name: str) -> None:
            client = clients.get(name)
            if client is not None and client._ledger is not None:  # noqa: SLF001
                client._ledger.flush()  # noqa: SLF001

        # Blocks of 100 calls (longer than the writer's 0.1 s linger), each ledger flushed
        # after its block: its writer's work falls in its own row (in the CPU time; in the
        # wall time as far as it overlapped the calls), not in the next row's block.
        ms = _timed(rows, blocks, 100, after_block=flush)
        for client in clients.values():
            client.close()
    (raw_wall, raw_cpu) = ms["raw"]
    return "; ".join(f"{name} {wall_ms:.3f} ms ({cpu_ms:.3f} CPU)"
                     + ("" if name == "raw" else f" {wall_ms / raw_wall:.2f}x, CPU {cpu_ms / raw_cpu:.2f}x")
                     for name, (wall_ms, cpu_ms) in ms.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-src", required=True, help="the other tree's src/ (e.g. the main branch's)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--blocks", type=int, default=40)
    parser.add_argument("--completions", action="store_true", help="sync completions instead of streams")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.measure:
        print(measure_completions(args.blocks) if args.completions else measure(args.blocks))
        return
    for round_number in range(1, args.rounds + 1):
        for label, src in (("this tree", SRC), ("baseline", args.baseline_src)):
            result = subprocess.run([sys.executable, __file__, "--measure", "--baseline-src", src,
                                     "--blocks", str(args.blocks), *(["--completions"] if args.completions else [])],
                                    env={**os.environ, "PYTHONPATH": src},
                                    capture_output=True, text=True, check=True)
            print(f"round {round_number}, {label}: {result.stdout.strip()}")


if __name__ == "__main__":
    main()
