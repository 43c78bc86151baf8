"""The HTTP routes (Starlette), after Hugging Face text-embeddings-inference where the task matches.

The model is used through the runtime's task API (`predict`/`encode`, `tokenizer`, `max_length`, `precision`,
`labels`, `task`, `default_truncation`) and its runner's `windows` (the token counts the batcher budgets) and
`intra_op_threads` (requests come cleaned of lone surrogates by `schemas`, with the runtime's `encodable`). The
manifest is read in `info_payload` alone.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

import mbert_edge
from mbert_edge.runtime import Classifier, TaskModel
from mbert_edge.runtime.batching import bucket_length
from mbert_edge.runtime.fill_mask import TOP_K
from mbert_edge.runtime.question_answerer import MAX_QUESTION_LEN, QuestionAnswerer
from mbert_edge.runtime.textinput import TextInput
from mbert_edge.runtime.zero_shot import DEFAULT_TEMPLATE, ZeroShotClassifier, candidates, hypotheses

from ..errors import RequestError, WindowError
from ..tasks import ENTAILMENT, PAIR_TRUNCATIONS, TASKS, Option, serving
from . import schemas
from .batcher import BatchLimits, MicroBatcher, Run
from .metrics import RequestCounter, ServerMetrics
from .openapi import openapi
from .protocol import GuardedHttpToolsProtocol
from .settings import ServerSettings

SETTINGS_VARIABLE = "MBERT_EDGE_SERVE_SETTINGS"  # how `--workers N` hands the settings to each worker
# The protocol routes' model call, and the bundle it needs (a route the model cannot answer is not served).
PROTOCOL_CALLS = {
    "/embed": ("encode", "an embedding bundle"),
    "/v1/embeddings": ("encode", "an embedding bundle"),
    "/rerank": ("scores", "a cross-encoder bundle (a classifier with one relevance logit)"),
    "/zero-shot": ("predict", "an NLI bundle (a classifier whose labels name entailment)"),  # the zero-shot view's
}
INLINE_TOKENIZING = 4096  # characters: fewer are tokenized on the event loop (tens of µs), more in a thread
T = TypeVar("T")


def info_payload(model: TaskModel, settings: ServerSettings) -> dict[str, Any]:
    """GET /info: what the bundle's manifest says of the model served."""
    manifest = model.bundle.manifest
    config = manifest.quantization.config if model.precision == "int8" and manifest.quantization else None
    return {
        "model": Path(settings.bundle).resolve().name,
        "task": model.task,
        "labels": model.labels,
        "max_length": model.max_length,
        "hidden_size": manifest.hidden_size,
        "precision": model.precision,
        "int8_method": config.method if config else None,
        "batch_invariant": model.precision == "fp32" or bool(config and config.batch_invariant),
        "version": mbert_edge.__version__,
        "limits": {k: v for k, v in asdict(settings).items() if k.startswith("max_") or k == "concurrent_batches"},
        "api_key_required": settings.api_key is not None,
        "intra_op_threads": model.runner.intra_op_threads,
    }


def error_response(status: int, error_type: str, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "error_type": error_type}, status_code=status)


class ApiKeyCheck:
    """ASGI middleware: without `Authorization: Bearer <key>` a request gets 401, except /health (and /metrics
    when `public_metrics`). The key is compared in constant time, so its bytes cannot be guessed by timing."""

    def __init__(self, app: ASGIApp, key: str, public_metrics: bool) -> None:
        self.app, self.expected = app, f"Bearer {key}".encode()
        self.open_paths = {"/health", "/metrics"} if public_metrics else {"/health"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"authorization", b"")
        if not hmac.compare_digest(given, self.expected):
            why = "a wrong API key" if given else "no API key"
            response = error_response(
                401,
                "unauthorized",
                f"{why}: send the header 'Authorization: Bearer <key>' with the key this server was started with",
            )
            response.headers["WWW-Authenticate"] = "Bearer"
            return await response(scope, receive, send)
        await self.app(scope, receive, send)


