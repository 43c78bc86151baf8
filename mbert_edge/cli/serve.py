"""`mbert-edge serve`: the click command. Starlette, uvicorn and prometheus-client are imported only when
it runs, so the other commands work without the [serve] extra."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import signal
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .common import PRECISION, NonEmptyPath

if TYPE_CHECKING:
    from ..runtime import TaskModel


@click.command()
@click.argument("bundle", type=NonEmptyPath(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="Port to listen on.")
@PRECISION
@click.option(
    "--max-batch-tokens",
    type=click.IntRange(1),
    default=512,
    show_default=True,
    help="A batch holds at most this many tokens (each text's windows at their bucket lengths), and "
    "each model run within it at most this many padded tokens. At least the bundle's max length.",
)
@click.option(
    "--max-batch-size",
    type=click.IntRange(1),
    default=32,
    show_default=True,
    help="A batch holds at most this many texts.",
)
@click.option(
    "--max-wait-ms",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="A batch that is not full waits until its oldest text has waited this long. 0: it starts as "
    "soon as the model is free (texts arriving meanwhile form the next batch).",
)
@click.option(
    "--concurrent-batches",
    type=click.IntRange(1),
    default=2,
    show_default=True,
    help="Batches run at once, sharing the model and its threads: while one batch's threads wait for "
    "each other, another keeps the cores busy. 1: one batch at a time.",
)
@click.option(
    "--max-concurrent-requests",
    type=click.IntRange(1),
    default=512,
    show_default=True,
    help="Above this many requests in flight, answer 429 at once.",
)
@click.option(
    "--max-input-texts",
    type=click.IntRange(1),
    default=256,
    show_default=True,
    help="Most texts in one request (more: 422).",
)
@click.option(
    "--max-input-tokens",
    type=click.IntRange(1),
    default=131_072,
    show_default=True,
    help="Most tokens in one request, counted as the model runs them (each text's windows at their "
    "bucket lengths; more: 422). The default takes 256 texts of 512 tokens.",
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(1),
    default=2_000_000,
    show_default=True,
    help="Largest request body (larger: 413).",
)
@click.option(
    "--workers",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Server processes, each with its own model and batcher, sharing the port.",
)
@click.option(
    "--intra-op-threads",
    type=click.IntRange(1),
    default=None,
    help="ONNX Runtime threads of each worker's session (default: the bundle's `bench --save` figure, "
    "else the usable cores). With --workers N, keep N x threads within the cores.",
)
@click.option(
    "--api-key",
    envvar="MBERT_EDGE_API_KEY",
    default=None,
    help="Require 'Authorization: Bearer KEY' on every route but /health (401 otherwise); also read from "
    "MBERT_EDGE_API_KEY. TLS is the job of a proxy in front.",
)
@click.option("--public-metrics", is_flag=True, help="With --api-key: let /metrics answer without the key too.")
@click.option(
    "--request-timeout",
    type=click.FloatRange(0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds a request's headers, and then its body, may take to arrive (408 after). The model's own "
    "time is not counted; a request holds a concurrency slot only once its body is read.",
)
@click.option(
    "--keep-alive-timeout",
    type=click.FloatRange(0, min_open=True),
    default=5.0,
    show_default=True,
    help="Seconds an idle keep-alive connection stays open.",
)
@click.option(
    "--max-header-bytes",
    type=click.IntRange(1024),
    default=64 * 1024,
    show_default=True,
    help="Largest request line plus headers (larger: 431 and the connection closes).",
)
@click.option(
    "--graceful-timeout",
    type=click.FloatRange(0, min_open=True),
    default=30.0,
    show_default=True,
    help="On SIGTERM, seconds to finish the requests in flight before the server stops anyway.",
)
def serve(
    bundle: Path,
    host: str,
    port: int,
    precision: str,
    max_batch_tokens: int,
    max_batch_size: int,
    max_wait_ms: float,
    concurrent_batches: int,
    max_concurrent_requests: int,
    max_input_texts: int,
    max_input_tokens: int,
    max_body_bytes: int,
    workers: int,
    intra_op_threads: int | None,
    api_key: str | None,
    public_metrics: bool,
    request_timeout: float,
    keep_alive_timeout: float,
    max_header_bytes: int,
    graceful_timeout: float,
) -> None:
    """Serve BUNDLE over HTTP: /predict, /ner, /embed, /v1/embeddings, /tokenize, /info, /health, /metrics,
    with requests micro-batched together."""
    try:
        import uvicorn

        from ..serve.app import SETTINGS_VARIABLE, ServerSettings, create_app
        from ..serve.protocol import GuardedHttpToolsProtocol
    except ImportError as exc:
        raise click.ClickException(
            f"serving needs the [serve] extra ({exc.name} is missing): pip install 'mbert-edge[serve]'"
        ) from exc

    if api_key is not None and not api_key.strip():
        raise click.BadParameter(
            "is empty; pass a key, or leave the option out to serve without one", param_hint="--api-key"
        )
    settings = ServerSettings(
        bundle=str(bundle),
        precision=precision,
        max_batch_tokens=max_batch_tokens,
        max_batch_size=max_batch_size,
        max_wait_ms=max_wait_ms,
        max_concurrent_requests=max_concurrent_requests,
        max_input_texts=max_input_texts,
        max_input_tokens=max_input_tokens,
        max_body_bytes=max_body_bytes,
        concurrent_batches=concurrent_batches,
        intra_op_threads=intra_op_threads,
        api_key=api_key,
        public_metrics=public_metrics,
        request_timeout=request_timeout,
        max_header_bytes=max_header_bytes,
        graceful_timeout=graceful_timeout,
    )
    try:
        model = settings.load()  # a bad bundle or option fails here, as one line, before the port is taken
    except ValueError as exc:  # the runtime's check of max_batch_tokens against the max length
        raise click.ClickException(f"--max-batch-tokens: {exc}") from exc
    address = _check_address(host, port)
    click.echo(startup_line(host, port, bundle, model))
    warning = exposure_warning(address, api_key)
    if warning:
        click.echo(f"Warning: {warning}", err=True)
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again for the previous handler:
    # with this one, that ends the process with exit code 0.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    served: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "warning",
        "lifespan": "on",
        "http": GuardedHttpToolsProtocol,
        "timeout_keep_alive": keep_alive_timeout,
        "timeout_graceful_shutdown": graceful_timeout,
    }
    if workers == 1:
        GuardedHttpToolsProtocol.limit(max_header_bytes, request_timeout)
        uvicorn.run(create_app(model, settings), **served)
        return
    del model  # each worker loads its own
    os.environ[SETTINGS_VARIABLE] = json.dumps(dataclasses.asdict(settings))
    with tempfile.TemporaryDirectory(prefix="mbert-edge-metrics-") as shared:
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", shared)  # /metrics adds up every worker's figures
        uvicorn.run("mbert_edge.serve.app:app_from_environment", factory=True, workers=workers, **served)


def startup_line(host: str, port: int, bundle: Path, model: TaskModel) -> str:
    """What the server says once, before it listens: where, which model, how it runs."""
    quantization = model.bundle.manifest.quantization
    method = f", {quantization.config.method} INT8" if model.precision == "int8" and quantization else ""
    shown = f"[{host}]" if ":" in host else host
    return (
        f"mbert-edge serve: http://{shown}:{port} {bundle.resolve().name} "
        f"({model.task}, precision {model.precision}{method})"
    )


def exposure_warning(address: str, api_key: str | None) -> str | None:
    """A warning when the server listens beyond this machine with no API key, else None."""
    if api_key is not None or ipaddress.ip_address(address).is_loopback:
        return None
    return (
        f"listening on {address}, reachable from other machines, with no --api-key: anyone who can reach "
        "it can run the model; pass --api-key (or MBERT_EDGE_API_KEY), or --host 127.0.0.1"
    )


def _check_address(host: str, port: int) -> str:
    """The IP address host:port resolves to, after checking the server could listen there: fails as one line
    otherwise (uvicorn would log its own error and exit 3)."""
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind(address)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port or --host"
        ) from exc
    return str(address[0])
