"""Shared state that must not lie or block: a cache file that cannot be used, and budgets
shared by threads and processes, or kept by one process when the ledger is down.

Real SQLite files, the real PostgreSQL (skipped when absent), the real client and CLI, HTTP
to the fake provider.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dewey.llm import LiteLLMClient, LLMBudgetExceededError, LLMServerError
from dewey.llm._usage import open_ledger
from dewey.llm._usage._records import UsageRecord
from tests.conftest import TEST_KEY
from tests.servers.fake_provider import FakeProvider, Reply
from tests.servers.postgres import DOWN_PG_URL, PG_URL, needs_postgres

SRC = str(Path(__file__).resolve().parent.parent / "src")
PROMPT = "how much is left"
MAX_TOKENS = 50


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "dewey.llm" and r.levelno == logging.WARNING]


def cli(args: list[str], cache_file: Path) -> subprocess.CompletedProcess[str]:
    """``dewey-llm ARGS`` in a process of its own, with the cache at ``cache_file``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("LITELLM_")}
    env.update(LITELLM_CACHE_URL=str(cache_file), LITELLM_MODEL="openai/gpt-4o-mini",
               PYTHONPATH=os.pathsep.join([SRC, env.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "dewey.llm", *args], env=env, text=True,
                          capture_output=True, timeout=120, stdin=subprocess.DEVNULL)


# --- a cache file that cannot be used ---------------------------------------------------------

def garbage(path: Path) -> None:
    path.write_bytes(b"not a database, just bytes " * 200)


def truncated(path: Path) -> None:
    """A real cache file of many pages, cut in half (a full disk, a copy interrupted)."""
    from dewey.llm._cache import SQLiteCache

    with SQLiteCache(path) as cache:
        for n in range(300):
            cache.set(f"key-{n}", {"text": "x" * 2000})
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size // 2)


def assert_cache_works_again(make_client: Callable[..., LiteLLMClient], provider: FakeProvider,
                             cache_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.clear()
    client = make_client(cache=True, cache_url=str(cache_file))
    sent = len(provider.requests)
    client.generate_completion("after the repair")
    assert client.generate_completion("after the repair").cache_hit is True
    assert len(provider.requests) == sent + 1
    assert warnings_of(caplog) == []


@pytest.mark.parametrize("damage", [garbage, truncated])
def test_a_damaged_cache_file_warns_once_calls_go_uncached_and_cache_clear_repairs_it(
        make_client: Callable[..., LiteLLMClient], provider: FakeProvider, tmp_path: Path,
        caplog: pytest.LogCaptureFixture, damage: Callable[[Path], None]) -> None:
    caplog.set_level(logging.WARNING, logger="dewey.llm")
    cache_file = tmp_path / "cache.db"
    damage(cache_file)

    client = make_client(cache=True, cache_url=str(cache_file))
    for _ in range(2):  # the same question twice: both answered by the provider
        assert client.generate_completion("hello").choices[0].message.content == "echo: hello"
    client.generate_completion("hello", stream=True).text()
    assert len(provider.requests) == 3
    [warning] = warnings_of(caplog)
    assert str(cache_file) in warning and "dewey-llm cache clear" in warning

    stats = cli(["cache", "stats"], cache_file)  # says what is wrong and how to fix it
    assert stats.returncode != 0 and "dewey-llm cache clear" in stats.stderr
    assert "Traceback" not in stats.stderr
    cleared = cli(["cache", "clear", "--yes"], cache_file)
    assert cleared.returncode == 0, cleared.stderr
    assert cleared.stdout.startswith(f"recreated the sqlite cache at {cache_file}")
    assert_cache_works_again(make_client, provider, cache_file, caplog)


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory nobody can write to, root included: the immutable attribute (chmod does
    not stop root, whom the tests run as)."""
    directory = tmp_path / "read-only"
    directory.mkdir()
    if subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here: no read-only case for root")
    try:
        yield directory
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)


def test_a_cache_in_a_read_only_place_warns_once_and_calls_go_uncached(
        make_client: Callable[..., LiteLLMClient], provider: FakeProvider,
        read_only_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="dewey.llm")
    cache_file = read_only_dir / "cache.db"
    client = make_client(cache=True, cache_url=str(cache_file))
    for _ in range(2):
        client.generate_completion("hello")
    assert len(provider.requests) == 2
    [warning] = warnings_of(caplog)
    assert str(cache_file) in warning and "writable" in warning

    refused = cli(["cache", "clear", "--yes"], cache_file)  # cannot be fixed from here
    assert refused.returncode != 0 and str(cache_file) in refused.stderr
    assert "writable" in refused.stderr and "Traceback" not in refused.stderr

    subprocess.run(["chattr", "-i", str(read_only_dir)], check=True)
    cleared = cli(["cache", "clear", "--yes"], cache_file)
    assert cleared.returncode == 0, cleared.stderr
    assert_cache_works_again(make_client, provider, cache_file, caplog)


# --- budgets shared by threads and processes --------------------------------------------------

def call_cost(make_client: Callable[..., LiteLLMClient]) -> tuple[float, float]:
    """What one scripted call costs, and a bound on what a call is estimated to cost (its
    prompt at one token a character, the most the estimate could count, and MAX_TOKENS)."""
    details = make_client(track_usage=False).get_model_details("openai/gpt-4o-mini")
    inp, out = details["input_cost_per_token"], details["output_cost_per_token"]
    bound = 200 * inp + MAX_TOKENS * out  # the request's JSON is well under 200 characters
    return 10 * inp + MAX_TOKENS * out, bound


def stopped_early_by_at_most(in_flight: int, cost: float, bound: float) -> float:
    """How much below the budget a refusal may come: it counts the calls in flight at
    their estimates, each up to ``bound - cost`` above what the call then costs.  The
    issue's goal is the other side (overshoot), which the upper bounds below hold to."""
    return in_flight * (bound - cost)


def slow_replies(provider: FakeProvider, count: int) -> None:
    # Slow enough that every thread has a call in flight when the budget runs out.
    provider.script("gpt-4o-mini", *[Reply.ok("x", prompt_tokens=10, completion_tokens=MAX_TOKENS,
                                              delay=0.05)] * count)


def spend_until_refused(client: LiteLLMClient, threads: int, most: int = 40) -> int:
    """Run ``threads`` threads calling until the budget refuses (at most ``most`` calls
    each); the number of threads the budget stopped."""
    refused = []

    def spend() -> None:
        for _ in range(most):
            try:
                client.generate_completion(PROMPT, max_tokens=MAX_TOKENS)
            except LLMBudgetExceededError:
                refused.append(1)
                return

    workers = [threading.Thread(target=spend) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return len(refused)


def ledger_url(where: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A ledger in SQLite under the test's folder, or in this test's PostgreSQL table."""
    if where == "postgres":
        return f"{PG_URL}?table={request.getfixturevalue('pg_table')}"
    return str(tmp_path / "usage.db")


def stored_spend(usage_db: str) -> float:
    with open_ledger(usage_db) as ledger:
        return ledger.spent()


@pytest.mark.parametrize("where", ["sqlite", pytest.param("postgres", marks=needs_postgres)])
def test_threads_overshoot_a_budget_by_no_more_than_one_call_in_flight(
        make_client: Callable[..., LiteLLMClient], provider: FakeProvider, tmp_path: Path,
        where: str, request: pytest.FixtureRequest) -> None:
    usage_db = ledger_url(where, tmp_path, request)
    cost, bound = call_cost(make_client)
    budget = 10.5 * cost
    slow_replies(provider, 80)
    client = make_client(usage_db=usage_db, budget={"total_usd": budget}, cache=False)

    assert spend_until_refused(client, threads=8) == 8
    client.close()

    spent = stored_spend(usage_db)
    assert spent == pytest.approx(client.total_cost)
    # 8 calls in flight, yet at most one over
    assert budget - stopped_early_by_at_most(8, cost, bound) <= spent <= budget + bound


WORKER = textwrap.dedent("""
    import sys, threading
    from dewey.llm import LiteLLMClient, LiteLLMConfig, LLMBudgetExceededError

    base, key, usage_db, budget = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    client = LiteLLMClient(config=LiteLLMConfig(
        model="openai/gpt-4o-mini", api_base=base, api_key=key, cache=False, usage_db=usage_db,
        budget={"total_usd": budget}))
    import dewey.llm._native  # both processes start spending together, not after an import
    print("ready", flush=True)
    sys.stdin.readline()

    def spend():
        for _ in range(40):
            try:
                client.generate_completion("how much is left", max_tokens=%d)
            except LLMBudgetExceededError:
                return

    workers = [threading.Thread(target=spend) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    client.close()
    print(repr(client.total_cost), flush=True)
""") % MAX_TOKENS


@pytest.mark.parametrize("where", ["sqlite", pytest.param("postgres", marks=needs_postgres)])
def test_processes_overshoot_a_shared_budget_by_no_more_than_one_call_in_flight(
        make_client: Callable[..., LiteLLMClient], provider: FakeProvider, tmp_path: Path,
        where: str, request: pytest.FixtureRequest) -> None:
    usage_db = ledger_url(where, tmp_path, request)
    cost, bound = call_cost(make_client)
    budget = 10.5 * cost
    slow_replies(provider, 100)
    # The ledger's tables exist before the processes start: they race for the budget, not
    # to create the tables (on a loaded machine, the process that waited for the other to
    # create them could find the whole budget spent when it got to call).
    with open_ledger(usage_db) as ledger:
        ledger.record(UsageRecord("openai/gpt-4o-mini", "openai", "completion", "ok"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, provider.openai_base, TEST_KEY,
                                 usage_db, repr(budget)], env=env, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE) for _ in range(2)]
    outputs = []
    try:
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outputs = [worker.communicate(timeout=120) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    for worker, (_, errors) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, errors
    own = [float(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert all(spent > 0 for spent in own)  # both processes spent from the one budget

    spent = stored_spend(usage_db)
    assert spent == pytest.approx(sum(own))
    # On failure, what each process spent and said (a warning that it could not read the
    # ledger would explain an overshoot: it then counts its own spend only).
    said = [(spent_by, errors[-1500:]) for spent_by, (_, errors) in zip(own, outputs, strict=True)]
    assert budget - stopped_early_by_at_most(8, cost, bound) <= spent <= budget + bound, said


def test_with_the_ledger_unreachable_a_process_stops_at_its_budget_from_its_own_spend(
        make_client: Callable[..., LiteLLMClient], provider: FakeProvider,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="dewey.llm")
    cost, bound = call_cost(make_client)
    budget = 6.5 * cost
    slow_replies(provider, 80)
    client = make_client(usage_db=DOWN_PG_URL, budget={"total_usd": budget}, cache=False)

    assert spend_until_refused(client, threads=4) == 4
    assert budget - stopped_early_by_at_most(4, cost, bound) <= client.total_cost <= budget + bound
    assert sum("budget" in message for message in warnings_of(caplog)) == 1


def test_a_refused_call_holds_nothing_and_a_failed_call_releases_its_reservation(
        make_client: Callable[..., LiteLLMClient], provider: FakeProvider, tmp_path: Path) -> None:
    usage_db = str(tmp_path / "usage.db")
    cost, _ = call_cost(make_client)
    client = make_client(usage_db=usage_db, budget={"total_usd": 1.5 * cost}, cache=False,
                         max_retries=0)
    provider.script("gpt-4o-mini", Reply.error(500))
    with pytest.raises(LLMServerError):
        client.generate_completion(PROMPT, max_tokens=MAX_TOKENS)
    slow_replies(provider, 2)
    client.generate_completion(PROMPT, max_tokens=MAX_TOKENS)  # the failure holds nothing back
    client.generate_completion(PROMPT, max_tokens=MAX_TOKENS)
    with pytest.raises(LLMBudgetExceededError):
        client.generate_completion(PROMPT, max_tokens=MAX_TOKENS)
    client.close()
    with open_ledger(usage_db) as ledger:  # every reservation was settled or released
        assert ledger.spent_and_reserved() == pytest.approx(ledger.spent()) == pytest.approx(2 * cost)

