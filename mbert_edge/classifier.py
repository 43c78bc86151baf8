"""Sequence classification: labels and scores in the conventions of the HF text-classification pipeline."""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .session import BundleModel
from .textinput import as_text_list

Prediction = dict[str, Any]


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


class Classifier(BundleModel):
    """Classify texts with a sequence-classification bundle.

    >>> clf = Classifier("bundle/")
    >>> clf.predict("Das war großartig!")
    {'label': 'POSITIVE', 'score': 0.97}
    """

    task = "sequence-classification"
    default_truncation = "head"  # a review's first 512 tokens usually decide it; windows cost more runs

    def __init__(self, path: str | Path, precision: str = "auto", **kwargs: Any) -> None:
        super().__init__(path, precision, **kwargs)
        labels = self.bundle.manifest["labels"]
        self.labels: list[str] = [labels[str(i)] for i in range(len(labels))]
        # The pipeline's rule: one logit or multi-label -> sigmoid per label, otherwise softmax.
        multi_label = self.bundle.manifest.get("problem_type") == "multi_label_classification"
        self._activation = _sigmoid if multi_label or len(self.labels) == 1 else _softmax

    def logits(self, texts: str | Sequence[str], batch_size: int = 32, truncation: str | None = None) -> np.ndarray:
        """Raw logits, shape (n, labels); a single row for a single string. Texts longer than the max
        length are cut to their head (`truncation="head"`; by default too, with a warning), or with
        `truncation="window"` read whole in overlapping windows whose logits are averaged."""
        items, single = as_text_list(texts)
        rows = [np.mean(outputs, axis=0) for _, outputs in self._per_text(items, truncation, batch_size)]
        stacked = np.array(rows, dtype=np.float32).reshape(len(rows), len(self.labels))
        return stacked[0] if single else stacked

    def predict_proba(self, texts: str | Sequence[str], batch_size: int = 32, truncation: str | None = None) -> np.ndarray:
        """Label probabilities, shape (n, labels) (softmax, or sigmoid for multi-label heads)."""
        return self._activation(self.logits(texts, batch_size, truncation))

    def predict(
        self, texts: str | Sequence[str], top_k: int | None = 1, batch_size: int = 32, truncation: str | None = None
    ) -> Prediction | list[Prediction] | list[list[Prediction]]:
        """`{"label", "score"}` per text; with `top_k` > 1 (or None for all labels) a list of them,
        best first. A single string gives a single result."""
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
        items, single = as_text_list(texts)
        probabilities = self.predict_proba(items, batch_size, truncation)
        k = len(self.labels) if top_k is None else min(top_k, len(self.labels))
        results: list[Any] = []
        for row in probabilities:
            order = np.argsort(-row, kind="stable")[:k]
            ranked = [{"label": self.labels[i], "score": float(row[i])} for i in order]
            results.append(ranked[0] if top_k == 1 else ranked)
        return results[0] if single else results

    def iter_predict(self, texts: Iterable[str], chunk_size: int = 1024, **kwargs: Any) -> Iterator[Any]:
        """`predict` for a stream of texts (a generator, a file): one result at a time, in order, with memory
        bounded by `chunk_size` texts. Takes `predict`'s keyword arguments."""
        return self._stream(lambda chunk: self.predict(chunk, **kwargs), texts, chunk_size)
