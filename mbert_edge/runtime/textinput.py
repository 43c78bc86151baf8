"""Checking what users pass in (texts and the task calls' arguments) before any work, and cleaning texts
before the tokenizer sees them."""

from __future__ import annotations

import re
from collections.abc import Sequence

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


Pair = tuple[str, str]  # (text, text_pair): a premise and its hypothesis, a query and a document
TextInput = str | Pair


def _pair(item: object) -> Pair | None:
    """`item` as (text, text_pair) when it is one: a 2-tuple of strings or the pipelines' dict
    `{"text": ..., "text_pair": ...}`; else None."""
    if isinstance(item, dict) and set(item) == {"text", "text_pair"}:
        item = (item["text"], item["text_pair"])
    if isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(x, str) for x in item):
        return item[0], item[1]
    return None


def as_text_list(
    texts: TextInput | Sequence[TextInput], first_index: int = 0, pairs: bool = False
) -> tuple[list[TextInput], bool]:
    """Normalise `texts` to a list; the flag says a single input came in (and a single result goes out).
    With `pairs`, an input may also be a pair of texts: a tuple `(text, text_pair)` or a dict
    `{"text", "text_pair"}` (a list of two strings is two texts at the top level, a pair within a list).
    A batch holds texts or pairs, not both. A wrong type raises TypeError naming its index (counted from
    `first_index`, for streamed chunks)."""
    if isinstance(texts, str):
        return [texts], True
    single = _pair(texts) if pairs and isinstance(texts, (tuple, dict)) else None
    if single is not None:
        return [single], True
    if isinstance(texts, (bytes, bytearray, dict)) or not isinstance(texts, Sequence):
        expected = "a str, a (text, text_pair) tuple or a sequence of them" if pairs else "a str or a sequence of str"
        raise TypeError(f"texts must be {expected}, got {type(texts).__name__}")
    items: list[TextInput] = []
    for index, text in enumerate(texts):
        item = text if isinstance(text, str) else _pair(text) if pairs else None
        if item is None:
            expected = "str or a (text, text_pair) pair of str" if pairs else "str"
            raise TypeError(f"texts[{first_index + index}] must be {expected}, got {type(text).__name__}")
        if isinstance(item, str) != isinstance(items[0] if items else item, str):
            raise TypeError(f"texts[{first_index + index}]: a call takes texts or pairs of texts, not both")
        items.append(item)
    return items, False


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
