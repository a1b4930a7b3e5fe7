"""Where a request goes: routes and credentials, the retry plan, each attempt's arguments.

Pure functions over the configuration and the :class:`Catalog`: no I/O, no LiteLLM.
:func:`routes_for` is also what ``dewey-llm config check`` lists, with
:func:`missing_key_error` for each route.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._catalog import Catalog
from ._config import FallbackModel, LiteLLMConfig
from ._exceptions import LLMAuthenticationError, LLMConfigError, LLMConnectionError, LLMError, LLMTimeoutError
from ._providers import key_variables, provider_named, qualify_model, reports_stream_usage
from ._resilience import Cooldowns, Policy, RetryPlan, Route, Step

if TYPE_CHECKING:
    from ._request import Request

__all__ = ["attempt_kwargs", "endpoint_of", "explained", "missing_key_error", "retry_plan",
           "route_for", "routes_for", "unknown_model_error"]


def routes_for(config: LiteLLMConfig, model: str, catalog: Catalog, *,
               fallbacks: bool = True) -> list[Route]:
    """``model``'s route, then (with ``fallbacks``) each configured fallback's, without repeats."""
    routes = [route_for(config, model, catalog)]
    for fallback in config.fallback_models if fallbacks else ():
        route = route_for(config, fallback, catalog) if isinstance(fallback, str) else _route_of(fallback)
        if route not in routes:
            routes.append(route)
    return routes


def route_for(config: LiteLLMConfig, model: str, catalog: Catalog) -> Route:
    """Credentials for a model named by string: the configured ones when it is the
    configured model or served by the same provider (e.g. through the same proxy)."""
    model = qualify_model(model)
    if config.api_key is None and config.api_base is None:
        return Route(model)
    primary = qualify_model(config.model) if config.model else None
    if primary is not None and model != primary and catalog.provider(model) != catalog.provider(primary):
        return Route(model)
    key = config.api_key.get_secret_value() if config.api_key else None
    return Route(model, key, config.api_base, config.api_version)


def _route_of(fallback: FallbackModel) -> Route:
    key = fallback.api_key.get_secret_value() if fallback.api_key else None
    return Route(qualify_model(fallback.model), key, fallback.api_base, fallback.api_version, fallback.timeout)


def retry_plan(config: LiteLLMConfig, request: Request, cooldowns: Cooldowns, catalog: Catalog) -> RetryPlan:
    """The plan for ``request``, whose routes it sets."""
    # Vectors from different models are not comparable: embeddings never fall back.
    request.routes = routes_for(config, request.model, catalog, fallbacks=request.kind != "embedding")
    policy = Policy(max_retries=config.max_retries, timeout=config.timeout,
                    deadline=config.deadline, backoff_base=config.backoff_base,
                    backoff_max=config.backoff_max, max_retry_after=config.max_retry_after)
    return RetryPlan(request.routes, policy, cooldowns, catalog.context_window)


def attempt_kwargs(request: Request, step: Step, catalog: Catalog) -> dict[str, Any]:
    """Arguments for one attempt: the SDK's own retries off, ours only; usage asked for
    on streams wherever the provider reports it (to price the stream)."""
    route = step.route
    provider = catalog.provider(route.model)
    if provider is None:
        raise unknown_model_error(route.model, catalog)
    missing = missing_key_error(route, catalog)
    if missing is not None:
        raise missing
    kwargs: dict[str, Any] = {**request.payload, "model": route.model,
                              "timeout": step.timeout, "max_retries": 0}
    for name in ("api_key", "api_base", "api_version"):
        value = getattr(route, name)
        if value is not None:
            kwargs[name] = value
    if request.kind == "stream" and "stream_options" not in kwargs and reports_stream_usage(provider):
        kwargs["stream_options"] = {"include_usage": True}
    return kwargs


def endpoint_of(config: LiteLLMConfig, request: Request, catalog: Catalog) -> str | None:
    """The server the call goes to, for its cache key: one name can mean different
    models (and answers) on two servers.  As in :func:`attempt_kwargs`, the route's
    api_base wins over one given per call."""
    routed = route_for(config, request.model, catalog).api_base if config.api_base else None
    return routed or request.payload.get("api_base") or request.payload.get("base_url")


# --- errors before anything is sent --------------------------------------------------------

def unknown_model_error(model: str, catalog: Catalog) -> LLMConfigError:
    """The error for a model name no provider is known for, raised before anything is
    sent: LiteLLM's own answer is a paragraph about providers."""
    close = catalog.suggest(model)
    guess = f"; did you mean {close[0]!r}?" if close else "."
    return LLMConfigError(
        f"unknown model {model!r}{guess} See `dewey-llm models --all` for the names "
        f"LiteLLM knows. For a server that speaks the OpenAI API (vLLM, Ollama, LM Studio, "
        f"a proxy), name the model 'openai/{model}' and set api_base to the server's URL.",
        model=model)


def missing_key_error(route: Route, catalog: Catalog,
                      environ: Mapping[str, str] | None = None) -> LLMAuthenticationError | None:
    """The error for a route without a key whose provider's key variables are all unset."""
    if route.api_key is not None or route.api_base or route.model.startswith("local/"):
        return None  # a proxy or local server may need no key
    environ = os.environ if environ is None else environ
    provider = catalog.provider(route.model)
    variables = key_variables(provider)
    if not variables or any(environ.get(variable) for variable in variables):
        return None
    return LLMAuthenticationError(
        f"{route.model} needs an API key: set {' or '.join(variables)} in the environment, or "
        "api_key in the config (or pick another model; with no key at all, local/smollm2 runs "
        "offline)", model=route.model, provider=provider)


# --- errors after an attempt ---------------------------------------------------------------

def explained(error: LLMError, route: Route, config: LiteLLMConfig, catalog: Catalog) -> LLMError:
    """``error``, its message naming where a rejected key came from or which address
    could not be reached: the two things a user has to check first."""
    if isinstance(error, LLMAuthenticationError) and error.status_code is not None:
        # Not only 401/403: Gemini answers a bad key with 400 API_KEY_INVALID.
        hint = f"the API key came from {_key_source(route, config, catalog)}"
    elif isinstance(error, LLMConnectionError) and not isinstance(error, LLMTimeoutError):
        known = provider_named(catalog.provider(route.model))
        url = route.api_base or (known.api_base if known else None)
        hint = f"could not reach {url}" if url else ""
    else:
        hint = ""
    if hint and hint not in error.message:
        error.message = f"{error.message} ({hint})"
        error.args = (error.message,)
    return error


def _key_source(route: Route, config: LiteLLMConfig, catalog: Catalog) -> str:
    if route.api_key is None:
        variable = next((v for v in key_variables(catalog.provider(route.model)) if os.environ.get(v)), None)
        return f"the environment ({variable})" if variable else "the environment"
    if config.api_key is not None and route.api_key == config.api_key.get_secret_value():
        return f"api_key ({config.sources['api_key']})"
    return f"the fallback's api_key in fallback_models ({config.sources['fallback_models']})"
