"""`mbert-edge quantize BUNDLE` with no options, as a new user runs it, on a classifier trained in the test:
the default (faithful INT8, gate 0.98) keeps the INT8 model, which is batch-invariant and agrees with FP32."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import label_config, needs_shared, run_cli

from mbert_edge.bundle import MANIFEST_NAME

pytestmark = pytest.mark.slow  # subprocesses, servers, Ray or fresh venvs: pytest -m 'not slow' skips them

# The built-in sample's languages: the gate's default text, so every decision it judges is a trained class.
LANGUAGES = [
    "eng",
    "deu",
    "fra",
    "spa",
    "ita",
    "por",
    "tur",
    "rus",
    "ell",
    "ara",
    "heb",
    "hin",
    "cmn",
    "jpn",
    "kor",
    "tha",
    "vie",
]


def train_language_id(folder: Path) -> Path:
    """A tiny BERT with the real mBERT vocabulary trained to tell 17 languages apart on Tatoeba (~20 s): real
    trained logits, confident on most texts and close on some, unlike a random head's near ties."""
    import torch
    import transformers

    vocab = needs_shared("mbert_vocab", "vocab.txt")
    tatoeba = needs_shared("tatoeba")
    texts, labels = [], []
    for label, lang in enumerate(LANGUAGES):
        lines = (tatoeba / f"{lang}.txt").read_text(encoding="utf-8").splitlines()[:120]
        texts += lines
        labels += [label] * len(lines)
    tokenizer = transformers.BertTokenizerFast(str(vocab), do_lower_case=False)
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=128,
        **label_config(LANGUAGES),
        architectures=["BertForSequenceClassification"],
    )
    model = transformers.BertForSequenceClassification(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)  # 5e-3: 0.68 after 3 epochs on an AMD EPYC; 3e-3: 0.95
    targets = torch.tensor(labels)
    for _ in range(3):
        order = torch.randperm(len(texts))
        for start in range(0, len(texts), 32):
            rows = order[start : start + 32]
            batch = tokenizer(
                [texts[i] for i in rows], padding=True, truncation=True, max_length=32, return_tensors="pt"
            )
            loss = model(**batch, labels=targets[rows]).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def trained_bundle(tmp_path_factory) -> Path:
    from mbert_edge.export import export_bundle

    checkpoint = train_language_id(tmp_path_factory.mktemp("langid"))
    return export_bundle(str(checkpoint), tmp_path_factory.mktemp("bundles") / "langid").path


def test_quantize_with_no_options_keeps_a_trained_classifiers_int8(trained_bundle):
    from mbert_edge import Classifier
    from mbert_edge.textdata import builtin_sample

    quantized = run_cli("quantize", str(trained_bundle))
    assert quantized.returncode == 0, quantized.stderr
    q = json.loads((trained_bundle / MANIFEST_NAME).read_text())["quantization"]
    assert q["passed"] and q["method"] == "faithful" and q["batch_invariant"] and q["gate"]["min_agreement"] == 0.98
    assert q["report"]["overall"]["agreement"] >= 0.98
    info = run_cli("info", str(trained_bundle))
    assert "faithful (batch-invariant)" in info.stdout, info.stdout
    sample = builtin_sample().texts
    texts = [t for group in sample.values() for t in group]
    truth = [lang for lang, group in sample.items() for _ in group]
    fp32, int8 = Classifier(trained_bundle, "fp32"), Classifier(trained_bundle)
    assert int8.precision == "int8"
    accuracy = np.mean([r["label"] == lang for r, lang in zip(fp32.predict(texts), truth)])
    assert accuracy >= 0.8, f"the test's classifier is undertrained ({accuracy:.2f}): the gate would judge noise"
    alone = np.concatenate([int8.logits([t]) for t in texts])
    np.testing.assert_allclose(int8.logits(texts), alone, atol=1e-6)  # batch-invariant, as the manifest says
