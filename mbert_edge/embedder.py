"""Sentence embeddings: pooling and L2 normalisation happen inside the exported graph."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .session import BundleModel


class Embedder(BundleModel):
    """Embed texts with a feature-extraction bundle.

    >>> Embedder("bundle/").encode(["Hallo", "Hello"]).shape
    (2, 384)
    """

    task = "feature-extraction"

    def encode(self, texts: str | Sequence[str], batch_size: int = 32) -> np.ndarray:
        """L2-normalised float32 embeddings, shape (n, hidden); one vector for a single string."""
        return self._stacked(texts, batch_size, self.bundle.manifest["hidden_size"]).astype(np.float32, copy=False)
