"""Request bodies: JSON objects with a texts field and typed options, checked before anything is queued.

Option values (a truncation or aggregation name, top_k >= 1) are checked by the runtime itself, whose
ValueError becomes the same 422 answer, so the accepted values are defined in one place."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mbert_edge.errors import RequestError
from mbert_edge.runtime.entities import AGGREGATIONS
from mbert_edge.runtime.runner import TRUNCATIONS


def invalid(message: str) -> RequestError:
    return RequestError(422, "validation", message)


@dataclass(frozen=True)
class Option:
    """An optional field: its JSON types (a bool is not an int here), whether null is allowed, and for the
    published schema the values the runtime accepts (`choices`, or integers from `minimum`) and a description.
    The values themselves are checked by the runtime (see above)."""

    types: tuple[type, ...]
    nullable: bool = False
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    description: str = ""

    def json_schema(self) -> dict[str, Any]:
        """This option as a JSON Schema (OpenAPI 3.1)."""
        names = {int: "integer", str: "string", bool: "boolean", float: "number"}
        schema: dict[str, Any] = {"type": [names[t] for t in self.types] + (["null"] if self.nullable else [])}
        if self.choices:
            schema["enum"] = [*self.choices, *([None] if self.nullable else [])]
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        return {**schema, "description": self.description} if self.description else schema

    def check(self, name: str, value: Any) -> Any:
        if value is None and self.nullable:
            return value
        if int in self.types and isinstance(value, float) and value.is_integer():
            return int(value)  # JSON has one number type: 2.0 is the integer 2 (as JSON Schema reads it)
        if (isinstance(value, bool) and bool not in self.types) or not isinstance(value, self.types):
            expected = " or ".join(t.__name__ for t in self.types) + (" or null" if self.nullable else "")
            raise invalid(f"{name} must be {expected}, got {json_type(value)}")
        return value


TRUNCATION = Option(
    (str,),
    choices=TRUNCATIONS,
    description="head: the first window; window: the whole text in overlapping windows (default: the task's)",
)
CLASSIFY = {
    "top_k": Option((int,), nullable=True, minimum=1, description="labels per text, best first (default 1; null: all)"),
    "truncation": TRUNCATION,
}
NER = {
    "aggregation": Option((str,), choices=AGGREGATIONS, description="how tokens become entities (default simple)"),
    "truncation": TRUNCATION,
}
EMBED = {"normalize": Option((bool,), description="unit vectors (default true)"), "truncation": TRUNCATION}
OPENAI_EMBED = {
    "model": Option((str,)),
    "encoding_format": Option((str,), choices=("float", "base64")),
    "user": Option((str,)),
}
TOKENIZE = {"add_special_tokens": Option((bool,), description="default true")}


def json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


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
