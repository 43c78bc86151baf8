"""Fill-mask: the likeliest tokens for each mask token of a text, in the conventions of the HF fill-mask pipeline.

The graph scores only the masked positions (gathered inside it at export): the vocabulary-wide head runs on those
rows alone, not on every token of every text."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BundleError
from ..tasks import FILL_MASK
from .model import PerText, TaskModel
from .scores import softmax
from .textinput import TextInput, check_count

Fill = dict[str, Any]


TOP_K = 5  # proposals per mask, as the pipeline's default


class FillMask(TaskModel):
    """Predict the tokens hidden behind mask tokens with a masked-language-model bundle (M-BERT's own head).

    >>> fill = FillMask("mbert-bundle/")
    >>> fill.predict("Paris is the [MASK] of France.", top_k=2)
    [{'score': 0.91, 'token': 12718, 'token_str': 'capital', 'sequence': 'Paris is the capital of France.'}, ...]
    """

    task = FILL_MASK.name
    default_truncation = "head"  # the masks must lie in the first window: the graph reads no other

    def __init__(self, path: str | Path, precision: str = "auto", **kwargs: Any) -> None:
        super().__init__(path, precision, **kwargs)
        special = self.bundle.manifest.special_tokens
        if "mask" not in special:
            raise BundleError(f"bundle {self.bundle.path} names no mask token; re-export it with this version")
        self.mask_token, self.mask_id = special["mask"].token, special["mask"].id
        self.probe = f"mbert-edge {self.mask_token}"
        self._pad_id = special["pad"].id

    def target_ids(self, targets: str | Sequence[str]) -> list[int]:
        """The token ids of `targets`, as the pipeline finds them: a token of the vocabulary as it is, else the first
        token of its tokenization; ValueError when none is left."""
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, Sequence) or not all(isinstance(t, str) for t in targets):
            raise TypeError("targets must be a str or a sequence of str")
        ids = []
        for target in targets:
            found = self.tokenizer.token_to_id(target)
            if found is None:
                pieces = self.tokenizer.encode(target, add_special_tokens=False).ids
                found = pieces[0] if pieces else None
            if found is not None:
                ids.append(found)
        if not ids:
            raise ValueError("targets has no token of the model's vocabulary: give at least one")
        return sorted(set(ids))

    def predict(
        self,
        texts: str | Sequence[str],
        top_k: int = TOP_K,
        targets: str | Sequence[str] | None = None,
        batch_size: int = 32,
        truncation: str | None = None,
    ) -> list[Fill] | list[list[Fill]] | list[list[list[Fill]]]:
        """For each text, `{"score", "token", "token_str", "sequence"}` per proposed token, best first, `top_k` of
        them (only among `targets` when given): a list for a text with one mask, a list per mask for a text with
        several (as the pipeline). A text longer than the max length is read to its first window (`truncation`
        "head", the only one), which must hold its masks; a text without a mask token raises ValueError."""
        check_count("top_k", top_k)
        if truncation not in (None, "head"):
            raise ValueError(
                f"fill-mask reads a text's first window only: truncation must be 'head', got {truncation!r}"
            )
        allowed = None if targets is None else np.asarray(self.target_ids(targets))

        def filled(items: list[TextInput], per_text: PerText) -> list[Any]:
            return [
                self._fills(index, windows[0], outputs[0], top_k, allowed)
                for index, (windows, outputs) in enumerate(per_text)
            ]

        results: list[Fill] | list[list[Fill]] | list[list[list[Fill]]] = self._call(texts, batch_size, "head", filled)
        return results

    def _fills(self, index: int, encoding: Any, logits: np.ndarray, top_k: int, allowed: np.ndarray | None) -> Any:
        ids = np.asarray(encoding.ids)
        positions = np.flatnonzero(ids == self.mask_id)
        if not positions.size:
            raise ValueError(f"text {index} has no {self.mask_token} token in its first {self.max_length} tokens")
        probabilities = softmax(logits)
        if allowed is not None:
            probabilities = probabilities[:, allowed]
        single = positions.size == 1
        rows = []
        for position, row in zip(positions, probabilities):
            best = _top(row, top_k)
            fills = []
            for choice in best:
                token = int(allowed[choice]) if allowed is not None else int(choice)
                sequence = ids.copy()
                sequence[position] = token
                sequence = sequence[sequence != self._pad_id]
                fills.append(
                    {
                        "score": float(row[choice]),
                        "token": token,
                        "token_str": self.tokenizer.decode([token]),
                        "sequence": self.tokenizer.decode(sequence.tolist(), skip_special_tokens=single),
                    }
                )
            rows.append(fills)
        return rows[0] if single else rows


def _top(row: np.ndarray, k: int) -> np.ndarray:
    """The indices of `row`'s `k` largest values, largest first: partitioned first, since sorting a whole
    vocabulary's scores (119,547 for M-BERT) for 5 of them costs more than the rest of the postprocessing."""
    if k < row.size:
        row_top = np.argpartition(-row, k - 1)[:k]
        return row_top[np.argsort(-row[row_top], kind="stable")]
    return np.argsort(-row, kind="stable")
