"""dewey-llm against LiteLLM, side by side: does the wrapper cost anything?

    python bench/run.py                 # or: make bench   (about 3-5 minutes)
    python bench/run.py --quick         # fewer repetitions, for a smoke test
    python bench/run.py --skip-local --no-profile

Starts ``bench/fast_server.py`` (an OpenAI-compatible server that answers instantly) in
a subprocess, then measures, in this order:

1. import time and peak-RSS growth of ``import dewey.llm``, ``from dewey.llm import
   LiteLLMClient`` and ``import litellm`` (a fresh process per run);
2. one non-streaming completion: raw httpx, the openai SDK, ``litellm.completion`` and
   ``LiteLLMClient.generate_completion`` (usage ledger off, and on);
3. one stream: time to first chunk and to the last one, LiteLLM and dewey-llm;
4. a SQLite cache hit in process, and a whole ``dewey-llm chat`` process answered from
   the cache (``bench/bench_cache_hit.py``'s functions);
5. 500 completions at concurrency 50, ``AsyncLiteLLMClient.generate_completions``
   against ``asyncio.gather`` over ``litellm.acompletion`` with a semaphore;
6. the embedded local model (``bench/bench_local.py`` in a subprocess).

Contenders are interleaved call by call (A, B, A, B, ... with the order rotated every
round) so that drift on a shared machine hits them all alike; each figure is a median.
Prints a Markdown report, writes it to ``bench/RESULTS.md``, and for a missed goal
profiles the dewey-llm path with pyinstrument (``bench/profiles/``).  Goals are reported
as met or missed; the exit status is 0 either way (this is a measurement, not a test).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PY = sys.executable
MODEL = "openai/bench"  # not in LiteLLM's price map, like any private or proxied model
PRICED_MODEL = "openai/gpt-4o-mini"  # in the price map: LiteLLM prices the response itself
KEY = "sk-bench-0123456789"
MESSAGES = [{"role": "user", "content": "Say hello to the benchmark."}]

# Goals from the issue "Benchmarks: prove that dewey-llm costs nothing on top of LiteLLM".
IMPORT_GOAL_MS = 60.0
OVERHEAD_GOAL = 1.05  # dewey-llm / LiteLLM median latency
THROUGHPUT_GOAL = 0.95  # dewey-llm / LiteLLM throughput
HIT_GOAL_MS = 1.0
CLI_GOAL_MS = 300.0


# --- a private environment, before anything imports dewey.llm or LiteLLM ---------------------

WORK = Path(tempfile.mkdtemp(prefix="dewey-bench-"))


def isolated_env() -> dict[str, str]:
    """This user's environment without dewey-llm/LiteLLM settings or provider keys, with
    config, data (usage ledger) and cache directories in a temporary directory."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("LITELLM_", "DEWEY_")) and "API_KEY" not in name}
    env.update(XDG_CONFIG_HOME=str(WORK / "config"), XDG_DATA_HOME=str(WORK / "data"),
               XDG_CACHE_HOME=str(WORK / "cache"), LITELLM_LOCAL_MODEL_COST_MAP="True")
    return env


os.environ.clear()
os.environ.update(isolated_env())
os.chdir(WORK)  # no ./dewey.yaml of the caller's applies
sys.path.insert(0, str(BENCH))

from fast_server import running  # noqa: E402 (bench/ on the path first)

# --- statistics and reporting ------------------------------------------------------------------

def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def spread(values: list[float], digits: int = 3) -> str:
    return f"{quantile(values, 0.1):.{digits}f}-{quantile(values, 0.9):.{digits}f}"


@dataclass
class Goal:
    name: str
    target: str
    measured: str
    met: bool | None  # None: not measured
    note: str = ""

    @property
    def status(self) -> str:
        return "not measured" if self.met is None else "met" if self.met else "**MISSED**"


@dataclass
class Report:
    sections: list[tuple[str, list[str]]] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    diagnoses: list[tuple[str, str]] = field(default_factory=list)

    def section(self, title: str, lines: list[str], note: str = "") -> None:
        lines = [*lines, "", note] if note else lines
        self.sections.append((title, lines))
        print(f"\n## {title}\n", flush=True)
        print("\n".join(lines), flush=True)


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    align = ["---"] + ["---:"] * (len(header) - 1)
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |",
            *("| " + " | ".join(row) + " |" for row in rows)]


