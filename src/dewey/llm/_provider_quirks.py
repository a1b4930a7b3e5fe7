"""Corrections to what LiteLLM reports about a provider's error, read from the answer itself.

LiteLLM rewrites some of what a provider says before it reaches us: it changes status
codes, wraps the provider's words in its own prefixes (or in a ``b'...'`` bytes repr),
and drops retry hints it does not know.  The provider's HTTP answer is still in the
exception's cause chain (the ``httpx`` error LiteLLM raised from), so these functions
read the truth from there.  Pure functions over exceptions and text: no LiteLLM import.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from ._exceptions import LLMError
from ._secrets import redact

__all__ = ["correct", "ended_cleanly", "refused"]

# LiteLLM's own words around the provider's: "litellm.RateLimitError: ", "BadRequestError: ",
# "GeminiException - ", "AzureException RateLimitError - ", "BedrockException: Context
# Window Error - ", "BedrockException Invalid Authentication - ".
_PREFIX = re.compile(
    r"^\s*(?:litellm\.\w+:\s*|\w+Error:\s*|\w+Exception(?:\s+[\w ]+?)?(?::\s*[\w ]+?)?\s+-\s+)")
_SUFFIX = re.compile(r"\.?\s*Handle with `litellm\.\w+`\.?\s*$|\s*Received Model Group=.*$", re.S)
_RETRY_DELAY = re.compile(r'"retryDelay"\s*:\s*"(\d+(?:\.\d+)?)s"')


def ended_cleanly(exc: BaseException) -> bool:
    """Whether ``exc`` is LiteLLM's complaint about a stream whose HTTP body ended
    normally (its terminating chunk, after ``data: [DONE]``) without a ``finish_reason``.

    OpenRouter streams a complete answer, then usage, then ``[DONE]`` and never sets
    ``finish_reason``; LiteLLM raises "Stream ended before a finish_reason was received"
    on that clean end (its ``_should_fail_on_clean_eof``).  The answer is complete: the
    stream is a success.  A connection cut mid-body is a different error, still mapped.
    """
    current: BaseException | None = exc
    for _ in range(10):
        if current is None:
            return False
        if "Stream ended before a finish_reason was received" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def refused(chain: list[BaseException]) -> bool:
    """Whether the provider answered with an HTTP error status.

    LiteLLM raises a Gemini stream's 429 (or 401, 400) on the first read, wrapped in a
    ``MidStreamFallbackError``, although no chunk ever arrived: it is the provider's
    answer to the request, to be mapped by its status, not a stream cut mid-way.
    """
    return _answer(chain) is not None


def correct(error: LLMError, chain: list[BaseException]) -> LLMError:
    """``error`` (an ``LLMError`` mapped from ``chain``) with the provider's own status,
    retry hint and words where LiteLLM changed or dropped them."""
    response = _answer(chain)
    if error.model and "/" in error.model:
        # LiteLLM names its own route ("vertex_ai_beta" for gemini/, "cohere" on some
        # cohere_chat/ errors): report the provider the user named.
        error.provider = error.model.split("/", 1)[0]
    if response is not None and error.status_code is not None:
        # LiteLLM reports Anthropic's 529 "overloaded" as a 500 InternalServerError
        # (SWE-agent/mini-swe-agent#184), Bedrock's 500 as 503 and Gemini's 400
        # API_KEY_INVALID as 401: the status the provider sent is the truth.
        error.status_code = response.status_code
    texts = [_body(link) for link in chain] + [str(link) for link in chain]
    if error.retry_after is None:
        # Gemini says how long to wait only in a google.rpc.RetryInfo detail of the body
        # (no Retry-After header: dcdpr/jp#1061), and LiteLLM drops it: its RateLimitError
        # keeps the body only as text (the recorded answer in Aider-AI/aider#3694).
        error.retry_after = next((float(m.group(1)) for text in texts if text
                                  for m in [_RETRY_DELAY.search(text)] if m), None)
    if response is not None and error.status_code is not None:
        words = next((w for w in map(_words, texts) if w), None) or _plain_words(_body(chain[-1]))
        if words:
            model = error.model or ""
            error.message = redact(f"{model}: {words}" if model else words)
            error.args = (error.message,)
    return error


def _answer(chain: list[BaseException]) -> Any:
    """The provider's HTTP answer: the ``response`` of the transport's own status error
    (httpx's, or the openai SDK's).  LiteLLM's exceptions may carry a response it made
    up (a 500 for a timeout), so theirs are not evidence."""
    for link in reversed(chain):
        kinds = {cls.__name__ for cls in type(link).__mro__}
        if "HTTPStatusError" not in kinds and type(link).__module__.split(".")[0] != "openai":
            continue
        response = getattr(link, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(status, int) and status >= 400:
            return response
    return None


def _body(link: BaseException) -> str:
    response = getattr(link, "response", None)
    try:
        text = response.text if response is not None else ""
    except Exception:  # a streamed answer that was never read
        return ""
    return text if isinstance(text, str) else ""


def _words(text: str) -> str | None:
    """The provider's message in ``text`` (an error body, or LiteLLM's retelling of it)."""
    text = _strip(text)
    if text.startswith(("b'", 'b"')):  # LiteLLM's str() of a body's bytes (Aider-AI/aider#3694)
        try:
            text = _strip(ast.literal_eval(text).decode("utf-8", "replace"))
        except (ValueError, SyntaxError, UnicodeError):
            return None
    try:
        body = json.loads(text)
    except ValueError:
        return None
    return _message_in(body)


def _plain_words(text: str) -> str | None:
    """A body that is plain words (some servers send text under a JSON content-type,
    which LiteLLM reports as just "Error code: 429")."""
    text = text.strip()
    return text[:500] if text and text[0] not in "{[<" else None


def _strip(text: str) -> str:
    text = text.strip()
    while (stripped := _PREFIX.sub("", text, count=1)) != text:
        text = stripped
    return _SUFFIX.sub("", text).strip()


def _message_in(body: Any) -> str | None:
    """``error.message``, ``error`` (a string) or ``message`` of a JSON error body."""
    if isinstance(body, list) and body:  # Gemini sometimes wraps its error in a list
        body = body[0]
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    if isinstance(error, str):
        return error
    message = body.get("message") or body.get("Message")
    return message if isinstance(message, str) else None
