"""Odd input, many threads, many calls: every call returns a well-formed result, and memory stays bounded."""

from __future__ import annotations

import os
import random
import threading

import numpy as np
import pytest

from mbert_edge import Classifier, Embedder, TokenClassifier
from mbert_edge.textdata import builtin_sample

SENTENCES = [s for group in builtin_sample().texts.values() for s in group]
ODD_TEXTS = {
    "empty": "",
    "whitespace": " \t\n\u00a0\u3000 ",
    "control characters": "a\x00b\x07c\x1b[31md\x7f\u0085e",
    "lone surrogates": "left \ud800 right \udfff end",
    "zero-width joiners": "\u200d\u200c\u200b क्‍ष 👨\u200d👩\u200d👧",
    "right-to-left": "\u202eשלום עולם\u202c و مرحبا 123",
    "emoji only": "🙂🙃🚀🇩🇪👍🏽",
}
MEGABYTE = (" ".join(SENTENCES) + "\n") * (2**20 // len((" ".join(SENTENCES) + "\n").encode()) + 1)


@pytest.fixture(scope="module")
def models(seqcls_bundle, token_bundle, encoder_bundle):
    return {
        "classifier": Classifier(seqcls_bundle),
        "ner": TokenClassifier(token_bundle),
        "embedder": Embedder(encoder_bundle),
    }


def run(model, texts):
    return model.encode(texts) if isinstance(model, Embedder) else model.predict(texts)


def assert_well_formed(model, text, result):
    if isinstance(model, Classifier):
        assert set(result) == {"label", "score"} and 0.0 <= result["score"] <= 1.0
    elif isinstance(model, TokenClassifier):
        assert isinstance(result, list)
        for entity in result:
            assert 0 <= entity["start"] <= entity["end"] <= len(text) and np.isfinite(entity["score"])
    else:
        assert result.shape == (32,) and np.isfinite(result).all() and abs(np.linalg.norm(result) - 1) < 1e-5


@pytest.mark.parametrize("kind", ["classifier", "ner", "embedder"])
@pytest.mark.parametrize("name", ODD_TEXTS)
def test_odd_text(models, kind, name):
    model, text = models[kind], ODD_TEXTS[name]
    texts = [text, "Hallo Welt", text]
    results = run(model, texts)
    assert len(results) == 3
    for each, result in zip(texts, results):
        assert_well_formed(model, each, result)
    assert_well_formed(model, text, run(model, text))


@pytest.mark.parametrize("kind", ["classifier", "ner", "embedder"])
def test_a_megabyte_of_text(models, kind):
    """A megabyte of text is read whole in windows when `max_windows` allows it; by default (131,072 tokens'
    worth of windows) the NER and embedding classes, which read texts whole, refuse it in one line."""
    model = models[kind]
    assert len(MEGABYTE.encode()) >= 2**20
    if kind != "classifier":  # the classifier reads the head by default
        with pytest.raises(ValueError, match=r"^text 0 is longer than \d+ windows .* raise max_windows$"):
            run(model, [MEGABYTE, "kurz"])
        model = type(model)(model.bundle, max_windows=100_000)
    if kind == "ner":  # every token, to show the text is read whole: entities reach its end
        results = model.predict([MEGABYTE, "kurz"], aggregation="none", ignore_labels=())
        assert results[0][-1]["end"] > len(MEGABYTE) - 10
    else:
        results = run(model, [MEGABYTE, "kurz"])
    assert len(results) == 2
    assert_well_formed(model, MEGABYTE, results[0])
    assert_well_formed(model, "kurz", results[1])


@pytest.mark.parametrize("kind", ["classifier", "ner", "embedder"])
def test_ten_thousand_short_strings(models, kind):
    texts = [f"{i} {SENTENCES[i % len(SENTENCES)][:12]}" for i in range(10_000)]
    results = run(models[kind], texts)
    assert len(results) == 10_000
    assert_well_formed(models[kind], texts[-1], results[-1])


@pytest.mark.parametrize("kind", ["classifier", "ner", "embedder"])
@pytest.mark.parametrize(
    "bad, message",
    [
        (None, "texts must be a str.* or a sequence of .*, got NoneType"),  # the classifier also names pairs
        (b"bytes", "got bytes"),
        (3.5, "got float"),
        (["ok", b"x"], r"texts\[1\] must be str.*, got bytes"),
        (["ok", "fine", 7], r"texts\[2\] must be str.*, got int"),
        ([["nested"]], r"texts\[0\] must be str.*, got list"),
        (["ok", None], r"texts\[1\] must be str.*, got NoneType"),
    ],
)
def test_wrong_types_name_index_and_type(models, kind, bad, message):
    with pytest.raises(TypeError, match=message):
        run(models[kind], bad)


@pytest.mark.parametrize("kind", ["classifier", "ner", "embedder"])
def test_empty_list(models, kind):
    result = run(models[kind], [])
    assert (result.shape == (0, 32)) if kind == "embedder" else result == []


@pytest.mark.parametrize("kind", ["classifier", "ner", "embedder"])
def test_streaming_matches_batch_and_is_lazy(models, kind):
    model = models[kind]
    stream = model.iter_encode if kind == "embedder" else model.iter_predict
    consumed = []

    def texts():
        for i, text in enumerate(SENTENCES):
            consumed.append(i)
            yield text

    results = stream(texts(), chunk_size=8)
    first = next(results)
    assert len(consumed) == 8  # read one chunk, not the whole input
    streamed = [first, *results]
    batch = run(model, SENTENCES)
    assert len(streamed) == len(batch)
    if kind == "embedder":
        assert np.abs(np.stack(streamed) - batch).max() <= 1e-6
    else:
        for a, b in zip(streamed, batch):
            a, b = (a, b) if kind == "ner" else ([a], [b])
            assert [{k: v for k, v in x.items() if k != "score"} for x in a] == [
                {k: v for k, v in y.items() if k != "score"} for y in b
            ]
            assert all(abs(x["score"] - y["score"]) <= 1e-6 for x, y in zip(a, b))
    with pytest.raises(TypeError, match=r"texts\[9\] must be str.*, got int"):
        list(stream(iter(["a"] * 9 + [5]), chunk_size=4))


@pytest.mark.slow
def test_one_model_many_threads(models):
    """8 threads x 50 calls on one object give exactly the serial results."""
    model = models["classifier"]
    rng = random.Random(0)
    calls = [[SENTENCES[j] for j in rng.sample(range(len(SENTENCES)), rng.randint(1, 12))] for _ in range(400)]
    serial = [model.logits(texts) for texts in calls]
    results: list = [None] * len(calls)
    errors: list = []

    def worker(start):
        try:
            for i in range(start, len(calls), 8):
                results[i] = model.logits(calls[i])
        except Exception as exc:  # surfaced below: a thread's exception would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(np.array_equal(a, b) for a, b in zip(results, serial))


def resident_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.slow  # 2,000 calls
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads RSS from /proc (Linux)")
def test_memory_stays_bounded(models):
    """2,000 calls of varied sizes and lengths after a warm-up: resident memory grows by less than 20 MB."""
    model = models["classifier"]
    rng = random.Random(1)

    def call():
        texts = [" ".join(rng.choices(SENTENCES, k=rng.randint(1, 8))) for _ in range(rng.randint(1, 24))]
        model.predict(texts, batch_size=rng.choice([1, 8, 32]))

    for _ in range(200):
        call()
    before = resident_mb()
    for _ in range(2000):
        call()
    assert resident_mb() - before < 20
