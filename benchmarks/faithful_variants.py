"""Where faithful INT8's extra latency lives: a faithful bundle's graph with its per-row quantization swapped for
ONNX Runtime's per-tensor `DynamicQuantizeLinear` (the outlier masks, centre and outlier corrections dropped), so the only
difference left from plain dynamic INT8 is the graph's structure: `MatMulIntegerToFloat` for every weight
MatMul and the attention core as `Split` + `MultiHeadAttention`, where plain has `DynamicQuantizeMatMul` and
`QAttention`. Wrong outputs, right work: a timing probe, never a model to use.

    python benchmarks/faithful_variants.py FAITHFUL_BUNDLE OUT_BUNDLE [--per-row]

`--per-row` keeps the per-row quantization and drops only the corrections: between the two probes and the
faithful graph, the per-row quantization's cost and the corrections' cost are told apart.

Then time OUT_BUNDLE beside the plain and faithful bundles with `latency.py` or `op_profile.py`.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import click
import onnx
from onnx import helper

from mbert_edge.bundle import Bundle
from mbert_edge.export.storage import save_model


def probe(model: onnx.ModelProto, per_tensor: bool) -> onnx.ModelProto:
    """The faithful graph without its corrections (centres and outlier channels added back), and with
    `per_tensor` each `MatMulIntegerToFloat` fed by `DynamicQuantizeLinear` of its unmasked activation instead
    of the per-row quantization; the nodes nothing needs any more are removed."""
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    nodes = []  # the graph's order, each DynamicQuantizeLinear just before its MatMul (its input comes earlier)
    for node in graph.node:
        if node.op_type == "MatMulIntegerToFloat":
            (after,) = consumers[node.output[0]]
            if after.op_type == "Add" and producer[after.input[1]].name.endswith(".shift_back"):
                after.op_type = "Identity"  # the corrections' Add; ONNX Runtime removes Identity nodes
                del after.input[1:]
            if per_tensor:
                x = producer[node.input[0]].input[0]  # the QuantizeLinear's activation, before its outlier mask
                if x in producer and producer[x].name.endswith(".xs"):
                    x = producer[x].input[0]
                q, scale, zero = (f"{node.name}.dql_{s}" for s in ("q", "scale", "zero"))
                nodes.append(helper.make_node("DynamicQuantizeLinear", [x], [q, scale, zero], name=f"{node.name}.dql"))
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
@click.option("--per-row/--per-tensor", default=False, show_default=True,
              help="Keep the per-row quantization (drop only the corrections), or swap it for per-tensor too.")
def main(faithful: Path, out: Path, per_row: bool) -> None:
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(faithful, out)
    bundle = Bundle.open(out)
    path = out / bundle.models["int8"]
    graph = probe(onnx.load(str(path)), per_tensor=not per_row)
    bundle.record_files(save_model(graph, path))
    bundle.save()
    click.echo(f"{out}: {len(graph.graph.node)} nodes")


if __name__ == "__main__":
    main()
