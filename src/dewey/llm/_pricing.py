"""``Pricing``: what a call cost, by one rule.

1. The figure the server reported, when it gives one above 0: a LiteLLM proxy's
   ``x-litellm-response-cost`` header, or ``usage.cost`` in a stream's last chunk (the
   proxy adds it with ``include_cost_in_streaming_usage``; OpenRouter always does).
2. Else our price for the model name: the config's ``prices`` first (matched with or
   without a provider prefix, ``_model_names``), then LiteLLM's price map (``Catalog``;
   LiteLLM itself for pricing that is not per token).
3. Else the call is unpriced: it is recorded at $0, which budgets cannot count, so the
   client warns once per model, and ``dewey-llm usage`` and ``config check`` list it.

``local/`` models run in this process and cost nothing: the catalog prices them at $0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ._catalog import Catalog, NotPriced
from ._model_names import match_name
from ._response import usage_counts

if TYPE_CHECKING:
    from ._config import Price

__all__ = ["COST_HEADER", "Pricing", "reported_cost"]

COST_HEADER = "x-litellm-response-cost"
# LiteLLM's SDK keeps a proxy's reply headers in _hidden_params["additional_headers"],
# each prefixed "llm_provider-" (litellm/cost_calculator.py reads the same key).
_LITELLM_COST_HEADER = "llm_provider-" + COST_HEADER


def reported_cost(response: Any) -> float | None:
    """The USD cost the server reported for ``response`` (rule 1), None when it gave none
    or gave 0 (a proxy that cannot price a model says 0, which is no figure)."""
    hidden = getattr(response, "_hidden_params", None)
    values: list[Any] = []
    if isinstance(hidden, dict):
        values.append(hidden.get("reported_cost"))
        headers = hidden.get("additional_headers")
        if isinstance(headers, Mapping):
            values.append(headers.get(_LITELLM_COST_HEADER))
    usage = _field(response, "usage")
    values.append(_field(usage, "cost"))
    for value in values:
        cost = _number(value)
        if cost is not None and cost > 0:
            return cost
    return None


def _field(item: Any, name: str) -> Any:
    # A dict's own get: a ResponseData's would wrap the usage in a copy just to read a number.
    if isinstance(item, dict):
        return dict.get(item, name)
    return item.get(name) if isinstance(item, Mapping) else getattr(item, name, None)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and number != float("inf") else None  # not NaN, finite


class Pricing:
    """Prices of model names: the config's ``prices``, then the price map."""

    def __init__(self, catalog: Catalog, prices: Mapping[str, Price] | None = None) -> None:
        self.catalog = catalog
        self.prices = dict(prices or {})

    def configured(self, model: str) -> Price | None:
        """The config's price for ``model``, if one applies to it."""
        if not self.prices:
            return None
        name = match_name(model, self.prices)
        return self.prices[name] if name is not None else None

    def is_priced(self, model: str) -> bool:
        """Whether rule 2 has a price for ``model`` (a ``local/`` model is free)."""
        price = self.configured(model)
        target = price.price_as if price is not None else model
        if target is None or self.catalog.is_priced(target):
            return True
        try:
            self.catalog.token_cost(target, 0, 0)
        except NotPriced:  # priced, but not per token: LiteLLM prices it
            return True
        return False

    def unpriced(self, models: Iterable[str]) -> list[str]:
        """Those of ``models`` without a price, in order, without repeats."""
        return [model for model in dict.fromkeys(models) if not self.is_priced(model)]

    def token_cost(self, model: str, prompt: int, completion: int, cached: int = 0) -> float | None:
        """USD for these token counts of ``model`` (rule 2); None when it is unpriced.
        Raises :class:`NotPriced` for pricing the map has but not per token."""
        price = self.configured(model)
        rates = price.per_token() if price is not None else None
        if rates is not None:
            return prompt * rates[0] + completion * rates[1]
        # "price_as" names a model of the price map: its price, cache-read rates and all.
        target = price.price_as if price is not None and price.price_as else model
        cost = self.catalog.token_cost(target, prompt, completion, cached)  # may raise NotPriced
        return cost if self.catalog.is_priced(target) else None

    def estimate(self, model: str, prompt: int, answer: int, kind: str = "completion") -> float:
        """USD a call of these token counts would cost ``model`` (0 when it is unpriced),
        for budget holds: rule 2 alone, since nothing was reported yet."""
        try:
            return self.token_cost(model, prompt, answer) or 0.0
        except NotPriced:
            from ._litellm import litellm_cost
            from ._response import ResponseData

            usage = {"usage": {"prompt_tokens": prompt, "completion_tokens": answer}}
            return litellm_cost(ResponseData(usage), model, kind)

    def cost(self, response: Any, model: str, kind: str = "completion") -> float | None:
        """USD cost of ``response`` from ``model`` by the module's rule; None when unpriced."""
        reported = reported_cost(response)
        if reported is not None:
            return reported
        prompt, completion, cached = usage_counts(response)
        try:
            return self.token_cost(model, prompt, completion, cached)
        except NotPriced:
            from ._litellm import litellm_cost

            return litellm_cost(response, model, kind) or None
