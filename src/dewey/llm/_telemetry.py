"""OpenTelemetry traces and metrics of each call, as the GenAI semantic conventions name them.

Everything OpenTelemetry-specific lives here.  :func:`open_telemetry` decides once per
client whether there is anything to do: OpenTelemetry importable, and a tracer or meter
provider given to the client or set globally before the client was made.  Otherwise it
returns None, a call's ``Request.trace`` stays None and the hooks cost one ``is None`` test.

A call is one span, ``chat {model}`` or ``embeddings {model}`` (kind CLIENT), covering
every retry and fallback; each attempt is a child span (kind INTERNAL, so that a backend
counting GenAI client spans counts the call once) with its outcome and the wait before
it.  A streamed call's span ends when the stream ends, breaks or is abandoned.  Metrics:
``gen_ai.client.operation.duration`` and ``gen_ai.client.token.usage`` histograms and a
``dewey.client.cost`` counter.  Prompt and answer text are recorded only when
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` is true, as the conventions ask.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._exceptions import LLMConfigError
from ._providers import qualify_model
from ._response import usage_counts

if TYPE_CHECKING:
    from ._catalog import Catalog
    from ._request import Request
    from ._resilience import RetryPlan, Step

__all__ = ["CAPTURE_CONTENT_VARIABLE", "CallTrace", "Instruments", "Telemetry", "finishing", "guarded",
           "open_telemetry"]

CAPTURE_CONTENT_VARIABLE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_SCOPE = "dewey.llm"
# The conventions' bucket advice for the two histograms.
_TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
_DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
# LiteLLM's provider names that the conventions spell differently (gen_ai.provider.name).
_PROVIDER_NAMES = {"gemini": "gcp.gemini", "vertex_ai": "gcp.vertex_ai", "bedrock": "aws.bedrock",
                   "mistral": "mistral_ai", "azure": "azure.ai.openai", "azure_ai": "azure.ai.inference",
                   "xai": "x_ai", "watsonx": "ibm.watsonx.ai", "moonshot": "moonshot_ai"}
_REQUEST_ATTRIBUTES = {"temperature": "gen_ai.request.temperature", "top_p": "gen_ai.request.top_p",
                       "top_k": "gen_ai.request.top_k", "max_tokens": "gen_ai.request.max_tokens",
                       "max_completion_tokens": "gen_ai.request.max_tokens",
                       "frequency_penalty": "gen_ai.request.frequency_penalty",
                       "presence_penalty": "gen_ai.request.presence_penalty",
                       "seed": "gen_ai.request.seed", "n": "gen_ai.request.choice.count",
                       "stop": "gen_ai.request.stop_sequences"}
_TRUE = {"true", "1", "yes", "span_only", "span_and_event"}


def open_telemetry(tracer_provider: Any, meter_provider: Any, catalog: Catalog) -> Telemetry | None:
    """The client's telemetry, or None when there is nothing to report to."""
    # A global provider can only have been set by code that imported OpenTelemetry: when
    # nobody has, we need not import it (tens of milliseconds) to find out.
    if tracer_provider is None and meter_provider is None and "opentelemetry.trace" not in sys.modules \
            and "opentelemetry.metrics" not in sys.modules:
        return None
    try:
        from opentelemetry import metrics, trace
    except ImportError:
        if tracer_provider is None and meter_provider is None:
            return None
        raise LLMConfigError("tracer_provider= and meter_provider= need OpenTelemetry: "
                             "pip install 'dewey-llm[otel]'") from None
    if tracer_provider is None and meter_provider is None:
        tracer_provider = _configured(trace.get_tracer_provider())
        meter_provider = _configured(metrics.get_meter_provider())
        if tracer_provider is None and meter_provider is None:
            return None
    tracer = tracer_provider.get_tracer(_SCOPE) if tracer_provider is not None else None
    instruments = Instruments(meter_provider.get_meter(_SCOPE)) if meter_provider is not None else None
    capture = os.environ.get(CAPTURE_CONTENT_VARIABLE, "").strip().lower() in _TRUE
    return Telemetry(tracer, instruments, catalog, capture_content=capture)


