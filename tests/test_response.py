"""Answers rebuilt from stored data (cache hits) read like fresh LiteLLM responses."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest

from dewey.llm._response import (
    ResponseData,
    answer_text,
    as_dict,
    cached_response,
    delta_text,
    replay_chunks,
    usage_counts,
)
from tests.hidden_params import hidden_params

TEXT = "The quick  brown fox, jumps over\nthe lazy dog. "
CALL = {"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'}}


def stored(content: str | None = TEXT, **message: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1_700_000_000,
            "model": "gpt-4o-mini", "system_fingerprint": "fp_1",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content, **message}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21,
                      "prompt_tokens_details": {"cached_tokens": 4}}}


def test_attributes_and_items_read_the_same_data() -> None:
    response = ResponseData(stored())
    assert response.choices[0].message.content == TEXT
    assert response["choices"][0]["message"]["content"] == TEXT
    assert response.get("choices")[0].get("message").role == "assistant"
    assert response.usage.prompt_tokens_details.cached_tokens == 4
    assert response.get("missing", "default") == "default"
    with pytest.raises(AttributeError, match="missing"):
        _ = response.missing
    with pytest.raises(KeyError):
        _ = response["missing"]


def test_a_key_named_like_a_method_does_not_hide_the_method() -> None:
    response = ResponseData({"items": [1, 2], "json": "text", "data": [{"embedding": [0.5]}]})
    assert sorted(response.items()) == [("data", [{"embedding": [0.5]}]), ("items", [1, 2]), ("json", "text")]
    assert json.loads(response.json())["json"] == "text" and response["items"] == [1, 2]
    assert response.data[0].embedding == [0.5]  # not a method: the key


def test_what_a_read_wrapped_is_read_again_as_is() -> None:
    response = ResponseData(stored())
    first = response.choices[0].message
    assert response.choices[0].message is first and response["choices"] is response.choices
    first.content = "changed"
    assert response.model_dump()["choices"][0]["message"]["content"] == "changed"
    assert json.loads(response.json()) == response.model_dump()


def test_setting_an_attribute_sets_the_key() -> None:
    response = ResponseData(stored())
    response.model = "gpt-4o"
    assert response["model"] == "gpt-4o" and response.model_dump()["model"] == "gpt-4o"


def test_model_dump_and_json_are_plain_copies() -> None:
    data = stored()
    response = ResponseData(data)
    dumped = response.model_dump()
    assert dumped == data and type(dumped) is dict
    assert type(dumped["choices"][0]) is dict
    dumped["choices"][0]["message"]["content"] = "changed"
    assert response.choices[0].message.content == TEXT  # a copy, not a view
    assert json.loads(response.json()) == json.loads(response.model_dump_json()) == data


def test_as_dict_of_a_response_or_of_plain_data() -> None:
    class Fresh:  # anything with model_dump(), as LiteLLM's ModelResponse has
        def model_dump(self) -> dict[str, Any]:
            return stored()

    assert as_dict(Fresh()) == stored()
    assert as_dict(ResponseData(stored())) == stored()
    assert as_dict({"created": 1, "when": pytest}) == {"created": 1, "when": str(pytest)}


def test_a_cache_hit_is_marked_outside_its_data() -> None:
    hit = cached_response({**stored(), "_hidden_params": {"response_cost": 0.02}})
    assert hidden_params(hit) == {"cache_hit": True, "response_cost": 0.0}
    assert hit.cache_hit is True
    assert hit.model_dump() == stored()  # the mark is not part of the answer
    assert hidden_params(ResponseData(stored())) == {}  # unmarked data reads as LiteLLM's does


def test_a_hit_survives_pickling_as_data() -> None:
    response = ResponseData(stored())
    assert pickle.loads(pickle.dumps(response)).choices[0].message.content == TEXT


def joined(chunks: list[ResponseData]) -> str:
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


@pytest.mark.parametrize("text", [TEXT, "one", "", "  leading and trailing  ", "a\tb  c\n\nd"])
def test_replayed_chunks_join_to_the_stored_text(text: str) -> None:
    chunks = list(replay_chunks(stored(text)))
    assert joined(chunks) == text
    first, last_choice, usage = chunks[0], chunks[-2], chunks[-1]
    assert first.choices[0].delta.role == "assistant"
    assert (last_choice.choices[0].delta.content, last_choice.choices[0].finish_reason) == (None, "stop")
    assert (usage.choices, usage.usage.completion_tokens) == ([], 9)
    assert all(c.id == "chatcmpl-1" and c.object == "chat.completion.chunk" and c.model == "gpt-4o-mini"
               for c in chunks)
    assert all(hidden_params(c) == {"cache_hit": True} for c in chunks)


def test_replayed_tool_calls_carry_their_index() -> None:
    chunks = list(replay_chunks(stored(None, tool_calls=[CALL])))
    calls = [c.choices[0].delta.tool_calls for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert calls == [[{"index": 0, **CALL}]]
    assert joined(chunks) == ""


def test_replay_without_usage_ends_with_the_finish_reason() -> None:
    data = stored("done")
    del data["usage"]
    data["choices"][0]["finish_reason"] = "length"
    chunks = list(replay_chunks(data))
    assert chunks[-1].choices[0].finish_reason == "length"


@pytest.mark.parametrize(("response", "counts"), [
    (stored(), (12, 9, 4)),
    (ResponseData(stored()), (12, 9, 4)),
    ({"usage": {"prompt_tokens": 3, "completion_tokens": 1}}, (3, 1, 0)),
    ({"usage": {"prompt_tokens": 3, "completion_tokens": None, "prompt_tokens_details": None}}, (3, 0, 0)),
    ({"choices": []}, (0, 0, 0)),
    (None, (0, 0, 0)),
])
def test_usage_counts(response: Any, counts: tuple[int, int, int]) -> None:
    assert usage_counts(response) == counts


def test_usage_counts_of_an_object_with_attributes() -> None:
    class Details:
        cached_tokens = 7

    class Usage:
        prompt_tokens, completion_tokens, prompt_tokens_details = 20, 5, Details()

    class Chunk:
        usage = Usage()

    assert usage_counts(Chunk()) == (20, 5, 7)


def test_replay_is_one_chunk_per_word() -> None:
    chunks = list(replay_chunks(stored("Hello there, world")))
    assert [c.choices[0].delta.content for c in chunks if c.choices] == [
        "", "Hello ", "there, ", "world", None]


def test_delta_and_answer_text_of_chunks_responses_and_plain_data() -> None:
    chunks = list(replay_chunks(stored(TEXT)))
    assert "".join(delta_text(chunk) for chunk in chunks) == TEXT  # the usage chunk adds ""
    assert "".join(delta_text(chunk.model_dump()) for chunk in chunks) == TEXT
    assert answer_text(cached_response(stored(TEXT))) == TEXT
    assert answer_text(stored(TEXT)) == TEXT
    assert answer_text({"choices": []}) == delta_text({"choices": []}) == ""
    assert answer_text({"choices": [{"message": {"content": None, "tool_calls": []}}]}) == ""
