"""Response caching end to end: the real client, LiteLLM and HTTP to the fake provider.

A hit is proved by what the server did not receive; a miss by what it did.  Every test
runs with its own ``$XDG_CACHE_HOME`` (the ``isolated`` fixture), so the default SQLite
file starts empty; Redis tests put their own namespace in every prompt, and only entries
holding it are deleted (``tests/servers/redis_server.py``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dewey.llm import (
    AsyncLiteLLMClient,
    LiteLLMConfig,
    LLMConfigError,
    LLMResponseError,
    LLMServerError,
    Message,
)
from dewey.llm._cache import REDIS_KEY_PREFIX
from tests.conftest import TEST_KEY
from tests.hidden_params import cache_hit
from tests.servers.fake_provider import FakeProvider, Reply
from tests.servers.redis_server import REDIS_URL, connect_redis, needs_redis

MODEL = "openai/gpt-4o-mini"
WIRE = "gpt-4o-mini"  # the model name the provider receives
EMBEDDING_MODEL = "openai/text-embedding-3-small"
SUBPROCESS_TIMEOUT = 120


def content(response: Any) -> str:
    return response.choices[0].message.content  # type: ignore[no-any-return]


def joined(chunks: list[Any]) -> str:
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


def get_weather(location: str) -> str:
    """Get the current weather for a location.

    Args:
        location: City and country, e.g. Paris, France
    """
    return f"sunny in {location}"


# --- Redis: our entries only -----------------------------------------------------------------

def redis_entries(namespace: str) -> dict[bytes, tuple[bytes, int]]:
    """Cache entries whose stored answer contains ``namespace`` (which the test put in its
    prompt): name -> (stored text, milliseconds left to live)."""
    found = {}
    with connect_redis() as server:
        for name in server.scan_iter(match=f"{REDIS_KEY_PREFIX}dewey:v1:*", count=1000):
            is_string = server.type(name) == b"string"  # type: ignore[no-untyped-call]  # untyped in types-redis
            if is_string and namespace.encode() in (text := server.get(name) or b""):
                found[name] = (text, int(server.pttl(name)))
    return found


# --- backends ---------------------------------------------------------------------------------

def test_sqlite_is_the_default_file_under_xdg_cache_home(
        make_client: Any, provider: FakeProvider, isolated: Path) -> None:
    first = make_client(cache=True).generate_completion("What is 2+2?")
    assert content(first) == "echo: What is 2+2?"

    path = isolated / "xdg_cache_home" / "dewey-llm" / "cache.db"
    assert path.is_file()
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT key, value FROM responses").fetchall()
    db.close()
    assert len(rows) == 1
    key, value = rows[0]
    assert key.startswith("dewey:v1:chat:")
    assert json.loads(value)["choices"][0]["message"]["content"] == "echo: What is 2+2?"
    assert TEST_KEY not in key + value  # the API key is neither keyed nor stored

    # Another client (as another process would) answers from the file: nothing is sent.
    again = make_client(cache=True).generate_completion("What is 2+2?")
    assert content(again) == "echo: What is 2+2?"
    assert cache_hit(again) is True
    assert len(provider.requests) == 1


def test_memory_cache(make_client: Any, provider: FakeProvider, isolated: Path) -> None:
    client = make_client(cache="memory")
    answers = [content(client.generate_completion("remember me")) for _ in range(3)]
    assert answers == ["echo: remember me"] * 3
    assert len(provider.requests) == 1
    # Nothing of the answers is written: the cache directory holds at most the parsed
    # price map (_mapfile), which every client keeps there.
    files = list((isolated / "xdg_cache_home" / "dewey-llm").glob("*"))
    assert [path.name for path in files if not path.name.endswith(".marshal")] == []
    assert not any(b"remember me" in path.read_bytes() for path in files)


@needs_redis
def test_redis_cache_is_shared_by_clients(make_client: Any, provider: FakeProvider,
                                          redis_namespace: str) -> None:
    prompt = f"shared {redis_namespace}"
    settings = {"cache": "redis", "cache_url": REDIS_URL, "cache_ttl": 60}
    first = make_client(**settings).generate_completion(prompt)
    entries = redis_entries(redis_namespace)
    assert len(entries) == 1  # stored in Redis, as one entry, with the TTL
    (name, (text, ttl)), = entries.items()
    assert name.startswith(f"{REDIS_KEY_PREFIX}dewey:v1:chat:".encode())
    assert 0 < ttl <= 60_000
    assert TEST_KEY.encode() not in name + text

    # A second client, with another key (another machine, say), gets the same answer.
    second = make_client(**settings, api_key="sk-other-machine-9999")
    hit = second.generate_completion(prompt)
    assert content(hit) == content(first) == f"echo: {prompt}"
    assert cache_hit(hit) is True
    assert len(provider.requests) == 1


# --- the key --------------------------------------------------------------------------------

def reordered(value: Any) -> Any:
    """``value`` with every dict's keys in reverse order."""
    if isinstance(value, dict):
        return {key: reordered(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [reordered(item) for item in value]
    return value


def test_equivalent_inputs_share_an_entry(make_client: Any, provider: FakeProvider) -> None:
    client = make_client(cache=True)
    schema = {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": {
        "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
        "required": ["a", "b"]}}}
    tools = [{"type": "function", "function": {"name": "lookup", "description": "Look up",
                                                "parameters": {"type": "object", "properties": {
                                                    "q": {"type": "string"}}}}}]
    first = client.generate_completion(
        [Message(role="system", content="Be brief"), Message(role="user", content="Hi")],
        response_format=schema, tools=tools, temperature=0.5)
    same = client.generate_completion(
        [{"content": "Be brief", "role": "system"}, {"role": "user", "content": "Hi"}],
        response_format=reordered(schema), tools=reordered(tools), temperature=0.5)
    assert content(same) == content(first) == "echo: Hi"
    assert cache_hit(same) is True
    assert len(provider.requests) == 1

    # A bare prompt, its dict and its Message are one request; so are temperature 1 and 1.0.
    client.generate_completion("Hello", temperature=1)
    for messages in ([{"role": "user", "content": "Hello"}], [Message(role="user", content="Hello")]):
        assert cache_hit(client.generate_completion(messages, temperature=1.0))
    assert len(provider.requests) == 2


