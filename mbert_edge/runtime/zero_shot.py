"""Zero-shot classification over an NLI bundle, as transformers' `zero-shot-classification` pipeline does it:
each text is the premise of one hypothesis per candidate label, and the model's entailment decides."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from string import Formatter
from typing import Any, cast

from ..errors import BundleError
from ..tasks import CONTRADICTION, ENTAILMENT
from .classifier import Classifier
from .scores import softmax
from .textinput import as_text_list

DEFAULT_TEMPLATE = "This example is {}."


def nli_label_ids(labels: Sequence[str], where: str) -> tuple[int, int]:
    """(entailment, contradiction) label ids. Entailment is the first label starting with "entail" (the pipeline's
    rule); contradiction is the label starting with "contradict", else the pipeline's choice (the first label, or
    the last when entailment is the first). BundleError when no label says entailment."""
    lowered = [label.lower() for label in labels]
    entailment = next((i for i, label in enumerate(lowered) if label.startswith(ENTAILMENT)), None)
    if entailment is None:
        raise BundleError(
            f"{where} has no entailment label (its labels: {', '.join(labels)}): zero-shot classification needs an "
            "NLI model, whose labels name entailment (and contradiction)"
        )
    named = next((i for i, label in enumerate(lowered) if label.startswith(CONTRADICTION)), None)
    return entailment, named if named is not None else (len(labels) - 1 if entailment == 0 else 0)


def candidates(candidate_labels: str | Sequence[str]) -> list[str]:
    """The candidate labels: a list, or one string of comma-separated labels (as the pipeline takes them)."""
    if isinstance(candidate_labels, str):
        labels = [label.strip() for label in candidate_labels.split(",") if label.strip()]
    elif isinstance(candidate_labels, Sequence):
        labels = list(candidate_labels)
        wrong = next((i for i, label in enumerate(labels) if not isinstance(label, str)), None)
        if wrong is not None:
            raise TypeError(f"candidate_labels[{wrong}] must be a str, got {type(labels[wrong]).__name__}")
    else:
        raise TypeError(f"candidate_labels must be a str or a sequence of str, got {type(candidate_labels).__name__}")
    if not labels:
        raise ValueError("candidate_labels is empty: give at least one label")
    return labels


def hypotheses(template: str, labels: Sequence[str]) -> list[str]:
    """`template` filled with each label, as the pipeline's `template.format(label)`; a template is refused unless
    it has exactly one plain field, `{}` or `{0}` (no other field, format spec or conversion: those fail, or
    pad a label to any width)."""
    if not isinstance(template, str):
        raise TypeError(f"hypothesis_template must be a str, got {type(template).__name__}")
    example = 'e.g. "This example is {}."'
    try:
        fields = [
            (name, spec, conversion) for _, name, spec, conversion in Formatter().parse(template) if name is not None
        ]
    except ValueError as exc:
        raise ValueError(f"hypothesis_template {template!r} is not a template ({exc}): {example}") from exc
    if len(fields) != 1 or fields[0] not in (("", "", None), ("0", "", None)):
        raise ValueError(
            f"hypothesis_template {template!r} must have one {{}} where the label goes and no other field: {example}"
        )
    return [template.format(label) for label in labels]


class ZeroShotClassifier(Classifier):
    """Classify texts into labels given at call time, with an NLI bundle (premise, hypothesis -> entailment,
    neutral, contradiction), with the `zero-shot-classification` pipeline's semantics and results.

    >>> zs = ZeroShotClassifier("xnli-bundle/")
    >>> zs.predict("Der Zug hatte zwei Stunden Verspätung.", ["travel", "cooking", "sport"])
    {'sequence': 'Der Zug hatte zwei Stunden Verspätung.', 'labels': ['travel', ...], 'scores': [0.91, ...]}
    """

    def __init__(self, path: str | Path, precision: str = "auto", **kwargs: Any) -> None:
        super().__init__(path, precision, **kwargs)
        self.entailment_id, self.contradiction_id = nli_label_ids(self.labels, f"bundle {self.bundle.path}")

    @classmethod
    def sharing(cls, classifier: Classifier) -> ZeroShotClassifier:
        """Zero-shot classification over an open classifier's session and tokenizer, not a second copy of the model:
        how the server answers /zero-shot beside /predict. BundleError when its labels name no entailment."""
        view = cls.__new__(cls)
        view.__dict__.update(vars(classifier))
        view.entailment_id, view.contradiction_id = nli_label_ids(view.labels, f"bundle {view.bundle.path}")
        return view

    def predict(  # type: ignore[override]
        self,
        texts: str | Sequence[str],
        candidate_labels: str | Sequence[str],
        hypothesis_template: str = DEFAULT_TEMPLATE,
        multi_label: bool = False,
        batch_size: int = 32,
        truncation: str | None = None,
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """`{"sequence", "labels", "scores"}` per text, labels best first. Each text is paired with
        `hypothesis_template` filled with each label; all pairs of all texts run batched together. Scores: the
        entailment logits softmaxed over the labels, or with `multi_label` (or a single label) each label's
        entailment against its contradiction alone. `truncation`: how a pair too long is cut (default
        "only_first": the text, never the hypothesis; "longest_first" where the text is too short for that)."""
        labels = candidates(candidate_labels)
        filled = hypotheses(hypothesis_template, labels)
        listed, single = as_text_list(texts)
        items = cast(list[str], listed)  # texts, not pairs: as_text_list took no pairs
        if not items:
            return []
        pairs = [(text, hypothesis) for text in items for hypothesis in filled]
        try:
            logits = self.logits(pairs, batch_size, truncation or "only_first")
        except ValueError:
            if truncation is not None:
                raise
            logits = self.logits(pairs, batch_size, "longest_first")  # a hypothesis longer than the text
        by_text = logits.reshape(len(items), len(labels), -1)
        if multi_label or len(labels) == 1:
            scores = softmax(by_text[..., [self.contradiction_id, self.entailment_id]])[..., 1]
        else:
            scores = softmax(by_text[..., self.entailment_id])
        results = []
        for text, row in zip(items, scores):
            best = list(reversed(row.argsort()))
            results.append({"sequence": text, "labels": [labels[i] for i in best], "scores": row[best].tolist()})
        return results[0] if single else results
