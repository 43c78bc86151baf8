"""`mbert-edge serve`: the real server in a subprocess on 127.0.0.1, real tiny bundles, real HTTP."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn", reason="the [serve] extra is not installed")

from conftest import run_cli  # noqa: E402

from mbert_edge import Classifier, Embedder, TokenClassifier  # noqa: E402
from mbert_edge.textdata import builtin_sample  # noqa: E402

TEXTS = [s for group in builtin_sample().texts.values() for s in group[:2]]  # 34 sentences, 17 languages


class Server:
    """`mbert-edge serve BUNDLE ...` on a free port; killed at teardown whatever happened."""

    def __init__(self, bundle: Path, *options: str, env_key: str | None = None) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(  # a session of its own: teardown kills it with any workers it started
            [sys.executable, "-m", "mbert_edge", "serve", str(bundle), "--port", str(self.port), *options],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parent,
            start_new_session=True,
            env={**os.environ, **({"MBERT_EDGE_API_KEY": env_key} if env_key else {})},
        )
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, self.process.communicate()[1]
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not become healthy within 60 s"
            time.sleep(0.1)

    def post(self, route: str, body: object) -> httpx.Response:
        return httpx.post(f"{self.url}{route}", json=body, timeout=30)

    def metric(self, name: str) -> float:
        """A metric's value summed over its label sets (0 when absent)."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        return sum(float(m) for m in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.communicate(timeout=30)


@pytest.fixture
def start() -> Iterator:
    servers: list[Server] = []

    def starter(bundle: Path, *options: str, env_key: str | None = None) -> Server:
        servers.append(Server(bundle, *options, env_key=env_key))
        return servers[-1]

    yield starter
    for server in servers:
        server.close()


@pytest.fixture(scope="module")
def seqcls_server(seqcls_bundle) -> Iterator[Server]:
    server = Server(
        seqcls_bundle,
        "--max-wait-ms",
        "20",
        "--max-input-texts",
        "40",
        "--max-body-bytes",
        "20000",
        "--max-input-tokens",
        "2048",
        "--concurrent-batches",
        "3",
        "--intra-op-threads",
        "1",
    )
    yield server
    server.close()


def assert_close(served: object, direct: object, path: str = "result") -> None:
    """Same structure and strings; numbers within 1e-6."""
    if isinstance(direct, dict):
        assert isinstance(served, dict) and served.keys() == direct.keys(), (path, served, direct)
        for key in direct:
            assert_close(served[key], direct[key], f"{path}.{key}")
    elif isinstance(direct, (list, tuple, np.ndarray)):
        assert isinstance(served, list) and len(served) == len(direct), (path, served, direct)
        for index, (a, b) in enumerate(zip(served, direct)):
            assert_close(a, b, f"{path}[{index}]")
    elif isinstance(direct, (float, np.floating)):
        assert abs(served - float(direct)) <= 1e-6, (path, served, direct)
    else:
        assert served == direct, (path, served, direct)


async def post_all(url: str, bodies: list[object]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60) as client:
        return await asyncio.gather(*(client.post(url, json=body) for body in bodies))


def assert_error(response: httpx.Response, status: int, error_type: str, *fragments: str) -> None:
    assert response.status_code == status, response.text
    assert "\n" not in response.text.strip()
    body = response.json()
    assert set(body) == {"error", "error_type"} and body["error_type"] == error_type, body
    for fragment in fragments:
        assert fragment in body["error"], body


def test_server_session_threads_and_spinning(seqcls_bundle, tmp_path):
    """The session's threads: `--intra-op-threads`, else the runtime's choice (a `bench --save` figure in the
    manifest, else the usable cores); ONNX Runtime's thread spinning is off either way."""
    from mbert_edge.bundle import Bundle, RuntimeSettings
    from mbert_edge.runtime.cpus import available_cpus
    from mbert_edge.serve.app import ServerSettings

    default = ServerSettings(str(seqcls_bundle)).load().runner
    assert default.intra_op_threads == available_cpus()
    assert default.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert ServerSettings(str(seqcls_bundle), intra_op_threads=3).load().runner.intra_op_threads == 3
    saved = Bundle.open(shutil.copytree(seqcls_bundle, tmp_path / "saved"))
    saved.manifest.runtime = RuntimeSettings(intra_op_threads=1, measured_on="test")
    saved.save()
    assert ServerSettings(str(saved.path)).load().runner.intra_op_threads == 1


