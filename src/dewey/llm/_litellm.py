"""``LiteLLMTransport``: requests sent through LiteLLM. The only module that imports it.

LiteLLM takes seconds to import, so it is loaded on the first call that needs it, once
per process, behind a lock.  Nothing here writes per-client settings into LiteLLM's
module globals (keys, bases, caches): every call passes its own.  The few process-wide
switches set here (silencing debug prints, the offline price map) are the same for
every client.  (``local/`` models do not come here: ``_local_transport`` runs them.)
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from types import ModuleType
from typing import Any

from . import _provider_quirks
from ._exceptions import LLMError
from ._litellm_errors import from_provider_error
from ._response import ResponseData, from_litellm

__all__ = ["LiteLLMTransport", "is_loaded", "litellm", "litellm_cost"]

_lock = threading.Lock()
# The module once imported: a process-wide fact, like sys.modules, not client state.
_litellm: ModuleType | None = None


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
            _litellm = module
    return _litellm


def is_loaded() -> bool:
    """Whether LiteLLM was imported already (so asking it costs no import)."""
    return _litellm is not None


def litellm_cost(response: Any, model: str | None, kind: str) -> float:
    """USD cost of a response as LiteLLM prices it: for the models the catalog's
    per-token formula does not price (per second, per character, ...); 0 if it cannot."""
    try:
        return float(litellm().completion_cost(
            completion_response=response, model=model,
            call_type="embedding" if kind == "embedding" else "completion"))
    except Exception:  # unpriced here too: nothing was charged that we can know of
        return 0.0


class LiteLLMTransport:
    """Sends requests through LiteLLM; maps its exceptions to ``LLMError`` and its
    responses and stream chunks to :class:`ResponseData` (the one type every path
    returns; a chunk's conversion costs a small part of LiteLLM's own work on it)."""

    name = "litellm"

    def __init__(self) -> None:
        self._sdk_clients: dict[tuple[str | None, str | None, bool], Any] = {}

    def load(self) -> None:
        """Import LiteLLM now (a no-op once done), e.g. before a latency clock starts."""
        litellm()

    def complete(self, kwargs: dict[str, Any]) -> ResponseData:
        return from_litellm(_call(litellm().completion, kwargs))

    async def acomplete(self, kwargs: dict[str, Any]) -> ResponseData:
        return from_litellm(await _acall(litellm().acompletion, kwargs))

    def stream(self, kwargs: dict[str, Any]) -> Iterator[ResponseData]:
        chunks = _call(litellm().completion, {**kwargs, "stream": True})
        return _Chunks(iter(chunks), kwargs["model"], _Refusals.tap(chunks))

    async def astream(self, kwargs: dict[str, Any]) -> AsyncIterator[ResponseData]:
        chunks = await _acall(litellm().acompletion, {**kwargs, "stream": True})
        return _AsyncChunks(chunks.__aiter__(), kwargs["model"], _Refusals.tap(chunks))

    def embed(self, kwargs: dict[str, Any]) -> ResponseData:
        return from_litellm(_call(litellm().embedding, self._without_sdk_retries(kwargs, False)))

    async def aembed(self, kwargs: dict[str, Any]) -> ResponseData:
        return from_litellm(await _acall(litellm().aembedding, self._without_sdk_retries(kwargs, True)))

    def assemble(self, chunks: list[Any], messages: list[dict[str, Any]]) -> ResponseData | None:
        originals = [getattr(chunk, _ORIGINAL, chunk) for chunk in chunks]
        built = litellm().stream_chunk_builder(originals, messages=messages)
        return from_litellm(built) if built is not None else None

    def _without_sdk_retries(self, kwargs: dict[str, Any], is_async: bool) -> dict[str, Any]:
        """LiteLLM's OpenAI embedding path turns ``max_retries=0`` into the SDK default
        (``max_retries or DEFAULT_MAX_RETRIES``), which would stack a second retry loop
        under ours: hand it an SDK client that really does not retry."""
        if kwargs.get("client") is not None or _provider(kwargs["model"], kwargs.get("api_base")) != "openai":
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


class _Chunks:
    """A LiteLLM stream whose chunks arrive as :class:`ResponseData` (``_hidden_params``
    kept) and its failures as ``LLMError``."""

    def __init__(self, iterator: Iterator[Any], model: str, refusals: _Refusals | None = None) -> None:
        self._iterator, self._model, self._refusals = iterator, model, refusals

    def __iter__(self) -> _Chunks:
        return self

    def __next__(self) -> ResponseData:
        try:
            chunk = next(self._iterator)
        except StopIteration:
            raise
        except Exception as exc:
            if _provider_quirks.ended_cleanly(exc):  # [DONE] without a finish_reason: complete
                raise StopIteration from None
            error = from_provider_error(exc, model=self._model)
        else:
            return _converted(chunk, self._refusals)
        raise error  # out of the except block: exc must not become its __context__

    def close(self) -> None:
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()


class _AsyncChunks:
    """:class:`_Chunks` for ``async for``."""

    def __init__(self, iterator: AsyncIterator[Any], model: str, refusals: _Refusals | None = None) -> None:
        self._iterator, self._model, self._refusals = iterator, model, refusals

    def __aiter__(self) -> _AsyncChunks:
        return self

    async def __anext__(self) -> ResponseData:
        try:
            chunk = await self._iterator.__anext__()
        except StopAsyncIteration:
            raise
        except Exception as exc:
            if _provider_quirks.ended_cleanly(exc):  # [DONE] without a finish_reason: complete
                raise StopAsyncIteration from None
            error = from_provider_error(exc, model=self._model)
        else:
            return _converted(chunk, self._refusals)
        raise error  # out of the except block: exc must not become its __context__

    async def aclose(self) -> None:
        close = getattr(self._iterator, "aclose", None)
        if close is not None:
            await close()


_ORIGINAL = "_litellm_chunk"


def _converted(chunk: Any, refusals: _Refusals | None = None) -> ResponseData:
    """A LiteLLM stream chunk as :class:`ResponseData`, holding on to the original (an
    attribute, out of the data) for :meth:`LiteLLMTransport.assemble`:
    ``stream_chunk_builder`` reads what LiteLLM keeps out of a chunk's data, such as the
    usage a provider sent unasked, which it holds back in ``_hidden_params``.  The refusal
    LiteLLM dropped on the way (see :class:`_Refusals`) travels in this chunk's delta."""
    if refusals is not None and refusals.pending and getattr(chunk, "choices", None):
        chunk.choices[0].delta.refusal, refusals.pending = refusals.pending, ""
    converted = from_litellm(chunk)
    object.__setattr__(converted, _ORIGINAL, chunk)
    return converted


