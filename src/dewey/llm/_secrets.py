"""Secrets: the one place that knows what a key looks like and how to hide it.

``redact`` cleans free text (messages, provider error bodies), ``mask`` shortens one key
to a hint, ``mask_url`` hides a URL's password, and ``mask_secrets`` walks settings
(mappings, lists, headers) masking every value whose name or shape says "secret".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = ["mask", "mask_secrets", "mask_url", "needs_redacting", "redact", "register_secret",
           "register_url_secrets", "safe_headers", "secret_name"]

# Keys whose shape gives them away, and keys that follow a telling label.
_KEY_PATTERNS = re.compile(
    r"(sk-[A-Za-z0-9_\-]{6,}|sk_[A-Za-z0-9_\-]{6,}|AIza[0-9A-Za-z_\-]{20,}"
    r"|(?<=[Bb]earer )[A-Za-z0-9._\-~+/=]{8,}"
    r"|(?<=[Aa]pi-[Kk]ey: )\S{8,}|(?<=[Aa]pi_[Kk]ey: )\S{8,}"
    r"|(?<=api_key=)[^\s&,'\"]{6,}|(?<=password=)[^\s&,'\"]{6,}|(?<=token=)[^\s&,'\"]{6,})"
)

# A setting, parameter or header with one of these names holds a secret:
# api_key, key, token, secret, password, Authorization, api-key, x-api-key, x-goog-api-key,
# client_secret, access_token, aws_secret_access_key, ...  Not max_tokens or cache.
_SECRET_NAME = re.compile(
    r"(?i)(^|[_\-.])(api[_\-]?key|key|token|secret|password|passwd|authorization|cookie|"
    r"credentials?)$"
)
# A substring of every match of _KEY_PATTERNS: without one of them, nothing can match.
_KEY_HINTS = ("sk-", "sk_", "AIza", "earer ", "pi-", "pi_", "api_key=", "word=", "token=")
_CREDENTIAL_SCHEME = re.compile(r"(?i)^(bearer|basic|token)\s+(\S.*)$")
_QUERY_SECRET = re.compile(r"(?i)(^|&)([^=&]*(?:password|api[_\-]?key|token|secret)|key)=([^&]*)")

# Process-wide on purpose: an error can be raised, or a log line written, by any layer
# (LiteLLM's words re-raised by the backend, redis-py's by the cache, a ledger thread)
# and none of them holds the configuration.  A key that does not look like one (a proxy's
# own token, a Redis password) is only recognisable because the configuration that
# carried it registered it here.  Only ever added to: nothing to reset, nothing to race.
_registered: set[str] = set()


def register_secret(secret: str | None) -> None:
    """Remember a key so that any text containing it is redacted from now on."""
    if secret and len(secret) >= 6:
        _registered.add(secret)


def register_url_secrets(url: str) -> None:
    """Register the password of ``url`` (netloc or ``password=``), as written and decoded."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        register_secret(password)
        register_secret(unquote(password))
    for match in _QUERY_SECRET.finditer(url.partition("?")[2]):
        register_secret(match.group(3))
        register_secret(unquote(match.group(3)))


def needs_redacting(*texts: str | None) -> bool:
    """Whether any of ``texts`` may hold a key: a registered one, or one of a known shape.
    One pass over them all, for a caller with several texts that usually hold none (a
    prompt log entry); False is certain, True means :func:`redact` them."""
    joined = "\0".join(text for text in texts if text)
    return (any(secret in joined for secret in tuple(_registered))
            or any(hint in joined for hint in _KEY_HINTS))


def redact(text: str) -> str:
    """``text`` with every registered key, and anything shaped like a key, masked."""
    # tuple(): another thread may register a key while this one iterates.
    for secret in sorted(tuple(_registered), key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, mask(secret))
    if not any(hint in text for hint in _KEY_HINTS):
        return text  # the pattern costs ~0.2 us a character; long texts (prompts) rarely need it
    return _KEY_PATTERNS.sub(lambda m: mask(m.group(0)), text)


def mask(secret: str) -> str:
    """``sk-abc...xyz`` -> ``sk-...yz``: a hint to tell keys apart, never the key."""
    if len(secret) <= 12:
        return "***"
    return f"{secret[:3]}...{secret[-2:]}"


def mask_url(url: str) -> str:
    """``url`` with its password (``user:pw@`` or a ``password=``-like parameter) masked."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # e.g. an unclosed IPv6 bracket: show nothing of it
        return url.partition("://")[0] + "://***"
    netloc = parts.netloc
    if password is not None:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:***@{host}"
    query = _QUERY_SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}=***", parts.query)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def secret_name(name: str) -> bool:
    """Whether a setting, parameter or header called ``name`` holds a secret."""
    return bool(_SECRET_NAME.search(name))


def mask_secrets(value: Any, name: str = "") -> Any:
    """``value`` (settings, params, headers: nested mappings and lists) fit to print.

    Values under a secret-looking name are masked, ``Bearer``/``Basic`` credentials keep
    only their scheme and a hint, URLs lose their password, other text is redacted.
    """
    if hasattr(value, "get_secret_value"):  # pydantic's SecretStr
        return mask(value.get_secret_value())
    if isinstance(value, Mapping):
        return {key: mask_secrets(item, str(key)) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [mask_secrets(item, name) for item in value]
    if value is None or isinstance(value, bool):
        return value
    if name and secret_name(name):
        return _mask_credential(str(value))
    if isinstance(value, str):
        if _CREDENTIAL_SCHEME.match(value):
            return _mask_credential(value)
        if "://" in value:
            value = mask_url(value)
        return redact(value)
    return value


def safe_headers(headers: Any) -> dict[str, str]:
    """Response or request headers as a plain dict, without credentials or cookies."""
    if not headers:
        return {}
    items: Iterable[tuple[Any, Any]] = (
        headers.items() if hasattr(headers, "items") else dict(headers).items())
    return {str(key): redact(str(value)) for key, value in items
            if not secret_name(str(key)) and str(key).lower() != "set-cookie"}


def _mask_credential(value: str) -> str:
    scheme = _CREDENTIAL_SCHEME.match(value)
    if scheme:
        return f"{scheme.group(1)} {mask(scheme.group(2))}"
    return mask(value)
