"""NativeTransport on its own: wire shapes the fake provider never sends (served by a
canned one-reply server), argument errors, its pools' life cycle, and its independence
from LiteLLM.  The differential tests against LiteLLM are in ``test_native.py``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from dewey.llm._exceptions import LLMConfigError, LLMResponseError, LLMServerError
from dewey.llm._native import NativeTransport
from dewey.llm._openai_wire import assemble
from tests.conftest import TEST_KEY
from tests.servers.canned import CannedServer, serve_canned
from tests.servers.fake_provider import FakeProvider, Reply

MODEL = "openai/gpt-4o-mini"
USER = [{"role": "user", "content": "Hello there, fake model"}]


@pytest.fixture
def native() -> Iterator[NativeTransport]:
    transport = NativeTransport()
    yield transport
    transport.close()


def _completion_kwargs(provider: FakeProvider, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": USER, "api_base": provider.openai_base, "api_key": TEST_KEY,
            "timeout": 10, **extra}


# --------------------------------------------------------------------------- SSE the fake cannot send


@pytest.fixture
def canned() -> Iterator[CannedServer]:
    """A server whose one reply a test sets in ``canned``."""
    with serve_canned() as server:
        yield server


def _canned_kwargs(server: CannedServer) -> dict[str, Any]:
    return {"model": MODEL, "messages": USER, "api_key": TEST_KEY, "timeout": 5, "api_base": server.openai_base}


def _event(data: str, name: str | None = None) -> bytes:
    return (f"event: {name}\n" if name else "").encode() + f"data: {data}\n\n".encode()


_TEXT_CHUNK = json.dumps({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                          "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]})
_FINISH_CHUNK = _TEXT_CHUNK.replace('"content": "hi"}, "finish_reason": null', '}, "finish_reason": "stop"')


def test_done_without_finish_reason_is_a_complete_stream(canned: CannedServer, native: NativeTransport) -> None:
    canned.canned = (200, "text/event-stream", _event(_TEXT_CHUNK) + b": keep-alive\n\n" + _event("[DONE]"))
    chunks = list(native.stream(_canned_kwargs(canned)))
    assert [c.choices[0].delta.content for c in chunks] == ["hi"]


def test_an_assembled_stream_without_usage_has_none(provider: FakeProvider, native: NativeTransport) -> None:
    """LiteLLM estimates usage the server did not report with a tokenizer; we do not guess."""
    provider.script("gpt-4o-mini", Reply.ok("no usage here"))
    response = assemble(list(native.stream(_completion_kwargs(provider))))
    assert response.choices[0].message.content == "no usage here"
    assert response.choices[0].finish_reason == "stop"
    assert response.usage is None


def test_a_finished_stream_may_end_without_done(canned: CannedServer, native: NativeTransport) -> None:
    canned.canned = (200, "text/event-stream", _event(_TEXT_CHUNK) + _event(_FINISH_CHUNK).rstrip())
    chunks = list(native.stream(_canned_kwargs(canned)))
    assert [c.choices[0].finish_reason for c in chunks] == [None, "stop"]


def test_a_stream_ending_with_neither_done_nor_finish_was_cut(canned: CannedServer,
                                                               native: NativeTransport) -> None:
    canned.canned = (200, "text/event-stream", _event(_TEXT_CHUNK))
    with pytest.raises(LLMServerError, match="ended before"):
        list(native.stream(_canned_kwargs(canned)))


@pytest.mark.parametrize("event", [
    _event(json.dumps({"error": {"message": "The server had an error while processing", "type": "server_error"}})),
    _event(json.dumps({"message": "The server had an error while processing"}), name="error"),
])
def test_an_error_event_mid_stream_is_a_server_error(event: bytes, canned: CannedServer,
                                                     native: NativeTransport) -> None:
    canned.canned = (200, "text/event-stream", _event(_TEXT_CHUNK) + event + _event("[DONE]"))
    received: list[str] = []
    with pytest.raises(LLMServerError) as caught:
        for chunk in native.stream(_canned_kwargs(canned)):
            received.append(chunk.choices[0].delta.content)
    assert received == ["hi"]
    assert caught.value.message == f"{MODEL}: The server had an error while processing"


def test_an_html_error_page_reads_as_its_text(canned: CannedServer, native: NativeTransport) -> None:
    canned.canned = (502, "text/html", b"<html><body>\n<h1>502 Bad Gateway</h1>\n</body></html>")
    with pytest.raises(LLMServerError) as caught:
        native.complete(_canned_kwargs(canned))
    assert caught.value.status_code == 502
    assert caught.value.message == f"{MODEL}: <html><body> <h1>502 Bad Gateway</h1> </body></html>"


def test_an_error_in_a_200_body_is_the_providers_error(canned: CannedServer, native: NativeTransport) -> None:
    canned.canned = (200, "application/json", b'{"error": {"message": "upstream overloaded", "code": 529}}')
    with pytest.raises(LLMServerError) as caught:
        native.complete(_canned_kwargs(canned))
    assert caught.value.message == f"{MODEL}: upstream overloaded"


def test_json_that_is_not_a_completion_is_a_response_error(canned: CannedServer,
                                                           native: NativeTransport) -> None:
    canned.canned = (200, "application/json", b'{"detail": "Not Found"}')
    with pytest.raises(LLMResponseError, match="not a chat completion") as caught:
        native.complete(_canned_kwargs(canned))
    assert type(caught.value) is LLMResponseError
    assert '"detail": "Not Found"' in caught.value.message


@pytest.mark.parametrize("model", [None, "", 42])
def test_a_missing_model_is_a_config_error_and_sends_nothing(model: Any, provider: FakeProvider,
                                                             native: NativeTransport) -> None:
    with pytest.raises(LLMConfigError, match="model must be a model name"):
        native.complete(_completion_kwargs(provider, model=model))
    with pytest.raises(LLMConfigError):
        native.embed(_completion_kwargs(provider, model=model, input="x"))
    assert provider.requests == []


@pytest.mark.parametrize("argument", [{"temperature": float("nan")}, {"metadata_obj": object()},
                                      {"extra_body": {"seed": {1, 2}}}])
def test_an_argument_json_cannot_carry_is_a_config_error(argument: dict[str, Any], provider: FakeProvider,
                                                        native: NativeTransport) -> None:
    with pytest.raises(LLMConfigError, match="cannot be sent as JSON"):
        native.complete(_completion_kwargs(provider, **argument))
    assert provider.requests == []


@pytest.mark.parametrize("api_base", ["localhost:8000/v1", "ftp://example.com/v1"])
def test_an_api_base_that_is_no_http_url_is_a_config_error(api_base: str, native: NativeTransport) -> None:
    with pytest.raises(LLMConfigError, match="api_base must be an http"):
        native.complete({"model": MODEL, "messages": USER, "api_base": api_base, "api_key": TEST_KEY})


# --------------------------------------------------------------------------- lifecycle


def test_each_event_loop_gets_its_own_pool(provider: FakeProvider, native: NativeTransport) -> None:
    """``asyncio.run`` twice on one transport without ``aclose()``: the second loop does not
    reuse the first's pool, and neither loop leaves an aiohttp session open behind it."""
    kwargs = _completion_kwargs(provider)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = asyncio.run(native.acomplete(kwargs))
        second = asyncio.run(native.acomplete(kwargs))
        gc.collect()
    assert first.choices[0].message.content == second.choices[0].message.content == "echo: Hello there, fake model"
    # aiohttp's own words; other libraries' leftovers (LiteLLM's loops) may show up in gc too.
    assert [str(w.message) for w in caught if str(w.message).startswith(("Unclosed client session",
                                                                         "Unclosed connector"))] == []


