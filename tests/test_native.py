"""NativeTransport against LiteLLM, differentially, through real HTTP to the fake provider.

For each call both LiteLLM and NativeTransport get the same arguments; the fake provider's
journal must show the same request (method, path, JSON body, the headers that mean
something) and the answers must dump equal (ids and timestamps aside).  For each fault
the fake injects, both must end in the same LLMError class, status and ``retry_after``
(LiteLLM's exceptions mapped by ``from_provider_error``, as the client does today).
Where NativeTransport differs on purpose, the test pins both sides and says why
(``KNOWN_DIFFERENCES``, the ``_LITELLM_*_EXTRAS``, and the tests named for it).
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import litellm
import openai
import pytest

from dewey.llm import ChatResponse
from dewey.llm._exceptions import (
    LLMConnectionError,
    LLMError,
    LLMResponseError,
    LLMServerError,
    LLMTimeoutError,
)
from dewey.llm._litellm import LiteLLMTransport
from dewey.llm._litellm_errors import from_provider_error
from dewey.llm._native import NativeTransport
from dewey.llm._openai_wire import assemble
from tests.conftest import TEST_KEY
from tests.hidden_params import hidden_params
from tests.servers.canned import CannedServer, serve_canned
from tests.servers.fake_provider import FakeProvider, Recorded, Reply

litellm.suppress_debug_info = True

MODEL = "openai/gpt-4o-mini"  # in OpenAI's catalog: LiteLLM sends ``user`` only for those
EMBEDDING_MODEL = "openai/text-embedding-3-small"
# Keys LiteLLM adds on some stream chunks and not others (copied from the openai SDK's
# chunk objects), always None here, and ``usage.cost``/synthesised token details, which
# LiteLLM computes from its price map: not on the wire, so NativeTransport leaves them out.
_LITELLM_CHUNK_EXTRAS = {"citations", "moderation", "obfuscation", "service_tier"}
_LITELLM_DELTA_EXTRAS = {"refusal", "provider_specific_fields"}
# The headers compared: the others differ by client and mean nothing to the server's answer
# (user-agent, the openai SDK's x-stainless-* telemetry, framing).
_MEANINGFUL_HEADERS = ("authorization", "content-type", "accept", "x-trace", "openai-organization")

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
FUNCTIONS = [TOOLS[0]["function"]]
SCHEMA = {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
    "additionalProperties": False}}}
TOOL_TURNS = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
     "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
    {"role": "user", "content": "And should I take a coat?"},
]
USER = [{"role": "user", "content": "Hello there, fake model"}]

# name -> (reply, extra completion arguments)
COMPLETIONS: dict[str, tuple[Reply, dict[str, Any]]] = {
    "system_user": (Reply.ok(), {"messages": [{"role": "system", "content": "Be brief."}, *USER]}),
    "multi_turn_tool_results": (Reply.ok("Take a light one."), {"messages": TOOL_TURNS, "tools": TOOLS}),
    "tools_tool_choice": (Reply.tool_call("get_weather", {"city": "Paris"}), {
        "tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}),
    "tools_auto_parallel": (Reply.tool_call("get_weather", {"city": "Oslo"}, call_id="call_9"), {
        "tools": TOOLS, "tool_choice": "auto", "parallel_tool_calls": False}),
    "legacy_functions": (Reply.tool_call("get_weather", {"city": "Rome"}), {
        "functions": FUNCTIONS, "function_call": {"name": "get_weather"}}),
    "json_object": (Reply.ok('{"city": "Paris"}'), {"response_format": {"type": "json_object"}}),
    "json_schema": (Reply.ok('{"city": "Paris"}'), {"response_format": SCHEMA}),
    "n": (Reply.ok(), {"n": 2}),
    "stop": (Reply.ok(), {"stop": ["\n", "END"]}),
    "seed": (Reply.ok(), {"seed": 42}),
    "logprobs": (Reply.ok(), {"logprobs": True, "top_logprobs": 3}),
    "user": (Reply.ok(), {"user": "user-1234"}),
    "sampling": (Reply.ok(prompt_tokens=7, completion_tokens=0), {
        "temperature": 0.2, "top_p": 0.9, "max_tokens": 50, "presence_penalty": 0.1}),
    "extra_body": (Reply.ok(), {"extra_body": {"top_k": 5, "repetition_penalty": 1.1}}),
    "extra_headers": (Reply.ok(), {"extra_headers": {"X-Trace": "trace-1"}}),
    "stream_options_dropped_unless_streaming": (Reply.ok(), {"stream_options": {"include_usage": True}}),
    "content_parts": (Reply.ok(), {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is in it?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
        {"type": "image_url", "image_url": "https://example.com/cat.png"}]}]}),
    "developer_role_and_names": (Reply.ok(), {"messages": [
        {"role": "developer", "content": "Be brief."}, {"role": "user", "content": "hi", "name": "ann"},
        {"role": "assistant", "content": "hello", "name": "bot"}, {"role": "user", "content": "bye"}]}),
    "reasoning_model_max_tokens": (Reply.ok(), {"model": "openai/o3-mini", "max_tokens": 20,
                                                "reasoning_effort": "low"}),
    "gpt5_max_tokens": (Reply.ok(), {"model": "openai/gpt-5", "max_tokens": 20}),
    "max_completion_tokens_and_store": (Reply.ok(), {"max_completion_tokens": 30, "store": True,
                                                     "metadata": {"not": "sent"}}),
    "tool_choice_without_tools": (Reply.ok(), {"tool_choice": "none", "tools": []}),
    "strict_tool": (Reply.ok(), {"tools": [{"type": "function", "function": {
        "name": "f", "strict": True,
        "parameters": {"type": "object", "properties": {}, "additionalProperties": False}}}]}),
    "cache_control_on_a_proxy": (Reply.ok(), {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "long context", "cache_control": {"type": "ephemeral"}}]}]}),
}
STREAMS: dict[str, tuple[Reply, dict[str, Any]]] = {
    "text": (Reply.ok("one two three four"), {}),
    "text_with_usage": (Reply.ok("one two three"), {"stream_options": {"include_usage": True}}),
    "tool_call": (Reply.tool_call("get_weather", {"city": "Paris"}), {
        "tools": TOOLS, "stream_options": {"include_usage": True}}),
    "legacy_function": (Reply.tool_call("get_weather", {"city": "Rome"}), {"functions": FUNCTIONS}),
    "extra_headers_and_body": (Reply.ok(), {"extra_headers": {"X-Trace": "t"}, "extra_body": {"top_k": 2}}),
}
EMBEDDINGS: dict[str, dict[str, Any]] = {
    "single": {"input": "the quick brown fox"},
    "batch": {"input": ["first text", "second text here", "third"]},
    "dimensions": {"input": ["a b c"], "dimensions": 8},
    "float_format": {"input": ["a b"], "encoding_format": "float"},
    "user": {"input": "x", "user": "user-1"},
    "base64_format": {"input": ["a b"], "encoding_format": "base64"},
    "token_ids": {"input": [[1, 2, 3], [4, 5]]},
}


class _NeverRetryingOpenAI(openai.OpenAI):
    """An SDK client that does not retry. LiteLLM's embedding path gives the client it is
    handed its own retry default (``max_retries or 2``), which would consume the scripted
    fault and succeed: the client pins it, as dewey-llm's LiteLLM backend does."""

    @property
    def max_retries(self) -> int:
        return 0

    @max_retries.setter
    def max_retries(self, value: int) -> None:
        pass