def test_classification_routes_match_the_classifier(seqcls_server, seqcls_bundle):
    clf = Classifier(seqcls_bundle)
    info = httpx.get(f"{seqcls_server.url}/info").json()
    assert info["task"] == "sequence-classification" and info["labels"] == clf.labels
    assert (info["precision"], info["int8_method"], info["batch_invariant"]) == ("fp32", None, True)
    assert info["max_length"] == clf.max_length
    limits = info["limits"]
    assert (
        limits["max_input_texts"],
        limits["max_input_tokens"],
        limits["concurrent_batches"],
        info["intra_op_threads"],
    ) == (40, 2048, 3, 1)

    assert_close(seqcls_server.post("/predict", {"inputs": TEXTS[0]}).json(), clf.predict(TEXTS[0]))
    assert_close(
        seqcls_server.post("/predict", {"inputs": TEXTS[:5], "top_k": None}).json(), clf.predict(TEXTS[:5], top_k=None)
    )
    assert_close(
        seqcls_server.post("/predict", {"inputs": TEXTS[:3], "top_k": 2, "truncation": "window"}).json(),
        clf.predict(TEXTS[:3], top_k=2, truncation="window"),
    )

    tokens = seqcls_server.post("/tokenize", {"inputs": TEXTS[4]}).json()
    encoding = clf.tokenizer.encode(TEXTS[4])
    assert [t["id"] for t in tokens[0]] == encoding.ids
    assert [t["special"] for t in tokens[0]] == [bool(s) for s in encoding.special_tokens_mask]
    assert all(TEXTS[4][t["start"] : t["stop"]] == t["text"] for t in tokens[0] if not t["special"])

    for route in ("/embed", "/v1/embeddings", "/ner"):
        key = "input" if route == "/v1/embeddings" else "inputs"
        assert_error(seqcls_server.post(route, {key: "x"}), 400, "wrong_task", "sequence-classification", route)

    long_text = " ".join(TEXTS * 3)  # several windows; the classifier reads only the first by default
    assert len(clf.runner.windows([long_text], "window")[0]) > 2
    before = seqcls_server.metric("mbert_edge_batch_tokens_sum")
    with pytest.warns(UserWarning, match="truncation='window'"):
        assert_close(seqcls_server.post("/predict", {"inputs": long_text}).json(), clf.predict(long_text))
    assert seqcls_server.metric("mbert_edge_batch_tokens_sum") - before == clf.max_length  # budgeted as it runs


def test_concurrent_requests_each_get_their_own_results_batched(seqcls_server, seqcls_bundle):
    """Requests of 1 to 4 texts at once: every answer is its own, in order, and the batcher did batch them."""
    clf = Classifier(seqcls_bundle)
    bodies = [{"inputs": TEXTS[i : i + 1 + i % 4]} for i in range(len(TEXTS))]
    batches_before = seqcls_server.metric("mbert_edge_batch_size_count")
    responses = asyncio.run(post_all(f"{seqcls_server.url}/predict", bodies))
    for body, response in zip(bodies, responses):
        assert response.status_code == 200, response.text
        assert_close(response.json(), clf.predict(body["inputs"]))
    batches = seqcls_server.metric("mbert_edge_batch_size_count") - batches_before
    texts = sum(len(body["inputs"]) for body in bodies)
    assert batches < len(bodies) / 2, f"{len(bodies)} requests ({texts} texts) ran in {batches} batches"


@pytest.mark.slow
def test_faithful_int8_answers_do_not_depend_on_batching(start, faithful_bundle):
    server = start(faithful_bundle, "--precision", "int8", "--max-wait-ms", "20")
    info = httpx.get(f"{server.url}/info").json()
    assert (info["precision"], info["int8_method"], info["batch_invariant"]) == ("int8", "faithful", True)
    clf = Classifier(faithful_bundle, "int8")
    bodies = [{"inputs": TEXTS[i : i + 1 + i % 3], "top_k": None} for i in range(len(TEXTS))]
    responses = asyncio.run(post_all(f"{server.url}/predict", bodies))
    for body, response in zip(bodies, responses):
        assert_close(response.json(), [clf.predict(text, top_k=None) for text in body["inputs"]])  # each alone
    assert server.metric("mbert_edge_batch_size_sum") > server.metric("mbert_edge_batch_size_count")


