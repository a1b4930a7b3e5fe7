"""A whole cache hit: ``LiteLLMClient.generate_completion`` in process, and a cold CLI run.

    python bench/bench_cache_hit.py [--calls 2000] [--cli-runs 10]

1. In process: a client with the SQLite cache (the default backend, here in a temporary
   ``$XDG_CACHE_HOME``) asks the fake provider once, then the same question ``--calls``
   times; each of those is a full hit (request preparation, key, lookup, the rebuilt
   response, the usage ledger).  Goal: median under 1 ms.
2. Cold CLI: ``dewey-llm chat "..."`` in a new process, answered from a warm cache file;
   the whole process is timed, start to exit.  Goal: median under 300 ms.

The fake provider (``tests/servers/fake_provider.py``) answers the one real call of
each part; the benchmark checks that the timed calls sent it nothing.  Exit status 1 if
a goal is missed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.servers.fake_provider

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from tests.servers.fake_provider import FakeProvider, Reply  # noqa: E402

HIT_GOAL_MS = 1.0
CLI_GOAL_MS = 300.0
MODEL = "openai/gpt-4o-mini"
KEY = "sk-bench-0123456789"
ANSWER = ("A cache hit costs nothing and returns at once: the answer is read from the "
          "cache file instead of being asked of the model again. ") * 6


def percentiles(timings: list[float]) -> tuple[float, float, float]:
    """(median, p99, mean) of ``timings``."""
    ordered = sorted(timings)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered), p99, statistics.fmean(ordered)


def isolated_env(root: Path, provider: FakeProvider) -> dict[str, str]:
    """Environment of a user with caching on and nothing else configured."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("LITELLM_", "DEWEY_")) and "API_KEY" not in name}
    env.update(HOME=str(root / "home"), XDG_CACHE_HOME=str(root / "cache"),
               XDG_DATA_HOME=str(root / "data"), XDG_CONFIG_HOME=str(root / "config"),
               LITELLM_MODEL=MODEL, LITELLM_API_KEY=KEY, LITELLM_API_BASE=provider.openai_base,
               LITELLM_CACHE="true", LITELLM_LOCAL_MODEL_COST_MAP="True")
    return env


def bench_client(provider: FakeProvider, root: Path, calls: int, warmup: int,
                 track_usage: bool) -> dict[str, tuple[float, float, float]]:
    """Hit latency of generate_completion (and of a replayed stream), in milliseconds."""
    from dewey.llm import LiteLLMClient, LiteLLMConfig

    os.environ["XDG_CACHE_HOME"] = str(root / "cache")
    os.environ["XDG_DATA_HOME"] = str(root / "data")
    config = LiteLLMConfig(model=MODEL, api_key=KEY, api_base=provider.openai_base, cache=True,
                           track_usage=track_usage)
    messages = [{"role": "system", "content": "You answer in one paragraph."},
                {"role": "user", "content": "What does a cache hit cost?"}]
    results: dict[str, tuple[float, float, float]] = {}
    with LiteLLMClient(config=config) as client:
        provider.script("gpt-4o-mini", Reply.ok(ANSWER))
        client.generate_completion(messages, temperature=0.2)  # the one real call
        sent = len(provider.requests)
        for label, stream in (("generate_completion", False), ("stream=True, all chunks", True)):
            clock = time.perf_counter_ns
            timings = []
            for index in range(warmup + calls):
                start = clock()
                response = client.generate_completion(messages, temperature=0.2, stream=stream)
                text = response.text() if stream else response.choices[0].message.content
                if index >= warmup:
                    timings.append((clock() - start) / 1e6)
                if text != ANSWER:
                    raise RuntimeError(f"{label}: a hit returned another answer: {text[:60]!r}")
            results[label] = percentiles(timings)
        if len(provider.requests) != sent:
            raise RuntimeError("a timed call reached the provider: not a cache hit")
    return results


def bench_cli(provider: FakeProvider, root: Path, runs: int) -> tuple[float, float, float] | str:
    """Wall time of whole ``dewey-llm chat`` processes answered from the cache, in ms."""
    script = Path(sys.executable).with_name("dewey-llm")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "dewey.llm"]
    env = isolated_env(root / "cli", provider)
    prompt = "Why is a cached answer fast?"
    provider.script("gpt-4o-mini", Reply.ok(ANSWER))
    try:
        fill = subprocess.run([*command, "chat", prompt], env=env, capture_output=True,
                              text=True, timeout=120, cwd=root)
    except OSError as exc:
        return f"unavailable ({exc})"
    if fill.returncode != 0:
        return f"unavailable (dewey-llm chat failed: {fill.stderr.strip()[-300:]})"
    sent = len(provider.requests)
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run([*command, "chat", prompt], env=env, capture_output=True,
                                text=True, timeout=120, cwd=root)
        timings.append((time.perf_counter() - start) * 1000)
        if result.returncode != 0 or result.stdout.strip() != ANSWER.strip():
            raise RuntimeError(f"the cached CLI run failed or answered otherwise: {result.stderr}")
    if len(provider.requests) != sent:
        raise RuntimeError("a timed CLI run reached the provider: not a cache hit")
    return percentiles(timings)


def bench_python_startup(runs: int) -> tuple[float, float, float]:
    """Wall time of ``python -c pass``, the floor under any CLI run, in ms."""
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        timings.append((time.perf_counter() - start) * 1000)
    return percentiles(timings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="timed hits in process")
    parser.add_argument("--warmup", type=int, default=200, help="untimed hits first")
    parser.add_argument("--cli-runs", type=int, default=10, help="timed CLI processes")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="dewey-bench-"))
    try:
        with FakeProvider() as provider:
            cli = bench_cli(provider, root, args.cli_runs)
            startup = bench_python_startup(args.cli_runs)
            ledger_on = bench_client(provider, root / "on", args.calls, args.warmup, True)
            ledger_off = bench_client(provider, root / "off", args.calls, args.warmup, False)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(f"Full cache hits with SQLite, {args.calls} calls after {args.warmup} warm-up "
          f"(Python {sys.version.split()[0]})")
    print(f"{'call':<42} {'median ms':>10} {'p99 ms':>10} {'mean ms':>10}")
    rows: list[tuple[str, Any]] = [
        *((f"{label} (usage ledger on)", value) for label, value in ledger_on.items()),
        *((f"{label} (usage ledger off)", value) for label, value in ledger_off.items()),
        ("python -c pass (process floor)", startup),
        ('dewey-llm chat "..." (whole process)', cli),
    ]
    for label, value in rows:
        if isinstance(value, str):
            print(f"{label:<42} {value}")
        else:
            print(f"{label:<42} {value[0]:>10.3f} {value[1]:>10.3f} {value[2]:>10.3f}")
    hit_ok = ledger_on["generate_completion"][0] < HIT_GOAL_MS
    print(f"generate_completion hit goal (median < {HIT_GOAL_MS:.0f} ms): "
          f"{'met' if hit_ok else 'MISSED'}")
    cli_ok = not isinstance(cli, str) and cli[0] < CLI_GOAL_MS
    print(f"cold CLI goal (median < {CLI_GOAL_MS:.0f} ms): "
          f"{'met' if cli_ok else 'MISSED' if not isinstance(cli, str) else 'not measured'}")
    return 0 if hit_ok and cli_ok else 1


if __name__ == "__main__":
    sys.exit(main())
