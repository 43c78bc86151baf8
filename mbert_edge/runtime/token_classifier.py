"""Token classification (NER): entities with character offsets into the original text."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Encoding

from ..tasks import AGGREGATIONS, TOKEN_CLASSIFICATION
from .entities import Entity, Token, entities
from .model import PerText, TaskModel
from .scores import softmax
from .textinput import encodable


def merge_windows(windows: list[Encoding], outputs: list[np.ndarray], step: int) -> list[Token]:
    """The text's tokens once each, in order. Window `n` holds the text's tokens from `n * step` on (the
    tokenizer's overflowing windows advance by `step` tokens), which places each token in the text whatever
    offsets a window gives it (a byte-level BPE token that opens a window keeps its leading space there). A
    token seen in several overlapping windows takes its scores from the window where it sits furthest from an
    edge (the most context on both sides), so nothing is duplicated at a seam."""
    best: dict[int, tuple[int, Token]] = {}
    for number, (encoding, logits) in enumerate(zip(windows, outputs)):
        probabilities = softmax(logits)
        pieces, ids, last = encoding.tokens, encoding.ids, len(encoding) - 1  # each access copies from Rust
        sequence = encoding.sequence_ids  # None for the special tokens the tokenizer adds around the text
        first = sequence.index(0) if 0 in sequence else 0
        for position, (special, (start, end)) in enumerate(zip(encoding.special_tokens_mask, encoding.offsets)):
            if special:
                continue
            in_text = number * step + position - first
            margin = min(position, last - position)
            if in_text not in best or margin > best[in_text][0]:
                # index: the token's position in the whole text's encoding, as the pipeline's ([CLS] is 0)
                best[in_text] = (
                    margin,
                    Token(pieces[position], ids[position], start, end, probabilities[position], in_text + first),
                )
    return [best[key][1] for key in sorted(best)]


class TokenClassifier(TaskModel):
    """Find entities with a token-classification bundle.

    >>> TokenClassifier("bundle/").predict("Angela Merkel besuchte Paris.")
    [{'entity_group': 'PER', 'score': 0.99, 'word': 'Angela Merkel', 'start': 0, 'end': 13}, ...]
    """

    task = TOKEN_CLASSIFICATION.name
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
        ignore_labels: Sequence[str] | None = ("O",),
    ) -> list[Entity] | list[list[Entity]]:
        """Entities per text, as the Hugging Face token-classification pipeline gives them:
        `aggregation="none"` one `{"entity", "score", "index", "word", "start", "end"}` per token;
        `"simple"` groups adjacent tokens of one type into `{"entity_group", "score", "word", "start",
        "end"}`; `"first"`, `"max"`, `"average"` first settle each word's label from its tokens.
        `start`/`end` index the original string. Long texts are read whole in overlapping windows
        (`truncation="head"` reads only the first `max_length` tokens). `ignore_labels=None` is the default,
        as in the pipeline."""
        ignore_labels = ("O",) if ignore_labels is None else ignore_labels
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {aggregation!r}")

        def found(items: list[str], per_text: PerText) -> list[list[Entity]]:
            step = self.runner.window_step
            return [
                entities(
                    encodable(text),
                    merge_windows(windows, outputs, step),
                    self.labels,
                    aggregation,
                    self._decode,
                    self._unk_id,
                    self._subword_prefix,
                    ignore_labels,
                )
                for text, (windows, outputs) in zip(items, per_text)
            ]

        found_entities: list[Entity] | list[list[Entity]] = self._call(texts, batch_size, truncation, found)
        return found_entities
