"""``Catalog``: facts about models (prices, context windows, providers) without LiteLLM.

The facts come from the price map LiteLLM ships
(``litellm/model_prices_and_context_window_backup.json``), found with
``importlib.util.find_spec`` and read on first use (:mod:`._mapfile`): importing LiteLLM
takes seconds, reading its map a fraction of one.  Names are looked up the way LiteLLM
prices them: the name as given, then without its ``provider/`` prefix.

``token_cost`` is proven equal to ``litellm.cost_per_token`` by ``tests/test_catalog.py``.
The formula covers per-token rates, cache-read rates, prices above a prompt-size
threshold and tables of tiers.  For pricing it does not model (per second, per
character, per request or query, off-peak hours) it raises :class:`NotPriced`, so the
caller can ask LiteLLM instead.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from ._exceptions import LLMConfigError
from ._mapfile import litellm_file, read_json
from ._providers import PROVIDERS, provider_named

__all__ = ["Catalog", "NotPriced"]

_MAP_FILE = "model_prices_and_context_window_backup.json"
_ENDPOINTS_FILE = "provider_endpoints_support_backup.json"
_RESERVED_KEYS = frozenset({"sample_spec", "fallback_generalizations"})  # not models

# The map's litellm_provider is finer than the provider LiteLLM routes to: these name
# the same provider as the value they map to.
_PROVIDER_ALIASES = {"bedrock_converse": "bedrock"}
_PROVIDER_FAMILIES = ("vertex_ai-",)  # vertex_ai-language-models -> vertex_ai

# Entry keys that mean a price our per-token formula would get wrong.
_UNMODELLED_PRICING = ("input_cost_per_second", "output_cost_per_second",
                       "cost_per_second", "input_cost_per_character", "output_cost_per_character",
                       "input_cost_per_request", "input_cost_per_query",
                       "off_peak_pricing")  # cheaper at some hours: the price depends on the clock
# Providers that bill the higher tier once the prompt *reaches* the threshold (LiteLLM's
# _INCLUSIVE_THRESHOLD_PROVIDERS).
_INCLUSIVE_THRESHOLD_PROVIDERS = frozenset({"xai"})
_THRESHOLD_KEY = "input_cost_per_token_above_"
_TIER_SUFFIXES = ("_priority", "_flex", "_batches", "_ultrafast", "_balanced", "_decisions")


class NotPriced(Exception):
    """The model's pricing is not per token: ask LiteLLM (``cost_per_token``) instead."""


# Bedrock route segments (bedrock/converse/..., bedrock/invoke/...) LiteLLM strips before
# looking a model up (litellm/llms/bedrock/common_utils.py strips "converse/", "invoke/").
_ROUTE_SEGMENTS = frozenset({"converse", "invoke"})
_NAMES_KEPT = 1024  # model names whose lookups a Catalog remembers at once
_T = TypeVar("_T")


