"""Where faithful INT8's extra latency lives: a faithful bundle's graph with its per-row quantization swapped for
ONNX Runtime's per-tensor `DynamicQuantizeLinear` (the outlier masks, centre and outlier corrections dropped), so the only
difference left from plain dynamic INT8 is the graph's structure: `MatMulIntegerToFloat` for every weight
MatMul and the attention core as `Split` + `MultiHeadAttention`, where plain has `DynamicQuantizeMatMul` and
`QAttention`. Wrong outputs, right work: a timing probe, never a model to use.

    python benchmarks/faithful_variants.py FAITHFUL_BUNDLE OUT_BUNDLE [--probe per-tensor|per-row|row-floor]

`per-row` keeps the per-row quantization and drops only the corrections: between the two probes and the
faithful graph, the per-row quantization's cost and the corrections' cost are told apart. `row-floor` is about
the least any per-row scheme must do with stock operators: per MatMul one `ReduceMax`, one `Mul`, a
`QuantizeLinear` making the zero point and the blocked `QuantizeLinear`; no outlier mask, no centre.

Then time OUT_BUNDLE beside the plain and faithful bundles with `latency.py` or `op_profile.py`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import click
import numpy as np
import onnx
from onnx import helper, numpy_helper

from mbert_edge.bundle import Bundle
from mbert_edge.export.storage import save_model


def row_floor_nodes(graph: onnx.GraphProto, x: str, matmul: onnx.NodeProto) -> list[onnx.NodeProto]:
    """ReduceMax -> Mul -> blocked QuantizeLinear of `x` into `matmul`'s A and A scale (wrong values, the
    cheapest per-row work). Blocked QuantizeLinear wants a zero point shaped like the scale, not broadcast: the
    cheapest is one QuantizeLinear of the scale by a tiny scale (all 255)."""
    columns = next(numpy_helper.to_array(i).shape[0] for i in graph.initializer if i.name == matmul.input[1])
    p = matmul.name
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([-1], np.int64), f"{p}.floor_axis"),
            numpy_helper.from_array(np.array(1 / 127, np.float32), f"{p}.floor_inv127"),
        ]
    )
    matmul.input[0], matmul.input[2] = f"{p}.floor_q", f"{p}.floor_scale"
    return [
        helper.make_node("ReduceMax", [x, f"{p}.floor_axis"], [f"{p}.floor_max"], keepdims=1),
        helper.make_node("Mul", [f"{p}.floor_max", f"{p}.floor_inv127"], [f"{p}.floor_scale"]),
        helper.make_node("QuantizeLinear", [f"{p}.floor_scale", "floor.tiny", "floor.u8"], [f"{p}.floor_zero"]),
        helper.make_node(
            "QuantizeLinear", [x, f"{p}.floor_scale", f"{p}.floor_zero"], [f"{p}.floor_q"], axis=-1, block_size=columns
        ),
    ]


def probe(model: onnx.ModelProto, mode: str) -> onnx.ModelProto:
    """The faithful graph without its corrections (centres and outlier channels added back); for `per-tensor`
    each `MatMulIntegerToFloat` fed by `DynamicQuantizeLinear` of its unmasked activation instead of the
    per-row quantization, for `row-floor` by `row_floor_nodes`; the nodes nothing needs any more are removed."""
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    if mode == "row-floor":
        graph.initializer.extend(
            [
                numpy_helper.from_array(np.array(1e-30, np.float32), "floor.tiny"),
                numpy_helper.from_array(np.array(0, np.uint8), "floor.u8"),
            ]
        )
    nodes = []  # the graph's order, each quantization just before its MatMul (its input comes earlier)
    for node in graph.node:
        if node.op_type == "MatMulIntegerToFloat":
            (after,) = consumers[node.output[0]]
            if after.op_type == "Add" and producer[after.input[1]].name.endswith(".shift_back"):
                after.op_type = "Identity"  # the corrections' Add; ONNX Runtime removes Identity nodes
                del after.input[1:]
            if mode != "per-row":
                x = producer[node.input[0]].input[0]  # the QuantizeLinear's activation, before its outlier mask
                if x in producer and producer[x].name.endswith(".xs"):
                    x = producer[x].input[0]
                if mode == "row-floor":
                    nodes.extend(row_floor_nodes(graph, x, node))
                else:
                    q, scale, zero = (f"{node.name}.dql_{s}" for s in ("q", "scale", "zero"))
                    nodes.append(
                        helper.make_node("DynamicQuantizeLinear", [x], [q, scale, zero], name=f"{node.name}.dql")
                    )
                    node.input[0], node.input[2], node.input[4] = q, scale, zero
        nodes.append(node)
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(nodes):  # drop the nodes nothing needs any more
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    used = {i for n in graph.node for i in n.input}
    kept_inits = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)
    return model


@click.command()
@click.argument("faithful", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option(
    "--probe",
    "mode",
    type=click.Choice(["per-tensor", "per-row", "row-floor"]),
    default="per-tensor",
    show_default=True,
    help="per-row: drop only the corrections; per-tensor: also swap the per-row "
    "quantization for DynamicQuantizeLinear; row-floor: for the cheapest per-row quantization.",
)
def main(faithful: Path, out: Path, mode: str) -> None:
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(faithful, out)
    bundle = Bundle.open(out)
    path = out / bundle.models["int8"]
    graph = probe(onnx.load(str(path)), mode)
    bundle.record_files(save_model(graph, path))
    bundle.save()
    click.echo(f"{out}: {len(graph.graph.node)} nodes")


if __name__ == "__main__":
    main()
