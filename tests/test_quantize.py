"""Fusion contract, INT8 quantization, the accuracy gate and `verify`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import run_cli

from mbert_edge import Classifier
from mbert_edge.bundle import MANIFEST_NAME, sha256_file
from mbert_edge.errors import FusionError, GateError
from mbert_edge.export.fusion import fuse
from mbert_edge.quantization import QuantizationConfig
from mbert_edge.quantize import pipeline
from mbert_edge.quantize.pipeline import quantize_bundle
from mbert_edge.runtime.accuracy import gate_failure
from mbert_edge.runtime.accuracy import markdown as pipeline_markdown
from mbert_edge.runtime.cpus import cpu_flags, int8_preset


def test_tiny_bert_fuses_fully(seqcls_bundle):
    optimization = json.loads((seqcls_bundle / MANIFEST_NAME).read_text())["optimization"]
    counts = optimization["fused_operators"]
    assert (
        counts["Attention"],
        counts["SkipLayerNormalization"],
        counts["EmbedLayerNormalization"],
        counts["Gelu"],
    ) == (2, 4, 1, 2)
    assert optimization["contract_holds"]
    assert optimization["parity"]["max_abs_diff"] <= 1e-4
    ops = {n.op_type for n in onnx.load(str(seqcls_bundle / "model.onnx")).graph.node}
    assert {"Attention", "EmbedLayerNormalization", "SkipLayerNormalization"} <= ops


def test_sdpa_graph_fails_the_contract(tmp_path, seqcls_checkpoint):
    """SDPA attention (transformers' default) exports a graph the optimizer cannot fuse: say so clearly."""
    import torch
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(seqcls_checkpoint, attn_implementation="sdpa").eval()
    ids = torch.ones((1, 8), dtype=torch.long)
    raw = tmp_path / "sdpa.onnx"
    torch.onnx.export(
        model,
        (ids, ids),
        str(raw),
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes={"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"}},
        opset_version=17,
        dynamo=False,
    )
    with pytest.raises(FusionError, match=r"Attention 0/2"):
        fuse(raw, tmp_path / "fused.onnx", 2, 32, 2)
    assert not (tmp_path / "fused.onnx").exists()
    counts, _ = fuse(raw, tmp_path / "fused.onnx", 2, 32, 2, allow_partial=True)
    assert counts["Attention"] == 0 and (tmp_path / "fused.onnx").exists()


def test_no_optimize_keeps_the_exported_graph(tmp_path, seqcls_checkpoint):
    from mbert_edge.export import export_bundle

    bundle = export_bundle(str(seqcls_checkpoint), tmp_path / "b", optimize=False)
    assert bundle.manifest.optimization is None
    ops = {n.op_type for n in onnx.load(str(bundle.path / "model.onnx")).graph.node}
    assert "Attention" not in ops


@pytest.fixture
def bundle_copy(tmp_path, seqcls_bundle) -> Path:
    return Path(shutil.copytree(seqcls_bundle, tmp_path / "bundle"))


def test_quantize_adds_a_gated_int8_model(bundle_copy):
    report = quantize_bundle(bundle_copy, QuantizationConfig(method="dynamic", min_agreement=0.0))
    assert report["kind"] == "labels" and 0 <= report["overall"]["agreement"] <= 1
    manifest = json.loads((bundle_copy / MANIFEST_NAME).read_text())
    assert manifest["models"]["int8"] == "model.int8.onnx"
    for name in ("model.int8.onnx", "model.int8.onnx.data", "accuracy.int8.json", "accuracy.int8.md"):
        assert manifest["files"][name]["sha256"] == sha256_file(bundle_copy / name)
    assert not list(bundle_copy.glob(".*partial*"))
    q = manifest["quantization"]
    assert q["passed"] and q["method"] == "dynamic" and q["per_channel"]
    assert q["preset"] == int8_preset(set(q["cpu_flags"]))
    assert set(report["groups"]) == set(json.loads((bundle_copy / "accuracy.int8.json").read_text())["groups"])
    ops = {n.op_type for n in onnx.load(str(bundle_copy / "model.int8.onnx")).graph.node}
    assert {"DynamicQuantizeMatMul", "QAttention", "QEmbedLayerNormalization"} & ops
    assert (bundle_copy / "model.int8.onnx.data").stat().st_size < (bundle_copy / "model.onnx.data").stat().st_size
    clf = Classifier(bundle_copy)
    assert clf.precision == "int8"
    assert np.isfinite(clf.predict_proba(["Hallo Welt", "你好"])).all()
    assert Classifier(bundle_copy, precision="fp32").precision == "fp32"


