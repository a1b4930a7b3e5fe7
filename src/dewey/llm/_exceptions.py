"""The errors dewey-llm raises: the same tree for every provider.

    LLMError
    ├── LLMConfigError            bad configuration or arguments; fix and retry
    ├── LLMBudgetExceededError    a budget is spent; nothing was sent
    ├── LLMAuthenticationError    401/403: missing, wrong or unauthorised key
    ├── LLMConnectionError        the provider could not be reached
    │   └── LLMTimeoutError       ... or did not answer in time
    ├── LLMRateLimitError         429: slow down (see ``retry_after``)
    └── LLMResponseError          the provider answered with an error or garbage
        ├── LLMBadRequestError    400/404/422: the request itself is wrong
        │   └── LLMContextWindowError  the prompt does not fit the model
        └── LLMServerError        5xx, or a stream cut mid-way

Every error carries ``model``, ``provider``, ``status_code`` and ``retry_after`` where
known, and ``attempts``: the history of every try the reliability loop made.  An error
mapped from a provider's exception has as ``__cause__`` a :class:`ProviderError` that
describes it (type, message, status, headers) without keys.  Keys never appear in an
error, nor in anything chained to it.

This module must not import LiteLLM: mapping works on class names, status codes and
the exception's cause chain, which is also more truthful than LiteLLM's class choice
(a refused connection arrives as a 500 ``InternalServerError``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from . import _provider_quirks
from ._secrets import redact, safe_headers

__all__ = [
    "Attempt",
    "LLMAuthenticationError",
    "LLMBadRequestError",
    "LLMBudgetExceededError",
    "LLMConfigError",
    "LLMConnectionError",
    "LLMContextWindowError",
    "LLMError",
    "LLMRateLimitError",
    "LLMResponseError",
    "LLMServerError",
    "LLMTimeoutError",
    "ProviderError",
]


@dataclass(frozen=True)
class Attempt:
    """One try of one model, as the reliability loop saw it."""

    model: str
    number: int
    outcome: str  # "ok" or the error class name
    status_code: int | None = None
    error: str | None = None
    latency: float = 0.0
    waited: float = 0.0  # seconds slept after this attempt, before the next one

    def __str__(self) -> str:
        status = f" {self.status_code}" if self.status_code else ""
        waited = f", waited {self.waited:.2f}s" if self.waited else ""
        return f"{self.model} #{self.number}: {self.outcome}{status} ({self.latency:.2f}s{waited})"


class LLMError(Exception):
    """Base of every error dewey-llm raises."""

    def __init__(
        self,
        message: str,
        *,
        model: str | None = None,
        provider: str | None = None,
        status_code: int | None = None,
        retry_after: float | None = None,
        attempts: Iterable[Attempt] = (),
    ) -> None:
        super().__init__(redact(message))
        self.message = redact(message)
        self.model = model
        self.provider = provider
        self.status_code = status_code
        self.retry_after = retry_after
        self.attempts: list[Attempt] = list(attempts)

    def __str__(self) -> str:
        text = self.message
        if len(self.attempts) > 1:
            history = "; ".join(str(a) for a in self.attempts)
            text = f"{text} [after {len(self.attempts)} attempts: {history}]"
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, model={self.model!r}, "
            f"status_code={self.status_code!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep errors picklable (multiprocessing pools) with their attributes.
        return (_rebuild, (type(self), self.message, self.__dict__))


def _rebuild(cls: type[LLMError], message: str, state: dict[str, Any]) -> LLMError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class LLMConfigError(LLMError, ValueError):
    """The configuration or an argument is invalid. The message names the fix."""


class LLMBudgetExceededError(LLMError):
    """A configured budget is spent: the call was refused before anything was sent."""


class LLMAuthenticationError(LLMError):
    """The provider refused the credentials (401/403), or a needed key is missing."""


class LLMConnectionError(LLMError):
    """The provider could not be reached."""


class LLMTimeoutError(LLMConnectionError):
    """The provider did not answer within ``timeout`` (or the call's ``deadline``)."""


class LLMRateLimitError(LLMError):
    """The provider asked us to slow down (429). ``retry_after`` says for how long."""


class LLMResponseError(LLMError):
    """The provider answered with an error, or with something that is not a valid answer."""


class LLMBadRequestError(LLMResponseError):
    """The provider rejected the request itself (400, 404, 422): retrying cannot help."""


class LLMContextWindowError(LLMBadRequestError):
    """The prompt is longer than the model's context window."""


class LLMServerError(LLMResponseError):
    """The provider failed (5xx), or a stream broke after it had started."""


class ProviderError(Exception):
    """A provider's exception, retold without keys: the ``__cause__`` of a mapped error.

    The original LiteLLM or SDK exception is not chained: its message can echo the key
    ("Incorrect API key provided: sk-..."), its ``request`` carries the ``Authorization``
    header, and tracebacks, ``logging.exception`` and pickling carry everything chained.
    """

    def __init__(self, type_name: str, message: str, status_code: int | None = None,
                 headers: Any = None) -> None:
        self.type_name = type_name
        self.message = redact(message)
        self.status_code = status_code
        self.headers = safe_headers(headers)
        super().__init__(f"{type_name}: {self.message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.type_name, self.message, self.status_code, self.headers))

    @classmethod
    def describing(cls, exc: BaseException) -> ProviderError:
        """The surrogate of ``exc``: its type, and the words of its whole cause chain."""
        chain = _chain(exc)
        words = "; caused by ".join(
            f"{_qualified(link)}: {str(link).strip()}" if link is not exc else str(exc).strip()
            for link in chain[:4])
        if len(words) > 2000:
            words = words[:2000] + "..."
        return cls(_qualified(exc), words, next((s for s in map(_status_of, chain) if s), None),
                   _headers_of(exc))


def _qualified(exc: BaseException) -> str:
    kind = type(exc)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


# --- mapping provider exceptions --------------------------------------------------------

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


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    if not headers:
        return None
    get = headers.get if hasattr(headers, "get") else dict(headers).get
    millis = get("retry-after-ms") or get("Retry-After-Ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = get("retry-after") or get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        import time

        return max(0.0, parsedate_to_datetime(str(value)).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
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
    message = _describe(exc, model)
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
    error.__cause__ = ProviderError.describing(exc)
    error.__suppress_context__ = True
    return error


def _describe(exc: BaseException, model: str) -> str:
    text = str(exc).strip() or type(exc).__name__
    # LiteLLM prefixes messages with "litellm.XError: XError: OpenAIException - ...":
    # keep the provider's words, which are the useful part.
    text = re.sub(r"^(litellm\.\w+:\s*)?(\w+Error:\s*)?", "", text)
    if len(text) > 500:
        text = text[:500] + "..."
    return f"{model}: {text}"
