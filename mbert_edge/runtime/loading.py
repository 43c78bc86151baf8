"""`mbert_edge.load`: the right runtime class for a bundle's task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..bundle import Bundle
from ..tasks import TASKS
from .model import TaskModel


def load(path: str | Path | Bundle, **kwargs: Any) -> TaskModel:
    """Open the bundle at `path` with the class for its task, or for what the bundle is within it (a classifier
    with one relevance logit is a `Reranker`); same keyword arguments as the classes."""
    bundle = path if isinstance(path, Bundle) else Bundle.open(path)
    return TASKS[bundle.task].model_class().variant(bundle)(bundle, **kwargs)
