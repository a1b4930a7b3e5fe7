"""The seam between the client and whatever sends requests: the ``Transport`` protocol.

A transport does I/O only.  It takes OpenAI-style arguments (``model``, ``messages`` or
``input``, ``api_key``, ``api_base``, ``api_version``, ``timeout``, generation
parameters) and returns OpenAI-shaped responses and chunks.  It raises only
:class:`~dewey.llm.LLMError` (it maps its own errors, in ``__next__`` of a stream too),
and never retries: the client's one retry loop does.  Facts about models (prices,
context windows) are the :class:`~dewey.llm._catalog.Catalog`'s, not the transport's.

Reading a stream up to its first token (so that a failure before any text is an
ordinary, retryable failure of the attempt) is the client's job, the same for every
transport.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

__all__ = ["Transport"]


class Transport(Protocol):
    """Sends one request and returns the provider's answer; raises only ``LLMError``."""

    name: str
    """What sends the requests: ``"native"`` (the OpenAI wire), ``"litellm"`` or ``"local"`` (llama.cpp in process)."""

    def complete(self, kwargs: dict[str, Any]) -> Any:
        """A chat completion response."""

    def stream(self, kwargs: dict[str, Any]) -> Iterator[Any]:
        """The chunks of a streamed chat completion (an iterator with ``close()``)."""

    def embed(self, kwargs: dict[str, Any]) -> Any:
        """An embedding response: ``data[i].embedding`` and ``usage``."""

    async def acomplete(self, kwargs: dict[str, Any]) -> Any:
        """:meth:`complete`, awaited."""

    async def astream(self, kwargs: dict[str, Any]) -> AsyncIterator[Any]:
        """:meth:`stream`, awaited: an async iterator with ``aclose()``."""

    async def aembed(self, kwargs: dict[str, Any]) -> Any:
        """:meth:`embed`, awaited."""

    def assemble(self, chunks: list[Any], messages: list[dict[str, Any]]) -> Any:
        """One response made of a whole stream's chunks (to cache and price it): a
        ``ChatResponse``, as :meth:`complete` and :meth:`embed` return."""