@pytest.mark.slow
def test_a_long_request_does_not_starve_a_short_one(start, seqcls_bundle):
    """2,000 texts run 2 per batch; a one-text request sent once they have started joins the next batch:
    it is answered while most of them still wait (first come, first served would answer it after them), counted
    in the texts the server ran while it was in flight rather than in seconds."""
    server = start(seqcls_bundle, "--max-batch-size", "2", "--max-input-texts", "2000")
    clf = Classifier(seqcls_bundle)
    long, short = {"inputs": (TEXTS * 59)[:2000]}, {"inputs": TEXTS[30:31]}

    async def scenario() -> tuple[httpx.Response, httpx.Response, float]:
        async with httpx.AsyncClient(timeout=120) as client:
            first = asyncio.ensure_future(client.post(f"{server.url}/predict", json=long))
            while server.metric("mbert_edge_batch_size_count") < 1 + 2:  # the health check, then the long's
                await asyncio.sleep(0.01)
            before = server.metric("mbert_edge_batch_size_sum")
            short_response = await client.post(f"{server.url}/predict", json=short)
            meanwhile = server.metric("mbert_edge_batch_size_sum") - before  # texts run while it was in flight
            return await first, short_response, meanwhile

    long_response, short_response, meanwhile = asyncio.run(scenario())
    assert meanwhile < 2000 / 4, meanwhile  # first come, first served: the rest of the 2,000 first
    assert_close(long_response.json(), clf.predict(long["inputs"]))
    assert_close(short_response.json(), clf.predict(short["inputs"]))
    assert server.metric("mbert_edge_batch_size_count") >= 1 + 2001 / 2  # 2 texts at most per batch
    assert server.metric("mbert_edge_batch_size_sum") == 1 + 2001


@pytest.mark.slow
def test_embedding_routes_match_the_embedder(start, encoder_bundle):
    server = start(encoder_bundle)
    emb = Embedder(encoder_bundle)
    assert httpx.get(f"{server.url}/info").json()["task"] == "feature-extraction"
    assert_close(server.post("/embed", {"inputs": TEXTS[0]}).json(), emb.encode([TEXTS[0]]))
    assert_close(
        server.post("/embed", {"inputs": TEXTS[:6], "normalize": False}).json(), emb.encode(TEXTS[:6], normalize=False)
    )

    openai = server.post("/v1/embeddings", {"input": TEXTS[:3], "model": "m"}).json()
    assert openai["object"] == "list" and openai["model"] == "m"
    assert [d["index"] for d in openai["data"]] == [0, 1, 2] and {d["object"] for d in openai["data"]} == {"embedding"}
    assert_close([d["embedding"] for d in openai["data"]], emb.encode(TEXTS[:3]))
    tokens = sum(len(emb.tokenizer.encode(t)) for t in TEXTS[:3])
    assert openai["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    packed = server.post("/v1/embeddings", {"input": TEXTS[3], "encoding_format": "base64"}).json()
    vector = np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), dtype="<f4")
    assert_close(vector.tolist(), emb.encode(TEXTS[3]))
    assert_error(server.post("/v1/embeddings", {"input": "x", "encoding_format": "hex"}), 422, "validation", "hex")
    assert_error(server.post("/predict", {"inputs": "x"}), 400, "wrong_task", "feature-extraction")


@pytest.mark.slow
def test_ner_routes_match_the_token_classifier(start, token_bundle):
    server = start(token_bundle)
    ner = TokenClassifier(token_bundle)
    assert_close(server.post("/predict", {"inputs": TEXTS[:4]}).json(), ner.predict(TEXTS[:4]))
    assert_close(
        server.post("/ner", {"inputs": TEXTS[5], "aggregation": "none"}).json(),
        ner.predict(TEXTS[5], aggregation="none"),
    )
    assert_error(server.post("/ner", {"inputs": "x", "aggregation": "bogus"}), 422, "validation", "bogus")
    assert_error(server.post("/ner", {"inputs": "x", "top_k": 2}), 422, "validation", "top_k")


JSON = {"content-type": "application/json"}


