"""`mbert-edge quantize`: INT8 from the bundle's fused FP32 graph, then the accuracy gate, always."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mbert_edge.bundle import Bundle, file_record, weights_file
from mbert_edge.errors import MbertEdgeError
from mbert_edge.progress import Progress
from mbert_edge.session import BundleModel
from mbert_edge.textdata import TextSet, builtin_sample, load_textset

from .int8 import PRESETS, quantize_dynamic_int8, resolve_preset
from .report import DEFAULT_MIN_AGREEMENT, DEFAULT_MIN_COSINE, compare, gate_failure, write_report
from .storage import store_model

INT8_FILE = "model.int8.onnx"
REPORT_STEM = "accuracy.int8"


class GateError(MbertEdgeError):
    """The INT8 model disagrees with the float model beyond the threshold; the bundle keeps FP32 only."""


def evaluation_texts(data: str | Path | None) -> TextSet:
    """`--data` when given (labelled pairs allowed), else the built-in multilingual sample."""
    return load_textset(data) if data is not None else builtin_sample()


METHODS = ("dynamic", "faithful")


def quantize_faithful_int8(fp32: Path, target: Path, preset: str, reference: BundleModel, calibration: TextSet,
                           smoothing: float | None, fallback_target: float | None,
                           progress: Progress, weight_format: str | None = None, outlier_channels: int = 4,
                           weight_rounding: str = "gptq") -> dict[str, Any]:
    """Per-token INT8 (see faithful.py) calibrated on `calibration`: GPTQ weight rounding, FP32 outlier
    channels, smoothing with strength `smoothing`, and the fewest FP32 fallbacks that reach
    `fallback_target` agreement on the calibration text."""
    import onnx

    from .faithful import embedding_layers, layer_statistics, linear_layers, rewrite, smoothing_factors
    from .fallback import choose_fallback

    model = onnx.load(str(fp32))
    weight_format = weight_format or ("p8" if PRESETS[preset]["reduce_range"] else "s8")
    texts = [t for group in calibration.texts.values() for t in group]
    with progress.step(f"calibrating on {len(texts)} texts"):
        stats = layer_statistics(model, reference, texts)
    options: dict[str, Any] = {"weight_format": weight_format, "stats": stats, "outlier_channels": outlier_channels,
                               "weight_rounding": weight_rounding,
                               "smoothing": smoothing_factors(model, stats, smoothing) if smoothing else None}
    fp32_layers: list[str] = []
    sensitivity: dict[str, float] = {}
    if fallback_target is not None:
        count = len(linear_layers(model)) + len(embedding_layers(model))
        with progress.bar("ranking layer sensitivity", count) as advance:
            fp32_layers, sensitivity = choose_fallback(model, options, reference, TextSet({"calibration": texts}),
                                                       fallback_target, advance)
    with progress.step(f"rewriting ({weight_rounding} weight rounding)"):
        onnx.save(rewrite(model, fp32_layers=set(fp32_layers), **options), str(target))
    return {"method": "faithful", "preset": preset, "per_channel": True, "reduce_range": weight_format == "s7",
            "weight_format": weight_format, "weight_rounding": weight_rounding,
            "weight_type": "int8", "activation_type": "uint8, one scale per token",
            "outlier_channels": outlier_channels, "smoothing": smoothing, "calibration_texts": len(texts),
            "fallback_target": fallback_target, "fp32_layers": fp32_layers, "sensitivity": sensitivity}


def _drop_int8(bundle: Bundle) -> None:
    bundle.models.pop("int8", None)
    for name in (INT8_FILE, weights_file(INT8_FILE)):
        bundle.manifest["files"].pop(name, None)
        (bundle.path / name).unlink(missing_ok=True)


def quantize_bundle(
    path: str | Path,
    per_channel: bool = True,
    preset: str = "auto",
    data: str | Path | None = None,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    min_cosine: float = DEFAULT_MIN_COSINE,
    method: str = "dynamic",
    calibration: str | Path | None = None,
    smoothing: float | None = None,
    fallback_target: float | None = None,
    weight_format: str | None = None,
    embedding_table: str = "per-row",
    outlier_channels: int = 4,
    weight_rounding: str = "gptq",
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Add `model.int8.onnx` to the bundle if it passes the accuracy gate; returns the report.

    The report (`accuracy.int8.json` and `.md`) is written either way; on failure any INT8 model is
    removed from the bundle and GateError says which languages failed.
    """
    progress = progress or Progress(enabled=False)
    bundle = Bundle.open(path)
    fp32 = bundle.verify_file(bundle.models["fp32"])
    chosen, flags = resolve_preset(preset)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    texts = evaluation_texts(data)
    staging = bundle.path / f".{INT8_FILE}.partial"
    reference = BundleModel(bundle.path, "fp32")
    try:
        if method == "dynamic":
            with progress.step(f"quantizing to INT8 (preset {chosen}, per-channel {per_channel})"):
                settings = quantize_dynamic_int8(fp32, staging, chosen, per_channel, embedding_table=embedding_table)
        else:
            settings = quantize_faithful_int8(fp32, staging, chosen, reference, evaluation_texts(calibration),
                                              smoothing, fallback_target, progress, weight_format,
                                              outlier_channels, weight_rounding)
        candidate = BundleModel(bundle.path, "fp32", model_path=staging)
        with progress.bar("comparing INT8 with FP32", len(texts)) as advance:
            report = compare(reference, candidate, texts, advance=advance)
        report["candidate"] = INT8_FILE
        failure = gate_failure(report, min_agreement, min_cosine)
        stored: list[str] = []
        if failure is None:
            with progress.step("storing the INT8 model"):
                stored = store_model(staging, bundle.path / INT8_FILE)
            bundle.models["int8"] = INT8_FILE
        else:
            _drop_int8(bundle)
    finally:
        staging.unlink(missing_ok=True)
    reports = write_report(report, bundle.path, REPORT_STEM)
    for name in stored + reports:
        bundle.manifest["files"][name] = file_record(bundle.path / name)
    bundle.manifest["quantization"] = {
        **settings, "cpu_flags": flags, "passed": failure is None,
        "gate": {"min_agreement": min_agreement, "min_cosine": min_cosine},
        "data": str(data) if data is not None else "built-in sample",
        "report": {"overall": report["overall"], "files": reports},
    }
    bundle.save_manifest()
    if failure is not None:
        raise GateError(f"INT8 model rejected, the bundle keeps FP32 only: {failure} (report: "
                        f"{bundle.path / reports[1]}); try --method faithful or --per-channel, or lower --min-agreement knowingly")
    return report
