"""Request bodies: JSON objects with a texts field and typed options, checked before anything is queued. A
/predict route takes its task's options (`Task.request_options`); the protocol routes' own are here.

Option values (a truncation or aggregation name, top_k >= 1) are checked by the runtime itself, whose
ValueError becomes the same 422 answer, so the accepted values are defined in one place."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mbert_edge.errors import RequestError
from mbert_edge.tasks import Option, json_type


def invalid(message: str) -> RequestError:
    return RequestError(422, "validation", message)


OPENAI_EMBED = {
    "model": Option((str,)),
    "encoding_format": Option((str,), choices=("float", "base64")),
    "user": Option((str,)),
}
TOKENIZE = {"add_special_tokens": Option((bool,), description="default true")}


@dataclass(frozen=True)
class TextRequest:
    texts: list[str]
    single: bool  # a string came in: a single result goes out (where the route's shape has one)
    options: dict[str, Any]  # only the options the client gave


def parse(raw: bytes, options: dict[str, Option], max_texts: int, texts_field: str = "inputs") -> TextRequest:
    """The request in `raw`, or a RequestError (422) naming what is wrong."""
    try:
        body = json.loads(raw)
    # ValueError: besides malformed JSON, an integer of more than 4,300 digits; RecursionError: nested too deep.
    except (ValueError, RecursionError) as exc:
        raise invalid(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise invalid(f"the body must be a JSON object, got {json_type(body)}")
    unknown = sorted(set(body) - {texts_field, *options})
    if unknown:
        raise invalid(f"unknown field {unknown[0]!r}; this route takes {', '.join([texts_field, *options])}")
    if texts_field not in body:
        raise invalid(f"{texts_field} is missing: give a string or a list of strings")
    texts = body[texts_field]
    if isinstance(texts, str):
        items = [texts]
    elif isinstance(texts, list):
        if not texts:
            raise invalid(f"{texts_field} is an empty list")
        if len(texts) > max_texts:
            raise RequestError(
                422,
                "too_many_texts",
                f"{texts_field} has {len(texts)} texts; this server takes at most {max_texts} per request",
            )
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise invalid(f"{texts_field}[{index}] must be a string, got {json_type(text)}")
        items = texts
    else:
        raise invalid(f"{texts_field} must be a string or a list of strings, got {json_type(texts)}")
    given = {name: spec.check(name, body[name]) for name, spec in options.items() if name in body}
    return TextRequest(items, isinstance(texts, str), given)
