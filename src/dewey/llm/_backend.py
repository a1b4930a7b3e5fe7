"""The only module that imports LiteLLM.

LiteLLM takes seconds to import, so it is loaded on the first call that needs it, once
per process, behind a lock.  Nothing here writes per-client settings into LiteLLM's
module globals (keys, bases, caches): every call passes its own.  The few process-wide
switches set here (silencing debug prints, the offline price map, registering the
``local/`` provider) are the same for every client.
"""

from __future__ import annotations

import difflib
import logging
import os
import threading
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any

from . import _provider_quirks
from ._exceptions import LLMAuthenticationError, LLMConfigError, LLMError, from_provider_error

__all__ = ["Backend"]

logger = logging.getLogger("dewey.llm")

_lock = threading.Lock()
_litellm: ModuleType | None = None

# Providers that accept stream_options={"include_usage": True} for usage on streams.
_STREAM_USAGE_PROVIDERS = {"openai", "azure", "openai_like", "deepseek", "groq", "mistral",
                           "together_ai", "fireworks_ai", "xai", "hosted_vllm", "text-completion-openai",
                           "local"}  # our llama.cpp provider reports real usage when asked

# Endpoints of the providers whose default LiteLLM does not report (it leaves that to
# their SDKs), so that a connection error can name the address it could not reach.
_DEFAULT_API_BASES = {"openai": "https://api.openai.com/v1",
                      "anthropic": "https://api.anthropic.com",
                      "gemini": "https://generativelanguage.googleapis.com",
                      "mistral": "https://api.mistral.ai/v1"}


def litellm() -> ModuleType:
    """Import and quieten LiteLLM once per process."""
    global _litellm
    if _litellm is not None:
        return _litellm
    with _lock:
        if _litellm is None:
            # Without this LiteLLM downloads its price map at import, retrying for
            # seconds when offline; the bundled copy is what we price with.
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            import litellm as module

            module.suppress_debug_info = True  # the "Give Feedback / Get Help" prints
            module.telemetry = False
            for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
                logging.getLogger(name).setLevel(logging.CRITICAL)
            _register_local(module)
            _litellm = module
    return _litellm


def _register_local(module: ModuleType) -> None:
    try:
        from ._local_provider import register
    except ImportError:  # the local provider's module failed: leave it unregistered
        return
    register(module)


def is_loaded() -> bool:
    return _litellm is not None


def _has_token(chunk: Any) -> bool:
    """Whether a stream chunk carries text, a tool call, a finish or usage."""
    choices = getattr(chunk, "choices", None) or []
    if not choices:
        return getattr(chunk, "usage", None) is not None
    choice = choices[0]
    delta = getattr(choice, "delta", None)
    return bool(getattr(choice, "finish_reason", None) or getattr(delta, "content", None)
                or getattr(delta, "tool_calls", None) or getattr(delta, "function_call", None))


