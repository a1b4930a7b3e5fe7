"""Structured output end to end: ``response_format=Model`` in, ``message.parsed`` out.

Real HTTP to the fake provider, which answers the JSON each test scripts; the ledger is
read back from its storage.  The local model's grammar is tested in test_local_model.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import pickle
from typing import Any

import pytest
from pydantic import BaseModel, create_model, field_validator
from typing_extensions import TypedDict  # pydantic needs it before Python 3.12

from dewey.llm import (
    AsyncLiteLLMClient,
    LiteLLMClient,
    LiteLLMConfig,
    LLMConfigError,
    LLMOutputValidationError,
    LLMResponseError,
    LLMServerError,
)
from dewey.llm._usage import UsageRecord, open_ledger
from tests.conftest import TEST_KEY
from tests.hidden_params import cache_hit
from tests.servers.fake_provider import FakeProvider, Reply

WIRE = "gpt-4o-mini"  # the model name the provider receives
VALID = '{"number": "INV-7", "total": 12.5, "items": ["tea", "cake"]}'


class Invoice(BaseModel):
    number: str
    total: float
    items: list[str]


@dataclasses.dataclass
class InvoiceData:
    number: str
    total: float
    items: list[str]


class InvoiceDict(TypedDict):
    number: str
    total: float
    items: list[str]


INVOICE_SCHEMA = {"title": "Invoice", "type": "object", "properties": {
    "number": {"type": "string"}, "total": {"type": "number"},
    "items": {"type": "array", "items": {"type": "string"}}}, "required": ["number", "total"]}


def rows(client: LiteLLMClient | AsyncLiteLLMClient) -> list[UsageRecord]:
    """The ledger's rows, oldest first, read back from storage by a ledger of their own."""
    client._ledger.flush()  # noqa: SLF001 - the client has no public flush
    with open_ledger(client.config.usage_db) as ledger:
        return list(reversed(ledger.records()))


def parsed(response: Any) -> Any:
    return response.choices[0].message.parsed


# --- a valid answer ------------------------------------------------------------------------------