def _configured(provider: Any) -> Any:
    """``provider``, unless it is the API's default that records nothing (no-op, or the
    proxy standing in until a provider is set)."""
    name = type(provider).__name__
    return None if "NoOp" in name or "Proxy" in name else provider


class Instruments:
    """The three metrics a client records, made once from its meter."""

    def __init__(self, meter: Any) -> None:
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS)
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS)
        self.cost = meter.create_counter("dewey.client.cost", unit="USD",
                                         description="What the calls cost, in US dollars.")

    def record(self, attributes: dict[str, Any], seconds: float, cache_hit: bool,
               tokens: tuple[int, ...] | None, output: bool, cost: float) -> None:
        """One call's measurements (``output``: whether the operation has output tokens)."""
        # A cache hit takes microseconds: a series of its own keeps call latencies apart.
        self.duration.record(seconds, {**attributes, "dewey.cache_hit": cache_hit})
        if tokens is not None and (tokens[0] or tokens[1]):
            self.tokens.record(tokens[0], {**attributes, "gen_ai.token.type": "input"})
            if output:
                self.tokens.record(tokens[1], {**attributes, "gen_ai.token.type": "output"})
        if cost:
            self.cost.add(cost, attributes)


class Telemetry:
    """A client's tracer and instruments; starts a :class:`CallTrace` per call."""

    def __init__(self, tracer: Any, instruments: Instruments | None, catalog: Catalog, *,
                 capture_content: bool = False) -> None:
        from opentelemetry import trace

        self.tracer, self.instruments, self.catalog = tracer, instruments, catalog
        self.capture_content = capture_content
        self.api = trace  # imported once here, not in every call

    def start(self, request: Request) -> CallTrace:
        return CallTrace(self, request)

    def provider(self, model: str) -> str:
        """``gen_ai.provider.name`` for ``model``: LiteLLM's provider, spelled as the conventions do."""
        qualified = qualify_model(model)
        name = qualified.split("/", 1)[0] if "/" in qualified else self.catalog.provider(model)
        return _PROVIDER_NAMES.get(name or "", name or "unknown")


