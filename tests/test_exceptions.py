"""The error classes: the tree drawn in ``_exceptions.py``, what they print, pickling,
and reading ``Retry-After``.  (Mapping provider errors is tested through the client.)"""

from __future__ import annotations

import pickle
import time
from email.utils import formatdate

import pytest

import dewey.llm as llm
from dewey.llm import (
    Attempt,
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
)
from dewey.llm._retry_after import parse_retry_after

# Each class and its parent, as drawn in the module docstring.
TREE: dict[type[LLMError], type[Exception]] = {
    LLMError: Exception,
    LLMConfigError: LLMError,
    LLMBudgetExceededError: LLMError,
    LLMAuthenticationError: LLMError,
    LLMConnectionError: LLMError,
    LLMTimeoutError: LLMConnectionError,
    LLMRateLimitError: LLMError,
    LLMResponseError: LLMError,
    LLMBadRequestError: LLMResponseError,
    LLMContextWindowError: LLMBadRequestError,
    LLMServerError: LLMResponseError,
    LLMOutputValidationError: LLMResponseError,
}


@pytest.mark.parametrize(("cls", "parent"), TREE.items(), ids=[cls.__name__ for cls in TREE])
def test_the_tree(cls: type[LLMError], parent: type[Exception]) -> None:
    assert issubclass(cls, parent)
    # Its ancestors among the errors are exactly its line in the drawing, up to LLMError.
    line: set[type[Exception]] = {cls}
    current = cls
    while current is not LLMError:
        above = TREE[current]
        assert issubclass(above, LLMError)  # only LLMError's parent lies outside the tree
        current = above
        line.add(current)
    assert {base for base in cls.__mro__ if base in TREE} == line
    assert cls.__doc__  # every error says when it is raised


def test_siblings_are_not_confused() -> None:
    assert not issubclass(LLMTimeoutError, LLMResponseError)
    assert not issubclass(LLMRateLimitError, LLMResponseError)
    assert not issubclass(LLMServerError, LLMBadRequestError)
    assert not issubclass(LLMAuthenticationError, LLMBadRequestError)


def test_a_config_error_is_also_a_value_error() -> None:
    # Code that guards argument checks with `except ValueError` keeps working.
    assert issubclass(LLMConfigError, ValueError)
    with pytest.raises(ValueError):
        raise LLMConfigError("timeout must be positive: set timeout > 0")


def test_every_error_class_is_public() -> None:
    assert {name for name in llm.__all__ if name.startswith("LLM")} == {cls.__name__ for cls in TREE}
    assert all(getattr(llm, cls.__name__) is cls for cls in TREE)


def test_attributes_default_to_unknown() -> None:
    error = LLMServerError("gpt-4o: overloaded")
    assert (error.message, error.model, error.provider, error.status_code, error.retry_after,
            error.attempts) == ("gpt-4o: overloaded", None, None, None, None, [])


def attempts() -> list[Attempt]:
    return [Attempt("openai/gpt-4o", 1, "LLMServerError", 503, "overloaded", latency=0.25, waited=1.5),
            Attempt("openai/gpt-4o", 2, "LLMServerError", 503, "overloaded", latency=0.5),
            Attempt("anthropic/claude-3-5-haiku", 1, "LLMRateLimitError", 429, latency=0.125)]


def test_str_adds_the_attempt_history_when_there_was_more_than_one() -> None:
    one = LLMServerError("gpt-4o: overloaded", attempts=attempts()[:1])
    assert str(one) == "gpt-4o: overloaded"
    many = LLMRateLimitError("claude: slow down", attempts=attempts())
    assert str(many) == (
        "claude: slow down [after 3 attempts: "
        "openai/gpt-4o #1: LLMServerError 503 (0.25s, waited 1.50s); "
        "openai/gpt-4o #2: LLMServerError 503 (0.50s); "
        "anthropic/claude-3-5-haiku #1: LLMRateLimitError 429 (0.12s)]")


def test_an_attempt_without_status_prints_without_one() -> None:
    assert str(Attempt("openai/gpt-4o", 1, "LLMTimeoutError", latency=30.0)) == \
        "openai/gpt-4o #1: LLMTimeoutError (30.00s)"


def test_repr_names_the_class_message_model_and_status() -> None:
    error = LLMBadRequestError("gpt-4o: unknown parameter", model="openai/gpt-4o", status_code=400)
    assert repr(error) == ("LLMBadRequestError('gpt-4o: unknown parameter', "
                           "model='openai/gpt-4o', status_code=400)")


@pytest.mark.parametrize("cls", list(TREE), ids=[cls.__name__ for cls in TREE])
def test_pickling_keeps_class_and_attributes(cls: type[LLMError]) -> None:
    error = cls("gpt-4o: busy", model="openai/gpt-4o", provider="openai", status_code=429,
                retry_after=2.5, attempts=attempts())
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert (copy.message, copy.model, copy.provider, copy.status_code, copy.retry_after) == (
        "gpt-4o: busy", "openai/gpt-4o", "openai", 429, 2.5)
    assert copy.attempts == attempts()
    assert (str(copy), repr(copy), copy.args) == (str(error), repr(error), error.args)


@pytest.mark.parametrize(("headers", "seconds"), [
    ({"retry-after": "7"}, 7.0),
    ({"Retry-After": "1.5"}, 1.5),
    ({"retry-after-ms": "250"}, 0.25),
    ({"retry-after-ms": "250", "retry-after": "7"}, 0.25),  # the precise one wins
    ({"retry-after-ms": "soon", "retry-after": "7"}, 7.0),  # an unreadable one is skipped
    ({"retry-after": "-3"}, 0.0),
    ({"retry-after": "whenever"}, None),
    ({"x-other": "1"}, None),
    ({}, None),
    (None, None),
    ([("retry-after", "4")], 4.0),  # header pairs, as some clients give them
])
def test_parse_retry_after(headers: object, seconds: float | None) -> None:
    assert parse_retry_after(headers) == seconds


def test_parse_retry_after_an_http_date() -> None:
    in_a_minute = formatdate(time.time() + 60, usegmt=True)
    assert parse_retry_after({"retry-after": in_a_minute}) == pytest.approx(60, abs=2)
    past = formatdate(time.time() - 60, usegmt=True)
    assert parse_retry_after({"retry-after": past}) == 0.0
