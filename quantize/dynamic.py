"""INT8 dynamic quantization with ONNX Runtime's quantizer, with settings chosen per CPU."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from mbert_edge.errors import QuantizeError
from mbert_edge.quantization import QuantizationConfig

from .embedding_table import per_row_table
from .presets import REDUCE_RANGE

# MatMul and fused Attention carry the encoder's weights; EmbedLayerNormalization (fused) or Gather
# (unfused) the embedding table, half of M-BERT's parameters.
QUANTIZED_OPS = ["MatMul", "Attention", "EmbedLayerNormalization", "Gather"]


class _NoPreprocessingAdvice(logging.Filter):
    """ONNX Runtime's quantizer logs advice to pre-process the model (shape inference and folding, for image
    models) on every call; the fused graph is quantized as it is by design, so users would only see noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def quantize_dynamic_int8(
    source: Path, target: Path, config: QuantizationConfig, op_types: list[str] = QUANTIZED_OPS
) -> tuple[QuantizationConfig, dict[str, Any]]:
    """Plain ONNX Runtime dynamic quantization (per-tensor activation scales) of `source` into `target`;
    `op_types` narrows what is quantized (benchmarks leave the embedding table out to measure its cost).

    The word-embedding table of a fused graph is stored with one int8 scale per row by default: ONNX
    Runtime's one scale for the whole table costs agreement with FP32 (`benchmarks/embedding_int8.py`);
    `embedding_table="per-tensor"` keeps it.
    `config.preset` is resolved; returns the config as carried out and what the method chose."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The weights are needed only to rewrite the table per row; the graph alone tells what the model holds.
    model = onnx.load(str(source), load_external_data=config.dynamic.embedding_table == "per-row")
    embedding = [n for n in model.graph.node if n.op_type == "EmbedLayerNormalization"]
    if config.dynamic.embedding_table == "per-tensor" and any(len(n.input) > 8 and n.input[8] for n in embedding):
        raise QuantizeError(
            "--embedding-table per-tensor cannot keep this model's position ids (RoBERTa, XLM-R): "
            "ONNX Runtime's quantized embedding node has no such input; use per-row"
        )
    per_row = config.dynamic.embedding_table == "per-row" and bool(embedding)
    if per_row:
        source = target.with_name(f".{target.name}.per-row-table")
        onnx.save(per_row_table(model), str(source))
        op_types = [op for op in op_types if op not in ("EmbedLayerNormalization", "Gather")]
    del model  # the graph can be large: do not hold it while quantize_dynamic loads its own copy
    reduce_range = REDUCE_RANGE[config.preset]
    done = replace(config, settings=replace(config.dynamic, embedding_table="per-row" if per_row else "per-tensor"))
    chosen = {"reduce_range": reduce_range, "weight_type": "int8", "activation_type": "uint8", "op_types": op_types}
    advice = _NoPreprocessingAdvice()
    logging.getLogger().addFilter(advice)
    try:
        quantize_dynamic(
            str(source),
            str(target),
            op_types_to_quantize=op_types,
            per_channel=config.dynamic.per_channel,
            reduce_range=reduce_range,
            weight_type=QuantType.QInt8,
            # Without a default tensor type, shape inference fails on the fused contrib operators.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        logging.getLogger().removeFilter(advice)
        if per_row:
            source.unlink(missing_ok=True)
    return done, chosen
