"""Export: ONNX graph + tokenizer + manifest, parity with PyTorch, atomic writes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from mbert_edge import Classifier
from mbert_edge.bundle import MANIFEST_NAME, sha256_file
from mbert_edge.errors import BundleError, ExportError
from mbert_edge.export import export_bundle
from mbert_edge.textdata import builtin_sample


def test_builtin_sample_is_multilingual():
    sample = builtin_sample()
    assert len(sample) >= 40 and len(sample.texts) >= 10
    assert {"rus", "ell", "ara", "heb", "hin", "cmn", "kor", "tha"} <= set(sample.texts)


def test_sequence_classification_bundle(seqcls_bundle):
    manifest = json.loads((seqcls_bundle / MANIFEST_NAME).read_text())
    assert manifest["task"] == "sequence-classification"
    assert manifest["labels"] == {"0": "negative", "1": "neutral", "2": "positive"}
    assert manifest["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert manifest["max_length"] == 128
    parity = manifest["export"]["parity"]
    assert 0 <= parity["max_abs_diff"] <= 1e-4
    pairs = {f"pairs/{lang}" for lang in builtin_sample(pairs=True).texts}  # a classifier reads pairs too
    assert set(parity["languages"]) == set(builtin_sample().texts) | pairs
    for name, record in manifest["files"].items():
        assert sha256_file(seqcls_bundle / name) == record["sha256"]
    assert {"torch", "transformers", "onnxruntime", "tokenizers"} <= set(manifest["versions"])
    tokenizer = json.loads((seqcls_bundle / "tokenizer.json").read_text())
    assert tokenizer["padding"] is None and tokenizer["truncation"] is None


def test_graph_has_dynamic_batch_and_sequence(seqcls_bundle):
    graph = onnx.load(str(seqcls_bundle / "model.onnx"), load_external_data=False).graph
    for value in graph.input:
        dims = value.type.tensor_type.shape.dim
        assert [d.dim_param for d in dims] == ["batch", "sequence"]
    assert next(d.dim_param for d in graph.output[0].type.tensor_type.shape.dim) == "batch"


def test_feature_extraction_is_pooled_in_the_graph(encoder_bundle):
    """Pooling is in the graph; normalisation is not (the runtime merges long texts' windows first)."""
    import onnxruntime as ort

    manifest = json.loads((encoder_bundle / MANIFEST_NAME).read_text())
    assert manifest["task"] == "feature-extraction"
    assert manifest["pooling"] == {"mode": "mean"}
    assert manifest["export"]["parity"]["max_abs_diff"] <= 1e-4
    session = ort.InferenceSession(str(encoder_bundle / "model.onnx"))
    feed = {i.name: np.ones((3, 7), dtype=np.int64) for i in session.get_inputs()}
    (embeddings,) = session.run(None, feed)
    assert embeddings.shape == (3, 32)
    assert np.abs(np.linalg.norm(embeddings, axis=1) - 1).min() > 1e-3


def test_extra_data_joins_the_parity_report(tmp_path, seqcls_checkpoint):
    data = tmp_path / "data"
    data.mkdir()
    (data / "xx.txt").write_text("eins zwei drei\nquatre cinq\n", encoding="utf-8")
    bundle = export_bundle(str(seqcls_checkpoint), tmp_path / "out", data=data)
    assert bundle.manifest.export.parity.languages["data:xx"].sentences == 2
    # Only what the manifest lists: the traced and fused intermediates (and their weights) are gone.
    assert {p.name for p in bundle.path.iterdir()} == set(bundle.manifest.files) | {MANIFEST_NAME}


def test_failed_parity_leaves_nothing(tmp_path, seqcls_checkpoint):
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="differs from PyTorch"):
        export_bundle(str(seqcls_checkpoint), out, atol=-1.0)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_force(tmp_path, seqcls_checkpoint, seqcls_bundle):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user file")
    with pytest.raises(BundleError, match="--force"):
        export_bundle(str(seqcls_checkpoint), out)
    assert (out / "keep.txt").exists()
    bundle = export_bundle(str(seqcls_checkpoint), out, force=True)
    assert not (out / "keep.txt").exists() and (bundle.path / MANIFEST_NAME).exists()

    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(seqcls_checkpoint, checkpoints / "model")
    for holder in (checkpoints, checkpoints / "model"):  # --force must not delete what it exports
        with pytest.raises(BundleError, match="holds the input"):
            export_bundle(str(checkpoints / "model"), holder, force=True)
    assert sorted(p.name for p in (checkpoints / "model").iterdir()) == sorted(
        p.name for p in seqcls_checkpoint.iterdir()
    )


