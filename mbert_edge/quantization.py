"""The quantization settings, in one place: the methods, CPU presets, weight formats, roundings and embedding
tables as enums, which options each method reads, the gate's defaults, and `QuantizationConfig`, which checks
a request when it is made. Standard library only: the runtime reads these values from manifests, and the CLI
derives its choices and per-method option checks from here."""

from __future__ import annotations

import dataclasses
from dataclasses import InitVar, dataclass
from enum import Enum
from typing import Any


class Choice(str, Enum):
    """A setting's value: a string in JSON, the manifest and on the command line."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    @classmethod
    def values(cls) -> list[str]:
        return [member.value for member in cls]

    @classmethod
    def parse(cls, field: str, value: Any) -> Any:
        """The member named by `value`, or ValueError naming the field and the choices."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"{field} must be one of {', '.join(cls.values())}, got {value!r}") from None


class Method(Choice):
    FAITHFUL = "faithful"  # one activation scale per token, calibrated: batch-invariant
    DYNAMIC = "dynamic"  # ONNX Runtime's: one activation scale per batch tensor


class Preset(Choice):
    AUTO = "auto"  # the preset for the CPU that quantizes
    AVX512_VNNI = "avx512-vnni"
    AVX_VNNI = "avx-vnni"
    AVX2 = "avx2"
    ARM64 = "arm64"


class WeightFormat(Choice):
    S8 = "s8"  # int8 weights
    S7 = "s7"  # 7-bit weights in int8
    U8 = "u8"  # 8-bit levels stored as uint8: exact on AVX2, slower
    P8 = "p8"  # 8-bit levels limited in pairs: exact at AVX2's fast speed


class Rounding(Choice):
    GPTQ = "gptq"  # error-compensating rounding on the calibration text
    NEAREST = "nearest"


class EmbeddingTable(Choice):
    PER_ROW = "per-row"  # int8 word table with one scale per row
    PER_TENSOR = "per-tensor"  # ONNX Runtime's one scale for the table


# The gate's default agreement per method: below it, the method is broken on this model (the agreements
# behind these values: benchmarks/README.md).
DEFAULT_MIN_AGREEMENT = {Method.FAITHFUL.value: 0.98, Method.DYNAMIC.value: 0.90}
DEFAULT_MIN_COSINE = 0.98

# The options that only one method reads (recorded in the manifest, they would look used).
METHOD_OPTIONS = {
    **dict.fromkeys(("per_channel", "embedding_table"), Method.DYNAMIC.value),
    **dict.fromkeys(
        ("calibration", "smoothing", "fallback_target", "weight_format", "weight_rounding", "outlier_channels"),
        Method.FAITHFUL.value,
    ),
}
FRACTIONS = ("smoothing", "fallback_target", "min_agreement")  # each in [0, 1] when set


@dataclass
class QuantizationConfig:
    """What `mbert-edge quantize` is asked to do: built by the CLI or by `QuantizationConfig.avx2()` and its
    siblings, taken by `quantize_bundle`, recorded in the manifest (with `preset` and `weight_format` resolved
    for the machine that quantized). A value outside its choices or range, or an option of the other method
    set away from its default, raises ValueError when the config is made (`checked=False`: a manifest's record,
    taken as written)."""

    method: str = Method.FAITHFUL.value
    preset: str = Preset.AUTO.value
    per_channel: bool = True  # dynamic: one weight scale per output column
    embedding_table: str = EmbeddingTable.PER_ROW.value  # dynamic
    weight_format: str | None = None  # faithful; None: p8 on AVX2 without VNNI, else s8
    weight_rounding: str = Rounding.GPTQ.value  # faithful
    outlier_channels: int = 4  # faithful: input channels per layer kept FP32
    smoothing: float | None = None  # faithful: SmoothQuant migration strength
    fallback_target: float | None = None  # faithful: agreement the FP32 fallback search aims for
    calibration: str | None = None  # faithful: calibration text; None: the built-in sample
    data: str | None = None  # the gate's text; None: the built-in sample
    min_agreement: float | None = None  # the gate, label tasks: least top-1 agreement; None: the method's own
    min_cosine: float = DEFAULT_MIN_COSINE  # the gate, embeddings: least cosine of any text
    checked: InitVar[bool] = True

    def __post_init__(self, checked: bool) -> None:
        if not checked:
            return
        self.method = Method.parse("method", self.method)
        self.preset = Preset.parse("preset", self.preset)
        self.embedding_table = EmbeddingTable.parse("embedding_table", self.embedding_table)
        self.weight_rounding = Rounding.parse("weight_rounding", self.weight_rounding)
        if self.weight_format is not None:
            self.weight_format = WeightFormat.parse("weight_format", self.weight_format)
        for name in FRACTIONS:
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if not -1 <= self.min_cosine <= 1:
            raise ValueError(f"min_cosine must be in [-1, 1], got {self.min_cosine}")
        if self.outlier_channels < 0:
            raise ValueError(f"outlier_channels must be at least 0, got {self.outlier_channels}")
        defaults = {f.name: f.default for f in dataclasses.fields(QuantizationConfig)}
        for name, method in METHOD_OPTIONS.items():
            if method != self.method and getattr(self, name) != defaults[name]:
                raise ValueError(f"{name} applies to method {method} only")

    @classmethod
    def avx512_vnni(cls, **settings: Any) -> QuantizationConfig:
        """For CPUs with AVX-512 VNNI (Intel Xeon since Cascade Lake, AMD EPYC since Genoa)."""
        return cls(preset=Preset.AVX512_VNNI.value, **settings)

    @classmethod
    def avx_vnni(cls, **settings: Any) -> QuantizationConfig:
        """For CPUs with AVX-VNNI but not AVX-512 (Intel Alder Lake and later client CPUs)."""
        return cls(preset=Preset.AVX_VNNI.value, **settings)

    @classmethod
    def avx2(cls, **settings: Any) -> QuantizationConfig:
        """For AVX2 CPUs without VNNI: 8-bit weight levels that its u8*s8 instructions cannot saturate."""
        return cls(preset=Preset.AVX2.value, **settings)

    @classmethod
    def arm64(cls, **settings: Any) -> QuantizationConfig:
        """For 64-bit ARM CPUs."""
        return cls(preset=Preset.ARM64.value, **settings)

    @property
    def agreement_threshold(self) -> float:
        """The gate's least agreement: as asked, else what a healthy model of this method reaches."""
        return DEFAULT_MIN_AGREEMENT[self.method] if self.min_agreement is None else self.min_agreement

    @property
    def batch_invariant(self) -> bool:
        """A text's INT8 result is the same alone or in any batch (per-token scales)."""
        return self.method == Method.FAITHFUL


GATE_KEYS = ("min_agreement", "min_cosine")
