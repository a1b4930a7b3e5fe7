"""The ``dewey-llm`` command: chat, embed, models, config, usage and cache from a shell.

Starting must be fast: this module imports only the standard library and the error
classes.  Each subcommand imports what it needs (pydantic for the configuration, rich
for tables, the client) when it runs, and LiteLLM is loaded by the client on the first
real call, so ``dewey-llm --help``, ``config show``, ``usage`` and ``cache`` never pay
for it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ._exceptions import LLMConfigError, LLMError

if TYPE_CHECKING:
    from rich.console import Console

    from ._client import LiteLLMClient
    from ._config import LiteLLMConfig

__all__ = ["main"]

PROG = "dewey-llm"
EMBED_BATCH_SIZE = 32  # texts per embedding call
PROGRESS_THRESHOLD = 20  # show a progress bar for more texts than this
EXIT_WORDS = ("exit", "quit")
RESET_WORD = "!reset"

logger = logging.getLogger("dewey.llm")


# --- entry point ------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """Run ``dewey-llm`` with ``argv`` (default: the process arguments); return the exit code."""
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


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a message is logged."""

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass


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
    if any(getattr(handler, "_dewey_cli", False) for handler in package.handlers):
        return
    handler = _StderrHandler()
    handler.setLevel(logging.WARNING)
    handler.setFormatter(_WarningFormatter())
    handler.addFilter(_not_an_attempt)
    handler._dewey_cli = True  # type: ignore[attr-defined]
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

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        from importlib.metadata import PackageNotFoundError, version

        from . import __version__

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
    parser.set_defaults(handler=lambda _args: _help(parser))
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

    _add_chat(command(
        commands, "chat", "ask a model; streams the answer (interactive without a prompt)",
        "Send a prompt to the configured model (or -m MODEL) and stream the answer to stdout as "
        "it arrives.\n\nThe prompt is the argument, or stdin when it is piped; with both, stdin "
        "is appended to the prompt.  Without a prompt on a terminal, starts a conversation that "
        "keeps its history: type 'exit', 'quit' or Ctrl-D to leave, '!reset' to forget the "
        "conversation.",
        ('dewey-llm chat "Explain exponential backoff in two sentences"',
         'cat error.log | dewey-llm chat -s "You are a terse SRE" "What went wrong?"',
         "dewey-llm chat -m gpt-4o --json --max-tokens 50 \"Say hi\"")))
    _add_embed(command(
        commands, "embed", "embed texts; writes JSON lines to stdout",
        'Embed texts with the embedding model and write one JSON line per text: '
        '{"text": ..., "embedding": [...]}.\n\nTexts are sent in batches of '
        f"{EMBED_BATCH_SIZE}; a progress bar shows on stderr for more than {PROGRESS_THRESHOLD}.",
        ('dewey-llm embed "first text" "second text"',
         "dewey-llm embed --file sentences.txt > vectors.jsonl",
         "grep -v '^#' notes.txt | dewey-llm embed -m text-embedding-3-large --file -")))

    models = command(
        commands, "models", "the models you can call, with prices; or one model's details",
        "List the configured models (primary, fallbacks, embedding model, and where each was "
        "configured), then the priced chat models of every provider whose key is set "
        "(OPENAI_API_KEY, ANTHROPIC_API_KEY, ...) and the offline local/smollm2, with context "
        "window and price per million tokens.  A search term lists only the models whose name "
        "or provider contains it.  `models show MODEL` prints everything LiteLLM knows about "
        "a model.",
        ("dewey-llm models", "dewey-llm models claude --all", "dewey-llm models show gpt-4o",
         "dewey-llm models show anthropic/claude-3-5-sonnet-latest --json"))
    models.add_argument("--all", action="store_true",
                        help="every priced model LiteLLM knows, whatever keys are set")
    models.add_argument("--json", action="store_true", help="print the lists as JSON")
    models.set_defaults(handler=_cmd_models, term=None)
    models_commands = models.add_subparsers(
        title="commands", metavar="[SEARCH | COMMAND]", action=_CommandOrSearch,
        help="a search term, or a command (without either: list the models)")
    search = command(
        models_commands, _SEARCH, "list the models whose name or provider contains SEARCH",
        "List the models you can call whose name or provider contains SEARCH (any case); "
        "`dewey-llm models SEARCH` is the short form.",
        ("dewey-llm models sonnet", "dewey-llm models list gemini --all --json"))
    search.add_argument("term", metavar="SEARCH", nargs="?", help="part of a model's name")
    search.add_argument("--all", action="store_true", default=argparse.SUPPRESS,
                        help="search every priced model, whatever keys are set")
    search.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print the lists as JSON")
    search.set_defaults(handler=_cmd_models)
    show = command(
        models_commands, "show", "all details of one model",
        "Print the context window, prices and capabilities LiteLLM's model map has for MODEL "
        "(offline: nothing is sent).",
        ("dewey-llm models show gpt-4o", "dewey-llm models show gemini/gemini-2.0-flash --json"))
    show.add_argument("model", metavar="MODEL", help="a model name, e.g. gpt-4o or "
                                                     "anthropic/claude-haiku-4-5")
    show.add_argument("--json", action="store_true", help="print the details as JSON")
    show.set_defaults(handler=_cmd_models_show)

    config = command(
        commands, "config", "show or check the effective configuration",
        "Inspect the configuration dewey-llm would use here: every setting with its value and "
        "where it came from (argument, LITELLM_* variable, YAML file or default).",
        ("dewey-llm config show", "dewey-llm --config prod.yaml config check",
         "dewey-llm config show --json | jq .settings.model"))
    config.set_defaults(handler=lambda _args: _help(config))
    config_commands = config.add_subparsers(title="commands", metavar="COMMAND",
                                            help="what to do with the configuration")
    config_show = command(
        config_commands, "show", "every setting, its value and its source",
        "Print every setting of the effective configuration, its value and its source.  Keys "
        "are masked (sk-...89) and URL passwords hidden.",
        ("dewey-llm config show", "LITELLM_MODEL=gpt-4o dewey-llm config show --json"))
    config_show.add_argument("--json", action="store_true", help="print the settings as JSON")
    config_show.set_defaults(handler=_cmd_config_show)
    config_check = command(
        config_commands, "check", "validate the configuration (exit 1 when it is invalid)",
        "Load and validate the configuration.  Prints 'configuration OK: FILE, model MODEL' and "
        "exits 0, or prints the error and exits 1.  Warns when a model needs a provider key "
        "that is not set.",
        ("dewey-llm config check", "dewey-llm --config ci.yaml config check || exit 1"))
    config_check.set_defaults(handler=_cmd_config_check)

    usage = command(
        commands, "usage", "spend and tokens by day and by model",
        "Report what the recorded calls cost: spend by day and by model, as tables and a chart, "
        "from the usage ledger (usage_db).",
        ("dewey-llm usage", "dewey-llm usage --since 7d --model gpt-4o-mini",
         "dewey-llm usage --since 2026-11-01 --json"))
    usage.add_argument("--since", metavar="WHEN",
                       help="only calls since WHEN: a duration (30m, 24h, 7d, 2w), a UTC date "
                            "(2026-11-01) or an ISO datetime; default: all recorded calls")
    usage.add_argument("--model", metavar="MODEL", help="only calls to this model")
    usage.add_argument("--json", action="store_true", help="print the report as JSON")
    usage.set_defaults(handler=_cmd_usage)

    cache = command(
        commands, "cache", "inspect or clear the response cache",
        "Inspect or clear the configured response cache (the default SQLite file when caching "
        "is off or set to true).",
        ("dewey-llm cache stats", "dewey-llm cache clear --yes",
         "LITELLM_CACHE=redis LITELLM_CACHE_URL=redis://localhost:6379/0 dewey-llm cache stats"))
    cache.set_defaults(handler=lambda _args: _help(cache))
    cache_commands = cache.add_subparsers(title="commands", metavar="COMMAND",
                                          help="what to do with the cache")
    stats = command(
        cache_commands, "stats", "entries and size of the cache",
        "Print the cache backend, its location, its live and expired entries and its size.",
        ("dewey-llm cache stats", "dewey-llm cache stats --json"))
    stats.add_argument("--json", action="store_true", help="print the statistics as JSON")
    stats.set_defaults(handler=_cmd_cache_stats)
    clear = command(
        cache_commands, "clear", "delete every cached answer",
        "Delete every entry of the response cache (asks first on a terminal).",
        ("dewey-llm cache clear", "dewey-llm cache clear --yes"))
    clear.add_argument("-y", "--yes", action="store_true",
                       help="do not ask for confirmation (needed when stdin is not a terminal)")
    clear.set_defaults(handler=_cmd_cache_clear)
    return parser


