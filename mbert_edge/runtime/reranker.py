"""Reranking with a cross-encoder bundle: the query and each document read together, one relevance logit each, as
sentence-transformers' `CrossEncoder.rank` and text-embeddings-inference's `/rerank` give them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from ..errors import BundleError
from .classifier import Classifier
from .model import PerText
from .scores import sigmoid
from .textinput import as_text_list, check_count


class Reranker(Classifier):
    """Rank documents by their relevance to a query with a cross-encoder bundle (a sequence-classification head
    with one logit, e.g. mMARCO's multilingual MiniLM or bge-reranker).

    >>> reranker = Reranker("cross-encoder-bundle/")
    >>> reranker.rank("Wo ist der Bahnhof?", ["Der Bahnhof ist links.", "Il pleut."])
    [{'index': 0, 'score': 0.97}, {'index': 1, 'score': 0.02}]
    """

    def __init__(self, path: str | Path, precision: str = "auto", **kwargs: Any) -> None:
        super().__init__(path, precision, **kwargs)
        if len(self.labels) != 1:
            raise BundleError(
                f"bundle {self.bundle.path} has {len(self.labels)} labels ({', '.join(self.labels)}); a reranker "
                "has one relevance logit: classify pairs with Classifier instead"
            )

    def scores(
        self,
        query: str,
        documents: str | Sequence[str],
        raw_scores: bool = False,
        batch_size: int = 32,
        truncation: str | None = None,
    ) -> np.ndarray:
        """Each document's relevance to `query`, in the documents' order (as `rank` scores them; one document may be
        a str)."""
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}")
        docs = cast(list[str], as_text_list(documents)[0])  # texts, not pairs: as_text_list took no pairs
        return self.pair_scores([(query, doc) for doc in docs], raw_scores, batch_size, truncation)

    def pair_scores(
        self,
        pairs: Sequence[tuple[str, str]],
        raw_scores: bool = False,
        batch_size: int = 32,
        truncation: str | None = None,
    ) -> np.ndarray:
        """Each (query, document) pair's relevance, the queries may differ (as `rank` scores a query's documents):
        how `mbert-edge batch --query-column` scores a table's rows, all pairs batched together."""
        if not isinstance(raw_scores, bool):
            raise TypeError(f"raw_scores must be a bool, got {type(raw_scores).__name__}")
        if not pairs:
            return np.zeros(0, np.float32)

        def best_window(items: list[Any], per_text: PerText) -> np.ndarray:
            return np.array([max(float(output.reshape(-1)[0]) for output in outputs) for _, outputs in per_text])

        logits = self._call(list(pairs), batch_size, truncation or "window", best_window)
        return np.asarray(logits if raw_scores else sigmoid(logits))

    def rank(
        self,
        query: str,
        documents: str | Sequence[str],
        top_k: int | None = None,
        return_documents: bool = False,
        raw_scores: bool = False,
        batch_size: int = 32,
        truncation: str | None = None,
    ) -> list[dict[str, Any]]:
        """`{"index", "score"}` per document (`"text"` too with `return_documents`), best first, the `top_k` best
        (None: all). Scores are the sigmoid of the relevance logit (`raw_scores`: the logit). All (query,
        document) pairs run batched together. A document longer than the model reads is read in windows with
        the query in each, and its best window counts (`truncation="window"`, the default); "only_second" reads
        its head alone, "longest_first" cuts the longer of query and document first."""
        check_count("top_k", top_k, allow_none=True)
        docs = cast(list[str], as_text_list(documents)[0])  # texts, not pairs: as_text_list took no pairs
        scores = self.scores(query, docs, raw_scores, batch_size, truncation)
        order = np.argsort(-scores, kind="stable")[:top_k]
        return [
            {"index": int(i), "score": float(scores[i]), **({"text": docs[i]} if return_documents else {})}
            for i in order
        ]
