"""Sentence embeddings: pooling happens inside the exported graph, normalisation and long-text merging here."""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from .session import BundleModel
from .textinput import as_text_list


class Embedder(BundleModel):
    """Embed texts with a feature-extraction bundle.

    >>> Embedder("bundle/").encode(["Hallo", "Hello"]).shape
    (2, 384)
    """

    task = "feature-extraction"

    def encode(
        self, texts: str | Sequence[str], batch_size: int = 32, normalize: bool = True, truncation: str | None = None
    ) -> np.ndarray:
        """Float32 embeddings, shape (n, hidden); one vector for a single string. `normalize` scales each
        to unit length (cosine similarity is then a dot product). A text longer than the max length is
        read in overlapping windows: their pooled vectors are averaged weighted by token count (max
        pooling takes the element-wise max), as pooling over the whole text would."""
        items, single = as_text_list(texts)
        combine = self._max if self.bundle.manifest["pooling"]["mode"] == "max" else self._token_weighted
        rows = [combine(windows, outputs) for windows, outputs in self._per_text(items, truncation, batch_size)]
        vectors = np.array(rows, dtype=np.float32).reshape(len(rows), self.bundle.manifest["hidden_size"])
        if normalize:
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors[0] if single else vectors

    @staticmethod
    def _token_weighted(windows: list[Any], outputs: list[np.ndarray]) -> np.ndarray:
        if len(outputs) == 1:
            return outputs[0]
        return np.average(outputs, axis=0, weights=[len(w) for w in windows])

    @staticmethod
    def _max(windows: list[Any], outputs: list[np.ndarray]) -> np.ndarray:
        return np.max(outputs, axis=0)

    def iter_encode(self, texts: Iterable[str], chunk_size: int = 1024, **kwargs: Any) -> Iterator[np.ndarray]:
        """`encode` for a stream of texts: one vector at a time, in order, with memory bounded by
        `chunk_size` texts. Takes `encode`'s keyword arguments."""
        return self._stream(lambda chunk: self.encode(chunk, **kwargs), texts, chunk_size)
