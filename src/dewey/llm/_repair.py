"""The follow-up call that repairs a structured answer that did not validate.

Not a retry: the answer arrived, was paid for and is in the ledger (its outcome
``LLMOutputValidationError``).  The follow-up is a new call, with its own retry plan and
ledger row, whose conversation holds that answer and what is wrong with it, so that the
model corrects it rather than tries its luck again.  What is wrong, and the messages that
say so, are ``_structured``'s; the client sends the follow-up like any call.
"""

from __future__ import annotations

import dataclasses

from ._request import Request
from ._response import ChatResponse
from ._structured import invalid_answer, output_errors, repair_messages

__all__ = ["repair_request"]


def repair_request(request: Request, response: ChatResponse, max_repairs: int) -> Request | None:
    """The request that repairs ``response`` to ``request`` (None: the answer validated, or
    none was asked for), or ``LLMOutputValidationError`` once ``max_repairs`` follow-ups
    have been made.  Its budget is not yet reserved, nor its trace started."""
    if request.output is None:  # most calls: nothing to validate, nothing to read
        return None
    errors = output_errors(response)
    if not errors:
        return None
    if request.repairs >= max_repairs:
        tries = request.repairs + 1
        raise invalid_answer(request.model, request.output, response, errors,
                             f"{tries} {'try' if tries == 1 else 'tries'}, "
                             f"max_repairs={max_repairs}")
    messages = repair_messages(request.messages, response, errors)
    return dataclasses.replace(
        request, payload={**request.payload, "messages": messages}, messages=messages,
        repairs=request.repairs + 1, routes=[], estimate=0.0, hold=None, trace=None)