_SEARCH = "list"


class _AnyWord(Mapping[str, argparse.ArgumentParser]):
    """argparse's choices for a subcommand that may also be a search term: the subcommand
    parsers by name, and every word passes argparse's check."""

    def __init__(self, parsers: dict[str, argparse.ArgumentParser]) -> None:
        self._parsers = parsers

    def __contains__(self, word: object) -> bool:
        return True

    def __getitem__(self, name: str) -> argparse.ArgumentParser:
        return self._parsers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._parsers)

    def __len__(self) -> int:
        return len(self._parsers)


class _CommandOrSearch(argparse._SubParsersAction):
    """``models show X`` runs the subcommand; ``models WORD`` searches, as ``models list WORD``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.choices = _AnyWord(self._name_parser_map)  # type: ignore[assignment]

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        if values and values[0] not in self._name_parser_map:
            values = [_SEARCH, *values]
        super().__call__(parser, namespace, values, option_string)


def _help(parser: argparse.ArgumentParser) -> int:
    """A command group run without its subcommand: print its help, exit 2 like argparse."""
    parser.print_help(sys.stderr)
    return 2


def _add_chat(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", nargs="?", metavar="PROMPT",
                        help="the prompt (default: stdin when piped; none on a terminal starts "
                             "a conversation)")
    parser.add_argument("-m", "--model", metavar="MODEL",
                        help="model to ask (default: the configured model)")
    parser.add_argument("-s", "--system", metavar="SYSTEM", help="a system message to send first")
    parser.add_argument("-t", "--temperature", type=float, metavar="T",
                        help="sampling temperature, e.g. 0 for the most deterministic answer")
    parser.add_argument("--max-tokens", type=int, metavar="N",
                        help="the most tokens the answer may have")
    parser.add_argument("--json", action="store_true",
                        help="print the whole response as JSON (not streamed)")
    parser.add_argument("--no-stream", action="store_true",
                        help="print the answer once it is complete instead of as it arrives")
    parser.add_argument("--no-cache", action="store_true",
                        help="neither read nor write the response cache for this call")
    # Converse even when stdin is not a terminal (tests, `script`, expect): undocumented.
    parser.add_argument("--interactive", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(handler=_cmd_chat, parser=parser)


def _add_embed(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="texts to embed")
    parser.add_argument("-f", "--file", metavar="PATH",
                        help="also embed each non-empty line of PATH ('-' for stdin)")
    parser.add_argument("-m", "--model", metavar="MODEL",
                        help="embedding model (default: embedding_model, else one that matches "
                             "the chat model's provider)")
    parser.set_defaults(handler=_cmd_embed, parser=parser)


# --- shared helpers ---------------------------------------------------------------------------

def _load_config() -> LiteLLMConfig:
    from ._config import LiteLLMConfig

    return LiteLLMConfig.load()


def _client(config: LiteLLMConfig) -> LiteLLMClient:
    from ._client import LiteLLMClient

    return LiteLLMClient(config=config)


def _stdout_console() -> Console:
    from rich.console import Console

    return Console()


def _stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def _note_local_model(config: LiteLLMConfig, model: str | None,
                      stream: IO[str] | None = None) -> None:
    """A dim note for a person at a terminal when the offline model answers because no
    model or key is configured; each command calls this once, before its first call.
    Not in pipes and logs: there the note would be noise mixed into captured errors."""
    from ._providers import LOCAL_DEFAULT_MODEL

    stream = stream or sys.stderr
    if model or config.model or not _is_tty(stream):
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


def _write(text: str, out: IO[str] | None = None) -> None:
    stream = out or sys.stdout
    stream.write(text)
    stream.flush()


def _delta_text(chunk: Any) -> str:
    choices = chunk["choices"] if isinstance(chunk, dict) else getattr(chunk, "choices", None)
    if not choices:
        return ""
    first = choices[0]
    delta = first.get("delta") if isinstance(first, dict) else getattr(first, "delta", None)
    if delta is None:
        return ""
    content = delta.get("content") if isinstance(delta, dict) else getattr(delta, "content", None)
    return content or ""


def _response_text(response: Any) -> str:
    choices = response["choices"] if isinstance(response, dict) else response.choices
    if not choices:
        return ""
    first = choices[0]
    message = first["message"] if isinstance(first, dict) else first.message
    content = message.get("content") if isinstance(message, dict) else message.content
    return content or ""


# --- chat -------------------------------------------------------------------------------------

def _cmd_chat(args: argparse.Namespace) -> int:
    prompt = None if args.prompt is None else _utf8(args.prompt, "the prompt")
    if args.system is not None:
        _utf8(args.system, "--system")
    interactive = args.interactive or (prompt is None and _is_tty(sys.stdin))
    if not interactive and not _is_tty(sys.stdin):
        piped = _decoded(sys.stdin.buffer.read(), "stdin")
        if piped.strip():
            prompt = f"{prompt}\n\n{piped}" if prompt else piped
    if prompt is None and not interactive:
        args.parser.error("no prompt: give one as an argument or on stdin")
    if interactive and (args.json or args.no_stream):
        args.parser.error("--json and --no-stream need a prompt (a conversation always streams)")
    config = _load_config()
    params: dict[str, Any] = {"temperature": args.temperature, "max_tokens": args.max_tokens}
    if args.no_cache:
        params["cache"] = False
    with _client(config) as client:
        _note_local_model(config, args.model)
        if interactive:
            return converse(client, model=args.model, system=args.system, params=params,
                            first=prompt)
        messages = [*_start(args.system), {"role": "user", "content": prompt}]
        if args.json:
            from ._response import as_dict

            response = client.generate_completion(messages, args.model, **params)
            _write(json.dumps(as_dict(response), indent=2, ensure_ascii=False) + "\n")
        elif args.no_stream:
            response = client.generate_completion(messages, args.model, **params)
            _write(_with_newline(_response_text(response)))
        else:
            stream_answer(client, messages, args.model, params)
    return 0


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _start(system: str | None) -> list[dict[str, Any]]:
    return [{"role": "system", "content": system}] if system else []


def _with_newline(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def stream_answer(client: LiteLLMClient, messages: list[dict[str, Any]], model: str | None,
                  params: dict[str, Any], out: IO[str] | None = None) -> str:
    """Stream one answer to ``out`` (stdout) as it arrives, end it with a newline, return it."""
    stream = client.generate_completion(messages, model, stream=True, **params)
    pieces: list[str] = []
    try:
        for chunk in stream:
            piece = _delta_text(chunk)
            if piece:
                pieces.append(piece)
                _write(piece, out)
    except BaseException:
        with contextlib.suppress(Exception):
            stream.close()
        raise
    text = "".join(pieces)
    if not text.endswith("\n"):
        _write("\n", out)
    return text


def converse(client: LiteLLMClient, *, model: str | None = None, system: str | None = None,
             params: dict[str, Any] | None = None, first: str | None = None,
             read: Callable[[str], str] = input, out: IO[str] | None = None) -> int:
    """An interactive conversation that keeps its history; returns the exit code.

    ``read`` is called with the prompt ``"> "`` for each line (``input`` by default: line
    editing on a terminal); EOF, ``exit`` or ``quit`` leave, ``!reset`` forgets the history.
    Ctrl-C while an answer streams cancels that answer only.
    """
    params = dict(params or {})
    notes = _stderr_console()
    if _is_tty(sys.stdin) and read is input:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401  (line editing and history for input())
    shown = model or client.model
    notes.print(f"Chatting with {shown}. Type 'exit' or Ctrl-D to leave, "
                f"'{RESET_WORD}' to start over.", style="dim", highlight=False)
    history = _start(system)
    pending = first
    while True:
        if pending is not None:
            line, pending = pending, None
        else:
            try:
                line = _utf8(read("> "), "stdin")
            except EOFError:
                _write("\n", out)
                return 0
            except UnicodeDecodeError as exc:  # a terminal or pipe read strictly
                raise _not_utf8("stdin", exc.object[exc.start]) from None
        text = line.strip()
        if not text:
            continue
        if text.lower() in EXIT_WORDS:
            return 0
        if text == RESET_WORD:
            history = _start(system)
            notes.print("(conversation forgotten)", style="dim", highlight=False)
            continue
        messages = [*history, {"role": "user", "content": line}]
        try:
            answer = stream_answer(client, messages, model, params, out)
        except KeyboardInterrupt:
            _write("\n", out)
            notes.print("(answer cancelled)", style="dim", highlight=False)
            continue
        except LLMError as exc:
            notes.print(f"error: {' '.join(str(exc).split())}", style="red", highlight=False,
                        markup=False)
            continue
        history = [*messages, {"role": "assistant", "content": answer}]


# --- embed ------------------------------------------------------------------------------------

def _cmd_embed(args: argparse.Namespace) -> int:
    texts = [_utf8(text, "a TEXT argument") for text in args.texts]
    if args.file:
        texts.extend(_read_lines(args.file))
    if not texts:
        args.parser.error("nothing to embed: give TEXT arguments or --file PATH")
    config = _load_config()
    batches = [texts[i:i + EMBED_BATCH_SIZE] for i in range(0, len(texts), EMBED_BATCH_SIZE)]
    with _client(config) as client:
        if args.model is None and config.embedding_model is None:
            _note_local_model(config, None)
        with _progress(len(texts)) as advance:
            for batch in batches:
                response = client.generate_embedding(batch, args.model)
                lines = [json.dumps({"text": text, "embedding": vector}, ensure_ascii=False)
                         for text, vector in zip(batch, _vectors(response), strict=True)]
                _write("\n".join(lines) + "\n")
                advance(len(batch))
    return 0


def _read_lines(path: str) -> list[str]:
    if path == "-":
        content = _decoded(sys.stdin.buffer.read(), "stdin")
    else:
        content = _decoded(Path(path).expanduser().read_bytes(), path)
    return [line.rstrip("\r") for line in content.split("\n") if line.strip()]


def _decoded(data: bytes, where: str) -> str:
    """UTF-8 text, or an error naming the first bad byte and the fix."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _not_utf8(where, data[exc.start], exc.start) from None


