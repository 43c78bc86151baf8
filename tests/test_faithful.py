"""Faithful INT8: per-token scales make a text's result independent of its batch-mates and padding."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from mbert_edge import Classifier
from mbert_edge.bundle import MANIFEST_NAME, Bundle
from mbert_edge.quantization import QuantizationConfig
from mbert_edge.quantize.calibration import LayerStats
from mbert_edge.quantize.gptq import round_gptq, round_nearest
from mbert_edge.quantize.graph import at_opset, embedding_layers, linear_layers
from mbert_edge.quantize.pipeline import quantize_bundle
from mbert_edge.quantize.rewrite import OPSET, Rewriter, rewrite
from mbert_edge.runtime import Runner
from mbert_edge.textdata import builtin_sample

SENTENCES = [s for group in builtin_sample().texts.values() for s in group]


def test_all_fp32_rewrite_is_exact(tmp_path, seqcls_bundle):
    """With every layer kept FP32 the rewritten graph computes what the fused graph computes."""
    model = onnx.load(str(seqcls_bundle / "model.onnx"))
    keep = set(linear_layers(model)) | set(embedding_layers(model))
    onnx.save(rewrite(model, "s8", keep), str(tmp_path / "all_fp32.onnx"))
    runner = Runner.open(Bundle.open(seqcls_bundle), "fp32")
    rewritten = runner.with_graph(tmp_path / "all_fp32.onnx", "all_fp32.onnx")
    reference = np.stack(runner.head_outputs(SENTENCES))
    assert np.abs(np.stack(rewritten.head_outputs(SENTENCES)) - reference).max() <= 1e-5


def test_faithful_bundle_records_its_method(faithful_bundle):
    q = json.loads((faithful_bundle / MANIFEST_NAME).read_text())["quantization"]
    assert q["method"] == "faithful" and q["passed"] and q["smoothing"] is None
    assert q["weight_rounding"] == "gptq" and q["outlier_channels"] == 4
    assert q["fallback_target"] == 0.99 and isinstance(q["fp32_layers"], list)
    assert len(q["sensitivity"]) == 2 * 4 + 1  # 2 layers x (QKV, out, FFN in, FFN out) + embeddings
    model = onnx.load(str(faithful_bundle / "model.int8.onnx"))
    ops = {n.op_type for n in model.graph.node}
    assert {
        "MatMulIntegerToFloat",
        "QuantizeLinear",
        "MultiHeadAttention",
    } <= ops and "DynamicQuantizeLinear" not in ops
    # One quantization block per row (opset 21): no reshaping of activations around QuantizeLinear.
    assert {o.version for o in model.opset_import if o.domain == ""} == {OPSET} and "Reshape" not in ops
    activations = {n.input[0] for n in model.graph.node if n.op_type == "MatMulIntegerToFloat"}
    blocks = [
        {a.name: a.i for a in n.attribute}.get("block_size", 0)
        for n in model.graph.node
        if n.op_type == "QuantizeLinear" and n.output[0] in activations
    ]
    assert len(blocks) == len(activations) and min(blocks) > 1


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
    quantize_bundle(bundle, QuantizationConfig(method="dynamic", min_agreement=0.0))
    clf = Classifier(bundle)
    alone = np.stack([clf.logits(text) for text in SENTENCES])
    assert np.abs(clf.logits(SENTENCES, batch_size=16) - alone).max() > 1e-6


def _activations(rows: int = 400, channels: int = 64, seed: int = 0) -> np.ndarray:
    """Correlated activations with two outlier channels, as BERT's LayerNorm outputs have."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, channels)) @ rng.normal(size=(channels, channels)) / 8
    x[:, [5, 40]] *= 40
    return x.astype(np.float32)


def test_gptq_rounding_lowers_output_error():
    """GPTQ keeps the integer grid (same scales, levels in range) and lowers ||X W - X W_q|| below nearest
    on activations that use few directions (real ones do: hidden states are strongly correlated)."""
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(400, 16)) @ rng.normal(size=(16, 64)) + 0.05 * rng.normal(size=(400, 64))).astype(np.float32)
    weight = rng.normal(size=(64, 48)).astype(np.float32)
    hessian = x.T.astype(np.float64) @ x
    errors = {}
    for name, (levels, scale) in {
        "nearest": round_nearest(weight, 127),
        "gptq": round_gptq(weight, hessian, 127),
    }.items():
        assert np.array_equal(levels, np.round(levels)) and np.abs(levels).max() <= 127
        errors[name] = np.linalg.norm(x @ weight - x @ (levels * scale))
    assert np.allclose(round_gptq(weight, hessian, 127)[1], round_nearest(weight, 127)[1])
    assert errors["gptq"] < 0.6 * errors["nearest"]


