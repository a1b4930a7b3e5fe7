"""dewey-llm on its native transport against raw clients, side by side: issue 13's goals.

    python bench/bench_transports.py [--calls 300] [--async-calls 1000] [--concurrency 50]
                                     [--cli-runs 10] [--baseline-src ../main/src]

Starts ``bench/fast_server.py`` in its own process and measures, in one run:

1. one sync completion: a raw persistent ``httpx.Client`` (post + json) against
   ``LiteLLMClient`` on the native transport (goal <= 1.3x), and the LiteLLM path
   (``transport="litellm"``) against bare ``litellm.completion`` (goal <= 1.05x);
2. streams, first text and total: raw ``httpx`` streaming (reading SSE lines) against the
   client's native stream (goal <= 1.3x);
3. ``--async-calls`` completions at ``--concurrency`` in flight: raw ``aiohttp`` against
   ``AsyncLiteLLMClient`` on the native transport (goal >= 0.5x);
4. cold ``dewey-llm chat --no-cache hi`` and ``dewey-llm embed hi``, whole process: median
   wall time and peak RSS (goal <= 0.5 s and <= 80 MiB), and whether LiteLLM was imported
   (from ``python -X importtime``, which also names the slowest imports).

The clients run with ``track_usage=False`` (the transport's cost, not the ledger's); the
sync table adds a row with the default ledger on.  Interleaved in shuffled blocks, so
drift on this shared machine spreads over every row.  Compare rows of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_native import fast_server, throughput

from dewey.llm import AsyncLiteLLMClient, LiteLLMClient

MODEL = "openai/gpt-4o-mini"  # priced from the catalog, as a real call is
KEY = "sk-bench-0123456789"
MESSAGES = [{"role": "user", "content": "Say hello."}]
BODY = {"model": "gpt-4o-mini", "messages": MESSAGES}
SRC = str(Path(__file__).resolve().parents[1] / "src")


def median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def interleaved(rows: dict[str, Callable[[], Any]], calls: int, block: int = 10) -> dict[str, list[float]]:
    """Seconds per call of each row, in shuffled blocks after a warm-up."""
    for function in rows.values():
        for _ in range(20):
            function()
    times: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(calls // block):
        for name in random.sample(list(rows), len(rows)):
            for _ in range(block):
                start = time.perf_counter()
                rows[name]()
                times[name].append(time.perf_counter() - start)
    return times


# --- 1. one sync completion ------------------------------------------------------------------

def bench_completion(base: str, calls: int) -> list[tuple[str, float, str]]:
    """The native rows against raw httpx, then the LiteLLM rows against bare LiteLLM, each
    group interleaved within itself: a native call interleaved with LiteLLM's 5 ms calls
    would pay for the caches and the collector they leave behind (0.1-0.2x more in one
    run), which a process that does not use LiteLLM never does."""
    raw = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"})
    native = LiteLLMClient(model=MODEL, api_base=base, api_key=KEY, track_usage=False, transport="native")
    ledger = LiteLLMClient(model=MODEL, api_base=base, api_key=KEY, transport="native",
                           usage_db=str(Path(tempfile.mkdtemp()) / "usage.db"))
    times = interleaved({
        "raw httpx.Client (persistent) post+json": lambda: raw.post("/chat/completions", json=BODY).json(),
        "dewey-llm native": lambda: native.generate_completion(MESSAGES),
        "dewey-llm native, ledger on (default)": lambda: ledger.generate_completion(MESSAGES),
    }, calls)
    for client in (native, ledger):
        client.close()
    raw.close()

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    through = LiteLLMClient(model=MODEL, api_base=base, api_key=KEY, track_usage=False, transport="litellm")
    times.update(interleaved({
        "litellm.completion": lambda: litellm.completion(model=MODEL, messages=MESSAGES, api_base=base,
                                                         api_key=KEY, max_retries=0),
        "dewey-llm transport=litellm": lambda: through.generate_completion(MESSAGES),
    }, calls))
    through.close()
    floor, bare = median_ms(times["raw httpx.Client (persistent) post+json"]), median_ms(times["litellm.completion"])
    rows = []
    for name, samples in times.items():
        baseline = bare if "litellm" in name else floor
        rows.append((name, median_ms(samples), f"{median_ms(samples) / baseline:.2f}x"))
    return rows


# --- 2. streams ------------------------------------------------------------------------------

def _raw_stream(client: httpx.Client) -> tuple[float, float]:
    start = time.perf_counter()
    first = 0.0
    body = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
    with client.stream("POST", "/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if not first and event["choices"] and event["choices"][0]["delta"].get("content"):
                first = time.perf_counter() - start
    return first, time.perf_counter() - start


def _dewey_stream(client: LiteLLMClient) -> tuple[float, float]:
    start = time.perf_counter()
    first = 0.0
    for chunk in client.generate_completion(MESSAGES, stream=True):
        if not first and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - start
    return first, time.perf_counter() - start


def bench_stream(base: str, calls: int) -> list[tuple[str, float, float]]:
    raw = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"})
    native = LiteLLMClient(model=MODEL, api_base=base, api_key=KEY, track_usage=False, transport="native")
    rows: dict[str, Callable[[], tuple[float, float]]] = {
        "raw httpx.Client streaming": lambda: _raw_stream(raw),
        "dewey-llm native stream": lambda: _dewey_stream(native)}
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in rows}
    for function in rows.values():
        for _ in range(20):
            function()
    for _ in range(calls // 10):
        for name in random.sample(list(rows), len(rows)):
            samples[name].extend(rows[name]() for _ in range(10))
    native.close()
    raw.close()
    return [(name, median_ms([s[0] for s in got]), median_ms([s[1] for s in got]))
            for name, got in samples.items()]


# --- 3. async throughput ---------------------------------------------------------------------

RAW_ASYNC, NATIVE_ASYNC = "raw aiohttp.ClientSession", "dewey-llm native (AsyncLiteLLMClient)"


@contextlib.asynccontextmanager
async def async_rows(base: str) -> AsyncIterator[dict[str, Callable[[], Awaitable[Any]]]]:
    """One call of each async row: raw aiohttp post+json, and the native client untracked."""
    async with aiohttp.ClientSession(base_url=base + "/", connector=aiohttp.TCPConnector(limit=100),
                                     headers={"Authorization": f"Bearer {KEY}"}) as session:

        async def raw() -> Any:
            async with session.post("chat/completions", json=BODY) as response:
                return await response.json()

        async with AsyncLiteLLMClient(model=MODEL, api_base=base, api_key=KEY, track_usage=False,
                                      transport="native") as client:
            yield {RAW_ASYNC: raw, NATIVE_ASYNC: lambda: client.generate_completion(MESSAGES)}


async def bench_async(base: str, calls: int, concurrency: int, rounds: int = 3) -> dict[str, float]:
    rates: dict[str, list[float]] = {RAW_ASYNC: [], NATIVE_ASYNC: []}
    async with async_rows(base) as rows:
        for _ in range(rounds):
            for name, call in rows.items():
                rates[name].append(await throughput(call, calls, concurrency))
    return {name: statistics.median(values) for name, values in rates.items()}


# --- 4. cold CLI -----------------------------------------------------------------------------

def _cli_env(base: str, home: Path) -> dict[str, str]:
    # Bytecode is written (the warm-up run compiles it), as for any installed package.
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("LITELLM_", "DEWEY_")) and name != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPATH": SRC, "HOME": str(home), "XDG_DATA_HOME": str(home / "data"),
            "XDG_CACHE_HOME": str(home / "cache"), "XDG_CONFIG_HOME": str(home / "config"),
            "LITELLM_MODEL": MODEL, "LITELLM_API_BASE": base, "LITELLM_API_KEY": KEY,
            "LITELLM_EMBEDDING_MODEL": "openai/text-embedding-3-small"}


def _run_measured(command: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system: less skewed than wall time when other
    work shares the machine) and peak RSS (MiB) of one process, from GNU time: a child's
    ``ru_maxrss`` counts the memory of the process that forked it, here this one's."""
    start = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", *command], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    if result.returncode:
        raise RuntimeError(f"{command} failed: {result.stderr}")
    rss, user, system = result.stderr.strip().splitlines()[-1].split()
    return wall, float(user) + float(system), int(rss) / 1024