@pytest.fixture
def native() -> Iterator[NativeTransport]:
    transport = NativeTransport()
    yield transport
    transport.close()


def _kwargs(provider: FakeProvider, model: str = MODEL, **extra: Any) -> dict[str, Any]:
    return {"model": model, "api_base": provider.openai_base, "api_key": TEST_KEY, "timeout": 10,
            "max_retries": 0, **extra}


def _completion_kwargs(provider: FakeProvider, **extra: Any) -> dict[str, Any]:
    return _kwargs(provider, **{"messages": USER, **extra})


# --------------------------------------------------------------------------- comparing


def _wire(recorded: Recorded) -> dict[str, Any]:
    """What the server saw that means something: method, path, body, meaningful headers."""
    headers = {name: recorded.headers.get(name) for name in _MEANINGFUL_HEADERS}
    return {"method": recorded.method, "path": recorded.path, "body": recorded.body, "headers": headers}


def _plain(response: Any) -> dict[str, Any]:
    """``model_dump()`` without the per-call id and timestamp."""
    data = dict(response.model_dump())
    data.pop("id", None)
    data.pop("created", None)
    return data


def _litellm_chunk(chunk: Any) -> dict[str, Any]:
    """A LiteLLM stream chunk (or assembled stream) without the extras listed at the top
    of this module."""
    data = _plain(chunk)
    for name in _LITELLM_CHUNK_EXTRAS:
        if data.get(name) is None:
            data.pop(name, None)
    for choice in data.get("choices") or []:
        delta = choice.get("delta") or {}
        for name in _LITELLM_DELTA_EXTRAS:
            if delta.get(name) is None:
                delta.pop(name, None)
    usage = data.get("usage")
    if usage:
        usage.pop("cost", None)
        details = usage.get("completion_tokens_details") or {}
        if details.get("text_tokens") == usage["completion_tokens"]:  # computed, not received
            usage["completion_tokens_details"] = None
    return data


