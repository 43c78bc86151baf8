"""Batch inference over Parquet / JSON Lines / CSV files, on one machine or on a Ray cluster.

Needs the `batch` extra (pyarrow); Ray needs the `ray` extra. Nothing here is imported by `mbert_edge`
itself, and the modules import pyarrow and Ray only when used, so the CLI works without either.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    """`ray_predictor` on first use, so importing the package needs no pyarrow."""
    if name != "ray_predictor":
        raise AttributeError(f"module 'mbert_edge.batch' has no attribute {name!r}")
    from mbert_edge.batch.predictor import ray_predictor

    return ray_predictor


__all__ = ["ray_predictor"]
