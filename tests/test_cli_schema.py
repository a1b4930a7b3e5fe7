"""``dewey-llm chat --schema``: a structured answer printed as JSON, in a subprocess over
real HTTP to the fake provider (the helpers are test_cli.py's)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.servers.fake_provider import FakeProvider, Reply
from tests.test_cli import WIRE_MODEL, cli_env, dewey, dewey_all, ok, one_error_line


def test_a_concise_schema_prints_the_validated_json(provider: FakeProvider, tmp_path: Path) -> None:
    provider.script(WIRE_MODEL, Reply.ok('{"name": "Rex", "age": "3", "tags": ["good"]}'))
    result = ok(dewey(["chat", "--schema", "name str, age int, tags list[str]: what it likes",
                       "Invent a dog"], cli_env(tmp_path, provider), tmp_path))

    assert json.loads(result.stdout) == {"name": "Rex", "age": 3, "tags": ["good"]}  # validated
    [request] = provider.requests
    assert not request.stream
    schema = request.json["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["name", "age", "tags"] and schema["additionalProperties"] is False
    assert schema["properties"]["age"]["type"] == "integer"
    assert schema["properties"]["tags"]["description"] == "what it likes"


def test_a_schema_file_a_model_to_import_and_a_list(provider: FakeProvider, tmp_path: Path) -> None:
    (tmp_path / "dog.json").write_text(json.dumps({
        "type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}))
    (tmp_path / "pets.py").write_text(
        "from pydantic import BaseModel\n\nclass Cat(BaseModel):\n    name: str\n    lives: int\n")
    provider.script(WIRE_MODEL, Reply.ok('{"items": [{"name": "Rex"}, {"name": "Fido"}]}'))
    provider.script("gpt-4o", Reply.ok('{"name": "Tom", "lives": 9}'))
    env = cli_env(tmp_path, provider)

    dogs, cat = dewey_all(["chat", "--schema-multi", "dog.json", "Two dogs"],
                          ["chat", "-m", "openai/gpt-4o", "--schema", "pets:Cat", "A cat"],
                          env=env, cwd=tmp_path)

    assert json.loads(ok(dogs).stdout) == [{"name": "Rex"}, {"name": "Fido"}]
    assert json.loads(ok(cat).stdout) == {"name": "Tom", "lives": 9}
    sent = provider.requests_for("gpt-4o")[0].json["response_format"]["json_schema"]
    assert sent["name"] == "Cat"


def test_an_answer_that_never_validates_is_one_error_line(provider: FakeProvider, tmp_path: Path) -> None:
    provider.script(WIRE_MODEL, Reply.ok("no"), Reply.ok('{"age": 1}'))
    result = dewey(["chat", "--schema", "name, age int", "Invent a dog"],
                   cli_env(tmp_path, provider), tmp_path)

    assert "does not match Answer (2 tries, max_repairs=1): name: Field required" in one_error_line(result)
    assert len(provider.requests) == 2


def test_a_bad_schema_is_one_error_line_and_nothing_is_sent(
        provider: FakeProvider, tmp_path: Path) -> None:
    env = cli_env(tmp_path, provider)
    unknown, missing = dewey_all(["chat", "--schema", "name string", "hi"],
                                 ["chat", "--schema", "nowhere.json", "hi"], env=env, cwd=tmp_path)

    assert "unknown type 'string': use str, int, float, bool" in one_error_line(unknown)
    assert "cannot read nowhere.json" in one_error_line(missing)
    assert provider.requests == []
