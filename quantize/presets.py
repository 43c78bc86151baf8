"""Quantization settings chosen per CPU: the `--preset` decides, never an assumed instruction set."""

from __future__ import annotations

from mbert_edge.runtime.cpus import cpu_flags, int8_preset

# 7-bit weights (reduce_range) only where the u8*s8 instruction sequence can saturate: AVX2 without VNNI.
REDUCE_RANGE = {"avx512-vnni": False, "avx-vnni": False, "avx2": True, "arm64": False}
PRESETS = tuple(REDUCE_RANGE)


def resolve_preset(preset: str) -> tuple[str, list[str]]:
    """("auto" -> the preset for this CPU, the CPU flags that decided it)."""
    flags = sorted(cpu_flags())
    if preset == "auto":
        return int8_preset(set(flags)), flags
    if preset not in REDUCE_RANGE:
        raise ValueError(f"unknown preset {preset!r}; choose auto or one of {', '.join(PRESETS)}")
    return preset, flags


def faithful_weight_format(preset: str) -> str:
    """The faithful method's default weights: p8 where AVX2's u8*s8 path would saturate 8-bit weights, else s8."""
    return "p8" if REDUCE_RANGE[preset] else "s8"