def test_whatever_changes_the_answer_is_a_new_request(make_client: Any, provider: FakeProvider) -> None:
    client = make_client(cache=True)
    variants: dict[str, dict[str, Any]] = {
        "plain": {},
        "warmer": {"temperature": 0.9},
        "with a tool": {"tools": [get_weather]},
        "as json": {"response_format": {"type": "json_object"}},
        "shorter": {"max_tokens": 5},
        "seeded": {"seed": 7},
        "stop": {"stop": ["\n"]},
    }
    provider.script(WIRE, *(Reply.ok(f"answer {name}") for name in variants))
    for name, params in variants.items():
        assert content(client.generate_completion("Describe Paris", **params)) == f"answer {name}"
    assert len(provider.requests) == len(variants)
    sent = [r.json for r in provider.requests]
    assert sent[1]["temperature"] == 0.9 and "tools" in sent[2] and "response_format" in sent[3]

    # Asked again, each variant gets its own answer back, and nothing is sent.
    for name, params in reversed(variants.items()):
        hit = client.generate_completion("Describe Paris", **params)
        assert (content(hit), cache_hit(hit)) == (f"answer {name}", True)
    assert len(provider.requests) == len(variants)

    # Another model, another system message, another question: new requests.
    client.generate_completion("Describe Paris", model="openai/gpt-4o")
    client.generate_completion([{"role": "system", "content": "Be poetic"},
                                {"role": "user", "content": "Describe Paris"}])
    client.generate_completion("Describe Rome")
    assert [r.model for r in provider.requests[len(variants):]] == ["gpt-4o", WIRE, WIRE]


def test_default_params_from_the_config_are_part_of_the_key(
        make_client: Any, provider: FakeProvider) -> None:
    make_client(cache=True, params={"temperature": 0.0}).generate_completion("Same words")
    make_client(cache=True, params={"temperature": 1.0}).generate_completion("Same words")
    assert [r.json["temperature"] for r in provider.requests] == [0.0, 1.0]


def test_keys_timeouts_and_labels_do_not_change_the_key(make_client: Any, provider: FakeProvider) -> None:
    make_client(cache=True).generate_completion("Rotate my key")
    other = make_client(cache=True, api_key="sk-rotated-abcdef123456", timeout=5, max_retries=0)
    hit = other.generate_completion("Rotate my key", tags=["nightly"], user="someone")
    assert content(hit) == "echo: Rotate my key"
    assert cache_hit(hit) is True
    assert len(provider.requests) == 1