def _last_request(provider: FakeProvider) -> dict[str, Any]:
    return _wire(provider.requests[-1])


def _both_completions(provider: FakeProvider, native: NativeTransport, reply: Reply,
                      extra: dict[str, Any]) -> None:
    provider.script(str(extra.get("model", MODEL)).removeprefix("openai/"), reply, reply)
    expected = litellm.completion(**_completion_kwargs(provider, **extra))
    expected_request = _last_request(provider)
    got = native.complete(_completion_kwargs(provider, **extra))
    assert _last_request(provider) == expected_request
    assert _plain(got) == _plain(expected)


# --------------------------------------------------------------------------- completions


@pytest.mark.parametrize("case", sorted(COMPLETIONS))
def test_completion_matches_litellm(case: str, provider: FakeProvider, native: NativeTransport) -> None:
    reply, extra = COMPLETIONS[case]
    _both_completions(provider, native, reply, extra)


@pytest.mark.parametrize("case", ["system_user", "tools_tool_choice", "legacy_functions", "extra_headers"])
def test_async_completion_matches_litellm(case: str, provider: FakeProvider, native: NativeTransport) -> None:
    reply, extra = COMPLETIONS[case]
    provider.script("gpt-4o-mini", reply, reply)

    async def both() -> tuple[Any, dict[str, Any], Any, dict[str, Any]]:
        expected = await litellm.acompletion(**_completion_kwargs(provider, **extra))
        expected_request = _last_request(provider)
        got = await native.acomplete(_completion_kwargs(provider, **extra))
        await native.aclose()
        return expected, expected_request, got, _last_request(provider)

    expected, expected_request, got, request = asyncio.run(both())
    assert request == expected_request
    assert _plain(got) == _plain(expected)


def test_completion_reads_like_litellm_response(provider: FakeProvider, native: NativeTransport) -> None:
    provider.script("gpt-4o-mini", Reply.tool_call("get_weather", {"city": "Paris"}))
    response = native.complete(_completion_kwargs(provider, tools=TOOLS))
    call = response.choices[0].message.tool_calls[0]
    assert (call.function.name, call.function.arguments) == ("get_weather", '{"city": "Paris"}')
    assert response["choices"][0]["finish_reason"] == "tool_calls"
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens


def test_a_bare_model_name_and_the_environment_key_work(provider: FakeProvider, native: NativeTransport,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    kwargs = {"model": "gpt-4o-mini", "messages": USER, "api_base": provider.openai_base}
    expected = litellm.completion(**kwargs, max_retries=0)
    expected_request = _last_request(provider)
    got = native.complete(kwargs)
    assert _last_request(provider) == expected_request
    assert _plain(got) == _plain(expected)


_ANSWER: dict[str, Any] = {"index": 0, "finish_reason": "stop", "logprobs": None, "message": {
    "role": "assistant", "content": "hi", "refusal": None, "annotations": []}}
_COMPLETION = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
               "choices": [_ANSWER]}
# Replies the fake provider never gives: fields it leaves out, and fields it never sends.
CANNED_COMPLETIONS: dict[str, dict[str, Any]] = {
    "no_usage_no_fingerprint": _COMPLETION,
    "detailed_usage_and_service_tier": {**_COMPLETION, "service_tier": "default", "usage": {
        "prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6,
        "prompt_tokens_details": {"cached_tokens": 3, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}},
    "logprobs": {**_COMPLETION, "choices": [{**_ANSWER, "logprobs": {"content": [
        {"token": "hi", "logprob": -0.1, "bytes": [104, 105], "top_logprobs": [
            {"token": "hi", "logprob": -0.1, "bytes": [104, 105]}]}], "refusal": None}}]},
}


@pytest.fixture
def canned() -> Iterator[CannedServer]:
    with serve_canned() as server:
        yield server


@pytest.mark.parametrize("case", sorted(CANNED_COMPLETIONS))
def test_replies_the_fake_never_gives_read_alike(case: str, canned: CannedServer, native: NativeTransport) -> None:
    canned.canned = (200, "application/json", json.dumps(CANNED_COMPLETIONS[case]).encode())
    kwargs = {"model": MODEL, "messages": USER, "api_base": canned.openai_base, "api_key": TEST_KEY,
              "max_retries": 0}
    assert _plain(native.complete(kwargs)) == _plain(litellm.completion(**kwargs))


# --------------------------------------------------------------------------- streams


def _sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + json.dumps(event).encode() + b"\n\n" for event in events) + b"data: [DONE]\n\n"


