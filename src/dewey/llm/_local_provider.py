"""The ``local/`` LiteLLM provider: LiteLLM's calls in, the llama.cpp engine's answers out.

    register(litellm)
    litellm.completion(model="local/smollm2", messages=[...])           # the shipped model
    litellm.completion(model="local//models/any.gguf", messages=[...])  # any GGUF file
    litellm.embedding(model="local/smollm2", input=["a", "b"])

Models, settings and defaults are :mod:`._llama`'s; this module only translates.  It
imports LiteLLM (``LocalLLM`` must subclass ``litellm.CustomLLM``): only ``_backend``
imports it, after setting LiteLLM up.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any

import litellm
from litellm.llms.custom_llm import CustomLLM
from litellm.types.utils import (
    Choices,
    EmbeddingResponse,
    GenericStreamingChunk,
    Message,
    ModelResponse,
    Usage,
)

from ._exceptions import LLMConfigError
from ._llama import (
    DEFAULT_N_CTX,
    DEFAULT_REPEAT_PENALTY,
    SMOLLM2,
    Engine,
    EngineError,
    Engines,
    Settings,
    default_max_tokens,
    default_n_ctx,
    model_details,
    model_path,
    strip_prefix,
)

__all__ = ["PROVIDER", "LocalLLM", "register"]

PROVIDER = "local"

# What llama.cpp's server takes of an OpenAI request (LiteLLM has already mapped
# max_completion_tokens to max_tokens); repeat_penalty is llama.cpp's own.
_GENERATION_PARAMS = (
    "max_tokens", "temperature", "top_p", "stop", "seed", "presence_penalty",
    "frequency_penalty", "response_format", "repeat_penalty",
)
# Parameters whose silent loss would change the meaning of the answer.
_UNSUPPORTED_PARAMS = ("tools", "functions", "tool_choice", "function_call")


# Every local model has the same details; `name` stays only until _backend stops passing it.
def _display_name(model: str) -> str:
    return f"{PROVIDER}/{strip_prefix(model)}"


@contextlib.contextmanager
def _provider_errors(model: str) -> Iterator[None]:
    """Raise failures as the LiteLLM exception their cause calls for.

    Anything else reaches the caller as a 500 ``APIConnectionError``, which reads as
    "unreachable, retry": wrong for a missing file or a prompt longer than the context.
    """
    name = _display_name(model)
    try:
        yield
    except litellm.exceptions.APIError:
        raise  # already a LiteLLM error
    except LLMConfigError as exc:
        raise litellm.exceptions.BadRequestError(message=str(exc), model=name, llm_provider=PROVIDER) from exc
    except EngineError as exc:
        message = f"{name}: {exc}"
        if exc.kind == "exceed_context_size_error":
            raise litellm.exceptions.ContextWindowExceededError(
                message=message, model=name, llm_provider=PROVIDER) from exc
        if exc.status == 400:
            raise litellm.exceptions.BadRequestError(message=message, model=name, llm_provider=PROVIDER) from exc
        raise litellm.exceptions.InternalServerError(message=message, model=name, llm_provider=PROVIDER) from exc
    except Exception as exc:
        raise litellm.exceptions.InternalServerError(
            message=f"{name} failed: {type(exc).__name__}: {exc}", model=name, llm_provider=PROVIDER
        ) from exc


class LocalLLM(CustomLLM):
    """LiteLLM custom provider running GGUF models in this process.

    LiteLLM calls every method with keyword arguments (model, messages, optional_params,
    model_response, ...); the ones a local model does not need (api_key, api_base,
    headers, client, ...) are accepted and ignored.  Unknown keywords a caller passes
    (``n_ctx``, ``n_threads``, ``repeat_penalty``) arrive in ``optional_params``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.engines = Engines()
        self._described: set[str] = set()
        self._describing = threading.Lock()

    # --- chat -----------------------------------------------------------------------------

    def completion(self, model: str, messages: list[Any], *_args: Any, **kwargs: Any) -> ModelResponse:
        """One chat answer, with usage; a local model costs nothing."""
        with _provider_errors(model):
            engine, request = self._chat(model, messages, _optional(kwargs))
            result = engine.chat(request)
        choice = result["choices"][0]
        usage = result["usage"]
        response: ModelResponse = kwargs.get("model_response") or ModelResponse()
        response.choices = [
            Choices(
                index=0,
                finish_reason=choice.get("finish_reason") or "stop",
                message=Message(role="assistant", content=choice["message"].get("content") or ""),
            )
        ]
        response.model = _display_name(model)
        response.created = int(time.time())
        response.usage = Usage(  # type: ignore[attr-defined]  # set dynamically by litellm too
            prompt_tokens=usage["prompt_tokens"],
            completion_tokens=usage["completion_tokens"],
            total_tokens=usage["total_tokens"],
        )
        response._hidden_params["response_cost"] = 0.0  # noqa: SLF001 - where LiteLLM reads a cost from
        return response

    def streaming(self, model: str, messages: list[Any], *_args: Any, **kwargs: Any) -> Iterator[GenericStreamingChunk]:
        """Text chunks as they are generated, then one final chunk with finish reason and usage."""
        # Resolved and loaded before the first chunk is asked for, so that a bad model
        # name fails the call itself rather than the first iteration.
        with _provider_errors(model):
            engine, request = self._chat(model, messages, _optional(kwargs))
        return _chunks(model, engine, request)

    async def acompletion(self, model: str, messages: list[Any], *args: Any, **kwargs: Any) -> ModelResponse:
        """:meth:`completion` in a worker thread: llama.cpp releases the GIL while it works."""
        return await asyncio.to_thread(self.completion, model, messages, *args, **kwargs)

    # The base declares a coroutine returning an iterator; LiteLLM iterates whatever the
    # call returns, and an async generator is what streams.
    async def astreaming(  # type: ignore[override]
        self, model: str, messages: list[Any], *args: Any, **kwargs: Any
    ) -> AsyncIterator[GenericStreamingChunk]:
        """:meth:`streaming`, each chunk awaited in a worker thread."""
        chunks = await asyncio.to_thread(self.streaming, model, messages, *args, **kwargs)
        try:
            while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
                yield chunk
        finally:
            # If a worker is still inside next() (the caller was cancelled), closing
            # fails; the generator then closes when it is collected.
            with contextlib.suppress(ValueError):
                chunks.close()  # type: ignore[attr-defined]

    def _chat(self, model: str, messages: list[Any], optional: dict[str, Any]) -> tuple[Engine, dict[str, Any]]:
        """The engine for ``model`` and the request body for it, defaults filled in."""
        for unsupported in _UNSUPPORTED_PARAMS:
            if optional.get(unsupported):
                raise LLMConfigError(
                    f"local models do not support '{unsupported}' (model '{_display_name(model)}')"
                )
        request = {key: optional[key] for key in _GENERATION_PARAMS if optional.get(key) is not None}
        request.setdefault("max_tokens", default_max_tokens())
        request.setdefault("repeat_penalty", DEFAULT_REPEAT_PENALTY)
        request["messages"] = [_plain_message(m) for m in messages]
        return self._engine(model, optional, embedding=False), request

    # --- embeddings -----------------------------------------------------------------------

    def embedding(self, model: str, input: list[Any], *_args: Any, **kwargs: Any) -> EmbeddingResponse:
        """One unit-length vector per text: the mean of its tokens' vectors."""
        texts = [input] if isinstance(input, str) else list(input)
        with _provider_errors(model):
            if not all(isinstance(text, str) for text in texts):
                raise LLMConfigError("local embeddings take text inputs, not token ids")
            if not all(texts):
                raise LLMConfigError("cannot embed an empty text")
            result = self._engine(model, _optional(kwargs), embedding=True).embed(texts)
        response: EmbeddingResponse = kwargs.get("model_response") or EmbeddingResponse()
        response.model = _display_name(model)
        response.object = "list"
        response.data = [
            {"object": "embedding", "index": item["index"], "embedding": item["embedding"]}
            for item in sorted(result["data"], key=lambda item: item["index"])
        ]
        tokens = result["usage"]["prompt_tokens"]
        response.usage = Usage(prompt_tokens=tokens, completion_tokens=0, total_tokens=tokens)
        response._hidden_params["response_cost"] = 0.0  # noqa: SLF001 - where LiteLLM reads a cost from
        return response

    async def aembedding(self, model: str, input: list[Any], *args: Any, **kwargs: Any) -> EmbeddingResponse:
        """:meth:`embedding` in a worker thread."""
        return await asyncio.to_thread(self.embedding, model, input, *args, **kwargs)

    # --- models ---------------------------------------------------------------------------

    def _engine(self, model: str, optional: dict[str, Any], *, embedding: bool) -> Engine:
        settings = Settings.from_call(optional)
        engine = self.engines.get(model_path(model), settings, embedding=embedding)
        self.describe(strip_prefix(model), settings.n_ctx)
        return engine

    def describe(self, name: str, n_ctx: int) -> None:
        """Put a model into LiteLLM's model map once, so its cost (0) and context are known.

        Without it ``litellm.completion_cost`` raises "model isn't mapped" for local models.
        """
        if name in self._described:
            return
        with self._describing:
            if name not in self._described:
                litellm.register_model({_display_name(name): model_details(name, n_ctx)})
                self._described.add(name)


