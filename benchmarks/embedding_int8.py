"""What INT8 costs on the word-embedding table: per-tensor (ONNX Runtime's dynamic quantization) against
per-row scales (the faithful method's int8 Gather + per-row scale), as table error and as agreement.

    python benchmarks/embedding_int8.py BUNDLE WORKDIR --data VAL

BUNDLE: a fused FP32 bundle. Agreement is measured for plain dynamic per-channel INT8 with the embedding
table per tensor, kept FP32, or per row (everything else the same), against the FP32 model on `--data`.
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import onnx
from onnx import numpy_helper

from mbert_edge.bundle import Bundle
from mbert_edge.quantization import QuantizationConfig
from mbert_edge.quantize.dynamic import QUANTIZED_OPS, quantize_dynamic_int8
from mbert_edge.quantize.presets import resolve_preset
from mbert_edge.runtime import Runner
from mbert_edge.runtime.accuracy import compare
from mbert_edge.textdata import load_textset


def word_table(model: onnx.ModelProto) -> np.ndarray:
    """The word-embedding table: input 2 of the fused EmbedLayerNormalization."""
    node = next(n for n in model.graph.node if n.op_type == "EmbedLayerNormalization")
    return numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == node.input[2]))


def relative_row_error(table: np.ndarray, restored: np.ndarray) -> np.ndarray:
    return np.linalg.norm(restored - table, axis=1) / np.maximum(np.linalg.norm(table, axis=1), 1e-12)


def per_tensor_uint8(table: np.ndarray) -> np.ndarray:
    """One asymmetric uint8 scale for the whole table, as ONNX Runtime stores it."""
    low, high = min(table.min(), 0.0), max(table.max(), 0.0)
    scale = (high - low) / 255
    zero = np.round(-low / scale)
    return (np.clip(np.round(table / scale) + zero, 0, 255) - zero) * scale


def per_row_int8(table: np.ndarray) -> np.ndarray:
    """One symmetric int8 scale per row (per token)."""
    scale = np.maximum(np.abs(table).max(axis=1, keepdims=True), 1e-12) / 127
    return np.clip(np.round(table / scale), -127, 127) * scale


@click.command()
@click.argument("bundle", type=click.Path(exists=True, path_type=Path))
@click.argument("workdir", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(exists=True, path_type=Path), required=True)
def main(bundle: Path, workdir: Path, data: Path) -> None:
    opened = Bundle.open(bundle)
    fp32 = opened.file("model.onnx")
    table = word_table(onnx.load(str(fp32)))
    click.echo(f"table {table.shape[0]} x {table.shape[1]}; relative row error |q(x) - x| / |x|:")
    click.echo("| scales | mean | p99 | max |\n|---|---|---|---|")
    for name, restored in (("per tensor (uint8)", per_tensor_uint8(table)), ("per row (int8)", per_row_int8(table))):
        error = relative_row_error(table, restored)
        click.echo(f"| {name} | {error.mean():.4f} | {np.percentile(error, 99):.4f} | {error.max():.4f} |")
    workdir.mkdir(parents=True, exist_ok=True)
    preset, _ = resolve_preset("auto")
    reference = Runner.open(opened, "fp32")
    texts = load_textset(data)
    click.echo(
        "\nplain dynamic per-channel INT8 vs FP32:\n| embedding table | agreement | worst group | accuracy |\n|---|---|---|---|"
    )
    for name, ops, table in (
        ("int8, per tensor", QUANTIZED_OPS, "per-tensor"),
        ("fp32", ["MatMul", "Attention"], "per-tensor"),
        ("int8, per row", QUANTIZED_OPS, "per-row"),
    ):
        target = workdir / f"model.{name.replace(', ', '-')}.onnx"
        quantize_dynamic_int8(
            fp32, target, QuantizationConfig.of("dynamic", preset=preset, embedding_table=table), op_types=ops
        )
        report = compare(opened.task, reference, reference.with_graph(target, target.name), texts)["overall"]
        click.echo(
            f"| {name} | {report['agreement']:.4f} | {report['worst_group']} {report['worst_agreement']:.4f} | "
            f"{report.get('accuracy_reference', float('nan')):.4f} -> {report.get('accuracy_candidate', float('nan')):.4f} |"
        )


if __name__ == "__main__":
    main()