_CHUNK = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini"}


def _choice(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {**_CHUNK, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, **extra}]}


CANNED_STREAMS: dict[str, bytes] = {
    "no_fingerprint_no_logprobs_key_no_usage": _sse(
        _choice({"role": "assistant", "content": ""}), _choice({"content": "hi"}), _choice({}, "stop")),
    "logprobs_and_detailed_usage": _sse(
        _choice({"role": "assistant", "content": "hi"}, logprobs={"content": [
            {"token": "hi", "logprob": -0.5, "bytes": [104, 105], "top_logprobs": []}], "refusal": None}),
        _choice({}, "length", logprobs=None),
        {**_CHUNK, "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5,
                                            "prompt_tokens_details": {"cached_tokens": 2}}}),
}


@pytest.mark.parametrize("case", sorted(CANNED_STREAMS))
def test_streams_the_fake_never_sends_read_alike(case: str, canned: CannedServer,
                                                 native: NativeTransport) -> None:
    canned.canned = (200, "text/event-stream", CANNED_STREAMS[case])
    kwargs = {"model": MODEL, "messages": USER, "api_base": canned.openai_base, "api_key": TEST_KEY,
              "max_retries": 0, "stream_options": {"include_usage": True}}
    expected = [_litellm_chunk(chunk) for chunk in litellm.completion(**kwargs, stream=True)]
    got = [_plain(chunk) for chunk in native.stream(kwargs)]
    if case.endswith("no_usage"):
        # Asked for usage the server did not send, LiteLLM makes up a usage chunk with counts
        # from a tokenizer; NativeTransport reports only what the server said.
        invented = expected.pop()
        assert invented["choices"] == [] and invented["usage"]["prompt_tokens"] > 0
    assert got == expected


def _litellm_stream(provider: FakeProvider, extra: dict[str, Any]) -> list[dict[str, Any]]:
    stream = litellm.completion(**_completion_kwargs(provider, stream=True, **extra))
    return [_litellm_chunk(chunk) for chunk in stream]


@pytest.mark.parametrize("case", sorted(STREAMS))
def test_stream_matches_litellm_chunk_by_chunk(case: str, provider: FakeProvider,
                                               native: NativeTransport) -> None:
    reply, extra = STREAMS[case]
    provider.script("gpt-4o-mini", reply, reply)
    expected = _litellm_stream(provider, extra)
    expected_request = _last_request(provider)
    got = [_plain(chunk) for chunk in native.stream(_completion_kwargs(provider, **extra))]
    assert _last_request(provider) == expected_request
    assert got == expected


@pytest.mark.parametrize("case", ["text_with_usage", "tool_call", "legacy_function"])
def test_litellm_transport_chunks_are_chat_responses_equal_to_native(case: str, provider: FakeProvider,
                                                                     native: NativeTransport) -> None:
    """One response type for every path: LiteLLM's chunks are converted at its boundary,
    keeping what users read (deltas, tool-call pieces, usage, ``_hidden_params``)."""
    reply, extra = STREAMS[case]
    provider.script("gpt-4o-mini", reply, reply)
    through = list(LiteLLMTransport().stream(_completion_kwargs(provider, **extra)))
    got = [_plain(chunk) for chunk in native.stream(_completion_kwargs(provider, **extra))]
    assert {type(chunk) for chunk in through} == {ChatResponse}
    assert [_litellm_chunk(chunk) for chunk in through] == got
    assert all(hidden_params(chunk)["custom_llm_provider"] == "openai" for chunk in through)
    if case == "tool_call":
        call = next(c for c in through if c.choices and c.choices[0].delta.tool_calls).choices[0].delta.tool_calls[0]
        assert call.function.name == "get_weather"
        assert through[-1].usage.completion_tokens > 0


