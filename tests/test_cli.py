"""The ``dewey-llm`` command, run for real (``python -m dewey.llm``) against the fake provider.

Each command runs in a subprocess with an isolated home, XDG directories and working
directory, no provider keys, and ``LITELLM_*`` pointing at the fake provider.  Starting a
command that calls a model costs seconds (LiteLLM's import), so each such run checks
several things, and independent runs are started concurrently.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from dewey.llm._cli._app import build_parser
from tests.servers.fake_provider import EMBEDDING_DIMENSIONS, FakeProvider, Reply

KEY = "sk-test-cli-123456"
MODEL = "openai/gpt-4o-mini"
WIRE_MODEL = "gpt-4o-mini"  # what the provider receives
TIMEOUT = 120


# --- running the command ------------------------------------------------------------------------

def cli_env(tmp_path: Path, provider: FakeProvider | None = None, **extra: str) -> dict[str, str]:
    """An isolated environment: own home and XDG dirs, no provider keys, the fake provider."""
    env = {
        name: value for name, value in os.environ.items()
        if not name.startswith(("LITELLM_", "DEWEY_")) and "API_KEY" not in name
        and name not in ("FORCE_COLOR", "COLUMNS", "LINES")
    }
    env.update(
        HOME=str(tmp_path / "home"),
        XDG_DATA_HOME=str(tmp_path / "data"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        LITELLM_MODEL=MODEL,
        LITELLM_API_KEY=KEY,
        COLUMNS="200",  # wide tables: no value is folded across lines
    )
    if provider is not None:
        env["LITELLM_API_BASE"] = provider.openai_base
    env.update(extra)
    return env


def start(args: list[str], env: dict[str, str], cwd: Path, stdin: str | bytes | None = None) -> Any:
    """Start the command; ``stdin`` (text, or bytes such as an image) is piped to it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "dewey.llm", *args], env=env, cwd=cwd,
        text=not isinstance(stdin, bytes),
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return process, stdin


def finish(started: Any) -> subprocess.CompletedProcess[str]:
    process, stdin = started
    out, err = process.communicate(stdin, timeout=TIMEOUT)
    if isinstance(stdin, bytes):  # a run fed bytes answers bytes; the tests read text
        out, err = out.decode(), err.decode()
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def dewey(args: list[str], env: dict[str, str], cwd: Path,
          stdin: str | bytes | None = None) -> subprocess.CompletedProcess[str]:
    return finish(start(args, env, cwd, stdin))


def dewey_all(*commands: list[str], env: dict[str, str],
              cwd: Path) -> list[subprocess.CompletedProcess[str]]:
    """Run several commands at once (each pays LiteLLM's import), in order of the results."""
    started = [start(args, env, cwd) for args in commands]
    return [finish(process) for process in started]


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result


def one_error_line(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert result.returncode == code, f"exit {result.returncode}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


# --- chat ---------------------------------------------------------------------------------------

def test_chat_streams_then_cache_usage_and_stdin(provider: FakeProvider, tmp_path: Path) -> None:
    env = cli_env(tmp_path, provider, LITELLM_CACHE="true")
    first = ok(dewey(["chat", "-s", "Answer briefly.", "hello there"], env, tmp_path))
    assert first.stdout == "echo: hello there\n"
    [request] = provider.requests_for(WIRE_MODEL)
    assert request.stream
    assert request.body is not None
    assert request.body["messages"] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "hello there"},
    ]
    assert first.stderr == ""  # a configured model: no note about the local model

    # The same question piped on stdin is the same request: answered from the cache.
    again = ok(dewey(["chat", "--system", "Answer briefly."], env, tmp_path, stdin="hello there"))
    assert again.stdout == "echo: hello there\n"
    assert len(provider.requests_for(WIRE_MODEL)) == 1

    stats, usage, report, other_model = dewey_all(
        ["cache", "stats", "--json"], ["usage"], ["usage", "--since", "1d", "--json"],
        ["usage", "--model", "gpt-4", "--json"], env=env, cwd=tmp_path)
    cache = json.loads(ok(stats).stdout)
    assert (cache["backend"], cache["entries"]) == ("sqlite", 1)
    assert cache["location"].startswith(str(tmp_path / "cache"))
    assert MODEL in ok(usage).stdout
    [row] = json.loads(ok(report).stdout)["by_model"]
    assert (row["key"], row["calls"], row["cache_hits"]) == (MODEL, 2, 1)
    assert json.loads(ok(other_model).stdout)["by_model"] == []

    refused = dewey(["cache", "clear"], env, tmp_path)  # stdin is not a terminal: no prompt
    assert "--yes" in one_error_line(refused)
    cleared = ok(dewey(["cache", "clear", "--yes"], env, tmp_path))
    assert cleared.stdout.startswith("cleared 1 entry from the sqlite cache")
    table = ok(dewey(["cache", "stats"], env, tmp_path)).stdout
    assert "sqlite" in table and "entries" in table