def shuffled_rounds(names: list[str], rounds: int, seed: int = 0) -> Iterator[list[str]]:
    """Each round every contender once, in a new random order (a fixed seed).

    Not a fixed A, B, C order: LiteLLM leaves work in a background thread after each call
    (success logging), which runs during whatever call comes next.  With a fixed order the
    same contender would always pay for its neighbour's (measured: +8% on an A/A pair).
    """
    rng = random.Random(seed)
    for _ in range(rounds):
        order = list(names)
        rng.shuffle(order)
        yield order


# --- machine and versions ----------------------------------------------------------------------

def machine() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = "unknown"
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024 ** 2:.1f} GiB"
    try:
        nproc = str(len(os.sched_getaffinity(0)))
    except AttributeError:
        nproc = str(os.cpu_count())

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {"date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "machine": f"{nproc} CPUs ({cpu}), {ram} RAM, {platform.system()} {platform.release()}",
            "load": "load average {:.2f} {:.2f} {:.2f} at start".format(*os.getloadavg()),
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "versions": ", ".join(f"{name} {version(name)}" for name in
                                  ("dewey-llm", "litellm", "openai", "httpx"))}


# --- the fast server ----------------------------------------------------------------------------

fast_server = running  # bench/fast_server.py in its own process; yields its OpenAI base URL


# --- 1. imports ----------------------------------------------------------------------------------

IMPORT_PROBE = """\
import sys, time
def memory():  # (current, peak) resident set size in KiB
    fields = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])
rss_before, peak_before = memory()
start = time.perf_counter()
{statement}
elapsed = time.perf_counter() - start
rss_after, peak_after = memory()
loaded = "litellm" in sys.modules
{after}
import json
print(json.dumps({{"ms": elapsed * 1000, "rss_mb": (rss_after - rss_before) / 1024,
                  "peak_mb": (peak_after - peak_before) / 1024, "litellm": loaded,
                  "litellm_after": "litellm" in sys.modules}}))
"""

IMPORTS = {
    "import dewey.llm": ("import dewey.llm", ""),
    "from dewey.llm import LiteLLMClient": (
        "from dewey.llm import LiteLLMClient",
        # Making a client must not load LiteLLM either (only a call does).
        "LiteLLMClient(model='openai/bench', api_key='sk-x', api_base='http://127.0.0.1:9/v1',"
        " track_usage=False)"),
    "import litellm": ("import litellm", ""),
}


