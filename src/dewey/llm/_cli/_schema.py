"""``dewey-llm chat --schema``: what a structured answer must hold, from the command line.

A schema is given three ways:

* concise: ``'name str, age int, tags list[str]: what they like'``: fields separated by
  commas (or by newlines, when a description needs a comma), each a name, a type (``str``
  when left out: ``str``, ``int``, ``float``, ``bool`` or ``list[...]`` of one) and an
  optional description after a colon, as simonw/llm's concise schemas are written;
* a JSON-schema file: ``schema.json``;
* a pydantic model (or dataclass, TypedDict) to import: ``module:Model``.

``--schema-multi`` asks for a list of such objects (wrapped in ``{"items": [...]}``,
since a structured answer is a JSON object).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pydantic

from .._exceptions import LLMConfigError, LLMResponseError

__all__ = ["answer_data", "schema_of"]

_TYPES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}
_IMPORT = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
_FIELD = re.compile(r"\s*([A-Za-z_]\w*)\s*([^:]*?)\s*(?::\s*(.*))?\s*", re.DOTALL)


def schema_of(spec: str, *, many: bool = False) -> Any:
    """The ``response_format`` that ``spec`` stands for (a list of them with ``many``)."""
    if spec.endswith(".json") or (not _IMPORT.fullmatch(spec) and Path(spec).is_file()):
        target: Any = _from_file(spec)
    elif _IMPORT.fullmatch(spec):
        target = _imported(spec)
    else:
        target = concise(spec)
    return _many(target) if many else target


def concise(spec: str) -> type[pydantic.BaseModel]:
    """The pydantic model of a concise schema, e.g. ``'name str, age int'``."""
    parts = spec.split("\n") if "\n" in spec else spec.split(",")
    fields: dict[str, Any] = {}
    for part in filter(str.strip, parts):
        match = _FIELD.fullmatch(part)
        if match is None:
            raise LLMConfigError(f"--schema: {part.strip()!r} is not a field: write 'name type', "
                                 "e.g. 'name str, age int, tags list[str]'")
        name, kind, description = match.groups()
        fields[name] = (_type(kind or "str"), pydantic.Field(description=description or None))
    if not fields:
        raise LLMConfigError("--schema is empty: name the fields, e.g. 'name str, age int'")
    model: type[pydantic.BaseModel] = pydantic.create_model("Answer", **fields)
    return model


def _type(text: str) -> Any:
    text = text.strip()
    if text in _TYPES:
        return _TYPES[text]
    inner = re.fullmatch(r"list\[(.+)\]", text)
    if inner:
        return list[_type(inner.group(1))]  # type: ignore[misc]
    raise LLMConfigError(f"--schema: unknown type {text!r}: use str, int, float, bool or "
                         "list[...] of one, e.g. 'tags list[str]'")


def _from_file(path: str) -> dict[str, Any]:
    try:
        schema = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise LLMConfigError(f"--schema: cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise LLMConfigError(f"--schema: {path} is not JSON: {exc}") from None
    if not isinstance(schema, dict):
        raise LLMConfigError(f"--schema: {path} does not hold a JSON schema (an object)")
    return schema


def _imported(spec: str) -> Any:
    module_name, name = spec.split(":")
    # As `python -m` does, and uvicorn for `module:app`: the current directory's modules.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise LLMConfigError(f"--schema: cannot import {module_name}: {exc}") from None
    target = getattr(module, name, None)
    if target is None:
        raise LLMConfigError(f"--schema: {module_name} has no {name}")
    return target


def _many(target: Any) -> Any:
    """A model of ``{"items": [target, ...]}``."""
    if isinstance(target, dict):
        # Definitions stay at the top, where the target's "#/$defs/..." references point.
        tops = ("$defs", "definitions", "$schema")
        items = {key: value for key, value in target.items() if key not in tops}
        return {"title": "Items", "type": "object", "required": ["items"],
                "properties": {"items": {"type": "array", "items": items}},
                **{key: target[key] for key in tops if key in target}}
    return pydantic.create_model("Items", items=(list[target], ...))


def answer_data(response: Any, *, many: bool = False) -> Any:
    """The validated answer of ``response`` as JSON data (the list, with ``many``)."""
    from pydantic_core import to_jsonable_python

    message = response.choices[0].message
    if message.get("refusal"):
        raise LLMResponseError(f"the model refused to answer: {message.refusal}")
    data = to_jsonable_python(message.parsed)
    return data["items"] if many and isinstance(data, dict) else data
