"""`mbert_edge.load`: the right runtime class for a bundle's task."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .bundle import Bundle
from .classifier import Classifier
from .embedder import Embedder
from .session import BundleModel
from .token_classifier import TokenClassifier

TASK_CLASSES: dict[str, type[BundleModel]] = {cls.task: cls for cls in (Classifier, TokenClassifier, Embedder)}


def load(path: str | Path, **kwargs: Any) -> BundleModel:
    """Open the bundle at `path` with the class for its task (same keyword arguments as the classes)."""
    return TASK_CLASSES[Bundle.open(path).task](path, **kwargs)