# --- per-call control and expiry ----------------------------------------------------------------

def test_cache_false_neither_reads_nor_writes(make_client: Any, provider: FakeProvider) -> None:
    client = make_client(cache=True)
    client.generate_completion("cached question")
    bypass = client.generate_completion("cached question", cache=False)
    assert cache_hit(bypass) is False
    assert len(provider.requests) == 2

    client.generate_completion("never stored", cache=False)
    client.generate_completion("never stored")
    assert len(provider.requests) == 4

    # A mode that is not one (the string "false", a typo of "refresh") is refused, unsent.
    for mode in ("false", "refesh"):
        with pytest.raises(LLMConfigError, match="not a cache mode"):
            client.generate_completion("cached question", cache=mode)
        with pytest.raises(LLMConfigError, match="not a cache mode"):
            client.generate_embedding("text", model=EMBEDDING_MODEL, cache=mode)
    assert len(provider.requests) == 4


def test_refresh_calls_and_overwrites(make_client: Any, provider: FakeProvider) -> None:
    client = make_client(cache=True)
    provider.script(WIRE, Reply.ok("old answer"), Reply.ok("new answer"))
    assert content(client.generate_completion("news?")) == "old answer"
    assert content(client.generate_completion("news?")) == "old answer"
    refreshed = client.generate_completion("news?", cache="refresh")
    assert (content(refreshed), cache_hit(refreshed)) == ("new answer", False)
    assert content(client.generate_completion("news?")) == "new answer"
    assert len(provider.requests) == 2


@pytest.mark.parametrize("backend", ["memory", "sqlite", pytest.param("redis", marks=needs_redis)])
def test_entries_expire_after_cache_ttl(make_client: Any, provider: FakeProvider,
                                        request: pytest.FixtureRequest, backend: str) -> None:
    settings: dict[str, Any] = {"cache": backend, "cache_ttl": 0.3}
    prompt = "short-lived"
    if backend == "redis":
        settings["cache_url"] = REDIS_URL
        prompt += " " + request.getfixturevalue("redis_namespace")
    client = make_client(**settings)
    client.generate_completion(prompt)
    assert cache_hit(client.generate_completion(prompt)) is True
    assert len(provider.requests) == 1
    time.sleep(0.45)
    assert cache_hit(client.generate_completion(prompt)) is False
    assert len(provider.requests) == 2
    assert cache_hit(client.generate_completion(prompt)) is True  # stored again


# --- what a hit looks like --------------------------------------------------------------------

def test_a_hit_reads_exactly_like_a_fresh_response(make_client: Any, provider: FakeProvider) -> None:
    client = make_client(cache=True)
    provider.script(WIRE, Reply.ok("forty-two", prompt_tokens=11, completion_tokens=3))
    fresh = client.generate_completion("The answer?")
    spent = client.total_cost
    hit = client.generate_completion("The answer?")
    assert len(provider.requests) == 1

    assert cache_hit(fresh) is False
    assert cache_hit(hit) is True
    for response in (fresh, hit):
        assert response.choices[0].message.content == "forty-two"
        assert response["choices"][0]["message"]["content"] == "forty-two"
        assert response.choices[0].message.role == "assistant"
        assert response.choices[0].message.tool_calls is None
        assert response.choices[0].finish_reason == "stop"
        assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (11, 3)
        assert response["usage"]["total_tokens"] == 14
    assert (hit.id, hit.model, hit.created) == (fresh.id, fresh.model, fresh.created)
    assert hit.model_dump() == json.loads(json.dumps(fresh.model_dump(), default=str))
    assert "_hidden_params" not in hit.model_dump() and "_dewey_cost_usd" not in hit.model_dump()
    assert json.loads(hit.model_dump_json()) == hit.model_dump()
    # A hit is free: it costs nothing and adds nothing to the client's spend.
    assert client.completion_cost(fresh) > 0
    assert client.completion_cost(hit) == 0.0
    assert client.total_cost == spent