@pytest.mark.parametrize("table", ["per-row", "per-tensor"])
def test_embedding_table_scales(bundle_copy, table):
    """Per-row (default): an int8 table with one scale per row, the fused Attention kept; per-tensor: ONNX
    Runtime's QEmbedLayerNormalization. Both agree with FP32 and keep every row."""
    quantize_bundle(bundle_copy, QuantizationConfig.of("dynamic", min_agreement=0.0, embedding_table=table))
    assert json.loads((bundle_copy / MANIFEST_NAME).read_text())["quantization"]["embedding_table"] == table
    model = onnx.load(str(bundle_copy / "model.int8.onnx"))
    ops = {n.op_type for n in model.graph.node}
    rows = json.loads((bundle_copy / MANIFEST_NAME).read_text())["embedding_rows"]
    int8_tables = [i for i in model.graph.initializer if i.dims[:1] == [rows] and i.data_type == onnx.TensorProto.INT8]
    if table == "per-row":
        assert "QEmbedLayerNormalization" not in ops and "QAttention" in ops and len(int8_tables) == 1
    else:
        assert "QEmbedLayerNormalization" in ops and not int8_tables
    fp32, int8 = Classifier(bundle_copy, "fp32"), Classifier(bundle_copy, "int8")
    texts = ["Hallo Welt", "你好", "Das ist ein langer Satz über nichts.", "مرحبا"]
    assert np.abs(fp32.logits(texts) - int8.logits(texts)).max() < 0.5


def _negating_quantizer(real):
    """A deliberately broken quantizer: the real INT8 model with its logits negated (argmax becomes argmin)."""

    def broken(source, target, config, *args, **options):
        settings = real(source, target, config, *args, **options)
        model = onnx.load(str(target))
        output = model.graph.output[0].name
        for node in model.graph.node:
            node.output[:] = [f"{o}_raw" if o == output else o for o in node.output]
        model.graph.node.append(onnx.helper.make_node("Neg", [f"{output}_raw"], [output]))
        onnx.save(model, str(target))
        return settings

    return broken


@pytest.mark.parametrize("method, threshold", [("faithful", "0.98"), ("dynamic", "0.9")])
def test_gate_rejects_a_broken_int8_model(bundle_copy, monkeypatch, method, threshold):
    """With no options (faithful, gate 0.98) and with dynamic (its own default, 0.90), a broken model is refused."""
    quantize_bundle(bundle_copy, QuantizationConfig(min_agreement=0.0))  # a previous, good INT8 model must go too
    step = f"quantize_{method}_int8"
    monkeypatch.setattr(pipeline, step, _negating_quantizer(getattr(pipeline, step)))
    with pytest.raises(GateError, match=f"agreement 0.0000 < {threshold}\\b"):
        quantize_bundle(bundle_copy, None if method == "faithful" else QuantizationConfig(method=method))
    manifest = json.loads((bundle_copy / MANIFEST_NAME).read_text())
    assert "int8" not in manifest["models"] and "model.int8.onnx" not in manifest["files"]
    assert not (bundle_copy / "model.int8.onnx").exists()
    assert manifest["quantization"]["passed"] is False
    assert [p.name for p in bundle_copy.glob(".*")] == []
    assert Classifier(bundle_copy).precision == "fp32"


def test_embedding_bundle_gate_uses_cosine(tmp_path, encoder_bundle):
    bundle = Path(shutil.copytree(encoder_bundle, tmp_path / "enc"))
    report = quantize_bundle(bundle, QuantizationConfig(min_cosine=-1.0))
    assert report["kind"] == "embeddings" and {"mean_cosine", "min_cosine"} <= set(report["overall"])
    assert -1.0 <= report["overall"]["min_cosine"] <= report["overall"]["mean_cosine"] <= 1.0 + 1e-6
    with pytest.raises(GateError, match=r"min cosine 0\.\d{6} < 1\.0.*lower --min-cosine knowingly"):
        quantize_bundle(bundle, QuantizationConfig(min_cosine=1.0))


@pytest.mark.slow
def test_quantize_and_verify_cli(bundle_copy, tmp_path, monkeypatch):
    data = tmp_path / "data" / "tweets"
    data.mkdir(parents=True)
    (data / "val_text.txt").write_text("gut\nschlecht\nokay\nsuper\n", encoding="utf-8")
    (data / "val_labels.txt").write_text("2\n0\n1\n2\n", encoding="utf-8")
    quantized = run_cli("quantize", str(bundle_copy), "--min-agreement", "0", "--data", str(data.parent))
    assert quantized.returncode == 0, quantized.stderr
    assert "tweets/val" in quantized.stdout and "INT8 model added" in quantized.stdout
    out = tmp_path / "report.json"
    verified = run_cli("verify", str(bundle_copy), "--data", str(data.parent), "--out", str(out))
    assert verified.returncode == 0, verified.stderr
    row = json.loads(out.read_text())["groups"]["tweets/val"]
    assert row["texts"] == 4 and 0 <= row["accuracy_candidate"] <= 1 and 0 <= row["agreement"] <= 1
    fp32 = run_cli("verify", str(bundle_copy), "--precision", "fp32", "--data", str(data.parent), "--out", str(out))
    assert fp32.returncode == 0 and json.loads(out.read_text())["overall"]["agreement"] == 1.0
    step = "quantize_faithful_int8"  # a broken INT8 model, kept by --min-agreement 0, is what verify must catch
    monkeypatch.setattr(pipeline, step, _negating_quantizer(getattr(pipeline, step)))
    quantize_bundle(bundle_copy, QuantizationConfig(min_agreement=0.0))
    failing = run_cli("verify", str(bundle_copy), "--min-agreement", "0.9")
    assert failing.returncode == 1 and failing.stderr.strip().splitlines()[-1].startswith("Error: below the threshold")


