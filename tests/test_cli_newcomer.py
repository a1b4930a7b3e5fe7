"""First contact: what a newcomer meets on the command line, run for real against the fake
provider (see ``tests/test_cli.py`` for the isolated environment each command gets).

Mistakes get one clear line that names the fix; money is never shown as ``$0.00`` when
something was spent; Ctrl-C ends a call at once and the ledger still records it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dewey.llm import LiteLLMClient, LLMConfigError
from dewey.llm._cli._output import note_local_model
from dewey.llm._config import LiteLLMConfig
from dewey.llm._providers import PROVIDERS
from dewey.llm._usage import parse_since
from dewey.llm._usage import usd as _usd
from tests.servers.fake_provider import FakeProvider, Reply
from tests.test_cli import (
    KEY,
    TIMEOUT,
    WIRE_MODEL,
    cli_env,
    dewey,
    finish,
    ok,
    one_error_line,
    start,
)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# --- 1. a wrong model name -----------------------------------------------------------------------

def test_a_misspelt_model_gets_a_suggestion_and_the_openai_prefix(provider: FakeProvider,
                                                                  tmp_path: Path) -> None:
    result = dewey(["chat", "-m", "gpt4o-mini", "hello"], cli_env(tmp_path, provider), tmp_path)
    line = one_error_line(result)
    assert "unknown model 'gpt4o-mini'; did you mean 'gpt-4o-mini'?" in line
    assert "'openai/gpt4o-mini'" in line and "api_base" in line
    assert "LLM Provider NOT provided" not in line
    assert provider.requests == []  # refused before sending

    # Python users get the same error, before sending, without a retry.
    client = LiteLLMClient(model="gpt4o-mini", api_key=KEY, max_retries=3, track_usage=False)
    with pytest.raises(LLMConfigError, match="did you mean 'gpt-4o-mini'") as raised:
        client.generate_completion("hello")
    assert len(raised.value.attempts) <= 1
    assert provider.requests == []


# --- 2. where a rejected key came from, where a refused connection went ----------------------

def test_a_401_names_the_key_setting_and_a_refusal_names_the_url(provider: FakeProvider,
                                                                 tmp_path: Path) -> None:
    provider.script(WIRE_MODEL, Reply.error(401), Reply.error(401))
    configured = cli_env(tmp_path, provider)
    from_provider_variable = cli_env(tmp_path, provider, OPENAI_API_KEY="sk-openai-777777")
    del from_provider_variable["LITELLM_API_KEY"]
    unreachable = f"http://127.0.0.1:{closed_port()}/v1"
    refused = cli_env(tmp_path, LITELLM_API_BASE=unreachable, LITELLM_MAX_RETRIES="0")
    first, second, third = (finish(process) for process in [
        start(["chat", "hello"], configured, tmp_path),
        start(["chat", "hello"], from_provider_variable, tmp_path),
        start(["chat", "--no-stream", "hello"], refused, tmp_path),
    ])
    assert "the API key came from api_key (env LITELLM_API_KEY)" in one_error_line(first)
    assert "the API key came from the environment (OPENAI_API_KEY)" in one_error_line(second)
    assert f"could not reach {unreachable}" in one_error_line(third)
    for result in (first, second):
        assert KEY not in result.stderr and "sk-openai-777777" not in result.stderr


# --- 3. money ---------------------------------------------------------------------------------

def test_usd_keeps_significant_digits() -> None:
    assert [_usd(v) for v in (0, 0.000029, 0.0042, 0.075, 0.5, 0.1 + 0.2, 2.5, 1234.5)] == [
        "$0.00", "$0.000029", "$0.0042", "$0.075", "$0.50", "$0.30", "$2.50", "$1,234.50"]


def test_a_tiny_spend_shows_in_the_budget_error_and_the_usage_report(provider: FakeProvider,
                                                                     tmp_path: Path) -> None:
    (tmp_path / "dewey.yaml").write_text("llm:\n  budget:\n    total_usd: 0.000001\n")
    env = cli_env(tmp_path, provider)
    ok(dewey(["chat", "hello"], env, tmp_path))  # nothing spent yet: allowed
    refused = one_error_line(dewey(["chat", "hello again"], env, tmp_path))
    report = json.loads(ok(dewey(["usage", "--json"], env, tmp_path)).stdout)
    spent = report["total_usd"]
    assert 0 < spent < 0.005  # a real spend that rounds to $0.00 at cents
    assert f"{_usd(spent)} in total (calls in flight included) >= budget.total_usd $0.000001" in refused
    assert "$0.00 " not in refused
    table = ok(dewey(["usage"], cli_env(tmp_path, provider, COLUMNS="80"), tmp_path)).stdout
    assert f"{_usd(spent)} in total" in table
    chart = table[table.index("Cost per day"):].splitlines()[1]
    assert chart.endswith(_usd(spent)) and "█" in chart  # the bar scales to the data
    assert len(provider.requests_for(WIRE_MODEL)) == 1


# --- 4. models ----------------------------------------------------------------------------------

def test_models_lists_what_the_keys_allow_at_80_columns(tmp_path: Path) -> None:
    env = cli_env(tmp_path, COLUMNS="80", ANTHROPIC_API_KEY="sk-ant-test")
    del env["LITELLM_API_KEY"]
    del env["LITELLM_MODEL"]
    listing, search, every = (finish(process) for process in [
        start(["models"], env, tmp_path),
        start(["models", "haiku", "--json"], env, tmp_path),
        start(["models", "--all", "--json"], env, tmp_path),
    ])
    table = ok(listing).stdout
    assert all(len(line) <= 80 for line in table.splitlines()), table
    for expected in ("Configured models", "claude-haiku-4-5", "keys set: anthropic", "local/smollm2", "--all"):
        assert expected in table, expected
    assert "gpt-4o-mini" not in table  # no OpenAI key: not callable
    found = json.loads(ok(search).stdout)["models"]
    assert found and all("haiku" in row["model"] for row in found)
    assert {row["provider"] for row in found} == {"anthropic"}
    document = json.loads(ok(every).stdout)
    assert document["configured"][0]["source"] == "default (ANTHROPIC_API_KEY is set)"
    everything = {row["model"]: row for row in document["models"]}
    assert everything["gpt-4o-mini"]["input_usd_per_1m"] == 0.15
    assert "text-embedding-3-small" in everything  # --all: every priced model


# --- 5. the keyless note ------------------------------------------------------------------------

def test_the_keyless_note_is_for_terminals_only(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    for provider in PROVIDERS:
        for variable in provider.key_variables:
            monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("COLUMNS", "80")
    config = LiteLLMConfig()
    pipe = tmp_path / "stderr.txt"
    with pipe.open("w") as stream:
        note_local_model(config, None, stream)  # not a terminal: silent
    assert pipe.read_text() == ""
    controller, terminal = os.openpty()
    with os.fdopen(terminal, "w") as stream:
        note_local_model(config, None, stream)
        note_local_model(config, "gpt-4o", stream)  # a model was asked for: no note
        note_local_model(LiteLLMConfig(model="gpt-4o"), None, stream)
    written = b""
    while chunk := _read_available(controller):
        written += chunk
    os.close(controller)
    lines = [line for line in written.decode().splitlines() if line.strip()]
    assert len(lines) == 1 and "local/smollm2" in lines[0] and "OPENAI_API_KEY" in lines[0]
    assert len(lines[0]) > 80  # one line: the terminal wraps it, not rich


def _read_available(fd: int) -> bytes:
    import select

    ready, _, _ = select.select([fd], [], [], 0)
    if not ready:
        return b""
    try:
        return os.read(fd, 65536)
    except OSError:  # the terminal side is closed: nothing more
        return b""


# --- 6. Ctrl-C ------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", [[], ["--no-stream"]])
def test_ctrl_c_before_the_first_token(provider: FakeProvider, tmp_path: Path,
                                       mode: list[str]) -> None:
    provider.script(WIRE_MODEL, Reply.slow(60))
    env = cli_env(tmp_path, provider)
    # SIGINT as a terminal delivers it: a suite started in the background by a shell
    # without job control inherits SIGINT ignored, and so would the command.
    process = subprocess.Popen(
        [sys.executable, "-m", "dewey.llm", "chat", *mode, "hello"], env=env, cwd=tmp_path,
        text=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + TIMEOUT  # a bound on waiting, not an assertion
        while not provider.requests_for(WIRE_MODEL) and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert err.splitlines() == ["error: interrupted"], err
    assert out == ""
    with sqlite3.connect(tmp_path / "data" / "dewey-llm" / "usage.db") as ledger:
        rows = ledger.execute("SELECT model, outcome FROM usage").fetchall()
    assert rows == [(f"openai/{WIRE_MODEL}", "abandoned")]


# --- 7. bad input -------------------------------------------------------------------------------

def test_bad_bytes_and_a_huge_since_are_one_line_errors(provider: FakeProvider,
                                                        tmp_path: Path) -> None:
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    env = cli_env(tmp_path, provider)
    results = []
    for args, data in ((["chat", "hello"], b"caf\xe9"), (["embed", "--file", "-"], b"\xff\n"),
                       (["embed", "--file", "latin1.txt"], None),
                       (["usage", "--since", "99999999d"], None),
                       (["chat", "--interactive"], b"caf\xe9\nquit\n"),
                       (["chat", os.fsdecode(b"caf\xe9")], None)):
        results.append(subprocess.run(
            [sys.executable, "-m", "dewey.llm", *args], env=env, cwd=tmp_path, input=data,
            capture_output=True, timeout=TIMEOUT))
    chat, embed_stdin, embed_file, since, conversation, argument = (
        subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(), r.stderr.decode())
        for r in results)
    assert "stdin is not UTF-8 text (byte 0xe9 at offset 3)" in one_error_line(chat)
    assert "stdin is not UTF-8 text (byte 0xff" in one_error_line(embed_stdin)
    assert "latin1.txt is not UTF-8 text" in one_error_line(embed_file)
    assert "iconv" in one_error_line(embed_file)
    assert "--since '99999999d'" in one_error_line(since)
    assert "shorter duration" in one_error_line(since)
    assert conversation.returncode == 1 and "Traceback" not in conversation.stderr
    assert conversation.stderr.splitlines()[-1].startswith(  # after the greeting
        "error: stdin is not UTF-8 text (byte 0xe9)")
    assert "the prompt is not UTF-8 text (byte 0xe9)" in one_error_line(argument)
    assert provider.requests == []  # nothing was sent
    with pytest.raises(LLMConfigError, match="before year 1"):
        parse_since("9" * 400 + "d")
