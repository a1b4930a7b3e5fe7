"""Every example in README.md and docs/*.md runs, so the documentation cannot rot.

- ```python blocks run as written, each in a fresh namespace, against the fake provider:
  the provider variables a user would set (``OPENAI_API_KEY``, ``OPENAI_API_BASE``,
  ``ANTHROPIC_API_KEY``, ``ANTHROPIC_API_BASE``) point at it, so snippets naming real
  models (gpt-4, claude-2, ...) reach it.  A block that calls a model must have reached it.
- ```yaml blocks with an ``llm:`` section load with ``LiteLLMConfig.from_yaml``.
- ```console lines ``$ ... dewey-llm ...`` run in a shell with the same environment.  A
  documented ``error: ...`` answer must be that error, with exit code 1; anything else
  must exit 0.  Each line runs in a home of its own, except one that continues the line
  before it (``CONTINUING``: ``chat -c``), which runs after it in its home, with its
  ledger and provider, and must have sent its conversation.  Files the lines read are
  provided (``CONSOLE_FILES``); lines that cannot run here are listed in
  ``SKIPPED_COMMANDS`` with the reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from dewey.llm import LiteLLMClient, LiteLLMConfig
from tests.servers.fake_provider import FakeProvider, Reply
from tests.test_attachments import png

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
KEY = "sk-doc-test-0123456789"

# What snippets use without defining it, as a reader of the surrounding text would.
SNIPPET_GLOBALS: dict[str, Any] = {"messages": [{"role": "user", "content": "Hello!"}]}

# Blocks known to fail because of a bug in src/, keyed by (document, a line of the block).

# Files the documented command lines read.
CONSOLE_FILES: dict[str, str | bytes] = {
    "app.log": "12:00:01 GET /orders timed out after 60 s\n12:00:03 GET /orders 200 (retry)\n",
    "typo.yaml": "llm:\n  timout: 30\n",
    "team.yaml": "llm:\n  aliases: {fast: gpt-4o-mini}\n",
    "chart.png": png(4, 3),
}

# Answers scripted for the examples that need one the fake's echo cannot give (a structured
# answer), keyed by a text of the block or command line; the same answer for every call.
INVOICE = '{"number": "INV-7", "total": 12.5, "items": ["tea", "cake"]}'
SCRIPTED_ANSWERS = {
    "response_format=Invoice": INVOICE,
    "--schema 'name str, age int, tags list[str]'": '{"name": "Rex", "age": 3, "tags": ["loyal"]}',
}

# Command lines that cannot run in a test, and why.
SKIPPED_COMMANDS = {
    "dewey-llm chat": "starts a conversation, which needs a terminal on stdin (test_cli.py "
                      "converses through the hidden --interactive instead)",
}

# The words of a line that continues the line before it in its block (the conversation
# it left in the prompt log).
CONTINUING = ("-c", "--continue")


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it starts (the line after the fence) and its text."""

    document: str
    line: int
    language: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.document}:{self.line}"


def fenced_blocks(language: str) -> list[Block]:
    found = []
    for path in DOCUMENTS:
        lines = path.read_text(encoding="utf-8").splitlines()
        start, fence_language = None, ""
        for number, line in enumerate(lines, start=1):
            if start is None and line.startswith("```"):
                start, fence_language = number + 1, line[3:].strip()
            elif start is not None and line.strip() == "```":
                if fence_language == language:
                    found.append(Block(path.name, start, language, "\n".join(lines[start - 1:number - 1])))
                start = None
    return found


def with_known_bugs(blocks: list[Block]) -> list[Any]:
    params = []
    for block in blocks:
        params.append(pytest.param(block, id=block.id))
    return params


@dataclass(frozen=True)
class Command:
    """A ``$`` line of a console block and the output documented under it."""

    document: str
    line: int
    command: str
    output: list[str]

    @property
    def words(self) -> list[str]:
        return shlex.split(self.command, comments=True)

    follows: Command | None = None  # the line this one continues, run before it in its home

    @property
    def id(self) -> str:
        return f"{self.document}:{self.line} {' '.join(self.words)}"


def console_commands() -> list[Command]:
    commands: list[Command] = []
    for block in fenced_blocks("console"):
        previous: Command | None = None
        for offset, line in enumerate(block.text.splitlines()):
            if line.startswith("$ "):
                command = Command(block.document, block.line + offset, line[2:], [])
                if previous is not None and set(CONTINUING) & set(command.words):
                    command = dataclasses.replace(command, follows=previous)
                commands.append(command)
                previous = command
            elif commands and commands[-1].document == block.document:
                commands[-1].output.append(line)
    return [command for command in commands if "dewey-llm" in command.command]


def provider_variables(provider: FakeProvider) -> dict[str, str]:
    """What a user with OpenAI and Anthropic keys has set, both pointed at the fake provider."""
    return {"OPENAI_API_KEY": KEY, "OPENAI_API_BASE": provider.openai_base,
            "ANTHROPIC_API_KEY": KEY, "ANTHROPIC_API_BASE": provider.anthropic_base}


def script_answers(provider: FakeProvider, text: str) -> None:
    for marker, answer in SCRIPTED_ANSWERS.items():
        if marker in text:
            provider.script_all(*[Reply.ok(answer)] * 10)


# --- python -------------------------------------------------------------------------------------

