"""``dewey-llm config``: show the effective configuration, or check it.

``show`` prints every setting, its value (secrets masked) and its source; ``check``
validates the configuration and warns about models whose provider key is not set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from .._exceptions import LLMConfigError
from ._output import NewCommand, group_help, load_config, make_client, stdout_console, write

if TYPE_CHECKING:
    from .._config import LiteLLMConfig

__all__ = ["add"]


def add(commands: Any, command: NewCommand) -> None:
    """The ``config`` command group (``show``, ``check``) and its handlers."""
    config = command(
        commands, "config", "show or check the effective configuration",
        "Inspect the configuration dewey-llm would use here: every setting with its value and "
        "where it came from (argument, LITELLM_* variable, YAML file or default).",
        ("dewey-llm config show", "dewey-llm --config prod.yaml config check",
         "dewey-llm config show --json | jq .settings.model"))
    config.set_defaults(handler=lambda _args: group_help(config))
    config_commands = config.add_subparsers(title="commands", metavar="COMMAND",
                                            help="what to do with the configuration")
    show = command(
        config_commands, "show", "every setting, its value and its source",
        "Print every setting of the effective configuration, its value and its source.  Keys "
        "are masked (sk-...89) and URL passwords hidden.",
        ("dewey-llm config show", "LITELLM_MODEL=gpt-4o dewey-llm config show --json"))
    show.add_argument("--json", action="store_true", help="print the settings as JSON")
    show.set_defaults(handler=_show)
    check = command(
        config_commands, "check", "validate the configuration (exit 1 when it is invalid)",
        "Load and validate the configuration.  Prints 'configuration OK: FILE, model MODEL' and "
        "exits 0, or prints the error and exits 1.  Warns when a model needs a provider key "
        "that is not set.",
        ("dewey-llm config check", "dewey-llm --config ci.yaml config check || exit 1"))
    check.set_defaults(handler=_check)


def _show(args: argparse.Namespace) -> int:
    from .._config_sources import find_config_file

    config = load_config()
    file = find_config_file(dict(os.environ))
    sources = config.sources
    fields = type(config).model_fields
    settings = {name: _shown(name, getattr(config, name)) for name in fields}
    transports = _transports(config)
    if args.json:
        document = {
            "file": str(file) if file else None,
            "resolved_model": config.resolved_model(),
            "transports": transports,
            "settings": settings,
            "sources": sources,
        }
        write(json.dumps(document, indent=2) + "\n")
        return 0
    from rich.table import Table
    from rich.text import Text

    console = stdout_console()
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


def _transports(config: LiteLLMConfig) -> dict[str, str]:
    """Which transport the model and each fallback take, or why none can."""
    from .._client import LiteLLMClient

    try:
        with LiteLLMClient(config=config.model_copy(update={"track_usage": False, "cache": False})) as client:
            return client.transports()
    except LLMConfigError as error:
        return {config.resolved_model(): f"none: {error.message}"}


def _shown(name: str, value: Any) -> Any:
    """A setting as JSON-able data, every secret-looking value masked (keys, tokens,
    Authorization and api-key headers, URL passwords)."""
    from pydantic import BaseModel

    from .._secrets import mask_secrets

    if isinstance(value, BaseModel):
        return {key: _shown(key, getattr(value, key)) for key in value.model_fields_set
                or type(value).model_fields}
    if isinstance(value, list):
        return [_shown(name, item) for item in value]
    return mask_secrets(value, name)


def _check(_args: argparse.Namespace) -> int:
    from .._config_sources import find_config_file

    config = load_config()
    file = find_config_file(dict(os.environ))
    with make_client(config) as client:
        problems = client.check()
    write(f"configuration OK: {file or 'no file'}, model {config.resolved_model()}\n")
    for problem in problems:
        print(f"warning: {' '.join(str(problem).split())}", file=sys.stderr)
    return 0