def test_a_cached_answer_can_be_sent_back_in_the_conversation(
        make_client: Any, provider: FakeProvider) -> None:
    client = make_client(cache=True)
    provider.script(WIRE, Reply.tool_call("get_weather", {"location": "Oslo"}), Reply.ok("sunny"))
    client.generate_completion("Weather in Oslo?", tools=[get_weather])
    hit = client.generate_completion("Weather in Oslo?", tools=[get_weather])
    assert cache_hit(hit) is True
    call = hit.choices[0].message.tool_calls[0]
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"location": "Oslo"})
    follow = client.generate_completion([
        Message(role="user", content="Weather in Oslo?"), hit.choices[0].message,
        Message(role="tool", tool_call_id=call.id, content="sunny in Oslo")], tools=[get_weather])
    assert content(follow) == "sunny"
    assert provider.requests[-1].json["messages"][1]["tool_calls"][0]["function"]["name"] == "get_weather"


CHILD = """
import json, sys
from dewey.llm import LiteLLMClient

with LiteLLMClient() as client:
    response = client.generate_completion(sys.argv[1])
    print(json.dumps({"content": response.choices[0].message.content,
                      "hit": response._hidden_params["cache_hit"],
                      "litellm": "litellm" in sys.modules}))
"""


def child_env(provider_base: str, cache_file: Path, **extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("LITELLM_")}
    env.update(LITELLM_MODEL=MODEL, LITELLM_API_BASE=provider_base, LITELLM_API_KEY=TEST_KEY,
               LITELLM_CACHE="true", LITELLM_CACHE_URL=str(cache_file),
               LITELLM_LOCAL_MODEL_COST_MAP="True", **extra)
    return env


def test_a_hit_never_imports_litellm(provider: FakeProvider, isolated: Path) -> None:
    # Through LiteLLM, so that the miss does import it (the native transport never would).
    env = child_env(provider.openai_base, isolated / "shared-cache.db", LITELLM_TRANSPORT="litellm")
    runs = []
    for _ in range(2):  # the first process fills the file, the second is answered by it
        result = subprocess.run([sys.executable, "-c", CHILD, "Is this cached?"], env=env,
                                capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
        assert result.returncode == 0, result.stderr
        runs.append(json.loads(result.stdout))
    assert runs[0] == {"content": "echo: Is this cached?", "hit": False, "litellm": True}
    assert runs[1] == {"content": "echo: Is this cached?", "hit": True, "litellm": False}
    assert len(provider.requests) == 1


# --- streams ----------------------------------------------------------------------------------

def test_a_stream_is_cached_once_complete_and_replayed(make_client: Any, provider: FakeProvider) -> None:
    client = make_client(cache=True)
    text = "Once upon a time,  there was a  cache.\nThe end."
    provider.script(WIRE, Reply.ok(text, prompt_tokens=6, completion_tokens=10))
    stream = client.generate_completion("Tell me a story", stream=True)
    first = list(stream)
    assert joined(first) == text
    assert cache_hit(stream.response) is False
    spent = client.total_cost
    assert list(stream) == [] and client.total_cost == spent  # finished once, priced once

    replay = client.generate_completion("Tell me a story", stream=True)
    chunks = list(replay)
    assert len(provider.requests) == 1
    assert joined(chunks) == text
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # chunks, not one blob
    assert all(cache_hit(c) for c in chunks)
    # Read as the live stream was: no usage-only chunk nobody asked for; the closing one last.
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert replay.response.usage.completion_tokens == 10
    assert cache_hit(replay.response) is True
    assert content(replay.response) == text
    assert client.generate_completion("Tell me a story", stream=True).text() == text

    # The same entry answers a request without stream=True, and the other way round.
    whole = client.generate_completion("Tell me a story")
    assert (content(whole), cache_hit(whole)) == (text, True)
    assert whole.usage.prompt_tokens == 6
    client.generate_completion("Not streamed first")
    again = list(client.generate_completion("Not streamed first", stream=True))
    assert joined(again) == "echo: Not streamed first"
    assert len(provider.requests) == 2


def test_a_cached_tool_call_replays_as_a_stream(make_client: Any, provider: FakeProvider) -> None:
    client = make_client(cache=True)
    provider.script(WIRE, Reply.tool_call("get_weather", {"location": "Lima"}))
    fresh = list(client.generate_completion("Weather in Lima?", tools=[get_weather], stream=True))
    replay = list(client.generate_completion("Weather in Lima?", tools=[get_weather], stream=True))
    assert len(provider.requests) == 1
    for chunks in (fresh, replay):
        calls = [call for c in chunks if c.choices and c.choices[0].delta.tool_calls
                 for call in c.choices[0].delta.tool_calls]
        assert calls[0].function.name == "get_weather"
        arguments = "".join(call.function.arguments or "" for call in calls)
        assert json.loads(arguments) == {"location": "Lima"}
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_a_cut_stream_is_not_cached(make_client: Any, provider: FakeProvider) -> None:
    client = make_client(cache=True)
    provider.script(WIRE, Reply.cut_stream(after_chunks=2))
    received = []
    with pytest.raises(LLMServerError, match="broke after"):
        for chunk in client.generate_completion("one two three four five", stream=True):
            received.append(chunk)
    assert joined(received)  # some text came before the cut

    whole = client.generate_completion("one two three four five", stream=True)
    assert whole.text() == "echo: one two three four five"
    assert len(provider.requests) == 2  # the cut answer was not served from the cache
    assert cache_hit(client.generate_completion("one two three four five"))
    assert len(provider.requests) == 2


def test_a_stream_left_unfinished_is_not_cached(make_client: Any, provider: FakeProvider) -> None:
    client = make_client(cache=True)
    stream = client.generate_completion("a b c d e f g", stream=True)
    next(stream)
    stream.close()
    assert cache_hit(client.generate_completion("a b c d e f g")) is False
    assert len(provider.requests) == 2


# --- errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("reply", "error"), [
    (Reply.error(500, "boom"), LLMServerError),
    (Reply.error(400, "bad request"), LLMResponseError),
    (Reply.malformed(), LLMResponseError),
])
def test_errors_are_never_cached(make_client: Any, provider: FakeProvider,
                                 reply: Reply, error: type[Exception]) -> None:
    client = make_client(cache=True, max_retries=0)
    provider.script(WIRE, reply)
    with pytest.raises(error):
        client.generate_completion("fragile")
    answer = client.generate_completion("fragile")
    assert (content(answer), cache_hit(answer)) == ("echo: fragile", False)
    assert cache_hit(client.generate_completion("fragile")) is True
    assert len(provider.requests) == 2


