"""Calibration for the faithful method: what real text shows at each weight MatMul's input (per-channel
peaks and X^T X), from the FP32 graph run through the runtime's own batching; and SmoothQuant's factors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mbert_edge.runtime import Runner
from mbert_edge.runtime.textinput import TextInput

from .graph import linear_inputs


@dataclass
class LayerStats:
    """What calibration text shows at one linear layer's input, over real (non-padding) tokens."""

    peak: np.ndarray  # per input channel, max |x|: smoothing and outlier channels
    hessian: np.ndarray  # sum of x^T x ([K, K], float64): GPTQ rounding
    rounded: dict[bytes, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # GPTQ results, reused


def layer_statistics(
    graph: onnx.ModelProto, folder: Path, runner: Runner, texts: list[TextInput], batch_size: int = 32
) -> dict[str, LayerStats]:
    """Each linear layer's input statistics over the real tokens of `texts`, from the FP32 graph `graph` (its
    weights left in their file in `folder`) run with `runner`'s tokenizer and batching (every layer input made a
    graph output)."""
    inputs = linear_inputs(graph)
    probe = onnx.ModelProto()
    probe.CopyFrom(graph)
    tensors = sorted(set(inputs.values()))
    for name in tensors:
        probe.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    # A file beside the weights it references (ONNX Runtime reads external weights only from the graph's folder),
    # not bytes in memory, which a model over 2 GiB cannot be.
    path = folder / ".calibration-probe.onnx"
    onnx.save(probe, str(path))
    try:
        prober = runner.with_graph(path, "calibration probe")
    finally:
        path.unlink(missing_ok=True)
    windows = prober.first_windows(texts)
    stats: dict[str, LayerStats] = {}
    for _, feed in prober.batches(windows, batch_size):
        outputs = prober.session.run(tensors, feed)
        real = feed["attention_mask"].astype(bool)
        for name, value in zip(tensors, outputs):
            x = value[real[:, : value.shape[1]]]  # the last layer may keep only the [CLS] row (export/cls_row.py)
            peak, moment = np.abs(x).max(axis=0), (x.T @ x).astype(np.float64)
            if name in stats:
                stats[name].peak = np.maximum(stats[name].peak, peak)
                stats[name].hessian += moment
            else:
                stats[name] = LayerStats(peak, moment)
    return {layer: stats[tensor] for layer, tensor in inputs.items()}


def smoothing_factors(model: onnx.ModelProto, stats: dict[str, LayerStats], alpha: float) -> dict[str, np.ndarray]:
    """SmoothQuant's per-input-channel factors s = max|x|^alpha / max|w|^(1 - alpha): dividing the
    activation by s and multiplying the weight rows by s moves outlier channels into the weights."""
    inits = {i.name: i for i in model.graph.initializer}
    factors = {}
    for node in model.graph.node:
        if node.name in stats:
            weight_peak = np.abs(numpy_helper.to_array(inits[node.input[1]])).max(axis=1)
            s = np.power(np.maximum(stats[node.name].peak, 1e-5), alpha) / np.power(
                np.maximum(weight_peak, 1e-5), 1 - alpha
            )
            factors[node.name] = np.clip(s, 1e-2, 1e2).astype(np.float32)
    return factors
