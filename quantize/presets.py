"""Quantization settings chosen per CPU: the `--preset` decides, never an assumed instruction set."""

from __future__ import annotations

from mbert_edge.quantization import Preset
from mbert_edge.runtime.cpus import cpu_flags, int8_preset

# 7-bit weights (reduce_range) only where the u8*s8 instruction sequence can saturate: AVX2 without VNNI.
REDUCE_RANGE: dict[str, bool] = {
    Preset.AVX512_VNNI: False,
    Preset.AVX_VNNI: False,
    Preset.AVX2: True,
    Preset.ARM64: False,
}


def resolve_preset(preset: str) -> tuple[str, list[str]]:
    """(the preset, "auto" resolved for this CPU; the CPU flags that decided it)."""
    flags = sorted(cpu_flags())
    return (int8_preset(set(flags)) if preset == Preset.AUTO else preset), flags


def faithful_weight_format(preset: str) -> str:
    """The faithful method's default weights: p8 where AVX2's u8*s8 path would saturate 8-bit weights, else s8."""
    return "p8" if REDUCE_RANGE[preset] else "s8"