def test_bad_requests_get_one_line_json_errors(seqcls_server):
    url = f"{seqcls_server.url}/predict"
    cases = [
        (httpx.post(url, content=b"{not json", headers=JSON), 422, "validation", "not valid JSON"),
        (
            httpx.post(url, content=b"[" * 5000 + b"]" * 5000, headers=JSON),
            422,
            "validation",
            "not valid JSON",
            "recursion",
        ),
        (
            httpx.post(url, content=b'{"inputs": "a", "top_k": ' + b"9" * 5000 + b"}", headers=JSON),
            422,
            "validation",
            "not valid JSON",
            "4300 digits",
        ),
        (
            httpx.post(url, content=b'{"inputs": "a"}', headers={"content-type": "text/plain"}),
            415,
            "unsupported_media_type",
            "application/json",
            "text/plain",
        ),
        (httpx.post(url, content=b'{"inputs": "a"}'), 415, "unsupported_media_type", "no Content-Type"),
        (
            httpx.post(f"{seqcls_server.url}/tokenize", data={"inputs": "a"}),
            415,
            "unsupported_media_type",
            "application/x-www-form-urlencoded",
        ),
        (seqcls_server.post("/predict", {"inputs": "a", "top_k": 1.5}), 422, "validation", "top_k", "number"),
        (seqcls_server.post("/predict", ["a"]), 422, "validation", "JSON object"),
        (seqcls_server.post("/predict", {"text": "a"}), 422, "validation", "unknown field 'text'"),
        (seqcls_server.post("/predict", {}), 422, "validation", "inputs is missing"),
        (seqcls_server.post("/predict", {"inputs": []}), 422, "validation", "empty list"),
        (seqcls_server.post("/predict", {"inputs": ["a", 3]}), 422, "validation", "inputs[1]", "number"),
        (seqcls_server.post("/predict", {"inputs": {"a": 1}}), 422, "validation", "object"),
        (seqcls_server.post("/predict", {"inputs": "a", "top_k": "2"}), 422, "validation", "top_k", "string"),
        (seqcls_server.post("/predict", {"inputs": "a", "top_k": True}), 422, "validation", "top_k", "boolean"),
        (seqcls_server.post("/predict", {"inputs": "a", "top_k": 0}), 422, "validation", "top_k"),
        (seqcls_server.post("/predict", {"inputs": "a", "truncation": "tail"}), 422, "validation", "tail"),
        (seqcls_server.post("/predict", {"inputs": ["a"] * 41}), 422, "too_many_texts", "41", "40"),
        (
            seqcls_server.post("/predict", {"inputs": ["Guten Morgen " * 300] * 4, "truncation": "window"}),
            422,
            "too_many_tokens",
            "--max-input-tokens 2048",
        ),
        (seqcls_server.post("/predict", {"inputs": "a" * 20001}), 413, "payload_too_large", "20000"),
        (
            httpx.post(url, content=iter([b'{"inputs": "', b"a" * 30000, b'"}']), headers=JSON),
            413,
            "payload_too_large",
            "20000",
        ),
        (httpx.get(f"{seqcls_server.url}/nowhere"), 404, "not_found", "/nowhere"),
        (httpx.get(url), 405, "method_not_allowed", "GET /predict"),
        # No redirect whose Location comes from the client's Host header (it was 307 to http://evil.example/predict).
        (httpx.post(f"{url}/", json={"inputs": "a"}, headers={"host": "evil.example"}), 404, "not_found", "/predict/"),
    ]
    for response, status, error_type, *fragments in cases:
        assert_error(response, status, error_type, *fragments)
    lone_surrogate = json.dumps({"inputs": "\ud800 lone surrogate"}).encode()  # escaped: valid JSON
    assert httpx.post(url, content=lone_surrogate, headers=JSON).status_code == 200
    assert (
        httpx.post(
            f"{seqcls_server.url}/tokenize",
            content=lone_surrogate,
            headers={"content-type": "Application/JSON; charset=utf-8"},
        ).status_code
        == 200
    )
    assert seqcls_server.metric('mbert_edge_requests_total{route="/predict",status="413"}') == 2


