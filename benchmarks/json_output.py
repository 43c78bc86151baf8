"""The `--json FILE` option the benchmark scripts share: their figures as JSON, which is what the tests read
(never the Markdown tables, which are for people; `echo_table` prints the two-column ones)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

JSON_OPTION = click.option(
    "--json",
    "json_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the figures here as JSON.",
)


def write_json(path: Path | None, figures: dict[str, Any]) -> None:
    """Write `figures` to `path` when the option was given."""
    if path is not None:
        path.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


def echo_table(name: str, value: str, rows: dict[str, float], number: str = ".1f") -> None:
    """A two-column Markdown table of `rows` (a name and its figure, formatted by `number`)."""
    click.echo(f"| {name} | {value} |\n|---|---|")
    for key, figure in rows.items():
        click.echo(f"| {key} | {figure:{number}} |")
