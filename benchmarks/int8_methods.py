"""Compare the INT8 methods on one bundle: agreement with FP32 (overall and worst group), task accuracy,
batch-1 latency at 32 and 128 tokens, and file size.

    python benchmarks/int8_methods.py BUNDLE WORKDIR [--data VAL] [--calibration TEXT] [--methods ...]

Each method quantizes a copy of BUNDLE in WORKDIR with `quantize_bundle` (the code behind
`mbert-edge quantize`), so every row can be reproduced with `mbert-edge quantize --method ...`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import click
import numpy as np

from mbert_edge.bench.measure import graph_seconds
from mbert_edge.bundle import model_bytes
from mbert_edge.quantization import QuantizationConfig
from mbert_edge.quantize.pipeline import quantize_bundle
from mbert_edge.runtime import TaskModel, load

PER_TOKEN = {"method": "faithful", "smoothing": None, "weight_rounding": "nearest", "outlier_channels": 0}
METHODS = {
    "plain per-tensor": {"method": "dynamic", "per_channel": False},
    "per-channel": {"method": "dynamic", "per_channel": True},
    "per-token": PER_TOKEN,
    "+ GPTQ": {**PER_TOKEN, "weight_rounding": "gptq"},
    "+ outlier channels": {**PER_TOKEN, "weight_rounding": "gptq", "outlier_channels": 4},
    "+ smoothing": {**PER_TOKEN, "weight_rounding": "gptq", "outlier_channels": 4, "smoothing": 0.5},
    "+ fallback": {**PER_TOKEN, "weight_rounding": "gptq", "outlier_channels": 4, "fallback_target": 0.998},
}


@click.command()
@click.argument("bundle", type=click.Path(exists=True, path_type=Path))
@click.argument("workdir", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(exists=True, path_type=Path), default=None)
@click.option("--calibration", type=click.Path(exists=True, path_type=Path), default=None)
@click.option("--methods", default=",".join(METHODS), show_default=True)
@click.option("--runs", default=30, show_default=True, help="Latency repetitions per length.")
@click.option(
    "--weight-format",
    type=click.Choice(["s8", "s7", "u8", "p8"]),
    default=None,
    help="Faithful rows' weight format (default: the preset's).",
)
def main(
    bundle: Path,
    workdir: Path,
    data: Path | None,
    calibration: Path | None,
    methods: str,
    runs: int,
    weight_format: str | None,
) -> None:
    def figures(model: TaskModel) -> tuple[str, str, float]:
        """s32 and s128 p50 ms, and the model's size in MB."""
        s32, s128 = (np.median(graph_seconds(model, n, runs, warmup=5)) * 1e3 for n in (32, 128))
        return f"{s32:.1f}", f"{s128:.1f}", model_bytes(model.bundle.file(model.runner.name)) / 1e6

    rows = [("fp32 (fused)", "", "", "", *figures(load(bundle, precision="fp32")))]
    for name in methods.split(","):
        target = workdir / name.replace(" ", "_").replace("+", "plus")
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(bundle, target)
        faithful = (
            {"weight_format": weight_format, "calibration": calibration and str(calibration)}
            if METHODS[name]["method"] == "faithful"
            else {}
        )
        config = QuantizationConfig.of(
            data=data and str(data),
            min_agreement=0.0,
            min_cosine=-1.0,
            **METHODS[name],
            **faithful,
        )
        overall = quantize_bundle(target, config)["overall"]
        accuracy = (
            f"{overall['accuracy_reference']:.4f} → {overall['accuracy_candidate']:.4f}"
            if "accuracy_candidate" in overall
            else ""
        )
        rows.append(
            (
                name,
                f"{overall['agreement']:.4f}",
                f"{overall['worst_group']} {overall['worst_agreement']:.4f}",
                accuracy,
                *figures(load(target, precision="int8")),
            )
        )
    click.echo("| method | agreement | worst group | accuracy fp32 → int8 | s32 ms | s128 ms | size MB |")
    click.echo("|---|---|---|---|---|---|---|")
    for row in rows:
        click.echo("| " + " | ".join(str(c) for c in row[:-1]) + f" | {row[-1]:.1f} |")


if __name__ == "__main__":
    main()
