"""Tool schemas: from annotated Python functions and their docstrings, and the shorthands
``tools=`` / ``functions=`` / ``tool_choice=`` accept."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from pydantic import BaseModel

from dewey.llm import tool
from dewey.llm._tools import normalize_functions, normalize_tool_choice, normalize_tools


# Only the signatures of these tools matter: they become the JSON schemas under test.
def get_weather(location: str, unit: Literal["celsius", "fahrenheit"] = "celsius",  # noqa: ARG001
                days: int | None = None) -> str:  # noqa: ARG001
    """Get the current weather
    for a location.

    Args:
        location: City and country, e.g. Paris, France
        unit (str): Temperature unit
    """
    return location


def search(query: str, limit: int = 5, tags: list[str] | None = None, exact: bool = False,  # noqa: ARG001
           score: float = 0.5, filters: dict[str, Any] | None = None, *args: Any, **kwargs: Any) -> list[str]:  # noqa: ARG001
    """Search the archive.

    :param query: what to look for
    :param limit: at most this many hits
    """
    return []


class Address(BaseModel):
    street: str
    city: str


def ship(address: Address, either: int | str) -> None:
    """Ship a parcel."""


def test_a_function_becomes_an_openai_tool() -> None:
    assert tool(get_weather) == {"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the current weather for a location.",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "City and country, e.g. Paris, France"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"],
                         "description": "Temperature unit", "default": "celsius"},
                "days": {"type": "integer"},
            },
            "required": ["location"],
        },
    }}


def test_sphinx_docstrings_json_types_and_defaults() -> None:
    function = tool(search)["function"]
    assert function["description"] == "Search the archive."
    assert function["parameters"] == {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "what to look for"},
            "limit": {"type": "integer", "description": "at most this many hits", "default": 5},
            "tags": {"type": "array", "items": {"type": "string"}},
            "exact": {"type": "boolean", "default": False},
            "score": {"type": "number", "default": 0.5},
            "filters": {"type": "object"},
        },
        "required": ["query"],
    }  # *args and **kwargs cannot be sent by a model: left out


def test_pydantic_models_and_unions() -> None:
    properties = tool(ship)["function"]["parameters"]["properties"]
    assert properties["address"] == Address.model_json_schema()
    assert properties["either"] == {"anyOf": [{"type": "integer"}, {"type": "string"}]}


def test_a_function_without_docstring_or_parameters() -> None:
    def ping() -> None:
        pass

    assert tool(ping)["function"] == {"name": "ping", "description": "",
                                      "parameters": {"type": "object", "properties": {}}}


def test_tools_accept_callables_bare_functions_and_the_properties_shorthand() -> None:
    full = {"type": "function", "function": {
        "name": "lookup", "description": "Look up a word",
        "parameters": {"type": "object", "properties": {"word": {"type": "string"}}}}}
    tools = normalize_tools([
        get_weather,
        {"name": "add", "parameters": {"a": {"type": "integer"}, "b": {"type": "integer"}}},
        full,
        {"type": "web_search"},
    ])
    assert tools == [
        tool(get_weather),
        {"type": "function", "function": {"name": "add", "parameters": {
            "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"]}}},
        full,
        {"type": "web_search"},  # a provider's built-in tool passes through untouched
    ]
    assert normalize_tools(None) is None


def test_a_function_without_parameters_gets_an_empty_object() -> None:
    [only] = normalize_tools([{"name": "now"}]) or []
    assert only == {"type": "function",
                    "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}


def test_legacy_functions_take_the_same_shorthands() -> None:
    functions = normalize_functions([get_weather, {"name": "add", "parameters": {"a": {"type": "integer"}}}])
    assert functions == [
        tool(get_weather)["function"],
        {"name": "add", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}},
                                       "required": ["a"]}},
    ]
    assert normalize_functions(None) is None


@pytest.mark.parametrize(("tools", "words"), [
    ([{"description": "no name"}], ["tools[0]", "'name'"]),
    ([get_weather, {"name": "x", "parameters": "a string"}], ["tools[1]", "JSON schema", "str"]),
    ([{"name": "x", "parameters": {"a": "string"}}], ["tools[0]", "'a'", "{'type': 'string'}"]),
])
def test_malformed_tools_name_the_tool_and_the_fix(tools: list[Any], words: list[str]) -> None:
    with pytest.raises(ValueError) as caught:
        normalize_tools(tools)
    assert all(word in str(caught.value) for word in words), str(caught.value)


def test_tool_choice_shorthand_forces_a_function() -> None:
    assert normalize_tool_choice("get_weather") == {"type": "function", "function": {"name": "get_weather"}}
    for keyword in ("auto", "none", "required"):
        assert normalize_tool_choice(keyword) == keyword
    forced = {"type": "function", "function": {"name": "add"}}
    assert normalize_tool_choice(forced) == forced
    assert normalize_tool_choice(None) is None
