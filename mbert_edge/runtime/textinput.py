"""Checking what users pass in (texts and the task calls' arguments) before any work, and cleaning texts
before the tokenizer sees them."""

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


def check_count(name: str, value: object, allow_none: bool = False) -> None:
    """`value` is an int >= 1 (None too, where `allow_none`): one TypeError or ValueError naming `name`.
    A bool is refused although Python counts it an int (`top_k=True` would silently mean 1)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        expected = "an int >= 1" + (" or None" if allow_none else "")
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1{' or None' if allow_none else ''}, got {value}")


def check_choice(name: str, value: object, choices: Sequence[str]) -> None:
    """`value` is None (the default) or one of `choices`: one TypeError or ValueError naming `name`."""
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a str ({', '.join(choices)}) or None, got {type(value).__name__}")
    if value is not None and value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)} (or None for the default), got {value!r}")


def encodable(text: str) -> str:
    """`text` with lone surrogates (which UTF-8, and so the tokenizer, cannot take) replaced by U+FFFD.
    One code point for one keeps every character offset pointing into the caller's original string."""
    return _LONE_SURROGATE.sub("\ufffd", text)
