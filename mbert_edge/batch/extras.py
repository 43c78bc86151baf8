"""The optional dependencies of batch inference, and the one-line fix when one is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from mbert_edge.errors import MbertEdgeError


def require(module: str, extra: str) -> ModuleType:
    """Import `module`, or fail with one line naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MbertEdgeError(
            f"this needs the [{extra}] extra ({exc.name or module} is missing): pip install 'mbert-edge[{extra}]'"
        ) from exc
