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

from ..serve.settings import ServerSettings
from .common import PRECISION, NonEmptyPath, settings_options

if TYPE_CHECKING:
    from ..runtime import TaskModel


@click.command()
@click.argument("bundle", type=NonEmptyPath(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="Port to listen on.")
@PRECISION
@click.option(
    "--workers",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Server processes, each with its own model and batcher, sharing the port.",
)
@click.option(
    "--keep-alive-timeout",
    type=click.FloatRange(0, min_open=True),
    default=5.0,
    show_default=True,
    help="Seconds an idle keep-alive connection stays open.",
)
@settings_options(ServerSettings)
def serve(bundle: Path, host: str, port: int, workers: int, keep_alive_timeout: float, **options: Any) -> None:
    """Serve BUNDLE over HTTP: /predict and the task's own routes (/ner, /embed, /v1/embeddings, /rerank,
    /zero-shot, /fill-mask, /answer), /tokenize, /info, /health, /metrics, /openapi.json, with requests
    micro-batched together."""
    try:
        import uvicorn

        from ..serve.app import SETTINGS_VARIABLE, create_app
        from ..serve.protocol import GuardedHttpToolsProtocol
    except ImportError as exc:
        raise click.ClickException(
            f"serving needs the [serve] extra ({exc.name} is missing): pip install 'mbert-edge[serve]'"
        ) from exc

    settings = ServerSettings(bundle=str(bundle), **options)
    for setting in dataclasses.fields(ServerSettings):  # click reads an empty variable as unset: refuse it
        variable = setting.metadata.get("envvar")
        if variable and os.environ.get(variable) == "" and getattr(settings, setting.name) is None:
            raise click.BadParameter("is set but empty; give it a value, or unset it", param_hint=variable)
    if settings.api_key is not None and not settings.api_key.strip():
        raise click.BadParameter(
            "is empty; pass a key, or leave the option out to serve without one", param_hint="--api-key"
        )
    try:
        model = settings.load()  # a bad bundle or option fails here, as one line, before the port is taken
    except ValueError as exc:  # the runtime's check of max_batch_tokens against the max length
        raise click.ClickException(f"--max-batch-tokens: {exc}") from exc
    address = _check_address(host, port)
    click.echo(startup_line(host, port, bundle, model))
    warning = exposure_warning(address, settings.api_key)
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
        "timeout_graceful_shutdown": settings.graceful_timeout,
    }
    if workers == 1:
        GuardedHttpToolsProtocol.limit(settings.max_header_bytes, settings.request_timeout)
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