def _utf8(text: str, where: str) -> str:
    """``text`` if it is UTF-8.  Python decodes arguments (and stdin under some locales)
    with surrogateescape: a Latin-1 byte arrives as a lone surrogate that cannot be sent."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _not_utf8(where, ord(text[exc.start]) - 0xDC00) from None
    return text


def _not_utf8(where: str, byte: int, offset: int | None = None) -> LLMConfigError:
    at = f" at offset {offset}" if offset is not None else ""
    return LLMConfigError(
        f"{where} is not UTF-8 text (byte 0x{byte:02x}{at}); nothing was sent. Convert it "
        "first, e.g. `iconv -f latin1 -t utf-8`, or use a UTF-8 locale")


@contextlib.contextmanager
def _progress(total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr for long inputs; yields ``advance(n)``."""
    console = _stderr_console() if total > PROGRESS_THRESHOLD else None
    if console is None or not console.is_terminal:
        yield lambda _n: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn("embedding"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console, transient=True) as progress:
        task = progress.add_task("embedding", total=total)
        yield lambda n: progress.advance(task, n)


def _vectors(response: Any) -> list[list[float]]:
    data = response["data"] if isinstance(response, dict) else response.data
    items = [(item["index"], item["embedding"]) if isinstance(item, dict)
             else (item.index, item.embedding) for item in data]
    return [vector for _, vector in sorted(items, key=lambda pair: pair[0])]


