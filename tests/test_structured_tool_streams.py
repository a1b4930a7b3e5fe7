"""A structured answer streamed as LiteLLM's forced tool call fills ``partials()`` as it comes.

Where a provider has no JSON mode, LiteLLM sends the ``json_schema`` response format as a
forced tool, ``json_tool_call``, whose arguments are the answer.  Anthropic's stream of it
(``input_json_delta`` pieces) the pinned LiteLLM hands on as text deltas; Azure's, before
api_version 2024-08, arrives as tool-call deltas.  Either way the partial objects fill as
the arguments stream, sync and async, over real HTTP to the fake provider; a call of the
caller's own tool is never taken for the answer, streamed or not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from dewey.llm import AsyncLiteLLMClient, LiteLLMClient, LiteLLMConfig
from tests.conftest import TEST_KEY
from tests.servers.fake_provider import FakeProvider, Reply
from tests.servers.wire_formats import WireProvider


class Invoice(BaseModel):
    number: str
    total: float
    items: list[str]


ANSWER = {"number": "INV 7 of 2026", "total": 12.5, "items": ["tea", "cake"]}
LOOKUP = [{"type": "function", "function": {"name": "lookup_invoice", "parameters": {
    "type": "object", "properties": {"number": {"type": "string"}}}}}]


@pytest.fixture
def wire() -> Iterator[WireProvider]:
    with WireProvider() as server:
        yield server


def settings(route: str, provider: FakeProvider, wire: WireProvider) -> dict[str, Any]:
    """A client's settings for ``route``, whose structured answers come as a forced tool call."""
    if route == "anthropic":
        return {"model": "anthropic/claude-3-5-haiku-20241022", "api_base": provider.anthropic_base,
                "api_key": TEST_KEY}
    # An api_version older than 2024-08: LiteLLM sends Azure the schema as a forced tool.
    return {"model": "azure/invoices", "api_base": wire.base("azure"), "api_version": "2024-02-01",
            "api_key": "test-key-azure-0123456789"}


def script(route: str, provider: FakeProvider, wire: WireProvider, reply: Reply) -> None:
    if route == "anthropic":
        provider.script("claude-3-5-haiku-20241022", reply)
    else:
        wire.script_all(reply)


def read(**call: Any) -> tuple[list[Any], list[bool], Any]:
    """The partials of a streamed structured call, whether each came before the stream's end
    (its assembled response not yet there), and that response."""
    partials, early = [], []
    with LiteLLMClient(config=LiteLLMConfig(**call.pop("config"))) as client:
        stream = client.generate_completion("invoice", response_format=Invoice, stream=True, **call)
        for partial in stream.partials():
            partials.append(partial)
            early.append(stream.response is None)
        return partials, early, stream.response


def aread(**call: Any) -> tuple[list[Any], list[bool], Any]:
    """:func:`read` through the async client's ``apartials()``."""

    async def main() -> tuple[list[Any], list[bool], Any]:
        partials, early = [], []
        async with AsyncLiteLLMClient(config=LiteLLMConfig(**call.pop("config"))) as client:
            stream = await client.generate_completion("invoice", response_format=Invoice, stream=True, **call)
            async for partial in stream.apartials():
                partials.append(partial)
                early.append(stream.response is None)
            return partials, early, stream.response

    return asyncio.run(main())


@pytest.mark.parametrize("reader", [read, aread], ids=["sync", "async"])
@pytest.mark.parametrize("route", ["anthropic", "azure"])
def test_partials_fill_from_the_forced_tool_calls_arguments(
        provider: FakeProvider, wire: WireProvider, route: str, reader: Any) -> None:
    script(route, provider, wire, Reply.tool_call("json_tool_call", ANSWER))

    partials, early, response = reader(config=settings(route, provider, wire))

    assert [p.number for p in partials if p.number and p.total is None][:2] == ["INV", "INV 7"]
    assert len({p.model_dump_json() for p in partials}) == len(partials) > 3  # each one fuller
    assert all(early)  # while the answer streamed, not once it had ended
    final = response.choices[0].message.parsed
    assert final == Invoice.model_validate(ANSWER)
    assert partials[-1].model_dump() == final.model_dump()


@pytest.mark.parametrize("route", ["anthropic", "azure"])
def test_a_call_of_the_callers_own_tool_is_not_the_answer(
        provider: FakeProvider, wire: WireProvider, route: str) -> None:
    # Arguments that would fill an Invoice, were they taken for the answer.
    script(route, provider, wire, Reply.tool_call("lookup_invoice", ANSWER))

    partials, _, response = read(config=settings(route, provider, wire), tools=LOOKUP)

    assert partials == []
    [call] = response.choices[0].message.tool_calls
    assert call["function"]["name"] == "lookup_invoice"


@pytest.mark.parametrize("route", ["anthropic", "azure"])
def test_a_turn_calling_the_callers_own_tool_is_returned_unvalidated_and_unrepaired(
        provider: FakeProvider, wire: WireProvider, route: str) -> None:
    # As the OpenAI SDK's parse(): the model asks for a tool first; the answer comes later.
    script(route, provider, wire, Reply.tool_call("lookup_invoice", ANSWER))

    with LiteLLMClient(config=LiteLLMConfig(**settings(route, provider, wire))) as client:
        response = client.generate_completion("invoice", response_format=Invoice, tools=LOOKUP)

    message = response.choices[0].message
    assert message.parsed is None
    assert [call["function"]["name"] for call in message.tool_calls] == ["lookup_invoice"]
    sent = provider.requests if route == "anthropic" else wire.requests
    assert len(sent) == 1  # no repair was asked for
