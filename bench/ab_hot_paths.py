"""A/B of the CPU cost of two hot paths without the network, for two source trees.

    python bench/ab_hot_paths.py --baseline-src ../main/src [--rounds 3]

The ratios of ``ab_streams.py`` move by +-0.05 on a shared machine, more than a change of
a few microseconds per chunk does; this measures the work itself, each tree in a fresh
process, alternately, as the best of 15 repeats of this thread's CPU time:

* ``stream``: one native stream's 10 events (``bench/fast_server.py``'s: a role chunk, 7
  text chunks, the finish and the usage chunk) read from their SSE lines by the
  ``EventReader``, through a ``CompletionStream``, by a caller reading
  ``chunk.choices[0].delta.content``; ``raw``: the same lines parsed by ``json.loads``
  and read as dicts, as the raw httpx row of ``bench_transports`` does;
* ``log row``: the prompt log's row of one entry, built on the ledger's writer thread
  (which shares the GIL with the callers): a one-message call, and one with 20 earlier turns;
* ``prepare``: a completion's request made ready to send (the client's ``_start_completion``:
  messages, parameters, the cache and budget steps, none of them on) with
  ``response_format=`` a pydantic model with a nested one, a JSON-schema dict, and none.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import timeit
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import BaseModel

HERE = Path(__file__).resolve().parent
SRC = str(HERE.parent / "src")


class Line(BaseModel):
    item: str
    note: str | None = None
    quantity: int = 1


class Invoice(BaseModel):
    number: str
    total: float
    items: list[str]
    lines: list[Line]
    customer: str | None = None


INVOICE_SCHEMA = {"title": "Invoice", "type": "object", "properties": {
    "number": {"type": "string"}, "total": {"type": "number"},
    "items": {"type": "array", "items": {"type": "string"}}}, "required": ["number", "total"]}


def best_us(function: Callable[[], object], number: int = 1000) -> float:
    return min(timeit.repeat(function, number=number, repeat=15, timer=time.thread_time)) / number * 1e6


def measure() -> str:
    sys.path[:0] = [str(HERE), str(HERE.parent)]
    from bench_log import turns
    from fast_server import stream_events

    from dewey.llm import LiteLLMClient
    from dewey.llm._openai_wire import EventReader
    from dewey.llm._secrets import register_secret
    from dewey.llm._stream import CompletionStream
    from dewey.llm._usage._log import LogEntry, to_log_row

    lines = [line for event in stream_events("gpt-4o-mini", True) for line in event.decode().split("\n")[:2]]

    def raw() -> None:
        for line in lines:
            if line.startswith("data: ") and line != "data: [DONE]":
                event = json.loads(line[6:])
                if event["choices"] and event["choices"][0]["delta"].get("content"):
                    pass

    def native() -> None:
        reader = EventReader("gpt-4o-mini")
        chunks = [chunk for line in lines if (chunk := reader.feed(line)) is not None]
        for chunk in CompletionStream(iter(chunks), []):
            if chunk.choices and chunk.choices[0].delta.content:
                pass

    register_secret("sk-bench-0123456789")
    answer = "Hello from the fast benchmark server: this answer costs nothing to produce."
    entries: dict[int, Any] = {
        history: LogEntry(call_id="c", model="openai/gpt-4o-mini", messages=turns(history), response=answer)
        for history in (0, 20)}
    def prepare(response_format: Any) -> Callable[[], object]:
        # A fresh params dict each time: the client takes its own keys out of it.
        return lambda: client._start_completion(  # noqa: SLF001 - the request side alone
            "Invoice for tea", None, False, {"response_format": response_format})

    client = LiteLLMClient(model="openai/gpt-4o-mini", api_base="http://127.0.0.1:9/v1",
                           api_key="sk-bench-0123456789", track_usage=False, cache=False)
    raw_us, native_us = best_us(raw), best_us(native)
    rows = [f"stream: raw {raw_us:.1f} us, native {native_us:.1f} us ({native_us / raw_us:.2f}x)"]
    rows += [f"log row, {history} earlier turns: {best_us(partial(to_log_row, entry), 300):.1f} us"
             for history, entry in entries.items()]
    rows += [f"prepare, response_format={label}: {best_us(prepare(value), 200):.1f} us"
             for label, value in (("Model", Invoice), ("schema dict", INVOICE_SCHEMA), ("None", None))]
    client.close()
    return "; ".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-src", required=True, help="the other tree's src/ (e.g. the main branch's)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.measure:
        print(measure())
        return
    for round_number in range(1, args.rounds + 1):
        for label, src in (("this tree", SRC), ("baseline", args.baseline_src)):
            result = subprocess.run([sys.executable, __file__, "--measure", "--baseline-src", src],
                                    env={**os.environ, "PYTHONPATH": src}, capture_output=True, text=True,
                                    check=True)
            print(f"round {round_number}, {label}: {result.stdout.strip()}")


if __name__ == "__main__":
    main()
