"""``chat -a FILE``: images attached to the prompt, as OpenAI image content parts.

A URL (http, https or data) is sent as given: the provider fetches it.  A file is read
and sent inline as a ``data:`` URL, its type named by its extension (``mimetypes``); a
file that is not an image is refused before anything is sent, since no provider would
take it.  Whether the model takes images is checked by the client, from the catalog.
"""

from __future__ import annotations

import base64
import mimetypes
from pathlib import Path
from typing import Any

from .._exceptions import LLMConfigError
from .._messages import IMAGE_PART

__all__ = ["image_part", "user_content"]

_URL_SCHEMES = ("http://", "https://", "data:")


def image_part(value: str) -> dict[str, Any]:
    """The content part for ``-a VALUE``: a URL as given, a file as a base64 data URL."""
    if value.startswith(_URL_SCHEMES):
        return {"type": IMAGE_PART, "image_url": {"url": value}}
    path = Path(value).expanduser()
    if not path.is_file():
        reason = "is a directory" if path.is_dir() else "no such file"
        raise LLMConfigError(f"-a {value}: {reason} (attach an image file or an http(s) URL)")
    mime, _ = mimetypes.guess_type(path.name)
    if mime is None or not mime.startswith("image/"):
        raise LLMConfigError(
            f"-a {value} is not an image ({mime or 'unknown type'}, by its extension): attach "
            "PNG, JPEG, GIF or WebP images; send text as the prompt or on stdin")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return {"type": IMAGE_PART, "image_url": {"url": f"data:{mime};base64,{data}"}}


def user_content(prompt: str | None, attachments: list[str]) -> str | list[dict[str, Any]]:
    """The user message's content: the prompt alone, or its text part then the images."""
    if not attachments:
        return prompt or ""
    text = [{"type": "text", "text": prompt}] if prompt else []
    return [*text, *(image_part(value) for value in attachments)]
