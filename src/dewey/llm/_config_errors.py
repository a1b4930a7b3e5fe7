"""One readable ``LLMConfigError`` from pydantic's ``ValidationError`` of a ``LiteLLMConfig``.

Each problem names the key, the value given (secrets masked), what was expected and the
setting's default, with a did-you-mean for an unknown key and a pointer to ``params`` for a
generation parameter given as a setting.  Imported only when a configuration is wrong.
"""

from __future__ import annotations

import difflib

from pydantic import BaseModel, ValidationError

from ._config import Budget, FallbackModel, LiteLLMConfig, Price, RateLimit
from ._exceptions import LLMConfigError
from ._secrets import mask_secrets

__all__ = ["config_error"]


def config_error(exc: ValidationError) -> LLMConfigError:
    """One readable message: the key, the value given, what was expected, a did-you-mean."""
    lines = []
    for error in exc.errors():
        location = [str(part) for part in error["loc"]]
        key = ".".join(location) or "config"
        value = error.get("input")
        if error["type"] == "extra_forbidden" and location == [location[0]] and key in _GENERATION_PARAMS:
            lines.append(f"'{key}' is a generation parameter, not a setting: put it under "
                         f"params (params: {{{key}: ...}}), or pass it to generate_completion")
            continue
        if error["type"] == "extra_forbidden":
            suggestion = difflib.get_close_matches(location[-1], _known_keys(location), n=1)
            hint = (f"; did you mean '{suggestion[0]}'?" if suggestion
                    else f"; known keys: {', '.join(_known_keys(location))}")
            lines.append(f"unknown config key '{key}'{hint}")
            continue
        shown = repr(mask_secrets(value, location[-1]))
        if len(shown) > 200:
            shown = shown[:200] + "..."
        lines.append(f"config key '{_top_key(location)}' has invalid value {shown}: "
                     f"{error['msg'].lower()}{_fix_hint(location)}")
    return LLMConfigError("invalid configuration: " + "; ".join(dict.fromkeys(lines)))


def _fix_hint(location: list[str]) -> str:
    """What the setting means and its default, so that the message says how to fix it."""
    field = LiteLLMConfig.model_fields.get(location[0]) if len(location) == 1 else None
    if field is None or not field.description:
        return ""
    value = field.get_default(call_default_factory=True)
    default = "none" if value is None else repr(value)
    return f" ({location[0]}: {field.description[0].lower()}{field.description[1:]}; " \
           f"fix it, or remove it for the default, {default})"


_GENERATION_PARAMS = {"temperature", "max_tokens", "max_completion_tokens", "top_p", "seed", "stop",
                      "presence_penalty", "frequency_penalty", "response_format", "n", "logprobs"}
_UNION_BRANCHES = ("str", "FallbackModel", "bool", "literal['memory','sqlite','redis']")


def _top_key(location: list[str]) -> str:
    # pydantic names union branches (fallback_models.0.str, cache.bool): leave them out.
    return ".".join(part for part in location if part not in _UNION_BRANCHES)


def _known_keys(location: list[str]) -> list[str]:
    nested: dict[str, type[BaseModel]] = {"budget": Budget, "fallback_models": FallbackModel,
                                          "rate_limits": RateLimit, "prices": Price}
    for part in reversed(location[:-1]):
        if part in nested:
            return list(nested[part].model_fields)
    return list(LiteLLMConfig.model_fields)
