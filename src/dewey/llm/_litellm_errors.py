"""Mapping LiteLLM, provider SDK and httpx exceptions onto the ``LLMError`` tree.

Used by the LiteLLM transport, next to which it lives.  Mapping goes by class names,
status codes and the exception's cause chain, never by importing LiteLLM's classes:
that is also more truthful than LiteLLM's class choice (a refused connection arrives
as a 500 ``InternalServerError``).
"""

from __future__ import annotations

import re
from typing import Any

from . import _provider_quirks
from ._exceptions import (
    LLMAuthenticationError,
    LLMBadRequestError,
    LLMConnectionError,
    LLMContextWindowError,
    LLMError,
    LLMRateLimitError,
    LLMResponseError,
    LLMServerError,
    LLMTimeoutError,
    ProviderError,
)
from ._retry_after import parse_retry_after

__all__ = ["from_provider_error", "provider_error"]

_AUTH_NAMES = {"AuthenticationError", "PermissionDeniedError"}
_TIMEOUT_NAMES = {"Timeout", "APITimeoutError", "TimeoutException", "ReadTimeout",
                  "ConnectTimeout", "TimeoutError", "WriteTimeout", "PoolTimeout"}
_CONNECTION_NAMES = {"APIConnectionError", "ConnectError", "ConnectionError",
                     "RemoteProtocolError", "ConnectionRefusedError", "ServiceUnavailableError"}
_CONTEXT_NAMES = {"ContextWindowExceededError"}
_CONTEXT_PHRASES = ("context length", "context window", "maximum context", "too many tokens",
                    "prompt is too long", "context_length_exceeded")


# What Python raises on a wrong argument.  In a chain that holds no answer from the
# provider, it means LiteLLM failed while building the request (a string where it does
# arithmetic, a schema it cannot read), whatever status it then reports: the caller's to
# fix, so never a retryable 5xx.
_ARGUMENT_ERRORS = (TypeError, ValueError, LookupError, AttributeError)
# Signs that the provider did answer: an HTTP error status, or a body that failed to parse.
_ANSWER_NAMES = {"HTTPStatusError", "APIStatusError", "JSONDecodeError", "UnicodeDecodeError"}


def _failed_before_sending(chain: list[BaseException], names: set[str]) -> bool:
    if names & _ANSWER_NAMES:
        return False
    if any(200 <= (_status_of(link) or 0) < 300 for link in chain):
        return False  # LiteLLM keeps the 200 of an answer it could not read
    return any(type(link).__module__ == "builtins" and isinstance(link, _ARGUMENT_ERRORS)
               for link in chain)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _status_of(exc: BaseException) -> int | None:
    for candidate in (getattr(exc, "status_code", None),
                      getattr(getattr(exc, "response", None), "status_code", None)):
        if isinstance(candidate, int) and candidate > 0:
            return candidate
    return None


def _headers_of(exc: BaseException) -> Any:
    for link in _chain(exc):
        headers = getattr(getattr(link, "response", None), "headers", None)
        if headers is None:
            headers = getattr(link, "headers", None)
        if headers:
            return headers
        litellm_headers = getattr(link, "litellm_response_headers", None)
        if litellm_headers:
            return litellm_headers
    return None


def from_provider_error(exc: BaseException, *, model: str, provider: str | None = None) -> LLMError:
    """Map any LiteLLM, provider SDK or transport exception to the typed tree above.

    Mapping goes by the cause chain first: LiteLLM wraps a refused connection in a 500
    ``InternalServerError`` and a broken stream in ``MidStreamFallbackError``.  The
    error's ``__cause__`` is a :class:`ProviderError`, never ``exc`` itself; raise the
    result outside the ``except`` block that caught ``exc``, or Python makes ``exc``
    its ``__context__``.
    """
    if isinstance(exc, LLMError):
        return exc
    chain = _chain(exc)
    names = set().union(*(_names(link) for link in chain))
    status = next((s for s in map(_status_of, chain) if s), None)
    provider = provider or getattr(exc, "llm_provider", None) or None
    message = _message_of(exc, model)
    retry_after = parse_retry_after(_headers_of(exc))
    text = " ".join(str(link) for link in chain).lower()
    kwargs: dict[str, Any] = {"model": model, "provider": provider, "retry_after": retry_after}

    cls: type[LLMError]
    if names & _TIMEOUT_NAMES or status == 408:
        cls, status = LLMTimeoutError, status if status == 408 else None
    elif names & {"ConnectError", "ConnectionRefusedError", "RemoteProtocolError"} or (
        "connection error" in text and status in (None, 500)
    ):
        cls, status = LLMConnectionError, None
    elif "MidStreamFallbackError" in names and not _provider_quirks.refused(chain):
        cls = LLMServerError
    elif names & _AUTH_NAMES or status in (401, 403):
        cls = LLMAuthenticationError
    elif "RateLimitError" in names or status == 429:
        cls = LLMRateLimitError
    elif names & _CONTEXT_NAMES or (status == 400 and any(p in text for p in _CONTEXT_PHRASES)):
        cls = LLMContextWindowError
    elif status in (400, 404, 409, 413, 422) or names & {"BadRequestError", "NotFoundError",
                                                       "UnprocessableEntityError"}:
        cls = LLMBadRequestError if status != 409 else LLMServerError
    elif _failed_before_sending(chain, names):
        cls, status = LLMBadRequestError, None
        message += (" (raised inside LiteLLM with no answer from the provider: a problem "
                    "with the call's arguments, so it is not retried)")
    elif (status is not None and status >= 500) or names & {"InternalServerError",
                                                           "ServiceUnavailableError"}:
        cls = LLMServerError
    elif names & _CONNECTION_NAMES:
        cls, status = LLMConnectionError, None
    else:
        cls = LLMResponseError
    error = _provider_quirks.correct(cls(message, status_code=status, **kwargs), chain)
    error.__cause__ = provider_error(exc)
    error.__suppress_context__ = True
    return error


def _message_of(exc: BaseException, model: str) -> str:
    text = str(exc).strip() or type(exc).__name__
    # LiteLLM prefixes messages with "litellm.XError: XError: OpenAIException - ...":
    # keep the provider's words, which are the useful part.
    text = re.sub(r"^(litellm\.\w+:\s*)?(\w+Error:\s*)?", "", text)
    if len(text) > 500:
        text = text[:500] + "..."
    return f"{model}: {text}"


def provider_error(exc: BaseException) -> ProviderError:
    """The surrogate of ``exc``: its type, and the words of its whole cause chain."""
    chain = _chain(exc)
    words = "; caused by ".join(
        f"{_qualified(link)}: {str(link).strip()}" if link is not exc else str(exc).strip()
        for link in chain[:4])
    if len(words) > 2000:
        words = words[:2000] + "..."
    return ProviderError(_qualified(exc), words, next((s for s in map(_status_of, chain) if s), None),
                         _headers_of(exc))


def _qualified(exc: BaseException) -> str:
    kind = type(exc)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
