"""Sequence classification: labels and scores in the conventions of the HF text-classification pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import Bundle
from ..tasks import SEQUENCE_CLASSIFICATION
from .model import PerText, TaskModel
from .scores import sigmoid, softmax
from .textinput import TextInput, check_count

Prediction = dict[str, Any]


class Classifier(TaskModel):
    """Classify texts with a sequence-classification bundle.

    >>> clf = Classifier("bundle/")
    >>> clf.predict("Das war großartig!")
    {'label': 'POSITIVE', 'score': 0.97}
    """

    task = SEQUENCE_CLASSIFICATION.name
    default_truncation = "head"  # a review's first 512 tokens usually decide it; windows cost more runs
    labels: list[str]

    def __init__(self, path: str | Path, precision: str = "auto", **kwargs: Any) -> None:
        super().__init__(path, precision, **kwargs)
        # The pipeline's rule: one logit or multi-label -> sigmoid per label, otherwise softmax.
        multi_label = self.bundle.manifest.problem_type == "multi_label_classification"
        self._activation = sigmoid if multi_label or len(self.labels) == 1 else softmax

    @classmethod
    def variant(cls, bundle: Bundle) -> type[TaskModel]:
        """A `Reranker` for a bundle with one logit (a cross-encoder's relevance), else this class."""
        from .reranker import Reranker  # a subclass of this one

        return Reranker if len(bundle.manifest.labels or []) == 1 else cls

    def _logits(self, items: list[TextInput], per_text: PerText) -> np.ndarray:
        """One row per text: a long text's windows' logits are averaged."""
        rows = [np.mean(outputs, axis=0) for _, outputs in per_text]
        return np.array(rows, dtype=np.float32).reshape(len(rows), len(self.labels))

    def logits(
        self, texts: TextInput | Sequence[TextInput], batch_size: int = 32, truncation: str | None = None
    ) -> np.ndarray:
        """Raw logits, shape (n, labels); a single row for a single string or pair. Texts longer than the max
        length are cut to their head (`truncation="head"`; by default too, with a warning), or with
        `truncation="window"` read whole in overlapping windows whose logits are averaged. Pairs of texts
        (`(text, text_pair)` tuples or `{"text", "text_pair"}` dicts: a premise and a hypothesis, a question and a
        passage) are read as one input by the tokenizer's pair template, cut to the max length by
        `truncation="longest_first"` (the default, with a warning), `"only_first"` or `"only_second"`."""
        logits: np.ndarray = self._call(texts, batch_size, truncation, self._logits)
        return logits

    def predict_proba(
        self, texts: TextInput | Sequence[TextInput], batch_size: int = 32, truncation: str | None = None
    ) -> np.ndarray:
        """Label probabilities, shape (n, labels) (softmax, or sigmoid for multi-label heads)."""
        return self._activation(self.logits(texts, batch_size, truncation))

    def predict(
        self,
        texts: TextInput | Sequence[TextInput],
        top_k: int | None = 1,
        batch_size: int = 32,
        truncation: str | None = None,
    ) -> Prediction | list[Prediction] | list[list[Prediction]]:
        """`{"label", "score"}` per text or pair of texts (as `logits` reads them); with `top_k` > 1 (or None for
        all labels) a list of them, best first. A single string or pair gives a single result."""
        check_count("top_k", top_k, allow_none=True)
        k = len(self.labels) if top_k is None else min(top_k, len(self.labels))

        def ranked(items: list[TextInput], per_text: PerText) -> list[Any]:
            results = []
            for row in self._activation(self._logits(items, per_text)):
                best = [{"label": self.labels[i], "score": float(row[i])} for i in np.argsort(-row, kind="stable")[:k]]
                results.append(best[0] if top_k == 1 else best)
            return results

        predictions: Prediction | list[Prediction] | list[list[Prediction]] = self._call(
            texts, batch_size, truncation, ranked
        )
        return predictions