def test_async_litellm_transport_chunks_are_chat_responses(provider: FakeProvider) -> None:
    reply, extra = STREAMS["text_with_usage"]
    provider.script("gpt-4o-mini", reply)

    async def read() -> list[Any]:
        return [chunk async for chunk in await LiteLLMTransport().astream(_completion_kwargs(provider, **extra))]

    chunks = asyncio.run(read())
    assert {type(chunk) for chunk in chunks} == {ChatResponse}
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices) == "one two three"


@pytest.mark.parametrize("case", ["text_with_usage", "tool_call"])
def test_async_stream_matches_litellm_chunk_by_chunk(case: str, provider: FakeProvider,
                                                     native: NativeTransport) -> None:
    reply, extra = STREAMS[case]
    provider.script("gpt-4o-mini", reply, reply)

    async def both() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        stream = await litellm.acompletion(**_completion_kwargs(provider, stream=True, **extra))
        expected = [_litellm_chunk(chunk) async for chunk in stream]
        got = [_plain(chunk) async for chunk in await native.astream(_completion_kwargs(provider, **extra))]
        await native.aclose()
        return expected, got

    expected, got = asyncio.run(both())
    assert got == expected


@pytest.mark.parametrize("case", ["text_with_usage", "tool_call", "legacy_function", "text"])
def test_assembled_stream_matches_litellm_stream_chunk_builder(case: str, provider: FakeProvider,
                                                               native: NativeTransport) -> None:
    reply, extra = STREAMS[case]
    extra = {**extra, "stream_options": {"include_usage": True}}
    provider.script("gpt-4o-mini", reply, reply)
    kwargs = _completion_kwargs(provider, **extra)
    chunks = list(litellm.completion(**kwargs, stream=True))
    expected = _litellm_chunk(litellm.stream_chunk_builder(chunks, messages=kwargs["messages"]))
    got = _plain(assemble(list(native.stream(kwargs))))
    assert got == expected


def test_usage_sent_unasked_is_passed_on(provider: FakeProvider, native: NativeTransport) -> None:
    """A server that sends usage without being asked (vLLM's --enable-force-include-usage):
    LiteLLM drops that chunk; NativeTransport passes it on, because the stream code hides
    usage-only chunks from users itself and prices the stream with them."""
    reply = Reply.ok("one two", usage_unasked=True)
    provider.script("gpt-4o-mini", reply, reply)
    expected = _litellm_stream(provider, {})
    got = [_plain(chunk) for chunk in native.stream(_completion_kwargs(provider))]
    assert got[:-1] == expected
    assert got[-1]["choices"] == [] and got[-1]["usage"]["completion_tokens"] == 2


def test_stream_text_joins_to_the_answer(provider: FakeProvider, native: NativeTransport) -> None:
    provider.script("gpt-4o-mini", Reply.ok("the whole answer, word by word"))
    chunks = list(native.stream(_completion_kwargs(provider)))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "the whole answer, word by word")
    assert chunks[-1].choices[0].finish_reason == "stop"


# --------------------------------------------------------------------------- embeddings


@pytest.mark.parametrize("case", sorted(EMBEDDINGS))
def test_embedding_matches_litellm(case: str, provider: FakeProvider, native: NativeTransport) -> None:
    kwargs = _kwargs(provider, EMBEDDING_MODEL, **EMBEDDINGS[case])
    expected = litellm.embedding(**kwargs)
    expected_request = _last_request(provider)
    got = native.embed(kwargs)
    assert _last_request(provider) == expected_request
    assert _plain(got) == _plain(expected)


def test_async_embedding_matches_litellm(provider: FakeProvider, native: NativeTransport) -> None:
    kwargs = _kwargs(provider, EMBEDDING_MODEL, input=["one", "two"], dimensions=8)

    async def both() -> tuple[Any, Any]:
        expected = await litellm.aembedding(**kwargs)
        got = await native.aembed(kwargs)
        await native.aclose()
        return expected, got

    expected, got = asyncio.run(both())
    assert _plain(got) == _plain(expected)


# --------------------------------------------------------------------------- errors


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _outcome(error: LLMError) -> tuple[type[LLMError], int | None, float | None]:
    retry_after = round(error.retry_after, 1) if error.retry_after is not None else None
    return type(error), error.status_code, retry_after


