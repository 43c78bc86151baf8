"""Token classification (NER): entities with character offsets into the original text."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Encoding

from .entities import AGGREGATIONS, Entity, Token, entities
from .model import PerText, TaskModel
from .scores import softmax

def merge_windows(windows: list[Encoding], outputs: list[np.ndarray]) -> list[Token]:
    """The text's tokens once each, in order. A token seen in several overlapping windows takes its
    scores from the window where it sits furthest from an edge (the most context on both sides), so
    nothing is duplicated at a seam. Tokens are matched across windows by their character offsets."""
    best: dict[tuple[int, int, int], tuple[int, Token]] = {}
    for encoding, logits in zip(windows, outputs):
        probabilities = softmax(logits)
        pieces, ids, last = encoding.tokens, encoding.ids, len(encoding) - 1  # each access copies from Rust
        seen: dict[tuple[int, int], int] = {}
        for position, (special, (start, end)) in enumerate(zip(encoding.special_tokens_mask, encoding.offsets)):
            if special:
                continue
            repeat = seen[start, end] = seen.get((start, end), -1) + 1  # pieces sharing one span stay apart
            key = (start, end, repeat)
            margin = min(position, last - position)
            if key not in best or margin > best[key][0]:
                best[key] = (margin, Token(pieces[position], ids[position], start, end, probabilities[position], 0))
    tokens = [best[key][1] for key in sorted(best)]
    for index, token in enumerate(tokens, start=1):  # 1-based like the pipeline's, where [CLS] is 0
        token.index = index
    return tokens


class TokenClassifier(TaskModel):
    """Find entities with a token-classification bundle.

    >>> TokenClassifier("bundle/").predict("Angela Merkel besuchte Paris.")
    [{'entity_group': 'PER', 'score': 0.99, 'word': 'Angela Merkel', 'start': 0, 'end': 13}, ...]
    """

    task = "token-classification"
    labels: list[str]

    def __init__(self, path: str | Path, precision: str = "auto", **kwargs: Any) -> None:
        super().__init__(path, precision, **kwargs)
        self._unk_id: int = self.bundle.manifest.special_tokens["unk"].id
        self._subword_prefix: str | None = getattr(self.tokenizer.model, "continuing_subword_prefix", None)
        decoder = self.tokenizer.decoder
        self._decode = decoder.decode if decoder is not None else " ".join

    def predict(
        self,
        texts: str | Sequence[str],
        aggregation: str = "simple",
        batch_size: int = 32,
        truncation: str | None = None,
        ignore_labels: Sequence[str] = ("O",),
    ) -> list[Entity] | list[list[Entity]]:
        """Entities per text, as the Hugging Face token-classification pipeline gives them:
        `aggregation="none"` one `{"entity", "score", "index", "word", "start", "end"}` per token;
        `"simple"` groups adjacent tokens of one type into `{"entity_group", "score", "word", "start",
        "end"}`; `"first"`, `"max"`, `"average"` first settle each word's label from its tokens.
        `start`/`end` index the original string. Long texts are read whole in overlapping windows
        (`truncation="head"` reads only the first `max_length` tokens)."""
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {aggregation!r}")

        def found(items: list[str], per_text: PerText) -> list[list[Entity]]:
            return [entities(text, merge_windows(windows, outputs), self.labels, aggregation, self._decode,
                             self._unk_id, self._subword_prefix, ignore_labels)
                    for text, (windows, outputs) in zip(items, per_text)]

        return self._call(texts, batch_size, truncation, found)
