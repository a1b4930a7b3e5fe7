"""A minimal OpenAI-compatible server that answers instantly, for overhead benchmarks.

    python bench/fast_server.py [--port 0]        # prints "READY http://127.0.0.1:PORT"

Raw asyncio (no framework): HTTP/1.1 with keep-alive, so a benchmark measures the
client, not the server.  Run it in its own process (``bench/run.py`` does) so it never
competes with the client for the GIL.

Endpoints (the ``/v1`` prefix is optional):

* ``POST /v1/chat/completions``: a small chat completion; with ``"stream": true`` an
  SSE stream of ``STREAM_WORDS`` content chunks, a finish chunk, a usage chunk when
  ``stream_options.include_usage`` is set (as OpenAI does), then ``data: [DONE]``.
* ``POST /v1/embeddings``: one small vector per input.
* ``GET /v1/models`` and ``GET /health``.

Anything else answers 404.  The model name in the request is echoed back.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ANSWER = "Hello from the fast benchmark server: this answer costs nothing to produce."
STREAM_WORDS = ["Hello", " from", " the", " fast", " benchmark", " server", "."]
PROMPT_TOKENS, COMPLETION_TOKENS = 12, 14
EMBEDDING = [0.125, -0.25, 0.5, 0.0625, -0.03125, 0.75, -0.5, 0.25]


def _usage() -> dict[str, int]:
    return {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}


def completion(model: str) -> bytes:
    return json.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": int(time.time()),
        "model": model, "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": ANSWER}}],
        "usage": _usage(),
    }).encode()


def stream_events(model: str, include_usage: bool) -> list[bytes]:
    created = int(time.time())
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": created,
            "model": model, "system_fingerprint": "fp_bench"}
    chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                    "finish_reason": None}]}]
    chunks += [{**base, "choices": [{"index": 0, "delta": {"content": word},
                                     "finish_reason": None}]} for word in STREAM_WORDS]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if include_usage:
        chunks.append({**base, "choices": [], "usage": _usage()})
    events = [b"data: " + json.dumps(chunk).encode() + b"\n\n" for chunk in chunks]
    events.append(b"data: [DONE]\n\n")
    return events


def embeddings(model: str, inputs: object) -> bytes:
    items = inputs if isinstance(inputs, list) else [inputs]
    return json.dumps({
        "object": "list", "model": model,
        "data": [{"object": "embedding", "index": i, "embedding": EMBEDDING}
                 for i in range(len(items))],
        "usage": {"prompt_tokens": 4 * len(items), "total_tokens": 4 * len(items)},
    }).encode()


def _response(status: str, body: bytes, content_type: str = "application/json") -> bytes:
    head = (f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\n"
            f"content-length: {len(body)}\r\nconnection: keep-alive\r\n\r\n")
    return head.encode() + body


def _chunked(events: list[bytes]) -> bytes:
    head = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n")
    body = b"".join(b"%x\r\n%s\r\n" % (len(event), event) for event in events)
    return head + body + b"0\r\n\r\n"


def answer(method: str, path: str, body: bytes) -> bytes:
    path = path.split("?", 1)[0].removeprefix("/v1")
    if method == "GET" and path in ("/models", "/health"):
        return _response("200 OK", b'{"object": "list", "data": [{"id": "bench", "object": "model"}]}')
    if method != "POST" or path not in ("/chat/completions", "/embeddings"):
        return _response("404 Not Found", b'{"error": {"message": "not found", "type": "not_found"}}')
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        return _response("400 Bad Request", b'{"error": {"message": "invalid JSON"}}')
    model = str(request.get("model") or "bench")
    if path == "/embeddings":
        return _response("200 OK", embeddings(model, request.get("input")))
    if request.get("stream"):
        usage = bool((request.get("stream_options") or {}).get("include_usage"))
        return _chunked(stream_events(model, usage))
    return _response("200 OK", completion(model))


class HTTP(asyncio.Protocol):
    """HTTP/1.1 request parsing just good enough for httpx and aiohttp clients."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            length = 0
            chunked = False
            for line in head[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value.strip())
                elif name == "transfer-encoding" and "chunked" in value.lower():
                    chunked = True
            start = end + 4
            if chunked:  # rare for JSON bodies; decode it in place
                body, consumed = _dechunk(self.buffer, start)
                if consumed < 0:
                    return
            else:
                if len(self.buffer) < start + length:
                    return
                body, consumed = self.buffer[start:start + length], start + length
            self.buffer = self.buffer[consumed:]
            method, path, _ = [*head[0].split(" "), "", ""][:3]
            self.transport.write(answer(method, path, body))  # type: ignore[attr-defined]


def _dechunk(buffer: bytes, position: int) -> tuple[bytes, int]:
    body = b""
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return b"", -1
        size = int(buffer[position:line_end].split(b";")[0], 16)
        position = line_end + 2
        if len(buffer) < position + size + 2:
            return b"", -1
        if size == 0:
            return body, position + 2
        body += buffer[position:position + size]
        position += size + 2


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(HTTP, "127.0.0.1", port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    print(f"READY http://127.0.0.1:{bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


@contextlib.contextmanager
def running() -> Iterator[str]:
    """This server in a child process of its own (so that it never competes with the
    client measured for the GIL); yields its OpenAI base URL (``.../v1``)."""
    process = subprocess.Popen([sys.executable, str(Path(__file__)), "--port", "0"],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.startswith("READY "):
            raise RuntimeError(f"bench/fast_server.py did not start: {line!r}")
        yield line.removeprefix("READY ") + "/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.port))
    else:
        uvloop.run(serve(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
