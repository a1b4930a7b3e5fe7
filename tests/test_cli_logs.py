"""``dewey-llm chat -c / --cid`` and ``dewey-llm logs``, run for real against the fake provider.

The provider's journal shows what each run sent: a continued conversation sends the
previous turns, read back from the prompt log that an earlier process wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

from dewey.llm._usage import usd
from tests.servers.fake_provider import FakeProvider, Reply
from tests.test_cli import KEY, MODEL, WIRE_MODEL, cli_env, dewey, dewey_all, ok, one_error_line

SYSTEM = {"role": "system", "content": "Be kind."}


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def echo(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": f"echo: {text}"}


def test_chat_continue_then_logs_search_json_cost_and_list(provider: FakeProvider,
                                                          tmp_path: Path) -> None:
    env = cli_env(tmp_path, provider, LITELLM_FALLBACKS="openai/gpt-4o")
    nothing = dewey(["chat", "-c", "hello?"], env, tmp_path)
    assert "no conversation in the prompt log yet" in one_error_line(nothing)

    assert ok(dewey(["chat", "-s", "Be kind.", "hello there"], env, tmp_path)).stdout == (
        "echo: hello there\n")
    provider.script(WIRE_MODEL, Reply.error(500), Reply.error(500), Reply.error(500))
    again = ok(dewey(["chat", "-c", "--no-stream", "and then?"], env, tmp_path))
    assert again.stdout == "echo: and then?\n"
    history = [SYSTEM, user("hello there"), echo("hello there")]
    assert provider.requests_for(WIRE_MODEL)[0].json["messages"] == history[:2]
    # -c sent the previous turns, and fell back to gpt-4o after three failures.
    [fallback] = provider.requests_for("gpt-4o")
    assert fallback.json["messages"] == [*history, user("and then?")]

    found, nothing_found, as_json, costs, listed = dewey_all(
        ["logs", "-q", "hello"], ["logs", "-q", "unicorns"], ["logs", "--json"],
        ["logs", "--cost", "-m", "openai/gpt-4o"], ["logs", "list", "--json"],
        env=env, cwd=tmp_path)
    text = ok(found).stdout
    assert "## Prompt\n\nhello there\n" in text and "## Response\n\necho: hello there\n" in text
    assert "## System\n\nBe kind.\n" in text and "and then?" not in text
    assert ok(nothing_found).stdout == "" and "no logged exchanges" in nothing_found.stderr

    first, second = json.loads(ok(as_json).stdout)  # oldest first
    assert (first["prompt"], first["model"], first["system"]) == ("hello there", MODEL, "Be kind.")
    assert (second["prompt"], second["response"], second["model"]) == (
        "and then?", "echo: and then?", "openai/gpt-4o")
    assert second["messages"] == [*history, user("and then?")]
    assert first["conversation_id"] == second["conversation_id"]
    for entry in (first, second):
        assert entry["cost_usd"] > 0 and entry["prompt_tokens"] > 0
        assert entry["cost_usd"] == sum(attempt["cost_usd"] for attempt in entry["attempts"])
    assert [(a["model"], a["outcome"]) for a in second["attempts"]] == [
        (MODEL, "LLMServerError")] * 3 + [("openai/gpt-4o", "ok")]

    cost = ok(costs).stdout
    assert "## Prompt\n\nand then?" in cost and "hello there" not in cost
    assert "attempts: openai/gpt-4o-mini LLMServerError, openai/gpt-4o-mini LLMServerError" in cost
    assert f"tokens, {usd(second['cost_usd'])}; attempts" in cost

    [conversation] = json.loads(ok(listed).stdout)
    assert (conversation["id"], conversation["turns"]) == (first["conversation_id"], 2)
    assert conversation["first_prompt"] == "hello there"
    assert conversation["cost_usd"] == first["cost_usd"] + second["cost_usd"]
    table = ok(dewey(["logs", "list"], env, tmp_path)).stdout
    assert conversation["id"] in table and "hello there" in table

    # --cid continues that conversation (on the model it last answered with), --no-log
    # leaves the turn out of the log.
    cid = conversation["id"]
    third = ok(dewey(["chat", "--cid", cid, "--no-log", "a third, unlogged"], env, tmp_path))
    assert third.stdout == "echo: a third, unlogged\n"
    assert provider.requests_for("gpt-4o")[-1].json["messages"] == [
        *history, user("and then?"), echo("and then?"), user("a third, unlogged")]
    logged = json.loads(ok(dewey(["logs", "-n", "0", "--json", "--cid", cid], env,
                                 tmp_path)).stdout)
    assert [entry["prompt"] for entry in logged] == ["hello there", "and then?"]

    usage = dewey(["chat", "-c", "-s", "Be terse.", "hi"], env, tmp_path)
    assert usage.returncode == 2 and "--system starts a conversation" in usage.stderr


def test_logging_off_leaves_no_text_behind(provider: FakeProvider, tmp_path: Path) -> None:
    env = cli_env(tmp_path, provider, DEWEY_LLM_LOG="0")
    ok(dewey(["chat", "a very private question"], env, tmp_path))
    config = tmp_path / "dewey.yaml"
    config.write_text("llm:\n  log: false\n")
    ok(dewey(["chat", "--json", "another private question"], cli_env(tmp_path, provider),
              tmp_path))
    config.unlink()
    ok(dewey(["chat", "--no-log", "a third private question"], cli_env(tmp_path, provider),
             tmp_path))
    ok(dewey(["chat", f"my key is {KEY}"], cli_env(tmp_path, provider), tmp_path))

    data = tmp_path / "data" / "dewey-llm"
    stored = b"".join(path.read_bytes() for path in data.glob("usage.db*"))
    assert b"private question" not in stored and KEY.encode() not in stored
    [entry] = json.loads(ok(dewey(["logs", "--json"], cli_env(tmp_path), tmp_path)).stdout)
    assert entry["prompt"].startswith("my key is ") and KEY not in entry["prompt"]
    usage = json.loads(ok(dewey(["usage", "--json"], cli_env(tmp_path), tmp_path)).stdout)
    assert usage["by_model"][0]["calls"] == 4  # the ledger still counts every call
