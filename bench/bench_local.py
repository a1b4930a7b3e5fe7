"""Speed of the embedded local model: load time, and tokens/s through its transport.

    python bench/bench_local.py [--model local/smollm2] [--tokens 64] [--runs 3]
    DEWEY_LLM_LOCAL_THREADS=1 python bench/bench_local.py     # fewer llama.cpp threads

Loads the model once (timed), warms it up, then generates about ``--tokens`` tokens
``--runs`` times each way and prints the medians: llama.cpp called directly (the floor),
``LocalTransport.complete`` (what the client sends ``local/`` calls through), and
``LocalTransport.stream`` with its time to first token.  Tokens/s counts completion
tokens over the whole call, prompt processing included, as a caller experiences it.
Runs are greedy with a fixed seed so that each generates the same tokens; a run that
stops early is reported with its token count.

On a shared machine the load average matters more than anything here: llama.cpp's threads
synchronise after every layer, so with as many threads as cores, other work on the box
can cut tokens/s by 10x from run to run.  The load average is printed for that reason.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from dewey.llm import _llama
from dewey.llm._local_transport import LocalTransport

PROMPT: Any = [{"role": "user", "content": "Write a long story about a dragon who bakes bread."}]
# min_tokens does not exist in llama.cpp's chat API: a prompt that invites a long answer,
# decoded greedily, is what makes every run produce the full --tokens.
GREEDY: dict[str, Any] = {"temperature": 0.0, "seed": 1}


Run = Callable[[], tuple[int, float | None]]  # -> (completion tokens, first-token clock)


def timed(run: Run, runs: int) -> tuple[float, float, int, float | None]:
    """(median seconds, median tokens/s, median tokens, median first-token seconds)."""
    seconds, rates, counts, firsts = [], [], [], []
    for _ in range(runs):
        start = time.perf_counter()
        tokens, first = run()
        elapsed = time.perf_counter() - start
        seconds.append(elapsed)
        rates.append(tokens / elapsed)
        counts.append(tokens)
        if first is not None:
            firsts.append(first - start)
    first = statistics.median(firsts) if firsts else None
    return statistics.median(seconds), statistics.median(rates), int(statistics.median(counts)), first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="local/smollm2", help="local/smollm2 or local/<path.gguf>")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    local = LocalTransport()

    path = _llama.model_path(args.model)
    settings = _llama.Settings.from_call({})  # as a call without n_ctx / n_threads gets
    start = time.perf_counter()
    # The transport's engines: the one its calls below will use.
    engine = local.engines.get(path, settings, embedding=False)
    load_seconds = time.perf_counter() - start
    print(f"model      {path.name}  (n_ctx {settings.n_ctx}, {settings.n_threads} threads,"
          f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"load       {load_seconds * 1000:.0f} ms")

    # Warm-up: first decode allocates buffers; not what a steady caller sees.
    local.complete({"model": args.model, "messages": PROMPT, "max_tokens": 4})

    def raw() -> tuple[int, float | None]:
        result = engine.chat({"messages": PROMPT, "max_tokens": args.tokens, **GREEDY,
                              "repeat_penalty": _llama.DEFAULT_REPEAT_PENALTY})  # as the transport sends
        return int(result["usage"]["completion_tokens"]), None

    def completion() -> tuple[int, float | None]:
        response = local.complete({"model": args.model, "messages": PROMPT, "max_tokens": args.tokens, **GREEDY})
        return int(response.usage.completion_tokens), None

    def streaming() -> tuple[int, float | None]:
        first: float | None = None
        usage = None
        for chunk in local.stream({"model": args.model, "messages": PROMPT, "max_tokens": args.tokens,
                                   "stream_options": {"include_usage": True}, **GREEDY}):
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter()
            usage = getattr(chunk, "usage", None) or usage
        return (int(usage.completion_tokens) if usage else 0), first

    print(f"{'':24}{'median s':>9}{'tok/s':>8}{'tokens':>8}{'first tok':>11}")
    for label, run in (("llama.cpp direct", raw), ("LocalTransport.complete", completion),
                       ("LocalTransport.stream", streaming)):
        seconds, rate, tokens, first = timed(run, args.runs)
        first_text = f"{first * 1000:.0f} ms" if first is not None else "-"
        print(f"{label:24}{seconds:9.3f}{rate:8.1f}{tokens:8d}{first_text:>11}")


if __name__ == "__main__":
    main()
