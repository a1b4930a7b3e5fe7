"""Where settings come from besides code, read into plain values for ``LiteLLMConfig.load``.

The config file (``DEWEY_LLM_CONFIG``, else ``./dewey.yaml``, else
``~/.config/dewey/llm.yaml``): found, its ``llm:`` section read, ``${VAR}`` and
``${VAR:-default}`` interpolated from the environment; and the ``LITELLM_*`` variables
(plus ``DEWEY_LLM_LOG``), each turned into its field's value.  Nothing here validates a
value: ``LiteLLMConfig`` does, so that every source gets the same errors.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ._exceptions import LLMConfigError
from ._yaml import load_yaml

__all__ = ["find_config_file", "interpolate", "read_environment", "read_yaml_section"]


# --- files --------------------------------------------------------------------------------

def find_config_file(environ: dict[str, str]) -> Path | None:
    """``DEWEY_LLM_CONFIG``, else ``./dewey.yaml``, else ``~/.config/dewey/llm.yaml``."""
    explicit = environ.get("DEWEY_LLM_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise LLMConfigError(
                f"DEWEY_LLM_CONFIG points to {explicit}, which is not a file: "
                "create it or unset the variable"
            )
        return path
    home = Path(environ.get("HOME", str(Path.home())))
    config_home = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
    for candidate in (Path("dewey.yaml"), config_home / "dewey" / "llm.yaml"):
        if candidate.is_file():
            return candidate
    return None


def read_yaml_section(path: Path, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The interpolated ``llm:`` mapping of a YAML file (or the whole file if it has none)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise LLMConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise LLMConfigError(
            f"config file {path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
            f"{exc.start}): save it as UTF-8") from None
    document = load_yaml(text, f"config file {path}") or {}
    if not isinstance(document, dict):
        raise LLMConfigError(f"config file {path} must hold a mapping with an 'llm:' section")
    section = document.get("llm", document)
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise LLMConfigError(f"the 'llm:' section of {path} must be a mapping, not {type(section).__name__}")
    for key in section:
        if not isinstance(key, str):
            raise LLMConfigError(f"config key {key!r} in {path} is not a name: config keys are words "
                                 "such as model or timeout")
    interpolated = interpolate(section, os.environ if environ is None else environ, path="")
    return dict(interpolated)


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def interpolate(value: Any, environ: Any, path: str) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of ``value``."""
    if isinstance(value, dict):
        return {k: interpolate(v, environ, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, environ, f"{path}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = environ.get(name)
        if found:
            return str(found)
        if default is not None:
            return default
        raise LLMConfigError(
            f"config key '{path}' uses ${{{name}}}, but {name} is not set: "
            f"set it, or write ${{{name}:-default}}"
        )

    text = _VAR.sub(substitute, value)
    if text != value and _VAR.fullmatch(value):
        return _yaml_scalar(text)  # "${TIMEOUT:-30}" should give 30, not "30"
    return text


def _yaml_scalar(text: str) -> Any:
    try:
        return load_yaml(text, "value") if text else text
    except LLMConfigError:
        return text


# --- environment --------------------------------------------------------------------------

_ENV_FIELDS = {
    "LITELLM_MODEL": "model",
    "LITELLM_API_BASE": "api_base",
    "LITELLM_API_KEY": "api_key",
    "LITELLM_TIMEOUT": "timeout",
    "LITELLM_DEADLINE": "deadline",
    "LITELLM_MAX_RETRIES": "max_retries",
    "LITELLM_FALLBACKS": "fallback_models",
    "LITELLM_CACHE": "cache",
    "LITELLM_CACHE_URL": "cache_url",
    "LITELLM_CACHE_TTL": "cache_ttl",
    "LITELLM_CACHE_MAX_ENTRIES": "cache_max_entries",
    "LITELLM_EMBEDDING_MODEL": "embedding_model",
    "LITELLM_USAGE_DB": "usage_db",
    "LITELLM_TRACK_USAGE": "track_usage",
    "LITELLM_USAGE_RETENTION_DAYS": "usage_retention_days",
    "LITELLM_RATE_LIMIT_URL": "rate_limit_url",
    "LITELLM_TRANSPORT": "transport",
    "DEWEY_LLM_LOG": "log",  # ours, not LiteLLM's: the prompt log
}


def read_environment(environ: dict[str, str]) -> dict[str, tuple[Any, str]]:
    """``{field: (value, variable)}`` for each ``LITELLM_*`` variable that is set."""
    found: dict[str, tuple[Any, str]] = {}
    for variable, field in _ENV_FIELDS.items():
        raw = environ.get(variable)
        if raw is None or raw == "":
            continue
        value: Any = raw
        if field == "fallback_models":
            value = [m.strip() for m in raw.split(",") if m.strip()]
        elif field == "cache":
            value = _parse_cache(raw)
        elif field == "transport":
            value = raw.strip().lower()
        elif field in ("track_usage", "log"):
            value = raw.strip().lower() not in ("0", "false", "no", "off")
        found[field] = (value, variable)
    return found


def _parse_cache(raw: str) -> bool | str:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", "none"):
        return False
    return lowered
