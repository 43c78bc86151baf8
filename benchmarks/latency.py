"""Batch-1 latency of bundle models at exact sequence lengths (the graph alone, no tokenisation).

    python benchmarks/latency.py BUNDLE [BUNDLE ...] [--lengths 32,128] [--runs 50]

Prints one row per (bundle, precision): median and p90 in ms. A quick yardstick until `mbert-edge bench`
exists; it uses the runtime's own session settings.
"""
from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np

from mbert_edge.session import BundleModel


def time_model(model: BundleModel, length: int, runs: int, warmup: int = 5) -> list[float]:
    """Seconds per run for one input of exactly `length` tokens."""
    ids = np.full((1, length), 1000 % model.bundle.manifest["vocab_size"], dtype=np.int64)
    feed = {name: (ids if name == "input_ids" else np.ones_like(ids) if name == "attention_mask"
                   else np.zeros_like(ids)) for name in model.input_names}
    for _ in range(warmup):
        model.session.run(None, feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model.session.run(None, feed)
        times.append(time.perf_counter() - start)
    return times


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
            size = model.model_path.stat().st_size / 1e6
            click.echo(f"| {path.name} | {precision} | {size:.0f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
