"""Faithful INT8: per-token scales make a text's result independent of its batch-mates and padding."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from mbert_edge import Classifier
from mbert_edge.bundle import MANIFEST_NAME
from mbert_edge.quantize.faithful import embedding_layers, linear_layers, rewrite
from mbert_edge.quantize.pipeline import quantize_bundle
from mbert_edge.session import BundleModel
from mbert_edge.textdata import builtin_sample

SENTENCES = [s for group in builtin_sample().texts.values() for s in group]


@pytest.fixture(scope="module")
def faithful_bundle(tmp_path_factory, seqcls_bundle) -> Path:
    bundle = Path(shutil.copytree(seqcls_bundle, tmp_path_factory.mktemp("faithful") / "b"))
    quantize_bundle(bundle, method="faithful", min_agreement=0.0, fallback_target=0.99)
    return bundle


def test_all_fp32_rewrite_is_exact(tmp_path, seqcls_bundle):
    """With every layer kept FP32 the rewritten graph computes what the fused graph computes."""
    model = onnx.load(str(seqcls_bundle / "model.onnx"))
    keep = set(linear_layers(model)) | set(embedding_layers(model))
    onnx.save(rewrite(model, "s8", keep), str(tmp_path / "all_fp32.onnx"))
    reference = np.stack(BundleModel(seqcls_bundle, "fp32").raw_outputs(SENTENCES))
    rewritten = BundleModel(seqcls_bundle, "fp32", model_path=tmp_path / "all_fp32.onnx")
    assert np.abs(np.stack(rewritten.raw_outputs(SENTENCES)) - reference).max() <= 1e-5


def test_faithful_bundle_records_its_method(faithful_bundle):
    q = json.loads((faithful_bundle / MANIFEST_NAME).read_text())["quantization"]
    assert q["method"] == "faithful" and q["passed"] and q["smoothing"] == 0.5
    assert q["fallback_target"] == 0.99 and isinstance(q["fp32_layers"], list)
    assert len(q["sensitivity"]) == 2 * 4 + 1  # 2 layers x (QKV, out, FFN in, FFN out) + embeddings
    ops = {n.op_type for n in onnx.load(str(faithful_bundle / "model.int8.onnx")).graph.node}
    assert {"MatMulInteger", "MultiHeadAttention"} <= ops and "DynamicQuantizeLinear" not in ops


def test_batch_invariance(faithful_bundle):
    """One at a time vs batches of mixed lengths (with padding): identical logits and labels."""
    clf = Classifier(faithful_bundle)
    assert clf.precision == "int8"
    alone = np.stack([clf.logits(text) for text in SENTENCES])
    for batch_size in (4, 16, 64):
        batched = clf.logits(SENTENCES, batch_size=batch_size)
        assert np.abs(batched - alone).max() <= 1e-6
        assert (batched.argmax(1) == alone.argmax(1)).all()
    shuffled = np.random.default_rng(0).permutation(len(SENTENCES))
    mixed = clf.logits([SENTENCES[i] for i in shuffled], batch_size=8)
    assert np.abs(mixed - alone[shuffled]).max() <= 1e-6


def test_plain_dynamic_is_not_batch_invariant(tmp_path, seqcls_bundle):
    """The defect the faithful method fixes, shown on the same model: per-tensor scales see the batch."""
    bundle = Path(shutil.copytree(seqcls_bundle, tmp_path / "plain"))
    quantize_bundle(bundle, min_agreement=0.0)
    clf = Classifier(bundle)
    alone = np.stack([clf.logits(text) for text in SENTENCES])
    assert np.abs(clf.logits(SENTENCES, batch_size=16) - alone).max() > 1e-6
