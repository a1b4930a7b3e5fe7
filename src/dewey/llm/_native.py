"""NativeTransport: the OpenAI-compatible wire spoken directly over HTTP, without LiteLLM.

Most traffic (OpenAI, vLLM, llama.cpp's server, Ollama's ``/v1``, Groq, Together,
DeepSeek, a LiteLLM proxy, ...) speaks OpenAI's Chat Completions and Embeddings format.
Spoken natively it costs one JSON round trip instead of LiteLLM's seconds of import and
per-call bookkeeping.  The wire format itself lives in :mod:`._openai_wire`; this module
does the I/O, over pooled HTTP clients; :mod:`._native_errors` maps its failures to LLMError.

Sync calls share one keep-alive ``httpx.Client`` per (api_base, api_key); async calls one
``aiohttp.ClientSession`` per (api_base, api_key, event loop): under concurrency aiohttp
answers about ten times the calls per second of httpx's async client, or of httpx over
aiohttp (bench/bench_native.py, bench/bench_transports.py).  No retries here: the client's one loop retries.
"""

from __future__ import annotations

import json
import os
import ssl
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from ._exceptions import LLMError
from ._native_errors import aiohttp_error, check_finished, transport_error
from ._openai_wire import (
    DEFAULT_API_BASE,
    EventReader,
    HTTPRequest,
    assemble,
    chat_request,
    completion,
    embedding,
    embedding_request,
    http_error,
    malformed,
)
from ._pricing import COST_HEADER
from ._response import ResponseData

if TYPE_CHECKING:
    import asyncio

    import aiohttp

__all__ = ["NativeTransport"]

_DEFAULT_TIMEOUT = 600.0  # LiteLLM's default, so a call without ``timeout`` behaves alike
_POOL_SIZE = 100  # connections per endpoint and key, sync and async alike
_LIMITS = httpx.Limits(max_connections=_POOL_SIZE, max_keepalive_connections=_POOL_SIZE)
_PoolKey = tuple[str, str | None]


