"""Batch-1 latency of bundle models at exact sequence lengths (the graph alone, no tokenisation), side by side.

    python benchmarks/latency.py BUNDLE [BUNDLE ...] [--lengths 32,128] [--rounds 5] [--precision int8] [--json FILE]

Every (bundle, precision) session is loaded in this process with the runtime's own settings and timed in
alternating rounds (`mbert_edge.bench.measure.side_by_side`: p50 ms, the median of the round medians), since this
machine drifts more between runs minutes apart than the models differ. Each row also gives its ratio to the
first row.
"""

from __future__ import annotations

import functools
from pathlib import Path

import click
from json_output import JSON_OPTION, write_json

from mbert_edge.bench.measure import exact_length_feed, side_by_side
from mbert_edge.bundle import Bundle, model_bytes
from mbert_edge.runtime import load


@click.command()
@click.argument("bundles", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--lengths", default="32,128", show_default=True)
@click.option("--rounds", default=5, show_default=True, help="Alternating rounds of 15 timed runs per model.")
@click.option("--precision", type=click.Choice(["all", "fp32", "int8"]), default="all", show_default=True)
@JSON_OPTION
def main(bundles: tuple[Path, ...], lengths: str, rounds: int, precision: str, json_file: Path | None) -> None:
    sizes = [int(x) for x in lengths.split(",")]
    models = {
        f"{path.name} {p}": load(path, precision=p)
        for path in bundles
        for p in Bundle.open(path).models
        if precision in ("all", p)
    }
    timed = {
        n: side_by_side(
            {name: functools.partial(m.session.run, None, exact_length_feed(m, n)) for name, m in models.items()},
            rounds,
        )
        for n in sizes
    }
    first = next(iter(models))
    click.echo("| model | size MB | " + " | ".join(f"s{n} p50 ms (vs first)" for n in sizes) + " |")
    click.echo("|---" * (2 + len(sizes)) + "|")
    for name, model in models.items():
        cells = [f"{timed[n][name]:.1f} ({timed[n][name] / timed[n][first]:.2f}x)" for n in sizes]
        click.echo(
            f"| {name} | {model_bytes(model.bundle.file(model.runner.name)) / 1e6:.0f} | " + " | ".join(cells) + " |"
        )
    write_json(json_file, {"p50_ms": {str(n): timed[n] for n in sizes}})


if __name__ == "__main__":
    main()
