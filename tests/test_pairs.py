"""Pairs of texts: zero-shot classification over NLI bundles of every architecture, against transformers'
`zero-shot-classification` pipeline (the pair encodings and `Classifier` on pairs: test_architectures.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import NLI_LABELS
from families import write_family_checkpoint

from mbert_edge import ZeroShotClassifier
from mbert_edge.errors import BundleError

pytestmark = pytest.mark.slow  # exports a tiny NLI model per architecture

TEXTS = ["Der Zug hatte zwei Stunden Verspätung.", "Le gâteau au chocolat est délicieux.", "東京の天気は晴れ。"]
CANDIDATES = ["Reise", "cuisine", "weather", "sport", "politics"]


@pytest.fixture(scope="module")
def nli(tmp_path_factory):
    """(checkpoint, bundle) of a tiny NLI model per architecture, exported once."""
    from mbert_edge.export import export_bundle

    made: dict[str, tuple[Path, Path]] = {}

    def get(model_type: str) -> tuple[Path, Path]:
        if model_type not in made:
            root = tmp_path_factory.mktemp(f"nli-{model_type}")
            checkpoint = write_family_checkpoint(root / "checkpoint", model_type, "sequence-classification", NLI_LABELS)
            made[model_type] = checkpoint, export_bundle(str(checkpoint), root / "bundle").path
        return made[model_type]

    return get


def assert_same_ranking(ours: dict, theirs: dict) -> None:
    """The same sequence and label scores (to 1e-5), best first: labels whose scores differ by less than that may
    swap (the tiny random models give near ties)."""
    assert ours["sequence"] == theirs["sequence"]
    scores = dict(zip(theirs["labels"], theirs["scores"]))
    assert dict(zip(ours["labels"], ours["scores"])) == pytest.approx(scores, abs=1e-5)
    assert all(a >= b - 1e-5 for a, b in zip(ours["scores"], ours["scores"][1:]))


@pytest.mark.parametrize("model_type", ["bert", "distilbert", "roberta", "xlm-roberta"])
def test_zero_shot_agrees_with_the_pipeline(nli, model_type):
    import transformers

    checkpoint, bundle = nli(model_type)
    pipe = transformers.pipeline("zero-shot-classification", model=str(checkpoint), tokenizer=str(checkpoint))
    pipe.tokenizer.pad_token = pipe.tokenizer.pad_token or "<pad>"  # the RoBERTa folder names no special tokens
    model = ZeroShotClassifier(bundle, precision="fp32")
    assert (model.entailment_id, model.contradiction_id) == (2, 0)
    for options in ({}, {"multi_label": True}, {"hypothesis_template": "Es geht um {}."}):
        expected = pipe(TEXTS, candidate_labels=CANDIDATES, **options)
        got = model.predict(TEXTS, CANDIDATES, **options)
        for ours, theirs in zip(got, expected):
            assert_same_ranking(ours, theirs)
    alone = model.predict(TEXTS[0], "weather, sport")  # one text, labels as one comma-separated string
    assert_same_ranking(alone, pipe(TEXTS[0], candidate_labels="weather, sport"))
    one_label = model.predict(TEXTS[1], ["cuisine"])  # entailment against contradiction, as multi_label
    assert_same_ranking(one_label, pipe(TEXTS[1], candidate_labels=["cuisine"]))
    batched = model.predict(TEXTS, CANDIDATES, multi_label=True)
    for text, result in zip(TEXTS, batched):
        assert result["scores"] == pytest.approx(model.predict(text, CANDIDATES, multi_label=True)["scores"], abs=1e-6)


def test_zero_shot_refuses_what_it_cannot_do(nli_bundle, seqcls_bundle):
    model = ZeroShotClassifier(nli_bundle, precision="fp32")
    with pytest.raises(ValueError, match="has no \\{\\} where the label goes"):
        model.predict(TEXTS[0], CANDIDATES, hypothesis_template="This example is about it.")
    with pytest.raises(ValueError, match="candidate_labels is empty"):
        model.predict(TEXTS[0], " , ")
    with pytest.raises(TypeError, match="candidate_labels must be a str or a sequence of str"):
        model.predict(TEXTS[0], [1, 2])
    with pytest.raises(BundleError, match="has no entailment label \\(its labels: negative, neutral, positive\\)"):
        ZeroShotClassifier(seqcls_bundle)


def test_a_call_takes_texts_or_pairs_and_pair_truncations(seqcls_bundle):
    from mbert_edge import Classifier

    clf = Classifier(seqcls_bundle, precision="fp32")
    with pytest.raises(TypeError, match=r"texts\[1\]: a call takes texts or pairs of texts, not both"):
        clf.predict([("Guten Morgen", "Hallo"), "Bonjour"])
    with pytest.raises(TypeError, match=r"texts\[0\] must be str or a \(text, text_pair\) pair of str, got tuple"):
        clf.predict([("Guten Morgen", 1)])
    with pytest.raises(ValueError, match="truncation must be one of longest_first, only_first, only_second"):
        clf.predict(("Guten Morgen", "Hallo"), truncation="head")
    assert clf.predict(("Guten Morgen", "Hallo")) == clf.predict([{"text": "Guten Morgen", "text_pair": "Hallo"}])[0]