class NativeTransport:
    """Speaks the OpenAI Chat Completions / Embeddings wire to any compatible server.

    ``kwargs`` are the arguments LiteLLM's ``completion()``/``embedding()`` take: ``model``
    (``openai/<name>`` or a bare name), ``messages`` or ``input``, ``api_key``,
    ``api_base`` (default ``https://api.openai.com/v1``), ``timeout``, ``extra_body``,
    ``extra_headers``; every other argument travels in the JSON body as given.
    Responses are :class:`~dewey.llm._response.ResponseData` shaped like LiteLLM's; every
    failure is an :class:`~dewey.llm.LLMError`.  Close with :meth:`close`/:meth:`aclose`, or
    use it as a (async) context manager.
    """

    name = "native"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[_PoolKey, httpx.Client] = {}
        self._async_clients: dict[_PoolKey, _AsyncPool] = {}
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}  # immutable: one per value, not per call

    def __repr__(self) -> str:  # never the pools' keys: they hold API keys
        return f"<NativeTransport clients={len(self._clients) + len(self._async_clients)}>"

    def __enter__(self) -> NativeTransport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> NativeTransport:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ---- sync

    def complete(self, kwargs: Mapping[str, Any]) -> ResponseData:
        """One chat completion."""
        request = chat_request(_resolved(kwargs), stream=False)
        return _with_cost(completion, *self._post(request, kwargs["model"]), kwargs["model"])

    def embed(self, kwargs: Mapping[str, Any]) -> ResponseData:
        """Embeddings of ``input`` (a string or a list)."""
        request = embedding_request(_resolved(kwargs))
        return _with_cost(embedding, *self._post(request, kwargs["model"]), kwargs["model"])

    def stream(self, kwargs: Mapping[str, Any]) -> Iterator[ResponseData]:
        """The chunks of a streamed completion; the request is sent on the first ``next()``."""
        request = chat_request(_resolved(kwargs), stream=True)
        model = kwargs["model"]
        client = self._client(request)
        error: LLMError | None = None
        try:
            with client.stream("POST", request.path, content=request.content, headers=request.headers,
                               timeout=_timeout(request)) as response:
                if response.status_code >= 400:
                    raise http_error(response.status_code, response.headers, response.read(), model)
                reader = EventReader(model)
                for line in response.iter_lines():
                    chunk = reader.feed(line)
                    if chunk is not None:
                        yield chunk
                chunk = reader.flush()
                if chunk is not None:
                    yield chunk
                check_finished(reader, model)
        except httpx.HTTPError as exc:
            error = transport_error(exc, model, request, streaming=True)
        if error is not None:
            raise error  # outside the except block: no __context__ holding the request's key

    def assemble(self, chunks: list[Any], messages: list[dict[str, Any]]) -> ResponseData:  # noqa: ARG002
        """One response made of a whole stream's chunks (``messages`` are not needed: the
        usage is the server's)."""
        return assemble(chunks)

    def close(self) -> None:
        """Close the sync connection pools (async ones: :meth:`aclose`)."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def _client(self, request: HTTPRequest) -> httpx.Client:
        key = (request.api_base, request.api_key)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = httpx.Client(base_url=request.api_base, headers=_headers(request),
                                      limits=_LIMITS, timeout=_DEFAULT_TIMEOUT, verify=_verify(request))
                self._clients[key] = client
        return client

    def _post(self, request: HTTPRequest, model: str) -> tuple[Any, str | None]:
        """The reply's JSON and the cost a LiteLLM proxy put in its headers, if any."""
        try:
            response = self._client(request).post(
                request.path, content=request.content, headers=request.headers, timeout=_timeout(request))
            return (_parsed(response.status_code, response.headers, response.content, model),
                    response.headers.get(COST_HEADER))
        except httpx.HTTPError as exc:
            error = transport_error(exc, model, request, streaming=False)
        raise error  # outside the except block: no __context__ holding the request's key

    # ---- async

    async def acomplete(self, kwargs: Mapping[str, Any]) -> ResponseData:
        """One chat completion."""
        request = chat_request(_resolved(kwargs), stream=False)
        return _with_cost(completion, *await self._apost(request, kwargs["model"]), kwargs["model"])

    async def aembed(self, kwargs: Mapping[str, Any]) -> ResponseData:
        """Embeddings of ``input`` (a string or a list)."""
        request = embedding_request(_resolved(kwargs))
        return _with_cost(embedding, *await self._apost(request, kwargs["model"]), kwargs["model"])

    async def astream(self, kwargs: Mapping[str, Any]) -> AsyncIterator[ResponseData]:
        """The chunks of a streamed completion (awaited, as the ``Transport`` protocol
        says); the request is sent on the first ``anext()``."""
        return self._achunks(chat_request(_resolved(kwargs), stream=True), kwargs["model"])

    async def _achunks(self, request: HTTPRequest, model: str) -> AsyncIterator[ResponseData]:
        import asyncio

        import aiohttp

        session = self._pooled(request) or await self._session(request)
        error: LLMError | None = None
        try:
            async with session.post(request.api_base + request.path, data=request.content,
                                    headers=request.headers, timeout=self._atimeout(request)) as response:
                if response.status >= 400:
                    raise http_error(response.status, response.headers, await response.read(), model)
                reader = EventReader(model)
                rest = b""
                async for data in response.content.iter_any():
                    # Split on b"\n" before decoding: it is never part of a UTF-8 sequence.
                    *lines, rest = (rest + data).split(b"\n")
                    for line in lines:
                        chunk = reader.feed(line.rstrip(b"\r").decode())
                        if chunk is not None:
                            yield chunk
                for chunk in (reader.feed(rest.rstrip(b"\r").decode()), reader.flush()):
                    if chunk is not None:
                        yield chunk
                check_finished(reader, model)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            error = aiohttp_error(exc, model, request, streaming=True)
        if error is not None:
            raise error

    async def aclose(self) -> None:
        """Close the pools of the running event loop, and the sync ones."""
        import asyncio

        loop = asyncio.get_running_loop()
        with self._lock:
            pools = [pool for pool in self._async_clients.values() if pool.loop is loop]
            self._async_clients = {}
        for pool in pools:
            await pool.closer.aclose()
        self.close()

    def _pooled(self, request: HTTPRequest) -> aiohttp.ClientSession | None:
        """The running loop's session for ``request``, if made: a session belongs to the
        event loop it was made in (each ``asyncio.run()`` gets a pool of its own).  Not a
        coroutine: most calls find it; ``or await self._session(request)`` makes it."""
        import asyncio

        with self._lock:
            pool = self._async_clients.get((request.api_base, request.api_key))
        return pool.session if pool is not None and pool.loop is asyncio.get_running_loop() else None

    async def _session(self, request: HTTPRequest) -> aiohttp.ClientSession:
        """A new session for ``request`` in the running loop (``_pooled`` found none)."""
        import asyncio

        session = _new_session(request)
        closer = _closed_with_loop(session)
        await closer.asend(None)
        with self._lock:
            self._async_clients[(request.api_base, request.api_key)] = _AsyncPool(
                asyncio.get_running_loop(), session, closer)
        return session

    def _atimeout(self, request: HTTPRequest) -> aiohttp.ClientTimeout:
        """As httpx's one number: for connecting and for each read, not for the whole reply
        (a long stream that keeps sending is not timed out).  One (immutable) object per value."""
        seconds = _timeout(request)
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            import aiohttp

            if len(self._timeouts) > 64:  # a deadline makes one per quarter second left
                self._timeouts.clear()
            timeout = self._timeouts[seconds] = aiohttp.ClientTimeout(total=None, connect=seconds,
                                                                      sock_read=seconds)
        return timeout

    async def _apost(self, request: HTTPRequest, model: str) -> tuple[Any, str | None]:
        import asyncio

        import aiohttp

        try:
            session = self._pooled(request) or await self._session(request)
            async with session.post(request.api_base + request.path, data=request.content,
                                    headers=request.headers, timeout=self._atimeout(request)) as response:
                status, headers, body = response.status, response.headers, await response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            error = aiohttp_error(exc, model, request, streaming=False)
        else:
            return _parsed(status, headers, body, model), headers.get(COST_HEADER)
        raise error


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class _AsyncPool:
    loop: asyncio.AbstractEventLoop
    session: aiohttp.ClientSession
    closer: AsyncGenerator[None, None]