def _importtime(command: list[str], env: dict[str, str]) -> tuple[bool, list[tuple[float, str]]]:
    """Whether LiteLLM was imported, and the slowest top-level imports (ms, module)."""
    result = subprocess.run([command[0], "-X", "importtime", *command[1:]], env=env,
                            capture_output=True, text=True, check=True)
    imported, top = False, []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.removeprefix("import time:").split("|")
        if not cumulative.strip().isdigit():
            continue
        imported |= name.strip().split(".")[0] == "litellm"
        if not name[1:].startswith(" "):  # imported by the program itself: includes its children
            top.append((int(cumulative) / 1000, name.strip()))
    return imported, sorted(top, reverse=True)[:6]


def bench_cli(base: str, runs: int, baseline_src: str | None = None,
              ) -> list[tuple[str, float, float, float, bool, list[tuple[float, str]]]]:
    """Each command ``runs`` times; with ``baseline_src`` (another tree's ``src``, e.g. the
    main branch's) each run of this tree alternates with one of that tree, so that the
    machine's load weighs on both alike."""
    rows = []
    trees = {"": SRC, " (baseline)": baseline_src} if baseline_src else {"": SRC}
    with tempfile.TemporaryDirectory() as home:
        env = _cli_env(base, Path(home))
        commands = {"dewey-llm chat --no-cache hi": ["chat", "--no-cache", "hi"],
                    "dewey-llm embed hi": ["embed", "hi"],
                    "python -c pass": None}
        for label, args in commands.items():
            command = [sys.executable, "-m", "dewey.llm", *args] if args else [sys.executable, "-c", "pass"]
            envs = {suffix: {**env, "PYTHONPATH": src} for suffix, src in trees.items()} if args else {"": env}
            samples: dict[str, list[tuple[float, float, float]]] = {suffix: [] for suffix in envs}
            for tree_env in envs.values():
                _run_measured(command, tree_env)  # warm the OS file cache and write bytecode
            for _ in range(runs):
                for suffix, tree_env in envs.items():
                    samples[suffix].append(_run_measured(command, tree_env))
            for suffix, got in samples.items():
                imported, top = _importtime(command, envs[suffix]) if args else (False, [])
                rows.append((label + suffix, statistics.median(s[0] for s in got),
                             statistics.median(s[1] for s in got), max(s[2] for s in got), imported, top))
    return rows