class Catalog:
    """Model facts from LiteLLM's bundled price map, read lazily, once per instance.

    >>> Catalog().context_window("gpt-4o")  # doctest: +SKIP
    128000

    ``extra`` adds entries the map lacks, keyed by full name (e.g. ``local/smollm2``);
    they win over the map's.  ``local`` describes any other ``local/NAME`` model, given
    ``NAME`` (``_llama.model_details``).
    """

    def __init__(self, extra: Mapping[str, Mapping[str, Any]] | None = None,
                 *, path: str | Path | None = None,
                 local: Callable[[str], Mapping[str, Any]] | None = None) -> None:
        self._extra = {name: dict(entry) for name, entry in (extra or {}).items()}
        self._local = local
        self._path = Path(path) if path else None
        self._entries: dict[str, dict[str, Any]] | None = None
        self._aliases: frozenset[str] = frozenset()  # names of alias_of rows, read with the entries
        self._providers: frozenset[str] | None = None
        # Per model name, what the map (fixed once read) says of it: every call asks
        # several times (route, transport, price), and the lookups cost more than the call's own
        # arithmetic.  Bounded: a name that is never asked again is dropped with the rest.
        self._keys: dict[str, str | None] = {}
        self._provider_of: dict[str, str | None] = {}
        self._terms: dict[str, _Terms | None] = {}  # by model name: see _price_terms

    # --- reading --------------------------------------------------------------------------

    @property
    def entries(self) -> dict[str, dict[str, Any]]:
        """Every entry of the map (plus ``extra``), read on first use."""
        if self._entries is None:
            raw = read_json(self._path or litellm_file(_MAP_FILE), keep=True)
            self._aliases = frozenset(name for name, entry in raw.items()
                                      if isinstance(entry, dict) and isinstance(entry.get("alias_of"), str))
            entries = _expand_aliases(raw)
            entries.update(self._extra)
            self._entries = entries
        return self._entries

    def is_alias(self, model: str) -> bool:
        """Whether the map's row for ``model`` is another row's alias (``alias_of``):
        LiteLLM sends a call to an alias under the name of the row it points to."""
        key = self._key(model)
        return key is not None and key in self._aliases

    @property
    def loaded(self) -> bool:
        """Whether the map has been read (so that asking costs no file read)."""
        return self._entries is not None

    def _known_providers(self) -> frozenset[str]:
        """Provider names LiteLLM knows: those of its endpoint table, of the map and ours."""
        if self._providers is None:
            names = {str(entry.get("litellm_provider")) for entry in self.entries.values()}
            with contextlib.suppress(LLMConfigError):  # an older LiteLLM without the table
                names |= set(read_json(litellm_file(_ENDPOINTS_FILE)).get("providers", {}))
            names |= {name.split("/", 1)[0] for name in self._extra if "/" in name}
            names |= {provider.name for provider in PROVIDERS}
            self._providers = frozenset(names)
        return self._providers

    def _entry(self, model: str) -> Mapping[str, Any] | None:
        """The map's entry for ``model``, or a ``local/`` model's from the hook; None when
        neither knows it."""
        key = self._key(model)
        if key is not None:
            return self.entries[key]
        if model.startswith("local/") and self._local is not None:
            return self._local(model.removeprefix("local/"))
        return None

    def _key(self, model: str) -> str | None:
        """The map key LiteLLM prices ``model`` with: the name, else it without ``provider/``."""
        return _remembered(self._keys, model, self._find_key)

    def _find_key(self, model: str) -> str | None:
        entries = self.entries
        names = [model]
        if "/" in model:
            bare = model.split("/", 1)[1]
            names.append(bare)
            # A route segment LiteLLM takes out before pricing: bedrock/converse/<id>.
            if bare.split("/", 1)[0] in _ROUTE_SEGMENTS and "/" in bare:
                names.append(bare.split("/", 1)[1])
        for name in names:
            if name in entries:
                return name
            # A fine-tune, "ft:BASE:org:suffix:id", is priced as BASE's fine-tunes ("ft:BASE").
            if name.startswith("ft:") and name.count(":") >= 2 and ":".join(name.split(":")[:2]) in entries:
                return ":".join(name.split(":")[:2])
        return None

    # --- facts ----------------------------------------------------------------------------

    def knows(self, model: str) -> bool:
        """Whether the map has an entry for ``model`` (with or without ``provider/``)."""
        return self._key(model) is not None

    def details(self, model: str) -> dict[str, Any]:
        """The map entry for ``model`` plus ``"model"``; ``LLMConfigError`` when unknown."""
        entry = self._entry(model)
        if entry is None:
            suggestions = self.suggest(model)
            hint = f"did you mean {', '.join(repr(s) for s in suggestions)}? " if suggestions else ""
            raise LLMConfigError(
                f"no details known for model {model!r}: it is not in LiteLLM's model map; {hint}"
                f"for an OpenAI-compatible server use 'openai/{model.split('/')[-1]}' with api_base, "
                "or run `dewey-llm models`")
        return {"model": model, **{k: v for k, v in entry.items() if v is not None}}

    def context_window(self, model: str) -> int | None:
        """How many input tokens ``model`` takes, if known."""
        value = (self._entry(model) or {}).get("max_input_tokens")
        return int(value) if value else None

    def supports_vision(self, model: str) -> bool | None:
        """Whether ``model`` takes images, as its entry states; None when the map does
        not know the model or does not say (more than a third of its chat models, some
        of which do take images)."""
        value = (self._entry(model) or {}).get("supports_vision")
        return value if isinstance(value, bool) else None

    def provider(self, model: str) -> str | None:
        """The provider LiteLLM would route ``model`` to: its known ``provider/`` prefix,
        else the map's provider of the name."""
        return _remembered(self._provider_of, model, self._find_provider)

    def _find_provider(self, model: str) -> str | None:
        if "/" in model:
            prefix = model.split("/", 1)[0]
            if prefix in self._known_providers():
                return prefix
        key = self._key(model)
        found = self.entries[key].get("litellm_provider") if key else None
        return _route_name(found) if isinstance(found, str) else None

    def is_priced(self, model: str) -> bool:
        """Whether the map gives ``model`` a price per input or output token (a ``local/``
        model's is 0)."""
        terms = self._price_terms(model)
        return terms is not None and terms.priced

    def token_cost(self, model: str, prompt_tokens: int, completion_tokens: int,
                   cached_tokens: int = 0) -> float:
        """USD cost of token counts for ``model``; 0.0 when the map has no price for it.

        ``cached_tokens`` are part of ``prompt_tokens`` (as OpenAI reports them) and cost
        the cache-read rate.  Raises :class:`NotPriced` when the model is priced in a way
        this formula does not model.
        """
        terms = self._price_terms(model)
        if terms is None:
            return 0.0
        if terms.unmodelled:
            raise NotPriced(model)
        if not terms.priced:
            return 0.0
        rates = _rates(terms, prompt_tokens)
        uncached = prompt_tokens - cached_tokens
        return float(uncached * rates["input"] + cached_tokens * rates["cache_read"]
                     + completion_tokens * rates["output"])

    def _price_terms(self, model: str) -> _Terms | None:
        """What pricing ``model`` takes from its entry (None: no entry), worked out once
        per name for the map's entries, which never change once read (every call is
        priced, on the caller's thread); a ``local/`` model's hook is asked each time."""
        if self._key(model) is None:
            return self._find_terms(model)
        return _remembered(self._terms, model, self._find_terms)

    def _find_terms(self, model: str) -> _Terms | None:
        entry = self._entry(model)
        if entry is None:
            return None
        unmodelled = any(entry.get(f) is not None for f in _UNMODELLED_PRICING)
        priced = _is_priced(entry)
        # The map's own provider, not the route: LiteLLM discounts Fireworks' chat models
        # (litellm_provider "fireworks_ai"), not its "fireworks_ai-embedding-models".
        known = provider_named(entry.get("litellm_provider"))
        return _Terms(
            entry, unmodelled, priced,
            inclusive=priced and not unmodelled and self.provider(model) in _INCLUSIVE_THRESHOLD_PROVIDERS,
            cached_share=known.cached_input_share if known else 1.0,
            thresholds=tuple(sorted((_threshold(name), name.removeprefix(_THRESHOLD_KEY)) for name in entry
                                    if name.startswith(_THRESHOLD_KEY) and not name.endswith(_TIER_SUFFIXES)
                                    and entry[name] is not None)))

    # --- names ----------------------------------------------------------------------------

    def models(self, provider: str | None = None, mode: str | None = "chat") -> list[str]:
        """Sorted model names, of one ``provider`` and one ``mode`` (None: every mode)."""
        return sorted(name for name, entry in self.entries.items()
                      if (mode is None or entry.get("mode") == mode)
                      and (provider is None or self.provider(name) == provider))

    def suggest(self, name: str) -> list[str]:
        """Up to three known names close to ``name`` (also matched without provider prefixes)."""
        entries = self.entries
        bare = {key.split("/", 1)[-1]: key for key in entries}
        close = difflib.get_close_matches(name, list(entries), n=3, cutoff=0.75)
        close += [bare[b] for b in difflib.get_close_matches(name.split("/", 1)[-1], list(bare), n=3, cutoff=0.75)]
        return list(dict.fromkeys(close))[:3]


