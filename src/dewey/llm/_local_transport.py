"""``LocalTransport``: ``local/`` models answered in this process by llama.cpp, without LiteLLM.

    transport = LocalTransport()
    transport.complete({"model": "local/smollm2", "messages": [...]})   # the shipped model
    transport.complete({"model": "local//models/any.gguf", ...})        # any GGUF file
    transport.embed({"model": "local/smollm2", "input": ["a", "b"]})

llama.cpp's engine (:mod:`._llama`) takes and returns llama-server's OpenAI JSON, so this
module only picks the arguments it understands, fills in the defaults a small model
needs (a ``max_tokens`` cap, a repeat penalty), shapes the answers as
:mod:`._openai_wire` shapes a server's, and maps the engine's failures to ``LLMError``.
Models, settings and defaults are :mod:`._llama`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from ._exceptions import (
    LLMBadRequestError,
    LLMConfigError,
    LLMContextWindowError,
    LLMError,
    LLMServerError,
)
from ._llama import (
    DEFAULT_REPEAT_PENALTY,
    Engine,
    EngineError,
    Engines,
    Settings,
    default_max_tokens,
    model_path,
    strip_prefix,
)
from ._openai_wire import assemble, chunk, completion, embedding
from ._response import ChatResponse

__all__ = ["PROVIDER", "LocalTransport"]

PROVIDER = "local"

# What llama.cpp's server takes of an OpenAI request; repeat_penalty is llama.cpp's own.
_LLAMA_PARAMS = ("max_tokens", "temperature", "top_p", "stop", "seed", "presence_penalty",
                 "frequency_penalty", "response_format", "repeat_penalty")
# Parameters whose silent loss would change the meaning of the answer.
_UNSUPPORTED_PARAMS = ("tools", "functions", "tool_choice", "function_call")


class LocalTransport:
    """Runs ``local/`` models (GGUF files) in this process; see the module docstring.

    ``kwargs`` are the client's OpenAI-style arguments; those a local model has no use
    for (``api_key``, ``timeout``, ``user``, ...) are ignored, and llama.cpp's own
    ``n_ctx``, ``n_threads`` and ``repeat_penalty`` are taken.  Each model is loaded once,
    on first use, and shared by every later call (from any thread).
    """

    name = "local"

    def __init__(self) -> None:
        self.engines = Engines()

    def __repr__(self) -> str:
        return f"<LocalTransport loaded={len(self.engines.loaded())}>"

    # ---- sync

    def complete(self, kwargs: Mapping[str, Any]) -> ChatResponse:
        """One chat answer, with the model's own token counts."""
        model = _display_name(kwargs["model"])
        with _errors(model):
            engine, body = self._chat(kwargs)
            result = engine.chat(body)
        return completion(_named(result, model), model)

    def stream(self, kwargs: Mapping[str, Any]) -> Iterator[ChatResponse]:
        """The chunks of an answer as they are generated, then, if ``stream_options``
        asks for it, a usage chunk (``choices == []``) as OpenAI sends it."""
        model = _display_name(kwargs["model"])
        # Resolved and loaded now, not on the first next(): a bad model name fails the call.
        with _errors(model):
            engine, body = self._chat(kwargs)
        usage_wanted = bool((kwargs.get("stream_options") or {}).get("include_usage"))
        return _chunks(engine, body, model, usage_wanted=usage_wanted)

    def embed(self, kwargs: Mapping[str, Any]) -> ChatResponse:
        """One unit-length vector per text: the mean of its tokens' vectors."""
        model = _display_name(kwargs["model"])
        given = kwargs.get("input")
        texts = [given] if isinstance(given, str) else list(given or [])
        with _errors(model):
            if not texts or not all(isinstance(text, str) for text in texts):
                raise LLMConfigError("local embeddings take text inputs, not token ids")
            if not all(texts):
                raise LLMConfigError("cannot embed an empty text")
            engine = self.engines.get(model_path(model), Settings.from_call(dict(kwargs)), embedding=True)
            result = engine.embed(texts)
        data = [{"object": "embedding", "index": item["index"], "embedding": item["embedding"]}
                for item in sorted(result["data"], key=lambda item: item["index"])]
        tokens = result.get("usage", {}).get("prompt_tokens", 0)
        return embedding({"object": "list", "model": model, "data": data,
                          "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}, model)

    def assemble(self, chunks: list[Any], messages: list[dict[str, Any]]) -> ChatResponse:  # noqa: ARG002
        """One response made of a whole stream's chunks (the usage is the model's own)."""
        return assemble(chunks)

    # ---- async: llama.cpp releases the GIL while it works, so a worker thread each

    async def acomplete(self, kwargs: Mapping[str, Any]) -> ChatResponse:
        """:meth:`complete` in a worker thread."""
        return await asyncio.to_thread(self.complete, kwargs)

    async def aembed(self, kwargs: Mapping[str, Any]) -> ChatResponse:
        """:meth:`embed` in a worker thread."""
        return await asyncio.to_thread(self.embed, kwargs)

    async def astream(self, kwargs: Mapping[str, Any]) -> AsyncIterator[ChatResponse]:
        """:meth:`stream`, each chunk awaited in a worker thread."""
        return _achunks(await asyncio.to_thread(self.stream, kwargs))

    # ---- requests

    def _chat(self, kwargs: Mapping[str, Any]) -> tuple[Engine, dict[str, Any]]:
        """The engine for the call's model and the request body for it, defaults filled in."""
        for unsupported in _UNSUPPORTED_PARAMS:
            if kwargs.get(unsupported):
                raise LLMConfigError(f"local models do not support '{unsupported}' "
                                     f"(model '{_display_name(kwargs['model'])}')")
        body = {key: kwargs[key] for key in _LLAMA_PARAMS if kwargs.get(key) is not None}
        if kwargs.get("max_completion_tokens") is not None:  # the newer name of max_tokens
            body.setdefault("max_tokens", kwargs["max_completion_tokens"])
        body.setdefault("max_tokens", default_max_tokens())
        body.setdefault("repeat_penalty", DEFAULT_REPEAT_PENALTY)
        if isinstance(body.get("response_format"), type):
            body["response_format"] = _json_schema(body["response_format"])
        body["messages"] = [_plain_message(message) for message in kwargs.get("messages") or []]
        engine = self.engines.get(model_path(kwargs["model"]), Settings.from_call(dict(kwargs)),
                                  embedding=False)
        return engine, body


def _display_name(model: str) -> str:
    return f"{PROVIDER}/{strip_prefix(model)}"


def _named(result: dict[str, Any], model: str) -> dict[str, Any]:
    """llama.cpp's answer under the model name the caller used (it reports the file's),
    without its speed report (``timings``), which is not part of an answer."""
    named = {key: value for key, value in result.items() if key != "timings"}
    return {**named, "model": model, "created": result.get("created") or int(time.time())}


def _json_schema(model_class: type) -> dict[str, Any]:
    """A pydantic class given as ``response_format`` as the JSON schema it stands for
    (what LiteLLM sends for one); llama.cpp turns the schema into a grammar."""
    schema = getattr(model_class, "model_json_schema", None)
    if schema is None:
        raise LLMConfigError(f"response_format={model_class.__name__} is not a pydantic model: "
                             "pass a pydantic class or a dict such as {'type': 'json_object'}")
    return {"type": "json_schema", "json_schema": {"name": model_class.__name__, "schema": schema()}}


def _plain_message(message: Any) -> dict[str, Any]:
    """An OpenAI message with text-only content, as the GGUF chat template expects."""
    content = message.get("content")
    if isinstance(content, list):
        texts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text":
                raise LLMConfigError(f"local models accept text only, not '{kind}' message parts")
            texts.append(part.get("text") or "")
        content = "\n".join(texts)
    return {"role": message.get("role", "user"), "content": content or ""}


def _chunks(engine: Engine, body: dict[str, Any], model: str, *, usage_wanted: bool) -> Iterator[ChatResponse]:
    """llama.cpp's chunks as OpenAI's, its usage (which it always reports) last if wanted."""
    usage: dict[str, Any] | None = None
    last: dict[str, Any] = {}
    with _errors(model):
        for piece in engine.stream(body):
            usage = piece.pop("usage", None) or usage
            if piece.get("choices"):
                last = _named(piece, model)
                yield chunk(last, model)
    if usage_wanted and usage is not None:
        yield chunk({"id": last.get("id"), "object": "chat.completion.chunk",
                     "created": last.get("created") or int(time.time()), "model": model,
                     "choices": [], "usage": usage}, model)


async def _achunks(chunks: Iterator[ChatResponse]) -> AsyncIterator[ChatResponse]:
    try:
        while (item := await asyncio.to_thread(next, chunks, None)) is not None:
            yield item
    finally:
        # If a worker is still inside next() (the caller was cancelled), closing fails;
        # the generator then closes when it is collected.
        with contextlib.suppress(ValueError):
            chunks.close()  # type: ignore[attr-defined]


@contextlib.contextmanager
def _errors(model: str) -> Iterator[None]:
    """Raise failures as the ``LLMError`` their cause calls for: a bad argument or a
    missing file as a bad request (400: not retried, a fallback may serve it), a prompt
    longer than the context as a context-window error, anything else as a server error."""
    try:
        yield
    except LLMConfigError as exc:
        raise LLMBadRequestError(f"{model}: {exc.message}", model=model, provider=PROVIDER,
                                 status_code=400) from exc
    except LLMError:
        raise
    except EngineError as exc:
        cls: type[LLMError] = LLMServerError
        if exc.kind == "exceed_context_size_error":
            cls = LLMContextWindowError
        elif exc.status == 400:
            cls = LLMBadRequestError
        raise cls(f"{model}: {exc}", model=model, provider=PROVIDER, status_code=exc.status) from exc
    except Exception as exc:
        raise LLMServerError(f"{model} failed: {type(exc).__name__}: {exc}", model=model,
                             provider=PROVIDER) from exc
