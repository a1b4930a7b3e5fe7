"""``dewey-llm config check``: what would stop a call, or make its record wrong.

Nothing is sent and LiteLLM is not loaded: the configuration is read against the price
map and the provider table.
"""

from __future__ import annotations

from ._catalog import Catalog
from ._config import LiteLLMConfig
from ._exceptions import LLMConfigError, LLMError
from ._model_names import names_match
from ._pricing import Pricing
from ._routing import missing_key_error, route_for, routes_for, unknown_model_error

__all__ = ["callable_models", "config_problems"]


def config_problems(config: LiteLLMConfig, model: str, catalog: Catalog, pricing: Pricing) -> list[LLMError]:
    """For ``model`` and each fallback in turn: a provider key that is not set, a model no
    provider is known for, a model without a price; then the settings keyed by a name
    that matches no model the config can call (``rate_limits``, ``prices``) and prices
    "as" a model the price map does not know."""
    routes = routes_for(config, model, catalog)
    problems: list[LLMError] = [error for error in (missing_key_error(route, catalog) for route in routes)
                                if error is not None]
    problems += [unknown_model_error(route.model, catalog) for route in routes
                 if catalog.provider(route.model) is None]
    problems += [LLMConfigError(
        f"{unpriced} has no price: its calls would be recorded at $0, which budgets cannot count; "
        f"price it under prices: in the config ({{{unpriced}: {{input_per_million: ..., "
        f"output_per_million: ...}}}}, or {{price_as: MODEL}})", model=unpriced)
        for unpriced in pricing.unpriced(route.model for route in routes)]
    models = callable_models(config, model, catalog)
    for setting in ("rate_limits", "prices"):
        for name in getattr(config, setting):
            if name != "*" and not any(names_match(name, called) for called in models):
                problems.append(LLMConfigError(
                    f"{setting}: {name!r} matches no model this config calls ({', '.join(models)}): "
                    "fix the name (with or without the provider prefix), or remove it"))
    for name, price in config.prices.items():
        if price.price_as is not None and not catalog.knows(price.price_as):
            problems.append(LLMConfigError(
                f"prices: {name!r} is priced as {price.price_as!r}, which LiteLLM's price map does "
                "not know: name a model `dewey-llm models --all` lists, or give its prices"))
    return problems


def callable_models(config: LiteLLMConfig, model: str, catalog: Catalog) -> list[str]:
    """Every model the config can call, as routed: ``model``, the fallbacks, the embedding
    model and the models the aliases stand for."""
    models = [route.model for route in routes_for(config, model, catalog)]
    named = [config.embedding_model] if config.embedding_model else []
    models += [route_for(config, name, catalog).model for name in [*named, *config.aliases.values()]]
    return list(dict.fromkeys(models))