def _optional(kwargs: dict[str, Any]) -> dict[str, Any]:
    # LiteLLM's mapped OpenAI parameters, plus any unknown keyword the caller passed.
    return dict(kwargs.get("optional_params") or {})


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


def _chunks(model: str, engine: Engine, request: dict[str, Any]) -> Iterator[GenericStreamingChunk]:
    """LiteLLM's chunks for llama.cpp's: text as it comes, then finish reason and usage."""
    finish_reason = "stop"
    usage: dict[str, int] = {}
    with _provider_errors(model):
        for chunk in engine.stream(request):
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or []:
                finish_reason = choice.get("finish_reason") or finish_reason
                text = (choice.get("delta") or {}).get("content")
                if text:
                    yield _chunk(text)
    final = _chunk("", finish_reason=finish_reason)
    prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    final["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    yield final


def _chunk(text: str, finish_reason: str | None = None) -> GenericStreamingChunk:
    return {
        "text": text,
        "is_finished": finish_reason is not None,
        "finish_reason": finish_reason or "",
        "usage": None,
        "index": 0,
        "tool_use": None,
    }


def register(litellm_module: ModuleType) -> None:
    """Make ``local/...`` models callable through ``litellm_module`` (idempotent).

    Adds the handler to ``custom_provider_map`` and runs ``custom_llm_setup()``, which is
    what puts "local" into ``provider_list`` and ``_custom_providers``; LiteLLM also runs
    it on every call, but calling it here makes ``get_llm_provider`` work at once.  The
    shipped model's details go into LiteLLM's model map so cost and context lookups work
    (other local models are added on first use).
    """
    providers = litellm_module.custom_provider_map
    handler = next((e["custom_handler"] for e in providers if e.get("provider") == PROVIDER), None)
    if handler is None:
        handler = LocalLLM()
        providers.append({"provider": PROVIDER, "custom_handler": handler})
    litellm_module.utils.custom_llm_setup()
    try:
        n_ctx = default_n_ctx()
    except LLMConfigError:
        # Registration runs for every client, local or not: a bad DEWEY_LLM_LOCAL_N_CTX
        # is reported when a local model is actually used.
        n_ctx = DEFAULT_N_CTX
    handler.describe(SMOLLM2, n_ctx)
