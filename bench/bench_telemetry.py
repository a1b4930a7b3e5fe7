"""What OpenTelemetry costs a call: absent, installed but unconfigured, configured.

    python bench/bench_telemetry.py [--calls 300] [--rounds 8]

One worker process per mode, each with its own client against ``bench/fast_server.py``
(started here, in its own process), all driven in interleaved rounds so that the load
of a shared machine falls on every mode alike:

- ``absent``: ``opentelemetry`` cannot be imported (as if not installed);
- ``unconfigured``: installed and imported, but no tracer or meter provider set (the
  API's defaults): the client decides once that there is nothing to do;
- ``configured``: the SDK's ``TracerProvider`` (``BatchSpanProcessor``, an exporter that
  drops what it is given) and ``MeterProvider`` (an in-memory reader), given to the client.

Each call is a non-streamed completion or a stream read to its end (``--stream``), with
``max_retries=0``.  Prints, per mode, the median and p90 wall time of a call, and the
CPU time of the worker process per call (every thread: the span exporter's too), which
a busy shared machine disturbs far less than wall time; and both as ratios to
``absent``.  The goal: ``unconfigured`` within noise of ``absent`` (median ratio under
1.03).  Nothing asserts it: this is a measurement.

On a loaded machine the end-to-end figures move by more than telemetry costs, so the
run ends with that cost alone: the telemetry work of one traced call (its span, one
attempt span, the metrics), timed in this process with the SDK configured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent / "src")]  # this tree's dewey.llm, as in the workers

from run import PY, fast_server  # noqa: E402

MODES = ("absent", "unconfigured", "configured")
GOAL_RATIO = 1.03

WORKER = r"""
import json, os, sys, time
mode, base, stream = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
providers = {}
if mode == "absent":
    sys.modules["opentelemetry"] = None  # importing it now raises ImportError
elif mode == "unconfigured":
    import opentelemetry.trace, opentelemetry.metrics  # imported, no provider set
else:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        exported = 0

        def export(self, spans):
            Drop.exported += len(spans)
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Drop()))
    providers = {"tracer_provider": tracer_provider,
                 "meter_provider": MeterProvider(metric_readers=[InMemoryMetricReader()])}
from dewey.llm import LiteLLMClient
client = LiteLLMClient(model="openai/bench", api_base=base, api_key="sk-bench-0123456789",
                       max_retries=0, **providers)

def call():
    if stream:
        client.generate_completion("Hello!", stream=True).text()
    else:
        client.generate_completion("Hello!")

for _ in range(20):  # warm up: LiteLLM's import, connections, caches
    call()
if mode == "configured":  # the mode is what it says: every call and attempt was exported
    tracer_provider.force_flush()
    assert Drop.exported == 40, Drop.exported
print("READY", flush=True)
for line in sys.stdin:
    timings = []
    cpu = time.process_time()  # every thread of this process: the span exporter's too
    for _ in range(int(line)):
        start = time.perf_counter()
        call()
        timings.append(time.perf_counter() - start)
    print(json.dumps({"wall": timings, "cpu": time.process_time() - cpu}), flush=True)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per mode per round")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--stream", action="store_true", help="streamed calls read to the end")
    args = parser.parse_args()
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "PYTHONPATH": os.pathsep.join([str(BENCH.parent / "src"), os.environ.get("PYTHONPATH", "")])}
    timings: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpu: dict[str, float] = dict.fromkeys(MODES, 0.0)
    with fast_server() as base:
        workers = {mode: subprocess.Popen([PY, "-c", WORKER, mode, base, "1" if args.stream else "0"],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
                   for mode in MODES}
        try:
            for mode, worker in workers.items():
                assert worker.stdout is not None
                line = worker.stdout.readline().strip()
                if line != "READY":
                    raise RuntimeError(f"the {mode} worker did not start: {line!r}")
            for round_number in range(args.rounds):
                # A different order each round: no mode always runs first after a pause.
                order = MODES[round_number % 3:] + MODES[:round_number % 3]
                for mode in order:
                    worker = workers[mode]
                    assert worker.stdin is not None and worker.stdout is not None
                    worker.stdin.write(f"{args.calls}\n")
                    worker.stdin.flush()
                    measured = json.loads(worker.stdout.readline())
                    timings[mode].extend(measured["wall"])
                    cpu[mode] += measured["cpu"]
        finally:
            for worker in workers.values():
                if worker.stdin is not None:
                    worker.stdin.close()
                worker.wait(timeout=30)
    report(timings, cpu, args)
    print(f"\nthe telemetry work of one call, configured (median of {args.rounds} x 2000): "
          f"{hooks_cost(args.rounds) * 1e6:.1f} µs")


def hooks_cost(rounds: int, calls: int = 2000) -> float:
    """Seconds of telemetry work per call: what ``configured`` adds to a call."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from typing_extensions import override

    from dewey.llm._catalog import Catalog
    from dewey.llm._request import Request
    from dewey.llm._resilience import Route, Step
    from dewey.llm._telemetry import open_telemetry

    class Drop(SpanExporter):
        @override
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Drop()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    telemetry = open_telemetry(tracer_provider, meter_provider, Catalog())
    assert telemetry is not None
    step = Step(Route("openai/bench", api_base="http://127.0.0.1:8000/v1"), 1, 60.0)
    response = {"id": "chatcmpl-bench", "model": "bench", "choices": [{"finish_reason": "stop"}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 14}}
    medians = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            request = Request("completion", "openai/bench", {"messages": [], "temperature": 0.2}, None,
                              routes=[step.route])
            trace = telemetry.start(request)
            trace.attempt_started(step)
            trace.succeeded(response, 0.0001)
            trace.returned()
        medians.append((time.perf_counter() - start) / calls)
    tracer_provider.shutdown()
    meter_provider.shutdown()
    return statistics.median(medians)


def report(timings: dict[str, list[float]], cpu: dict[str, float], args: argparse.Namespace) -> None:
    kind = "streamed, read to the end" if args.stream else "non-streamed"
    print(f"\n{args.rounds} rounds x {args.calls} {kind} calls per mode, interleaved\n")
    print("| mode | median ms | p90 ms | median / absent | CPU ms per call | CPU / absent |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    baseline = statistics.median(timings["absent"])
    cpu_baseline = cpu["absent"] / len(timings["absent"])
    for mode in MODES:
        ordered = sorted(timings[mode])
        median = statistics.median(ordered)
        p90 = ordered[int(len(ordered) * 0.9)]
        per_call = cpu[mode] / len(ordered)
        print(f"| {mode} | {median * 1e3:.3f} | {p90 * 1e3:.3f} | {median / baseline:.3f} "
              f"| {per_call * 1e3:.3f} | {per_call / cpu_baseline:.3f} |")
    ratio = statistics.median(timings["unconfigured"]) / baseline
    verdict = "met" if ratio < GOAL_RATIO else "MISSED"
    print(f"\ngoal: unconfigured / absent under {GOAL_RATIO}: {ratio:.3f} ({verdict})")


if __name__ == "__main__":
    main()
