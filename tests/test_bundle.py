"""The typed manifest: the only code that knows the JSON keys, so it must read back exactly what it wrote,
read bundles written before it existed (format_version 1), and refuse a garbled one with one clear line."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from mbert_edge.bundle import MANIFEST_NAME, Bundle
from mbert_edge.errors import BundleError


def raw(bundle) -> dict:
    return json.loads((bundle / MANIFEST_NAME).read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", ["seqcls_bundle", "encoder_bundle", "token_bundle", "faithful_bundle"])
def test_manifest_round_trips_its_json(request, name):
    bundle = request.getfixturevalue(name)
    assert Bundle.open(bundle).manifest.to_json() == raw(bundle)


def test_faithful_manifest_is_typed(faithful_bundle):
    manifest = Bundle.open(faithful_bundle).manifest
    q = manifest.quantization
    assert q.config.method == "faithful" and q.config.batch_invariant and q.passed
    assert q.config.faithful.weight_format in ("s8", "p8") and q.config.data is None  # gate on the built-in sample
    assert raw(faithful_bundle)["quantization"]["data"] == "built-in sample"
    assert manifest.labels == ["negative", "neutral", "positive"] and manifest.special_tokens["pad"].id == 0


def test_older_manifest_still_loads(tmp_path, faithful_bundle):
    """A manifest from before the typed one (no batch_invariant; keys this version does not know) loads."""
    bundle = shutil.copytree(faithful_bundle, tmp_path / "old")
    data = raw(bundle)
    del data["quantization"]["batch_invariant"]
    data["quantization"]["written_by_another_version"] = True
    (bundle / MANIFEST_NAME).write_text(json.dumps(data), encoding="utf-8")
    q = Bundle.open(bundle).manifest.quantization
    assert q.config.batch_invariant and q.chosen["written_by_another_version"] is True


def test_garbled_manifest_is_one_clear_error(tmp_path, seqcls_bundle):
    bundle = shutil.copytree(seqcls_bundle, tmp_path / "garbled")
    data = raw(bundle)
    del data["special_tokens"]
    (bundle / MANIFEST_NAME).write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(BundleError, match=r"lacks or garbles a field .*re-run `mbert-edge export`"):
        Bundle.open(bundle)
    for change, message in (
        ({"max_length": "abc"}, "max_length is 'abc', not of type int"),
        ({"hidden_size": True}, "hidden_size is True, not of type int"),
        ({"task": ["sequence-classification"]}, "unknown task ['sequence-classification']"),
        ({"models": {"fp32": 3}}, "models is {'fp32': 3}, not of type dict[str, str]"),
        ({"labels": None}, "names no labels for its sequence-classification head"),
    ):  # a wrong type fails as the bundle opens, not as an "unexpected" error in the runtime
        (bundle / MANIFEST_NAME).write_text(json.dumps({**raw(seqcls_bundle), **change}), encoding="utf-8")
        with pytest.raises(BundleError, match=re.escape(message)):
            Bundle.open(bundle)
    (bundle / MANIFEST_NAME).write_text("[]", encoding="utf-8")
    with pytest.raises(BundleError, match="is not a JSON object"):
        Bundle.open(bundle)


def test_a_manifest_naming_files_outside_the_bundle_is_refused(tmp_path, seqcls_bundle):
    """The manifest cannot make the runtime load a graph from elsewhere (its hash would vouch for that file)."""
    outside = shutil.copytree(seqcls_bundle, tmp_path / "elsewhere")
    bundle = shutil.copytree(seqcls_bundle, tmp_path / "bundle")
    data = raw(bundle)
    data["models"]["fp32"] = "../elsewhere/model.onnx"
    data["files"]["../elsewhere/model.onnx"] = raw(outside)["files"]["model.onnx"]
    (bundle / MANIFEST_NAME).write_text(json.dumps(data), encoding="utf-8")
    from mbert_edge import Classifier

    with pytest.raises(BundleError, match=r"names \.\./elsewhere/model\.onnx, outside the bundle's folder"):
        Classifier(bundle)
