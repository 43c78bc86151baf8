"""Texts longer than the max length: every window checked against PyTorch on the same windows."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

from mbert_edge import Classifier, Embedder, TokenClassifier, WindowError
from mbert_edge.textdata import builtin_sample

LONG = " ".join(s for group in builtin_sample().texts.values() for s in group)  # ~60 sentences, many scripts


def torch_windows(checkpoint, head, windows):
    """PyTorch output of `head` on each window alone (the window's exact ids, no padding)."""
    import torch
    import transformers

    model = getattr(transformers, head).from_pretrained(checkpoint, attn_implementation="eager").eval()
    outputs = []
    with torch.inference_mode():
        for window in windows:
            ids = torch.tensor([window.ids])
            outputs.append(model(input_ids=ids, attention_mask=torch.ones_like(ids)))
    return outputs


def windows_of(model, text):
    encoding = model.tokenizer.encode(text)
    return [encoding, *encoding.overflowing]


def test_classifier_windows_average_logits(seqcls_bundle, seqcls_checkpoint):
    clf = Classifier(seqcls_bundle, stride=16)
    windows = windows_of(clf, LONG)
    assert len(windows) >= 4 and all(len(w) <= clf.max_length for w in windows)
    expected = torch_windows(seqcls_checkpoint, "BertForSequenceClassification", windows)
    logits = [o.logits[0].numpy() for o in expected]
    assert np.abs(clf.logits(LONG, truncation="window") - np.mean(logits, axis=0)).max() <= 1e-4
    with pytest.warns(UserWarning, match="truncation='window'"):
        head = clf.logits(LONG)  # the default cuts, and says so
    assert np.abs(head - logits[0]).max() <= 1e-4
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # asked for explicitly: no warning
        assert np.array_equal(clf.logits(LONG, truncation="head"), head)


def test_embedder_windows_token_weighted_mean(encoder_bundle, encoder_checkpoint):
    embedder = Embedder(encoder_bundle, stride=16)
    windows = windows_of(embedder, LONG)
    pooled = [o.last_hidden_state[0].mean(0).numpy() for o in torch_windows(encoder_checkpoint, "BertModel", windows)]
    expected = np.average(pooled, axis=0, weights=[len(w) for w in windows])
    expected /= np.linalg.norm(expected)
    assert np.abs(embedder.encode(LONG) - expected).max() <= 1e-5
    raw = embedder.encode(LONG, normalize=False, truncation="head")
    assert np.abs(raw - pooled[0]).max() <= 1e-4 and abs(np.linalg.norm(raw) - 1) > 1e-3


def test_ner_windows_merge_without_duplicates(token_bundle, token_checkpoint):
    model = TokenClassifier(token_bundle, stride=24)
    windows = windows_of(model, LONG)
    logits = [o.logits[0].numpy() for o in torch_windows(token_checkpoint, "BertForTokenClassification", windows)]
    # Expected: each token once, scored by the window where it is furthest from an edge.
    best: dict[tuple[int, int], tuple[int, np.ndarray]] = {}
    for window, rows in zip(windows, logits):
        for position, (offset, special) in enumerate(zip(window.offsets, window.special_tokens_mask)):
            margin = min(position, len(window) - 1 - position)
            if not special and (offset not in best or margin > best[offset][0]):
                best[offset] = (margin, rows[position])
    tokens = model.predict(LONG, aggregation="none", ignore_labels=())
    assert [(t["start"], t["end"]) for t in tokens] == sorted(best)  # every token once, in order
    full = model.tokenizer.encode(LONG)
    assert len(tokens) == len(full.ids) - 2 + sum(len(w.ids) - 2 for w in full.overflowing) - (len(windows) - 1) * 24
    for token in tokens:
        row = best[token["start"], token["end"]][1]
        probabilities = np.exp(row - row.max()) / np.exp(row - row.max()).sum()
        assert token["entity"] == model.labels[int(probabilities.argmax())]
        assert token["score"] == pytest.approx(float(probabilities.max()), abs=1e-4)
    grouped = model.predict(LONG, aggregation="simple")
    spans = [(e["start"], e["end"]) for e in grouped]
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))  # no overlaps, no duplicates at seams
    assert len(model.predict(LONG, truncation="head", aggregation="none", ignore_labels=())) == len(windows[0].ids) - 2


