"""``LiteLLMConfig``: every setting, its bounds, and where its value came from.

Sources, highest first: arguments given in code; ``LITELLM_*`` environment variables; a
YAML file's ``llm:`` section (``DEWEY_LLM_CONFIG``, else ``./dewey.yaml``, else
``~/.config/dewey/llm.yaml``); defaults.  ``${VAR}`` and ``${VAR:-default}`` in YAML are
interpolated from the environment.  Reading the file and the variables is
``_config_sources``'; the one clear error a wrong setting raises is ``_config_errors``'.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, ValidationError, model_validator

from ._config_sources import find_config_file, read_environment, read_yaml_section
from ._exceptions import LLMConfigError
from ._providers import default_model
from ._secrets import mask_secrets, register_secret

__all__ = ["Budget", "FallbackModel", "LiteLLMConfig", "Price", "RateLimit"]

# Upper bounds that keep every duration a number the clock and sleep() can use:
# inf, nan or 1e308 seconds would overflow or wait forever.
DAY = 86_400.0
HOUR = 3_600.0


class _Strict(BaseModel):
    # allow_inf_nan=False: every float setting must be a finite number.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    def __repr_args__(self) -> Any:
        # Keys in params/extra_headers and passwords in URLs are masked like SecretStr.
        for name, value in super().__repr_args__():
            if name is None or isinstance(value, BaseModel | SecretStr):
                yield name, value
            elif isinstance(value, list):
                yield name, [item if isinstance(item, BaseModel) else mask_secrets(item, name)
                             for item in value]
            else:
                yield name, mask_secrets(value, name)


TransportSetting = Literal["auto", "native", "litellm"]


class FallbackModel(_Strict):
    """A fallback with its own credentials, e.g. another provider."""

    model: str
    api_key: SecretStr | None = None
    api_base: str | None = None
    api_version: str | None = None
    timeout: float | None = Field(default=None, gt=0, le=DAY)
    transport: TransportSetting = "auto"


class Budget(_Strict):
    """Spending limits in USD; a call that would start after one is spent is refused."""

    daily_usd: float | None = Field(default=None, ge=0)
    monthly_usd: float | None = Field(default=None, ge=0)
    total_usd: float | None = Field(default=None, ge=0)


class RateLimit(_Strict):
    """Client-side limits for one model: requests and tokens per minute."""

    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)


class Price(_Strict):
    """The price of a model the price map does not know (a proxy alias, a fine-tune, a
    self-hosted model): USD per million tokens, or per token, or "price as" a known model.

    >>> Price(input_per_million=0.15, output_per_million=0.60)  # doctest: +SKIP
    >>> Price(price_as="claude-haiku-4-5")  # doctest: +SKIP
    """

    input_per_million: float | None = Field(default=None, ge=0)
    output_per_million: float | None = Field(default=None, ge=0)
    input_per_token: float | None = Field(default=None, ge=0)
    output_per_token: float | None = Field(default=None, ge=0)
    price_as: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_form(self) -> Price:
        per_million = (self.input_per_million, self.output_per_million) != (None, None)
        per_token = (self.input_per_token, self.output_per_token) != (None, None)
        forms = [name for name, given in (("per million", per_million), ("per token", per_token),
                                           ("price_as", self.price_as is not None)) if given]
        if len(forms) != 1:
            found = f"it gives {' and '.join(forms)}" if forms else "it gives none"
            raise ValueError(
                f"a price is one of: input_per_million/output_per_million, "
                f"input_per_token/output_per_token, or price_as: MODEL ({found})")
        return self

    def per_token(self) -> tuple[float, float] | None:
        """(input, output) USD per token; None for ``price_as`` (the other model's price)."""
        if self.price_as is not None:
            return None
        if self.input_per_token is not None or self.output_per_token is not None:
            return self.input_per_token or 0.0, self.output_per_token or 0.0
        return (self.input_per_million or 0.0) / 1e6, (self.output_per_million or 0.0) / 1e6


CacheSetting = bool | Literal["memory", "sqlite", "redis"]


class LiteLLMConfig(_Strict):
    """Settings of a :class:`LiteLLMClient`.

    >>> LiteLLMConfig(model="claude-2", timeout=90, fallback_models=["gpt-4"])  # doctest: +SKIP

    Build one in code, with :meth:`from_yaml`, or let the client :meth:`load` it from the
    environment and the YAML file.  Wrong types and unknown keys raise ``LLMConfigError``.
    """

    model: str | None = Field(default=None, description="Model to call, e.g. gpt-4o or anthropic/claude-3-5-sonnet")
    api_key: SecretStr | None = Field(default=None,
        description="Key for the primary model (else the provider's variable)")
    api_base: str | None = Field(default=None, description="Base URL of the provider or proxy")
    api_version: str | None = Field(default=None, description="API version (Azure)")
    transport: TransportSetting = Field(default="auto",
        description="What sends the calls: auto (native for OpenAI-compatible endpoints, else LiteLLM), "
                    "native or litellm; local/ models always run in process")
    timeout: float = Field(default=60.0, gt=0, le=DAY, description="Seconds allowed for one attempt")
    deadline: float | None = Field(default=None, gt=0, le=DAY,
        description="Seconds allowed for the whole call, retries included")
    max_retries: int = Field(default=2, ge=0, le=20, description="Retries per model after the first attempt")
    backoff_base: float = Field(default=0.5, ge=0, le=HOUR,
        description="First backoff in seconds (exponential, full jitter)")
    backoff_max: float = Field(default=20.0, ge=0, le=HOUR, description="Largest backoff in seconds")
    max_retry_after: float = Field(default=60.0, ge=0, le=DAY, description="Longest Retry-After honoured, in seconds")
    max_repairs: int = Field(default=1, ge=0, le=10,
        description="Follow-up calls asking again when a structured answer does not validate")
    cooldown_failures: int = Field(default=5, ge=1,
        description="Retryable failures in a row that put a model in cooldown")
    cooldown_seconds: float = Field(default=30.0, ge=0, le=DAY, description="How long a model in cooldown is skipped")
    fallback_models: list[str | FallbackModel] = Field(default_factory=list,
        description="Models tried in order when the primary fails")
    embedding_model: str | None = Field(default=None, description="Model for generate_embedding")
    params: dict[str, Any] = Field(default_factory=dict,
        description="Default generation parameters (temperature, max_tokens, ...)")
    cache: CacheSetting = Field(default=False,
        description="Response cache: false, true (sqlite), memory, sqlite or redis")
    cache_url: str | None = Field(default=None, description="redis://... or a SQLite file path for the cache")
    cache_ttl: float | None = Field(default=None, gt=0, le=3650 * DAY,
        description="Seconds a cached answer stays valid (none: forever)")
    cache_max_entries: int | None = Field(default=None, ge=1,
        description="Most answers the SQLite cache keeps; least recently used go first (none: no bound)")
    track_usage: bool = Field(default=True, description="Record every call in the usage ledger")
    usage_db: str | None = Field(default=None,
        description="Ledger: a SQLite path, postgresql://..., or none for the default file")
    usage_retention_days: float | None = Field(default=None, gt=0, le=36500,
        description="Days ledger rows and the prompt log are kept; older ones are deleted, their totals "
                    "kept (none: forever)")
    log: bool = Field(default=True,
        description="Log every completion's messages and answer beside its usage ledger rows "
                    "(dewey-llm logs; needs track_usage)")
    budget: Budget = Field(default_factory=Budget, description="Spending limits in USD")
    rate_limits: dict[str, RateLimit] = Field(default_factory=dict,
        description="Per-model rpm/tpm limits ('*' for every model)")
    rate_limit_url: str | None = Field(default=None, description="redis://... to share rate limits across processes")
    prices: dict[str, Price] = Field(default_factory=dict,
        description="Prices of models the price map lacks: {input_per_million, output_per_million}, "
                    "{input_per_token, output_per_token} or {price_as: MODEL}")
    aliases: dict[str, str] = Field(default_factory=dict,
        description="Short names for models, e.g. {fast: gpt-4o-mini}; usable wherever a model is")

    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            from ._config_errors import config_error  # only a wrong configuration pays for it

            raise config_error(exc) from None
        budget = self.budget
        if not self.track_usage and (budget.daily_usd, budget.monthly_usd, budget.total_usd) != (None, None, None):
            raise LLMConfigError(
                "a budget needs the usage ledger to count spend: set track_usage: true, or remove budget")
        if self.api_key is not None:
            register_secret(self.api_key.get_secret_value())
        for fallback in self.fallback_models:
            if isinstance(fallback, FallbackModel) and fallback.api_key is not None:
                register_secret(fallback.api_key.get_secret_value())
        for alias, target in self.aliases.items():
            if not alias or not target or "*" in (alias, target):
                raise LLMConfigError(f"aliases: {alias!r}: {target!r} is not an alias: write "
                                     "aliases: {short-name: model}")
            if self.resolve_alias(target) != target:
                raise LLMConfigError(
                    f"aliases: {alias!r} names {target!r}, which is an alias itself: name the "
                    f"model it stands for ({self.resolve_alias(target)!r}) instead")

    # --- where values came from --------------------------------------------------------

    @property
    def sources(self) -> dict[str, str]:
        """For each field: "argument", "env LITELLM_X", "file PATH" or "default"."""
        return {name: self._sources.get(name, "default") for name in type(self).model_fields}

    # --- loading -------------------------------------------------------------------------

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> LiteLLMConfig:
        """Read the ``llm:`` section of a YAML file (``${VAR:-default}`` interpolated)."""
        values = read_yaml_section(Path(path))
        config = cls(**values)
        config._sources = {key: f"file {path}" for key in values}
        return config

    @classmethod
    def load(
        cls,
        overrides: LiteLLMConfig | dict[str, Any] | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        environ: dict[str, str] | None = None,
    ) -> LiteLLMConfig:
        """Merge defaults < YAML file < ``LITELLM_*`` environment < ``overrides``."""
        environ = dict(os.environ if environ is None else environ)
        for variable, value in environ.items():
            # LiteLLM reads provider keys (MISTRAL_API_KEY, ...) from the environment
            # itself; many look like nothing in particular, so remember them to redact.
            if variable.endswith("_API_KEY"):
                register_secret(value)
        merged: dict[str, Any] = {}
        sources: dict[str, str] = {}
        file = Path(path) if path else find_config_file(environ)
        if file is not None:
            for key, value in read_yaml_section(file, environ).items():
                merged[key], sources[key] = value, f"file {file}"
        for key, (value, variable) in read_environment(environ).items():
            merged[key], sources[key] = value, f"env {variable}"
        if isinstance(overrides, LiteLLMConfig):
            for key in overrides.model_fields_set:
                merged[key], sources[key] = getattr(overrides, key), "argument"
            sources.update({k: v for k, v in overrides.sources.items()
                            if k in overrides.model_fields_set and v != "default"})
        elif overrides:
            for key, value in overrides.items():
                merged[key], sources[key] = value, "argument"
        config = cls(**merged)
        config._sources = sources
        return config

    # --- derived values ------------------------------------------------------------------

    def resolved_model(self, environ: dict[str, str] | None = None) -> str:
        """The model to call: the configured one, else one for the provider key present,
        else the embedded local model (an alias resolved)."""
        return self.resolve_alias(self.model) if self.model else default_model(environ)

    def resolve_alias(self, model: str) -> str:
        """The model an alias stands for (matched like every model name: with or without a
        provider prefix, see ``_model_names``); any other name as given."""
        if not self.aliases:
            return model
        from ._model_names import match_name

        alias = match_name(model, self.aliases)
        return self.aliases[alias] if alias is not None else model

    def __repr_args__(self) -> Any:
        # Hide empty defaults to keep reprs short (secrets are masked by _Strict).
        for name, value in super().__repr_args__():
            if name in self.model_fields_set or name == "model":
                yield name, value