@pytest.mark.slow
def test_an_api_key_guards_every_route_but_health(start, seqcls_bundle):
    server = start(seqcls_bundle, "--api-key", "s3cret key")
    assert server.process.stdout.readline().startswith(
        f"mbert-edge serve: http://127.0.0.1:{server.port} {seqcls_bundle.name} (sequence-classification, precision "
    )
    for route, method in (
        ("/predict", "POST"),
        ("/tokenize", "POST"),
        ("/info", "GET"),
        ("/metrics", "GET"),
        ("/nowhere", "GET"),
    ):
        for headers, why in (
            ({}, "no API key"),
            ({"authorization": "Bearer s3cret"}, "a wrong API key"),
            ({"authorization": "s3cret key"}, "a wrong API key"),
        ):
            response = httpx.request(method, f"{server.url}{route}", json={"inputs": "a"}, headers=headers)
            assert_error(response, 401, "unauthorized", why, "Authorization: Bearer <key>")
            assert response.headers["www-authenticate"] == "Bearer"
    key = {"authorization": "Bearer s3cret key"}
    assert httpx.post(f"{server.url}/predict", json={"inputs": "a"}, headers=key).status_code == 200
    assert httpx.get(f"{server.url}/info", headers=key).json()["api_key_required"] is True
    assert httpx.get(f"{server.url}/health").status_code == 200
    public = start(seqcls_bundle, "--public-metrics", env_key="from the environment")
    assert httpx.get(f"{public.url}/metrics").status_code == 200
    assert httpx.get(f"{public.url}/info").status_code == 401
    assert httpx.get(f"{public.url}/info", headers={"authorization": "Bearer from the environment"}).status_code == 200


@pytest.mark.slow
def test_a_text_the_token_budget_admits_is_read_whole(start, encoder_bundle):
    """--max-input-tokens above the runtime's default window limit (131,072 tokens' worth): a text between the
    two is read whole, as the in-process model does when its max_windows allows it."""
    server = start(encoder_bundle, "--max-input-tokens", "400000", "--max-body-bytes", "3000000")
    text = "Angela Merkel besuchte Paris. " * 9_000
    model = Embedder(encoder_bundle, max_windows=10_000)
    assert 1_400 < len(model.runner.windows([text], "window")[0]) < 400_000 // model.max_length
    answer = server.post("/embed", {"inputs": text})
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(answer.json()[0], model.encode(text), atol=1e-5)


def test_listening_beyond_loopback_without_a_key_is_warned_about():
    from mbert_edge.cli import serve  # the command's module through its package (as the CLI loads it)

    exposure_warning = sys.modules[serve.callback.__module__].exposure_warning

    assert exposure_warning("127.0.0.1", None) is None and exposure_warning("::1", None) is None
    assert exposure_warning("0.0.0.0", "key") is None
    assert "reachable from other machines, with no --api-key" in exposure_warning("0.0.0.0", None)
    assert "--host 127.0.0.1" in exposure_warning("192.0.2.7", None)


@pytest.mark.slow
def test_overload_answers_429_at_once_and_a_gone_client_leaves_the_queue(start, seqcls_bundle):
    server = start(seqcls_bundle, "--max-concurrent-requests", "2", "--max-wait-ms", "3000", "--max-batch-size", "64")

    async def scenario() -> tuple[list[httpx.Response], httpx.Response, bool]:
        async with httpx.AsyncClient(timeout=60) as client:
            waiting = [
                asyncio.ensure_future(client.post(f"{server.url}/predict", json={"inputs": TEXTS[:2]}))
                for _ in range(2)
            ]
            while server.metric("mbert_edge_queue_depth") < 4:  # both are in the queue, waiting 3 s for more
                await asyncio.sleep(0.05)
            refused = await client.post(f"{server.url}/tokenize", json={"inputs": "x"})
            before_them = not any(request.done() for request in waiting)
            return await asyncio.gather(*waiting), refused, before_them

    answered, refused, before_them = asyncio.run(scenario())
    assert_error(refused, 429, "overloaded", "2 requests")
    assert refused.headers["retry-after"] == "1"
    assert before_them and [r.status_code for r in answered] == [200, 200]  # refused at once, not after a slot freed

    with socket.create_connection(("127.0.0.1", server.port)) as client:  # sends 5 texts, leaves at once
        body = json.dumps({"inputs": TEXTS[:5]}).encode()
        client.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        deadline = time.monotonic() + 10
        while server.metric("mbert_edge_queue_depth") < 5:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    deadline = time.monotonic() + 10
    while server.metric("mbert_edge_cancelled_texts_total") < 5:
        assert time.monotonic() < deadline, "the disconnected client's texts stayed in the queue"
        time.sleep(0.05)
    assert server.metric("mbert_edge_queue_depth") == 0
    assert server.metric("mbert_edge_batch_size_sum") == 1 + 4  # the health check, the two answered requests


