"""``dewey-llm embed``: embed texts and write one JSON line per text to stdout.

Batching and the progress bar are the library's (``generate_embeddings``); this module
reads the texts and writes the lines.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ._output import (
    NewCommand,
    decoded,
    is_tty,
    load_config,
    make_client,
    note_local_model,
    utf8,
    write,
)

__all__ = ["add"]

EMBED_BATCH_SIZE = 32  # texts per embedding call
PROGRESS_THRESHOLD = 20  # show a progress bar for more texts than this


def add(commands: Any, command: NewCommand) -> None:
    """The ``embed`` subcommand, its options and its handler."""
    parser = command(
        commands, "embed", "embed texts; writes JSON lines to stdout",
        'Embed texts with the embedding model and write one JSON line per text: '
        '{"text": ..., "embedding": [...]}.\n\nTexts are sent in batches of '
        f"{EMBED_BATCH_SIZE}; a progress bar shows on stderr for more than {PROGRESS_THRESHOLD}.",
        ('dewey-llm embed "first text" "second text"',
         "dewey-llm embed --file sentences.txt > vectors.jsonl",
         "grep -v '^#' notes.txt | dewey-llm embed -m text-embedding-3-large --file -"))
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="texts to embed")
    parser.add_argument("-f", "--file", metavar="PATH",
                        help="also embed each non-empty line of PATH ('-' for stdin)")
    parser.add_argument("-m", "--model", metavar="MODEL",
                        help="embedding model (default: embedding_model, else one that matches "
                             "the chat model's provider)")
    parser.set_defaults(handler=_embed, parser=parser)


def _embed(args: argparse.Namespace) -> int:
    texts = [utf8(text, "a TEXT argument") for text in args.texts]
    if args.file:
        texts.extend(_read_lines(args.file))
    if not texts:
        args.parser.error("nothing to embed: give TEXT arguments or --file PATH")
    config = load_config()
    with make_client(config) as client:
        if args.model is None and config.embedding_model is None:
            note_local_model(config, None)
        # One batch at a time, in order: the provider sees the texts as they were given.
        vectors = client.generate_embeddings(
            texts, args.model, batch_size=EMBED_BATCH_SIZE, concurrency=1,
            progress=len(texts) > PROGRESS_THRESHOLD and is_tty(sys.stderr))
    write("".join(json.dumps({"text": text, "embedding": vector}, ensure_ascii=False) + "\n"
                  for text, vector in zip(texts, vectors, strict=True)))
    return 0


def _read_lines(path: str) -> list[str]:
    if path == "-":
        content = decoded(sys.stdin.buffer.read(), "stdin")
    else:
        content = decoded(Path(path).expanduser().read_bytes(), path)
    return [line.rstrip("\r") for line in content.split("\n") if line.strip()]
