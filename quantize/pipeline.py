"""`mbert-edge quantize`: INT8 from the bundle's fused FP32 graph, then the accuracy gate, always."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mbert_edge.bundle import Bundle, file_record
from mbert_edge.errors import MbertEdgeError
from mbert_edge.progress import Progress
from mbert_edge.session import BundleModel
from mbert_edge.textdata import TextSet, builtin_sample, load_textset

from .int8 import quantize_dynamic_int8, resolve_preset
from .report import DEFAULT_MIN_AGREEMENT, DEFAULT_MIN_COSINE, compare, gate_failure, write_report

INT8_FILE = "model.int8.onnx"
REPORT_STEM = "accuracy.int8"


class GateError(MbertEdgeError):
    """The INT8 model disagrees with the float model beyond the threshold; the bundle keeps FP32 only."""


def evaluation_texts(data: str | Path | None) -> TextSet:
    """`--data` when given (labelled pairs allowed), else the built-in multilingual sample."""
    return load_textset(data) if data is not None else builtin_sample()


def _drop_int8(bundle: Bundle) -> None:
    bundle.models.pop("int8", None)
    bundle.manifest["files"].pop(INT8_FILE, None)
    (bundle.path / INT8_FILE).unlink(missing_ok=True)


def quantize_bundle(
    path: str | Path,
    per_channel: bool = True,
    preset: str = "auto",
    data: str | Path | None = None,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    min_cosine: float = DEFAULT_MIN_COSINE,
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
    texts = evaluation_texts(data)
    staging = bundle.path / f".{INT8_FILE}.partial"
    try:
        with progress.step(f"quantizing to INT8 (preset {chosen}, per-channel {per_channel})"):
            settings = quantize_dynamic_int8(fp32, staging, chosen, per_channel)
        reference = BundleModel(bundle.path, "fp32")
        candidate = BundleModel(bundle.path, "fp32", model_path=staging)
        with progress.bar("comparing INT8 with FP32", len(texts)) as advance:
            report = compare(reference, candidate, texts, advance=advance)
        report["candidate"] = INT8_FILE
        failure = gate_failure(report, min_agreement, min_cosine)
        if failure is None:
            os.replace(staging, bundle.path / INT8_FILE)
            bundle.models["int8"] = INT8_FILE
        else:
            _drop_int8(bundle)
    finally:
        staging.unlink(missing_ok=True)
    reports = write_report(report, bundle.path, REPORT_STEM)
    for name in ([INT8_FILE] if failure is None else []) + reports:
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
                        f"{bundle.path / reports[1]}); try --per-channel, or lower --min-agreement knowingly")
    return report