def _litellm_error(call: Any, kwargs: dict[str, Any], *, stream: bool) -> LLMError:
    try:
        result = call(**kwargs, stream=True) if stream else call(**kwargs)
        if stream:
            for _ in result:
                pass
    except Exception as exc:
        return from_provider_error(exc, model=kwargs["model"])
    raise AssertionError("LiteLLM did not fail")


def _native_error(call: Any, kwargs: dict[str, Any], *, stream: bool) -> LLMError:
    with pytest.raises(LLMError) as caught:
        result = call(kwargs)
        if stream:
            for _ in result:
                pass
    return caught.value


def _assert_no_key(error: LLMError) -> None:
    link: BaseException | None = error
    while link is not None:
        assert TEST_KEY not in f"{link} {link!r} {vars(link)}"
        assert not type(link).__module__.startswith(("httpx", "aiohttp"))  # they hold the request
        link = link.__cause__ or link.__context__


FAULTS: dict[str, Reply] = {
    "401": Reply.error(401), "403": Reply.error(403), "400": Reply.error(400), "404": Reply.error(404),
    "context_window": Reply.context_window(), "413": Reply.error(413), "422": Reply.error(422),
    "429_retry_after": Reply.error(429, retry_after=2),
    "429_retry_after_ms": Reply.error(429, retry_after_ms=1500),
    "500": Reply.error(500), "503_retry_after": Reply.error(503, retry_after=7),
    "malformed": Reply.malformed(), "cut_body": Reply.cut_stream(),
}


# Where NativeTransport deliberately differs: fault -> (LiteLLM's outcome, NativeTransport's).
# LiteLLM invents HTTP statuses the server never sent (500 for a 200 whose body is not
# JSON, 408 for a timeout); a stream cut after it started is LLMServerError, as the
# error tree says, where LiteLLM's cause chain maps to LLMConnectionError.
KNOWN_DIFFERENCES: dict[str, tuple[Any, Any]] = {
    "malformed": ((LLMServerError, 500, None), (LLMResponseError, None, None)),
    "malformed_event": ((LLMServerError, 500, None), (LLMResponseError, None, None)),
    "timeout": ((LLMTimeoutError, 408, None), (LLMTimeoutError, None, None)),
    "cut_before_text": ((LLMConnectionError, None, None), (LLMServerError, None, None)),
    "cut_after_text": ((LLMConnectionError, None, None), (LLMServerError, None, None)),
}


def _assert_same_outcome(fault: str, got: LLMError, expected: LLMError) -> None:
    if fault in KNOWN_DIFFERENCES:
        assert (_outcome(expected), _outcome(got)) == KNOWN_DIFFERENCES[fault]
    else:
        assert _outcome(got) == _outcome(expected)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_completion_fault_maps_like_litellm(fault: str, provider: FakeProvider, native: NativeTransport) -> None:
    provider.script("gpt-4o-mini", FAULTS[fault], FAULTS[fault])
    kwargs = _completion_kwargs(provider)
    expected = _litellm_error(litellm.completion, kwargs, stream=False)
    got = _native_error(native.complete, kwargs, stream=False)
    _assert_same_outcome(fault, got, expected)
    assert got.provider == "openai" and got.model == MODEL
    _assert_no_key(got)


@pytest.mark.parametrize("fault", ["401", "429_retry_after", "500", "malformed"])
def test_embedding_fault_maps_like_litellm(fault: str, provider: FakeProvider, native: NativeTransport) -> None:
    provider.script("text-embedding-3-small", FAULTS[fault], FAULTS[fault])
    kwargs = _kwargs(provider, EMBEDDING_MODEL, input=["x"])
    sdk = _NeverRetryingOpenAI(api_key=TEST_KEY, base_url=provider.openai_base, max_retries=0)
    expected = _litellm_error(litellm.embedding, {**kwargs, "client": sdk}, stream=False)
    got = _native_error(native.embed, kwargs, stream=False)
    _assert_same_outcome(fault, got, expected)
    assert len(provider.requests) == 2  # one each: nobody retried
    _assert_no_key(got)


STREAM_FAULTS: dict[str, Reply] = {
    "429_retry_after": Reply.error(429, retry_after=3), "401": Reply.error(401), "503": Reply.error(503),
    "cut_before_text": Reply.cut_stream(after_chunks=0), "cut_after_text": Reply.cut_stream(after_chunks=2),
    "malformed_event": Reply.malformed(),
}


