"""OpenVINO behind the two calls `mbert_edge.runtime.Runner` makes of an ONNX Runtime session (`get_inputs`,
`run`), so the benchmarks feed either engine through one runner, one batching and one tokenizer.
Needs the `peers` extra (`pip install 'mbert-edge[peers]'`)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class InputInfo:
    """What the runner reads of a graph input (ONNX Runtime's `NodeArg` has the same `name`)."""

    name: str


class OpenVINOSession:
    """One OpenVINO compiled model on the CPU. `precision` is OpenVINO's inference precision: "f32" by default,
    so results are comparable with ONNX Runtime's FP32; None leaves the CPU plugin's own choice (bf16 on CPUs
    with avx512_bf16 or AMX). Thread-safe: each calling thread gets its own infer request."""

    def __init__(
        self,
        model: str | Path | Any,
        threads: int,
        precision: str | None = "f32",
        config: Mapping[str, Any] | None = None,
    ) -> None:
        import openvino as ov

        settings: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        if precision is not None:
            settings["INFERENCE_PRECISION_HINT"] = precision
        settings.update(config or {})
        core = ov.Core()
        self.compiled = core.compile_model(str(model) if isinstance(model, Path) else model, "CPU", settings)
        self._inputs = [InputInfo(port.get_any_name()) for port in self.compiled.inputs]
        self._local = threading.local()

    @property
    def inference_precision(self) -> str:
        """The precision the CPU plugin runs at ("f32", "bf16", ...)."""
        precision = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        return precision.to_string() if hasattr(precision, "to_string") else str(precision)

    def get_inputs(self) -> list[InputInfo]:
        return self._inputs

    def run(self, output_names: Sequence[str] | None, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """All outputs, in the model's order, as arrays this call owns (`output_names` must be None)."""
        if output_names is not None:
            raise ValueError("OpenVINOSession.run returns every output; pass None")
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        result = request.infer(dict(feed))
        return [np.array(result[port]) for port in self.compiled.outputs]
