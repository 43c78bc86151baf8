"""mbert-edge: multilingual BERT on ordinary CPUs. The runtime needs only onnxruntime, tokenizers and numpy."""

from typing import Any

from .bundle import Bundle, Manifest
from .errors import (
    BundleError,
    DataError,
    ExportError,
    FusionError,
    GateError,
    MbertEdgeError,
    QuantizeError,
    RequestError,
    TrimError,
    WindowError,
)
from .quantization import QuantizationConfig
from .runtime import (
    Classifier,
    Embedder,
    FillMask,
    QuestionAnswerer,
    Reranker,
    TokenClassifier,
    ZeroShotClassifier,
    load,
)


def __getattr__(name: str) -> Any:
    """`__version__` on first use: importlib.metadata would lengthen every cold start, which needs no version."""
    if name != "__version__":
        raise AttributeError(f"module 'mbert_edge' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mbert-edge")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "0.0.0+source"


__all__ = [
    "Bundle",
    "BundleError",
    "Classifier",
    "DataError",
    "Embedder",
    "ExportError",
    "FillMask",
    "FusionError",
    "GateError",
    "Manifest",
    "MbertEdgeError",
    "QuantizationConfig",
    "QuantizeError",
    "QuestionAnswerer",
    "RequestError",
    "Reranker",
    "TokenClassifier",
    "TrimError",
    "WindowError",
    "ZeroShotClassifier",
    "__version__",
    "load",
]
