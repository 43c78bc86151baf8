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


def resolve_preset(preset: str) -> tuple[str, list[str]]:
    """("auto" -> the preset for this CPU, the CPU flags that decided it)."""
    flags = sorted(cpu_flags())
    if preset == "auto":
        return int8_preset(set(flags)), flags
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose auto or one of {', '.join(PRESETS)}")
    return preset, flags


def quantize_dynamic_int8(source: Path, target: Path, preset: str, per_channel: bool) -> dict[str, Any]:
    """Plain ONNX Runtime dynamic quantization (per-tensor activation scales) of `source` into `target`."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    settings = {"method": "dynamic", "preset": preset, "per_channel": per_channel, **PRESETS[preset],
                "weight_type": "int8", "activation_type": "uint8", "op_types": QUANTIZED_OPS}
    quantize_dynamic(
        str(source), str(target), op_types_to_quantize=QUANTIZED_OPS, per_channel=per_channel,
        reduce_range=PRESETS[preset]["reduce_range"], weight_type=QuantType.QInt8,
        # Without a default tensor type, shape inference fails on the fused contrib operators.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return settings