def test_chat_json_with_stdin_and_a_provider_error(provider: FakeProvider,
                                                   tmp_path: Path) -> None:
    provider.script("gpt-4o", Reply.error(401))
    env = cli_env(tmp_path, provider, LITELLM_CACHE="true")
    as_json = start(["chat", "--json", "--no-cache", "-t", "0.5", "--max-tokens", "20",
                     "Summarize:"], env, tmp_path, stdin="a long text\n")
    refused = start(["chat", "-m", "openai/gpt-4o", "hello"], env, tmp_path)
    result, failure = finish(as_json), finish(refused)

    # --json: the whole response, not streamed; piped stdin comes first, then the prompt.
    response = json.loads(ok(result).stdout)
    prompt = "a long text\n\nSummarize:"
    assert response["choices"][0]["message"]["content"] == f"echo: {prompt}"
    assert response["usage"]["total_tokens"] > 0
    [request] = provider.requests_for(WIRE_MODEL)
    assert request.body is not None
    assert not request.stream
    assert request.body["messages"] == [{"role": "user", "content": prompt}]
    assert (request.body["temperature"], request.body["max_tokens"]) == (0.5, 20)
    stats = json.loads(ok(dewey(["cache", "stats", "--json"], env, tmp_path)).stdout)
    assert stats["entries"] == 0  # --no-cache: nothing stored

    # A provider error: one line, exit 1, no traceback, no key.
    line = one_error_line(failure)
    assert "Unauthorized" in line or "401" in line
    assert failure.stdout == ""
    assert KEY not in failure.stderr
    assert len(provider.requests_for("gpt-4o")) == 1  # 401 is not retried


def test_chat_conversation_keeps_history_until_reset(provider: FakeProvider,
                                                      tmp_path: Path) -> None:
    # --interactive (hidden) converses even though stdin is a pipe here; on a terminal
    # `dewey-llm chat` without a prompt does the same.
    provider.script(WIRE_MODEL, Reply.ok(), Reply.error(500, "boom"), Reply.ok(), Reply.ok())
    env = cli_env(tmp_path, provider, LITELLM_MAX_RETRIES="0")
    lines = "first\nsecond\nthird\n!reset\n\nfourth\nquit\nnever sent\n"
    result = ok(dewey(["chat", "--interactive", "-s", "Be kind."], env, tmp_path, stdin=lines))
    assert result.stdout == "> echo: first\n> > echo: third\n> > > echo: fourth\n> "
    assert "conversation forgotten" in result.stderr
    [failure] = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert "boom" in failure  # the failed question ends neither the conversation ...
    system = {"role": "system", "content": "Be kind."}
    first = [system, {"role": "user", "content": "first"},
             {"role": "assistant", "content": "echo: first"}]
    sent = [request.body["messages"] for request in provider.requests_for(WIRE_MODEL)
            if request.body is not None]
    assert sent == [
        first[:2],
        [*first, {"role": "user", "content": "second"}],
        [*first, {"role": "user", "content": "third"}],  # ... nor stays in the history
        [system, {"role": "user", "content": "fourth"}],
    ]


# --- embed --------------------------------------------------------------------------------------

def test_embed_texts_and_file_in_batches(provider: FakeProvider, tmp_path: Path) -> None:
    lines = [f"line {n}" for n in range(40)]
    (tmp_path / "texts.txt").write_text("\n".join(lines[:20]) + "\n\n" + "\n".join(lines[20:]))
    result = ok(dewey(["embed", "alpha", "beta gamma", "--file", "texts.txt"],
                      cli_env(tmp_path, provider), tmp_path))
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [record["text"] for record in records] == ["alpha", "beta gamma", *lines]
    assert all(len(record["embedding"]) == EMBEDDING_DIMENSIONS for record in records)
    batches = [request.body["input"] for request in provider.requests
               if request.path.endswith("/embeddings") and request.body is not None]
    assert [len(batch) for batch in batches] == [32, 10]


# --- models -------------------------------------------------------------------------------------

def test_models_list_and_show(provider: FakeProvider, tmp_path: Path) -> None:
    env = cli_env(tmp_path, provider, LITELLM_FALLBACKS="gpt-4o")
    listing, show = dewey_all(["models"], ["models", "show", "gpt-4o"], env=env, cwd=tmp_path)
    table = ok(listing).stdout
    for expected in ("primary", MODEL, "128,000", "$0.15", "$0.60", "env LITELLM_MODEL",
                     "fallback", "env LITELLM_FALLBACKS", "$2.50", "embedding",
                     "text-embedding-3-small", "openai"):
        assert expected in table, expected
    details = ok(show).stdout
    assert "max_input_tokens" in details and "128000" in details
    assert "$10.00" in details  # output price per million tokens
    assert provider.requests == []  # all offline


# --- config -------------------------------------------------------------------------------------