@pytest.mark.parametrize(("target", "expected"), [
    (Invoice, Invoice(number="INV-7", total=12.5, items=["tea", "cake"])),
    (InvoiceData, InvoiceData(number="INV-7", total=12.5, items=["tea", "cake"])),
    (InvoiceDict, {"number": "INV-7", "total": 12.5, "items": ["tea", "cake"]}),
    (INVOICE_SCHEMA, {"number": "INV-7", "total": 12.5, "items": ["tea", "cake"]}),
], ids=["pydantic", "dataclass", "typeddict", "json-schema"])
def test_a_valid_answer_is_parsed_into_the_type_asked_for(
        make_client: Any, provider: FakeProvider, target: Any, expected: Any) -> None:
    provider.script(WIRE, Reply.ok(VALID))
    response = make_client().generate_completion("Invoice for tea and cake", response_format=target)

    assert parsed(response) == expected
    assert isinstance(parsed(response), type(expected))
    assert response.choices[0].message.content == VALID
    [request] = provider.requests
    sent = request.json["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["strict"] is True
    assert sent["json_schema"]["name"] == "Invoice" if target in (Invoice, INVOICE_SCHEMA) else True
    schema = sent["json_schema"]["schema"]  # OpenAI's strict mode: closed, all required
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["number", "total", "items"]


def test_nested_models_are_strict_all_the_way_down(make_client: Any, provider: FakeProvider) -> None:
    class Line(BaseModel):
        item: str
        note: str | None = None

    class Order(BaseModel):
        lines: list[Line]

    provider.script(WIRE, Reply.ok('{"lines": [{"item": "tea", "note": null}]}'))
    response = make_client().generate_completion("order", response_format=Order)

    assert parsed(response) == Order(lines=[Line(item="tea")])
    line = provider.requests[0].json["response_format"]["json_schema"]["schema"]["$defs"]["Line"]
    assert line["additionalProperties"] is False and line["required"] == ["item", "note"]
    assert "default" not in line["properties"]["note"]


def test_a_fenced_answer_is_parsed(make_client: Any, provider: FakeProvider) -> None:
    provider.script(WIRE, Reply.ok(f"```json\n{VALID}\n```"))
    assert parsed(make_client().generate_completion("invoice", response_format=Invoice)).number == "INV-7"


def test_parsed_is_the_object_and_model_dump_its_data(make_client: Any, provider: FakeProvider) -> None:
    provider.script(WIRE, Reply.ok(VALID))
    response = make_client().generate_completion("invoice", response_format=Invoice)

    assert isinstance(parsed(response), Invoice)
    assert response["choices"][0]["message"]["parsed"] is parsed(response)
    dumped = response.model_dump()["choices"][0]["message"]["parsed"]
    assert dumped == {"number": "INV-7", "total": 12.5, "items": ["tea", "cake"]}
    assert json.loads(response.model_dump_json())["choices"][0]["message"]["parsed"] == dumped


# --- repair ----------------------------------------------------------------------------------------

def test_an_invalid_answer_is_repaired_once_by_a_follow_up_call(
        make_client: Any, provider: FakeProvider) -> None:
    bad = '{"number": "INV-7", "total": "twelve", "items": ["tea"]}'
    provider.script(WIRE, Reply.ok(bad), Reply.ok(VALID))
    client = make_client(track_usage=True)

    response = client.generate_completion("Invoice for tea", response_format=Invoice, tags=["t"])

    assert parsed(response).total == 12.5
    first, second = provider.requests
    assert second.json["response_format"] == first.json["response_format"]
    assert second.json["messages"][:2] == [{"role": "user", "content": "Invoice for tea"},
                                           {"role": "assistant", "content": bad}]
    assert second.json["messages"][2]["role"] == "user"
    assert "total: Input should be a valid number" in second.json["messages"][2]["content"]
    assert [(r.outcome, r.tags) for r in rows(client)] == [
        ("LLMOutputValidationError", ("t",)), ("ok", ("t",))]
    assert all(r.completion_tokens > 0 and r.cost_usd > 0 for r in rows(client))  # both paid
    assert client.total_cost == pytest.approx(sum(r.cost_usd for r in rows(client)))


def test_an_answer_that_never_validates_raises_with_its_text_and_errors(
        make_client: Any, provider: FakeProvider) -> None:
    provider.script(WIRE, Reply.ok("not json at all"), Reply.ok('{"number": 7, "items": []}'))
    client = make_client(track_usage=True)

    with pytest.raises(LLMOutputValidationError) as caught:
        client.generate_completion("invoice", response_format=Invoice)

    error = caught.value
    assert isinstance(error, LLMResponseError)
    assert error.text == '{"number": 7, "items": []}'  # the last answer
    assert error.errors == ["number: Input should be a valid string", "total: Field required"]
    assert "does not match Invoice (2 tries, max_repairs=1)" in str(error)
    assert error.model == "openai/gpt-4o-mini"
    assert len(provider.requests) == 2
    assert [r.outcome for r in rows(client)] == ["LLMOutputValidationError"] * 2
    copy = pickle.loads(pickle.dumps(error))  # e.g. out of a multiprocessing pool
    assert (copy.text, copy.errors, str(copy)) == (error.text, error.errors, str(error))


@pytest.mark.parametrize("max_repairs", [0, 2])
def test_max_repairs_bounds_the_follow_up_calls(
        make_client: Any, provider: FakeProvider, max_repairs: int) -> None:
    provider.script(WIRE, *[Reply.ok("{}")] * 4)
    with pytest.raises(LLMOutputValidationError, match=f"max_repairs={max_repairs}"):
        make_client(max_repairs=max_repairs).generate_completion("invoice", response_format=Invoice)
    assert len(provider.requests) == max_repairs + 1


# --- refusal -----------------------------------------------------------------------------------------

def test_a_refusal_is_kept_and_nothing_is_parsed_or_repaired(
        make_client: Any, provider: FakeProvider) -> None:
    provider.script(WIRE, Reply.refused("I can't help with that."))
    client = make_client(track_usage=True)

    response = client.generate_completion("invoice", response_format=Invoice)

    message = response.choices[0].message
    assert (message.refusal, message.content, message.parsed) == ("I can't help with that.", None, None)
    assert len(provider.requests) == 1
    assert [r.outcome for r in rows(client)] == ["ok"]


@pytest.mark.parametrize("transport", ["native", "litellm"])
def test_a_streamed_refusal_ends_with_the_refusal_and_nothing_parsed(
        make_client: Any, provider: FakeProvider, transport: str) -> None:
    # The refusal arrives in pieces in delta.refusal (content null): the stream ends as the
    # non-stream answer does, not as an answer that failed validation.
    provider.script(WIRE, Reply.refused("I can't help with that."), Reply.refused("I can't help with that."))
    client = make_client(track_usage=True, transport=transport)
    streamed = client.generate_completion("invoice", response_format=Invoice, stream=True)

    pieces = [c.choices[0].delta.get("refusal") or "" for c in streamed]
    whole = client.generate_completion("invoice", response_format=Invoice)

    # Natively in the pieces sent; through LiteLLM (which drops chunks holding only a
    # refusal) all of it on the chunk that finishes the stream.
    assert "".join(pieces) == "I can't help with that."
    message = streamed.response.choices[0].message
    assert (message.refusal, message.parsed) == ("I can't help with that.", None)
    assert not message.content  # None; LiteLLM's stream_chunk_builder makes it ""
    assert (whole.choices[0].message.refusal, parsed(whole)) == (message.refusal, None)
    assert [r.outcome for r in rows(client)] == ["ok", "ok"]
    assert len(provider.requests) == 2  # nothing repaired


def test_a_streamed_refusal_is_the_callers_from_its_first_piece(
        make_client: Any, provider: FakeProvider) -> None:
    # The refusal is the answer: once a piece of it has been delivered, a failure is raised
    # to the caller, never retried (which would hand them a second, different answer).
    provider.script(WIRE, Reply.refused("I can't help with that.", cut_after=2), Reply.ok(VALID))
    stream = make_client(transport="native").generate_completion(
        "invoice", response_format=Invoice, stream=True)

    pieces = []
    with pytest.raises(LLMServerError, match="broke after"):
        for chunk in stream:
            pieces.append(chunk.choices[0].delta.get("refusal") or "")

    assert "".join(pieces) == "I can't"
    assert len(provider.requests) == 1


@pytest.mark.parametrize("transport", ["native", "litellm"])
def test_an_async_streamed_refusal_ends_with_the_refusal(provider: FakeProvider, transport: str) -> None:
    provider.script(WIRE, Reply.refused("No."))

    async def main() -> Any:
        async with AsyncLiteLLMClient(config=LiteLLMConfig(
                model="openai/gpt-4o-mini", api_base=provider.openai_base, api_key=TEST_KEY,
                transport=transport)) as client:
            stream = await client.generate_completion("invoice", response_format=Invoice, stream=True)
            assert [p async for p in stream.apartials()] == []  # no JSON ever came
            return stream.response.choices[0].message

    message = asyncio.run(main())
    assert (message.refusal, message.parsed) == ("No.", None)


# --- cache ---------------------------------------------------------------------------------------------

def test_a_class_asked_for_again_sends_the_same_schema_and_a_new_class_its_own(
        make_client: Any, provider: FakeProvider) -> None:
    # Two classes of one name, as a reloaded module or a notebook cell run again makes.
    old = create_model("Receipt", number=(str, ...))
    new = create_model("Receipt", number=(str, ...), paid=(bool, ...))
    provider.script(WIRE, Reply.ok('{"number": "1"}'), Reply.ok('{"number": "2"}'),
                    Reply.ok('{"number": "3", "paid": true}'))
    client = make_client()

    first = client.generate_completion("receipt", response_format=old)
    second = client.generate_completion("receipt", response_format=old)
    third = client.generate_completion("receipt", response_format=new)

    sent = [request.json["response_format"]["json_schema"] for request in provider.requests]
    assert sent[0] == sent[1] and sent[0]["schema"]["required"] == ["number"]
    assert sent[2]["name"] == "Receipt" and sent[2]["schema"]["required"] == ["number", "paid"]
    assert (type(parsed(first)), type(parsed(second))) == (old, old)
    assert parsed(third) == new(number="3", paid=True)


def test_a_json_schema_changed_between_calls_is_sent_as_it_now_is(
        make_client: Any, provider: FakeProvider) -> None:
    schema = json.loads(json.dumps(INVOICE_SCHEMA))
    provider.script(WIRE, Reply.ok(VALID), Reply.ok('{"number": "2", "total": 1, "items": [], "paid": 1}'))
    client = make_client(max_repairs=0)

    client.generate_completion("invoice", response_format=schema)
    schema["properties"]["paid"] = {"type": "boolean"}  # validated as it now is, too
    with pytest.raises(LLMOutputValidationError, match="paid: 1 is not of type 'boolean'"):
        client.generate_completion("invoice", response_format=schema)

    sent = [request.json["response_format"]["json_schema"]["schema"] for request in provider.requests]
    assert sent[0]["required"] == ["number", "total", "items"]
    assert sent[1]["required"] == ["number", "total", "items", "paid"]


def test_the_schema_is_part_of_the_cache_key_and_a_hit_is_parsed_again(
        make_client: Any, provider: FakeProvider) -> None:
    class Other(BaseModel):
        number: str

    provider.script(WIRE, Reply.ok(VALID), Reply.ok('{"number": "X"}'))
    client = make_client(cache=True)

    first = client.generate_completion("invoice", response_format=Invoice)
    again = client.generate_completion("invoice", response_format=Invoice)
    other = client.generate_completion("invoice", response_format=Other)

    assert cache_hit(again) is True and cache_hit(other) is False
    assert parsed(again) == parsed(first) and parsed(again) is not parsed(first)
    assert isinstance(parsed(again), Invoice)
    assert parsed(other) == Other(number="X")
    assert len(provider.requests) == 2


def test_an_answer_that_failed_validation_is_never_cached(
        make_client: Any, provider: FakeProvider) -> None:
    provider.script(WIRE, Reply.ok("{}"), Reply.ok(VALID))
    client = make_client(cache=True, max_repairs=0)

    with pytest.raises(LLMOutputValidationError):
        client.generate_completion("invoice", response_format=Invoice)
    answer = client.generate_completion("invoice", response_format=Invoice)

    assert cache_hit(answer) is False and parsed(answer).number == "INV-7"
    assert len(provider.requests) == 2


def test_a_repaired_answer_is_cached_for_the_question_asked(
        make_client: Any, provider: FakeProvider) -> None:
    provider.script(WIRE, Reply.ok("{}"), Reply.ok(VALID))
    client = make_client(cache=True)

    client.generate_completion("invoice", response_format=Invoice)
    hit = client.generate_completion("invoice", response_format=Invoice)

    assert cache_hit(hit) is True and parsed(hit).number == "INV-7"
    assert len(provider.requests) == 2


def test_a_cached_answer_that_no_longer_validates_is_not_returned(
        make_client: Any, provider: FakeProvider) -> None:
    class Strict(BaseModel):  # the same schema as Invoice, a stricter validator
        number: str
        total: float
        items: list[str]

        @field_validator("total")
        @classmethod
        def positive(cls, value: float) -> float:
            if value > 10:
                raise ValueError("too large")
            return value

    Strict.__name__ = "Invoice"  # the schema (and so the cache key) is Invoice's
    provider.script(WIRE, Reply.ok(VALID), Reply.ok('{"number": "S", "total": 1, "items": []}'))
    client = make_client(cache=True)

    client.generate_completion("invoice", response_format=Invoice)
    fresh = client.generate_completion("invoice", response_format=Strict)

    assert cache_hit(fresh) is False
    assert parsed(fresh) == Strict(number="S", total=1, items=[])
    assert provider.requests[0].json["response_format"] == provider.requests[1].json["response_format"]


# --- async and batches ----------------------------------------------------------------------------------

def test_async_client_parses_and_repairs(provider: FakeProvider) -> None:
    provider.script(WIRE, Reply.ok("{}"), Reply.ok(VALID))

    async def main() -> Any:
        async with AsyncLiteLLMClient(config=LiteLLMConfig(
                model="openai/gpt-4o-mini", api_base=provider.openai_base, api_key=TEST_KEY)) as client:
            return await client.generate_completion("invoice", response_format=Invoice)

    assert parsed(asyncio.run(main())).number == "INV-7"
    assert len(provider.requests) == 2


def test_batches_parse_every_answer(make_client: Any, provider: FakeProvider) -> None:
    provider.script(WIRE, *[Reply.ok(f'{{"number": "N{i}", "total": {i}, "items": []}}')
                            for i in range(3)])
    results = make_client().generate_completions(
        ["a", "b", "c"], response_format=Invoice, concurrency=1)
    assert [parsed(r).number for r in results] == ["N0", "N1", "N2"]

    provider.script(WIRE, Reply.ok(VALID), Reply.ok("{}"), Reply.ok("{}"))

    async def main() -> list[Any]:
        async with AsyncLiteLLMClient(config=LiteLLMConfig(
                model="openai/gpt-4o-mini", api_base=provider.openai_base, api_key=TEST_KEY,
                max_repairs=0)) as client:
            return await client.generate_completions(
                ["d", "e"], response_format=Invoice, concurrency=1, return_exceptions=True)

    good, bad = asyncio.run(main())
    assert parsed(good).number == "INV-7"
    assert isinstance(bad, LLMOutputValidationError)


# --- streams -----------------------------------------------------------------------------------------------

def test_a_stream_offers_partials_then_the_validated_object(
        make_client: Any, provider: FakeProvider) -> None:
    provider.script(WIRE, Reply.ok('{"number": "INV 7 of 2026", "total": 12.5, "items": ["tea", "cake"]}'))
    stream = make_client().generate_completion("invoice", response_format=Invoice, stream=True)

    partials = list(stream.partials())

    assert len(partials) > 3
    assert partials[0].number is None
    assert [p.number for p in partials if p.number and p.total is None][:2] == ["INV", "INV 7"]
    assert partials[-1].model_dump() == {"number": "INV 7 of 2026", "total": 12.5, "items": ["tea", "cake"]}
    assert stream.response.choices[0].message.parsed == Invoice(
        number="INV 7 of 2026", total=12.5, items=["tea", "cake"])


def test_a_stream_reads_as_chunks_and_parses_at_the_end(make_client: Any, provider: FakeProvider) -> None:
    provider.script(WIRE, Reply.ok(VALID))
    stream = make_client(cache=True).generate_completion("invoice", response_format=Invoice, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream) == VALID
    assert isinstance(stream.response.choices[0].message.parsed, Invoice)

    replay = make_client(cache=True).generate_completion("invoice", response_format=Invoice, stream=True)
    assert [p.items for p in replay.partials()][-1] == ["tea", "cake"]  # a cache hit, replayed
    assert replay.response.choices[0].message.parsed == parsed(stream.response)
    assert len(provider.requests) == 1


def test_an_invalid_stream_raises_at_its_end_and_is_not_repaired(
        make_client: Any, provider: FakeProvider) -> None:
    provider.script(WIRE, Reply.ok('{"number": "INV-7"}'))
    client = make_client(track_usage=True, cache=True)
    stream = client.generate_completion("invoice", response_format=Invoice, stream=True)

    with pytest.raises(LLMOutputValidationError, match="a stream is not repaired") as caught:
        list(stream)

    assert caught.value.errors == ["total: Field required", "items: Field required"]
    assert len(provider.requests) == 1
    assert [r.outcome for r in rows(client)] == ["LLMOutputValidationError"]
    client.generate_completion("invoice", response_format=Invoice, stream=True).close()
    assert len(provider.requests) == 2  # not cached


def test_async_stream_partials(provider: FakeProvider) -> None:
    provider.script(WIRE, Reply.ok(VALID))

    async def main() -> tuple[list[Any], Any]:
        async with AsyncLiteLLMClient(config=LiteLLMConfig(
                model="openai/gpt-4o-mini", api_base=provider.openai_base, api_key=TEST_KEY)) as client:
            stream = await client.generate_completion("invoice", response_format=Invoice, stream=True)
            return [p async for p in stream.apartials()], stream.response

    partials, response = asyncio.run(main())
    assert partials[-1].number == "INV-7" and parsed(response).items == ["tea", "cake"]


# --- bad input: nothing sent -----------------------------------------------------------------------------

@pytest.mark.parametrize(("response_format", "match"), [
    ({"type": "array", "items": {"type": "string"}}, "does not describe a JSON object"),
    ({"type": "object", "properties": {"a": {"type": 7}}}, "is not a JSON schema"),
    (int, "is not a response format"),
])
def test_a_target_that_cannot_be_a_schema_is_refused_before_sending(
        make_client: Any, provider: FakeProvider, response_format: Any, match: str) -> None:
    with pytest.raises(LLMConfigError, match=match):
        make_client().generate_completion("hi", response_format=response_format)
    assert provider.requests == []


def test_partials_need_a_structured_stream(make_client: Any) -> None:
    stream = make_client().generate_completion("hi", stream=True)
    with pytest.raises(LLMConfigError, match="response_format=SomeModel"):
        next(iter(stream.partials()))
    stream.close()


# --- through LiteLLM ---------------------------------------------------------------------------------------

def test_anthropic_gets_the_schema_as_a_forced_tool_call_through_litellm(provider: FakeProvider) -> None:
    # LiteLLM's translation of the json_schema response format for Anthropic's models: one
    # tool holding the schema, forced; the tool call's arguments come back as the content.
    provider.script("claude-3-5-haiku-20241022",
                    Reply.tool_call("json_tool_call", {"number": "A-1", "total": "3", "items": []}))
    with LiteLLMClient(model="anthropic/claude-3-5-haiku-20241022",
                       api_base=provider.anthropic_base, api_key=TEST_KEY) as client:
        response = client.generate_completion("invoice", response_format=Invoice)

    assert parsed(response) == Invoice(number="A-1", total=3.0, items=[])
    body = provider.requests[0].json
    assert body["tool_choice"] == {"type": "tool", "name": "json_tool_call"}
    [tool] = body["tools"]
    assert tool["input_schema"]["required"] == ["number", "total", "items"]
