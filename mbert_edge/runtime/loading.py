"""`mbert_edge.load`: the right runtime class for a bundle's task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..bundle import Bundle
from .classifier import Classifier
from .embedder import Embedder
from .model import TaskModel
from .token_classifier import TokenClassifier

TASK_CLASSES: dict[str, type[TaskModel]] = {cls.task: cls for cls in (Classifier, TokenClassifier, Embedder)}


def load(path: str | Path | Bundle, **kwargs: Any) -> TaskModel:
    """Open the bundle at `path` with the class for its task (same keyword arguments as the classes)."""
    bundle = path if isinstance(path, Bundle) else Bundle.open(path)
    return TASK_CLASSES[bundle.task](bundle, **kwargs)
