"""A focused A/B of one non-streaming completion: bare LiteLLM against dewey-llm.

    .venv/bin/python bench/ab_completion.py [--blocks 80]

Everything runs in one process against ``bench/fast_server.py``, in shuffled blocks of
five calls, with an A/A pair (LiteLLM against itself) to show the noise floor. Prints the
median wall and CPU time per call and the ratio to bare LiteLLM.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp()  # the ledger of this run only
sys.path.insert(0, str(Path(__file__).parent))

import litellm
from run import fast_server

from dewey.llm import LiteLLMClient

MODEL, KEY = "openai/bench", "sk-bench-000000"
MESSAGES = [{"role": "user", "content": "hi"}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=80, help="shuffled rounds (5 calls each)")
    blocks = parser.parse_args().blocks
    with fast_server() as base:
        ledger_off = LiteLLMClient(model=MODEL, api_base=base, api_key=KEY, track_usage=False,
                                   transport="litellm")
        ledger_on = LiteLLMClient(model=MODEL, api_base=base, api_key=KEY, transport="litellm")

        def bare() -> object:
            return litellm.completion(model=MODEL, messages=MESSAGES, api_base=base, api_key=KEY, max_retries=0)

        variants: dict[str, Callable[[], object]] = {
            "litellm.completion": bare,
            "litellm.completion (A/A)": bare,
            "dewey-llm, ledger off": lambda: ledger_off.generate_completion(MESSAGES),
            "dewey-llm, ledger on": lambda: ledger_on.generate_completion(MESSAGES),
        }
        wall: dict[str, list[float]] = {name: [] for name in variants}
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        for call in variants.values():
            for _ in range(30):
                call()
        for _ in range(blocks):
            order = list(variants)
            random.shuffle(order)
            for name in order:
                cpu_start, wall_start = time.process_time(), time.perf_counter()
                for _ in range(5):
                    variants[name]()
                wall[name].append((time.perf_counter() - wall_start) / 5)
                cpu[name].append((time.process_time() - cpu_start) / 5)
        base_wall = statistics.median(wall["litellm.completion"])
        base_cpu = statistics.median(cpu["litellm.completion"])
        print(f"{'contender':28} {'median ms':>10} {'ratio':>7} {'CPU ratio':>10}")
        for name in variants:
            median = statistics.median(wall[name])
            cpu_ratio = statistics.median(cpu[name]) / base_cpu
            print(f"{name:28} {median * 1000:10.3f} {median / base_wall:7.3f} {cpu_ratio:10.3f}")
        ledger_on.close()


if __name__ == "__main__":
    main()