class _Refusals:
    """The provider's own stream under a LiteLLM stream, noting the ``delta.refusal`` pieces
    it carries.  A model declining a structured-output request streams its refusal in
    ``delta.refusal`` alone, and LiteLLM's stream handler drops every chunk without content,
    tool calls or a role (``CustomStreamWrapper.is_chunk_non_empty``): the refusal noted
    here joins the next chunk LiteLLM passes on (the finish), so the stream ends as the
    same call without ``stream`` does, with ``message.refusal``."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._astream: Any = None  # what the stream's __aiter__ gave, once asked
        self.pending = ""  # refusal text not yet delivered in a chunk

    @classmethod
    def tap(cls, wrapper: Any) -> _Refusals | None:
        """Put a tap under LiteLLM's ``wrapper`` (None: it reads no stream of objects yet,
        e.g. a provider whose stream LiteLLM opens lazily; those have no refusal field)."""
        stream = getattr(wrapper, "completion_stream", None)
        if stream is None or isinstance(stream, str | bytes) or not hasattr(wrapper, "chunk_creator"):
            return None
        refusals = cls(stream)
        wrapper.completion_stream = refusals
        return refusals

    def __getattr__(self, name: str) -> Any:  # close(), response, ...: the stream's own
        return getattr(self._stream, name)

    def __iter__(self) -> _Refusals:
        return self

    def __next__(self) -> Any:
        return self._noted(next(self._stream))

    def __aiter__(self) -> _Refusals:
        # The stream's own __aiter__ must run (Anthropic's opens its byte stream there), and
        # once: LiteLLM's wrapper asks for an iterator again for every chunk it reads.
        if self._astream is None:
            self._astream = self._stream.__aiter__()
        return self

    async def __anext__(self) -> Any:
        self.__aiter__()  # a no-op once LiteLLM's wrapper has asked for the iterator
        return self._noted(await self._astream.__anext__())

    def _noted(self, chunk: Any) -> Any:
        choices = getattr(chunk, "choices", None)
        if isinstance(choices, list) and choices:
            refusal = getattr(getattr(choices[0], "delta", None), "refusal", None)
            if isinstance(refusal, str):
                self.pending += refusal
        return chunk


def _provider(model: str, api_base: str | None) -> str | None:
    try:
        return str(litellm().get_llm_provider(model, api_base=api_base)[1])
    except Exception:  # LiteLLM cannot place the model: no provider-specific handling
        return None


def _call(function: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    try:
        return function(**kwargs)
    except Exception as exc:
        error: LLMError = from_provider_error(exc, model=kwargs["model"])
    raise error  # out of the except block: exc must not become its __context__


async def _acall(function: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    try:
        return await function(**kwargs)
    except Exception as exc:
        error: LLMError = from_provider_error(exc, model=kwargs["model"])
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
