"""``dewey-llm aliases``: the short model names of the configuration and what they stand for."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._output import NewCommand, load_config, stdout_console, write

__all__ = ["add"]


def add(commands: Any, command: NewCommand) -> None:
    """The ``aliases`` subcommand and its handler."""
    aliases = command(
        commands, "aliases", "list the model aliases of the configuration",
        "List the aliases of the configuration (aliases: {fast: gpt-4o-mini}) and the model "
        "each stands for.  An alias is accepted wherever a model name is: model, "
        "fallback_models, `dewey-llm chat -m fast`, model= in code.",
        ("dewey-llm aliases", "dewey-llm aliases --json"))
    aliases.add_argument("--json", action="store_true", help="print {alias: model} as JSON")
    aliases.set_defaults(handler=_aliases)


def _aliases(args: argparse.Namespace) -> int:
    config = load_config()
    source = config.sources["aliases"]
    if args.json:
        write(json.dumps(config.aliases, indent=2) + "\n")
        return 0
    from rich.table import Table
    from rich.text import Text

    console = stdout_console()
    if not config.aliases:
        console.print(Text("No aliases configured: add aliases: {fast: gpt-4o-mini} to the "
                           "llm: section of the config file."))
        return 0
    table = Table(title=f"Aliases ({source})", title_justify="left")
    table.add_column("Alias", style="bold", no_wrap=True)
    table.add_column("Model", overflow="fold")
    for alias, model in config.aliases.items():
        table.add_row(Text(alias), Text(model))
    console.print(table)
    return 0
