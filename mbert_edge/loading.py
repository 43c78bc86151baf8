"""`mbert_edge.load`: the right runtime class for a bundle's task."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .bundle import Bundle
from .classifier import Classifier
from .embedder import Embedder
from .errors import BundleError
from .session import BundleModel

TASK_CLASSES: dict[str, type[BundleModel]] = {cls.task: cls for cls in (Classifier, Embedder)}


def load(path: str | Path, **kwargs: Any) -> BundleModel:
    """Open the bundle at `path` with the class for its task (same keyword arguments as the classes)."""
    task = Bundle.open(path).task
    if task not in TASK_CLASSES:
        raise BundleError(f"{path} is a {task} bundle; this version of the runtime serves "
                          f"{', '.join(TASK_CLASSES)} bundles")
    return TASK_CLASSES[task](path, **kwargs)