class CallTrace:
    """The span of one call and its attempts; ended by exactly one outcome."""

    def __init__(self, telemetry: Telemetry, request: Request) -> None:
        self.telemetry, self.request = telemetry, request
        self.operation = "embeddings" if request.kind == "embedding" else "chat"
        self.started = time.perf_counter()
        self.plan: RetryPlan | None = None  # set once the call needs one: its history has the waits
        self.attempts = 0
        self.step: Step | None = None  # the attempt made last
        self.in_flight = False  # an attempt is running, or its stream being read
        self.attempt_span: Any = None  # its span, when tracing
        self.handed_over = False  # the call returned a live stream: the stream ends the span
        self.ended = False
        self.attributes: dict[str, Any] = {"gen_ai.operation.name": self.operation,
                                           "gen_ai.request.model": request.model}
        self.span = None
        if telemetry.tracer is not None:
            self.span = telemetry.tracer.start_span(
                f"{self.operation} {request.model}", kind=telemetry.api.SpanKind.CLIENT,
                attributes={**self.attributes, **self._request_attributes()})

    def _request_attributes(self) -> dict[str, Any]:
        payload, request = self.request.payload, self.request
        found = {_REQUEST_ATTRIBUTES[name]: _attribute(value) for name, value in payload.items()
                 if name in _REQUEST_ATTRIBUTES and value is not None}
        if isinstance(payload.get("stop"), str):  # the conventions' stop_sequences is a list
            found["gen_ai.request.stop_sequences"] = [payload["stop"]]
        if request.kind == "stream":
            found["gen_ai.request.stream"] = True
        if self.telemetry.capture_content and request.messages:
            found["gen_ai.input.messages"] = json.dumps([_message(m) for m in request.messages], default=str)
        return found

    # --- attempts ----------------------------------------------------------------------------

    def attempt_started(self, step: Step) -> None:
        self.attempts += 1
        self.step, self.in_flight = step, True
        if self.span is None:
            return
        history = self.plan.history if self.plan is not None else []
        attributes: dict[str, Any] = {"dewey.attempt.model": step.route.model, "dewey.attempt.number": step.number,
                                      "dewey.attempt.wait_s": history[-1].waited if history else 0.0}
        attributes.update(_server(step.route.api_base))
        self.attempt_span = self.telemetry.tracer.start_span(
            f"attempt {step.route.model}", context=self.telemetry.api.set_span_in_context(self.span),
            attributes=attributes)

    def succeeded(self, response: Any, cost: float) -> None:
        """The attempt succeeded and the answer is complete: the call is over."""
        self._end_attempt("ok")
        self._end(response=response, cost=cost)

    def failed(self, error: BaseException) -> None:
        self._end_attempt(_error_type(error), error)
        if self.handed_over:  # a stream broke: nothing retries it
            self._end(error=error)

    def abandoned(self) -> None:
        self._end_attempt("abandoned")
        if self.handed_over:
            self._end(outcome="abandoned")

    def cache_hit(self, response: Any, saved: float) -> None:
        self._end(response=response, cache_hit=True, saved=saved)

    def _end_attempt(self, outcome: str, error: BaseException | None = None) -> None:
        self.in_flight = False
        span, self.attempt_span = self.attempt_span, None
        if span is None:
            return
        span.set_attribute("dewey.attempt.outcome", outcome)
        if error is not None:
            self._set_error(span, error)
        span.end()

    def _set_error(self, span: Any, error: BaseException) -> None:
        span.set_attribute("error.type", _error_type(error))
        api = self.telemetry.api
        span.set_status(api.Status(api.StatusCode.ERROR, str(getattr(error, "message", error))))

    # --- the call ----------------------------------------------------------------------------

    def returned(self) -> None:
        """The client returned: a live stream now ends the call; a call with nothing left
        in flight (embeddings all found in the cache) is over."""
        if self.in_flight:
            self.handed_over = True
            if self.span is not None:  # the stream was read up to its first token before it was returned
                self.span.set_attribute("gen_ai.response.time_to_first_chunk", time.perf_counter() - self.started)
        elif not self.ended:
            self._end(cache_hit=self.attempts == 0)

    def _end(self, *, response: Any = None, error: BaseException | None = None, cost: float = 0.0,
             saved: float = 0.0, cache_hit: bool = False, outcome: str | None = None) -> None:
        if self.ended:
            return
        self.ended = True
        telemetry, attributes = self.telemetry, self.attributes
        model = self.step.route.model if self.step is not None else self.request.model
        attributes["gen_ai.provider.name"] = telemetry.provider(model)
        if self.step is not None:
            attributes.update(_server(self.step.route.api_base))
        answer = _answer(response)
        if answer.get("model"):
            attributes["gen_ai.response.model"] = answer["model"]
        if error is not None:
            attributes["error.type"] = _error_type(error)
        tokens = usage_counts(response) if response is not None and not cache_hit else None
        if telemetry.instruments is not None:
            telemetry.instruments.record(attributes, time.perf_counter() - self.started, cache_hit, tokens,
                                         self.operation == "chat", cost)
        span = self.span
        if span is None:
            return
        ours = self._ours(cost, saved, cache_hit, outcome)
        span.set_attributes({**attributes, **ours, **_response_attributes(answer, telemetry.capture_content)})
        if tokens is not None:
            span.set_attribute("gen_ai.usage.input_tokens", tokens[0])
            if self.operation == "chat":
                span.set_attribute("gen_ai.usage.output_tokens", tokens[1])
        if error is not None:
            self._set_error(span, error)
        span.end()

    def _ours(self, cost: float, saved: float, cache_hit: bool, outcome: str | None) -> dict[str, Any]:
        ours: dict[str, Any] = {"dewey.cost_usd": cost, "dewey.cache_hit": cache_hit, "dewey.attempts": self.attempts}
        routes = self.request.routes
        if self.step is not None and routes and self.step.route != routes[0]:
            ours["dewey.fallback_model"] = self.step.route.model
        if saved:
            ours["dewey.saved_usd"] = saved
        if outcome is not None:
            ours["dewey.outcome"] = outcome
        return ours

    @contextmanager
    def guarding(self) -> Iterator[None]:
        try:
            yield
        except BaseException as error:
            self._end_attempt(_error_type(error), error)
            self._end(error=error)
            raise


