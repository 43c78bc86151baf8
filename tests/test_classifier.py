"""The runtime Classifier against PyTorch, its API conventions, and its torch-free import."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import torch_forward

from mbert_edge import BundleError, Classifier
from mbert_edge.textdata import builtin_sample

SENTENCES = [s for group in builtin_sample().texts.values() for s in group]


def torch_probabilities(checkpoint, texts):
    import torch

    output, _ = torch_forward(checkpoint, "BertForSequenceClassification", texts)
    return torch.softmax(output.logits, dim=-1).numpy()


def test_agrees_with_pytorch(seqcls_bundle, seqcls_checkpoint):
    expected = torch_probabilities(seqcls_checkpoint, SENTENCES)
    clf = Classifier(seqcls_bundle)
    probabilities = clf.predict_proba(SENTENCES, batch_size=7)
    assert np.abs(probabilities - expected).max() <= 1e-4
    labels = [p["label"] for p in clf.predict(SENTENCES)]
    assert labels == [clf.labels[i] for i in expected.argmax(axis=1)]


def test_pipeline_conventions(seqcls_bundle):
    clf = Classifier.from_bundle(seqcls_bundle)
    single = clf.predict("Hallo Welt")
    assert set(single) == {"label", "score"} and single["label"] in clf.labels
    ranked = clf.predict(["Hallo Welt", "Привет"], top_k=2)
    assert [len(r) for r in ranked] == [2, 2]
    assert ranked[0][0]["score"] >= ranked[0][1]["score"]
    every = clf.predict("Hallo", top_k=None)
    assert sorted(r["label"] for r in every) == sorted(clf.labels)
    assert abs(sum(r["score"] for r in every) - 1) < 1e-5
    assert clf.predict([]) == []
    assert clf.predict_proba("Hallo").shape == (3,)


@pytest.mark.parametrize(
    "bad, where", [(None, "NoneType"), ([b"bytes"], "texts[0]"), (["ok", 3], "texts[1]"), ([["nested"]], "texts[0]")]
)
def test_bad_input_types(seqcls_bundle, bad, where):
    with pytest.raises(TypeError, match=where.replace("[", r"\[").replace("]", r"\]")):
        Classifier(seqcls_bundle).predict(bad)


def test_wrong_task_is_refused(encoder_bundle):
    with pytest.raises(BundleError, match="feature-extraction bundle"):
        Classifier(encoder_bundle)


def test_missing_int8_is_explained(seqcls_bundle):
    with pytest.raises(BundleError, match="no int8 model"):
        Classifier(seqcls_bundle, precision="int8")


def test_corrupt_model_is_detected(tmp_path, seqcls_bundle):
    copy = shutil.copytree(seqcls_bundle, tmp_path / "b")
    with open(copy / "model.onnx", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02")
    with pytest.raises(BundleError, match="sha256"):
        Classifier(copy)


@pytest.mark.slow
def test_runtime_does_not_import_torch(seqcls_bundle):
    code = (
        "import sys, mbert_edge\n"
        f"c = mbert_edge.Classifier({str(seqcls_bundle)!r})\n"
        "print(c.predict('Bonjour'))\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'onnx') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "label" in result.stdout


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        ({"top_k": 1.5}, TypeError, "top_k must be an int >= 1 or None, got float 1.5"),
        ({"top_k": "2"}, TypeError, "top_k must be an int >= 1 or None, got str '2'"),
        ({"top_k": True}, TypeError, "top_k must be an int >= 1 or None, got bool True"),
        ({"top_k": 0}, ValueError, "top_k must be >= 1 or None, got 0"),
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1, got 0"),
        ({"batch_size": 2.0}, TypeError, "batch_size must be an int >= 1, got float 2.0"),
        (
            {"truncation": "tail"},
            ValueError,
            "truncation must be one of head, window .or None for the default., got 'tail'",
        ),
        ({"truncation": 1}, TypeError, "truncation must be a str .head, window. or None, got int"),
    ],
)
def test_a_wrong_argument_is_named_before_any_work(seqcls_bundle, arguments, error, message):
    """Each call argument is checked at the boundary with one error naming it (top_k=1.5 failed inside numpy,
    top_k=True silently meant 1)."""
    clf = Classifier(seqcls_bundle)
    with pytest.raises(error, match=f"^{message}$"):
        clf.predict(["Hallo Welt", "Привет"], **arguments)
    with pytest.raises(TypeError, match="chunk_size must be an int >= 1, got float"):
        next(clf.iter_predict(["Hallo"], chunk_size=0.5))
    assert clf.predict("Hallo", top_k=None, batch_size=1, truncation=None)  # None: every label, the default cut


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"strid": 5}, TypeError, "unexpected keyword argument 'strid'; the loading options are stride, "),
        ({"max_batch_tokens": 8192.0}, TypeError, "max_batch_tokens must be an int >= 1, got float 8192.0"),
        ({"max_batch_tokens": 10**30}, ValueError, "max_batch_tokens must be at most 2,147,483,647"),
        ({"max_windows": True}, TypeError, "max_windows must be an int >= 1 or None, got bool True"),
        ({"intra_op_threads": "2"}, TypeError, "intra_op_threads must be an int >= 1 or None, got str '2'"),
        ({"inter_op_threads": None}, TypeError, "inter_op_threads must be an int >= 1, got NoneType None"),
        ({"options": "x"}, TypeError, "options must be an onnxruntime.SessionOptions or None, got str"),
        ({"session_config": {"x": 1}}, TypeError, "session_config must be a mapping of str to str or None"),
        ({"verify_hashes": "no"}, TypeError, "verify_hashes must be a bool, got str"),
    ],
)
def test_a_wrong_loading_option_is_named_before_the_bundle_is_read(seqcls_bundle, options, error, message):
    """A misspelled option was ignored (`strid=5` loaded with the default stride); a value of the wrong type failed
    later inside numpy or ONNX Runtime, or was blamed on the model file."""
    with pytest.raises(error, match=f"^{re.escape(message)}"):
        Classifier(seqcls_bundle, **options)


def test_window_error_follows_the_truncation_asked_for(seqcls_bundle):
    """`window_error` says what `predict` would refuse with these options: a text over max_windows read in windows,
    nothing when its head is read; a pair "only_second" cannot cut."""
    clf = Classifier(seqcls_bundle, max_windows=2)
    long = "Wort " * 2000
    assert clf.window_error(long) is not None and clf.window_error(long, {"truncation": "head"}) is None
    assert clf.predict(long, truncation="head")
    assert clf.window_error((long, "kurz"), {"truncation": "only_second"}).no_room
    assert clf.window_error((long, "kurz"), {"truncation": "longest_first"}) is None
