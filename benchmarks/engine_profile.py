"""Where the time goes in both engines, summed by kind of work: ONNX Runtime's profiler on our INT8 bundles
beside OpenVINO's per-layer counters (`PERF_COUNT`) on OpenVINO models of the same checkpoint, same lengths.

    python benchmarks/engine_profile.py --bundle BUNDLE [--bundle ...] --openvino IR.xml [--openvino ...] \
        [--lengths 14,32,128] [--batch 1] [--runs 30] [--out FILE.json]

The OpenVINO models are the ones `benchmarks/engines.py` makes (its `--work` folder: `static_int8.xml`,
`int8_weights.xml`, `fp32.xml`). Each model is profiled alone on exact-length inputs (`--batch` copies of one
row, so no padding), at 2 threads, after warm-up; kernel times per call are put into kinds of work by
operator type. OpenVINO fuses element-wise work (quantization included) into the neighbouring layer, so its
"quantization" row holds only what stayed separate. The wall row is timed unprofiled, all models in
alternating rounds.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import click
import numpy as np
import onnxruntime as ort
from op_profile import op_times
from openvino_session import OpenVINOSession

from mbert_edge.bench.measure import exact_length_feed, side_by_side
from mbert_edge.runtime import load
from mbert_edge.runtime.cpus import available_cpus, cpu_flags

KINDS = (
    "GEMMs",
    "attention",
    "quantization (per-row statistics, scales, corrections)",
    "layer norms",
    "everything else",
)
ORT_KINDS = {
    "GEMMs": {
        "MatMulIntegerToFloat",
        "DynamicQuantizeMatMul",
        "MatMulInteger",
        "MatMul",
        "Gemm",
        "FusedMatMul",
        "QGemm",
        "MatMulNBits",
    },
    "attention": {"Attention", "QAttention", "MultiHeadAttention", "Softmax", "Split"},
    "quantization (per-row statistics, scales, corrections)": {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "ReduceMax",
        "ReduceMin",
        "Mul",
        "Add",
        "Sub",
        "Div",
        "Cast",
        "Round",
        "Reshape",
        "Shape",
        "Expand",
        "Max",
        "Min",
        "Abs",
        "BitwiseXor",
        "Concat",
        "Gather",
    },
    "layer norms": {
        "SkipLayerNormalization",
        "LayerNormalization",
        "EmbedLayerNormalization",
        "SkipSimplifiedLayerNormalization",
    },
}
OPENVINO_KINDS = {
    "GEMMs": {"FullyConnected", "FullyConnectedCompressed", "FullyConnectedQuantizedLegacy"},
    # Subgraph: the CPU plugin's generated kernels; on these graphs one per layer is the fused attention core.
    "attention": {"MatMul", "Softmax", "ScaledDotProductAttention", "SDPA", "Transpose", "Subgraph", "Split"},
    "quantization (per-row statistics, scales, corrections)": {
        "FakeQuantize",
        "DynamicQuantize",
        "Convert",
        "Multiply",
        "Subtract",
    },
    "layer norms": {"MVN", "RMS", "Normalize"},
}


def kind_of(op: str, kinds: dict[str, set[str]]) -> str:
    return next((kind for kind, ops in kinds.items() if op in ops), "everything else")


def openvino_times(
    path: Path, feed: dict[str, np.ndarray], runs: int, config: dict[str, Any], warmup: int = 10
) -> tuple[Counter, Counter]:
    """(ms per call by layer type, layers by type) of an OpenVINO model from its per-layer counters."""
    session = OpenVINOSession(path, available_cpus(), "f32", {"PERF_COUNT": True, **config})
    request = session.compiled.create_infer_request()
    times: Counter = Counter()
    layers: Counter = Counter()
    for run in range(warmup + runs):
        request.infer(feed)
        if run >= warmup:
            for info in request.get_profiling_info():
                if info.status == info.Status.EXECUTED:
                    times[info.node_type] += info.real_time.total_seconds() * 1e3 / runs
                    if run == warmup:
                        layers[info.node_type] += 1
    return times, layers


@click.command()
@click.option(
    "--bundle",
    "bundles",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="An INT8 bundle, run in ONNX Runtime (repeatable).",
)
@click.option(
    "--openvino",
    "irs",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An OpenVINO IR .xml of the same checkpoint (repeatable).",
)
@click.option("--lengths", default="14,32,128", show_default=True)
@click.option("--batch", default=1, show_default=True, help="Rows per call (copies of one row: no padding).")
@click.option("--runs", default=30, show_default=True, help="Profiled runs per model and length.")
@click.option(
    "--dynamic-group",
    default=32,
    show_default=True,
    help="OpenVINO's DYNAMIC_QUANTIZATION_GROUP_SIZE (activations of INT8-compressed weights, per token).",
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also write JSON here.")
def main(
    bundles: tuple[Path, ...],
    irs: tuple[Path, ...],
    lengths: str,
    batch: int,
    runs: int,
    dynamic_group: int,
    out: Path | None,
) -> None:
    if not bundles:
        raise click.UsageError("pass at least one --bundle (its tokenizer and inputs define the feed)")
    models = {f"ORT {path.name}": load(path, precision="int8", verify_hashes=False) for path in bundles}
    first = next(iter(models.values()))
    results: dict[str, Any] = {}
    click.echo(f"CPU flags: {' '.join(sorted(cpu_flags()))}; onnxruntime {ort.__version__}; batch {batch}; ms per call")
    for length in (int(n) for n in lengths.split(",")):
        feed = {k: np.repeat(v, batch, axis=0) for k, v in exact_length_feed(first, length).items()}
        profiles: dict[str, tuple[Counter, Counter]] = {}
        raw: dict[str, Counter] = {}
        calls = {}
        for name, model in models.items():
            raw[name], nodes = op_times(model.bundle.file(model.runner.name), feed, runs)
            profiles[name] = _by_kind(raw[name], nodes, ORT_KINDS)
            calls[name] = functools.partial(model.session.run, None, feed)
        config = {"DYNAMIC_QUANTIZATION_GROUP_SIZE": dynamic_group}
        sessions = {f"OpenVINO {ir.stem}": OpenVINOSession(ir, available_cpus(), "f32", config) for ir in irs}
        for ir, (name, session) in zip(irs, sessions.items()):
            raw[name], nodes = openvino_times(ir, feed, runs, config)
            profiles[name] = _by_kind(raw[name], nodes, OPENVINO_KINDS)
            calls[name] = functools.partial(session.run, None, feed)
        wall = side_by_side(calls)
        names = list(profiles)
        click.echo(
            f"\n{length} tokens x {batch}\n\n| kind of work | " + " | ".join(f"{n} ms (nodes)" for n in names) + " |"
        )
        click.echo("|---" * (len(names) + 1) + "|")
        for kind in KINDS:
            click.echo(
                f"| {kind} | "
                + " | ".join(f"{profiles[n][0][kind]:.2f} ({profiles[n][1][kind]})" for n in names)
                + " |"
            )
        click.echo("| **all kernels** | " + " | ".join(f"{sum(profiles[n][0].values()):.2f}" for n in names) + " |")
        click.echo("| wall, unprofiled p50 | " + " | ".join(f"{wall[n]:.2f}" for n in names) + " |")
        for name, kinds in (("ORT", ORT_KINDS), ("OpenVINO", OPENVINO_KINDS)):
            for n in (n for n in names if n.startswith(name)):
                rest = sorted(
                    ((ms, op) for op, ms in raw[n].items() if kind_of(op, kinds) == "everything else"), reverse=True
                )
                click.echo(f"- {n}, everything else: " + ", ".join(f"{op} {ms:.2f}" for ms, op in rest[:4]))
        results[str(length)] = {
            n: {
                "ms": dict(profiles[n][0]),
                "nodes": dict(profiles[n][1]),
                "wall_ms": wall[n],
                "by_operator_ms": dict(raw[n]),
            }
            for n in names
        }
    if out is not None:
        out.write_text(
            json.dumps({"cpu_flags": sorted(cpu_flags()), "batch": batch, "results": results}, indent=2) + "\n"
        )


def _by_kind(times: Counter, nodes: Counter, kinds: dict[str, set[str]]) -> tuple[Counter, Counter]:
    summed: Counter = Counter()
    counted: Counter = Counter()
    for op, ms in times.items():
        summed[kind_of(op, kinds)] += ms
    for op, count in nodes.items():
        counted[kind_of(op, kinds)] += count
    return summed, counted


if __name__ == "__main__":
    main()
