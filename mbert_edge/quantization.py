"""The quantization settings, in one place: the methods, CPU presets, weight formats, roundings and embedding
tables as enums, each method's settings class, the gate's defaults, and `QuantizationConfig`, which checks a
request when it is made. Standard library only: the runtime reads these values from manifests, and the CLI
derives its choices and per-method option checks from here."""

from __future__ import annotations

import dataclasses
from dataclasses import InitVar, dataclass
from enum import Enum
from typing import Any

from .settings import setting


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
# behind these values: benchmarks/studies/int8-methods.md).
DEFAULT_MIN_AGREEMENT = {Method.FAITHFUL.value: 0.98, Method.DYNAMIC.value: 0.90}
DEFAULT_MIN_COSINE = 0.98
GATE_KEYS = ("min_agreement", "min_cosine")


def _fraction(name: str, value: float | None) -> None:
    if value is not None and not 0 <= value <= 1:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


@dataclass
class FaithfulSettings:
    """The options of method faithful (one activation scale per token, calibrated on real text)."""

    calibration: str | None = setting(
        None,
        "text for calibration: GPTQ, outlier channels, smoothing, fallback (default: the built-in sample, of pairs "
        "for a cross-encoder or NLI model; a few hundred sentences, or .tsv pairs, of your domain do better).",
        path=True,
    )
    smoothing: float | None = setting(
        None,
        "SmoothQuant migration strength; off by default (no better once outlier channels are FP32).",
        min=0,
        max=1,
    )
    fallback_target: float | None = setting(
        None,
        "keep the fewest MatMuls in FP32 that reach this agreement on the calibration text (default: off).",
        min=0,
        max=1,
    )
    weight_format: str | None = setting(
        None,
        "int8 weights (s8), 7-bit (s7), 8-bit as uint8 (u8, exact on AVX2, slower), or 8-bit with pair-limited "
        "levels (p8, exact at AVX2's fast speed); default: p8 on AVX2 without VNNI, else s8.",
        choices=WeightFormat.values(),
    )
    weight_rounding: str = setting(
        Rounding.GPTQ.value,
        "GPTQ error-compensating rounding on the calibration text, or nearest level.",
        choices=Rounding.values(),
    )
    outlier_channels: int = setting(
        4, "per layer, the input channels with the largest calibration peaks kept FP32.", min=0
    )
    checked: InitVar[bool] = True

    def __post_init__(self, checked: bool) -> None:
        if not checked:
            return
        if self.weight_format is not None:
            self.weight_format = WeightFormat.parse("weight_format", self.weight_format)
        self.weight_rounding = Rounding.parse("weight_rounding", self.weight_rounding)
        if self.outlier_channels < 0:
            raise ValueError(f"outlier_channels must be at least 0, got {self.outlier_channels}")
        _fraction("smoothing", self.smoothing)
        _fraction("fallback_target", self.fallback_target)

    def describe(self) -> str:
        return (
            f"per-token activation scales, {self.weight_format} weights, {self.weight_rounding} rounding, "
            f"{self.outlier_channels} FP32 outlier channels"
        )


@dataclass
class DynamicSettings:
    """The options of method dynamic (ONNX Runtime's: one activation scale per batch tensor, at run time)."""

    per_channel: bool = setting(True, "one weight scale per output channel (more accurate) or per tensor.")
    embedding_table: str = setting(
        EmbeddingTable.PER_ROW.value,
        "int8 word table with one scale per row, or ONNX Runtime's one scale for the table.",
        choices=EmbeddingTable.values(),
    )
    checked: InitVar[bool] = True

    def __post_init__(self, checked: bool) -> None:
        if checked:
            self.embedding_table = EmbeddingTable.parse("embedding_table", self.embedding_table)

    def describe(self) -> str:
        return f"per-channel {self.per_channel}, {self.embedding_table} embedding table"


MethodSettings = FaithfulSettings | DynamicSettings
METHOD_SETTINGS: dict[str, type[FaithfulSettings] | type[DynamicSettings]] = {
    Method.FAITHFUL.value: FaithfulSettings,
    Method.DYNAMIC.value: DynamicSettings,
}


def option_names(settings: type[MethodSettings]) -> list[str]:
    """A method's options, as its settings class (and the manifest, flat) names them."""
    return [f.name for f in dataclasses.fields(settings)]


def method_of(option: str) -> str | None:
    """The method whose settings hold `option`; None for a setting of every method."""
    return next((method for method, cls in METHOD_SETTINGS.items() if option in option_names(cls)), None)