@pytest.mark.slow
def test_sigterm_finishes_requests_in_flight_and_exits_0(start, seqcls_bundle):
    server = start(seqcls_bundle, "--max-wait-ms", "1500")
    clf = Classifier(seqcls_bundle)
    bodies = [{"inputs": TEXTS[i : i + 2]} for i in range(0, 12, 2)]

    async def scenario() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            waiting = [asyncio.ensure_future(client.post(f"{server.url}/predict", json=b)) for b in bodies]
            while server.metric("mbert_edge_queue_depth") < 12:  # all in the queue for another second or so
                await asyncio.sleep(0.05)
            server.process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            with pytest.raises(httpx.TransportError):  # no longer accepting
                await client.get(f"{server.url}/health", headers={"Connection": "close"})
            return await asyncio.gather(*waiting)

    for body, response in zip(bodies, asyncio.run(scenario())):
        assert response.status_code == 200, response.text
        assert response.headers["connection"] == "close"  # keep-alive clients are told the server is going
        assert_close(response.json(), clf.predict(body["inputs"]))
    assert server.process.wait(timeout=30) == 0, server.process.communicate()[1]


@pytest.mark.slow
def test_sigterm_stops_within_the_graceful_timeout(start, seqcls_bundle):
    """A request the model would hold past --graceful-timeout does not keep the server from exiting. (The
    load-time check ran at once, not after --max-wait-ms: nothing can join its batch.)"""
    server = start(seqcls_bundle, "--max-wait-ms", "20000", "--graceful-timeout", "1")
    assert server.metric("mbert_edge_batch_size_count") == 1 and server.metric("mbert_edge_queue_seconds_sum") < 10
    with socket.create_connection(("127.0.0.1", server.port)) as client:
        body = json.dumps({"inputs": "wartet"}).encode()
        client.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        while server.metric("mbert_edge_queue_depth") < 1:
            time.sleep(0.05)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=15) == 0  # the request alone would hold it 20 s
        client.settimeout(5)
        answer = client.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 503") and "shutting_down" in answer and "connection: close" in answer


def rss_kb(pid: int) -> int:
    return int(
        next(
            line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmRSS")
        )
    )


