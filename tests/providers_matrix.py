"""Write docs/providers.md from the conformance table in tests/test_providers.py.

    python -m tests.providers_matrix          # rewrite docs/providers.md
    python -m tests.providers_matrix --check  # exit 1 if it is out of date

The table is what the tests run: a cell shown as passing is a test in the normal suite,
a known LiteLLM fault is a strict ``xfail`` (it fails the suite the day LiteLLM fixes
it, so the page is updated), and "n/a" cells say why they do not apply.  The suite's
``test_providers_page_is_current`` fails when the page and the table differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.test_providers import CELLS, PROVIDERS, Spec

PAGE = Path(__file__).resolve().parents[1] / "docs" / "providers.md"


def _cell(spec: Spec, cell: str) -> str:
    if cell in spec.na:
        return "n/a"
    if cell == "embeddings" and not spec.embed_model:
        return "n/a"
    if cell in spec.xfail:
        return "✗ (LiteLLM)"
    return "✓"


def _route(model: str) -> str:
    """The provider part of a model name: ``bedrock/converse`` for Bedrock's Converse."""
    return "bedrock/converse" if model.startswith("bedrock/converse/") else model.split("/", 1)[0]


def render() -> str:
    """The whole page."""
    lines = [
        "# Providers",
        "",
        "<!-- Written by `python -m tests.providers_matrix` from tests/test_providers.py: do not edit. -->",
        "",
        "The README promises the same errors for every provider. This page is the proof: each",
        "cell is a test in the normal suite (`pytest tests/test_providers.py`, well under a",
        "minute) that calls `LiteLLMClient` over real HTTP against a test server speaking",
        "that provider's wire format, with its documented answers, stream framing and error",
        "bodies (tests/servers/wire_formats.py). No network, no mocks of LiteLLM.",
        "",
        "✓ passes · ✗ a known LiteLLM fault, kept as a strict expected failure (the cause is",
        "below) · n/a does not apply to this provider.",
        "",
        "Under `transport: auto` (the default), `openai/` models, OpenAI's own and any",
        "OpenAI-compatible server's (`openai/<name>` with `api_base`: vLLM, llama.cpp, Ollama's",
        "`/v1`, a LiteLLM proxy), go through dewey-llm's native transport; every other",
        "provider goes through LiteLLM. The OpenAI row is run on both.",
        "",
    ]
    numbers = " | ".join(str(i) for i in range(1, len(CELLS) + 1))
    lines += [f"| Provider | {numbers} |", "|---|" + "---|" * len(CELLS)]
    for spec in PROVIDERS:
        lines.append(f"| {spec.title} | " + " | ".join(_cell(spec, cell) for cell, _ in CELLS) + " |")
    lines += ["", "Behaviours:", ""]
    lines += [f"{i}. {heading}" for i, (_, heading) in enumerate(CELLS, 1)]
    notes = [(spec, cell, "✗", reason) for spec in PROVIDERS for cell, reason in spec.xfail.items()]
    notes += [(spec, cell, "n/a", reason) for spec in PROVIDERS for cell, reason in spec.na.items()]
    if notes:
        lines += ["", "## Why a cell is not ✓", ""]
        number = {cell: i for i, (cell, _) in enumerate(CELLS, 1)}
        for spec, cell, mark, reason in sorted(notes, key=lambda n: (n[0].title, number[n[1]])):
            lines.append(f"- {spec.title}, {number[cell]} ({mark}): {reason}.")
    lines += [
        "",
        "## What dewey-llm corrects on LiteLLM's side",
        "",
        "src/dewey/llm/_provider_quirks.py reads the provider's own HTTP answer from the",
        "error's cause chain, so every provider's error carries:",
        "",
        "- the status the provider sent (LiteLLM reports Anthropic's 529 as 500, Bedrock's",
        "  500 as 503 and Gemini's 400 `API_KEY_INVALID` as 401);",
        "- the retry hint wherever the provider puts it: Gemini's `RetryInfo.retryDelay`",
        "  in the error body, which LiteLLM drops;",
        "- the provider's words, without LiteLLM's `litellm.XError:` / `XException -`",
        "  prefixes or a `b'...'` bytes repr, and the provider the user named;",
        "- the key variable to set (`COHERE_API_KEY` for `cohere_chat/`,",
        "  `AWS_ACCESS_KEY_ID` for Bedrock);",
        "- the right class for a Gemini stream refused before its first chunk (LiteLLM wraps",
        "  the 429 or 401 in a `MidStreamFallbackError`, which is no stream cut).",
        "",
        "A stream whose body ends cleanly after `data: [DONE]` but never set `finish_reason`",
        "(OpenRouter does this) is a complete answer, not the error LiteLLM raises for it.",
        "",
        "## Configuring each provider",
        "",
        "| Provider | Model names | Key | Endpoint (`api_base`) | Rate-limit hint |",
        "|---|---|---|---|---|",
    ]
    for spec in (spec for spec in PROVIDERS if spec.transport == "auto"):
        names = f"`{_route(spec.model)}/...`"
        if spec.embed_model and _route(spec.embed_model) != _route(spec.model):
            names += f", `{_route(spec.embed_model)}/...` (embeddings)"
        key = f"`{spec.key_variable}`" if spec.key_variable else "none"
        if spec.name == "bedrock":
            key += " + `AWS_SECRET_ACCESS_KEY`, `AWS_REGION_NAME`"
        hint = ("n/a" if "rate_limit" in spec.na else spec.retry_hint or "none sent: our backoff")
        lines.append(f"| {spec.title} | {names} | {key} | {spec.endpoint} | {hint} |")
    lines += [
        "",
        "For example:",
        "",
        "```yaml",
        "llm:",
        "  model: azure/my-gpt-4o-mini-deployment   # azure/<deployment name>",
        "  api_base: https://my-resource.openai.azure.com",
        "  api_version: \"2024-10-21\"",
        "  api_key: ${AZURE_API_KEY}",
        "  fallback_models:",
        "    - gemini/gemini-2.5-flash               # uses GEMINI_API_KEY",
        "    - model: ollama_chat/llama3.1",
        "      api_base: http://localhost:11434",
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
        if current != text:
            print(f"{PAGE} is out of date: run python -m tests.providers_matrix", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
