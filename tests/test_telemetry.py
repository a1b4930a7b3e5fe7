"""OpenTelemetry traces and metrics, read back with the real SDK's in-memory exporter and reader.

Every client here is given its own tracer and meter provider (the global ones can be set
only once per process), and every call goes over HTTP to the fake provider.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from dewey.llm import (
    AsyncLiteLLMClient,
    LiteLLMClient,
    LiteLLMConfig,
    LLMBadRequestError,
    LLMBudgetExceededError,
    LLMServerError,
)
from tests.conftest import TEST_KEY
from tests.servers.fake_provider import FakeProvider, Reply

CAPTURE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
ROOT = Path(__file__).resolve().parent.parent


def attrs(item: Any) -> dict[str, Any]:
    """A span's or data point's attributes."""
    return dict(item.attributes or {})


@dataclass
class Telemetry:
    """An SDK tracer and meter provider that keep what they are given, in memory."""

    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def spans(self, name_start: str = "") -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name.startswith(name_start)]

    def call(self) -> ReadableSpan:
        """The one call span (``chat ...`` or ``embeddings ...``) finished so far."""
        calls = [s for s in self.exporter.get_finished_spans() if s.kind == SpanKind.CLIENT]
        assert len(calls) == 1, [s.name for s in calls]
        return calls[0]

    def attempts(self, call: ReadableSpan) -> list[ReadableSpan]:
        assert call.context is not None
        return [s for s in self.spans("attempt ") if s.parent is not None
                and s.parent.span_id == call.context.span_id]

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def unit(self, name: str) -> str | None:
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        return metric.unit
        return None


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Telemetry(exporter, reader, tracer_provider, meter_provider)
    tracer_provider.shutdown()
    meter_provider.shutdown()


@pytest.fixture
def traced(provider: FakeProvider, otel: Telemetry) -> Iterator[Callable[..., LiteLLMClient]]:
    """Clients pointed at the fake provider, reporting to ``otel``."""
    clients: list[LiteLLMClient] = []

    def make(**settings: Any) -> LiteLLMClient:
        values: dict[str, Any] = {"model": "openai/gpt-4o-mini", "api_base": provider.openai_base,
                                  "api_key": TEST_KEY, "backoff_base": 0.01, "backoff_max": 0.05}
        client = LiteLLMClient(config=LiteLLMConfig(**{**values, **settings}),
                               tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def test_a_call_is_one_client_span_named_and_described_as_the_genai_conventions_say(
        traced: Callable[..., LiteLLMClient], otel: Telemetry, provider: FakeProvider) -> None:
    client = traced()
    response = client.generate_completion("Hello!", temperature=0.3, max_tokens=20, top_p=0.9)

    call = otel.call()
    attributes = attrs(call)
    assert (call.name, call.kind, call.status.status_code) == ("chat openai/gpt-4o-mini", SpanKind.CLIENT,
                                                              StatusCode.UNSET)
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.request.model"] == "openai/gpt-4o-mini"
    assert (attributes["gen_ai.request.temperature"], attributes["gen_ai.request.max_tokens"],
            attributes["gen_ai.request.top_p"]) == (0.3, 20, 0.9)
    assert attributes["gen_ai.response.model"] == response.model
    assert attributes["gen_ai.response.id"] == response.id
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attributes["gen_ai.usage.input_tokens"] == response.usage.prompt_tokens
    assert attributes["gen_ai.usage.output_tokens"] == response.usage.completion_tokens
    assert attributes["server.address"] == "127.0.0.1"
    assert attributes["server.port"] == provider.port
    assert attributes["dewey.cost_usd"] == pytest.approx(client.completion_cost(response))
    assert attributes["dewey.cost_usd"] > 0
    assert (attributes["dewey.cache_hit"], attributes["dewey.attempts"]) == (False, 1)
    assert "dewey.fallback_model" not in attributes
    assert "error.type" not in attributes
    # Prompt and answer text only when the user opts in.
    assert "gen_ai.input.messages" not in attributes and "gen_ai.output.messages" not in attributes
    [attempt] = otel.attempts(call)
    assert attempt.kind == SpanKind.INTERNAL
    assert attrs(attempt)["dewey.attempt.outcome"] == "ok"


def test_metrics_follow_the_conventions_units_and_buckets(
        traced: Callable[..., LiteLLMClient], otel: Telemetry) -> None:
    client = traced()
    response = client.generate_completion("Hello!")

    [duration] = otel.points("gen_ai.client.operation.duration")
    assert isinstance(duration, HistogramDataPoint)
    assert otel.unit("gen_ai.client.operation.duration") == "s"
    assert list(duration.explicit_bounds) == [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12,
                                              10.24, 20.48, 40.96, 81.92]
    assert duration.count == 1
    assert attrs(duration)["gen_ai.operation.name"] == "chat"
    assert attrs(duration)["gen_ai.provider.name"] == "openai"
    tokens = {point.attributes["gen_ai.token.type"]: point for point in otel.points("gen_ai.client.token.usage")}
    assert otel.unit("gen_ai.client.token.usage") == "{token}"
    assert list(tokens["input"].explicit_bounds)[:3] == [1, 4, 16]
    assert (tokens["input"].sum, tokens["output"].sum) == (response.usage.prompt_tokens,
                                                           response.usage.completion_tokens)
    [cost] = otel.points("dewey.client.cost")
    assert isinstance(cost, NumberDataPoint)
    assert otel.unit("dewey.client.cost") == "USD"
    assert cost.value == pytest.approx(client.completion_cost(response))


def test_a_retried_call_has_one_child_span_per_attempt_with_the_wait_before_it(
        traced: Callable[..., LiteLLMClient], otel: Telemetry, provider: FakeProvider) -> None:
    provider.script("gpt-4o-mini", Reply.error(429, retry_after=0.2), Reply.ok("fine"))
    traced().generate_completion("Hello!")

    call = otel.call()
    assert call.status.status_code == StatusCode.UNSET
    assert attrs(call)["dewey.attempts"] == 2
    first, second = sorted(otel.attempts(call), key=lambda s: s.start_time or 0)
    assert first.status.status_code == StatusCode.ERROR
    assert attrs(first)["error.type"] == "dewey.llm.LLMRateLimitError"
    assert attrs(first)["dewey.attempt.wait_s"] == 0.0
    assert attrs(second)["dewey.attempt.outcome"] == "ok"
    assert attrs(second)["dewey.attempt.number"] == 2
    assert attrs(second)["dewey.attempt.wait_s"] == 0.2  # what the provider asked for
    assert (second.start_time or 0) - (first.end_time or 0) >= 0.2e9


def test_a_fallback_names_the_model_that_answered(
        traced: Callable[..., LiteLLMClient], otel: Telemetry, provider: FakeProvider) -> None:
    provider.script("gpt-4o-mini", Reply.error(503))
    client = traced(max_retries=0, fallback_models=["openai/gpt-4o"])
    response = client.generate_completion("Hello!")

    call = otel.call()
    attributes = attrs(call)
    assert attributes["dewey.fallback_model"] == "openai/gpt-4o"
    assert attributes["gen_ai.request.model"] == "openai/gpt-4o-mini"
    assert attributes["gen_ai.response.model"] == response.model == "gpt-4o"
    assert attributes["dewey.attempts"] == 2
    attempts = sorted(otel.attempts(call), key=lambda s: s.start_time or 0)
    assert [attrs(a)["dewey.attempt.model"] for a in attempts] == ["openai/gpt-4o-mini",
                                                                                "openai/gpt-4o"]
    assert [a.status.status_code for a in attempts] == [StatusCode.ERROR, StatusCode.UNSET]


def test_a_stream_span_ends_when_the_stream_is_read_to_its_end(
        traced: Callable[..., LiteLLMClient], otel: Telemetry) -> None:
    stream = traced().generate_completion("one two three", stream=True)
    assert otel.spans("chat") == []  # still being read
    text = stream.text()

    call = otel.call()
    attributes = attrs(call)
    assert text == "echo: one two three"
    assert attributes["gen_ai.request.stream"] is True
    assert attributes["gen_ai.usage.output_tokens"] > 0
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attributes["gen_ai.response.id"].startswith("chatcmpl-")
    assert attributes["dewey.cost_usd"] == pytest.approx(stream.cost)
    assert 0 < attributes["gen_ai.response.time_to_first_chunk"] < ((call.end_time or 0) - (call.start_time or 0)) / 1e9
    assert (call.end_time or 0) >= max(a.end_time or 0 for a in otel.attempts(call))


def test_with_metrics_only_a_stream_is_measured_once_it_ends(provider: FakeProvider, otel: Telemetry) -> None:
    client = LiteLLMClient(model="openai/gpt-4o-mini", api_base=provider.openai_base, api_key=TEST_KEY,
                           meter_provider=otel.meter_provider)
    stream = client.generate_completion("one two three", stream=True)
    assert otel.points("gen_ai.client.operation.duration") == []
    stream.text()
    client.close()

    [duration] = otel.points("gen_ai.client.operation.duration")
    assert duration.count == 1
    output = [p for p in otel.points("gen_ai.client.token.usage") if attrs(p)["gen_ai.token.type"] == "output"]
    assert [p.sum for p in output] == [stream.response.usage.completion_tokens]
    assert otel.spans() == []


def test_a_stream_closed_before_its_end_ends_its_span_as_abandoned(
        traced: Callable[..., LiteLLMClient], otel: Telemetry) -> None:
    stream = traced().generate_completion("one two three four five", stream=True)
    next(iter(stream))
    assert otel.spans("chat") == []
    stream.close()

    call = otel.call()
    assert call.status.status_code == StatusCode.UNSET  # the caller's choice, not an error
    assert attrs(call)["dewey.outcome"] == "abandoned"
    [attempt] = otel.attempts(call)
    assert attrs(attempt)["dewey.attempt.outcome"] == "abandoned"


def test_a_stream_that_breaks_ends_its_span_with_the_error(
        traced: Callable[..., LiteLLMClient], otel: Telemetry, provider: FakeProvider) -> None:
    provider.script("gpt-4o-mini", Reply.cut_stream(after_chunks=2))
    stream = traced().generate_completion("one two three four five", stream=True)
    with pytest.raises(LLMServerError):
        stream.text()

    call = otel.call()
    assert call.status.status_code == StatusCode.ERROR
    assert attrs(call)["error.type"] == "dewey.llm.LLMServerError"


def test_a_cache_hit_is_a_span_without_attempts_or_tokens(
        traced: Callable[..., LiteLLMClient], otel: Telemetry, provider: FakeProvider) -> None:
    client = traced(cache="memory")
    first = client.generate_completion("Hello!")
    otel.exporter.clear()
    client.generate_completion("Hello!")

    call = otel.call()
    attributes = attrs(call)
    assert len(provider.requests) == 1
    assert (attributes["dewey.cache_hit"], attributes["dewey.attempts"], attributes["dewey.cost_usd"]) == (
        True, 0, 0.0)
    assert attributes["dewey.saved_usd"] == pytest.approx(client.completion_cost(first))
    assert attributes["gen_ai.response.id"] == first.id
    assert "gen_ai.usage.input_tokens" not in attributes  # no tokens were used
    assert otel.attempts(call) == []
    durations = otel.points("gen_ai.client.operation.duration")
    assert sorted((p.attributes["dewey.cache_hit"], p.count) for p in durations) == [(False, 1), (True, 1)]
    input_tokens = [p for p in otel.points("gen_ai.client.token.usage") if p.attributes["gen_ai.token.type"] == "input"]
    assert [p.count for p in input_tokens] == [1]  # the first call only


def test_an_error_sets_error_type_and_the_error_status(
        traced: Callable[..., LiteLLMClient], otel: Telemetry, provider: FakeProvider) -> None:
    provider.script("gpt-4o-mini", Reply.error(400, "bad temperature"))
    with pytest.raises(LLMBadRequestError):
        traced().generate_completion("Hello!")

    call = otel.call()
    assert call.status.status_code == StatusCode.ERROR
    assert "bad temperature" in (call.status.description or "")
    assert attrs(call)["error.type"] == "dewey.llm.LLMBadRequestError"
    [duration] = otel.points("gen_ai.client.operation.duration")
    assert attrs(duration)["error.type"] == "dewey.llm.LLMBadRequestError"
    assert otel.points("gen_ai.client.token.usage") == []


def test_a_budget_refusal_is_a_failed_span_too(
        traced: Callable[..., LiteLLMClient], otel: Telemetry, provider: FakeProvider) -> None:
    client = traced(track_usage=True, usage_db="usage.db", budget={"total_usd": 1e-12})
    client.generate_completion("Hello!")
    otel.exporter.clear()
    with pytest.raises(LLMBudgetExceededError):
        client.generate_completion("Hello!")

    call = otel.call()
    assert call.status.status_code == StatusCode.ERROR
    assert attrs(call)["error.type"] == "dewey.llm.LLMBudgetExceededError"
    assert len(provider.requests) == 1


def test_prompt_and_answer_text_are_recorded_only_when_the_user_opts_in(
        traced: Callable[..., LiteLLMClient], otel: Telemetry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CAPTURE, "true")
    traced().generate_completion([{"role": "system", "content": "Be brief."},
                                  {"role": "user", "content": "secret plans"}])

    attributes = attrs(otel.call())
    assert json.loads(attributes["gen_ai.input.messages"]) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "secret plans"}]}]
    assert json.loads(attributes["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "echo: secret plans"}],
         "finish_reason": "stop"}]


def test_embeddings_are_spans_too_and_a_cached_batch_is_a_hit(
        traced: Callable[..., LiteLLMClient], otel: Telemetry) -> None:
    client = traced(cache="memory", embedding_model="openai/text-embedding-3-small")
    response = client.generate_embedding(["one", "two"])
    call = otel.call()
    attributes = attrs(call)
    assert call.name == "embeddings openai/text-embedding-3-small"
    assert attributes["gen_ai.operation.name"] == "embeddings"
    assert attributes["gen_ai.usage.input_tokens"] == response.usage.prompt_tokens
    assert "gen_ai.usage.output_tokens" not in attributes

    otel.exporter.clear()
    client.generate_embedding(["one", "two"])
    assert (attrs(otel.call())["dewey.cache_hit"], attrs(otel.call())["dewey.attempts"]) == (
        True, 0)


def test_the_async_client_traces_calls_and_streams(provider: FakeProvider, otel: Telemetry) -> None:
    async def main() -> Any:
        client = AsyncLiteLLMClient(model="openai/gpt-4o-mini", api_base=provider.openai_base, api_key=TEST_KEY,
                                    backoff_base=0.01, tracer_provider=otel.tracer_provider)
        await client.generate_completion("Hello!")
        stream = await client.generate_completion("one two", stream=True)
        text = await stream.atext()
        await client.generate_embedding("one")
        return text

    provider.script("gpt-4o-mini", Reply.error(500), Reply.ok())
    assert asyncio.run(main()) == "echo: one two"
    calls = [s for s in otel.spans() if s.kind == SpanKind.CLIENT]
    assert [(c.name, attrs(c)["dewey.attempts"]) for c in calls] == [
        ("chat openai/gpt-4o-mini", 2), ("chat openai/gpt-4o-mini", 1), ("embeddings text-embedding-3-small", 1)]
    assert all(len(otel.attempts(c)) == attrs(c)["dewey.attempts"] for c in calls)


def test_calls_are_children_of_the_callers_span_in_batches_too(
        traced: Callable[..., LiteLLMClient], otel: Telemetry) -> None:
    client = traced()
    with otel.tracer_provider.get_tracer("app").start_as_current_span("job") as job:
        client.generate_completion("one")
        client.generate_completions(["two", "three", "four"], concurrency=3)

    calls = [s for s in otel.spans() if s.kind == SpanKind.CLIENT]
    assert len(calls) == 4
    assert all(c.parent is not None and c.parent.span_id == job.get_span_context().span_id for c in calls)


def test_without_a_configured_provider_nothing_is_recorded(provider: FakeProvider, otel: Telemetry) -> None:
    """The global providers are the API's defaults here: the client records nothing (and
    the in-memory provider, never given to it, receives nothing)."""
    client = LiteLLMClient(model="openai/gpt-4o-mini", api_base=provider.openai_base, api_key=TEST_KEY)
    assert client.generate_completion("Hello!").choices[0].message.content == "echo: Hello!"
    stream = client.generate_completion("Hello!", stream=True)
    assert stream.text() == "echo: Hello!"
    client.close()
    assert otel.spans() == [] and otel.points("gen_ai.client.operation.duration") == []


def test_without_opentelemetry_installed_calls_work(provider: FakeProvider, tmp_path: Path) -> None:
    """With ``opentelemetry`` not importable, a call works and nothing tries to import it."""
    script = textwrap.dedent(f"""
        import sys
        sys.modules["opentelemetry"] = None  # as if not installed: importing it raises ImportError
        from dewey.llm import LiteLLMClient
        client = LiteLLMClient(model="openai/gpt-4o-mini", api_base={provider.openai_base!r}, api_key="{TEST_KEY}")
        print(client.generate_completion("Hello!").choices[0].message.content)
        print(client.generate_completion("Hello!", stream=True).text())
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{ROOT / 'src'}",
                                 "LITELLM_LOCAL_MODEL_COST_MAP": "True", "HOME": str(tmp_path)}, check=False)
    assert (result.returncode, result.stdout) == (0, "echo: Hello!\necho: Hello!\n"), result.stderr