# --- models -----------------------------------------------------------------------------------

def _cmd_models(args: argparse.Namespace) -> int:
    from ._models_report import available_models, backend, configured_models, render_models

    config = _load_config()
    # A search looks through what can be called; the configuration has its own command.
    configured = [] if args.term else configured_models(config, backend())
    available, keyed = available_models(config, every=args.all, term=args.term)
    if args.json:
        _write(json.dumps({"configured": configured, "models": available}, indent=2) + "\n")
        return 0
    render_models(configured, available, keyed, every=args.all, term=args.term,
                  console=_stdout_console())
    return 0


def _cmd_models_show(args: argparse.Namespace) -> int:
    from ._models_report import backend, render_model

    catalog = backend()
    details = catalog.details(args.model)
    details["transport"] = _transports(_load_config(), args.model, catalog)[args.model]
    if args.json:
        _write(json.dumps(details, indent=2, default=str) + "\n")
        return 0
    render_model(args.model, details, _stdout_console())
    return 0


# --- config -----------------------------------------------------------------------------------

def _cmd_config_show(args: argparse.Namespace) -> int:
    from ._config import find_config_file

    config = _load_config()
    file = find_config_file(dict(os.environ))
    sources = config.sources
    fields = type(config).model_fields
    settings = {name: _shown(name, getattr(config, name)) for name in fields}
    from ._catalog import Catalog

    transports = _transports(config, config.resolved_model(), Catalog())
    if args.json:
        document = {
            "file": str(file) if file else None,
            "resolved_model": config.resolved_model(),
            "transports": transports,
            "settings": settings,
            "sources": sources,
        }
        _write(json.dumps(document, indent=2) + "\n")
        return 0
    from rich.table import Table
    from rich.text import Text

    console = _stdout_console()
    console.print(Text(f"Configuration file: {file or 'none'}"))
    console.print(Text(f"Model in use: {config.resolved_model()}"))
    console.print(Text("Sent through: " + ", ".join(f"{model} {how}" for model, how in transports.items())))
    table = Table(title_justify="left")
    table.add_column("Setting", style="bold", no_wrap=True)
    table.add_column("Value", overflow="fold")
    table.add_column("Source", overflow="fold")
    for name in fields:
        source = sources[name]
        value = settings[name]
        text = "-" if value is None else value if isinstance(value, str) else json.dumps(value)
        table.add_row(name, Text(text), Text(source, style="dim" if source == "default" else ""))
    console.print(table)
    return 0