async def _closed_with_loop(session: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
    """Closes ``session`` when closed itself: by :meth:`NativeTransport.aclose`, or by
    ``asyncio.run()``, which closes every unfinished async generator before it closes
    its loop, so a caller that never calls ``aclose()`` leaks no open session."""
    try:
        yield
    finally:
        await session.close()


def _with_cost(parse: Callable[[Any, str], ResponseData], data: Any, cost: str | None,
               model: str) -> ResponseData:
    """The parsed reply, with the cost the server reported in a header kept for pricing
    (``_pricing.reported_cost``)."""
    response = parse(data, model)
    # Made now: a first read (the recorder's, every call) would fail a lookup, then __getattr__.
    object.__setattr__(response, "_hidden_params", {} if cost is None else {"reported_cost": cost})
    return response


def _resolved(kwargs: Mapping[str, Any]) -> Mapping[str, Any]:
    """``kwargs`` with the key and base from the environment when not given, as LiteLLM does."""
    if kwargs.get("api_key") is not None and kwargs.get("api_base") is not None:
        return kwargs  # both given (a client with a key and a base): nothing to copy
    resolved = dict(kwargs)
    if resolved.get("api_key") is None:
        resolved["api_key"] = os.environ.get("OPENAI_API_KEY")
    if resolved.get("api_base") is None:
        resolved["api_base"] = (os.environ.get("OPENAI_API_BASE") or os.environ.get("OPENAI_BASE_URL")
                                or DEFAULT_API_BASE)
    return resolved


def _headers(request: HTTPRequest) -> dict[str, str]:
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    if request.api_key:
        headers["Authorization"] = f"Bearer {request.api_key}"
    return headers


def _verify(request: HTTPRequest) -> ssl.SSLContext | bool:
    """How the sync pool checks TLS: as httpx does by default for ``https://``; for a
    plain ``http://`` base (a local server), a context that is never used, made without
    loading the CA bundle (50-150 ms per pool, most of a cold CLI call's work).  It still
    requires a certificate and trusts no CA: were TLS ever spoken through it, it would
    refuse, never skip the check."""
    if request.api_base.startswith("https://"):
        return True
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def _new_session(request: HTTPRequest) -> aiohttp.ClientSession:
    import aiohttp  # only for async calls: a sync process does not pay its import

    return aiohttp.ClientSession(headers=_headers(request), connector=aiohttp.TCPConnector(limit=_POOL_SIZE))


def _timeout(request: HTTPRequest) -> float:
    return request.timeout if request.timeout is not None else _DEFAULT_TIMEOUT


def _parsed(status: int, headers: Mapping[str, str], body: bytes, model: str) -> Any:
    """The JSON body of a successful reply; the mapped error of a failed one."""
    if status >= 400:
        raise http_error(status, headers, body, model)
    try:
        return json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace")
        raise malformed(model, f"the reply is not JSON: {text[:100]!r}") from None
