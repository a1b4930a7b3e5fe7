"""What the commands share: text in and out, consoles, the client, and number formatting.

Only the standard library at import time: rich, pydantic and the client are imported by
the function that needs them, so ``dewey-llm --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from .._exceptions import LLMConfigError

if TYPE_CHECKING:
    from rich.console import Console

    from .._client import LiteLLMClient
    from .._config import LiteLLMConfig

__all__ = ["NewCommand", "decoded", "group_help", "is_tty", "load_config", "make_client",
           "not_utf8", "note_local_model", "price", "stderr_console", "stdout_console", "tokens", "utf8",
           "write"]

NewCommand = Callable[[Any, str, str, str, tuple[str, ...]], argparse.ArgumentParser]
"""``command(subparsers, name, summary, description, examples)``: a new subcommand parser
with the shared options and help layout (made by ``_app.build_parser``)."""


# --- the configuration and the client ---------------------------------------------------------

def load_config() -> LiteLLMConfig:
    """The effective configuration (``--config`` reaches it through DEWEY_LLM_CONFIG)."""
    from .._config import LiteLLMConfig

    return LiteLLMConfig.load()


def make_client(config: LiteLLMConfig) -> LiteLLMClient:
    """A client for ``config``."""
    from .._client import LiteLLMClient

    return LiteLLMClient(config=config)


def note_local_model(config: LiteLLMConfig, model: str | None,
                     stream: IO[str] | None = None) -> None:
    """A dim note for a person at a terminal when the offline model answers because no
    model or key is configured; each command calls this once, before its first call.
    Not in pipes and logs: there the note would be noise mixed into captured errors."""
    from .._providers import LOCAL_DEFAULT_MODEL

    stream = stream or sys.stderr
    if model or config.model or not is_tty(stream):
        return
    if config.resolved_model() != LOCAL_DEFAULT_MODEL:
        return
    from rich.console import Console
    from rich.text import Text

    # soft_wrap: one line that the terminal wraps, not one cut at 80 columns by rich.
    Console(file=stream).print(Text(
        f"note: no model or provider key is configured, so the local model "
        f"{LOCAL_DEFAULT_MODEL} answers (offline). Set LITELLM_MODEL, or a key such as "
        "OPENAI_API_KEY, to use another.", style="dim"), soft_wrap=True)


# --- text in ----------------------------------------------------------------------------------

def decoded(data: bytes, where: str) -> str:
    """UTF-8 text, or an error naming the first bad byte and the fix."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise not_utf8(where, data[exc.start], exc.start) from None


def utf8(text: str, where: str) -> str:
    """``text`` if it is UTF-8.  Python decodes arguments (and stdin under some locales)
    with surrogateescape: a Latin-1 byte arrives as a lone surrogate that cannot be sent."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise not_utf8(where, ord(text[exc.start]) - 0xDC00) from None
    return text


def not_utf8(where: str, byte: int, offset: int | None = None) -> LLMConfigError:
    """The error for input that is not UTF-8, naming the byte and how to convert it."""
    at = f" at offset {offset}" if offset is not None else ""
    return LLMConfigError(
        f"{where} is not UTF-8 text (byte 0x{byte:02x}{at}); nothing was sent. Convert it "
        "first, e.g. `iconv -f latin1 -t utf-8`, or use a UTF-8 locale")


def is_tty(stream: Any) -> bool:
    """Whether ``stream`` is a terminal (False for anything that cannot tell)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


# --- text out ---------------------------------------------------------------------------------

def write(text: str, out: IO[str] | None = None) -> None:
    """Write ``text`` to ``out`` (stdout) at once: answers show as they arrive."""
    stream = out or sys.stdout
    stream.write(text)
    stream.flush()


def stdout_console() -> Console:
    """A rich console on stdout, for tables."""
    from rich.console import Console

    return Console()


def stderr_console() -> Console:
    """A rich console on stderr, for notes and progress."""
    from rich.console import Console

    return Console(stderr=True)


def group_help(parser: argparse.ArgumentParser) -> int:
    """A command group run without its subcommand: print its help, exit 2 like argparse."""
    parser.print_help(sys.stderr)
    return 2


# --- numbers ----------------------------------------------------------------------------------

def price(value: float | None) -> str:
    """A price per million tokens: ``$0.15``, ``$0.075``, or ``?`` when unknown."""
    from .._usage import usd  # the library's one way of writing money

    return "?" if value is None else usd(value)


def tokens(value: Any) -> str:
    """A token count with thousands separators, or ``?`` when unknown."""
    return f"{int(value):,}" if value else "?"
