"""mbert-edge: multilingual BERT on ordinary CPUs. The runtime needs only onnxruntime, tokenizers and numpy."""
from importlib.metadata import PackageNotFoundError, version

from .bundle import Bundle
from .classifier import Classifier
from .embedder import Embedder
from .errors import BundleError, DataError, ExportError, MbertEdgeError
from .loading import load
from .token_classifier import TokenClassifier

try:
    __version__ = version("mbert-edge")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"

__all__ = ["Bundle", "BundleError", "Classifier", "DataError", "Embedder", "ExportError", "MbertEdgeError",
           "TokenClassifier", "__version__", "load"]
