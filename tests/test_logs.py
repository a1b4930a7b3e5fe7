"""The prompt log and conversations, through the library, against the fake provider.

Every exchange is logged beside the ledger rows of its attempts (linked by call id), in
the ledger's store; a conversation sends its history and resumes from the log.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from dewey.llm import (
    AsyncLiteLLMClient,
    Conversation,
    LiteLLMClient,
    LiteLLMConfig,
    LLMConfigError,
    LoggedResponse,
)
from dewey.llm._usage import LogEntry, SQLiteLedger, UsageRecord
from tests.conftest import TEST_KEY
from tests.servers.fake_provider import FakeProvider, Reply
from tests.servers.postgres import PG_URL, needs_postgres

WIRE = "gpt-4o-mini"
MODEL = "openai/gpt-4o-mini"
MakeClient = Callable[..., LiteLLMClient]


def sent(provider: FakeProvider, model: str = WIRE) -> list[list[dict[str, Any]]]:
    """The messages of every request the provider received for ``model``, in order."""
    return [request.json["messages"] for request in provider.requests_for(model)]


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def echo(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": f"echo: {text}"}


def test_a_conversation_sends_its_history_and_logs_each_turn_with_its_cost(
        make_client: MakeClient, provider: FakeProvider) -> None:
    client = make_client()
    chat = client.conversation(system="Be kind.")
    assert isinstance(chat, Conversation)
    assert chat.send("first").choices[0].message.content == "echo: first"
    stream = chat.send("second", stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream) == "echo: second"

    system = {"role": "system", "content": "Be kind."}
    assert sent(provider) == [[system, user("first")],
                              [system, user("first"), echo("first"), user("second")]]
    assert chat.messages == [system, user("first"), echo("first"), user("second"), echo("second")]

    second, first = client.logs(conversation=chat.id)
    assert isinstance(second, LoggedResponse)
    assert (first.prompt, first.response, first.system) == ("first", "echo: first", "Be kind.")
    assert (second.prompt, second.response) == ("second", "echo: second")
    assert second.messages == sent(provider)[1]
    assert second.model == MODEL and not second.cache_hit
    for turn in (first, second):  # each priced by its ledger row
        [attempt] = turn.attempts
        assert attempt.outcome == "ok" and attempt.model == MODEL
        assert turn.cost_usd == attempt.cost_usd > 0
        assert turn.prompt_tokens > 0 and turn.completion_tokens > 0
    assert client.total_cost == pytest.approx(first.cost_usd + second.cost_usd)


def test_resumed_conversation_goes_on_from_the_log(make_client: MakeClient,
                                                   provider: FakeProvider) -> None:
    first = make_client()
    chat = first.conversation()
    chat.send("first")
    chat.send("second")
    first.close()  # its log written
    client = make_client()
    resumed = client.conversation(id=chat.id)  # another client: read from the log
    assert resumed.id == chat.id and resumed.messages == chat.messages
    resumed.send("third")
    assert sent(provider)[-1] == [user("first"), echo("first"), user("second"), echo("second"),
                                  user("third")]
    assert [turn.prompt for turn in client.logs(conversation=chat.id)] == [
        "third", "second", "first"]
    with pytest.raises(LLMConfigError, match=r"no conversation 'nope'.*logs list"):
        client.conversation(id="nope")
    with pytest.raises(LLMConfigError, match="system= starts a new conversation"):
        client.conversation(id=chat.id, system="Be brief.")


def test_retries_and_fallbacks_are_the_attempts_of_a_logged_answer(
        make_client: MakeClient, provider: FakeProvider) -> None:
    provider.script(WIRE, Reply.error(500), Reply.error(500))
    client = make_client(max_retries=1, fallback_models=["openai/gpt-4o"])
    client.generate_completion("hello there", tags=["nightly"], user="ada")
    [logged] = client.logs()
    assert logged.model == "openai/gpt-4o"  # the model that answered
    assert [(a.model, a.outcome) for a in logged.attempts] == [
        (MODEL, "LLMServerError"), (MODEL, "LLMServerError"), ("openai/gpt-4o", "ok")]
    assert (logged.tags, logged.user, logged.conversation_id) == (("nightly",), "ada", None)
    assert logged.cost_usd == logged.attempts[-1].cost_usd > 0


class Invoice(BaseModel):
    number: str
    total: float


def test_a_repaired_structured_answer_is_logged_once_with_the_answer_returned(
        make_client: MakeClient, provider: FakeProvider) -> None:
    valid = '{"number": "INV-7", "total": 12.5}'
    provider.script(WIRE, Reply.ok('{"number": "INV-7", "total": "twelve"}'), Reply.ok(valid))
    client = make_client()
    client.generate_completion("Invoice for tea", response_format=Invoice)
    [logged] = client.logs()
    assert (logged.prompt, logged.response) == ("Invoice for tea", valid)
    assert logged.messages == [user("Invoice for tea")]  # as asked: the repair is its attempt
    assert [a.outcome for a in logged.attempts] == ["LLMOutputValidationError", "ok"]
    assert logged.cost_usd == pytest.approx(client.total_cost)
    assert client.logs("twelve") == [] and client.logs("INV") == [logged]


def test_full_text_search_model_and_since(make_client: MakeClient) -> None:
    client = make_client()
    client.generate_completion("The quick brown foxes jumped")
    client.generate_completion("Retry with exponential backoff?", model="openai/gpt-4o")
    client.generate_completion("Something else entirely")
    [found] = client.logs("fox jumping")  # every word, stemmed
    assert found.prompt == "The quick brown foxes jumped"
    assert [r.prompt for r in client.logs("backoff?")] == ["Retry with exponential backoff?"]
    assert client.logs('"unbalanced AND OR') == []  # words to find, not query syntax
    assert [r.prompt for r in client.logs(model="openai/gpt-4o")] == [
        "Retry with exponential backoff?"]
    assert len(client.logs(limit=None)) == 3 and len(client.logs(limit=2)) == 2
    assert client.logs(since=found.time + 3600) == []


def test_every_entry_of_a_busy_second_is_logged_and_found(tmp_path: Path) -> None:
    # Queued at once, the entries reach the writer as one batch, which it stores many to
    # a statement (64 + 8 here): none is lost, each is indexed, and a call
    # answered twice within the batch keeps its last answer.
    ledger = SQLiteLedger(tmp_path / "usage.db")
    prompts = [f"question {n} about item{n}x" for n in range(71)]
    for n, prompt in enumerate(prompts):
        ledger.record(UsageRecord(MODEL, "openai", "completion", "ok", call_id=f"call-{n}"))
        ledger.record(LogEntry(f"call-{n}", MODEL, [user(prompt)], f"answer {n}"))
    ledger.record(LogEntry("call-3", MODEL, [user("repaired")], "answer 3, repaired"))
    assert sorted(r.prompt for r in ledger.responses(limit=None)) == sorted(prompts)
    for n in (0, 63, 64, 67, 68, 70):
        [found] = ledger.responses(query=f"item{n}x")
        assert (found.prompt, found.response) == (prompts[n], f"answer {n}")
        assert [a.call_id for a in found.attempts] == [f"call-{n}"]
    [repaired] = ledger.responses(query="repaired")
    assert (repaired.prompt, repaired.response) == (prompts[3], "answer 3, repaired")
    assert len(ledger.responses(query="question", limit=None)) == 71
    ledger.close()


def test_a_sqlite_without_fts5_searches_with_like(make_client: MakeClient, isolated: Path) -> None:
    first = make_client()
    first.generate_completion("The quick brown foxes jumped")
    first.generate_completion("grew by 100% in a_b")
    first.close()
    # What a SQLite built without FTS5 leaves: the log without its index (nothing else
    # can simulate one: the module is compiled in).
    with sqlite3.connect(isolated / "xdg_data_home" / "dewey-llm" / "usage.db") as db:
        db.executescript("DROP TRIGGER usage_log_fts_insert; DROP TRIGGER usage_log_fts_delete; "
                         "DROP TABLE usage_log_fts;")
    client = make_client()
    assert [r.prompt for r in client.logs("fox JUMP")] == ["The quick brown foxes jumped"]
    assert [r.prompt for r in client.logs("100% a_b")] == ["grew by 100% in a_b"]
    assert client.logs("100%%") == client.logs("a%b") == []  # % and _ are characters here


def test_a_cache_hit_is_logged_as_such(make_client: MakeClient, provider: FakeProvider) -> None:
    client = make_client(cache="memory")
    client.generate_completion("hello")
    client.generate_completion("hello")
    assert len(provider.requests_for(WIRE)) == 1
    hit, miss = client.logs()
    assert (hit.cache_hit, miss.cache_hit) == (True, False)
    assert hit.response == miss.response == "echo: hello"
    assert hit.cost_usd == 0 and miss.cost_usd > 0


def test_logging_off_leaves_no_text_and_keys_are_never_logged(
        make_client: MakeClient, isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    database = isolated / "xdg_data_home" / "dewey-llm" / "usage.db"
    quiet = make_client(log=False)
    quiet.generate_completion("a secret plan")
    quiet.conversation().send("another secret plan")
    with pytest.raises(LLMConfigError, match="prompt log is off"):
        quiet.logs()
    with pytest.raises(LLMConfigError, match="logging is off"):
        quiet.conversation(id="abc")
    client = make_client()
    client.generate_completion("one more secret plan", log=False)  # per call
    client.generate_completion(f"my key is {TEST_KEY}")
    client.close()
    quiet.close()
    stored = b"".join(path.read_bytes() for path in database.parent.glob("usage.db*"))
    assert b"secret plan" not in stored
    assert TEST_KEY.encode() not in stored
    [logged] = make_client().logs()
    assert logged.prompt.startswith("my key is ") and TEST_KEY not in logged.prompt
    assert len(client.logs(limit=None)) == 1

    monkeypatch.setenv("DEWEY_LLM_LOG", "0")
    config = LiteLLMConfig.load()
    assert config.log is False and config.sources["log"] == "env DEWEY_LLM_LOG"
    with pytest.raises(LLMConfigError, match=r"log=.*not a bool"):
        client.generate_completion("hi", log="no")


LOOKUP_TOOL: Any = {"type": "function", "function": {
    "name": "lookup", "parameters": {"type": "object", "properties": {"key": {"type": "string"}}}}}


def test_no_key_reaches_the_log_whichever_part_of_an_exchange_holds_it(
        make_client: MakeClient, provider: FakeProvider, isolated: Path) -> None:
    # The writer checks an entry's texts for keys together, then redacts them one by one:
    # every part is covered, also a registered key of no telling shape (a proxy's token).
    token = "proxy-token-of-no-known-shape-42"
    client = make_client()
    proxied = make_client(api_key=token)
    client.generate_completion([{"role": "system", "content": f"Use {TEST_KEY} quietly."},
                                user("first"), {"role": "assistant", "content": f"I saw {token}"},
                                user("second")])
    proxied.generate_completion(f"repeat {token}")  # the answer echoes it
    provider.script(WIRE, Reply.tool_call("lookup", {"key": TEST_KEY}))
    client.generate_completion("look it up", tools=[LOOKUP_TOOL])
    assert "echo: stream" in "".join(client.generate_completion(f"stream {TEST_KEY}", stream=True).text())
    client.close()
    proxied.close()

    database = isolated / "xdg_data_home" / "dewey-llm" / "usage.db"
    stored = b"".join(path.read_bytes() for path in database.parent.glob("usage.db*"))
    assert TEST_KEY.encode() not in stored and token.encode() not in stored
    streamed, tool, echoed, history = make_client().logs(limit=None)
    assert streamed.response.startswith("echo: stream ") and TEST_KEY not in streamed.response
    assert tool.tool_calls and TEST_KEY not in str(tool.tool_calls)
    assert echoed.response.startswith("echo: repeat ") and token not in echoed.response
    assert history.system is not None and history.system.startswith("Use ")
    assert TEST_KEY not in history.system and token not in str(history.messages)
    assert history.prompt == "second"


def test_the_log_keeps_the_messages_as_sent_when_the_caller_changes_them_afterwards(
        make_client: MakeClient, provider: FakeProvider) -> None:
    # The entry is written on the writer thread a moment later: what the caller changes
    # after the call returns must not reach it.
    client = make_client()
    parts = [{"type": "text", "text": "first words"}]
    messages: list[dict[str, Any]] = [{"role": "user", "content": parts}]
    client.generate_completion(messages)
    parts[0]["text"] = "changed words"
    parts.append({"type": "text", "text": "more"})
    messages.append(user("later"))
    [logged] = client.logs()
    assert sent(provider) == [[{"role": "user", "content": [{"type": "text", "text": "first words"}]}]]
    assert logged.messages == sent(provider)[0]
    assert logged.prompt == "first words"


def test_async_conversation(make_client: MakeClient, provider: FakeProvider) -> None:
    async def main() -> list[str]:
        async with AsyncLiteLLMClient(config=make_client().config) as client:
            chat = client.conversation()
            await chat.send("first")
            stream = await chat.send("second", stream=True)
            assert await stream.atext() == "echo: second"
            resumed = await client.conversation(id=chat.id)
            assert resumed.messages == chat.messages
            await resumed.send("third")
            return [turn.prompt for turn in client.logs(conversation=chat.id)]

    assert asyncio.run(main()) == ["third", "second", "first"]
    assert sent(provider)[-1] == [user("first"), echo("first"), user("second"), echo("second"),
                                  user("third")]


def test_an_async_resume_reads_the_log_when_awaited_or_at_its_first_send(
        make_client: MakeClient, provider: FakeProvider) -> None:
    first = make_client()
    chat = first.conversation(model="openai/other-model")
    chat.send("first")
    first.close()  # its log written

    async def main() -> tuple[list[Any], list[Any]]:
        async with AsyncLiteLLMClient(config=first.config) as client:
            unread = client.conversation(id=chat.id)  # nothing read on the event loop
            assert unread.messages == [] and unread.model is None
            await unread.send("second")  # read (in a worker thread) before sending
            assert unread.model == "openai/other-model"

            unknown = client.conversation(id="no-such-id")
            with pytest.raises(LLMConfigError, match="no conversation 'no-such-id'"):
                await unknown
            with pytest.raises(LLMConfigError, match="system= starts a new conversation"):
                client.conversation(id=chat.id, system="x")  # bad arguments: at once
            fresh = await client.conversation(system="Be kind.")  # a new one: nothing to read
            return unread.messages, fresh.messages

    resumed, fresh = asyncio.run(main())
    assert sent(provider, "other-model")[-1] == [user("first"), echo("first"), user("second")]
    assert resumed == [user("first"), echo("first"), user("second"), echo("second")]
    assert fresh == [{"role": "system", "content": "Be kind."}]


@pytest.mark.parametrize("stream", [False, True])
def test_a_turn_that_calls_a_tool_keeps_its_tool_calls_in_the_history(
        make_client: MakeClient, provider: FakeProvider, stream: bool) -> None:
    provider.script(WIRE, Reply.tool_call("weather", {"city": "Oslo"}, call_id="call_7"), Reply.ok("Sunny."))
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    chat = make_client().conversation()

    if stream:
        list(chat.send("Weather in Oslo?", tools=tools, stream=True))  # joins at the end
    else:
        chat.send("Weather in Oslo?", tools=tools)
    call = {"id": "call_7", "type": "function",
            "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}
    def without_index(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in c.items() if k != "index"} for c in calls]  # the fake's extra

    reply = chat.messages[-1]
    assert (reply["role"], reply["content"]) == ("assistant", "")
    assert without_index(reply["tool_calls"]) == [call]

    chat.send({"role": "tool", "tool_call_id": "call_7", "content": "sunny"}, tools=tools)
    [assistant] = [m for m in sent(provider)[-1] if m["role"] == "assistant"]
    assert without_index(assistant["tool_calls"]) == [call]  # the provider needs it for the tool's answer


RESUME = """
import sys
from dewey.llm import LiteLLMClient
with LiteLLMClient(model=sys.argv[2], api_base=sys.argv[3], api_key=sys.argv[4]) as client:
    chat = client.conversation(id=sys.argv[1])
    print(chat.send("and then?").choices[0].message.content)
