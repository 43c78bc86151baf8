"""Checking and cleaning the texts users pass in, before the tokenizer sees them."""
from __future__ import annotations

import re
from collections.abc import Sequence

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def as_text_list(texts: str | Sequence[str], first_index: int = 0) -> tuple[list[str], bool]:
    """Normalise `texts` to a list; the flag says a single string came in (and a single result goes out).
    A wrong type raises TypeError naming its index (counted from `first_index`, for streamed chunks)."""
    if isinstance(texts, str):
        return [texts], True
    if isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Sequence):
        raise TypeError(f"texts must be a str or a sequence of str, got {type(texts).__name__}")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{first_index + index}] must be str, got {type(text).__name__}")
    return list(texts), False


def encodable(text: str) -> str:
    """`text` with lone surrogates (which UTF-8, and so the tokenizer, cannot take) replaced by U+FFFD.
    One code point for one keeps every character offset pointing into the caller's original string."""
    return _LONE_SURROGATE.sub("\ufffd", text)
