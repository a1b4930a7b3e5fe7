"""A real OpenAI-compatible server for tests: llama.cpp's own (llama-server), serving SmolLM2.

    process, base_url = start_llama_server()   # base_url = "http://127.0.0.1:PORT/v1"
    try:
        litellm.completion(model="openai/smollm2", api_base=base_url, api_key="sk-none", ...)
    finally:
        stop_llama_server(process)

or, in pytest, request the session fixture ``llama_server`` (the base URL); it skips the
test when xllamacpp or the model is not installed.  From a shell:

    python -m tests.servers.llama_server --model PATH.gguf --port 8080

The server is llama.cpp's HTTP server as xllamacpp builds it, run in a subprocess by this
module's ``main``, with mean-pooled embeddings on (so one server answers chat and
embeddings) and the model aliased ``smollm2``.  Its output goes to a temporary log file,
not a pipe: a pipe nobody reads fills up and stalls the server.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import stop_process

__all__ = ["LlamaServerProcess", "llama_server", "start_llama_server", "stop_llama_server"]

MODEL_ALIAS = "smollm2"
START_TIMEOUT = 60.0
_REPO_ROOT = Path(__file__).resolve().parents[2]  # where `python -m tests.servers...` resolves


class LlamaServerProcess(subprocess.Popen[bytes]):
    """The server's process, remembering where its output goes."""

    log_path: Path


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def default_model() -> Path:
    """SmolLM2's GGUF file, as the embedded local model finds it."""
    from dewey.llm._llama import model_path

    return model_path("smollm2")


def start_llama_server(
    model: str | os.PathLike[str] | None = None, *, timeout: float = START_TIMEOUT
) -> tuple[LlamaServerProcess, str]:
    """Start the server on a free port; return it and its base URL once it answers.

    Raises ``RuntimeError`` (with the server's log) if it exits or is not answering
    ``GET /v1/models`` within ``timeout`` seconds.
    """
    path = Path(model) if model is not None else default_model()
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="llama-server-", suffix=".log", delete=False)  # noqa: SIM115
    command = [sys.executable, "-m", "tests.servers.llama_server", "--model", str(path), "--port", str(port)]
    process = LlamaServerProcess(command, stdout=log, stderr=subprocess.STDOUT, cwd=_REPO_ROOT)
    process.log_path = Path(log.name)
    log.close()  # the child holds its own descriptor
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_until_ready(process, base_url, timeout)
    except BaseException:
        stop_llama_server(process)
        raise
    return process, base_url


def _wait_until_ready(process: LlamaServerProcess, base_url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"llama server exited with code {process.returncode}:\n{_log_tail(process)}"
            )
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{base_url}/models", timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"llama server not ready after {timeout:.0f}s:\n{_log_tail(process)}")


def stop_llama_server(process: subprocess.Popen[bytes]) -> None:
    """Terminate the server (kill it if it lingers) and remove its log."""
    stop_process(process, timeout=10)
    log_path = getattr(process, "log_path", None)
    if log_path is not None:
        with contextlib.suppress(OSError):
            log_path.unlink()


def _log_tail(process: LlamaServerProcess, lines: int = 30) -> str:
    try:
        text = process.log_path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="session")
def llama_server() -> Iterator[str]:
    """The base URL of one llama.cpp server for the whole session, stopped at the end."""
    try:
        model = default_model()
    except Exception as exc:  # ImportError, or LLMConfigError when the model is missing
        pytest.skip(f"llama.cpp server unavailable: {exc}")
    process, base_url = start_llama_server(model)
    try:
        yield base_url
    finally:
        stop_llama_server(process)


def serve(model: Path, port: int, *, threads: int | None = None) -> None:
    """Serve ``model`` on 127.0.0.1:``port`` until SIGTERM or SIGINT."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(model)
    params.model_alias = {MODEL_ALIAS}
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.n_ctx = 2048
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads or os.cpu_count() or 1
    params.embedding = True
    params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
    params.n_batch = params.n_ubatch = params.n_ctx  # a whole text in one batch, as embeddings need
    server = xllamacpp.Server(params)
    print(f"llama server listening on {server.listening_address}", flush=True)
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    while not stopped.wait(0.5):  # a timed wait lets the signal handlers run
        pass
    del server  # stops llama.cpp's threads before the interpreter goes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="llama.cpp's OpenAI-compatible server for tests")
    parser.add_argument("--model", type=Path, default=None, help="a .gguf file (default: SmolLM2)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    serve(args.model or default_model(), args.port, threads=args.threads)


if __name__ == "__main__":
    main()