"""


def test_a_conversation_resumes_in_another_process(make_client: MakeClient,
                                                   provider: FakeProvider) -> None:
    client = make_client()
    chat = client.conversation()
    chat.send("once upon a time")
    client.close()  # written: another process reads it
    result = subprocess.run([sys.executable, "-c", RESUME, chat.id, MODEL, provider.openai_base,
                             TEST_KEY], capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "echo: and then?\n"
    assert sent(provider)[-1] == [user("once upon a time"), echo("once upon a time"),
                                  user("and then?")]
    assert [turn.prompt for turn in make_client().logs(conversation=chat.id)] == [
        "and then?", "once upon a time"]


@needs_postgres
def test_postgres_log_search_and_conversations(make_client: MakeClient, provider: FakeProvider,
                                               pg_table: str) -> None:
    url = f"{PG_URL}?table={pg_table}"
    provider.script(WIRE, Reply.error(500))
    first = make_client(usage_db=url)
    chat = first.conversation()
    chat.send("The quick brown foxes jumped")
    chat.send("and the lazy dog?")
    first.close()
    client = make_client(usage_db=url)
    [found] = client.logs("fox jumping")
    assert found.conversation_id == chat.id
    assert [a.outcome for a in found.attempts] == ["LLMServerError", "ok"]
    assert client.conversation(id=chat.id).messages == chat.messages
    log = client._log  # noqa: SLF001 - what `logs list` reads
    assert log is not None
    [summary] = log.conversations()
    assert (summary.id, summary.turns, summary.first_prompt) == (
        chat.id, 2, "The quick brown foxes jumped")
    assert summary.cost_usd == pytest.approx(sum(r.cost_usd for r in client.logs(limit=None)))