def _per_token_error(x: np.ndarray, weight: np.ndarray, outliers: int) -> float:
    """|per_token_matmul(x) - x @ weight| through ONNX Runtime, with `outliers` FP32 channels."""
    stats = {"layer": LayerStats(np.abs(x).max(axis=0), x.T.astype(np.float64) @ x)}
    r = Rewriter("u8", stats=stats, outlier_channels=outliers, gptq=False)
    r.per_token_matmul("x", weight, "y", "layer")
    graph = helper.make_graph(
        r.nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        r.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return float(np.abs(session.run(None, {"x": x})[0] - x @ weight).mean())


def test_outlier_channels_go_through_fp32():
    """Two outlier channels inflate every token's scale; keeping them FP32 cuts the error several-fold."""
    x, weight = _activations(), np.random.default_rng(2).normal(size=(64, 48)).astype(np.float32)
    without, with_two = _per_token_error(x, weight, 0), _per_token_error(x, weight, 2)
    assert with_two < without / 4


def test_pair_limited_weights_are_exact_at_full_codes():
    """p8 levels keep |w_2i| + |w_2i+1| <= 128, so ONNX Runtime's integer product of codes up to 255 is exact
    on every CPU (AVX2's u8 x s8 multiply-add sums those pairs in 16 bits); unconstrained 8-bit levels there
    need not be. GPTQ keeps the limit too."""
    rng = np.random.default_rng(3)
    weight = rng.standard_t(3, size=(256, 96)).astype(np.float32)
    x = rng.normal(size=(512, 256))
    for levels, _ in (round_nearest(weight, 127, pair_limit=128), round_gptq(weight, x.T @ x, 127, pair_limit=128)):
        assert np.abs(levels).max() <= 127 and (np.abs(levels[0::2]) + np.abs(levels[1::2])).max() <= 128
        codes = rng.integers(200, 256, size=(64, 256)).astype(np.uint8)
        graph = helper.make_graph(
            [helper.make_node("MatMulInteger", ["a", "w", "a_zero", "w_zero"], ["y"])],
            "g",
            [helper.make_tensor_value_info("a", TensorProto.UINT8, [None, 256])],
            [helper.make_tensor_value_info("y", TensorProto.INT32, None)],
            [
                onnx.numpy_helper.from_array(levels.astype(np.int8), "w"),
                onnx.numpy_helper.from_array(np.array(0, np.uint8), "a_zero"),
                onnx.numpy_helper.from_array(np.array(0, np.int8), "w_zero"),
            ],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        assert np.array_equal(session.run(None, {"a": codes})[0], codes.astype(np.int64) @ levels.astype(np.int64))


def test_faithful_gives_onnx_tools_the_graph_without_its_weights(tmp_path, seqcls_bundle, monkeypatch):
    """ONNX's version converter and a session built from bytes take a model as one protobuf message, 2 GiB at most
    (xlm-roberta-large is 2.2 GB in FP32): the faithful method gives the converter the graph alone and calibrates
    through a graph file beside the weights, so neither ever holds them; no probe file is left behind."""
    from onnx import version_converter

    inline, probes = [], []
    convert, with_graph = version_converter.convert_version, Runner.with_graph

    def converting(model, version):
        inline.append(max((len(t.raw_data) for t in model.graph.initializer), default=0))
        return convert(model, version)

    def opening(self, model, name):
        probes.append((name, model))
        return with_graph(self, model, name)

    monkeypatch.setattr(version_converter, "convert_version", converting)
    monkeypatch.setattr(Runner, "with_graph", opening)
    copy = Path(shutil.copytree(seqcls_bundle, tmp_path / "b"))
    quantize_bundle(copy, QuantizationConfig(min_agreement=0.0))
    assert inline and max(inline) < 1024  # the bundle keeps every tensor of 1 KB or more in model.onnx.data
    calibration = [model for name, model in probes if name == "calibration probe"]
    assert calibration and all(isinstance(m, Path) and m.parent == copy for m in calibration)
    assert not any(p.name.startswith(".") for p in copy.iterdir())
    assert Bundle.open(copy).models["int8"] == "model.int8.onnx"


def test_at_opset_declares_the_standard_domain_when_absent():
    """A graph of contrib operators only (no standard-domain opset entry) gets one, at the asked version."""
    graph = helper.make_graph(
        [helper.make_node("Gelu", ["x"], ["y"], domain="com.microsoft")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("com.microsoft", 1)])
    converted = at_opset(model, OPSET)
    assert {o.domain: o.version for o in converted.opset_import} == {"com.microsoft": 1, "": OPSET}
