"""The word-embedding table stored int8 with one scale per row, for both INT8 methods.

ONNX Runtime's `QEmbedLayerNormalization` takes one scale for the whole table, which leaves rows several
times further off than a scale per row (benchmarks/studies/embedding-table.md), so the fused `EmbedLayerNormalization` is
rebuilt here from standard operators around an int8 `Gather` and a per-row scale.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from .graph import GraphBuilder, attribute


def per_row_table(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with its word table int8 per row and every other node as it is (the dynamic method then
    quantizes the rest); the fused Attention nodes keep reading the sequence lengths they need."""
    tables = {n.input[2] for n in model.graph.node if n.op_type == "EmbedLayerNormalization"}
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer if i.name in tables}
    builder = GraphBuilder()
    for node in model.graph.node:
        if node.op_type == "EmbedLayerNormalization":
            embedding_layer(builder, node, inits, fp32=False, mask_index=True)
        else:
            builder.nodes.append(node)
    return builder.build(model, "mbert-edge per-row embedding table")


def embedding_layer(
    r: GraphBuilder, node: onnx.NodeProto, inits: dict[str, np.ndarray], fp32: bool, mask_index: bool = False
) -> None:
    """EmbedLayerNormalization from standard operators, with an int8 word table (one scale per row);
    `mask_index` also rebuilds its second output (sequence lengths) for fused Attention nodes that stay."""
    ids, segments, words, positions, segment_table, gamma, beta = (list(node.input) + [""] * 7)[:7]
    p = node.name or "embeddings"
    if fp32:
        word = r.node("Gather", [words, ids], f"{p}.word")
    else:
        table = inits[words]
        row_scale = np.maximum(np.abs(table).max(axis=1), 1e-12) / 127
        table_int8 = np.clip(np.round(table / row_scale[:, None]), -127, 127).astype(np.int8)
        rows = r.node("Gather", [r.constant(f"{p}.word_int8", table_int8), ids], f"{p}.rows_int8")
        scales = r.node(
            "Gather", [r.constant(f"{p}.word_scale", row_scale.astype(np.float32)[:, None]), ids], f"{p}.row_scale"
        )
        word = r.node("Mul", [r.node("Cast", [rows], f"{p}.rows_f", to=TensorProto.FLOAT), scales], f"{p}.word")
    if len(node.input) > 8 and node.input[8]:  # the graph's own position ids (RoBERTa family)
        index = node.input[8]
    else:  # 0, 1, ... per sequence
        length = r.node(
            "Gather",
            [r.node("Shape", [ids], f"{p}.shape"), r.constant("faithful.i1", np.array(1, np.int64))],
            f"{p}.length",
        )
        index = r.node(
            "Range",
            [
                r.constant("faithful.i0", np.array(0, np.int64)),
                length,
                r.constant("faithful.i1", np.array(1, np.int64)),
            ],
            f"{p}.positions",
        )
    total = r.node("Add", [word, r.node("Gather", [positions, index], f"{p}.pos")], f"{p}.word_pos")
    if segments and segment_table:
        total = r.node("Add", [total, r.node("Gather", [segment_table, segments], f"{p}.seg")], f"{p}.sum")
    epsilon = attribute(node, "epsilon", 1e-12)
    r.node("LayerNormalization", [total, gamma, beta], node.output[0], axis=-1, epsilon=epsilon)
    if mask_index and len(node.output) > 1 and len(node.input) > 7 and node.input[7]:
        # The fused Attention nodes read each sequence's length from the op's second output.
        r.node(
            "ReduceSum",
            [node.input[7], r.constant("faithful.axis1", np.array([1], np.int64))],
            node.output[1],
            keepdims=0,
        )
