"""Running many calls at once: bounded concurrency, input order kept, per-item errors."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ._exceptions import LLMConfigError, LLMError

__all__ = ["chunked", "run_async", "run_threads", "vectors"]

T = TypeVar("T")
R = TypeVar("R")


def _check(concurrency: int) -> None:
    if concurrency < 1:
        raise LLMConfigError(f"concurrency must be at least 1, not {concurrency}")


def chunked(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size`` (provider-sized batches)."""
    if size < 1:
        raise LLMConfigError(f"batch_size must be at least 1, not {size}")
    return [items[start:start + size] for start in range(0, len(items), size)]


@contextlib.contextmanager
def _progress(total: int, enabled: bool, label: str) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr (rich) when asked for; a no-op otherwise."""
    if not enabled:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import Progress

    # stderr: stdout may be the results (`dewey-llm embed ... > vectors.jsonl`).
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield lambda: progress.advance(task)


def run_threads(call: Callable[[T], R], items: Sequence[T], *, concurrency: int,
                return_exceptions: bool, progress: bool, label: str) -> list[R | LLMError]:
    """``call`` on every item from ``concurrency`` threads; results in input order.

    With ``return_exceptions`` an item's ``LLMError`` takes its place in the result
    instead of being raised (other exceptions are bugs and always raise).
    """
    _check(concurrency)
    with _progress(len(items), progress, label) as advance:

        def one(item: T) -> R | LLMError:
            try:
                return call(item)
            except LLMError as error:
                if not return_exceptions:
                    raise
                return error
            finally:
                advance()

        if concurrency == 1 or len(items) <= 1:
            # One at a time: in this thread, so that Ctrl-C stops the call in flight at
            # once instead of waiting for a worker thread to finish it.
            return [one(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(concurrency, len(items))) as pool:
            # Each item runs in a copy of the caller's context, as it would in a loop: the
            # caller's OpenTelemetry span is then the parent of every call's span.
            futures = [pool.submit(contextvars.copy_context().run, one, item) for item in items]
            try:
                return [future.result() for future in futures]
            except BaseException:  # a failure or Ctrl-C: what has not started is not sent
                for future in futures:
                    future.cancel()
                raise


async def run_async(call: Callable[[T], Awaitable[R]], items: Sequence[T], *, concurrency: int,
                    return_exceptions: bool, progress: bool, label: str) -> list[R | LLMError]:
    """``run_threads`` for coroutines: at most ``concurrency`` calls in flight."""
    import asyncio  # here: `dewey-llm embed` batches with threads and does not pay its import

    _check(concurrency)
    gate = asyncio.Semaphore(concurrency)
    with _progress(len(items), progress, label) as advance:

        async def one(item: T) -> R | LLMError:
            async with gate:
                try:
                    return await call(item)
                except LLMError as error:
                    if not return_exceptions:
                        raise
                    return error
                finally:
                    advance()

        return list(await asyncio.gather(*(one(item) for item in items)))


def vectors(batches: list[Sequence[Any]], results: list[Any]) -> list[Any]:
    """One entry per input text: its vector, or the error of the batch it was in."""
    flat: list[Any] = []
    for batch, result in zip(batches, results, strict=True):
        if isinstance(result, LLMError):
            flat.extend([result] * len(batch))
            continue
        data = sorted(result["data"], key=lambda item: item["index"])
        flat.extend(item["embedding"] for item in data)
    return flat
