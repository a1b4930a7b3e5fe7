"""How far concurrent callers overshoot a shared budget: 4 processes x 8 threads.

    python bench/bench_budget.py [--processes 4] [--threads 8] [--budget 0.0005]

Starts the fake provider (``tests/servers/fake_provider.py``) in a process of its own, then
for each ledger (a SQLite file, the PostgreSQL at ``$DEWEY_TEST_POSTGRES_URL`` or
127.0.0.1:5432/test) starts ``--processes`` workers that each run ``--threads`` threads
calling ``openai/gpt-4o-mini`` (priced by LiteLLM's map) until the budget refuses them.
It prints what was spent against the budget, and the overshoot in percent (a worker never
refused stops at 5 times the budget).  A last run
points one worker at a PostgreSQL port where nothing listens: it can only count its own
spend.  Run from the repository root (the workers import ``tests.servers``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("DEWEY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
DOWN_PG_URL = "postgresql://postgres@127.0.0.1:1/test"
MODEL = "openai/gpt-4o-mini"

WORKER = textwrap.dedent("""
    import sys, threading
    from dewey.llm import LiteLLMClient, LiteLLMConfig, LLMBudgetExceededError

    base, usage_db, budget, threads = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    client = LiteLLMClient(config=LiteLLMConfig(
        model="{model}", api_base=base, api_key="sk-bench", cache=False, max_retries=0,
        usage_db=usage_db, budget={{"total_usd": budget}}))
    from dewey.llm._litellm import litellm
    litellm()  # LiteLLM's import is not part of the race
    print("ready", flush=True)
    sys.stdin.readline()  # every worker starts at once

    def spend() -> None:
        while client.total_cost < 5 * budget:  # a budget that never stops them: stop at 5x
            try:
                client.generate_completion("say something about budgets", max_tokens=64)
            except LLMBudgetExceededError:
                return

    workers = [threading.Thread(target=spend) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    client.close()
    print(repr(client.total_cost), flush=True)
""").format(model=MODEL)


def start_provider() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, "-m", "tests.servers.fake_provider", "--port", "0"],
                               cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline().split()
    if not line or line[0] != "READY":
        process.kill()
        raise SystemExit("the fake provider did not start")
    return process, line[1] + "/v1"


def race(base: str, usage_db: str, budget: float, processes: int, threads: int) -> list[float]:
    """Each worker's own spend, once all were refused by the budget."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, base, usage_db, str(budget),
                                 str(threads)], env=env, cwd=ROOT, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
               for _ in range(processes)]
    for worker in workers:
        assert worker.stdout is not None
        if worker.stdout.readline().strip() != "ready":
            raise SystemExit("a worker did not start")
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    spends = []
    for worker in workers:
        out, _ = worker.communicate(timeout=600)
        if worker.returncode != 0:
            raise SystemExit(f"a worker failed (exit status {worker.returncode})")
        spends.append(float(out.strip().splitlines()[-1]))
    return spends


def report(name: str, budget: float, spends: list[float]) -> None:
    spent = sum(spends)
    print(f"| {name} | {len(spends)} | ${budget:.4f} | ${spent:.6f} | "
          f"{100 * (spent - budget) / budget:+.1f}% |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--budget", type=float, default=0.0005, help="USD (default 0.0005)")
    args = parser.parse_args()

    provider, base = start_provider()
    table = f"dewey_bench_budget_{uuid.uuid4().hex[:8]}"
    try:
        print(f"{args.processes} processes x {args.threads} threads, {MODEL}, total budget\n")
        print("| ledger | processes | budget | spent | overshoot |")
        print("| --- | --- | --- | --- | --- |")
        with tempfile.TemporaryDirectory() as directory:
            usage_db = str(Path(directory) / "usage.db")
            report("SQLite", args.budget, race(base, usage_db, args.budget, args.processes,
                                               args.threads))
        report("PostgreSQL", args.budget, race(base, f"{PG_URL}?table={table}", args.budget,
                                               args.processes, args.threads))
        report("unreachable (own spend only)", args.budget,
               race(base, DOWN_PG_URL, args.budget, 1, args.threads))
    finally:
        provider.terminate()
        provider.wait(timeout=10)
        try:
            import psycopg

            with psycopg.connect(PG_URL, autocommit=True) as connection:
                connection.execute(f"DROP TABLE IF EXISTS {table}, {table}_reservations")
        except Exception as exc:  # the bench's result stands; say what was left behind
            print(f"could not drop the table {table}: {exc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