@pytest.mark.slow
def test_slow_and_abusive_clients_cannot_hold_the_server(start, seqcls_bundle):
    """500 connections sending their bodies a byte at a time take no concurrency slot and get 408 at the body
    deadline; a normal client is answered meanwhile. Headers are capped before they are buffered (431), and
    must arrive within the deadline too (408)."""
    server = start(seqcls_bundle, "--max-concurrent-requests", "8", "--request-timeout", "4")
    slow = []
    try:
        for _ in range(500):
            connection = socket.create_connection(("127.0.0.1", server.port))
            connection.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"in'
            )
            slow.append(connection)
        answer = httpx.post(f"{server.url}/predict", json={"inputs": "Guten Morgen"}, timeout=10)
        slow[0].setblocking(False)
        with pytest.raises(BlockingIOError):  # answered while the slow bodies are still being waited for
            slow[0].recv(4096)
        assert answer.status_code == 200
        slow[0].settimeout(10)
        late = slow[0].recv(4096).decode()
        assert late.startswith("HTTP/1.1 408") and "--request-timeout 4 s" in late and "connection: close" in late
    finally:
        for connection in slow:
            connection.close()

    before = rss_kb(server.process.pid)
    with socket.create_connection(("127.0.0.1", server.port)) as client:
        client.settimeout(5)
        client.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent, chunk = 0, b"a" * (1 << 20)
        with contextlib.suppress(OSError):  # the server closes the connection while we still send
            while sent < 64 << 20:
                client.sendall(chunk)
                sent += len(chunk)
        refused = client.recv(4096).decode()
    assert refused.startswith("HTTP/1.1 431") and "headers_too_large" in refused
    assert sent < 64 << 20  # refused before the header was read whole
    assert rss_kb(server.process.pid) - before < 10 * 1024

    with socket.create_connection(("127.0.0.1", server.port)) as client:
        client.settimeout(10)
        client.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        assert client.recv(4096).decode().startswith("HTTP/1.1 408")
    assert httpx.get(f"{server.url}/health").status_code == 200
    for garbage in (b"GARBAGE\r\n\r\n", b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", server.port)) as client:
            client.settimeout(10)
            client.sendall(garbage)
            head, _, body = client.recv(4096).decode().partition("\r\n\r\n")
        assert head.startswith("HTTP/1.1 400") and "content-type: application/json" in head, head
        assert json.loads(body)["error_type"] == "bad_request" and "not valid HTTP (" in json.loads(body)["error"]
    # A body far over the header cap, arriving in the same reads as the headers, is not counted as headers.
    body = json.dumps({"inputs": "Guten Morgen " * 40_000, "truncation": "head"}).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as client:
        client.settimeout(30)
        client.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        assert client.recv(4096).decode().startswith("HTTP/1.1 200")


@pytest.mark.slow
def test_several_workers_share_the_port_and_the_metrics(start, seqcls_bundle):
    server = start(seqcls_bundle, "--workers", "2")
    clf = Classifier(seqcls_bundle)
    responses = asyncio.run(post_all(f"{server.url}/predict", [{"inputs": t} for t in TEXTS[:6]]))
    for text, response in zip(TEXTS, responses):
        assert_close(response.json(), clf.predict(text))
    deadline = time.monotonic() + 30  # the second worker may still be loading: its health check is its first text
    while server.metric("mbert_edge_batch_size_sum") < 2 + 6:
        assert time.monotonic() < deadline, "/metrics does not add up both workers' batches"
        time.sleep(0.2)
    assert server.metric("mbert_edge_batch_size_sum") == 2 + 6
    assert server.metric('mbert_edge_requests_total{route="/predict",status="200"}') == 6
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0


@pytest.mark.slow
def test_serve_needs_the_extra_a_bundle_sane_limits_and_a_free_port(tmp_path, seqcls_bundle):
    blocked = (
        "import sys; sys.modules['uvicorn'] = None; sys.argv = ['mbert-edge', *sys.argv[1:]]; "
        "from mbert_edge.cli import main; main()"
    )
    help_text = subprocess.run(
        [sys.executable, "-c", blocked, "--help"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent,
        timeout=120,
    )
    assert help_text.returncode == 0 and "serve" in help_text.stdout
    missing = subprocess.run(
        [sys.executable, "-c", blocked, "serve", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent,
        timeout=120,
    )
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1, missing.stderr
    assert "pip install 'mbert-edge[serve]'" in missing.stderr and "uvicorn" in missing.stderr

    too_few_tokens = run_cli("serve", str(seqcls_bundle), "--max-batch-tokens", "64")
    assert too_few_tokens.returncode == 1 and too_few_tokens.stderr.count("\n") == 1, too_few_tokens.stderr
    assert "--max-batch-tokens" in too_few_tokens.stderr and "128" in too_few_tokens.stderr

    for empty, named in (
        (run_cli("serve", str(seqcls_bundle), env={"MBERT_EDGE_API_KEY": ""}), "MBERT_EDGE_API_KEY: is set but empty;"),
        (run_cli("serve", str(seqcls_bundle), "--api-key", " "), "--api-key: is empty"),
    ):  # an empty key is refused, not read as no key (click reads an empty variable as unset)
        assert empty.returncode == 2 and named in empty.stderr and "Traceback" not in empty.stderr, empty.stderr

    no_bundle = run_cli("serve", str(tmp_path / "nope"), "--port", "1")
    assert no_bundle.returncode == 1 and no_bundle.stderr.count("\n") == 1, no_bundle.stderr
    assert "nope" in no_bundle.stderr and "Traceback" not in no_bundle.stderr

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port_in_use = run_cli("serve", str(seqcls_bundle), "--port", str(taken.getsockname()[1]))
    assert port_in_use.returncode == 1 and port_in_use.stderr.count("\n") == 1, port_in_use.stderr
    assert "already in use" in port_in_use.stderr and "--port" in port_in_use.stderr


def slow_upper() -> tuple[Callable[[list[str]], list[str]], list[int], list[list[str]]]:
    """A model for the batcher alone: 0.2 s a batch, texts upper-cased; with the most batches that ran at once
    and every batch's texts (sorted)."""
    lock, running, most, batches = threading.Lock(), [0], [0], []

    def run(texts: list[str]) -> list[str]:
        with lock:
            batches.append(sorted(texts))
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        return [text.upper() for text in texts]

    return run, most, batches


@pytest.mark.slow
@pytest.mark.parametrize("concurrent", [1, 2])
def test_the_batcher_runs_up_to_its_concurrent_batches_at_once(concurrent):
    """Batches overlap up to `--concurrent-batches`, and each request still gets exactly its own results."""
    from mbert_edge.serve.batcher import BatchLimits, MicroBatcher
    from mbert_edge.serve.metrics import ServerMetrics

    run, most, _ = slow_upper()

    async def scenario() -> list[list[str]]:
        batcher = MicroBatcher(BatchLimits(max_tokens=512, max_size=2, max_wait=0), ServerMetrics(), concurrent)
        batcher.start()
        try:
            return await asyncio.gather(
                *(batcher.submit("predict", run, [f"a{i}", f"b{i}", f"c{i}"], [4] * 3) for i in range(4))
            )
        finally:
            await batcher.stop()

    assert asyncio.run(scenario()) == [[f"A{i}", f"B{i}", f"C{i}"] for i in range(4)]
    assert most[0] == concurrent


@pytest.mark.slow
def test_a_request_whose_texts_fail_fails_alone():
    """When a batch fails, each of its requests runs again on its own: only the one with the bad text fails."""
    from mbert_edge.serve.batcher import BatchLimits, MicroBatcher
    from mbert_edge.serve.metrics import ServerMetrics

    batches: list[list[str]] = []

    def run(texts: list[str]) -> list[str]:
        batches.append(texts)
        if "bad" in texts:
            raise ValueError("a bad text")
        return [text.upper() for text in texts]

    async def scenario() -> list[object]:
        batcher = MicroBatcher(BatchLimits(max_tokens=512, max_size=8, max_wait=0.5), ServerMetrics())
        batcher.start()
        try:
            requests = [["a", "b"], ["c", "bad"], ["d"]]
            return await asyncio.gather(
                *(batcher.submit("predict", run, texts, [4] * len(texts)) for texts in requests), return_exceptions=True
            )
        finally:
            await batcher.stop()

    first, second, third = asyncio.run(scenario())
    assert first == ["A", "B"] and third == ["D"]
    assert isinstance(second, ValueError) and str(second) == "a bad text"
    assert batches == [["a", "c", "d", "b", "bad"], ["a", "b"], ["c", "bad"], ["d"]]


@pytest.mark.slow
def test_idle_batch_slots_share_the_waiting_texts():
    """With both slots idle, four waiting texts go two to each, run at once, rather than four to one slot."""
    from mbert_edge.serve.batcher import BatchLimits, MicroBatcher
    from mbert_edge.serve.metrics import ServerMetrics

    run, most, batches = slow_upper()

    async def scenario() -> list[list[str]]:
        batcher = MicroBatcher(BatchLimits(max_tokens=512, max_size=32, max_wait=0.1), ServerMetrics(), 2)
        batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit("predict", run, [text], [4]) for text in "abcd"))
        finally:
            await batcher.stop()

    assert asyncio.run(scenario()) == [["A"], ["B"], ["C"], ["D"]]
    assert sorted(batches) == [["a", "b"], ["c", "d"]] and most[0] == 2


@pytest.mark.slow
@pytest.mark.parametrize("bundle_fixture", ["seqcls_bundle", "token_bundle", "encoder_bundle"])
def test_the_published_api_holds_under_fuzzing(start, request, bundle_fixture, tmp_path):
    """schemathesis reads the live server's /openapi.json and sends it generated requests, valid and invalid
    (bounded examples, a fixed seed): no 500, every answer as the document says."""
    st = Path(sys.executable).parent / "st"
    if not st.exists():
        pytest.skip("schemathesis is not installed (the [test] extra brings it)")
    server = start(request.getfixturevalue(bundle_fixture), "--max-input-texts", "8")
    document = httpx.get(f"{server.url}/openapi.json").json()
    assert document["openapi"] == "3.1.0" and "/tokenize" in document["paths"]
    done = subprocess.run(
        [
            str(st),
            "run",
            f"{server.url}/openapi.json",
            "--max-examples",
            "25",
            "--seed",
            "1",
            "--checks",
            "all",
            "--request-timeout",
            "30",
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert "No issues found" in done.stdout


def test_the_api_documents_in_docs_are_the_servers(tmp_path):
    """docs/http-api holds each task's document as a server with default limits publishes it."""
    from mbert_edge.serve.app import ServerSettings
    from mbert_edge.serve.openapi import openapi
    from mbert_edge.tasks import TASKS

    docs = Path(__file__).resolve().parents[1] / "docs" / "http-api"
    for task in TASKS:
        expected = openapi(task, ServerSettings(bundle="").max_input_texts)
        assert json.loads((docs / f"openapi-{task}.json").read_text()) == expected, (
            f"regenerate with: python -m mbert_edge.serve.openapi {docs}"
        )