def bench_imports(runs: int, report: Report) -> None:
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in IMPORTS}
    for order in shuffled_rounds(list(IMPORTS), runs):
        for name in order:
            statement, after = IMPORTS[name]
            done = subprocess.run([PY, "-c", IMPORT_PROBE.format(statement=statement, after=after)],
                                  capture_output=True, text=True, timeout=120, cwd=WORK)
            if done.returncode != 0:
                raise RuntimeError(f"{name} failed: {done.stderr[-500:]}")
            results[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    rows = []
    for name, runs_ in results.items():
        times = [r["ms"] for r in runs_]
        rss = [r["rss_mb"] for r in runs_]
        peak = [r["peak_mb"] for r in runs_]
        litellm_loaded = "yes" if any(r["litellm"] for r in runs_) else "no"
        if any(r["litellm_after"] and not r["litellm"] for r in runs_):
            litellm_loaded += " (after making a client: yes)"
        elif name.startswith("from dewey"):
            litellm_loaded += " (also not after making a client)"
        rows.append([f"`{name}`", f"{median(times):.1f}", spread(times, 1), f"{median(peak):.1f}",
                     f"{median(rss):.1f}", litellm_loaded])
    report.section(f"1. Import (fresh process each, {runs} runs, median)", table(
        ["statement", "ms", "p10-p90 ms", "peak RSS +MiB", "RSS +MiB", "litellm in sys.modules"],
        rows), note="Memory from /proc/self/status (VmHWM, VmRSS) before and after the statement.")
    dewey = results["import dewey.llm"]
    ms = median([r["ms"] for r in dewey])
    loaded = any(r["litellm"] for r in dewey)
    report.goals.append(Goal("`import dewey.llm`", f"< {IMPORT_GOAL_MS:.0f} ms, litellm not imported",
                             f"{ms:.1f} ms, litellm {'imported' if loaded else 'not imported'}",
                             ms < IMPORT_GOAL_MS and not loaded))


# --- 2. one completion ------------------------------------------------------------------------

def timed_calls(contenders: dict[str, Callable[[], Any]], calls: int, warmup: int,
                block: int = 10) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall ms of each call, and process CPU ms per call of each block of ``block`` calls.

    Interleaved in blocks: every round runs ``block`` calls of each contender, the
    contenders in a shuffled order, so drift hits all alike while each contender mostly
    pays for its own background work.
    """
    for call in contenders.values():
        for _ in range(warmup):
            call()
    wall: dict[str, list[float]] = {name: [] for name in contenders}
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    clock, cpu_clock = time.perf_counter_ns, time.process_time_ns
    for order in shuffled_rounds(list(contenders), -(-calls // block)):
        for name in order:
            call = contenders[name]
            cpu_start = cpu_clock()
            for _ in range(block):
                start = clock()
                call()
                wall[name].append((clock() - start) / 1e6)
            cpu[name].append((cpu_clock() - cpu_start) / 1e6 / block)
    return wall, cpu


def sync_contenders(base: str) -> tuple[dict[str, Callable[[], Any]], list[Any]]:
    import httpx
    import litellm
    import openai

    from dewey.llm import LiteLLMClient

    http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"})
    sdk = openai.OpenAI(base_url=base, api_key=KEY, max_retries=0)
    # transport="litellm": this compares dewey-llm's LiteLLM path with bare LiteLLM (the
    # native transport is measured against raw clients by bench/bench_transports.py).
    off = LiteLLMClient(model=MODEL, api_base=base, api_key=KEY, track_usage=False, transport="litellm")
    on = LiteLLMClient(model=MODEL, api_base=base, api_key=KEY, transport="litellm")  # ledger on
    priced = LiteLLMClient(model=PRICED_MODEL, api_base=base, api_key=KEY, track_usage=False,
                           transport="litellm")

    def raw() -> Any:
        response = http.post("/chat/completions", json={"model": "bench", "messages": MESSAGES})
        response.raise_for_status()
        return response.json()

    def via_litellm(model: str = MODEL) -> Any:
        return litellm.completion(model=model, messages=MESSAGES, api_base=base, api_key=KEY,
                                  max_retries=0)

    contenders = {
        "raw httpx (persistent Client)": raw,
        "openai SDK (max_retries=0)": lambda: sdk.chat.completions.create(
            model="bench", messages=MESSAGES),  # type: ignore[arg-type]
        "litellm.completion": via_litellm,
        "litellm.completion (A/A control)": via_litellm,
        "dewey-llm, track_usage=False": lambda: off.generate_completion(MESSAGES),
        "dewey-llm, usage ledger on (default)": lambda: on.generate_completion(MESSAGES),
        f"litellm.completion, priced model ({PRICED_MODEL})": lambda: via_litellm(PRICED_MODEL),
        "dewey-llm, track_usage=False, priced model": lambda: priced.generate_completion(MESSAGES),
    }
    return contenders, [http, sdk, off, on, priced]


def bench_completion(base: str, calls: int, warmup: int, report: Report) -> None:
    contenders, resources = sync_contenders(base)
    try:
        wall, cpu = timed_calls(contenders, calls, warmup)
    finally:
        for resource in resources:
            resource.close()
    baselines = {"dewey-llm, track_usage=False": "litellm.completion",
                 "dewey-llm, usage ledger on (default)": "litellm.completion",
                 "litellm.completion (A/A control)": "litellm.completion",
                 "dewey-llm, track_usage=False, priced model":
                     f"litellm.completion, priced model ({PRICED_MODEL})"}
    rows = []
    for name, times in wall.items():
        base_name = baselines.get(name)
        wall_ratio = f"{median(times) / median(wall[base_name]):.3f}" if base_name else ""
        cpu_ratio = f"{median(cpu[name]) / median(cpu[base_name]):.3f}" if base_name else ""
        rows.append([name, f"{median(times):.3f}", spread(times), wall_ratio,
                     f"{median(cpu[name]):.3f}", cpu_ratio])
    report.section(
        f"2. One non-streaming completion ({len(wall['litellm.completion'])} calls each after "
        f"{warmup} warm-up, interleaved in shuffled blocks of 10)",
        table(["client", "median ms", "p10-p90 ms", "ratio to LiteLLM", "CPU ms/call",
               "CPU ratio"], rows),
        note=f"Model `{MODEL}` (not in LiteLLM's price map, like a private or proxied model) "
        "unless marked priced.  CPU ms/call: this process's CPU time, all threads, per "
        "call (median over blocks); the server runs in another process.")
    ratio = median(wall["dewey-llm, track_usage=False"]) / median(wall["litellm.completion"])
    control = median(wall["litellm.completion (A/A control)"]) / median(wall["litellm.completion"])
    ledger = median(wall["dewey-llm, usage ledger on (default)"]) / median(wall["litellm.completion"])
    report.goals.append(Goal(
        "completion latency, dewey-llm / litellm", f"≤ {OVERHEAD_GOAL:.2f}",
        f"{ratio:.3f} (ledger on: {ledger:.3f}; A/A control {control:.3f})", ratio <= OVERHEAD_GOAL))


# --- 3. one stream -----------------------------------------------------------------------------

def bench_stream(base: str, calls: int, warmup: int, report: Report, block: int = 5) -> None:
    import litellm

    from dewey.llm import LiteLLMClient

    off = LiteLLMClient(model=MODEL, api_base=base, api_key=KEY, track_usage=False, transport="litellm")
    on = LiteLLMClient(model=MODEL, api_base=base, api_key=KEY, transport="litellm")

    def via_litellm() -> Any:
        # stream_options as dewey-llm sends it for OpenAI-compatible providers (usage at end).
        return litellm.completion(model=MODEL, messages=MESSAGES, api_base=base, api_key=KEY,
                                  max_retries=0, stream=True,
                                  stream_options={"include_usage": True})

    openers: dict[str, Callable[[], Any]] = {
        "litellm.completion(stream=True)": via_litellm,
        "dewey-llm, track_usage=False": lambda: off.generate_completion(MESSAGES, stream=True),
        "dewey-llm, usage ledger on (default)":
            lambda: on.generate_completion(MESSAGES, stream=True),
    }
    first: dict[str, list[float]] = {name: [] for name in openers}
    token: dict[str, list[float]] = {name: [] for name in openers}
    total: dict[str, list[float]] = {name: [] for name in openers}
    clock = time.perf_counter_ns

    def one(name: str, record: bool) -> None:
        start = clock()
        seen = text = None
        chunks = 0
        for chunk in openers[name]():
            if seen is None:
                seen = clock()
            if text is None and chunk.choices and chunk.choices[0].delta.content:
                text = clock()
            chunks += 1
        end = clock()
        if chunks < 3:
            raise RuntimeError(f"{name}: {chunks} chunks")
        if record:
            first[name].append((seen - start) / 1e6)  # type: ignore[operator]
            token[name].append((text - start) / 1e6)  # type: ignore[operator]
            total[name].append((end - start) / 1e6)

    try:
        for name in openers:
            for _ in range(warmup):
                one(name, False)
        for order in shuffled_rounds(list(openers), -(-calls // block), seed=1):
            for name in order:
                for _ in range(block):
                    one(name, True)
    finally:
        off.close()
        on.close()
    base_name = "litellm.completion(stream=True)"
    rows = []
    for name in openers:
        rows.append([name, f"{median(first[name]):.3f}", f"{median(token[name]):.3f}",
                     f"{median(total[name]):.3f}", spread(total[name]),
                     f"{median(first[name]) / median(first[base_name]):.3f}",
                     f"{median(token[name]) / median(token[base_name]):.3f}",
                     f"{median(total[name]) / median(total[base_name]):.3f}"])
    report.section(
        f"3. One stream ({len(total[base_name])} streams each after {warmup} warm-up, "
        f"interleaved in shuffled blocks of {block})",
        table(["client", "first chunk ms", "first text ms", "all chunks ms", "p10-p90 all ms",
               "first-chunk ratio", "first-text ratio", "total ratio"], rows),
        note="Each stream: a role chunk (no text), 7 content chunks, a finish chunk and a "
        "usage chunk.  dewey-llm reads up to the first chunk with text before returning "
        "the stream (so a failure before any text can be retried): its first chunk "
        "arrives with the first text, one chunk later than LiteLLM's role chunk.")
    ratio_first = median(first["dewey-llm, track_usage=False"]) / median(first[base_name])
    ratio_token = median(token["dewey-llm, track_usage=False"]) / median(token[base_name])
    ratio_total = median(total["dewey-llm, track_usage=False"]) / median(total[base_name])
    report.goals.append(Goal("stream first chunk, dewey-llm / litellm", f"≤ {OVERHEAD_GOAL:.2f}",
                             f"{ratio_first:.3f}", ratio_first <= OVERHEAD_GOAL))
    report.goals.append(Goal("stream first text, dewey-llm / litellm (extra)",
                             f"≤ {OVERHEAD_GOAL:.2f}", f"{ratio_token:.3f}",
                             ratio_token <= OVERHEAD_GOAL))
    report.goals.append(Goal("stream total, dewey-llm / litellm", f"≤ {OVERHEAD_GOAL:.2f}",
                             f"{ratio_total:.3f}", ratio_total <= OVERHEAD_GOAL))


# --- 4. cache hits (bench/bench_cache_hit.py) -------------------------------------------------------

@contextlib.contextmanager
def saved_environ() -> Iterator[None]:
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def bench_cache(calls: int, warmup: int, cli_runs: int, report: Report) -> None:
    try:
        import bench_cache_hit as hits
    except Exception as exc:  # a colleague's module: report, don't crash
        report.section("4. Cache hits", [f"skipped: bench/bench_cache_hit.py failed to import ({exc})"])
        report.goals.append(Goal("cache hit (SQLite, in process)", "< 1 ms", "-", None))
        report.goals.append(Goal("cold CLI call answered from the cache", "< 300 ms", "-", None))
        return
    root = WORK / "cache-hit"
    root.mkdir(parents=True, exist_ok=True)
    with saved_environ(), hits.FakeProvider() as provider:
        cli = hits.bench_cli(provider, root, cli_runs)
        startup = hits.bench_python_startup(cli_runs)
        on = hits.bench_client(provider, root / "on", calls, warmup, True)
        off = hits.bench_client(provider, root / "off", calls, warmup, False)
    rows = [[f"{label}, usage ledger on", f"{value[0]:.3f}", f"{value[1]:.3f}"]
            for label, value in on.items()]
    rows += [[f"{label}, usage ledger off", f"{value[0]:.3f}", f"{value[1]:.3f}"]
             for label, value in off.items()]
    rows.append(["`python -c pass` (process floor)", f"{startup[0]:.1f}", f"{startup[1]:.1f}"])
    if isinstance(cli, str):
        rows.append(['`dewey-llm chat "..."`, whole process', cli, ""])
    else:
        rows.append(['`dewey-llm chat "..."`, whole process', f"{cli[0]:.1f}", f"{cli[1]:.1f}"])
    report.section(
        f"4. Cache hits (SQLite; {calls} hits after {warmup} warm-up; {cli_runs} CLI runs)",
        table(["call", "median ms", "p99 ms"], rows),
        note="From `bench/bench_cache_hit.py`: a warm entry, `generate_completion` in process; "
        "the CLI from a warm cache file (the provider checks that nothing reached it).")
    hit = on["generate_completion"][0]
    report.goals.append(Goal("cache hit (SQLite, in process, ledger on)", f"< {HIT_GOAL_MS:.0f} ms",
                             f"{hit:.3f} ms", hit < HIT_GOAL_MS))
    if isinstance(cli, str):
        report.goals.append(Goal("cold CLI call answered from the cache", f"< {CLI_GOAL_MS:.0f} ms",
                                 cli, None))
    else:
        report.goals.append(Goal("cold CLI call answered from the cache", f"< {CLI_GOAL_MS:.0f} ms",
                                 f"{cli[0]:.0f} ms (python -c pass: {startup[0]:.0f} ms)",
                                 cli[0] < CLI_GOAL_MS))


# --- 5. concurrency ------------------------------------------------------------------------------

async def _concurrency(base: str, total: int, concurrency: int, rounds: int
                       ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    import litellm

    from dewey.llm import AsyncLiteLLMClient

    off = AsyncLiteLLMClient(model=MODEL, api_base=base, api_key=KEY, track_usage=False, transport="litellm")
    on = AsyncLiteLLMClient(model=MODEL, api_base=base, api_key=KEY, transport="litellm")
    batch = [MESSAGES] * total

    async def gathered(n: int) -> None:
        gate = asyncio.Semaphore(concurrency)

        async def one() -> Any:
            async with gate:
                return await litellm.acompletion(model=MODEL, messages=MESSAGES, api_base=base,
                                                 api_key=KEY, max_retries=0)

        results = await asyncio.gather(*(one() for _ in range(n)))
        assert len(results) == n

    async def dewey(client: AsyncLiteLLMClient, n: int) -> None:
        results = await client.generate_completions(batch[:n], concurrency=concurrency)
        assert len(results) == n

    runners: dict[str, Callable[[int], Awaitable[None]]] = {
        "asyncio.gather(litellm.acompletion), Semaphore(50)": gathered,
        "dewey-llm generate_completions, track_usage=False": lambda n: dewey(off, n),
        "dewey-llm generate_completions, usage ledger on": lambda n: dewey(on, n),
    }
    for run in runners.values():  # warm-up: connection pools, lazy imports
        await run(concurrency * 2)
    rates: dict[str, list[float]] = {name: [] for name in runners}
    cpu: dict[str, list[float]] = {name: [] for name in runners}
    for order in shuffled_rounds(list(runners), rounds, seed=2):
        for name in order:
            cpu_start = time.process_time()
            start = time.perf_counter()
            await runners[name](total)
            rates[name].append(total / (time.perf_counter() - start))
            cpu[name].append((time.process_time() - cpu_start) * 1000 / total)
    off.close()
    on.close()
    return rates, cpu


def bench_concurrency(base: str, total: int, concurrency: int, rounds: int,
                      report: Report) -> None:
    rates, cpu = asyncio.run(_concurrency(base, total, concurrency, rounds))
    base_name = "asyncio.gather(litellm.acompletion), Semaphore(50)"
    rows = [[name, f"{median(values):.0f}", spread(values, 0),
             f"{median(values) / median(rates[base_name]):.3f}", f"{median(cpu[name]):.3f}",
             f"{median(cpu[name]) / median(cpu[base_name]):.3f}"] for name, values in rates.items()]
    report.section(
        f"5. {total} completions at concurrency {concurrency} ({rounds} rounds each, "
        "interleaved in shuffled order)",
        table(["client", "median calls/s", "p10-p90 calls/s", "throughput ratio", "CPU ms/call",
               "CPU ratio"], rows),
        note="One event loop for all rounds; a warm-up of 100 calls each first.")
    ratio = median(rates["dewey-llm generate_completions, track_usage=False"]) / median(rates[base_name])
    ledger = median(rates["dewey-llm generate_completions, usage ledger on"]) / median(rates[base_name])
    report.goals.append(Goal("throughput at concurrency 50, dewey-llm / litellm",
                             f"≥ {THROUGHPUT_GOAL:.2f}", f"{ratio:.3f} (ledger on: {ledger:.3f})",
                             ratio >= THROUGHPUT_GOAL))


# --- 6. the local model --------------------------------------------------------------------------

def bench_local_model(runs: int, tokens: int, report: Report) -> None:
    script = BENCH / "bench_local.py"
    title = "6. Embedded local model (bench/bench_local.py)"
    if not script.exists():
        report.section(title, ["skipped: bench/bench_local.py does not exist"])
        return
    # A subprocess: llama.cpp's threads and memory stay out of this process, and
    # bench_local.py's main() prints rather than returns.
    try:
        done = subprocess.run([PY, str(script), "--runs", str(runs), "--tokens", str(tokens)],
                              capture_output=True, text=True, timeout=240, cwd=WORK)
    except subprocess.TimeoutExpired:
        report.section(title, ["skipped: bench/bench_local.py took over 240 s"])
        return
    output = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0:
        error = (done.stderr.strip().splitlines() or ["no output"])[-1]
        report.section(title, [f"skipped: bench/bench_local.py failed: {error}"])
        return
    summary = []
    load = re.search(r"^load\s+(\d+)\s*ms", done.stdout, re.MULTILINE)
    if load:
        summary.append(f"Model load: **{load.group(1)} ms**.")
    for line in output:
        match = re.match(r"^(litellm\.completion|llama\.cpp direct|litellm stream=True)\s+"
                         r"([\d.]+)\s+([\d.]+)", line)
        if match:
            summary.append(f"{match.group(1)}: **{match.group(3)} tokens/s** "
                           f"({match.group(2)} s per call).")
    report.section(title, [*summary, "", "```", *output, "```"])


# --- profiling a missed goal -----------------------------------------------------------------------

def profile(name: str, work: Callable[[], Any], report: Report) -> None:
    """pyinstrument over ``work``; the tree goes to bench/profiles/NAME.txt and the report."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        report.diagnoses.append((name, "pyinstrument is not installed: "
                                 "`.venv/bin/pip install pyinstrument` to profile"))
        return
    profiler = Profiler(interval=0.0002)
    profiler.start()
    try:
        work()
    finally:
        profiler.stop()
    text = profiler.output_text(unicode=True, color=False, show_all=False)
    folder = BENCH / "profiles"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.txt").write_text(text)
    # The tree under the dewey-llm entry point, library internals folded away.
    lines = [line for line in text.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if "dewey/llm" in line), 0)
    report.diagnoses.append((f"{name}: pyinstrument tree", "\n".join(lines[start:start + 40])))


