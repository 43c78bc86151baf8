"""Load-time bundle checks: each broken bundle is refused with a BundleError naming the file and the fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest
from tokenizers import Tokenizer

from mbert_edge import BundleError, Classifier
from mbert_edge.bundle import MANIFEST_NAME


@pytest.fixture
def bundle(tmp_path, seqcls_bundle) -> Path:
    return Path(shutil.copytree(seqcls_bundle, tmp_path / "bundle"))


def edit_manifest(bundle: Path, **changes) -> None:
    manifest = json.loads((bundle / MANIFEST_NAME).read_text())
    manifest.update(changes)
    (bundle / MANIFEST_NAME).write_text(json.dumps(manifest))


def test_missing_file(bundle):
    (bundle / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match=r"tokenizer.json is missing from the bundle"):
        Classifier(bundle)


def test_hash_mismatch_and_opt_out(bundle):
    tokenizer = bundle / "tokenizer.json"
    tokenizer.write_text(json.dumps(json.loads(tokenizer.read_text())), encoding="utf-8")  # same content, new bytes
    with pytest.raises(BundleError, match=r"tokenizer.json does not match the sha256.*verify_hashes=False"):
        Classifier(bundle)
    assert Classifier(bundle, verify_hashes=False).predict("Hallo")["label"]


def test_weights_beside_the_graph_are_verified(bundle):
    """The bundle stores the graph's weights in model.onnx.data; a changed byte there is caught like one in
    the graph, and a missing weights file is named."""
    weights = bundle / "model.onnx.data"
    assert weights.stat().st_size > 10 * (bundle / "model.onnx").stat().st_size
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model.onnx.data does not match the sha256"):
        Classifier(bundle)
    weights.unlink()
    with pytest.raises(BundleError, match=r"model.onnx.data is missing from the bundle"):
        Classifier(bundle)


def test_tokenizer_of_another_model(bundle):
    from conftest import minilm_path

    shutil.copy(minilm_path() / "tokenizer.json", bundle / "tokenizer.json")
    with pytest.raises(BundleError, match=r"tokenizer.json has 30522 tokens .* not the model's"):
        Classifier(bundle, verify_hashes=False)


def test_embedding_table_smaller_than_vocabulary(bundle):
    tokenizer = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    tokenizer.add_tokens([f"extra{i}" for i in range(10)])
    tokenizer.save(str(bundle / "tokenizer.json"))
    size = tokenizer.get_vocab_size()
    edit_manifest(bundle, vocab_size=size, embedding_rows=size)  # a manifest that claims what the graph lacks
    with pytest.raises(BundleError, match=rf"model.onnx fails on the tokenizer's highest token id {size - 1}"):
        Classifier(bundle, verify_hashes=False)


def test_graph_inputs_differ_from_manifest(bundle):
    edit_manifest(bundle, inputs=["input_ids", "attention_mask"])  # the graph also takes token_type_ids
    with pytest.raises(BundleError, match=r"model.onnx takes .* but mbert_edge.json says"):
        Classifier(bundle)


def test_corrupt_model(bundle):
    (bundle / "model.onnx").write_bytes(b"\x08\x07garbage" * 100)
    with pytest.raises(BundleError, match=r"model.onnx could not be loaded by ONNX Runtime"):
        Classifier(bundle, verify_hashes=False)


@pytest.mark.parametrize("location", ["../outside.bin", "/tmp/outside.bin"])
def test_external_data_outside_the_bundle_is_refused(bundle, location):
    model = onnx.load(str(bundle / "model.onnx"))
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    (bundle.parent / "outside.bin").write_bytes(tensor.raw_data)
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    onnx.save(model, str(bundle / "model.onnx"))
    with pytest.raises(BundleError, match="refers to weights outside the bundle folder"):
        Classifier(bundle, verify_hashes=False)


def test_runtime_reads_only_onnx_and_json():
    """No pickle anywhere in the runtime package (the export side may read pickled checkpoints)."""
    import mbert_edge

    runtime = Path(mbert_edge.__file__).parent
    for source in runtime.glob("*.py"):
        text = source.read_text(encoding="utf-8")
        assert "pickle" not in text and "torch.load" not in text and "np.load" not in text, source