# --- embeddings --------------------------------------------------------------------------------

def test_embeddings_are_cached_per_text(make_client: Any, provider: FakeProvider) -> None:
    client = make_client(cache=True, embedding_model=EMBEDDING_MODEL)
    texts = [f"document number {i}" for i in range(1000)]
    first = client.generate_embedding(texts)
    assert len(first["data"]) == 1000 and cache_hit(first) is False
    vectors = {text: item["embedding"] for text, item in zip(texts, first["data"], strict=True)}

    new = {0: "a brand new first line", 500: "a new middle line", 999: "a new last line"}
    batch = [new.get(i, text) for i, text in enumerate(texts)]
    merged = client.generate_embedding(batch)
    assert len(provider.requests) == 2
    assert provider.requests[-1].json["input"] == list(new.values())  # only the new texts
    assert [item["index"] for item in merged["data"]] == list(range(1000))
    assert cache_hit(merged) is False

    truth = client.generate_embedding(batch, cache=False)  # every vector, from the provider
    assert len(provider.requests[-1].json["input"]) == 1000
    assert [item["embedding"] for item in merged["data"]] == [
        item["embedding"] for item in truth["data"]]
    assert merged["data"][1]["embedding"] == vectors["document number 1"]
    assert merged.data[500].embedding != vectors["document number 500"]

    # All cached now: nothing is sent, in any order, batched or alone.
    requests = len(provider.requests)
    shuffled = list(reversed(batch))
    hit = client.generate_embedding(shuffled)
    assert cache_hit(hit) is True
    assert [item["embedding"] for item in hit["data"]] == [
        item["embedding"] for item in reversed(truth["data"])]
    one = client.generate_embedding("document number 7")
    assert one["data"][0]["embedding"] == vectors["document number 7"]
    assert len(provider.requests) == requests

    # Another model or dimensions is another vector: not served from these entries.
    client.generate_embedding("document number 7", dimensions=4)
    assert provider.requests[-1].json["input"] == "document number 7"
    assert len(provider.requests) == requests + 1


# --- sharing -------------------------------------------------------------------------------------

