"""``dewey-llm logs``: the logged prompts and answers, searched, with what each cost.

``logs`` prints the last exchanges (each with its model, conversation, and with ``--cost``
its tokens, cost and attempts: retries and fallbacks); ``logs list`` the conversations.
The log is the library's (``_usage._log``): this module owns the options and the output.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ._output import NewCommand, load_config, stdout_console, write

if TYPE_CHECKING:
    from .._usage import ConversationSummary, Ledger, LoggedResponse

__all__ = ["add"]

_FIRST_PROMPT = 60  # characters of a conversation's first prompt shown by `logs list`


def add(commands: Any, command: NewCommand) -> None:
    """The ``logs`` subcommand and its ``list``, their options and handlers."""
    logs = command(
        commands, "logs", "the logged prompts and answers: search them, see what they cost",
        "Print the last exchanges from the prompt log (oldest first), each with its model and "
        "conversation; --cost adds its tokens, cost and attempts (retries and fallbacks) from "
        "the usage ledger.  -q searches prompts and answers (every word, full-text).  The log is "
        "kept with the usage ledger (usage_db); turn it off with log: false, DEWEY_LLM_LOG=0 or "
        "`chat --no-log`.",
        ("dewey-llm logs", "dewey-llm logs -n 10 --cost", 'dewey-llm logs -q "backoff retry"',
         "dewey-llm logs --since 1d -m openai/gpt-4o-mini --json", "dewey-llm logs list"))
    logs.add_argument("-n", "--count", type=int, default=3, metavar="N",
                      help="how many of the latest exchanges (default 3; 0 for all)")
    logs.add_argument("-q", "--query", metavar="TEXT",
                      help="only exchanges whose prompt or answer has every word of TEXT")
    logs.add_argument("-m", "--model", metavar="MODEL", help="only answers from this model")
    logs.add_argument("--since", metavar="WHEN",
                      help="only exchanges since WHEN: a duration (30m, 24h, 7d), a UTC date "
                           "(2026-11-01) or an ISO datetime")
    logs.add_argument("--cid", metavar="ID", help="only the conversation ID")
    logs.add_argument("--json", action="store_true",
                      help="print the exchanges as JSON, each with its tokens, cost and attempts")
    logs.add_argument("--cost", action="store_true",
                      help="show each exchange's tokens, cost and attempts")
    logs.set_defaults(handler=_logs)
    group = logs.add_subparsers(title="commands", metavar="COMMAND",
                                help="`logs list`: the conversations (default: the exchanges)")
    listing = command(
        group, "list", "the logged conversations, latest first",
        "List the conversations in the prompt log, the most recently continued first: id, "
        "turns, model, when, cost and first prompt.  Continue one with `dewey-llm chat --cid ID`.",
        ("dewey-llm logs list", "dewey-llm logs list -n 50 --json"))
    listing.add_argument("-n", "--count", type=int, default=20, metavar="N",
                         help="how many conversations (default 20; 0 for all)")
    listing.add_argument("--json", action="store_true", help="print the conversations as JSON")
    listing.set_defaults(handler=_list)


def _ledger() -> Ledger:
    from .._usage import open_ledger

    return open_ledger(load_config().usage_db)


def _logs(args: argparse.Namespace) -> int:
    from .._usage import parse_since

    since = parse_since(args.since) if args.since else None
    with _ledger() as ledger:
        found = ledger.responses(query=args.query, model=args.model, since=since,
                                 conversation=args.cid, limit=args.count or None)
    found.reverse()  # the latest last: nearest the prompt on a terminal
    if not found and not args.json:
        _nothing("exchanges")
    if args.json:
        write(json.dumps([_as_json(entry) for entry in found], indent=2, ensure_ascii=False) + "\n")
        return 0
    write("\n".join(_as_text(entry, cost=args.cost) for entry in found))
    return 0


def _nothing(what: str) -> None:
    """Say so on stderr (stdout stays empty for scripts): no log, or no match."""
    from ._output import stderr_console

    stderr_console().print(f"no logged {what}", style="dim", highlight=False)


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _as_text(entry: LoggedResponse, *, cost: bool) -> str:
    """One exchange as Markdown, like ``llm logs``."""
    from .._usage import usd

    about = [_when(entry.time), entry.model]
    if entry.conversation_id:
        about.append(f"conversation {entry.conversation_id}")
    if entry.cache_hit:
        about.append("cache hit")
    about += [f"tag {tag}" for tag in entry.tags]
    if entry.user:
        about.append(f"user {entry.user}")
    parts = [f"# {'  '.join(about)}\n"]
    if entry.system:
        parts.append(f"## System\n\n{entry.system}\n")
    parts += [f"## Prompt\n\n{entry.prompt}\n", f"## Response\n\n{entry.response}\n"]
    if entry.tool_calls:
        parts.append(f"## Tool calls\n\n{json.dumps(entry.tool_calls, indent=2)}\n")
    if cost:
        attempts = ", ".join(f"{a.model} {a.outcome}" for a in entry.attempts) or "not recorded"
        parts.append(f"## Cost\n\n{entry.prompt_tokens:,} prompt + {entry.completion_tokens:,} "
                     f"completion tokens, {usd(entry.cost_usd)}; attempts: {attempts}\n")
    return "\n".join(parts)


def _as_json(entry: LoggedResponse) -> dict[str, Any]:
    return {
        "id": entry.call_id, "time": datetime.fromtimestamp(entry.time, timezone.utc).isoformat(),
        "model": entry.model, "conversation_id": entry.conversation_id, "system": entry.system,
        "prompt": entry.prompt, "response": entry.response, "tool_calls": entry.tool_calls,
        "messages": entry.messages, "cache_hit": entry.cache_hit, "tags": list(entry.tags),
        "user": entry.user, "prompt_tokens": entry.prompt_tokens,
        "completion_tokens": entry.completion_tokens, "cost_usd": entry.cost_usd,
        "attempts": [{"model": a.model, "provider": a.provider, "outcome": a.outcome,
                      "status_code": a.status_code, "attempt": a.attempt,
                      "prompt_tokens": a.prompt_tokens, "completion_tokens": a.completion_tokens,
                      "cost_usd": a.cost_usd, "latency_s": a.latency_s, "cache_hit": a.cache_hit}
                     for a in entry.attempts],
    }


def _list(args: argparse.Namespace) -> int:
    with _ledger() as ledger:
        found = ledger.conversations(limit=args.count or None)
    if args.json:
        write(json.dumps([_conversation_json(c) for c in found], indent=2, ensure_ascii=False) + "\n")
        return 0
    if not found:
        _nothing("conversations")
        return 0
    from rich.table import Table
    from rich.text import Text

    from .._usage import usd

    # The id is what `chat --cid` takes: never cut; the first prompt gives way first.
    table = Table(title="Conversations", title_justify="left", expand=True)
    table.add_column("ID", no_wrap=True, min_width=max((len(c.id) for c in found), default=2))
    table.add_column("Turns", justify="right", no_wrap=True, min_width=5)
    table.add_column("Cost", justify="right", no_wrap=True, min_width=9)
    table.add_column("Model", overflow="fold", min_width=11)
    table.add_column("Latest (UTC)", no_wrap=True, min_width=16)
    table.add_column("First prompt", overflow="ellipsis", no_wrap=True, ratio=1)
    for item in found:
        first = " ".join(item.first_prompt.split())
        shown = first if len(first) <= _FIRST_PROMPT else first[:_FIRST_PROMPT - 1] + "…"
        latest = datetime.fromtimestamp(item.latest, timezone.utc).strftime("%Y-%m-%d %H:%M")
        table.add_row(item.id, str(item.turns), usd(item.cost_usd), Text(item.model), latest,
                      Text(shown))
    stdout_console().print(table, highlight=False)
    return 0


def _conversation_json(item: ConversationSummary) -> dict[str, Any]:
    return {"id": item.id, "turns": item.turns, "model": item.model,
            "started": datetime.fromtimestamp(item.started, timezone.utc).isoformat(),
            "latest": datetime.fromtimestamp(item.latest, timezone.utc).isoformat(),
            "cost_usd": item.cost_usd, "first_prompt": item.first_prompt}