@pytest.mark.parametrize("block", with_known_bugs(fenced_blocks("python")))
def test_python_block_runs(block: Block, provider: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in provider_variables(provider).items():
        monkeypatch.setenv(name, value)
    # Blank lines in front keep tracebacks pointing at the document's own line numbers.
    code = compile("\n" * (block.line - 1) + block.text, str(ROOT / block.document), "exec")
    namespace: dict[str, Any] = {"__name__": "__doc__", **SNIPPET_GLOBALS}
    script_answers(provider, block.text)
    try:
        exec(code, namespace)
    finally:
        for value in namespace.values():
            if isinstance(value, LiteLLMClient):
                value.close()
    if "generate_" in block.text:  # every call to a model is a generate_* method
        assert provider.requests, "the example called a model but nothing reached the provider"


# --- yaml ---------------------------------------------------------------------------------------

CONFIG_BLOCKS = [block for block in fenced_blocks("yaml") if "llm" in (yaml.safe_load(block.text) or {})]


@pytest.mark.parametrize("block", [pytest.param(b, id=b.id) for b in CONFIG_BLOCKS])
def test_yaml_config_loads(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in re.findall(r"\$\{(\w+)\}", block.text):  # ${VAR:-default} needs nothing set
        monkeypatch.setenv(name, KEY)
    file = tmp_path / "dewey.yaml"
    file.write_text(block.text, encoding="utf-8")
    config = LiteLLMConfig.from_yaml(file)
    assert config.model_fields_set == set(yaml.safe_load(block.text)["llm"])


# --- console ------------------------------------------------------------------------------------

COMMANDS = console_commands()
# A guard against a hang, not a speed check: the lines share the machine's cores, and each
# imports LiteLLM (seconds of CPU); on a busy machine that takes minutes.
TIMEOUT = 600


@dataclass
class Run:
    """A command line's process: started at once, or (``follows``) once the line it
    continues has finished, in that line's home with its provider."""

    provider: FakeProvider
    start: Callable[[], subprocess.Popen[str]]
    follows: Run | None = None
    process: subprocess.Popen[str] | None = None
    stderr: str = ""

    def finish(self) -> subprocess.Popen[str]:
        """Wait for the line (and for the lines it continues first); its process."""
        if self.process is None:
            if self.follows is not None:
                self.follows.finish()
            self.process = self.start()
            _, self.stderr = self.process.communicate(timeout=TIMEOUT)
        elif self.process.returncode is None:
            _, self.stderr = self.process.communicate(timeout=TIMEOUT)
        return self.process


@pytest.fixture(scope="module")
def console_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    """Every command line started at once (each pays seconds for LiteLLM's import), each in
    its own directory and home with its own fake provider, so its requests are its own;
    a line that continues another runs after it, in its home with its provider."""
    bin_dir = tmp_path_factory.mktemp("bin")  # `dewey-llm` is this interpreter with this tree's src
    (bin_dir / "dewey-llm").write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m dewey.llm "$@"\n')
    (bin_dir / "dewey-llm").chmod(0o755)
    inherited = {name: value for name, value in os.environ.items()
                 if not name.startswith(("LITELLM_", "DEWEY_", "OPENAI_", "ANTHROPIC_", "XDG_"))
                 and "API_KEY" not in name}
    runs: dict[str, Run] = {}
    with contextlib.ExitStack() as stack:
        homes: dict[str, tuple[Path, FakeProvider]] = {}
        for command in COMMANDS:
            if " ".join(command.words) in SKIPPED_COMMANDS:
                continue
            if command.follows is not None:
                home, provider = homes[command.follows.id]
            else:
                provider = stack.enter_context(FakeProvider())
                script_answers(provider, command.command)
                home = tmp_path_factory.mktemp("console")
                for name, content in CONSOLE_FILES.items():
                    if isinstance(content, bytes):
                        (home / name).write_bytes(content)
                    else:
                        (home / name).write_text(content, encoding="utf-8")
            homes[command.id] = home, provider
            # The bundled price map, as in conftest: LiteLLM would try to download one at import.
            env = {**inherited, **provider_variables(provider), "HOME": str(home),
                   "PATH": f"{bin_dir}:{os.environ['PATH']}", "COLUMNS": "200",
                   "LITELLM_LOCAL_MODEL_COST_MAP": "True"}

            def start(line: str = command.command, cwd: Path = home,
                      env: dict[str, str] = env) -> subprocess.Popen[str]:
                process = subprocess.Popen(["bash", "-o", "pipefail", "-c", line], cwd=cwd, env=env,
                                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True)
                stack.enter_context(process)  # on exit: close its pipes and reap it...
                stack.callback(process.kill)  # ...after killing it if a test did not wait for it
                return process

            follows = runs[command.follows.id] if command.follows is not None else None
            run = runs[command.id] = Run(provider, start, follows)
            if follows is None:
                run.process = start()
        yield runs


def console_params() -> list[Any]:
    params = []
    for command in COMMANDS:
        reason = SKIPPED_COMMANDS.get(" ".join(command.words))
        params.append(pytest.param(command, id=command.id, marks=[pytest.mark.skip(reason=reason)] if reason else []))
    return params


@pytest.mark.parametrize("command", console_params())
def test_console_command_runs(command: Command, console_runs: dict[str, Run]) -> None:
    run = console_runs[command.id]
    process = run.finish()
    documented_error = next((line for line in command.output if line.startswith("error:")), None)
    if documented_error is not None:
        assert (process.returncode, run.stderr.strip()) == (1, documented_error)
    else:
        assert process.returncode == 0, run.stderr
        if {"chat", "embed"} & set(command.words):
            assert run.provider.requests, "the command called a model but nothing reached the provider"
    if command.follows is not None:  # the turns of the line before it, then its own prompt
        before, now = (request.json["messages"] for request in run.provider.requests[-2:])
        assert now[:len(before)] == before, "the line did not send the conversation it continues"
        assert [m["role"] for m in now[len(before):]] == ["assistant", "user"]
        assert now[-1]["content"] in command.command