def test_threads_sharing_a_sqlite_cache_get_whole_correct_answers(
        make_client: Any, provider: FakeProvider) -> None:
    prompts = [f"question number {i}" for i in range(6)]
    clients = [make_client(cache=True) for _ in range(4)]
    shared = make_client(cache=True)
    errors: list[BaseException] = []
    wrong: list[tuple[str, str]] = []
    barrier = threading.Barrier(8)

    def work(worker: int) -> None:
        client = shared if worker >= 4 else clients[worker]
        try:
            barrier.wait()
            for round_ in range(4):
                for prompt in prompts[worker % 6:] + prompts[:worker % 6]:
                    if (worker + round_) % 3 == 0:
                        text = client.generate_completion(prompt, stream=True).text()
                    else:
                        text = content(client.generate_completion(prompt))
                    if text != f"echo: {prompt}":
                        wrong.append((prompt, text))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and wrong == []
    assert len(prompts) <= len(provider.requests) <= 8 * len(prompts)  # later rounds all hit
    sent = len(provider.requests)
    late = make_client(cache=True)
    assert [content(late.generate_completion(p)) for p in prompts] == [f"echo: {p}" for p in prompts]
    assert len(provider.requests) == sent


READER = """
import json, sys
from dewey.llm import LiteLLMClient

prompts, rounds = json.loads(sys.argv[1]), int(sys.argv[2])
bad, hits = [], 0
with LiteLLMClient() as client:
    for _ in range(rounds):
        for prompt in prompts:
            response = client.generate_completion(prompt)
            hits += response._hidden_params["cache_hit"] is True
            text = response.choices[0].message.content
            if text != f"{prompt} #{response.usage.completion_tokens}":
                bad.append(text)
print(json.dumps({"bad": bad, "hits": hits, "litellm": "litellm" in sys.modules}))
"""


def test_processes_read_whole_entries_while_another_rewrites_them(
        make_client: Any, provider: FakeProvider, isolated: Path) -> None:
    cache_file = isolated / "busy.db"
    prompts = [f"busy prompt {i}" for i in range(4)]
    writer = make_client(cache=True, cache_url=str(cache_file))
    version = 1
    for prompt in prompts:
        provider.script(WIRE, Reply.ok(f"{prompt} #{version}", completion_tokens=version))
        writer.generate_completion(prompt)
    # Readers call the writer's server (the endpoint is part of the key): a miss (a torn or
    # unreadable entry) would be a call, counted short of the hits and loading LiteLLM.
    env = child_env(provider.openai_base, cache_file, LITELLM_MAX_RETRIES="0")
    readers = [subprocess.Popen([sys.executable, "-c", READER, json.dumps(prompts), "60"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(3)]
    while any(reader.poll() is None for reader in readers):
        version += 1  # every answer is rewritten, with new text and usage, again and again
        for prompt in prompts:
            provider.script(WIRE, Reply.ok(f"{prompt} #{version}", completion_tokens=version))
            writer.generate_completion(prompt, cache="refresh")
    results = []
    for reader in readers:
        out, err = reader.communicate(timeout=SUBPROCESS_TIMEOUT)
        assert reader.returncode == 0, err
        results.append(json.loads(out))
    assert version > 2  # the readers really overlapped the rewrites
    assert results == [{"bad": [], "hits": 60 * len(prompts), "litellm": False}] * 3


# --- the async client ---------------------------------------------------------------------------

def test_async_client_caches_completions_streams_and_embeddings(provider: FakeProvider) -> None:
    config = LiteLLMConfig(model=MODEL, api_base=provider.openai_base, api_key=TEST_KEY,
                           cache=True, embedding_model=EMBEDDING_MODEL)

    async def main() -> None:
        async with AsyncLiteLLMClient(config=config) as client:
            fresh = await client.generate_completion("async hello")
            hit = await client.generate_completion("async hello")
            assert content(hit) == content(fresh) == "echo: async hello"
            assert (cache_hit(fresh), cache_hit(hit)) == (False, True)

            stream = await client.generate_completion("async stream please", stream=True)
            first = [chunk async for chunk in stream]
            replay = await client.generate_completion("async stream please", stream=True)
            again = [chunk async for chunk in replay]
            assert joined(first) == joined(again) == "echo: async stream please"
            assert all(cache_hit(chunk) for chunk in again)
            whole = await client.generate_completion("async stream please")
            assert cache_hit(whole) is True
            assert len(provider.requests) == 2

            await client.generate_embedding(["x", "y"])
            mixed = await client.generate_embedding(["y", "z", "x"])
            assert provider.requests[-1].json["input"] == ["z"]
            assert [len(item["embedding"]) for item in mixed["data"]] == [8, 8, 8]
            assert len(provider.requests) == 4

    asyncio.run(main())
