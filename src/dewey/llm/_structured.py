"""Structured output: a type in, a validated object out (``message.parsed``).

``response_format=Invoice`` (a pydantic model, a dataclass, a ``TypedDict``, or a
JSON-schema dict) becomes an :class:`OutputSchema`: the strict JSON schema sent, and what
validates the answer.  The schema goes out as OpenAI's ``json_schema`` response format
(``strict``), the one shape every route understands: the native transport sends it as is,
LiteLLM translates it for the providers that have another way (Anthropic's forced tool
call, Gemini's response schema), llama.cpp turns it into a grammar.  Because the request
carries the schema, the cache key does too.  Building one takes about a millisecond
(pydantic's JSON-schema generation, or checking a JSON schema): each client keeps those it
has built (:class:`OutputSchemas`).

The answer is validated where each attempt is recorded (so the ledger row says whether it
validated); a cache hit is validated again before it is returned.  The repair of an
answer that did not validate is the client's (a follow-up call): this module only builds
its messages.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, get_args, get_origin

import pydantic
import pydantic_core
from typing_extensions import is_typeddict  # typing's misses typing_extensions' before 3.12

from ._chunks import STRUCTURED_TOOL
from ._exceptions import LLMConfigError, LLMOutputValidationError

__all__ = ["OutputSchema", "OutputSchemas", "answer_of", "check", "invalid_answer", "output_errors",
           "output_schema", "repair_messages"]

# Where a fresh response keeps its validation errors (not part of the answer, as its
# cost is not): the client reads them to decide on a repair, after the attempt is recorded.
OUTPUT_ERRORS = "dewey_output_errors"

_RESPONSE_FORMATS = ("text", "json_object", "json_schema")
_FENCED = re.compile(r"^```[a-zA-Z]*\s*(.*?)\s*```$", re.DOTALL)


class Invalid(Exception):
    """The answer does not match the schema: why, one line per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class OutputSchema:
    """What the caller asked the answer to be: the schema sent, and its validator."""

    name: str  # the target's name, as OpenAI's json_schema.name (``[a-zA-Z0-9_-]{1,64}``)
    schema: dict[str, Any]  # strict: every object closed, every property required
    validate: Callable[[str], Any]  # JSON text -> the validated object; raises Invalid
    target: Any = None  # the pydantic model asked for, whose partial answers are objects

    @functools.cached_property
    def partial_type(self) -> type[pydantic.BaseModel] | None:
        """The model partial answers validate as (None: they stay plain data); made when a
        stream's partials are first read, as it takes longer than the rest of a call's
        preparation."""
        return _partial_model(self.target) if self.target is not None else None

    @property
    def response_format(self) -> dict[str, Any]:
        """The ``response_format`` sent: OpenAI's strict ``json_schema``, with a copy of the
        schema of its own (some 10 us for a model of ten fields).  This object is shared by
        a client's calls, and the payload is handed to code that adapts schemas per provider
        (LiteLLM's): what one call's transport does to its copy cannot change the next call's."""
        return {"type": "json_schema",
                "json_schema": {"name": self.name, "schema": _copied(self.schema), "strict": True}}

    def parse(self, text: str) -> Any:
        """The validated object of an answer's text (a ```json fence around it is allowed)."""
        fenced = _FENCED.match(text.strip())
        return self.validate(fenced.group(1) if fenced else text)

    def partial(self, text: str) -> Any:
        """What the incomplete JSON ``text`` holds so far (None: nothing yet): an instance
        of the target's partial model (every field optional) or, for a target that is not
        a pydantic model, the JSON data."""
        try:
            data = pydantic_core.from_json(text, allow_partial="trailing-strings")
        except ValueError:  # not JSON (yet), e.g. a fence or text before the object
            return None
        if self.partial_type is None or not isinstance(data, dict):
            return data
        try:
            return self.partial_type.model_validate(data)
        except pydantic.ValidationError:  # a value not yet complete enough to validate
            return None


class OutputSchemas:
    """The :class:`OutputSchema` of each ``response_format`` a client was given, built once.

    A class is its own key: a new class (even one of the same name) is built anew.  A JSON
    schema dict is keyed by its JSON text, in its own key order, which is the order of the
    properties sent (and the order OpenAI's strict mode answers in).  The last ``size``
    used are kept: the entries hold their classes (the validator needs them), so a weak
    dict would never drop one, and a caller making a model per call would grow it without
    end.  An entry is read-only once built, so calls on many threads share it: only
    ``partial_type`` is filled in later, on first use (threads racing to fill it each make
    an equivalent model, and one is kept).
    """

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._built: OrderedDict[Any, OutputSchema] = OrderedDict()
        self._lock = threading.Lock()  # the clients are shared between threads

    def get(self, value: Any) -> OutputSchema | None:
        """:func:`output_schema` of ``value``, built once for each class or schema."""
        key = _key(value)
        if key is None:
            return output_schema(value)
        with self._lock:
            found = self._built.get(key)
            if found is not None:
                self._built.move_to_end(key)
                return found
        built = output_schema(value)  # unlocked: two threads may both build it, alike
        if built is not None:
            with self._lock:
                self._built[key] = built
                if len(self._built) > self._size:
                    self._built.popitem(last=False)
        return built


