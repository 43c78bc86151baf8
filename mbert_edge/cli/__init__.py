"""The `mbert-edge` command. Inference commands (`predict`, `info`, `verify`, `bench`) need only the runtime;
tooling commands (`export`, `quantize`, `trim`, `demo`) import the export and quantize packages when they
run, so the slim install answers them with one line naming the extra to install."""

from __future__ import annotations

import os
import signal
import sys
import warnings
from typing import Any

import click

from ..errors import MbertEdgeError
from .batch import batch
from .inference import bench, info, predict, rank, verify
from .serve import serve
from .tooling import demo, export, quantize, trim


class Group(click.Group):
    """Turns every failure into one line on stderr and exit code 1 (MBERT_EDGE_DEBUG=1 shows tracebacks)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, BrokenPipeError):
            raise
        except MbertEdgeError as exc:
            raise click.ClickException(str(exc)) from exc
        except Exception as exc:
            if os.environ.get("MBERT_EDGE_DEBUG"):
                raise
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise click.ClickException(
                f"unexpected {type(exc).__name__}: {message} (set MBERT_EDGE_DEBUG=1 for the traceback)"
            ) from exc


@click.group(cls=Group)
@click.version_option(package_name="mbert-edge")
def cli() -> None:
    """Run multilingual BERT fast on CPUs: export, quantize, verify, bench, predict."""


for command in (export, predict, rank, info, quantize, verify, trim, bench, demo, serve, batch):
    cli.add_command(command)


def _warning_line(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """A warning as one line on stderr, like the errors (not Python's file:line and source line)."""
    click.echo(
        f"Warning: {str(message).strip().splitlines()[0] if str(message).strip() else category.__name__}", err=True
    )


def _terminated(signum: int, frame: Any) -> None:
    """SIGTERM unwinds like Ctrl-C (Python's default would end the process at once): the commands' cleanup
    runs, so no staging folder or partial model is left behind."""
    click.echo("Error: stopped by SIGTERM", err=True)
    raise SystemExit(128 + signum)


def main() -> None:
    if not os.environ.get("MBERT_EDGE_DEBUG"):
        warnings.showwarning = _warning_line
    signal.signal(signal.SIGTERM, _terminated)  # `serve` sets its own: graceful shutdown
    try:
        cli(prog_name="mbert-edge")
    except BrokenPipeError:  # output piped into `head` and the like: not an error worth a traceback
        sys.stderr.close()
        sys.exit(1)