class Backend:
    """Calls LiteLLM for the client. The seam tests and other transports plug into."""

    def __init__(self) -> None:
        self._sdk_clients: dict[tuple[str | None, str | None, bool], Any] = {}
        self._unpriced: set[tuple[str, str]] = set()
        self._price_map_size = 0

    def load(self) -> None:
        """Import LiteLLM now (a no-op once done), e.g. before a latency clock starts."""
        litellm()

    # --- completions ------------------------------------------------------------------------

    def complete(self, kwargs: dict[str, Any]) -> Any:
        return self._call(litellm().completion, kwargs)

    async def acomplete(self, kwargs: dict[str, Any]) -> Any:
        return await self._acall(litellm().acompletion, kwargs)

    def open_stream(self, kwargs: dict[str, Any]) -> tuple[Iterator[Any], list[Any]]:
        """Start a stream and read up to its first token, so that a failure before any
        text arrives is an ordinary (retryable) failure of this attempt."""
        stream = self._call(litellm().completion, {**kwargs, "stream": True})
        iterator = iter(stream)
        head: list[Any] = []
        while not head or not _has_token(head[-1]):
            try:
                head.append(self.next_chunk(iterator, kwargs["model"]))
            except StopIteration:
                break
        return iterator, head

    async def aopen_stream(self, kwargs: dict[str, Any]) -> tuple[AsyncIterator[Any], list[Any]]:
        stream = await self._acall(litellm().acompletion, {**kwargs, "stream": True})
        iterator = stream.__aiter__()
        head: list[Any] = []
        while not head or not _has_token(head[-1]):
            try:
                head.append(await self.anext_chunk(iterator, kwargs["model"]))
            except StopAsyncIteration:
                break
        return iterator, head

    def next_chunk(self, iterator: Iterator[Any], model: str) -> Any:
        try:
            return next(iterator)
        except StopIteration:
            raise
        except Exception as exc:
            if _provider_quirks.ended_cleanly(exc):
                raise StopIteration from None
            error = from_provider_error(exc, model=model)
        raise error  # out of the except block: exc must not become its __context__

    async def anext_chunk(self, iterator: AsyncIterator[Any], model: str) -> Any:
        try:
            return await iterator.__anext__()
        except StopAsyncIteration:
            raise
        except Exception as exc:
            if _provider_quirks.ended_cleanly(exc):
                raise StopAsyncIteration from None
            error = from_provider_error(exc, model=model)
        raise error  # out of the except block: exc must not become its __context__

    # --- embeddings -------------------------------------------------------------------------

    def embed(self, kwargs: dict[str, Any]) -> Any:
        return self._call(litellm().embedding, self._without_sdk_retries(kwargs, False))

    async def aembed(self, kwargs: dict[str, Any]) -> Any:
        return await self._acall(litellm().aembedding, self._without_sdk_retries(kwargs, True))

    def _without_sdk_retries(self, kwargs: dict[str, Any], is_async: bool) -> dict[str, Any]:
        """LiteLLM's OpenAI embedding path turns ``max_retries=0`` into the SDK default
        (``max_retries or DEFAULT_MAX_RETRIES``), which would stack a second retry loop
        under ours: hand it an SDK client that really does not retry."""
        if kwargs.get("client") is not None or self.provider(kwargs["model"], kwargs.get("api_base")) != "openai":
            return kwargs
        import openai

        key = kwargs.get("api_key") or os.environ.get("OPENAI_API_KEY")
        base = kwargs.get("api_base") or os.environ.get("OPENAI_API_BASE") or os.environ.get("OPENAI_BASE_URL")
        cache_key = (key, base, is_async)
        client = self._sdk_clients.get(cache_key)
        if client is None:
            factory = _never_retrying(openai.AsyncOpenAI if is_async else openai.OpenAI)
            client = factory(api_key=key or "missing", base_url=base, max_retries=0)
            self._sdk_clients[cache_key] = client
        return {**kwargs, "client": client}


    # --- facts about models -----------------------------------------------------------------

    def provider(self, model: str, api_base: str | None = None) -> str | None:
        try:
            return str(litellm().get_llm_provider(model, api_base=api_base)[1])
        except Exception:
            return None

    def model_details(self, model: str) -> dict[str, Any]:
        """LiteLLM's model map entry for ``model`` (offline), as a plain dict."""
        if model.startswith("local/"):
            litellm()  # _local_provider imports LiteLLM: through here, so it is set up first
            from ._local_provider import model_details

            return {"model": model, **model_details(model.removeprefix("local/"))}
        try:
            info = dict(litellm().get_model_info(model))
        except Exception:
            raise LLMConfigError(
                f"no details known for model {model!r}: it is not in LiteLLM's model map; "
                "check the spelling (e.g. 'gpt-4o', 'anthropic/claude-3-5-sonnet-latest') "
                "or run `dewey-llm models`"
            ) from None
        return {"model": model, **{k: v for k, v in info.items() if v is not None}}

    def context_window(self, model: str) -> int | None:
        try:
            value = self.model_details(model).get("max_input_tokens")
        except LLMError:
            return None
        return int(value) if value else None

    def cost(self, response: Any, model: str | None = None, kind: str = "completion") -> float:
        """USD cost of a response from LiteLLM's price map (0 when the model is unpriced)."""
        hidden = getattr(response, "_hidden_params", None) or {}
        if hidden.get("response_cost") is not None:
            return float(hidden["response_cost"])
        key = (model or str(getattr(response, "model", "")), kind)
        if self._is_unpriced(key):
            return 0.0
        module = litellm()
        try:
            return float(module.completion_cost(
                completion_response=response, model=model,
                call_type="embedding" if kind == "embedding" else "completion"))
        except Exception as exc:
            return self._no_price(key, exc)

    def token_cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        """USD cost of token counts for ``model`` (0 when the model is unpriced)."""
        key = (model, "tokens")
        if self._is_unpriced(key):
            return 0.0
        try:
            prompt, completion = litellm().cost_per_token(
                model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
            return float(prompt + completion)
        except Exception as exc:
            return self._no_price(key, exc)

    def _is_unpriced(self, key: tuple[str, str]) -> bool:
        """Whether LiteLLM already failed to price this model. Asking again costs ~0.5 ms
        a call (the look-ups, then an exception) for every private or proxied model."""
        size = len(litellm().model_cost)
        if size != self._price_map_size:  # register_model() added prices: ask again
            self._price_map_size = size
            self._unpriced.clear()
        return key in self._unpriced

    def _no_price(self, key: tuple[str, str], exc: Exception) -> float:
        if type(exc).__name__ == "ModelNotMappedError" or "isn't mapped" in str(exc):
            self._unpriced.add(key)
        return 0.0

    def build_stream_response(self, chunks: list[Any], messages: list[dict[str, Any]]) -> Any:
        return litellm().stream_chunk_builder(chunks, messages=messages)

    def supports_stream_usage(self, provider: str | None) -> bool:
        return provider in _STREAM_USAGE_PROVIDERS

    def missing_key_error(self, model: str, api_base: str | None) -> LLMAuthenticationError | None:
        """The error for a model whose provider key is not in the environment, if any."""
        if api_base or model.startswith("local/"):
            return None  # a proxy or local server may need no key
        try:
            report = litellm().validate_environment(model)
        except Exception:
            return None
        missing = report.get("missing_keys") or []
        if report.get("keys_in_environment") or not missing:
            return None
        names = " or ".join(missing)
        return LLMAuthenticationError(
            f"{model} needs an API key: set {names} in the environment, or api_key in the "
            "config (or pick another model; with no key at all, local/smollm2 runs offline)",
            model=model, provider=self.provider(model))

    def unknown_model_error(self, model: str) -> LLMConfigError:
        """The error for a model name LiteLLM cannot place with any provider, raised before
        anything is sent: LiteLLM's own answer is a paragraph about providers."""
        names = [name for name in litellm().model_cost if name != "sample_spec"]
        close = difflib.get_close_matches(model, names, n=1, cutoff=0.6)
        guess = f"; did you mean {close[0]!r}?" if close else "."
        return LLMConfigError(
            f"unknown model {model!r}{guess} See `dewey-llm models --all` for the names "
            f"LiteLLM knows. For a server that speaks the OpenAI API (vLLM, Ollama, LM Studio, "
            f"a proxy), name the model 'openai/{model}' and set api_base to the server's URL.",
            model=model)

    def key_variable(self, model: str) -> str | None:
        """The provider's conventional key variable (OPENAI_API_KEY, ...) when it is set."""
        provider = self.provider(model)
        variable = _provider_quirks.key_variable(provider) if provider else None
        return variable if variable and os.environ.get(variable) else None

    def default_api_base(self, model: str) -> str | None:
        """Where LiteLLM sends ``model``'s requests when no api_base is given."""
        try:
            _, provider, _, base = litellm().get_llm_provider(model)
        except Exception:
            return None
        return base or _DEFAULT_API_BASES.get(provider)

    # --- error mapping ----------------------------------------------------------------------

    @staticmethod
    def _call(function: Any, kwargs: dict[str, Any]) -> Any:
        try:
            return function(**kwargs)
        except Exception as exc:
            error = from_provider_error(exc, model=kwargs["model"])
        raise error  # out of the except block: exc must not become its __context__

    @staticmethod
    async def _acall(function: Any, kwargs: dict[str, Any]) -> Any:
        try:
            return await function(**kwargs)
        except Exception as exc:
            error = from_provider_error(exc, model=kwargs["model"])
        raise error  # out of the except block: exc must not become its __context__


def _never_retrying(sdk_class: type) -> type:
    """An SDK client class whose ``max_retries`` stays 0: LiteLLM assigns its default
    to the client it is given, so the attribute ignores assignment."""

    class NeverRetrying(sdk_class):  # type: ignore[misc,valid-type,unused-ignore]
        @property
        def max_retries(self) -> int:
            return 0

        @max_retries.setter
        def max_retries(self, value: int) -> None:
            pass

    return NeverRetrying