def test_cpu_flags_and_presets(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor : 0\nflags : fpu sse avx2 avx512f avx512_vnni\n")
    assert {"avx2", "avx512_vnni"} <= cpu_flags(info)
    assert int8_preset({"avx2", "avx512_vnni"}) == "avx512-vnni"
    assert int8_preset({"avx2"}) == "avx2"
    assert int8_preset({"avx_vnni", "avx2"}) == "avx-vnni"


def _report(groups: dict[str, tuple[int, float]], shift: float = 0.02) -> dict:
    """An accuracy report with these (decisions, agreement) groups, pooled as compare() pools them."""
    rows = {name: {"texts": n, "decisions": n, "agreement": a, "logit_shift": shift} for name, (n, a) in groups.items()}
    n = sum(r["decisions"] for r in rows.values())
    pooled = sum(r["decisions"] * r["agreement"] for r in rows.values()) / n
    return {
        "kind": "labels",
        "reference": "model.onnx",
        "candidate": "model.int8.onnx",
        "groups": rows,
        "overall": {"texts": n, "decisions": n, "agreement": pooled, "logit_shift": shift},
    }


def test_gate_judges_small_groups_only_pooled():
    """A near tie flipping in a 2-text language (the built-in sample's size) is not a verdict on that language."""
    sample = {f"lang{i}": (4, 1.0) for i in range(16)} | {"tur": (2, 0.5)}
    report = _report(sample)
    assert gate_failure(report, 0.9, 0.98) is None
    assert "tur" in report["gate"]["small_groups"] and report["gate"]["judged_alone_from"] == 40
    assert "tur (small: pooled)" in pipeline_markdown(report)


def test_gate_refuses_what_the_evidence_shows():
    near_chance = _report({f"lang{i}": (4, 0.5) for i in range(15)})  # 60 decisions, half flipped
    assert gate_failure(near_chance, 0.9, 0.98).startswith("overall agreement 0.5000 < 0.9 (60 decisions)")
    assert "overall agreement 0.5000 < 0.98 (60 decisions, 95% upper bound 0.6" in gate_failure(near_chance, 0.98, 0.98)
    one_flip = _report({f"lang{i}": (4, 1.0) for i in range(14)} | {"tur": (4, 0.75)})  # 59 of 60 agree
    assert gate_failure(one_flip, 0.98, 0.98) is None  # 0.983 observed; too few decisions to say it is below
    large = _report({"french": (324, 0.95), "german": (324, 0.995)})  # a language large enough to judge alone
    assert "french agreement 0.9500 < 0.98 (324 decisions)" in gate_failure(large, 0.98, 0.98)
    moved = _report({f"lang{i}": (4, 1.0) for i in range(15)}, shift=1.2)  # no flips, but logits far off
    assert "logits moved 1.200 of their spread" in gate_failure(moved, 0.9, 0.98)
    assert gate_failure(moved, 0.0, 0.98) is None  # --min-agreement 0: keep whatever comes out


def test_the_fill_mask_gate_judges_the_top_5_too():
    """Each of a mask's 5 reference tokens is a decision: a pooled top-5 overlap well under the bar fails, a group
    large enough is judged alone, and 8 masks' worth of a small shortfall is not enough evidence."""

    def masked(groups: dict[str, tuple[int, float, float]]) -> dict:
        report = _report({name: (n, a) for name, (n, a, _) in groups.items()})
        for name, (_, _, top5) in groups.items():
            report["groups"][name]["top5_overlap"] = top5
        total = sum(n for n, _, _ in groups.values())
        report["overall"]["top5_overlap"] = sum(n * t for n, _, t in groups.values()) / total
        return report

    shuffled = masked({f"lang{i}": (4, 1.0, 0.6) for i in range(15)})  # top-1 kept, the rest of the 5 moved
    assert gate_failure(shuffled, 0.9, 0.98).startswith("overall top-5 overlap 0.6000 < 0.9 (300 tokens)")
    assert shuffled["gate"]["top5_bound"] == pytest.approx(0.6)
    large = masked({"french": (324, 0.99, 0.8), "german": (324, 0.99, 0.99)})
    assert "french top-5 overlap 0.8000 < 0.9" in gate_failure(large, 0.9, 0.98)
    slight = masked({f"lang{i}": (2, 1.0, 0.95) for i in range(4)})
    assert gate_failure(slight, 0.98, 0.98) is None  # 0.95 over 40 tokens: its upper bound reaches 0.98
    assert gate_failure(masked({"all": (60, 1.0, 0.6)}), 0.0, 0.98) is None
