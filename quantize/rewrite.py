"""The faithful INT8 graph: per-token (per-row) activation scales, so each text's result is independent of
its batch-mates and padding.

ONNX Runtime's dynamic quantization takes one activation scale per tensor (the whole padded batch); no
stock operator or quantizer option gives per-row scales, so the graph is rewritten here with standard
operators: each weight MatMul becomes

    c = (max + min) / 2 per row;  s = max((max - min) / 2, |c|) / 126.5;  k = round(c / s)
    q = QuantizeLinear(x, s, 128 - k) per row (opset 21, one block per row);  y = MatMulIntegerToFloat(q, W_int, s, w_scale, 128)
    y += [k * s, x_outliers] @ [column_sums(W); W_outliers]

where the outlier channels (chosen from calibration.py's statistics) are zeroed in x before the row
statistics and their weight rows are FP32; weights are rounded by GPTQ (gptq.py). The fused Attention's QKV
projection gets the same treatment (the attention core then runs in FP32 in MultiHeadAttention), and the
embedding table is int8 per row (embedding_table.py).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .calibration import LayerStats
from .embedding_table import embedding_layer
from .gptq import round_gptq, round_nearest
from .graph import MS_DOMAIN, GraphBuilder, at_opset, attribute, linear_layers

# How weights are stored for MatMulInteger: "s8" int8 in [-127, 127] (VNNI, ARM dot product);
# "s7" int8 in [-63, 63] (AVX2: its u8*s8 multiply-add can saturate with unconstrained 8-bit weights);
# "u8" the 8-bit values shifted to uint8 with zero point 128 (AVX2's u8*u8 path is exact, and slower);
# "p8" int8 with |w_2i| + |w_2i+1| <= 128 for each pair of consecutive input rows: AVX2's multiply-add sums
# exactly those pairs into 16 bits, which 255 x 128 cannot overflow, so it runs exact at s7's speed (checked
# against integer numpy in tests/test_faithful.py) with finer levels (MiniLM's relative weight error: s7
# 0.0193, p8 0.0126, u8 0.0099).
WEIGHT_FORMATS = {"s8": 127, "s7": 63, "u8": 127, "p8": 127}
OPSET = 21  # blocked QuantizeLinear (and reductions taking their axes as an input, from 18)
PAIR_LIMIT = {"p8": 128}


@dataclass
class Rewriter(GraphBuilder):
    """Builds the faithful graph: per-token weight MatMuls with the layer settings below."""

    weight_format: str
    smoothing: dict[str, np.ndarray] = field(default_factory=dict)
    stats: dict[str, LayerStats] = field(default_factory=dict)
    outlier_channels: int = 0
    gptq: bool = True

    def _integer_weights(
        self, weight: np.ndarray, stats: LayerStats | None, smooth: np.ndarray | None, outliers: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(integer levels, column scales) of the rows the int8 path multiplies: GPTQ when calibration
        statistics exist (cached: the fallback search rewrites the graph many times), else nearest
        rounding; outlier rows are zero (they go through FP32)."""
        weight = weight.copy()
        weight[outliers] = 0.0
        limit, pairs = WEIGHT_FORMATS[self.weight_format], PAIR_LIMIT.get(self.weight_format)
        if stats is None or not self.gptq:
            return round_nearest(weight, limit, pairs)
        key = b"".join([self.weight_format.encode(), outliers.tobytes(), b"" if smooth is None else smooth.tobytes()])
        if key not in stats.rounded:
            hessian = stats.hessian if smooth is None else stats.hessian / np.outer(smooth, smooth)
            hessian = hessian.copy()
            hessian[outliers, :] = 0.0
            hessian[:, outliers] = 0.0
            stats.rounded[key] = round_gptq(weight, hessian, limit, pair_limit=pairs)
        return stats.rounded[key]

    def per_token_matmul(self, x: str, weight: np.ndarray, output: str, layer: str) -> str:
        """x[..., K] @ weight[K, N] with a per-row activation scale and per-column int8 weights; the
        `outlier_channels` input channels with the largest calibration peaks stay FP32."""
        p = output
        smooth, stats = self.smoothing.get(layer), self.stats.get(layer)
        original, quantized_x = weight, x
        outliers = np.zeros(0, np.int64)
        if stats is not None and self.outlier_channels:
            peak = stats.peak if smooth is None else stats.peak / smooth
            outliers = np.sort(np.argsort(peak)[::-1][: self.outlier_channels]).astype(np.int64)
        if smooth is not None or outliers.size:  # x / s (s folded into the weight rows), outliers zeroed
            factor = np.ones(weight.shape[0], np.float32) if smooth is None else (1.0 / smooth).astype(np.float32)
            factor[outliers] = 0.0
            quantized_x = self.node("Mul", [x, self.constant(f"{p}.in_factor", factor)], f"{p}.xs")
            if smooth is not None:
                weight = weight * smooth[:, None]
        w_int, w_scale = self._integer_weights(weight, stats, smooth, outliers)
        if self.weight_format == "u8":
            w_stored, w_zero = (w_int + 128).astype(np.uint8), np.array(128, np.uint8)
        else:
            w_stored, w_zero = w_int.astype(np.int8), np.array(0, np.int8)
        # Each row is quantized around its mid-range c (GELU outputs span [-0.17, +large]; a symmetric
        # scale would waste half the codes on them): QuantizeLinear with a per-row zero point 128 - round(c/s)
        # (the scale covers |c| too, so it stays in uint8), then MatMulIntegerToFloat with the fixed zero point
        # 128 gives s (q - 128) @ W w_scale, and round(c/s) * s times the column sums of W is added back.
        # The statistics work on max + min = 2c and max - min, never halved (the halving is folded into the
        # constants), and the centre is rounded to a level by an int8 QuantizeLinear: -round(c/s) as int8, made
        # the uint8 zero point 128 - round(c/s) by Cast and XOR 0x80 (blocked QuantizeLinear takes no
        # broadcast zero point, and int8 activations take MatMulIntegerToFloat's far slower path); the same
        # values as Div, Round, Sub and Cast, two nodes fewer per MatMul (each node costs a few us).
        columns = weight.shape[0]
        last = self.constant("faithful.last_axis", np.array([-1], np.int64))
        top = self.node("ReduceMax", [quantized_x, last], f"{p}.max", keepdims=1)
        bottom = self.node("ReduceMin", [quantized_x, last], f"{p}.min", keepdims=1)
        twice_centre = self.node("Add", [top, bottom], f"{p}.sum")
        twice_widest = self.node(
            "Max",
            [
                self.node("Sub", [top, bottom], f"{p}.range"),
                self.node("Abs", [twice_centre], f"{p}.abs_sum"),
                self.constant("faithful.eps2", np.array(2e-10, np.float32)),
            ],
            f"{p}.widest",
        )
        # 126.5 (here 2 x 126.5), not 127: with the centre rounded to a level, every code stays within [1, 255].
        scale = self.node(
            "Mul", [twice_widest, self.constant("faithful.inv253", np.array(1 / 253, np.float32))], f"{p}.scale"
        )
        minus_centre = self.node(
            "Mul", [twice_centre, self.constant("faithful.minus_half", np.array(-0.5, np.float32))], f"{p}.minus_centre"
        )
        minus_level = self.node(
            "QuantizeLinear",
            [minus_centre, scale],
            f"{p}.minus_level",
            axis=-1,
            block_size=1,
            output_dtype=TensorProto.INT8,
        )
        wrapped = self.node("Cast", [minus_level], f"{p}.minus_level_u8", to=TensorProto.UINT8)  # two's complement
        zero = self.node("BitwiseXor", [wrapped, self.constant("faithful.bit7", np.array(128, np.uint8))], f"{p}.zero")
        # Opset 21's blocked QuantizeLinear, one block per row: the [..., 1] scale and zero point apply to the
        # whole last axis, so the activation keeps its shape (per-axis quantization needed it reshaped to 2-D
        # and back: four Reshapes and a Shape per MatMul).
        q = self.node("QuantizeLinear", [quantized_x, scale, zero], f"{p}.q", axis=-1, block_size=columns)
        # ONNX Runtime broadcasts a_scale x b_scale, so the [..., 1] row scales go straight in.
        rows = self.node(
            "MatMulIntegerToFloat",
            [
                q,
                self.constant(f"{p}.w_int", w_stored),
                scale,
                self.constant(f"{p}.w_scale", w_scale.astype(np.float32)),
                self.constant("faithful.zp128", np.array(128, np.uint8)),
                self.constant(f"faithful.w_zero_{self.weight_format}", w_zero),
            ],
            f"{p}.rows",
            domain=MS_DOMAIN,
        )
        # -round(c/s) s: the centre actually subtracted, negated (so are the column sums below).
        used_centre = self.node(
            "DequantizeLinear", [minus_level, scale], f"{p}.minus_used_centre", axis=-1, block_size=1
        )
        column_sums = -(w_int * w_scale).sum(axis=0).astype(np.float32)  # the dequantized weight's, for exactness
        if not outliers.size:
            shift = self.node("Mul", [used_centre, self.constant(f"{p}.colsum", column_sums)], f"{p}.shift_back")
        else:  # [centre, x_outliers] @ [column sums; FP32 outlier rows]: one small MatMul adds both back
            exact = self.node("Gather", [x, self.constant(f"{p}.outliers", outliers)], f"{p}.x_outliers", axis=-1)
            joined = self.node("Concat", [used_centre, exact], f"{p}.joined", axis=-1)
            rows_back = np.vstack([column_sums[None, :], original[outliers].astype(np.float32)])
            shift = self.node("MatMul", [joined, self.constant(f"{p}.back", rows_back)], f"{p}.shift_back")
        return self.node("Add", [rows, shift], output)

    def matmul(self, x: str, weight: np.ndarray, output: str, layer: str, fp32: bool) -> str:
        if fp32:
            return self.node("MatMul", [x, self.constant(f"{output}.w_fp32", weight.astype(np.float32))], output)
        return self.per_token_matmul(x, weight, output, layer)