def test_config_show_masks_the_key_and_names_sources(tmp_path: Path) -> None:
    (tmp_path / "dewey.yaml").write_text("llm:\n  timeout: 30\n  cache_url: redis://u:hunter2@h/0\n")
    env = cli_env(tmp_path)
    table, as_json = (ok(dewey(args, env, tmp_path))
                      for args in (["config", "show"], ["config", "show", "--json"]))
    for output in (table.stdout + table.stderr, as_json.stdout + as_json.stderr):
        assert KEY not in output
        assert "hunter2" not in output
        assert "sk-...56" in output
    for expected in ("env LITELLM_API_KEY", "env LITELLM_MODEL", "file dewey.yaml", "default",
                     "max_retries", "Configuration file: dewey.yaml"):
        assert expected in table.stdout, expected
    document = json.loads(as_json.stdout)
    assert document["file"] == "dewey.yaml"
    assert document["settings"]["timeout"] == 30
    assert document["settings"]["api_key"] == "sk-...56"
    assert document["sources"]["api_key"] == "env LITELLM_API_KEY"
    assert document["sources"]["timeout"] == "file dewey.yaml"
    assert document["sources"]["api_version"] == "default"
    assert set(document["settings"]) == set(document["sources"])


def test_config_check(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    (tmp_path / "typo.yaml").write_text("llm:\n  timout: 5\n")
    no_key = cli_env(tmp_path, LITELLM_MODEL="gpt-4o")
    del no_key["LITELLM_API_KEY"]
    good, typo, missing_file, keyless = (
        finish(process) for process in [
            start(["config", "check"], env, tmp_path),
            start(["--config", "typo.yaml", "config", "check"], env, tmp_path),
            start(["config", "check", "--config", "nowhere.yaml"], env, tmp_path),
            start(["config", "check"], no_key, tmp_path),
        ])
    assert ok(good).stdout == f"configuration OK: no file, model {MODEL}\n"
    assert "did you mean 'timeout'" in one_error_line(typo)
    assert "nowhere.yaml" in one_error_line(missing_file)
    assert ok(keyless).stdout == "configuration OK: no file, model gpt-4o\n"
    assert keyless.stderr.startswith("warning: gpt-4o needs an API key")
    assert "OPENAI_API_KEY" in keyless.stderr


# --- the command itself -------------------------------------------------------------------------

SUBCOMMANDS = [[], ["chat"], ["embed"], ["models"], ["models", "list"], ["models", "show"], ["aliases"],
               ["config"],
               ["config", "show"], ["config", "check"], ["usage"], ["logs"], ["logs", "list"],
               ["cache"], ["cache", "stats"], ["cache", "clear"]]


def test_help_of_every_command(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    results = dewey_all(*([*words, "--help"] for words in SUBCOMMANDS), env=env, cwd=tmp_path)
    for words, result in zip(SUBCOMMANDS, results, strict=True):
        text = ok(result).stdout
        assert text.startswith(f"usage: dewey-llm {' '.join(words)}".rstrip()), words
        assert "examples:\n  dewey-llm" in text, words
        assert "--config PATH" in text and "--debug" in text, words
    assert "--interactive" not in results[1].stdout  # the hidden test hook


def test_every_option_has_help() -> None:
    # argparse has no public way to list a parser's options or subcommands.
    def parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
        found = [parser]
        for action in parser._actions:  # noqa: SLF001 - see above
            if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001 - see above
                for sub in dict.fromkeys(action.choices.values()):
                    found += parsers(sub)
        return found

    everything = parsers(build_parser())
    assert len(everything) == len(SUBCOMMANDS)
    for parser in everything:
        assert parser.description and parser.epilog and parser.epilog.count("dewey-llm") >= 2
        for action in parser._actions:  # noqa: SLF001 - see above
            assert action.help, (parser.prog, action.dest)


def test_version_usage_errors_and_light_imports(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    version, no_prompt, bad_option, bare = dewey_all(
        ["--version"], ["chat"], ["chat", "--temperature", "warm", "hi"], [], env=env, cwd=tmp_path)
    assert ok(version).stdout.startswith("dewey-llm 0.1.0 (litellm ")
    assert no_prompt.returncode == 2 and "no prompt" in no_prompt.stderr
    assert bad_option.returncode == 2 and "invalid float value" in bad_option.stderr
    assert bare.returncode == 2 and "commands:" in bare.stderr
    # Commands that call no model never import LiteLLM.
    probe = (
        "import sys\n"
        "from dewey.llm._cli import main\n"
        "assert not {'litellm', 'pydantic', 'rich'} & set(sys.modules), 'heavy import'\n"
        "for args in (['config', 'show'], ['config', 'check'], ['usage'], ['logs'], ['cache', 'stats']):\n"
        "    assert main(args) == 0, args\n"
        "assert 'litellm' not in sys.modules, 'litellm imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path, text=True,
                            capture_output=True, stdin=subprocess.DEVNULL, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
