"""ONNX Runtime's fused `SkipLayerNormalization` against the same arithmetic as stock operators, timed alone: can
the layer norms, several times OpenVINO's in `engine_profile.py`, be bought back without a kernel of our own?

    python benchmarks/layer_norm_forms.py [--hidden 768] [--shapes 1x14,1x128,32x16] [--rounds 5] [--threads 2]

One-node graphs over [batch, tokens, hidden] inputs: `SkipLayerNormalization` (what fused graphs hold) and `Add`,
`ReduceMean`, `Sub`, `Mul`, `ReduceMean`, `Add`, `Sqrt`, `Reciprocal`, `Mul`, `Mul`, `Add`, loaded at the basic
optimisation level so that ONNX Runtime does not fuse them back. p50 ms in alternating rounds (`side_by_side`),
and the largest difference between the two outputs.
"""

from __future__ import annotations

import click
import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from mbert_edge.bench.measure import side_by_side
from mbert_edge.runtime.cpus import cpu_flags
from mbert_edge.runtime.runner import session_options

EPSILON = 1e-12


def graph(hidden: int, fused: bool) -> bytes:
    """The layer norm of x + skip, as one fused node or as stock operators."""
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.normal(size=hidden).astype(np.float32), "gamma"),
        numpy_helper.from_array(rng.normal(size=hidden).astype(np.float32), "beta"),
        numpy_helper.from_array(np.array([EPSILON], np.float32), "epsilon"),
        numpy_helper.from_array(np.array([-1], np.int64), "last"),
    ]
    if fused:
        nodes = [
            helper.make_node(
                "SkipLayerNormalization", ["x", "skip", "gamma", "beta"], ["y"], domain="com.microsoft", epsilon=EPSILON
            )
        ]
        weights = weights[:2]
    else:
        steps = [
            ("Add", ["x", "skip"], "sum"),
            ("ReduceMean", ["sum", "last"], "mean"),
            ("Sub", ["sum", "mean"], "centred"),
            ("Mul", ["centred", "centred"], "squared"),
            ("ReduceMean", ["squared", "last"], "variance"),
            ("Add", ["variance", "epsilon"], "shifted"),
            ("Sqrt", ["shifted"], "deviation"),
            ("Reciprocal", ["deviation"], "inverse"),
            ("Mul", ["centred", "inverse"], "normed"),
            ("Mul", ["normed", "gamma"], "scaled"),
            ("Add", ["scaled", "beta"], "y"),
        ]
        nodes = [helper.make_node(op, inputs, [output]) for op, inputs, output in steps]
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", "tokens", hidden]) for name in ("x", "skip")
    ]
    body = helper.make_graph(
        nodes, "layer_norm", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], weights
    )
    model = helper.make_model(
        body, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)]
    )
    model.ir_version = 9
    return model.SerializeToString()


@click.command()
@click.option("--hidden", type=click.IntRange(1), default=768, show_default=True)
@click.option("--shapes", default="1x14,1x128,32x16", show_default=True, help="batch x tokens, comma-separated.")
@click.option("--rounds", type=click.IntRange(1), default=5, show_default=True)
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True)
def main(hidden: int, shapes: str, rounds: int, threads: int) -> None:
    sessions = {}
    for fused, name in ((True, "SkipLayerNormalization"), (False, "11 stock operators")):
        options = session_options(threads)
        if not fused:  # ORT_ENABLE_ALL would fuse them back into one LayerNormalization
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        sessions[name] = ort.InferenceSession(graph(hidden, fused), options, providers=["CPUExecutionProvider"])
    click.echo(f"CPU flags: {' '.join(cpu_flags()) or 'none'}; {threads} threads; hidden {hidden}; p50 ms\n")
    click.echo(f"| shape | {' | '.join(sessions)} | ratio | max abs difference |\n|---|---|---|---|---|")
    rng = np.random.default_rng(1)
    for shape in shapes.split(","):
        batch, tokens = map(int, shape.split("x"))
        feed = {n: rng.normal(size=(batch, tokens, hidden)).astype(np.float32) for n in ("x", "skip")}
        outputs = [session.run(None, feed)[0] for session in sessions.values()]
        timed = side_by_side({n: (lambda s=s, f=feed: s.run(None, f)) for n, s in sessions.items()}, rounds=rounds)
        fused_ms, stock_ms = timed.values()
        difference = float(np.abs(outputs[0] - outputs[1]).max())
        click.echo(
            f"| {batch} x {tokens} x {hidden} | {fused_ms:.3f} | {stock_ms:.3f} | {fused_ms / stock_ms:.2f}x | {difference:.1e} |"
        )


if __name__ == "__main__":
    main()
