"""The transport seam: a transport of its own, speaking OpenAI's wire format with httpx over
real HTTP to the fake provider, gets everything the client adds on top of the I/O (retries,
streams read up to their first token, prices from the catalog, the ledger) unchanged."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from dewey.llm import LiteLLMClient, LiteLLMConfig, LLMBadRequestError, LLMError, LLMServerError
from dewey.llm._response import ResponseData
from dewey.llm._usage import UsageRecord, open_ledger
from tests.conftest import TEST_KEY
from tests.servers.fake_provider import FakeProvider, Reply


class WireTransport:
    """A small transport: OpenAI's chat API through httpx, errors mapped by status."""

    name = "wire"

    def __init__(self) -> None:
        self.calls = 0

    def _post(self, kwargs: dict[str, Any], client: httpx.Client) -> httpx.Request:
        self.calls += 1
        body = {k: v for k, v in kwargs.items()
                if k not in ("api_key", "api_base", "api_version", "timeout", "max_retries")}
        body["model"] = str(body["model"]).removeprefix("openai/")
        return client.build_request("POST", f"{kwargs['api_base']}/chat/completions", json=body,
                                    headers={"Authorization": f"Bearer {kwargs['api_key']}"})

    def complete(self, kwargs: dict[str, Any]) -> Any:
        with httpx.Client(timeout=kwargs["timeout"]) as client:
            response = client.send(self._post(kwargs, client))
        _raise_for(response, kwargs["model"])
        return ResponseData(response.json())

    def stream(self, kwargs: dict[str, Any]) -> Iterator[Any]:
        client = httpx.Client(timeout=kwargs["timeout"])
        response = client.send(self._post({**kwargs, "stream": True}, client), stream=True)
        if response.status_code >= 400:
            response.read()
            client.close()
            _raise_for(response, kwargs["model"])

        def chunks() -> Iterator[Any]:
            try:
                for line in response.iter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        yield ResponseData(json.loads(line.removeprefix("data: ")))
            finally:
                response.close()
                client.close()

        return chunks()

    def embed(self, kwargs: dict[str, Any]) -> Any:
        raise LLMBadRequestError("this transport does not embed", model=kwargs["model"])

    async def acomplete(self, kwargs: dict[str, Any]) -> Any:
        return self.complete(kwargs)

    async def astream(self, kwargs: dict[str, Any]) -> AsyncIterator[Any]:
        raise LLMBadRequestError("this transport streams only synchronously", model=kwargs["model"])

    async def aembed(self, kwargs: dict[str, Any]) -> Any:
        return self.embed(kwargs)

    def assemble(self, chunks: list[Any], messages: list[dict[str, Any]]) -> Any:
        text = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c["choices"])
        return ResponseData({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
                             "usage": next((c["usage"] for c in reversed(chunks) if c.get("usage")), None)})


def _raise_for(response: httpx.Response, model: str) -> None:
    if response.status_code >= 500:
        raise LLMServerError(f"{model}: {response.text}", model=model, status_code=response.status_code)
    if response.status_code >= 400:
        raise LLMBadRequestError(f"{model}: {response.text}", model=model, status_code=response.status_code)


@pytest.fixture
def wire_client(provider: FakeProvider) -> Iterator[tuple[LiteLLMClient, WireTransport]]:
    transport = WireTransport()
    config = LiteLLMConfig(model="openai/gpt-4o-mini", api_base=provider.openai_base, api_key=TEST_KEY,
                           backoff_base=0.01, backoff_max=0.05)
    with LiteLLMClient(config=config, transport=transport) as client:
        yield client, transport


def rows(client: LiteLLMClient) -> list[UsageRecord]:
    client.close()  # flushes the ledger
    with open_ledger(client.config.usage_db) as ledger:
        return list(reversed(ledger.records()))


def test_a_transport_of_its_own_is_retried_priced_and_recorded(
        wire_client: tuple[LiteLLMClient, WireTransport], provider: FakeProvider) -> None:
    client, transport = wire_client
    provider.script("gpt-4o-mini", Reply.error(503), Reply.ok("fine", prompt_tokens=100, completion_tokens=10))
    response = client.generate_completion("hi")
    assert response.choices[0].message.content == "fine"
    assert transport.calls == 2 and len(provider.requests) == 2  # the 503 was retried by the client
    details = client.get_model_details("gpt-4o-mini")
    expected = 100 * details["input_cost_per_token"] + 10 * details["output_cost_per_token"]
    assert client.completion_cost(response) == pytest.approx(expected, rel=1e-12)
    assert [(r.outcome, r.status_code) for r in rows(client)] == [("LLMServerError", 503), ("ok", None)]


def test_a_transport_of_its_own_streams_with_usage_asked_for(
        wire_client: tuple[LiteLLMClient, WireTransport], provider: FakeProvider) -> None:
    client, _ = wire_client
    provider.script("gpt-4o-mini", Reply.error(500), Reply.ok("three little words", prompt_tokens=7,
                                                              completion_tokens=3))
    stream = client.generate_completion("hi", stream=True)
    assert stream.text() == "three little words"
    body = provider.requests[-1].body
    assert body is not None and body["stream_options"] == {"include_usage": True}
    assert client.completion_cost(stream) > 0
    assert [r.outcome for r in rows(client)] == ["LLMServerError", "ok"]


def test_what_a_transport_refuses_is_not_retried(wire_client: tuple[LiteLLMClient, WireTransport]) -> None:
    client, transport = wire_client
    with pytest.raises(LLMError, match="does not embed"):
        client.generate_embedding("hi", model="text-embedding-3-small")
    assert transport.calls == 0
