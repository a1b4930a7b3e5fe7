"""The ``dewey-llm`` entry point: the parser, global options, logging, errors and exit codes.

Every failure ends as one ``error: ...`` line on stderr and exit code 1 (2 for a usage
mistake, 130 for Ctrl-C); ``--debug`` adds the traceback and DEBUG logging.  Each command
lives in its own module, which adds its options and its handler to the parser.

Starting must be fast: the modules import only the standard library and the error
classes.  Each command imports what it needs (pydantic for the configuration, rich for
tables, the client) when it runs, and LiteLLM is loaded by the client on the first real
call, so ``dewey-llm --help``, ``config show``, ``usage`` and ``cache`` never pay for it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._exceptions import LLMConfigError, LLMError
from . import _aliases_cmd, _cache_cmd, _chat, _config_cmd, _embed, _logs_cmd, _models, _usage_cmd
from ._output import group_help

__all__ = ["build_parser", "main"]

PROG = "dewey-llm"


# --- entry point ------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """Run ``dewey-llm`` with ``argv`` (default: the process arguments); return the exit code."""
    # pydantic looks for plugins by scanning every installed distribution's entry points
    # when the configuration's models are built: 10-25 ms of a cold call here.  No code
    # of the user's runs in this process for a plugin to observe; PYDANTIC_DISABLE_PLUGINS=""
    # (set, empty) brings them back.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    # httpx's __init__ imports its own command line (click, rich's syntax highlighting,
    # pygments): ~45 ms of a cold call here, for a tool this process never runs
    # (encode/httpx#3547).  None in sys.modules fails that import as a missing click
    # would, and httpx falls back to its own stand-in ``httpx.main``.  A process that
    # has imported httpx already is left as it is.
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    _setup_logging(debug)
    try:
        with _config_file(getattr(args, "config", None)):
            result: int = args.handler(args)
            return result
    except KeyboardInterrupt:
        _error("interrupted", debug)
        if not debug:
            # Objects torn down mid-call (an event loop's transports, a half-read
            # response) complain from their finalizers at exit; the user asked to stop.
            sys.unraisablehook = lambda _unraisable: None
        return 130
    except BrokenPipeError:
        # The reader went away (`dewey-llm embed ... | head`): point stdout at /dev/null so
        # that the interpreter's final flush does not complain a second time.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        _error("broken pipe: the output was closed before everything was written", debug)
        return 1
    except LLMError as exc:
        _error(str(exc), debug)
        return 1
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        _error(f"{exc.strerror or exc}:{where}" if where else str(exc), debug)
        return 1
    except Exception as exc:
        _error(f"unexpected {type(exc).__name__}: {exc} (this is a bug; run with --debug for "
               "the traceback)", debug)
        return 1


class _StderrHandler(logging.Handler):
    """Writes each record to whatever ``sys.stderr`` is when it is logged (tests and
    redirections replace it after the handler is made)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


class _WarningFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {' '.join(record.getMessage().split())}"


def _not_an_attempt(record: logging.LogRecord) -> bool:
    # The client logs every failed attempt as a warning; a failure that ends the command is
    # reported once, with its attempt history, as the error line.
    return not str(record.msg).startswith("model=%s attempt=")


def _setup_logging(debug: bool) -> None:
    """--debug: everything at DEBUG with timestamps.  Otherwise dewey-llm's own warnings
    (a usage ledger that cannot be written, a cache that fails, ...) as one line each."""
    if debug:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                            format="%(asctime)s %(name)s %(levelname)s: %(message)s")
        return
    package = logging.getLogger("dewey.llm")
    if any(isinstance(handler, _StderrHandler) for handler in package.handlers):
        return  # main() ran before in this process
    handler = _StderrHandler()
    handler.setLevel(logging.WARNING)
    handler.setFormatter(_WarningFormatter())
    handler.addFilter(_not_an_attempt)
    package.addHandler(handler)


def _error(message: str, debug: bool) -> None:
    """One line on stderr (the traceback too, with --debug)."""
    if debug:
        import traceback

        traceback.print_exc()
    text = " ".join(message.split()) or "failed"
    with contextlib.suppress(OSError, ValueError):
        print(f"error: {text}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _config_file(path: str | None) -> Iterator[None]:
    """``--config PATH``: every configuration load of this run (ours and the client's)
    reads that file, through ``DEWEY_LLM_CONFIG``."""
    if path is None:
        yield
        return
    file = Path(path).expanduser()
    if not file.is_file():
        raise LLMConfigError(f"--config {path}: no such file")
    previous = os.environ.get("DEWEY_LLM_CONFIG")
    os.environ["DEWEY_LLM_CONFIG"] = str(file)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("DEWEY_LLM_CONFIG", None)
        else:
            os.environ["DEWEY_LLM_CONFIG"] = previous


# --- the parser -------------------------------------------------------------------------------

class _Formatter(argparse.HelpFormatter):
    """Descriptions wrapped paragraph by paragraph; the examples kept as written."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):
            return text
        return "\n\n".join(super(_Formatter, self)._fill_text(paragraph, width, indent)
                           for paragraph in text.split("\n\n"))


class _VersionAction(argparse.Action):
    """``--version``, computed only when asked (the installed versions cost a lookup)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, _namespace: argparse.Namespace,
                 _values: Any, _option_string: str | None = None) -> None:
        from importlib.metadata import PackageNotFoundError, version

        from .. import __version__

        try:
            litellm = f"litellm {version('litellm')}"
        except PackageNotFoundError:
            litellm = "litellm not installed"
        python = ".".join(map(str, sys.version_info[:3]))
        print(f"{PROG} {__version__} ({litellm}, Python {python})")
        parser.exit()


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """--config and --debug, accepted before the subcommand and after it."""
    default: Any = argparse.SUPPRESS if suppress else None
    parser.add_argument("--config", metavar="PATH", default=default,
                        help="read settings from this YAML file (its 'llm:' section) instead of "
                             "$DEWEY_LLM_CONFIG, ./dewey.yaml or ~/.config/dewey/llm.yaml")
    parser.add_argument("--debug", action="store_true",
                        default=argparse.SUPPRESS if suppress else False,
                        help="show full tracebacks and DEBUG logging")


def build_parser() -> argparse.ArgumentParser:
    """The ``dewey-llm`` argument parser, with every subcommand."""
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=_Formatter,
        description="One dependable, cost-aware interface to every large language model "
                    "(built on LiteLLM).\n\nSettings come from LITELLM_* variables, a YAML file "
                    "and defaults: see `dewey-llm config show`.",
        epilog=_examples(
            'dewey-llm chat "Write a haiku about retries"',
            'git diff | dewey-llm chat -m claude-haiku-4-5 "Review this diff:"',
            "dewey-llm config check && dewey-llm usage --since 7d",
        ))
    _global_options(parser, suppress=False)
    parser.add_argument("--version", action=_VersionAction,
                        help="print the versions of dewey-llm, LiteLLM and Python and exit")
    parser.set_defaults(handler=lambda _args: group_help(parser))
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, suppress=True)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND",
                                     help="run `dewey-llm COMMAND --help` for its options")

    def command(parent: Any, name: str, summary: str, description: str,
                examples: tuple[str, ...]) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = parent.add_parser(
            name, help=summary, description=description, epilog=_examples(*examples),
            formatter_class=_Formatter, parents=[common])
        return sub

    for module in (_chat, _embed, _models, _aliases_cmd, _config_cmd, _usage_cmd, _logs_cmd, _cache_cmd):
        module.add(commands, command)
    return parser
