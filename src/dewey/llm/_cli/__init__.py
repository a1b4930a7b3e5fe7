"""The ``dewey-llm`` command line: ``main`` runs it (``python -m dewey.llm`` too)."""

from ._app import main

__all__ = ["main"]
