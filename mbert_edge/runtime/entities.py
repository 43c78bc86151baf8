"""Token scores -> entities, in the conventions of the Hugging Face token-classification pipeline.

Written here (not imported) because the runtime must not depend on transformers; the rules are the
pipeline's so that results agree with it: which tokens start a word, how "first"/"max"/"average" pick a
word's label, how B-/I- tags group into entities, and which fields each result carries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Entity = dict[str, Any]


@dataclass
class Token:
    """One token of a whole text (after merging windows), with its label probabilities."""

    token: str
    id: int
    start: int
    end: int
    scores: np.ndarray
    index: int


def _tag(label: str) -> tuple[str, str]:
    """("B" | "I", entity type); a label without a B-/I- prefix continues like I-."""
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


def _word_entity(
    group: list[dict[str, Any]], strategy: str, labels: Sequence[str], decode: Callable[[list[str]], str]
) -> Entity:
    """One word's label from its tokens: the first token's, the most confident token's, or the mean scores'."""
    if strategy == "first":
        scores = group[0]["scores"]
    elif strategy == "max":
        scores = max(group, key=lambda t: t["scores"].max())["scores"]
    else:
        scores = np.nanmean(np.stack([t["scores"] for t in group]), axis=0)
    best = int(scores.argmax())
    return {
        "entity": labels[best],
        "score": float(scores[best]),
        "word": decode([t["word"] for t in group]),
        "start": group[0]["start"],
        "end": group[-1]["end"],
    }


def _group(entities: list[Entity], decode: Callable[[list[str]], str]) -> list[Entity]:
    """Adjacent entities of one type join unless the next starts with B-; the group's score is the mean."""
    groups: list[list[Entity]] = []
    for entity in entities:
        bi, tag = _tag(entity["entity"])
        if groups and bi != "B" and _tag(groups[-1][-1]["entity"])[1] == tag:
            groups[-1].append(entity)
        else:
            groups.append([entity])
    return [
        {
            "entity_group": g[0]["entity"].split("-", 1)[-1],
            "score": float(np.nanmean([e["score"] for e in g])),
            "word": decode([e["word"] for e in g]),
            "start": g[0]["start"],
            "end": g[-1]["end"],
        }
        for g in groups
    ]


def entities(
    text: str,
    tokens: list[Token],
    labels: Sequence[str],
    strategy: str,
    decode: Callable[[list[str]], str],
    unk_id: int,
    subword_prefix: str | None,
    ignore_labels: Sequence[str] = ("O",),
) -> list[Entity]:
    """The entities of `text` under aggregation `strategy` (one of `mbert_edge.tasks.AGGREGATIONS`), with character offsets
    into `text`."""
    pre: list[dict[str, Any]] = []
    for t in tokens:
        reference = text[t.start : t.end]
        if subword_prefix:  # a word-aware tokenizer: a piece whose text is shorter than the token is "##..."
            is_subword = len(t.token) != len(reference)
        else:  # the pipeline's fallback for tokenizers without a continuation prefix
            is_subword = t.start > 0 and " " not in text[t.start - 1 : t.start + 1]
        word = t.token
        if t.id == unk_id:
            word, is_subword = reference, False
        pre.append(
            {
                "word": word,
                "scores": t.scores,
                "start": t.start,
                "end": t.end,
                "index": t.index,
                "is_subword": is_subword,
            }
        )
    if strategy in ("none", "simple"):
        found = []
        for p in pre:
            best = int(p["scores"].argmax())
            found.append(
                {
                    "entity": labels[best],
                    "score": float(p["scores"][best]),
                    "index": p["index"],
                    "word": p["word"],
                    "start": p["start"],
                    "end": p["end"],
                }
            )
    else:
        words: list[list[dict[str, Any]]] = []
        for p in pre:
            if words and p["is_subword"]:
                words[-1].append(p)
            else:
                words.append([p])
        found = [_word_entity(w, strategy, labels, decode) for w in words]
    if strategy != "none":
        found = _group(found, decode)
    return [e for e in found if e.get("entity", e.get("entity_group")) not in ignore_labels]
