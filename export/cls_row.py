"""The last encoder layer computes only the [CLS] row when that is all the graph's output reads.

A classifier's pooler and CLS pooling read `hidden[:, 0]` of the last layer, yet the layer computes its
attention output projection, feed-forward and LayerNorms for every token. After the last attention (whose
keys and values need every token) only row 0 is kept, so those steps run on one row: about 1/L less work
for an L-layer encoder at any length. ONNX Runtime's optimizer has no such pass; the rewrite only selects
rows, so the [CLS] row's result is unchanged (export checks it against PyTorch). Graphs of any other
shape (token classification, mean pooling, unfused graphs) are left as they are.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def _constant(model: onnx.ModelProto, name: str) -> np.ndarray | None:
    for tensor in model.graph.initializer:
        if tensor.name == name:
            return numpy_helper.to_array(tensor)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(helper.get_attribute_value(node.attribute[0]))
    return None


def keep_cls_row(model: onnx.ModelProto) -> bool:
    """Rewire `model` (a fused BERT graph) in place so that its last layer runs on row 0 after attention;
    returns False, changing nothing, unless the graph's only use of the last hidden state is `[:, 0]`."""
    nodes = list(model.graph.node)
    producer = {out: n for n in nodes for out in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in nodes:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    outputs = {o.name for o in model.graph.output}

    def made_by(tensor: str, op: str) -> onnx.NodeProto | None:
        node = producer.get(tensor)
        return node if node is not None and node.op_type == op else None

    attentions = [n for n in nodes if n.op_type == "Attention"]
    if not attentions:
        return False
    attention = attentions[-1]
    projection = consumers.get(attention.output[0], [])
    if len(projection) != 1 or projection[0].op_type != "MatMul" or attention.output[0] in outputs:
        return False
    first_norm = consumers.get(projection[0].output[0], [None])[0]
    if (
        first_norm is None
        or first_norm.op_type != "SkipLayerNormalization"
        or first_norm.input[1] != attention.input[0]
    ):
        return False
    # first_norm -> MatMul -> BiasGelu -> MatMul -> last_norm (whose skip input is first_norm's output)
    last_norms = [n for n in consumers.get(first_norm.output[0], []) if n.op_type == "SkipLayerNormalization"]
    if len(last_norms) != 1 or last_norms[0].input[1] != first_norm.output[0]:
        return False
    last_norm = last_norms[0]
    down = made_by(last_norm.input[0], "MatMul")
    gelu = made_by(down.input[0], "BiasGelu") if down is not None else None
    up = made_by(gelu.input[0], "MatMul") if gelu is not None else None
    if up is None or gelu is None or down is None or up.input[0] != first_norm.output[0]:
        return False
    chain = (projection[0], first_norm, up, gelu, down)
    inside = {n.name for n in chain} | {last_norm.name}
    if any(n.output[0] in outputs or any(c.name not in inside for c in consumers.get(n.output[0], [])) for n in chain):
        return False  # a step of the last layer feeds something else, which may read every row
    readers = consumers.get(last_norm.output[0], [])
    if last_norm.output[0] in outputs or len(readers) != 1 or readers[0].op_type != "Gather":
        return False
    pooler = readers[0]
    axis = next((helper.get_attribute_value(a) for a in pooler.attribute if a.name == "axis"), 0)
    index = _constant(model, pooler.input[1])
    if axis != 1 or index is None or index.shape != () or int(index) != 0:
        return False
    row = "cls_row.index"
    model.graph.initializer.append(numpy_helper.from_array(np.array([0], np.int64), row))
    attended, residual = f"{attention.output[0]}.cls_row", f"{attention.input[0]}.cls_row"
    gathers = [
        helper.make_node("Gather", [attention.output[0], row], [attended], name=attended, axis=1),
        helper.make_node("Gather", [attention.input[0], row], [residual], name=residual, axis=1),
    ]
    projection[0].input[0] = attended
    first_norm.input[1] = residual
    position = nodes.index(projection[0])
    model.graph.ClearField("node")
    model.graph.node.extend(nodes[:position] + gathers + nodes[position:])
    return True
