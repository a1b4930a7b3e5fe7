"""Provider conformance: the same eleven behaviours for every wire format LiteLLM speaks
that users mostly call, through ``LiteLLMClient`` and real HTTP to
:class:`~tests.servers.wire_formats.WireProvider`.

:data:`PROVIDERS` says, per provider, which cells do not apply (``na``, with the reason)
and which LiteLLM still gets wrong (``xfail``, strict, with the cause).  The same table
writes docs/providers.md (``python -m tests.providers_matrix``), and a test checks the
file is current: a cell that starts failing fails the suite, so the page cannot claim it.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from dewey.llm import (
    LiteLLMClient,
    LiteLLMConfig,
    LLMAuthenticationError,
    LLMBadRequestError,
    LLMContextWindowError,
    LLMRateLimitError,
    LLMResponseError,
    LLMServerError,
)
from dewey.llm._usage import UsageRecord, open_ledger
from tests.servers.fake_provider import Reply, _embedding
from tests.servers.wire_formats import WireProvider

BAD_KEY = "bad-key-5f4dcc3b5aa765d61d8327deb882cf99"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "AKIAFAKEFAKEFAKE0000", "AWS_SECRET_ACCESS_KEY": "fake-secret-0123456789",
           "AWS_REGION_NAME": "us-east-1"}

# The behaviours, in the order of the matrix: (id, heading in docs/providers.md).
CELLS: tuple[tuple[str, str], ...] = (
    ("text", "completion text"),
    ("stream", "README stream loop"),
    ("tools", "tool call round trip"),
    ("embeddings", "embeddings"),
    ("usage", "usage and cost in the ledger"),
    ("bad_key", "bad key: LLMAuthenticationError naming the variable"),
    ("rate_limit", "rate limit: retry_after from the provider, honoured"),
    ("server_error", "server error: retried, then fallback"),
    ("context_window", "prompt too long: LLMContextWindowError, larger model"),
    ("malformed", "malformed body: LLMResponseError"),
    ("cut_stream", "stream cut: LLMServerError, no repeated text"),
)


@dataclass(frozen=True)
class Spec:
    """One provider: its models, how to reach it, and the cells that differ."""

    name: str
    title: str
    model: str  # priced in LiteLLM's map
    small: str  # a smaller context window than ``large``
    large: str
    base: str  # WireProvider.base() name
    key_variable: str  # what the user sets
    retry_hint: str | None  # how the provider says how long to wait, None if it does not
    embed_model: str | None = None
    embed_base: str | None = None
    api_version: str | None = None
    endpoint: str = ""  # the real endpoint, for docs
    auth_status: int = 401  # what the provider answers to a wrong key
    overloaded_status: int = 503  # what it answers when it cannot serve now
    na: dict[str, str] = field(default_factory=dict)
    xfail: dict[str, str] = field(default_factory=dict)
    transport: str = "auto"  # the setting: auto sends openai/ natively, the rest through LiteLLM

    def server_name(self, model: str) -> str:
        """The model as the provider's request names it (what scripts key on)."""
        return model.removeprefix("bedrock/converse/") if model.startswith("bedrock/") else model.split("/", 1)[1]


