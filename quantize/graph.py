"""What a fused BERT graph holds (its weight MatMuls, its embedding node) and a small builder for rewriting
it with standard and ONNX Runtime contrib operators. ONNX's helper makes single nodes; the builder only
collects them with their constants, sharing constants by name."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

MS_DOMAIN = "com.microsoft"


def attribute(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


def linear_layers(model: onnx.ModelProto) -> list[str]:
    """Names of the weight MatMuls the method quantizes: MatMul nodes with a constant 2-D weight and
    fused Attention nodes (their QKV projection), in graph order."""
    weights = {i.name for i in model.graph.initializer if len(i.dims) == 2}
    return [
        n.name
        for n in model.graph.node
        if (n.op_type == "MatMul" and n.input[1] in weights) or n.op_type == "Attention"
    ]


def embedding_layers(model: onnx.ModelProto) -> list[str]:
    """Names of the fused embedding nodes (whose word table is stored int8 unless kept FP32)."""
    return [n.name for n in model.graph.node if n.op_type == "EmbedLayerNormalization"]


def linear_inputs(model: onnx.ModelProto) -> dict[str, str]:
    """Layer name -> the activation tensor it multiplies (what smoothing calibrates on)."""
    names = set(linear_layers(model))
    return {n.name: n.input[0] for n in model.graph.node if n.name in names}


@dataclass(kw_only=True)  # subclasses add their own positional settings
class GraphBuilder:
    """Collects the nodes and initializers of a rewritten graph."""

    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    shared: dict[str, str] = field(default_factory=dict)

    def constant(self, name: str, value: np.ndarray) -> str:
        if name not in self.shared:
            self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
            self.shared[name] = name
        return name

    def node(self, op: str, inputs: list[str], output: str, domain: str = "", **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, domain=domain, **attrs))
        return output

    def build(self, original: onnx.ModelProto, producer: str) -> onnx.ModelProto:
        """The new model: these nodes, the original's inputs, outputs and the initializers still used."""
        used = {i for n in self.nodes for i in n.input}
        kept = [i for i in original.graph.initializer if i.name in used and i.name not in self.shared]
        graph = helper.make_graph(
            self.nodes, original.graph.name, original.graph.input, original.graph.output, kept + self.initializers
        )
        model = helper.make_model(graph, opset_imports=original.opset_import, producer_name=producer)
        model.ir_version = original.ir_version
        return model


def at_opset(model: onnx.ModelProto, version: int) -> onnx.ModelProto:
    """`model` declaring default-domain opset `version` or newer: converted by onnx's version converter when
    older (it leaves ONNX Runtime's contrib operators as they are; about 15 s for the mBERT shape, so callers
    that rewrite one graph many times convert it once first)."""
    from onnx import version_converter

    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if current is None:  # no standard operator yet: declaring the version is all there is to do
        model.opset_import.append(helper.make_opsetid("", version))
        return model
    if current >= version:
        return model
    converted = version_converter.convert_version(model, version)
    converted.ir_version = max(
        converted.ir_version,
        helper.find_min_ir_version_for(
            [o for o in converted.opset_import if o.domain in ("", "ai.onnx")], ignore_unknown=True
        ),
    )
    return converted