def _transports(config: Any, model: str, catalog: Any) -> dict[str, str]:
    """Which transport (native or litellm) ``model`` and each fallback take, or why none can."""
    from ._exceptions import LLMConfigError
    from ._routing import routes_for

    try:
        routes = routes_for(config, model, catalog)
    except LLMConfigError as error:
        return {model: f"none: {error.message}"}
    shown = {model: routes[0].transport}  # under the name asked for, qualified or not
    shown.update((route.model, route.transport) for route in routes[1:])
    return shown


def _shown(name: str, value: Any) -> Any:
    """A setting as JSON-able data, every secret-looking value masked (keys, tokens,
    Authorization and api-key headers, URL passwords)."""
    from pydantic import BaseModel

    from ._secrets import mask_secrets

    if isinstance(value, BaseModel):
        return {key: _shown(key, getattr(value, key)) for key in value.model_fields_set
                or type(value).model_fields}
    if isinstance(value, list):
        return [_shown(name, item) for item in value]
    return mask_secrets(value, name)


def _cmd_config_check(args: argparse.Namespace) -> int:
    from ._catalog import Catalog
    from ._config import find_config_file
    from ._routing import missing_key_error, routes_for

    config = _load_config()
    file = find_config_file(dict(os.environ))
    warnings = []
    with _client(config) as client:
        # The routes the client would call, with the credentials it would use.
        catalog = Catalog()
        for route in routes_for(config, client.model, catalog):
            missing = missing_key_error(route, catalog)
            if missing is not None:
                warnings.append(str(missing))
    _write(f"configuration OK: {file or 'no file'}, model {config.resolved_model()}\n")
    for warning in warnings:
        print(f"warning: {' '.join(warning.split())}", file=sys.stderr)
    return 0