PROVIDERS: tuple[Spec, ...] = (
    Spec("openai", "OpenAI (native transport)", "openai/gpt-4o-mini", "openai/gpt-4", "openai/gpt-4o",
         "openai", "OPENAI_API_KEY", "`retry-after` / `retry-after-ms` headers",
         embed_model="openai/text-embedding-3-small", endpoint="`https://api.openai.com/v1`"),
    # The same wire through LiteLLM: what `transport: litellm` (or a model LiteLLM rewrites) takes.
    Spec("openai-litellm", "OpenAI (through LiteLLM)", "openai/gpt-4o-mini", "openai/gpt-4",
         "openai/gpt-4o", "openai", "OPENAI_API_KEY", "`retry-after` / `retry-after-ms` headers",
         embed_model="openai/text-embedding-3-small", endpoint="`https://api.openai.com/v1`",
         transport="litellm"),
    Spec("anthropic", "Anthropic", "anthropic/claude-haiku-4-5", "anthropic/claude-haiku-4-5",
         "anthropic/claude-sonnet-4-6", "anthropic", "ANTHROPIC_API_KEY", "`retry-after` header",
         endpoint="`https://api.anthropic.com`", overloaded_status=529,
         na={"embeddings": "Anthropic has no embeddings API"}),
    Spec("groq", "Groq", "groq/openai/gpt-oss-20b", "groq/meta-llama/llama-prompt-guard-2-86m",
         "groq/openai/gpt-oss-20b", "groq", "GROQ_API_KEY", "`retry-after` header",
         endpoint="`https://api.groq.com/openai/v1`",
         na={"embeddings": "Groq has no embeddings API"}),
    Spec("mistral", "Mistral", "mistral/mistral-small-latest", "mistral/voxtral-small-latest",
         "mistral/mistral-small-latest", "mistral", "MISTRAL_API_KEY", None,
         embed_model="mistral/mistral-embed", endpoint="`https://api.mistral.ai/v1`"),
    Spec("azure", "Azure OpenAI", "azure/gpt-4o-mini", "azure/gpt-3.5-turbo", "azure/gpt-4o-mini",
         "azure", "AZURE_API_KEY", "`retry-after` / `retry-after-ms` headers",
         embed_model="azure/text-embedding-3-small", api_version="2024-10-21",
         endpoint="`https://<resource>.openai.azure.com`, and `api_version`"),
    Spec("ollama", "Ollama", "ollama_chat/llama3.1", "ollama_chat/llama3.1", "ollama_chat/qwen2.5",
         "ollama", "", None, embed_model="ollama/nomic-embed-text", endpoint="`http://localhost:11434`",
         na={"bad_key": "a local Ollama takes no key",
             "rate_limit": "Ollama does not rate-limit; a full queue answers 503, a server error",
             "context_window": "Ollama truncates a long prompt to num_ctx instead of refusing it"}),
    Spec("gemini", "Google Gemini", "gemini/gemini-2.5-flash", "gemini/gemma-3-27b-it",
         "gemini/gemini-2.5-flash", "gemini", "GEMINI_API_KEY", "`RetryInfo.retryDelay` in the error body",
         embed_model="gemini/gemini-embedding-001", auth_status=400,
         endpoint="`https://generativelanguage.googleapis.com/v1beta`"),
    Spec("cohere", "Cohere", "cohere_chat/command-r-08-2024", "cohere_chat/command-r-08-2024",
         "cohere_chat/command-a-03-2025", "cohere", "COHERE_API_KEY", None,
         embed_model="cohere/embed-english-v3.0", embed_base="cohere_embed",
         endpoint=("the full URL: `https://api.cohere.com/v2/chat`; "
                  "embeddings `https://api.cohere.com/v1/embed`"),
         xfail={"usage": "LiteLLM's CohereV2ModelResponseIterator looks for the stream's usage "
                         "under chunk['event'] == 'message-end' / chunk['data'], but Cohere sends "
                         "{'type': 'message-end', 'delta': {...}}: a stream's usage is lost and "
                         "LiteLLM's own token estimate is charged instead"}),
    Spec("bedrock", "AWS Bedrock (Converse)", "bedrock/converse/amazon.nova-lite-v1:0",
         "bedrock/converse/meta.llama3-8b-instruct-v1:0", "bedrock/converse/amazon.nova-lite-v1:0",
         "bedrock", "AWS_ACCESS_KEY_ID", None, endpoint="`https://bedrock-runtime.<region>.amazonaws.com`",
         auth_status=403,
         na={"embeddings": "Converse has no embeddings (Titan embeddings use InvokeModel)"}),
)


def cells(cell: str) -> list[Any]:
    """``pytest.param`` per provider for ``cell``: n/a providers left out (the matrix says
    why), known LiteLLM faults marked ``xfail(strict=True)`` with their cause."""
    params = []
    for spec in PROVIDERS:
        if cell in spec.na:
            continue
        marks = [pytest.mark.xfail(strict=True, reason=spec.xfail[cell])] if cell in spec.xfail else []
        params.append(pytest.param(spec, id=spec.name, marks=marks))
    return params


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def wire_session() -> Iterator[WireProvider]:
    with WireProvider() as server:
        yield server