def test_context_managers_close_the_pools(provider: FakeProvider) -> None:
    with NativeTransport() as transport:
        transport.complete(_completion_kwargs(provider))
        assert repr(transport) == "<NativeTransport clients=1>"
    assert repr(transport) == "<NativeTransport clients=0>"

    async def use() -> str:
        async with NativeTransport() as transport:
            await transport.acomplete(_completion_kwargs(provider))
            assert repr(transport) == "<NativeTransport clients=1>"
        return repr(transport)

    assert asyncio.run(use()) == "<NativeTransport clients=0>"


def test_repr_shows_no_key(provider: FakeProvider, native: NativeTransport) -> None:
    native.complete(_completion_kwargs(provider))
    assert TEST_KEY not in repr(native)


def test_native_does_not_import_litellm(provider: FakeProvider) -> None:
    code = textwrap.dedent(f"""
        import asyncio, sys
        from dewey.llm._native import NativeTransport
        from dewey.llm._openai_wire import assemble
        transport = NativeTransport()
        kwargs = {{"model": "openai/gpt-4o-mini", "api_base": {provider.openai_base!r},
                   "api_key": "sk-test-0123456789abcdef", "messages": [{{"role": "user", "content": "hi"}}]}}
        assert transport.complete(kwargs).choices[0].message.content == "echo: hi"
        assert assemble(list(transport.stream(kwargs))).choices[0].message.content == "echo: hi"
        transport.embed({{**kwargs, "model": "text-embedding-3-small", "input": "hi"}})
        asyncio.run(transport.acomplete(kwargs))
        transport.close()
        loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("litellm", "openai"))
        print(loaded)
        sys.exit(1 if loaded else 0)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env=os.environ.copy())
    assert result.returncode == 0, result.stdout + result.stderr
