"""``chat -a FILE|URL|-``: images attached to the prompt, as OpenAI image content parts.

A URL (http, https or data) is sent as given: the provider fetches it.  A file is read
and sent inline as a ``data:`` URL, its type named by its extension (``mimetypes``); a
file that is not an image is refused before anything is sent, since no provider would
take it.  ``-a -`` is the bytes piped on stdin (as with ``llm``): with no name to go by,
their type is read from their first bytes, and only the types in ``_SIGNATURES`` pass.
Whether the model takes images is checked by the client, from the catalog.
"""

from __future__ import annotations

import base64
import mimetypes
from pathlib import Path
from typing import Any

from .._exceptions import LLMConfigError
from .._messages import IMAGE_PART

__all__ = ["IMAGE_TYPES", "STDIN", "image_part", "user_content"]

STDIN = "-"
_URL_SCHEMES = ("http://", "https://", "data:")

# The image types the major providers take (OpenAI's and Anthropic's vision docs list the
# same four), each with its MIME type and the bytes a file of it starts with: (offset,
# bytes) pairs that must all match.  WebP is a RIFF container: "RIFF", a size, "WEBP".
_SIGNATURES: tuple[tuple[str, str, tuple[tuple[int, bytes], ...]], ...] = (
    ("PNG", "image/png", ((0, b"\x89PNG\r\n\x1a\n"),)),
    ("JPEG", "image/jpeg", ((0, b"\xff\xd8\xff"),)),
    ("GIF", "image/gif", ((0, b"GIF8"),)),
    ("WebP", "image/webp", ((0, b"RIFF"), (8, b"WEBP"))),
)
# "PNG, JPEG, GIF or WebP", for messages and help.
IMAGE_TYPES = ", ".join(name for name, _, _ in _SIGNATURES[:-1]) + f" or {_SIGNATURES[-1][0]}"


def image_part(value: str, stdin: bytes | None = None) -> dict[str, Any]:
    """The content part for ``-a VALUE``: a URL as given, a file or ``-`` (``stdin``, the
    bytes piped in) as a base64 data URL."""
    if value == STDIN:
        return _data_part(_sniffed_type(stdin or b""), stdin or b"")
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
            f"{IMAGE_TYPES} images; send text as the prompt or on stdin")
    return _data_part(mime, path.read_bytes())


def user_content(prompt: str | None, attachments: list[str],
                 stdin: bytes | None = None) -> str | list[dict[str, Any]]:
    """The user message's content: the prompt alone, or its text part then the images
    (``-a -`` among them: ``stdin``, the bytes read from it)."""
    if not attachments:
        return prompt or ""
    text = [{"type": "text", "text": prompt}] if prompt else []
    return [*text, *(image_part(value, stdin) for value in attachments)]


def _data_part(mime: str, data: bytes) -> dict[str, Any]:
    url = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return {"type": IMAGE_PART, "image_url": {"url": url}}


def _sniffed_type(data: bytes) -> str:
    """The MIME type of the image ``data`` holds, by its first bytes; an error naming what
    was read when it is none of ``_SIGNATURES``."""
    for _, mime, marks in _SIGNATURES:
        if all(data[offset:offset + len(mark)] == mark for offset, mark in marks):
            return mime
    fix = "pipe an image in: cat photo.png | dewey-llm chat -a - PROMPT"
    if not data:
        raise LLMConfigError(f"-a -: stdin is empty: {fix}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        start = " ".join(f"{byte:02x}" for byte in data[:8])
        raise LLMConfigError(f"-a -: stdin holds no {IMAGE_TYPES} image: {len(data):,} bytes of "
                             f"binary data starting {start}; {fix}") from None
    shown = text if len(text) <= 40 else text[:40] + "..."
    raise LLMConfigError(f"-a -: stdin holds no {IMAGE_TYPES} image but {len(data):,} bytes "
                         f"of text ({shown!r}): to send text, pipe it without -a -")
