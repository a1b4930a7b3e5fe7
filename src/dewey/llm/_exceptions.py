"""The errors dewey-llm raises: the same tree for every provider.

    LLMError
    ├── LLMConfigError            bad configuration or arguments; fix and retry
    ├── LLMBudgetExceededError    a budget is spent; nothing was sent
    ├── LedgerUnavailableError    the usage ledger could not be read
    ├── LLMAuthenticationError    401/403: missing, wrong or unauthorised key
    ├── LLMConnectionError        the provider could not be reached
    │   └── LLMTimeoutError       ... or did not answer in time
    ├── LLMRateLimitError         429: slow down (see ``retry_after``)
    └── LLMResponseError          the provider answered with an error or garbage
        ├── LLMBadRequestError    400/404/422: the request itself is wrong
        │   └── LLMContextWindowError  the prompt does not fit the model
        ├── LLMServerError        5xx, or a stream cut mid-way
        └── LLMOutputValidationError  a structured answer that does not match its schema

Every error carries ``model``, ``provider``, ``status_code`` and ``retry_after`` where
known, and ``attempts``: the history of every attempt the reliability loop made.  An error
mapped from a provider's exception has as ``__cause__`` a :class:`ProviderError` that
describes it (type, message, status, headers) without keys.  Keys never appear in an
error, nor in anything chained to it.

This module holds the classes only: mapping a provider's exceptions onto them is the
transport's job (``_litellm_errors`` for LiteLLM), as httpx maps in its transports.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

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
    "LLMOutputValidationError",
    "LLMRateLimitError",
    "LLMResponseError",
    "LLMServerError",
    "LLMTimeoutError",
    "LedgerUnavailableError",
    "ProviderError",
]


@dataclass(frozen=True)
class Attempt:
    """One attempt at one model, as the reliability loop saw it: the recorded history."""

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


class LedgerUnavailableError(LLMError):
    """The usage ledger could not be read (database down, file unreadable)."""


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


class LLMOutputValidationError(LLMResponseError):
    """A structured answer (``response_format=SomeModel``) did not match its schema, after
    the repairs ``max_repairs`` allows.  ``text`` is the last answer as the model wrote it,
    ``errors`` what is wrong with it, one line per problem."""

    def __init__(self, message: str, *, text: str = "", errors: Iterable[str] = (),
                 **details: Any) -> None:
        super().__init__(message, **details)
        self.text = text
        self.errors: list[str] = list(errors)


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
