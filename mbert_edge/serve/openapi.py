"""The server's HTTP API as an OpenAPI 3.1 document (`GET /openapi.json`), built from the task registry's options
and result shapes and the request definitions in `schemas.py`, so the published fields and the parsed ones cannot
drift apart. A server runs one task, so its
document holds that task's routes only."""

from __future__ import annotations

from typing import Any

from ..tasks import TASKS, Option
from . import schemas

ERROR = {
    "type": "object",
    "required": ["error", "error_type"],
    "additionalProperties": False,
    "properties": {"error": {"type": "string"}, "error_type": {"type": "string"}},
}
TOKEN = {
    "type": "object",
    "required": ["id", "text", "special", "start", "stop"],
    "properties": {
        "id": {"type": "integer"},
        "text": {"type": "string"},
        "special": {"type": "boolean"},
        "start": {"type": "integer"},
        "stop": {"type": "integer"},
    },
}
RANKED = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["index", "score"],
        "properties": {"index": {"type": "integer"}, "score": {"type": "number"}, "text": {"type": "string"}},
    },
}
ZERO_SHOT_RESULT = {
    "type": "object",
    "required": ["sequence", "labels", "scores"],
    "properties": {
        "sequence": {"type": "string"},
        "labels": {"type": "array", "items": {"type": "string"}},
        "scores": {"type": "array", "items": {"type": "number"}},
    },
}
VECTORS = {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}
OPENAI_EMBEDDINGS = {
    "type": "object",
    "required": ["object", "data", "model", "usage"],
    "properties": {
        "object": {"const": "list"},
        "model": {"type": "string"},
        "data": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["object", "index", "embedding"],
                "properties": {
                    "object": {"const": "embedding"},
                    "index": {"type": "integer"},
                    "embedding": {"type": ["array", "string"]},
                },
            },
        },
        "usage": {
            "type": "object",
            "properties": {"prompt_tokens": {"type": "integer"}, "total_tokens": {"type": "integer"}},
        },
    },
}
# What each status means on the POST routes (errors.RequestError, the body deadline, the slots).
POST_ERRORS = {
    "400": "a route that does not fit the bundle's task",
    "408": "the body did not arrive in time",
    "413": "the body is over --max-body-bytes",
    "415": "the body is not application/json",
    "422": "a body that is not JSON, a missing or wrong field, or too many texts or tokens",
    "429": "more requests in flight than --max-concurrent-requests",
}


def _body(field: str, options: dict[str, Option], texts: dict[str, Any]) -> dict[str, Any]:
    """A request object: its texts field (schema `texts`), and its options (`schemas.REQUIRED` ones required)."""
    return {
        "type": "object",
        "required": [field, *(name for name in options if name in schemas.REQUIRED)],
        "additionalProperties": False,
        "properties": {field: texts, **{name: o.json_schema() for name, o in options.items()}},
    }


def _post(
    summary: str,
    options: dict[str, Option],
    answer: dict[str, Any],
    max_texts: int,
    field: str = "inputs",
    pair_options: dict[str, Option] | None = None,
    pairs_only: bool = False,
) -> dict[str, Any]:
    """A POST route taking a text or a list of texts in `field`, with `options`; with `pair_options`, also (or
    with `pairs_only`, only) a list of [text, text_pair] pairs, with those."""
    listed = {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": max_texts}
    texts = {"anyOf": [{"type": "string"}, listed], "description": "a text, or a list of texts (one result each)"}
    body = _body(field, options, texts)
    if pair_options is not None:
        pair = {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2}
        pairs = {**listed, "items": pair, "description": "a list of [text, text_pair] pairs (one result each)"}
        body = _body(field, pair_options, pairs) if pairs_only else {"oneOf": [body, _body(field, pair_options, pairs)]}
    responses = {
        "200": {"description": "one result per text", "content": {"application/json": {"schema": answer}}},
        **{
            status: {
                "description": why,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
            for status, why in POST_ERRORS.items()
        },
    }
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": responses,
        }
    }