@pytest.mark.slow
def test_sigterm_leaves_nothing_half_written(tmp_path, seqcls_checkpoint):
    """SIGTERM unwinds like Ctrl-C: the staging folder goes, the exit code says so."""
    export = subprocess.Popen(
        [sys.executable, "-m", "mbert_edge", "export", str(seqcls_checkpoint), str(tmp_path / "b")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent,
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".b.partial-*")):
        assert export.poll() is None and time.monotonic() < deadline, export.stderr.read()
        time.sleep(0.01)
    export.send_signal(signal.SIGTERM)
    assert export.wait(timeout=120) == 128 + signal.SIGTERM
    assert export.stderr.read().strip().splitlines()[-1] == "Error: stopped by SIGTERM"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_killed_runs_staging_folder_goes_with_the_next_run(tmp_path, seqcls_checkpoint):
    """SIGKILL runs no cleanup: the next export to the same folder removes the staging folder its dead process
    left, and leaves a live process's alone."""
    command = [sys.executable, "-m", "mbert_edge", "export", str(seqcls_checkpoint), str(tmp_path / "b")]
    export = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=Path(__file__).parent)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".b.partial-*")):
        assert export.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    export.kill()
    export.wait(timeout=60)
    abandoned = list(tmp_path.glob(".b.partial-*"))
    assert len(abandoned) == 1 and abandoned[0].name.startswith(f".b.partial-{export.pid}-")
    live = tmp_path / f".b.partial-{os.getpid()}-another-run"
    live.mkdir()
    assert subprocess.run(command, capture_output=True, cwd=Path(__file__).parent).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["b", live.name])


def test_new_head_with_labels(tmp_path, encoder_checkpoint, seqcls_checkpoint):
    bundle = export_bundle(
        str(encoder_checkpoint), tmp_path / "b", task="sequence-classification", labels=[" no", "yes "]
    )
    assert bundle.manifest.labels == ["no", "yes"]
    again = export_bundle(
        str(encoder_checkpoint), tmp_path / "again", task="sequence-classification", labels=["no", "yes"]
    )
    texts = ["Guten Morgen", "Quel bonheur !"]
    assert Classifier(bundle.path).predict(texts, top_k=None) == Classifier(again.path).predict(
        texts, top_k=None
    )  # seeded
    for checkpoint, task, labels, message in [
        (encoder_checkpoint, "auto", ["a", "b"], "a feature-extraction export has none"),
        (encoder_checkpoint, "sequence-classification", ["a", "a"], "distinct, non-empty"),
        (encoder_checkpoint, "sequence-classification", ["a", " "], "distinct, non-empty"),
        (
            seqcls_checkpoint,
            "auto",
            ["a", "b"],
            "BertForSequenceClassification head has 3 outputs but --labels names 2",
        ),
    ]:
        with pytest.raises(ExportError, match=message):
            export_bundle(str(checkpoint), tmp_path / "c", task=task, labels=labels)


