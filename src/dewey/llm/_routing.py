"""Where a request goes: routes, credentials and transport, the retry plan, each attempt's arguments.

Pure functions over the configuration and the :class:`Catalog`: no I/O, no LiteLLM.
:func:`routes_for` is also what ``dewey-llm config check`` lists, with
:func:`missing_key_error` for each route; :func:`transport_for` is which transport
(``native``, ``litellm`` or ``local``) a model's calls take.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._catalog import Catalog
from ._config import FallbackModel, LiteLLMConfig
from ._exceptions import LLMAuthenticationError, LLMConfigError, LLMConnectionError, LLMError, LLMTimeoutError
from ._messages import has_images
from ._providers import key_variables, provider_named, qualify_model, reports_stream_usage
from ._resilience import Cooldowns, Policy, RetryPlan, Route, Step

if TYPE_CHECKING:
    from ._request import Request

__all__ = ["LITELLM_REWRITES", "attempt_kwargs", "endpoint_of", "explained", "missing_key_error",
           "no_vision_error", "request_routes", "retry_plan", "route_for", "routes_for", "transport_for",
           "unknown_model_error"]

NATIVE_PROVIDER = "openai"
LOCAL_PROVIDER = "local"
"""The provider (and transport) of models run in this process by llama.cpp: ``local/<name>``."""
"""The provider whose wire NativeTransport speaks: tests/test_native.py proves it equal to
LiteLLM for it (OpenAI itself, and any server named ``openai/<model>`` with api_base)."""

# Models of provider openai whose requests LiteLLM rewrites in ways NativeTransport does
# not mirror (it mirrors only max_tokens -> max_completion_tokens for the reasoning
# models): under `auto` their calls go through LiteLLM, so that `auto` never changes what
# a server receives or which error a call ends in.  (Searched in the name without
# ``openai/``, as LiteLLM does: litellm/llms/openai/chat/*_transformation.py.)
# tests/test_native_rules.py proves these rules over every chat model of provider openai
# in the price map.
LITELLM_REWRITES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^o\d"), "o-series: sends system messages as user messages unless the price map "
                          "says the model takes them (o3, o3-mini, o4-mini); refuses a temperature other than 1"),
    (re.compile(r"gpt-[56]"), "gpt-5 and gpt-6 families (anywhere in the name, LiteLLM's "
                              "GPT_REASONING_SERIES_MARKERS): max_tokens sent as max_completion_tokens; "
                              "refuses sampling parameters the model does not take"),
)
# Arguments LiteLLM treats per model, for the models it sends unchanged otherwise
# (litellm/llms/openai/chat/gpt_transformation.py, OpenAIGPTConfig): a call that gives
# one goes through LiteLLM where it would be left out or refused (nothing sent).
_LEFT_OUT_OUTSIDE_CATALOG = frozenset({"user"})  # sent only for a model of OpenAI's catalog
_REFUSED_IN_CATALOG = frozenset({"reasoning_effort"})  # forwarded for others (a proxy's alias may take it)
_REFUSED = frozenset({"verbosity"})  # by every model outside the reasoning families
_NO_RESPONSE_FORMAT = frozenset({"gpt-4", "gpt-3.5-turbo-16k"})
_CATALOG_PROVIDERS = frozenset({"openai", "text-completion-openai"})


def _in_openai_catalog(name: str, catalog: Catalog) -> bool:
    """Whether LiteLLM counts ``name`` (without ``openai/``) as a model of OpenAI's own
    catalog: a row of the map of provider openai, not a fine-tune's base row
    (``ft:gpt-4o``), as litellm/__init__.py's ``open_ai_chat_completion_models`` is built."""
    entry = catalog.entries.get(name)
    finetune_row = name.startswith("ft:") and name.count(":") == 1
    return entry is not None and entry.get("litellm_provider") in _CATALOG_PROVIDERS and not finetune_row


def _litellm_changes(name: str, params: Mapping[str, Any], catalog: Catalog) -> bool:
    """Whether LiteLLM would send a call of model ``name`` with ``params`` otherwise than
    NativeTransport does, or refuse it before sending."""
    if any(pattern.search(name) for pattern, _ in LITELLM_REWRITES) or catalog.is_alias(name):
        return True  # an alias row is sent as the row it names
    if _REFUSED.intersection(params) or isinstance(params.get("response_format"), type):
        return True  # a pydantic class LiteLLM turns into a JSON schema
    if "response_format" in params and name in _NO_RESPONSE_FORMAT:
        return True
    in_catalog = _in_openai_catalog(name, catalog)
    if in_catalog and _REFUSED_IN_CATALOG.intersection(params):
        return True
    return not in_catalog and bool(_LEFT_OUT_OUTSIDE_CATALOG.intersection(params))


