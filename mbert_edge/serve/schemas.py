"""Request bodies: JSON objects with a texts field and typed options, checked before anything is queued. A
/predict route takes its task's options (`Task.request_options`); the protocol routes' own are here.

Option values (a truncation or aggregation name, top_k >= 1) are checked by the runtime itself, whose
ValueError becomes the same 422 answer, so the accepted values are defined in one place."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from mbert_edge.errors import RequestError
from mbert_edge.runtime.textinput import TextInput, encodable
from mbert_edge.tasks import PAIR_TRUNCATIONS, QUESTION_ANSWERING, Option, json_type


def invalid(message: str) -> RequestError:
    return RequestError(422, "validation", message)


OPENAI_EMBED = {
    "model": Option((str,)),
    "encoding_format": Option((str,), choices=("float", "base64")),
    "user": Option((str,)),
}
TOKENIZE = {"add_special_tokens": Option((bool,), description="default true")}
RERANK = {  # text-embeddings-inference's /rerank; `texts` are the documents
    "query": Option((str,), description="the text the documents are ranked for (required)"),
    "raw_scores": Option((bool,), description="the relevance logit instead of its sigmoid (default false)"),
    "return_text": Option((bool,), description="each document's text in its result (default false)"),
    "truncate": Option(
        (bool,), description="read each document's head only (default false: all of it in windows, the best counts)"
    ),
}

ZERO_SHOT = {  # the zero-shot-classification pipeline's arguments; `inputs` are the texts
    "candidate_labels": Option(
        (list, str), description="the labels to choose from: a list, or one comma-separated string (required)"
    ),
    "hypothesis_template": Option((str,), description='each label\'s hypothesis (default "This example is {}.")'),
    "multi_label": Option((bool,), description="score each label on its own, not softmaxed over them (default false)"),
    "truncation": Option(
        (str,),
        choices=PAIR_TRUNCATIONS,
        description="how a (text, hypothesis) pair too long is cut (default only_first: the text, never the hypothesis)",
    ),
}
ANSWER = {  # the question-answering pipeline's arguments; `context` holds the contexts
    "question": Option(
        (str, list), description="the question asked of every context, or a list of one question per context (required)"
    ),
    **QUESTION_ANSWERING.predict_options,
}
REQUIRED = ("query", "candidate_labels", "question")  # the routes' options that a request must give


@dataclass(frozen=True)
class TextRequest:
    texts: list[TextInput]  # strings, or (text, text_pair) pairs where the route takes them
    single: bool  # a string came in: a single result goes out (where the route's shape has one)
    options: dict[str, Any]  # only the options the client gave


SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # how a lone surrogate comes into UTF-8 text: escaped


def cleaned(value: Any) -> Any:
    """`value` (parsed JSON) with lone surrogates in its strings and keys replaced by U+FFFD (`encodable`): what
    the server reads, and so echoes, can always be written back as UTF-8."""
    if isinstance(value, str):
        return encodable(value)
    if isinstance(value, list):
        return [cleaned(item) for item in value]
    if isinstance(value, dict):
        return {encodable(key): cleaned(item) for key, item in value.items()}
    return value


def parse(
    raw: bytes, options: dict[str, Option], max_texts: int, texts_field: str = "inputs", pairs: bool = False
) -> TextRequest:
    """The request in `raw`, or a RequestError (422) naming what is wrong. With `pairs`, a list may hold pairs of
    texts, each a list of two strings (as text-embeddings-inference takes them), instead of texts."""
    try:
        text = raw.decode("utf-8-sig")  # strictly: json.loads would let an encoded surrogate (ED A0 80) through
        body = json.loads(text)
        if SURROGATE_ESCAPE.search(text):
            body = cleaned(body)
    except UnicodeDecodeError as exc:
        raise invalid(f"the body is not UTF-8 ({exc.reason} at byte {exc.start}): send JSON as UTF-8") from exc
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
        items: list[TextInput] = [texts]
    elif isinstance(texts, list):
        if not texts:
            raise invalid(f"{texts_field} is an empty list")
        if len(texts) > max_texts:
            raise RequestError(
                422,
                "too_many_texts",
                f"{texts_field} has {len(texts)} texts; this server takes at most {max_texts} per request",
            )
        items = [_text_or_pair(f"{texts_field}[{index}]", t, pairs) for index, t in enumerate(texts)]
        if pairs and len({isinstance(item, str) for item in items}) > 1:
            raise invalid(f"{texts_field} mixes texts and pairs of texts: send one kind per request")
    else:
        raise invalid(f"{texts_field} must be a string or a list of strings, got {json_type(texts)}")
    given = {name: spec.check(name, body[name]) for name, spec in options.items() if name in body}
    return TextRequest(items, isinstance(texts, str), given)


def _text_or_pair(where: str, item: Any, pairs: bool) -> TextInput:
    if isinstance(item, str):
        return item
    if pairs and isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item):
        return item[0], item[1]
    expected = "a string or a pair of strings ([text, text_pair])" if pairs else "a string"
    raise invalid(f"{where} must be {expected}, got {json_type(item)}")