@dataclass
class QuantizationConfig:
    """What `mbert-edge quantize` is asked to do: the method, the CPU preset, the method's own settings and the
    accuracy gate. Built by the CLI, by `QuantizationConfig.of(...)` from flat options, or by a preset's named
    constructor (`QuantizationConfig.avx2(...)`); taken by `quantize_bundle`; recorded in the manifest (with
    `preset` and `weight_format` resolved for the machine that quantized). A value outside its choices or range,
    or an option of the other method, raises ValueError when the config is made (`checked=False`: a manifest's
    record, taken as written)."""

    method: str = Method.FAITHFUL.value
    preset: str = Preset.AUTO.value
    settings: MethodSettings | None = None  # the method's own options; None: its defaults
    data: str | None = None  # the gate's text; None: the built-in sample
    min_agreement: float | None = None  # the gate, label tasks: least top-1 agreement; None: the method's own
    min_cosine: float = DEFAULT_MIN_COSINE  # the gate, embeddings: least cosine of any text
    checked: InitVar[bool] = True

    def __post_init__(self, checked: bool) -> None:
        if checked:
            self.method = Method.parse("method", self.method)
            self.preset = Preset.parse("preset", self.preset)
            _fraction("min_agreement", self.min_agreement)
            if not -1 <= self.min_cosine <= 1:
                raise ValueError(f"min_cosine must be in [-1, 1], got {self.min_cosine}")
        expected = METHOD_SETTINGS[self.method]
        if self.settings is None:
            self.settings = expected()
        elif checked and not isinstance(self.settings, expected):
            raise ValueError(f"method {self.method} takes {expected.__name__}, got {type(self.settings).__name__}")

    @classmethod
    def of(cls, method: str = Method.FAITHFUL.value, *, checked: bool = True, **options: Any) -> QuantizationConfig:
        """A config from flat options, as the command line and the manifest spell them: the method's own go to its
        settings; one of the other method's raises ValueError."""
        kind = METHOD_SETTINGS[Method.parse("method", method) if checked else method]
        own = option_names(kind)
        common = {f.name for f in dataclasses.fields(cls)} - {"method", "settings"}
        for name in options:
            if name not in own and name not in common:
                other = method_of(name)
                raise ValueError(f"{name} applies to method {other} only" if other else f"no setting {name}")
        settings = kind(**{k: v for k, v in options.items() if k in own}, checked=checked)
        return cls(method, settings=settings, checked=checked, **{k: v for k, v in options.items() if k in common})

    def options(self) -> dict[str, Any]:
        """The config as flat options (the manifest's record): the method's own settings beside the others."""
        flat = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "settings"}
        return {**flat, **dataclasses.asdict(self.method_settings)}

    @property
    def method_settings(self) -> MethodSettings:
        assert self.settings is not None  # set in __post_init__
        return self.settings

    @property
    def faithful(self) -> FaithfulSettings:
        """The faithful method's settings (TypeError on a dynamic config)."""
        if not isinstance(self.settings, FaithfulSettings):
            raise TypeError(f"a {self.method} config has no faithful settings")
        return self.settings

    @property
    def dynamic(self) -> DynamicSettings:
        """The dynamic method's settings (TypeError on a faithful config)."""
        if not isinstance(self.settings, DynamicSettings):
            raise TypeError(f"a {self.method} config has no dynamic settings")
        return self.settings

    @classmethod
    def avx512_vnni(cls, **options: Any) -> QuantizationConfig:
        """For CPUs with AVX-512 VNNI (Intel Xeon since Cascade Lake, AMD EPYC since Genoa)."""
        return cls.of(preset=Preset.AVX512_VNNI.value, **options)

    @classmethod
    def avx_vnni(cls, **options: Any) -> QuantizationConfig:
        """For CPUs with AVX-VNNI but not AVX-512 (Intel Alder Lake and later client CPUs)."""
        return cls.of(preset=Preset.AVX_VNNI.value, **options)

    @classmethod
    def avx2(cls, **options: Any) -> QuantizationConfig:
        """For AVX2 CPUs without VNNI: 8-bit weight levels that its u8*s8 instructions cannot saturate."""
        return cls.of(preset=Preset.AVX2.value, **options)

    @classmethod
    def arm64(cls, **options: Any) -> QuantizationConfig:
        """For 64-bit ARM CPUs."""
        return cls.of(preset=Preset.ARM64.value, **options)

    @property
    def agreement_threshold(self) -> float:
        """The gate's least agreement: as asked, else what a healthy model of this method reaches."""
        return DEFAULT_MIN_AGREEMENT[self.method] if self.min_agreement is None else self.min_agreement

    @property
    def batch_invariant(self) -> bool:
        """A text's INT8 result is the same alone or in any batch (per-token scales)."""
        return self.method == Method.FAITHFUL