def transport_for(setting: str, model: str, catalog: Catalog, params: Mapping[str, Any] | None = None) -> str:
    """``"native"``, ``"litellm"`` or ``"local"``: which transport sends ``model``'s calls
    with ``params`` under ``setting`` (``auto``, ``native`` or ``litellm``).

    A ``local/`` model takes ``local`` under every setting: the setting says how remote
    providers are reached, and a model run in this process has one way only (so that
    ``transport: litellm`` with a local fallback keeps working)."""
    if model.startswith(f"{LOCAL_PROVIDER}/"):
        return LOCAL_PROVIDER
    params = params or {}
    provider = catalog.provider(model)
    if setting == "litellm" or provider is None:  # an unknown model: the attempt names it
        return "litellm"
    if setting == "native":
        if provider != NATIVE_PROVIDER:
            raise LLMConfigError(
                f"transport 'native' speaks the OpenAI wire only, and {model} is provider {provider}: "
                f"set transport to auto or litellm for it (for a fallback: {{model: {model}, transport: "
                f"auto}} in fallback_models), or, for a server that speaks the OpenAI API, name the "
                f"model 'openai/{model.split('/')[-1]}' and set api_base", model=model)
        return "native"
    if provider != NATIVE_PROVIDER:
        return "litellm"
    return "litellm" if _litellm_changes(model.removeprefix("openai/"), params, catalog) else "native"


def routes_for(config: LiteLLMConfig, model: str, catalog: Catalog, *,
               fallbacks: bool = True, params: Mapping[str, Any] | None = None) -> list[Route]:
    """``model``'s route, then (with ``fallbacks``) each configured fallback's, without
    repeats; each with the transport for a call with ``params``."""
    routes = [route_for(config, model, catalog, params)]
    for fallback in config.fallback_models if fallbacks else ():
        if isinstance(fallback, str):
            route = route_for(config, fallback, catalog, params)
        else:
            route = _route_of(config, fallback, catalog, params)
        if route not in routes:
            routes.append(route)
    return routes


def route_for(config: LiteLLMConfig, model: str, catalog: Catalog,
              params: Mapping[str, Any] | None = None) -> Route:
    """Credentials for a model named by string: the configured ones when it is the
    configured model or served by the same provider (e.g. through the same proxy).
    An alias (``aliases``) is routed as the model it stands for."""
    model = qualify_model(config.resolve_alias(model))
    transport = transport_for(config.transport, model, catalog, params)
    if config.api_key is None and config.api_base is None:
        return Route(model, transport=transport)
    primary = qualify_model(config.resolve_alias(config.model)) if config.model else None
    if primary is not None and model != primary and catalog.provider(model) != catalog.provider(primary):
        return Route(model, transport=transport)
    key = config.api_key.get_secret_value() if config.api_key else None
    return Route(model, key, config.api_base, config.api_version, transport=transport)


def _route_of(config: LiteLLMConfig, fallback: FallbackModel, catalog: Catalog,
              params: Mapping[str, Any] | None) -> Route:
    key = fallback.api_key.get_secret_value() if fallback.api_key else None
    model = qualify_model(config.resolve_alias(fallback.model))
    return Route(model, key, fallback.api_base, fallback.api_version, fallback.timeout,
                 transport_for(fallback.transport, model, catalog, params))


def request_routes(config: LiteLLMConfig, request: Request, catalog: Catalog) -> list[Route]:
    """The routes for ``request``: its model's, then its fallbacks'; for a request with
    images, only those of models that may take them (:func:`no_vision_error` if the
    model asked for does not)."""
    # Vectors from different models are not comparable: embeddings never fall back.
    given = {name: value for name, value in request.payload.items() if value is not None}
    routes = routes_for(config, request.model, catalog, fallbacks=request.kind != "embedding",
                        params=given)
    if has_images(request.messages):
        # Only a model the map says takes no images is refused: one it does not know (a
        # self-hosted vision model) or says nothing about is the provider's to answer.
        if catalog.supports_vision(routes[0].model) is False:
            raise no_vision_error(routes[0].model, catalog)
        routes = [route for route in routes if catalog.supports_vision(route.model) is not False]
    return routes


def retry_plan(config: LiteLLMConfig, request: Request, cooldowns: Cooldowns, catalog: Catalog) -> RetryPlan:
    """The plan for ``request`` over its routes (set them with :func:`request_routes`)."""
    if not request.routes:
        request.routes = request_routes(config, request, catalog)
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


def no_vision_error(model: str, catalog: Catalog) -> LLMConfigError:
    """The error for images sent to a model that takes none, raised before anything is
    sent: the provider would refuse the request (a 400) and charge nothing, but only
    after the call was made, and its words vary from one provider to the next."""
    provider = catalog.provider(model)
    bare = model.split("/", 1)[-1]
    seeing = [name for name in catalog.models(provider) if catalog.supports_vision(name)]
    close = difflib.get_close_matches(bare, seeing, n=2, cutoff=0.0)
    hint = f", such as {' or '.join(repr(name) for name in close)}" if close else ""
    return LLMConfigError(
        f"{model} does not take images (LiteLLM's model map says supports_vision: false): "
        f"send them to a model that does{hint}, or leave the images out", model=model,
        provider=provider)


def missing_key_error(route: Route, catalog: Catalog,
                      environ: Mapping[str, str] | None = None) -> LLMAuthenticationError | None:
    """The error for a route without a key whose provider's key variables are all unset."""
    if route.api_key is not None or route.api_base or route.model.startswith(f"{LOCAL_PROVIDER}/"):
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