@pytest.fixture
def server(wire_session: WireProvider, monkeypatch: pytest.MonkeyPatch) -> WireProvider:
    wire_session.reset()
    for name, value in AWS_ENV.items():  # Bedrock signs with these; the server ignores them
        monkeypatch.setenv(name, value)
    return wire_session


@pytest.fixture
def connect(server: WireProvider) -> Iterator[Callable[..., LiteLLMClient]]:
    """``connect(spec, **settings)``: a client for ``spec`` pointed at the server."""
    clients: list[LiteLLMClient] = []

    def make(spec: Spec, **settings: Any) -> LiteLLMClient:
        values: dict[str, Any] = {"model": spec.model, "api_base": server.base(spec.base),
                                  "backoff_base": 0.01, "backoff_max": 0.05, "max_retries": 1,
                                  "transport": spec.transport}
        if spec.name != "bedrock" and spec.key_variable:
            values["api_key"] = f"test-key-{spec.name}-0123456789"
        if spec.api_version:
            values["api_version"] = spec.api_version
        values.update(settings)
        client = LiteLLMClient(config=LiteLLMConfig(**values))
        clients.append(client)
        # The row's cells run on the transport its title names: native for openai/ under auto.
        assert client.transports(spec.model)[spec.model] == ("native" if spec.name == "openai" else "litellm")
        return client

    yield make
    for client in clients:
        client.close()


def gaps(server: WireProvider) -> list[float]:
    times = [r.time for r in server.requests]
    return [b - a for a, b in itertools.pairwise(times)]


def get_weather(location: str) -> str:  # noqa: ARG001 - its signature is the tool schema under test
    """Get the current weather for a location.

    :param location: City and country, e.g. Paris, France
    """
    return "sunny, 21C"


# --------------------------------------------------------------------------- the cells


@pytest.mark.parametrize("spec", cells("text"))
def test_text(spec: Spec, connect: Any, server: WireProvider) -> None:
    response = connect(spec).generate_completion("hello there")
    assert response.choices[0].message.content == "echo: hello there"
    assert [r.model for r in server.requests] == [spec.server_name(spec.model)]


@pytest.mark.parametrize("spec", cells("stream"))
def test_stream(spec: Spec, connect: Any, server: WireProvider, capsys: pytest.CaptureFixture[str]) -> None:
    client = connect(spec)
    messages = [{"role": "user", "content": "stream three words"}]
    for chunk in client.generate_completion(messages, stream=True):  # the README's loop
        print(chunk.choices[0].delta.content)
    printed = [line for line in capsys.readouterr().out.splitlines() if line != "None"]
    assert "".join(printed) == "echo: stream three words"
    assert len(printed) > 1  # it did stream
    assert [r.stream for r in server.requests] == [True]


@pytest.mark.parametrize("spec", cells("tools"))
def test_tools(spec: Spec, connect: Any, server: WireProvider) -> None:
    name = spec.server_name(spec.model)
    server.script(name, Reply.tool_call("get_weather", {"location": "Paris, France"}, call_id="call_w1"),
                  Reply.ok("It is sunny in Paris."))
    client = connect(spec)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.generate_completion(messages, tools=[get_weather])
    [call] = first.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris, France"}
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "name": "get_weather",
                  "content": get_weather("Paris, France")}]
    answer = client.generate_completion(messages, tools=[get_weather])
    assert answer.choices[0].message.content == "It is sunny in Paris."
    sent = json.dumps(server.requests[-1].body)
    assert "sunny, 21C" in sent and "get_weather" in sent  # the tool result reached the provider


@pytest.mark.parametrize("spec", [p for p in cells("embeddings") if p.values[0].embed_model])
def test_embeddings(spec: Spec, connect: Any, server: WireProvider) -> None:
    assert spec.embed_model is not None
    client = connect(spec, model=spec.embed_model, api_base=server.base(spec.embed_base or spec.base))
    vectors = client.generate_embeddings(["first text", "second"], spec.embed_model)
    assert len(vectors) == 2
    assert list(vectors[0]) == pytest.approx(_embedding("first text"), abs=1e-6)
    assert list(vectors[1]) == pytest.approx(_embedding("second"), abs=1e-6)
    assert [r.model for r in server.requests] == [spec.server_name(spec.embed_model)]