_UNTRACED = nullcontext()  # stateless, so one serves every untraced call (as many do at once)


def guarded(trace: CallTrace | None) -> AbstractContextManager[None]:
    """A block in which an exception ends the call's trace with that error."""
    return _UNTRACED if trace is None else trace.guarding()


@contextmanager
def _finishing(trace: CallTrace) -> Iterator[None]:
    with trace.guarding():
        yield
    trace.returned()


def finishing(trace: CallTrace | None) -> AbstractContextManager[None]:
    """The rest of a call: an exception ends its trace with the error; a return ends it
    (or hands it to the stream returned)."""
    return _UNTRACED if trace is None else _finishing(trace)


# --- attributes ------------------------------------------------------------------------------

def _attribute(value: Any) -> Any:
    """A value OpenTelemetry accepts as an attribute: a scalar or a list of strings."""
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [str(item) for item in value]
    return str(value)


def _server(api_base: str | None) -> dict[str, Any]:
    if not api_base:
        return {}
    parts = urlsplit(api_base)
    if not parts.hostname:
        return {}
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return {"server.address": parts.hostname, "server.port": port}


def _error_type(error: BaseException) -> str:
    """``error.type``: the exception's full name, as the conventions ask for exceptions."""
    cls = type(error)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    # Our errors by their public name (dewey.llm.LLMRateLimitError), not the private module's.
    module = "dewey.llm" if cls.__module__.startswith("dewey.llm.") else cls.__module__
    return f"{module}.{cls.__qualname__}"


def _field(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


def _answer(response: Any) -> dict[str, Any]:
    """The id, model and choices of a response (a dict, LiteLLM's object or a stream's usage)."""
    if response is None:
        return {}
    return {"id": _field(response, "id"), "model": _field(response, "model"),
            "choices": _field(response, "choices") or []}


def _response_attributes(answer: dict[str, Any], capture: bool) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if answer.get("id"):
        found["gen_ai.response.id"] = str(answer["id"])
    choices = answer.get("choices") or []
    reasons = [str(_field(choice, "finish_reason")) for choice in choices if _field(choice, "finish_reason")]
    if reasons:
        found["gen_ai.response.finish_reasons"] = reasons
    if capture and choices:
        found["gen_ai.output.messages"] = json.dumps([_output(choice) for choice in choices], default=str)
    return found


def _parts(message: Any) -> list[dict[str, Any]]:
    """A message's text and tool calls as the conventions' message parts."""
    content = _field(message, "content")
    parts: list[dict[str, Any]] = []
    if isinstance(content, str) and content:
        parts.append({"type": "text", "content": content})
    elif isinstance(content, list):
        parts.extend({"type": "text", "content": _field(item, "text")} for item in content
                     if _field(item, "type") == "text")
    for call in _field(message, "tool_calls") or []:
        function = _field(call, "function")
        parts.append({"type": "tool_call", "id": _field(call, "id"), "name": _field(function, "name"),
                      "arguments": _field(function, "arguments")})
    if _field(message, "role") == "tool":
        parts = [{"type": "tool_call_response", "id": _field(message, "tool_call_id"), "response": content}]
    return parts


def _message(message: Any) -> dict[str, Any]:
    return {"role": _field(message, "role"), "parts": _parts(message)}


def _output(choice: Any) -> dict[str, Any]:
    message = _field(choice, "message") or {}
    return {"role": _field(message, "role") or "assistant", "parts": _parts(message),
            "finish_reason": _field(choice, "finish_reason")}
