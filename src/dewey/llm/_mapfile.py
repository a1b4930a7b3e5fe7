"""Reading LiteLLM's bundled JSON files (its price map, its endpoint table) without
importing LiteLLM, and keeping the parsed price map between processes.

The price map is 3.4 MB of JSON: parsing it costs about 35 ms, a tenth of a cold
``dewey-llm chat``.  Its parsed form is kept in the user's cache directory in
:mod:`marshal`'s format, which loads in about a third of that.  The copy is named after
the file's path, size and modification time and the Python version (marshal's format
is the interpreter's own), so a new LiteLLM or a new Python is read afresh.  The JSON
file stays the truth: a copy that cannot be read or written is passed over in silence.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import marshal
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from ._dirs import cache_home
from ._exceptions import LLMConfigError

__all__ = ["litellm_file", "read_json"]


def litellm_file(name: str) -> Path:
    """A data file of the installed LiteLLM package, found without importing it."""
    spec = importlib.util.find_spec("litellm")
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise LLMConfigError("LiteLLM is not installed, so model facts are unknown: pip install litellm")
    return Path(locations[0]) / name


def read_json(path: Path, *, keep: bool = False) -> dict[str, Any]:
    """The JSON object in ``path`` (an empty dict for any other JSON value); with
    ``keep``, through the parsed copy in :func:`cache_home`."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise _unreadable(path, exc) from None
    copy = _copy_path(path, stat) if keep else None
    if copy is not None:
        with contextlib.suppress(Exception):  # missing, torn or foreign: read the JSON
            document = marshal.loads(copy.read_bytes())
            if isinstance(document, dict):
                return document
    try:
        with path.open(encoding="utf-8") as file:
            document = json.load(file)
    except (OSError, ValueError) as exc:
        raise _unreadable(path, exc) from None
    if not isinstance(document, dict):
        return {}
    if copy is not None:
        _write(copy, document)
    return document


def _copy_path(path: Path, stat: os.stat_result) -> Path:
    identity = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{sys.version}|{marshal.version}"
    return cache_home() / f"{path.stem}-{hashlib.sha256(identity.encode()).hexdigest()[:16]}.marshal"


def _write(copy: Path, document: dict[str, Any]) -> None:
    """Write ``copy`` whole or not at all: another process may be reading or writing it."""
    with contextlib.suppress(OSError, ValueError):
        copy.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=copy.parent, prefix=copy.name, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(marshal.dumps(document))
            os.replace(temporary, copy)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        for stale in copy.parent.glob(f"{copy.name.rsplit('-', 1)[0]}-*.marshal"):
            if stale != copy:  # a copy of the file before LiteLLM or Python was upgraded
                stale.unlink(missing_ok=True)


def _unreadable(path: Path, exc: Exception) -> LLMConfigError:
    return LLMConfigError(f"cannot read LiteLLM's model map {path}: {exc}; reinstall litellm")