class Server:
    """One model behind one micro-batcher, and the routes that use them."""

    def __init__(self, model: TaskModel, settings: ServerSettings) -> None:
        self.model, self.settings = model, settings
        self.metrics = ServerMetrics()
        self.batcher = MicroBatcher(
            BatchLimits(settings.max_batch_tokens, settings.max_batch_size, settings.max_wait_ms / 1000),
            self.metrics,
            settings.concurrent_batches,
        )
        self.ready = False
        self.in_flight = 0
        # An NLI classifier also classifies zero-shot (/zero-shot), over the same session.
        self.zero_shot = (
            ZeroShotClassifier.sharing(model)
            if isinstance(model, Classifier) and any(label.lower().startswith(ENTAILMENT) for label in model.labels)
            else None
        )

    # -- plumbing -----------------------------------------------------------------------------------

    @property
    def routes(self) -> list[str]:
        """The inference routes this server answers: its task's, less a protocol route whose call the model lacks
        (a classifier with more than one label does not rank)."""
        return [route for route in TASKS[self.model.task].routes if self._answerer(route) is not None]

    def _answerer(self, route: str) -> Any:
        """Whose call answers `route`: the model, or its zero-shot view for /zero-shot; None where neither can."""
        owner = self.zero_shot if route == "/zero-shot" else self.model
        return owner if owner is not None and hasattr(owner, PROTOCOL_CALLS.get(route, ("predict", ""))[0]) else None

    def _require(self, route: str) -> None:
        if route not in TASKS[self.model.task].routes:
            raise RequestError(
                400,
                "wrong_task",
                f"this server runs a {self.model.task} bundle; {route} serves {' and '.join(serving(route))} bundles",
            )
        if route not in self.routes:
            raise RequestError(400, "wrong_task", f"{route} needs {PROTOCOL_CALLS[route][1]}; this server's is not")

    def _inference(
        self, handler: Callable[[Request, bytes], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """An inference route: its body read (within --request-timeout), then a concurrency slot taken (429
        above --max-concurrent-requests), so a client that sends its body slowly holds no slot."""

        async def endpoint(request: Request) -> Response:
            raw = await self._body(request)
            if self.in_flight >= self.settings.max_concurrent_requests:
                raise RequestError(
                    429,
                    "overloaded",
                    f"more than {self.settings.max_concurrent_requests} requests in flight; retry later",
                )
            self.in_flight += 1
            try:
                return await handler(request, raw)
            except asyncio.CancelledError:  # uvicorn cancels what --graceful-timeout did not let finish
                response = error_response(
                    503,
                    "shutting_down",
                    "the server stopped before this request was answered (--graceful-timeout); send it again",
                )
                response.headers["Connection"] = "close"
                return response
            finally:
                self.in_flight -= 1

        return endpoint

    async def _body(self, request: Request) -> bytes:
        """The request body, or a 413 as soon as it is over --max-body-bytes, or a 408 when it has not all
        arrived within --request-timeout. (Starlette's own limit answers a declared oversized length in plain
        text, whatever the app sends; every error here is JSON.) Only JSON is taken (415 otherwise): a web
        page can send a plain-text body across origins without asking, so accepting it would let any page a
        user visits run the model."""
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            raise RequestError(
                415,
                "unsupported_media_type",
                f"the body must be sent as application/json, got {media_type or 'no Content-Type'}",
            )
        limit = self.settings.max_body_bytes
        too_large = RequestError(413, "payload_too_large", f"the body is over this server's --max-body-bytes {limit}")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_large

        async def read() -> bytes:
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(chunk)
            return b"".join(chunks)

        try:
            return await asyncio.wait_for(read(), self.settings.request_timeout)
        except asyncio.TimeoutError:
            raise RequestError(
                408,
                "request_timeout",
                f"the body did not arrive within this server's --request-timeout {self.settings.request_timeout:g} s",
            ) from None

    def _parse(
        self, raw: bytes, options: dict[str, Option], texts_field: str = "inputs", pairs: bool = False
    ) -> schemas.TextRequest:
        return schemas.parse(raw, options, self.settings.max_input_texts, texts_field, pairs)

    def _windows(self, texts: list[TextInput], options: dict[str, Any]) -> list[list[int]]:
        """Each text's (or pair's) windows' token counts, as the model will see them. A text with more windows
        than --max-input-tokens can pay for is refused before it is tokenized whole. (A truncation the runtime
        does not take is counted as its default here, and refused by the runtime.)"""
        pairs = [t for t in texts if not isinstance(t, str)]
        truncation = options.get("truncation")
        stride = None
        try:
            if isinstance(self.model, QuestionAnswerer):  # its windows: the question cut, the context's stride
                stride = self.model.doc_stride(options.get("doc_stride"))
                length = options.get("max_question_len", MAX_QUESTION_LEN)
                pairs = [self.model.cut_question(pair, length) for pair in pairs]
        except (TypeError, ValueError) as exc:
            raise schemas.invalid(str(exc)) from exc
        try:
            if pairs and stride is not None:  # question answering: each context in windows, the question whole
                windows = self.model.runner.pair_windows(pairs, "window", stride)
            elif pairs:
                windows = self.model.runner.pair_windows(
                    pairs, truncation if truncation in PAIR_TRUNCATIONS else PAIR_TRUNCATIONS[0]
                )
            else:
                all_windows = (truncation or self.model.default_truncation) == "window"
                windows = self.model.runner.windows(
                    [t for t in texts if isinstance(t, str)], "window" if all_windows else "head"
                )
        except ValueError as exc:
            if not isinstance(exc, WindowError) or exc.no_room:  # a pair that cannot be cut, not a long text
                raise schemas.invalid(str(exc)) from exc
            raise RequestError(
                422, "too_many_tokens", f"{exc}: over this server's --max-input-tokens {self.settings.max_input_tokens}"
            ) from exc
        mask = self.model.runner.gathered_id  # fill-mask: refused here, not in a batch that other requests share
        unmasked = next((i for i, group in enumerate(windows) if mask is not None and mask not in group[0].ids), None)
        if unmasked is not None:
            raise schemas.invalid(f"inputs[{unmasked}] has no mask token in its first {self.model.max_length} tokens")
        top_k, targets = options.get("top_k") or TOP_K, options.get("targets")
        if mask is not None and isinstance(top_k, int):  # each proposal is a copy of its text: bound the answer
            choices = (
                1 if isinstance(targets, str) else len(targets) if targets else self.model.tokenizer.get_vocab_size()
            )
            copied = min(top_k, choices) * sum(g[0].ids.count(mask) * len(g[0].ids) for g in windows)
            limit = self.settings.max_input_tokens * TOP_K
            if copied > limit:
                raise RequestError(
                    422,
                    "too_many_tokens",
                    f"the answer would copy its texts' tokens {copied:,} times over (masks x top_k x tokens), over "
                    f"this server's --max-input-tokens x {TOP_K} ({limit:,}): lower top_k or send fewer masks",
                )
        return [[len(w) for w in group] for group in windows]

    def _call(
        self, method: str, options: dict[str, Any], query: str | None = None, owner: Any = None
    ) -> tuple[Hashable, Run]:
        """The batch key and function of `<owner>.<method>` (the model's, by default) with these options (after
        `query`, when given: texts of requests with the same query batch together)."""
        function = getattr(owner or self.model, method)
        batch_size = self.settings.max_batch_size
        given = sorted((name, tuple(v) if isinstance(v, list) else v) for name, v in options.items())  # hashable
        key = (owner is None, method, query, tuple(given))
        if query is not None:
            return key, lambda texts: function(query, texts, batch_size=batch_size, **options)
        return key, lambda texts: function(texts, batch_size=batch_size, **options)

    async def _run(
        self,
        request: Request,
        method: str,
        parsed: schemas.TextRequest,
        query: str | None = None,
        owner: Any = None,
        reads: list[TextInput] | None = None,
    ) -> tuple[list[Any], int]:
        """Results of `<owner>.<method>` (the model's, by default) for the request's texts (each after `query`, when
        given) through the batcher, and their token count. `reads`: what the model reads for them, the same number
        of inputs per text (default: the texts, each after `query`), to count their tokens. A client that
        disconnects first is not waited for: its texts not yet started leave the queue."""
        measured: list[TextInput] = reads or [t if query is None else (query, str(t)) for t in parsed.texts]
        if sum(len(t) if isinstance(t, str) else len(t[0]) + len(t[1]) for t in measured) <= INLINE_TOKENIZING:
            windows = self._windows(measured, parsed.options)
        else:
            windows = await asyncio.to_thread(self._windows, measured, parsed.options)
        per_input = [sum(bucket_length(n, self.model.max_length) for n in lengths) for lengths in windows]
        step = len(measured) // len(parsed.texts)
        costs = [sum(per_input[i : i + step]) for i in range(0, len(per_input), step)]
        cost, limit = sum(costs), self.settings.max_input_tokens
        if cost > limit:  # one request must not hold the model for minutes (a 2 MB text read in windows)
            raise RequestError(
                422,
                "too_many_tokens",
                f"the texts are {cost} tokens as the model runs them, over "
                f"this server's --max-input-tokens {limit}; send fewer or "
                'shorter texts, or truncation "head"',
            )
        key, run = self._call(method, parsed.options, query, owner)
        results = await self._unless_disconnected(request, self.batcher.submit(key, run, parsed.texts, costs))
        return results, sum(map(sum, windows))

    @staticmethod
    async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T:
        async def disconnected() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        answer, gone = asyncio.ensure_future(work), asyncio.ensure_future(disconnected())
        await asyncio.wait({answer, gone}, return_when=asyncio.FIRST_COMPLETED)
        gone.cancel()
        if not answer.done():
            answer.cancel()
            raise ClientDisconnect()
        try:
            return answer.result()
        except (ValueError, TypeError) as exc:  # the runtime's own check of an option's value
            raise schemas.invalid(str(exc)) from exc

    # -- routes -------------------------------------------------------------------------------------

    async def predict(self, request: Request, raw: bytes) -> Response:
        """POST /predict (and /ner): the task's result per text (one for a single string), with the options its
        registry entry lists (`mbert_edge.tasks`)."""
        self._require(request.url.path)
        task = TASKS[self.model.task]
        parsed = self._parse(raw, task.request_options, pairs=task.pairs)
        results, _ = await self._run(request, "predict", parsed)
        return JSONResponse(results[0] if parsed.single else results)

    async def rerank(self, request: Request, raw: bytes) -> Response:
        """POST /rerank: text-embeddings-inference's: the documents in `texts` ranked by their relevance to
        `query`, best first, with a cross-encoder bundle."""
        self._require("/rerank")
        parsed = self._parse(raw, schemas.RERANK, texts_field="texts")
        query = parsed.options.get("query")
        if query is None:
            raise schemas.invalid("query is missing: give the text the documents are ranked for")
        options = {
            "raw_scores": parsed.options.get("raw_scores", False),
            "truncation": "only_second" if parsed.options.get("truncate", False) else "window",
        }
        documents = schemas.TextRequest(parsed.texts, parsed.single, options)
        scores, _ = await self._run(request, "scores", documents, query=query)
        shown = parsed.options.get("return_text", False)
        order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
        return JSONResponse(
            [{"index": i, "score": float(scores[i]), **({"text": parsed.texts[i]} if shown else {})} for i in order]
        )

    async def zero_shot_route(self, request: Request, raw: bytes) -> Response:
        """POST /zero-shot: the zero-shot-classification pipeline's result per text (one for a single string), with
        an NLI bundle: each text read with a hypothesis per candidate label."""
        self._require("/zero-shot")
        parsed = self._parse(raw, schemas.ZERO_SHOT)
        if "candidate_labels" not in parsed.options:
            raise schemas.invalid("candidate_labels is missing: give the labels to choose from")
        try:  # a bad label list or template is a 422 before any work
            labels = candidates(parsed.options["candidate_labels"])
            filled = hypotheses(parsed.options.get("hypothesis_template", DEFAULT_TEMPLATE), labels)
        except (TypeError, ValueError) as exc:
            raise schemas.invalid(str(exc)) from exc
        read = len(labels) * sum(len(str(t)) for t in parsed.texts) + len(parsed.texts) * sum(map(len, filled))
        if read > self.settings.max_body_bytes:  # each text is read once per label: bound it before tokenizing
            raise RequestError(
                422,
                "too_many_tokens",
                f"the texts read once per label with their hypotheses make {read:,} characters, over this server's "
                f"--max-body-bytes {self.settings.max_body_bytes}: send fewer labels or shorter texts per request",
            )
        options = {**parsed.options, "candidate_labels": tuple(labels)}  # hashable: requests alike batch together
        reads: list[TextInput] = [(str(t), hypothesis) for t in parsed.texts for hypothesis in filled]
        results, _ = await self._run(
            request,
            "predict",
            schemas.TextRequest(parsed.texts, parsed.single, options),
            owner=self.zero_shot,
            reads=reads,
        )
        return JSONResponse(results[0] if parsed.single else results)

    async def answer(self, request: Request, raw: bytes) -> Response:
        """POST /answer: the question-answering pipeline's answer per context (one for a single string): `question`
        asked of every context, or a list of one question per context."""
        self._require("/answer")
        parsed = self._parse(raw, schemas.ANSWER, texts_field="context")
        question = parsed.options.get("question")
        if question is None:
            raise schemas.invalid("question is missing: give the question to answer from the context")
        questions = [question] * len(parsed.texts) if isinstance(question, str) else question
        if not all(isinstance(q, str) for q in questions):
            raise schemas.invalid("question must be a string or a list of strings")
        if len(questions) != len(parsed.texts):
            raise schemas.invalid(
                f"{len(questions)} questions for {len(parsed.texts)} contexts: give one question, or one per context"
            )
        options = {name: value for name, value in parsed.options.items() if name != "question"}
        pairs: list[TextInput] = [(q, str(c)) for q, c in zip(questions, parsed.texts)]
        results, _ = await self._run(request, "predict", schemas.TextRequest(pairs, parsed.single, options))
        return JSONResponse(results[0] if parsed.single else results)

    async def embed(self, request: Request, raw: bytes) -> Response:
        """POST /embed: one vector per input (a list of vectors also for a single string, as TEI)."""
        self._require("/embed")
        parsed = self._parse(raw, TASKS[self.model.task].request_options)
        vectors, _ = await self._run(request, "encode", parsed)
        return JSONResponse([vector.tolist() for vector in vectors])

    async def openai_embeddings(self, request: Request, raw: bytes) -> Response:
        """POST /v1/embeddings: OpenAI's request and response shape (unit vectors, float or base64)."""
        self._require("/v1/embeddings")
        parsed = self._parse(raw, schemas.OPENAI_EMBED, texts_field="input")
        encoding = parsed.options.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise schemas.invalid(f"encoding_format must be float or base64, got {encoding!r}")
        vectors, tokens = await self._run(request, "encode", schemas.TextRequest(parsed.texts, parsed.single, {}))
        data = [
            {
                "object": "embedding",
                "index": index,
                "embedding": base64.b64encode(vector.astype("<f4").tobytes()).decode()
                if encoding == "base64"
                else vector.tolist(),
            }
            for index, vector in enumerate(vectors)
        ]
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": parsed.options.get("model", Path(self.settings.bundle).resolve().name),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def tokenize(self, request: Request, raw: bytes) -> Response:
        """POST /tokenize: the tokens of each input's first window (what `truncation="head"` reads)."""
        parsed = self._parse(raw, schemas.TOKENIZE)
        special = parsed.options.get("add_special_tokens", True)
        texts = [t for t in parsed.texts if isinstance(t, str)]  # /tokenize takes no pairs
        encodings = await asyncio.to_thread(self.model.tokenizer.encode_batch, texts, add_special_tokens=special)
        return JSONResponse(
            [
                [
                    {
                        "id": i,
                        "text": token if is_special else text[start:stop],
                        "special": bool(is_special),
                        "start": start,
                        "stop": stop,
                    }
                    for i, token, is_special, (start, stop) in zip(e.ids, e.tokens, e.special_tokens_mask, e.offsets)
                ]
                for text, e in zip(texts, encodings)
            ]
        )

    async def info(self, request: Request) -> Response:
        return JSONResponse(info_payload(self.model, self.settings))

    async def openapi_document(self, request: Request) -> Response:
        return JSONResponse(
            openapi(
                self.model.task,
                self.settings.max_input_texts,
                self.settings.api_key is not None,
                self.settings.public_metrics,
                self.routes,
            )
        )

    async def health(self, request: Request) -> Response:
        if not self.ready:
            return error_response(503, "unavailable", "the model has not answered its load-time check yet")
        return JSONResponse({"status": "ok"})

    async def prometheus(self, request: Request) -> Response:
        body, content_type = self.metrics.exposition()
        return Response(body, media_type=content_type)

    # -- application ----------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """Start the batcher and send the model one text through it, at once (no request can join it); stop after
        the last request."""
        self.batcher.start()
        await self.batcher.submit(
            *self._call("predict", {}),
            [self.model.probe],
            [bucket_length(4, self.model.max_length)],
            wait=False,
        )
        self.ready = True
        yield
        self.ready = False
        await self.batcher.stop()

    def app(self) -> Starlette:
        protocols = {
            "/embed": self.embed,
            "/v1/embeddings": self.openai_embeddings,
            "/rerank": self.rerank,
            "/zero-shot": self.zero_shot_route,
            "/answer": self.answer,
        }
        every = dict.fromkeys(route for task in TASKS.values() for route in task.routes)  # a 400 names the task
        routes = [
            *(Route(path, self._inference(protocols.get(path, self.predict)), methods=["POST"]) for path in every),
            Route("/tokenize", self._inference(self.tokenize), methods=["POST"]),
            Route("/info", self.info, methods=["GET"]),
            Route("/openapi.json", self.openapi_document, methods=["GET"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/metrics", self.prometheus, methods=["GET"]),
        ]
        middleware = [Middleware(RequestCounter, metrics=self.metrics, routes={r.path for r in routes})]
        if self.settings.api_key is not None:
            middleware.append(
                Middleware(ApiKeyCheck, key=self.settings.api_key, public_metrics=self.settings.public_metrics)
            )
        app = Starlette(
            routes=routes,
            middleware=middleware,
            exception_handlers={
                RequestError: self._request_error,
                HTTPException: self._http_error,
                ClientDisconnect: self._client_gone,
                Exception: self._unexpected,
            },
            lifespan=self.lifespan,
        )
        app.router.redirect_slashes = False  # its redirect's Location is built from the client's Host header
        return app

    async def _request_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestError)
        response = error_response(exc.status, exc.error_type, str(exc))
        if exc.status == 429:
            response.headers["Retry-After"] = "1"
        elif exc.status == 408:  # the rest of a late body may still come: do not read it as the next request
            response.headers["Connection"] = "close"
        return response

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        response = error_response(
            exc.status_code,
            str(exc.detail).lower().replace(" ", "_"),
            f"{exc.detail}: {request.method} {request.url.path}",
        )
        response.headers.update(exc.headers or {})  # 405's Allow
        return response

    async def _client_gone(self, request: Request, exc: Exception) -> Response:
        return Response(status_code=499)  # nginx's "client closed request": nobody reads it, the metrics do

    async def _unexpected(self, request: Request, exc: Exception) -> Response:
        lines = str(exc).strip().splitlines()
        return error_response(500, "internal", f"unexpected {type(exc).__name__}: {lines[0] if lines else ''}")


def create_app(model: TaskModel, settings: ServerSettings) -> Starlette:
    """The ASGI application serving `model` (loaded from `settings.bundle`)."""
    return Server(model, settings).app()


def app_from_environment() -> Starlette:
    """uvicorn's app factory for `--workers N`: each worker loads the model from the settings the command
    put in the environment."""
    settings = ServerSettings(**json.loads(os.environ[SETTINGS_VARIABLE]))
    GuardedHttpToolsProtocol.limit(settings.max_header_bytes, settings.request_timeout)
    return create_app(settings.load(), settings)