@pytest.mark.parametrize("fault", sorted(STREAM_FAULTS))
def test_stream_fault_maps_like_litellm(fault: str, provider: FakeProvider, native: NativeTransport) -> None:
    provider.script("gpt-4o-mini", STREAM_FAULTS[fault], STREAM_FAULTS[fault])
    expected = _litellm_error(litellm.completion, _completion_kwargs(provider), stream=True)
    got = _native_error(native.stream, _completion_kwargs(provider), stream=True)
    _assert_same_outcome(fault, got, expected)
    _assert_no_key(got)


def test_a_stream_cut_after_text_is_a_server_error(provider: FakeProvider, native: NativeTransport) -> None:
    provider.script("gpt-4o-mini", Reply.cut_stream(after_chunks=2))
    texts: list[str] = []
    with pytest.raises(LLMServerError, match="broke off"):
        for chunk in native.stream(_completion_kwargs(provider)):
            texts.append(chunk.choices[0].delta.content or "")
    assert "".join(texts) == "part0 part1"


def test_slow_reply_past_the_timeout(provider: FakeProvider, native: NativeTransport) -> None:
    provider.script("gpt-4o-mini", Reply.slow(3), Reply.slow(3))
    kwargs = _completion_kwargs(provider, timeout=0.3)
    expected = _litellm_error(litellm.completion, kwargs, stream=False)
    got = _native_error(native.complete, kwargs, stream=False)
    _assert_same_outcome("timeout", got, expected)
    _assert_no_key(got)


def test_refused_connection(native: NativeTransport) -> None:
    kwargs = {"model": MODEL, "messages": USER, "api_key": TEST_KEY, "max_retries": 0, "timeout": 5,
              "api_base": f"http://127.0.0.1:{_free_port()}/v1"}
    expected = _litellm_error(litellm.completion, kwargs, stream=False)
    got = _native_error(native.complete, kwargs, stream=False)
    assert _outcome(got) == _outcome(expected) == (LLMConnectionError, None, None)
    _assert_no_key(got)


@pytest.mark.parametrize("fault", ["429_retry_after", "context_window", "slow", "refused", "cut_after_text"])
def test_async_faults_map_like_sync(fault: str, provider: FakeProvider, native: NativeTransport) -> None:
    """The aiohttp transport's failures reach the same errors as the sync path's."""
    kwargs = _completion_kwargs(provider, timeout=0.3)
    if fault == "refused":
        kwargs["api_base"] = f"http://127.0.0.1:{_free_port()}/v1"
    replies = {"slow": Reply.slow(3), "cut_after_text": Reply.cut_stream(2), "refused": Reply.ok()}
    reply = replies.get(fault) or FAULTS[fault]
    provider.script("gpt-4o-mini", reply, reply)
    stream = fault == "cut_after_text"
    sync_error = _native_error(native.stream if stream else native.complete, kwargs, stream=stream)

    async def fail() -> LLMError:
        try:
            if stream:
                chunks: AsyncIterator[Any] = await native.astream(kwargs)
                async for _ in chunks:
                    pass
            else:
                await native.acomplete(kwargs)
        except LLMError as error:
            return error
        finally:
            await native.aclose()
        raise AssertionError("no error")

    async_error = asyncio.run(fail())
    assert _outcome(async_error) == _outcome(sync_error)
    assert async_error.message.split(" (")[0] == sync_error.message.split(" (")[0]
    _assert_no_key(async_error)


def test_provider_message_text_without_library_prefixes(provider: FakeProvider, native: NativeTransport) -> None:
    provider.script("gpt-4o-mini", Reply.error(400, "Invalid value for 'temperature': 7"))
    with pytest.raises(LLMError) as caught:
        native.complete(_completion_kwargs(provider))
    assert caught.value.message == f"{MODEL}: Invalid value for 'temperature': 7"


def test_arguments_litellm_drops_are_sent_as_given(provider: FakeProvider, native: NativeTransport) -> None:
    """LiteLLM silently leaves ``user`` out for a model outside OpenAI's catalog (a vLLM or
    proxy model, say); NativeTransport sends what the caller asked for."""
    kwargs = _completion_kwargs(provider, model="openai/my-vllm-model", user="user-1")
    litellm.completion(**kwargs)
    assert "user" not in (provider.requests[-1].body or {})
    native.complete(kwargs)
    assert (provider.requests[-1].body or {}).get("user") == "user-1"