def test_a_head_for_another_task_is_said_and_a_foreign_tokenizer_refused(tmp_path, seqcls_checkpoint):
    with pytest.warns(UserWarning, match="BertForSequenceClassification; --task token-classification .* not trained"):
        export_bundle(str(seqcls_checkpoint), tmp_path / "b", task="token-classification")
    bigger = tmp_path / "bigger"
    shutil.copytree(seqcls_checkpoint, bigger)
    with (bigger / "vocab.txt").open("a", encoding="utf-8") as vocab:
        vocab.write("".join(f"extra{i}\n" for i in range(100)))
    with pytest.raises(ExportError, match=r"tokenizer has \d+ tokens but its model \d+ embedding rows"):
        export_bundle(str(bigger), tmp_path / "c")
    assert not (tmp_path / "c").exists()
    vocab = (bigger / "vocab.txt").read_text(encoding="utf-8").splitlines()
    (bigger / "vocab.txt").write_text("\n".join(t for t in vocab if t != "[CLS]") + "\n", encoding="utf-8")
    with pytest.raises(ExportError, match="cls_token not found in the vocabulary; name the vocabulary's own"):
        export_bundle(str(bigger), tmp_path / "c")


def test_max_length_is_checked(tmp_path, seqcls_checkpoint):
    for length in (4096, 2):  # 2 leaves no room for text beside the two special tokens
        with pytest.raises(ExportError, match=r"outside 3\.\.128"):
            export_bundle(str(seqcls_checkpoint), tmp_path / "b", max_length=length)


def test_pickle_weights_warn(tmp_path, seqcls_checkpoint):
    import torch
    import transformers

    folder = tmp_path / "pickle"
    model = transformers.BertForSequenceClassification.from_pretrained(seqcls_checkpoint)
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")  # the legacy pickle format
    for name in ("vocab.txt", "tokenizer_config.json"):
        (folder / name).write_bytes((seqcls_checkpoint / name).read_bytes())
    assert (folder / "pytorch_model.bin").exists() and not (folder / "model.safetensors").exists()
    with pytest.warns(UserWarning, match="pickle weights"):
        bundle = export_bundle(str(folder), tmp_path / "b", optimize=False)
    assert bundle.manifest.export.parity.max_abs_diff <= 1e-4


def test_fusion_leaves_weights_in_their_own_files(tmp_path, seqcls_checkpoint):
    """Over protobuf's 2 GiB the exporter writes each weight to a file of its own; fusion reads only the weights
    it rewrites (ONNX Runtime's fusions copy the whole model into each shape inference: xlm-roberta-large peaked
    at 17.6 GiB with its weights loaded, 6.5 GiB without) and the fused graph still computes the same."""
    import onnxruntime as ort

    from mbert_edge.export.fusion import fuse

    unfused = export_bundle(str(seqcls_checkpoint), tmp_path / "unfused", optimize=False)
    work = tmp_path / "intermediate"
    work.mkdir()
    onnx.save_model(
        onnx.load(str(unfused.path / "model.onnx")),
        str(work / "traced.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=False,
        size_threshold=0,
    )
    weight_files = {p.name for p in work.iterdir()} - {"traced.onnx"}
    assert len(weight_files) > 10
    before = Path.cwd()
    counts, _ = fuse(work / "traced.onnx", work / "fused.onnx", num_heads=2, hidden_size=32, layers=2)
    assert Path.cwd() == before
    assert counts["Attention"] == 2 and counts["EmbedLayerNormalization"] == 1
    fused = onnx.load(str(work / "fused.onnx"), load_external_data=False)
    locations = {e.value for t in fused.graph.initializer for e in t.external_data if e.key == "location"}
    assert locations & weight_files  # referenced where they are, not copied
    rng = np.random.default_rng(0)
    feed = {
        "input_ids": rng.integers(5, 60, (3, 9)),
        "attention_mask": np.ones((3, 9), np.int64),
        "token_type_ids": np.zeros((3, 9), np.int64),
    }
    feed["attention_mask"][1, 6:] = 0
    outputs = [
        ort.InferenceSession(str(work / name), providers=["CPUExecutionProvider"]).run(None, feed)[0]
        for name in ("traced.onnx", "fused.onnx")
    ]
    assert np.abs(outputs[0] - outputs[1]).max() <= 1e-5
