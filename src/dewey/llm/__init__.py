"""dewey-llm: one dependable, cost-aware interface to every large language model.

>>> from dewey.llm import LiteLLMClient, LiteLLMConfig, Message
>>> client = LiteLLMClient()                                        # doctest: +SKIP
>>> client.generate_completion([Message(role="user", content="Hello!")])  # doctest: +SKIP

Importing this package is fast: LiteLLM is loaded on the first call that needs it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> private module that defines it. Resolved on first access (PEP 562), so
# `import dewey.llm` stays cheap and never imports LiteLLM.
_EXPORTS = {
    "LiteLLMClient": "_client",
    "AsyncLiteLLMClient": "_async_client",
    "ChatResponse": "_response",
    "CompletionStream": "_stream",
    "AsyncCompletionStream": "_stream",
    "LiteLLMConfig": "_config",
    "FallbackModel": "_config",
    "Budget": "_config",
    "RateLimit": "_config",
    "Message": "_messages",
    "tool": "_tools",
    "Attempt": "_exceptions",
    "LLMError": "_exceptions",
    "LLMConfigError": "_exceptions",
    "LLMBudgetExceededError": "_exceptions",
    "LLMAuthenticationError": "_exceptions",
    "LLMConnectionError": "_exceptions",
    "LLMTimeoutError": "_exceptions",
    "LLMRateLimitError": "_exceptions",
    "LLMResponseError": "_exceptions",
    "LLMBadRequestError": "_exceptions",
    "LLMContextWindowError": "_exceptions",
    "LLMServerError": "_exceptions",
    "LLMOutputValidationError": "_exceptions",
    "ProviderError": "_exceptions",
    "LedgerUnavailableError": "_exceptions",
    "UsageSummary": "_usage",
    "LoggedResponse": "_usage",
    "Conversation": "_conversation",
    "AsyncConversation": "_conversation",
}

__all__ = [
    "AsyncCompletionStream",
    "AsyncConversation",
    "AsyncLiteLLMClient",
    "Attempt",
    "Budget",
    "ChatResponse",
    "CompletionStream",
    "Conversation",
    "FallbackModel",
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
    "LiteLLMClient",
    "LiteLLMConfig",
    "LoggedResponse",
    "Message",
    "ProviderError",
    "RateLimit",
    "UsageSummary",
    "tool",
]

if TYPE_CHECKING:
    from ._async_client import AsyncLiteLLMClient
    from ._client import LiteLLMClient
    from ._config import Budget, FallbackModel, LiteLLMConfig, RateLimit
    from ._conversation import AsyncConversation, Conversation
    from ._exceptions import (
        Attempt,
        LedgerUnavailableError,
        LLMAuthenticationError,
        LLMBadRequestError,
        LLMBudgetExceededError,
        LLMConfigError,
        LLMConnectionError,
        LLMContextWindowError,
        LLMError,
        LLMOutputValidationError,
        LLMRateLimitError,
        LLMResponseError,
        LLMServerError,
        LLMTimeoutError,
        ProviderError,
    )
    from ._messages import Message
    from ._response import ChatResponse
    from ._stream import AsyncCompletionStream, CompletionStream
    from ._tools import tool
    from ._usage import LoggedResponse, UsageSummary


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dewey.llm' has no attribute {name!r}")
    value = getattr(import_module(f"dewey.llm.{module}"), name)
    if isinstance(value, type):
        # As httpx does: users and tracebacks see `dewey.llm.LiteLLMClient`, not a
        # private path that may move. Pickle finds the class here too.
        value.__module__ = "dewey.llm"
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