def rewrite(
    model: onnx.ModelProto,
    weight_format: str,
    fp32_layers: AbstractSet[str] = frozenset(),
    smoothing: dict[str, np.ndarray] | None = None,
    stats: dict[str, LayerStats] | None = None,
    outlier_channels: int = 0,
    weight_rounding: str = "gptq",
    advance: Callable[[int], None] = lambda n: None,
) -> onnx.ModelProto:
    """The faithful INT8 graph of a fused FP32 BERT graph. With calibration `stats`, weights are rounded by
    GPTQ (`weight_rounding="gptq"`, else to nearest) and each layer's `outlier_channels` input channels with
    the largest peaks stay FP32; `fp32_layers` stay FP32 whole. `advance(1)` follows each weight MatMul."""
    model = at_opset(model, OPSET)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    quantized = set(linear_layers(model))
    mask_input = next(i.name for i in model.graph.input if i.name == "attention_mask")
    r = Rewriter(
        weight_format,
        smoothing=smoothing or {},
        stats=stats or {},
        outlier_channels=outlier_channels,
        gptq=weight_rounding == "gptq",
    )
    padding_mask = None
    # A word table that other nodes read too (a masked LM's decoder, tied to it) stays one FP32 table: an int8 copy
    # for the embedding beside it would grow the model.
    shared = {name for n in model.graph.node if n.op_type != "EmbedLayerNormalization" for name in n.input}
    for node in model.graph.node:
        if node.name in quantized and node.op_type == "MatMul":
            r.matmul(node.input[0], inits[node.input[1]], node.output[0], node.name, node.name in fp32_layers)
            advance(1)
        elif node.op_type == "Attention":
            if padding_mask is None:
                padding_mask = r.node("Cast", [mask_input], "faithful.key_padding_mask", to=TensorProto.INT32)
            heads = attribute(node, "num_heads")
            qkv = r.matmul(node.input[0], inits[node.input[1]], f"{node.name}.qkv", node.name, node.name in fp32_layers)
            advance(1)
            hidden = inits[node.input[1]].shape[1] // 3
            split = r.constant(f"faithful.split{hidden}", np.array([hidden] * 3, np.int64))
            q, k, v = (f"{node.name}.{x}" for x in "qkv")
            r.nodes.append(helper.make_node("Split", [qkv, split], [q, k, v], name=f"{node.name}.split", axis=-1))
            r.node(
                "MultiHeadAttention",
                [q, k, v, node.input[2], padding_mask],
                node.output[0],
                domain=MS_DOMAIN,
                num_heads=heads,
            )
        elif node.op_type == "EmbedLayerNormalization":
            embedding_layer(r, node, inits, node.name in fp32_layers or node.input[2] in shared)
        else:
            r.nodes.append(node)
    return r.build(model, "mbert-edge faithful int8")