def timing_backend() -> Any:
    """A ``Transport`` (the client's only seam to LiteLLM) that adds up the time of each of
    its calls, so a dewey-llm call splits into LiteLLM's work and dewey-llm's own."""
    from dewey.llm._litellm import LiteLLMTransport

    class TimingTransport(LiteLLMTransport):
        def __init__(self) -> None:
            super().__init__()
            self.spent: dict[str, float] = {}  # microseconds

        def _timed(self, name: str, function: Callable[..., Any], *args: Any) -> Any:
            start = time.perf_counter_ns()
            try:
                return function(*args)
            finally:
                self.spent[name] = self.spent.get(name, 0.0) + (time.perf_counter_ns() - start) / 1e3

        def complete(self, kwargs: dict[str, Any]) -> Any:
            return self._timed("litellm.completion (the call itself)", super().complete, kwargs)

        def stream(self, kwargs: dict[str, Any]) -> Any:
            chunks = self._timed("litellm stream: open and read chunks", super().stream, kwargs)
            transport = self

            class Timed:
                def __iter__(self) -> Any:
                    return self

                def __next__(self) -> Any:
                    return transport._timed("litellm stream: open and read chunks", chunks.__next__)

                def close(self) -> None:
                    chunks.close()

            return Timed()

        def assemble(self, chunks: list[Any], messages: list[dict[str, Any]]) -> Any:
            return self._timed("Transport.assemble -> litellm.stream_chunk_builder",
                               super().assemble, chunks, messages)

    return TimingTransport()


