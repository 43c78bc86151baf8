"""The runtime: onnxruntime, tokenizers and numpy only. It reads bundles and never imports the export or
quantize tooling. `runner` feeds graphs; `model` is the task classes' shared base."""

from .classifier import Classifier
from .embedder import Embedder
from .fill_mask import FillMask
from .loading import load
from .model import TaskModel
from .question_answerer import QuestionAnswerer
from .reranker import Reranker
from .runner import Runner
from .token_classifier import TokenClassifier
from .zero_shot import ZeroShotClassifier

__all__ = [
    "Classifier",
    "Embedder",
    "FillMask",
    "QuestionAnswerer",
    "Reranker",
    "Runner",
    "TaskModel",
    "TokenClassifier",
    "ZeroShotClassifier",
    "load",
]
