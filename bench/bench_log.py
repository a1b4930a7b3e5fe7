"""What the prompt log costs a call: the same client with ``log`` on and off, side by side.

    python bench/bench_log.py [--calls 500] [--rounds 5] [--history 20]

Against ``bench/fast_server.py`` (its own process), two clients, each with its own SQLite
ledger, make sync completions in interleaved rounds (on, off, on, off, ...); each round
reports the median time per call, and the process CPU time per call (the writer thread
that writes the ledger and the log in the background included).  The prompt carries
``--history`` earlier turns, as a conversation's would.  Reported: the median of the
rounds for each, and their ratio.  Compare rows of one run, not runs of different machines.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from bench.bench_native import fast_server, per_call
from dewey.llm import LiteLLMClient


def turns(count: int) -> list[dict[str, Any]]:
    """A conversation's history of ``count`` turns, then the new prompt."""
    history: list[dict[str, Any]] = []
    for n in range(count):
        history += [{"role": "user", "content": f"Question {n}: why retry with backoff? " * 4},
                    {"role": "assistant", "content": f"Answer {n}: to give the server room. " * 8}]
    return [*history, {"role": "user", "content": "And with jitter?"}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500, help="calls per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each client")
    parser.add_argument("--history", type=int, default=20, help="earlier turns sent with each call")
    args = parser.parse_args()
    messages = turns(args.history)
    with fast_server() as base, tempfile.TemporaryDirectory() as tmp:
        clients = {log: LiteLLMClient(model="openai/bench", api_base=base, api_key="sk-bench",
                                      max_retries=0, log=log,
                                      usage_db=str(Path(tmp) / f"log-{log}.db"))
                   for log in (True, False)}
        wall: dict[bool, list[float]] = {True: [], False: []}
        cpu: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.rounds):
            for log, client in clients.items():
                started = time.process_time()
                median, _ = per_call(partial(client.generate_completion, messages), args.calls)
                client._ledger.flush()  # noqa: SLF001 - its background writes count too
                wall[log].append(median)
                cpu[log].append((time.process_time() - started) / (args.calls + 20))
        for client in clients.values():
            client.close()
    print(f"{args.calls} calls x {args.rounds} rounds, {args.history} earlier turns per call")
    print("| log | median per call | CPU per call (writer included) |")
    print("| --- | ---: | ---: |")
    for log in (False, True):
        print(f"| {'on' if log else 'off'} | {statistics.median(wall[log]) * 1e6:.0f} us | "
              f"{statistics.median(cpu[log]) * 1e6:.0f} us |")
    print(f"| on / off | {statistics.median(wall[True]) / statistics.median(wall[False]):.2f} | "
          f"{statistics.median(cpu[True]) / statistics.median(cpu[False]):.2f} |")


if __name__ == "__main__":
    main()
