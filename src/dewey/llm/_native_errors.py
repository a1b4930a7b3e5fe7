"""How the native transport's failures below HTTP become ``LLMError``s: httpx's (sync)
and aiohttp's (async) exceptions mapped to the same classes, without their causes (both
libraries' exceptions hold the request, and so its Authorization header), and a stream
that ended before it finished.  HTTP error replies are :func:`._openai_wire.http_error`'s.
"""

from __future__ import annotations

import httpx

from ._exceptions import LLMConnectionError, LLMError, LLMServerError, LLMTimeoutError
from ._openai_wire import PROVIDER, EventReader, HTTPRequest

__all__ = ["aiohttp_error", "check_finished", "transport_error"]


def check_finished(reader: EventReader, model: str) -> None:
    """A body that ended cleanly but before ``[DONE]`` or any finish_reason was cut short
    (a server that closes after its finish chunk without ``[DONE]`` did finish)."""
    if not (reader.done or reader.finished):
        raise LLMServerError(f"{model}: the stream ended before [DONE]", model=model,
                             provider=PROVIDER)


def transport_error(exc: httpx.HTTPError, model: str, request: HTTPRequest, *,
                     streaming: bool) -> LLMError:
    """The LLMError for a failure below HTTP (refused, timed out, cut), without its cause:
    httpx's exceptions hold the request, and so its Authorization header."""
    if isinstance(exc, httpx.TimeoutException):
        return _timed_out(model, request, exc)
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
        return _broken(model, request, exc, streaming=streaming)
    return _unreachable(model, request, exc)


def aiohttp_error(exc: BaseException, model: str, request: HTTPRequest, *, streaming: bool) -> LLMError:
    """:func:`transport_error` for aiohttp's exceptions (which hold the request too)."""
    import asyncio

    import aiohttp

    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return _timed_out(model, request, exc)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _unreachable(model, request, exc)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | aiohttp.ClientOSError):
        return _broken(model, request, exc, streaming=streaming)
    return _unreachable(model, request, exc)


def _timed_out(model: str, request: HTTPRequest, exc: BaseException) -> LLMError:
    return LLMTimeoutError(f"{model}: no answer from {request.api_base}{request.path} in time ({exc})",
                           model=model, provider=PROVIDER)


def _broken(model: str, request: HTTPRequest, exc: BaseException, *, streaming: bool) -> LLMError:
    where = f"{request.api_base}{request.path}"
    if streaming:  # text may have been delivered: the answer is broken, not unreachable
        return LLMServerError(f"{model}: the stream from {where} broke off ({exc})", model=model,
                              provider=PROVIDER)
    return LLMConnectionError(f"{model}: the connection to {where} broke before the reply was complete "
                              f"({exc})", model=model, provider=PROVIDER)


def _unreachable(model: str, request: HTTPRequest, exc: BaseException) -> LLMError:
    return LLMConnectionError(f"{model}: could not reach {request.api_base}{request.path} ({exc})",
                              model=model, provider=PROVIDER)
