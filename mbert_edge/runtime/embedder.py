"""Sentence embeddings: pooling happens inside the exported graph, normalisation and long-text merging here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from tokenizers import Encoding

from ..tasks import FEATURE_EXTRACTION
from .model import PerText, TaskModel


class Embedder(TaskModel):
    """Embed texts with a feature-extraction bundle.

    >>> Embedder("bundle/").encode(["Hallo", "Hello"]).shape
    (2, 384)
    """

    task = FEATURE_EXTRACTION.name

    def encode(
        self, texts: str | Sequence[str], batch_size: int = 32, normalize: bool = True, truncation: str | None = None
    ) -> np.ndarray:
        """Float32 embeddings, shape (n, hidden); one vector for a single string. `normalize` scales each
        to unit length (cosine similarity is then a dot product). A text longer than the max length is
        read in overlapping windows: their pooled vectors are averaged weighted by token count (max
        pooling takes the element-wise max), as pooling over the whole text would."""
        if not isinstance(normalize, bool):  # "no" is truthy: it would normalise
            raise TypeError(f"normalize must be a bool, got {type(normalize).__name__}")
        combine = self._max if self.bundle.manifest.pooling == "max" else self._token_weighted

        def vectors(items: list[str], per_text: PerText) -> np.ndarray:
            rows = [combine(windows, outputs) for windows, outputs in per_text]
            stacked = np.array(rows, dtype=np.float32).reshape(len(rows), self.bundle.manifest.hidden_size)
            if normalize:
                stacked /= np.maximum(np.linalg.norm(stacked, axis=1, keepdims=True), 1e-12)
            return stacked

        encoded: np.ndarray = self._call(texts, batch_size, truncation, vectors)
        return encoded

    predict = encode  # every task model answers `predict` (the CLI, benchmarks and servers call it)
    iter_encode = TaskModel.iter_predict  # `encode` for a stream of texts, one vector at a time

    @staticmethod
    def _token_weighted(windows: list[Encoding], outputs: list[np.ndarray]) -> np.ndarray:
        if len(outputs) == 1:
            return outputs[0]
        return np.asarray(np.average(outputs, axis=0, weights=[len(w) for w in windows]))

    @staticmethod
    def _max(windows: list[Any], outputs: list[np.ndarray]) -> np.ndarray:
        return np.asarray(np.max(outputs, axis=0))