@pytest.mark.parametrize("spec", cells("usage"))
def test_usage(spec: Spec, connect: Any, server: WireProvider) -> None:
    server.script(spec.server_name(spec.model),
                  Reply.ok("x", prompt_tokens=1000, completion_tokens=500),
                  Reply.ok("a b c d", prompt_tokens=300, completion_tokens=40))
    client = connect(spec)
    # Ollama runs locally for free: LiteLLM prices its models at 0 (ollama/llama3.1).
    details = client.get_model_details(spec.model if spec.name != "ollama" else "ollama/llama3.1")
    price = [p * details["input_cost_per_token"] + c * details.get("output_cost_per_token", 0.0)
             for p, c in ((1000, 500), (300, 40))]
    assert spec.name == "ollama" or price[0] > 0  # a priced model (Ollama is free)
    client.generate_completion("hi")
    "".join(c.choices[0].delta.content or "" for c in client.generate_completion("hi", stream=True)
            if c.choices)
    assert [(r.prompt_tokens, r.completion_tokens) for r in rows(client)] == [(1000, 500), (300, 40)]
    assert [r.cost_usd for r in rows(client)] == pytest.approx(price, rel=1e-9)
    assert client.total_cost == pytest.approx(sum(price), rel=1e-9)


def rows(client: LiteLLMClient) -> list[UsageRecord]:
    client._ledger.flush()  # noqa: SLF001 - the client has no public flush; records are written in the background
    with open_ledger(client.config.usage_db) as ledger:
        return list(reversed(ledger.records()))


