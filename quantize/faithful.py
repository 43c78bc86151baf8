"""Faithful INT8: per-token (per-row) activation scales, so each text's result is independent of its
batch-mates and padding, with optional SmoothQuant-style smoothing and FP32 fallback of chosen MatMuls.

ONNX Runtime's dynamic quantization takes one activation scale per tensor (the whole padded batch); no
stock operator or quantizer option gives per-row scales, so the graph is rewritten here with standard
operators: each weight MatMul becomes

    c = (max + min) / 2 per row;  s = (max - min) / 2 / 127;  q = uint8(round((x - c) / s) + 128)
    y = MatMulInteger(q, W_int, 128) * s * w_scale + c * column_sums(W)

The fused Attention's QKV projection gets the same treatment (the attention core then runs in FP32 in
MultiHeadAttention), and the embedding table is stored int8 with one scale per row.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

if TYPE_CHECKING:
    from mbert_edge.session import BundleModel

MS_DOMAIN = "com.microsoft"


# How weights are stored for MatMulInteger: "s8" int8 in [-127, 127] (VNNI, ARM dot product);
# "s7" int8 in [-63, 63] (AVX2: its u8*s8 multiply-add saturates with 8-bit weights; fastest there);
# "u8" the 8-bit values shifted to uint8 with zero point 128 (AVX2's u8*u8 path is exact, ~30% slower).
WEIGHT_FORMATS = {"s8": 127, "s7": 63, "u8": 127}


@dataclass
class Rewriter:
    """Collects the nodes and initializers of the rewritten graph."""

    weight_format: str
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

    def per_token_matmul(self, x: str, weight: np.ndarray, output: str, smooth: np.ndarray | None) -> str:
        """x[..., K] @ weight[K, N] with a per-row activation scale and per-column int8 weights."""
        p = output
        if smooth is not None:  # x / s, with s folded into the weight rows
            x = self.node("Mul", [x, self.constant(f"{p}.inv_smooth", (1.0 / smooth).astype(np.float32))], f"{p}.xs")
            weight = weight * smooth[:, None]
        limit = WEIGHT_FORMATS[self.weight_format]
        w_scale = np.maximum(np.abs(weight).max(axis=0), 1e-12) / limit
        w_int = np.clip(np.round(weight / w_scale), -limit, limit)
        if self.weight_format == "u8":
            w_stored, w_zero = (w_int + 128).astype(np.uint8), np.array(128, np.uint8)
        else:
            w_stored, w_zero = w_int.astype(np.int8), np.array(0, np.int8)
        # Centre each row on its mid-range first: GELU outputs span [-0.17, +large], and a symmetric scale
        # would waste half the codes on them; the centre is added back exactly as centre * column sums.
        top = self.node("ReduceMax", [x], f"{p}.max", axes=[-1], keepdims=1)
        bottom = self.node("ReduceMin", [x], f"{p}.min", axes=[-1], keepdims=1)
        half = self.constant("faithful.half", np.array(0.5, np.float32))
        centre = self.node("Mul", [self.node("Add", [top, bottom], f"{p}.sum"), half], f"{p}.centre")
        spread = self.node("Mul", [self.node("Sub", [top, bottom], f"{p}.range"), half], f"{p}.spread")
        x = self.node("Sub", [x, centre], f"{p}.centred")
        floor = self.constant("faithful.eps", np.array(1e-10, np.float32))
        scale = self.node("Mul", [self.node("Max", [spread, floor], f"{p}.spread_eps"),
                                  self.constant("faithful.inv127", np.array(1 / 127, np.float32))], f"{p}.scale")
        rounded = self.node("Round", [self.node("Div", [x, scale], f"{p}.div")], f"{p}.round")
        shifted = self.node("Add", [rounded, self.constant("faithful.f128", np.array(128, np.float32))], f"{p}.shift")
        q = self.node("Cast", [shifted], f"{p}.q", to=TensorProto.UINT8)
        acc = self.node("MatMulInteger", [q, self.constant(f"{p}.w_int", w_stored),
                                          self.constant("faithful.zp128", np.array(128, np.uint8)),
                                          self.constant(f"faithful.w_zero_{self.weight_format}", w_zero)], f"{p}.acc")
        acc_f = self.node("Cast", [acc], f"{p}.acc_f", to=TensorProto.FLOAT)
        rows = self.node("Mul", [acc_f, scale], f"{p}.rows")
        product = self.node("Mul", [rows, self.constant(f"{p}.w_scale", w_scale.astype(np.float32))], f"{p}.product")
        column_sums = (w_int * w_scale).sum(axis=0).astype(np.float32)  # the dequantized weight's, for exactness
        shift = self.node("Mul", [centre, self.constant(f"{p}.colsum", column_sums)], f"{p}.shift_back")
        return self.node("Add", [product, shift], output)

    def matmul(self, x: str, weight: np.ndarray, output: str, fp32: bool, smooth: np.ndarray | None) -> str:
        if fp32:
            return self.node("MatMul", [x, self.constant(f"{output}.w_fp32", weight.astype(np.float32))], output)
        return self.per_token_matmul(x, weight, output, smooth)


def _attribute(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


def linear_layers(model: onnx.ModelProto) -> list[str]:
    """Names of the weight MatMuls the method quantizes: MatMul nodes with a constant 2-D weight and
    fused Attention nodes (their QKV projection), in graph order."""
    weights = {i.name for i in model.graph.initializer if len(i.dims) == 2}
    return [n.name for n in model.graph.node
            if (n.op_type == "MatMul" and n.input[1] in weights) or n.op_type == "Attention"]


def embedding_layers(model: onnx.ModelProto) -> list[str]:
    """Names of the fused embedding nodes (whose word table is stored int8 unless kept FP32)."""
    return [n.name for n in model.graph.node if n.op_type == "EmbedLayerNormalization"]


def linear_inputs(model: onnx.ModelProto) -> dict[str, str]:
    """Layer name -> the activation tensor it multiplies (what smoothing calibrates on)."""
    names = set(linear_layers(model))
    return {n.name: n.input[0] for n in model.graph.node if n.name in names}


def rewrite(model: onnx.ModelProto, weight_format: str, fp32_layers: set[str] = frozenset(),
            smoothing: dict[str, np.ndarray] | None = None, only_embeddings: bool = False) -> onnx.ModelProto:
    """The faithful INT8 graph of a fused FP32 BERT graph; `only_embeddings` rewrites just the word table
    (int8, one scale per row) and leaves every other node as it is, for plain dynamic quantization."""
    smoothing = smoothing or {}
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    quantized = set(linear_layers(model))
    mask_input = next(i.name for i in model.graph.input if i.name == "attention_mask")
    r = Rewriter(weight_format)
    padding_mask = None
    for node in model.graph.node:
        if only_embeddings and node.op_type != "EmbedLayerNormalization":
            r.nodes.append(node)
        elif node.name in quantized and node.op_type == "MatMul":
            r.matmul(node.input[0], inits[node.input[1]], node.output[0], node.name in fp32_layers,
                     smoothing.get(node.name))
        elif node.op_type == "Attention":
            if padding_mask is None:
                padding_mask = r.node("Cast", [mask_input], "faithful.key_padding_mask", to=TensorProto.INT32)
            heads = _attribute(node, "num_heads")
            qkv = r.matmul(node.input[0], inits[node.input[1]], f"{node.name}.qkv", node.name in fp32_layers,
                           smoothing.get(node.name))
            hidden = inits[node.input[1]].shape[1] // 3
            split = r.constant(f"faithful.split{hidden}", np.array([hidden] * 3, np.int64))
            q, k, v = (f"{node.name}.{x}" for x in "qkv")
            r.nodes.append(helper.make_node("Split", [qkv, split], [q, k, v], name=f"{node.name}.split", axis=-1))
            r.node("MultiHeadAttention", [q, k, v, node.input[2], padding_mask], node.output[0],
                   domain=MS_DOMAIN, num_heads=heads)
        elif node.op_type == "EmbedLayerNormalization":
            _embedding(r, node, inits, node.name in fp32_layers, mask_index=only_embeddings)
        else:
            r.nodes.append(node)
    used = {i for n in r.nodes for i in n.input}
    kept = [i for i in model.graph.initializer if i.name in used and i.name not in r.shared]
    graph = helper.make_graph(r.nodes, model.graph.name, model.graph.input, model.graph.output,
                              kept + r.initializers)
    out = helper.make_model(graph, opset_imports=model.opset_import, producer_name="mbert-edge faithful int8")
    out.ir_version = model.ir_version
    return out


def _embedding(r: Rewriter, node: onnx.NodeProto, inits: dict[str, np.ndarray], fp32: bool,
               mask_index: bool = False) -> None:
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
        scales = r.node("Gather", [r.constant(f"{p}.word_scale", row_scale.astype(np.float32)[:, None]), ids],
                        f"{p}.row_scale")
        word = r.node("Mul", [r.node("Cast", [rows], f"{p}.rows_f", to=TensorProto.FLOAT), scales], f"{p}.word")
    length = r.node("Gather", [r.node("Shape", [ids], f"{p}.shape"),
                               r.constant("faithful.i1", np.array(1, np.int64))], f"{p}.length")
    index = r.node("Range", [r.constant("faithful.i0", np.array(0, np.int64)), length,
                             r.constant("faithful.i1", np.array(1, np.int64))], f"{p}.positions")
    total = r.node("Add", [word, r.node("Gather", [positions, index], f"{p}.pos")], f"{p}.word_pos")
    if segments and segment_table:
        total = r.node("Add", [total, r.node("Gather", [segment_table, segments], f"{p}.seg")], f"{p}.sum")
    epsilon = _attribute(node, "epsilon", 1e-12)
    r.node("LayerNormalization", [total, gamma, beta], node.output[0], axis=-1, epsilon=epsilon)
    if mask_index and len(node.output) > 1 and len(node.input) > 7 and node.input[7]:
        # The fused Attention nodes read each sequence's length from the op's second output.
        r.node("ReduceSum", [node.input[7], r.constant("faithful.axis1", np.array([1], np.int64))],
               node.output[1], keepdims=0)


def activation_ranges(model: onnx.ModelProto, runner: "BundleModel", texts: list[str],
                      batch_size: int = 32) -> dict[str, np.ndarray]:
    """Per-channel max |activation| at each linear layer's input over the real tokens of `texts`,
    from the FP32 graph (what smoothing balances against the weights)."""
    import onnxruntime as ort

    from mbert_edge.batching import padded_inputs
    from mbert_edge.session import session_options

    inputs = linear_inputs(model)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    tensors = sorted(set(inputs.values()))
    for name in tensors:
        probe.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    session = ort.InferenceSession(probe.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])
    ranges: dict[str, np.ndarray] = {}
    for start in range(0, len(texts), batch_size):
        encodings = runner.tokenizer.encode_batch(texts[start:start + batch_size])
        feed = padded_inputs(encodings, max(map(len, encodings)), runner.input_names, runner.pad_id)
        outputs = session.run(tensors, feed)
        real = feed["attention_mask"].astype(bool)
        for name, value in zip(tensors, outputs):
            peak = np.abs(value[real]).max(axis=0)
            ranges[name] = peak if name not in ranges else np.maximum(ranges[name], peak)
    return {layer: ranges[tensor] for layer, tensor in inputs.items()}


def smoothing_factors(model: onnx.ModelProto, ranges: dict[str, np.ndarray], alpha: float) -> dict[str, np.ndarray]:
    """SmoothQuant's per-input-channel factors s = max|x|^alpha / max|w|^(1 - alpha): dividing the
    activation by s and multiplying the weight rows by s moves outlier channels into the weights."""
    inits = {i.name: i for i in model.graph.initializer}
    factors = {}
    for node in model.graph.node:
        if node.name in ranges:
            weight_peak = np.abs(numpy_helper.to_array(inits[node.input[1]])).max(axis=1)
            s = np.power(np.maximum(ranges[node.name], 1e-5), alpha) / np.power(np.maximum(weight_peak, 1e-5), 1 - alpha)
            factors[node.name] = np.clip(s, 1e-2, 1e2).astype(np.float32)
    return factors
