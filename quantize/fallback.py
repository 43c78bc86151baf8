"""Sensitivity-driven FP32 fallback: keep the fewest weight MatMuls in FP32 that meet an agreement target
on calibration text."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx

from mbert_edge.runtime import Runner
from mbert_edge.runtime.accuracy import Figures, compare
from mbert_edge.tasks import TASKS
from mbert_edge.textdata import TextSet

from .graph import embedding_layers, linear_layers
from .rewrite import rewrite


def _score(
    model: onnx.ModelProto, task: str, reference: Runner, texts: TextSet, outputs: dict[str, list[np.ndarray]]
) -> Figures:
    candidate = reference.with_graph(model.SerializeToString(), "fallback candidate")
    return compare(task, reference, candidate, texts, reference_outputs=outputs)["overall"]


def _meets(task: str, overall: Figures, target: float) -> bool:
    return (overall["agreement"] if TASKS[task].labelled else overall["min_cosine"]) >= target


def choose_fallback(
    model: onnx.ModelProto,
    options: dict[str, Any],
    task: str,
    reference: Runner,
    calibration: TextSet,
    target: float,
    advance: Callable[[int], None] = lambda n: None,
) -> tuple[list[str], dict[str, float]]:
    """(layers to keep in FP32, each layer's sensitivity) for `rewrite(model, **options)`. Sensitivity is
    the mean |output change| when that layer alone is quantized; the most sensitive are kept in FP32, as
    few as reach `target` (agreement, or min cosine for embeddings) on the calibration text (bisection)."""
    layers = linear_layers(model) + embedding_layers(model)
    outputs = {name: reference.head_outputs(texts) for name, texts in calibration.texts.items()}
    sensitivity: dict[str, float] = {}
    for layer in layers:
        alone = rewrite(model, fp32_layers=set(layers) - {layer}, **options)
        sensitivity[layer] = _score(alone, task, reference, calibration, outputs)["mean_abs_diff"]
        advance(1)
    ranked = sorted(layers, key=sensitivity.__getitem__, reverse=True)
    low, high = 0, len(layers)  # invariant: keeping ranked[:high] in FP32 meets the target
    while low < high:
        middle = (low + high) // 2
        if _meets(
            task,
            _score(rewrite(model, fp32_layers=set(ranked[:middle]), **options), task, reference, calibration, outputs),
            target,
        ):
            high = middle
        else:
            low = middle + 1
    return ranked[:high], sensitivity
