"""INT8 dynamic quantization with ONNX Runtime's quantizer, with settings chosen per CPU."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mbert_edge.cpus import cpu_flags, int8_preset

# reduce_range (7-bit weights) only where the u8*s8 instruction sequence can saturate: AVX2 without VNNI.
PRESETS: dict[str, dict[str, Any]] = {
    "avx512-vnni": {"reduce_range": False},
    "avx-vnni": {"reduce_range": False},
    "avx2": {"reduce_range": True},
    "arm64": {"reduce_range": False},
}
# MatMul and fused Attention carry the encoder's weights; EmbedLayerNormalization (fused) or Gather
# (unfused) the embedding table, half of M-BERT's parameters.
QUANTIZED_OPS = ["MatMul", "Attention", "EmbedLayerNormalization", "Gather"]
EMBEDDING_TABLES = ("per-row", "per-tensor")


def resolve_preset(preset: str) -> tuple[str, list[str]]:
    """("auto" -> the preset for this CPU, the CPU flags that decided it)."""
    flags = sorted(cpu_flags())
    if preset == "auto":
        return int8_preset(set(flags)), flags
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose auto or one of {', '.join(PRESETS)}")
    return preset, flags


def quantize_dynamic_int8(source: Path, target: Path, preset: str, per_channel: bool,
                          op_types: list[str] = QUANTIZED_OPS, embedding_table: str = "per-row") -> dict[str, Any]:
    """Plain ONNX Runtime dynamic quantization (per-tensor activation scales) of `source` into `target`;
    `op_types` narrows what is quantized (benchmarks leave the embedding table out to measure its cost).

    The word-embedding table of a fused graph is stored with one int8 scale per row by default: ONNX
    Runtime's one scale for the whole table was measured to cost 0.8 points of agreement with FP32 on the
    fine-tuned MiniLM classifier (`benchmarks/embedding_int8.py`); `embedding_table="per-tensor"` keeps it."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from .faithful import rewrite

    if embedding_table not in EMBEDDING_TABLES:
        raise ValueError(f"embedding_table must be one of {', '.join(EMBEDDING_TABLES)}, got {embedding_table!r}")
    model = onnx.load(str(source)) if embedding_table == "per-row" else None
    per_row = model is not None and any(n.op_type == "EmbedLayerNormalization" for n in model.graph.node)
    if per_row:
        source = target.with_name(f".{target.name}.per-row-table")
        onnx.save(rewrite(model, "s8", only_embeddings=True), str(source))
        op_types = [op for op in op_types if op not in ("EmbedLayerNormalization", "Gather")]
    del model  # the graph can be large: do not hold it while quantize_dynamic loads its own copy
    settings = {"method": "dynamic", "preset": preset, "per_channel": per_channel, **PRESETS[preset],
                "weight_type": "int8", "activation_type": "uint8", "op_types": op_types,
                "embedding_table": "per-row" if per_row else "per-tensor"}
    try:
        quantize_dynamic(
            str(source), str(target), op_types_to_quantize=op_types, per_channel=per_channel,
            reduce_range=PRESETS[preset]["reduce_range"], weight_type=QuantType.QInt8,
            # Without a default tensor type, shape inference fails on the fused contrib operators.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        if per_row:
            source.unlink(missing_ok=True)
    return settings
