"""``Message`` and the conversion of every accepted message form to provider dicts."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from pydantic import BaseModel

from dewey.llm import Message
from dewey.llm._messages import to_dicts

CALL = {"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'}}
IMAGE: list[dict[str, Any]] = [{"type": "text", "text": "What is in this picture?"},
         {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}]


def test_to_dict_leaves_out_what_is_not_set() -> None:
    assert Message(role="user", content="Hello!").to_dict() == {"role": "user", "content": "Hello!"}
    assert Message(role="system", content="Be brief.", name="rules").to_dict() == {
        "role": "system", "content": "Be brief.", "name": "rules"}


def test_function_calling_turns() -> None:
    asked = Message(role="assistant", content=None, tool_calls=[CALL])
    answered = Message(role="tool", content="sunny", tool_call_id="call_1")
    assert asked.to_dict() == {"role": "assistant", "content": None, "tool_calls": [CALL]}
    assert answered.to_dict() == {"role": "tool", "content": "sunny", "tool_call_id": "call_1"}


def test_tool_calls_from_a_provider_object_become_plain_data() -> None:
    class Function(BaseModel):
        name: str
        arguments: str

    class ToolCall(BaseModel):  # the shape of LiteLLM's ChatCompletionMessageToolCall
        id: str
        type: str
        function: Function
        index: int | None = None

    # Any: accepted at run time, though Message's annotation names only plain dicts.
    call: Any = ToolCall(id="call_1", type="function",
                         function=Function(name="get_weather", arguments='{"location": "Paris"}'))
    assert Message(role="assistant", tool_calls=[call]).to_dict()["tool_calls"] == [CALL]


def test_multimodal_content_parts_pass_through() -> None:
    message = Message(role="user", content=IMAGE)
    assert message.to_dict() == {"role": "user", "content": IMAGE}
    assert to_dicts([message]) == [{"role": "user", "content": IMAGE}]


def test_from_dict_round_trip_and_unknown_keys() -> None:
    data = {"role": "tool", "content": "sunny", "tool_call_id": "call_1"}
    message = Message.from_dict(data)
    assert message == Message(role="tool", content="sunny", tool_call_id="call_1")
    assert message.to_dict() == data
    with pytest.raises(ValueError, match=r"unknown message keys.*'contents'"):
        Message.from_dict({"role": "user", "contents": "typo"})


def test_messages_are_immutable() -> None:
    message: Any = Message(role="user", content="Hi")  # Any: try what the type checker forbids
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.content = "changed"


@pytest.mark.parametrize(("fields", "words"), [
    ({"role": "robot", "content": "Hi"}, ["'robot'", "system, user, assistant, tool"]),
    ({"role": "user", "content": 42}, ["a string, or a list of content parts", "(int)"]),
    ({"role": "tool", "content": "sunny"}, ["tool_call_id"]),
])
def test_invalid_messages_name_the_problem(fields: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(ValueError) as caught:
        Message(**fields)
    assert all(word in str(caught.value) for word in words), str(caught.value)


def test_a_prompt_string_is_one_user_message() -> None:
    assert to_dicts("What is 2+2?") == [{"role": "user", "content": "What is 2+2?"}]


def test_messages_and_dicts_mix() -> None:
    given: list[Message | dict[str, Any]] = [Message(role="system", content="Be brief."),
             {"role": "user", "content": "Hi", "name": None},
             {"role": "assistant", "content": None, "tool_calls": [CALL]},
             {"role": "developer", "content": "o1-style instructions"}]
    assert to_dicts(given) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},  # None fields dropped...
        {"role": "assistant", "content": None, "tool_calls": [CALL]},  # ...but never content
        {"role": "developer", "content": "o1-style instructions"},
    ]


def test_a_providers_reply_message_can_be_sent_back() -> None:
    class ReplyMessage(BaseModel):  # the shape of response.choices[0].message
        role: str
        content: str | None
        tool_calls: list[dict[str, Any]] | None = None

    # Any: accepted at run time, though to_dicts's annotation names only Message and mappings.
    reply: Any = ReplyMessage(role="assistant", content="Hello")
    assert to_dicts([reply]) == [{"role": "assistant", "content": "Hello"}]


@pytest.mark.parametrize(("messages", "words"), [
    ([], ["empty"]),
    ([{"role": "robot", "content": "Hi"}], ["messages[0]", "'robot'"]),
    ([Message(role="user", content="Hi"), 42], ["messages[1]", "int", "Message objects or dicts"]),
])
def test_bad_message_lists_name_the_item(messages: list[Any], words: list[str]) -> None:
    with pytest.raises(ValueError) as caught:
        to_dicts(messages)
    assert all(word in str(caught.value) for word in words), str(caught.value)