def breakdown(name: str, calls: int, total_us: float, spent: dict[str, float],
              report: Report, what: str = "wall time",
              rest: str = "dewey-llm's own code (the rest)") -> None:
    rows = [(label, value / calls) for label, value in spent.items()]
    own = total_us / calls - sum(value for _, value in rows)
    rows.append((rest, own))
    per_call = total_us / calls
    lines = [f"{calls} calls, {per_call:.0f} µs per call ({what}):"]
    lines += [f"  {value:8.0f} µs  {100 * value / per_call:5.1f}%  {label}" for label, value in rows]
    report.diagnoses.append((f"{name}: where a dewey-llm call spends its time", "\n".join(lines)))


def diagnose(report: Report, base: str, quick: bool) -> None:
    """Profile the dewey-llm path of each missed goal: a split by Transport call, then the
    pyinstrument tree."""
    calls = 100 if quick else 400
    missed = {goal.name for goal in report.goals if goal.met is False}
    from dewey.llm import AsyncLiteLLMClient, LiteLLMClient

    def client(backend: Any = None) -> LiteLLMClient:
        return LiteLLMClient(model=MODEL, api_base=base, api_key=KEY, track_usage=False,
                             transport="litellm", transports={"litellm": backend} if backend else None)

    if any(name.startswith("completion latency") for name in missed):
        backend = timing_backend()
        with client(backend) as timed:
            timed.generate_completion(MESSAGES)
            backend.spent.clear()
            start = time.perf_counter_ns()
            for _ in range(calls):
                timed.generate_completion(MESSAGES)
            breakdown("completion", calls, (time.perf_counter_ns() - start) / 1e3, backend.spent,
                      report)
        with client() as plain:
            plain.generate_completion(MESSAGES)
            profile("completion", lambda: [plain.generate_completion(MESSAGES)
                                           for _ in range(calls)], report)
    if any(name.startswith("stream") for name in missed):
        backend = timing_backend()
        with client(backend) as timed:
            list(timed.generate_completion(MESSAGES, stream=True))
            backend.spent.clear()
            start = time.perf_counter_ns()
            for _ in range(calls):
                list(timed.generate_completion(MESSAGES, stream=True))
            breakdown("stream", calls, (time.perf_counter_ns() - start) / 1e3, backend.spent,
                      report)
        with client() as plain:
            profile("stream", lambda: [list(plain.generate_completion(MESSAGES, stream=True))
                                       for _ in range(calls)], report)
    if any(name.startswith("throughput") for name in missed):
        async def batch(backend: Any = None) -> float:
            batch_client = AsyncLiteLLMClient(model=MODEL, api_base=base, api_key=KEY, track_usage=False,
                                              transport="litellm",
                                              transports={"litellm": backend} if backend else None)
            await batch_client.generate_completions([MESSAGES] * 50, concurrency=50)
            if backend is not None:
                backend.spent.clear()
            start = time.process_time_ns()
            await batch_client.generate_completions([MESSAGES] * calls, concurrency=50)
            batch_client.close()
            return (time.process_time_ns() - start) / 1e3

        backend = timing_backend()
        cpu_us = asyncio.run(batch(backend))
        breakdown("concurrency", calls, cpu_us, backend.spent, report,
                  what="process CPU time, as async calls overlap",
                  rest="the rest: litellm.acompletion, the event loop, dewey-llm's own code")
        profile("concurrency", lambda: asyncio.run(batch()), report)
    if "`import dewey.llm`" in missed:
        done = subprocess.run([PY, "-X", "importtime", "-c", "import dewey.llm"],
                              capture_output=True, text=True, cwd=WORK)
        heaviest = sorted(done.stderr.splitlines()[1:],
                          key=lambda line: -int(line.split("|")[1]) if line.count("|") == 2 else 0)
        report.diagnoses.append(("import", "\n".join(heaviest[:20])))


