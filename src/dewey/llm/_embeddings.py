"""Cache-aware embeddings: which texts the cache answers, and merging cached with fresh vectors.

Each text is cached on its own, so a batch sends only the texts the cache does not
hold; the answer is then put back together in input order, as if one call had made it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ._exceptions import LLMConfigError, LLMResponseError
from ._recorder import COST_FIELD, Recorder
from ._request import Request, check_cache_mode
from ._response import ResponseData, usage_counts

__all__ = ["EmbeddingPlan", "merge", "plan_embeddings"]

logger = logging.getLogger("dewey.llm")


@dataclass
class EmbeddingPlan:
    """The texts of a call, what the cache holds for each, and which still need a call."""

    texts: list[str]
    found: list[Any]  # per text: its cache entry, or None
    missing: list[int]  # indexes of the texts to send
    keys: list[str | None]  # per text: its cache key (None: not cached)


def plan_embeddings(texts: list[str], request: Request, cache: Any, endpoint: str | None) -> EmbeddingPlan:
    """Per-text cache lookups: the vectors found, and which inputs still need a call."""
    check_cache_mode(request.cache)
    keys: list[str | None] = [None] * len(texts)
    found: list[Any] = [None] * len(texts)
    if cache is not None and request.cache is not False:
        from ._cache import embedding_key

        try:
            keys = [embedding_key(request.model, text, request.payload, endpoint=endpoint)
                    for text in texts]
        except LLMConfigError as exc:
            # As for completions: a parameter that is not plain data is called uncached.
            logger.info("not caching this call: %s", exc)
        if request.cache != "refresh" and keys[0] is not None:
            hits = cache.get_many([k for k in keys if k is not None])
            found = [hits.get(k) if k else None for k in keys]
    missing = [i for i, item in enumerate(found) if item is None]
    return EmbeddingPlan(texts, found, missing, keys)


def merge(request: Request, plan: EmbeddingPlan, fresh: ResponseData | None, recorder: Recorder) -> ResponseData:
    """The answer to the whole call: the fresh response when every text was sent, else
    cached and fresh vectors in input order (fresh ones cached on the way)."""
    found, missing = plan.found, plan.missing
    vectors = _vectors(request, fresh, len(missing)) if fresh is not None else []
    if fresh is not None:
        _store(recorder, fresh, vectors, plan)
        if len(missing) == len(plan.texts):
            return fresh
    # Texts the cache answered: recorded as one hit, with what they cost when computed.
    saved = sum(float(entry.get(COST_FIELD) or 0.0) for entry in found if entry is not None)
    recorder.record(request, None, "ok", cache_hit=True, saved=saved)
    for vector, index in zip(vectors, missing, strict=True):
        found[index] = {"embedding": vector}
    data = [{"object": "embedding", "index": i, "embedding": entry["embedding"]}
            for i, entry in enumerate(found)]
    usage = usage_counts(fresh)
    response = ResponseData({"object": "list", "model": request.model, "data": data,
                             "usage": {"prompt_tokens": usage[0], "total_tokens": usage[0]}})
    cost = recorder.cost_of(fresh) if fresh is not None else 0.0
    object.__setattr__(response, "_hidden_params",
                       {"cache_hit": fresh is None, "response_cost": cost, "dewey_cost": cost})
    return response


def _store(recorder: Recorder, fresh: Any, vectors: list[list[float]], plan: EmbeddingPlan) -> None:
    if recorder.cache is None:
        return
    share = recorder.cost_of(fresh) / max(1, len(plan.missing))  # each vector's part of the cost
    items = {plan.keys[index]: {"embedding": vector, COST_FIELD: share}
             for vector, index in zip(vectors, plan.missing, strict=True)
             if plan.keys[index] is not None}
    if items:
        recorder.cache.set_many(items, recorder.cache_ttl)


def _items(response: Any) -> list[list[float]]:
    data = response["data"] if isinstance(response, dict) else response.data
    ordered = sorted(data, key=lambda item: item["index"] if isinstance(item, dict) else item.index)
    return [item["embedding"] if isinstance(item, dict) else item.embedding for item in ordered]


def _vectors(request: Request, response: Any, expected: int) -> list[list[float]]:
    """The response's vectors in input order, one per text sent, or an error: a vector
    matched to the wrong text would be silently wrong (and cached)."""
    vectors = _items(response)
    if len(vectors) != expected:
        raise LLMResponseError(
            f"{request.model} returned {len(vectors)} embeddings for {expected} texts: the "
            "provider dropped (or added) some, so none can be matched to its text and "
            "nothing was cached; retry, or send smaller batches (batch_size)",
            model=request.model)
    return vectors
