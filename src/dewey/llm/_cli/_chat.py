"""``dewey-llm chat``: ask a model, stream its answer, or hold a conversation.

The prompt is the argument, or stdin when it is piped (stdin first, then the argument,
when both are given: ``llm``'s order); without one on a terminal, a conversation starts
that keeps its history.  ``-a`` attaches images (_attachments); ``-a -`` is the image
piped on stdin, which then holds no text, so the prompt is the argument.  Every run is a
conversation in the prompt log: ``-c`` continues the latest, ``--cid`` one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from .._exceptions import LLMError
from ._attachments import IMAGE_TYPES, STDIN, user_content
from ._output import (
    NewCommand,
    decoded,
    is_tty,
    load_config,
    make_client,
    not_utf8,
    note_local_model,
    stderr_console,
    utf8,
    write,
)

if TYPE_CHECKING:
    from .._client import LiteLLMClient
    from .._config import LiteLLMConfig
    from .._conversation import Conversation
    from .._stream import CompletionStream

__all__ = ["add", "converse", "print_stream"]

EXIT_WORDS = ("exit", "quit")
RESET_WORD = "!reset"


def add(commands: Any, command: NewCommand) -> None:
    """The ``chat`` subcommand, its options and its handler."""
    parser = command(
        commands, "chat", "ask a model; streams the answer (interactive without a prompt)",
        "Send a prompt to the configured model (or -m MODEL) and stream the answer to stdout as "
        "it arrives.\n\nThe prompt is the argument, or stdin when it is piped; with both, stdin "
        "comes first, then a blank line and the argument (as with `llm`: the material first, "
        "then the question about it).  -a attaches an image (a "
        "file or an http(s) URL; repeat it for more) for models that take images; -a - "
        f"attaches the {IMAGE_TYPES} image piped on stdin, and the prompt is then the "
        "argument.  Without "
        "a prompt on a terminal, starts a conversation that "
        "keeps its history: type 'exit', 'quit' or Ctrl-D to leave, '!reset' to forget the "
        "conversation.",
        ('dewey-llm chat "Explain exponential backoff in two sentences"',
         'cat error.log | dewey-llm chat -s "You are a terse SRE" "What went wrong?"',
         'dewey-llm chat -m gpt-4o-mini -a screenshot.png "What does this error dialog say?"',
         'cat photo.jpg | dewey-llm chat -a - "What is in this photo?"',
         "dewey-llm chat -m gpt-4o --json --max-tokens 50 \"Say hi\"",
         "dewey-llm chat --schema 'name str, age int, tags list[str]' \"Invent a dog\"",
         'dewey-llm chat -c "And in one word?"'))
    parser.add_argument("prompt", nargs="?", metavar="PROMPT",
                        help="the prompt (default: stdin when piped; none on a terminal starts "
                             "a conversation)")
    parser.add_argument("-m", "--model", metavar="MODEL",
                        help="model to ask (default: the configured model)")
    parser.add_argument("-a", "--attachment", action="append", default=[], metavar="FILE",
                        help="an image to send with the prompt: a file, an http(s) URL, or - "
                             "for the image piped on stdin (the prompt is then the argument); "
                             "repeatable; the model must take images")
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
    schemas = parser.add_mutually_exclusive_group()
    schemas.add_argument("--schema", metavar="SCHEMA",
                         help="answer with a JSON object of this schema, printed as JSON: "
                              "'name str, age int, tags list[str]', a file schema.json, or "
                              "module:Model (a pydantic model)")
    schemas.add_argument("--schema-multi", metavar="SCHEMA",
                         help="as --schema, for a JSON list of such objects")
    parser.add_argument("-c", "--continue", dest="resume", action="store_true",
                        help="continue the latest logged conversation (its history and model)")
    parser.add_argument("--cid", metavar="ID",
                        help="continue the conversation ID (see `dewey-llm logs list`)")
    parser.add_argument("--no-log", action="store_true",
                        help="keep this exchange out of the prompt log")
    # Converse even when stdin is not a terminal (tests, `script`, expect): undocumented.
    parser.add_argument("--interactive", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(handler=_chat, parser=parser)


def _chat(args: argparse.Namespace) -> int:
    prompt = None if args.prompt is None else utf8(args.prompt, "the prompt")
    if args.system is not None:
        utf8(args.system, "--system")
    image_on_stdin = _check_stdin_image(args, prompt)
    interactive = args.interactive or (prompt is None and not args.attachment and is_tty(sys.stdin))
    piped_image = None
    if not interactive and not is_tty(sys.stdin):
        if image_on_stdin:
            piped_image = sys.stdin.buffer.read()  # its type is checked by user_content
        else:
            piped = decoded(sys.stdin.buffer.read(), "stdin")
            if piped.strip():
                prompt = f"{piped.rstrip()}\n\n{prompt}" if prompt else piped
    if prompt is None and not interactive and not args.attachment:
        args.parser.error("no prompt: give one as an argument or on stdin")
    schema = args.schema or args.schema_multi
    if interactive and (args.json or args.no_stream or args.attachment or schema):
        args.parser.error("--json, --no-stream, -a and --schema need a prompt (a conversation "
                          "always streams, and sends text only)")
    # Files read (or refused), and stdin's image typed (or refused), before any call.
    content = user_content(prompt, args.attachment, piped_image)
    if args.system is not None and (args.resume or args.cid):
        args.parser.error("--system starts a conversation; -c and --cid continue one with its own")
    config = load_config()
    params: dict[str, Any] = {"temperature": args.temperature, "max_tokens": args.max_tokens}
    if args.no_cache:
        params["cache"] = False
    if args.no_log:
        params["log"] = False
    if schema:
        from ._schema import schema_of

        params["response_format"] = schema_of(schema, many=args.schema_multi is not None)
    with make_client(config) as client:
        chat = _conversation(client, config, args)
        note_local_model(config, chat.model)
        if interactive:
            return converse(client, chat, system=args.system, params=params, first=prompt)
        message = {"role": "user", "content": content}
        if args.json:
            from .._response import as_dict

            response = chat.send(message, **params)
            write(json.dumps(as_dict(response), indent=2, ensure_ascii=False) + "\n")
        elif schema:
            from ._schema import answer_data

            response = chat.send(message, **params)
            data = answer_data(response, many=args.schema_multi is not None)
            write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        elif args.no_stream:
            from .._response import answer_text

            text = answer_text(chat.send(message, **params))
            write(text if text.endswith("\n") else text + "\n")
        else:
            print_stream(chat.send(message, stream=True, **params))
    return 0


def _check_stdin_image(args: argparse.Namespace, prompt: str | None) -> bool:
    """Whether ``-a -`` takes the image from stdin; usage errors, before stdin is read,
    when it cannot: given twice, without a prompt argument, or with stdin a terminal."""
    count = args.attachment.count(STDIN)
    if not count:
        return False
    if count > 1:
        args.parser.error("-a - is given twice: stdin holds one image (attach the others as "
                          "files or URLs)")
    if prompt is None:
        args.parser.error('-a - reads the image from stdin, so the prompt must be an argument: '
                          'cat photo.png | dewey-llm chat -a - "What is in this image?"')
    if is_tty(sys.stdin):
        args.parser.error("-a - reads the image from stdin, but stdin is a terminal: pipe the "
                          'image in (cat photo.png | dewey-llm chat -a - "...") or give its file')
    return True


def _conversation(client: LiteLLMClient, config: LiteLLMConfig,
                  args: argparse.Namespace) -> Conversation:
    """The conversation this run continues (-c, --cid), else a new one."""
    cid = args.cid
    if args.resume and cid is None:
        from .._exceptions import LLMConfigError
        from .._usage import open_ledger

        with open_ledger(config.usage_db) as ledger:
            cid = ledger.latest_conversation()
        if cid is None:
            raise LLMConfigError("-c: no conversation in the prompt log yet: start one with "
                                 '`dewey-llm chat "..."` (with logging on)')
    return client.conversation(cid, model=args.model, system=args.system)


def print_stream(stream: CompletionStream, out: IO[str] | None = None) -> str:
    """Write ``stream``'s text to ``out`` (stdout) as it arrives, end it with a newline,
    return it; the stream is closed if reading it fails or is interrupted."""
    from .._response import delta_text

    pieces: list[str] = []
    try:
        for chunk in stream:
            piece = delta_text(chunk)
            if piece:
                pieces.append(piece)
                write(piece, out)
    except BaseException:
        with contextlib.suppress(Exception):
            stream.close()
        raise
    text = "".join(pieces)
    if not text.endswith("\n"):
        write("\n", out)
    return text


def converse(client: LiteLLMClient, chat: Conversation, *, system: str | None = None,
             params: dict[str, Any] | None = None, first: str | None = None,
             read: Callable[[str], str] = input, out: IO[str] | None = None) -> int:
    """An interactive conversation, ``chat`` (a new one, or one resumed with its history);
    returns the exit code.

    ``read`` is called with the prompt ``"> "`` for each line (``input`` by default: line
    editing on a terminal); EOF, ``exit`` or ``quit`` leave, ``!reset`` starts a new
    conversation (with ``system`` first).  Ctrl-C while an answer streams cancels that
    answer only: it does not join the history.
    """
    params = dict(params or {})
    notes = stderr_console()
    if is_tty(sys.stdin) and read is input:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401  (line editing and history for input())
    shown = chat.model or client.model
    notes.print(f"Chatting with {shown}. Type 'exit' or Ctrl-D to leave, "
                f"'{RESET_WORD}' to start over.", style="dim", highlight=False)
    pending = first
    while True:
        if pending is not None:
            line, pending = pending, None
        else:
            try:
                line = utf8(read("> "), "stdin")
            except EOFError:
                write("\n", out)
                return 0
            except UnicodeDecodeError as exc:  # a terminal or pipe read strictly
                raise not_utf8("stdin", exc.object[exc.start]) from None
        text = line.strip()
        if not text:
            continue
        if text.lower() in EXIT_WORDS:
            return 0
        if text == RESET_WORD:  # logged as a conversation of its own
            chat = client.conversation(model=chat.model, system=system)
            notes.print("(conversation forgotten)", style="dim", highlight=False)
            continue
        try:
            # The answer joins the conversation's history once read to its end.
            print_stream(chat.send(line, stream=True, **params), out)
        except KeyboardInterrupt:
            write("\n", out)
            notes.print("(answer cancelled)", style="dim", highlight=False)
            continue
        except LLMError as exc:
            notes.print(f"error: {' '.join(str(exc).split())}", style="red", highlight=False,
                        markup=False)
            continue
