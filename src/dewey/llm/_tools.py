"""Function/tool schemas: normalising shorthands and building them from Python callables."""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, Union

from ._exceptions import LLMConfigError

__all__ = ["normalize_functions", "normalize_tools", "tool"]

_JSON_TYPES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean",
                               dict: "object", list: "array", type(None): "null"}
_SCHEMA_KEYWORDS = {"type", "properties", "$ref", "anyOf", "oneOf", "allOf", "enum"}


def tool(fn: Callable[..., Any]) -> dict[str, Any]:
    """An OpenAI tool definition for ``fn``, from its type hints and docstring.

    The docstring's first paragraph becomes the description; ``name: text`` lines under
    ``Args:`` (Google style) or ``:param name: text`` describe the parameters.
    """
    return {"type": "function", "function": function_schema(fn)}


def function_schema(fn: Callable[..., Any]) -> dict[str, Any]:
    """``{"name", "description", "parameters"}`` for a Python function."""
    title = getattr(fn, "__name__", type(fn).__name__)
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        raise LLMConfigError(
            f"cannot build a tool schema for {title}: Python cannot read its signature; "
            "wrap it in a def with annotated parameters, or pass a schema dict") from None
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:  # NameError, or a TypeError from an annotation that is not a type
        raise LLMConfigError(
            f"cannot build a tool schema for {title}: an annotation cannot be resolved ({exc}); "
            "define or import that type where the function is defined, or annotate with "
            "str, int, float, bool, list or dict") from None
    summary, param_docs = _parse_docstring(inspect.getdoc(fn) or "")
    properties: dict[str, Any] = {}
    required = []
    for name, parameter in signature.parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD) or name in ("self", "cls"):
            continue
        schema = _type_schema(hints.get(name, str))
        if name in param_docs:
            schema["description"] = param_docs[name]
        if parameter.default is inspect.Parameter.empty:
            required.append(name)
        elif parameter.default is not None:
            schema["default"] = parameter.default
        properties[name] = schema
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    return {"name": title, "description": summary, "parameters": parameters}


def _type_schema(hint: Any) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint in _JSON_TYPES:
        return {"type": _JSON_TYPES[hint]}
    if origin is Literal:
        return {"type": _JSON_TYPES.get(type(args[0]), "string"), "enum": list(args)}
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _type_schema(options[0])
        return {"anyOf": [_type_schema(a) for a in options]}
    if origin in (list, tuple, set, frozenset, Iterable, typing.Sequence):
        item = _type_schema(args[0]) if args else {}
        return {"type": "array", "items": item} if item else {"type": "array"}
    if origin in (dict, Mapping):
        return {"type": "object"}
    if inspect.isclass(hint) and hasattr(hint, "model_json_schema"):
        return dict(hint.model_json_schema())  # a pydantic model
    return {"type": "string"}


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    paragraphs = doc.split("\n\n")
    first = paragraphs[0] if paragraphs else ""
    summary = "" if first.lstrip().startswith(("Args", ":param")) else " ".join(first.split())
    params: dict[str, str] = {}
    for match in re.finditer(r":param\s+(\w+):\s*(.+)", doc):
        params[match.group(1)] = match.group(2).strip()
    args_block = re.search(r"(?:Args|Arguments|Parameters):\s*\n((?:[ \t]+.+\n?)+)", doc)
    if args_block:
        for line in args_block.group(1).splitlines():
            item = re.match(r"\s+(\w+)(?:\s*\(.*?\))?:\s*(.+)", line)
            if item:
                params.setdefault(item.group(1), item.group(2).strip())
    return summary, params


def _normalize_parameters(parameters: Any, where: str) -> dict[str, Any]:
    """Accept a JSON schema, or the shorthand ``{"location": {"type": "string"}}``."""
    if parameters is None:
        return {"type": "object", "properties": {}}
    if not isinstance(parameters, Mapping):
        raise LLMConfigError(
            f"{where}: 'parameters' must be a JSON schema object, not {type(parameters).__name__}")
    if _SCHEMA_KEYWORDS & set(parameters):
        _check_schema(parameters, where)
        return dict(parameters)
    # Shorthand: the properties themselves, without the object wrapper.
    for name, spec in parameters.items():
        if not isinstance(spec, Mapping):
            raise LLMConfigError(
                f"{where}: parameter {name!r} must be a schema like {{'type': 'string'}}, got {spec!r}"
            )
    return {"type": "object", "properties": dict(parameters), "required": list(parameters)}


def _check_schema(schema: Mapping[str, Any], where: str) -> None:
    """The parts of a parameters schema every provider reads: refuse them misshapen
    here, rather than have one provider's converter fail on them mid-call."""
    properties = schema.get("properties", {})
    if not isinstance(properties, Mapping) or not all(isinstance(p, Mapping) for p in properties.values()):
        raise LLMConfigError(
            f"{where}: 'properties' must map each parameter name to a schema, like "
            f"{{'location': {{'type': 'string'}}}}; got {properties!r:.80}")
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise LLMConfigError(
            f"{where}: 'required' must be a list of parameter names, like ['location']; "
            f"got {required!r:.80}")
    kind = schema.get("type", "object")
    if not isinstance(kind, str | list):
        raise LLMConfigError(f"{where}: 'type' must be a string such as 'object', got {kind!r:.80}")


def _normalize_function(function: Any, where: str) -> dict[str, Any]:
    if callable(function) and not isinstance(function, Mapping):
        return function_schema(function)
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str) or not function["name"]:
        raise LLMConfigError(f"{where} needs a 'name' (and 'parameters'): got {function!r:.80}")
    normalized = dict(function)
    normalized["parameters"] = _normalize_parameters(function.get("parameters"), where)
    return normalized


def normalize_functions(functions: Iterable[Any] | None) -> list[dict[str, Any]] | None:
    """Legacy ``functions=``: each a function dict (shorthand allowed) or a Python callable."""
    if functions is None:
        return None
    _check_list(functions, "functions")
    return [_normalize_function(f, f"functions[{i}]") for i, f in enumerate(functions)]


def normalize_tools(tools: Iterable[Any] | None) -> list[dict[str, Any]] | None:
    """``tools=``: OpenAI tool dicts, bare function dicts (shorthand allowed) or callables."""
    if tools is None:
        return None
    _check_list(tools, "tools")
    result = []
    for index, item in enumerate(tools):
        where = f"tools[{index}]"
        if isinstance(item, Mapping) and item.get("type") == "function" and "function" in item:
            result.append({**item, "function": _normalize_function(item["function"], where)})
        elif isinstance(item, Mapping) and "type" in item and "name" not in item:
            result.append(dict(item))  # a provider's built-in tool, e.g. web_search
        else:
            result.append({"type": "function", "function": _normalize_function(item, where)})
    return result


def _check_list(value: Any, name: str) -> None:
    # A lone tool would be iterated key by key (or letter by letter): name the fix instead.
    if not isinstance(value, list | tuple):
        raise LLMConfigError(
            f"{name} must be a list of tools, not a {type(value).__name__}: "
            f"pass {name}=[...] (one tool goes in a list too)")


def normalize_tool_choice(choice: Any) -> Any:
    """Allow ``tool_choice="get_weather"`` as a shorthand for forcing that function."""
    if isinstance(choice, str) and choice not in ("auto", "none", "required"):
        return {"type": "function", "function": {"name": choice}}
    return choice
