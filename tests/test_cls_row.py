"""The last layer keeps only the [CLS] row when the output reads nothing else: same logits, fewer rows."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from mbert_edge import Embedder
from mbert_edge.bundle import MANIFEST_NAME
from mbert_edge.export.cls_row import keep_cls_row
from mbert_edge.export.fusion import fuse


def _manifest(bundle) -> dict:
    return json.loads((bundle / MANIFEST_NAME).read_text())


@pytest.fixture(scope="module")
def fused_classifier(tmp_path_factory, seqcls_checkpoint) -> onnx.ModelProto:
    """The tiny classifier exported and fused, without the [CLS]-row rewrite."""
    import torch
    from transformers import BertForSequenceClassification

    folder = tmp_path_factory.mktemp("cls-row")
    model = BertForSequenceClassification.from_pretrained(seqcls_checkpoint, attn_implementation="eager").eval()
    ids = torch.ones((1, 8), dtype=torch.long)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    torch.onnx.export(
        model,
        (ids, ids, ids * 0),
        str(folder / "raw.onnx"),
        input_names=names,
        output_names=["logits"],
        dynamic_axes={n: {0: "b", 1: "s"} for n in names},
        opset_version=17,
        dynamo=False,
    )
    fuse(folder / "raw.onnx", folder / "fused.onnx", 2, 32, 2, cls_row=False)
    return onnx.load(str(folder / "fused.onnx"))


def _logits(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)[0]


def test_cls_row_rewrite_keeps_the_logits(fused_classifier):
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 60, size=(3, 11))
    mask = np.ones_like(ids)
    mask[1, 7:], mask[2, 3:] = 0, 0  # padded rows of different lengths
    feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    pruned = onnx.ModelProto()
    pruned.CopyFrom(fused_classifier)
    assert keep_cls_row(pruned)
    assert sum(n.name.endswith(".cls_row") for n in pruned.graph.node) == 2
    assert np.abs(_logits(pruned, feed) - _logits(fused_classifier, feed)).max() < 1e-5
    probe = onnx.ModelProto()  # the last feed-forward output now has one row per text
    probe.CopyFrom(pruned)
    last_ffn = [n for n in probe.graph.node if n.op_type == "MatMul"][-1].output[0]
    probe.graph.output.append(onnx.helper.make_tensor_value_info(last_ffn, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    assert session.run([last_ffn], feed)[0].shape[:2] == (3, 1)
    assert not keep_cls_row(pruned)  # done once; the pattern is gone


def test_only_graphs_that_read_the_cls_row_are_rewritten(seqcls_bundle, token_bundle, encoder_bundle):
    assert _manifest(seqcls_bundle)["optimization"]["last_layer_cls_row_only"] is True
    assert _manifest(token_bundle)["optimization"]["last_layer_cls_row_only"] is False
    assert _manifest(encoder_bundle)["optimization"]["last_layer_cls_row_only"] is False  # mean pooling


def test_cls_pooling_embeddings_use_the_cls_row(tmp_path, encoder_checkpoint):
    from mbert_edge.export import export_bundle

    checkpoint = shutil.copytree(encoder_checkpoint, tmp_path / "cls-encoder")
    (checkpoint / "1_Pooling").mkdir()
    (checkpoint / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    bundle = export_bundle(str(checkpoint), tmp_path / "bundle").path
    assert _manifest(bundle)["optimization"]["last_layer_cls_row_only"] is True
    vectors = Embedder(bundle).encode(["Hallo Welt", "Bonjour tout le monde, ça va ?"])
    assert vectors.shape == (2, 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
