"""Sensitivity-driven FP32 fallback: keep the fewest weight MatMuls in FP32 that meet an agreement target
on calibration text."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx

from mbert_edge.session import BundleModel
from mbert_edge.textdata import TextSet

from .faithful import embedding_layers, linear_layers, rewrite
from .report import compare


def _score(model: onnx.ModelProto, reference: BundleModel, texts: TextSet, folder: Path,
           outputs: dict[str, list[np.ndarray]]) -> dict[str, Any]:
    path = folder / "candidate.onnx"
    onnx.save(model, str(path))
    candidate = BundleModel(reference.bundle.path, "fp32", model_path=path, verify_hashes=False)
    return compare(reference, candidate, texts, reference_outputs=outputs)["overall"]


def _meets(overall: dict[str, Any], target: float) -> bool:
    return overall["agreement"] >= target if "agreement" in overall else overall["min_cosine"] >= target


def choose_fallback(model: onnx.ModelProto, options: dict[str, Any], reference: BundleModel, calibration: TextSet,
                    target: float, advance: Callable[[int], None] = lambda n: None) -> tuple[list[str], dict[str, float]]:
    """(layers to keep in FP32, each layer's sensitivity) for `rewrite(model, **options)`. Sensitivity is
    the mean |output change| when that layer alone is quantized; the most sensitive are kept in FP32, as
    few as reach `target` (agreement, or min cosine for embeddings) on the calibration text (bisection)."""
    layers = linear_layers(model) + embedding_layers(model)
    with tempfile.TemporaryDirectory(dir=reference.bundle.path, prefix=".fallback-") as tmp:
        folder = Path(tmp)
        outputs = {name: reference.raw_outputs(texts) for name, texts in calibration.texts.items()}
        sensitivity = {}
        for layer in layers:
            alone = rewrite(model, fp32_layers=set(layers) - {layer}, **options)
            sensitivity[layer] = _score(alone, reference, calibration, folder, outputs)["mean_abs_diff"]
            advance(1)
        ranked = sorted(layers, key=sensitivity.get, reverse=True)
        low, high = 0, len(layers)  # invariant: keeping ranked[:high] in FP32 meets the target
        while low < high:
            middle = (low + high) // 2
            if _meets(_score(rewrite(model, fp32_layers=set(ranked[:middle]), **options), reference, calibration,
                             folder, outputs), target):
                high = middle
            else:
                low = middle + 1
    return ranked[:high], sensitivity
