"""Batch-1 latency of bundle models at exact sequence lengths (the graph alone, no tokenisation).

    python benchmarks/latency.py BUNDLE [BUNDLE ...] [--lengths 32,128] [--runs 50]

Prints one row per (bundle, precision): median and p90 in ms, with the runtime's own session settings
(the same timing as `mbert-edge bench`, for several bundles in one table).
"""
from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from mbert_edge.benchmark import exact_length_feed, time_calls
from mbert_edge.bundle import model_bytes
from mbert_edge.session import BundleModel


def time_model(model: BundleModel, length: int, runs: int, warmup: int = 5) -> list[float]:
    """Seconds per run for one input of exactly `length` tokens (the graph alone)."""
    feed = exact_length_feed(model, length)
    return time_calls(lambda: model.session.run(None, feed), runs, 0.0, warmup).tolist()


@click.command()
@click.argument("bundles", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--lengths", default="32,128", show_default=True)
@click.option("--runs", default=50, show_default=True)
def main(bundles: tuple[Path, ...], lengths: str, runs: int) -> None:
    sizes = [int(x) for x in lengths.split(",")]
    click.echo("| bundle | precision | size MB | " + " | ".join(f"s{n} p50 ms | s{n} p90 ms" for n in sizes) + " |")
    click.echo("|---" * (3 + 2 * len(sizes)) + "|")
    for path in bundles:
        for precision in BundleModel(path, "fp32").bundle.models:
            model = BundleModel(path, precision)
            cells = []
            for n in sizes:
                times = np.asarray(time_model(model, n, runs)) * 1e3
                cells += [f"{np.median(times):.1f}", f"{np.percentile(times, 90):.1f}"]
            size = model_bytes(model.model_path) / 1e6
            click.echo(f"| {path.name} | {precision} | {size:.0f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