def _key(value: Any) -> Any:
    """What ``value``'s OutputSchema is kept under; None: it is not kept (a format sent as
    it is, or a dict JSON cannot encode, which the request's check will name)."""
    if isinstance(value, type):
        return value if type(value).__hash__ is not None else None
    if isinstance(value, Mapping) and value.get("type") not in _RESPONSE_FORMATS:
        try:
            return json.dumps(value)
        except (TypeError, ValueError):
            return None
    return None


def _copied(node: Any) -> Any:
    """A copy of JSON data ``node``, its dicts and lists new."""
    if isinstance(node, dict):
        return {key: _copied(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_copied(item) for item in node]
    return node


def output_schema(value: Any) -> OutputSchema | None:
    """The structured output ``response_format=value`` asks for; None for the formats
    that are sent as they are (``{"type": "json_object"}``, OpenAI's own ``json_schema``
    dict, ``text``)."""
    if isinstance(value, Mapping):
        if value.get("type") in _RESPONSE_FORMATS:
            return None
        return _from_json_schema(value)
    if isinstance(value, type) and (issubclass(value, pydantic.BaseModel) or is_typeddict(value)
                                    or dataclasses.is_dataclass(value)):
        try:
            adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(value)
            json_schema = adapter.json_schema()
        except pydantic.PydanticUserError as exc:  # e.g. typing.TypedDict before Python 3.12
            raise LLMConfigError(f"response_format={value.__name__} cannot be validated: "
                                 f"{str(exc).splitlines()[0]}") from None
        schema = _object_schema(json_schema, value.__name__)

        def validate(text: str) -> Any:
            try:
                return adapter.validate_json(text)
            except pydantic.ValidationError as exc:
                raise Invalid([_pydantic_error(error) for error in exc.errors()]) from None

        model = value if issubclass(value, pydantic.BaseModel) else None
        return OutputSchema(_name(value.__name__), schema, validate, model)
    return None  # not a type we validate: _request's check names what is accepted


def _from_json_schema(schema: Mapping[str, Any]) -> OutputSchema:
    import jsonschema

    own = copy.deepcopy(dict(schema))  # kept by OutputSchemas: not changed with the caller's dict
    try:
        validator = jsonschema.Draft202012Validator(own)
        validator.check_schema(own)
    except jsonschema.SchemaError as exc:
        raise LLMConfigError(
            f"response_format is not a JSON schema: {exc.message}; pass a pydantic model, a "
            "dataclass, a TypedDict or a JSON schema such as {'type': 'object', 'properties': "
            "{...}}") from None
    title = str(schema.get("title") or "response")

    def validate(text: str) -> Any:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise Invalid([f"(root): Invalid JSON: {exc}"]) from None
        errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
        if errors:
            raise Invalid([f"{_path(error.absolute_path)}: {error.message}" for error in errors])
        return data

    return OutputSchema(_name(title), _object_schema(dict(schema), title), validate)


def _object_schema(schema: dict[str, Any], name: str) -> dict[str, Any]:
    if schema.get("type") != "object":
        raise LLMConfigError(
            f"response_format={name} does not describe a JSON object: structured output needs "
            "an object at the top; wrap the value in a model, e.g. class Items(BaseModel): "
            "items: list[...]")
    strict: dict[str, Any] = _strict(copy.deepcopy(schema), schema)
    return strict


def _strict(node: Any, root: dict[str, Any]) -> Any:
    """``node`` in OpenAI's strict form: objects closed (``additionalProperties: false``)
    with every property required, no ``null`` defaults, no ``$ref`` with siblings.  The
    openai SDK's ``to_strict_json_schema`` does the same; we do not depend on that SDK."""
    if not isinstance(node, dict):
        return node
    for defs in ("$defs", "definitions"):
        if isinstance(node.get(defs), dict):
            node[defs] = {name: _strict(value, root) for name, value in node[defs].items()}
    if node.get("type") == "object" and "additionalProperties" not in node:
        node["additionalProperties"] = False
    if isinstance(node.get("properties"), dict):
        node["required"] = list(node["properties"])
        node["properties"] = {name: _strict(value, root) for name, value in node["properties"].items()}
    if isinstance(node.get("items"), dict):
        node["items"] = _strict(node["items"], root)
    if isinstance(node.get("anyOf"), list):
        node["anyOf"] = [_strict(variant, root) for variant in node["anyOf"]]
    if isinstance(node.get("allOf"), list):
        if len(node["allOf"]) == 1:
            node.update(_strict(node.pop("allOf")[0], root))
        else:
            node["allOf"] = [_strict(entry, root) for entry in node["allOf"]]
    if "default" in node and node["default"] is None:
        del node["default"]
    ref = node.get("$ref")
    if isinstance(ref, str) and len(node) > 1 and ref.startswith("#/"):
        # {"$ref": ..., "description": ...}: strict mode wants the reference inlined.
        target: Any = root
        for key in ref[2:].split("/"):
            target = target[key]
        del node["$ref"]
        return _strict({**copy.deepcopy(target), **node}, root)
    return node


def _partial_model(model: type[pydantic.BaseModel]) -> type[pydantic.BaseModel]:
    """A copy of ``model`` whose fields are all optional (None until filled), nested models
    too: what a partial answer validates as, as instructor's ``Partial`` does."""
    fields: dict[str, Any] = {name: (_partial_annotation(field.annotation) | None, None)
                              for name, field in model.model_fields.items()}
    partial: type[pydantic.BaseModel] = pydantic.create_model(f"Partial{model.__name__}", **fields)
    return partial


def _partial_annotation(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return _partial_model(annotation)
    if get_origin(annotation) is list and get_args(annotation):
        return list[_partial_annotation(get_args(annotation)[0])]  # type: ignore[misc]
    return annotation


def check(output: OutputSchema, response: dict[str, Any]) -> list[str]:
    """Validate each choice of ``response`` (a plain dict or a ``ChatResponse``, changed in
    place): ``message.parsed`` is the validated object, or None for a refusal, a call of the
    caller's own tools, or an answer that does not validate.  Returns the validation errors of the first choice that has
    any ([] when every answer validated or was refused)."""
    found: list[str] = []
    for choice in dict.get(response, "choices") or []:
        message = dict.get(choice, "message")
        if not isinstance(message, dict):
            continue
        message["parsed"] = None
        if message.get("refusal"):  # the model declined: kept as it said it, no object
            continue
        if _calls_own_tools(message):  # a turn that asks for the caller's tools: the answer comes later
            continue
        try:
            message["parsed"] = output.parse(_text(message))
        except Invalid as invalid:
            found = found or invalid.errors
    if found and isinstance(getattr(response, "_hidden_params", None), dict):
        response._hidden_params[OUTPUT_ERRORS] = found  # type: ignore[attr-defined]  # noqa: SLF001
    return found


def output_errors(response: Any) -> list[str]:
    """The validation errors :func:`check` found in a fresh ``response`` ([] if none)."""
    hidden = getattr(response, "_hidden_params", None) or {}
    return list(hidden.get(OUTPUT_ERRORS) or [])


def _text(message: Mapping[str, Any]) -> str:
    """The JSON an answer holds: its text, or the arguments of LiteLLM's forced
    :data:`~._chunks.STRUCTURED_TOOL` call (a provider that answers a schema with a tool
    call, as LiteLLM asks some routes to).  A call of the caller's own tool is not the answer."""
    content = message.get("content")
    if isinstance(content, str) and content.strip():
        return content
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        if function.get("name") == STRUCTURED_TOOL:
            return str(function.get("arguments") or "")
    return content or ""


def _calls_own_tools(message: Mapping[str, Any]) -> bool:
    """Whether ``message`` holds no text but calls of the caller's own tools (``tools=``
    given with ``response_format``): not an answer to validate, as with the OpenAI SDK."""
    content = message.get("content")
    calls = message.get("tool_calls") or []
    return (not (isinstance(content, str) and content.strip()) and bool(calls)
            and all((call.get("function") or {}).get("name") != STRUCTURED_TOOL for call in calls))


def repair_messages(messages: list[dict[str, Any]], response: dict[str, Any],
                    errors: list[str]) -> list[dict[str, Any]]:
    """The conversation of the follow-up call: the call's, the answer that did not
    validate, and a user message naming what to fix."""
    listed = "\n".join(f"- {error}" for error in errors[:20])
    return [*messages, {"role": "assistant", "content": answer_of(response)},
            {"role": "user", "content": "Your answer does not match the required JSON schema:\n"
             f"{listed}\nAnswer again with only the corrected JSON."}]


def invalid_answer(model: str, output: OutputSchema, response: dict[str, Any],
                   errors: list[str], why: str) -> LLMOutputValidationError:
    """The error for ``response``, whose answer does not match ``output`` (``why`` says
    why it was not repaired)."""
    return LLMOutputValidationError(
        f"the answer of {model} does not match {output.name} ({why}): {'; '.join(errors[:5])}",
        text=answer_of(response), errors=errors, model=model)


def answer_of(response: dict[str, Any]) -> str:
    """The JSON text of the first answer of ``response``."""
    choices = dict.get(response, "choices") or []
    return _text(dict.get(choices[0], "message") or {}) if choices else ""


def _pydantic_error(error: Any) -> str:
    return f"{_path(error.get('loc') or ())}: {error.get('msg')}"


def _path(parts: Any) -> str:
    return ".".join(str(part) for part in parts) or "(root)"


def _name(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]", "_", text)[:64] or "response"