def _expand_aliases(raw: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The map's entries with aliases served as the entry they name, as LiteLLM loads them.

    A row ``{"alias_of": "x"}`` is served as row ``x``; a row's ``aliases`` list adds names
    for it (never replacing a real row); neither key is kept.
    """
    # Only the few rows with alias keys are copied: copying all ~2,600 cost a cold CLI call
    # as much as parsing the file.
    entries = {name: {k: v for k, v in entry.items() if k not in ("alias_of", "aliases")}
               if "alias_of" in entry or "aliases" in entry else entry
               for name, entry in raw.items() if isinstance(entry, dict) and name not in _RESERVED_KEYS}
    pointers = {name: entry["alias_of"] for name, entry in raw.items()
                if isinstance(entry, dict) and isinstance(entry.get("alias_of"), str)}
    for name, entry in raw.items():
        aliases = entry.get("aliases") if isinstance(entry, dict) and name not in pointers else None
        for alias in aliases if isinstance(aliases, list) else ():
            if alias not in raw and name in entries:
                entries.setdefault(alias, entries[name])
    for name, target in pointers.items():
        if target in entries and target not in pointers:
            entries[name] = entries[target]
        else:
            entries.pop(name, None)  # an alias of nothing: LiteLLM skips it too
    return entries


def _remembered(memo: dict[str, _T], name: str, find: Callable[[str], _T]) -> _T:
    """``find(name)``, kept in ``memo``; a full memo is emptied, not grown without end."""
    try:
        return memo[name]
    except KeyError:
        pass
    if len(memo) >= _NAMES_KEPT:
        memo.clear()
    value = memo[name] = find(name)
    return value


class _Terms(NamedTuple):
    """What pricing a model takes from its entry (``Catalog._price_terms``)."""

    entry: Mapping[str, Any]
    unmodelled: bool  # priced in a way the formula does not model (NotPriced)
    priced: bool  # per input or output token (``is_priced``)
    inclusive: bool  # the higher rate applies from its threshold on, not above it
    cached_share: float  # of the input rate, that a cached token costs when no rate is given
    thresholds: tuple[tuple[float, str], ...]  # (prompt tokens, key suffix), the lowest first


def _is_priced(entry: Mapping[str, Any]) -> bool:
    return any(entry.get(rate) is not None
               for rate in ("input_cost_per_token", "output_cost_per_token", "tiered_pricing"))


def _rates(terms: _Terms, prompt_tokens: int) -> dict[str, float]:
    """Per-token rates for a prompt of this size: its tier, else the highest threshold it passes.

    An absent cache-read rate is the input rate times the provider's ``cached_share``
    (LiteLLM: "a provider that publishes no cache price bills cached tokens as ordinary
    input"; Fireworks bills them at half).
    """
    entry, inclusive = terms.entry, terms.inclusive
    tier = _tier(entry.get("tiered_pricing"), prompt_tokens)
    if tier is not None:
        # All or nothing: every token of the request costs the one tier's rate.
        input_rate = _number(tier["input_cost_per_token"])
        return {"input": input_rate,
                "output": _number(tier.get("output_cost_per_token"), _number(entry.get("output_cost_per_token"))),
                "cache_read": _number(tier.get("cache_read_input_token_cost"), input_rate)}
    rates = {"input": _number(entry.get("input_cost_per_token")),
             "output": _number(entry.get("output_cost_per_token"))}
    cache_read = entry.get("cache_read_input_token_cost")
    for threshold, suffix in terms.thresholds:
        if prompt_tokens > threshold or (inclusive and prompt_tokens == threshold):
            rates["input"] = _number(entry.get(_THRESHOLD_KEY + suffix), rates["input"])
            rates["output"] = _number(entry.get("output_cost_per_token_above_" + suffix), rates["output"])
            cache_read = entry.get("cache_read_input_token_cost_above_" + suffix, cache_read)
    rates["cache_read"] = _number(cache_read, rates["input"] * terms.cached_share)
    return rates


def _tier(tiers: Any, prompt_tokens: int) -> Mapping[str, Any] | None:
    """The tier whose range ``(start, end]`` holds the prompt size, else the last tier."""
    if not isinstance(tiers, list) or prompt_tokens <= 0:
        return None
    ranged = sorted((tier for tier in tiers if isinstance(tier, dict) and _is_range(tier.get("range"))),
                    key=lambda tier: float(tier["range"][0]))
    if not ranged:
        return None
    found = next((t for t in ranged if t["range"][0] < prompt_tokens <= t["range"][1]), ranged[-1])
    return found if "input_cost_per_token" in found else None


def _is_range(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value)


def _threshold(key: str) -> float:
    """128000 for ``input_cost_per_token_above_128k_tokens``."""
    text = key.rsplit("_above_", 1)[1].split("_tokens")[0]
    return float(text.removesuffix("k")) * (1000 if text.endswith("k") else 1)


def _number(value: Any, default: float = 0.0) -> float:
    return float(value) if isinstance(value, (int, float)) else default


def _route_name(map_provider: str) -> str:
    """The provider LiteLLM routes to for a map ``litellm_provider`` value."""
    if map_provider.startswith(_PROVIDER_FAMILIES):
        return map_provider.split("-", 1)[0]
    return _PROVIDER_ALIASES.get(map_provider, map_provider)
