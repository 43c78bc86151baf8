"""`mbert-edge quantize`: INT8 from the bundle's fused FP32 graph, then the accuracy gate, always."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mbert_edge.bundle import Bundle, Quantization, check_writable, weights_file
from mbert_edge.errors import GateError
from mbert_edge.export.storage import store_model
from mbert_edge.progress import Progress
from mbert_edge.quantization import QuantizationConfig
from mbert_edge.runtime import Runner
from mbert_edge.runtime.accuracy import Report, compare, gate_failure, write_report
from mbert_edge.tasks import TASKS
from mbert_edge.textdata import model_texts

from .dynamic import quantize_dynamic_int8
from .faithful import quantize_faithful_int8
from .presets import resolve_preset

INT8_FILE = "model.int8.onnx"
REPORT_STEM = "accuracy.int8"
ADVICE = {
    "faithful": "try --calibration with a few hundred sentences of your domain, or --fallback-target 0.99, "
    "or lower --min-agreement knowingly",
    "dynamic": "try the default --method faithful, or lower --min-agreement knowingly",
}


def _drop_int8(bundle: Bundle) -> None:
    bundle.models.pop("int8", None)
    for name in (INT8_FILE, weights_file(INT8_FILE)):
        bundle.manifest.files.pop(name, None)
        (bundle.path / name).unlink(missing_ok=True)


def quantize_bundle(
    path: str | Path, config: QuantizationConfig | None = None, progress: Progress | None = None
) -> Report:
    """Add `model.int8.onnx` to the bundle if it passes the accuracy gate; returns the report.

    The report (`accuracy.int8.json` and `.md`) is written either way; on failure any INT8 model is
    removed from the bundle and GateError says which languages failed. The manifest records `config` as
    carried out (preset and weight format resolved for this machine).
    """
    config = config or QuantizationConfig()
    progress = progress or Progress(enabled=False)
    bundle = Bundle.open(path)
    check_writable(bundle.path, "the INT8 model")
    fp32 = bundle.verify_file(bundle.models["fp32"])
    preset, flags = resolve_preset(config.preset)
    config = replace(config, preset=preset, min_agreement=config.agreement_threshold)
    texts = model_texts(config.data, bundle.manifest)
    calibration = (
        model_texts(config.faithful.calibration, bundle.manifest) if config.method == "faithful" else None
    )  # read before work
    staging = bundle.path / f".{INT8_FILE}.partial"
    reference = Runner.open(bundle, "fp32")
    try:
        if calibration is None:  # dynamic: scales come from each batch at run time
            with progress.step(f"quantizing to INT8 (preset {preset}, {config.dynamic.describe()})"):
                config, chosen = quantize_dynamic_int8(fp32, staging, config)
        else:
            config, chosen = quantize_faithful_int8(
                fp32, staging, config, bundle.task, reference, calibration, progress
            )
        candidate = reference.with_graph(staging, INT8_FILE)
        with progress.bar("comparing INT8 with FP32", len(texts)) as advance:
            report = compare(bundle.task, reference, candidate, texts, advance=advance)
        failure = gate_failure(report, config.agreement_threshold, config.min_cosine)
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
    bundle.record_files(stored + reports)
    bundle.manifest.quantization = Quantization(
        config, flags, failure is None, dict(report["overall"]), reports, chosen
    )
    bundle.save()
    if failure is not None:
        threshold = TASKS[bundle.task].gate_option
        advice = ADVICE[config.method].replace("--min-agreement", threshold)
        raise GateError(
            f"INT8 model rejected, the bundle keeps FP32 only: {failure} (report: {bundle.path / reports[1]}); {advice}"
        )
    return report