def _get(
    summary: str, answer: dict[str, Any], media_type: str = "application/json", extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "responses": {
                "200": {"description": summary, "content": {media_type: {"schema": answer}}},
                **(extra or {}),
            },
        }
    }


def openapi(
    task: str,
    max_texts: int,
    api_key: bool = False,
    public_metrics: bool = False,
    routes: list[str] | None = None,
) -> dict[str, Any]:
    """The OpenAPI document of a server of `task` taking at most `max_texts` texts a request, answering `routes`
    (default: all of the task's)."""
    entry = TASKS[task]
    # The protocol routes keep their protocols' shapes (text-embeddings-inference's, OpenAI's); any other route
    # answers the task's result per text, one for a single string, with the task's options.
    protocols: dict[str, tuple[str, dict[str, Option], dict[str, Any]]] = {
        "/embed": (entry.summary, entry.request_options, VECTORS),
        "/v1/embeddings": ("OpenAI's embeddings request and response", schemas.OPENAI_EMBED, OPENAI_EMBEDDINGS),
        "/rerank": (
            "documents ranked by relevance to the query, best first (cross-encoder bundles)",
            schemas.RERANK,
            RANKED,
        ),
        "/zero-shot": (
            "the zero-shot-classification pipeline's labels and scores per text (NLI bundles)",
            schemas.ZERO_SHOT,
            {"anyOf": [ZERO_SHOT_RESULT, {"type": "array", "items": ZERO_SHOT_RESULT}]},
        ),
        "/answer": (
            "the question-answering pipeline's answer per context (question-answering bundles)",
            schemas.ANSWER,
            {"anyOf": [entry.result, {"type": "array", "items": entry.result}]},
        ),
    }
    answer = {"anyOf": [entry.result, {"type": "array", "items": entry.result}]}
    paths: dict[str, Any] = {}
    fields = {"/v1/embeddings": "input", "/rerank": "texts", "/answer": "context"}
    for route in entry.routes if routes is None else routes:
        summary, options, shape = protocols.get(route, (entry.summary, entry.request_options, answer))
        pairs = entry.pair_options if entry.pairs and route not in protocols else None  # the task's own routes
        # question answering's /predict reads [question, context] pairs only
        paths[route] = _post(summary, options, shape, max_texts, fields.get(route, "inputs"), pairs, entry.questions)
    paths["/tokenize"] = _post(
        "each text's first window's tokens",
        schemas.TOKENIZE,
        {"type": "array", "items": {"type": "array", "items": TOKEN}},
        max_texts,
    )
    paths["/info"] = _get("what the bundle's manifest says of the model, and the server's limits", {"type": "object"})
    paths["/openapi.json"] = _get("this document", {"type": "object"})
    paths["/health"] = _get(
        "200 once the model answered its load-time check",
        {"type": "object"},
        extra={
            "503": {"description": "the model is not ready yet", "content": {"application/json": {"schema": ERROR}}}
        },
    )
    paths["/metrics"] = _get("Prometheus text format", {"type": "string"}, media_type="text/plain")
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": f"mbert-edge serve ({task})", "version": "1"},
        "paths": paths,
        "components": {"schemas": {"Error": ERROR}},
    }
    if api_key:
        document["components"]["securitySchemes"] = {"apiKey": {"type": "http", "scheme": "bearer"}}
        unauthorized = {
            "description": "no or a wrong API key",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for route, operations in paths.items():
            if route == "/health" or (route == "/metrics" and public_metrics):
                continue
            for operation in operations.values():
                operation["security"] = [{"apiKey": []}]
                operation["responses"]["401"] = unauthorized
    return document


if __name__ == "__main__":  # python -m mbert_edge.serve.openapi docs/http-api: each task's document, default limits
    import json
    import sys
    from pathlib import Path

    from .settings import ServerSettings

    folder = Path(sys.argv[1])
    for name in TASKS:
        document = openapi(name, ServerSettings(bundle="").max_input_texts)
        (folder / f"openapi-{name}.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