@pytest.mark.parametrize("spec", cells("bad_key"))
def test_bad_key(spec: Spec, connect: Any, server: WireProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(spec.key_variable, BAD_KEY)
    server.script(spec.server_name(spec.model), Reply.error(401), Reply.error(401))
    with pytest.raises(LLMAuthenticationError) as caught:
        connect(spec, api_key=None).generate_completion("hi")
    error = caught.value
    assert spec.key_variable in str(error)
    assert error.status_code == spec.auth_status  # the provider's own status
    assert error.provider == spec.model.split("/", 1)[0]  # the provider the user named
    assert "litellm." not in error.message and "b'" not in error.message  # the provider's words
    assert BAD_KEY not in repr(error) + str(error) + str(error.__cause__)
    assert len(server.requests) == 1  # a refused key is not retried


@pytest.mark.parametrize("spec", cells("rate_limit"))
def test_rate_limit(spec: Spec, connect: Any, server: WireProvider) -> None:
    name = spec.server_name(spec.model)
    for stream in (False, True):
        server.script(name, Reply.error(429, retry_after=1))
        with pytest.raises(LLMRateLimitError) as caught:
            list(connect(spec, max_retries=0).generate_completion("hi", stream=stream)) if stream else (
                connect(spec, max_retries=0).generate_completion("hi"))
        assert caught.value.retry_after == (1.0 if spec.retry_hint else None)
        assert caught.value.status_code == 429
        message = caught.value.message  # the provider's words, not LiteLLM's wrapping
        assert "litellm." not in message and "Exception - " not in message and "b'" not in message

    server.reset()
    server.script(name, Reply.error(429, retry_after=1), Reply.ok("after the wait"))
    response = connect(spec, max_retries=1).generate_completion("hi")
    assert response.choices[0].message.content == "after the wait"
    [gap] = gaps(server)
    if spec.retry_hint:
        assert 0.95 <= gap < 2.0  # the provider's hint, by the server's clock
    else:
        assert gap < 0.9  # no hint: our own short backoff


@pytest.mark.parametrize("spec", cells("server_error"))
def test_server_error(spec: Spec, connect: Any, server: WireProvider) -> None:
    other = spec.large if spec.large != spec.model else spec.small
    primary, fallback = spec.server_name(spec.model), spec.server_name(other)
    server.script(primary, Reply.error(spec.overloaded_status), Reply.error(500))
    client = connect(spec, max_retries=1, fallback_models=[other])
    response = client.generate_completion("hi")
    assert response.choices[0].message.content == "echo: hi"
    # LiteLLM's logging thread may also ask Ollama's /api/show for the model's facts, when
    # it gets to it: that lookup is not an attempt.
    attempts = [r.model for r in server.requests if not r.path.endswith("/api/show")]
    assert attempts == [primary, primary, fallback]
    # the ledger keeps each failed attempt with the status the provider sent
    assert [(r.outcome, r.status_code) for r in rows(client)] == [
        ("LLMServerError", spec.overloaded_status), ("LLMServerError", 500), ("ok", None)]


@pytest.mark.parametrize("spec", cells("context_window"))
def test_context_window(spec: Spec, connect: Any, server: WireProvider) -> None:
    small, large = spec.server_name(spec.small), spec.server_name(spec.large)
    server.script(small, Reply.context_window(), Reply.context_window())
    with pytest.raises(LLMContextWindowError):
        connect(spec, model=spec.small).generate_completion("a very long prompt")
    assert len(server.requests) == 1

    server.reset()
    server.script(small, Reply.context_window())
    response = connect(spec, model=spec.small, fallback_models=[spec.large]).generate_completion("long")
    assert response.choices[0].message.content == "echo: long"
    assert [r.model for r in server.requests] == [small, large]


@pytest.mark.parametrize("spec", cells("malformed"))
def test_malformed(spec: Spec, connect: Any, server: WireProvider) -> None:
    server.script(spec.server_name(spec.model), Reply.malformed())
    with pytest.raises(LLMResponseError):
        connect(spec, max_retries=0).generate_completion("hi")


@pytest.mark.parametrize("spec", cells("cut_stream"))
def test_cut_stream(spec: Spec, connect: Any, server: WireProvider) -> None:
    server.script(spec.server_name(spec.model), Reply.cut_stream(after_chunks=2))
    texts: list[str] = []
    with pytest.raises(LLMServerError):
        for chunk in connect(spec).generate_completion("hi", stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                texts.append(chunk.choices[0].delta.content)
    assert "".join(texts) == "part0 part1"  # what was sent, once
    assert len(server.requests) == 1  # text already shown is never asked for again


def test_providers_page_is_current() -> None:
    from tests.providers_matrix import PAGE, render

    assert PAGE.read_text(encoding="utf-8") == render(), "run: python -m tests.providers_matrix"


# --------------------------------------------------------------------------- beyond the matrix


def test_a_plain_text_error_body_keeps_the_providers_words(server: WireProvider) -> None:
    server.script("free-model", Reply.error(429, "Rate limit exceeded: free-models-per-min."))
    config = LiteLLMConfig(model="openai/free-model", api_base=server.base("plaintext"),
                           api_key="sk-test-0123456789", max_retries=0)
    with LiteLLMClient(config=config) as client, pytest.raises(LLMRateLimitError) as caught:
        client.generate_completion("hi")
    assert caught.value.message == "openai/free-model: Rate limit exceeded: free-models-per-min."


def test_an_azure_content_filter_refusal_is_a_bad_request_in_azures_words(
        connect: Any, server: WireProvider) -> None:
    [azure] = [spec for spec in PROVIDERS if spec.name == "azure"]
    server.script("gpt-4o-mini", Reply.error(400, code="content_filter"))
    with pytest.raises(LLMBadRequestError) as caught:
        connect(azure, max_retries=2, fallback_models=["azure/gpt-4o"]).generate_completion("hi")
    assert "content management policy" in caught.value.message
    assert caught.value.status_code == 400
    assert [r.model for r in server.requests] == ["gpt-4o-mini"]  # neither retried nor sent elsewhere


@pytest.mark.parametrize("reply", [Reply.ok("all of it"), Reply.tool_call("get_weather", {"location": "Oslo"})],
                         ids=["text", "tool_call"])
def test_a_stream_that_ends_with_done_but_no_finish_reason_is_a_success(
        server: WireProvider, reply: Reply) -> None:
    server.script("gateway-model", reply)
    config = LiteLLMConfig(model="openai/gateway-model", api_base=server.base("nofinish"),
                           api_key="sk-test-0123456789", max_retries=0)
    with LiteLLMClient(config=config) as client:
        chunks = list(client.generate_completion("hi", stream=True, tools=[get_weather]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    arguments = "".join(call.function.arguments or "" for c in chunks if c.choices
                        for call in c.choices[0].delta.tool_calls or [])
    assert (text, arguments) == (("all of it", "") if reply.kind == "ok" else ("", '{"location": "Oslo"}'))