# --- usage ------------------------------------------------------------------------------------

def _cmd_usage(args: argparse.Namespace) -> int:
    from ._usage import open_ledger
    from ._usage_report import parse_since, render_usage

    since = parse_since(args.since) if args.since else None
    config = _load_config()
    ledger = open_ledger(config.usage_db)
    try:
        render_usage(ledger, since=since, model=args.model, as_json=args.json,
                     console=_stdout_console())
    finally:
        ledger.close()
    return 0


# --- cache ------------------------------------------------------------------------------------

def _open_cache() -> Any:
    from ._cache import open_cache

    config = _load_config()
    return open_cache(config.cache or True, config.cache_url)


def _cmd_cache_stats(args: argparse.Namespace) -> int:
    cache = _open_cache()
    try:
        stats = cache.stats()
    finally:
        cache.close()
    document = {name: getattr(stats, name)
                for name in ("backend", "location", "entries", "expired", "size_bytes")}
    if args.json:
        _write(json.dumps(document, indent=2) + "\n")
        return 0
    from rich.table import Table

    table = Table(title="Response cache", title_justify="left", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", overflow="fold")
    table.add_row("backend", stats.backend)
    table.add_row("location", stats.location)
    table.add_row("entries", f"{stats.entries:,}")
    table.add_row("expired", f"{stats.expired:,}")
    table.add_row("size", _size(stats.size_bytes))
    _stdout_console().print(table, highlight=False)
    return 0


def _size(value: int | None) -> str:
    if value is None:
        return "unknown"
    size = float(value)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} bytes"  # pragma: no cover


def _cmd_cache_clear(args: argparse.Namespace) -> int:
    if not args.yes and not _is_tty(sys.stdin):
        raise LLMConfigError("cache clear asks for confirmation: pass --yes to clear without "
                             "a terminal")
    cache = _open_cache()
    try:
        try:
            stats = cache.stats()
            what, damaged = f"{stats.entries:,} cached entries from", False
        except LLMConfigError:  # a file that cannot be read: clearing recreates it
            what, damaged = "the unreadable file of", True
        if not args.yes:
            answer = input(f"Delete {what} the {cache.backend} cache at {cache.location}? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("Nothing deleted.", file=sys.stderr)
                return 1
        removed = cache.clear()
    finally:
        cache.close()
    if damaged:
        _write(f"recreated the {cache.backend} cache at {cache.location} (it could not be read)\n")
        return 0
    noun = "entry" if removed == 1 else "entries"
    _write(f"cleared {removed:,} {noun} from the {cache.backend} cache at {cache.location}\n")
    return 0