# --- main ------------------------------------------------------------------------------------------

def render(info: dict[str, str], report: Report, seconds: float) -> str:
    lines = ["# dewey-llm benchmark results", "",
             f"- Date: {info['date']}", f"- Machine: {info['machine']}",
             f"- Load: {info['load']}; " + "{:.2f} {:.2f} {:.2f} at the end".format(*os.getloadavg()),
             f"- Python: {info['python']}", f"- Versions: {info['versions']}",
             f"- Run: `{' '.join(['python bench/run.py', *sys.argv[1:]])}`, {seconds:.0f} s",
             "", "Generated by `bench/run.py` (see `bench/README.md` for how to read it).", "",
             "## Goals", "",
             *table(["goal", "target", "measured", "status"],
                    [[g.name, g.target, g.measured, g.status] for g in report.goals])]
    for title, body in report.sections:
        lines += ["", f"## {title}", "", *body]
    if report.diagnoses:
        lines += ["", "## Profiles of missed goals", "",
                  "For each missed goal: the dewey-llm call split by its calls into LiteLLM "
                  "(timed at the client's `Backend` seam), then pyinstrument over the dewey-llm "
                  "path (library frames folded; full trees in `bench/profiles/`)."]
        for name, text in report.diagnoses:
            lines += ["", f"### {name}", "", "```", text, "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions (a smoke test)")
    parser.add_argument("--calls", type=int, default=300, help="timed calls per contender (2, 3)")
    parser.add_argument("--import-runs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=6, help="rounds of 500 calls per contender (5)")
    parser.add_argument("--skip-local", action="store_true", help="skip the local model (6)")
    parser.add_argument("--no-profile", action="store_true", help="do not profile missed goals")
    parser.add_argument("--output", type=Path, default=BENCH / "RESULTS.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.import_runs, args.rounds = 30, 3, 2
    output = args.output if args.output.is_absolute() else ROOT / args.output
    warmup = max(10, args.calls // 10)

    started = time.perf_counter()
    info = machine()
    print("# dewey-llm benchmark", *(f"{k}: {v}" for k, v in info.items()), sep="\n", flush=True)
    report = Report()
    if not args.no_profile:  # profiles of an earlier run's misses would mislead
        shutil.rmtree(BENCH / "profiles", ignore_errors=True)
    try:
        bench_imports(args.import_runs, report)
        with fast_server() as base:
            bench_completion(base, args.calls, warmup, report)
            bench_stream(base, args.calls, warmup, report)
            bench_cache(args.calls * 5, warmup * 5, 5 if args.quick else 10, report)
            bench_concurrency(base, 500, 50, args.rounds, report)
            if not args.no_profile:
                diagnose(report, base, args.quick)
        if args.skip_local:
            report.section("6. Embedded local model", ["skipped (--skip-local)"])
        else:
            bench_local_model(2 if args.quick else 3, 64, report)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    text = render(info, report, time.perf_counter() - started)
    output.write_text(text)
    print("\n## Goals\n")
    print("\n".join(table(["goal", "target", "measured", "status"],
                          [[g.name, g.target, g.measured, g.status] for g in report.goals])))
    for name, body in report.diagnoses:
        print(f"\n### profile: {name}\n{body}")
    print(f"\nwritten to {output} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
