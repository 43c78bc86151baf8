"""TokenClassifier against the Hugging Face token-classification pipeline on the same model."""

from __future__ import annotations

import shutil

import pytest
from conftest import NER_LABELS, label_config, minilm_path

from mbert_edge import TokenClassifier
from mbert_edge.tasks import AGGREGATIONS
from mbert_edge.textdata import builtin_sample

# Offsets must index the original string in every script: CJK, Arabic, Devanagari, accents, emoji.
TEXTS = [s for group in builtin_sample().texts.values() for s in group] + [
    "Zürich 🙂 und 東京 नमस्ते",
    "Ærøskøbing, Ελλάδα — مرحبا بالعالم!",
    "naïve café 👩‍👩‍👧 déjà-vu",
]


def pipeline_entities(checkpoint, texts, aggregation):
    import transformers

    model = transformers.AutoModelForTokenClassification.from_pretrained(checkpoint, attn_implementation="eager")
    tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint)
    pipe = transformers.pipeline(
        "token-classification", model=model.eval(), tokenizer=tokenizer, aggregation_strategy=aggregation
    )
    return [pipe(t) for t in texts]


def assert_same_entities(expected, actual):
    """Same entities, fields and offsets; scores to 1e-4 (ONNX Runtime vs PyTorch float error)."""
    assert len(actual) == len(expected)
    for want, got in zip(expected, actual):
        assert set(got) == set(want)
        assert {k: v for k, v in got.items() if k != "score"} == {k: v for k, v in want.items() if k != "score"}
        assert got["score"] == pytest.approx(float(want["score"]), abs=1e-4)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_agrees_with_hf_pipeline(token_bundle, token_checkpoint, aggregation):
    model = TokenClassifier(token_bundle)
    actual = model.predict(TEXTS, aggregation=aggregation, batch_size=5)
    expected = pipeline_entities(token_checkpoint, TEXTS, aggregation)
    for want, got in zip(expected, actual):
        assert_same_entities(want, got)
    assert sum(map(len, actual)) > len(TEXTS)  # the random head does find entities to compare
    if aggregation == "none":
        for text, tokens in zip(TEXTS, actual):
            for token in tokens:
                if not token["word"].startswith("##") and token["word"] != "[UNK]":
                    assert text[token["start"] : token["end"]] == token["word"]


@pytest.mark.slow  # exports the real MiniLM
def test_minilm_with_a_head_agrees_with_hf_pipeline(tmp_path):
    """A real pretrained (uncased, accent-stripping) encoder with a seeded token-classification head."""
    import torch
    import transformers

    from mbert_edge.export import export_bundle

    source = minilm_path()
    torch.manual_seed(0)
    model = transformers.BertForTokenClassification.from_pretrained(
        source,
        **label_config(NER_LABELS),
    )
    checkpoint = tmp_path / "minilm-ner"
    model.save_pretrained(checkpoint)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (source / name).exists():
            shutil.copy(source / name, checkpoint / name)
    bundle = export_bundle(str(checkpoint), tmp_path / "bundle").path
    runtime = TokenClassifier(bundle)
    for aggregation in ("simple", "first", "average"):
        expected = pipeline_entities(checkpoint, TEXTS, aggregation)
        for want, got in zip(expected, runtime.predict(TEXTS, aggregation=aggregation)):
            assert_same_entities(want, got)


def test_api_conventions(token_bundle):
    model = TokenClassifier(token_bundle)
    single = model.predict("Angela Merkel besuchte Paris.")
    assert isinstance(single, list) and all(isinstance(e, dict) for e in single)
    assert model.predict([]) == []
    assert model.predict(["", "   "]) == [[], []]
    everything = model.predict("Angela Merkel", aggregation="none", ignore_labels=())
    assert len(everything) == len(model.tokenizer.encode("Angela Merkel").ids) - 2
    with pytest.raises(ValueError, match="aggregation must be one of"):
        model.predict("x", aggregation="longest")