# --- report ----------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--async-calls", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--cli-runs", type=int, default=10)
    parser.add_argument("--baseline-src", help="another tree's src/ (e.g. the main branch's): its cold "
                                               "CLI rows are measured alternately with this tree's")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        base = stack.enter_context(fast_server())
        cli = bench_cli(base, args.cli_runs, args.baseline_src)
        completion = bench_completion(base, args.calls)
        # Each section starts from a full collection, as it would in a process of its own:
        # the LiteLLM calls above leave the collector's generations such that the next
        # thousands of allocations pay for full collections over LiteLLM's ~400,000
        # objects (the async rows measured 0.32-0.37x without this, 0.48-0.57x with it or
        # in a fresh process: bench/ab_async.py).
        gc.collect()
        stream = bench_stream(base, args.calls)
        gc.collect()
        rates = asyncio.run(bench_async(base, args.async_calls, args.concurrency))
    for line in _report(completion, stream, rates, cli, args):
        print(line)


def _report(completion: list[tuple[str, float, str]], stream: list[tuple[str, float, float]],
            rates: dict[str, float], cli: list[Any], args: argparse.Namespace) -> Iterator[str]:
    yield f"### One sync completion ({args.calls} calls each, interleaved)\n"
    yield "| client | median ms | ratio |"
    yield "| --- | ---: | ---: |"
    for name, ms, ratio in completion:
        baseline = "litellm.completion" if "litellm" in name else "raw httpx"
        yield f"| {name} | {ms:.3f} | {ratio} of {baseline} |"
    yield f"\n### Streams ({args.calls} each; 7 text chunks, usage chunk)\n"
    yield "| client | first text ms | total ms |"
    yield "| --- | ---: | ---: |"
    for name, first, total in stream:
        yield f"| {name} | {first:.3f} | {total:.3f} |"
    (_, raw_first, raw_total), (_, first, total) = stream
    yield f"\nratios: first text {first / raw_first:.2f}x, total {total / raw_total:.2f}x\n"
    yield f"### {args.async_calls} async calls at concurrency {args.concurrency} (median of 3)\n"
    yield "| client | calls/s |"
    yield "| --- | ---: |"
    for name, rate in rates.items():
        yield f"| {name} | {rate:.0f} |"
    raw_rate, native_rate = rates.values()
    yield f"\nratio: {native_rate / raw_rate:.2f}x raw aiohttp\n"
    yield f"### Cold CLI, whole process ({args.cli_runs} runs, median; peak RSS the largest)\n"
    yield "| command | median wall s | median CPU s | peak RSS MiB | litellm imported | slowest imports (ms) |"
    yield "| --- | ---: | ---: | ---: | ---: | --- |"
    for label, wall, cpu, rss, imported, top in cli:
        slowest = ", ".join(f"{name} {ms:.0f}" for ms, name in top)
        yield f"| `{label}` | {wall:.3f} | {cpu:.3f} | {rss:.1f} | {'yes' if imported else 'no'} | {slowest} |"


if __name__ == "__main__":
    main()