def test_bad_truncation_and_stride(seqcls_bundle):
    with pytest.raises(ValueError, match="truncation must be one of"):
        Classifier(seqcls_bundle).predict("x", truncation="tail")
    with pytest.raises(ValueError, match="stride must be an int from 0 to 125"):
        Classifier(seqcls_bundle, stride=126)


class _Inputs:
    """What the runner reads of a session to cut windows (no graph is run here)."""

    def get_inputs(self) -> list:
        return []


def test_a_head_is_read_from_a_prefix_equal_to_the_whole_texts_first_window(seqcls_bundle):
    """`truncation="head"` tokenizes a prefix of a long text, not all of it (a 1 MB text built 1,053 windows to
    keep one): for WordPiece, Unigram and byte-level BPE tokenizers, on texts with and without spaces, with
    long space runs and a giant word at the cut, the head window is token for token the whole text's."""
    from families import bpe_tokenizer, unigram_tokenizer
    from tokenizers import Tokenizer

    from mbert_edge.runtime.runner import Runner

    sample = [s for group in builtin_sample().texts.values() for s in group]
    texts = [
        LONG * 40,
        "".join(sample) * 40,
        "世界你好，我们" * 3000,
        "สวัสดีครับ" * 3000,
        " " * 50_000 + "Guten Morgen " * 400,
        "x" * 20_000 + " " + LONG * 10,
        LONG[:700] + "y" * 30_000,
        "kurz",
        LONG[:300],
    ]
    tokenizers = [Tokenizer.from_file(str(seqcls_bundle / "tokenizer.json")), unigram_tokenizer(), bpe_tokenizer()]
    for tokenizer in tokenizers:
        whole = Tokenizer.from_str(tokenizer.to_str())
        whole.enable_truncation(64, stride=16)
        runner = Runner(_Inputs(), tokenizer, 64, 0, "head-test")
        for text, (head,) in zip(texts, runner.windows(texts, "head")):
            expected = whole.encode(text)
            assert (head.ids, head.offsets) == (expected.ids, expected.offsets), text[:40]
            assert bool(head.overflowing) == bool(expected.overflowing)
    assert len(runner._first_window_prefix(LONG * 40)) < len(LONG * 40) / 10  # the prefix is a small part of the text


def test_a_text_over_max_windows_is_refused_before_it_is_read_whole(seqcls_bundle):
    """truncation='window' reads at most `max_windows` windows of a text (default: 131,072 tokens' worth); a
    longer text is one ValueError naming the limit, found from a prefix of the text."""
    clf = Classifier(seqcls_bundle, max_windows=3)
    assert clf.runner.max_windows == 3 and Classifier(seqcls_bundle).runner.max_windows > 100
    long_text = LONG * 2000  # about 2 MB
    with pytest.raises(ValueError, match=r"^text 1 is longer than 3 windows of \d+ tokens \(the max_windows limit\)"):
        clf.predict(["kurz", long_text], truncation="window")
    streamed = clf.iter_predict(["a", "b", "c", long_text], chunk_size=2, truncation="window")
    with pytest.raises(WindowError, match=r"^text 3 is longer than 3 windows") as raised:
        list(streamed)
    assert not raised.value.no_room  # the same error, its number placed in the stream
    fits = next(LONG[:n] for n in range(100, len(LONG), 50) if len(clf.runner.windows([LONG[:n]], "window")[0]) == 3)
    clf.predict(fits, truncation="window")
    with pytest.raises(ValueError, match="max_windows must be >= 1 or None, got 0"):
        Classifier(seqcls_bundle, max_windows=0)
